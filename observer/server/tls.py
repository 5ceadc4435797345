"""TLS credentials for gRPC, shared by the agent, the relay and the CLI.

    server_credentials(cert, key, client_ca)   # agent / relay listening side; client_ca -> mutual TLS
    channel_credentials(ca, cert, key)         # relay -> agent, CLI -> relay
    diagnose_tls(address, tls=..., ...)        # why a connection failed, in one phrase

Every argument that names PEM data takes a file path or the PEM bytes themselves. Files are
read and checked here (readable, PEM, key matches certificate), so a bad flag fails at start-up
with a ``ConfigError`` naming the file instead of as an opaque gRPC handshake error later.

gRPC's Python API does not say why a TLS connection failed: a plaintext client talking to a
TLS port, a server certificate from another CA, an expired certificate or a missing client
certificate all look like "failed to connect". ``diagnose_tls`` redoes the handshake with
Python's ``ssl`` module and names the cause.

Hubble's certificate naming: a node's server certificate is valid for
``<node>.<cluster>.hubble-grpc.cilium.io`` (``hubble_server_name``), the relay's for
``*.hubble-relay.cilium.io``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Final

import grpc

from observer.errors import ConfigError

PemSource = str | os.PathLike[str] | bytes

HUBBLE_GRPC_DOMAIN: Final = "hubble-grpc.cilium.io"
HUBBLE_RELAY_DOMAIN: Final = "hubble-relay.cilium.io"

# X509_V_ERR_* codes from OpenSSL's x509_vfy.h
_X509_EXPIRED: Final = 10
_X509_NOT_YET_VALID: Final = 9
_X509_UNTRUSTED: Final = frozenset({2, 18, 19, 20, 21, 24, 27})
_X509_HOSTNAME_MISMATCH: Final = 62


def hubble_server_name(node: str, cluster: str = "default") -> str:
    """``<node>.<cluster>.hubble-grpc.cilium.io`` with dots in the parts replaced by ``-``.

    ``node`` may be an absolute name ``cluster/node``; its cluster part then wins.
    """
    if "/" in node:
        cluster, node = node.split("/", 1)
    return f"{node.replace('.', '-')}.{(cluster or 'default').replace('.', '-')}.{HUBBLE_GRPC_DOMAIN}"


def _describe(source: PemSource) -> str:
    return "(inline PEM)" if isinstance(source, bytes) else os.fspath(source)


def read_pem(source: PemSource, what: str) -> bytes:
    """PEM bytes from a path (or the bytes themselves); ConfigError if unreadable or not PEM."""
    if isinstance(source, bytes):
        data = source
    else:
        path = os.fspath(source)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as err:
            raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{what} {_describe(source)} is not a PEM file")
    return data


def _read_all(sources: Sequence[PemSource], what: str) -> bytes:
    parts = [read_pem(s, what) for s in sources]
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)


def _check_pair(cert_pem: bytes, key_pem: bytes, cert: PemSource, key: PemSource) -> None:
    """ConfigError unless ``key`` is the private key of the first certificate of ``cert``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        leaf = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as err:
        raise ConfigError(f"certificate {_describe(cert)}: {err}") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"private key {_describe(key)}: {err}") from None
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if leaf.public_key().public_bytes(enc, fmt) != private.public_key().public_bytes(enc, fmt):
        raise ConfigError(
            f"private key {_describe(key)} does not belong to certificate {_describe(cert)}"
        )


def certificate_expiry(source: PemSource) -> datetime:
    """The notAfter time (UTC) of the first certificate in ``source``."""
    from cryptography import x509

    pem = read_pem(source, "certificate")
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except ValueError as err:
        raise ConfigError(f"certificate {_describe(source)}: {err}") from None


def server_credentials(
    cert: PemSource, key: PemSource, client_ca: Sequence[PemSource] | None = None
) -> grpc.ServerCredentials:
    """TLS for a listening socket; with ``client_ca``, clients must present a certificate
    signed by one of those CAs (mutual TLS)."""
    cert_pem = read_pem(cert, "TLS certificate")
    key_pem = read_pem(key, "TLS key")
    _check_pair(cert_pem, key_pem, cert, key)
    if client_ca:
        roots = _read_all(client_ca, "client CA certificate")
        return grpc.ssl_server_credentials(
            [(key_pem, cert_pem)], root_certificates=roots, require_client_auth=True
        )
    return grpc.ssl_server_credentials([(key_pem, cert_pem)])


def channel_credentials(
    ca: PemSource | Sequence[PemSource] | None,
    cert: PemSource | None = None,
    key: PemSource | None = None,
) -> grpc.ChannelCredentials:
    """TLS for a client channel: verify the server against ``ca`` (None: the system roots),
    and present ``cert``/``key`` when given (both or neither)."""
    if (cert is None) != (key is None):
        raise ConfigError("a client certificate and its key must be given together")
    roots: bytes | None = None
    if ca is not None:
        sources: Sequence[PemSource] = [ca] if isinstance(ca, str | bytes | os.PathLike) else ca
        if sources:
            roots = _read_all(sources, "CA certificate")
    cert_pem = key_pem = None
    if cert is not None and key is not None:
        cert_pem = read_pem(cert, "client certificate")
        key_pem = read_pem(key, "client key")
        _check_pair(cert_pem, key_pem, cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key_pem, certificate_chain=cert_pem
    )


# --- diagnosis ---------------------------------------------------------------------------


def split_host_port(address: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``dns:host:port`` or ``ipv4:...`` -> (host, port)."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:", "tls://"):
        if address.startswith(scheme):
            address = address[len(scheme) :]
            break
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host, port_text = address, ""
    if not port_text:
        if default_port is None:
            raise ValueError(f"{address!r} has no port")
        return host or "localhost", default_port
    if not port_text.isdigit():
        raise ValueError(f"{address!r}: port {port_text!r} is not a number")
    return host or "localhost", int(port_text)


@contextlib.contextmanager
def _as_files(*sources: PemSource | None) -> Iterator[list[str | None]]:
    """Paths for ``ssl`` (which reads certificates from files); bytes go to temp files."""
    paths: list[str | None] = []
    temps: list[str] = []
    try:
        for src in sources:
            if src is None:
                paths.append(None)
            elif isinstance(src, bytes):
                fd, path = tempfile.mkstemp(suffix=".pem")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(src)
                temps.append(path)
                paths.append(path)
            else:
                paths.append(os.fspath(src))
        yield paths
    finally:
        for path in temps:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _fmt_date(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _peer_certificate(host: str, port: int, server_name: str | None, timeout: float) -> bytes | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=server_name or host) as tls,
        ):
            return tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None


def _server_expiry(host: str, port: int, server_name: str | None, timeout: float) -> str:
    der = _peer_certificate(host, port, server_name, timeout)
    if not der:
        return ""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return ""
    return f" on {_fmt_date(cert.not_valid_after_utc)}"


def _alert_text(reason: str) -> str | None:
    """A server-sent TLS alert (by OpenSSL reason name) in words."""
    reason = reason.upper()
    if "CERTIFICATE_REQUIRED" in reason or ("HANDSHAKE_FAILURE" in reason and "ALERT" in reason):
        return "the server requires a client certificate (mutual TLS): give a client certificate and key"
    if "CERTIFICATE_EXPIRED" in reason:
        return "the server rejected the client certificate: it has expired"
    if "UNKNOWN_CA" in reason:
        return "the server does not trust the client certificate (signed by a CA the server does not accept)"
    if "BAD_CERTIFICATE" in reason or "CERTIFICATE_UNKNOWN" in reason:
        return "the server rejected the client certificate"
    return None


def diagnose_tls(
    address: str,
    *,
    tls: bool,
    ca: Sequence[PemSource] = (),
    cert: PemSource | None = None,
    key: PemSource | None = None,
    server_name: str | None = None,
    timeout: float = 3.0,
    now: datetime | None = None,
) -> str | None:
    """Why a gRPC connection to TCP ``address`` fails, as one phrase; None if TLS is not the
    cause as far as a handshake can tell (or ``address`` is not host:port).

    Checks, in order: the client certificate's own dates; that the port accepts connections;
    with ``tls=False``, whether the server speaks TLS; with ``tls=True``, whether it does not,
    and whether the server certificate verifies (expired, not yet valid, other CA, wrong name)
    and the server accepts the client certificate. Blocking: call it in a worker thread from
    async code.
    """
    try:
        host, port = split_host_port(address)
    except ValueError:
        return None
    now = now or datetime.now(UTC)
    if tls and cert is not None:
        try:
            not_after = certificate_expiry(cert)
        except ConfigError as err:
            return str(err)
        if not_after < now:
            return f"the client certificate {_describe(cert)} expired on {_fmt_date(not_after)}"
    try:
        probe = socket.create_connection((host, port), timeout=timeout)
    except OSError as err:
        return f"nothing accepts connections at {host}:{port} ({err.strerror or err})"
    probe.close()
    if not tls:
        if _peer_certificate(host, port, server_name, timeout) is not None:
            return (
                f"{host}:{port} serves TLS but this connection is plaintext: enable TLS "
                "(e.g. --tls and --tls-ca-cert-files)"
            )
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["h2"])
    try:
        if ca:
            ctx.load_verify_locations(cadata=_read_all(ca, "CA certificate").decode("ascii", "replace"))
        else:
            ctx.load_default_certs()
        with _as_files(cert, key) as (cert_path, key_path):
            if cert_path is not None:
                ctx.load_cert_chain(cert_path, key_path)
    except ConfigError as err:
        return str(err)
    except (ssl.SSLError, OSError) as err:
        return f"cannot load the TLS files: {err}"
    name = server_name or host
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=name) as conn,
        ):
            # TLS 1.3: the server checks the client certificate after the client finished
            # the handshake; a rejection arrives as an alert on the first read.
            conn.settimeout(min(timeout, 1.0))
            try:
                first = conn.recv(1)
            except TimeoutError:
                first = b"?"
            if not first:
                # closed right after the handshake, without a word: BoringSSL (gRPC) servers
                # reject a missing or untrusted client certificate this way
                if cert is None:
                    return (
                        f"{host}:{port} closed the connection after the TLS handshake: it requires "
                        "a client certificate (mutual TLS); give a client certificate and key"
                    )
                return (
                    f"{host}:{port} closed the connection after the TLS handshake: it does not "
                    "accept the client certificate (signed by a CA it does not trust?)"
                )
    except ssl.SSLCertVerificationError as err:
        code = err.verify_code
        if code == _X509_EXPIRED:
            return f"the server certificate of {host}:{port} has expired{_server_expiry(host, port, server_name, timeout)}"
        if code == _X509_NOT_YET_VALID:
            return f"the server certificate of {host}:{port} is not valid yet"
        if code == _X509_HOSTNAME_MISMATCH:
            return f"the server certificate of {host}:{port} is not valid for the name {name!r} (check the TLS server name)"
        if code in _X509_UNTRUSTED:
            return (
                f"the server certificate of {host}:{port} is not signed by the given CA "
                "(wrong CA file?)"
            )
        return f"the server certificate of {host}:{port} does not verify: {err.verify_message}"
    except ssl.SSLError as err:
        text = _alert_text(str(err.reason or "")) or _alert_text(str(err))
        if text:
            return text
        return f"{host}:{port} does not speak TLS (a plaintext port?): {err.reason or err}"
    except ConnectionResetError:
        return f"{host}:{port} closed the connection during the TLS handshake (a plaintext port?)"
    except OSError as err:
        return f"TLS handshake with {host}:{port} failed: {err}"
    return None
