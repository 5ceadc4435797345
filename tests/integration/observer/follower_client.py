"""Follower clients for the stress test, run as a separate process (as real clients are: in
the test's own process they would share the server's GIL and slow it down).

    python3 follower_client.py TARGET --followers 100 --total 20000 --since-ns NS

Opens FOLLOWERS follow calls (follow with ``since`` = the first flow's time, so none is
missed however late the server starts following) on the batched stream (one channel each) and one stuck call per
stream kind (standard, batched) on channels with BDP probing off and a small look-ahead,
which it does not read. Prints ``READY`` once every call has its response headers. Normal
followers count flows and check order and gaps at the last line of each batch (flow i
carries i at the end of its uuid) until they have ``--total`` flows. Then it waits for a
line on stdin (the parent's "ingest finished"), reads the stuck calls until every flow is
received or reported lost, and prints one JSON object with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from observer_harness import STREAMS, parse_batch

from observer.api.v1.flow import flow_pb2
from observer.api.v1.hubblectl import agent_pb2_grpc
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc

UUID_PREFIX: Final = "5f0e1d2c-0000-4000-8000-"
STUCK_OPTIONS: Final = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024))


def uuid_index(uuid: str) -> int:
    if not uuid.startswith(UUID_PREFIX):
        raise ValueError(f"unexpected uuid {uuid!r}")
    return int(uuid[len(UUID_PREFIX) :])


@dataclass
class FollowerResult:
    received: int = 0
    batches: int = 0
    lost_events: int = 0
    problems: list[str] = field(default_factory=list)
    done_s: float = 0.0


@dataclass
class StuckResult:
    before_loss: int = 0
    lost: int = 0
    after_loss: int = 0
    lost_sources: list[str] = field(default_factory=list)
    first_after_loss: int | None = None
    first_loss: int = 0
    in_order: bool = True


def follow_request(since_ns: int) -> observer_pb2.GetFlowsRequest:
    """follow with ``since`` at the first flow's time: flows appended before the server
    starts following come as history, so no flow is missed whenever ingest starts."""
    req = observer_pb2.GetFlowsRequest(follow=True)
    req.since.FromNanoseconds(since_ns)
    return req


async def follow(
    channel: grpc.aio.Channel,
    req: observer_pb2.GetFlowsRequest,
    total: int,
    res: FollowerResult,
    opened: asyncio.Queue[int],
) -> None:
    stub = agent_pb2_grpc.FlowStreamStub(channel)
    call = stub.GetFlowsBatched(req)
    try:
        await call.initial_metadata()
        opened.put_nowait(1)
        async for batch in call:
            data = batch.json_lines
            if b'"lost_events"' in data:
                res.lost_events += 1
                res.problems.append(f"LostEvent after {res.received} flows")
            res.received += batch.count
            res.batches += 1
            last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
            index = uuid_index(orjson.loads(last)["flow"]["uuid"])
            if index != res.received - 1:
                res.problems.append(f"batch ends at flow {index} after {res.received} received")
                return
            if res.received >= total:
                res.done_s = time.monotonic()
                return
    finally:
        call.cancel()


async def read_stuck(call: Any, stream: str, total: int) -> StuckResult:
    res = StuckResult()
    expected = 0
    async for msg in call:
        for resp in [msg] if stream == "standard" else parse_batch(msg):
            if resp.HasField("lost_events"):
                res.lost_sources.append(flow_pb2.LostEventSource.Name(resp.lost_events.source))
                if not res.lost:
                    res.first_loss = resp.lost_events.num_events_lost
                res.lost += resp.lost_events.num_events_lost
                expected += resp.lost_events.num_events_lost
                continue
            index = uuid_index(resp.flow.uuid)
            if res.lost_sources and res.first_after_loss is None:
                res.first_after_loss = index
            res.in_order &= index == expected
            expected = index + 1
            if res.lost:
                res.after_loss += 1
            else:
                res.before_loss += 1
        if res.before_loss + res.after_loss + res.lost >= total:
            break
    call.cancel()
    return res


async def main(
    target: str, followers: int, total: int, since_ns: int, timeout: float
) -> dict[str, Any]:
    req = follow_request(since_ns)
    channels = [grpc.aio.insecure_channel(target) for _ in range(followers)]
    stuck_channels = {s: grpc.aio.insecure_channel(target, options=STUCK_OPTIONS) for s in STREAMS}
    stuck_calls: dict[str, Any] = {
        "standard": observer_pb2_grpc.ObserverStub(stuck_channels["standard"]).GetFlows(req),
        "batched": agent_pb2_grpc.FlowStreamStub(stuck_channels["batched"]).GetFlowsBatched(req),
    }
    results = [FollowerResult() for _ in range(followers)]
    opened: asyncio.Queue[int] = asyncio.Queue()
    tasks = [
        asyncio.create_task(follow(ch, req, total, r, opened))
        for ch, r in zip(channels, results, strict=True)
    ]
    loop = asyncio.get_running_loop()
    try:
        for call in stuck_calls.values():
            await asyncio.wait_for(call.initial_metadata(), timeout)
        for _ in range(followers):
            await asyncio.wait_for(opened.get(), timeout)
        print("READY", flush=True)
        start = time.monotonic()
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await loop.run_in_executor(None, sys.stdin.readline)  # the parent: ingest finished
        stuck = {
            s: asdict(await asyncio.wait_for(read_stuck(c, s, total), timeout))
            for s, c in stuck_calls.items()
        }
        done = [r.done_s - start for r in results if r.done_s]
        return {
            "followers": [asdict(r) for r in results],
            "pending": len(pending),
            "stuck": stuck,
            "last_follower_done_s": max(done) if done else None,
            "cpu_s": time.process_time(),
        }
    finally:
        for task in tasks:
            task.cancel()
        for call in stuck_calls.values():
            call.cancel()
        for ch in [*channels, *stuck_channels.values()]:
            await ch.close(None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("--followers", type=int, default=100)
    parser.add_argument("--total", type=int, required=True)
    parser.add_argument("--since-ns", type=int, required=True, help="time of the first flow")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    result = asyncio.run(main(args.target, args.followers, args.total, args.since_ns, args.timeout))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
