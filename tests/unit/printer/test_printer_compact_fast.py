"""The compact printer's fast path prints exactly what the generic formatter prints.

Differential tests: every fixture flow under every option combination, and
hypothesis-generated flows (missing fields, IPv6, ICMP, drop reasons, policy verdicts, L7,
services and DNS names, escape sequences in names, values of unexpected JSON types), each
through ``by_fields`` (any mapping), ``from_json`` (JSON-decoded flows, line templates) and
the printer's ``write_json``, compared with ``compact.format_flow``. Flows are formatted in
groups that differ in one field, twice, so the caches and line templates are hit with values
that must not share an entry.
"""

from __future__ import annotations

import io
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubblectl.errors import ServerError
from hubblectl.printer import compact_fast
from hubblectl.printer.compact import CompactPrinter, format_flow
from hubblectl.printer.compact_fast import make_fast_formatter, make_time_renderer
from hubblectl.printer.escape import _NEEDS_ESCAPE, escape
from hubblectl.printer.options import Colors, PrinterOptions
from hubblectl.printer.timefmt import TIME_FORMATS, format_time_value

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl"
FIXTURE_LINES = [line + b"\n" for line in FIXTURES.read_bytes().splitlines() if line]
FIXTURE_FLOWS = [
    orjson.loads(line)["flow"] for line in FIXTURE_LINES if line.startswith(b'{"flow"')
]
LAYOUTS = (*TIME_FORMATS, "rfc3339nano", "Kitchen")
OPTION_SETS = [
    PrinterOptions(
        time_format=layout,
        color=color,
        numeric=numeric,
        print_node_name=node,
        print_policy_names=policies,
        ip_translation=translation,
    )
    for layout, color, numeric, node, policies, translation in itertools.product(
        LAYOUTS, *[(False, True)] * 5
    )
    if isinstance(layout, str)  # (for mypy: product of mixed tuples yields objects)
    and isinstance(color, bool)
    and isinstance(numeric, bool)
    and isinstance(node, bool)
    and isinstance(policies, bool)
    and isinstance(translation, bool)
]


def generic(flow: dict[str, Any], opts: PrinterOptions) -> str:
    return format_flow(
        {"flow": flow},
        flow,
        time_format=opts.time_format,
        print_node_name=opts.print_node_name,
        translate=opts.translate_ips,
        print_policy_names=opts.print_policy_names,
        colors=Colors(opts.color),
    )


def check_same(
    fast: Callable[[dict[str, Any]], str | None], flow: dict[str, Any], expected: str
) -> bool:
    """The fast function declines (None) or prints ``expected``; True if it printed."""
    got = fast(flow)
    assert got is None or got == expected, (flow, got, expected)
    return got is not None


def check_flows(flows: list[dict[str, Any]], opts: PrinterOptions) -> None:
    """Both fast functions against the generic formatter, twice over (caches warm)."""
    fast = make_fast_formatter(opts, Colors(opts.color))
    decoded = [orjson.loads(orjson.dumps(flow)) for flow in flows]
    for _ in range(2):
        for flow, from_json in zip(flows, decoded, strict=True):
            try:
                expected = generic(flow, opts)
            except Exception:  # the generic formatter fails: the printer would fail the same
                continue
            check_same(fast.by_fields, flow, expected)
            check_same(fast.from_json, from_json, generic(from_json, opts))


def render_lines(
    lines: list[bytes], opts: PrinterOptions, *, fast: bool, native: bool | None = False
) -> tuple[str, str]:
    """What the printer prints for these chunks: generic (``fast=False``), the Python fast
    path (``native=False``) or the native path when the library loads (``native=None``)."""
    out, err = io.StringIO(), io.StringIO()
    printer = CompactPrinter(opts, out, err, fast=fast, native=native)
    for line in lines:
        printer.write_json(line)
    printer.close()
    return out.getvalue(), err.getvalue()


# --- fixtures -------------------------------------------------------------------------------


@pytest.mark.parametrize("opts", OPTION_SETS, ids=repr)
def test_fixture_flows_every_option_set(opts: PrinterOptions) -> None:
    check_flows(FIXTURE_FLOWS, opts)
    chunk = [b"".join(FIXTURE_LINES)]
    expected = render_lines(chunk, opts, fast=False)
    assert render_lines(chunk, opts, fast=True) == expected
    twice = render_lines(chunk * 2, opts, fast=True, native=None)  # templates learnt, then used
    assert twice == (expected[0] * 2, expected[1] * 2)


def test_fast_path_handles_the_common_shapes() -> None:
    """L3/L4 traces, drops, policy verdicts and L7 go through the fast path, not the generic
    fallback (which would be correct, only slow)."""
    for opts in (PrinterOptions(), PrinterOptions(color=True, print_node_name=True)):
        fast = make_fast_formatter(opts, Colors(opts.color))
        for flow in FIXTURE_FLOWS:
            for _ in range(2):
                assert fast.by_fields(flow) == generic(flow, opts)
                assert fast.from_json(flow) == generic(flow, opts)


def test_template_hit_with_new_time_and_ports() -> None:
    opts = PrinterOptions()
    fast = make_fast_formatter(opts, Colors(False))
    flow = dict(FIXTURE_FLOWS[0])
    assert fast.from_json(flow) == generic(flow, opts)
    flow2 = orjson.loads(orjson.dumps(flow))
    flow2["time"] = "2026-11-26T12:00:59.987654Z"
    flow2["l4"]["TCP"]["source_port"] = 1
    flow2["l4"]["TCP"]["destination_port"] = 0  # no port shown: another template
    line = fast.from_json(flow2)
    assert line == generic(flow2, opts)
    assert line is not None and line.startswith("Nov 26 12:00:59.987: default/xwing:1 (ID:12345)")
    assert "default/deathstar (ID:5678)" in line


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compact_fast, "CACHE_LIMIT", 3)
    flows = []
    for i in range(20):
        flow = orjson.loads(orjson.dumps(FIXTURE_FLOWS[i % len(FIXTURE_FLOWS)]))
        flow["source"]["pod_name"] = f"pod-{i}"
        flow["time"] = f"2026-11-26T12:00:{i:02d}.{i:03d}5Z"
        flows.append(flow)
    check_flows(flows, PrinterOptions(print_node_name=True))


# --- write_json -----------------------------------------------------------------------------


@pytest.mark.parametrize("native", [None, False], ids=["native", "python"])
def test_write_json_counts_lines_and_keeps_order(native: bool | None) -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = CompactPrinter(PrinterOptions(debug=True), out, err, native=native)
    printer.write_json(b"".join(FIXTURE_LINES) + b"  \n\n")
    printer.close()
    assert printer.line == len(FIXTURE_LINES) - 1  # flows and the lost event, not node status
    assert (out.getvalue(), err.getvalue()) == render_lines(
        [b"".join(FIXTURE_LINES)], PrinterOptions(debug=True), fast=False
    )


@pytest.mark.parametrize(
    "bad",
    [b"{not json}\n", b"[1, 2]\n", b'"flow"\n', b'{"flow": {}} {}\n'],
    ids=["malformed", "array", "string", "trailing"],
)
def test_write_json_bad_line_prints_nothing_of_its_chunk(bad: bytes) -> None:
    status = b'{"node_status":{"state_change":"NODE_ERROR","node_names":["a"]}}\n'
    chunk = FIXTURE_LINES[0] + status + bad + FIXTURE_LINES[1]
    for fast, native in ((True, None), (True, False), (False, False)):
        out, err = io.StringIO(), io.StringIO()
        printer = CompactPrinter(PrinterOptions(), out, err, fast=fast, native=native)
        printer.write_json(FIXTURE_LINES[2])
        with pytest.raises(ServerError):
            printer.write_json(chunk)
        printer.close()
        assert out.getvalue() == generic(FIXTURE_FLOWS[2], PrinterOptions())
        assert err.getvalue() == ""


def test_write_json_flow_that_is_not_an_object_prints_nothing() -> None:
    lines = [b'{"flow": null}\n{"flow": [1]}\n' + FIXTURE_LINES[0]]
    out, _ = render_lines(lines, PrinterOptions(), fast=True)
    assert out == generic(FIXTURE_FLOWS[0], PrinterOptions())
    assert render_lines(lines, PrinterOptions(), fast=True) == render_lines(
        lines, PrinterOptions(), fast=False
    )


def test_generic_failure_in_chunk_behaves_as_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow the generic formatter cannot print fails the same way with the fast path on:
    the flows before it in the chunk are printed, the error propagates."""
    flow = {"ethernet": {"source": "a"}, "time": "2026-11-26T12:00:01.123Z", "Summary": "boom"}
    chunk = FIXTURE_LINES[0] + orjson.dumps({"flow": flow}) + b"\n" + FIXTURE_LINES[1]
    real = format_flow

    def failing(response: Any, flow: Any, **kwargs: Any) -> str:
        if flow.get("Summary") == "boom":
            raise RuntimeError("boom")
        return real(response, flow, **kwargs)

    monkeypatch.setattr(sys.modules["hubblectl.printer.compact"], "format_flow", failing)
    results = []
    for fast, native in ((True, None), (True, False), (False, False)):
        out = io.StringIO()
        printer = CompactPrinter(PrinterOptions(), out, io.StringIO(), fast=fast, native=native)
        # the fast path declines an ethernet-only flow: it reaches `failing`
        with pytest.raises(RuntimeError):
            printer.write_json(chunk)
        printer.close()
        results.append(out.getvalue())
    assert results == [generic(FIXTURE_FLOWS[0], PrinterOptions())] * 3


# --- escape ---------------------------------------------------------------------------------


def test_printable_text_never_needs_escaping() -> None:
    """escape()'s fast check: whatever str.isprintable accepts, the escape set lacks."""
    printable = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isprintable())
    assert _NEEDS_ESCAPE.search(printable) is None
    assert escape(printable) == printable
    assert escape("a\x1b[31mb\u202e") == "a^[[31mb\\u202e"


# --- hypothesis -----------------------------------------------------------------------------

ABSENT = object()

WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-2, max_value=70000),
    st.sampled_from(["", "0", "1", "x", "5"]),
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from(["a", "type"]), st.integers(0, 2), max_size=1),
)
NASTY_TEXT = st.sampled_from(
    [
        "default",
        "kube-system",
        "",
        "a/b",
        "../x",
        "//x/",
        "a:b",
        "ns\x1b[31m",
        "pod\u202egnp",
        "x\r\n\t",
        "\x9b2J",
        "ünï",
        "a\x00b",
        "tab\there",
        " ",
    ]
)
TEXT = st.one_of(NASTY_TEXT, st.text(max_size=6))
NAME = st.one_of(NASTY_TEXT, st.sampled_from(["xwing", "deathstar", "coredns"]))
IPS = st.sampled_from(
    ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00:10:213::7", "192.0.2.10", "", "1.2.3.4\x1b[2J"]
)
PORT = st.one_of(st.integers(0, 65535), st.sampled_from([0, 53, 80, -1, 2**40]))


def maybe(
    strategy: st.SearchStrategy[Any], weird: bool = True, absent: int = 15
) -> st.SearchStrategy[Any]:
    """Absent ``absent``% of the time, a value of an unexpected type 3% (if ``weird``), else
    from ``strategy``: most flows are well formed, a few are odd in some field."""

    def pick(n: int) -> st.SearchStrategy[Any]:
        if n < absent:
            return st.just(ABSENT)
        if weird and n >= 97:
            return WEIRD
        return strategy

    return st.integers(0, 99).flatmap(pick)


def rare(strategy: st.SearchStrategy[Any], weird: bool = True) -> st.SearchStrategy[Any]:
    """A field most flows lack."""
    return maybe(strategy, weird, absent=75)


def obj(**members: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(members).map(
        lambda d: {k: v for k, v in d.items() if v is not ABSENT}
    )


def _time(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str, zone: str) -> str:
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"


TIMES = st.one_of(
    st.builds(
        _time,
        st.sampled_from([2026, 2024, 1970, 1, 9999, 0]),
        st.integers(1, 13),
        st.integers(0, 32),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 61),
        st.one_of(
            st.just(""),
            st.text("0123456789", min_size=1, max_size=10).map(lambda t: "." + t),
            st.sampled_from([".", ".\u0661\u0662\u0663", ".12a", ".\u00b2"]),
        ),
        st.sampled_from(["Z", "Z", "Z", "z", "+01:00", "-00:30", ""]),
    ),
    st.sampled_from(["", "N/A", "2026-11-26", "2026-11-26T12:00:01.123456789Zx"]),
)

PORTS = obj(source_port=maybe(PORT), destination_port=maybe(PORT), flags=maybe(st.just({})))
L4 = st.one_of(
    obj(TCP=PORTS),
    obj(UDP=PORTS),
    obj(SCTP=PORTS),
    obj(ICMPv4=st.just({"type": 8})),
    obj(ICMPv6=st.just({"type": 129})),
    obj(TCP=maybe(PORTS), UDP=maybe(PORTS)),
    st.just({}),
    WEIRD,
)
ENDPOINT = obj(
    ID=maybe(st.integers(0, 100), weird=False),
    identity=maybe(st.sampled_from([0, 1, 2, 4, 6, 10, 11, 5678, 12345, 16777217, -1])),
    namespace=maybe(NAME),
    pod_name=maybe(NAME),
    labels=maybe(st.lists(TEXT, max_size=2), weird=False),
)
EVENT_TYPE = obj(
    type=maybe(st.sampled_from([1, 2, 3, 4, 5, 7, 129, 130, 99, 0])),
    sub_type=maybe(st.one_of(st.integers(0, 300), st.sampled_from([133, 181, 256 + 5]))),
)
VERDICT = st.sampled_from(
    [
        "FORWARDED",
        "DROPPED",
        "ERROR",
        "AUDIT",
        "REDIRECTED",
        "TRACED",
        "TRANSLATED",
        "VERDICT_UNKNOWN",
        "",
        "X\x1b[2J",
    ]
)
DIRECTION = st.sampled_from(["INGRESS", "EGRESS", "TRAFFIC_DIRECTION_UNKNOWN", "", "up\x07"])
POLICIES = st.lists(
    obj(name=maybe(NAME, weird=False), kind=maybe(NAME, weird=False), namespace=maybe(NAME)),
    max_size=2,
)
L7 = obj(
    type=maybe(st.sampled_from(["REQUEST", "RESPONSE", "SAMPLE", "", "x\x1b"])),
    http=maybe(st.just({"code": 200}), weird=False),
    dns=maybe(obj(observation_source=maybe(st.sampled_from(["proxy", "", "\x1b"])))),
    kafka=maybe(st.just({}), weird=False),
)
SERVICE = obj(namespace=maybe(NAME), name=maybe(NAME))

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "time": maybe(TIMES),
    "verdict": maybe(VERDICT),
    "IP": maybe(obj(source=maybe(IPS), destination=maybe(IPS), ipVersion=st.just("IPv4"))),
    "ethernet": rare(obj(source=maybe(TEXT), destination=maybe(TEXT)), weird=False),
    "l4": maybe(L4),
    "source": maybe(ENDPOINT),
    "destination": maybe(ENDPOINT),
    "node_name": maybe(NAME),
    "event_type": maybe(EVENT_TYPE),
    "traffic_direction": maybe(DIRECTION),
    "policy_match_type": maybe(st.integers(0, 7)),
    "is_reply": maybe(st.booleans()),
    "Summary": maybe(TEXT),
    "l7": rare(L7, weird=False),
    "source_service": rare(SERVICE),
    "destination_service": rare(SERVICE),
    "source_names": rare(st.lists(NAME, max_size=2)),
    "destination_names": rare(st.lists(NAME, max_size=2)),
    "ip_trace_id": rare(obj(trace_id=maybe(st.integers(0, 5)))),
    "auth_type": rare(st.sampled_from(["SPIRE", "DISABLED", "TEST_ALWAYS_FAIL", ""])),
    "ingress_allowed_by": rare(POLICIES, weird=False),
    "egress_allowed_by": rare(POLICIES, weird=False),
    "egress_denied_by": rare(POLICIES, weird=False),
    "ingress_denied_by": rare(POLICIES, weird=False),
    "debug_capture_point": rare(st.sampled_from(["DBG_CAPTURE_DELIVERY", ""])),
    "sock_xlate_point": rare(st.sampled_from(["1", "SOCK_XLATE_POINT_PRE_DIRECTION_FWD"])),
}
# Most generated flows have the fields real flows have; the rest is left to chance.
COMMON = {
    "IP": obj(source=IPS, destination=IPS),
    "source": ENDPOINT,
    "destination": ENDPOINT,
    "l4": L4,
    "event_type": EVENT_TYPE,
}


@st.composite
def flow_groups(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A flow and variants of it that each differ in one field."""
    fields = {name: draw(strategy, label=name) for name, strategy in FIELDS.items()}
    if draw(st.booleans()):
        fields.update({name: draw(strategy) for name, strategy in COMMON.items()})
    base = {k: v for k, v in fields.items() if v is not ABSENT}
    flows = [base]
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=4)):
        variant = dict(base)
        value = draw(FIELDS[name])
        if value is ABSENT:
            variant.pop(name, None)
        else:
            variant[name] = value
        flows.append(variant)
    return flows


OPTIONS = st.builds(
    PrinterOptions,
    time_format=st.sampled_from(LAYOUTS),
    color=st.booleans(),
    numeric=st.booleans(),
    print_node_name=st.booleans(),
    print_policy_names=st.booleans(),
    ip_translation=st.booleans(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows=flow_groups(), opts=OPTIONS)
def test_fast_equals_generic(flows: list[dict[str, Any]], opts: PrinterOptions) -> None:
    check_flows(flows, opts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows=flow_groups(), opts=OPTIONS)
def test_write_json_equals_generic(flows: list[dict[str, Any]], opts: PrinterOptions) -> None:
    lines = [orjson.dumps({"flow": f, "node_name": "n", "time": "x"}) + b"\n" for f in flows]
    chunks = [b"".join(lines), *lines]
    expected = render_lines(chunks, opts, fast=False)
    assert render_lines(chunks, opts, fast=True) == expected
    assert render_lines(chunks, opts, fast=True, native=None) == expected


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(TIMES, WEIRD), min_size=1, max_size=6),
    layout=st.sampled_from(LAYOUTS),
)
def test_time_renderer_equals_format_time_value(values: list[Any], layout: str) -> None:
    render = make_time_renderer(layout)
    for value in values * 2:
        try:
            expected = format_time_value(value, layout)
        except ValueError:  # digits str.isdigit accepts and int() does not: generic fails too
            continue
        assert render(value) == expected, value


def test_time_renderer_reuses_a_millisecond_only_with_valid_tails() -> None:
    render = make_time_renderer("StampMilli")
    assert render("2026-11-26T12:00:01.123456789Z") == "Nov 26 12:00:01.123"
    assert render("2026-11-26T12:00:01.1239Z") == "Nov 26 12:00:01.123"
    assert render("2026-11-26T12:00:01.123Z") == "Nov 26 12:00:01.123"
    assert render("2026-11-26T12:00:01.1234567890Z") == "N/A"  # ten digits
    assert render("2026-11-26T12:00:01.123\u0661Z") == format_time_value(
        "2026-11-26T12:00:01.123\u0661Z"
    )
    assert render("2026-11-26T12:00:01.123x") == "N/A"
    nano = make_time_renderer("RFC3339Nano")
    assert nano("2026-11-26T12:00:01.123456780Z") == "2026-11-26T12:00:01.12345678Z"
    assert nano("2026-11-26T12:00:01.100Z") == "2026-11-26T12:00:01.1Z"
    assert nano("2026-02-30T12:00:01.100Z") == "N/A"
    assert re.fullmatch(r"N/A", make_time_renderer("StampMilli")("2026-13-01T00:00:00Z"))


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("source_service", {"namespace": "svc-ns", "name": "svc"}, "svc-ns/xwing"),
        ("destination_service", {"namespace": "svc-ns", "name": "svc"}, "svc-ns/deathstar"),
        ("source_names", ["a.example"], "<- a.example:41391"),
        ("destination_names", ["b.example"], "-> b.example:80"),
        ("ip_trace_id", {"trace_id": 7}, "(IP Trace ID: 7; "),
        ("auth_type", "SPIRE", "; Auth: SPIRE)"),
    ],
)
def test_each_rare_key_changes_the_template(name: str, value: Any, shown: str) -> None:
    """A flow that differs from a cached one only in a rare key gets its own line."""
    assert name in compact_fast._RARE_KEYS
    opts = PrinterOptions()
    fast = make_fast_formatter(opts, Colors(False))
    base = orjson.loads(orjson.dumps(FIXTURE_FLOWS[0]))
    if name.endswith("_names"):  # names show only for an endpoint without a pod
        del base["source" if name == "source_names" else "destination"]["pod_name"]
    if name == "source_names":
        base["is_reply"] = True  # the source side is printed second
    assert fast.from_json(base) == generic(base, opts)
    assert fast.from_json(base) == generic(base, opts)  # cached
    changed = {**base, name: value}
    line = fast.from_json(changed)
    assert line == generic(changed, opts)
    assert line is not None and shown in line, line
