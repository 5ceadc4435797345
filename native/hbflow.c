// SPDX-License-Identifier: Apache-2.0
/*
 * hbflow.c - the native fast path of the agent's ingest.
 *
 * Walks the committed records of a BPF ring buffer in place (between the consumer and the
 * producer position, stopping at a record still being written, skipping discarded ones) and
 * renders each struct hb_flow_event into the compact JSON line that
 *     orjson.dumps(FlowBuilder.build(decode(record), wall_ns))
 * gives (observer/parser/flow.py is the reference; tests/unit/native compares the two).
 *
 * Every name the output carries that is not a JSON key or a fixed enum value of the flow
 * shape (emitter, node name, endpoints, interface names, policies, drop reasons, trace
 * observation points and reasons, TCP flag objects and summaries, ICMP type and code
 * names) comes from tables the Python binding (observer/native) renders with the Python
 * code and hands over; this file has no copy of them.
 *
 * A record this file cannot render exactly (an event type it does not know, an IPv6
 * address glibc and Python spell with a dotted tail) stops the walk in front of it: the
 * caller takes that one record through the Python path and calls again. Malformed records
 * (the cases observer/parser/events.py rejects) are counted and skipped.
 *
 * Only libc. Loaded with ctypes; no Python C-API. Not thread-safe: one context per consumer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <linux/types.h>

#include "events.h"

#define HB_API __attribute__((visibility("default")))

/* Bumped whenever a signature or struct hb_drain changes; the binding checks it. */
#define HB_ABI_VERSION 2

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "records and table keys are little-endian");
_Static_assert(sizeof(struct hb_event_hdr) == 16, "hb_event_hdr");
_Static_assert(sizeof(struct hb_flow_event) == 120, "hb_flow_event");
_Static_assert(offsetof(struct hb_flow_event, saddr) == 44, "saddr");
_Static_assert(offsetof(struct hb_flow_event, src_identity) == 88, "src_identity");
_Static_assert(offsetof(struct hb_flow_event, agg_bytes) == 112, "agg_bytes");

/* ring-buffer record header bits (kernel/bpf/ringbuf.c) */
#define RB_BUSY_BIT (1U << 31)
#define RB_DISCARD_BIT (1U << 30)
#define RB_HDR_SIZE 8U

#define ICMP_SUMMARY_MAX 512

#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132

/* ---- tables --------------------------------------------------------------------------- */

/* Indexed tables: entry i is blob[off[i] .. off[i+1]). */
enum {
	TAB_TCP_FLAGS,     /* 256: JSON object of a flags byte (flow.l4.TCP.flags) */
	TAB_TCP_SUMMARY,   /* 256: JSON string, the Summary of a TCP packet with those flags */
	TAB_OBS_POINT,     /* 256: ,"trace_observation_point":value per obs_point, or empty */
	TAB_TRACE_REASON,  /* 256: JSON value of trace_reason per ct_state (0 unused) */
	TAB_DROP_DESC,     /* n: JSON value of drop_reason_desc per code, empty = absent */
	TAB_POLICY_DROP,   /* n: non-empty for the drop codes that mean "denied by policy" */
	TAB_ICMP_TYPE,     /* 512: ICMPv4 (0..255) / ICMPv6 (256..511) type name, raw text */
	TAB_ICMP_HAS_CODES,/* 512: non-empty if the type defines code names */
	TAB_MISC,          /* MISC_COUNT entries, see below */
	TAB_COUNT
};
enum { MISC_EMITTER, MISC_NODE_NAME, MISC_EP4_DEFAULT, MISC_EP6_DEFAULT, MISC_ICMP4_PREFIX,
       MISC_ICMP6_PREFIX, MISC_COUNT };

/* Keyed tables: 16-byte keys (shorter keys zero-padded) -> one fragment. */
enum {
	KEY_EP4,       /* IPv4 address (4 bytes) -> flow.Endpoint JSON, empty = absent */
	KEY_EP6,       /* IPv6 address (16 bytes) -> flow.Endpoint JSON, empty = absent */
	KEY_IFACE,     /* ifindex (u32 LE) -> flow.NetworkInterface JSON */
	KEY_POLICY,    /* rule id (u32 LE) -> JSON list of flow.Policy, empty = absent */
	KEY_ICMP_CODE, /* (version 4|6, type, code) bytes -> code name, raw text */
	KEY_COUNT
};

struct strtab {
	uint32_t n;
	uint32_t maxlen;
	uint32_t *off; /* n + 1 */
	char *blob;
};

struct kslot {
	uint64_t k0, k1;
	uint32_t idx; /* entry index + 1; 0 = empty slot */
};

struct keyed {
	struct strtab vals;
	uint32_t mask; /* slots - 1 */
	struct kslot *slots;
};

/* ---- the context ------------------------------------------------------------------------ */

#define COUNT_KEYS (3U * 256U * 256U)

struct hb_ctx {
	struct strtab tab[TAB_COUNT];
	struct keyed key[KEY_COUNT];
	uint64_t rng[4];
	int64_t tsec;     /* seconds of the cached time prefix */
	int tvalid;
	char tprefix[20]; /* YYYY-MM-DDTHH:MM:SS */
	uint32_t *counts;  /* [type 1/4/5 -> 0/1/2][sub_type][l4_proto] */
	uint32_t *touched; /* count indexes that went 0 -> 1, in order */
	uint32_t ntouched;
	uint32_t taken;    /* hb_take_counts progress */
};

/* In/out of hb_drain; mirrored by observer/native/_lib.py. */
struct hb_drain {
	/* in */
	int64_t offset_ns;   /* wall = ts_ns + offset_ns */
	char *out;           /* lines, each ending in '\n' */
	uint64_t out_cap;
	int64_t *times;      /* wall time of each line */
	char *fmt;           /* struct format splitting out into lines: "<n>sx" per line */
	uint64_t fmt_cap;
	uint32_t max_records;/* stop after this many records (lines + errors) */
	uint32_t reserved;
	/* out */
	uint64_t out_len;
	uint64_t fmt_len;
	uint32_t lines;
	uint32_t records;    /* records consumed: lines + errors (discarded ones not counted) */
	uint32_t errors;     /* malformed records skipped */
	uint32_t status;     /* enum hb_status */
};

enum hb_status {
	HB_EMPTY = 0,  /* consumed everything committed (or stopped at a record being written) */
	HB_LIMIT = 1,  /* max_records, or the output buffers are full: call again */
	HB_PYTHON = 2, /* the next record needs the Python path; consumer_pos points at it */
};

struct hb_ring {
	uint64_t *cons;
	const uint64_t *prod;
	const uint8_t *data;
	uint64_t mask;
	void *cons_map;
	size_t cons_len;
	void *prod_map;
	size_t prod_len;
};

/* ---- small helpers -------------------------------------------------------------------- */

static const char HEX[] = "0123456789abcdef";
static char HEX2[256][2]; /* byte -> two lowercase hex digits; filled at load */

__attribute__((constructor)) static void init_hex2(void)
{
	for (int i = 0; i < 256; i++) {
		HEX2[i][0] = HEX[i >> 4];
		HEX2[i][1] = HEX[i & 15];
	}
}

static inline char *put_hex(char *p, const uint8_t *b, int n)
{
	for (int i = 0; i < n; i++, p += 2)
		memcpy(p, HEX2[b[i]], 2);
	return p;
}

#define LIT(p, s)                                  \
	do {                                           \
		memcpy((p), (s), sizeof(s) - 1);           \
		(p) += sizeof(s) - 1;                      \
	} while (0)

static inline char *put_mem(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

static inline char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int i = 0;
	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*p++ = tmp[--i];
	return p;
}

static inline char *put_digits(char *p, uint32_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

static inline uint32_t tab_len(const struct strtab *t, uint32_t i)
{
	return t->off[i + 1] - t->off[i];
}

static inline char *put_tab(char *p, const struct strtab *t, uint32_t i)
{
	uint32_t a = t->off[i];
	return put_mem(p, t->blob + a, t->off[i + 1] - a);
}

/* ---- keyed lookups ---------------------------------------------------------------------- */

static inline uint32_t khash(uint64_t k0, uint64_t k1)
{
	uint64_t h = (k0 ^ (k1 * 0x9e3779b97f4a7c15ULL)) * 0xbf58476d1ce4e5b9ULL;
	return (uint32_t)(h >> 32);
}

/* Entry index of the key (k0 = bytes 0..7, k1 = bytes 8..15, little-endian), or -1. */
static inline int64_t keyed_find2(const struct keyed *k, uint64_t k0, uint64_t k1)
{
	if (!k->slots)
		return -1;
	uint32_t i = khash(k0, k1) & k->mask;
	for (;;) {
		const struct kslot *s = &k->slots[i];
		if (!s->idx)
			return -1;
		if (s->k0 == k0 && s->k1 == k1)
			return (int64_t)s->idx - 1;
		i = (i + 1) & k->mask;
	}
}

static inline int64_t keyed_find(const struct keyed *k, const uint8_t key[16])
{
	uint64_t k0, k1;
	memcpy(&k0, key, 8);
	memcpy(&k1, key + 8, 8);
	return keyed_find2(k, k0, k1);
}

static inline int64_t keyed_find_u32(const struct keyed *k, uint32_t v)
{
	return keyed_find2(k, v, 0); /* the u32 in the first 4 bytes, little-endian */
}

/* ---- tables from the binding ------------------------------------------------------------ */

static void strtab_free(struct strtab *t)
{
	free(t->off);
	free(t->blob);
	memset(t, 0, sizeof(*t));
}

static int strtab_copy(struct strtab *t, uint32_t n, const uint32_t *off, const char *blob)
{
	if (off[0] != 0)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (off[i + 1] < off[i])
			return -EINVAL;
	uint32_t size = off[n];
	uint32_t *o = malloc(((size_t)n + 1) * sizeof(*o));
	char *b = malloc(size ? size : 1);
	if (!o || !b) {
		free(o);
		free(b);
		return -ENOMEM;
	}
	memcpy(o, off, ((size_t)n + 1) * sizeof(*o));
	if (size)
		memcpy(b, blob, size);
	uint32_t maxlen = 0;
	for (uint32_t i = 0; i < n; i++)
		if (o[i + 1] - o[i] > maxlen)
			maxlen = o[i + 1] - o[i];
	strtab_free(t);
	t->n = n;
	t->maxlen = maxlen;
	t->off = o;
	t->blob = b;
	return 0;
}

/* Fixed sizes of the indexed tables (0: any n >= 1). */
static const uint32_t TAB_SIZES[TAB_COUNT] = {
	[TAB_TCP_FLAGS] = 256,    [TAB_TCP_SUMMARY] = 256, [TAB_OBS_POINT] = 256,
	[TAB_TRACE_REASON] = 256, [TAB_DROP_DESC] = 0,     [TAB_POLICY_DROP] = 0,
	[TAB_ICMP_TYPE] = 512,    [TAB_ICMP_HAS_CODES] = 512, [TAB_MISC] = MISC_COUNT,
};

HB_API int hb_set_table(struct hb_ctx *c, uint32_t id, uint32_t n, const uint32_t *off,
			const char *blob)
{
	if (!c || id >= TAB_COUNT || !off || n == 0 || (TAB_SIZES[id] && n != TAB_SIZES[id]))
		return -EINVAL;
	return strtab_copy(&c->tab[id], n, off, blob);
}

HB_API int hb_set_keyed(struct hb_ctx *c, uint32_t id, uint32_t n, const uint8_t *keys,
			const uint32_t *off, const char *blob)
{
	if (!c || id >= KEY_COUNT || !off || (n && !keys) || n > (1U << 28))
		return -EINVAL;
	struct keyed nk = {0};
	int err = strtab_copy(&nk.vals, n, off, blob);
	if (err)
		return err;
	uint32_t slots = 16;
	while (slots < 2 * n)
		slots <<= 1;
	nk.mask = slots - 1;
	nk.slots = calloc(slots, sizeof(*nk.slots));
	if (!nk.slots) {
		strtab_free(&nk.vals);
		return -ENOMEM;
	}
	for (uint32_t e = 0; e < n; e++) {
		uint64_t k0, k1;
		memcpy(&k0, keys + 16 * (size_t)e, 8);
		memcpy(&k1, keys + 16 * (size_t)e + 8, 8);
		uint32_t i = khash(k0, k1) & nk.mask;
		while (nk.slots[i].idx && !(nk.slots[i].k0 == k0 && nk.slots[i].k1 == k1))
			i = (i + 1) & nk.mask;
		nk.slots[i].k0 = k0; /* a repeated key: the last entry wins, as in a dict */
		nk.slots[i].k1 = k1;
		nk.slots[i].idx = e + 1;
	}
	struct keyed *k = &c->key[id];
	strtab_free(&k->vals);
	free(k->slots);
	*k = nk;
	return 0;
}

/* Bytes one line can take at most with the tables as they are now (0 if a table is
 * missing or the ICMP names are too long): what the caller's output buffer must hold. */
HB_API uint64_t hb_max_line(const struct hb_ctx *c)
{
	if (!c)
		return 0;
	for (int i = 0; i < TAB_COUNT; i++)
		if (!c->tab[i].off)
			return 0;
	const struct strtab *m = &c->tab[TAB_MISC];
	uint64_t ep = c->key[KEY_EP4].vals.maxlen;
	if (c->key[KEY_EP6].vals.maxlen > ep)
		ep = c->key[KEY_EP6].vals.maxlen;
	if (tab_len(m, MISC_EP4_DEFAULT) > ep)
		ep = tab_len(m, MISC_EP4_DEFAULT);
	if (tab_len(m, MISC_EP6_DEFAULT) > ep)
		ep = tab_len(m, MISC_EP6_DEFAULT);
	uint64_t icmp = (uint64_t)c->tab[TAB_ICMP_TYPE].maxlen + c->key[KEY_ICMP_CODE].vals.maxlen +
			tab_len(m, MISC_ICMP4_PREFIX) + tab_len(m, MISC_ICMP6_PREFIX) + 32;
	if (icmp > ICMP_SUMMARY_MAX)
		return 0; /* render() builds ICMP summaries in a buffer of that size */
	uint64_t summary = c->tab[TAB_TCP_SUMMARY].maxlen;
	if (icmp > summary)
		summary = icmp;
	/* 2048 covers every key, fixed value, number, address, MAC, time and UUID (~900). */
	return 2048 + tab_len(m, MISC_EMITTER) + 2ULL * tab_len(m, MISC_NODE_NAME) + 2 * ep +
	       c->tab[TAB_TCP_FLAGS].maxlen + summary + c->tab[TAB_OBS_POINT].maxlen +
	       c->tab[TAB_TRACE_REASON].maxlen + c->tab[TAB_DROP_DESC].maxlen +
	       c->key[KEY_IFACE].vals.maxlen + c->key[KEY_POLICY].vals.maxlen;
}

/* ---- PRNG and UUIDs ------------------------------------------------------------------- */

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna) */
static inline uint64_t rng_next(uint64_t s[4])
{
	uint64_t r = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static void rng_seed(uint64_t s[4], uint64_t seed)
{
	/* splitmix64 expansion */
	for (int i = 0; i < 4; i++) {
		uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		s[i] = z ^ (z >> 31);
	}
}

/* 36 characters: a random version 4 UUID with the RFC 4122 variant. */
static inline char *put_uuid(struct hb_ctx *c, char *p)
{
	uint8_t b[16];
	uint64_t a = rng_next(c->rng), d = rng_next(c->rng);
	memcpy(b, &a, 8);
	memcpy(b + 8, &d, 8);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10xx */
	p = put_hex(p, b, 4);
	*p++ = '-';
	p = put_hex(p, b + 4, 2);
	*p++ = '-';
	p = put_hex(p, b + 6, 2);
	*p++ = '-';
	p = put_hex(p, b + 8, 2);
	*p++ = '-';
	return put_hex(p, b + 10, 6);
}

/* ---- time ------------------------------------------------------------------------------- */

/* Days since 1970-01-01 -> civil date (proleptic Gregorian; H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, uint32_t *m, uint32_t *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	uint32_t doe = (uint32_t)(z - era * 146097);
	uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	uint32_t mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* protojson Timestamp with quotes: "YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z".
 * An int64 of nanoseconds is always within years 1677..2262. */
static char *put_time(struct hb_ctx *c, char *p, int64_t wall)
{
	int64_t sec = wall / 1000000000;
	int64_t ns = wall % 1000000000;
	if (ns < 0) {
		ns += 1000000000;
		sec -= 1;
	}
	if (!c->tvalid || sec != c->tsec) {
		int64_t days = sec / 86400, sod = sec % 86400;
		if (sod < 0) {
			sod += 86400;
			days -= 1;
		}
		int64_t y;
		uint32_t mo, d;
		civil_from_days(days, &y, &mo, &d);
		char *q = c->tprefix;
		q = put_digits(q, (uint32_t)y, 4);
		*q++ = '-';
		q = put_digits(q, mo, 2);
		*q++ = '-';
		q = put_digits(q, d, 2);
		*q++ = 'T';
		q = put_digits(q, (uint32_t)(sod / 3600), 2);
		*q++ = ':';
		q = put_digits(q, (uint32_t)(sod / 60 % 60), 2);
		*q++ = ':';
		put_digits(q, (uint32_t)(sod % 60), 2);
		c->tsec = sec;
		c->tvalid = 1;
	}
	*p++ = '"';
	p = put_mem(p, c->tprefix, 19);
	uint32_t n = (uint32_t)ns;
	if (n) {
		*p++ = '.';
		if (n % 1000000 == 0)
			p = put_digits(p, n / 1000000, 3);
		else if (n % 1000 == 0)
			p = put_digits(p, n / 1000, 6);
		else
			p = put_digits(p, n, 9);
	}
	*p++ = 'Z';
	*p++ = '"';
	return p;
}

/* ---- addresses -------------------------------------------------------------------------- */

static inline char *put_mac(char *p, const uint8_t *m)
{
	for (int i = 0; i < 6; i++) {
		memcpy(p, HEX2[m[i]], 2);
		p[2] = ':';
		p += 3;
	}
	return p - 1;
}

static inline char *put_ipv4(char *p, const uint8_t *a)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*p++ = '.';
		p = put_u64(p, a[i]);
	}
	return p;
}

/* The addresses observer/parser/events.py spells through ipaddress rather than inet_ntop
 * (IPv4-compatible and IPv4-mapped forms): left to Python. */
static inline int ipv6_special(const uint8_t *a)
{
	static const uint8_t z[12];
	if (!memcmp(a, z, 10) && (a[10] | a[11]))
		return 1;
	return !memcmp(a, z, 12) && (a[12] | a[13]);
}

/* RFC 5952: lowercase, no leading zeros, the first longest run (>= 2) of zero groups as
 * "::"; what glibc's inet_ntop and Python's ipaddress give for the other addresses. */
static char *put_ipv6(char *p, const uint8_t *a)
{
	uint32_t w[8];
	for (int i = 0; i < 8; i++)
		w[i] = (uint32_t)a[2 * i] << 8 | a[2 * i + 1];
	int best = -1, best_len = 0, cur = -1, cur_len = 0;
	for (int i = 0; i < 8; i++) {
		if (w[i] == 0) {
			if (cur < 0)
				cur = i;
			if (++cur_len > best_len) {
				best = cur;
				best_len = cur_len;
			}
		} else {
			cur = -1;
			cur_len = 0;
		}
	}
	if (best_len < 2)
		best = -1;
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			*p++ = ':';
			if (best + best_len == 8)
				*p++ = ':';
			i += best_len - 1;
			continue;
		}
		if (i)
			*p++ = ':';
		uint32_t v = w[i];
		int started = 0;
		for (int sh = 12; sh >= 0; sh -= 4) {
			uint32_t nib = (v >> sh) & 15;
			if (nib || started || sh == 0) {
				*p++ = HEX[nib];
				started = 1;
			}
		}
	}
	return p;
}

/* ---- one record -> one line ------------------------------------------------------------ */

static const uint8_t ZERO_MAC[6];

static inline int count_index(uint8_t type)
{
	return type == HB_EVENT_DROP ? 0 : type == HB_EVENT_TRACE ? 1 : 2;
}

/* The endpoint fragment for an address: the table's, or the version's default. */
static inline void endpoint_of(const struct hb_ctx *c, int v6, const uint8_t *addr,
			       const char **frag, uint32_t *len)
{
	const struct keyed *k = &c->key[v6 ? KEY_EP6 : KEY_EP4];
	uint64_t k0 = 0, k1 = 0;
	if (v6) {
		memcpy(&k0, addr, 8);
		memcpy(&k1, addr + 8, 8);
	} else {
		uint32_t a;
		memcpy(&a, addr, 4);
		k0 = a;
	}
	int64_t i = keyed_find2(k, k0, k1);
	const struct strtab *t;
	uint32_t e;
	if (i >= 0) {
		t = &k->vals;
		e = (uint32_t)i;
	} else {
		t = &c->tab[TAB_MISC];
		e = v6 ? MISC_EP6_DEFAULT : MISC_EP4_DEFAULT;
	}
	*frag = t->blob + t->off[e];
	*len = tab_len(t, e);
}

static char *put_ports(char *p, uint16_t sport, uint16_t dport)
{
	if (sport) {
		LIT(p, "\"source_port\":");
		p = put_u64(p, sport);
	}
	if (dport) {
		if (sport)
			*p++ = ',';
		LIT(p, "\"destination_port\":");
		p = put_u64(p, dport);
	}
	return p;
}

static char *put_icmp_summary(const struct hb_ctx *c, char *p, int v6, uint8_t type, uint8_t code)
{
	const struct strtab *m = &c->tab[TAB_MISC];
	const struct strtab *names = &c->tab[TAB_ICMP_TYPE];
	uint32_t ti = (v6 ? 256U : 0U) + type;
	*p++ = '"';
	p = put_tab(p, m, v6 ? MISC_ICMP6_PREFIX : MISC_ICMP4_PREFIX);
	if (tab_len(names, ti) == 0) { /* unknown type: "<type>(<code>)" */
		p = put_u64(p, type);
		*p++ = '(';
		p = put_u64(p, code);
		*p++ = ')';
	} else {
		p = put_tab(p, names, ti);
		int64_t ci = -1;
		if (tab_len(&c->tab[TAB_ICMP_HAS_CODES], ti)) {
			uint8_t key[16] = {v6 ? 6 : 4, type, code};
			ci = keyed_find(&c->key[KEY_ICMP_CODE], key);
		}
		if (ci >= 0) { /* "<type name>(<code name>)" */
			*p++ = '(';
			p = put_tab(p, &c->key[KEY_ICMP_CODE].vals, (uint32_t)ci);
			*p++ = ')';
		} else if (code || tab_len(&c->tab[TAB_ICMP_HAS_CODES], ti)) {
			LIT(p, "(Code: ");
			p = put_u64(p, code);
			*p++ = ')';
		}
	}
	*p++ = '"';
	return p;
}

/* Render a validated record. */
static char *render(struct hb_ctx *c, const struct hb_flow_event *ev, int64_t wall, char *p)
{
	const struct strtab *misc = &c->tab[TAB_MISC];
	const uint8_t etype = ev->hdr.type;
	const int trace = etype == HB_EVENT_TRACE;
	char tbuf[40];
	const size_t tlen = (size_t)(put_time(c, tbuf, wall) - tbuf);
	const uint32_t node_len = tab_len(misc, MISC_NODE_NAME);

	LIT(p, "{\"flow\":{\"time\":");
	p = put_mem(p, tbuf, tlen);
	LIT(p, ",\"uuid\":\"");
	p = put_uuid(c, p);
	LIT(p, "\",\"emitter\":");
	p = put_tab(p, misc, MISC_EMITTER);

	/* verdict, drop reason, whether is_reply is known */
	uint32_t drop = 0;
	int reply_known, forwarded = 0;
	if (trace) {
		LIT(p, ",\"verdict\":\"FORWARDED\"");
		forwarded = 1;
		reply_known = 1;
	} else if (etype == HB_EVENT_DROP) {
		LIT(p, ",\"verdict\":\"DROPPED\"");
		drop = ev->drop_reason;
		reply_known = 0;
	} else if (ev->audited) {
		LIT(p, ",\"verdict\":\"AUDIT\"");
		reply_known = 1;
	} else if (ev->drop_reason) {
		LIT(p, ",\"verdict\":\"DROPPED\"");
		drop = ev->drop_reason;
		reply_known = 0;
	} else {
		LIT(p, ",\"verdict\":\"FORWARDED\"");
		forwarded = 1;
		reply_known = 1;
	}
	if (drop) {
		LIT(p, ",\"drop_reason\":");
		p = put_u64(p, drop);
	}

	if (memcmp(ev->eth_src, ZERO_MAC, 6) || memcmp(ev->eth_dst, ZERO_MAC, 6)) {
		LIT(p, ",\"ethernet\":{\"source\":\"");
		p = put_mac(p, ev->eth_src);
		LIT(p, "\",\"destination\":\"");
		p = put_mac(p, ev->eth_dst);
		LIT(p, "\"}");
	}

	/* summary: a table entry, or a literal */
	const char *sum = NULL;
	uint32_t sum_len = 0;
	char sumbuf[ICMP_SUMMARY_MAX];
	const char *src = NULL, *dst = NULL;
	uint32_t src_len = 0, dst_len = 0;
	char srcbuf[32], dstbuf[32];
	const uint8_t ipv = ev->ip_version;
	if (ipv) {
		const int v6 = ipv == 6;
		LIT(p, ",\"IP\":{\"source\":\"");
		p = v6 ? put_ipv6(p, ev->saddr) : put_ipv4(p, ev->saddr);
		LIT(p, "\",\"destination\":\"");
		p = v6 ? put_ipv6(p, ev->daddr) : put_ipv4(p, ev->daddr);
		if (v6)
			LIT(p, "\",\"ipVersion\":\"IPv6\"}");
		else
			LIT(p, "\",\"ipVersion\":\"IPv4\"}");
		const uint8_t proto = ev->l4_proto;
		if (proto == IPPROTO_TCP_) {
			LIT(p, ",\"l4\":{\"TCP\":{");
			p = put_ports(p, ev->sport, ev->dport);
			if (ev->sport || ev->dport)
				*p++ = ',';
			LIT(p, "\"flags\":");
			p = put_tab(p, &c->tab[TAB_TCP_FLAGS], ev->tcp_flags);
			LIT(p, "}}");
			const struct strtab *s = &c->tab[TAB_TCP_SUMMARY];
			sum = s->blob + s->off[ev->tcp_flags];
			sum_len = tab_len(s, ev->tcp_flags);
		} else if (proto == IPPROTO_UDP_ || proto == IPPROTO_SCTP_) {
			if (proto == IPPROTO_UDP_) {
				LIT(p, ",\"l4\":{\"UDP\":{");
				sum = "\"UDP\"";
			} else {
				LIT(p, ",\"l4\":{\"SCTP\":{");
				sum = "\"SCTP\"";
			}
			sum_len = (uint32_t)strlen(sum);
			p = put_ports(p, ev->sport, ev->dport);
			LIT(p, "}}");
		} else if (proto == IPPROTO_ICMP_ || proto == IPPROTO_ICMPV6_) {
			const int icmp6 = proto == IPPROTO_ICMPV6_;
			if (icmp6)
				LIT(p, ",\"l4\":{\"ICMPv6\":{");
			else
				LIT(p, ",\"l4\":{\"ICMPv4\":{");
			if (ev->icmp_type) {
				LIT(p, "\"type\":");
				p = put_u64(p, ev->icmp_type);
			}
			if (ev->icmp_code) {
				if (ev->icmp_type)
					*p++ = ',';
				LIT(p, "\"code\":");
				p = put_u64(p, ev->icmp_code);
			}
			LIT(p, "}}");
			sum = sumbuf;
			sum_len = (uint32_t)(put_icmp_summary(c, sumbuf, icmp6, ev->icmp_type,
							      ev->icmp_code) - sumbuf);
		} else {
			sum = v6 ? "\"IPv6\"" : "\"IPv4\"";
			sum_len = 6;
		}
		endpoint_of(c, v6, ev->saddr, &src, &src_len);
		endpoint_of(c, v6, ev->daddr, &dst, &dst_len);
	} else {
		sum = "\"Ethernet\"";
		sum_len = 10;
		if (ev->src_identity) {
			char *q = srcbuf;
			LIT(q, "{\"identity\":");
			q = put_u64(q, ev->src_identity);
			*q++ = '}';
			src = srcbuf;
			src_len = (uint32_t)(q - srcbuf);
		}
		if (ev->dst_identity) {
			char *q = dstbuf;
			LIT(q, "{\"identity\":");
			q = put_u64(q, ev->dst_identity);
			*q++ = '}';
			dst = dstbuf;
			dst_len = (uint32_t)(q - dstbuf);
		}
	}
	if (src_len) {
		LIT(p, ",\"source\":");
		p = put_mem(p, src, src_len);
	}
	if (dst_len) {
		LIT(p, ",\"destination\":");
		p = put_mem(p, dst, dst_len);
	}

	LIT(p, ",\"Type\":\"L3_L4\"");
	if (node_len) {
		LIT(p, ",\"node_name\":");
		p = put_tab(p, misc, MISC_NODE_NAME);
	}
	const int is_reply = trace && ev->is_reply;
	if (is_reply)
		LIT(p, ",\"reply\":true");
	LIT(p, ",\"event_type\":{\"type\":");
	p = put_u64(p, etype);
	if (ev->hdr.sub_type) {
		LIT(p, ",\"sub_type\":");
		p = put_u64(p, ev->hdr.sub_type);
	}
	*p++ = '}';

	if (trace) {
		const uint8_t obs = ev->obs_point;
		if (obs == HB_OBS_FROM_ENDPOINT) {
			if (is_reply)
				LIT(p, ",\"traffic_direction\":\"INGRESS\"");
			else
				LIT(p, ",\"traffic_direction\":\"EGRESS\"");
		} else if (obs == HB_OBS_TO_ENDPOINT) {
			if (is_reply)
				LIT(p, ",\"traffic_direction\":\"EGRESS\"");
			else
				LIT(p, ",\"traffic_direction\":\"INGRESS\"");
		}
		p = put_tab(p, &c->tab[TAB_OBS_POINT], obs); /* the member, or nothing */
		if (ev->ct_state) {
			LIT(p, ",\"trace_reason\":");
			p = put_tab(p, &c->tab[TAB_TRACE_REASON], ev->ct_state);
		}
	} else {
		if (ev->policy_dir == HB_POLICY_INGRESS)
			LIT(p, ",\"traffic_direction\":\"INGRESS\"");
		else if (ev->policy_dir == HB_POLICY_EGRESS)
			LIT(p, ",\"traffic_direction\":\"EGRESS\"");
		if (etype != HB_EVENT_DROP && ev->policy_match_type) {
			LIT(p, ",\"policy_match_type\":");
			p = put_u64(p, ev->policy_match_type);
		}
	}
	if (drop) {
		const struct strtab *d = &c->tab[TAB_DROP_DESC];
		if (drop < d->n) {
			if (tab_len(d, drop)) {
				LIT(p, ",\"drop_reason_desc\":");
				p = put_tab(p, d, drop);
			}
		} else if (drop <= INT32_MAX) { /* an unnamed enum value: protojson prints the number */
			LIT(p, ",\"drop_reason_desc\":");
			p = put_u64(p, drop);
		}
	}
	if (reply_known) {
		if (is_reply)
			LIT(p, ",\"is_reply\":true");
		else
			LIT(p, ",\"is_reply\":false");
	}
	if (ev->ifindex) {
		LIT(p, ",\"interface\":");
		int64_t i = keyed_find_u32(&c->key[KEY_IFACE], ev->ifindex);
		if (i >= 0) {
			p = put_tab(p, &c->key[KEY_IFACE].vals, (uint32_t)i);
		} else {
			LIT(p, "{\"index\":");
			p = put_u64(p, ev->ifindex);
			*p++ = '}';
		}
	}
	LIT(p, ",\"Summary\":");
	p = put_mem(p, sum, sum_len);

	if (!trace && ev->policy_rule_id && (ev->policy_dir == HB_POLICY_INGRESS ||
					     ev->policy_dir == HB_POLICY_EGRESS)) {
		const int ingress = ev->policy_dir == HB_POLICY_INGRESS;
		int denied = -1; /* -1: no key */
		if (etype == HB_EVENT_DROP) {
			const struct strtab *pd = &c->tab[TAB_POLICY_DROP];
			if (drop < pd->n && tab_len(pd, drop))
				denied = 1;
		} else {
			denied = !forwarded;
		}
		if (denied >= 0) {
			const struct keyed *k = &c->key[KEY_POLICY];
			int64_t i = keyed_find_u32(k, ev->policy_rule_id);
			if (i >= 0 && tab_len(&k->vals, (uint32_t)i)) {
				if (denied && ingress)
					LIT(p, ",\"ingress_denied_by\":");
				else if (denied)
					LIT(p, ",\"egress_denied_by\":");
				else if (ingress)
					LIT(p, ",\"ingress_allowed_by\":");
				else
					LIT(p, ",\"egress_allowed_by\":");
				p = put_tab(p, &k->vals, (uint32_t)i);
			}
		}
	}
	*p++ = '}';
	if (node_len) {
		LIT(p, ",\"node_name\":");
		p = put_tab(p, misc, MISC_NODE_NAME);
	}
	LIT(p, ",\"time\":");
	p = put_mem(p, tbuf, tlen);
	*p++ = '}';
	return p;
}

/* What to do with one committed record. */
enum { REC_RENDER, REC_ERROR, REC_PYTHON };

static int classify(const uint8_t *rec, uint32_t n, int64_t offset, int64_t *wall)
{
	const struct hb_flow_event *ev = (const void *)rec;
	if (n < sizeof(struct hb_flow_event))
		return REC_ERROR;
	const uint8_t t = ev->hdr.type;
	if (t != HB_EVENT_DROP && t != HB_EVENT_TRACE && t != HB_EVENT_POLICY_VERDICT)
		return REC_PYTHON;
	if (ev->hdr.len < sizeof(struct hb_flow_event) || ev->hdr.len > n)
		return REC_ERROR;
	if (ev->ip_version == 6) {
		if (ipv6_special(ev->saddr) || ipv6_special(ev->daddr))
			return REC_PYTHON;
	} else if (ev->ip_version == 0) {
		if (ev->l4_proto)
			return REC_ERROR;
	} else if (ev->ip_version != 4) {
		return REC_ERROR;
	}
	if (t != HB_EVENT_TRACE && ev->policy_dir > 2)
		return REC_ERROR;
	/* wall time must be an int64 of nanoseconds (what the store keeps) */
	const __int128 w = (__int128)ev->hdr.ts_ns + offset;
	if (w > INT64_MAX || w < INT64_MIN)
		return REC_ERROR;
	*wall = (int64_t)w;
	return REC_RENDER;
}

static void count(struct hb_ctx *c, const struct hb_flow_event *ev)
{
	uint32_t i = (uint32_t)count_index(ev->hdr.type) << 16 | (uint32_t)ev->hdr.sub_type << 8 |
		     ev->l4_proto;
	if (c->counts[i]++ == 0)
		c->touched[c->ntouched++] = i;
}

/* Walk the ring and render. Returns 0, or -EINVAL when the tables are incomplete or the
 * buffers are smaller than one line can be. */
HB_API int hb_drain(struct hb_ctx *c, struct hb_ring *r, struct hb_drain *d)
{
	d->out_len = d->fmt_len = 0;
	d->lines = d->records = d->errors = 0;
	d->status = HB_EMPTY;
	const uint64_t max_line = hb_max_line(c);
	if (!max_line || !r || d->out_cap < max_line || d->fmt_cap < 32 || !d->out || !d->fmt ||
	    !d->times)
		return -EINVAL;
	if (c->taken) { /* counts partly taken: keep the rest at the front */
		memmove(c->touched, c->touched + c->taken, (c->ntouched - c->taken) * sizeof(*c->touched));
		c->ntouched -= c->taken;
		c->taken = 0;
	}
	uint64_t cons = *r->cons;
	const uint64_t start = cons;
	const uint64_t prod = __atomic_load_n(r->prod, __ATOMIC_ACQUIRE);
	char *out = d->out, *const out_end = d->out + d->out_cap;
	char *fmt = d->fmt, *const fmt_end = d->fmt + d->fmt_cap;
	uint32_t lines = 0, errors = 0;
	while (cons < prod) {
		if (lines + errors >= d->max_records || (uint64_t)(out_end - out) < max_line ||
		    fmt_end - fmt < 16) {
			d->status = HB_LIMIT;
			break;
		}
		const uint8_t *hdr = r->data + (cons & r->mask);
		const uint32_t len = __atomic_load_n((const uint32_t *)hdr, __ATOMIC_ACQUIRE);
		if (len & RB_BUSY_BIT)
			break;
		const uint32_t n = len & ~(RB_BUSY_BIT | RB_DISCARD_BIT);
		const uint64_t next = cons + ((n + RB_HDR_SIZE + 7) & ~7U);
		if (!(len & RB_DISCARD_BIT)) {
			const uint8_t *rec = hdr + RB_HDR_SIZE;
			int64_t wall = 0;
			const int what = n > r->mask + 1 ? REC_ERROR : classify(rec, n, d->offset_ns, &wall);
			if (what == REC_PYTHON) {
				d->status = HB_PYTHON;
				break;
			}
			if (what == REC_ERROR) {
				errors++;
			} else {
				const struct hb_flow_event *ev = (const void *)rec;
				char *end = render(c, ev, wall, out);
				*end++ = '\n';
				fmt = put_u64(fmt, (uint64_t)(end - out - 1));
				*fmt++ = 's';
				*fmt++ = 'x';
				d->times[lines++] = wall;
				count(c, ev);
				out = end;
			}
		}
		cons = next;
	}
	if (cons != start)
		__atomic_store_n(r->cons, cons, __ATOMIC_RELEASE);
	d->out_len = (uint64_t)(out - d->out);
	d->fmt_len = (uint64_t)(fmt - d->fmt);
	d->lines = lines;
	d->errors = errors;
	d->records = lines + errors;
	return 0;
}

/* Per-(type, sub_type, l4_proto) counts of the lines rendered since the counts were last
 * taken, up to cap at a time (call until it returns 0). key = type << 16 | sub_type << 8 |
 * l4_proto. */
HB_API uint32_t hb_take_counts(struct hb_ctx *c, uint32_t *keys, uint64_t *counts, uint32_t cap)
{
	static const uint8_t TYPES[3] = {HB_EVENT_DROP, HB_EVENT_TRACE, HB_EVENT_POLICY_VERDICT};
	uint32_t n = 0;
	while (c->taken < c->ntouched && n < cap) {
		uint32_t k = c->touched[c->taken++];
		keys[n] = (uint32_t)TYPES[k >> 16] << 16 | (k & 0xffff);
		counts[n++] = c->counts[k];
		c->counts[k] = 0;
	}
	if (c->taken == c->ntouched)
		c->ntouched = c->taken = 0;
	return n;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

HB_API uint32_t hb_abi_version(void)
{
	return HB_ABI_VERSION;
}

HB_API uint32_t hb_drain_struct_size(void)
{
	return (uint32_t)sizeof(struct hb_drain);
}

HB_API struct hb_ctx *hb_ctx_new(void)
{
	struct hb_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->counts = calloc(COUNT_KEYS, sizeof(*c->counts));
	c->touched = calloc(COUNT_KEYS, sizeof(*c->touched));
	/* the whole xoshiro256** state from the kernel's CSPRNG (all zero is the one bad state) */
	if (!c->counts || !c->touched ||
	    getrandom(c->rng, sizeof(c->rng), 0) != (ssize_t)sizeof(c->rng) ||
	    !(c->rng[0] | c->rng[1] | c->rng[2] | c->rng[3])) {
		free(c->counts);
		free(c->touched);
		free(c);
		return NULL;
	}
	return c;
}

/* Deterministic UUIDs (tests, benchmarks). */
HB_API void hb_ctx_seed(struct hb_ctx *c, uint64_t seed)
{
	rng_seed(c->rng, seed);
}

HB_API void hb_ctx_free(struct hb_ctx *c)
{
	if (!c)
		return;
	for (int i = 0; i < TAB_COUNT; i++)
		strtab_free(&c->tab[i]);
	for (int i = 0; i < KEY_COUNT; i++) {
		strtab_free(&c->key[i].vals);
		free(c->key[i].slots);
	}
	free(c->counts);
	free(c->touched);
	free(c);
}

static int valid_size(uint64_t size)
{
	return size >= 4096 && !(size & (size - 1));
}

/* Map a BPF_MAP_TYPE_RINGBUF of `size` bytes (its max_entries) as ringbuf.py does: the
 * consumer page read-write, the producer page and the doubly mapped data area read-only.
 * NULL with *err = errno on failure. The map fd stays the caller's. */
HB_API struct hb_ring *hb_ring_open(int map_fd, uint64_t size, int *err)
{
	long page = sysconf(_SC_PAGESIZE);
	*err = 0;
	if (page <= 0 || !valid_size(size) || size < (uint64_t)page) {
		*err = EINVAL;
		return NULL;
	}
	struct hb_ring *r = calloc(1, sizeof(*r));
	if (!r) {
		*err = ENOMEM;
		return NULL;
	}
	r->cons_len = (size_t)page;
	r->prod_len = (size_t)page + 2 * (size_t)size;
	r->cons_map = mmap(NULL, r->cons_len, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (r->cons_map == MAP_FAILED) {
		*err = errno;
		free(r);
		return NULL;
	}
	r->prod_map = mmap(NULL, r->prod_len, PROT_READ, MAP_SHARED, map_fd, page);
	if (r->prod_map == MAP_FAILED) {
		*err = errno;
		munmap(r->cons_map, r->cons_len);
		free(r);
		return NULL;
	}
	r->cons = r->cons_map;
	r->prod = r->prod_map;
	r->data = (const uint8_t *)r->prod_map + page;
	r->mask = size - 1;
	return r;
}

HB_API uint64_t hb_ring_available(const struct hb_ring *r)
{
	return __atomic_load_n(r->prod, __ATOMIC_ACQUIRE) - *r->cons;
}

HB_API void hb_ring_close(struct hb_ring *r)
{
	if (!r)
		return;
	if (r->prod_map)
		munmap(r->prod_map, r->prod_len);
	if (r->cons_map)
		munmap(r->cons_map, r->cons_len);
	free(r);
}
