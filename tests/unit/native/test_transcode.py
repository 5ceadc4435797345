"""The native JSON -> protobuf transcoder (native/hbpb.c) against the Python path.

The reference for a line is ``convert.dict_to_proto(orjson.loads(line), cls)`` serialized
(for ``observer.GetFlowsResponse``: exactly ``grpcframe.frame_response_line``). For every line
the transcoder either declines it (``None``: the Python path converts it) or gives the
reference's frame byte for byte. Lines in the canonical shapes must not be declined; lines
the Python path rejects must be. Besides the real schema, a test-only message
(``hbpbtest.AllKinds``) has every field kind the schema table knows, including the ones our
protos do not use (sint, fixed, sfixed, double, packed lists, proto3 optional, aliases).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer import native
from observer.api import grpcframe
from observer.api.v1.flow import flow_pb2
from observer.api.v1.observer import observer_pb2
from observer.errors import ObserverError
from observer.native import transcode as T

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl"
LINES = [line for line in FIXTURES.read_bytes().splitlines() if line]
RESPONSE = observer_pb2.GetFlowsResponse
TS_NAME = "google.protobuf.Timestamp"
WRAPPERS = {
    "google.protobuf.BoolValue",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.StringValue",
    "google.protobuf.DoubleValue",
}


# --- the test-only message with every kind ------------------------------------------------------


def _all_kinds_class() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    for dep in (timestamp_pb2.DESCRIPTOR, wrappers_pb2.DESCRIPTOR):
        fdp = descriptor_pb2.FileDescriptorProto()
        dep.CopyToProto(fdp)
        pool.Add(fdp)
    f = descriptor_pb2.FileDescriptorProto(
        name="hbpbtest/all_kinds.proto",
        package="hbpbtest",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"],
    )
    color = f.enum_type.add(name="Color")
    color.options.allow_alias = True
    for name, number in [
        ("COLOR_UNSPECIFIED", 0),
        ("RED", 1),
        ("CRIMSON", 1),
        ("NEG", -5),
        ("MAX", 2**31 - 1),
        ("MIN", -(2**31)),
    ]:
        color.value.add(name=name, number=number)
    FD = descriptor_pb2.FieldDescriptorProto
    inner = f.message_type.add(name="Inner")
    inner.field.add(name="s", number=1, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL)
    inner.field.add(name="i", number=2, type=FD.TYPE_INT32, label=FD.LABEL_OPTIONAL)
    inner.field.add(
        name="children",
        number=3,
        type=FD.TYPE_MESSAGE,
        label=FD.LABEL_REPEATED,
        type_name=".hbpbtest.Inner",
    )
    m = f.message_type.add(name="AllKinds")
    m.oneof_decl.add(name="choice")  # real oneofs come before proto3 optional's synthetic ones
    scalars = [
        ("i32", FD.TYPE_INT32),
        ("i64", FD.TYPE_INT64),
        ("u32", FD.TYPE_UINT32),
        ("u64", FD.TYPE_UINT64),
        ("s32", FD.TYPE_SINT32),
        ("s64", FD.TYPE_SINT64),
        ("f32", FD.TYPE_FIXED32),
        ("f64", FD.TYPE_FIXED64),
        ("sf32", FD.TYPE_SFIXED32),
        ("sf64", FD.TYPE_SFIXED64),
        ("b", FD.TYPE_BOOL),
        ("d", FD.TYPE_DOUBLE),
        ("s", FD.TYPE_STRING),
        ("color", FD.TYPE_ENUM),
    ]
    # declared out of field-number order: the output must be sorted
    m.field.add(name="last", number=2**29 - 1, type=FD.TYPE_UINT32, label=FD.LABEL_OPTIONAL)
    for i, (name, t) in enumerate(scalars):
        tn = ".hbpbtest.Color" if t == FD.TYPE_ENUM else None
        m.field.add(name=name, number=100 - i, type=t, label=FD.LABEL_OPTIONAL, type_name=tn)
        m.field.add(name="r" + name, number=200 + i, type=t, label=FD.LABEL_REPEATED, type_name=tn)
    for i, (name, t) in enumerate(scalars[:3] + scalars[10:]):
        tn = ".hbpbtest.Color" if t == FD.TYPE_ENUM else None
        # proto3 optional: a synthetic oneof each
        idx = len(m.oneof_decl)
        m.oneof_decl.add(name="_o" + name)
        m.field.add(
            name="o" + name,
            number=300 + i,
            type=t,
            label=FD.LABEL_OPTIONAL,
            type_name=tn,
            oneof_index=idx,
            proto3_optional=True,
        )
    msgs = [("inner", ".hbpbtest.Inner"), ("ts", "." + TS_NAME)] + [
        ("w" + w.split(".")[-1].lower(), "." + w) for w in sorted(WRAPPERS)
    ]
    for i, (name, tn) in enumerate(msgs):
        m.field.add(
            name=name, number=400 + i, type=FD.TYPE_MESSAGE, label=FD.LABEL_OPTIONAL, type_name=tn
        )
        m.field.add(
            name="r" + name,
            number=500 + i,
            type=FD.TYPE_MESSAGE,
            label=FD.LABEL_REPEATED,
            type_name=tn,
        )
    for i, (name, t, tn) in enumerate(
        [
            ("c_int", FD.TYPE_INT32, None),
            ("c_str", FD.TYPE_STRING, None),
            ("c_inner", FD.TYPE_MESSAGE, ".hbpbtest.Inner"),
        ]
    ):
        m.field.add(
            name=name, number=600 + i, type=t, label=FD.LABEL_OPTIONAL, type_name=tn, oneof_index=0
        )
    unpacked = m.field.add(name="unpacked", number=700, type=FD.TYPE_INT32, label=FD.LABEL_REPEATED)
    unpacked.options.packed = False
    # kinds the transcoder leaves to Python
    m.field.add(name="fl", number=800, type=FD.TYPE_FLOAT, label=FD.LABEL_OPTIONAL)
    m.field.add(name="by", number=801, type=FD.TYPE_BYTES, label=FD.LABEL_OPTIONAL)
    m.field.add(
        name="wfl",
        number=802,
        type=FD.TYPE_MESSAGE,
        label=FD.LABEL_OPTIONAL,
        type_name=".google.protobuf.FloatValue",
    )
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("hbpbtest.AllKinds"))


def desc_of(cls: type[Message]) -> Descriptor:
    d = cls.DESCRIPTOR
    assert isinstance(d, Descriptor)
    return d


ALL_KINDS = _all_kinds_class()
UNSUPPORTED = {"fl", "by", "wfl"}


# --- references ------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def reference(line: bytes, cls: type[Message]) -> bytes | None:
    """The Python path's frame, or None where it raises."""
    try:
        d = orjson.loads(line)
        if cls is RESPONSE:
            return grpcframe.frame_response_line(line)
        if not isinstance(d, dict):
            return None
        return frame(json_format.ParseDict(d, cls()).SerializeToString())
    except (ObserverError, ValueError, TypeError, json_format.ParseError):
        return None


@pytest.fixture(scope="module")
def response_t(native_lib: native.Library) -> T.Transcoder:
    t = T.load_transcoder()
    assert t is not None, T.transcoder_problem()
    return t


@pytest.fixture(scope="module")
def all_kinds_t(native_lib: native.Library) -> T.Transcoder:
    import ctypes

    return T.Transcoder(ctypes.CDLL(str(native_lib.path)), T.build_schema(desc_of(ALL_KINDS)))


def check(t: T.Transcoder, lines: list[bytes], cls: type[Message]) -> list[bool]:
    """Each line native and equal to the reference, or declined; returns which were native."""
    got = t.transcode(lines)
    assert len(got) == len(lines)
    native_ = []
    for line, g in zip(lines, got, strict=True):
        ref = reference(line, cls)
        if g is None:
            native_.append(False)
            continue
        assert ref is not None, f"native accepted a line Python rejects: {line!r}"
        assert g == ref, f"differs for {line!r}"
        assert cls.FromString(g[5:]) == cls.FromString(ref[5:])
        native_.append(True)
    return native_


# --- fixtures and the schema -----------------------------------------------------------------


def test_fixture_lines_are_native_and_byte_identical(response_t: T.Transcoder) -> None:
    assert check(response_t, LINES, RESPONSE) == [True] * len(LINES)
    # one batch, and frame_response_lines' join
    joined = b"".join(grpcframe.frame_response_line(x) for x in LINES)
    assert response_t.frame_lines(LINES, grpcframe.frame_response_line) == joined


def test_schema_covers_every_message_reachable_from_the_response() -> None:
    s = T.build_schema(desc_of(RESPONSE))
    assert s.message_names[0] == "observer.GetFlowsResponse"
    for name in (
        "flow.Flow",
        "flow.Endpoint",
        "flow.Layer4",
        "flow.TCP",
        "flow.ICMPv6",
        "flow.Layer7",
        "flow.HTTP",
        "flow.DNS",
        "flow.Kafka",
        "flow.Workload",
        "flow.Service",
        "flow.Policy",
        "flow.LostEvent",
        "relay.NodeStatusEvent",
    ):
        assert name in s.message_names
    assert "flow.Verdict" in s.enum_names
    assert not any(n.startswith("google.") for n in s.message_names)  # inlined kinds
    words = s.fields
    kinds = {words[i + 3] for i in range(0, len(words), T.FIELD_WORDS)}
    assert {T.K_TIMESTAMP, T.K_WRAPPER, T.K_ENUM, T.K_MESSAGE, T.K_NONE} <= kinds  # Any: NONE


# --- hypothesis: canonical values from the descriptors -----------------------------------------

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
INT64_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "a",
            'q"uote',
            "back\\slash",
            "\x00\x01\x1f\x7f",
            "é",
            "€",
            "😀",
            "\u2028\u2029",
            "\ufeff",
            "k8s:app=x",
        ]
    ),
)


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(lo, hi), st.sampled_from(sorted({lo, hi, 0, 1, -1 if lo else 1})))


@st.composite
def _timestamp(draw: st.DrawFn) -> str:
    base = datetime(1, 1, 1) + timedelta(seconds=draw(st.integers(0, 315_537_897_599)))
    digits = draw(st.integers(0, 9))
    text = base.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    if digits:
        text += "." + "".join(
            draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits))
        )
    return text + "Z"


def _double() -> st.SearchStrategy[float]:
    return st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda x: x == 0 or abs(x) >= sys.float_info.min
    )


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t in INT_RANGES:
        return _ints(*INT_RANGES[t])
    if t in INT64_RANGES:
        return _ints(*INT64_RANGES[t]).map(str)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_STRING:
        return TEXT
    if t == FieldDescriptor.TYPE_DOUBLE:
        return _double()
    if t == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        return st.sampled_from([v.name for v in fd.enum_type.values])
    raise AssertionError(fd.full_name)


def _supported(fd: FieldDescriptor) -> bool:
    mt = fd.message_type
    if mt is None:
        return fd.type not in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_BYTES)
    n = mt.full_name
    return n == TS_NAME or n in WRAPPERS or not n.startswith("google.protobuf.")


def _field(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    mt = fd.message_type
    if mt is None:
        one = _scalar(fd)
    elif mt.full_name == TS_NAME:
        one = _timestamp()
    elif mt.full_name in WRAPPERS:
        one = _scalar(mt.fields_by_name["value"])
    else:
        one = message_values(mt, depth + 1)
    return st.lists(one, max_size=4) if fd.is_repeated else one


def _lazy_field(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    def define() -> st.SearchStrategy[Any]:
        return _field(fd, depth)

    return st.deferred(define)


def _single(name: str, value: Any) -> dict[str, Any]:
    return {name: value}


def message_values(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Canonical dicts of ``desc``: any subset of its fields, at most one member per oneof."""
    if depth > 4:
        return st.just({})
    fields = [fd for fd in desc.fields if _supported(fd)]
    groups = [o for o in desc.oneofs if len(o.fields) > 1]
    in_group = {fd.name for o in groups for fd in o.fields}
    plain = {fd.name: _lazy_field(fd, depth) for fd in fields if fd.name not in in_group}
    choices = [
        st.one_of(
            st.just({}),
            *[
                _field(fd, depth).map(functools.partial(_single, fd.name))
                for fd in o.fields
                if _supported(fd)
            ],
        )
        for o in groups
    ]

    def merge(parts: tuple[dict[str, Any], ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in parts:
            out.update(p)
        order = {fd.name: i for i, fd in enumerate(desc.fields)}
        return dict(sorted(out.items(), key=lambda kv: order[kv[0]]))

    return st.tuples(st.fixed_dictionaries({}, optional=plain), *choices).map(merge)


def _reversed_keys(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _reversed_keys(v[k]) for k in reversed(list(v))}
    if isinstance(v, list):
        return [_reversed_keys(x) for x in v]
    return v


ENCODINGS: dict[str, Callable[[Any], bytes]] = {
    "orjson": orjson.dumps,
    "ascii-escapes": lambda d: json.dumps(d, ensure_ascii=True, separators=(",", ":")).encode(),
    "whitespace": lambda d: json.dumps(d, ensure_ascii=False, indent=1).encode(),
    "reversed-keys": lambda d: orjson.dumps(_reversed_keys(d)),
}
RESPONSES = st.one_of(
    st.fixed_dictionaries(
        {"flow": message_values(desc_of(flow_pb2.Flow))},
        optional={"node_name": TEXT, "time": _timestamp()},
    ),
    message_values(desc_of(RESPONSE)),
)
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYP
@given(st.lists(RESPONSES, min_size=1, max_size=6), st.sampled_from(sorted(ENCODINGS)))
def test_hypothesis_responses_are_native_and_identical(
    response_t: T.Transcoder, responses: list[dict[str, Any]], encoding: str
) -> None:
    lines = [ENCODINGS[encoding](d) for d in responses]
    assert all(check(response_t, lines, RESPONSE))


@HYP
@given(
    st.lists(message_values(desc_of(ALL_KINDS)), min_size=1, max_size=4),
    st.sampled_from(sorted(ENCODINGS)),
)
def test_hypothesis_every_kind_is_native_and_identical(
    all_kinds_t: T.Transcoder, values: list[dict[str, Any]], encoding: str
) -> None:
    lines = [ENCODINGS[encoding](d) for d in values]
    assert all(check(all_kinds_t, lines, ALL_KINDS))


# --- table-driven edges ----------------------------------------------------------------------


def flow_line(flow: dict[str, Any] | str) -> bytes:
    body = flow if isinstance(flow, str) else orjson.dumps(flow).decode()
    return b'{"flow":' + body.encode() + b',"node_name":"n"}'


# (id, line, expected: "native" or "python" (declined; the Python path converts it) or
# "error" (declined; the Python path raises DecodeError))
EDGES: list[tuple[str, bytes, str]] = [
    ("empty-object", b"{}", "native"),
    ("empty-flow", flow_line({}), "native"),
    ("spaces-around", b' \t\r\n{ "flow" : { } } \n', "native"),
    ("escape-simple", flow_line(r'{"node_name":"a\"b\\c\/d\b\f\n\r\t"}'), "native"),
    ("escape-u", flow_line(r'{"node_name":"\u0041\u00e9\u20ac\u0000"}'), "native"),
    ("escape-surrogate-pair", flow_line(r'{"node_name":"\ud83d\ude00x"}'), "native"),
    ("escape-upper-hex", flow_line(r'{"node_name":"\u00E9\uD83D\uDE00"}'), "native"),
    ("raw-utf8", flow_line('{"node_name":"é€😀"}'), "native"),
    ("lone-high-surrogate", flow_line(r'{"node_name":"\ud800"}'), "error"),
    ("lone-low-surrogate", flow_line(r'{"node_name":"\udc00x"}'), "error"),
    ("high-then-not-low", flow_line(r'{"node_name":"\ud800\u0041"}'), "error"),
    ("bad-escape", flow_line(r'{"node_name":"\x41"}'), "error"),
    ("short-u-escape", flow_line(r'{"node_name":"\u00"}'), "error"),
    ("raw-control-char", flow_line('{"node_name":"a\tb"}'), "error"),
    ("invalid-utf8", b'{"node_name":"\xff"}', "error"),
    ("overlong-utf8", b'{"flow":{"node_name":"\xc0\x80"}}', "error"),
    ("utf8-surrogate", b'{"flow":{"node_name":"\xed\xa0\x80"}}', "error"),
    ("utf8-above-max", b'{"flow":{"node_name":"\xf4\x90\x80\x80"}}', "error"),
    ("escaped-key", flow_line(r'{"node\u005fname":"x"}'), "python"),
    ("escaped-enum", flow_line(r'{"verdict":"DROPPE\u0044"}'), "python"),
    ("camel-case-key", flow_line('{"nodeName":"x"}'), "python"),
    ("unknown-key", flow_line('{"nope":1}'), "error"),
    ("duplicate-key", flow_line('{"node_name":"a","node_name":"b"}'), "python"),
    ("null", flow_line('{"IP":null}'), "python"),
    ("enum-number", flow_line('{"verdict":2}'), "python"),
    ("enum-unknown-name", flow_line('{"verdict":"NOPE"}'), "error"),
    ("enum-zero-name", flow_line('{"verdict":"VERDICT_UNKNOWN"}'), "native"),
    ("enum-other-enum", flow_line('{"verdict":"INGRESS"}'), "error"),
    ("uint32-max", flow_line('{"proxy_port":4294967295}'), "native"),
    ("uint32-overflow", flow_line('{"proxy_port":4294967296}'), "error"),
    ("uint32-negative", flow_line('{"proxy_port":-1}'), "error"),
    ("uint32-minus-zero", flow_line('{"proxy_port":-0}'), "native"),
    ("uint32-float", flow_line('{"proxy_port":80.0}'), "python"),
    ("uint32-exponent", flow_line('{"proxy_port":8e1}'), "python"),
    ("uint32-string", flow_line('{"proxy_port":"80"}'), "python"),
    ("leading-zero", flow_line('{"proxy_port":080}'), "error"),
    ("int32-min", flow_line('{"event_type":{"type":-2147483648}}'), "native"),
    ("int32-max", flow_line('{"event_type":{"type":2147483647}}'), "native"),
    ("int32-under", flow_line('{"event_type":{"type":-2147483649}}'), "error"),
    ("int32-huge", flow_line('{"event_type":{"type":99999999999999999999999}}'), "error"),
    ("uint64-max", flow_line('{"socket_cookie":"18446744073709551615"}'), "native"),
    ("uint64-overflow", flow_line('{"socket_cookie":"18446744073709551616"}'), "error"),
    ("uint64-leading-zeros", flow_line('{"socket_cookie":"000000000000000000000042"}'), "native"),
    ("uint64-zero", flow_line('{"socket_cookie":"0"}'), "native"),
    ("uint64-negative", flow_line('{"socket_cookie":"-1"}'), "error"),
    ("uint64-minus-zero", flow_line('{"socket_cookie":"-0"}'), "python"),
    ("uint64-int", flow_line('{"socket_cookie":12}'), "python"),
    ("uint64-empty", flow_line('{"socket_cookie":""}'), "error"),
    ("uint64-plus", flow_line('{"socket_cookie":"+1"}'), "python"),
    ("uint64-space", flow_line('{"socket_cookie":" 1"}'), "error"),
    ("bool-true", flow_line('{"reply":true}'), "native"),
    ("bool-int", flow_line('{"reply":1}'), "error"),
    ("bool-truncated", flow_line('{"reply":tru}'), "error"),
    ("wrapper-false", flow_line('{"is_reply":false}'), "native"),
    ("wrapper-true", flow_line('{"is_reply":true}'), "native"),
    ("wrapper-null", flow_line('{"is_reply":null}'), "python"),
    ("message-empty", flow_line('{"IP":{}}'), "native"),
    ("message-not-object", flow_line('{"IP":"x"}'), "error"),
    ("list-empty", flow_line('{"node_labels":[]}'), "native"),
    ("list-trailing-comma", flow_line('{"node_labels":["a",]}'), "error"),
    ("list-for-scalar", flow_line('{"node_name":["a"]}'), "error"),
    ("object-trailing-comma", flow_line('{"node_name":"a",}'), "error"),
    ("oneof-two", flow_line('{"l4":{"TCP":{},"UDP":{}}}'), "error"),
    ("oneof-top-two", b'{"flow":{},"lost_events":{}}', "error"),
    ("oneof-one-empty", flow_line('{"l4":{"ICMPv4":{}}}'), "native"),
    ("any", flow_line('{"extensions":{}}'), "python"),
    ("ts-fraction-0", flow_line('{"time":"2026-11-26T12:00:01Z"}'), "native"),
    ("ts-fraction-1", flow_line('{"time":"2026-11-26T12:00:01.5Z"}'), "native"),
    ("ts-fraction-9", flow_line('{"time":"2026-11-26T12:00:01.000000001Z"}'), "native"),
    ("ts-fraction-10", flow_line('{"time":"2026-11-26T12:00:01.1234567891Z"}'), "error"),
    ("ts-fraction-empty", flow_line('{"time":"2026-11-26T12:00:01.Z"}'), "python"),
    ("ts-epoch", flow_line('{"time":"1970-01-01T00:00:00Z"}'), "native"),
    ("ts-before-epoch", flow_line('{"time":"1969-12-31T23:59:59.5Z"}'), "native"),
    ("ts-year-1", flow_line('{"time":"0001-01-01T00:00:00Z"}'), "native"),
    ("ts-year-0", flow_line('{"time":"0000-01-01T00:00:00Z"}'), "error"),
    ("ts-year-9999", flow_line('{"time":"9999-12-31T23:59:59.999999999Z"}'), "native"),
    ("ts-leap-day", flow_line('{"time":"2028-02-29T00:00:00Z"}'), "native"),
    ("ts-leap-2000", flow_line('{"time":"2000-02-29T00:00:00Z"}'), "native"),
    ("ts-no-leap-1900", flow_line('{"time":"1900-02-29T00:00:00Z"}'), "error"),
    ("ts-feb-30", flow_line('{"time":"2026-02-30T00:00:00Z"}'), "error"),
    ("ts-month-13", flow_line('{"time":"2026-13-01T00:00:00Z"}'), "error"),
    ("ts-hour-24", flow_line('{"time":"2026-11-26T24:00:00Z"}'), "error"),
    ("ts-second-60", flow_line('{"time":"2026-11-26T23:59:60Z"}'), "error"),
    ("ts-offset", flow_line('{"time":"2026-11-26T13:00:01+01:00"}'), "python"),
    ("ts-lowercase", flow_line('{"time":"2026-11-26t12:00:01z"}'), "error"),
    ("ts-number", flow_line('{"time":1}'), "error"),
    ("trailing-garbage", flow_line("{}") + b"x", "error"),
    ("trailing-nul", flow_line("{}") + b"\x00", "error"),
    ("two-documents", flow_line("{}") + flow_line("{}"), "error"),
    ("not-an-object", b'["flow"]', "error"),
    ("bom", b"\xef\xbb\xbf{}", "error"),
    ("empty-line", b"", "error"),
    ("deep-nesting", b'{"flow":' * 200 + b"{}" + b"}" * 200, "error"),
]


@pytest.mark.parametrize(("line", "expected"), [e[1:] for e in EDGES], ids=[e[0] for e in EDGES])
def test_edge_lines(response_t: T.Transcoder, line: bytes, expected: str) -> None:
    [got] = response_t.transcode([line])
    ref = reference(line, RESPONSE)
    outcome = "native" if got is not None else ("python" if ref is not None else "error")
    assert outcome == expected
    if got is not None:
        assert got == ref


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({"d": 0.1, "rd": [1.5, -0.0, 1e308]}, "native", id="doubles"),
        pytest.param({"d": -0.0}, "native", id="negative-zero-is-written"),
        pytest.param('{"d":1e-320}', "python", id="subnormal"),
        pytest.param('{"d":1}', "python", id="double-int"),
        pytest.param('{"d":1e400}', "error", id="double-inf"),
        pytest.param('{"d":"NaN"}', "python", id="double-nan-string"),
        pytest.param(
            {
                "s32": -1,
                "s64": "-9223372036854775808",
                "sf32": -(2**31),
                "sf64": "-1",
                "f32": 2**32 - 1,
                "f64": "18446744073709551615",
            },
            "native",
            id="zigzag-and-fixed",
        ),
        pytest.param({"ri32": [-1] * 50, "unpacked": [-1, 0, 1]}, "native", id="negative-lists"),
        pytest.param({"rcolor": ["NEG", "MAX", "MIN", "CRIMSON", "RED"]}, "native", id="enums"),
        pytest.param(
            {"color": "CRIMSON", "oi32": 0, "os": "", "ob": False}, "native", id="presence-zeros"
        ),
        pytest.param({"c_int": 0}, "native", id="oneof-scalar-zero"),
        pytest.param({"c_int": 1, "c_str": "x"}, "error", id="oneof-two"),
        pytest.param(
            {"wint32value": 0, "wstringvalue": "", "wdoublevalue": 0.0},
            "native",
            id="wrapper-zeros",
        ),
        pytest.param(
            {"rts": ["1970-01-01T00:00:00Z"], "rwint64value": ["-1", "0"]},
            "native",
            id="repeated-timestamps-and-wrappers",
        ),
        pytest.param({"last": 1}, "native", id="largest-field-number"),
        pytest.param(
            {"inner": {"children": [{"children": [{"s": "x"}]}, {}]}}, "native", id="recursive"
        ),
        pytest.param(
            '{"inner":' + '{"children":[' * 70 + "{}" + "]}" * 70 + "}",
            "python",
            id="nesting-deeper-than-64",
        ),
        pytest.param(
            '{"inner":' + '{"children":[' * 60 + "{}" + "]}" * 60 + "}", "native", id="nesting-60"
        ),
        pytest.param({"fl": 1.5}, "python", id="float"),
        pytest.param({"by": "eA=="}, "python", id="bytes"),
        pytest.param({"wfl": 1.5}, "python", id="float-wrapper"),
    ],
)
def test_every_kind_edges(all_kinds_t: T.Transcoder, values: Any, expected: str) -> None:
    line = values.encode() if isinstance(values, str) else orjson.dumps(values)
    [got] = all_kinds_t.transcode([line])
    ref = reference(line, ALL_KINDS)
    outcome = "native" if got is not None else ("python" if ref is not None else "error")
    assert outcome == expected
    if got is not None:
        assert got == ref


def _enum_lines() -> list[tuple[str, bytes]]:
    """One response per (enum field reachable from the response, value name)."""
    out = []

    def walk(desc: Descriptor, wrap: Callable[[Any], Any], seen: frozenset[str]) -> None:
        for fd in desc.fields:
            mt = fd.message_type
            if fd.enum_type is not None:
                for v in fd.enum_type.values:
                    value = [v.name] if fd.is_repeated else v.name
                    out.append((f"{desc.full_name}.{fd.name}={v.name}", wrap({fd.name: value})))
            elif mt is not None and _supported(fd) and mt.full_name not in seen:
                if mt.full_name == TS_NAME or mt.full_name in WRAPPERS:
                    continue

                def inner(x: Any, fd: FieldDescriptor = fd) -> Any:
                    return wrap({fd.name: [x] if fd.is_repeated else x})

                walk(mt, inner, seen | {mt.full_name})

    walk(desc_of(RESPONSE), orjson.dumps, frozenset({desc_of(RESPONSE).full_name}))
    return out


def test_every_enum_value_of_the_response(response_t: T.Transcoder) -> None:
    cases = _enum_lines()
    assert len(cases) > 100
    lines = [line for _, line in cases]
    assert check(response_t, lines, RESPONSE) == [True] * len(lines)


# --- malformed input: never a crash, never a wrong message -----------------------------------


def test_every_truncation_of_the_fixtures_is_declined(response_t: T.Transcoder) -> None:
    lines = [line[:cut] for line in LINES[::3] for cut in range(len(line))]
    assert check(response_t, lines, RESPONSE) == [False] * len(lines)
    for line in lines[::37]:
        assert reference(line, RESPONSE) is None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(LINES),
    st.lists(st.tuples(st.integers(0, 2000), st.binary(max_size=3)), min_size=1, max_size=4),
)
def test_mutated_fixtures_are_declined_or_identical(
    response_t: T.Transcoder, line: bytes, edits: list[tuple[int, bytes]]
) -> None:
    data = bytearray(line)
    for pos, chunk in edits:
        p = pos % (len(data) + 1)
        data[p : p + len(chunk)] = chunk
    check(response_t, [bytes(data)], RESPONSE)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=5))
def test_arbitrary_bytes_are_declined_or_identical(
    response_t: T.Transcoder, lines: list[bytes]
) -> None:
    check(response_t, lines, RESPONSE)


def test_output_buffer_grows_when_frames_exceed_the_estimate(all_kinds_t: T.Transcoder) -> None:
    # "-1," is 3 bytes of JSON and 10 bytes of protobuf: past the first buffer's estimate
    lines = [orjson.dumps({"ri32": [-1] * (200 + i)}) for i in range(30)]
    lines.insert(7, b'{"d":1}')  # declined in the middle
    got = all_kinds_t.transcode(lines)
    assert got[7] is None
    assert check(all_kinds_t, lines, ALL_KINDS).count(True) == len(lines) - 1
    joined = all_kinds_t.frame_lines(lines, lambda x: reference(x, ALL_KINDS) or b"?")
    assert joined == b"".join(reference(x, ALL_KINDS) or b"?" for x in lines)


def test_frame_lines_keeps_order_and_raises_the_python_error(response_t: T.Transcoder) -> None:
    camel = flow_line('{"nodeName":"x"}')
    lines = [LINES[0], camel, LINES[1], camel]
    expected = b"".join(grpcframe.frame_response_line(x) for x in lines)
    assert response_t.frame_lines(lines, grpcframe.frame_response_line) == expected
    with pytest.raises(ObserverError):
        response_t.frame_lines(
            [LINES[0], b'{"flow":{"verdict":"NOPE"}}'], grpcframe.frame_response_line
        )
    assert response_t.frame_lines([], grpcframe.frame_response_line) == b""


def test_schema_rejected_by_the_library_is_an_error(native_lib: native.Library) -> None:
    import ctypes

    s = T.build_schema(desc_of(RESPONSE))
    broken = dataclasses.replace(s, fields=(*s.fields[:-8], 0, 99999, 1, 1, 0, 0, 0, 0))
    with pytest.raises(native.NativeError, match="invalid schema"):
        T.Transcoder(ctypes.CDLL(str(native_lib.path)), broken)
