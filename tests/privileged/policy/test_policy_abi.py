"""The Python mirrors of bpf/lib/policy.h (observer/bpf/policymaps.py) agree with the BTF of
the compiled datapath object, and the maps have the types and flags the writer relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from policy_bpf_harness import PolicyDatapath

from observer.bpf import _libbpf
from observer.bpf import policymaps as pm
from observer.bpf.btf import BtfTypes, Fields, read_btf, struct_layout


@pytest.fixture(scope="module")
def btf(bpf_build_dir: Path) -> BtfTypes:
    return read_btf(bpf_build_dir / "datapath.o")


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
    fields, btf_size = struct_layout(btf, name)
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
