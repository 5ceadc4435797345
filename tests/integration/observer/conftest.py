"""Fixtures for the Observer API integration tests (see observer_harness.py for the server).

* ``named_server``: one server per test module over the fixture flows plus a "rich" flow
  (``named_responses()``), for read-only tests. Tests that set its ``clock_ns`` restore it.
* ``make_harness``: a factory for servers a test fills (and appends to) itself; each is
  stopped at teardown, whatever happened.
* ``make_client``: clients (sync channels, one per target and options), closed at the end of
  the test (before the servers it made stop, so no GOAWAY noise).
* ``stream``: parametrizes a test over the standard and the batched stream.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from observer_harness import (
    STREAMS,
    ObserverClient,
    ObserverHarness,
    named_responses,
)


@pytest.fixture(scope="module")
def named_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObserverHarness]:
    harness = ObserverHarness(tmp_path_factory.mktemp("obs"), capacity=4095)
    try:
        harness.start(named_responses().values())
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def make_harness(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ObserverHarness]]:
    started: list[ObserverHarness] = []

    def make(responses: Iterable[Mapping[str, Any] | bytes] = (), **kwargs: Any) -> ObserverHarness:
        harness = ObserverHarness(tmp_path_factory.mktemp("obs"), **kwargs)
        started.append(harness)
        return harness.start(responses)

    try:
        yield make
    finally:
        for harness in started:
            harness.stop()


@pytest.fixture
def make_client() -> Iterator[Callable[..., ObserverClient]]:
    clients: dict[tuple[str, tuple[tuple[str, Any], ...]], ObserverClient] = {}

    def make(target: str, options: Iterable[tuple[str, Any]] = ()) -> ObserverClient:
        key = (target, tuple(options))
        if key not in clients:
            clients[key] = ObserverClient(target, key[1])
        return clients[key]

    try:
        yield make
    finally:
        for client in clients.values():
            client.close()


@pytest.fixture(params=STREAMS)
def stream(request: pytest.FixtureRequest) -> str:
    return str(request.param)
