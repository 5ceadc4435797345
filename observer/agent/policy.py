"""The agent's network policy: the policy repository, its persistence, and enforcement.

Pieces (pure first, then the one stateful engine):

* :class:`Repository`: the applied policies by (kind, namespace, name) and the repository
  revision (Cilium's policy revision: +1 for every change; a policy carries the revision at
  which it last changed). ``with_applied`` / ``without`` return a new repository and what
  changed.
* :class:`StableIds`: datapath numbers that must survive agent restarts: the rule ids policy
  map entries carry (flows name the deciding policy through them) and CIDR identities (in
  the ipcache and in policy keys). The compiler numbers both per process; these tables give
  each (kind, namespace, name, section) and each prefix one number for as long as it
  exists, persisted with the policies.
* :func:`build_image`: a :class:`~observer.policy.CompiledPolicy` -> the
  :class:`~observer.bpf.policymaps.DatapathImage` the BPF maps hold, in stable numbers.
* :class:`PolicyEngine`: loads ``policies.json`` from the state dir, compiles incrementally
  (the compiler's ``previous=``) whenever policies, endpoints or labels change, and makes
  the datapath enforce the result through a generation switch
  (:meth:`~observer.bpf.policymaps.PolicyMaps.switch_to`): the new state is written where
  no packet looks, ``policies.json`` is saved, then one write flips what packets see. A
  failure before the flip leaves both the datapath and the saved state as they were.

Established connections: the datapath looks up every packet of a connection's original
direction (as Cilium does) and passes replies by conntrack, so removing the allow of an
established connection cuts it in the original direction; replies already in flight pass.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import yaml

from observer.bpf import policymaps as pm
from observer.datapath.endpoints import Endpoint
from observer.datapath.labels import LabelSet
from observer.datapath.state import StateDir
from observer.errors import PolicyError
from observer.policy import (
    CompiledPolicy,
    CompileOptions,
    Direction,
    EndpointView,
    Policy,
    PolicyKind,
    Protocol,
    RuleRef,
    compile_policies,
    load_policies,
    policy_to_dict,
)
from observer.policy.entities import (
    CIDR_IDENTITY_BASE,
    ReservedIdentity,
    is_cidr_identity,
)
from observer.policy.model import Action, IPNetwork
from observer.policy.trace import Local, Peer, Remote, Verdict, peer_for_ip, trace

log = logging.getLogger(__name__)

POLICIES_FILE: Final = "policies.json"

#: flow.Policy of a default-deny verdict (no policy rule matched).
DEFAULT_DENY_POLICY: Final[Mapping[str, Any]] = MappingProxyType(
    {"name": "default deny", "labels": ["reserved:default-deny"]}
)
#: Rule ids of deleted policies kept resolvable for flows still in flight.
RETIRED_RULES_KEPT: Final = 4096

RuleKey = tuple[str, str, str, str]
PolicyKeyT = tuple[str, str, str]

_ACTIONS: Final = {
    Action.ALLOW: pm.ACTION_ALLOW,
    Action.DENY: pm.ACTION_DENY,
    Action.AUDIT: pm.ACTION_AUDIT,
}

_PROTOCOLS: Final = {
    "tcp": Protocol.TCP,
    "udp": Protocol.UDP,
    "sctp": Protocol.SCTP,
    "icmp": Protocol.ICMP,
    "icmpv4": Protocol.ICMP,
    "icmpv6": Protocol.ICMPV6,
}


class PolicyNotFound(PolicyError):
    """No policy with that kind/namespace/name."""


class PolicyAmbiguous(PolicyError):
    """A namespace/name that policies of several kinds share (give the kind)."""


# --------------------------------------------------------------------------- repository


def _content(policy: Policy) -> Policy:
    """The policy without what apply sets (revision, where it was loaded from)."""
    return dataclasses.replace(policy, revision=0, filename="", document_index=0)


@dataclass(frozen=True, slots=True)
class Change:
    policy: Policy
    action: str  # "created", "updated", "unchanged", "deleted"


@dataclass(frozen=True, slots=True)
class Repository:
    """The applied policies (immutable)."""

    policies: Mapping[PolicyKeyT, Policy] = field(default_factory=dict)
    revision: int = 0

    def sorted(self) -> list[Policy]:
        return [self.policies[k] for k in sorted(self.policies)]

    def with_applied(self, loaded: Sequence[Policy]) -> tuple[Repository, list[Change]]:
        """Create or replace each of ``loaded``; the revision moves on if anything changed."""
        seen: dict[PolicyKeyT, Policy] = {}
        for policy in loaded:
            if policy.key in seen:
                other = seen[policy.key]
                raise PolicyError(
                    f"{policy.filename}: document {policy.document_index}: metadata.name: "
                    f"{policy} is also defined in {other.filename} document {other.document_index}"
                )
            seen[policy.key] = policy
        new_rev = self.revision + 1
        out = dict(self.policies)
        changes: list[Change] = []
        for policy in loaded:
            old = self.policies.get(policy.key)
            if old is not None and _content(old) == _content(policy):
                changes.append(Change(old, "unchanged"))
                continue
            stored = dataclasses.replace(policy, revision=new_rev)
            out[policy.key] = stored
            changes.append(Change(stored, "created" if old is None else "updated"))
        if all(c.action == "unchanged" for c in changes):
            return self, changes
        return Repository(MappingProxyType(out), new_rev), changes

    def find(self, namespace: str, name: str, kind: str = "") -> Policy:
        """The policy ``namespace/name`` (``namespace`` "" = clusterwide); ``kind`` picks one
        when kinds share the name. Raises PolicyNotFound / PolicyAmbiguous."""
        found = [
            p
            for p in self.policies.values()
            if p.namespace == namespace and p.name == name and (not kind or _kind_matches(p, kind))
        ]
        where = f"{namespace}/{name}" if namespace else name
        if not found:
            raise PolicyNotFound(f"policy {where}{f' of kind {kind}' if kind else ''} not found")
        if len(found) > 1:
            kinds = ", ".join(sorted(str(p.kind) for p in found))
            raise PolicyAmbiguous(f"policy {where} exists as {kinds}: give the kind")
        return found[0]

    def without(self, policy: Policy) -> Repository:
        out = {k: v for k, v in self.policies.items() if k != policy.key}
        return Repository(MappingProxyType(out), self.revision + 1)


_KIND_ALIASES: Final = {
    "cnp": PolicyKind.CNP,
    "ciliumnetworkpolicy": PolicyKind.CNP,
    "ccnp": PolicyKind.CCNP,
    "ciliumclusterwidenetworkpolicy": PolicyKind.CCNP,
    "netpol": PolicyKind.KNP,
    "networkpolicy": PolicyKind.KNP,
    "knp": PolicyKind.KNP,
}


def _kind_matches(policy: Policy, kind: str) -> bool:
    return _KIND_ALIASES.get(kind.lower().replace("-", "")) is policy.kind


def resolve_policy(repo: Repository, key: str, kind: str = "") -> Policy:
    """``NAMESPACE/NAME``, or ``NAME`` for a clusterwide policy (else ``default/NAME``)."""
    if kind and kind.lower().replace("-", "") not in _KIND_ALIASES:
        raise PolicyError(
            f"unknown policy kind {kind!r}: CiliumNetworkPolicy (cnp), "
            "CiliumClusterwideNetworkPolicy (ccnp) or NetworkPolicy (netpol)"
        )
    if "/" in key:
        ns, _, name = key.partition("/")
        if not ns or not name or "/" in name:
            raise PolicyError(f"policy {key!r}: expected NAMESPACE/NAME or NAME")
        return repo.find(ns, name, kind)
    try:
        return repo.find("", key, kind)
    except PolicyNotFound:
        return repo.find("default", key, kind)


# --------------------------------------------------------------------------- stable ids


@dataclass(frozen=True, slots=True)
class StableIds:
    """Datapath rule ids and CIDR identities that keep their numbers (immutable)."""

    rules: Mapping[RuleKey, int] = field(default_factory=dict)
    next_rule: int = 1
    cidrs: Mapping[IPNetwork, int] = field(default_factory=dict)
    next_cidr: int = CIDR_IDENTITY_BASE

    def updated(self, rule_keys: Iterable[RuleKey], prefixes: Iterable[IPNetwork]) -> StableIds:
        """Numbers for exactly ``rule_keys`` and ``prefixes``: kept where known, new ones
        continue the counters, the others are forgotten."""
        rules: dict[RuleKey, int] = {}
        nxt = self.next_rule
        for key in sorted(set(rule_keys)):
            known = self.rules.get(key)
            if known is None:
                known = nxt
                nxt += 1
                if nxt >= pm.RULE_DEFAULT_DENY:
                    raise PolicyError("datapath rule ids exhausted")
            rules[key] = known
        cidrs: dict[IPNetwork, int] = {}
        nxt_cidr = self.next_cidr
        for net in sorted(set(prefixes), key=lambda n: (n.version, n.network_address, n.prefixlen)):
            ident = self.cidrs.get(net)
            if ident is None:
                ident = nxt_cidr
                nxt_cidr += 1
            cidrs[net] = ident
        if rules == self.rules and cidrs == self.cidrs:
            return self
        return StableIds(MappingProxyType(rules), nxt, MappingProxyType(cidrs), nxt_cidr)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [[*k, v] for k, v in sorted(self.rules.items())],
            "next_rule": self.next_rule,
            "cidrs": {str(k): v for k, v in sorted(self.cidrs.items(), key=lambda kv: kv[1])},
            "next_cidr": self.next_cidr,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> StableIds:
        rules: dict[RuleKey, int] = {}
        for row in doc.get("rules", []):
            if (
                not isinstance(row, list)
                or len(row) != 5
                or not all(isinstance(x, str) for x in row[:4])
                or not isinstance(row[4], int)
            ):
                raise ValueError(f"bad rule id row {row!r}")
            rules[(row[0], row[1], row[2], row[3])] = row[4]
        cidrs = {ipaddress.ip_network(k): int(v) for k, v in doc.get("cidrs", {}).items()}
        next_rule = int(doc.get("next_rule", 1))
        next_cidr = int(doc.get("next_cidr", CIDR_IDENTITY_BASE))
        return cls(MappingProxyType(rules), next_rule, MappingProxyType(cidrs), next_cidr)


def rule_key(ref: RuleRef) -> RuleKey:
    return (ref.kind, ref.namespace, ref.name, ref.section)


def cidr_identities(compiled: CompiledPolicy) -> dict[int, IPNetwork]:
    """The compiler's CIDR identities and their prefixes."""
    return {ident: net for net, ident in compiled.ipcache.items() if is_cidr_identity(ident)}


def stable_ids_for(compiled: CompiledPolicy, previous: StableIds) -> StableIds:
    return previous.updated(
        (rule_key(ref) for ref in compiled.rules.values()), cidr_identities(compiled).values()
    )


# --------------------------------------------------------------------------- image


@dataclass(frozen=True, slots=True)
class Translation:
    """Compiler numbers -> stable numbers for one compiled policy."""

    rules: Mapping[int, int]
    identities: Mapping[int, int]

    @classmethod
    def of(cls, compiled: CompiledPolicy, ids: StableIds) -> Translation:
        rules = {cid: ids.rules[rule_key(ref)] for cid, ref in compiled.rules.items()}
        idents = {
            cid: ids.cidrs[net]
            for cid, net in cidr_identities(compiled).items()
            if cid != ids.cidrs[net]
        }
        return cls(MappingProxyType(rules), MappingProxyType(idents))


class ImageCache:
    """Packed entry dicts per compiler entries mapping, reused while the compiler hands out
    the same mapping object (it keeps the object of a subject whose rules, rule ids and peer
    selections are unchanged). Valid because, along a chain of ``previous=`` compiles, a
    compiler rule id or CIDR identity always stands for the same rule or prefix, and that
    rule or prefix keeps its stable number while it exists."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._cache: OrderedDict[int, tuple[object, Mapping[bytes, bytes]]] = OrderedDict()

    def get(self, entries: object) -> Mapping[bytes, bytes] | None:
        hit = self._cache.get(id(entries))
        if hit is None or hit[0] is not entries:
            return None
        self._cache.move_to_end(id(entries))
        return hit[1]

    def put(self, entries: object, packed: Mapping[bytes, bytes]) -> None:
        self._cache[id(entries)] = (entries, packed)
        self._cache.move_to_end(id(entries))
        while len(self._cache) > self._limit:
            self._cache.popitem(last=False)


def pack_entries(entries: Mapping[Any, Any], tr: Translation) -> Mapping[bytes, bytes]:
    """One endpoint's compiler entries as packed (key, value) pairs in stable numbers."""
    out: dict[bytes, bytes] = {}
    idents = tr.identities
    for key, entry in entries.items():
        ident = idents.get(key.identity, key.identity)
        lpm = key.lpm_prefix_len
        packed_key = pm.pack_policy_key(ident, int(key.direction), key.protocol, key.port, lpm)
        out[packed_key] = pm.pack_policy_entry(
            _ACTIONS[entry.action], int(entry.match_type), lpm, tr.rules[entry.rule_id]
        )
    return MappingProxyType(out)


def endpoint_flags(ep: Any) -> int:
    flags = 0
    if ep.ingress_enforced:
        flags |= pm.EP_INGRESS
    if ep.egress_enforced:
        flags |= pm.EP_EGRESS
    if flags and ep.audit:
        flags |= pm.EP_AUDIT
    return flags


def build_image(
    compiled: CompiledPolicy, ids: StableIds, cache: ImageCache | None = None
) -> pm.DatapathImage:
    """What the BPF maps must hold to enforce ``compiled`` (``ids`` must cover it)."""
    tr = Translation.of(compiled, ids)
    flags: dict[int, int] = {}
    entries: dict[int, Mapping[bytes, bytes]] = {}
    local: dict[int, Mapping[bytes, bytes]] = {}
    for ep_id, ep in compiled.endpoints.items():
        f = endpoint_flags(ep)
        if f:
            flags[ep_id] = f
        if not ep.entries:
            continue
        packed = local.get(id(ep.entries))
        if packed is None and cache is not None:
            packed = cache.get(ep.entries)
        if packed is None:
            packed = pack_entries(ep.entries, tr)
            if cache is not None:
                cache.put(ep.entries, packed)
        local[id(ep.entries)] = packed
        entries[ep_id] = packed
    ipcache: dict[bytes, bytes] = {}
    for net, ident in compiled.ipcache.items():
        ipcache[pm.pack_ipcache_key(net)] = pm.pack_ipcache_value(tr.identities.get(ident, ident))
    return pm.DatapathImage(
        MappingProxyType(flags), MappingProxyType(entries), MappingProxyType(ipcache)
    )


# --------------------------------------------------------------------------- persistence


def _document_yaml(policy: Policy) -> str:
    return yaml.safe_dump(policy_to_dict(policy), sort_keys=False, default_flow_style=False)


def repository_to_json(repo: Repository, ids: StableIds) -> dict[str, Any]:
    return {
        "revision": repo.revision,
        "policies": [
            {
                "kind": str(p.kind),
                "namespace": p.namespace,
                "name": p.name,
                "revision": p.revision,
                "filename": p.filename,
                "document_index": p.document_index,
                "yaml": _document_yaml(p),
            }
            for p in repo.sorted()
        ],
        "ids": ids.to_json(),
    }


def repository_from_json(doc: Mapping[str, Any], where: str) -> tuple[Repository, StableIds]:
    """Raises PolicyError naming ``where`` when a stored policy no longer loads."""
    policies: dict[PolicyKeyT, Policy] = {}
    rows = doc.get("policies", [])
    if not isinstance(rows, list):
        raise PolicyError(f"{where}: 'policies' must be a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("yaml"), str):
            raise PolicyError(f"{where}: policies[{i}]: expected an object with 'yaml'")
        filename = str(row.get("filename", "")) or where
        try:
            loaded = load_policies(row["yaml"], filename)
        except PolicyError as exc:
            raise PolicyError(f"{where}: stored policy {i} no longer loads: {exc}") from None
        if len(loaded) != 1:
            raise PolicyError(f"{where}: policies[{i}]: expected one policy, found {len(loaded)}")
        policy = dataclasses.replace(
            loaded[0],
            revision=int(row.get("revision", 0)),
            filename=filename,
            document_index=int(row.get("document_index", 0)),
        )
        policies[policy.key] = policy
    try:
        ids = StableIds.from_json(doc.get("ids", {}))
    except (ValueError, TypeError) as exc:
        raise PolicyError(f"{where}: ids: {exc}") from None
    return Repository(MappingProxyType(policies), int(doc.get("revision", 0))), ids


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True, slots=True)
class PolicySummary:
    kind: str
    namespace: str
    name: str
    revision: int
    endpoints: tuple[str, ...]
    ingress: bool
    egress: bool
    filename: str


def selected_endpoints(policy: Policy, endpoints: Sequence[Endpoint]) -> tuple[str, ...]:
    """``namespace/name`` of the local endpoints the policy's specs select."""
    out = []
    for ep in endpoints:
        if policy.namespace and ep.namespace != policy.namespace:
            continue
        if any(spec.subject.matches(ep.labels) for spec in policy.specs):
            out.append(ep.key)
    return tuple(sorted(out))


def summarize(policy: Policy, endpoints: Sequence[Endpoint]) -> PolicySummary:
    directions = {d for spec in policy.specs for d in spec.enforce}
    return PolicySummary(
        kind=str(policy.kind),
        namespace=policy.namespace,
        name=policy.name,
        revision=policy.revision,
        endpoints=selected_endpoints(policy, endpoints),
        ingress=Direction.INGRESS in directions,
        egress=Direction.EGRESS in directions,
        filename=policy.filename,
    )


@dataclass(frozen=True, slots=True)
class ApplyResult:
    revision: int
    endpoints_changed: int
    entries_written: int


@dataclass(frozen=True, slots=True)
class TraceResult:
    verdict: Verdict
    source: str
    destination: str
    source_identity: int
    destination_identity: int


def parse_protocol(text: str) -> Protocol:
    proto = _PROTOCOLS.get(text.strip().lower())
    if proto is None:
        raise PolicyError(f"unknown protocol {text!r}: tcp, udp, sctp, icmp or icmpv6")
    return proto


def _reserved_by_name(name: str) -> int | None:
    for r in ReservedIdentity:
        if r is not ReservedIdentity.UNKNOWN and r.label_name == name:
            return int(r)
    return None


# --------------------------------------------------------------------------- engine


def policy_host_ips(addresses: Iterable[str]) -> tuple[str, ...]:
    """Host addresses that get the host identity in the ipcache: link-local ones are left
    out (every endpoint's host-side veth has one, so they come and go with endpoints, and
    they never source traffic a policy could judge)."""
    out = set()
    for text in addresses:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if not addr.is_link_local:
            out.add(addr.compressed)
    return tuple(sorted(out))


def endpoint_view(ep: Endpoint) -> EndpointView:
    return EndpointView(ep.id, ep.identity, ep.namespace, ep.labels, (ep.ipv4, ep.ipv6))


@dataclass(frozen=True, slots=True)
class _View:
    """What the engine enforces now; replaced as a whole after each successful change."""

    repo: Repository
    ids: StableIds
    compiled: CompiledPolicy | None
    endpoints: tuple[Endpoint, ...]
    flow_policies: Mapping[int, tuple[Mapping[str, Any], ...]]


class PolicyEngine:
    """Policy repository + compiler + datapath maps. Methods that change anything must be
    called by one thread at a time (the agent holds its lock); readers (``enforcement``,
    ``flow_policies``, ``list``, ``trace``) work on one consistent snapshot."""

    def __init__(
        self,
        maps: pm.PolicyMaps,
        state: StateDir,
        *,
        host_ips: Iterable[str] = (),
        audit_mode: bool = False,
        allow_localhost: bool = True,
    ) -> None:
        self._maps = maps
        self._state = state
        self._options = CompileOptions(
            allow_localhost=allow_localhost,
            audit_mode=audit_mode,
            host_ips=policy_host_ips(host_ips),
        )
        self._cache = ImageCache()
        self._retired: OrderedDict[int, tuple[Mapping[str, Any], ...]] = OrderedDict()
        self._view = _View(
            Repository(),
            StableIds(),
            None,
            (),
            MappingProxyType({pm.RULE_DEFAULT_DENY: (DEFAULT_DENY_POLICY,)}),
        )

    # -- state -----------------------------------------------------------
    @property
    def repository(self) -> Repository:
        return self._view.repo

    @property
    def compiled(self) -> CompiledPolicy | None:
        return self._view.compiled

    @property
    def stable_ids(self) -> StableIds:
        return self._view.ids

    def _save(self, repo: Repository, ids: StableIds) -> None:
        self._state.write_json(POLICIES_FILE, repository_to_json(repo, ids))

    def start(self, endpoints: Sequence[Endpoint]) -> ApplyResult:
        """Load the saved policies and make the datapath enforce them for ``endpoints``.

        What the maps already hold (a previous agent's work) is read back first, so when
        nothing changed nothing is written and connections are not disturbed.
        """
        doc = self._state.read_json(POLICIES_FILE)
        if doc is None:
            return self._commit(self._view.repo, endpoints, save=False)
        repo, ids = repository_from_json(doc, str(self._state.file(POLICIES_FILE)))
        return self._commit(repo, endpoints, save=False, ids=ids)

    # -- the one path that changes what is enforced -------------------------
    def _commit(
        self,
        repo: Repository,
        endpoints: Sequence[Endpoint],
        *,
        save: bool = True,
        ids: StableIds | None = None,
    ) -> ApplyResult:
        view = self._view
        base_ids = ids if ids is not None else view.ids
        views = [endpoint_view(ep) for ep in endpoints]
        identities: dict[int, LabelSet] = {ep.identity: ep.labels for ep in endpoints}
        compiled = compile_policies(
            repo.sorted(), views, identities, options=self._options, previous=view.compiled
        )
        new_ids = stable_ids_for(compiled, base_ids)
        image = build_image(compiled, new_ids, self._cache)
        must_save = save or new_ids is not base_ids

        def persist() -> None:
            if must_save:
                self._save(repo, new_ids)

        stats = self._maps.switch_to(image, before_flip=persist)
        if not stats.switched:
            persist()
        self._retire(view, new_ids)
        self._view = _View(
            repo, new_ids, compiled, tuple(endpoints), self._policy_table(compiled, new_ids)
        )
        return ApplyResult(repo.revision, len(stats.endpoints), stats.writes)

    def _retire(self, view: _View, ids: StableIds) -> None:
        for key, rid in view.ids.rules.items():
            if key not in ids.rules:
                old = view.flow_policies.get(rid)
                if old is not None:
                    self._retired[rid] = old
        while len(self._retired) > RETIRED_RULES_KEPT:
            self._retired.popitem(last=False)

    def _policy_table(
        self, compiled: CompiledPolicy, ids: StableIds
    ) -> Mapping[int, tuple[Mapping[str, Any], ...]]:
        table: dict[int, tuple[Mapping[str, Any], ...]] = dict(self._retired)
        for ref in compiled.rules.values():
            table[ids.rules[rule_key(ref)]] = (MappingProxyType(ref.to_flow_policy()),)
        table[pm.RULE_DEFAULT_DENY] = (DEFAULT_DENY_POLICY,)
        return MappingProxyType(table)

    # -- operations --------------------------------------------------------
    def apply(
        self, files: Sequence[tuple[str, str]], endpoints: Sequence[Endpoint]
    ) -> tuple[list[Change], ApplyResult]:
        """Load every file (``(filename, text)``), then apply all of them at once.

        Any error (a malformed document, a duplicate, a compile problem) raises before
        anything is saved or enforced.
        """
        loaded: list[Policy] = []
        for filename, text in files:
            loaded.extend(load_policies(text, filename))
        if not loaded:
            raise PolicyError(
                ", ".join(f for f, _ in files) + ": no policy found (empty documents only)"
            )
        current = self._view.repo
        repo, changes = current.with_applied(loaded)
        if repo is current:
            return changes, ApplyResult(repo.revision, 0, 0)
        return changes, self._commit(repo, endpoints)

    def delete(
        self, key: str, kind: str, endpoints: Sequence[Endpoint]
    ) -> tuple[Policy, ApplyResult]:
        current = self._view.repo
        policy = resolve_policy(current, key, kind)
        return policy, self._commit(current.without(policy), endpoints)

    def sync(self, endpoints: Sequence[Endpoint]) -> ApplyResult:
        """Endpoints appeared, disappeared or changed labels: recompile what that changes."""
        return self._commit(self._view.repo, endpoints, save=False)

    def get(self, key: str, kind: str = "") -> Policy:
        return resolve_policy(self._view.repo, key, kind)

    def document_yaml(self, policy: Policy) -> str:
        return _document_yaml(policy)

    def list(self) -> list[PolicySummary]:
        view = self._view
        return [summarize(p, view.endpoints) for p in view.repo.sorted()]

    def summary(self, policy: Policy) -> PolicySummary:
        return summarize(policy, self._view.endpoints)

    def enforcement(self, endpoint_id: int) -> tuple[str, str]:
        compiled = self._view.compiled
        ep = compiled.endpoints.get(endpoint_id) if compiled is not None else None
        if ep is None:
            return ("disabled", "disabled")
        suffix = " (audit)" if ep.audit else ""

        def text(on: bool) -> str:
            return f"enabled{suffix}" if on else "disabled"

        return (text(ep.ingress_enforced), text(ep.egress_enforced))

    def flow_policies(self) -> Mapping[int, tuple[Mapping[str, Any], ...]]:
        """Datapath rule id -> the ``flow.Policy`` dicts flows name (resolver table)."""
        return self._view.flow_policies

    # -- trace -------------------------------------------------------------
    @staticmethod
    def _peer(view: _View, compiled: CompiledPolicy, spec: str) -> tuple[Peer, str, int]:
        text = spec.strip()
        if not text:
            raise PolicyError(
                "trace: empty peer (want NAMESPACE/NAME, an IP, world, host or identity:N)"
            )
        try:
            ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            peer = peer_for_ip(compiled, text)
            if isinstance(peer, Local):
                ep = next(e for e in view.endpoints if e.id == peer.endpoint_id)
                return peer, f"{text} ({ep.key})", ep.identity
            return peer, text, peer.identity
        name = text.removeprefix("reserved:")
        reserved = _reserved_by_name(name)
        if reserved is not None:
            return Remote(reserved), f"reserved:{name}", reserved
        if text.startswith("identity:") or text.isdigit():
            num = text.removeprefix("identity:")
            if not num.isdigit():
                raise PolicyError(f"trace: bad identity {text!r}")
            ident = int(num)
            return Remote(ident), f"identity {ident}", ident
        ns, _, name = text.rpartition("/")
        ns = ns or "default"
        for ep in view.endpoints:
            if ep.namespace == ns and ep.name == name:
                return Local(ep.id), ep.key, ep.identity
        raise PolicyError(
            f"trace: no endpoint {ns}/{name} (want NAMESPACE/NAME, an IP, world, host or identity:N)"
        )

    def trace(self, source: str, destination: str, dport: int, protocol: str) -> TraceResult:
        view = self._view
        compiled = view.compiled
        if compiled is None:
            raise PolicyError("policy engine not started")
        proto = parse_protocol(protocol)
        if not 0 <= dport <= 65535:
            raise PolicyError(f"trace: port {dport} out of range 0-65535")
        if proto in (Protocol.ICMP, Protocol.ICMPV6) and dport > 255:
            raise PolicyError(f"trace: ICMP type {dport} out of range 0-255")
        src, src_text, src_id = self._peer(view, compiled, source)
        dst, dst_text, dst_id = self._peer(view, compiled, destination)
        verdict = trace(compiled, src, dst, dport, proto)
        return TraceResult(verdict, src_text, dst_text, src_id, dst_id)


__all__ = [
    "DEFAULT_DENY_POLICY",
    "POLICIES_FILE",
    "ApplyResult",
    "Change",
    "ImageCache",
    "PolicyAmbiguous",
    "PolicyEngine",
    "PolicyNotFound",
    "PolicySummary",
    "Repository",
    "StableIds",
    "TraceResult",
    "Translation",
    "build_image",
    "endpoint_view",
    "parse_protocol",
    "policy_host_ips",
    "resolve_policy",
    "selected_endpoints",
    "stable_ids_for",
    "summarize",
]
