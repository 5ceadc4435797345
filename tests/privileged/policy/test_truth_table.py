"""Policy truth tables, Kubernetes-netpol-e2e style, against the real kernel datapath.

One agent for the module; namespaces x, y, z with pods a, b, c (labels ``pod=<name>``, the
namespace label is automatic), each serving TCP and UDP on 80 and 81. Every case applies
CiliumNetworkPolicy / NetworkPolicy documents with ``hubblectl policy apply``, probes the
full matrix (9 x 9 pods x tcp/80, tcp/81, udp/80, udp/81) from inside the pods, compares it
with the independent model of truth_table.py, checks that ``policy trace`` (TracePolicy
RPC) agrees with what the datapath did for every pair, then deletes the policies (and
restores labels) and checks that everything is reachable again.

Failures print k8s-e2e-like tables: rows = from, columns = to, ``.`` allowed, ``X`` blocked.
Run with ``-s`` to see the observed table of every step.

Notes. A pod probing its own address stays on its loopback and never meets the datapath:
the model expects "allowed" on the diagonal and trace is not compared there (trace applies
the policy to it). Labels cannot be changed in place (no CLI/RPC): the label-change case
deletes and re-creates the endpoint. CIDR rules follow Cilium (they never match pods); the
cidr-except case prints where the Kubernetes e2e reading of ipBlock would differ.

Placeholders in policy documents, resolved at run time: ``{POD_RANGE}`` (the agent's IPv4
pod range) and ``{IP:ns/pod}`` (a pod's IPv4 address).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_agent_harness import PolicyAgent
from truth_table import (
    NAMESPACE_NAME_LABEL,
    TARGETS,
    Cluster,
    Matrix,
    Semantics,
    all_allowed,
    default_labels,
    expected_matrix,
    policy_id,
    render_comparison,
    render_tables,
    running_cluster,
)

pytestmark = pytest.mark.slow

NS_KEY = "k8s:io.kubernetes.pod.namespace"
ANY_NAMESPACE = {"key": NS_KEY, "operator": "Exists"}
KIND_FLAG = {
    "NetworkPolicy": "netpol",
    "CiliumNetworkPolicy": "cnp",
    "CiliumClusterwideNetworkPolicy": "ccnp",
}

Doc = dict[str, Any]
Check = tuple[str, str, str, bool]


def knp(namespace: str, name: str, spec: Doc) -> Doc:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def cnp(namespace: str, name: str, spec: Doc) -> Doc:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ccnp(name: str, spec: Doc) -> Doc:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumClusterwideNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def pods(**labels: str) -> Doc:
    return {"matchLabels": dict(labels)}


def in_ns(namespace: str) -> Doc:
    """A Kubernetes namespaceSelector on the automatic name label."""
    return {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}


def checks(*cells: str) -> tuple[Check, ...]:
    """``"y/a x/a tcp/80 X"`` (blocked) or ``"... ."`` (allowed); target ``*`` = all four."""
    out: list[Check] = []
    for text in cells:
        src, dst, target, verdict = text.split()
        for t in TARGETS if target == "*" else (target,):
            out.append((src, dst, t, verdict == "."))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Step:
    """Actions (relabel, apply, delete, in that order), then a full matrix check.
    ``checks`` are hand-derived expectations that guard the model itself."""

    apply: tuple[Doc, ...] = ()
    delete: tuple[tuple[str, str, str], ...] = ()
    relabel: tuple[tuple[str, Mapping[str, str]], ...] = ()
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        return self.name


CASES = (
    Case(
        "default-deny-ingress",
        (
            Step(
                apply=(knp("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),),
                checks=checks("y/a x/b * X", "x/a x/b * X", "x/a y/a * .", "z/c y/b * ."),
            ),
        ),
    ),
    Case(
        "default-deny-egress",
        (
            Step(
                apply=(
                    cnp("y", "deny-egress", {"endpointSelector": {}, "egress": [{}]}),
                    knp(
                        "z",
                        "deny-egress-b",
                        {"podSelector": pods(pod="b"), "policyTypes": ["Egress"]},
                    ),
                ),
                checks=checks(
                    "y/a x/a * X", "y/a y/b * X", "x/a y/a * .", "z/b x/a * X", "z/a z/b * ."
                ),
            ),
        ),
    ),
    Case(
        "allow-same-namespace",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "same-ns",
                        {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]},
                    ),
                    cnp(
                        "y",
                        "same-ns",
                        {"endpointSelector": {}, "ingress": [{"fromEndpoints": [{}]}]},
                    ),
                ),
                checks=checks("x/a x/b * .", "y/a x/b * X", "y/a y/c * .", "z/a y/a * X"),
            ),
        ),
    ),
    Case(
        "allow-from-other-namespace",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "from-y",
                        {
                            "podSelector": {},
                            "ingress": [{"from": [{"namespaceSelector": in_ns("y")}]}],
                        },
                    ),
                    cnp(
                        "z",
                        "from-x",
                        {
                            "endpointSelector": {},
                            "ingress": [{"fromEndpoints": [{"matchLabels": {NS_KEY: "x"}}]}],
                        },
                    ),
                ),
                checks=checks(
                    "y/a x/a * .",
                    "x/b x/a * X",
                    "z/a x/a * X",
                    "x/a z/b * .",
                    "y/a z/b * X",
                    "z/a z/b * X",
                ),
            ),
        ),
    ),
    Case(
        "allow-pod-in-namespace",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "from-y-b",
                        {
                            "podSelector": pods(pod="a"),
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": in_ns("y"),
                                            "podSelector": pods(pod="b"),
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                    cnp(
                        "y",
                        "from-z-c",
                        {
                            "endpointSelector": pods(pod="c"),
                            "ingress": [
                                {"fromEndpoints": [{"matchLabels": {"pod": "c", NS_KEY: "z"}}]}
                            ],
                        },
                    ),
                ),
                checks=checks(
                    "y/b x/a * .",
                    "y/a x/a * X",
                    "x/b x/a * X",
                    "z/b x/a * X",
                    "x/a x/b * .",
                    "z/c y/c * .",
                    "x/c y/c * X",
                    "y/a y/c * X",
                ),
            ),
        ),
    ),
    Case(
        "port-80-tcp-vs-udp",
        (
            Step(
                apply=(
                    # Kubernetes: protocol defaults to TCP
                    knp(
                        "x",
                        "tcp-80",
                        {"podSelector": pods(pod="a"), "ingress": [{"ports": [{"port": 80}]}]},
                    ),
                    cnp(
                        "y",
                        "udp-80",
                        {
                            "endpointSelector": pods(pod="a"),
                            "ingress": [
                                {"toPorts": [{"ports": [{"port": "80", "protocol": "UDP"}]}]}
                            ],
                        },
                    ),
                    # Cilium: no protocol = ANY
                    cnp(
                        "z",
                        "any-80",
                        {
                            "endpointSelector": pods(pod="a"),
                            "ingress": [{"toPorts": [{"ports": [{"port": "80"}]}]}],
                        },
                    ),
                ),
                checks=checks(
                    "y/b x/a tcp/80 .",
                    "y/b x/a udp/80 X",
                    "y/b x/a tcp/81 X",
                    "x/b y/a udp/80 .",
                    "x/b y/a tcp/80 X",
                    "x/b y/a udp/81 X",
                    "x/a z/a tcp/80 .",
                    "x/a z/a udp/80 .",
                    "x/a z/a tcp/81 X",
                    "x/a z/a udp/81 X",
                ),
            ),
        ),
    ),
    Case(
        "port-range",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "tcp-80-81",
                        {
                            "podSelector": {},
                            "ingress": [
                                {"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}
                            ],
                        },
                    ),
                    # Kubernetes: a protocol without a port = every port of it
                    knp(
                        "z",
                        "udp-any-port",
                        {
                            "podSelector": pods(pod="c"),
                            "ingress": [{"ports": [{"protocol": "UDP"}]}],
                        },
                    ),
                    cnp(
                        "y",
                        "any-81-100",
                        {
                            "endpointSelector": pods(pod="b"),
                            "ingress": [
                                {
                                    "toPorts": [
                                        {
                                            "ports": [
                                                {"port": "81", "endPort": 100, "protocol": "ANY"}
                                            ]
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                ),
                checks=checks(
                    "z/a x/b tcp/80 .",
                    "z/a x/b tcp/81 .",
                    "z/a x/b udp/80 X",
                    "z/a x/b udp/81 X",
                    "z/a y/b tcp/80 X",
                    "z/a y/b udp/80 X",
                    "z/a y/b tcp/81 .",
                    "z/a y/b udp/81 .",
                    "x/a z/c udp/80 .",
                    "x/a z/c udp/81 .",
                    "x/a z/c tcp/80 X",
                ),
            ),
        ),
    ),
    Case(
        # Cilium: CIDR rules describe peers that are not endpoints; pods never match them,
        # so these lock the subjects (the Kubernetes e2e reading differs: see the report).
        "cidr-except",
        (
            Step(
                apply=(
                    cnp(
                        "x",
                        "from-pod-range",
                        {
                            "endpointSelector": pods(pod="a"),
                            "ingress": [
                                {
                                    "fromCIDRSet": [
                                        {"cidr": "{POD_RANGE}", "except": ["{IP:y/b}/32"]}
                                    ]
                                }
                            ],
                        },
                    ),
                    knp(
                        "z",
                        "to-pod-range",
                        {
                            "podSelector": pods(pod="a"),
                            "policyTypes": ["Egress"],
                            "egress": [
                                {
                                    "to": [
                                        {
                                            "ipBlock": {
                                                "cidr": "{POD_RANGE}",
                                                "except": ["{IP:x/b}/32"],
                                            }
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                ),
                checks=checks("y/a x/a * X", "y/b x/a * X", "z/a y/c * X", "z/a x/b * X"),
            ),
        ),
    ),
    Case(
        "deny-precedence",
        (
            Step(
                apply=(
                    knp("x", "allow-all", {"podSelector": {}, "ingress": [{}]}),
                    cnp(
                        "x",
                        "deny-from-y",
                        {
                            "endpointSelector": {},
                            "ingressDeny": [{"fromEndpoints": [{"matchLabels": {NS_KEY: "y"}}]}],
                        },
                    ),
                    cnp(
                        "z",
                        "allow-all-but",
                        {
                            "endpointSelector": {},
                            "ingress": [{"fromEntities": ["all"]}],
                            "ingressDeny": [
                                {"toPorts": [{"ports": [{"port": "81", "protocol": "TCP"}]}]},
                                {
                                    "fromEndpoints": [
                                        {
                                            "matchLabels": {"pod": "a"},
                                            "matchExpressions": [ANY_NAMESPACE],
                                        }
                                    ]
                                },
                            ],
                        },
                    ),
                ),
                checks=checks(
                    "y/a x/a * X",
                    "z/a x/a * .",
                    "x/a x/b * .",
                    "x/b z/c tcp/81 X",
                    "x/b z/c udp/81 .",
                    "x/b z/c tcp/80 .",
                    "x/a z/c * X",
                    "z/a z/b * X",
                    "y/b z/b udp/80 .",
                ),
            ),
        ),
    ),
    Case(
        "egress-to-single-pod",
        (
            Step(
                apply=(
                    cnp(
                        "x",
                        "to-y-b",
                        {
                            "endpointSelector": pods(pod="a"),
                            "egress": [
                                {"toEndpoints": [{"matchLabels": {"pod": "b", NS_KEY: "y"}}]}
                            ],
                        },
                    ),
                    # Cilium: toPorts without a peer = to anyone on those ports
                    cnp(
                        "y",
                        "c-to-80",
                        {
                            "endpointSelector": pods(pod="c"),
                            "egress": [{"toPorts": [{"ports": [{"port": "80"}]}]}],
                        },
                    ),
                    knp(
                        "z",
                        "to-a-udp-81",
                        {
                            "podSelector": pods(pod="c"),
                            "policyTypes": ["Egress"],
                            "egress": [
                                {
                                    "to": [{"podSelector": pods(pod="a")}],
                                    "ports": [{"port": 81, "protocol": "UDP"}],
                                }
                            ],
                        },
                    ),
                ),
                checks=checks(
                    "x/a y/b * .",
                    "x/a y/a * X",
                    "x/a x/b * X",
                    "y/b x/a * .",
                    "z/c z/a udp/81 .",
                    "z/c z/a tcp/81 X",
                    "z/c x/a udp/81 X",
                    "y/c x/b tcp/80 .",
                    "y/c z/a udp/80 .",
                    "y/c y/a tcp/81 X",
                ),
            ),
        ),
    ),
    Case(
        "both-directions",
        (
            Step(
                apply=(
                    cnp(
                        "x",
                        "a-to-y",
                        {
                            "endpointSelector": pods(pod="a"),
                            "egress": [{"toEndpoints": [{"matchLabels": {NS_KEY: "y"}}]}],
                        },
                    ),
                    knp(
                        "y",
                        "from-x-b",
                        {
                            "podSelector": {},
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": in_ns("x"),
                                            "podSelector": pods(pod="b"),
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                ),
                checks=checks("x/a y/a * X", "x/b y/a * .", "x/a z/a * X", "z/a y/a * X"),
            ),
        ),
    ),
    Case(
        "additive-policies",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "from-y-tcp-80",
                        {
                            "podSelector": pods(pod="a"),
                            "ingress": [
                                {
                                    "from": [{"namespaceSelector": in_ns("y")}],
                                    "ports": [{"port": 80}],
                                }
                            ],
                        },
                    ),
                    cnp(
                        "x",
                        "from-z-udp-81",
                        {
                            "endpointSelector": pods(pod="a"),
                            "ingress": [
                                {
                                    "fromEndpoints": [{"matchLabels": {NS_KEY: "z"}}],
                                    "toPorts": [{"ports": [{"port": "81", "protocol": "UDP"}]}],
                                }
                            ],
                        },
                    ),
                ),
                checks=checks(
                    "y/c x/a tcp/80 .",
                    "y/c x/a udp/81 X",
                    "z/c x/a udp/81 .",
                    "z/c x/a tcp/80 X",
                    "x/b x/a * X",
                ),
            ),
        ),
    ),
    Case(
        # Cilium: a policy with only deny rules still puts its subjects into default deny
        # for that direction, unless enableDefaultDeny says otherwise.
        "deny-only-policy",
        (
            Step(
                apply=(
                    cnp(
                        "y",
                        "deny-x-only",
                        {
                            "endpointSelector": pods(pod="a"),
                            "ingressDeny": [{"fromEndpoints": [{"matchLabels": {NS_KEY: "x"}}]}],
                        },
                    ),
                    cnp(
                        "z",
                        "deny-x-no-default",
                        {
                            "endpointSelector": pods(pod="a"),
                            "enableDefaultDeny": {"ingress": False},
                            "ingressDeny": [{"fromEndpoints": [{"matchLabels": {NS_KEY: "x"}}]}],
                        },
                    ),
                ),
                checks=checks(
                    "x/a y/a * X",
                    "z/a y/a * X",
                    "y/b y/a * X",
                    "x/b z/a * X",
                    "y/b z/a * .",
                    "z/b z/a * .",
                ),
            ),
        ),
    ),
    Case(
        "selector-expressions",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "not-a-from-bc-in-yz",
                        {
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "pod", "operator": "NotIn", "values": ["a"]}
                                ]
                            },
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": {
                                                "matchExpressions": [
                                                    {
                                                        "key": NAMESPACE_NAME_LABEL,
                                                        "operator": "In",
                                                        "values": ["y", "z"],
                                                    }
                                                ]
                                            },
                                            "podSelector": {
                                                "matchExpressions": [
                                                    {
                                                        "key": "pod",
                                                        "operator": "In",
                                                        "values": ["b", "c"],
                                                    }
                                                ]
                                            },
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                    # namespaceSelector {} = every namespace
                    knp(
                        "y",
                        "from-any-c",
                        {
                            "podSelector": pods(pod="a"),
                            "ingress": [
                                {"from": [{"namespaceSelector": {}, "podSelector": pods(pod="c")}]}
                            ],
                        },
                    ),
                ),
                checks=checks(
                    "y/b x/b * .",
                    "z/c x/c * .",
                    "y/a x/b * X",
                    "x/c x/b * X",
                    "y/a x/a * .",
                    "x/c y/a * .",
                    "z/c y/a * .",
                    "z/b y/a * X",
                ),
            ),
        ),
    ),
    Case(
        "clusterwide-and-subject-namespace",
        (
            Step(
                apply=(
                    # every pod=a, any namespace; peers: pod=b of any namespace
                    ccnp(
                        "a-from-any-b",
                        {
                            "endpointSelector": pods(pod="a"),
                            "ingress": [{"fromEndpoints": [pods(pod="b")]}],
                        },
                    ),
                    # names namespace z in the endpointSelector of a policy in x: Cilium
                    # applies it to x's pods all the same (it overwrites that match)
                    cnp(
                        "x",
                        "names-z",
                        {
                            "endpointSelector": {"matchLabels": {"pod": "c", NS_KEY: "z"}},
                            "ingress": [{}],
                        },
                    ),
                ),
                checks=checks(
                    "z/b x/a * .",
                    "y/b z/a * .",
                    "x/c y/a * X",
                    "y/a x/c * X",
                    "y/a z/c * .",
                    "x/b y/b * .",
                ),
            ),
        ),
    ),
    Case(
        "policy-update",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "update-me",
                        {
                            "podSelector": {},
                            "ingress": [{"from": [{"namespaceSelector": in_ns("y")}]}],
                        },
                    ),
                    cnp("y", "update-me", {"endpointSelector": pods(pod="a"), "ingress": [{}]}),
                ),
                checks=checks("y/a x/a * .", "z/a x/a * X", "x/a y/a * X", "x/a y/b * ."),
            ),
            Step(
                apply=(
                    knp(
                        "x",
                        "update-me",
                        {
                            "podSelector": {},
                            "ingress": [
                                {
                                    "from": [{"namespaceSelector": in_ns("z")}],
                                    "ports": [{"port": 81, "protocol": "UDP"}],
                                }
                            ],
                        },
                    ),
                    cnp("y", "update-me", {"endpointSelector": pods(pod="b"), "ingress": [{}]}),
                ),
                checks=checks(
                    "y/a x/a * X",
                    "z/a x/a udp/81 .",
                    "z/a x/a tcp/81 X",
                    "x/a y/a * .",
                    "x/a y/b * X",
                ),
            ),
        ),
    ),
    Case(
        "policy-delete",
        (
            Step(
                apply=(
                    knp(
                        "x",
                        "deny-all",
                        {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
                    ),
                    cnp(
                        "x",
                        "allow-from-z",
                        {
                            "endpointSelector": {},
                            "ingress": [{"fromEndpoints": [{"matchLabels": {NS_KEY: "z"}}]}],
                        },
                    ),
                ),
                checks=checks("z/a x/a * .", "y/a x/a * X", "x/a z/a * X", "x/a x/b * X"),
            ),
            Step(
                delete=(("CiliumNetworkPolicy", "x", "allow-from-z"),),
                checks=checks("z/a x/a * X", "y/a x/a * X", "x/a z/a * X"),
            ),
        ),
    ),
    Case(
        "label-change",
        (
            Step(
                apply=(
                    cnp(
                        "y",
                        "friends-only",
                        {
                            "endpointSelector": {},
                            "ingress": [
                                {
                                    "fromEndpoints": [
                                        {
                                            "matchLabels": {"role": "friend"},
                                            "matchExpressions": [ANY_NAMESPACE],
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                    knp(
                        "x",
                        "lock-locked",
                        {"podSelector": pods(role="locked"), "policyTypes": ["Ingress"]},
                    ),
                ),
                checks=checks("z/c y/a * X", "x/b y/a * X", "x/a x/b * ."),
            ),
            Step(
                relabel=(
                    ("z/c", {"pod": "c", "role": "friend"}),
                    ("x/b", {"pod": "b", "role": "locked"}),
                ),
                checks=checks("z/c y/a * .", "z/b y/a * X", "x/a x/b * X", "x/b x/a * ."),
            ),
            Step(
                relabel=(("z/c", {"pod": "c"}),),
                checks=checks("z/c y/a * X", "x/a x/b * X"),
            ),
        ),
    ),
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(
    privileged_env: None, bpf_build_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    from hubblectl.client import connect
    from observer.api.v1.hubblectl.agent_pb2_grpc import AgentStub

    agent = PolicyAgent(tmp_path_factory.mktemp("truth-table"))
    try:
        agent.start()
        client = connect(agent.server, timeout=10)
        try:
            with running_cluster(agent, AgentStub(client.channel)) as cl:
                yield cl
        finally:
            client.close()
    finally:
        agent.close()


# --------------------------------------------------------------------------- helpers

_PLACEHOLDER = re.compile(r"\{(POD_RANGE|IP:[a-z]/[a-z])\}")


def resolve(value: Any, cluster: Cluster) -> Any:
    """The document with ``{POD_RANGE}`` and ``{IP:ns/pod}`` filled in."""
    if isinstance(value, dict):
        return {k: resolve(v, cluster) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, cluster) for v in value]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            what = m.group(1)
            if what == "POD_RANGE":
                return cluster.agent.ipv4_range
            return cluster.pods[what[3:]].ip

        return _PLACEHOLDER.sub(sub, value)
    return value


def check_matrix(cluster: Cluster, expected: Matrix, title: str) -> list[str]:
    """Probe everything, compare with ``expected``, then trace everything and compare with
    what the datapath did. Returns failure texts (empty: all agree)."""
    keys = cluster.keys
    probes = cluster.probe()
    observed = {c: r.allowed for c, r in probes.items()}
    print(f"\n{render_tables(observed, keys, title)}")
    failures: list[str] = []
    broken = {c: r.reason for c, r in probes.items() if r.reason not in ("ok", "timeout")}
    if broken:
        failures.append(
            f"{title}: probes failed in ways a policy drop never causes (server down?):\n"
            + "\n".join(f"  {c[0]} -> {c[1]} {c[2]}: {why}" for c, why in sorted(broken.items()))
        )
    if observed != expected:
        details = {c: f"probe: {r.reason}, {r.attempts} attempt(s)" for c, r in probes.items()}
        failures.append(
            f"{title}: datapath disagrees with the model\n"
            + render_comparison(
                expected,
                observed,
                keys,
                expected_name="model",
                observed_name="datapath",
                details=details,
            )
        )
    traces = cluster.trace()
    traced: Matrix = {c: traces[c].allowed if c in traces else observed[c] for c in observed}
    if traced != observed:
        details = {c: f"trace {t.verdict} by {t.decided_by}" for c, t in traces.items()}
        failures.append(
            f"{title}: policy trace disagrees with the datapath\n"
            + render_comparison(
                observed,
                traced,
                keys,
                expected_name="datapath",
                observed_name="trace",
                details=details,
            )
        )
    return failures


def _delete_policy(cluster: Cluster, pid: tuple[str, str, str]) -> None:
    kind, ns, name = pid
    key = f"{ns}/{name}" if ns else name
    cluster.agent.cli("policy", "delete", key, "--kind", KIND_FLAG[kind])


def _restore(
    cluster: Cluster, applied: dict[tuple[str, str, str], Doc], relabelled: set[str]
) -> None:
    """Delete what is still applied and give relabelled pods their default labels back."""
    for pid in list(applied):
        _delete_policy(cluster, pid)
        del applied[pid]
    for key in sorted(relabelled):
        if dict(cluster.pods[key].labels) != default_labels(key):
            cluster.relabel(key, default_labels(key))
    relabelled.clear()


# --------------------------------------------------------------------------- tests


def test_no_policy_everything_reachable(cluster: Cluster) -> None:
    failures = check_matrix(cluster, all_allowed(cluster.keys), "no policy")
    assert not failures, "\n\n".join(failures)
    traces = cluster.trace()
    assert {t.decided_by for t in traces.values()} == {"no policy (not enforced)"}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_truth_table(cluster: Cluster, case: Case, tmp_path: Path) -> None:
    applied: dict[tuple[str, str, str], Doc] = {}
    relabelled: set[str] = set()
    failures: list[str] = []
    previous: Matrix | None = None
    try:
        for i, step in enumerate(case.steps, 1):
            title = f"{case.name} step {i}"
            for key, labels in step.relabel:
                cluster.relabel(key, labels)
                relabelled.add(key)
            if step.apply:
                docs = [resolve(d, cluster) for d in step.apply]
                path = tmp_path / f"step{i}.yaml"
                path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
                cluster.agent.cli("policy", "apply", "-f", str(path))
                applied.update((policy_id(d), d) for d in docs)
            for pid in step.delete:
                _delete_policy(cluster, pid)
                del applied[pid]
            expected = expected_matrix(cluster.pod_list(), list(applied.values()))
            # The case must mean something: the model agrees with the hand-derived cells,
            # the step blocks something, and a later step changes the matrix.
            wrong = [c for c in step.checks if expected[c[:3]] is not c[3]]
            assert not wrong, f"{title}: model contradicts hand-derived cells {wrong}"
            assert expected != all_allowed(cluster.keys), f"{title}: blocks nothing"
            assert expected != previous, f"{title}: changes nothing"
            previous = expected
            failures += check_matrix(cluster, expected, title)
            if case.name == "cidr-except":
                k8s = expected_matrix(
                    cluster.pod_list(), list(applied.values()), Semantics(cidr_selects_pods=True)
                )
                print(
                    "\nKubernetes e2e reading (ipBlock/CIDR matches pod IPs) vs ours:\n"
                    + render_comparison(
                        k8s,
                        expected,
                        cluster.keys,
                        expected_name="k8s-e2e",
                        observed_name="cilium",
                        limit=8,
                    )
                )
        _restore(cluster, applied, relabelled)
        failures += check_matrix(cluster, all_allowed(cluster.keys), f"{case.name} after delete")
    finally:
        _restore(cluster, applied, relabelled)
    from observer.api.v1.hubblectl import agent_pb2

    left = cluster.stub.ListPolicies(agent_pb2.ListPoliciesRequest(), timeout=12).policies
    assert not left, f"policies left behind: {[p.name for p in left]}"
    assert not failures, "\n\n".join(failures)
