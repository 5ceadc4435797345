"""ServerStatus, GetNodes, GetNamespaces and peer.Peer/Notify over gRPC.

The servicers' clock is the harness's ``clock_ns``, so ``flows_rate`` (flows whose time falls
in the 60 whole seconds ending with the current one, divided by 60) and the one-hour window
of GetNamespaces are exact at their edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
from observer_harness import (
    RICH_TIME_NS,
    ObserverClient,
    ObserverHarness,
    flow_response,
    lost_response,
)

from observer import __version__
from observer.api.v1.observer import observer_pb2
from observer.api.v1.peer import peer_pb2
from observer.api.v1.relay import relay_pb2

S: Final = 1_000_000_000
NOW_NS: Final = 1_795_712_400 * S + S // 2  # 2026-11-26T17:00:00.5Z
CAPACITY: Final = 7
# seconds relative to the current second; the rate window is [-59, 0]
RATE_OFFSETS: Final = (-100, -61, -60, -59, -30, -1, 0, 0, 0, 3)
IN_WINDOW: Final = sum(1 for o in RATE_OFFSETS if -59 <= o <= 0)


@pytest.fixture
def status_server(make_harness: Callable[..., ObserverHarness]) -> ObserverHarness:
    now_sec = NOW_NS // S
    responses = [flow_response((now_sec + o) * S + i) for i, o in enumerate(RATE_OFFSETS)]
    responses.append(lost_response(NOW_NS, 3))
    return make_harness(responses, capacity=CAPACITY, clock_ns=NOW_NS)


@pytest.fixture
def status_client(
    status_server: ObserverHarness, make_client: Callable[..., ObserverClient]
) -> ObserverClient:
    return make_client(status_server.unix_target)


def test_server_status(status_server: ObserverHarness, status_client: ObserverClient) -> None:
    first = status_client.observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    second = status_client.observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    assert first.num_flows == CAPACITY, "the ring holds its capacity, the oldest overwritten"
    assert first.max_flows == CAPACITY
    assert first.seen_flows == len(RATE_OFFSETS) + 1, (
        "every stored response counts, lost events too"
    )
    assert 0 < first.uptime_ns < second.uptime_ns
    assert first.version == f"hubblectl v{__version__}"
    assert IN_WINDOW == 6
    assert first.flows_rate == pytest.approx(IN_WINDOW / 60)
    assert first.HasField("num_connected_nodes") and first.num_connected_nodes.value == 1
    assert first.HasField("num_unavailable_nodes") and first.num_unavailable_nodes.value == 0
    assert list(first.unavailable_nodes) == []


def test_flows_rate_window_moves_with_clock(
    status_server: ObserverHarness, status_client: ObserverClient
) -> None:
    status_server.clock_ns = NOW_NS + 3 * S  # window [-56, +3]: drops -59, adds +3
    resp = status_client.observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    assert resp.flows_rate == pytest.approx(sum(1 for o in RATE_OFFSETS if -56 <= o <= 3) / 60)
    status_server.clock_ns = NOW_NS + 3600 * S
    resp = status_client.observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    assert resp.flows_rate == 0.0


def test_server_status_counts_appends(
    status_server: ObserverHarness, status_client: ObserverClient
) -> None:
    status_server.append([flow_response(NOW_NS + i) for i in range(3)])
    resp = status_client.observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    assert (resp.num_flows, resp.seen_flows) == (CAPACITY, len(RATE_OFFSETS) + 4)
    assert resp.flows_rate == pytest.approx((IN_WINDOW + 3) / 60)


def test_get_nodes(status_server: ObserverHarness, status_client: ObserverClient) -> None:
    resp = status_client.observer.GetNodes(observer_pb2.GetNodesRequest(), timeout=5)
    (node,) = resp.nodes
    assert node.name == "default/node-a"
    assert node.version == f"hubblectl v{__version__}"
    assert node.address == status_server.tcp_target
    assert node.state == relay_pb2.NODE_CONNECTED
    assert not node.tls.enabled
    assert node.uptime_ns > 0
    assert (node.num_flows, node.max_flows, node.seen_flows) == (
        CAPACITY,
        CAPACITY,
        len(RATE_OFFSETS) + 1,
    )


@pytest.fixture
def namespaces_client(
    named_server: ObserverHarness, make_client: Callable[..., ObserverClient]
) -> Iterator[ObserverClient]:
    saved = named_server.clock_ns
    try:
        yield make_client(named_server.unix_target)
    finally:
        named_server.clock_ns = saved


@pytest.mark.parametrize(
    ("clock_ns", "expected"),
    [
        pytest.param(
            RICH_TIME_NS + 600 * S,
            [("", "default"), ("", "kube-system"), ("cluster-b", "hoth"), ("default", "default")],
            id="all-within-the-hour",
        ),
        pytest.param(
            # horizon = 12:00:05: the two flows with cluster "default" (12:00:01) are older
            RICH_TIME_NS - 6 * S + 3600 * S,
            [("", "default"), ("", "kube-system"), ("cluster-b", "hoth")],
            id="horizon-excludes-older",
        ),
        pytest.param(
            RICH_TIME_NS + 3600 * S, [("cluster-b", "hoth")], id="horizon-exactly-at-newest"
        ),
        pytest.param(RICH_TIME_NS + 3600 * S + 1, [], id="all-older-than-an-hour"),
    ],
)
def test_get_namespaces(
    named_server: ObserverHarness,
    namespaces_client: ObserverClient,
    clock_ns: int,
    expected: list[tuple[str, str]],
) -> None:
    named_server.clock_ns = clock_ns
    resp = namespaces_client.observer.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=5)
    assert [(n.cluster, n.namespace) for n in resp.namespaces] == expected


def test_peer_notify_announces_this_node(
    status_server: ObserverHarness, status_client: ObserverClient
) -> None:
    call: Any = status_client.peer.Notify(peer_pb2.NotifyRequest(), timeout=10)
    try:
        first = next(call)
    finally:
        call.cancel()
    assert first.type == peer_pb2.PEER_ADDED
    assert first.name == "default/node-a"
    assert first.address == status_server.tcp_target
