"""Prometheus metrics with Hubble's names, served on --metrics-address (Hubble's port 9965).

The hot path only bumps plain integers (a dict keyed by label values); a custom collector
turns them into metric families at scrape time, so ingest pays ~0.1 us per event instead of
a prometheus_client label lookup.

Families (Hubble's names where Hubble has one):
  hubble_flows_processed_total{type,subtype,verdict}
  hubble_drop_total{reason,protocol}
  hubble_lost_events_total{source}
  hubblectl_decode_errors_total
  hubblectl_flow_store_flows / hubblectl_flow_store_capacity
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from observer.errors import ConfigError


@dataclass
class AgentMetrics:
    """Counters the agent bumps; read at scrape time."""

    flows: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    drops: Counter[tuple[str, str]] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    decode_errors: int = 0
    store_size: Callable[[], tuple[int, int]] = lambda: (0, 0)


class _Collector(Collector):
    def __init__(self, m: AgentMetrics) -> None:
        self._m = m

    def collect(self) -> Iterator[Metric]:
        m = self._m
        flows = CounterMetricFamily(
            "hubble_flows_processed", "Total number of flows processed", labels=["type", "subtype", "verdict"]
        )
        for (typ, sub, verdict), n in sorted(m.flows.items()):
            flows.add_metric([typ, sub, verdict], n)
        yield flows
        drops = CounterMetricFamily("hubble_drop", "Number of drops", labels=["reason", "protocol"])
        for (reason, proto), n in sorted(m.drops.items()):
            drops.add_metric([reason, proto], n)
        yield drops
        lost = CounterMetricFamily("hubble_lost_events", "Number of lost events", labels=["source"])
        for source in ("perf_event_ring_buffer", "observer_events_queue", "hubble_ring_buffer"):
            lost.add_metric([source], m.lost.get(source, 0))
        yield lost
        yield CounterMetricFamily(
            "hubblectl_decode_errors", "Ring-buffer records that could not be decoded", value=m.decode_errors
        )
        size, cap = m.store_size()
        yield GaugeMetricFamily("hubblectl_flow_store_flows", "Flows in the history", value=size)
        yield GaugeMetricFamily("hubblectl_flow_store_capacity", "Flow history capacity", value=cap)


def make_registry(m: AgentMetrics) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(m))
    return reg


def parse_address(address: str) -> tuple[str, int]:
    """`:9965`, `0.0.0.0:9965`, `[::1]:9965` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--metrics-address: {address!r} is not HOST:PORT (e.g. :9965)")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(address: str, m: AgentMetrics) -> None:
    """Serve /metrics on a background thread."""
    host, port = parse_address(address)
    try:
        start_http_server(port, addr=host, registry=make_registry(m))
    except OSError as err:
        raise ConfigError(f"--metrics-address {address}: {err.strerror or err}") from err
