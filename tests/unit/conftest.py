"""Golden-file comparison for printer and CLI output (UPDATE_GOLDEN=1 rewrites the files).

Each test directory keeps its own `golden/` folder next to its tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def visible(text: str) -> str:
    """Golden files show ESC as the four characters \\x1b so they can be reviewed by eye."""
    return text.replace("\x1b", "\\x1b")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    folder = request.path.parent / "golden"

    def check(name: str, actual: str) -> None:
        path = folder / name
        shown = visible(actual)
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.write_text(shown, encoding="utf-8")
        assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
        assert shown == path.read_text(encoding="utf-8"), f"output differs from {path}"

    return check


@pytest.fixture(scope="session")
def fixture_lines() -> list[bytes]:
    """The raw JSON lines of tests/fixtures/flows.jsonl (newline-terminated)."""
    return [line + b"\n" for line in (FIXTURES / "flows.jsonl").read_bytes().splitlines() if line]
