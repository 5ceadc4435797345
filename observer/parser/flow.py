"""``FlowEvent`` + enrichment -> ``observer.GetFlowsResponse`` dict (Hubble's protojson shape).

The dict is what ``json_format.MessageToDict(resp, preserving_proto_field_name=True)`` would
give for the equivalent proto, key for key and in proto declaration order: enums by name,
64-bit integers as strings, wrapper types as bare scalars, zero/empty fields absent.

Mapping from the record (see bpf/lib/events.h):

==================  =========================================================================
verdict             trace: FORWARDED; drop: DROPPED; policy verdict: AUDIT if ``audited``,
                    else DROPPED if ``drop_reason`` != 0, else FORWARDED
drop_reason(_desc)  the code and its proto name (its number if unnamed), for DROPPED flows only
traffic_direction   trace: FROM_ENDPOINT -> EGRESS (INGRESS for replies), TO_ENDPOINT ->
                    INGRESS (EGRESS for replies), other points unknown; others: ``policy_dir``
is_reply / reply    trace: always (``reply`` only when true); forwarded or audited policy
                    verdicts: false (they are emitted for a connection's first packet); drops
                    and denied verdicts: absent (unknown), as Hubble does
policy_match_type   policy verdicts only
trace_*             traces only: obs point (datapath 0 -> ``TO_ENDPOINT``), ct state
*_allowed_by        policy verdicts (FORWARDED -> allowed_by, DROPPED/AUDIT -> denied_by, by
*_denied_by         ``policy_dir``) and policy drops (133/181 -> denied_by), from
                    ``resolver.policies(policy_rule_id)``; rule id 0 (default) has none
ethernet            omitted when both MACs are all-zero (an L3 device, nothing captured)
Endpoint            from ``resolver.by_ip``; when that has nothing, the datapath identity alone
==================  =========================================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final

from observer.bpf import structs
from observer.enrich.resolver import EndpointInfo, Resolver
from observer.parser.dropreasons import DROP_REASON_NAMES, POLICY_DROP_REASONS
from observer.parser.events import FlowEvent
from observer.parser.summary import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_SUMMARIES,
    icmpv4_type_code,
    icmpv6_type_code,
)
from observer.parser.timestamps import TimestampFormatter

FlowDict = dict[str, Any]

EMITTER_NAME: Final = "Hubble"

# proto TraceObservationPoint names by datapath obs point (0 is TO_ENDPOINT = 101 in the proto)
TRACE_OBSERVATION_POINTS: Final[tuple[str, ...]] = (
    "TO_ENDPOINT",
    "TO_PROXY",
    "TO_HOST",
    "TO_STACK",
    "TO_OVERLAY",
    "FROM_ENDPOINT",
    "FROM_PROXY",
    "FROM_HOST",
    "FROM_STACK",
    "FROM_OVERLAY",
    "FROM_NETWORK",
    "TO_NETWORK",
    "FROM_CRYPTO",
    "TO_CRYPTO",
)


def observation_point_name(obs: int) -> str | None:
    """The proto TraceObservationPoint name for a datapath obs point.

    None (the field is left out: UNKNOWN_POINT, the proto's zero) for one the event ABI does
    not define, not its number: datapath numbers are not the proto's (datapath 101 would
    read as the proto's TO_ENDPOINT)."""
    return TRACE_OBSERVATION_POINTS[obs] if 0 <= obs < len(TRACE_OBSERVATION_POINTS) else None


# proto TraceReason names by ct_state (0 = TRACE_REASON_UNKNOWN, omitted). hb_ct_state uses
# the proto's numbers; 5.. are not in the ABI yet but get the proto's names, as protojson would.
TRACE_REASONS: Final[tuple[str, ...]] = (
    "",
    "NEW",
    "ESTABLISHED",
    "REPLY",
    "RELATED",
    "REOPENED",
    "SRV6_ENCAP",
    "SRV6_DECAP",
    "ENCRYPT_OVERLAY",
)

# TCPFlags message fields in declaration order, and the tuple of set names per flags byte.
_TCP_FLAG_FIELDS: Final[tuple[tuple[int, str], ...]] = (
    (structs.TCP_FIN, "FIN"),
    (structs.TCP_SYN, "SYN"),
    (structs.TCP_RST, "RST"),
    (structs.TCP_PSH, "PSH"),
    (structs.TCP_ACK, "ACK"),
    (structs.TCP_URG, "URG"),
    (structs.TCP_ECE, "ECE"),
    (structs.TCP_CWR, "CWR"),
)
_TCP_FLAG_NAMES: Final[tuple[tuple[str, ...], ...]] = tuple(
    tuple(name for bit, name in _TCP_FLAG_FIELDS if flags & bit) for flags in range(256)
)

_DIRECTIONS: Final[tuple[str | None, ...]] = (None, "INGRESS", "EGRESS")
_ALLOWED_KEYS: Final[tuple[str | None, ...]] = (None, "ingress_allowed_by", "egress_allowed_by")
_DENIED_KEYS: Final[tuple[str | None, ...]] = (None, "ingress_denied_by", "egress_denied_by")

_ZERO_MAC: Final = "00:00:00:00:00:00"
# hex digit -> the RFC 4122 variant digit with the same low two bits
_UUID_VARIANT: Final = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
_EP_CACHE_LIMIT: Final = 4096
_INT32_MAX: Final = 2**31 - 1

_TRACE: Final = structs.EVENT_TRACE
_DROP: Final = structs.EVENT_DROP
_OBS_TO_ENDPOINT: Final = structs.OBS_TO_ENDPOINT
_OBS_FROM_ENDPOINT: Final = structs.OBS_FROM_ENDPOINT


def endpoint_dict(info: EndpointInfo) -> dict[str, Any]:
    """``flow.Endpoint`` JSON of ``info``, zero/empty fields omitted, in declaration order."""
    ep: dict[str, Any] = {}
    if info.id:
        ep["ID"] = info.id
    if info.identity:
        ep["identity"] = info.identity
    if info.cluster_name:
        ep["cluster_name"] = info.cluster_name
    if info.namespace:
        ep["namespace"] = info.namespace
    if info.labels:
        ep["labels"] = list(info.labels)
    if info.pod_name:
        ep["pod_name"] = info.pod_name
    return ep


class FlowBuilder:
    """Builds GetFlowsResponse dicts from decoded flow events.

    The result is read-only: to stay fast, nested parts that repeat (``emitter``, ``source``
    and ``destination`` of the same ``EndpointInfo``, ``event_type``, TCP ``flags``) are
    shared between the flows one builder returns. Serialise it, filter it, print it; copy
    before mutating.

    ``entropy`` supplies the random bytes for the v4 UUIDs (drawn ``uuid_batch`` at a time);
    pass a deterministic one in tests. Not thread-safe: one builder per consumer.
    """

    __slots__ = (
        "_emitter",
        "_entropy",
        "_ep_cache",
        "_event_types",
        "_flags",
        "_node_name",
        "_resolver",
        "_time",
        "_uuid_batch",
        "_uuids",
    )

    def __init__(
        self,
        node_name: str,
        resolver: Resolver,
        emitter_version: str,
        *,
        entropy: Callable[[int], bytes] = os.urandom,
        uuid_batch: int = 256,
    ) -> None:
        if uuid_batch < 1:
            raise ValueError("uuid_batch must be positive")
        self._node_name = node_name
        self._resolver = resolver
        self._emitter = {"name": EMITTER_NAME, "version": emitter_version.removeprefix("v")}
        self._entropy = entropy
        self._uuid_batch = uuid_batch
        self._uuids: list[str] = []
        self._time = TimestampFormatter()
        # id(info) -> (info, endpoint dict); holding ``info`` keeps its id from being reused
        self._ep_cache: dict[int, tuple[EndpointInfo, dict[str, Any]]] = {}
        self._event_types: dict[int, dict[str, int]] = {}
        self._flags: tuple[dict[str, bool], ...] = tuple(
            dict.fromkeys(names, True) for names in _TCP_FLAG_NAMES
        )

    @property
    def node_name(self) -> str:
        return self._node_name

    @property
    def resolver(self) -> Resolver:
        return self._resolver

    def new_uuid(self) -> str:
        """A random (version 4, RFC 4122 variant) UUID string."""
        if not self._uuids:
            self._refill_uuids()
        return self._uuids.pop()

    def _refill_uuids(self) -> None:
        # Lay the hex digits of n random UUIDs out with strided slice assignments (C loops)
        # rather than formatting each one: ~0.4 us per UUID instead of ~1.3 us.
        n = self._uuid_batch
        hexb = self._entropy(16 * n).hex().encode()
        if len(hexb) != 32 * n:
            raise ValueError("entropy source returned the wrong number of bytes")
        out = bytearray(b"-" * (36 * n))
        q = 0
        for p in range(32):
            if q in (8, 13, 18, 23):
                q += 1
            out[q::36] = hexb[p::32]
            q += 1
        out[14::36] = b"4" * n
        out[19::36] = hexb[16::32].translate(_UUID_VARIANT)
        text = out.decode()
        self._uuids.extend(text[i : i + 36] for i in range(0, 36 * n, 36))

    def _endpoint(self, info: EndpointInfo | None, identity: int) -> dict[str, Any] | None:
        if info is None:
            return {"identity": identity} if identity else None
        cached = self._ep_cache.get(id(info))
        if cached is None or cached[0] is not info:
            if len(self._ep_cache) >= _EP_CACHE_LIMIT:
                self._ep_cache.clear()
            cached = (info, endpoint_dict(info))
            self._ep_cache[id(info)] = cached
        return cached[1]

    def build(self, ev: FlowEvent, wall_ns: int) -> FlowDict:
        """The GetFlowsResponse dict of one event observed at ``wall_ns`` (ns since the epoch).

        Written for speed; the rules it implements are in the module docstring. Raises
        ``ValueError`` only for a ``wall_ns`` outside years 1..9999.
        """
        t = self._time(wall_ns)
        etype = ev.type
        node_name = self._node_name
        resolver = self._resolver
        uuids = self._uuids
        if not uuids:
            self._refill_uuids()
        flow: FlowDict = {"time": t, "uuid": uuids.pop(), "emitter": self._emitter}

        # verdict, drop reason, and whether is_reply is known
        drop = 0
        if etype == _TRACE:
            verdict = "FORWARDED"
            reply_known = True
        elif etype == _DROP:
            verdict = "DROPPED"
            drop = ev.drop_reason
            reply_known = False
        elif ev.audited:
            verdict = "AUDIT"
            reply_known = True
        elif ev.drop_reason:
            verdict = "DROPPED"
            drop = ev.drop_reason
            reply_known = False
        else:
            verdict = "FORWARDED"
            reply_known = True
        flow["verdict"] = verdict
        if drop:
            flow["drop_reason"] = drop

        eth_src = ev.eth_src
        eth_dst = ev.eth_dst
        if eth_src != _ZERO_MAC or eth_dst != _ZERO_MAC:
            flow["ethernet"] = {"source": eth_src, "destination": eth_dst}

        ipv = ev.ip_version
        if ipv:
            saddr = ev.saddr
            daddr = ev.daddr
            flow["IP"] = {
                "source": saddr,
                "destination": daddr,
                "ipVersion": "IPv4" if ipv == 4 else "IPv6",
            }
            proto = ev.l4_proto
            if proto == IPPROTO_TCP:
                flags = ev.tcp_flags
                sport = ev.sport
                dport = ev.dport
                if sport and dport:
                    tcp = {
                        "source_port": sport,
                        "destination_port": dport,
                        "flags": self._flags[flags],
                    }
                else:
                    tcp = {}
                    if sport:
                        tcp["source_port"] = sport
                    if dport:
                        tcp["destination_port"] = dport
                    tcp["flags"] = self._flags[flags]
                flow["l4"] = {"TCP": tcp}
                summary = TCP_SUMMARIES[flags]
            elif proto in (IPPROTO_UDP, IPPROTO_SCTP):
                ports: dict[str, Any] = {}
                if ev.sport:
                    ports["source_port"] = ev.sport
                if ev.dport:
                    ports["destination_port"] = ev.dport
                if proto == IPPROTO_UDP:
                    flow["l4"] = {"UDP": ports}
                    summary = "UDP"
                else:
                    flow["l4"] = {"SCTP": ports}
                    summary = "SCTP"
            elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
                icmp_type = ev.icmp_type
                icmp_code = ev.icmp_code
                icmp: dict[str, Any] = {}
                if icmp_type:
                    icmp["type"] = icmp_type
                if icmp_code:
                    icmp["code"] = icmp_code
                if proto == IPPROTO_ICMP:
                    flow["l4"] = {"ICMPv4": icmp}
                    summary = "ICMPv4 " + icmpv4_type_code(icmp_type, icmp_code)
                else:
                    flow["l4"] = {"ICMPv6": icmp}
                    summary = "ICMPv6 " + icmpv6_type_code(icmp_type, icmp_code)
            else:
                summary = "IPv4" if ipv == 4 else "IPv6"
            src = self._endpoint(resolver.by_ip(saddr), ev.src_identity)
            dst = self._endpoint(resolver.by_ip(daddr), ev.dst_identity)
        else:
            summary = "Ethernet"
            src = {"identity": ev.src_identity} if ev.src_identity else None
            dst = {"identity": ev.dst_identity} if ev.dst_identity else None
        if src:
            flow["source"] = src
        if dst:
            flow["destination"] = dst

        flow["Type"] = "L3_L4"
        if node_name:
            flow["node_name"] = node_name
        is_reply = etype == _TRACE and ev.is_reply
        if is_reply:
            flow["reply"] = True
        sub_type = ev.sub_type
        type_key = etype << 8 | sub_type
        event_type = self._event_types.get(type_key)
        if event_type is None:
            event_type = {"type": etype, "sub_type": sub_type} if sub_type else {"type": etype}
            self._event_types[type_key] = event_type
        flow["event_type"] = event_type

        if etype == _TRACE:
            obs = ev.obs_point
            if obs == _OBS_FROM_ENDPOINT:
                flow["traffic_direction"] = "INGRESS" if is_reply else "EGRESS"
            elif obs == _OBS_TO_ENDPOINT:
                flow["traffic_direction"] = "EGRESS" if is_reply else "INGRESS"
            point = observation_point_name(obs)
            if point is not None:
                flow["trace_observation_point"] = point
            ct = ev.ct_state
            if ct:
                flow["trace_reason"] = TRACE_REASONS[ct] if ct < len(TRACE_REASONS) else ct
        else:
            pdir = ev.policy_dir
            direction = _DIRECTIONS[pdir] if pdir < 3 else None
            if direction is not None:
                flow["traffic_direction"] = direction
            if etype != _DROP and ev.policy_match_type:
                flow["policy_match_type"] = ev.policy_match_type
        if drop:
            desc = DROP_REASON_NAMES.get(drop)
            if desc is not None:
                flow["drop_reason_desc"] = desc
            elif drop <= _INT32_MAX:  # an enum value protojson can only print as a number
                flow["drop_reason_desc"] = drop
        if reply_known:
            flow["is_reply"] = is_reply
        ifindex = ev.ifindex
        if ifindex:
            name = resolver.ifname(ifindex)
            flow["interface"] = {"index": ifindex, "name": name} if name else {"index": ifindex}
        flow["Summary"] = summary

        if etype != _TRACE:
            rule_id = ev.policy_rule_id
            if rule_id:
                self._add_policies(flow, etype, verdict, drop, ev.policy_dir, rule_id)

        if node_name:
            return {"flow": flow, "node_name": node_name, "time": t}
        return {"flow": flow, "time": t}

    def _add_policies(
        self, flow: FlowDict, etype: int, verdict: str, drop: int, policy_dir: int, rule_id: int
    ) -> None:
        pdir = policy_dir if policy_dir < 3 else 0
        if etype == _DROP:
            key = _DENIED_KEYS[pdir] if drop in POLICY_DROP_REASONS else None
        elif verdict == "FORWARDED":
            key = _ALLOWED_KEYS[pdir]
        else:  # DROPPED, or AUDIT: the rule that would have denied it
            key = _DENIED_KEYS[pdir]
        if key is None:
            return
        policies = self._resolver.policies(rule_id)
        if policies:
            flow[key] = list(policies)
