"""A real ``hubblectl agent`` subprocess for the policy tests, and complete cleanup.

Each agent gets its own state dir, socket, pin root under /sys/fs/bpf, netns prefix and
pod ranges (10.<246..249>.<n>.0/24 and fd00:<246..249>:<n>::/112). ``close()`` removes
everything it may have made, whatever happened before: the endpoints (through the API if
the agent is alive), every netns with the prefix, every host veth recorded in the state
dir, the pin root, the state dir and the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HUBBLECTL = [sys.executable, "-m", "hubblectl.cli.main"]
NETNS_DIR = Path("/var/run/netns")


def run_hubblectl(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 60,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*HUBBLECTL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, **(env or {})},
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"hubblectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
    return res


class PolicyAgent:
    def __init__(self, tmp: Path, *, extra: tuple[str, ...] = ()) -> None:
        tag = "hbp" + secrets.token_hex(3)
        a = 246 + secrets.randbelow(4)
        b = secrets.randbelow(256)
        self.tag = tag
        self.state_dir = tmp / f"{tag}-state"
        self.socket = tmp / f"{tag}.sock"
        self.bpf_root = Path("/sys/fs/bpf") / tag
        self.netns_prefix = f"{tag}-"
        self.ipv4_range = f"10.{a}.{b}.0/24"
        self.ipv6_range = f"fd00:{a}:{b:x}::/112"
        self.server = f"unix://{self.socket}"
        self.env = {"HUBBLECTL_AGENT": self.server}
        self.log = tmp / f"{tag}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: list[subprocess.Popen[Any]] = []

    # -- process -----------------------------------------------------------
    def args(self) -> list[str]:
        return [
            "agent",
            "--node-name",
            self.tag,
            "--state-dir",
            str(self.state_dir),
            "--socket",
            str(self.socket),
            "--bpf-root",
            str(self.bpf_root),
            "--netns-prefix",
            self.netns_prefix,
            "--ipv4-range",
            self.ipv4_range,
            "--ipv6-range",
            self.ipv6_range,
            *self.extra,
        ]

    def start(self, timeout: float = 30) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*HUBBLECTL, *self.args()], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.proc.returncode}:\n{self.log.read_text()}"
                )
            if self.socket.exists():
                res = run_hubblectl(
                    "endpoint", "list", "-o", "json", env=self.env, check=False, timeout=10
                )
                if res.returncode == 0:
                    return
            time.sleep(0.1)
        raise AssertionError(f"agent did not become ready:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=15)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- CLI -----------------------------------------------------------------
    def cli(
        self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_hubblectl(*args, env=self.env, check=check, timeout=timeout, stdin=stdin)

    def create(self, key: str, *labels: str) -> dict[str, Any]:
        args = ["endpoint", "create", key, "-o", "json"]
        for lbl in labels:
            args += ["-l", lbl]
        return json.loads(self.cli(*args).stdout)  # type: ignore[no-any-return]

    def endpoints(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("endpoint", "list", "-o", "json").stdout)  # type: ignore[no-any-return]

    def exec(
        self, key: str, *cmd: str, check: bool = False, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return self.cli("endpoint", "exec", key, "--", *cmd, check=check, timeout=timeout)

    def netns_of(self, key: str) -> str:
        state = json.loads((self.state_dir / "endpoints.json").read_text())
        for ep in state["endpoints"]:
            if f"{ep['namespace']}/{ep['name']}" == key:
                return str(ep["netns"])
        raise KeyError(key)

    def popen_in(self, key: str, *cmd: str, **kw: Any) -> subprocess.Popen[Any]:
        """A long-running process inside the endpoint's netns (killed by close())."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns_of(key), *cmd], **kw)
        self.children.append(proc)
        return proc

    def run_in(self, key: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run in the endpoint's netns directly (works while the agent is down)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns_of(key), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def flows(self, *args: str) -> list[dict[str, Any]]:
        out = self.cli("observe", "--server", self.server, "-o", "json", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    # -- cleanup ---------------------------------------------------------------
    def _recorded_ifnames(self) -> list[str]:
        try:
            state = json.loads((self.state_dir / "endpoints.json").read_text())
        except (OSError, ValueError):
            return []
        return [
            str(ep.get("host_ifname", ""))
            for ep in state.get("endpoints", [])
            if ep.get("host_ifname")
        ]

    def close(self) -> None:
        for child in self.children:
            with contextlib.suppress(Exception):
                child.kill()
                child.wait(timeout=5)
        try:
            if self.alive:
                for ep in self.endpoints():
                    self.cli("endpoint", "delete", f"{ep['namespace']}/{ep['name']}", check=False)
        except Exception:
            pass
        finally:
            self.stop()
            ifnames = self._recorded_ifnames()
            if NETNS_DIR.is_dir():
                for ns in NETNS_DIR.iterdir():
                    if ns.name.startswith(self.netns_prefix):
                        subprocess.run(
                            ["ip", "netns", "delete", ns.name], check=False, capture_output=True
                        )
            for name in ifnames:
                if Path(f"/sys/class/net/{name}").exists():
                    subprocess.run(["ip", "link", "delete", name], check=False, capture_output=True)
            shutil.rmtree(self.bpf_root, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
        leftovers = (
            [n.name for n in NETNS_DIR.iterdir() if n.name.startswith(self.netns_prefix)]
            if NETNS_DIR.is_dir()
            else []
        )
        assert not leftovers, f"netns left behind: {leftovers}"
        assert not self.bpf_root.exists(), f"{self.bpf_root} left behind"
