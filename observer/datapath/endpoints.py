"""Endpoints: network namespaces wired to the host, with addresses, labels and an identity.

An endpoint is a "pod": a netns named ``<prefix><namespace>-<name>`` with ``eth0``, whose
veth peer ``lxc<hash>`` lives on the host; routing is described in
:mod:`observer.datapath.netlink`. The :class:`EndpointManager` keeps the records in the state
directory (``endpoints.json``) together with the identity allocator and the IPAM pools, and
keeps the kernel's wiring in line with them.

The manager knows nothing about BPF: the agent attaches its programs to ``host_ifname`` after
:meth:`EndpointManager.create` returns (or in an ``on_change`` hook, called with
``"created"``, ``"updated"`` or ``"deleted"`` and the endpoint after the state is saved; an
exception from the hook propagates to the caller, the state change stands).

Every method blocks on netlink work and is thread-safe; from asyncio call it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from observer.datapath.identity import IdentityAllocator
from observer.datapath.ipam import DEFAULT_IPV4_RANGE, DEFAULT_IPV6_RANGE, Ipam, parse_range
from observer.datapath.labels import (
    LabelSet,
    endpoint_labels,
    is_dns_label,
    is_dns_subdomain,
    user_labels_of,
    validate_cluster_name,
)
from observer.datapath.netlink import NETNS_RUN_DIR, Netlink, Plumbing
from observer.datapath.state import (
    DEFAULT_STATE_DIR,
    ENDPOINT_ID_FILE,
    ENDPOINTS_FILE,
    StateDir,
)
from observer.errors import (
    ConfigError,
    DatapathError,
    EndpointExists,
    EndpointNotFound,
    LabelError,
    ObserverError,
    StateError,
)

log = logging.getLogger(__name__)

MIN_ENDPOINT_ID = 1
MAX_ENDPOINT_ID = 4095
NETNS_NAME_MAX = 64
DEFAULT_NETNS_PREFIX = "hubblectl-"

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]")

OnChange = Callable[[str, "Endpoint"], None]


@dataclass(frozen=True, slots=True)
class DatapathConfig:
    """Where state lives, which address ranges pods get, and how their netns are named."""

    state_dir: str = DEFAULT_STATE_DIR
    ipv4_range: str = DEFAULT_IPV4_RANGE
    ipv6_range: str = DEFAULT_IPV6_RANGE
    netns_prefix: str = DEFAULT_NETNS_PREFIX
    cluster_name: str = "default"
    node_name: str = field(default_factory=socket.gethostname)

    def validate(self) -> None:
        """ConfigError naming the first bad field."""
        parse_range(self.ipv4_range, 4)
        parse_range(self.ipv6_range, 6)
        if not _PREFIX_RE.fullmatch(self.netns_prefix):
            raise ConfigError(
                f"invalid netns prefix {self.netns_prefix!r}: 1-32 characters of "
                "A-Z, a-z, 0-9, '_', '.', '-'"
            )
        try:
            validate_cluster_name(self.cluster_name)
        except LabelError as exc:
            raise ConfigError(str(exc)) from None
        if not self.state_dir:
            raise ConfigError("state dir must not be empty")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint as recorded in ``endpoints.json``."""

    id: int
    namespace: str
    name: str
    labels: LabelSet
    identity: int
    ipv4: str
    ipv6: str
    netns: str
    host_ifname: str
    host_ifindex: int
    host_mac: str
    mac: str
    created: int  # ns since the epoch

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def user_labels(self) -> list[str]:
        """The labels given at creation (without the derived namespace/cluster labels)."""
        return user_labels_of(self.labels)

    def plumbing(self) -> Plumbing:
        return Plumbing(
            netns=self.netns,
            host_ifname=self.host_ifname,
            host_mac=self.host_mac,
            pod_mac=self.mac,
            ipv4=self.ipv4,
            ipv6=self.ipv6,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "name": self.name,
            "labels": self.labels.to_strings(),
            "identity": self.identity,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "netns": self.netns,
            "host_ifname": self.host_ifname,
            "host_ifindex": self.host_ifindex,
            "host_mac": self.host_mac,
            "mac": self.mac,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Endpoint:
        """Raises ValueError describing the first bad field."""
        ints = ("id", "identity", "host_ifindex", "created")
        strs = ("namespace", "name", "ipv4", "ipv6", "netns", "host_ifname", "host_mac", "mac")
        for key in ints:
            if not isinstance(doc.get(key), int) or isinstance(doc.get(key), bool):
                raise ValueError(f"'{key}' must be an integer")
        for key in strs:
            if not isinstance(doc.get(key), str):
                raise ValueError(f"'{key}' must be a string")
        texts = doc.get("labels")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("'labels' must be a list of strings")
        try:
            labels = LabelSet.parse(texts)
        except LabelError as exc:
            raise ValueError(str(exc)) from None
        return cls(labels=labels, **{k: doc[k] for k in ints + strs})


def endpoint_netns_path(ep: Endpoint, netns_dir: str = NETNS_RUN_DIR) -> str:
    """The bind mount of the endpoint's netns (for setns(2) or ``ip netns exec <ep.netns>``)."""
    return f"{netns_dir}/{ep.netns}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def netns_name(prefix: str, namespace: str, name: str, *, hashed: bool = False) -> str:
    """``<prefix><namespace>-<name>``, unsafe characters replaced by '_'; when longer than
    64 characters, or when ``hashed`` (to break a collision), truncated and suffixed with
    ``-`` and 8 hex digits of a hash of ``namespace/name``."""
    base = prefix + _UNSAFE_RE.sub("_", f"{namespace}-{name}")
    if not hashed and len(base) <= NETNS_NAME_MAX:
        return base
    return f"{base[: NETNS_NAME_MAX - 9]}-{_short_hash(f'{namespace}/{name}')}"


def host_ifname(prefix: str, namespace: str, name: str, attempt: int = 0) -> str:
    """``lxc`` + 8 hex digits (11 characters, under IFNAMSIZ); ``attempt`` re-hashes."""
    seed = f"{prefix}{namespace}/{name}" + (f"#{attempt}" if attempt else "")
    return "lxc" + _short_hash(seed)


def derived_mac(seed: str) -> str:
    """A stable locally administered unicast MAC from ``seed``."""
    raw = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


class EndpointManager:
    """Creates, deletes, restores and relabels endpoints; persists them in the state dir."""

    def __init__(
        self,
        cfg: DatapathConfig,
        *,
        on_change: OnChange | None = None,
        netlink: Netlink | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.on_change = on_change
        self._nl = netlink if netlink is not None else Netlink()
        self._clock = clock
        self._lock = threading.RLock()
        self._state = StateDir(cfg.state_dir)
        self._state.ensure()
        self._eps: dict[str, Endpoint] = {}
        self._by_ip: dict[str, Endpoint] = {}
        self._unhealthy: dict[str, str] = {}
        self._next_id = MIN_ENDPOINT_ID
        self.identities = IdentityAllocator(self._state)
        self.ipam = Ipam(self._state, cfg.ipv4_range, cfg.ipv6_range)
        self._load()

    # -- state ------------------------------------------------------------------------------

    def _load(self) -> None:
        doc = self._state.read_json(ENDPOINTS_FILE)
        records = [] if doc is None else doc.get("endpoints")
        if not isinstance(records, list):
            raise self._state.error(ENDPOINTS_FILE, "'endpoints' must be a list")
        seen: dict[str, dict[object, str]] = {
            k: {} for k in ("id", "netns", "host_ifname", "ipv4", "ipv6")
        }
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise self._state.error(ENDPOINTS_FILE, f"endpoint #{i}: not an object")
            try:
                ep = Endpoint.from_dict(record)
            except ValueError as exc:
                raise self._state.error(ENDPOINTS_FILE, f"endpoint #{i}: {exc}") from None
            if ep.key in self._eps:
                raise self._state.error(ENDPOINTS_FILE, f"endpoint {ep.key} recorded twice")
            for attr, values in seen.items():
                value = getattr(ep, attr)
                if value in values:
                    raise self._state.error(
                        ENDPOINTS_FILE,
                        f"endpoints {values[value]} and {ep.key} share {attr} {value}",
                    )
                values[value] = ep.key
            self._eps[ep.key] = ep
        id_doc = self._state.read_json(ENDPOINT_ID_FILE)
        if id_doc is not None:
            nxt = id_doc.get("next")
            if not isinstance(nxt, int) or not MIN_ENDPOINT_ID <= nxt <= MAX_ENDPOINT_ID:
                raise self._state.error(
                    ENDPOINT_ID_FILE,
                    f"'next' must be an integer in [{MIN_ENDPOINT_ID}, {MAX_ENDPOINT_ID}]",
                )
            self._next_id = nxt
        # The endpoint records are the truth: re-take identity references, fix up IPAM.
        for ep in self._eps.values():
            try:
                self.identities.adopt(ep.identity, ep.labels)
            except StateError as exc:
                raise StateError(f"endpoint {ep.key}: {exc}") from None
        try:
            self.ipam.reconcile({ep.key: (ep.ipv4, ep.ipv6) for ep in self._eps.values()})
        except DatapathError as exc:
            raise self._state.error(
                ENDPOINTS_FILE, f"addresses do not fit the pod ranges: {exc}"
            ) from None
        self._reindex()

    def _reindex(self) -> None:
        self._by_ip = {}
        for ep in self._eps.values():
            self._by_ip[ep.ipv4] = ep
            self._by_ip[ep.ipv6] = ep

    def _save(self) -> None:
        self._state.write_json(ENDPOINT_ID_FILE, {"next": self._next_id})
        self._state.write_json(
            ENDPOINTS_FILE,
            {"endpoints": [ep.to_dict() for ep in sorted(self._eps.values(), key=lambda e: e.id)]},
        )
        self._reindex()

    def _notify(self, event: str, ep: Endpoint) -> None:
        if self.on_change is not None:
            self.on_change(event, ep)

    # -- queries ----------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Endpoint:
        with self._lock:
            ep = self._eps.get(f"{namespace}/{name}")
        if ep is None:
            raise EndpointNotFound(f"endpoint {namespace}/{name} not found")
        return ep

    def get_by_id(self, endpoint_id: int) -> Endpoint:
        with self._lock:
            for ep in self._eps.values():
                if ep.id == endpoint_id:
                    return ep
        raise EndpointNotFound(f"endpoint ID {endpoint_id} not found")

    def by_ip(self, ip: str) -> Endpoint | None:
        """The endpoint owning address ``ip`` (canonical text form), or None."""
        return self._by_ip.get(ip)

    def list(self) -> list[Endpoint]:
        """Every endpoint, by ID."""
        with self._lock:
            return sorted(self._eps.values(), key=lambda e: e.id)

    @property
    def unhealthy(self) -> dict[str, str]:
        """Endpoints the last restore() could not re-wire: key -> problem."""
        with self._lock:
            return dict(self._unhealthy)

    # -- naming -----------------------------------------------------------------------------

    def _pick_netns(self, namespace: str, name: str) -> str:
        used = {ep.netns for ep in self._eps.values()}
        for hashed in (False, True):
            candidate = netns_name(self.cfg.netns_prefix, namespace, name, hashed=hashed)
            if candidate not in used and not self._nl.netns_exists(candidate):
                return candidate
        raise DatapathError(
            f"no free netns name for {namespace}/{name} (tried "
            f"{netns_name(self.cfg.netns_prefix, namespace, name)} and its hashed form)"
        )

    def _pick_ifname(self, namespace: str, name: str) -> str:
        used = {ep.host_ifname for ep in self._eps.values()}
        for attempt in range(8):
            candidate = host_ifname(self.cfg.netns_prefix, namespace, name, attempt)
            if candidate not in used and self._nl.link(candidate) is None:
                return candidate
        raise DatapathError(f"no free host interface name for {namespace}/{name}")

    def _pick_id(self) -> int:
        used = {ep.id for ep in self._eps.values()}
        span = MAX_ENDPOINT_ID - MIN_ENDPOINT_ID + 1
        for step in range(span):
            candidate = MIN_ENDPOINT_ID + (self._next_id - MIN_ENDPOINT_ID + step) % span
            if candidate not in used:
                return candidate
        raise DatapathError(f"all {span} endpoint IDs are in use")

    # -- lifecycle --------------------------------------------------------------------------

    def create(self, namespace: str, name: str, labels: Sequence[str]) -> Endpoint:
        """Create endpoint ``namespace/name`` with user ``labels`` (``key=value`` strings).

        Everything is validated before the system is touched; on a failure midway whatever
        was created is removed again and the addresses and identity reference are released.
        """
        if isinstance(labels, str):
            raise LabelError(f"labels must be a sequence of strings, not the string {labels!r}")
        with self._lock:
            _check_names(namespace, name)
            key = f"{namespace}/{name}"
            if key in self._eps:
                raise EndpointExists(f"endpoint {key} already exists (ID {self._eps[key].id})")
            label_set = endpoint_labels(namespace, labels, self.cfg.cluster_name)
            netns = self._pick_netns(namespace, name)
            ifname = self._pick_ifname(namespace, name)
            ep_id = self._pick_id()
            v4, v6 = self.ipam.allocate(key)
            try:
                identity = self.identities.allocate(label_set)
            except BaseException:
                self.ipam.release(str(v4), str(v6))
                raise
            plumbing = Plumbing(
                netns=netns,
                host_ifname=ifname,
                host_mac=derived_mac(f"{netns}/host"),
                pod_mac=derived_mac(f"{netns}/pod"),
                ipv4=str(v4),
                ipv6=str(v6),
            )
            wired = False
            try:
                ifindex = self._wire(plumbing)
                wired = True
                ep = Endpoint(
                    id=ep_id,
                    namespace=namespace,
                    name=name,
                    labels=label_set,
                    identity=identity,
                    ipv4=plumbing.ipv4,
                    ipv6=plumbing.ipv6,
                    netns=netns,
                    host_ifname=ifname,
                    host_ifindex=ifindex,
                    host_mac=plumbing.host_mac,
                    mac=plumbing.pod_mac,
                    created=self._clock(),
                )
                self._eps[key] = ep
                self._next_id = MIN_ENDPOINT_ID + ep_id % MAX_ENDPOINT_ID
                self._save()
            except BaseException as exc:
                log.warning("create %s failed, rolling back: %s", key, exc)
                self._eps.pop(key, None)
                self._reindex()
                if wired:
                    self._unwire(plumbing, quiet=True)
                try:
                    self.ipam.release(str(v4), str(v6))
                except ObserverError as rel_exc:
                    log.error("rollback of %s: %s", key, rel_exc)
                self.identities.release(identity)
                raise
            log.info("created endpoint %s id=%d %s %s", key, ep.id, ep.ipv4, ep.ipv6)
        self._notify("created", ep)
        return ep

    def delete(self, namespace: str, name: str) -> Endpoint:
        """Remove the endpoint's veth (with its routes and neighbours) and netns, release its
        addresses and identity reference. EndpointNotFound if there is no such endpoint."""
        with self._lock:
            ep = self.get(namespace, name)
            self._unwire(ep.plumbing(), quiet=False)
            del self._eps[ep.key]
            self._unhealthy.pop(ep.key, None)
            self._save()
            self.ipam.release(ep.ipv4, ep.ipv6)
            self.identities.release(ep.identity)
            log.info("deleted endpoint %s id=%d", ep.key, ep.id)
        self._notify("deleted", ep)
        return ep

    def update_labels(self, namespace: str, name: str, labels: Sequence[str]) -> Endpoint:
        """Replace the user labels; the endpoint gets the identity of its new label set."""
        if isinstance(labels, str):
            raise LabelError(f"labels must be a sequence of strings, not the string {labels!r}")
        with self._lock:
            ep = self.get(namespace, name)
            label_set = endpoint_labels(namespace, labels, self.cfg.cluster_name)
            if label_set == ep.labels:
                return ep
            identity = self.identities.allocate(label_set)
            new = dataclasses.replace(ep, labels=label_set, identity=identity)
            self._eps[ep.key] = new
            try:
                self._save()
            except BaseException:
                self._eps[ep.key] = ep
                self._reindex()
                self.identities.release(identity)
                raise
            self.identities.release(ep.identity)
            log.info("endpoint %s: identity %d -> %d", ep.key, ep.identity, identity)
        self._notify("updated", new)
        return new

    def restore(self) -> builtins.list[Endpoint]:
        """On agent start: check every recorded endpoint's wiring and re-create what is
        missing; remove network namespaces with our prefix that no endpoint owns.

        Returns the endpoints whose wiring is complete. One that cannot be re-wired is
        logged, kept in the state (the next restore tries again) and listed in
        :attr:`unhealthy`. No on_change hook is called.
        """
        with self._lock:
            self._nl.enable_forwarding()
            self._unhealthy = {}
            changed = False
            for ep in self.list():
                try:
                    problems = self._nl.inspect(ep.plumbing())
                    if problems:
                        log.warning("endpoint %s: %s; re-creating", ep.key, "; ".join(problems))
                        self._unwire(ep.plumbing(), quiet=True)
                        ifindex = self._wire(ep.plumbing())
                    else:
                        link = self._nl.link(ep.host_ifname)
                        ifindex = link.index if link is not None else ep.host_ifindex
                except DatapathError as exc:
                    log.error("endpoint %s cannot be restored: %s", ep.key, exc)
                    self._unhealthy[ep.key] = str(exc)
                    continue
                if ifindex != ep.host_ifindex:
                    self._eps[ep.key] = dataclasses.replace(ep, host_ifindex=ifindex)
                    changed = True
            owned = {ep.netns for ep in self._eps.values()}
            for name in self._nl.netns_list(self.cfg.netns_prefix):
                if name not in owned:
                    log.warning("removing orphaned netns %s", name)
                    try:
                        self._nl.netns_delete(name)
                    except DatapathError as exc:
                        log.error("%s", exc)
            if changed:
                self._save()
            return [ep for ep in self.list() if ep.key not in self._unhealthy]

    # -- wiring -----------------------------------------------------------------------------

    def _wire(self, p: Plumbing) -> int:
        """Create the netns, veth, addresses, neighbours and routes; the host ifindex.

        On failure everything this call created is removed before the error propagates.
        """
        self._nl.enable_forwarding()
        self._nl.netns_create(p.netns)
        veth = False
        try:
            link = self._nl.create_veth(p)
            veth = True
            self._nl.configure_pod(p)
            self._nl.configure_host(p)
        except BaseException:
            # Remove only what this call made: on a veth name clash the other owner's link
            # stays.
            if veth:
                self._quietly(self._nl.link_delete, p.host_ifname)
            self._quietly(self._nl.netns_delete, p.netns)
            raise
        return link.index

    def _unwire(self, p: Plumbing, *, quiet: bool) -> None:
        """Delete the host veth (its peer, routes and neighbours go with it) and the netns."""
        if quiet:
            self._quietly(self._nl.link_delete, p.host_ifname)
            self._quietly(self._nl.netns_delete, p.netns)
            return
        self._nl.link_delete(p.host_ifname)
        self._nl.netns_delete(p.netns)

    @staticmethod
    def _quietly(step: Callable[[str], bool], arg: str) -> None:
        try:
            step(arg)
        except DatapathError as exc:
            log.error("cleanup: %s", exc)


def _check_names(namespace: str, name: str) -> None:
    if not isinstance(namespace, str) or not is_dns_label(namespace):
        raise ConfigError(
            f"invalid endpoint namespace {namespace!r}: lower-case a-z, 0-9 and '-', "
            "starting and ending alphanumeric, at most 63 characters"
        )
    if not isinstance(name, str) or not is_dns_subdomain(name):
        raise ConfigError(
            f"invalid endpoint name {name!r}: lower-case a-z, 0-9, '-' and '.', "
            "starting and ending alphanumeric, at most 253 characters"
        )
