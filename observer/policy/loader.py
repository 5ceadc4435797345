"""YAML text -> validated :class:`~observer.policy.model.Policy` objects (pure).

``load_policies(text, filename)`` reads every document of a file (``---`` separated; a
``kind: List`` document contributes each of its ``items``). It accepts
``cilium.io/v2`` CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy and
``networking.k8s.io/v1`` NetworkPolicy. Validation is strict: an unknown field, a wrong type,
a bad selector, CIDR, port or entity, a duplicate key or a feature this project does not
implement yet is a :class:`PolicyLoadError` (a :class:`~observer.errors.PolicyError`) that
names the file, the 1-based document index and the field path::

    policy.yaml: document 2: spec.ingress[0].toPorts[0].ports[0].port: port 70000 out of range 0-65535

One error rejects the whole file: either every policy loads or none does.

Semantics implemented (Cilium / Kubernetes, as documented by them):

* **Enforcement.** A CiliumNetworkPolicy puts the endpoints it selects into enforcement for
  a direction when its spec *has the key* ``ingress``/``ingressDeny`` (``egress``/
  ``egressDeny``), even with an empty or null list (Cilium's documented "Ingress/Egress
  Default Deny" example). Note: recent Cilium source counts only non-empty lists; we chose
  the documented, fail-closed reading. ``enableDefaultDeny: {ingress: false}`` keeps
  enforcement (deny rules apply) but without default deny.
* **Empty rules.** ``ingress: [{}]`` selects no peer: enforcement on, nothing allowed
  (Cilium's "deny all ingress"). A rule with ``toPorts``/``icmps`` but no peer field
  allows those ports from any peer (L4-only). A peer field present but empty
  (``fromEndpoints: []``) selects nothing.
* **Namespaces.** A namespaced policy selects endpoints of its namespace only; its
  ``fromEndpoints``/``toEndpoints`` are restricted to its namespace unless they name
  ``io.kubernetes.pod.namespace`` (or a namespace label, or a reserved label).
  Clusterwide policies restrict peer selectors to pods (namespace label exists).
* **Kubernetes NetworkPolicy.** ``policyTypes`` (default: Ingress, plus Egress when there
  are egress rules) are the enforced, default-deny directions. A rule without ``from``/
  ``to`` (or with an empty list) matches every peer; without ``ports`` every port.
  ``podSelector`` alone = pods of the policy's namespace; ``namespaceSelector: {}`` = pods
  of every namespace; ``matchLabels`` on ``kubernetes.io/metadata.name`` = that namespace
  by name (other namespace label keys match ``k8s:io.cilium.k8s.namespace.labels.<key>``
  endpoint labels). Protocol defaults to TCP.
* **Ports.** ``port`` 0 or absent = every port; ``endPort`` makes a range; ``protocol``
  ANY (or absent, Cilium) = TCP, UDP and SCTP. Named ports are rejected.
* **Not supported yet** (rejected, naming the field): L7 ``rules`` (http/dns/kafka),
  ``toFQDNs``, ``toServices``, ``toGroups``/``fromGroups``, ``fromRequires``/
  ``toRequires``, ``fromNodes``/``toNodes``/``nodeSelector``, ``authentication``,
  TLS/listener/serverNames port options, CIDR groups.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import yaml

from observer.datapath.labels import SOURCE_ANY, SOURCE_K8S, is_dns_label, is_dns_subdomain
from observer.errors import PolicyError
from observer.policy.entities import ENTITIES
from observer.policy.model import (
    Action,
    Direction,
    IcmpRule,
    IPNetwork,
    PeerKind,
    PeerSelector,
    Policy,
    PolicyKind,
    PolicySpec,
    PortRule,
    Protocol,
    Rule,
)
from observer.policy.selectors import (
    NAMESPACE_SELECTOR_KEYS,
    POD_NAMESPACE_LABEL,
    LabelSelector,
    SelectorError,
    any_namespace_requirement,
    namespace_requirement,
    parse_selector,
    scope_peer_selector,
    subject_selector,
)

PathPart = str | int
Path = tuple[PathPart, ...]

CILIUM_API = "cilium.io/v2"
K8S_API = "networking.k8s.io/v1"
MAX_PORTS = 40
MAX_ICMP_FIELDS = 40


def format_path(path: Sequence[PathPart]) -> str:
    """``("spec", "ingress", 0, "toPorts")`` -> ``spec.ingress[0].toPorts``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class PolicyLoadError(PolicyError):
    """A policy file is invalid. ``str()`` is ``<file>: document <n>: <field path>: <problem>``;
    ``line`` is the 1-based line of the offending node when known."""

    def __init__(
        self, filename: str, document: int, path: str, message: str, line: int | None = None
    ) -> None:
        where = f"{filename}: document {document}: "
        super().__init__(where + (f"{path}: {message}" if path else message))
        self.filename = filename
        self.document = document
        self.path = path
        self.message = message
        self.line = line


# --------------------------------------------------------------------------- YAML


class _Doc:
    """One YAML document being validated: knows how to report an error at a path."""

    __slots__ = ("filename", "index", "node")

    def __init__(self, filename: str, index: int, node: yaml.Node | None) -> None:
        self.filename = filename
        self.index = index
        self.node = node

    def fail(self, path: Path, message: str) -> NoReturn:
        raise PolicyLoadError(
            self.filename, self.index, format_path(path), message, _line_of(self.node, path)
        )


def _line_of(node: yaml.Node | None, path: Path) -> int | None:
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in path:
        nxt: yaml.Node | None = None
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            if 0 <= part < len(node.value):
                nxt = node.value[part]
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                    line = key_node.start_mark.line + 1
                    nxt = value_node
                    break
        if nxt is None:
            return line
        node = nxt
        if not isinstance(node, yaml.ScalarNode):
            line = node.start_mark.line + 1
    return line


def _duplicate_key(node: yaml.Node, path: Path) -> tuple[Path, str, int] | None:
    """The first duplicate mapping key under ``node``: (path, key, line)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen and key_node.value != "<<":
                    return (path, key_node.value, key_node.start_mark.line + 1)
                seen.add(key_node.value)
                found = _duplicate_key(value_node, (*path, key_node.value))
            else:
                found = _duplicate_key(value_node, path)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, (*path, i))
            if found is not None:
                return found
    return None


def _parse_documents(text: str, filename: str) -> list[tuple[int, Any, yaml.Node]]:
    # libyaml's safe loader when available (same marks, ~10x faster), else pure Python.
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    docs: list[tuple[int, Any, yaml.Node]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            index = len(docs) + 1
            dup = _duplicate_key(node, ())
            if dup is not None:
                path, key, line = dup
                raise PolicyLoadError(
                    filename,
                    index,
                    format_path(path),
                    f"line {line}: duplicate key {key!r}",
                    line,
                )
            docs.append((index, loader.construct_document(node), node))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is None:
            raise PolicyLoadError(filename, len(docs) + 1, "", f"invalid YAML: {problem}") from None
        raise PolicyLoadError(
            filename,
            len(docs) + 1,
            "",
            f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}",
            mark.line + 1,
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyLoadError(filename, len(docs) + 1, "", f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return docs


# --------------------------------------------------------------------------- helpers


def _mapping(doc: _Doc, value: object, path: Path, what: str = "a mapping") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        doc.fail(path, f"must be {what}, not {_type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            doc.fail(path, f"key {key!r} must be a string")
    return value


def _list(doc: _Doc, value: object, path: Path) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        doc.fail(path, f"must be a list, not {_type_name(value)}")
    return value


def _string(doc: _Doc, value: object, path: Path) -> str:
    if not isinstance(value, str):
        doc.fail(path, f"must be a string, not {_type_name(value)}")
    return value


def _bool(doc: _Doc, value: object, path: Path) -> bool:
    if not isinstance(value, bool):
        doc.fail(path, f"must be true or false, not {_type_name(value)}")
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _check_fields(
    doc: _Doc,
    obj: Mapping[str, Any],
    path: Path,
    allowed: frozenset[str],
    unsupported: Mapping[str, str] | None = None,
) -> None:
    for key in obj:
        if unsupported is not None and key in unsupported:
            doc.fail((*path, key), f"{unsupported[key]} not supported yet")
        if key not in allowed:
            doc.fail((*path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _selector(
    doc: _Doc,
    raw: object,
    path: Path,
    *,
    default_source: str = SOURCE_ANY,
    key_map: Mapping[str, tuple[str, str]] | None = None,
) -> LabelSelector:
    if raw is None:
        return LabelSelector()
    try:
        return parse_selector(raw, default_source=default_source, key_map=key_map)
    except SelectorError as exc:
        doc.fail((*path, *exc.parts), exc.message)


def _network(doc: _Doc, raw: object, path: Path) -> IPNetwork:
    text = _string(doc, raw, path)
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        doc.fail(path, f"invalid CIDR {text!r}")


# --------------------------------------------------------------------------- metadata

_METADATA_FIELDS = frozenset(
    {
        "name",
        "namespace",
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "ownerReferences",
        "finalizers",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
        "selfLink",
    }
)


class _Meta:
    __slots__ = ("labels", "name", "namespace", "revision", "uid")

    def __init__(
        self,
        name: str,
        namespace: str,
        labels: tuple[tuple[str, str], ...],
        revision: int,
        uid: str,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.labels = labels
        self.revision = revision
        self.uid = uid


def _metadata(doc: _Doc, raw: object, path: Path, *, clusterwide: bool) -> _Meta:
    if raw is None:
        doc.fail(path, "required")
    meta = _mapping(doc, raw, path)
    _check_fields(doc, meta, path, _METADATA_FIELDS)
    if "name" not in meta:
        doc.fail((*path, "name"), "required")
    name = _string(doc, meta["name"], (*path, "name"))
    if not is_dns_subdomain(name):
        doc.fail((*path, "name"), f"invalid name {name!r} (lower-case RFC 1123 subdomain)")
    namespace = ""
    if clusterwide:
        if meta.get("namespace") not in (None, ""):
            doc.fail((*path, "namespace"), "a clusterwide policy has no namespace")
    else:
        ns_raw = meta.get("namespace")
        namespace = "default" if ns_raw is None else _string(doc, ns_raw, (*path, "namespace"))
        if not is_dns_label(namespace):
            doc.fail((*path, "namespace"), f"invalid namespace {namespace!r}")
    labels: list[tuple[str, str]] = []
    raw_labels = meta.get("labels")
    if raw_labels is not None:
        for key, value in _mapping(doc, raw_labels, (*path, "labels")).items():
            labels.append((key, _string(doc, value, (*path, "labels", key))))
    if meta.get("annotations") is not None:
        for key, value in _mapping(doc, meta["annotations"], (*path, "annotations")).items():
            _string(doc, value, (*path, "annotations", key))
    revision = 0
    generation = meta.get("generation")
    if generation is not None:
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            doc.fail((*path, "generation"), "must be a non-negative integer")
        revision = generation
    uid = meta.get("uid")
    uid_text = "" if uid is None else _string(doc, uid, (*path, "uid"))
    return _Meta(name, namespace, tuple(sorted(labels)), revision, uid_text)


# --------------------------------------------------------------------------- ports

_ICMP4_NAMES: Mapping[str, int] = {
    "EchoReply": 0,
    "DestinationUnreachable": 3,
    "Redirect": 5,
    "Echo": 8,
    "EchoRequest": 8,
    "RouterAdvertisement": 9,
    "RouterSelection": 10,
    "TimeExceeded": 11,
    "ParameterProblem": 12,
    "Timestamp": 13,
    "TimestampReply": 14,
    "Photuris": 40,
    "ExtendedEchoRequest": 42,
    "ExtendedEchoReply": 43,
}
_ICMP6_NAMES: Mapping[str, int] = {
    "DestinationUnreachable": 1,
    "PacketTooBig": 2,
    "TimeExceeded": 3,
    "ParameterProblem": 4,
    "EchoRequest": 128,
    "EchoReply": 129,
    "MulticastListenerQuery": 130,
    "MulticastListenerReport": 131,
    "MulticastListenerDone": 132,
    "RouterSolicitation": 133,
    "RouterAdvertisement": 134,
    "NeighborSolicitation": 135,
    "NeighborAdvertisement": 136,
    "RedirectMessage": 137,
    "RouterRenumbering": 138,
    "ICMPNodeInformationQuery": 139,
    "ICMPNodeInformationResponse": 140,
    "InverseNeighborDiscoverySolicitation": 141,
    "InverseNeighborDiscoveryAdvertisement": 142,
    "HomeAgentAddressDiscoveryRequest": 144,
    "HomeAgentAddressDiscoveryReply": 145,
    "MobilePrefixSolicitation": 146,
    "MobilePrefixAdvertisement": 147,
    "DuplicateAddressRequestCodeSuffix": 157,
    "DuplicateAddressConfirmationCodeSuffix": 158,
    "ExtendedEchoRequest": 160,
    "ExtendedEchoReply": 161,
}

_PROTOCOLS: Mapping[str, Protocol] = {
    "TCP": Protocol.TCP,
    "UDP": Protocol.UDP,
    "SCTP": Protocol.SCTP,
    "ANY": Protocol.ANY,
    "": Protocol.ANY,
}


def _port_number(doc: _Doc, raw: object, path: Path) -> int:
    if isinstance(raw, bool):
        doc.fail(path, f"port must be a number, not {_type_name(raw)}")
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if text == "":
            number = 0
        elif text.isdigit():
            number = int(text)
        else:
            doc.fail(path, f"named port {raw!r} is not supported (use a port number)")
    else:
        doc.fail(path, f"port must be a number, not {_type_name(raw)}")
    if not 0 <= number <= 65535:
        doc.fail(path, f"port {number} out of range 0-65535")
    return number


def _port_rule(
    doc: _Doc, raw: object, path: Path, *, k8s: bool, namespace_default: Protocol
) -> PortRule:
    obj = _mapping(doc, raw, path)
    _check_fields(doc, obj, path, frozenset({"port", "endPort", "protocol"}))
    port = _port_number(doc, obj.get("port"), (*path, "port")) if "port" in obj else 0
    end_port: int | None = None
    if obj.get("endPort") is not None:
        end_raw = obj["endPort"]
        if isinstance(end_raw, bool) or not isinstance(end_raw, int):
            doc.fail((*path, "endPort"), f"endPort must be a number, not {_type_name(end_raw)}")
        if not 0 <= end_raw <= 65535:
            doc.fail((*path, "endPort"), f"endPort {end_raw} out of range 0-65535")
        if end_raw != 0:
            if port == 0:
                doc.fail((*path, "endPort"), "endPort needs a non-zero port")
            if end_raw < port:
                doc.fail((*path, "endPort"), f"endPort {end_raw} is less than port {port}")
            end_port = end_raw if end_raw != port else None
    protocol = namespace_default
    if obj.get("protocol") is not None:
        text = _string(doc, obj["protocol"], (*path, "protocol"))
        key = text if k8s else text.upper()
        if key not in _PROTOCOLS or (k8s and key in ("ANY", "")):
            want = "TCP, UDP or SCTP" if k8s else "TCP, UDP, SCTP or ANY"
            hint = " (ICMP goes in icmps)" if text.upper().startswith("ICMP") and not k8s else ""
            doc.fail((*path, "protocol"), f"unsupported protocol {text!r} (want {want}){hint}")
        protocol = _PROTOCOLS[key]
    return PortRule(port, end_port, protocol)


def _cilium_to_ports(doc: _Doc, raw: object, path: Path, *, deny: bool) -> list[PortRule]:
    out: list[PortRule] = []
    allowed = frozenset({"ports"})
    unsupported = {
        "rules": "L7 rules (http/dns/kafka) are",
        "listener": "Envoy listeners are",
        "originatingTLS": "TLS origination is",
        "terminatingTLS": "TLS termination is",
        "serverNames": "TLS server names are",
    }
    for i, item in enumerate(_list(doc, raw, path)):
        ipath = (*path, i)
        obj = _mapping(doc, {} if item is None else item, ipath)
        _check_fields(doc, obj, ipath, allowed, None if deny else unsupported)
        ports = _list(doc, obj.get("ports"), (*ipath, "ports"))
        if len(ports) > MAX_PORTS:
            doc.fail((*ipath, "ports"), f"too many ports ({len(ports)}; at most {MAX_PORTS})")
        if not ports:
            out.append(PortRule())
        for j, port in enumerate(ports):
            out.append(
                _port_rule(
                    doc, port, (*ipath, "ports", j), k8s=False, namespace_default=Protocol.ANY
                )
            )
    return out


def _icmps(doc: _Doc, raw: object, path: Path) -> list[IcmpRule]:
    out: list[IcmpRule] = []
    for i, item in enumerate(_list(doc, raw, path)):
        ipath = (*path, i)
        obj = _mapping(doc, item, ipath)
        _check_fields(doc, obj, ipath, frozenset({"fields"}))
        fields = _list(doc, obj.get("fields"), (*ipath, "fields"))
        if len(fields) > MAX_ICMP_FIELDS:
            doc.fail((*ipath, "fields"), f"too many fields (at most {MAX_ICMP_FIELDS})")
        for j, field_raw in enumerate(fields):
            fpath = (*ipath, "fields", j)
            fobj = _mapping(doc, field_raw, fpath)
            _check_fields(doc, fobj, fpath, frozenset({"family", "type"}))
            family_text = fobj.get("family", "IPv4")
            if family_text not in ("IPv4", "IPv6"):
                doc.fail((*fpath, "family"), f"unknown family {family_text!r} (want IPv4 or IPv6)")
            family = 4 if family_text == "IPv4" else 6
            if "type" not in fobj:
                doc.fail((*fpath, "type"), "required")
            type_raw = fobj["type"]
            names = _ICMP4_NAMES if family == 4 else _ICMP6_NAMES
            if isinstance(type_raw, bool):
                doc.fail((*fpath, "type"), "must be a number or a message name")
            if isinstance(type_raw, str) and type_raw.isdigit():
                type_raw = int(type_raw)
            if isinstance(type_raw, int):
                if not 0 <= type_raw <= 255:
                    doc.fail((*fpath, "type"), f"ICMP type {type_raw} out of range 0-255")
                number = type_raw
            elif isinstance(type_raw, str) and type_raw in names:
                number = names[type_raw]
            else:
                doc.fail(
                    (*fpath, "type"),
                    f"unknown {family_text} ICMP message {type_raw!r}",
                )
            out.append(IcmpRule(family, number))
    return out


# --------------------------------------------------------------------------- Cilium rules

_SECTIONS: tuple[tuple[str, Direction, Action], ...] = (
    ("ingress", Direction.INGRESS, Action.ALLOW),
    ("ingressDeny", Direction.INGRESS, Action.DENY),
    ("egress", Direction.EGRESS, Action.ALLOW),
    ("egressDeny", Direction.EGRESS, Action.DENY),
)

_INGRESS_PEERS = ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities")
_EGRESS_PEERS = ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities")
_INGRESS_UNSUPPORTED: Mapping[str, str] = {
    "fromRequires": "fromRequires is",
    "fromGroups": "fromGroups is",
    "fromNodes": "fromNodes is",
    "authentication": "authentication is",
}
_EGRESS_UNSUPPORTED: Mapping[str, str] = {
    "toRequires": "toRequires is",
    "toServices": "toServices is",
    "toFQDNs": "toFQDNs is",
    "toGroups": "toGroups is",
    "toNodes": "toNodes is",
    "authentication": "authentication is",
}


def _cidr_set(doc: _Doc, raw: object, path: Path) -> PeerSelector:
    obj = _mapping(doc, raw, path)
    _check_fields(
        doc,
        obj,
        path,
        frozenset({"cidr", "except"}),
        {"cidrGroupRef": "cidrGroupRef is", "cidrGroupSelector": "cidrGroupSelector is"},
    )
    if "cidr" not in obj:
        doc.fail((*path, "cidr"), "required")
    cidr = _network(doc, obj["cidr"], (*path, "cidr"))
    excepts: list[IPNetwork] = []
    for i, item in enumerate(_list(doc, obj.get("except"), (*path, "except"))):
        net = _network(doc, item, (*path, "except", i))
        if net.version != cidr.version or not net.subnet_of(cidr):  # type: ignore[arg-type]
            doc.fail((*path, "except", i), f"{net} is not inside {cidr}")
        excepts.append(net)
    return PeerSelector.cidr_rule(cidr, tuple(excepts))


def _cilium_rule(
    doc: _Doc,
    raw: object,
    path: Path,
    direction: Direction,
    action: Action,
    namespace: str,
) -> Rule:
    obj = _mapping(doc, {} if raw is None else raw, path)
    ingress = direction is Direction.INGRESS
    peer_fields = _INGRESS_PEERS if ingress else _EGRESS_PEERS
    unsupported = dict(_INGRESS_UNSUPPORTED if ingress else _EGRESS_UNSUPPORTED)
    allowed = frozenset({*peer_fields, "toPorts", "icmps"})
    if action is Action.DENY:
        unsupported.pop("authentication")
    _check_fields(doc, obj, path, allowed, unsupported)

    peers: list[PeerSelector] = []
    has_peer_field = False
    ep_field, cidr_field, cidrset_field, entity_field = peer_fields
    if ep_field in obj:
        has_peer_field = True
        for i, sel in enumerate(_list(doc, obj[ep_field], (*path, ep_field))):
            selector = _selector(doc, {} if sel is None else sel, (*path, ep_field, i))
            peers.append(PeerSelector.endpoints(scope_peer_selector(selector, namespace)))
    if cidr_field in obj:
        has_peer_field = True
        for i, item in enumerate(_list(doc, obj[cidr_field], (*path, cidr_field))):
            peers.append(PeerSelector.cidr_rule(_network(doc, item, (*path, cidr_field, i))))
    if cidrset_field in obj:
        has_peer_field = True
        for i, item in enumerate(_list(doc, obj[cidrset_field], (*path, cidrset_field))):
            peers.append(_cidr_set(doc, item, (*path, cidrset_field, i)))
    if entity_field in obj:
        has_peer_field = True
        for i, item in enumerate(_list(doc, obj[entity_field], (*path, entity_field))):
            name = _string(doc, item, (*path, entity_field, i))
            if name not in ENTITIES:
                doc.fail(
                    (*path, entity_field, i),
                    f"unknown entity {name!r} (want one of {', '.join(sorted(ENTITIES))})",
                )
            peers.append(PeerSelector.entity_named(name))

    ports = _cilium_to_ports(
        doc, obj.get("toPorts"), (*path, "toPorts"), deny=action is Action.DENY
    )
    icmps = _icmps(doc, obj.get("icmps"), (*path, "icmps"))
    if ports and icmps:
        doc.fail(
            (*path, "icmps"),
            "the icmps block may only be present without toPorts; "
            "define a separate rule to use toPorts",
        )
    if not has_peer_field and (ports or icmps):
        peers.append(PeerSelector.any())
    return Rule(
        direction=direction,
        action=action,
        peers=_dedup(peers),
        ports=tuple(dict.fromkeys(ports)),
        icmps=tuple(dict.fromkeys(icmps)),
        path=format_path(path),
    )


def _dedup(peers: list[PeerSelector]) -> tuple[PeerSelector, ...]:
    return tuple(dict.fromkeys(peers))


_CILIUM_SPEC_FIELDS = frozenset(
    {
        "endpointSelector",
        "ingress",
        "ingressDeny",
        "egress",
        "egressDeny",
        "labels",
        "description",
        "enableDefaultDeny",
    }
)
_CILIUM_SPEC_UNSUPPORTED: Mapping[str, str] = {
    "nodeSelector": "host policies (nodeSelector) are",
    "log": "policy logging is",
}


def _cilium_spec(doc: _Doc, raw: object, path: Path, namespace: str) -> PolicySpec:
    obj = _mapping(doc, raw, path)
    _check_fields(doc, obj, path, _CILIUM_SPEC_FIELDS, _CILIUM_SPEC_UNSUPPORTED)
    if "endpointSelector" not in obj:
        doc.fail((*path, "endpointSelector"), "required")
    subject = _selector(doc, obj["endpointSelector"], (*path, "endpointSelector"))
    if namespace:
        subject = subject_selector(subject)
    if obj.get("description") is not None:
        _string(doc, obj["description"], (*path, "description"))
    if obj.get("labels") is not None:
        for i, label in enumerate(_list(doc, obj["labels"], (*path, "labels"))):
            lpath = (*path, "labels", i)
            lobj = _mapping(doc, label, lpath)
            _check_fields(doc, lobj, lpath, frozenset({"key", "value", "source"}))
            for key, value in lobj.items():
                _string(doc, value, (*lpath, key))
    rules: list[Rule] = []
    enforce: set[Direction] = set()
    for section, direction, action in _SECTIONS:
        if section not in obj:
            continue
        enforce.add(direction)
        for i, item in enumerate(_list(doc, obj[section], (*path, section))):
            rules.append(_cilium_rule(doc, item, (*path, section, i), direction, action, namespace))
    default_deny = set(enforce)
    edd = obj.get("enableDefaultDeny")
    if edd is not None:
        epath = (*path, "enableDefaultDeny")
        eobj = _mapping(doc, edd, epath)
        _check_fields(doc, eobj, epath, frozenset({"ingress", "egress"}))
        for key, direction in (("ingress", Direction.INGRESS), ("egress", Direction.EGRESS)):
            if eobj.get(key) is not None and not _bool(doc, eobj[key], (*epath, key)):
                default_deny.discard(direction)
    return PolicySpec(
        subject=subject,
        rules=tuple(rules),
        enforce=frozenset(enforce),
        default_deny=frozenset(default_deny),
        path=format_path(path),
    )


def _load_cilium(doc: _Doc, obj: Mapping[str, Any], base: Path, kind: PolicyKind) -> Policy:
    _check_fields(
        doc, obj, base, frozenset({"apiVersion", "kind", "metadata", "spec", "specs", "status"})
    )
    meta = _metadata(
        doc, obj.get("metadata"), (*base, "metadata"), clusterwide=kind is PolicyKind.CCNP
    )
    specs: list[PolicySpec] = []
    if obj.get("spec") is not None:
        specs.append(_cilium_spec(doc, obj["spec"], (*base, "spec"), meta.namespace))
    if obj.get("specs") is not None:
        for i, item in enumerate(_list(doc, obj["specs"], (*base, "specs"))):
            specs.append(_cilium_spec(doc, item, (*base, "specs", i), meta.namespace))
    if not specs:
        doc.fail((*base, "spec"), "required (a policy needs spec or specs)")
    return Policy(
        kind=kind,
        name=meta.name,
        namespace=meta.namespace,
        specs=tuple(specs),
        labels=meta.labels,
        revision=meta.revision,
        uid=meta.uid,
        filename=doc.filename,
        document_index=doc.index,
        document=copy.deepcopy(dict(obj)),
    )


# --------------------------------------------------------------------------- Kubernetes


def _k8s_peer(doc: _Doc, raw: object, path: Path, namespace: str) -> PeerSelector:
    obj = _mapping(doc, raw, path)
    _check_fields(doc, obj, path, frozenset({"podSelector", "namespaceSelector", "ipBlock"}))
    if not obj:
        doc.fail(path, "a peer needs podSelector, namespaceSelector or ipBlock")
    if "ipBlock" in obj:
        if len(obj) > 1:
            doc.fail((*path, "ipBlock"), "ipBlock cannot be combined with other peer fields")
        bpath = (*path, "ipBlock")
        block = _mapping(doc, obj["ipBlock"], bpath)
        _check_fields(doc, block, bpath, frozenset({"cidr", "except"}))
        if "cidr" not in block:
            doc.fail((*bpath, "cidr"), "required")
        cidr = _network(doc, block["cidr"], (*bpath, "cidr"))
        excepts: list[IPNetwork] = []
        for i, item in enumerate(_list(doc, block.get("except"), (*bpath, "except"))):
            net = _network(doc, item, (*bpath, "except", i))
            if net.version != cidr.version or not net.subnet_of(cidr):  # type: ignore[arg-type]
                doc.fail((*bpath, "except", i), f"{net} is not inside {cidr}")
            excepts.append(net)
        return PeerSelector.cidr_rule(cidr, tuple(excepts))
    pods = LabelSelector()
    if "podSelector" in obj:
        pods = _selector(doc, obj["podSelector"], (*path, "podSelector"), default_source=SOURCE_K8S)
    if "namespaceSelector" in obj:
        ns_sel = _selector(
            doc,
            obj["namespaceSelector"],
            (*path, "namespaceSelector"),
            default_source=SOURCE_K8S,
            key_map=NAMESPACE_SELECTOR_KEYS,
        )
        selector = pods.with_requirements(*ns_sel.requirements)
        if not selector.has_key(POD_NAMESPACE_LABEL):
            selector = selector.with_requirements(any_namespace_requirement())
    else:
        selector = pods.with_requirements(namespace_requirement(namespace))
    return PeerSelector.endpoints(selector)


def _k8s_rule(doc: _Doc, raw: object, path: Path, direction: Direction, namespace: str) -> Rule:
    obj = _mapping(doc, {} if raw is None else raw, path)
    peer_field = "from" if direction is Direction.INGRESS else "to"
    _check_fields(doc, obj, path, frozenset({peer_field, "ports"}))
    peers = [
        _k8s_peer(doc, item, (*path, peer_field, i), namespace)
        for i, item in enumerate(_list(doc, obj.get(peer_field), (*path, peer_field)))
    ]
    if not peers:
        peers = [PeerSelector.any()]
    ports = [
        _port_rule(doc, item, (*path, "ports", i), k8s=True, namespace_default=Protocol.TCP)
        for i, item in enumerate(_list(doc, obj.get("ports"), (*path, "ports")))
    ]
    return Rule(
        direction=direction,
        action=Action.ALLOW,
        peers=_dedup(peers),
        ports=tuple(dict.fromkeys(ports)),
        path=format_path(path),
    )


def _load_k8s(doc: _Doc, obj: Mapping[str, Any], base: Path) -> Policy:
    _check_fields(doc, obj, base, frozenset({"apiVersion", "kind", "metadata", "spec", "status"}))
    meta = _metadata(doc, obj.get("metadata"), (*base, "metadata"), clusterwide=False)
    spath = (*base, "spec")
    if obj.get("spec") is None:
        doc.fail(spath, "required")
    spec = _mapping(doc, obj["spec"], spath)
    _check_fields(doc, spec, spath, frozenset({"podSelector", "policyTypes", "ingress", "egress"}))
    if "podSelector" not in spec:
        doc.fail((*spath, "podSelector"), "required (use {} to select every pod)")
    subject = subject_selector(
        _selector(doc, spec["podSelector"], (*spath, "podSelector"), default_source=SOURCE_K8S)
    )
    ingress_raw = _list(doc, spec.get("ingress"), (*spath, "ingress"))
    egress_raw = _list(doc, spec.get("egress"), (*spath, "egress"))
    types: set[Direction] = set()
    if spec.get("policyTypes") is None:
        types.add(Direction.INGRESS)
        if egress_raw:
            types.add(Direction.EGRESS)
    else:
        for i, item in enumerate(_list(doc, spec["policyTypes"], (*spath, "policyTypes"))):
            if item == "Ingress":
                types.add(Direction.INGRESS)
            elif item == "Egress":
                types.add(Direction.EGRESS)
            else:
                doc.fail(
                    (*spath, "policyTypes", i),
                    f"unknown policy type {item!r} (want Ingress or Egress)",
                )
    rules: list[Rule] = []
    for section, direction, items in (
        ("ingress", Direction.INGRESS, ingress_raw),
        ("egress", Direction.EGRESS, egress_raw),
    ):
        parsed = [
            _k8s_rule(doc, item, (*spath, section, i), direction, meta.namespace)
            for i, item in enumerate(items)
        ]
        if direction in types:  # rules of a direction not in policyTypes have no effect
            rules.extend(parsed)
    return Policy(
        kind=PolicyKind.KNP,
        name=meta.name,
        namespace=meta.namespace,
        specs=(
            PolicySpec(
                subject=subject,
                rules=tuple(rules),
                enforce=frozenset(types),
                default_deny=frozenset(types),
                path=format_path(spath),
            ),
        ),
        labels=meta.labels,
        revision=meta.revision,
        uid=meta.uid,
        filename=doc.filename,
        document_index=doc.index,
        document=copy.deepcopy(dict(obj)),
    )


# --------------------------------------------------------------------------- entry points


def _load_object(doc: _Doc, raw: object, base: Path) -> Policy:
    obj = _mapping(doc, raw, base, "a policy mapping")
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    if kind in (PolicyKind.CNP, PolicyKind.CCNP):
        if api != CILIUM_API:
            doc.fail((*base, "apiVersion"), f"want {CILIUM_API} for {kind}, got {api!r}")
        return _load_cilium(doc, obj, base, PolicyKind(kind))
    if kind == PolicyKind.KNP:
        if api != K8S_API:
            doc.fail((*base, "apiVersion"), f"want {K8S_API} for NetworkPolicy, got {api!r}")
        return _load_k8s(doc, obj, base)
    if kind is None:
        doc.fail((*base, "kind"), "required")
    doc.fail(
        (*base, "kind"),
        f"unsupported kind {kind!r} (want CiliumNetworkPolicy, "
        "CiliumClusterwideNetworkPolicy or NetworkPolicy)",
    )


def load_policies(text: str, filename: str) -> list[Policy]:
    """Every policy in ``text`` (a YAML stream), in document order.

    Raises :class:`PolicyLoadError` for the first problem found; nothing is returned then.
    Empty documents are skipped.
    """
    policies: list[Policy] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, data, node in _parse_documents(text, filename):
        if data is None:
            continue
        doc = _Doc(filename, index, node)
        found: list[tuple[Path, Policy]]
        if isinstance(data, Mapping) and data.get("kind") == "List":
            _check_fields(doc, data, (), frozenset({"apiVersion", "kind", "items", "metadata"}))
            found = [
                (("items", i), _load_object(doc, item, ("items", i)))
                for i, item in enumerate(_list(doc, data.get("items"), ("items",)))
            ]
        else:
            found = [((), _load_object(doc, data, ()))]
        for base, policy in found:
            if policy.key in seen:
                doc.fail(
                    (*base, "metadata", "name"),
                    f"duplicate {policy.kind} {policy.display_name} "
                    f"(also in document {seen[policy.key]})",
                )
            seen[policy.key] = index
            policies.append(policy)
    return policies


# --------------------------------------------------------------------------- output


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The policy as a document for ``policy get -o yaml/json``.

    A loaded policy returns (a copy of) its source document. A policy built in code is
    rendered in CiliumNetworkPolicy form from the effective model (selectors then include
    the namespace restrictions the model carries).
    """
    if policy.document is not None:
        return copy.deepcopy(dict(policy.document))
    kind = PolicyKind.CCNP if policy.kind is PolicyKind.CCNP else PolicyKind.CNP
    metadata: dict[str, Any] = {"name": policy.name}
    if policy.namespace:
        metadata["namespace"] = policy.namespace
    if policy.labels:
        metadata["labels"] = dict(policy.labels)
    specs = [_render_spec(spec) for spec in policy.specs]
    out: dict[str, Any] = {"apiVersion": CILIUM_API, "kind": str(kind), "metadata": metadata}
    if len(specs) == 1:
        out["spec"] = specs[0]
    else:
        out["specs"] = specs
    return out


def _render_spec(spec: PolicySpec) -> dict[str, Any]:
    out: dict[str, Any] = {"endpointSelector": spec.subject.to_dict()}
    for section, direction, action in _SECTIONS:
        rules = [r for r in spec.rules if r.direction is direction and r.action is action]
        if rules or (direction in spec.enforce and action is Action.ALLOW):
            out[section] = [_render_rule(r) for r in rules]
    off = [d for d in spec.enforce if d not in spec.default_deny]
    if off:
        out["enableDefaultDeny"] = {d.text: False for d in sorted(off)}
    return out


def _render_rule(rule: Rule) -> dict[str, Any]:
    ingress = rule.direction is Direction.INGRESS
    ep_field, _, cidrset_field, entity_field = _INGRESS_PEERS if ingress else _EGRESS_PEERS
    out: dict[str, Any] = {}
    for peer in rule.peers:
        if peer.kind is PeerKind.ENDPOINTS and peer.selector is not None:
            out.setdefault(ep_field, []).append(peer.selector.to_dict())
        elif peer.kind is PeerKind.CIDR and peer.cidr is not None:
            item: dict[str, Any] = {"cidr": str(peer.cidr.cidr)}
            if peer.cidr.excepts:
                item["except"] = [str(e) for e in peer.cidr.excepts]
            out.setdefault(cidrset_field, []).append(item)
        elif peer.kind is PeerKind.ENTITY and peer.entity is not None:
            out.setdefault(entity_field, []).append(peer.entity)
        elif peer.kind is PeerKind.ANY and rule.all_ports:
            out.setdefault(entity_field, []).append("all")
    if rule.ports:
        ports = []
        for port in rule.ports:
            p: dict[str, Any] = {"port": str(port.port), "protocol": port.protocol.name}
            if port.end_port is not None:
                p["endPort"] = port.end_port
            ports.append(p)
        out["toPorts"] = [{"ports": ports}]
    if rule.icmps:
        out["icmps"] = [
            {"fields": [{"family": f"IPv{i.family}", "type": i.type} for i in rule.icmps]}
        ]
    return out
