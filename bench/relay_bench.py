#!/usr/bin/env python3
"""Relay throughput: N fake nodes with full stores -> relay -> one client.

    python3 bench/relay_bench.py [--nodes 4] [--flows 65535] [--stream batched|standard]
                                 [--sort-buffer-len-max 100] [--jitter-us 0] [--json]

Three processes, as in a deployment on one machine: the fake nodes (the agent's real
servicers over FlowStores filled with fixture-shaped flows, tests/integration/relay/harness.py),
the relay, and the client (this process) reading the whole history once (no follow) over
``hubblectl.v1.FlowStream/GetFlowsBatched`` (or ``observer.Observer/GetFlows``).

Each node's flows have increasing times at random gaps, so the nodes' streams interleave
irregularly. Printed: merged flows/s at the client (first byte to last), the number of flows
received, and time-order violations (a response older than the one before it). With
``--jitter-us J``, each node's own stream is made slightly out of order (each time moved by up
to J us): violations then come from the nodes, not from the merge.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


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

    from observer.relay.pool import PeerSpec
    from observer.relay.server import Relay, RelayConfig

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


def _read(address: str, stream: str) -> tuple[list[bytes], float, float]:
    """All response lines of a non-follow request; (lines, seconds to first byte, total)."""
    import grpc

    from observer.api.convert import response_to_json_line
    from observer.api.v1.hubblectl import agent_pb2_grpc
    from observer.api.v1.observer import observer_pb2, observer_pb2_grpc

    channel = grpc.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    request = observer_pb2.GetFlowsRequest()
    chunks: list[bytes] = []
    t0 = time.perf_counter()
    first = 0.0
    if stream == "batched":
        for batch in agent_pb2_grpc.FlowStreamStub(channel).GetFlowsBatched(request):
            if not first:
                first = time.perf_counter()
            chunks.append(batch.json_lines)
        lines = [line for chunk in chunks for line in chunk.split(b"\n") if line]
    else:
        for resp in observer_pb2_grpc.ObserverStub(channel).GetFlows(request):
            if not first:
                first = time.perf_counter()
            chunks.append(response_to_json_line(resp))
        lines = [c.rstrip(b"\n") for c in chunks]
    end = time.perf_counter()
    channel.close()
    return lines, first - t0, end - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument(
        "--flows", type=int, default=65535, help="flows per node (the store is sized to hold them)"
    )
    ap.add_argument("--stream", choices=["batched", "standard"], default="batched")
    ap.add_argument("--sort-buffer-len-max", type=int, default=100)
    ap.add_argument("--jitter-us", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument(
        "--debug", action="store_true", help="the relay logs (its merge counters, per request)"
    )
    args = ap.parse_args()

    from observer.relay.merge import TimeParser, response_time_ns

    ctx = mp.get_context("spawn")
    nodes_conn, nodes_child = ctx.Pipe()
    relay_conn, relay_child = ctx.Pipe()
    t_fill = time.perf_counter()
    nodes_proc = ctx.Process(
        target=_nodes_main, args=(args.nodes, args.flows, args.jitter_us * 1000, nodes_child)
    )
    nodes_proc.start()
    relay_proc = None
    try:
        addresses = nodes_conn.recv()
        fill_s = time.perf_counter() - t_fill
        relay_proc = ctx.Process(
            target=_relay_main, args=(addresses, args.sort_buffer_len_max, args.debug, relay_child)
        )
        relay_proc.start()
        port = relay_conn.recv()
        lines, first_s, total_s = _read(f"127.0.0.1:{port}", args.stream)
    finally:
        relay_conn.send("stop")
        nodes_conn.send("stop")
        if relay_proc is not None:
            relay_proc.join(10)
        nodes_proc.join(10)

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
    expected = args.nodes * args.flows
    result = {
        "nodes": args.nodes,
        "flows_per_node": args.flows,
        "stream": args.stream,
        "sort_buffer_len_max": args.sort_buffer_len_max,
        "jitter_us": args.jitter_us,
        "flows_received": flows,
        "flows_expected": expected,
        "seconds": round(total_s, 3),
        "first_byte_seconds": round(first_s, 3),
        "flows_per_second": round(flows / total_s) if total_s else 0,
        "order_violations": violations,
        "worst_violation_us": worst_ns / 1000,
        "fill_seconds": round(fill_s, 2),
    }
    if args.json:
        import json

        print(json.dumps(result))
        return
    print(
        f"relay bench: {args.nodes} nodes x {args.flows} flows -> relay -> 1 client ({args.stream} stream, "
        f"sort buffer {args.sort_buffer_len_max}, node jitter {args.jitter_us} us)"
    )
    print(f"  received          {flows:,} of {expected:,} flows")
    print(f"  time              {total_s:.3f} s (first batch after {first_s * 1000:.0f} ms)")
    print(f"  merged flows/s    {result['flows_per_second']:,}")
    print(
        f"  order violations  {violations:,}"
        + (f" (worst {worst_ns / 1000:.0f} us back)" if violations else "")
    )


if __name__ == "__main__":
    main()
