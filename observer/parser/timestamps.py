"""``google.protobuf.Timestamp`` in its protojson form, from nanoseconds since the epoch.

protojson prints a Timestamp as RFC 3339 in UTC with a ``Z`` and 0, 3, 6 or 9 fraction
digits: the fewest of those that represent the nanoseconds exactly
(``...T12:00:02Z``, ``...T12:00:01.500Z``, ``...T12:00:01.123501Z``,
``...T12:00:01.123456789Z``). Valid years are 0001..9999, as for protojson.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_S: Final = 1_000_000_000
# protojson's limits: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z
MIN_SECONDS: Final = -62_135_596_800
MAX_SECONDS: Final = 253_402_300_799


def _seconds_prefix(seconds: int) -> str:
    if seconds < MIN_SECONDS or seconds > MAX_SECONDS:
        raise ValueError(f"timestamp {seconds}s is outside protojson's range (years 1..9999)")
    dt = _EPOCH + timedelta(seconds=seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d" % (  # noqa: UP031 (faster than format here)
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
    )


def _fraction(nanos: int) -> str:
    if nanos == 0:
        return "Z"
    if nanos % 1_000_000 == 0:
        return ".%03dZ" % (nanos // 1_000_000)  # noqa: UP031
    if nanos % 1_000 == 0:
        return ".%06dZ" % (nanos // 1_000)  # noqa: UP031
    return ".%09dZ" % nanos  # noqa: UP031


def format_timestamp(ns: int) -> str:
    """Nanoseconds since the Unix epoch -> protojson Timestamp string.

    Raises ``ValueError`` outside years 1..9999.
    """
    seconds, nanos = divmod(ns, _NS_PER_S)
    return _seconds_prefix(seconds) + _fraction(nanos)


class TimestampFormatter:
    """``format_timestamp`` with the date-and-seconds part of the last call cached.

    Events arrive in bursts within the same second, so most calls only format the
    fraction. One instance per thread (the cache is two plain attributes).
    """

    __slots__ = ("_prefix", "_seconds")

    def __init__(self) -> None:
        self._seconds = 0
        self._prefix = _seconds_prefix(0)

    def __call__(self, ns: int) -> str:
        seconds, nanos = divmod(ns, _NS_PER_S)
        if seconds != self._seconds:
            self._prefix = _seconds_prefix(seconds)
            self._seconds = seconds
        prefix = self._prefix
        if nanos == 0:
            return prefix + "Z"
        if nanos % 1_000_000 == 0:
            return "%s.%03dZ" % (prefix, nanos // 1_000_000)  # noqa: UP031
        if nanos % 1_000 == 0:
            return "%s.%06dZ" % (prefix, nanos // 1_000)  # noqa: UP031
        return "%s.%09dZ" % (prefix, nanos)  # noqa: UP031
