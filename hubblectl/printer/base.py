"""The printer protocol and the machinery the text formats share.

A printer receives GetFlowsResponse dicts (``write``) or newline-terminated GetFlowsResponse
JSON lines exactly as the batched stream or an input file carries them (``write_json``), and
``close`` flushes what it buffered (the table). Formatting is pure (``fields``); printers only
decide where text goes: flows and lost events to ``out``, relay node-status events to ``err``
(hidden unless they report trouble or ``debug`` is set, as in Hubble).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol, TextIO

import orjson

from hubblectl.errors import ServerError
from hubblectl.printer import fields
from hubblectl.printer.escape import escape, go_quote
from hubblectl.printer.options import Colors, PrinterOptions

Response = Mapping[str, Any]

NODE_NAMES_CUTOFF: Final = 50
DICT_SEPARATOR: Final = "------------"
SHOWN_NODE_STATES: Final = frozenset({"NODE_ERROR", "NODE_UNAVAILABLE"})


class Printer(Protocol):
    """What ``hubblectl observe`` writes flows through."""

    def write(self, response: Response) -> None:
        """Print one GetFlowsResponse dict."""

    def write_json(self, data: bytes) -> None:
        """Print newline-terminated GetFlowsResponse JSON lines (one or many)."""

    def close(self) -> None:
        """Flush anything buffered. Idempotent."""


def response_kind(response: Response) -> str:
    """``flow``, ``lost_events``, ``node_status`` or ``""`` (unknown / empty)."""
    for kind in ("flow", "lost_events", "node_status"):
        if kind in response:
            return kind
    return ""


def node_status_visible(response: Response, debug: bool) -> bool:
    status = response.get("node_status")
    if not isinstance(status, dict):
        return debug
    return debug or str(status.get("state_change", "")) in SHOWN_NODE_STATES


def node_status_line(response: Response, opts: PrinterOptions) -> str:
    """The compact/table rendering of a relay node-status event (without newline)."""
    status = response.get("node_status")
    status = status if isinstance(status, dict) else {}
    names_raw = status.get("node_names")
    names = [escape(str(n)) for n in names_raw] if isinstance(names_raw, list) else []
    joined = fields.join_with_cutoff(names, ", ", NODE_NAMES_CUTOFF)
    prefix = (
        f"{fields.format_time(response.get('time'), opts.time_format)} "
        f"[{fields.node_name(response.get('node_name'))}]"
    )
    state = str(status.get("state_change", "UNKNOWN_NODE_STATE"))
    count = len(names)
    if state == "NODE_CONNECTED":
        return f"{prefix}: Receiving flows from {count} nodes: {joined}"
    if state == "NODE_UNAVAILABLE":
        return f"{prefix}: {count} nodes are unavailable: {joined}"
    if state == "NODE_GONE":
        return f"{prefix}: {count} nodes removed from cluster: {joined}"
    if state == "NODE_ERROR":
        message = go_quote(str(status.get("message", "")))
        return f"{prefix}: Error {message} on {count} nodes: {joined}"
    return f"{prefix}: unknown node status event: state_change={escape(state)} nodes={joined}"


def node_status_dict(response: Response, opts: PrinterOptions) -> str:
    """The dict rendering of a node-status event (four lines, newline-terminated)."""
    status = response.get("node_status")
    status = status if isinstance(status, dict) else {}
    names_raw = status.get("node_names")
    names = [escape(str(n)) for n in names_raw] if isinstance(names_raw, list) else []
    message = str(status.get("message", "") or "")
    return (
        f"  TIMESTAMP: {fields.format_time(response.get('time'), opts.time_format)}\n"
        f"      STATE: {escape(str(status.get('state_change', 'UNKNOWN_NODE_STATE')))}\n"
        f"      NODES: {fields.join_with_cutoff(names, ', ', NODE_NAMES_CUTOFF)}\n"
        f"    MESSAGE: {go_quote(message) if message else 'N/A'}\n"
    )


class LostEventText:
    """Pieces of a lost-event rendering: source enum, CPU, count and the optional window."""

    __slots__ = ("count", "cpu", "source", "window")

    def __init__(self, response: Response, opts: PrinterOptions) -> None:
        lost = response.get("lost_events")
        lost = lost if isinstance(lost, dict) else {}
        self.source = escape(
            str(lost.get("source", "UNKNOWN_LOST_EVENT_SOURCE") or "UNKNOWN_LOST_EVENT_SOURCE")
        )
        self.cpu = fields.as_int(lost.get("cpu"))
        self.count = fields.as_int(lost.get("num_events_lost"))
        first, last = lost.get("first"), lost.get("last")
        if first is None and last is None:
            self.window = ""
        else:
            self.window = (
                f" (first: {fields.format_time(first, opts.time_format)}, "
                f"last: {fields.format_time(last, opts.time_format)})"
            )

    @property
    def summary(self) -> str:
        return f"CPU({self.cpu}) - {self.count}{self.window}"


def parse_json_lines(data: bytes) -> list[Response]:
    """Decode newline-framed response JSON; a line that is not an object is a server error."""
    out: list[Response] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise ServerError(f"server sent a malformed flow line: {err}") from err
        if not isinstance(obj, dict):
            raise ServerError("server sent a flow line that is not a JSON object")
        out.append(obj)
    return out


class TextPrinter:
    """Shared plumbing of compact, dict and table: buffering, stderr, dispatch."""

    def __init__(self, opts: PrinterOptions, out: TextIO, err: TextIO) -> None:
        self.opts = opts
        self.out = out
        self.err = err
        self.colors = Colors(opts.color)
        self.line = 0
        self._pending: list[str] = []
        self._closed = False

    # -- subclass hooks ---------------------------------------------------------------
    def format_flow(self, response: Response, flow: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def format_lost(self, response: Response) -> str:
        raise NotImplementedError

    def format_node_status(self, response: Response) -> str:
        return node_status_line(response, self.opts) + "\n"

    # -- output -----------------------------------------------------------------------
    def _emit(self, text: str) -> None:
        self._pending.append(text)

    def _emit_err(self, text: str) -> None:
        if self.opts.silent_errors:
            return
        self._flush_out()
        self.err.write(text)
        self.err.flush()

    def _flush_out(self) -> None:
        if self._pending:
            self.out.write("".join(self._pending))
            self._pending.clear()
            self.out.flush()

    def _dispatch(self, response: Response) -> None:
        kind = response_kind(response)
        if kind == "flow":
            flow = response["flow"]
            if isinstance(flow, dict):
                self._emit(self.format_flow(response, flow))
                self.line += 1
        elif kind == "lost_events":
            self._emit(self.format_lost(response))
            self.line += 1
        elif kind == "node_status":
            if node_status_visible(response, self.opts.debug):
                self._emit_err(self.format_node_status(response))
        elif self.opts.debug and response:
            keys = ", ".join(escape(str(k)) for k in response)
            self._emit_err(f"unknown response type with keys: {keys}\n")

    def write(self, response: Response) -> None:
        self._dispatch(response)
        self._flush_out()

    def write_json(self, data: bytes) -> None:
        for response in parse_json_lines(data):
            self._dispatch(response)
        self._flush_out()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._flush_out()
