"""Fixtures for the native fast path: the library, built with `make -C native` once per session.

Without a C compiler the tests skip, unless HUBBLECTL_REQUIRE_BPF=1 (CI), which makes a
missing or broken library a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from observer import native

REPO = Path(__file__).resolve().parents[3]
REQUIRE_BPF = os.environ.get("HUBBLECTL_REQUIRE_BPF") == "1"


@pytest.fixture(scope="session")
def native_lib() -> native.Library:
    problem = None
    if shutil.which("make") is None:
        problem = "make not found"
    else:
        res = subprocess.run(
            ["make", "-s", "-C", str(REPO / "native")], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            problem = f"make -C native failed:\n{res.stdout}\n{res.stderr}"
    if problem is None:
        try:
            return native.require()
        except native.NativeError as e:
            problem = str(e)
    if REQUIRE_BPF:
        pytest.fail(f"native library unavailable: {problem} (HUBBLECTL_REQUIRE_BPF=1)")
    pytest.skip(f"native library unavailable: {problem}")
