from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from observer.errors import ConfigError
from observer.metrics import AgentMetrics, make_registry, parse_address


def test_counters_render_with_hubble_names() -> None:
    m = AgentMetrics()
    m.flows[("Trace", "to-endpoint", "FORWARDED")] += 3
    m.drops[("POLICY_DENIED", "TCP")] += 2
    m.lost["perf_event_ring_buffer"] += 7
    m.decode_errors = 1
    m.store_size = lambda: (10, 65535)
    text = generate_latest(make_registry(m)).decode()
    assert 'hubble_flows_processed_total{subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 3.0' in text
    assert 'hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 2.0' in text
    assert 'hubble_lost_events_total{source="perf_event_ring_buffer"} 7.0' in text
    assert 'hubble_lost_events_total{source="hubble_ring_buffer"} 0.0' in text
    assert "hubblectl_decode_errors_total 1.0" in text
    assert "hubblectl_flow_store_capacity 65535.0" in text


@pytest.mark.parametrize(
    ("text", "want"),
    [(":9965", ("0.0.0.0", 9965)), ("127.0.0.1:9965", ("127.0.0.1", 9965)), ("[::1]:9965", ("::1", 9965))],
    ids=["port-only", "ipv4", "ipv6"],
)
def test_parse_address(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["9965", "host:", ":0", ":99999", "a:b"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--metrics-address"):
        parse_address(text)
