"""``hubblectl version``."""

from __future__ import annotations

import platform
import sys

import click

from hubblectl import __version__


def version_string() -> str:
    """``hubblectl <version> compiled with Python <x.y.z> on <os>/<arch>`` (Hubble's layout)."""
    py = ".".join(str(p) for p in sys.version_info[:3])
    return (
        f"hubblectl {__version__} compiled with Python {py} on {sys.platform}/{platform.machine()}"
    )


@click.command("version", short_help="Print the version.")
def version() -> None:
    """Print the hubblectl version."""
    click.echo(version_string())
