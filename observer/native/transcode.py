"""Canonical JSON lines -> gRPC-framed protobuf messages in C (native/hbpb.c): schema and binding.

The standard GetFlows stream sends one ``observer.GetFlowsResponse`` per flow; the store keeps
each as its canonical JSON line (docs/architecture.md §2). The reference conversion is
``response_to_proto(orjson.loads(line)).SerializeToString()`` (~63 us a line). The C
transcoder reads the JSON and writes the protobuf wire format directly, driven by a schema
table built here from the generated descriptors (``build_schema``, pure): per message its
fields (proto name, number, kind, flags, sub-message / enum / wrapped kind, oneof group), per
enum its value names. One ctypes call converts a batch.

It takes only the shapes ``observer.api.convert``'s fast path takes, and only input orjson
accepts; a line with anything else (``null``, camelCase names, enum numbers, duplicate keys,
two members of a oneof, bytes, 32-bit floats, ``Any``, maps, malformed JSON, ...) is left to
the Python path, in order, so the result is always the Python path's. For the lines it does
take, the bytes equal upb's ``SerializeToString()`` (field-number order, packed repeated
numbers, zero values without presence omitted), checked by tests/unit/native/test_transcode.py.
"""

from __future__ import annotations

import ctypes
import functools
import weakref
from array import array
from collections.abc import Callable, Sequence
from ctypes import POINTER, c_char_p, c_int, c_int64, c_uint32, c_void_p
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from observer.api.convert import TIMESTAMP_TYPE, WRAPPER_TYPES
from observer.api.v1.observer import observer_pb2
from observer.native import _lib

__all__ = [
    "ABI_VERSION",
    "Schema",
    "Transcoder",
    "build_schema",
    "load_transcoder",
    "transcoder_problem",
]

ABI_VERSION: Final = 1

# field kinds (enum in hbpb.c)
K_NONE: Final = 0
K_INT32: Final = 1
K_INT64: Final = 2
K_UINT32: Final = 3
K_UINT64: Final = 4
K_SINT32: Final = 5
K_SINT64: Final = 6
K_FIXED32: Final = 7
K_FIXED64: Final = 8
K_SFIXED32: Final = 9
K_SFIXED64: Final = 10
K_BOOL: Final = 11
K_ENUM: Final = 12
K_DOUBLE: Final = 13
K_STRING: Final = 14
K_MESSAGE: Final = 15
K_TIMESTAMP: Final = 16
K_WRAPPER: Final = 17

# field flags
F_REPEATED: Final = 1
F_PRESENCE: Final = 2
F_PACKED: Final = 4

# per-line status
STATUS_NATIVE: Final = 0
STATUS_PYTHON: Final = 1

FIELD_WORDS: Final = 8  # name_off, name_len, number, kind, flags, aux, oneof, reserved
MAX_ONEOFS: Final = 64  # per message (a bitmap in C)
MAX_FIELDS: Final = 1024  # per message

_SCALAR_KINDS: Final = {
    FieldDescriptor.TYPE_INT32: K_INT32,
    FieldDescriptor.TYPE_INT64: K_INT64,
    FieldDescriptor.TYPE_UINT32: K_UINT32,
    FieldDescriptor.TYPE_UINT64: K_UINT64,
    FieldDescriptor.TYPE_SINT32: K_SINT32,
    FieldDescriptor.TYPE_SINT64: K_SINT64,
    FieldDescriptor.TYPE_FIXED32: K_FIXED32,
    FieldDescriptor.TYPE_FIXED64: K_FIXED64,
    FieldDescriptor.TYPE_SFIXED32: K_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64: K_SFIXED64,
    FieldDescriptor.TYPE_BOOL: K_BOOL,
    FieldDescriptor.TYPE_ENUM: K_ENUM,
    FieldDescriptor.TYPE_DOUBLE: K_DOUBLE,
    FieldDescriptor.TYPE_STRING: K_STRING,
    # TYPE_FLOAT, TYPE_BYTES: K_NONE (convert's fast path leaves them to ParseDict too)
}

# the first output buffer: bytes of input times this plus _OUT_PER_LINE per line (grown when
# a frame does not fit: negative int32s take 10 bytes for a 2-byte "-1")
_OUT_FACTOR: Final = 2
_OUT_PER_LINE: Final = 64


@dataclass(frozen=True, slots=True)
class Schema:
    """The arrays ``hb_pb_schema_new`` takes; message 0 is the root.

    ``messages``: (first field, field count) per message; ``fields``: FIELD_WORDS words per
    field (offset and length of its name in ``names``, number, kind, flags, aux: message
    index / enum index / wrapped kind, oneof group 1..64 or 0, 0); ``enums``: (first value,
    value count) per enum; ``enum_values``: (name offset, name length, number as uint32).
    """

    root: str
    message_names: tuple[str, ...]
    enum_names: tuple[str, ...]
    names: bytes
    messages: tuple[int, ...]
    fields: tuple[int, ...]
    enums: tuple[int, ...]
    enum_values: tuple[int, ...]

    def field_count(self) -> int:
        return len(self.fields) // FIELD_WORDS


class SchemaError(_lib.NativeError):
    """A descriptor the schema table cannot describe (too many fields or oneofs)."""


class _Builder:
    """Walks the messages reachable from a root (used only inside ``build_schema``)."""

    def __init__(self) -> None:
        self.names = bytearray()
        self.name_at: dict[str, int] = {}
        self.msg_index: dict[str, int] = {}
        self.msg_order: list[Descriptor] = []
        self.enum_index: dict[str, int] = {}
        self.enum_order: list[EnumDescriptor] = []

    def name(self, text: str) -> tuple[int, int]:
        data = text.encode()
        off = self.name_at.get(text)
        if off is None:
            off = len(self.names)
            self.names += data
            self.name_at[text] = off
        return off, len(data)

    def message(self, desc: Descriptor) -> int:
        i = self.msg_index.get(desc.full_name)
        if i is None:
            i = len(self.msg_order)
            self.msg_index[desc.full_name] = i
            self.msg_order.append(desc)
        return i

    def enum(self, desc: EnumDescriptor) -> int:
        i = self.enum_index.get(desc.full_name)
        if i is None:
            i = len(self.enum_order)
            self.enum_index[desc.full_name] = i
            self.enum_order.append(desc)
        return i

    def kind(self, fd: FieldDescriptor) -> tuple[int, int]:
        """(kind, aux) of a field; K_NONE for what the fast path leaves to ParseDict."""
        mt = fd.message_type
        if mt is None:
            if fd.type == FieldDescriptor.TYPE_ENUM:
                assert fd.enum_type is not None
                return K_ENUM, self.enum(fd.enum_type)
            return _SCALAR_KINDS.get(fd.type, K_NONE), 0
        if fd.type != FieldDescriptor.TYPE_MESSAGE or mt.GetOptions().map_entry:
            return K_NONE, 0  # groups, maps
        if mt.full_name == TIMESTAMP_TYPE:
            return K_TIMESTAMP, 0
        if mt.full_name in WRAPPER_TYPES:
            inner = _SCALAR_KINDS.get(mt.fields_by_name["value"].type, K_NONE)
            return (K_WRAPPER, inner) if inner != K_NONE else (K_NONE, 0)
        if mt.full_name.startswith("google.protobuf."):
            return K_NONE, 0  # Any, Duration, Struct, FieldMask, Empty, ...: special JSON forms
        return K_MESSAGE, self.message(mt)


def build_schema(root: Descriptor) -> Schema:
    """The schema of ``root`` and every message reachable from it (pure)."""
    b = _Builder()
    b.message(root)
    messages: list[int] = []
    fields: list[int] = []
    i = 0
    while i < len(b.msg_order):  # msg_order grows while fields are planned
        desc = b.msg_order[i]
        i += 1
        if len(desc.fields) > MAX_FIELDS:
            raise SchemaError(f"{desc.full_name}: more than {MAX_FIELDS} fields")
        groups: dict[str, int] = {}
        for o in desc.oneofs:
            if len(o.fields) > 1:  # proto3 optional's synthetic oneofs hold one field
                groups[o.full_name] = len(groups) + 1
        if len(groups) > MAX_ONEOFS:
            raise SchemaError(f"{desc.full_name}: more than {MAX_ONEOFS} oneofs")
        messages += (len(fields) // FIELD_WORDS, len(desc.fields))
        for fd in desc.fields:
            kind, aux = b.kind(fd)
            flags = 0
            if fd.is_repeated:
                flags |= F_REPEATED
                if fd.is_packed:
                    flags |= F_PACKED
            elif fd.has_presence:
                flags |= F_PRESENCE
            oneof = fd.containing_oneof
            group = groups.get(oneof.full_name, 0) if oneof is not None else 0
            off, length = b.name(fd.name)
            fields += (off, length, fd.number, kind, flags, aux, group, 0)
    enums: list[int] = []
    values: list[int] = []
    for ed in b.enum_order:
        enums += (len(values) // 3, len(ed.values))
        for v in ed.values:
            off, length = b.name(v.name)
            values += (off, length, v.number & 0xFFFF_FFFF)
    return Schema(
        root=root.full_name,
        message_names=tuple(d.full_name for d in b.msg_order),
        enum_names=tuple(e.full_name for e in b.enum_order),
        names=bytes(b.names),
        messages=tuple(messages),
        fields=tuple(fields),
        enums=tuple(enums),
        enum_values=tuple(values),
    )


def _u32(words: tuple[int, ...]) -> array[int]:
    return array("I", words or (0,))


class Transcoder:
    """A schema loaded into the C library; converts batches of lines. Safe to share."""

    def __init__(self, cdll: ctypes.CDLL, schema: Schema) -> None:
        try:
            version = cdll.hb_pb_abi_version
            schema_new = cdll.hb_pb_schema_new
            schema_free = cdll.hb_pb_schema_free
            transcode = cdll.hb_pb_transcode
        except AttributeError as e:
            raise _lib.NativeError(
                f"{cdll._name}: no hb_pb_* symbols (rebuild with `make -C native`)"
            ) from e
        version.restype = c_uint32
        version.argtypes = ()
        schema_new.restype = c_void_p
        schema_new.argtypes = (
            c_char_p, c_uint32,  # names
            c_void_p, c_uint32,  # messages
            c_void_p, c_uint32,  # fields
            c_void_p, c_uint32,  # enums
            c_void_p, c_uint32,  # enum values
            POINTER(c_int),
        )  # fmt: skip
        schema_free.restype = None
        schema_free.argtypes = (c_void_p,)
        transcode.restype = c_int64
        transcode.argtypes = (
            c_void_p, c_char_p, c_void_p, c_uint32, c_void_p, ctypes.c_uint64, c_void_p, c_void_p,
        )  # fmt: skip
        got = version()
        if got != ABI_VERSION:
            raise _lib.NativeError(
                f"{cdll._name}: transcoder ABI {got}, this binding needs {ABI_VERSION} "
                "(rebuild with `make -C native`)"
            )
        arrays = [
            _u32(schema.messages),
            _u32(schema.fields),
            _u32(schema.enums),
            _u32(schema.enum_values),
        ]
        err = c_int(0)
        ptr = schema_new(
            schema.names,
            len(schema.names),
            arrays[0].buffer_info()[0],
            len(schema.messages) // 2,
            arrays[1].buffer_info()[0],
            schema.field_count(),
            arrays[2].buffer_info()[0],
            len(schema.enums) // 2,
            arrays[3].buffer_info()[0],
            len(schema.enum_values) // 3,
            ctypes.byref(err),
        )
        if not ptr:
            what = "out of memory" if err.value == 2 else "invalid schema"
            raise _lib.NativeError(f"hb_pb_schema_new({schema.root}): {what}")
        self.schema = schema
        self._ptr: int = ptr
        self._transcode = transcode
        self._cdll = cdll  # keeps the library loaded as long as the schema lives
        weakref.finalize(self, schema_free, ptr)

    def _run(self, lines: Sequence[bytes]) -> tuple[bytearray, array[int], bytearray]:
        """(frames of the native lines, end offset in them after each line, status per line)."""
        n = len(lines)
        data = b"".join(lines)
        offs = array("Q", accumulate(map(len, lines), initial=0))
        ends = array("Q", bytes(8 * n))
        status = bytearray(n)
        out = bytearray(_OUT_FACTOR * len(data) + _OUT_PER_LINE * n + 64)
        done = 0
        while done < n:
            base = ends[done - 1] if done else 0
            got = self._call(data, offs, done, out, base, ends, status)
            if got < 0:
                raise _lib.NativeError(f"hb_pb_transcode failed ({got})")
            if base:
                for i in range(done, done + got):
                    ends[i] += base
            done += got
            if done < n:  # the next frame did not fit: double the room
                out += bytes(len(out))
        del out[ends[n - 1] if n else 0 :]
        return out, ends, status

    def _call(
        self,
        data: bytes,
        offs: array[int],
        done: int,
        out: bytearray,
        base: int,
        ends: array[int],
        status: bytearray,
    ) -> int:
        """One hb_pb_transcode over lines done.. (views of the buffers end with the call)."""
        n = len(status) - done
        room = len(out) - base
        out_view = (ctypes.c_char * room).from_buffer(out, base)
        status_view = (ctypes.c_char * n).from_buffer(status, done)
        got: int = self._transcode(
            self._ptr,
            data,
            offs.buffer_info()[0] + 8 * done,
            n,
            ctypes.addressof(out_view),
            room,
            ends.buffer_info()[0] + 8 * done,
            ctypes.addressof(status_view),
        )
        return got

    def transcode(self, lines: Sequence[bytes]) -> list[bytes | None]:
        """Per line its gRPC frame (0x00, big-endian length, message), or None: Python's."""
        out, ends, status = self._run(lines)
        result: list[bytes | None] = []
        start = 0
        for i in range(len(lines)):
            end = ends[i]
            result.append(bytes(out[start:end]) if status[i] == STATUS_NATIVE else None)
            start = end
        return result

    def frame_lines(self, lines: Sequence[bytes], python: Callable[[bytes], bytes]) -> bytes:
        """The frames of all lines joined; ``python(line)`` frames the lines C leaves."""
        out, ends, status = self._run(lines)
        if STATUS_PYTHON not in status:
            return bytes(out)
        parts: list[bytes | bytearray] = []
        start = 0
        for i, line in enumerate(lines):
            end = ends[i]
            if status[i] == STATUS_NATIVE:
                parts.append(out[start:end])
            else:
                parts.append(python(line))
            start = end
        return b"".join(parts)


@functools.cache
def _load(root: Descriptor) -> Transcoder | _lib.NativeError:
    lib = _lib.load()
    if lib is None:
        return _lib.NativeError(_lib.load_problem() or "native library unavailable")
    try:
        return Transcoder(ctypes.CDLL(str(lib.path)), build_schema(root))
    except (OSError, _lib.NativeError) as e:
        return e if isinstance(e, _lib.NativeError) else _lib.NativeError(str(e))


def _response() -> Descriptor:
    desc = observer_pb2.GetFlowsResponse.DESCRIPTOR
    assert isinstance(desc, Descriptor)
    return desc


def load_transcoder(root: Descriptor | None = None) -> Transcoder | None:
    """The transcoder for ``root`` (default ``observer.GetFlowsResponse``; loaded once), or
    None without the native library (``transcoder_problem`` says why)."""
    t = _load(root or _response())
    return t if isinstance(t, Transcoder) else None


def transcoder_problem(root: Descriptor | None = None) -> str | None:
    """Why ``load_transcoder`` returns None, or None when it does not."""
    t = _load(root or _response())
    return None if isinstance(t, Transcoder) else str(t)
