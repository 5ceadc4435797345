"""load_policies: the error table (file, document, field path; nothing loaded) and the
translation of Cilium / Kubernetes documents into the model."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest
import yaml

from observer.errors import PolicyError
from observer.policy import (
    Action,
    Direction,
    IcmpRule,
    PeerKind,
    PeerSelector,
    PolicyKind,
    PolicyLoadError,
    PortRule,
    Protocol,
    load_policies,
    policy_to_dict,
)
from observer.policy.selectors import Operator, Requirement

GOOD = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: good
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: web}
"""


def cnp(body: str, name: str = "p") -> str:
    """A CiliumNetworkPolicy document whose spec is ``body`` (indented YAML)."""
    return (
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
        f"metadata:\n  name: {name}\n  namespace: default\nspec:\n"
        + textwrap.indent(textwrap.dedent(body), "  ")
    )


def two_docs(second: str) -> str:
    return GOOD + "---\n" + second


ERROR_CASES = [
    pytest.param(
        GOOD + "---\napiVersion: cilium.io/v2\nkind: a: b\n",
        2,
        "",
        "line 12, column 8: invalid YAML: mapping values are not allowed",
        12,
        id="bad-yaml-line-number",
    ),
    pytest.param(
        "a: b\n  c: d\n",
        1,
        "",
        "line 2, column 4: invalid YAML: mapping values are not allowed",
        2,
        id="bad-yaml-first-document",
    ),
    pytest.param(
        two_docs(
            cnp(
                """\
                endpointSelector:
                  matchExpressions:
                  - {key: app, operator: Maybe, values: [x]}
                """
            )
        ),
        2,
        "spec.endpointSelector.matchExpressions[0].operator",
        "unknown operator 'Maybe'",
        19,
        id="bad-selector-operator",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - fromEndpoints:
              - matchExpressions:
                - {key: app, operator: Exists, values: [x]}
            """
        ),
        1,
        "spec.ingress[0].fromEndpoints[0].matchExpressions[0].values",
        "operator Exists takes no values",
        None,
        id="exists-with-values",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - fromEndpoints:
              - matchExpressions:
                - {key: app, operator: In}
            """
        ),
        1,
        "spec.ingress[0].fromEndpoints[0].matchExpressions[0].values",
        "operator In needs at least one value",
        None,
        id="in-without-values",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector:
              matchLabels: {"app": "bad value!"}
            """
        ),
        1,
        "spec.endpointSelector.matchLabels.app",
        "must consist of",
        None,
        id="bad-label-value",
    ),
    pytest.param(
        two_docs(
            cnp(
                """\
                endpointSelector: {}
                egress:
                - toCIDRSet:
                  - cidr: 10.0.0.0/8
                  - cidr: 10.300.0.0/16
                """
            )
        ),
        2,
        "spec.egress[0].toCIDRSet[1].cidr",
        "invalid CIDR '10.300.0.0/16'",
        None,
        id="bad-cidr",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            egress:
            - toCIDRSet:
              - cidr: 10.0.0.0/16
                except: [10.1.0.0/24]
            """
        ),
        1,
        "spec.egress[0].toCIDRSet[0].except[0]",
        "10.1.0.0/24 is not inside 10.0.0.0/16",
        None,
        id="except-outside-cidr",
    ),
    pytest.param(
        two_docs(
            cnp(
                """\
                endpointSelector: {}
                ingress:
                - toPorts:
                  - ports:
                    - port: "80"
                  - ports:
                    - port: "70000"
                      protocol: TCP
                """
            )
        ),
        2,
        "spec.ingress[0].toPorts[1].ports[0].port",
        "port 70000 out of range 0-65535",
        None,
        id="port-out-of-range",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - toPorts:
              - ports:
                - {port: "8080", endPort: 8000, protocol: TCP}
            """
        ),
        1,
        "spec.ingress[0].toPorts[0].ports[0].endPort",
        "endPort 8000 is less than port 8080",
        None,
        id="end-port-below-port",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - toPorts:
              - ports:
                - {port: http, protocol: TCP}
            """
        ),
        1,
        "spec.ingress[0].toPorts[0].ports[0].port",
        "named port 'http' is not supported",
        None,
        id="named-port",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - toPorts:
              - ports:
                - {port: "53", protocol: ICMP}
            """
        ),
        1,
        "spec.ingress[0].toPorts[0].ports[0].protocol",
        "unsupported protocol 'ICMP' (want TCP, UDP, SCTP or ANY) (ICMP goes in icmps)",
        None,
        id="icmp-as-port-protocol",
    ),
    pytest.param(
        two_docs(
            cnp(
                """\
                endpointSelector: {}
                ingress:
                - fromEndpoints: [{}]
                  fromPorts: []
                """
            )
        ),
        2,
        "spec.ingress[0].fromPorts",
        "unknown field",
        None,
        id="unknown-field-in-rule",
    ),
    pytest.param(
        GOOD.replace("metadata:\n", "metadata:\n  nmae: x\n"),
        1,
        "metadata.nmae",
        "unknown field",
        None,
        id="unknown-field-in-metadata",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - fromEndpoints: [{}]
              toPorts:
              - ports: [{port: "80", protocol: TCP}]
                rules:
                  http: [{method: GET}]
            """
        ),
        1,
        "spec.ingress[0].toPorts[0].rules",
        "L7 rules (http/dns/kafka) are not supported yet",
        None,
        id="l7-http-unsupported",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            egress:
            - toFQDNs: [{matchName: cilium.io}]
            """
        ),
        1,
        "spec.egress[0].toFQDNs",
        "toFQDNs is not supported yet",
        None,
        id="fqdn-unsupported",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - fromRequires: [{matchLabels: {env: prod}}]
            """
        ),
        1,
        "spec.ingress[0].fromRequires",
        "fromRequires is not supported yet",
        None,
        id="from-requires-unsupported",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            egress:
            - toServices: [{k8sService: {serviceName: x, namespace: y}}]
            """
        ),
        1,
        "spec.egress[0].toServices",
        "toServices is not supported yet",
        None,
        id="to-services-unsupported",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - fromEntities: [galaxy]
            """
        ),
        1,
        "spec.ingress[0].fromEntities[0]",
        "unknown entity 'galaxy'",
        None,
        id="unknown-entity",
    ),
    pytest.param(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - fromEndpoints: [{}]
              toPorts: [{ports: [{port: "80"}]}]
              icmps: [{fields: [{type: 8}]}]
            """
        ),
        1,
        "spec.ingress[0].icmps",
        "icmps block may only be present without toPorts",
        None,
        id="icmps-with-toports",
    ),
    pytest.param(
        cnp("ingress: []\n"),
        1,
        "spec.endpointSelector",
        "required",
        None,
        id="missing-endpoint-selector",
    ),
    pytest.param(
        GOOD.replace("name: good\n", "name: good\n  name: again\n"),
        1,
        "metadata",
        "duplicate key 'name'",
        5,
        id="duplicate-yaml-key",
    ),
    pytest.param(
        GOOD + "---\n" + GOOD,
        2,
        "metadata.name",
        "duplicate CiliumNetworkPolicy default/good (also in document 1)",
        None,
        id="duplicate-policy",
    ),
    pytest.param(
        GOOD.replace("cilium.io/v2", "cilium.io/v1"),
        1,
        "apiVersion",
        "want cilium.io/v2",
        None,
        id="wrong-api-version",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
        1,
        "kind",
        "unsupported kind 'Pod'",
        None,
        id="unsupported-kind",
    ),
    pytest.param(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n"
        "spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n"
        "      podSelector: {}\n",
        1,
        "spec.ingress[0].from[0].ipBlock",
        "ipBlock cannot be combined",
        None,
        id="k8s-ipblock-with-selector",
    ),
    pytest.param(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n"
        "spec:\n  podSelector: {}\n  policyTypes: [Ingress, Sideways]\n",
        1,
        "spec.policyTypes[1]",
        "unknown policy type 'Sideways'",
        None,
        id="k8s-bad-policy-type",
    ),
    pytest.param(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n"
        "spec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 80, protocol: ANY}]\n",
        1,
        "spec.ingress[0].ports[0].protocol",
        "unsupported protocol 'ANY' (want TCP, UDP or SCTP)",
        None,
        id="k8s-any-protocol",
    ),
    pytest.param(
        "apiVersion: v1\nkind: List\nitems:\n- " + GOOD.replace("\n", "\n  ").rstrip() + "\n"
        "- apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  metadata: {name: b}\n"
        "  spec:\n    endpointSelector: {}\n    egress:\n    - toEntities: [wrld]\n",
        1,
        "items[1].spec.egress[0].toEntities[0]",
        "unknown entity 'wrld'",
        None,
        id="list-item-path",
    ),
    pytest.param(
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\n"
        "metadata: {name: x, namespace: default}\nspec: {endpointSelector: {}}\n",
        1,
        "metadata.namespace",
        "a clusterwide policy has no namespace",
        None,
        id="ccnp-with-namespace",
    ),
    pytest.param(
        "!!python/object/apply:os.system [echo hi]\n",
        1,
        "",
        "invalid YAML",
        1,
        id="unsafe-tag-refused",
    ),
]


@pytest.mark.parametrize(("text", "document", "path", "message", "line"), ERROR_CASES)
def test_load_errors(text: str, document: int, path: str, message: str, line: int | None) -> None:
    result = None
    with pytest.raises(PolicyLoadError) as info:
        result = load_policies(text, "policy.yaml")
    assert result is None  # nothing loaded, not even the good documents
    err = info.value
    assert isinstance(err, PolicyError)
    assert err.filename == "policy.yaml"
    assert err.document == document
    assert err.path == path
    assert message in err.message
    prefix = f"policy.yaml: document {document}: " + (f"{path}: " if path else "")
    assert str(err).startswith(prefix), str(err)
    if line is not None:
        assert err.line == line


def test_error_message_shape_from_brief() -> None:
    text = two_docs(
        cnp(
            """\
            endpointSelector: {}
            ingress:
            - toPorts:
              - ports:
                - port: "70000"
            """
        )
    )
    with pytest.raises(PolicyLoadError) as info:
        load_policies(text, "policy.yaml")
    assert str(info.value) == (
        "policy.yaml: document 2: spec.ingress[0].toPorts[0].ports[0].port: "
        "port 70000 out of range 0-65535"
    )
    assert info.value.line == 21  # absolute line in the file


# --------------------------------------------------------------------------- translation


def test_star_wars_example_file() -> None:
    repo = Path(__file__).resolve().parents[3]
    text = (repo / "examples/policies/sw_l3_l4_policy.yaml").read_text()
    (policy,) = load_policies(text, "sw_l3_l4_policy.yaml")
    assert (policy.kind, policy.namespace, policy.name) == (PolicyKind.CNP, "default", "rule1")
    (spec,) = policy.specs
    assert spec.enforce == {Direction.INGRESS} == spec.default_deny
    (rule,) = spec.rules
    assert rule.action is Action.ALLOW and rule.path == "spec.ingress[0]"
    assert rule.ports == (PortRule(80, None, Protocol.TCP),)
    (peer,) = rule.peers
    assert peer.kind is PeerKind.ENDPOINTS and peer.selector is not None
    assert set(peer.selector.requirements) == {
        Requirement("any", "org", Operator.IN, ("empire",)),
        Requirement("k8s", "io.kubernetes.pod.namespace", Operator.IN, ("default",)),
    }


def _one(text: str):  # type: ignore[no-untyped-def]
    (policy,) = load_policies(text, "t.yaml")
    return policy


@pytest.mark.parametrize(
    ("body", "enforce", "default_deny", "n_rules", "peers"),
    [
        pytest.param("endpointSelector: {}\n", set(), set(), 0, None, id="no-sections"),
        pytest.param(
            "endpointSelector: {}\ningress: [{}]\n",
            {Direction.INGRESS},
            {Direction.INGRESS},
            1,
            (),
            id="empty-rule-selects-nothing",
        ),
        pytest.param(
            "endpointSelector: {}\ningress: []\n",
            {Direction.INGRESS},
            {Direction.INGRESS},
            0,
            None,
            id="empty-list-enforces",
        ),
        pytest.param(
            "endpointSelector: {}\negress:\n",
            {Direction.EGRESS},
            {Direction.EGRESS},
            0,
            None,
            id="null-section-enforces",
        ),
        pytest.param(
            "endpointSelector: {}\ningressDeny: [{fromEntities: [world]}]\n",
            {Direction.INGRESS},
            {Direction.INGRESS},
            1,
            (PeerSelector.entity_named("world"),),
            id="deny-only-enforces",
        ),
        pytest.param(
            "endpointSelector: {}\nenableDefaultDeny: {ingress: false}\n"
            "ingressDeny: [{fromEntities: [world]}]\n",
            {Direction.INGRESS},
            set(),
            1,
            (PeerSelector.entity_named("world"),),
            id="enable-default-deny-false",
        ),
        pytest.param(
            "endpointSelector: {}\ningress: [{toPorts: [{ports: [{port: '80'}]}]}]\n",
            {Direction.INGRESS},
            {Direction.INGRESS},
            1,
            (PeerSelector.any(),),
            id="ports-only-any-peer",
        ),
        pytest.param(
            "endpointSelector: {}\ningress: [{fromEndpoints: [], toPorts: [{ports: [{port: '80'}]}]}]\n",
            {Direction.INGRESS},
            {Direction.INGRESS},
            1,
            (),
            id="empty-peer-list-selects-nothing",
        ),
    ],
)
def test_cilium_enforcement_semantics(
    body: str,
    enforce: set[Direction],
    default_deny: set[Direction],
    n_rules: int,
    peers: tuple[PeerSelector, ...] | None,
) -> None:
    (spec,) = _one(cnp(body)).specs
    assert spec.enforce == enforce
    assert spec.default_deny == default_deny
    assert len(spec.rules) == n_rules
    if peers is not None:
        assert spec.rules[0].peers == peers


def test_cilium_ports_icmps_cidrs_entities() -> None:
    policy = _one(
        cnp(
            """\
            endpointSelector: {matchLabels: {"k8s:app": api}}
            egress:
            - toCIDR: [192.0.2.7, "10.0.0.0/8"]
              toCIDRSet:
              - {cidr: 172.16.0.0/12, except: [172.16.1.0/24]}
              toEntities: [world, host]
              toPorts:
              - ports:
                - {port: "8000", endPort: 8080, protocol: tcp}
                - {port: "53", protocol: ANY}
                - {port: "0", protocol: UDP}
            - toEndpoints: [{}]
              icmps:
              - fields: [{type: EchoRequest, family: IPv6}, {type: 8}]
            """
        )
    )
    first, second = policy.specs[0].rules
    assert first.ports == (
        PortRule(8000, 8080, Protocol.TCP),
        PortRule(53, None, Protocol.ANY),
        PortRule(0, None, Protocol.UDP),
    )
    kinds = [p.kind for p in first.peers]
    assert kinds == [PeerKind.CIDR] * 3 + [PeerKind.ENTITY] * 2
    assert first.peers[0].cidr is not None
    assert first.peers[0].cidr.cidr == ipaddress.ip_network("192.0.2.7/32")
    assert first.peers[2].cidr is not None
    assert first.peers[2].cidr.excepts == (ipaddress.ip_network("172.16.1.0/24"),)
    assert second.icmps == (IcmpRule(6, 128), IcmpRule(4, 8))
    assert policy.specs[0].subject.requirements == (
        Requirement("k8s", "app", Operator.IN, ("api",)),
    )


def test_namespace_scoping_of_peer_selectors() -> None:
    policy = _one(
        cnp(
            """\
            endpointSelector: {matchLabels: {io.kubernetes.pod.namespace: other, app: a}}
            ingress:
            - fromEndpoints:
              - {matchLabels: {app: b}}
              - {matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system}}
              - {matchLabels: {"reserved:host": ""}}
              - {matchExpressions: [{key: io.cilium.k8s.namespace.labels.team, operator: Exists}]}
            """
        )
    )
    spec = policy.specs[0]
    # The policy's own namespace always applies to the subject (Cilium overrides it).
    assert spec.subject.requirements == (Requirement("any", "app", Operator.IN, ("a",)),)
    sels = [p.selector for p in spec.rules[0].peers]
    ns_default = Requirement("k8s", "io.kubernetes.pod.namespace", Operator.IN, ("default",))
    assert sels[0] is not None and ns_default in sels[0].requirements
    assert sels[1] is not None and ns_default not in sels[1].requirements
    assert sels[2] is not None and sels[2].requirements == (
        Requirement("reserved", "host", Operator.IN, ("",)),
    )
    assert sels[3] is not None and ns_default not in sels[3].requirements


def test_clusterwide_peer_selector_requires_a_pod() -> None:
    text = (
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: cw}\n"
        "spec:\n  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}]}]\n"
    )
    policy = _one(text)
    assert policy.namespace == "" and policy.kind is PolicyKind.CCNP
    (peer,) = policy.specs[0].rules[0].peers
    assert peer.selector is not None
    assert peer.selector.requirements == (
        Requirement("k8s", "io.kubernetes.pod.namespace", Operator.EXISTS),
    )


K8S_HEAD = (
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\n"
)


@pytest.mark.parametrize(
    ("spec", "enforce", "n_rules"),
    [
        pytest.param("podSelector: {}\n", {Direction.INGRESS}, 0, id="default-types-ingress"),
        pytest.param(
            "podSelector: {}\negress: [{}]\n",
            {Direction.INGRESS, Direction.EGRESS},
            1,
            id="egress-rules-add-egress",
        ),
        pytest.param(
            "podSelector: {}\negress: []\n", {Direction.INGRESS}, 0, id="empty-egress-ignored"
        ),
        pytest.param(
            "podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]\n",
            {Direction.EGRESS},
            0,
            id="policy-types-drop-ingress-rules",
        ),
    ],
)
def test_k8s_policy_types(spec: str, enforce: set[Direction], n_rules: int) -> None:
    policy = _one(K8S_HEAD + "spec:\n" + textwrap.indent(spec, "  "))
    (pspec,) = policy.specs
    assert pspec.enforce == enforce == pspec.default_deny
    assert len(pspec.rules) == n_rules


def test_k8s_peers_and_ports() -> None:
    policy = _one(
        K8S_HEAD
        + textwrap.dedent(
            """\
            spec:
              podSelector: {matchLabels: {app: db}}
              ingress:
              - from:
                - podSelector: {matchLabels: {app: api}}
                - namespaceSelector: {}
                - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ops}}
                  podSelector: {matchLabels: {app: backup}}
                - namespaceSelector: {matchLabels: {team: blue}}
                - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
                ports:
                - port: 5432
                - {port: 6000, endPort: 6010, protocol: UDP}
                - protocol: SCTP
              - {}
            """
        )
    )
    first, second = policy.specs[0].rules
    ns = "io.kubernetes.pod.namespace"
    sels = [p.selector for p in first.peers[:4]]
    assert sels[0] is not None and set(sels[0].requirements) == {
        Requirement("k8s", "app", Operator.IN, ("api",)),
        Requirement("k8s", ns, Operator.IN, ("shop",)),
    }
    assert sels[1] is not None and sels[1].requirements == (
        Requirement("k8s", ns, Operator.EXISTS),
    )
    assert sels[2] is not None and set(sels[2].requirements) == {
        Requirement("k8s", "app", Operator.IN, ("backup",)),
        Requirement("k8s", ns, Operator.IN, ("ops",)),
    }
    assert sels[3] is not None and set(sels[3].requirements) == {
        Requirement("k8s", "io.cilium.k8s.namespace.labels.team", Operator.IN, ("blue",)),
        Requirement("k8s", ns, Operator.EXISTS),
    }
    assert first.peers[4].kind is PeerKind.CIDR
    assert first.ports == (
        PortRule(5432, None, Protocol.TCP),
        PortRule(6000, 6010, Protocol.UDP),
        PortRule(0, None, Protocol.SCTP),
    )
    # An empty rule allows everything from everywhere.
    assert second.peers == (PeerSelector.any(),) and second.all_ports


def test_multi_document_and_empty_documents() -> None:
    text = "---\n" + GOOD + "---\n---\n" + GOOD.replace("good", "second") + "...\n"
    policies = load_policies(text, "multi.yaml")
    assert [p.name for p in policies] == ["good", "second"]
    assert [p.document_index for p in policies] == [1, 3]
    assert load_policies("", "empty.yaml") == []


def test_policy_to_dict_round_trips_the_document() -> None:
    (policy,) = load_policies(GOOD, "g.yaml")
    doc = policy_to_dict(policy)
    assert doc == yaml.safe_load(GOOD)
    doc["spec"]["ingress"] = []  # a copy: mutating it does not touch the policy
    assert policy_to_dict(policy) == yaml.safe_load(GOOD)
    # The returned document loads back into an equal policy.
    (again,) = load_policies(yaml.safe_dump(policy_to_dict(policy)), "g.yaml")
    assert again == policy


def test_policy_to_dict_renders_policies_built_in_code() -> None:
    from dataclasses import replace

    (policy,) = load_policies(
        cnp(
            """\
            endpointSelector: {matchLabels: {app: a}}
            enableDefaultDeny: {egress: false}
            egress:
            - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.0.0.0/16]}]
              toPorts: [{ports: [{port: "80", endPort: 90, protocol: TCP}]}]
            egressDeny:
            - toEntities: [world]
            """
        ),
        "x.yaml",
    )
    built = replace(policy, document=None)
    rendered = policy_to_dict(built)
    (again,) = load_policies(yaml.safe_dump(rendered), "x.yaml")
    assert again.specs[0].rules == built.specs[0].rules
    assert again.specs[0].enforce == built.specs[0].enforce
    assert again.specs[0].default_deny == built.specs[0].default_deny
