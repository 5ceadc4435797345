#!/usr/bin/env python3
"""Policy compiler benchmark: 1,000 endpoints x 100 policies (pure Python, no BPF).

Prints fresh compile time, policy map entry counts, and the cost and size (map writes) of
incremental recompiles for typical churn: one endpoint added, one endpoint relabelled, one
policy added, one endpoint deleted. Also the cost of one trace.

    python3 bench/policy_bench.py [--endpoints 1000] [--policies 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import yaml

from observer.policy import (
    CompiledPolicy,
    EndpointView,
    Local,
    Policy,
    Protocol,
    compile_policies,
    diff,
    load_policies,
    trace,
)

T = TypeVar("T")
NAMESPACES = 10
APPS = 40
TIERS = ("web", "api", "db")


def make_endpoints(n: int, replicas: int = 1) -> tuple[list[EndpointView], dict[int, list[str]]]:
    """``n`` endpoints in 10 namespaces; ``replicas`` consecutive endpoints share labels
    (a deployment), so they share an identity."""
    identities: dict[tuple[str, tuple[str, ...]], int] = {}
    endpoints = []
    for i in range(n):
        d = i // replicas
        ns = f"ns{d % NAMESPACES}"
        labels = (f"k8s:app=app{d % APPS}", f"k8s:tier={TIERS[d % 3]}", f"k8s:shard=s{d % 7}")
        ident = identities.setdefault((ns, labels), 1000 + len(identities))
        endpoints.append(
            EndpointView.create(
                i + 1, ident, ns, labels, [f"10.{64 + i // 65536}.{i // 256 % 256}.{i % 256}"]
            )
        )
    by_id = {
        ident: [*labels, f"k8s:io.kubernetes.pod.namespace={ns}"]
        for (ns, labels), ident in identities.items()
    }
    return endpoints, by_id


def policy_doc(j: int) -> dict[str, object]:
    spec: dict[str, object] = {
        "endpointSelector": {"matchLabels": {"app": f"app{j % APPS}"}},
        "ingress": [
            {
                "fromEndpoints": [{"matchLabels": {"app": f"app{(j + 1) % APPS}"}}],
                "toPorts": [
                    {
                        "ports": [
                            {"port": "80", "protocol": "TCP"},
                            {"port": "443", "protocol": "TCP"},
                            {"port": "8000", "endPort": 8100, "protocol": "TCP"},
                        ]
                    }
                ],
            },
            {
                "fromEndpoints": [
                    {
                        "matchLabels": {"tier": "web"},
                        "matchExpressions": [
                            {"key": "io.kubernetes.pod.namespace", "operator": "Exists"}
                        ],
                    }
                ],
                "toPorts": [{"ports": [{"port": "9090", "protocol": "TCP"}]}],
            },
        ],
    }
    if j % 5 == 0:
        spec["egress"] = [
            {
                "toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}],
                "toEntities": ["world"],
                "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
            },
            {"toEndpoints": [{"matchLabels": {"k8s-app": "kube-dns"}}]},
        ]
    if j % 10 == 0:
        spec["ingressDeny"] = [{"fromEntities": ["world"]}]
    if j % 7 == 0:
        spec["ingress"].append({"fromEntities": ["cluster"], "icmps": [{"fields": [{"type": 8}]}]})  # type: ignore[attr-defined]
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": f"policy-{j}", "namespace": f"ns{j % NAMESPACES}"},
        "spec": spec,
    }


def timed(fn: Callable[[], T], repeat: int) -> tuple[T, float]:
    times = []
    result: T | None = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    assert result is not None
    return result, statistics.median(times)


def describe(label: str, compiled: CompiledPolicy) -> None:
    counts = [len(ep.entries) for ep in compiled.endpoints.values()]
    shared = len({id(ep.entries) for ep in compiled.endpoints.values()})
    enforced = sum(
        1 for ep in compiled.endpoints.values() if ep.ingress_enforced or ep.egress_enforced
    )
    print(f"{label}:")
    print(f"  endpoints {len(counts)}, enforced {enforced}, distinct entry maps {shared}")
    print(
        f"  policy map entries: total {sum(counts)}, max per endpoint {max(counts)}, "
        f"mean {statistics.mean(counts):.1f}"
    )
    print(f"  rule table {len(compiled.rules)}, ipcache {len(compiled.ipcache)} prefixes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--replicas", type=int, default=1, help="endpoints per label set (default 1: worst case)"
    )
    args = parser.parse_args()

    endpoints, identities = make_endpoints(args.endpoints, args.replicas)
    text = yaml.dump_all([policy_doc(j) for j in range(args.policies)], Dumper=yaml.CSafeDumper)
    policies, t_load = timed(lambda: load_policies(text, "bench.yaml"), args.repeat)
    print(f"{args.endpoints} endpoints ({len(identities)} identities), {args.policies} policies")
    print(f"load_policies ({len(text) // 1024} KiB YAML): {t_load * 1000:.1f} ms")

    fresh, t_fresh = timed(lambda: compile_policies(policies, endpoints, identities), args.repeat)
    print(f"fresh compile: {t_fresh * 1000:.1f} ms")
    describe("result", fresh)

    def incremental(
        name: str,
        new_policies: list[Policy],
        new_endpoints: list[EndpointView],
        new_ids: dict[int, list[str]],
    ) -> None:
        result, t = timed(
            lambda: compile_policies(new_policies, new_endpoints, new_ids, previous=fresh),
            args.repeat,
        )
        _, t_full = timed(lambda: compile_policies(new_policies, new_endpoints, new_ids), 1)
        d, t_diff = timed(lambda: diff(fresh, result), args.repeat)
        print(
            f"{name}: incremental {t * 1000:.1f} ms (fresh {t_full * 1000:.1f} ms), "
            f"diff {t_diff * 1000:.1f} ms: {len(d.endpoints)} endpoint maps touched, "
            f"{d.entry_writes()} entry writes"
        )

    new_ep = EndpointView.create(
        args.endpoints + 1, 999_999, "ns3", ["k8s:app=app4", "k8s:tier=web", "k8s:shard=new"]
    )
    ids_plus = {
        **identities,
        999_999: [*new_ep.labels.to_strings(), "k8s:io.kubernetes.pod.namespace=ns3"],
    }
    incremental("add 1 endpoint (new identity)", policies, [*endpoints, new_ep], ids_plus)

    victim = endpoints[17]
    relabelled = EndpointView.create(
        victim.id, 999_998, victim.namespace, ["k8s:app=app39", "k8s:tier=db", "k8s:shard=x"]
    )
    ids_relabel = {
        **identities,
        999_998: [
            *relabelled.labels.to_strings(),
            f"k8s:io.kubernetes.pod.namespace={victim.namespace}",
        ],
    }
    eps_relabel = [relabelled if ep.id == victim.id else ep for ep in endpoints]
    incremental("relabel 1 endpoint", policies, eps_relabel, ids_relabel)

    extra = load_policies(
        yaml.dump(policy_doc(args.policies + 5), Dumper=yaml.CSafeDumper), "x.yaml"
    )
    incremental("add 1 policy", [*policies, *extra], endpoints, identities)

    incremental("delete 1 endpoint", policies, endpoints[1:], identities)

    src, dst = endpoints[2], endpoints[1]
    verdict, t_trace = timed(
        lambda: trace(fresh, Local(src.id), Local(dst.id), 80, Protocol.TCP), 20
    )
    print(
        f"trace (endpoint with {len(fresh.endpoints[dst.id].entries)} entries): {t_trace * 1e6:.0f} us -> {'ALLOWED' if verdict.allowed else 'DENIED'} by {verdict.decided_by}"
    )


if __name__ == "__main__":
    main()
