/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conntrack.h - connection tracking for observation, and monitor aggregation.
 *
 * One LRU table for all endpoints; the key carries the ifindex of the endpoint's
 * host-side interface, so both hooks of one endpoint (from-endpoint and to-endpoint)
 * share an entry per connection: a SYN leaving the endpoint creates it, the SYN-ACK
 * coming back finds it under the reversed tuple and is the reply. The original
 * direction is the direction of the packet that created the entry.
 *
 * Aggregation (the idea of Cilium's monitor aggregation, our own code): with level
 * none every packet is reported; otherwise a packet is reported when it
 *   - opens a connection (no entry under either tuple)           NEW_CONN
 *   - carries a TCP flag not yet seen in its direction            NEW_FLAGS
 *   - carries a first FIN or RST of its direction                 CLOSE (entry marked closing)
 *   - is the first of its direction after report_interval_ns      PERIODIC
 * and each report carries the packets/bytes of its direction since that direction's
 * previous report (agg_packets/agg_bytes, the reported packet included). The interval
 * is kept per direction, so a mostly one-way connection still reports its other side.
 * ICMP echo request/reply pair up by echo id; other ICMP (errors, neighbour discovery)
 * is not tracked and reported per packet. Non-first fragments and non-IP packets are not
 * tracked and are reported only with aggregation none.
 */
#ifndef HUBBLECTL_CONNTRACK_H
#define HUBBLECTL_CONNTRACK_H

#include "common.h"
#include "events.h"
#include "maps.h"
#include "parse.h"

struct hb_ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;      /* host order; ICMP echo: request (id, 0), reply (0, id) */
	__u16 dport;
	__u8 proto;
	__u8 ip_version;
	__u16 _pad;
	__u32 ifindex;    /* the endpoint's host-side interface: one table per endpoint */
};

/* hb_ct_value.closing */
#define HB_CT_FIN_ORIG (1 << 0)
#define HB_CT_FIN_REPLY (1 << 1)
#define HB_CT_RST (1 << 2)
#define HB_CT_CLOSED(c) (((c) & HB_CT_RST) || ((c) & (HB_CT_FIN_ORIG | HB_CT_FIN_REPLY)) == (HB_CT_FIN_ORIG | HB_CT_FIN_REPLY))

/* Index 0 is the original direction, 1 the reply direction. */
struct hb_ct_value {
	__u64 created_ns;
	__u64 last_report_ns[2]; /* bpf_ktime_get_boot_ns() of the last report per direction */
	__u64 bytes[2];          /* since the last report of that direction */
	__u32 pkts[2];
	__u8 flags_seen[2];      /* TCP flags ever seen per direction */
	__u8 closing;            /* HB_CT_FIN_ORIG | HB_CT_FIN_REPLY | HB_CT_RST */
	__u8 _pad[5];
};

#define HB_CT_MAX_ENTRIES 65536
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HB_CT_MAX_ENTRIES);
	__type(key, struct hb_ct_key);
	__type(value, struct hb_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_ct SEC(".maps");

/* What conntrack decided for one packet. */
struct hb_ct_result {
	__u8 ct_state;      /* enum hb_ct_state */
	__u8 is_reply;
	__u8 report_reason; /* enum hb_report_reason bits; 0 = do not report */
	__u8 _pad;
	__u32 agg_packets;
	__u64 agg_bytes;
};

static __always_inline int hb_is_icmp(const struct hb_pkt *pkt)
{
	return pkt->l4_proto == HB_IPPROTO_ICMP || pkt->l4_proto == HB_IPPROTO_ICMPV6;
}

static __always_inline void hb_ct_key_init(struct hb_ct_key *k, const struct hb_pkt *pkt, __u32 ifindex)
{
	__builtin_memcpy(k->saddr, pkt->saddr, 16);
	__builtin_memcpy(k->daddr, pkt->daddr, 16);
	k->sport = pkt->sport;
	k->dport = pkt->dport;
	if (pkt->flags & HB_PKT_F_ICMP_ECHO) {
		int request = pkt->icmp_type == HB_ICMP_ECHO || pkt->icmp_type == HB_ICMPV6_ECHO_REQUEST;

		k->sport = request ? pkt->sport : 0;
		k->dport = request ? 0 : pkt->sport;
	}
	k->proto = pkt->l4_proto;
	k->ip_version = pkt->ip_version;
	k->_pad = 0;
	k->ifindex = ifindex;
}

static __always_inline void hb_ct_key_reverse(struct hb_ct_key *r, const struct hb_ct_key *k)
{
	__builtin_memcpy(r->saddr, k->daddr, 16);
	__builtin_memcpy(r->daddr, k->saddr, 16);
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->ip_version = k->ip_version;
	r->_pad = 0;
	r->ifindex = k->ifindex;
}

/* Track the packet and decide whether (and why) it is reported. */
static __always_inline void hb_ct_process(const struct hb_pkt *pkt, __u32 ifindex, __u32 len, __u64 now,
					  const struct hb_settings *s, struct hb_ct_result *res)
{
	struct hb_ct_key fwd, rev;
	struct hb_ct_value *v;
	__u8 every = s->aggregation_level == HB_AGG_NONE ? HB_REPORT_EVERY_PACKET : 0;
	__u8 tcp = pkt->l4_proto == HB_IPPROTO_TCP;
	__u8 reason = 0;
	__u32 dir = 0;
	__u64 last;

	res->is_reply = 0;
	res->agg_packets = 1;
	res->agg_bytes = len;

	if (!pkt->ip_version || (pkt->flags & HB_PKT_F_FRAGMENT)) {
		res->ct_state = HB_CT_UNKNOWN;
		res->report_reason = every;
		return;
	}
	if (hb_is_icmp(pkt) && !(pkt->flags & HB_PKT_F_ICMP_ECHO)) {
		/* Errors belong to another flow; informational messages (neighbour
		 * discovery, router advertisements) have no connection: not cached. */
		res->ct_state = (pkt->flags & HB_PKT_F_ICMP_ERROR) ? HB_CT_RELATED : HB_CT_NEW;
		res->report_reason = HB_REPORT_EVERY_PACKET;
		return;
	}

	hb_ct_key_init(&fwd, pkt, ifindex);
	v = bpf_map_lookup_elem(&hb_ct, &fwd);
	if (!v) {
		hb_ct_key_reverse(&rev, &fwd);
		v = bpf_map_lookup_elem(&hb_ct, &rev);
		if (v)
			dir = 1;
	}
	if (v && tcp && HB_CT_CLOSED(v->closing) && (pkt->tcp_flags & (HB_TCP_SYN | HB_TCP_ACK)) == HB_TCP_SYN) {
		/* A new connection reuses the tuple of a closed one. */
		bpf_map_delete_elem(&hb_ct, dir ? &rev : &fwd);
		v = NULL;
		dir = 0;
	}

	if (!v) {
		struct hb_ct_value nv = {};

		nv.created_ns = now;
		nv.last_report_ns[0] = now;
		nv.flags_seen[0] = pkt->tcp_flags;
		reason = HB_REPORT_NEW_CONN;
		if (pkt->tcp_flags & HB_TCP_RST) {
			nv.closing = HB_CT_RST;
			reason |= HB_REPORT_CLOSE;
		} else if (pkt->tcp_flags & HB_TCP_FIN) {
			nv.closing = HB_CT_FIN_ORIG;
			reason |= HB_REPORT_CLOSE;
		}
		/* If another CPU created it meanwhile, its entry stays. */
		bpf_map_update_elem(&hb_ct, &fwd, &nv, BPF_NOEXIST);
		res->ct_state = HB_CT_NEW;
		res->report_reason = reason | every;
		return;
	}

	dir &= 1;
	res->ct_state = dir ? HB_CT_REPLY : HB_CT_ESTABLISHED;
	res->is_reply = dir;
	__sync_fetch_and_add(&v->pkts[dir], 1);
	__sync_fetch_and_add(&v->bytes[dir], len);

	if (tcp) {
		__u8 seen = v->flags_seen[dir];
		__u8 fresh = pkt->tcp_flags & ~seen;

		if (fresh) {
			v->flags_seen[dir] = seen | pkt->tcp_flags;
			reason |= HB_REPORT_NEW_FLAGS;
			if (fresh & HB_TCP_RST) {
				v->closing |= HB_CT_RST;
				reason |= HB_REPORT_CLOSE;
			}
			if (fresh & HB_TCP_FIN) {
				v->closing |= dir ? HB_CT_FIN_REPLY : HB_CT_FIN_ORIG;
				reason |= HB_REPORT_CLOSE;
			}
		}
	}

	last = v->last_report_ns[dir];
	if (reason || every) {
		v->last_report_ns[dir] = now;
	} else if (now > last && now - last >= s->report_interval_ns &&
		   __sync_val_compare_and_swap(&v->last_report_ns[dir], last, now) == last) {
		/* The compare-and-swap lets one CPU only make the periodic report. */
		reason = HB_REPORT_PERIODIC;
	}

	reason |= every;
	res->report_reason = reason;
	if (!reason)
		return;
	res->agg_packets = __sync_lock_test_and_set(&v->pkts[dir], 0);
	res->agg_bytes = __sync_lock_test_and_set(&v->bytes[dir], 0);
}

#endif /* HUBBLECTL_CONNTRACK_H */
