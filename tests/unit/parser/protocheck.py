"""Checks a response dict against the generated observer.GetFlowsResponse message.

* ``json_format.ParseDict`` accepts it (names, enum names, types, 64-bit strings, timestamps);
* ``MessageToDict(ParseDict(d), preserving_proto_field_name=True) == d``: nothing present that
  protojson would omit (zero values, empty lists), and the same value spellings;
* every object's keys are in the message's field declaration order (Go protojson's order).

If the generated code (observer/api/v1, made by scripts/gen_proto.py) is not importable the
check skips with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest

try:
    from google.protobuf import json_format
    from google.protobuf.descriptor import FieldDescriptor

    from observer.api.v1.observer import observer_pb2

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - depends on the generated code being present
    _IMPORT_ERROR = (
        f"observer/api/v1 generated code not importable yet ({exc}); proto check skipped"
    )

_LEAF_MESSAGES = {
    "google.protobuf.Timestamp",
    "google.protobuf.BoolValue",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.Any",
}


def proto_available() -> bool:
    return _IMPORT_ERROR is None


def _check_order(d: dict[str, Any], desc: Any, path: str) -> None:
    order = [f.name for f in desc.fields]
    keys = list(d)
    unknown = [k for k in keys if k not in desc.fields_by_name]
    assert not unknown, f"{path}: keys {unknown} are not fields of {desc.full_name}"
    assert keys == sorted(keys, key=order.index), (
        f"{path}: keys {keys} not in declaration order of {desc.full_name}"
    )
    for k, v in d.items():
        fd = desc.fields_by_name[k]
        if fd.type != FieldDescriptor.TYPE_MESSAGE or fd.message_type.full_name in _LEAF_MESSAGES:
            continue
        items = v if isinstance(v, list) else [v]
        for i, item in enumerate(items):
            assert isinstance(item, dict), f"{path}.{k}: expected an object, got {item!r}"
            _check_order(item, fd.message_type, f"{path}.{k}[{i}]")


def check_response(resp: dict[str, Any]) -> None:
    if _IMPORT_ERROR is not None:
        pytest.skip(_IMPORT_ERROR)
    msg = json_format.ParseDict(resp, observer_pb2.GetFlowsResponse())
    back = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    assert back == resp
    _check_order(resp, observer_pb2.GetFlowsResponse.DESCRIPTOR, "response")
