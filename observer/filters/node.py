"""Node filters: node_name (patterns) and node_labels (label selectors on ``node_labels``).

Node-name patterns are ``node``, ``cluster/node`` or ``cluster/``; each element is an FQDN
pattern (``*`` wildcard, see ``fqdn.py``), and an empty element matches any name. A pattern
without ``/`` matches that node in every cluster. Flow node names without ``/`` are taken as
``default/<name>``; flows without a node name never match. Empty patterns and patterns with
more than one ``/`` are errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from observer.errors import FilterError
from observer.filters.base import FilterSpec, FlowPredicate, get_list, string_list
from observer.filters.fqdn import FQDN_REGEX, fqdn_pattern_regex
from observer.filters.k8s import compile_selectors, label_predicate

DEFAULT_CLUSTER = "default"


def _node_pattern_regex(pattern: str) -> str:
    if not pattern:
        raise ValueError("empty pattern")
    elements = pattern.split("/")
    if len(elements) == 1:
        cluster, node = "", elements[0]
    elif len(elements) == 2:
        cluster, node = elements
    else:
        raise ValueError(f"too many slashes in pattern {pattern!r}")
    cluster_re = fqdn_pattern_regex(cluster) if cluster else FQDN_REGEX
    node_re = fqdn_pattern_regex(node) if node else FQDN_REGEX
    return f"{cluster_re}/{node_re}"


def node_name(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    parts: list[str] = []
    for pattern in string_list(field, value):
        try:
            parts.append(_node_pattern_regex(pattern))
        except ValueError as err:
            raise FilterError(field, str(err)) from None
    fullmatch = re.compile("(?:" + "|".join(parts) + ")").fullmatch

    def match(flow: Mapping[str, Any]) -> bool:
        name = flow.get("node_name")
        if not isinstance(name, str) or not name:
            return False
        if "/" not in name:
            name = f"{DEFAULT_CLUSTER}/{name}"
        return fullmatch(name) is not None

    return match


def node_labels(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return label_predicate(
        compile_selectors(field, value), lambda flow: get_list(flow, "node_labels")
    )
