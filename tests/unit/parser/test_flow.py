"""FlowBuilder: FlowEvent + resolver -> GetFlowsResponse dict (Hubble protojson shape)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.bpf import structs
from observer.enrich import EndpointInfo, ResolverSnapshot, StaticResolver
from observer.parser import FlowBuilder, FlowDecoder, FlowEvent, format_timestamp
from observer.parser.timestamps import MAX_SECONDS, MIN_SECONDS

from .builders import encode, flow_events, make_event
from .protocheck import check_response

NODE = "default/node-a"
ZERO_UUID = "00000000-0000-4000-8000-000000000000"
EMITTER = {"name": "Hubble", "version": "0.1.0"}

XWING = EndpointInfo(
    id=12,
    identity=12345,
    namespace="default",
    pod_name="xwing",
    labels=(
        "k8s:class=xwing",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.kubernetes.pod.namespace=default",
        "k8s:org=alliance",
    ),
    cluster_name="default",
)
DEATHSTAR = EndpointInfo(
    id=10,
    identity=5678,
    namespace="default",
    pod_name="deathstar",
    labels=(
        "k8s:class=deathstar",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.kubernetes.pod.namespace=default",
        "k8s:org=empire",
    ),
    cluster_name="default",
)
RULE1 = {
    "name": "rule1",
    "namespace": "default",
    "labels": [
        "k8s:io.cilium.k8s.policy.name=rule1",
        "k8s:io.cilium.k8s.policy.namespace=default",
    ],
    "revision": "3",
    "kind": "CiliumNetworkPolicy",
}

XWING_EP = {
    "ID": 12,
    "identity": 12345,
    "cluster_name": "default",
    "namespace": "default",
    "labels": list(XWING.labels),
    "pod_name": "xwing",
}
DEATHSTAR_EP = {
    "ID": 10,
    "identity": 5678,
    "cluster_name": "default",
    "namespace": "default",
    "labels": list(DEATHSTAR.labels),
    "pod_name": "deathstar",
}
WORLD_EP = {"identity": 2, "labels": ["reserved:world"]}
HOST_EP = {"identity": 1, "labels": ["reserved:host"]}

# 2026-11-26T12:00:01.123456789Z
T1 = int(datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC).timestamp()) * 1_000_000_000 + 123_456_789
T1_TEXT = "2026-11-26T12:00:01.123456789Z"


def world() -> StaticResolver:
    return StaticResolver(
        ResolverSnapshot.from_endpoints(
            [
                (["10.213.0.5", "fd00:10:213::5"], XWING),
                (["10.213.0.7", "fd00:10:213::7"], DEATHSTAR),
            ],
            host_ips=["10.213.0.1", "192.168.1.10"],
            interfaces={41: "lxc1a2b3c4d", 40: "lxc9f8e7d6c"},
            policies={7: [RULE1]},
        )
    )


def builder(resolver: Any = None, node: str = NODE) -> FlowBuilder:
    return FlowBuilder(node, resolver if resolver is not None else world(), "0.1.0", entropy=bytes)


def head(verdict: str, **rest: Any) -> dict[str, Any]:
    return {"time": T1_TEXT, "uuid": ZERO_UUID, "emitter": EMITTER, "verdict": verdict, **rest}


ETH_5_TO_ROUTER = {"source": "02:00:0a:d5:00:05", "destination": "ee:ee:ee:ee:ee:ee"}
ETH_7_TO_ROUTER = {"source": "02:00:0a:d5:00:07", "destination": "ee:ee:ee:ee:ee:ee"}
IP_5_TO_7 = {"source": "10.213.0.5", "destination": "10.213.0.7", "ipVersion": "IPv4"}
IP_7_TO_5 = {"source": "10.213.0.7", "destination": "10.213.0.5", "ipVersion": "IPv4"}
IP6_5_TO_7 = {"source": "fd00:10:213::5", "destination": "fd00:10:213::7", "ipVersion": "IPv6"}
IP6_7_TO_5 = {"source": "fd00:10:213::7", "destination": "fd00:10:213::5", "ipVersion": "IPv6"}
TCP_SYN_41391_80 = {"TCP": {"source_port": 41391, "destination_port": 80, "flags": {"SYN": True}}}
IFACE_41 = {"index": 41, "name": "lxc1a2b3c4d"}
NO_ETH = {"eth_src": "00:00:00:00:00:00", "eth_dst": "00:00:00:00:00:00"}
V6_5_TO_7 = {"ip_version": 6, "saddr": "fd00:10:213::5", "daddr": "fd00:10:213::7"}
V6_7_TO_5 = {"ip_version": 6, "saddr": "fd00:10:213::7", "daddr": "fd00:10:213::5"}

DROP = structs.EVENT_DROP
VERDICT = structs.EVENT_POLICY_VERDICT
SYN, ACK = structs.TCP_SYN, structs.TCP_ACK

# (id, event overrides, expected flow)
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "tcp-syn-from-endpoint",
        {},
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": TCP_SYN_41391_80,
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": "NEW",
            "is_reply": False,
            "interface": IFACE_41,
            "Summary": "TCP Flags: SYN",
        },
    ),
    (
        "tcp-synack-reply-from-endpoint",
        {
            "saddr": "10.213.0.7",
            "daddr": "10.213.0.5",
            "sport": 80,
            "dport": 41391,
            "tcp_flags": SYN | ACK,
            "ct_state": structs.CT_REPLY,
            "is_reply": True,
            "ifindex": 40,
            "eth_src": "02:00:0a:d5:00:07",
        },
        {
            **head("FORWARDED"),
            "ethernet": ETH_7_TO_ROUTER,
            "IP": IP_7_TO_5,
            "l4": {
                "TCP": {
                    "source_port": 80,
                    "destination_port": 41391,
                    "flags": {"SYN": True, "ACK": True},
                }
            },
            "source": DEATHSTAR_EP,
            "destination": XWING_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "reply": True,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "INGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": "REPLY",
            "is_reply": True,
            "interface": {"index": 40, "name": "lxc9f8e7d6c"},
            "Summary": "TCP Flags: SYN, ACK",
        },
    ),
    (
        "udp-v6-to-endpoint",
        {
            **V6_5_TO_7,
            **NO_ETH,
            "l4_proto": 17,
            "tcp_flags": 0,
            "sport": 53000,
            "dport": 53,
            "obs_point": structs.OBS_TO_ENDPOINT,
            "ct_state": structs.CT_UNKNOWN,
            "ifindex": 0,
        },
        {
            **head("FORWARDED"),
            "IP": IP6_5_TO_7,
            "l4": {"UDP": {"source_port": 53000, "destination_port": 53}},
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4},
            "traffic_direction": "INGRESS",
            "trace_observation_point": "TO_ENDPOINT",
            "is_reply": False,
            "Summary": "UDP",
        },
    ),
    (
        "icmpv4-echo-request-to-world",
        {
            "daddr": "192.0.2.10",
            "l4_proto": 1,
            "tcp_flags": 0,
            "icmp_type": 8,
            "sport": 7,
            "dport": 0,
            "ct_state": structs.CT_NEW,
        },
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": {"source": "10.213.0.5", "destination": "192.0.2.10", "ipVersion": "IPv4"},
            "l4": {"ICMPv4": {"type": 8}},
            "source": XWING_EP,
            "destination": WORLD_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": "NEW",
            "is_reply": False,
            "interface": IFACE_41,
            "Summary": "ICMPv4 EchoRequest",
        },
    ),
    (
        "icmpv6-echo-reply-to-endpoint",
        {
            **V6_7_TO_5,
            **NO_ETH,
            "l4_proto": 58,
            "tcp_flags": 0,
            "icmp_type": 129,
            "sport": 7,
            "dport": 0,
            "obs_point": structs.OBS_TO_ENDPOINT,
            "ct_state": structs.CT_REPLY,
            "is_reply": True,
            "ifindex": 0,
        },
        {
            **head("FORWARDED"),
            "IP": IP6_7_TO_5,
            "l4": {"ICMPv6": {"type": 129}},
            "source": DEATHSTAR_EP,
            "destination": XWING_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "reply": True,
            "event_type": {"type": 4},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "TO_ENDPOINT",
            "trace_reason": "REPLY",
            "is_reply": True,
            "Summary": "ICMPv6 EchoReply",
        },
    ),
    (
        "icmpv4-dest-unreachable-port",
        {"l4_proto": 1, "tcp_flags": 0, "icmp_type": 3, "icmp_code": 3, "sport": 0, "dport": 0},
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": {"ICMPv4": {"type": 3, "code": 3}},
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": "NEW",
            "is_reply": False,
            "interface": IFACE_41,
            "Summary": "ICMPv4 DestinationUnreachable(Port)",
        },
    ),
    (
        "drop-policy-denied-133",
        {
            "type": DROP,
            "sub_type": 133,
            "drop_reason": 133,
            "policy_dir": structs.POLICY_INGRESS,
            "policy_rule_id": 7,
            "sport": 41400,
            "ct_state": 0,
            "obs_point": 0,
        },
        {
            **head("DROPPED"),
            "drop_reason": 133,
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": {"TCP": {"source_port": 41400, "destination_port": 80, "flags": {"SYN": True}}},
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 1, "sub_type": 133},
            "traffic_direction": "INGRESS",
            "drop_reason_desc": "POLICY_DENIED",
            "interface": IFACE_41,
            "Summary": "TCP Flags: SYN",
            "ingress_denied_by": [RULE1],
        },
    ),
    (
        "drop-monitor-only-code-has-numeric-desc",
        {
            "type": DROP,
            "sub_type": 3,
            "drop_reason": 3,
            "policy_rule_id": 7,
            "obs_point": 0,
            "ct_state": 0,
            "ifindex": 0,
        },
        {
            **head("DROPPED"),
            "drop_reason": 3,
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": TCP_SYN_41391_80,
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 1, "sub_type": 3},
            "drop_reason_desc": 3,
            "Summary": "TCP Flags: SYN",
        },
    ),
    (
        "policy-verdict-allowed-ingress",
        {
            "type": VERDICT,
            "sub_type": 0,
            "saddr": "10.213.0.7",
            "daddr": "10.213.0.5",
            "policy_dir": structs.POLICY_INGRESS,
            "policy_match_type": 2,
            "policy_rule_id": 7,
            "ifindex": 0,
            "obs_point": 0,
            "ct_state": 0,
            "eth_src": "02:00:0a:d5:00:07",
        },
        {
            **head("FORWARDED"),
            "ethernet": ETH_7_TO_ROUTER,
            "IP": IP_7_TO_5,
            "l4": TCP_SYN_41391_80,
            "source": DEATHSTAR_EP,
            "destination": XWING_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 5},
            "traffic_direction": "INGRESS",
            "policy_match_type": 2,
            "is_reply": False,
            "Summary": "TCP Flags: SYN",
            "ingress_allowed_by": [RULE1],
        },
    ),
    (
        "policy-verdict-denied-egress",
        {
            "type": VERDICT,
            "sub_type": 0,
            "drop_reason": 133,
            "policy_dir": structs.POLICY_EGRESS,
            "policy_rule_id": 7,
            "obs_point": 0,
            "ct_state": 0,
        },
        {
            **head("DROPPED"),
            "drop_reason": 133,
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": TCP_SYN_41391_80,
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 5},
            "traffic_direction": "EGRESS",
            "drop_reason_desc": "POLICY_DENIED",
            "interface": IFACE_41,
            "Summary": "TCP Flags: SYN",
            "egress_denied_by": [RULE1],
        },
    ),
    (
        "policy-verdict-audit",
        {
            "type": VERDICT,
            "sub_type": 0,
            "audited": True,
            "drop_reason": 133,
            "policy_dir": structs.POLICY_EGRESS,
            "policy_match_type": 0,
            "policy_rule_id": 0,
            "obs_point": 0,
            "ct_state": 0,
        },
        {
            **head("AUDIT"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": TCP_SYN_41391_80,
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 5},
            "traffic_direction": "EGRESS",
            "is_reply": False,
            "interface": IFACE_41,
            "Summary": "TCP Flags: SYN",
        },
    ),
    (
        "policy-verdict-audit-names-the-denying-rule",
        {
            "type": VERDICT,
            "sub_type": 0,
            "audited": True,
            "policy_dir": structs.POLICY_INGRESS,
            "policy_match_type": 1,
            "policy_rule_id": 7,
            "obs_point": 0,
            "ct_state": 0,
            "ifindex": 0,
        },
        {
            **head("AUDIT"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": TCP_SYN_41391_80,
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 5},
            "traffic_direction": "INGRESS",
            "policy_match_type": 1,
            "is_reply": False,
            "Summary": "TCP Flags: SYN",
            "ingress_denied_by": [RULE1],
        },
    ),
    (
        "host-ip-is-host-identity",
        {"saddr": "10.213.0.1", "obs_point": structs.OBS_TO_ENDPOINT, "ifindex": 0},
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": {"source": "10.213.0.1", "destination": "10.213.0.7", "ipVersion": "IPv4"},
            "l4": TCP_SYN_41391_80,
            "source": HOST_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4},
            "traffic_direction": "INGRESS",
            "trace_observation_point": "TO_ENDPOINT",
            "trace_reason": "NEW",
            "is_reply": False,
            "Summary": "TCP Flags: SYN",
        },
    ),
    (
        "unknown-ips-are-world",
        {
            "saddr": "203.0.113.9",
            "daddr": "198.51.100.1",
            "obs_point": structs.OBS_TO_STACK,
            "src_identity": 0,
            "ifindex": 99,
        },
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": {"source": "203.0.113.9", "destination": "198.51.100.1", "ipVersion": "IPv4"},
            "l4": TCP_SYN_41391_80,
            "source": WORLD_EP,
            "destination": WORLD_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 3},
            "trace_observation_point": "TO_STACK",
            "trace_reason": "NEW",
            "is_reply": False,
            "interface": {"index": 99},
            "Summary": "TCP Flags: SYN",
        },
    ),
    (
        "tcp-without-flags-or-source-port",
        {"tcp_flags": 0, "sport": 0, "ct_state": structs.CT_ESTABLISHED},
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": {"TCP": {"destination_port": 80, "flags": {}}},
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": "ESTABLISHED",
            "is_reply": False,
            "interface": IFACE_41,
            "Summary": "TCP Flags: ",
        },
    ),
    (
        "sctp-related-unknown-obs-point",
        {
            "l4_proto": 132,
            "tcp_flags": 0,
            "obs_point": 42,
            "ct_state": structs.CT_RELATED,
            "ifindex": 0,
        },
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": {"SCTP": {"source_port": 41391, "destination_port": 80}},
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 42},
            # no trace_observation_point (UNKNOWN_POINT): datapath 42 is not the proto's 42
            "trace_reason": "RELATED",
            "is_reply": False,
            "Summary": "SCTP",
        },
    ),
    (
        "ct-state-beyond-the-proto-enum-is-numeric",
        {"l4_proto": 17, "tcp_flags": 0, "ct_state": 200, "ifindex": 0},
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "l4": {"UDP": {"source_port": 41391, "destination_port": 80}},
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": 200,
            "is_reply": False,
            "Summary": "UDP",
        },
    ),
    (
        "unknown-l4-protocol-summarises-as-ip",
        {"l4_proto": 47, "tcp_flags": 0, "ifindex": 0},
        {
            **head("FORWARDED"),
            "ethernet": ETH_5_TO_ROUTER,
            "IP": IP_5_TO_7,
            "source": XWING_EP,
            "destination": DEATHSTAR_EP,
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": "NEW",
            "is_reply": False,
            "Summary": "IPv4",
        },
    ),
    (
        "non-ip-frame-keeps-datapath-identities",
        {
            "ip_version": 0,
            "l4_proto": 0,
            "tcp_flags": 0,
            "saddr": "",
            "daddr": "",
            "src_identity": 5,
            "dst_identity": 0,
            "ifindex": 0,
            "eth_dst": "ff:ff:ff:ff:ff:ff",
        },
        {
            **head("FORWARDED"),
            "ethernet": {"source": "02:00:0a:d5:00:05", "destination": "ff:ff:ff:ff:ff:ff"},
            "source": {"identity": 5},
            "Type": "L3_L4",
            "node_name": NODE,
            "event_type": {"type": 4, "sub_type": 5},
            "traffic_direction": "EGRESS",
            "trace_observation_point": "FROM_ENDPOINT",
            "trace_reason": "NEW",
            "is_reply": False,
            "Summary": "Ethernet",
        },
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_build(overrides: dict[str, Any], expected: dict[str, Any]) -> None:
    # through the bytes, as the agent does
    ev = FlowDecoder().decode(encode(make_event(**overrides)))
    resp = builder().build(ev, T1)
    assert resp == {"flow": expected, "node_name": NODE, "time": T1_TEXT}
    assert list(resp["flow"]) == list(expected), "keys out of declaration order"
    check_response(resp)


def test_reproduces_the_first_fixture_line_exactly(fixture_responses: list[dict[str, Any]]) -> None:
    resp = builder().build(make_event(), T1)
    resp["flow"]["uuid"] = fixture_responses[0]["flow"]["uuid"]
    assert orjson.dumps(resp) == orjson.dumps(fixture_responses[0])


class _NoResolver:
    """A resolver that knows nothing (the Protocol allows None everywhere)."""

    def by_ip(self, ip: str) -> EndpointInfo | None:
        return None

    def ifname(self, ifindex: int) -> str | None:
        return None

    def policies(self, rule_id: int) -> list[dict[str, Any]] | None:
        return None


@pytest.mark.parametrize(
    ("src_identity", "dst_identity", "source", "destination"),
    [
        (777, 0, {"identity": 777}, None),
        (0, 4, None, {"identity": 4}),
        (0, 0, None, None),
    ],
    ids=["source-only", "destination-only", "neither"],
)
def test_unresolved_addresses_fall_back_to_datapath_identity(
    src_identity: int, dst_identity: int, source: Any, destination: Any
) -> None:
    ev = make_event(
        type=VERDICT,
        sub_type=0,
        src_identity=src_identity,
        dst_identity=dst_identity,
        policy_dir=1,
        policy_rule_id=7,
    )
    flow = builder(_NoResolver()).build(ev, T1)["flow"]
    assert flow.get("source") == source
    assert flow.get("destination") == destination
    assert flow["interface"] == {"index": 41}
    assert "ingress_allowed_by" not in flow  # the resolver had no policy for rule 7
    check_response({"flow": flow})


def test_empty_node_name_is_omitted_like_protojson() -> None:
    resp = builder(node="").build(make_event(), T1)
    assert "node_name" not in resp
    assert "node_name" not in resp["flow"]
    assert list(resp) == ["flow", "time"]
    check_response(resp)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.1.0", "0.1.0"), ("v1.19.4", "1.19.4"), ("", "")],
    ids=["plain", "leading-v-stripped", "empty"],
)
def test_emitter_version(version: str, expected: str) -> None:
    b = FlowBuilder(NODE, world(), version, entropy=bytes)
    assert b.build(make_event(), T1)["flow"]["emitter"] == {"name": "Hubble", "version": expected}


def test_endpoint_fields_omit_empty_values() -> None:
    bare = EndpointInfo(id=0, identity=9, labels=())
    resolver = StaticResolver(ResolverSnapshot(endpoints={"10.213.0.5": bare}))
    flow = builder(resolver).build(make_event(), T1)["flow"]
    assert flow["source"] == {"identity": 9}
    assert flow["destination"] == WORLD_EP


def test_resolver_snapshot_replacement_is_seen_by_the_next_build() -> None:
    resolver = world()
    b = builder(resolver)
    assert b.build(make_event(), T1)["flow"]["source"]["pod_name"] == "xwing"
    renamed = EndpointInfo(id=12, identity=12346, namespace="other", pod_name="xwing-2")
    resolver.replace(ResolverSnapshot(endpoints={"10.213.0.5": renamed}))
    src = b.build(make_event(), T1)["flow"]["source"]
    assert src == {"ID": 12, "identity": 12346, "namespace": "other", "pod_name": "xwing-2"}


def test_uuids_are_random_v4_and_unique() -> None:
    b = FlowBuilder(NODE, world(), "0.1.0", uuid_batch=8)
    seen = set()
    for _ in range(50):  # several refills
        u = b.build(make_event(), T1)["flow"]["uuid"]
        parsed = uuid.UUID(u)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == u
        seen.add(u)
    assert len(seen) == 50


def test_uuid_layout_from_known_entropy() -> None:
    raw = bytes(range(16))
    b = FlowBuilder(NODE, world(), "0.1.0", entropy=lambda n: raw * (n // 16), uuid_batch=1)
    expected = str(uuid.UUID(bytes=raw, version=4))
    assert b.new_uuid() == expected == "00010203-0405-4607-8809-0a0b0c0d0e0f"


def test_bad_entropy_source_is_reported() -> None:
    b = FlowBuilder(NODE, world(), "0.1.0", entropy=lambda n: b"short")
    with pytest.raises(ValueError, match="entropy"):
        b.new_uuid()


@pytest.mark.parametrize(
    "wall_ns",
    [
        T1,
        T1 - 123_456_789,
        T1 - 123_456_789 + 500_000_000,
        T1 - 123_456_789 + 123_501_000,
        T1 + 1_000_000_000,
        0,
        -1,
    ],
    ids=["nanos", "whole-second", "millis", "micros", "next-second", "epoch", "before-epoch"],
)
def test_flow_time_matches_format_timestamp_and_response_time(wall_ns: int) -> None:
    b = builder()
    b.build(make_event(), T1)  # warm the seconds cache with another second
    resp = b.build(make_event(), wall_ns)
    assert resp["flow"]["time"] == resp["time"] == format_timestamp(wall_ns)
    check_response(resp)


def test_built_responses_serialise_with_orjson() -> None:
    b = builder()
    for _, overrides, expected in CASES:
        line = orjson.dumps(b.build(make_event(**overrides), T1))
        assert orjson.loads(line)["flow"]["Summary"] == expected["Summary"]


def test_enum_tables_match_the_generated_proto() -> None:
    from .protocheck import proto_available

    if not proto_available():
        pytest.skip("observer/api/v1 generated code not importable yet")
    from observer.api.v1.flow import flow_pb2
    from observer.parser.flow import TRACE_OBSERVATION_POINTS, TRACE_REASONS

    points = flow_pb2.TraceObservationPoint
    for datapath, name in enumerate(TRACE_OBSERVATION_POINTS):
        assert points.Value(name) == (101 if datapath == 0 else datapath), name
    reasons = flow_pb2.TraceReason
    for ct_state, name in enumerate(TRACE_REASONS[1:], start=1):
        assert reasons.Value(name) == ct_state, name


@settings(max_examples=100, deadline=None)
@given(flow_events(), st.integers(MIN_SECONDS * 10**9, MAX_SECONDS * 10**9 + 10**9 - 1))
def test_any_event_builds_a_valid_response(ev: FlowEvent, wall_ns: int) -> None:
    resp = builder().build(ev, wall_ns)
    check_response(resp)
    flow = resp["flow"]
    assert flow["verdict"] in ("FORWARDED", "DROPPED", "AUDIT")
    assert ("is_reply" in flow) == (flow["verdict"] != "DROPPED")
    orjson.dumps(resp)


@pytest.mark.parametrize(
    ("code", "desc"),
    [(133, "POLICY_DENIED"), (15, 15), (2**31 - 1, 2**31 - 1), (2**31, None), (2**32 - 1, None)],
    ids=["named", "unnamed", "int32-max", "beyond-int32", "u32-max"],
)
def test_drop_reason_desc_stays_within_the_int32_enum(code: int, desc: Any) -> None:
    ev = make_event(type=DROP, sub_type=code & 0xFF, drop_reason=code)
    resp = builder().build(ev, T1)
    assert resp["flow"]["drop_reason"] == code
    assert resp["flow"].get("drop_reason_desc") == desc
    check_response(resp)
