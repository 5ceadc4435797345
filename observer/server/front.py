"""The agent's HTTP/2 front door: Hubble's standard GetFlows stream at batch cost.

grpcio pays ~130 us of CPU per streamed message on this machine kind (thread hand-offs
between the asyncio loop and C-core), and Hubble's standard ``observer.Observer/GetFlows``
sends one message per flow, so no grpcio server streams it faster than ~8,000 flows/s.
gRPC lets many length-prefixed messages share one HTTP/2 DATA frame; this server (asyncio +
the sans-IO ``h2`` library) owns the agent's public listening sockets and

* serves ``/observer.Observer/GetFlows`` itself: the request is compiled with
  ``observer.server.query.compile_request`` and every batch of ``iter_batches`` is framed with
  ``observer.api.grpcframe.frame_response_lines`` and written in as few DATA frames as the
  peer's frame size and flow-control windows allow; per stream at most ``LOW_WATER`` bytes
  and one batch wait for the peer (a stuck follower is lapped by the writer and gets a
  LostEvent, as on the grpcio path: it never grows memory or stalls ingest);
* serves ``/hubblectl.v1.FlowStream/GetFlowsBatched`` itself too, with the servicer's own
  generator (the same FlowBatch bytes as the grpcio path): proxying its large messages
  through this process would cost more than grpc.aio serving them;
* proxies every other stream (health, ServerStatus, GetNodes, GetNamespaces, Peer, server
  reflection, the hubblectl.v1.Agent API) to the agent's grpc.aio server on an internal unix
  socket, over one backend HTTP/2 connection per client connection: headers, data,
  trailers and resets, with flow control in both directions (data is acknowledged to the
  sender only once the other side has taken it).

A client sees one gRPC server: same metadata (``hubble-server-version``), same statuses and
messages (INVALID_ARGUMENT naming the field), ``grpc-timeout`` honoured
(DEADLINE_EXCEEDED), client RST_STREAM / disconnect cancel the stream's task, and shutdown
sends GOAWAY, lets streams finish for a grace period, then ends the rest with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import stat
import struct
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import grpc
import orjson
from h2 import events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error, StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import DataFrame, Frame, GoAwayFrame

from observer import __version__
from observer.api import grpcframe
from observer.api.v1.observer import observer_pb2
from observer.errors import ConfigError
from observer.metrics import AgentMetrics
from observer.server.listen import listen_target
from observer.server.observer import FlowStreamServicer, NodeInfo
from observer.server.query import InvalidRequest, compile_request, iter_batches, mask_flow
from observer.store import FlowStore

log = logging.getLogger(__name__)

GET_FLOWS_PATH: Final = b"/observer.Observer/GetFlows"
GET_FLOWS_BATCHED_PATH: Final = b"/hubblectl.v1.FlowStream/GetFlowsBatched"
LOCAL_PATHS: Final = frozenset({GET_FLOWS_PATH, GET_FLOWS_BATCHED_PATH})
SERVER_VERSION_KEY: Final = b"hubble-server-version"
LOW_WATER: Final = 1024 * 1024  # a local stream makes its next message(s) when its backlog is this small
TRANSPORT_HIGH_WATER: Final = 512 * 1024
SOCKET_SNDBUF: Final = 4 * 1024 * 1024
MAX_CONCURRENT_STREAMS: Final = 1000
PROXY_STREAM_WINDOW: Final = 1024 * 1024  # what grpc.aio may send ahead on one proxied stream
PROXY_CONNECTION_WINDOW: Final = 4 * 1024 * 1024  # ... and on one backend connection
MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024  # grpc's default max receive message size

# grpc status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html)
OK: Final = 0
CANCELLED: Final = 1
UNKNOWN: Final = 2
INVALID_ARGUMENT: Final = 3
DEADLINE_EXCEEDED: Final = 4
RESOURCE_EXHAUSTED: Final = 8
UNIMPLEMENTED: Final = 12
INTERNAL: Final = 13
UNAVAILABLE: Final = 14

Headers = list[tuple[bytes, bytes]]

_TIMEOUT_UNITS: Final = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}


# --- pure helpers ----------------------------------------------------------------------------


class GrpcStatusError(Exception):
    """A request ends with this gRPC status (code, message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def percent_encode(message: str) -> bytes:
    """grpc-message encoding: UTF-8, bytes outside printable ASCII and ``%`` as ``%XX``."""
    out = bytearray()
    for b in message.encode("utf-8"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def parse_timeout(value: bytes) -> float:
    """A ``grpc-timeout`` value (1-8 digits and a unit H/M/S/m/u/n) in seconds."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit() or value[-1] not in _TIMEOUT_UNITS:
        raise GrpcStatusError(INTERNAL, f"malformed grpc-timeout {value.decode('latin-1')!r}")
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def decode_unary_request(body: bytes, encoding: bytes | None) -> bytes:
    """The one message of a unary request body (gRPC length-prefixed framing).

    ``encoding`` is the request's ``grpc-encoding``: a compressed message needs gzip or
    deflate (what grpc-go and grpcio offer); anything else is UNIMPLEMENTED, as in grpc."""
    if len(body) < 5:
        raise GrpcStatusError(INTERNAL, "request message missing")
    flag = body[0]
    size = int.from_bytes(body[1:5], "big")
    if size > MAX_REQUEST_BYTES:
        raise GrpcStatusError(RESOURCE_EXHAUSTED, f"request message larger than max ({size} vs. {MAX_REQUEST_BYTES})")
    if len(body) != 5 + size:
        raise GrpcStatusError(INTERNAL, "request body is not exactly one message")
    payload = body[5:]
    if flag == 0:
        return payload
    if flag != 1:
        raise GrpcStatusError(INTERNAL, f"invalid message flag {flag}")
    if encoding in (None, b"identity"):
        raise GrpcStatusError(INTERNAL, "compressed message without grpc-encoding")
    try:
        if encoding == b"gzip":
            return zlib.decompress(payload, 16 + zlib.MAX_WBITS)
        if encoding == b"deflate":
            return zlib.decompress(payload)
    except zlib.error as err:
        raise GrpcStatusError(INTERNAL, f"cannot decompress request: {err}") from err
    raise GrpcStatusError(UNIMPLEMENTED, f"compression {encoding.decode('latin-1')!r} is not supported")


def status_trailers(code: int, message: str = "") -> Headers:
    out: Headers = [(b"grpc-status", str(code).encode())]
    if message:
        out.append((b"grpc-message", percent_encode(message)))
    return out


def response_headers(extra: Sequence[tuple[bytes, bytes]] = ()) -> Headers:
    return [(b":status", b"200"), (b"content-type", b"application/grpc"), *extra]


def trailers_only(code: int, message: str) -> Headers:
    """A response that is only headers-with-status (an error before any message)."""
    return [*response_headers(), *status_trailers(code, message)]


# --- one HTTP/2 peer: outbound queues under flow control -------------------------------------

DIRECT_DATA_MIN: Final = 4096  # DATA frames at least this long skip h2's serialization copies
_DATA_HEADER: Final = struct.Struct(">HBBBL")  # hyperframe's frame header layout


class _Connection(H2Connection):
    """h2's connection with DATA payloads kept out of its send buffer.

    h2 serializes every frame into one bytearray (``data_to_send``), copying each payload
    three times; a flow stream moves hundreds of MB. Here a long unpadded DATA frame leaves
    its header and payload as separate buffers, in order with the other frames, and
    ``buffers_to_send`` hands them to the transport as they are. h2 still does every check
    and all state and flow-control bookkeeping (it builds the frame, we only serialize it);
    this overrides h2's private ``_prepare_for_sending`` (h2 pinned in constraints.txt; the
    front door's tests cover it)."""

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self._buffers: list[bytes] = []

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        for frame in frames:
            if type(frame) is DataFrame and len(frame.data) >= DIRECT_DATA_MIN and "PADDED" not in frame.flags:
                if self._data_to_send:
                    self._buffers.append(bytes(self._data_to_send))
                    self._data_to_send = bytearray()
                n = len(frame.data)
                flags = 0x1 if "END_STREAM" in frame.flags else 0
                self._buffers.append(_DATA_HEADER.pack((n >> 8) & 0xFFFF, n & 0xFF, 0x0, flags, frame.stream_id))
                self._buffers.append(frame.data)
            else:
                super()._prepare_for_sending([frame])

    def buffers_to_send(self) -> list[bytes]:
        """Everything to write, in order (``data_to_send`` would drop the kept payloads)."""
        out = self._buffers
        tail = self.data_to_send()
        if not out:
            return [tail] if tail else []
        self._buffers = []
        if tail:
            out.append(tail)
        return out




@dataclass(slots=True)
class _Out:
    """What waits to be sent on one stream: data, then (maybe) the end of the stream."""

    chunks: deque[bytes | memoryview]
    size: int = 0
    end: bool = False
    trailers: Headers | None = None
    ack: Callable[[int], None] | None = None  # called with each sent piece's length
    writable: asyncio.Event | None = None


class _Peer(asyncio.Protocol):
    """An h2 connection on an asyncio transport, with per-stream outbound queues that are
    written as the peer's flow-control windows and the transport's buffer allow."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.outs: dict[int, _Out] = {}
        self.paused = False
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=TRANSPORT_HIGH_WATER)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except H2Error as err:
            log.debug("HTTP/2 protocol error: %s", err)
            self.flush()
            self.abort()
            return
        for event in events:
            self.handle(event)
        self.flush()

    def handle(self, event: h2e.Event) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    # outbound
    def out(self, sid: int) -> _Out:
        out = self.outs.get(sid)
        if out is None:
            out = self.outs[sid] = _Out(deque())
        return out

    def queue_data(self, sid: int, data: bytes | memoryview, ack: Callable[[int], None] | None = None) -> _Out:
        out = self.out(sid)
        if ack is not None:
            out.ack = ack
        if data:
            out.chunks.append(data)
            out.size += len(data)
        return out

    def queue_end(self, sid: int, trailers: Headers | None = None) -> None:
        out = self.out(sid)
        out.end = True
        out.trailers = trailers

    def drop(self, sid: int) -> None:
        out = self.outs.pop(sid, None)
        if out is not None and out.writable is not None:
            out.writable.set()

    def send_headers(self, sid: int, headers: Headers, end_stream: bool = False) -> None:
        with contextlib.suppress(StreamClosedError):
            self.conn.send_headers(sid, headers, end_stream=end_stream)

    def reset(self, sid: int, code: int = ErrorCodes.CANCEL) -> None:
        self.drop(sid)
        with contextlib.suppress(H2Error):
            self.conn.reset_stream(sid, code)

    def flush(self) -> None:
        """Send what the windows allow, then hand the bytes to the transport."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if not self.paused and self.outs:
            for sid, out in list(self.outs.items()):
                self._send_stream(sid, out)
        for data in self.conn.buffers_to_send():
            transport.write(data)

    def _send_stream(self, sid: int, out: _Out) -> None:
        conn = self.conn
        chunks = out.chunks
        try:
            while chunks:
                window = conn.local_flow_control_window(sid)
                if window <= 0:
                    break
                n = min(window, conn.max_outbound_frame_size)
                chunk = chunks[0]
                if len(chunk) <= n:
                    chunks.popleft()
                    piece = chunk
                else:
                    view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
                    piece = view[:n]
                    chunks[0] = view[n:]
                conn.send_data(sid, piece)
                out.size -= len(piece)
                if out.ack is not None:
                    out.ack(len(piece))
            if not chunks and out.end:
                del self.outs[sid]
                if out.trailers is not None:
                    conn.send_headers(sid, out.trailers, end_stream=True)
                else:
                    conn.end_stream(sid)
        except (StreamClosedError, KeyError):
            self.outs.pop(sid, None)
            out.chunks.clear()
            out.size = 0
        if out.writable is not None and out.size <= LOW_WATER:
            out.writable.set()


# --- the backend: the grpc.aio server on its internal socket ---------------------------------


class _Backend(_Peer):
    """One HTTP/2 client connection to the internal grpc.aio server, for one client connection.

    Streams opened before the connection is up wait in ``_pending``."""

    def __init__(self, client: _ClientConnection) -> None:
        super().__init__(_Connection(H2Configuration(client_side=True, header_encoding=None)))
        self.client = client
        self.ready = False
        self.to_client: dict[int, int] = {}  # backend stream -> client stream
        self.to_backend: dict[int, int] = {}
        self._pending: list[Callable[[], None]] = []
        self._ended: set[int] = set()  # client streams whose end was queued to the client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # windows large enough that a proxied stream is not bound by the round trip through
        # this process (data is acknowledged to grpc.aio once the client has taken it)
        self.conn.local_settings = Settings(
            client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: PROXY_STREAM_WINDOW}
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(PROXY_CONNECTION_WINDOW - 65535)
        self.ready = True
        pending, self._pending = self._pending, []
        for op in pending:
            op()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.fail_all("the agent's internal gRPC server closed the connection")

    def fail_all(self, message: str) -> None:
        self._pending.clear()
        for csid in list(self.to_backend):
            self.client.end_proxied(csid, UNAVAILABLE, message)
        self.to_backend.clear()
        self.to_client.clear()

    def _do(self, op: Callable[[], None]) -> None:
        if self.closed:
            return
        if self.ready:
            op()
            self.flush()
        else:
            self._pending.append(op)

    def start_stream(self, csid: int, headers: Headers, end: bool) -> None:
        # mark the client stream as proxied at once (data may follow before we are connected)
        self.to_backend[csid] = 0

        def op() -> None:
            if csid not in self.to_backend:
                return  # reset meanwhile
            bsid = self.conn.get_next_available_stream_id()
            try:
                self.conn.send_headers(bsid, headers, end_stream=end)
            except H2Error as err:
                self.to_backend.pop(csid, None)
                self.client.end_proxied(csid, UNAVAILABLE, f"cannot open a backend stream: {err}")
                return
            self.to_backend[csid] = bsid
            self.to_client[bsid] = csid

        self._do(op)

    def send(self, csid: int, data: bytes, flow_len: int) -> None:
        def op() -> None:
            bsid = self.to_backend.get(csid)
            if not bsid:
                return
            client = self.client
            extra = flow_len - len(data)
            if extra:
                client.ack(csid, extra)
            self.queue_data(bsid, data, ack=lambda n: client.ack(csid, n))

        self._do(op)

    def end(self, csid: int) -> None:
        def op() -> None:
            bsid = self.to_backend.get(csid)
            if bsid:
                self.queue_end(bsid)

        self._do(op)

    def cancel(self, csid: int) -> None:
        bsid = self.to_backend.pop(csid, None)
        if bsid:
            self.to_client.pop(bsid, None)
            self.reset(bsid, ErrorCodes.CANCEL)
            self.flush()

    def handle(self, event: h2e.Event) -> None:
        client = self.client
        if isinstance(event, h2e.DataReceived):
            csid = self.to_client.get(event.stream_id)
            if csid is None:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                return
            bsid = event.stream_id
            extra = event.flow_controlled_length - len(event.data)
            if extra:
                self.conn.acknowledge_received_data(extra, bsid)

            def ack(n: int) -> None:  # the client flush that calls this flushes us after
                self.conn.acknowledge_received_data(n, bsid)

            client.queue_data(csid, event.data, ack=ack)
        elif isinstance(event, h2e.ResponseReceived):
            csid = self.to_client.get(event.stream_id)
            if csid is not None:
                ended = event.stream_ended is not None
                if ended:
                    self._finish(event.stream_id, csid)
                client.proxied_headers(csid, list(event.headers), ended)
        elif isinstance(event, h2e.TrailersReceived):
            csid = self.to_client.get(event.stream_id)
            if csid is not None:
                client.queue_end(csid, list(event.headers))
                self._finish(event.stream_id, csid)
        elif isinstance(event, h2e.StreamEnded):
            csid = self.to_client.get(event.stream_id)
            if csid is not None:
                client.queue_end(csid)
                self._finish(event.stream_id, csid)
        elif isinstance(event, h2e.StreamReset):
            csid = self.to_client.get(event.stream_id)
            self.drop(event.stream_id)
            if csid is not None:
                self._finish(event.stream_id, csid)
                client.reset(csid, event.error_code or ErrorCodes.CANCEL)
                client.flush()
        elif isinstance(event, h2e.WindowUpdated):
            self.flush()
        elif isinstance(event, h2e.ConnectionTerminated):
            self.closed = True
            self.fail_all("the agent's internal gRPC server went away")
            if self.transport is not None:
                self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.client.flush()  # one write per read, whatever number of frames it held

    def _finish(self, bsid: int, csid: int) -> None:
        self.to_client.pop(bsid, None)
        self.to_backend.pop(csid, None)


# --- a client connection ---------------------------------------------------------------------


@dataclass(slots=True)
class _Local:
    """A stream the front door serves itself (GetFlows, GetFlowsBatched)."""

    headers: dict[bytes, bytes]
    body: bytearray
    deadline: float | None
    path: bytes
    task: asyncio.Task[None] | None = None
    headers_sent: bool = False


class _ClientConnection(_Peer):
    def __init__(self, front: FrontDoor, backend_path: str) -> None:
        config = H2Configuration(client_side=False, header_encoding=None)
        super().__init__(_Connection(config))
        self.front = front
        self.backend_path = backend_path
        self.backend: _Backend | None = None
        self.local: dict[int, _Local] = {}
        self.proxied_started: set[int] = set()  # proxied client streams whose headers went out
        self.goaway_sent = False
        self.goaway_last = 0

    # lifecycle
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # fewer wake-ups per batch: the kernel caps this at net.core.wmem_max
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SNDBUF)
        self.front._conns.add(self)
        self.conn.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS}
        )
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.front._conns.discard(self)
        for st in self.local.values():
            if st.task is not None:
                st.task.cancel()
        self.local.clear()
        for out in self.outs.values():
            if out.writable is not None:
                out.writable.set()
        self.outs.clear()
        backend = self.backend
        if backend is not None:
            backend.to_backend.clear()
            backend.to_client.clear()
            backend._pending.clear()
            backend.closed = True
            if backend.transport is not None:
                backend.transport.close()
        self.front._changed()

    def goaway(self) -> None:
        """GOAWAY (NO_ERROR) naming the last stream we take; streams in flight go on.

        Written as a raw frame: h2's state machine allows nothing after its own GOAWAY, and
        a graceful shutdown must still send those streams' data and trailers."""
        if self.goaway_sent or self.closed or self.transport is None:
            return
        self.goaway_sent = True
        self.goaway_last = self.conn.highest_inbound_stream_id
        self.flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.goaway_last
        frame.error_code = ErrorCodes.NO_ERROR
        self.transport.write(frame.serialize())

    def flush(self) -> None:
        super().flush()
        backend = self.backend
        if backend is not None and backend.ready:
            backend.flush()  # window updates for what was just passed on
        if self.goaway_sent and not self.closed and self.idle and self.front.stopping:
            self.front._changed_soon()

    @property
    def idle(self) -> bool:
        return not self.local and not self.outs and not (self.backend and self.backend.to_backend)

    def close_if_idle(self) -> None:
        if self.goaway_sent and self.idle and self.transport is not None:
            self.flush()
            self.transport.close()

    # events
    def handle(self, event: h2e.Event) -> None:
        if isinstance(event, h2e.RequestReceived):
            self._request(event)
        elif isinstance(event, h2e.DataReceived):
            self._data(event)
        elif isinstance(event, h2e.StreamEnded):
            self._ended(event.stream_id)
        elif isinstance(event, h2e.StreamReset):
            self._reset(event.stream_id)
        elif isinstance(event, h2e.WindowUpdated):
            pass  # flushed after every batch of events
        elif isinstance(event, h2e.ConnectionTerminated):
            self.goaway_sent = True
            if self.transport is not None:
                self.flush()
                self.transport.close()

    def _request(self, event: h2e.RequestReceived) -> None:
        sid = event.stream_id
        if self.goaway_sent and sid > self.goaway_last:
            self.reset(sid, ErrorCodes.REFUSED_STREAM)  # the client retries elsewhere
            return
        headers = list(event.headers)
        path = next((v for k, v in headers if k == b":path"), b"")
        if self.front.fast_get_flows and path in LOCAL_PATHS:
            h = dict(headers)
            deadline = None
            try:
                if b"grpc-timeout" in h:
                    deadline = asyncio.get_running_loop().time() + parse_timeout(h[b"grpc-timeout"])
            except GrpcStatusError as err:
                self.send_headers(sid, trailers_only(err.code, err.message), end_stream=True)
                return
            st = _Local(h, bytearray(), deadline, path)
            self.local[sid] = st
            if event.stream_ended is not None:
                self._ended(sid)
            return
        if self.backend is None:
            self.backend = _Backend(self)
            self.front._spawn(self._connect_backend(self.backend))
        self.backend.start_stream(sid, headers, event.stream_ended is not None)

    async def _connect_backend(self, backend: _Backend) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(lambda: backend, self.backend_path)
        except OSError as err:
            backend.closed = True
            backend.fail_all(f"the agent's internal gRPC server is unreachable: {err}")
            self.flush()

    def _data(self, event: h2e.DataReceived) -> None:
        sid = event.stream_id
        st = self.local.get(sid)
        if st is not None:
            self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            st.body += event.data
            if len(st.body) > MAX_REQUEST_BYTES + 5:
                self.local.pop(sid, None)
                self.send_headers(sid, trailers_only(RESOURCE_EXHAUSTED, "request message too large"), True)
            return
        if self.backend is not None and sid in self.backend.to_backend:
            self.backend.send(sid, event.data, event.flow_controlled_length)
        else:
            self.conn.acknowledge_received_data(event.flow_controlled_length, sid)

    def _ended(self, sid: int) -> None:
        st = self.local.get(sid)
        if st is not None:
            if st.task is None:
                st.task = self.front._spawn(self._get_flows(sid, st))
            return
        if self.backend is not None and sid in self.backend.to_backend:
            self.backend.end(sid)

    def _reset(self, sid: int) -> None:
        self.drop(sid)
        st = self.local.pop(sid, None)
        if st is not None and st.task is not None:
            st.task.cancel()
        if self.backend is not None:
            self.backend.cancel(sid)
        self.proxied_started.discard(sid)
        self.front._changed()

    # proxy callbacks
    def ack(self, sid: int, n: int) -> None:
        if not self.closed:
            self.conn.acknowledge_received_data(n, sid)

    def proxied_headers(self, sid: int, headers: Headers, end: bool) -> None:
        self.proxied_started.add(sid)
        self.send_headers(sid, headers, end_stream=end)
        if end:
            self.proxied_started.discard(sid)
            self.drop(sid)

    def end_proxied(self, sid: int, code: int, message: str) -> None:
        """End a proxied stream with a status (the backend is gone)."""
        if sid in self.proxied_started:
            self.queue_end(sid, status_trailers(code, message))
        else:
            self.drop(sid)
            self.send_headers(sid, trailers_only(code, message), end_stream=True)
        self.proxied_started.discard(sid)

    def queue_end(self, sid: int, trailers: Headers | None = None) -> None:
        super().queue_end(sid, trailers)
        self.proxied_started.discard(sid)
        self.front._changed_soon()

    # GetFlows
    async def _write(self, sid: int, *parts: bytes) -> None:
        for data in parts:
            out = self.queue_data(sid, data)
        self.flush()
        while out.size > LOW_WATER and self.outs.get(sid) is out:
            if out.writable is None:
                out.writable = asyncio.Event()
            out.writable.clear()
            await out.writable.wait()
        if self.closed or sid not in self.local:
            raise asyncio.CancelledError

    def _finish_local(self, sid: int, st: _Local, code: int, message: str) -> None:
        if self.local.pop(sid, None) is None or self.closed:
            return
        if st.headers_sent:
            self.queue_end(sid, status_trailers(code, message))
        else:
            self.send_headers(sid, trailers_only(code, message), end_stream=True)
        self.flush()

    async def _get_flows(self, sid: int, st: _Local) -> None:
        front = self.front
        try:
            async with asyncio.timeout_at(st.deadline):
                code, message = await self._serve_get_flows(sid, st)
        except TimeoutError:
            code, message = DEADLINE_EXCEEDED, "Deadline Exceeded"
        except GrpcStatusError as err:
            code, message = err.code, err.message
        except asyncio.CancelledError:
            if front.stopping and sid in self.local:
                self._finish_local(sid, st, UNAVAILABLE, "the agent is shutting down")
            else:
                self.local.pop(sid, None)
            raise
        except Exception as err:  # a bug or undecodable stored line: end this stream only
            log.exception("GetFlows stream %d failed", sid)
            code, message = UNKNOWN, f"Unexpected error: {err}"
        self._finish_local(sid, st, code, message)

    def _send_response_headers(self, sid: int, st: _Local) -> None:
        self.send_headers(sid, response_headers(((SERVER_VERSION_KEY, __version__.encode()),)))
        st.headers_sent = True
        self.flush()

    async def _serve_get_flows(self, sid: int, st: _Local) -> tuple[int, str]:
        front = self.front
        raw = decode_unary_request(bytes(st.body), st.headers.get(b"grpc-encoding"))
        try:
            request = observer_pb2.GetFlowsRequest.FromString(raw)
        except Exception as err:  # protobuf's DecodeError
            raise GrpcStatusError(INTERNAL, f"cannot parse GetFlowsRequest: {err}") from err
        if st.path == GET_FLOWS_BATCHED_PATH:
            return await self._serve_batched(sid, st, request)
        try:
            query = compile_request(request)
        except InvalidRequest as err:
            return INVALID_ARGUMENT, str(err)
        self._send_response_headers(sid, st)
        frame = grpcframe.frame_response_lines
        mask = query.field_mask
        batches = iter_batches(front.store, query, front.node_name, front.now_ns, metrics=front.metrics)
        try:
            async for batch in batches:
                lines = [item if isinstance(item, bytes) else item.data for item in batch]
                if mask:
                    lines = [_mask_line(line, mask) for line in lines]
                await self._write(sid, frame(lines))
        finally:
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()
        return OK, ""


    async def _serve_batched(
        self, sid: int, st: _Local, request: observer_pb2.GetFlowsRequest
    ) -> tuple[int, str]:
        """hubblectl.v1.FlowStream/GetFlowsBatched: the servicer's own generator (so the
        batches are the grpcio path's, byte for byte), each message framed and written."""
        context = _BatchedContext(self, sid, st)
        messages = self.front.flow_stream.GetFlowsBatched(request, context)  # type: ignore[arg-type]
        try:
            async for msg in messages:
                payload = msg if isinstance(msg, bytes) else msg.SerializeToString()
                await self._write(sid, b"\x00" + len(payload).to_bytes(4, "big"), payload)
        except GrpcStatusError as err:
            return err.code, err.message
        finally:
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                await aclose()
        return OK, ""


class _BatchedContext:
    """What FlowStreamServicer.GetFlowsBatched asks of its grpc context."""

    def __init__(self, conn: _ClientConnection, sid: int, st: _Local) -> None:
        self._conn = conn
        self._sid = sid
        self._st = st

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise GrpcStatusError(int(code.value[0]), details)

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._conn._send_response_headers(self._sid, self._st)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """The request's metadata as grpc.aio gives it: (key, value) of each header but
        the HTTP/2 pseudo-headers, as text (binary ``-bin`` values left as sent)."""
        return tuple(
            (k.decode("ascii", "replace"), v.decode("latin-1"))
            for k, v in self._st.headers.items()
            if not k.startswith(b":")
        )


def _mask_line(line: bytes, mask: tuple[str, ...]) -> bytes:
    resp = orjson.loads(line)
    if "flow" not in resp:
        return line
    resp["flow"] = mask_flow(resp["flow"], mask)
    return orjson.dumps(resp)


# --- the server ------------------------------------------------------------------------------


class FrontDoor:
    """Owns the public listening sockets; see the module doc.

    ``listen_unix``/``listen_tcp`` each name the internal grpc.aio socket their proxied
    streams go to; ``stop(grace)`` ends everything (call it before stopping grpc.aio)."""

    def __init__(
        self,
        store: FlowStore,
        node_name: str,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        metrics: AgentMetrics | None = None,
        fast_get_flows: bool = True,
    ) -> None:
        self.store = store
        self.node_name = node_name
        self.now_ns = now_ns
        self.metrics = metrics
        self.fast_get_flows = fast_get_flows
        self.flow_stream = FlowStreamServicer(
            store, NodeInfo(name=node_name, address=""), now_ns=now_ns, metrics=metrics
        )
        self.stopping = False
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: set[_ClientConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._unix_paths: list[Path] = []

    # introspection (tests)
    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def tasks(self) -> int:
        return len(self._tasks)

    def backlog(self) -> dict[int, int]:
        """Bytes waiting for the peer per local (GetFlows) stream, over all connections."""
        return {
            sid: out.size for c in self._conns for sid, out in c.outs.items() if sid in c.local
        }

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._changed()

    def _changed(self) -> None:
        if self.stopping:
            for conn in list(self._conns):
                conn.close_if_idle()
            if not self._conns and not self._tasks:
                self._idle.set()

    def _changed_soon(self) -> None:
        if self.stopping:
            asyncio.get_running_loop().call_soon(self._changed)

    # listening
    async def listen_unix(self, path: str | os.PathLike[str], backend: str, mode: int = 0o660) -> None:
        """Serve on a unix socket (a stale socket file there is replaced), chmod ``mode``."""
        sock = Path(path)
        sock.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(sock.lstat().st_mode):
                sock.unlink()
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_unix_server(lambda: _ClientConnection(self, backend), str(sock))
        except OSError as err:
            raise ConfigError(f"--socket: cannot listen on {sock}: {err.strerror or err}") from err
        os.chmod(sock, mode)
        self._servers.append(server)
        self._unix_paths.append(sock)

    async def listen_tcp(self, address: str, backend: str, flag: str = "--listen-address") -> int:
        """Serve plaintext HTTP/2 on TCP (``:4244`` = every address); returns the port."""
        target = listen_target(address)
        host, _, port_s = target.rpartition(":")
        host = host.strip("[]")
        loop = asyncio.get_running_loop()
        try:
            port = int(port_s)
            server = await loop.create_server(
                lambda: _ClientConnection(self, backend),
                None if host in ("::", "") else host,
                port,
                reuse_address=True,
            )
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"{flag}: cannot listen on {address} (in use, or not an address of this host)"
            ) from err
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def stop(self, grace: float | None = 0.5) -> None:
        """Stop listening, GOAWAY every connection, let open streams finish for ``grace``
        seconds, then end GetFlows streams with UNAVAILABLE and close every connection."""
        self.stopping = True
        for server in self._servers:
            server.close()
        for conn in list(self._conns):
            conn.goaway()
        self._changed()
        if grace:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for conn in list(self._conns):
            if conn.backend is not None:
                conn.backend.fail_all("the agent is shutting down")
            conn.flush()
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self._servers.clear()
        for sock in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        self._unix_paths.clear()
        await asyncio.sleep(0)  # let connection_lost callbacks run


class InternalSockets:
    """A private directory (mode 0700) for the grpc.aio server's internal unix sockets,
    removed on ``cleanup()``. Beside the public socket when the path fits, else in the
    system temp dir (unix socket paths are limited to 107 bytes)."""

    def __init__(self, near: str | os.PathLike[str]) -> None:
        parent = Path(near).parent
        parent.mkdir(parents=True, exist_ok=True)
        where: str | None = str(parent)
        if len(str(parent)) + 40 > 107:
            where = None
        self.dir = Path(tempfile.mkdtemp(prefix=".hubblectl-grpc-", dir=where))

    def path(self, name: str) -> str:
        return str(self.dir / f"{name}.sock")

    def target(self, name: str) -> str:
        return f"unix://{self.path(name)}"

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
