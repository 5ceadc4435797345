"""GetFlowsResponse JSON lines as gRPC length-prefixed messages, ready for an HTTP/2 stream.

gRPC frames each message as one flag byte (0: not compressed), a 4-byte big-endian length
and the serialized message. Hubble's standard GetFlows stream sends one GetFlowsResponse
per flow; a server that writes many such frames in one HTTP/2 DATA frame pays the
per-message cost of gRPC only once per batch (observer/server/front.py).

Two paths, one result. The Python path (``frame_response_lines_python``) is the reference:
``response_to_proto(orjson.loads(line)).SerializeToString()`` per line, ~63 us. The native
path (observer/native/transcode.py, native/hbpb.c) transcodes a whole batch of canonical
lines in one C call and hands the lines it does not take exactly back to the Python path,
in order. It is chosen at the first call when the native library loads; otherwise the
Python path serves (``native_problem()`` says why).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import orjson

from observer.api.convert import response_to_proto
from observer.errors import DecodeError
from observer.native.transcode import Transcoder, load_transcoder, transcoder_problem

__all__ = [
    "frame_message",
    "frame_response_line",
    "frame_response_lines",
    "frame_response_lines_python",
    "native_problem",
]


def frame_message(payload: bytes) -> bytes:
    """One gRPC message frame: not compressed, big-endian length, payload."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def frame_response_line(line: bytes) -> bytes:
    """One canonical GetFlowsResponse JSON line as a framed message (the Python path).

    Raises ``DecodeError`` (observer.errors) for a line that is not a GetFlowsResponse,
    including one that is not JSON.
    """
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"invalid observer.GetFlowsResponse line: {e}") from e
    payload = response_to_proto(d).SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def frame_response_lines_python(lines: Sequence[bytes]) -> bytes:
    """``frame_response_lines`` by the Python path alone (the reference)."""
    return b"".join([frame_response_line(line) for line in lines])


@functools.cache
def _transcoder() -> Transcoder | None:
    return load_transcoder()


def native_problem() -> str | None:
    """Why ``frame_response_lines`` uses the Python path, or None when it is native."""
    return None if _transcoder() is not None else transcoder_problem()


def frame_response_lines(lines: Sequence[bytes]) -> bytes:
    """Each canonical GetFlowsResponse JSON line as a serialized, framed message, joined.

    Raises ``DecodeError`` (observer.errors) for a line that is not a GetFlowsResponse.
    """
    t = _transcoder()
    if t is None or not lines:
        return frame_response_lines_python(lines)
    return t.frame_lines(lines, frame_response_line)
