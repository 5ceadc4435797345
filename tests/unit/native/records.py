"""Raw ring-buffer records and resolvers for the native-vs-Python comparisons.

Records are built field by field at the byte level (so values the decoder reads loosely,
such as is_reply = 2, and malformed records can be made too).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import strategies as st

from observer.bpf import structs
from observer.enrich import EndpointInfo, ResolverSnapshot, StaticResolver
from observer.parser.dropreasons import DROP_REASON_NAMES

SIZE = structs.FLOW_EVENT_SIZE

_DEFAULTS: dict[str, Any] = {
    "type": structs.EVENT_TRACE, "sub_type": 5, "len": SIZE, "cpu": 0, "ts": 1_000,
    "ifindex": 40, "ep_id": 1, "pkt_len": 74, "drop": 0, "obs": 5, "ipv": 4, "l4": 6,
    "flags": 0x02, "ct": 1, "reply": 0, "it": 0, "ic": 0, "sport": 40000, "dport": 80,
    "saddr": "10.0.0.1", "daddr": "10.0.0.2", "esrc": b"\x02\0\0\0\0\1", "edst": b"\xee" * 6,
    "sid": 0, "did": 0, "pmt": 0, "pdir": 0, "aud": 0, "rr": 2, "rule": 0, "aggp": 1,
    "aggb": 74,
}  # fmt: skip


def addr16(text: str) -> bytes:
    return ipaddress.ip_address(text).packed.ljust(16, b"\0") if text else bytes(16)


def record(*, extra: bytes = b"", **f: Any) -> bytes:
    """One struct hb_flow_event; addresses as text (or 16 raw bytes), ``extra`` appended."""
    v = dict(_DEFAULTS)
    v.update(f)
    sa = v["saddr"] if isinstance(v["saddr"], bytes) else addr16(v["saddr"])
    da = v["daddr"] if isinstance(v["daddr"], bytes) else addr16(v["daddr"])
    packed = structs.FLOW_EVENT.pack(
        v["type"], v["sub_type"], v["len"], v["cpu"], v["ts"], v["ifindex"], v["ep_id"],
        v["pkt_len"], v["drop"], v["obs"], v["ipv"], v["l4"], v["flags"], v["ct"],
        v["reply"], v["it"], v["ic"], v["sport"], v["dport"], sa, da, v["esrc"],
        v["edst"], v["sid"], v["did"], v["pmt"], v["pdir"], v["aud"], v["rr"], v["rule"],
        v["aggp"], 0, v["aggb"],
    )  # fmt: skip
    return packed + extra


# --- the resolver the records are enriched with ---------------------------------------------

LABELS = ("k8s:app=web", "k8s:io.kubernetes.pod.namespace=default")
ENDPOINTS: list[tuple[list[str], EndpointInfo]] = [
    (["10.0.0.1", "fd00::1"], EndpointInfo(11, 20011, "default", "web-1", LABELS, "default")),
    (["10.0.0.2", "fd00::2"], EndpointInfo(12, 20012, "prod", "db-0", ("k8s:app=db",), "c1")),
    # names JSON must escape, and non-ASCII
    (["10.0.0.3"], EndpointInfo(13, 20013, 'ns"q', "pöd\\x\n", ('k8s:a="b"', "k8s:ü=\t"), "")),
    # an endpoint whose Endpoint JSON is empty (omitted)
    (["10.0.0.4", "fd00:0:0:1::4"], EndpointInfo(0, 0)),
    # only an identity
    (["fd00::1:0:0:0:5"], EndpointInfo(0, 777)),
]
HOST_IPS = ["10.0.0.254", "fd00::fe", "10.0.0.1"]  # 10.0.0.1 is also an endpoint: it wins
POLICY = {
    "name": "allow-web",
    "namespace": "default",
    "labels": ["k8s:io.cilium.k8s.policy.name=allow-web"],
    "revision": "7",
    "kind": "CiliumNetworkPolicy",
}
POLICY2 = {"name": "deny-\u00e9", "labels": [], "revision": "18446744073709551615", "kind": "x"}
POLICIES: dict[int, list[dict[str, Any]]] = {7: [POLICY], 8: [POLICY, POLICY2], 9: []}
INTERFACES = {40: "lxc0001", 41: 'lxc\u00e9"2', 42: "", 2**32 - 1: "big"}

KNOWN_V4 = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.254"]
KNOWN_V6 = ["fd00::1", "fd00::2", "fd00:0:0:1::4", "fd00::1:0:0:0:5", "fd00::fe"]
OTHER_V4 = ["0.0.0.0", "192.0.2.10", "255.255.255.255", "10.0.0.100"]
# zero runs of every shape, and the IPv4-compatible/-mapped forms left to Python
OTHER_V6 = [
    "::", "::1", "1::", "fd00:0:0:1:0:0:0:1", "fd00:1:0:0:1:0:0:1", "1:0:2:0:3:0:4:0",
    "2001:db8::ff00:42:8329", "fe80::1ff:fe23:4567:890a", "1:2:3:4:5:6:7:8", "0:1::",
    "::ffff:10.0.0.1", "::10.0.0.1", "::ffff:0:1", "::1:0:0:1", "::0.0.1.0",
]  # fmt: skip


def resolver(
    *, endpoints: bool = True, host: bool = True, interfaces: bool = True, policies: bool = True
) -> StaticResolver:
    return StaticResolver(
        ResolverSnapshot.from_endpoints(
            ENDPOINTS if endpoints else [],
            host_ips=HOST_IPS if host else [],
            interfaces=INTERFACES if interfaces else {},
            policies=POLICIES if policies else {},
        )
    )


# --- strategies -----------------------------------------------------------------------------

_u8 = st.integers(0, 0xFF)
_u16 = st.one_of(st.just(0), st.integers(1, 0xFFFF))
_u32 = st.one_of(st.just(0), st.integers(1, 0xFFFFFFFF))
_drop_codes = st.one_of(
    st.just(0),
    st.sampled_from(sorted(DROP_REASON_NAMES)),
    st.sampled_from([2, 15, 133, 159, 181, 206, 255, 256, 1000, 2**31 - 1, 2**31, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)
# ns with 0, 3, 6 and 9 fraction digits; near the int64 edge and past it (decode errors)
_ts = st.one_of(
    st.integers(0, 10**6).map(lambda s: s * 10**9),
    st.integers(0, 10**9).map(lambda ms: ms * 10**6),
    st.integers(0, 10**12).map(lambda us: us * 10**3),
    st.integers(0, 2**62),
    st.integers(2**63 - 2 * 10**18, 2**64 - 1),
)
_mac = st.one_of(st.just(bytes(6)), st.binary(min_size=6, max_size=6))


def _addr(ipv: int) -> st.SearchStrategy[bytes]:
    if ipv == 4:
        return st.one_of(
            st.sampled_from(KNOWN_V4 + OTHER_V4).map(addr16),
            st.binary(min_size=4, max_size=4).map(lambda b: b + bytes(12)),
            st.binary(min_size=16, max_size=16),  # the 12 bytes past an IPv4 address are ignored
        )
    if ipv == 6:
        return st.one_of(
            st.sampled_from(KNOWN_V6 + OTHER_V6).map(addr16),
            st.binary(min_size=16, max_size=16),
            st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xABC]), min_size=8, max_size=8).map(
                lambda w: b"".join(x.to_bytes(2, "big") for x in w)
            ),
        )
    return st.one_of(st.just(bytes(16)), st.binary(min_size=16, max_size=16))


@st.composite
def flow_records(draw: st.DrawFn) -> bytes:
    """Any record, mostly valid: all three types, every protocol the builder knows, and now
    and then an unknown type, a bad field or a short/long record."""
    etype = draw(st.sampled_from([1, 4, 5, 1, 4, 5, 1, 4, 5, 0, 2, 3, 6, 255]))
    ipv = draw(st.sampled_from([4, 4, 6, 6, 0, 0, 5, 255]))
    l4 = draw(st.sampled_from([6, 17, 132, 1, 58, 0, 47, 255])) if ipv else 0
    if ipv == 0 and draw(st.integers(0, 9)) == 0:
        l4 = draw(st.integers(1, 255))  # malformed: transport on a non-IP packet
    pdir = draw(st.sampled_from([0, 1, 2])) if draw(st.integers(0, 15)) else draw(_u8)
    fields = {
        "type": etype,
        "sub_type": draw(st.one_of(_u8, st.sampled_from([0, 5, 133]))),
        "cpu": draw(_u32),
        "ts": draw(_ts),
        "ifindex": draw(st.one_of(st.sampled_from([0, 40, 41, 42, 43, 2**32 - 1]), _u32)),
        "ep_id": draw(_u32),
        "pkt_len": draw(_u32),
        "drop": draw(_drop_codes),
        "obs": draw(st.one_of(st.sampled_from([0, 5, 1, 2, 3, 4, 13, 14]), _u8)),
        "ipv": ipv,
        "l4": l4,
        "flags": draw(_u8),
        "ct": draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 8, 9]), _u8)),
        "reply": draw(st.sampled_from([0, 1, 2, 255])),
        "it": draw(st.one_of(st.sampled_from([0, 3, 8, 11, 128, 129, 1, 4]), _u8)),
        "ic": draw(st.one_of(st.sampled_from([0, 1, 3, 4, 9]), _u8)),
        "sport": draw(_u16),
        "dport": draw(_u16),
        "saddr": draw(_addr(ipv)),
        "daddr": draw(_addr(ipv)),
        "esrc": draw(_mac),
        "edst": draw(_mac),
        "sid": draw(_u32),
        "did": draw(_u32),
        "pmt": draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4]), _u8)),
        "pdir": pdir,
        "aud": draw(st.sampled_from([0, 0, 1, 2])),
        "rr": draw(_u8),
        "rule": draw(st.one_of(st.sampled_from([0, 7, 8, 9, 10]), _u32)),
        "aggp": draw(_u32),
        "aggb": draw(st.integers(0, 2**64 - 1)),
    }
    shape = draw(st.integers(0, 19))
    if shape == 0:  # longer record (a newer ABI): accepted
        extra = draw(st.binary(min_size=1, max_size=24))
        return record(len=SIZE + len(extra), extra=extra, **fields)
    if shape == 1:  # header length disagrees with the record
        return record(len=draw(st.sampled_from([0, 16, SIZE - 1, SIZE + 1, 0xFFFF])), **fields)
    if shape == 2:  # truncated record
        return record(**fields)[: draw(st.integers(0, SIZE - 1))]
    return record(**fields)
