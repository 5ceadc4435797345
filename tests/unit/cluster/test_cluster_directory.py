from __future__ import annotations

import asyncio
from pathlib import Path

from observer.cluster import ClusterDirectory, NodeRecord


def test_nodes_register_and_see_each_other(tmp_path: Path) -> None:
    a = ClusterDirectory(str(tmp_path), NodeRecord("default/a", "127.0.0.1:4244"))
    b = ClusterDirectory(str(tmp_path), NodeRecord("default/b", "127.0.0.1:14244", "b.default.hubble-grpc.cilium.io"))
    assert [p.name for p in a.peers()] == ["default/a"]
    a.register()
    b.register()
    assert a.peers() == b.peers()
    assert [p.name for p in a.peers()] == ["default/a", "default/b"]
    assert a.peers()[1].tls_server_name == "b.default.hubble-grpc.cilium.io"
    b.unregister()
    assert [p.name for p in a.peers()] == ["default/a"]


def test_without_a_directory_only_this_node(tmp_path: Path) -> None:
    me = NodeRecord("default/solo", "unix:///x.sock")
    c = ClusterDirectory(None, me)
    c.register()
    assert c.peers() == [me]
    assert list(tmp_path.iterdir()) == []


def test_corrupt_records_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "partial.json").write_text('{"name": "x"}')
    c = ClusterDirectory(str(tmp_path), NodeRecord("default/a", "a:1"))
    assert [p.name for p in c.peers()] == ["default/a"]


def test_wait_changed_returns_when_a_node_joins(tmp_path: Path) -> None:
    a = ClusterDirectory(str(tmp_path), NodeRecord("default/a", "a:1"), poll_s=0.01)
    b = ClusterDirectory(str(tmp_path), NodeRecord("default/b", "b:1"))

    async def scenario() -> None:
        waiter = asyncio.create_task(a.wait_changed())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        b.register()
        await asyncio.wait_for(waiter, 2)

    asyncio.run(scenario())
