"""Fixtures for the policy tests.

* ``pdp``: the datapath object loaded under a private pin root, for BPF_PROG_TEST_RUN
  tests of the verdict logic (policy_bpf_harness.py).
* ``agent`` / ``make_agent``: a real ``hubblectl agent`` subprocess with its own state dir,
  socket, pin root, netns prefix and pod ranges (10.246-10.249.x.0/24, fd00:246::-
  fd00:249::), torn down completely afterwards: endpoints, netns, veths, pins, process
  (policy_agent_harness.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from policy_agent_harness import PolicyAgent
from policy_bpf_harness import PolicyDatapath, new_pin_root


@pytest.fixture
def pin_root(privileged_env: None) -> Iterator[Path]:
    root = new_pin_root()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        assert not root.exists(), f"could not remove {root}"


@pytest.fixture
def pdp(bpf_build_dir: Path, pin_root: Path) -> Iterator[PolicyDatapath]:
    dp = PolicyDatapath(bpf_build_dir / "datapath.o", pin_root)
    try:
        yield dp
    finally:
        dp.close()


@pytest.fixture
def make_agent(
    privileged_env: None, bpf_build_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., PolicyAgent]]:
    made: list[PolicyAgent] = []

    def make(*extra: str, start: bool = True) -> PolicyAgent:
        a = PolicyAgent(tmp_path, extra=extra)
        made.append(a)
        if start:
            a.start()
        return a

    try:
        yield make
    finally:
        errors = []
        for a in made:
            try:
                a.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def agent(make_agent: Callable[..., PolicyAgent]) -> PolicyAgent:
    return make_agent()
