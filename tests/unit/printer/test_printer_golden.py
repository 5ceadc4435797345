"""Golden output of every format over tests/fixtures/flows.jsonl.

Review golden files against reference §7 (Hubble's exact formats) when they change;
regenerate with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from hubblectl.printer import make_printer
from hubblectl.printer.options import PrinterOptions


class _Stream(io.StringIO):
    """A text stream with a binary .buffer view, like sys.stdout."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()

    def text(self) -> str:
        return self.getvalue() + self.buffer.getvalue().decode()


def render(
    fmt: str, opts: PrinterOptions, lines: list[bytes], *, as_dicts: bool = False
) -> tuple[str, str]:
    out, err = _Stream(), _Stream()
    printer = make_printer(fmt, opts, out, err)
    for line in lines:
        if as_dicts:
            printer.write(orjson.loads(line))
        else:
            printer.write_json(line)
    printer.close()
    return out.text(), err.text()


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("compact", "compact.txt", {}),
    ("compact", "compact_node_name.txt", {"print_node_name": True}),
    ("compact", "compact_numeric.txt", {"numeric": True}),
    ("compact", "compact_color.txt", {"color": True}),
    ("compact", "compact_policy_names.txt", {"print_policy_names": True}),
    ("compact", "compact_debug_rfc3339nano.txt", {"debug": True, "time_format": "RFC3339Nano"}),
    ("dict", "dict.txt", {}),
    ("dict", "dict_node_name_color.txt", {"print_node_name": True, "color": True}),
    ("table", "table.txt", {}),
    (
        "table",
        "table_node_name_numeric.txt",
        {"print_node_name": True, "numeric": True, "color": True},
    ),
    ("json", "json.txt", {}),
    ("jsonpb", "json.txt", {}),
]


@pytest.mark.parametrize(
    ("fmt", "golden_name", "options"), CASES, ids=[c[1] + "-" + c[0] for c in CASES]
)
def test_format_golden(
    fmt: str,
    golden_name: str,
    options: dict[str, Any],
    fixture_lines: list[bytes],
    golden: Callable[[str, str], None],
) -> None:
    out, err = render(fmt, PrinterOptions(**options), fixture_lines)
    golden(golden_name, f"--- stdout ---\n{out}--- stderr ---\n{err}")


@pytest.mark.parametrize("fmt", ["compact", "dict", "table", "json"])
def test_dicts_and_json_lines_print_the_same(fmt: str, fixture_lines: list[bytes]) -> None:
    opts = PrinterOptions(print_node_name=True, debug=True)
    assert render(fmt, opts, fixture_lines) == render(fmt, opts, fixture_lines, as_dicts=True)


def test_batched_chunk_equals_line_by_line(fixture_lines: list[bytes]) -> None:
    opts = PrinterOptions(debug=True)
    out1, err1 = _Stream(), _Stream()
    printer = make_printer("compact", opts, out1, err1)
    printer.write_json(b"".join(fixture_lines))
    printer.close()
    assert (out1.text(), err1.text()) == render("compact", opts, fixture_lines)


def test_json_writes_lines_byte_for_byte(fixture_lines: list[bytes]) -> None:
    out, err = render("json", PrinterOptions(), fixture_lines)
    flows_and_lost = [line for line in fixture_lines if b'"node_status"' not in line]
    assert out.encode() == b"".join(flows_and_lost)
    # NODE_UNAVAILABLE is shown on stderr even without --debug, as Hubble does.
    assert err.encode() == fixture_lines[-1]


def test_silent_errors_drops_node_status(fixture_lines: list[bytes]) -> None:
    for fmt in ("compact", "dict", "json"):
        _, err = render(fmt, PrinterOptions(silent_errors=True), fixture_lines)
        assert err == ""


@pytest.mark.parametrize(
    ("state", "debug", "shown"),
    [
        ("NODE_CONNECTED", False, False),
        ("NODE_CONNECTED", True, True),
        ("NODE_GONE", False, False),
        ("NODE_UNAVAILABLE", False, True),
        ("NODE_ERROR", False, True),
    ],
    ids=["connected-hidden", "connected-debug", "gone-hidden", "unavailable", "error"],
)
def test_node_status_visibility(state: str, debug: bool, shown: bool) -> None:
    line = orjson.dumps(
        {
            "node_status": {"state_change": state, "node_names": ["a"], "message": "m"},
            "time": "2026-01-01T00:00:00Z",
        }
    )
    out, err = render("compact", PrinterOptions(debug=debug), [line + b"\n"])
    assert out == ""
    assert bool(err) is shown
