"""Hubble's peer.Peer service: announces the nodes this agent knows.

A node is announced on connect (PEER_ADDED), and changes are streamed as they happen.
Nodes come from a `PeerSource`: this node itself, plus any nodes registered in a shared
cluster directory (several agents on one machine, see observer/cluster.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import grpc

from observer.api.v1.peer import peer_pb2, peer_pb2_grpc


class PeerRecord(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def tls_server_name(self) -> str: ...


class PeerSource(Protocol):
    def peers(self) -> Sequence[PeerRecord]: ...

    async def wait_changed(self) -> None: ...


class PeerServicer(peer_pb2_grpc.PeerServicer):
    def __init__(self, source: PeerSource) -> None:
        self._source = source

    async def Notify(
        self, request: peer_pb2.NotifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[peer_pb2.ChangeNotification]:
        known: dict[str, tuple[str, str]] = {}
        while True:
            current = {p.name: (p.address, p.tls_server_name) for p in self._source.peers()}
            for name, (addr, sn) in sorted(current.items()):
                if name not in known:
                    kind = peer_pb2.PEER_ADDED
                elif known[name] != (addr, sn):
                    kind = peer_pb2.PEER_UPDATED
                else:
                    continue
                note = peer_pb2.ChangeNotification(name=name, address=addr, type=kind)
                if sn:
                    note.tls.server_name = sn
                yield note
            for name in sorted(set(known) - set(current)):
                yield peer_pb2.ChangeNotification(
                    name=name, address=known[name][0], type=peer_pb2.PEER_DELETED
                )
            known = current
            try:
                await self._source.wait_changed()
            except asyncio.CancelledError:
                return
