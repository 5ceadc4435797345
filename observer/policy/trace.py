"""Explain a verdict from compiled policy maps (pure).

:func:`lookup` is THE lookup algorithm; the BPF datapath must implement exactly this (it is
Cilium's ``__policy_can_access``), given the endpoint's map and enforcement flag:

1. If the direction is not enforced for the endpoint: allow, no lookup.
2. L3 lookup: key ``{remote identity, direction}`` exact, longest prefix over
   ``(protocol, dport)``. If it finds a deny (or audit) entry, that entry decides.
3. L4 lookup: the same with identity 0 (wildcard). Its entry decides if it is a deny, or if
   step 2 found nothing, or if its ``(protocol, port)`` prefix is longer than step 2's.
4. Otherwise step 2's entry decides; if neither found anything: drop (default deny), or
   AUDIT in audit mode.

So deny beats allow, and the reported entry is the most specific one: longer port prefix
first, and between equally long prefixes the entry naming the identity. That orders Cilium's
match types L3-L4 > L4-only > L3-Proto > Proto-only > L3-only > all.

Egress is checked at the source endpoint (if it is local), ingress at the destination (if
it is local); the packet passes if both pass. Replies of allowed connections are passed by
connection tracking in the datapath, before any policy lookup; :func:`trace` evaluates the
original direction only and says so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from observer.errors import PolicyError
from observer.policy.compiler import CompiledPolicy, EndpointPolicy, PolicyEntry, PolicyKey, RuleRef
from observer.policy.entities import WILDCARD_IDENTITY, identity_name
from observer.policy.model import Action, Direction, MatchType, Protocol

REPLY_NOTE = (
    "replies of allowed connections pass through connection tracking in the datapath "
    "without a policy lookup; this trace evaluates the original direction only"
)


@dataclass(frozen=True, slots=True)
class Local:
    """A local endpoint, by id."""

    endpoint_id: int


@dataclass(frozen=True, slots=True)
class Remote:
    """Anything else, by security identity (world, host, a remote pod, a CIDR identity)."""

    identity: int


Peer = Local | Remote


@dataclass(frozen=True, slots=True)
class Match:
    key: PolicyKey
    entry: PolicyEntry


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The deciding entry (None: miss) and what each of the two lookups found."""

    chosen: Match | None
    l3: Match | None
    l4: Match | None


def _lpm(
    entries: Mapping[PolicyKey, PolicyEntry],
    identity: int,
    direction: Direction,
    protocol: int,
    dport: int,
) -> Match | None:
    best: Match | None = None
    for key, entry in entries.items():
        if key.identity != identity or key.direction is not direction:
            continue
        if not key.matches(protocol, dport):
            continue
        if best is None or key.lpm_prefix_len > best.key.lpm_prefix_len:
            best = Match(key, entry)
    return best


def lookup(
    entries: Mapping[PolicyKey, PolicyEntry],
    direction: Direction,
    remote_identity: int,
    protocol: int,
    dport: int,
) -> LookupResult:
    """Steps 2-4 of the module docstring on one endpoint's entries."""
    l3 = (
        _lpm(entries, remote_identity, direction, protocol, dport)
        if remote_identity != WILDCARD_IDENTITY
        else None
    )
    if l3 is not None and l3.entry.action.is_deny:
        return LookupResult(l3, l3, None)
    l4 = _lpm(entries, WILDCARD_IDENTITY, direction, protocol, dport)
    if l4 is not None and (
        l4.entry.action.is_deny or l3 is None or l4.key.lpm_prefix_len > l3.key.lpm_prefix_len
    ):
        return LookupResult(l4, l3, l4)
    return LookupResult(l3, l3, l4)


@dataclass(frozen=True, slots=True)
class DirectionVerdict:
    direction: Direction
    endpoint_id: int
    remote_identity: int
    enforced: bool
    allowed: bool
    #: ALLOW / DENY / AUDIT of the deciding entry or default; None when not enforced.
    action: Action | None
    match_type: MatchType
    rule: RuleRef | None
    #: "not enforced", "policy" (an entry decided) or "default deny".
    reason: str
    key: PolicyKey | None
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    #: The packet passed only because of audit mode.
    audited: bool
    match_type: MatchType
    rule: RuleRef | None
    #: ``default/rule1 (CiliumNetworkPolicy) spec.ingress[0]``, ``default deny`` or
    #: ``no policy (not enforced)``.
    decided_by: str
    egress: DirectionVerdict | None
    ingress: DirectionVerdict | None
    explanation: tuple[str, ...]

    @property
    def deciding(self) -> DirectionVerdict | None:
        return _deciding(self.egress, self.ingress)


def _fmt_match(m: Match | None, rules: Mapping[int, RuleRef]) -> str:
    if m is None:
        return "no entry"
    ref = rules.get(m.entry.rule_id)
    by = ref.display if ref is not None else f"rule {m.entry.rule_id}"
    return f"{m.key.l4_text()} -> {m.entry.action.name} ({m.entry.match_type.text}) by {by}"


def _proto_text(protocol: int, dport: int) -> str:
    try:
        text = Protocol(protocol).text
    except ValueError:
        text = f"proto {protocol}"
    if protocol in (Protocol.ICMP, Protocol.ICMPV6):
        return f"{text} type {dport}"
    if protocol in (Protocol.TCP, Protocol.UDP, Protocol.SCTP):
        return f"{text}/{dport}"
    return text


def check_direction(
    compiled: CompiledPolicy,
    policy: EndpointPolicy,
    direction: Direction,
    remote_identity: int,
    protocol: int,
    dport: int,
) -> DirectionVerdict:
    """Steps 1-4 for one endpoint and direction."""
    side = "to" if direction is Direction.EGRESS else "from"
    head = (
        f"{direction.text} at endpoint {policy.endpoint_id} (identity {policy.identity}) "
        f"{side} identity {identity_name(remote_identity)}, {_proto_text(protocol, dport)}"
    )
    if not policy.enforced(direction):
        return DirectionVerdict(
            direction,
            policy.endpoint_id,
            remote_identity,
            False,
            True,
            None,
            MatchType.NONE,
            None,
            "not enforced",
            None,
            (
                f"{head}: not enforced (no policy selects the endpoint for {direction.text}) -> ALLOWED",
            ),
        )
    result = lookup(policy.entries, direction, remote_identity, protocol, dport)
    lines = [
        f"{head}: enforced by {', '.join(policy.policies(direction))}",
        f"  L3 lookup (identity {identity_name(remote_identity)}): {_fmt_match(result.l3, compiled.rules)}",
        f"  L4 lookup (any identity): {_fmt_match(result.l4, compiled.rules)}",
    ]
    if result.chosen is None:
        action = Action.AUDIT if policy.audit else Action.DENY
        allowed = policy.audit
        verdict = "AUDITED (would be DENIED)" if policy.audit else "DENIED"
        lines.append(f"  -> {verdict}: default deny")
        return DirectionVerdict(
            direction,
            policy.endpoint_id,
            remote_identity,
            True,
            allowed,
            action,
            MatchType.NONE,
            None,
            "default deny",
            None,
            tuple(lines),
        )
    entry = result.chosen.entry
    ref = compiled.rules.get(entry.rule_id)
    allowed = entry.action is not Action.DENY
    text = {
        Action.ALLOW: "ALLOWED",
        Action.DENY: "DENIED",
        Action.AUDIT: "AUDITED (would be DENIED)",
    }
    by = ref.display if ref is not None else f"rule {entry.rule_id}"
    lines.append(f"  -> {text[entry.action]} ({entry.match_type.text}) by {by}")
    return DirectionVerdict(
        direction,
        policy.endpoint_id,
        remote_identity,
        True,
        allowed,
        entry.action,
        entry.match_type,
        ref,
        "policy",
        result.chosen.key,
        tuple(lines),
    )


def _deciding(
    egress: DirectionVerdict | None, ingress: DirectionVerdict | None
) -> DirectionVerdict | None:
    for v in (egress, ingress):
        if v is not None and not v.allowed:
            return v
    for v in (ingress, egress):
        if v is not None and v.action is Action.AUDIT:
            return v
    for v in (ingress, egress):
        if v is not None and v.enforced:
            return v
    return ingress or egress


def _endpoint(compiled: CompiledPolicy, endpoint_id: int) -> EndpointPolicy:
    policy = compiled.endpoints.get(endpoint_id)
    if policy is None:
        raise PolicyError(f"endpoint {endpoint_id} is not in the compiled policy")
    return policy


def _resolve(compiled: CompiledPolicy, peer: Peer) -> tuple[EndpointPolicy | None, int]:
    if isinstance(peer, Local):
        policy = _endpoint(compiled, peer.endpoint_id)
        return policy, policy.identity
    return None, peer.identity


def peer_for_ip(compiled: CompiledPolicy, ip: str) -> Peer:
    """A local endpoint if it owns ``ip``, else the ipcache identity of ``ip``."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise PolicyError(f"invalid IP address {ip!r}") from None
    ep = compiled.endpoint_for_ip(addr)
    return Local(ep) if ep is not None else Remote(compiled.resolve_ip(addr))


def trace(
    compiled: CompiledPolicy,
    src: Peer,
    dst: Peer,
    dport: int,
    protocol: Protocol | int = Protocol.TCP,
) -> Verdict:
    """Would a new connection ``src -> dst`` to ``dport`` (ICMP: the type) pass?

    Egress is checked at ``src`` when it is a local endpoint, ingress at ``dst`` when it is.
    Raises PolicyError for an unknown local endpoint.
    """
    proto = int(protocol)
    src_ep, src_identity = _resolve(compiled, src)
    dst_ep, dst_identity = _resolve(compiled, dst)
    egress = (
        check_direction(compiled, src_ep, Direction.EGRESS, dst_identity, proto, dport)
        if src_ep is not None
        else None
    )
    ingress = (
        check_direction(compiled, dst_ep, Direction.INGRESS, src_identity, proto, dport)
        if dst_ep is not None
        else None
    )
    lines: list[str] = []
    for v, absent in (
        (egress, "egress: source is not a local endpoint; not checked here"),
        (ingress, "ingress: destination is not a local endpoint; not checked here"),
    ):
        lines.extend(v.lines if v is not None else (absent,))
    allowed = all(v.allowed for v in (egress, ingress) if v is not None)
    deciding = _deciding(egress, ingress)
    audited = allowed and any(v is not None and v.action is Action.AUDIT for v in (egress, ingress))
    if deciding is None or not deciding.enforced:
        decided_by = "no policy (not enforced)"
    elif deciding.rule is not None:
        decided_by = deciding.rule.display
    else:
        decided_by = "default deny"
    verdict_text = "AUDITED" if audited else ("ALLOWED" if allowed else "DENIED")
    lines.append(f"verdict: {verdict_text} (decided by {decided_by})")
    lines.append(REPLY_NOTE)
    return Verdict(
        allowed=allowed,
        audited=audited,
        match_type=deciding.match_type if deciding is not None else MatchType.NONE,
        rule=deciding.rule if deciding is not None else None,
        decided_by=decided_by,
        egress=egress,
        ingress=ingress,
        explanation=tuple(lines),
    )
