"""``-o compact`` (the default): one line per flow.

``<TIME>[ [<node>]]: <SRC> <SRC-ID> <ARROW> <DST> <DST-ID> <TYPE> <VERDICT> (<SUMMARY>)``;
replies (``is_reply=true``) swap the sides and point ``<-``, unknown direction prints ``<>``.

``format_flow`` is the generic formatter, field by field. ``CompactPrinter`` first tries the
fast path of ``compact_fast`` (specialised once per set of options) and falls back to the
generic formatter for any flow the fast path declines; both print the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from hubblectl.errors import ServerError
from hubblectl.printer import fields
from hubblectl.printer.base import LostEventText, Response, TextPrinter
from hubblectl.printer.compact_fast import make_fast_formatter
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


class CompactPrinter(TextPrinter):
    """``fast=False`` uses the generic formatter only (tests and benchmarks compare them)."""

    def __init__(
        self, opts: PrinterOptions, out: TextIO, err: TextIO, *, fast: bool = True
    ) -> None:
        super().__init__(opts, out, err)
        self._fast = make_fast_formatter(opts, self.colors) if fast else None

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
            items = self._format_chunk(data)
        except Exception:  # the generic path reports it
            super().write_json(data)
            return
        emit = self._emit
        for item in items:
            if type(item) is str:
                emit(item)
                self.line += 1
            else:
                self._dispatch(item)  # type: ignore[arg-type]
        self._flush_out()

    def _format_chunk(self, data: bytes) -> list[str | Response]:
        """Formatted flow lines, and the other responses still to dispatch, in order."""
        items: list[str | Response] = []
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
        return items

    def format_lost(self, response: Response) -> str:
        lost = LostEventText(response, self.opts)
        node = (
            f" [{fields.node_name(response.get('node_name'))}]" if self.opts.print_node_name else ""
        )
        when = fields.format_time(response.get("time"), self.opts.time_format)
        return (
            f"{when}{node} EVENTS LOST: {lost.source} CPU({lost.cpu}) {lost.count}{lost.window}\n"
        )
