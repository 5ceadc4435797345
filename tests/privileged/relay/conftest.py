"""Fixtures for the multi-node relay tests: real agents on this machine, relays over them.

* ``cluster``: three agents (node-a, node-b, node-c) per test module, plaintext TCP on
  127.0.0.1 plus a shared ``--cluster-dir``; each with ``default/client`` and
  ``default/server`` and some traffic between them. Everything is removed at the end of the
  module, even when a test or the setup fails (multinode_harness.Cluster.close).
* ``tls_cluster``: the same with mutual TLS: certificates from ``hubblectl certs``, each agent
  serving TLS with its node certificate and requiring client certificates from the CA.
* ``make_relay``: ``hubblectl relay`` subprocesses, stopped at the end of the test;
  ``make_follow``: ``hubblectl observe --follow`` subprocesses, ended at the end of the test.

The agent harness (tests/privileged/agent/agent_harness.py) and the Hubble CLI emulation
(tests/integration/observer/test_observer_hubble_compat.py) are imported from their
directories, not copied.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[2]
for _dir in (_TESTS / "privileged" / "agent", _TESTS / "integration" / "observer"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

from multinode_harness import Certs, Cluster, FollowStream, RelayProcess  # noqa: E402

NODES = ("node-a", "node-b", "node-c")


@pytest.fixture(scope="module")
def cluster(
    privileged_env: None, bpf_build_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("relay"), NODES)
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def tls_cluster(
    privileged_env: None, bpf_build_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("relay-tls")
    c = Cluster(tmp, NODES, certs=Certs.make(tmp / "certs", NODES))
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture
def make_relay(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    made: list[RelayProcess] = []

    def make(*args: str, client_flags: tuple[str, ...] = ()) -> RelayProcess:
        relay = RelayProcess(tmp_path, *args, client_flags=client_flags)
        made.append(relay)
        return relay.start()

    try:
        yield make
    finally:
        for relay in made:
            relay.stop()


@pytest.fixture
def make_follow() -> Iterator[Callable[[RelayProcess], FollowStream]]:
    made: list[FollowStream] = []

    def make(relay: RelayProcess, *args: str) -> FollowStream:
        stream = relay.follow(*args)
        made.append(stream)
        return stream

    try:
        yield make
    finally:
        for stream in made:
            stream.close()
