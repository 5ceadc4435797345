"""The node agent end to end: real endpoints, real traffic, flows read back through the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from agent_harness import Agent

SERVER_PY = r"""
import socket, sys, threading
proto, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6
if proto == "tcp":
    s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(16)
    while True:
        c, _ = s.accept(); d = c.recv(65536); c.sendall(b"pong:" + d); c.close()
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind(("::", port))
    while True:
        d, a = s.recvfrom(65536); s.sendto(b"pong:" + d, a)
"""

CLIENT_PY = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if proto == "tcp":
    s = socket.create_connection((host, port), timeout=5); s.sendall(b"ping"); print(s.recv(100).decode()); s.close()
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5); s.sendto(b"ping", (host, port)); print(s.recvfrom(100)[0].decode())
"""


def _wait_port(agent: Agent, key: str, proto: str, port: int) -> None:
    flag = "-ltn" if proto == "tcp" else "-lun"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = agent.exec(key, "ss", "-H", flag, check=False).stdout
        if f":{port} " in out:
            return
        time.sleep(0.05)
    raise AssertionError(f"{proto}/{port} never listened in {key}")


def _flows_between(flows: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    out = []
    for resp in flows:
        f = resp.get("flow")
        if not f or "IP" not in f:
            continue
        ips = {f["IP"]["source"], f["IP"]["destination"]}
        if ips == {a, b}:
            out.append(f)
    return out


@pytest.fixture()
def pair(agent: Agent) -> tuple[Agent, dict[str, Any], dict[str, Any]]:
    a = agent.create("default/client", "app=client", "tier=front")
    b = agent.create("default/server", "app=server")
    return agent, a, b


def test_ping_ipv4_and_ipv6_yield_request_and_reply_flows(pair: tuple[Agent, dict[str, Any], dict[str, Any]]) -> None:
    agent, a, b = pair
    agent.exec("default/client", "ping", "-c", "1", "-W", "2", b["ipv4"])
    agent.exec("default/client", "ping", "-6", "-c", "1", "-W", "2", b["ipv6"])
    time.sleep(0.3)
    flows = agent.flows("--last", "1000")
    for ver, src, dst, l4, req, rep in (
        ("IPv4", a["ipv4"], b["ipv4"], "ICMPv4", 8, 0),
        ("IPv6", a["ipv6"], b["ipv6"], "ICMPv6", 128, 129),
    ):
        fl = _flows_between(flows, src, dst)
        requests = [f for f in fl if f["l4"][l4].get("type", 0) == req]
        replies = [f for f in fl if f["l4"][l4].get("type", 0) == rep]
        assert {f["trace_observation_point"] for f in requests} == {"FROM_ENDPOINT", "TO_ENDPOINT"}, fl
        assert all(f["IP"]["ipVersion"] == ver and f["IP"]["source"] == src for f in requests)
        assert all(f["is_reply"] is False for f in requests)
        assert replies and all(f["is_reply"] is True and f["IP"]["source"] == dst for f in replies)
        # direction is from the endpoint's point of view: the request leaves the client (EGRESS)
        egress = [f for f in requests if f["trace_observation_point"] == "FROM_ENDPOINT"]
        assert egress[0]["traffic_direction"] == "EGRESS"
        ingress = [f for f in requests if f["trace_observation_point"] == "TO_ENDPOINT"]
        assert ingress[0]["traffic_direction"] == "INGRESS"
        src_ep = requests[0]["source"]
        assert src_ep["pod_name"] == "client" and src_ep["namespace"] == "default"
        assert src_ep["identity"] == a["identity"] and src_ep["ID"] == a["id"]
        assert "k8s:app=client" in src_ep["labels"]
        assert "k8s:io.kubernetes.pod.namespace=default" in src_ep["labels"]
        assert requests[0]["destination"]["identity"] == b["identity"]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_tcp_connection_flag_sequence_and_udp(pair: tuple[Agent, dict[str, Any], dict[str, Any]], family: str) -> None:
    agent, a, b = pair
    servers = [agent.popen_in("default/server", "python3", "-c", SERVER_PY, p, "8080") for p in ("tcp", "udp")]
    try:
        _wait_port(agent, "default/server", "tcp", 8080)
        _wait_port(agent, "default/server", "udp", 8080)
        out = agent.exec("default/client", "python3", "-c", CLIENT_PY, "tcp", b[family], "8080").stdout
        assert out.strip() == "pong:ping"
        out = agent.exec("default/client", "python3", "-c", CLIENT_PY, "udp", b[family], "8080").stdout
        assert out.strip() == "pong:ping"
        time.sleep(0.3)
    finally:
        for s in servers:
            s.kill()
            s.wait()
    flows = _flows_between(agent.flows("--last", "1000"), a[family], b[family])
    tcp = [f for f in flows if "TCP" in f["l4"] and f["trace_observation_point"] == "FROM_ENDPOINT"]
    seq = [(f["is_reply"], tuple(sorted(f["l4"]["TCP"].get("flags", {})))) for f in tcp]
    # the handshake, the payload, and the close, in order, on the wire leaving each endpoint
    assert seq[0] == (False, ("SYN",)), seq
    assert seq[1] == (True, ("ACK", "SYN")), seq
    assert (False, ("ACK",)) in seq
    assert any(r is False and "PSH" in fl for r, fl in seq), seq
    assert any(r is True and "PSH" in fl for r, fl in seq), seq
    assert any("FIN" in fl for _, fl in seq), seq
    client_port = tcp[0]["l4"]["TCP"]["source_port"]
    assert tcp[0]["l4"]["TCP"]["destination_port"] == 8080
    assert tcp[1]["l4"]["TCP"] | {"flags": None} == {"source_port": 8080, "destination_port": client_port, "flags": None}
    assert tcp[0]["Summary"] == "TCP Flags: SYN"
    assert tcp[1]["Summary"] == "TCP Flags: SYN, ACK"
    assert tcp[1]["traffic_direction"] == "INGRESS"  # a reply leaving the server, seen from the server's side
    udp = [f for f in flows if "UDP" in f["l4"]]
    assert any(f["l4"]["UDP"]["destination_port"] == 8080 and f["is_reply"] is False for f in udp), udp
    assert any(f["l4"]["UDP"]["source_port"] == 8080 and f["is_reply"] is True for f in udp), udp


def _iperf(agent: Agent, server_ip: str, seconds: int) -> None:
    srv = agent.popen_in("default/server", "iperf3", "-s", "-1", "-p", "5201")
    try:
        _wait_port(agent, "default/server", "tcp", 5201)
        agent.exec("default/client", "iperf3", "-c", server_ip, "-p", "5201", "-t", str(seconds), timeout=seconds + 30)
    finally:
        srv.kill()
        srv.wait()


def _data_flows(agent: Agent, server_ip: str) -> tuple[list[dict[str, Any]], int]:
    resp = agent.flows("--all")
    flows = [r["flow"] for r in resp if "flow" in r and "TCP" in r["flow"].get("l4", {})]
    data = [f for f in flows if server_ip in (f["IP"]["source"], f["IP"]["destination"])]
    # the iperf data connection is the one with the most flows
    by_port: dict[int, list[dict[str, Any]]] = {}
    for f in data:
        tcp = f["l4"]["TCP"]
        client_port = tcp["source_port"] if tcp["destination_port"] == 5201 else tcp["destination_port"]
        by_port.setdefault(client_port, []).append(f)
    biggest = max(by_port.values(), key=len)
    return biggest, len(data)


def test_default_aggregation_bounds_events_of_bulk_transfer(pair: tuple[Agent, dict[str, Any], dict[str, Any]]) -> None:
    agent, _a, b = pair
    _iperf(agent, b["ipv4"], 10)
    time.sleep(0.5)
    conn, _ = _data_flows(agent, b["ipv4"])
    flags = [set(f["l4"]["TCP"].get("flags", {})) for f in conn]
    assert {"SYN"} in flags and any("FIN" in fl for fl in flags), "start and end of the connection are seen"
    # ~ a million packets in 10 s; with aggregation: a new connection, new flags per direction,
    # the close and at most one periodic report per direction per 5 s, at two hooks.
    assert len(conn) < 60, len(conn)


def test_aggregation_none_reports_every_packet(make_agent: Any) -> None:
    agent = make_agent("--monitor-aggregation", "none", "--max-flows", "1048575", "--ring-bytes", str(64 << 20))
    agent.create("default/client", "app=client")
    b = agent.create("default/server", "app=server")
    n = 200
    agent.exec("default/client", "ping", "-c", str(n), "-i", "0.002", "-W", "2", b["ipv4"])
    time.sleep(0.5)
    flows = [r["flow"] for r in agent.flows("--all") if "flow" in r]
    echo = [f for f in flows if f.get("l4", {}).get("ICMPv4", {}).get("type") == 8]
    # every echo request, at both hooks
    assert len(echo) == 2 * n, len(echo)


def test_ring_buffer_overflow_is_counted_and_reported(make_agent: Any) -> None:
    agent = make_agent("--monitor-aggregation", "none", "--ring-bytes", "4096", "--poll-interval-ms", "1000")
    agent.create("default/client", "app=client")
    b = agent.create("default/server", "app=server")
    agent.exec("default/client", "ping", "-f", "-c", "3000", "-W", "1", b["ipv4"], check=False)
    time.sleep(2.5)  # the agent polls the kernel's lost counter every second
    lost = [r["lost_events"] for r in agent.flows("--all") if "lost_events" in r]
    assert lost, "a LostEvent is reported in-band"
    assert all(e["source"] == "PERF_EVENT_RING_BUFFER" for e in lost)
    assert sum(int(e["num_events_lost"]) for e in lost) > 0


def _tc_filters(ifname: str, direction: str) -> int:
    out = subprocess.run(["tc", "filter", "show", "dev", ifname, direction], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if " bpf " in line and "direct-action" in line)


def test_restart_restores_endpoints_and_attaches_once(agent: Agent) -> None:
    a = agent.create("default/client", "app=client")
    b = agent.create("default/server", "app=server")
    before = {e["name"]: (e["id"], e["identity"], e["ipv4"], e["ipv6"]) for e in agent.endpoints()}
    agent.restart()
    after = {e["name"]: (e["id"], e["identity"], e["ipv4"], e["ipv6"]) for e in agent.endpoints()}
    assert before == after
    for ep in (a, b):
        assert _tc_filters(ep["interface_name"], "ingress") == 1
        assert _tc_filters(ep["interface_name"], "egress") == 1
    agent.exec("default/client", "ping", "-c", "1", "-W", "2", b["ipv4"])
    time.sleep(0.3)
    assert _flows_between(agent.flows("--last", "100"), a["ipv4"], b["ipv4"]), "flows resume after restart"
    # same labels, same identity, in a fresh endpoint after restart too
    c = agent.create("other/client2", "app=client")
    assert c["identity"] != a["identity"]  # namespace is part of the label set
    d = agent.create("default/client3", "app=client")
    assert d["identity"] != a["identity"] or d["labels"] == a["labels"]


def test_delete_removes_netns_link_and_routes(agent: Agent) -> None:
    ep = agent.create("default/gone", "app=gone")
    agent.cli("endpoint", "delete", "default/gone")
    assert ep["netns"] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert ep["interface_name"] not in links
    routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
    routes6 = subprocess.run(["ip", "-6", "route", "show"], capture_output=True, text=True).stdout
    assert ep["ipv4"] not in routes and ep["ipv6"] not in routes6
    assert agent.endpoints() == []


def test_bad_input_is_rejected_and_changes_nothing(agent: Agent) -> None:
    agent.create("default/dup", "app=x")
    res = agent.cli("endpoint", "create", "default/dup", "--label", "app=y", check=False)
    assert res.returncode != 0 and "already exists" in res.stderr, res.stderr
    eps = agent.endpoints()
    assert len(eps) == 1 and "k8s:app=x" in eps[0]["labels"] and "k8s:app=y" not in eps[0]["labels"]
    res = agent.cli("endpoint", "create", "default/bad", "--label", "=x", check=False)
    assert res.returncode != 0 and "=x" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert len(agent.endpoints()) == 1
    res = agent.cli("endpoint", "delete", "default/nothere", check=False)
    assert res.returncode != 0 and "default/nothere" in res.stderr


def test_exhausted_address_range_is_a_clear_error(make_agent: Any) -> None:
    agent = make_agent("--ipv4-range", "10.253.7.0/29")
    made = 0
    for i in range(10):
        res = agent.cli("endpoint", "create", f"default/ep{i}", "--label", "app=x", check=False)
        if res.returncode != 0:
            assert "10.253.7.0/29" in res.stderr and "Traceback" not in res.stderr, res.stderr
            break
        made += 1
    else:
        raise AssertionError("the range never ran out")
    assert len(agent.endpoints()) == made


def test_follow_delivers_new_flows_promptly(pair: tuple[Agent, dict[str, Any], dict[str, Any]]) -> None:
    agent, _a, b = pair
    proc = subprocess.Popen(
        ["python3", "-m", "hubblectl.cli.main", "observe", "--server", agent.server, "--follow", "-o", "json",
         "--to-ip", b["ipv4"], "--protocol", "icmp"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)
        agent.exec("default/client", "ping", "-c", "1", "-W", "2", b["ipv4"])
        assert proc.stdout is not None
        line = proc.stdout.readline()
        got = time.time()
        flow = json.loads(line)["flow"]
        assert flow["IP"]["destination"] == b["ipv4"]
        from datetime import datetime

        t = datetime.fromisoformat(flow["time"].replace("Z", "+00:00")[:26] + "+00:00").timestamp()
        assert got - t < 1.0, f"follow latency {got - t:.3f}s"
    finally:
        proc.terminate()
        proc.wait()


def test_relabel_changes_identity_and_flows(agent: Agent) -> None:
    a = agent.create("default/client", "app=client")
    b = agent.create("default/server", "app=server")
    out = json.loads(agent.cli("endpoint", "label", "default/client", "--label", "app=renamed", "-o", "json").stdout)
    assert out["identity"] != a["identity"]
    assert "k8s:app=renamed" in out["labels"] and "k8s:app=client" not in out["labels"]
    assert (out["ipv4"], out["netns"]) == (a["ipv4"], a["netns"])  # same pod, new identity
    twin = agent.create("default/twin", "app=renamed")
    assert twin["identity"] == out["identity"]  # same labels, same identity
    agent.exec("default/client", "ping", "-c", "1", "-W", "2", b["ipv4"])
    time.sleep(0.3)
    flows = _flows_between(agent.flows("--last", "50"), a["ipv4"], b["ipv4"])
    sent = [f for f in flows if f["IP"]["source"] == a["ipv4"]]
    assert sent and all(f["source"]["identity"] == out["identity"] for f in sent)
    assert all("k8s:app=renamed" in f["source"]["labels"] for f in sent)
    res = agent.cli("endpoint", "label", "default/client", "--label", "=bad", check=False)
    assert res.returncode != 0 and "=bad" in res.stderr
    assert next(e for e in agent.endpoints() if e["name"] == "client")["identity"] == out["identity"]
