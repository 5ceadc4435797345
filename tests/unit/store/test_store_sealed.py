"""Sealed (LZ4-compressed) blocks: a sealing store reads back exactly what a plain one does."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.store import EntryKind, FlowStore
from observer.store.ring import BLOCK, Entry, Follower

_FLOW = int(EntryKind.FLOW)
_LOST = int(EntryKind.LOST)


def _line(i: int) -> bytes:
    return orjson.dumps({"flow": {"time": i, "uuid": f"u-{i}", "pad": "x" * (i % 37)}})


def _joined(store: FlowStore, start: int, end: int) -> tuple[bytes, int]:
    """``line_parts`` as the batched stream sends them: newline-terminated lines."""
    parts, count = store.line_parts(start, end)
    return (b"\n".join([*parts, b""]) if parts else b""), count


def _poll(store: FlowStore, follower: Follower, limit: int) -> tuple[int, list[bytes]]:
    lost, start, end = follower.poll_span(limit)
    return lost, store.data_range(start, end)


def _pair(capacity: int) -> tuple[FlowStore, FlowStore]:
    return FlowStore(capacity, seal=True), FlowStore(capacity, seal=False)


def _fill(stores: tuple[FlowStore, ...], start: int, count: int, lost_every: int = 0) -> None:
    for i in range(start, start + count):
        kind = _LOST if lost_every and i % lost_every == 0 else _FLOW
        for store in stores:
            store.append(1_000 + i, kind, _line(i))


@pytest.mark.parametrize(
    ("capacity", "count"),
    [
        pytest.param(1023, 100, id="under-one-block"),
        pytest.param(1023, BLOCK * 2 + 1, id="two-blocks-sealed"),
        pytest.param(1023, 1023, id="exactly-full"),
        pytest.param(1023, 1024 + 5, id="wrapped-into-sealed"),
        pytest.param(1023, 5000, id="many-wraps"),
        pytest.param(4095, 9000, id="bigger"),
    ],
)
def test_sealed_store_reads_back_what_plain_store_does(capacity: int, count: int) -> None:
    sealed, plain = _pair(capacity)
    _fill((sealed, plain), 0, count, lost_every=97)
    assert len(sealed) == len(plain)
    assert sealed.oldest_seq == plain.oldest_seq
    lo, hi = plain.oldest_seq, plain.next_seq
    assert sealed.data_range(lo, hi) == plain.data_range(lo, hi)
    assert sealed.data_range(lo + 3, hi - 7) == plain.data_range(lo + 3, hi - 7)
    assert sealed.time_range(lo, hi) == plain.time_range(lo, hi)
    for a, b in ((lo, hi), (lo + 3, hi - 7), (hi - BLOCK - 1, hi), (lo, lo + BLOCK + 2)):
        joined, count = _joined(sealed, a, b)
        expected = plain.data_range(a, b)
        assert count == len(expected)
        assert joined == b"".join(line + b"\n" for line in expected)
        assert _joined(plain, a, b) == (joined, count)
    assert sealed.select() == plain.select()
    assert sealed.select(number=10) == plain.select(number=10)
    assert sealed.select(number=300, first=True) == plain.select(number=300, first=True)
    for seq in (lo, lo + 1, (lo + hi) // 2, hi - 1):
        assert sealed.get(seq) == plain.get(seq)
    if count > 2 * BLOCK:
        assert sealed.sealed_fraction() > 0
    assert plain.sealed_fraction() == 0


def test_small_stores_never_seal() -> None:
    store = FlowStore(255)
    _fill((store,), 0, 2000)
    assert store.sealed_fraction() == 0


def test_sealing_saves_memory() -> None:
    sealed, plain = _pair(4095)
    _fill((sealed, plain), 0, 4095)
    assert sealed.sealed_fraction() > 0.9
    import tracemalloc

    def size(capacity: int, seal: bool) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            store = FlowStore(capacity, seal=seal)
            _fill((store,), 0, capacity)
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    assert size(4095, True) * 2 < size(4095, False)


def test_entry_with_newline_keeps_its_block_raw() -> None:
    sealed, plain = _pair(1023)
    for i in range(3 * BLOCK):
        data = b'{"a":"x\ny"}' if i == 5 else _line(i)
        sealed.append(i, _FLOW, data)
        plain.append(i, _FLOW, data)
    assert sealed.data_range(0, 3 * BLOCK) == plain.data_range(0, 3 * BLOCK)
    assert sealed.get(5) == plain.get(5)
    assert 0 < sealed.sealed_fraction() < 1


def test_follower_reads_across_sealing_and_wraps() -> None:
    sealed, plain = _pair(1023)
    fs, fp = sealed.follower(0), plain.follower(0)
    seen_s: list[bytes] = []
    seen_p: list[bytes] = []
    lost_s = lost_p = 0
    for step in range(12):
        _fill((sealed, plain), step * 700, 700)
        if step % 3 == 2:  # fall behind now and then: the writer laps the followers
            continue
        ls, ds = _poll(sealed, fs, 10_000)
        lp, dp = _poll(plain, fp, 10_000)
        lost_s += ls
        lost_p += lp
        seen_s += ds
        seen_p += dp
    assert lost_s == lost_p > 0
    assert seen_s == seen_p


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.sampled_from([1023, 2047]),
    ops=st.lists(
        st.tuples(st.sampled_from(["append", "range", "select", "get"]), st.integers(0, 3000)),
        max_size=25,
    ),
)
def test_sealed_matches_plain_under_random_operations(
    capacity: int, ops: list[tuple[str, int]]
) -> None:
    sealed, plain = _pair(capacity)
    written = 0
    for op, n in ops:
        if op == "append":
            _fill((sealed, plain), written, n, lost_every=13)
            written += n
        elif op == "range":
            lo = plain.oldest_seq + n % (len(plain) + 1)
            assert sealed.data_range(lo, plain.next_seq) == plain.data_range(lo, plain.next_seq)
            assert _joined(sealed, lo, plain.next_seq) == _joined(plain, lo, plain.next_seq)
        elif op == "select":
            assert sealed.select(number=n % 50) == plain.select(number=n % 50)
        else:
            seq = plain.oldest_seq + n % (len(plain) + 1)
            assert sealed.get(seq) == plain.get(seq)


@pytest.mark.parametrize("seal", [True, False], ids=["sealed", "plain"])
@pytest.mark.parametrize(
    ("capacity", "chunks"),
    [
        pytest.param(1023, [100, 300, 1, 255, 256, 257], id="odd-chunks"),
        pytest.param(1023, [5000], id="one-chunk-larger-than-the-ring"),
        pytest.param(15, [3, 20, 7], id="tiny-store"),
        pytest.param(2047, [2047, 2047, 13], id="full-rings"),
    ],
)
def test_extend_equals_appending_one_by_one(seal: bool, capacity: int, chunks: list[int]) -> None:
    bulk = FlowStore(capacity, seal=seal)
    single = FlowStore(capacity, seal=seal)
    i = 0
    for n in chunks:
        times = [1_795_694_400_000_000_000 + (i + k) * 7_000_000 for k in range(n)]
        lines = [_line(i + k) for k in range(n)]
        bulk.extend(times, _FLOW, lines)
        for t, line in zip(times, lines, strict=True):
            single.append(t, _FLOW, line)
        i += n
        assert bulk.next_seq == single.next_seq
        lo, hi = single.oldest_seq, single.next_seq
        assert bulk.data_range(lo, hi) == single.data_range(lo, hi)
        assert bulk.time_range(lo, hi) == single.time_range(lo, hi)
        assert bulk.select() == single.select()
    now = 1_795_694_400_000_000_000 + i * 7_000_000
    assert bulk.flows_rate(now) == single.flows_rate(now)


def test_extend_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 times for 1 lines"):
        FlowStore(15).extend([1, 2], _FLOW, [b"{}"])


@pytest.mark.parametrize("one_line", [True, False], ids=["one-line", "checked"])
def test_deferred_sealing_compacts_to_the_same_bytes(one_line: bool) -> None:
    deferred = FlowStore(2047, defer=True)
    inline = FlowStore(2047)
    plain = FlowStore(2047, seal=False)
    i = 0
    for n in (300, 700, 1200, 5, 2000, 3000):
        times = [1_000 + i + k for k in range(n)]
        lines = [_line(i + k) for k in range(n)]
        for store in (deferred, inline):
            store.extend(times, _FLOW, lines, one_line=one_line)
        plain.extend(times, _FLOW, lines)
        i += n
        lo, hi = plain.oldest_seq, plain.next_seq
        # queued blocks read raw; after compact(), sealed: the same bytes either way
        assert deferred.data_range(lo, hi) == plain.data_range(lo, hi)
        if i > 2 * 2048:
            assert deferred.sealed_fraction() < inline.sealed_fraction()
        assert deferred.compact(budget_s=10) == 0
        assert deferred.data_range(lo, hi) == plain.data_range(lo, hi)
        assert _joined(deferred, lo, hi) == _joined(plain, lo, hi)
        assert deferred.select(number=50) == plain.select(number=50)
    assert deferred.sealed_fraction() > 0.5


def test_compact_stops_at_its_budget() -> None:
    store = FlowStore(4095, defer=True)
    store.extend(list(range(4000)), _FLOW, [_line(i) for i in range(4000)])
    assert store.sealed_fraction() == 0
    left = store.compact(budget_s=0)  # one block, then the deadline has passed
    assert left > 0
    assert store.sealed_fraction() > 0
    assert store.compact(budget_s=10) == 0


def test_one_line_promise_skips_the_newline_check() -> None:
    """The promise is the caller's: a line that breaks it is split on read (documented)."""
    store = FlowStore(1023)
    lines = [_line(i) for i in range(3 * BLOCK)]
    lines[3] = b'{"a":"x\ny"}'
    store.extend(list(range(3 * BLOCK)), _FLOW, lines, one_line=True)
    assert store.sealed_fraction() > 0  # block 0 sealed without a scan
    checked = FlowStore(1023)
    checked.extend(list(range(3 * BLOCK)), _FLOW, lines)
    assert checked.get(3) == Entry(3, 3, _FLOW, b'{"a":"x\ny"}')  # kept raw, intact


def test_extend_counts_the_rate_of_a_batch_in_one_second_at_once() -> None:
    base = 1_795_694_400_000_000_000
    store = FlowStore(1023)
    store.append(base, _FLOW, _line(0))  # sets the current second
    store.extend([base + k for k in range(1, 600)], _FLOW, [_line(k) for k in range(1, 600)])
    store.extend([base + 10**9 + k for k in range(100)], _FLOW, [_line(k) for k in range(100)])
    assert store.flows_rate(base + 10**9) == (600 + 100) / 60
