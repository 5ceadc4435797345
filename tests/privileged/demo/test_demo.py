"""`hubblectl demo` end to end: the Star Wars flows on screen, then a clean teardown."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

HUBBLECTL = [sys.executable, "-m", "hubblectl.cli.main"]


def _netns(prefix: str) -> list[str]:
    run = Path("/var/run/netns")
    return sorted(p.name for p in run.iterdir() if p.name.startswith(prefix)) if run.is_dir() else []


def test_demo_shows_forwarded_and_dropped_then_cleans_up(privileged_env: None, bpf_build_dir: Path, tmp_path: Path) -> None:
    tag = "hbd" + secrets.token_hex(3)
    flags = [
        "--server", f"unix://{tmp_path}/demo.sock",
        "--state-dir", str(tmp_path / "state"),
        "--bpf-root", f"/sys/fs/bpf/{tag}",
        "--netns-prefix", f"{tag}-",
        "--agent-arg=--ipv4-range", "--agent-arg=10.251.77.0/24",
        "--agent-arg=--ipv6-range", "--agent-arg=fd00:251:77::/112",
    ]
    env = {**os.environ, "COLUMNS": "200"}
    try:
        res = subprocess.run([*HUBBLECTL, "demo", *flags], capture_output=True, text=True, timeout=240, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        out = res.stdout
        lines = out.splitlines()
        tie = [ln for ln in lines if "default/tiefighter" in ln and "default/deathstar" in ln]
        xwing = [ln for ln in lines if "default/xwing" in ln and "default/deathstar" in ln]
        assert any("to-endpoint FORWARDED" in ln for ln in tie), out
        assert any("policy-verdict:L3-L4 INGRESS ALLOWED" in ln and "rule1" in ln for ln in tie), out
        assert any("Policy denied DROPPED" in ln for ln in xwing), out
        assert not any("to-endpoint FORWARDED" in ln for ln in xwing), "the X-wing never reaches the deathstar"
        assert "landed" in out and "denied" in out
        assert "hubblectl demo --cleanup" in out
        assert len(_netns(f"{tag}-")) == 4

        # safe to run twice: the same endpoints are reused
        again = subprocess.run([*HUBBLECTL, "demo", *flags], capture_output=True, text=True, timeout=240, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(_netns(f"{tag}-")) == 4

        clean = subprocess.run([*HUBBLECTL, "demo", "--cleanup", *flags], capture_output=True, text=True, timeout=120)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert _netns(f"{tag}-") == []
        assert not (tmp_path / "demo.sock").exists(), "the demo's agent was stopped"
        assert not (tmp_path / "demo-agent.pid").exists()
        assert not Path(f"/sys/fs/bpf/{tag}").exists(), "the demo agent's pins are removed"
    finally:
        subprocess.run([*HUBBLECTL, "demo", "--cleanup", *flags], capture_output=True, timeout=120, check=False)
        for ns in _netns(f"{tag}-"):
            subprocess.run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(f"/sys/fs/bpf/{tag}", ignore_errors=True)
