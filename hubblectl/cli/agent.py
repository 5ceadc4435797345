"""`hubblectl agent`: the node agent in the foreground."""

from __future__ import annotations

import asyncio
import sys

import click

from observer.agent.config import (
    AGGREGATION_LEVELS,
    DEFAULT_BPF_ROOT,
    DEFAULT_MAX_FLOWS,
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    AgentConfig,
)
from observer.datapath.ipam import DEFAULT_IPV4_RANGE, DEFAULT_IPV6_RANGE


@click.command()
@click.option("--node-name", default="", help="Node name (default: the host name).")
@click.option("--cluster-name", default="default", show_default=True, help="Cluster name (node_name is CLUSTER/NODE).")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True, help="Where endpoints and identities persist.")
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True, help="Unix socket for the API.")
@click.option("--listen-address", default="", help="Also serve Hubble's API on TCP, e.g. :4244 or 127.0.0.1:4244.")
@click.option("--bpf-root", default=DEFAULT_BPF_ROOT, show_default=True, help="bpffs directory for pinned maps.")
@click.option("--bpf-dir", default="", help="Directory holding the compiled BPF objects (default: the source tree's bpf/build).")
@click.option("--ipv4-range", default=DEFAULT_IPV4_RANGE, show_default=True, help="Pod IPv4 range.")
@click.option("--ipv6-range", default=DEFAULT_IPV6_RANGE, show_default=True, help="Pod IPv6 range.")
@click.option("--netns-prefix", default="hubblectl-", show_default=True, help="Prefix of endpoint netns names.")
@click.option("--max-flows", default=DEFAULT_MAX_FLOWS, show_default=True, type=int, help="Flow history capacity (2^n - 1).")
@click.option(
    "--monitor-aggregation",
    "aggregation",
    default="medium",
    show_default=True,
    type=click.Choice(sorted(AGGREGATION_LEVELS)),
    help="none: report every packet; medium: new connections, new TCP flags, close, periodic.",
)
@click.option("--monitor-interval", "report_interval_s", default=5.0, show_default=True, type=float, help="Seconds between periodic reports of one connection.")
@click.option("--ring-bytes", default=4 * 1024 * 1024, show_default=True, type=int, help="BPF ring buffer size.")
@click.option("--poll-interval-ms", default=10, show_default=True, type=int, help="Ring buffer poll interval.")
@click.option("--tls-cert-file", default="", help="Serve the TCP listener with TLS: the server certificate (PEM).")
@click.option("--tls-key-file", default="", help="The server certificate's private key (PEM).")
@click.option(
    "--tls-client-ca-files",
    multiple=True,
    help="Require client certificates signed by these CAs (mutual TLS, e.g. for the relay).",
)
@click.option(
    "--cluster-dir",
    default="",
    help="Shared directory where agents on this machine register, so each one's Peer service announces all.",
)
@click.option("--metrics-address", default="", help="Serve Prometheus metrics here, e.g. :9965 (Hubble's port).")
@click.option("--print-flows", is_flag=True, help="Also print every flow as a JSON line on stdout.")
@click.option(
    "--fast-stream/--no-fast-stream",
    default=True,
    show_default=True,
    envvar="HUBBLECTL_FAST_STREAM",
    help="Serve the unix socket and plaintext --listen-address through the HTTP/2 front door, "
    "which streams Hubble's standard GetFlows at batch cost; --no-fast-stream: grpcio serves them directly.",
)
def agent(**kwargs: object) -> None:
    """Run the node agent in the foreground (root). SIGTERM or Ctrl-C stops it cleanly.

    The agent loads the eBPF datapath, restores endpoints from the state dir, and serves
    Hubble's Observer API and the endpoint API on its unix socket (and on TCP with
    --listen-address; Hubble's port is 4244).
    """
    from observer.agent.agent import Agent

    kwargs["tls_client_ca_files"] = tuple(kwargs["tls_client_ca_files"])  # type: ignore[arg-type]
    cfg = AgentConfig(**kwargs)  # type: ignore[arg-type]
    out = sys.stdout.buffer if cfg.print_flows else None
    asyncio.run(Agent(cfg, out=out).run())
