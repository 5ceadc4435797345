/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * events.h - the event ABI between the BPF datapath and the node agent.
 *
 * Every ring-buffer record starts with struct hb_event_hdr. Enums and structs are
 * append-only: new fields go at the end, the agent accepts longer records than it
 * knows (forward compatible) and rejects shorter ones as truncated. The Python
 * mirrors live in observer/bpf/structs.py and a test checks them against the BTF
 * of the compiled object.
 */
#ifndef HUBBLECTL_EVENTS_H
#define HUBBLECTL_EVENTS_H

/* Record types: Cilium's monitor message numbering, so that flow.CiliumEventType
 * carries the same numbers Hubble's does. */
enum hb_event_type {
	HB_EVENT_DROP = 1,
	HB_EVENT_DEBUG = 2,
	HB_EVENT_CAPTURE = 3,
	HB_EVENT_TRACE = 4,
	HB_EVENT_POLICY_VERDICT = 5,
};

/* Trace observation points: Cilium's datapath numbering (sub_type of a trace). */
enum hb_obs_point {
	HB_OBS_TO_ENDPOINT = 0,
	HB_OBS_TO_PROXY = 1,
	HB_OBS_TO_HOST = 2,
	HB_OBS_TO_STACK = 3,
	HB_OBS_TO_OVERLAY = 4,
	HB_OBS_FROM_ENDPOINT = 5,
};

/* Connection-tracking state of the packet (becomes flow.trace_reason). */
enum hb_ct_state {
	HB_CT_UNKNOWN = 0,
	HB_CT_NEW = 1,
	HB_CT_ESTABLISHED = 2,
	HB_CT_REPLY = 3,
	HB_CT_RELATED = 4,
};

/* Why this record was emitted (monitor aggregation), bit flags. */
enum hb_report_reason {
	HB_REPORT_EVERY_PACKET = 1 << 0, /* aggregation level none */
	HB_REPORT_NEW_CONN = 1 << 1,
	HB_REPORT_NEW_FLAGS = 1 << 2,
	HB_REPORT_CLOSE = 1 << 3,
	HB_REPORT_PERIODIC = 1 << 4,
	HB_REPORT_VERDICT = 1 << 5, /* drop or policy verdict: always reported */
};

/* Policy verdict direction: Cilium's datapath constants. */
enum hb_policy_dir {
	HB_POLICY_INGRESS = 1,
	HB_POLICY_EGRESS = 2,
};

struct hb_event_hdr {
	__u8 type;      /* enum hb_event_type */
	__u8 sub_type;  /* trace: enum hb_obs_point; drop: drop reason; verdict: 0 */
	__u16 len;      /* length of the whole record in bytes */
	__u32 cpu;      /* bpf_get_smp_processor_id() */
	__u64 ts_ns;    /* bpf_ktime_get_boot_ns() */
};

/* One packet-level observation (trace, drop or policy verdict). 120 bytes. */
struct hb_flow_event {
	struct hb_event_hdr hdr;
	__u32 ifindex;        /* interface the program is attached to */
	__u32 ep_id;          /* endpoint ID owning that interface, 0 if unknown */
	__u32 pkt_len;        /* skb->len */
	__u32 drop_reason;    /* Cilium drop code for drops, else 0 */
	__u8 obs_point;       /* enum hb_obs_point */
	__u8 ip_version;      /* 4, 6, or 0 for non-IP */
	__u8 l4_proto;        /* IPPROTO_* of the transport header found, 0 if none */
	__u8 tcp_flags;       /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80 */
	__u8 ct_state;        /* enum hb_ct_state */
	__u8 is_reply;        /* 1 if the packet goes in the connection's reply direction */
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 sport;          /* host byte order; ICMP echo id in sport for echo messages */
	__u16 dport;          /* host byte order */
	__u8 saddr[16];       /* IPv4 in the first 4 bytes, network order */
	__u8 daddr[16];
	__u8 eth_src[6];
	__u8 eth_dst[6];
	__u32 src_identity;   /* from the ipcache, 0 if not looked up */
	__u32 dst_identity;
	__u8 policy_match_type; /* 0 none, 1 L3-only, 2 L3-L4, 3 L4-only, 4 all */
	__u8 policy_dir;      /* enum hb_policy_dir, 0 for traces */
	__u8 audited;         /* policy audit mode: would have been dropped */
	__u8 report_reason;   /* enum hb_report_reason bits */
	__u32 policy_rule_id; /* userspace index of the deciding rule, 0 = default */
	__u32 agg_packets;    /* packets of this connection direction since the last report */
	__u32 _pad0;
	__u64 agg_bytes;      /* bytes of this connection direction since the last report */
};

#endif /* HUBBLECTL_EVENTS_H */
