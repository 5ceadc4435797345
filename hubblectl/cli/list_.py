"""``hubblectl list nodes``: the nodes a relay serves flows from (reference §6.6)."""

from __future__ import annotations

from typing import Any

import click

from hubblectl.cli.common import (
    SectionedCommand,
    SectionOption,
    debug_option,
    server_options,
    timeouts,
    tls_options,
)
from hubblectl.client import connect
from hubblectl.printer.nodes import format_nodes_json, format_nodes_table


class _AliasGroup(click.Group):
    """A group whose commands also answer to hidden aliases (``node`` for ``nodes``)."""

    aliases = {"node": "nodes"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))


class _NodesCommand(SectionedCommand):
    section_order = ("Formatting", "Server", "Other")


@click.group("list", cls=_AliasGroup, short_help="List nodes of a relay.")
def list_() -> None:
    """List objects known to the server."""


@list_.command("nodes", cls=_NodesCommand)
@click.option(
    "-o",
    "--output",
    default="table",
    show_default=True,
    cls=SectionOption,
    section="Formatting",
    type=click.Choice(["table", "wide", "json"], case_sensitive=False),
    metavar="FORMAT",
    help="Output format: table, wide, json.",
)
@debug_option
@server_options
def nodes(**params: Any) -> None:
    """List the nodes of a relay with their state, age, flow rate and buffer use (alias: node)."""
    fmt = str(params.get("output") or "table").lower()
    dial_timeout, request_timeout = timeouts(params)
    with connect(
        str(params.get("server")),
        tls_options(params),
        dial_timeout,
        request_timeout=request_timeout,
    ) as client:
        result = client.get_nodes()
    if fmt == "json":
        click.echo(format_nodes_json(result), nl=False)
    else:
        click.echo(format_nodes_table(result, wide=fmt == "wide"), nl=False)
