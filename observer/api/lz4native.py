"""LZ4 blocks decompressed straight into one buffer, through ctypes (no Python headers).

``wire.decode_flow_batch`` turns a FlowBatch's LZ4 blocks into one ``bytes`` of lines (each
block's lines plus a newline). ``lz4.block.decompress`` makes a ``bytes`` per block, which then
has to be joined: a second copy of every line. Here ``LZ4_decompress_safe`` (the LZ4 library's
stable API: the system's liblz4.so.1, else the copy inside python-lz4's extension module)
writes each block in place into one new ``bytes`` object, before anything else sees it.
``inflate`` returns None where neither library nor CPython's ``PyBytes_FromStringAndSize`` is
reachable: the caller then takes the Python way, with the same result
(tests/unit/api/test_api_wire_lz4.py compares the two).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Sequence
from ctypes import c_char_p, c_int, c_ssize_t, c_void_p
from dataclasses import dataclass
from typing import Any

_NEWLINE = 10


class InflateError(ValueError):
    """A block that does not decompress to its announced size (the message says how)."""


@dataclass(frozen=True, slots=True)
class _Functions:
    decompress: Any
    new_bytes: Callable[[None, int], bytes]


def _candidates() -> list[str]:
    out: list[str] = []
    found = ctypes.util.find_library("lz4")
    if found:
        out.append(found)
    out.append("liblz4.so.1")
    try:
        import lz4.block._block as ext

        out.append(str(ext.__file__))
    except (ImportError, AttributeError):
        pass
    return out


@functools.cache
def load_functions() -> _Functions | None:
    """``LZ4_decompress_safe`` and ``PyBytes_FromStringAndSize``, or None."""
    try:
        new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
    except AttributeError:
        return None
    for name in _candidates():
        try:
            decompress = ctypes.CDLL(name).LZ4_decompress_safe
        except (OSError, AttributeError):
            continue
        decompress.restype = c_int
        decompress.argtypes = (c_void_p, c_void_p, c_int, c_int)
        new_bytes.restype = ctypes.py_object
        new_bytes.argtypes = (c_void_p, c_ssize_t)
        return _Functions(decompress, new_bytes)
    return None


def _address(data: bytes) -> int:
    """Where a ``bytes`` object's contents are (c_char_p of a bytes object points into it)."""
    value = ctypes.cast(c_char_p(data), c_void_p).value
    assert value is not None
    return value


def inflate(data: bytes, spans: Sequence[tuple[int, int]], sizes: Sequence[int]) -> bytes | None:
    """The LZ4 blocks ``data[start:stop]`` of ``spans``, each decompressed (to exactly its
    ``sizes`` entry, else InflateError) and followed by a newline, in one ``bytes``; None
    when the native functions are not available."""
    fn = load_functions()
    if fn is None or not isinstance(data, bytes):
        return None
    total = sum(sizes) + len(sizes)
    out = fn.new_bytes(None, total)
    src, dst = _address(data), _address(out)
    decompress = fn.decompress
    pos = 0
    for (start, stop), size in zip(spans, sizes, strict=True):
        if size > 0x7FFFFFFF or stop - start > 0x7FFFFFFF:
            raise InflateError(f"an LZ4 block of {size} bytes is too large")
        got = decompress(src + start, dst + pos, stop - start, size)
        if got < 0:
            raise InflateError(f"an LZ4 block does not decompress (error {got})")
        if got != size:
            raise InflateError(f"an LZ4 block of {got} bytes, {size} announced")
        pos += size
        ctypes.memset(dst + pos, _NEWLINE, 1)
        pos += 1
    return out
