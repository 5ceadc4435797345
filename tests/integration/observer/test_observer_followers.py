"""Many followers and a stuck one while the server ingests (the slow-client contract).

100 followers on the batched stream (each on its own connection, as 100 ``hubblectl observe
-f`` would be) plus one stuck follower per stream kind that opens its call and reads nothing
(its channel has BDP probing off and a small stream look-ahead, so the server's writes to it
block early). Meanwhile the server's loop appends FLOWS flows in batches, at a fixed pace,
into a store much smaller than FLOWS. Then:

* ingest completes, on schedule (the loop never stalled: the appender's batches ran at most
  MAX_LATENESS_S late);
* every normal follower received every flow, in order, without a gap or a LostEvent (the
  flows carry their index in the uuid; the last line of each batch is checked);
* each stuck follower, once it reads, gets the flows that were in flight, then one LostEvent
  with source HUBBLE_RING_BUFFER counting exactly the flows it missed, then the rest:
  received + lost == FLOWS, and the flow after the loss is the next one it had not missed.

The standard stream (one message per flow) is too slow for 100 x FLOWS messages in a test
(about 15,000 messages/s per process), so normal followers use the batched stream; the stuck
follower is tested on both. Set HUBBLECTL_STRESS_FLOWS to run with more flows (e.g. 200000).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import orjson
import pytest
from observer_harness import STREAMS, ObserverHarness, parse_batch

from observer.api.v1.flow import flow_pb2
from observer.api.v1.hubblectl import agent_pb2_grpc
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.parser.timestamps import format_timestamp
from observer.store import EntryKind

pytestmark = pytest.mark.slow

FOLLOWERS: Final = 100
FLOWS: Final = int(os.environ.get("HUBBLECTL_STRESS_FLOWS", "20000"))
CAPACITY: Final = 4095
BATCH: Final = 250
RATE: Final = float(os.environ.get("HUBBLECTL_STRESS_RATE", "4000"))  # flows/s appended
MAX_LATENESS_S: Final = 2.0
BASE_NS: Final = 1_795_705_200_000_000_000  # 2026-11-26T15:00:00Z
STUCK_OPTIONS: Final = (
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 1024),
)
UUID_PREFIX: Final = "5f0e1d2c-0000-4000-8000-"


def stress_entries(count: int) -> list[tuple[int, EntryKind, bytes]]:
    """Fixture-like flows (about 700 bytes of JSON each), flow i carrying i in its uuid."""
    template = orjson.loads(
        b'{"flow":{"time":"","uuid":"","emitter":{"name":"Hubble","version":"0.1.0"},'
        b'"verdict":"FORWARDED","ethernet":{"source":"02:00:0a:d5:00:05","destination":"ee:ee:ee:ee:ee:ee"},'
        b'"IP":{"source":"10.213.0.5","destination":"10.213.0.7","ipVersion":"IPv4"},'
        b'"l4":{"TCP":{"source_port":41391,"destination_port":80,"flags":{"SYN":true}}},'
        b'"source":{"ID":12,"identity":12345,"namespace":"default","labels":["k8s:class=xwing",'
        b'"k8s:io.kubernetes.pod.namespace=default","k8s:org=alliance"],"pod_name":"xwing"},'
        b'"destination":{"ID":10,"identity":5678,"namespace":"default","labels":["k8s:class=deathstar",'
        b'"k8s:io.kubernetes.pod.namespace=default","k8s:org=empire"],"pod_name":"deathstar"},'
        b'"Type":"L3_L4","node_name":"default/node-a","event_type":{"type":4,"sub_type":5},'
        b'"traffic_direction":"EGRESS","trace_observation_point":"FROM_ENDPOINT","is_reply":false,'
        b'"Summary":"TCP Flags: SYN"},"node_name":"default/node-a","time":""}'
    )
    out = []
    for i in range(count):
        t = BASE_NS + i * 1000
        stamp = format_timestamp(t)
        template["flow"]["time"] = template["time"] = stamp
        template["flow"]["uuid"] = f"{UUID_PREFIX}{i:012d}"
        out.append((t, EntryKind.FLOW, orjson.dumps(template)))
    return out


def flow_index(line: bytes) -> int:
    uuid = orjson.loads(line)["flow"]["uuid"]
    assert uuid.startswith(UUID_PREFIX), uuid
    return int(uuid[len(UUID_PREFIX) :])


@dataclass
class Follower:
    """A normal follower: counts flows, checks order and gaps at each batch's last line."""

    received: int = 0
    batches: int = 0
    problems: list[str] = field(default_factory=list)

    async def run(self, target: str, total: int, started: asyncio.Event, ready: list[int]) -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = agent_pb2_grpc.FlowStreamStub(channel)
            call = stub.GetFlowsBatched(observer_pb2.GetFlowsRequest(follow=True))
            await call.initial_metadata()
            ready.append(1)
            if len(ready) == FOLLOWERS:
                started.set()
            try:
                async for batch in call:
                    data = batch.json_lines
                    if b'"lost_events"' in data:
                        self.problems.append(f"LostEvent after {self.received} flows")
                    self.received += batch.count
                    self.batches += 1
                    last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
                    if flow_index(last) != self.received - 1:
                        self.problems.append(f"gap: batch ends at {flow_index(last)}, received {self.received}")
                        return
                    if self.received >= total:
                        return
            finally:
                call.cancel()


@dataclass
class StuckResult:
    before_loss: int = 0
    lost: int = 0
    after_loss: int = 0
    lost_events: list[dict[str, Any]] = field(default_factory=list)
    first_after_loss: int | None = None
    order_ok: bool = True


async def read_stuck(call: Any, stream: str, total: int) -> StuckResult:
    """Read a stuck call until every flow is accounted for (received or reported lost)."""
    res = StuckResult()
    expected_next = 0
    async for msg in call:
        responses = [msg] if stream == "standard" else parse_batch(msg)
        for resp in responses:
            if resp.HasField("lost_events"):
                res.lost_events.append(
                    {
                        "source": flow_pb2.LostEventSource.Name(resp.lost_events.source),
                        "num_events_lost": resp.lost_events.num_events_lost,
                    }
                )
                res.lost += resp.lost_events.num_events_lost
                expected_next += resp.lost_events.num_events_lost
                continue
            index = int(resp.flow.uuid[len(UUID_PREFIX) :])
            if res.lost_events and res.first_after_loss is None:
                res.first_after_loss = index
            res.order_ok &= index == expected_next
            expected_next = index + 1
            if res.lost:
                res.after_loss += 1
            else:
                res.before_loss += 1
        if res.before_loss + res.after_loss + res.lost >= total:
            break
    call.cancel()
    return res


@pytest.fixture
def stress_server(make_harness: Callable[..., ObserverHarness]) -> ObserverHarness:
    return make_harness(capacity=CAPACITY)


def test_many_followers_and_a_stuck_one(
    stress_server: ObserverHarness, record_property: Callable[[str, object], None]
) -> None:
    entries = stress_entries(FLOWS)
    target = stress_server.unix_target

    async def main() -> tuple[list[Follower], dict[str, StuckResult], Any, float]:
        started = asyncio.Event()
        ready: list[int] = []
        followers = [Follower() for _ in range(FOLLOWERS)]
        tasks = [asyncio.create_task(f.run(target, FLOWS, started, ready)) for f in followers]
        stuck_channels = {s: grpc.aio.insecure_channel(target, options=STUCK_OPTIONS) for s in STREAMS}
        stuck_calls = {
            "standard": observer_pb2_grpc.ObserverStub(stuck_channels["standard"]).GetFlows(
                observer_pb2.GetFlowsRequest(follow=True)
            ),
            "batched": agent_pb2_grpc.FlowStreamStub(stuck_channels["batched"]).GetFlowsBatched(
                observer_pb2.GetFlowsRequest(follow=True)
            ),
        }
        try:
            for call in stuck_calls.values():
                await call.initial_metadata()
            await asyncio.wait_for(started.wait(), 60)
            # Every call has its metadata: give the handlers a moment to reach the store.
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            future = stress_server.ingest(entries, batch_size=BATCH, interval_s=BATCH / RATE)
            report = await asyncio.wait_for(asyncio.wrap_future(future), FLOWS / RATE * 3 + 30)
            done, pending = await asyncio.wait(tasks, timeout=120)
            assert not pending, f"{len(pending)} followers did not get every flow in time"
            for task in done:
                task.result()
            elapsed = time.perf_counter() - t0
            stuck = {
                s: await asyncio.wait_for(read_stuck(c, s, FLOWS), 120) for s, c in stuck_calls.items()
            }
            return followers, stuck, report, elapsed
        finally:
            for task in tasks:
                task.cancel()
            for call in stuck_calls.values():
                call.cancel()
            for ch in stuck_channels.values():
                await ch.close()

    followers, stuck, report, elapsed = asyncio.run(main())

    summary = (
        f"\n{FOLLOWERS} followers x {FLOWS} flows (store {CAPACITY}): ingest {report.appended} in "
        f"{report.elapsed_s:.2f} s ({report.appended / report.elapsed_s:,.0f} flows/s, max lateness "
        f"{report.max_lateness_s * 1000:.0f} ms); all followers done after {elapsed:.2f} s "
        f"({FOLLOWERS * FLOWS / elapsed:,.0f} flows/s delivered)"
    )
    for s, r in stuck.items():
        summary += f"\nstuck {s}: {r.before_loss} flows, then lost {r.lost_events}, then {r.after_loss} flows"
    print(summary)
    record_property("stress_summary", summary)

    assert report.appended == FLOWS
    assert report.max_lateness_s < MAX_LATENESS_S, "the server loop stalled while followers ran"
    for i, f in enumerate(followers):
        assert f.problems == [], f"follower {i}: {f.problems}"
        assert f.received == FLOWS, f"follower {i} got {f.received} of {FLOWS}"
    for s, r in stuck.items():
        assert r.lost_events, f"stuck {s} follower was never told it lost flows"
        assert {e["source"] for e in r.lost_events} == {"HUBBLE_RING_BUFFER"}
        assert r.before_loss + r.lost + r.after_loss == FLOWS, f"stuck {s}: flows unaccounted for"
        assert r.order_ok, f"stuck {s}: flows out of order or a gap not reported as lost"
        assert r.first_after_loss == r.before_loss + r.lost_events[0]["num_events_lost"]
        assert r.after_loss <= CAPACITY + BATCH, "it resumed at the oldest stored flow"
