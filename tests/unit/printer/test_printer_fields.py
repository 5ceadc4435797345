"""Field formatters: TYPE texts, identities, hosts, verdicts, summaries (reference §7.1)."""

from __future__ import annotations

from typing import Any

import pytest

from hubblectl.printer import fields
from hubblectl.printer.options import Colors, resolve_color

PLAIN = Colors(False)


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        ({"l7": {"type": "REQUEST"}, "event_type": {"type": 129}}, "l7-request"),
        ({"l7": {"type": "RESPONSE", "http": {}}}, "http-response"),
        ({"l7": {"type": "REQUEST", "kafka": {}}}, "kafka-request"),
        ({"l7": {"type": "REQUEST", "dns": {"observation_source": "proxy"}}}, "dns-request proxy"),
        ({"l7": {}}, "l7-unknown_l7_type"),
        ({"event_type": {"type": 4, "sub_type": 2}}, "to-host"),
        ({"event_type": {"type": 4}}, "to-endpoint"),
        ({"event_type": {"type": 4, "sub_type": 13}}, "to-crypto"),
        ({"event_type": {"type": 4, "sub_type": 123}}, "123"),
        ({"event_type": {"type": 1, "sub_type": 133}}, "Policy denied"),
        ({"event_type": {"type": 1, "sub_type": 181}}, "Policy denied by denylist"),
        ({"event_type": {"type": 1}}, "Success"),
        (
            {"event_type": {"type": 5}, "policy_match_type": 2, "traffic_direction": "INGRESS"},
            "policy-verdict:L3-L4 INGRESS",
        ),
        (
            {"event_type": {"type": 5}, "traffic_direction": "INGRESS"},
            "policy-verdict:none INGRESS",
        ),
        (
            {"event_type": {"type": 5}, "policy_match_type": 9},
            "policy-verdict:unknown TRAFFIC_DIRECTION_UNKNOWN",
        ),
        (
            {"event_type": {"type": 7}, "sock_xlate_point": "SOCK_XLATE_POINT_PRE_DIRECTION_FWD"},
            "pre-xlate-fwd",
        ),
        (
            {"event_type": {"type": 7}, "sock_xlate_point": "SOCK_XLATE_POINT_POST_DIRECTION_FWD"},
            "post-xlate-fwd",
        ),
        ({"event_type": {"type": 7}}, "SOCK_XLATE_POINT_UNKNOWN"),
        (
            {"event_type": {"type": 3}, "debug_capture_point": "DBG_CAPTURE_FROM_LB"},
            "DBG_CAPTURE_FROM_LB",
        ),
        ({}, "UNKNOWN"),
    ],
    ids=[
        "l7",
        "http",
        "kafka",
        "dns",
        "l7-empty",
        "trace-to-host",
        "trace-to-endpoint",
        "trace-to-crypto",
        "trace-unknown-point",
        "drop-policy",
        "drop-denylist",
        "drop-zero",
        "policy-l3l4",
        "policy-none",
        "policy-unknown-match",
        "sock-pre",
        "sock-post",
        "sock-unknown",
        "capture",
        "nothing",
    ],
)
def test_flow_type(flow: dict[str, Any], expected: str) -> None:
    assert fields.flow_type(flow) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "(unknown)"),
        (0, "(unknown)"),
        (1, "(host)"),
        (2, "(world)"),
        (4, "(health)"),
        (6, "(remote-node)"),
        (10, "(world-ipv6)"),
        (11, "(ID:11)"),
        (12345, "(ID:12345)"),
        ("77", "(ID:77)"),
    ],
    ids=[
        "absent",
        "zero",
        "host",
        "world",
        "health",
        "remote-node",
        "world-ipv6",
        "eleven",
        "number",
        "string",
    ],
)
def test_identity_text(value: Any, expected: str) -> None:
    assert fields.identity_text(value) == expected


@pytest.mark.parametrize(
    ("flow", "translate", "expected"),
    [
        ({"IP": {"source": "1.1.1.1", "destination": "2.2.2.2"}}, True, ("1.1.1.1", "2.2.2.2")),
        (
            {
                "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
                "l4": {"UDP": {"source_port": 5, "destination_port": 53}},
            },
            True,
            ("1.1.1.1:5", "2.2.2.2:53"),
        ),
        (
            {
                "IP": {"source": "fd00::1", "destination": "fd00::2"},
                "l4": {"SCTP": {"source_port": 1, "destination_port": 2}},
            },
            True,
            ("[fd00::1]:1", "[fd00::2]:2"),
        ),
        (
            {
                "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
                "l4": {"TCP": {"source_port": 0}},
            },
            True,
            ("1.1.1.1", "2.2.2.2"),
        ),
        (
            {
                "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
                "source": {"namespace": "srcns", "pod_name": "srcpod"},
                "destination": {"namespace": "dstns", "pod_name": "dstpod"},
            },
            True,
            ("srcns/srcpod", "dstns/dstpod"),
        ),
        (
            {
                "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
                "l4": {"TCP": {"source_port": 55555, "destination_port": 80}},
                "source_service": {"name": "xwing", "namespace": "default"},
                "destination_service": {"name": "tiefighter", "namespace": "deathstar"},
            },
            True,
            ("default/xwing:55555", "deathstar/tiefighter:80"),
        ),
        (
            {
                "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
                "source_names": ["a"],
                "destination_names": ["b", "c"],
            },
            True,
            ("a", "b,c"),
        ),
        (
            {
                "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
                "source": {"namespace": "ns", "pod_name": "pod"},
                "destination_names": ["b"],
            },
            False,
            ("1.1.1.1", "2.2.2.2"),
        ),
        (
            {"ethernet": {"source": "00:01:02:03:04:05", "destination": "06:07:08:09:0a:0b"}},
            True,
            ("00:01:02:03:04:05", "06:07:08:09:0a:0b"),
        ),
        ({}, True, ("", "")),
    ],
    ids=[
        "ips",
        "udp-ports",
        "ipv6-brackets",
        "port-zero",
        "pods",
        "services",
        "dns-names",
        "numeric",
        "ethernet",
        "empty",
    ],
)
def test_hostnames(flow: dict[str, Any], translate: bool, expected: tuple[str, str]) -> None:
    assert fields.hostnames(flow, translate=translate, colors=PLAIN) == expected


POLICY = [
    {"name": "allow-web", "namespace": "default", "kind": "CiliumNetworkPolicy"},
    {"name": "no-kind"},
]


@pytest.mark.parametrize(
    ("flow", "names", "expected"),
    [
        ({"verdict": "FORWARDED"}, False, "FORWARDED"),
        ({"verdict": "FORWARDED", "event_type": {"type": 5}}, False, "ALLOWED"),
        ({"verdict": "REDIRECTED", "event_type": {"type": 5}}, False, "ALLOWED"),
        ({"verdict": "ERROR", "event_type": {"type": 5}}, False, "DENIED"),
        ({"verdict": "AUDIT", "event_type": {"type": 5}}, False, "AUDITED"),
        ({"verdict": "AUDIT"}, False, "AUDIT"),
        ({}, False, "VERDICT_UNKNOWN"),
        (
            {
                "verdict": "FORWARDED",
                "event_type": {"type": 5},
                "traffic_direction": "INGRESS",
                "ingress_allowed_by": POLICY,
            },
            True,
            "ALLOWED BY allow-web (CiliumNetworkPolicy)",
        ),
        (
            {
                "verdict": "FORWARDED",
                "event_type": {"type": 5},
                "traffic_direction": "EGRESS",
                "ingress_allowed_by": POLICY,
            },
            True,
            "ALLOWED",
        ),
        (
            {
                "verdict": "DROPPED",
                "event_type": {"type": 5},
                "traffic_direction": "EGRESS",
                "egress_denied_by": [*POLICY, {"name": "b", "kind": "K"}],
            },
            True,
            "DENIED BY allow-web (CiliumNetworkPolicy), b (K)",
        ),
        (
            {
                "verdict": "DROPPED",
                "event_type": {"type": 1},
                "traffic_direction": "INGRESS",
                "ingress_denied_by": POLICY,
            },
            True,
            "DROPPED BY allow-web (CiliumNetworkPolicy)",
        ),
        (
            {
                "verdict": "DROPPED",
                "event_type": {"type": 1},
                "traffic_direction": "INGRESS",
                "ingress_denied_by": POLICY,
            },
            False,
            "DROPPED",
        ),
    ],
    ids=[
        "fwd",
        "allowed",
        "redirected-allowed",
        "error-denied",
        "audited",
        "audit-trace",
        "unset",
        "allowed-by",
        "allowed-wrong-direction",
        "denied-by-two",
        "drop-denied-by",
        "drop-without-flag",
    ],
)
def test_verdict(flow: dict[str, Any], names: bool, expected: str) -> None:
    assert fields.verdict(flow, PLAIN, print_policy_names=names) == expected


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        ({"Summary": "TCP Flags: SYN"}, "TCP Flags: SYN"),
        ({"Summary": "UDP", "ip_trace_id": {"trace_id": "42"}}, "IP Trace ID: 42; UDP"),
        ({"Summary": "UDP", "ip_trace_id": {"trace_id": "0"}}, "UDP"),
        ({"Summary": "UDP", "auth_type": "SPIRE"}, "UDP; Auth: SPIRE"),
        ({"Summary": "UDP", "auth_type": "DISABLED"}, "UDP"),
    ],
    ids=["plain", "trace-id", "trace-id-zero", "auth", "auth-disabled"],
)
def test_summary(flow: dict[str, Any], expected: str) -> None:
    assert fields.summary(flow, PLAIN) == expected


def test_colours_wrap_escaped_text() -> None:
    colors = Colors(True)
    assert fields.verdict({"verdict": "DROPPED"}, colors) == "\x1b[31mDROPPED\x1b[0m"
    assert fields.verdict({"verdict": "TRACED"}, colors) == "\x1b[33mTRACED\x1b[0m"
    assert fields.verdict({"verdict": "VERDICT_UNKNOWN"}, colors) == "VERDICT_UNKNOWN"
    assert (
        fields.summary({"Summary": "x", "auth_type": "TEST_ALWAYS_FAIL"}, colors)
        == "x; Auth: \x1b[31mTEST_ALWAYS_FAIL\x1b[0m"
    )


@pytest.mark.parametrize(
    ("mode", "tty", "env", "expected"),
    [
        ("auto", True, {}, True),
        ("auto", False, {}, False),
        ("auto", True, {"NO_COLOR": "1"}, False),
        ("auto", True, {"NO_COLOR": ""}, True),
        ("auto", True, {"TERM": "dumb"}, False),
        ("always", False, {"NO_COLOR": "1"}, True),
        ("never", True, {}, False),
        ("ALWAYS", False, {}, True),
    ],
    ids=[
        "auto-tty",
        "auto-pipe",
        "no-color",
        "no-color-empty",
        "dumb-term",
        "always-wins",
        "never",
        "case",
    ],
)
def test_resolve_color(mode: str, tty: bool, env: dict[str, str], expected: bool) -> None:
    assert resolve_color(mode, is_tty=tty, env=env) is expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a", "b"], "a, b"),
        (
            [f"node-{i:02d}" for i in range(10)],
            "node-00, node-01, node-02, node-03, node-04 (and 5 more)",
        ),
        (["x" * 80, "y"], "x" * 80 + " (and 1 more)"),
        ([], ""),
    ],
    ids=["short", "cut", "first-always", "empty"],
)
def test_join_with_cutoff(names: list[str], expected: str) -> None:
    assert fields.join_with_cutoff(names, ", ", 50) == expected


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        (0, "0s"),
        (999, "999ns"),
        (1_500, "1.5\u00b5s"),
        (1_500_000, "1.5ms"),
        (1_000_000_000, "1s"),
        (301_515_181_665, "5m1.515181665s"),
        (1_000_000_000_000, "16m40s"),
        (3_723_000_000_000, "1h2m3s"),
        (3_600_000_000_000, "1h0m0s"),
    ],
    ids=["zero", "ns", "us", "ms", "s", "m-frac", "m", "hms", "hour"],
)
def test_go_duration(ns: int, expected: str) -> None:
    assert fields.go_duration(ns) == expected
