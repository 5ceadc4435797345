"""``-o compact`` (the default): one line per flow.

``<TIME>[ [<node>]]: <SRC> <SRC-ID> <ARROW> <DST> <DST-ID> <TYPE> <VERDICT> (<SUMMARY>)``;
replies (``is_reply=true``) swap the sides and point ``<-``, unknown direction prints ``<>``.

``format_flow`` is the generic formatter, field by field. ``CompactPrinter`` first tries the
fast path of ``compact_fast`` (specialised once per set of options) and falls back to the
generic formatter for any flow the fast path declines; both print the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TextIO

import orjson

from hubblectl.errors import HubblectlError, ServerError
from hubblectl.printer import compact_fast, fields
from hubblectl.printer.base import LostEventText, Response, TextPrinter
from hubblectl.printer.compact_fast import make_fast_formatter
from hubblectl.printer.compact_native import (
    DECLINED,
    MISS_TEMPLATE,
    MISS_TIME,
    OTHER,
    NativeCompact,
    load_functions,
)
from hubblectl.printer.options import Colors, PrinterOptions


def format_flow(
    response: Response,
    flow: Mapping[str, Any],
    *,
    time_format: str,
    print_node_name: bool,
    translate: bool,
    print_policy_names: bool,
    colors: Colors,
) -> str:
    """One compact line (newline-terminated)."""
    src, dst = fields.hostnames(flow, translate=translate, colors=colors)
    src_id, dst_id = fields.identities(flow, colors)
    reply = fields.reply_state(flow)
    if reply:
        src, dst = dst, src
        src_id, dst_id = dst_id, src_id
    node = f" [{fields.node_name(flow.get('node_name'))}]" if print_node_name else ""
    return (
        f"{fields.format_time(flow.get('time'), time_format)}{node}: "
        f"{src} {src_id} {fields.arrow(flow)} {dst} {dst_id} "
        f"{fields.flow_type(flow)} "
        f"{fields.verdict(flow, colors, print_policy_names=print_policy_names)} "
        f"({fields.summary(flow, colors)})\n"
    )


WINDOW_LINES: Final = 1024
PAUSE_LINES: Final = 16 * WINDOW_LINES


class CompactPrinter(TextPrinter):
    """``fast=False`` uses the generic formatter only (tests and benchmarks compare them).

    ``native``: ``None`` renders JSON chunks with the native path (``compact_native``) when
    the library loads, ``False`` never does (the Python fast path), ``True`` requires it
    (``HubblectlError`` if it does not load).
    """

    def __init__(
        self,
        opts: PrinterOptions,
        out: TextIO,
        err: TextIO,
        *,
        fast: bool = True,
        native: bool | None = None,
    ) -> None:
        super().__init__(opts, out, err)
        self._fast = make_fast_formatter(opts, self.colors) if fast else None
        self._native: NativeCompact | None = None
        # Back-off: flow lines seen and template misses in the current window, and how many
        # lines still go through the Python path after a window where most lines missed
        # (flows that never share a template, e.g. a unique non-ASCII Summary each: there
        # the native path only adds its scan and the teaching to the Python path's work).
        self._window = [0, 0]
        self._paused = 0
        if self._fast is not None and native is not False:
            fns = load_functions()
            if fns is not None:
                self._native = NativeCompact(fns, opts, compact_fast.CACHE_LIMIT)
            elif native:
                raise HubblectlError(
                    "the native compact renderer is not available (build it with `make -C native`)"
                )

    @property
    def native(self) -> bool:
        """Whether JSON chunks go through the native path."""
        return self._native is not None

    def format_flow(self, response: Response, flow: Mapping[str, Any]) -> str:
        if self._fast is not None:
            try:
                text = self._fast.by_fields(flow)
            except Exception:  # never worse than the generic path
                text = None
            if text is not None:
                return text
        return self.generic_format_flow(response, flow)

    def generic_format_flow(self, response: Response, flow: Mapping[str, Any]) -> str:
        opts = self.opts
        return format_flow(
            response,
            flow,
            time_format=opts.time_format,
            print_node_name=opts.print_node_name,
            translate=opts.translate_ips,
            print_policy_names=opts.print_policy_names,
            colors=self.colors,
        )

    def write_json(self, data: bytes) -> None:
        """As ``TextPrinter.write_json``, with parsing and flow formatting in one pass.

        Formatting is pure, so it can run while the chunk is parsed; what has side effects
        (output, node-status events to stderr) happens only once the whole chunk parsed. If
        anything raises, the chunk goes through the generic path again, which raises the same
        way at the same point (a malformed line before any output of its chunk).
        """
        if self._fast is None:
            super().write_json(data)
            return
        try:
            if self._native is not None and self._paused <= 0:
                items, lines = self._format_chunk_native(bytes(data))
            else:
                items, lines = self._format_chunk(data)
                self._paused -= lines
        except Exception:  # the generic path reports it
            super().write_json(data)
            return
        emit = self._emit
        self.line += lines
        for item in items:
            if type(item) is str:
                emit(item)
            else:
                self._dispatch(item)  # type: ignore[arg-type]
        self._flush_out()

    def _format_chunk(self, data: bytes) -> tuple[list[str | Response], int]:
        """Formatted flow lines, and the other responses still to dispatch, in order; and
        the number of flow lines."""
        items: list[str | Response] = []
        lines = 0
        append = items.append
        loads = orjson.loads
        assert self._fast is not None
        fast = self._fast.from_json
        for line in data.split(b"\n"):
            if not line or line.isspace():
                continue
            response = loads(line)
            if type(response) is not dict:
                raise ServerError("server sent a flow line that is not a JSON object")
            if "flow" not in response:
                append(response)
                continue
            flow = response["flow"]
            if not isinstance(flow, dict):
                continue  # as TextPrinter._dispatch: a flow that is not an object prints nothing
            text = None
            try:
                text = fast(flow)
            except Exception:  # never worse than the generic path
                text = None
            append(text if text is not None else self.generic_format_flow(response, flow))
            lines += 1
        return items, lines

    def _format_chunk_native(self, data: bytes) -> tuple[list[str | Response], int]:
        """``_format_chunk`` with the native path: runs of lines the C code renders, and
        each line it declines formatted here (teaching it the line's template and time)."""
        native = self._native
        fast = self._fast
        assert native is not None and fast is not None
        items: list[str | Response] = []
        lines = misses = 0
        pos, end = 0, len(data)
        while pos < end:
            done = native.render(data, pos)
            if done.text:
                items.append(done.text)
                lines += done.lines
            pos = done.stop
            if done.status != DECLINED:
                continue  # the end, or a full buffer: go on from pos
            line = data[pos : done.decline_end]
            pos = done.decline_end
            response = orjson.loads(line)
            if type(response) is not dict:
                raise ServerError("server sent a flow line that is not a JSON object")
            if "flow" not in response:
                items.append(response)
                continue
            flow = response["flow"]
            if not isinstance(flow, dict):
                continue  # as TextPrinter._dispatch: a flow that is not an object prints nothing
            text = None
            try:
                text = fast.from_json(flow)
            except Exception:  # never worse than the generic path
                text = None
            if text is not None and done.reasons & (MISS_TIME | MISS_TEMPLATE):
                self._teach(native, line, flow, done.reasons)  # (raising: the generic path)
            items.append(text if text is not None else self.generic_format_flow(response, flow))
            lines += 1
            misses += bool(done.reasons & MISS_TEMPLATE)
        self._back_off(lines, misses)
        return items, lines

    def _back_off(self, lines: int, misses: int) -> None:
        """Pause the native path for PAUSE_LINES lines after a window of WINDOW_LINES flow
        lines of which more than half needed a new template."""
        window = self._window
        window[0] += lines
        window[1] += misses
        if window[0] >= WINDOW_LINES:
            if 2 * window[1] > window[0]:
                self._paused = PAUSE_LINES
            window[0] = window[1] = 0

    def _teach(
        self, native: NativeCompact, line: bytes, flow: Mapping[str, Any], reasons: int
    ) -> None:
        """Give the C side what it lacked for a line the Python path printed."""
        assert self._fast is not None
        if reasons & OTHER:
            return  # it would decline the line anyway
        if reasons & MISS_TIME:
            native.learn_time(flow)
        if reasons & MISS_TEMPLATE:
            found = self._fast.json_template(flow)
            if found is not None and native.can_learn(found[3]):
                native.learn_line(line, flow, found[0])

    def format_lost(self, response: Response) -> str:
        lost = LostEventText(response, self.opts)
        node = (
            f" [{fields.node_name(response.get('node_name'))}]" if self.opts.print_node_name else ""
        )
        when = fields.format_time(response.get("time"), self.opts.time_format)
        return (
            f"{when}{node} EVENTS LOST: {lost.source} CPU({lost.cpu}) {lost.count}{lost.window}\n"
        )
