"""Follow mode: Follower cursors, loss reports when lapped, and waiting for new entries."""

from __future__ import annotations

import asyncio

import pytest

from observer.store import EntryKind, FlowStore, FollowBatch

FLOW = EntryKind.FLOW


def append_n(store: FlowStore, n: int) -> None:
    for _ in range(n):
        seq = store.next_seq
        store.append(seq, FLOW, b"%d" % seq)


def batch_seqs(batch: FollowBatch) -> list[int]:
    return [e.seq for e in batch.entries]


def test_follower_starts_at_next_seq_by_default() -> None:
    store = FlowStore(7)
    append_n(store, 3)
    follower = store.follower()
    assert follower.cursor == 3
    assert follower.poll() == FollowBatch(0, ())
    append_n(store, 2)
    assert batch_seqs(follower.poll()) == [3, 4]
    assert follower.cursor == 5
    assert follower.poll() == FollowBatch(0, ())


def test_follower_from_a_seq_with_limit() -> None:
    store = FlowStore(7)
    append_n(store, 5)
    follower = store.follower(1)
    assert batch_seqs(follower.poll(limit=2)) == [1, 2]
    assert batch_seqs(follower.poll(limit=0)) == []
    assert batch_seqs(follower.poll(limit=10)) == [3, 4]


@pytest.mark.parametrize("capacity", [1, 3, 7])
@pytest.mark.parametrize("extra", [0, 1, 5, 20])
def test_lapped_follower_reports_lost_and_resumes_at_oldest(capacity: int, extra: int) -> None:
    store = FlowStore(capacity)
    follower = store.follower()
    append_n(store, capacity + extra)
    batch = follower.poll()
    assert batch.lost == extra
    assert batch_seqs(batch) == list(range(extra, capacity + extra))
    assert follower.cursor == store.next_seq


def test_follower_lapped_mid_way() -> None:
    store = FlowStore(3)
    follower = store.follower()
    append_n(store, 2)
    assert batch_seqs(follower.poll(limit=1)) == [0]
    append_n(store, 5)  # seqs 0..6 written; 4, 5, 6 remain; cursor was at 1
    batch = follower.poll()
    assert (batch.lost, batch_seqs(batch)) == (3, [4, 5, 6])


def test_follower_started_on_overwritten_seq_reports_loss() -> None:
    store = FlowStore(3)
    append_n(store, 10)
    batch = store.follower(0).poll()
    assert (batch.lost, batch_seqs(batch)) == (7, [7, 8, 9])


@pytest.mark.parametrize("start", [-1, 4])
def test_follower_start_out_of_range(start: int) -> None:
    store = FlowStore(7)
    append_n(store, 3)
    with pytest.raises(ValueError, match="outside"):
        store.follower(start)


async def _yield_loop(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_wait_for_new_returns_at_once_when_data_exists() -> None:
    async def main() -> None:
        store = FlowStore(7)
        append_n(store, 2)
        await asyncio.wait_for(store.wait_for_new(0), 1)
        await asyncio.wait_for(store.wait_for_new(-1), 1)

    asyncio.run(main())


def test_wait_for_new_wakes_on_notify_only() -> None:
    async def main() -> None:
        store = FlowStore(7)
        append_n(store, 2)
        waiter = asyncio.create_task(store.wait_for_new(1))
        await _yield_loop()
        assert not waiter.done()
        append_n(store, 3)  # a batch of appends ...
        await _yield_loop()
        assert not waiter.done()  # ... is not seen by a sleeping waiter until notify()
        store.notify()
        await asyncio.wait_for(waiter, 1)

    asyncio.run(main())


def test_notify_wakes_every_waiter_and_only_satisfied_ones_return() -> None:
    async def main() -> None:
        store = FlowStore(7)
        near = asyncio.create_task(store.wait_for_new(0))
        far = asyncio.create_task(store.wait_for_new(5))
        await _yield_loop()
        append_n(store, 2)
        store.notify()
        await asyncio.wait_for(near, 1)
        await _yield_loop()
        assert not far.done()
        append_n(store, 5)
        store.notify()
        await asyncio.wait_for(far, 1)

    asyncio.run(main())


def test_cancelled_waiter_leaves_no_trace() -> None:
    async def main() -> None:
        store = FlowStore(7)
        waiter = asyncio.create_task(store.wait_for_new(0))
        await _yield_loop()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        event = store._event
        store.notify()  # nobody waits: the event is not swapped
        assert store._event is event

    asyncio.run(main())


def test_follower_next_batch_waits_then_returns_entries() -> None:
    async def main() -> None:
        store = FlowStore(7)
        follower = store.follower()
        task = asyncio.create_task(follower.next_batch())
        await _yield_loop()
        assert not task.done()
        append_n(store, 2)
        store.notify()
        batch = await asyncio.wait_for(task, 1)
        assert batch_seqs(batch) == [0, 1]

    asyncio.run(main())


def test_follower_next_batch_reports_loss_when_lapped_while_waiting() -> None:
    async def main() -> None:
        store = FlowStore(3)
        follower = store.follower()
        task = asyncio.create_task(follower.next_batch())
        await _yield_loop()
        append_n(store, 8)
        store.notify()
        batch = await asyncio.wait_for(task, 1)
        assert (batch.lost, batch_seqs(batch)) == (5, [5, 6, 7])

    asyncio.run(main())


def test_select_then_follow_without_gap() -> None:
    """The server's follow-with-last-N: select, then follow from next_seq; nothing is missed."""

    async def main() -> None:
        store = FlowStore(15)
        append_n(store, 5)
        first = store.select(number=2)
        follower = store.follower()
        append_n(store, 3)
        store.notify()
        batch = await asyncio.wait_for(follower.next_batch(), 1)
        assert [e.seq for e in first] + batch_seqs(batch) == [3, 4, 5, 6, 7]

    asyncio.run(main())
