"""Several real agents on one machine, and `hubblectl relay` / `hubblectl observe --follow`
subprocesses over them, for the privileged relay tests.

* ``NodeAgent`` extends the agent harness (tests/privileged/agent/agent_harness.py): a chosen
  ``--node-name``, a TCP listener on 127.0.0.1, optional ``--cluster-dir`` and TLS files, two
  endpoints (``default/client``, ``default/server``) with a TCP server in the server's netns,
  and ``traffic()``: one ping and one TCP exchange from client to server.
* ``Cluster``: several NodeAgents (distinct names, state dirs, sockets, pin roots, netns
  prefixes, pod ranges and ports), started and closed in parallel; ``close()`` removes
  everything (processes, endpoints, netns, pins, dirs) whatever happened before.
* ``RelayProcess``: ``python -m hubblectl.cli.main relay`` on a free port, with CLI helpers
  that pass the client flags (TLS) it needs.
* ``FollowStream``: ``hubblectl observe --follow -o json -D`` in a subprocess; flows (stdout)
  and node-status events (stderr) are collected by threads in arrival order.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent_harness import HUBBLECTL, Agent, hubblectl

TCP_PORT: Final = 8080
CLUSTER: Final = "default"

# An echo server and a one-shot client (as in tests/privileged/agent/test_agent_flows.py, but
# the client retries until the server listens, so no per-node readiness polling is needed).
TCP_SERVER_PY: Final = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept(); d = c.recv(65536); c.sendall(b"pong:" + d); c.close()
"""
TCP_CLIENT_PY: Final = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 10
while True:
    try:
        s = socket.create_connection((host, port), timeout=5); break
    except ConnectionRefusedError:
        if time.monotonic() > deadline: raise
        time.sleep(0.05)
s.sendall(b"ping"); print(s.recv(100).decode()); s.close()
"""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that are free now (held until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True, slots=True)
class Certs:
    """The files `hubblectl certs --out DIR --nodes ...` writes."""

    dir: Path

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.crt")

    def node(self, name: str) -> tuple[str, str]:
        return str(self.dir / "nodes" / f"{name}.crt"), str(self.dir / "nodes" / f"{name}.key")

    @property
    def client(self) -> tuple[str, str]:
        return str(self.dir / "client.crt"), str(self.dir / "client.key")

    @property
    def relay(self) -> tuple[str, str]:
        return str(self.dir / "relay.crt"), str(self.dir / "relay.key")

    @classmethod
    def make(cls, out: Path, nodes: Sequence[str]) -> Certs:
        hubblectl("certs", "--out", str(out), "--nodes", ",".join(nodes))
        return cls(out)

    def agent_flags(self, name: str) -> tuple[str, ...]:
        cert, key = self.node(name)
        return ("--tls-cert-file", cert, "--tls-key-file", key, "--tls-client-ca-files", self.ca)

    def relay_upstream_flags(self, *, client_cert: bool = True) -> tuple[str, ...]:
        """The relay's flags towards the agents (``client_cert=False``: no client certificate)."""
        flags: tuple[str, ...] = ("--tls-ca-cert-files", self.ca)
        if client_cert:
            cert, key = self.client
            flags += ("--tls-client-cert-file", cert, "--tls-client-key-file", key)
        return flags

    def relay_server_flags(self) -> tuple[str, ...]:
        cert, key = self.relay
        return ("--tls-cert-file", cert, "--tls-key-file", key, "--tls-client-ca-files", self.ca)

    def client_flags(self, *, server_name: str, client_cert: bool = True) -> tuple[str, ...]:
        """CLI flags to talk TLS to a relay or agent (``client_cert=False``: no certificate)."""
        flags: tuple[str, ...] = ("--tls", "--tls-ca-cert-files", self.ca, "--tls-server-name", server_name)
        if client_cert:
            cert, key = self.client
            flags += ("--tls-client-cert-file", cert, "--tls-client-key-file", key)
        return flags


class NodeAgent(Agent):
    """A real agent with a node name of our choosing, serving on 127.0.0.1:``port``."""

    def __init__(
        self,
        tmp: Path,
        name: str,
        port: int,
        *,
        subnet: int,
        cluster_dir: Path | None = None,
        certs: Certs | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        flags: tuple[str, ...] = ("--listen-address", f"127.0.0.1:{port}")
        if cluster_dir is not None:
            flags += ("--cluster-dir", str(cluster_dir))
        if certs is not None:
            flags += certs.agent_flags(name)
        super().__init__(tmp, subnet=subnet, extra=(*flags, *extra))
        self.name = name
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.eps: dict[str, dict[str, Any]] = {}
        self._servers: list[subprocess.Popen[bytes]] = []

    @property
    def absolute_name(self) -> str:
        return f"{CLUSTER}/{self.name}"

    def args(self) -> list[str]:
        args = super().args()
        args[args.index("--node-name") + 1] = self.name
        return args

    def create(self, key: str, *labels: str) -> dict[str, Any]:
        ep = super().create(key, *labels)
        self.eps[key] = ep
        return ep

    def run_in(self, key: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command in an endpoint's netns (directly, without the CLI)."""
        res = subprocess.run(["ip", "netns", "exec", self.eps[key]["netns"], *cmd],
                             capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(f"{self.name} {key}: {' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def setup_endpoints(self) -> None:
        """``default/client`` and ``default/server``, the server running a TCP echo server."""
        self.create("default/client", "app=client")
        self.create("default/server", "app=server")
        self._servers.append(subprocess.Popen(
            ["ip", "netns", "exec", self.eps["default/server"]["netns"],
             "python3", "-c", TCP_SERVER_PY, str(TCP_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def traffic(self) -> None:
        """One ping and one TCP exchange (SYN ... FIN) from the client to the server."""
        server = self.eps["default/server"]["ipv4"]
        self.run_in("default/client", "ping", "-c", "1", "-W", "2", server)
        out = self.run_in("default/client", "python3", "-c", TCP_CLIENT_PY, server, str(TCP_PORT)).stdout
        assert out.strip() == "pong:ping", out

    def kill(self) -> None:
        """SIGKILL the agent: no cleanup at all (socket, pins, netns and registry stay)."""
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        try:
            for proc in self._servers:
                proc.kill()
                proc.wait()
            self._servers.clear()
        finally:
            super().close()


def _parallel(fns: Iterable[Callable[[], None]]) -> None:
    """Run the calls in threads; wait for all, then raise the first failure."""
    calls = list(fns)
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        futures = [pool.submit(fn) for fn in calls]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


class Cluster:
    """Agents ``names`` on this machine (with a shared cluster dir), endpoints and traffic."""

    def __init__(self, tmp: Path, names: Sequence[str], *, certs: Certs | None = None) -> None:
        self.tmp = tmp
        self.cluster_dir = tmp / "cluster"
        self.certs = certs
        ports = free_ports(len(names))
        # pod ranges in 10.252.150-199.0/24, apart from those of the agent tests (10.252.200-249)
        # and the policy tests (10.246-249)
        first = 150 + random.randrange(50 - len(names) + 1)
        self.agents = [
            NodeAgent(tmp, name, port, subnet=first + i, cluster_dir=self.cluster_dir, certs=certs)
            for i, (name, port) in enumerate(zip(names, ports, strict=True))
        ]

    def __getitem__(self, name: str) -> NodeAgent:
        return next(a for a in self.agents if a.name == name)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.agents]

    def start(self) -> None:
        def up(agent: NodeAgent) -> None:
            agent.start(timeout=60)
            agent.setup_endpoints()
            agent.traffic()

        _parallel(functools.partial(up, a) for a in self.agents)

    def traffic(self, agents: Iterable[NodeAgent] | None = None) -> None:
        _parallel(a.traffic for a in (self.agents if agents is None else agents))

    def static_peer_flags(self) -> list[str]:
        return [arg for a in self.agents for arg in ("--peer", f"{a.name}={a.address}")]

    def close(self) -> None:
        _parallel(a.close for a in self.agents)


class RelayProcess:
    """``hubblectl relay`` on 127.0.0.1:<free port>; ``client_flags`` go with every CLI call."""

    def __init__(self, tmp: Path, *args: str, client_flags: Sequence[str] = ()) -> None:
        (self.port,) = free_ports(1)
        self.address = f"127.0.0.1:{self.port}"
        self.argv = [*HUBBLECTL, "relay", "--listen-address", self.address, *args]
        self.client_flags = tuple(client_flags)
        self.log = tmp / f"relay-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> RelayProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if "hubblectl relay ready" in self.log.read_text():
                return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"relay did not become ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return hubblectl(*args, "--server", self.address, *self.client_flags, check=check, timeout=timeout)

    @staticmethod
    def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Any ``hubblectl`` command, its failure returned rather than raised."""
        return hubblectl(*args, check=False, timeout=timeout)

    def flows(self, *args: str) -> list[dict[str, Any]]:
        """``observe -o json`` through the relay: the flow responses (node events go to stderr)."""
        out = self.cli("observe", "-o", "json", *args).stdout
        return [r for r in (json.loads(line) for line in out.splitlines() if line.strip()) if "flow" in r]

    def nodes(self) -> dict[str, dict[str, Any]]:
        """``list nodes -o json`` by node name."""
        return {n["name"]: n for n in json.loads(self.cli("list", "nodes", "-o", "json").stdout)}

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "-o", "json").stdout)  # type: ignore[no-any-return]

    def follow(self, *args: str) -> FollowStream:
        return FollowStream(["observe", "--follow", "-o", "json", "-D", "--server", self.address,
                             *self.client_flags, *args])


@dataclass(frozen=True, slots=True)
class Item:
    """One line of a follow stream: ``kind`` is ``flow``, ``node_status``, ``lost_events`` or
    ``text`` (anything else on stderr)."""

    kind: str
    data: dict[str, Any]
    text: str = ""

    @property
    def state(self) -> str:
        return str(self.data.get("node_status", {}).get("state_change", ""))

    @property
    def node_names(self) -> list[str]:
        return list(self.data.get("node_status", {}).get("node_names", []))

    @property
    def node_name(self) -> str:
        return str(self.data.get("flow", {}).get("node_name", ""))


class FollowStream:
    """A ``hubblectl observe --follow`` subprocess; its lines collected in arrival order."""

    def __init__(self, args: Sequence[str]) -> None:
        self.proc = subprocess.Popen([*HUBBLECTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.items: list[Item] = []
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            if isinstance(data, dict):
                kind = next((k for k in ("flow", "node_status", "lost_events") if k in data), "text")
                item = Item(kind, data, line)
            else:
                item = Item("text", {}, line)
            with self._cond:
                self.items.append(item)
                self._cond.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, what: str, predicate: Callable[[Item], bool], *, start: int = 0,
                 timeout: float = 30) -> int:
        """Index of the first item at or after ``start`` that matches (fails after ``timeout``
        or when the stream ends)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.items):
                    if predicate(self.items[i]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (not self.alive and not any(t.is_alive() for t in self._threads)):
                    texts = "\n".join(it.text for it in self.items[start:][-30:])
                    state = "running" if self.alive else f"exited {self.proc.returncode}"
                    raise AssertionError(f"follow stream ({state}): no {what} within {timeout:g}s; last lines:\n{texts}")
                self._cond.wait(min(left, 0.2))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
