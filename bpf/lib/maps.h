/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h - the maps shared between the datapath and the agent.
 *
 * Every map is pinned by name (LIBBPF_PIN_BY_NAME) under the agent's pin root, so
 * an agent that restarts, and every object that includes this header, reuses the
 * same maps. The value layouts are ABI like events.h (append-only); their Python
 * mirrors live in observer/bpf/loader.py and tests/privileged/bpf/test_abi.py checks
 * them against the BTF of the compiled object.
 */
#ifndef HUBBLECTL_MAPS_H
#define HUBBLECTL_MAPS_H

#include "common.h"
#include "events.h"

/* Ring buffer size when userspace does not resize it before load. */
#define HB_RING_DEFAULT_BYTES (4 * 1024 * 1024)

/* hb_config.aggregation_level */
#define HB_AGG_NONE 0   /* report every packet */
#define HB_AGG_MEDIUM 1 /* new connections, new TCP flags, close, periodic */

#define HB_DEFAULT_AGG_LEVEL HB_AGG_MEDIUM
#define HB_DEFAULT_REPORT_INTERVAL_NS (5ULL * 1000 * 1000 * 1000)

/* The datapath's settings, written by the agent. An entry that was never written is
 * all zeros; report_interval_ns == 0 therefore means "not configured" and selects the
 * defaults for every field (medium aggregation, 5 s, wake-up at a quarter of the ring).
 * A written entry is used as it is: wakeup_bytes 0 then wakes the consumer for every
 * record. */
struct hb_config {
	__u32 aggregation_level;  /* HB_AGG_* */
	__u32 _pad;
	__u64 report_interval_ns; /* at most one periodic report per connection direction per interval */
	__u64 wakeup_bytes;       /* ring fill (bytes not yet consumed) from which the consumer is woken */
};

/* hb_endpoints value, keyed by the ifindex of the endpoint's host-side interface. */
struct hb_endpoint_info {
	__u32 ep_id;    /* goes into hb_flow_event.ep_id */
	__u32 identity; /* the endpoint's security identity (0 unknown): fills the endpoint side of
			 * hb_flow_event.src_identity / dst_identity */
	__u32 flags;    /* reserved, 0 */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, HB_RING_DEFAULT_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_events SEC(".maps");

/* Ring-buffer reserve failures: every record that could not be reserved counts one. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_lost SEC(".maps");

/* Packets the parser refused (truncated or malformed), indexed by enum hb_parse_err. */
#define HB_PARSE_ERR_SLOTS 16
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HB_PARSE_ERR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_parse_errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hb_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_config SEC(".maps");

#define HB_MAX_ENDPOINTS 4096
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HB_MAX_ENDPOINTS);
	__type(key, __u32); /* ifindex */
	__type(value, struct hb_endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hb_endpoints SEC(".maps");

/* BTF anchors. The record structs are only written through pointers into the ring,
 * so clang would leave them out of the object's BTF, which tests/privileged/bpf/
 * test_abi.py compares with observer/bpf/structs.py. These variables keep them in.
 * The section name starts with ".debug_" so that libbpf skips it without a word (it
 * is not a map and nothing reads it at run time). */
#define HB_BTF_ANCHOR(type, name) type name SEC(".debug_hb_btf_anchors") __attribute__((used))
HB_BTF_ANCHOR(struct hb_event_hdr, hb_btf_event_hdr);
HB_BTF_ANCHOR(struct hb_flow_event, hb_btf_flow_event);

/* The effective settings of one program run (hb_config with defaults applied). */
struct hb_settings {
	__u32 aggregation_level;
	__u64 report_interval_ns;
	__u64 wakeup_bytes;
};

static __always_inline void hb_load_settings(struct hb_settings *s)
{
	__u32 zero = 0;
	struct hb_config *c = bpf_map_lookup_elem(&hb_config, &zero);

	if (c && c->report_interval_ns) {
		s->aggregation_level = c->aggregation_level;
		s->report_interval_ns = c->report_interval_ns;
		s->wakeup_bytes = c->wakeup_bytes;
		return;
	}
	s->aggregation_level = HB_DEFAULT_AGG_LEVEL;
	s->report_interval_ns = HB_DEFAULT_REPORT_INTERVAL_NS;
	s->wakeup_bytes = bpf_ringbuf_query(&hb_events, BPF_RB_RING_SIZE) / 4;
}

static __always_inline void hb_count_percpu(void *map, __u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(map, &slot);

	if (c)
		__sync_fetch_and_add(c, 1);
}

#endif /* HUBBLECTL_MAPS_H */
