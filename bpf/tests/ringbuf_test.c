// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ringbuf_test.c - a test-only producer for observer/bpf/ringbuf.py.
 *
 * The datapath emits records of one size only, which never straddle the end of the
 * ring; this program emits records of any length (and discarded ones) so the
 * reader's wrap-around, alignment and DISCARD handling are tested for real
 * (tests/privileged/bpf/test_ringbuf.py). Driven by BPF_PROG_TEST_RUN: after a
 * 14-byte Ethernet header the frame carries struct hbt_cmd.
 */
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define HBT_MAX_RECORD 256

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} hbt_ring SEC(".maps");

struct hbt_cmd {
	__u16 len;     /* record length, 0..HBT_MAX_RECORD */
	__u8 discard;  /* reserve a 40-byte record and discard it instead */
	__u8 fill;     /* record byte i is (fill + i) & 0xff */
};

SEC("tc")
int hbt_ring_emit(struct __sk_buff *skb)
{
	__u8 buf[HBT_MAX_RECORD];
	struct hbt_cmd cmd;
	void *rec;
	__u32 len;
	int i;

	if (bpf_skb_load_bytes(skb, 14, &cmd, sizeof(cmd)) < 0)
		return 1;
	if (cmd.discard) {
		rec = bpf_ringbuf_reserve(&hbt_ring, 40, 0);
		if (!rec)
			return 2;
		bpf_ringbuf_discard(rec, 0);
		return 0;
	}
	len = cmd.len;
	if (len > HBT_MAX_RECORD)
		return 3;
	for (i = 0; i < HBT_MAX_RECORD; i++)
		buf[i] = cmd.fill + i;
	if (bpf_ringbuf_output(&hbt_ring, buf, len, BPF_RB_NO_WAKEUP) < 0)
		return 2;
	return 0;
}
