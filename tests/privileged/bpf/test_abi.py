"""The Python mirrors of the C structs agree with the BTF of the compiled object.

Tetragon's alignchecker idea: read member names, offsets and sizes of each struct from
`bpftool btf dump file bpf/build/datapath.o -j` and compare them with the field tables
in observer/bpf/structs.py (event ABI) and observer/bpf/loader.py (map layouts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from observer.bpf import loader, structs
from observer.bpf.btf import BtfTypes, Fields, read_btf, struct_layout


@pytest.fixture(scope="module")
def btf_types(bpf_build_dir: Path) -> BtfTypes:
    return read_btf(bpf_build_dir / "datapath.o")


CASES: list[tuple[str, Fields, int]] = [
    ("hb_event_hdr", structs.EVENT_HDR_FIELDS, structs.EVENT_HDR.size),
    ("hb_flow_event", structs.FLOW_EVENT_FIELDS, structs.FLOW_EVENT_SIZE),
    ("hb_config", loader.CONFIG_FIELDS, loader.CONFIG.size),
    ("hb_endpoint_info", loader.ENDPOINT_INFO_FIELDS, loader.ENDPOINT_INFO.size),
    ("hb_ct_key", loader.CT_KEY_FIELDS, loader.CT_KEY.size),
    ("hb_ct_value", loader.CT_VALUE_FIELDS, loader.CT_VALUE.size),
]


@pytest.mark.parametrize(("name", "mirror", "mirror_size"), CASES, ids=[c[0] for c in CASES])
def test_mirror_matches_btf(
    btf_types: dict[int, dict[str, Any]], name: str, mirror: Fields, mirror_size: int
) -> None:
    fields, size = struct_layout(btf_types, name)
    assert list(mirror) == list(fields)
    assert mirror_size == size


@pytest.mark.parametrize(("name", "mirror", "mirror_size"), CASES, ids=[c[0] for c in CASES])
def test_mirror_table_is_contiguous(name: str, mirror: Fields, mirror_size: int) -> None:
    """The Python tables themselves leave no gap and cover the struct (explicit padding)."""
    end = 0
    for field, off, size in mirror:
        assert off == end, f"{name}.{field} starts at {off}, previous field ends at {end}"
        end = off + size
    assert end == mirror_size


def test_map_key_and_value_sizes_match_mirrors(btf_types: dict[int, dict[str, Any]]) -> None:
    """Each map's BTF value type is the struct we pack for it."""
    by_name = {t.get("name"): t for t in btf_types.values() if t["kind"] == "VAR"}
    for var, value_struct in (
        ("hb_config", "hb_config"),
        ("hb_endpoints", "hb_endpoint_info"),
        ("hb_ct", "hb_ct_value"),
    ):
        definition = btf_types[by_name[var]["type_id"]]
        members = {m["name"]: m["type_id"] for m in definition["members"]}
        ptr = btf_types[members["value"]]
        assert ptr["kind"] == "PTR"
        assert btf_types[ptr["type_id"]]["name"] == value_struct, var
