"""``hubblectl status``: health check, then the server's flow statistics (reference §7.6)."""

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
from hubblectl.client import OBSERVER_HEALTH_SERVICE, connect
from hubblectl.errors import ServerError
from hubblectl.printer import canonical_format
from hubblectl.printer.status import format_status


class _StatusCommand(SectionedCommand):
    section_order = ("Formatting", "Server", "Other")


@click.command("status", cls=_StatusCommand, short_help="Show the status of an agent or relay.")
@click.option(
    "-o",
    "--output",
    default="compact",
    show_default=True,
    cls=SectionOption,
    section="Formatting",
    type=click.Choice(["compact", "dict", "json", "jsonpb", "table", "tab"], case_sensitive=False),
    metavar="FORMAT",
    help="Output format: compact, dict, json, table.",
)
@debug_option
@server_options
def status(**params: Any) -> None:
    """Check that the server is healthy and show its flow buffer and rate.

    Compact output starts with the health check line; a relay also reports its nodes.
    """
    fmt = canonical_format(str(params.get("output") or "compact"))
    dial_timeout, request_timeout = timeouts(params)
    with connect(
        str(params.get("server")),
        tls_options(params),
        dial_timeout,
        request_timeout=request_timeout,
    ) as client:
        state = client.health_check(OBSERVER_HEALTH_SERVICE)
        healthy = state == "SERVING"
        if fmt == "compact":
            text = "Ok" if healthy else f"Unavailable: {state}"
            click.echo(f"Healthcheck (via {client.target.address}): {text}")
        if not healthy:
            raise ServerError("not healthy")
        click.echo(
            format_status(client.server_status(), "json" if fmt == "jsonpb" else fmt), nl=False
        )
