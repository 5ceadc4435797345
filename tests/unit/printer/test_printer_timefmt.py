"""Time layouts and --since/--until parsing."""

from __future__ import annotations

import calendar

import pytest

from hubblectl.printer import timefmt
from hubblectl.printer.timefmt import (
    TIME_FORMATS,
    Timestamp,
    format_time_value,
    format_timestamp,
    parse_go_duration,
    parse_rfc3339,
    parse_time_arg,
)

T = Timestamp(1530984600, 123_456_789)  # 2018-07-07T17:30:00.123456789Z, a Saturday


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("StampMilli", "Jul  7 17:30:00.123"),
        ("stampmilli", "Jul  7 17:30:00.123"),
        ("YearMonthDay", "2018-07-07"),
        ("YearMonthDayHour", "2018-07-07T17Z"),
        ("YearMonthDayHourMinute", "2018-07-07T17:30Z"),
        ("RFC3339", "2018-07-07T17:30:00Z"),
        ("RFC3339Milli", "2018-07-07T17:30:00.123Z"),
        ("RFC3339Micro", "2018-07-07T17:30:00.123456Z"),
        ("RFC3339Nano", "2018-07-07T17:30:00.123456789Z"),
        ("RFC1123Z", "Sat, 07 Jul 2018 17:30:00 +0000"),
        ("bogus", "Jul  7 17:30:00.123"),
    ],
    ids=lambda v: str(v),
)
def test_layouts(layout: str, expected: str) -> None:
    assert format_timestamp(T, layout) == expected


@pytest.mark.parametrize(
    ("ts", "layout", "expected"),
    [
        (Timestamp(0), "StampMilli", "Jan  1 00:00:00.000"),
        (Timestamp(1234, 567_800_000), "StampMilli", "Jan  1 00:20:34.567"),
        (Timestamp(1234, 500_000_000), "RFC3339Milli", "1970-01-01T00:20:34.5Z"),
        (Timestamp(1234, 0), "RFC3339Nano", "1970-01-01T00:20:34Z"),
        (Timestamp(1234, 999_999), "RFC3339Milli", "1970-01-01T00:20:34Z"),
        (Timestamp(-1, 0), "StampMilli", "Dec 31 23:59:59.000"),
        (Timestamp(-62135596801), "StampMilli", "N/A"),
        (None, "StampMilli", "N/A"),
    ],
    ids=[
        "epoch",
        "hubble-sample",
        "milli-trim",
        "nano-whole",
        "milli-truncates",
        "pre-epoch",
        "too-old",
        "none",
    ],
)
def test_edges(ts: Timestamp | None, layout: str, expected: str) -> None:
    assert format_timestamp(ts, layout) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:20:34.567800Z", Timestamp(1234, 567_800_000)),
        ("2026-11-26T12:00:03.5Z", Timestamp(1795694403, 500_000_000)),
        ("2026-11-26T13:00:03+01:00", Timestamp(1795694403)),
        ("2026-11-26 12:00:03Z", None),
        ("2026-02-30T00:00:00Z", None),
        ("garbage", None),
    ],
    ids=["fraction", "half", "offset", "space", "bad-day", "garbage"],
)
def test_parse_rfc3339(text: str, expected: Timestamp | None) -> None:
    assert parse_rfc3339(text) == expected


def test_format_time_value_rejects_non_strings() -> None:
    assert format_time_value(None) == "N/A"
    assert format_time_value(12) == "N/A"
    assert format_time_value("nope") == "N/A"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("3s", 3_000_000_000),
        ("5m", 300_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("300ms", 300_000_000),
        ("2us", 2000),
        ("-5m", -300_000_000_000),
        ("5", None),
        ("m", None),
        ("", None),
        ("5x", None),
    ],
    ids=lambda v: repr(v),
)
def test_go_durations(text: str, ns: int | None) -> None:
    assert parse_go_duration(text) == ns


NOW = Timestamp(1795694400)  # 2026-11-26T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5m", Timestamp(1795694100)),
        ("1h30m", Timestamp(1795689000)),
        ("2026-11-26", Timestamp(1795651200)),
        ("2026-11-26T10Z", Timestamp(1795687200)),
        ("2026-11-26T10+02:00", Timestamp(1795680000)),
        ("2026-11-26T10:30Z", Timestamp(1795689000)),
        ("2026-11-26T10:30:00Z", Timestamp(1795689000)),
        ("2026-11-26T10:30:00.25Z", Timestamp(1795689000, 250_000_000)),
        ("Thu, 26 Nov 2026 10:30:00 +0000", Timestamp(1795689000)),
        ("Nov 26 10:30:00.000", None),
        ("yesterday", None),
    ],
    ids=[
        "minutes",
        "hm",
        "date",
        "hour",
        "hour-offset",
        "minute",
        "rfc3339",
        "rfc3339-frac",
        "rfc1123z",
        "stampmilli-not-accepted",
        "words",
    ],
)
def test_parse_time_arg(text: str, expected: Timestamp | None) -> None:
    assert parse_time_arg(text, NOW) == expected


@pytest.mark.parametrize("layout", TIME_FORMATS)
def test_year_zero_is_not_a_crash(layout: str) -> None:
    """calendar/datetime stop at year 1; RFC 3339 text can say 0000 (a flow read from a
    file): outside the Timestamp range, so N/A, unless an offset brings it into year 1."""
    assert format_time_value("0000-01-01T00:00:00Z", layout) == "N/A"
    assert format_time_value("0000-02-29T12:00:00.5Z", layout) == "N/A"  # 0 is a leap year
    assert parse_rfc3339("0000-02-30T00:00:00Z") is None
    shifted = parse_rfc3339("0000-12-31T23:30:00-01:00")
    assert shifted is not None and shifted.rfc3339() == "0001-01-01T00:30:00Z"
    assert parse_time_arg("0000-01-01", Timestamp(0)) == Timestamp(-62167219200)


def test_epoch_seconds_matches_calendar() -> None:
    for year in (1, 4, 100, 400, 1900, 1970, 2000, 2024, 2026, 9999):
        for month in range(1, 13):
            for day in (1, calendar.monthrange(year, month)[1]):
                fields = (year, month, day, 23, 59, 58)
                seconds = timefmt._epoch_seconds(*fields)
                assert seconds == calendar.timegm((*fields, 0, 0, 0))
                assert timefmt._utc_fields(seconds)[:6] == fields
