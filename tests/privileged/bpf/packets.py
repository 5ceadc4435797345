"""Small byte builders for Ethernet/IPv4/IPv6/TCP/UDP/ICMP/SCTP frames (the inverse of
bpf/lib/parse.h), and a decoder of hb_flow_event records built on observer.bpf.structs."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from observer.bpf import structs

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
IPPROTO_SCTP = 132

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(
    proto: int, payload: bytes, src: bytes = MAC_A, dst: bytes = MAC_B, vlan: int | None = None
) -> bytes:
    if vlan is None:
        return dst + src + struct.pack("!H", proto) + payload
    return dst + src + struct.pack("!HHH", ETH_P_8021Q, vlan, proto) + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    options: bytes = b"",
    frag_offset: int = 0,
    more_fragments: bool = False,
    ttl: int = 64,
) -> bytes:
    """An IPv4 header (options padded to 4 bytes) and payload. frag_offset in 8-byte units."""
    options += b"\0" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    frag = (0x2000 if more_fragments else 0) | (frag_offset & 0x1FFF)
    hdr = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + len(payload),
            0x1234,
            frag,
            ttl,
            proto,
            0,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
        + options
    )
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6_ext(kind: int, next_header: int, body: bytes = b"") -> bytes:
    """One extension header of type ``kind`` whose next header is ``next_header``.

    ``body`` is padded so the header is a multiple of 8 bytes (AH: 4); a fragment
    header's body is (frag_off_field: u16, ident: u32).
    """
    if kind == IPPROTO_FRAGMENT:
        return struct.pack("!BB", next_header, 0) + (body or b"\0" * 6)
    if kind == IPPROTO_AH:
        body = body or b"\0" * 10  # SPI, sequence, a 4-byte ICV minus the 2 leading bytes
        body += b"\0" * (-(len(body) + 2) % 4)
        return struct.pack("!BB", next_header, (len(body) + 2) // 4 - 2) + body
    body = body or b"\x01\x04\0\0\0\0"  # PadN
    body += b"\0" * (-(len(body) + 2) % 8)
    return struct.pack("!BB", next_header, (len(body) + 2) // 8 - 1) + body


def ipv6(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ext: list[int] | None = None,
    frag_offset: int = 0,
    hop_limit: int = 64,
) -> bytes:
    """An IPv6 header, the extension headers of the types in ``ext`` (in order), payload."""
    kinds = list(ext or [])
    chain = b""
    for i, kind in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else proto
        body = (
            struct.pack("!HI", (frag_offset & 0x1FFF) << 3, 7) if kind == IPPROTO_FRAGMENT else b""
        )
        chain += ipv6_ext(kind, nxt, body)
    first = kinds[0] if kinds else proto
    body = chain + payload
    return (
        struct.pack(
            "!IHBB16s16s",
            6 << 28,
            len(body),
            first,
            hop_limit,
            ipaddress.IPv6Address(src).packed,
            ipaddress.IPv6Address(dst).packed,
        )
        + body
    )


def tcp(
    sport: int,
    dport: int,
    flags: int,
    payload: bytes = b"",
    *,
    seq: int = 1,
    ack: int = 0,
    data_offset: int = 5,
) -> bytes:
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, data_offset << 4, flags, 65535, 0, 0)
        + b"\0" * ((data_offset - 5) * 4 if data_offset > 5 else 0)
        + payload
    )


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(
    icmp_type: int, code: int = 0, ident: int = 0, seq: int = 0, payload: bytes = b""
) -> bytes:
    """ICMPv4 or ICMPv6 (same 8-byte start); checksum left 0."""
    return struct.pack("!BBHHH", icmp_type, code, 0, ident, seq) + payload


def sctp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHII", sport, dport, 0, 0)


# --- whole frames ------------------------------------------------------------------


def _l3(src: str, dst: str, proto: int, l4: bytes, **kw: Any) -> bytes:
    if ipaddress.ip_address(src).version == 4:
        return eth(ETH_P_IP, ipv4(src, dst, proto, l4, **kw))
    return eth(ETH_P_IPV6, ipv6(src, dst, proto, l4, **kw))


def tcp_frame(
    src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes = b"", **kw: Any
) -> bytes:
    return _l3(src, dst, IPPROTO_TCP, tcp(sport, dport, flags, payload), **kw)


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", **kw: Any) -> bytes:
    return _l3(src, dst, IPPROTO_UDP, udp(sport, dport, payload), **kw)


def icmp_frame(
    src: str, dst: str, icmp_type: int, code: int = 0, ident: int = 0, seq: int = 0, **kw: Any
) -> bytes:
    v6 = ipaddress.ip_address(src).version == 6
    return _l3(
        src, dst, IPPROTO_ICMPV6 if v6 else IPPROTO_ICMP, icmp(icmp_type, code, ident, seq), **kw
    )


# --- records -----------------------------------------------------------------------

_FLOW_NAMES = tuple(name for name, _off, _size in structs.EVENT_HDR_FIELDS) + tuple(
    name for name, _off, _size in structs.FLOW_EVENT_FIELDS[1:]
)


def decode(record: bytes) -> dict[str, Any]:
    """An hb_flow_event record as a dict of its C field names (header fields inlined)."""
    assert len(record) >= structs.FLOW_EVENT_SIZE, f"short record: {len(record)} bytes"
    values = structs.FLOW_EVENT.unpack_from(record)
    assert len(values) == len(_FLOW_NAMES)
    return dict(zip(_FLOW_NAMES, values, strict=True))


def addr(raw: bytes, version: int) -> str:
    """The text form of an event address (IPv4 in the first 4 bytes)."""
    return str(ipaddress.ip_address(raw[:4] if version == 4 else raw))
