"""The state directory: atomic JSON documents and clear errors for corrupt ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from observer.datapath.state import StateDir
from observer.errors import StateError


def test_write_then_read_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "nested" / "state")
    assert state.read_json("doc.json") is None
    state.write_json("doc.json", {"a": [1, 2], "b": "x"})
    state.write_json("doc.json", {"a": [3]})
    assert state.read_json("doc.json") == {"version": 1, "a": [3]}
    assert sorted(p.name for p in state.path.iterdir()) == ["doc.json"]
    assert json.loads((state.path / "doc.json").read_text()) == {"version": 1, "a": [3]}


CORRUPT = [
    (b"{not json", "invalid JSON at line 1 column 2"),
    (b"", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object, found list"),
    (b'{"version": 2}', "unsupported version 2"),
    (b'{"a": 1}', "unsupported version None"),
    (b"\xff\xfe{}", "not UTF-8"),
]


@pytest.mark.parametrize(("raw", "problem"), CORRUPT, ids=[c[1][:20] for c in CORRUPT])
def test_corrupt_document_names_file_and_problem(tmp_path: Path, raw: bytes, problem: str) -> None:
    (tmp_path / "endpoints.json").write_bytes(raw)
    with pytest.raises(StateError) as info:
        StateDir(tmp_path).read_json("endpoints.json")
    assert str(info.value).startswith(f"{tmp_path / 'endpoints.json'}: ")
    assert problem in str(info.value)


def test_state_path_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StateError, match="file"):
        StateDir(target).ensure()
