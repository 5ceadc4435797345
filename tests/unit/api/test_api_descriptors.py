"""The compiled descriptors against Hubble v1.19.4's wire contract (docs: hubble-api.md §1-5).

Numbers, names, types, oneofs, reserved numbers and deprecation are what stock Hubble
clients and servers depend on; these tables are typed from the reference, not from our protos.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from observer.api.v1.flow import flow_pb2
from observer.api.v1.hubblectl import agent_pb2
from observer.api.v1.observer import observer_pb2
from observer.api.v1.peer import peer_pb2
from observer.api.v1.relay import relay_pb2

POOL = descriptor_pool.Default()
T = FieldDescriptor

# short type names used in the tables below
SCALARS = {
    "string": T.TYPE_STRING,
    "bool": T.TYPE_BOOL,
    "uint32": T.TYPE_UINT32,
    "int32": T.TYPE_INT32,
    "uint64": T.TYPE_UINT64,
    "int64": T.TYPE_INT64,
    "double": T.TYPE_DOUBLE,
    "bytes": T.TYPE_BYTES,
}


def msg(full_name: str) -> Descriptor:
    return POOL.FindMessageTypeByName(full_name)


def enum(full_name: str) -> EnumDescriptor:
    return POOL.FindEnumTypeByName(full_name)


def type_name(fd: FieldDescriptor) -> str:
    """`repeated flow.Policy`, `uint64`, `google.protobuf.Timestamp`, ... for a field."""
    if fd.message_type is not None:
        base = fd.message_type.full_name
    elif fd.enum_type is not None:
        base = fd.enum_type.full_name
    else:
        base = next(k for k, v in SCALARS.items() if v == fd.type)
    return f"repeated {base}" if fd.is_repeated else base


def reserved_numbers(desc: Descriptor) -> set[int]:
    proto = descriptor_pb2.DescriptorProto()
    desc.CopyToProto(proto)
    return {n for r in proto.reserved_range for n in range(r.start, r.end)}


def enum_reserved_numbers(desc: EnumDescriptor) -> set[int]:
    proto = descriptor_pb2.EnumDescriptorProto()
    desc.CopyToProto(proto)
    return {n for r in proto.reserved_range for n in range(r.start, r.end + 1)}


# --- files -----------------------------------------------------------------------------------

FILES = [
    # (module, descriptor name, package, dependencies, public dependencies)
    (
        flow_pb2,
        "flow/flow.proto",
        "flow",
        {
            "google/protobuf/any.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/wrappers.proto",
        },
        set(),
    ),
    (
        observer_pb2,
        "observer/observer.proto",
        "observer",
        {
            "flow/flow.proto",
            "relay/relay.proto",
            "google/protobuf/any.proto",
            "google/protobuf/field_mask.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/wrappers.proto",
        },
        {"flow/flow.proto"},
    ),
    (peer_pb2, "peer/peer.proto", "peer", set(), set()),
    (relay_pb2, "relay/relay.proto", "relay", set(), set()),
    (
        agent_pb2,
        "hubblectl/agent.proto",
        "hubblectl.v1",
        {"google/protobuf/timestamp.proto", "observer/observer.proto"},
        set(),
    ),
]


@pytest.mark.parametrize(
    ("module", "name", "package", "deps", "public"), FILES, ids=[f[1] for f in FILES]
)
def test_file_names_packages_and_imports(
    module: object, name: str, package: str, deps: set[str], public: set[str]
) -> None:
    fd = module.DESCRIPTOR  # type: ignore[attr-defined]
    assert fd.name == name
    assert fd.package == package
    assert descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb).syntax == "proto3"
    assert POOL.FindFileByName(name) is fd
    assert {d.name for d in fd.dependencies} == deps
    assert {d.name for d in fd.public_dependencies} == public


def test_public_import_exposes_flow_types_through_observer() -> None:
    assert observer_pb2.Flow is flow_pb2.Flow
    assert observer_pb2.LostEvent is flow_pb2.LostEvent


# --- services --------------------------------------------------------------------------------

METHODS = [
    # (service, method, input, output, server streaming)
    (
        "observer.Observer",
        "GetFlows",
        "observer.GetFlowsRequest",
        "observer.GetFlowsResponse",
        True,
    ),
    (
        "observer.Observer",
        "GetAgentEvents",
        "observer.GetAgentEventsRequest",
        "observer.GetAgentEventsResponse",
        True,
    ),
    (
        "observer.Observer",
        "GetDebugEvents",
        "observer.GetDebugEventsRequest",
        "observer.GetDebugEventsResponse",
        True,
    ),
    (
        "observer.Observer",
        "GetNodes",
        "observer.GetNodesRequest",
        "observer.GetNodesResponse",
        False,
    ),
    (
        "observer.Observer",
        "GetNamespaces",
        "observer.GetNamespacesRequest",
        "observer.GetNamespacesResponse",
        False,
    ),
    (
        "observer.Observer",
        "ServerStatus",
        "observer.ServerStatusRequest",
        "observer.ServerStatusResponse",
        False,
    ),
    ("peer.Peer", "Notify", "peer.NotifyRequest", "peer.ChangeNotification", True),
    (
        "hubblectl.v1.Agent",
        "CreateEndpoint",
        "hubblectl.v1.CreateEndpointRequest",
        "hubblectl.v1.Endpoint",
        False,
    ),
    (
        "hubblectl.v1.Agent",
        "DeleteEndpoint",
        "hubblectl.v1.DeleteEndpointRequest",
        "hubblectl.v1.DeleteEndpointResponse",
        False,
    ),
    (
        "hubblectl.v1.Agent",
        "ListEndpoints",
        "hubblectl.v1.ListEndpointsRequest",
        "hubblectl.v1.ListEndpointsResponse",
        False,
    ),
    (
        "hubblectl.v1.Agent",
        "GetEndpoint",
        "hubblectl.v1.GetEndpointRequest",
        "hubblectl.v1.Endpoint",
        False,
    ),
    (
        "hubblectl.v1.FlowStream",
        "GetFlowsBatched",
        "observer.GetFlowsRequest",
        "hubblectl.v1.FlowBatch",
        True,
    ),
]


@pytest.mark.parametrize(
    ("service", "method", "inp", "out", "streaming"),
    METHODS,
    ids=[f"{m[0]}/{m[1]}" for m in METHODS],
)
def test_service_methods(service: str, method: str, inp: str, out: str, streaming: bool) -> None:
    sd = POOL.FindServiceByName(service)
    md = sd.methods_by_name[method]
    assert md.input_type.full_name == inp
    assert md.output_type.full_name == out
    proto = descriptor_pb2.FileDescriptorProto.FromString(sd.file.serialized_pb)
    (sp,) = [s for s in proto.service if s.name == sd.name]
    (mp,) = [m for m in sp.method if m.name == method]
    assert mp.server_streaming is streaming
    assert mp.client_streaming is False


@pytest.mark.parametrize(
    ("service", "methods"),
    [
        (
            "observer.Observer",
            [
                "GetFlows",
                "GetAgentEvents",
                "GetDebugEvents",
                "GetNodes",
                "GetNamespaces",
                "ServerStatus",
            ],
        ),
        ("peer.Peer", ["Notify"]),
        ("hubblectl.v1.FlowStream", ["GetFlowsBatched"]),
    ],
    ids=["observer", "peer", "flowstream"],
)
def test_services_have_exactly_these_methods(service: str, methods: list[str]) -> None:
    assert [m.name for m in POOL.FindServiceByName(service).methods] == methods


# --- fields ----------------------------------------------------------------------------------

FIELDS = [
    # (message, field, number, type, oneof or None)
    ("flow.Flow", "time", 1, "google.protobuf.Timestamp", None),
    ("flow.Flow", "uuid", 34, "string", None),
    ("flow.Flow", "emitter", 41, "flow.Emitter", None),
    ("flow.Flow", "verdict", 2, "flow.Verdict", None),
    ("flow.Flow", "drop_reason", 3, "uint32", None),
    ("flow.Flow", "auth_type", 35, "flow.AuthType", None),
    ("flow.Flow", "ethernet", 4, "flow.Ethernet", None),
    ("flow.Flow", "IP", 5, "flow.IP", None),
    ("flow.Flow", "l4", 6, "flow.Layer4", None),
    ("flow.Flow", "tunnel", 39, "flow.Tunnel", None),
    ("flow.Flow", "source", 8, "flow.Endpoint", None),
    ("flow.Flow", "destination", 9, "flow.Endpoint", None),
    ("flow.Flow", "Type", 10, "flow.FlowType", None),
    ("flow.Flow", "node_name", 11, "string", None),
    ("flow.Flow", "node_labels", 37, "repeated string", None),
    ("flow.Flow", "source_names", 13, "repeated string", None),
    ("flow.Flow", "destination_names", 14, "repeated string", None),
    ("flow.Flow", "l7", 15, "flow.Layer7", None),
    ("flow.Flow", "reply", 16, "bool", None),
    ("flow.Flow", "event_type", 19, "flow.CiliumEventType", None),
    ("flow.Flow", "source_service", 20, "flow.Service", None),
    ("flow.Flow", "destination_service", 21, "flow.Service", None),
    ("flow.Flow", "traffic_direction", 22, "flow.TrafficDirection", None),
    ("flow.Flow", "policy_match_type", 23, "uint32", None),
    ("flow.Flow", "trace_observation_point", 24, "flow.TraceObservationPoint", None),
    ("flow.Flow", "trace_reason", 36, "flow.TraceReason", None),
    ("flow.Flow", "file", 38, "flow.FileInfo", None),
    ("flow.Flow", "ip_trace_id", 40, "flow.IPTraceID", None),
    ("flow.Flow", "drop_reason_desc", 25, "flow.DropReason", None),
    ("flow.Flow", "is_reply", 26, "google.protobuf.BoolValue", None),
    ("flow.Flow", "debug_capture_point", 27, "flow.DebugCapturePoint", None),
    ("flow.Flow", "interface", 28, "flow.NetworkInterface", None),
    ("flow.Flow", "proxy_port", 29, "uint32", None),
    ("flow.Flow", "trace_context", 30, "flow.TraceContext", None),
    ("flow.Flow", "sock_xlate_point", 31, "flow.SocketTranslationPoint", None),
    ("flow.Flow", "socket_cookie", 32, "uint64", None),
    ("flow.Flow", "cgroup_id", 33, "uint64", None),
    ("flow.Flow", "Summary", 100000, "string", None),
    ("flow.Flow", "extensions", 150000, "google.protobuf.Any", None),
    ("flow.Flow", "egress_allowed_by", 21001, "repeated flow.Policy", None),
    ("flow.Flow", "ingress_allowed_by", 21002, "repeated flow.Policy", None),
    ("flow.Flow", "egress_denied_by", 21004, "repeated flow.Policy", None),
    ("flow.Flow", "ingress_denied_by", 21005, "repeated flow.Policy", None),
    ("flow.Flow", "policy_log", 21006, "repeated string", None),
    ("flow.Flow", "aggregate", 21007, "flow.Aggregate", None),
    ("flow.Layer4", "TCP", 1, "flow.TCP", "protocol"),
    ("flow.Layer4", "UDP", 2, "flow.UDP", "protocol"),
    ("flow.Layer4", "ICMPv4", 3, "flow.ICMPv4", "protocol"),
    ("flow.Layer4", "ICMPv6", 4, "flow.ICMPv6", "protocol"),
    ("flow.Layer4", "SCTP", 5, "flow.SCTP", "protocol"),
    ("flow.Layer4", "VRRP", 6, "flow.VRRP", "protocol"),
    ("flow.Layer4", "IGMP", 7, "flow.IGMP", "protocol"),
    ("flow.Layer7", "type", 1, "flow.L7FlowType", None),
    ("flow.Layer7", "latency_ns", 2, "uint64", None),
    ("flow.Layer7", "dns", 100, "flow.DNS", "record"),
    ("flow.Layer7", "http", 101, "flow.HTTP", "record"),
    ("flow.Layer7", "kafka", 102, "flow.Kafka", "record"),
    ("flow.Endpoint", "ID", 1, "uint32", None),
    ("flow.Endpoint", "cluster_name", 7, "string", None),
    ("flow.Endpoint", "workloads", 6, "repeated flow.Workload", None),
    ("flow.IP", "source_xlated", 5, "string", None),
    ("flow.IP", "ipVersion", 3, "flow.IPVersion", None),
    ("flow.TCPFlags", "NS", 9, "bool", None),
    ("flow.Tunnel", "protocol", 1, "flow.Tunnel.Protocol", None),
    ("flow.Tunnel", "vni", 4, "uint32", None),
    ("flow.CiliumEventType", "sub_type", 2, "int32", None),
    ("flow.LostEvent", "num_events_lost", 2, "uint64", None),
    ("flow.LostEvent", "cpu", 3, "google.protobuf.Int32Value", None),
    ("flow.IPCacheNotification", "old_identity", 3, "google.protobuf.UInt32Value", None),
    ("flow.PolicyUpdateNotification", "rule_count", 3, "int64", None),
    ("flow.AgentEvent", "agent_start", 101, "flow.TimeNotification", "notification"),
    ("flow.AgentEvent", "service_delete", 107, "flow.ServiceDeleteNotification", "notification"),
    ("flow.DebugEvent", "cpu", 8, "google.protobuf.Int32Value", None),
    ("flow.HTTP", "headers", 5, "repeated flow.HTTPHeader", None),
    ("flow.DNS", "rrtypes", 8, "repeated string", None),
    ("observer.GetFlowsRequest", "number", 1, "uint64", None),
    ("observer.GetFlowsRequest", "first", 9, "bool", None),
    ("observer.GetFlowsRequest", "follow", 3, "bool", None),
    ("observer.GetFlowsRequest", "blacklist", 5, "repeated flow.FlowFilter", None),
    ("observer.GetFlowsRequest", "whitelist", 6, "repeated flow.FlowFilter", None),
    ("observer.GetFlowsRequest", "since", 7, "google.protobuf.Timestamp", None),
    ("observer.GetFlowsRequest", "until", 8, "google.protobuf.Timestamp", None),
    ("observer.GetFlowsRequest", "field_mask", 10, "google.protobuf.FieldMask", None),
    (
        "observer.GetFlowsRequest",
        "experimental",
        999,
        "observer.GetFlowsRequest.Experimental",
        None,
    ),
    ("observer.GetFlowsRequest", "extensions", 150000, "google.protobuf.Any", None),
    ("observer.GetFlowsResponse", "flow", 1, "flow.Flow", "response_types"),
    ("observer.GetFlowsResponse", "node_status", 2, "relay.NodeStatusEvent", "response_types"),
    ("observer.GetFlowsResponse", "lost_events", 3, "flow.LostEvent", "response_types"),
    ("observer.GetFlowsResponse", "node_name", 1000, "string", None),
    ("observer.GetFlowsResponse", "time", 1001, "google.protobuf.Timestamp", None),
    (
        "observer.ServerStatusResponse",
        "num_connected_nodes",
        5,
        "google.protobuf.UInt32Value",
        None,
    ),
    ("observer.ServerStatusResponse", "flows_rate", 9, "double", None),
    ("observer.Node", "state", 4, "relay.NodeState", None),
    ("observer.Node", "tls", 5, "observer.TLS", None),
    ("observer.ExportEvent", "debug_event", 5, "flow.DebugEvent", "response_types"),
    ("relay.NodeStatusEvent", "state_change", 1, "relay.NodeState", None),
    ("relay.NodeStatusEvent", "node_names", 2, "repeated string", None),
    ("peer.ChangeNotification", "name", 1, "string", None),
    ("peer.ChangeNotification", "address", 2, "string", None),
    ("peer.ChangeNotification", "type", 3, "peer.ChangeNotificationType", None),
    ("peer.ChangeNotification", "tls", 4, "peer.TLS", None),
    ("peer.TLS", "server_name", 1, "string", None),
    ("hubblectl.v1.FlowBatch", "json_lines", 1, "bytes", None),
    ("hubblectl.v1.FlowBatch", "count", 2, "uint32", None),
    ("hubblectl.v1.FlowBatch", "json_lines_lz4", 4, "repeated bytes", None),
    ("hubblectl.v1.FlowBatch", "json_lines_lz4_sizes", 5, "repeated uint32", None),
    ("hubblectl.v1.CreateEndpointRequest", "labels", 3, "repeated string", None),
    ("hubblectl.v1.Endpoint", "interface_name", 9, "string", None),
    ("hubblectl.v1.Endpoint", "created", 15, "google.protobuf.Timestamp", None),
]


@pytest.mark.parametrize(
    ("message", "field", "number", "typ", "oneof"), FIELDS, ids=[f"{f[0]}.{f[1]}" for f in FIELDS]
)
def test_field(message: str, field: str, number: int, typ: str, oneof: str | None) -> None:
    fd = msg(message).fields_by_name[field]
    assert fd.number == number
    assert type_name(fd) == typ
    assert (fd.containing_oneof.name if fd.containing_oneof else None) == oneof


# Declaration order matters for JSON key order (Hubble's protojson prints in this order).
FLOW_ORDER = [
    (1, "time"), (34, "uuid"), (41, "emitter"), (2, "verdict"), (3, "drop_reason"),
    (35, "auth_type"), (4, "ethernet"), (5, "IP"), (6, "l4"), (39, "tunnel"), (8, "source"),
    (9, "destination"), (10, "Type"), (11, "node_name"), (37, "node_labels"),
    (13, "source_names"), (14, "destination_names"), (15, "l7"), (16, "reply"),
    (19, "event_type"), (20, "source_service"), (21, "destination_service"),
    (22, "traffic_direction"), (23, "policy_match_type"), (24, "trace_observation_point"),
    (36, "trace_reason"), (38, "file"), (40, "ip_trace_id"), (25, "drop_reason_desc"),
    (26, "is_reply"), (27, "debug_capture_point"), (28, "interface"), (29, "proxy_port"),
    (30, "trace_context"), (31, "sock_xlate_point"), (32, "socket_cookie"), (33, "cgroup_id"),
    (100000, "Summary"), (150000, "extensions"), (21001, "egress_allowed_by"),
    (21002, "ingress_allowed_by"), (21004, "egress_denied_by"), (21005, "ingress_denied_by"),
    (21006, "policy_log"), (21007, "aggregate"),
]  # fmt: skip

FLOWFILTER_ORDER = [
    (29, "uuid"), (1, "source_ip"), (34, "source_ip_xlated"), (2, "source_pod"),
    (7, "source_fqdn"), (10, "source_label"), (16, "source_service"), (26, "source_workload"),
    (37, "source_cluster_name"), (3, "destination_ip"), (4, "destination_pod"),
    (8, "destination_fqdn"), (11, "destination_label"), (17, "destination_service"),
    (27, "destination_workload"), (38, "destination_cluster_name"), (30, "traffic_direction"),
    (5, "verdict"), (33, "drop_reason_desc"), (35, "interface"), (6, "event_type"),
    (9, "http_status_code"), (12, "protocol"), (13, "source_port"), (14, "destination_port"),
    (15, "reply"), (18, "dns_query"), (19, "source_identity"), (20, "destination_identity"),
    (21, "http_method"), (22, "http_path"), (31, "http_url"), (32, "http_header"),
    (23, "tcp_flags"), (24, "node_name"), (36, "node_labels"), (25, "ip_version"),
    (28, "trace_id"), (39, "ip_trace_id"), (40, "encrypted"), (999, "experimental"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("message", "order"),
    [
        ("flow.Flow", FLOW_ORDER),
        ("flow.FlowFilter", FLOWFILTER_ORDER),
        ("observer.GetFlowsRequest", [
            (1, "number"), (9, "first"), (3, "follow"), (5, "blacklist"), (6, "whitelist"),
            (7, "since"), (8, "until"), (10, "field_mask"), (999, "experimental"),
            (150000, "extensions"),
        ]),
        ("observer.GetFlowsResponse", [
            (1, "flow"), (2, "node_status"), (3, "lost_events"), (1000, "node_name"), (1001, "time"),
        ]),
        ("peer.ChangeNotification", [(1, "name"), (2, "address"), (3, "type"), (4, "tls")]),
        ("flow.IP", [
            (1, "source"), (5, "source_xlated"), (2, "destination"), (3, "ipVersion"),
            (4, "encrypted"),
        ]),
        ("flow.Endpoint", [
            (1, "ID"), (2, "identity"), (7, "cluster_name"), (3, "namespace"), (4, "labels"),
            (5, "pod_name"), (6, "workloads"),
        ]),
    ],
    ids=["Flow", "FlowFilter", "GetFlowsRequest", "GetFlowsResponse", "ChangeNotification", "IP", "Endpoint"],
)  # fmt: skip
def test_all_fields_in_declaration_order(message: str, order: list[tuple[int, str]]) -> None:
    assert [(f.number, f.name) for f in msg(message).fields] == order


FLOWFILTER_TYPES = {
    "source_workload": "repeated flow.Workload",
    "destination_workload": "repeated flow.Workload",
    "traffic_direction": "repeated flow.TrafficDirection",
    "verdict": "repeated flow.Verdict",
    "drop_reason_desc": "repeated flow.DropReason",
    "interface": "repeated flow.NetworkInterface",
    "event_type": "repeated flow.EventTypeFilter",
    "reply": "repeated bool",
    "source_identity": "repeated uint32",
    "destination_identity": "repeated uint32",
    "http_header": "repeated flow.HTTPHeader",
    "tcp_flags": "repeated flow.TCPFlags",
    "ip_version": "repeated flow.IPVersion",
    "ip_trace_id": "repeated uint64",
    "encrypted": "repeated bool",
    "experimental": "flow.FlowFilter.Experimental",
}


def test_flowfilter_field_types() -> None:
    got = {f.name: type_name(f) for f in msg("flow.FlowFilter").fields}
    expected = {name: FLOWFILTER_TYPES.get(name, "repeated string") for _, name in FLOWFILTER_ORDER}
    assert got == expected
    exp = msg("flow.FlowFilter.Experimental").fields_by_name["cel_expression"]
    assert (exp.number, type_name(exp)) == (1, "repeated string")
    etf = msg("flow.EventTypeFilter")
    assert [(f.number, f.name, type_name(f)) for f in etf.fields] == [
        (1, "type", "int32"),
        (2, "match_sub_type", "bool"),
        (3, "sub_type", "int32"),
    ]


@pytest.mark.parametrize(
    ("message", "numbers"),
    [
        ("flow.Flow", {7, 12, 17, 18}),
        ("observer.GetFlowsRequest", {2}),
        ("observer.GetFlowsRequest.Experimental", {1}),
        ("flow.Layer4", set()),
    ],
    ids=["Flow", "GetFlowsRequest", "GetFlowsRequest.Experimental", "Layer4"],
)
def test_reserved_field_numbers(message: str, numbers: set[int]) -> None:
    assert reserved_numbers(msg(message)) == numbers
    assert not numbers & {f.number for f in msg(message).fields}


@pytest.mark.parametrize(
    ("enum_name", "numbers"),
    [("flow.DebugCapturePoint", {1, 2, 3}), ("flow.AgentEventType", {1}), ("flow.Verdict", set())],
    ids=["DebugCapturePoint", "AgentEventType", "Verdict"],
)
def test_reserved_enum_numbers(enum_name: str, numbers: set[int]) -> None:
    assert enum_reserved_numbers(enum(enum_name)) == numbers


@pytest.mark.parametrize(
    ("message", "oneof", "members"),
    [
        ("flow.Layer4", "protocol", ["TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP", "VRRP", "IGMP"]),
        ("flow.Layer7", "record", ["dns", "http", "kafka"]),
        ("observer.GetFlowsResponse", "response_types", ["flow", "node_status", "lost_events"]),
        (
            "flow.AgentEvent",
            "notification",
            [
                "unknown",
                "agent_start",
                "policy_update",
                "endpoint_regenerate",
                "endpoint_update",
                "ipcache_update",
                "service_upsert",
                "service_delete",
            ],
        ),
    ],
    ids=["Layer4", "Layer7", "GetFlowsResponse", "AgentEvent"],
)
def test_oneofs(message: str, oneof: str, members: list[str]) -> None:
    desc = msg(message)
    assert [o.name for o in desc.oneofs] == [oneof]
    assert [f.name for f in desc.oneofs_by_name[oneof].fields] == members


@pytest.mark.parametrize(
    ("message", "field", "deprecated"),
    [
        ("flow.Flow", "drop_reason", True),
        ("flow.Flow", "reply", True),
        ("flow.Flow", "Summary", True),
        ("flow.Flow", "is_reply", False),
        ("flow.Layer7", "kafka", True),
        ("flow.AgentEvent", "service_upsert", True),
        ("flow.ServiceUpsertNotification", "traffic_policy", True),
        ("flow.ServiceUpsertNotification", "ext_traffic_policy", False),
    ],
    ids=lambda v: str(v),
)
def test_deprecated_fields(message: str, field: str, deprecated: bool) -> None:
    assert msg(message).fields_by_name[field].GetOptions().deprecated is deprecated


@pytest.mark.parametrize(
    ("enum_name", "name", "number", "deprecated"),
    [
        ("flow.TraceObservationPoint", "UNKNOWN_POINT", 0, False),
        ("flow.TraceObservationPoint", "TO_ENDPOINT", 101, False),
        ("flow.TraceObservationPoint", "FROM_ENDPOINT", 5, False),
        ("flow.TraceObservationPoint", "TO_CRYPTO", 13, False),
        ("flow.TraceReason", "REOPENED", 5, True),
        ("flow.TraceReason", "ENCRYPT_OVERLAY", 8, True),
        ("flow.Verdict", "TRANSLATED", 7, False),
        ("flow.DropReason", "POLICY_DENIED", 133, False),
        ("flow.DropReason", "INVALID_SOURCE_MAC", 130, True),
        ("flow.DropReason", "CT_MISSING_TCP_ACK_FLAG", 136, False),
        ("flow.DropReason", "MISSING_SRV6_STATE", 186, True),
        ("flow.DropReason", "DROP_PUNT_PROXY", 205, False),
        ("flow.EventType", "EventSample", 9, False),
        ("flow.EventType", "RecordLost", 2, False),
        ("flow.Tunnel.Protocol", "GENEVE", 2, False),
        ("flow.LostEventSource", "HUBBLE_RING_BUFFER", 3, False),
        ("flow.AgentEventType", "ENDPOINT_REGENERATE_SUCCESS", 5, False),
        ("flow.AgentEventType", "SERVICE_DELETED", 12, True),
        ("flow.DebugEventType", "DBG_LB6_LOOPBACK_SNAT_REV", 68, False),
        ("flow.DebugCapturePoint", "DBG_CAPTURE_DELIVERY", 4, False),
        ("flow.SocketTranslationPoint", "SOCK_XLATE_POINT_POST_DIRECTION_REV", 4, False),
        ("relay.NodeState", "NODE_ERROR", 4, False),
        ("peer.ChangeNotificationType", "PEER_UPDATED", 3, False),
    ],
    ids=lambda v: str(v),
)
def test_enum_values(enum_name: str, name: str, number: int, deprecated: bool) -> None:
    value = enum(enum_name).values_by_name[name]
    assert value.number == number
    assert value.GetOptions().deprecated is deprecated


@pytest.mark.parametrize(
    ("enum_name", "count"),
    [
        ("flow.DropReason", 76),  # 0 and 130..205 without 159
        ("flow.DebugEventType", 69),  # 0..68
        ("flow.TraceObservationPoint", 15),
        ("flow.AgentEventType", 12),  # 0, 2..12
    ],
    ids=["DropReason", "DebugEventType", "TraceObservationPoint", "AgentEventType"],
)
def test_enum_sizes(enum_name: str, count: int) -> None:
    values = enum(enum_name).values
    assert len(values) == count
    assert len({v.number for v in values}) == count


def test_drop_reason_159_is_unassigned() -> None:
    assert 159 not in enum("flow.DropReason").values_by_number


@pytest.mark.parametrize(
    "message",
    ["flow.Kafka", "flow.ServiceUpsertNotification", "flow.ServiceDeleteNotification"],
)
def test_deprecated_messages(message: str) -> None:
    assert msg(message).GetOptions().deprecated is True


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_wire_bytes_use_the_reference_numbers() -> None:
    """Hand-built bytes with Hubble's numbers parse into the expected fields."""
    summary = varint(100000 << 3 | 2) + b"\x01x"  # Flow.Summary = "x"
    aggregate = varint(21007 << 3 | 2) + b"\x02\x08\x03"  # Flow.aggregate{ingress_flow_count=3}
    lost = varint(3 << 3 | 2) + b"\x02\x10\x05"  # GetFlowsResponse.lost_events{num_events_lost=5}
    node = varint(1000 << 3 | 2) + b"\x01n"  # GetFlowsResponse.node_name = "n"
    flow = flow_pb2.Flow.FromString(summary + aggregate)
    assert flow.Summary == "x"
    assert flow.aggregate.ingress_flow_count == 3
    assert flow.SerializeToString(deterministic=True) == aggregate + summary
    resp = observer_pb2.GetFlowsResponse.FromString(lost + node)
    assert resp.WhichOneof("response_types") == "lost_events"
    assert resp.lost_events.num_events_lost == 5
    assert resp.node_name == "n"
