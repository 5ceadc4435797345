"""GetFlows request handling shared by the standard and the batched stream.

A request is validated and compiled once (filters, time window, field mask); then
`iter_entries` yields store entries: the history part first, then, when following,
new entries as they arrive. A follower that the writer laps gets a LostEvent
(HUBBLE_RING_BUFFER) in-band with the number of entries it missed, and resumes at the
oldest entry still stored: a slow client never stalls ingest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from google.protobuf import json_format

from observer.errors import FilterError
from observer.filters import compile_filters
from observer.metrics import AgentMetrics
from observer.parser.lost import lost_events_response
from observer.store import FlowStore
from observer.store.ring import BLOCK, Entry, EntryKind, SealedBlock

LOST_SOURCE_HUBBLE_RING: Final = "HUBBLE_RING_BUFFER"
LZ4_BATCH_BYTES: Final = 768 * 1024  # compressed bytes per LZ4 FlowBatch, about


_FLOW: Final = int(EntryKind.FLOW)  # a plain int: enum member access is slow per entry


class InvalidRequest(ValueError):
    """The request is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class FlowQuery:
    number: int
    first: bool
    follow: bool
    since_ns: int | None
    until_ns: int | None
    predicate: Callable[[Mapping[str, Any]], bool] | None
    field_mask: tuple[str, ...]


def _ts_ns(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


def _check_enum_values(filters: Any) -> None:
    """Refuse enum numbers flow.proto does not define (proto3 enums are open, so they reach
    us): they could never match a flow, and an error says why better than an empty result."""
    for flow_filter in filters:
        for fd, value in flow_filter.ListFields():
            if fd.type != fd.TYPE_ENUM:
                continue
            known = fd.enum_type.values_by_number
            for number in value if fd.is_repeated else (value,):
                if number not in known:
                    raise InvalidRequest(
                        f"filter {fd.name}: unknown {fd.enum_type.name} value {number}"
                    )


def compile_request(req: Any) -> FlowQuery:
    """Validate an observer.GetFlowsRequest and compile its filters once."""
    if req.first and req.follow:
        raise InvalidRequest("first cannot be specified with follow")
    since_ns = _ts_ns(req.since) if req.HasField("since") else None
    until_ns = _ts_ns(req.until) if req.HasField("until") else None
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise InvalidRequest("since: must not be after until")
    if req.follow and until_ns is not None:
        raise InvalidRequest("until: cannot be specified with follow")
    _check_enum_values(req.whitelist)
    _check_enum_values(req.blacklist)
    white = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in req.whitelist]
    black = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in req.blacklist]
    predicate = None
    if white or black:
        try:
            predicate = compile_filters(white, black)
        except FilterError as err:
            raise InvalidRequest(f"filter {err.field}: {err.message}") from err
    mask: tuple[str, ...] = ()
    if req.HasField("field_mask") and req.field_mask.paths:
        from observer.api.v1.flow import flow_pb2

        if not req.field_mask.IsValidForDescriptor(flow_pb2.Flow.DESCRIPTOR):
            raise InvalidRequest(
                f"field_mask: invalid paths {list(req.field_mask.paths)} for flow.Flow"
            )
        mask = tuple(req.field_mask.paths)
    return FlowQuery(
        number=int(req.number),
        first=bool(req.first),
        follow=bool(req.follow),
        since_ns=since_ns,
        until_ns=until_ns,
        predicate=predicate,
        field_mask=mask,
    )


def entry_predicate(query: FlowQuery) -> Callable[[Entry], bool] | None:
    """A predicate over store entries: lost events always pass, flows pass the filters."""
    pred = query.predicate
    if pred is None:
        return None

    loads = orjson.loads

    def match(entry: Entry) -> bool:
        if entry.kind != _FLOW:
            return True
        return bool(pred(loads(entry.data)["flow"]))

    return match


async def iter_batches(
    store: FlowStore,
    query: FlowQuery,
    node_name: str,
    now_ns: Callable[[], int],
    batch_size: int = 1024,
    metrics: AgentMetrics | None = None,
) -> AsyncIterator[list[Entry | bytes]]:
    """Yield matching entries in batches; in follow mode, forever.

    A ``bytes`` item is a ready LostEvent response line. Each follow batch holds what was
    ready at that moment, so a follower sees a new flow as soon as it is stored.
    """
    match = entry_predicate(query)
    if not query.follow or query.number or query.since_ns is not None:
        history: list[Entry | bytes] = list(
            store.select(
                number=query.number,
                first=query.first,
                since_ns=query.since_ns,
                until_ns=query.until_ns,
                predicate=match,
            )
        )
        # select() runs to completion on the event loop that owns the store, so no entry
        # can be appended between it and this line: following starts exactly after it.
        start = store.next_seq
        for i in range(0, len(history), batch_size):
            yield history[i : i + batch_size]
        if not query.follow:
            return
    else:
        start = store.next_seq
    follower = store.follower(start)
    while True:
        got = follower.poll(batch_size)
        entries, lost = got.entries, got.lost
        out: list[Entry | bytes] = []
        if lost:
            if metrics is not None:
                metrics.lost["hubble_ring_buffer"] += lost
            out.append(
                orjson.dumps(
                    lost_events_response(
                        LOST_SOURCE_HUBBLE_RING, lost, node_name=node_name, wall_ns=now_ns()
                    )
                )
            )
        out.extend(e for e in entries if match is None or match(e))
        if out:
            yield out
        if not entries and not lost:
            await follower.wait()


def is_plain(query: FlowQuery) -> bool:
    """No filter, mask or time window: the stored bytes can be sent as they are."""
    return (
        query.predicate is None
        and not query.field_mask
        and query.since_ns is None
        and query.until_ns is None
    )


def _plain_span(store: FlowStore, query: FlowQuery) -> tuple[int, int]:
    """The sequence numbers ``[start, end)`` a plain query reads from history."""
    end = store.next_seq
    if query.follow and not query.number:
        return end, end
    if query.first:
        return store.oldest_seq, store.first_n_end(query.number) if query.number else end
    return store.last_n_start(query.number) if query.number else store.oldest_seq, end


async def _follow_parts(
    store: FlowStore,
    start: int,
    parts_of: Callable[[int, int], tuple[list[Any], int]],
    node_name: str,
    now_ns: Callable[[], int],
    batch_size: int,
    metrics: AgentMetrics | None,
) -> AsyncIterator[tuple[list[Any], int, list[int]]]:
    """Follow the store from ``start``: (parts, lines, times) as ``parts_of(lo, hi)`` gives
    the stored entries, a HUBBLE_RING_BUFFER LostEvent line first when the writer lapped us."""
    follower = store.follower(start)
    while True:
        lost, lo, hi = follower.poll_span(batch_size)
        times = store.time_range(lo, hi)
        parts, count = parts_of(lo, hi)
        if lost:
            if metrics is not None:
                metrics.lost["hubble_ring_buffer"] += lost
            wall = now_ns()
            line = orjson.dumps(
                lost_events_response(
                    LOST_SOURCE_HUBBLE_RING, lost, node_name=node_name, wall_ns=wall
                )
            )
            parts.insert(0, line)
            count += 1
            times = [wall, *times]
        if count:
            yield parts, count, times
        else:
            await follower.wait()


async def iter_data_batches(
    store: FlowStore,
    query: FlowQuery,
    node_name: str,
    now_ns: Callable[[], int],
    batch_size: int = 4096,
    metrics: AgentMetrics | None = None,
) -> AsyncIterator[tuple[list[bytes], int, list[int]]]:
    """The fast path of ``iter_batches`` for plain queries (``is_plain``): the stored bytes
    (``FlowStore.line_parts``: parts to join with newlines, whole sealed blocks as they are),
    how many lines, and their times (ns, one per line); no per-entry objects. Same
    semantics: last/first N flows (LOST entries in the span are sent and not counted), then
    follow."""
    start, end = _plain_span(store, query)
    for lo in range(start, end, batch_size):
        hi = min(end, lo + batch_size)
        times = store.time_range(lo, hi)
        parts, count = store.line_parts(lo, hi)
        yield parts, count, times
    if not query.follow:
        return
    async for batch in _follow_parts(
        store, end, store.line_parts, node_name, now_ns, batch_size, metrics
    ):
        yield batch


DataRun = tuple[list[bytes], int, list[int]]
BlockRun = tuple[list[SealedBlock], int, list[int]]


def _runs(parts: list[bytes | SealedBlock], times: list[int]) -> list[DataRun | BlockRun]:
    """``parts`` (``FlowStore.sealed_parts``) and their lines' ``times`` cut into runs of
    one kind: entries (one line each) or sealed blocks (``BLOCK`` lines each), in order,
    each with its line count and times."""
    out: list[DataRun | BlockRun] = []
    k = 0
    i, n = 0, len(parts)
    while i < n:
        j = i
        if isinstance(parts[i], SealedBlock):
            while j < n and isinstance(parts[j], SealedBlock):
                j += 1
            count = (j - i) * BLOCK
            out.append((parts[i:j], count, times[k : k + count]))  # type: ignore[arg-type]  # all SealedBlock
        else:
            while j < n and not isinstance(parts[j], SealedBlock):
                j += 1
            count = j - i
            out.append((parts[i:j], count, times[k : k + count]))  # type: ignore[arg-type]  # all bytes
        k += count
        i = j
    return out


async def iter_sealed_batches(
    store: FlowStore,
    query: FlowQuery,
    node_name: str,
    now_ns: Callable[[], int],
    batch_size: int = 4096,
    max_lz4_bytes: int = LZ4_BATCH_BYTES,
    metrics: AgentMetrics | None = None,
) -> AsyncIterator[DataRun | BlockRun]:
    """``iter_data_batches`` for a reader that takes LZ4 blocks: the same lines, in the
    same order with the same times, but whole sealed blocks come as they are stored
    (``SealedBlock``: not decompressed), consecutive ones gathered up to about
    ``max_lz4_bytes`` compressed, and everything else as ``iter_data_batches`` gives it. Each
    item holds entries only or blocks only: (parts, lines, times)."""
    start, end = _plain_span(store, query)
    step = max(BLOCK, batch_size - batch_size % BLOCK)
    pending: list[SealedBlock] = []
    pending_times: list[int] = []
    pending_bytes = 0
    lo = start
    while lo < end:
        hi = min(end, (lo // step + 1) * step)  # steps on block boundaries: blocks stay whole
        parts, _ = store.sealed_parts(lo, hi)
        times = store.time_range(lo, hi)
        lo = hi
        for run in _runs(parts, times):
            chunk, _, run_times = run
            if chunk and isinstance(chunk[0], SealedBlock):
                for block in chunk:
                    if isinstance(block, SealedBlock):  # all are
                        pending.append(block)
                        pending_bytes += len(block.lz4)
                pending_times += run_times
                if pending_bytes >= max_lz4_bytes:
                    yield pending, len(pending_times), pending_times
                    pending, pending_times, pending_bytes = [], [], 0
                continue
            if pending:
                yield pending, len(pending_times), pending_times
                pending, pending_times, pending_bytes = [], [], 0
            yield run
    if pending:
        yield pending, len(pending_times), pending_times
    if not query.follow:
        return
    async for parts, _count, times in _follow_parts(
        store, end, store.sealed_parts, node_name, now_ns, batch_size, metrics
    ):
        for run in _runs(parts, times):
            yield run


def mask_flow(flow: Mapping[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """Keep only the field-mask paths of a flow dict (proto field names, dotted)."""
    out: dict[str, Any] = {}
    for path in paths:
        parts = path.split(".")
        src: Any = flow
        for p in parts:
            if not isinstance(src, Mapping) or p not in src:
                src = None
                break
            src = src[p]
        if src is None:
            continue
        dst = out
        for p in parts[:-1]:
            dst = dst.setdefault(p, {})
        dst[parts[-1]] = src
    # keep the original key order of the flow
    return {k: out[k] for k in flow if k in out}
