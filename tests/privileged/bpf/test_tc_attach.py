"""The datapath on a real veth: attach, traffic, records, re-attach, detach, overflow.

A veth pair joins the root namespace (the "host" side, where the programs are attached)
to a fresh network namespace (the "endpoint"). Addresses come from the benchmarking
range 198.18.0.0/15 and a ULA prefix; all traffic stays on the pair.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from observer.bpf import loader, structs
from observer.bpf.loader import AGG_NONE, attach_tc, detach_tc, query_tc, remove_clsact

from . import packets as P
from .conftest import Datapath, open_datapath

SYN, ACK, FIN, PSH = structs.TCP_SYN, structs.TCP_ACK, structs.TCP_FIN, structs.TCP_PSH
EP_ID = 101


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class Veth:
    ns: str
    host_if: str  # root namespace side: the programs go here
    peer_if: str  # inside the namespace
    ifindex: int
    host_ip: str
    peer_ip: str
    host_ip6: str
    peer_ip6: str

    def in_ns(
        self, *args: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *args, check=check, timeout=timeout)


@pytest.fixture
def veth(privileged_env: None) -> Iterator[Veth]:
    tag = secrets.token_hex(3)
    n = secrets.randbelow(16000)
    v = Veth(
        ns=f"hbt{tag}",
        host_if=f"hbt{tag}h",
        peer_if=f"hbt{tag}p",
        ifindex=0,
        host_ip=f"198.{18 + n // 8000}.{(n % 8000) // 32}.{(n % 32) * 8 + 1}",
        peer_ip=f"198.{18 + n // 8000}.{(n % 8000) // 32}.{(n % 32) * 8 + 2}",
        host_ip6=f"fd68:6274:{n:x}::1",
        peer_ip6=f"fd68:6274:{n:x}::2",
    )
    try:
        sh("ip", "netns", "add", v.ns)
        sh("ip", "link", "add", v.host_if, "type", "veth", "peer", "name", v.peer_if, "netns", v.ns)
        sh("ip", "addr", "add", f"{v.host_ip}/29", "dev", v.host_if)
        sh("ip", "addr", "add", f"{v.host_ip6}/64", "dev", v.host_if, "nodad")
        sh("ip", "link", "set", v.host_if, "up")
        sh("ip", "-n", v.ns, "addr", "add", f"{v.peer_ip}/29", "dev", v.peer_if)
        sh("ip", "-n", v.ns, "addr", "add", f"{v.peer_ip6}/64", "dev", v.peer_if, "nodad")
        sh("ip", "-n", v.ns, "link", "set", v.peer_if, "up")
        sh("ip", "-n", v.ns, "link", "set", "lo", "up")
        ifindex = int(Path(f"/sys/class/net/{v.host_if}/ifindex").read_text())
        yield Veth(**{**v.__dict__, "ifindex": ifindex})
    finally:
        sh("ip", "link", "del", v.host_if, check=False)
        sh("ip", "netns", "del", v.ns, check=False)
        assert not Path(f"/sys/class/net/{v.host_if}").exists()
        assert v.ns not in sh("ip", "netns", "list").stdout


@pytest.fixture
def attached(bpf_build_dir: Path, pin_root: Path, veth: Veth) -> Iterator[Datapath]:
    """The datapath loaded (pinned under pin_root) and attached to the host side."""
    dp = open_datapath(bpf_build_dir, pin_root)
    try:
        loader.set_endpoint(dp.obj, veth.ifindex, EP_ID)
        attach_tc(veth.ifindex, veth.host_if, "ingress", dp.fds[loader.PROG_FROM_ENDPOINT])
        attach_tc(veth.ifindex, veth.host_if, "egress", dp.fds[loader.PROG_TO_ENDPOINT])
        yield dp
    finally:
        dp.close()


def collect(
    dp: Datapath, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Drain records until ``done(records)`` or the timeout."""
    recs: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        recs.extend(P.decode(r) for r in dp.rb.drain())
        if done(recs) or time.monotonic() > deadline:
            return recs
        dp.rb.poll(20)


def between(recs: list[dict[str, Any]], a: str, b: str, l4: int) -> list[dict[str, Any]]:
    """Records of protocol ``l4`` between addresses a and b (either direction)."""
    out = []
    for r in recs:
        if r["l4_proto"] != l4 or r["ip_version"] == 0:
            continue
        pair = {P.addr(r["saddr"], r["ip_version"]), P.addr(r["daddr"], r["ip_version"])}
        if pair == {a, b}:
            out.append(r)
    return out


def tc_filters(veth: Veth, direction: str) -> list[str]:
    out = sh("tc", "filter", "show", "dev", veth.host_if, direction).stdout
    return [line for line in out.splitlines() if "direct-action" in line]


@pytest.mark.parametrize(
    ("family", "l4", "req", "rep"),
    [(4, P.IPPROTO_ICMP, 8, 0), (6, P.IPPROTO_ICMPV6, 128, 129)],
    ids=["ping", "ping6"],
)
def test_ping_from_the_endpoint(
    attached: Datapath, veth: Veth, family: int, l4: int, req: int, rep: int
) -> None:
    dst, src = (veth.host_ip, veth.peer_ip) if family == 4 else (veth.host_ip6, veth.peer_ip6)
    veth.in_ns("ping", f"-{family}", "-c", "3", "-i", "0.2", "-W", "2", dst)
    recs = collect(
        attached,
        lambda rs: len([r for r in between(rs, src, dst, l4) if r["icmp_type"] == rep]) >= 1,
    )
    echo = [r for r in between(recs, src, dst, l4) if r["icmp_type"] in (req, rep)]
    requests = [r for r in echo if r["icmp_type"] == req]
    replies = [r for r in echo if r["icmp_type"] == rep]
    # three round trips, one record each way (aggregation), at the right hooks
    assert len(requests) == 1 and len(replies) == 1, echo
    rq, rp = requests[0], replies[0]
    assert (rq["obs_point"], rq["sub_type"], rq["ct_state"], rq["is_reply"]) == (
        structs.OBS_FROM_ENDPOINT,
        structs.OBS_FROM_ENDPOINT,
        structs.CT_NEW,
        0,
    )
    assert (P.addr(rq["saddr"], family), P.addr(rq["daddr"], family)) == (src, dst)
    assert (rp["obs_point"], rp["ct_state"], rp["is_reply"]) == (
        structs.OBS_TO_ENDPOINT,
        structs.CT_REPLY,
        1,
    )
    assert (P.addr(rp["saddr"], family), P.addr(rp["daddr"], family)) == (dst, src)
    assert rq["sport"] == rp["sport"] != 0  # the echo id
    for r in echo:
        assert (r["type"], r["ifindex"], r["ep_id"], r["ip_version"]) == (
            structs.EVENT_TRACE,
            veth.ifindex,
            EP_ID,
            family,
        )


SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
c.sendall(c.recv(100).upper())
c.close()
s.close()
"""


def test_tcp_connection_into_the_endpoint(attached: Datapath, veth: Veth) -> None:
    port = 8000 + secrets.randbelow(1000)
    server = subprocess.Popen(
        ["ip", "netns", "exec", veth.ns, sys.executable, "-c", SERVER, veth.peer_ip, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        with socket.create_connection((veth.peer_ip, port), timeout=5) as c:
            cport = c.getsockname()[1]
            c.sendall(b"hello")
            assert c.recv(100) == b"HELLO"
            assert c.recv(100) == b""  # the server closed
        server.wait(timeout=5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    def closed_both_ways(rs: list[dict[str, Any]]) -> bool:
        closes = [
            r
            for r in between(rs, veth.host_ip, veth.peer_ip, P.IPPROTO_TCP)
            if r["report_reason"] & structs.REPORT_CLOSE
        ]
        return len(closes) >= 2

    recs = [
        r
        for r in between(
            collect(attached, closed_both_ways), veth.host_ip, veth.peer_ip, P.IPPROTO_TCP
        )
        if cport in (r["sport"], r["dport"])
    ]
    summary = [(r["obs_point"], r["tcp_flags"], r["is_reply"], r["report_reason"]) for r in recs]
    # host -> endpoint goes out of the host side (to-endpoint), replies come in (from-endpoint)
    syn = recs[0]
    assert (syn["obs_point"], syn["tcp_flags"], syn["ct_state"], syn["report_reason"]) == (
        structs.OBS_TO_ENDPOINT,
        SYN,
        structs.CT_NEW,
        structs.REPORT_NEW_CONN,
    ), summary
    assert (P.addr(syn["saddr"], 4), syn["sport"], P.addr(syn["daddr"], 4), syn["dport"]) == (
        veth.host_ip,
        cport,
        veth.peer_ip,
        port,
    )
    assert (structs.OBS_FROM_ENDPOINT, SYN | ACK, 1, structs.REPORT_NEW_FLAGS) in summary
    assert (structs.OBS_TO_ENDPOINT, ACK, 0, structs.REPORT_NEW_FLAGS) in summary
    closes = {
        (r["obs_point"], r["is_reply"]) for r in recs if r["report_reason"] & structs.REPORT_CLOSE
    }
    assert closes == {(structs.OBS_TO_ENDPOINT, 0), (structs.OBS_FROM_ENDPOINT, 1)}, summary
    assert all(r["tcp_flags"] & FIN for r in recs if r["report_reason"] & structs.REPORT_CLOSE)
    # aggregation: far fewer records than packets, and no two SYN reports
    assert len([r for r in recs if r["tcp_flags"] == SYN]) == 1
    assert len(recs) <= 8, summary


def test_reattach_replaces_instead_of_duplicating(
    attached: Datapath, veth: Veth, bpf_build_dir: Path, pin_root: Path
) -> None:
    first = {d: query_tc(veth.ifindex, veth.host_if, d) for d in ("ingress", "egress")}
    assert all(first.values())
    assert first["ingress"] != first["egress"]
    for d in ("ingress", "egress"):
        filters = tc_filters(veth, d)
        assert len(filters) == 1 and f"id {first[d]} " in filters[0], filters

    # the same programs again
    attach_tc(veth.ifindex, veth.host_if, "ingress", attached.fds[loader.PROG_FROM_ENDPOINT])
    attach_tc(veth.ifindex, veth.host_if, "egress", attached.fds[loader.PROG_TO_ENDPOINT])
    assert {d: query_tc(veth.ifindex, veth.host_if, d) for d in ("ingress", "egress")} == first

    # an agent restart: new object, same pins, attach again
    attached.close()
    dp = open_datapath(bpf_build_dir, pin_root)
    try:
        attach_tc(veth.ifindex, veth.host_if, "ingress", dp.fds[loader.PROG_FROM_ENDPOINT])
        attach_tc(veth.ifindex, veth.host_if, "egress", dp.fds[loader.PROG_TO_ENDPOINT])
        second = {d: query_tc(veth.ifindex, veth.host_if, d) for d in ("ingress", "egress")}
        assert second["ingress"] not in (None, first["ingress"])
        for d in ("ingress", "egress"):
            filters = tc_filters(veth, d)
            assert len(filters) == 1 and f"id {second[d]} " in filters[0], filters
        # the reused hb_endpoints entry still names the endpoint
        veth.in_ns("ping", "-c", "1", "-W", "2", veth.host_ip)
        recs = collect(dp, lambda rs: bool(between(rs, veth.peer_ip, veth.host_ip, P.IPPROTO_ICMP)))
        icmp = between(recs, veth.peer_ip, veth.host_ip, P.IPPROTO_ICMP)
        assert icmp and all(r["ep_id"] == EP_ID for r in icmp)
    finally:
        dp.close()


def test_detach_and_remove_clean_up(attached: Datapath, veth: Veth) -> None:
    assert detach_tc(veth.ifindex, veth.host_if, "ingress") is True
    assert query_tc(veth.ifindex, veth.host_if, "ingress") is None
    assert query_tc(veth.ifindex, veth.host_if, "egress") is not None
    assert detach_tc(veth.ifindex, veth.host_if, "ingress") is False
    assert detach_tc(veth.ifindex, veth.host_if, "egress") is True
    assert tc_filters(veth, "ingress") == [] and tc_filters(veth, "egress") == []
    # no programs left: traffic produces no records
    veth.in_ns("ping", "-c", "2", "-i", "0.2", "-W", "2", veth.host_ip)
    assert attached.rb.drain() == []
    remove_clsact(veth.ifindex, veth.host_if)
    assert "clsact" not in sh("tc", "qdisc", "show", "dev", veth.host_if).stdout
    assert query_tc(veth.ifindex, veth.host_if, "ingress") is None
    remove_clsact(veth.ifindex, veth.host_if)  # nothing to remove: no error


def test_attach_errors_name_the_interface(attached: Datapath) -> None:
    from observer.errors import BpfError

    with pytest.raises(BpfError) as err:
        attach_tc(999_999, "nosuchif0", "ingress", attached.fds[loader.PROG_FROM_ENDPOINT])
    assert str(err.value).startswith("create clsact qdisc on nosuchif0: ")
    assert err.value.errno != 0


SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"x" * 32, (sys.argv[1], 9))
"""


def test_overflow_is_counted_and_reported(bpf_build_dir: Path, pin_root: Path, veth: Veth) -> None:
    dp = open_datapath(bpf_build_dir, pin_root, ring_bytes=4096)
    try:
        dp.configure(aggregation_level=AGG_NONE)
        attach_tc(veth.ifindex, veth.host_if, "ingress", dp.fds[loader.PROG_FROM_ENDPOINT])
        assert loader.read_lost(dp.obj).total == 0
        veth.in_ns(sys.executable, "-c", SENDER, veth.host_ip, "300")
        lost = loader.read_lost(dp.obj)
        drained = dp.rb.drain()
        capacity = (4096 - 1) // (structs.FLOW_EVENT_SIZE + 8)
        assert len(drained) == capacity
        # every datagram is one record (aggregation none); what did not fit was counted
        assert lost.total >= 300 - capacity
        assert lost.total == sum(lost.per_cpu)
        assert len(lost.per_cpu) >= 1
    finally:
        dp.close()


def _wire_frames(veth: Veth, frames: list[bytes]) -> None:
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        f"s.bind(({veth.peer_if!r}, 0))\n"
        "for h in sys.argv[1:]:\n"
        "    s.send(bytes.fromhex(h))\n"
    )
    veth.in_ns(sys.executable, "-c", code, *(f.hex() for f in frames))


def test_truncated_frames_on_the_wire_are_counted(attached: Datapath, veth: Veth) -> None:
    mac = bytes.fromhex(
        Path(f"/sys/class/net/{veth.host_if}/address").read_text().strip().replace(":", "")
    )
    v4 = P.eth(P.ETH_P_IP, P.ipv4(veth.peer_ip, veth.host_ip, 17, P.udp(1, 9)), dst=mac)
    v6 = P.eth(P.ETH_P_IPV6, P.ipv6(veth.peer_ip6, veth.host_ip6, 17, P.udp(1, 9)), dst=mac)
    frames = [v4[: 14 + 12], v4[: 14 + 19], v6[: 14 + 30], v4[: 14 + 20 + 5]]
    _wire_frames(veth, frames)
    deadline = time.monotonic() + 3
    while True:
        errors = loader.read_parse_errors(attached.obj)
        if sum(errors.values()) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (errors["ipv4"], errors["ipv6"], errors["udp"]) == (2, 1, 1), errors
    # still alive and observing
    veth.in_ns("ping", "-c", "1", "-W", "2", veth.host_ip)
    assert between(
        collect(attached, lambda rs: bool(rs)), veth.peer_ip, veth.host_ip, P.IPPROTO_ICMP
    )
