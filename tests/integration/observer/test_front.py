"""The HTTP/2 front door (observer/server/front.py) in front of the agent's grpc.aio servicers.

Each test runs an ``ObserverHarness`` (the agent's servicers on grpc.aio, a real store) and
a ``FrontDoor`` on the harness's event loop whose proxied streams go to the harness's unix
socket, as the agent wires them. Clients are grpcio channels (as hubblectl's) and, where
a test needs control over HTTP/2 itself (windows, resets, disconnects, many streams on one
connection, raw request bytes), ``RawClient``: a blocking h2 client on a unix socket.

* GetFlows through the front equals GetFlows from the grpcio servicer (number, first,
  since/until, filters, field_mask; lost events included), metadata included.
* follow delivers a new flow within 100 ms (median), INVALID_ARGUMENT names the field with
  the servicer's message, grpc-timeout ends the stream with DEADLINE_EXCEEDED.
* client RST_STREAM and disconnect cancel the stream's task (no task left), a slow reader
  with a small window gets no more than its window while another stream on the same
  connection completes, and the server's backlog for it stays bounded while the store is
  written (the reader is lapped and gets a LostEvent).
* many concurrent streams on one connection (local and proxied); proxied unary and
  streaming RPCs (health, ServerStatus, GetNodes, GetNamespaces, GetFlowsBatched,
  reflection, Peer Notify) equal the direct answers; shutdown with open streams.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import statistics
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes, Settings
from observer_harness import (
    ObserverClient,
    ObserverHarness,
    ResponseReader,
    as_dict,
    flow_response,
    named_responses,
    time_ns_of,
    timestamp,
    to_entry,
)

from observer.api.v1.flow import flow_pb2
from observer.api.v1.observer import observer_pb2
from observer.api.v1.peer import peer_pb2
from observer.server.front import LOW_WATER, FrontDoor

T = TypeVar("T")

BASE_NS: Final = 1_795_708_800_000_000_000  # 2026-11-26T16:00:00Z
GET_FLOWS: Final = "/observer.Observer/GetFlows"
SERVER_STATUS: Final = "/observer.Observer/ServerStatus"


# --- harness ---------------------------------------------------------------------------------


class Front:
    """A FrontDoor on an ObserverHarness's loop, proxying to its unix socket."""

    def __init__(
        self,
        harness: ObserverHarness,
        sock: Path,
        *,
        tcp: bool = False,
        backend: str | None = None,
        fast: bool = True,
    ) -> None:
        self.harness = harness
        self.sock = sock
        self.tcp_port = 0
        self.door: FrontDoor | None = None

        async def start() -> FrontDoor:
            door = FrontDoor(
                harness.store, harness.node.name, now_ns=harness.now_ns, fast_get_flows=fast
            )
            await door.listen_unix(sock, backend or str(harness.socket_path))
            if tcp:
                self.tcp_port = await door.listen_tcp("127.0.0.1:0", backend or str(harness.socket_path))
            return door

        self.door = self.run(start())

    @property
    def target(self) -> str:
        return f"unix://{self.sock}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.harness._loop).result(timeout)

    def read(self, fn: Callable[[FrontDoor], T]) -> T:
        door = self.door
        assert door is not None
        return self.harness.on_loop(lambda: fn(door))

    def loop_tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return self.run(count())

    def wait_for(self, what: Callable[[FrontDoor], bool], timeout: float = 5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.read(what):
                return True
            time.sleep(0.02)
        return False

    def stop(self, grace: float | None = 0.2) -> None:
        door, self.door = self.door, None
        if door is not None:
            self.run(door.stop(grace))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """The named fixture flows, served directly (harness) and through the front door."""
    tmp = tmp_path_factory.mktemp("front")
    harness = ObserverHarness(tmp, capacity=4095)
    try:
        harness.start(named_responses().values())
        front = Front(harness, tmp / "front.sock", tcp=True)
        try:
            yield front
        finally:
            front.stop()
    finally:
        harness.stop()


@pytest.fixture
def make_front(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Front]]:
    made: list[tuple[ObserverHarness, Front | None]] = []

    def make(
        responses: Any = (), backend: str | None = None, fast: bool = True, **kwargs: Any
    ) -> Front:
        tmp = tmp_path_factory.mktemp("front")
        harness = ObserverHarness(tmp, **kwargs)
        made.append((harness, None))
        harness.start(responses)
        front = Front(harness, tmp / "front.sock", backend=backend, fast=fast)
        made[-1] = (harness, front)
        return front

    try:
        yield make
    finally:
        for harness, front in made:
            try:
                if front is not None:
                    front.stop()
            finally:
                harness.stop()


@pytest.fixture
def clients() -> Iterator[Callable[[str], ObserverClient]]:
    made: list[ObserverClient] = []

    def make(target: str) -> ObserverClient:
        made.append(ObserverClient(target))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()


# --- a raw HTTP/2 client ---------------------------------------------------------------------


def grpc_frame(payload: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


def split_messages(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        assert data[pos] == 0, "a compressed response message"
        size = int.from_bytes(data[pos + 1 : pos + 5], "big")
        out.append(data[pos + 5 : pos + 5 + size])
        pos += 5 + size
    assert pos == len(data), "truncated message"
    return out


@dataclass
class RawStream:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int | None:
        value = self.trailers.get(b"grpc-status", self.headers.get(b"grpc-status"))
        return int(value) if value is not None else None

    @property
    def message(self) -> str:
        value = self.trailers.get(b"grpc-message", self.headers.get(b"grpc-message", b""))
        return value.decode()

    def messages(self) -> list[bytes]:
        return split_messages(bytes(self.data))


class RawClient:
    """A blocking HTTP/2 client on a unix socket. Received data is acknowledged at once,
    except on ``held`` streams (only the connection window is given back for those)."""

    def __init__(self, path: Path, *, window: int = 65535) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.conn.local_settings = Settings(
            client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.conn.initiate_connection()
        self.streams: dict[int, RawStream] = {}
        self.held: set[int] = set()
        self.held_bytes: dict[int, int] = {}
        self._send()

    def _send(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(
        self,
        path: str,
        message: bytes,
        *,
        extra: tuple[tuple[bytes, bytes], ...] = (),
        body: bytes | None = None,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *extra,
        ]
        self.conn.send_headers(sid, headers)
        self.conn.send_data(sid, grpc_frame(message) if body is None else body, end_stream=True)
        self.streams[sid] = RawStream()
        self._send()
        return sid

    def get_flows(self, req: observer_pb2.GetFlowsRequest, **kw: Any) -> int:
        return self.start(GET_FLOWS, req.SerializeToString(), **kw)

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid, ErrorCodes.CANCEL)
        self._send()

    def release(self, sid: int) -> None:
        self.held.discard(sid)
        n = self.held_bytes.pop(sid, 0)
        if n:
            self.conn.increment_flow_control_window(n, stream_id=sid)
        self._send()

    def pump(self, until: Callable[[], bool], timeout: float = 10) -> bool:
        """Read and handle frames until ``until()`` or the timeout; whether it came true."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(min(left, 0.05))
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                return until()
            for ev in self.conn.receive_data(chunk):
                self._event(ev)
            self._send()
        return True

    def _event(self, ev: Any) -> None:
        st = self.streams.get(getattr(ev, "stream_id", 0))
        if st is None:
            return
        if isinstance(ev, ResponseReceived):
            st.headers = dict(ev.headers)
        elif isinstance(ev, TrailersReceived):
            st.trailers = dict(ev.headers)
        elif isinstance(ev, DataReceived):
            st.data += ev.data
            if ev.stream_id in self.held:
                self.held_bytes[ev.stream_id] = (
                    self.held_bytes.get(ev.stream_id, 0) + ev.flow_controlled_length
                )
                self.conn.increment_flow_control_window(ev.flow_controlled_length)
            else:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, StreamEnded):
            st.ended = True
        elif isinstance(ev, StreamReset):
            st.reset = ev.error_code
            st.ended = True

    def done(self, *sids: int) -> Callable[[], bool]:
        return lambda: all(self.streams[s].ended for s in sids)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_clients() -> Iterator[Callable[..., RawClient]]:
    made: list[RawClient] = []

    def make(path: Path, **kwargs: Any) -> RawClient:
        made.append(RawClient(path, **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()


def _request(**kwargs: Any) -> observer_pb2.GetFlowsRequest:
    req = observer_pb2.GetFlowsRequest()
    for key in ("since", "until"):
        if key in kwargs:
            getattr(req, key).CopyFrom(timestamp(kwargs.pop(key)))
    req.field_mask.paths.extend(kwargs.pop("mask", ()))
    for key in ("whitelist", "blacklist"):
        for d in kwargs.pop(key, ()):
            getattr(req, key).append(json_format.ParseDict(d, flow_pb2.FlowFilter()))
    for key, value in kwargs.items():
        setattr(req, key, value)
    return req


def _flow_ns(name: str) -> int:
    return to_entry(named_responses()[name])[0]


# --- GetFlows equals the servicer's -----------------------------------------------------------

EQUAL_CASES: Final = {
    "all": {},
    "last-3": {"number": 3},
    "first-4": {"first": True, "number": 4},
    "number-beyond": {"number": 1000},
    "since": {"since_name": "drop"},
    "since-until": {"since_name": "udp6", "until_name": "http"},
    "dropped": {"whitelist": [{"verdict": ["DROPPED"]}]},
    "not-xwing": {"blacklist": [{"source_pod": ["default/xwing"]}]},
    "port-80-or-dns": {"whitelist": [{"destination_port": ["80"]}, {"protocol": ["DNS"]}]},
    "mask": {"mask": ("time", "verdict", "source.pod_name", "l4")},
    "mask-number": {"mask": ("IP",), "number": 2},
}


@pytest.mark.parametrize("case", EQUAL_CASES.values(), ids=EQUAL_CASES.keys())
def test_get_flows_equals_servicer(
    served: Front, clients: Callable[[str], ObserverClient], case: dict[str, Any]
) -> None:
    kwargs = dict(case)
    if "since_name" in kwargs:
        kwargs["since"] = _flow_ns(kwargs.pop("since_name"))
    if "until_name" in kwargs:
        kwargs["until"] = _flow_ns(kwargs.pop("until_name"))
    req = _request(**kwargs)
    direct = clients(served.harness.unix_target).get_flows(req)
    front = clients(served.target).get_flows(req)
    assert direct, "the case selects nothing: it would prove nothing"
    assert [as_dict(m) for m in front] == [as_dict(m) for m in direct]
    over_tcp = clients(f"127.0.0.1:{served.tcp_port}").get_flows(req)
    assert [as_dict(m) for m in over_tcp] == [as_dict(m) for m in direct]


def test_get_flows_metadata(served: Front, clients: Callable[[str], ObserverClient]) -> None:
    calls = [
        clients(t).observer.GetFlows(_request(number=1), timeout=10)
        for t in (served.harness.unix_target, served.target)
    ]
    for call in calls:
        assert len(list(call)) == 1
        assert call.code() == grpc.StatusCode.OK
    direct, front = (dict(c.initial_metadata()) for c in calls)
    assert front["hubble-server-version"] == direct["hubble-server-version"]


# --- errors ----------------------------------------------------------------------------------

INVALID_CASES: Final = {
    "first-follow": ({"first": True, "follow": True}, "first cannot be specified with follow"),
    "since-after-until": ({"since": BASE_NS + 10, "until": BASE_NS}, "since:"),
    "until-follow": ({"follow": True, "until": BASE_NS}, "until:"),
    "bad-enum": ({"whitelist": [{"verdict": [77]}]}, "filter verdict"),
    "bad-mask": ({"mask": ("no_such_field",)}, "field_mask"),
    "bad-filter": ({"whitelist": [{"source_ip": ["not-an-ip%"]}]}, "filter source_ip"),
}


@pytest.mark.parametrize(
    ("case", "needle"), INVALID_CASES.values(), ids=INVALID_CASES.keys()
)
def test_invalid_argument_names_field(
    served: Front, clients: Callable[[str], ObserverClient], case: dict[str, Any], needle: str
) -> None:
    errors = []
    for target in (served.harness.unix_target, served.target):
        with pytest.raises(grpc.RpcError) as info:
            list(clients(target).observer.GetFlows(_request(**case), timeout=10))
        errors.append((info.value.code(), info.value.details()))
    assert errors[0][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (errors[0][1] or "")
    assert errors[1] == errors[0]


RAW_ERROR_CASES: Final = {
    "compressed-no-encoding": (grpc_frame(b"", compressed=True), (), 13, "grpc-encoding"),
    "unknown-encoding": (grpc_frame(b"x", compressed=True), ((b"grpc-encoding", b"snappy"),), 12, "snappy"),
    "not-a-message": (grpc_frame(b"\xff\xff\xff"), (), 13, "GetFlowsRequest"),
    "no-message": (b"", (), 13, "missing"),
    "two-messages": (grpc_frame(b"") * 2, (), 13, "exactly one message"),
    "bad-timeout": (grpc_frame(b""), ((b"grpc-timeout", b"5x"),), 13, "grpc-timeout"),
}


@pytest.mark.parametrize(
    ("body", "extra", "code", "needle"), RAW_ERROR_CASES.values(), ids=RAW_ERROR_CASES.keys()
)
def test_raw_request_errors(
    served: Front,
    raw_clients: Callable[..., RawClient],
    body: bytes,
    extra: tuple[tuple[bytes, bytes], ...],
    code: int,
    needle: str,
) -> None:
    raw = raw_clients(served.sock)
    sid = raw.start(GET_FLOWS, b"", body=body, extra=extra)
    assert raw.pump(raw.done(sid))
    st = raw.streams[sid]
    assert st.status == code, (st.headers, st.trailers)
    assert needle in st.message
    assert not st.data


def test_gzip_request_is_accepted(served: Front, raw_clients: Callable[..., RawClient]) -> None:
    raw = raw_clients(served.sock)
    body = grpc_frame(gzip.compress(_request(number=2).SerializeToString()), compressed=True)
    sid = raw.start(GET_FLOWS, b"", body=body, extra=((b"grpc-encoding", b"gzip"),))
    assert raw.pump(raw.done(sid))
    plain = raw.get_flows(_request(number=2))
    assert raw.pump(raw.done(plain))
    assert raw.streams[sid].status == 0
    assert raw.streams[sid].messages() == raw.streams[plain].messages()
    assert len(raw.streams[sid].messages()) >= 2


# --- follow, deadline, cancel, disconnect -----------------------------------------------------


def test_follow_delivers_within_100ms(
    make_front: Callable[..., Front], clients: Callable[[str], ObserverClient]
) -> None:
    front = make_front([flow_response(BASE_NS + i) for i in range(3)], capacity=1023)
    call = clients(front.target).observer.GetFlows(_request(follow=True, number=1), timeout=60)
    reader = ResponseReader(call, "standard")
    try:
        first = reader.get(timeout=10)
        assert first is not None and time_ns_of(first) == BASE_NS + 2
        latencies = []
        for i in range(15):
            t_ns = BASE_NS + 1_000_000 + i
            start = time.perf_counter()
            front.harness.append_soon([to_entry(flow_response(t_ns))])
            got = reader.get(timeout=5)
            latencies.append(time.perf_counter() - start)
            assert got is not None and time_ns_of(got) == t_ns
    finally:
        reader.close()
    assert statistics.median(latencies) < 0.1, latencies
    assert front.wait_for(lambda d: d.tasks == 0)


def test_server_deadline(served: Front, raw_clients: Callable[..., RawClient]) -> None:
    """No client-side deadline: the server ends the follow stream at grpc-timeout."""
    raw = raw_clients(served.sock)
    start = time.monotonic()
    sid = raw.get_flows(_request(follow=True, number=1), extra=((b"grpc-timeout", b"300m"),))
    assert raw.pump(raw.done(sid), timeout=10)
    elapsed = time.monotonic() - start
    st = raw.streams[sid]
    assert st.status == 4, st.trailers
    assert st.message == "Deadline Exceeded"
    assert st.headers[b"hubble-server-version"]
    assert len(st.messages()) == 1
    assert 0.25 < elapsed < 5
    assert served.wait_for(lambda d: d.tasks == 0)


def test_client_deadline_grpcio(served: Front, clients: Callable[[str], ObserverClient]) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(clients(served.target).observer.GetFlows(_request(follow=True), timeout=0.3))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert served.wait_for(lambda d: d.tasks == 0)


def test_cancel_mid_stream(served: Front, raw_clients: Callable[..., RawClient]) -> None:
    baseline = served.loop_tasks()
    raw = raw_clients(served.sock)
    sid = raw.get_flows(_request(follow=True, number=3))
    assert raw.pump(lambda: len(raw.streams[sid].data) > 0)
    assert served.read(lambda d: d.tasks) == 1
    raw.reset(sid)
    assert served.wait_for(lambda d: d.tasks == 0)
    # the connection goes on serving
    again = raw.get_flows(_request(number=2))
    assert raw.pump(raw.done(again))
    assert raw.streams[again].status == 0 and len(raw.streams[again].messages()) >= 2
    raw.close()
    assert served.wait_for(lambda d: d.connections == 0)
    deadline = time.monotonic() + 5
    while served.loop_tasks() > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    assert served.loop_tasks() <= baseline


@pytest.mark.parametrize("proxied", [False, True], ids=["get-flows", "proxied-watch"])
def test_disconnect_mid_stream(
    served: Front, raw_clients: Callable[..., RawClient], proxied: bool
) -> None:
    baseline = served.loop_tasks()
    raw = raw_clients(served.sock)
    if proxied:
        req = health_pb2.HealthCheckRequest(service="").SerializeToString()
        sid = raw.start("/grpc.health.v1.Health/Watch", req)
    else:
        sid = raw.get_flows(_request(follow=True, number=3))
    assert raw.pump(lambda: len(raw.streams[sid].data) > 0)
    raw.close()
    assert served.wait_for(lambda d: d.connections == 0 and d.tasks == 0)
    deadline = time.monotonic() + 5
    while served.loop_tasks() > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    assert served.loop_tasks() <= baseline


# --- flow control -----------------------------------------------------------------------------


def test_slow_reader_is_bounded_and_lapped(
    make_front: Callable[..., Front], raw_clients: Callable[..., RawClient]
) -> None:
    """A follower that stops reading gets no more than its window; the server keeps at most
    one batch and LOW_WATER for it while ingest goes on; another stream on the same
    connection completes; when the reader resumes it learns what it missed (LostEvent)."""
    front = make_front([flow_response(BASE_NS + i) for i in range(1023)], capacity=1023)
    window = 8192
    raw = raw_clients(front.sock, window=window)
    slow = raw.get_flows(_request(follow=True, number=1023))
    raw.held.add(slow)
    assert raw.pump(lambda: len(raw.streams[slow].data) >= window)
    entries = [to_entry(flow_response(BASE_NS + 10_000 + i)) for i in range(5000)]
    report = front.harness.ingest(entries, batch_size=250).result(30)
    assert report.appended == 5000
    assert len(raw.streams[slow].data) == window  # not a byte beyond the window
    backlog = front.read(lambda d: d.backlog())
    assert 0 < backlog[slow] <= LOW_WATER + 1024 * 1100, backlog  # + one batch of 1024
    other = raw.get_flows(_request(number=100))
    assert raw.pump(raw.done(other))
    assert raw.streams[other].status == 0 and len(raw.streams[other].messages()) == 100
    raw.release(slow)

    def lost_seen() -> bool:
        st = raw.streams[slow]
        return any(
            observer_pb2.GetFlowsResponse.FromString(m).HasField("lost_events")
            for m in split_messages(bytes(st.data[: _complete(st.data)]))
        )

    assert raw.pump(lost_seen, timeout=20)
    msgs = [
        observer_pb2.GetFlowsResponse.FromString(m)
        for m in split_messages(bytes(raw.streams[slow].data[: _complete(raw.streams[slow].data)]))
    ]
    lost = [m.lost_events for m in msgs if m.HasField("lost_events")]
    assert lost[0].source == flow_pb2.HUBBLE_RING_BUFFER and lost[0].num_events_lost > 0


def _complete(data: bytearray) -> int:
    """The length of the whole messages at the start of ``data``."""
    pos = 0
    while pos + 5 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 5], "big")
        if pos + 5 + size > len(data):
            break
        pos += 5 + size
    return pos


def test_many_streams_one_connection(
    served: Front, raw_clients: Callable[..., RawClient], clients: Callable[[str], ObserverClient]
) -> None:
    direct = clients(served.harness.unix_target)
    expect = {n: len(direct.get_flows(_request(number=n))) for n in range(1, 8)}
    raw = raw_clients(served.sock)
    flows = [raw.get_flows(_request(number=1 + i % 7)) for i in range(120)]
    status = [raw.start(SERVER_STATUS, b"") for _ in range(60)]
    assert raw.pump(raw.done(*flows, *status), timeout=30)
    for i, sid in enumerate(flows):
        st = raw.streams[sid]
        assert st.status == 0 and len(st.messages()) == expect[1 + i % 7]
    for sid in status:
        st = raw.streams[sid]
        assert st.status == 0
        (msg,) = st.messages()
        assert observer_pb2.ServerStatusResponse.FromString(msg).num_flows == 11
    assert served.wait_for(lambda d: d.tasks == 0)


# --- proxied RPCs -----------------------------------------------------------------------------


def _unary_cases(c: ObserverClient) -> dict[str, Any]:
    return {
        "health": c.health.Check(health_pb2.HealthCheckRequest(service="hubble.server.Observer")),
        "status": c.observer.ServerStatus(observer_pb2.ServerStatusRequest()),
        "nodes": c.observer.GetNodes(observer_pb2.GetNodesRequest()),
        "namespaces": c.observer.GetNamespaces(observer_pb2.GetNamespacesRequest()),
    }


def test_proxied_unary(served: Front, clients: Callable[[str], ObserverClient]) -> None:
    direct = _unary_cases(clients(served.harness.unix_target))
    front = _unary_cases(clients(served.target))
    for key in direct:
        a, b = direct[key], front[key]
        for drop in ("uptime_ns",):  # moves between the two calls
            for m in (a, b):
                if m.DESCRIPTOR.fields_by_name.get(drop):
                    m.ClearField(drop)
        if key == "nodes":
            for m in (a, b):
                for n in m.nodes:
                    n.ClearField("uptime_ns")
        assert a == b, key


BATCHED_CASES: Final = {
    "last-6": {"number": 6},
    "all": {},
    "first-3": {"first": True, "number": 3},
    "dropped": {"whitelist": [{"verdict": ["DROPPED"]}]},
    "mask": {"mask": ("time", "verdict"), "number": 4},
}


@pytest.mark.parametrize("case", BATCHED_CASES.values(), ids=BATCHED_CASES.keys())
def test_batched_stream_equals_servicer(
    served: Front, clients: Callable[[str], ObserverClient], case: dict[str, Any]
) -> None:
    """GetFlowsBatched, served by the front with the servicer's generator: same batches."""
    req = _request(**case)
    direct = list(clients(served.harness.unix_target).flow_stream.GetFlowsBatched(req, timeout=10))
    front = list(clients(served.target).flow_stream.GetFlowsBatched(req, timeout=10))
    assert direct and sum(b.count for b in direct) > 0
    assert front == direct


def test_batched_invalid_argument(served: Front, clients: Callable[[str], ObserverClient]) -> None:
    req = _request(first=True, follow=True)
    with pytest.raises(grpc.RpcError) as info:
        list(clients(served.target).flow_stream.GetFlowsBatched(req, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "first cannot be specified with follow"


def test_fast_path_off_proxies_get_flows(
    make_front: Callable[..., Front], clients: Callable[[str], ObserverClient]
) -> None:
    """With the fast path off, GetFlows and GetFlowsBatched are proxied to grpc.aio."""
    front = make_front([flow_response(BASE_NS + i) for i in range(20)], capacity=63, fast=False)
    req = _request(number=7)
    direct = clients(front.harness.unix_target)
    proxied = clients(front.target)
    assert [as_dict(m) for m in proxied.get_flows(req)] == [as_dict(m) for m in direct.get_flows(req)]
    assert list(proxied.flow_stream.GetFlowsBatched(req)) == list(direct.flow_stream.GetFlowsBatched(req))
    assert front.read(lambda d: d.tasks) == 0


def test_proxied_reflection_bidi(served: Front, clients: Callable[[str], ObserverClient]) -> None:
    def ask(target: str) -> list[Any]:
        stub = reflection_pb2_grpc.ServerReflectionStub(clients(target).channel)
        reqs = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="observer.Observer"),
        ]
        return list(stub.ServerReflectionInfo(iter(reqs), timeout=10))

    direct, front = ask(served.harness.unix_target), ask(served.target)
    assert len(front) == 2
    names = {s.name for s in front[0].list_services_response.service}
    assert "observer.Observer" in names
    assert front == direct


def test_proxied_peer_notify(served: Front, clients: Callable[[str], ObserverClient]) -> None:
    def first(target: str) -> Any:
        call: Any = clients(target).peer.Notify(peer_pb2.NotifyRequest(), timeout=10)
        try:
            return next(call)
        finally:
            call.cancel()

    got = first(served.target)
    assert got.name == served.harness.node.name
    assert got == first(served.harness.unix_target)
    assert served.wait_for(lambda d: d.connections >= 0 and d.tasks == 0)


def test_backend_unreachable_is_unavailable(
    make_front: Callable[..., Front], clients: Callable[[str], ObserverClient]
) -> None:
    """Proxied calls end with UNAVAILABLE when the internal server cannot be reached;
    GetFlows, served by the front itself, still works."""
    front = make_front([flow_response(BASE_NS)], capacity=15, backend="/nonexistent/grpc.sock")
    client = clients(front.target)
    with pytest.raises(grpc.RpcError) as info:
        client.observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in (info.value.details() or "")
    assert len(client.get_flows(_request(number=1))) == 1


# --- shutdown ---------------------------------------------------------------------------------


def test_shutdown_with_open_streams(
    make_front: Callable[..., Front], clients: Callable[[str], ObserverClient]
) -> None:
    """GOAWAY, a grace period, then open GetFlows streams end with UNAVAILABLE (saying why),
    proxied streams end, the socket is gone, and no task is left."""
    front = make_front([flow_response(BASE_NS + i) for i in range(10)], capacity=1023)
    client = clients(front.target)
    follows = [
        ResponseReader(client.observer.GetFlows(_request(follow=True, number=2), timeout=30), "standard")
        for _ in range(3)
    ]
    watch = client.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    for follow in follows:
        assert follow.get(timeout=10) is not None
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    door = front.door
    assert door is not None
    start = time.monotonic()
    front.stop(grace=0.3)
    assert time.monotonic() - start < 5
    for follow in follows:
        with pytest.raises(grpc.RpcError) as info:
            while follow.get(timeout=5) is not None:
                pass
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (info.value.details() or "")
        follow.close()
    with pytest.raises(grpc.RpcError) as winfo:
        next(watch)
    assert winfo.value.code() == grpc.StatusCode.UNAVAILABLE
    assert front.harness.on_loop(lambda: (door.tasks, door.connections)) == (0, 0)
    assert not front.sock.exists()
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
        probe.connect(str(front.sock))
