"""``-o json`` / ``-o jsonpb`` (identical): one compact GetFlowsResponse JSON object per line.

JSON lines from the server are written as they arrive (no decode/encode), which is what makes
``observe -o json`` fast; dicts are encoded with orjson, keys in the order they have (the
canonical flow dict keeps protojson's declaration order). Raw control bytes, which valid JSON
never contains, are turned into ``\\u00XX`` escapes so a misbehaving server cannot reach the
terminal. Node-status events go to stderr, as Hubble prints them.
"""

from __future__ import annotations

from typing import BinaryIO, TextIO

import orjson

from hubblectl.printer.base import Response, node_status_visible, response_kind
from hubblectl.printer.escape import sanitize_json
from hubblectl.printer.options import PrinterOptions


def _binary(stream: TextIO) -> BinaryIO | None:
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else None


def encode_response(response: Response) -> bytes:
    """One JSON line (newline-terminated)."""
    return orjson.dumps(response, option=orjson.OPT_APPEND_NEWLINE)


class JSONPrinter:
    def __init__(self, opts: PrinterOptions, out: TextIO, err: TextIO) -> None:
        self.opts = opts
        self.out = out
        self.err = err
        self._out_bin = _binary(out)
        self._err_bin = _binary(err)

    def _write(self, data: bytes, *, to_err: bool = False) -> None:
        if to_err and self.opts.silent_errors:
            return
        stream, binary = (self.err, self._err_bin) if to_err else (self.out, self._out_bin)
        if binary is not None:
            stream.flush()
            binary.write(data)
            binary.flush()
        else:
            stream.write(data.decode("utf-8", errors="replace"))
            stream.flush()

    def write(self, response: Response) -> None:
        if response_kind(response) == "node_status":
            if node_status_visible(response, self.opts.debug):
                self._write(sanitize_json(encode_response(response)), to_err=True)
            return
        self._write(sanitize_json(encode_response(response)))

    def write_json(self, data: bytes) -> None:
        if not data:
            return
        data = sanitize_json(data)
        if not data.endswith(b"\n"):
            data += b"\n"
        if b'"node_status"' not in data:
            self._write(data)
            return
        out: list[bytes] = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            if b'"node_status"' in line:
                try:
                    response = orjson.loads(line)
                except orjson.JSONDecodeError:
                    out.append(line + b"\n")
                    continue
                if isinstance(response, dict) and response_kind(response) == "node_status":
                    if out:
                        self._write(b"".join(out))
                        out.clear()
                    if node_status_visible(response, self.opts.debug):
                        self._write(line + b"\n", to_err=True)
                    continue
            out.append(line + b"\n")
        if out:
            self._write(b"".join(out))

    def close(self) -> None:
        self.out.flush()
