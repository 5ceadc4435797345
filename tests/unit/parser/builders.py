"""Record builders: the inverse of observer.parser.events (FlowEvent -> ring-buffer bytes)."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from hypothesis import strategies as st

from observer.bpf import structs
from observer.parser.events import FlowEvent

SIZE = structs.FLOW_EVENT_SIZE


def addr_bytes(ip_version: int, text: str) -> bytes:
    """Textual address -> the 16-byte field (IPv4 in the first 4 bytes)."""
    if ip_version == 0:
        assert text == "", "non-IP events carry no address"
        return bytes(16)
    raw = ipaddress.ip_address(text).packed
    assert len(raw) == (4 if ip_version == 4 else 16), (ip_version, text)
    return raw.ljust(16, b"\0")


def mac_bytes(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", ""))
    assert len(raw) == 6, text
    return raw


def encode(ev: FlowEvent, *, extra: bytes = b"") -> bytes:
    """Pack ``ev`` as ``struct hb_flow_event``; ``extra`` is appended (a newer, longer ABI)."""
    return (
        structs.FLOW_EVENT.pack(
            ev.type,
            ev.sub_type,
            ev.length,
            ev.cpu,
            ev.ts_ns,
            ev.ifindex,
            ev.ep_id,
            ev.pkt_len,
            ev.drop_reason,
            ev.obs_point,
            ev.ip_version,
            ev.l4_proto,
            ev.tcp_flags,
            ev.ct_state,
            int(ev.is_reply),
            ev.icmp_type,
            ev.icmp_code,
            ev.sport,
            ev.dport,
            addr_bytes(ev.ip_version, ev.saddr),
            addr_bytes(ev.ip_version, ev.daddr),
            mac_bytes(ev.eth_src),
            mac_bytes(ev.eth_dst),
            ev.src_identity,
            ev.dst_identity,
            ev.policy_match_type,
            ev.policy_dir,
            int(ev.audited),
            ev.report_reason,
            ev.policy_rule_id,
            ev.agg_packets,
            0,
            ev.agg_bytes,
        )
        + extra
    )


_DEFAULTS: dict[str, Any] = {
    "type": structs.EVENT_TRACE,
    "sub_type": structs.OBS_FROM_ENDPOINT,
    "length": SIZE,
    "cpu": 1,
    "ts_ns": 123_456_789_000,
    "ifindex": 41,
    "ep_id": 12,
    "pkt_len": 74,
    "drop_reason": 0,
    "obs_point": structs.OBS_FROM_ENDPOINT,
    "ip_version": 4,
    "l4_proto": 6,
    "tcp_flags": structs.TCP_SYN,
    "ct_state": structs.CT_NEW,
    "is_reply": False,
    "icmp_type": 0,
    "icmp_code": 0,
    "sport": 41391,
    "dport": 80,
    "saddr": "10.213.0.5",
    "daddr": "10.213.0.7",
    "eth_src": "02:00:0a:d5:00:05",
    "eth_dst": "ee:ee:ee:ee:ee:ee",
    "src_identity": 0,
    "dst_identity": 0,
    "policy_match_type": 0,
    "policy_dir": 0,
    "audited": False,
    "report_reason": structs.REPORT_NEW_CONN,
    "policy_rule_id": 0,
    "agg_packets": 1,
    "agg_bytes": 74,
}


def make_event(**overrides: Any) -> FlowEvent:
    """A TCP SYN from-endpoint trace 10.213.0.5:41391 -> 10.213.0.7:80, with overrides.

    For a trace, ``sub_type`` follows ``obs_point`` unless given.
    """
    fields = dict(_DEFAULTS)
    if "obs_point" in overrides and "sub_type" not in overrides:
        fields["sub_type"] = overrides["obs_point"]
    fields.update(overrides)
    return FlowEvent(**fields)


def replace(ev: FlowEvent, **changes: Any) -> FlowEvent:
    return dataclasses.replace(ev, **changes)


_u8 = st.integers(0, 0xFF)
_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_mac = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))


@st.composite
def flow_events(draw: st.DrawFn) -> FlowEvent:
    """Hypothesis strategy: any FlowEvent the decoder can produce."""
    ip_version = draw(st.sampled_from([0, 4, 6]))
    if ip_version == 4:
        addr = st.ip_addresses(v=4).map(str)
    elif ip_version == 6:
        addr = st.ip_addresses(v=6).map(lambda a: a.compressed)
    else:
        addr = st.just("")
    etype = draw(st.sampled_from(sorted([1, 4, 5])))
    return make_event(
        type=etype,
        sub_type=draw(_u8),
        cpu=draw(_u32),
        ts_ns=draw(st.integers(0, 2**64 - 1)),
        ifindex=draw(_u32),
        ep_id=draw(_u32),
        drop_reason=draw(_u32),
        obs_point=draw(_u8),
        ip_version=ip_version,
        l4_proto=draw(_u8) if ip_version else 0,
        tcp_flags=draw(_u8),
        ct_state=draw(_u8),
        is_reply=draw(st.booleans()),
        icmp_type=draw(_u8),
        icmp_code=draw(_u8),
        sport=draw(_u16),
        dport=draw(_u16),
        saddr=draw(addr),
        daddr=draw(addr),
        eth_src=draw(_mac),
        eth_dst=draw(_mac),
        src_identity=draw(_u32),
        dst_identity=draw(_u32),
        policy_match_type=draw(_u8),
        policy_dir=draw(st.integers(0, 2)) if etype != structs.EVENT_TRACE else draw(_u8),
        audited=draw(st.booleans()),
        report_reason=draw(_u8),
        policy_rule_id=draw(_u32),
        agg_packets=draw(_u32),
        agg_bytes=draw(st.integers(0, 2**64 - 1)),
    )
