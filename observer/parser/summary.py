"""The ``Summary`` string of an L3/L4 flow, as Hubble's server writes it.

* TCP: ``TCP Flags: `` and the set flags in the order SYN, ACK, RST, FIN, PSH, URG, ECE, CWR
  joined by ``, `` (``TCP Flags: SYN, ACK``; ``TCP Flags: `` when none is set).
* UDP / SCTP: ``UDP`` / ``SCTP``.
* ICMP: ``ICMPv4 <TypeCode>`` / ``ICMPv6 <TypeCode>`` with gopacket's type/code naming:
  ``EchoRequest``; ``DestinationUnreachable(Port)``; an unknown code of a known type
  ``TimeExceeded(Code: 9)``; a code on a type without codes ``EchoRequest(Code: 1)``; an
  unknown type ``42(0)``.
* no transport layer: ``IPv4`` / ``IPv6``, or ``Ethernet`` for non-IP frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from observer.bpf import structs
from observer.parser.events import FlowEvent

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_ICMPV6: Final = 58
IPPROTO_SCTP: Final = 132

# Hubble's summary order (not the bit order).
_SUMMARY_FLAG_ORDER: Final[tuple[tuple[int, str], ...]] = (
    (structs.TCP_SYN, "SYN"),
    (structs.TCP_ACK, "ACK"),
    (structs.TCP_RST, "RST"),
    (structs.TCP_FIN, "FIN"),
    (structs.TCP_PSH, "PSH"),
    (structs.TCP_URG, "URG"),
    (structs.TCP_ECE, "ECE"),
    (structs.TCP_CWR, "CWR"),
)

TCP_SUMMARIES: Final[tuple[str, ...]] = tuple(
    "TCP Flags: " + ", ".join(name for bit, name in _SUMMARY_FLAG_ORDER if flags & bit)
    for flags in range(256)
)
"""``TCP_SUMMARIES[flags_byte]`` is the Summary of a TCP packet with those flags."""

# type -> (type name, code names or None when the type defines no codes)
_ICMPV4: Final[Mapping[int, tuple[str, Mapping[int, str] | None]]] = MappingProxyType(
    {
        0: ("EchoReply", None),
        3: (
            "DestinationUnreachable",
            MappingProxyType(
                {
                    0: "Net",
                    1: "Host",
                    2: "Protocol",
                    3: "Port",
                    4: "FragmentationNeeded",
                    5: "SourceRoutingFailed",
                    6: "NetUnknown",
                    7: "HostUnknown",
                    8: "SourceIsolated",
                    9: "NetAdminProhibited",
                    10: "HostAdminProhibited",
                    11: "NetTOS",
                    12: "HostTOS",
                    13: "CommAdminProhibited",
                    14: "HostPrecedence",
                    15: "PrecedenceCutoff",
                }
            ),
        ),
        4: ("SourceQuench", None),
        5: ("Redirect", MappingProxyType({0: "Net", 1: "Host", 2: "TOS+Net", 3: "TOS+Host"})),
        8: ("EchoRequest", None),
        9: ("RouterAdvertisement", None),
        10: ("RouterSolicitation", None),
        11: (
            "TimeExceeded",
            MappingProxyType({0: "TTLExceeded", 1: "FragmentReassemblyTimeExceeded"}),
        ),
        12: (
            "ParameterProblem",
            MappingProxyType({0: "PointerIndicatesError", 1: "MissingOption", 2: "BadLength"}),
        ),
        13: ("TimestampRequest", None),
        14: ("TimestampReply", None),
        15: ("InfoRequest", None),
        16: ("InfoReply", None),
        17: ("AddressMaskRequest", None),
        18: ("AddressMaskReply", None),
    }
)

_ICMPV6: Final[Mapping[int, tuple[str, Mapping[int, str] | None]]] = MappingProxyType(
    {
        1: (
            "DestinationUnreachable",
            MappingProxyType(
                {
                    0: "NoRouteToDst",
                    1: "AdminProhibited",
                    2: "BeyondScopeOfSrc",
                    3: "AddressUnreachable",
                    4: "PortUnreachable",
                    5: "SrcAddressFailedPolicy",
                    6: "RejectRouteToDst",
                }
            ),
        ),
        2: ("PacketTooBig", None),
        3: (
            "TimeExceeded",
            MappingProxyType({0: "HopLimitExceeded", 1: "FragmentReassemblyTimeExceeded"}),
        ),
        4: (
            "ParameterProblem",
            MappingProxyType(
                {
                    0: "ErroneousHeaderField",
                    1: "UnrecognizedNextHeader",
                    2: "UnrecognizedIPv6Option",
                }
            ),
        ),
        128: ("EchoRequest", None),
        129: ("EchoReply", None),
        130: ("MLDv1MulticastListenerQuery", None),
        131: ("MLDv1MulticastListenerReport", None),
        132: ("MLDv1MulticastListenerDone", None),
        133: ("RouterSolicitation", None),
        134: ("RouterAdvertisement", None),
        135: ("NeighborSolicitation", None),
        136: ("NeighborAdvertisement", None),
        137: ("Redirect", None),
        143: ("MLDv2MulticastListenerReport", None),
    }
)


def _type_code(table: Mapping[int, tuple[str, Mapping[int, str] | None]], t: int, c: int) -> str:
    info = table.get(t)
    if info is None:
        return f"{t}({c})"
    name, codes = info
    if codes is None:
        return name if c == 0 else f"{name}(Code: {c})"
    code_name = codes.get(c)
    return f"{name}(Code: {c})" if code_name is None else f"{name}({code_name})"


def icmpv4_type_code(icmp_type: int, icmp_code: int) -> str:
    """gopacket-style name of an ICMPv4 type/code (``EchoRequest``, ``DestinationUnreachable(Port)``)."""
    return _type_code(_ICMPV4, icmp_type, icmp_code)


def icmpv6_type_code(icmp_type: int, icmp_code: int) -> str:
    """gopacket-style name of an ICMPv6 type/code (``EchoReply``, ``TimeExceeded(HopLimitExceeded)``)."""
    return _type_code(_ICMPV6, icmp_type, icmp_code)


def summarize(ev: FlowEvent) -> str:
    """The ``Summary`` of a decoded flow event."""
    proto = ev.l4_proto
    if proto == IPPROTO_TCP:
        return TCP_SUMMARIES[ev.tcp_flags & 0xFF]
    if proto == IPPROTO_UDP:
        return "UDP"
    if proto == IPPROTO_ICMP:
        return "ICMPv4 " + _type_code(_ICMPV4, ev.icmp_type, ev.icmp_code)
    if proto == IPPROTO_ICMPV6:
        return "ICMPv6 " + _type_code(_ICMPV6, ev.icmp_type, ev.icmp_code)
    if proto == IPPROTO_SCTP:
        return "SCTP"
    if ev.ip_version == 4:
        return "IPv4"
    if ev.ip_version == 6:
        return "IPv6"
    return "Ethernet"
