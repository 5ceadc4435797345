"""The ctypes mirrors in observer/bpf/_libbpf.py agree with the installed libbpf headers.

A C program compiled against /usr/include/bpf prints sizeof and offsetof of every field
we mirror; the ctypes Structure must say the same.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from observer.bpf import _libbpf

MIRRORS: list[tuple[str, str, type[ctypes.Structure], list[str]]] = [
    (
        "bpf_object_open_opts",
        "bpf/libbpf.h",
        _libbpf.BpfObjectOpenOpts,
        [
            "sz",
            "object_name",
            "relaxed_maps",
            "pin_root_path",
            "kconfig",
            "btf_custom_path",
            "kernel_log_buf",
            "kernel_log_size",
            "kernel_log_level",
        ],
    ),
    ("bpf_tc_hook", "bpf/libbpf.h", _libbpf.BpfTcHook, ["sz", "ifindex", "attach_point", "parent"]),
    (
        "bpf_tc_opts",
        "bpf/libbpf.h",
        _libbpf.BpfTcOpts,
        ["sz", "prog_fd", "flags", "prog_id", "handle", "priority"],
    ),
    (
        "bpf_test_run_opts",
        "bpf/bpf.h",
        _libbpf.BpfTestRunOpts,
        [name for name, *_ in _libbpf.BpfTestRunOpts._fields_],
    ),
    (
        "bpf_map_info",
        "linux/bpf.h",
        _libbpf.BpfMapInfo,
        ["type", "id", "key_size", "value_size", "max_entries", "map_flags", "name"],
    ),
]


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler to check the libbpf struct mirrors")
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <bpf/libbpf.h>",
        "#include <bpf/bpf.h>",
    ]
    lines.append("int main(void) {")
    for struct, _hdr, _cls, fields in MIRRORS:
        lines.append(f'printf("{struct} %zu\\n", sizeof(struct {struct}));')
        for f in fields:
            lines.append(f'printf("{struct}.{f} %zu\\n", offsetof(struct {struct}, {f}));')
    lines.append("return 0; }")
    d: Path = tmp_path_factory.mktemp("libbpf_layout")
    (d / "layout.c").write_text("\n".join(lines))
    subprocess.run([cc, "-o", str(d / "layout"), str(d / "layout.c")], check=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize(
    ("struct", "cls", "fields"),
    [(m[0], m[2], m[3]) for m in MIRRORS],
    ids=[m[0] for m in MIRRORS],
)
def test_ctypes_mirror_matches_header(
    c_layout: dict[str, int], struct: str, cls: type[ctypes.Structure], fields: list[str]
) -> None:
    if struct != "bpf_map_info":  # we mirror only the leading part of bpf_map_info
        assert ctypes.sizeof(cls) == c_layout[struct]
    for f in fields:
        assert getattr(cls, f).offset == c_layout[f"{struct}.{f}"], f
