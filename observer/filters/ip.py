"""IP filters: source_ip, destination_ip, source_ip_xlated, ip_version, encrypted.

An IP entry is an exact address (``10.0.0.1``, ``fd00::1``) or, when it contains ``/``, a CIDR
(``10.0.0.0/8``; host bits may be set, as Go's ``netip.ParsePrefix`` allows). Exact entries are
compared with the flow's address string (both the entry as written and its canonical form);
CIDRs by address arithmetic. A flow without the address never matches; an IPv4 CIDR never
contains an IPv6 address (IPv4-mapped included) and vice versa.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from observer.errors import FilterError
from observer.filters.base import (
    FilterSpec,
    FlowPredicate,
    bool_list,
    enum_match_set,
    get_enum,
    string_list,
    sub,
)
from observer.filters.enums import IP_VERSION

_Prefix = tuple[int, int, int]  # (family, network as int, mask as int)


def _parse_entries(field: str, value: Any) -> tuple[frozenset[str], tuple[_Prefix, ...]]:
    exact: set[str] = set()
    prefixes: list[_Prefix] = []
    for entry in string_list(field, value):
        try:
            if "/" in entry:
                bits = entry.partition("/")[2]
                if not (bits.isascii() and bits.isdigit()) or (len(bits) > 1 and bits[0] == "0"):
                    raise ValueError(bits)
                net = ipaddress.ip_network(entry, strict=False)
                family = socket.AF_INET if net.version == 4 else socket.AF_INET6
                prefixes.append((family, int(net.network_address), int(net.netmask)))
            else:
                addr = ipaddress.ip_address(entry)
                exact.add(entry)
                exact.add(str(addr))
        except ValueError:
            raise FilterError(field, f"invalid IP or CIDR {entry!r}") from None
    return frozenset(exact), tuple(prefixes)


def _addr_int(text: str) -> tuple[int, int] | None:
    """(family, address as int) of an IP string, or None when it is not one."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        packed = socket.inet_pton(family, text)
    except (OSError, ValueError):
        return None
    return family, int.from_bytes(packed, "big")


def _ip_filter(field: str, value: Any, getter_key: str) -> FlowPredicate:
    exact, prefixes = _parse_entries(field, value)

    def match(flow: Mapping[str, Any]) -> bool:
        ip = sub(flow, "IP").get(getter_key)
        if not isinstance(ip, str) or not ip:
            return False
        if ip in exact:
            return True
        if prefixes:
            parsed = _addr_int(ip)
            if parsed is None:
                return False
            family, number = parsed
            for fam, net, mask in prefixes:
                if fam == family and number & mask == net:
                    return True
        return False

    return match


def source_ip(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _ip_filter(field, value, "source")


def destination_ip(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _ip_filter(field, value, "destination")


def source_ip_xlated(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _ip_filter(field, value, "source_xlated")


def ip_version(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    """Equality with ``IP.ipVersion``; a flow without IP has IP_NOT_USED."""
    wanted = enum_match_set(field, value, IP_VERSION)

    def match(flow: Mapping[str, Any]) -> bool:
        return get_enum(sub(flow, "IP"), "ipVersion") in wanted

    return match


def encrypted(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    """Equality with ``IP.encrypted`` (unset = false)."""
    wanted = frozenset(bool_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        flag = sub(flow, "IP").get("encrypted", False)
        return isinstance(flag, bool) and flag in wanted

    return match
