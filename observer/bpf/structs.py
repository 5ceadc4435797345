"""Python mirrors of the C structs in bpf/lib/events.h (the event ABI).

Each mirror is a ``struct.Struct`` plus a field table (name, offset, size) that
``tests/privileged/bpf/test_abi.py`` compares with the BTF of the compiled object, in the
spirit of Tetragon's alignchecker. Keep both in step with events.h; the ABI is append-only.
"""

from __future__ import annotations

import struct
from typing import Final

# enum hb_event_type (Cilium monitor numbering)
EVENT_DROP: Final = 1
EVENT_DEBUG: Final = 2
EVENT_CAPTURE: Final = 3
EVENT_TRACE: Final = 4
EVENT_POLICY_VERDICT: Final = 5

# enum hb_obs_point (Cilium datapath numbering)
OBS_TO_ENDPOINT: Final = 0
OBS_TO_PROXY: Final = 1
OBS_TO_HOST: Final = 2
OBS_TO_STACK: Final = 3
OBS_TO_OVERLAY: Final = 4
OBS_FROM_ENDPOINT: Final = 5

# enum hb_ct_state
CT_UNKNOWN: Final = 0
CT_NEW: Final = 1
CT_ESTABLISHED: Final = 2
CT_REPLY: Final = 3
CT_RELATED: Final = 4

# enum hb_report_reason (bits)
REPORT_EVERY_PACKET: Final = 1 << 0
REPORT_NEW_CONN: Final = 1 << 1
REPORT_NEW_FLAGS: Final = 1 << 2
REPORT_CLOSE: Final = 1 << 3
REPORT_PERIODIC: Final = 1 << 4
REPORT_VERDICT: Final = 1 << 5

# enum hb_policy_dir
POLICY_INGRESS: Final = 1
POLICY_EGRESS: Final = 2

# TCP flag bits as in the TCP header's flags byte
TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10
TCP_URG: Final = 0x20
TCP_ECE: Final = 0x40
TCP_CWR: Final = 0x80

# struct hb_event_hdr
EVENT_HDR: Final = struct.Struct("<BBHIQ")
EVENT_HDR_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("type", 0, 1),
    ("sub_type", 1, 1),
    ("len", 2, 2),
    ("cpu", 4, 4),
    ("ts_ns", 8, 8),
)

# struct hb_flow_event (the header is unpacked with it: one unpack per record)
FLOW_EVENT: Final = struct.Struct("<BBHIQ" "IIII" "BBBBBBBB" "HH" "16s16s" "6s6s" "II" "BBBB" "III" "Q")
FLOW_EVENT_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("hdr", 0, 16),
    ("ifindex", 16, 4),
    ("ep_id", 20, 4),
    ("pkt_len", 24, 4),
    ("drop_reason", 28, 4),
    ("obs_point", 32, 1),
    ("ip_version", 33, 1),
    ("l4_proto", 34, 1),
    ("tcp_flags", 35, 1),
    ("ct_state", 36, 1),
    ("is_reply", 37, 1),
    ("icmp_type", 38, 1),
    ("icmp_code", 39, 1),
    ("sport", 40, 2),
    ("dport", 42, 2),
    ("saddr", 44, 16),
    ("daddr", 60, 16),
    ("eth_src", 76, 6),
    ("eth_dst", 82, 6),
    ("src_identity", 88, 4),
    ("dst_identity", 92, 4),
    ("policy_match_type", 96, 1),
    ("policy_dir", 97, 1),
    ("audited", 98, 1),
    ("report_reason", 99, 1),
    ("policy_rule_id", 100, 4),
    ("agg_packets", 104, 4),
    ("_pad0", 108, 4),
    ("agg_bytes", 112, 8),
)
FLOW_EVENT_SIZE: Final = 120

assert FLOW_EVENT.size == FLOW_EVENT_SIZE
assert EVENT_HDR.size == 16
