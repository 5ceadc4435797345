"""``hubblectl observe --input-file``: read Hubble JSON lines instead of asking a server.

Lines are GetFlowsResponse objects (what ``observe -o json`` / ``-o jsonpb`` prints, Hubble's
or ours) or bare Flow objects (Hubble's legacy JSON and exporter-style output). Keys may use
proto or lowerCamel names; unknown fields are dropped with one warning (newer producers add
fields). A line that is not a JSON object is an error naming ``file:line``.

Selection mirrors the server: the same FlowFilter predicate (``observer.filters``), ``since`` /
``until`` on the response time, ``--first N`` / ``--last N`` counting flows (lost events and
node-status events pass the filters and do not count, as on the server).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from hubblectl.errors import InputError
from hubblectl.printer.timefmt import Timestamp, parse_rfc3339

MAX_NUMBER: Final = 2**64 - 1
_RESPONSE_KEYS: Final = frozenset(
    {"flow", "lost_events", "node_status", "lostEvents", "nodeStatus"}
)
# Well-known types that are scalars in JSON: do not descend into them.
_LEAF_MESSAGES: Final = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.Any",
        "google.protobuf.FieldMask",
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.BoolValue",
        "google.protobuf.UInt32Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int64Value",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
    }
)


@dataclass(frozen=True, slots=True)
class _Message:
    """Accepted JSON keys of one message -> (proto name, nested message or None)."""

    name: str
    keys: Mapping[str, tuple[str, _Message | None]]
    canonical: frozenset[str]


def _build_schema(descriptor: Any, seen: dict[str, _Message]) -> _Message:
    existing = seen.get(descriptor.full_name)
    if existing is not None:
        return existing
    keys: dict[str, tuple[str, _Message | None]] = {}
    msg = _Message(descriptor.full_name, keys, frozenset(f.name for f in descriptor.fields))
    seen[descriptor.full_name] = msg
    for f in descriptor.fields:
        nested = None
        if f.message_type is not None and f.message_type.full_name not in _LEAF_MESSAGES:
            nested = _build_schema(f.message_type, seen)
        keys[f.name] = (f.name, nested)
        keys.setdefault(f.json_name, (f.name, nested))
    return msg


class Normalizer:
    """Checks and renames keys against the GetFlowsResponse / Flow schema."""

    def __init__(self) -> None:
        from observer.api.v1.flow import flow_pb2
        from observer.api.v1.observer import observer_pb2

        seen: dict[str, _Message] = {}
        self.response = _build_schema(observer_pb2.GetFlowsResponse.DESCRIPTOR, seen)
        self.flow = _build_schema(flow_pb2.Flow.DESCRIPTOR, seen)

    def normalize(
        self, obj: dict[str, Any], schema: _Message, unknown: list[str], path: str = ""
    ) -> bool:
        """Rename lowerCamel keys to proto names and drop unknown keys, in place.

        Returns whether anything changed; unknown key paths are appended to ``unknown``.
        """
        changed = False
        if not obj.keys() <= schema.canonical:
            renamed: dict[str, Any] = {}
            for key, value in obj.items():
                entry = schema.keys.get(key)
                if entry is None:
                    unknown.append(path + key)
                    changed = True
                    continue
                if entry[0] != key:
                    changed = True
                renamed[entry[0]] = value
            obj.clear()
            obj.update(renamed)
        for key, value in obj.items():
            nested = schema.keys[key][1]
            if nested is None:
                continue
            if isinstance(value, dict):
                changed |= self.normalize(value, nested, unknown, f"{path}{key}.")
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        changed |= self.normalize(item, nested, unknown, f"{path}{key}[].")
        return changed


@dataclass(frozen=True, slots=True)
class InputLine:
    """One decoded response; ``raw`` is the original line when it can be printed as is."""

    response: dict[str, Any]
    raw: bytes | None


def read_lines(
    lines: Iterable[bytes],
    source: str,
    *,
    warn: Callable[[str], None],
    normalizer: Normalizer | None = None,
) -> Iterator[InputLine]:
    """Decode JSON lines into GetFlowsResponse dicts (bare flows are wrapped)."""
    norm = normalizer or Normalizer()
    warned = False
    for lineno, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise InputError(f"{source}:{lineno}: not valid JSON: {err}") from None
        if not isinstance(obj, dict):
            raise InputError(f"{source}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        bare = not (obj.keys() & _RESPONSE_KEYS) and bool(
            obj.keys() - {"node_name", "nodeName", "time"}
        )
        unknown: list[str] = []
        if bare:
            changed = norm.normalize(obj, norm.flow, unknown, "flow.")
            response: dict[str, Any] = {"flow": obj}
            if "node_name" in obj:
                response["node_name"] = obj["node_name"]
            if "time" in obj:
                response["time"] = obj["time"]
            raw = None
        else:
            changed = norm.normalize(obj, norm.response, unknown)
            response = obj
            raw = None if changed else line + b"\n"
        if unknown and not warned:
            warned = True
            warn(
                f"warning: {source}:{lineno}: ignoring unknown field(s) {', '.join(unknown[:5])}"
                " (written by a newer version?); further unknown fields are not reported"
            )
        yield InputLine(response, raw)


@dataclass(frozen=True, slots=True)
class Selection:
    """The request's number/first/since/until, applied locally."""

    number: int = 0
    first: bool = False
    since: Timestamp | None = None
    until: Timestamp | None = None


def _time_of(response: Mapping[str, Any]) -> Timestamp:
    value = response.get("time")
    if value is None and isinstance(response.get("flow"), Mapping):
        value = response["flow"].get("time")
    ts = parse_rfc3339(value) if isinstance(value, str) else None
    return ts if ts is not None else Timestamp(0)


def select(
    items: Iterable[InputLine],
    selection: Selection,
    predicate: Callable[[Mapping[str, Any]], bool] | None,
) -> Iterator[InputLine]:
    """Apply time window, filters and first/last to decoded lines (order preserved)."""

    def wanted() -> Iterator[InputLine]:
        for item in items:
            resp = item.response
            if selection.since is not None or selection.until is not None:
                ts = _time_of(resp)
                if selection.since is not None and ts < selection.since:
                    continue
                if selection.until is not None and ts > selection.until:
                    continue
            flow = resp.get("flow")
            if predicate is not None and isinstance(flow, Mapping) and not predicate(flow):
                continue
            yield item

    number = selection.number
    if number == 0 or number >= MAX_NUMBER:
        yield from wanted()
        return
    if selection.first:
        flows = 0
        for item in wanted():
            is_flow = "flow" in item.response
            if is_flow and flows >= number:
                return
            yield item
            if is_flow:
                flows += 1
                if flows >= number:
                    return
        return
    kept: deque[InputLine] = deque()
    flows = 0
    for item in wanted():
        kept.append(item)
        if "flow" in item.response:
            flows += 1
            while flows > number:
                dropped = kept.popleft()
                if "flow" in dropped.response:
                    flows -= 1
    yield from kept
