"""docs/cli.md is the --help of every command; it must not drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_cli_reference_is_in_sync() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert res.returncode == 0, res.stderr
