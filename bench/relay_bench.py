#!/usr/bin/env python3
"""Relay throughput: N fake nodes with full stores -> relay -> one client.

Method: three processes as in a deployment on one machine: N fake nodes (the agent's real
servicers over FlowStores filled with fixture-shaped flows at random 1 us-2 ms gaps, so their
streams interleave irregularly), the relay, and the client (this process), which reads the
whole history (no follow) over hubblectl.v1.FlowStream/GetFlowsBatched or Hubble's
observer.Observer/GetFlows, ``--warmup`` (default 1) + ``--repeat`` times; the median is of the
``--repeat`` reads. The deployment's first read pays one-time costs (gRPC's flow-control
windows growing from their initial size, the processes' heaps growing) and is reported, not
counted: a relay serves for days. The client reads as ``hubblectl observe`` does (batched:
hubblectl.client) and keeps each message's JSON lines as they arrive (what ``-o json``
writes out); the clock stops at the last byte, then the lines are split and every one is
checked. Reported per read and for the median one:
merged flows/s at the client (request to last byte), flows received, time-order violations (a
response older than the one before it), the CPU seconds each process used during the read
(the machine is shared: CPU per flow is steadier than the rate) and the load average.

    python3 bench/relay_bench.py [--nodes 4] [--flows 65535] [--stream batched|standard]
                                 [--number 0] [--sort-buffer-len-max 100] [--jitter-us 0]
                                 [--warmup 1] [--repeat 3] [--json]
    python3 -m bench --only relay [--quick]      (the runner: flat figures via run())

With ``--jitter-us J`` each node's own stream is made slightly out of order (each time moved
by up to J us): violations then come from the nodes, not from the merge. ``--number N`` asks
for the last N flows only (the relay asks each node for N and keeps the last N merged).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from observer.errors import ObserverError  # noqa: E402


def _fill(node: Any, count: int, seed: int, jitter_ns: int) -> None:
    import orjson

    from observer.parser.timestamps import TimestampFormatter
    from observer.store import EntryKind
    from tests.integration.relay.harness import T0, fixture_flows

    rng = random.Random(seed)
    shapes = fixture_flows()
    fmt = TimestampFormatter()
    t = T0
    name = node.absolute_name
    for i in range(count):
        t += rng.randint(1, 2000) * 1000  # 1 us .. 2 ms apart
        ts_ns = t + (rng.randint(-jitter_ns, jitter_ns) if jitter_ns else 0)
        ts = fmt(ts_ns)
        flow = dict(shapes[i % len(shapes)]["flow"])
        flow["time"] = ts
        flow["node_name"] = name
        flow["uuid"] = f"{seed:08x}-0000-4000-8000-{i:012x}"
        node.store.append(
            ts_ns, EntryKind.FLOW, orjson.dumps({"flow": flow, "node_name": name, "time": ts})
        )
    node.store.notify()


def _nodes_main(n: int, flows: int, jitter_ns: int, conn: Connection) -> None:
    import asyncio

    from tests.integration.relay.harness import FakeNode

    async def main() -> None:
        capacity = 1
        while capacity < flows:
            capacity = capacity * 2 + 1
        nodes = []
        for i in range(n):
            node = await FakeNode.create(f"node-{i}", capacity=capacity)
            _fill(node, flows, seed=i + 1, jitter_ns=jitter_ns)
            nodes.append(node)
        conn.send([node.address for node in nodes])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"
        for node in nodes:
            await node.stop(0)

    asyncio.run(main())


def _relay_main(addresses: list[str], sort_len: int, debug: bool, conn: Connection) -> None:
    import asyncio
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.ERROR, format="relay: %(message)s"
    )
    logging.getLogger("grpc").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)

    from observer.malloc import tune_malloc
    from observer.relay.pool import PeerSpec
    from observer.relay.server import Relay, RelayConfig

    tune_malloc()  # as Relay.run (``hubblectl relay``) does

    async def main() -> None:
        relay = Relay(
            RelayConfig(
                listen_address="127.0.0.1:0",
                peers=tuple(PeerSpec(f"node-{i}", a) for i, a in enumerate(addresses)),
                node_name="bench-relay",
                sort_buffer_len_max=sort_len,
            )
        )
        port = await relay.start()
        await relay.pool.wait_settled(10)
        conn.send(port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await relay.stop(0)

    asyncio.run(main())


def _read(address: str, stream: str, number: int = 0) -> tuple[list[bytes], float, float]:
    """Response lines of a non-follow request (all history, or the last ``number`` flows);
    (lines, seconds to first byte, total). The clock stops at the last message; the lines
    are split after it."""
    import grpc

    from observer.api.convert import response_to_json_line
    from observer.api.v1.observer import observer_pb2, observer_pb2_grpc

    channel = grpc.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    request = observer_pb2.GetFlowsRequest(number=number)
    chunks: list[bytes] = []
    t0 = time.perf_counter()
    first = 0.0
    if stream == "batched":
        # as `hubblectl observe --server <relay>` reads: hubblectl.client decodes each
        # FlowBatch on the wire and slices json_lines out once (a generated stub would copy
        # them into a message first); the clock includes its connect and health check
        from hubblectl.client import connect
        from observer.malloc import tune_malloc

        tune_malloc()  # as `hubblectl observe` does
        with connect(address) as client:
            for json_lines in client.get_flows({"number": number} if number else {}):
                if not first:
                    first = time.perf_counter()
                chunks.append(json_lines)
    else:
        for resp in observer_pb2_grpc.ObserverStub(channel).GetFlows(request):
            if not first:
                first = time.perf_counter()
            chunks.append(response_to_json_line(resp))
    end = time.perf_counter()
    channel.close()
    lines = [line for chunk in chunks for line in chunk.split(b"\n") if line]
    return lines, first - t0, end - t0


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Deployment:
    """The running processes: the relay's address, how long the nodes took to fill their
    stores, and the process ids ("nodes", "relay", "client")."""

    address: str
    fill_s: float
    pids: dict[str, int]

    def cpu(self) -> dict[str, float | None]:
        return {name: _cpu_seconds(pid) for name, pid in self.pids.items()}


@contextlib.contextmanager
def deployment(
    nodes: int, flows: int, sort_len: int = 100, jitter_us: int = 0, debug: bool = False
) -> Iterator[Deployment]:
    """Start the fake nodes' and the relay's processes and yield them. Both processes are
    stopped (then terminated, then killed) on exit."""
    ctx = mp.get_context("spawn")
    procs: list[BaseProcess] = []
    conns: list[Connection] = []

    def start(target: Any, args: tuple[Any, ...], what: str, timeout: float) -> Any:
        conn, child = ctx.Pipe()
        conns.append(conn)
        proc = ctx.Process(target=target, args=(*args, child), daemon=True, name=what)
        proc.start()
        procs.append(proc)
        child.close()  # the child holds its own end: recv sees EOF if it dies
        if not conn.poll(timeout):
            raise ObserverError(f"relay bench: {what} did not start in {timeout:.0f} s")
        try:
            return conn.recv()
        except EOFError:
            proc.join(5)
            raise ObserverError(
                f"relay bench: {what} exited with code {proc.exitcode} before starting"
            ) from None

    try:
        t_fill = time.perf_counter()
        addresses = start(_nodes_main, (nodes, flows, jitter_us * 1000), "fake nodes", 300)
        fill_s = time.perf_counter() - t_fill
        port = start(_relay_main, (addresses, sort_len, debug), "relay", 60)
        pids = {"nodes": procs[0].pid or 0, "relay": procs[1].pid or 0, "client": os.getpid()}
        yield Deployment(f"127.0.0.1:{port}", fill_s, pids)
    finally:
        for conn, proc in reversed(list(zip(conns, procs, strict=False))):
            # the relay first, then the nodes; each is asked, then terminated, then killed
            with contextlib.suppress(OSError):
                conn.send("stop")
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in conns:
            conn.close()


def check_order(lines: list[bytes]) -> tuple[int, int, int]:
    """(flows, time-order violations, worst violation in ns) of merged response lines."""
    from observer.relay.merge import TimeParser, response_time_ns

    parse = TimeParser()
    flows = 0
    violations = 0
    worst_ns = 0
    last = -(1 << 63)
    for line in lines:
        if not line.startswith(b'{"flow"'):
            continue
        flows += 1
        t = response_time_ns(line, parse)
        if t is None:
            continue
        if t < last:
            violations += 1
            worst_ns = max(worst_ns, last - t)
        else:
            last = t
    return flows, violations, worst_ns


def read_and_check(dep: Deployment, stream: str, number: int = 0) -> dict[str, Any]:
    """One read through the relay, every line checked; its figures."""
    load = os.getloadavg()[0]
    before = dep.cpu()
    lines, first_s, total_s = _read(dep.address, stream, number)
    after = dep.cpu()
    load = max(load, os.getloadavg()[0])
    flows, violations, worst_ns = check_order(lines)
    cpu: dict[str, float | None] = {}
    for name, b in before.items():
        a = after[name]
        cpu[name] = None if a is None or b is None else round(a - b, 2)
    return {
        "stream": stream,
        "number": number,
        "flows_received": flows,
        "seconds": round(total_s, 3),
        "first_byte_seconds": round(first_s, 3),
        "flows_per_second": round(flows / total_s) if total_s else 0,
        "order_violations": violations,
        "worst_violation_us": worst_ns / 1000,
        "cpu_seconds": cpu,  # during the read; the client's includes splitting the lines
        "loadavg_1m": round(load, 2),
    }


def median_read(reads: list[dict[str, Any]]) -> dict[str, Any]:
    """The read with the median rate (the lower middle one for an even count)."""
    ranked = sorted(reads, key=lambda r: int(r["flows_per_second"]))
    return ranked[(len(ranked) - 1) // 2]


def run(quick: bool = False) -> dict[str, Any]:
    """For ``python -m bench``: flat figures. 4 nodes x 65,535 flows (quick: x 8,191), the
    whole history over the batched stream (the median of 5 reads after the first), then the last 8,192
    (quick: 2,048) flows over Hubble's standard stream (one response per flow: much
    slower), from one deployment."""
    nodes, flows = 4, 8191 if quick else 65535
    number = 2048 if quick else 8192
    with deployment(nodes, flows) as dep:
        cold = read_and_check(dep, "batched")  # the deployment's first read: see the module doc
        reads = [read_and_check(dep, "batched") for _ in range(5)]
        standard = read_and_check(dep, "standard", number)
    batched = median_read(reads)
    cpu = batched["cpu_seconds"]
    return {
        "relay_nodes": nodes,
        "relay_flows_per_node": flows,
        "relay_node_fill_s": round(dep.fill_s, 2),
        "relay_merged_flows_per_s": batched["flows_per_second"],
        "relay_merged_flows_per_s_each": [r["flows_per_second"] for r in reads],
        "relay_first_read_flows_per_s": cold["flows_per_second"],
        "relay_flows_received": batched["flows_received"],
        "relay_flows_expected": nodes * flows,
        "relay_read_s": batched["seconds"],
        "relay_first_byte_s": batched["first_byte_seconds"],
        "relay_order_violations": sum(r["order_violations"] for r in [cold, *reads]),
        "relay_cpu_s_nodes": cpu["nodes"],
        "relay_cpu_s_relay": cpu["relay"],
        "relay_loadavg_1m": batched["loadavg_1m"],
        "relay_standard_last_n": number,
        "relay_standard_flows_received": standard["flows_received"],
        "relay_standard_flows_per_s": standard["flows_per_second"],
        "relay_standard_order_violations": standard["order_violations"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument(
        "--flows", type=int, default=65535, help="flows per node (the store is sized to hold them)"
    )
    ap.add_argument("--stream", choices=["batched", "standard"], default="batched")
    ap.add_argument(
        "--number", type=int, default=0, help="read the last N flows only (default 0: all)"
    )
    ap.add_argument("--sort-buffer-len-max", type=int, default=100)
    ap.add_argument("--jitter-us", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="reads from the same deployment")
    ap.add_argument(
        "--warmup", type=int, default=1,
        help="first reads reported but not in the median (the deployment's first read pays one-time costs)",
    )  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument(
        "--debug", action="store_true", help="the relay logs (its merge counters, per request)"
    )
    args = ap.parse_args(argv)

    with deployment(
        args.nodes, args.flows, args.sort_buffer_len_max, args.jitter_us, args.debug
    ) as dep:
        warm = [read_and_check(dep, args.stream, args.number) for _ in range(max(0, args.warmup))]
        reads = [read_and_check(dep, args.stream, args.number) for _ in range(max(1, args.repeat))]
    expected = args.number or args.nodes * args.flows
    median = median_read(reads)
    violations = sum(r["order_violations"] for r in [*warm, *reads])
    result = {
        "nodes": args.nodes,
        "flows_per_node": args.flows,
        "sort_buffer_len_max": args.sort_buffer_len_max,
        "jitter_us": args.jitter_us,
        **median,
        "order_violations_all_reads": violations,
        "flows_expected": expected,
        "fill_seconds": round(dep.fill_s, 2),
        "reads": reads,
        "warmup_reads": warm,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"relay bench: {args.nodes} nodes x {args.flows} flows -> relay -> 1 client ({args.stream} stream, "
        f"sort buffer {args.sort_buffer_len_max}, node jitter {args.jitter_us} us)"
    )
    for i, read in enumerate([*warm, *reads], 1 - len(warm)):
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in read["cpu_seconds"].items() if v is not None)
        worst = read["worst_violation_us"]
        print(
            f"  read {i}{' (warm-up)' if i < 1 else ''}: {read['flows_received']:,} flows in {read['seconds']:.3f} s = "
            f"{read['flows_per_second']:,} flows/s, {read['order_violations']:,} order violations"
            + (f" (worst {worst:.0f} us back)" if read["order_violations"] else "")
            + f"; CPU s {cpu}; load average {read['loadavg_1m']:.2f}"
        )
    print(f"  received          {median['flows_received']:,} of {expected:,} flows (median read)")
    print(
        f"  time              {median['seconds']:.3f} s "
        f"(first batch after {median['first_byte_seconds'] * 1000:.0f} ms)"
    )
    print(f"  merged flows/s    {median['flows_per_second']:,} (median of {len(reads)})")
    print(
        f"  order violations  {violations:,} (all reads, warm-up included, every line checked)"
        + (
            f", worst {max(r['worst_violation_us'] for r in [*warm, *reads]):.0f} us back"
            if violations
            else ""
        )
    )


if __name__ == "__main__":
    main()
