"""Parser benchmark: ring-buffer records -> FlowEvent -> GetFlowsResponse dict -> JSON bytes.

Method: 100,000 synthetic datapath records (TCP both ways between 16 v4/v6 endpoints, UDP,
ICMP echo, policy drops and verdicts, in the mix an aggregated datapath emits) are run
through FlowDecoder.decode, then + FlowBuilder.build (StaticResolver lookups, UUID, time),
then + orjson.dumps (what the store keeps); and the native renderer (observer.native: C
renders the same JSON lines straight from a ring laid out like the kernel's, a memfd here,
plus the Python objects for the lines) when native/build/libhbflow.so is built. Rate =
records / process CPU time, best of R runs, so other load on the machine inflates it less.

    python3 bench/parser_bench.py [--events N] [--repeat R]
    python3 -m bench --only parser [--quick]      (the runner: flat figures via run())
"""

from __future__ import annotations

import argparse
import ipaddress
import mmap
import os
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson

from observer import native
from observer.bpf import structs
from observer.enrich import EndpointInfo, ResolverSnapshot, StaticResolver
from observer.parser import FlowBuilder, FlowDecoder


def _record(**f: int | bytes) -> bytes:
    v = {
        "type": structs.EVENT_TRACE, "sub_type": 5, "len": structs.FLOW_EVENT_SIZE, "cpu": 0,
        "ts": 1, "ifindex": 40, "ep_id": 1, "pkt_len": 74, "drop": 0, "obs": 5, "ipv": 4,
        "l4": 6, "flags": 0x02, "ct": 1, "reply": 0, "it": 0, "ic": 0, "sport": 40000,
        "dport": 80, "saddr": bytes(16), "daddr": bytes(16), "esrc": b"\x02\0\0\0\0\1",
        "edst": b"\xee" * 6, "sid": 0, "did": 0, "pmt": 0, "pdir": 0, "aud": 0, "rr": 2,
        "rule": 0, "aggp": 1, "aggb": 74,
    }  # fmt: skip
    v.update(f)
    return structs.FLOW_EVENT.pack(
        v["type"], v["sub_type"], v["len"], v["cpu"], v["ts"], v["ifindex"], v["ep_id"],
        v["pkt_len"], v["drop"], v["obs"], v["ipv"], v["l4"], v["flags"], v["ct"], v["reply"],
        v["it"], v["ic"], v["sport"], v["dport"], v["saddr"], v["daddr"], v["esrc"], v["edst"],
        v["sid"], v["did"], v["pmt"], v["pdir"], v["aud"], v["rr"], v["rule"], v["aggp"], 0,
        v["aggb"],
    )  # fmt: skip


def _workload(n: int) -> tuple[list[bytes], StaticResolver]:
    eps = []
    for i in range(16):
        v4 = f"10.213.0.{i + 2}"
        v6 = f"fd00:10:213::{i + 2:x}"
        info = EndpointInfo(
            id=100 + i,
            identity=20000 + i,
            namespace="default",
            pod_name=f"pod-{i}",
            labels=(f"k8s:app=app{i % 4}", "k8s:io.kubernetes.pod.namespace=default"),
            cluster_name="default",
        )
        eps.append(([v4, v6], info))
    policy = {
        "name": "rule1",
        "namespace": "default",
        "labels": ["k8s:io.cilium.k8s.policy.name=rule1"],
        "revision": "3",
        "kind": "CiliumNetworkPolicy",
    }
    resolver = StaticResolver(
        ResolverSnapshot.from_endpoints(
            eps,
            host_ips=["10.213.0.1"],
            interfaces={40 + i: f"lxc{i:08x}" for i in range(16)},
            policies={7: [policy]},
        )
    )
    recs: list[bytes] = []
    for k in range(n):
        a, b = k % 16, (k * 7 + 3) % 16
        kind = k % 10
        if kind < 6:  # TCP both directions, v4/v6
            is_v6 = kind >= 4
            ipv = 6 if is_v6 else 4
            sa = ipaddress.ip_address(f"fd00:10:213::{a + 2:x}" if is_v6 else f"10.213.0.{a + 2}")
            da = ipaddress.ip_address(f"fd00:10:213::{b + 2:x}" if is_v6 else f"10.213.0.{b + 2}")
            recs.append(
                _record(
                    ipv=ipv,
                    saddr=sa.packed.ljust(16, b"\0"),
                    daddr=da.packed.ljust(16, b"\0"),
                    flags=(0x02, 0x12, 0x10, 0x18, 0x11, 0x04)[kind],
                    reply=kind % 2,
                    obs=(5, 0)[k % 2],
                    sub_type=(5, 0)[k % 2],
                    ifindex=40 + a,
                    ts=k * 1000,
                )
            )
        elif kind == 6:  # UDP to world
            recs.append(
                _record(
                    l4=17,
                    flags=0,
                    saddr=bytes([10, 213, 0, a + 2]).ljust(16, b"\0"),
                    daddr=bytes([192, 0, 2, 10]).ljust(16, b"\0"),
                    dport=53,
                )
            )
        elif kind == 7:  # ICMP echo
            recs.append(
                _record(
                    l4=1,
                    flags=0,
                    it=8,
                    sport=7,
                    dport=0,
                    saddr=bytes([10, 213, 0, a + 2]).ljust(16, b"\0"),
                    daddr=bytes([10, 213, 0, b + 2]).ljust(16, b"\0"),
                )
            )
        elif kind == 8:  # policy drop
            recs.append(
                _record(
                    type=structs.EVENT_DROP,
                    sub_type=133,
                    drop=133,
                    pdir=1,
                    rule=7,
                    saddr=bytes([10, 213, 0, a + 2]).ljust(16, b"\0"),
                    daddr=bytes([10, 213, 0, b + 2]).ljust(16, b"\0"),
                )
            )
        else:  # policy verdict allowed
            recs.append(
                _record(
                    type=structs.EVENT_POLICY_VERDICT,
                    sub_type=0,
                    pdir=1,
                    pmt=2,
                    rule=7,
                    saddr=bytes([10, 213, 0, a + 2]).ljust(16, b"\0"),
                    daddr=bytes([10, 213, 0, b + 2]).ljust(16, b"\0"),
                )
            )
    return recs, resolver


STAGES = ("decode", "build", "json", "native")


def _memfd_ring(recs: list[bytes]) -> tuple[int, int]:
    """A memfd laid out like a BPF ring buffer map's mapping (consumer page, producer page,
    data area twice) holding ``recs``; returns (fd, ring size)."""
    page = mmap.PAGESIZE
    used = sum((len(r) + 8 + 7) & ~7 for r in recs)
    size = page
    while size < used + 8:
        size *= 2
    fd = os.memfd_create("parser-bench-ring")
    os.ftruncate(fd, 2 * page + 2 * size)
    data = bytearray(size)
    pos = 0
    for r in recs:
        struct.pack_into("<II", data, pos, len(r), 0)
        data[pos + 8 : pos + 8 + len(r)] = r
        pos += (len(r) + 8 + 7) & ~7
    os.pwrite(fd, struct.pack("<Q", pos), page)
    os.pwrite(fd, bytes(data) * 2, 2 * page)
    return fd, size


def measure(events: int, repeat: int) -> dict[str, float]:
    """Best events/s of each stage (cumulative: build includes decode, json includes both;
    native is the whole of json's work done by the native renderer)."""
    recs, resolver = _workload(events)
    base_ns = 1_790_000_000_000_000_000

    def run_decode() -> None:
        decode = FlowDecoder().decode
        for r in recs:
            decode(r)

    def run_build() -> None:
        decode = FlowDecoder().decode
        build = FlowBuilder("default/node-a", resolver, "0.1.0").build
        for r in recs:
            ev = decode(r)
            build(ev, base_ns + ev.ts_ns)

    def run_json() -> None:
        decode = FlowDecoder().decode
        build = FlowBuilder("default/node-a", resolver, "0.1.0").build
        dumps = orjson.dumps
        for r in recs:
            ev = decode(r)
            dumps(build(ev, base_ns + ev.ts_ns))

    stages: list[tuple[str, Callable[[], None]]] = [
        ("decode", run_decode), ("build", run_build), ("json", run_json),
    ]  # fmt: skip
    lib = native.load()
    if lib is not None:
        fd, size = _memfd_ring(recs)
        nring = native.NativeRing(lib, fd, size)
        renderer = native.FlowRenderer(lib, FlowBuilder("default/node-a", resolver, "0.1.0"))

        def run_native() -> None:
            os.pwrite(fd, bytes(8), 0)  # consumer position back to the start
            n = 0
            while True:
                chunk = renderer.drain(nring, base_ns)
                n += chunk.records
                if not chunk.more:
                    break
            assert n == len(recs)

        stages.append(("native", run_native))

    rates: dict[str, float] = {}
    for name, fn in stages:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        rates[name] = len(recs) / max(best, 1e-9)
    if lib is not None:
        nring.close()
        renderer.close()
        os.close(fd)
    return rates


def run(quick: bool = False) -> dict[str, Any]:
    """For ``python -m bench``: flat figures (quick: 20,000 records, best of 2)."""
    events, repeat = (20_000, 2) if quick else (100_000, 3)
    rates = measure(events, repeat)
    return {
        "parser_events": events,
        "parser_decode_events_per_s": round(rates["decode"]),
        "parser_decode_build_events_per_s": round(rates["build"]),
        "parser_decode_build_json_events_per_s": round(rates["json"]),
        "parser_native_events_per_s": round(rates["native"]) if "native" in rates else None,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rates = measure(args.events, args.repeat)
    print(f"{args.events} records, best of {args.repeat} runs")
    labels = {"decode": "decode", "build": "decode+build", "json": "+orjson", "native": "native"}
    if "native" not in rates:
        print(f"native: unavailable ({native.load_problem()})")
    for name, rate in rates.items():
        print(f"{labels[name]:14s} {rate:12,.0f} events/s   {1e6 / rate:6.2f} us/event")


if __name__ == "__main__":
    main()
