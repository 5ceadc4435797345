"""The ingest path: ring buffer -> decode -> enrich -> store, in batches.

One `Ingest` per agent, driven from the event loop (the store is single-threaded). Each
`drain()` copies records out of the BPF ring buffer in batches, decodes and enriches each
one into a GetFlowsResponse dict, stores its compact JSON and counts it for metrics. A
record that does not decode is counted, never fatal.
"""

from __future__ import annotations

import time
from typing import BinaryIO, Final

import orjson

from observer.bpf.ringbuf import RingBuffer
from observer.errors import DecodeError
from observer.metrics import AgentMetrics
from observer.parser import FlowBuilder, FlowDecoder, drop_reason_name
from observer.store import FlowStore
from observer.store.ring import EntryKind

MAX_DRAIN_PER_CALL: Final = 65536
BATCH: Final = 4096

_TYPE_NAMES: Final = {1: "Drop", 4: "Trace", 5: "PolicyVerdict"}
_OBS_NAMES: Final = {0: "to-endpoint", 5: "from-endpoint"}
_PROTO_NAMES: Final = {6: "TCP", 17: "UDP", 1: "ICMPv4", 58: "ICMPv6", 132: "SCTP"}


class Ingest:
    def __init__(
        self,
        ring: RingBuffer,
        decoder: FlowDecoder,
        builder: FlowBuilder,
        store: FlowStore,
        metrics: AgentMetrics,
        out: BinaryIO | None = None,
    ) -> None:
        self.ring = ring
        self.decoder = decoder
        self.builder = builder
        self.store = store
        self.metrics = metrics
        self.out = out
        self.events = 0

    def drain(self, limit: int = MAX_DRAIN_PER_CALL) -> int:
        """Move what the ring buffer holds (up to ``limit`` records) into the store."""
        ring = self.ring
        total = 0
        offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        decode = self.decoder.decode
        build = self.builder.build
        append = self.store.append
        dumps = orjson.dumps
        out = self.out
        flow_kind = EntryKind.FLOW
        counts: dict[tuple[int, int, int], int] = {}
        errors = 0
        while total < limit:
            records = ring.drain(BATCH)
            if not records:
                break
            total += len(records)
            lines = []
            for rec in records:
                try:
                    ev = decode(rec)
                except DecodeError:
                    errors += 1
                    continue
                wall = ev.ts_ns + offset
                data = dumps(build(ev, wall))
                append(wall, flow_kind, data)
                key = (ev.type, ev.sub_type, ev.l4_proto)
                counts[key] = counts.get(key, 0) + 1
                if out is not None:
                    lines.append(data)
            if out is not None and lines:
                out.write(b"\n".join(lines) + b"\n")
                out.flush()
        if total:
            self.events += total
            self.store.notify()
            self._count(counts, errors)
        return total

    def _count(self, counts: dict[tuple[int, int, int], int], errors: int) -> None:
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
