"""``hubblectl observe [flows]``: stream flows from an agent or relay, or from a file.

Flags, defaults and output follow Hubble's ``hubble observe`` (reference §6, §7); see
``filters`` for how filter flags become FlowFilters and ``printer`` for the formats.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import IO, Any, Final

import click

from hubblectl.cli import filters as flt
from hubblectl.cli.common import (
    ORDERED_ARGS_KEY,
    SectionedCommand,
    SectionOption,
    debug_enabled,
    debug_option,
    server_options,
    timeouts,
    tls_options,
)
from hubblectl.cli.inputfile import MAX_NUMBER, Selection, read_lines, select
from hubblectl.errors import InputError, UsageError
from hubblectl.printer import canonical_format, make_printer
from hubblectl.printer.fields import RESERVED_IDENTITY_NAMES, TRACE_POINT_NAMES
from hubblectl.printer.options import PrinterOptions, resolve_color
from hubblectl.printer.timefmt import TIME_FORMATS, Timestamp, parse_time_arg

DEFAULT_LAST: Final = 20

# --- completion ----------------------------------------------------------------------------


def _complete(values: Sequence[str]) -> Any:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        return [v for v in values if v.lower().startswith(incomplete.lower())]

    return complete


def _type_values() -> list[str]:
    out: list[str] = []
    for name in flt.FLOW_EVENT_TYPES:
        out.append(name)
        if name == "trace":
            out.extend(f"trace:{point}" for point in TRACE_POINT_NAMES.values())
        if name == "drop":
            out.append("drop:POLICY_DENIED")
    return out


_HTTP_METHODS: Final = (
    "CONNECT",
    "DELETE",
    "GET",
    "HEAD",
    "OPTIONS",
    "PATCH",
    "POST",
    "PUT",
    "TRACE",
)

# --- filter flag table: (flag, short, metavar, help, completion values) -----------------------

_FILTERS: Final[tuple[tuple[str, str | None, str | None, str, Sequence[str] | None], ...]] = (
    (
        "not",
        None,
        None,
        "Negate the next filter flag: it goes to the denylist (e.g. --not --to-port 53).",
        None,
    ),
    ("uuid", None, "UUID", "Only the flow with this unique identifier.", None),
    (
        "node-name",
        None,
        "PATTERN",
        "Flows observed on matching nodes (node, cluster/node, cluster/; * wildcards).",
        None,
    ),
    ("node-label", None, "SELECTOR", "Flows observed on nodes matching this label selector.", None),
    ("from-cluster", None, "NAME", "Flows from endpoints in this cluster.", None),
    ("cluster", None, "NAME", "Flows from or to endpoints in this cluster.", None),
    ("to-cluster", None, "NAME", "Flows to endpoints in this cluster.", None),
    (
        "protocol",
        None,
        "PROTO",
        "L4 or L7 protocol: " + ", ".join(flt.PROTOCOLS) + ".",
        flt.PROTOCOLS,
    ),
    (
        "tcp-flags",
        None,
        "FLAGS",
        "TCP flags that must all be set, comma-separated (e.g. syn or syn,ack).",
        None,
    ),
    (
        "type",
        "t",
        "TYPE[:SUB]",
        "Event type: " + ", ".join(flt.FLOW_EVENT_TYPES) + " or a number; sub-types like "
        "trace:to-endpoint, drop:POLICY_DENIED or a number.",
        None,
    ),
    ("verdict", None, "VERDICT", "Verdict: " + ", ".join(flt.VERDICTS) + ".", flt.VERDICTS),
    ("drop-reason-desc", None, "REASON", "Drop reason name (e.g. POLICY_DENIED).", None),
    ("http-status", None, "CODE", "HTTP status code or prefix (404, 5+, 40+).", None),
    ("http-method", None, "METHOD", "HTTP method (case-insensitive).", _HTTP_METHODS),
    ("http-path", None, "REGEX", "HTTP path regular expression.", None),
    ("http-url", None, "REGEX", "HTTP URL regular expression.", None),
    ("http-header", None, "KEY:VALUE", "HTTP header key:value.", None),
    ("trace-id", None, "ID", "Trace context (trace parent) ID.", None),
    ("ip-trace-id", None, "ID", "IP option trace ID (> 0).", None),
    ("from-fqdn", None, "NAME", "Flows from this DNS name (wildcards like *.cilium.io).", None),
    ("fqdn", None, "NAME", "Flows from or to this DNS name.", None),
    ("to-fqdn", None, "NAME", "Flows to this DNS name.", None),
    ("from-ip", None, "IP/CIDR", "Flows from this IP address or CIDR.", None),
    ("snat-ip", None, "IP/CIDR", "Flows whose source was translated to this IP or CIDR.", None),
    ("ip", None, "IP/CIDR", "Flows from or to this IP address or CIDR.", None),
    ("to-ip", None, "IP/CIDR", "Flows to this IP address or CIDR.", None),
    ("ipv4", "4", None, "Only IPv4 flows.", None),
    ("ipv6", "6", None, "Only IPv6 flows.", None),
    ("ip-version", None, "VERSION", "IP version: v4, v6 or none (non-IP).", ("v4", "v6", "none")),
    (
        "from-pod",
        None,
        "[NS/]POD",
        "Flows from pods with this name prefix (namespace 'default' if omitted).",
        None,
    ),
    ("pod", None, "[NS/]POD", "Flows from or to pods with this name prefix.", None),
    ("to-pod", None, "[NS/]POD", "Flows to pods with this name prefix.", None),
    ("from-namespace", None, "NS", "Flows from this namespace.", None),
    ("namespace", "n", "NS", "Flows from or to this namespace.", None),
    ("to-namespace", None, "NS", "Flows to this namespace.", None),
    ("from-all-namespaces", None, None, "Flows from any namespace.", None),
    ("all-namespaces", "A", None, "Flows from or to any namespace.", None),
    ("to-all-namespaces", None, None, "Flows to any namespace.", None),
    (
        "from-label",
        None,
        "SELECTOR",
        "Flows from endpoints matching this label selector (e.g. k8s:app=foo).",
        None,
    ),
    ("label", "l", "SELECTOR", "Flows from or to endpoints matching this label selector.", None),
    ("to-label", None, "SELECTOR", "Flows to endpoints matching this label selector.", None),
    ("from-service", None, "[NS/]SVC", "Flows from services with this name prefix.", None),
    ("service", None, "[NS/]SVC", "Flows from or to services with this name prefix.", None),
    ("to-service", None, "[NS/]SVC", "Flows to services with this name prefix.", None),
    ("from-port", None, "PORT", "Flows with this source port.", None),
    ("port", None, "PORT", "Flows with this source or destination port.", None),
    ("to-port", None, "PORT", "Flows with this destination port.", None),
    ("from-workload", None, "[KIND/]NAME", "Flows from endpoints of this workload.", None),
    ("workload", None, "[KIND/]NAME", "Flows from or to endpoints of this workload.", None),
    ("to-workload", None, "[KIND/]NAME", "Flows to endpoints of this workload.", None),
    (
        "from-identity",
        None,
        "ID",
        "Flows from this security identity (number or reserved name).",
        None,
    ),
    ("identity", None, "ID", "Flows from or to this security identity.", None),
    ("to-identity", None, "ID", "Flows to this security identity.", None),
    (
        "traffic-direction",
        None,
        "DIR",
        "Traffic direction: ingress or egress.",
        flt.TRAFFIC_DIRECTIONS,
    ),
    ("interface", None, "NAME", "Flows observed on this network interface.", None),
    ("encrypted", None, None, "Only encrypted flows.", None),
    ("unencrypted", None, None, "Only unencrypted flows.", None),
    (
        "cel-expression",
        None,
        "EXPR",
        "CEL expression over _flow (if the server supports it).",
        None,
    ),
)

_IDENTITY_COMPLETION: Final = tuple(RESERVED_IDENTITY_NAMES.values())


def _param_name(flag: str) -> str:
    return "f_" + flag.replace("-", "_")


PARAM_TO_FLAG: Final = MappingProxyType({_param_name(flag): flag for flag, *_ in _FILTERS})


def _filter_options(func: Any) -> Any:
    for flag, short, metavar, help_text, values in reversed(_FILTERS):
        decls = [f"--{flag}"]
        if short:
            decls.insert(0, f"-{short}")
        completion = values
        if flag in ("identity", "from-identity", "to-identity"):
            completion = _IDENTITY_COMPLETION
        if flag == "type":
            completion = _type_values()
        kwargs: dict[str, Any] = {"cls": SectionOption, "section": "Filter", "help": help_text}
        if flag in flt.VALUELESS_FLAGS:
            kwargs["count"] = True
        else:
            kwargs["multiple"] = True
            kwargs["metavar"] = metavar
            if completion is not None:
                kwargs["shell_complete"] = _complete(completion)
        func = click.option(*decls, _param_name(flag), **kwargs)(func)
    return func


class ObserveCommand(SectionedCommand):
    section_order = ("Selector", "Filter", "Raw filter", "Formatting", "Server", "Other")


_EPILOG: Final = """\b
Filters: values of one flag are ORed; different flags must all match. Symmetric flags
(--pod, --ip, --label, --namespace, --port, ...) match either direction. --not sends only
the next filter flag to the denylist; repeat it before each flag to negate. Print the
FlowFilters a command line builds with --print-raw-filters.

\b
Examples:
  hubblectl observe -f --verdict DROPPED
  hubblectl observe --last 100 --to-pod kube-system/coredns --protocol udp
  hubblectl observe --since 5m --not --namespace kube-system -o json | jq .flow.Summary
  hubblectl observe -o json --last 1000 > flows.json; hubblectl observe --input-file flows.json --type drop

\b
Shell completion (flags and values of -o, --type, --verdict, --protocol, ...):
  eval "$(_HUBBLECTL_COMPLETE=bash_source hubblectl)"    # zsh: zsh_source, fish: fish_source
"""


# --- request ---------------------------------------------------------------------------------


def build_request(
    *,
    last: int,
    first: int,
    all_: bool,
    follow: bool,
    since: Timestamp | None,
    until: Timestamp | None,
    from_file: bool,
    whitelist: Sequence[Mapping[str, Any]],
    blacklist: Sequence[Mapping[str, Any]],
    field_mask: Sequence[str] = (),
) -> dict[str, Any]:
    """The GetFlowsRequest (protojson-shaped dict) Hubble's CLI sends for these flags.

    Raises ``UsageError`` for combinations Hubble rejects (naming both flags).
    """
    if first and last:
        raise UsageError("cannot set both --first and --last")
    if first and all_:
        raise UsageError("cannot set both --first and --all")
    if first and follow:
        raise UsageError("cannot set both --first and --follow")
    if last and all_:
        raise UsageError("cannot set both --last and --all")
    if follow:
        until = None
    if since is not None and until is not None and since > until:
        raise UsageError(f"--since ({since.rfc3339()}) is after --until ({until.rfc3339()})")
    number = first if first else last
    if since is None and until is None and not first:
        if all_:
            number = MAX_NUMBER
        elif number == 0 and not follow and not from_file:
            number = DEFAULT_LAST
    request: dict[str, Any] = {}
    if number:
        request["number"] = number
    if first:
        request["first"] = True
    if follow:
        request["follow"] = True
    if blacklist:
        request["blacklist"] = [dict(f) for f in blacklist]
    if whitelist:
        request["whitelist"] = [dict(f) for f in whitelist]
    if since is not None:
        request["since"] = since.rfc3339()
    if until is not None:
        request["until"] = until.rfc3339()
    if field_mask:
        request["field_mask"] = {"paths": list(field_mask)}
    return request


def _parse_time(flag: str, value: str | None, now: Timestamp) -> Timestamp | None:
    if not value:
        return None
    ts = parse_time_arg(value, now)
    if ts is None:
        raise UsageError(
            f"invalid --{flag} value {value!r}: expected a duration (5m, 1h30m) or a time "
            "(2006-01-02, 2006-01-02T15:04Z, RFC 3339, RFC 1123Z)"
        )
    return ts


def _field_mask(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def _open_input(path: str) -> tuple[IO[bytes], bool]:
    if path == "-":
        return sys.stdin.buffer, False
    try:
        return open(path, "rb"), True
    except OSError as err:
        raise InputError(f"cannot open --input-file {path}: {err.strerror}") from None


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    yield from stream


# --- the command -----------------------------------------------------------------------------


@click.command(
    "observe", cls=ObserveCommand, epilog=_EPILOG, short_help="Observe flows of an agent or relay."
)
@click.argument("what", required=False, type=click.Choice(["flows"]), metavar="[flows]")
@click.option(
    "--last",
    type=int,
    default=0,
    metavar="N",
    cls=SectionOption,
    section="Selector",
    help=f"Get the last N flows (default {DEFAULT_LAST} when neither following nor given a time range).",
)
@click.option(
    "--first",
    type=int,
    default=0,
    metavar="N",
    cls=SectionOption,
    section="Selector",
    help="Get the first N flows still in the buffer.",
)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    cls=SectionOption,
    section="Selector",
    help="Get all flows still in the buffer.",
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    cls=SectionOption,
    section="Selector",
    help="Keep streaming new flows.",
)
@click.option(
    "--since",
    metavar="TIME",
    cls=SectionOption,
    section="Selector",
    help="Flows since this time: a duration ago (3s, 5m, 1h30m) or 2006-01-02[T15[:04]Z], RFC 3339, RFC 1123Z.",
)
@click.option(
    "--until",
    metavar="TIME",
    cls=SectionOption,
    section="Selector",
    help="Flows until this time (same syntax); ignored with --follow.",
)
@_filter_options
@click.option(
    "--allowlist",
    multiple=True,
    metavar="JSON",
    cls=SectionOption,
    section="Raw filter",
    help="Add JSON-encoded FlowFilters to the allowlist (proto or camelCase field names).",
)
@click.option(
    "--denylist",
    multiple=True,
    metavar="JSON",
    cls=SectionOption,
    section="Raw filter",
    help="Add JSON-encoded FlowFilters to the denylist.",
)
@click.option(
    "--print-raw-filters",
    is_flag=True,
    cls=SectionOption,
    section="Raw filter",
    help="Print the allowlist/denylist these flags build (YAML) and exit.",
)
@click.option(
    "-o",
    "--output",
    default="compact",
    show_default=True,
    cls=SectionOption,
    section="Formatting",
    type=click.Choice(["compact", "dict", "json", "jsonpb", "table", "tab"], case_sensitive=False),
    metavar="FORMAT",
    help="Output format: compact, dict, json, jsonpb, table.",
)
@click.option(
    "--time-format",
    default="StampMilli",
    show_default=True,
    cls=SectionOption,
    section="Formatting",
    type=click.Choice(list(TIME_FORMATS), case_sensitive=False),
    metavar="LAYOUT",
    help="Timestamp layout (UTC): " + ", ".join(TIME_FORMATS) + ".",
)
@click.option(
    "--print-node-name",
    is_flag=True,
    cls=SectionOption,
    section="Formatting",
    help="Print the node name of each flow.",
)
@click.option(
    "--print-policy-names",
    is_flag=True,
    cls=SectionOption,
    section="Formatting",
    help="Name the policies that allowed or denied a flow (policy verdicts and drops).",
)
@click.option(
    "--numeric",
    is_flag=True,
    cls=SectionOption,
    section="Formatting",
    help="Print IP addresses instead of pod, service or DNS names.",
)
@click.option(
    "--ip-translation/--no-ip-translation",
    default=True,
    cls=SectionOption,
    section="Formatting",
    help="Translate IP addresses to pod, service or DNS names.",
)
@click.option(
    "--color",
    default="auto",
    show_default=True,
    cls=SectionOption,
    section="Formatting",
    type=click.Choice(["auto", "always", "never"], case_sensitive=False),
    metavar="WHEN",
    help="auto, always or never: colour compact and dict output (auto: on a terminal unless NO_COLOR is set).",
)
@click.option(
    "--field-mask",
    multiple=True,
    metavar="PATHS",
    cls=SectionOption,
    section="Formatting",
    help="Comma-separated Flow field paths the server returns (json/jsonpb only).",
)
@click.option(
    "-s",
    "--silent-errors",
    is_flag=True,
    cls=SectionOption,
    section="Formatting",
    help="Do not print relay node events and warnings on stderr.",
)
@click.option(
    "--input-file",
    metavar="FILE",
    cls=SectionOption,
    section="Other",
    help="Read flows from a file of JSON lines (- for stdin) instead of a server.",
)
@debug_option
@server_options
@click.pass_context
def observe(ctx: click.Context, /, what: str | None, **params: Any) -> None:
    """Observe flows of an agent or relay.

    Prints flows with their verdicts as they cross the datapath: by default the last 20,
    with --follow as they happen.
    """
    run_observe(ctx, params, now=Timestamp.from_ns(time.time_ns()))


def ordered_filter_args(ctx: click.Context) -> list[tuple[str, str | None]]:
    """Filter flags in command-line order, as (flag name, value)."""
    ordered = ctx.meta.get(ORDERED_ARGS_KEY, [])
    return [(PARAM_TO_FLAG[name], value) for name, value in ordered if name in PARAM_TO_FLAG]


def run_observe(ctx: click.Context, params: Mapping[str, Any], *, now: Timestamp) -> None:
    debug = debug_enabled(ctx, bool(params.get("debug_local")))
    lists = flt.build_filters(ordered_filter_args(ctx))
    whitelist = list(lists.whitelist) + flt.parse_raw_filters(
        "allowlist", params.get("allowlist") or ()
    )
    blacklist = list(lists.blacklist) + flt.parse_raw_filters(
        "denylist", params.get("denylist") or ()
    )
    output = canonical_format(str(params.get("output") or "compact"))
    follow = bool(params.get("follow"))
    input_file = params.get("input_file")
    field_mask = _field_mask(params.get("field_mask") or ())
    if output == "table" and follow:
        raise UsageError(
            "--output table cannot be combined with --follow (a table is printed at the end)"
        )
    if field_mask and output not in ("json", "jsonpb"):
        raise UsageError(
            f"--field-mask cannot be combined with --output {output} (only json/jsonpb)"
        )
    if input_file and follow:
        raise UsageError("--input-file cannot be combined with --follow")
    for flag in ("last", "first"):
        if int(params.get(flag) or 0) < 0:
            raise UsageError(f"--{flag} must not be negative")
    if input_file and field_mask:
        raise UsageError("--input-file cannot be combined with --field-mask")
    if params.get("until") and follow and not params.get("silent_errors"):
        click.echo("warning: --until is ignored with --follow", err=True)
    request = build_request(
        last=int(params.get("last") or 0),
        first=int(params.get("first") or 0),
        all_=bool(params.get("all_")),
        follow=follow,
        since=_parse_time("since", params.get("since"), now),
        until=_parse_time("until", params.get("until"), now),
        from_file=bool(input_file),
        whitelist=whitelist,
        blacklist=blacklist,
        field_mask=field_mask,
    )
    if params.get("print_raw_filters"):
        click.echo(flt.raw_filters_yaml(whitelist, blacklist), nl=False)
        return
    out, err = sys.stdout, sys.stderr
    opts = PrinterOptions(
        time_format=str(params.get("time_format") or "StampMilli"),
        print_node_name=bool(params.get("print_node_name")),
        numeric=bool(params.get("numeric")),
        ip_translation=bool(params.get("ip_translation", True)),
        color=resolve_color(
            str(params.get("color") or "auto"), is_tty=_isatty(out), env=os.environ
        ),
        print_policy_names=bool(params.get("print_policy_names")),
        debug=debug,
        silent_errors=bool(params.get("silent_errors")),
    )
    printer = make_printer(output, opts, out, err)
    try:
        if input_file:
            _observe_file(str(input_file), request, printer, output, opts)
        else:
            _observe_server(params, request, printer)
    except KeyboardInterrupt:
        # Ctrl-C ends a follow: flush what we have and leave quietly with 128+SIGINT.
        _close_quietly(printer)
        raise SystemExit(130) from None
    finally:
        _close_quietly(printer)


def _close_quietly(printer: Any) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError):
        printer.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _observe_file(
    path: str, request: Mapping[str, Any], printer: Any, output: str, opts: PrinterOptions
) -> None:
    whitelist = list(request.get("whitelist", []))
    blacklist = list(request.get("blacklist", []))
    predicate = None
    if whitelist or blacklist:
        from observer.filters import compile_filters

        predicate = compile_filters(whitelist, blacklist)
    since = _request_time(request.get("since"))
    until = _request_time(request.get("until"))
    selection = Selection(
        number=int(request.get("number", 0)),
        first=bool(request.get("first")),
        since=since,
        until=until,
    )
    stream, owned = _open_input(path)
    name = "<stdin>" if path == "-" else path

    def warn(message: str) -> None:
        if not opts.silent_errors:
            click.echo(message, err=True)

    raw_ok = output in ("json", "jsonpb")
    try:
        for item in select(read_lines(_lines(stream), name, warn=warn), selection, predicate):
            if raw_ok and item.raw is not None:
                printer.write_json(item.raw)
            else:
                printer.write(item.response)
    finally:
        if owned:
            stream.close()


def _request_time(value: object) -> Timestamp | None:
    if not isinstance(value, str):
        return None
    from hubblectl.printer.timefmt import parse_rfc3339

    return parse_rfc3339(value)


def _observe_server(params: Mapping[str, Any], request: Mapping[str, Any], printer: Any) -> None:
    from hubblectl.client import connect
    from observer.malloc import tune_malloc

    # batches of several MiB arrive one after another: reuse heap memory for them instead of
    # fresh mappings the kernel must zero (observer/malloc.py; the batched reader's rate
    # went from 444-549k to 588-619k flows/s in one sitting)
    tune_malloc()
    dial_timeout, request_timeout = timeouts(dict(params))
    client = connect(
        str(params.get("server")),
        tls_options(dict(params)),
        dial_timeout,
        request_timeout=request_timeout,
    )
    with client:
        for chunk in client.get_flows(request):
            printer.write_json(chunk)
