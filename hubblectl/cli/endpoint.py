"""`hubblectl endpoint`: pods as labelled network namespaces, managed by the agent."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import grpc
import orjson
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hubblectl.client import DEFAULT_SERVER, connect, describe_rpc_error
from hubblectl.errors import ServerError, UsageError

SERVER_OPTION = click.option(
    "--server",
    default=DEFAULT_SERVER,
    show_default=True,
    envvar="HUBBLECTL_AGENT",
    help="The agent's API socket.",
)


def split_key(key: str) -> tuple[str, str]:
    """NAMESPACE/NAME (namespace defaults to `default`)."""
    if "/" in key:
        ns, _, name = key.partition("/")
    else:
        ns, name = "default", key
    if not ns or not name or "/" in name:
        raise UsageError(f"endpoint {key!r}: expected NAMESPACE/NAME")
    return ns, name


@contextmanager
def agent_stub(server: str) -> Iterator[Any]:
    from observer.api.v1.hubblectl import agent_pb2_grpc

    client = connect(server, timeout=5.0)
    try:
        yield agent_pb2_grpc.AgentStub(client.channel)
    except grpc.RpcError as err:
        raise ServerError(describe_rpc_error(err, server)) from None
    finally:
        client.close()


def endpoint_dict(ep: Any) -> dict[str, Any]:
    d: dict[str, Any] = json_format.MessageToDict(
        ep, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return d


@click.group()
def endpoint() -> None:
    """Create, list, delete endpoints (pods as labelled network namespaces); run commands in them."""


@endpoint.command("create")
@click.argument("key", metavar="NAMESPACE/NAME")
@click.option("--label", "-l", "labels", multiple=True, help="key=value label (repeatable).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@SERVER_OPTION
def create(key: str, labels: tuple[str, ...], output: str, server: str) -> None:
    """Create an endpoint: a netns with a veth pair, addresses, routes and an identity."""
    from observer.api.v1.hubblectl import agent_pb2

    ns, name = split_key(key)
    with agent_stub(server) as stub:
        ep = stub.CreateEndpoint(
            agent_pb2.CreateEndpointRequest(namespace=ns, name=name, labels=list(labels)), timeout=60
        )
    if output == "json":
        sys.stdout.write(orjson.dumps(endpoint_dict(ep)).decode() + "\n")
    else:
        click.echo(f"endpoint {ep.namespace}/{ep.name} created: ID {ep.id}, identity {ep.identity}, "
                   f"IPv4 {ep.ipv4}, IPv6 {ep.ipv6}")


@endpoint.command("label")
@click.argument("key", metavar="NAMESPACE/NAME")
@click.option("--label", "-l", "labels", multiple=True, help="key=value label (repeatable): the whole new set.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@SERVER_OPTION
def label(key: str, labels: tuple[str, ...], output: str, server: str) -> None:
    """Replace an endpoint's labels (and so its identity); policy follows at once."""
    from observer.api.v1.hubblectl import agent_pb2

    ns, name = split_key(key)
    with agent_stub(server) as stub:
        ep = stub.UpdateEndpointLabels(
            agent_pb2.UpdateEndpointLabelsRequest(namespace=ns, name=name, labels=list(labels)), timeout=60
        )
    if output == "json":
        sys.stdout.write(orjson.dumps(endpoint_dict(ep)).decode() + "\n")
    else:
        click.echo(f"endpoint {ep.namespace}/{ep.name} relabelled: identity {ep.identity}")


@endpoint.command("delete")
@click.argument("key", metavar="NAMESPACE/NAME")
@SERVER_OPTION
def delete(key: str, server: str) -> None:
    """Delete an endpoint: its netns, links, routes and addresses."""
    from observer.api.v1.hubblectl import agent_pb2

    ns, name = split_key(key)
    with agent_stub(server) as stub:
        stub.DeleteEndpoint(agent_pb2.DeleteEndpointRequest(namespace=ns, name=name), timeout=60)
    click.echo(f"endpoint {ns}/{name} deleted")


@endpoint.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@SERVER_OPTION
def list_(output: str, server: str) -> None:
    """List endpoints: ID, namespace/name, addresses, identity, labels, policy enforcement."""
    from observer.api.v1.hubblectl import agent_pb2

    with agent_stub(server) as stub:
        resp = stub.ListEndpoints(agent_pb2.ListEndpointsRequest(), timeout=12)
    if output == "json":
        sys.stdout.write(orjson.dumps([endpoint_dict(ep) for ep in resp.endpoints]).decode() + "\n")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "ENDPOINT", "IPV4", "IPV6", "IDENTITY", "INGRESS", "EGRESS", "LABELS"):
        table.add_column(col, no_wrap=col != "LABELS")
    for ep in resp.endpoints:
        labels = ", ".join(lbl for lbl in ep.labels if "io.kubernetes.pod.namespace" not in lbl
                           and "io.cilium.k8s.policy.cluster" not in lbl)
        table.add_row(
            str(ep.id),
            Text(f"{ep.namespace}/{ep.name}"),
            ep.ipv4,
            ep.ipv6,
            str(ep.identity),
            ep.policy_enforcement_ingress or "-",
            ep.policy_enforcement_egress or "-",
            Text(labels),
        )
    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 200
    Console(width=width, highlight=False).print(table)


@endpoint.command("get")
@click.argument("key", metavar="NAMESPACE/NAME")
@SERVER_OPTION
def get(key: str, server: str) -> None:
    """Show one endpoint as JSON."""
    from observer.api.v1.hubblectl import agent_pb2

    ns, name = split_key(key)
    with agent_stub(server) as stub:
        ep = stub.GetEndpoint(agent_pb2.GetEndpointRequest(namespace=ns, name=name), timeout=12)
    sys.stdout.write(orjson.dumps(endpoint_dict(ep), option=orjson.OPT_INDENT_2).decode() + "\n")


@endpoint.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("key", metavar="NAMESPACE/NAME")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@SERVER_OPTION
def exec_(key: str, command: tuple[str, ...], server: str) -> None:
    """Run COMMAND inside the endpoint's network namespace (root), e.g.

        hubblectl endpoint exec default/xwing -- curl -s http://10.213.0.3/
    """
    from observer.api.v1.hubblectl import agent_pb2

    if os.geteuid() != 0:
        raise UsageError("endpoint exec needs root (it enters a network namespace)")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("endpoint exec: no command given (hubblectl endpoint exec NS/NAME -- CMD ...)")
    ns, name = split_key(key)
    with agent_stub(server) as stub:
        ep = stub.GetEndpoint(agent_pb2.GetEndpointRequest(namespace=ns, name=name), timeout=12)
    ip = shutil.which("ip")
    if ip is None:
        raise UsageError("endpoint exec needs iproute2's `ip` command")
    sys.stdout.flush()
    os.execv(ip, [ip, "netns", "exec", ep.netns, *command])
