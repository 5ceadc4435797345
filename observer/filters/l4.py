"""Layer-4 filters: protocol, source_port, destination_port, tcp_flags.

``protocol`` names (case-insensitive): ``tcp``, ``udp``, ``sctp``, ``icmp`` (ICMPv4 or ICMPv6),
``icmpv4``, ``icmpv6``, ``vrrp``, ``igmp`` (by which ``l4`` member is set) and ``dns``,
``http``, ``kafka`` (by which ``l7`` record is set). Unknown names are errors.

Ports are decimal strings 0-65535 compared with the TCP, UDP or SCTP port of the flow; flows
of other protocols never match.

``tcp_flags``: each entry is a ``TCPFlags`` object; it matches when every flag it sets is set
on the flow (SYN matches SYN+ACK). An entry that sets no flag matches every TCP flow that
carries flags. Flows without TCP flags never match.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from observer.errors import FilterError
from observer.filters.base import (
    FilterSpec,
    FlowPredicate,
    bool_value,
    get_int,
    normalize_message,
    opt_sub,
    repeated,
    string_list,
    sub,
)

L4_PROTOCOLS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "tcp": ("TCP",),
        "udp": ("UDP",),
        "sctp": ("SCTP",),
        "icmp": ("ICMPv4", "ICMPv6"),
        "icmpv4": ("ICMPv4",),
        "icmpv6": ("ICMPv6",),
        "vrrp": ("VRRP",),
        "igmp": ("IGMP",),
    }
)
L7_PROTOCOLS: Final[Mapping[str, str]] = MappingProxyType(
    {"dns": "dns", "http": "http", "kafka": "kafka"}
)
TCP_FLAG_NAMES: Final = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
_PORT_LAYERS: Final = ("TCP", "UDP", "SCTP")


def protocol(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    l4_keys: set[str] = set()
    l7_keys: set[str] = set()
    for name in string_list(field, value):
        proto = name.lower()
        if proto in L4_PROTOCOLS:
            l4_keys.update(L4_PROTOCOLS[proto])
        elif proto in L7_PROTOCOLS:
            l7_keys.add(L7_PROTOCOLS[proto])
        else:
            raise FilterError(field, f"unknown protocol {name!r}")
    l4_wanted = tuple(sorted(l4_keys))
    l7_wanted = tuple(sorted(l7_keys))

    def match(flow: Mapping[str, Any]) -> bool:
        if l4_wanted:
            l4 = sub(flow, "l4")
            for key in l4_wanted:
                if l4.get(key) is not None:
                    return True
        if l7_wanted:
            l7 = sub(flow, "l7")
            for key in l7_wanted:
                if l7.get(key) is not None:
                    return True
        return False

    return match


def parse_port(field: str, text: str) -> int:
    """A port as Go's ``strconv.ParseUint(s, 10, 16)`` reads it."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise FilterError(field, f"invalid port {text!r}")
    return int(text)


def _port(field: str, value: Any, port_key: str) -> FlowPredicate:
    wanted = frozenset(parse_port(field, p) for p in string_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        l4 = sub(flow, "l4")
        for layer in _PORT_LAYERS:
            msg = opt_sub(l4, layer)
            if msg is not None:
                return get_int(msg, port_key) in wanted
        return False

    return match


def source_port(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _port(field, value, "source_port")


def destination_port(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _port(field, value, "destination_port")


def tcp_flags(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    entries: list[tuple[str, ...]] = []
    for item in repeated(field, value):
        msg = normalize_message(field, item, TCP_FLAG_NAMES, "TCPFlags")
        entries.append(tuple(name for name, flag in msg.items() if bool_value(field, flag)))
    wanted = tuple(entries)

    def match(flow: Mapping[str, Any]) -> bool:
        flags = opt_sub(sub(sub(flow, "l4"), "TCP"), "flags")
        if flags is None:
            return False
        for required in wanted:
            for name in required:
                if flags.get(name) is not True:
                    break
            else:
                return True
        return False

    return match
