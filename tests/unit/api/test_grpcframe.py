"""observer.api.grpcframe: canonical response lines -> gRPC-framed GetFlowsResponse messages.

``frame_response_lines`` takes the native transcoder when the library loads and must give
exactly what the Python path (``frame_response_lines_python``) gives: the same bytes, or the
same ``DecodeError``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.api import grpcframe
from observer.api.convert import response_to_proto
from observer.api.v1.observer import observer_pb2
from observer.errors import DecodeError

REPO = Path(__file__).resolve().parents[3]
LINES = [line for line in (REPO / "tests/fixtures/flows.jsonl").read_bytes().splitlines() if line]
CAMEL = b'{"flow":{"nodeName":"x","l4":{"TCP":{"sourcePort":1}}},"node_name":"n"}'
REQUIRE_BPF = os.environ.get("HUBBLECTL_REQUIRE_BPF") == "1"

Frame = Callable[[Sequence[bytes]], bytes]


@pytest.fixture(scope="module")
def built() -> None:
    """The native library, built; skips (fails under HUBBLECTL_REQUIRE_BPF=1) without it."""
    problem = None
    if shutil.which("make") is None:
        problem = "make not found"
    else:
        res = subprocess.run(["make", "-s", "-C", str(REPO / "native")], capture_output=True,
                             text=True, check=False)  # fmt: skip
        if res.returncode != 0:
            problem = f"make -C native failed: {res.stderr}"
    problem = problem or grpcframe.native_problem()
    if problem is None:
        return
    if REQUIRE_BPF:
        pytest.fail(f"native transcoder unavailable: {problem}")
    pytest.skip(f"native transcoder unavailable: {problem}")


def split_frames(data: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(data):
        assert data[i] == 0  # not compressed
        n = int.from_bytes(data[i + 1 : i + 5], "big")
        out.append(data[i + 5 : i + 5 + n])
        i += 5 + n
        assert i <= len(data)
    return out


def outcome(fn: Frame, lines: Sequence[bytes]) -> bytes | str:
    try:
        return fn(lines)
    except DecodeError as e:
        return f"DecodeError: {e}"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"", b"\x00\x00\x00\x00\x00", id="empty"),
        pytest.param(b"\x0a\x00", b"\x00\x00\x00\x00\x02\x0a\x00", id="short"),
        pytest.param(b"x" * 70000, b"\x00\x00\x01\x11\x70" + b"x" * 70000, id="long"),
    ],
)
def test_frame_message(payload: bytes, expected: bytes) -> None:
    assert grpcframe.frame_message(payload) == expected


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(LINES, id="fixtures"),
        pytest.param([], id="empty"),
        pytest.param([CAMEL, *LINES[:3], CAMEL, LINES[-1], CAMEL], id="python-lines-between"),
        pytest.param([line + b"\n" for line in LINES], id="newline-terminated"),
        pytest.param([b'{"flow":{"node_name":"\\ud83d\\ude00\\n"}}'] * 3, id="escapes"),
        pytest.param(LINES * 40, id="large-batch"),
    ],
)
def test_native_equals_python(built: None, batch: list[bytes]) -> None:
    got = grpcframe.frame_response_lines(batch)
    assert got == grpcframe.frame_response_lines_python(batch)
    messages = split_frames(got)
    assert len(messages) == len(batch)
    for line, msg in zip(batch, messages, strict=True):
        assert observer_pb2.GetFlowsResponse.FromString(msg) == response_to_proto(
            orjson.loads(line)
        )


def test_native_path_is_selected(built: None) -> None:
    assert grpcframe.native_problem() is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param(b"{", "not JSON", id="truncated"),
        pytest.param(b"", "not JSON", id="empty-line"),
        pytest.param(b'{"flow":{"verdict":"NOPE"}}', "NOPE", id="unknown-enum"),
        pytest.param(b'{"flow":{"IP":"x"}}', "IP", id="wrong-type"),
        pytest.param(b'["flow"]', "GetFlowsResponse", id="not-an-object"),
        pytest.param(b'{"flow":{"node_name":"\\ud800"}}', "not JSON", id="lone-surrogate"),
    ],
)
@pytest.mark.parametrize(
    "fn",
    [grpcframe.frame_response_lines, grpcframe.frame_response_lines_python],
    ids=["selected", "python"],
)
def test_bad_line_raises_decode_error(built: None, fn: Frame, bad: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        fn([LINES[0], bad, LINES[1]])
    if message != "not JSON":
        assert message in str(info.value)
    else:
        assert "GetFlowsResponse" in str(info.value)


def test_python_path_when_the_transcoder_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = b"".join(grpcframe.frame_response_line(line) for line in LINES)
    monkeypatch.setattr(grpcframe, "_transcoder", lambda: None)
    assert grpcframe.frame_response_lines(LINES) == expected


def test_python_path_without_the_library(tmp_path: Path) -> None:
    code = (
        "import sys; from observer.api import grpcframe as g; "
        "lines = open(sys.argv[1], 'rb').read().splitlines(); "
        "assert g.native_problem() and 'not found' in g.native_problem(), g.native_problem(); "
        "sys.stdout.buffer.write(g.frame_response_lines(lines))"
    )
    env = {**os.environ, "HUBBLECTL_NATIVE_LIB": str(tmp_path / "missing.so")}
    fixtures = str(REPO / "tests/fixtures/flows.jsonl")
    res = subprocess.run([sys.executable, "-c", code, fixtures], capture_output=True, env=env,
                         check=False, cwd=REPO)  # fmt: skip
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == grpcframe.frame_response_lines_python(LINES)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*LINES, CAMEL]),
            st.lists(st.tuples(st.integers(0, 1500), st.binary(max_size=2)), max_size=2),
        ),
        max_size=6,
    )
)
def test_mutated_batches_same_bytes_or_same_error(
    built: None, batch: list[tuple[bytes, list[tuple[int, bytes]]]]
) -> None:
    lines = []
    for line, edits in batch:
        data = bytearray(line)
        for pos, chunk in edits:
            p = pos % (len(data) + 1)
            data[p : p + len(chunk)] = chunk
        lines.append(bytes(data))
    assert outcome(grpcframe.frame_response_lines, lines) == outcome(
        grpcframe.frame_response_lines_python, lines
    )
