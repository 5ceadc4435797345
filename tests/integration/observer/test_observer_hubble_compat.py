"""What the ``hubble`` CLI (v1.19) sends, sent to our server over TCP and the unix socket.

* ``hubble status``: grpc.health.v1.Health/Check for "hubble.server.Observer" (must be
  SERVING), then observer.Observer/ServerStatus.
* ``hubble list nodes`` / ``hubble list namespaces``: GetNodes / GetNamespaces.
* ``hubble observe --from-pod default/xwing --to-label org=empire --verdict DROPPED
  --protocol tcp --port 80 --not --verdict FORWARDED`` with ``--last 20``, ``--follow`` and
  both: the FlowFilters Hubble's filter tracker builds for these flags (from-/to- flags and
  --verdict/--protocol go into both its "left" and "right" filter, --port puts source_port
  on the left and destination_port on the right; the identical blacklist filters collapse
  into one), with the default field mask Hubble sends for compact output (reference §6.5).
* ``hubble reflect``: server reflection lists the services and returns file descriptors.

Every response must parse, and every Observer call must carry ``hubble-server-version``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from observer_harness import (
    HEALTH_SERVICE,
    ObserverClient,
    ObserverHarness,
    ResponseReader,
    as_dict,
    flow_response,
    named_responses,
    time_ns_of,
)

from observer import __version__
from observer.api.v1.flow import flow_pb2
from observer.api.v1.observer import observer_pb2
from observer.api.v1.relay import relay_pb2

VERSION_KEY: Final = "hubble-server-version"
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
# hubble observe --from-pod default/xwing --to-label org=empire --verdict DROPPED
#   --protocol tcp --port 80 --not --verdict FORWARDED
HUBBLE_WHITELIST: Final = (
    {
        "source_pod": ["default/xwing"],
        "destination_label": ["org=empire"],
        "verdict": ["DROPPED"],
        "protocol": ["tcp"],
        "source_port": ["80"],
    },
    {
        "source_pod": ["default/xwing"],
        "destination_label": ["org=empire"],
        "verdict": ["DROPPED"],
        "protocol": ["tcp"],
        "destination_port": ["80"],
    },
)
HUBBLE_BLACKLIST: Final = ({"verdict": ["FORWARDED"]},)


def hubble_observe_request(*, last: int = 0, follow: bool = False) -> observer_pb2.GetFlowsRequest:
    req = observer_pb2.GetFlowsRequest(number=last, follow=follow)
    req.whitelist.extend(json_format.ParseDict(f, flow_pb2.FlowFilter()) for f in HUBBLE_WHITELIST)
    req.blacklist.extend(json_format.ParseDict(f, flow_pb2.FlowFilter()) for f in HUBBLE_BLACKLIST)
    req.field_mask.paths.extend(HUBBLE_DEFAULT_MASK)
    return req


def _version(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == VERSION_KEY:
            return str(value)
    return None


def _masked_drop_flow() -> dict[str, Any]:
    """The fixture drop flow as the default mask leaves it (protojson form)."""
    flow = named_responses()["drop"]["flow"]
    keep = {
        "time": flow["time"],
        "verdict": flow["verdict"],
        "IP": flow["IP"],
        "l4": flow["l4"],
        "source": {k: flow["source"][k] for k in ("identity", "namespace", "pod_name")},
        "destination": {k: flow["destination"][k] for k in ("identity", "namespace", "pod_name")},
        "Type": flow["Type"],
        "node_name": flow["node_name"],
        "event_type": flow["event_type"],
        "Summary": flow["Summary"],
    }
    return json_format.MessageToDict(
        json_format.ParseDict(keep, flow_pb2.Flow()), preserving_proto_field_name=True
    )


@pytest.fixture(scope="module", params=["front", "grpcio"])
def named_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ObserverHarness]:
    """As the agent serves: through the HTTP/2 front door, and (``--no-fast-stream``) grpc.aio
    directly."""
    harness = ObserverHarness(
        tmp_path_factory.mktemp("obs"), capacity=4095, front=request.param == "front"
    )
    try:
        harness.start(named_responses().values())
        yield harness
    finally:
        harness.stop()


@pytest.fixture(params=["tcp", "unix"])
def client(
    request: pytest.FixtureRequest,
    named_server: ObserverHarness,
    make_client: Callable[..., ObserverClient],
) -> ObserverClient:
    target = named_server.tcp_target if request.param == "tcp" else named_server.unix_target
    return make_client(target)


def test_hubble_status(client: ObserverClient, named_server: ObserverHarness) -> None:
    health = client.health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    status, call = client.observer.ServerStatus.with_call(
        observer_pb2.ServerStatusRequest(), timeout=5
    )
    assert _version(call.initial_metadata()) == __version__
    assert status.version == f"hubblectl v{__version__}"
    assert status.max_flows == named_server.capacity
    assert status.num_flows == len(named_responses())
    parsed = json_format.MessageToDict(status, preserving_proto_field_name=True)
    assert parsed["num_flows"] == str(len(named_responses()))  # uint64 as a JSON string


def test_hubble_list_nodes(client: ObserverClient, named_server: ObserverHarness) -> None:
    nodes, call = client.observer.GetNodes.with_call(observer_pb2.GetNodesRequest(), timeout=5)
    assert _version(call.initial_metadata()) == __version__
    assert [n.name for n in nodes.nodes] == [named_server.node.name]
    assert nodes.nodes[0].state == relay_pb2.NODE_CONNECTED
    json_format.MessageToDict(nodes, preserving_proto_field_name=True)


def test_hubble_list_namespaces(client: ObserverClient) -> None:
    resp, call = client.observer.GetNamespaces.with_call(
        observer_pb2.GetNamespacesRequest(), timeout=5
    )
    assert _version(call.initial_metadata()) == __version__
    json_format.MessageToDict(resp, preserving_proto_field_name=True)


def test_hubble_observe_last_20(client: ObserverClient) -> None:
    call = client.observer.GetFlows(hubble_observe_request(last=20), timeout=10)
    responses = list(call)
    assert _version(call.initial_metadata()) == __version__
    kinds = [r.WhichOneof("response_types") for r in responses]
    assert kinds == ["flow", "lost_events"], (
        "only the drop to deathstar:80 matches; lost events always pass"
    )
    assert as_dict(responses[0])["flow"] == _masked_drop_flow()
    assert responses[0].node_name == "default/node-a"
    assert responses[1].lost_events.source == flow_pb2.PERF_EVENT_RING_BUFFER


@pytest.mark.parametrize(
    "last", [pytest.param(0, id="follow"), pytest.param(20, id="last-20-follow")]
)
def test_hubble_observe_follow(
    make_harness: Callable[..., ObserverHarness],
    make_client: Callable[..., ObserverClient],
    last: int,
) -> None:
    """--follow streams new matching flows; with --last 20 the stored match comes first."""
    harness = make_harness(named_responses().values())
    client = make_client(harness.unix_target)
    reader = ResponseReader(
        client.observer.GetFlows(hubble_observe_request(last=last, follow=True), timeout=60),
        "standard",
    )
    try:
        assert _version(reader.call.initial_metadata()) == __version__
        if last:
            history = [reader.get(timeout=5) for _ in range(2)]
            assert [r.WhichOneof("response_types") if r else None for r in history] == [
                "flow",
                "lost_events",
            ]
        base = 1_795_708_800_000_000_000
        dropped: dict[str, Any] = {
            "verdict": "DROPPED",
            "drop_reason_desc": "POLICY_DENIED",
            "is_reply": None,
        }
        got = None
        for i in range(50):  # until the server follows (it may not yet, without --last)
            harness.append(
                [
                    flow_response(base + 2 * i),  # FORWARDED: blacklisted
                    flow_response(base + 2 * i + 1, **dropped),  # xwing -> deathstar:80 DROPPED
                ]
            )
            got = reader.get(timeout=0.1)
            if got is not None:
                break
        assert got is not None
        assert got.flow.verdict == flow_pb2.DROPPED and time_ns_of(got) % 2 == 1
        assert set(as_dict(got)["flow"]) <= {p.split(".")[0] for p in HUBBLE_DEFAULT_MASK}
    finally:
        reader.close()


def _reflect(
    client: ObserverClient, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    return list(stub.ServerReflectionInfo(iter(requests), timeout=10))


def test_reflection_lists_services(client: ObserverClient) -> None:
    (resp,) = _reflect(client, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in resp.list_services_response.service}
    assert {
        "observer.Observer",
        "peer.Peer",
        "hubblectl.v1.FlowStream",
        "grpc.health.v1.Health",
    } <= names


@pytest.mark.parametrize(
    ("request_", "file_name", "symbol"),
    [
        pytest.param(
            reflection_pb2.ServerReflectionRequest(file_by_filename="flow/flow.proto"),
            "flow/flow.proto",
            "Flow",
            id="file-by-name",
        ),
        pytest.param(
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="observer.Observer"),
            "observer/observer.proto",
            "GetFlowsRequest",
            id="observer-symbol",
        ),
        pytest.param(
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="peer.Peer"),
            "peer/peer.proto",
            "ChangeNotification",
            id="peer-symbol",
        ),
    ],
)
def test_reflection_file_descriptors(
    client: ObserverClient,
    request_: reflection_pb2.ServerReflectionRequest,
    file_name: str,
    symbol: str,
) -> None:
    (resp,) = _reflect(client, request_)
    assert resp.WhichOneof("message_response") == "file_descriptor_response", resp
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in resp.file_descriptor_response.file_descriptor_proto
    ]
    by_name = {f.name: f for f in files}
    assert file_name in by_name, sorted(by_name)
    assert symbol in {m.name for m in by_name[file_name].message_type}


def test_health_unknown_service_not_found(client: ObserverClient) -> None:
    """Only the services the agent registers are known to the health service."""
    with pytest.raises(grpc.RpcError) as info:
        client.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
