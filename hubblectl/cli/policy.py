"""`hubblectl policy`: apply, list, show, delete and trace network policy on the agent.

Policies are CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy (cilium.io/v2) and
Kubernetes NetworkPolicy (networking.k8s.io/v1) documents, many per file. The agent
validates every document before it changes anything: one bad field rejects the whole
request with ``<file>: document <n>: <field path>: <problem>``.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

import click
import orjson
import yaml
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hubblectl.cli.endpoint import SERVER_OPTION, agent_stub
from hubblectl.errors import UsageError

_PROTOCOLS = ("tcp", "udp", "sctp", "icmp", "icmpv6")

KIND_OPTION = click.option(
    "--kind",
    default="",
    help="Policy kind when a NAMESPACE/NAME is shared: cnp, ccnp or netpol (full kind names work too).",
)


def split_policy_key(key: str) -> tuple[str, str]:
    """NAMESPACE/NAME, or NAME (a clusterwide policy, else the one in namespace default)."""
    if "/" in key:
        ns, _, name = key.partition("/")
        if not ns or not name or "/" in name:
            raise UsageError(f"policy {key!r}: expected NAMESPACE/NAME or NAME")
        return ns, name
    if not key:
        raise UsageError("policy name must not be empty")
    return "", key


def parse_dport(text: str) -> tuple[int, str]:
    """``80``, ``80/tcp``, ``53/UDP``, ``8/icmp`` (ICMP type) -> (port, protocol)."""
    port_text, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOCOLS:
        raise UsageError(f"--dport {text!r}: protocol must be one of {', '.join(_PROTOCOLS)}")
    if not port_text.isdigit():
        raise UsageError(f"--dport {text!r}: expected PORT[/PROTOCOL], e.g. 80/tcp")
    port = int(port_text)
    limit = 255 if proto.startswith("icmp") else 65535
    if port > limit:
        raise UsageError(f"--dport {text!r}: {port} out of range 0-{limit}")
    return port, proto


def _to_dict(msg: Any) -> dict[str, Any]:
    d: dict[str, Any] = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return d


def _where(ns: str, name: str) -> str:
    return f"{ns}/{name}" if ns else name


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return "<stdin>", sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return path, fh.read()
    except OSError as err:
        raise UsageError(f"cannot read policy file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"policy file {path} is not UTF-8 text ({err.reason})") from None


def _print_json(obj: object) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


@click.group()
def policy() -> None:
    """Apply, list, show, delete and trace network policy (CiliumNetworkPolicy, NetworkPolicy)."""


@policy.command("apply")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="Policy file (YAML, many documents); '-' reads stdin. Repeatable: all are applied at once.",
)
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@SERVER_OPTION
def apply(files: tuple[str, ...], output: str, server: str) -> None:
    """Create or replace the policies of the given files, atomically.

    Nothing is applied when any document is invalid.
    """
    from observer.api.v1.hubblectl import agent_pb2

    req = agent_pb2.ApplyPoliciesRequest(
        files=[agent_pb2.PolicyFile(filename=name, text=text) for name, text in map(_read, files)]
    )
    with agent_stub(server) as stub:
        resp = stub.ApplyPolicies(req, timeout=120)
    if output == "json":
        _print_json(_to_dict(resp))
        return
    for change in resp.changes:
        p = change.policy
        click.echo(f"{p.kind.lower()}/{_where(p.namespace, p.name)} {change.action}")
    r = resp.result
    click.echo(
        f"policy revision {r.revision}: {r.endpoints_changed} endpoint(s) changed, "
        f"{r.entries_written} map entries written"
    )


@policy.command("list")
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@SERVER_OPTION
def list_(output: str, server: str) -> None:
    """List policies: namespace, name, kind, endpoints selected, revision."""
    from observer.api.v1.hubblectl import agent_pb2

    with agent_stub(server) as stub:
        resp = stub.ListPolicies(agent_pb2.ListPoliciesRequest(), timeout=12)
    if output == "json":
        _print_json([_to_dict(p) for p in resp.policies])
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("NAMESPACE", "NAME", "KIND", "ENDPOINTS", "ENFORCES", "REVISION"):
        table.add_column(col, no_wrap=True)
    for p in resp.policies:
        enforces = (
            "/".join(d for d, on in (("ingress", p.ingress), ("egress", p.egress)) if on) or "-"
        )
        table.add_row(
            Text(p.namespace or "-"),
            Text(p.name),
            p.kind,
            str(len(p.endpoints)),
            enforces,
            str(p.revision),
        )
    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 200
    Console(width=width, highlight=False).print(table)


@policy.command("get")
@click.argument("key", metavar="NAMESPACE/NAME")
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
@KIND_OPTION
@SERVER_OPTION
def get(key: str, output: str, kind: str, server: str) -> None:
    """Show a policy as applied (NAME alone: a clusterwide policy, else default/NAME)."""
    from observer.api.v1.hubblectl import agent_pb2

    ns, name = split_policy_key(key)
    with agent_stub(server) as stub:
        doc = stub.GetPolicy(
            agent_pb2.GetPolicyRequest(namespace=ns, name=name, kind=kind), timeout=12
        )
    if output == "yaml":
        sys.stdout.write(doc.yaml if doc.yaml.endswith("\n") else doc.yaml + "\n")
        return
    data = yaml.safe_load(doc.yaml)
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


@policy.command("delete")
@click.argument("key", metavar="NAMESPACE/NAME")
@KIND_OPTION
@SERVER_OPTION
def delete(key: str, kind: str, server: str) -> None:
    """Delete a policy; endpoints it no longer selects leave enforcement at once."""
    from observer.api.v1.hubblectl import agent_pb2

    ns, name = split_policy_key(key)
    with agent_stub(server) as stub:
        resp = stub.DeletePolicy(
            agent_pb2.DeletePolicyRequest(namespace=ns, name=name, kind=kind), timeout=60
        )
    d = resp.deleted
    click.echo(
        f"{d.kind.lower()}/{_where(d.namespace, d.name)} deleted "
        f"(policy revision {resp.result.revision})"
    )


@policy.command("trace")
@click.option(
    "--from",
    "source",
    required=True,
    help="NAMESPACE/NAME of an endpoint, an IP, world, host or identity:N.",
)
@click.option(
    "--to",
    "destination",
    required=True,
    help="NAMESPACE/NAME of an endpoint, an IP, world, host or identity:N.",
)
@click.option(
    "--dport",
    default="0/tcp",
    show_default=True,
    help="PORT[/PROTOCOL] (tcp, udp, sctp; icmp/icmpv6: the type).",
)
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@SERVER_OPTION
def trace(source: str, destination: str, dport: str, output: str, server: str) -> None:
    """The verdict a new connection would get, and the rule that decides it (no traffic sent).

    Computed from the policy map entries the datapath enforces: egress at the source if it
    is a local endpoint, ingress at the destination if it is one.
    """
    from observer.api.v1.hubblectl import agent_pb2

    port, proto = parse_dport(dport)
    with agent_stub(server) as stub:
        resp = stub.TracePolicy(
            agent_pb2.TracePolicyRequest(
                source=source, destination=destination, dport=port, protocol=proto
            ),
            timeout=12,
        )
    if output == "json":
        _print_json(_to_dict(resp))
        return
    l4 = f"{proto.upper()} type {port}" if proto.startswith("icmp") else f"{proto.upper()}/{port}"
    click.echo(
        f"Tracing {resp.source} (identity {resp.source_identity}) -> "
        f"{resp.destination} (identity {resp.destination_identity}), {l4}"
    )
    for line in resp.explanation:
        if line.startswith("verdict:"):
            continue
        click.echo(line)
    how = f"{resp.match_type_text}, " if resp.match_type else ""
    click.echo(f"Final verdict: {resp.verdict} ({how}decided by {resp.decided_by})")
