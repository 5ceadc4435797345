"""StaticResolver: endpoint table -> EndpointInfo, host/world fallbacks, snapshots."""

from __future__ import annotations

from typing import Any

import pytest

from observer.enrich import (
    HOST_INFO,
    WORLD_INFO,
    EndpointInfo,
    Resolver,
    ResolverSnapshot,
    StaticResolver,
    canonical_ip,
)
from observer.errors import ConfigError, ObserverError

POD = EndpointInfo(
    id=7,
    identity=40001,
    namespace="default",
    pod_name="web",
    labels=("k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"),
    cluster_name="default",
)
POLICY = {
    "name": "allow-web",
    "namespace": "default",
    "revision": "2",
    "kind": "CiliumNetworkPolicy",
}


def resolver() -> StaticResolver:
    return StaticResolver(
        ResolverSnapshot.from_endpoints(
            [(["10.213.0.9", "FD00:10:213:0:0:0:0:9"], POD)],
            host_ips=["10.213.0.1", "fd00:10:213::1"],
            interfaces={12: "lxcabc"},
            policies={3: [POLICY]},
        )
    )


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.213.0.9", POD),
        ("fd00:10:213::9", POD),
        ("10.213.0.1", HOST_INFO),
        ("fd00:10:213::1", HOST_INFO),
        ("10.213.0.10", WORLD_INFO),
        ("8.8.8.8", WORLD_INFO),
        ("2001:db8::1", WORLD_INFO),
        ("", None),
    ],
    ids=[
        "pod-v4",
        "pod-v6-normalised",
        "host-v4",
        "host-v6",
        "unassigned-pod-ip",
        "internet",
        "internet-v6",
        "no-ip",
    ],
)
def test_by_ip(ip: str, expected: EndpointInfo | None) -> None:
    assert resolver().by_ip(ip) == expected


def test_reserved_infos() -> None:
    assert (HOST_INFO.identity, HOST_INFO.labels) == (1, ("reserved:host",))
    assert (WORLD_INFO.identity, WORLD_INFO.labels) == (2, ("reserved:world",))


@pytest.mark.parametrize(("ifindex", "name"), [(12, "lxcabc"), (13, None), (0, None)])
def test_ifname(ifindex: int, name: str | None) -> None:
    assert resolver().ifname(ifindex) == name


def test_policies_are_copies() -> None:
    r = resolver()
    got = r.policies(3)
    assert got == [POLICY]
    assert got is not None
    got[0]["name"] = "mutated"
    assert r.policies(3) == [POLICY]
    assert r.policies(4) is None


def test_snapshot_is_immutable_and_copied() -> None:
    table: dict[str, EndpointInfo] = {"10.0.0.1": POD}
    snap = ResolverSnapshot(endpoints=table)
    table["10.0.0.2"] = POD
    assert "10.0.0.2" not in snap.endpoints
    with pytest.raises(TypeError):
        snap.endpoints["10.0.0.3"] = POD  # type: ignore[index]


def test_replace_swaps_everything_at_once() -> None:
    r = resolver()
    old = r.snapshot
    r.replace(ResolverSnapshot(host_ips=frozenset({"10.213.0.9"})))
    assert r.by_ip("10.213.0.9") == HOST_INFO
    assert r.ifname(12) is None
    assert old.endpoints["10.213.0.9"] == POD  # the old snapshot is untouched


def test_empty_resolver() -> None:
    r = StaticResolver()
    assert r.by_ip("10.0.0.1") == WORLD_INFO
    assert r.ifname(1) is None
    assert r.policies(1) is None


def test_satisfies_the_protocol() -> None:
    r: Resolver = StaticResolver()
    assert isinstance(r, Resolver)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("FD00::0:5", "fd00::5"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
    ],
)
def test_canonical_ip(text: str, canonical: str) -> None:
    assert canonical_ip(text) == canonical


@pytest.mark.parametrize("bad", ["", "10.0.0.256", "pod-a", "10.0.0.0/24"])
def test_bad_addresses_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        ResolverSnapshot(endpoints={bad: POD})
    assert isinstance(info.value, ObserverError)
    assert repr(bad) in str(info.value)


def test_endpoint_info_is_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        POD.identity = 1  # type: ignore[misc]
    assert len({POD, EndpointInfo(**_fields(POD))}) == 1


def _fields(info: EndpointInfo) -> dict[str, Any]:
    return {f: getattr(info, f) for f in info.__slots__}
