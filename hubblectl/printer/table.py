"""``-o table``: tab-aligned columns, header once, written when the printer closes.

Alignment follows Go's ``text/tabwriter`` as Hubble configures it (minwidth 2, padding 3,
spaces): every cell but a row's last is padded to its column's widest cell plus 3 (at least
2); the last cell is written as is. Widths count code points, as Go counts runes. Tables are
never coloured (Hubble disables colour for them) and cannot follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hubblectl.printer import fields
from hubblectl.printer.base import LostEventText, Response, TextPrinter
from hubblectl.printer.options import Colors, PrinterOptions


def render_table(rows: Sequence[Sequence[str]], *, minwidth: int = 2, padding: int = 3) -> str:
    """Lay out rows like Go's tabwriter; each row is newline-terminated."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            width = max(minwidth, len(cell) + padding)
            if i >= len(widths):
                widths.append(width)
            elif width > widths[i]:
                widths[i] = width
    out: list[str] = []
    for row in rows:
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        if row:
            parts.append(row[-1])
        out.append("".join(parts) + "\n")
    return "".join(out)


def header(opts: PrinterOptions) -> list[str]:
    cols = ["TIMESTAMP"]
    if opts.print_node_name:
        cols.append("NODE")
    cols += ["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    return cols


class TablePrinter(TextPrinter):
    def __init__(self, opts: PrinterOptions, out: Any, err: Any) -> None:
        super().__init__(opts, out, err)
        self.colors = Colors(False)
        self.rows: list[list[str]] = []

    def _row(self, cells: list[str]) -> str:
        if not self.rows:
            self.rows.append(header(self.opts))
        self.rows.append(cells)
        return ""

    def format_flow(self, response: Response, flow: Mapping[str, Any]) -> str:
        opts = self.opts
        src, dst = fields.hostnames(flow, translate=opts.translate_ips, colors=self.colors)
        cells = [fields.format_time(flow.get("time"), opts.time_format)]
        if opts.print_node_name:
            cells.append(fields.node_name(flow.get("node_name")))
        cells += [
            src,
            dst,
            fields.flow_type(flow),
            fields.verdict(flow, self.colors, print_policy_names=opts.print_policy_names),
            fields.summary(flow, self.colors),
        ]
        return self._row(cells)

    def format_lost(self, response: Response) -> str:
        opts = self.opts
        lost = LostEventText(response, opts)
        cells = [fields.format_time(response.get("time"), opts.time_format)]
        if opts.print_node_name:
            cells.append(fields.node_name(response.get("node_name")))
        cells += [lost.source, "", "EVENTS LOST", "", lost.summary]
        return self._row(cells)

    def close(self) -> None:
        if self._closed:
            return
        if self.rows:
            self._emit(render_table(self.rows))
            self.rows = []
        super().close()
