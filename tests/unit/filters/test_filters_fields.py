"""Every FlowFilter field: a flow that matches and one that does not.

Flows are the fixture flows (tests/fixtures/flows.jsonl) plus small hand-made ones for what
the fixtures do not carry (services, workloads, names, node labels, SNAT, encryption, traces).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from observer.filters import FIELD_NAMES, compile_filters
from observer.filters.compiler import normalize_filter

_LINES = (
    (Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl").read_bytes().splitlines()
)
_FLOWS = [orjson.loads(line)["flow"] for line in _LINES if line and b'"flow"' in line[:8]]
SYN, SYNACK, UDP6, ICMP4_WORLD, ICMP6_REPLY, DROP, POLICY, HTTP, DNS = _FLOWS

EMPTY: dict[str, Any] = {}
RICH: dict[str, Any] = {
    "verdict": "FORWARDED",
    "IP": {
        "source": "10.0.0.1",
        "source_xlated": "192.0.2.1",
        "destination": "10.0.0.2",
        "ipVersion": "IPv4",
        "encrypted": True,
    },
    "l4": {"SCTP": {"source_port": 3868, "destination_port": 2905}},
    "source": {
        "identity": 100,
        "namespace": "prod",
        "pod_name": "web-1",
        "workloads": [{"name": "web", "kind": "Deployment"}],
        "cluster_name": "east",
    },
    "destination": {
        "identity": 200,
        "namespace": "prod",
        "pod_name": "db-0",
        "workloads": [{"name": "db", "kind": "StatefulSet"}],
        "cluster_name": "west",
    },
    "node_name": "k8s1",
    "node_labels": ["k8s:kubernetes.io/hostname=k8s1", "k8s:topology.kubernetes.io/zone=z1"],
    "source_names": ["api.example.com"],
    "destination_names": ["db.internal.example.com", "db-alias.example.org"],
    "source_service": {"name": "web-svc", "namespace": "prod"},
    "destination_service": {"name": "db-svc", "namespace": "prod"},
    "trace_context": {"parent": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}},
    "ip_trace_id": {"trace_id": "12345", "ip_option_type": 136},
}
KAFKA = {"l7": {"type": "REQUEST", "kafka": {"topic": "orders"}}, "event_type": {"type": 129}}
VRRP = {"l4": {"VRRP": {"type": 1, "vrid": 5}}}
IGMP = {"l4": {"IGMP": {"type": 22, "group_address": "239.1.1.1"}}}
HTTP_QUERY = {
    "l7": {"http": {"code": 404, "method": "GET", "url": "/api/v1/items?id=3&x=%2F"}},
}
HTTP_BAD_URL = {"l7": {"http": {"code": 500, "method": "GET", "url": "not a url"}}}
FORWARDED_WITH_REASON = {"verdict": "FORWARDED", "drop_reason_desc": "POLICY_DENIED"}
FORWARDED_UNKNOWN_REPLY = {"verdict": "FORWARDED"}
DROP_NUMERIC = {"verdict": 2, "drop_reason_desc": 133}


def case(id_: str, flow_filter: dict[str, Any], flow: dict[str, Any], expected: bool) -> Any:
    return pytest.param(flow_filter, flow, expected, id=id_)


CASES = [
    # uuid
    case("uuid-match", {"uuid": ["8c3e9a52-1c1f-4d0a-9a37-0c6f7a1b2c01"]}, SYN, True),
    case("uuid-other", {"uuid": ["8c3e9a52-1c1f-4d0a-9a37-0c6f7a1b2c01"]}, SYNACK, False),
    case("uuid-absent", {"uuid": ["8c3e9a52-1c1f-4d0a-9a37-0c6f7a1b2c01"]}, ICMP4_WORLD, False),
    # event_type
    case("event-type", {"event_type": [{"type": 4}]}, SYN, True),
    case("event-type-other", {"event_type": [{"type": 4}]}, DROP, False),
    case(
        "event-subtype",
        {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 5}]},
        SYN,
        True,
    ),
    case(
        "event-subtype-other",
        {"event_type": [{"type": 4, "matchSubType": True, "subType": 5}]},
        ICMP6_REPLY,
        False,
    ),
    case(
        "event-subtype-zero-unset",
        {"event_type": [{"type": 4, "match_sub_type": True}]},
        UDP6,
        True,
    ),
    case("event-subtype-ignored", {"event_type": [{"type": 4, "sub_type": 99}]}, UDP6, True),
    case(
        "event-any-type-subtype",
        {"event_type": [{"match_sub_type": True, "sub_type": 133}]},
        DROP,
        True,
    ),
    case("event-any-type", {"event_type": [{}]}, HTTP, True),
    case("event-no-event-type", {"event_type": [{}]}, EMPTY, False),
    case("event-type-or", {"event_type": [{"type": 1}, {"type": 129}]}, HTTP, True),
    # verdict
    case("verdict", {"verdict": ["DROPPED"]}, DROP, True),
    case("verdict-other", {"verdict": ["DROPPED"]}, SYN, False),
    case("verdict-number", {"verdict": [2]}, DROP, True),
    case("verdict-flow-number", {"verdict": ["DROPPED"]}, DROP_NUMERIC, True),
    case("verdict-unknown-unset", {"verdict": ["VERDICT_UNKNOWN"]}, EMPTY, True),
    case("verdict-unknown-set", {"verdict": ["VERDICT_UNKNOWN"]}, SYN, False),
    # drop_reason_desc
    case("drop-reason", {"drop_reason_desc": ["POLICY_DENIED"]}, DROP, True),
    case("drop-reason-number", {"drop_reason_desc": [133]}, DROP_NUMERIC, True),
    case("drop-reason-other", {"drop_reason_desc": ["CT_MAP_INSERTION_FAILED"]}, DROP, False),
    case(
        "drop-reason-not-dropped",
        {"drop_reason_desc": ["POLICY_DENIED"]},
        FORWARDED_WITH_REASON,
        False,
    ),
    # reply
    case("reply-true", {"reply": [True]}, SYNACK, True),
    case("reply-true-not", {"reply": [True]}, SYN, False),
    case("reply-false", {"reply": [False]}, SYN, True),
    case("reply-dropped-unknown-is-false", {"reply": [False]}, DROP, True),
    case("reply-dropped-unknown-not-true", {"reply": [True]}, DROP, False),
    case("reply-forwarded-unknown", {"reply": [False]}, FORWARDED_UNKNOWN_REPLY, False),
    case("reply-either", {"reply": [True, False]}, SYNACK, True),
    # encrypted
    case("encrypted-true", {"encrypted": [True]}, RICH, True),
    case("encrypted-true-not", {"encrypted": [True]}, SYN, False),
    case("encrypted-false", {"encrypted": [False]}, SYN, True),
    case("encrypted-false-not", {"encrypted": [False]}, RICH, False),
    # identities
    case("src-identity", {"source_identity": [12345]}, SYN, True),
    case("src-identity-other", {"source_identity": [12345]}, SYNACK, False),
    case("src-identity-string", {"sourceIdentity": ["12345"]}, SYN, True),
    case("dst-identity", {"destination_identity": [2]}, ICMP4_WORLD, True),
    case("dst-identity-other", {"destination_identity": [2]}, SYN, False),
    case("identity-no-endpoint", {"source_identity": [0]}, EMPTY, False),
    case(
        "identity-endpoint-without-identity", {"source_identity": [0]}, {"source": {"ID": 1}}, True
    ),
    # protocol
    case("proto-tcp", {"protocol": ["tcp"]}, SYN, True),
    case("proto-tcp-udp-flow", {"protocol": ["tcp"]}, UDP6, False),
    case("proto-upper", {"protocol": ["UDP"]}, UDP6, True),
    case("proto-icmp-v4", {"protocol": ["icmp"]}, ICMP4_WORLD, True),
    case("proto-icmp-v6", {"protocol": ["icmp"]}, ICMP6_REPLY, True),
    case("proto-icmpv4", {"protocol": ["icmpv4"]}, ICMP4_WORLD, True),
    case("proto-icmpv4-v6", {"protocol": ["icmpv4"]}, ICMP6_REPLY, False),
    case("proto-icmpv6", {"protocol": ["icmpv6"]}, ICMP6_REPLY, True),
    case("proto-sctp", {"protocol": ["sctp"]}, RICH, True),
    case("proto-sctp-not", {"protocol": ["sctp"]}, SYN, False),
    case("proto-vrrp", {"protocol": ["vrrp"]}, VRRP, True),
    case("proto-igmp", {"protocol": ["igmp"]}, IGMP, True),
    case("proto-igmp-not", {"protocol": ["igmp"]}, VRRP, False),
    case("proto-http", {"protocol": ["http"]}, HTTP, True),
    case("proto-http-dns-flow", {"protocol": ["http"]}, DNS, False),
    case("proto-dns", {"protocol": ["dns"]}, DNS, True),
    case("proto-kafka", {"protocol": ["kafka"]}, KAFKA, True),
    case("proto-kafka-not", {"protocol": ["kafka"]}, HTTP, False),
    case("proto-or", {"protocol": ["icmp", "dns"]}, DNS, True),
    # IPs
    case("src-ip", {"source_ip": ["10.213.0.5"]}, SYN, True),
    case("src-ip-other", {"source_ip": ["10.213.0.5"]}, SYNACK, False),
    case("src-ip-cidr", {"source_ip": ["10.213.0.0/24"]}, SYNACK, True),
    case("src-ip-cidr-host-bits", {"source_ip": ["10.213.0.77/16"]}, SYNACK, True),
    case("src-ip-cidr-other", {"source_ip": ["10.214.0.0/16"]}, SYNACK, False),
    case("src-ip-v6-noncanonical", {"source_ip": ["fd00:10:213:0:0::5"]}, UDP6, True),
    case("src-ip-v6-cidr", {"source_ip": ["fd00:10:213::/48"]}, UDP6, True),
    case("src-ip-v4-cidr-v6-flow", {"source_ip": ["0.0.0.0/0"]}, UDP6, False),
    case("src-ip-v6-cidr-v4-flow", {"source_ip": ["::/0"]}, SYN, False),
    case("src-ip-no-ip", {"source_ip": ["0.0.0.0/0"]}, EMPTY, False),
    case("dst-ip", {"destination_ip": ["192.0.2.10"]}, ICMP4_WORLD, True),
    case("dst-ip-other", {"destinationIp": ["192.0.2.0/25", "10.0.0.0/8"]}, ICMP4_WORLD, True),
    case("dst-ip-miss", {"destination_ip": ["192.0.2.11"]}, ICMP4_WORLD, False),
    case("snat-ip", {"source_ip_xlated": ["192.0.2.1"]}, RICH, True),
    case("snat-ip-cidr", {"sourceIpXlated": ["192.0.2.0/24"]}, RICH, True),
    case("snat-ip-unset", {"source_ip_xlated": ["0.0.0.0/0"]}, SYN, False),
    # pods
    case("src-pod-ns", {"source_pod": ["default/"]}, SYN, True),
    case("src-pod-ns-other", {"source_pod": ["kube-system/"]}, SYN, False),
    case("src-pod-default-ns-prefix", {"source_pod": ["xw"]}, SYN, True),
    case("src-pod-prefix-other", {"source_pod": ["death"]}, SYN, False),
    case("src-pod-any-ns", {"source_pod": ["/death"]}, SYNACK, True),
    case("dst-pod", {"destination_pod": ["kube-system/core"]}, DNS, True),
    case("dst-pod-default-ns-miss", {"destination_pod": ["coredns"]}, DNS, False),
    case("dst-pod-world", {"destination_pod": ["default/"]}, ICMP4_WORLD, False),
    case("pod-extra-slash-ignored", {"source_pod": ["default/xwing/whatever"]}, SYN, True),
    # workloads
    case("src-workload-kind", {"source_workload": [{"kind": "Deployment"}]}, RICH, True),
    case(
        "src-workload-name", {"sourceWorkload": [{"name": "web", "kind": "Deployment"}]}, RICH, True
    ),
    case("src-workload-other", {"source_workload": [{"name": "db"}]}, RICH, False),
    case("dst-workload", {"destination_workload": [{"name": "db"}]}, RICH, True),
    case("dst-workload-none", {"destination_workload": [{"name": "db"}]}, SYN, False),
    # services
    case("src-service", {"source_service": ["prod/web"]}, RICH, True),
    case("src-service-default-ns", {"source_service": ["web"]}, RICH, False),
    case("dst-service", {"destination_service": ["/db-"]}, RICH, True),
    case("dst-service-none", {"destination_service": ["prod/"]}, SYN, False),
    # FQDN
    case("dst-fqdn-wildcard", {"destination_fqdn": ["*.kube-system.svc.cluster.local"]}, DNS, True),
    case("dst-fqdn-other", {"destination_fqdn": ["*.default.svc.cluster.local"]}, DNS, False),
    case(
        "dst-fqdn-canonical",
        {"destination_fqdn": [" KUBE-DNS.kube-system.svc.cluster.local. "]},
        DNS,
        True,
    ),
    case("dst-fqdn-star-spans-dots", {"destination_fqdn": ["db*.example.com"]}, RICH, True),
    case("dst-fqdn-anchored", {"destination_fqdn": ["example.com"]}, RICH, False),
    case("dst-fqdn-any-name", {"destination_fqdn": ["*.example.org"]}, RICH, True),
    case("src-fqdn", {"source_fqdn": ["api.example.com"]}, RICH, True),
    case("src-fqdn-no-names", {"source_fqdn": ["*"]}, SYN, False),
    # dns_query
    case("dns-query", {"dns_query": [r"^deathstar\."]}, DNS, True),
    case("dns-query-other", {"dns_query": ["^tie"]}, DNS, False),
    case("dns-query-not-dns", {"dns_query": [""]}, HTTP, False),
    case("dns-query-empty-regex", {"dnsQuery": [""]}, DNS, True),
    # labels
    case("src-label-prefixed", {"source_label": ["k8s:class=xwing"]}, SYN, True),
    case("src-label-any-source", {"source_label": ["class=xwing"]}, SYN, True),
    case("src-label-other-value", {"source_label": ["class=deathstar"]}, SYN, False),
    case("src-label-wrong-source", {"source_label": ["container:class=xwing"]}, SYN, False),
    case("src-label-in", {"source_label": ["org in (alliance, rebels)"]}, SYN, True),
    case("src-label-notin", {"source_label": ["org notin (empire)"]}, SYN, True),
    case("src-label-notin-miss", {"source_label": ["org notin (alliance)"]}, SYN, False),
    case("src-label-not-exists", {"source_label": ["!class"]}, ICMP4_WORLD, True),
    case("src-label-not-exists-miss", {"source_label": ["!class"]}, SYN, False),
    case("src-label-and", {"source_label": ["class=xwing,org=empire"]}, SYN, False),
    case("src-label-or", {"source_label": ["class=tiefighter", "org==alliance"]}, SYN, True),
    case(
        "src-label-dotted-key",
        {"source_label": ["k8s:io.kubernetes.pod.namespace=default"]},
        SYN,
        True,
    ),
    case("dst-label-reserved", {"destination_label": ["reserved:world"]}, ICMP4_WORLD, True),
    case("dst-label-reserved-miss", {"destination_label": ["reserved:world"]}, SYN, False),
    case("dst-label-not-equal-absent", {"destination_label": ["class!=xwing"]}, ICMP4_WORLD, True),
    case("dst-label-empty-selector", {"destination_label": [""]}, EMPTY, True),
    case("node-labels", {"node_labels": ["kubernetes.io/hostname=k8s1"]}, RICH, True),
    case(
        "node-labels-prefixed",
        {"nodeLabels": ["k8s:topology.kubernetes.io/zone in (z1,z2)"]},
        RICH,
        True,
    ),
    case("node-labels-other", {"node_labels": ["kubernetes.io/hostname=k8s2"]}, RICH, False),
    case("node-labels-none", {"node_labels": ["kubernetes.io/hostname"]}, SYN, False),
    # ports
    case("dst-port", {"destination_port": ["80"]}, SYN, True),
    case("dst-port-other", {"destination_port": ["443"]}, SYN, False),
    case("dst-port-udp", {"destinationPort": ["53"]}, UDP6, True),
    case("dst-port-sctp", {"destination_port": ["2905"]}, RICH, True),
    case("dst-port-icmp", {"destination_port": ["0"]}, ICMP4_WORLD, False),
    case("src-port", {"source_port": ["41391"]}, SYN, True),
    case("src-port-leading-zero", {"source_port": ["080"]}, SYNACK, True),
    case("src-port-other", {"source_port": ["41391"]}, SYNACK, False),
    # HTTP
    case("http-code", {"http_status_code": ["200"]}, HTTP, True),
    case("http-code-other", {"http_status_code": ["404"]}, HTTP, False),
    case("http-code-prefix", {"http_status_code": ["2+"]}, HTTP, True),
    case("http-code-prefix2", {"httpStatusCode": ["20+"]}, HTTP, True),
    case("http-code-prefix-other", {"http_status_code": ["5+"]}, HTTP, False),
    case("http-code-not-http", {"http_status_code": ["2+"]}, DNS, False),
    case(
        "http-code-zero",
        {"http_status_code": ["1+", "2+", "3+", "4+", "5+"]},
        {"l7": {"http": {"method": "GET"}}},
        False,
    ),
    case("http-method", {"http_method": ["post"]}, HTTP, True),
    case("http-method-other", {"http_method": ["GET"]}, HTTP, False),
    case("http-path", {"http_path": ["^/v1/request"]}, HTTP, True),
    case("http-path-other", {"http_path": ["^/v2"]}, HTTP, False),
    case("http-path-no-query", {"http_path": [r"items$"]}, HTTP_QUERY, True),
    case("http-path-bad-url", {"http_path": [""]}, HTTP_BAD_URL, False),
    case("http-url", {"http_url": [r"deathstar\.default"]}, HTTP, True),
    case("http-url-other", {"http_url": ["^https:"]}, HTTP, False),
    case("http-url-with-query", {"httpUrl": [r"\?id=3"]}, HTTP_QUERY, True),
    case(
        "http-header", {"http_header": [{"key": "User-Agent", "value": "curl/7.88.1"}]}, HTTP, True
    ),
    case(
        "http-header-value", {"http_header": [{"key": "User-Agent", "value": "curl"}]}, HTTP, False
    ),
    case(
        "http-header-case",
        {"http_header": [{"key": "user-agent", "value": "curl/7.88.1"}]},
        HTTP,
        False,
    ),
    case(
        "http-with-l7-event-type",
        {"http_method": ["POST"], "event_type": [{"type": 129}]},
        HTTP,
        True,
    ),
    # TCP flags
    case("tcp-syn", {"tcp_flags": [{"SYN": True}]}, SYN, True),
    case("tcp-syn-subset", {"tcp_flags": [{"SYN": True}]}, SYNACK, True),
    case("tcp-synack-on-syn", {"tcp_flags": [{"SYN": True, "ACK": True}]}, SYN, False),
    case("tcp-or", {"tcpFlags": [{"FIN": True}, {"ACK": True}]}, SYNACK, True),
    case("tcp-false-flag-ignored", {"tcp_flags": [{"SYN": True, "ACK": False}]}, SYN, True),
    case("tcp-empty-entry", {"tcp_flags": [{}]}, SYN, True),
    case("tcp-no-flags", {"tcp_flags": [{}]}, HTTP, False),
    case("tcp-udp", {"tcp_flags": [{"SYN": True}]}, UDP6, False),
    # node name
    case("node-name", {"node_name": ["node-a"]}, SYN, True),
    case("node-name-cluster", {"node_name": ["default/node-a"]}, SYN, True),
    case("node-name-cluster-only", {"node_name": ["default/"]}, SYN, True),
    case("node-name-other-cluster", {"node_name": ["other/"]}, SYN, False),
    case("node-name-wildcard", {"nodeName": ["node-*"]}, SYN, True),
    case("node-name-wildcard-miss", {"node_name": ["k8s*"]}, SYN, False),
    case("node-name-bare-flow-name", {"node_name": ["default/k8s1"]}, RICH, True),
    case("node-name-unset", {"node_name": ["*"]}, EMPTY, False),
    # cluster names
    case("src-cluster", {"source_cluster_name": ["default"]}, SYN, True),
    case("src-cluster-unset", {"source_cluster_name": ["default"]}, UDP6, False),
    case("dst-cluster", {"destinationClusterName": ["west", "north"]}, RICH, True),
    case("dst-cluster-other", {"destination_cluster_name": ["east"]}, RICH, False),
    # ip version
    case("ipv4", {"ip_version": ["IPv4"]}, SYN, True),
    case("ipv6-on-v4", {"ip_version": ["IPv6"]}, SYN, False),
    case("ipv6-number", {"ipVersion": [2]}, UDP6, True),
    case("ip-not-used", {"ip_version": ["IP_NOT_USED"]}, KAFKA, True),
    # trace ids
    case("trace-id", {"trace_id": ["4bf92f3577b34da6a3ce929d0e0e4736"]}, RICH, True),
    case("trace-id-other", {"traceId": ["00"]}, RICH, False),
    case("ip-trace-id", {"ip_trace_id": ["12345"]}, RICH, True),
    case("ip-trace-id-number", {"ipTraceId": [12345]}, RICH, True),
    case("ip-trace-id-other", {"ip_trace_id": [1]}, RICH, False),
    case("ip-trace-id-unset", {"ip_trace_id": [0]}, SYN, False),
    # traffic direction
    case("direction", {"traffic_direction": ["EGRESS"]}, SYN, True),
    case("direction-other", {"trafficDirection": ["INGRESS"]}, SYN, False),
    case("direction-number", {"traffic_direction": [1]}, SYNACK, True),
    # interface
    case("iface-index", {"interface": [{"index": 41}]}, SYN, True),
    case(
        "iface-index-name-mismatch",
        {"interface": [{"index": 41, "name": "lxc9f8e7d6c"}]},
        SYN,
        False,
    ),
    case("iface-name", {"interface": [{"name": "lxc9f8e7d6c"}]}, SYNACK, True),
    case("iface-unset", {"interface": [{}]}, UDP6, False),
    # experimental: an empty CEL list is an unset field
    case("cel-empty", {"experimental": {"cel_expression": []}}, SYN, True),
]


@pytest.mark.parametrize(("flow_filter", "flow", "expected"), CASES)
def test_field_matches(flow_filter: dict[str, Any], flow: dict[str, Any], expected: bool) -> None:
    assert compile_filters([flow_filter], [])(flow) is expected
    # the same filter as a blacklist entry keeps exactly the flows it does not match
    assert compile_filters([], [flow_filter])(flow) is (not expected)


def test_every_field_has_a_matching_and_a_missing_case() -> None:
    """Each FlowFilter field appears in a case that matches and in one that does not."""
    seen: dict[str, set[bool]] = {}
    for param in CASES:
        flow_filter, _flow, expected = param.values
        for name in normalize_filter(flow_filter).fields:
            seen.setdefault(name, set()).add(expected)
    missing = {name for name in FIELD_NAMES if seen.get(name) != {True, False}}
    assert missing == {"experimental"}, missing
