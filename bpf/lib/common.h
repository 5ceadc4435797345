/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * common.h - includes, constants and the debug switch shared by every BPF program.
 *
 * vmlinux.h gives kernel types (CO-RE); the uapi #defines it cannot carry
 * (TC_ACT_*, ETH_P_*, IPPROTO_*) are spelled out here.
 */
#ifndef HUBBLECTL_COMMON_H
#define HUBBLECTL_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef TC_ACT_OK
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

#define HB_ETH_P_IP 0x0800
#define HB_ETH_P_IPV6 0x86DD
#define HB_ETH_P_8021Q 0x8100
#define HB_ETH_P_8021AD 0x88A8

#define HB_IPPROTO_HOPOPTS 0
#define HB_IPPROTO_ICMP 1
#define HB_IPPROTO_TCP 6
#define HB_IPPROTO_UDP 17
#define HB_IPPROTO_ROUTING 43
#define HB_IPPROTO_FRAGMENT 44
#define HB_IPPROTO_ESP 50
#define HB_IPPROTO_AH 51
#define HB_IPPROTO_ICMPV6 58
#define HB_IPPROTO_NONE 59
#define HB_IPPROTO_DSTOPTS 60
#define HB_IPPROTO_SCTP 132

#define HB_TCP_FIN 0x01
#define HB_TCP_SYN 0x02
#define HB_TCP_RST 0x04
#define HB_TCP_PSH 0x08
#define HB_TCP_ACK 0x10

/* make -C bpf DEBUG=1 compiles these into bpf_printk (read them from
 * /sys/kernel/tracing/trace_pipe); otherwise they vanish. */
#ifdef HB_DEBUG
#define hb_dbg(fmt, ...) bpf_printk(fmt, ##__VA_ARGS__)
#else
#define hb_dbg(fmt, ...) do { } while (0)
#endif

#endif /* HUBBLECTL_COMMON_H */
