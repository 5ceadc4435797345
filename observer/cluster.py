"""Node registry for several agents on one machine (or sharing a directory).

Each agent writes `<cluster-dir>/<node>.json` ({name, address, tls_server_name}) when it
starts serving and removes it when it stops; its Peer service announces every node found in
the directory, so a relay pointed at any one agent's Peer service discovers them all. Without
a cluster dir an agent announces only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    address: str
    tls_server_name: str = ""


class ClusterDirectory:
    """PeerSource over a directory of node records (this node always included)."""

    def __init__(self, directory: str | None, me: NodeRecord, poll_s: float = POLL_S) -> None:
        self._dir = Path(directory) if directory else None
        self._me = me
        self._poll_s = poll_s

    def _path(self, name: str) -> Path:
        assert self._dir is not None
        return self._dir / (name.replace("/", "_") + ".json")

    def register(self) -> None:
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._path(self._me.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"name": self._me.name, "address": self._me.address,
                                   "tls_server_name": self._me.tls_server_name}))
        os.replace(tmp, path)

    def unregister(self) -> None:
        if self._dir is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path(self._me.name).unlink()

    def peers(self) -> list[NodeRecord]:
        nodes = {self._me.name: self._me}
        if self._dir is not None and self._dir.is_dir():
            for f in sorted(self._dir.glob("*.json")):
                try:
                    doc = json.loads(f.read_text())
                    rec = NodeRecord(str(doc["name"]), str(doc["address"]), str(doc.get("tls_server_name", "")))
                except (OSError, ValueError, KeyError, TypeError) as err:
                    log.debug("ignoring node record %s: %s", f, err)
                    continue
                nodes.setdefault(rec.name, rec)
        return [nodes[n] for n in sorted(nodes)]

    async def wait_changed(self) -> None:
        """Return when the set of nodes changed (polls the directory)."""
        before = self.peers()
        while True:
            await asyncio.sleep(self._poll_s)
            if self.peers() != before:
                return
