"""Hubble Relay: one Observer API over many nodes.

    pool.py    peers (static or from the Peer service), a channel each, state, backoff
    merge.py   the pure time-ordered merge (runs per node, a drain window), ``number`` semantics
    lines.py   the nodes' lines kept inside their FlowBatch messages, named by ids; the merged
               output written from them in one pass (native/hbwire.c, with a Python fallback)
    (observer/api/wire.py: FlowBatch encoded and decoded without the protobuf runtime's copies)
    status.py  ServerStatus / GetNodes / node-status events from the nodes' reports (pure)
    server.py  the servicers, the per-request ``FlowSession`` and the ``Relay`` process

See docs/relay.md for the behaviour and the flags.
"""

from __future__ import annotations

from observer.relay.merge import MergeStats, TimeMerger, parse_rfc3339_ns, response_time_ns
from observer.relay.pool import PeerPool, PeerSpec, PoolOptions, UpstreamTLS, parse_static_peer
from observer.relay.server import Relay, RelayConfig

__all__ = [
    "MergeStats",
    "PeerPool",
    "PeerSpec",
    "PoolOptions",
    "Relay",
    "RelayConfig",
    "TimeMerger",
    "UpstreamTLS",
    "parse_rfc3339_ns",
    "parse_static_peer",
    "response_time_ns",
]
