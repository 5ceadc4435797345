"""``-o dict``: one block of ``KEY: value`` lines per flow, blocks separated by dashes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hubblectl.printer import fields
from hubblectl.printer.base import (
    DICT_SEPARATOR,
    LostEventText,
    Response,
    TextPrinter,
    node_status_dict,
)


class DictPrinter(TextPrinter):
    def _separator(self) -> str:
        return DICT_SEPARATOR + "\n" if self.line else ""

    def format_flow(self, response: Response, flow: Mapping[str, Any]) -> str:
        opts = self.opts
        src, dst = fields.hostnames(flow, translate=opts.translate_ips, colors=self.colors)
        lines = [self._separator()]
        lines.append(f"  TIMESTAMP: {fields.format_time(flow.get('time'), opts.time_format)}\n")
        if opts.print_node_name:
            lines.append(f"       NODE: {fields.node_name(flow.get('node_name'))}\n")
        verdict = fields.verdict(flow, self.colors, print_policy_names=opts.print_policy_names)
        lines.append(
            f"     SOURCE: {src}\n"
            f"DESTINATION: {dst}\n"
            f"       TYPE: {fields.flow_type(flow)}\n"
            f"    VERDICT: {verdict}\n"
            f"    SUMMARY: {fields.summary(flow, self.colors)}\n"
        )
        return "".join(lines)

    def format_lost(self, response: Response) -> str:
        opts = self.opts
        lost = LostEventText(response, opts)
        lines = [self._separator()]
        lines.append(f"  TIMESTAMP: {fields.format_time(response.get('time'), opts.time_format)}\n")
        if opts.print_node_name:
            lines.append(f"       NODE: {fields.node_name(response.get('node_name'))}\n")
        lines.append(
            f"     SOURCE: {lost.source}\n"
            "       TYPE: EVENTS LOST\n"
            "    VERDICT: \n"
            f"    SUMMARY: {lost.summary}\n"
        )
        return "".join(lines)

    def format_node_status(self, response: Response) -> str:
        # Hubble keeps the separators in step when stdout and stderr interleave.
        if self.line:
            prefix = DICT_SEPARATOR + "\n"
        else:
            prefix = ""
            self.line += 1
        return prefix + node_status_dict(response, self.opts)
