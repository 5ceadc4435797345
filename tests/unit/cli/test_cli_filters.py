"""Filter flags -> FlowFilters, compared with what Hubble's CLI sends for the same flags
(reference §6.4): symmetric flags make a source/destination pair, --not negates only the
next filter flag, namespaces prefix pod and service names."""

from __future__ import annotations

from typing import Any

import pytest

from hubblectl.cli.filters import (
    FLOW_FILTER_FIELDS,
    build_filters,
    filter_json,
    parse_raw_filters,
    raw_filters_yaml,
)
from hubblectl.errors import UsageError

Args = list[tuple[str, str | None]]

CASES: list[tuple[str, Args, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("none", [], [], []),
    ("pod", [("pod", "xwing")], [{"source_pod": ["xwing"]}, {"destination_pod": ["xwing"]}], []),
    (
        "from-to-pod",
        [("from-pod", "default/xwing"), ("to-pod", "default/deathstar")],
        [{"source_pod": ["default/xwing"], "destination_pod": ["default/deathstar"]}],
        [],
    ),
    (
        "namespace",
        [("namespace", "kube-system")],
        [{"source_pod": ["kube-system/"]}, {"destination_pod": ["kube-system/"]}],
        [],
    ),
    (
        "all-namespaces",
        [("all-namespaces", None)],
        [{"source_pod": ["/"]}, {"destination_pod": ["/"]}],
        [],
    ),
    (
        "to-namespaces-or-http",
        [
            ("http-method", "put"),
            ("http-method", "get"),
            ("to-namespace", "foo"),
            ("to-namespace", "bar"),
        ],
        [{"destination_pod": ["foo/", "bar/"], "http_method": ["put", "get"]}],
        [],
    ),
    (
        "from-namespace-pod",
        [("from-namespace", "ns"), ("from-pod", "x")],
        [{"source_pod": ["ns/x"]}],
        [],
    ),
    (
        "service-in-namespace",
        [("service", "foo"), ("namespace", "bar")],
        [{"source_service": ["bar/foo"]}, {"destination_service": ["bar/foo"]}],
        [],
    ),
    (
        "not-twice",
        [("not", None), ("http-method", "put"), ("not", None), ("http-method", "get")],
        [],
        [{"http_method": ["put", "get"]}],
    ),
    (
        "not-applies-to-next-only",
        [("not", None), ("to-port", "53"), ("verdict", "DROPPED")],
        [{"verdict": ["DROPPED"]}],
        [{"destination_port": ["53"]}],
    ),
    (
        "label-and-not-label",
        [("label", "app=foo"), ("not", None), ("label", "app=bar")],
        [{"source_label": ["app=foo"]}, {"destination_label": ["app=foo"]}],
        [{"source_label": ["app=bar"]}, {"destination_label": ["app=bar"]}],
    ),
    (
        "ip-and-port",
        [("ip", "10.0.0.1"), ("port", "80")],
        [
            {"source_ip": ["10.0.0.1"], "source_port": ["80"]},
            {"destination_ip": ["10.0.0.1"], "destination_port": ["80"]},
        ],
        [],
    ),
    ("cidr", [("to-ip", "10.0.0.0/8")], [{"destination_ip": ["10.0.0.0/8"]}], []),
    ("snat-ip", [("snat-ip", "192.0.2.1")], [{"source_ip_xlated": ["192.0.2.1"]}], []),
    (
        "types",
        [
            ("type", "trace:to-endpoint"),
            ("type", "trace:from-endpoint"),
            ("type", "drop"),
            ("type", "l7"),
        ],
        [
            {
                "event_type": [
                    {"type": 4, "match_sub_type": True},
                    {"type": 4, "match_sub_type": True, "sub_type": 5},
                    {"type": 1},
                    {"type": 129},
                ]
            }
        ],
        [],
    ),
    (
        "type-numbers-and-names",
        [
            ("type", "policy-verdict"),
            ("type", "trace-sock"),
            ("type", "capture"),
            ("type", "1:133"),
            ("type", "drop:POLICY_DENIED"),
        ],
        [
            {
                "event_type": [
                    {"type": 5},
                    {"type": 7},
                    {"type": 3},
                    {"type": 1, "match_sub_type": True, "sub_type": 133},
                    {"type": 1, "match_sub_type": True, "sub_type": 133},
                ]
            }
        ],
        [],
    ),
    (
        "agent-subtype",
        [("type", "agent:policy-updated")],
        [{"event_type": [{"type": 130, "match_sub_type": True, "sub_type": 3}]}],
        [],
    ),
    (
        "verdicts",
        [("verdict", "DROPPED"), ("verdict", "forwarded")],
        [{"verdict": ["DROPPED", "FORWARDED"]}],
        [],
    ),
    (
        "drop-reason",
        [("drop-reason-desc", "policy_denied")],
        [{"drop_reason_desc": ["POLICY_DENIED"]}],
        [],
    ),
    (
        "tcp-flags",
        [("tcp-flags", "syn,ack"), ("tcp-flags", "FIN")],
        [{"tcp_flags": [{"SYN": True, "ACK": True}, {"FIN": True}]}],
        [],
    ),
    ("ipv4", [("ipv4", None)], [{"ip_version": ["IPv4"]}], []),
    ("ip-version-none", [("ip-version", "none")], [{"ip_version": ["IP_NOT_USED"]}], []),
    (
        "identities",
        [("from-identity", "host"), ("to-identity", "12345")],
        [{"source_identity": [1], "destination_identity": [12345]}],
        [],
    ),
    (
        "identity-symmetric",
        [("identity", "world")],
        [{"source_identity": [2]}, {"destination_identity": [2]}],
        [],
    ),
    (
        "workload",
        [("workload", "deployment/foo")],
        [
            {"source_workload": [{"name": "foo", "kind": "deployment"}]},
            {"destination_workload": [{"name": "foo", "kind": "deployment"}]},
        ],
        [],
    ),
    (
        "workload-kind-only",
        [("to-workload", "StatefulSet/")],
        [{"destination_workload": [{"kind": "StatefulSet"}]}],
        [],
    ),
    (
        "http-header",
        [("http-header", "X-A:1:2")],
        [{"http_header": [{"key": "X-A", "value": "1:2"}]}],
        [],
    ),
    (
        "http-status",
        [("http-status", "5+"), ("http-status", "404")],
        [{"http_status_code": ["5+", "404"]}],
        [],
    ),
    (
        "traffic-direction",
        [("traffic-direction", "Ingress")],
        [{"traffic_direction": ["INGRESS"]}],
        [],
    ),
    ("node-name", [("node-name", "k8s*")], [{"node_name": ["k8s*"]}], []),
    ("node-label", [("node-label", "zone=a")], [{"node_labels": ["zone=a"]}], []),
    (
        "cluster",
        [("cluster", "c1")],
        [{"source_cluster_name": ["c1"]}, {"destination_cluster_name": ["c1"]}],
        [],
    ),
    ("protocol", [("protocol", "TCP"), ("protocol", "dns")], [{"protocol": ["TCP", "dns"]}], []),
    ("uuid", [("uuid", "abc")], [{"uuid": ["abc"]}], []),
    ("trace-id", [("trace-id", "t1")], [{"trace_id": ["t1"]}], []),
    ("ip-trace-id", [("ip-trace-id", "42")], [{"ip_trace_id": ["42"]}], []),
    ("interface", [("interface", "eth0")], [{"interface": [{"name": "eth0"}]}], []),
    ("encrypted", [("unencrypted", None)], [{"encrypted": [False]}], []),
    (
        "fqdn",
        [("fqdn", "*.cilium.io")],
        [{"source_fqdn": ["*.cilium.io"]}, {"destination_fqdn": ["*.cilium.io"]}],
        [],
    ),
    (
        "cel",
        [("cel-expression", "_flow.verdict == 2")],
        [{"experimental": {"cel_expression": ["_flow.verdict == 2"]}}],
        [],
    ),
    (
        "key-order-is-declaration-order",
        [("verdict", "DROPPED"), ("to-port", "80"), ("from-pod", "a/b"), ("uuid", "u")],
        [
            {
                "uuid": ["u"],
                "source_pod": ["a/b"],
                "verdict": ["DROPPED"],
                "destination_port": ["80"],
            }
        ],
        [],
    ),
]


@pytest.mark.parametrize(
    ("args", "whitelist", "blacklist"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_filters(
    args: Args, whitelist: list[dict[str, Any]], blacklist: list[dict[str, Any]]
) -> None:
    lists = build_filters(args)
    assert list(lists.whitelist) == whitelist
    assert list(lists.blacklist) == blacklist
    for ff in (*lists.whitelist, *lists.blacklist):
        keys = list(ff)
        assert keys == sorted(keys, key=FLOW_FILTER_FIELDS.index)  # protojson key order


ERRORS: list[tuple[str, Args, str]] = [
    (
        "pod-from-pod",
        [("pod", "a"), ("from-pod", "b")],
        "filters --from-pod and --pod cannot be combined",
    ),
    ("ip-fqdn", [("ip", "1.1.1.1"), ("fqdn", "x")], "filters --ip and --fqdn cannot be combined"),
    (
        "label",
        [("from-label", "a"), ("label", "b")],
        "filters --label and --from-label cannot be combined",
    ),
    ("port", [("port", "1"), ("to-port", "2")], "filters --port and --to-port cannot be combined"),
    ("ipv4-ipv6", [("ipv4", None), ("ipv6", None)], "filters --ipv4 and --ipv6 cannot be combined"),
    (
        "encrypted",
        [("encrypted", None), ("unencrypted", None)],
        "filters --encrypted and --unencrypted cannot be combined",
    ),
    (
        "namespace-to-pod",
        [("namespace", "a"), ("to-pod", "b")],
        "filters --to-pod and --namespace cannot be combined",
    ),
    (
        "namespace-conflict",
        [("from-namespace", "a"), ("from-pod", "b/x")],
        'namespace conflict: "a" does not contain "b/x"',
    ),
    ("trailing-not", [("pod", "a"), ("not", None)], "trailing --not found in the arguments"),
    ("double-not", [("not", None), ("not", None), ("pod", "a")], "consecutive --not statements"),
    ("bad-ip", [("ip", "10.0.0.300")], "invalid --ip value '10.0.0.300'"),
    ("bad-port", [("to-port", "70000")], "invalid --to-port value '70000'"),
    ("bad-verdict", [("verdict", "MAYBE")], "invalid --verdict value 'MAYBE'"),
    ("bad-type", [("type", "nope")], "invalid --type value 'nope'"),
    ("bad-subtype", [("type", "trace:nowhere")], "unknown sub-type 'nowhere'"),
    ("bad-tcp-flag", [("tcp-flags", "syn,foo")], "unknown tcp flag 'foo'"),
    ("bad-protocol", [("protocol", "quic")], "invalid --protocol value 'quic'"),
    ("bad-direction", [("traffic-direction", "up")], "invalid --traffic-direction value 'up'"),
    ("bad-identity", [("identity", "nobody")], "invalid --identity value 'nobody'"),
    ("bad-ip-trace-id", [("ip-trace-id", "0")], "invalid --ip-trace-id value '0'"),
    ("bad-http-status", [("http-status", "700")], "invalid --http-status value '700'"),
    ("bad-header", [("http-header", "nocolon")], "invalid --http-header value 'nocolon'"),
    (
        "bad-drop-reason",
        [("drop-reason-desc", "SOMETHING")],
        "invalid --drop-reason-desc value 'SOMETHING'",
    ),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_filter_errors(args: Args, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        build_filters(args)
    assert message in str(exc.value)


def test_conflicts_are_per_side() -> None:
    # Hubble tracks flags per allow/deny side: a negated --from-pod does not clash with --pod.
    lists = build_filters([("pod", "a"), ("not", None), ("from-pod", "b")])
    assert list(lists.blacklist) == [{"source_pod": ["b"]}]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (['{"source_pod":["kube-system/"]}'], [{"source_pod": ["kube-system/"]}]),
        (
            ['{"sourcePod":["a"]} {"verdict":[2]}'],
            [{"source_pod": ["a"]}, {"verdict": ["DROPPED"]}],
        ),
        (
            [
                '{"a":1}'[:0]
                + '{"eventType":[{"type":1,"matchSubType":true,"subType":133}]}{"trafficDirection":[1]}'
            ],
            [
                {"event_type": [{"type": 1, "match_sub_type": True, "sub_type": 133}]},
                {"traffic_direction": ["INGRESS"]},
            ],
        ),
        (['{"drop_reason_desc":[133]}', "  "], [{"drop_reason_desc": ["POLICY_DENIED"]}]),
        (
            ['{"destination_port":["53"],"source_ip":["1.1.1.1"]}'],
            [{"source_ip": ["1.1.1.1"], "destination_port": ["53"]}],
        ),
    ],
    ids=["proto-names", "camel-and-enum-number", "concatenated", "drop-number", "reordered"],
)
def test_raw_filters(values: list[str], expected: list[dict[str, Any]]) -> None:
    assert parse_raw_filters("allowlist", values) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"source_pod": [', "invalid --denylist flag: malformed JSON FlowFilter"),
        ('["x"]', "invalid --denylist flag: expected a JSON object"),
        (
            '{"no_such_field": ["x"]}',
            "invalid --denylist flag: unknown FlowFilter field 'no_such_field'",
        ),
        ('{"source_pod": "x"}', "invalid --denylist flag: field 'source_pod' must be a list"),
    ],
    ids=["truncated", "array", "unknown-field", "not-a-list"],
)
def test_raw_filter_errors(value: str, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_raw_filters("denylist", [value])
    assert message in str(exc.value)


def test_raw_filters_yaml_like_hubble() -> None:
    lists = build_filters(
        [
            ("pod", "kube-system/"),
            ("type", "drop"),
            ("not", None),
            ("from-label", "k8s:k8s-app=kube-dns"),
        ]
    )
    assert raw_filters_yaml(lists.whitelist, lists.blacklist) == (
        "allowlist:\n"
        '    - \'{"source_pod":["kube-system/"],"event_type":[{"type":1}]}\'\n'
        '    - \'{"destination_pod":["kube-system/"],"event_type":[{"type":1}]}\'\n'
        "denylist:\n"
        '    - \'{"source_label":["k8s:k8s-app=kube-dns"]}\'\n'
    )
    assert raw_filters_yaml([], []) == "{}\n"


def test_filter_json_escapes_like_go() -> None:
    assert filter_json({"http_path": ["/a&b<c>"], "source_pod": ["it's"]}) == (
        '{"source_pod":["it\'s"],"http_path":["/a\\u0026b\\u003cc\\u003e"]}'
    )
    assert (
        raw_filters_yaml([{"source_pod": ["it's"]}], [])
        == "allowlist:\n    - '{\"source_pod\":[\"it''s\"]}'\n"
    )
