"""Combination rules, protojson input forms and invalid filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from observer.errors import FilterError
from observer.filters import compile_filter, compile_filters

_LINES = (
    (Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl").read_bytes().splitlines()
)
FLOWS = [orjson.loads(line)["flow"] for line in _LINES if line and b'"flow"' in line[:8]]
# 0 syn xwing->deathstar, 1 syn-ack deathstar->xwing, 2 udp6, 3 icmp4 xwing->world,
# 4 icmp6 reply, 5 drop, 6 policy-verdict tiefighter, 7 http, 8 dns tiefighter->kube-dns
ALL = set(range(len(FLOWS)))


def kept(whitelist: list[Any], blacklist: list[Any]) -> set[int]:
    pred = compile_filters(whitelist, blacklist)
    return {i for i, flow in enumerate(FLOWS) if pred(flow)}


@pytest.mark.parametrize(
    ("whitelist", "blacklist", "expected"),
    [
        pytest.param([], [], ALL, id="no-filters-keep-all"),
        pytest.param([{}], [], ALL, id="empty-filter-matches-all"),
        pytest.param([], [{}], set(), id="empty-blacklist-filter-drops-all"),
        pytest.param([{"source_pod": []}], [], ALL, id="empty-list-is-unset"),
        pytest.param([{"source_pod": None, "verdict": None}], [], ALL, id="null-is-unset"),
        pytest.param(
            [{"source_pod": ["kube-system/", "default/tie"]}], [], {6, 7, 8}, id="or-within-field"
        ),
        pytest.param(
            [{"source_pod": ["default/xwing"], "verdict": ["DROPPED"]}],
            [],
            {5},
            id="and-across-fields",
        ),
        pytest.param(
            [{"source_pod": ["default/xwing"], "protocol": ["udp"], "ip_version": ["IPv4"]}],
            [],
            set(),
            id="and-needs-every-field",
        ),
        pytest.param(
            [{"verdict": ["DROPPED"]}, {"protocol": ["udp"]}],
            [],
            {2, 5, 8},
            id="or-across-whitelist",
        ),
        pytest.param(
            [{"source_pod": ["kube-system/"]}, {"destination_pod": ["kube-system/"]}],
            [],
            {8},
            id="either-direction-pair",
        ),
        pytest.param([], [{"verdict": ["DROPPED"]}], ALL - {5}, id="not-verdict"),
        pytest.param(
            [],
            [{"protocol": ["icmp"]}, {"verdict": ["DROPPED"]}],
            ALL - {3, 4, 5},
            id="nor-across-blacklist",
        ),
        pytest.param(
            [{"source_pod": ["default/xwing"]}],
            [{"protocol": ["icmp"]}],
            {0, 2, 5},
            id="whitelist-minus-blacklist",
        ),
        pytest.param(
            [{"source_pod": ["default/xwing"]}],
            [{"protocol": ["icmp"], "traffic_direction": ["INGRESS"]}],
            {0, 2, 3, 5},
            id="blacklist-filter-needs-all-fields",
        ),
        pytest.param(
            [{"sourcePod": ["default/xwing"], "trafficDirection": [2]}],
            [],
            {0, 3},
            id="camel-and-numbers",
        ),
    ],
)
def test_combination_rules(whitelist: list[Any], blacklist: list[Any], expected: set[int]) -> None:
    assert kept(whitelist, blacklist) == expected


def test_compile_filter_single() -> None:
    pred = compile_filter({"verdict": ["DROPPED"]})
    assert [pred(f) for f in FLOWS].count(True) == 1


def test_predicate_does_no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """CIDRs, regexes and selectors are parsed at compile time, not per flow."""
    import ipaddress
    import re

    from observer.filters import k8s, labels

    pred = compile_filters(
        [
            {
                "source_ip": ["10.0.0.0/8"],
                "http_url": ["x"],
                "source_label": ["k8s:app=web"],
                "destination_fqdn": ["*.example.com"],
            }
        ],
        [{"node_name": ["k8s*"], "dns_query": ["^a"]}],
    )

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsing at match time")

    monkeypatch.setattr(re, "compile", boom)
    monkeypatch.setattr(ipaddress, "ip_network", boom)
    monkeypatch.setattr(ipaddress, "ip_address", boom)
    monkeypatch.setattr(labels, "parse_selector", boom)
    monkeypatch.setattr(k8s, "parse_selector", boom)
    for flow in FLOWS:
        assert pred(flow) is False


@pytest.mark.parametrize(
    ("flow_filter", "field", "fragment"),
    [
        pytest.param(
            {"source_ip": ["10.0.0.300"]}, "source_ip", "invalid IP or CIDR '10.0.0.300'", id="ip"
        ),
        pytest.param(
            {"destination_ip": ["10.0.0.0/33"]}, "destination_ip", "10.0.0.0/33", id="cidr-bits"
        ),
        pytest.param(
            {"destination_ip": ["10.0.0.0/255.0.0.0"]}, "destination_ip", "CIDR", id="cidr-netmask"
        ),
        pytest.param({"source_ip_xlated": ["nope"]}, "source_ip_xlated", "nope", id="snat-ip"),
        pytest.param({"source_ip": "10.0.0.1"}, "source_ip", "expected an array", id="not-a-list"),
        pytest.param({"source_pod": [""]}, "source_pod", "namespace", id="pod-empty"),
        pytest.param({"destination_pod": ["/"]}, "destination_pod", "namespace", id="pod-slash"),
        pytest.param({"source_service": [""]}, "source_service", "namespace", id="service-empty"),
        pytest.param(
            {"source_label": ["a in b"]}, "source_label", "expected '('", id="label-in-no-paren"
        ),
        pytest.param(
            {"destination_label": ["a=b c"]},
            "destination_label",
            "expected ','",
            id="label-trailing",
        ),
        pytest.param({"node_labels": ["k8s:"]}, "node_labels", "key", id="node-label-empty-key"),
        pytest.param({"source_fqdn": ["foo.."]}, "source_fqdn", "trailing dots", id="fqdn-dots"),
        pytest.param(
            {"destination_fqdn": [""]}, "destination_fqdn", "empty pattern", id="fqdn-empty"
        ),
        pytest.param(
            {"destination_fqdn": ["a$b"]}, "destination_fqdn", "invalid character", id="fqdn-char"
        ),
        pytest.param({"node_name": ["a/b/c"]}, "node_name", "too many slashes", id="node-slashes"),
        pytest.param({"node_name": [""]}, "node_name", "empty pattern", id="node-empty"),
        pytest.param({"node_name": ["k8s_1!"]}, "node_name", "invalid character", id="node-char"),
        pytest.param({"protocol": ["tcpp"]}, "protocol", "unknown protocol 'tcpp'", id="protocol"),
        pytest.param(
            {"source_port": ["65536"]}, "source_port", "invalid port '65536'", id="port-range"
        ),
        pytest.param(
            {"destination_port": ["-1"]}, "destination_port", "invalid port", id="port-negative"
        ),
        pytest.param(
            {"destination_port": ["http"]}, "destination_port", "invalid port", id="port-name"
        ),
        pytest.param(
            {"destination_port": [80]}, "destination_port", "expected a string", id="port-number"
        ),
        pytest.param({"http_status_code": ["600"]}, "http_status_code", "'600'", id="status-600"),
        pytest.param({"http_status_code": ["2++"]}, "http_status_code", "'2++'", id="status-plus"),
        pytest.param({"http_status_code": ["99"]}, "http_status_code", "'99'", id="status-short"),
        pytest.param(
            {"http_path": ["("]}, "http_path", "invalid regular expression", id="path-regex"
        ),
        pytest.param(
            {"http_url": ["[a-"]}, "http_url", "invalid regular expression", id="url-regex"
        ),
        pytest.param(
            {"dns_query": ["*a"]}, "dns_query", "invalid regular expression", id="dns-regex"
        ),
        pytest.param(
            {"http_method": ["GET"], "event_type": [{"type": 4}]},
            "http_method",
            "requires the event type filter to only match 'l7' events",
            id="http-needs-l7-event-type",
        ),
        pytest.param(
            {"http_header": [{"key": "a", "value": "b"}], "event_type": [{"type": 0}]},
            "http_header",
            "'l7'",
            id="http-header-needs-l7",
        ),
        pytest.param({"http_header": [{"key": 1}]}, "http_header", "strings", id="header-type"),
        pytest.param(
            {"http_header": [{"name": "a"}]},
            "http_header",
            "unknown field 'name'",
            id="header-field",
        ),
        pytest.param(
            {"verdict": ["NOPE"]}, "verdict", "invalid Verdict value 'NOPE'", id="verdict-name"
        ),
        pytest.param({"verdict": [1.5]}, "verdict", "invalid integer", id="verdict-float"),
        pytest.param(
            {"drop_reason_desc": ["NOT_A_REASON"]},
            "drop_reason_desc",
            "DropReason",
            id="drop-reason",
        ),
        pytest.param(
            {"traffic_direction": ["UP"]}, "traffic_direction", "TrafficDirection", id="direction"
        ),
        pytest.param({"ip_version": ["IPv5"]}, "ip_version", "IPVersion", id="ip-version"),
        pytest.param(
            {"source_identity": ["x"]}, "source_identity", "invalid integer 'x'", id="identity-text"
        ),
        pytest.param(
            {"source_identity": [-1]}, "source_identity", "out of range", id="identity-negative"
        ),
        pytest.param(
            {"destination_identity": [2**32]},
            "destination_identity",
            "out of range",
            id="identity-big",
        ),
        pytest.param(
            {"destination_identity": [True]},
            "destination_identity",
            "invalid integer",
            id="identity-bool",
        ),
        pytest.param({"ip_trace_id": ["0x10"]}, "ip_trace_id", "invalid integer", id="ip-trace-id"),
        pytest.param({"ip_trace_id": [2**64]}, "ip_trace_id", "out of range", id="ip-trace-id-big"),
        pytest.param(
            {"source_cluster_name": [""]},
            "source_cluster_name",
            "must not be empty",
            id="cluster-empty",
        ),
        pytest.param(
            {"tcp_flags": [{"SYNN": True}]}, "tcp_flags", "unknown field 'SYNN'", id="tcp-flag-name"
        ),
        pytest.param(
            {"tcp_flags": [{"SYN": "yes"}]}, "tcp_flags", "expected a boolean", id="tcp-flag-value"
        ),
        pytest.param(
            {"tcp_flags": ["SYN"]}, "tcp_flags", "expected a JSON object", id="tcp-flags-string"
        ),
        pytest.param(
            {"event_type": [{"type": "drop"}]},
            "event_type",
            "invalid integer",
            id="event-type-name",
        ),
        pytest.param(
            {"event_type": [{"type": 2**31}]}, "event_type", "out of range", id="event-type-range"
        ),
        pytest.param(
            {"event_type": [{"sub": 1}]}, "event_type", "unknown field 'sub'", id="event-type-field"
        ),
        pytest.param(
            {"event_type": [{"sub_type": 1, "subType": 2}]},
            "event_type",
            "duplicate",
            id="event-type-duplicate",
        ),
        pytest.param({"interface": [{"index": -1}]}, "interface", "out of range", id="iface-index"),
        pytest.param({"interface": [{"name": 5}]}, "interface", "string", id="iface-name"),
        pytest.param({"reply": ["true"]}, "reply", "expected a boolean", id="reply"),
        pytest.param({"encrypted": [1]}, "encrypted", "expected a boolean", id="encrypted"),
        pytest.param({"uuid": [1]}, "uuid", "expected a string", id="uuid"),
        pytest.param({"trace_id": [True]}, "trace_id", "expected a string", id="trace-id"),
        pytest.param(
            {"source_workload": [{"nme": "x"}]}, "source_workload", "'nme'", id="workload-field"
        ),
        pytest.param(
            {"destination_workload": "web"}, "destination_workload", "array", id="workload-not-list"
        ),
        pytest.param({"nope": [1]}, "nope", "unknown FlowFilter field", id="unknown-field"),
        pytest.param({"source_namespace": ["x"]}, "source_namespace", "unknown", id="not-in-v1.19"),
        pytest.param(
            {"source_pod": ["a/"], "sourcePod": ["b/"]},
            "source_pod",
            "given twice",
            id="duplicate-field",
        ),
        pytest.param(
            {"experimental": {"cel_expression": ["_flow.verdict == 1"]}},
            "experimental.cel_expression",
            "not supported",
            id="cel",
        ),
        pytest.param(
            {"experimental": {"bogus": 1}},
            "experimental",
            "unknown field 'bogus'",
            id="experimental-field",
        ),
    ],
)
def test_invalid_filter_names_field(flow_filter: dict[str, Any], field: str, fragment: str) -> None:
    for whitelist, blacklist in (([flow_filter], []), ([], [flow_filter])):
        with pytest.raises(FilterError) as info:
            compile_filters(whitelist, blacklist)
        assert info.value.field == field
        assert fragment in info.value.message
        assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("whitelist", "field"),
    [
        pytest.param(["source_pod"], "FlowFilter", id="filter-not-object"),
        pytest.param({"source_pod": ["x"]}, "whitelist", id="list-is-a-mapping"),
    ],
)
def test_invalid_filter_lists(whitelist: Any, field: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filters(whitelist, [])
    assert info.value.field == field


def test_error_in_second_filter_is_reported() -> None:
    with pytest.raises(FilterError) as info:
        compile_filters(
            [{"verdict": ["DROPPED"]}], [{"protocol": ["tcp"]}, {"protocol": ["bogus"]}]
        )
    assert info.value.field == "protocol"


def test_accepts_proto_dicts_from_json_format() -> None:
    """The dict form google.protobuf.json_format produces (uint64 as strings, enum names)."""
    flow_filter = {
        "ip_trace_id": ["7"],
        "source_identity": [12345],
        "verdict": ["FORWARDED"],
        "event_type": [{"type": 4, "match_sub_type": True, "sub_type": 5}],
        "tcp_flags": [{"SYN": True}],
    }
    flow = dict(FLOWS[0], ip_trace_id={"trace_id": "7"})
    assert compile_filter(flow_filter)(flow) is True
    assert compile_filter(flow_filter)(FLOWS[0]) is False
