"""The agent ingests through the native renderer: its flows, printed and stored, agree.

Under HUBBLECTL_REQUIRE_BPF=1 (CI) an agent that fell back to the Python path fails this
test (the fallback is logged as a warning); elsewhere the test still checks the flows.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from agent_harness import Agent

REQUIRE_BPF = os.environ.get("HUBBLECTL_REQUIRE_BPF") == "1"
UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_printed_and_stored_flows_agree(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent("--print-flows")
    a = agent.create("default/client", "app=client")
    b = agent.create("default/server", "app=server")
    agent.exec("default/client", "ping", "-c", "2", "-i", "0.2", "-W", "2", b["ipv4"])
    agent.exec("default/client", "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", b["ipv6"])
    time.sleep(0.5)
    stored = agent.flows("--last", "1000")
    log = agent.log.read_text()
    if REQUIRE_BPF:
        assert "ingest: Python path" not in log, log[-2000:]
    printed = [json.loads(line) for line in log.splitlines() if line.startswith('{"flow":')]
    flows = [r for r in stored if "flow" in r]
    # the log is read last: it may hold flows (neighbour discovery) the store had not yet
    assert flows and printed[: len(flows)] == flows

    by_ip: dict[str, Any] = {}
    for resp in flows:
        f = resp["flow"]
        assert UUID_V4.match(f["uuid"]), f["uuid"]
        assert resp["node_name"] == f["node_name"] and resp["time"] == f["time"]
        if "IP" in f and "source" in f:
            by_ip[f["IP"]["source"]] = f["source"]
    assert len({r["flow"]["uuid"] for r in flows}) == len(flows)
    # enrichment from endpoints created after the agent started (the tables were reloaded)
    for ep, pod in ((a, "client"), (b, "server")):
        for ip in (ep["ipv4"], ep["ipv6"]):
            assert by_ip[ip]["pod_name"] == pod, (ip, by_ip.get(ip))
            assert by_ip[ip]["namespace"] == "default"
    echo = [
        r["flow"] for r in flows
        if r["flow"].get("IP", {}).get("destination") == b["ipv4"] and "ICMPv4" in r["flow"].get("l4", {})
    ]  # fmt: skip
    assert echo and all(f["Summary"] == "ICMPv4 EchoRequest" for f in echo)
    assert all(f["interface"]["name"] for f in echo)
