"""grpcio's own ceiling for a server stream of small messages on this machine.

Hubble's standard GetFlows stream sends one message per flow, so no server written with
grpcio can stream flows faster than grpcio streams messages. This measures that ceiling with
nothing else in the way: a grpc.aio server whose handler yields the same pre-serialized
500-byte message (no protobuf, identity serializers) to a client in another process (sync
stub, no deserializer) over a unix socket. Also the sync server, for comparison.

The agent no longer serves the standard stream with grpcio (unless ``--no-fast-stream``):
its HTTP/2 front door (observer/server/front.py) writes many framed messages per DATA frame,
so this ceiling bounds only the ``direct`` rows of bench/stream_bench.py (grpc.aio serving
the standard stream itself), which are quoted as a share of it; the Python grpcio *client*
pays a similar per-message cost on its side, which is why that bench also reads the stream
with a raw HTTP/2 client.

    python3 bench/grpc_bench.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Final

import grpc

MESSAGE: Final = b"x" * 500
SERVICE: Final = "bench.Bare"


def _client(target: str) -> None:
    """Child process: read the whole stream, print messages/s."""
    channel = grpc.insecure_channel(target)
    stream = channel.unary_stream(
        f"/{SERVICE}/Stream", request_serializer=None, response_deserializer=None
    )
    start = time.perf_counter()
    count = sum(1 for _ in stream(b""))
    print(f"{count} {count / (time.perf_counter() - start):.0f}", flush=True)
    channel.close()


def _run_client(target: str) -> tuple[int, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", target],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    count, rate = out.stdout.split()
    return int(count), float(rate)


async def _aio_rate(target: str, n: int) -> tuple[int, float]:
    async def stream(request: bytes, context: Any) -> Any:
        for _ in range(n):
            yield MESSAGE

    handler = grpc.unary_stream_rpc_method_handler(stream)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler}),))
    server.add_insecure_port(target)
    await server.start()
    try:
        return await asyncio.to_thread(_run_client, target)
    finally:
        await server.stop(None)


def _sync_rate(target: str, n: int) -> tuple[int, float]:
    def stream(request: bytes, context: Any) -> Any:
        for _ in range(n):
            yield MESSAGE

    handler = grpc.unary_stream_rpc_method_handler(stream)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler}),))
    server.add_insecure_port(target)
    server.start()
    try:
        return _run_client(target)
    finally:
        server.stop(None)


def run(quick: bool = False) -> dict[str, Any]:
    n = 10_000 if quick else 30_000
    with tempfile.TemporaryDirectory(prefix="hbgrpc") as tmp:
        target = "unix://" + str(Path(tmp) / "bare.sock")
        got_aio, aio = asyncio.run(_aio_rate(target, n))
        got_sync, sync = _sync_rate(target, n)
    if got_aio != n or got_sync != n:
        raise RuntimeError(f"short stream: {got_aio}/{got_sync} of {n}")
    return {
        "grpc_messages": n,
        "grpc_aio_server_messages_per_s": round(aio),
        "grpc_sync_server_messages_per_s": round(sync),
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        _client(sys.argv[2])
        sys.exit(0)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for key, value in run("--quick" in sys.argv).items():
        print(f"{key:40} {value}")
