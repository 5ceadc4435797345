"""Datapath cost: iperf3 TCP throughput between two endpoints with the agent's programs
attached, as a ratio to the same veths with the programs detached, in one run.

Method: start a private agent (own state dir, socket, pins, netns prefix, pod range), create
two endpoints, run iperf3 (-t SECONDS, one stream) client -> server four rounds alternating
"attached" and "bare" (tc filters removed with `tc filter del`, re-attached by restarting
the agent, which replaces filters in place), and report the median of each and the ratio.
Aggregation: the agent's default (medium). Measured twice: with no policy, and with an L3/L4
policy selecting the server (every packet then takes the ipcache and policy-map lookups).
Needs root, iperf3 and bpf/build/datapath.o.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HUBBLECTL = [sys.executable, "-m", "hubblectl.cli.main"]


class _Agent:
    def __init__(self, tmp: Path, extra: tuple[str, ...] = ()) -> None:
        self.tag = "hbb" + secrets.token_hex(3)
        self.sock = tmp / f"{self.tag}.sock"
        self.args = [
            "agent", "--node-name", self.tag, "--state-dir", str(tmp / "state"), "--socket", str(self.sock),
            "--bpf-root", f"/sys/fs/bpf/{self.tag}", "--netns-prefix", f"{self.tag}-",
            "--ipv4-range", "10.254.9.0/24", "--ipv6-range", "fd00:254:9::/112", *extra,
        ]
        self.env = {**os.environ, "HUBBLECTL_AGENT": f"unix://{self.sock}"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([*HUBBLECTL, *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.sock.exists() and self.cli("status", "--server", f"unix://{self.sock}", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("agent did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HUBBLECTL, *args], capture_output=True, text=True, env=self.env, check=check)


def _iperf(netns_c: str, netns_s: str, ip: str, seconds: int) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", netns_s, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", netns_c, "iperf3", "-c", ip, "-t", str(seconds), "-J"],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        srv.wait(timeout=10)
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def _detach(ifname: str) -> None:
    for direction in ("ingress", "egress"):
        subprocess.run(["tc", "filter", "del", "dev", ifname, direction], check=False, capture_output=True)


POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts: [{ports: [{port: "5201", protocol: TCP}]}]
"""


def _prog_stats() -> dict[int, tuple[int, int]]:
    """(run_time_ns, run_cnt) of every loaded hb_from_endpoint / hb_to_endpoint program, by id
    (kernel accounting: counted only while kernel.bpf_stats_enabled is 1)."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=True, capture_output=True, text=True)
    return {
        p["id"]: (int(p.get("run_time_ns", 0)), int(p.get("run_cnt", 0)))
        for p in json.loads(out.stdout)
        if p.get("name") in ("hb_from_endpoint", "hb_to_endpoint")
    }


@contextlib.contextmanager
def _bpf_stats() -> Iterator[None]:
    """Turn on the kernel's per-program run-time accounting (it costs ~20 ns per run, so the
    Gbit/s ratio is measured with it on too, for both sides alike)."""
    path = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = path.read_text().strip()
    path.write_text("1")
    try:
        yield
    finally:
        path.write_text(old)


def run(quick: bool = False) -> dict[str, Any]:
    """Default aggregation without policy, then with an L3/L4 policy in force on the server."""
    return {**measure(quick, label="default"), **measure(quick, label="policy", policy=True)}


def measure(quick: bool = False, extra: tuple[str, ...] = (), label: str = "default", policy: bool = False) -> dict[str, Any]:
    seconds = 3
    rounds = 1 if quick else 6
    tmp = Path(tempfile.mkdtemp(prefix="hbbench-"))
    agent = _Agent(tmp, extra)
    try:
        agent.start()
        c = json.loads(agent.cli("endpoint", "create", "default/client", "-l", "app=client", "-o", "json").stdout)
        s = json.loads(agent.cli("endpoint", "create", "default/server", "-l", "app=server", "-o", "json").stdout)
        if policy:
            pol = tmp / "policy.yaml"
            pol.write_text(POLICY)
            agent.cli("policy", "apply", "-f", str(pol))
        attached: list[float] = []
        bare: list[float] = []
        run_ns = runs = 0
        with _bpf_stats():
            for _ in range(rounds):
                before = _prog_stats()
                attached.append(_iperf(c["netns"], s["netns"], s["ipv4"], seconds))
                after = _prog_stats()
                for prog, (prog_ns, cnt) in after.items():
                    ns0, cnt0 = before.get(prog, (0, 0))
                    run_ns += prog_ns - ns0
                    runs += cnt - cnt0
                agent.stop()
                _detach(c["interface_name"])
                _detach(s["interface_name"])
                bare.append(_iperf(c["netns"], s["netns"], s["ipv4"], seconds))
                agent.start()  # restores the endpoints and re-attaches the programs
        a, b = statistics.median(attached), statistics.median(bare)
        return {
            f"datapath_{label}_gbps_attached": round(a, 2),
            f"datapath_{label}_gbps_bare": round(b, 2),
            f"datapath_{label}_ratio": round(a / b, 3),
            f"datapath_{label}_ratios_per_round": [round(x / y, 3) for x, y in zip(attached, bare, strict=True)],
            f"datapath_{label}_ns_per_packet": round(run_ns / runs) if runs else None,
            f"datapath_{label}_packets_per_s": round(runs / (rounds * seconds)),
        }
    finally:
        try:
            for key in ("default/client", "default/server"):
                agent.cli("endpoint", "delete", key, check=False)
        finally:
            agent.stop()
            shutil.rmtree(f"/sys/fs/bpf/{agent.tag}", ignore_errors=True)
            for ns in os.listdir("/var/run/netns") if os.path.isdir("/var/run/netns") else []:
                if ns.startswith(agent.tag):
                    subprocess.run(["ip", "netns", "delete", ns], check=False)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    for k, v in run("--quick" in sys.argv).items():
        print(f"{k:40} {v}")
