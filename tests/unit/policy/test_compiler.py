"""compile_policies: map entries, enforcement flags, ipcache, and the incremental form."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.errors import PolicyError
from observer.policy import (
    Action,
    CompiledPolicy,
    CompileOptions,
    Direction,
    EndpointView,
    Local,
    MatchType,
    Policy,
    PolicyKey,
    Protocol,
    Remote,
    compile_policies,
    diff,
    load_policies,
    trace,
)
from observer.policy.compiler import port_prefixes
from observer.policy.entities import CIDR_IDENTITY_BASE, ReservedIdentity

HOST = int(ReservedIdentity.HOST)
WORLD = int(ReservedIdentity.WORLD)
TCP, UDP, SCTP, ICMP = Protocol.TCP, Protocol.UDP, Protocol.SCTP, Protocol.ICMP
IN, OUT = Direction.INGRESS, Direction.EGRESS

# The Star Wars cast: id, identity, labels, address.
DEATHSTAR = EndpointView.create(
    10, 5678, "default", ["k8s:org=empire", "k8s:class=deathstar"], ["10.213.0.10"]
)
TIEFIGHTER = EndpointView.create(
    11, 1111, "default", ["k8s:org=empire", "k8s:class=tiefighter"], ["10.213.0.11"]
)
XWING = EndpointView.create(
    12, 2222, "default", ["k8s:org=alliance", "k8s:class=xwing"], ["10.213.0.12"]
)
KUBEDNS = EndpointView.create(13, 3333, "kube-system", ["k8s:k8s-app=kube-dns"], ["10.213.0.13"])
CAST = (DEATHSTAR, TIEFIGHTER, XWING, KUBEDNS)


def cnp(body: str, name: str = "p", namespace: str = "default") -> str:
    return (
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
        + textwrap.indent(textwrap.dedent(body), "  ")
    )


def load(*docs: str) -> list[Policy]:
    return load_policies("---\n".join(docs), "test.yaml")


def build(
    *docs: str,
    endpoints: Iterable[EndpointView] = CAST,
    options: CompileOptions | None = None,
) -> CompiledPolicy:
    return compile_policies(load(*docs), list(endpoints), {}, options=options)


def entries(
    compiled: CompiledPolicy, ep: EndpointView
) -> dict[tuple[object, ...], tuple[object, ...]]:
    """An endpoint's entries as plain tuples: (identity, dir, proto, port, plen) -> (action,
    match type, policy name, rule section)."""
    out: dict[tuple[object, ...], tuple[object, ...]] = {}
    for key, entry in compiled.endpoints[ep.id].entries.items():
        ref = compiled.rules[entry.rule_id]
        out[(key.identity, key.direction, key.protocol, key.port, key.port_prefix_len)] = (
            entry.action,
            entry.match_type,
            ref.name,
            ref.section,
        )
    return out


def allowed(
    compiled: CompiledPolicy,
    src: Local | Remote,
    dst: Local | Remote,
    port: int,
    proto: Protocol = TCP,
) -> bool:
    return trace(compiled, src, dst, port, proto).allowed


SW_POLICY = cnp(
    """\
    endpointSelector:
      matchLabels: {org: empire, class: deathstar}
    ingress:
    - fromEndpoints:
      - matchLabels: {org: empire}
      toPorts:
      - ports: [{port: "80", protocol: TCP}]
    """,
    name="rule1",
)


def test_star_wars_l3_l4() -> None:
    c = build(SW_POLICY)
    localhost = (Action.ALLOW, MatchType.L3_ONLY, "allow-localhost-ingress", "")
    rule1 = (Action.ALLOW, MatchType.L3_L4, "rule1", "spec.ingress[0]")
    assert entries(c, DEATHSTAR) == {
        (HOST, IN, 0, 0, 0): localhost,
        (1111, IN, 6, 80, 16): rule1,  # tiefighter
        (5678, IN, 6, 80, 16): rule1,  # the deathstar itself is org=empire too
    }
    ds = c.endpoints[DEATHSTAR.id]
    assert (ds.ingress_enforced, ds.egress_enforced) == (True, False)
    assert ds.ingress_policies == ("default/rule1",)
    for other in (TIEFIGHTER, XWING, KUBEDNS):
        ep = c.endpoints[other.id]
        assert not ep.ingress_enforced and not ep.egress_enforced and not ep.entries

    v = trace(c, Local(TIEFIGHTER.id), Local(DEATHSTAR.id), 80, TCP)
    assert v.allowed and v.match_type is MatchType.L3_L4
    assert v.rule is not None and (v.rule.namespace, v.rule.name, v.rule.kind) == (
        "default",
        "rule1",
        "CiliumNetworkPolicy",
    )
    v = trace(c, Local(XWING.id), Local(DEATHSTAR.id), 80, TCP)
    assert not v.allowed and v.decided_by == "default deny" and v.rule is None
    assert v.ingress is not None and v.ingress.reason == "default deny"
    assert not allowed(c, Local(TIEFIGHTER.id), Local(DEATHSTAR.id), 443)
    assert not allowed(c, Local(TIEFIGHTER.id), Local(DEATHSTAR.id), 80, UDP)
    # Nothing restricts traffic towards the ships.
    assert allowed(c, Local(DEATHSTAR.id), Local(XWING.id), 22)
    assert allowed(c, Remote(HOST), Local(DEATHSTAR.id), 9999)


def test_deny_beats_allow_and_covered_allows_are_removed() -> None:
    allow_all = cnp(
        """\
        endpointSelector: {matchLabels: {class: deathstar}}
        ingress:
        - fromEndpoints: [{}]
        - fromEndpoints: [{matchLabels: {class: xwing}}]
          toPorts: [{ports: [{port: "80", protocol: TCP}]}]
        """,
        name="allow",
    )
    deny = cnp(
        """\
        endpointSelector: {matchLabels: {class: deathstar}}
        ingressDeny:
        - fromEndpoints: [{matchLabels: {org: alliance}}]
          toPorts: [{ports: [{port: "0", protocol: TCP}]}]
        - toPorts: [{ports: [{port: "22", protocol: TCP}]}]
        """,
        name="deny",
    )
    c = build(allow_all, deny)
    got = entries(c, DEATHSTAR)
    # xwing: L3 allow on all ports, L3 deny on TCP; the TCP/80 allow is covered -> removed.
    assert got[(2222, IN, 0, 0, 0)][:3] == (Action.ALLOW, MatchType.L3_ONLY, "allow")
    assert got[(2222, IN, 6, 0, 0)][:3] == (Action.DENY, MatchType.L3_PROTO, "deny")
    assert (2222, IN, 6, 80, 16) not in got
    # any peer: TCP/22 deny (L4-only)
    assert got[(0, IN, 6, 22, 16)][:3] == (Action.DENY, MatchType.L4_ONLY, "deny")

    xw, tf, ds = Local(XWING.id), Local(TIEFIGHTER.id), Local(DEATHSTAR.id)
    v = trace(c, xw, ds, 80)
    assert not v.allowed and v.rule is not None and v.rule.name == "deny"
    assert v.match_type is MatchType.L3_PROTO
    assert allowed(c, xw, ds, 53, UDP)  # deny was TCP only
    assert allowed(c, xw, ds, 8, ICMP)
    assert allowed(c, tf, ds, 443)
    v = trace(c, tf, ds, 22)
    assert not v.allowed and v.match_type is MatchType.L4_ONLY and v.rule is not None
    assert v.rule.section == "spec.ingressDeny[1]"


def test_deny_across_policies_at_the_same_key() -> None:
    allow = cnp(
        "endpointSelector: {}\ningress: [{fromEntities: [world], toPorts: [{ports: [{port: '443', protocol: TCP}]}]}]\n",
        name="a",
    )
    deny = cnp(
        "endpointSelector: {}\ningressDeny: [{fromEntities: [world], toPorts: [{ports: [{port: '443', protocol: TCP}]}]}]\n",
        name="b",
    )
    c = build(allow, deny)
    assert entries(c, XWING)[(WORLD, IN, 6, 443, 16)][:3] == (Action.DENY, MatchType.L3_L4, "b")
    assert not allowed(c, Remote(WORLD), Local(XWING.id), 443)


def test_cidr_with_except_and_ipcache() -> None:
    c = build(
        cnp(
            """\
            endpointSelector: {matchLabels: {class: xwing}}
            egress:
            - toCIDRSet:
              - cidr: 10.0.0.0/8
                except: [10.96.0.0/12]
              toPorts: [{ports: [{port: "443", protocol: TCP}]}]
            - toCIDR: [192.0.2.1/32]
            """
        ),
        options=CompileOptions(host_ips=("192.168.1.1",)),
    )
    ten, svc, one = (
        ipaddress.ip_network(n) for n in ("10.0.0.0/8", "10.96.0.0/12", "192.0.2.1/32")
    )
    ids = {net: c.ipcache[net] for net in (ten, svc, one)}
    assert all(i >= CIDR_IDENTITY_BASE for i in ids.values())
    assert len(set(ids.values())) == 3
    assert c.ipcache[ipaddress.ip_network("0.0.0.0/0")] == WORLD
    assert c.resolve_ip("10.1.2.3") == ids[ten]
    assert c.resolve_ip("10.97.0.1") == ids[svc]
    assert c.resolve_ip("8.8.8.8") == WORLD
    assert c.resolve_ip("192.168.1.1") == HOST
    assert c.resolve_ip("10.213.0.10") == DEATHSTAR.identity  # endpoint /32 beats nothing else
    assert "cidr:10.0.0.0/8" in c.identities[ids[ten]].to_strings()

    got = entries(c, XWING)
    assert set(got) == {(ids[ten], OUT, 6, 443, 16), (ids[one], OUT, 0, 0, 0)}
    xw = Local(XWING.id)
    assert allowed(c, xw, Remote(c.resolve_ip("10.1.2.3")), 443)
    assert not allowed(c, xw, Remote(c.resolve_ip("10.97.0.1")), 443)  # except
    assert not allowed(c, xw, Remote(c.resolve_ip("10.1.2.3")), 80)
    assert not allowed(c, xw, Remote(c.resolve_ip("8.8.8.8")), 443)  # world
    assert allowed(c, xw, Remote(c.resolve_ip("192.0.2.1")), 80)
    # CIDR rules never select in-cluster endpoints, even inside the prefix.
    assert not allowed(c, xw, Local(DEATHSTAR.id), 443)


def test_zero_cidr_selects_world_and_cidr_identities() -> None:
    c = build(
        cnp(
            """\
            endpointSelector: {matchLabels: {class: xwing}}
            egress:
            - toCIDRSet: [{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}]
            """
        )
    )
    ten = c.ipcache[ipaddress.ip_network("10.0.0.0/8")]
    got = entries(c, XWING)
    assert (WORLD, OUT, 0, 0, 0) in got and (ten, OUT, 0, 0, 0) not in got
    assert allowed(c, Local(XWING.id), Remote(c.resolve_ip("1.1.1.1")), 80)
    assert not allowed(c, Local(XWING.id), Remote(c.resolve_ip("10.0.0.1")), 80)


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        pytest.param("host", {HOST}, id="host"),
        pytest.param("remote-node", {6}, id="remote-node"),
        pytest.param("health", {4}, id="health"),
        pytest.param("kube-apiserver", {7}, id="kube-apiserver"),
        pytest.param("world", {WORLD, "cidr"}, id="world-includes-cidr"),
        pytest.param("cluster", {1, 3, 4, 5, 6, 7, 8, 5678, 1111, 2222, 3333, 4444}, id="cluster"),
        pytest.param("all", {0}, id="all-is-wildcard"),
        pytest.param("none", set(), id="none"),
    ],
)
def test_entities(entity: str, expected: set[object]) -> None:
    policy = cnp(
        f"""\
        endpointSelector: {{matchLabels: {{class: xwing}}}}
        egress:
        - toEntities: [{entity}]
        - toCIDR: [203.0.113.0/24]
          toPorts: [{{ports: [{{port: "1"}}]}}]
        """
    )
    # A remote identity known only through the identities mapping counts as cluster.
    c = compile_policies(
        load(policy), list(CAST), {4444: ["k8s:app=remote", "k8s:io.kubernetes.pod.namespace=x"]}
    )
    cidr_id = c.ipcache[ipaddress.ip_network("203.0.113.0/24")]
    want = {cidr_id if e == "cidr" else e for e in expected}
    got = {ident for (ident, d, proto, _, _) in entries(c, XWING) if proto == 0}
    assert got == want
    match = entries(c, XWING).get((0, OUT, 0, 0, 0))
    if entity == "all":
        assert match is not None and match[1] is MatchType.ALL


def test_port_ranges_protocols_and_icmp() -> None:
    c = build(
        cnp(
            """\
            endpointSelector: {matchLabels: {class: deathstar}}
            ingress:
            - fromEndpoints: [{matchLabels: {class: tiefighter}}]
              toPorts:
              - ports:
                - {port: "8000", endPort: 8080, protocol: TCP}
                - {port: "53"}
            - fromEndpoints: [{matchLabels: {class: xwing}}]
              icmps: [{fields: [{type: EchoRequest}]}]
            - fromEndpoints: [{matchLabels: {class: xwing}}]
              toPorts: [{ports: [{port: "0", protocol: UDP}]}]
            """
        )
    )
    got = entries(c, DEATHSTAR)
    tcp_range = {
        (port, plen) for (i, d, p, port, plen) in got if i == 1111 and p == 6 and port != 53
    }
    assert tcp_range == {(8000, 10), (8064, 12), (8080, 16)}  # 8000-8063, 8064-8079, 8080
    assert {p for (i, _, p, port, _) in got if i == 1111 and port == 53} == {6, 17, 132}
    assert got[(2222, IN, 1, 8, 16)][1] is MatchType.L3_L4
    assert got[(2222, IN, 17, 0, 0)][1] is MatchType.L3_PROTO

    tf, xw, ds = Local(TIEFIGHTER.id), Local(XWING.id), Local(DEATHSTAR.id)
    for port, ok in ((7999, False), (8000, True), (8047, True), (8080, True), (8081, False)):
        assert allowed(c, tf, ds, port) is ok, port
    assert allowed(c, tf, ds, 53, UDP) and allowed(c, tf, ds, 53, SCTP)
    assert not allowed(c, tf, ds, 8, ICMP)  # ANY means TCP/UDP/SCTP, not ICMP
    assert allowed(c, xw, ds, 8, ICMP) and not allowed(c, xw, ds, 0, ICMP)
    assert allowed(c, xw, ds, 12345, UDP) and not allowed(c, xw, ds, 12345, TCP)


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_prefixes_cover_exactly(a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    blocks = port_prefixes(lo, hi)
    covered = 0
    expected_lo = lo
    for port, plen in blocks:
        size = 1 << (16 - plen)
        assert port == expected_lo and port % size == 0  # contiguous and aligned
        expected_lo += size
        covered += size
    assert expected_lo == hi + 1 and covered == hi - lo + 1
    assert len(blocks) <= 30


def test_empty_rule_denies_all_and_enable_default_deny_false() -> None:
    deny_all = cnp("endpointSelector: {}\ningress: [{}]\n", name="deny-all")
    c = build(deny_all, options=CompileOptions(allow_localhost=False))
    for ep in (DEATHSTAR, TIEFIGHTER, XWING):
        assert c.endpoints[ep.id].ingress_enforced and not c.endpoints[ep.id].entries
    assert not c.endpoints[KUBEDNS.id].ingress_enforced  # other namespace
    assert not allowed(c, Remote(HOST), Local(XWING.id), 80)

    only_deny = cnp(
        """\
        endpointSelector: {}
        enableDefaultDeny: {egress: false}
        egressDeny: [{toEntities: [world]}]
        """,
        name="no-world",
    )
    c = build(only_deny)
    got = entries(c, XWING)
    assert got[(0, OUT, 0, 0, 0)] == (
        Action.ALLOW,
        MatchType.ALL,
        "no-world",
        "spec.enableDefaultDeny",
    )
    assert got[(WORLD, OUT, 0, 0, 0)][0] is Action.DENY
    assert allowed(c, Local(XWING.id), Local(DEATHSTAR.id), 80)
    assert not allowed(c, Local(XWING.id), Remote(WORLD), 80)


def test_default_deny_wins_over_default_allow_of_another_policy() -> None:
    soft = cnp(
        "endpointSelector: {}\nenableDefaultDeny: {ingress: false}\ningressDeny: []\n", name="soft"
    )
    hard = cnp("endpointSelector: {matchLabels: {class: xwing}}\ningress: []\n", name="hard")
    c = build(soft, hard, options=CompileOptions(allow_localhost=False))
    assert not entries(c, XWING)  # hard's default deny wins: no synthetic allow-all
    assert entries(c, TIEFIGHTER)[(0, IN, 0, 0, 0)][2] == "soft"


def test_kubernetes_network_policy() -> None:
    knp = textwrap.dedent(
        """\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: dns, namespace: kube-system}
        spec:
          podSelector: {matchLabels: {k8s-app: kube-dns}}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
              podSelector: {matchLabels: {org: empire}}
            ports: [{port: 53, protocol: UDP}]
          - from: [{namespaceSelector: {}}]
            ports: [{port: 9153}]
        """
    )
    c = build(knp)
    dns = Local(KUBEDNS.id)
    assert allowed(c, Local(TIEFIGHTER.id), dns, 53, UDP)
    assert not allowed(c, Local(XWING.id), dns, 53, UDP)
    assert allowed(c, Local(XWING.id), dns, 9153, TCP)  # any namespace, TCP default
    assert not allowed(c, Local(XWING.id), dns, 9153, UDP)
    assert not allowed(c, Remote(WORLD), dns, 9153, TCP)  # namespaceSelector = pods only
    v = trace(c, Local(TIEFIGHTER.id), dns, 53, UDP)
    assert v.rule is not None and v.rule.kind == "NetworkPolicy"
    assert v.rule.policy_labels()[0] == "k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"


def test_audit_mode() -> None:
    deny = cnp(
        "endpointSelector: {matchLabels: {class: deathstar}}\ningressDeny: [{fromEntities: [world]}]\n"
    )
    c = build(SW_POLICY, deny, options=CompileOptions(audit_mode=True))
    assert entries(c, DEATHSTAR)[(WORLD, IN, 0, 0, 0)][0] is Action.AUDIT
    v = trace(c, Remote(WORLD), Local(DEATHSTAR.id), 80)
    assert v.allowed and v.audited and v.rule is not None
    v = trace(c, Local(XWING.id), Local(DEATHSTAR.id), 80)
    assert v.allowed and v.audited and v.decided_by == "default deny"
    v = trace(c, Local(TIEFIGHTER.id), Local(DEATHSTAR.id), 80)
    assert v.allowed and not v.audited


def test_endpoints_share_entry_maps_and_compiler_errors() -> None:
    twin = EndpointView.create(20, 1111, "default", ["k8s:org=empire", "k8s:class=tiefighter"])
    c = build(
        cnp("endpointSelector: {}\ningress: [{fromEntities: [cluster]}]\n"), endpoints=[*CAST, twin]
    )
    assert c.endpoints[twin.id].entries is c.endpoints[TIEFIGHTER.id].entries
    with pytest.raises(PolicyError, match="duplicate policy"):
        compile_policies(load(SW_POLICY) * 2, list(CAST), {})
    with pytest.raises(PolicyError, match="duplicate endpoint"):
        compile_policies([], [XWING, XWING], {})


def test_policy_key_bits() -> None:
    k80 = PolicyKey(5000, IN, 6, 80, 16)
    k_range = PolicyKey(5000, IN, 6, 80, 15)  # 80-81
    k_tcp = PolicyKey(5000, IN, 6, 0, 0)
    k_any = PolicyKey(5000, IN)
    assert (
        k80.lpm_prefix_len,
        k_range.lpm_prefix_len,
        k_tcp.lpm_prefix_len,
        k_any.lpm_prefix_len,
    ) == (24, 23, 8, 0)
    assert k80.bpf_prefix_len == 64 and k_any.bpf_prefix_len == 40
    assert k_range.port_range == (80, 81) and k_tcp.port_range == (0, 65535)
    assert k_any.covers(k80) and k_tcp.covers(k_range) and k_range.covers(k80)
    assert not k80.covers(k_range) and not PolicyKey(5000, IN, 17).covers(k80)
    assert k_range.matches(6, 81) and not k_range.matches(6, 82) and not k_range.matches(17, 80)
    assert k_any.matches(1, 8)
    assert str(k_range) == "ingress 5000 TCP/80-81"
    assert str(PolicyKey(WORLD, OUT, 1, 8, 16)) == "egress world ICMP type 8"


# --------------------------------------------------------------------------- incremental


def _canonical(c: CompiledPolicy) -> dict[int, tuple[object, ...]]:
    """Everything an endpoint's maps say, with rule ids replaced by what they name."""
    out: dict[int, tuple[object, ...]] = {}
    for ep_id, ep in c.endpoints.items():
        ent = {
            (
                k.identity if k.identity < CIDR_IDENTITY_BASE else "cidr",
                k.direction,
                k.protocol,
                k.port,
                k.port_prefix_len,
            ): (
                e.action,
                e.match_type,
                c.rules[e.rule_id],
            )
            for k, e in ep.entries.items()
        }
        out[ep_id] = (ep.ingress_enforced, ep.egress_enforced, ep.identity, ent)
    return out


def test_incremental_recompile_matches_fresh_and_diff_is_minimal() -> None:
    policies = load(
        SW_POLICY,
        cnp(
            """\
            endpointSelector: {matchLabels: {class: xwing}}
            egress:
            - toEndpoints: [{matchLabels: {org: alliance}}]
            - toCIDR: [198.51.100.0/24]
            """,
            name="rebels",
        ),
    )
    first = compile_policies(policies, list(CAST), {})
    assert diff(first, first).is_empty

    # A new empire endpoint (new identity) appears: only the deathstar map changes.
    bomber = EndpointView.create(14, 7777, "default", ["k8s:org=empire", "k8s:class=bomber"])
    second = compile_policies(policies, [*CAST, bomber], {}, previous=first)
    assert _canonical(second) == _canonical(compile_policies(policies, [*CAST, bomber], {}))
    d = diff(first, second)
    assert set(d.endpoints) == {DEATHSTAR.id, bomber.id}
    ds = d.endpoints[DEATHSTAR.id]
    assert [(k.identity, k.port) for k in ds.upserts] == [(7777, 80)] and not ds.deletes
    assert d.endpoints[bomber.id].created and not d.endpoints[bomber.id].upserts
    assert second.endpoints[XWING.id].entries is first.endpoints[XWING.id].entries
    assert second.rules == first.rules and not d.rule_upserts

    # The xwing changes sides (label change -> new identity): its own map and the
    # deathstar's change; the rule ids and CIDR identities keep their numbers.
    turned = EndpointView.create(12, 8888, "default", ["k8s:org=empire", "k8s:class=xwing"])
    eps = [DEATHSTAR, TIEFIGHTER, turned, KUBEDNS, bomber]
    third = compile_policies(policies, eps, {}, previous=second)
    assert _canonical(third) == _canonical(compile_policies(policies, eps, {}))
    d = diff(second, third)
    assert set(d.endpoints) == {DEATHSTAR.id, XWING.id}
    assert {k.identity for k in d.endpoints[DEATHSTAR.id].upserts} == {8888}
    assert d.endpoints[XWING.id].flags_changed  # identity changed, no longer egress-enforced
    cidr = ipaddress.ip_network("198.51.100.0/24")
    assert third.ipcache[cidr] == second.ipcache[cidr]
    assert ipaddress.ip_network("10.213.0.12/32") in d.ipcache_deletes  # turned has no address

    # A policy is added: existing rule ids stay, the new ones are appended.
    extra = load(
        cnp(
            "endpointSelector: {matchLabels: {class: tiefighter}}\negress: [{toEntities: [world]}]\n",
            name="tie",
        )
    )
    fourth = compile_policies([*policies, *extra], eps, {}, previous=third)
    for rid, ref in third.rules.items():
        assert fourth.rules[rid] == ref
    d = diff(third, fourth)
    assert set(d.endpoints) == {TIEFIGHTER.id}
    assert len(d.rule_upserts) == 1 and not d.rule_deletes

    # Endpoint removed and a policy deleted.
    fifth = compile_policies(extra, [DEATHSTAR, TIEFIGHTER], {}, previous=fourth)
    d = diff(fourth, fifth)
    assert d.endpoints[KUBEDNS.id].removed
    assert d.endpoints[DEATHSTAR.id].deletes and not d.endpoints[DEATHSTAR.id].upserts
    assert set(d.rule_deletes) == set(fourth.rules) - set(fifth.rules)
    assert ipaddress.ip_network("198.51.100.0/24") in d.ipcache_deletes
    assert _canonical(fifth) == _canonical(compile_policies(extra, [DEATHSTAR, TIEFIGHTER], {}))

    # From nothing: every entry is an upsert.
    d = diff(None, first)
    assert d.entry_writes() == first.total_entries()
