"""``flow.LostEvent`` responses: lost data reported in-band, as Hubble does.

``{"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "42", "cpu": 1},
"node_name": "default/node-a", "time": "..."}``: the source as its enum name (absent for
UNKNOWN_LOST_EVENT_SOURCE, the zero value), the count as a string (uint64; absent when 0),
``cpu`` a bare Int32Value (present, even 0, when given), ``first``/``last`` Timestamps.

Sources: PERF_EVENT_RING_BUFFER for records the kernel could not reserve in the ring buffer,
OBSERVER_EVENTS_QUEUE for events the agent dropped between the drain and the store,
HUBBLE_RING_BUFFER for flows a slow client missed because the store overwrote them.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from observer.parser.timestamps import format_timestamp

LostEventSource = Literal[
    "UNKNOWN_LOST_EVENT_SOURCE",
    "PERF_EVENT_RING_BUFFER",
    "OBSERVER_EVENTS_QUEUE",
    "HUBBLE_RING_BUFFER",
]

UNKNOWN_LOST_EVENT_SOURCE: Final = "UNKNOWN_LOST_EVENT_SOURCE"
PERF_EVENT_RING_BUFFER: Final = "PERF_EVENT_RING_BUFFER"
OBSERVER_EVENTS_QUEUE: Final = "OBSERVER_EVENTS_QUEUE"
HUBBLE_RING_BUFFER: Final = "HUBBLE_RING_BUFFER"

LOST_EVENT_SOURCES: Final[tuple[str, ...]] = get_args(LostEventSource)
"""Enum names in value order (index = proto value)."""


def lost_event(
    source: LostEventSource,
    num_events_lost: int,
    *,
    cpu: int | None = None,
    first_ns: int | None = None,
    last_ns: int | None = None,
) -> dict[str, Any]:
    """The ``flow.LostEvent`` JSON dict. Raises ``ValueError`` for an unknown source name
    or a negative count."""
    if source not in LOST_EVENT_SOURCES:
        raise ValueError(f"unknown lost-event source {source!r}")
    if num_events_lost < 0:
        raise ValueError("num_events_lost must not be negative")
    ev: dict[str, Any] = {}
    if source != UNKNOWN_LOST_EVENT_SOURCE:
        ev["source"] = source
    if num_events_lost:
        ev["num_events_lost"] = str(num_events_lost)
    if cpu is not None:
        ev["cpu"] = cpu
    if first_ns is not None:
        ev["first"] = format_timestamp(first_ns)
    if last_ns is not None:
        ev["last"] = format_timestamp(last_ns)
    return ev


def lost_events_response(
    source: LostEventSource,
    num_events_lost: int,
    *,
    node_name: str,
    wall_ns: int,
    cpu: int | None = None,
    first_ns: int | None = None,
    last_ns: int | None = None,
) -> dict[str, Any]:
    """The GetFlowsResponse dict carrying a LostEvent observed at ``wall_ns``."""
    resp: dict[str, Any] = {
        "lost_events": lost_event(
            source, num_events_lost, cpu=cpu, first_ns=first_ns, last_ns=last_ns
        )
    }
    if node_name:
        resp["node_name"] = node_name
    resp["time"] = format_timestamp(wall_ns)
    return resp
