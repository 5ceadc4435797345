"""observer.api.wire's LZ4 FlowBatches (json_lines_lz4 / json_lines_lz4_sizes), checked
against the generated protobuf message, and observer.api.lz4native against the Python way."""

from __future__ import annotations

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.api.lz4native import load_functions
from observer.api.v1.hubblectl import agent_pb2
from observer.api.wire import (
    WireError,
    _varint,
    decode_flow_batch,
    encode_lz4_batch,
)

LINE = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b"x"))
# blocks: each a non-empty list of lines
BLOCKS = st.lists(st.lists(LINE, min_size=1, max_size=12), min_size=1, max_size=6)
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
NATIVE = [
    pytest.param(True, id="native", marks=pytest.mark.skipif(load_functions() is None, reason="no liblz4")),
    pytest.param(False, id="python"),
]


def _compress(blocks: list[list[bytes]]) -> tuple[list[bytes], list[int]]:
    joined = [b"\n".join(lines) for lines in blocks]
    return [lz4.block.compress(j, store_size=False) for j in joined], [len(j) for j in joined]


def _reference(blocks: list[list[bytes]], times: list[int]) -> agent_pb2.FlowBatch:
    data, sizes = _compress(blocks)
    return agent_pb2.FlowBatch(
        json_lines_lz4=data,
        json_lines_lz4_sizes=sizes,
        count=sum(map(len, blocks)),
        times_ns=times,
    )


@settings(max_examples=200, deadline=None)
@given(blocks=BLOCKS, data=st.data())
def test_encode_parses_as_protobuf_and_round_trips(blocks: list[list[bytes]], data: st.DataObject) -> None:
    n = sum(map(len, blocks))
    times = data.draw(st.one_of(st.just([]), st.lists(INT64, min_size=n, max_size=n)))
    compressed, sizes = _compress(blocks)
    # memoryviews, as the agent sends its stored blocks without copying them
    wire = encode_lz4_batch([memoryview(b) for b in compressed], sizes, n, times)
    assert wire == _reference(blocks, times).SerializeToString()
    msg = agent_pb2.FlowBatch.FromString(wire)
    assert list(msg.json_lines_lz4) == compressed and list(msg.json_lines_lz4_sizes) == sizes
    for native in (True, False):
        got = decode_flow_batch(wire, native=native)
        assert got.count == n and got.times_ns == times
        assert got.json_lines == b"".join(line + b"\n" for lines in blocks for line in lines)
        assert got.lines() == [line for lines in blocks for line in lines]


def _unpacked_sizes(sizes: list[int]) -> bytes:
    return b"".join(b"\x28" + _varint(s) for s in sizes)


def _block_field(block: bytes) -> bytes:
    return b"\x22" + _varint(len(block)) + block


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize(
    "layout",
    ["sizes-first", "unpacked-sizes", "interleaved", "unknown-fields"],
)
def test_decode_accepts_any_conforming_encoding(native: bool, layout: str) -> None:
    blocks = [[b'{"a":1}', b'{"b":2}'], [b'{"c":3}']]
    data, sizes = _compress(blocks)
    count = b"\x10\x03"
    if layout == "sizes-first":
        packed = b"".join(map(_varint, sizes))
        wire = b"\x2a" + _varint(len(packed)) + packed + count + b"".join(map(_block_field, data))
    elif layout == "unpacked-sizes":
        wire = b"".join(map(_block_field, data)) + _unpacked_sizes(sizes) + count
    elif layout == "interleaved":
        wire = _block_field(data[0]) + _unpacked_sizes(sizes[:1]) + count + _block_field(data[1])
        wire += _unpacked_sizes(sizes[1:])
    else:
        wire = b"\x78\x05" + b"".join(map(_block_field, data)) + b"\x82\x01\x00" + _unpacked_sizes(sizes)
    got = decode_flow_batch(wire, native=native)
    assert got.lines() == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    expected = agent_pb2.FlowBatch.FromString(wire)
    assert list(expected.json_lines_lz4_sizes) == sizes


def _good() -> tuple[bytes, int]:
    raw = b'{"flow":{"verdict":"FORWARDED"}}\n{"flow":{"verdict":"DROPPED"}}'
    return lz4.block.compress(raw, store_size=False), len(raw)


def _malformed() -> dict[str, bytes]:
    block, size = _good()
    sizes = b"\x2a" + _varint(len(_varint(size))) + _varint(size)
    return {
        "size-too-small": _block_field(block) + b"\x2a\x01" + _varint(size - 1),
        "size-too-large": _block_field(block) + b"\x2a" + _varint(len(_varint(size + 7))) + _varint(size + 7),
        "corrupt-block": _block_field(b"\xff" * 12) + sizes,
        "truncated-block": _block_field(block[: len(block) // 2]) + sizes,
        "no-size": _block_field(block),
        "sizes-without-block": sizes,
        "two-blocks-one-size": _block_field(block) + _block_field(block) + sizes,
        "empty-block": _block_field(b"") + b"\x2a\x01\x00",
        "also-json-lines": b"\x0a\x03ab\n" + _block_field(block) + sizes,
        "huge-size": _block_field(block) + b"\x2a\x05" + _varint(0xFFFFFFFF),
        "truncated-sizes": _block_field(block) + b"\x2a\x02\x80",
        "truncated-field": b"\x22\x40" + block[:4],
    }


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("wire", _malformed().values(), ids=_malformed().keys())
def test_malformed_lz4_batches_raise_wire_error(native: bool, wire: bytes) -> None:
    with pytest.raises(WireError):
        decode_flow_batch(wire, native=native)


def test_good_batch_of_the_malformed_cases_decodes() -> None:
    """The blocks the malformed cases spoil are fine as sent (so each case tests its flaw)."""
    block, size = _good()
    wire = _block_field(block) + b"\x2a" + _varint(len(_varint(size))) + _varint(size)
    assert len(decode_flow_batch(wire).lines()) == 2


@settings(max_examples=200, deadline=None)
@given(blocks=BLOCKS, cut=st.integers(0, 10_000), flip=st.integers(0, 255))
def test_native_and_python_agree_on_damaged_blocks(blocks: list[list[bytes]], cut: int, flip: int) -> None:
    """A byte of the serialized batch changed: both decoders give the same lines or both
    refuse it."""
    compressed, sizes = _compress(blocks)
    wire = bytearray(encode_lz4_batch(compressed, sizes, sum(map(len, blocks))))
    wire[cut % len(wire)] ^= flip
    results = []
    for native in (True, False):
        try:
            results.append(decode_flow_batch(bytes(wire), native=native).json_lines)
        except WireError:
            results.append(None)
    assert results[0] == results[1]


def test_encode_refuses_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="2 blocks, 1 sizes"):
        encode_lz4_batch([b"a", b"b"], [1], 2)
    assert encode_lz4_batch([], [], 0) == b""
