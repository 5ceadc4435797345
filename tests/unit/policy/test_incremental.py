"""Incremental compilation gives the same maps as a fresh compile, and diff() is exact."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.policy import (
    CompiledPolicy,
    CompileOptions,
    EndpointView,
    Policy,
    PolicyEntry,
    PolicyKey,
    compile_policies,
    diff,
)
from observer.policy.entities import CIDR_IDENTITY_BASE

from .reference import REMOTE_POD, REMOTE_POD_LABELS, worlds

World = tuple[list[Policy], list[EndpointView], CompileOptions]


def canonical(c: CompiledPolicy) -> dict[int, object]:
    """Maps with rule ids replaced by what they name and CIDR identities by their prefix."""
    prefix_of = {ident: str(net) for net, ident in c.ipcache.items() if ident >= CIDR_IDENTITY_BASE}
    out: dict[int, object] = {}
    for ep_id, ep in c.endpoints.items():
        entries = {
            (
                prefix_of.get(k.identity, k.identity),
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
        out[ep_id] = (ep.identity, ep.ingress_enforced, ep.egress_enforced, ep.audit, entries)
    return out


def apply(
    maps: dict[int, dict[PolicyKey, PolicyEntry]], old: CompiledPolicy | None, new: CompiledPolicy
) -> None:
    d = diff(old, new)
    for ep_id, change in d.endpoints.items():
        if change.removed:
            assert set(change.deletes) == set(maps.pop(ep_id))
            continue
        target = maps.setdefault(ep_id, {})
        for key in change.deletes:
            del target[key]  # deleting a key that is not there would be a bug
        target.update(change.upserts)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=st.lists(worlds(), min_size=2, max_size=4), same_options=st.booleans())
def test_incremental_equals_fresh_and_diffs_replay(steps: list[World], same_options: bool) -> None:
    identities = {REMOTE_POD: list(REMOTE_POD_LABELS)}
    previous: CompiledPolicy | None = None
    maps: dict[int, dict[PolicyKey, PolicyEntry]] = {}
    rule_table: dict[int, object] = {}
    for policies, endpoints, options in steps:
        if same_options:
            options = steps[0][2]
        incremental = compile_policies(
            policies, endpoints, identities, options=options, previous=previous
        )
        fresh = compile_policies(policies, endpoints, identities, options=options)
        assert canonical(incremental) == canonical(fresh)
        # Replaying the diffs on the previous maps reproduces the new maps exactly.
        d = diff(previous, incremental)
        apply(maps, previous, incremental)
        assert maps == {i: dict(ep.entries) for i, ep in incremental.endpoints.items()}
        for rid in d.rule_deletes:
            del rule_table[rid]
        rule_table.update(d.rule_upserts)
        assert rule_table == dict(incremental.rules)
        if previous is not None:
            # Rule ids and CIDR identities that survive keep their numbers.
            for rid, ref in incremental.rules.items():
                if rid in previous.rules:
                    assert previous.rules[rid].name == ref.name
                    assert previous.rules[rid].section == ref.section
            for net, ident in incremental.ipcache.items():
                if ident >= CIDR_IDENTITY_BASE and net in previous.ipcache:
                    assert previous.ipcache[net] == ident
        previous = incremental
