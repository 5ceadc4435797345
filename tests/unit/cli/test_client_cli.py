"""Server addresses, the `list`/`version` commands' wiring and flag validation before any dial."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hubblectl.cli.main import cli
from hubblectl.cli.version import version_string
from hubblectl.client import Target, parse_server
from hubblectl.errors import UsageError


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("unix:///var/run/hubblectl/hubble.sock", Target("unix:///var/run/hubblectl/hubble.sock")),
        ("/run/h.sock", Target("unix:///run/h.sock")),
        ("localhost:4245", Target("localhost:4245")),
        ("tls://relay.example:4245", Target("relay.example:4245", tls=True)),
        ("[::1]:4244", Target("[::1]:4244")),
    ],
    ids=["unix-url", "bare-path", "tcp", "tls-prefix", "ipv6"],
)
def test_parse_server(server: str, expected: Target) -> None:
    assert parse_server(server) == expected


def test_unix_path() -> None:
    assert parse_server("unix:///a/b.sock").unix_path == "/a/b.sock"
    assert parse_server("unix:/a/b.sock").unix_path == "/a/b.sock"
    assert parse_server("host:1").unix_path is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--timeout", "soon"], "invalid --timeout value 'soon'"),
        (["status", "--tls-client-key-file", "k.pem"], "must be given together"),
        (["status", "--server", "unix:///x.sock", "--tls"], "TLS is not supported on unix sockets"),
        (["list", "nodes", "--server", ""], "--server must not be empty"),
    ],
    ids=["bad-timeout", "half-mtls", "tls-on-unix", "empty-server"],
)
def test_flag_errors_before_dialing(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, UsageError), result.output
    assert message in str(result.exception)


def test_list_node_alias_and_version() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["list", "node", "--help"]).exit_code == 0
    result = runner.invoke(cli, ["version"])
    assert result.exit_code == 0
    assert result.output == version_string() + "\n"
    assert result.output.startswith("hubblectl ") and " compiled with Python " in result.output
