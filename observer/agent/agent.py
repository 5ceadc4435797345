"""The node agent: owns the datapath and its state, and serves the Hubble API.

Start-up: load the BPF object (maps pinned under --bpf-root, so a restarted agent reuses
the conntrack, ring buffer and endpoint maps), restore endpoints from the state dir and
re-attach the tc programs (replacing, never duplicating), then drain the ring buffer on
the event loop into the flow store and serve gRPC on the unix socket (all services) and,
if asked, on TCP (Hubble's Observer/Peer/health only).

Shutdown (SIGTERM/SIGINT): stop serving, leave the datapath attached: endpoints keep
working while the agent is away, and events that pile up meanwhile are either drained on
restart or counted as lost by the kernel.

Network policy (observer/agent/policy.py): the policies live in the state dir and the
datapath enforces them from pinned maps, so an agent that stops (or is killed) leaves
enforcement exactly as it was; on start the policy engine reads back what the maps hold,
recompiles from the saved policies and writes nothing if they agree. Endpoint churn and
label changes recompile incrementally; a new endpoint's policy is in place before its tc
programs are attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from observer import __version__
from observer.agent.config import AGGREGATION_LEVELS, AgentConfig
from observer.agent.hostinfo import host_addresses
from observer.agent.ingest import MAX_DRAIN_PER_CALL, Ingest
from observer.agent.policy import ApplyResult, Change, PolicyEngine, PolicySummary, TraceResult
from observer.api.v1.hubblectl import agent_pb2, agent_pb2_grpc
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.api.v1.peer import peer_pb2, peer_pb2_grpc
from observer.bpf import loader
from observer.bpf.policymaps import PolicyMaps
from observer.bpf.ringbuf import RingBuffer
from observer.cluster import ClusterDirectory, NodeRecord
from observer.datapath.endpoints import DatapathConfig, Endpoint, EndpointManager
from observer.datapath.state import StateDir
from observer.enrich.resolver import EndpointInfo, ResolverSnapshot, StaticResolver
from observer.errors import ConfigError, ObserverError
from observer.metrics import AgentMetrics
from observer.metrics import serve as serve_metrics
from observer.parser import FlowBuilder, FlowDecoder, lost_events_response
from observer.policy import Policy
from observer.server.agentapi import AgentServicer
from observer.server.front import FrontDoor, InternalSockets
from observer.server.listen import announce_address, bind
from observer.server.observer import FlowStreamServicer, NodeInfo, ObserverServicer
from observer.server.peer import PeerServicer
from observer.server.tls import hubble_server_name, server_credentials
from observer.store import FlowStore
from observer.store.ring import EntryKind

log = logging.getLogger(__name__)

DATAPATH_OBJECT = "datapath.o"
HEALTH_SERVICE = "hubble.server.Observer"
LOST_POLL_S = 1.0
COMPACT_BUDGET_S = 0.004  # per poll tick, when the ring is drained: at most ~40% of a core


class Agent:
    def __init__(self, cfg: AgentConfig, out: BinaryIO | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.node = NodeInfo(
            name=cfg.absolute_node_name,
            address=announce_address(cfg.listen_address) if cfg.listen_address else f"unix://{cfg.socket_path}",
            tls=bool(cfg.tls_cert_file),
            tls_server_name=(
                hubble_server_name(cfg.short_node_name, cfg.cluster_name) if cfg.tls_cert_file else ""
            ),
        )
        self.cluster = ClusterDirectory(
            cfg.cluster_dir or None,
            NodeRecord(self.node.name, self.node.address, self.node.tls_server_name),
        )
        # history blocks are LZ4-compressed when ingest is idle (the ingest loop calls
        # store.compact()), so that a burst of events is stored at full speed
        self.store = FlowStore(cfg.max_flows, defer=True)
        self.resolver = StaticResolver()
        self.builder = FlowBuilder(cfg.absolute_node_name, self.resolver, __version__)
        self.decoder = FlowDecoder()
        self.metrics = AgentMetrics(store_size=lambda: (len(self.store), self.store.capacity))
        self._out = out
        self._ingest: Ingest | None = None
        self._obj: loader.BpfObject | None = None
        self._ring: RingBuffer | None = None
        self._manager: EndpointManager | None = None
        self._policy: PolicyEngine | None = None
        self._lock = asyncio.Lock()
        self._lost_seen: tuple[int, ...] = ()
        self._host_ips: frozenset[str] = frozenset()
        self._servers: list[grpc.aio.Server] = []
        self._front: FrontDoor | None = None
        self._internal: InternalSockets | None = None
        self._stop = asyncio.Event()

    # --- datapath ------------------------------------------------------------------------

    def _check_prerequisites(self) -> Path:
        if os.geteuid() != 0:
            raise ConfigError(
                "hubblectl agent must run as root: it loads BPF programs and creates network namespaces"
            )
        obj = self.cfg.bpf_object_dir / DATAPATH_OBJECT
        if not obj.is_file():
            raise ConfigError(
                f"BPF object {obj} not found: build it with `make -C bpf` (scripts/setup.sh does)"
            )
        bpffs = Path("/sys/fs/bpf")
        if not os.path.ismount(bpffs):
            rc = os.system("mount -t bpf bpf /sys/fs/bpf")
            if rc != 0:
                raise ConfigError("bpffs is not mounted at /sys/fs/bpf and mounting it failed")
        return obj

    def _open_datapath(self) -> None:
        obj_path = self._check_prerequisites()
        pin_root = Path(self.cfg.bpf_root)
        pin_root.mkdir(parents=True, exist_ok=True)
        obj = loader.BpfObject.open(obj_path, pin_root, ring_bytes=self.cfg.ring_bytes)
        self._obj = obj
        loader.write_config(
            obj,
            loader.DatapathConfig(
                aggregation_level=AGGREGATION_LEVELS[self.cfg.aggregation],
                report_interval_ns=int(self.cfg.report_interval_s * 1e9),
            ),
        )
        ring_map = obj.map(loader.RING_MAP)
        self._ring = RingBuffer(obj.map_fd(loader.RING_MAP), ring_map.max_entries)
        self._ingest = Ingest(self._ring, self.decoder, self.builder, self.store, self.metrics, self._out)
        self._lost_seen = loader.read_lost(obj).per_cpu
        self._manager = EndpointManager(
            DatapathConfig(
                state_dir=self.cfg.state_dir,
                ipv4_range=self.cfg.ipv4_range,
                ipv6_range=self.cfg.ipv6_range,
                netns_prefix=self.cfg.netns_prefix,
                cluster_name=self.cfg.cluster_name,
                node_name=self.cfg.short_node_name,
            )
        )
        self._host_ips = frozenset(host_addresses())
        restored = self._manager.restore()
        self._policy = PolicyEngine(
            PolicyMaps(obj), StateDir(self.cfg.state_dir), host_ips=self._host_ips
        )
        started = self._policy.start(self._manager.list())
        if started.entries_written:
            log.info(
                "policy revision %d enforced (%d map writes)", started.revision, started.entries_written
            )
        for ep in restored:
            self._attach(ep)
        for key, problem in self._manager.unhealthy.items():
            log.warning("endpoint %s could not be restored: %s", key, problem)
        self._refresh_resolver()

    def _attach(self, ep: Endpoint) -> None:
        obj = self._obj
        assert obj is not None
        loader.set_endpoint(obj, ep.host_ifindex, ep.id, ep.identity)
        loader.attach_tc(ep.host_ifindex, ep.host_ifname, "ingress", obj.prog_fd(loader.PROG_FROM_ENDPOINT))
        loader.attach_tc(ep.host_ifindex, ep.host_ifname, "egress", obj.prog_fd(loader.PROG_TO_ENDPOINT))

    def _refresh_resolver(self) -> None:
        mgr = self._manager
        assert mgr is not None
        pairs = []
        ifaces = {}
        for ep in mgr.list():
            info = EndpointInfo(
                id=ep.id,
                identity=ep.identity,
                namespace=ep.namespace,
                pod_name=ep.name,
                labels=tuple(ep.labels.to_strings()),
                cluster_name=self.cfg.cluster_name,
            )
            pairs.append(([ep.ipv4, ep.ipv6], info))
            ifaces[ep.host_ifindex] = ep.host_ifname
        policies = self._policy.flow_policies() if self._policy is not None else {}
        self.resolver.replace(
            ResolverSnapshot.from_endpoints(
                pairs, host_ips=self._host_ips, interfaces=ifaces, policies=policies
            )
        )

    # --- endpoint operations (hubblectl.v1.Agent) -------------------------------------------

    async def create_endpoint(self, namespace: str, name: str, labels: Sequence[str]) -> Endpoint:
        mgr = self._manager
        assert mgr is not None
        async with self._lock:
            ep = await asyncio.to_thread(mgr.create, namespace, name, labels)
            try:
                # Policy first: the endpoint is enforced from its first packet on.
                await asyncio.to_thread(self._sync_policy)
                self._attach(ep)
            except ObserverError:
                await asyncio.to_thread(mgr.delete, namespace, name)
                with contextlib.suppress(ObserverError):
                    await asyncio.to_thread(self._sync_policy)
                raise
            self._refresh_resolver()
            return ep

    async def delete_endpoint(self, namespace: str, name: str) -> Endpoint:
        mgr = self._manager
        obj = self._obj
        assert mgr is not None and obj is not None
        async with self._lock:
            ep = await asyncio.to_thread(mgr.delete, namespace, name)
            loader.delete_endpoint(obj, ep.host_ifindex)
            await asyncio.to_thread(self._sync_policy)
            self._refresh_resolver()
            return ep

    async def update_endpoint_labels(self, namespace: str, name: str, labels: Sequence[str]) -> Endpoint:
        """New labels (and so a new identity): policy is recompiled for what that changes."""
        mgr = self._manager
        obj = self._obj
        assert mgr is not None and obj is not None
        async with self._lock:
            ep = await asyncio.to_thread(mgr.update_labels, namespace, name, labels)
            await asyncio.to_thread(self._sync_policy)
            loader.set_endpoint(obj, ep.host_ifindex, ep.id, ep.identity)
            self._refresh_resolver()
            return ep

    def list_endpoints(self) -> list[Endpoint]:
        assert self._manager is not None
        return sorted(self._manager.list(), key=lambda e: e.id)

    def get_endpoint(self, namespace: str, name: str) -> Endpoint:
        assert self._manager is not None
        return self._manager.get(namespace, name)

    def enforcement(self, ep: Endpoint) -> tuple[str, str]:
        if self._policy is None:
            return ("disabled", "disabled")
        return self._policy.enforcement(ep.id)

    # --- network policy (hubblectl.v1.Agent) ----------------------------------------------

    def _engine(self) -> PolicyEngine:
        if self._policy is None:
            raise ConfigError("the agent's datapath is not ready")
        return self._policy

    def _sync_policy(self) -> ApplyResult:
        assert self._manager is not None
        return self._engine().sync(self._manager.list())

    async def apply_policies(self, files: Sequence[tuple[str, str]]) -> tuple[list[Change], ApplyResult]:
        engine = self._engine()
        assert self._manager is not None
        mgr = self._manager
        async with self._lock:
            out = await asyncio.to_thread(engine.apply, files, mgr.list())
            self._refresh_resolver()
            return out

    async def delete_policy(self, key: str, kind: str) -> tuple[Policy, ApplyResult]:
        engine = self._engine()
        assert self._manager is not None
        mgr = self._manager
        async with self._lock:
            out = await asyncio.to_thread(engine.delete, key, kind, mgr.list())
            self._refresh_resolver()
            return out

    def list_policies(self) -> tuple[list[PolicySummary], int]:
        engine = self._engine()
        return engine.list(), engine.repository.revision

    def get_policy(self, key: str, kind: str) -> tuple[PolicySummary, str]:
        engine = self._engine()
        policy = engine.get(key, kind)
        return engine.summary(policy), engine.document_yaml(policy)

    def trace_policy(self, source: str, destination: str, dport: int, protocol: str) -> TraceResult:
        return self._engine().trace(source, destination, dport, protocol)

    # --- ingest -------------------------------------------------------------------------

    def drain(self) -> int:
        """Move every record in the ring buffer into the store; returns how many."""
        return self._ingest.drain() if self._ingest is not None else 0

    def poll_lost(self) -> None:
        """Turn new kernel ring-buffer reserve failures into LostEvents, one per CPU."""
        obj = self._obj
        if obj is None:
            return
        reading = loader.read_lost(obj).per_cpu
        prev = self._lost_seen
        now = time.time_ns()
        appended = False
        for cpu, count in enumerate(reading):
            before = prev[cpu] if cpu < len(prev) else 0
            if count > before:
                resp = lost_events_response(
                    "PERF_EVENT_RING_BUFFER",
                    count - before,
                    node_name=self.node.name,
                    wall_ns=now,
                    cpu=cpu,
                )
                self.metrics.lost["perf_event_ring_buffer"] += count - before
                self.store.append(now, EntryKind.LOST, orjson.dumps(resp))
                appended = True
        self._lost_seen = reading
        if appended:
            self.store.notify()

    async def _ingest_loop(self) -> None:
        ring = self._ring
        assert ring is not None
        loop = asyncio.get_running_loop()
        loop.add_reader(ring.fileno(), self._on_wakeup)
        interval = self.cfg.poll_interval_ms / 1000
        next_lost = time.monotonic() + LOST_POLL_S
        try:
            while not self._stop.is_set():
                if self.drain() < MAX_DRAIN_PER_CALL:
                    # the ring is drained: compress history left uncompressed meanwhile
                    # (under sustained overload this waits, and memory stays bounded by
                    # the uncompressed store's)
                    self.store.compact(COMPACT_BUDGET_S)
                if time.monotonic() >= next_lost:
                    self.poll_lost()
                    next_lost = time.monotonic() + LOST_POLL_S
                await asyncio.sleep(interval)
        finally:
            loop.remove_reader(ring.fileno())

    def _on_wakeup(self) -> None:
        ring = self._ring
        if ring is not None:
            ring.poll(0)  # consume the epoll readiness
        self.drain()

    # --- serving ------------------------------------------------------------------------

    def _add_public_services(self, server: grpc.aio.Server) -> None:
        observer_pb2_grpc.add_ObserverServicer_to_server(ObserverServicer(self.store, self.node, metrics=self.metrics), server)
        FlowStreamServicer(self.store, self.node, metrics=self.metrics).add_to_server(server)
        peer_pb2_grpc.add_PeerServicer_to_server(PeerServicer(self.cluster), server)
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        self._health.append(health_servicer)

    _health: list[Any]

    async def _start_servers(self) -> None:
        self._health = []
        names = [
            observer_pb2.DESCRIPTOR.services_by_name["Observer"].full_name,
            peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name,
            agent_pb2.DESCRIPTOR.services_by_name["FlowStream"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        unix = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self._add_public_services(unix)
        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(self), unix)
        reflection.enable_server_reflection(
            [*names, agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name], unix
        )
        sock = Path(self.cfg.socket_path)
        front: FrontDoor | None = None
        internal: InternalSockets | None = None
        if self.cfg.fast_stream:
            # the front door owns the public plaintext sockets; grpc.aio serves it (and only
            # it) on private sockets in a 0700 directory
            internal = self._internal = InternalSockets(sock)
            front = self._front = FrontDoor(self.store, self.node.name, metrics=self.metrics)
            unix.add_insecure_port(internal.target("unix"))
            await unix.start()
            self._servers.append(unix)
            await front.listen_unix(sock, internal.path("unix"))
        else:
            sock.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(sock.lstat().st_mode):
                    sock.unlink()
            unix.add_insecure_port(f"unix://{sock}")
            await unix.start()
            os.chmod(sock, 0o660)
            self._servers.append(unix)
        if self.cfg.listen_address:
            tcp = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            self._add_public_services(tcp)
            reflection.enable_server_reflection(names, tcp)
            if front is not None and internal is not None and not self.cfg.tls_cert_file:
                tcp.add_insecure_port(internal.target("tcp"))
                await tcp.start()
                self._servers.append(tcp)
                await front.listen_tcp(self.cfg.listen_address, internal.path("tcp"))
                return await self._set_serving()
            # TLS: grpc.aio terminates it and serves the listen address directly
            creds = (
                server_credentials(
                    self.cfg.tls_cert_file,
                    self.cfg.tls_key_file,
                    list(self.cfg.tls_client_ca_files) or None,
                )
                if self.cfg.tls_cert_file
                else None
            )
            bind(tcp, self.cfg.listen_address, "--listen-address", creds)
            await tcp.start()
            self._servers.append(tcp)
        await self._set_serving()

    async def _set_serving(self) -> None:
        for h in self._health:
            await h.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
            await h.set("", health_pb2.HealthCheckResponse.SERVING)

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or stop())."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        # pyroute2's synchronous sockets refuse to run inside an event loop: set up the
        # datapath (netlink, BPF loading) on a worker thread.
        await asyncio.to_thread(self._open_datapath)
        try:
            await self._start_servers()
            self.cluster.register()
            if self.cfg.metrics_address:
                serve_metrics(self.cfg.metrics_address, self.metrics)
            log.info(
                "agent %s ready: socket %s%s, %d endpoints",
                self.node.name,
                self.cfg.socket_path,
                f", listening on {self.cfg.listen_address}" if self.cfg.listen_address else "",
                len(self.list_endpoints()),
            )
            print(
                f"hubblectl agent {self.node.name} ready on unix://{self.cfg.socket_path}"
                + (f" and {self.cfg.listen_address}" if self.cfg.listen_address else ""),
                file=sys.stderr,
                flush=True,
            )
            ingest = asyncio.create_task(self._ingest_loop())
            await self._stop.wait()
            ingest.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ingest
        finally:
            self.cluster.unregister()
            if self._front is not None:
                await self._front.stop(grace=0.5)
            for server in self._servers:
                await server.stop(grace=0.5)
            if self._internal is not None:
                self._internal.cleanup()
            with contextlib.suppress(FileNotFoundError):
                Path(self.cfg.socket_path).unlink()
            if self._ring is not None:
                self._ring.close()
            if self._obj is not None:
                self._obj.close()

    def stop(self) -> None:
        self._stop.set()
