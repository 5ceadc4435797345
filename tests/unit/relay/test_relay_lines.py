"""observer.relay.lines: the relay's line table. The native path (native/hbwire.c) and the
Python fallback must give the messages ``wire.encode_flow_batches`` gives for the same lines,
and let a line go once it went out."""

from __future__ import annotations

import platform
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.api.v1.hubblectl import agent_pb2
from observer.api.wire import WireBatch, decode_flow_batch, encode_flow_batch, encode_flow_batches
from observer.malloc import tune_malloc
from observer.relay.lines import LineTable, LineTableError, load_functions

NATIVE = load_functions() is not None
needs_native = pytest.mark.skipif(not NATIVE, reason="native/build/libhbflow.so not built (make -C native)")
MODES = [pytest.param(False, id="python"), pytest.param(True, id="native", marks=needs_native)]

LINES = st.lists(st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b"x")), min_size=1, max_size=25)


def _batch(lines: list[bytes], times: list[int] | None = None, *, newline_at_end: bool = True) -> WireBatch:
    json_lines = b"\n".join(lines) + (b"\n" if newline_at_end else b"")
    msg = agent_pb2.FlowBatch(json_lines=json_lines, count=len(lines), times_ns=times or [])
    return decode_flow_batch(msg.SerializeToString())


@pytest.mark.parametrize("native", MODES)
@pytest.mark.parametrize(
    ("json_lines", "expect", "want"),
    [
        pytest.param(b'{"a":1}\n{"b":2}\n', None, [b'{"a":1}', b'{"b":2}'], id="terminated"),
        pytest.param(b'{"a":1}\n{"b":2}', None, [b'{"a":1}', b'{"b":2}'], id="last-line-unterminated"),
        pytest.param(b"x\n", 1, [b"x"], id="one-line-expected"),
        pytest.param(b"x\ny\n", 3, None, id="fewer-lines-than-expected"),
        pytest.param(b"x\ny\nz\n", 2, None, id="more-lines-than-expected"),
        pytest.param(b"x\n\ny\n", None, None, id="empty-line"),
        pytest.param(b"\n", None, None, id="only-a-newline"),
        pytest.param(b"", None, None, id="no-lines"),
    ],
)
def test_add_batch_finds_the_lines(native: bool, json_lines: bytes, expect: int | None, want: list[bytes] | None) -> None:
    table = LineTable(native=native)
    msg = agent_pb2.FlowBatch(json_lines=json_lines, count=1).SerializeToString()
    ids = table.add_batch(decode_flow_batch(msg), expect)
    if want is None:
        assert ids is None
        assert len(table) == 0
        return
    assert ids is not None
    assert [table.line(i) for i in ids] == want
    assert table.encode(ids, 1 << 20) == list(encode_flow_batches(want, 1 << 20))
    assert len(table) == 0


@pytest.mark.parametrize("native", MODES)
@pytest.mark.parametrize(
    ("max_bytes", "sizes"),
    [
        pytest.param(1, [3, 5, 7], id="every-line-its-own-message"),
        pytest.param(10, [4, 5, 9, 1, 30, 2], id="cut-where-a-newline-reaches-the-limit"),
        pytest.param(200, [100] * 3 + [150] * 2, id="two-byte-varints"),
        pytest.param(1 << 20, [300] * 600, id="count-and-size-varints"),
        pytest.param(512 * 1024, [1000] * 1200, id="relay-batch-size"),
    ],
)
def test_encode_interleaved_batches_like_encode_flow_batches(native: bool, max_bytes: int, sizes: list[int]) -> None:
    table = LineTable(native=native)
    lines_a = [bytes([97 + i % 26]) * n for i, n in enumerate(sizes)]
    lines_b = [b"{" + str(i).encode() + b"}" for i in range(len(sizes))]
    ids_a = table.add_batch(_batch(lines_a))
    ids_b = table.add_lines(lines_b)
    assert ids_a is not None
    order = [i for pair in zip(ids_b, ids_a, strict=True) for i in pair]
    want = [line for pair in zip(lines_b, lines_a, strict=True) for line in pair]
    assert table.encode(order, max_bytes) == list(encode_flow_batches(want, max_bytes))
    assert len(table) == 0


@pytest.mark.parametrize("native", MODES)
def test_a_batch_stays_until_each_line_went_out(native: bool) -> None:
    table = LineTable(native=native)
    first = table.add_lines([b"a", b"b", b"c"])
    second = table.add_batch(_batch([b"d", b"e"]))
    assert second is not None
    assert table.encode([first[1], second[0]], 100) == [encode_flow_batch([b"b", b"d"])]
    assert len(table) == 3
    assert table.take_lines([first[0], first[2]]) == [b"a", b"c"]
    assert len(table) == 1
    with pytest.raises(LineTableError):
        table.line(first[0])
    with pytest.raises(LineTableError):
        table.encode([first[2]], 100)
    table.release([second[1]])
    assert len(table) == 0
    assert table.add_lines([b"f"]) == [second[1] + 1]  # ids are never reused


@needs_native
def test_native_messages_are_ordinary_bytes() -> None:
    """The messages are bytes objects created for hb_wire_fill: one reference (no leak), and
    protobuf reads them back."""
    table = LineTable()
    ids = table.add_lines([b'{"x":1}', b'{"y":2}'])
    (msg,) = table.encode(ids, 100)
    assert type(msg) is bytes
    assert sys.getrefcount(msg) == 2  # the name and the call's argument
    parsed = agent_pb2.FlowBatch.FromString(msg)
    assert (parsed.json_lines, parsed.count) == (b'{"x":1}\n{"y":2}\n', 2)


@needs_native
@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.tuples(LINES, st.booleans(), st.booleans()), min_size=1, max_size=5), data=st.data())
def test_native_equals_python(batches: list[tuple[list[bytes], bool, bool]], data: st.DataObject) -> None:
    """Differential: the same batches (node messages or plain lines, newline at the end or
    not) and the same random order of ids give the same messages from both tables, equal to
    ``encode_flow_batches`` of the lines."""
    tables = [LineTable(native=False), LineTable(native=True)]
    ids: list[int] = []
    lines: list[bytes] = []
    for batch_lines, as_message, newline_at_end in batches:
        got = []
        for table in tables:
            if as_message:
                got.append(table.add_batch(_batch(batch_lines, newline_at_end=newline_at_end)))
            else:
                got.append(table.add_lines(batch_lines))
        assert got[0] == got[1]
        assert got[0] is not None
        ids += got[0]
        lines += batch_lines
    order = data.draw(st.permutations(range(len(ids))))
    max_bytes = data.draw(st.integers(1, 400))
    cut = data.draw(st.integers(0, len(ids)))
    for part in (order[:cut], order[cut:]):
        want = list(encode_flow_batches([lines[i] for i in part], max_bytes))
        for table in tables:
            assert table.encode([ids[i] for i in part], max_bytes) == want
    assert [len(table) for table in tables] == [0, 0]


def test_tune_malloc_applies_on_glibc_only() -> None:
    """Relay.run's allocator settings: accepted by glibc, and a no-op elsewhere."""
    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")
