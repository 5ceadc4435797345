"""The Python mirrors of bpf/lib/policy.h (observer/bpf/policymaps.py) agree with the BTF of
the compiled datapath object, and the maps have the types and flags the writer relies on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from policy_bpf_harness import PolicyDatapath

from observer.bpf import _libbpf
from observer.bpf import policymaps as pm

Fields = tuple[tuple[str, int, int], ...]


@pytest.fixture(scope="module")
def btf(bpf_build_dir: Path) -> dict[int, dict[str, Any]]:
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", str(bpf_build_dir / "datapath.o"), "-j"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def _size(types: dict[int, dict[str, Any]], tid: int) -> int:
    t = types[tid]
    if t["kind"] in ("INT", "STRUCT", "UNION", "ENUM"):
        return int(t["size"])
    if t["kind"] == "ARRAY":
        return int(t["nr_elems"]) * _size(types, t["type_id"])
    if t["kind"] in ("TYPEDEF", "CONST", "VOLATILE"):
        return _size(types, t["type_id"])
    raise AssertionError(t["kind"])


def _struct(types: dict[int, dict[str, Any]], name: str) -> tuple[Fields, int]:
    found = [t for t in types.values() if t["kind"] == "STRUCT" and t.get("name") == name]
    assert len(found) == 1, name
    members = tuple(
        (m["name"], m["bits_offset"] // 8, _size(types, m["type_id"])) for m in found[0]["members"]
    )
    return members, int(found[0]["size"])


CASES: list[tuple[str, Fields, int]] = [
    ("hb_policy_state", pm.POLICY_STATE_FIELDS, pm.POLICY_STATE.size),
    ("hb_ep_policy_key", pm.EP_POLICY_KEY_FIELDS, pm.EP_POLICY_KEY.size),
    ("hb_ep_policy", pm.EP_POLICY_FIELDS, pm.EP_POLICY.size),
    ("hb_policy_key", pm.POLICY_KEY_FIELDS, pm.POLICY_KEY.size),
    ("hb_policy_entry", pm.POLICY_ENTRY_FIELDS, pm.POLICY_ENTRY.size),
    ("hb_ipcache_key", pm.IPCACHE_KEY_FIELDS, pm.IPCACHE_KEY.size),
    ("hb_ipcache_value", pm.IPCACHE_VALUE_FIELDS, pm.IPCACHE_VALUE.size),
]


@pytest.mark.parametrize(("name", "mirror", "size"), CASES, ids=[c[0] for c in CASES])
def test_mirror_matches_btf(
    btf: dict[int, dict[str, Any]], name: str, mirror: Fields, size: int
) -> None:
    fields, btf_size = _struct(btf, name)
    assert list(mirror) == list(fields)
    assert size == btf_size
    end = 0
    for field, off, width in mirror:
        assert off == end, f"{name}.{field}: gap before it"
        end = off + width
    assert end == size


BPF_MAP_TYPE_LPM_TRIE = 11
MAPS = [
    (pm.STATE_MAP, _libbpf.BPF_MAP_TYPE_ARRAY, pm.POLICY_STATE.size),
    (pm.EP_POLICY_MAP, _libbpf.BPF_MAP_TYPE_HASH, pm.EP_POLICY.size),
    (pm.POLICY_MAP, BPF_MAP_TYPE_LPM_TRIE, pm.POLICY_ENTRY.size),
    (pm.IPCACHE_MAP, BPF_MAP_TYPE_LPM_TRIE, pm.IPCACHE_VALUE.size),
]


@pytest.mark.parametrize(("name", "map_type", "value_size"), MAPS, ids=[m[0] for m in MAPS])
def test_maps_have_the_expected_shape(
    pdp: PolicyDatapath, name: str, map_type: int, value_size: int
) -> None:
    m = pdp.obj.map(name)
    assert (m.map_type, m.value_size) == (map_type, value_size)
    assert pdp.obj.pin_root is not None and (pdp.obj.pin_root / name).exists()  # pinned by name
