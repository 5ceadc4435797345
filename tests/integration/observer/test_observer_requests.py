"""GetFlowsRequest selectors and validation over gRPC, on both streams.

The store holds ten flows t0..t9 one second apart (each at ``+7 ns`` so the edges are exact
to the nanosecond) and a LostEvent between t4 and t5. Documented behaviour (FlowStore.select):

* ``since``/``until`` are inclusive: a flow exactly at ``since`` or ``until`` is returned, one
  a nanosecond outside is not.
* ``number`` counts flows only: LostEvents inside the span read are returned without counting.
  ``number=0`` returns everything; ``first`` takes the first N; ``since`` with ``number``
  reads forward from ``since`` (Hubble's precedence); ``until`` with last-N gives the last N
  up to ``until``.
* Invalid requests fail with INVALID_ARGUMENT and a message naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import grpc
import pytest
from google.protobuf import json_format
from observer_harness import (
    ObserverClient,
    ObserverHarness,
    flow_response,
    lost_response,
    time_ns_of,
    timestamp,
)

from observer.api.v1.flow import flow_pb2
from observer.api.v1.observer import observer_pb2

BASE_NS: Final = 1_795_698_000_000_000_000  # 2026-11-26T13:00:00Z
T: Final = tuple(BASE_NS + k * 1_000_000_000 + 7 for k in range(10))
LOST_NS: Final = T[4] + 500_000_000
ALL: Final = ("t0", "t1", "t2", "t3", "t4", "lost", "t5", "t6", "t7", "t8", "t9")


def _label(resp: observer_pb2.GetFlowsResponse) -> str:
    if resp.WhichOneof("response_types") == "lost_events":
        assert time_ns_of(resp) == LOST_NS
        return "lost"
    return f"t{T.index(time_ns_of(resp))}"


@pytest.fixture(scope="module")
def timed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObserverHarness]:
    responses = (
        [flow_response(t) for t in T[:5]]
        + [lost_response(LOST_NS, 3)]
        + [flow_response(t) for t in T[5:]]
    )
    harness = ObserverHarness(tmp_path_factory.mktemp("obs"), capacity=63)
    try:
        harness.start(responses)
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def client(
    timed_server: ObserverHarness, make_client: Callable[..., ObserverClient]
) -> ObserverClient:
    return make_client(timed_server.unix_target)


def _request(**kwargs: Any) -> observer_pb2.GetFlowsRequest:
    req = observer_pb2.GetFlowsRequest()
    for key in ("since", "until"):
        if key in kwargs:
            getattr(req, key).CopyFrom(timestamp(kwargs.pop(key)))
    for key, value in kwargs.items():
        setattr(req, key, value)
    return req


WINDOW_CASES: Final[list[tuple[str, dict[str, Any], tuple[str, ...]]]] = [
    ("number-0-is-all", {}, ALL),
    ("last-3", {"number": 3}, ("t7", "t8", "t9")),
    ("last-5-lost-outside-span", {"number": 5}, ("t5", "t6", "t7", "t8", "t9")),
    ("last-6-lost-not-counted", {"number": 6}, ("t4", "lost", "t5", "t6", "t7", "t8", "t9")),
    ("last-more-than-stored", {"number": 1000}, ALL),
    ("first-3", {"first": True, "number": 3}, ("t0", "t1", "t2")),
    (
        "first-6-lost-not-counted",
        {"first": True, "number": 6},
        ("t0", "t1", "t2", "t3", "t4", "lost", "t5"),
    ),
    ("first-0-is-all", {"first": True, "number": 0}, ALL),
    ("since-exact-edge-included", {"since": T[3]}, ALL[3:]),
    ("since-1ns-after-edge", {"since": T[3] + 1}, ALL[4:]),
    ("until-exact-edge-included", {"until": T[6]}, ALL[:8]),
    ("until-1ns-before-edge", {"until": T[6] - 1}, ALL[:7]),
    ("since-until-edges", {"since": T[3], "until": T[6]}, ("t3", "t4", "lost", "t5", "t6")),
    ("since-equals-until", {"since": T[5], "until": T[5]}, ("t5",)),
    ("window-with-only-lost", {"since": T[4] + 1, "until": T[5] - 1}, ("lost",)),
    ("since-with-number-reads-forward", {"since": T[3], "number": 2}, ("t3", "t4")),
    ("until-with-last-n", {"until": T[6], "number": 2}, ("t5", "t6")),
    ("first-with-window", {"first": True, "number": 2, "since": T[1], "until": T[8]}, ("t1", "t2")),
    ("since-after-everything", {"since": T[9] + 1}, ()),
    ("until-before-everything", {"until": T[0] - 1}, ()),
]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [pytest.param(k, e, id=i) for i, k, e in WINDOW_CASES],
)
def test_window(
    client: ObserverClient, stream: str, kwargs: dict[str, Any], expected: tuple[str, ...]
) -> None:
    got = tuple(_label(r) for r in client.get_flows(_request(**kwargs), stream))
    assert got == expected


def _filter(d: dict[str, Any]) -> flow_pb2.FlowFilter:
    return json_format.ParseDict(d, flow_pb2.FlowFilter())


def _enum_filter(field: str, number: int) -> flow_pb2.FlowFilter:
    """A FlowFilter with an enum number flow.proto does not define (proto3 enums are open)."""
    f = flow_pb2.FlowFilter()
    getattr(f, field).append(number)
    return f


def _masked(*paths: str) -> observer_pb2.GetFlowsRequest:
    req = observer_pb2.GetFlowsRequest()
    req.field_mask.paths.extend(paths)
    return req


# (id, request, words the error message must contain)
INVALID_CASES: Final[list[tuple[str, observer_pb2.GetFlowsRequest, tuple[str, ...]]]] = [
    ("first-with-follow", _request(first=True, follow=True, number=5), ("first", "follow")),
    ("since-after-until", _request(since=T[5], until=T[4]), ("since", "until")),
    ("until-with-follow", _request(follow=True, until=T[4]), ("until",)),
    (
        "bad-cidr",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"source_ip": ["10.0.0.0/33"]})]),
        ("source_ip",),
    ),
    (
        "bad-ip",
        observer_pb2.GetFlowsRequest(blacklist=[_filter({"destination_ip": ["10.0.0.256"]})]),
        ("destination_ip",),
    ),
    (
        "bad-label-selector",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"source_label": ["a in (b"]})]),
        ("source_label",),
    ),
    (
        "bad-node-label",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"node_labels": ["=x"]})]),
        ("node_labels",),
    ),
    (
        "unknown-verdict",
        observer_pb2.GetFlowsRequest(whitelist=[_enum_filter("verdict", 99)]),
        ("verdict", "99"),
    ),
    (
        "unknown-traffic-direction",
        observer_pb2.GetFlowsRequest(blacklist=[_enum_filter("traffic_direction", 9)]),
        ("traffic_direction", "9"),
    ),
    (
        "unknown-ip-version",
        observer_pb2.GetFlowsRequest(whitelist=[_enum_filter("ip_version", 7)]),
        ("ip_version",),
    ),
    (
        "unknown-drop-reason",
        observer_pb2.GetFlowsRequest(whitelist=[_enum_filter("drop_reason_desc", 9999)]),
        ("drop_reason_desc", "9999"),
    ),
    (
        "bad-status-code",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"http_status_code": ["abc"]})]),
        ("http_status_code",),
    ),
    (
        "unknown-protocol",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"protocol": ["quic"]})]),
        ("protocol",),
    ),
    (
        "empty-pod",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"source_pod": [""]})]),
        ("source_pod",),
    ),
    (
        "port-out-of-range",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"destination_port": ["65536"]})]),
        ("destination_port",),
    ),
    (
        "bad-regex",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"http_path": ["("]})]),
        ("http_path",),
    ),
    (
        "bad-fqdn",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"source_fqdn": ["a b"]})]),
        ("source_fqdn",),
    ),
    (
        "empty-node-name",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"node_name": [""]})]),
        ("node_name",),
    ),
    (
        "empty-cluster",
        observer_pb2.GetFlowsRequest(whitelist=[_filter({"source_cluster_name": [""]})]),
        ("source_cluster_name",),
    ),
    (
        "http-needs-l7-event-type",
        observer_pb2.GetFlowsRequest(
            whitelist=[_filter({"http_method": ["GET"], "event_type": [{"type": 4}]})]
        ),
        ("http_method",),
    ),
    (
        "cel-unsupported",
        observer_pb2.GetFlowsRequest(
            whitelist=[_filter({"experimental": {"cel_expression": ["true"]}})]
        ),
        ("cel_expression",),
    ),
    ("bad-field-mask", _masked("source.pod_name", "nosuch"), ("field_mask", "nosuch")),
]


@pytest.mark.parametrize(
    ("request_", "words"),
    [pytest.param(r, w, id=i) for i, r, w in INVALID_CASES],
)
def test_invalid_request(
    client: ObserverClient,
    stream: str,
    request_: observer_pb2.GetFlowsRequest,
    words: tuple[str, ...],
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.get_flows(request_, stream, timeout=5)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    details = err.details() or ""
    for word in words:
        assert word in details, f"{word!r} not in {details!r}"
