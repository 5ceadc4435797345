"""``hubblectl observe`` through click: flag order, conflicts, --print-raw-filters,
--input-file (filters, selectors, formats, malformed input) and the --help text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from hubblectl.cli.main import cli, main
from hubblectl.cli.observe import build_request
from hubblectl.errors import InputError, UsageError
from hubblectl.printer.timefmt import Timestamp

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "flows.jsonl"


def run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(
        cli,
        list(args),
        input=stdin,
        env=env,
        terminal_width=100,
        catch_exceptions=True,
        prog_name="hubblectl",
    )


def observe_file(*args: str, env: dict[str, str] | None = None) -> Result:
    return run("observe", "--input-file", str(FIXTURE), *args, env=env)


# --- flag order and --print-raw-filters --------------------------------------------------------


def test_print_raw_filters_keeps_not_order() -> None:
    result = run(
        "observe",
        "--not",
        "--last",
        "5",
        "--verdict",
        "DROPPED",
        "--pod",
        "default/xwing",
        "--not",
        "--to-port",
        "53",
        "--print-raw-filters",
    )
    assert result.exit_code == 0, result.output
    assert result.output == (
        "allowlist:\n"
        '    - \'{"source_pod":["default/xwing"]}\'\n'
        '    - \'{"destination_pod":["default/xwing"]}\'\n'
        "denylist:\n"
        '    - \'{"verdict":["DROPPED"],"destination_port":["53"]}\'\n'
    )


def test_print_raw_filters_with_raw_lists() -> None:
    result = run(
        "observe",
        "-t",
        "drop",
        "--allowlist",
        '{"sourceLabel":["k8s:app=a"]}',
        "--denylist",
        '{"protocol":["udp"]} {"protocol":["icmp"]}',
        "--print-raw-filters",
    )
    assert result.exit_code == 0, result.output
    assert result.output == (
        "allowlist:\n"
        '    - \'{"event_type":[{"type":1}]}\'\n'
        '    - \'{"source_label":["k8s:app=a"]}\'\n'
        "denylist:\n"
        '    - \'{"protocol":["udp"]}\'\n'
        '    - \'{"protocol":["icmp"]}\'\n'
    )


def test_short_flags_and_positional_flows() -> None:
    result = run(
        "observe",
        "flows",
        "-4",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "--print-raw-filters",
    )
    assert result.exit_code == 0, result.output
    assert (
        '\'{"source_pod":["kube-system/"],"source_label":["k8s-app=kube-dns"],"ip_version":["IPv4"]}\''
        in result.output
    )


# --- conflicts: one line naming both flags -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--first", "1", "--follow"], "cannot set both --first and --follow"),
        (["--last", "1", "--first", "2"], "cannot set both --first and --last"),
        (["--first", "1", "--all"], "cannot set both --first and --all"),
        (["--last", "3", "--all"], "cannot set both --last and --all"),
        (["-4", "-6"], "filters --ipv4 and --ipv6 cannot be combined"),
        (
            ["--since", "2026-01-02", "--until", "2026-01-01"],
            "--since (2026-01-02T00:00:00Z) is after --until (2026-01-01T00:00:00Z)",
        ),
        (["-o", "table", "--follow"], "--output table cannot be combined with --follow"),
        (
            ["--field-mask", "IP,l4", "-o", "compact"],
            "--field-mask cannot be combined with --output compact",
        ),
        (["--input-file", "x.json", "--follow"], "--input-file cannot be combined with --follow"),
        (["--pod", "a", "--from-pod", "b"], "filters --from-pod and --pod cannot be combined"),
        (["--pod", "a", "--not"], "trailing --not found in the arguments"),
        (["--since", "last tuesday"], "invalid --since value 'last tuesday'"),
        (["--allowlist", "{oops"], "invalid --allowlist flag"),
    ],
    ids=[
        "first-follow",
        "last-first",
        "first-all",
        "last-all",
        "4-6",
        "since-until",
        "table-follow",
        "fieldmask-compact",
        "input-follow",
        "pod-from-pod",
        "trailing-not",
        "bad-since",
        "bad-allowlist",
    ],
)
def test_conflicts(args: list[str], message: str) -> None:
    result = run("observe", *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, UsageError)
    assert message in str(result.exception)


def test_main_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["observe", "--first", "1", "--follow"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--first" in err and "--follow" in err and "Traceback" not in err


# --- request building (what is sent to the server) --------------------------------------------

NOW = Timestamp(1795694400)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"number": 20}),
        ({"follow": True}, {"follow": True}),
        ({"follow": True, "last": 5}, {"number": 5, "follow": True}),
        ({"first": 3}, {"number": 3, "first": True}),
        ({"all_": True}, {"number": 2**64 - 1}),
        ({"since": Timestamp(100)}, {"since": "1970-01-01T00:01:40Z"}),
        ({"until": Timestamp(100)}, {"until": "1970-01-01T00:01:40Z"}),
        ({"until": Timestamp(100), "follow": True}, {"follow": True}),
        ({"from_file": True}, {}),
        ({"field_mask": ["IP", "l4"]}, {"number": 20, "field_mask": {"paths": ["IP", "l4"]}}),
        (
            {"whitelist": [{"verdict": ["DROPPED"]}], "blacklist": [{"protocol": ["udp"]}]},
            {
                "number": 20,
                "blacklist": [{"protocol": ["udp"]}],
                "whitelist": [{"verdict": ["DROPPED"]}],
            },
        ),
    ],
    ids=[
        "default-last-20",
        "follow-new-only",
        "follow-last",
        "first",
        "all",
        "since",
        "until",
        "until-ignored-following",
        "file-all",
        "field-mask",
        "lists",
    ],
)
def test_build_request(kwargs: dict[str, object], expected: dict[str, object]) -> None:
    base: dict[str, object] = {
        "last": 0,
        "first": 0,
        "all_": False,
        "follow": False,
        "since": None,
        "until": None,
        "from_file": False,
        "whitelist": [],
        "blacklist": [],
    }
    base.update(kwargs)
    assert build_request(**base) == expected  # type: ignore[arg-type]


# --- --input-file ----------------------------------------------------------------------------


def _fixture_lines() -> list[bytes]:
    return [line + b"\n" for line in FIXTURE.read_bytes().splitlines() if line]


def test_input_file_json_is_byte_identical() -> None:
    result = observe_file("-o", "json", "-s")
    assert result.exit_code == 0, result.output
    expected = b"".join(line for line in _fixture_lines() if b"node_status" not in line)
    assert result.stdout_bytes == expected


@pytest.mark.parametrize(
    ("args", "expected_uuids_or_summaries"),
    [
        (["--first", "2"], ["TCP Flags: SYN", "TCP Flags: SYN, ACK"]),
        (["--last", "1"], ["DNS Query deathstar.default.svc.cluster.local. A", "EVENTS LOST"]),
        (["--verdict", "DROPPED"], ["TCP Flags: SYN", "EVENTS LOST"]),
        (["-t", "l7"], ["HTTP/1.1 200 1ms", "DNS Query", "EVENTS LOST"]),
        (
            ["--not", "--type", "trace", "--not", "-t", "l7"],
            ["Policy denied", "policy-verdict", "EVENTS LOST"],
        ),
        (["--from-pod", "default/tiefighter", "--protocol", "udp"], ["DNS Query", "EVENTS LOST"]),
        (["-6"], ["(UDP)", "ICMPv6 EchoReply", "EVENTS LOST"]),
        (
            ["--since", "2026-11-26T12:00:05Z", "--until", "2026-11-26T12:00:06Z"],
            ["Policy denied", "policy-verdict"],
        ),
        (["--to-ip", "192.0.2.0/24"], ["ICMPv4 EchoRequest", "EVENTS LOST"]),
    ],
    ids=[
        "first",
        "last",
        "verdict",
        "type-l7",
        "not-types",
        "pod-and-proto",
        "ipv6",
        "time-window",
        "cidr",
    ],
)
def test_input_file_selection(args: list[str], expected_uuids_or_summaries: list[str]) -> None:
    result = observe_file("-s", *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected_uuids_or_summaries), result.stdout
    for line, needle in zip(lines, expected_uuids_or_summaries, strict=True):
        assert needle in line


@pytest.mark.parametrize("fmt", ["compact", "dict", "table", "json"])
def test_input_file_formats_match_printer_goldens(
    fmt: str, golden: Callable[[str, str], None]
) -> None:
    result = observe_file("-o", fmt, "--print-node-name")
    assert result.exit_code == 0, result.output
    golden(
        f"observe_input_{fmt}.txt",
        f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}",
    )


def test_input_file_color_and_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    colored = observe_file("--color", "always", "--first", "1")
    assert "\x1b[36m" in colored.stdout
    never = observe_file("--color", "never", "--first", "1")
    assert "\x1b" not in never.stdout
    assert "\x1b" not in observe_file("--first", "1").stdout  # auto: not a terminal
    monkeypatch.setattr("hubblectl.cli.observe._isatty", lambda stream: True)
    assert "\x1b[36m" in observe_file("--first", "1", env={"NO_COLOR": ""}).stdout
    assert "\x1b" not in observe_file("--first", "1", env={"NO_COLOR": "1"}).stdout
    assert (
        "\x1b[36m"
        in observe_file("--first", "1", "--color", "always", env={"NO_COLOR": "1"}).stdout
    )
    assert "\x1b" not in observe_file("--first", "1", "-o", "table").stdout


def test_input_file_stdin_bare_flows_and_camel_case() -> None:
    flow = orjson.loads(_fixture_lines()[5])["flow"]
    camel = {
        "flow": {**{k: v for k, v in flow.items() if k != "node_name"}, "nodeName": "n1"},
        "nodeName": "n1",
    }
    stdin = orjson.dumps(flow) + b"\n\n" + orjson.dumps(camel) + b"\n"
    result = run("observe", "--input-file", "-", "--print-node-name", "-o", "compact", stdin=stdin)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Nov 26 12:00:05.250 [default/node-a]: default/xwing:41400")
    assert lines[1].startswith("Nov 26 12:00:05.250 [n1]: default/xwing:41400")


def test_input_file_unknown_fields_warned_once(tmp_path: Path) -> None:
    lines = _fixture_lines()[:2]
    extra = [
        orjson.dumps(
            {
                **orjson.loads(line),
                "future_field": 1,
                "flow": {**orjson.loads(line)["flow"], "newer": True},
            }
        )
        + b"\n"
        for line in lines
    ]
    path = tmp_path / "future.json"
    path.write_bytes(b"".join(extra))
    result = run("observe", "--input-file", str(path), "-o", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning:") == 1
    assert f"{path}:1" in result.stderr and "future_field" in result.stderr
    out = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert out == [orjson.loads(line) for line in lines]  # unknown fields dropped


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b'{"flow":{}}\n{"flow": {\n', ":2: not valid JSON"),
        (b"\n\n[1,2]\n", ":3: expected a JSON object"),
    ],
    ids=["truncated", "array"],
)
def test_input_file_malformed_line_names_file_and_line(
    tmp_path: Path, content: bytes, where: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = run("observe", "--input-file", str(path))
    assert isinstance(result.exception, InputError)
    assert f"{path}{where}" in str(result.exception)


def test_input_file_missing() -> None:
    result = run("observe", "--input-file", "/nonexistent/flows.json")
    assert isinstance(result.exception, InputError)
    assert "/nonexistent/flows.json" in str(result.exception)


# --- help ------------------------------------------------------------------------------------


def test_observe_help_golden(golden: Callable[[str, str], None]) -> None:
    result = run("observe", "--help")
    assert result.exit_code == 0
    golden("observe_help.txt", result.output)
