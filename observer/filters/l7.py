"""Layer-7 filters: http_status_code, http_method, http_path, http_url, http_header, dns_query.

- ``http_status_code``: ``NNN`` (100-599, exact) or ``N+``/``NN+`` (prefix; first digit 1-5).
  Flows without HTTP or with code 0 never match.
- ``http_method``: case-insensitive equality.
- ``http_path``: regex search on the path of ``l7.http.url`` (parsed as a request URI: an
  absolute URI or an absolute path; unparsable URLs never match).
- ``http_url``: regex search on the whole ``l7.http.url``.
- ``http_header``: a flow header equal (key and value, case-sensitive) to any entry.
- ``dns_query``: regex search on ``l7.dns.query``; flows without a DNS record never match.

When a FlowFilter with an ``http_*`` field also has ``event_type``, one of its entries must be
type 129 (l7), otherwise the filter is rejected, as Hubble does.

Regexes are Go RE2 in Hubble and Python ``re`` here: the common syntax is the same, ``\\z`` is
translated to Python's ``\\Z``; Python accepts some constructs RE2 rejects (backreferences,
lookaround) and rejects a few RE2 accepts (``\\pL``, flags in mid-pattern).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

from observer.errors import FilterError
from observer.filters.base import (
    INT32_MAX,
    INT32_MIN,
    FilterSpec,
    FlowPredicate,
    get_int,
    get_list,
    get_str,
    int_value,
    normalize_message,
    opt_sub,
    repeated,
    string_list,
    sub,
)

MESSAGE_TYPE_ACCESS_LOG: Final = 129
_STATUS_FULL: Final = re.compile(r"[1-5][0-9]{2}")
_STATUS_PREFIX: Final = re.compile(r"[1-5][0-9]?\+")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def compile_regex(field: str, pattern: str) -> re.Pattern[str]:
    """Compile an RE2-style regex with Python's re; errors name the field."""
    translated = re.sub(r"(\\\\)|\\z", lambda m: m.group(1) or r"\Z", pattern)
    try:
        return re.compile(translated)
    except (re.error, OverflowError, RecursionError) as err:
        raise FilterError(field, f"invalid regular expression {pattern!r}: {err}") from None


def _regexes(field: str, value: Any) -> tuple[re.Pattern[str], ...]:
    return tuple(compile_regex(field, p) for p in string_list(field, value))


def _require_l7_event_type(field: str, spec: FilterSpec) -> None:
    entries = repeated("event_type", spec.get("event_type"))
    if not entries:
        return
    for entry in entries:
        msg = normalize_message(
            "event_type", entry, ("type", "match_sub_type", "sub_type"), "EventTypeFilter"
        )
        if int_value("event_type", msg.get("type", 0), INT32_MIN, INT32_MAX) == (
            MESSAGE_TYPE_ACCESS_LOG
        ):
            return
    raise FilterError(
        field, f"filtering by {field} requires the event type filter to only match 'l7' events"
    )


def _http(flow: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return opt_sub(sub(flow, "l7"), "http")


def http_status_code(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    _require_l7_event_type(field, spec)
    full: set[str] = set()
    prefixes: list[str] = []
    for code in string_list(field, value):
        if _STATUS_FULL.fullmatch(code):
            full.add(code)
        elif _STATUS_PREFIX.fullmatch(code):
            prefixes.append(code[:-1])
        else:
            raise FilterError(field, f"invalid status code prefix {code!r}")
    wanted_full = frozenset(full)
    wanted_prefixes = tuple(prefixes)

    def match(flow: Mapping[str, Any]) -> bool:
        http = _http(flow)
        if http is None:
            return False
        code = get_int(http, "code")
        if code == 0:
            return False
        text = f"{code:03d}"
        return text in wanted_full or text.startswith(wanted_prefixes)

    return match


def http_method(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    _require_l7_event_type(field, spec)
    wanted = frozenset(m.casefold() for m in string_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        http = _http(flow)
        if http is None:
            return False
        method = get_str(http, "method")
        return bool(method) and method.casefold() in wanted

    return match


def request_uri_path(url: str) -> str | None:
    """The unescaped path of ``url`` read as an HTTP request URI, or None when invalid.

    Follows Go's ``url.ParseRequestURI``: an absolute path (``/a/b?q``) or an absolute URI
    (``http://host/a/b?q``); ``*`` is accepted; a rootless URI (``mailto:x``) has an empty
    path; the query is cut off; bad percent-escapes and control characters are errors.
    """
    if _CONTROL.search(url):
        return None
    if url == "*":
        return "*"
    rest = url
    has_scheme = False
    if not url.startswith("/"):
        scheme = _SCHEME.match(url)
        if scheme is None:
            return None
        has_scheme = True
        rest = url[scheme.end() :]
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        return "" if has_scheme else None
    if has_scheme and rest.startswith("//"):
        authority_end = rest.find("/", 2)
        rest = "" if authority_end < 0 else rest[authority_end:]
    if _BAD_ESCAPE.search(rest):
        return None
    return unquote(rest, errors="surrogateescape")


def http_path(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    _require_l7_event_type(field, spec)
    regexes = _regexes(field, value)

    def match(flow: Mapping[str, Any]) -> bool:
        http = _http(flow)
        if http is None:
            return False
        url = get_str(http, "url")
        if not url:
            return False
        path = request_uri_path(url)
        if path is None:
            return False
        return any(rx.search(path) is not None for rx in regexes)

    return match


def http_url(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    _require_l7_event_type(field, spec)
    regexes = _regexes(field, value)

    def match(flow: Mapping[str, Any]) -> bool:
        http = _http(flow)
        if http is None:
            return False
        url = get_str(http, "url")
        return bool(url) and any(rx.search(url) is not None for rx in regexes)

    return match


def http_header(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    _require_l7_event_type(field, spec)
    pairs: set[tuple[str, str]] = set()
    for item in repeated(field, value):
        msg = normalize_message(field, item, ("key", "value"), "HTTPHeader")
        key, val = msg.get("key", ""), msg.get("value", "")
        if not isinstance(key, str) or not isinstance(val, str):
            raise FilterError(field, "HTTPHeader key and value must be strings")
        pairs.add((key, val))
    wanted = frozenset(pairs)

    def match(flow: Mapping[str, Any]) -> bool:
        http = _http(flow)
        if http is None:
            return False
        for header in get_list(http, "headers"):
            if isinstance(header, Mapping) and (
                (get_str(header, "key"), get_str(header, "value")) in wanted
            ):
                return True
        return False

    return match


def dns_query(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    regexes = _regexes(field, value)

    def match(flow: Mapping[str, Any]) -> bool:
        dns = opt_sub(sub(flow, "l7"), "dns")
        if dns is None:
            return False
        query = get_str(dns, "query")
        return any(rx.search(query) is not None for rx in regexes)

    return match
