// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * datapath.c - the endpoint datapath: tc programs on each endpoint's host-side veth.
 *
 * Per packet: parse (lib/parse.h) -> endpoint lookup -> conntrack + aggregation
 * (lib/conntrack.h) -> peer identity (ipcache) and policy verdict (lib/policy.h) ->
 * records on hb_events: a policy-verdict record for the first packet of a connection
 * whose direction is enforced, a drop record for every packet policy refuses
 * (TC_ACT_SHOT), a trace record when aggregation reports the packet.
 */
#include "common.h"
#include "events.h"
#include "maps.h"
#include "parse.h"
#include "conntrack.h"
#include "policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Everything the hooks know about one packet, handed to the emitter. */
struct hb_ctx {
	struct hb_pkt pkt;
	struct hb_ct_result ct;
	struct hb_settings cfg;
	__u64 now;
	__u32 ifindex;
	__u32 ep_id;
	__u32 ep_identity;
	struct hb_remote remote; /* the peer's identity from the ipcache, looked up lazily */
	__u32 pkt_len;
	__u8 obs_point; /* enum hb_obs_point */
};

/* Emit one hb_flow_event of any type (trace, drop, policy verdict). Every field of
 * the record is written: ring-buffer memory is not zeroed (ctx->remote must be known: see
 * hb_remote_identity). A failed reserve counts
 * in hb_lost. The consumer is woken only once the unread data reaches
 * wakeup_bytes; below that it finds the records on its own polling timer. */
static __always_inline void hb_emit_flow(struct __sk_buff *skb, const struct hb_ctx *ctx, __u8 type,
					 __u8 sub_type, __u8 report_reason, const struct hb_verdict *verdict)
{
	struct hb_flow_event *e;
	__u64 flags = BPF_RB_NO_WAKEUP;

	e = bpf_ringbuf_reserve(&hb_events, sizeof(*e), 0);
	if (!e) {
		hb_count_percpu(&hb_lost, 0);
		return;
	}

	e->hdr.type = type;
	e->hdr.sub_type = sub_type;
	e->hdr.len = sizeof(*e);
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.ts_ns = ctx->now;

	e->ifindex = ctx->ifindex;
	e->ep_id = ctx->ep_id;
	e->pkt_len = ctx->pkt_len;
	e->obs_point = ctx->obs_point;
	e->ip_version = ctx->pkt.ip_version;
	e->l4_proto = ctx->pkt.l4_proto;
	e->tcp_flags = ctx->pkt.tcp_flags;
	e->ct_state = ctx->ct.ct_state;
	e->is_reply = ctx->ct.is_reply;
	e->icmp_type = ctx->pkt.icmp_type;
	e->icmp_code = ctx->pkt.icmp_code;
	e->sport = ctx->pkt.sport;
	e->dport = ctx->pkt.dport;
	__builtin_memcpy(e->saddr, ctx->pkt.saddr, 16);
	__builtin_memcpy(e->daddr, ctx->pkt.daddr, 16);
	__builtin_memcpy(e->eth_src, ctx->pkt.eth_src, 6);
	__builtin_memcpy(e->eth_dst, ctx->pkt.eth_dst, 6);

	/* The endpoint is the source of what leaves it and the destination of what
	 * enters it; the peer's identity comes from the ipcache. */
	if (ctx->obs_point == HB_OBS_FROM_ENDPOINT) {
		e->src_identity = ctx->ep_identity;
		e->dst_identity = ctx->remote.identity;
	} else {
		e->src_identity = ctx->remote.identity;
		e->dst_identity = ctx->ep_identity;
	}
	if (verdict) {
		e->drop_reason = verdict->drop_reason;
		if (verdict->src_identity)
			e->src_identity = verdict->src_identity;
		if (verdict->dst_identity)
			e->dst_identity = verdict->dst_identity;
		e->policy_match_type = verdict->policy_match_type;
		e->policy_dir = verdict->policy_dir;
		e->audited = verdict->audited;
		e->policy_rule_id = verdict->policy_rule_id;
	} else {
		e->drop_reason = 0;
		e->policy_match_type = 0;
		e->policy_dir = 0;
		e->audited = 0;
		e->policy_rule_id = 0;
	}
	e->report_reason = report_reason;
	e->agg_packets = ctx->ct.agg_packets;
	e->_pad0 = 0;
	e->agg_bytes = ctx->ct.agg_bytes;

	if (bpf_ringbuf_query(&hb_events, BPF_RB_AVAIL_DATA) >= ctx->cfg.wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline int hb_handle(struct __sk_buff *skb, __u8 obs_point)
{
	struct hb_endpoint_info *ep;
	struct hb_ctx ctx = {};
	__u8 gen;
	int err;

	err = hb_parse(skb, &ctx.pkt);
	if (err) {
		/* Malformed or truncated: not ours to judge, let the stack drop it. */
		hb_count_percpu(&hb_parse_errors, err);
		hb_dbg("hb: parse error %d ifindex %u", err, skb->ifindex);
		return TC_ACT_OK;
	}

	hb_load_settings(&ctx.cfg);
	ctx.now = bpf_ktime_get_boot_ns();
	ctx.ifindex = skb->ifindex;
	ctx.pkt_len = skb->len;
	ctx.obs_point = obs_point;
	ep = bpf_map_lookup_elem(&hb_endpoints, &ctx.ifindex);
	if (ep) {
		ctx.ep_id = ep->ep_id;
		ctx.ep_identity = ep->identity;
	}

	hb_ct_process(&ctx.pkt, ctx.ifindex, ctx.pkt_len, ctx.now, &ctx.cfg, &ctx.ct);

	/* Policy. Verdict records go out whatever aggregation decided. The peer's identity
	 * is looked up only when policy or a record needs it. */
	gen = hb_policy_generation();
	if (ep) {
		struct hb_verdict v = {};
		int pv = hb_policy_check(&ctx.pkt, &ctx.ct, ctx.ep_id, ctx.ep_identity, obs_point, &ctx.remote, gen,
					 &v);

		/* Any verdict other than NONE came from a lookup: ctx.remote is known. */
		if (pv != HB_PV_NONE && ctx.ct.ct_state == HB_CT_NEW)
			hb_emit_flow(skb, &ctx, HB_EVENT_POLICY_VERDICT, 0, HB_REPORT_VERDICT, &v);
		if (pv == HB_PV_DROP) {
			if (ctx.ct.ct_state == HB_CT_NEW)
				hb_ct_forget(&ctx.pkt, ctx.ifindex);
			hb_emit_flow(skb, &ctx, HB_EVENT_DROP, (__u8)v.drop_reason, HB_REPORT_VERDICT, &v);
			return TC_ACT_SHOT;
		}
	}

	if (ctx.ct.report_reason) {
		hb_remote_identity(&ctx.remote, &ctx.pkt, obs_point, gen);
		hb_dbg("hb: report obs %u reason 0x%x len %u", obs_point, ctx.ct.report_reason, ctx.pkt_len);
		hb_emit_flow(skb, &ctx, HB_EVENT_TRACE, obs_point, ctx.ct.report_reason, NULL);
	}
	return TC_ACT_OK;
}

/*
 * tc ingress of the endpoint's host-side veth: a packet the endpoint sends leaves its
 * netns through the peer and is received here, before the host routes it anywhere
 * (Cilium's from-lxc point). Every packet the endpoint emits passes this hook once,
 * whatever its destination, which is why egress policy is enforced here.
 */
SEC("tc")
int hb_from_endpoint(struct __sk_buff *skb)
{
	return hb_handle(skb, HB_OBS_FROM_ENDPOINT);
}

/*
 * tc egress of the endpoint's host-side veth: the host transmits a packet towards the
 * endpoint here, after routing and netfilter, as the last step before it crosses into
 * the endpoint's netns (Cilium's to-container point). Every packet the endpoint
 * receives passes this hook once, whichever interface it came in on.
 */
SEC("tc")
int hb_to_endpoint(struct __sk_buff *skb)
{
	return hb_handle(skb, HB_OBS_TO_ENDPOINT);
}
