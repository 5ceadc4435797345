"""``hubblectl observe/status/list`` against a real gRPC server (the agent's servicers over a
unix socket, fed with tests/fixtures/flows.jsonl): the batched stream, the fallback to
Hubble's GetFlows when the server lacks it, and the error messages."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from click.testing import CliRunner, Result
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from hubblectl.cli.main import cli
from hubblectl.client import connect
from hubblectl.errors import ServerError, UsageError
from hubblectl.printer.timefmt import parse_rfc3339
from observer.api.convert import proto_to_dict, response_to_proto
from observer.api.v1.observer import observer_pb2_grpc
from observer.server.observer import FlowStreamServicer, NodeInfo, ObserverServicer
from observer.store import EntryKind, FlowStore

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl"
KINDS = {
    "flow": EntryKind.FLOW,
    "lost_events": EntryKind.LOST,
    "node_status": EntryKind.NODE_STATUS,
}


def _fixture() -> list[bytes]:
    return [line for line in FIXTURE.read_bytes().splitlines() if line]


class _Server:
    """A grpc.aio server on its own event loop thread."""

    def __init__(
        self,
        sock: Path | None,
        *,
        batched: bool,
        serving: bool,
        credentials: Any = None,
        malformed: bool = False,
    ) -> None:
        self.address = f"unix://{sock}" if sock is not None else ""
        self._credentials = credentials
        self.batched = batched
        self.malformed = malformed
        self._serving = serving
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as err:  # surfaced by start()
            self._error = err
            self._ready.set()

    async def _serve(self) -> None:
        store = FlowStore(4095)
        for line in _fixture():
            response = orjson.loads(line)
            kind = next(KINDS[k] for k in KINDS if k in response)
            ts = parse_rfc3339(response["time"])
            assert ts is not None
            store.append(ts.total_ns, kind, line)
        self.store = store
        node = NodeInfo(name="default/node-a", address="10.0.0.1")
        server = grpc.aio.server()
        observer_pb2_grpc.add_ObserverServicer_to_server(ObserverServicer(store, node), server)
        if self.malformed:

            async def not_a_flow_batch(request: Any, context: Any) -> Any:
                yield b"\x0b"  # wire type 3 (a group): no FlowBatch starts so

            handler = grpc.unary_stream_rpc_method_handler(not_a_flow_batch)
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("hubblectl.v1.FlowStream", {"GetFlowsBatched": handler}),)
            )
        elif self.batched:
            FlowStreamServicer(store, node).add_to_server(server)
        health = HealthServicer()
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await health.set("hubble.server.Observer", status)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        if self._credentials is not None:
            port = server.add_secure_port("127.0.0.1:0", self._credentials)
            self.address = f"127.0.0.1:{port}"
        else:
            server.add_insecure_port(self.address)
        await server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(grace=None)

    def add(self, line: bytes) -> None:
        """Append a response as the agent would (thread-safe)."""

        def append() -> None:
            response = orjson.loads(line)
            ts = parse_rfc3339(response["time"])
            assert ts is not None
            self.store.append(ts.total_ns, KINDS[next(k for k in KINDS if k in response)], line)
            self.store.notify()

        self._loop.call_soon_threadsafe(append)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(params=[True, False], ids=["batched", "standard-getflows"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Server]:
    srv = _Server(tmp_path / "hubble.sock", batched=request.param, serving=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=True, prog_name="hubblectl")


def _canonical(response: dict[str, Any]) -> dict[str, Any]:
    return proto_to_dict(response_to_proto(response))


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def test_json_output_equals_stored_responses(server: _Server) -> None:
    result = run("observe", "--server", server.address, "--all", "-o", "json", "--debug")
    assert result.exit_code == 0, result.output
    expected = [orjson.loads(line) for line in _fixture() if b"node_status" not in line]
    # The standard stream goes through protobuf, which rewrites timestamps to 0/3/6/9 digits.
    assert [_canonical(r) for r in _json_lines(result.stdout)] == [_canonical(r) for r in expected]
    if server.batched:
        assert _json_lines(result.stdout) == expected  # the batched path passes bytes through


def test_compact_output_equals_input_file_rendering(server: _Server) -> None:
    live = run("observe", "--server", server.address, "--last", "100", "--print-node-name", "-s")
    assert live.exit_code == 0, live.output
    offline = run("observe", "--input-file", str(FIXTURE), "--print-node-name", "-s")
    assert live.stdout == offline.stdout
    assert live.stdout.count("\n") == 10


def test_filters_are_applied_by_the_server(server: _Server) -> None:
    result = run("observe", "--server", server.address, "--verdict", "DROPPED", "-o", "json")
    assert result.exit_code == 0, result.output
    flows = [r["flow"] for r in _json_lines(result.stdout) if "flow" in r]
    assert [f["verdict"] for f in flows] == ["DROPPED"]


def test_server_rejects_bad_filter(server: _Server) -> None:
    result = run(
        "observe", "--server", server.address, "--allowlist", '{"http_status_code":["99x"]}'
    )
    assert isinstance(result.exception, ServerError)
    assert "INVALID_ARGUMENT" in str(result.exception)


def test_status(server: _Server) -> None:
    result = run("status", "--server", server.address)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Healthcheck (via {server.address}): Ok"
    assert lines[1].startswith("Current/Max Flows: ")
    assert lines[2].startswith("Flows/s: ")
    as_json = run("status", "--server", server.address, "-o", "json")
    status = orjson.loads(as_json.stdout)
    assert status["max_flows"] == "4095"


def test_client_get_nodes(server: _Server) -> None:
    with connect(server.address, timeout=5) as client:
        try:
            nodes = client.get_nodes()
        except ServerError as err:
            assert "relay" in str(err)
            return
    result = run("list", "nodes", "--server", server.address)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("NAME ")
    assert len(result.stdout.splitlines()) == len(nodes) + 1


def test_status_not_serving(tmp_path: Path) -> None:
    srv = _Server(tmp_path / "h.sock", batched=True, serving=False)
    srv.start()
    try:
        result = run("status", "--server", srv.address)
    finally:
        srv.stop()
    assert result.stdout == f"Healthcheck (via {srv.address}): Unavailable: NOT_SERVING\n"
    assert isinstance(result.exception, ServerError)
    assert str(result.exception) == "not healthy"


def test_malformed_batch_is_an_error_naming_the_server(tmp_path: Path) -> None:
    srv = _Server(tmp_path / "h.sock", batched=True, serving=True, malformed=True)
    srv.start()
    try:
        result = run("observe", "--server", srv.address, "--last", "5", "-o", "json")
    finally:
        srv.stop()
    assert isinstance(result.exception, ServerError)
    assert f"{srv.address} sent a malformed FlowBatch" in str(result.exception)
    assert result.stdout == ""


def test_missing_socket_names_the_path(tmp_path: Path) -> None:
    sock = tmp_path / "nope.sock"
    result = run("observe", "--server", f"unix://{sock}", "--timeout", "1s")
    assert isinstance(result.exception, ServerError)
    assert f"{sock} does not exist" in str(result.exception)


def _cli_process(*args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "hubblectl.cli.main", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_follow_streams_new_flows_and_ctrl_c_exits_quietly(server: _Server) -> None:
    proc = _cli_process("observe", "--server", server.address, "--follow", "-o", "json")
    try:
        assert proc.stdout is not None
        # The follower only sees flows appended after it started: keep adding until one shows.
        line = b""
        deadline = time.monotonic() + 20
        while not line and time.monotonic() < deadline:
            new = orjson.loads(_fixture()[5])
            new["flow"]["uuid"] = "followed-flow"
            server.add(orjson.dumps(new))
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
        assert line, "no followed flow within 20s"
        assert orjson.loads(line)["flow"]["uuid"] == "followed-flow"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err == b""


def test_broken_pipe_exits_quietly() -> None:
    """``hubblectl observe ... | head -1``: no traceback, no BrokenPipeError noise."""
    big = (b"\n".join(_fixture()[:9]) + b"\n") * 2000
    producer = subprocess.Popen(
        [sys.executable, "-m", "hubblectl.cli.main", "observe", "--input-file", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert (
        producer.stdout is not None and producer.stdin is not None and producer.stderr is not None
    )
    stdin = producer.stdin

    def feed() -> None:
        try:
            stdin.write(big)
            stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        ready, _, _ = select.select([producer.stdout], [], [], 20)
        assert ready, "no output within 20s"
        first = producer.stdout.readline()
        producer.stdout.close()  # like `| head -1`
        producer.wait(timeout=30)
        err = producer.stderr.read()
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
        feeder.join(5)
    assert first.startswith(b"Nov 26 12:00:01.123")
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert producer.returncode in (0, 1, 141)


def test_tls_flags(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from hubblectl.cli.certs import certificate_bundle, write_bundle
    from observer.server.tls import server_credentials

    write_bundle(
        tmp_path, certificate_bundle(["node-a"], "default", datetime.now(UTC), 2), force=False
    )
    creds = server_credentials(str(tmp_path / "relay.crt"), str(tmp_path / "relay.key"))
    srv = _Server(None, batched=True, serving=True, credentials=creds)
    srv.start()
    try:
        verified = run(
            "status",
            "--server",
            srv.address,
            "--tls",
            "--tls-ca-cert-files",
            str(tmp_path / "ca.crt"),
            "--tls-server-name",
            "instance.hubble-relay.cilium.io",
        )
        assert verified.exit_code == 0, verified.output
        assert verified.stdout.startswith(f"Healthcheck (via {srv.address}): Ok\n")
        forced = run(
            "observe",
            "--server",
            f"tls://{srv.address}",
            "--tls-allow-insecure",
            "--last",
            "2",
            "-o",
            "json",
        )
        assert forced.exit_code == 0, forced.output
        assert len(forced.stdout.splitlines()) == 2
        plaintext = run("status", "--server", srv.address, "--timeout", "2s")
        assert isinstance(plaintext.exception, ServerError)
        assert "TLS" in str(plaintext.exception)
        half = run(
            "status",
            "--server",
            srv.address,
            "--tls",
            "--tls-client-cert-file",
            str(tmp_path / "client.crt"),
        )
        assert isinstance(half.exception, UsageError)
        assert "--tls-client-cert-file and --tls-client-key-file" in str(half.exception)
    finally:
        srv.stop()
