"""The validated policy model (pure, immutable).

A :class:`Policy` is one CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or Kubernetes
NetworkPolicy after validation and translation to Cilium's semantics:

* selectors are *effective* selectors: peer selectors already carry the namespace
  restriction Cilium adds (see :func:`observer.policy.selectors.scope_peer_selector`), and a
  namespaced policy's subject selector applies only in :attr:`Policy.namespace`;
* a Kubernetes NetworkPolicy becomes the equivalent Cilium rules (``from``/``to`` absent or
  empty -> any peer; ``namespaceSelector``/``podSelector`` -> namespace label selectors;
  ``ipBlock`` -> CIDR with except; ``policyTypes`` -> enforced directions);
* each :class:`PolicySpec` says which directions it puts into enforcement
  (:attr:`PolicySpec.enforce`) and in which of those it asks for default deny
  (:attr:`PolicySpec.default_deny`; only ``enableDefaultDeny: false`` turns that off).

A :class:`Rule` is one entry of ``ingress``/``ingressDeny``/``egress``/``egressDeny``: the
peers it names, the ports, and whether it allows or denies. A rule with no peers selects
nothing (Cilium's ``ingress: [{}]``: enforcement on, nothing allowed); "any peer" is the
explicit :attr:`PeerKind.ANY` (a rule with only ``toPorts``, or a Kubernetes rule without
``from``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from typing import Any

from observer.policy.selectors import LabelSelector

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Direction(IntEnum):
    """Traffic direction as seen by the selected endpoint; Cilium's policy-verdict numbers."""

    INGRESS = 1
    EGRESS = 2

    @property
    def text(self) -> str:
        return self.name.lower()


class Action(IntEnum):
    """What a policy map entry does. AUDIT = would deny, but lets the packet pass (audit mode)."""

    ALLOW = 1
    DENY = 2
    AUDIT = 3

    @property
    def is_deny(self) -> bool:
        """DENY and AUDIT both take deny precedence in lookups."""
        return self is not Action.ALLOW


class Protocol(IntEnum):
    """IP protocol numbers used in policy keys; ANY (0) = every protocol."""

    ANY = 0
    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58
    SCTP = 132

    @property
    def text(self) -> str:
        return {Protocol.ICMPV6: "ICMPv6"}.get(self, self.name)


#: What ``protocol: ANY`` expands to in Cilium (ICMP is not a port protocol).
PORT_PROTOCOLS = (Protocol.TCP, Protocol.UDP, Protocol.SCTP)


class MatchType(IntEnum):
    """Cilium's policy match types (``Flow.policy_match_type``), from the matched key."""

    NONE = 0
    L3_ONLY = 1
    L3_L4 = 2
    L4_ONLY = 3
    ALL = 4
    L3_PROTO = 5
    PROTO_ONLY = 6

    @property
    def text(self) -> str:
        """The text Hubble prints (``policy-verdict:L3-L4``)."""
        return _MATCH_TEXT[self]


_MATCH_TEXT = {
    MatchType.NONE: "none",
    MatchType.L3_ONLY: "L3-Only",
    MatchType.L3_L4: "L3-L4",
    MatchType.L4_ONLY: "L4-Only",
    MatchType.ALL: "all",
    MatchType.L3_PROTO: "L3-Proto",
    MatchType.PROTO_ONLY: "Proto-Only",
}


class PolicyKind(StrEnum):
    CNP = "CiliumNetworkPolicy"
    CCNP = "CiliumClusterwideNetworkPolicy"
    KNP = "NetworkPolicy"


class PeerKind(Enum):
    ANY = "any"
    ENDPOINTS = "endpoints"
    CIDR = "cidr"
    ENTITY = "entity"


@dataclass(frozen=True, slots=True)
class CidrRule:
    """A prefix and the sub-prefixes excluded from it."""

    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def __str__(self) -> str:
        if not self.excepts:
            return str(self.cidr)
        return f"{self.cidr} except {', '.join(str(e) for e in self.excepts)}"


@dataclass(frozen=True, slots=True)
class PeerSelector:
    """One peer of a rule: any peer, an endpoint selector, a CIDR rule or an entity."""

    kind: PeerKind
    selector: LabelSelector | None = None
    cidr: CidrRule | None = None
    entity: str | None = None

    @classmethod
    def any(cls) -> PeerSelector:
        return cls(PeerKind.ANY)

    @classmethod
    def endpoints(cls, selector: LabelSelector) -> PeerSelector:
        return cls(PeerKind.ENDPOINTS, selector=selector)

    @classmethod
    def cidr_rule(cls, cidr: IPNetwork, excepts: tuple[IPNetwork, ...] = ()) -> PeerSelector:
        return cls(PeerKind.CIDR, cidr=CidrRule(cidr, tuple(sorted(set(excepts), key=str))))

    @classmethod
    def entity_named(cls, name: str) -> PeerSelector:
        return cls(PeerKind.ENTITY, entity=name)

    def __str__(self) -> str:
        if self.kind is PeerKind.ANY:
            return "any peer"
        if self.kind is PeerKind.ENDPOINTS:
            return f"endpoints [{self.selector}]"
        if self.kind is PeerKind.CIDR:
            return f"cidr {self.cidr}"
        return f"entity {self.entity}"


@dataclass(frozen=True, slots=True)
class PortRule:
    """``port`` (0 = every port) up to ``end_port`` (inclusive) for ``protocol``."""

    port: int = 0
    end_port: int | None = None
    protocol: Protocol = Protocol.ANY

    @property
    def range(self) -> tuple[int, int]:
        if self.port == 0:
            return (0, 65535)
        return (self.port, self.end_port if self.end_port is not None else self.port)

    @property
    def protocols(self) -> tuple[Protocol, ...]:
        return PORT_PROTOCOLS if self.protocol is Protocol.ANY else (self.protocol,)

    def __str__(self) -> str:
        lo, hi = self.range
        ports = "*" if self.port == 0 else (str(lo) if lo == hi else f"{lo}-{hi}")
        return f"{ports}/{self.protocol.text}"


@dataclass(frozen=True, slots=True)
class IcmpRule:
    """An ICMP (``family`` 4) or ICMPv6 (6) message type."""

    family: int
    type: int

    @property
    def protocol(self) -> Protocol:
        return Protocol.ICMP if self.family == 4 else Protocol.ICMPV6

    def __str__(self) -> str:
        return f"{self.protocol.text} type {self.type}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ingress/egress (allow or deny) rule."""

    direction: Direction
    action: Action
    peers: tuple[PeerSelector, ...]
    ports: tuple[PortRule, ...] = ()
    icmps: tuple[IcmpRule, ...] = ()
    path: str = ""

    @property
    def all_ports(self) -> bool:
        """No L4 restriction: every protocol and port, ICMP included."""
        return not self.ports and not self.icmps

    def describe(self) -> str:
        verb = "allow" if self.action is Action.ALLOW else "deny"
        side = "from" if self.direction is Direction.INGRESS else "to"
        peers = "; ".join(str(p) for p in self.peers) or "no peer"
        if self.all_ports:
            l4 = "all ports"
        else:
            l4 = ", ".join([str(p) for p in self.ports] + [str(i) for i in self.icmps])
        return f"{self.direction.text} {verb} {side} {peers} on {l4}"


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One rule set of a policy (``spec``, or one of ``specs``) and the endpoints it selects."""

    subject: LabelSelector
    rules: tuple[Rule, ...] = ()
    enforce: frozenset[Direction] = frozenset()
    default_deny: frozenset[Direction] = frozenset()
    path: str = "spec"


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy. ``namespace`` is empty for a clusterwide policy."""

    kind: PolicyKind
    name: str
    namespace: str
    specs: tuple[PolicySpec, ...]
    labels: tuple[tuple[str, str], ...] = ()
    revision: int = 0
    uid: str = ""
    filename: str = ""
    document_index: int = 0
    #: The source document as loaded (for ``policy get -o yaml``); not part of equality.
    document: Mapping[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies a policy: (kind, namespace, name)."""
        return (str(self.kind), self.namespace, self.name)

    @property
    def display_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __str__(self) -> str:
        return f"{self.display_name} ({self.kind})"
