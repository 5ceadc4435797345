"""LostEvent responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from observer.parser.lost import (
    HUBBLE_RING_BUFFER,
    LOST_EVENT_SOURCES,
    OBSERVER_EVENTS_QUEUE,
    PERF_EVENT_RING_BUFFER,
    UNKNOWN_LOST_EVENT_SOURCE,
    lost_event,
    lost_events_response,
)

from .protocheck import check_response, proto_available

T9 = int(datetime(2026, 11, 26, 12, 0, 9, tzinfo=UTC).timestamp()) * 1_000_000_000


def test_matches_the_fixture_line(fixture_responses: list[dict[str, Any]]) -> None:
    (fixture,) = [r for r in fixture_responses if "lost_events" in r]
    resp = lost_events_response(
        PERF_EVENT_RING_BUFFER, 42, cpu=1, node_name="default/node-a", wall_ns=T9
    )
    assert orjson.dumps(resp) == orjson.dumps(fixture)
    check_response(resp)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (
            (PERF_EVENT_RING_BUFFER, 1),
            {"cpu": 0},
            {"source": PERF_EVENT_RING_BUFFER, "num_events_lost": "1", "cpu": 0},
        ),
        (
            (OBSERVER_EVENTS_QUEUE, 2**64 - 1),
            {},
            {"source": OBSERVER_EVENTS_QUEUE, "num_events_lost": "18446744073709551615"},
        ),
        ((HUBBLE_RING_BUFFER, 0), {}, {"source": HUBBLE_RING_BUFFER}),
        ((UNKNOWN_LOST_EVENT_SOURCE, 3), {"cpu": 2}, {"num_events_lost": "3", "cpu": 2}),
        (
            (HUBBLE_RING_BUFFER, 5),
            {"first_ns": 1_500_000_000, "last_ns": 2_000_000_000},
            {
                "source": HUBBLE_RING_BUFFER,
                "num_events_lost": "5",
                "first": "1970-01-01T00:00:01.500Z",
                "last": "1970-01-01T00:00:02Z",
            },
        ),
    ],
    ids=[
        "cpu-zero-kept",
        "uint64-as-string",
        "zero-count-omitted",
        "unknown-source-omitted",
        "first-last",
    ],
)
def test_lost_event_shapes(
    args: tuple[Any, int], kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    ev = lost_event(*args, **kwargs)
    assert ev == expected
    assert list(ev) == list(expected)
    check_response({"lost_events": ev, "node_name": "n", "time": "1970-01-01T00:00:00Z"})


def test_source_names_are_the_proto_enum() -> None:
    if not proto_available():
        pytest.skip("observer/api/v1 generated code not importable yet")
    from observer.api.v1.flow import flow_pb2

    assert [v.name for v in flow_pb2.LostEventSource.DESCRIPTOR.values] == list(LOST_EVENT_SOURCES)


@pytest.mark.parametrize(
    ("source", "count"), [("RING", 1), (PERF_EVENT_RING_BUFFER, -1)], ids=["bad-source", "negative"]
)
def test_bad_arguments(source: Any, count: int) -> None:
    with pytest.raises(ValueError):
        lost_event(source, count)


def test_empty_node_name_omitted() -> None:
    assert list(lost_events_response(HUBBLE_RING_BUFFER, 1, node_name="", wall_ns=0)) == [
        "lost_events",
        "time",
    ]
