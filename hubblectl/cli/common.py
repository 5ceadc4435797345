"""Pieces the client commands (observe, status, list) share: server/TLS flags, sectioned
help, and a click command that remembers the command-line order of filter flags."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from hubblectl.client import DEFAULT_SERVER, TLSOptions
from hubblectl.errors import UsageError
from hubblectl.printer.timefmt import parse_go_duration

F = TypeVar("F", bound=Callable[..., Any])

ORDERED_ARGS_KEY = "hubblectl.ordered_args"


class SectionOption(click.Option):
    """An option that knows which help section it belongs to."""

    def __init__(self, *args: Any, section: str = "Other", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class SectionedCommand(click.Command):
    """Prints options grouped by section (Selectors, Filters, Formatting, Server, ...), and
    records every option occurrence in command-line order in ``ctx.meta[ORDERED_ARGS_KEY]``
    as ``(option name, value)`` pairs (``None`` for flags). Click itself only keeps values per
    option, which loses the interleaving ``--not`` depends on."""

    section_order: Sequence[str] = ()

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            parser = self.make_parser(ctx)
            opts, _, order = parser.parse_args(args=list(args))
            pending: dict[str, list[Any]] = {}
            for name, value in opts.items():
                if isinstance(value, list):
                    pending[name] = list(value)
            ordered: list[tuple[str, Any]] = []
            for param in order:
                if not isinstance(param, click.Option) or param.name is None:
                    continue
                values = pending.get(param.name)
                value = values.pop(0) if values else None
                ordered.append((param.name, value))
            ctx.meta[ORDERED_ARGS_KEY] = ordered
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            section = getattr(param, "section", "Other")
            sections.setdefault(section, []).append(record)
        names = [s for s in self.section_order if s in sections]
        names += [s for s in sections if s not in names]
        for name in names:
            with formatter.section(f"{name} options"):
                formatter.write_dl(sections[name])


def _duration_seconds(flag: str, text: str) -> float:
    ns = parse_go_duration(text)
    if ns is None:
        try:
            return float(text)
        except ValueError:
            raise UsageError(
                f"invalid --{flag} value {text!r}: expected a duration like 5s or 1m"
            ) from None
    if ns <= 0:
        raise UsageError(f"invalid --{flag} value {text!r}: must be positive")
    return ns / 1e9


def server_options(func: F) -> F:
    """``--server`` and the TLS/timeout flags (Hubble's server flags)."""
    decorators = [
        click.option(
            "--server",
            cls=SectionOption,
            section="Server",
            envvar="HUBBLE_SERVER",
            default=DEFAULT_SERVER,
            show_default=True,
            metavar="ADDR",
            help="Agent or relay to talk to: unix:///path, host:port (TCP), tls://host:port "
            "(forces TLS). Env HUBBLE_SERVER.",
        ),
        click.option(
            "--timeout",
            cls=SectionOption,
            section="Server",
            default="5s",
            show_default=True,
            metavar="DURATION",
            help="How long to wait for the connection.",
        ),
        click.option(
            "--request-timeout",
            cls=SectionOption,
            section="Server",
            default="12s",
            show_default=True,
            metavar="DURATION",
            help="Timeout of unary requests (status, nodes).",
        ),
        click.option(
            "--tls",
            cls=SectionOption,
            section="Server",
            is_flag=True,
            envvar="HUBBLE_TLS",
            help="Use TLS to connect to the server.",
        ),
        click.option(
            "--tls-allow-insecure",
            cls=SectionOption,
            section="Server",
            is_flag=True,
            envvar="HUBBLE_TLS_ALLOW_INSECURE",
            help="Accept the server certificate without verifying it (trust on first use).",
        ),
        click.option(
            "--tls-ca-cert-files",
            cls=SectionOption,
            section="Server",
            multiple=True,
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="PEM CA certificates to verify the server with (repeatable, or comma-separated).",
        ),
        click.option(
            "--tls-client-cert-file",
            cls=SectionOption,
            section="Server",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="PEM client certificate for mutual TLS (needs --tls-client-key-file).",
        ),
        click.option(
            "--tls-client-key-file",
            cls=SectionOption,
            section="Server",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="PEM client key for mutual TLS (needs --tls-client-cert-file).",
        ),
        click.option(
            "--tls-server-name",
            cls=SectionOption,
            section="Server",
            metavar="NAME",
            envvar="HUBBLE_TLS_SERVER_NAME",
            help="Server name to verify the certificate against (e.g. instance.hubble-relay.cilium.io).",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def debug_option(func: F) -> F:
    return click.option(
        "-D",
        "--debug",
        "debug_local",
        cls=SectionOption,
        section="Other",
        is_flag=True,
        help="Show all relay node events and tracebacks on errors.",
    )(func)


def debug_enabled(ctx: click.Context, local: bool) -> bool:
    if local:
        return True
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    return bool(obj.get("debug")) or os.environ.get("HUBBLECTL_DEBUG", "") not in ("", "0", "false")


def tls_options(params: dict[str, Any]) -> TLSOptions:
    """TLS settings from the server flags; mutual-TLS flags must come in pairs."""
    cert, key = params.get("tls_client_cert_file"), params.get("tls_client_key_file")
    if bool(cert) != bool(key):
        raise UsageError("--tls-client-cert-file and --tls-client-key-file must be given together")
    ca_files: list[str] = []
    for item in params.get("tls_ca_cert_files") or ():
        ca_files.extend(part for part in str(item).split(",") if part)
    return TLSOptions(
        enabled=bool(params.get("tls")),
        allow_insecure=bool(params.get("tls_allow_insecure")),
        ca_cert_files=tuple(ca_files),
        client_cert_file=cert or None,
        client_key_file=key or None,
        server_name=params.get("tls_server_name") or None,
    )


def timeouts(params: dict[str, Any]) -> tuple[float, float]:
    """(dial timeout, unary request timeout) in seconds."""
    return (
        _duration_seconds("timeout", str(params.get("timeout") or "5s")),
        _duration_seconds("request-timeout", str(params.get("request_timeout") or "12s")),
    )
