"""Pod address management: one IPv4 and one IPv6 pool per node.

:class:`AddressPool` is the pure allocator over one range. It never hands out the network
address, the IPv4 broadcast address, or the reserved gateway address (the first host
address, kept for the node itself). Allocation walks forward from a cursor just past the
last address handed out, so a released address is not reused at once (stale conntrack
entries and neighbour caches age out first).

:class:`Ipam` holds the two pools and persists them in ``ipam.json`` of the state dir.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from observer.datapath.state import IPAM_FILE, StateDir
from observer.errors import AddressExhausted, ConfigError, DatapathError

DEFAULT_IPV4_RANGE = "10.213.0.0/16"
DEFAULT_IPV6_RANGE = "fd00:10:213::/112"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_range(text: str, version: int) -> IPNetwork:
    """Parse a pool CIDR of IP ``version``; ConfigError when malformed or too small."""
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ConfigError(f"invalid IPv{version} pod range {text!r}: {exc}") from None
    if net.version != version:
        raise ConfigError(f"invalid IPv{version} pod range {text!r}: not an IPv{version} network")
    max_prefix = 30 if version == 4 else 126
    if net.prefixlen > max_prefix:
        raise ConfigError(
            f"invalid IPv{version} pod range {text!r}: too small (at most /{max_prefix})"
        )
    return net


class AddressPool:
    """Allocator over one CIDR. Pure: the caller persists :meth:`to_dict`."""

    __slots__ = ("_allocated", "_cursor", "_first", "_last", "network")

    def __init__(
        self,
        network: IPNetwork | str,
        allocated: Mapping[str, str] | None = None,
        cursor: int = 0,
    ) -> None:
        if isinstance(network, str):
            network = parse_range(network, ipaddress.ip_network(network, strict=False).version)
        self.network: IPNetwork = network
        base = int(network.network_address)
        # network address and the gateway (base + 1) are reserved; IPv4 also skips broadcast.
        self._first = base + 2
        self._last = int(network.broadcast_address) - (1 if network.version == 4 else 0)
        self._allocated: dict[int, str] = {}
        self._cursor = cursor if self._first <= cursor <= self._last else self._first
        for text, owner in (allocated or {}).items():
            self.allocate_specific(text, owner)

    @property
    def gateway(self) -> IPAddress:
        """The reserved first host address of the range."""
        return ipaddress.ip_address(int(self.network.network_address) + 1)

    @property
    def capacity(self) -> int:
        return self._last - self._first + 1

    @property
    def free(self) -> int:
        return self.capacity - len(self._allocated)

    def _addr(self, value: int) -> IPAddress:
        if self.network.version == 4:
            return ipaddress.IPv4Address(value)
        return ipaddress.IPv6Address(value)

    def _check(self, ip: IPAddress | str) -> int:
        try:
            addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        except ValueError:
            raise DatapathError(f"{ip!r} is not an IP address") from None
        if addr.version != self.network.version or addr not in self.network:
            raise DatapathError(f"{addr} is outside the pod range {self.network}")
        value = int(addr)
        if not self._first <= value <= self._last:
            raise DatapathError(f"{addr} is a reserved address of the pod range {self.network}")
        return value

    def allocate(self, owner: str) -> IPAddress:
        """The next free address, now owned by ``owner``; AddressExhausted when none is left."""
        if len(self._allocated) >= self.capacity:
            raise AddressExhausted(
                f"pod range {self.network} is exhausted ({self.capacity} addresses in use)"
            )
        # Within len(allocated)+1 consecutive candidates one is free (pigeonhole), so the
        # walk is short even in a huge IPv6 range.
        value = self._cursor
        span = self.capacity
        while value in self._allocated:
            value = self._first + (value - self._first + 1) % span
        self._allocated[value] = owner
        self._cursor = self._first + (value - self._first + 1) % span
        return self._addr(value)

    def allocate_specific(self, ip: IPAddress | str, owner: str) -> IPAddress:
        """Mark ``ip`` as owned by ``owner`` (idempotent for the same owner)."""
        value = self._check(ip)
        current = self._allocated.get(value)
        if current is not None and current != owner:
            raise DatapathError(f"{self._addr(value)} is already allocated to {current}")
        self._allocated[value] = owner
        return self._addr(value)

    def release(self, ip: IPAddress | str) -> str | None:
        """Free ``ip``; returns its former owner (None if it was free)."""
        try:
            value = self._check(ip)
        except DatapathError:
            return None
        return self._allocated.pop(value, None)

    def owner(self, ip: IPAddress | str) -> str | None:
        try:
            return self._allocated.get(self._check(ip))
        except DatapathError:
            return None

    def allocations(self) -> dict[str, str]:
        """address -> owner, in address order."""
        return {str(self._addr(v)): o for v, o in sorted(self._allocated.items())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "range": str(self.network),
            "cursor": str(self._addr(self._cursor)),
            "allocated": self.allocations(),
        }


class Ipam:
    """The node's two pools, persisted in ``ipam.json``.

    ``ipam.json`` remembers the ranges it was written for; if the configured ranges differ,
    allocations that still fit are kept and one outside the new range is a StateError.
    """

    __slots__ = ("_state", "v4", "v6")

    def __init__(self, state: StateDir, ipv4_range: str, ipv6_range: str) -> None:
        self._state = state
        v4net = parse_range(ipv4_range, 4)
        v6net = parse_range(ipv6_range, 6)
        doc = state.read_json(IPAM_FILE) or {}
        self.v4 = self._load_pool(doc.get("ipv4"), v4net, "ipv4")
        self.v6 = self._load_pool(doc.get("ipv6"), v6net, "ipv6")

    def _load_pool(self, entry: object, network: IPNetwork, field: str) -> AddressPool:
        if entry is None:
            return AddressPool(network)
        if not isinstance(entry, dict):
            raise self._state.error(IPAM_FILE, f"'{field}' must be an object")
        allocated = entry.get("allocated", {})
        if not isinstance(allocated, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in allocated.items()
        ):
            raise self._state.error(IPAM_FILE, f"'{field}.allocated' must map addresses to owners")
        cursor = 0
        cursor_text = entry.get("cursor")
        if cursor_text is not None:
            try:
                cursor = int(ipaddress.ip_address(cursor_text))
            except ValueError:
                raise self._state.error(
                    IPAM_FILE, f"'{field}.cursor' {cursor_text!r} is not an address"
                ) from None
        try:
            return AddressPool(network, allocated, cursor)
        except DatapathError as exc:
            raise self._state.error(
                IPAM_FILE, f"{field}: {exc} (recorded range {entry.get('range')!r})"
            ) from None

    def save(self) -> None:
        self._state.write_json(IPAM_FILE, {"ipv4": self.v4.to_dict(), "ipv6": self.v6.to_dict()})

    def allocate(self, owner: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv6Address]:
        """One address of each family for ``owner``, persisted; both or neither."""
        v4 = self.v4.allocate(owner)
        try:
            v6 = self.v6.allocate(owner)
        except BaseException:
            self.v4.release(v4)
            raise
        try:
            self.save()
        except BaseException:
            self.v4.release(v4)
            self.v6.release(v6)
            raise
        assert isinstance(v4, ipaddress.IPv4Address) and isinstance(v6, ipaddress.IPv6Address)
        return v4, v6

    def release(self, ipv4: str, ipv6: str) -> None:
        """Free both addresses and persist."""
        self.v4.release(ipv4)
        self.v6.release(ipv6)
        self.save()

    def reconcile(self, owned: Mapping[str, tuple[str, str]]) -> bool:
        """Make the allocations exactly ``owner -> (ipv4, ipv6)``; returns True if changed.

        Used at load: the endpoint records are the truth, so a crash between writing
        ``ipam.json`` and ``endpoints.json`` leaves no leaked or doubly-used address.
        """
        changed = False
        want4 = {ipaddress.ip_address(v4): o for o, (v4, _) in owned.items()}
        want6 = {ipaddress.ip_address(v6): o for o, (_, v6) in owned.items()}
        for pool, want in ((self.v4, want4), (self.v6, want6)):
            for text, owner in pool.allocations().items():
                if want.get(ipaddress.ip_address(text)) != owner:
                    pool.release(text)
                    changed = True
            for addr, owner in want.items():
                if pool.owner(addr) != owner:
                    pool.allocate_specific(addr, owner)
                    changed = True
        if changed:
            self.save()
        return changed
