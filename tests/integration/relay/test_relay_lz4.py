"""LZ4-compressed node streams (FlowBatch.json_lines_lz4) through a real relay: the relay asks
every node for them; nodes that send them (whole sealed store blocks) and nodes that do not
(older agents) give the client the same merged lines, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from observer.relay.merge import parse_rfc3339_ns

from .conftest import Cluster
from .harness import MS, T0, FakeNode, LoopThread, flow_responses

FLOWS = 1500  # per node: five whole 256-line blocks sealed in a 4095-slot store, and a rest
STEP = 3 * MS


def _cluster(loop: LoopThread, lz4: tuple[bool, ...]) -> Cluster:
    nodes: list[FakeNode] = []
    for i, new in enumerate(lz4):
        node = loop.run(FakeNode.create(f"node-{'abc'[i]}", lz4=new))
        nodes.append(node)
        loop.run(node.append(flow_responses(node.absolute_name, T0 + i * MS, FLOWS, STEP)))
    cluster = Cluster(loop, nodes)
    cluster.start_relay()
    return cluster


def _flow_lines(cluster: Cluster, request: dict[str, Any]) -> list[bytes]:
    with cluster.client() as client:
        lines = [line for chunk in client.get_flows(request) for line in chunk.splitlines()]
    # node-status events carry the time they were sent: compare flows
    return [line for line in lines if line.startswith(b'{"flow"')]


@pytest.fixture
def clusters(loop: LoopThread) -> Iterator[dict[str, Cluster]]:
    """The same flows behind three relays: nodes that all send LZ4 blocks, none (old
    agents), and a mix. Node stores are filled in the same order, so the lines are equal."""
    made: dict[str, Cluster] = {}
    try:
        for name, lz4 in (("new", (True,) * 3), ("old", (False,) * 3), ("mixed", (True, False, True))):
            made[name] = _cluster(loop, lz4)
        yield made
    finally:
        for cluster in made.values():
            cluster.close()


def _strip_uuids(lines: list[bytes]) -> list[bytes]:
    """Each node has fresh uuids (flow_responses): blank them to compare across clusters."""
    import re

    return [re.sub(rb'"uuid":"[^"]*"', b'"uuid":""', line) for line in lines]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param({}, 3 * FLOWS, id="all"),
        pytest.param({"number": 900}, 900, id="last-900"),
        pytest.param({"number": 600, "first": True}, 600, id="first-600"),
        pytest.param({"number": 10}, 10, id="last-10"),
    ],
)
def test_compressed_and_plain_node_streams_merge_to_the_same_lines(
    clusters: dict[str, Cluster], request_: dict[str, Any], expected: int
) -> None:
    got = {name: _flow_lines(c, request_) for name, c in clusters.items()}
    assert len(got["new"]) == expected
    times = [parse_rfc3339_ns(orjson.loads(line)["time"]) for line in got["new"]]
    assert times == sorted(times)
    new = _strip_uuids(got["new"])
    assert _strip_uuids(got["old"]) == new
    assert _strip_uuids(got["mixed"]) == new
    old_nodes = clusters["old"].nodes
    assert all(n.messages > 0 and n.lz4_messages == 0 for n in old_nodes)
    if request_ in ({}, {"number": 900}, {"number": 600, "first": True}):
        # enough lines asked of each node for whole sealed blocks: sent compressed
        assert all(n.lz4_messages > 0 for n in clusters["new"].nodes)
        mixed = clusters["mixed"].nodes
        assert [n.lz4_messages > 0 for n in mixed] == [True, False, True]


def test_compressed_stream_byte_identical_to_plain_one(clusters: dict[str, Cluster]) -> None:
    """One cluster, two reads: node uuids are equal, so the relay's output is compared whole."""
    cluster = clusters["new"]
    compressed = _flow_lines(cluster, {})
    assert all(n.lz4_messages > 0 for n in cluster.nodes)
    for node in cluster.nodes:
        node.lz4 = False
        node.lz4_messages = 0
    plain = _flow_lines(cluster, {})
    assert all(n.lz4_messages == 0 for n in cluster.nodes)
    assert len(plain) == 3 * FLOWS
    assert compressed == plain
