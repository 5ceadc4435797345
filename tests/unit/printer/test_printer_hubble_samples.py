"""Hubble's own expected printer output (reference §7, from hubble/pkg/printer tests) as a
table: the same flow through each format must give these strings exactly."""

from __future__ import annotations

import io
from typing import Any

import pytest

from hubblectl.printer import make_printer
from hubblectl.printer.options import PrinterOptions

# time 1234.5678 s, node k8s1, DROPPED, 1.1.1.1:31793 -> 2.2.2.2:8080, identities 4 -> 12345,
# drop 133, Summary "TCP Flags: SYN", is_reply=false.
FLOW: dict[str, Any] = {
    "time": "1970-01-01T00:20:34.567800Z",
    "verdict": "DROPPED",
    "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
    "l4": {"TCP": {"source_port": 31793, "destination_port": 8080}},
    "source": {"identity": 4},
    "destination": {"identity": 12345},
    "Type": "L3_L4",
    "node_name": "k8s1",
    "event_type": {"type": 1, "sub_type": 133},
    "is_reply": False,
    "Summary": "TCP Flags: SYN",
}
KAFKA_ESCAPED = {
    **FLOW,
    "Type": "L7",
    "l7": {
        "type": "REQUEST",
        "latency_ns": "10",
        "kafka": {"api_key": "1234", "topic": "my-topic\x1b[30mblack\x1b[0m\x1b\r"},
    },
    "Summary": "Kafka request 1234 correlation id 1 topic 'my-topic\x1b[30mblack\x1b[0m\x1b\r'",
}


def _variant(**changes: Any) -> dict[str, Any]:
    flow = {**FLOW, **changes}
    return {k: v for k, v in flow.items() if v is not None}


def render(fmt: str, flow: dict[str, Any], **opts: Any) -> str:
    out = io.StringIO()
    printer = make_printer(fmt, PrinterOptions(**opts), out, io.StringIO())
    printer.write({"flow": flow})
    printer.close()
    return out.getvalue()


ESCAPED_SUMMARY = "Kafka request 1234 correlation id 1 topic 'my-topic^[[30mblack^[[0m^[\\r'"

CASES = [
    (
        "tabular",
        "table",
        FLOW,
        {},
        "TIMESTAMP             SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\n"
        "Jan  1 00:20:34.567   1.1.1.1:31793   2.2.2.2:8080   Policy denied   DROPPED   TCP Flags: SYN\n",
    ),
    (
        "tabular-with-node",
        "table",
        FLOW,
        {"print_node_name": True},
        "TIMESTAMP             NODE   SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\n"
        "Jan  1 00:20:34.567   k8s1   1.1.1.1:31793   2.2.2.2:8080   Policy denied   DROPPED   TCP Flags: SYN\n",
    ),
    (
        "tabular-terminal-escaped",
        "table",
        KAFKA_ESCAPED,
        {},
        "TIMESTAMP             SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\n"
        f"Jan  1 00:20:34.567   1.1.1.1:31793   2.2.2.2:8080   kafka-request   DROPPED   {ESCAPED_SUMMARY}\n",
    ),
    (
        "compact",
        "compact",
        FLOW,
        {},
        "Jan  1 00:20:34.567: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n",
    ),
    (
        "compact-with-node",
        "compact",
        FLOW,
        {"print_node_name": True},
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n",
    ),
    (
        "compact-reply",
        "compact",
        _variant(is_reply=True),
        {"print_node_name": True},
        "Jan  1 00:20:34.567 [k8s1]: 2.2.2.2:8080 (ID:12345) <- 1.1.1.1:31793 (health) Policy denied DROPPED (TCP Flags: SYN)\n",
    ),
    (
        "compact-policy-verdict-denied",
        "compact",
        _variant(event_type={"type": 5}, is_reply=None, traffic_direction="EGRESS"),
        {"print_node_name": True},
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS DENIED (TCP Flags: SYN)\n",
    ),
    (
        "compact-direction-unknown",
        "compact",
        _variant(is_reply=None),
        {"print_node_name": True},
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n",
    ),
    (
        "compact-terminal-escaped",
        "compact",
        KAFKA_ESCAPED,
        {},
        f"Jan  1 00:20:34.567: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) kafka-request DROPPED ({ESCAPED_SUMMARY})\n",
    ),
    (
        "compact-terminal-escaped-colored",
        "compact",
        KAFKA_ESCAPED,
        {"color": True},
        "Jan  1 00:20:34.567: \x1b[36m1.1.1.1:\x1b[33m31793\x1b[0m\x1b[0m \x1b[35m(health)\x1b[0m -> "
        "\x1b[36m2.2.2.2:\x1b[33m8080\x1b[0m\x1b[0m \x1b[35m(ID:12345)\x1b[0m "
        f"kafka-request \x1b[31mDROPPED\x1b[0m ({ESCAPED_SUMMARY})\n",
    ),
    (
        "dict",
        "dict",
        FLOW,
        {},
        "  TIMESTAMP: Jan  1 00:20:34.567\n     SOURCE: 1.1.1.1:31793\nDESTINATION: 2.2.2.2:8080\n"
        "       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n",
    ),
    (
        "dict-with-node",
        "dict",
        FLOW,
        {"print_node_name": True},
        "  TIMESTAMP: Jan  1 00:20:34.567\n       NODE: k8s1\n     SOURCE: 1.1.1.1:31793\nDESTINATION: 2.2.2.2:8080\n"
        "       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n",
    ),
    (
        "jsonpb",
        "jsonpb",
        FLOW,
        {},
        '{"flow":{"time":"1970-01-01T00:20:34.567800Z","verdict":"DROPPED","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},'
        '"l4":{"TCP":{"source_port":31793,"destination_port":8080}},"source":{"identity":4},"destination":{"identity":12345},'
        '"Type":"L3_L4","node_name":"k8s1","event_type":{"type":1,"sub_type":133},"is_reply":false,"Summary":"TCP Flags: SYN"}}\n',
    ),
]


@pytest.mark.parametrize(
    ("fmt", "flow", "opts", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hubble_sample(fmt: str, flow: dict[str, Any], opts: dict[str, Any], expected: str) -> None:
    assert render(fmt, flow, **opts) == expected


def test_lost_event_renderings() -> None:
    response = {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "1", "cpu": 5}}
    out = io.StringIO()
    for fmt, expected in [
        ("compact", "N/A EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1\n"),
        (
            "table",
            "TIMESTAMP   SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\n"
            "N/A         HUBBLE_RING_BUFFER                 EVENTS LOST             CPU(5) - 1\n",
        ),
        (
            "dict",
            "  TIMESTAMP: N/A\n     SOURCE: HUBBLE_RING_BUFFER\n       TYPE: EVENTS LOST\n"
            "    VERDICT: \n    SUMMARY: CPU(5) - 1\n",
        ),
        ("json", '{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"1","cpu":5}}\n'),
    ]:
        out = io.StringIO()
        printer = make_printer(fmt, PrinterOptions(), out, io.StringIO())
        printer.write(response)
        printer.close()
        assert out.getvalue() == expected, fmt


def test_lost_event_window() -> None:
    response = {
        "lost_events": {
            "source": "OBSERVER_EVENTS_QUEUE",
            "num_events_lost": "7",
            "first": "2026-01-01T00:00:01Z",
            "last": "2026-01-01T00:00:02.5Z",
        },
        "time": "2026-01-01T00:00:03Z",
    }
    out = io.StringIO()
    printer = make_printer("compact", PrinterOptions(), out, io.StringIO())
    printer.write(response)
    assert out.getvalue() == (
        "Jan  1 00:00:03.000 EVENTS LOST: OBSERVER_EVENTS_QUEUE CPU(0) 7 "
        "(first: Jan  1 00:00:01.000, last: Jan  1 00:00:02.500)\n"
    )
