"""Identity-based L3/L4 network policy: model, loader, selectors, compiler and trace (pure).

YAML (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, Kubernetes NetworkPolicy)
-> :func:`load_policies` -> :class:`Policy` objects -> :func:`compile_policies` with the
local endpoints and known identities -> :class:`CompiledPolicy` (per-endpoint policy map
entries, enforcement flags, rule table, ipcache) -> :func:`diff` for incremental map
updates, :func:`trace` to explain a verdict with the datapath's own lookup algorithm.
"""

from __future__ import annotations

from observer.policy.compiler import (
    CompiledPolicy,
    CompileOptions,
    EndpointDiff,
    EndpointPolicy,
    EndpointView,
    PolicyDiff,
    PolicyEntry,
    PolicyKey,
    RuleRef,
    compile_policies,
    diff,
    ipcache_lookup,
)
from observer.policy.loader import PolicyLoadError, load_policies, policy_to_dict
from observer.policy.model import (
    Action,
    CidrRule,
    Direction,
    IcmpRule,
    MatchType,
    PeerKind,
    PeerSelector,
    Policy,
    PolicyKind,
    PolicySpec,
    PortRule,
    Protocol,
    Rule,
)
from observer.policy.selectors import LabelSelector, Operator, Requirement, parse_selector
from observer.policy.trace import Local, Remote, Verdict, lookup, peer_for_ip, trace

__all__ = [
    "Action",
    "CidrRule",
    "CompileOptions",
    "CompiledPolicy",
    "Direction",
    "EndpointDiff",
    "EndpointPolicy",
    "EndpointView",
    "IcmpRule",
    "LabelSelector",
    "Local",
    "MatchType",
    "Operator",
    "PeerKind",
    "PeerSelector",
    "Policy",
    "PolicyDiff",
    "PolicyEntry",
    "PolicyKey",
    "PolicyKind",
    "PolicyLoadError",
    "PolicySpec",
    "PortRule",
    "Protocol",
    "Remote",
    "Requirement",
    "Rule",
    "RuleRef",
    "Verdict",
    "compile_policies",
    "diff",
    "ipcache_lookup",
    "load_policies",
    "lookup",
    "parse_selector",
    "peer_for_ip",
    "policy_to_dict",
    "trace",
]
