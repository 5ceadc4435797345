"""Flow filters: ``flow.FlowFilter`` (protojson dict form) -> predicate over flow dicts.

    pred = compile_filters(whitelist=[{"source_pod": ["default/"]}],
                           blacklist=[{"verdict": ["DROPPED"]}])
    keep = pred(response["flow"])

Semantics follow Hubble's server (see ``compiler.py`` for the combination rules and each
family module for its fields): ``ip`` (IPs, CIDRs, IP version, encryption), ``k8s`` (pods,
services, workloads, clusters, labels), ``identity``, ``fqdn``, ``l4`` (protocol, ports, TCP
flags), ``l7`` (HTTP, DNS), ``event`` (uuid, event type, verdict, drop reason, reply,
direction, interface), ``node`` (node name, node labels), ``tracing`` (trace ids).
``labels`` holds the Kubernetes label-selector parser, usable on its own.

Every FlowFilter field of flow.proto v1.19.4 is implemented over the flow dict, including
fields our own agent never fills (services, workloads, FQDN names, HTTP/DNS/Kafka records,
node labels, trace ids, SNAT address, encryption): on our flows those match exactly as Hubble
matches a flow that lacks them (mostly: nothing), and on flows read back from Hubble JSON they
filter for real. Only ``experimental.cel_expression`` is refused with FilterError.
"""

from __future__ import annotations

from observer.filters.base import FlowPredicate
from observer.filters.compiler import FIELD_NAMES, compile_filter, compile_filters
from observer.filters.labels import Requirement, Selector, parse_selector, split_label

__all__ = [
    "FIELD_NAMES",
    "FlowPredicate",
    "Requirement",
    "Selector",
    "compile_filter",
    "compile_filters",
    "parse_selector",
    "split_label",
]
