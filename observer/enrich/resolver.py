"""Enrichment ports: what the flow builder asks about addresses, interfaces and policy rules.

``Resolver`` is the port (a ``typing.Protocol``); ``StaticResolver`` is the in-memory
adapter the agent feeds from its endpoint table by swapping whole ``ResolverSnapshot``s, so
a reader never sees half an update (one attribute store; no lock needed under the GIL).

Identities of addresses that are not endpoints: node/host addresses get the reserved
identity 1 (``reserved:host``); every other address gets 2 (``reserved:world``). Cilium in
dual-stack mode uses ``world-ipv4`` (9) and ``world-ipv6`` (10) instead of 2; we always use 2,
which is what single-stack Cilium reports and what ``--identity world`` matches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

from observer.errors import ConfigError

IDENTITY_UNKNOWN: Final = 0
IDENTITY_HOST: Final = 1
IDENTITY_WORLD: Final = 2


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What a flow's ``source``/``destination`` Endpoint says about an address.

    ``labels`` are ``source:key=value`` strings (``k8s:app=foo``, ``reserved:world``), emitted
    in the given order (Cilium sorts them; so should whoever builds these).
    """

    id: int
    identity: int
    namespace: str = ""
    pod_name: str = ""
    labels: tuple[str, ...] = ()
    cluster_name: str = ""


HOST_INFO: Final = EndpointInfo(id=0, identity=IDENTITY_HOST, labels=("reserved:host",))
WORLD_INFO: Final = EndpointInfo(id=0, identity=IDENTITY_WORLD, labels=("reserved:world",))


@runtime_checkable
class Resolver(Protocol):
    """Read-only lookups the flow builder makes per event. Must be fast and never raise."""

    def by_ip(self, ip: str) -> EndpointInfo | None:
        """The endpoint or reserved identity owning ``ip`` (canonical text form), or None."""
        ...

    def ifname(self, ifindex: int) -> str | None:
        """The name of the interface with that index, or None if unknown."""
        ...

    def policies(self, rule_id: int) -> list[dict[str, Any]] | None:
        """The ``flow.Policy`` JSON dicts behind a datapath rule id, or None if unknown.

        Shape: ``{"name", "namespace", "labels": [...], "revision": "<uint64 as str>",
        "kind"}`` with empty fields absent. Callers treat the dicts as read-only.
        """
        ...


def canonical_ip(ip: str) -> str:
    """The one textual form the decoder produces for an address (RFC 5952 for IPv6).

    Raises ``ConfigError`` if ``ip`` is not an address.
    """
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError as exc:
        raise ConfigError(f"not an IP address: {ip!r}") from exc


@dataclass(frozen=True, slots=True)
class ResolverSnapshot:
    """An immutable view of everything ``StaticResolver`` answers from.

    IP keys and host IPs are normalised with ``canonical_ip`` (so ``fd00::0:5`` and
    ``fd00::5`` are the same key) and all mappings are copied and made read-only.
    """

    endpoints: Mapping[str, EndpointInfo] = field(default_factory=dict)
    host_ips: frozenset[str] = frozenset()
    interfaces: Mapping[int, str] = field(default_factory=dict)
    policies: Mapping[int, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(
            self,
            "endpoints",
            MappingProxyType({canonical_ip(ip): info for ip, info in self.endpoints.items()}),
        )
        set_(self, "host_ips", frozenset(canonical_ip(ip) for ip in self.host_ips))
        set_(self, "interfaces", MappingProxyType(dict(self.interfaces)))
        set_(
            self,
            "policies",
            MappingProxyType({rid: tuple(pols) for rid, pols in self.policies.items()}),
        )

    @classmethod
    def from_endpoints(
        cls,
        endpoints: Iterable[tuple[Iterable[str], EndpointInfo]],
        *,
        host_ips: Iterable[str] = (),
        interfaces: Mapping[int, str] | None = None,
        policies: Mapping[int, Iterable[Mapping[str, Any]]] | None = None,
    ) -> ResolverSnapshot:
        """Build from ``(addresses, info)`` pairs, e.g. one pair per endpoint with its v4 and v6."""
        table = {ip: info for ips, info in endpoints for ip in ips}
        return cls(
            endpoints=table,
            host_ips=frozenset(host_ips),
            interfaces=dict(interfaces or {}),
            policies={rid: tuple(p) for rid, p in (policies or {}).items()},
        )


class StaticResolver:
    """Dict-backed ``Resolver`` over a replaceable ``ResolverSnapshot``.

    Unknown non-empty addresses resolve to ``WORLD_INFO``, host addresses to ``HOST_INFO``;
    the empty string (non-IP flows) resolves to None.
    """

    __slots__ = ("_snap",)

    def __init__(self, snapshot: ResolverSnapshot | None = None) -> None:
        self._snap = snapshot if snapshot is not None else ResolverSnapshot()

    @property
    def snapshot(self) -> ResolverSnapshot:
        return self._snap

    def replace(self, snapshot: ResolverSnapshot) -> None:
        """Swap in a new snapshot; lookups already running finish on the old one."""
        self._snap = snapshot

    def by_ip(self, ip: str) -> EndpointInfo | None:
        snap = self._snap
        info = snap.endpoints.get(ip)
        if info is not None:
            return info
        if ip in snap.host_ips:
            return HOST_INFO
        return WORLD_INFO if ip else None

    def ifname(self, ifindex: int) -> str | None:
        return self._snap.interfaces.get(ifindex)

    def policies(self, rule_id: int) -> list[dict[str, Any]] | None:
        pols = self._snap.policies.get(rule_id)
        if pols is None:
            return None
        return [dict(p) for p in pols]
