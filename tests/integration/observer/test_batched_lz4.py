"""GetFlowsBatched with ``hubblectl-flow-encoding: lz4``: whole sealed store blocks sent as
stored (json_lines_lz4), the rest as json_lines; the same lines, order and times as without
the metadata, from the grpc.aio servicer and through the HTTP/2 front door, for every request
shape (only plain queries use blocks)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import lz4.block
import pytest
from google.protobuf import json_format
from observer_harness import ObserverClient, ObserverHarness, flow_response, lost_response

from observer.api.v1.flow import flow_pb2
from observer.api.v1.hubblectl import agent_pb2
from observer.api.v1.observer import observer_pb2
from observer.server.front import FrontDoor

BASE_NS: Final = 1_795_708_800_000_000_000
LZ4: Final = (("hubblectl-flow-encoding", "lz4"),)
FLOWS: Final = 2500  # in a 1023-slot store: wrapped, a mixed block, three sealed blocks


class Served:
    def __init__(self, tmp: Path) -> None:
        self.harness = ObserverHarness(tmp, capacity=1023)
        responses: list[dict[str, Any]] = [flow_response(BASE_NS + i * 1000) for i in range(FLOWS)]
        responses.insert(2000, lost_response(BASE_NS + 1999 * 1000 + 500, 7))
        self.harness.start(responses)
        sock = tmp / "front.sock"
        self.front_target = f"unix://{sock}"
        harness = self.harness

        async def start() -> FrontDoor:
            door = FrontDoor(harness.store, harness.node.name, now_ns=harness.now_ns)
            await door.listen_unix(sock, str(harness.socket_path))
            return door

        self.door: FrontDoor | None = asyncio.run_coroutine_threadsafe(start(), harness._loop).result(30)

    def append(self, count: int, start: int) -> None:
        self.harness.append([flow_response(BASE_NS + (start + i) * 1000) for i in range(count)])

    def close(self) -> None:
        try:
            if self.door is not None:
                asyncio.run_coroutine_threadsafe(self.door.stop(0.2), self.harness._loop).result(30)
        finally:
            self.harness.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.close()


def _request(**kwargs: Any) -> observer_pb2.GetFlowsRequest:
    req = observer_pb2.GetFlowsRequest()
    req.field_mask.paths.extend(kwargs.pop("mask", ()))
    for d in kwargs.pop("whitelist", ()):
        req.whitelist.append(json_format.ParseDict(d, flow_pb2.FlowFilter()))
    if "since" in kwargs:
        req.since.FromNanoseconds(kwargs.pop("since"))
    for key, value in kwargs.items():
        setattr(req, key, value)
    return req


def _decode(batches: list[agent_pb2.FlowBatch]) -> tuple[list[bytes], list[int], int]:
    """Lines, times and how many messages carried LZ4 blocks."""
    lines: list[bytes] = []
    times: list[int] = []
    compressed = 0
    for b in batches:
        if b.json_lines_lz4:
            assert not b.json_lines
            compressed += 1
            got = []
            for block, size in zip(b.json_lines_lz4, b.json_lines_lz4_sizes, strict=True):
                raw = lz4.block.decompress(block, uncompressed_size=size)
                assert len(raw) == size
                got += raw.split(b"\n")
        else:
            got = b.json_lines.split(b"\n")[:-1]
        assert len(got) == b.count == len(b.times_ns)
        lines += got
        times += b.times_ns
    return lines, times, compressed


CASES: Final = {
    "all": ({}, True),
    "last-1500": ({"number": 1500}, True),
    "last-100": ({"number": 100}, False),
    "first-700": ({"number": 700, "first": True}, True),
    "first-all": ({"first": True}, True),
    "filtered": ({"whitelist": [{"verdict": ["FORWARDED"]}]}, False),
    "masked": ({"mask": ("time",), "number": 1500}, False),
    "since": ({"since": BASE_NS + 1600 * 1000}, False),
}


@pytest.mark.parametrize("path", ["grpc-aio", "front-door"])
@pytest.mark.parametrize(("kwargs", "blocks"), CASES.values(), ids=CASES.keys())
def test_same_lines_with_and_without_lz4(served: Served, path: str, kwargs: dict[str, Any], blocks: bool) -> None:
    target = served.harness.unix_target if path == "grpc-aio" else served.front_target
    client = ObserverClient(target)
    try:
        req = _request(**kwargs)
        plain = list(client.flow_stream.GetFlowsBatched(req, timeout=10))
        packed = list(client.flow_stream.GetFlowsBatched(req, timeout=10, metadata=LZ4))
    finally:
        client.close()
    lines, times, none = _decode(plain)
    lz_lines, lz_times, compressed = _decode(packed)
    assert none == 0
    assert lines and lz_lines == lines
    assert lz_times == times
    assert (compressed > 0) == blocks
    if kwargs == {}:
        assert len(lines) == 1023 and sum(b'"lost_events"' in line for line in lines) == 1


@pytest.mark.parametrize("path", ["grpc-aio", "front-door"])
def test_follow_with_lz4(served: Served, path: str) -> None:
    """History as blocks, then new flows as they come (more than a block's worth), in order."""
    target = served.harness.unix_target if path == "grpc-aio" else served.front_target
    client = ObserverClient(target)
    try:
        call = client.flow_stream.GetFlowsBatched(_request(number=1000, follow=True), timeout=20, metadata=LZ4)
        got: list[agent_pb2.FlowBatch] = []
        want = 1000 + 1 + 600  # + the LOST entry, not counted by number
        n = 0
        for batch in call:
            got.append(batch)
            n += batch.count
            if len(got) == 1:
                served.append(600, FLOWS)
            if n >= want:
                break
        call.cancel()  # type: ignore[no-untyped-call]
    finally:
        client.close()
    lines, times, compressed = _decode(got)
    assert compressed > 0
    assert len(lines) == want
    flow_times = [t for t, line in zip(times, lines, strict=True) if b'"flow"' in line]
    assert flow_times == [BASE_NS + i * 1000 for i in range(FLOWS - 1000, FLOWS + 600)]


def test_other_metadata_values_change_nothing(served: Served) -> None:
    client = ObserverClient(served.harness.unix_target)
    try:
        for md in ((("hubblectl-flow-encoding", "zstd"),), (("other", "lz4"),)):
            batches = list(client.flow_stream.GetFlowsBatched(_request(), timeout=10, metadata=md))
            assert _decode(batches)[2] == 0
        both = (("hubblectl-flow-encoding", "zstd, lz4"),)
        assert _decode(list(client.flow_stream.GetFlowsBatched(_request(), timeout=10, metadata=both)))[2] > 0
    finally:
        client.close()
