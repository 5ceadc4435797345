"""Network policy end to end: a real agent, real endpoints, real traffic, the real CLI.

The Star Wars scenario: deathstar (org=empire, class=deathstar) admits TCP/80 from
org=empire only (examples/policies/sw_l3_l4_policy.yaml); tiefighter (org=empire) gets in,
xwing (org=alliance) is dropped, and flows, `policy trace` and `endpoint list` say so.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from policy_agent_harness import PolicyAgent

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SW_POLICY = REPO / "examples" / "policies" / "sw_l3_l4_policy.yaml"

# Port 80 of deathstar: "GET" gets an HTTP 200 and a close; anything else is echoed line by
# line for as long as the client keeps the connection.
SERVER_PY = r"""
import socket, threading
def handle(c):
    try:
        f = c.makefile("rwb")
        first = f.readline()
        if first.startswith(b"GET"):
            f.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"); f.flush(); return
        line = first
        while line:
            f.write(line); f.flush(); line = f.readline()
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 80)); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=handle, args=(c,), daemon=True).start()
"""

# One TCP connection, a line every 0.1 s, each echo acknowledged on stdout.
CLIENT_PY = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=20)
f = s.makefile("rwb")
n = 0
while True:
    n += 1
    f.write(b"ping %d\n" % n); f.flush()
    if f.readline() != b"ping %d\n" % n:
        print("error", n, flush=True); sys.exit(1)
    print("ok", n, flush=True)
    time.sleep(0.1)
"""


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def curl(agent: PolicyAgent, key: str, ip: str, *, direct: bool = True, timeout: float = 2) -> str:
    """The HTTP status deathstar answers (``000`` when the connection never completes);
    run with ``ip netns exec``, or through ``hubblectl endpoint exec`` (slower)."""
    cmd = (
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        str(timeout),
        f"http://{ip}/",
    )
    res = agent.run_in(key, *cmd) if direct else agent.exec(key, *cmd)
    return res.stdout.strip()


def _star_wars(agent: PolicyAgent) -> dict[str, dict[str, Any]]:
    eps = {
        "deathstar": agent.create("default/deathstar", "org=empire", "class=deathstar"),
        "tiefighter": agent.create("default/tiefighter", "org=empire", "class=tiefighter"),
        "xwing": agent.create("default/xwing", "org=alliance", "class=xwing"),
    }
    agent.popen_in(
        "default/deathstar",
        "python3",
        "-c",
        SERVER_PY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ip = eps["deathstar"]["ipv4"]
    wait_for("deathstar's server", lambda: curl(agent, "default/tiefighter", ip) == "200")
    return eps


def _flows(agent: PolicyAgent, *args: str) -> list[dict[str, Any]]:
    return [r["flow"] for r in agent.flows("--last", "1000", *args) if "flow" in r]


def test_star_wars_l3_l4(agent: PolicyAgent) -> None:
    eps = _star_wars(agent)
    ds_ip = eps["deathstar"]["ipv4"]
    assert curl(agent, "default/xwing", ds_ip) == "200"  # no policy yet: everything open
    table = agent.cli("endpoint", "list").stdout
    assert re.search(r"default/deathstar .* disabled +disabled", table)

    out = agent.cli("policy", "apply", "-f", str(SW_POLICY)).stdout
    assert "ciliumnetworkpolicy/default/rule1 created" in out

    assert curl(agent, "default/tiefighter", ds_ip, direct=False) == "200"
    assert curl(agent, "default/xwing", ds_ip, direct=False) == "000"
    assert curl(agent, "default/xwing", eps["deathstar"]["ipv6"].join("[]")) == "000"

    # endpoint list: deathstar enforces ingress only, the others nothing
    listed = {f"{e['namespace']}/{e['name']}": e for e in agent.endpoints()}
    assert (
        listed["default/deathstar"]["policy_enforcement_ingress"],
        listed["default/deathstar"]["policy_enforcement_egress"],
    ) == ("enabled", "disabled")
    assert listed["default/xwing"]["policy_enforcement_ingress"] == "disabled"
    table = agent.cli("endpoint", "list").stdout
    assert re.search(r"default/deathstar .* enabled +disabled", table)

    # policy list / get
    policies = json.loads(agent.cli("policy", "list", "-o", "json").stdout)
    assert [
        (p["namespace"], p["name"], p["kind"], p["endpoints"], p["revision"]) for p in policies
    ] == [("default", "rule1", "CiliumNetworkPolicy", ["default/deathstar"], "1")]
    assert re.search(
        r"default +rule1 +CiliumNetworkPolicy +1 +ingress +1", agent.cli("policy", "list").stdout
    )
    got = agent.cli("policy", "get", "default/rule1", "-o", "yaml").stdout
    import yaml

    assert yaml.safe_load(got) == yaml.safe_load(SW_POLICY.read_text())

    # flows: xwing dropped (drop + policy-verdict), tiefighter allowed by rule1
    def xwing_drops() -> list[dict[str, Any]]:
        return [
            f
            for f in _flows(agent, "--from-pod", "default/xwing", "--verdict", "DROPPED")
            if f.get("event_type", {}).get("type") == 1
        ]

    drops = wait_for("xwing's drop flows", xwing_drops)
    d = drops[-1]
    assert d["drop_reason_desc"] == "POLICY_DENIED" and d["drop_reason"] == 133
    assert d["destination"]["pod_name"] == "deathstar" and d["traffic_direction"] == "INGRESS"
    assert d["ingress_denied_by"][0]["name"] == "default deny"

    verdicts = _flows(agent, "--type", "policy-verdict")
    allowed = [v for v in verdicts if v["source"].get("pod_name") == "tiefighter"]
    assert allowed, verdicts
    v = allowed[-1]
    assert (
        v["verdict"] == "FORWARDED"
        and v["policy_match_type"] == 2
        and v["traffic_direction"] == "INGRESS"
    )
    by = v["ingress_allowed_by"][0]
    assert (by["name"], by["namespace"], by["kind"]) == ("rule1", "default", "CiliumNetworkPolicy")
    assert "k8s:io.cilium.k8s.policy.name=rule1" in by["labels"]
    denied = [v for v in verdicts if v["source"].get("pod_name") == "xwing"]
    assert (
        denied
        and denied[-1]["verdict"] == "DROPPED"
        and denied[-1].get("policy_match_type", 0) == 0
    )

    compact = agent.cli("observe", "--server", agent.server, "--last", "1000").stdout
    assert re.search(
        r"default/xwing:\d+ \(ID:\d+\) <> default/deathstar:80 \(ID:\d+\) Policy denied DROPPED",
        compact,
    )
    assert re.search(
        r"default/tiefighter:\d+ \(ID:\d+\) -> default/deathstar:80 \(ID:\d+\) policy-verdict:L3-L4 INGRESS ALLOWED",
        compact,
    )

    # policy trace agrees with the datapath, naming the deciding rule
    def trace(src: str) -> dict[str, Any]:
        res = agent.cli(
            "policy",
            "trace",
            "--from",
            src,
            "--to",
            "default/deathstar",
            "--dport",
            "80/tcp",
            "-o",
            "json",
        )
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    t = trace("default/tiefighter")
    assert (t["verdict"], t["match_type_text"], t["policy_name"]) == ("ALLOWED", "L3-L4", "rule1")
    assert t["decided_by"] == "default/rule1 (CiliumNetworkPolicy) spec.ingress[0]"
    t = trace("default/xwing")
    assert (t["verdict"], t["decided_by"]) == ("DENIED", "default deny")
    text = agent.cli(
        "policy",
        "trace",
        "--from",
        "default/xwing",
        "--to",
        "default/deathstar",
        "--dport",
        "80/tcp",
    ).stdout
    assert "Final verdict: DENIED (decided by default deny)" in text
    res = agent.cli(
        "policy",
        "trace",
        "--from",
        "default/tiefighter",
        "--to",
        "default/deathstar",
        "--dport",
        "443/tcp",
        "-o",
        "json",
    )
    assert json.loads(res.stdout)["verdict"] == "DENIED"
    assert curl(agent, "default/tiefighter", ds_ip) == "200"

    # delete: deathstar leaves enforcement, xwing gets in again
    agent.cli("policy", "delete", "default/rule1")
    assert json.loads(agent.cli("policy", "list", "-o", "json").stdout) == []
    assert curl(agent, "default/xwing", ds_ip) == "200"
    t = trace("default/xwing")
    assert (t["verdict"], t["decided_by"]) == ("ALLOWED", "no policy (not enforced)")


def test_malformed_policy_is_rejected_whole(agent: PolicyAgent, tmp_path: Path) -> None:
    eps = _star_wars(agent)
    agent.cli("policy", "apply", "-f", str(SW_POLICY))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: cilium.io/v2\n"
        "kind: CiliumNetworkPolicy\n"
        "metadata: {name: lock-xwing, namespace: default}\n"
        "spec:\n"
        "  endpointSelector: {matchLabels: {class: xwing}}\n"
        "  ingress: [{}]\n"
        "---\n"
        "apiVersion: cilium.io/v2\n"
        "kind: CiliumNetworkPolicy\n"
        "metadata: {name: rule1, namespace: default}\n"
        "spec:\n"
        "  endpointSelector: {matchLabels: {class: deathstar}}\n"
        "  ingress:\n"
        '    - toPorts: [{ports: [{port: "70000", protocol: TCP}]}]\n'
    )
    res = agent.cli("policy", "apply", "-f", str(bad), check=False)
    assert res.returncode != 0
    assert f"{bad}: document 2: spec.ingress[0].toPorts[0].ports[0].port:" in res.stderr
    # nothing applied: not the valid first document, not the change to rule1
    policies = json.loads(agent.cli("policy", "list", "-o", "json").stdout)
    assert [(p["name"], p["revision"]) for p in policies] == [("rule1", "1")]
    listed = {e["name"]: e for e in agent.endpoints()}
    assert listed["xwing"]["policy_enforcement_ingress"] == "disabled"
    ds_ip = eps["deathstar"]["ipv4"]
    assert curl(agent, "default/tiefighter", ds_ip) == "200"
    assert curl(agent, "default/xwing", ds_ip) == "000"
    missing = agent.cli("policy", "get", "default/lock-xwing", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
    # the same policy again, from stdin: nothing changes
    out = agent.cli("policy", "apply", "-f", "-", stdin=SW_POLICY.read_text()).stdout
    assert "ciliumnetworkpolicy/default/rule1 unchanged" in out


def test_endpoint_churn_is_enforced_from_the_start(agent: PolicyAgent) -> None:
    eps = _star_wars(agent)
    agent.cli("policy", "apply", "-f", str(SW_POLICY))
    # a new empire ship (a new identity) may land at once; a second deathstar is locked
    agent.create("default/shuttle", "org=empire", "class=shuttle")
    assert curl(agent, "default/shuttle", eps["deathstar"]["ipv4"]) == "200"
    ds2 = agent.create("default/deathstar2", "org=empire", "class=deathstar")
    assert (ds2["policy_enforcement_ingress"], ds2["policy_enforcement_egress"]) == (
        "enabled",
        "disabled",
    )
    agent.popen_in(
        "default/deathstar2",
        "python3",
        "-c",
        SERVER_PY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for("deathstar2's server", lambda: curl(agent, "default/tiefighter", ds2["ipv4"]) == "200")
    assert curl(agent, "default/xwing", ds2["ipv4"]) == "000"
    policies = json.loads(agent.cli("policy", "list", "-o", "json").stdout)
    assert policies[0]["endpoints"] == ["default/deathstar", "default/deathstar2"]
    agent.cli("endpoint", "delete", "default/deathstar2")
    policies = json.loads(agent.cli("policy", "list", "-o", "json").stdout)
    assert policies[0]["endpoints"] == ["default/deathstar"]


def _bpftool_state(agent: PolicyAgent) -> int:
    out = subprocess.run(
        ["bpftool", "map", "dump", "pinned", str(agent.bpf_root / "hb_policy_state"), "-j"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["formatted"]["value"]["generation"])


def test_sigkill_and_restart_keep_enforcement_and_connections(agent: PolicyAgent) -> None:
    eps = _star_wars(agent)
    ds_ip = eps["deathstar"]["ipv4"]
    agent.cli("policy", "apply", "-f", str(SW_POLICY))
    generation = _bpftool_state(agent)

    client = agent.popen_in(
        "default/tiefighter",
        "python3",
        "-u",
        "-c",
        CLIENT_PY,
        ds_ip,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert client.stdout is not None
    lines: list[str] = []

    def read_until(n: int) -> None:
        assert client.stdout is not None
        while len([x for x in lines if x.startswith("ok")]) < n:
            line = client.stdout.readline()
            assert line, f"client ended: {lines[-3:]}"
            lines.append(line.strip())
            assert not line.startswith("error"), lines[-3:]

    read_until(5)
    agent.kill()
    # the datapath neither opens nor closes without the agent
    assert curl(agent, "default/tiefighter", ds_ip) == "200"
    assert curl(agent, "default/xwing", ds_ip) == "000"
    read_until(15)  # the established connection keeps going

    agent.start()
    assert _bpftool_state(agent) == generation  # nothing rewritten on restart
    read_until(25)
    assert client.poll() is None
    assert curl(agent, "default/tiefighter", ds_ip) == "200"
    assert curl(agent, "default/xwing", ds_ip) == "000"
    # flows resume, the policy still named
    wait_for(
        "flows after the restart",
        lambda: [
            f
            for f in _flows(agent, "--type", "policy-verdict", "--from-pod", "default/tiefighter")
            if f.get("ingress_allowed_by", [{}])[0].get("name") == "rule1"
        ],
    )
    policies = json.loads(agent.cli("policy", "list", "-o", "json").stdout)
    assert [(p["name"], p["revision"]) for p in policies] == [("rule1", "1")]
    client.kill()
