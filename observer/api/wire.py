"""``hubblectl.v1.FlowBatch`` on the wire, without the protobuf runtime's copies (pure).

The relay moves hundreds of megabytes of JSON lines per second. Building a ``FlowBatch``
message costs three copies of its bytes (join, set the field, serialize) and reading one two
(parse, read the field), before the relay splits it into lines. Here a batch is encoded with
one join straight from the lines, and decoded in place: ``WireBatch.lines`` splits the
serialized message itself. Both follow the protobuf wire format for the message in
proto/observer/api/v1/hubblectl/agent.proto:

    1 json_lines  bytes              (wire type 2)
    2 count       uint32             (wire type 0)
    3 times_ns    repeated sfixed64  (packed: wire type 2; unpacked: wire type 1 each)
    4 json_lines_lz4        repeated bytes   (wire type 2 each)
    5 json_lines_lz4_sizes  repeated uint32  (packed: wire type 2; unpacked: wire type 0 each)

A batch carries its lines either as ``json_lines`` or, for a reader that asked for it with
the request metadata ``FLOW_ENCODING_KEY: FLOW_ENCODING_LZ4``, as LZ4 blocks (raw block
format, no size header): each decompresses to whole lines separated by newlines, without the
newline after its last line, and ``json_lines_lz4_sizes`` gives each one's decompressed size.
``decode_flow_batch`` decompresses them into one buffer (each block plus a newline), so a
decoded batch looks the same whichever way its lines came.

``decode_flow_batch`` accepts anything a conforming encoder may send (fields in any order,
repeated, unknown fields, packed or unpacked ``times_ns``) and raises ``WireError`` on
malformed input. tests/unit/relay/test_relay_wire.py checks both against the generated
``agent_pb2.FlowBatch``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

import lz4.block

from observer.api.lz4native import InflateError, inflate
from observer.errors import ObserverError

_JSON_LINES_TAG: Final = b"\x0a"  # field 1, length-delimited
_COUNT_TAG: Final = b"\x10"  # field 2, varint
_TIMES_TAG: Final = b"\x1a"  # field 3, length-delimited (packed)
_LZ4_TAG: Final = b"\x22"  # field 4, length-delimited, one per block
_LZ4_SIZES_TAG: Final = b"\x2a"  # field 5, length-delimited (packed)

# The request metadata by which a reader asks GetFlowsBatched for LZ4 blocks.
FLOW_ENCODING_KEY: Final = "hubblectl-flow-encoding"
FLOW_ENCODING_LZ4: Final = "lz4"
# At most this many decompressed bytes in one batch: a bound on what a peer can make us allocate.
MAX_LZ4_BATCH_BYTES: Final = 1 << 28
_LITTLE: Final = array("q", [1]).tobytes()[0] == 1


class WireError(ObserverError):
    """A FlowBatch message that does not follow the protobuf wire format."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode(
    parts: list[bytes], size: int, times_ns: Sequence[int] = (), count: int | None = None
) -> bytes:
    """The serialized FlowBatch of the lines ``parts`` (a list this function may change),
    whose JSON with newlines is ``size`` bytes; ``count`` lines (default: one per part)."""
    n = len(parts) if count is None else count
    parts[0] = _JSON_LINES_TAG + _varint(size) + parts[0]
    tail = _COUNT_TAG + _varint(n)
    tail += times_field(times_ns)
    parts.append(tail)  # joined after the last line's newline
    return b"\n".join(parts)


def times_field(times_ns: Sequence[int]) -> bytes:
    """``times_ns`` alone as a serialized FlowBatch (the packed field 3): parse it with
    ``FlowBatch.FromString`` and set the other fields, and the times are filled in C
    (assigning a list to the repeated field converts each int in Python, ~0.4 us each)."""
    if not times_ns:
        return b""
    packed = array("q", times_ns)
    if not _LITTLE:
        packed.byteswap()
    raw = packed.tobytes()
    return _TIMES_TAG + _varint(len(raw)) + raw


def encode_flow_batch(lines: Sequence[bytes], times_ns: Sequence[int] = ()) -> bytes:
    """The serialized ``FlowBatch`` of ``lines`` (JSON lines without their newline):
    ``json_lines`` = each line plus ``\\n``, ``count`` = ``len(lines)``, and ``times_ns`` if
    given (one per line). One copy of the lines (a single ``bytes.join``)."""
    if not lines:
        return b""  # every field at its default
    return _encode(list(lines), sum(map(len, lines)) + len(lines), times_ns)


def encode_line_parts(parts: list[bytes], count: int, times_ns: Sequence[int] = ()) -> bytes:
    """The serialized ``FlowBatch`` of ``count`` lines given as ``parts`` to join with
    newlines (``FlowStore.line_parts``: a part may hold several lines; this function may
    change the list). One copy of the bytes."""
    if not parts:
        return b""
    size = sum(map(len, parts)) + len(parts)
    return _encode(parts, size, times_ns, count)


def encode_flow_batches(lines: Sequence[bytes], max_bytes: int) -> Iterator[bytes]:
    """``lines`` as serialized FlowBatches of about ``max_bytes`` of JSON each: a batch ends
    with the line that reaches ``max_bytes`` (so a longer line is a batch of its own)."""
    # the JSON bytes (with newlines) up to and including each line
    ends = list(accumulate(map((1).__add__, map(len, lines))))
    start, n = 0, len(lines)
    base = 0
    while start < n:
        stop = min(bisect_left(ends, base + max_bytes, start) + 1, n)
        end = ends[stop - 1]
        chunk = lines[start:stop]
        yield _encode(chunk if isinstance(chunk, list) else list(chunk), end - base)
        base = end
        start = stop


def encode_lz4_batch(
    blocks: Sequence[bytes | memoryview], sizes: Sequence[int], count: int, times_ns: Sequence[int] = ()
) -> bytes:
    """The serialized ``FlowBatch`` of ``count`` lines given as LZ4 ``blocks`` (raw block
    format, no size header; each the compression of whole lines joined by newlines, without a
    final newline) of decompressed ``sizes``, with ``times_ns`` (one per line) if given. The
    blocks are not looked into: one copy of their bytes (a single join)."""
    if len(blocks) != len(sizes):
        raise ValueError(f"encode_lz4_batch: {len(blocks)} blocks, {len(sizes)} sizes")
    if not blocks:
        return b""
    # in field order, as protobuf serializes it
    parts: list[bytes | memoryview] = [(_COUNT_TAG + _varint(count) if count else b"") + times_field(times_ns)]
    for block in blocks:
        parts.append(_LZ4_TAG + _varint(len(block)))
        parts.append(block)
    packed = b"".join(map(_varint, sizes))
    parts.append(_LZ4_SIZES_TAG + _varint(len(packed)) + packed)
    return b"".join(parts)


def _inflate(data: bytes, blocks: list[tuple[int, int]], sizes: list[int], native: bool = True) -> bytes:
    """The LZ4 blocks ``data[start:stop]`` of ``blocks``, each decompressed and followed by
    a newline (``lz4native.inflate`` where it loads, else ``lz4.block``: the same bytes)."""
    if len(sizes) != len(blocks):
        raise WireError(f"FlowBatch: {len(blocks)} LZ4 blocks but {len(sizes)} sizes")
    if sum(sizes) + len(sizes) > MAX_LZ4_BATCH_BYTES:
        raise WireError(f"FlowBatch: LZ4 blocks of more than {MAX_LZ4_BATCH_BYTES} bytes")
    if 0 in sizes:
        raise WireError("FlowBatch: an empty LZ4 block")
    if native:
        try:
            lines = inflate(data, blocks, sizes)
        except InflateError as err:
            raise WireError(f"FlowBatch: {err}") from None
        if lines is not None:
            return lines
    out: list[bytes] = []
    view = memoryview(data)
    for (start, stop), size in zip(blocks, sizes, strict=True):
        try:
            raw = lz4.block.decompress(view[start:stop], uncompressed_size=size)
        except lz4.block.LZ4BlockError as err:
            raise WireError(f"FlowBatch: an LZ4 block does not decompress ({err})") from None
        if len(raw) != size:
            raise WireError(f"FlowBatch: an LZ4 block of {len(raw)} bytes, {size} announced")
        out.append(raw)
    out.append(b"")
    view.release()
    return b"\n".join(out)


@dataclass(frozen=True, slots=True)
class WireBatch:
    """A decoded FlowBatch: the serialized message ``data`` with ``json_lines`` at
    ``data[start:end]`` (not copied out), ``count`` as sent, ``times_ns`` (empty when the
    sender did not fill it). For a batch sent as LZ4 blocks, ``data`` is their decompressed
    lines (each block plus a newline) and ``start, end`` span it all."""

    data: bytes
    start: int
    end: int
    count: int
    times_ns: list[int]

    @property
    def json_lines(self) -> bytes:
        return self.data[self.start : self.end]

    def lines(self) -> list[bytes]:
        """The lines of ``json_lines`` without their newlines (no trailing empty line).

        One copy of each line: ``data`` itself is split, and the pieces before and after
        ``json_lines`` (the protobuf framing, the packed times, which may hold newline bytes)
        are dropped, instead of first copying ``json_lines`` out and splitting the copy."""
        data, start, end = self.data, self.start, self.end
        if start == end:
            return []
        if data[end - 1] != 10:  # not newline-terminated: the plain way
            return data[start:end].split(b"\n")
        head = data.rfind(b"\n", 0, start) + 1  # where the piece holding the first line starts
        before = data.count(b"\n", 0, start)
        after = data.count(b"\n", end)
        pieces = data.split(b"\n")
        lines = pieces[before : len(pieces) - after - 1]
        if start > head:
            lines[0] = lines[0][start - head :]
        return lines


def _read_varint(data: bytes | memoryview, i: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if i >= end:
            raise WireError("FlowBatch: truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift >= 70:
            raise WireError("FlowBatch: varint too long")


def decode_flow_batch(data: bytes, *, native: bool = True) -> WireBatch:
    """Parse a serialized FlowBatch (see the module doc). ``json_lines`` stays in ``data``
    (the last occurrence wins, as protobuf merges a scalar field); LZ4 blocks are
    decompressed (WireError if one does not, or to another size than announced, or if the
    batch also has ``json_lines``); ``native=False``: without ``lz4native`` (tests)."""
    view = memoryview(data)
    end = len(data)
    i = 0
    span = (0, 0)
    count = 0
    times: list[int] = []
    blocks: list[tuple[int, int]] = []
    sizes: list[int] = []
    while i < end:
        key, i = _read_varint(view, i, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireError("FlowBatch: field number 0")
        if wire == 2:
            size, i = _read_varint(view, i, end)
            stop = i + size
            if stop > end:
                raise WireError("FlowBatch: truncated field")
            if field == 1:
                span = (i, stop)
            elif field == 3:
                if size % 8:
                    raise WireError("FlowBatch: times_ns is not a whole number of sfixed64")
                packed = array("q")
                packed.frombytes(view[i:stop])
                if not _LITTLE:
                    packed.byteswap()
                times += packed.tolist()
            elif field == 4:
                blocks.append((i, stop))
            elif field == 5:
                j = i
                while j < stop:
                    value, j = _read_varint(view, j, stop)
                    sizes.append(value & 0xFFFFFFFF)
            i = stop
        elif wire == 0:
            value, i = _read_varint(view, i, end)
            if field == 2:
                count = value & 0xFFFFFFFF
            elif field == 5:
                sizes.append(value & 0xFFFFFFFF)
        elif wire == 1:
            if i + 8 > end:
                raise WireError("FlowBatch: truncated fixed64")
            if field == 3:
                times.append(int.from_bytes(view[i : i + 8], "little", signed=True))
            i += 8
        elif wire == 5:
            if i + 4 > end:
                raise WireError("FlowBatch: truncated fixed32")
            i += 4
        else:
            raise WireError(f"FlowBatch: unsupported wire type {wire} (field {field})")
    if blocks or sizes:
        if span[1] > span[0]:
            raise WireError("FlowBatch: both json_lines and LZ4 blocks")
        view.release()
        lines = _inflate(data, blocks, sizes, native)
        return WireBatch(lines, 0, len(lines), count, times)
    view.release()
    return WireBatch(data, span[0], span[1], count, times)
