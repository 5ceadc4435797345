"""Kubernetes filters: pods, services, workloads, cluster names and endpoint labels.

Pod and service entries are ``[namespace/]name-prefix``:

    "ns/"          every pod of namespace ns
    "ns/prefix"    pods of ns whose name starts with prefix
    "prefix"       pods of namespace ``default`` whose name starts with prefix
    "/prefix"      pods of any namespace whose name starts with prefix

Anything after a second ``/`` is ignored (as Hubble's ``ParseNamespaceName`` does). ``""`` and
``"/"`` are errors. An endpoint (or service) with neither namespace nor name never matches.

Workloads ``{name, kind}``: an empty name or kind is a wildcard; matches if any of the
endpoint's workloads matches. Cluster names: exact equality, empty entries are errors. Labels:
Kubernetes selectors (see ``observer.filters.labels``); the entries are OR'ed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from observer.errors import FilterError, LabelError
from observer.filters.base import (
    FilterSpec,
    FlowPredicate,
    get_list,
    get_str,
    normalize_message,
    repeated,
    string_list,
    sub,
)
from observer.filters.labels import Selector, parse_labels, parse_selector

DEFAULT_NAMESPACE = "default"


def parse_namespaced_name(field: str, entry: str) -> tuple[str, str]:
    """(namespace, name prefix) of a pod/service entry; namespace "" = any namespace."""
    parts = entry.split("/")
    if len(parts) > 1:
        namespace, prefix = parts[0], parts[1]
    elif entry:
        namespace, prefix = DEFAULT_NAMESPACE, entry
    else:
        namespace, prefix = "", ""
    if not namespace and not prefix:
        raise FilterError(field, f"invalid filter {entry!r}, must be [namespace/][<name>]")
    return namespace, prefix


def _namespaced(field: str, value: Any, side: str, name_key: str) -> FlowPredicate:
    entries = tuple(parse_namespaced_name(field, e) for e in string_list(field, value))

    def match(flow: Mapping[str, Any]) -> bool:
        obj = sub(flow, side)
        namespace = get_str(obj, "namespace")
        name = get_str(obj, name_key)
        if not namespace and not name:
            return False
        for want_ns, prefix in entries:
            if (not want_ns or want_ns == namespace) and name.startswith(prefix):
                return True
        return False

    return match


def source_pod(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _namespaced(field, value, "source", "pod_name")


def destination_pod(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _namespaced(field, value, "destination", "pod_name")


def source_service(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _namespaced(field, value, "source_service", "name")


def destination_service(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _namespaced(field, value, "destination_service", "name")


def _workload(field: str, value: Any, side: str) -> FlowPredicate:
    wanted: list[tuple[str, str]] = []
    for item in repeated(field, value):
        msg = normalize_message(field, item, ("name", "kind"), "Workload")
        name = msg.get("name", "")
        kind = msg.get("kind", "")
        if not isinstance(name, str) or not isinstance(kind, str):
            raise FilterError(field, "Workload name and kind must be strings")
        wanted.append((name, kind))
    entries = tuple(wanted)

    def match(flow: Mapping[str, Any]) -> bool:
        for workload in get_list(sub(flow, side), "workloads"):
            if not isinstance(workload, Mapping):
                continue
            name = get_str(workload, "name")
            kind = get_str(workload, "kind")
            for want_name, want_kind in entries:
                if (not want_name or want_name == name) and (not want_kind or want_kind == kind):
                    return True
        return False

    return match


def source_workload(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _workload(field, value, "source")


def destination_workload(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _workload(field, value, "destination")


def _cluster(field: str, value: Any, side: str) -> FlowPredicate:
    names = frozenset(string_list(field, value))
    if "" in names:
        raise FilterError(field, "invalid filter, cluster name must not be empty")

    def match(flow: Mapping[str, Any]) -> bool:
        return get_str(sub(flow, side), "cluster_name") in names

    return match


def source_cluster_name(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _cluster(field, value, "source")


def destination_cluster_name(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return _cluster(field, value, "destination")


def compile_selectors(field: str, value: Any) -> tuple[Selector, ...]:
    """Parse every selector of a label field; LabelError becomes FilterError(field, ...)."""
    selectors: list[Selector] = []
    for entry in string_list(field, value):
        try:
            selectors.append(parse_selector(entry))
        except LabelError as err:
            raise FilterError(field, str(err)) from None
    return tuple(selectors)


_LABEL_CACHE_MAX = 4096


def label_predicate(
    selectors: tuple[Selector, ...], labels_of: Callable[[Mapping[str, Any]], Iterable[object]]
) -> FlowPredicate:
    """OR over ``selectors`` of the labels ``labels_of(flow)`` returns.

    Flows of one endpoint carry the same label list, so the result is memoised per distinct
    list (at most ``_LABEL_CACHE_MAX`` of them, then the memo starts over): the common case
    costs a tuple and a dict lookup instead of splitting every label.
    """
    if any(sel.empty() for sel in selectors):
        return lambda flow: True
    memo: dict[tuple[object, ...], bool] = {}

    def evaluate(labels: Iterable[object]) -> bool:
        parsed = parse_labels(labels)
        for sel in selectors:  # noqa: SIM110 (hot path: faster than any())
            if sel.matches_parsed(parsed):
                return True
        return False

    def match(flow: Mapping[str, Any]) -> bool:
        key = tuple(labels_of(flow))
        try:
            hit = memo.get(key)
        except TypeError:  # unhashable junk in a malformed flow
            return evaluate(key)
        if hit is None:
            if len(memo) >= _LABEL_CACHE_MAX:
                memo.clear()
            hit = memo[key] = evaluate(key)
        return hit

    return match


def source_label(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return label_predicate(
        compile_selectors(field, value), lambda flow: get_list(sub(flow, "source"), "labels")
    )


def destination_label(field: str, value: Any, spec: FilterSpec) -> FlowPredicate:
    return label_predicate(
        compile_selectors(field, value), lambda flow: get_list(sub(flow, "destination"), "labels")
    )
