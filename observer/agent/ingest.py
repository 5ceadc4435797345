"""The ingest path: ring buffer -> decode -> enrich -> store, in batches.

One `Ingest` per agent, driven from the event loop (the store is single-threaded). Each
`drain()` moves the records of the BPF ring buffer into the store as GetFlowsResponse JSON
lines and counts them for metrics. A record that does not decode is counted, never fatal.

Two paths give the same bytes (UUIDs are random either way):

* native (`observer.native`, when `native/build/libhbflow.so` is there): C walks the records
  in the mapped ring and renders each line from tables the Python code rendered (endpoints,
  interfaces, policies, names); the lines go into the store with one `FlowStore.extend` per
  batch. A record it cannot render exactly (an unknown type, an IPv6 address spelled with
  a dotted tail) is handed to the Python path in place, so the order is kept.
* Python: `RingBuffer.drain` copies records out, `FlowDecoder.decode`, `FlowBuilder.build`,
  `orjson.dumps`, `FlowStore.append` per record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import BinaryIO, Final

import orjson

from observer import native as native_mod
from observer.bpf.ringbuf import RingBuffer
from observer.errors import BpfError, DecodeError
from observer.metrics import AgentMetrics
from observer.parser import FlowBuilder, FlowDecoder, drop_reason_name
from observer.store import FlowStore
from observer.store.ring import EntryKind

log = logging.getLogger(__name__)

MAX_DRAIN_PER_CALL: Final = 65536
BATCH: Final = 4096
NATIVE_BATCH: Final = 1024

_TYPE_NAMES: Final = {1: "Drop", 4: "Trace", 5: "PolicyVerdict"}
_OBS_NAMES: Final = {0: "to-endpoint", 5: "from-endpoint"}
_PROTO_NAMES: Final = {6: "TCP", 17: "UDP", 1: "ICMPv4", 58: "ICMPv6", 132: "SCTP"}
# wall times the store can hold (int64 nanoseconds); a record outside is a decode error
_WALL_MIN: Final = -(2**63)
_WALL_MAX: Final = 2**63 - 1

Counts = dict[tuple[int, int, int], int]


def boot_to_wall_offset() -> int:
    """Nanoseconds to add to a CLOCK_BOOTTIME stamp (the datapath's ts_ns) for wall time."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Ingest:
    """Moves ring-buffer records into ``store``; ``out`` (if given) gets every line too.

    ``native``: None uses the native path when the library loads and the builder's resolver
    suits it (else the Python path, ``native_problem`` says why); True requires it (raises
    ``NativeError``); False keeps to Python. ``wall_offset`` returns what to add to a
    record's ts_ns for its wall time (read once per drain; tests pin it).
    """

    def __init__(
        self,
        ring: RingBuffer,
        decoder: FlowDecoder,
        builder: FlowBuilder,
        store: FlowStore,
        metrics: AgentMetrics,
        out: BinaryIO | None = None,
        *,
        native: bool | None = None,
        wall_offset: Callable[[], int] = boot_to_wall_offset,
    ) -> None:
        self.ring = ring
        self.decoder = decoder
        self.builder = builder
        self.store = store
        self.metrics = metrics
        self.out = out
        self.events = 0
        self._wall_offset = wall_offset
        self._renderer: native_mod.FlowRenderer | None = None
        self._nring: native_mod.NativeRing | None = None
        self.native_problem: str | None = "disabled" if native is False else None
        if native is not False:
            self._open_native(required=native is True)

    def _open_native(self, required: bool) -> None:
        lib = native_mod.load()
        try:
            if lib is None:
                raise native_mod.NativeError(native_mod.load_problem() or "no native library")
            renderer = native_mod.FlowRenderer(lib, self.builder, max_records=NATIVE_BATCH)
            try:
                nring = native_mod.NativeRing(lib, self.ring.map_fd, self.ring.size)
            except BpfError:
                renderer.close()
                raise
        except (native_mod.NativeError, BpfError) as e:
            if required:
                raise native_mod.NativeError(f"native ingest unavailable: {e}") from e
            self.native_problem = str(e)
            log.warning("ingest: Python path, the native one is unavailable (%s)", e)
            return
        self._renderer, self._nring = renderer, nring
        log.info("ingest: native path (%s)", lib.path)

    @property
    def native(self) -> bool:
        """Whether drain() uses the native path."""
        return self._renderer is not None

    def close(self) -> None:
        """Release the native path's mapping and tables (the ring stays the caller's)."""
        if self._renderer is not None:
            self._renderer.close()
        if self._nring is not None:
            self._nring.close()
        self._renderer = self._nring = None

    def _fall_back(self, problem: str) -> None:
        log.warning("ingest: native path off, Python path from now on (%s)", problem)
        self.native_problem = problem
        self.close()

    def drain(self, limit: int = MAX_DRAIN_PER_CALL) -> int:
        """Move what the ring buffer holds (up to ``limit`` records) into the store."""
        renderer = self._renderer
        if renderer is not None:
            if self.ring.closed:
                self.close()
            else:
                try:
                    renderer.sync()
                except native_mod.NativeError as e:
                    self._fall_back(str(e))
                else:
                    n = self._drain_native(renderer, limit)
                    if self._renderer is not None or n >= limit:
                        return n
                    return n + self._drain_python(limit - n)  # it fell back on the way
        return self._drain_python(limit)

    def _drain_native(self, renderer: native_mod.FlowRenderer, limit: int) -> int:
        nring = self._nring
        assert nring is not None
        ring = self.ring
        offset = self._wall_offset()
        extend = self.store.extend
        render = renderer.drain
        out = self.out
        with_data = out is not None
        flow_kind = EntryKind.FLOW
        counts: Counts = {}
        total = errors = 0
        problem = None
        while total < limit:
            try:
                chunk = render(nring, offset, limit - total, with_data=with_data)
            except native_mod.NativeError as e:  # nothing consumed by the failed call
                problem = str(e)
                break
            total += chunk.records
            errors += chunk.errors
            if chunk.lines:
                extend(chunk.times, flow_kind, chunk.lines, one_line=True)
                if out is not None:
                    out.write(chunk.data)
                    out.flush()
            if chunk.needs_python:
                records = ring.drain(1)
                if not records:
                    break
                total += len(records)
                errors += self._python_records(records, offset, counts)
            elif not chunk.more or not chunk.records:
                break
        if total:
            for key, n in renderer.take_counts().items():
                counts[key] = counts.get(key, 0) + n
            self.events += total
            self.store.notify()
            self._count(counts, errors)
        if problem is not None:
            self._fall_back(problem)
        return total

    def _drain_python(self, limit: int) -> int:
        ring = self.ring
        total = 0
        offset = self._wall_offset()
        counts: Counts = {}
        errors = 0
        while total < limit:
            records = ring.drain(BATCH)
            if not records:
                break
            total += len(records)
            errors += self._python_records(records, offset, counts)
        if total:
            self.events += total
            self.store.notify()
            self._count(counts, errors)
        return total

    def _python_records(self, records: list[bytes], offset: int, counts: Counts) -> int:
        """Decode, build, store, count and (``--print-flows``) print ``records``. Returns how
        many did not decode."""
        decode = self.decoder.decode
        build = self.builder.build
        append = self.store.append
        dumps = orjson.dumps
        flow_kind = EntryKind.FLOW
        errors = 0
        lines: list[bytes] = []
        for rec in records:
            try:
                ev = decode(rec)
            except DecodeError:
                errors += 1
                continue
            wall = ev.ts_ns + offset
            if not _WALL_MIN <= wall <= _WALL_MAX:
                errors += 1
                continue
            data = dumps(build(ev, wall))
            append(wall, flow_kind, data)
            key = (ev.type, ev.sub_type, ev.l4_proto)
            counts[key] = counts.get(key, 0) + 1
            lines.append(data)
        if self.out is not None and lines:
            self.out.write(b"\n".join(lines) + b"\n")
            self.out.flush()
        return errors

    def _count(self, counts: Counts, errors: int) -> None:
        m = self.metrics
        m.decode_errors += errors
        for (typ, sub, proto), n in counts.items():
            name = _TYPE_NAMES.get(typ, str(typ))
            if typ == 1:
                reason = drop_reason_name(sub)
                m.flows[(name, reason, "DROPPED")] += n
                m.drops[(reason, _PROTO_NAMES.get(proto, str(proto)))] += n
            elif typ == 4:
                m.flows[(name, _OBS_NAMES.get(sub, str(sub)), "FORWARDED")] += n
            else:
                m.flows[(name, str(sub), "")] += n
