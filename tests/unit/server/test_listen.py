from __future__ import annotations

import asyncio

import grpc
import pytest

from observer.errors import ConfigError
from observer.server.listen import announce_address, bind, listen_target


@pytest.mark.parametrize(
    ("given", "target", "announced"),
    [
        (":4244", "[::]:4244", "localhost:4244"),
        ("127.0.0.1:4244", "127.0.0.1:4244", "127.0.0.1:4244"),
        ("0.0.0.0:4244", "0.0.0.0:4244", "localhost:4244"),
        ("[::]:4245", "[::]:4245", "localhost:4245"),
    ],
    ids=["port-only", "loopback", "any-v4", "any-v6"],
)
def test_addresses(given: str, target: str, announced: str) -> None:
    assert listen_target(given) == target
    assert announce_address(given) == announced


def test_bind_port_only_and_busy_port() -> None:
    async def scenario() -> None:
        opts = [("grpc.so_reuseport", 0)]  # as the agent and relay bind: a busy port is an error
        a, b = grpc.aio.server(options=opts), grpc.aio.server(options=opts)
        port = bind(a, "127.0.0.1:0", "--listen-address")
        assert port > 0
        with pytest.raises(ConfigError, match=r"--listen-address: cannot listen on 127\.0\.0\.1:"):
            bind(b, f"127.0.0.1:{port}", "--listen-address")
        assert bind(b, ":0", "--listen-address") > 0
        await a.stop(None)
        await b.stop(None)

    asyncio.run(scenario())
