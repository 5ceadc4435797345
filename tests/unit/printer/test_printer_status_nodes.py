"""ServerStatus and node-list renderings, against Hubble's expected output (reference §6.6, §7.6)."""

from __future__ import annotations

from typing import Any

import pytest

from hubblectl.printer.nodes import format_nodes_json, format_nodes_table
from hubblectl.printer.status import format_status

SS = {
    "num_flows": "2031",
    "max_flows": "4095",
    "seen_flows": "2348885",
    "uptime_ns": "301515181665",
    "version": "cilium v1.15.0+g4145278",
    "flows_rate": 23.456,
}
SS_NO_RATE = {
    "num_flows": "2031",
    "max_flows": "4095",
    "seen_flows": "2348885",
    "uptime_ns": "301515181665",
    "version": "cilium v1.10.3+g4145278",
}
SS_RELAY = {
    "num_flows": "2771",
    "max_flows": "8190",
    "seen_flows": "2771",
    "uptime_ns": "301515181665",
    "num_connected_nodes": 2,
    "num_unavailable_nodes": 0,
    "version": "hubble-relay v1.15.0+g4145278",
    "flows_rate": 23.456,
}
SS_UNAVAILABLE = {
    **SS_RELAY,
    "num_connected_nodes": 1,
    "num_unavailable_nodes": 3,
    "unavailable_nodes": ["node-c", "node-b"],
}

TABLE_HEADER = (
    "NUM FLOWS   MAX FLOWS   SEEN FLOWS   FLOWS PER SECOND   UPTIME           "
    "NUM CONNECTED NODES   NUM UNAVAILABLE NODES   VERSION\n"
)

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "tabular",
        SS,
        "table",
        TABLE_HEADER
        + "2,031       4,095       2,348,885    23.46              5m1.515181665s   N/A                   N/A                     cilium v1.15.0+g4145278\n",
    ),
    (
        "tabular-with-nodes",
        SS_RELAY,
        "table",
        TABLE_HEADER
        + "2,771       8,190       2,771        23.46              5m1.515181665s   2                     0                       hubble-relay v1.15.0+g4145278\n",
    ),
    (
        "tabular-without-flow-rate",
        SS_NO_RATE,
        "table",
        TABLE_HEADER
        + "2,031       4,095       2,348,885    N/A                5m1.515181665s   N/A                   N/A                     cilium v1.10.3+g4145278\n",
    ),
    ("compact", SS, "compact", "Current/Max Flows: 2,031/4,095 (49.60%)\nFlows/s: 23.46\n"),
    (
        "compact-with-nodes",
        SS_RELAY,
        "compact",
        "Current/Max Flows: 2,771/8,190 (33.83%)\nFlows/s: 23.46\nConnected Nodes: 2/2\n",
    ),
    (
        "compact-without-flow-rate",
        SS_NO_RATE,
        "compact",
        "Current/Max Flows: 2,031/4,095 (49.60%)\nFlows/s: 7790.27\n",
    ),
    (
        "compact-unavailable",
        SS_UNAVAILABLE,
        "compact",
        "Current/Max Flows: 2,771/8,190 (33.83%)\nFlows/s: 23.46\nConnected Nodes: 1/4\n"
        "Unavailable Nodes: 3\n  - node-b\n  - node-c\n  - and 1 more...\n",
    ),
    ("compact-no-max", {"num_flows": "5"}, "compact", "Current/Max Flows: 5/0\nFlows/s: N/A\n"),
    (
        "json",
        SS,
        "json",
        '{"num_flows":"2031","max_flows":"4095","seen_flows":"2348885","uptime_ns":"301515181665",'
        '"version":"cilium v1.15.0+g4145278","flows_rate":23.456}\n',
    ),
    (
        "dict",
        SS,
        "dict",
        "          NUM FLOWS: 2,031\n          MAX FLOWS: 4,095\n         SEEN FLOWS: 2,348,885\n"
        "   FLOWS PER SECOND: 23.46\n             UPTIME: 5m1.515181665s\nNUM CONNECTED NODES: N/A\n"
        " NUM UNAVAIL. NODES: N/A\n            VERSION: cilium v1.15.0+g4145278\n",
    ),
    (
        "dict-with-nodes",
        SS_RELAY,
        "dict",
        "          NUM FLOWS: 2,771\n          MAX FLOWS: 8,190\n         SEEN FLOWS: 2,771\n"
        "   FLOWS PER SECOND: 23.46\n             UPTIME: 5m1.515181665s\nNUM CONNECTED NODES: 2\n"
        " NUM UNAVAIL. NODES: 0\n            VERSION: hubble-relay v1.15.0+g4145278\n",
    ),
]


@pytest.mark.parametrize(
    ("status", "fmt", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_status(status: dict[str, Any], fmt: str, expected: str) -> None:
    assert format_status(status, fmt) == expected


NODES: list[dict[str, Any]] = [
    {
        "name": "foo",
        "version": "1",
        "address": "1.2.3.4",
        "state": "NODE_CONNECTED",
        "tls": {"enabled": True, "server_name": "foo.bar.tls"},
        "uptime_ns": "1000000000000",
        "num_flows": "500",
        "max_flows": "1000",
    },
    {"name": "bar", "version": "2", "address": "5.6.7.8", "state": "NODE_UNAVAILABLE"},
    {"name": "baz", "version": "3", "state": "NODE_GONE"},
    {"name": "faz", "version": "4", "state": "NODE_ERROR"},
]


def test_nodes_table() -> None:
    assert format_nodes_table(NODES) == (
        "NAME   STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS\n"
        "bar    Unavailable   N/A      N/A       N/A\n"
        "baz    Gone          N/A      N/A       N/A\n"
        "faz    Error         N/A      N/A       N/A\n"
        "foo    Connected     16m40s   0.00      500/1000 ( 50.00%)\n"
    )


def test_nodes_wide() -> None:
    assert format_nodes_table(NODES, wide=True) == (
        "NAME   STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS    VERSION   ADDRESS   TLS\n"
        "bar    Unavailable   N/A      N/A       N/A                  2         5.6.7.8   N/A\n"
        "baz    Gone          N/A      N/A       N/A                  3                   N/A\n"
        "faz    Error         N/A      N/A       N/A                  4                   N/A\n"
        "foo    Connected     16m40s   0.00      500/1000 ( 50.00%)   1         1.2.3.4   Enabled\n"
    )


def test_nodes_empty_node() -> None:
    assert format_nodes_table([{}], wide=True) == (
        "NAME   STATUS    AGE   FLOWS/S   CURRENT/MAX-FLOWS   VERSION   ADDRESS   TLS\n"
        "       Unknown   N/A   N/A       N/A                 N/A                 N/A\n"
    )


def test_nodes_json() -> None:
    assert (
        format_nodes_json([NODES[2], {}])
        == '[\n  {},\n  {\n    "name": "baz",\n    "version": "3",\n    "state": "NODE_GONE"\n  }\n]\n'
    )


def test_nodes_table_escapes_names() -> None:
    text = format_nodes_table([{"name": "evil\x1b[2J", "state": "NODE_CONNECTED"}])
    assert "\x1b" not in text and "evil^[[2J" in text
