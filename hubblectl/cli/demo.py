"""`hubblectl demo`: the Star Wars scenario end to end, in one command.

Starts an agent (or uses the one already answering on the socket), creates the deathstar,
tiefighter and xwing endpoints, applies the L3/L4 policy that lets only org=empire land on
the deathstar over 80/TCP, runs landing requests from both ships against a small HTTP
server in each deathstar, and prints the flows as `hubblectl observe` would. Safe to run
twice (what exists is reused); Ctrl-C cleans up what this run created;
`hubblectl demo --cleanup` removes everything the demo made, including an agent it started.

The demo drives the same commands a user types (`hubblectl endpoint ...`, `hubblectl policy
...`, `hubblectl observe ...`) as subprocesses, so what it shows is what they show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from hubblectl.errors import HubblectlError, UsageError

DEFAULT_SOCKET = "/var/run/hubblectl/hubble.sock"
DEFAULT_BPF_ROOT = Path("/sys/fs/bpf/hubblectl")
AGENT_LOG = Path("/var/log/hubblectl-demo-agent.log")
POLICY_FILE = Path(__file__).resolve().parents[2] / "examples" / "policies" / "sw_l3_l4_policy.yaml"

SHIPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default/deathstar-1", ("org=empire", "class=deathstar")),
    ("default/deathstar-2", ("org=empire", "class=deathstar")),
    ("default/tiefighter", ("org=empire", "class=tiefighter")),
    ("default/xwing", ("org=alliance", "class=xwing")),
)
DEATHSTARS = ("default/deathstar-1", "default/deathstar-2")

# A landing pad: answers POST /v1/request-landing with "Ship landed", like the Cilium demo.
LANDING_SERVER = r"""
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def _ok(self, body):
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self._ok(b"Ship landed\n" if self.path == "/v1/request-landing" else b"Nope\n")
    def do_GET(self):
        self._ok(b"Death Star: fully operational\n")
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
S(("0.0.0.0", 80), H).serve_forever()
"""


class Demo:
    def __init__(self, console: Console, server: str, agent_args: Sequence[str] = ()) -> None:
        self.console = console
        self.server = server
        self.agent_args = list(agent_args)
        args = self.agent_args
        self.bpf_root = Path(args[args.index("--bpf-root") + 1]) if "--bpf-root" in args else DEFAULT_BPF_ROOT
        # pid files live beside the agent's socket, so demos on different sockets never mix
        self.run_dir = Path(server.removeprefix("unix://")).parent
        self.agent_pid = self.run_dir / "demo-agent.pid"
        self.servers_pid = self.run_dir / "demo-servers.pid"
        self.env = {**os.environ, "HUBBLECTL_AGENT": server}

    # --- plumbing ---------------------------------------------------------------------

    def hubblectl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "hubblectl.cli.main", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise HubblectlError(f"`hubblectl {' '.join(args)}` failed: {res.stderr.strip() or res.stdout.strip()}")
        return res

    def agent_ready(self) -> bool:
        res = self.hubblectl("status", "--server", self.server, check=False, timeout=20)
        return res.returncode == 0

    def ensure_agent(self) -> bool:
        """Use the running agent or start one in the background. True if we started it."""
        if self.agent_ready():
            return False
        self.run_dir.mkdir(parents=True, exist_ok=True)
        AGENT_LOG.parent.mkdir(parents=True, exist_ok=True)
        with open(AGENT_LOG, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "hubblectl.cli.main", "agent",
                    "--socket", self.server.removeprefix("unix://"), *self.agent_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.agent_pid.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise HubblectlError(f"the agent exited ({proc.returncode}); see {AGENT_LOG}:\n{_tail(AGENT_LOG)}")
            if self.agent_ready():
                return True
            time.sleep(0.2)
        raise HubblectlError(f"the agent did not become ready in 30s; see {AGENT_LOG}")

    def endpoints(self) -> dict[str, dict[str, Any]]:
        out = self.hubblectl("endpoint", "list", "-o", "json").stdout
        return {f"{e['namespace']}/{e['name']}": e for e in json.loads(out)}

    def ensure_endpoints(self) -> dict[str, dict[str, Any]]:
        have = self.endpoints()
        for key, labels in SHIPS:
            if key in have:
                continue
            args = ["endpoint", "create", key, "-o", "json"]
            for label in labels:
                args += ["--label", label]
            ep = json.loads(self.hubblectl(*args).stdout)
            have[key] = ep
        return have

    def start_servers(self, eps: dict[str, dict[str, Any]]) -> None:
        self.stop_servers()
        pids = []
        for key in DEATHSTARS:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", eps[key]["netns"], sys.executable, "-c", LANDING_SERVER],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            pids.append(proc.pid)
        self.servers_pid.write_text("".join(f"{p}\n" for p in pids))
        # wait until both listen
        deadline = time.monotonic() + 10
        for key in DEATHSTARS:
            while time.monotonic() < deadline:
                out = subprocess.run(
                    ["ip", "netns", "exec", eps[key]["netns"], "ss", "-H", "-ltn", "sport = :80"],
                    capture_output=True,
                    text=True,
                ).stdout
                if out.strip():
                    break
                time.sleep(0.05)

    def stop_servers(self) -> None:
        for pid in _read_pids(self.servers_pid):
            _kill(pid)
        self.servers_pid.unlink(missing_ok=True)

    def land(self, ship: str, target_ip: str) -> tuple[bool, str]:
        res = self.hubblectl(
            "endpoint", "exec", ship, "--",
            "curl", "-s", "--max-time", "3", "-XPOST", f"http://{target_ip}/v1/request-landing",
            check=False, timeout=30,
        )
        return res.returncode == 0, (res.stdout.strip() or "no answer (timed out)")

    # --- the story ----------------------------------------------------------------------

    def run(self) -> None:
        c = self.console
        started = False
        t0 = time.time()
        try:
            with c.status("Starting the agent...") as status:
                started = self.ensure_agent()
                c.print(f"[green]✓[/] agent {'started' if started else 'already running'} on {self.server}")
                status.update("Creating endpoints: deathstar-1, deathstar-2, tiefighter, xwing...")
                eps = self.ensure_endpoints()
                for key, _labels in SHIPS:
                    ep = eps[key]
                    c.print(f"[green]✓[/] endpoint {key:<20} {ep['ipv4']:<14} identity {ep['identity']}")
                status.update("Applying the L3/L4 policy (only org=empire may land, on 80/TCP)...")
                self.hubblectl("policy", "apply", "-f", str(POLICY_FILE))
                c.print(f"[green]✓[/] policy default/rule1 applied ({POLICY_FILE.name})")
                status.update("Starting landing pads in the deathstars...")
                self.start_servers(eps)
                c.print("[green]✓[/] HTTP servers listening on :80 in deathstar-1 and deathstar-2")
                status.update("Sending ships...")
                results = []
                for ship in ("default/tiefighter", "default/xwing"):
                    for target in DEATHSTARS:
                        ok, answer = self.land(ship, eps[target]["ipv4"])
                        results.append((ship, target, ok, answer))
                time.sleep(0.3)
            c.print()
            for ship, target, ok, answer in results:
                mark = "[green]landed[/]" if ok else "[red]denied[/]"
                c.print(f"  {ship.split('/')[1]:<10} -> {target.split('/')[1]:<12} {mark}  ({answer})")
            c.print()
            c.rule("[bold]Flows to the deathstars, as `hubblectl observe` shows them")
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 1))
            flows = self.hubblectl(
                "observe", "--server", self.server, "--since", since, "--to-label", "class=deathstar",
                "--protocol", "tcp", "--color", "always" if c.is_terminal else "never",
                "--print-policy-names", "--last", "1000", check=False,
            )
            sys.stdout.write(flows.stdout)
            if flows.returncode != 0:
                c.print(f"[red]{flows.stderr.strip()}")
            c.rule()
            c.print(
                "\nThe TIE fighter's connections are [green]FORWARDED[/] with a policy verdict naming rule1;"
                " the X-wing's SYNs are [red]Policy denied DROPPED[/].\n\n"
                "Keep exploring:\n"
                "  hubblectl observe --follow                      # every flow as it happens\n"
                "  hubblectl observe --verdict DROPPED -o json | jq .flow.drop_reason_desc\n"
                "  hubblectl observe -t policy-verdict --print-policy-names\n"
                "  hubblectl policy trace --from default/xwing --to default/deathstar-1 --dport 80/tcp\n"
                "  hubblectl endpoint exec default/tiefighter -- curl -s -XPOST "
                f"http://{eps['default/deathstar-1']['ipv4']}/v1/request-landing\n"
                "  hubblectl endpoint list; hubblectl status\n\n"
                "Tear it down:  hubblectl demo --cleanup",
                soft_wrap=True,
            )
        except KeyboardInterrupt:
            c.print("\n[yellow]Interrupted: cleaning up what the demo made...")
            self.cleanup(stop_agent=started)
            raise

    def cleanup(self, stop_agent: bool = True) -> None:
        c = self.console
        self.stop_servers()
        if self.agent_ready():
            self.hubblectl("policy", "delete", "default/rule1", check=False)
            for key, _ in SHIPS:
                res = self.hubblectl("endpoint", "delete", key, check=False)
                if res.returncode == 0:
                    c.print(f"[green]✓[/] endpoint {key} deleted")
        if stop_agent:
            pids = _read_pids(self.agent_pid)
            for pid in pids:
                _kill(pid, wait=10)
                c.print(f"[green]✓[/] demo agent (pid {pid}) stopped")
            self.agent_pid.unlink(missing_ok=True)
            if pids:
                # The agent was the demo's: its pinned maps go too (nothing uses them now).
                shutil.rmtree(self.bpf_root, ignore_errors=True)
        c.print("demo cleaned up")


def _tail(path: Path, n: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split() if x.isdigit()]
    except OSError:
        return []


def _kill(pid: int, wait: float = 2) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@click.command()
@click.option("--cleanup", is_flag=True, help="Remove everything the demo made (and stop an agent it started).")
@click.option("--server", default=f"unix://{DEFAULT_SOCKET}", show_default=True, help="The agent's socket.")
@click.option("--state-dir", default=None, help="State dir for an agent the demo starts.")
@click.option("--bpf-root", default=None, help="bpffs pin root for an agent the demo starts.")
@click.option("--netns-prefix", default=None, help="Netns prefix for an agent the demo starts.")
@click.option("--agent-arg", "agent_extra", multiple=True, hidden=True, help="Extra flag for an agent the demo starts.")
def demo(
    cleanup: bool,
    server: str,
    state_dir: str | None,
    bpf_root: str | None,
    netns_prefix: str | None,
    agent_extra: tuple[str, ...],
) -> None:
    """The Star Wars demo: endpoints, an L3/L4 policy, traffic, and the flows it makes.

    Only the Empire may land on the Death Star: tiefighter (org=empire) reaches deathstar
    on 80/TCP, xwing (org=alliance) is dropped by policy. Run as root.
    """
    if os.geteuid() != 0:
        raise UsageError("hubblectl demo needs root (it starts the agent and creates network namespaces)")
    console = Console(highlight=False)
    agent_args: list[str] = []
    for flag, value in (("--state-dir", state_dir), ("--bpf-root", bpf_root), ("--netns-prefix", netns_prefix)):
        if value:
            agent_args += [flag, value]
    agent_args += agent_extra
    d = Demo(console, server, agent_args)
    if cleanup:
        d.cleanup()
        return
    d.run()


def demo_main(argv: Sequence[str]) -> None:  # pragma: no cover - convenience for `python -m`
    demo.main(args=list(argv))
