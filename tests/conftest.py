"""Shared test plumbing.

Privileged tests (marker ``privileged``) need root, bpffs, clang-built BPF objects and
network namespaces. Without them they skip, unless HUBBLECTL_REQUIRE_BPF=1 (set by
.ci/run), which turns every missing capability into a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REQUIRE_BPF = os.environ.get("HUBBLECTL_REQUIRE_BPF") == "1"


def _privilege_problem() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if not Path("/sys/fs/bpf").is_dir():
        return "/sys/fs/bpf missing"
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"], check=False).returncode != 0:
        rc = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=False).returncode
        if rc != 0:
            return "bpffs not mounted and mount failed"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "no kernel BTF at /sys/kernel/btf/vmlinux"
    return None


@pytest.fixture(scope="session")
def privileged_env() -> None:
    problem = _privilege_problem()
    if problem is None:
        return
    if REQUIRE_BPF:
        pytest.fail(f"privileged test cannot run: {problem} (HUBBLECTL_REQUIRE_BPF=1)")
    pytest.skip(f"privileged test skipped: {problem}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "privileged" in str(item.path):
            item.add_marker(pytest.mark.privileged)
        if item.get_closest_marker("privileged") is not None:
            item.fixturenames.insert(0, "privileged_env")


@pytest.fixture(scope="session")
def bpf_build_dir(privileged_env: None) -> Path:
    """The compiled BPF objects, built with `make -C bpf` if missing or stale; the agent's
    native ingest library (`make -C native`) is built with them."""
    out = REPO / "bpf" / "build"
    for d in ("bpf", "native"):
        res = subprocess.run(["make", "-s", "-C", str(REPO / d)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"make -C {d} failed:\n{res.stdout}\n{res.stderr}")
    return out


@pytest.fixture(scope="session")
def fixture_responses() -> list[dict[str, object]]:
    """GetFlowsResponse dicts (Hubble JSON shape) from tests/fixtures/flows.jsonl."""
    import orjson

    return [orjson.loads(line) for line in (FIXTURES / "flows.jsonl").read_bytes().splitlines() if line]
