"""The pure parts of the agent's policy code: repository, stable ids, datapath image,
persistence, and the CLI's argument parsing. (Enforcement itself is tested on real BPF maps
in tests/privileged/policy.)"""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from hubblectl.cli.policy import parse_dport, split_policy_key
from hubblectl.errors import UsageError
from observer.agent.policy import (
    DEFAULT_DENY_POLICY,
    PolicyAmbiguous,
    PolicyNotFound,
    Repository,
    StableIds,
    build_image,
    endpoint_view,
    policy_host_ips,
    repository_from_json,
    repository_to_json,
    resolve_policy,
    selected_endpoints,
    stable_ids_for,
)
from observer.bpf import policymaps as pm
from observer.datapath.endpoints import Endpoint
from observer.datapath.labels import endpoint_labels
from observer.errors import PolicyError
from observer.policy import compile_policies, load_policies
from observer.policy.entities import CIDR_IDENTITY_BASE

REPO = Path(__file__).resolve().parents[3]
SW = (REPO / "examples" / "policies" / "sw_l3_l4_policy.yaml").read_text()


def _ep(id_: int, name: str, identity: int, ip: str, *labels: str, ns: str = "default") -> Endpoint:
    return Endpoint(
        id=id_,
        namespace=ns,
        name=name,
        labels=endpoint_labels(ns, labels, "default"),
        identity=identity,
        ipv4=ip,
        ipv6=f"fd00:246::{id_}",
        netns=f"t-{name}",
        host_ifname=f"lxc{id_}",
        host_ifindex=100 + id_,
        host_mac="02:00:00:00:00:01",
        mac="02:00:00:00:00:02",
        created=0,
    )


DEATHSTAR = _ep(1, "deathstar", 1000, "10.246.1.1", "org=empire", "class=deathstar")
TIEFIGHTER = _ep(2, "tiefighter", 1001, "10.246.1.2", "org=empire", "class=tiefighter")
XWING = _ep(3, "xwing", 1002, "10.246.1.3", "org=alliance", "class=xwing")
EPS = [DEATHSTAR, TIEFIGHTER, XWING]


def _doc(kind: str, ns: str, name: str, selector: str = "class: deathstar", extra: str = "") -> str:
    meta = f"{{name: {name}, namespace: {ns}}}" if ns else f"{{name: {name}}}"
    if kind == "NetworkPolicy":
        return textwrap.dedent(f"""\
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {meta}
            spec:
              podSelector: {{matchLabels: {{{selector}}}}}
              policyTypes: [Ingress]
            """)
    return textwrap.dedent(f"""\
        apiVersion: cilium.io/v2
        kind: {kind}
        metadata: {meta}
        spec:
          endpointSelector: {{matchLabels: {{{selector}}}}}
          ingress: [{{}}]{extra}
        """)


def _compile(text: str, eps: list[Endpoint] = EPS):  # type: ignore[no-untyped-def]
    return compile_policies(
        load_policies(text, "t.yaml") if text else [],
        [endpoint_view(e) for e in eps],
        {e.identity: e.labels for e in eps},
    )


# --------------------------------------------------------------------------- repository


def test_apply_creates_updates_and_leaves_unchanged() -> None:
    repo0 = Repository()
    repo1, changes = repo0.with_applied(load_policies(SW, "a.yaml"))
    assert [(c.policy.name, c.action, c.policy.revision) for c in changes] == [
        ("rule1", "created", 1)
    ]
    assert repo1.revision == 1

    same, changes = repo1.with_applied(load_policies(SW, "b.yaml"))  # other file, same content
    assert same is repo1 and [c.action for c in changes] == ["unchanged"]

    edited = SW.replace('port: "80"', 'port: "8080"')
    repo2, changes = repo1.with_applied(load_policies(edited, "a.yaml"))
    assert [(c.action, c.policy.revision) for c in changes] == [("updated", 2)]
    assert repo2.revision == 2 and len(repo2.policies) == 1

    repo3 = repo2.without(changes[0].policy)
    assert repo3.revision == 3 and not repo3.policies


def test_the_same_policy_in_two_files_is_rejected() -> None:
    a = load_policies(SW, "a.yaml")
    b = load_policies(SW, "b.yaml")
    with pytest.raises(
        PolicyError, match=r"b\.yaml: document 1: metadata\.name: .*also defined in a\.yaml"
    ):
        Repository().with_applied([*a, *b])


RESOLVE_CASES = [
    ("ns-name", "default/p", "", ("CiliumNetworkPolicy", "default")),
    ("name-prefers-clusterwide", "cw", "", ("CiliumClusterwideNetworkPolicy", "")),
    ("name-falls-back-to-default", "only-default", "", ("CiliumNetworkPolicy", "default")),
    ("kind-alias", "default/shared", "netpol", ("NetworkPolicy", "default")),
    ("kind-full-name", "default/shared", "CiliumNetworkPolicy", ("CiliumNetworkPolicy", "default")),
]


@pytest.fixture
def mixed_repo() -> Repository:
    text = "---\n".join(
        [
            _doc("CiliumNetworkPolicy", "default", "p"),
            _doc("CiliumClusterwideNetworkPolicy", "", "cw"),
            _doc("CiliumNetworkPolicy", "default", "cw"),
            _doc("CiliumNetworkPolicy", "default", "only-default"),
            _doc("CiliumNetworkPolicy", "default", "shared"),
            _doc("NetworkPolicy", "default", "shared"),
        ]
    )
    repo, _ = Repository().with_applied(load_policies(text, "m.yaml"))
    return repo


@pytest.mark.parametrize(
    ("key", "kind", "want"), [c[1:] for c in RESOLVE_CASES], ids=[c[0] for c in RESOLVE_CASES]
)
def test_resolve_policy(mixed_repo: Repository, key: str, kind: str, want: tuple[str, str]) -> None:
    p = resolve_policy(mixed_repo, key, kind)
    assert (str(p.kind), p.namespace) == want


@pytest.mark.parametrize(
    ("key", "kind", "error"),
    [
        ("default/nope", "", PolicyNotFound),
        ("default/shared", "", PolicyAmbiguous),
        ("default/p", "ccnp", PolicyNotFound),
        ("default/p", "bogus", PolicyError),
        ("a/b/c", "", PolicyError),
    ],
    ids=["missing", "ambiguous", "wrong-kind", "unknown-kind", "bad-key"],
)
def test_resolve_policy_errors(
    mixed_repo: Repository, key: str, kind: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        resolve_policy(mixed_repo, key, kind)


def test_selected_endpoints_respects_namespace() -> None:
    other_ns = _ep(4, "deathstar", 1003, "10.246.1.4", "org=empire", "class=deathstar", ns="other")
    (policy,) = load_policies(SW, "sw.yaml")
    assert selected_endpoints(policy, [*EPS, other_ns]) == ("default/deathstar",)


# --------------------------------------------------------------------------- stable ids


def test_stable_ids_keep_numbers_and_forget_the_gone() -> None:
    net_a, net_b = ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.0/24")
    k1, k2, k3 = ("k", "ns", "a", "s0"), ("k", "ns", "a", "s1"), ("k", "ns", "b", "s0")
    ids = StableIds().updated([k2, k1], [net_b, net_a])
    assert dict(ids.rules) == {k1: 1, k2: 2}
    assert dict(ids.cidrs) == {net_a: CIDR_IDENTITY_BASE, net_b: CIDR_IDENTITY_BASE + 1}
    again = ids.updated([k1, k2], [net_a, net_b])
    assert again is ids
    later = ids.updated([k2, k3], [net_b])
    assert dict(later.rules) == {k2: 2, k3: 3}  # k1 gone, numbers never reused
    assert dict(later.cidrs) == {net_b: CIDR_IDENTITY_BASE + 1}
    assert StableIds.from_json(later.to_json()) == later


# --------------------------------------------------------------------------- image


def test_image_of_the_star_wars_policy() -> None:
    compiled = _compile(SW)
    ids = stable_ids_for(compiled, StableIds())
    img = build_image(compiled, ids)
    assert dict(img.flags) == {DEATHSTAR.id: pm.EP_INGRESS}
    assert set(img.entries) == {DEATHSTAR.id}
    decoded = {}
    for key, value in img.entries[DEATHSTAR.id].items():
        f = pm.unpack_policy_key(key)
        action, match_type, lpm, _pad, rule_id = pm.POLICY_ENTRY.unpack(value)
        assert f.ep_id == 0 and f.generation == 0
        decoded[
            (f.identity, f.direction, f.protocol, f.port, f.prefixlen - pm.POLICY_EXACT_BITS)
        ] = (
            action,
            match_type,
            lpm,
            rule_id,
        )
    rule1 = ids.rules[("CiliumNetworkPolicy", "default", "rule1", "spec.ingress[0]")]
    for empire in (DEATHSTAR.identity, TIEFIGHTER.identity):
        assert decoded[(empire, 1, 6, 80, 24)] == (pm.ACTION_ALLOW, 2, 24, rule1)
    assert all(k[0] != XWING.identity for k in decoded)
    # the endpoint addresses resolve to their identities in the ipcache, the rest to world
    cache = {
        pm.unpack_ipcache_key(k)[1]: pm.IPCACHE_VALUE.unpack(v)[0] for k, v in img.ipcache.items()
    }
    assert cache[ipaddress.ip_network("10.246.1.3/32")] == XWING.identity
    assert (
        cache[ipaddress.ip_network("0.0.0.0/0")] == 2 and cache[ipaddress.ip_network("::/0")] == 2
    )


def test_image_uses_stable_cidr_identities() -> None:
    text = SW + textwrap.dedent("""\
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: out, namespace: default}
        spec:
          endpointSelector: {matchLabels: {class: xwing}}
          egress: [{toCIDR: [192.0.2.0/24]}]
        """)
    compiled = _compile(text)
    net = ipaddress.ip_network("192.0.2.0/24")
    seeded = StableIds(cidrs={net: CIDR_IDENTITY_BASE + 41}, next_cidr=CIDR_IDENTITY_BASE + 42)
    ids = stable_ids_for(compiled, seeded)
    assert ids.cidrs[net] == CIDR_IDENTITY_BASE + 41
    img = build_image(compiled, ids)
    cache = {
        pm.unpack_ipcache_key(k)[1]: pm.IPCACHE_VALUE.unpack(v)[0] for k, v in img.ipcache.items()
    }
    assert cache[net] == CIDR_IDENTITY_BASE + 41
    idents = {pm.unpack_policy_key(k).identity for k in img.entries[XWING.id]}
    assert CIDR_IDENTITY_BASE + 41 in idents
    assert compiled.ipcache[net] != CIDR_IDENTITY_BASE + 41  # the compiler numbered it otherwise
    assert compiled.ipcache[net] not in idents


def test_endpoints_with_the_same_policy_share_packed_entries() -> None:
    twin = _ep(4, "deathstar-2", DEATHSTAR.identity, "10.246.1.4", "org=empire", "class=deathstar")
    compiled = _compile(SW, [*EPS, twin])
    img = build_image(compiled, stable_ids_for(compiled, StableIds()))
    assert img.entries[DEATHSTAR.id] is img.entries[twin.id]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            pm.DatapathImage({1: 1}, {1: {b"k": b"v"}}, {b"c": b"i"}),
            pm.DatapathImage({1: 1}, {1: {b"k": b"v"}}, {b"c": b"i"}),
            True,
        ),
        (pm.DatapathImage({1: 1}), pm.DatapathImage({1: 3}), False),
        (pm.DatapathImage({}, {1: {b"k": b"v"}}), pm.DatapathImage({}, {1: {b"k": b"w"}}), False),
        (pm.DatapathImage({}, {}, {b"c": b"i"}), pm.DatapathImage(), False),
        (pm.DatapathImage({}, {1: {}}), pm.DatapathImage(), False),
    ],
    ids=["equal", "flags", "entry-value", "ipcache", "endpoint-set"],
)
def test_image_comparison(a: pm.DatapathImage, b: pm.DatapathImage, same: bool) -> None:
    assert a.same_as(b) is same and b.same_as(a) is same


# --------------------------------------------------------------------------- persistence


def test_repository_round_trips_through_json() -> None:
    text = SW + "---\n" + _doc("NetworkPolicy", "default", "np", "class: xwing")
    repo, _ = Repository().with_applied(load_policies(text, "sw.yaml"))
    ids = StableIds().updated([("a", "b", "c", "d")], [ipaddress.ip_network("10.0.0.0/8")])
    back, back_ids = repository_from_json(repository_to_json(repo, ids), "policies.json")
    assert back.revision == repo.revision
    assert back_ids == ids
    assert set(back.policies) == set(repo.policies)
    for key, p in repo.policies.items():
        q = back.policies[key]
        assert (q.revision, q.filename, q.document_index) == (
            p.revision,
            p.filename,
            p.document_index,
        )
        assert q.specs == p.specs


def test_a_stored_policy_that_no_longer_loads_is_an_error() -> None:
    repo, _ = Repository().with_applied(load_policies(SW, "sw.yaml"))
    doc = repository_to_json(repo, StableIds())
    doc["policies"][0]["yaml"] = doc["policies"][0]["yaml"].replace("'80'", "'70000'")
    with pytest.raises(PolicyError, match=r"policies\.json: stored policy 0 no longer loads"):
        repository_from_json(doc, "policies.json")


def test_host_ips_leave_link_local_out() -> None:
    got = policy_host_ips(["10.0.0.5", "fe80::1", "169.254.1.1", "::1", "2001:db8::0:1", "junk"])
    assert got == ("10.0.0.5", "2001:db8::1", "::1")


def test_default_deny_names_itself() -> None:
    assert DEFAULT_DENY_POLICY["name"] == "default deny"


# --------------------------------------------------------------------------- CLI parsing


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("80", (80, "tcp")),
        ("80/tcp", (80, "tcp")),
        ("53/UDP", (53, "udp")),
        ("8/icmp", (8, "icmp")),
        ("0/sctp", (0, "sctp")),
    ],
    ids=["bare", "tcp", "udp-upper", "icmp-type", "sctp"],
)
def test_parse_dport(text: str, want: tuple[int, str]) -> None:
    assert parse_dport(text) == want


@pytest.mark.parametrize(
    "text",
    ["x/tcp", "80/gre", "70000/tcp", "300/icmp", ""],
    ids=["nan", "proto", "range", "icmp-range", "empty"],
)
def test_parse_dport_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_dport(text)


@pytest.mark.parametrize(
    ("key", "want"),
    [("default/rule1", ("default", "rule1")), ("cw", ("", "cw"))],
    ids=["namespaced", "bare"],
)
def test_split_policy_key(key: str, want: tuple[str, str]) -> None:
    assert split_policy_key(key) == want


@pytest.mark.parametrize(
    "key", ["/x", "x/", "a/b/c", ""], ids=["no-ns", "no-name", "deep", "empty"]
)
def test_split_policy_key_rejects(key: str) -> None:
    with pytest.raises(UsageError):
        split_policy_key(key)
