"""`hubblectl observe` against a running agent with real traffic: filters, --not, jq, compact,
and --input-file giving the same output as the live agent for the same flows."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from agent_harness import Agent


@pytest.fixture()
def traffic(agent: Agent) -> tuple[Agent, dict[str, Any], dict[str, Any], dict[str, Any]]:
    a = agent.create("default/alpha", "app=alpha")
    b = agent.create("default/bravo", "app=bravo")
    c = agent.create("other/charlie", "app=charlie")
    agent.exec("default/alpha", "ping", "-c", "2", "-i", "0.2", "-W", "2", b["ipv4"])
    agent.exec("other/charlie", "ping", "-c", "1", "-W", "2", a["ipv4"])
    agent.exec("default/bravo", "ping", "-6", "-c", "1", "-W", "2", c["ipv6"])
    time.sleep(0.3)
    return agent, a, b, c


def _lines(agent: Agent, *args: str) -> list[dict[str, Any]]:
    return [r["flow"] for r in agent.flows("--all", *args) if "flow" in r]


def test_filters_narrow_and_not_negates(traffic: tuple[Agent, dict[str, Any], dict[str, Any], dict[str, Any]]) -> None:
    agent, a, b, _c = traffic
    everything = _lines(agent)
    from_alpha = _lines(agent, "--from-pod", "default/alpha")
    assert from_alpha and all(f["source"]["pod_name"] == "alpha" for f in from_alpha)
    assert len(from_alpha) < len(everything)
    to_other = _lines(agent, "--to-namespace", "other")
    assert to_other and all(f["destination"]["namespace"] == "other" for f in to_other)
    not_default = _lines(agent, "--not", "--namespace", "default")
    assert all("default" not in (f.get("source", {}).get("namespace"), f.get("destination", {}).get("namespace"))
               for f in not_default)
    v6 = _lines(agent, "-6")
    assert v6 and all(f["IP"]["ipVersion"] == "IPv6" for f in v6)
    labelled = _lines(agent, "--from-label", "app=charlie", "--protocol", "icmp")
    assert labelled and all(f["source"]["pod_name"] == "charlie" for f in labelled)
    assert {next(iter(f["l4"])) for f in labelled} == {"ICMPv4", "ICMPv6"}  # icmp = both families
    replies = _lines(agent, "--from-ip", b["ipv4"], "--to-ip", a["ipv4"])
    assert replies and all(f["is_reply"] is True for f in replies)
    egress = _lines(agent, "--traffic-direction", "egress", "--from-pod", "default/alpha")
    assert egress and all(f["traffic_direction"] == "EGRESS" for f in egress)
    assert _lines(agent, "--from-pod", "default/nobody") == []
    trace_to = _lines(agent, "--type", "trace:to-endpoint")
    assert trace_to and all(f["trace_observation_point"] == "TO_ENDPOINT" for f in trace_to)


def test_json_output_works_with_jq(traffic: tuple[Agent, dict[str, Any], dict[str, Any], dict[str, Any]]) -> None:
    agent, _a, b, _c = traffic
    cmd = ["python3", "-m", "hubblectl.cli.main", "observe", "--server", agent.server, "--all", "-o", "json",
           "--from-pod", "default/alpha", "--protocol", "icmp"]
    producer = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    out = subprocess.run(["jq", "-r", ".flow.IP.destination"], stdin=producer.stdout, capture_output=True,
                         text=True, check=True).stdout
    assert producer.wait() == 0
    # alpha pinged bravo, and answered charlie's ping
    assert set(out.split()) == {b["ipv4"], _c["ipv4"]}


def test_compact_output_and_input_file_match_live(
    traffic: tuple[Agent, dict[str, Any], dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    agent, _a, _b, _c = traffic
    # Background traffic (IPv6 multicast listener reports) keeps arriving: compare a closed
    # window that ends after the fixture's traffic: at the next whole second (--until takes
    # whole seconds here).
    time.sleep(1.02 - time.time() % 1)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))
    saved = tmp_path / "flows.json"
    saved.write_text(agent.cli("observe", "--server", agent.server, "--all", "--until", until, "-o", "json").stdout)
    assert saved.read_text().count("\n") > 5
    for args in (["--last", "5"], ["--from-pod", "default/alpha", "--all"], ["--not", "--protocol", "icmp", "--all"]):
        live = agent.cli("observe", "--server", agent.server, "-o", "compact", "--color", "never",
                         "--until", until, *args).stdout
        offline = agent.cli("observe", "--input-file", str(saved), "-o", "compact", "--color", "never",
                            "--until", until, *args).stdout
        assert live == offline, args
    compact = agent.cli("observe", "--server", agent.server, "--all", "--color", "never",
                        "--from-pod", "default/alpha").stdout
    assert "default/alpha (ID:" in compact and "-> default/bravo (ID:" in compact
    assert "from-endpoint FORWARDED (ICMPv4 EchoRequest)" in compact
