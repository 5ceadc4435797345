#!/usr/bin/env python3
"""Policy compiler benchmark: 1,000 endpoints x 100 policies (pure Python, no BPF).

Method: 1,000 endpoints in 10 namespaces with 40 app labels, and 100 generated
CiliumNetworkPolicies (L3/L4 ingress, port ranges, expressions, CIDR/entity egress, deny
rules, ICMP) are loaded from YAML and compiled fresh; then recompiled incrementally (with the
previous result) and diffed for typical churn: one endpoint added, one relabelled, one policy
added, one endpoint deleted. Times are perf_counter medians of --repeat runs; also one trace.

    python3 bench/policy_bench.py [--endpoints 1000] [--policies 100] [--repeat 3]
    python3 -m bench --only policy [--quick]      (the runner: flat figures via run())
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from observer.policy import (
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


@dataclass(frozen=True, slots=True)
class Churn:
    """One incremental recompile against the fresh result."""

    name: str
    slug: str
    incremental_s: float
    fresh_s: float
    diff_s: float
    endpoints_touched: int
    entry_writes: int


@dataclass(frozen=True, slots=True)
class Report:
    endpoints: int
    identities: int
    policies: int
    yaml_kib: int
    load_s: float
    compile_s: float
    enforced: int
    distinct_entry_maps: int
    map_entries: int
    map_entries_max: int
    map_entries_mean: float
    rules: int
    ipcache_prefixes: int
    churn: tuple[Churn, ...]
    trace_s: float
    trace_entries: int
    trace_allowed: bool
    trace_decided_by: str


def measure(n_endpoints: int, n_policies: int, repeat: int, replicas: int = 1) -> Report:
    endpoints, identities = make_endpoints(n_endpoints, replicas)
    text = yaml.dump_all([policy_doc(j) for j in range(n_policies)], Dumper=yaml.CSafeDumper)
    policies, t_load = timed(lambda: load_policies(text, "bench.yaml"), repeat)
    fresh, t_fresh = timed(lambda: compile_policies(policies, endpoints, identities), repeat)

    def incremental(
        name: str,
        slug: str,
        new_policies: list[Policy],
        new_endpoints: list[EndpointView],
        new_ids: dict[int, list[str]],
    ) -> Churn:
        result, t = timed(
            lambda: compile_policies(new_policies, new_endpoints, new_ids, previous=fresh),
            repeat,
        )
        _, t_full = timed(lambda: compile_policies(new_policies, new_endpoints, new_ids), 1)
        d, t_diff = timed(lambda: diff(fresh, result), repeat)
        return Churn(name, slug, t, t_full, t_diff, len(d.endpoints), d.entry_writes())

    churn = []
    new_ep = EndpointView.create(
        n_endpoints + 1, 999_999, "ns3", ["k8s:app=app4", "k8s:tier=web", "k8s:shard=new"]
    )
    ids_plus = {
        **identities,
        999_999: [*new_ep.labels.to_strings(), "k8s:io.kubernetes.pod.namespace=ns3"],
    }
    churn.append(
        incremental(
            "add 1 endpoint (new identity)",
            "add_endpoint",
            policies,
            [*endpoints, new_ep],
            ids_plus,
        )
    )

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
    churn.append(
        incremental("relabel 1 endpoint", "relabel_endpoint", policies, eps_relabel, ids_relabel)
    )

    extra = load_policies(yaml.dump(policy_doc(n_policies + 5), Dumper=yaml.CSafeDumper), "x.yaml")
    churn.append(
        incremental("add 1 policy", "add_policy", [*policies, *extra], endpoints, identities)
    )
    churn.append(
        incremental("delete 1 endpoint", "delete_endpoint", policies, endpoints[1:], identities)
    )

    src, dst = endpoints[2], endpoints[1]
    verdict, t_trace = timed(
        lambda: trace(fresh, Local(src.id), Local(dst.id), 80, Protocol.TCP), 20
    )
    counts = [len(ep.entries) for ep in fresh.endpoints.values()]
    return Report(
        endpoints=n_endpoints,
        identities=len(identities),
        policies=n_policies,
        yaml_kib=len(text) // 1024,
        load_s=t_load,
        compile_s=t_fresh,
        enforced=sum(
            1 for ep in fresh.endpoints.values() if ep.ingress_enforced or ep.egress_enforced
        ),
        distinct_entry_maps=len({id(ep.entries) for ep in fresh.endpoints.values()}),
        map_entries=sum(counts),
        map_entries_max=max(counts),
        map_entries_mean=statistics.mean(counts),
        rules=len(fresh.rules),
        ipcache_prefixes=len(fresh.ipcache),
        churn=tuple(churn),
        trace_s=t_trace,
        trace_entries=len(fresh.endpoints[dst.id].entries),
        trace_allowed=verdict.allowed,
        trace_decided_by=str(verdict.decided_by),
    )


def run(quick: bool = False) -> dict[str, Any]:
    """For ``python -m bench``: flat figures (quick: one run of each instead of the median of 3)."""
    r = measure(1000, 100, 1 if quick else 3)
    out: dict[str, Any] = {
        "policy_endpoints": r.endpoints,
        "policy_policies": r.policies,
        "policy_load_s": round(r.load_s, 3),
        "policy_compile_s": round(r.compile_s, 3),
        "policy_map_entries": r.map_entries,
        "policy_map_entries_max_per_endpoint": r.map_entries_max,
        "policy_distinct_entry_maps": r.distinct_entry_maps,
    }
    for c in r.churn:
        out[f"policy_{c.slug}_incremental_s"] = round(c.incremental_s, 3)
        out[f"policy_{c.slug}_entry_writes"] = c.entry_writes
    out["policy_trace_s"] = round(r.trace_s, 6)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--replicas", type=int, default=1, help="endpoints per label set (default 1: worst case)"
    )
    args = parser.parse_args(argv)
    r = measure(args.endpoints, args.policies, args.repeat, args.replicas)
    print(f"{r.endpoints} endpoints ({r.identities} identities), {r.policies} policies")
    print(f"load_policies ({r.yaml_kib} KiB YAML): {r.load_s * 1000:.1f} ms")
    print(f"fresh compile: {r.compile_s * 1000:.1f} ms")
    print("result:")
    print(
        f"  endpoints {r.endpoints}, enforced {r.enforced}, distinct entry maps {r.distinct_entry_maps}"
    )
    print(
        f"  policy map entries: total {r.map_entries}, max per endpoint {r.map_entries_max}, "
        f"mean {r.map_entries_mean:.1f}"
    )
    print(f"  rule table {r.rules}, ipcache {r.ipcache_prefixes} prefixes")
    for c in r.churn:
        print(
            f"{c.name}: incremental {c.incremental_s * 1000:.1f} ms (fresh {c.fresh_s * 1000:.1f} ms), "
            f"diff {c.diff_s * 1000:.1f} ms: {c.endpoints_touched} endpoint maps touched, "
            f"{c.entry_writes} entry writes"
        )
    print(
        f"trace (endpoint with {r.trace_entries} entries): {r.trace_s * 1e6:.0f} us -> "
        f"{'ALLOWED' if r.trace_allowed else 'DENIED'} by {r.trace_decided_by}"
    )


if __name__ == "__main__":
    main()
