"""The relay over three real agents on this machine (plaintext TCP), end to end.

Relays run as subprocesses (``python -m hubblectl.cli.main relay``), once with static
``--peer`` flags and once discovering the agents through one agent's Peer service (the agents
share a ``--cluster-dir``). What the relay returns is compared with what each agent returns on
its own for the same request over a closed time window (``--until`` in the past), so the
comparisons are exact although the agents keep recording flows (IPv6 router solicitations).

The last test kills one agent with SIGKILL while follow streams run through both relays, and
restarts it on the same port. The stock ``hubble`` CLI is emulated with the requests of
tests/integration/observer/test_observer_hubble_compat.py (imported, not copied).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import grpc
import pytest
import test_observer_hubble_compat as hubble
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from multinode_harness import Cluster, FollowStream, Item, RelayProcess
from observer_harness import HEALTH_SERVICE

from observer.api.v1.flow import flow_pb2
from observer.api.v1.observer import observer_pb2, observer_pb2_grpc
from observer.api.v1.relay import relay_pb2
from observer.cluster import ClusterDirectory, NodeRecord
from observer.parser.timestamps import format_timestamp
from observer.relay.merge import parse_rfc3339_ns

pytestmark = pytest.mark.slow

# short timeouts so that a restarted agent is reconnected within a second or two
RELAY_TIMING: Final = ("--dial-timeout", "2s", "--retry-timeout", "1s")
STATIC: Final = "static"
DISCOVERY: Final = "discovery"


def _time_ns(resp: dict[str, Any]) -> int:
    return parse_rfc3339_ns(resp["flow"]["time"])


def _uuids(flows: list[dict[str, Any]]) -> list[str]:
    return [r["flow"]["uuid"] for r in flows]


def _start_relay(tmp: Path, *args: str) -> RelayProcess:
    return RelayProcess(tmp, *args, *RELAY_TIMING).start()


@pytest.fixture(scope="module")
def relays(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RelayProcess]]:
    """A relay with static peers and one that discovers the agents via node-a's Peer service."""
    tmp = tmp_path_factory.mktemp("relays")
    made: dict[str, RelayProcess] = {}
    try:
        made[STATIC] = _start_relay(tmp, *cluster.static_peer_flags())
        made[DISCOVERY] = _start_relay(tmp, "--peer-service", cluster["node-a"].server)
        yield made
    finally:
        for relay in made.values():
            relay.stop()


@pytest.fixture(params=[STATIC, DISCOVERY])
def relay(request: pytest.FixtureRequest, relays: dict[str, RelayProcess]) -> RelayProcess:
    return relays[request.param]


def _node_names(relay: RelayProcess, cluster: Cluster) -> dict[str, str]:
    """Node name as the relay knows it (static: the --peer name; discovery: what the Peer
    service announced, i.e. the agent's cluster/node) -> agent name."""
    if "--peer-service" in relay.argv:
        return {a.absolute_name: a.name for a in cluster.agents}
    return {a.name: a.name for a in cluster.agents}


@pytest.fixture(scope="module")
def until(cluster: Cluster) -> str:
    """The end of a closed window: every flow up to it is in the agents' stores (RFC 3339)."""
    cluster.traffic()
    end = format_timestamp(time.time_ns())
    time.sleep(0.5)  # the agents poll their ring buffers every 10 ms
    return end


# --- merged history ---------------------------------------------------------------------------


def _query(relay: RelayProcess, cluster: Cluster, *args: str) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The same ``observe -o json`` through the relay and on each agent (concurrently)."""
    with ThreadPoolExecutor(max_workers=1 + len(cluster.agents)) as pool:
        merged = pool.submit(relay.flows, *args)
        own = [pool.submit(a.flows, *args) for a in cluster.agents]
        return merged.result(), [[r for r in f.result() if "flow" in r] for f in own]


def _in_order(streams: list[list[dict[str, Any]]]) -> bool:
    return all(s == sorted(s, key=_time_ns) for s in streams)


def _check_merge(
    got: list[dict[str, Any]],
    own: list[list[dict[str, Any]]],
    select: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = lambda x: x,
) -> None:
    """``got`` (through the relay) is ``select`` of the agents' answers ``own`` in time order:
    the same flows, unchanged, none twice, none invented. The exact order is checked when each
    agent's own answer is in time order (an agent's store is in ingest order, which can differ
    from time order by per-CPU skew; then the relay cannot restore the order exactly)."""
    by_uuid = {r["flow"]["uuid"]: r for stream in own for r in stream}
    assert len(set(_uuids(got))) == len(got), "no flow twice"
    assert all(r == by_uuid.get(r["flow"]["uuid"]) for r in got), "flows pass the relay unchanged"
    expected = select(sorted(by_uuid.values(), key=_time_ns))
    if _in_order(own):
        assert _uuids(got) == _uuids(expected)
    else:
        assert len(got) == len(expected)


def test_all_nodes_flows_in_time_order(relay: RelayProcess, cluster: Cluster, until: str) -> None:
    merged, own = _query(relay, cluster, "--until", until)
    assert {r["flow"]["node_name"] for r in merged} == {a.absolute_name for a in cluster.agents}
    assert all(own), "every agent has flows"
    _check_merge(merged, own)
    assert sorted(_uuids(merged)) == sorted(u for stream in own for u in _uuids(stream)), "nothing lost"
    # the traffic of every node is there: its TCP exchange and its ping
    for agent in cluster.agents:
        mine = [r["flow"] for r in merged if r["flow"]["node_name"] == agent.absolute_name]
        assert any("TCP" in f.get("l4", {}) and f["l4"]["TCP"].get("destination_port") == 8080 for f in mine)
        assert any(f.get("l4", {}).get("ICMPv4", {}).get("type") == 8 for f in mine)


@pytest.mark.parametrize(
    ("selector", "newest"),
    [pytest.param(("--last", "7"), True, id="last-7"), pytest.param(("--first", "7"), False, id="first-7")],
)
def test_number_counts_across_nodes(
    relay: RelayProcess, cluster: Cluster, until: str, selector: tuple[str, ...], newest: bool
) -> None:
    """--last N through the relay is the newest N of all nodes, --first N the oldest N."""
    got, own = _query(relay, cluster, *selector, "--until", until)
    assert all(len(o) == 7 for o in own), "each agent is asked for N"
    _check_merge(got, own, lambda merged: merged[-7:] if newest else merged[:7])


FILTERS: Final = [
    pytest.param(("--from-pod", "default/client"), {"node-a", "node-b", "node-c"}, id="from-pod"),
    pytest.param(("--to-pod", "default/server", "--protocol", "tcp"), {"node-a", "node-b", "node-c"}, id="to-pod-tcp"),
    pytest.param(("--node-name", "node-b"), {"node-b"}, id="node-name"),
    pytest.param(("--node-name", "default/node-c", "--protocol", "icmp"), {"node-c"}, id="node-name-icmp"),
    pytest.param(("--not", "--node-name", "node-a", "--from-pod", "default/client"), {"node-b", "node-c"}, id="not-node"),
    pytest.param(("--node-name", "node-a", "--node-name", "node-c", "--to-port", "8080"), {"node-a", "node-c"}, id="two-nodes-port"),
]


@pytest.mark.parametrize(("flags", "nodes"), FILTERS)
def test_filters_apply_across_nodes(
    relay: RelayProcess, cluster: Cluster, until: str, flags: tuple[str, ...], nodes: set[str]
) -> None:
    """The relay's answer to a filter is the time merge of each agent's answer."""
    got, own = _query(relay, cluster, "--until", until, *flags)
    assert {r["flow"]["node_name"].split("/")[1] for r in got} == nodes
    _check_merge(got, own)


def test_list_nodes_and_status(relay: RelayProcess, cluster: Cluster) -> None:
    names = _node_names(relay, cluster)
    nodes = relay.nodes()
    assert set(nodes) == set(names)
    for name, node in nodes.items():
        agent = cluster[names[name]]
        assert node["state"] == "NODE_CONNECTED", node
        assert node["address"] == agent.address
        assert int(node["num_flows"]) > 0 and int(node["max_flows"]) == 65535
        assert node["version"].startswith("hubblectl v")
        assert not node.get("tls", {}).get("enabled")
    table = relay.cli("list", "nodes").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATUS", "AGE"]
    assert sorted((line.split()[0], line.split()[1]) for line in table[1:]) == [
        (n, "Connected") for n in sorted(names)
    ]
    status = relay.status()
    assert status["num_connected_nodes"] == 3 and status.get("num_unavailable_nodes", 0) == 0
    assert int(status["max_flows"]) == 3 * 65535
    assert status["version"].startswith("hubblectl-relay v")
    assert "Connected Nodes: 3/3" in relay.cli("status").stdout


# --- the stock hubble CLI ---------------------------------------------------------------------

# hubble observe --from-pod default/client --protocol tcp --port 8080 --not --verdict DROPPED
# (the filters Hubble's filter tracker builds: see test_observer_hubble_compat.py)
HUBBLE_CLIENT_TCP: Final = (
    {"source_pod": ["default/client"], "protocol": ["tcp"], "source_port": ["8080"]},
    {"source_pod": ["default/client"], "protocol": ["tcp"], "destination_port": ["8080"]},
)
HUBBLE_NOT_DROPPED: Final = ({"verdict": ["DROPPED"]},)


def _hubble_request(*, last: int = 0, follow: bool = False) -> observer_pb2.GetFlowsRequest:
    req = hubble.hubble_observe_request(last=last, follow=follow)  # Hubble's default field mask
    del req.whitelist[:]
    del req.blacklist[:]
    req.whitelist.extend(json_format.ParseDict(f, flow_pb2.FlowFilter()) for f in HUBBLE_CLIENT_TCP)
    req.blacklist.extend(json_format.ParseDict(f, flow_pb2.FlowFilter()) for f in HUBBLE_NOT_DROPPED)
    return req


@pytest.fixture
def hubble_channel(relay: RelayProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(relay.address) as channel:
        yield channel


def test_hubble_status_and_list_nodes(hubble_channel: grpc.Channel, relay: RelayProcess, cluster: Cluster) -> None:
    health = health_pb2_grpc.HealthStub(hubble_channel).Check(
        health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = observer_pb2_grpc.ObserverStub(hubble_channel)
    status, call = stub.ServerStatus.with_call(observer_pb2.ServerStatusRequest(), timeout=10)
    assert dict(call.initial_metadata())["hubble-relay-version"]
    assert status.num_connected_nodes.value == 3 and status.num_unavailable_nodes.value == 0
    assert status.num_flows > 0 and status.max_flows == 3 * 65535
    nodes = stub.GetNodes(observer_pb2.GetNodesRequest(), timeout=10).nodes
    assert sorted(n.name for n in nodes) == sorted(_node_names(relay, cluster))
    assert {n.state for n in nodes} == {relay_pb2.NODE_CONNECTED}
    namespaces = stub.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=10).namespaces
    assert "default" in {ns.namespace for ns in namespaces}


def test_hubble_observe_last(hubble_channel: grpc.Channel, cluster: Cluster) -> None:
    stub = observer_pb2_grpc.ObserverStub(hubble_channel)
    responses = list(stub.GetFlows(_hubble_request(last=1000), timeout=30))
    kinds = [r.WhichOneof("response_types") for r in responses]
    assert kinds[0] == "node_status"
    assert responses[0].node_status.state_change == relay_pb2.NODE_CONNECTED
    flows = [r for r in responses if r.WhichOneof("response_types") == "flow"]
    assert {r.node_name for r in flows} == {a.absolute_name for a in cluster.agents}
    allowed = {p.split(".")[0] for p in hubble.HUBBLE_DEFAULT_MASK}
    times = []
    for r in flows:
        flow = json_format.MessageToDict(r.flow, preserving_proto_field_name=True)
        assert set(flow) <= allowed, "the field mask reaches the agents"
        assert flow["source"]["pod_name"] == "client" and "TCP" in flow["l4"]
        assert 8080 in (flow["l4"]["TCP"].get("destination_port"), flow["l4"]["TCP"].get("source_port"))
        assert r.flow.verdict == flow_pb2.FORWARDED
        times.append(r.time.seconds * 10**9 + r.time.nanos)
    assert times == sorted(times)


def test_hubble_observe_follow(hubble_channel: grpc.Channel, cluster: Cluster) -> None:
    stub = observer_pb2_grpc.ObserverStub(hubble_channel)
    call = stub.GetFlows(_hubble_request(follow=True), timeout=60)
    responses = iter(call)
    try:
        first = next(responses)
        assert first.node_status.state_change == relay_pb2.NODE_CONNECTED
        assert len(first.node_status.node_names) == 3
        cluster.traffic()
        seen: set[str] = set()
        everyone = {a.absolute_name for a in cluster.agents}
        for resp in responses:
            if resp.WhichOneof("response_types") == "flow":
                assert resp.flow.source.pod_name == "client"
                assert resp.flow.l4.TCP.destination_port == 8080
                seen.add(resp.node_name)
            if seen == everyone:
                break
        assert seen == everyone
    finally:
        call.cancel()  # type: ignore[no-untyped-call]


# --- an agent dies and comes back ------------------------------------------------------------


def _is_state(state: str, node: str) -> Callable[[Item], bool]:
    return lambda it: it.kind == "node_status" and it.state == state and node in it.node_names


def _flow_of(node: str) -> Callable[[Item], bool]:
    return lambda it: it.kind == "flow" and it.node_name == node


def test_agent_killed_and_restarted(
    relays: dict[str, RelayProcess],
    cluster: Cluster,
    make_follow: Callable[..., FollowStream],
) -> None:
    """SIGKILL node-a (whose Peer service the discovery relay uses): both follow streams stay
    up, say NODE_UNAVAILABLE, status and list nodes count it; after a restart on the same
    port the relays reconnect and node-a's new flows arrive on the same streams. Then the
    discovery relay is shown to follow the restarted Peer service (a node registered in the
    cluster dir is announced, then removed)."""
    victim = cluster["node-a"]
    alias = {STATIC: victim.name, DISCOVERY: victim.absolute_name}
    streams = {kind: make_follow(relay) for kind, relay in relays.items()}
    for stream in streams.values():
        i = stream.wait_for("NODE_CONNECTED for all nodes", lambda it: it.state == "NODE_CONNECTED")
        assert len(stream.items[i].node_names) == 3
    cluster.traffic()
    for stream in streams.values():
        for agent in cluster.agents:
            stream.wait_for(f"a flow of {agent.name}", _flow_of(agent.absolute_name))
    before = {kind: max(_time_ns(it.data) for it in s.items if _flow_of(victim.absolute_name)(it))
              for kind, s in streams.items()}

    marks = {kind: len(s.items) for kind, s in streams.items()}
    victim.kill()
    for kind, stream in streams.items():
        stream.wait_for(f"NODE_UNAVAILABLE {alias[kind]}", _is_state("NODE_UNAVAILABLE", alias[kind]),
                        start=marks[kind], timeout=15)
    for kind, relay in relays.items():
        status = relay.status()
        assert status["num_connected_nodes"] == 2, (kind, status)
        assert status["num_unavailable_nodes"] == 1 and status["unavailable_nodes"] == [alias[kind]]
        assert "Unavailable Nodes: 1" in relay.cli("status").stdout
        nodes = relay.nodes()
        assert nodes[alias[kind]]["state"] == "NODE_UNAVAILABLE"
        row = next(line.split() for line in relay.cli("list", "nodes").stdout.splitlines()
                   if line.startswith(alias[kind] + " "))
        assert row[1] == "Unavailable", row
        assert sorted(n["state"] for n in nodes.values()).count("NODE_CONNECTED") == 2
    # the streams go on with the other nodes; a new request gets their flows and the reason
    others = [a for a in cluster.agents if a is not victim]
    cluster.traffic(others)
    for kind, relay in relays.items():
        res = relay.cli("observe", "--last", "100", "-o", "json", "-D")
        got = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
        assert {r["flow"]["node_name"] for r in got if "flow" in r} == {a.absolute_name for a in others}
        down = [json.loads(line)["node_status"] for line in res.stderr.splitlines() if "NODE_UNAVAILABLE" in line]
        assert [d["node_names"] for d in down] == [[alias[kind]]], res.stderr
        assert f"{victim.address} (Connection refused)" in down[0]["message"], down
    for kind, stream in streams.items():
        for agent in others:
            stream.wait_for(f"a flow of {agent.name} while {victim.name} is down",
                            _flow_of(agent.absolute_name), start=marks[kind])
        assert stream.alive

    marks = {kind: len(s.items) for kind, s in streams.items()}
    victim.start(timeout=60)
    connected = {}
    for kind, stream in streams.items():
        connected[kind] = stream.wait_for(f"NODE_CONNECTED {alias[kind]}", _is_state("NODE_CONNECTED", alias[kind]),
                                          start=marks[kind], timeout=30)
    victim.traffic()
    for kind, stream in streams.items():
        i = stream.wait_for(f"a flow of {victim.name} after its restart",
                            lambda it: _flow_of(victim.absolute_name)(it) and "TCP" in it.data["flow"].get("l4", {}),
                            start=connected[kind])
        assert stream.alive
        resumed = [it for it in stream.items[connected[kind]: i + 1] if _flow_of(victim.absolute_name)(it)]
        assert all(_time_ns(it.data) > before[kind] for it in resumed), "nothing delivered twice"
    for kind, relay in relays.items():
        status = relay.status()
        assert status["num_connected_nodes"] == 3 and status.get("num_unavailable_nodes", 0) == 0, (kind, status)
        assert relay.nodes()[alias[kind]]["state"] == "NODE_CONNECTED"
    # after the first event: one NODE_UNAVAILABLE and one NODE_CONNECTED, both for the victim
    for kind, stream in streams.items():
        events = [(it.state, it.node_names) for it in stream.items if it.kind == "node_status"]
        assert events[1:] == [("NODE_UNAVAILABLE", [alias[kind]]), ("NODE_CONNECTED", [alias[kind]])], events

    # the discovery relay follows the restarted agent's Peer service again: a node registered
    # now is announced (and reported down: nothing listens at its address), then removed
    stream, mark = streams[DISCOVERY], len(streams[DISCOVERY].items)
    ghost = ClusterDirectory(str(cluster.cluster_dir), NodeRecord("default/node-x", "127.0.0.1:1"))
    ghost.register()
    try:
        stream.wait_for("NODE_UNAVAILABLE default/node-x", _is_state("NODE_UNAVAILABLE", "default/node-x"),
                        start=mark, timeout=20)
        assert relays[DISCOVERY].nodes()["default/node-x"]["state"] == "NODE_UNAVAILABLE"
    finally:
        ghost.unregister()
    stream.wait_for("NODE_GONE default/node-x", _is_state("NODE_GONE", "default/node-x"), start=mark, timeout=20)
    assert "default/node-x" not in relays[DISCOVERY].nodes()
