"""The relay's gRPC services: Hubble's observer.Observer and our hubblectl.v1.FlowStream,
answered from all nodes of the peer pool.

A GetFlows request (either stream) becomes a ``FlowSession``: the request goes unchanged to
every connected node (over the batched stream when the node offers it, else Hubble's
standard GetFlows), each node's responses are pushed into one ``TimeMerger`` (merge.py) and
the merged JSON lines go to the client. The session puts node-status events in the stream as
Hubble Relay does: NODE_CONNECTED / NODE_UNAVAILABLE first, then NODE_UNAVAILABLE or
NODE_ERROR when a node's stream fails, NODE_CONNECTED when it comes back (follow mode
reconnects and resumes after the last response seen from that node), NODE_GONE when the
Peer service removes it.

``number`` across nodes (docs/relay.md): each node is asked for ``number``; without
``follow`` the relay returns the first (``first`` or ``since``) or last ``number`` flows of
the merged stream; with ``follow``, each node's history passes through (up to ``number`` per
node, as in Hubble), since a node's stream does not mark where its history ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import orjson
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from observer import __version__
from observer.api.convert import response_to_json_line, response_to_proto
from observer.api.v1.hubblectl import agent_pb2
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.api.wire import FLOW_ENCODING_KEY, FLOW_ENCODING_LZ4, WireError
from observer.errors import ConfigError
from observer.malloc import tune_malloc
from observer.relay.lines import LineTable
from observer.relay.merge import FirstN, LastN, MergeStats, TimeMerger, TimeParser, timed_lines
from observer.relay.pool import (
    Backoff,
    Peer,
    PeerPool,
    PeerSpec,
    PeerState,
    PoolOptions,
    UpstreamTLS,
)
from observer.relay.status import (
    NODE_CONNECTED,
    NODE_ERROR,
    NODE_GONE,
    NODE_UNAVAILABLE,
    RELAY_VERSION_KEY,
    NodeReport,
    get_nodes,
    node_status_line,
    server_status,
)
from observer.server.listen import bind
from observer.server.query import InvalidRequest, compile_request
from observer.server.tls import server_credentials

# Asks each node for its sealed history blocks LZ4-compressed, as stored (a node that does
# not know it sends json_lines; pool.Peer's deserializer decompresses either way).
_NODE_METADATA: Final = ((FLOW_ENCODING_KEY, FLOW_ENCODING_LZ4),)

log = logging.getLogger(__name__)

HEALTH_SERVICE: Final = "hubble.server.Observer"
FLOW_STREAM_SERVICE: Final = "hubblectl.v1.FlowStream"
BATCH_MAX_BYTES: Final = 512 * 1024
OUTPUT_LIMIT: Final = 8192  # merged lines waiting for a slow client before readers pause
FOLLOW_IDLE_NS: Final = 100_000_000  # a quiet node stops holding back a live stream after this
_NS: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Settings of ``hubblectl relay``."""

    listen_address: str = ":4245"
    peers: tuple[PeerSpec, ...] = ()
    peer_service: str | None = None
    cluster_name: str = "default"
    node_name: str = ""
    dial_timeout_s: float = 5.0
    retry_timeout_s: float = 30.0
    initial_backoff_s: float = 0.1
    sort_buffer_len_max: int = 100
    sort_buffer_drain_timeout_s: float = 1.0
    upstream_tls: UpstreamTLS = field(default_factory=UpstreamTLS)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_files: tuple[str, ...] = ()

    @property
    def absolute_node_name(self) -> str:
        """The name the relay's own node-status events carry (``<cluster>/<host>``)."""
        if self.node_name:
            return self.node_name if "/" in self.node_name else f"{self.cluster_name}/{self.node_name}"
        return f"{self.cluster_name}/{socket.gethostname().split('.')[0]}"

    def validate(self) -> None:
        if not self.peers and not self.peer_service:
            raise ConfigError("no peers: give --peer NAME=ADDR or --peer-service ADDR")
        if self.sort_buffer_len_max < 1:
            raise ConfigError("--sort-buffer-len-max must be at least 1")
        if self.sort_buffer_drain_timeout_s <= 0:
            raise ConfigError("--sort-buffer-drain-timeout must be positive")
        if self.dial_timeout_s <= 0:
            raise ConfigError("--dial-timeout must be positive")
        if self.retry_timeout_s <= 0:
            raise ConfigError("--retry-timeout must be positive")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("--tls-cert-file and --tls-key-file must be given together")
        if self.tls_client_ca_files and not self.tls_cert_file:
            raise ConfigError("--tls-client-ca-files needs --tls-cert-file and --tls-key-file")
        up = self.upstream_tls
        if bool(up.cert_file) != bool(up.key_file):
            raise ConfigError("--tls-client-cert-file and --tls-client-key-file must be given together")
        if not self.cluster_name or "/" in self.cluster_name:
            raise ConfigError(f"--cluster-name: invalid cluster name {self.cluster_name!r}")


def _is_flow(line: bytes) -> bool:
    return line.startswith(b'{"flow"')


@dataclass
class _Track:
    """What a session knows about one node."""

    reported: str = ""  # the last state announced in this stream
    failed_generation: int | None = None
    failed_peer: Peer | None = None  # the connection (peer object) failed_generation counts on
    retry_at: float = 0.0
    last_time_ns: int | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(0.2, 5.0))

    @classmethod
    def for_config(cls, config: RelayConfig) -> _Track:
        return cls(backoff=Backoff(config.initial_backoff_s, config.retry_timeout_s))


class FlowSession:
    """One client's GetFlows over all nodes.

    ``batches()`` yields lists of line ids of the session's ``LineTable`` (lines.py): the
    nodes' batches stay as they came and the merge orders ids; the caller turns each list
    into serialized FlowBatches with ``encode`` or into JSON lines with ``take_lines``."""

    def __init__(
        self,
        pool: PeerPool,
        request: observer_pb2.GetFlowsRequest,
        config: RelayConfig,
        *,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._pool = pool
        self._request = request
        self._config = config
        self._node_name = config.absolute_node_name
        self._mono = mono_ns
        self._wall = wall_ns
        self._follow = bool(request.follow)
        drain_ns = int(config.sort_buffer_drain_timeout_s * _NS)
        idle = min(drain_ns, FOLLOW_IDLE_NS) if self._follow else drain_ns
        self._table = LineTable()
        self._merger: TimeMerger[int] = TimeMerger(config.sort_buffer_len_max, drain_ns, idle)
        # how long a node may take to send its first response (it may be reading its
        # history) before the others go ahead without it; the drain timeout bounds it anyway
        self._grace_ns = drain_ns
        self._first: FirstN[bytes] | None = None
        self._last: LastN[bytes] | None = None
        number = int(request.number)
        if number and not self._follow:
            if request.first or request.HasField("since"):
                self._first = FirstN(number, _is_flow)
            else:
                self._last = LastN(number, _is_flow)
        self._out: list[int] = []
        self._out_event = asyncio.Event()
        self._space = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._timer_deadline: int | None = None
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._reader_peer: dict[str, Peer] = {}
        self._tracks: dict[str, _Track] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._done = False
        # the merge's clock stops while the client is the bottleneck (output backlog full):
        # waiting for the client must not make a node look idle or a response overdue
        self._stalled_ns = 0
        self._stall_start: int | None = None

    def _now(self) -> int:
        """The merge's clock: monotonic time minus the time the client held everything up."""
        now = self._mono() if self._stall_start is None else self._stall_start
        return now - self._stalled_ns

    def _check_stall(self) -> None:
        if self._stall_start is None and len(self._out) >= OUTPUT_LIMIT:
            self._stall_start = self._mono()

    @property
    def stats(self) -> MergeStats:
        return self._merger.stats

    def encode(self, ids: Sequence[int], max_bytes: int = BATCH_MAX_BYTES) -> list[bytes]:
        """Serialized FlowBatches of the lines of ids ``batches()`` yielded."""
        return self._table.encode(ids, max_bytes)

    def take_lines(self, ids: Sequence[int]) -> list[bytes]:
        """The JSON lines of ids ``batches()`` yielded."""
        return self._table.take_lines(ids)

    # --- output -------------------------------------------------------------------------

    def _signal_output(self) -> None:
        self._out_event.set()

    def _signal_space(self) -> None:
        event, self._space = self._space, asyncio.Event()
        event.set()

    def _status(self, state: str, names: Sequence[str], message: str = "") -> None:
        self._out += self._table.add_lines([node_status_line(state, names, message, self._node_name, self._wall())])
        self._check_stall()
        self._signal_output()

    def _emit(self, items: list[int]) -> None:
        if not items or self._done:
            return
        if self._first is not None:
            self._out += self._table.add_lines(self._first.feed(self._table.take_lines(items)))
            if self._first.done:
                self._finish()
        elif self._last is not None:
            self._last.feed(self._table.take_lines(items))
        else:
            self._out.extend(items)
        self._check_stall()
        self._signal_output()
        self._signal_space()  # sources whose responses went out may push again

    def _finish(self) -> None:
        """End of the stream: everything still buffered goes out in order."""
        if self._done:
            return
        rest = self._merger.drain()
        table = self._table
        if self._first is not None:
            self._out += table.add_lines(self._first.feed(table.take_lines(rest)))
        elif self._last is not None:
            self._last.feed(table.take_lines(rest))
            self._out += table.add_lines(self._last.result())
        else:
            self._out.extend(rest)
        self._done = True
        self._signal_output()
        self._signal_space()

    # --- the session ----------------------------------------------------------------------

    async def batches(self) -> AsyncGenerator[list[int], None]:
        try:
            await self._begin()
            while True:
                if self._out:
                    out, self._out = self._out, []
                    if self._stall_start is not None:
                        self._stalled_ns += self._mono() - self._stall_start
                        self._stall_start = None
                    self._signal_space()
                    yield out
                    continue
                if self._done:
                    return
                self._out_event.clear()
                await self._out_event.wait()
        finally:
            self._done = True
            tasks = [*self._tasks, *self._readers.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.debug("flow request ended: %s, client stalls %.3f s", self._merger.stats, self._stalled_ns / 1e9)

    async def _begin(self) -> None:
        await self._pool.wait_settled(self._config.dial_timeout_s)
        peers = self._pool.peers()
        connected = [p for p in peers if p.connected]
        for p in peers:
            self._tracks[p.name] = _Track.for_config(self._config)
        if connected:
            self._status(NODE_CONNECTED, [p.name for p in connected])
        by_error: dict[str, list[str]] = {}
        for p in peers:
            if not p.connected:
                by_error.setdefault(p.last_error, []).append(p.name)
                self._tracks[p.name].reported = NODE_UNAVAILABLE
        for message, names in sorted(by_error.items()):
            self._status(NODE_UNAVAILABLE, names, message)
        now = self._now()
        for p in connected:
            self._merger.add_source(p.name, now, self._grace_ns)
        for p in connected:
            self._tracks[p.name].reported = NODE_CONNECTED
            self._start_reader(p)
        self._tasks.append(asyncio.create_task(self._timer_loop()))
        if self._follow:
            self._tasks.append(asyncio.create_task(self._supervise()))
        elif not connected:
            self._finish()

    def _request_for(self, track: _Track) -> observer_pb2.GetFlowsRequest:
        if track.last_time_ns is None:
            return self._request
        # resuming a follow stream: everything after the last response seen from this node
        req = observer_pb2.GetFlowsRequest()
        req.CopyFrom(self._request)
        req.number = 0
        req.first = False
        since = track.last_time_ns + 1
        if req.HasField("since"):
            since = max(since, req.since.seconds * _NS + req.since.nanos)
        req.since.seconds, req.since.nanos = divmod(since, _NS)
        return req

    def _start_reader(self, peer: Peer) -> None:
        track = self._tracks.setdefault(peer.name, _Track.for_config(self._config))
        self._merger.add_source(peer.name, self._now(), self._grace_ns)
        task = asyncio.create_task(self._read(peer, peer.generation, self._request_for(track), track))
        self._readers[peer.name] = task
        self._reader_peer[peer.name] = peer

    async def _read(self, peer: Peer, generation: int, request: observer_pb2.GetFlowsRequest, track: _Track) -> None:
        name = peer.name
        failure: tuple[str, str] | None = None
        try:
            await self._stream(peer, request, track)
            if self._follow:
                failure = (NODE_UNAVAILABLE, "the node ended the stream")
        except grpc.aio.AioRpcError as err:
            code = err.code()
            message = err.details() or code.name
            if code == grpc.StatusCode.UNAVAILABLE:
                self._pool.report_failure(peer, generation, message)
                failure = (NODE_UNAVAILABLE, message)
            elif code == grpc.StatusCode.CANCELLED and self._done:
                failure = None
            else:
                failure = (NODE_ERROR, f"{code.name}: {message}" if code != grpc.StatusCode.UNKNOWN else message)
        except WireError as err:
            failure = (NODE_ERROR, str(err))
        finally:
            if self._readers.get(name) is asyncio.current_task():
                del self._readers[name]
                del self._reader_peer[name]
                self._emit(self._merger.remove_source(name, self._now()))
            self._wake_timer()
        if self._pool.get(name) is not peer:
            failure = None  # removed or replaced (new address): the supervisor handles it
        if failure is not None and not self._done:
            state, message = failure
            track.failed_generation = generation
            track.failed_peer = peer
            track.retry_at = time.monotonic() + track.backoff.next()
            track.reported = state
            self._status(state, [name], message)
        if not self._follow and not self._readers and not self._done:
            self._finish()

    async def _stream(self, peer: Peer, request: observer_pb2.GetFlowsRequest, track: _Track) -> None:
        name = peer.name
        if peer.supports_batched is not False:
            parse = TimeParser()
            table = self._table
            call = peer.get_flows_batched(request, metadata=_NODE_METADATA)
            got = False
            try:
                async for batch in call:
                    if batch is None:  # gRPC logged why decode_flow_batch refused it
                        raise WireError("the node sent a malformed FlowBatch")
                    if not got:
                        got = True
                        peer.supports_batched = True
                        track.backoff.reset()
                    times = batch.times_ns
                    ids = table.add_batch(batch, len(times)) if times and 0 not in times else None
                    if ids is not None:  # each line timed by the node: kept in place
                        await self._push(name, times, ids, [], track)
                    else:
                        times, lines, untimed = timed_lines(batch.lines(), times, parse)
                        await self._push(name, times, table.add_lines(lines), table.add_lines(untimed), track)
                    if self._done:
                        return
                return
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNIMPLEMENTED or got:
                    raise
                peer.supports_batched = False
                log.info("node %s has no batched stream: using observer.Observer/GetFlows", name)
            finally:
                call.cancel()
        call2 = peer.get_flows(request)
        try:
            async for resp in call2:
                ids = self._table.add_lines([response_to_json_line(resp)[:-1]])
                if resp.HasField("time"):
                    await self._push(name, [resp.time.seconds * _NS + resp.time.nanos], ids, [], track)
                else:
                    await self._push(name, [], [], ids, track)
                if self._done:
                    return
        finally:
            call2.cancel()

    async def _push(self, name: str, times: list[int], ids: list[int], untimed: list[int], track: _Track) -> None:
        """Hand one batch of a node to the merge once the node may push (backpressure: its
        previous batch has entered the sort window and the client keeps up)."""
        merger = self._merger
        while not self._done:
            if len(self._out) >= OUTPUT_LIMIT or not merger.can_accept(name):
                await self._space.wait()
                continue
            now = self._now()
            for line_id in untimed:
                self._emit(merger.push(name, None, line_id, now))
            self._emit(merger.push_run(name, times, ids, now))
            self._wake_timer()
            if times:
                newest = max(times)
                if track.last_time_ns is None or newest > track.last_time_ns:
                    track.last_time_ns = newest
            return

    # --- time-driven release ----------------------------------------------------------------

    def _wake_timer(self) -> None:
        deadline = self._merger.next_deadline_ns()
        if deadline is not None and (self._timer_deadline is None or deadline < self._timer_deadline):
            self._timer_wake.set()

    async def _timer_loop(self) -> None:
        while not self._done:
            deadline = self._merger.next_deadline_ns()
            now = self._now()
            if deadline is not None and deadline <= now:
                released = self._merger.poll(now)
                if released:
                    self._emit(released)
                    self._signal_space()
                if self._merger.next_deadline_ns() == deadline:
                    await asyncio.sleep(0.001)  # nothing to release yet; do not spin
                continue
            self._timer_deadline = deadline
            self._timer_wake.clear()
            timeout = None if deadline is None else (deadline - now) / _NS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), timeout)
            self._timer_deadline = None

    # --- follow: nodes that come, go and come back -------------------------------------------

    async def _supervise(self) -> None:
        version = self._pool.version
        while not self._done:
            wait = self._reconcile()
            version = await self._pool.wait_changed(version, wait)

    def _stop_reader(self, name: str) -> None:
        task = self._readers.pop(name, None)
        self._reader_peer.pop(name, None)
        if task is not None:
            task.cancel()
            self._emit(self._merger.remove_source(name, self._now()))

    def _reconcile(self) -> float:
        """Start streams for connected nodes without one; report removed nodes. Returns how
        long to wait before looking again without a pool change (pending retries)."""
        now = time.monotonic()
        current = {p.name: p for p in self._pool.peers()}
        for name in list(self._tracks):
            if name not in current:
                self._stop_reader(name)
                self._tracks.pop(name)
                self._status(NODE_GONE, [name])
        wait = 5.0
        for name, peer in current.items():
            track = self._tracks.get(name)
            if track is None:
                track = self._tracks[name] = _Track.for_config(self._config)
            if name in self._readers:
                if self._reader_peer[name] is peer:
                    continue
                self._stop_reader(name)  # the node moved (PEER_UPDATED): read it anew
                track.failed_generation = None
            if peer.state is not PeerState.CONNECTED:
                if peer.state is PeerState.UNAVAILABLE and not track.reported:
                    track.reported = NODE_UNAVAILABLE
                    self._status(NODE_UNAVAILABLE, [name], peer.last_error)
                continue
            if (
                track.failed_generation is None
                or track.failed_peer is not peer
                or peer.generation > track.failed_generation
                or now >= track.retry_at
            ):
                if track.reported != NODE_CONNECTED:
                    self._status(NODE_CONNECTED, [name])
                    track.reported = NODE_CONNECTED
                self._start_reader(peer)
            else:
                wait = min(wait, max(0.01, track.retry_at - now))
        return wait


class RelayServices:
    """What the servicers share: the pool and the configuration."""

    def __init__(self, pool: PeerPool, config: RelayConfig) -> None:
        self.pool = pool
        self.config = config

    @property
    def version(self) -> str:
        return f"hubblectl-relay v{__version__}"

    async def reports(self) -> list[NodeReport]:
        timeout = self.config.dial_timeout_s
        await self.pool.wait_settled(timeout)  # just started: let first connections finish

        async def one(peer: Peer) -> NodeReport:
            base = NodeReport(
                name=peer.name,
                address=peer.address,
                connected=peer.connected,
                tls_enabled=peer.tls_enabled,
                tls_server_name=peer.server_name,
                error=peer.last_error,
            )
            if not peer.connected:
                return base
            try:
                st = await peer.server_status(observer_pb2.ServerStatusRequest(), timeout=timeout)
            except grpc.aio.AioRpcError as err:
                return NodeReport(
                    name=base.name,
                    address=base.address,
                    connected=err.code() != grpc.StatusCode.UNAVAILABLE,
                    tls_enabled=base.tls_enabled,
                    tls_server_name=base.tls_server_name,
                    error=err.details() or err.code().name,
                )
            return NodeReport(
                name=base.name,
                address=base.address,
                connected=True,
                tls_enabled=base.tls_enabled,
                tls_server_name=base.tls_server_name,
                status=st,
            )

        return list(await asyncio.gather(*(one(p) for p in self.pool.peers())))

    def session(self, request: observer_pb2.GetFlowsRequest) -> FlowSession:
        return FlowSession(self.pool, request, self.config)


async def _send_version(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.send_initial_metadata(((RELAY_VERSION_KEY, __version__),))


async def _validate(request: observer_pb2.GetFlowsRequest, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    try:
        compile_request(request)
    except InvalidRequest as err:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))


class RelayObserverServicer(observer_pb2_grpc.ObserverServicer):
    """observer.Observer over all nodes."""

    def __init__(self, services: RelayServices) -> None:
        self._s = services

    async def GetFlows(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[observer_pb2.GetFlowsResponse]:
        await _validate(request, context)
        await _send_version(context)
        loads = orjson.loads
        session = self._s.session(request)
        async with contextlib.aclosing(session.batches()) as batches:
            async for ids in batches:
                for line in session.take_lines(ids):
                    yield response_to_proto(loads(line))

    async def GetAgentEvents(
        self, request: observer_pb2.GetAgentEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[observer_pb2.GetAgentEventsResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetAgentEvents is not implemented by the relay")
        yield observer_pb2.GetAgentEventsResponse()  # pragma: no cover

    async def GetDebugEvents(
        self, request: observer_pb2.GetDebugEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[observer_pb2.GetDebugEventsResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetDebugEvents is not implemented by the relay")
        yield observer_pb2.GetDebugEventsResponse()  # pragma: no cover

    async def ServerStatus(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> observer_pb2.ServerStatusResponse:
        await _send_version(context)
        return server_status(await self._s.reports(), self._s.version)

    async def GetNodes(
        self, request: observer_pb2.GetNodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> observer_pb2.GetNodesResponse:
        await _send_version(context)
        return get_nodes(await self._s.reports())

    async def GetNamespaces(
        self, request: observer_pb2.GetNamespacesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> observer_pb2.GetNamespacesResponse:
        await _send_version(context)
        timeout = self._s.config.dial_timeout_s

        async def one(peer: Peer) -> list[tuple[str, str]]:
            try:
                resp = await peer.get_namespaces(observer_pb2.GetNamespacesRequest(), timeout=timeout)
            except grpc.aio.AioRpcError:
                return []
            return [(ns.cluster, ns.namespace) for ns in resp.namespaces]

        results = await asyncio.gather(*(one(p) for p in self._s.pool.peers() if p.connected))
        seen = sorted({pair for result in results for pair in result})
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(cluster=c, namespace=n) for c, n in seen]
        )


class RelayFlowStreamServicer:
    """hubblectl.v1.FlowStream over all nodes: the merged responses as JSON lines.

    Yields serialized FlowBatch messages (``FlowSession.encode``: the lines are copied once,
    from the nodes' messages into the outgoing ones), so it is registered with
    ``add_to_server`` (no protobuf serializer), not with the generated
    ``add_FlowStreamServicer_to_server``."""

    def __init__(self, services: RelayServices) -> None:
        self._s = services

    async def GetFlowsBatched(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        await _validate(request, context)
        await _send_version(context)
        session = self._s.session(request)
        async with contextlib.aclosing(session.batches()) as batches:
            async for ids in batches:
                for message in session.encode(ids, BATCH_MAX_BYTES):
                    yield message

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handlers = {
            "GetFlowsBatched": grpc.unary_stream_rpc_method_handler(
                self.GetFlowsBatched,
                request_deserializer=observer_pb2.GetFlowsRequest.FromString,
                response_serializer=None,  # already serialized
            )
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(FLOW_STREAM_SERVICE, handlers),))


class Relay:
    """The relay process: peer pool + gRPC server. ``start()`` returns the bound port."""

    def __init__(self, config: RelayConfig) -> None:
        config.validate()
        self.config = config
        self.pool = PeerPool(
            PoolOptions(
                cluster_name=config.cluster_name,
                dial_timeout_s=config.dial_timeout_s,
                retry_timeout_s=config.retry_timeout_s,
                initial_backoff_s=config.initial_backoff_s,
                tls=config.upstream_tls,
            ),
            static=config.peers,
            peer_service=config.peer_service,
        )
        self.services = RelayServices(self.pool, config)
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._stop = asyncio.Event()
        self.port = 0

    def _credentials(self) -> grpc.ServerCredentials | None:
        cfg = self.config
        if not cfg.tls_cert_file or not cfg.tls_key_file:
            return None
        return server_credentials(cfg.tls_cert_file, cfg.tls_key_file, list(cfg.tls_client_ca_files) or None)

    async def start(self) -> int:
        creds = self._credentials()
        server = grpc.aio.server(
            options=[("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.so_reuseport", 0)]
        )
        observer_pb2_grpc.add_ObserverServicer_to_server(RelayObserverServicer(self.services), server)
        RelayFlowStreamServicer(self.services).add_to_server(server)
        health_servicer = health_async.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [
                observer_pb2.DESCRIPTOR.services_by_name["Observer"].full_name,
                agent_pb2.DESCRIPTOR.services_by_name["FlowStream"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        port = bind(server, self.config.listen_address, "--listen-address", creds or None)
        await self.pool.start()
        await server.start()
        for service in ("", HEALTH_SERVICE):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self._health = health_servicer
        self.port = port
        return port

    async def stop(self, grace: float = 0.5) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        await self.pool.close()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (the relay process's entry point)."""
        tune_malloc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        try:
            sources = [f"{len(self.config.peers)} static peer(s)"] if self.config.peers else []
            if self.config.peer_service:
                sources.append(f"peer service {self.config.peer_service}")
            print(
                f"hubblectl relay ready on {self.config.listen_address} (port {self.port}"
                f"{', TLS' if self.config.tls_cert_file else ''}); peers from {' and '.join(sources)}",
                file=sys.stderr,
                flush=True,
            )
            await self._stop.wait()
        finally:
            await self.stop()

    def stop_soon(self) -> None:
        self._stop.set()
