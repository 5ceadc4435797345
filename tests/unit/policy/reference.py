"""Shared by the policy property tests: generators of small policy worlds (YAML documents
loaded through the real loader) and a brute-force reference evaluator of the model.

The reference never looks at map entries, identities or prefixes: it evaluates each rule
directly against the peer (labels, or the IP address) and the port, with the documented
semantics: a direction is checked only when some selecting policy enforces it; any matching
deny rule denies; otherwise any matching allow rule allows; otherwise localhost is allowed in
(option), otherwise default deny applies unless every enforcing policy turned it off.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import strategies as st

from observer.datapath.labels import LabelSet
from observer.policy import (
    Action,
    CompileOptions,
    Direction,
    EndpointView,
    PeerKind,
    Policy,
    Protocol,
    Rule,
    load_policies,
)
from observer.policy.entities import ReservedIdentity

NAMESPACES = ("a", "b")
CIDRS = ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "192.0.2.0/24", "0.0.0.0/0", "2001:db8::/32")
EXTERNAL_IPS = ("10.1.2.3", "10.200.0.5", "192.0.2.9", "8.8.8.8", "2001:db8::1", "2001:db9::1")
PORTS = (0, 53, 80, 443, 8000)
PROBE_PORTS = (53, 80, 81, 443, 8000, 8050, 9999)
REMOTE_POD = 4444
REMOTE_POD_LABELS = ("k8s:app=x", "k8s:io.kubernetes.pod.namespace=a")


# --------------------------------------------------------------------------- strategies


def _selector_variants(k8s: bool) -> list[dict[str, Any]]:
    """A fixed menu of selectors (drawing from a menu is much cheaper than composing)."""
    label_sets: list[dict[str, str]] = [{}, {"app": "x"}, {"app": "y"}, {"tier": "1"}]
    label_sets.append({"app": "x", "tier": "1"})
    expressions: list[list[dict[str, Any]]] = [
        [],
        [{"key": "app", "operator": "In", "values": ["x", "y"]}],
        [{"key": "tier", "operator": "NotIn", "values": ["1"]}],
        [{"key": "tier", "operator": "Exists"}],
        [{"key": "app", "operator": "DoesNotExist"}],
    ]
    out: list[dict[str, Any]] = []
    for labels in label_sets:
        for exprs in expressions:
            doc: dict[str, Any] = {}
            if labels:
                doc["matchLabels"] = dict(labels)
            if exprs:
                doc["matchExpressions"] = exprs
            out.append(doc)
    if not k8s:
        for ns in NAMESPACES:
            out.append({"matchLabels": {"io.kubernetes.pod.namespace": ns}})
            out.append({"matchLabels": {"io.kubernetes.pod.namespace": ns, "app": "x"}})
    return out


def _port_variants(k8s: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    protocols: list[str | None] = [None, "TCP", "UDP"] if k8s else [None, "TCP", "UDP", "ANY"]
    for port in PORTS:
        for end in (None, 1, 50) if port else (None,):
            for proto in protocols:
                doc: dict[str, Any] = {}
                if port or not k8s:
                    doc["port"] = port if k8s else str(port)
                if end is not None:
                    doc["endPort"] = port + end
                if proto is not None:
                    doc["protocol"] = proto
                out.append(doc)
    return out


def _cidr_set_variants() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cidr in CIDRS:
        net = ipaddress.ip_network(cidr)
        out.append({"cidr": cidr})
        for other in CIDRS:
            sub = ipaddress.ip_network(other)
            if sub.version == net.version and sub != net and sub.subnet_of(net):  # type: ignore[arg-type]
                out.append({"cidr": cidr, "except": [other]})
    return out


SELECTORS = st.sampled_from(_selector_variants(k8s=False))
K8S_SELECTORS = st.sampled_from(_selector_variants(k8s=True))
PORT_DOCS = st.sampled_from(_port_variants(k8s=False))
K8S_PORT_DOCS = st.sampled_from(_port_variants(k8s=True))
CIDR_SETS = st.sampled_from(_cidr_set_variants())


@st.composite
def cilium_rule_docs(draw: st.DrawFn, ingress: bool, deny: bool) -> dict[str, Any]:
    prefix = "from" if ingress else "to"
    rule: dict[str, Any] = {}
    for field_name in draw(
        st.lists(st.sampled_from(["Endpoints", "CIDRSet", "Entities"]), max_size=2, unique=True)
    ):
        if field_name == "Endpoints":
            rule[prefix + field_name] = draw(st.lists(SELECTORS, max_size=2))
        elif field_name == "CIDRSet":
            rule[prefix + field_name] = draw(st.lists(CIDR_SETS, min_size=1, max_size=2))
        else:
            rule[prefix + field_name] = draw(
                st.lists(
                    st.sampled_from(["world", "cluster", "host", "all"]), min_size=1, max_size=2
                )
            )
    l4 = draw(st.sampled_from(["none", "ports", "ports", "icmps"]))
    if l4 == "ports":
        rule["toPorts"] = [{"ports": draw(st.lists(PORT_DOCS, min_size=1, max_size=2))}]
    elif l4 == "icmps":
        rule["icmps"] = [{"fields": [{"type": draw(st.sampled_from([0, 8]))}]}]
    return rule


@st.composite
def cilium_policy_docs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    clusterwide = draw(st.integers(0, 5)) == 0
    spec: dict[str, Any] = {"endpointSelector": draw(SELECTORS)}
    for section, ingress, deny in (
        ("ingress", True, False),
        ("ingressDeny", True, True),
        ("egress", False, False),
        ("egressDeny", False, True),
    ):
        if draw(st.integers(0, 2)) == 0:
            continue
        spec[section] = draw(st.lists(cilium_rule_docs(ingress, deny), max_size=2))
    if draw(st.integers(0, 4)) == 0:
        spec["enableDefaultDeny"] = {
            "ingress": draw(st.booleans()),
            "egress": draw(st.booleans()),
        }
    metadata: dict[str, Any] = {"name": name}
    if not clusterwide:
        metadata["namespace"] = draw(st.sampled_from(NAMESPACES))
    kind = "CiliumClusterwideNetworkPolicy" if clusterwide else "CiliumNetworkPolicy"
    return {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": metadata, "spec": spec}


@st.composite
def k8s_peer_docs(draw: st.DrawFn) -> dict[str, Any]:
    choice = draw(st.sampled_from(["pod", "ns", "both", "ip"]))
    if choice == "ip":
        return {"ipBlock": draw(CIDR_SETS)}
    doc: dict[str, Any] = {}
    if choice in ("pod", "both"):
        doc["podSelector"] = draw(K8S_SELECTORS)
    if choice in ("ns", "both"):
        if draw(st.booleans()):
            doc["namespaceSelector"] = {}
        else:
            doc["namespaceSelector"] = {
                "matchLabels": {"kubernetes.io/metadata.name": draw(st.sampled_from(NAMESPACES))}
            }
    return doc


@st.composite
def k8s_policy_docs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": draw(K8S_SELECTORS)}
    for section, peer in (("ingress", "from"), ("egress", "to")):
        rules: list[dict[str, Any]] = []
        for _ in range(draw(st.integers(0, 2))):
            rule: dict[str, Any] = {}
            if draw(st.booleans()):
                rule[peer] = draw(st.lists(k8s_peer_docs(), max_size=2))
            if draw(st.booleans()):
                rule["ports"] = draw(st.lists(K8S_PORT_DOCS, max_size=2))
            rules.append(rule)
        keep_empty: bool = draw(st.booleans())
        if rules or keep_empty:
            spec[section] = rules
    if draw(st.booleans()):
        spec["policyTypes"] = draw(
            st.lists(st.sampled_from(["Ingress", "Egress"]), min_size=1, max_size=2, unique=True)
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": draw(st.sampled_from(NAMESPACES))},
        "spec": spec,
    }


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Policy], list[EndpointView], CompileOptions]:
    docs = []
    for i in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            docs.append(draw(k8s_policy_docs(f"k{i}")))
        else:
            docs.append(draw(cilium_policy_docs(f"c{i}")))
    policies = load_policies(yaml.dump_all(docs, Dumper=yaml.CSafeDumper), "generated.yaml")
    endpoints = []
    identities: dict[tuple[str, frozenset[str]], int] = {}
    for i in range(draw(st.integers(1, 4))):
        ns = draw(st.sampled_from(NAMESPACES))
        labels = frozenset(
            f"k8s:{k}={v}"
            for k, v in draw(
                st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["x", "y", "1"]))
            ).items()
        )
        ident = identities.setdefault((ns, labels), 1000 + len(identities))
        endpoints.append(
            EndpointView.create(i + 1, ident, ns, sorted(labels), [f"10.213.0.{i + 1}"])
        )
    options = CompileOptions(allow_localhost=draw(st.booleans()))
    return policies, endpoints, options


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class Peer:
    """A party of a connection as the reference sees it."""

    kind: str  # "ep", "pod" (remote pod), "host", "ext"
    labels: LabelSet | None = None
    ip: str | None = None
    endpoint: EndpointView | None = None


def policy_prefixes(policies: list[Policy]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for p in policies:
        for s in p.specs:
            for r in s.rules:
                for peer in r.peers:
                    if peer.cidr is not None:
                        out.append(peer.cidr.cidr)
                        out.extend(peer.cidr.excepts)
    return [n for n in out if n.prefixlen > 0]


def peer_matches(rule: Rule, peer: Peer, policies: list[Policy]) -> bool:
    for sel in rule.peers:
        if sel.kind is PeerKind.ANY:
            return True
        if sel.kind is PeerKind.ENDPOINTS:
            assert sel.selector is not None
            if peer.labels is not None and sel.selector.matches(peer.labels):
                return True
        elif sel.kind is PeerKind.CIDR and peer.kind == "ext":
            assert sel.cidr is not None and peer.ip is not None
            addr = ipaddress.ip_address(peer.ip)
            cidr, excepts = sel.cidr.cidr, sel.cidr.excepts
            if any(addr in e for e in excepts if e.version == addr.version):
                continue
            if addr.version == cidr.version and addr in cidr:
                return True
            # Documented: a /0 of either family selects world (identity 2), which is
            # every external address not inside a prefix some policy names.
            plain_world = not any(
                addr in n for n in policy_prefixes(policies) if n.version == addr.version
            )
            if cidr.prefixlen == 0 and plain_world and not any(e.prefixlen == 0 for e in excepts):
                return True
        elif sel.kind is PeerKind.ENTITY:
            name = sel.entity
            if name == "all":
                return True
            if name == "world" and peer.kind == "ext":
                return True
            if name == "cluster" and peer.kind in ("ep", "pod", "host"):
                return True
            if name == "host" and peer.kind == "host":
                return True
    return False


def port_matches(rule: Rule, port: int, proto: Protocol) -> bool:
    if rule.all_ports:
        return True
    for p in rule.ports:
        lo, hi = p.range
        if proto in p.protocols and lo <= port <= hi:
            return True
    return any(i.protocol is proto and i.type == port for i in rule.icmps)


@dataclass(frozen=True)
class RefDirection:
    enforced: bool
    allowed: bool
    allow_rules: frozenset[tuple[str, str]]
    deny_rules: frozenset[tuple[str, str]]


def ref_direction(
    policies: list[Policy],
    ep: EndpointView,
    direction: Direction,
    remote: Peer,
    port: int,
    proto: Protocol,
    options: CompileOptions,
) -> RefDirection:
    labels = ep.labels.merged(LabelSet.parse([f"k8s:io.kubernetes.pod.namespace={ep.namespace}"]))
    specs = [
        (p, s)
        for p in policies
        for s in p.specs
        if (not p.namespace or p.namespace == ep.namespace)
        and s.subject.matches(labels)
        and direction in s.enforce
    ]
    if not specs:
        return RefDirection(False, True, frozenset(), frozenset())
    allows: set[tuple[str, str]] = set()
    denies: set[tuple[str, str]] = set()
    for p, s in specs:
        for r in s.rules:
            if (
                r.direction is direction
                and peer_matches(r, remote, policies)
                and port_matches(r, port, proto)
            ):
                (denies if r.action is Action.DENY else allows).add((p.name, r.path))
    if denies:
        ok = False
    elif allows or (
        direction is Direction.INGRESS and options.allow_localhost and remote.kind == "host"
    ):
        ok = True
    else:
        ok = not any(direction in s.default_deny for _, s in specs)
    return RefDirection(True, ok, frozenset(allows), frozenset(denies))


def peers_of(endpoints: list[EndpointView]) -> list[Peer]:
    out = [
        Peer(
            "ep",
            ep.labels.merged(LabelSet.parse([f"k8s:io.kubernetes.pod.namespace={ep.namespace}"])),
            endpoint=ep,
        )
        for ep in endpoints
    ]
    out.append(Peer("pod", LabelSet.parse(REMOTE_POD_LABELS)))
    out.append(Peer("host", ReservedIdentity.HOST.labels))
    out.extend(Peer("ext", None, ip) for ip in EXTERNAL_IPS)
    return out
