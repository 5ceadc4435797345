"""Ring buffer -> flow JSON lines in C: ``NativeRing`` (the mapping) and ``FlowRenderer``.

``FlowRenderer.drain(ring, offset_ns, max_records)`` walks the committed records of the ring
and returns a ``Chunk``: the lines (exact-size ``bytes``, one per rendered record, what
``orjson.dumps(builder.build(decode(record), wall_ns))`` gives, UUIDs aside), their wall
times, the same lines newline-joined for ``--print-flows``, and how many records it consumed
and skipped as malformed. When it stops with ``needs_python`` the next record is one only the
Python path renders exactly; the consumer position points at it, so ``RingBuffer.drain(1)``
returns it.

The renderer reads the builder's resolver through tables (``observer.native.tables``) it
rebuilds when the resolver's snapshot object changes (``StaticResolver.replace`` swaps it),
checked by ``sync()`` at every drain.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import weakref
from array import array
from typing import Final, NamedTuple

from observer.enrich.resolver import ResolverSnapshot, StaticResolver
from observer.errors import BpfError
from observer.native import _lib
from observer.native.tables import TableError, Tables, pack, resolver_tables, static_tables
from observer.parser.flow import FlowBuilder

DEFAULT_MAX_RECORDS: Final = 1024
_COUNT_BATCH: Final = 256
_OUT_MIN: Final = 1 << 20


class Chunk(NamedTuple):
    lines: tuple[bytes, ...]
    times: array[int]
    data: bytes  # with_data: the lines, each followed by b"\n"; else b""
    records: int  # records consumed: len(lines) + errors
    errors: int  # malformed records skipped
    needs_python: bool  # the next record must go through the Python path
    more: bool  # stopped at max_records or a full buffer: call again


_EMPTY_TIMES: Final = array("q")


class NativeRing:
    """A BPF ring buffer mapped by the native library (its own mapping of the map fd).

    Shares the consumer position with any ``RingBuffer`` over the same map (it is the same
    page), so the two can take turns; never drain from both at once.
    """

    def __init__(self, lib: _lib.Library, map_fd: int, size: int) -> None:
        err = ctypes.c_int(0)
        handle = lib.ring_open(map_fd, size, ctypes.byref(err))
        if not handle:
            raise BpfError(err.value or errno.EIO, f"map ring buffer fd {map_fd} (native)")
        self._lib = lib
        self.handle: int | None = handle
        self._finalizer = weakref.finalize(self, lib.ring_close, handle)

    def available(self) -> int:
        if self.handle is None:
            raise BpfError(errno.EBADF, "use closed native ring buffer")
        return int(self._lib.ring_available(self.handle))

    @property
    def closed(self) -> bool:
        return self.handle is None

    def close(self) -> None:
        """Unmap (idempotent)."""
        self.handle = None
        self._finalizer()


class FlowRenderer:
    """Renders ring records as GetFlowsResponse JSON lines for one ``FlowBuilder``.

    Raises ``NativeError`` if the builder's resolver is not a ``StaticResolver`` (its
    answers must be enumerable) or a value cannot be carried exactly; the caller then keeps
    to the Python path. Not thread-safe: one renderer per consumer.
    """

    def __init__(
        self,
        lib: _lib.Library,
        builder: FlowBuilder,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        seed: int | None = None,
    ) -> None:
        resolver = builder.resolver
        if type(resolver) is not StaticResolver:
            raise _lib.NativeError(
                f"the native renderer needs a StaticResolver, not {type(resolver).__name__}"
            )
        if max_records < 1:
            raise ValueError("max_records must be positive")
        self._lib = lib
        self._resolver: StaticResolver = resolver
        self._snapshot: ResolverSnapshot | None = None
        ctx = lib.ctx_new()
        if not ctx:
            raise _lib.NativeError("hb_ctx_new failed (out of memory, or getrandom failed)")
        self._ctx: int = ctx
        self._finalizer = weakref.finalize(self, lib.ctx_free, ctx)
        if seed is not None:
            lib.ctx_seed(ctx, seed)
        self._max_records = max_records
        self._times = (ctypes.c_int64 * max_records)()
        self._fmt = ctypes.create_string_buffer(16 * max_records + 64)
        self._out = ctypes.create_string_buffer(0)
        self._args = _lib.DrainArgs()
        self._args.times = ctypes.addressof(self._times)
        self._args.fmt = ctypes.addressof(self._fmt)
        self._args.fmt_cap = len(self._fmt)
        self._keys = (ctypes.c_uint32 * _COUNT_BATCH)()
        self._counts = (ctypes.c_uint64 * _COUNT_BATCH)()
        try:
            self._load(static_tables(builder))
            self.sync()
        except (TableError, _lib.NativeError) as e:
            self.close()
            raise _lib.NativeError(str(e)) from e

    # --- tables ----------------------------------------------------------------------------

    def _load(self, tables: Tables) -> None:
        lib, ctx = self._lib, self._ctx
        for tid, entries in tables.indexed.items():
            blob, offsets = pack(entries)
            rc = lib.set_table(ctx, tid, len(entries), offsets, blob)
            if rc:
                raise _lib.NativeError(f"hb_set_table({tid}) failed: {rc}")
        for kid, pairs in tables.keyed.items():
            keys = b"".join(k for k, _ in pairs)
            blob, offsets = pack([v for _, v in pairs])
            rc = lib.set_keyed(ctx, kid, len(pairs), keys, offsets, blob)
            if rc:
                raise _lib.NativeError(f"hb_set_keyed({kid}) failed: {rc}")

    def _size_output(self) -> None:
        max_line = int(self._lib.max_line(self._ctx))
        if not max_line:
            raise _lib.NativeError("native tables incomplete")
        need = max(_OUT_MIN, 4 * max_line)
        if len(self._out) < need:
            self._out = ctypes.create_string_buffer(need)
            self._args.out = ctypes.addressof(self._out)
            self._args.out_cap = need

    def sync(self) -> None:
        """Reload the resolver tables if the resolver's snapshot changed since the last call.

        Raises ``NativeError`` (tables left as they were) if the new snapshot holds a value
        the renderer cannot carry."""
        snap = self._resolver.snapshot
        if snap is self._snapshot:
            return
        try:
            tables = resolver_tables(self._resolver)
        except TableError as e:
            raise _lib.NativeError(str(e)) from e
        self._load(tables)
        self._snapshot = snap
        self._size_output()

    # --- rendering -------------------------------------------------------------------------

    def drain(
        self,
        ring: NativeRing,
        offset_ns: int,
        max_records: int | None = None,
        *,
        with_data: bool = False,
    ) -> Chunk:
        """Render up to ``max_records`` records (at most the renderer's batch size) with wall
        time ``ts_ns + offset_ns``; ``with_data`` also returns the newline-joined lines."""
        if ring.handle is None:
            raise BpfError(errno.EBADF, "use closed native ring buffer")
        if self._ctx == 0:
            raise _lib.NativeError("use closed renderer")
        args = self._args
        args.offset_ns = offset_ns
        limit = self._max_records if max_records is None else min(max_records, self._max_records)
        args.max_records = max(limit, 0)
        rc = self._lib.drain(self._ctx, ring.handle, ctypes.byref(args))
        if rc:
            raise _lib.NativeError(f"hb_drain failed: {rc}")
        n = args.lines
        if n:
            lines: tuple[bytes, ...] = struct.Struct(
                ctypes.string_at(self._args.fmt, args.fmt_len)
            ).unpack_from(self._out)
            times = array("q", ctypes.string_at(self._args.times, 8 * n))
            data = ctypes.string_at(self._args.out, args.out_len) if with_data else b""
        else:
            lines, times, data = (), _EMPTY_TIMES, b""
        return Chunk(
            lines,
            times,
            data,
            args.records,
            args.errors,
            args.status == _lib.STATUS_PYTHON,
            args.status == _lib.STATUS_LIMIT,
        )

    def take_counts(self) -> dict[tuple[int, int, int], int]:
        """Lines rendered per (type, sub_type, l4_proto) since the last call."""
        out: dict[tuple[int, int, int], int] = {}
        keys, counts = self._keys, self._counts
        while True:
            n = self._lib.take_counts(self._ctx, keys, counts, _COUNT_BATCH)
            for i in range(n):
                k = keys[i]
                out[(k >> 16, (k >> 8) & 0xFF, k & 0xFF)] = counts[i]
            if n < _COUNT_BATCH:
                return out

    def close(self) -> None:
        """Free the native context (idempotent)."""
        self._ctx = 0
        self._finalizer()
