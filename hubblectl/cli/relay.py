"""`hubblectl relay`: Hubble Relay, one Observer API over the flows of many nodes."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from hubblectl.errors import UsageError
from hubblectl.printer.timefmt import parse_go_duration
from observer.agent.config import DEFAULT_SOCKET
from observer.errors import ConfigError


def _seconds(flag: str, text: str) -> float:
    ns = parse_go_duration(text)
    if ns is None:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"invalid --{flag} value {text!r}: expected a duration like 5s or 500ms") from None
    else:
        value = ns / 1e9
    if value <= 0:
        raise UsageError(f"invalid --{flag} value {text!r}: must be positive")
    return value


def _files(values: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for item in values:
        out.extend(part for part in item.split(",") if part)
    return tuple(out)


@click.command("relay")
@click.option("--listen-address", default=":4245", show_default=True, help="Where to serve the Observer API (host:port; :PORT = every address).")
@click.option("--peer", "peers", multiple=True, metavar="NAME=ADDR", help="A node to read from (repeatable), e.g. node-a=127.0.0.1:4244.")
@click.option(
    "--peer-service",
    default=None,
    metavar="ADDR",
    help=f"Discover nodes from this Peer service (default without --peer: unix://{DEFAULT_SOCKET}).",
)
@click.option("--cluster-name", default="default", show_default=True, help="Cluster name (TLS server names <node>.<cluster>.hubble-grpc.cilium.io).")
@click.option("--node-name", default="", help="Name the relay's node-status events carry (default: the host name).")
@click.option("--dial-timeout", default="5s", show_default=True, metavar="DURATION", help="How long a node may take to connect before it is reported unavailable.")
@click.option("--retry-timeout", default="30s", show_default=True, metavar="DURATION", help="Longest wait between reconnection attempts to a node.")
@click.option("--sort-buffer-len-max", default=100, show_default=True, type=click.IntRange(1, 1_000_000), help="Responses held to sort the merged stream by time.")
@click.option("--sort-buffer-drain-timeout", default="1s", show_default=True, metavar="DURATION", help="Longest a response waits in the sort buffer.")
@click.option("--tls-ca-cert-files", multiple=True, metavar="FILE", help="CA certificates to verify the nodes with (repeatable or comma-separated); enables TLS to nodes.")
@click.option("--tls-client-cert-file", default=None, metavar="FILE", help="Client certificate the relay presents to the nodes (mutual TLS).")
@click.option("--tls-client-key-file", default=None, metavar="FILE", help="Key of --tls-client-cert-file.")
@click.option("--tls-server-name", default=None, metavar="NAME", help="Name to verify every node's certificate against (default: the announced name, else <node>.<cluster>.hubble-grpc.cilium.io).")
@click.option("--tls-cert-file", default=None, metavar="FILE", help="Serve TLS to clients with this certificate.")
@click.option("--tls-key-file", default=None, metavar="FILE", help="Key of --tls-cert-file.")
@click.option("--tls-client-ca-files", multiple=True, metavar="FILE", help="Require client certificates signed by these CAs (repeatable or comma-separated).")
def relay(**params: Any) -> None:
    """Run Hubble Relay in the foreground: merge the flows of many agents into one stream.

    Nodes come from --peer NAME=ADDR flags or from a Peer service (an agent's socket). Clients
    (`hubblectl observe --server localhost:4245`, the stock `hubble` CLI) get every node's
    flows in time order, node-status events when nodes come and go, `hubblectl list nodes`
    and a summed `status`.
    """
    from observer.relay.pool import UpstreamTLS, parse_static_peer
    from observer.relay.server import Relay, RelayConfig

    try:
        peers = tuple(parse_static_peer(p) for p in params["peers"])
    except ConfigError as err:
        raise UsageError(str(err)) from None
    peer_service = params["peer_service"]
    if not peers and not peer_service:
        peer_service = f"unix://{DEFAULT_SOCKET}"
    config = RelayConfig(
        listen_address=params["listen_address"],
        peers=peers,
        peer_service=peer_service,
        cluster_name=params["cluster_name"],
        node_name=params["node_name"],
        dial_timeout_s=_seconds("dial-timeout", params["dial_timeout"]),
        retry_timeout_s=_seconds("retry-timeout", params["retry_timeout"]),
        sort_buffer_len_max=params["sort_buffer_len_max"],
        sort_buffer_drain_timeout_s=_seconds("sort-buffer-drain-timeout", params["sort_buffer_drain_timeout"]),
        upstream_tls=UpstreamTLS(
            ca_files=_files(params["tls_ca_cert_files"]),
            cert_file=params["tls_client_cert_file"],
            key_file=params["tls_client_key_file"],
            server_name=params["tls_server_name"],
        ),
        tls_cert_file=params["tls_cert_file"],
        tls_key_file=params["tls_key_file"],
        tls_client_ca_files=_files(params["tls_client_ca_files"]),
    )
    try:
        config.validate()
    except ConfigError as err:
        raise UsageError(str(err)) from None
    asyncio.run(Relay(config).run())
