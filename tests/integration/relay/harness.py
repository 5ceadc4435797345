"""In-process fake nodes for relay tests and benchmarks.

A ``FakeNode`` is a real ``grpc.aio`` server on 127.0.0.1 with the agent's real servicers
(``ObserverServicer``, ``FlowStreamServicer``, health) over a ``FlowStore`` the test fills with
real response JSON (the shapes of tests/fixtures/flows.jsonl, re-timed and re-named per node).
No BPF. Everything asyncio runs on one event loop in a background thread (``LoopThread``), so
tests stay synchronous and can use the CLI's blocking client against the relay.

    with LoopThread() as loop:
        nodes = [loop.run(FakeNode.create(f"node-{c}")) for c in "abc"]
        for i, node in enumerate(nodes):
            loop.run(node.append(flow_responses(node.absolute_name, T0 + i * MS, 10, 3 * MS)))
        relay = loop.run(start_relay(relay_config([n.spec for n in nodes])))
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import queue
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import orjson
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2, health_pb2_grpc

from observer.api.v1.hubblectl import agent_pb2
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.api.v1.peer import peer_pb2_grpc
from observer.parser.timestamps import format_timestamp
from observer.relay.merge import parse_rfc3339_ns
from observer.relay.pool import PeerSpec
from observer.relay.server import Relay, RelayConfig
from observer.server.observer import FlowStreamServicer, NodeInfo, ObserverServicer
from observer.server.peer import PeerServicer
from observer.store import EntryKind, FlowStore

T = TypeVar("T")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl"
MS = 1_000_000
S = 1_000_000_000
T0 = 1_795_694_400 * S  # 2026-11-26T12:00:00Z, the fixtures' day


# --- an event loop in a thread ----------------------------------------------------------------


class LoopThread:
    """An asyncio event loop running in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="relay-test-loop", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


# --- flows ---------------------------------------------------------------------------------------


def fixture_flows() -> list[dict[str, Any]]:
    """The flow responses of tests/fixtures/flows.jsonl (no lost / node-status ones)."""
    out = []
    for line in FIXTURES.read_bytes().splitlines():
        if line:
            resp = orjson.loads(line)
            if "flow" in resp:
                out.append(resp)
    return out


def flow_responses(
    node_name: str, start_ns: int, count: int, step_ns: int, shapes: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``count`` flow responses of ``node_name`` (absolute, ``cluster/node``) at ``start_ns``,
    ``start_ns + step_ns``, ..., cycling through the fixture shapes, each with a fresh uuid."""
    shapes = shapes if shapes is not None else fixture_flows()
    out = []
    for i in range(count):
        resp = copy.deepcopy(shapes[i % len(shapes)])
        ts = format_timestamp(start_ns + i * step_ns)
        flow = resp["flow"]
        flow["time"] = ts
        flow["uuid"] = str(uuid.uuid4())
        flow["node_name"] = node_name
        out.append({"flow": flow, "node_name": node_name, "time": ts})
    return out


def lost_response(node_name: str, time_ns: int, lost: int) -> dict[str, Any]:
    return {
        "lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": str(lost)},
        "node_name": node_name,
        "time": format_timestamp(time_ns),
    }


def response_time(resp: dict[str, Any]) -> str:
    return str(resp["time"])


# --- fake nodes ----------------------------------------------------------------------------------


class _NoTimes(FlowStreamServicer):
    """The batched stream of an agent that does not fill FlowBatch.times_ns (an older one)."""

    async def GetFlowsBatched(self, request: Any, context: Any) -> Any:
        async for batch in super().GetFlowsBatched(request, context):
            message = agent_pb2.FlowBatch.FromString(batch) if isinstance(batch, bytes) else batch
            message.ClearField("times_ns")
            yield message


class _NoMetadata:
    """A servicer context that hides the request's metadata (as an agent that reads none)."""

    def __init__(self, context: Any) -> None:
        self._context = context

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        await self._context.abort(code, details)

    async def send_initial_metadata(self, metadata: Any) -> None:
        await self._context.send_initial_metadata(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class _CountingStream(FlowStreamServicer):
    """The agent's batched stream, counting the messages it sends with LZ4 blocks; with
    ``lz4=False`` it never sends them (an agent older than json_lines_lz4)."""

    def __init__(self, node: FakeNode) -> None:
        super().__init__(node.store, node.info)
        self._fake = node

    async def GetFlowsBatched(self, request: Any, context: Any) -> Any:
        node = self._fake
        ctx: Any = context if node.lz4 else _NoMetadata(context)
        async for batch in super().GetFlowsBatched(request, ctx):
            node.messages += 1
            message = agent_pb2.FlowBatch.FromString(batch) if isinstance(batch, bytes) else batch
            if message.json_lines_lz4:
                node.lz4_messages += 1
            yield batch


async def _malformed_batches(request: Any, context: Any) -> Any:
    """A batched stream whose one message is not a FlowBatch (wire type 3, a group)."""
    yield b"\x0b"


def _add_malformed_flow_stream(server: grpc.aio.Server) -> None:
    handler = grpc.unary_stream_rpc_method_handler(
        _malformed_batches,
        request_deserializer=observer_pb2.GetFlowsRequest.FromString,
        response_serializer=None,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("hubblectl.v1.FlowStream", {"GetFlowsBatched": handler}),)
    )


class _FailingStatus(ObserverServicer):
    """An ObserverServicer whose ServerStatus fails (to make a node NODE_ERROR)."""

    async def ServerStatus(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.INTERNAL, "status is broken on purpose")


class FakeNode:
    """A node without BPF: the agent's servicers over a store the test fills."""

    def __init__(
        self,
        name: str,
        *,
        cluster: str = "default",
        capacity: int = 4095,
        batched: bool = True,
        times: bool = True,
        malformed: bool = False,
        status_fails: bool = False,
        credentials: grpc.ServerCredentials | None = None,
        lz4: bool = True,
    ) -> None:
        self.name = name
        self.cluster = cluster
        self.absolute_name = f"{cluster}/{name}"
        self.store = FlowStore(capacity)
        self.batched = batched
        self.times = times
        self.malformed = malformed
        self.status_fails = status_fails
        self.credentials = credentials
        self.lz4 = lz4  # False: the batched stream ignores a request for LZ4 blocks
        self.messages = 0  # batched-stream messages sent
        self.lz4_messages = 0  # ... of which carried LZ4 blocks
        self.port = 0
        self.server: grpc.aio.Server | None = None
        self.info = NodeInfo(name=self.absolute_name, address="")

    @classmethod
    async def create(cls, name: str, **kwargs: Any) -> FakeNode:
        node = cls(name, **kwargs)
        await node.start()
        return node

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def spec(self) -> PeerSpec:
        return PeerSpec(name=self.name, address=self.address)

    async def start(self) -> None:
        """Serve on 127.0.0.1: an ephemeral port the first time, the same port afterwards."""
        server = grpc.aio.server()
        servicer_cls = _FailingStatus if self.status_fails else ObserverServicer
        observer_pb2_grpc.add_ObserverServicer_to_server(servicer_cls(self.store, self.info), server)
        if self.malformed:
            _add_malformed_flow_stream(server)
        elif self.batched:
            if self.times:
                _CountingStream(self).add_to_server(server)
            else:
                _NoTimes(self.store, self.info).add_to_server(server)
        h = health_async.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(h, server)
        target = f"127.0.0.1:{self.port}"
        if self.credentials is not None:
            port = server.add_secure_port(target, self.credentials)
        else:
            port = server.add_insecure_port(target)
        assert port, f"cannot listen on {target}"
        await server.start()
        await h.set("hubble.server.Observer", health_pb2.HealthCheckResponse.SERVING)
        self.port = port
        self.info.address = self.address
        self.server = server

    async def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None

    def followers(self) -> int:
        """Coroutines waiting for new entries in the store (one per follow stream)."""
        return int(self.store._waiters)

    async def append(self, responses: Iterable[dict[str, Any]]) -> int:
        """Store responses (flows or lost events) and wake followers; returns how many."""
        n = 0
        for resp in responses:
            kind = EntryKind.FLOW if "flow" in resp else EntryKind.LOST
            ts = resp["time"]
            self.store.append(parse_rfc3339_ns(ts), kind, orjson.dumps(resp))
            n += 1
        self.store.notify()
        return n


class FakePeerSource:
    """A PeerSource for ``PeerServicer`` that tests change at will."""

    def __init__(self) -> None:
        self._peers: dict[str, PeerSpec] = {}
        self._event = asyncio.Event()

    def peers(self) -> list[Any]:
        return list(self._peers.values())

    async def wait_changed(self) -> None:
        await self._event.wait()

    def _changed(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def set(self, spec: PeerSpec) -> None:
        self._peers[spec.name] = spec
        self._changed()

    def remove(self, name: str) -> None:
        self._peers.pop(name, None)
        self._changed()


class FakePeerService:
    """A real peer.Peer server announcing what its ``FakePeerSource`` holds."""

    def __init__(self) -> None:
        self.source = FakePeerSource()
        self.port = 0
        self.server: grpc.aio.Server | None = None

    @classmethod
    async def create(cls) -> FakePeerService:
        svc = cls()
        server = grpc.aio.server()
        peer_pb2_grpc.add_PeerServicer_to_server(PeerServicer(svc.source), server)
        svc.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        svc.server = server
        return svc

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
            self.server = None


# --- the relay -------------------------------------------------------------------------------------


def relay_config(peers: Sequence[PeerSpec] = (), **kwargs: Any) -> RelayConfig:
    """A relay on an ephemeral loopback port with test-friendly timeouts."""
    base = RelayConfig(
        listen_address="127.0.0.1:0",
        peers=tuple(peers),
        node_name="relay-test",
        dial_timeout_s=2.0,
        retry_timeout_s=0.5,
        initial_backoff_s=0.05,
        sort_buffer_drain_timeout_s=0.5,
    )
    return replace(base, **kwargs)


async def start_relay(config: RelayConfig) -> Relay:
    relay = Relay(config)
    await relay.start()
    return relay


# --- reading a stream from a test thread -------------------------------------------------------------


class StreamCollector:
    """Reads a blocking iterator of JSON-line chunks in a thread; the test polls with deadlines."""

    def __init__(self, chunks: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._queue: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()
        self.items: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.ended = False
        self._on_close = on_close
        self._thread = threading.Thread(target=self._run, args=(chunks,), daemon=True)
        self._thread.start()

    def _run(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                for line in chunk.splitlines():
                    if line:
                        self._queue.put(orjson.loads(line))
        except BaseException as err:  # handed to the test thread
            self._queue.put(err)
        self._queue.put(None)

    def _drain(self, timeout: float) -> None:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if item is None:
                self.ended = True
            elif isinstance(item, BaseException):
                self.error = item
            else:
                self.items.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str) -> list[dict[str, Any]]:
        """Collect until ``predicate(items)`` holds; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.items):
            left = deadline - time.monotonic()
            if left <= 0 or (self.ended and self._queue.empty()):
                raise AssertionError(
                    f"timed out waiting for {what}; got {len(self.items)} items"
                    f" (ended={self.ended}, error={self.error!r}); last: {self.items[-3:]}"
                )
            self._drain(min(left, 0.1))
        return self.items

    def wait_end(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"stream did not end within {timeout}s; got {len(self.items)} items")
            self._drain(min(left, 0.1))
        if self.error is not None:
            raise self.error
        return self.items

    def close(self) -> None:
        self._on_close()
        self._thread.join(timeout=5)


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


def flows_of(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if "flow" in i]


def node_statuses(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i["node_status"] for i in items if "node_status" in i]


def status_request() -> observer_pb2.ServerStatusRequest:
    return observer_pb2.ServerStatusRequest()
