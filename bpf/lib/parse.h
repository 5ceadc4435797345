/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h - bounds-checked packet parsers for tc programs.
 *
 * Headers are copied out of the skb with bpf_skb_load_bytes(), which checks every
 * read against skb->len and also reads from non-linear (paged) skbs, so a truncated
 * packet is an error return, never an out-of-bounds read. Each parser validates the
 * header's own length fields (IPv4 IHL, IPv6 extension lengths, TCP data offset).
 *
 * hb_parse() returns 0 on success or an enum hb_parse_err (> 0); the caller counts the
 * error in hb_parse_errors and lets the packet pass. A packet that is not IP (ARP,
 * LLDP, ...) or whose transport header is not one we know is not an error: the fields
 * we could not fill stay zero.
 */
#ifndef HUBBLECTL_PARSE_H
#define HUBBLECTL_PARSE_H

#include "common.h"

/* Index into hb_parse_errors. Append-only (the agent names them by number). */
enum hb_parse_err {
	HB_PERR_OK = 0,
	HB_PERR_ETH = 1,      /* shorter than an Ethernet header */
	HB_PERR_VLAN = 2,     /* truncated 802.1Q tag */
	HB_PERR_IPV4 = 3,     /* truncated IPv4 header, version != 4 or IHL < 5 */
	HB_PERR_IPV6 = 4,     /* truncated IPv6 header or version != 6 */
	HB_PERR_IPV6_EXT = 5, /* truncated extension header or too many of them */
	HB_PERR_TCP = 6,      /* truncated TCP header or data offset < 5 */
	HB_PERR_UDP = 7,
	HB_PERR_ICMP = 8,
	HB_PERR_ICMPV6 = 9,
	HB_PERR_SCTP = 10,
	HB_PERR__MAX,
};

/* Extension headers followed before giving up (HB_PERR_IPV6_EXT). */
#define HB_IPV6_MAX_EXT 8

/* hb_pkt.flags */
#define HB_PKT_F_L4 (1 << 0)         /* transport header parsed: ports / flags / type valid */
#define HB_PKT_F_FRAGMENT (1 << 1)   /* non-first fragment: no transport header in this packet */
#define HB_PKT_F_ICMP_ECHO (1 << 2)  /* ICMP(v6) echo request or reply: sport = echo id */
#define HB_PKT_F_ICMP_ERROR (1 << 3) /* ICMP(v6) error message (related to another flow) */

/* What the parser learned. Addresses in network order (IPv4 in the first 4 bytes,
 * the rest zero), ports in host order. */
struct hb_pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 eth_src[6];
	__u8 eth_dst[6];
	__u16 eth_proto; /* host order, after an 802.1Q tag */
	__u16 sport;
	__u16 dport;
	__u8 ip_version; /* 4, 6 or 0 */
	__u8 l4_proto;   /* IPPROTO_* after IPv6 extension headers, 0 for non-IP */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 flags;      /* HB_PKT_F_* */
	__u32 l3_off;
	__u32 l4_off;
};

/* Wire layouts (our own, so we do not depend on how vmlinux.h spells bitfields). */
struct hb_wire_eth {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};

struct hb_wire_vlan {
	__be16 tci;
	__be16 proto;
};

struct hb_wire_ipv4 {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 proto;
	__be16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct hb_wire_ipv6 {
	__u8 ver_tc_flow[4];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct hb_wire_ipv6_ext { /* the part every extension header starts with */
	__u8 nexthdr;
	__u8 hdrlen;
};

struct hb_wire_ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | res | M */
	__be32 ident;
};

struct hb_wire_tcp {
	__be16 sport;
	__be16 dport;
	__be32 seq;
	__be32 ack;
	__u8 doff_res; /* data offset in the high nibble */
	__u8 flags;
	__be16 window;
	__be16 check;
	__be16 urg;
};

struct hb_wire_udp {
	__be16 sport;
	__be16 dport;
	__be16 len;
	__be16 check;
};

struct hb_wire_icmp { /* ICMPv4 and ICMPv6 share this 8-byte start */
	__u8 type;
	__u8 code;
	__be16 check;
	__be16 echo_id;
	__be16 echo_seq;
};

struct hb_wire_sctp {
	__be16 sport;
	__be16 dport;
	__be32 vtag;
	__be32 check;
};

#define HB_ICMP_ECHOREPLY 0
#define HB_ICMP_DEST_UNREACH 3
#define HB_ICMP_SOURCE_QUENCH 4
#define HB_ICMP_REDIRECT 5
#define HB_ICMP_ECHO 8
#define HB_ICMP_TIME_EXCEEDED 11
#define HB_ICMP_PARAMETERPROB 12
#define HB_ICMPV6_ERROR_MAX 127 /* ICMPv6 types 0..127 are errors */
#define HB_ICMPV6_ECHO_REQUEST 128
#define HB_ICMPV6_ECHO_REPLY 129

static __always_inline int hb_parse_eth(struct __sk_buff *skb, struct hb_pkt *pkt)
{
	struct hb_wire_eth eth;
	struct hb_wire_vlan vlan;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return HB_PERR_ETH;
	__builtin_memcpy(pkt->eth_src, eth.src, 6);
	__builtin_memcpy(pkt->eth_dst, eth.dst, 6);
	pkt->eth_proto = bpf_ntohs(eth.proto);
	pkt->l3_off = sizeof(eth);
	if (pkt->eth_proto == HB_ETH_P_8021Q || pkt->eth_proto == HB_ETH_P_8021AD) {
		if (bpf_skb_load_bytes(skb, sizeof(eth), &vlan, sizeof(vlan)) < 0)
			return HB_PERR_VLAN;
		pkt->eth_proto = bpf_ntohs(vlan.proto);
		pkt->l3_off += sizeof(vlan);
	}
	return HB_PERR_OK;
}

static __always_inline int hb_parse_ipv4(struct __sk_buff *skb, struct hb_pkt *pkt)
{
	struct hb_wire_ipv4 ip;
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, pkt->l3_off, &ip, sizeof(ip)) < 0)
		return HB_PERR_IPV4;
	ihl = ip.ver_ihl & 0x0f;
	if ((ip.ver_ihl >> 4) != 4 || ihl < 5)
		return HB_PERR_IPV4;
	pkt->ip_version = 4;
	pkt->l4_proto = ip.proto;
	__builtin_memcpy(pkt->saddr, ip.saddr, 4);
	__builtin_memcpy(pkt->daddr, ip.daddr, 4);
	pkt->l4_off = pkt->l3_off + ihl * 4;
	if (bpf_ntohs(ip.frag_off) & 0x1fff)
		pkt->flags |= HB_PKT_F_FRAGMENT;
	return HB_PERR_OK;
}

static __always_inline int hb_parse_ipv6(struct __sk_buff *skb, struct hb_pkt *pkt)
{
	struct hb_wire_ipv6 ip6;
	struct hb_wire_ipv6_ext ext;
	struct hb_wire_ipv6_frag frag;
	__u32 off;
	__u8 nh;
	int i;

	if (bpf_skb_load_bytes(skb, pkt->l3_off, &ip6, sizeof(ip6)) < 0)
		return HB_PERR_IPV6;
	if ((ip6.ver_tc_flow[0] >> 4) != 6)
		return HB_PERR_IPV6;
	pkt->ip_version = 6;
	__builtin_memcpy(pkt->saddr, ip6.saddr, 16);
	__builtin_memcpy(pkt->daddr, ip6.daddr, 16);
	nh = ip6.nexthdr;
	off = pkt->l3_off + sizeof(ip6);

	for (i = 0; i < HB_IPV6_MAX_EXT; i++) {
		switch (nh) {
		case HB_IPPROTO_HOPOPTS:
		case HB_IPPROTO_ROUTING:
		case HB_IPPROTO_DSTOPTS:
			if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)) < 0)
				return HB_PERR_IPV6_EXT;
			nh = ext.nexthdr;
			off += ((__u32)ext.hdrlen + 1) * 8;
			break;
		case HB_IPPROTO_AH:
			if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)) < 0)
				return HB_PERR_IPV6_EXT;
			nh = ext.nexthdr;
			off += ((__u32)ext.hdrlen + 2) * 4;
			break;
		case HB_IPPROTO_FRAGMENT:
			if (bpf_skb_load_bytes(skb, off, &frag, sizeof(frag)) < 0)
				return HB_PERR_IPV6_EXT;
			nh = frag.nexthdr;
			off += sizeof(frag);
			if (bpf_ntohs(frag.frag_off) & 0xfff8)
				pkt->flags |= HB_PKT_F_FRAGMENT;
			break;
		default:
			goto done;
		}
	}
	/* Still looking at an extension header after HB_IPV6_MAX_EXT of them. */
	if (nh == HB_IPPROTO_HOPOPTS || nh == HB_IPPROTO_ROUTING || nh == HB_IPPROTO_DSTOPTS ||
	    nh == HB_IPPROTO_AH || nh == HB_IPPROTO_FRAGMENT)
		return HB_PERR_IPV6_EXT;
done:
	pkt->l4_proto = nh;
	pkt->l4_off = off;
	return HB_PERR_OK;
}

static __always_inline void hb_classify_icmp(struct hb_pkt *pkt, const struct hb_wire_icmp *icmp)
{
	__u8 t = icmp->type;

	pkt->icmp_type = t;
	pkt->icmp_code = icmp->code;
	if (pkt->l4_proto == HB_IPPROTO_ICMP) {
		if (t == HB_ICMP_ECHO || t == HB_ICMP_ECHOREPLY)
			pkt->flags |= HB_PKT_F_ICMP_ECHO;
		else if (t == HB_ICMP_DEST_UNREACH || t == HB_ICMP_SOURCE_QUENCH || t == HB_ICMP_REDIRECT ||
			 t == HB_ICMP_TIME_EXCEEDED || t == HB_ICMP_PARAMETERPROB)
			pkt->flags |= HB_PKT_F_ICMP_ERROR;
	} else {
		if (t == HB_ICMPV6_ECHO_REQUEST || t == HB_ICMPV6_ECHO_REPLY)
			pkt->flags |= HB_PKT_F_ICMP_ECHO;
		else if (t <= HB_ICMPV6_ERROR_MAX)
			pkt->flags |= HB_PKT_F_ICMP_ERROR;
	}
}

static __always_inline int hb_parse_l4(struct __sk_buff *skb, struct hb_pkt *pkt)
{
	switch (pkt->l4_proto) {
	case HB_IPPROTO_TCP: {
		struct hb_wire_tcp tcp;

		if (bpf_skb_load_bytes(skb, pkt->l4_off, &tcp, sizeof(tcp)) < 0)
			return HB_PERR_TCP;
		if ((tcp.doff_res >> 4) < 5)
			return HB_PERR_TCP;
		pkt->sport = bpf_ntohs(tcp.sport);
		pkt->dport = bpf_ntohs(tcp.dport);
		pkt->tcp_flags = tcp.flags;
		break;
	}
	case HB_IPPROTO_UDP: {
		struct hb_wire_udp udp;

		if (bpf_skb_load_bytes(skb, pkt->l4_off, &udp, sizeof(udp)) < 0)
			return HB_PERR_UDP;
		pkt->sport = bpf_ntohs(udp.sport);
		pkt->dport = bpf_ntohs(udp.dport);
		break;
	}
	case HB_IPPROTO_SCTP: {
		struct hb_wire_sctp sctp;

		if (bpf_skb_load_bytes(skb, pkt->l4_off, &sctp, sizeof(sctp)) < 0)
			return HB_PERR_SCTP;
		pkt->sport = bpf_ntohs(sctp.sport);
		pkt->dport = bpf_ntohs(sctp.dport);
		break;
	}
	case HB_IPPROTO_ICMP:
	case HB_IPPROTO_ICMPV6: {
		struct hb_wire_icmp icmp;
		int err = pkt->l4_proto == HB_IPPROTO_ICMP ? HB_PERR_ICMP : HB_PERR_ICMPV6;

		/* type, code, checksum: every ICMP message has them */
		if (bpf_skb_load_bytes(skb, pkt->l4_off, &icmp, 4) < 0)
			return err;
		hb_classify_icmp(pkt, &icmp);
		if (pkt->flags & HB_PKT_F_ICMP_ECHO) {
			if (bpf_skb_load_bytes(skb, pkt->l4_off, &icmp, sizeof(icmp)) < 0)
				return err;
			pkt->sport = bpf_ntohs(icmp.echo_id);
		}
		break;
	}
	default:
		/* A transport we do not look into (GRE, ESP, ...): ports stay 0. */
		return HB_PERR_OK;
	}
	pkt->flags |= HB_PKT_F_L4;
	return HB_PERR_OK;
}

/* Parse Ethernet (one optional 802.1Q/802.1ad tag), IPv4/IPv6 and the transport
 * header. *pkt must be zeroed by the caller. */
static __always_inline int hb_parse(struct __sk_buff *skb, struct hb_pkt *pkt)
{
	int err = hb_parse_eth(skb, pkt);

	if (err)
		return err;
	if (pkt->eth_proto == HB_ETH_P_IP)
		err = hb_parse_ipv4(skb, pkt);
	else if (pkt->eth_proto == HB_ETH_P_IPV6)
		err = hb_parse_ipv6(skb, pkt);
	else
		return HB_PERR_OK;
	if (err)
		return err;
	if (pkt->flags & HB_PKT_F_FRAGMENT)
		return HB_PERR_OK;
	return hb_parse_l4(skb, pkt);
}

#endif /* HUBBLECTL_PARSE_H */
