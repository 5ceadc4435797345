"""FlowFilter semantics through GetFlows over gRPC (a real server; see observer_harness.py).

Every FlowFilter field that a flow can carry has a case that matches and one that does not,
against the fixture flows plus one "rich" flow (services, workloads, node labels, FQDNs, SNAT,
encryption, trace ids): the result is given as flow names (``named_responses()``), so a
filter that matches too much or too little fails. Then the combination rules: OR within a
field, AND across the fields of one filter, OR across whitelist filters, NOR across
blacklist filters, whitelist minus blacklist. Lost events bypass filters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import pytest
from google.protobuf import json_format
from observer_harness import (
    RICH_TRACE_ID,
    RICH_UUID,
    ObserverClient,
    ObserverHarness,
    named_responses,
    response_time_ns,
    time_ns_of,
)

from observer.api.v1.flow import flow_pb2
from observer.api.v1.observer import observer_pb2

NAMED: Final = named_responses()
FLOW_NAMES: Final = frozenset(n for n, r in NAMED.items() if "flow" in r)
NAME_BY_TIME: Final = {response_time_ns(r): n for n, r in NAMED.items()}
FIXTURE_FLOWS: Final = FLOW_NAMES - {"rich"}
SYN_UUID: Final = NAMED["syn"]["flow"]["uuid"]


def _all_but(*names: str) -> frozenset[str]:
    return FLOW_NAMES - set(names)


# (id, FlowFilter JSON, expected flow names)
FIELD_CASES: Final[list[tuple[str, dict[str, Any], frozenset[str]]]] = [
    ("uuid", {"uuid": [SYN_UUID]}, frozenset({"syn"})),
    ("uuid-rich", {"uuid": [RICH_UUID]}, frozenset({"rich"})),
    ("uuid-none", {"uuid": ["11111111-2222-4333-8444-555555555555"]}, frozenset()),
    ("source_ip", {"source_ip": ["10.213.0.5"]}, frozenset({"syn", "icmp4", "drop"})),
    (
        "source_ip-cidr",
        {"source_ip": ["10.213.0.0/24"]},
        frozenset({"syn", "synack", "icmp4", "drop", "policy", "http", "dns"}),
    ),
    ("source_ip-cidr6", {"source_ip": ["fd00:10:213::/64"]}, frozenset({"udp6", "icmp6"})),
    ("source_ip-none", {"source_ip": ["10.99.0.0/16", "10.213.0.55"]}, frozenset()),
    ("destination_ip", {"destination_ip": ["192.0.2.10"]}, frozenset({"icmp4"})),
    ("destination_ip-cidr", {"destination_ip": ["10.214.0.0/16"]}, frozenset({"rich"})),
    ("destination_ip-none", {"destination_ip": ["198.51.100.1"]}, frozenset()),
    ("source_ip_xlated", {"source_ip_xlated": ["192.0.2.77"]}, frozenset({"rich"})),
    ("source_ip_xlated-cidr", {"source_ip_xlated": ["192.0.2.0/24"]}, frozenset({"rich"})),
    ("source_ip_xlated-none", {"source_ip_xlated": ["192.0.2.78"]}, frozenset()),
    ("source_pod", {"source_pod": ["default/xwing"]}, frozenset({"syn", "udp6", "icmp4", "drop"})),
    (
        "source_pod-default-ns",
        {"source_pod": ["xwing"]},
        frozenset({"syn", "udp6", "icmp4", "drop"}),
    ),
    ("source_pod-any-ns", {"source_pod": ["/echo-"]}, frozenset({"rich"})),
    ("source_pod-namespace", {"source_pod": ["hoth/"]}, frozenset({"rich"})),
    ("source_pod-none", {"source_pod": ["default/x-wing", "kube-system/"]}, frozenset()),
    ("destination_pod", {"destination_pod": ["kube-system/"]}, frozenset({"dns"})),
    (
        "destination_pod-prefix",
        {"destination_pod": ["default/death"]},
        frozenset({"syn", "udp6", "drop", "policy", "http"}),
    ),
    ("destination_pod-none", {"destination_pod": ["default/tie"]}, frozenset()),
    ("source_fqdn", {"source_fqdn": ["*.hoth.example.com"]}, frozenset({"rich"})),
    ("source_fqdn-none", {"source_fqdn": ["*.cilium.io"]}, frozenset()),
    ("destination_fqdn", {"destination_fqdn": ["*.svc.cluster.local"]}, frozenset({"dns"})),
    (
        "destination_fqdn-exact",
        {"destination_fqdn": ["ECHO.hoth.example.com."]},
        frozenset({"rich"}),
    ),
    ("destination_fqdn-none", {"destination_fqdn": ["kube-dns.*.example.com"]}, frozenset()),
    ("source_label", {"source_label": ["k8s:class=xwing"]}, frozenset({"syn", "udp6", "drop"})),
    (
        "source_label-any-source",
        {"source_label": ["org=alliance"]},
        frozenset({"syn", "udp6", "icmp4", "drop"}),
    ),
    (
        "source_label-set-and-absent",
        {"source_label": ["org in (alliance, empire), !class"]},
        frozenset({"icmp4", "icmp6", "http", "dns"}),
    ),
    ("source_label-none", {"source_label": ["org=rebels"]}, frozenset()),
    (
        "destination_label",
        {"destination_label": ["org=empire"]},
        frozenset({"syn", "udp6", "drop", "policy", "http"}),
    ),
    ("destination_label-reserved", {"destination_label": ["reserved:world"]}, frozenset({"icmp4"})),
    (
        "destination_label-none",
        {"destination_label": ["k8s:org=empire,k8s:class=xwing"]},
        frozenset(),
    ),
    ("source_service", {"source_service": ["hoth/echo-client"]}, frozenset({"rich"})),
    ("source_service-none", {"source_service": ["hoth/echo-server"]}, frozenset()),
    ("destination_service", {"destination_service": ["/echo"]}, frozenset({"rich"})),
    ("destination_service-none", {"destination_service": ["default/echo"]}, frozenset()),
    ("source_workload-kind", {"source_workload": [{"kind": "Deployment"}]}, frozenset({"rich"})),
    ("source_workload-name", {"source_workload": [{"name": "echo-client"}]}, frozenset({"rich"})),
    (
        "source_workload-none",
        {"source_workload": [{"name": "echo-client", "kind": "StatefulSet"}]},
        frozenset(),
    ),
    (
        "destination_workload",
        {"destination_workload": [{"name": "echo-server", "kind": "StatefulSet"}]},
        frozenset({"rich"}),
    ),
    ("destination_workload-none", {"destination_workload": [{"kind": "DaemonSet"}]}, frozenset()),
    ("source_cluster_name", {"source_cluster_name": ["default"]}, frozenset({"syn", "synack"})),
    ("source_cluster_name-other", {"source_cluster_name": ["cluster-b"]}, frozenset({"rich"})),
    ("source_cluster_name-none", {"source_cluster_name": ["cluster-c"]}, frozenset()),
    (
        "destination_cluster_name",
        {"destination_cluster_name": ["default"]},
        frozenset({"syn", "synack"}),
    ),
    ("destination_cluster_name-no-glob", {"destination_cluster_name": ["cluster-*"]}, frozenset()),
    (
        "traffic_direction-ingress",
        {"traffic_direction": ["INGRESS"]},
        frozenset({"synack", "udp6", "drop", "policy", "http"}),
    ),
    (
        "traffic_direction-egress",
        {"traffic_direction": ["EGRESS"]},
        frozenset({"syn", "icmp4", "icmp6", "dns", "rich"}),
    ),
    ("traffic_direction-none", {"traffic_direction": ["TRAFFIC_DIRECTION_UNKNOWN"]}, frozenset()),
    ("verdict", {"verdict": ["DROPPED"]}, frozenset({"drop"})),
    ("verdict-forwarded", {"verdict": ["FORWARDED"]}, _all_but("drop")),
    ("verdict-none", {"verdict": ["AUDIT", "ERROR"]}, frozenset()),
    ("drop_reason_desc", {"drop_reason_desc": ["POLICY_DENIED"]}, frozenset({"drop"})),
    ("drop_reason_desc-none", {"drop_reason_desc": ["CT_MAP_INSERTION_FAILED"]}, frozenset()),
    ("interface-name", {"interface": [{"name": "lxc1a2b3c4d"}]}, frozenset({"syn"})),
    ("interface-index", {"interface": [{"index": 40}]}, frozenset({"synack"})),
    ("interface-none", {"interface": [{"index": 41, "name": "lxc9f8e7d6c"}]}, frozenset()),
    ("event_type-l7", {"event_type": [{"type": 129}]}, frozenset({"http", "dns"})),
    (
        "event_type-trace",
        {"event_type": [{"type": 4}]},
        frozenset({"syn", "synack", "udp6", "icmp4", "icmp6", "rich"}),
    ),
    (
        "event_type-subtype",
        {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 5}]},
        frozenset({"syn", "synack", "icmp4"}),
    ),
    (
        "event_type-subtype-zero",
        {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 0}]},
        frozenset({"udp6", "icmp6"}),
    ),
    ("event_type-drop", {"event_type": [{"type": 1}]}, frozenset({"drop"})),
    (
        "event_type-none",
        {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 9}]},
        frozenset(),
    ),
    ("http_status_code", {"http_status_code": ["200"]}, frozenset({"http"})),
    ("http_status_code-prefix", {"http_status_code": ["2+"]}, frozenset({"http"})),
    ("http_status_code-none", {"http_status_code": ["404", "5+"]}, frozenset()),
    ("protocol-tcp", {"protocol": ["tcp"]}, frozenset({"syn", "synack", "drop", "policy", "http"})),
    ("protocol-udp", {"protocol": ["UDP"]}, frozenset({"udp6", "dns"})),
    ("protocol-icmp", {"protocol": ["icmp"]}, frozenset({"icmp4", "icmp6"})),
    ("protocol-icmpv6", {"protocol": ["icmpv6"]}, frozenset({"icmp6"})),
    ("protocol-sctp", {"protocol": ["sctp"]}, frozenset({"rich"})),
    ("protocol-dns", {"protocol": ["dns"]}, frozenset({"dns"})),
    ("protocol-http", {"protocol": ["http"]}, frozenset({"http"})),
    ("protocol-none", {"protocol": ["kafka", "vrrp", "igmp"]}, frozenset()),
    ("source_port", {"source_port": ["80"]}, frozenset({"synack"})),
    ("source_port-sctp", {"source_port": ["3868"]}, frozenset({"rich"})),
    ("source_port-none", {"source_port": ["8080"]}, frozenset()),
    (
        "destination_port",
        {"destination_port": ["80"]},
        frozenset({"syn", "drop", "policy", "http"}),
    ),
    ("destination_port-53", {"destination_port": ["53"]}, frozenset({"udp6", "dns"})),
    ("destination_port-none", {"destination_port": ["443"]}, frozenset()),
    ("reply-true", {"reply": [True]}, frozenset({"synack", "icmp6", "http"})),
    (
        "reply-false-includes-drops",
        {"reply": [False]},
        frozenset({"syn", "udp6", "icmp4", "drop", "policy", "dns", "rich"}),
    ),
    ("reply-none", {"uuid": [SYN_UUID], "reply": [True]}, frozenset()),
    ("dns_query", {"dns_query": ["deathstar"]}, frozenset({"dns"})),
    ("dns_query-anchored", {"dns_query": ["^deathstar\\.default\\."]}, frozenset({"dns"})),
    ("dns_query-none", {"dns_query": ["^empire"]}, frozenset()),
    ("source_identity", {"source_identity": [12345]}, frozenset({"syn", "udp6", "icmp4", "drop"})),
    ("source_identity-none", {"source_identity": [1]}, frozenset()),
    ("destination_identity", {"destination_identity": [2]}, frozenset({"icmp4"})),
    ("destination_identity-or", {"destination_identity": [999, 7002]}, frozenset({"dns", "rich"})),
    ("destination_identity-none", {"destination_identity": [3]}, frozenset()),
    ("http_method", {"http_method": ["post"]}, frozenset({"http"})),
    ("http_method-none", {"http_method": ["GET"]}, frozenset()),
    ("http_path", {"http_path": ["^/v1/request-"]}, frozenset({"http"})),
    ("http_path-none", {"http_path": ["^/v2/"]}, frozenset()),
    ("http_url", {"http_url": ["deathstar\\.default\\.svc"]}, frozenset({"http"})),
    ("http_url-none", {"http_url": ["^https://"]}, frozenset()),
    (
        "http_header",
        {"http_header": [{"key": "User-Agent", "value": "curl/7.88.1"}]},
        frozenset({"http"}),
    ),
    ("http_header-none", {"http_header": [{"key": "User-Agent", "value": "wget"}]}, frozenset()),
    (
        "tcp_flags-syn",
        {"tcp_flags": [{"SYN": True}]},
        frozenset({"syn", "synack", "drop", "policy"}),
    ),
    ("tcp_flags-subset", {"tcp_flags": [{"SYN": True, "ACK": True}]}, frozenset({"synack"})),
    ("tcp_flags-none", {"tcp_flags": [{"FIN": True}, {"RST": True}]}, frozenset()),
    ("node_name", {"node_name": ["default/node-a"]}, FIXTURE_FLOWS),
    ("node_name-cluster", {"node_name": ["cluster-b/"]}, frozenset({"rich"})),
    ("node_name-wildcard", {"node_name": ["*/node-b"]}, frozenset({"rich"})),
    ("node_name-none", {"node_name": ["default/node-z"]}, frozenset()),
    ("node_labels", {"node_labels": ["topology.kubernetes.io/zone=hoth-1"]}, frozenset({"rich"})),
    ("node_labels-none", {"node_labels": ["topology.kubernetes.io/zone=endor"]}, frozenset()),
    ("ip_version-v6", {"ip_version": ["IPv6"]}, frozenset({"udp6", "icmp6"})),
    ("ip_version-v4", {"ip_version": ["IPv4"]}, _all_but("udp6", "icmp6")),
    ("ip_version-none", {"ip_version": ["IP_NOT_USED"]}, frozenset()),
    ("trace_id", {"trace_id": [RICH_TRACE_ID]}, frozenset({"rich"})),
    ("trace_id-none", {"trace_id": ["deadbeef"]}, frozenset()),
    ("ip_trace_id", {"ip_trace_id": ["4242"]}, frozenset({"rich"})),
    ("ip_trace_id-none", {"ip_trace_id": [4243]}, frozenset()),
    ("encrypted-true", {"encrypted": [True]}, frozenset({"rich"})),
    ("encrypted-false", {"encrypted": [False]}, FIXTURE_FLOWS),
    ("encrypted-none", {"uuid": [SYN_UUID], "encrypted": [True]}, frozenset()),
]

# (id, whitelist, blacklist, expected flow names)
COMBINATION_CASES: Final[
    list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], frozenset[str]]]
] = [
    ("no-filters", [], [], FLOW_NAMES),
    ("empty-filter-matches-all", [{}], [], FLOW_NAMES),
    ("or-within-field", [{"source_port": ["80", "53000"]}], [], frozenset({"synack", "udp6"})),
    (
        "and-across-fields",
        [{"source_pod": ["default/xwing"], "protocol": ["tcp"]}],
        [],
        frozenset({"syn", "drop"}),
    ),
    (
        "whitelist-or",
        [{"verdict": ["DROPPED"]}, {"protocol": ["udp"]}],
        [],
        frozenset({"drop", "udp6", "dns"}),
    ),
    (
        "either-direction-pod",  # what `hubble observe --pod default/xwing` sends
        [{"source_pod": ["default/xwing"]}, {"destination_pod": ["default/xwing"]}],
        [],
        frozenset({"syn", "udp6", "icmp4", "drop", "synack", "icmp6"}),
    ),
    (
        "blacklist-nor",
        [],
        [{"source_pod": ["default/xwing"]}, {"protocol": ["icmp"]}],
        frozenset({"synack", "policy", "http", "dns", "rich"}),
    ),
    (
        "whitelist-minus-blacklist",
        [{"destination_pod": ["default/deathstar"]}],
        [{"verdict": ["DROPPED"]}, {"event_type": [{"type": 129}]}],
        frozenset({"syn", "udp6", "policy"}),
    ),
    ("blacklist-everything", [], [{}], frozenset()),
    (
        "blacklist-and-within-filter",
        [],
        [{"source_pod": ["default/xwing"], "verdict": ["DROPPED"]}],
        _all_but("drop"),
    ),
]


def _filters(dicts: Sequence[dict[str, Any]]) -> list[flow_pb2.FlowFilter]:
    return [json_format.ParseDict(d, flow_pb2.FlowFilter()) for d in dicts]


def _names(responses: Sequence[observer_pb2.GetFlowsResponse]) -> tuple[frozenset[str], int]:
    """(flow names, number of lost events) of a GetFlows result."""
    names: set[str] = set()
    lost = 0
    for resp in responses:
        kind = resp.WhichOneof("response_types")
        if kind == "lost_events":
            lost += 1
            continue
        assert kind == "flow", resp
        name = NAME_BY_TIME[time_ns_of(resp)]
        assert name not in names, f"flow {name} returned twice"
        names.add(name)
    return frozenset(names), lost


@pytest.fixture
def client(
    named_server: ObserverHarness, make_client: Callable[..., ObserverClient]
) -> ObserverClient:
    return make_client(named_server.unix_target)


@pytest.mark.parametrize(
    ("flow_filter", "expected"),
    [pytest.param(f, e, id=i) for i, f, e in FIELD_CASES],
)
def test_field_filter(
    client: ObserverClient, flow_filter: dict[str, Any], expected: frozenset[str]
) -> None:
    request = observer_pb2.GetFlowsRequest(number=0, whitelist=_filters([flow_filter]))
    names, lost = _names(client.get_flows(request))
    assert names == expected
    assert lost == 1, "the stored LostEvent must bypass filters"


@pytest.mark.parametrize(
    ("flow_filter", "expected"),
    [pytest.param(f, e, id=i) for i, f, e in FIELD_CASES if not i.endswith("-none")],
)
def test_field_filter_as_blacklist(
    client: ObserverClient, flow_filter: dict[str, Any], expected: frozenset[str]
) -> None:
    """The same filter in the blacklist keeps exactly the other flows."""
    request = observer_pb2.GetFlowsRequest(number=0, blacklist=_filters([flow_filter]))
    names, _ = _names(client.get_flows(request))
    assert names == FLOW_NAMES - expected


@pytest.mark.parametrize(
    ("whitelist", "blacklist", "expected"),
    [pytest.param(w, b, e, id=i) for i, w, b, e in COMBINATION_CASES],
)
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_combination(
    named_server: ObserverHarness,
    make_client: Callable[..., ObserverClient],
    stream: str,
    transport: str,
    whitelist: list[dict[str, Any]],
    blacklist: list[dict[str, Any]],
    expected: frozenset[str],
) -> None:
    target = named_server.unix_target if transport == "unix" else named_server.tcp_target
    client = make_client(target)
    request = observer_pb2.GetFlowsRequest(
        whitelist=_filters(whitelist), blacklist=_filters(blacklist)
    )
    names, lost = _names(client.get_flows(request, stream))
    assert names == expected
    assert lost == 1


def test_every_field_our_flows_carry_is_covered() -> None:
    """Each FlowFilter field (but CEL) has a matching and a non-matching case above."""
    fields = {f.name for f in flow_pb2.FlowFilter.DESCRIPTOR.fields} - {"experimental"}
    matching = {key for _, f, expected in FIELD_CASES if expected for key in f}
    non_matching = {key for _, f, expected in FIELD_CASES if not expected for key in f}
    assert fields - matching == set()
    assert fields - non_matching == set()
