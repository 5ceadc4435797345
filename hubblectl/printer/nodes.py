"""``hubblectl list nodes``: the node table and JSON (reference §6.6).

``table``: ``NAME STATUS AGE FLOWS/S CURRENT/MAX-FLOWS``; ``wide`` adds ``VERSION ADDRESS
TLS``; rows sorted by name. ``json``: an indented array of Node objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from hubblectl.printer.escape import escape
from hubblectl.printer.fields import as_int, go_duration
from hubblectl.printer.table import render_table

Node = Mapping[str, Any]

_STATE_TITLES: Final = MappingProxyType(
    {
        "NODE_CONNECTED": "Connected",
        "NODE_UNAVAILABLE": "Unavailable",
        "NODE_GONE": "Gone",
        "NODE_ERROR": "Error",
    }
)


def _round_seconds(ns: int) -> int:
    """Go's ``Duration.Round(time.Second)`` (halves away from zero) for ns >= 0."""
    return (ns + 500_000_000) // 1_000_000_000 * 1_000_000_000


def sort_nodes(nodes: Sequence[Node]) -> list[Node]:
    return sorted(nodes, key=lambda n: str(n.get("name", "") or ""))


def node_row(node: Node, *, wide: bool) -> list[str]:
    age = flows_per_sec = "N/A"
    uptime = _round_seconds(as_int(node.get("uptime_ns")))
    if uptime > 0:
        age = go_duration(uptime)
        flows_per_sec = f"{as_int(node.get('seen_flows')) / (uptime / 1e9):.2f}"
    ratio = "N/A"
    max_flows = as_int(node.get("max_flows"))
    num_flows = as_int(node.get("num_flows"))
    if max_flows > 0:
        ratio = f"{num_flows}/{max_flows} ({num_flows / max_flows * 100:6.2f}%)"
    state = _STATE_TITLES.get(str(node.get("state", "")), "Unknown")
    row = [escape(str(node.get("name", "") or "")), state, age, flows_per_sec, ratio]
    if wide:
        version = escape(str(node.get("version", "") or "")) or "N/A"
        tls_info = node.get("tls")
        tls = "N/A"
        if isinstance(tls_info, Mapping):
            tls = "Enabled" if tls_info.get("enabled") else "Disabled"
        row += [version, escape(str(node.get("address", "") or "")), tls]
    return row


def format_nodes_table(nodes: Sequence[Node], *, wide: bool = False) -> str:
    header = ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"]
    if wide:
        header += ["VERSION", "ADDRESS", "TLS"]
    rows = [header] + [node_row(n, wide=wide) for n in sort_nodes(nodes)]
    return render_table(rows)


def format_nodes_json(nodes: Sequence[Node]) -> str:
    """Indented JSON array (2 spaces), as Hubble prints it; escapes keep it terminal-safe."""
    return json.dumps([dict(n) for n in sort_nodes(nodes)], indent=2) + "\n"
