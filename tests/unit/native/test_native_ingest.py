"""The native renderer's ring walk, tables and the Ingest fallbacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from observer import native
from observer.agent.ingest import Ingest
from observer.enrich import EndpointInfo, StaticResolver
from observer.errors import BpfError
from observer.metrics import AgentMetrics
from observer.native import _lib
from observer.parser import FlowBuilder, FlowDecoder
from observer.parser.summary import icmpv4_type_code, icmpv6_type_code
from observer.store import FlowStore

from . import records as R
from .ringfile import FileRing

OFFSET = 1_790_000_000_000_000_000


@pytest.fixture
def ring() -> Iterator[FileRing]:
    with FileRing(1 << 16) as r:
        yield r


def _ingest(ring: FileRing, resolver: Any = None, **kw: Any) -> Ingest:
    builder = FlowBuilder("node", resolver if resolver is not None else R.resolver(), "1.0")
    return Ingest(
        ring.reader(), FlowDecoder(), builder, FlowStore(4095), AgentMetrics(),
        wall_offset=lambda: OFFSET, **kw,
    )  # fmt: skip


def test_busy_record_stops_the_walk(native_lib: native.Library, ring: FileRing) -> None:
    ingest = _ingest(ring, native=True)
    ring.push(R.record(ts=1))
    busy = ring.push(R.record(ts=2), busy=True)
    ring.push(R.record(ts=3))
    assert ingest.drain() == 1
    assert ring.consumer_pos == busy
    assert ingest.drain() == 0
    ring.commit(busy)
    assert ingest.drain() == 2
    assert ring.consumer_pos == ring.producer_pos
    times = ingest.store.time_range(ingest.store.oldest_seq, ingest.store.next_seq)
    assert list(times) == [OFFSET + 1, OFFSET + 2, OFFSET + 3]
    ingest.close()


def test_limit_is_exact(native_lib: native.Library, ring: FileRing) -> None:
    ingest = _ingest(ring, native=True)
    for i in range(10):
        ring.push(R.record(ts=i))
    ring.push(R.record(ts=99)[:10])  # malformed: counts against the limit too
    assert ingest.drain(limit=4) == 4
    assert ingest.drain(limit=6) == 6
    assert ingest.drain() == 1
    assert len(ingest.store) == 10
    assert ingest.metrics.decode_errors == 1
    assert ingest.events == 11
    ingest.close()


def test_uuids_are_random_v4(native_lib: native.Library, ring: FileRing) -> None:
    ingest = _ingest(ring, native=True)
    for i in range(300):
        ring.push(R.record(ts=i))
    ingest.drain()
    uuids = [orjson.loads(x)["flow"]["uuid"] for x in ingest.store.data_range(0, 300)]
    assert len(set(uuids)) == 300
    for u in uuids:
        assert len(u) == 36 and u[14] == "4" and u[19] in "89ab"
        assert [len(p) for p in u.split("-")] == [8, 4, 4, 4, 12]
        int(u.replace("-", ""), 16)
    # every hex position varies (the PRNG is not stuck)
    for pos in (0, 9, 15, 20, 35):
        assert len({u[pos] for u in uuids}) > 4
    ingest.close()


def test_every_icmp_type_and_code(native_lib: native.Library, ring: FileRing) -> None:
    """The ICMP summary rule in C against summary.py for all 2 x 65536 type/code pairs."""
    renderer = native.FlowRenderer(native_lib, FlowBuilder("", StaticResolver(), "1"))
    nring = native.NativeRing(native_lib, ring.fd, ring.size)
    for l4, fmt, prefix in ((1, icmpv4_type_code, "ICMPv4 "), (58, icmpv6_type_code, "ICMPv6 ")):
        for t in range(256):
            for c in range(256):
                ring.push(R.record(l4=l4, it=t, ic=c, ts=c))
            got: list[bytes] = []
            while True:
                chunk = renderer.drain(nring, 0)
                got.extend(chunk.lines)
                if not chunk.more:
                    break
            assert len(got) == 256
            for c, line in enumerate(got):
                flow = orjson.loads(line)["flow"]
                assert flow["Summary"] == prefix + fmt(t, c), (l4, t, c)
                key = "ICMPv4" if l4 == 1 else "ICMPv6"
                assert flow["l4"][key] == {k: v for k, v in (("type", t), ("code", c)) if v}
    nring.close()
    renderer.close()


def test_counts_by_type_sub_type_and_protocol(native_lib: native.Library, ring: FileRing) -> None:
    renderer = native.FlowRenderer(native_lib, FlowBuilder("", StaticResolver(), "1"))
    nring = native.NativeRing(native_lib, ring.fd, ring.size)
    for _ in range(3):
        ring.push(R.record(type=4, sub_type=0, l4=17))
    for sub in range(256):
        ring.push(R.record(type=1, sub_type=sub, drop=sub, l4=6))
    ring.push(R.record(type=5, sub_type=0, ipv=0, l4=0, saddr="", daddr=""))
    total = 0
    while True:
        chunk = renderer.drain(nring, 0)
        total += chunk.records
        if not chunk.more:
            break
    assert total == 260
    counts = renderer.take_counts()
    assert counts[(4, 0, 17)] == 3
    assert counts[(5, 0, 0)] == 1
    assert all(counts[(1, sub, 6)] == 1 for sub in range(256))
    assert len(counts) == 258
    assert renderer.take_counts() == {}
    nring.close()
    renderer.close()


def test_closed_ring_raises_like_the_python_path(
    native_lib: native.Library, ring: FileRing
) -> None:
    ingest = _ingest(ring, native=True)
    ring.push(R.record())
    ingest.ring.close()
    with pytest.raises(BpfError):
        ingest.drain()
    assert not ingest.native


class _OtherResolver:
    def by_ip(self, ip: str) -> EndpointInfo | None:
        return None

    def ifname(self, ifindex: int) -> str | None:
        return None

    def policies(self, rule_id: int) -> list[dict[str, Any]] | None:
        return None


def test_other_resolvers_keep_the_python_path(native_lib: native.Library, ring: FileRing) -> None:
    ingest = _ingest(ring, _OtherResolver())
    assert not ingest.native
    assert ingest.native_problem is not None and "StaticResolver" in ingest.native_problem
    ring.push(R.record(sid=5))
    assert ingest.drain() == 1
    assert orjson.loads(ingest.store.data_range(0, 1)[0])["flow"]["source"] == {"identity": 5}
    with pytest.raises(native.NativeError, match="StaticResolver"):
        _ingest(ring, _OtherResolver(), native=True)


def test_missing_library(monkeypatch: pytest.MonkeyPatch, ring: FileRing, tmp_path: Path) -> None:
    monkeypatch.setenv(_lib.LIB_ENV, str(tmp_path / "nope.so"))
    assert native.load() is None
    problem = native.load_problem()
    assert problem is not None and "nope.so not found" in problem
    ingest = _ingest(ring)
    assert not ingest.native and ingest.native_problem == problem
    ring.push(R.record())
    assert ingest.drain() == 1 and len(ingest.store) == 1
    with pytest.raises(native.NativeError, match="not found"):
        _ingest(ring, native=True)


def test_broken_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not an ELF file")
    monkeypatch.setenv(_lib.LIB_ENV, str(bad))
    assert native.load() is None
    assert "cannot load" in (native.load_problem() or "")


def test_disabled_by_choice(native_lib: native.Library, ring: FileRing) -> None:
    ingest = _ingest(ring, native=False)
    assert not ingest.native and ingest.native_problem == "disabled"


def test_a_failing_renderer_falls_back_to_python(
    native_lib: native.Library, ring: FileRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = _ingest(ring, native=True)
    for i in range(5):
        ring.push(R.record(ts=i))
    assert ingest.drain(limit=2) == 2
    renderer = ingest._renderer
    assert renderer is not None

    def broken(*args: Any, **kw: Any) -> native.Chunk:
        raise native.NativeError("hb_drain failed: -22")

    monkeypatch.setattr(renderer, "drain", broken)
    assert ingest.drain() == 3  # the rest through the Python path, in the same call
    assert not ingest.native and ingest.native_problem == "hb_drain failed: -22"
    times = ingest.store.time_range(ingest.store.oldest_seq, ingest.store.next_seq)
    assert list(times) == [OFFSET + i for i in range(5)]
    assert sum(ingest.metrics.flows.values()) == 5


def test_seeded_uuids_repeat(native_lib: native.Library, ring: FileRing) -> None:
    nring = native.NativeRing(native_lib, ring.fd, ring.size)
    runs = []
    for seed in (1, 1, 2, None):
        renderer = native.FlowRenderer(
            native_lib, FlowBuilder("", StaticResolver(), "1"), seed=seed
        )
        for i in range(8):
            ring.push(R.record(ts=i))
        runs.append([orjson.loads(x)["flow"]["uuid"] for x in renderer.drain(nring, 0).lines])
        renderer.close()
    assert runs[0] == runs[1]
    assert len({*runs[0], *runs[2], *runs[3]}) == 24
    nring.close()
