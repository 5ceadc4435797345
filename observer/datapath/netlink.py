"""The netlink seam: every pyroute2 call and /proc/sys write of the datapath lives here.

Routing design (Calico-like, no bridge). Per endpoint:

* pod side (inside the netns): ``lo`` up; ``eth0`` up with ``ipv4/32`` and ``ipv6/128``
  (nodad); PERMANENT neighbours 169.254.1.1 and fe80::1 -> the host veth's MAC; a link-scope
  route to 169.254.1.1 and default routes via 169.254.1.1 and fe80::1.
* host side: the veth ``lxc<hash>`` up; routes ``ipv4/32`` and ``ipv6/128`` dev that veth;
  PERMANENT neighbours for the pod's addresses -> the pod's MAC (no ARP/NDP either way);
  rp_filter off on the veth; IPv4 and IPv6 forwarding on.

Errors (pyroute2's NetlinkError, OSError) are translated to DatapathError naming what was
attempted, e.g. ``add route 10.213.0.2/32 dev lxc1a2b3c4d: File exists``.

pyroute2's synchronous IPRoute runs its own event loop and cannot be used from a thread
that is running one; when called from such a thread, the work is done on a short-lived
worker thread (the caller still blocks: from asyncio use ``asyncio.to_thread``).

No fork: pyroute2 forks a child to create a netns or to open a socket inside one, and a
fork in a process that runs gRPC threads crashes the child. We do both on a thread instead:
``unshare(CLONE_NEWNET)`` / ``setns`` change only the calling thread's namespace, so a
netns is created by a short-lived thread that unshares and bind-mounts
``/proc/thread-self/ns/net``, and a socket inside a netns is opened by switching the
calling thread in and straight back out (a socket stays in the netns it was created in).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute, NetlinkError, netns

from observer.errors import DatapathError

log = logging.getLogger(__name__)

NETNS_RUN_DIR = "/var/run/netns"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
POD_IFNAME = "eth0"

_IFF_UP = 0x1
_IFA_F_NODAD = 0x02
_NUD_PERMANENT = 0x80
_RT_SCOPE_LINK = 253
_AF_INET = 2
_AF_INET6 = 10

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@contextmanager
def _thread_in_netns(path: str) -> Iterator[None]:
    """Switch the calling thread into the netns at ``path`` and back out afterwards."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target, f"enter netns {path}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(saved, "return to the host netns")
    finally:
        os.close(saved)


def _create_netns_on_thread(path: str) -> None:
    """Create a netns bound at ``path`` from a dedicated thread (see the module doc)."""
    result: list[BaseException] = []

    def work() -> None:
        try:
            if _libc.unshare(_CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            # iproute2's recipe: make the rundir a shared mount, then bind the namespace.
            netns.attach(path, "thread-self")
        except BaseException as exc:  # handed to the caller
            result.append(exc)

    t = threading.Thread(target=work, name="hubblectl-netns-create")
    t.start()
    t.join()
    if result:
        raise result[0]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the datapath needs to know about one link."""

    index: int
    ifname: str
    mac: str
    kind: str | None
    up: bool


@dataclass(frozen=True, slots=True)
class Plumbing:
    """The desired wiring of one endpoint."""

    netns: str
    host_ifname: str
    host_mac: str
    pod_mac: str
    ipv4: str
    ipv6: str
    pod_ifname: str = POD_IFNAME


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, NetlinkError):
        code = exc.code
        return os.strerror(code) if code else str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


@contextmanager
def _op(what: str) -> Iterator[None]:
    """Translate foreign errors of one netlink/sysfs operation into DatapathError."""
    try:
        yield
    except DatapathError:
        raise
    except (NetlinkError, OSError) as exc:
        raise DatapathError(f"{what}: {_strerror(exc)}") from exc


def _link_info(msg: Any) -> LinkInfo:
    kind = None
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    if linkinfo is not None:
        kind = linkinfo.get_attr("IFLA_INFO_KIND")
    return LinkInfo(
        index=int(msg["index"]),
        ifname=str(msg.get_attr("IFLA_IFNAME")),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        kind=kind,
        up=bool(msg["flags"] & _IFF_UP),
    )


class Netlink:
    """pyroute2-backed operations on the host and on endpoint network namespaces."""

    __slots__ = ("netns_dir",)

    def __init__(self, netns_dir: str = NETNS_RUN_DIR) -> None:
        self.netns_dir = netns_dir

    # -- plumbing ---------------------------------------------------------------------------

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if not _running_loop():
            return fn(*args)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubblectl-netlink") as pool:
            return pool.submit(fn, *args).result()

    @contextmanager
    def _host(self) -> Iterator[Any]:
        with _op("open netlink socket"):
            ipr = IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    @contextmanager
    def _in_netns(self, name: str) -> Iterator[Any]:
        if not self.netns_exists(name):
            raise DatapathError(f"open netns {name}: no such network namespace")
        with _op(f"open netlink socket in netns {name}"), _thread_in_netns(self.netns_path(name)):
            ipr = IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    # -- network namespaces -----------------------------------------------------------------

    def netns_path(self, name: str) -> str:
        return f"{self.netns_dir}/{name}"

    def netns_exists(self, name: str) -> bool:
        return Path(self.netns_path(name)).exists()

    def netns_list(self, prefix: str = "") -> list[str]:
        try:
            names = os.listdir(self.netns_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.startswith(prefix))

    def netns_create(self, name: str) -> None:
        def work() -> None:
            if self.netns_exists(name):
                raise DatapathError(f"create netns {name}: already exists")
            with _op(f"create netns {name}"):
                _create_netns_on_thread(self.netns_path(name))

        self._run(work)

    def netns_delete(self, name: str) -> bool:
        """Remove the netns mount; False when it did not exist."""

        def work() -> bool:
            if not self.netns_exists(name):
                return False
            with _op(f"delete netns {name}"):
                netns.remove(self.netns_path(name))
            return True

        return self._run(work)

    # -- links ------------------------------------------------------------------------------

    def link(self, ifname: str) -> LinkInfo | None:
        """The host link named ``ifname``, or None."""

        def work() -> LinkInfo | None:
            with self._host() as ipr:
                try:
                    msgs = ipr.link("get", ifname=ifname)
                except NetlinkError as exc:
                    if exc.code in (errno.ENODEV, errno.ENOENT):
                        return None
                    raise DatapathError(f"get link {ifname}: {_strerror(exc)}") from exc
                return _link_info(msgs[0]) if msgs else None

        return self._run(work)

    def link_delete(self, ifname: str) -> bool:
        """Delete a host link (a veth takes its peer, routes and neighbours with it)."""

        def work() -> bool:
            with self._host() as ipr:
                try:
                    ipr.link("del", ifname=ifname)
                except NetlinkError as exc:
                    if exc.code in (errno.ENODEV, errno.ENOENT):
                        return False
                    raise DatapathError(f"delete link {ifname}: {_strerror(exc)}") from exc
                return True

        return self._run(work)

    def create_veth(self, p: Plumbing) -> LinkInfo:
        """Create the veth pair: host end ``p.host_ifname``, peer ``p.pod_ifname`` in the netns."""

        def work() -> LinkInfo:
            with self._host() as ipr:
                with _op(f"add veth {p.host_ifname} peer {p.pod_ifname} netns {p.netns}"):
                    ipr.link(
                        "add",
                        ifname=p.host_ifname,
                        kind="veth",
                        address=p.host_mac,
                        peer={
                            "ifname": p.pod_ifname,
                            "address": p.pod_mac,
                            "net_ns_fd": self.netns_path(p.netns),
                        },
                    )
                with _op(f"get link {p.host_ifname}"):
                    return _link_info(ipr.link("get", ifname=p.host_ifname)[0])

        return self._run(work)

    # -- configuration ----------------------------------------------------------------------

    def configure_pod(self, p: Plumbing) -> None:
        """Addresses, neighbours and routes inside the endpoint's netns."""

        def work() -> None:
            dev = f"dev {p.pod_ifname} netns {p.netns}"
            with self._in_netns(p.netns) as ipr:
                with _op(f"set lo up netns {p.netns}"):
                    lo = ipr.link_lookup(ifname="lo")[0]
                    ipr.link("set", index=lo, state="up")
                with _op(f"get link {dev}"):
                    found = ipr.link_lookup(ifname=p.pod_ifname)
                if not found:
                    raise DatapathError(f"get link {dev}: not found")
                idx = found[0]
                with _op(f"set {dev} up"):
                    ipr.link("set", index=idx, state="up")
                with _op(f"add address {p.ipv4}/32 {dev}"):
                    ipr.addr("add", index=idx, address=p.ipv4, prefixlen=32)
                with _op(f"add address {p.ipv6}/128 {dev}"):
                    ipr.addr("add", index=idx, address=p.ipv6, prefixlen=128, flags=_IFA_F_NODAD)
                for gw, family in ((GATEWAY_V4, _AF_INET), (GATEWAY_V6, _AF_INET6)):
                    with _op(f"add neighbour {gw} lladdr {p.host_mac} {dev}"):
                        ipr.neigh(
                            "replace",
                            dst=gw,
                            lladdr=p.host_mac,
                            ifindex=idx,
                            family=family,
                            state=_NUD_PERMANENT,
                        )
                with _op(f"add route {GATEWAY_V4}/32 {dev}"):
                    ipr.route("add", dst=f"{GATEWAY_V4}/32", oif=idx, scope=_RT_SCOPE_LINK)
                with _op(f"add default route via {GATEWAY_V4} {dev}"):
                    ipr.route("add", dst="0.0.0.0/0", gateway=GATEWAY_V4, oif=idx)
                with _op(f"add default route via {GATEWAY_V6} {dev}"):
                    ipr.route("add", dst="::/0", gateway=GATEWAY_V6, oif=idx, family=_AF_INET6)

        self._run(work)

    def configure_host(self, p: Plumbing) -> None:
        """Bring the host veth up, route the pod's addresses to it, pin their neighbours."""

        def work() -> None:
            self._write_sysctl(f"net/ipv4/conf/{p.host_ifname}/rp_filter", "0")
            with self._host() as ipr:
                with _op(f"get link {p.host_ifname}"):
                    idx = ipr.link_lookup(ifname=p.host_ifname)[0]
                with _op(f"set {p.host_ifname} up"):
                    ipr.link("set", index=idx, state="up")
                for ip, family in ((p.ipv4, _AF_INET), (p.ipv6, _AF_INET6)):
                    with _op(f"add neighbour {ip} lladdr {p.pod_mac} dev {p.host_ifname}"):
                        ipr.neigh(
                            "replace",
                            dst=ip,
                            lladdr=p.pod_mac,
                            ifindex=idx,
                            family=family,
                            state=_NUD_PERMANENT,
                        )
                with _op(f"add route {p.ipv4}/32 dev {p.host_ifname}"):
                    ipr.route("add", dst=f"{p.ipv4}/32", oif=idx, scope=_RT_SCOPE_LINK)
                with _op(f"add route {p.ipv6}/128 dev {p.host_ifname}"):
                    ipr.route("add", dst=f"{p.ipv6}/128", oif=idx, family=_AF_INET6)

        self._run(work)

    def enable_forwarding(self) -> None:
        """net.ipv4.ip_forward=1 and net.ipv6.conf.all.forwarding=1 (only written if off)."""
        self._write_sysctl("net/ipv4/ip_forward", "1")
        self._write_sysctl("net/ipv6/conf/all/forwarding", "1")

    def _write_sysctl(self, key: str, value: str) -> None:
        path = Path("/proc/sys") / key
        name = key.replace("/", ".")
        with _op(f"read sysctl {name}"):
            current = path.read_text().strip()
        if current != value:
            with _op(f"set sysctl {name}={value}"):
                path.write_text(value + "\n")

    # -- inspection -------------------------------------------------------------------------

    def routes_to(self, dst: str) -> list[tuple[str, int]]:
        """Host routes whose destination is exactly ``dst`` (``ip/len``), as (dst, oif)."""

        def work() -> list[tuple[str, int]]:
            net = ipaddress.ip_network(dst)
            family = _AF_INET if net.version == 4 else _AF_INET6
            out = []
            with self._host() as ipr, _op(f"dump routes for {dst}"):
                for msg in ipr.route("dump", family=family):
                    rdst = msg.get_attr("RTA_DST")
                    if rdst is None:
                        continue
                    if rdst == str(net.network_address) and msg["dst_len"] == net.prefixlen:
                        out.append((f"{rdst}/{msg['dst_len']}", int(msg.get_attr("RTA_OIF") or 0)))
            return out

        return self._run(work)

    def inspect(self, p: Plumbing) -> list[str]:
        """What is missing or wrong in the wiring of ``p``; empty when it is complete."""

        def work() -> list[str]:
            problems: list[str] = []
            host = self.link(p.host_ifname)
            if host is None:
                problems.append(f"host link {p.host_ifname} missing")
            else:
                if host.kind != "veth":
                    problems.append(f"host link {p.host_ifname} is {host.kind}, not veth")
                if not host.up:
                    problems.append(f"host link {p.host_ifname} is down")
                for dst in (f"{p.ipv4}/32", f"{p.ipv6}/128"):
                    if (dst, host.index) not in self.routes_to(dst):
                        problems.append(f"host route {dst} dev {p.host_ifname} missing")
            if not self.netns_exists(p.netns):
                problems.append(f"netns {p.netns} missing")
                return problems
            with self._in_netns(p.netns) as ipr, _op(f"inspect netns {p.netns}"):
                found = ipr.link_lookup(ifname=p.pod_ifname)
                if not found:
                    problems.append(f"{p.pod_ifname} missing in netns {p.netns}")
                    return problems
                idx = found[0]
                link = ipr.link("get", index=idx)[0]
                if not link["flags"] & _IFF_UP:
                    problems.append(f"{p.pod_ifname} down in netns {p.netns}")
                addrs = {
                    (m.get_attr("IFA_ADDRESS"), m["prefixlen"]) for m in ipr.addr("dump", index=idx)
                }
                for ip, plen in ((p.ipv4, 32), (p.ipv6, 128)):
                    if (ip, plen) not in addrs:
                        problems.append(f"address {ip}/{plen} missing in netns {p.netns}")
                for family, gw in ((_AF_INET, GATEWAY_V4), (_AF_INET6, GATEWAY_V6)):
                    defaults = [
                        m
                        for m in ipr.route("dump", family=family)
                        if m["dst_len"] == 0 and m.get_attr("RTA_GATEWAY") == gw
                    ]
                    if not defaults:
                        problems.append(f"default route via {gw} missing in netns {p.netns}")
            return problems

        return self._run(work)
