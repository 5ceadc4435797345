"""FlowFilter (protojson dict) -> predicate over flow dicts; the combination rules.

Within a field the listed values are OR'ed, the fields of one FlowFilter are AND'ed, the
whitelist's FlowFilters are OR'ed (an empty whitelist keeps everything), the blacklist's are
NOR'ed: a flow is kept when it matches some whitelist filter and no blacklist filter. An empty
FlowFilter ``{}`` matches every flow; an empty list or null is the same as an unset field.

Keys are proto names or lowerCamel JSON names; an unknown key, a key given in both forms, or a
value of the wrong type raises ``FilterError`` naming the field. Everything is parsed here,
once: the returned predicate only compares.

``experimental.cel_expression`` is not supported: a non-empty list raises FilterError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from observer.errors import FilterError
from observer.filters import event, fqdn, identity, ip, k8s, l4, l7, node, tracing
from observer.filters.base import (
    Builder,
    FilterSpec,
    FlowPredicate,
    lower_camel,
    normalize_message,
    string_list,
)

# Every FlowFilter field, in the order Hubble evaluates them (DefaultFilters); cheap and
# selective fields first. ``experimental`` is handled by the compiler itself.
FIELDS: Final[tuple[tuple[str, Builder], ...]] = (
    ("uuid", event.uuid),
    ("event_type", event.event_type),
    ("verdict", event.verdict),
    ("drop_reason_desc", event.drop_reason_desc),
    ("reply", event.reply),
    ("encrypted", ip.encrypted),
    ("source_identity", identity.source_identity),
    ("destination_identity", identity.destination_identity),
    ("protocol", l4.protocol),
    ("source_ip", ip.source_ip),
    ("destination_ip", ip.destination_ip),
    ("source_ip_xlated", ip.source_ip_xlated),
    ("source_pod", k8s.source_pod),
    ("destination_pod", k8s.destination_pod),
    ("source_workload", k8s.source_workload),
    ("destination_workload", k8s.destination_workload),
    ("source_service", k8s.source_service),
    ("destination_service", k8s.destination_service),
    ("source_fqdn", fqdn.source_fqdn),
    ("destination_fqdn", fqdn.destination_fqdn),
    ("dns_query", l7.dns_query),
    ("source_label", k8s.source_label),
    ("destination_label", k8s.destination_label),
    ("node_labels", node.node_labels),
    ("source_port", l4.source_port),
    ("destination_port", l4.destination_port),
    ("http_status_code", l7.http_status_code),
    ("http_method", l7.http_method),
    ("http_path", l7.http_path),
    ("http_url", l7.http_url),
    ("http_header", l7.http_header),
    ("tcp_flags", l4.tcp_flags),
    ("node_name", node.node_name),
    ("source_cluster_name", k8s.source_cluster_name),
    ("destination_cluster_name", k8s.destination_cluster_name),
    ("ip_version", ip.ip_version),
    ("trace_id", tracing.trace_id),
    ("traffic_direction", event.traffic_direction),
    ("interface", event.interface),
    ("ip_trace_id", tracing.ip_trace_id),
)
EXPERIMENTAL: Final = "experimental"
FIELD_NAMES: Final = frozenset(name for name, _ in FIELDS) | {EXPERIMENTAL}

_BY_JSON_NAME: Final[Mapping[str, str]] = MappingProxyType(
    {**{n: n for n in FIELD_NAMES}, **{lower_camel(n): n for n in FIELD_NAMES}}
)


def normalize_filter(flow_filter: Any) -> FilterSpec:
    """Keys to proto names; null values and empty lists dropped; unknown/duplicate keys refused."""
    if not isinstance(flow_filter, Mapping):
        raise FilterError("FlowFilter", f"expected a JSON object, got {type(flow_filter).__name__}")
    fields: dict[str, Any] = {}
    for key, value in flow_filter.items():
        name = _BY_JSON_NAME.get(key) if isinstance(key, str) else None
        if name is None:
            raise FilterError(str(key), "unknown FlowFilter field")
        if name in fields:
            raise FilterError(name, "field given twice (proto and JSON name)")
        fields[name] = value
    return FilterSpec(
        {k: v for k, v in fields.items() if v is not None and not (isinstance(v, list) and not v)}
    )


def _check_experimental(value: Any) -> None:
    field = f"{EXPERIMENTAL}.cel_expression"
    msg = normalize_message(EXPERIMENTAL, value, ("cel_expression",), "FlowFilter.Experimental")
    if string_list(field, msg.get("cel_expression")):
        raise FilterError(field, "CEL expressions are not supported")


def compile_filter_parts(flow_filter: Any) -> tuple[FlowPredicate, ...]:
    """The AND'ed per-field predicates of one FlowFilter (empty = matches everything)."""
    spec = normalize_filter(flow_filter)
    if EXPERIMENTAL in spec.fields:
        _check_experimental(spec.fields[EXPERIMENTAL])
    parts: list[FlowPredicate] = []
    for name, builder in FIELDS:
        if name in spec.fields:
            parts.append(builder(name, spec.fields[name], spec))
    return tuple(parts)


def _all_of(parts: tuple[FlowPredicate, ...]) -> FlowPredicate:
    if not parts:
        return lambda flow: True
    if len(parts) == 1:
        return parts[0]

    def match(flow: Mapping[str, Any]) -> bool:
        # an explicit loop: about twice as fast as all() over a generator on this hot path
        for part in parts:  # noqa: SIM110
            if not part(flow):
                return False
        return True

    return match


def compile_filter(flow_filter: Mapping[str, Any]) -> FlowPredicate:
    """One FlowFilter -> predicate (every set field must match)."""
    return _all_of(compile_filter_parts(flow_filter))


def _any_of(filters: tuple[FlowPredicate, ...]) -> FlowPredicate:
    if len(filters) == 1:
        return filters[0]

    def match(flow: Mapping[str, Any]) -> bool:
        for f in filters:  # noqa: SIM110 (hot path, see _all_of)
            if f(flow):
                return True
        return False

    return match


def _check_list(name: str, filters: Any) -> Sequence[Any]:
    if filters is None:
        return ()
    if isinstance(filters, (str, bytes, Mapping)) or not isinstance(filters, Sequence):
        raise FilterError(name, "expected a list of FlowFilter objects")
    return filters


def compile_filters(
    whitelist: Sequence[Mapping[str, Any]], blacklist: Sequence[Mapping[str, Any]]
) -> FlowPredicate:
    """Whitelist/blacklist FlowFilters -> ``predicate(flow) -> bool`` (True = keep the flow).

    ``flow`` is the ``flow`` object of a GetFlowsResponse dict (Hubble's protojson shape).
    Raises FilterError(field, message) for invalid filters.
    """
    allow = tuple(compile_filter(f) for f in _check_list("whitelist", whitelist))
    deny = tuple(compile_filter(f) for f in _check_list("blacklist", blacklist))
    if not allow and not deny:
        return lambda flow: True
    if not deny:
        return _any_of(allow)
    denied = _any_of(deny)
    if not allow:
        return lambda flow: not denied(flow)
    allowed = _any_of(allow)
    return lambda flow: allowed(flow) and not denied(flow)
