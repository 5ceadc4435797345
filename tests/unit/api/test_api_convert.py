"""observer.api.convert against google.protobuf.json_format, the reference it must equal.

Round trip: every fixture line goes dict -> proto -> dict and must come back equal to the
original after one normalisation, ``canonical()`` below, which applies the two things
protojson itself does to such input:
  * Timestamp strings are reprinted with 0, 3, 6 or 9 fraction digits
    (``...:03.5Z`` -> ``...:03.500Z``, ``...01.123501000Z`` -> ``...01.123501Z``);
  * fields without presence that hold their zero value are dropped (``"sub_type": 0``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import descriptor_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from observer.api import convert
from observer.api.v1.flow import flow_pb2
from observer.api.v1.hubblectl import agent_pb2
from observer.api.v1.observer import observer_pb2
from observer.api.v1.relay import relay_pb2
from observer.errors import DecodeError, ObserverError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl"
LINES = [orjson.loads(line) for line in FIXTURES.read_bytes().splitlines() if line]
IDS = [f"{i}-{next(iter(d))}" for i, d in enumerate(LINES)]


def canonical(value: Any, desc: Descriptor) -> Any:
    """What protojson makes of a valid dict: see the module docstring."""
    out = {}
    for key, v in value.items():
        fd = desc.fields_by_name[key]
        mt = fd.message_type
        if mt is not None and mt.full_name == "google.protobuf.Timestamp":
            ts = timestamp_pb2.Timestamp()
            ts.FromJsonString(v)
            out[key] = ts.ToJsonString()
        elif mt is not None and not mt.full_name.startswith("google.protobuf."):
            out[key] = [canonical(x, mt) for x in v] if fd.is_repeated else canonical(v, mt)
        elif fd.is_repeated or not fd.has_presence:
            if v not in (0, "", False, [], "0") and not (
                fd.enum_type and v == fd.enum_type.values[0].name
            ):
                out[key] = v
        else:
            out[key] = v
    return out


def declaration_order_ok(value: dict[str, Any], desc: Descriptor) -> bool:
    """Keys appear in the message's declaration order, recursively."""
    order = [f.name for f in desc.fields]
    if list(value) != sorted(value, key=order.index):
        return False
    for key, v in value.items():
        mt = desc.fields_by_name[key].message_type
        if mt is None or mt.full_name.startswith("google.protobuf."):
            continue
        for item in v if isinstance(v, list) else [v]:
            if not declaration_order_ok(item, mt):
                return False
    return True


RESPONSE = observer_pb2.GetFlowsResponse.DESCRIPTOR


# --- fixtures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_fixture_round_trips(line: dict[str, Any]) -> None:
    back = convert.proto_to_dict(convert.response_to_proto(line))
    assert back == canonical(line, RESPONSE)


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_fixture_equals_parse_dict(line: dict[str, Any]) -> None:
    expected = json_format.ParseDict(line, observer_pb2.GetFlowsResponse())
    assert convert.response_to_proto(line) == expected
    if "flow" in line:
        assert convert.flow_to_proto(line["flow"]) == expected.flow


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_fixture_output_equals_message_to_dict_in_declaration_order(line: dict[str, Any]) -> None:
    msg = json_format.ParseDict(line, observer_pb2.GetFlowsResponse())
    out = convert.proto_to_dict(msg)
    assert out == json_format.MessageToDict(msg, preserving_proto_field_name=True)
    assert declaration_order_ok(out, RESPONSE)


def test_flow_keys_follow_declaration_not_field_numbers() -> None:
    out = convert.proto_to_dict(convert.response_to_proto(LINES[0]))
    # uuid (34) and emitter (41) are declared right after time (1)
    assert list(out["flow"])[:4] == ["time", "uuid", "emitter", "verdict"]
    assert list(out) == ["flow", "node_name", "time"]


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_json_line(line: dict[str, Any]) -> None:
    msg = convert.response_to_proto(line)
    data = convert.response_to_json_line(msg)
    assert data.endswith(b"}\n")
    assert data.count(b"\n") == 1
    assert b'": ' not in data and b'", "' not in data  # compact
    assert orjson.loads(data) == convert.proto_to_dict(msg)
    assert data == orjson.dumps(canonical(line, RESPONSE)) + b"\n" or not declaration_order_ok(
        line, RESPONSE
    )


# --- parity with ParseDict on edge cases -------------------------------------------------------


def parity(d: Any, message_type: type[Message]) -> str:
    """Convert with both; assert they agree; return "ok" or "error" for the table."""
    try:
        expected: Message | None = json_format.ParseDict(copy.deepcopy(d), message_type())
    except Exception:  # ParseError, and what ParseDict lets escape (OverflowError for inf, ...)
        expected = None
    if expected is None:
        with pytest.raises(DecodeError):
            convert.dict_to_proto(d, message_type)
        return "error"
    got = convert.dict_to_proto(d, message_type)
    assert type(got) is message_type
    assert got == expected
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    return "ok"


F = flow_pb2.Flow
R = observer_pb2.GetFlowsResponse
TS = "2026-11-26T12:00:01Z"

EDGE_CASES: list[tuple[str, Any, type[Message], str]] = [
    # (id, input, message type, expected outcome)
    ("empty", {}, F, "ok"),
    ("lower-camel-names", {"nodeName": "n", "l4": {"TCP": {"sourcePort": 1}}}, F, "ok"),
    ("camel-and-proto-name", {"nodeName": "a", "node_name": "b"}, F, "ok"),
    ("unknown-field", {"nope": 1}, F, "error"),
    ("null-scalar", {"node_name": None}, F, "ok"),
    ("null-message", {"IP": None}, F, "ok"),
    ("null-in-list", {"node_labels": ["a", None]}, F, "error"),
    ("empty-message", {"IP": {}}, F, "ok"),
    ("tuple-for-list", {"node_labels": ("a", "b")}, F, "ok"),
    ("list-for-scalar", {"node_name": ["a"]}, F, "error"),
    ("int-for-string", {"node_name": 5}, F, "error"),
    ("bytes-for-string", {"node_name": b"n"}, F, "error"),
    ("int-in-string-list", {"node_labels": ["a", 1]}, F, "error"),
    ("lone-surrogate", {"node_name": "\ud800"}, F, "error"),
    ("enum-name", {"verdict": "DROPPED"}, F, "ok"),
    ("enum-number", {"verdict": 2}, F, "ok"),
    ("enum-unknown-number", {"verdict": 99}, F, "ok"),
    ("enum-numeric-string", {"verdict": "2"}, F, "ok"),
    ("enum-unknown-name", {"verdict": "NOPE"}, F, "error"),
    ("enum-other-enums-name", {"verdict": "INGRESS"}, F, "error"),
    ("enum-bool", {"verdict": True}, F, "ok"),
    ("enum-list-names", {"l7": {"type": "REQUEST"}}, F, "ok"),
    ("uint32", {"proxy_port": 80}, F, "ok"),
    ("uint32-zero", {"proxy_port": 0}, F, "ok"),
    ("uint32-string", {"proxy_port": "80"}, F, "ok"),
    ("uint32-integral-float", {"proxy_port": 80.0}, F, "ok"),
    ("uint32-fraction", {"proxy_port": 80.5}, F, "error"),
    ("uint32-negative", {"proxy_port": -1}, F, "error"),
    ("uint32-too-big", {"proxy_port": 2**32}, F, "error"),
    ("uint32-bool", {"proxy_port": True}, F, "error"),
    ("int32-negative", {"event_type": {"type": -3}}, F, "ok"),
    ("uint64-string", {"socket_cookie": "18446744073709551615"}, F, "ok"),
    ("uint64-int", {"socket_cookie": 12}, F, "ok"),
    ("uint64-too-big", {"socket_cookie": "18446744073709551616"}, F, "error"),
    ("uint64-negative", {"socket_cookie": "-1"}, F, "error"),
    ("uint64-space", {"socket_cookie": " 1"}, F, "error"),
    ("uint64-float-string", {"socket_cookie": "1e3"}, F, "ok"),
    ("uint64-underscore", {"socket_cookie": "1_000"}, F, "ok"),
    ("uint64-empty", {"socket_cookie": ""}, F, "error"),
    ("uint64-unicode-digits", {"socket_cookie": "\u0663"}, F, "ok"),
    ("int64-negative", {"rule_count": "-5"}, flow_pb2.PolicyUpdateNotification, "ok"),
    ("bool", {"reply": True}, F, "ok"),
    ("bool-int", {"reply": 1}, F, "error"),
    ("bool-string", {"reply": "true"}, F, "error"),
    ("wrapper-false", {"is_reply": False}, F, "ok"),
    ("wrapper-int", {"is_reply": 0}, F, "error"),
    ("wrapper-null", {"is_reply": None}, F, "ok"),
    ("int32-wrapper", {"cpu": -2}, flow_pb2.LostEvent, "ok"),
    ("int32-wrapper-string", {"cpu": "2"}, flow_pb2.LostEvent, "ok"),
    ("int32-wrapper-too-big", {"cpu": 2**31}, flow_pb2.LostEvent, "error"),
    ("uint32-wrapper", {"old_identity": 7}, flow_pb2.IPCacheNotification, "ok"),
    ("oneof-one", {"l4": {"UDP": {"source_port": 53}}}, F, "ok"),
    ("oneof-empty-member", {"l4": {"ICMPv4": {}}}, F, "ok"),
    ("oneof-two", {"l4": {"TCP": {}, "UDP": {}}}, F, "error"),
    ("oneof-two-one-null", {"l4": {"TCP": None, "UDP": {}}}, F, "ok"),
    ("oneof-top-two", {"flow": {}, "lost_events": {}}, R, "error"),
    ("l7-two-records", {"l7": {"dns": {}, "http": {}}}, F, "error"),
    ("message-not-dict", {"IP": "10.0.0.1"}, F, "error"),
    ("message-list-of-dicts", {"egress_allowed_by": [{"name": "a"}, {}]}, F, "ok"),
    ("message-list-with-null", {"egress_allowed_by": [None]}, F, "error"),
    ("message-list-not-list", {"egress_allowed_by": {"name": "a"}}, F, "error"),
    ("ts-z", {"time": TS}, F, "ok"),
    ("ts-fraction-1", {"time": "2026-11-26T12:00:01.5Z"}, F, "ok"),
    ("ts-fraction-9", {"time": "2026-11-26T12:00:01.123456789Z"}, F, "ok"),
    ("ts-fraction-10", {"time": "2026-11-26T12:00:01.1234567891Z"}, F, "error"),
    ("ts-fraction-empty", {"time": "2026-11-26T12:00:01.Z"}, F, "ok"),
    ("ts-offset", {"time": "2026-11-26T13:00:01+01:00"}, F, "ok"),
    ("ts-negative-offset", {"time": "2026-11-26T11:00:01.25-01:00"}, F, "ok"),
    ("ts-lowercase-t", {"time": "2026-11-26t12:00:01Z"}, F, "error"),
    ("ts-space", {"time": "2026-11-26 12:00:01Z"}, F, "error"),
    ("ts-no-zone", {"time": "2026-11-26T12:00:01"}, F, "error"),
    ("ts-feb-30", {"time": "2026-02-30T12:00:01Z"}, F, "error"),
    ("ts-leap-day", {"time": "2028-02-29T00:00:00Z"}, F, "ok"),
    ("ts-hour-24", {"time": "2026-11-26T24:00:00Z"}, F, "error"),
    ("ts-second-60", {"time": "2026-11-26T23:59:60Z"}, F, "error"),
    ("ts-year-1", {"time": "0001-01-01T00:00:00Z"}, F, "ok"),
    ("ts-year-0", {"time": "0000-01-01T00:00:00Z"}, F, "error"),
    ("ts-year-9999", {"time": "9999-12-31T23:59:59.999999999Z"}, F, "ok"),
    ("ts-before-epoch", {"time": "1969-12-31T23:59:59.5Z"}, F, "ok"),
    ("ts-short-fields", {"time": "2026-1-5T1:2:3Z"}, F, "ok"),
    ("ts-not-string", {"time": 1700000000}, F, "error"),
    ("ts-arabic-digit", {"time": "2026-11-26T12:00:0\u0661Z"}, F, "ok"),
    ("any", {"extensions": {"@type": "type.googleapis.com/flow.Emitter", "name": "x"}}, F, "ok"),
    ("any-empty", {"extensions": {}}, F, "ok"),
    ("any-unknown-type", {"extensions": {"@type": "type.googleapis.com/no.Such"}}, F, "error"),
    (
        "request-field-mask",
        {"field_mask": "source.identity,l4", "number": "5", "since": TS},
        observer_pb2.GetFlowsRequest,
        "ok",
    ),
    (
        "request-filters",
        {
            "whitelist": [
                {
                    "verdict": ["DROPPED", "FORWARDED"],
                    "ip_trace_id": ["5"],
                    "reply": [True],
                    "source_identity": [1, 2],
                    "source_workload": [{"name": "w", "kind": "Deployment"}],
                    "event_type": [{"type": 1, "match_sub_type": True, "sub_type": 133}],
                    "http_header": [{"key": "k", "value": "v"}],
                    "tcp_flags": [{"SYN": True}],
                    "experimental": {"cel_expression": ["true"]},
                }
            ],
            "blacklist": [{"traffic_direction": ["INGRESS"], "ip_version": ["IPv6"]}],
        },
        observer_pb2.GetFlowsRequest,
        "ok",
    ),
    ("filter-enum-list-number", {"verdict": [2]}, flow_pb2.FlowFilter, "ok"),
    ("filter-bool-list-int", {"reply": [1]}, flow_pb2.FlowFilter, "error"),
    ("filter-uint64-list-int", {"ip_trace_id": [5]}, flow_pb2.FlowFilter, "ok"),
    ("double", {"flows_rate": 1.5}, observer_pb2.ServerStatusResponse, "ok"),
    ("double-int", {"flows_rate": 2}, observer_pb2.ServerStatusResponse, "ok"),
    ("double-nan-float", {"flows_rate": float("nan")}, observer_pb2.ServerStatusResponse, "error"),
    ("double-nan-string", {"flows_rate": "NaN"}, observer_pb2.ServerStatusResponse, "ok"),
    ("double-string", {"flows_rate": "2.5"}, observer_pb2.ServerStatusResponse, "ok"),
    ("bytes", {"json_lines": "eyJhIjoxfQo=", "count": 1}, agent_pb2.FlowBatch, "ok"),
    (
        "node-status",
        {"state_change": "NODE_ERROR", "node_names": ["a"]},
        relay_pb2.NodeStatusEvent,
        "ok",
    ),
    ("not-a-dict", ["flow"], R, "error"),
]


@pytest.mark.parametrize(
    ("d", "message_type", "outcome"),
    [c[1:] for c in EDGE_CASES],
    ids=[c[0] for c in EDGE_CASES],
)
def test_edge_cases_agree_with_parse_dict(
    d: Any, message_type: type[Message], outcome: str
) -> None:
    assert parity(d, message_type) == outcome


def test_decode_error_is_an_observer_error_naming_the_type() -> None:
    with pytest.raises(DecodeError) as info:
        convert.response_to_proto({"flow": {"verdict": "NOPE"}})
    assert isinstance(info.value, ObserverError)
    assert "observer.GetFlowsResponse" in str(info.value)
    assert "NOPE" in str(info.value)


def test_input_dict_is_not_modified() -> None:
    line = copy.deepcopy(LINES[0])
    convert.response_to_proto(line)
    assert line == LINES[0]


def test_types_outside_our_protos_use_json_format() -> None:
    d = {"name": "x.proto", "package": "p", "message_type": [{"name": "M"}]}
    got = convert.dict_to_proto(d, descriptor_pb2.FileDescriptorProto)
    assert got == json_format.ParseDict(d, descriptor_pb2.FileDescriptorProto())
    assert convert.proto_to_dict(got) == d


# --- seeded mutations of the fixtures ---------------------------------------------------------

JUNK: list[Any] = [
    None, 0, 1, -1, 2**32, 2**64, 1.5, float("inf"), True, False, "", "x", "7", "-7",
    "DROPPED", "2026-11-26T12:00:01Z", "2026-11-26T12:00:01+02:00", [], ["x"], [1], {},
    {"x": 1}, b"x",
]  # fmt: skip


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def mutate(line: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    d = copy.deepcopy(line)
    path = rng.choice(paths(d))
    parent = d
    for step in path[:-1]:
        parent = parent[step]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
        parent[rng.choice(["nope", "nodeName", "sourcePort", "Summary"])] = rng.choice(JUNK)
    else:
        parent[path[-1]] = rng.choice(JUNK)
    return d


@pytest.mark.parametrize("seed", range(8))
def test_mutated_fixtures_agree_with_parse_dict(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(60):
        d = mutate(rng.choice(LINES), rng)
        outcomes[parity(d, observer_pb2.GetFlowsResponse)] += 1
    assert outcomes["ok"] and outcomes["error"]  # both kinds were exercised


# --- message -> dict for every kind ----------------------------------------------------------

OUTPUT_CASES: list[tuple[str, Callable[[], Message]]] = [
    ("empty-flow", flow_pb2.Flow),
    ("enum-unknown-number", lambda: flow_pb2.Flow(verdict=99)),  # type: ignore[arg-type]
    ("enum-zero-name", lambda: flow_pb2.Layer7(type=0, latency_ns=1)),  # type: ignore[arg-type]
    ("uint64", lambda: flow_pb2.Flow(socket_cookie=2**64 - 1, cgroup_id=1)),
    ("int64-negative", lambda: flow_pb2.PolicyUpdateNotification(rule_count=-3, revision=2)),
    ("wrapper-default", lambda: flow_pb2.Flow(is_reply={"value": False})),
    ("int32-wrapper", lambda: flow_pb2.DebugEvent(cpu={"value": -1}, hash={"value": 7})),
    ("timestamps", lambda: flow_pb2.LostEvent(first={"seconds": 0}, last={"nanos": 1000})),
    ("timestamp-millis", lambda: flow_pb2.Flow(time={"seconds": 1, "nanos": 500_000_000})),
    ("timestamp-early", lambda: flow_pb2.Flow(time={"seconds": -62_135_596_800})),
    ("double", lambda: observer_pb2.ServerStatusResponse(flows_rate=0.1, num_flows=3)),
    ("double-inf", lambda: observer_pb2.ServerStatusResponse(flows_rate=float("-inf"))),
    ("bytes", lambda: agent_pb2.FlowBatch(json_lines=b'{"a":1}\n\xff', count=1)),
    ("field-mask", lambda: observer_pb2.GetFlowsRequest(field_mask={"paths": ["a.b", "c"]})),
    (
        "any",
        lambda: flow_pb2.Flow(extensions={"type_url": "type.googleapis.com/flow.Emitter", "value": b"\n\x01x"}),
    ),
    ("oneof-empty-member", lambda: flow_pb2.Layer4(ICMPv6={})),
    ("repeated-enums", lambda: flow_pb2.FlowFilter(verdict=[1, 2, 77], reply=[True, False])),  # type: ignore[list-item]
    ("repeated-uint64", lambda: flow_pb2.FlowFilter(ip_trace_id=[1, 2**63])),
    ("repeated-messages", lambda: flow_pb2.Flow(egress_denied_by=[{}, {"revision": 5}])),
    ("node", lambda: observer_pb2.Node(state=2, tls={"enabled": True}, seen_flows=9)),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize("make", [c[1] for c in OUTPUT_CASES], ids=[c[0] for c in OUTPUT_CASES])
def test_output_equals_message_to_dict(make: Callable[[], Message]) -> None:
    msg = make()
    out = convert.proto_to_dict(msg)
    assert out == json_format.MessageToDict(msg, preserving_proto_field_name=True)
    assert declaration_order_ok(out, msg.DESCRIPTOR)
    # and back again
    assert convert.dict_to_proto(out, type(msg)) == msg


def test_output_rejects_timestamps_protojson_cannot_print() -> None:
    msg = flow_pb2.Flow(time={"seconds": 253_402_300_800})
    with pytest.raises(json_format.SerializeToJsonError):
        json_format.MessageToDict(msg)
    with pytest.raises(ValueError, match="253402300800"):
        convert.proto_to_dict(msg)


# --- timestamps -------------------------------------------------------------------------------


def random_timestamps(rng: random.Random) -> list[str]:
    out = []
    for _ in range(400):
        seconds = rng.randrange(-62_135_596_800, 253_402_300_800)
        nanos = rng.choice([0, rng.randrange(10**9), rng.randrange(1000) * 10**6])
        s = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos).ToJsonString()
        if rng.random() < 0.5 and nanos:  # vary the number of fraction digits
            s = s[:-1].rstrip("0") + "Z"
        out.append(s)
    return out


def test_timestamps_parse_like_from_json_string() -> None:
    for s in random_timestamps(random.Random(7)):
        expected = timestamp_pb2.Timestamp()
        expected.FromJsonString(s)
        got = convert.flow_to_proto({"time": s}).time
        assert got == expected, s
        assert convert.proto_to_dict(flow_pb2.Flow(time=got))["time"] == expected.ToJsonString()


def test_field_kinds_cover_every_field_of_our_protos() -> None:
    """Every field of every message has a plan entry on both sides (nothing silently dropped)."""
    for plan in convert._PLANS.values():
        desc = plan.cls.DESCRIPTOR
        assert set(plan.fields_in) == {f.name for f in desc.fields}
        assert {fd.name for fd in plan.fields_out} == {f.name for f in desc.fields}
        for fd in desc.fields:
            if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.message_type.full_name.startswith(
                "google.protobuf."
            ):
                assert plan.fields_in[fd.name][0] in (dict, list)
