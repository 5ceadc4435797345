"""The native ingest path against the Python one: byte-identical lines, same metrics.

Every test runs the same records through ``Ingest`` twice, once with the native renderer
(``native=True``) and once with the Python path (decode + FlowBuilder.build + orjson),
over a ring laid out like the kernel's, and compares the stored lines, their times, the
``--print-flows`` output, the metrics and the event counts. UUIDs are random on both
paths, so they are replaced before the comparison and checked on their own.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer import native
from observer.agent.ingest import Ingest
from observer.enrich import ResolverSnapshot, StaticResolver
from observer.metrics import AgentMetrics
from observer.parser import FlowBuilder, FlowDecoder
from observer.store import FlowStore

from . import records as R
from .ringfile import FileRing

OFFSET = 1_790_000_000_123_456_789
UUID_RE = re.compile(rb'"uuid":"([^"]*)"')
UUID_V4 = re.compile(rb"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@dataclass
class Run:
    lines: list[bytes]
    times: list[int]
    printed: bytes
    metrics: AgentMetrics
    events: int
    drained: list[int]
    uuids: list[bytes]


def _strip(data: bytes, uuids: list[bytes]) -> bytes:
    def sub(m: re.Match[bytes]) -> bytes:
        uuids.append(m.group(1))
        return b'"uuid":"-"'

    return UUID_RE.sub(sub, data)


def ingest_run(
    recs: Sequence[bytes],
    *,
    use_native: bool,
    resolver: StaticResolver,
    node: str = "default/node-a",
    version: str = "v0.1.0",
    start: int = 0,
    discard: Callable[[int], bool] = lambda i: False,
    chunks: int = 1,
    between: Callable[[StaticResolver, int], None] | None = None,
    offset: int = OFFSET,
) -> Run:
    """Push ``recs`` (in ``chunks`` rounds, ``between`` called after each round's drain)."""
    with FileRing(1 << 16) as ring:
        ring.set_positions(start)
        reader = ring.reader()
        store = FlowStore(65535)
        out = io.BytesIO()
        ingest = Ingest(
            reader,
            FlowDecoder(),
            FlowBuilder(node, resolver, version),
            store,
            AgentMetrics(),
            out,
            native=use_native,
            wall_offset=lambda: offset,
        )
        assert ingest.native is use_native
        drained = []
        per = -(-len(recs) // chunks) if recs else 0
        for c in range(chunks):
            for i, rec in enumerate(recs[c * per : (c + 1) * per]):
                ring.push(rec, discard=discard(c * per + i))
            drained.append(ingest.drain())
            assert ring.consumer_pos == ring.producer_pos
            if between is not None:
                between(resolver, c)
        ingest.close()
        reader.close()
    uuids: list[bytes] = []
    raw = store.data_range(store.oldest_seq, store.next_seq)
    lines = [_strip(line, uuids) for line in raw]
    printed = _strip(out.getvalue(), [])
    return Run(
        lines,
        list(store.time_range(store.oldest_seq, store.next_seq)),
        printed,
        ingest.metrics,
        ingest.events,
        drained,
        uuids,
    )


def assert_same(recs: Sequence[bytes], **kw: Any) -> Run:
    resolver_factory = kw.pop("resolver_factory", R.resolver)
    c = ingest_run(recs, use_native=True, resolver=resolver_factory(), **kw)
    p = ingest_run(recs, use_native=False, resolver=resolver_factory(), **kw)
    for i, (a, b) in enumerate(zip(c.lines, p.lines, strict=False)):
        assert a == b, f"line {i} differs\nnative: {a!r}\npython: {b!r}"
    assert len(c.lines) == len(p.lines)
    assert c.times == p.times
    assert c.printed == p.printed
    assert c.printed == b"".join(line + b"\n" for line in c.lines)
    assert c.events == p.events
    assert c.drained == p.drained
    assert c.metrics.decode_errors == p.metrics.decode_errors
    assert dict(c.metrics.flows) == dict(p.metrics.flows)
    assert dict(c.metrics.drops) == dict(p.metrics.drops)
    assert all(UUID_V4.match(u) for u in c.uuids), c.uuids[:3]
    assert len(set(c.uuids)) == len(c.uuids)
    return c


@pytest.fixture(autouse=True)
def _lib(native_lib: native.Library) -> None:
    """Every test here needs the library (built by the fixture)."""


# --- the property --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    recs=st.lists(R.flow_records(), min_size=1, max_size=40),
    node=st.sampled_from(["default/node-a", "", 'kind-"wörker"\\1']),
    version=st.sampled_from(["v0.1.0", "1.2.3-dev+\u00e9"]),
    start=st.sampled_from([0, (1 << 16) - 8, (1 << 16) - 64, (1 << 16) * 3 - 200]),
    discard_every=st.sampled_from([0, 3]),
    resolver_kind=st.sampled_from(["full", "empty", "no-host"]),
)
def test_native_lines_equal_python_lines(
    recs: list[bytes],
    node: str,
    version: str,
    start: int,
    discard_every: int,
    resolver_kind: str,
) -> None:
    def factory() -> StaticResolver:
        if resolver_kind == "empty":
            return StaticResolver()
        return R.resolver(host=resolver_kind == "full")

    assert_same(
        recs,
        resolver_factory=factory,
        node=node,
        version=version,
        start=start,
        discard=(lambda i: i % discard_every == 1) if discard_every else (lambda i: False),
    )


# --- the cases the property must not miss ---------------------------------------------------


def _all_shapes() -> list[bytes]:
    recs = []
    for etype, sub in ((4, 5), (4, 0), (1, 133), (1, 181), (1, 159), (5, 0)):
        for ipv, sa, da in ((4, "10.0.0.1", "10.0.0.2"), (6, "fd00::1", "fd00::2"), (0, "", "")):
            for l4 in (6, 17, 132, 1, 58, 47) if ipv else (0,):
                rec = R.record(
                    type=etype, sub_type=sub, ipv=ipv, l4=l4, saddr=sa, daddr=da,
                    drop=sub if etype == 1 else 0, pdir=1 if etype != 4 else 0, rule=7,
                    it=3, ic=3, sid=5, did=6,
                )  # fmt: skip
                recs.append(rec)
    return recs


def test_every_type_and_protocol() -> None:
    run = assert_same(_all_shapes())
    kinds = {orjson.loads(line)["flow"]["Summary"].split(" ")[0] for line in run.lines}
    assert kinds == {"TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "IPv4", "IPv6", "Ethernet"}


def test_policies_interfaces_and_endpoints_are_enriched() -> None:
    recs = [
        R.record(type=5, sub_type=0, pdir=1, pmt=2, rule=7, ifindex=41),  # allowed by
        R.record(type=5, sub_type=0, pdir=2, drop=133, rule=8),  # denied by
        R.record(type=5, sub_type=0, pdir=2, aud=1, rule=7),  # audit: denied by
        R.record(type=1, sub_type=181, drop=181, pdir=1, rule=8, ifindex=42),  # policy drop
        R.record(type=1, sub_type=134, drop=134, pdir=1, rule=7),  # not a policy drop
        R.record(type=5, sub_type=0, pdir=1, rule=9),  # rule with no policies
        R.record(type=5, sub_type=0, pdir=0, rule=7),  # no direction
        R.record(saddr="10.0.0.3", daddr="192.0.2.1", ifindex=2**32 - 1),
        R.record(ipv=6, saddr="fd00::fe", daddr="fd00::1:0:0:0:5", l4=58, it=128),
        R.record(saddr="10.0.0.4", daddr="10.0.0.254"),
    ]
    run = assert_same(recs)
    flows = [orjson.loads(line)["flow"] for line in run.lines]
    assert flows[0]["ingress_allowed_by"] == [R.POLICY]
    assert flows[0]["interface"] == {"index": 41, "name": R.INTERFACES[41]}
    assert flows[1]["egress_denied_by"] == [R.POLICY, R.POLICY2]
    assert flows[2]["verdict"] == "AUDIT" and "egress_denied_by" in flows[2]
    assert flows[3]["ingress_denied_by"] == [R.POLICY, R.POLICY2]
    assert flows[3]["interface"] == {"index": 42}
    assert not any(k.endswith("_by") for k in flows[4])
    assert not any(k.endswith("_by") for k in flows[5])
    assert not any(k.endswith("_by") for k in flows[6])
    assert flows[7]["source"]["pod_name"] == "pöd\\x\n"
    assert flows[7]["destination"] == {"identity": 2, "labels": ["reserved:world"]}
    assert flows[8]["source"] == {"identity": 1, "labels": ["reserved:host"]}
    assert flows[8]["destination"] == {"identity": 777}
    assert "source" not in flows[9]


def test_records_for_python_keep_their_place() -> None:
    """Unknown types and dotted-tail IPv6 addresses go through Python, in ring order."""
    recs = []
    for i in range(30):
        if i % 7 == 3:
            recs.append(R.record(ipv=6, saddr="::ffff:10.0.0.1", daddr="fd00::2", ts=i))
        elif i % 7 == 5:
            recs.append(R.record(type=2, ts=i))  # debug: not a flow event (decode error)
        else:
            recs.append(R.record(ts=i, sport=i + 1))
    run = assert_same(recs)
    assert run.metrics.decode_errors == 4
    assert [
        orjson.loads(x)["flow"].get("l4", {}).get("TCP", {}).get("source_port") for x in run.lines
    ][:3] == [1, 2, 3]


def test_malformed_records_are_counted_and_skipped() -> None:
    good = R.record()
    bad = [
        good[:0],
        good[:16],
        good[: R.SIZE - 1],
        R.record(len=R.SIZE - 1),
        R.record(len=R.SIZE + 8),  # longer than the record
        R.record(ipv=5),
        R.record(ipv=0, l4=6, saddr="", daddr=""),
        R.record(type=5, pdir=3),
        R.record(type=1, pdir=255),
        R.record(ts=2**64 - 1),  # wall time past int64
    ]
    recs = [x for b in bad for x in (b, good)]
    run = assert_same(recs)
    assert run.metrics.decode_errors == len(bad)
    assert len(run.lines) == len(bad)
    assert run.events == len(recs)


def test_trace_fields_past_the_name_tables() -> None:
    recs = [
        R.record(obs=obs, ct=ct, reply=reply)
        for obs in (0, 5, 13, 14, 200)
        for ct in (0, 4, 8, 9, 255)
        for reply in (0, 1, 7)
    ]
    assert_same(recs)


def test_drop_reason_names_and_numbers() -> None:
    codes = [1, 2, 15, 130, 133, 159, 160, 205, 206, 255, 256, 2**31 - 1, 2**31, 2**32 - 1]
    recs = [R.record(type=1, sub_type=c & 0xFF, drop=c, pdir=2, rule=7) for c in codes]
    recs += [R.record(type=5, sub_type=0, drop=c, pdir=1) for c in codes]
    assert_same(recs)


def test_tcp_flags_and_ports() -> None:
    recs = [
        R.record(flags=f, sport=s, dport=d, l4=6)
        for f in range(256)
        for s, d in ((0, 0), (1, 0), (0, 65535), (80, 8080))
        if (f + s + d) % 3 == 0 or f < 16
    ]
    assert_same(recs)


def test_timestamps_fraction_digits() -> None:
    base = 1_700_000_000 * 10**9
    stamps = [0, 1, 999, 1_000, 1_000_000, 123_000_000, 123_456_000, 123_456_789, 999_999_999]
    recs = [R.record(ts=s) for s in stamps]
    for off in (0, base, -base, -(2**62), 2**62, 951_782_400 * 10**9, 4_107_542_400 * 10**9):
        assert_same(recs, offset=off)


def test_resolver_changes_are_picked_up() -> None:
    """The renderer reloads its tables when the resolver's snapshot is replaced."""
    recs = [R.record(saddr="10.9.9.9", daddr="10.0.0.1", ifindex=99, rule=77, type=5, pdir=1)] * 4

    def change(resolver: StaticResolver, round_: int) -> None:
        snap = resolver.snapshot
        resolver.replace(
            ResolverSnapshot(
                endpoints={**snap.endpoints, "10.9.9.9": R.ENDPOINTS[1][1]},
                host_ips=snap.host_ips,
                interfaces={**snap.interfaces, 99: f"veth{round_}"},
                policies={**snap.policies, 77: (R.POLICY,)},
            )
        )

    run = assert_same(recs, chunks=2, between=change)
    first, last = orjson.loads(run.lines[0])["flow"], orjson.loads(run.lines[-1])["flow"]
    assert first["source"]["identity"] == 2 and last["source"]["pod_name"] == "db-0"
    assert first["interface"] == {"index": 99} and last["interface"]["name"] == "veth0"
    assert "ingress_allowed_by" not in first and last["ingress_allowed_by"] == [R.POLICY]


def test_discarded_records_are_skipped() -> None:
    recs = [R.record(ts=i) for i in range(20)]
    run = assert_same(recs, discard=lambda i: i % 2 == 0)
    assert len(run.lines) == 10


def test_more_than_one_batch() -> None:
    recs = [R.record(ts=i, sport=i % 65536, ipv=6 if i % 2 else 4,
                     saddr="fd00::1" if i % 2 else "10.0.0.1",
                     daddr="fd00::2" if i % 2 else "10.0.0.2") for i in range(2500)]  # fmt: skip
    run = assert_same(recs, chunks=5)
    assert len(run.lines) == 2500
