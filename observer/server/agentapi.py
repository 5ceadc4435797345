"""hubblectl.v1.Agent: endpoint and network policy management over the agent's unix socket.

Errors map to gRPC status codes at this one seam: a duplicate endpoint is ALREADY_EXISTS,
a malformed label or policy INVALID_ARGUMENT, an exhausted pool RESOURCE_EXHAUSTED, a
missing endpoint or policy NOT_FOUND; the message is the error's own one-line text (for a
malformed policy: ``<file>: document <n>: <field path>: <problem>``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from observer.agent.policy import (
    ApplyResult,
    Change,
    PolicyAmbiguous,
    PolicyNotFound,
    PolicySummary,
    TraceResult,
)
from observer.api.v1.hubblectl import agent_pb2, agent_pb2_grpc
from observer.datapath.endpoints import Endpoint
from observer.errors import (
    AddressExhausted,
    ConfigError,
    EndpointExists,
    EndpointNotFound,
    LabelError,
    ObserverError,
    PolicyError,
)
from observer.policy import MatchType, Policy
from observer.policy.trace import DirectionVerdict


class EndpointOps(Protocol):
    """What the agent offers this servicer (async; blocking work runs in threads)."""

    async def create_endpoint(self, namespace: str, name: str, labels: Sequence[str]) -> Endpoint: ...

    async def update_endpoint_labels(
        self, namespace: str, name: str, labels: Sequence[str]
    ) -> Endpoint: ...

    async def delete_endpoint(self, namespace: str, name: str) -> Endpoint: ...

    def list_endpoints(self) -> list[Endpoint]: ...

    def get_endpoint(self, namespace: str, name: str) -> Endpoint: ...

    def enforcement(self, ep: Endpoint) -> tuple[str, str]: ...


class PolicyOps(Protocol):
    async def apply_policies(self, files: Sequence[tuple[str, str]]) -> tuple[list[Change], ApplyResult]: ...

    async def delete_policy(self, key: str, kind: str) -> tuple[Policy, ApplyResult]: ...

    def list_policies(self) -> tuple[list[PolicySummary], int]: ...

    def get_policy(self, key: str, kind: str) -> tuple[PolicySummary, str]: ...

    def trace_policy(self, source: str, destination: str, dport: int, protocol: str) -> TraceResult: ...


class AgentOps(EndpointOps, PolicyOps, Protocol):
    """Everything the Agent service needs."""


_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (EndpointExists, grpc.StatusCode.ALREADY_EXISTS),
    (EndpointNotFound, grpc.StatusCode.NOT_FOUND),
    (PolicyNotFound, grpc.StatusCode.NOT_FOUND),
    (PolicyAmbiguous, grpc.StatusCode.FAILED_PRECONDITION),
    (PolicyError, grpc.StatusCode.INVALID_ARGUMENT),
    (AddressExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LabelError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (ObserverError, grpc.StatusCode.INTERNAL),
)


def status_code_for(err: Exception) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def endpoint_to_proto(ep: Endpoint, enforcement: tuple[str, str]) -> agent_pb2.Endpoint:
    created = Timestamp()
    created.FromNanoseconds(ep.created)
    return agent_pb2.Endpoint(
        id=ep.id,
        namespace=ep.namespace,
        name=ep.name,
        ipv4=ep.ipv4,
        ipv6=ep.ipv6,
        identity=ep.identity,
        labels=ep.labels.to_strings(),
        netns=ep.netns,
        interface_name=ep.host_ifname,
        ifindex=ep.host_ifindex,
        mac=ep.mac,
        state="ready",
        policy_enforcement_ingress=enforcement[0],
        policy_enforcement_egress=enforcement[1],
        created=created,
    )


def policy_summary_to_proto(s: PolicySummary) -> agent_pb2.PolicySummary:
    return agent_pb2.PolicySummary(
        kind=s.kind,
        namespace=s.namespace,
        name=s.name,
        revision=s.revision,
        endpoints=list(s.endpoints),
        ingress=s.ingress,
        egress=s.egress,
        filename=s.filename,
    )


def apply_result_to_proto(r: ApplyResult) -> agent_pb2.ApplyResult:
    return agent_pb2.ApplyResult(
        revision=r.revision, endpoints_changed=r.endpoints_changed, entries_written=r.entries_written
    )


def _direction_to_proto(v: DirectionVerdict | None) -> agent_pb2.TraceDirection | None:
    if v is None:
        return None
    return agent_pb2.TraceDirection(
        direction=v.direction.text,
        endpoint_id=v.endpoint_id,
        remote_identity=v.remote_identity,
        enforced=v.enforced,
        allowed=v.allowed,
        action=v.action.name if v.action is not None else "",
        match_type=int(v.match_type),
        reason=v.reason,
        rule=v.rule.display if v.rule is not None else "",
    )


def trace_to_proto(t: TraceResult) -> agent_pb2.TracePolicyResponse:
    v = t.verdict
    text = "AUDITED" if v.audited else ("ALLOWED" if v.allowed else "DENIED")
    resp = agent_pb2.TracePolicyResponse(
        verdict=text,
        allowed=v.allowed,
        audited=v.audited,
        match_type=int(v.match_type),
        match_type_text=MatchType(v.match_type).text,
        decided_by=v.decided_by,
        policy_kind=v.rule.kind if v.rule is not None else "",
        policy_namespace=v.rule.namespace if v.rule is not None else "",
        policy_name=v.rule.name if v.rule is not None else "",
        source=t.source,
        destination=t.destination,
        source_identity=t.source_identity,
        destination_identity=t.destination_identity,
        explanation=list(v.explanation),
    )
    egress = _direction_to_proto(v.egress)
    if egress is not None:
        resp.egress.CopyFrom(egress)
    ingress = _direction_to_proto(v.ingress)
    if ingress is not None:
        resp.ingress.CopyFrom(ingress)
    return resp


def _policy_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


async def _guard(context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except ObserverError as err:
        await context.abort(status_code_for(err), str(err))


class AgentServicer(agent_pb2_grpc.AgentServicer):
    def __init__(self, ops: AgentOps) -> None:
        self._ops = ops

    async def CreateEndpoint(
        self, request: agent_pb2.CreateEndpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.Endpoint:
        async def call() -> agent_pb2.Endpoint:
            ep = await self._ops.create_endpoint(request.namespace, request.name, list(request.labels))
            return endpoint_to_proto(ep, self._ops.enforcement(ep))

        return await _guard(context, call)  # type: ignore[no-any-return]

    async def DeleteEndpoint(
        self, request: agent_pb2.DeleteEndpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.DeleteEndpointResponse:
        async def call() -> agent_pb2.DeleteEndpointResponse:
            await self._ops.delete_endpoint(request.namespace, request.name)
            return agent_pb2.DeleteEndpointResponse()

        return await _guard(context, call)  # type: ignore[no-any-return]

    async def ListEndpoints(
        self, request: agent_pb2.ListEndpointsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.ListEndpointsResponse:
        eps = self._ops.list_endpoints()
        return agent_pb2.ListEndpointsResponse(
            endpoints=[endpoint_to_proto(ep, self._ops.enforcement(ep)) for ep in eps]
        )

    async def GetEndpoint(
        self, request: agent_pb2.GetEndpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.Endpoint:
        async def call() -> agent_pb2.Endpoint:
            ep = self._ops.get_endpoint(request.namespace, request.name)
            return endpoint_to_proto(ep, self._ops.enforcement(ep))

        return await _guard(context, call)  # type: ignore[no-any-return]

    async def UpdateEndpointLabels(
        self,
        request: agent_pb2.UpdateEndpointLabelsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> agent_pb2.Endpoint:
        async def call() -> agent_pb2.Endpoint:
            ep = await self._ops.update_endpoint_labels(
                request.namespace, request.name, list(request.labels)
            )
            return endpoint_to_proto(ep, self._ops.enforcement(ep))

        return await _guard(context, call)  # type: ignore[no-any-return]

    # --- network policy ------------------------------------------------------------------

    async def ApplyPolicies(
        self, request: agent_pb2.ApplyPoliciesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.ApplyPoliciesResponse:
        async def call() -> agent_pb2.ApplyPoliciesResponse:
            files = [(f.filename or "<stdin>", f.text) for f in request.files]
            if not files:
                raise PolicyError("no policy file given")
            changes, result = await self._ops.apply_policies(files)
            summaries = {(s.kind, s.namespace, s.name): s for s in self._ops.list_policies()[0]}
            out = []
            for change in changes:
                p = change.policy
                summary = summaries.get((str(p.kind), p.namespace, p.name))
                proto = (
                    policy_summary_to_proto(summary)
                    if summary is not None
                    else agent_pb2.PolicySummary(kind=str(p.kind), namespace=p.namespace, name=p.name)
                )
                out.append(agent_pb2.PolicyChange(policy=proto, action=change.action))
            return agent_pb2.ApplyPoliciesResponse(changes=out, result=apply_result_to_proto(result))

        return await _guard(context, call)  # type: ignore[no-any-return]

    async def ListPolicies(
        self, request: agent_pb2.ListPoliciesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.ListPoliciesResponse:
        async def call() -> agent_pb2.ListPoliciesResponse:
            summaries, revision = self._ops.list_policies()
            return agent_pb2.ListPoliciesResponse(
                policies=[policy_summary_to_proto(s) for s in summaries], revision=revision
            )

        return await _guard(context, call)  # type: ignore[no-any-return]

    async def GetPolicy(
        self, request: agent_pb2.GetPolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.PolicyDocument:
        async def call() -> agent_pb2.PolicyDocument:
            summary, text = self._ops.get_policy(_policy_key(request.namespace, request.name), request.kind)
            return agent_pb2.PolicyDocument(summary=policy_summary_to_proto(summary), yaml=text)

        return await _guard(context, call)  # type: ignore[no-any-return]

    async def DeletePolicy(
        self, request: agent_pb2.DeletePolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.DeletePolicyResponse:
        async def call() -> agent_pb2.DeletePolicyResponse:
            policy, result = await self._ops.delete_policy(
                _policy_key(request.namespace, request.name), request.kind
            )
            deleted = agent_pb2.PolicySummary(
                kind=str(policy.kind),
                namespace=policy.namespace,
                name=policy.name,
                revision=policy.revision,
                filename=policy.filename,
            )
            return agent_pb2.DeletePolicyResponse(deleted=deleted, result=apply_result_to_proto(result))

        return await _guard(context, call)  # type: ignore[no-any-return]

    async def TracePolicy(
        self, request: agent_pb2.TracePolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.TracePolicyResponse:
        async def call() -> agent_pb2.TracePolicyResponse:
            result = self._ops.trace_policy(
                request.source, request.destination, request.dport, request.protocol or "tcp"
            )
            return trace_to_proto(result)

        return await _guard(context, call)  # type: ignore[no-any-return]
