"""Property tests: compiled predicates never raise on arbitrary flow dicts; compiling an
arbitrary filter raises only FilterError; the selector parser is total."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.errors import FilterError, LabelError
from observer.filters import FIELD_NAMES, compile_filters, parse_selector
from observer.filters.base import lower_camel

_LINES = (
    (Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl").read_bytes().splitlines()
)
FIXTURE_FLOWS = [orjson.loads(line)["flow"] for line in _LINES if line and b'"flow"' in line[:8]]

# One filter per field (several for the richer ones), all compiled once.
FILTERS: list[dict[str, Any]] = [
    {"uuid": ["a"]},
    {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 5}, {}]},
    {"verdict": ["DROPPED", 0]},
    {"drop_reason_desc": ["POLICY_DENIED", 999]},
    {"reply": [True]},
    {"reply": [False]},
    {"encrypted": [False]},
    {"source_identity": [0, 2]},
    {"destination_identity": [1]},
    {"protocol": ["tcp", "udp", "icmp", "sctp", "vrrp", "igmp", "http", "dns", "kafka"]},
    {"source_ip": ["10.0.0.1", "10.0.0.0/8", "::/0"]},
    {"destination_ip": ["fd00::1", "0.0.0.0/0"]},
    {"source_ip_xlated": ["1.2.3.4", "1.0.0.0/8"]},
    {"source_pod": ["default/", "/x", "a"]},
    {"destination_pod": ["kube-system/core"]},
    {"source_workload": [{"name": "a"}, {}]},
    {"destination_workload": [{"kind": "Deployment"}]},
    {"source_service": ["ns/"]},
    {"destination_service": ["svc"]},
    {"source_fqdn": ["*.example.com"]},
    {"destination_fqdn": ["a*"]},
    {"dns_query": ["", "^a"]},
    {"source_label": ["a", "!b", "k8s:c in (x,y)", "d notin (z)", "e>1", "f<2", "g!=h"]},
    {"destination_label": ["reserved:world", "x=y"]},
    {"node_labels": ["k8s:zone=z1", "!a"]},
    {"source_port": ["80", "0"]},
    {"destination_port": ["53"]},
    {"http_status_code": ["200", "4+"]},
    {"http_method": ["GET"]},
    {"http_path": ["^/", ""]},
    {"http_url": ["x", ""]},
    {"http_header": [{"key": "a", "value": "b"}, {}]},
    {"tcp_flags": [{"SYN": True}, {}]},
    {"node_name": ["*", "a/", "/b", "c"]},
    {"source_cluster_name": ["default"]},
    {"destination_cluster_name": ["x"]},
    {"ip_version": ["IP_NOT_USED", "IPv4", "IPv6"]},
    {"trace_id": ["", "t"]},
    {"traffic_direction": ["INGRESS", 0]},
    {"interface": [{"index": 1}, {"name": "eth0"}, {}]},
    {"ip_trace_id": [0, 7]},
]
PREDICATES = [compile_filters([f], []) for f in FILTERS] + [
    compile_filters(FILTERS, []),
    compile_filters([], FILTERS),
    compile_filters(FILTERS[:10], FILTERS[10:]),
]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet="abk8s:=/.*-_ 0123456789%?!(),", max_size=14)
    | st.sampled_from(
        [
            "DROPPED",
            "IPv4",
            "IPv6",
            "EGRESS",
            "10.0.0.1",
            "fd00::1",
            "1.2.3",
            "::",
            "http://h/p?q",
            "/a%zz",
        ]
    )
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["name", "kind", "key", "value", "trace_id"]), children, max_size=3
        )
    ),
    max_leaves=6,
)

ENDPOINT = ("ID", "identity", "cluster_name", "namespace", "labels", "pod_name", "workloads")
SHAPE: dict[str, Any] = {
    "uuid": None,
    "verdict": None,
    "drop_reason_desc": None,
    "is_reply": None,
    "traffic_direction": None,
    "node_name": None,
    "node_labels": None,
    "source_names": None,
    "destination_names": None,
    "IP": {k: None for k in ("source", "destination", "source_xlated", "ipVersion", "encrypted")},
    "l4": {
        "TCP": {
            "source_port": None,
            "destination_port": None,
            "flags": {"SYN": None, "ACK": None, "FIN": None},
        },
        "UDP": {"source_port": None, "destination_port": None},
        "SCTP": {"source_port": None, "destination_port": None},
        "ICMPv4": {"type": None},
        "ICMPv6": {"type": None},
        "VRRP": {"type": None},
        "IGMP": {"type": None},
    },
    "source": {k: None for k in ENDPOINT},
    "destination": {k: None for k in ENDPOINT},
    "source_service": {"name": None, "namespace": None},
    "destination_service": {"name": None, "namespace": None},
    "event_type": {"type": None, "sub_type": None},
    "l7": {
        "http": {"code": None, "method": None, "url": None, "headers": None},
        "dns": {"query": None},
        "kafka": {"topic": None},
    },
    "interface": {"index": None, "name": None},
    "trace_context": {"parent": {"trace_id": None}},
    "ip_trace_id": {"trace_id": None},
}


def _paths(shape: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, sub in shape.items():
        out.append((*prefix, key))  # intermediate nodes too: they may get a wrong-typed value
        if sub is not None:
            out.extend(_paths(sub, (*prefix, key)))
    return out


PATHS = _paths(SHAPE)


def _build(assignments: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """A flow dict from (path, value) assignments; later ones win, scalars are replaced."""
    flow: dict[str, Any] = {}
    for path, value in assignments:
        node = flow
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[path[-1]] = value
    return flow


# Drawing a few (path, value) pairs is much cheaper than nested fixed_dictionaries.
flows = st.lists(st.tuples(st.sampled_from(PATHS), json_values), max_size=14).map(_build) | (
    st.dictionaries(st.text(max_size=8), json_values, max_size=5)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows)
def test_compiled_predicates_never_raise(flow: dict[str, Any]) -> None:
    for predicate in PREDICATES:
        assert isinstance(predicate(flow), bool)


_field_keys = st.sampled_from(
    sorted(FIELD_NAMES | {lower_camel(n) for n in FIELD_NAMES} | {"bogus"})
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_field_keys, json_values, max_size=3))
def test_compiling_arbitrary_filters_raises_only_filter_error(flow_filter: dict[str, Any]) -> None:
    try:
        predicate = compile_filters([flow_filter], [flow_filter])
    except FilterError as err:
        assert err.field
        return
    for flow in FIXTURE_FLOWS:
        assert predicate(flow) is False or predicate(flow) is True


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abk8s:=!(),<> in notin-._/0123456789", max_size=30))
def test_selector_parser_is_total(text: str) -> None:
    try:
        selector = parse_selector(text)
    except LabelError:
        return
    assert parse_selector(str(selector)) == selector
    assert isinstance(selector.matches(["k8s:a=b", "reserved:host", "x"]), bool)
