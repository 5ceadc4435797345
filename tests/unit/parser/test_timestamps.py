"""protojson Timestamp strings: RFC 3339 UTC, Z, 0/3/6/9 fraction digits."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.parser.timestamps import (
    MAX_SECONDS,
    MIN_SECONDS,
    TimestampFormatter,
    format_timestamp,
)

S = 1_000_000_000

CASES = [
    (0, "1970-01-01T00:00:00Z"),
    (1234 * S + 567_800_000, "1970-01-01T00:20:34.567800Z"),
    (1_795_694_402 * S, "2026-11-26T12:00:02Z"),
    (1_795_694_401 * S + 500_000_000, "2026-11-26T12:00:01.500Z"),
    (1_795_694_401 * S + 123_501_000, "2026-11-26T12:00:01.123501Z"),
    (1_795_694_401 * S + 123_456_789, "2026-11-26T12:00:01.123456789Z"),
    (1, "1970-01-01T00:00:00.000000001Z"),
    (1_000, "1970-01-01T00:00:00.000001Z"),
    (1_000_000, "1970-01-01T00:00:00.001Z"),
    (10_000_000, "1970-01-01T00:00:00.010Z"),
    (-1, "1969-12-31T23:59:59.999999999Z"),
    (1_709_164_800 * S, "2024-02-29T00:00:00Z"),
    (MIN_SECONDS * S, "0001-01-01T00:00:00Z"),
    (MAX_SECONDS * S + 999_999_999, "9999-12-31T23:59:59.999999999Z"),
]


@pytest.mark.parametrize(("ns", "expected"), CASES, ids=[c[1] for c in CASES])
def test_format(ns: int, expected: str) -> None:
    assert format_timestamp(ns) == expected
    assert TimestampFormatter()(ns) == expected


def test_reference_sample_from_hubble_printer_tests() -> None:
    # time 1234.5678 s -> "1970-01-01T00:20:34.567800Z" (hubble-api.md §7.4)
    assert format_timestamp(1234 * S + 567_800_000) == "1970-01-01T00:20:34.567800Z"


@pytest.mark.parametrize(
    "ns", [(MIN_SECONDS - 1) * S, (MAX_SECONDS + 1) * S], ids=["year-0", "year-10000"]
)
def test_out_of_range(ns: int) -> None:
    with pytest.raises(ValueError, match="range"):
        format_timestamp(ns)
    with pytest.raises(ValueError, match="range"):
        TimestampFormatter()(ns)


def test_cached_formatter_follows_time_in_both_directions() -> None:
    fmt = TimestampFormatter()
    seq = [5 * S + 1, 5 * S + 2, 7 * S, 6 * S + 999_999_999, 5 * S, -S, 5 * S + 1]
    assert [fmt(ns) for ns in seq] == [format_timestamp(ns) for ns in seq]


@settings(max_examples=300, deadline=None)
@given(st.integers(MIN_SECONDS * S, MAX_SECONDS * S + S - 1))
def test_matches_protobuf_json(ns: int) -> None:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    assert format_timestamp(ns) == ts.ToJsonString()
