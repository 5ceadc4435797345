"""The relay merges its nodes' flows: order, number semantics, filters, both streams."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hubblectl.errors import ServerError
from observer.api.convert import dict_to_proto, response_to_json_line
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.filters import compile_filters
from observer.parser.timestamps import format_timestamp
from observer.relay.merge import parse_rfc3339_ns

from .conftest import FLOWS_PER_NODE, STEP, Cluster, make_nodes
from .harness import MS, T0, flow_responses, flows_of, node_statuses

NODES = ["node-a", "node-b", "node-c"]
TOTAL = 3 * FLOWS_PER_NODE
# node i's k-th flow is at T0 + i ms + k * 3 ms: together every millisecond from T0 on
ALL_TIMES = [T0 + j * MS for j in range(TOTAL)]


def _times(items: list[dict[str, Any]]) -> list[int]:
    return [parse_rfc3339_ns(i["time"]) for i in flows_of(items)]


def _get(cluster: Cluster, request: dict[str, Any], stream: str) -> list[dict[str, Any]]:
    if stream == "batched":
        with cluster.client() as client:
            return [orjson.loads(line) for chunk in client.get_flows(request) for line in chunk.splitlines()]
    msg = dict_to_proto(request, observer_pb2.GetFlowsRequest)
    stub = observer_pb2_grpc.ObserverStub(cluster.grpc_channel())
    return [orjson.loads(response_to_json_line(r)) for r in stub.GetFlows(msg, timeout=20)]


@pytest.mark.parametrize("stream", ["batched", "standard"])
def test_history_from_all_nodes_in_time_order(cluster: Cluster, stream: str) -> None:
    items = _get(cluster, {}, stream)
    statuses = node_statuses(items)
    assert statuses[0] == {"state_change": "NODE_CONNECTED", "node_names": NODES}
    assert "node_status" in items[0], "the node-status event comes before any flow"
    assert items[0]["node_name"] == "default/relay-test"
    flows = flows_of(items)
    assert _times(items) == ALL_TIMES
    assert [f["node_name"] for f in flows] == [f"default/{NODES[j % 3]}" for j in range(TOTAL)]
    assert len({f["flow"]["uuid"] for f in flows}) == TOTAL


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param({"number": 5}, ALL_TIMES[-5:], id="last-5-overall"),
        pytest.param({"number": 5, "first": True}, ALL_TIMES[:5], id="first-5-overall"),
        pytest.param({"number": 100}, ALL_TIMES, id="last-more-than-there-are"),
        pytest.param(
            {"number": 4, "since": format_timestamp(T0 + 30 * MS)}, ALL_TIMES[30:34], id="since-takes-first-n"
        ),
        pytest.param(
            {"since": format_timestamp(T0 + 10 * MS), "until": format_timestamp(T0 + 20 * MS)},
            ALL_TIMES[10:21],
            id="since-until-window",
        ),
    ],
)
@pytest.mark.parametrize("stream", ["batched", "standard"])
def test_number_first_last_across_nodes(
    cluster: Cluster, stream: str, request_: dict[str, Any], expected: list[int]
) -> None:
    assert _times(_get(cluster, request_, stream)) == expected


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param({}, ALL_TIMES, id="all"),
        pytest.param({"number": 7}, ALL_TIMES[-7:], id="last-7"),
        pytest.param({"number": 7, "first": True}, ALL_TIMES[:7], id="first-7"),
    ],
)
@pytest.mark.parametrize("sort_len", [1, 3, 7], ids=lambda n: f"sort-buffer-{n}")
def test_tiny_sort_buffer_keeps_exact_order_without_timers(
    loop: Any, sort_len: int, request_: dict[str, Any], expected: list[int]
) -> None:
    """With a 30 s drain timeout nothing is released by time: the watermark and the
    backpressure alone must move the merge along (a stall would hit the 10 s deadline)."""
    cluster = Cluster(loop, make_nodes(loop))
    try:
        cluster.start_relay(sort_buffer_len_max=sort_len, sort_buffer_drain_timeout_s=30.0)
        msg = dict_to_proto(request_, observer_pb2.GetFlowsRequest)
        from observer.api.v1.hubblectl import agent_pb2_grpc

        stub = agent_pb2_grpc.FlowStreamStub(cluster.grpc_channel())
        lines = [line for batch in stub.GetFlowsBatched(msg, timeout=10) for line in batch.json_lines.splitlines()]
        assert _times([orjson.loads(line) for line in lines]) == expected
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("whitelist", "blacklist"),
    [
        pytest.param([{"verdict": ["DROPPED"]}], [], id="verdict"),
        pytest.param([{"source_pod": ["default/tiefighter"]}], [], id="source-pod"),
        pytest.param([], [{"protocol": ["TCP"]}], id="blacklist-tcp"),
        pytest.param([{"node_name": ["default/node-b"]}, {"verdict": ["DROPPED"]}], [], id="or-across-filters"),
    ],
)
def test_filters_apply_on_every_node(cluster: Cluster, whitelist: list[Any], blacklist: list[Any]) -> None:
    generated = [
        r
        for i, name in enumerate(NODES)
        for r in flow_responses(f"default/{name}", T0 + i * MS, FLOWS_PER_NODE, STEP)
    ]
    match = compile_filters(whitelist, blacklist)
    expected = sorted(parse_rfc3339_ns(r["time"]) for r in generated if match(r["flow"]))
    assert expected, "the filter must select something"
    assert len(expected) < TOTAL, "the filter must drop something"
    items = _get(cluster, {"whitelist": whitelist, "blacklist": blacklist}, "batched")
    assert _times(items) == expected
    assert all(match(f["flow"]) for f in flows_of(items))


def test_node_without_batched_stream_is_read_with_getflows(loop: Any) -> None:
    """A stock Hubble agent only has observer.Observer: the relay falls back to GetFlows."""
    nodes = make_nodes(loop, "ab") + make_nodes(loop, "c", batched=False)
    cluster = Cluster(loop, nodes)
    try:
        cluster.start_relay()
        items = _get(cluster, {}, "batched")
        flows = flows_of(items)
        assert sum(f["node_name"] == "default/node-c" for f in flows) == FLOWS_PER_NODE
        assert _times(items) == sorted(
            [T0 + j * 3 * MS for j in range(FLOWS_PER_NODE)]
            + [T0 + MS + j * 3 * MS for j in range(FLOWS_PER_NODE)]
            + [T0 + j * 3 * MS for j in range(FLOWS_PER_NODE)]
        )
        assert cluster.relay is not None
        peer = cluster.relay.pool.get("node-c")
        assert peer is not None and peer.supports_batched is False
    finally:
        cluster.close()


def test_invalid_request_is_refused(cluster: Cluster) -> None:
    with cluster.client() as client, pytest.raises(ServerError, match="first cannot be specified with follow"):
        list(client.get_flows({"first": True, "follow": True}))


def test_metadata_health_and_reflection(cluster: Cluster) -> None:
    ch = cluster.grpc_channel()
    stub = observer_pb2_grpc.ObserverStub(ch)
    resp, call = stub.ServerStatus.with_call(observer_pb2.ServerStatusRequest(), timeout=10)
    metadata = dict(call.initial_metadata())
    assert metadata.get("hubble-relay-version") == "0.1.0"
    assert resp.num_connected_nodes.value == 3
    assert resp.num_flows == TOTAL
    health = health_pb2_grpc.HealthStub(ch)
    for service in ("", "hubble.server.Observer"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING

    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    answers = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"observer.Observer", "hubblectl.v1.FlowStream", "grpc.health.v1.Health"} <= names


def test_namespaces_from_all_nodes(cluster: Cluster) -> None:
    # the store's namespace window is the last hour: give one node a flow of now
    import time

    node = cluster.nodes[1]
    now = time.time_ns()
    shape = [r for r in flow_responses(node.absolute_name, now, 9, 1) if r["flow"].get("destination", {}).get("namespace") == "kube-system"]
    assert shape, "the fixtures have a flow to kube-system"
    cluster.loop.run(node.append(shape[:1]))
    stub = observer_pb2_grpc.ObserverStub(cluster.grpc_channel())
    resp = stub.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=10)
    assert "kube-system" in {n.namespace for n in resp.namespaces}


def test_unknown_rpc_is_unimplemented(cluster: Cluster) -> None:
    stub = observer_pb2_grpc.ObserverStub(cluster.grpc_channel())
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GetAgentEvents(observer_pb2.GetAgentEventsRequest(), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param({}, id="plain"),
        pytest.param({"whitelist": [{"verdict": ["DROPPED"]}]}, id="filtered"),
        pytest.param({"number": 3}, id="last-3"),
    ],
)
def test_agent_batches_carry_each_lines_time(loop: Any, request_: dict[str, Any]) -> None:
    """The agent's batched stream fills times_ns: one per line, the line's own time."""
    from observer.api.v1.hubblectl import agent_pb2_grpc

    (node,) = make_nodes(loop, "a")
    try:
        ch = grpc.insecure_channel(node.address)
        msg = dict_to_proto(request_, observer_pb2.GetFlowsRequest)
        batches = list(agent_pb2_grpc.FlowStreamStub(ch).GetFlowsBatched(msg, timeout=10))
        ch.close()
        lines = [line for b in batches for line in b.json_lines.splitlines()]
        times = [t for b in batches for t in b.times_ns]
        assert lines, "the request selects something"
        assert all(len(b.times_ns) == b.count for b in batches)
        assert times == [parse_rfc3339_ns(orjson.loads(line)["time"]) for line in lines]
    finally:
        loop.run(node.stop(0))


@pytest.mark.parametrize("sort_len", [1, 100], ids=lambda n: f"sort-buffer-{n}")
def test_node_without_times_is_merged_from_its_lines(loop: Any, sort_len: int) -> None:
    """An older agent sends no times_ns: the relay reads each line's time, same order."""
    nodes = make_nodes(loop, "ab") + make_nodes(loop, "c", times=False)
    # make_nodes times each node from T0, so node-c's flows coincide with node-a's
    cluster = Cluster(loop, nodes)
    try:
        cluster.start_relay(sort_buffer_len_max=sort_len, sort_buffer_drain_timeout_s=30.0)
        items = _get(cluster, {}, "batched")
        flows = flows_of(items)
        assert sum(f["node_name"] == "default/node-c" for f in flows) == FLOWS_PER_NODE
        assert _times(items) == sorted(
            [T0 + j * 3 * MS for j in range(FLOWS_PER_NODE)] * 2 + [T0 + MS + j * 3 * MS for j in range(FLOWS_PER_NODE)]
        )
        assert cluster.relay is not None
        peer = cluster.relay.pool.get("node-c")
        assert peer is not None and peer.supports_batched is True
    finally:
        cluster.close()


def test_malformed_batch_is_a_node_error(loop: Any) -> None:
    """A node whose batched stream sends something that is not a FlowBatch: NODE_ERROR for
    it, the other nodes' flows as usual."""
    nodes = make_nodes(loop, "ab") + make_nodes(loop, "c", malformed=True)
    cluster = Cluster(loop, nodes)
    try:
        cluster.start_relay()
        items = _get(cluster, {}, "batched")
        errors = [s for s in node_statuses(items) if s["state_change"] == "NODE_ERROR"]
        assert errors == [{"state_change": "NODE_ERROR", "node_names": ["node-c"], "message": "the node sent a malformed FlowBatch"}]
        assert _times(items) == sorted(
            [T0 + j * 3 * MS for j in range(FLOWS_PER_NODE)] + [T0 + MS + j * 3 * MS for j in range(FLOWS_PER_NODE)]
        )
    finally:
        cluster.close()
