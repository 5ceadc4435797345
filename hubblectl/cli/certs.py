"""`hubblectl certs`: a private CA and the certificates for mutual TLS between agents, relay
and clients, named as Hubble names them.

    DIR/ca.crt, ca.key                 the CA (keep ca.key private)
    DIR/nodes/<node>.crt, .key         agent server certificate, valid for
                                       <node>.<cluster>.hubble-grpc.cilium.io, localhost, 127.0.0.1, ::1
    DIR/relay.crt, relay.key           relay server certificate: *.hubble-relay.cilium.io, localhost, ...
    DIR/client.crt, client.key         client certificate (the relay towards agents, the CLI towards the relay)

Keys are ECDSA P-256, written with mode 0600. ``make_ca`` and ``issue_certificate`` take
``now`` so that tests can make certificates that are expired or not yet valid.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import click

from hubblectl.errors import UsageError
from observer.server.tls import HUBBLE_RELAY_DOMAIN, hubble_server_name

LOCAL_DNS: Final = ("localhost",)
LOCAL_IPS: Final = ("127.0.0.1", "::1")
CLOCK_SKEW: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes


def _new_key() -> object:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(now: datetime, days: int, common_name: str = "hubblectl CA") -> KeyPair:
    """A self-signed CA valid from ``now`` (minus 5 minutes of clock skew) for ``days``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = _new_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(Encoding.PEM), _key_pem(key))


def issue_certificate(
    ca: KeyPair,
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = True,
    client: bool = False,
    now: datetime,
    days: int,
) -> KeyPair:
    """A leaf certificate signed by ``ca`` for the given names, usable as a TLS server
    and/or client certificate, valid from ``now`` (minus 5 minutes) for ``days``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(Encoding.PEM), _key_pem(key))


def _check_node_name(node: str) -> str:
    node = node.strip()
    if not node or node in (".", "..") or "/" in node or "\x00" in node:
        raise UsageError(f"--nodes: invalid node name {node!r}")
    return node


def certificate_bundle(
    nodes: Sequence[str], cluster: str, now: datetime, days: int
) -> dict[str, KeyPair]:
    """Everything ``hubblectl certs`` writes, by path relative to the output directory
    (the CA under ``ca``, each node under ``nodes/<node>``)."""
    ca = make_ca(now, days)
    out: dict[str, KeyPair] = {"ca": ca}
    for node in nodes:
        out[f"nodes/{node}"] = issue_certificate(
            ca,
            f"{node}.{cluster}",
            dns_names=[hubble_server_name(node, cluster), *LOCAL_DNS],
            ip_addresses=LOCAL_IPS,
            server=True,
            now=now,
            days=days,
        )
    out["relay"] = issue_certificate(
        ca,
        f"hubble-relay.{cluster}",
        dns_names=[f"*.{HUBBLE_RELAY_DOMAIN}", *LOCAL_DNS],
        ip_addresses=LOCAL_IPS,
        server=True,
        now=now,
        days=days,
    )
    out["client"] = issue_certificate(
        ca, "hubblectl-client", server=False, client=True, now=now, days=days
    )
    return out


def write_bundle(out_dir: Path, files: dict[str, KeyPair], force: bool) -> list[Path]:
    """Write ``<name>.crt`` and ``<name>.key`` (0600) per entry; returns the paths written."""
    targets: list[tuple[Path, bytes, int]] = []
    for name, pair in files.items():
        targets.append((out_dir / f"{name}.crt", pair.cert_pem, 0o644))
        targets.append((out_dir / f"{name}.key", pair.key_pem, 0o600))
    if not force:
        existing = [str(p) for p, _, _ in targets if p.exists()]
        if existing:
            raise UsageError(
                f"{existing[0]} already exists ({len(existing)} files would be overwritten); "
                "use --force to replace them"
            )
    written = []
    for path, data, mode in targets:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(path, mode)
        except OSError as err:
            raise UsageError(f"cannot write {path}: {err.strerror or err}") from None
        written.append(path)
    return written


@click.command("certs")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write into.")
@click.option("--nodes", default="", metavar="NAMES", help="Comma-separated node names (default: this host's name).")
@click.option("--cluster-name", default="default", show_default=True, help="Cluster name used in node server names.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 36500), help="Validity in days.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def certs(out_dir: str, nodes: str, cluster_name: str, days: int, force: bool) -> None:
    """Make a CA and TLS certificates for agents, the relay and clients (mutual TLS).

    Node certificates are valid for <node>.<cluster>.hubble-grpc.cilium.io (Hubble's naming),
    localhost, 127.0.0.1 and ::1; the relay's for *.hubble-relay.cilium.io and the same local
    names; client.crt is a client certificate for the relay (towards agents) and the CLI
    (towards the relay).
    """
    names = [_check_node_name(n) for n in nodes.split(",") if n.strip()]
    if not names:
        names = [socket.gethostname().split(".")[0]]
    if len(set(names)) != len(names):
        raise UsageError("--nodes: a node name is repeated")
    if not cluster_name or "/" in cluster_name:
        raise UsageError(f"--cluster-name: invalid cluster name {cluster_name!r}")
    out = Path(out_dir)
    bundle = certificate_bundle(names, cluster_name, datetime.now(UTC), days)
    write_bundle(out, bundle, force)
    d = str(out)
    click.echo(f"wrote a CA, {len(names)} node certificate(s), a relay and a client certificate to {d}")
    for node in names:
        click.echo(
            f"  agent {node}: --tls-cert-file {d}/nodes/{node}.crt --tls-key-file {d}/nodes/{node}.key "
            f"--tls-client-ca-files {d}/ca.crt   (server name {hubble_server_name(node, cluster_name)})"
        )
    click.echo(
        f"  relay: --tls-ca-cert-files {d}/ca.crt --tls-client-cert-file {d}/client.crt "
        f"--tls-client-key-file {d}/client.key --tls-cert-file {d}/relay.crt --tls-key-file {d}/relay.key"
    )
    click.echo(
        f"  client: --tls --tls-ca-cert-files {d}/ca.crt --tls-server-name instance.{HUBBLE_RELAY_DOMAIN}"
        f" [--tls-client-cert-file {d}/client.crt --tls-client-key-file {d}/client.key]"
    )
