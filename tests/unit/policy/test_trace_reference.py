"""trace() over compiled maps agrees with a brute-force evaluator of the policy model
(see reference.py for the evaluator and the generators)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.policy import (
    CompileOptions,
    Direction,
    EndpointView,
    Local,
    Policy,
    Protocol,
    Remote,
    compile_policies,
    trace,
)
from observer.policy.entities import ReservedIdentity

from .reference import (
    PROBE_PORTS,
    REMOTE_POD,
    REMOTE_POD_LABELS,
    Peer,
    RefDirection,
    peers_of,
    ref_direction,
    worlds,
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(world=worlds(), rnd=st.randoms(use_true_random=False))
def test_trace_agrees_with_reference(
    world: tuple[list[Policy], list[EndpointView], CompileOptions], rnd: random.Random
) -> None:
    policies, endpoints, options = world
    compiled = compile_policies(
        policies, endpoints, {REMOTE_POD: list(REMOTE_POD_LABELS)}, options=options
    )
    peers = peers_of(endpoints)
    local = [p for p in peers if p.endpoint is not None]
    for _ in range(24):
        # Every probe involves at least one local endpoint (else there is nothing to check).
        a, b = rnd.choice(local), rnd.choice([p for p in peers])
        if a is b:
            continue
        src, dst = (a, b) if rnd.random() < 0.5 else (b, a)
        proto = rnd.choice([Protocol.TCP, Protocol.UDP, Protocol.SCTP, Protocol.ICMP])
        port = rnd.choice((0, 8) if proto is Protocol.ICMP else PROBE_PORTS)

        def to_trace_peer(p: Peer) -> Local | Remote:
            if p.endpoint is not None:
                return Local(p.endpoint.id)
            if p.kind == "pod":
                return Remote(REMOTE_POD)
            if p.kind == "host":
                return Remote(int(ReservedIdentity.HOST))
            assert p.ip is not None
            return Remote(compiled.resolve_ip(p.ip))

        verdict = trace(compiled, to_trace_peer(src), to_trace_peer(dst), port, proto)
        ref: dict[Direction, RefDirection] = {}
        if src.endpoint is not None:
            ref[Direction.EGRESS] = ref_direction(
                policies, src.endpoint, Direction.EGRESS, dst, port, proto, options
            )
        if dst.endpoint is not None:
            ref[Direction.INGRESS] = ref_direction(
                policies, dst.endpoint, Direction.INGRESS, src, port, proto, options
            )
        expected = all(r.allowed for r in ref.values())
        context = "\n".join(verdict.explanation)
        assert verdict.allowed is expected, context

        for got in (verdict.egress, verdict.ingress):
            if got is None:
                continue
            want = ref[got.direction]
            assert got.enforced is want.enforced, context
            assert got.allowed is want.allowed, context
            if got.rule is not None and got.rule.kind:
                named = (got.rule.name, got.rule.section)
                if got.allowed:
                    if got.rule.section.endswith("enableDefaultDeny"):
                        assert not want.allow_rules and not want.deny_rules, context
                    else:
                        assert named in want.allow_rules, context
                else:
                    assert named in want.deny_rules, context
            elif got.enforced and got.rule is None:  # default deny
                assert not got.allowed and not want.allow_rules and not want.deny_rules, context
