"""`hubblectl certs` (certificate names, files, modes), observer.server.tls helpers and the
`hubblectl relay` flags."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hubblectl.cli.certs import certificate_bundle, certs, issue_certificate, make_ca
from hubblectl.cli.relay import relay
from hubblectl.errors import UsageError
from observer.errors import ConfigError
from observer.server.tls import (
    channel_credentials,
    hubble_server_name,
    read_pem,
    server_credentials,
    split_host_port,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _names(pem: bytes) -> tuple[list[str], list[str], list[x509.ObjectIdentifier]]:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = list(san.get_values_for_type(x509.DNSName))
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    return dns, ips, eku


@pytest.fixture(scope="module")
def bundle() -> dict[str, object]:
    return dict(certificate_bundle(["node-a", "node.b"], "prod.eu", NOW, 30))


@pytest.mark.parametrize(
    ("name", "dns", "ips", "eku"),
    [
        pytest.param(
            "nodes/node-a",
            ["node-a.prod-eu.hubble-grpc.cilium.io", "localhost"],
            ["127.0.0.1", "::1"],
            [ExtendedKeyUsageOID.SERVER_AUTH],
            id="node",
        ),
        pytest.param(
            "nodes/node.b",
            ["node-b.prod-eu.hubble-grpc.cilium.io", "localhost"],
            ["127.0.0.1", "::1"],
            [ExtendedKeyUsageOID.SERVER_AUTH],
            id="node-with-dot",
        ),
        pytest.param(
            "relay",
            ["*.hubble-relay.cilium.io", "localhost"],
            ["127.0.0.1", "::1"],
            [ExtendedKeyUsageOID.SERVER_AUTH],
            id="relay",
        ),
        pytest.param("client", [], [], [ExtendedKeyUsageOID.CLIENT_AUTH], id="client"),
    ],
)
def test_certificate_names(bundle: dict[str, object], name: str, dns: list[str], ips: list[str], eku: list[object]) -> None:
    pair = bundle[name]
    got_dns, got_ips, got_eku = _names(pair.cert_pem)  # type: ignore[attr-defined]
    assert got_dns == dns
    assert got_ips == [str(ipaddress.ip_address(i)) for i in ips]
    assert got_eku == eku
    cert = x509.load_pem_x509_certificate(pair.cert_pem)  # type: ignore[attr-defined]
    ca = x509.load_pem_x509_certificate(bundle["ca"].cert_pem)  # type: ignore[attr-defined]
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    assert cert.not_valid_before_utc <= NOW


def test_ca_is_a_ca(bundle: dict[str, object]) -> None:
    ca = x509.load_pem_x509_certificate(bundle["ca"].cert_pem)  # type: ignore[attr-defined]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


@pytest.mark.parametrize(
    ("node", "cluster", "expected"),
    [
        pytest.param("node-a", "default", "node-a.default.hubble-grpc.cilium.io", id="plain"),
        pytest.param("kind.worker", "kind.kind", "kind-worker.kind-kind.hubble-grpc.cilium.io", id="dots"),
        pytest.param("prod/node-a", "default", "node-a.prod.hubble-grpc.cilium.io", id="absolute-name"),
    ],
)
def test_hubble_server_name(node: str, cluster: str, expected: str) -> None:
    assert hubble_server_name(node, cluster) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("127.0.0.1:4244", ("127.0.0.1", 4244), id="v4"),
        pytest.param("[::1]:4245", ("::1", 4245), id="v6"),
        pytest.param("dns:///relay:443", ("relay", 443), id="dns-scheme"),
        pytest.param(":4245", ("localhost", 4245), id="no-host"),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


def test_certs_command_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    result = CliRunner().invoke(certs, ["--out", str(out), "--nodes", "node-a,node-b", "--days", "3"])
    assert result.exit_code == 0, result.output
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == sorted(
        f"{n}.{ext}" for n in ("ca", "client", "relay", "nodes/node-a", "nodes/node-b") for ext in ("crt", "key")
    )
    for key in out.rglob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert "node-a.default.hubble-grpc.cilium.io" in result.output
    # the files work as gRPC credentials, key and certificate match
    server_credentials(out / "nodes/node-a.crt", out / "nodes/node-a.key", [out / "ca.crt"])
    channel_credentials(out / "ca.crt", out / "client.crt", out / "client.key")

    again = CliRunner().invoke(certs, ["--out", str(out), "--nodes", "node-a"])
    assert isinstance(again.exception, UsageError)
    assert "--force" in str(again.exception)
    forced = CliRunner().invoke(certs, ["--out", str(out), "--nodes", "node-a", "--force"])
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize(
    "args",
    [["--nodes", "a/b"], ["--nodes", "a,a"], ["--cluster-name", "x/y"], ["--days", "0"]],
    ids=["slash", "repeated", "bad-cluster", "zero-days"],
)
def test_certs_command_rejects(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(certs, ["--out", str(tmp_path / "x"), *args])
    assert result.exit_code != 0
    assert not (tmp_path / "x" / "ca.key").exists()


def test_tls_file_errors(tmp_path: Path) -> None:
    ca = make_ca(NOW, 1)
    leaf = issue_certificate(ca, "x", now=NOW, days=1)
    (tmp_path / "leaf.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "other.key").write_bytes(issue_certificate(ca, "y", now=NOW, days=1).key_pem)
    with pytest.raises(ConfigError, match="does not belong"):
        server_credentials(tmp_path / "leaf.crt", tmp_path / "other.key")
    with pytest.raises(ConfigError, match="must be given together"):
        channel_credentials(None, tmp_path / "leaf.crt", None)
    with pytest.raises(ConfigError, match="cannot read CA certificate"):
        channel_credentials(tmp_path / "nope.crt")
    assert read_pem(leaf.cert_pem, "x") == leaf.cert_pem
    server_credentials(leaf.cert_pem, leaf.key_pem)  # PEM bytes work too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--peer", "127.0.0.1:4244"], "NAME=ADDRESS", id="peer-without-name"),
        pytest.param(["--peer", "a=1.2.3.4", "--dial-timeout", "soon"], "--dial-timeout", id="bad-duration"),
        pytest.param(["--peer", "a=1.2.3.4", "--sort-buffer-drain-timeout", "0s"], "must be positive", id="zero-duration"),
        pytest.param(["--peer", "a=1.2.3.4", "--tls-cert-file", "x.crt"], "--tls-key-file", id="cert-without-key"),
        pytest.param(["--peer", "a=1.2.3.4", "--tls-client-cert-file", "x.crt"], "--tls-client-key-file", id="client-cert-without-key"),
        pytest.param(["--peer", "a=1.2.3.4", "--peer", "a=1.2.3.5"], "twice", id="duplicate-peer"),
    ],
)
def test_relay_flag_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(relay, args)
    assert result.exception is not None
    assert isinstance(result.exception, UsageError | ConfigError), result.exception
    assert message in str(result.exception)


def test_relay_help_names_the_flags() -> None:
    result = CliRunner().invoke(relay, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--listen-address", "--peer ", "--peer-service", "--cluster-name", "--dial-timeout", "--retry-timeout",
        "--sort-buffer-len-max", "--sort-buffer-drain-timeout", "--tls-ca-cert-files", "--tls-client-cert-file",
        "--tls-client-key-file", "--tls-server-name", "--tls-cert-file", "--tls-key-file", "--tls-client-ca-files",
    ):
        assert flag in result.output, flag
    assert ":4245" in result.output
