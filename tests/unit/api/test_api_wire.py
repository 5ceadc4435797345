"""observer.api.wire: FlowBatch encoded and decoded by hand, checked against the generated
protobuf message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.api.v1.hubblectl import agent_pb2
from observer.api.wire import (
    WireError,
    decode_flow_batch,
    encode_flow_batch,
    encode_flow_batches,
    encode_line_parts,
)

# JSON-ish lines: no newline inside, never empty
LINES = st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=30)
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)


def _reference(lines: list[bytes], times: list[int]) -> bytes:
    return agent_pb2.FlowBatch(
        json_lines=b"".join(line + b"\n" for line in lines), count=len(lines), times_ns=times
    ).SerializeToString()


@settings(max_examples=300, deadline=None)
@given(lines=LINES, data=st.data())
def test_encode_is_what_protobuf_serializes(lines: list[bytes], data: st.DataObject) -> None:
    times = data.draw(st.one_of(st.just([]), st.lists(INT64, min_size=len(lines), max_size=len(lines))))
    if not lines:
        times = []
    assert encode_flow_batch(lines, times) == _reference(lines, times)


@settings(max_examples=200, deadline=None)
@given(lines=LINES, data=st.data())
def test_line_parts_encode_like_the_lines(lines: list[bytes], data: st.DataObject) -> None:
    """Parts may hold several lines (a whole sealed store block): the same message."""
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(lines) - 1)), max_size=5)))
    parts = [b"\n".join(lines[a:b]) for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    parts = [p for p in parts if p]
    times = data.draw(st.lists(INT64, min_size=len(lines), max_size=len(lines)))
    if not lines:
        times = []
    assert encode_line_parts(parts, len(lines), times) == _reference(lines, times)


@settings(max_examples=300, deadline=None)
@given(lines=LINES, data=st.data())
def test_decode_gives_the_lines_and_times(lines: list[bytes], data: st.DataObject) -> None:
    """Packed times are binary and hold newline bytes often: the lines must not pick them up."""
    times = data.draw(st.lists(INT64, min_size=len(lines), max_size=len(lines)))
    batch = decode_flow_batch(_reference(lines, times))
    assert batch.lines() == lines
    assert batch.times_ns == times
    assert batch.count == len(lines)
    assert batch.json_lines == b"".join(line + b"\n" for line in lines)


def test_decode_accepts_any_field_order_unpacked_times_and_unknown_fields() -> None:
    def varint(v: int) -> bytes:
        out = bytearray()
        while v > 0x7F:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
        return bytes(out)

    lines = b'{"a":1}\n{"b":2}\n'
    msg = (
        b"\x10" + varint(2)  # count first
        + b"\x19" + (10).to_bytes(8, "little", signed=True)  # times_ns unpacked (wire type 1)
        + b"\x19" + (-3).to_bytes(8, "little", signed=True)
        + b"\x3a" + varint(3) + b"\n\nx"  # unknown field 7, length-delimited, with newlines
        + b"\x0a" + varint(len(lines)) + lines  # json_lines after the others
        + b"\x30" + varint(300)  # unknown varint field 6
    )
    parsed = agent_pb2.FlowBatch.FromString(msg)
    batch = decode_flow_batch(msg)
    assert batch.lines() == [b'{"a":1}', b'{"b":2}']
    assert batch.json_lines == parsed.json_lines
    assert batch.times_ns == list(parsed.times_ns) == [10, -3]
    assert batch.count == parsed.count == 2


def test_decode_last_json_lines_wins_and_unterminated_lines() -> None:
    msg = b"\x0a\x02x\n" + b"\x0a\x03a\nb"
    assert agent_pb2.FlowBatch.FromString(msg).json_lines == b"a\nb"
    batch = decode_flow_batch(msg)
    assert batch.json_lines == b"a\nb"
    assert batch.lines() == [b"a", b"b"]
    assert decode_flow_batch(b"").lines() == []


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        pytest.param(b"\x0a\x05ab", "truncated field", id="short-bytes"),
        pytest.param(b"\x10", "truncated varint", id="short-varint"),
        pytest.param(b"\x1a\x03abc", "whole number", id="times-not-8-bytes"),
        pytest.param(b"\x19\x01\x02", "truncated fixed64", id="short-fixed64"),
        pytest.param(b"\x0b", "wire type 3", id="group"),
        pytest.param(b"\x00\x01", "field number 0", id="field-0"),
    ],
)
def test_decode_refuses_malformed_messages(msg: bytes, error: str) -> None:
    with pytest.raises(WireError, match=error):
        decode_flow_batch(msg)


@settings(max_examples=200, deadline=None)
@given(lines=LINES, max_bytes=st.integers(1, 200))
def test_batches_split_where_the_size_is_reached(lines: list[bytes], max_bytes: int) -> None:
    """Each batch ends with the line that reaches max_bytes (newlines counted), so every
    batch but the last holds at least max_bytes and less than max_bytes plus its last line."""
    batches = [agent_pb2.FlowBatch.FromString(m) for m in encode_flow_batches(lines, max_bytes)]
    assert b"".join(b.json_lines for b in batches) == b"".join(line + b"\n" for line in lines)
    got = [b.json_lines.split(b"\n")[:-1] for b in batches]
    assert [b.count for b in batches] == [len(g) for g in got]
    for g in got[:-1]:
        size = sum(len(line) + 1 for line in g)
        assert size >= max_bytes > size - len(g[-1]) - 1
    if got:
        assert sum(len(line) + 1 for line in got[-1][:-1]) < max_bytes
