"""Reserved identities, and the allocator's stability, probing and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from observer.datapath.identity import (
    MAX_ALLOCATED_IDENTITY,
    MIN_ALLOCATED_IDENTITY,
    IdentityAllocator,
    ReservedIdentity,
    identity_candidate,
    parse_identity,
)
from observer.datapath.labels import Label, LabelSet
from observer.datapath.state import IDENTITIES_FILE, StateDir
from observer.errors import LabelError, StateError

RESERVED = [
    (0, "unknown"),
    (1, "host"),
    (2, "world"),
    (3, "unmanaged"),
    (4, "health"),
    (5, "init"),
    (6, "remote-node"),
    (7, "kube-apiserver"),
    (8, "ingress"),
    (9, "world-ipv4"),
    (10, "world-ipv6"),
]


@pytest.mark.parametrize(("number", "name"), RESERVED, ids=[r[1] for r in RESERVED])
def test_reserved_identities_match_cilium(tmp_path: Path, number: int, name: str) -> None:
    ident = ReservedIdentity(number)
    assert ident.label_name == name
    labels = LabelSet.parse([f"reserved:{name}"])
    alloc = IdentityAllocator(StateDir(tmp_path))
    assert alloc.lookup(labels) == number
    assert alloc.get(number) == labels
    assert alloc.allocate(labels) == number
    assert parse_identity(name) == number
    assert not (tmp_path / IDENTITIES_FILE).exists()  # reserved ones are never persisted


def _set(*texts: str) -> LabelSet:
    return LabelSet.parse(texts)


def test_same_labels_same_identity_across_restarts(tmp_path: Path) -> None:
    empire = _set("org=empire", "class=tiefighter")
    alliance = _set("org=alliance", "class=xwing")
    first = IdentityAllocator(StateDir(tmp_path))
    e = first.allocate(empire)
    a = first.allocate(alliance)
    assert e != a
    assert first.allocate(_set("class=tiefighter", "org=empire")) == e  # order-insensitive
    assert e == identity_candidate(empire)  # free candidate: no probing
    assert MIN_ALLOCATED_IDENTITY <= e <= MAX_ALLOCATED_IDENTITY

    reopened = IdentityAllocator(StateDir(tmp_path))
    assert reopened.lookup(empire) == e
    assert reopened.get(a) == alliance
    assert reopened.refcount(e) == 0  # references live in memory only
    assert reopened.allocate(alliance) == a
    assert reopened.identities() == {e: empire, a: alliance}


def test_candidate_is_stable_and_independent_of_state(tmp_path: Path) -> None:
    labels = _set("app=web")
    assert identity_candidate(labels) == identity_candidate(_set("k8s:app=web"))
    one = IdentityAllocator(StateDir(tmp_path / "node1")).allocate(labels)
    two = IdentityAllocator(StateDir(tmp_path / "node2")).allocate(labels)
    assert one == two


def _colliding_pair() -> tuple[LabelSet, LabelSet, int]:
    seen: dict[int, LabelSet] = {}
    for i in range(100_000):
        labels = LabelSet((Label("k8s", "app", f"v{i}"),))
        cand = identity_candidate(labels)
        if cand in seen and cand < MAX_ALLOCATED_IDENTITY:
            return seen[cand], labels, cand
        seen[cand] = labels
    raise AssertionError("no collision found")


def test_collision_probes_to_next_free_number(tmp_path: Path) -> None:
    first, second, cand = _colliding_pair()
    alloc = IdentityAllocator(StateDir(tmp_path))
    assert alloc.allocate(first) == cand
    got = alloc.allocate(second)
    assert got == cand + 1
    assert alloc.get(got) == second
    reopened = IdentityAllocator(StateDir(tmp_path))
    assert reopened.lookup(first) == cand
    assert reopened.lookup(second) == got


def test_release_counts_references_but_keeps_the_number(tmp_path: Path) -> None:
    labels = _set("app=db")
    alloc = IdentityAllocator(StateDir(tmp_path))
    n = alloc.allocate(labels)
    assert alloc.allocate(labels) == n
    assert alloc.refcount(n) == 2
    assert alloc.release(n) == 1
    assert alloc.release(n) == 0
    assert alloc.release(n) == 0
    assert alloc.lookup(labels) == n
    assert IdentityAllocator(StateDir(tmp_path)).lookup(labels) == n


def test_adopt_restores_a_lost_mapping_and_rejects_contradictions(tmp_path: Path) -> None:
    alloc = IdentityAllocator(StateDir(tmp_path))
    labels = _set("app=cache")
    alloc.adopt(4242, labels)
    assert alloc.lookup(labels) == 4242
    assert alloc.refcount(4242) == 1
    assert IdentityAllocator(StateDir(tmp_path)).lookup(labels) == 4242
    with pytest.raises(StateError, match="have identity 4242"):
        alloc.adopt(4243, labels)
    with pytest.raises(StateError, match="belongs to"):
        alloc.adopt(4242, _set("app=other"))


@pytest.mark.parametrize(
    "labels",
    [LabelSet(), LabelSet.parse(["reserved:host", "k8s:app=x"])],
    ids=["empty", "reserved-mixed"],
)
def test_allocate_rejects_unallocatable_sets(tmp_path: Path, labels: LabelSet) -> None:
    with pytest.raises(LabelError):
        IdentityAllocator(StateDir(tmp_path)).allocate(labels)


CORRUPT = [
    ("{", "invalid JSON"),
    ('{"version": 1, "identities": []}', "'identities' must be an object"),
    ('{"version": 1, "identities": {"abc": ["k8s:a=b"]}}', "is not a number"),
    ('{"version": 1, "identities": {"12": ["k8s:a=b"]}}', "outside [256, 65535]"),
    ('{"version": 1, "identities": {"300": "k8s:a=b"}}', "must be a list of strings"),
    ('{"version": 1, "identities": {"300": ["=bad"]}}', "identity 300: invalid label"),
    ('{"version": 1, "identities": {"300": ["reserved:host"]}}', "reserved label set"),
    (
        '{"version": 1, "identities": {"300": ["k8s:a=b"], "301": ["k8s:a=b"]}}',
        "have the same labels",
    ),
    ('{"version": 9, "identities": {}}', "unsupported version 9"),
]


@pytest.mark.parametrize(("body", "problem"), CORRUPT, ids=[c[1][:24] for c in CORRUPT])
def test_corrupt_identities_file_raises_state_error(
    tmp_path: Path, body: str, problem: str
) -> None:
    (tmp_path / IDENTITIES_FILE).write_text(body)
    with pytest.raises(StateError) as info:
        IdentityAllocator(StateDir(tmp_path))
    assert str(tmp_path / IDENTITIES_FILE) in str(info.value)
    assert problem in str(info.value)


def test_identities_file_is_plain_json(tmp_path: Path) -> None:
    alloc = IdentityAllocator(StateDir(tmp_path))
    n = alloc.allocate(_set("app=web"))
    doc = json.loads((tmp_path / IDENTITIES_FILE).read_text())
    assert doc == {
        "version": 1,
        "identities": {
            str(n): ["k8s:app=web"],
        },
    }


@pytest.mark.parametrize(
    ("text", "want"),
    [("world", 2), ("host", 1), ("12345", 12345), ("0", 0)],
    ids=["world", "host", "number", "zero"],
)
def test_parse_identity(text: str, want: int) -> None:
    assert parse_identity(text) == want


@pytest.mark.parametrize("text", ["planet", "-1", "4294967296", ""], ids=str)
def test_parse_identity_rejects(text: str) -> None:
    with pytest.raises(LabelError):
        parse_identity(text)
