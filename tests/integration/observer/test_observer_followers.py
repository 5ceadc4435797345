"""Many followers and a stuck one while the server ingests (the slow-client contract).

100 followers on the batched stream (each on its own connection, as 100 ``hubblectl observe
-f`` would be) plus one stuck follower per stream kind that opens its call and reads nothing
(its channel has BDP probing off and a small stream look-ahead, so the server's writes to it
block early). The clients run in a child process (follower_client.py), as real clients do:
in the server's process they would compete for its GIL. Meanwhile the server's loop appends
FLOWS flows in batches, at a fixed pace, into a store much smaller than FLOWS. Then:

* ingest completes, on schedule: the appender's batches ran at most MAX_LATENESS_S late, so
  the followers never stalled the loop;
* every normal follower received every flow, in order, without a gap or a LostEvent (flow i
  carries i in its uuid; the last line of each batch is checked);
* each stuck follower, once it reads, gets the flows that were in flight, then a LostEvent
  with source HUBBLE_RING_BUFFER counting exactly the flows it missed, then the rest from the
  oldest stored flow: received + lost == FLOWS, no unreported gap.

The standard stream (one message per flow, ~15,000 messages/s per Python process) is too slow
for 100 x FLOWS messages in a test, so normal followers use the batched stream; the stuck
follower is tested on both. HUBBLECTL_STRESS_FLOWS / _RATE / _CAPACITY change the flow count,
the ingest pace and the store size (e.g. 200000 flows at 1000/s into 16383).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from follower_client import UUID_PREFIX
from observer_harness import ObserverHarness

from observer.parser.timestamps import format_timestamp
from observer.store import EntryKind

pytestmark = pytest.mark.slow

FOLLOWERS: Final = 100
FLOWS: Final = int(os.environ.get("HUBBLECTL_STRESS_FLOWS", "12000"))
CAPACITY: Final = int(os.environ.get("HUBBLECTL_STRESS_CAPACITY", "8191"))
BATCH: Final = 250
RATE: Final = float(os.environ.get("HUBBLECTL_STRESS_RATE", "1000"))  # flows/s appended
MAX_LATENESS_S: Final = 10.0  # a stall, not a hiccup: the machine is small and may be shared
BASE_NS: Final = 1_795_705_200_000_000_000  # 2026-11-26T15:00:00Z
CLIENT: Final = Path(__file__).resolve().parent / "follower_client.py"


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


@pytest.fixture
def stress_server(make_harness: Callable[..., ObserverHarness]) -> ObserverHarness:
    return make_harness(capacity=CAPACITY)


@pytest.fixture
def clients(stress_server: ObserverHarness) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(CLIENT),
            stress_server.unix_target,
            "--followers",
            str(FOLLOWERS),
            "--total",
            str(FLOWS),
            "--since-ns",
            str(BASE_NS),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()


def test_many_followers_and_a_stuck_one(
    stress_server: ObserverHarness,
    clients: subprocess.Popen[str],
    record_property: Callable[[str, object], None],
) -> None:
    entries = stress_entries(FLOWS)
    cpu0 = time.process_time()
    assert clients.stdout is not None and clients.stdin is not None
    assert clients.stdout.readline().strip() == "READY"
    report = stress_server.ingest(entries, batch_size=BATCH, interval_s=BATCH / RATE).result(
        FLOWS / RATE * 3 + 60
    )
    clients.stdin.write("ingest finished\n")
    clients.stdin.flush()
    out, _ = clients.communicate(timeout=300)
    assert clients.returncode == 0, out
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])

    followers = result["followers"]
    received = [f["received"] for f in followers]
    done_s = result["last_follower_done_s"]
    done = f"{done_s:.2f} s" if done_s is not None else "never"
    summary = (
        f"\n{FOLLOWERS} followers x {FLOWS} flows (store {CAPACITY}): ingest {report.appended} in "
        f"{report.elapsed_s:.2f} s ({report.appended / report.elapsed_s:,.0f} flows/s; batch lateness "
        f"median {statistics.median(report.lateness_s) * 1000:.0f} ms, max {report.max_lateness_s * 1000:.0f} ms); last follower done {done} "
        f"after READY; flows per follower min {min(received)} max {max(received)}, "
        f"{sum(1 for f in followers if f['problems'])} with problems; CPU s: clients "
        f"{result['cpu_s']:.1f}, server process {time.process_time() - cpu0:.1f}"
    )
    for s, r in result["stuck"].items():
        summary += (
            f"\nstuck {s}: {r['before_loss']} flows, then LostEvent(s) {r['lost_sources']} "
            f"for {r['lost']} flows, then {r['after_loss']} flows"
        )
    print(summary)
    record_property("stress_summary", summary)

    assert report.appended == FLOWS
    assert report.elapsed_s < FLOWS / RATE * 2 + 10, "ingest fell far behind its schedule"
    assert report.max_lateness_s < MAX_LATENESS_S, "the server loop stalled while followers ran"
    assert result["pending"] == 0, "followers still waiting for flows"
    for i, f in enumerate(followers):
        assert f["problems"] == [], f"follower {i}: {f['problems']}"
        assert f["received"] == FLOWS, f"follower {i} got {f['received']} of {FLOWS}"
    for s, r in result["stuck"].items():
        assert r["lost_sources"], f"stuck {s} follower was never told it lost flows"
        assert set(r["lost_sources"]) == {"HUBBLE_RING_BUFFER"}
        assert r["before_loss"] + r["lost"] + r["after_loss"] == FLOWS, (
            f"stuck {s}: flows unaccounted for"
        )
        assert r["in_order"], f"stuck {s}: flows out of order, or a gap not reported as lost"
        assert r["first_after_loss"] == r["before_loss"] + r["first_loss"]
        assert r["after_loss"] <= CAPACITY, "after the loss it resumes at the oldest stored flow"
