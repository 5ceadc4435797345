"""FlowStore: capacity, wraparound, get/read_from/last_n_start, select, flows_rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.errors import ConfigError
from observer.filters import compile_filters
from observer.store import Entry, EntryKind, FlowStore, flow_entry_predicate

FLOW = EntryKind.FLOW
LOST = EntryKind.LOST
S = 1_000_000_000


def data(i: int) -> bytes:
    return b'{"n":%d}' % i


def filled(capacity: int, times: list[int], kinds: list[int] | None = None) -> FlowStore:
    store = FlowStore(capacity)
    for i, t in enumerate(times):
        store.append(t, kinds[i] if kinds else FLOW, data(i))
    return store


def seqs(entries: list[Entry]) -> list[int]:
    return [e.seq for e in entries]


@pytest.mark.parametrize("capacity", [1, 3, 7, 4095, 65535, (1 << 20) - 1])
def test_valid_capacity(capacity: int) -> None:
    store = FlowStore(capacity)
    assert store.capacity == capacity
    assert len(store) == 0


def test_default_capacity() -> None:
    assert FlowStore().capacity == 65535


@pytest.mark.parametrize(
    ("capacity", "fragment"),
    [
        pytest.param(0, "one less than a power of two", id="zero"),
        pytest.param(2, "one less than a power of two", id="two"),
        pytest.param(4, "one less than a power of two", id="four"),
        pytest.param(6, "one less than a power of two", id="six"),
        pytest.param(4096, "one less than a power of two", id="power-of-two"),
        pytest.param(-1, "one less than a power of two", id="negative"),
        pytest.param(1 << 20, "one less than a power of two", id="big-power"),
        pytest.param((1 << 21) - 1, "too large", id="too-large"),
        pytest.param(True, "not an integer", id="bool"),
        pytest.param("7", "not an integer", id="string"),
    ],
)
def test_invalid_capacity(capacity: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        FlowStore(capacity)
    assert fragment in str(info.value)


@pytest.mark.parametrize("capacity", [1, 3, 7])
@pytest.mark.parametrize("appended", [0, 1, 2, 3, 4, 7, 8, 15, 16, 23])
def test_wraparound_keeps_the_newest(capacity: int, appended: int) -> None:
    store = filled(capacity, list(range(100, 100 + appended)))
    assert len(store) == min(appended, capacity)
    assert store.seen == appended
    assert store.next_seq == appended
    assert store.oldest_seq == max(0, appended - capacity)
    for seq in range(-2, appended + 2):
        entry = store.get(seq)
        if store.oldest_seq <= seq < appended:
            assert entry == Entry(seq, 100 + seq, FLOW, data(seq))
        else:
            assert entry is None
    assert seqs(list(store.read_from(0))) == list(range(store.oldest_seq, appended))


def test_append_returns_monotonic_seq() -> None:
    store = FlowStore(3)
    assert [store.append(i, FLOW, b"x") for i in range(6)] == [0, 1, 2, 3, 4, 5]


def test_entry_fields() -> None:
    store = FlowStore(7)
    store.append(123, LOST, b'{"lost_events":{}}')
    entry = store.get(0)
    assert entry is not None
    assert (entry.seq, entry.time_ns, entry.kind, entry.data) == (
        0,
        123,
        LOST,
        b'{"lost_events":{}}',
    )
    assert entry.kind == EntryKind.LOST


def test_read_from_until_stops_at_first_later_entry() -> None:
    store = filled(15, [10, 20, 30, 25, 40])
    assert seqs(list(store.read_from(1, until_ns=30))) == [1, 2, 3]
    assert seqs(list(store.read_from(0, until_ns=29))) == [0, 1]
    assert seqs(list(store.read_from(3, until_ns=30))) == [3]
    assert seqs(list(store.read_from(0, until_ns=1000))) == [0, 1, 2, 3, 4]


def test_read_from_overwritten_seq_starts_at_oldest() -> None:
    store = filled(3, list(range(10)))
    assert seqs(list(store.read_from(2))) == [7, 8, 9]
    assert list(store.read_from(10)) == []


def test_read_from_sees_appends_while_iterating() -> None:
    store = filled(7, [1, 2])
    it = store.read_from(0)
    assert next(it).seq == 0
    store.append(3, FLOW, b"x")
    assert seqs(list(it)) == [1, 2]


def test_read_from_continues_at_oldest_when_lapped() -> None:
    store = filled(3, [1, 2, 3])
    it = store.read_from(0)
    assert next(it).seq == 0
    for t in range(4, 10):
        store.append(t, FLOW, b"x")
    assert seqs(list(it)) == [6, 7, 8]


def odd(entry: Entry) -> bool:
    return orjson.loads(entry.data)["n"] % 2 == 1


@pytest.mark.parametrize(
    ("n", "predicate", "expected"),
    [
        pytest.param(0, None, 3, id="zero-is-oldest"),
        pytest.param(2, None, 8, id="last-two"),
        pytest.param(7, None, 3, id="all"),
        pytest.param(99, None, 3, id="more-than-stored"),
        pytest.param(2, odd, 7, id="predicate"),
        pytest.param(99, odd, 3, id="predicate-not-enough"),
    ],
)
def test_last_n_start(n: int, predicate: Any, expected: int) -> None:
    store = filled(7, list(range(10)))  # seqs 3..9 stored
    assert store.last_n_start(n, predicate) == expected


def test_last_n_start_skips_lost_and_empty_store() -> None:
    store = filled(7, [1, 2, 3], [FLOW, FLOW, LOST])
    assert store.last_n_start(1) == 1  # LOST entries never count, with or without a predicate
    assert store.first_n_end(1) == 1
    assert store.first_n_end(2) == 2
    assert store.first_n_end(5) == 3
    assert store.data_range(0, 3) == [e.data for e in store.select()]
    assert store.last_n_start(1, lambda e: True) == 1
    assert FlowStore(7).last_n_start(5) == 0


# times 10..70 at seqs 0..6 in a capacity-7 store
TIMES = [10, 20, 30, 40, 50, 60, 70]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, [0, 1, 2, 3, 4, 5, 6], id="number-0-all"),
        pytest.param({"number": 3}, [4, 5, 6], id="last-3"),
        pytest.param({"number": 3, "first": True}, [0, 1, 2], id="first-3"),
        pytest.param({"number": 99}, [0, 1, 2, 3, 4, 5, 6], id="last-more-than-stored"),
        pytest.param(
            {"number": 99, "first": True}, [0, 1, 2, 3, 4, 5, 6], id="first-more-than-stored"
        ),
        pytest.param({"since_ns": 30}, [2, 3, 4, 5, 6], id="since-inclusive"),
        pytest.param({"since_ns": 31}, [3, 4, 5, 6], id="since-between"),
        pytest.param({"until_ns": 50}, [0, 1, 2, 3, 4], id="until-inclusive"),
        pytest.param({"until_ns": 49}, [0, 1, 2, 3], id="until-between"),
        pytest.param({"since_ns": 30, "until_ns": 50}, [2, 3, 4], id="window"),
        pytest.param({"since_ns": 30, "until_ns": 30}, [2], id="window-one-instant"),
        pytest.param({"since_ns": 31, "until_ns": 39}, [], id="window-empty"),
        pytest.param({"since_ns": 30, "number": 2}, [2, 3], id="since-takes-precedence-over-last"),
        pytest.param({"since_ns": 30, "number": 2, "first": True}, [2, 3], id="since-first"),
        pytest.param({"until_ns": 50, "number": 2}, [3, 4], id="until-last-n-within-window"),
        pytest.param({"until_ns": 50, "number": 2, "first": True}, [0, 1], id="until-first-n"),
        pytest.param({"predicate": odd}, [1, 3, 5], id="predicate-all"),
        pytest.param({"predicate": odd, "number": 2}, [3, 5], id="predicate-last"),
        pytest.param({"predicate": odd, "number": 2, "first": True}, [1, 3], id="predicate-first"),
        pytest.param({"predicate": odd, "since_ns": 40, "number": 1}, [3], id="predicate-since"),
        pytest.param(
            {"predicate": odd, "since_ns": 41, "number": 1}, [5], id="predicate-since-between"
        ),
        pytest.param({"predicate": lambda e: False, "number": 3}, [], id="nothing-matches"),
    ],
)
def test_select(kwargs: dict[str, Any], expected: list[int]) -> None:
    store = filled(7, TIMES)
    assert seqs(store.select(**kwargs)) == expected


def test_select_after_wraparound() -> None:
    store = filled(3, [10, 20, 30, 40, 50])  # 30, 40, 50 remain
    assert seqs(store.select()) == [2, 3, 4]
    assert seqs(store.select(number=2, first=True)) == [2, 3]
    assert seqs(store.select(since_ns=0, until_ns=35)) == [2]


def test_select_window_is_exact_with_times_out_of_order() -> None:
    store = filled(7, [10, 50, 20, 60, 30])
    assert seqs(store.select(since_ns=20, until_ns=50)) == [1, 2, 4]
    assert seqs(store.select(until_ns=30, number=2)) == [2, 4]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, [0, 1, 2, 3, 4, 5, 6], id="all-with-lost"),
        pytest.param({"number": 2}, [4, 5, 6], id="last-2-lost-inside-span-not-counted"),
        pytest.param({"number": 1}, [6], id="last-1-lost-before-span"),
        pytest.param({"number": 2, "first": True}, [0, 1, 2], id="first-2-lost-not-counted"),
        pytest.param({"predicate": lambda e: False}, [1, 5], id="lost-bypasses-predicate"),
        pytest.param({"since_ns": 30, "until_ns": 55}, [2, 3, 4, 5], id="lost-in-window"),
        pytest.param({"since_ns": 60}, [6], id="lost-outside-window"),
    ],
)
def test_select_lost_entries(kwargs: dict[str, Any], expected: list[int]) -> None:
    kinds = [FLOW, LOST, FLOW, FLOW, FLOW, LOST, FLOW]
    store = filled(7, [10, 20, 30, 40, 50, 55, 70], kinds)
    assert seqs(store.select(**kwargs)) == expected


def test_select_with_compiled_flow_filter() -> None:
    lines = (
        (Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl").read_bytes().splitlines()
    )
    store = FlowStore(15)
    for i, line in enumerate(lines):
        response = orjson.loads(line)
        kind = (
            FLOW
            if "flow" in response
            else LOST
            if "lost_events" in response
            else EntryKind.NODE_STATUS
        )
        store.append(i, kind, orjson.dumps(response))
    predicate = flow_entry_predicate(
        compile_filters([{"verdict": ["DROPPED"]}, {"protocol": ["udp"]}], [])
    )
    assert seqs(store.select(predicate=predicate)) == [2, 5, 8, 9]  # 9 is the lost event
    assert seqs(store.select(number=1, predicate=predicate)) == [8, 9]
    assert seqs(store.select(number=1, first=True, predicate=predicate)) == [2]


@pytest.mark.parametrize(
    ("appends", "now_s", "expected"),
    [
        pytest.param([], 100, 0.0, id="empty"),
        pytest.param([(100, 60)], 100, 1.0, id="current-second-counts"),
        pytest.param([(41, 30), (100, 30)], 100, 1.0, id="window-start-inclusive"),
        pytest.param([(40, 60)], 100, 0.0, id="older-than-a-minute"),
        pytest.param([(101, 60)], 100, 0.0, id="future"),
        pytest.param([(s, 2) for s in range(1000, 1200)], 1199, 2.0, id="steady-rate-after-wrap"),
        pytest.param([(100, 30), (70, 30)], 100, 1.0, id="late-arrivals"),
        pytest.param([(100, 30), (36, 5)], 100, 0.5, id="too-old-shares-bucket"),
    ],
)
def test_flows_rate(appends: list[tuple[int, int]], now_s: int, expected: float) -> None:
    store = FlowStore(7)
    for sec, count in appends:
        for k in range(count):
            store.append(sec * S + k, FLOW, b"x")
    assert store.flows_rate(now_s * S + S // 2) == pytest.approx(expected)


def test_flows_rate_counts_only_flows() -> None:
    store = FlowStore(7)
    for k in range(60):
        store.append(5 * S + k, LOST, b"x")
    store.append(5 * S, EntryKind.NODE_STATUS, b"x")
    assert store.flows_rate(5 * S) == 0.0


def naive_select(
    retained: list[Entry], number: int, first: bool, since: int | None, until: int | None
) -> list[int]:
    """The documented selection, written the slow and obvious way."""
    window = [
        e
        for e in retained
        if (since is None or e.time_ns >= since) and (until is None or e.time_ns <= until)
    ]
    candidates = [e for e in window if e.kind != LOST and e.data.endswith(b"1}")]
    if number == 0:
        chosen = candidates
    elif first or since is not None:
        chosen = candidates[:number]
    else:
        chosen = candidates[-number:]
    if not chosen:
        return (
            [e.seq for e in window if e.kind == LOST]
            if number == 0 or len(candidates) < number
            else []
        )
    lo, hi = chosen[0].seq, chosen[-1].seq
    forward = number == 0 or first or since is not None
    if number == 0 or len(chosen) < number:
        lo, hi = retained[0].seq, retained[-1].seq
    elif forward:
        lo = retained[0].seq
    else:
        hi = retained[-1].seq
    chosen_seqs = {e.seq for e in chosen}
    return [e.seq for e in window if e.seq in chosen_seqs or (e.kind == LOST and lo <= e.seq <= hi)]


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.sampled_from([1, 3, 7, 15]),
    appends=st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from([FLOW, FLOW, FLOW, LOST]), st.integers(0, 1)),
        max_size=30,
    ),
    number=st.integers(0, 6),
    first=st.booleans(),
    since=st.none() | st.integers(0, 20),
    until=st.none() | st.integers(0, 20),
)
def test_select_matches_naive_model(
    capacity: int,
    appends: list[tuple[int, int, int]],
    number: int,
    first: bool,
    since: int | None,
    until: int | None,
) -> None:
    store = FlowStore(capacity)
    for t, kind, odd_flag in appends:
        store.append(t, kind, b'{"m":%d}' % odd_flag)
    retained = [e for e in (store.get(s) for s in range(store.next_seq)) if e is not None]
    predicate = lambda e: e.data.endswith(b"1}")  # noqa: E731
    got = seqs(store.select(number, first, since, until, predicate))
    assert got == naive_select(retained, number, first, since, until)


@pytest.mark.parametrize(
    ("compact", "payload"),
    [
        pytest.param(True, orjson.dumps({"flow": {"verdict": "FORWARDED"}}), id="compact-orjson"),
        pytest.param(True, bytearray(b'{"flow":{}}'), id="compact-bytearray"),
        pytest.param(False, b'{"flow":{}}', id="as-given"),
    ],
)
def test_append_stores_exact_size_copy(compact: bool, payload: bytes) -> None:
    store = FlowStore(3, compact=compact)
    store.append(1, FLOW, payload)
    entry = store.get(0)
    assert entry is not None
    assert entry.data == payload
    assert type(entry.data) is bytes
    assert (entry.data is payload) is (not compact)


@pytest.mark.parametrize("total", [3, 7, 8, 13, 20], ids=lambda n: f"appended-{n}")
def test_data_range_matches_select_across_wraparound(total: int) -> None:
    store = filled(7, list(range(total)))
    assert store.data_range(0, store.next_seq) == [e.data for e in store.select()]
    mid = store.oldest_seq + 2
    assert store.data_range(mid, mid + 3) == [e.data for e in store.select()][2:5]


def test_poll_span_reports_lapping_like_poll() -> None:
    store = FlowStore(7)
    follower = store.follower(0)
    twin = store.follower(0)
    for i in range(20):
        store.append(i, FLOW, b"%d" % i)
    lost, start, end = follower.poll_span(100)
    data = store.data_range(start, end)
    batch = twin.poll(100)
    assert (lost, data) == (batch.lost, [e.data for e in batch.entries])
    assert lost == 13 and data[0] == b"13"
