"""Nodes that fail, come back, cannot be reached or come and go through the Peer service."""

from __future__ import annotations

import socket
from typing import Any

from click.testing import CliRunner

from hubblectl.cli.main import cli
from observer.parser.timestamps import format_timestamp
from observer.relay.pool import PeerSpec

from .conftest import Cluster, make_nodes
from .harness import (
    MS,
    T0,
    FakeNode,
    FakePeerService,
    LoopThread,
    S,
    flow_responses,
    flows_of,
    node_statuses,
    relay_config,
    wait_until,
)

WAIT = 15.0
T1 = T0 + 60 * S  # new flows, after the history


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _has_status(state: str, names: list[str]) -> Any:
    def check(items: list[dict[str, Any]]) -> bool:
        return any(s.get("state_change") == state and s.get("node_names") == names for s in node_statuses(items))

    return check


def _flows_from(node: str, n: int) -> Any:
    def check(items: list[dict[str, Any]]) -> bool:
        return sum(1 for f in flows_of(items) if f["node_name"] == f"default/{node}") >= n

    return check


def test_killed_node_is_reported_and_comes_back(cluster: Cluster) -> None:
    loop = cluster.loop
    a, b, c = cluster.nodes
    # `since` rather than only new flows: a node's follow cursor starts when its stream does,
    # which may be after the flows below are stored
    stream = cluster.follow({"since": format_timestamp(T1 - S)})
    stream.wait_for(_has_status("NODE_CONNECTED", ["node-a", "node-b", "node-c"]), WAIT, "NODE_CONNECTED")
    for i, node in enumerate(cluster.nodes):
        loop.run(node.append(flow_responses(node.absolute_name, T1 + i * MS, 1, MS)))
    stream.wait_for(lambda items: len(flows_of(items)) >= 3, WAIT, "one new flow per node")
    assert len(flows_of(stream.items)) == 3, "nothing from before `since`"

    loop.run(b.stop(0))
    stream.wait_for(_has_status("NODE_UNAVAILABLE", ["node-b"]), WAIT, "NODE_UNAVAILABLE for node-b")
    with cluster.client() as client:

        def one_unavailable() -> dict[str, Any] | None:
            got = client.server_status()
            return got if got.get("num_unavailable_nodes") == 1 else None

        st = wait_until(one_unavailable, WAIT, "ServerStatus to count node-b as unavailable")
        assert st is not None
    assert st["num_connected_nodes"] == 2
    assert st["unavailable_nodes"] == ["node-b"]
    assert st["num_flows"] == str(2 * 21)

    # the stream stays up: the other nodes' flows still arrive
    loop.run(a.append(flow_responses(a.absolute_name, T1 + 10 * MS, 1, MS)))
    loop.run(c.append(flow_responses(c.absolute_name, T1 + 11 * MS, 1, MS)))
    stream.wait_for(lambda items: len(flows_of(items)) >= 5, WAIT, "flows from the nodes still up")
    # node-b stores a flow while the relay cannot reach it
    loop.run(b.append(flow_responses(b.absolute_name, T1 + 12 * MS, 1, MS)))

    loop.run(b.start())  # the same port, the same store
    stream.wait_for(_has_status("NODE_CONNECTED", ["node-b"]), WAIT, "NODE_CONNECTED for node-b again")
    stream.wait_for(_flows_from("node-b", 2), WAIT, "node-b's flow stored while it was away")
    loop.run(b.append(flow_responses(b.absolute_name, T1 + 20 * MS, 1, MS)))
    stream.wait_for(_flows_from("node-b", 3), WAIT, "node-b's new flow")
    b_flows = [f for f in flows_of(stream.items) if f["node_name"] == "default/node-b"]
    assert len(b_flows) == 3, "resuming after the last flow seen: nothing twice"
    assert stream.error is None and not stream.ended

    with cluster.client() as client:
        def all_connected() -> list[dict[str, Any]] | None:
            got = client.get_nodes()
            return got if all(n["state"] == "NODE_CONNECTED" for n in got) else None

        nodes = wait_until(all_connected, WAIT, "every node connected again")
        assert nodes is not None
    assert [n["name"] for n in nodes] == ["node-a", "node-b", "node-c"]


def test_client_going_away_ends_the_node_streams(cluster: Cluster) -> None:
    streams = [cluster.follow(), cluster.follow({"whitelist": [{"verdict": ["DROPPED"]}]})]
    for stream in streams:
        stream.wait_for(_has_status("NODE_CONNECTED", ["node-a", "node-b", "node-c"]), WAIT, "NODE_CONNECTED")
    wait_until(
        lambda: all(cluster.loop.call(n.followers) == 2 for n in cluster.nodes), WAIT, "two follow streams per node"
    )
    streams[0].close()
    wait_until(
        lambda: all(cluster.loop.call(n.followers) == 1 for n in cluster.nodes), WAIT, "one follow stream per node"
    )
    streams[1].close()
    wait_until(lambda: all(cluster.loop.call(n.followers) == 0 for n in cluster.nodes), WAIT, "no follow stream")


def test_get_nodes_states_and_list_nodes(loop: LoopThread) -> None:
    nodes = make_nodes(loop, "a") + make_nodes(loop, "b", status_fails=True)
    cluster = Cluster(loop, nodes)
    try:
        down = PeerSpec("node-x", f"127.0.0.1:{_free_port()}")
        cluster.start_relay(relay_config([n.spec for n in nodes] + [down], dial_timeout_s=1.0))
        with cluster.client() as client:

            def three_states() -> dict[str, dict[str, Any]] | None:
                by_name = {n["name"]: n for n in client.get_nodes()}
                states = {n["state"] for n in by_name.values()}
                return by_name if states == {"NODE_CONNECTED", "NODE_ERROR", "NODE_UNAVAILABLE"} else None

            got = wait_until(three_states, WAIT, "three node states")
            assert got is not None
            status = client.server_status()
        assert got["node-a"]["state"] == "NODE_CONNECTED"
        assert got["node-a"]["num_flows"] == "20"
        assert got["node-a"]["max_flows"] == "4095"
        assert got["node-a"]["version"].startswith("hubblectl v")
        assert int(got["node-a"]["uptime_ns"]) > 0
        assert got["node-b"]["state"] == "NODE_ERROR"
        assert "num_flows" not in got["node-b"]
        assert got["node-x"]["state"] == "NODE_UNAVAILABLE"
        assert got["node-x"]["address"] == down.address
        assert status["num_connected_nodes"] == 1
        assert status["num_unavailable_nodes"] == 2
        assert status["unavailable_nodes"] == ["node-b", "node-x"]

        result = CliRunner().invoke(cli, ["list", "nodes", "--server", cluster.relay_address])
        assert result.exit_code == 0, result.output
        lines = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[1:] if line.strip()}
        assert lines == {"node-a": "Connected", "node-b": "Error", "node-x": "Unavailable"}
    finally:
        cluster.close()


def test_unreachable_node_reported_first_then_stream_ends(loop: LoopThread) -> None:
    nodes = make_nodes(loop, "ab")
    cluster = Cluster(loop, nodes)
    try:
        down = PeerSpec("node-x", f"127.0.0.1:{_free_port()}")
        cluster.start_relay(relay_config([n.spec for n in nodes] + [down], dial_timeout_s=1.0))
        with cluster.client() as client:
            items = [i for chunk in client.get_flows({}) for i in chunk.splitlines()]
        import orjson

        parsed = [orjson.loads(i) for i in items]
        statuses = node_statuses(parsed)
        assert statuses[0] == {"state_change": "NODE_CONNECTED", "node_names": ["node-a", "node-b"]}
        assert statuses[1]["state_change"] == "NODE_UNAVAILABLE"
        assert statuses[1]["node_names"] == ["node-x"]
        assert "Connection refused" in statuses[1].get("message", ""), statuses[1]
        assert len(flows_of(parsed)) == 40
    finally:
        cluster.close()


def test_peers_from_the_peer_service(loop: LoopThread) -> None:
    nodes = make_nodes(loop, "abc")
    service = loop.run(FakePeerService.create())
    cluster = Cluster(loop, nodes)
    try:
        a, b, c = nodes
        for node in (a, b):
            spec = PeerSpec(node.name, node.address)
            loop.call(lambda spec=spec: service.source.set(spec))  # type: ignore[misc]
        cluster.start_relay(relay_config([], peer_service=service.address))
        with cluster.client() as client:
            wait_until(
                lambda: [(n["name"], n["state"]) for n in client.get_nodes()]
                == [("node-a", "NODE_CONNECTED"), ("node-b", "NODE_CONNECTED")],
                WAIT,
                "the two announced nodes",
            )
        stream = cluster.follow({"since": format_timestamp(T1 - S)})
        stream.wait_for(_has_status("NODE_CONNECTED", ["node-a", "node-b"]), WAIT, "NODE_CONNECTED")

        loop.call(lambda: service.source.remove("node-b"))
        stream.wait_for(_has_status("NODE_GONE", ["node-b"]), WAIT, "NODE_GONE for node-b")

        loop.call(lambda: service.source.set(PeerSpec(c.name, c.address)))
        stream.wait_for(_has_status("NODE_CONNECTED", ["node-c"]), WAIT, "NODE_CONNECTED for node-c")
        loop.run(c.append(flow_responses(c.absolute_name, T1, 1, MS)))
        loop.run(b.append(flow_responses(b.absolute_name, T1, 1, MS)))
        stream.wait_for(_flows_from("node-c", 1), WAIT, "node-c's new flow")
        with cluster.client() as client:
            assert [n["name"] for n in client.get_nodes()] == ["node-a", "node-c"]
        assert not _flows_from("node-b", 1)(stream.items), "node-b is gone"

        # the address of a known node changes: PEER_UPDATED, the relay reconnects
        moved = loop.run(FakeNode.create("node-c2"))
        nodes.append(moved)
        loop.call(lambda: service.source.set(PeerSpec("node-c", moved.address)))
        with cluster.client() as client:
            wait_until(
                lambda: any(n["name"] == "node-c" and n["address"] == moved.address and n["state"] == "NODE_CONNECTED" for n in client.get_nodes()),
                WAIT,
                "node-c at its new address",
            )
        # the follow stream reads node-c at its new address, from after the last flow it saw
        loop.run(moved.append(flow_responses(moved.absolute_name, T1 - 10 * S, 1, MS)))  # before it: not sent
        loop.run(moved.append(flow_responses(moved.absolute_name, T1 + 5 * MS, 1, MS)))
        stream.wait_for(lambda items: any(f["node_name"] == "default/node-c2" for f in flows_of(items)), WAIT, "node-c's flow at its new address")
        assert sum(f["node_name"] == "default/node-c2" for f in flows_of(stream.items)) == 1
        assert not any(s["state_change"] == "NODE_ERROR" for s in node_statuses(stream.items)), node_statuses(stream.items)
    finally:
        cluster.close()
        loop.run(service.stop())


def test_unknown_peer_service_keeps_retrying(loop: LoopThread) -> None:
    cluster = Cluster(loop, [])
    try:
        relay = cluster.start_relay(relay_config([], peer_service=f"127.0.0.1:{_free_port()}"))
        wait_until(lambda: relay.pool.discovery_error, WAIT, "a discovery error")
        with cluster.client() as client:
            st = client.server_status()
        assert st["num_connected_nodes"] == 0
    finally:
        cluster.close()
