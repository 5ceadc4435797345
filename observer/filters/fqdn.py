"""FQDN filters: source_fqdn, destination_fqdn (over ``source_names``/``destination_names``).

A pattern is trimmed, lower-cased and loses one trailing dot; it may contain ``a-z``, ``0-9``,
``-``, ``_``, ``.`` and ``*``, where ``*`` stands for any run of ``[-.0-9a-z]`` (it can span
dots: ``*.cilium.io`` matches ``a.b.cilium.io``). The whole name must match. A flow without
names never matches. The same pattern language serves node-name filters (``node.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from observer.errors import FilterError
from observer.filters.base import FilterSpec, FlowPredicate, get_list, string_list

FQDN_REGEX: Final = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)"
"""What an empty cluster or node element of a node-name pattern matches."""


def fqdn_pattern_regex(pattern: str) -> str:
    """The regular expression (unanchored text) for one FQDN pattern; ValueError if invalid."""
    text = pattern.strip().lower()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise ValueError("empty pattern")
    if text.endswith("."):
        raise ValueError("multiple trailing dots in pattern")
    out: list[str] = []
    for ch in text:
        if ch == ".":
            out.append(r"\.")
        elif ch == "*":
            out.append(r"[-.0-9a-z]*")
        elif ch == "-" or ch == "_" or "0" <= ch <= "9" or "a" <= ch <= "z":
            out.append(ch)
        else:
            raise ValueError(f"invalid character {ch!r} in pattern {pattern!r}")
    return "".join(out)


def compile_fqdn_patterns(field: str, patterns: list[str]) -> re.Pattern[str]:
    parts: list[str] = []
    for pattern in patterns:
        try:
            parts.append(fqdn_pattern_regex(pattern))
        except ValueError as err:
            raise FilterError(field, str(err)) from None
    return re.compile("(?:" + "|".join(parts) + ")")


def _fqdn(field: str, value: Any, names_key: str) -> FlowPredicate:
    regex = compile_fqdn_patterns(field, string_list(field, value))
    fullmatch = regex.fullmatch

    def match(flow: Mapping[str, Any]) -> bool:
        for name in get_list(flow, names_key):
            if isinstance(name, str) and fullmatch(name) is not None:
                return True
        return False

    return match


def source_fqdn(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _fqdn(field, value, "source_names")


def destination_fqdn(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _fqdn(field, value, "destination_names")
