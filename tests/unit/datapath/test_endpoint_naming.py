"""Endpoint naming, records, config and the validation done before any system change."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from observer.datapath.endpoints import (
    DatapathConfig,
    Endpoint,
    EndpointManager,
    derived_mac,
    endpoint_netns_path,
    host_ifname,
    netns_name,
)
from observer.datapath.labels import LabelSet
from observer.datapath.netlink import Netlink
from observer.datapath.state import ENDPOINT_ID_FILE, ENDPOINTS_FILE
from observer.errors import ConfigError, LabelError, StateError


def test_netns_name_plain_and_hashed() -> None:
    assert netns_name("hubblectl-", "default", "xwing") == "hubblectl-default-xwing"
    hashed = netns_name("hubblectl-", "default", "xwing", hashed=True)
    assert re.fullmatch(r"hubblectl-default-xwing-[0-9a-f]{8}", hashed)
    # "a-b"/"c" and "a"/"b-c" share the plain name but not the hashed one
    assert netns_name("p-", "a-b", "c") == netns_name("p-", "a", "b-c")
    assert netns_name("p-", "a-b", "c", hashed=True) != netns_name("p-", "a", "b-c", hashed=True)


def test_long_netns_name_is_truncated_with_hash() -> None:
    long_name = "x" * 200
    name = netns_name("hubblectl-", "default", long_name)
    assert len(name) == 64
    assert name.startswith("hubblectl-default-xxx")
    assert re.fullmatch(r".*-[0-9a-f]{8}", name)
    assert name != netns_name("hubblectl-", "default", long_name + "y")


def test_host_ifname_fits_ifnamsiz_and_is_stable() -> None:
    a = host_ifname("hubblectl-", "default", "xwing")
    assert re.fullmatch(r"lxc[0-9a-f]{8}", a)
    assert len(a) <= 15
    assert a == host_ifname("hubblectl-", "default", "xwing")
    assert a != host_ifname("hubblectl-", "default", "xwing", attempt=1)
    assert a != host_ifname("other-", "default", "xwing")


def test_derived_mac_is_locally_administered_unicast() -> None:
    mac = derived_mac("seed")
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01
    assert mac == derived_mac("seed") != derived_mac("other")


def _record(**overrides: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": 1,
        "namespace": "default",
        "name": "xwing",
        "labels": ["k8s:io.kubernetes.pod.namespace=default", "k8s:org=alliance"],
        "identity": 4000,
        "ipv4": "10.9.0.2",
        "ipv6": "fd00:9::2",
        "netns": "t-default-xwing",
        "host_ifname": "lxc00000001",
        "host_ifindex": 7,
        "host_mac": "02:00:00:00:00:01",
        "mac": "02:00:00:00:00:02",
        "created": 1,
    }
    rec.update(overrides)
    return rec


def test_endpoint_record_round_trips() -> None:
    ep = Endpoint.from_dict(_record())
    assert ep.to_dict() == _record()
    assert ep.key == "default/xwing"
    assert ep.labels == LabelSet.parse(["org=alliance", "io.kubernetes.pod.namespace=default"])
    assert ep.user_labels == ["k8s:org=alliance"]
    assert endpoint_netns_path(ep) == "/var/run/netns/t-default-xwing"


@pytest.mark.parametrize(
    ("field", "kwargs", "message"),
    [
        ("netns_prefix", {"netns_prefix": "bad prefix"}, "invalid netns prefix"),
        ("netns_prefix", {"netns_prefix": ""}, "invalid netns prefix"),
        ("ipv4_range", {"ipv4_range": "10.0.0.0/31"}, "too small"),
        ("ipv6_range", {"ipv6_range": "10.0.0.0/24"}, "not an IPv6 network"),
        ("cluster_name", {"cluster_name": "Prod"}, "invalid cluster name"),
    ],
    ids=["prefix-space", "prefix-empty", "v4-small", "v6-family", "cluster"],
)
def test_config_validation(field: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DatapathConfig(**kwargs).validate()


class _Tripwire(Netlink):
    """A Netlink whose every system operation fails the test: proves validation comes first."""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("netns_", "link", "create_", "configure_", "enable_", "inspect")):
            raise AssertionError(f"system touched: Netlink.{name}")
        return super().__getattribute__(name)


def _cfg(tmp_path: Path) -> DatapathConfig:
    return DatapathConfig(
        state_dir=str(tmp_path / "state"),
        ipv4_range="10.9.0.0/24",
        ipv6_range="fd00:9::/120",
        netns_prefix="t-",
        node_name="n1",
    )


@pytest.mark.parametrize(
    ("namespace", "name", "labels", "error", "message"),
    [
        ("Default", "xwing", [], ConfigError, "invalid endpoint namespace 'Default'"),
        ("default", "X_wing", [], ConfigError, "invalid endpoint name 'X_wing'"),
        ("default", "", [], ConfigError, "invalid endpoint name ''"),
        ("default", "xwing", ["=x"], LabelError, "invalid label '=x'"),
        ("default", "xwing", ["reserved:host"], LabelError, "cannot be set"),
        ("default", "xwing", "org=empire", LabelError, "not the string"),
    ],
    ids=["namespace", "name", "empty-name", "label", "reserved-label", "labels-as-str"],
)
def test_create_validates_before_touching_the_system(
    tmp_path: Path,
    namespace: str,
    name: str,
    labels: Any,
    error: type[Exception],
    message: str,
) -> None:
    mgr = EndpointManager(_cfg(tmp_path), netlink=_Tripwire())
    with pytest.raises(error, match=message):
        mgr.create(namespace, name, labels)
    assert mgr.list() == []
    assert not (tmp_path / "state" / ENDPOINTS_FILE).exists()
    assert mgr.ipam.v4.allocations() == {}


def test_manager_loads_records_and_reconciles_ipam(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ENDPOINTS_FILE).write_text(json.dumps({"version": 1, "endpoints": [_record()]}))
    (state / ENDPOINT_ID_FILE).write_text(json.dumps({"version": 1, "next": 2}))
    mgr = EndpointManager(_cfg(tmp_path), netlink=_Tripwire())
    ep = mgr.get("default", "xwing")
    assert ep.id == 1
    assert mgr.by_ip("fd00:9::2") == ep
    assert mgr.ipam.v4.allocations() == {"10.9.0.2": "default/xwing"}
    assert mgr.identities.lookup(ep.labels) == 4000
    assert mgr.identities.refcount(4000) == 1


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"version": 1, "endpoints": {}}, "'endpoints' must be a list"),
        ({"version": 1, "endpoints": [5]}, "endpoint #0: not an object"),
        ({"version": 1, "endpoints": [_record(id="1")]}, "endpoint #0: 'id' must be an integer"),
        ({"version": 1, "endpoints": [_record(labels=["=x"])]}, "endpoint #0: invalid label"),
        (
            {"version": 1, "endpoints": [_record(), _record(name="b", netns="n2")]},
            "share id 1",
        ),
        ({"version": 1, "endpoints": [_record(), _record()]}, "recorded twice"),
        (
            {"version": 1, "endpoints": [_record(ipv4="10.8.0.2")]},
            "addresses do not fit the pod ranges",
        ),
    ],
    ids=["not-list", "not-object", "id-type", "bad-label", "dup-id", "dup-key", "out-of-range"],
)
def test_corrupt_endpoints_file_raises_state_error(
    tmp_path: Path, doc: dict[str, Any], problem: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ENDPOINTS_FILE).write_text(json.dumps(doc))
    with pytest.raises(StateError) as info:
        EndpointManager(_cfg(tmp_path), netlink=_Tripwire())
    assert str(state / ENDPOINTS_FILE) in str(info.value)
    assert problem in str(info.value)


def test_corrupt_endpoint_id_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ENDPOINT_ID_FILE).write_text(json.dumps({"version": 1, "next": 0}))
    with pytest.raises(StateError, match=re.escape(str(state / ENDPOINT_ID_FILE))):
        EndpointManager(_cfg(tmp_path), netlink=_Tripwire())
