"""The native compact path (native/hbcompact.c via compact_native) prints exactly what the
generic formatter prints, for well-formed lines and for every kind of odd JSON text.

Differential: the same chunks through ``CompactPrinter`` with the native path, the Python
fast path and the generic formatter, compared as (stdout, stderr, exception type). The JSON
text of generated flows is also rewritten in ways orjson reads alike or rejects (spacing,
escaped keys, duplicate keys, number spellings, raw control bytes, bad UTF-8, surrogates,
truncation), since the C code reads the bytes, not the decoded values. Skipped when the
library is not built (``make -C native``); the Python path is then what the CLI uses.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubblectl.errors import HubblectlError
from hubblectl.printer import compact_fast, compact_native
from hubblectl.printer.compact import CompactPrinter
from hubblectl.printer.compact_native import DECLINED, DONE, MISS_TEMPLATE, MISS_TIME, OTHER
from hubblectl.printer.options import PrinterOptions

from .test_printer_compact_fast import FIXTURE_LINES, OPTION_SETS, OPTIONS, flow_groups

if compact_native.load_functions() is None:
    if os.environ.get("HUBBLECTL_REQUIRE_BPF") == "1":  # CI: a missing library is a failure
        raise RuntimeError(
            "native/build/libhbflow.so not built (make -C native); HUBBLECTL_REQUIRE_BPF=1"
        )
    pytestmark = pytest.mark.skip(reason="native/build/libhbflow.so not built (make -C native)")

Outcome = tuple[str, str, str]


def outcome(chunks: list[bytes], opts: PrinterOptions, mode: str) -> Outcome:
    """stdout, stderr and the name of the exception raised (if any) for these chunks."""
    out, err = io.StringIO(), io.StringIO()
    printer = CompactPrinter(
        opts,
        out,
        err,
        fast=mode != "generic",
        native={"native": True, "python": False, "generic": False}[mode],
    )
    if mode == "native":
        assert printer.native
    raised = ""
    try:
        for chunk in chunks:
            printer.write_json(chunk)
    except Exception as e:  # compared across modes
        raised = type(e).__name__
    printer.close()
    return out.getvalue(), err.getvalue(), raised


def check_modes(chunks: list[bytes], opts: PrinterOptions) -> Outcome:
    expected = outcome(chunks, opts, "generic")
    assert outcome(chunks, opts, "python") == expected
    assert outcome(chunks, opts, "native") == expected
    return expected


# --- fixtures -------------------------------------------------------------------------------


@pytest.mark.parametrize("opts", OPTION_SETS[::7], ids=repr)
def test_fixture_chunks(opts: PrinterOptions) -> None:
    whole = b"".join(FIXTURE_LINES)
    check_modes([whole, whole, *FIXTURE_LINES], opts)


@pytest.mark.parametrize(
    "opts",
    [PrinterOptions(), PrinterOptions(color=True, print_node_name=True, time_format="RFC3339Nano")],
    ids=["default", "color_node_nano"],
)
def test_learnt_lines_render_in_c(opts: PrinterOptions) -> None:
    """Once a chunk has been printed, the fixture flows (traces, drops, policy verdicts, L7,
    ICMP) come out of C whole; only responses that are not flows are declined."""
    whole = b"".join(FIXTURE_LINES)
    printer = CompactPrinter(opts, io.StringIO(), io.StringIO(), native=True)
    printer.write_json(whole)
    native = printer._native
    assert native is not None
    pos, rendered, declined = 0, 0, []
    while True:
        done = native.render(whole, pos)
        rendered += done.lines
        if done.status == DONE:
            break
        assert done.status == DECLINED
        declined.append(orjson.loads(whole[done.stop : done.decline_end]))
        assert done.reasons == OTHER
        pos = done.decline_end
    assert all("flow" not in response for response in declined)
    assert rendered == len(FIXTURE_LINES) - len(declined)


def test_new_second_and_new_template_are_misses() -> None:
    printer = CompactPrinter(PrinterOptions(), io.StringIO(), io.StringIO(), native=True)
    native = printer._native
    assert native is not None
    line = FIXTURE_LINES[0]
    first = native.render(line, 0)
    assert (first.status, first.reasons) == (DECLINED, MISS_TIME | MISS_TEMPLATE)
    printer.write_json(line)
    assert native.render(line, 0).lines == 1
    flow = orjson.loads(line)
    flow["flow"]["time"] = "2026-11-26T12:00:09.5Z"
    later = orjson.dumps(flow)
    assert native.render(later, 0).reasons == MISS_TIME
    flow["flow"]["Summary"] = "other"  # printed as it stands: the same template
    assert native.render(orjson.dumps(flow), 0).reasons == MISS_TIME
    flow["flow"]["verdict"] = "DROPPED"
    assert native.render(orjson.dumps(flow), 0).reasons == MISS_TIME | MISS_TEMPLATE


@pytest.mark.parametrize(
    "opts", [PrinterOptions(), PrinterOptions(color=True, print_node_name=True)], ids=repr
)
def test_summaries_share_a_template(opts: PrinterOptions) -> None:
    """Flows that differ only in a plain printable ASCII Summary (L7 flows: one per URL)
    are rendered in C from one template; other summaries go through Python."""
    summaries = ["GET http://x/1", "", "a)", "(", " ", "~!", "x\x7f", "\u00fc", "a\\b", "\x1b"]
    lines = []
    for text in summaries:
        response = orjson.loads(FIXTURE_LINES[0])
        response["flow"]["Summary"] = text
        lines.append(orjson.dumps(response) + b"\n")
    with_trace = orjson.loads(lines[0])
    with_trace["flow"]["ip_trace_id"] = {"trace_id": 5}
    lines.append(orjson.dumps(with_trace) + b"\n")
    check_modes([b"".join(lines), b"".join(lines)], opts)
    printer = CompactPrinter(opts, io.StringIO(), io.StringIO(), native=True)
    printer.write_json(lines[0])
    native = printer._native
    assert native is not None
    plain = [line for line, text in zip(lines, summaries, strict=False) if text.isascii()]
    plain = [line for line in plain if not any(c in line for c in (b"\\", b"\x7f"))]
    assert len(plain) == 6
    done = native.render(b"".join(plain), 0)
    assert (done.status, done.lines) == (DONE, len(plain))


def test_back_off_when_lines_never_share_a_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """A window where most lines need a new template (a unique non-ASCII Summary each) pauses
    the native path for a while; then it is tried again. The output stays the same."""
    monkeypatch.setattr("hubblectl.printer.compact.WINDOW_LINES", 8)
    monkeypatch.setattr("hubblectl.printer.compact.PAUSE_LINES", 20)
    response = orjson.loads(FIXTURE_LINES[0])
    unique = []
    for i in range(24):
        response["flow"]["Summary"] = f"\u00fc{i}"
        unique.append(orjson.dumps(response) + b"\n")
    chunks = [b"".join(unique[i : i + 4]) for i in range(0, 24, 4)] + [FIXTURE_LINES[0]] * 30
    out, err = io.StringIO(), io.StringIO()
    printer = CompactPrinter(PrinterOptions(), out, err, native=True)
    paused = []
    for chunk in chunks:
        printer.write_json(chunk)
        paused.append(printer._paused)
    assert paused[:2] == [0, 20]  # 8 lines, all misses: paused
    assert paused[2:7] == [16, 12, 8, 4, 3]  # the Python path counts down
    assert paused[-1] <= 0  # and the native path is back
    assert (out.getvalue(), err.getvalue(), "") == outcome(chunks, PrinterOptions(), "generic")


def test_native_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hubblectl.printer.compact.load_functions", lambda: None)
    with pytest.raises(HubblectlError):
        CompactPrinter(PrinterOptions(), io.StringIO(), io.StringIO(), native=True)
    printer = CompactPrinter(PrinterOptions(), io.StringIO(), io.StringIO())
    assert not printer.native  # the Python path


def test_small_output_buffer_and_cache_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compact_native, "INITIAL_OUT", 16)
    monkeypatch.setattr(compact_fast, "CACHE_LIMIT", 3)
    lines = []
    for i in range(40):
        response = orjson.loads(FIXTURE_LINES[i % len(FIXTURE_LINES)])
        if "flow" in response:
            response["flow"]["time"] = f"2026-11-26T12:00:{i % 7:02d}.{i:03d}5Z"
            response["flow"]["Summary"] = f"s{i % 5}"
        lines.append(orjson.dumps(response) + b"\n")
    for opts in (PrinterOptions(), PrinterOptions(print_node_name=True, color=True)):
        check_modes([b"".join(lines), *lines, b"".join(lines)], opts)


# --- odd JSON text --------------------------------------------------------------------------

EDGE_LINES = [
    b"",
    b"   \t",
    b"\r",
    b"\x0b",
    b'{"flow": null}',
    b'{"flow": [1]}',
    b'{"fl\\u006fw": {"IP": {"source": "a", "destination": "b"}}}',
    b"{}",
    b"[]",
    b'{"flow": {}}',
    b'{"flow": {}} {}',
    b'{"flow": {}}\x0c',
    b'{"flow": {"time": "x"}, "flow": {}}',
    b'{"node_status": {"state_change": "NODE_ERROR", "node_names": ["a\\u001b"]}}',
    b'{"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "3"}}',
    b'{"flow": {"time": "2026-11-26T12:00:01Z", "Summary": "\xff"}}',
    b'{"flow": {"time": "2026-11-26T12:00:01Z", "Summary": "\\ud800"}}',
    b'{"flow": {"time": 1e400}}',
    b'{"flow": ' * 80 + b"{}" + b"}" * 80,
]


def _variants(line: bytes) -> list[bytes]:
    """The same response written differently, and broken in small ways."""
    value = orjson.loads(line)
    out = [
        json.dumps(value).encode(),  # spaces, \\uXXXX for non-ASCII
        json.dumps(value, ensure_ascii=False, indent=None, separators=(",", ":")).encode(),
        b" " + line.replace(b":", b" :\t", 3) + b" \r",
        line.replace(b'"IP"', b'"\\u0049P"'),
        line.replace(b'"source"', b'"sourc\\u0065"', 1),
        line.replace(b'{"time"', b'{"verdict":"DROPPED","time"', 1),
        line.replace(b'"verdict"', b'"verdict":"ERROR","verdict"', 1),
        line.replace(b'"IP":{', b'"IP":{"source":"9.9.9.9",', 1),
        line.replace(b'_port":', b'_port":-', 1),
        line.replace(b'"destination_port":80', b'"destination_port":80.0', 1),
        line.replace(b'"destination_port":80', b'"destination_port":8e1', 1),
        line.replace(b'"destination_port":80', b'"destination_port":0', 1),
        line.replace(b'"destination_port":80', b'"destination_port":18446744073709551616', 1),
        line.replace(b'"identity":12345', b'"identity":12345.0', 1),
        line.replace(b'"identity":12345', b'"identity":"12345"', 1),
        line.replace(b'"TCP"', b'"UDP":null,"TCP"', 1),
        line.replace(b'"TCP"', b'"TCP":null,"SCTP"', 1),
        line.replace(b'"l4":{', b'"l4":{"SCTP":{"source_port":1,"destination_port":2},', 1),
        line.replace(b'"Summary":"', b'"Summary":"\x1b[2J', 1),
        line.replace(b'"Summary":"', b'"Summary":"\\u001b\\r\\n\\t\\"\\\\\\/', 1),
        line.replace(b'"Summary":"', b'"Summary":"\x07', 1),
        line.replace(b'"Summary":"', b'"Summary":"\xc3\xbc\xe2\x80\xae\xc2\x9b', 1),
        line.replace(b'"Summary":"', b'"Summary":"\xc3', 1),
        line.replace(b'"Summary":"', b'"Summary":"\xed\xa0\x80', 1),
        line.replace(b'"Summary":"', b'"Summary":"\\udc00', 1),
        line.replace(b'"pod_name":"', b'"pod_name":"../', 1),
        line.replace(b'Z"', b'z"', 1),
        line.replace(b'Z"', b'+01:00"', 1),
        line.replace(b".", b".1234567891", 1),
        line.replace(b'"event_type":{', b'"event_type":{"sub_type":3,', 1),
        line.replace(b'"is_reply":false', b'"is_reply":0', 1),
        line.replace(b'"is_reply":false', b'"is_reply":null', 1),
        line.replace(b'"l4":', b'"l7":{"type":"REQUEST","dns":null},"l4":', 1),
        line.replace(
            b'"l4":', b'"l7":{"type":"REQUEST","dns":{"observation_source":"x"}},"l4":', 1
        ),
        line.replace(b'"l4":', b'"l7":{"type":"REQUEST","dns":[]},"l4":', 1),
        line.replace(b'"l4":', b'"l7":[],"l4":', 1),
        line.replace(b'"l4":', b'"source_names":["a.example"],"l4":', 1),
        line.replace(b'"l4":', b'"auth_type":"SPIRE","ip_trace_id":{"trace_id":3},"l4":', 1),
        line.replace(b'"l4":', b'"destination_service":{"namespace":"x","name":"y"},"l4":', 1),
        line.replace(b'"l4":', b'"debug_capture_point":"DBG_CAPTURE_DELIVERY","l4":', 1),
        line.replace(b'"event_type":{"type":4', b'"event_type":{"type":3', 1),
        line.replace(b'"event_type":{"type":4', b'"event_type":{"type":7', 1),
        line.replace(b'"IP":{', b'"IP":[', 1),
        line.replace(b'"IP"', b'"ip"', 1),
        line[: len(line) // 2],
        line.replace(b"}", b"}}", 1),
        line.replace(b"true", b"True", 1),
        line.replace(b'"ID":12', b'"ID":1' + b"0" * 40, 1),
    ]
    return out


@pytest.mark.parametrize(
    "opts",
    [PrinterOptions(), PrinterOptions(print_node_name=True, numeric=True, color=True)],
    ids=["default", "node_numeric_color"],
)
def test_odd_text_line_by_line(opts: PrinterOptions) -> None:
    lines = [*EDGE_LINES]
    for line in FIXTURE_LINES[:3]:
        lines += _variants(line.rstrip(b"\n"))
    for line in lines:
        check_modes([FIXTURE_LINES[0] + line + b"\n" + FIXTURE_LINES[1]], opts)
        check_modes([line, line + b"\n"], opts)


# --- hypothesis -----------------------------------------------------------------------------

SPELLINGS = st.sampled_from(["orjson", "json", "json-compact", "spaced", "escaped-keys", "cr"])


def spell(response: dict[str, Any], how: str) -> bytes:
    raw = orjson.dumps(response)
    if how == "json":
        return json.dumps(response).encode()
    if how == "json-compact":
        return json.dumps(response, ensure_ascii=False, separators=(",", ":")).encode()
    if how == "spaced":
        return raw.replace(b":", b": ").replace(b",", b" ,\t")
    if how == "escaped-keys":
        return raw.replace(b'"type"', b'"typ\\u0065"')
    if how == "cr":
        return raw + b"\r"
    return raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows=flow_groups(), opts=OPTIONS, how=st.lists(SPELLINGS, min_size=1, max_size=3))
def test_native_equals_generic(
    flows: list[dict[str, Any]], opts: PrinterOptions, how: list[str]
) -> None:
    lines = [
        spell({"flow": f, "node_name": "n", "time": "x"}, how[i % len(how)]) + b"\n"
        for i, f in enumerate(flows)
    ]
    # twice: the second chunk meets the templates and times the first one taught
    check_modes([b"".join(lines), b"".join(lines), *lines], opts)
