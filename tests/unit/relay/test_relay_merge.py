"""observer.relay.merge: the RFC 3339 parser, response times, the time-ordered merge and the
number semantics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.relay.merge import (
    FirstN,
    LastN,
    TimeMerger,
    TimeParser,
    parse_rfc3339_ns,
    response_time_ns,
    timed_lines,
)

S = 1_000_000_000


def _expected_ns(text: str) -> int:
    """Reference: datetime (microseconds) plus the digits beyond them."""
    head, _, frac_zone = text.partition(".")
    if not frac_zone:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) * S
    n = 0
    while n < len(frac_zone) and frac_zone[n].isdigit():
        n += 1
    digits, zone = frac_zone[:n], frac_zone[n:]
    whole = datetime.fromisoformat(head + zone.replace("Z", "+00:00"))
    return int(whole.timestamp()) * S + int(digits[:9].ljust(9, "0"))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1970-01-01T00:00:00Z", id="epoch"),
        pytest.param("2026-11-26T12:00:01.123456789Z", id="nanos"),
        pytest.param("2026-11-26T12:00:01.123501Z", id="micros"),
        pytest.param("2026-11-26T12:00:03.500Z", id="millis"),
        pytest.param("2026-11-26T12:00:03.5Z", id="one-digit"),
        pytest.param("2000-02-29T23:59:59Z", id="leap-day"),
        pytest.param("1969-12-31T23:59:59.999999999Z", id="before-epoch"),
        pytest.param("0001-01-01T00:00:00Z", id="year-1"),
        pytest.param("9999-12-31T23:59:59.999999999Z", id="year-9999"),
        pytest.param("2026-11-26T13:30:00+01:30", id="positive-offset"),
        pytest.param("2026-11-26T10:00:00.25-02:00", id="negative-offset"),
    ],
)
def test_parse_rfc3339(text: str) -> None:
    assert parse_rfc3339_ns(text) == _expected_ns(text)
    assert parse_rfc3339_ns(text.encode()) == _expected_ns(text)


def test_parse_rfc3339_lower_case_and_long_fractions() -> None:
    assert parse_rfc3339_ns("2026-11-26t12:00:01.5z") == parse_rfc3339_ns("2026-11-26T12:00:01.500Z")
    assert parse_rfc3339_ns("2026-11-26T12:00:01.1234567899Z") == parse_rfc3339_ns("2026-11-26T12:00:01.123456789Z")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("2026-11-26 12:00:01Z", id="space-separator"),
        pytest.param("2026-11-26T12:00:01", id="no-zone"),
        pytest.param("2026-11-26T12:00:01.Z", id="empty-fraction"),
        pytest.param("2026-11-26T12:00:01ZZ", id="trailing"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
        pytest.param("2026-02-29T00:00:00Z", id="not-a-leap-year"),
        pytest.param("1900-02-29T00:00:00Z", id="century-not-leap"),
        pytest.param("2026-04-31T00:00:00Z", id="april-31"),
        pytest.param("2026-11-26T24:00:00Z", id="hour-24"),
        pytest.param("2026-11-26T12:60:00Z", id="minute-60"),
        pytest.param("2026-11-26T12:00:60Z", id="leap-second"),
        pytest.param("0000-01-01T00:00:00Z", id="year-0"),
        pytest.param("2026-11-2a12:00:00Z", id="letters"),
        pytest.param("2026-11-26T12:00:00+1:00", id="short-offset"),
        pytest.param("2026-11-26T12:00:00+01:60", id="offset-minutes"),
        pytest.param("+026-11-26T12:00:00Z", id="signed-year"),
        pytest.param("2_26-11-26T12:00:00Z", id="underscore"),
    ],
)
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339_ns(text)


def test_time_parser_cache_gives_the_same_results() -> None:
    parse = TimeParser()
    texts = [
        b"2026-11-26T12:00:01.123456789Z",
        b"2026-11-26T12:00:01.5Z",
        b"2026-11-26T12:00:01Z",
        b"2026-11-26T12:00:01.000000001Z",
        b"2026-11-26T12:00:02.25Z",
        b"2026-11-26T12:00:02+01:00",  # same prefix, another zone: not from the cache
        b"2026-11-26T12:00:02.1234567891Z",  # ten digits
        b"2026-11-26T12:00:02.12a4Z",
    ]
    for text in texts:
        try:
            want: int | None = parse_rfc3339_ns(text)
        except ValueError:
            want = None
        if want is None:
            with pytest.raises(ValueError):
                parse(text)
        else:
            assert parse(text) == want, text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b'{"flow":{"time":"1970-01-01T00:00:01Z"},"node_name":"n","time":"1970-01-01T00:00:02Z"}', 2 * S, id="last-key"),
        pytest.param(b'{"time":"1970-01-01T00:00:03Z","flow":{"time":"1970-01-01T00:00:01Z"}}', 3 * S, id="first-key"),
        pytest.param(b'{"flow":{"time":"1970-01-01T00:00:01Z"}}', None, id="only-nested"),
        pytest.param(b'{"node_status":{"message":"x\\",\\"time\\":\\"1970"},"time":"1970-01-01T00:00:04.5Z"}', 4 * S + S // 2, id="escaped-quotes"),
        pytest.param(b'{"a":"b","time":"not a time"}', None, id="invalid-time"),
        pytest.param(b'{"time":5}', None, id="not-a-string"),
        pytest.param(b"[1,2]", None, id="not-an-object"),
        pytest.param(b"{", None, id="not-json"),
    ],
)
def test_response_time(line: bytes, expected: int | None) -> None:
    assert response_time_ns(line) == expected
    assert response_time_ns(line, TimeParser()) == expected
    parser = TimeParser()
    assert [parser.response_time(line) for _ in range(3)] == [expected] * 3, "cached prefix"


def test_response_time_of_fixture_lines(fixture_responses: list[dict[str, Any]]) -> None:
    for resp in fixture_responses:
        line = orjson.dumps(resp)
        assert response_time_ns(line) == parse_rfc3339_ns(resp["time"])


# --- the merge ---------------------------------------------------------------------------


def _push(m: TimeMerger[str], source: str, t: int | None, now: int = 0) -> list[str]:
    return m.push(source, t, f"{source}{t}", now)


def test_watermark_waits_for_every_source() -> None:
    m: TimeMerger[str] = TimeMerger(10, 1000)
    m.add_source("a", 0)
    m.add_source("b", 0)
    assert _push(m, "a", 5) == []
    assert _push(m, "a", 7) == []
    assert _push(m, "b", 6) == ["a5", "b6"], "released until a source has nothing left"
    assert m.buffered("a") == 1 and m.buffered("b") == 0
    assert m.remove_source("b", 0) == ["a7"], "a finished source is no longer awaited"
    assert m.stats.out_of_order == 0


@pytest.mark.parametrize(
    ("max_len", "n", "released", "forced"),
    [
        pytest.param(3, 5, [], 0, id="within-len-plus-one-per-source"),
        pytest.param(3, 6, ["a0"], 1, id="one-over"),
        pytest.param(1, 10, ["a0", "a1", "a2", "a3", "a4", "a5", "a6"], 7, id="len-1"),
    ],
)
def test_window_bound(max_len: int, n: int, released: list[str], forced: int) -> None:
    """With source b awaited and silent, a's items go out only past max_len + one per source."""
    m: TimeMerger[str] = TimeMerger(max_len, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    out: list[str] = []
    for t in range(n):
        out += _push(m, "a", t)
    assert out == released
    assert len(m) == n - len(released) <= max_len + 2
    assert m.stats.forced_by_length == forced
    assert m.stats.max_buffered <= max_len + 2


def test_late_item_goes_out_at_once_and_is_counted() -> None:
    m: TimeMerger[str] = TimeMerger(1, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    for t in (10, 11, 12, 13):
        _push(m, "a", t)
    assert _push(m, "b", 5) == ["b5"], "older than what went out: released, out of order"
    assert _push(m, "b", 11) == ["a11", "b11"], "equal time is not late"
    st = m.stats
    assert st.out_of_order == 1
    assert st.pushed == 6


def test_backpressure_gives_each_source_its_share() -> None:
    m: TimeMerger[str] = TimeMerger(4, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    assert m.quota() == 2
    items = [(t, f"a{t}") for t in range(5)]
    released, nxt = m.push_many("a", items, 0, 0)
    assert (released, nxt) == ([], 2), "a stops at its share, 4 / 2 sources"
    assert not m.can_accept("a")
    assert m.can_accept("b")
    assert m.push_many("a", items, 2, 0) == ([], 2), "still full"
    released, _ = m.push_many("b", [(1, "b1")], 0, 0)
    assert released == ["a0", "a1"], "then a is empty again and awaited (a2 may be older than b1)"
    assert m.can_accept("a")
    released, nxt = m.push_many("a", items, 2, 0)
    assert (released, nxt) == (["b1"], 4), "b is awaited again: a2, a3 stay"
    m.add_source("c", 0)
    assert m.quota() == 1
    assert m.push("a", 9, "a9", 0) == [], "push() ignores the quota"
    assert m.buffered("a") == 3


def test_drain_timeout_releases_everything_older() -> None:
    m: TimeMerger[str] = TimeMerger(100, drain_timeout_ns=1000, idle_ns=10**6)
    m.add_source("a", 0)
    m.add_source("b", 0)
    m.push_many("a", [(5, "a5"), (9, "a9")], 0, 100)
    m.push_many("a", [(20, "a20")], 0, 600)
    assert m.next_deadline_ns() == 1100
    assert m.poll(1099) == []
    assert m.poll(1100) == ["a5", "a9"], "the first push's items waited 1000 ns"
    assert m.stats.forced_by_timeout == 2
    assert m.next_deadline_ns() == 1600
    assert m.poll(1600) == ["a20"]
    assert m.next_deadline_ns() is None


def test_idle_source_stops_holding_back() -> None:
    m: TimeMerger[str] = TimeMerger(100, drain_timeout_ns=10**6, idle_ns=100)
    m.add_source("a", 0)
    m.add_source("b", 50)
    assert _push(m, "a", 1, now=60) == []
    assert m.next_deadline_ns() == 150, "b becomes idle 100 ns after it was added"
    assert m.poll(149) == []
    assert m.poll(150) == ["a1"]
    # b is idle: a's items go straight through
    assert _push(m, "a", 2, now=200) == ["a2"]
    # but a, having just sent, is awaited for idle_ns
    assert _push(m, "b", 3, now=210) == []
    assert m.next_deadline_ns() == 300
    assert m.poll(300) == ["b3"]
    assert _push(m, "a", 4, now=305) == [], "b's last response went out at 300: awaited until 400"
    assert m.poll(399) == []
    assert m.poll(400) == ["a4"]
    assert m.stats.released_idle == 4, "each went out while the other source was idle"


def test_grace_before_the_first_push() -> None:
    m: TimeMerger[str] = TimeMerger(100, drain_timeout_ns=10**6, idle_ns=100)
    m.add_source("a", 0)
    m.add_source("slow", 0, grace_ns=5000)
    assert _push(m, "a", 1, now=10) == []
    assert m.poll(4999) == [], "slow has not sent anything yet: waited for 5000 ns"
    assert m.poll(5000) == ["a1"]
    assert _push(m, "slow", 0, now=5100) == ["slow0"], "late: its grace was over"
    assert m.stats.out_of_order == 1
    m.add_source("slow2", 6000, grace_ns=5000)
    assert m.push("slow2", 7, "x7", 6100) == ["x7"]
    assert _push(m, "a", 8, now=6150) == [], "after its first push, slow2 is awaited for idle_ns"
    assert m.poll(6200) == ["a8"]


def test_a_source_is_not_idle_while_its_responses_wait() -> None:
    """b's responses sat in the buffer longer than idle_ns (a was slow): once they are out,
    b is awaited again for idle_ns, not considered idle at once."""
    m: TimeMerger[str] = TimeMerger(100, drain_timeout_ns=10**6, idle_ns=100)
    m.add_source("a", 0)
    m.add_source("b", 0)
    assert m.push_many("b", [(5, "b5"), (50, "b50")], 0, 10)[0] == []
    assert _push(m, "a", 40, now=500) == ["b5", "a40"]
    assert _push(m, "a", 60, now=510) == ["b50"], "b is empty now, at 510"
    assert m.poll(609) == []
    assert m.poll(610) == ["a60"]


def test_passthrough_items_are_not_ordered_or_counted() -> None:
    m: TimeMerger[str] = TimeMerger(10, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    _push(m, "a", 5)
    assert m.push("relay", None, "status", 0) == ["status"]
    assert m.sources == frozenset({"a", "b", "relay"})
    st = m.stats
    assert (st.passthrough, st.pushed, st.out_of_order) == (1, 1, 0)


def test_lost_events_are_ordered_like_flows() -> None:
    m: TimeMerger[bytes] = TimeMerger(10, 10**9)
    lines = {
        "a": [b'{"flow":{},"time":"1970-01-01T00:00:01Z"}', b'{"lost_events":{},"time":"1970-01-01T00:00:03Z"}'],
        "b": [b'{"lost_events":{},"time":"1970-01-01T00:00:02Z"}', b'{"flow":{},"time":"1970-01-01T00:00:04Z"}'],
    }
    out: list[bytes] = []
    for src in lines:
        m.add_source(src, 0)
    for src, ls in lines.items():
        out += m.push_many(src, [(response_time_ns(x), x) for x in ls], 0, 0)[0]
    for src in lines:
        out += m.remove_source(src, 0)
    assert [response_time_ns(x) for x in out] == [S, 2 * S, 3 * S, 4 * S]


def test_drain_releases_all_in_order() -> None:
    m: TimeMerger[str] = TimeMerger(10, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    for t in (7, 3, 9):
        _push(m, "a", t)
    assert m.drain() == ["a3", "a7", "a9"]
    assert len(m) == 0 and m.next_deadline_ns() is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"max_len": 0, "drain_timeout_ns": 1}, "max_len", id="zero-len"),
        pytest.param({"max_len": 1, "drain_timeout_ns": 0}, "drain timeout", id="zero-timeout"),
    ],
)
def test_merger_arguments(kwargs: dict[str, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TimeMerger(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    streams=st.lists(st.lists(st.integers(0, 500), max_size=40).map(sorted), min_size=1, max_size=5),
    max_len=st.integers(1, 20),
    schedule=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 8)), max_size=200),
)
def test_merge_is_exact_when_sources_are_ordered_and_backpressure_is_respected(
    streams: list[list[int]], max_len: int, schedule: list[tuple[int, int]]
) -> None:
    """Whatever the chunking and the interleaving of the sources: sorted, complete, no
    forced release (the watermark alone decides)."""
    m: TimeMerger[tuple[int, int]] = TimeMerger(max_len, 10**9)
    names = [f"s{i}" for i in range(len(streams))]
    for name in names:
        m.add_source(name, 0)
    pos = [0] * len(streams)
    out: list[tuple[int, int]] = []
    active = [i for i, s in enumerate(streams) if s]
    for i, s in enumerate(streams):
        if not s:
            out += m.remove_source(names[i], 0)
    steps = iter(schedule)
    while active:
        pick, size = next(steps, (0, 8))
        i = active[pick % len(active)]
        if not m.can_accept(names[i]):
            i = next(j for j in active if m.can_accept(names[j]))
        items = [(t, (t, i)) for t in streams[i][pos[i] : pos[i] + size]]
        released, taken = m.push_many(names[i], items, 0, 0)
        out += released
        pos[i] += taken
        if pos[i] == len(streams[i]):
            out += m.remove_source(names[i], 0)
            active.remove(i)
    out += m.drain()
    assert [t for t, _ in out] == sorted(t for s in streams for t in s)
    st_ = m.stats
    assert (st_.out_of_order, st_.forced_by_length, st_.forced_by_timeout) == (0, 0, 0)
    assert st_.max_buffered <= max_len + len(streams)


# --- number semantics ----------------------------------------------------------------------


def _is_flow(item: str) -> bool:
    return item.startswith("f")


@pytest.mark.parametrize(
    ("n", "batches", "expected", "done"),
    [
        pytest.param(2, [["f1", "L", "f2", "f3"]], ["f1", "L", "f2"], True, id="stops-at-n"),
        pytest.param(3, [["L"], ["f1"], ["f2", "L2"]], ["L", "f1", "f2", "L2"], False, id="not-done"),
        pytest.param(1, [["f1"], ["f2"]], ["f1"], True, id="later-batches-dropped"),
    ],
)
def test_first_n(n: int, batches: list[list[str]], expected: list[str], done: bool) -> None:
    first: FirstN[str] = FirstN(n, _is_flow)
    out: list[str] = []
    for batch in batches:
        out += first.feed(batch)
    assert out == expected
    assert first.done is done


@pytest.mark.parametrize(
    ("n", "batches", "expected"),
    [
        pytest.param(2, [["f1", "f2", "f3"]], ["f2", "f3"], id="last-two"),
        pytest.param(2, [["L0", "f1", "L1", "f2", "L2", "f3", "L3"]], ["f2", "L2", "f3", "L3"], id="lost-inside-span"),
        pytest.param(5, [["L0", "f1"], ["f2"]], ["L0", "f1", "f2"], id="fewer-than-n-keeps-all"),
        pytest.param(1, [["f1"], ["L1"], ["f2"]], ["f2"], id="across-batches"),
    ],
)
def test_last_n(n: int, batches: list[list[str]], expected: list[str]) -> None:
    last: LastN[str] = LastN(n, _is_flow)
    for batch in batches:
        last.feed(batch)
    assert last.result() == expected


# --- runs: push_run and timed_lines ----------------------------------------------------------


def _run(m: TimeMerger[str], source: str, times: list[int], now: int = 0) -> list[str]:
    return m.push_run(source, times, [f"{source}{t}" for t in times], now)


def test_runs_from_several_nodes_interleave_exactly() -> None:
    m: TimeMerger[str] = TimeMerger(6, 10**9)
    for name in "abc":
        m.add_source(name, 0)
    out: list[str] = []
    out += _run(m, "a", [1, 4, 7, 10, 13])
    out += _run(m, "b", [2, 5, 8, 11, 14])
    assert out == [], "c has sent nothing yet: nothing can go"
    out += _run(m, "c", [3, 6, 9])
    assert out == ["a1", "b2", "c3", "a4", "b5", "c6", "a7", "b8", "c9"], "up to c's newest, interleaved"
    assert m.buffered("a") == 2 and m.buffered("b") == 2 and m.buffered("c") == 0
    out += _run(m, "c", [12, 15])
    assert out[9:] == ["a10", "b11", "c12", "a13"], "up to a's newest"
    for name in "abc":
        out += m.remove_source(name, 0)
    assert out[13:] == ["b14", "c15"]
    st = m.stats
    assert (st.pushed, st.released, st.out_of_order, st.forced_by_length, st.forced_by_timeout) == (15, 15, 0, 0, 0)
    assert st.max_buffered <= 6 + 3


def test_run_beyond_the_share_waits_outside_the_window() -> None:
    """A batch larger than the source's share: the share is in the window (backpressure),
    the rest enters it as the window empties; the reader pushes again once it may."""
    m: TimeMerger[str] = TimeMerger(4, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    assert m.quota() == 2
    assert _run(m, "a", [1, 2, 3, 4, 5, 6]) == []
    assert m.buffered("a") == 6
    assert not m.can_accept("a"), "a holds more than its share: its reader must wait"
    assert m.stats.max_buffered == 2, "only the share is in the sort window"
    assert _run(m, "b", [3]) == ["a1", "a2", "a3", "b3"]
    assert not m.can_accept("a")
    assert _run(m, "b", [10]) == ["a4", "a5", "a6"]
    assert m.can_accept("a"), "all of a's batch went out: its reader may push again"
    assert _run(m, "a", [11]) == ["b10"]
    assert m.drain() == ["a11"]
    st = m.stats
    assert (st.out_of_order, st.forced_by_length, st.forced_by_timeout) == (0, 0, 0)
    assert st.max_buffered <= 4 + 2


def test_run_older_than_released_is_counted_out_of_order() -> None:
    """A node whose stream goes back in time: what is older than what already went out is
    sent at once and counted; the rest is put in order."""
    m: TimeMerger[str] = TimeMerger(100, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    _run(m, "a", [10, 20, 30])
    assert _run(m, "b", [25]) == ["a10", "a20", "b25"]
    assert _run(m, "b", [15, 26, 5, 40]) == ["b15", "b5", "b26", "a30"], "15 and 5 are late"
    st = m.stats
    assert st.out_of_order == 2
    assert (st.pushed, st.released) == (8, 7)
    assert m.drain() == ["b40"]


def test_run_going_back_in_time_within_the_window_is_sorted_in() -> None:
    """Not older than what went out: the merge can still order it, and does not count it."""
    m: TimeMerger[str] = TimeMerger(100, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    assert _run(m, "a", [10, 30, 20]) == []
    assert _run(m, "a", [15, 40]) == []
    assert _run(m, "b", [35]) == ["a10", "a15", "a20", "a30", "b35"]
    assert m.drain() == ["a40"]
    assert m.stats.out_of_order == 0


def test_run_and_push_many_give_the_same_result() -> None:
    """push_run is push_many with the reader's round trips done inside the merge."""
    streams = {"a": [1, 3, 3, 9, 12, 20], "b": [2, 3, 8, 8, 30], "c": [5, 6, 7, 21]}
    batches = [("a", 0, 4), ("b", 0, 2), ("c", 0, 4), ("b", 2, 5), ("a", 4, 6)]

    def by_run() -> list[str]:
        m: TimeMerger[str] = TimeMerger(3, 10**9)
        for name in streams:
            m.add_source(name, 0)
        out: list[str] = []
        for name, lo, hi in batches:
            ts = streams[name][lo:hi]
            out += m.push_run(name, ts, [f"{name}{t}" for t in ts], 0)
        for name in streams:
            out += m.remove_source(name, 0)
        return out + m.drain()

    def by_items() -> list[str]:
        m: TimeMerger[str] = TimeMerger(3, 10**9)
        for name in streams:
            m.add_source(name, 0)
        pending: dict[str, list[tuple[int | None, str]]] = {name: [] for name in streams}
        out: list[str] = []

        def pump() -> None:
            moved = True
            while moved:
                moved = False
                for name, items in pending.items():
                    if items and m.can_accept(name):
                        released, i = m.push_many(name, items, 0, 0)
                        out.extend(released)
                        if i:
                            del items[:i]
                            moved = True

        for name, lo, hi in batches:
            pending[name] += [(t, f"{name}{t}") for t in streams[name][lo:hi]]
            pump()
        for name in streams:
            while pending[name]:
                pump()
                if pending[name]:
                    released, i = m.push_many(name, pending[name], 0, 0, respect_backpressure=False)
                    out.extend(released)
                    del pending[name][:i]
            out += m.remove_source(name, 0)
        return out + m.drain()

    run, items = by_run(), by_items()
    assert sorted(run) == sorted(items)
    assert [int(x[1:]) for x in run] == [int(x[1:]) for x in items] == sorted(t for s in streams.values() for t in s)


def test_removed_source_keeps_its_share_until_its_batch_is_in() -> None:
    """A reader that handed over its last batch and ended: as with push_many, the source is
    still pushing (awaited, with its share) until the rest of its batch is in the window."""
    m: TimeMerger[str] = TimeMerger(4, 10**9)
    m.add_source("a", 0)
    m.add_source("b", 0)
    assert _run(m, "a", [1, 2, 3, 4, 5]) == []
    assert m.remove_source("a", 0) == [], "b is awaited"
    assert m.sources == frozenset({"a", "b"}) and m.quota() == 2
    assert _run(m, "b", [3]) == ["a1", "a2", "a3", "b3"]
    assert m.sources == frozenset({"b"}), "a's batch is all in the window now: a is gone"
    assert m.remove_source("b", 0) == ["a4", "a5"]
    assert len(m) == 0


def test_drain_timeout_counts_from_entering_the_window() -> None:
    """Held beyond the share, a response does not age: it starts waiting when it enters the
    window."""
    m: TimeMerger[str] = TimeMerger(2, drain_timeout_ns=1000, idle_ns=10**6)
    m.add_source("a", 0)
    m.add_source("b", 0)
    assert m.push_many("b", [(0, "b0")], 0, 0)[0] == []
    m.remove_source("b", 0)
    m.add_source("c", 0)  # awaited, never sends
    assert _run(m, "a", [1, 2, 3], now=0) == [], "c is awaited; a's share (1) is in the window"
    assert m.next_deadline_ns() == 1000
    assert m.poll(1000) == ["b0", "a1"], "a1 and the older b0 waited 1000 ns"
    assert m.poll(1999) == [], "a2 entered the window at 1000"
    assert m.poll(2000) == ["a2"]
    assert m.stats.forced_by_timeout == 3


@settings(max_examples=200, deadline=None)
@given(
    streams=st.lists(st.lists(st.integers(0, 500), max_size=40).map(sorted), min_size=1, max_size=5),
    max_len=st.integers(1, 20),
    schedule=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 30)), max_size=200),
)
def test_runs_merge_exactly_whatever_the_batches(
    streams: list[list[int]], max_len: int, schedule: list[tuple[int, int]]
) -> None:
    """Sources in order, batches of any size pushed whenever the source may: sorted,
    complete, each source's own order kept, nothing forced."""
    m: TimeMerger[tuple[int, int, int]] = TimeMerger(max_len, 10**9)
    names = [f"s{i}" for i in range(len(streams))]
    for name in names:
        m.add_source(name, 0)
    pos = [0] * len(streams)
    out: list[tuple[int, int, int]] = []
    active = [i for i, s in enumerate(streams) if s]
    for i, s in enumerate(streams):
        if not s:
            out += m.remove_source(names[i], 0)
    steps = iter(schedule)
    while active:
        pick, size = next(steps, (0, 8))
        ready = [j for j in active if m.can_accept(names[j])]
        assert ready, "some source may always push"
        i = ready[pick % len(ready)]
        ts = streams[i][pos[i] : pos[i] + size]
        out += m.push_run(names[i], ts, [(t, i, pos[i] + k) for k, t in enumerate(ts)], 0)
        pos[i] += len(ts)
        if pos[i] == len(streams[i]):
            out += m.remove_source(names[i], 0)
            active.remove(i)
    out += m.drain()
    assert [t for t, _, _ in out] == sorted(t for s in streams for t in s)
    for i in range(len(streams)):
        assert [k for _, j, k in out if j == i] == list(range(len(streams[i])))
    st_ = m.stats
    assert (st_.out_of_order, st_.forced_by_length, st_.forced_by_timeout) == (0, 0, 0)
    assert st_.max_buffered <= max_len + len(streams)
    assert len(m) == 0


def _line(t: str, kind: str = "flow") -> bytes:
    return b'{"' + kind.encode() + b'":{},"time":"' + t.encode() + b'"}'


def test_timed_lines_takes_the_senders_times() -> None:
    lines = [_line("2026-11-26T12:00:00Z"), _line("2026-11-26T12:00:01Z")]
    times, kept, untimed = timed_lines(lines, [7, 8])
    assert (times, kept, untimed) == ([7, 8], lines, []), "the given times win; the lines are not read"


@pytest.mark.parametrize(
    "times_ns",
    [pytest.param([], id="no-times"), pytest.param([5], id="one-short"), pytest.param([0, 0, 0], id="all-zero")],
)
def test_timed_lines_falls_back_to_the_lines(times_ns: list[int]) -> None:
    """An agent that does not fill times_ns (or fills it wrongly): the times are read from
    the lines; a line without a time passes through separately."""
    status = b'{"node_status":{"state_change":"NODE_CONNECTED"},"node_name":"x"}'
    lines = [_line("2026-11-26T12:00:00.5Z"), status, _line("1970-01-01T00:00:02Z", "lost_events")]
    times, kept, untimed = timed_lines(lines, times_ns)
    assert times == [parse_rfc3339_ns("2026-11-26T12:00:00.5Z"), 2 * S]
    assert kept == [lines[0], lines[2]]
    assert untimed == [status]


def test_timed_lines_reads_only_the_zero_entries_and_drops_empty_lines() -> None:
    lines = [_line("2026-11-26T12:00:00Z"), _line("1970-01-01T00:00:03Z"), _line("2026-11-26T12:00:02Z")]
    times, kept, _ = timed_lines(lines, [11, 0, 13])
    assert times == [11, 3 * S, 13]
    assert kept == lines
    times, kept, _ = timed_lines([lines[0], b"", lines[1]], [11, 12, 13])
    assert kept == [lines[0], lines[1]], "an empty line is dropped"
    assert times == [parse_rfc3339_ns("2026-11-26T12:00:00Z"), 3 * S], "times no longer line up: read"
