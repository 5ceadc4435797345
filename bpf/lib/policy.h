/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h - identity-based L3/L4 policy enforcement: ipcache and policy maps.
 *
 * The maps are written by the agent (observer/agent/policy.py through
 * observer/bpf/policymaps.py) from the output of the pure policy compiler
 * (observer/policy/compiler.py); the lookup below is the algorithm of
 * observer/policy/trace.py:lookup, which `hubblectl policy trace` runs on the same entries.
 *
 * Generations. Every map holds two generations of the policy (0 and 1) side by side,
 * and hb_policy_state says which one the datapath reads. The agent writes a new policy
 * into the generation that is not read, then flips hb_policy_state.generation with one
 * 4-byte write: every packet sees either the whole old policy (ipcache, per-endpoint
 * enforcement flags and entries of every endpoint) or the whole new one, never a mix.
 * The agent brings the other generation up to date at the next change.
 *
 * Lookup (Cilium's policy_can_access, our own code), for a packet that is not a reply:
 *   1. direction not enforced for the endpoint (no hb_ep_policy entry, or its flag off):
 *      pass without a lookup and without a verdict record;
 *   2. L3 lookup: {endpoint, remote identity, direction}, longest prefix over
 *      (protocol, destination port); a deny/audit entry found here decides;
 *   3. L4 lookup: the same with identity 0 (any); decides if it is a deny/audit, or if
 *      step 2 found nothing, or if its (protocol, port) prefix is longer than step 2's;
 *   4. else step 2's entry; nothing found: default deny (audit mode: audit).
 * Replies of tracked connections (conntrack) and ICMP errors pass without a lookup;
 * so do IPv6 neighbour discovery and MLD, without which IPv6 stops working. Original-
 * direction packets of established connections are looked up like the first one (as
 * Cilium does): removing an allow cuts established connections in that direction.
 */
#ifndef HUBBLECTL_POLICY_H
#define HUBBLECTL_POLICY_H

#include "common.h"
#include "events.h"
#include "maps.h"
#include "parse.h"
#include "conntrack.h"

/* Cilium's drop reasons for policy. */
#define HB_DROP_POLICY 133      /* Policy denied (no allow entry: default deny) */
#define HB_DROP_POLICY_DENY 181 /* Policy denied by denylist (a deny entry) */

/* hb_policy_entry.action (observer.policy.model.Action) */
#define HB_POLICY_ALLOW 1
#define HB_POLICY_DENY 2
#define HB_POLICY_AUDIT 3

/* hb_ep_policy.flags */
#define HB_EP_POLICY_INGRESS (1 << 0) /* ingress enforced: a lookup miss is a drop */
#define HB_EP_POLICY_EGRESS (1 << 1)
#define HB_EP_POLICY_AUDIT (1 << 2)   /* audit mode: default deny only audits */

/* policy_rule_id of a verdict that no entry decided (default deny). */
#define HB_RULE_DEFAULT_DENY 0xffffffffU

#define HB_IDENTITY_WORLD 2

/* Bits of struct hb_policy_key after prefixlen that are always exact:
 * ep_id 32 + identity 32 + generation 8 + direction 8 + _pad 8. */
#define HB_POLICY_EXACT_BITS 88
#define HB_POLICY_FULL_BITS (HB_POLICY_EXACT_BITS + 24)
/* hb_ipcache_key: generation 8 + family 8 + _pad 16, then the address. */
#define HB_IPCACHE_EXACT_BITS 32

/* Which generation the datapath reads (hb_policy_state[0]); written by the agent only. */
struct hb_policy_state {
	__u32 generation; /* 0 or 1 */
	__u32 flags;      /* reserved, 0 */
};

struct hb_ep_policy_key {
	__u32 ep_id;
	__u32 generation;
};

struct hb_ep_policy {
	__u32 flags; /* HB_EP_POLICY_* */
	__u32 _pad;
};

/* LPM trie key: everything up to and including _pad is matched exactly; then
 * protocol (8 bits, 0 = any) and dport (network order) by prefix. Port ranges are
 * aligned port prefixes; ICMP types sit in dport with a full prefix. */
struct hb_policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 identity; /* remote identity, 0 = any */
	__u8 generation;
	__u8 direction; /* enum hb_policy_dir */
	__u8 _pad;
	__u8 protocol;
	__be16 dport;
	__u16 _pad2;    /* beyond every prefix; 0 */
};

struct hb_policy_entry {
	__u8 action;     /* HB_POLICY_* */
	__u8 match_type; /* Cilium's match type of the key (flow.policy_match_type) */
	__u8 lpm_len;    /* prefix length of the key over (protocol, dport): 0, 8, 9..24 */
	__u8 _pad;
	__u32 rule_id;   /* the agent's rule table: which policy rule made this entry */
};

/* LPM trie key of the ipcache: prefixlen counts HB_IPCACHE_EXACT_BITS + address bits. */
struct hb_ipcache_key {
	__u32 prefixlen;
	__u8 generation;
	__u8 family; /* 4 or 6 */
	__u16 _pad;
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
};

struct hb_ipcache_value {
	__u32 identity;
	__u32 flags; /* reserved, 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hb_policy_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_policy_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HB_MAX_ENDPOINTS * 2);
	__type(key, struct hb_ep_policy_key);
	__type(value, struct hb_ep_policy);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_ep_policy SEC(".maps");

#define HB_POLICY_MAX_ENTRIES (1 << 18)
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, HB_POLICY_MAX_ENTRIES);
	__type(key, struct hb_policy_key);
	__type(value, struct hb_policy_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_policy SEC(".maps");

#define HB_IPCACHE_MAX_ENTRIES (1 << 16)
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, HB_IPCACHE_MAX_ENTRIES);
	__type(key, struct hb_ipcache_key);
	__type(value, struct hb_ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_ipcache SEC(".maps");

/* Policy outcome carried by drop and policy-verdict records (traces pass NULL: all
 * zero). hb_policy_check fills one. */
struct hb_verdict {
	__u32 drop_reason;       /* Cilium drop code, 0 unless dropped */
	__u32 src_identity;      /* 0 = use what the datapath knows (the endpoint side) */
	__u32 dst_identity;
	__u32 policy_rule_id;
	__u8 policy_match_type;
	__u8 policy_dir;         /* enum hb_policy_dir */
	__u8 audited;
};

/* What hb_policy_check decided. */
enum hb_policy_outcome {
	HB_PV_NONE = 0,  /* no lookup (not enforced, reply, exempt): pass, no verdict record */
	HB_PV_ALLOW = 1,
	HB_PV_DROP = 2,
	HB_PV_AUDIT = 3, /* would be dropped; passes in audit mode */
};

/* The generation the datapath reads now. */
static __always_inline __u8 hb_policy_generation(void)
{
	__u32 zero = 0;
	struct hb_policy_state *s = bpf_map_lookup_elem(&hb_policy_state, &zero);

	return s ? (__u8)(s->generation & 1) : 0;
}

/* Identity of an address (longest prefix in the ipcache); 0 if nothing matches,
 * which with the agent's 0.0.0.0/0 and ::/0 entries only happens before it wrote any. */
static __always_inline __u32 hb_ipcache_identity(const __u8 *addr, __u8 ip_version, __u8 gen)
{
	struct hb_ipcache_key k = {};
	struct hb_ipcache_value *v;

	k.generation = gen;
	k.family = ip_version;
	if (ip_version == 4) {
		__builtin_memcpy(k.addr, addr, 4);
		k.prefixlen = HB_IPCACHE_EXACT_BITS + 32;
	} else if (ip_version == 6) {
		__builtin_memcpy(k.addr, addr, 16);
		k.prefixlen = HB_IPCACHE_EXACT_BITS + 128;
	} else {
		return 0;
	}
	v = bpf_map_lookup_elem(&hb_ipcache, &k);
	return v ? v->identity : 0;
}

/* The peer's identity, looked up in the ipcache (an LPM trie, the costliest lookup on the
 * path) on first use only: a packet of an established connection that is neither reported
 * nor subject to policy never needs it. */
struct hb_remote {
	__u32 identity; /* 0 if the ipcache has nothing */
	__u8 known;     /* identity was looked up */
};

static __always_inline __u32 hb_remote_identity(struct hb_remote *r, const struct hb_pkt *pkt, __u8 obs_point,
						__u8 gen)
{
	if (!r->known) {
		/* The peer is the destination of what the endpoint sends, the source of what
		 * it receives. */
		r->identity = hb_ipcache_identity(obs_point == HB_OBS_FROM_ENDPOINT ? pkt->daddr : pkt->saddr,
						  pkt->ip_version, gen);
		r->known = 1;
	}
	return r->identity;
}

/* Packets that pass without a policy lookup although their direction is enforced. */
static __always_inline int hb_policy_exempt(const struct hb_pkt *pkt, const struct hb_ct_result *ct)
{
	if (!pkt->ip_version)
		return 1; /* ARP and other non-IP traffic */
	if (ct->is_reply)
		return 1; /* reply of a connection whose first packet passed */
	if (pkt->flags & HB_PKT_F_ICMP_ERROR)
		return 1;
	if (pkt->l4_proto == HB_IPPROTO_ICMPV6 && !(pkt->flags & HB_PKT_F_FRAGMENT)) {
		__u8 t = pkt->icmp_type;

		/* MLD (130-132, 143), router/neighbour solicitation and advertisement,
		 * redirect (133-137) */
		if ((t >= 130 && t <= 137) || t == 143)
			return 1;
	}
	return 0;
}

/*
 * Decide the packet's fate for the endpoint's policy. obs_point says the direction:
 * what leaves the endpoint (from-endpoint) is its egress, what enters it its ingress.
 * The peer's identity comes from the ipcache through *remote (looked up here only once a
 * policy lookup is due; world if the ipcache has nothing). On HB_PV_ALLOW/DROP/AUDIT, *v is
 * filled for the verdict and drop records.
 */
static __always_inline int hb_policy_check(const struct hb_pkt *pkt, const struct hb_ct_result *ct,
					   __u32 ep_id, __u32 ep_identity, __u8 obs_point,
					   struct hb_remote *remote, __u8 gen, struct hb_verdict *v)
{
	struct hb_ep_policy_key epk = {};
	struct hb_ep_policy *epp;
	struct hb_policy_key k = {};
	struct hb_policy_entry *e;
	struct hb_policy_entry l3 = {}, l4 = {};
	int have_l3 = 0, have_l4 = 0;
	__u8 dir, action, match_type = 0;
	__u32 rule_id, need, flags, remote_identity;
	__u16 port = 0;

	epk.ep_id = ep_id;
	epk.generation = gen;
	epp = bpf_map_lookup_elem(&hb_ep_policy, &epk);
	if (!epp)
		return HB_PV_NONE;
	flags = epp->flags;
	if (obs_point == HB_OBS_FROM_ENDPOINT) {
		dir = HB_POLICY_EGRESS;
		need = HB_EP_POLICY_EGRESS;
	} else {
		dir = HB_POLICY_INGRESS;
		need = HB_EP_POLICY_INGRESS;
	}
	if (!(flags & need))
		return HB_PV_NONE;
	if (hb_policy_exempt(pkt, ct))
		return HB_PV_NONE;
	remote_identity = hb_remote_identity(remote, pkt, obs_point, gen);
	if (!remote_identity)
		remote_identity = HB_IDENTITY_WORLD;

	if (!(pkt->flags & HB_PKT_F_FRAGMENT)) {
		if (pkt->l4_proto == HB_IPPROTO_ICMP || pkt->l4_proto == HB_IPPROTO_ICMPV6)
			port = pkt->icmp_type;
		else if (pkt->flags & HB_PKT_F_L4)
			port = pkt->dport;
	}
	/* A non-first fragment carries no ports: only entries for every port match it. */

	k.prefixlen = HB_POLICY_FULL_BITS;
	k.ep_id = ep_id;
	k.generation = gen;
	k.direction = dir;
	k.protocol = pkt->l4_proto;
	k.dport = bpf_htons(port);

	if (remote_identity) {
		k.identity = remote_identity;
		e = bpf_map_lookup_elem(&hb_policy, &k);
		if (e) {
			l3 = *e;
			have_l3 = 1;
		}
	}
	if (!(have_l3 && l3.action != HB_POLICY_ALLOW)) {
		k.identity = 0;
		e = bpf_map_lookup_elem(&hb_policy, &k);
		if (e) {
			l4 = *e;
			have_l4 = 1;
		}
	}

	if (have_l3 && l3.action != HB_POLICY_ALLOW) {
		action = l3.action;
		match_type = l3.match_type;
		rule_id = l3.rule_id;
	} else if (have_l4 && (l4.action != HB_POLICY_ALLOW || !have_l3 || l4.lpm_len > l3.lpm_len)) {
		action = l4.action;
		match_type = l4.match_type;
		rule_id = l4.rule_id;
	} else if (have_l3) {
		action = l3.action;
		match_type = l3.match_type;
		rule_id = l3.rule_id;
	} else {
		/* default deny */
		action = (flags & HB_EP_POLICY_AUDIT) ? HB_POLICY_AUDIT : 0;
		match_type = 0;
		rule_id = HB_RULE_DEFAULT_DENY;
	}

	v->policy_dir = dir;
	v->policy_match_type = match_type;
	v->policy_rule_id = rule_id;
	if (dir == HB_POLICY_EGRESS) {
		v->src_identity = ep_identity;
		v->dst_identity = remote_identity;
	} else {
		v->src_identity = remote_identity;
		v->dst_identity = ep_identity;
	}
	if (action == HB_POLICY_ALLOW) {
		v->drop_reason = 0;
		v->audited = 0;
		return HB_PV_ALLOW;
	}
	if (action == HB_POLICY_AUDIT) {
		v->drop_reason = 0;
		v->audited = 1;
		return HB_PV_AUDIT;
	}
	v->audited = 0;
	v->drop_reason = rule_id == HB_RULE_DEFAULT_DENY ? HB_DROP_POLICY : HB_DROP_POLICY_DENY;
	return HB_PV_DROP;
}

/* Forget the conntrack entry a dropped first packet created: a connection that policy
 * refused must not make its reverse tuple look like a reply. */
static __always_inline void hb_ct_forget(const struct hb_pkt *pkt, __u32 ifindex)
{
	struct hb_ct_key k;

	hb_ct_key_init(&k, pkt, ifindex);
	bpf_map_delete_elem(&hb_ct, &k);
}

#endif /* HUBBLECTL_POLICY_H */
