"""observer.relay.status (pure) and the pure helpers of observer.relay.pool."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from observer.api.convert import proto_to_dict, response_to_proto
from observer.api.v1.observer import observer_pb2
from observer.api.v1.peer import peer_pb2
from observer.errors import ConfigError
from observer.relay.pool import (
    Backoff,
    PeerSpec,
    normalize_address,
    parse_static_peer,
    spec_from_notification,
)
from observer.relay.status import (
    NodeReport,
    get_nodes,
    node_status_line,
    node_status_response,
    server_status,
)


def _status(num: int, max_: int, seen: int, uptime: int, rate: float, version: str = "hubblectl v0.1.0") -> Any:
    return observer_pb2.ServerStatusResponse(
        num_flows=num, max_flows=max_, seen_flows=seen, uptime_ns=uptime, flows_rate=rate, version=version
    )


def test_server_status_sums_connected_nodes() -> None:
    reports = [
        NodeReport("node-a", "a:4244", True, status=_status(10, 4095, 100, 5_000, 1.5)),
        NodeReport("node-b", "b:4244", True, status=_status(20, 8191, 200, 9_000, 2.0)),
        NodeReport("node-c", "c:4244", False, error="connection refused"),
        NodeReport("node-d", "d:4244", True, status=None, error="INTERNAL"),
    ]
    got = proto_to_dict(server_status(reports, "hubblectl-relay v0.1.0"))
    assert got == {
        "num_flows": "30",
        "max_flows": "12286",
        "seen_flows": "300",
        "uptime_ns": "9000",
        "num_connected_nodes": 2,
        "num_unavailable_nodes": 2,
        "unavailable_nodes": ["node-c", "node-d"],
        "version": "hubblectl-relay v0.1.0",
        "flows_rate": 3.5,
    }


def test_server_status_lists_at_most_ten_unavailable_nodes() -> None:
    reports = [NodeReport(f"node-{i:02d}", "x", False) for i in range(12, 0, -1)]
    got = server_status(reports, "v")
    assert got.num_unavailable_nodes.value == 12
    assert list(got.unavailable_nodes) == [f"node-{i:02d}" for i in range(1, 11)]
    assert got.num_connected_nodes.value == 0, "set (0), not absent: the CLI prints 0/12"
    assert got.HasField("num_connected_nodes")


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        pytest.param(
            NodeReport("node-a", "127.0.0.1:4244", True, True, "node-a.default.hubble-grpc.cilium.io", _status(1, 3, 4, 5, 0.0)),
            {
                "name": "node-a",
                "version": "hubblectl v0.1.0",
                "address": "127.0.0.1:4244",
                "state": "NODE_CONNECTED",
                "tls": {"enabled": True, "server_name": "node-a.default.hubble-grpc.cilium.io"},
                "uptime_ns": "5",
                "num_flows": "1",
                "max_flows": "3",
                "seen_flows": "4",
            },
            id="connected",
        ),
        pytest.param(
            NodeReport("node-b", "127.0.0.1:4245", False, status=_status(1, 3, 4, 5, 0.0)),
            {"name": "node-b", "address": "127.0.0.1:4245", "state": "NODE_UNAVAILABLE", "tls": {}},
            id="unavailable-ignores-status",
        ),
        pytest.param(
            NodeReport("node-c", "unix:///s", True, status=None, error="boom"),
            {"name": "node-c", "address": "unix:///s", "state": "NODE_ERROR", "tls": {}},
            id="error",
        ),
    ],
)
def test_get_nodes_entries(report: NodeReport, expected: dict[str, Any]) -> None:
    assert [proto_to_dict(n) for n in get_nodes([report]).nodes] == [expected]


def test_get_nodes_sorted_by_name() -> None:
    reports = [NodeReport(n, "x", False) for n in ("b", "c", "a")]
    assert [n.name for n in get_nodes(reports).nodes] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("NODE_CONNECTED", ["node-a", "node-b"], "", "default/relay", 1_795_694_410_000_000_000),
            {"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["node-a", "node-b"]},
             "node_name": "default/relay", "time": "2026-11-26T12:00:10Z"},
            id="connected",
        ),
        pytest.param(
            ("NODE_UNAVAILABLE", ["default/node-b"], "connection refused", "", 1_795_694_410_000_000_000),
            {"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": ["default/node-b"],
                             "message": "connection refused"}, "time": "2026-11-26T12:00:10Z"},
            id="unavailable-with-message",
        ),
    ],
)
def test_node_status_response(args: tuple[Any, ...], expected: dict[str, Any]) -> None:
    assert node_status_response(*args) == expected
    line = node_status_line(*args)
    assert orjson.loads(line) == expected
    # it is a valid GetFlowsResponse, and converts back to the same JSON
    assert proto_to_dict(response_to_proto(orjson.loads(line))) == expected


# --- pool helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("10.0.0.5", "10.0.0.5:4244", id="ip-without-port"),
        pytest.param("10.0.0.5:14244", "10.0.0.5:14244", id="ip-port"),
        pytest.param("node-a.example", "node-a.example:4244", id="dns-name"),
        pytest.param(":4244", "127.0.0.1:4244", id="empty-host"),
        pytest.param("0.0.0.0:4244", "127.0.0.1:4244", id="wildcard-v4"),
        pytest.param("[::]:4244", "[::1]:4244", id="wildcard-v6"),
        pytest.param("fd00::5", "[fd00::5]:4244", id="bare-v6"),
        pytest.param("[fd00::5]:99", "[fd00::5]:99", id="v6-port"),
        pytest.param("unix:///var/run/hubblectl/hubble.sock", "unix:///var/run/hubblectl/hubble.sock", id="unix-url"),
        pytest.param("/var/run/hubblectl/hubble.sock", "unix:///var/run/hubblectl/hubble.sock", id="unix-path"),
    ],
)
def test_normalize_address(address: str, expected: str) -> None:
    assert normalize_address(address) == expected


@pytest.mark.parametrize("address", ["", "host:port", "[fd00::1]:x"], ids=["empty", "named-port", "v6-named-port"])
def test_normalize_address_rejects(address: str) -> None:
    with pytest.raises(ConfigError):
        normalize_address(address)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("node-a=127.0.0.1:4244", PeerSpec("node-a", "127.0.0.1:4244"), id="name-addr"),
        pytest.param("node-b = 10.0.0.2", PeerSpec("node-b", "10.0.0.2:4244"), id="spaces-default-port"),
        pytest.param("n=unix:///tmp/a=b.sock", PeerSpec("n", "unix:///tmp/a=b.sock"), id="equals-in-path"),
    ],
)
def test_parse_static_peer(text: str, expected: PeerSpec) -> None:
    assert parse_static_peer(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:4244", "=127.0.0.1:4244", "node-a=", "node-a"], ids=["no-name", "empty-name", "empty-addr", "no-equals"])
def test_parse_static_peer_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="NAME=ADDRESS"):
        parse_static_peer(text)


def test_spec_from_notification() -> None:
    note = peer_pb2.ChangeNotification(name="default/node-a", address="10.0.0.5", type=peer_pb2.PEER_ADDED)
    assert spec_from_notification(note) == PeerSpec("default/node-a", "10.0.0.5:4244", "")
    note.tls.server_name = "node-a.default.hubble-grpc.cilium.io"
    assert spec_from_notification(note).tls_server_name == "node-a.default.hubble-grpc.cilium.io"


def test_backoff_grows_to_the_cap_and_resets() -> None:
    b = Backoff(0.1, 1.0, rand=lambda: 0.5)  # jitter factor exactly 1
    delays = [round(b.next(), 6) for _ in range(7)]
    assert delays == [0.1, 0.16, 0.256, 0.4096, 0.65536, 1.0, 1.0]
    b.reset()
    assert b.next() == pytest.approx(0.1)
    jittered = Backoff(1.0, 1.0, rand=lambda: 0.0)
    assert jittered.next() == pytest.approx(0.8)
