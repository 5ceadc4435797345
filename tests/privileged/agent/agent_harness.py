"""Run a real `hubblectl agent` for privileged tests, and clean up everything it made.

Each agent gets its own state dir, socket, bpffs pin root, netns prefix and pod ranges, so
tests never touch a user's agent or each other. `close()` deletes the endpoints through the
API, stops the agent, then removes any leftover netns with the prefix, the pin root and the
state dir, whatever happened before.
"""

from __future__ import annotations

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


def hubblectl(*args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None,
              user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*HUBBLECTL, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    if check and res.returncode != 0:
        raise AssertionError(f"hubblectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


class Agent:
    def __init__(self, tmp: Path, *, subnet: int | None = None, extra: tuple[str, ...] = ()) -> None:
        tag = "hbt" + secrets.token_hex(3)
        n = subnet if subnet is not None else 200 + secrets.randbelow(50)
        self.tag = tag
        self.state_dir = tmp / f"{tag}-state"
        self.socket = tmp / f"{tag}.sock"
        self.bpf_root = Path("/sys/fs/bpf") / tag
        self.netns_prefix = f"{tag}-"
        self.ipv4_range = f"10.252.{n}.0/24"
        self.ipv6_range = f"fd00:252:{n}::/112"
        self.extra = extra
        self.server = f"unix://{self.socket}"
        self.log = tmp / f"{tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        return [
            "agent",
            "--node-name", self.tag,
            "--state-dir", str(self.state_dir),
            "--socket", str(self.socket),
            "--bpf-root", str(self.bpf_root),
            "--netns-prefix", self.netns_prefix,
            "--ipv4-range", self.ipv4_range,
            "--ipv6-range", self.ipv6_range,
            *self.extra,
        ]

    def start(self, timeout: float = 20) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*HUBBLECTL, *self.args()], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if self.socket.exists():
                res = hubblectl("status", "--server", self.server, check=False, timeout=10)
                if res.returncode == 0:
                    return
            time.sleep(0.1)
        raise AssertionError(f"agent did not become ready:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- CLI helpers -------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return hubblectl(*args, check=check, timeout=timeout, env={"HUBBLECTL_AGENT": self.server})

    def create(self, key: str, *labels: str) -> dict[str, Any]:
        args = ["endpoint", "create", key, "-o", "json"]
        for lbl in labels:
            args += ["--label", lbl]
        return json.loads(self.cli(*args).stdout)  # type: ignore[no-any-return]

    def endpoints(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("endpoint", "list", "-o", "json").stdout)  # type: ignore[no-any-return]

    def exec(self, key: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.cli("endpoint", "exec", key, "--", *cmd, check=check, timeout=timeout)

    def popen_in(self, key: str, *cmd: str) -> subprocess.Popen[bytes]:
        ep = next(e for e in self.endpoints() if f"{e['namespace']}/{e['name']}" == key)
        return subprocess.Popen(["ip", "netns", "exec", ep["netns"], *cmd],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def flows(self, *args: str) -> list[dict[str, Any]]:
        out = self.cli("observe", "--server", self.server, "-o", "json", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    # --- cleanup -----------------------------------------------------------------------

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                for ep in self.endpoints():
                    self.cli("endpoint", "delete", f"{ep['namespace']}/{ep['name']}", check=False)
        except Exception:
            pass
        finally:
            self.stop()
            sweep(self.netns_prefix)
            shutil.rmtree(self.bpf_root, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)


def sweep(netns_prefix: str) -> None:
    """Delete every netns with the prefix (their veths go with them)."""
    run_dir = Path("/var/run/netns")
    if not run_dir.is_dir():
        return
    for ns in run_dir.iterdir():
        if ns.name.startswith(netns_prefix):
            subprocess.run(["ip", "netns", "delete", ns.name], check=False, capture_output=True)
