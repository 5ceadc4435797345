"""observer.bpf.ringbuf.RingBuffer against real BPF ring buffers.

bpf/tests/ringbuf_test.c produces records of any length (and discarded ones), so the
reader is tested across the end of the ring; the datapath itself is used for the
wake-up policy (BPF_RB_NO_WAKEUP below the fill mark, FORCE_WAKEUP above it).
"""

from __future__ import annotations

import random
import select
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from observer.bpf import loader, structs
from observer.bpf.loader import AGG_NONE, BpfObject
from observer.bpf.ringbuf import RingBuffer
from observer.errors import BpfError

from . import packets as P
from .conftest import open_datapath

RECORD = structs.FLOW_EVENT_SIZE + 8  # bytes one datapath record takes in the ring


class Producer:
    def __init__(self, obj: BpfObject) -> None:
        self.obj = obj
        self.fd = obj.prog_fd("hbt_ring_emit")
        ring = obj.map("hbt_ring")
        self.rb = RingBuffer(ring.fd, ring.max_entries)

    def emit(self, length: int, fill: int = 0, discard: bool = False) -> None:
        frame = P.eth(0x88B5, struct.pack("<HBB", length, int(discard), fill & 0xFF) + b"\0" * 60)
        assert loader.prog_test_run(self.fd, frame).retval == 0


def _payload(length: int, fill: int) -> bytes:
    return bytes((fill + i) & 0xFF for i in range(length))


@pytest.fixture
def producer(bpf_build_dir: Path) -> Iterator[Producer]:
    obj = BpfObject.open(bpf_build_dir / "tests" / "ringbuf_test.o", None)
    p = Producer(obj)
    try:
        yield p
    finally:
        p.rb.close()
        obj.close()


def test_records_of_any_length_survive_wrapping(producer: Producer) -> None:
    rng = random.Random(1234)
    expected: list[bytes] = []
    got: list[bytes] = []
    in_ring = 0
    for i in range(3000):
        if rng.random() < 0.1:
            producer.emit(0, discard=True)
            in_ring += 48
        else:
            length = rng.choice([0, 1, 7, 8, 9, 63, 100, 255, 256, rng.randrange(257)])
            producer.emit(length, fill=i)
            expected.append(_payload(length, i))
            in_ring += (length + 8 + 7) & ~7
        if in_ring > 2048 or rng.random() < 0.2:
            got.extend(producer.rb.drain())
            assert producer.rb.available() == 0
            in_ring = 0
    got.extend(producer.rb.drain())
    assert producer.rb.consumer_pos == producer.rb.producer_pos > 20 * 4096  # wrapped many times
    assert len(got) == len(expected)
    assert got == expected


def test_drain_returns_at_most_max_records_and_keeps_the_rest(producer: Producer) -> None:
    for i in range(10):
        producer.emit(16, fill=i)
    first = producer.rb.drain(max_records=3)
    assert first == [_payload(16, i) for i in range(3)]
    assert producer.rb.available() == 7 * 24
    assert producer.rb.drain() == [_payload(16, i) for i in range(3, 10)]
    assert producer.rb.drain() == []


def test_discarded_records_are_skipped(producer: Producer) -> None:
    producer.emit(0, discard=True)
    producer.emit(5, fill=1)
    producer.emit(0, discard=True)
    assert producer.rb.drain() == [_payload(5, 1)]
    assert producer.rb.available() == 0


def test_closed_ring_buffer_refuses_use(producer: Producer) -> None:
    producer.rb.close()
    producer.rb.close()  # idempotent
    assert producer.rb.closed
    with pytest.raises(BpfError, match="closed ring buffer"):
        producer.rb.drain()


@pytest.mark.parametrize("size", [0, 1000, 4096 * 3], ids=["zero", "not-pages", "not-power-of-two"])
def test_bad_sizes_are_refused(producer: Producer, size: int) -> None:
    with pytest.raises(BpfError):
        RingBuffer(producer.obj.map_fd("hbt_ring"), size)


# (wakeup_bytes, packets sent, whether the epoll fd must become readable)
WAKEUP_CASES = [
    (1 << 30, 3, False),  # below the mark: submitted without waking anyone
    (0, 1, True),  # mark 0: every record wakes
    (3 * RECORD, 2, False),
    (3 * RECORD, 3, True),  # the third record brings the unread data to the mark
]


@pytest.mark.parametrize(
    ("wakeup_bytes", "count", "woken"),
    WAKEUP_CASES,
    ids=["never", "always", "below-mark", "at-mark"],
)
def test_consumer_is_woken_only_past_the_fill_mark(
    bpf_build_dir: Path, pin_root: Path, wakeup_bytes: int, count: int, woken: bool
) -> None:
    dp = open_datapath(bpf_build_dir, pin_root, ring_bytes=1 << 16)
    try:
        dp.configure(aggregation_level=AGG_NONE, wakeup_bytes=wakeup_bytes)
        for i in range(count):
            res = loader.prog_test_run(
                dp.fds[loader.PROG_FROM_ENDPOINT], P.udp_frame("10.2.0.1", "10.2.0.2", 1000 + i, 53)
            )
            assert res.retval == 0
        readable, _, _ = select.select([dp.rb.fileno()], [], [], 0.3)
        assert bool(readable) is woken
        assert dp.rb.poll(0) is True  # the data is there either way: the timer finds it
        assert len(dp.rb.drain()) == count
        assert dp.rb.poll(0) is False
        assert select.select([dp.rb.fileno()], [], [], 0)[0] == []
    finally:
        dp.close()


def test_asyncio_reader_is_called_on_wakeup_and_then_quiet(
    bpf_build_dir: Path, pin_root: Path
) -> None:
    """fileno() plugs into loop.add_reader: one wake-up, one drain, then no busy loop."""
    import asyncio

    dp = open_datapath(bpf_build_dir, pin_root, ring_bytes=1 << 16)
    calls: list[int] = []

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        woke = asyncio.Event()

        def on_readable() -> None:
            calls.append(1)
            got.extend(dp.rb.drain())
            woke.set()

        loop.add_reader(dp.rb.fileno(), on_readable)
        try:
            dp.configure(aggregation_level=AGG_NONE, wakeup_bytes=0)
            await asyncio.sleep(0.05)
            assert calls == []  # nothing written yet
            for i in range(3):
                loader.prog_test_run(
                    dp.fds[loader.PROG_FROM_ENDPOINT],
                    P.udp_frame("10.3.0.1", "10.3.0.2", 2000 + i, 53),
                )
            await asyncio.wait_for(woke.wait(), 2)
            await asyncio.sleep(0.2)
        finally:
            loop.remove_reader(dp.rb.fileno())
        return got

    try:
        got = asyncio.run(main())
        assert len(got) == 3
        assert 1 <= len(calls) <= 3  # not called again once drained
    finally:
        dp.close()
