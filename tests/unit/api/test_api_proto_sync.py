"""The checked-in generated modules match the protos, and import cleanly from anywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
GEN = REPO / "scripts" / "gen_proto.py"
GENERATED = REPO / "observer" / "api" / "v1"


def run_gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GEN), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_checked_in_code_is_current() -> None:
    res = run_gen("--check")
    assert res.returncode == 0, res.stderr
    assert "up to date" in res.stdout


def test_check_names_changed_missing_and_stale_files(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(GENERATED, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "flow" / "flow_pb2.py").open("a") as f:
        f.write("# edited\n")
    (copy / "peer" / "peer_pb2_grpc.pyi").unlink()
    (copy / "relay" / "gone_pb2.py").write_text("")

    res = run_gen("--check", "--target", str(copy))

    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert f"  differs: {copy / 'flow' / 'flow_pb2.py'}" in lines
    assert f"  missing: {copy / 'peer' / 'peer_pb2_grpc.pyi'}" in lines
    assert f"  stale:   {copy / 'relay' / 'gone_pb2.py'}" in lines
    assert len([ln for ln in lines if ln.startswith("  ")]) == 3


def test_regenerating_into_a_directory_repairs_it(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(GENERATED, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "observer" / "observer_pb2.py").write_text("broken\n")
    (copy / "relay" / "gone_pb2.py").write_text("")

    assert run_gen("--target", str(copy)).returncode == 0

    assert run_gen("--check", "--target", str(copy)).returncode == 0
    assert not (copy / "relay" / "gone_pb2.py").exists()


@pytest.mark.parametrize(
    ("module", "files"),
    [
        ("observer.api.v1.flow.flow_pb2", ["flow/flow.proto"]),
        ("observer.api.v1.observer.observer_pb2", ["observer/observer.proto", "flow/flow.proto"]),
        ("observer.api.v1.observer.observer_pb2_grpc", ["observer/observer.proto"]),
        ("observer.api.v1.peer.peer_pb2_grpc", ["peer/peer.proto"]),
        ("observer.api.v1.relay.relay_pb2", ["relay/relay.proto"]),
        (
            "observer.api.v1.hubblectl.agent_pb2_grpc",
            ["hubblectl/agent.proto", "relay/relay.proto"],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_imports_from_another_cwd_without_top_level_proto_modules(
    module: str, files: list[str], tmp_path: Path
) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "from google.protobuf import descriptor_pool as dp\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in\n"
        "             ('flow', 'relay', 'peer', 'hubblectl')))\n"
        f"for name in {files!r}:\n"
        "    print(dp.Default().FindFileByName(name).name)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["[]", *files]


def test_generated_classes_live_in_the_package() -> None:
    from observer.api.v1.flow import flow_pb2
    from observer.api.v1.observer import observer_pb2

    assert flow_pb2.Flow.__module__ == "observer.api.v1.flow.flow_pb2"
    assert observer_pb2.GetFlowsResponse.__module__ == "observer.api.v1.observer.observer_pb2"
