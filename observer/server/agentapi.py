"""hubblectl.v1.Agent: endpoint management over the agent's unix socket.

Errors map to gRPC status codes at this one seam: a duplicate endpoint is ALREADY_EXISTS,
a malformed label INVALID_ARGUMENT, an exhausted pool RESOURCE_EXHAUSTED, a missing
endpoint NOT_FOUND; the message is the error's own one-line text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from observer.api.v1.hubblectl import agent_pb2, agent_pb2_grpc
from observer.datapath.endpoints import Endpoint
from observer.errors import (
    AddressExhausted,
    ConfigError,
    EndpointExists,
    EndpointNotFound,
    LabelError,
    ObserverError,
)


class EndpointOps(Protocol):
    """What the agent offers this servicer (async; blocking work runs in threads)."""

    async def create_endpoint(self, namespace: str, name: str, labels: Sequence[str]) -> Endpoint: ...

    async def delete_endpoint(self, namespace: str, name: str) -> Endpoint: ...

    def list_endpoints(self) -> list[Endpoint]: ...

    def get_endpoint(self, namespace: str, name: str) -> Endpoint: ...

    def enforcement(self, ep: Endpoint) -> tuple[str, str]: ...


_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (EndpointExists, grpc.StatusCode.ALREADY_EXISTS),
    (EndpointNotFound, grpc.StatusCode.NOT_FOUND),
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


async def _guard(context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except ObserverError as err:
        await context.abort(status_code_for(err), str(err))


class AgentServicer(agent_pb2_grpc.AgentServicer):
    def __init__(self, ops: EndpointOps) -> None:
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
