"""Golden-file comparison for printer output (UPDATE_GOLDEN=1 rewrites the files)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def visible(text: str) -> str:
    """Golden files show ESC as the four characters \\x1b so they can be reviewed by eye."""
    return text.replace("\x1b", "\\x1b")


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    def check(name: str, actual: str) -> None:
        path = GOLDEN / name
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
