"""Fast conversions between the canonical flow dict and protobuf messages.

The canonical form of a flow inside the agent and the CLI is a plain ``dict`` shaped exactly
as Hubble's protojson output (docs/architecture.md §2): proto field names as keys, enums as
names, 64-bit integers as strings, ``Timestamp`` as an RFC 3339 UTC string, wrapper types as
bare scalars, unset fields absent, keys in proto declaration order.

``json_format`` does this generically and slowly (it inspects descriptors for every field of
every value). This module compiles, once at import, an immutable plan per message type of our
proto files (per field: the Python type the fast path accepts and a converter) and converts
with it:

* dict -> message: one walk over the dict checks the type of every value and builds
  constructor keyword arguments (nested messages as nested dicts, timestamps and wrappers as
  small dicts, 64-bit strings as ints); one constructor call then builds the whole tree in C,
  which also checks enum names and integer ranges. The walk takes only the canonical shapes
  (proto field names, enum names, 64-bit integers as ASCII digit strings, RFC 3339 ``...Z``
  timestamps, wrapper scalars, lists, objects). Anything else (lowerCamel JSON names, ``null``,
  enum numbers, numeric strings for 32-bit fields, timestamps with offsets, ``Any``,
  ``FieldMask``, bytes, a rejected enum name or range, two members of a oneof, ...) sends the
  whole dict to ``json_format.ParseDict``. So the inputs accepted and the messages produced are
  exactly ParseDict's; where ParseDict fails (``ParseError``, or the odd ``OverflowError`` it
  lets escape) these functions raise ``DecodeError``.
* message -> dict: ``ListFields`` per message and a converter per field; the values are those
  of ``json_format.MessageToDict(msg, preserving_proto_field_name=True)`` but keys come out in
  proto declaration order, as Hubble's Go protojson prints them (``MessageToDict`` uses
  field-number order).

Timestamps: an input may carry any number of fraction digits (``.5Z``); the output has 0, 3,
6 or 9 digits like protojson, so ``...:03.5Z`` comes back as ``...:03.500Z``.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, TypeVar

import orjson
from google.protobuf import json_format, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message

from observer.api.v1.flow import flow_pb2
from observer.api.v1.hubblectl import agent_pb2
from observer.api.v1.observer import observer_pb2
from observer.api.v1.peer import peer_pb2
from observer.api.v1.relay import relay_pb2
from observer.errors import DecodeError

__all__ = [
    "dict_to_proto",
    "flow_to_proto",
    "proto_to_dict",
    "response_to_json_line",
    "response_to_proto",
]

M = TypeVar("M", bound=Message)
Conv = Callable[[Any], Any]

_INT32_TYPES: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)
_INT64_TYPES: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
WRAPPER_TYPES: Final = frozenset(
    {
        "google.protobuf.BoolValue",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
    }
)
TIMESTAMP_TYPE: Final = "google.protobuf.Timestamp"
# Other well-known types with a special JSON form; whole-value json_format both ways.
_SPECIAL_WKT: Final = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Empty",
    }
)

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
# The last second protojson prints (9999-12-31T23:59:59Z) and 1000-01-01T00:00:00Z.
_MAX_SECONDS: Final = 253_402_300_799
_YEAR_1000: Final = (date(1000, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400


class _Fallback(Exception):
    """The fast path declined a value; the whole dict is redone with ParseDict."""


# A field, dict -> message: (the exact Python type the fast path accepts, converter or None,
# the sub-plan of a singular message field or None). The type None accepts nothing: such
# fields always go through ParseDict.
_InField = tuple[type | None, Conv | None, Any]
# A field, message -> dict: (declaration index, proto name, converter or None, sub-plan of a
# singular message field or None).
_OutField = tuple[int, str, Conv | None, Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one message type converts; built at import, never mutated afterwards."""

    full_name: str
    cls: type[Message]
    fields_in: dict[str, _InField]
    # names of fields sharing a oneof (groups of two or more)
    oneofs: tuple[frozenset[str], ...]
    fields_out: dict[FieldDescriptor, _OutField]
    # declaration order differs from field-number order (the order of ListFields)
    needs_sort: bool
    # has fields whose JSON form is left to json_format (maps, 32-bit floats)
    json_format_out: bool


# ---------------------------------------------------------------------------------------------
# value converters, dict -> message


def _str_list(v: list[Any]) -> list[Any]:
    for x in v:
        if type(x) is not str:
            raise _Fallback
    return v


def _bool_list(v: list[Any]) -> list[Any]:
    for x in v:
        if type(x) is not bool:
            raise _Fallback
    return v


def _int_list(v: list[Any]) -> list[Any]:
    for x in v:
        if type(x) is not int:
            raise _Fallback
    return v


def _int64(v: str) -> int:
    if v.isdigit() and v.isascii():
        return int(v)
    if v[:1] == "-" and v[1:].isdigit() and v.isascii():
        return int(v)
    raise _Fallback


def _int64_list(v: list[Any]) -> list[int]:
    out = []
    for x in v:
        if type(x) is not str:
            raise _Fallback
        out.append(_int64(x))
    return out


def _finite(v: float) -> float:
    if math.isfinite(v):
        return v
    raise _Fallback


def _finite_list(v: list[Any]) -> list[Any]:
    for x in v:
        if type(x) is not float or not math.isfinite(x):
            raise _Fallback
    return v


def _timestamp(v: str) -> dict[str, int]:
    """``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` -> Timestamp kwargs; other forms raise _Fallback.

    Gives what ``Timestamp.FromJsonString`` gives for these strings (checked by a test).
    """
    n = len(v)
    if (
        n < 20
        or v[n - 1] != "Z"
        or v[4] != "-"
        or v[7] != "-"
        or v[10] != "T"
        or v[13] != ":"
        or v[16] != ":"
        or v[11:13] > "23"
        or not v.isascii()
    ):
        raise _Fallback
    try:
        dt = datetime.fromisoformat(v[:19])
    except ValueError:
        raise _Fallback from None
    seconds = (
        (dt.toordinal() - _EPOCH_ORDINAL) * 86_400 + dt.hour * 3600 + dt.minute * 60 + dt.second
    )
    if n == 20:
        return {"seconds": seconds}
    frac = v[20 : n - 1]
    if v[19] != "." or len(frac) > 9 or not frac.isdigit():
        raise _Fallback
    return {"seconds": seconds, "nanos": int(frac.ljust(9, "0"))}


def _timestamp_list(v: list[Any]) -> list[dict[str, int]]:
    out = []
    for x in v:
        if type(x) is not str:
            raise _Fallback
        out.append(_timestamp(x))
    return out


def _wrap(v: Any) -> dict[str, Any]:
    return {"value": v}


def _submessage(v: Any) -> Any:
    """Marks a singular message field in a spec; the converters recurse inline."""
    raise AssertionError("not called")


def _message_list_in(plan: _Plan) -> Conv:
    def conv(v: list[Any]) -> list[dict[str, Any]]:
        return [_to_kwargs(x, plan) for x in v]

    return conv


def _wrapper_in(inner: Conv) -> Conv:
    def conv(v: Any) -> dict[str, Any]:
        return {"value": inner(v)}

    return conv


def _wrapper_list_in(expected: type, inner: Conv | None) -> Conv:
    def conv(v: list[Any]) -> list[dict[str, Any]]:
        out = []
        for x in v:
            if type(x) is not expected:
                raise _Fallback
            out.append({"value": x if inner is None else inner(x)})
        return out

    return conv


def _to_kwargs(d: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    """Constructor arguments for ``plan.cls`` from a canonical dict, or raise _Fallback."""
    if type(d) is not dict:
        raise _Fallback
    fields = plan.fields_in
    kw: dict[str, Any] = {}
    for k, v in d.items():
        spec = fields.get(k)
        if spec is None or type(v) is not spec[0]:
            raise _Fallback
        conv = spec[1]
        if conv is None:
            kw[k] = v
        elif conv is _submessage:
            kw[k] = _to_kwargs(v, spec[2])  # type: ignore[arg-type]  # v is a dict: spec[0]
        else:
            kw[k] = conv(v)
    for group in plan.oneofs:
        if len(group.intersection(kw)) > 1:
            raise _Fallback
    return kw


# ---------------------------------------------------------------------------------------------
# value converters, message -> dict


def _format_timestamp(ts: timestamp_pb2.Timestamp) -> str:
    seconds = ts.seconds
    nanos = ts.nanos
    if not (_YEAR_1000 <= seconds <= _MAX_SECONDS) or not (0 <= nanos < 1_000_000_000):
        # before year 1000 (strftime would not pad the year) or invalid: ToJsonString
        # formats or raises ValueError, as MessageToDict does
        return ts.ToJsonString()
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return head + "Z"
    if nanos % 1_000_000 == 0:
        return "%s.%03dZ" % (head, nanos // 1_000_000)  # noqa: UP031
    if nanos % 1_000 == 0:
        return "%s.%06dZ" % (head, nanos // 1_000)  # noqa: UP031
    return "%s.%09dZ" % (head, nanos)  # noqa: UP031


def _double_out(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _bytes_out(v: bytes) -> str:
    return base64.b64encode(v).decode("ascii")


def _wkt_out(v: Message) -> Any:
    return json_format.MessageToDict(v, preserving_proto_field_name=True)


def _enum_out(names: dict[int, str]) -> Conv:
    get = names.get

    def conv(v: int) -> str | int:
        return get(v, v)

    return conv


def _message_list_out(plan: _Plan) -> Conv:
    def conv(v: Iterable[Message]) -> list[dict[str, Any]]:
        return [_from_message(x, plan) for x in v]

    return conv


def _list_out(item: Conv | None) -> Conv:
    if item is None:
        return list

    def conv(v: Iterable[Any]) -> list[Any]:
        return [item(x) for x in v]

    return conv


def _wrapper_out(inner: Conv | None) -> Conv:
    def conv(v: Any) -> Any:
        return v.value if inner is None else inner(v.value)

    return conv


def _from_message(msg: Message, plan: _Plan) -> dict[str, Any]:
    if plan.json_format_out:
        return _wkt_out(msg)  # type: ignore[no-any-return]
    fields = plan.fields_out
    if not plan.needs_sort:
        out: dict[str, Any] = {}
        for fd, v in msg.ListFields():
            spec = fields.get(fd)
            if spec is None:  # an extension; our protos have none
                continue
            conv = spec[2]
            if conv is None:
                out[spec[1]] = v
            elif conv is _submessage:
                out[spec[1]] = _from_message(v, spec[3])
            else:
                out[spec[1]] = conv(v)
        return out
    items = []
    for fd, v in msg.ListFields():
        spec = fields.get(fd)
        if spec is None:
            continue
        conv = spec[2]
        if conv is None:
            items.append((spec[0], spec[1], v))
        elif conv is _submessage:
            items.append((spec[0], spec[1], _from_message(v, spec[3])))
        else:
            items.append((spec[0], spec[1], conv(v)))
    items.sort()  # declaration indexes are unique, so only they are compared
    return {name: value for _, name, value in items}


# ---------------------------------------------------------------------------------------------
# plans


class _Planner:
    """Builds the plans of a set of files (used only while importing this module)."""

    def __init__(self) -> None:
        self.plans: dict[str, _Plan] = {}

    @staticmethod
    def enum_names(et: EnumDescriptor) -> dict[int, str]:
        # protojson prints the first name declared for a number
        return {v.number: v.name for v in reversed(et.values)}

    @staticmethod
    def field_needs_json_format(fd: FieldDescriptor) -> bool:
        """Maps and 32-bit floats: message -> dict leaves the whole message to json_format."""
        if fd.type == FieldDescriptor.TYPE_FLOAT:
            return True
        mt = fd.message_type
        return mt is not None and bool(mt.GetOptions().map_entry)

    def scalar(self, fd: FieldDescriptor) -> tuple[type | None, Conv | None, Conv | None, bool]:
        """(accepted type, input converter, output converter, unsupported) of a scalar field."""
        t = fd.type
        rep = fd.is_repeated
        if t == FieldDescriptor.TYPE_STRING:
            return (list, _str_list, None, False) if rep else (str, None, None, False)
        if t == FieldDescriptor.TYPE_BOOL:
            return (list, _bool_list, None, False) if rep else (bool, None, None, False)
        if t in _INT32_TYPES:
            return (list, _int_list, None, False) if rep else (int, None, None, False)
        if t == FieldDescriptor.TYPE_ENUM:
            assert fd.enum_type is not None
            out = _enum_out(self.enum_names(fd.enum_type))
            return (list, _str_list, out, False) if rep else (str, None, out, False)
        if t in _INT64_TYPES:
            return (list, _int64_list, str, False) if rep else (str, _int64, str, False)
        if t == FieldDescriptor.TYPE_DOUBLE:
            if rep:
                return list, _finite_list, _double_out, False
            return float, _finite, _double_out, False
        if t == FieldDescriptor.TYPE_BYTES:
            return None, None, _bytes_out, False
        return None, None, None, True  # 32-bit float: shortest-repr formatting

    def field(self, fd: FieldDescriptor) -> tuple[_InField, Conv | None]:
        """(input spec, output converter) of a field."""
        rep = fd.is_repeated
        if fd.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            expected, conv, out, _ = self.scalar(fd)
            if rep:
                out = _list_out(out)
            return (expected, conv, None), out
        mt = fd.message_type
        assert mt is not None
        if mt.GetOptions().map_entry:  # the plan's json_format_out covers the output
            return (None, None, None), None
        name = mt.full_name
        if name == TIMESTAMP_TYPE:
            if rep:
                return (list, _timestamp_list, None), _list_out(_format_timestamp)
            return (str, _timestamp, None), _format_timestamp
        if name in WRAPPER_TYPES:
            expected, inner_in, inner_out, slow = self.scalar(mt.fields_by_name["value"])
            if expected is None or slow:  # bytes, 32-bit float: json_format's JSON form
                return (None, None, None), _list_out(_wkt_out) if rep else _wkt_out
            out = _wrapper_out(inner_out)
            if rep:
                return (list, _wrapper_list_in(expected, inner_in), None), _list_out(out)
            if inner_in is None:
                return (expected, _wrap, None), out
            return (expected, _wrapper_in(inner_in), None), out
        if name in _SPECIAL_WKT:
            return (None, None, None), _list_out(_wkt_out) if rep else _wkt_out
        sub = self.plan(mt)
        if rep:
            return (list, _message_list_in(sub), None), _message_list_out(sub)
        return (dict, _submessage, sub), _submessage

    def plan(self, desc: Descriptor) -> _Plan:
        existing = self.plans.get(desc.full_name)
        if existing is not None:
            return existing
        fields_in: dict[str, _InField] = {}
        fields_out: dict[FieldDescriptor, _OutField] = {}
        numbers = [f.number for f in desc.fields]
        plan = _Plan(
            full_name=desc.full_name,
            cls=message_factory.GetMessageClass(desc),
            fields_in=fields_in,
            oneofs=tuple(
                frozenset(f.name for f in o.fields) for o in desc.oneofs if len(o.fields) > 1
            ),
            fields_out=fields_out,
            needs_sort=numbers != sorted(numbers),
            json_format_out=any(self.field_needs_json_format(fd) for fd in desc.fields),
        )
        # Registered before its fields are planned, so recursive types terminate.
        self.plans[desc.full_name] = plan
        for index, fd in enumerate(desc.fields):
            spec, out = self.field(fd)
            fields_in[fd.name] = spec
            sub = spec[2] if spec[1] is _submessage else None  # recursed into inline
            fields_out[fd] = (index, fd.name, out, sub)
        return plan

    def file(self, fdesc: FileDescriptor) -> None:
        stack = list(fdesc.message_types_by_name.values())
        while stack:
            d = stack.pop()
            if not d.GetOptions().map_entry:
                self.plan(d)
            stack.extend(d.nested_types)


def _build_plans(files: Iterable[FileDescriptor]) -> Mapping[str, _Plan]:
    planner = _Planner()
    for f in files:
        planner.file(f)
    return planner.plans


# Immutable after import: a plan per message full name, for every message of our protos.
_PLANS: Final[Mapping[str, _Plan]] = _build_plans(
    [
        flow_pb2.DESCRIPTOR,
        relay_pb2.DESCRIPTOR,
        observer_pb2.DESCRIPTOR,
        peer_pb2.DESCRIPTOR,
        agent_pb2.DESCRIPTOR,
    ]
)
_RESPONSE_PLAN: Final = _PLANS["observer.GetFlowsResponse"]
_FLOW_PLAN: Final = _PLANS["flow.Flow"]


# ---------------------------------------------------------------------------------------------
# public API


def _convert(d: dict[str, Any], plan: _Plan) -> Message:
    try:
        return plan.cls(**_to_kwargs(d, plan))
    except (_Fallback, ValueError, TypeError):
        pass
    return _parse_dict(d, plan.cls)


def _parse_dict(d: dict[str, Any], message_type: type[M]) -> M:
    try:
        return json_format.ParseDict(d, message_type())
    except Exception as e:  # ParseError, and what ParseDict lets escape (OverflowError, ...)
        raise DecodeError(f"invalid {message_type.DESCRIPTOR.full_name}: {e}") from e


def response_to_proto(d: dict[str, Any]) -> observer_pb2.GetFlowsResponse:
    """A GetFlowsResponse dict (``flow``, ``lost_events`` or ``node_status``) -> the message.

    Accepts exactly what ``json_format.ParseDict`` accepts and returns an equal message;
    raises ``DecodeError`` (an ``ObserverError``) where ParseDict fails.
    """
    msg = _convert(d, _RESPONSE_PLAN)
    assert isinstance(msg, observer_pb2.GetFlowsResponse)
    return msg


def flow_to_proto(d: dict[str, Any]) -> flow_pb2.Flow:
    """A flow dict -> ``flow.Flow``; same contract as ``response_to_proto``."""
    msg = _convert(d, _FLOW_PLAN)
    assert isinstance(msg, flow_pb2.Flow)
    return msg


def dict_to_proto(d: dict[str, Any], message_type: type[M]) -> M:
    """Any message of our protos from its protojson dict (e.g. ``flow_pb2.FlowFilter``).

    Same contract as ``response_to_proto``; other types go straight to ParseDict.
    """
    plan = _PLANS.get(message_type.DESCRIPTOR.full_name)
    if plan is None or plan.cls is not message_type:
        return _parse_dict(d, message_type)
    msg = _convert(d, plan)
    assert isinstance(msg, message_type)
    return msg


def proto_to_dict(msg: Message) -> dict[str, Any]:
    """A message -> its protojson dict: proto field names, keys in declaration order.

    Values equal ``json_format.MessageToDict(msg, preserving_proto_field_name=True)``.
    A Timestamp outside years 1..9999 raises ``ValueError`` (MessageToDict raises its
    ``SerializeToJsonError``).
    """
    plan = _PLANS.get(msg.DESCRIPTOR.full_name)
    if plan is None or plan.cls is not type(msg):
        return _wkt_out(msg)  # type: ignore[no-any-return]
    return _from_message(msg, plan)


def response_to_json_line(msg: observer_pb2.GetFlowsResponse) -> bytes:
    """A GetFlowsResponse as one compact JSON line ending in ``\\n`` (Hubble's ``-o json``)."""
    return orjson.dumps(_from_message(msg, _RESPONSE_PLAN), option=orjson.OPT_APPEND_NEWLINE)
