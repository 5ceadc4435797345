"""Drop reason tables: proto names and monitor texts."""

from __future__ import annotations

import pytest

from observer.parser.dropreasons import (
    DROP_REASON_CODES,
    DROP_REASON_NAMES,
    DROP_REASON_TEXTS,
    drop_reason_name,
    drop_reason_text,
)

from .protocheck import proto_available


@pytest.mark.parametrize(
    ("code", "name", "text"),
    [
        (0, "DROP_REASON_UNKNOWN", "Success"),
        (3, "3", "Interface"),
        (130, "INVALID_SOURCE_MAC", "Invalid source mac"),
        (133, "POLICY_DENIED", "Policy denied"),
        (136, "CT_MISSING_TCP_ACK_FLAG", "Fragmentation needed"),
        (159, "159", "159"),
        (161, "FAILED_TO_INSERT_INTO_PROXYMAP", "NAT 46/64 not enabled"),
        (181, "POLICY_DENY", "Policy denied by denylist"),
        (205, "DROP_PUNT_PROXY", "Punt to proxy"),
        (250, "250", "250"),
    ],
    ids=lambda v: str(v),
)
def test_lookup(code: int, name: str, text: str) -> None:
    assert drop_reason_name(code) == name
    assert drop_reason_text(code) == text


def test_tables_are_consistent() -> None:
    assert len(DROP_REASON_NAMES) == 76
    assert set(DROP_REASON_NAMES) <= set(DROP_REASON_TEXTS)
    assert set(range(2, 16)) <= set(DROP_REASON_TEXTS)
    assert all(DROP_REASON_CODES[n] == c for c, n in DROP_REASON_NAMES.items())


def test_names_match_the_generated_proto_enum() -> None:
    if not proto_available():
        pytest.skip("observer/api/v1 generated code not importable yet")
    from observer.api.v1.flow import flow_pb2

    proto = {v.number: v.name for v in flow_pb2.DropReason.DESCRIPTOR.values}
    assert proto == dict(DROP_REASON_NAMES)
