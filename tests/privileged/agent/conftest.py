from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import Agent


@pytest.fixture()
def agent(privileged_env: None, bpf_build_dir: Path, tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path)
    try:
        a.start()
        yield a
    finally:
        a.close()


@pytest.fixture()
def make_agent(privileged_env: None, bpf_build_dir: Path, tmp_path: Path) -> Iterator[object]:
    made: list[Agent] = []

    def make(*extra: str, subnet: int | None = None, start: bool = True) -> Agent:
        a = Agent(tmp_path, subnet=subnet, extra=extra)
        made.append(a)
        if start:
            a.start()
        return a

    try:
        yield make
    finally:
        for a in made:
            a.close()
