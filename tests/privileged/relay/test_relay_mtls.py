"""Mutual TLS between three real agents, the relay and the CLI.

Certificates come from ``hubblectl certs``. Each agent serves its TCP port with its node
certificate (``<node>.default.hubble-grpc.cilium.io``) and requires a client certificate from
the CA; the relay presents ``client.crt`` to the agents and serves its clients with
``relay.crt``, also requiring client certificates. Without a certificate, or in plaintext,
an agent and the relay refuse the connection and the CLI says why; a relay without a client
certificate reports every agent unavailable, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

import pytest
from multinode_harness import Certs, Cluster, RelayProcess

pytestmark = pytest.mark.slow

RELAY_NAME: Final = "instance.hubble-relay.cilium.io"
PLAINTEXT: Final = "serves TLS but this connection is plaintext"
NO_CERT: Final = "requires a client certificate (mutual TLS)"


def _certs(cluster: Cluster) -> Certs:
    assert cluster.certs is not None
    return cluster.certs


@pytest.fixture(scope="module")
def tls_relay(tls_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    certs = _certs(tls_cluster)
    relay = RelayProcess(
        tmp_path_factory.mktemp("tls-relay"),
        *tls_cluster.static_peer_flags(),
        *certs.relay_upstream_flags(),
        *certs.relay_server_flags(),
        client_flags=certs.client_flags(server_name=RELAY_NAME),
    )
    try:
        yield relay.start()
    finally:
        relay.stop()


def test_flows_and_nodes_over_mutual_tls(tls_relay: RelayProcess, tls_cluster: Cluster) -> None:
    flows = tls_relay.flows("--last", "1000")
    assert {r["flow"]["node_name"] for r in flows} == {a.absolute_name for a in tls_cluster.agents}
    nodes = tls_relay.nodes()
    assert sorted(nodes) == tls_cluster.names
    for name, node in nodes.items():
        assert node["state"] == "NODE_CONNECTED", node
        assert node["tls"] == {"enabled": True, "server_name": f"{name}.default.hubble-grpc.cilium.io"}
    assert tls_relay.status()["num_connected_nodes"] == 3


def test_discovery_over_mutual_tls(
    tls_cluster: Cluster, make_relay: Callable[..., RelayProcess]
) -> None:
    """Peers announced by node-a's Peer service (unix socket, plaintext) with the TLS names
    the agents announce; the relay dials them with TLS and its client certificate."""
    certs = _certs(tls_cluster)
    relay = make_relay("--peer-service", tls_cluster["node-a"].server, *certs.relay_upstream_flags())
    nodes = relay.nodes()
    assert sorted(nodes) == [a.absolute_name for a in tls_cluster.agents]
    for agent in tls_cluster.agents:
        node = nodes[agent.absolute_name]
        assert node["state"] == "NODE_CONNECTED", node
        assert node["address"] == agent.address
        assert node["tls"] == {"enabled": True, "server_name": f"{agent.name}.default.hubble-grpc.cilium.io"}
    flows = relay.flows("--last", "1000", "--from-pod", "default/client")
    assert {r["flow"]["node_name"] for r in flows} == {a.absolute_name for a in tls_cluster.agents}


@pytest.mark.parametrize("target", ["relay", "agent"])
@pytest.mark.parametrize(
    ("client", "reason"),
    [
        pytest.param("plaintext", PLAINTEXT, id="plaintext"),
        pytest.param("no-cert", NO_CERT, id="tls-without-client-cert"),
        pytest.param("cert", None, id="tls-with-client-cert"),
    ],
)
def test_clients_without_certificate_are_refused(
    tls_cluster: Cluster, tls_relay: RelayProcess, target: str, client: str, reason: str | None
) -> None:
    certs = _certs(tls_cluster)
    agent = tls_cluster["node-b"]
    address, name = (tls_relay.address, RELAY_NAME) if target == "relay" else (
        agent.address, f"{agent.name}.default.hubble-grpc.cilium.io")
    flags = {
        "plaintext": (),
        "no-cert": certs.client_flags(server_name=name, client_cert=False),
        "cert": certs.client_flags(server_name=name),
    }[client]
    res = RelayProcess.run_cli("status", "--server", address, "--timeout", "2s", *flags)
    if reason is None:
        assert res.returncode == 0, res.stderr
        assert "Healthcheck" in res.stdout and ": Ok" in res.stdout
        return
    assert res.returncode != 0
    assert reason in res.stderr, res.stderr
    assert address in res.stderr


def test_relay_without_client_certificate_sees_nodes_unavailable(
    tls_cluster: Cluster, make_relay: Callable[..., RelayProcess]
) -> None:
    """The agents refuse a relay that has the CA but no client certificate; the relay says so."""
    certs = _certs(tls_cluster)
    relay = make_relay(*tls_cluster.static_peer_flags(), *certs.relay_upstream_flags(client_cert=False),
                       "--dial-timeout", "2s")
    nodes = relay.nodes()
    assert {n: v["state"] for n, v in nodes.items()} == dict.fromkeys(tls_cluster.names, "NODE_UNAVAILABLE")
    status = relay.status()
    assert status["num_connected_nodes"] == 0 and status["num_unavailable_nodes"] == 3
    res = relay.cli("observe", "--last", "5", "-o", "json", "-D")
    assert not [line for line in res.stdout.splitlines() if '"flow"' in line]
    events = [line for line in res.stderr.splitlines() if "NODE_UNAVAILABLE" in line]
    assert events and all(NO_CERT in line for line in events), res.stderr
    assert all(name in res.stderr for name in tls_cluster.names)
