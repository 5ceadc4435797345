"""Hubble's observer.Observer service and our batched hubblectl.v1.FlowStream.

The standard GetFlows stream sends one GetFlowsResponse per flow, as Hubble does, so any
Hubble client works unchanged. GetFlowsBatched sends the same responses as JSON lines,
many per message: Python gRPC delivers ~15,000 messages/s per stream, so batching is the
fast path for our CLI and the relay.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import orjson

from observer import __version__
from observer.api.convert import response_to_proto
from observer.api.v1.hubblectl import agent_pb2
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.api.v1.relay import relay_pb2
from observer.api.wire import (
    FLOW_ENCODING_KEY,
    FLOW_ENCODING_LZ4,
    encode_flow_batch,
    encode_line_parts,
    encode_lz4_batch,
)
from observer.metrics import AgentMetrics
from observer.server.query import (
    FlowQuery,
    InvalidRequest,
    compile_request,
    is_plain,
    iter_batches,
    iter_data_batches,
    iter_sealed_batches,
    mask_flow,
)
from observer.store import FlowStore
from observer.store.ring import Entry, EntryKind, SealedBlock

SERVER_VERSION_KEY = "hubble-server-version"
BATCH_MAX_BYTES = 512 * 1024


@dataclass
class NodeInfo:
    """What this node says about itself in ServerStatus, GetNodes and the Peer service."""

    name: str
    address: str
    tls: bool = False
    tls_server_name: str = ""
    started_ns: int = field(default_factory=time.monotonic_ns)

    @property
    def version(self) -> str:
        return f"hubblectl v{__version__}"


async def _send_version(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.send_initial_metadata(((SERVER_VERSION_KEY, __version__),))


class _FlowSource:
    """What both flow servicers share: the store, this node, the clock, request checks."""

    def __init__(
        self,
        store: FlowStore,
        node: NodeInfo,
        now_ns: Callable[[], int] = time.time_ns,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self._store = store
        self._node = node
        self._now_ns = now_ns
        self._metrics = metrics

    async def _query(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> FlowQuery:
        """Validate and compile a GetFlowsRequest (INVALID_ARGUMENT naming the field)."""
        try:
            query = compile_request(request)
        except InvalidRequest as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        await _send_version(context)
        return query

    def _batches(self, query: FlowQuery) -> AsyncIterator[list[Entry | bytes]]:
        return iter_batches(self._store, query, self._node.name, self._now_ns, metrics=self._metrics)


class ObserverServicer(_FlowSource, observer_pb2_grpc.ObserverServicer):

    async def GetFlows(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[observer_pb2.GetFlowsResponse]:
        query = await self._query(request, context)
        async for batch in self._batches(query):
            for item in batch:
                data = item if isinstance(item, bytes) else item.data
                resp = orjson.loads(data)
                if query.field_mask and "flow" in resp:
                    resp["flow"] = mask_flow(resp["flow"], query.field_mask)
                yield response_to_proto(resp)

    async def GetAgentEvents(
        self, request: observer_pb2.GetAgentEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[observer_pb2.GetAgentEventsResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetAgentEvents is not implemented yet")
        yield observer_pb2.GetAgentEventsResponse()  # pragma: no cover

    async def GetDebugEvents(
        self, request: observer_pb2.GetDebugEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[observer_pb2.GetDebugEventsResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetDebugEvents is not implemented yet")
        yield observer_pb2.GetDebugEventsResponse()  # pragma: no cover

    def _status(self) -> observer_pb2.ServerStatusResponse:
        store = self._store
        resp = observer_pb2.ServerStatusResponse(
            num_flows=len(store),
            max_flows=store.capacity,
            seen_flows=store.seen,
            uptime_ns=time.monotonic_ns() - self._node.started_ns,
            version=self._node.version,
            flows_rate=store.flows_rate(self._now_ns()),
        )
        resp.num_connected_nodes.value = 1
        resp.num_unavailable_nodes.value = 0
        return resp

    async def ServerStatus(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> observer_pb2.ServerStatusResponse:
        await _send_version(context)
        return self._status()

    async def GetNodes(
        self, request: observer_pb2.GetNodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> observer_pb2.GetNodesResponse:
        await _send_version(context)
        st = self._status()
        node = observer_pb2.Node(
            name=self._node.name,
            version=self._node.version,
            address=self._node.address,
            state=relay_pb2.NODE_CONNECTED,
            uptime_ns=st.uptime_ns,
            num_flows=st.num_flows,
            max_flows=st.max_flows,
            seen_flows=st.seen_flows,
        )
        node.tls.enabled = self._node.tls
        node.tls.server_name = self._node.tls_server_name
        return observer_pb2.GetNodesResponse(nodes=[node])

    async def GetNamespaces(
        self, request: observer_pb2.GetNamespacesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> observer_pb2.GetNamespacesResponse:
        """Namespaces seen in flows during the last hour, sorted (Hubble's window)."""
        await _send_version(context)
        horizon = self._now_ns() - 3600 * 1_000_000_000
        seen: set[tuple[str, str]] = set()
        for entry in self._store.select(number=0, first=False, since_ns=horizon, until_ns=None, predicate=None):
            if entry.kind != EntryKind.FLOW:
                continue
            flow = orjson.loads(entry.data)["flow"]
            for side in ("source", "destination"):
                ep = flow.get(side) or {}
                ns = ep.get("namespace")
                if ns:
                    seen.add((ep.get("cluster_name", ""), ns))
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(cluster=c, namespace=n) for c, n in sorted(seen)]
        )


def wants_lz4(context: Any) -> bool:
    """Whether the request's metadata asks for LZ4 blocks (``FLOW_ENCODING_KEY: lz4``;
    a comma-separated list of encodings may name it among others)."""
    metadata = context.invocation_metadata() if hasattr(context, "invocation_metadata") else None
    for key, value in metadata or ():
        if key == FLOW_ENCODING_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if FLOW_ENCODING_LZ4 in (v.strip().lower() for v in text.split(",")):
                return True
    return False


def _serialize_batch(batch: bytes | agent_pb2.FlowBatch) -> bytes:
    """FlowStream's response serializer: batches are usually encoded already."""
    return batch if isinstance(batch, bytes) else batch.SerializeToString()


class FlowStreamServicer(_FlowSource):
    """hubblectl.v1.FlowStream: the same responses as JSON lines, batched.

    Yields serialized FlowBatch messages (``observer.api.wire``: one copy of the lines, whole
    sealed history blocks as they are), so register it with ``add_to_server``, not with the
    generated ``add_FlowStreamServicer_to_server`` (whose serializer expects messages). Each
    batch carries its lines' times (``times_ns``) so a relay need not parse them.

    A reader that sends the request metadata ``hubblectl-flow-encoding: lz4`` (``wants_lz4``)
    gets, for a plain query (``is_plain``), the store's whole sealed blocks as they are stored,
    LZ4-compressed (``json_lines_lz4``, several per message), and the other lines as usual;
    the same lines, in the same order, with the same times."""

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handlers = {
            "GetFlowsBatched": grpc.unary_stream_rpc_method_handler(
                self.GetFlowsBatched,
                request_deserializer=observer_pb2.GetFlowsRequest.FromString,
                response_serializer=_serialize_batch,
            )
        }
        service = agent_pb2.DESCRIPTOR.services_by_name["FlowStream"].full_name
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))

    async def GetFlowsBatched(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes | agent_pb2.FlowBatch]:
        query = await self._query(request, context)
        if is_plain(query) and wants_lz4(context):
            async for run, run_count, run_times in iter_sealed_batches(
                self._store, query, self._node.name, self._now_ns, metrics=self._metrics
            ):
                if run and isinstance(run[0], SealedBlock):
                    blocks = [p for p in run if isinstance(p, SealedBlock)]
                    sizes = [b.size for b in blocks]
                    yield encode_lz4_batch([b.lz4 for b in blocks], sizes, run_count, run_times)
                else:
                    yield encode_line_parts(cast("list[bytes]", run), run_count, run_times)
            return
        if is_plain(query):
            async for chunk, count, chunk_times in iter_data_batches(
                self._store, query, self._node.name, self._now_ns, metrics=self._metrics
            ):
                yield encode_line_parts(chunk, count, chunk_times)
            return
        async for batch in self._batches(query):
            parts: list[bytes] = []
            times: list[int] = []
            size = 0
            for item in batch:
                if isinstance(item, bytes):
                    data = item
                    times.append(0)  # a LostEvent made here: the reader takes its time from the line
                else:
                    times.append(item.time_ns)
                    if query.field_mask and item.kind == EntryKind.FLOW:
                        resp = orjson.loads(item.data)
                        resp["flow"] = mask_flow(resp["flow"], query.field_mask)
                        data = orjson.dumps(resp)
                    else:
                        data = item.data
                parts.append(data)
                size += len(data)
                if size >= BATCH_MAX_BYTES:
                    yield encode_flow_batch(parts, times)
                    parts = []
                    times = []
                    size = 0
            if parts:
                yield encode_flow_batch(parts, times)
