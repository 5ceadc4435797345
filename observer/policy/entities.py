"""Reserved identities and policy entities (pure).

Numbers are Cilium's (``pkg/identity/numericidentity.go``): 1 host, 2 world, 3 unmanaged,
4 health, 5 init, 6 remote-node, 7 kube-apiserver, 8 ingress (9/10 world-ipv4/-ipv6 exist in
Cilium's dual-stack mode; here every address outside known prefixes is plain world, 2).
Endpoint identities are allocated in [256, 2**24); CIDR identities live in the node-local
range starting at 2**24 (16777216).

Entities (``fromEntities``/``toEntities``) resolve to identity sets:

=================  ===============================================================
host               {1}
remote-node        {6}
kube-apiserver     {7}
ingress            {8}
health             {4}
init               {5}
unmanaged          {3}
world              {2} and every CIDR identity (those carry ``reserved:world``)
world-ipv4/-ipv6   {2} and the CIDR identities of that family
cluster            {1, 3, 4, 5, 6, 7, 8} and every endpoint identity
all                the wildcard identity 0 (matches any remote, like an L4-only rule)
none               nothing
=================  ===============================================================
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from enum import IntEnum

from observer.datapath.labels import SOURCE_RESERVED, Label, LabelSet

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The wildcard identity in a policy key: "any remote identity".
WILDCARD_IDENTITY = 0
MIN_ENDPOINT_IDENTITY = 256
#: First identity of the node-local scope, where CIDR identities are allocated.
CIDR_IDENTITY_BASE = 1 << 24
MAX_CIDR_IDENTITY = (1 << 25) - 1


class ReservedIdentity(IntEnum):
    UNKNOWN = 0
    HOST = 1
    WORLD = 2
    UNMANAGED = 3
    HEALTH = 4
    INIT = 5
    REMOTE_NODE = 6
    KUBE_APISERVER = 7
    INGRESS = 8

    @property
    def label_name(self) -> str:
        return self.name.lower().replace("_", "-")

    @property
    def labels(self) -> LabelSet:
        return LabelSet((Label(SOURCE_RESERVED, self.label_name, ""),))


#: Reserved identities other than world that belong to the local cluster.
CLUSTER_RESERVED = frozenset(
    {
        ReservedIdentity.HOST,
        ReservedIdentity.UNMANAGED,
        ReservedIdentity.HEALTH,
        ReservedIdentity.INIT,
        ReservedIdentity.REMOTE_NODE,
        ReservedIdentity.KUBE_APISERVER,
        ReservedIdentity.INGRESS,
    }
)

_SINGLE: Mapping[str, ReservedIdentity] = {
    "host": ReservedIdentity.HOST,
    "remote-node": ReservedIdentity.REMOTE_NODE,
    "kube-apiserver": ReservedIdentity.KUBE_APISERVER,
    "ingress": ReservedIdentity.INGRESS,
    "health": ReservedIdentity.HEALTH,
    "init": ReservedIdentity.INIT,
    "unmanaged": ReservedIdentity.UNMANAGED,
}

ENTITIES: frozenset[str] = frozenset(
    {*_SINGLE, "world", "world-ipv4", "world-ipv6", "cluster", "all", "none"}
)


def reserved_labels() -> dict[int, LabelSet]:
    """Labels of every reserved identity except ``unknown``."""
    return {int(r): r.labels for r in ReservedIdentity if r is not ReservedIdentity.UNKNOWN}


def is_cidr_identity(identity: int) -> bool:
    return CIDR_IDENTITY_BASE <= identity <= MAX_CIDR_IDENTITY


def is_endpoint_identity(identity: int) -> bool:
    return MIN_ENDPOINT_IDENTITY <= identity < CIDR_IDENTITY_BASE


def cidr_label(network: IPNetwork) -> Label:
    """``cidr:10.0.0.0/8``; IPv6 colons become dashes as in Cilium (``cidr:f00d--/16``)."""
    return Label("cidr", str(network).replace(":", "-"), "")


def cidr_identity_labels(network: IPNetwork) -> LabelSet:
    return LabelSet((cidr_label(network), Label(SOURCE_RESERVED, "world", "")))


def identity_name(identity: int) -> str:
    """``host``, ``world`` ... for reserved identities, else the number as text."""
    try:
        reserved = ReservedIdentity(identity)
    except ValueError:
        return str(identity)
    return "any" if reserved is ReservedIdentity.UNKNOWN else reserved.label_name


def entity_identities(
    entity: str,
    *,
    endpoint_identities: frozenset[int],
    cidr_identities: Mapping[int, IPNetwork],
) -> frozenset[int]:
    """The identities ``entity`` stands for (see the module table).

    ``endpoint_identities`` are the known non-reserved, non-CIDR identities;
    ``cidr_identities`` maps each CIDR identity to its prefix. Raises KeyError for an
    unknown entity name (the loader validates names first).
    """
    if entity in _SINGLE:
        return frozenset({int(_SINGLE[entity])})
    if entity == "world":
        return frozenset({int(ReservedIdentity.WORLD), *cidr_identities})
    if entity in ("world-ipv4", "world-ipv6"):
        version = 4 if entity == "world-ipv4" else 6
        return frozenset(
            {int(ReservedIdentity.WORLD)}
            | {i for i, net in cidr_identities.items() if net.version == version}
        )
    if entity == "cluster":
        return frozenset({int(r) for r in CLUSTER_RESERVED} | endpoint_identities)
    if entity == "all":
        return frozenset({WILDCARD_IDENTITY})
    if entity == "none":
        return frozenset()
    raise KeyError(entity)
