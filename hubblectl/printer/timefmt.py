"""Timestamps: RFC 3339 parsing and the Go layouts Hubble accepts for ``--time-format``.

Flows carry ``google.protobuf.Timestamp`` as RFC 3339 strings with nanosecond precision;
``datetime`` only keeps microseconds, so timestamps are handled as ``(seconds, nanos)``
pairs and formatted per named layout. All output is in UTC, as Hubble prints it.

Layout names (case-insensitive, as Hubble): StampMilli (default, ``Jan _2 15:04:05.000``),
YearMonthDay, YearMonthDayHour, YearMonthDayHourMinute, RFC3339, RFC3339Milli,
RFC3339Micro, RFC3339Nano, RFC1123Z. The ``.999`` layouts trim trailing zeros (and the dot)
and truncate rather than round, as Go does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

TIME_FORMATS: Final = (
    "StampMilli",
    "YearMonthDay",
    "YearMonthDayHour",
    "YearMonthDayHourMinute",
    "RFC3339",
    "RFC3339Milli",
    "RFC3339Micro",
    "RFC3339Nano",
    "RFC1123Z",
)
DEFAULT_TIME_FORMAT: Final = "StampMilli"

_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_DAYS_IN_MONTH: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Timestamp.IsValid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
_MIN_SECONDS: Final = -62135596800
_MAX_SECONDS: Final = 253402300799

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """Seconds since the Unix epoch plus nanoseconds (0..999,999,999), UTC."""

    seconds: int
    nanos: int = 0

    @property
    def total_ns(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanos

    @classmethod
    def from_ns(cls, ns: int) -> Timestamp:
        return cls(ns // 1_000_000_000, ns % 1_000_000_000)

    def is_valid(self) -> bool:
        return _MIN_SECONDS <= self.seconds <= _MAX_SECONDS and 0 <= self.nanos < 1_000_000_000

    def rfc3339(self) -> str:
        """Protobuf JSON form: UTC with ``Z`` and 0, 3, 6 or 9 fraction digits."""
        base = _utc_fields(self.seconds)
        out = f"{base[0]:04d}-{base[1]:02d}-{base[2]:02d}T{base[3]:02d}:{base[4]:02d}:{base[5]:02d}"
        if self.nanos:
            if self.nanos % 1_000_000 == 0:
                out += f".{self.nanos // 1_000_000:03d}"
            elif self.nanos % 1000 == 0:
                out += f".{self.nanos // 1000:06d}"
            else:
                out += f".{self.nanos:09d}"
        return out + "Z"


def parse_rfc3339(text: str) -> Timestamp | None:
    """Parse an RFC 3339 timestamp; ``None`` if it is not one."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, sec = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or sec > 60:
        return None
    frac = m.group(7) or ""
    nanos = int(frac.ljust(9, "0")) if frac else 0
    seconds = _epoch_seconds(year, month, day, hour, minute, min(sec, 59))
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    return Timestamp(seconds, nanos)


def _days_in_month(year: int, month: int) -> int:
    """Proleptic Gregorian, year 0 included (a leap year): ``calendar``/``datetime`` stop at
    year 1 and raise for year 0, which RFC 3339 text can carry."""
    if month == 2 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return 28
    return _DAYS_IN_MONTH[month - 1]


def _epoch_seconds(year: int, month: int, day: int, hour: int, minute: int, sec: int) -> int:
    """Seconds since 1970-01-01T00:00:00Z of a valid proleptic Gregorian UTC date and time
    (the inverse of ``_utc_fields``; any year, unlike ``calendar.timegm``)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + 9 if month <= 2 else month - 3) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + sec


def _utc_fields(seconds: int) -> tuple[int, int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second, weekday) for a UTC epoch second."""
    days, rem = divmod(seconds, 86400)
    hour, rem = divmod(rem, 3600)
    minute, sec = divmod(rem, 60)
    # days since 1970-01-01 -> civil date (proleptic Gregorian), Howard Hinnant's algorithm
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (Mon=0)
    return year, month, day, hour, minute, sec, weekday


def _trimmed_fraction(nanos: int, digits: int) -> str:
    frac = f"{nanos:09d}"[:digits].rstrip("0")
    return "." + frac if frac else ""


def normalize_format_name(name: str) -> str | None:
    """The canonical spelling of a layout name, or ``None`` if unknown."""
    lowered = name.lower()
    for known in TIME_FORMATS:
        if known.lower() == lowered:
            return known
    return None


def format_timestamp(ts: Timestamp | None, layout: str = DEFAULT_TIME_FORMAT) -> str:
    """Render ``ts`` in the named layout (UTC); ``N/A`` when missing or out of range."""
    if ts is None or not ts.is_valid():
        return "N/A"
    year, month, day, hour, minute, sec, weekday = _utc_fields(ts.seconds)
    name = normalize_format_name(layout) or DEFAULT_TIME_FORMAT
    date = f"{year:04d}-{month:02d}-{day:02d}"
    clock = f"{hour:02d}:{minute:02d}:{sec:02d}"
    if name == "StampMilli":
        return f"{_MONTHS[month - 1]} {day:>2} {clock}.{ts.nanos // 1_000_000:03d}"
    if name == "YearMonthDay":
        return date
    if name == "YearMonthDayHour":
        return f"{date}T{hour:02d}Z"
    if name == "YearMonthDayHourMinute":
        return f"{date}T{hour:02d}:{minute:02d}Z"
    if name == "RFC3339":
        return f"{date}T{clock}Z"
    if name == "RFC3339Milli":
        return f"{date}T{clock}{_trimmed_fraction(ts.nanos, 3)}Z"
    if name == "RFC3339Micro":
        return f"{date}T{clock}{_trimmed_fraction(ts.nanos, 6)}Z"
    if name == "RFC3339Nano":
        return f"{date}T{clock}{_trimmed_fraction(ts.nanos, 9)}Z"
    # RFC1123Z
    return f"{_WEEKDAYS[weekday]}, {day:02d} {_MONTHS[month - 1]} {year:04d} {clock} +0000"


def _stamp_milli_fast(value: str) -> str | None:
    """StampMilli straight from a canonical ``YYYY-MM-DDTHH:MM:SS[.f+]Z`` string (the form
    every flow carries), without building a timestamp; ``None`` if the string is not one."""
    if (
        len(value) < 20
        or value[-1] != "Z"
        or value[4] != "-"
        or value[7] != "-"
        or value[10] != "T"
    ):
        return None
    if value[13] != ":" or value[16] != ":":
        return None
    head = value[:19]
    digits = head[0:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16] + head[17:19]
    frac = value[20:-1] if len(value) > 20 else ""
    if not digits.isdigit() or (
        len(value) > 20 and (value[19] != "." or not frac.isdigit() or len(frac) > 9)
    ):
        return None
    year, month, day = int(head[0:4]), int(head[5:7]), int(head[8:10])
    if not (1 <= month <= 12) or year == 0 or day < 1 or day > _DAYS_IN_MONTH[month - 1]:
        return None
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return None
    if int(head[11:13]) > 23 or int(head[14:16]) > 59 or int(head[17:19]) > 59:
        return None
    millis = (frac + "000")[:3]
    return f"{_MONTHS[month - 1]} {day:>2} {head[11:19]}.{millis}"


def format_time_value(value: object, layout: str = DEFAULT_TIME_FORMAT) -> str:
    """Format a JSON ``Timestamp`` value (an RFC 3339 string) from a flow dict."""
    if not isinstance(value, str):
        return "N/A"
    if layout == DEFAULT_TIME_FORMAT:
        fast = _stamp_milli_fast(value)
        if fast is not None:
            return fast
    return format_timestamp(parse_rfc3339(value), layout)


# --- --since / --until -------------------------------------------------------------------

_DURATION_UNITS: Final = MappingProxyType(
    {
        "ns": 1,
        "us": 1_000,
        "\u00b5s": 1_000,  # micro sign
        "\u03bcs": 1_000,  # greek mu
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60 * 1_000_000_000,
        "h": 3600 * 1_000_000_000,
    }
)
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(text: str) -> int | None:
    """Parse a Go ``time.Duration`` string (``300ms``, ``1h30m``, ``-5m``) into nanoseconds."""
    if not text:
        return None
    sign = 1
    rest = text
    if rest[0] in "+-":
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        return None
    total = 0
    pos = 0
    while pos < len(rest):
        m = _DURATION_PART.match(rest, pos)
        if m is None:
            return None
        number, unit = m.group(1), m.group(2)
        scale = _DURATION_UNITS[unit]
        whole, _, frac = number.partition(".")
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        pos = m.end()
    return sign * total


_DATE_ONLY: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATE_HOUR: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})(?:Z|([+-])(\d{2}):(\d{2}))")
_DATE_MINUTE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?:Z|([+-])(\d{2}):(\d{2}))"
)
_RFC1123Z: Final = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})"
)


def _civil(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0
) -> int | None:
    if not (1 <= month <= 12) or not (1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or sec > 59:
        return None
    return _epoch_seconds(year, month, day, hour, minute, sec)


def _offset(sign: str | None, hh: str | None, mm: str | None) -> int:
    if not sign or hh is None or mm is None:
        return 0
    value = int(hh) * 3600 + int(mm) * 60
    return value if sign == "+" else -value


def parse_time_arg(text: str, now: Timestamp) -> Timestamp | None:
    """Parse a ``--since``/``--until`` value the way Hubble does.

    A Go duration means ``now`` minus it; otherwise one of: ``2006-01-02``,
    ``2006-01-02T15Z07:00``, ``2006-01-02T15:04Z07:00``, RFC 3339 (any fraction), RFC 1123Z.
    Returns ``None`` when nothing matches.
    """
    text = text.strip()
    duration = parse_go_duration(text)
    if duration is not None:
        return Timestamp.from_ns(now.total_ns - duration)
    m = _DATE_ONLY.fullmatch(text)
    if m:
        secs = _civil(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return None if secs is None else Timestamp(secs)
    m = _DATE_HOUR.fullmatch(text)
    if m:
        secs = _civil(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)))
        return (
            None if secs is None else Timestamp(secs - _offset(m.group(5), m.group(6), m.group(7)))
        )
    m = _DATE_MINUTE.fullmatch(text)
    if m:
        secs = _civil(
            int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5))
        )
        return (
            None if secs is None else Timestamp(secs - _offset(m.group(6), m.group(7), m.group(8)))
        )
    ts = parse_rfc3339(text)
    if ts is not None:
        return ts
    m = _RFC1123Z.fullmatch(text)
    if m:
        secs = _civil(
            int(m.group(4)),
            _MONTHS.index(m.group(3)) + 1,
            int(m.group(2)),
            int(m.group(5)),
            int(m.group(6)),
            int(m.group(7)),
        )
        return (
            None if secs is None else Timestamp(secs - _offset(m.group(8), m.group(9), m.group(10)))
        )
    return None
