"""Ingest: events/s through drain + decode + enrich + store on one core, and whether any is lost.

Method: the real datapath program (hb_from_endpoint, aggregation level none, so every run
emits a record) is driven with BPF_PROG_TEST_RUN from a producer thread at full speed into a
64 MiB ring buffer, while the agent's own ingest path (observer.agent.ingest.Ingest: mmap
drain, decode, enrich with a resolver knowing both endpoints, orjson, store) consumes on the
main thread. Reported: events/s consumed, producer events/s, kernel lost counter, and the
consumer's rate on records already in the ring (pure userspace cost).

Needs root and bpf/build/datapath.o (`make -C bpf`).
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

from observer import __version__  # noqa: E402
from observer.agent.ingest import Ingest  # noqa: E402
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


def _pipeline(ring_bytes: int) -> tuple[loader.BpfObject, Ingest]:
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
    ingest = Ingest(ring, FlowDecoder(), builder, FlowStore(1048575), AgentMetrics())
    return obj, ingest


def run(quick: bool = False) -> dict[str, Any]:
    total = 100_000 if quick else 400_000
    obj, ingest = _pipeline(64 << 20)
    prog = obj.prog_fd(loader.PROG_FROM_ENDPOINT)
    frame = _frame()
    produced = 0
    done = threading.Event()

    def produce() -> None:
        nonlocal produced
        step = 20_000
        while produced < total:
            loader.prog_test_run(prog, frame, repeat=step)
            produced += step
        done.set()

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    th = threading.Thread(target=produce)
    th.start()
    consumed = 0
    while not done.is_set() or ingest.ring.available():
        n = ingest.drain()
        consumed += n
        if not n:
            time.sleep(0.001)
    th.join()
    wall = time.perf_counter() - t0
    lost = loader.read_lost(obj).total
    # userspace only: fill the ring first, then drain
    loader.prog_test_run(prog, frame, repeat=100_000)
    t1 = time.perf_counter()
    n = 0
    while True:
        k = ingest.drain()
        if not k:
            break
        n += k
    drain_only = n / (time.perf_counter() - t1)
    ingest.ring.close()
    obj.close()
    return {
        "ingest_events_per_s_concurrent": round(consumed / wall),
        "ingest_events_per_s_drain_only": round(drain_only),
        "ingest_events": consumed,
        "ingest_kernel_lost": lost,
        "ingest_cpu_s": round(time.process_time() - cpu0, 2),
    }


if __name__ == "__main__":
    for k, v in run("--quick" in sys.argv).items():
        print(f"{k:40} {v}")
