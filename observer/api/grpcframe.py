"""GetFlowsResponse JSON lines as gRPC length-prefixed messages, ready for an HTTP/2 stream.

gRPC frames each message as one flag byte (0: not compressed), a 4-byte big-endian length
and the serialized message. Hubble's standard GetFlows stream sends one GetFlowsResponse
per flow; a server that writes many such frames in one HTTP/2 DATA frame pays the
per-message cost of gRPC only once per batch (observer/server/front.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from observer.api.convert import response_to_proto

__all__ = ["frame_message", "frame_response_lines"]


def frame_message(payload: bytes) -> bytes:
    """One gRPC message frame: not compressed, big-endian length, payload."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def frame_response_lines(lines: Sequence[bytes]) -> bytes:
    """Each canonical GetFlowsResponse JSON line as a serialized, framed message, joined.

    Raises ``DecodeError`` (observer.errors) for a line that is not a GetFlowsResponse.
    """
    out: list[bytes] = []
    for line in lines:
        payload = response_to_proto(orjson.loads(line)).SerializeToString()
        out.append(b"\x00")
        out.append(len(payload).to_bytes(4, "big"))
        out.append(payload)
    return b"".join(out)
