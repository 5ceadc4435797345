"""Summary strings (Hubble's L3/L4 summaries with gopacket ICMP names)."""

from __future__ import annotations

from typing import Any

import pytest

from observer.bpf import structs
from observer.parser.summary import TCP_SUMMARIES, icmpv4_type_code, icmpv6_type_code, summarize

from .builders import make_event

FIN, SYN, RST, PSH = structs.TCP_FIN, structs.TCP_SYN, structs.TCP_RST, structs.TCP_PSH
ACK, URG, ECE, CWR = structs.TCP_ACK, structs.TCP_URG, structs.TCP_ECE, structs.TCP_CWR


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (SYN, "TCP Flags: SYN"),
        (SYN | ACK, "TCP Flags: SYN, ACK"),
        (ACK | PSH, "TCP Flags: ACK, PSH"),
        (FIN | ACK, "TCP Flags: ACK, FIN"),
        (RST | ACK, "TCP Flags: ACK, RST"),
        (SYN | ECE | CWR, "TCP Flags: SYN, ECE, CWR"),
        (0xFF, "TCP Flags: SYN, ACK, RST, FIN, PSH, URG, ECE, CWR"),
        (URG, "TCP Flags: URG"),
        (0, "TCP Flags: "),
    ],
    ids=["syn", "syn-ack", "ack-psh", "fin-ack", "rst-ack", "syn-ece-cwr", "all", "urg", "none"],
)
def test_tcp_flag_order(flags: int, expected: str) -> None:
    assert TCP_SUMMARIES[flags] == expected
    assert summarize(make_event(tcp_flags=flags)) == expected


@pytest.mark.parametrize(
    ("icmp_type", "code", "expected"),
    [
        (8, 0, "EchoRequest"),
        (0, 0, "EchoReply"),
        (3, 3, "DestinationUnreachable(Port)"),
        (3, 4, "DestinationUnreachable(FragmentationNeeded)"),
        (3, 99, "DestinationUnreachable(Code: 99)"),
        (5, 2, "Redirect(TOS+Net)"),
        (11, 0, "TimeExceeded(TTLExceeded)"),
        (12, 2, "ParameterProblem(BadLength)"),
        (8, 1, "EchoRequest(Code: 1)"),
        (13, 0, "TimestampRequest"),
        (42, 7, "42(7)"),
    ],
    ids=lambda v: str(v),
)
def test_icmpv4_names(icmp_type: int, code: int, expected: str) -> None:
    assert icmpv4_type_code(icmp_type, code) == expected
    ev = make_event(l4_proto=1, icmp_type=icmp_type, icmp_code=code)
    assert summarize(ev) == "ICMPv4 " + expected


@pytest.mark.parametrize(
    ("icmp_type", "code", "expected"),
    [
        (128, 0, "EchoRequest"),
        (129, 0, "EchoReply"),
        (1, 4, "DestinationUnreachable(PortUnreachable)"),
        (1, 9, "DestinationUnreachable(Code: 9)"),
        (2, 0, "PacketTooBig"),
        (3, 0, "TimeExceeded(HopLimitExceeded)"),
        (4, 1, "ParameterProblem(UnrecognizedNextHeader)"),
        (135, 0, "NeighborSolicitation"),
        (136, 0, "NeighborAdvertisement"),
        (133, 3, "RouterSolicitation(Code: 3)"),
        (143, 0, "MLDv2MulticastListenerReport"),
        (200, 0, "200(0)"),
    ],
    ids=lambda v: str(v),
)
def test_icmpv6_names(icmp_type: int, code: int, expected: str) -> None:
    assert icmpv6_type_code(icmp_type, code) == expected
    ev = make_event(
        ip_version=6, saddr="::1", daddr="::2", l4_proto=58, icmp_type=icmp_type, icmp_code=code
    )
    assert summarize(ev) == "ICMPv6 " + expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"l4_proto": 17}, "UDP"),
        ({"l4_proto": 132}, "SCTP"),
        ({"l4_proto": 0}, "IPv4"),
        ({"l4_proto": 47}, "IPv4"),
        ({"l4_proto": 0, "ip_version": 6, "saddr": "::1", "daddr": "::2"}, "IPv6"),
        ({"l4_proto": 0, "ip_version": 0, "saddr": "", "daddr": ""}, "Ethernet"),
    ],
    ids=["udp", "sctp", "ipv4-no-l4", "ipv4-gre", "ipv6-no-l4", "ethernet"],
)
def test_other_layers(overrides: dict[str, Any], expected: str) -> None:
    assert summarize(make_event(**overrides)) == expected
