"""Ingest: events/s through drain + decode + enrich + store on one core, and whether any is lost.

Method: the real datapath program (hb_from_endpoint, aggregation level none, so every run
emits a record) is driven with BPF_PROG_TEST_RUN from a producer thread at full speed into a
64 MiB ring buffer (~520,000 records), while the agent's own ingest path
(observer.agent.ingest.Ingest, enrich with a resolver knowing both endpoints, store) consumes
on the main thread. Both paths are measured: native (native/build/libhbflow.so renders the
JSON lines in C straight from the mapped ring, FlowStore.extend per batch) and Python (mmap
drain, decode, FlowBuilder.build, orjson, FlowStore.append). Reported per path: events/s
consumed while the producer runs (more events than the ring holds, so a slower consumer
shows up as kernel losses), the producer's own rate meanwhile, the kernel lost counter, and the consumer alone on records
already in the ring (pure userspace cost). For the native path also, to show where the
time goes, the consumer alone with a store that does not LZ4-seal its blocks, and the
renderer alone (C + the Python objects for the lines, no store).

    python3 bench/ingest_bench.py [--quick] [--python-only]

Needs root, bpf/build/datapath.o (`make -C bpf`) and for the native path
native/build/libhbflow.so (`make -C native`).
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from observer import __version__, native  # noqa: E402
from observer.agent.agent import COMPACT_BUDGET_S  # noqa: E402
from observer.agent.ingest import (  # noqa: E402
    MAX_DRAIN_PER_CALL,
    Ingest,
    boot_to_wall_offset,
)
from observer.bpf import loader  # noqa: E402
from observer.bpf.ringbuf import RingBuffer  # noqa: E402
from observer.enrich.resolver import EndpointInfo, ResolverSnapshot, StaticResolver  # noqa: E402
from observer.metrics import AgentMetrics  # noqa: E402
from observer.parser import FlowBuilder, FlowDecoder  # noqa: E402
from observer.store import FlowStore  # noqa: E402


def _frame() -> bytes:
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    src, dst = socket.inet_aton("10.213.0.5"), socket.inet_aton("10.213.0.7")
    tcp = struct.pack("!HHIIBBHHH", 41391, 80, 1, 1, 5 << 4, 0x10, 65535, 0, 0) + b"x" * 64
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    return eth + ip + tcp


def _pipeline(ring_bytes: int, use_native: bool) -> tuple[loader.BpfObject, Ingest]:
    obj = loader.BpfObject.open(REPO / "bpf" / "build" / "datapath.o", None, ring_bytes=ring_bytes)
    loader.write_config(obj, loader.DatapathConfig(aggregation_level=loader.AGG_NONE))
    ring = RingBuffer(obj.map_fd(loader.RING_MAP), obj.map(loader.RING_MAP).max_entries)
    labels = ("k8s:app=a", "k8s:io.kubernetes.pod.namespace=default")
    snap = ResolverSnapshot.from_endpoints(
        [
            (["10.213.0.5"], EndpointInfo(1, 12345, "default", "client", labels, "default")),
            (["10.213.0.7"], EndpointInfo(2, 5678, "default", "server", labels, "default")),
        ]
    )
    builder = FlowBuilder("default/bench", StaticResolver(snap), __version__)
    ingest = Ingest(
        ring, FlowDecoder(), builder, FlowStore(1048575, defer=True), AgentMetrics(),
        native=use_native,
    )  # fmt: skip
    return obj, ingest


def _measure(use_native: bool, total: int, alone: int) -> dict[str, Any]:
    # the agent's store: history blocks are LZ4-compressed when ingest is idle
    obj, ingest = _pipeline(64 << 20, use_native)
    prog = obj.prog_fd(loader.PROG_FROM_ENDPOINT)
    frame = _frame()
    produced = 0
    produce_s = 0.0
    done = threading.Event()

    def produce() -> None:
        nonlocal produced, produce_s
        step = 20_000
        p0 = time.perf_counter()
        while produced < total:
            loader.prog_test_run(prog, frame, repeat=step)
            produced += step
        produce_s = time.perf_counter() - p0
        done.set()

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    th = threading.Thread(target=produce)
    th.start()
    consumed = 0
    while not done.is_set() or ingest.ring.available():
        n = ingest.drain()
        consumed += n
        if n < MAX_DRAIN_PER_CALL:  # as the agent's loop: compress history when drained
            ingest.store.compact(COMPACT_BUDGET_S)
        if not n:
            time.sleep(0.001)
    th.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    lost = loader.read_lost(obj).total
    # userspace only: fill the ring first, then drain
    loader.prog_test_run(prog, frame, repeat=alone)
    t1 = time.perf_counter()
    n = 0
    while True:
        k = ingest.drain()
        if not k:
            break
        n += k
    drain_only = n / (time.perf_counter() - t1)
    # what the burst left uncompressed, and how long the idle-time compaction takes
    backlog = ingest.store.compact(0)
    t3 = time.perf_counter()
    ingest.store.compact(3600)
    compact_s = time.perf_counter() - t3
    figures: dict[str, Any] = {
        "events_per_s_concurrent": round(consumed / wall),
        "producer_events_per_s": round(produced / produce_s),
        "events_per_s_drain_only": round(drain_only),
        "uncompressed_blocks_after_burst": backlog,
        "compact_after_burst_s": round(compact_s, 2),
        "events": consumed,
        "kernel_lost": lost,
        "cpu_s": round(cpu, 2),
    }
    if use_native:
        # the same with a store that does not seal (LZ4) its blocks: the sealing's share
        ingest.store = FlowStore(1048575, seal=False)
        loader.prog_test_run(prog, frame, repeat=alone)
        t1 = time.perf_counter()
        n = 0
        while k := ingest.drain():
            n += k
        figures["events_per_s_drain_only_unsealed_store"] = round(n / (time.perf_counter() - t1))
        # the renderer alone (C walk + render, the line objects), no store
        lib = native.require()
        renderer = native.FlowRenderer(lib, ingest.builder)
        nring = native.NativeRing(lib, ingest.ring.map_fd, ingest.ring.size)
        loader.prog_test_run(prog, frame, repeat=alone)
        offset = boot_to_wall_offset()
        t2 = time.perf_counter()
        n = 0
        while True:
            chunk = renderer.drain(nring, offset)
            n += chunk.records
            if not chunk.more:
                break
        figures["render_only_events_per_s"] = round(n / (time.perf_counter() - t2))
        nring.close()
        renderer.close()
    ingest.close()
    ingest.ring.close()
    obj.close()
    return figures


def run(quick: bool = False, python_only: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not python_only:
        if native.load() is None:
            out["ingest_native"] = f"unavailable: {native.load_problem()}"
        else:
            total = 300_000 if quick else 2_000_000
            for k, v in _measure(True, total, 100_000 if quick else 400_000).items():
                out[f"ingest_native_{k}"] = v
    total = 50_000 if quick else 400_000
    for k, v in _measure(False, total, 50_000 if quick else 100_000).items():
        out[f"ingest_python_{k}"] = v
    return out


if __name__ == "__main__":
    for k, v in run("--quick" in sys.argv, "--python-only" in sys.argv).items():
        print(f"{k:54} {v}")
