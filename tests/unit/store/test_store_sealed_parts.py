"""FlowStore.sealed_parts: line_parts with whole sealed blocks left as stored (LZ4)."""

from __future__ import annotations

import lz4.block
import pytest

from observer.store import EntryKind, FlowStore
from observer.store.ring import BLOCK, SealedBlock


def _store(capacity: int, count: int, **kwargs: bool) -> FlowStore:
    store = FlowStore(capacity, **kwargs)
    for i in range(count):
        store.append(1000 + i, EntryKind.FLOW, b'{"flow":{"n":%d}}' % i)
    return store


def _lines(parts: list[bytes | SealedBlock]) -> list[bytes]:
    out: list[bytes] = []
    for part in parts:
        if isinstance(part, SealedBlock):
            raw = lz4.block.decompress(part.lz4, uncompressed_size=part.size)
            assert len(raw) == part.size
            out += raw.split(b"\n")
        else:
            out += part.split(b"\n")
    return out


CASES = {
    "unsealed-small-store": (63, 50, 0, 50, 0),
    "all-of-a-sealed-store": (1023, 900, 0, 900, 3),
    "from-mid-block": (1023, 900, 100, 900, 2),
    "to-mid-block": (1023, 900, 0, 700, 2),
    "one-whole-block": (1023, 900, 256, 512, 1),
    "wrapped-mixed-blocks": (1023, 2500, 0, 2500, 3),  # the writer is in a sealed block
    "beyond-the-ends": (1023, 2500, -5, 99_999, 3),
    "empty-span": (1023, 900, 300, 300, 0),
}


@pytest.mark.parametrize(("capacity", "count", "start", "end", "blocks"), CASES.values(), ids=CASES.keys())
def test_same_lines_as_line_parts(capacity: int, count: int, start: int, end: int, blocks: int) -> None:
    store = _store(capacity, count)
    parts, n = store.sealed_parts(start, end)
    expected, expected_n = store.line_parts(start, end)
    assert n == expected_n
    assert _lines(parts) == (b"\n".join(expected).split(b"\n") if expected else [])
    sealed = [p for p in parts if isinstance(p, SealedBlock)]
    assert len(sealed) == blocks
    assert sum(1 if isinstance(p, bytes) else BLOCK for p in parts) == n  # raw parts: one line


def test_deferred_blocks_are_raw_until_compacted() -> None:
    store = _store(1023, 900, defer=True)
    parts, _ = store.sealed_parts(0, 900)
    assert not any(isinstance(p, SealedBlock) for p in parts)
    store.compact(budget_s=10)
    parts, _ = store.sealed_parts(0, 900)
    assert sum(isinstance(p, SealedBlock) for p in parts) == 3
