"""The agent's native ingest path on a real BPF ring buffer fed by the real datapath.

The records the datapath emits are copied out of the ring without consuming them (a
read-only mapping of our own), then ``Ingest`` with the native renderer drains the ring;
every stored line must equal ``orjson.dumps(FlowBuilder.build(decode(record), wall))``
(UUIDs aside). Under HUBBLECTL_REQUIRE_BPF=1 a missing native library fails this tier.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from observer import native
from observer.agent.ingest import Ingest
from observer.bpf import loader
from observer.bpf.loader import AGG_NONE
from observer.bpf.ringbuf import BUSY_BIT, DISCARD_BIT, HDR_SIZE
from observer.enrich import EndpointInfo, ResolverSnapshot, StaticResolver
from observer.metrics import AgentMetrics
from observer.parser import FlowBuilder, FlowDecoder
from observer.store import FlowStore

from . import packets as P
from .conftest import Datapath, open_datapath

REQUIRE_BPF = os.environ.get("HUBBLECTL_REQUIRE_BPF") == "1"
OFFSET = 1_790_000_000_000_000_000
UUID = re.compile(rb'"uuid":"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"')
LO_IFINDEX = 1


@pytest.fixture(scope="module")
def native_lib(bpf_build_dir: Path) -> native.Library:
    """bpf_build_dir has run `make -C native`; the library must load."""
    try:
        return native.require()
    except native.NativeError as e:
        if REQUIRE_BPF:
            pytest.fail(f"native ingest library unavailable (HUBBLECTL_REQUIRE_BPF=1): {e}")
        pytest.skip(f"native ingest library unavailable: {e}")


@pytest.fixture
def dp(bpf_build_dir: Path, pin_root: Path, native_lib: native.Library) -> Iterator[Datapath]:
    d = open_datapath(bpf_build_dir, pin_root, ring_bytes=1 << 16)
    d.configure(aggregation_level=AGG_NONE)
    loader.set_endpoint(d.obj, LO_IFINDEX, ep_id=7, identity=4242)
    try:
        yield d
    finally:
        d.close()


def _peek(dp: Datapath) -> list[bytes]:
    """The committed records between the consumer and producer positions, not consumed."""
    page = mmap.PAGESIZE
    size = dp.rb.size
    ring = dp.obj.map(loader.RING_MAP)
    with (
        mmap.mmap(ring.fd, page, prot=mmap.PROT_READ) as cons_map,
        mmap.mmap(ring.fd, page + 2 * size, prot=mmap.PROT_READ, offset=page) as prod_map,
    ):
        cons = struct.unpack_from("<Q", cons_map, 0)[0]
        prod = struct.unpack_from("<Q", prod_map, 0)[0]
        out = []
        while cons < prod:
            off = page + (cons & (size - 1))
            hdr = struct.unpack_from("<I", prod_map, off)[0]
            assert not hdr & BUSY_BIT
            n = hdr & ~(BUSY_BIT | DISCARD_BIT)
            if not hdr & DISCARD_BIT:
                out.append(prod_map[off + HDR_SIZE : off + HDR_SIZE + n])
            cons += (n + HDR_SIZE + 7) & ~7
        return out


def _builder() -> FlowBuilder:
    labels = ("k8s:app=a", "k8s:io.kubernetes.pod.namespace=default")
    snap = ResolverSnapshot.from_endpoints(
        [
            (["10.1.0.1", "fd00::1"], EndpointInfo(7, 4242, "default", "client", labels, "c1")),
            (["10.1.0.2"], EndpointInfo(8, 4343, "default", "server", labels, "c1")),
        ],
        host_ips=["fd00::2"],
        interfaces={LO_IFINDEX: "lo"},
    )
    return FlowBuilder("c1/node", StaticResolver(snap), "0.1.0")


def _frames() -> list[bytes]:
    frames = []
    for src, dst in (("10.1.0.1", "10.1.0.2"), ("fd00::1", "fd00::2")):
        v6 = ":" in src
        for flags in (0x02, 0x12, 0x10, 0x18, 0x11, 0x04):
            frames.append(P.tcp_frame(src, dst, 40000, 80, flags))
            frames.append(P.tcp_frame(dst, src, 80, 40000, flags))
        frames.append(P.udp_frame(src, dst, 5353, 53, b"q"))
        frames.append(P.icmp_frame(src, dst, 128 if v6 else 8, ident=7, seq=1))
        frames.append(P.icmp_frame(src, dst, 1 if v6 else 3, code=4))
    frames.append(P.eth(P.ETH_P_ARP, b"\0" * 28))
    return frames


def _expected(records: list[bytes], builder: FlowBuilder) -> list[bytes]:
    decoder = FlowDecoder()
    return [
        UUID.sub(b'"uuid":"-"', orjson.dumps(builder.build(ev, ev.ts_ns + OFFSET)))
        for ev in map(decoder.decode, records)
    ]


def test_native_lines_equal_the_python_builder(dp: Datapath) -> None:
    out = io.BytesIO()
    builder = _builder()
    ingest = Ingest(
        dp.rb, FlowDecoder(), builder, FlowStore(4095), AgentMetrics(), out,
        native=True, wall_offset=lambda: OFFSET,
    )  # fmt: skip
    assert ingest.native
    frames = _frames()
    for frame in frames:
        for prog in dp.fds:
            loader.prog_test_run(dp.fds[prog], frame)
    records = _peek(dp)
    assert len(records) >= 2 * (len(frames) - 1)  # every IP frame, both programs
    assert ingest.drain() == len(records)
    assert dp.rb.available() == 0
    lines = ingest.store.data_range(0, len(records))
    assert [UUID.sub(b'"uuid":"-"', x) for x in lines] == _expected(records, _builder())
    assert out.getvalue() == b"".join(x + b"\n" for x in lines)
    assert ingest.metrics.decode_errors == 0
    assert sum(ingest.metrics.flows.values()) == len(records)
    ingest.close()


def test_native_across_the_end_of_the_ring(dp: Datapath) -> None:
    """Several fills of a 64 KiB ring: records wrap, positions pass the size many times."""
    ingest = Ingest(
        dp.rb, FlowDecoder(), _builder(), FlowStore(65535), AgentMetrics(),
        native=True, wall_offset=lambda: OFFSET,
    )  # fmt: skip
    frame = P.tcp_frame("10.1.0.1", "10.1.0.2", 40000, 80, 0x10)
    fd = dp.fds[loader.PROG_FROM_ENDPOINT]
    total = 0
    for round_ in range(12):
        loader.prog_test_run(fd, frame, repeat=300 + round_ * 7)
        records = _peek(dp)
        before = ingest.store.next_seq
        assert ingest.drain() == len(records)
        total += len(records)
        lines = ingest.store.data_range(before, ingest.store.next_seq)
        assert [UUID.sub(b'"uuid":"-"', x) for x in lines] == _expected(records, _builder())
    assert total > 3 * (1 << 16) // (120 + 8)
    assert loader.read_lost(dp.obj).total == 0
    ingest.close()
