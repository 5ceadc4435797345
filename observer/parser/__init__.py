"""Pure parsing: ring-buffer bytes -> ``FlowEvent`` -> GetFlowsResponse dicts (Hubble JSON shape).

No I/O and no clock: the caller passes wall-clock times. Decoding raises only ``DecodeError``.
"""

from __future__ import annotations

from observer.parser.dropreasons import drop_reason_name, drop_reason_text
from observer.parser.events import FlowDecoder, FlowEvent, decode_flow_event
from observer.parser.flow import FlowBuilder, endpoint_dict
from observer.parser.lost import lost_event, lost_events_response
from observer.parser.summary import summarize
from observer.parser.timestamps import TimestampFormatter, format_timestamp

__all__ = [
    "FlowBuilder",
    "FlowDecoder",
    "FlowEvent",
    "TimestampFormatter",
    "decode_flow_event",
    "drop_reason_name",
    "drop_reason_text",
    "endpoint_dict",
    "format_timestamp",
    "lost_event",
    "lost_events_response",
    "summarize",
]
