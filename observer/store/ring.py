"""The bounded flow history: a power-of-two ring of compact JSON responses.

Each entry is ``Entry(seq, time_ns, kind, data)``: a monotonic sequence number (0, 1, 2, ...),
the event time in ns since the epoch, an ``EntryKind`` and the compact JSON bytes of a whole
GetFlowsResponse dict (one line: no newline inside). Slots are parallel arrays (a list of bytes,
an ``array('q')`` of times, a ``bytearray`` of kinds) indexed by ``seq & mask``: no object per
entry but its bytes, which ``append`` copies into an exact-size object (``orjson.dumps`` output
keeps a ~8 KiB allocation whatever its length).

**Sealed blocks.** Stores of 1,023 entries or more are cut into blocks of ``BLOCK`` slots. When
the writer leaves a block, the block is *sealed*: its lines are joined by newlines and
compressed with LZ4 into one bytes object, and the slots' own bytes are dropped (at once, or
later with ``defer`` and ``compact()``). When the writer wraps around into a sealed block, the
block becomes *mixed*: each slot it overwrites holds raw bytes again, which win over the
compressed copy, and the entries not yet overwritten are still read from it, so the ring keeps
exactly ``capacity`` entries and nothing is decompressed for entries about to go. Flows of one
node are alike (the same endpoints, labels and names over and over), so a block compresses
~8-10x: bench/store_bench.py measures the bytes per stored flow. Readers get the same bytes
either way; a sealed block is decompressed once per sequential read (a one-block cache), and
``line_parts`` hands a whole one to the batched stream as its decompressed bytes. Times and
kinds stay uncompressed, so time windows and LOST counting never decompress.

As in Hubble, the capacity is 2^n - 1 and the array has 2^n slots. The store is owned by one
asyncio event loop and is not thread-safe: ``append`` is synchronous and cheap; after a batch of
appends, ``notify()`` wakes the coroutines waiting in ``wait_for_new`` once.

Selection (``select``) implements the non-follow part of GetFlows, with the time window exact:
``since_ns <= time_ns <= until_ns``, both edges inclusive, whatever the order of times in the
ring. ``Follower`` implements follow mode and reports what the writer overwrote before it was
read (the server turns that into a LostEvent with source HUBBLE_RING_BUFFER).

LOST entries (kind ``EntryKind.LOST``, e.g. kernel ring-buffer losses) are exempt from the
predicate and from ``number`` (Hubble never filters nor counts lost events), but not from the
time window (their time is when the loss was detected).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

import lz4.block

from observer.errors import ConfigError

DEFAULT_CAPACITY: Final = 65535
MAX_CAPACITY: Final = (1 << 20) - 1
NS_PER_S: Final = 1_000_000_000
RATE_WINDOW_S: Final = 60
_RATE_SLOTS: Final = 64  # >= RATE_WINDOW_S, a power of two
BLOCK_SHIFT: Final = 8
BLOCK: Final = 1 << BLOCK_SHIFT  # slots per sealed (compressed) block
_BLOCK_MASK: Final = BLOCK - 1
_MIN_SEALED_SIZE: Final = 4 * BLOCK  # smaller stores stay uncompressed


class EntryKind(IntEnum):
    """What a stored response holds (its GetFlowsResponse oneof member)."""

    FLOW = 1
    LOST = 2
    NODE_STATUS = 3
    AGENT_EVENT = 4
    DEBUG_EVENT = 5


# Plain ints for the hot paths: attribute access on an enum class costs ~0.4 us in 3.11.
_FLOW: Final = int(EntryKind.FLOW)
_LOST: Final = int(EntryKind.LOST)


class Entry(NamedTuple):
    """One stored response."""

    seq: int
    time_ns: int
    kind: int
    data: bytes


EntryPredicate = Callable[[Entry], bool]

_SIZE_HEADER: Final = 4  # lz4.block.compress's default store_size: the size, 4 bytes little-endian


class SealedBlock(NamedTuple):
    """A whole sealed block as stored (``FlowStore.sealed_parts``): ``lz4`` is the LZ4 block
    (raw block format, no size header) of its ``BLOCK`` lines joined by newlines (no final
    newline), ``size`` the size of that decompressed."""

    lz4: memoryview
    size: int


def validate_capacity(capacity: object) -> int:
    """``capacity`` if it is 2^n - 1 with 1 <= n <= 20, else ConfigError.

    Hubble allows n <= 16 (65535); we allow up to 2^20 - 1 since entries are compact.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise ConfigError(f"flow store capacity {capacity!r}: not an integer")
    if capacity < 1 or capacity & (capacity + 1):
        raise ConfigError(
            f"flow store capacity {capacity}: must be one less than a power of two "
            "(1, 3, 7, ..., 4095, ..., 65535)"
        )
    if capacity > MAX_CAPACITY:
        raise ConfigError(f"flow store capacity {capacity}: too large (max {MAX_CAPACITY})")
    return capacity


@dataclass(frozen=True, slots=True)
class FollowBatch:
    """What a follower read: ``lost`` entries overwritten before it got to them, then
    ``entries`` in sequence order (the ones after the loss)."""

    lost: int
    entries: tuple[Entry, ...]


class FlowStore:
    """Bounded ring of responses with a monotonic write sequence (see the module doc)."""

    __slots__ = (
        "_backlog",
        "_blocks",
        "_cache_joined",
        "_cache_lines",
        "_cache_src",
        "_capacity",
        "_compact",
        "_data",
        "_defer",
        "_event",
        "_kind",
        "_mask",
        "_mixed",
        "_next",
        "_one_line",
        "_rate_cnt",
        "_rate_end",
        "_rate_idx",
        "_rate_sec",
        "_rate_start",
        "_time",
        "_waiters",
    )

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        compact: bool = True,
        seal: bool = True,
        defer: bool = False,
    ) -> None:
        """``compact``: store a copy of each ``data`` in an exact-size bytes object.

        ``orjson.dumps`` returns bytes whose allocation is far larger than their length
        (about 8 KiB for a 1.2 KiB flow with orjson 3.13, measured with tracemalloc and RSS in
        bench/store_bench.py); keeping them as they are would cost ~6x the memory. The copy
        costs a memcpy per append. Pass False only for data that is already exact-size.

        ``seal``: compress blocks the writer has left (see the module doc); stores smaller
        than ``_MIN_SEALED_SIZE`` slots never seal. ``defer``: do not compress as the writer
        leaves a block but queue it for ``compact()``, which the owner calls when it is idle
        (the agent: when the ring buffer is empty), so that a burst is ingested at full speed
        and compressed afterwards; a queued block the writer reaches again is simply
        overwritten. Memory is then at worst that of an unsealed store.
        """
        self._capacity = validate_capacity(capacity)
        self._compact = compact
        size = capacity + 1
        self._mask = capacity
        self._data: list[bytes | None] = [None] * size
        self._time = array("q", bytes(8 * size))
        self._kind = bytearray(size)
        self._blocks: list[bytes | None] | None = (
            [None] * (size >> BLOCK_SHIFT) if seal and size >= _MIN_SEALED_SIZE else None
        )
        self._defer = defer
        self._backlog: dict[int, None] = {}  # blocks left by the writer, not yet compressed
        # sealed blocks the writer has begun to overwrite: an entry's raw bytes, where the
        # slot holds them, are newer than the compressed block's
        self._mixed: set[int] = set()
        # per block: entries written by ``extend(..., one_line=True)`` since the writer
        # entered it; a block all of whose entries came so needs no newline scan to seal
        self._one_line = array("l", bytes(8 * (size >> BLOCK_SHIFT))) if self._blocks else array("l")
        self._cache_src: bytes | None = None
        self._cache_joined = b""
        self._cache_lines: list[bytes] = []
        self._next = 0
        self._event = asyncio.Event()
        self._waiters = 0
        # flows per second: _RATE_SLOTS buckets keyed by second; the current bucket's bounds
        # are cached so that counting a flow of the current second is two comparisons.
        self._rate_sec = array("q", [-1] * _RATE_SLOTS)
        self._rate_cnt = array("q", bytes(8 * _RATE_SLOTS))
        self._rate_start = 0
        self._rate_end = 0
        self._rate_idx = 0

    # --- writing ---------------------------------------------------------------------

    def append(self, time_ns: int, kind: int, data: bytes) -> int:
        """Store one response; returns its sequence number. Overwrites the oldest when full."""
        seq = self._next
        slot = seq & self._mask
        if not slot & _BLOCK_MASK and self._blocks is not None:
            self._enter_block(seq, slot)
        self._time[slot] = time_ns
        self._kind[slot] = kind
        # join of two parts always builds a new, exact-size bytes object (one alloc + memcpy,
        # the cheapest copy CPython offers; bytes(data) and data[:] return data itself)
        self._data[slot] = b"".join((data, b"")) if self._compact else data
        self._next = seq + 1
        if kind == _FLOW:
            if self._rate_start <= time_ns < self._rate_end:
                self._rate_cnt[self._rate_idx] += 1
            else:
                self._count_rate_slow(time_ns)
        return seq

    def extend(
        self,
        times: Sequence[int],
        kind: int,
        lines: Sequence[bytes],
        *,
        one_line: bool = False,
    ) -> None:
        """Store many responses of one ``kind`` at once (``times[i]`` for ``lines[i]``):
        the same as ``append`` for each in turn, with slice copies instead of a Python step
        per entry. The lines are stored as they are (no exact-size copy: pass slices of a
        joined buffer or other exact-size bytes). ``one_line``: the caller guarantees that no
        line contains a newline (JSON encoders never write a raw one), which spares sealing
        its check."""
        count = len(lines)
        if len(times) != count:
            raise ValueError(f"extend: {len(times)} times for {count} lines")
        size = self._mask + 1
        done = 0
        data, ktab, ttab = self._data, self._kind, self._time
        while done < count:
            seq = self._next
            slot = seq & self._mask
            if not slot & _BLOCK_MASK and self._blocks is not None:
                self._enter_block(seq, slot)
            room = (BLOCK - (slot & _BLOCK_MASK)) if self._blocks is not None else size - slot
            n = min(count - done, room, size - slot)
            if one_line and self._blocks is not None:
                self._one_line[slot >> BLOCK_SHIFT] += n
            data[slot : slot + n] = lines[done : done + n]
            ttab[slot : slot + n] = array("q", times[done : done + n])
            ktab[slot : slot + n] = bytes((kind,)) * n
            self._next = seq + n
            done += n
        if kind == _FLOW and count:
            start, end = self._rate_start, self._rate_end
            if start <= min(times) and max(times) < end:  # all in the current second
                self._rate_cnt[self._rate_idx] += count
                return
            for t in times:
                if start <= t < end:
                    self._rate_cnt[self._rate_idx] += 1
                else:
                    self._count_rate_slow(t)
                    start, end = self._rate_start, self._rate_end

    def _enter_block(self, seq: int, slot: int) -> None:
        """The writer is about to write the first slot of a block: seal the block it just
        filled. If this one is sealed it stays so, as the backing of the entries not yet
        overwritten (a *mixed* block: raw slots win), rather than being decompressed for
        entries that are about to go."""
        blocks = self._blocks
        assert blocks is not None
        if seq >= BLOCK:
            self._seal(((slot - BLOCK) & self._mask) >> BLOCK_SHIFT)
        index = slot >> BLOCK_SHIFT
        self._one_line[index] = 0
        if index in self._backlog:
            # left by the writer but never compressed: its raw entries are all in place
            # (newer than any backing it has, which is dropped)
            del self._backlog[index]
            blocks[index] = None
            self._mixed.discard(index)
        elif blocks[index] is not None:
            self._mixed.add(index)

    def _seal(self, index: int) -> None:
        if self._defer:
            self._backlog[index] = None
        else:
            self._compress(index)

    def compact(self, budget_s: float = 0.005) -> int:
        """Compress queued blocks (``defer``) for up to about ``budget_s`` seconds; returns how
        many blocks are still queued."""
        backlog = self._backlog
        deadline = time.monotonic() + budget_s
        while backlog:
            index = next(iter(backlog))
            del backlog[index]
            self._compress(index)
            if time.monotonic() >= deadline:
                break
        return len(backlog)

    def _compress(self, index: int) -> None:
        blocks = self._blocks
        assert blocks is not None
        if blocks[index] is not None and index not in self._mixed:
            return  # sealed, not overwritten since
        lo = index << BLOCK_SHIFT
        joined = b"\n".join(self._data[lo : lo + BLOCK])  # type: ignore[arg-type]  # all written
        if self._one_line[index] != BLOCK and joined.count(b"\n") != BLOCK - 1:
            # an entry holds a newline: splitting could not give it back; keep it raw
            blocks[index] = None
            self._mixed.discard(index)
            return
        blocks[index] = lz4.block.compress(joined)
        self._data[lo : lo + BLOCK] = [None] * BLOCK
        self._mixed.discard(index)

    def _block_lines(self, index: int) -> list[bytes]:
        """The entries of sealed block ``index``, decompressed (cached for the last block)."""
        joined = self._block_joined(index)
        if not self._cache_lines:
            self._cache_lines = joined.split(b"\n")
        return self._cache_lines

    def _mixed_lines(self, index: int, slot: int, offset: int, n: int) -> list[bytes]:
        """Entries ``offset..offset+n`` of a mixed block: a slot's raw bytes, else the
        compressed block's."""
        old = self._block_lines(index)[offset : offset + n]
        return [
            new if new is not None else prev
            for new, prev in zip(self._data[slot : slot + n], old, strict=True)
        ]

    def _block_joined(self, index: int) -> bytes:
        """Sealed block ``index`` decompressed: its entries joined by newlines (cached)."""
        blocks = self._blocks
        assert blocks is not None
        src = blocks[index]
        assert src is not None
        if src is not self._cache_src:
            self._cache_joined = lz4.block.decompress(src)
            self._cache_lines = []
            self._cache_src = src
        return self._cache_joined

    def line_parts(self, start: int, end: int) -> tuple[list[bytes], int]:
        """The stored bytes of sequences ``[start, end)`` (clamped as ``data_range``) as
        parts to join with newlines (each part one entry or, for a whole sealed block, its
        decompressed lines as they are, newline-separated), and how many entries."""
        start = max(start, self.oldest_seq)
        end = min(end, self._next)
        if start >= end:
            return [], 0
        blocks = self._blocks
        if blocks is None:
            return self.data_range(start, end), end - start
        mask = self._mask
        data = self._data
        parts: list[bytes] = []
        seq = start
        while seq < end:
            slot = seq & mask
            offset = slot & _BLOCK_MASK
            n = min(end - seq, BLOCK - offset)
            index = slot >> BLOCK_SHIFT
            if blocks[index] is None:
                parts += data[slot : slot + n]  # type: ignore[arg-type]  # written slots
            elif index in self._mixed:
                parts += self._mixed_lines(index, slot, offset, n)
            elif n == BLOCK:
                parts.append(self._block_joined(index))
            else:
                parts += self._block_lines(index)[offset : offset + n]
            seq += n
        return parts, end - start

    def sealed_parts(self, start: int, end: int) -> tuple[list[bytes | SealedBlock], int]:
        """``line_parts`` with each whole sealed block of ``[start, end)`` left compressed,
        as stored (a ``SealedBlock``: nothing is decompressed or copied); partial and mixed
        blocks and unsealed entries are parts as ``line_parts`` gives them."""
        start = max(start, self.oldest_seq)
        end = min(end, self._next)
        blocks = self._blocks
        if blocks is None or start >= end:
            parts, count = self.line_parts(start, end)
            return list(parts), count
        out: list[bytes | SealedBlock] = []
        seq = start
        while seq < end:
            slot = seq & self._mask
            index = slot >> BLOCK_SHIFT
            src = blocks[index]
            n = min(end - seq, BLOCK - (slot & _BLOCK_MASK))
            if n == BLOCK and src is not None and index not in self._mixed:
                size = int.from_bytes(src[:_SIZE_HEADER], "little")
                out.append(SealedBlock(memoryview(src)[_SIZE_HEADER:], size))
            else:
                out += self.line_parts(seq, seq + n)[0]
            seq += n
        return out, end - start

    def _count_rate_slow(self, time_ns: int) -> None:
        sec = time_ns // NS_PER_S
        idx = sec & (_RATE_SLOTS - 1)
        if self._rate_sec[idx] != sec:
            if self._rate_sec[idx] > sec:
                return  # older than what the bucket holds now: outside any window we report
            self._rate_sec[idx] = sec
            self._rate_cnt[idx] = 0
        self._rate_cnt[idx] += 1
        if sec * NS_PER_S >= self._rate_start:
            self._rate_start = sec * NS_PER_S
            self._rate_end = self._rate_start + NS_PER_S
            self._rate_idx = idx

    def notify(self) -> None:
        """Wake every ``wait_for_new`` waiter; call once after a batch of appends."""
        if self._waiters:
            event, self._event = self._event, asyncio.Event()
            event.set()

    async def wait_for_new(self, after_seq: int) -> None:
        """Return once an entry with ``seq > after_seq`` exists (immediately if one does).

        Entries appended but not yet published with ``notify()`` count as soon as a waiter
        looks; a waiter that finds none sleeps until the next ``notify()``.
        """
        self._waiters += 1
        try:
            while self._next <= after_seq + 1:
                await self._event.wait()
        finally:
            self._waiters -= 1

    # --- state -----------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return min(self._next, self._capacity)

    @property
    def seen(self) -> int:
        """Entries appended since the store was created."""
        return self._next

    @property
    def next_seq(self) -> int:
        """The sequence number the next append gets."""
        return self._next

    @property
    def oldest_seq(self) -> int:
        """The sequence number of the oldest entry still stored (== next_seq when empty)."""
        return max(0, self._next - self._capacity)

    def flows_rate(self, now_ns: int) -> float:
        """Flows per second over the last minute: flows whose time falls in the 60 whole
        seconds ending with the current one (``now_ns``'s), divided by 60."""
        now_sec = now_ns // NS_PER_S
        first = now_sec - RATE_WINDOW_S + 1
        total = 0
        for sec, count in zip(self._rate_sec, self._rate_cnt, strict=True):
            if first <= sec <= now_sec:
                total += count
        return total / RATE_WINDOW_S

    # --- reading ---------------------------------------------------------------------

    def _entry(self, seq: int) -> Entry:
        slot = seq & self._mask
        data = self._data[slot]
        if data is None:
            data = self._block_lines(slot >> BLOCK_SHIFT)[slot & _BLOCK_MASK]
        return Entry(seq, self._time[slot], self._kind[slot], data)

    def sealed_fraction(self) -> float:
        """The share of blocks currently compressed (0.0 when the store does not seal)."""
        if self._blocks is None:
            return 0.0
        return sum(1 for b in self._blocks if b is not None) / len(self._blocks)

    def get(self, seq: int) -> Entry | None:
        """The entry with sequence ``seq``; None if overwritten or not yet written."""
        if self.oldest_seq <= seq < self._next:
            return self._entry(seq)
        return None

    def read_from(self, seq: int, until_ns: int | None = None) -> Iterator[Entry]:
        """Entries from ``seq`` (or the oldest, if ``seq`` was overwritten) to the newest.

        Stops before the first entry whose time is after ``until_ns`` (Hubble's end of
        stream), so with times out of order entries after it are not looked at. Entries
        appended while iterating are included. If the writer laps the iterator between two
        steps, it continues at the oldest entry; use a ``Follower`` to learn what was lost.
        """
        cursor = max(seq, self.oldest_seq)
        while cursor < self._next:
            cursor = max(cursor, self.oldest_seq)
            entry = self._entry(cursor)
            if until_ns is not None and entry.time_ns > until_ns:
                return
            yield entry
            cursor += 1

    def data_range(self, start: int, end: int) -> list[bytes]:
        """The stored bytes of sequences ``[start, end)`` (clamped to what is stored), by
        list slicing: the fast path for unfiltered reads, with no per-entry objects."""
        start = max(start, self.oldest_seq)
        end = min(end, self._next)
        if start >= end:
            return []
        mask = self._mask
        data = self._data
        blocks = self._blocks
        if blocks is None:
            lo, hi = start & mask, (end - 1) & mask
            out = data[lo : hi + 1] if lo <= hi else data[lo:] + data[: hi + 1]
            return out  # type: ignore[return-value]  # stored slots are never None
        out = []
        seq = start
        while seq < end:  # block by block: a block never spans the ring's wrap
            slot = seq & mask
            offset = slot & _BLOCK_MASK
            n = min(end - seq, BLOCK - offset)
            index = slot >> BLOCK_SHIFT
            if blocks[index] is None:
                out += data[slot : slot + n]
            elif index in self._mixed:
                out += self._mixed_lines(index, slot, offset, n)
            else:
                out += self._block_lines(index)[offset : offset + n]
            seq += n
        return out  # type: ignore[return-value]

    def time_range(self, start: int, end: int) -> list[int]:
        """The event times (ns) of sequences ``[start, end)``, clamped as ``data_range``."""
        start = max(start, self.oldest_seq)
        end = min(end, self._next)
        if start >= end:
            return []
        mask = self._mask
        lo, hi = start & mask, (end - 1) & mask
        times = self._time
        if lo <= hi:
            return times[lo : hi + 1].tolist()
        return times[lo:].tolist() + times[: hi + 1].tolist()

    def _count_lost(self, start: int, end: int) -> int:
        """LOST entries among sequences ``[start, end)`` (bytearray.count: no Python loop)."""
        if start >= end:
            return 0
        mask = self._mask
        lo, hi = start & mask, (end - 1) & mask
        kinds = self._kind
        if lo <= hi:
            return kinds.count(_LOST, lo, hi + 1)
        return kinds.count(_LOST, lo) + kinds.count(_LOST, 0, hi + 1)

    def first_n_end(self, n: int) -> int:
        """The sequence to stop before to read the first ``n`` non-LOST entries (no predicate)."""
        oldest = self.oldest_seq
        if n <= 0:
            return self._next
        end = min(self._next, oldest + n)
        while True:
            want = min(self._next, oldest + n + self._count_lost(oldest, end))
            if want == end:
                return end
            end = want

    def last_n_start(self, n: int, predicate: EntryPredicate | None = None) -> int:
        """The sequence to read forward from to see the last ``n`` matching entries.

        LOST entries do not count. ``n == 0``, or fewer than ``n`` matches, gives the oldest
        sequence. With an empty store, ``next_seq``.
        """
        oldest = self.oldest_seq
        if n <= 0:
            return oldest
        if predicate is None:
            start = max(oldest, self._next - n)
            while True:  # LOST entries do not count: widen until n flows are covered
                want = max(oldest, self._next - n - self._count_lost(start, self._next))
                if want == start:
                    return start
                start = want
        found = 0
        kinds, mask = self._kind, self._mask
        for seq in range(self._next - 1, oldest - 1, -1):
            if kinds[seq & mask] == _LOST:
                continue
            if predicate(self._entry(seq)):
                found += 1
                if found == n:
                    return seq
        return oldest

    def select(
        self,
        number: int = 0,
        first: bool = False,
        since_ns: int | None = None,
        until_ns: int | None = None,
        predicate: EntryPredicate | None = None,
    ) -> list[Entry]:
        """The entries GetFlows returns without follow, oldest first.

        Candidates are the entries with ``since_ns <= time_ns <= until_ns`` (inclusive; None =
        unbounded) that ``predicate`` accepts (None = all). ``number == 0``: every candidate.
        Otherwise the first ``number`` candidates when ``first`` is true or ``since_ns`` is set
        (``since`` takes precedence over ``--last``, as in Hubble: reading starts at ``since``),
        else the last ``number``. LOST entries in the window are included without the
        predicate and without counting, when they lie within the span read: from the oldest
        entry (or the first selected one for last-N once N were found) to the newest (or the
        last selected one for first-N once N were found).

        Unlike Hubble, ``until`` with last-N gives the last N candidates up to ``until``
        (Hubble gives the last N of the ring, then drops those after ``until``).
        """
        oldest, end = self.oldest_seq, self._next
        times, kinds, datas, mask = self._time, self._kind, self._data, self._mask
        lost_kind = _LOST
        lo, hi = since_ns, until_ns
        out: list[Entry] = []
        count = 0
        forward = number <= 0 or first or since_ns is not None
        seqs = range(oldest, end) if forward else range(end - 1, oldest - 1, -1)
        for seq in seqs:
            slot = seq & mask
            t = times[slot]
            if (lo is not None and t < lo) or (hi is not None and t > hi):
                continue
            kind = kinds[slot]
            data = datas[slot]
            if data is None:
                data = self._block_lines(slot >> BLOCK_SHIFT)[slot & _BLOCK_MASK]
            entry = Entry(seq, t, kind, data)
            if kind == lost_kind:
                out.append(entry)
                continue
            if predicate is not None and not predicate(entry):
                continue
            out.append(entry)
            count += 1
            if count == number:
                break
        if not forward:
            out.reverse()
        return out

    def follower(self, start_seq: int | None = None) -> Follower:
        """A follow cursor starting at ``start_seq`` (default: ``next_seq``, only new entries)."""
        return Follower(self, self._next if start_seq is None else start_seq)


class Follower:
    """A cursor that reads a store forward and notices when the writer has lapped it."""

    __slots__ = ("_cursor", "_store")

    def __init__(self, store: FlowStore, start_seq: int) -> None:
        if start_seq < 0 or start_seq > store.next_seq:
            raise ValueError(f"start_seq {start_seq} outside [0, {store.next_seq}]")
        self._store = store
        self._cursor = start_seq

    @property
    def cursor(self) -> int:
        """The sequence number of the next entry this follower reads."""
        return self._cursor

    def poll(self, limit: int | None = None) -> FollowBatch:
        """Everything available now (at most ``limit`` entries), without waiting.

        If entries were overwritten before this follower read them, ``lost`` says how many
        and reading resumes at the oldest entry.
        """
        store = self._store
        oldest = store.oldest_seq
        lost = 0
        if self._cursor < oldest:
            lost = oldest - self._cursor
            self._cursor = oldest
        end = store.next_seq
        if limit is not None:
            end = min(end, self._cursor + max(0, limit))
        entries = tuple(store._entry(seq) for seq in range(self._cursor, end))
        self._cursor = end
        return FollowBatch(lost, entries)

    def poll_span(self, limit: int) -> tuple[int, int, int]:
        """Advance over what is available now (at most ``limit`` entries) without reading
        it: (lost, start, end), the sequences ``[start, end)`` to read with ``data_range``
        / ``time_range`` before the writer can overwrite them (same event-loop turn)."""
        store = self._store
        oldest = store.oldest_seq
        lost = 0
        if self._cursor < oldest:
            lost = oldest - self._cursor
            self._cursor = oldest
        start = self._cursor
        end = min(store.next_seq, start + max(0, limit))
        self._cursor = end
        return lost, start, end

    async def wait(self) -> None:
        """Return once there is something to read at the cursor."""
        await self._store.wait_for_new(self._cursor - 1)

    async def next_batch(self, limit: int | None = None) -> FollowBatch:
        """Wait until there is something to report (entries or a loss), then ``poll``."""
        while True:
            batch = self.poll(limit)
            if batch.lost or batch.entries:
                return batch
            await self.wait()
