"""Parsing, conntrack and monitor aggregation of the datapath, through BPF_PROG_TEST_RUN.

Every frame goes through the real hb_from_endpoint / hb_to_endpoint programs; records
are read back from the real ring buffer. Under test run the skb's ifindex is the
loopback's (1), so both programs share one conntrack table, as on a real veth.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from observer.bpf import loader, structs
from observer.bpf.loader import AGG_MEDIUM, AGG_NONE

from . import packets as P
from .conftest import Datapath, open_datapath

SYN, ACK, FIN, RST, PSH = (
    structs.TCP_SYN,
    structs.TCP_ACK,
    structs.TCP_FIN,
    structs.TCP_RST,
    structs.TCP_PSH,
)
NEW_CONN, NEW_FLAGS, CLOSE = structs.REPORT_NEW_CONN, structs.REPORT_NEW_FLAGS, structs.REPORT_CLOSE
PERIODIC, EVERY = structs.REPORT_PERIODIC, structs.REPORT_EVERY_PACKET
LO_IFINDEX = 1

ADDRS = {4: ("10.1.0.1", "10.1.0.2"), 6: ("fd00::1", "fd00::2")}

# A TCP conversation: (direction, flags, payload bytes, expected record or None).
# "fwd" is client -> server, "rev" server -> client; expected dicts list the fields
# the record must have.
TCP_CONVERSATION: list[tuple[str, int, int, dict[str, int] | None]] = [
    (
        "fwd",
        SYN,
        0,
        {
            "report_reason": NEW_CONN,
            "tcp_flags": SYN,
            "ct_state": structs.CT_NEW,
            "is_reply": 0,
            "agg_packets": 1,
        },
    ),
    ("fwd", SYN, 0, None),  # retransmitted SYN: nothing new
    (
        "rev",
        SYN | ACK,
        0,
        {
            "report_reason": NEW_FLAGS,
            "is_reply": 1,
            "ct_state": structs.CT_REPLY,
            "tcp_flags": SYN | ACK,
            "agg_packets": 1,
        },
    ),
    (
        "fwd",
        ACK,
        0,
        {
            "report_reason": NEW_FLAGS,
            "is_reply": 0,
            "ct_state": structs.CT_ESTABLISHED,
            "agg_packets": 2,
        },
    ),  # the duplicate SYN and this ACK
    ("fwd", ACK, 0, None),
    ("fwd", ACK, 100, None),
    ("rev", ACK, 0, None),  # ACK was seen in the reply direction with the SYN-ACK
    ("fwd", PSH | ACK, 10, {"report_reason": NEW_FLAGS, "agg_packets": 3}),
    (
        "fwd",
        FIN | ACK,
        0,
        {"report_reason": NEW_FLAGS | CLOSE, "tcp_flags": FIN | ACK, "agg_packets": 1},
    ),
    ("rev", FIN | ACK, 0, {"report_reason": NEW_FLAGS | CLOSE, "is_reply": 1, "agg_packets": 2}),
    ("fwd", ACK, 0, None),
    (
        "fwd",
        SYN,
        0,
        {"report_reason": NEW_CONN, "ct_state": structs.CT_NEW},
    ),  # tuple reused after close
]


def _tcp(version: int, direction: str, flags: int, payload: int = 0, sport: int = 40000) -> bytes:
    a, b = ADDRS[version]
    if direction == "fwd":
        return P.tcp_frame(a, b, sport, 80, flags, b"x" * payload)
    return P.tcp_frame(b, a, 80, sport, flags, b"x" * payload)


def _subset(rec: dict[str, Any], want: dict[str, int]) -> dict[str, Any]:
    return {k: rec[k] for k in want}


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_tcp_conversation_is_aggregated(datapath: Datapath, version: int) -> None:
    for step, (direction, flags, payload, want) in enumerate(TCP_CONVERSATION):
        frame = _tcp(version, direction, flags, payload)
        rec = datapath.one(frame)
        if want is None:
            assert rec is None, f"step {step}: unexpected record {rec}"
            continue
        assert rec is not None, f"step {step}: no record"
        assert _subset(rec, want) == want, f"step {step}"
        a, b = ADDRS[version]
        src, dst = (a, b) if direction == "fwd" else (b, a)
        assert (P.addr(rec["saddr"], version), P.addr(rec["daddr"], version)) == (src, dst)
        assert (rec["sport"], rec["dport"]) == ((40000, 80) if direction == "fwd" else (80, 40000))


def test_first_record_fills_every_field(datapath: Datapath) -> None:
    loader.set_endpoint(datapath.obj, LO_IFINDEX, ep_id=42, identity=1234)
    frame = P.tcp_frame("10.1.0.1", "10.1.0.2", 1234, 443, SYN)
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    rec = datapath.one(frame)
    after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert rec is not None
    assert before <= rec.pop("ts_ns") <= after
    assert rec.pop("cpu") in range(64)
    assert rec == {
        "type": structs.EVENT_TRACE,
        "sub_type": structs.OBS_FROM_ENDPOINT,
        "len": structs.FLOW_EVENT_SIZE,
        "ifindex": LO_IFINDEX,
        "ep_id": 42,
        "pkt_len": len(frame),
        "drop_reason": 0,
        "obs_point": structs.OBS_FROM_ENDPOINT,
        "ip_version": 4,
        "l4_proto": P.IPPROTO_TCP,
        "tcp_flags": SYN,
        "ct_state": structs.CT_NEW,
        "is_reply": 0,
        "icmp_type": 0,
        "icmp_code": 0,
        "sport": 1234,
        "dport": 443,
        "saddr": bytes([10, 1, 0, 1]) + bytes(12),
        "daddr": bytes([10, 1, 0, 2]) + bytes(12),
        "eth_src": P.MAC_A,
        "eth_dst": P.MAC_B,
        "src_identity": 1234,
        "dst_identity": 0,
        "policy_match_type": 0,
        "policy_dir": 0,
        "audited": 0,
        "report_reason": NEW_CONN,
        "policy_rule_id": 0,
        "agg_packets": 1,
        "_pad0": 0,
        "agg_bytes": len(frame),
    }


def test_to_endpoint_shares_conntrack_and_marks_its_side(datapath: Datapath) -> None:
    loader.set_endpoint(datapath.obj, LO_IFINDEX, ep_id=7, identity=99)
    syn = datapath.one(
        P.tcp_frame("10.1.0.1", "10.1.0.2", 5555, 80, SYN), loader.PROG_FROM_ENDPOINT
    )
    synack = datapath.one(
        P.tcp_frame("10.1.0.2", "10.1.0.1", 80, 5555, SYN | ACK), loader.PROG_TO_ENDPOINT
    )
    assert syn is not None and synack is not None
    assert (syn["obs_point"], syn["sub_type"], syn["src_identity"], syn["dst_identity"]) == (
        5,
        5,
        99,
        0,
    )
    assert (
        synack["obs_point"],
        synack["sub_type"],
        synack["src_identity"],
        synack["dst_identity"],
    ) == (0, 0, 0, 99)
    assert (synack["is_reply"], synack["ct_state"], synack["ep_id"]) == (1, structs.CT_REPLY, 7)
    assert loader.delete_endpoint(datapath.obj, LO_IFINDEX) is True
    assert loader.delete_endpoint(datapath.obj, LO_IFINDEX) is False


def test_rst_closes_and_a_new_syn_reopens(datapath: Datapath) -> None:
    assert datapath.one(_tcp(4, "fwd", SYN))["report_reason"] == NEW_CONN  # type: ignore[index]
    rst = datapath.one(_tcp(4, "rev", RST | ACK))
    assert rst is not None and rst["report_reason"] == NEW_FLAGS | CLOSE and rst["is_reply"] == 1
    assert datapath.one(_tcp(4, "rev", RST | ACK)) is None
    again = datapath.one(_tcp(4, "fwd", SYN))
    assert again is not None and again["report_reason"] == NEW_CONN


def test_aggregation_none_reports_every_packet(datapath: Datapath) -> None:
    datapath.configure(aggregation_level=AGG_NONE)
    seq = [("fwd", SYN), ("fwd", SYN), ("rev", SYN | ACK), ("fwd", ACK), ("fwd", ACK), ("fwd", ACK)]
    recs = [datapath.one(_tcp(4, d, f)) for d, f in seq]
    assert all(r is not None for r in recs)
    assert [r["report_reason"] & EVERY for r in recs] == [EVERY] * len(seq)  # type: ignore[index]
    assert [r["ct_state"] for r in recs] == [  # type: ignore[index]
        structs.CT_NEW,
        structs.CT_ESTABLISHED,
        structs.CT_REPLY,
        structs.CT_ESTABLISHED,
        structs.CT_ESTABLISHED,
        structs.CT_ESTABLISHED,
    ]
    assert [r["agg_packets"] for r in recs] == [1] * len(seq)  # type: ignore[index]
    # back to medium: the connection is known, nothing new
    datapath.configure(aggregation_level=AGG_MEDIUM)
    assert datapath.one(_tcp(4, "fwd", ACK)) is None


def test_defaults_apply_until_configured(datapath: Datapath) -> None:
    assert loader.read_config(datapath.obj) is None
    assert datapath.one(_tcp(4, "fwd", SYN)) is not None
    assert datapath.one(_tcp(4, "fwd", SYN)) is None  # medium aggregation by default
    datapath.configure(aggregation_level=AGG_NONE, report_interval_ns=10**9, wakeup_bytes=512)
    assert loader.read_config(datapath.obj) == loader.DatapathConfig(AGG_NONE, 10**9, 512)


def test_periodic_report_carries_counts_since_last_report(datapath: Datapath) -> None:
    datapath.configure(report_interval_ns=50_000_000)  # 50 ms
    first = P.udp_frame("10.1.0.1", "10.1.0.2", 5000, 53, b"a" * 10)
    later = P.udp_frame("10.1.0.1", "10.1.0.2", 5000, 53, b"b" * 20)
    assert datapath.one(first)["report_reason"] == NEW_CONN  # type: ignore[index]
    assert datapath.one(later) is None
    assert datapath.one(later) is None
    time.sleep(0.06)
    rec = datapath.one(later)
    assert rec is not None
    assert (rec["report_reason"], rec["agg_packets"], rec["agg_bytes"]) == (
        PERIODIC,
        3,
        3 * len(later),
    )
    assert datapath.one(later) is None


def test_udp_reply_direction_reports_its_first_packet(datapath: Datapath) -> None:
    assert datapath.one(P.udp_frame("10.1.0.1", "10.1.0.2", 5001, 53)) is not None
    reply = datapath.one(P.udp_frame("10.1.0.2", "10.1.0.1", 53, 5001))
    assert reply is not None
    assert (reply["is_reply"], reply["ct_state"], reply["report_reason"]) == (
        1,
        structs.CT_REPLY,
        PERIODIC,
    )
    assert datapath.one(P.udp_frame("10.1.0.2", "10.1.0.1", 53, 5001)) is None


@pytest.mark.parametrize("version", [4, 6], ids=["icmpv4", "icmpv6"])
def test_icmp_echo_pairs_by_id(datapath: Datapath, version: int) -> None:
    a, b = ADDRS[version]
    req, rep = (8, 0) if version == 4 else (128, 129)
    r1 = datapath.one(P.icmp_frame(a, b, req, ident=77, seq=1))
    assert r1 is not None
    assert (r1["ct_state"], r1["sport"], r1["dport"], r1["icmp_type"]) == (
        structs.CT_NEW,
        77,
        0,
        req,
    )
    r2 = datapath.one(P.icmp_frame(b, a, rep, ident=77, seq=1))
    assert r2 is not None
    assert (r2["ct_state"], r2["is_reply"], r2["sport"], r2["icmp_type"]) == (
        structs.CT_REPLY,
        1,
        77,
        rep,
    )
    assert datapath.one(P.icmp_frame(a, b, req, ident=77, seq=2)) is None
    assert datapath.one(P.icmp_frame(b, a, rep, ident=77, seq=2)) is None
    # the other side pinging with the same id is another conversation
    r3 = datapath.one(P.icmp_frame(b, a, req, ident=77, seq=1))
    assert r3 is not None and (r3["ct_state"], r3["is_reply"]) == (structs.CT_NEW, 0)


@pytest.mark.parametrize(
    ("frame", "ct_state"),
    [
        (P.icmp_frame("10.1.0.1", "10.1.0.2", 3, 3), structs.CT_RELATED),  # port unreachable
        (P.icmp_frame("10.1.0.1", "10.1.0.2", 11, 0), structs.CT_RELATED),  # time exceeded
        (P.icmp_frame("fd00::1", "fd00::2", 1, 4), structs.CT_RELATED),  # v6 port unreachable
        (P.icmp_frame("fd00::1", "fd00::2", 135, 0), structs.CT_NEW),  # neighbour solicitation
    ],
    ids=["v4-unreach", "v4-time-exceeded", "v6-unreach", "v6-ndp"],
)
def test_other_icmp_is_reported_per_packet(datapath: Datapath, frame: bytes, ct_state: int) -> None:
    for _ in range(3):
        rec = datapath.one(frame)
        assert rec is not None
        assert (rec["ct_state"], rec["report_reason"], rec["sport"]) == (ct_state, EVERY, 0)


# (id, frame, expected fields) under aggregation none, for the parser's field extraction.
PARSE_CASES: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "ipv4-tcp",
        P.tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, SYN),
        {"ip_version": 4, "l4_proto": 6, "sport": 1, "dport": 2, "tcp_flags": SYN},
    ),
    (
        "ipv4-options",
        P.eth(P.ETH_P_IP, P.ipv4("10.0.0.1", "10.0.0.2", 6, P.tcp(3, 4, ACK), options=b"\x01" * 8)),
        {"ip_version": 4, "sport": 3, "dport": 4, "tcp_flags": ACK},
    ),
    (
        "vlan-ipv4-udp",
        P.eth(P.ETH_P_IP, P.ipv4("10.0.0.1", "10.0.0.2", 17, P.udp(53, 5353)), vlan=100),
        {"ip_version": 4, "l4_proto": 17, "sport": 53, "dport": 5353},
    ),
    (
        "ipv4-sctp",
        P.eth(P.ETH_P_IP, P.ipv4("10.0.0.1", "10.0.0.2", 132, P.sctp(36412, 38412))),
        {"l4_proto": 132, "sport": 36412, "dport": 38412},
    ),
    (
        "ipv4-icmp-echo",
        P.icmp_frame("10.0.0.1", "10.0.0.2", 8, ident=4242),
        {"l4_proto": 1, "icmp_type": 8, "sport": 4242, "dport": 0},
    ),
    (
        "ipv4-gre",
        P.eth(P.ETH_P_IP, P.ipv4("10.0.0.1", "10.0.0.2", 47, b"\0" * 8)),
        {"ip_version": 4, "l4_proto": 47, "sport": 0, "dport": 0},
    ),
    (
        "ipv6-udp",
        P.udp_frame("fd00::1", "fd00::2", 1000, 2000),
        {"ip_version": 6, "l4_proto": 17, "sport": 1000, "dport": 2000},
    ),
    (
        "ipv6-hopopts",
        P.udp_frame("fd00::1", "fd00::2", 1001, 2001, ext=[P.IPPROTO_HOPOPTS]),
        {"ip_version": 6, "l4_proto": 17, "sport": 1001, "dport": 2001},
    ),
    (
        "ipv6-ext-chain",
        P.tcp_frame(
            "fd00::1",
            "fd00::2",
            1002,
            2002,
            SYN,
            ext=[
                P.IPPROTO_HOPOPTS,
                P.IPPROTO_DSTOPTS,
                P.IPPROTO_ROUTING,
                P.IPPROTO_AH,
                P.IPPROTO_DSTOPTS,
            ],
        ),
        {"ip_version": 6, "l4_proto": 6, "sport": 1002, "dport": 2002, "tcp_flags": SYN},
    ),
    (
        "ipv6-first-fragment",
        P.udp_frame("fd00::1", "fd00::2", 1003, 2003, ext=[P.IPPROTO_FRAGMENT]),
        {"l4_proto": 17, "sport": 1003, "dport": 2003, "ct_state": structs.CT_NEW},
    ),
    (
        "ipv6-later-fragment",
        P.udp_frame("fd00::1", "fd00::2", 1004, 2004, ext=[P.IPPROTO_FRAGMENT], frag_offset=100),
        {"l4_proto": 17, "sport": 0, "dport": 0, "ct_state": structs.CT_UNKNOWN},
    ),
    (
        "ipv4-later-fragment",
        P.udp_frame("10.0.0.1", "10.0.0.2", 1005, 2005, frag_offset=100),
        {"l4_proto": 17, "sport": 0, "dport": 0, "ct_state": structs.CT_UNKNOWN},
    ),
    (
        "ipv6-icmp-echo",
        P.icmp_frame("fd00::1", "fd00::2", 128, ident=9),
        {"ip_version": 6, "l4_proto": 58, "icmp_type": 128, "sport": 9},
    ),
    (
        "arp",
        P.eth(P.ETH_P_ARP, b"\0" * 28),
        {"ip_version": 0, "l4_proto": 0, "ct_state": structs.CT_UNKNOWN, "sport": 0},
    ),
]


@pytest.mark.parametrize(
    ("frame", "want"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parser_fields(datapath: Datapath, frame: bytes, want: dict[str, Any]) -> None:
    datapath.configure(aggregation_level=AGG_NONE)
    rec = datapath.one(frame)
    assert rec is not None
    assert _subset(rec, want) == want
    assert sum(loader.read_parse_errors(datapath.obj).values()) == 0


@pytest.mark.parametrize(
    "frame",
    [P.udp_frame("10.0.0.1", "10.0.0.2", 1, 2, frag_offset=10), P.eth(P.ETH_P_ARP, b"\0" * 28)],
    ids=["later-fragment", "arp"],
)
def test_untracked_packets_are_not_reported_when_aggregating(
    datapath: Datapath, frame: bytes
) -> None:
    assert datapath.one(frame) is None


def _ipv6_ext_too_long() -> bytes:
    return P.udp_frame("fd00::1", "fd00::2", 1, 2, ext=[P.IPPROTO_DSTOPTS] * 9)


# (id, frame, parse-error counter that must count it). BPF_PROG_TEST_RUN itself refuses
# frames that end inside the IPv4/IPv6 fixed header, so those are sent over a real veth
# in test_tc_attach.py instead.
MALFORMED: list[tuple[str, bytes, str]] = [
    ("vlan-truncated", P.MAC_B + P.MAC_A + b"\x81\x00", "vlan"),
    (
        "ipv4-ihl-4",
        P.eth(P.ETH_P_IP, bytes([0x44]) + P.ipv4("10.0.0.1", "10.0.0.2", 6, P.tcp(1, 2, SYN))[1:]),
        "ipv4",
    ),
    (
        "ipv4-version-6",
        P.eth(P.ETH_P_IP, bytes([0x65]) + P.ipv4("10.0.0.1", "10.0.0.2", 6, P.tcp(1, 2, SYN))[1:]),
        "ipv4",
    ),
    (
        "ipv4-ihl-past-end",
        P.eth(P.ETH_P_IP, bytes([0x4F]) + P.ipv4("10.0.0.1", "10.0.0.2", 6, P.tcp(1, 2, SYN))[1:]),
        "tcp",
    ),
    ("tcp-truncated", P.tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, SYN)[: 14 + 20 + 13], "tcp"),
    (
        "tcp-doff-3",
        P.eth(P.ETH_P_IP, P.ipv4("10.0.0.1", "10.0.0.2", 6, P.tcp(1, 2, SYN, data_offset=3))),
        "tcp",
    ),
    ("udp-truncated", P.udp_frame("10.0.0.1", "10.0.0.2", 1, 2)[: 14 + 20 + 7], "udp"),
    ("icmp-truncated", P.icmp_frame("10.0.0.1", "10.0.0.2", 8)[: 14 + 20 + 3], "icmp"),
    ("icmp-echo-truncated", P.icmp_frame("10.0.0.1", "10.0.0.2", 8)[: 14 + 20 + 6], "icmp"),
    (
        "sctp-truncated",
        P.eth(P.ETH_P_IP, P.ipv4("10.0.0.1", "10.0.0.2", 132, P.sctp(1, 2)[:10])),
        "sctp",
    ),
    (
        "ipv6-version-4",
        P.eth(P.ETH_P_IPV6, bytes([0x40]) + P.ipv6("fd00::1", "fd00::2", 17, P.udp(1, 2))[1:]),
        "ipv6",
    ),
    (
        "ipv6-ext-truncated",
        P.udp_frame("fd00::1", "fd00::2", 1, 2, ext=[P.IPPROTO_HOPOPTS])[: 14 + 40 + 1],
        "ipv6_ext",
    ),
    (
        "ipv6-ext-past-end",
        P.eth(
            P.ETH_P_IPV6,
            P.ipv6(
                "fd00::1", "fd00::2", P.IPPROTO_DSTOPTS, bytes([P.IPPROTO_DSTOPTS, 200]) + b"\0" * 6
            ),
        ),
        "ipv6_ext",
    ),
    ("ipv6-too-many-ext", _ipv6_ext_too_long(), "ipv6_ext"),
    ("icmpv6-echo-truncated", P.icmp_frame("fd00::1", "fd00::2", 128)[: 14 + 40 + 5], "icmpv6"),
    (
        "udp6-truncated",
        P.udp_frame("fd00::1", "fd00::2", 1, 2, ext=[P.IPPROTO_ROUTING])[: 14 + 40 + 8 + 4],
        "udp",
    ),
]


@pytest.mark.parametrize(
    ("frame", "counter"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
@pytest.mark.parametrize(
    "prog", [loader.PROG_FROM_ENDPOINT, loader.PROG_TO_ENDPOINT], ids=["from", "to"]
)
def test_malformed_packets_pass_and_are_counted(
    datapath: Datapath, prog: str, frame: bytes, counter: str
) -> None:
    datapath.configure(aggregation_level=AGG_NONE)
    assert datapath.run(frame, prog) == []  # passed (TC_ACT_OK checked by run), no record
    assert datapath.run(frame, prog) == []
    errors = loader.read_parse_errors(datapath.obj)
    assert errors[counter] == 2
    assert sum(errors.values()) == 2


def test_ring_overflow_counts_every_lost_record(bpf_build_dir: Path, pin_root: Path) -> None:
    dp = open_datapath(bpf_build_dir, pin_root, ring_bytes=4096)
    try:
        dp.configure(aggregation_level=AGG_NONE)
        frame = P.udp_frame("10.1.0.1", "10.1.0.2", 9, 9)
        for _ in range(100):
            assert loader.prog_test_run(dp.fds[loader.PROG_FROM_ENDPOINT], frame).retval == 0
        # the kernel keeps unread data strictly below the ring size: 31 records of 128 bytes
        capacity = (4096 - 1) // (structs.FLOW_EVENT_SIZE + 8)
        lost = loader.read_lost(dp.obj)
        assert lost.total == 100 - capacity
        assert sum(lost.per_cpu) == lost.total
        assert len(dp.rb.drain()) == capacity
        assert dp.run(frame) != []  # room again
    finally:
        dp.close()


def test_pinned_maps_survive_a_restart(
    bpf_build_dir: Path, pin_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dp = open_datapath(bpf_build_dir, pin_root)
    try:
        dp.configure(report_interval_ns=3 * 10**9)
        loader.set_endpoint(dp.obj, LO_IFINDEX, ep_id=5)
        assert dp.one(_tcp(4, "fwd", SYN)) is not None
    finally:
        dp.close()
    assert sorted(p.name for p in pin_root.iterdir()) == sorted(
        [
            "hb_events",
            "hb_lost",
            "hb_parse_errors",
            "hb_config",
            "hb_endpoints",
            "hb_ct",
            "hb_policy_state",
            "hb_ep_policy",
            "hb_policy",
            "hb_ipcache",
        ]
    )
    dp = open_datapath(bpf_build_dir, pin_root)
    try:
        assert loader.read_config(dp.obj) == loader.DatapathConfig(
            AGG_MEDIUM, 3 * 10**9, (1 << 20) // 4
        )
        assert dp.one(_tcp(4, "fwd", SYN)) is None  # conntrack entry reused
        rec = dp.one(_tcp(4, "rev", SYN | ACK))
        assert rec is not None and rec["ep_id"] == 5 and rec["is_reply"] == 1
    finally:
        dp.close()
    # a different ring size cannot reuse the pinned ring: it is replaced, the rest kept
    with caplog.at_level(logging.WARNING, logger="observer.bpf.loader"):
        dp = open_datapath(bpf_build_dir, pin_root, ring_bytes=1 << 16)
    assert [r.getMessage().split(" does not match")[0] for r in caplog.records] == [
        f"pinned map {pin_root}/hb_events"
    ]
    try:
        assert dp.obj.map(loader.RING_MAP).max_entries == 1 << 16
        assert dp.one(_tcp(4, "fwd", ACK)) is not None  # ACK new in fwd: the entry is still there
        assert dp.one(_tcp(4, "fwd", SYN)) is None
    finally:
        dp.close()


def test_without_pin_root_nothing_is_pinned(bpf_build_dir: Path) -> None:
    """libbpf's default pin root (/sys/fs/bpf) is not used when we give none."""
    dp = open_datapath(bpf_build_dir, None)
    try:
        assert dp.one(_tcp(4, "fwd", SYN)) is not None
        assert [p for p in Path("/sys/fs/bpf").iterdir() if p.name.startswith("hb_")] == []
    finally:
        dp.close()
