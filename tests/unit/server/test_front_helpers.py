"""Pure helpers of the HTTP/2 front door: grpc-message encoding, grpc-timeout, request
framing (compression), status headers."""

from __future__ import annotations

import gzip
import zlib
from typing import Final

import pytest

from observer.server.front import (
    GrpcStatusError,
    decode_unary_request,
    parse_timeout,
    percent_encode,
    status_trailers,
    trailers_only,
)


def frame(payload: bytes, flag: int = 0) -> bytes:
    return bytes([flag]) + len(payload).to_bytes(4, "big") + payload


PERCENT: Final = {
    "plain": ("filter verdict: bad", b"filter verdict: bad"),
    "percent": ("100% sure", b"100%25 sure"),
    "newline": ("a\nb", b"a%0Ab"),
    "utf8": ("caf\u00e9", b"caf%C3%A9"),
    "tilde-kept": ("~ok", b"~ok"),
    "empty": ("", b""),
}


@pytest.mark.parametrize(("text", "want"), PERCENT.values(), ids=PERCENT.keys())
def test_percent_encode(text: str, want: bytes) -> None:
    assert percent_encode(text) == want


TIMEOUTS: Final = {
    "hours": (b"2H", 7200.0),
    "minutes": (b"3M", 180.0),
    "seconds": (b"10S", 10.0),
    "millis": (b"250m", 0.25),
    "micros": (b"1500u", 0.0015),
    "nanos": (b"99999999n", 0.099999999),
}


@pytest.mark.parametrize(("value", "seconds"), TIMEOUTS.values(), ids=TIMEOUTS.keys())
def test_parse_timeout(value: bytes, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", [b"", b"S", b"10", b"10x", b"-1S", b"123456789S", b"1.5S"],
    ids=["empty", "no-digits", "no-unit", "bad-unit", "negative", "nine-digits", "fraction"],
)
def test_parse_timeout_rejects(value: bytes) -> None:
    with pytest.raises(GrpcStatusError) as info:
        parse_timeout(value)
    assert info.value.code == 13


MESSAGE: Final = b"\x08\x05\x18\x01"  # GetFlowsRequest{number: 5, follow: true}
DECODE_OK: Final = {
    "plain": (frame(MESSAGE), None),
    "identity-header": (frame(MESSAGE), b"identity"),
    "empty-message": (frame(b""), None),
    "gzip": (frame(gzip.compress(MESSAGE), 1), b"gzip"),
    "deflate": (frame(zlib.compress(MESSAGE), 1), b"deflate"),
}


@pytest.mark.parametrize(("body", "encoding"), DECODE_OK.values(), ids=DECODE_OK.keys())
def test_decode_unary_request(body: bytes, encoding: bytes | None) -> None:
    want = b"" if body == frame(b"") else MESSAGE
    assert decode_unary_request(body, encoding) == want


DECODE_BAD: Final = {
    "empty": (b"", None, 13, "missing"),
    "short-prefix": (b"\x00\x00\x00", None, 13, "missing"),
    "truncated": (frame(MESSAGE)[:-1], None, 13, "exactly one"),
    "trailing": (frame(MESSAGE) + b"\x00", None, 13, "exactly one"),
    "compressed-no-encoding": (frame(MESSAGE, 1), None, 13, "without grpc-encoding"),
    "compressed-identity": (frame(MESSAGE, 1), b"identity", 13, "without grpc-encoding"),
    "unsupported": (frame(MESSAGE, 1), b"snappy", 12, "snappy"),
    "bad-gzip": (frame(b"not gzip", 1), b"gzip", 13, "decompress"),
    "bad-flag": (frame(MESSAGE, 2), None, 13, "flag"),
    "too-large": (b"\x00\x7f\xff\xff\xff", None, 8, "larger than max"),
}


@pytest.mark.parametrize(
    ("body", "encoding", "code", "needle"), DECODE_BAD.values(), ids=DECODE_BAD.keys()
)
def test_decode_unary_request_errors(
    body: bytes, encoding: bytes | None, code: int, needle: str
) -> None:
    with pytest.raises(GrpcStatusError) as info:
        decode_unary_request(body, encoding)
    assert info.value.code == code
    assert needle in info.value.message


def test_status_headers() -> None:
    assert status_trailers(0) == [(b"grpc-status", b"0")]
    assert status_trailers(3, "since: bad") == [(b"grpc-status", b"3"), (b"grpc-message", b"since: bad")]
    only = trailers_only(14, "gone 100%")
    assert only[:2] == [(b":status", b"200"), (b"content-type", b"application/grpc")]
    assert dict(only)[b"grpc-message"] == b"gone 100%25"
