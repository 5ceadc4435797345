"""The relay's time-ordered merge of its nodes' streams (pure: no I/O, no clock).

Each node sends its responses roughly in time order; the relay must interleave them into one
stream ordered by ``GetFlowsResponse.time``. ``TimeMerger`` holds a bounded window of responses
ordered by (time, arrival sequence) and releases them oldest first when one of these holds:

* **every node is accounted for** (the watermark): each registered source either has a
   response waiting or has been idle (nothing sent, nothing waiting) for ``idle_ns``. The oldest
   waiting response then cannot be overtaken by a response still on its way, as long as each
   node's own stream is in time order. This gives exact order without waiting for a timer;
* **the buffer is full**: it holds ``max_len`` (``--sort-buffer-len-max``) responses plus one
   per registered source; beyond that the oldest goes out even if a node might still send an
   older one, as in Hubble;
* **a response has waited ``drain_timeout_ns``** (``--sort-buffer-drain-timeout``) since it
  arrived: it goes out together with everything older, so no response is held longer than the
  drain timeout.

``can_accept(source)`` tells a reader whether to push now or wait (backpressure): each source
may hold its share of the buffer, ``max_len`` divided by the number of sources (at least one).
Readers that respect it never fill the buffer, so the watermark, not the length bound, decides
the order; and a source the merge waits for (one with nothing buffered) can always deliver.

A response older than the last one released can no longer be put in order: it is released
at once and counted in ``stats.out_of_order``. Items pushed without a time (``time_ns=None``,
e.g. the relay's own node-status events) pass straight through, uncounted.

**Runs, not single responses.** The work is done per batch and per source, not per response:
each source's held responses are kept as parallel lists sorted by (time, sequence) (a node's
own stream is already in order, so a batch is appended; one that goes back in time is sorted
in), and a release takes, from every source, the prefix up to the release key (``bisect``) and
merges those sorted runs with one C-level sort of their times (Timsort on k runs is close to
linear). The watermark is the smallest newest key over the sources; everything up to it goes
out in one step. ``push_run`` takes a node's whole batch: the part beyond the source's share
waits outside the window and enters it as the window empties, exactly as if the reader had
pushed it then with ``push_many``, without a round trip per share. The order and the counters
are those of the one-response-at-a-time merge with backpressure; equal times from different
sources go out in the order the sources were added rather than by arrival.

``now_ns`` is any monotonic clock (the relay passes ``time.monotonic_ns()``); it is only
compared with other ``now_ns`` values, never with response times.

Also here: ``parse_rfc3339_ns`` (a fast RFC 3339 parser), ``response_time_ns`` (the ``time``
of a GetFlowsResponse JSON line), ``timed_lines`` (a node's batch with its times) and
``FirstN``/``LastN`` (the relay's ``number`` semantics applied to the merged stream).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, Generic, TypeVar

import orjson

T = TypeVar("T")

_NS: Final = 1_000_000_000
_DIGITS: Final = frozenset(b"0123456789")
_DAYS_IN_MONTH: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TIME_KEY: Final = b'"time":"'


# --- time -------------------------------------------------------------------------------


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def parse_rfc3339_ns(text: str | bytes) -> int:
    """``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`` -> nanoseconds since the epoch.

    Years 0001-9999; fraction digits beyond nine are truncated; ``t``/``z`` accepted in lower
    case. Raises ``ValueError`` on anything else (including impossible dates).
    """
    s = text if isinstance(text, bytes) else text.encode("ascii", "replace")
    n = len(s)
    if (
        n < 20
        or s[4] != 45  # -
        or s[7] != 45
        or s[10] not in (84, 116)  # T t
        or s[13] != 58  # :
        or s[16] != 58
    ):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    head = s[0:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19]
    if not _DIGITS.issuperset(head):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    y = int(head[0:4])
    mo = int(head[4:6])
    d = int(head[6:8])
    h = int(head[8:10])
    mi = int(head[10:12])
    sec = int(head[12:14])
    if (
        y < 1
        or not 1 <= mo <= 12
        or d < 1
        or d > _DAYS_IN_MONTH[mo]
        or (mo == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)))
        or h > 23
        or mi > 59
        or sec > 59
    ):
        raise ValueError(f"timestamp out of range: {text!r}")
    i = 19
    nanos = 0
    if s[i] == 46:  # .
        j = i + 1
        while j < n and s[j] in _DIGITS:
            j += 1
        digits = s[i + 1 : j]
        if not digits:
            raise ValueError(f"empty fraction in timestamp {text!r}")
        frac = digits[:9]
        nanos = int(frac) * 10 ** (9 - len(frac))
        i = j
    if i >= n:
        raise ValueError(f"timestamp without a zone: {text!r}")
    zone = s[i]
    offset = 0
    if zone in (90, 122):  # Z z
        if i + 1 != n:
            raise ValueError(f"trailing characters in timestamp {text!r}")
    elif zone in (43, 45):  # + -
        tz = s[i + 1 :]
        if len(tz) != 5 or tz[2] != 58 or not _DIGITS.issuperset(tz[0:2] + tz[3:5]):
            raise ValueError(f"bad zone offset in timestamp {text!r}")
        oh, om = int(tz[0:2]), int(tz[3:5])
        if oh > 23 or om > 59:
            raise ValueError(f"bad zone offset in timestamp {text!r}")
        offset = (oh * 3600 + om * 60) * (1 if zone == 43 else -1)
    else:
        raise ValueError(f"timestamp without a zone: {text!r}")
    seconds = _days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset
    return seconds * _NS + nanos


_POW10: Final[tuple[int, ...]] = tuple(10 ** (9 - k) for k in range(10))


class TimeParser:
    """``parse_rfc3339_ns`` with the date-and-seconds part of the last ``...Z`` timestamp
    cached: responses come in bursts within one second, so most calls only read the
    fraction. One instance per reader (two plain attributes, not thread-safe)."""

    __slots__ = ("_base", "_prefix")

    def __init__(self) -> None:
        self._prefix = b""
        self._base = 0

    def __call__(self, text: bytes) -> int:
        if text[:19] == self._prefix:
            tail = text[19:]
            if tail == b"Z":
                return self._base
            n = len(tail)
            if 3 <= n <= 11 and tail[0] == 46 and tail[-1] == 90:  # .digits Z
                frac = tail[1:-1]
                if frac.isdigit():
                    return self._base + int(frac) * _POW10[n - 2]
        value = parse_rfc3339_ns(text)
        if text[-1:] in (b"Z", b"z") and len(text) >= 20:
            self._prefix = text[:19]
            self._base = value - value % _NS
        return value

    def response_time(self, line: bytes) -> int | None:
        """``response_time_ns(line, self)``, with the common case inlined (the relay calls
        this once per response)."""
        if line[-2:] == b'"}':
            end = len(line) - 2
            start = line.rfind(_TIME_KEY, 0, end)
            if start > 0 and line[start - 1] in (44, 123):
                ts = line[start + 8 : end]
                if ts[:19] == self._prefix:
                    tail = ts[19:]
                    if tail == b"Z":
                        return self._base
                    n = len(tail)
                    if 3 <= n <= 11 and tail[0] == 46 and tail[-1] == 90 and tail[1:-1].isdigit():
                        return self._base + int(tail[1:-1]) * _POW10[n - 2]
        return response_time_ns(line, self)


def response_time_ns(line: bytes, parse: Callable[[bytes], int] = parse_rfc3339_ns) -> int | None:
    """The top-level ``time`` of one GetFlowsResponse JSON line, in ns; None if it has none
    (or it is not a valid timestamp, or the line is not a JSON object).

    Fast path: our agents and protojson put ``time`` last, so the line ends with
    ``"time":"...Z"}`` and the string is found without decoding the whole response (a JSON
    string cannot contain an unescaped ``"time":"``, so the last occurrence right before the
    closing brace is the top-level member). Anything else is decoded with orjson. ``parse``
    may be a ``TimeParser`` for speed.
    """
    end = len(line) - 2
    if end > 8 and line[end] == 34 and line[end + 1] == 125:  # "}
        start = line.rfind(_TIME_KEY, 0, end)
        if start > 0 and line[start - 1] in (44, 123):  # , {
            ts = line[start + 8 : end]
            if 34 not in ts and 92 not in ts:  # no " or \
                try:
                    return parse(ts)
                except ValueError:
                    return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    value = obj.get("time")
    if not isinstance(value, str):
        return None
    try:
        return parse(value.encode("ascii", "replace"))
    except ValueError:
        return None


# --- batches from a node ------------------------------------------------------------------


def timed_lines(
    lines: list[bytes], times_ns: Sequence[int], parse: TimeParser | None = None
) -> tuple[list[int], list[bytes], list[bytes]]:
    """The lines of one FlowBatch of a node with their times: (times, timed lines, untimed
    lines).

    ``times_ns`` is the batch's ``times_ns`` field: one time per line, 0 where the sender did
    not give one. Where it is empty (an agent that does not fill it), does not have one entry
    per line, or holds a 0, the line's own ``time`` is read (``response_time_ns``). Lines
    without any time (e.g. node-status events of another relay) come back separately, in
    their order, to pass through the merge unordered. Empty lines are dropped.
    """
    if not all(lines):
        lines = [line for line in lines if line]
        times_ns = ()  # no longer aligned with the lines
    rtime = (parse or TimeParser()).response_time
    if len(times_ns) == len(lines):
        times = times_ns if isinstance(times_ns, list) else list(times_ns)
        if 0 not in times:
            return times, lines, []
        found: list[int | None] = [t if t else rtime(line) for t, line in zip(times, lines, strict=True)]
    else:
        found = list(map(rtime, lines))
    if None not in found:
        return found, lines, []  # type: ignore[return-value]  # no None left
    kept_t: list[int] = []
    kept: list[bytes] = []
    untimed: list[bytes] = []
    for t, line in zip(found, lines, strict=True):
        if t is None:
            untimed.append(line)
        else:
            kept_t.append(t)
            kept.append(line)
    return kept_t, kept, untimed


# --- the merge --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MergeStats:
    """Counters of one merge.

    ``out_of_order``: responses that arrived after a newer one had been released (they go
    out late, out of order). ``forced_by_length`` / ``forced_by_timeout``: responses released
    by the length bound or the drain timeout while a node was still awaited (each may or
    may not have broken the order). ``released_idle``: responses released while a node had
    nothing buffered because it had been idle for ``idle_ns``. ``max_buffered``: the most responses held at once.
    """

    pushed: int = 0
    released: int = 0
    passthrough: int = 0
    out_of_order: int = 0
    forced_by_length: int = 0
    forced_by_timeout: int = 0
    released_idle: int = 0
    max_buffered: int = 0


_MIN_KEY: Final = (-(1 << 63), -1)
_MAX_TIME: Final = 1 << 64  # above every int64 time
_COMPACT: Final = 4096  # drop released slots from a source's lists past this many


def _pick(values: list[T], order: list[int]) -> list[T]:
    """``[values[i] for i in order]`` without a Python loop (``len(order) >= 2``)."""
    return list(itemgetter(*order)(values))


class _Held(Generic[T]):
    """What the merge holds of one source: parallel lists sorted by (time, seq) from ``pos``.

    ``[pos, win)`` is in the sort window (what ``can_accept``, the length bound and the drain
    timeout count); ``[win, len)`` arrived in a batch larger than the source's share and
    enters the window as the window empties, as if the reader pushed it then.
    """

    __slots__ = ("items", "pos", "seqs", "times", "win")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.seqs: list[int] = []
        self.items: list[T] = []
        self.pos = 0
        self.win = 0

    def upto(self, time_ns: int, seq: int) -> int:
        """The end of the held items with key (time, seq) <= the given one."""
        times, pos = self.times, self.pos
        hi = bisect_right(times, time_ns, pos)
        if hi > pos and times[hi - 1] == time_ns:
            seqs = self.seqs
            while hi > pos and times[hi - 1] == time_ns and seqs[hi - 1] > seq:
                hi -= 1
        return hi

    def reset(self) -> None:
        self.times, self.seqs, self.items = [], [], []
        self.pos = self.win = 0

    def compact(self) -> None:
        pos = self.pos
        del self.times[:pos]
        del self.seqs[:pos]
        del self.items[:pos]
        self.win -= pos
        self.pos = 0


class TimeMerger(Generic[T]):
    """A bounded, time-ordered merge of several sources (see the module doc).

    Every method that can release items returns them, oldest first, in the order they must
    be sent.
    """

    __slots__ = (
        "_arrivals",
        "_blocked_until",
        "_drain",
        "_empty",
        "_finishing",
        "_forced_len",
        "_forced_time",
        "_held",
        "_idle",
        "_last",
        "_last_seen",
        "_max_buffered",
        "_max_len",
        "_out_of_order",
        "_passthrough",
        "_pushed",
        "_released",
        "_released_idle",
        "_seq",
        "_src",
        "_window",
    )

    def __init__(self, max_len: int, drain_timeout_ns: int, idle_ns: int | None = None) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        if drain_timeout_ns <= 0:
            raise ValueError(f"drain timeout must be positive, got {drain_timeout_ns} ns")
        self._max_len = max_len
        self._drain = drain_timeout_ns
        self._idle = drain_timeout_ns if idle_ns is None else max(0, idle_ns)
        self._src: dict[str, _Held[T]] = {}  # registered sources and sources holding items
        self._last_seen: dict[str, int] = {}  # registered sources -> last push (or add) time
        self._empty: set[str] = set()  # registered sources holding nothing
        self._finishing: set[str] = set()  # removed, but part of their last batch is not in the window yet
        self._blocked_until = 0  # when every empty source is idle
        self._arrivals: deque[tuple[int, int, int]] = deque()  # (arrival, time, seq) per window entry
        self._last = _MIN_KEY  # key of the last item released in order
        self._held = 0  # items held, all sources
        self._window = 0  # of which in the sort window
        self._seq = 0
        self._pushed = 0
        self._released = 0
        self._passthrough = 0
        self._out_of_order = 0
        self._forced_len = 0
        self._forced_time = 0
        self._released_idle = 0
        self._max_buffered = 0

    # --- sources ------------------------------------------------------------------------

    def add_source(self, source: str, now_ns: int, grace_ns: int | None = None) -> None:
        """Await ``source``: nothing is released by the watermark until it has sent
        something or been idle for ``grace_ns`` (default ``idle_ns``; a longer grace lets a
        source that is slow to start, e.g. a node reading a large history, keep its place)."""
        self._finishing.discard(source)
        if source in self._last_seen:
            return
        extra = 0 if grace_ns is None else grace_ns - self._idle
        self._last_seen[source] = now_ns + extra
        held = self._src.get(source)
        if held is None:
            held = self._src[source] = _Held()
        if held.pos == len(held.times):
            self._empty.add(source)
            self._recompute_blocked()

    def remove_source(self, source: str, now_ns: int) -> list[T]:
        """``source`` has finished (or failed): stop awaiting it. What it sent stays.

        Until the rest of its last ``push_run`` batch has entered the window, the source is
        still pushing (as its reader would be with ``push_many``): it keeps its share and
        its place, and is removed then."""
        if source not in self._last_seen:
            return []
        held = self._src[source]
        if held.win < len(held.times):
            self._finishing.add(source)
        else:
            self._unregister(source)
        return self._release(now_ns)

    def _unregister(self, source: str) -> None:
        del self._last_seen[source]
        self._finishing.discard(source)
        self._empty.discard(source)
        held = self._src[source]
        if held.pos == len(held.times):
            del self._src[source]
        self._recompute_blocked()

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(self._last_seen)

    def _recompute_blocked(self) -> None:
        idle, seen = self._idle, self._last_seen
        self._blocked_until = max((seen[s] + idle for s in self._empty), default=0)

    def _enter(self, source: str, now_ns: int) -> _Held[T]:
        if source not in self._last_seen:
            self.add_source(source, now_ns)
        else:
            self._finishing.discard(source)  # pushing again: not finished after all
            if self._last_seen[source] > now_ns:
                self._last_seen[source] = now_ns  # the grace ends with the first push
        return self._src[source]

    def _pushed_now(self, source: str, held: _Held[T], now_ns: int) -> None:
        """``source`` just sent something: it is not idle."""
        self._last_seen[source] = now_ns
        if held.pos < len(held.times):
            if source in self._empty:
                self._empty.discard(source)
                self._recompute_blocked()
        elif source in self._empty:
            self._recompute_blocked()

    # --- input ------------------------------------------------------------------------

    def quota(self) -> int:
        """How many buffered items each source may hold (its share of ``max_len``)."""
        return max(1, self._max_len // max(1, len(self._last_seen)))

    def can_accept(self, source: str) -> bool:
        """Whether ``source`` should push now (see the module doc on backpressure)."""
        held = self._src.get(source)
        if held is None:
            return True
        return held.win == len(held.times) and held.win - held.pos < self.quota()

    def push(self, source: str, time_ns: int | None, item: T, now_ns: int) -> list[T]:
        """Add one item; returns what can be released now."""
        released, _ = self.push_many(source, ((time_ns, item),), 0, now_ns, respect_backpressure=False)
        return released

    def push_many(
        self,
        source: str,
        items: Sequence[tuple[int | None, T]],
        start: int,
        now_ns: int,
        *,
        respect_backpressure: bool = True,
    ) -> tuple[list[T], int]:
        """Add ``items[start:]`` as ``(time_ns, item)`` pairs, stopping early when
        ``can_accept(source)`` turns false (unless ``respect_backpressure`` is false).

        Returns the released items and the index of the first item not taken.
        """
        held = self._enter(source, now_ns)
        out: list[T] = []
        if not respect_backpressure:
            room = len(items)
        elif held.win < len(held.times):
            room = 0
        else:
            room = self.quota() - (held.win - held.pos)
        last_time = self._last[0]
        times: list[int] = []
        values: list[T] = []
        i, n = start, len(items)
        while i < n and room > 0:
            time_ns, item = items[i]
            i += 1
            if time_ns is None:
                self._passthrough += 1
                out.append(item)
                continue
            self._pushed += 1
            if time_ns < last_time:
                # too late to be put in order: out at once
                self._out_of_order += 1
                self._released += 1
                out.append(item)
                continue
            times.append(time_ns)
            values.append(item)
            room -= 1
        self._add(held, times, values, now_ns, window_all=not respect_backpressure)
        self._pushed_now(source, held, now_ns)
        out += self._release(now_ns)
        return out, i

    def push_run(self, source: str, times: list[int], items: list[T], now_ns: int) -> list[T]:
        """Add a whole batch of ``source`` (``times[i]`` is the time of ``items[i]``; normally
        ascending) at once; returns what can be released now.

        Up to the source's share goes into the sort window as with ``push_many``; the rest
        is held outside it and enters it as the window empties, as if the reader pushed it
        then, so the result is that of ``push_many`` in a loop without the round trips.
        Push the next batch once ``can_accept(source)``.
        """
        held = self._enter(source, now_ns)
        out: list[T] = []
        n = len(times)
        if n:
            self._pushed += n
            ordered = n == 1 or times == sorted(times)
            last_time = self._last[0]
            if (times[0] if ordered else min(times)) < last_time:
                # some are too late to be put in order: out at once, counted
                kept_t: list[int] = []
                kept: list[T] = []
                for t, item in zip(times, items, strict=True):
                    if t < last_time:
                        out.append(item)
                    else:
                        kept_t.append(t)
                        kept.append(item)
                late = n - len(kept_t)
                self._out_of_order += late
                self._released += late
                times, items = kept_t, kept
            self._add(held, times, items, now_ns, window_all=False, ordered=ordered)
        self._pushed_now(source, held, now_ns)
        out += self._release(now_ns)
        return out

    def _add(
        self,
        held: _Held[T],
        times: list[int],
        items: list[T],
        now_ns: int,
        *,
        window_all: bool,
        ordered: bool | None = None,
    ) -> None:
        n = len(times)
        if not n:
            return
        seq = self._seq
        self._seq = seq + n
        if ordered is None:
            ordered = n == 1 or times == sorted(times)
        if ordered and (held.pos == len(held.times) or times[0] >= held.times[-1]):
            held.times += times
            held.seqs += range(seq, seq + n)
            held.items += items
        else:
            # the source's own stream went back in time: sort what it holds (stable, so
            # equal times keep their order); the window keeps its size
            pos = held.pos
            all_t = held.times[pos:] + times
            all_s = held.seqs[pos:]
            all_s += range(seq, seq + n)
            all_i = held.items[pos:] + items
            order = sorted(range(len(all_t)), key=all_t.__getitem__)
            held.times, held.seqs, held.items = _pick(all_t, order), _pick(all_s, order), _pick(all_i, order)
            held.win -= pos
            held.pos = 0
        self._held += n
        end = len(held.times)
        new_win = end if window_all else max(held.win, min(end, held.pos + self.quota()))
        if new_win > held.win:
            self._window += new_win - held.win
            held.win = new_win
            self._arrivals.append((now_ns, held.times[new_win - 1], held.seqs[new_win - 1]))

    # --- output -----------------------------------------------------------------------

    def _take(self, time_ns: int, seq: int, now_ns: int) -> list[T]:
        """Release every held item with key (time, seq) <= the given one, in key order."""
        seg_t: list[list[int]] = []
        seg_i: list[list[T]] = []
        last = self._last
        emptied: list[str] = []
        window = 0
        for name, held in self._src.items():
            pos = held.pos
            if pos == len(held.times):
                continue
            hi = held.upto(time_ns, seq)
            if hi == pos:
                continue
            seg_t.append(held.times[pos:hi])
            seg_i.append(held.items[pos:hi])
            key = (held.times[hi - 1], held.seqs[hi - 1])
            if key > last:
                last = key
            window += min(hi, held.win) - pos
            held.pos = hi
            if held.win < hi:
                held.win = hi
            if hi == len(held.times):
                held.reset()
                emptied.append(name)
            elif hi > _COMPACT and 2 * hi > len(held.times):
                held.compact()
        if not seg_t:
            return []
        self._last = last
        self._window -= window
        for name in emptied:
            if name in self._finishing:
                self._unregister(name)
                continue
            if name not in self._last_seen:
                del self._src[name]  # a finished source's last items
                continue
            self._empty.add(name)
            # this source holds nothing from now on: it is awaited for idle_ns (it was not
            # idle while its responses were waiting here, however long ago it sent them)
            seen = self._last_seen[name]
            if now_ns > seen:
                self._last_seen[name] = seen = now_ns
            until = seen + self._idle
            if until > self._blocked_until:
                self._blocked_until = until
        if len(seg_t) == 1:
            out = seg_i[0]
        else:
            all_t = seg_t[0]
            all_i = seg_i[0]
            for t, i in zip(seg_t[1:], seg_i[1:], strict=True):
                all_t += t
                all_i += i
            # each segment is sorted: Timsort merges the runs (stable: ties keep source order)
            out = _pick(all_i, sorted(range(len(all_t)), key=all_t.__getitem__))
        self._held -= len(out)
        self._released += len(out)
        return out

    def _refill(self, now_ns: int) -> None:
        """Held items beyond a source's window enter it as the window empties."""
        quota = self.quota()
        done: list[str] = []
        for name, held in self._src.items():
            end = len(held.times)
            if held.win < end:
                new_win = min(end, held.pos + quota)
                if new_win > held.win:
                    self._window += new_win - held.win
                    held.win = new_win
                    self._arrivals.append((now_ns, held.times[new_win - 1], held.seqs[new_win - 1]))
            if held.win == end and name in self._finishing:
                done.append(name)
        for name in done:
            self._unregister(name)  # its share goes to the others at the next refill

    def _watermark(self) -> tuple[int, int]:
        """The key up to which every registered source has sent (the smallest newest key
        of the sources holding something); everything if none holds anything."""
        best: tuple[int, int] | None = None
        src = self._src
        for name in self._last_seen:
            held = src[name]
            if held.pos < len(held.times):
                key = (held.times[-1], held.seqs[-1])
                if best is None or key < best:
                    best = key
        return (_MAX_TIME, 0) if best is None else best

    def _pop_forced_len(self, now_ns: int) -> list[T]:
        out: list[T] = []
        while self._window > self._max_len + len(self._src):
            oldest: tuple[int, int] | None = None
            for held in self._src.values():
                if held.win > held.pos:
                    key = (held.times[held.pos], held.seqs[held.pos])
                    if oldest is None or key < oldest:
                        oldest = key
            if oldest is None:
                break
            if self._empty:
                self._forced_len += 1
            out += self._take(oldest[0], oldest[1], now_ns)
        return out

    def _release(self, now_ns: int) -> list[T]:
        out: list[T] = []
        # drain timeout: everything up to the newest item of each window entry older than it
        arrivals = self._arrivals
        limit = now_ns - self._drain
        target: tuple[int, int] | None = None
        while arrivals and arrivals[0][0] <= limit:
            _, t, s = arrivals.popleft()
            if target is None or (t, s) > target:
                target = (t, s)
        if target is not None and target > self._last:
            awaited = bool(self._empty) and now_ns < self._blocked_until
            got = self._take(target[0], target[1], now_ns)
            if awaited:
                self._forced_time += len(got)
            out += got
        # watermark: every awaited source has something held, or is idle
        while self._held and (not self._empty or now_ns >= self._blocked_until):
            idle = bool(self._empty)
            key = self._watermark()
            got = self._take(key[0], key[1], now_ns)
            if not got:
                break
            if idle:
                self._released_idle += len(got)
            out += got
        self._refill(now_ns)
        if self._window > self._max_len + len(self._src):
            out += self._pop_forced_len(now_ns)
        if self._window > self._max_buffered:
            self._max_buffered = self._window
        if not self._held:
            arrivals.clear()
        return out

    def poll(self, now_ns: int) -> list[T]:
        """Release what time alone allows (drain timeout, idle sources)."""
        if not self._held:
            self._arrivals.clear()
            return []
        if self._empty:
            self._recompute_blocked()
        return self._release(now_ns)

    def drain(self) -> list[T]:
        """Release everything, in order (end of stream)."""
        out = self._take(_MAX_TIME, 0, -(1 << 63)) if self._held else []
        self._arrivals.clear()
        return out

    def next_deadline_ns(self) -> int | None:
        """When ``poll`` may next release something; None while nothing is buffered."""
        if not self._held:
            return None
        deadlines = []
        if self._arrivals:
            deadlines.append(self._arrivals[0][0] + self._drain)
        if self._empty:
            deadlines.append(self._blocked_until)
        return min(deadlines) if deadlines else None

    def __len__(self) -> int:
        return self._held

    def buffered(self, source: str) -> int:
        held = self._src.get(source)
        return 0 if held is None else len(held.times) - held.pos

    @property
    def stats(self) -> MergeStats:
        return MergeStats(
            pushed=self._pushed,
            released=self._released,
            passthrough=self._passthrough,
            out_of_order=self._out_of_order,
            forced_by_length=self._forced_len,
            forced_by_timeout=self._forced_time,
            released_idle=self._released_idle,
            max_buffered=self._max_buffered,
        )


# --- number semantics across nodes --------------------------------------------------------


class FirstN(Generic[T]):
    """Pass items until ``n`` counted items went through (uncounted ones, e.g. lost events,
    pass while the limit is not reached); ``done`` once the n-th counted item passed."""

    __slots__ = ("_counts", "_left")

    def __init__(self, n: int, counts: Callable[[T], bool]) -> None:
        self._left = n
        self._counts = counts

    @property
    def done(self) -> bool:
        return self._left <= 0

    def feed(self, items: Sequence[T]) -> list[T]:
        out: list[T] = []
        for item in items:
            if self._left <= 0:
                break
            out.append(item)
            if self._counts(item):
                self._left -= 1
        return out


class LastN(Generic[T]):
    """Keep the last ``n`` counted items, with the uncounted ones between them; ``result``
    gives them in order at the end of the stream."""

    __slots__ = ("_counted", "_counts", "_items", "_n")

    def __init__(self, n: int, counts: Callable[[T], bool]) -> None:
        self._n = n
        self._counts = counts
        self._items: deque[tuple[bool, T]] = deque()
        self._counted = 0

    def feed(self, items: Sequence[T]) -> None:
        for item in items:
            c = self._counts(item)
            self._items.append((c, item))
            if c:
                self._counted += 1
                while self._counted > self._n:
                    dropped, _ = self._items.popleft()
                    if dropped:
                        self._counted -= 1
        # uncounted items before the first kept counted item are outside the span
        while self._items and self._counted >= self._n and not self._items[0][0]:
            self._items.popleft()

    def result(self) -> list[T]:
        return [item for _, item in self._items]
