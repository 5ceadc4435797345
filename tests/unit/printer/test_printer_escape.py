"""No control sequence from the data reaches the terminal, in any format, colour or not."""

from __future__ import annotations

import io
import re
from typing import Any

import orjson
import pytest

from hubblectl.printer import make_printer
from hubblectl.printer.escape import escape, go_quote, sanitize_json
from hubblectl.printer.options import PrinterOptions

CLEAR = "\x1b[2J"
OSC_TITLE = "\x1b]0;pwned\x07"
OSC52_CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"
CSI_8BIT = "\x9b2J"
FAKE_COLOR = "\x1b[31m"  # identical to our own red: Hubble would let it through

EVIL_DNS = f"evil{CLEAR}.example.com{OSC_TITLE}"
EVIL_PATH = f"/v1/{OSC52_CLIPBOARD}x\rOK\x00"
EVIL_LABEL = f"k8s:app=a{CLEAR}{CSI_8BIT}"
EVIL_POD = f"pod{FAKE_COLOR}\u202egnp.exe\x7f"

EVIL_FLOW: dict[str, Any] = {
    "time": "2026-01-01T00:00:00Z",
    "verdict": "FORWARDED",
    "IP": {"source": "10.0.0.1", "destination": "10.0.0.2", "ipVersion": "IPv4"},
    "l4": {"TCP": {"source_port": 1234, "destination_port": 80}},
    "source": {
        "identity": 1234,
        "namespace": f"ns{CLEAR}",
        "pod_name": EVIL_POD,
        "labels": [EVIL_LABEL],
    },
    "destination": {"identity": 2},
    "Type": "L7",
    "node_name": f"node{OSC_TITLE}",
    "l7": {
        "type": "REQUEST",
        "http": {"method": "GET", "url": f"http://x{EVIL_PATH}"},
        "dns": {"query": EVIL_DNS, "observation_source": f"proxy{CLEAR}"},
    },
    "destination_names": [EVIL_DNS],
    "event_type": {"type": 129},
    "is_reply": False,
    "Summary": f"DNS Query {EVIL_DNS} A; HTTP GET {EVIL_PATH}",
}

# Allowed: our colour codes only (SGR with the colour numbers the printer uses).
OUR_SGR = re.compile(r"\x1b\[(?:0|31|32|33|35|36)m")


def _render(fmt: str, color: bool) -> str:
    out = io.StringIO()
    printer = make_printer(
        fmt, PrinterOptions(color=color, print_node_name=True), out, io.StringIO()
    )
    printer.write({"flow": EVIL_FLOW, "node_name": "n", "time": "2026-01-01T00:00:00Z"})
    printer.close()
    return out.getvalue()


def _assert_no_raw_controls(text: str) -> None:
    stripped = OUR_SGR.sub("", text)
    bad = [
        c
        for c in stripped
        if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c == "\u202e"
    ]
    assert not bad, f"raw control characters leaked: {bad!r} in {text!r}"


@pytest.mark.parametrize("color", [False, True], ids=["plain", "color"])
@pytest.mark.parametrize("fmt", ["compact", "dict", "table"])
def test_text_formats_escape_everything(fmt: str, color: bool) -> None:
    text = _render(fmt, color)
    _assert_no_raw_controls(text)
    assert "^[[2J" in text  # ESC shown as ^[, like Hubble
    assert "\\r" in text  # CR shown as a literal backslash-r
    if color and fmt != "table":  # tables are never coloured
        # The fake red from the pod name is escaped, ours is present.
        assert "pod^[[31m" in text
        assert "\x1b[36m" in text


def test_json_output_keeps_data_but_escapes_controls() -> None:
    text = _render("json", False)
    _assert_no_raw_controls(text)
    back = orjson.loads(text)
    assert back["flow"]["l7"]["dns"]["query"] == EVIL_DNS
    assert back["flow"]["source"]["labels"] == [EVIL_LABEL]


def test_json_fast_path_sanitizes_raw_bytes_from_a_bad_server() -> None:
    raw = b'{"flow":{"Summary":"a\x1b[2Jb\r\x9b\xc2\x9bc\x7f"}}\n'
    out = io.StringIO()
    out.buffer = io.BytesIO()  # type: ignore[misc]
    printer = make_printer("json", PrinterOptions(), out, io.StringIO())
    printer.write_json(raw)
    data = out.buffer.getvalue()  # type: ignore[attr-defined]
    assert (
        b"\x1b" not in data
        and b"\r" not in data
        and b"\x7f" not in data
        and b"\xc2\x9b" not in data
    )
    assert b"\\u001b[2J" in data and b"\\u009b" in data
    assert data.endswith(b"\n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain text", "plain text"),
        ("\x1b[2J", "^[[2J"),
        ("a\rb", "a\\rb"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("bell\x07", "bell\\x07"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b31m", "csi\\x9b31m"),
        ("rlo\u202eabc", "rlo\\u202eabc"),
        ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),
    ],
    ids=["plain", "esc", "cr", "lf-tab", "bel", "nul", "del", "c1-csi", "bidi", "unicode-kept"],
)
def test_escape_table(raw: str, expected: str) -> None:
    assert escape(raw) == expected
    assert escape(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":"b"}\n', b'{"a":"b"}\n'),
        (b'{"a":"\x1b"}\n', b'{"a":"\\u001b"}\n'),
        (b'{"a":"\xc2\x85"}\n', b'{"a":"\\u0085"}\n'),
        (b'{"a":"\xc3\xa9"}\n', b'{"a":"\xc3\xa9"}\n'),
        (b'{"a":"\xe2\x80\xae"}\n', b'{"a":"\\u202e"}\n'),
        (b'{"a":"\xe2\x80\x94"}\n', b'{"a":"\xe2\x80\x94"}\n'),
    ],
    ids=["clean", "esc", "c1-nel", "e-acute-kept", "bidi-rlo", "em-dash-kept"],
)
def test_sanitize_json_table(raw: bytes, expected: bytes) -> None:
    assert sanitize_json(raw) == expected


def test_go_quote() -> None:
    assert go_quote('conn "refused"\x1b[2J\n') == '"conn \\"refused\\"\\x1b[2J\\n"'
