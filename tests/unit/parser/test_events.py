"""Decoding ring-buffer records into FlowEvent: round trips, rejections, and fuzzing."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.bpf import structs
from observer.errors import DecodeError
from observer.parser.events import FlowDecoder, FlowEvent, decode_flow_event, ipv6_text

from .builders import SIZE, encode, flow_events, make_event

ROUND_TRIP_CASES: list[tuple[str, dict[str, Any]]] = [
    ("tcp-syn-v4", {}),
    (
        "tcp-reply-v6",
        {
            "ip_version": 6,
            "saddr": "fd00:10:213::7",
            "daddr": "2001:db8:0:1:1:1:1:1",
            "is_reply": True,
            "tcp_flags": 0xFF,
        },
    ),
    ("udp-to-endpoint", {"l4_proto": 17, "obs_point": 0, "sport": 65535, "dport": 1}),
    ("icmpv4", {"l4_proto": 1, "icmp_type": 3, "icmp_code": 13}),
    ("icmpv6", {"ip_version": 6, "saddr": "::1", "daddr": "fe80::1", "l4_proto": 58}),
    ("drop", {"type": structs.EVENT_DROP, "sub_type": 181, "drop_reason": 181, "policy_dir": 2}),
    (
        "verdict-audited",
        {"type": structs.EVENT_POLICY_VERDICT, "sub_type": 0, "audited": True, "policy_dir": 1},
    ),
    ("non-ip", {"ip_version": 0, "l4_proto": 0, "saddr": "", "daddr": ""}),
    (
        "max-values",
        {
            "cpu": 2**32 - 1,
            "ts_ns": 2**64 - 1,
            "ifindex": 2**32 - 1,
            "pkt_len": 2**32 - 1,
            "src_identity": 2**32 - 1,
            "policy_rule_id": 2**32 - 1,
            "agg_bytes": 2**64 - 1,
            "report_reason": 0xFF,
        },
    ),
]


@pytest.mark.parametrize(
    "overrides", [c[1] for c in ROUND_TRIP_CASES], ids=[c[0] for c in ROUND_TRIP_CASES]
)
def test_round_trip(overrides: dict[str, Any]) -> None:
    ev = make_event(**overrides)
    raw = encode(ev)
    assert len(raw) == SIZE
    assert decode_flow_event(raw) == ev
    assert FlowDecoder().decode(raw) == ev


def test_decoded_event_is_a_real_frozen_flow_event() -> None:
    ev = decode_flow_event(encode(make_event()))
    assert type(ev) is FlowEvent
    assert dataclasses.is_dataclass(ev)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.sport = 1  # type: ignore[misc]
    assert hash(ev) == hash(make_event())
    assert dataclasses.replace(ev, sport=1).sport == 1
    assert not hasattr(ev, "__dict__")


@pytest.mark.parametrize(
    "buffer_type",
    [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b))],
    ids=["bytes", "bytearray", "memoryview", "memoryview-of-bytearray"],
)
def test_buffer_kinds(buffer_type: Any) -> None:
    ev = make_event()
    assert decode_flow_event(buffer_type(encode(ev))) == ev


@pytest.mark.parametrize("extra", [8, 64, 1000], ids=lambda n: f"+{n}")
def test_longer_records_are_accepted(extra: int) -> None:
    ev = make_event(length=SIZE + extra)
    raw = encode(ev, extra=b"\xab" * extra)
    assert decode_flow_event(raw) == ev


def test_record_longer_than_its_header_length_is_accepted() -> None:
    # ring-buffer samples are 8-byte aligned; trailing bytes beyond hdr.len are padding
    ev = make_event()
    assert decode_flow_event(encode(ev, extra=bytes(8))) == ev


@pytest.mark.parametrize("length", [0, 1, 15, 16, 119], ids=lambda n: f"{n}B")
def test_short_buffers_are_truncated(length: int) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        decode_flow_event(encode(make_event())[:length])


@pytest.mark.parametrize(
    ("header_len", "extra"),
    [(0, 0), (16, 0), (119, 0), (121, 0), (200, 40)],
    ids=["zero", "header-only", "one-short", "claims-one-more", "claims-more-than-given"],
)
def test_header_length_must_cover_the_struct_and_fit_the_buffer(
    header_len: int, extra: int
) -> None:
    raw = encode(make_event(length=header_len), extra=bytes(extra))
    with pytest.raises(DecodeError, match="truncated"):
        decode_flow_event(raw)


@pytest.mark.parametrize("etype", [0, 2, 3, 6, 7, 129, 255])
def test_unknown_types_are_rejected(etype: int) -> None:
    with pytest.raises(DecodeError, match=f"unsupported event type {etype}"):
        decode_flow_event(encode(make_event(type=etype)))


@pytest.mark.parametrize("ip_version", [1, 2, 5, 7, 255])
def test_bad_ip_version_is_rejected(ip_version: int) -> None:
    raw = bytearray(encode(make_event()))
    raw[33] = ip_version  # offset of ip_version
    with pytest.raises(DecodeError, match=f"bad ip_version {ip_version}"):
        decode_flow_event(bytes(raw))


def test_transport_without_ip_is_rejected() -> None:
    raw = bytearray(encode(make_event(ip_version=0, l4_proto=0, saddr="", daddr="")))
    raw[34] = 6  # l4_proto = TCP
    with pytest.raises(DecodeError, match="non-IP"):
        decode_flow_event(bytes(raw))


@pytest.mark.parametrize("etype", [structs.EVENT_DROP, structs.EVENT_POLICY_VERDICT])
def test_bad_policy_direction_is_rejected(etype: int) -> None:
    with pytest.raises(DecodeError, match="policy_dir"):
        decode_flow_event(encode(make_event(type=etype, sub_type=0, policy_dir=3)))


@pytest.mark.parametrize("value", [None, 42, "abc", [1, 2]], ids=["none", "int", "str", "list"])
def test_non_buffers_raise_decode_error(value: Any) -> None:
    with pytest.raises(DecodeError):
        decode_flow_event(value)


@pytest.mark.parametrize(
    "text",
    [
        "::",
        "::1",
        "::2",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "::ffff:0:1.2.3.4",
        "64:ff9b::1.2.3.4",
        "fe80::1",
        "2001:db8::1:0:0:1",
        "2001:db8:0:1:1:1:1:1",
        "1:0:1:0:1:0:1:0",
        "fd00:10:213::5",
        "ff02::1:ff00:1",
    ],
)
def test_ipv6_text_is_canonical(text: str) -> None:
    addr = ipaddress.IPv6Address(text)
    assert ipv6_text(addr.packed) == addr.compressed
    ev = make_event(ip_version=6, saddr=addr.compressed, daddr="::1")
    assert decode_flow_event(encode(ev)).saddr == addr.compressed


def test_decoder_caches_stay_correct_beyond_their_bound() -> None:
    dec = FlowDecoder()
    for i in range(9000):  # more distinct addresses than the cache holds
        a = str(ipaddress.IPv4Address(0x0A000000 + i))
        ev = make_event(saddr=a)
        assert dec.decode(encode(ev)).saddr == a


# --- fuzzing -------------------------------------------------------------------------------


def _decode_or_decode_error(raw: bytes) -> FlowEvent | None:
    try:
        return FlowDecoder().decode(raw)
    except DecodeError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_only_raise_decode_error(raw: bytes) -> None:
    _decode_or_decode_error(raw)


_VALID = [encode(make_event(**overrides)) for _, overrides in ROUND_TRIP_CASES]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, SIZE - 1), st.integers(0, 255)), max_size=12),
    st.integers(0, SIZE + 16),
)
def test_mutated_records_only_raise_decode_error(
    raw: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    buf = bytearray(raw)
    for pos, value in edits:
        buf[pos] = value
    ev = _decode_or_decode_error(bytes(buf[:cut]))
    if ev is not None:
        # whatever decodes re-encodes to the same meaningful bytes
        assert ev.ip_version in (0, 4, 6)
        assert ev.type in (structs.EVENT_DROP, structs.EVENT_TRACE, structs.EVENT_POLICY_VERDICT)
        assert decode_flow_event(encode(ev, extra=bytes(max(0, ev.length - SIZE)))) == ev


@settings(max_examples=100, deadline=None)
@given(flow_events())
def test_any_valid_event_round_trips(ev: FlowEvent) -> None:
    assert decode_flow_event(encode(ev)) == ev


def test_struct_layout_matches_the_mirror() -> None:
    # the builder and decoder agree with the documented offsets of a few fields
    raw = encode(make_event(ifindex=0x01020304, sport=0xA1B2, src_identity=0xDEADBEEF))
    assert struct.unpack_from("<I", raw, 16)[0] == 0x01020304
    assert struct.unpack_from("<H", raw, 40)[0] == 0xA1B2
    assert struct.unpack_from("<I", raw, 88)[0] == 0xDEADBEEF
