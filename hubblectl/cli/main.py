"""The `hubblectl` command: a click group with one module per command.

Errors: every error raised on purpose (HubblectlError, ObserverError) prints as one line on
stderr and exits non-zero; a traceback only with --debug (or HUBBLECTL_DEBUG=1).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

import click

from hubblectl import __version__
from hubblectl.errors import HubblectlError
from observer.errors import ObserverError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# Commands are imported when used: `hubblectl observe` should not pay for the relay's or
# the agent's imports (start-up time is most of a short `observe --last 20`).
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("hubblectl.cli.agent", "agent"),
    "certs": ("hubblectl.cli.certs", "certs"),
    "demo": ("hubblectl.cli.demo", "demo"),
    "endpoint": ("hubblectl.cli.endpoint", "endpoint"),
    "list": ("hubblectl.cli.list_", "list_"),
    "observe": ("hubblectl.cli.observe", "observe"),
    "policy": ("hubblectl.cli.policy", "policy"),
    "relay": ("hubblectl.cli.relay", "relay"),
    "status": ("hubblectl.cli.status", "status"),
    "version": ("hubblectl.cli.version", "version"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attr = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option("--debug", is_flag=True, envvar="HUBBLECTL_DEBUG", help="Debug logging and tracebacks.")
@click.version_option(__version__, "--version", prog_name="hubblectl")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """hubblectl: eBPF flow observability, Hubble-compatible.

    Run a node agent (`hubblectl agent`), create endpoints, apply network policy and
    watch the flows (`hubblectl observe --follow`).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or "-D" in argv or os.environ.get("HUBBLECTL_DEBUG", "") not in ("", "0", "false")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one clear line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = cli.main(args=args, prog_name="hubblectl", standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)  # ctx.exit(n) returns n in non-standalone mode
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # `hubblectl observe | head`: the reader went away; exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    except (HubblectlError, ObserverError) as exc:
        if _debug_requested(args):
            traceback.print_exc()
        click.echo(f"hubblectl: error: {exc}", err=True)
        sys.exit(getattr(exc, "exit_code", 1))
    except Exception as exc:
        if _debug_requested(args):
            raise
        click.echo(f"hubblectl: error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
