"""The relay's line table, native and Python fallback, end to end: the same merged lines
(byte for byte) through a real relay over real fake nodes, for every request shape."""

from __future__ import annotations

from typing import Any

import pytest

from observer.relay import server
from observer.relay.lines import LineTable, load_functions

from .conftest import FLOWS_PER_NODE, Cluster

needs_native = pytest.mark.skipif(load_functions() is None, reason="native/build/libhbflow.so not built")


def _lines(cluster: Cluster, request: dict[str, Any]) -> list[bytes]:
    with cluster.client() as client:
        return [line for chunk in client.get_flows(request) for line in chunk.splitlines()]


@needs_native
@pytest.mark.parametrize(
    "request_",
    [
        pytest.param({}, id="all"),
        pytest.param({"number": 7}, id="last-7"),
        pytest.param({"number": 7, "first": True}, id="first-7"),
    ],
)
def test_native_and_python_tables_send_the_same_lines(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, request_: dict[str, Any]
) -> None:
    native = _lines(cluster, request_)
    made: list[LineTable] = []

    def python_table() -> LineTable:
        made.append(LineTable(native=False))
        return made[-1]

    monkeypatch.setattr(server, "LineTable", python_table)
    python = _lines(cluster, request_)
    assert made and not any(table.native for table in made)
    # node-status events carry the time they were sent: compare flows byte for byte
    flows_native = [line for line in native if line.startswith(b'{"flow"')]
    flows_python = [line for line in python if line.startswith(b'{"flow"')]
    assert flows_native == flows_python
    expected = 3 * FLOWS_PER_NODE if not request_ else 7
    assert len(flows_native) == expected
    assert len(native) - len(flows_native) == len(python) - len(flows_python) == 1  # NODE_CONNECTED
