"""``hubblectl status``: rendering of a ServerStatusResponse dict (protojson shape, reference §7.6).

``compact`` prints ``Current/Max Flows``, ``Flows/s`` and, from a relay, the node counts and
the unavailable nodes; ``dict``, ``table`` and ``json`` print every field as Hubble does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from hubblectl.printer.escape import escape, sanitize_json
from hubblectl.printer.fields import as_int, go_duration, group_thousands
from hubblectl.printer.table import render_table

Status = Mapping[str, Any]


def _flows_rate(status: Status) -> float:
    value = status.get("flows_rate")
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _optional_count(status: Status, key: str) -> str:
    value = status.get(key)
    return "N/A" if value is None else str(as_int(value))


def flows_per_second(status: Status, *, fallback: bool) -> str:
    """``flows_rate`` with 2 decimals; with ``fallback`` and no rate, seen_flows/uptime."""
    rate = _flows_rate(status)
    if rate > 0:
        return f"{rate:.2f}"
    uptime_s = as_int(status.get("uptime_ns")) / 1e9
    if fallback and uptime_s > 0:
        return f"{as_int(status.get('seen_flows')) / uptime_s:.2f}"
    return "N/A"


def format_compact(status: Status) -> str:
    num, max_ = as_int(status.get("num_flows")), as_int(status.get("max_flows"))
    ratio = f" ({num / max_ * 100:.2f}%)" if max_ > 0 else ""
    lines = [f"Current/Max Flows: {group_thousands(num)}/{group_thousands(max_)}{ratio}"]
    lines.append(f"Flows/s: {flows_per_second(status, fallback=True)}")
    connected = status.get("num_connected_nodes")
    unavailable = status.get("num_unavailable_nodes")
    if connected is not None:
        total = ""
        if unavailable is not None:
            total = f"/{as_int(unavailable) + as_int(connected)}"
        lines.append(f"Connected Nodes: {as_int(connected)}{total}")
    if unavailable is not None and as_int(unavailable) > 0:
        count = as_int(unavailable)
        raw = status.get("unavailable_nodes")
        names = sorted(escape(str(n)) for n in raw) if isinstance(raw, list) else []
        if names:
            if count > len(names):
                names.append(f"and {count - len(names)} more...")
            lines.append(f"Unavailable Nodes: {count}")
            lines.extend(f"  - {name}" for name in names)
        else:
            lines.append(f"Unavailable Nodes: {count}")
    return "\n".join(lines) + "\n"


def _values(status: Status) -> list[str]:
    return [
        group_thousands(as_int(status.get("num_flows"))),
        group_thousands(as_int(status.get("max_flows"))),
        group_thousands(as_int(status.get("seen_flows"))),
        flows_per_second(status, fallback=False),
        go_duration(as_int(status.get("uptime_ns"))),
        _optional_count(status, "num_connected_nodes"),
        _optional_count(status, "num_unavailable_nodes"),
        escape(str(status.get("version", "") or "")),
    ]


_DICT_KEYS = (
    "NUM FLOWS",
    "MAX FLOWS",
    "SEEN FLOWS",
    "FLOWS PER SECOND",
    "UPTIME",
    "NUM CONNECTED NODES",
    "NUM UNAVAIL. NODES",
    "VERSION",
)
_TABLE_KEYS = (
    "NUM FLOWS",
    "MAX FLOWS",
    "SEEN FLOWS",
    "FLOWS PER SECOND",
    "UPTIME",
    "NUM CONNECTED NODES",
    "NUM UNAVAILABLE NODES",
    "VERSION",
)


def format_dict(status: Status) -> str:
    return "".join(
        f"{key:>19}: {value}\n" for key, value in zip(_DICT_KEYS, _values(status), strict=True)
    )


def format_table(status: Status) -> str:
    return render_table([list(_TABLE_KEYS), _values(status)])


def format_json(status: Status) -> str:
    return sanitize_json(orjson.dumps(status, option=orjson.OPT_APPEND_NEWLINE)).decode()


def format_status(status: Status, fmt: str) -> str:
    """Render in ``compact``, ``dict``, ``table`` or ``json``/``jsonpb``."""
    if fmt == "compact":
        return format_compact(status)
    if fmt == "dict":
        return format_dict(status)
    if fmt == "table":
        return format_table(status)
    return format_json(status)
