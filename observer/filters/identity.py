"""Security identity filters: source_identity, destination_identity (numeric equality).

A flow without the endpoint never matches; an endpoint without ``identity`` has identity 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observer.filters.base import FilterSpec, FlowPredicate, get_int, opt_sub, uint32_list


def _identity(field: str, value: Any, side: str) -> FlowPredicate:
    wanted = frozenset(uint32_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        endpoint = opt_sub(flow, side)
        return endpoint is not None and get_int(endpoint, "identity") in wanted

    return match


def source_identity(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _identity(field, value, "source")


def destination_identity(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _identity(field, value, "destination")
