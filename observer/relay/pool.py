"""The relay's peer pool: which nodes exist, a gRPC channel to each, and their state.

Peers come from static ``--peer NAME=ADDR`` flags and/or from Hubble's Peer service
(``peer.Peer/Notify``: PEER_ADDED / PEER_UPDATED / PEER_DELETED). Each peer has one channel,
watched by a task: READY means connected; a connection that breaks, or that has not become
ready within the dial timeout, makes the peer unavailable, and gRPC reconnects with
exponential backoff capped at the retry timeout. When a peer becomes unavailable over TCP, the
pool asks ``diagnose_tls`` why (plaintext vs TLS, wrong CA, expired certificate, ...) and keeps
the answer as the peer's ``last_error``.

Changes (a peer added, removed, connected, lost) bump ``version`` and wake ``wait_changed``;
``Peer.generation`` counts the peer's successful connections, so a flow stream that failed on
one connection waits for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc

from observer.api.v1.observer import observer_pb2
from observer.api.v1.peer import peer_pb2
from observer.api.wire import decode_flow_batch
from observer.errors import ConfigError
from observer.server.tls import channel_credentials, diagnose_tls, hubble_server_name

log = logging.getLogger(__name__)

DEFAULT_PEER_PORT: Final = 4244
MAX_MESSAGE: Final = 64 * 1024 * 1024
_STATE_CHECK_S: Final = 2.0  # re-check a channel's state at least this often

GET_FLOWS: Final = "/observer.Observer/GetFlows"
GET_FLOWS_BATCHED: Final = "/hubblectl.v1.FlowStream/GetFlowsBatched"
SERVER_STATUS: Final = "/observer.Observer/ServerStatus"
GET_NAMESPACES: Final = "/observer.Observer/GetNamespaces"
PEER_NOTIFY: Final = "/peer.Peer/Notify"


class PeerState(enum.Enum):
    CONNECTING = "connecting"  # never connected yet, still within the dial timeout
    CONNECTED = "connected"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """A node to connect to. ``address`` is a gRPC target (``host:port`` or ``unix://path``);
    ``tls_server_name`` is what the Peer service announced ('' if nothing)."""

    name: str
    address: str
    tls_server_name: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamTLS:
    """How the relay talks TLS to the nodes (``--tls-*`` client flags of ``hubblectl relay``).

    Enabled when a CA file or a client certificate is given. ``server_name`` overrides the
    name each node's certificate is checked against; without it, the name the Peer service
    announced, else Hubble's ``<node>.<cluster>.hubble-grpc.cilium.io``.
    """

    ca_files: tuple[str, ...] = ()
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.ca_files or self.cert_file)


@dataclass(frozen=True, slots=True)
class PoolOptions:
    cluster_name: str = "default"
    dial_timeout_s: float = 5.0
    retry_timeout_s: float = 30.0
    initial_backoff_s: float = 0.1
    tls: UpstreamTLS = field(default_factory=UpstreamTLS)


def normalize_address(address: str, default_port: int = DEFAULT_PEER_PORT) -> str:
    """A peer address as a gRPC target: ``unix://`` kept (``/path`` becomes ``unix:///path``),
    a missing port becomes ``default_port`` (Hubble's 4244), an empty or wildcard host
    (``:4244``, ``0.0.0.0:4244``, ``[::]:4244``) becomes the loopback address."""
    address = address.strip()
    if not address:
        raise ConfigError("empty peer address")
    if address.startswith("unix:"):
        return address
    if address.startswith("/"):
        return "unix://" + address
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        v6 = True
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
        v6 = False
    elif ":" in address:  # bare IPv6
        host, port, v6 = address, "", True
    else:
        host, port, v6 = address, "", False
    if port and not port.isdigit():
        raise ConfigError(f"peer address {address!r}: port {port!r} is not a number")
    port = port or str(default_port)
    if host in ("", "0.0.0.0"):
        host, v6 = "127.0.0.1", False
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if v6 else f"{host}:{port}"


def parse_static_peer(text: str) -> PeerSpec:
    """``NAME=ADDR`` (the ``--peer`` flag)."""
    name, sep, address = text.partition("=")
    name = name.strip()
    if not sep or not name or not address.strip():
        raise ConfigError(f"--peer {text!r}: expected NAME=ADDRESS, e.g. node-a=127.0.0.1:4244")
    return PeerSpec(name=name, address=normalize_address(address))


def spec_from_notification(note: peer_pb2.ChangeNotification) -> PeerSpec:
    server_name = note.tls.server_name if note.HasField("tls") else ""
    return PeerSpec(name=note.name, address=normalize_address(note.address), tls_server_name=server_name)


class Backoff:
    """Exponential backoff with jitter: ``initial`` * 1.6^n, capped at ``maximum``."""

    __slots__ = ("_attempt", "_initial", "_maximum", "_rand")

    def __init__(self, initial: float, maximum: float, rand: Callable[[], float] = random.random) -> None:
        self._initial = max(initial, 0.001)
        self._maximum = max(maximum, self._initial)
        self._attempt = 0
        self._rand = rand

    def next(self) -> float:
        base = min(self._maximum, self._initial * 1.6**self._attempt)
        self._attempt += 1
        return base * (0.8 + 0.4 * self._rand())

    def reset(self) -> None:
        self._attempt = 0


def _unix_path(address: str) -> str | None:
    if address.startswith("unix://"):
        return address[len("unix://") :]
    if address.startswith("unix:"):
        return address[len("unix:") :]
    return None


class Peer:
    """One node: its channel, state and the stubs the relay calls."""

    def __init__(self, spec: PeerSpec, options: PoolOptions, now: float) -> None:
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        unix = _unix_path(spec.address) is not None
        tls = options.tls
        self.tls_enabled = tls.enabled and not unix
        self.server_name = ""
        if self.tls_enabled:
            self.server_name = tls.server_name or spec.tls_server_name or hubble_server_name(
                spec.name, options.cluster_name
            )
        self.state = PeerState.CONNECTING
        self.generation = 0
        self.last_error = ""
        self.connected_since = 0.0
        self.created = now
        self.supports_batched: bool | None = None
        self.channel = self._make_channel(options)
        ch = self.channel
        self.get_flows_batched = ch.unary_stream(
            GET_FLOWS_BATCHED,
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=decode_flow_batch,  # one copy of json_lines, not two
        )
        self.get_flows = ch.unary_stream(
            GET_FLOWS,
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=observer_pb2.GetFlowsResponse.FromString,
        )
        self.server_status = ch.unary_unary(
            SERVER_STATUS,
            request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
            response_deserializer=observer_pb2.ServerStatusResponse.FromString,
        )
        self.get_namespaces = ch.unary_unary(
            GET_NAMESPACES,
            request_serializer=observer_pb2.GetNamespacesRequest.SerializeToString,
            response_deserializer=observer_pb2.GetNamespacesResponse.FromString,
        )
        self._task: asyncio.Task[None] | None = None
        self._diagnosis: asyncio.Task[None] | None = None

    def _make_channel(self, options: PoolOptions) -> grpc.aio.Channel:
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.enable_http_proxy", 0),
            ("grpc.initial_reconnect_backoff_ms", int(options.initial_backoff_s * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(max(options.initial_backoff_s, 0.1) * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(max(options.retry_timeout_s, options.initial_backoff_s) * 1000)),
            ("grpc.client_idle_timeout_ms", 2**31 - 1),
            # one channel per peer, never shared with another peer's (or a client's) channel
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if not self.tls_enabled:
            return grpc.aio.insecure_channel(self.address, options=opts)
        tls = options.tls
        creds = channel_credentials(list(tls.ca_files) or None, tls.cert_file, tls.key_file)
        opts.append(("grpc.ssl_target_name_override", self.server_name))
        return grpc.aio.secure_channel(self.address, creds, options=opts)

    @property
    def connected(self) -> bool:
        return self.state is PeerState.CONNECTED

    @property
    def diagnosing(self) -> bool:
        """The pool is finding out why this peer's connection failed."""
        return self._diagnosis is not None


class PeerPool:
    """The set of peers and their connections (see the module doc)."""

    def __init__(
        self,
        options: PoolOptions,
        static: Sequence[PeerSpec] = (),
        peer_service: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._static = tuple(static)
        self._peer_service = peer_service
        self._clock = clock
        self._peers: dict[str, Peer] = {}
        self._changed = asyncio.Event()
        self.version = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.discovery_error = ""
        self.discovery_connected = False
        names = [s.name for s in self._static]
        if len(set(names)) != len(names):
            raise ConfigError("--peer: a node name is given twice")

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        for spec in self._static:
            self._add(spec)
        if self._peer_service:
            self._tasks.append(asyncio.create_task(self._discover(self._peer_service)))

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for peer in list(self._peers.values()):
            await self._close_peer(peer)
        self._peers.clear()
        self._bump()

    # --- queries ------------------------------------------------------------------------

    def peers(self) -> list[Peer]:
        return [self._peers[name] for name in sorted(self._peers)]

    def get(self, name: str) -> Peer | None:
        return self._peers.get(name)

    async def wait_changed(self, version: int, timeout: float | None = None) -> int:
        """Return the current version once it differs from ``version`` (or on timeout)."""
        if self.version == version:
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        return self.version

    async def wait_settled(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until no peer is still making its first connection and
        the causes of failed connections are known."""
        deadline = self._clock() + timeout
        while any(p.state is PeerState.CONNECTING or p.diagnosing for p in self._peers.values()):
            left = deadline - self._clock()
            if left <= 0:
                return
            await self.wait_changed(self.version, left)

    def report_failure(self, peer: Peer, generation: int, message: str) -> None:
        """A flow stream on connection ``generation`` of ``peer`` failed as UNAVAILABLE: mark
        the peer unavailable until its channel is ready again."""
        if self._peers.get(peer.name) is not peer or peer.generation != generation:
            return
        if peer.state is PeerState.CONNECTED:
            self._set_unavailable(peer, message)

    # --- internals ----------------------------------------------------------------------

    def _bump(self) -> None:
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _add(self, spec: PeerSpec) -> None:
        peer = Peer(spec, self.options, self._clock())
        self._peers[spec.name] = peer
        peer._task = asyncio.create_task(self._watch(peer))
        log.info("peer %s added (%s)", spec.name, spec.address)
        self._bump()

    async def _remove(self, name: str) -> None:
        peer = self._peers.pop(name, None)
        if peer is None:
            return
        log.info("peer %s removed", name)
        self._bump()
        await self._close_peer(peer)

    async def _close_peer(self, peer: Peer) -> None:
        for task in (peer._task, peer._diagnosis):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await peer.channel.close(None)

    def _set_connected(self, peer: Peer) -> None:
        peer.state = PeerState.CONNECTED
        peer.generation += 1
        peer.connected_since = self._clock()
        peer.last_error = ""
        log.info("peer %s connected (%s)", peer.name, peer.address)
        self._bump()

    def _set_unavailable(self, peer: Peer, message: str = "") -> None:
        was = peer.state
        peer.state = PeerState.UNAVAILABLE
        if message:
            peer.last_error = message
        if was is not PeerState.UNAVAILABLE:
            log.warning("peer %s (%s) unavailable%s", peer.name, peer.address, f": {message}" if message else "")
            if peer._diagnosis is None or peer._diagnosis.done():
                peer._diagnosis = asyncio.create_task(self._diagnose(peer))
            self._bump()

    async def _diagnose(self, peer: Peer) -> None:
        try:
            await self._find_cause(peer)
        finally:
            peer._diagnosis = None
            self._bump()

    async def _find_cause(self, peer: Peer) -> None:
        path = _unix_path(peer.address)
        if path is not None:
            import os

            if not os.path.exists(path):
                peer.last_error = f"{path} does not exist"
            return
        tls = self.options.tls
        text = await asyncio.to_thread(
            diagnose_tls,
            peer.address,
            tls=peer.tls_enabled,
            ca=tls.ca_files,
            cert=tls.cert_file,
            key=tls.key_file,
            server_name=peer.server_name or None,
            timeout=min(self.options.dial_timeout_s, 3.0),
        )
        if text and peer.state is PeerState.UNAVAILABLE and self._peers.get(peer.name) is peer:
            if text != peer.last_error:
                log.warning("peer %s: %s", peer.name, text)
            peer.last_error = text

    async def _watch(self, peer: Peer) -> None:
        """Follow the channel's connectivity and keep ``peer.state`` in step."""
        channel = peer.channel
        ready = grpc.ChannelConnectivity.READY
        previous: grpc.ChannelConnectivity | None = None
        changed = False
        not_ready_since = self._clock()
        while not self._closed:
            state = channel.get_state(try_to_connect=True)
            now = self._clock()
            if state == ready:
                if peer.state is not PeerState.CONNECTED:
                    self._set_connected(peer)
                elif changed and previous == ready:
                    # lost and regained between two looks: a new connection
                    self._set_connected(peer)
            else:
                if previous == ready or previous is None:
                    not_ready_since = now
                if state in (
                    grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                    grpc.ChannelConnectivity.SHUTDOWN,
                ) or (peer.state is PeerState.CONNECTED and previous == ready):
                    self._set_unavailable(peer)
                elif now - not_ready_since >= self.options.dial_timeout_s and peer.state is not PeerState.UNAVAILABLE:
                    self._set_unavailable(peer, f"not connected within {self.options.dial_timeout_s:g}s")
            previous = state
            wait = _STATE_CHECK_S
            if peer.state is PeerState.CONNECTING:
                wait = max(0.01, min(wait, self.options.dial_timeout_s - (now - not_ready_since)))
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), wait)
                changed = True
            except TimeoutError:
                changed = False

    async def _discover(self, target: str) -> None:
        """Follow the Peer service at ``target``; reconnect with backoff when it fails."""
        backoff = Backoff(self.options.initial_backoff_s, self.options.retry_timeout_s)
        address = normalize_address(target)
        while not self._closed:
            channel = self._discovery_channel(address)
            try:
                notify = channel.unary_stream(
                    PEER_NOTIFY,
                    request_serializer=peer_pb2.NotifyRequest.SerializeToString,
                    response_deserializer=peer_pb2.ChangeNotification.FromString,
                )
                call = notify(peer_pb2.NotifyRequest(), wait_for_ready=False)
                async for note in call:
                    if not self.discovery_connected:
                        self.discovery_connected = True
                        self.discovery_error = ""
                        log.info("peer service %s connected", target)
                    backoff.reset()
                    await self._apply(note)
                self.discovery_error = "the peer service ended the stream"
            except grpc.aio.AioRpcError as err:
                self.discovery_error = f"{err.code().name}: {err.details()}"
            except ConfigError as err:
                self.discovery_error = str(err)
            finally:
                await channel.close(None)
            if self.discovery_connected:
                log.warning("peer service %s: %s", target, self.discovery_error)
            self.discovery_connected = False
            await asyncio.sleep(backoff.next())

    def _discovery_channel(self, address: str) -> grpc.aio.Channel:
        opts: list[tuple[str, Any]] = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]
        tls = self.options.tls
        if tls.enabled and _unix_path(address) is None:
            creds = channel_credentials(list(tls.ca_files) or None, tls.cert_file, tls.key_file)
            if tls.server_name:
                opts.append(("grpc.ssl_target_name_override", tls.server_name))
            return grpc.aio.secure_channel(address, creds, options=opts)
        return grpc.aio.insecure_channel(address, options=opts)

    async def _apply(self, note: peer_pb2.ChangeNotification) -> None:
        if not note.name or any(spec.name == note.name for spec in self._static):
            return  # static peers are not managed by the peer service
        if note.type == peer_pb2.PEER_DELETED:
            await self._remove(note.name)
            return
        if note.type not in (peer_pb2.PEER_ADDED, peer_pb2.PEER_UPDATED):
            return
        try:
            spec = spec_from_notification(note)
        except ConfigError as err:
            log.warning("peer service: ignoring %s: %s", note.name, err)
            return
        current = self._peers.get(spec.name)
        if current is not None:
            if current.spec == spec:
                return
            await self._remove(spec.name)
        self._add(spec)
