"""A real Observer API server for integration tests: the agent's servicers on grpc.aio.

``ObserverHarness`` runs, on a background thread with its own asyncio event loop, one
``grpc.aio`` server built the way ``observer.agent.agent.Agent._start_servers`` builds the
agent's: ``observer.Observer``, ``hubblectl.v1.FlowStream``, ``peer.Peer`` and the health
service (``SERVING`` for ``hubble.server.Observer`` and for ``""``), with server reflection,
listening on a unix socket and on ``127.0.0.1:<ephemeral port>``. The agent runs two servers
(the unix one also carries ``hubblectl.v1.Agent``, which needs a datapath); here both
addresses are ports of one server, which serves exactly the agent's public services.
As in the agent, both public addresses are served by the HTTP/2 front door
(``observer.server.front``: the standard GetFlows and GetFlowsBatched itself, the rest
proxied to grpc.aio on an internal socket); ``front=False`` lets grpc.aio serve them directly
(the agent's ``--no-fast-stream``).

The servicers read a real ``FlowStore``, which, like the agent's, belongs to the server's
event loop: every touch of it goes through ``on_loop``/``append``/``ingest``, which run on
that loop. The servicers' wall clock is ``clock_ns`` (settable; ``None`` = the real clock), so
``flows_rate``, ``GetNamespaces`` and HUBBLE_RING_BUFFER lost-event times are deterministic.

Data helpers: ``fixture_responses()`` (tests/fixtures/flows.jsonl), ``flow_response()`` (a
fixture-like flow at a chosen time, with overrides), ``to_entry()`` (what the agent appends).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
import orjson
from google.protobuf import json_format, timestamp_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hubblectl.printer.timefmt import parse_rfc3339
from observer.api.v1.hubblectl import agent_pb2, agent_pb2_grpc
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.api.v1.peer import peer_pb2, peer_pb2_grpc
from observer.parser.timestamps import format_timestamp
from observer.server.front import FrontDoor
from observer.server.observer import FlowStreamServicer, NodeInfo, ObserverServicer
from observer.server.peer import PeerServicer
from observer.store import EntryKind, FlowStore

T = TypeVar("T")

FIXTURES: Final = Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl"
HEALTH_SERVICE: Final = "hubble.server.Observer"
NODE_NAME: Final = "default/node-a"
KINDS: Final[Mapping[str, EntryKind]] = {
    "flow": EntryKind.FLOW,
    "lost_events": EntryKind.LOST,
    "node_status": EntryKind.NODE_STATUS,
}
REFLECTED_SERVICES: Final[tuple[str, ...]] = (
    observer_pb2.DESCRIPTOR.services_by_name["Observer"].full_name,
    peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["FlowStream"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
UNIX_PATH_MAX: Final = 107


# --- data ----------------------------------------------------------------------------------


def response_time_ns(response: Mapping[str, Any]) -> int:
    """The ``time`` of a GetFlowsResponse dict in ns since the epoch."""
    ts = parse_rfc3339(str(response["time"]))
    if ts is None:
        raise ValueError(f"response time {response.get('time')!r} is not RFC 3339")
    return ts.total_ns


def response_kind(response: Mapping[str, Any]) -> EntryKind:
    for key, kind in KINDS.items():
        if key in response:
            return kind
    raise ValueError(f"response has none of {sorted(KINDS)}: {sorted(response)}")


def to_entry(response: Mapping[str, Any] | bytes) -> tuple[int, EntryKind, bytes]:
    """(time_ns, kind, compact JSON bytes): what the agent appends for a response."""
    if isinstance(response, bytes):
        data = response
        parsed: Mapping[str, Any] = orjson.loads(response)
    else:
        data = orjson.dumps(response)
        parsed = response
    return response_time_ns(parsed), response_kind(parsed), data


def fixture_responses(*, include_node_status: bool = False) -> list[dict[str, Any]]:
    """tests/fixtures/flows.jsonl as dicts. Node-status responses are relay-only (an agent
    never stores one), so they are left out unless asked for."""
    out = [orjson.loads(line) for line in FIXTURES.read_bytes().splitlines() if line.strip()]
    if not include_node_status:
        out = [r for r in out if "node_status" not in r]
    return out


def flow_response(
    time_ns: int, *, uuid: str | None = None, node_name: str = NODE_NAME, **fields: Any
) -> dict[str, Any]:
    """A fixture-like flow (the first fixture flow: xwing -> deathstar, TCP SYN to port 80)
    at ``time_ns``; keyword arguments replace top-level flow fields (``None`` removes one)."""
    template = fixture_responses()[0]
    flow: dict[str, Any] = copy.deepcopy(template["flow"])
    stamp = format_timestamp(time_ns)
    flow["time"] = stamp
    flow["uuid"] = uuid if uuid is not None else f"00000000-0000-4000-8000-{time_ns % 10**12:012d}"
    flow["node_name"] = node_name
    for key, value in fields.items():
        if value is None:
            flow.pop(key, None)
        else:
            flow[key] = value
    return {"flow": flow, "node_name": node_name, "time": stamp}


def lost_response(
    time_ns: int, count: int, *, source: str = "PERF_EVENT_RING_BUFFER"
) -> dict[str, Any]:
    return {
        "lost_events": {"source": source, "num_events_lost": str(count), "cpu": 0},
        "node_name": NODE_NAME,
        "time": format_timestamp(time_ns),
    }


FIXTURE_NAMES: Final[tuple[str, ...]] = (
    "syn",  # xwing -> deathstar TCP SYN :80, IPv4, trace from-endpoint, cluster "default"
    "synack",  # deathstar -> xwing SYN-ACK reply
    "udp6",  # xwing -> deathstar UDP :53 over IPv6
    "icmp4",  # xwing -> world (192.0.2.10) echo request
    "icmp6",  # deathstar -> xwing echo reply over IPv6
    "drop",  # xwing -> deathstar :80 DROPPED (POLICY_DENIED), drop event 1:133
    "policy",  # tiefighter -> deathstar :80 policy verdict (type 5), allowed
    "http",  # tiefighter -> deathstar L7 HTTP POST 200
    "dns",  # tiefighter -> coredns (kube-system) L7 DNS query
    "lost-perf",  # LostEvent PERF_EVENT_RING_BUFFER
)
RICH_TIME_NS: Final = 1_795_694_411_000_000_000  # 2026-11-26T12:00:11Z, after the fixtures
RICH_UUID: Final = "00000000-0000-4000-8000-00000000c0de"
RICH_TRACE_ID: Final = "4bf92f3577b34da6a3ce929d0e0e4736"


def rich_response() -> dict[str, Any]:
    """A flow carrying the fields the fixture flows lack (services, workloads, node labels,
    FQDN names, SNAT address, encryption, trace context, IP trace id, SCTP, another cluster),
    as a flow read back from Hubble or relayed from another node would."""
    stamp = format_timestamp(RICH_TIME_NS)
    flow = {
        "time": stamp,
        "uuid": RICH_UUID,
        "emitter": {"name": "Hubble", "version": "1.19.4"},
        "verdict": "FORWARDED",
        "IP": {
            "source": "10.214.0.3",
            "source_xlated": "192.0.2.77",
            "destination": "10.214.0.4",
            "ipVersion": "IPv4",
            "encrypted": True,
        },
        "l4": {"SCTP": {"source_port": 3868, "destination_port": 3869}},
        "source": {
            "ID": 30,
            "identity": 7001,
            "cluster_name": "cluster-b",
            "namespace": "hoth",
            "labels": ["k8s:app=echo-client", "k8s:io.kubernetes.pod.namespace=hoth"],
            "pod_name": "echo-client-5d9f",
            "workloads": [{"name": "echo-client", "kind": "Deployment"}],
        },
        "destination": {
            "ID": 31,
            "identity": 7002,
            "cluster_name": "cluster-b",
            "namespace": "hoth",
            "labels": ["k8s:app=echo-server", "k8s:io.kubernetes.pod.namespace=hoth"],
            "pod_name": "echo-server-0",
            "workloads": [{"name": "echo-server", "kind": "StatefulSet"}],
        },
        "Type": "L3_L4",
        "node_name": "cluster-b/node-b",
        "node_labels": ["kubernetes.io/hostname=node-b", "topology.kubernetes.io/zone=hoth-1"],
        "source_names": ["client.hoth.example.com"],
        "destination_names": ["echo.hoth.example.com"],
        "event_type": {"type": 4, "sub_type": 3},
        "source_service": {"name": "echo-client", "namespace": "hoth"},
        "destination_service": {"name": "echo", "namespace": "hoth"},
        "traffic_direction": "EGRESS",
        "trace_observation_point": "TO_STACK",
        "ip_trace_id": {"trace_id": "4242", "ip_option_type": 136},
        "is_reply": False,
        "interface": {"index": 7, "name": "eth0"},
        "trace_context": {"parent": {"trace_id": RICH_TRACE_ID}},
        "Summary": "SCTP",
    }
    return {"flow": flow, "node_name": "cluster-b/node-b", "time": stamp}


def named_responses() -> dict[str, dict[str, Any]]:
    """The fixture responses (without node status) by name, then ``"rich"``; in time order."""
    fixtures = fixture_responses()
    assert len(fixtures) == len(FIXTURE_NAMES), (
        "tests/fixtures/flows.jsonl changed: update FIXTURE_NAMES"
    )
    out = dict(zip(FIXTURE_NAMES, fixtures, strict=True))
    out["rich"] = rich_response()
    return out


# --- server --------------------------------------------------------------------------------


class SelfPeers:
    """PeerSource announcing this node only (as the agent's)."""

    def __init__(self, node: NodeInfo) -> None:
        self._node = node

    def peers(self) -> list[Any]:
        return [self._node]

    async def wait_changed(self) -> None:
        await asyncio.Event().wait()


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What ``ingest`` did: entries appended, batches, wall time, and how late the loop ran
    the appender's batches compared with its schedule (a stalled loop shows up here)."""

    appended: int
    batches: int
    elapsed_s: float
    lateness_s: tuple[float, ...]

    @property
    def max_lateness_s(self) -> float:
        return max(self.lateness_s, default=0.0)


class ObserverHarness:
    """See the module doc. ``start()``/``stop()``; targets ``unix_target`` and ``tcp_target``."""

    def __init__(
        self,
        sock_dir: Path,
        *,
        capacity: int = 4095,
        node_name: str = NODE_NAME,
        clock_ns: int | None = None,
        front: bool = True,
    ) -> None:
        sock = sock_dir / "observer.sock"
        self.front = front
        self.internal_path = sock_dir / "grpc-internal.sock"
        if len(str(sock)) > UNIX_PATH_MAX:
            raise ValueError(
                f"unix socket path too long ({len(str(sock))} > {UNIX_PATH_MAX}): {sock}"
            )
        self.socket_path = sock
        self.capacity = capacity
        self.clock_ns = clock_ns
        self.node = NodeInfo(name=node_name, address="")
        self.tcp_port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="observer-harness", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._store: FlowStore | None = None
        self._initial: list[tuple[int, EntryKind, bytes]] = []

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def unix_target(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_target(self) -> str:
        return f"127.0.0.1:{self.tcp_port}"

    def now_ns(self) -> int:
        return self.clock_ns if self.clock_ns is not None else time.time_ns()

    def start(self, responses: Iterable[Mapping[str, Any] | bytes] = ()) -> ObserverHarness:
        """Fill the store with ``responses`` (in order) and serve."""
        self._initial = [to_entry(r) for r in responses]
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("observer harness did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            if self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        if not self._loop.is_closed() and not self._thread.is_alive():
            self._loop.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def __enter__(self) -> ObserverHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as err:  # surfaced by start()
            self._error = err
            self._ready.set()

    async def _serve(self) -> None:
        store = FlowStore(self.capacity)
        for time_ns, kind, data in self._initial:
            store.append(time_ns, kind, data)
        store.notify()
        self._store = store
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        observer_pb2_grpc.add_ObserverServicer_to_server(
            ObserverServicer(store, self.node, self.now_ns), server
        )
        FlowStreamServicer(store, self.node, self.now_ns).add_to_server(server)
        peer_pb2_grpc.add_PeerServicer_to_server(PeerServicer(SelfPeers(self.node)), server)
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(REFLECTED_SERVICES, server)
        door: FrontDoor | None = None
        if self.front:
            server.add_insecure_port(f"unix://{self.internal_path}")
            await server.start()
            door = FrontDoor(store, self.node.name, now_ns=self.now_ns)
            await door.listen_unix(self.socket_path, str(self.internal_path))
            self.tcp_port = await door.listen_tcp("127.0.0.1:0", str(self.internal_path))
        else:
            server.add_insecure_port(self.unix_target)
            self.tcp_port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
        if self.tcp_port == 0:
            raise RuntimeError("cannot listen on 127.0.0.1:0")
        self.node.address = self.tcp_target
        await health_servicer.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            if door is not None:
                await door.stop(grace=None)
            await server.stop(grace=None)
            with contextlib.suppress(FileNotFoundError):
                self.internal_path.unlink()

    # --- the store, on its loop ---------------------------------------------------------

    @property
    def store(self) -> FlowStore:
        """The store; touch it only on the server loop (``on_loop``)."""
        assert self._store is not None, "harness not started"
        return self._store

    def on_loop(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn()`` on the server's event loop and return its result."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    def append(self, responses: Iterable[Mapping[str, Any] | bytes]) -> range:
        """Append responses as the agent's ingest does (append each, then one notify);
        returns their sequence numbers. Waits until done."""
        entries = [to_entry(r) for r in responses]

        def do() -> range:
            store = self.store
            first = store.next_seq
            for time_ns, kind, data in entries:
                store.append(time_ns, kind, data)
            store.notify()
            return range(first, store.next_seq)

        return self.on_loop(do)

    def append_soon(self, entries: Sequence[tuple[int, EntryKind, bytes]]) -> None:
        """Schedule an append on the server loop and return at once (for latency tests)."""

        def do() -> None:
            store = self.store
            for time_ns, kind, data in entries:
                store.append(time_ns, kind, data)
            store.notify()

        self._loop.call_soon_threadsafe(do)

    def ingest(
        self,
        entries: Sequence[tuple[int, EntryKind, bytes]],
        *,
        batch_size: int = 1000,
        interval_s: float = 0.0,
    ) -> concurrent.futures.Future[IngestReport]:
        """Append ``entries`` from a task on the server loop, ``batch_size`` at a time with a
        ``notify()`` after each (as the agent's drain does), one batch every ``interval_s``
        (0 = yield to the loop between batches). Returns at once; the future gives the report."""

        async def run() -> IngestReport:
            store = self.store
            loop = asyncio.get_running_loop()
            start = loop.time()
            lateness: list[float] = []
            batches = 0
            for i in range(0, len(entries), batch_size):
                due = max(start + batches * interval_s, loop.time())
                await asyncio.sleep(due - loop.time())
                lateness.append(loop.time() - due)
                for time_ns, kind, data in entries[i : i + batch_size]:
                    store.append(time_ns, kind, data)
                store.notify()
                batches += 1
            return IngestReport(len(entries), batches, loop.time() - start, tuple(lateness))

        return asyncio.run_coroutine_threadsafe(run(), self._loop)


# --- clients -------------------------------------------------------------------------------

STREAMS: Final = ("standard", "batched")
"""``standard``: observer.Observer/GetFlows, one GetFlowsResponse per message;
``batched``: hubblectl.v1.FlowStream/GetFlowsBatched, FlowBatch{json_lines, count}."""


def parse_batch(batch: agent_pb2.FlowBatch) -> list[observer_pb2.GetFlowsResponse]:
    """The responses of one FlowBatch, parsed as a client parses them (protojson)."""
    assert batch.json_lines.endswith(b"\n"), "json_lines must be newline-terminated"
    lines = batch.json_lines.split(b"\n")[:-1]
    assert batch.count == len(lines), f"count {batch.count} != {len(lines)} lines"
    out = []
    for line in lines:
        msg = observer_pb2.GetFlowsResponse()
        json_format.Parse(line, msg)
        out.append(msg)
    return out


class ObserverClient:
    """A synchronous client over one channel, with stubs built from our protos."""

    def __init__(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> None:
        self.target = target
        self.channel = grpc.insecure_channel(target, options=list(options))
        self.observer = observer_pb2_grpc.ObserverStub(self.channel)
        self.flow_stream = agent_pb2_grpc.FlowStreamStub(self.channel)
        self.peer = peer_pb2_grpc.PeerStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def stream(
        self, request: observer_pb2.GetFlowsRequest, stream: str, timeout: float | None = 30.0
    ) -> Any:
        """Start a GetFlows call on ``stream`` ("standard" or "batched"); the call object."""
        if stream == "standard":
            return self.observer.GetFlows(request, timeout=timeout)
        if stream == "batched":
            return self.flow_stream.GetFlowsBatched(request, timeout=timeout)
        raise ValueError(f"unknown stream {stream!r}")

    def get_flows(
        self, request: observer_pb2.GetFlowsRequest, stream: str = "standard", timeout: float = 30.0
    ) -> list[observer_pb2.GetFlowsResponse]:
        """Every response of a (non-follow) GetFlows call, on either stream."""
        call = self.stream(request, stream, timeout)
        if stream == "standard":
            return list(call)
        out: list[observer_pb2.GetFlowsResponse] = []
        for batch in call:
            out.extend(parse_batch(batch))
        return out


def iter_responses(call: Any, stream: str) -> Iterator[observer_pb2.GetFlowsResponse]:
    """The responses of a started call, one at a time, on either stream."""
    if stream == "standard":
        yield from call
        return
    for batch in call:
        yield from parse_batch(batch)


def as_dict(msg: observer_pb2.GetFlowsResponse) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def time_ns_of(msg: observer_pb2.GetFlowsResponse) -> int:
    return int(msg.time.seconds) * 1_000_000_000 + int(msg.time.nanos)


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


class ResponseReader:
    """Reads a started call on a thread into a queue, so a test can wait with a timeout."""

    _END: Final = object()

    def __init__(self, call: Any, stream: str) -> None:
        self.call = call
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: str) -> None:
        try:
            for resp in iter_responses(self.call, stream):
                self._queue.put(resp)
        except BaseException as err:  # delivered to get()
            self._queue.put(err)
        self._queue.put(self._END)

    def get(self, timeout: float) -> observer_pb2.GetFlowsResponse | None:
        """The next response; None if none arrived within ``timeout``. Raises the call's
        error, or EOFError at the end of the stream."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is self._END:
            raise EOFError("stream ended")
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, observer_pb2.GetFlowsResponse)
        return item

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(10)
