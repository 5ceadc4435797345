"""Policies + endpoints + identities -> per-endpoint policy map entries (pure).

Output shape (what the BPF side loads)
--------------------------------------
Per endpoint, an LPM-trie policy map modelled on Cilium's ``cilium_policy_v2``:

* key :class:`PolicyKey` = ``{remote identity (0 = any), direction, protocol (0 = any),
  destination port, port prefix length}``. In BPF: ``struct { __u32 prefixlen; __u32
  identity; __u8 direction; __u8 protocol; __be16 dport; }`` with ``prefixlen =``
  :attr:`PolicyKey.bpf_prefix_len` (identity and direction always exact, then 8 bits of
  protocol when it is not ANY, then ``port_prefix_len`` leading bits of the port). Port
  ranges are expanded into aligned port prefixes (80-81 -> 80/15); ICMP types sit in the
  port field with a full prefix, as Cilium does.
* value :class:`PolicyEntry` = ``{action (1 allow, 2 deny, 3 audit), match type (Cilium's
  numbers, derived from the key), rule id}``; the rule id indexes :attr:`CompiledPolicy.rules`,
  a table of :class:`RuleRef` (policy kind, namespace, name, revision and the rule's field
  path) from which flows name the deciding policy.
* per-endpoint flags :attr:`EndpointPolicy.ingress_enforced` / ``egress_enforced``: when a
  direction is not enforced the datapath allows without a lookup (and the map holds no
  entries of that direction); when enforced, a lookup miss is a drop (default deny).
  ``audit``: drops become AUDIT verdicts (policy audit mode).

The lookup that interprets these entries is :func:`observer.policy.trace.lookup`; the BPF
program must implement the same algorithm.

An ipcache (:attr:`CompiledPolicy.ipcache`, prefix -> identity, longest prefix wins) maps
every CIDR named by a policy to a CIDR identity (node-local range from 2**24), ``0.0.0.0/0``
and ``::/0`` to world (2), host addresses to host (1) and endpoint addresses to their
endpoint's identity. A CIDR rule selects the CIDR identities of the prefixes inside it and
outside its excepts; CIDR rules never select endpoint, host or other cluster identities (as
in Cilium). A ``/0`` rule (without a ``/0`` except) also selects world (2); since world is
one identity for both families, ``0.0.0.0/0`` then also admits IPv6 addresses that fall in
no prefix a policy names (Cilium splits world into world-ipv4/-ipv6 only in dual-stack mode).

Deny handling: deny beats allow. Within the entries of one remote identity (and across all
of them for the wildcard identity 0) an allow entry whose key is covered by a deny entry's
key is removed, so that a longest-prefix lookup can never find an allow that a broader deny
should have overridden; denies found by the other lookup win at runtime.

Incremental compilation: pass ``previous=`` the last result. Rule ids and CIDR identities
keep their numbers; selector results are updated only for identities that appeared,
disappeared or changed labels; the entries of an endpoint group (endpoints with the same
namespace and labels share one entry map) are rebuilt only when the rules selecting it or
the peers of those rules changed. :func:`diff` then lists the map writes needed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from observer.datapath.labels import SOURCE_K8S, Label, LabelSet
from observer.errors import PolicyError
from observer.policy.entities import (
    CIDR_IDENTITY_BASE,
    WILDCARD_IDENTITY,
    ReservedIdentity,
    cidr_identity_labels,
    entity_identities,
    identity_name,
    is_endpoint_identity,
    reserved_labels,
)
from observer.policy.model import (
    Action,
    CidrRule,
    Direction,
    IPNetwork,
    MatchType,
    PeerKind,
    PeerSelector,
    Policy,
    PolicySpec,
    Protocol,
    Rule,
)
from observer.policy.selectors import POD_NAMESPACE_LABEL, LabelIndex

LPM_PROTO_BITS = 8
LPM_FULL_BITS = 24
#: Bits of a BPF policy key before protocol/port: 32 identity + 8 direction.
BPF_KEY_EXACT_BITS = 40

_WORLD_PREFIXES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("0.0.0.0/0"),
    ipaddress.ip_network("::/0"),
)


# --------------------------------------------------------------------------- map records


@dataclass(frozen=True, slots=True, order=True)
class PolicyKey:
    """One policy map key. ``protocol == 0`` means any protocol and then port and prefix are 0;
    otherwise the first ``port_prefix_len`` bits of ``port`` must match (0 = any port)."""

    identity: int
    direction: Direction
    protocol: int = 0
    port: int = 0
    port_prefix_len: int = 0
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_hash",
            hash(
                (self.identity, int(self.direction), self.protocol, self.port, self.port_prefix_len)
            ),
        )

    def __hash__(self) -> int:
        return self._hash

    @property
    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.identity, int(self.direction), self.protocol, self.port, self.port_prefix_len)

    @property
    def lpm_prefix_len(self) -> int:
        """Prefix over (protocol, port): 0 any, 8 protocol only, 9-24 protocol and port bits."""
        return 0 if self.protocol == 0 else LPM_PROTO_BITS + self.port_prefix_len

    @property
    def bpf_prefix_len(self) -> int:
        return BPF_KEY_EXACT_BITS + self.lpm_prefix_len

    @property
    def bits(self) -> int:
        """Protocol and port as one 24-bit value (the LPM part of the key)."""
        return (self.protocol << 16) | self.port

    @property
    def port_range(self) -> tuple[int, int]:
        if self.protocol == 0 or self.port_prefix_len == 0:
            return (0, 65535)
        return (self.port, self.port + (1 << (16 - self.port_prefix_len)) - 1)

    @property
    def match_type(self) -> MatchType:
        """Cilium's match type for an entry with this key (bpf/lib/policy.h)."""
        plen = self.lpm_prefix_len
        if self.identity != WILDCARD_IDENTITY:
            if plen > LPM_PROTO_BITS:
                return MatchType.L3_L4
            return MatchType.L3_PROTO if plen > 0 else MatchType.L3_ONLY
        if plen == 0:
            return MatchType.ALL
        return MatchType.PROTO_ONLY if plen <= LPM_PROTO_BITS else MatchType.L4_ONLY

    def covers(self, other: PolicyKey) -> bool:
        """Whether every packet matching ``other`` (same identity) also matches this key."""
        plen = self.lpm_prefix_len
        if plen > other.lpm_prefix_len:
            return False
        shift = LPM_FULL_BITS - plen
        return (other.bits >> shift) == (self.bits >> shift)

    def matches(self, protocol: int, port: int) -> bool:
        """Whether a packet's (protocol, destination port or ICMP type) falls under the key."""
        plen = self.lpm_prefix_len
        shift = LPM_FULL_BITS - plen
        return (((protocol << 16) | port) >> shift) == (self.bits >> shift)

    def l4_text(self) -> str:
        if self.protocol == 0:
            return "ANY"
        try:
            proto = Protocol(self.protocol).text
        except ValueError:
            proto = str(self.protocol)
        if self.protocol in (Protocol.ICMP, Protocol.ICMPV6):
            return f"{proto} type {self.port}" if self.port_prefix_len else proto
        lo, hi = self.port_range
        if self.port_prefix_len == 0:
            return f"{proto}/*"
        return f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}"

    def __str__(self) -> str:
        return f"{self.direction.text} {identity_name(self.identity)} {self.l4_text()}"


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    action: Action
    match_type: MatchType
    rule_id: int


@dataclass(frozen=True, slots=True)
class RuleRef:
    """What a rule id stands for. ``section`` is the rule's field path in the policy
    (``spec.ingress[0]``); synthetic entries have an empty ``kind``."""

    kind: str
    namespace: str
    name: str
    revision: int = 0
    section: str = ""
    uid: str = ""

    @property
    def display(self) -> str:
        name = f"{self.namespace}/{self.name}" if self.namespace else self.name
        if not self.kind:
            return name
        where = f" {self.section}" if self.section else ""
        return f"{name} ({self.kind}){where}"

    def policy_labels(self) -> list[str]:
        """Cilium's policy labels, the ``labels`` of Hubble's ``flow.Policy``."""
        if not self.kind:
            return [f"reserved:{self.name}"]
        labels = [
            f"k8s:io.cilium.k8s.policy.derived-from={self.kind}",
            f"k8s:io.cilium.k8s.policy.name={self.name}",
        ]
        if self.namespace:
            labels.append(f"k8s:io.cilium.k8s.policy.namespace={self.namespace}")
        if self.uid:
            labels.append(f"k8s:io.cilium.k8s.policy.uid={self.uid}")
        return labels

    def to_flow_policy(self) -> dict[str, object]:
        """A ``flow.Policy`` in canonical dict form (field order of the proto)."""
        out: dict[str, object] = {"name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        out["labels"] = self.policy_labels()
        if self.revision:
            out["revision"] = str(self.revision)
        if self.kind:
            out["kind"] = self.kind
        return out


LOCALHOST_RULE = RuleRef(kind="", namespace="", name="allow-localhost-ingress")


@dataclass(frozen=True, slots=True)
class EndpointView:
    """What the compiler needs to know about a local endpoint."""

    id: int
    identity: int
    namespace: str
    labels: LabelSet = field(default_factory=LabelSet)
    ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Tolerate label strings and any iterable of addresses from untyped callers.
        labels: object = self.labels
        if not isinstance(labels, LabelSet):
            object.__setattr__(self, "labels", LabelSet.parse(labels))  # type: ignore[arg-type]
        if not isinstance(self.ips, tuple):
            object.__setattr__(self, "ips", tuple(self.ips))

    @classmethod
    def create(
        cls,
        id: int,
        identity: int,
        namespace: str,
        labels: Iterable[str] | LabelSet = (),
        ips: Iterable[str] = (),
    ) -> EndpointView:
        label_set = labels if isinstance(labels, LabelSet) else LabelSet.parse(labels)
        return cls(id, identity, namespace, label_set, tuple(ips))


@dataclass(frozen=True, slots=True)
class CompileOptions:
    #: Allow ingress from the local host (Cilium's default ``allow-localhost``).
    allow_localhost: bool = True
    #: Policy audit mode: would-be drops pass and are reported as AUDIT.
    audit_mode: bool = False
    #: Addresses of the host, mapped to identity 1 in the ipcache.
    host_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    endpoint_id: int
    identity: int
    namespace: str
    ingress_enforced: bool
    egress_enforced: bool
    audit: bool
    entries: Mapping[PolicyKey, PolicyEntry]
    #: Policies that put the endpoint into enforcement, per direction (display names).
    ingress_policies: tuple[str, ...] = ()
    egress_policies: tuple[str, ...] = ()

    def enforced(self, direction: Direction) -> bool:
        return self.ingress_enforced if direction is Direction.INGRESS else self.egress_enforced

    def policies(self, direction: Direction) -> tuple[str, ...]:
        return self.ingress_policies if direction is Direction.INGRESS else self.egress_policies


@dataclass(frozen=True, slots=True)
class _Subject:
    """The compiled policy of every endpoint selected by exactly the same specs."""

    signature: tuple[object, ...]
    ingress_enforced: bool
    egress_enforced: bool
    entries: Mapping[PolicyKey, PolicyEntry]
    ingress_policies: tuple[str, ...]
    egress_policies: tuple[str, ...]


_KeyTuple = tuple[int, int, int, int, int]
_SpecKey = tuple[tuple[tuple[str, str, str], str], ...]


@dataclass(frozen=True, slots=True)
class _State:
    """What an incremental compile reuses from the previous one."""

    options: CompileOptions
    rule_ids: Mapping[tuple[str, str, str, str], int]
    next_rule_id: int
    cidr_ids: Mapping[IPNetwork, int]
    next_cidr_id: int
    universe: Mapping[int, LabelSet]
    indexes: Mapping[LabelSet, LabelIndex]
    selections: Mapping[PeerSelector, frozenset[int]]
    #: Compiled subjects by the (policy key, spec path) list of the specs selecting them.
    subjects: Mapping[_SpecKey, _Subject]
    #: Interned keys and entries, so unchanged ones are the same objects across compiles.
    keys: Mapping[_KeyTuple, PolicyKey]
    entries: Mapping[tuple[Action, MatchType, int], PolicyEntry]
    #: Per namespace: the specs that may select its endpoints (policy key, path, selector).
    candidates: Mapping[str, tuple[object, ...]]
    #: Per (namespace, labels): which of the namespace's candidate specs select it.
    matches: Mapping[tuple[str, LabelSet], tuple[int, ...]]
    #: Parse caches: label strings -> LabelSet, address text -> network.
    parsed_labels: Mapping[tuple[str, ...], LabelSet]
    parsed_nets: Mapping[str, IPNetwork]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    endpoints: Mapping[int, EndpointPolicy]
    rules: Mapping[int, RuleRef]
    ipcache: Mapping[IPNetwork, int]
    #: Labels of every identity the compiler knew: reserved, endpoint and CIDR identities.
    identities: Mapping[int, LabelSet]
    options: CompileOptions
    state: _State = field(compare=False, repr=False)

    #: Addresses of each local endpoint (from EndpointView.ips).
    endpoint_ips: Mapping[int, frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]] = field(
        default_factory=dict, compare=False
    )

    def total_entries(self) -> int:
        return sum(len(ep.entries) for ep in self.endpoints.values())

    def resolve_ip(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
        """The identity of an address: longest matching ipcache prefix (world if none)."""
        return ipcache_lookup(self.ipcache, ip)

    def endpoint_for_ip(
        self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> int | None:
        """The local endpoint owning ``ip``, if any (exact address match)."""
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        for ep_id, addrs in self.endpoint_ips.items():
            if addr in addrs:
                return ep_id
        return None


def ipcache_lookup(
    ipcache: Mapping[IPNetwork, int], ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address
) -> int:
    """Longest-prefix match of ``ip`` in ``ipcache``; world (2) when nothing matches."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    lengths = sorted(
        {net.prefixlen for net in ipcache if net.version == addr.version}, reverse=True
    )
    value = int(addr)
    bits = addr.max_prefixlen
    network_class: type[IPNetwork] = (
        ipaddress.IPv4Network if addr.version == 4 else ipaddress.IPv6Network
    )
    for plen in lengths:
        mask = ((1 << plen) - 1) << (bits - plen)
        net = network_class((value & mask, plen))
        found = ipcache.get(net)
        if found is not None:
            return found
    return int(ReservedIdentity.WORLD)


# --------------------------------------------------------------------------- port keys


def port_prefixes(lo: int, hi: int) -> list[tuple[int, int]]:
    """The fewest aligned (port, prefix length) blocks covering ``lo..hi`` exactly."""
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"bad port range {lo}-{hi}")
    out: list[tuple[int, int]] = []
    while lo <= hi:
        size = (lo & -lo) if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, 17 - size.bit_length()))
        lo += size
    return out


def rule_port_keys(rule: Rule) -> tuple[tuple[int, int, int], ...]:
    """(protocol, port, port prefix length) triples a rule's L4 part expands to."""
    if rule.all_ports:
        return ((0, 0, 0),)
    out: dict[tuple[int, int, int], None] = {}
    for port_rule in rule.ports:
        lo, hi = port_rule.range
        blocks = port_prefixes(lo, hi)
        for proto in port_rule.protocols:
            for port, plen in blocks:
                out[(int(proto), port, plen)] = None
    for icmp in rule.icmps:
        out[(int(icmp.protocol), icmp.type, 16)] = None
    return tuple(out)


# --------------------------------------------------------------------------- compile


def _rule_key(policy: Policy, section: str) -> tuple[str, str, str, str]:
    return (str(policy.kind), policy.namespace, policy.name, section)


def _default_allow_section(spec: PolicySpec) -> str:
    return f"{spec.path}.enableDefaultDeny"


def _ns_label(namespace: str) -> Label:
    return Label(SOURCE_K8S, POD_NAMESPACE_LABEL, namespace)


def _with_namespace(labels: LabelSet, namespace: str) -> LabelSet:
    if not namespace or labels.get(POD_NAMESPACE_LABEL, SOURCE_K8S) is not None:
        return labels
    return labels.merged([_ns_label(namespace)])


def _cidr_selection(rule: CidrRule, cidr_ids: Mapping[IPNetwork, int]) -> frozenset[int]:
    out: set[int] = set()
    for net, ident in cidr_ids.items():
        if net.version != rule.cidr.version or not net.subnet_of(rule.cidr):  # type: ignore[arg-type]
            continue
        if any(
            e.version == net.version and net.subnet_of(e)  # type: ignore[arg-type]
            for e in rule.excepts
        ):
            continue
        out.add(ident)
    if rule.cidr.prefixlen == 0 and not any(e.prefixlen == 0 for e in rule.excepts):
        out.add(int(ReservedIdentity.WORLD))
    return frozenset(out)


class _Builder:
    """One compilation run (mutable scratch space; the result is immutable)."""

    def __init__(
        self,
        policies: Sequence[Policy],
        endpoints: Sequence[EndpointView],
        identities: Mapping[int, Iterable[str] | LabelSet],
        options: CompileOptions,
        previous: CompiledPolicy | None,
    ) -> None:
        self.options = options
        self.prev = previous.state if previous is not None else None
        self.policies = sorted(policies, key=lambda p: p.key)
        seen: set[tuple[str, str, str]] = set()
        for p in self.policies:
            if p.key in seen:
                raise PolicyError(f"duplicate policy {p} given to the compiler")
            seen.add(p.key)
        self.endpoints = list(endpoints)
        ids = [ep.id for ep in self.endpoints]
        if len(set(ids)) != len(ids):
            raise PolicyError("duplicate endpoint id given to the compiler")
        self.identities_in = identities
        self.indexes: dict[LabelSet, LabelIndex] = {}
        self.port_key_cache: dict[int, tuple[tuple[int, int, int], ...]] = {}
        self.keys: dict[_KeyTuple, PolicyKey] = {}
        self.entry_cache: dict[tuple[Action, MatchType, int], PolicyEntry] = {}
        self.candidate_sigs: dict[str, tuple[object, ...]] = {}
        self.matches: dict[tuple[str, LabelSet], tuple[int, ...]] = {}
        self.parsed_labels: dict[tuple[str, ...], LabelSet] = {}
        self.parsed_nets: dict[str, IPNetwork] = {}

    # -- ids ---------------------------------------------------------------
    def assign_rule_ids(self) -> None:
        prev_ids = self.prev.rule_ids if self.prev else {}
        next_id = self.prev.next_rule_id if self.prev else 1
        refs: dict[tuple[str, str, str, str], RuleRef] = {}
        for policy in self.policies:
            for spec in policy.specs:
                sections = [rule.path for rule in spec.rules]
                if spec.enforce - spec.default_deny:
                    sections.append(_default_allow_section(spec))
                for section in sections:
                    refs[_rule_key(policy, section)] = RuleRef(
                        str(policy.kind),
                        policy.namespace,
                        policy.name,
                        policy.revision,
                        section,
                        policy.uid,
                    )
        if self.options.allow_localhost:
            refs[("", "", LOCALHOST_RULE.name, "")] = LOCALHOST_RULE
        rule_ids: dict[tuple[str, str, str, str], int] = {}
        for key in refs:
            if key in prev_ids:
                rule_ids[key] = prev_ids[key]
        for key in refs:
            if key not in rule_ids:
                rule_ids[key] = next_id
                next_id += 1
        self.rule_ids = rule_ids
        self.next_rule_id = next_id
        self.rules = {rule_ids[key]: ref for key, ref in refs.items()}

    def assign_cidr_ids(self) -> None:
        prefixes: set[IPNetwork] = set()
        for policy in self.policies:
            for spec in policy.specs:
                for rule in spec.rules:
                    for peer in rule.peers:
                        if peer.kind is PeerKind.CIDR and peer.cidr is not None:
                            prefixes.add(peer.cidr.cidr)
                            prefixes.update(peer.cidr.excepts)
        prefixes = {p for p in prefixes if p.prefixlen > 0}
        prev_ids = self.prev.cidr_ids if self.prev else {}
        next_id = self.prev.next_cidr_id if self.prev else CIDR_IDENTITY_BASE
        cidr_ids: dict[IPNetwork, int] = {}
        for net in sorted(prefixes, key=lambda n: (n.version, n.network_address, n.prefixlen)):
            if net in prev_ids:
                cidr_ids[net] = prev_ids[net]
            else:
                cidr_ids[net] = next_id
                next_id += 1
        self.cidr_ids = cidr_ids
        self.next_cidr_id = next_id

    # -- identities --------------------------------------------------------
    def build_universe(self) -> None:
        universe: dict[int, LabelSet] = dict(reserved_labels())
        prev_parsed = self.prev.parsed_labels if self.prev is not None else {}
        for ident, labels in self.identities_in.items():
            if isinstance(labels, LabelSet):
                universe[ident] = labels
                continue
            texts = tuple(labels)
            parsed = self.parsed_labels.get(texts) or prev_parsed.get(texts)
            if parsed is None:
                parsed = LabelSet.parse(texts)
            self.parsed_labels[texts] = parsed
            universe[ident] = parsed
        for ep in self.endpoints:
            base = universe.get(ep.identity, ep.labels)
            universe[ep.identity] = _with_namespace(base, ep.namespace)
        for net, ident in self.cidr_ids.items():
            universe[ident] = cidr_identity_labels(net)
        if self.prev is not None:
            # Keep the previous LabelSet objects where equal (cheap comparisons later).
            for ident, labels in universe.items():
                old = self.prev.universe.get(ident)
                if old is not None and old == labels:
                    universe[ident] = old
        self.universe = universe
        self.endpoint_identities = frozenset(i for i in universe if is_endpoint_identity(i))
        self.cidr_by_id = {ident: net for net, ident in self.cidr_ids.items()}

    def index(self, labels: LabelSet) -> LabelIndex:
        idx = self.indexes.get(labels)
        if idx is None:
            idx = self.prev.indexes.get(labels) if self.prev else None
            if idx is None:
                idx = LabelIndex(labels)
            self.indexes[labels] = idx
        return idx

    # -- selections --------------------------------------------------------
    def select_peers(self) -> None:
        prev_sel = self.prev.selections if self.prev else {}
        prev_universe = self.prev.universe if self.prev else {}
        changed = [i for i, labels in self.universe.items() if prev_universe.get(i) is not labels]
        removed = {i for i in prev_universe if i not in self.universe}
        stale = removed | set(changed)
        selections: dict[PeerSelector, frozenset[int]] = {}
        for policy in self.policies:
            for spec in policy.specs:
                for rule in spec.rules:
                    for peer in rule.peers:
                        if peer in selections:
                            continue
                        selections[peer] = self._select(peer, prev_sel.get(peer), changed, stale)
        self.selections = selections

    def _select(
        self,
        peer: PeerSelector,
        previous: frozenset[int] | None,
        changed: list[int],
        stale: set[int],
    ) -> frozenset[int]:
        result: frozenset[int]
        if peer.kind is PeerKind.ANY:
            result = frozenset({WILDCARD_IDENTITY})
        elif peer.kind is PeerKind.ENDPOINTS:
            selector = peer.selector
            assert selector is not None
            if previous is not None:
                if not stale:
                    return previous
                kept = previous - stale
                added = {i for i in changed if selector.matches(self.index(self.universe[i]))}
                result = kept | added
            else:
                result = frozenset(
                    i for i, labels in self.universe.items() if selector.matches(self.index(labels))
                )
        elif peer.kind is PeerKind.CIDR:
            assert peer.cidr is not None
            result = _cidr_selection(peer.cidr, self.cidr_ids)
        else:
            assert peer.entity is not None
            result = entity_identities(
                peer.entity,
                endpoint_identities=self.endpoint_identities,
                cidr_identities=self.cidr_by_id,
            )
        if previous is not None and previous == result:
            return previous
        return frozenset(result)

    # -- subjects ----------------------------------------------------------
    def compile_subjects(self) -> None:
        by_namespace: dict[str, list[tuple[Policy, PolicySpec]]] = {}
        clusterwide: list[tuple[Policy, PolicySpec]] = []
        for policy in self.policies:
            for spec in policy.specs:
                if policy.namespace:
                    by_namespace.setdefault(policy.namespace, []).append((policy, spec))
                else:
                    clusterwide.append((policy, spec))
        same_options = self.prev is not None and self.prev.options == self.options
        prev_subjects: Mapping[_SpecKey, _Subject] = (
            self.prev.subjects if self.prev is not None and same_options else {}
        )
        subjects: dict[_SpecKey, _Subject] = {}
        by_labels: dict[tuple[str, LabelSet], _Subject] = {}
        views: dict[int, EndpointPolicy] = {}
        prev_candidates = self.prev.candidates if self.prev is not None else {}
        prev_matches = self.prev.matches if self.prev is not None else {}
        ns_candidates: dict[str, list[tuple[Policy, PolicySpec]]] = {}
        for ep in self.endpoints:
            labels = _with_namespace(ep.labels, ep.namespace)
            subject = by_labels.get((ep.namespace, labels))
            if subject is None:
                candidates = ns_candidates.get(ep.namespace)
                if candidates is None:
                    candidates = by_namespace.get(ep.namespace, []) + clusterwide
                    ns_candidates[ep.namespace] = candidates
                    self.candidate_sigs[ep.namespace] = tuple(
                        (p.key, s.path, s.subject) for p, s in candidates
                    )
                group = (ep.namespace, labels)
                # The specs that select a label set change only when the namespace's
                # candidate specs (or their selectors) do.
                found = prev_matches.get(group)
                if (
                    found is None
                    or prev_candidates.get(ep.namespace) != self.candidate_sigs[ep.namespace]
                ):
                    idx = self.index(labels)
                    found = tuple(
                        i for i, (_, s) in enumerate(candidates) if s.subject.matches(idx)
                    )
                self.matches[group] = found
                selecting = [candidates[i] for i in found]
                spec_key = tuple((p.key, s.path) for p, s in selecting)
                subject = subjects.get(spec_key)
                if subject is None:
                    signature = self._signature(selecting)
                    old = prev_subjects.get(spec_key)
                    if old is not None and old.signature == signature:
                        subject = old
                    else:
                        subject = self._compile_subject(selecting, signature)
                    subjects[spec_key] = subject
                by_labels[(ep.namespace, labels)] = subject
            views[ep.id] = EndpointPolicy(
                endpoint_id=ep.id,
                identity=ep.identity,
                namespace=ep.namespace,
                ingress_enforced=subject.ingress_enforced,
                egress_enforced=subject.egress_enforced,
                audit=self.options.audit_mode,
                entries=subject.entries,
                ingress_policies=subject.ingress_policies,
                egress_policies=subject.egress_policies,
            )
        self.subjects = subjects
        self.views = views

    def _signature(self, selecting: list[tuple[Policy, PolicySpec]]) -> tuple[object, ...]:
        parts: list[object] = []
        for policy, spec in selecting:
            parts.append((policy.key, spec.path, spec.enforce, spec.default_deny))
            if spec.enforce - spec.default_deny:
                parts.append(self.rule_ids[_rule_key(policy, _default_allow_section(spec))])
            for rule in spec.rules:
                parts.append(self.rule_ids[_rule_key(policy, rule.path)])
                parts.append(rule)
                parts.append(tuple(self.selections[p] for p in rule.peers))
        return tuple(parts)

    def _policy_key(self, t: _KeyTuple) -> PolicyKey:
        key = self.keys.get(t)
        if key is None:
            key = self.prev.keys.get(t) if self.prev is not None else None
            if key is None:
                key = PolicyKey(t[0], _DIRECTIONS[t[1]], t[2], t[3], t[4])
            self.keys[t] = key
        return key

    def _entry(self, action: Action, match: MatchType, rule_id: int) -> PolicyEntry:
        t = (action, match, rule_id)
        entry = self.entry_cache.get(t)
        if entry is None:
            entry = self.prev.entries.get(t) if self.prev is not None else None
            if entry is None:
                entry = PolicyEntry(action, match, rule_id)
            self.entry_cache[t] = entry
        return entry

    def _compile_subject(
        self, selecting: list[tuple[Policy, PolicySpec]], signature: tuple[object, ...]
    ) -> _Subject:
        cand: dict[_KeyTuple, tuple[Action, int]] = {}
        enforced: dict[Direction, tuple[str, ...]] = {}
        deny = Action.DENY
        for direction in (Direction.INGRESS, Direction.EGRESS):
            specs = [(p, s) for p, s in selecting if direction in s.enforce]
            if not specs:
                continue
            enforced[direction] = tuple(dict.fromkeys(p.display_name for p, _ in specs))
            d = int(direction)
            for policy, spec in specs:
                for rule in spec.rules:
                    if rule.direction is not direction:
                        continue
                    rule_id = self.rule_ids[_rule_key(policy, rule.path)]
                    port_keys = self.port_key_cache.get(id(rule))
                    if port_keys is None:
                        port_keys = rule_port_keys(rule)
                        self.port_key_cache[id(rule)] = port_keys
                    idents: set[int] = set()
                    for peer in rule.peers:
                        idents |= self.selections[peer]
                    action = rule.action
                    value = (action, rule_id)
                    is_deny = action is deny
                    # Deny beats allow at one key; between equals the lower rule id is kept.
                    for ident in idents:
                        for proto, port, plen in port_keys:
                            t = (ident, d, proto, port, plen)
                            old = cand.get(t)
                            if (
                                old is None
                                or (is_deny and old[0] is not deny)
                                or (action is old[0] and rule_id < old[1])
                            ):
                                cand[t] = value
            # Synthetic entries never displace a policy's own entry at the same key.
            if not any(direction in s.default_deny for _, s in specs):
                policy, spec = specs[0]
                rule_id = self.rule_ids[_rule_key(policy, _default_allow_section(spec))]
                cand.setdefault((WILDCARD_IDENTITY, d, 0, 0, 0), (Action.ALLOW, rule_id))
            if direction is Direction.INGRESS and self.options.allow_localhost:
                rule_id = self.rule_ids[("", "", LOCALHOST_RULE.name, "")]
                host = int(ReservedIdentity.HOST)
                cand.setdefault((host, d, 0, 0, 0), (Action.ALLOW, rule_id))
        _resolve_denies(cand)
        audit = self.options.audit_mode
        entries: dict[PolicyKey, PolicyEntry] = {}
        for t in sorted(cand):
            action, rule_id = cand[t]
            if audit and action is deny:
                action = Action.AUDIT
            entries[self._policy_key(t)] = self._entry(action, _match_type(t), rule_id)
        return _Subject(
            signature=signature,
            ingress_enforced=Direction.INGRESS in enforced,
            egress_enforced=Direction.EGRESS in enforced,
            entries=MappingProxyType(entries),
            ingress_policies=enforced.get(Direction.INGRESS, ()),
            egress_policies=enforced.get(Direction.EGRESS, ()),
        )

    # -- output ------------------------------------------------------------
    def _net(self, text: str) -> IPNetwork:
        net = self.parsed_nets.get(text)
        if net is None:
            net = self.prev.parsed_nets.get(text) if self.prev is not None else None
            if net is None:
                net = ipaddress.ip_network(text)
            self.parsed_nets[text] = net
        return net

    def ipcache(self) -> dict[IPNetwork, int]:
        cache: dict[IPNetwork, int] = {net: int(ReservedIdentity.WORLD) for net in _WORLD_PREFIXES}
        cache.update(self.cidr_ids)
        for ip in self.options.host_ips:
            cache[self._net(ip)] = int(ReservedIdentity.HOST)
        for ep in self.endpoints:
            for ip in ep.ips:
                cache[self._net(ip)] = ep.identity
        return cache

    def result(self) -> CompiledPolicy:
        state = _State(
            options=self.options,
            rule_ids=MappingProxyType(self.rule_ids),
            next_rule_id=self.next_rule_id,
            cidr_ids=MappingProxyType(self.cidr_ids),
            next_cidr_id=self.next_cidr_id,
            universe=MappingProxyType(self.universe),
            indexes=MappingProxyType(self.indexes),
            selections=MappingProxyType(self.selections),
            subjects=MappingProxyType(self.subjects),
            keys=MappingProxyType(self._live_keys()),
            entries=MappingProxyType(self.entry_cache),
            candidates=MappingProxyType(self.candidate_sigs),
            matches=MappingProxyType(self.matches),
            parsed_labels=MappingProxyType(self.parsed_labels),
            parsed_nets=MappingProxyType(self.parsed_nets),
        )
        ipcache = self.ipcache()
        endpoint_ips = {
            ep.id: frozenset(self._net(ip).network_address for ip in ep.ips)
            for ep in self.endpoints
            if ep.ips
        }
        return CompiledPolicy(
            endpoints=MappingProxyType(self.views),
            rules=MappingProxyType(dict(sorted(self.rules.items()))),
            ipcache=MappingProxyType(ipcache),
            identities=MappingProxyType(self.universe),
            options=self.options,
            state=state,
            endpoint_ips=MappingProxyType(endpoint_ips),
        )

    def _live_keys(self) -> dict[_KeyTuple, PolicyKey]:
        """Interned keys of every subject in use (reused subjects keep theirs)."""
        live: dict[_KeyTuple, PolicyKey] = {}
        for subject in self.subjects.values():
            for key in subject.entries:
                live[key.as_tuple] = key
        return live


_DIRECTIONS = {int(d): d for d in Direction}


def _match_type(t: _KeyTuple) -> MatchType:
    """Cilium's match type of a key (see PolicyKey.match_type), on the tuple form."""
    ident, _, proto, _, plen = t
    lpm = 0 if proto == 0 else LPM_PROTO_BITS + plen
    if ident != WILDCARD_IDENTITY:
        if lpm > LPM_PROTO_BITS:
            return MatchType.L3_L4
        return MatchType.L3_PROTO if lpm > 0 else MatchType.L3_ONLY
    if lpm == 0:
        return MatchType.ALL
    return MatchType.PROTO_ONLY if lpm <= LPM_PROTO_BITS else MatchType.L4_ONLY


def _lpm_bits(t: _KeyTuple) -> tuple[int, int]:
    proto = t[2]
    return (0 if proto == 0 else LPM_PROTO_BITS + t[4]), (proto << 16) | t[3]


def _resolve_denies(cand: dict[_KeyTuple, tuple[Action, int]]) -> None:
    """Remove allow entries that a deny entry of the same direction covers (same identity,
    or any identity for a wildcard-identity deny): a longest-prefix lookup must not find
    them first."""
    denies = [t for t, (a, _) in cand.items() if a is Action.DENY]
    if not denies:
        return
    allows: dict[tuple[int, int], list[_KeyTuple]] = {}
    for t, (a, _) in cand.items():
        if a is not Action.DENY:
            allows.setdefault((t[0], t[1]), []).append(t)
    doomed: set[_KeyTuple] = set()
    for deny in denies:
        d_len, d_bits = _lpm_bits(deny)
        shift = LPM_FULL_BITS - d_len
        if deny[0] == WILDCARD_IDENTITY:
            groups = [g for (_, direction), g in allows.items() if direction == deny[1]]
        else:
            groups = [allows.get((deny[0], deny[1]), [])]
        for group in groups:
            for allow in group:
                a_len, a_bits = _lpm_bits(allow)
                if a_len >= d_len and (a_bits >> shift) == (d_bits >> shift):
                    doomed.add(allow)
    for t in doomed:
        del cand[t]


def compile_policies(
    policies: Sequence[Policy],
    endpoints: Sequence[EndpointView],
    identities: Mapping[int, Iterable[str] | LabelSet],
    *,
    options: CompileOptions | None = None,
    previous: CompiledPolicy | None = None,
) -> CompiledPolicy:
    """Compile ``policies`` for the local ``endpoints``.

    ``identities`` maps every known identity (local and remote endpoints) to its labels, as
    strings (``k8s:app=web``) or a LabelSet; reserved identities are added by the compiler,
    and an endpoint's own labels (plus its namespace label) are used when its identity is
    missing. ``previous`` enables incremental reuse (see the module docstring); the result
    is the same as a fresh compile except for the numbering of new rule ids and CIDR
    identities, which continues the previous numbering. Raises PolicyError for duplicate
    policies or endpoint ids.
    """
    builder = _Builder(policies, endpoints, identities, options or CompileOptions(), previous)
    builder.assign_rule_ids()
    builder.assign_cidr_ids()
    builder.build_universe()
    builder.select_peers()
    builder.compile_subjects()
    return builder.result()


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True, slots=True)
class EndpointDiff:
    """Map writes for one endpoint: ``upserts`` (new or changed values) and ``deletes``."""

    endpoint_id: int
    upserts: Mapping[PolicyKey, PolicyEntry]
    deletes: tuple[PolicyKey, ...]
    flags_changed: bool = False
    created: bool = False
    removed: bool = False


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    endpoints: Mapping[int, EndpointDiff]
    rule_upserts: Mapping[int, RuleRef]
    rule_deletes: tuple[int, ...]
    ipcache_upserts: Mapping[IPNetwork, int]
    ipcache_deletes: tuple[IPNetwork, ...]

    @property
    def is_empty(self) -> bool:
        return not (
            self.endpoints
            or self.rule_upserts
            or self.rule_deletes
            or self.ipcache_upserts
            or self.ipcache_deletes
        )

    def entry_writes(self) -> int:
        return sum(len(d.upserts) + len(d.deletes) for d in self.endpoints.values())


def _flags(ep: EndpointPolicy) -> tuple[bool, bool, bool, int]:
    return (ep.ingress_enforced, ep.egress_enforced, ep.audit, ep.identity)


def _entries_diff(
    old: Mapping[PolicyKey, PolicyEntry], new: Mapping[PolicyKey, PolicyEntry]
) -> tuple[Mapping[PolicyKey, PolicyEntry], tuple[PolicyKey, ...]]:
    upserts: dict[PolicyKey, PolicyEntry] = {}
    for k, v in new.items():
        old_v = old.get(k)
        if old_v is not v and old_v != v:  # entries are interned: usually an identity hit
            upserts[k] = v
    return MappingProxyType(upserts), tuple(k for k in old if k not in new)


def diff(old: CompiledPolicy | None, new: CompiledPolicy) -> PolicyDiff:
    """What to write to go from ``old``'s maps to ``new``'s (``old=None``: from nothing)."""
    old_eps: Mapping[int, EndpointPolicy] = old.endpoints if old is not None else {}
    changes: dict[int, EndpointDiff] = {}
    # Endpoints share entry maps; diff each (old map, new map) pair once.
    pairs: dict[tuple[int, int], tuple[Mapping[PolicyKey, PolicyEntry], tuple[PolicyKey, ...]]] = {}
    for ep_id, ep in new.endpoints.items():
        prev = old_eps.get(ep_id)
        if prev is None:
            changes[ep_id] = EndpointDiff(ep_id, dict(ep.entries), (), True, True, False)
            continue
        flags_changed = _flags(prev) != _flags(ep)
        if prev.entries is ep.entries:
            if flags_changed:
                changes[ep_id] = EndpointDiff(ep_id, {}, (), True)
            continue
        pair = (id(prev.entries), id(ep.entries))
        cached = pairs.get(pair)
        if cached is None:
            cached = _entries_diff(prev.entries, ep.entries)
            pairs[pair] = cached
        upserts, deletes = cached
        if upserts or deletes or flags_changed:
            changes[ep_id] = EndpointDiff(ep_id, upserts, deletes, flags_changed)
    for ep_id, prev in old_eps.items():
        if ep_id not in new.endpoints:
            changes[ep_id] = EndpointDiff(ep_id, {}, tuple(prev.entries), True, False, True)
    old_rules: Mapping[int, RuleRef] = old.rules if old is not None else {}
    old_cache: Mapping[IPNetwork, int] = old.ipcache if old is not None else {}
    return PolicyDiff(
        endpoints=dict(sorted(changes.items())),
        rule_upserts={k: v for k, v in new.rules.items() if old_rules.get(k) != v},
        rule_deletes=tuple(k for k in old_rules if k not in new.rules),
        ipcache_upserts={k: v for k, v in new.ipcache.items() if old_cache.get(k) != v},
        ipcache_deletes=tuple(k for k in old_cache if k not in new.ipcache),
    )


__all__ = [
    "CompileOptions",
    "CompiledPolicy",
    "EndpointDiff",
    "EndpointPolicy",
    "EndpointView",
    "PolicyDiff",
    "PolicyEntry",
    "PolicyKey",
    "RuleRef",
    "compile_policies",
    "diff",
    "ipcache_lookup",
    "port_prefixes",
    "rule_port_keys",
]
