"""Mutual TLS: relay -> nodes and clients -> relay, and errors that say what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hubblectl.cli.certs import (
    KeyPair,
    certificate_bundle,
    issue_certificate,
    make_ca,
    write_bundle,
)
from hubblectl.client import TLSOptions, connect
from hubblectl.errors import ServerError
from observer.relay.pool import UpstreamTLS
from observer.server.tls import hubble_server_name, server_credentials

from .conftest import FLOWS_PER_NODE, Cluster, make_nodes
from .harness import LoopThread, flows_of, node_statuses, wait_until

WAIT = 15.0
RELAY_NAME = "instance.hubble-relay.cilium.io"


@dataclass(frozen=True)
class Certs:
    dir: Path

    def __getitem__(self, name: str) -> str:
        return str(self.dir / name)

    def node_credentials(self, node: str, *, require_client: bool = True, cert: str | None = None) -> Any:
        base = cert or f"nodes/{node}"
        return server_credentials(self[f"{base}.crt"], self[f"{base}.key"], [self["ca.crt"]] if require_client else None)

    @property
    def upstream(self) -> UpstreamTLS:
        return UpstreamTLS(ca_files=(self["ca.crt"],), cert_file=self["client.crt"], key_file=self["client.key"])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    out = tmp_path_factory.mktemp("certs")
    now = datetime.now(UTC)
    write_bundle(out, certificate_bundle(["node-a", "node-b", "node-c"], "default", now, 2), force=False)
    ca = KeyPair((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
    past = now - timedelta(days=10)
    extra = {
        # a node certificate that expired 9 days ago, from the right CA
        "expired-node": issue_certificate(
            ca, "node-a.default", dns_names=["localhost"], ip_addresses=["127.0.0.1"], now=past, days=1
        ),
        "expired-client": issue_certificate(ca, "old-client", server=False, client=True, now=past, days=1),
    }
    other = make_ca(now, 2, "some other CA")
    extra["other-ca"] = other
    extra["other-client"] = issue_certificate(other, "stranger", server=False, client=True, now=now, days=2)
    write_bundle(out, extra, force=False)
    return Certs(out)


@pytest.fixture
def tls_cluster(loop: LoopThread, certs: Certs) -> Any:
    nodes = []
    for name in ("a", "b"):
        nodes += make_nodes(loop, name, credentials=certs.node_credentials(f"node-{name}"))
    c = Cluster(loop, nodes)
    try:
        yield c
    finally:
        c.close()


def test_relay_reads_nodes_over_mutual_tls(tls_cluster: Cluster, certs: Certs) -> None:
    tls_cluster.start_relay(upstream_tls=certs.upstream)
    with tls_cluster.client() as client:
        items = [i for chunk in client.get_flows({}) for i in chunk.splitlines()]
        nodes = client.get_nodes()
    import orjson

    parsed = [orjson.loads(i) for i in items]
    assert node_statuses(parsed)[0] == {"state_change": "NODE_CONNECTED", "node_names": ["node-a", "node-b"]}
    assert len(flows_of(parsed)) == 2 * FLOWS_PER_NODE
    assert [(n["name"], n["state"], n["tls"]) for n in nodes] == [
        ("node-a", "NODE_CONNECTED", {"enabled": True, "server_name": hubble_server_name("node-a")}),
        ("node-b", "NODE_CONNECTED", {"enabled": True, "server_name": hubble_server_name("node-b")}),
    ]


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        pytest.param(lambda c: UpstreamTLS(ca_files=(c["ca.crt"],)), "requires a client certificate", id="no-client-cert"),
        pytest.param(
            lambda c: UpstreamTLS(ca_files=(c["other-ca.crt"],), cert_file=c["client.crt"], key_file=c["client.key"]),
            "not signed by the given CA",
            id="wrong-ca",
        ),
        pytest.param(
            lambda c: UpstreamTLS(ca_files=(c["ca.crt"],), cert_file=c["other-client.crt"], key_file=c["other-client.key"]),
            "does not accept the client certificate",
            id="client-cert-from-other-ca",
        ),
        pytest.param(lambda c: UpstreamTLS(), "serves TLS but this connection is plaintext", id="plaintext"),
    ],
)
def test_relay_reports_why_a_tls_node_is_unavailable(
    tls_cluster: Cluster, certs: Certs, upstream: Any, expected: str
) -> None:
    relay = tls_cluster.start_relay(upstream_tls=upstream(certs), dial_timeout_s=1.0)
    peer = relay.pool.get("node-a")
    assert peer is not None
    wait_until(lambda: expected in peer.last_error, WAIT, f"node-a's error to say {expected!r} (is {peer.last_error!r})")
    with tls_cluster.client() as client:
        assert {n["state"] for n in client.get_nodes()} == {"NODE_UNAVAILABLE"}
        items = [i for chunk in client.get_flows({}) for i in chunk.splitlines()]
    import orjson

    statuses = node_statuses(orjson.loads(i) for i in items)
    assert statuses[0]["state_change"] == "NODE_UNAVAILABLE"
    assert expected in statuses[0]["message"]


@pytest.mark.parametrize(
    ("server_cert", "require_client", "tls", "expected"),
    [
        pytest.param(None, True, lambda c: TLSOptions(), "serves TLS but this connection is plaintext", id="plaintext-client"),
        pytest.param(
            None, True, lambda c: TLSOptions(enabled=True, ca_cert_files=(c["ca.crt"],)),
            "requires a client certificate",
            id="missing-client-cert",
        ),
        pytest.param(
            None, True,
            lambda c: TLSOptions(enabled=True, ca_cert_files=(c["other-ca.crt"],), client_cert_file=c["client.crt"], client_key_file=c["client.key"]),
            "not signed by the given CA",
            id="wrong-ca",
        ),
        pytest.param(
            "expired-node", False, lambda c: TLSOptions(enabled=True, ca_cert_files=(c["ca.crt"],)),
            "server certificate of 127.0.0.1",
            id="expired-server-cert",
        ),
        pytest.param(
            None, True,
            lambda c: TLSOptions(enabled=True, ca_cert_files=(c["ca.crt"],), client_cert_file=c["expired-client.crt"], client_key_file=c["expired-client.key"]),
            "client certificate",
            id="expired-client-cert",
        ),
        pytest.param(
            None, False,
            lambda c: TLSOptions(enabled=True, ca_cert_files=(c["ca.crt"],), server_name="node-b.default.hubble-grpc.cilium.io"),
            "not valid for the name 'node-b.default.hubble-grpc.cilium.io'",
            id="wrong-server-name",
        ),
    ],
)
def test_client_errors_say_what_is_wrong(
    loop: LoopThread, certs: Certs, server_cert: str | None, require_client: bool, tls: Any, expected: str
) -> None:
    node = make_nodes(loop, "a", credentials=certs.node_credentials("node-a", require_client=require_client, cert=server_cert))[0]
    try:
        with pytest.raises(ServerError) as info:
            connect(node.address, tls(certs), timeout=1.0)
        assert expected in str(info.value)
        if "expired" in str(server_cert) or "expired" in str(tls(certs).client_cert_file):
            assert "expired" in str(info.value)
    finally:
        loop.run(node.stop(0))


def test_right_certificates_work_directly(loop: LoopThread, certs: Certs) -> None:
    node = make_nodes(loop, "a", credentials=certs.node_credentials("node-a"))[0]
    try:
        opts = TLSOptions(
            enabled=True,
            ca_cert_files=(certs["ca.crt"],),
            client_cert_file=certs["client.crt"],
            client_key_file=certs["client.key"],
            server_name=hubble_server_name("node-a"),
        )
        with connect(node.address, opts, timeout=5.0) as client:
            assert client.server_status()["num_flows"] == str(FLOWS_PER_NODE)
    finally:
        loop.run(node.stop(0))


@pytest.mark.parametrize("client_cert", [True, False], ids=["with-client-cert", "without-client-cert"])
def test_clients_to_a_tls_relay(tls_cluster: Cluster, certs: Certs, client_cert: bool) -> None:
    tls_cluster.start_relay(
        upstream_tls=certs.upstream,
        tls_cert_file=certs["relay.crt"],
        tls_key_file=certs["relay.key"],
        tls_client_ca_files=(certs["ca.crt"],),
    )
    opts = TLSOptions(
        enabled=True,
        ca_cert_files=(certs["ca.crt"],),
        server_name=RELAY_NAME,
        client_cert_file=certs["client.crt"] if client_cert else None,
        client_key_file=certs["client.key"] if client_cert else None,
    )
    if not client_cert:
        with pytest.raises(ServerError, match="requires a client certificate"):
            connect(tls_cluster.relay_address, opts, timeout=1.0)
        return
    with connect(tls_cluster.relay_address, opts, timeout=5.0) as client:
        assert client.health_check() == "SERVING"
        st = client.server_status()
        assert st["num_connected_nodes"] == 2
        lines = [line for chunk in client.get_flows({"number": 3}) for line in chunk.splitlines()]
    assert sum(line.startswith(b'{"flow"') for line in lines) == 3


def test_relay_key_must_match_certificate(certs: Certs) -> None:
    from observer.errors import ConfigError

    with pytest.raises(ConfigError, match="does not belong to certificate"):
        server_credentials(certs["relay.crt"], certs["client.key"])
    with pytest.raises(ConfigError, match="cannot read TLS certificate"):
        server_credentials(certs["missing.crt"], certs["client.key"])
    with pytest.raises(ConfigError, match="not a PEM file"):
        server_credentials(__file__, certs["client.key"])


def test_relay_refuses_plaintext_clients(tls_cluster: Cluster, certs: Certs) -> None:
    tls_cluster.start_relay(upstream_tls=certs.upstream, tls_cert_file=certs["relay.crt"], tls_key_file=certs["relay.key"])
    with pytest.raises(ServerError, match="serves TLS but this connection is plaintext"):
        connect(tls_cluster.relay_address, TLSOptions(), timeout=1.0)
    # with TLS but no client certificate (not required here) it works
    opts = TLSOptions(enabled=True, ca_cert_files=(certs["ca.crt"],), server_name=RELAY_NAME)
    with connect(tls_cluster.relay_address, opts, timeout=5.0) as client:
        wait_until(lambda: client.server_status()["num_connected_nodes"] == 2, WAIT, "both nodes over mTLS")


def test_tls_client_to_a_plaintext_port(loop: LoopThread, certs: Certs) -> None:
    node = make_nodes(loop, "a")[0]
    try:
        with pytest.raises(ServerError, match=r"does not speak TLS \(a plaintext port\?\)"):
            connect(node.address, TLSOptions(enabled=True, ca_cert_files=(certs["ca.crt"],)), timeout=1.0)
    finally:
        loop.run(node.stop(0))
