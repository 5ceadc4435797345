"""The agent's bounded flow history (see ``ring.py``).

    store = FlowStore(4095)
    seq = store.append(time_ns, EntryKind.FLOW, orjson.dumps(response))
    store.notify()                       # once per ingested batch
    store.select(number=20)              # the last 20 entries
    follower = store.follower()          # follow mode: new entries, with loss reports

``flow_entry_predicate`` adapts a flow predicate from ``observer.filters`` to entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from observer.store.ring import (
    DEFAULT_CAPACITY,
    Entry,
    EntryKind,
    EntryPredicate,
    FlowStore,
    FollowBatch,
    Follower,
    validate_capacity,
)


def flow_entry_predicate(flow_predicate: Callable[[Mapping[str, Any]], bool]) -> EntryPredicate:
    """An entry predicate that decodes FLOW entries and applies ``flow_predicate`` to their
    ``flow`` object; entries of other kinds do not match (LOST entries bypass predicates in
    ``FlowStore.select`` anyway)."""
    loads = orjson.loads
    flow_kind = EntryKind.FLOW

    def match(entry: Entry) -> bool:
        if entry.kind != flow_kind:
            return False
        response = loads(entry.data)
        flow = response.get("flow") if isinstance(response, dict) else None
        return isinstance(flow, dict) and flow_predicate(flow)

    return match


__all__ = [
    "DEFAULT_CAPACITY",
    "Entry",
    "EntryKind",
    "EntryPredicate",
    "FlowStore",
    "FollowBatch",
    "Follower",
    "flow_entry_predicate",
    "validate_capacity",
]
