"""Event-level filters: uuid, event_type, verdict, drop_reason_desc, reply,
traffic_direction, interface.

- ``uuid``: exact equality with ``Flow.uuid``.
- ``event_type``: ``EventTypeFilter{type, match_sub_type, sub_type}``; type 0 = any type; the
  sub-type is compared only when ``match_sub_type`` is true. Flows without ``event_type``
  never match.
- ``verdict``, ``traffic_direction``: enum equality (an unset field is the zero value, so
  ``VERDICT_UNKNOWN`` matches flows without a verdict).
- ``drop_reason_desc``: the flow must be DROPPED and its ``drop_reason_desc`` in the list.
- ``reply``: equality with ``is_reply``; flows with unknown ``is_reply`` never match unless
  they are DROPPED (then they count as not a reply).
- ``interface``: ``NetworkInterface{index, name}``; a non-zero index and a non-empty name must
  each equal the flow's. Flows without ``interface`` never match.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observer.errors import FilterError
from observer.filters.base import (
    INT32_MAX,
    INT32_MIN,
    UINT32_MAX,
    FilterSpec,
    FlowPredicate,
    bool_list,
    bool_value,
    enum_match_set,
    get_enum,
    get_int,
    get_str,
    int_value,
    normalize_message,
    opt_sub,
    repeated,
    string_list,
)
from observer.filters.enums import DROP_REASON, TRAFFIC_DIRECTION, VERDICT, VERDICT_DROPPED

_DROPPED = frozenset({VERDICT_DROPPED, VERDICT.by_number[VERDICT_DROPPED]})


def uuid(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    wanted = frozenset(string_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        return get_str(flow, "uuid") in wanted

    return match


def event_type(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    entries: list[tuple[int, bool, int]] = []
    for item in repeated(field, value):
        msg = normalize_message(
            field, item, ("type", "match_sub_type", "sub_type"), "EventTypeFilter"
        )
        type_ = int_value(field, msg.get("type", 0), INT32_MIN, INT32_MAX)
        match_sub = bool_value(field, msg.get("match_sub_type", False))
        sub_type = int_value(field, msg.get("sub_type", 0), INT32_MIN, INT32_MAX)
        entries.append((type_, match_sub, sub_type))
    wanted = tuple(entries)

    def match(flow: Mapping[str, Any]) -> bool:
        event = opt_sub(flow, "event_type")
        if event is None:
            return False
        have_type = get_int(event, "type")
        have_sub = get_int(event, "sub_type")
        for type_, match_sub, sub_type in wanted:
            if type_ != 0 and type_ != have_type:
                continue
            if match_sub and sub_type != have_sub:
                continue
            return True
        return False

    return match


def verdict(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    wanted = enum_match_set(field, value, VERDICT)

    def match(flow: Mapping[str, Any]) -> bool:
        return get_enum(flow, "verdict") in wanted

    return match


def drop_reason_desc(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    wanted = enum_match_set(field, value, DROP_REASON)

    def match(flow: Mapping[str, Any]) -> bool:
        return (
            get_enum(flow, "verdict") in _DROPPED and get_enum(flow, "drop_reason_desc") in wanted
        )

    return match


def reply(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    wanted = frozenset(bool_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        is_reply = flow.get("is_reply")
        if not isinstance(is_reply, bool):
            if get_enum(flow, "verdict") not in _DROPPED:
                return False
            is_reply = False
        return is_reply in wanted

    return match


def traffic_direction(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    wanted = enum_match_set(field, value, TRAFFIC_DIRECTION)

    def match(flow: Mapping[str, Any]) -> bool:
        return get_enum(flow, "traffic_direction") in wanted

    return match


def interface(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    entries: list[tuple[int, str]] = []
    for item in repeated(field, value):
        msg = normalize_message(field, item, ("index", "name"), "NetworkInterface")
        index = int_value(field, msg.get("index", 0), 0, UINT32_MAX)
        name = msg.get("name", "")
        if not isinstance(name, str):
            raise FilterError(field, "NetworkInterface name must be a string")
        entries.append((index, name))
    wanted = tuple(entries)

    def match(flow: Mapping[str, Any]) -> bool:
        iface = opt_sub(flow, "interface")
        if iface is None:
            return False
        have_index = get_int(iface, "index")
        have_name = get_str(iface, "name")
        for index, name in wanted:
            if index > 0 and index != have_index:
                continue
            if name and name != have_name:
                continue
            return True
        return False

    return match
