"""``-o compact`` (the default): one line per flow.

``<TIME>[ [<node>]]: <SRC> <SRC-ID> <ARROW> <DST> <DST-ID> <TYPE> <VERDICT> (<SUMMARY>)``;
replies (``is_reply=true``) swap the sides and point ``<-``, unknown direction prints ``<>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hubblectl.printer import fields
from hubblectl.printer.base import LostEventText, Response, TextPrinter
from hubblectl.printer.options import Colors


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
    def format_flow(self, response: Response, flow: Mapping[str, Any]) -> str:
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

    def format_lost(self, response: Response) -> str:
        lost = LostEventText(response, self.opts)
        node = (
            f" [{fields.node_name(response.get('node_name'))}]" if self.opts.print_node_name else ""
        )
        when = fields.format_time(response.get("time"), self.opts.time_format)
        return (
            f"{when}{node} EVENTS LOST: {lost.source} CPU({lost.cpu}) {lost.count}{lost.window}\n"
        )
