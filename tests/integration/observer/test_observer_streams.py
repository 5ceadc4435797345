"""Follow mode, field masks, and the batched stream against the standard one.

* follow: a flow appended after the request arrives reaches the follower quickly. The
  latency (append scheduled on the server loop -> response parsed by the client) is
  measured over several appends and printed; the test asserts a generous bound (1 s).
* field_mask keeps only the listed paths, on both streams, in history and in follow mode.
* hubblectl.v1.FlowStream/GetFlowsBatched returns exactly the responses of
  observer.Observer/GetFlows for the same request (compared as parsed messages).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
from google.protobuf import json_format
from observer_harness import (
    STREAMS,
    ObserverClient,
    ObserverHarness,
    ResponseReader,
    as_dict,
    flow_response,
    iter_responses,
    named_responses,
    time_ns_of,
    timestamp,
    to_entry,
)

from observer.api.v1.flow import flow_pb2
from observer.api.v1.observer import observer_pb2

BASE_NS: Final = 1_795_701_600_000_000_000  # 2026-11-26T14:00:00Z
FOLLOW_BOUND_S: Final = 1.0
LATENCY_SAMPLES: Final = 25
HUBBLE_DEFAULT_MASK: Final = (
    "time",
    "verdict",
    "ethernet",
    "IP",
    "l4",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "Type",
    "node_name",
    "l7",
    "event_type",
    "source_service",
    "destination_service",
    "is_reply",
    "Summary",
    "ip_trace_id",
)


def _request(**kwargs: Any) -> observer_pb2.GetFlowsRequest:
    req = observer_pb2.GetFlowsRequest()
    for key in ("since", "until"):
        if key in kwargs:
            getattr(req, key).CopyFrom(timestamp(kwargs.pop(key)))
    mask = kwargs.pop("mask", ())
    req.field_mask.paths.extend(mask)
    for key in ("whitelist", "blacklist"):
        for d in kwargs.pop(key, ()):
            getattr(req, key).append(json_format.ParseDict(d, flow_pb2.FlowFilter()))
    for key, value in kwargs.items():
        setattr(req, key, value)
    return req


@pytest.fixture
def follow_server(make_harness: Callable[..., ObserverHarness]) -> ObserverHarness:
    return make_harness([flow_response(BASE_NS + i) for i in range(3)], capacity=1023)


# --- follow ---------------------------------------------------------------------------------


def test_follow_latency(
    follow_server: ObserverHarness,
    make_client: Callable[..., ObserverClient],
    stream: str,
    record_property: Callable[[str, object], None],
) -> None:
    client = make_client(follow_server.unix_target)
    call = client.stream(_request(follow=True, number=1), stream, timeout=60)
    try:
        responses = iter_responses(call, stream)
        # The last stored flow arrives first: the server is following from here on.
        assert time_ns_of(next(responses)) == BASE_NS + 2
        latencies = []
        for i in range(LATENCY_SAMPLES):
            t_ns = BASE_NS + 1_000_000 + i
            entry = to_entry(flow_response(t_ns))
            start = time.perf_counter()
            follow_server.append_soon([entry])
            got = next(responses)
            latencies.append(time.perf_counter() - start)
            assert time_ns_of(got) == t_ns
    finally:
        call.cancel()
    p50, worst = statistics.median(latencies), max(latencies)
    record_property(f"follow_latency_{stream}_p50_ms", round(p50 * 1000, 3))
    record_property(f"follow_latency_{stream}_max_ms", round(worst * 1000, 3))
    print(
        f"\nfollow latency ({stream}): p50 {p50 * 1000:.2f} ms, max {worst * 1000:.2f} ms over {len(latencies)}"
    )
    assert worst < FOLLOW_BOUND_S


def test_follow_only_new_flows(
    follow_server: ObserverHarness, make_client: Callable[..., ObserverClient], stream: str
) -> None:
    """follow without number/since starts at the write position: no stored flow is sent.
    Markers are appended until the first arrives (whenever the server starts following)."""
    client = make_client(follow_server.unix_target)
    reader = ResponseReader(client.stream(_request(follow=True), stream, timeout=60), stream)
    try:
        reader.call.initial_metadata()
        first = None
        for i in range(50):
            follow_server.append([flow_response(BASE_NS + 100 + i)])
            first = reader.get(timeout=0.1)
            if first is not None:
                break
        assert first is not None, "no marker arrived"
        assert time_ns_of(first) >= BASE_NS + 100, "a stored flow was sent"
        follow_server.append([flow_response(BASE_NS + 200)])
        times = [time_ns_of(first)]
        while times[-1] != BASE_NS + 200:  # markers still in flight, then the last flow
            nxt = reader.get(timeout=5)
            assert nxt is not None, f"stream stalled after {times}"
            times.append(time_ns_of(nxt))
        assert times == sorted(times) and len(set(times)) == len(times)
    finally:
        reader.close()


def test_follow_with_since_gives_history_then_new(
    follow_server: ObserverHarness, make_client: Callable[..., ObserverClient], stream: str
) -> None:
    client = make_client(follow_server.unix_target)
    call = client.stream(_request(follow=True, since=BASE_NS + 1), stream, timeout=60)
    try:
        responses = iter_responses(call, stream)
        assert [time_ns_of(next(responses)) for _ in range(2)] == [BASE_NS + 1, BASE_NS + 2]
        follow_server.append([flow_response(BASE_NS + 20)])
        assert time_ns_of(next(responses)) == BASE_NS + 20
    finally:
        call.cancel()


def test_follow_applies_filters(
    follow_server: ObserverHarness, make_client: Callable[..., ObserverClient], stream: str
) -> None:
    client = make_client(follow_server.unix_target)
    req = _request(follow=True, number=1, whitelist=[{"verdict": ["DROPPED"]}])
    call = client.stream(req, stream, timeout=60)
    try:
        responses = iter_responses(call, stream)
        follow_server.append(
            [
                flow_response(BASE_NS + 30),
                flow_response(BASE_NS + 31, verdict="DROPPED", drop_reason_desc="POLICY_DENIED"),
                flow_response(BASE_NS + 32),
            ]
        )
        got = next(responses)
        assert time_ns_of(got) == BASE_NS + 31
        assert got.flow.verdict == flow_pb2.DROPPED
    finally:
        call.cancel()


# --- field mask -----------------------------------------------------------------------------

MASK: Final = ("time", "verdict", "source.pod_name", "l4", "Summary")


def _expected_masked(flow: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"time": flow["time"], "verdict": flow["verdict"]}
    if "pod_name" in flow.get("source", {}):
        out["source"] = {"pod_name": flow["source"]["pod_name"]}
    out["l4"] = flow["l4"]
    out["Summary"] = flow["Summary"]
    return out


def _canonical_flow(flow: dict[str, Any]) -> dict[str, Any]:
    """A flow dict as protojson prints it (timestamps with 0/3/6/9 digits)."""
    return json_format.MessageToDict(
        json_format.ParseDict(flow, flow_pb2.Flow()), preserving_proto_field_name=True
    )


def test_field_mask_history(
    named_server: ObserverHarness, make_client: Callable[..., ObserverClient], stream: str
) -> None:
    client = make_client(named_server.unix_target)
    got = client.get_flows(_request(mask=MASK), stream)
    expected = [r for r in named_responses().values() if "flow" in r]
    flows = [as_dict(r)["flow"] for r in got if r.HasField("flow")]
    assert flows == [_canonical_flow(_expected_masked(r["flow"])) for r in expected]
    assert sum(1 for r in got if r.HasField("lost_events")) == 1, "lost events are not masked away"
    for r in got:
        if r.HasField("flow"):
            assert r.node_name and r.HasField("time"), (
                "the mask applies to the flow, not the response"
            )


def test_field_mask_follow(
    follow_server: ObserverHarness, make_client: Callable[..., ObserverClient], stream: str
) -> None:
    client = make_client(follow_server.unix_target)
    call = client.stream(
        _request(follow=True, number=1, mask=("source.identity", "destination.pod_name")), stream
    )
    try:
        responses = iter_responses(call, stream)
        first = as_dict(next(responses))["flow"]
        assert first == {"source": {"identity": 12345}, "destination": {"pod_name": "deathstar"}}
        follow_server.append([flow_response(BASE_NS + 40)])
        assert as_dict(next(responses))["flow"] == first
    finally:
        call.cancel()


# --- batched == standard --------------------------------------------------------------------

PARITY_CASES: Final[list[tuple[str, dict[str, Any]]]] = [
    ("all", {}),
    ("last-3", {"number": 3}),
    ("first-4", {"first": True, "number": 4}),
    ("window", {"since": 1_795_694_402_000_000_000, "until": 1_795_694_407_000_000_000}),
    (
        "whitelist-blacklist",
        {
            "whitelist": [{"protocol": ["tcp"]}, {"protocol": ["udp"]}],
            "blacklist": [{"verdict": ["DROPPED"]}],
        },
    ),
    ("field-mask", {"mask": MASK}),
    ("hubble-default-mask", {"mask": HUBBLE_DEFAULT_MASK, "number": 20}),
    ("nothing", {"whitelist": [{"verdict": ["AUDIT"]}], "until": 1_795_694_400_000_000_000}),
]


@pytest.mark.parametrize("kwargs", [pytest.param(k, id=i) for i, k in PARITY_CASES])
def test_batched_equals_standard(
    named_server: ObserverHarness,
    make_client: Callable[..., ObserverClient],
    kwargs: dict[str, Any],
) -> None:
    client = make_client(named_server.unix_target)
    standard = client.get_flows(_request(**dict(kwargs)), "standard")
    batched = client.get_flows(_request(**dict(kwargs)), "batched")
    assert batched == standard
    assert [as_dict(r) for r in batched] == [as_dict(r) for r in standard]


def test_batched_equals_standard_following(
    follow_server: ObserverHarness, make_client: Callable[..., ObserverClient]
) -> None:
    client = make_client(follow_server.unix_target)
    calls = {
        s: client.stream(_request(follow=True, number=2, mask=MASK), s, timeout=60) for s in STREAMS
    }
    try:
        its: dict[str, Iterator[observer_pb2.GetFlowsResponse]] = {
            s: iter_responses(c, s) for s, c in calls.items()
        }
        got = {s: [next(it) for _ in range(2)] for s, it in its.items()}
        follow_server.append([flow_response(BASE_NS + 50 + i, verdict="AUDIT") for i in range(5)])
        for s, it in its.items():
            got[s].extend(next(it) for _ in range(5))
    finally:
        for c in calls.values():
            c.cancel()
    assert got["batched"] == got["standard"]
    assert [time_ns_of(r) for r in got["standard"]] == [BASE_NS + 1, BASE_NS + 2] + [
        BASE_NS + 50 + i for i in range(5)
    ]
