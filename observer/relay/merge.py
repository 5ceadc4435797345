"""The relay's time-ordered merge of its nodes' streams (pure: no I/O, no clock).

Each node sends its responses roughly in time order; the relay must interleave them into one
stream ordered by ``GetFlowsResponse.time``. ``TimeMerger`` holds a bounded window of responses
in a heap keyed by (time, arrival sequence) and releases them oldest first when one of these
holds:

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

``now_ns`` is any monotonic clock (the relay passes ``time.monotonic_ns()``); it is only
compared with other ``now_ns`` values, never with response times.

Also here: ``parse_rfc3339_ns`` (a fast RFC 3339 parser), ``response_time_ns`` (the ``time``
of a GetFlowsResponse JSON line) and ``FirstN``/``LastN`` (the relay's ``number`` semantics
applied to the merged stream).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


class TimeMerger(Generic[T]):
    """A bounded, time-ordered merge of several sources (see the module doc).

    Every method that can release items returns them, oldest first, in the order they must
    be sent.
    """

    __slots__ = (
        "_arrivals",
        "_blocked_until",
        "_counts",
        "_drain",
        "_empty",
        "_forced_len",
        "_forced_time",
        "_heap",
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
    )

    def __init__(self, max_len: int, drain_timeout_ns: int, idle_ns: int | None = None) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        if drain_timeout_ns <= 0:
            raise ValueError(f"drain timeout must be positive, got {drain_timeout_ns} ns")
        self._max_len = max_len
        self._drain = drain_timeout_ns
        self._idle = drain_timeout_ns if idle_ns is None else max(0, idle_ns)
        self._heap: list[tuple[int, int, str, T]] = []
        self._counts: dict[str, int] = {}
        self._last_seen: dict[str, int] = {}  # registered sources -> last push (or add) time
        self._empty: set[str] = set()  # registered sources with nothing buffered
        self._blocked_until = 0  # when every empty source is idle
        self._arrivals: deque[tuple[int, int, int]] = deque()  # (arrival, time, seq) per push
        self._last = (-(1 << 63), -1)  # key of the last released item
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
        if source in self._last_seen:
            return
        extra = 0 if grace_ns is None else grace_ns - self._idle
        self._last_seen[source] = now_ns + extra
        self._counts.setdefault(source, 0)
        if self._counts[source] == 0:
            self._empty.add(source)
            self._recompute_blocked()

    def remove_source(self, source: str, now_ns: int) -> list[T]:
        """``source`` has finished (or failed): stop awaiting it. Its buffered items stay."""
        if self._last_seen.pop(source, None) is None:
            return []
        self._empty.discard(source)
        if not self._counts.get(source):
            self._counts.pop(source, None)
        self._recompute_blocked()
        return self._release(now_ns)

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(self._last_seen)

    def _recompute_blocked(self) -> None:
        idle, seen = self._idle, self._last_seen
        self._blocked_until = max((seen[s] + idle for s in self._empty), default=0)

    # --- input ------------------------------------------------------------------------

    def quota(self) -> int:
        """How many buffered items each source may hold (its share of ``max_len``)."""
        return max(1, self._max_len // max(1, len(self._last_seen)))

    def can_accept(self, source: str) -> bool:
        """Whether ``source`` should push now (see the module doc on backpressure)."""
        return self._counts.get(source, 0) < self.quota()

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
        out: list[T] = []
        if source not in self._last_seen:
            self.add_source(source, now_ns)
        elif self._last_seen[source] > now_ns:
            self._last_seen[source] = now_ns  # the grace ends with the first push
        heap, counts = self._heap, self._counts
        max_len = self._max_len
        quota = self.quota()
        last_time = self._last[0]
        i, n = start, len(items)
        first_key: tuple[int, int] | None = None
        newest_time, newest_seq = -(1 << 63), -1
        count = counts.get(source, 0)
        taken = 0
        while i < n:
            if respect_backpressure and count >= quota:
                break
            time_ns, item = items[i]
            i += 1
            seq = self._seq
            self._seq = seq + 1
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
            heapq.heappush(heap, (time_ns, seq, source, item))
            count += 1
            taken += 1
            if first_key is None:
                first_key = (time_ns, seq)
            if time_ns > newest_time or (time_ns == newest_time and seq > newest_seq):
                newest_time, newest_seq = time_ns, seq
            if len(heap) > max_len + len(self._counts):
                counts[source] = count
                self._empty.discard(source)
                out.extend(self._pop_forced_len(now_ns))
                count = counts[source]
                last_time = self._last[0]
        counts[source] = count
        if source in self._last_seen:
            self._last_seen[source] = now_ns
            if count:
                if source in self._empty:
                    self._empty.discard(source)
                    self._recompute_blocked()
            elif source in self._empty:
                self._recompute_blocked()
        if taken:
            self._arrivals.append((now_ns, newest_time, newest_seq))
            if len(heap) > self._max_buffered:
                self._max_buffered = len(heap)
        out.extend(self._release(now_ns))
        return out, i

    # --- output -----------------------------------------------------------------------

    def _pop(self, now_ns: int) -> T:
        time_ns, seq, source, item = heapq.heappop(self._heap)
        self._last = (time_ns, seq)
        self._released += 1
        left = self._counts[source] - 1
        self._counts[source] = left
        if left == 0 and source not in self._last_seen:
            del self._counts[source]  # a finished source's last item
        elif left == 0:
            self._empty.add(source)
            # this source has nothing buffered from now on: it is awaited for idle_ns (it was
            # not idle while its responses were waiting here, however long ago it sent them)
            seen = self._last_seen[source]
            if now_ns > seen:
                self._last_seen[source] = seen = now_ns
            until = seen + self._idle
            if until > self._blocked_until:
                self._blocked_until = until
        return item

    def _pop_forced_len(self, now_ns: int) -> list[T]:
        out = []
        capacity = self._max_len + len(self._counts)
        while len(self._heap) > capacity:
            if self._empty:
                self._forced_len += 1
            out.append(self._pop(now_ns))
        return out

    def _release(self, now_ns: int) -> list[T]:
        heap = self._heap
        out: list[T] = []
        # drain timeout: everything up to the newest item of each push older than the timeout
        arrivals = self._arrivals
        limit = now_ns - self._drain
        target: tuple[int, int] | None = None
        while arrivals and arrivals[0][0] <= limit:
            _, t, s = arrivals.popleft()
            if target is None or (t, s) > target:
                target = (t, s)
        if target is not None and (target > self._last):
            while heap and (heap[0][0], heap[0][1]) <= target:
                if self._empty and now_ns < self._blocked_until:
                    self._forced_time += 1
                out.append(self._pop(now_ns))
        # watermark: every awaited source has something buffered, or is idle
        while heap and (not self._empty or now_ns >= self._blocked_until):
            if self._empty:
                self._released_idle += 1
            out.append(self._pop(now_ns))
        if len(heap) > self._max_len + len(self._counts):
            out.extend(self._pop_forced_len(now_ns))
        if not heap:
            arrivals.clear()
        return out

    def poll(self, now_ns: int) -> list[T]:
        """Release what time alone allows (drain timeout, idle sources)."""
        if not self._heap:
            self._arrivals.clear()
            return []
        if self._empty:
            self._recompute_blocked()
        return self._release(now_ns)

    def drain(self) -> list[T]:
        """Release everything, in order (end of stream)."""
        out = []
        never = -(1 << 63)
        while self._heap:
            out.append(self._pop(never))
        self._arrivals.clear()
        return out

    def next_deadline_ns(self) -> int | None:
        """When ``poll`` may next release something; None while nothing is buffered."""
        if not self._heap:
            return None
        deadlines = []
        if self._arrivals:
            deadlines.append(self._arrivals[0][0] + self._drain)
        if self._empty:
            deadlines.append(self._blocked_until)
        return min(deadlines) if deadlines else None

    def __len__(self) -> int:
        return len(self._heap)

    def buffered(self, source: str) -> int:
        return self._counts.get(source, 0)

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
