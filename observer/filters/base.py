"""Shared pieces of the filter families: types, protojson value decoding, safe flow access.

Filters arrive as ``flow.FlowFilter`` in protojson dict form. Decoding follows protojson's
rules for each field type: ``null`` is an unset field, repeated fields are JSON arrays,
integers may be JSON numbers (integral) or decimal strings, enums are names or numbers,
booleans are JSON booleans only, nested messages are objects whose keys are proto names or
lowerCamel JSON names. Anything else raises ``FilterError(field, message)``.

Flows are read defensively: a flow dict with a missing key or a value of the wrong JSON type
behaves like a flow where that field is unset, and a compiled predicate never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from observer.errors import FilterError
from observer.filters.enums import EnumTable

FlowPredicate = Callable[[Mapping[str, Any]], bool]
"""A compiled filter: takes the ``flow`` object of a GetFlowsResponse dict."""

Builder = Callable[[str, Any, "FilterSpec"], FlowPredicate]
"""Compiles one FlowFilter field: (proto field name, raw JSON value, whole filter) -> predicate."""

EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})

UINT32_MAX: Final = (1 << 32) - 1
UINT64_MAX: Final = (1 << 64) - 1
INT32_MIN: Final = -(1 << 31)
INT32_MAX: Final = (1 << 31) - 1


class FilterSpec:
    """One FlowFilter with its keys normalised to proto names and unset fields dropped.

    ``fields`` maps proto field name -> raw JSON value (never None, never an empty list).
    """

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = fields

    def get(self, name: str) -> Any:
        return self.fields.get(name)


def lower_camel(proto_name: str) -> str:
    """protojson's JSON name for a proto field name (``source_ip`` -> ``sourceIp``)."""
    head, *rest = proto_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalize_message(field: str, value: Any, names: Sequence[str], what: str) -> dict[str, Any]:
    """Map a JSON object's keys (proto or lowerCamel names) to proto names; drop nulls.

    ``field`` names the FlowFilter field for errors; ``what`` the message type.
    """
    if not isinstance(value, Mapping):
        raise FilterError(field, f"expected a JSON object for {what}, got {_kind(value)}")
    by_json = {n: n for n in names}
    by_json.update({lower_camel(n): n for n in names})
    out: dict[str, Any] = {}
    for key, item in value.items():
        proto = by_json.get(key) if isinstance(key, str) else None
        if proto is None:
            raise FilterError(field, f"unknown field {key!r} in {what}")
        if proto in out:
            raise FilterError(field, f"duplicate field {proto!r} in {what}")
        if item is not None:
            out[proto] = item
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def repeated(field: str, value: Any) -> list[Any]:
    """The elements of a repeated field (a JSON array; null = empty)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise FilterError(field, f"expected an array, got {_kind(value)}")
    return list(value)


def string_list(field: str, value: Any) -> list[str]:
    out = repeated(field, value)
    for item in out:
        if not isinstance(item, str):
            raise FilterError(field, f"expected a string, got {_kind(item)}")
    return out


def bool_value(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FilterError(field, f"expected a boolean, got {_kind(value)}")
    return value


def bool_list(field: str, value: Any) -> list[bool]:
    return [bool_value(field, item) for item in repeated(field, value)]


def int_value(field: str, value: Any, lo: int, hi: int) -> int:
    """An integer given as a JSON number or a decimal string, within [lo, hi]."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if value.is_integer():
            number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit() and text == value:
            number = int(text)
    if number is None:
        raise FilterError(field, f"invalid integer {value!r}")
    if not lo <= number <= hi:
        raise FilterError(field, f"integer {value!r} out of range [{lo}, {hi}]")
    return number


def uint32_list(field: str, value: Any) -> list[int]:
    return [int_value(field, item, 0, UINT32_MAX) for item in repeated(field, value)]


def uint64_list(field: str, value: Any) -> list[int]:
    return [int_value(field, item, 0, UINT64_MAX) for item in repeated(field, value)]


def enum_value(field: str, value: Any, table: EnumTable) -> int:
    """An enum given by name or number (protojson accepts unknown numbers: open enums)."""
    if isinstance(value, str):
        number = table.by_name.get(value)
        if number is None:
            raise FilterError(field, f"invalid {table.name} value {value!r}")
        return number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FilterError(field, f"invalid {table.name} value {value!r}")
    return int_value(field, value, INT32_MIN, INT32_MAX)


def enum_match_set(field: str, value: Any, table: EnumTable) -> frozenset[str | int]:
    """Every form a matching flow value can take: the numbers and their names."""
    out: set[str | int] = set()
    for item in repeated(field, value):
        number = enum_value(field, item, table)
        out.add(number)
        name = table.by_number.get(number)
        if name is not None:
            out.add(name)
    return frozenset(out)


# --- defensive flow access -------------------------------------------------------------


def sub(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``obj[key]`` when it is a JSON object, else an empty mapping."""
    value = obj.get(key)
    return value if isinstance(value, Mapping) else EMPTY


def opt_sub(obj: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """``obj[key]`` when it is a JSON object, else None (an unset message)."""
    value = obj.get(key)
    return value if isinstance(value, Mapping) else None


def get_str(obj: Mapping[str, Any], key: str) -> str:
    """``obj[key]`` when it is a string, else ``""`` (the proto default)."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def get_int(obj: Mapping[str, Any], key: str) -> int:
    """``obj[key]`` as an integer (JSON number or decimal string as for 64-bit ints), else 0."""
    value = obj.get(key)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def get_list(obj: Mapping[str, Any], key: str) -> Sequence[Any]:
    """``obj[key]`` when it is a JSON array, else an empty tuple."""
    value = obj.get(key)
    return value if isinstance(value, list) else ()


def get_enum(obj: Mapping[str, Any], key: str) -> str | int:
    """An enum field of a flow: its name or number; 0 (the default) when unset or malformed."""
    value = obj.get(key)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    return 0
