"""Struct layouts from a compiled BPF object's BTF (via `bpftool btf dump -j`).

Tetragon's alignchecker idea: the Python mirrors of C structs (observer/bpf/structs.py,
loader.py, policymaps.py) are compared with what the compiler actually laid out.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

BtfTypes = dict[int, dict[str, Any]]
Fields = tuple[tuple[str, int, int], ...]

_SIZED = ("INT", "STRUCT", "UNION", "ENUM", "ENUM64", "FLOAT")
_ALIASES = ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG")


def read_btf(obj: Path) -> BtfTypes:
    """Every BTF type of ``obj`` by id."""
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", str(obj), "-j"], check=True, capture_output=True, text=True
    ).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def size_of(types: BtfTypes, type_id: int) -> int:
    t = types[type_id]
    kind = t["kind"]
    if kind in _SIZED:
        return int(t["size"])
    if kind == "ARRAY":
        return int(t["nr_elems"]) * size_of(types, t["type_id"])
    if kind == "PTR":
        return 8
    if kind in _ALIASES:
        return size_of(types, t["type_id"])
    raise ValueError(f"unexpected BTF kind {kind} in a record struct")


def struct_layout(types: BtfTypes, name: str) -> tuple[Fields, int]:
    """(name, byte offset, size) of each member of ``struct name``, and the struct's size.

    Raises ValueError if the struct is missing, defined more than once, or has bitfields.
    """
    found = [t for t in types.values() if t["kind"] == "STRUCT" and t.get("name") == name]
    if len(found) != 1:
        raise ValueError(f"struct {name} appears {len(found)} times in the object's BTF")
    fields = []
    for m in found[0]["members"]:
        if m["bits_offset"] % 8:
            raise ValueError(f"{name}.{m['name']} is a bitfield")
        fields.append((m["name"], m["bits_offset"] // 8, size_of(types, m["type_id"])))
    return tuple(fields), int(found[0]["size"])
