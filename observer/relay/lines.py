"""The relay's line table: node batches kept whole, their lines named by integer ids.

A node's ``FlowBatch`` arrives as one serialized message (``observer.api.wire.WireBatch``);
splitting it into one ``bytes`` per line (an allocation and a copy of ~1 KB each) and joining
the merged lines again was most of the relay's own work. Here the message is kept as it
came: ``LineTable.add_batch`` finds where each line starts (``hb_wire_offsets`` in
native/hbwire.c) and gives the lines consecutive ids, which the merge orders like any item;
``LineTable.encode`` then copies the lines of a list of ids straight into the outgoing
serialized FlowBatches (``hb_wire_plan`` + ``hb_wire_fill``), cut as
``wire.encode_flow_batches`` cuts them (byte-identical output). A batch is dropped once every
one of its ids has gone out (``encode``, ``take_lines`` or ``release``).

Without the native library (or without CPython's ``pythonapi``) the table splits each batch
(``WireBatch.lines``) into a dict from id to line and ``encode`` is
``wire.encode_flow_batches``: the same messages, at the cost of splitting and joining in
Python. tests/unit/relay/test_relay_lines.py compares the two.

Ids are unique within one table (one relay request); a table is not thread-safe.
"""

from __future__ import annotations

import ctypes
import functools
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from ctypes import c_char_p, c_int64, c_ssize_t, c_uint32, c_void_p
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Final

from observer.api.wire import WireBatch, encode_flow_batches
from observer.errors import ObserverError

VERSION: Final = 1  # HB_WIRE_VERSION in native/hbwire.c


class LineTableError(ObserverError):
    """An id that is not (or no longer) in the table: a bug in the caller."""


@dataclass(frozen=True, slots=True)
class _Functions:
    offsets: Any
    plan: Any
    fill: Any
    new_bytes: Callable[[None, int], bytes]


def bind(lib: object) -> _Functions | None:
    """The ``hb_wire_*`` entry points of a loaded library (a ``ctypes.CDLL`` or
    ``observer.native._lib``'s ``Library``), or None if it lacks them or their version
    differs, or CPython's ``PyBytes_FromStringAndSize`` is not reachable."""
    from observer.native._lib import open_cdll

    cdll = open_cdll(lib)
    if cdll is None:
        return None
    try:
        version = cdll.hb_wire_version
        offsets, plan, fill = cdll.hb_wire_offsets, cdll.hb_wire_plan, cdll.hb_wire_fill
        new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
    except AttributeError:
        return None
    version.restype, version.argtypes = c_uint32, ()
    if version() != VERSION:
        return None
    offsets.restype = c_int64
    offsets.argtypes = (c_char_p, c_int64, c_int64, c_void_p, c_int64)
    plan.restype = c_int64
    plan.argtypes = (c_void_p, c_int64, c_void_p, c_void_p, c_void_p, c_int64, c_int64, c_void_p, c_void_p, c_void_p)
    fill.restype = c_int64
    fill.argtypes = (c_void_p, c_int64, c_void_p, c_void_p, c_void_p, c_void_p, c_int64, c_int64, c_char_p, c_int64)
    # a new bytes object whose contents hb_wire_fill writes before anything else sees it
    new_bytes.restype = ctypes.py_object
    new_bytes.argtypes = (c_void_p, c_ssize_t)
    return _Functions(offsets, plan, fill, new_bytes)


@functools.cache
def load_functions() -> _Functions | None:
    """The entry points from ``observer.native``'s library, or None when it does not load."""
    try:
        from observer.native import _lib
    except ImportError:
        return None
    lib = _lib.load()
    return None if lib is None else bind(lib)


def _varint_len(value: int) -> int:
    n = 1
    while value > 0x7F:
        value >>= 7
        n += 1
    return n


class _Batch:
    """One batch of the native table: ids ``[base, base + count)``, line i is
    ``data[offs[i] : offs[i + 1] - 1]``; ``left`` lines not yet out."""

    __slots__ = ("base", "count", "data", "left", "offs")

    def __init__(self, base: int, count: int, data: bytes, offs: array[int]) -> None:
        self.base = base
        self.count = count
        self.data = data
        self.offs = offs
        self.left = count


_ZERO: Final = array("q", [0])


class LineTable:
    """The lines a relay request holds, by id (see the module doc).

    Native: the batches as they came, with their line offsets. Python fallback: one dict
    from id to line (``bytes``), so taking lines out is C-level (``map(dict.pop, ids)``)."""

    __slots__ = ("_bases", "_batches", "_fn", "_lines", "_next", "_tables")

    def __init__(self, *, native: bool = True) -> None:
        self._fn = load_functions() if native else None
        self._batches: list[_Batch] = []  # by base, ascending (native)
        self._bases: list[int] = []
        self._lines: dict[int, bytes] = {}  # the Python fallback's lines
        self._next = 0
        self._tables: tuple[Any, ...] | None = None  # ctypes arrays of the batches (cached)

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __len__(self) -> int:
        """The lines held (not yet out)."""
        if self._fn is None:
            return len(self._lines)
        return sum(b.left for b in self._batches)

    def _ids(self, count: int) -> range:
        base = self._next
        self._next = base + count
        return range(base, base + count)

    def _register(self, count: int, data: bytes, offs: array[int]) -> list[int]:
        ids = self._ids(count)
        self._batches.append(_Batch(ids.start, count, data, offs))
        self._bases.append(ids.start)
        self._tables = None
        return list(ids)

    def _keep(self, lines: Sequence[bytes]) -> list[int]:
        ids = self._ids(len(lines))
        self._lines.update(zip(ids, lines, strict=True))
        return list(ids)

    def add_batch(self, batch: WireBatch, expect: int | None = None) -> list[int] | None:
        """Ids for the lines of ``batch``'s ``json_lines``, in order. None (and nothing
        added) if it has an empty line, no line, or not ``expect`` lines when given."""
        data, start, end = batch.data, batch.start, batch.end
        if start >= end:
            return None
        fn = self._fn
        if fn is None:
            lines = batch.lines()
            if not all(lines) or (expect is not None and len(lines) != expect):
                return None
            return self._keep(lines)
        cap = (expect if expect is not None else batch.count) + 1
        offs = _ZERO * max(2, cap)
        n = fn.offsets(data, start, end, offs.buffer_info()[0], len(offs))
        if n == -2:  # more lines than expected
            if expect is not None:
                return None
            offs = _ZERO * (data.count(b"\n", start, end) + 2)
            n = fn.offsets(data, start, end, offs.buffer_info()[0], len(offs))
        if n <= 0 or (expect is not None and n != expect):
            return None
        return self._register(n, data, offs)

    def add_lines(self, lines: Sequence[bytes]) -> list[int]:
        """Ids for ``lines`` (JSON lines without their newline), in order."""
        if not lines:
            return []
        if self._fn is None:
            return self._keep(lines)
        data = b"\n".join([*lines, b""])
        offs = array("q", accumulate(map((1).__add__, map(len, lines)), initial=0))
        return self._register(len(lines), data, offs)

    def _batch(self, line_id: int) -> _Batch:
        j = bisect_right(self._bases, line_id) - 1
        if j >= 0:
            b = self._batches[j]
            if line_id - b.base < b.count:
                return b
        raise LineTableError(f"line table: no line {line_id}")

    def line(self, line_id: int) -> bytes:
        """The line of an id still held (the id stays held)."""
        if self._fn is None:
            try:
                return self._lines[line_id]
            except KeyError:
                raise LineTableError(f"line table: no line {line_id}") from None
        b = self._batch(line_id)
        i = line_id - b.base
        return b.data[b.offs[i] : b.offs[i + 1] - 1]

    def _count_out(self, batches: Iterable[tuple[_Batch, int]]) -> None:
        gone = False
        for b, n in batches:
            b.left -= n
            gone = gone or b.left <= 0
        if gone:
            keep = [b for b in self._batches if b.left > 0]
            self._batches = keep
            self._bases = [b.base for b in keep]
            self._tables = None

    def _take(self, ids: Sequence[int], copy: bool) -> list[bytes]:
        if self._fn is None:
            try:
                return list(map(self._lines.pop, ids))
            except KeyError as e:
                raise LineTableError(f"line table: no line {e.args[0]}") from None
        out: list[bytes] = []
        counts: dict[int, tuple[_Batch, int]] = {}
        b: _Batch | None = None
        lo = hi = 0
        data = b""
        offs = _ZERO
        for line_id in ids:
            if not lo <= line_id < hi:
                b = self._batch(line_id)
                lo, hi, data, offs = b.base, b.base + b.count, b.data, b.offs
            i = line_id - lo
            if copy:
                out.append(data[offs[i] : offs[i + 1] - 1])
            assert b is not None
            key = id(b)
            counts[key] = (b, counts[key][1] + 1 if key in counts else 1)
        self._count_out(counts.values())
        return out

    def release(self, ids: Sequence[int]) -> None:
        """The lines of ``ids`` will not go out: let them go."""
        self._take(ids, copy=False)

    def take_lines(self, ids: Sequence[int]) -> list[bytes]:
        """The lines of ``ids`` (as ``bytes``), which go out."""
        return self._take(ids, copy=True)

    def encode(self, ids: Sequence[int], max_bytes: int) -> list[bytes]:
        """The serialized FlowBatches of the lines of ``ids``, in that order, as
        ``wire.encode_flow_batches(lines, max_bytes)`` gives them; the ids go out."""
        if not ids:
            return []
        fn = self._fn
        if fn is None:
            return list(encode_flow_batches(self.take_lines(ids), max_bytes))
        n = len(ids)
        k = len(self._batches)
        if self._tables is None:
            batches = self._batches
            bases = (c_int64 * k)(*self._bases)
            counts = (c_int64 * k)(*[b.count for b in batches])
            datas = (c_char_p * k)(*[b.data for b in batches])
            offs = (c_void_p * k)(*[b.offs.buffer_info()[0] for b in batches])
            self._tables = (bases, counts, datas, offs)
        bases, counts, datas, offs = self._tables
        id_arr = array("q", ids)
        id_ptr = id_arr.buffer_info()[0]
        ends = _ZERO * n
        sizes = _ZERO * n
        used = _ZERO * k
        m = fn.plan(
            id_ptr, n, bases, counts, offs, k, max_bytes,
            ends.buffer_info()[0], sizes.buffer_info()[0], used.buffer_info()[0],
        )  # fmt: skip
        if m < 0:
            raise LineTableError("line table: an id to encode is not held")
        out: list[bytes] = []
        start = 0
        for j in range(m):
            stop, size = ends[j], sizes[j]
            count = stop - start
            total = 2 + _varint_len(size) + size + _varint_len(count)
            message = fn.new_bytes(None, total)
            written = fn.fill(id_ptr + 8 * start, count, bases, counts, datas, offs, k, size, message, total)
            if written != total:
                raise LineTableError("line table: a FlowBatch did not come out at its planned size")
            out.append(message)
            start = stop
        self._count_out(zip(self._batches, used, strict=True))
        return out
