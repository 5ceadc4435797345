"""What the relay says about its nodes (pure): ServerStatus summed over the nodes, GetNodes
entries, and the node-status events it puts in flow streams.

As Hubble Relay: ServerStatus sums ``num_flows``, ``max_flows``, ``seen_flows`` and
``flows_rate`` over the nodes that answered, takes the largest ``uptime_ns``, sets
``num_connected_nodes`` / ``num_unavailable_nodes`` and lists at most 10 unavailable nodes by
name. GetNodes gives each node's state (``NODE_CONNECTED``; ``NODE_UNAVAILABLE`` when there is
no connection; ``NODE_ERROR`` when connected but its ServerStatus failed) with version, uptime
and flow counts from its own ServerStatus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from observer.api.v1.observer import observer_pb2
from observer.api.v1.relay import relay_pb2
from observer.parser.timestamps import format_timestamp

RELAY_VERSION_KEY: Final = "hubble-relay-version"
MAX_UNAVAILABLE_LISTED: Final = 10

NODE_CONNECTED: Final = "NODE_CONNECTED"
NODE_UNAVAILABLE: Final = "NODE_UNAVAILABLE"
NODE_GONE: Final = "NODE_GONE"
NODE_ERROR: Final = "NODE_ERROR"


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One node as the relay sees it at a moment: connection state and, if it answered, its
    own ServerStatus (``error`` says why it did not)."""

    name: str
    address: str
    connected: bool
    tls_enabled: bool = False
    tls_server_name: str = ""
    status: observer_pb2.ServerStatusResponse | None = None
    error: str = ""

    @property
    def state(self) -> relay_pb2.NodeState:
        if not self.connected:
            return relay_pb2.NODE_UNAVAILABLE
        if self.status is None:
            return relay_pb2.NODE_ERROR
        return relay_pb2.NODE_CONNECTED


def server_status(reports: Sequence[NodeReport], version: str) -> observer_pb2.ServerStatusResponse:
    """The relay's ServerStatus from its nodes' reports."""
    resp = observer_pb2.ServerStatusResponse(version=version)
    connected = 0
    unavailable: list[str] = []
    for r in reports:
        st = r.status
        if r.connected and st is not None:
            connected += 1
            resp.num_flows += st.num_flows
            resp.max_flows += st.max_flows
            resp.seen_flows += st.seen_flows
            resp.flows_rate += st.flows_rate
            resp.uptime_ns = max(resp.uptime_ns, st.uptime_ns)
        else:
            unavailable.append(r.name)
    resp.num_connected_nodes.value = connected
    resp.num_unavailable_nodes.value = len(unavailable)
    resp.unavailable_nodes.extend(sorted(unavailable)[:MAX_UNAVAILABLE_LISTED])
    return resp


def node_entry(report: NodeReport) -> observer_pb2.Node:
    """One GetNodes entry."""
    node = observer_pb2.Node(name=report.name, address=report.address, state=report.state)
    node.tls.enabled = report.tls_enabled
    node.tls.server_name = report.tls_server_name
    st = report.status
    if report.connected and st is not None:
        node.version = st.version
        node.uptime_ns = st.uptime_ns
        node.num_flows = st.num_flows
        node.max_flows = st.max_flows
        node.seen_flows = st.seen_flows
    return node


def get_nodes(reports: Sequence[NodeReport]) -> observer_pb2.GetNodesResponse:
    return observer_pb2.GetNodesResponse(nodes=[node_entry(r) for r in sorted(reports, key=lambda r: r.name)])


def node_status_response(
    state: str, node_names: Sequence[str], message: str, node_name: str, time_ns: int
) -> dict[str, object]:
    """A GetFlowsResponse dict carrying a ``node_status`` event (canonical shape: unset
    fields absent)."""
    event: dict[str, object] = {"state_change": state}
    if node_names:
        event["node_names"] = list(node_names)
    if message:
        event["message"] = message
    resp: dict[str, object] = {"node_status": event}
    if node_name:
        resp["node_name"] = node_name
    resp["time"] = format_timestamp(time_ns)
    return resp


def node_status_line(
    state: str, node_names: Sequence[str], message: str, node_name: str, time_ns: int
) -> bytes:
    """``node_status_response`` as one compact JSON line (no newline)."""
    return orjson.dumps(node_status_response(state, node_names, message, node_name, time_ns))
