"""The verdict logic of bpf/lib/policy.h through BPF_PROG_TEST_RUN, on real maps written by
the agent's policy code (compiler -> build_image -> PolicyMaps.switch_to).

Each case compiles real policy YAML for three endpoints, sends frames through the real
from-endpoint / to-endpoint programs, and checks the return code (TC_ACT_OK / SHOT), the
policy-verdict and drop records, and that observer.policy.trace predicts the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from policy_bpf_harness import FROM, TO, Ep, Outcome, PolicyDatapath, icmp_echo, tcp, udp

from observer.bpf import policymaps as pm
from observer.bpf import structs
from observer.policy import Protocol
from observer.policy.trace import Local, Remote, trace

REPO = Path(__file__).resolve().parents[3]
SW_POLICY = (REPO / "examples" / "policies" / "sw_l3_l4_policy.yaml").read_text()

DEATHSTAR = Ep(10, 1000, "10.246.0.10", ("k8s:org=empire", "k8s:class=deathstar"))
TIEFIGHTER = Ep(11, 1001, "10.246.0.11", ("k8s:org=empire", "k8s:class=tiefighter"))
XWING = Ep(12, 1002, "10.246.0.12", ("k8s:org=alliance", "k8s:class=xwing"))
DEATHSTAR6 = Ep(13, 1003, "fd00:246::13", ("k8s:org=empire", "k8s:class=deathstar6"))
SHUTTLE = Ep(14, 1004, "10.246.0.14", ("k8s:org=empire", "k8s:class=shuttle"))
ALL = (DEATHSTAR, TIEFIGHTER, XWING, DEATHSTAR6, SHUTTLE)

SYN, ACK = structs.TCP_SYN, structs.TCP_ACK

DENY_TIEFIGHTER_80 = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: empire-in, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
    - fromEndpoints: [{matchLabels: {org: empire}}]
  ingressDeny:
    - fromEndpoints: [{matchLabels: {class: tiefighter}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""

PORT_RANGE = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: range, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
    - toPorts: [{ports: [{port: "8000", endPort: 8010, protocol: TCP}]}]
"""

CIDR_EGRESS = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-cidr, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  egress:
    - toCIDRSet:
        - cidr: 192.0.2.0/24
          except: [192.0.2.128/25]
"""

ICMP_ONLY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ping, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
    - fromEndpoints: [{matchLabels: {org: alliance}}]
      icmps: [{fields: [{type: 8, family: IPv4}]}]
"""

V6_POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: v6, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar6}}
  ingress:
    - fromCIDR: ["fd00:dead::/32"]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"""

K8S_NETPOL = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: knp, namespace: default}
spec:
  podSelector: {matchLabels: {class: deathstar}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{podSelector: {matchLabels: {org: empire}}}]
      ports: [{port: 80}]
  egress:
    - to: [{ipBlock: {cidr: 192.0.2.0/24}}]
"""


@dataclass(frozen=True)
class Case:
    name: str
    policy: str
    src: Ep | str
    dst: Ep | str
    proto: str
    dport: int
    passed: bool
    drop_reason: int = 0
    match_type: int = 0
    # ("section of the deciding rule" or "default deny"); None: no verdict record expected
    decided_by: str | None = None
    audit: bool = False


# fmt: off
DP, DPD = pm.DROP_POLICY, pm.DROP_POLICY_DENY
CASES = [
    # name, policy, src, dst, proto, dport, passed, drop reason, match type, decided by
    Case("sw-tiefighter-80-allowed", SW_POLICY, TIEFIGHTER, DEATHSTAR, "tcp", 80, True, 0, 2, "spec.ingress[0]"),
    Case("sw-xwing-80-default-deny", SW_POLICY, XWING, DEATHSTAR, "tcp", 80, False, DP, 0, "default deny"),
    Case("sw-tiefighter-443-default-deny", SW_POLICY, TIEFIGHTER, DEATHSTAR, "tcp", 443, False, DP, 0, "default deny"),
    Case("sw-tiefighter-80-udp-denied", SW_POLICY, TIEFIGHTER, DEATHSTAR, "udp", 80, False, DP, 0, "default deny"),
    Case("sw-unselected-xwing-open", SW_POLICY, DEATHSTAR, XWING, "tcp", 22, True, 0, 0, None),
    Case("deny-precedence-80", DENY_TIEFIGHTER_80, TIEFIGHTER, DEATHSTAR, "tcp", 80, False, DPD, 2, "spec.ingressDeny[0]"),
    Case("deny-precedence-81-allowed", DENY_TIEFIGHTER_80, TIEFIGHTER, DEATHSTAR, "tcp", 81, True, 0, 1, "spec.ingress[0]"),
    Case("deny-other-identity-allowed", DENY_TIEFIGHTER_80, SHUTTLE, DEATHSTAR, "tcp", 80, True, 0, 1, "spec.ingress[0]"),
    Case("range-low-edge", PORT_RANGE, XWING, DEATHSTAR, "tcp", 8000, True, 0, 3, "spec.ingress[0]"),
    Case("range-middle", PORT_RANGE, XWING, DEATHSTAR, "tcp", 8005, True, 0, 3, "spec.ingress[0]"),
    Case("range-high-edge", PORT_RANGE, XWING, DEATHSTAR, "tcp", 8010, True, 0, 3, "spec.ingress[0]"),
    Case("range-above", PORT_RANGE, XWING, DEATHSTAR, "tcp", 8011, False, DP, 0, "default deny"),
    Case("range-below", PORT_RANGE, XWING, DEATHSTAR, "tcp", 7999, False, DP, 0, "default deny"),
    Case("cidr-allowed", CIDR_EGRESS, DEATHSTAR, "192.0.2.5", "tcp", 443, True, 0, 1, "spec.egress[0]"),
    Case("cidr-except", CIDR_EGRESS, DEATHSTAR, "192.0.2.200", "tcp", 443, False, DP, 0, "default deny"),
    Case("cidr-outside-world", CIDR_EGRESS, DEATHSTAR, "198.51.100.1", "tcp", 443, False, DP, 0, "default deny"),
    Case("cidr-pod-denied", CIDR_EGRESS, DEATHSTAR, XWING, "tcp", 443, False, DP, 0, "default deny"),
    Case("icmp-echo-allowed", ICMP_ONLY, XWING, DEATHSTAR, "icmp", 8, True, 0, 2, "spec.ingress[0]"),
    Case("icmp-tcp-denied", ICMP_ONLY, XWING, DEATHSTAR, "tcp", 80, False, DP, 0, "default deny"),
    Case("v6-cidr-allowed", V6_POLICY, "fd00:dead::1", DEATHSTAR6, "tcp", 443, True, 0, 2, "spec.ingress[0]"),
    Case("v6-world-denied", V6_POLICY, "fd00:beef::1", DEATHSTAR6, "tcp", 443, False, DP, 0, "default deny"),
    Case("knp-empire-80", K8S_NETPOL, TIEFIGHTER, DEATHSTAR, "tcp", 80, True, 0, 2, "spec.ingress[0]"),
    Case("knp-alliance-80", K8S_NETPOL, XWING, DEATHSTAR, "tcp", 80, False, DP, 0, "default deny"),
    Case("knp-egress-ipblock", K8S_NETPOL, DEATHSTAR, "192.0.2.9", "udp", 53, True, 0, 1, "spec.egress[0]"),
    Case("knp-egress-to-pod-denied", K8S_NETPOL, DEATHSTAR, XWING, "tcp", 80, False, DP, 0, "default deny"),
    Case("audit-default-deny", SW_POLICY, XWING, DEATHSTAR, "tcp", 80, True, 0, 0, "default deny", audit=True),
]
# fmt: on


def _frame(case: Case) -> bytes:
    if case.proto == "tcp":
        return tcp(case.src, case.dst, case.dport)
    if case.proto == "udp":
        return udp(case.src, case.dst, case.dport)
    return icmp_echo(case.src, case.dst)


def _rule_section(pdp: PolicyDatapath, rule_id: int) -> str:
    if rule_id == pm.RULE_DEFAULT_DENY:
        return "default deny"
    by_id = {v: k for k, v in pdp.ids.rules.items()}
    return by_id[rule_id][3]


def _send_both_sides(
    pdp: PolicyDatapath, frame: bytes, src: Ep | str, dst: Ep | str
) -> list[Outcome]:
    """Egress at the source endpoint, then (if it passed) ingress at the destination, each
    with fresh conntrack as on two different veths."""
    out = []
    if isinstance(src, Ep):
        pdp.flush_ct()
        out.append(pdp.send(frame, src, FROM))
        if not out[-1].passed:
            return out
    if isinstance(dst, Ep):
        pdp.flush_ct()
        out.append(pdp.send(frame, dst, TO))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verdicts_match_trace(pdp: PolicyDatapath, case: Case) -> None:
    pdp.enforce(case.policy, ALL, audit=case.audit)
    outcomes = _send_both_sides(pdp, _frame(case), case.src, case.dst)
    passed = all(o.passed for o in outcomes)
    assert passed is case.passed
    verdicts = [o.verdict for o in outcomes if o.verdict is not None]
    drops = [o.drop for o in outcomes if o.drop is not None]
    if case.decided_by is None:
        assert verdicts == [] and drops == []
    else:
        assert len(verdicts) == 1, outcomes
        v = verdicts[0]
        assert _rule_section(pdp, v["policy_rule_id"]) == case.decided_by
        assert v["policy_match_type"] == case.match_type
        assert v["drop_reason"] == case.drop_reason
        assert v["audited"] == int(case.audit)
        assert v["report_reason"] == structs.REPORT_VERDICT
    if case.passed:
        assert drops == []
    else:
        assert len(drops) == 1
        d = drops[0]
        assert (d["sub_type"], d["drop_reason"]) == (case.drop_reason, case.drop_reason)
        assert d["policy_rule_id"] == verdicts[0]["policy_rule_id"]

    # observer.policy.trace, on the same compiled policy, predicts the same
    assert pdp.compiled is not None
    src = (
        Local(case.src.id)
        if isinstance(case.src, Ep)
        else Remote(pdp.compiled.resolve_ip(case.src))
    )
    dst = (
        Local(case.dst.id)
        if isinstance(case.dst, Ep)
        else Remote(pdp.compiled.resolve_ip(case.dst))
    )
    proto = {"tcp": Protocol.TCP, "udp": Protocol.UDP, "icmp": Protocol.ICMP}[case.proto]
    predicted = trace(pdp.compiled, src, dst, case.dport, proto)
    assert predicted.allowed is case.passed
    if case.decided_by not in (None, "default deny"):
        assert predicted.rule is not None and predicted.rule.section == case.decided_by
        assert int(predicted.match_type) == case.match_type
    elif case.decided_by == "default deny":
        assert predicted.decided_by == "default deny"


def test_verdict_record_carries_identities_and_direction(pdp: PolicyDatapath) -> None:
    pdp.enforce(SW_POLICY, ALL)
    pdp.flush_ct()
    out = pdp.send(tcp(XWING, DEATHSTAR, 80), DEATHSTAR, TO)
    assert out.retval == 2
    v, d = out.verdict, out.drop
    assert v is not None and d is not None
    for rec in (v, d):
        assert (rec["src_identity"], rec["dst_identity"]) == (XWING.identity, DEATHSTAR.identity)
        assert rec["policy_dir"] == structs.POLICY_INGRESS
        assert rec["ep_id"] == DEATHSTAR.id
    assert v["type"] == structs.EVENT_POLICY_VERDICT and d["type"] == structs.EVENT_DROP
    # no trace record for a dropped packet
    assert out.of_type(structs.EVENT_TRACE) == []


def test_replies_pass_and_refused_syn_leaves_no_conntrack(pdp: PolicyDatapath) -> None:
    """deathstar (ingress: empire only) connects out to xwing; xwing's replies pass
    although xwing may not connect in. A refused SYN leaves no conntrack entry behind."""
    pdp.enforce(SW_POLICY, ALL)
    pdp.flush_ct()
    out = pdp.send(tcp(DEATHSTAR, XWING, 22, SYN, sport=45000), DEATHSTAR, FROM)
    assert out.passed and out.verdict is None  # deathstar's egress is not enforced
    synack = pdp.send(tcp(XWING, DEATHSTAR, 45000, SYN | ACK, sport=22), DEATHSTAR, TO)
    assert synack.passed and synack.verdict is None and synack.drop is None
    assert synack.of_type(structs.EVENT_TRACE)[0]["is_reply"] == 1

    pdp.flush_ct()
    refused = pdp.send(tcp(XWING, DEATHSTAR, 80, SYN, sport=46000), DEATHSTAR, TO)
    assert not refused.passed
    assert pdp.ct_size() == 0
    # so the reverse tuple is not mistaken for a reply: deathstar -> xwing:46000 from
    # port 80 is a new connection of deathstar (egress open), xwing's answer is a reply
    again = pdp.send(tcp(XWING, DEATHSTAR, 80, SYN, sport=46000), DEATHSTAR, TO)
    assert not again.passed and again.verdict is not None  # every retransmission is judged


def test_established_connection_is_cut_when_its_allow_goes(pdp: PolicyDatapath) -> None:
    pdp.enforce(SW_POLICY, ALL)
    pdp.flush_ct()
    assert pdp.send(tcp(TIEFIGHTER, DEATHSTAR, 80, SYN), DEATHSTAR, TO).passed
    assert pdp.send(tcp(DEATHSTAR, TIEFIGHTER, 40000, SYN | ACK, sport=80), DEATHSTAR, FROM).passed
    est = pdp.send(tcp(TIEFIGHTER, DEATHSTAR, 80, ACK), DEATHSTAR, TO)
    assert est.passed and est.verdict is None  # established: looked up, no verdict record

    # replace the policy by one that selects deathstar but allows nothing
    pdp.enforce(SW_POLICY.replace("org: empire\n      toPorts", "org: nobody\n      toPorts"), ALL)
    cut = pdp.send(tcp(TIEFIGHTER, DEATHSTAR, 80, ACK), DEATHSTAR, TO)
    assert not cut.passed
    assert cut.verdict is None and cut.drop is not None  # established: a drop record only
    reply = pdp.send(tcp(DEATHSTAR, TIEFIGHTER, 40000, ACK, sport=80), DEATHSTAR, FROM)
    assert reply.passed  # the reply direction still passes (conntrack)

    # removing every policy: nothing enforced, the connection flows again
    pdp.enforce("", ALL)
    assert pdp.send(tcp(TIEFIGHTER, DEATHSTAR, 80, ACK), DEATHSTAR, TO).passed


def test_ipv6_neighbour_discovery_passes_default_deny(pdp: PolicyDatapath) -> None:
    from policy_bpf_harness import P

    pdp.enforce(V6_POLICY, ALL)
    pdp.flush_ct()
    ns = P.icmp_frame("fd00:246::99", DEATHSTAR6.ip, 135)
    out = pdp.send(ns, DEATHSTAR6, TO)
    assert out.passed and out.verdict is None
    echo = pdp.send(icmp_echo("fd00:246::99", DEATHSTAR6.ip), DEATHSTAR6, TO)
    assert not echo.passed


def test_switch_writes_only_differences_and_flips_generation(pdp: PolicyDatapath) -> None:
    first = pdp.enforce(SW_POLICY, ALL)
    assert first.switched and first.generation == 1
    assert pdp.maps.generation() == 1
    assert pdp.maps.read_image(1).same_as(pdp.maps.image(1))

    same = pdp.enforce(SW_POLICY, ALL)
    assert not same.switched and same.writes == 0

    # more policies, each selecting one other endpoint: every switch writes the inactive
    # generation up to the target and touches only endpoints whose policy differs there
    xw = ICMP_ONLY.replace("class: deathstar", "class: xwing").replace("name: ping", "name: ping-x")
    tf = ICMP_ONLY.replace("class: deathstar", "class: tiefighter").replace(
        "name: ping", "name: ping-t"
    )
    second = pdp.enforce(SW_POLICY + "---\n" + xw, ALL)
    assert second.switched and second.generation == 0
    assert second.endpoints == frozenset({DEATHSTAR.id, XWING.id})  # generation 0 was empty
    third = pdp.enforce(SW_POLICY + "---\n" + xw + "---\n" + tf, ALL)
    assert third.generation == 1 and third.endpoints == frozenset({XWING.id, TIEFIGHTER.id})
    fourth = pdp.enforce(SW_POLICY + "---\n" + tf, ALL)
    assert fourth.generation == 0 and fourth.endpoints == frozenset({XWING.id, TIEFIGHTER.id})
    for gen in (0, 1):
        assert pdp.maps.read_image(gen).same_as(pdp.maps.image(gen))
    pdp.flush_ct()
    assert pdp.send(icmp_echo(XWING, TIEFIGHTER), TIEFIGHTER, TO).passed
    assert pdp.send(
        icmp_echo(TIEFIGHTER, XWING), XWING, TO
    ).passed  # xwing: no policy selects it now


def test_label_change_recomputes_only_affected_endpoints(pdp: PolicyDatapath) -> None:
    """xwing defects (org=alliance -> org=empire, new identity): deathstar's allow list
    gains the identity; no other endpoint's entries change."""
    pdp.enforce(SW_POLICY, ALL)
    pdp.enforce(SW_POLICY, ALL)  # both generations in sync
    before = dict(pdp.maps.active_image().entries)
    defector = Ep(XWING.id, 1005, XWING.ip, ("k8s:org=empire", "k8s:class=xwing"))
    stats = pdp.enforce(SW_POLICY, (DEATHSTAR, TIEFIGHTER, defector, DEATHSTAR6, SHUTTLE))
    assert stats.endpoints == frozenset({DEATHSTAR.id})
    after = pdp.maps.active_image().entries
    assert after[DEATHSTAR.id] != before[DEATHSTAR.id]
    pdp.flush_ct()
    assert pdp.send(tcp(defector, DEATHSTAR, 80), DEATHSTAR, TO).passed


EGRESS_MIX = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: tie-out, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: tiefighter}}
  egress:
    - toEndpoints: [{matchLabels: {org: empire}}]
      toPorts: [{ports: [{port: "80", endPort: 90, protocol: ANY}]}]
    - toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  egressDeny:
    - toEndpoints: [{matchLabels: {class: shuttle}}]
      toPorts: [{ports: [{port: "81", protocol: TCP}]}]
"""


def test_datapath_agrees_with_trace_everywhere(pdp: PolicyDatapath) -> None:
    """Every pair of IPv4 endpoints, several ports and protocols, under several policies at
    once (ingress and egress, allow and deny, ranges): the datapath's pass/drop, drop
    reason and verdict records match what observer.policy.trace says, direction by direction."""
    docs = [SW_POLICY, EGRESS_MIX, PORT_RANGE.replace("class: deathstar", "class: shuttle")]
    pdp.enforce("---\n".join(docs), ALL)
    assert pdp.compiled is not None
    eps = [DEATHSTAR, TIEFIGHTER, XWING, SHUTTLE]
    checked = 0
    for src in eps:
        for dst in eps:
            if src is dst:
                continue
            for proto, frame_of in (("tcp", tcp), ("udp", udp)):
                for port in (22, 53, 79, 80, 81, 90, 91, 7999, 8000, 8010, 8011):
                    predicted = trace(
                        pdp.compiled, Local(src.id), Local(dst.id), port, Protocol[proto.upper()]
                    )
                    outcomes = _send_both_sides(pdp, frame_of(src, dst, port), src, dst)
                    where = f"{src.ip} -> {dst.ip} {proto}/{port}"
                    assert all(o.passed for o in outcomes) is predicted.allowed, where
                    got = sorted(
                        (
                            o.verdict["policy_dir"],
                            _rule_section(pdp, o.verdict["policy_rule_id"]),
                            o.verdict["policy_match_type"],
                            o.verdict["drop_reason"],
                        )
                        for o in outcomes
                        if o.verdict is not None
                    )
                    want = []
                    for d in (predicted.egress, predicted.ingress):
                        if d is None or not d.enforced:
                            continue
                        if (
                            d.direction.name == "INGRESS"
                            and predicted.egress is not None
                            and not predicted.egress.allowed
                        ):
                            continue  # dropped at the source: never reaches the destination
                        section = d.rule.section if d.rule is not None else "default deny"
                        reason = (
                            0
                            if d.allowed
                            else (pm.DROP_POLICY_DENY if d.rule is not None else pm.DROP_POLICY)
                        )
                        want.append((int(d.direction), section, int(d.match_type), reason))
                    assert got == sorted(want), where
                    checked += 1
    assert checked == 12 * 2 * 11


def test_nothing_of_a_new_policy_is_enforced_before_the_flip(pdp: PolicyDatapath) -> None:
    """switch_to writes the whole new policy (entries, flags, ipcache) first; packets keep
    seeing the old one until the single generation write."""
    from observer.agent.policy import StableIds, build_image, stable_ids_for
    from observer.policy import compile_policies, load_policies

    def image(text: str):  # type: ignore[no-untyped-def]
        compiled = compile_policies(
            load_policies(text, "t.yaml") if text else [],
            [e.view() for e in ALL],
            {e.identity: [*e.labels, "k8s:io.kubernetes.pod.namespace=default"] for e in ALL},
        )
        pdp.ids = stable_ids_for(compiled, getattr(pdp, "ids", StableIds()))
        return build_image(compiled, pdp.ids)

    def xwing_passes() -> bool:
        pdp.flush_ct()
        return pdp.send(tcp(XWING, DEATHSTAR, 80), DEATHSTAR, TO).passed

    seen: list[bool] = []
    pdp.maps.switch_to(image(""))
    assert xwing_passes()
    pdp.maps.switch_to(image(SW_POLICY), before_flip=lambda: seen.append(xwing_passes()))
    assert seen == [True] and not xwing_passes()
    pdp.maps.switch_to(image(""), before_flip=lambda: seen.append(xwing_passes()))
    assert seen == [True, False] and xwing_passes()

    # an exception before the flip (the agent could not save its state) changes nothing
    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        pdp.maps.switch_to(image(SW_POLICY), before_flip=fail)
    assert xwing_passes()
    stats = pdp.maps.switch_to(image(SW_POLICY))
    assert stats.switched and stats.writes == 0  # already written: only the flip was left
    assert not xwing_passes()
