"""Fixtures: an event loop thread, three fake nodes with interleaved flows, a relay over them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from hubblectl.client import Client, connect
from observer.api.v1.hubblectl import agent_pb2_grpc
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.relay.server import Relay, RelayConfig

from .harness import (
    MS,
    T0,
    FakeNode,
    LoopThread,
    StreamCollector,
    flow_responses,
    relay_config,
    start_relay,
)

FLOWS_PER_NODE = 20
STEP = 3 * MS  # node i's flows at T0 + i ms + k * 3 ms: the three nodes interleave exactly


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    with LoopThread() as lt:
        yield lt


@dataclass
class Cluster:
    loop: LoopThread
    nodes: list[FakeNode]
    relay: Relay | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def relay_address(self) -> str:
        assert self.relay is not None
        return f"127.0.0.1:{self.relay.port}"

    def start_relay(self, config: RelayConfig | None = None, **kwargs: Any) -> Relay:
        cfg = config or relay_config([n.spec for n in self.nodes], **kwargs)
        self.relay = self.loop.run(start_relay(cfg))
        return self.relay

    def client(self, **kwargs: Any) -> Client:
        c = connect(self.relay_address, **kwargs)
        self._closers.append(c.close)
        return c

    def grpc_channel(self) -> grpc.Channel:
        ch = grpc.insecure_channel(self.relay_address)
        self._closers.append(ch.close)
        return ch

    def follow(self, request: dict[str, Any] | None = None) -> StreamCollector:
        """A follow stream through the relay (the CLI client's batched stream)."""
        client = connect(self.relay_address)
        collector = StreamCollector(client.get_flows({"follow": True, **(request or {})}), client.close)
        self._closers.append(collector.close)
        return collector

    def standard_stream(self, request: observer_pb2.GetFlowsRequest) -> StreamCollector:
        """observer.Observer/GetFlows through the relay, as the stock hubble CLI reads it."""
        from observer.api.convert import response_to_json_line

        ch = grpc.insecure_channel(self.relay_address)
        call = observer_pb2_grpc.ObserverStub(ch).GetFlows(request)

        def chunks() -> Iterator[bytes]:
            try:
                for resp in call:
                    yield response_to_json_line(resp)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.CANCELLED:
                    raise

        def close() -> None:
            call.cancel()  # type: ignore[no-untyped-call]
            ch.close()

        collector = StreamCollector(chunks(), close)
        self._closers.append(collector.close)
        return collector

    def batched_stub(self) -> agent_pb2_grpc.FlowStreamStub:
        return agent_pb2_grpc.FlowStreamStub(self.grpc_channel())

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):  # best effort teardown
                closer()
        if self.relay is not None:
            self.loop.run(self.relay.stop(0))
        for node in self.nodes:
            self.loop.run(node.stop(0))


def make_nodes(loop: LoopThread, names: str = "abc", **kwargs: Any) -> list[FakeNode]:
    nodes = []
    for i, c in enumerate(names):
        node = loop.run(FakeNode.create(f"node-{c}", **kwargs))
        loop.run(node.append(flow_responses(node.absolute_name, T0 + i * MS, FLOWS_PER_NODE, STEP)))
        nodes.append(node)
    return nodes


@pytest.fixture
def cluster(loop: LoopThread) -> Iterator[Cluster]:
    """Three nodes with 20 flows each, interleaved in time, and a relay over them."""
    c = Cluster(loop, make_nodes(loop))
    try:
        c.start_relay()
        yield c
    finally:
        c.close()
