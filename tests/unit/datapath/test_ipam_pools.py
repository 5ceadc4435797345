"""The pod address pools: reserved addresses, exhaustion, reuse order, persistence."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from observer.datapath.ipam import (
    DEFAULT_IPV4_RANGE,
    DEFAULT_IPV6_RANGE,
    AddressPool,
    Ipam,
    parse_range,
)
from observer.datapath.state import IPAM_FILE, StateDir
from observer.errors import AddressExhausted, ConfigError, DatapathError, StateError


def test_defaults_avoid_common_lans() -> None:
    v4 = parse_range(DEFAULT_IPV4_RANGE, 4)
    v6 = parse_range(DEFAULT_IPV6_RANGE, 6)
    for lan in ("10.0.0.0/16", "10.1.0.0/16", "192.168.0.0/16", "172.16.0.0/12"):
        assert not v4.overlaps(ipaddress.ip_network(lan))
    assert str(v4) == "10.213.0.0/16"
    assert str(v6) == "fd00:10:213::/112"


@pytest.mark.parametrize(
    ("cidr", "usable"),
    [
        ("10.0.0.0/30", ["10.0.0.2"]),
        ("10.0.0.0/29", ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]),
        ("fd00::/126", ["fd00::2", "fd00::3"]),
    ],
    ids=["v4-slash30", "v4-slash29", "v6-slash126"],
)
def test_pool_hands_out_every_usable_address_then_is_exhausted(
    cidr: str, usable: list[str]
) -> None:
    pool = AddressPool(cidr)
    assert pool.capacity == len(usable)
    got = [str(pool.allocate(f"o{i}")) for i in range(len(usable))]
    assert got == usable  # never the network, gateway (.1 / ::1) or IPv4 broadcast
    assert pool.free == 0
    with pytest.raises(AddressExhausted) as info:
        pool.allocate("one-too-many")
    assert cidr in str(info.value)
    assert str(pool.gateway) == usable[0][:-1] + "1"


def test_released_address_is_not_reused_immediately() -> None:
    pool = AddressPool("10.0.0.0/29")
    a = pool.allocate("a")
    b = pool.allocate("b")
    assert pool.release(a) == "a"
    c = pool.allocate("c")
    assert c not in (a, b)
    assert str(c) == "10.0.0.4"
    # walk to the end of the range, then wrap to the freed first address
    assert [str(pool.allocate(x)) for x in "de"] == ["10.0.0.5", "10.0.0.6"]
    assert str(pool.allocate("f")) == str(a)


def test_allocate_specific_and_owner() -> None:
    pool = AddressPool("10.0.0.0/29")
    pool.allocate_specific("10.0.0.5", "x")
    pool.allocate_specific("10.0.0.5", "x")  # idempotent for the same owner
    assert pool.owner("10.0.0.5") == "x"
    with pytest.raises(DatapathError, match="already allocated to x"):
        pool.allocate_specific("10.0.0.5", "y")
    with pytest.raises(DatapathError, match="reserved address"):
        pool.allocate_specific("10.0.0.1", "y")
    with pytest.raises(DatapathError, match="outside the pod range"):
        pool.allocate_specific("10.0.1.5", "y")
    assert pool.release("10.0.1.5") is None


@pytest.mark.parametrize(
    ("text", "version", "problem"),
    [
        ("10.0.0.1/24", 4, "has host bits set"),
        ("fd00::/64", 4, "not an IPv4 network"),
        ("10.0.0.0/31", 4, "too small"),
        ("fd00::/127", 6, "too small"),
        ("garbage", 6, "does not appear to be"),
    ],
    ids=["host-bits", "wrong-family", "v4-too-small", "v6-too-small", "garbage"],
)
def test_parse_range_rejects(text: str, version: int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_range(text, version)
    assert repr(text) in str(info.value)
    assert problem in str(info.value)


def test_ipam_persists_allocations_and_cursor(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    ipam = Ipam(state, "10.9.0.0/24", "fd00:9::/120")
    v4, v6 = ipam.allocate("default/a")
    assert (str(v4), str(v6)) == ("10.9.0.2", "fd00:9::2")
    ipam.allocate("default/b")
    ipam.release("10.9.0.2", "fd00:9::2")

    again = Ipam(state, "10.9.0.0/24", "fd00:9::/120")
    assert again.v4.allocations() == {"10.9.0.3": "default/b"}
    assert again.v6.allocations() == {"fd00:9::3": "default/b"}
    v4, v6 = again.allocate("default/c")
    assert (str(v4), str(v6)) == ("10.9.0.4", "fd00:9::4")  # cursor survived the restart
    doc = json.loads((tmp_path / IPAM_FILE).read_text())
    assert doc["ipv4"]["range"] == "10.9.0.0/24"


def test_ipam_allocates_both_families_or_neither(tmp_path: Path) -> None:
    ipam = Ipam(StateDir(tmp_path), "10.9.0.0/24", "fd00:9::/126")
    ipam.allocate("a")
    ipam.allocate("b")
    with pytest.raises(AddressExhausted, match="fd00:9::/126"):
        ipam.allocate("c")
    assert sorted(ipam.v4.allocations().values()) == ["a", "b"]
    reopened = Ipam(StateDir(tmp_path), "10.9.0.0/24", "fd00:9::/126")
    assert sorted(reopened.v4.allocations().values()) == ["a", "b"]


def test_reconcile_makes_allocations_match_the_owners(tmp_path: Path) -> None:
    ipam = Ipam(StateDir(tmp_path), "10.9.0.0/24", "fd00:9::/120")
    ipam.allocate("stray")
    changed = ipam.reconcile({"ns/kept": ("10.9.0.7", "fd00:9::7")})
    assert changed
    assert ipam.v4.allocations() == {"10.9.0.7": "ns/kept"}
    assert ipam.v6.allocations() == {"fd00:9::7": "ns/kept"}
    assert not ipam.reconcile({"ns/kept": ("10.9.0.7", "fd00:9::7")})
    assert Ipam(StateDir(tmp_path), "10.9.0.0/24", "fd00:9::/120").v4.owner("10.9.0.7") == "ns/kept"


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"version": 1, "ipv4": []}, "'ipv4' must be an object"),
        ({"version": 1, "ipv4": {"allocated": {"10.9.0.2": 5}}}, "must map addresses to owners"),
        ({"version": 1, "ipv4": {"cursor": "x"}}, "'ipv4.cursor' 'x' is not an address"),
        (
            {"version": 1, "ipv4": {"range": "10.8.0.0/24", "allocated": {"10.8.0.2": "a"}}},
            "outside the pod range 10.9.0.0/24",
        ),
        ({"version": 1, "ipv6": {"allocated": {"fd00:9::1": "a"}}}, "reserved address"),
    ],
    ids=["not-object", "owner-not-string", "bad-cursor", "outside-range", "reserved"],
)
def test_corrupt_ipam_file_raises_state_error(
    tmp_path: Path, doc: dict[str, object], problem: str
) -> None:
    (tmp_path / IPAM_FILE).write_text(json.dumps(doc))
    with pytest.raises(StateError) as info:
        Ipam(StateDir(tmp_path), "10.9.0.0/24", "fd00:9::/120")
    assert str(tmp_path / IPAM_FILE) in str(info.value)
    assert problem in str(info.value)
