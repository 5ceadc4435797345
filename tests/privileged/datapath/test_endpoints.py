"""Real endpoints in real network namespaces: reachability, deletion, restore, rollback.

Every test uses its own netns prefix (``hbt<random>-``), state dir and address ranges
(10.250.N.0/24, fd00:250:0:N::/112), and the ``dp`` fixture deletes every endpoint, netns
and link the test made, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyroute2 import IPRoute, NetlinkError, netns

from observer.datapath.endpoints import (
    DatapathConfig,
    Endpoint,
    EndpointManager,
    endpoint_netns_path,
    host_ifname,
)
from observer.datapath.netlink import NETNS_RUN_DIR
from observer.datapath.state import ENDPOINTS_FILE
from observer.errors import DatapathError, EndpointExists, EndpointNotFound


@dataclass
class Datapath:
    cfg: DatapathConfig
    managers: list[EndpointManager] = field(default_factory=list)
    extra_cleanup: list[Callable[[], None]] = field(default_factory=list)

    def manager(self) -> EndpointManager:
        mgr = EndpointManager(self.cfg)
        self.managers.append(mgr)
        return mgr

    def our_netns(self) -> list[str]:
        return sorted(n for n in netns.listnetns() if n.startswith(self.cfg.netns_prefix))


@pytest.fixture
def dp(tmp_path: Path) -> Iterator[Datapath]:
    n = secrets.randbelow(200) + 20
    cfg = DatapathConfig(
        state_dir=str(tmp_path / "state"),
        ipv4_range=f"10.250.{n}.0/24",
        ipv6_range=f"fd00:250:0:{n:x}::/112",
        netns_prefix=f"hbt{secrets.token_hex(3)}-",
        node_name="test-node",
    )
    d = Datapath(cfg)
    try:
        yield d
    finally:
        ifnames: set[str] = set()
        for mgr in d.managers:
            for ep in mgr.list():
                ifnames.add(ep.host_ifname)
                with contextlib.suppress(DatapathError, EndpointNotFound):
                    mgr.delete(ep.namespace, ep.name)
        for fn in d.extra_cleanup:
            fn()
        with IPRoute() as ipr:
            for name in ifnames:
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)
        for name in d.our_netns():
            netns.remove(name)


def ns_run(ns: str, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout
    )


def ping(target: str, ns: str | None = None) -> bool:
    cmd = ["ping", "-c", "1", "-W", "2", target]
    if ns is None:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    else:
        res = ns_run(ns, *cmd)
    return res.returncode == 0


def host_routes(dst: str) -> list[int]:
    """Output interface of every host route whose destination is exactly ``dst``."""
    net = ipaddress.ip_network(dst)
    family = 2 if net.version == 4 else 10
    with IPRoute() as ipr:
        return [
            int(m.get_attr("RTA_OIF") or 0)
            for m in ipr.route("dump", family=family)
            if m.get_attr("RTA_DST") == str(net.network_address) and m["dst_len"] == net.prefixlen
        ]


def link_indexes(name: str) -> list[int]:
    with IPRoute() as ipr:
        return list(ipr.link_lookup(ifname=name))


def addr_of(ep: Endpoint, family: str) -> str:
    return ep.ipv4 if family == "ipv4" else ep.ipv6


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_endpoints_reach_each_other_and_the_host_reaches_them(dp: Datapath, family: str) -> None:
    mgr = dp.manager()
    a = mgr.create("default", "xwing", ["org=alliance", "class=xwing"])
    b = mgr.create("default", "tiefighter", ["org=empire", "class=tiefighter"])
    assert (a.id, b.id) == (1, 2)
    assert a.netns == f"{dp.cfg.netns_prefix}default-xwing"
    assert Path(endpoint_netns_path(a)).exists()
    assert ipaddress.ip_address(a.ipv4) in ipaddress.ip_network(dp.cfg.ipv4_range)
    assert ipaddress.ip_address(b.ipv6) in ipaddress.ip_network(dp.cfg.ipv6_range)
    assert a.identity != b.identity
    assert "k8s:io.kubernetes.pod.namespace=default" in a.labels
    assert link_indexes(a.host_ifname) == [a.host_ifindex]

    assert ping(addr_of(b, family), ns=a.netns)
    assert ping(addr_of(a, family), ns=b.netns)
    assert ping(addr_of(a, family))
    assert ping(addr_of(b, family))


_SERVER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 8080))
srv.listen(1)
srv.settimeout(10)
print("ready", flush=True)
conn, peer = srv.accept()
data = b""
while not data.endswith(b"\\n"):
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
conn.sendall(data.upper())
conn.close()
print("peer", peer[0], flush=True)
"""

_CLIENT = """
import socket, sys
conn = socket.create_connection((sys.argv[1], 8080), timeout=5)
conn.sendall(b"hello from the rebel alliance " * 100 + b"\\n")
data = b""
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_tcp_connection_with_payload(dp: Datapath, family: str) -> None:
    mgr = dp.manager()
    client = mgr.create("default", "xwing", ["org=alliance"])
    server = mgr.create("default", "deathstar", ["org=empire"])
    srv = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            server.netns,
            sys.executable,
            "-c",
            _SERVER,
            addr_of(server, family),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert srv.stdout is not None
        assert srv.stdout.readline().strip() == "ready"
        res = ns_run(client.netns, sys.executable, "-c", _CLIENT, addr_of(server, family))
        assert res.returncode == 0, res.stderr
        assert res.stdout == "HELLO FROM THE REBEL ALLIANCE " * 100 + "\n"
        out, err = srv.communicate(timeout=10)
        assert srv.returncode == 0, err
        assert f"peer {addr_of(client, family)}" in out  # no NAT on the way
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def test_delete_removes_netns_link_routes_and_addresses(dp: Datapath) -> None:
    mgr = dp.manager()
    keep = mgr.create("default", "keep", [])
    ep = mgr.create("default", "xwing", ["org=alliance"])
    assert host_routes(f"{ep.ipv4}/32") == [ep.host_ifindex]
    assert host_routes(f"{ep.ipv6}/128") == [ep.host_ifindex]

    deleted = mgr.delete("default", "xwing")
    assert deleted == ep
    assert link_indexes(ep.host_ifname) == []
    assert host_routes(f"{ep.ipv4}/32") == []
    assert host_routes(f"{ep.ipv6}/128") == []
    assert ep.netns not in netns.listnetns()
    assert not Path(NETNS_RUN_DIR, ep.netns).exists()
    assert mgr.ipam.v4.owner(ep.ipv4) is None
    assert mgr.ipam.v6.owner(ep.ipv6) is None
    assert mgr.identities.refcount(ep.identity) == 0
    assert mgr.identities.lookup(ep.labels) == ep.identity  # identities persist
    assert [e.key for e in mgr.list()] == ["default/keep"]
    records = json.loads((Path(dp.cfg.state_dir) / ENDPOINTS_FILE).read_text())["endpoints"]
    assert [r["name"] for r in records] == ["keep"]
    assert ping(keep.ipv4)  # the other endpoint is untouched
    with pytest.raises(EndpointNotFound):
        mgr.delete("default", "xwing")


def test_restore_after_restart_keeps_everything_and_duplicates_nothing(dp: Datapath) -> None:
    first = dp.manager()
    a = first.create("default", "xwing", ["org=alliance"])
    b = first.create("empire", "tiefighter", ["org=empire"])

    second = dp.manager()  # the agent restarted over the same state dir
    restored = second.restore()
    assert restored == [a, b]
    assert second.unhealthy == {}
    assert dp.our_netns() == sorted([a.netns, b.netns])
    for ep in (a, b):
        assert link_indexes(ep.host_ifname) == [ep.host_ifindex]
        assert host_routes(f"{ep.ipv4}/32") == [ep.host_ifindex]
        assert host_routes(f"{ep.ipv6}/128") == [ep.host_ifindex]
    assert second.identities.refcount(a.identity) == 1
    c = second.create("default", "ywing", ["org=alliance"])
    assert c.id == 3
    assert c.ipv4 not in (a.ipv4, b.ipv4)


def test_restore_recreates_missing_plumbing_and_removes_orphans(dp: Datapath) -> None:
    first = dp.manager()
    a = first.create("default", "xwing", ["org=alliance"])
    b = first.create("default", "tiefighter", ["org=empire"])
    orphan = f"{dp.cfg.netns_prefix}orphan"
    # a reboot or a careless admin: a's host veth is gone, b's netns is gone, a stray netns
    with IPRoute() as ipr:
        ipr.link("del", index=a.host_ifindex)
    netns.remove(b.netns)
    netns.create(orphan)

    second = dp.manager()
    restored = second.restore()
    assert [(e.id, e.identity, e.ipv4, e.ipv6, e.netns) for e in restored] == [
        (e.id, e.identity, e.ipv4, e.ipv6, e.netns) for e in (a, b)
    ]
    assert dp.our_netns() == sorted([a.netns, b.netns])
    new_a = second.get("default", "xwing")
    assert link_indexes(a.host_ifname) == [new_a.host_ifindex]
    assert host_routes(f"{a.ipv4}/32") == [new_a.host_ifindex]
    for family in ("ipv4", "ipv6"):
        assert ping(addr_of(b, family), ns=a.netns)
        assert ping(addr_of(b, family))
    # the new ifindex was persisted
    assert EndpointManager(dp.cfg).get("default", "xwing").host_ifindex == new_a.host_ifindex


def test_duplicate_create_fails_and_changes_nothing(dp: Datapath) -> None:
    mgr = dp.manager()
    ep = mgr.create("default", "xwing", ["org=alliance"])
    state = Path(dp.cfg.state_dir)
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    netns_before = dp.our_netns()
    with pytest.raises(EndpointExists, match="default/xwing"):
        mgr.create("default", "xwing", ["org=empire"])
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    assert dp.our_netns() == netns_before
    assert mgr.list() == [ep]
    assert link_indexes(ep.host_ifname) == [ep.host_ifindex]


def test_failure_midway_rolls_back(dp: Datapath) -> None:
    mgr = dp.manager()
    first_v4 = str(ipaddress.ip_network(dp.cfg.ipv4_range).network_address + 2)
    # A route already claims the first pod address: the host route add fails with EEXIST
    # after the netns, veth and pod side have been set up.
    with IPRoute() as ipr:
        ipr.route("add", dst=f"{first_v4}/32", type="blackhole")

    def drop_blackhole() -> None:
        with IPRoute() as ipr, contextlib.suppress(NetlinkError):
            ipr.route("del", dst=f"{first_v4}/32", type="blackhole")

    dp.extra_cleanup.append(drop_blackhole)
    ifname = host_ifname(dp.cfg.netns_prefix, "default", "xwing")
    with pytest.raises(DatapathError, match=f"add route {first_v4}/32 dev {ifname}: File exists"):
        mgr.create("default", "xwing", ["org=alliance"])
    assert dp.our_netns() == []
    assert link_indexes(ifname) == []
    assert mgr.list() == []
    assert mgr.ipam.v4.allocations() == {}
    assert mgr.ipam.v6.allocations() == {}
    assert not (Path(dp.cfg.state_dir) / ENDPOINTS_FILE).exists()
    reopened = EndpointManager(dp.cfg)
    assert reopened.ipam.v4.allocations() == {}

    drop_blackhole()
    ep = mgr.create("default", "xwing", ["org=alliance"])
    assert ep.id == 1
    assert ping(ep.ipv4)


def test_update_labels_changes_identity_only(dp: Datapath) -> None:
    mgr = dp.manager()
    events: list[tuple[str, int]] = []
    mgr.on_change = lambda event, ep: events.append((event, ep.identity))
    ep = mgr.create("default", "xwing", ["org=alliance"])
    moved = mgr.update_labels("default", "xwing", ["org=empire"])
    assert moved.identity != ep.identity
    assert moved.labels.get("org") == "empire"
    assert (moved.ipv4, moved.host_ifindex, moved.netns) == (ep.ipv4, ep.host_ifindex, ep.netns)
    back = mgr.update_labels("default", "xwing", ["org=alliance"])
    assert back.identity == ep.identity
    assert mgr.update_labels("default", "xwing", ["org=alliance"]) is back  # no change, no event
    mgr.delete("default", "xwing")
    assert events == [
        ("created", ep.identity),
        ("updated", moved.identity),
        ("updated", ep.identity),
        ("deleted", ep.identity),
    ]


def test_manager_works_when_called_from_an_event_loop(dp: Datapath) -> None:
    mgr = dp.manager()

    async def main() -> Endpoint:
        return mgr.create("default", "xwing", [])

    ep = asyncio.run(main())
    assert ping(ep.ipv4)
