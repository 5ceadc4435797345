"""The tables the native renderer reads, rendered by the Python code itself.

Everything the native path writes that is a name or an enrichment (emitter, node name, TCP
flag objects and summaries, trace observation points and reasons, drop reason names, ICMP
type and code names, endpoints, interfaces, policies) comes from here, produced with orjson
from the same constants and functions ``FlowBuilder`` uses, so the C side has no copy.

TCP flag objects, their summaries and the emitter are taken from flows ``FlowBuilder`` builds
for probe records (one per flags byte), so they are the builder's output by construction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from observer.bpf import structs
from observer.enrich.resolver import WORLD_INFO, EndpointInfo, StaticResolver
from observer.native import _lib
from observer.parser.dropreasons import DROP_REASON_NAMES, POLICY_DROP_REASONS
from observer.parser.events import decode_flow_event
from observer.parser.flow import (
    TRACE_REASONS,
    FlowBuilder,
    endpoint_dict,
    observation_point_name,
)

# The ICMP type/code name tables summary.py formats from (type -> (name, codes or None)).
from observer.parser.summary import _ICMPV4, _ICMPV6, IPPROTO_TCP

_U32_LIMIT: Final = 1 << 32
_INT32_MAX: Final = 2**31 - 1
_ICMP_PREFIXES: Final = (b"ICMPv4 ", b"ICMPv6 ")


class TableError(ValueError):
    """A value the native renderer cannot carry exactly (the caller falls back to Python)."""


@dataclass(frozen=True, slots=True)
class Tables:
    """Indexed tables (id -> entries) and keyed tables (id -> (16-byte key, entry) pairs)."""

    indexed: dict[int, list[bytes]]
    keyed: dict[int, list[tuple[bytes, bytes]]]


def _json(value: Any) -> bytes:
    data: bytes = orjson.dumps(value)
    return data


def _raw_name(name: str) -> bytes:
    """A name the C side puts between quotes itself: must need no JSON escaping."""
    quoted = _json(name)
    if not name or quoted[1:-1] != name.encode():
        raise TableError(f"name {name!r} needs JSON escaping")
    return quoted[1:-1]


def _key(raw: bytes) -> bytes:
    return raw.ljust(16, b"\0")


def _u32_key(value: int) -> bytes:
    return _key(value.to_bytes(4, "little"))


def _probe_record(flags: int) -> bytes:
    """A v4 TCP trace with ``flags``: no interface, no policy, zero addresses."""
    return structs.FLOW_EVENT.pack(
        structs.EVENT_TRACE, 0, structs.FLOW_EVENT_SIZE, 0, 0,
        0, 0, 0, 0,
        structs.OBS_TO_STACK, 4, IPPROTO_TCP, flags, 0, 0, 0, 0,
        1, 1, bytes(16), bytes(16), bytes(6), bytes(6),
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    )  # fmt: skip


def static_tables(builder: FlowBuilder) -> Tables:
    """Tables that depend only on the builder's node and emitter (not on the resolver)."""
    flag_objects: list[bytes] = []
    summaries: list[bytes] = []
    emitter = b""
    for flags in range(256):
        flow = builder.build(decode_flow_event(_probe_record(flags)), 0)["flow"]
        flag_objects.append(_json(flow["l4"]["TCP"]["flags"]))
        summaries.append(_json(flow["Summary"]))
        emitter = _json(flow["emitter"])

    # the whole member (key included), empty where the flow leaves the field out
    points = [observation_point_name(o) for o in range(256)]
    obs = [b"" if n is None else b',"trace_observation_point":' + _json(n) for n in points]
    nreasons = len(TRACE_REASONS)
    reasons = [b""] + [_json(TRACE_REASONS[r] if r < nreasons else r) for r in range(1, 256)]

    # drop_reason_desc: the name, or the bare number protojson prints for an unnamed value;
    # the C side prints the number itself for codes past the table (<= INT32_MAX).
    ndrop = max(DROP_REASON_NAMES) + 1
    drop_desc = []
    for code in range(ndrop):
        name = DROP_REASON_NAMES.get(code)
        drop_desc.append(_json(name if name is not None else code))
    policy_drops = [
        b"1" if code in POLICY_DROP_REASONS else b"" for code in range(max(POLICY_DROP_REASONS) + 1)
    ]

    icmp_types: list[bytes] = []
    icmp_has_codes: list[bytes] = []
    icmp_codes: list[tuple[bytes, bytes]] = []
    for version, table in ((4, _ICMPV4), (6, _ICMPV6)):
        for t in range(256):
            info = table.get(t)
            if info is None:
                icmp_types.append(b"")
                icmp_has_codes.append(b"")
                continue
            name, codes = info
            icmp_types.append(_raw_name(name))
            icmp_has_codes.append(b"1" if codes is not None else b"")
            for code, code_name in (codes or {}).items():
                if 0 <= code < 256:
                    icmp_codes.append((_key(bytes((version, t, code))), _raw_name(code_name)))

    node = builder.node_name
    world = endpoint_dict(WORLD_INFO)
    world_frag = _json(world) if world else b""
    misc = [b""] * _lib.MISC_COUNT
    misc[_lib.MISC_EMITTER] = emitter
    misc[_lib.MISC_NODE_NAME] = _json(node) if node else b""
    misc[_lib.MISC_EP4_DEFAULT] = world_frag
    misc[_lib.MISC_EP6_DEFAULT] = world_frag
    misc[_lib.MISC_ICMP4_PREFIX] = _ICMP_PREFIXES[0]
    misc[_lib.MISC_ICMP6_PREFIX] = _ICMP_PREFIXES[1]

    return Tables(
        indexed={
            _lib.TAB_TCP_FLAGS: flag_objects,
            _lib.TAB_TCP_SUMMARY: summaries,
            _lib.TAB_OBS_POINT: obs,
            _lib.TAB_TRACE_REASON: reasons,
            _lib.TAB_DROP_DESC: drop_desc,
            _lib.TAB_POLICY_DROP: policy_drops,
            _lib.TAB_ICMP_TYPE: icmp_types,
            _lib.TAB_ICMP_HAS_CODES: icmp_has_codes,
            _lib.TAB_MISC: misc,
        },
        keyed={_lib.KEY_ICMP_CODE: icmp_codes},
    )


def _endpoint_fragment(info: EndpointInfo | None, ip: str) -> bytes:
    if info is None:
        raise TableError(f"the resolver knows no endpoint for {ip}")
    ep = endpoint_dict(info)
    return _json(ep) if ep else b""


def resolver_tables(resolver: StaticResolver) -> Tables:
    """Endpoints by address, interfaces by index and policies by rule id, as ``resolver``
    answers them now (``StaticResolver``: an address it does not list is ``reserved:world``,
    which is the renderer's default)."""
    snap = resolver.snapshot
    ep4: list[tuple[bytes, bytes]] = []
    ep6: list[tuple[bytes, bytes]] = []
    for ip in (*snap.host_ips, *snap.endpoints):
        frag = _endpoint_fragment(resolver.by_ip(ip), ip)
        addr = ipaddress.ip_address(ip)
        (ep4 if addr.version == 4 else ep6).append((_key(addr.packed), frag))

    ifaces: list[tuple[bytes, bytes]] = []
    for index in snap.interfaces:
        name = resolver.ifname(index)
        if 0 < index < _U32_LIMIT and name:
            ifaces.append((_u32_key(index), _json({"index": index, "name": name})))

    policies: list[tuple[bytes, bytes]] = []
    for rule_id in snap.policies:
        if 0 < rule_id < _U32_LIMIT:
            pols = resolver.policies(rule_id)
            policies.append((_u32_key(rule_id), _json(list(pols)) if pols else b""))

    return Tables(
        indexed={},
        keyed={
            _lib.KEY_EP4: ep4,
            _lib.KEY_EP6: ep6,
            _lib.KEY_IFACE: ifaces,
            _lib.KEY_POLICY: policies,
        },
    )


def pack(entries: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Entries -> (blob, little-endian u32 offsets, len(entries) + 1 of them)."""
    offsets = bytearray(4 * (len(entries) + 1))
    pos = 0
    for i, e in enumerate(entries):
        pos += len(e)
        offsets[4 * (i + 1) : 4 * (i + 2)] = pos.to_bytes(4, "little")
    if pos >= _U32_LIMIT:
        raise TableError("table larger than 4 GiB")
    return b"".join(entries), bytes(offsets)
