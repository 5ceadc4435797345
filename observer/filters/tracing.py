"""Tracing filters: trace_id (``trace_context.parent.trace_id``) and ip_trace_id
(``ip_trace_id.trace_id``), both exact equality. A flow without a trace context has trace id
``""``; a flow without ``ip_trace_id`` never matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observer.filters.base import (
    FilterSpec,
    FlowPredicate,
    get_int,
    get_str,
    opt_sub,
    string_list,
    sub,
    uint64_list,
)


def trace_id(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    wanted = frozenset(string_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        return get_str(sub(sub(flow, "trace_context"), "parent"), "trace_id") in wanted

    return match


def ip_trace_id(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    wanted = frozenset(uint64_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        ids = opt_sub(flow, "ip_trace_id")
        return ids is not None and get_int(ids, "trace_id") in wanted

    return match
