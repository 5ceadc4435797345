// hbcompact.c: `hubblectl observe -o compact` lines from GetFlowsResponse JSON lines, in C.
//
// The text is never composed here: the Python printer (hubblectl/printer/compact_fast.py)
// composes every line and hands this file *templates* it may reuse. A line's template is
// keyed on the raw JSON bytes of every value the line depends on (endpoints, identities,
// event type, verdict, reply, summary, L7 kind, the rare keys, with --print-node-name the node
// name, with --print-policy-names the four policy lists, ...) except the time and the
// two port numbers, which are rendered here: time = the per-second text Python gave for the
// `YYYY-MM-DDTHH:MM:SS` head, plus the fraction of a second as the layout shows it; ports =
// the decimal digits as they stand in the JSON. A Summary of printable ASCII without escapes
// is also left out of the key and copied as it stands (see parse_line: summary mode).
//
// Equal raw bytes decode to equal values, so a template learnt from one line is the line
// Python would print for every line with the same key. Anything this file does not
// understand exactly (JSON orjson would reject or might read differently, escapes in keys,
// duplicate keys, other shapes, a key or a time head not learnt yet) stops the scan at that
// line with a reason: the caller prints it with Python, may teach the template, and calls
// again after it. Python keeps the order.
//
// Exports only hb_compact_* symbols.

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hbjson.h"

#define API __attribute__((visibility("default")))

#define HB_COMPACT_VERSION 3u

// hb_compact_new's flags
#define HBC_NODE_NAME 1u // the node name is part of every key (--print-node-name)
#define HBC_POLICIES 2u  // the four policy lists are part of every key (--print-policy-names)

enum {
	HBC_DONE = 0,     // the whole input was consumed
	HBC_DECLINED = 1, // stopped at a line Python must print (res[0]..res[1])
	HBC_FULL = 2,     // the output buffer is full (res[0] = where to resume)
};

// decline reasons (bits)
enum {
	HBC_MISS_TIME = 1,     // the time head is not learnt yet
	HBC_MISS_TEMPLATE = 2, // the line template is not learnt yet
	HBC_OTHER = 4,         // a shape or input this file does not render
};

#define MAX_DEPTH 64
#define MAX_KEY 4096
#define MAX_BASE 64
#define MAX_NUMBER 32

// ---------------------------------------------------------------------------------------
// JSON scanning (validating as strictly as orjson, or stricter)

typedef struct {
	const uint8_t *p; // NULL: absent
	uint32_t n;
} span_t;

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

// One UTF-8 sequence starting at p (first byte >= 0x80); returns its end or NULL.
static const uint8_t *utf8_seq(const uint8_t *p, const uint8_t *e)
{
	const size_t n = hb_utf8_seq_len(p, e);
	return n ? p + n : NULL;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
// Nonzero when some byte of w is zero (exact as to whether one is).
#define HAS_ZERO(w) (((w) - ONES) & ~(w) & HIGHS)

// A string at p (on its opening quote): returns the byte after the closing quote, or NULL.
// *escaped is set when it holds a backslash escape.
static inline __attribute__((always_inline)) const uint8_t *
scan_string(const uint8_t *p, const uint8_t *e, int *escaped)
{
	p++;
	for (;;) {
		// eight plain bytes (0x20..0x7f but '"' and '\\') at a time
		while (e - p >= 8) {
			uint64_t w;
			memcpy(&w, p, 8);
			uint64_t q = w ^ (0x22 * ONES), b = w ^ (0x5C * ONES);
			// bytes < 0x20: w - 0x20 borrows into the high bit (only where w < 0x80)
			uint64_t special = (w & HIGHS) | HAS_ZERO(q) | HAS_ZERO(b) |
					   ((w - 0x20 * ONES) & ~w & HIGHS);
			if (special)
				break;
			p += 8;
		}
		while (p < e && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p >= e)
			return NULL;
		uint8_t c = *p;
		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			*escaped = 1;
			if (e - p < 2)
				return NULL;
			uint8_t x = p[1];
			if (x == 'u') {
				if (e - p < 6)
					return NULL;
				int v = 0;
				for (int i = 2; i < 6; i++) {
					int h = hb_hexval(p[i]);
					if (h < 0)
						return NULL;
					v = v * 16 + h;
				}
				if (v >= 0xD800 && v <= 0xDFFF)
					return NULL; // surrogate escapes: left to Python
				p += 6;
			} else if (x == '"' || x == '\\' || x == '/' || x == 'b' || x == 'f' ||
				   x == 'n' || x == 'r' || x == 't') {
				p += 2;
			} else {
				return NULL;
			}
			continue;
		}
		p = utf8_seq(p, e); // c >= 0x80
		if (p == NULL)
			return NULL;
	}
}

// A number: JSON grammar, no exponent (1e400 is an orjson error), at most MAX_NUMBER bytes.
static inline const uint8_t *scan_number(const uint8_t *p, const uint8_t *e)
{
	const uint8_t *s = p;
	if (p < e && *p == '-')
		p++;
	if (p >= e)
		return NULL;
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	} else {
		return NULL;
	}
	if (p < e && *p == '.') {
		p++;
		if (p >= e || *p < '0' || *p > '9')
			return NULL;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E'))
		return NULL;
	if (p - s > MAX_NUMBER)
		return NULL;
	return p;
}

static const uint8_t *scan_literal(const uint8_t *p, const uint8_t *e, const char *lit, size_t n)
{
	if ((size_t)(e - p) < n || memcmp(p, lit, n) != 0)
		return NULL;
	return p + n;
}

// The members of an object to pick out: names, and for an object-valued member the spec to
// scan it with (in the same pass).
#define MAX_NAMES 24
struct name {
	const char *s;
	uint32_t n;
};
#define NAME(x) {x, sizeof(x) - 1}

struct spec {
	const struct name *names;
	int n;
	span_t spans[MAX_NAMES];      // each name's value, or p == NULL
	uint8_t objects[MAX_NAMES];   // the value was an object (and children[i] scanned it)
	struct spec *children[MAX_NAMES];
	uint32_t by_len[32];          // bit i set: names[i] has that length
};

static const uint8_t *scan_object(const uint8_t *p, const uint8_t *e, int depth,
				  struct spec *spec);

static const uint8_t *scan_array(const uint8_t *p, const uint8_t *e, int depth);

static const uint8_t *scan_value(const uint8_t *p, const uint8_t *e, int depth)
{
	if (p >= e)
		return NULL;
	int escaped = 0;
	switch (*p) {
	case '"':
		return scan_string(p, e, &escaped);
	case '{':
		return scan_object(p, e, depth, NULL);
	case '[':
		return scan_array(p, e, depth);
	case 't':
		return scan_literal(p, e, "true", 4);
	case 'f':
		return scan_literal(p, e, "false", 5);
	case 'n':
		return scan_literal(p, e, "null", 4);
	default:
		if (*p == '-' || (*p >= '0' && *p <= '9'))
			return scan_number(p, e);
		return NULL;
	}
}

// An object at p (on '{'), validated. With a spec, each member named in it has its value's
// span recorded (and an object value scanned with the child spec); a key that repeats one
// of the names, or any key with an escape, fails the scan (orjson keeps the last duplicate;
// we do not guess).
static const uint8_t *scan_object(const uint8_t *p, const uint8_t *e, int depth,
				  struct spec *spec)
{
	if (depth > MAX_DEPTH)
		return NULL;
	if (spec != NULL) {
		for (int i = 0; i < spec->n; i++) {
			spec->spans[i].p = NULL;
			spec->objects[i] = 0;
		}
	}
	p = skip_ws(p + 1, e);
	if (p < e && *p == '}')
		return p + 1;
	for (;;) {
		if (p >= e || *p != '"')
			return NULL;
		int escaped = 0;
		const uint8_t *ks = p + 1;
		const uint8_t *ke = scan_string(p, e, &escaped);
		if (ke == NULL)
			return NULL;
		int slot = -1;
		if (spec != NULL) {
			if (escaped)
				return NULL;
			uint32_t kn = (uint32_t)(ke - 1 - ks);
			uint32_t cands = kn < 32 ? spec->by_len[kn] : 0;
			while (cands) {
				int i = __builtin_ctz(cands);
				cands &= cands - 1;
				if (memcmp(spec->names[i].s, ks, kn) == 0) {
					slot = i;
					break;
				}
			}
		}
		p = skip_ws(ke, e);
		if (p >= e || *p != ':')
			return NULL;
		p = skip_ws(p + 1, e);
		const uint8_t *vs = p;
		if (slot >= 0) {
			if (spec->spans[slot].p != NULL)
				return NULL;
			if (p < e && *p == '{') {
				p = scan_object(p, e, depth + 1, spec->children[slot]);
				spec->objects[slot] = 1;
			} else {
				p = scan_value(p, e, depth + 1);
			}
			if (p == NULL)
				return NULL;
			spec->spans[slot].p = vs;
			spec->spans[slot].n = (uint32_t)(p - vs);
		} else {
			p = scan_value(p, e, depth + 1);
			if (p == NULL)
				return NULL;
		}
		p = skip_ws(p, e);
		if (p >= e)
			return NULL;
		if (*p == '}')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = skip_ws(p + 1, e);
	}
}

static const uint8_t *scan_array(const uint8_t *p, const uint8_t *e, int depth)
{
	if (depth > MAX_DEPTH)
		return NULL;
	p = skip_ws(p + 1, e);
	if (p < e && *p == ']')
		return p + 1;
	for (;;) {
		p = scan_value(p, e, depth + 1);
		if (p == NULL)
			return NULL;
		p = skip_ws(p, e);
		if (p >= e)
			return NULL;
		if (*p == ']')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = skip_ws(p + 1, e);
	}
}

static inline int is_null(span_t v)
{
	return v.p != NULL && v.n == 4 && memcmp(v.p, "null", 4) == 0;
}

// ---------------------------------------------------------------------------------------
// What a line holds

// Key slots: values whose raw bytes enter the key (K_*), and presence-only ones (P_*).
enum {
	K_IP_SRC,
	K_IP_DST,
	K_SRC_NS,
	K_SRC_POD,
	K_SRC_ID,
	K_DST_NS,
	K_DST_POD,
	K_DST_ID,
	K_TYPE,
	K_SUB_TYPE,
	K_VERDICT,
	K_REPLY,
	K_SUMMARY,
	K_MATCH,
	K_DIRECTION,
	K_SRC_NAMES,
	K_DST_NAMES,
	K_SRC_SERVICE,
	K_DST_SERVICE,
	K_TRACE_ID,
	K_AUTH,
	K_NODE,
	K_INGRESS_ALLOWED,
	K_EGRESS_ALLOWED,
	K_INGRESS_DENIED,
	K_EGRESS_DENIED,
	K_L7_TYPE,
	K_DNS_SOURCE,
	P_L7,
	P_HTTP,
	P_DNS,
	P_KAFKA,
	P_SRC_PORT,
	P_DST_PORT,
	NSLOTS,
};

struct line {
	span_t slot[NSLOTS];
	span_t summary; // summary mode: the Summary's text, rendered here (not in the key)
	int summary_mode;
	span_t time; // the string's contents, without quotes
	span_t src_port, dst_port; // decimal digits; n == 0 for none
};

static const struct name TOP_NAMES[] = {NAME("flow")};
enum { F_TIME, F_IP, F_SRC, F_DST, F_L4, F_ET, F_VERDICT, F_REPLY, F_SUMMARY, F_MATCH,
       F_DIRECTION, F_L7, F_SRC_NAMES, F_DST_NAMES, F_SRC_SVC, F_DST_SVC, F_TRACE, F_AUTH,
       F_NODE, F_IN_ALLOWED, F_EG_ALLOWED, F_IN_DENIED, F_EG_DENIED, F_COUNT };
static const struct name FLOW_NAMES[F_COUNT] = {
	NAME("time"), NAME("IP"), NAME("source"), NAME("destination"), NAME("l4"),
	NAME("event_type"), NAME("verdict"), NAME("is_reply"), NAME("Summary"),
	NAME("policy_match_type"), NAME("traffic_direction"), NAME("l7"), NAME("source_names"),
	NAME("destination_names"), NAME("source_service"), NAME("destination_service"),
	NAME("ip_trace_id"), NAME("auth_type"), NAME("node_name"), NAME("ingress_allowed_by"),
	NAME("egress_allowed_by"), NAME("ingress_denied_by"), NAME("egress_denied_by"),
};
static const struct name IP_NAMES[] = {NAME("source"), NAME("destination")};
static const struct name EP_NAMES[] = {NAME("namespace"), NAME("pod_name"), NAME("identity")};
static const struct name L4_NAMES[] = {NAME("TCP"), NAME("UDP"), NAME("SCTP")};
static const struct name PORT_NAMES[] = {NAME("source_port"), NAME("destination_port")};
static const struct name ET_NAMES[] = {NAME("type"), NAME("sub_type")};
static const struct name L7_NAMES[] = {NAME("type"), NAME("http"), NAME("dns"), NAME("kafka")};
static const struct name DNS_NAMES[] = {NAME("observation_source")};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// The specs of one parse, wired together.
struct specs {
	struct spec top, flow, ip, src, dst, l4, ports[3], et, l7, dns;
};

static void specs_init(struct specs *s)
{
	memset(s, 0, sizeof(*s));
	s->top.names = TOP_NAMES;
	s->top.n = COUNT(TOP_NAMES);
	s->top.children[0] = &s->flow;
	s->flow.names = FLOW_NAMES;
	s->flow.n = F_COUNT;
	s->flow.children[F_IP] = &s->ip;
	s->flow.children[F_SRC] = &s->src;
	s->flow.children[F_DST] = &s->dst;
	s->flow.children[F_L4] = &s->l4;
	s->flow.children[F_ET] = &s->et;
	s->flow.children[F_L7] = &s->l7;
	s->ip.names = IP_NAMES;
	s->ip.n = COUNT(IP_NAMES);
	s->src.names = s->dst.names = EP_NAMES;
	s->src.n = s->dst.n = COUNT(EP_NAMES);
	s->l4.names = L4_NAMES;
	s->l4.n = COUNT(L4_NAMES);
	for (int i = 0; i < 3; i++) {
		s->l4.children[i] = &s->ports[i];
		s->ports[i].names = PORT_NAMES;
		s->ports[i].n = COUNT(PORT_NAMES);
	}
	s->et.names = ET_NAMES;
	s->et.n = COUNT(ET_NAMES);
	s->l7.names = L7_NAMES;
	s->l7.n = COUNT(L7_NAMES);
	s->l7.children[2] = &s->dns;
	s->dns.names = DNS_NAMES;
	s->dns.n = COUNT(DNS_NAMES);
	struct spec *all[] = {&s->top, &s->flow, &s->ip, &s->src, &s->dst, &s->l4,
			      &s->ports[0], &s->ports[1], &s->ports[2], &s->et, &s->l7, &s->dns};
	for (int k = 0; k < COUNT(all); k++)
		for (int i = 0; i < all[k]->n; i++)
			all[k]->by_len[all[k]->names[i].n] |= 1u << i;
}

static inline int all_space(const uint8_t *p, const uint8_t *e)
{
	for (; p < e; p++)
		if (!(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f'))
			return 0;
	return 1;
}

// A port as Python prints it: "" for 0, the digits of a positive int below 10^9; else -1.
static int port_text(span_t v, span_t *out)
{
	if (v.p == NULL || v.n == 0 || v.n > 9)
		return -1;
	if (v.n == 1 && v.p[0] == '0') {
		out->p = v.p;
		out->n = 0;
		return 0;
	}
	if (v.p[0] < '1' || v.p[0] > '9')
		return -1;
	for (uint32_t i = 1; i < v.n; i++)
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
	*out = v;
	return 0;
}

static span_t present(span_t v)
{
	span_t out = {v.p, 0};
	return out;
}

// Parse one line; 0 if it has the shape rendered here, -1 otherwise.
static int parse_line(struct specs *sp, const uint8_t *p, const uint8_t *e, uint32_t flags,
		      struct line *ln)
{
	p = skip_ws(p, e);
	if (p >= e || *p != '{')
		return -1;
	const uint8_t *end = scan_object(p, e, 1, &sp->top);
	if (end == NULL || skip_ws(end, e) != e || !sp->top.objects[0])
		return -1;
	const struct spec *f = &sp->flow;
	// IP, source, destination, l4, event_type: objects (and IP.source/destination and
	// event_type.type present), as compact_fast.from_json requires
	if (!f->objects[F_IP] || !f->objects[F_SRC] || !f->objects[F_DST] || !f->objects[F_L4] ||
	    !f->objects[F_ET] || !sp->ip.spans[0].p || !sp->ip.spans[1].p || !sp->et.spans[0].p)
		return -1;
	memset(ln, 0, sizeof(*ln));

	// time: a plain string
	span_t t = f->spans[F_TIME];
	if (t.p == NULL || t.n < 2 || t.p[0] != '"' || memchr(t.p, '\\', t.n) != NULL)
		return -1;
	ln->time.p = t.p + 1;
	ln->time.n = t.n - 2;

	ln->slot[K_IP_SRC] = sp->ip.spans[0];
	ln->slot[K_IP_DST] = sp->ip.spans[1];
	ln->slot[K_SRC_NS] = sp->src.spans[0];
	ln->slot[K_SRC_POD] = sp->src.spans[1];
	ln->slot[K_SRC_ID] = sp->src.spans[2];
	ln->slot[K_DST_NS] = sp->dst.spans[0];
	ln->slot[K_DST_POD] = sp->dst.spans[1];
	ln->slot[K_DST_ID] = sp->dst.spans[2];
	ln->slot[K_TYPE] = sp->et.spans[0];
	ln->slot[K_SUB_TYPE] = sp->et.spans[1];

	// l4: the first of TCP, UDP, SCTP present; null means no ports
	for (int i = 0; i < 3; i++) {
		span_t ports = sp->l4.spans[i];
		if (ports.p == NULL)
			continue;
		if (is_null(ports))
			break;
		if (!sp->l4.objects[i])
			return -1;
		if (port_text(sp->ports[i].spans[0], &ln->src_port) < 0 ||
		    port_text(sp->ports[i].spans[1], &ln->dst_port) < 0)
			return -1;
		break;
	}
	if (ln->src_port.n)
		ln->slot[P_SRC_PORT] = present(ln->src_port);
	if (ln->dst_port.n)
		ln->slot[P_DST_PORT] = present(ln->dst_port);

	if (f->spans[F_L7].p != NULL) {
		if (!f->objects[F_L7])
			return -1;
		ln->slot[P_L7] = present(f->spans[F_L7]);
		ln->slot[K_L7_TYPE] = sp->l7.spans[0];
		if (sp->l7.spans[1].p)
			ln->slot[P_HTTP] = present(sp->l7.spans[1]);
		if (sp->l7.spans[2].p) {
			ln->slot[P_DNS] = present(sp->l7.spans[2]);
			if (!is_null(sp->l7.spans[2])) {
				if (!sp->l7.objects[2])
					return -1;
				ln->slot[K_DNS_SOURCE] = sp->dns.spans[0];
			}
		}
		if (sp->l7.spans[3].p)
			ln->slot[P_KAFKA] = present(sp->l7.spans[3]);
	}

	ln->slot[K_VERDICT] = f->spans[F_VERDICT];
	ln->slot[K_REPLY] = f->spans[F_REPLY];
	ln->slot[K_SUMMARY] = f->spans[F_SUMMARY];
	// Summary mode: a Summary of printable ASCII without escapes is printed as it stands
	// (compact_fast: `raw if raw.isprintable()`) unless ip_trace_id or auth_type add to it;
	// the key then holds a mark instead of the text, so flows that differ only in their
	// Summary (L7 flows) share a template.
	span_t sm = f->spans[F_SUMMARY];
	if (sm.p != NULL && sm.n >= 2 && sm.p[0] == '"' && f->spans[F_TRACE].p == NULL &&
	    f->spans[F_AUTH].p == NULL) {
		int plain = 1;
		for (uint32_t i = 1; i + 1 < sm.n; i++) {
			if (sm.p[i] < 0x20 || sm.p[i] > 0x7e || sm.p[i] == '\\') {
				plain = 0;
				break;
			}
		}
		if (plain) {
			ln->summary_mode = 1;
			ln->summary.p = sm.p + 1;
			ln->summary.n = sm.n - 2;
		}
	}
	ln->slot[K_MATCH] = f->spans[F_MATCH];
	ln->slot[K_DIRECTION] = f->spans[F_DIRECTION];
	ln->slot[K_SRC_NAMES] = f->spans[F_SRC_NAMES];
	ln->slot[K_DST_NAMES] = f->spans[F_DST_NAMES];
	ln->slot[K_SRC_SERVICE] = f->spans[F_SRC_SVC];
	ln->slot[K_DST_SERVICE] = f->spans[F_DST_SVC];
	ln->slot[K_TRACE_ID] = f->spans[F_TRACE];
	ln->slot[K_AUTH] = f->spans[F_AUTH];
	if (flags & HBC_NODE_NAME)
		ln->slot[K_NODE] = f->spans[F_NODE];
	if (flags & HBC_POLICIES) {
		ln->slot[K_INGRESS_ALLOWED] = f->spans[F_IN_ALLOWED];
		ln->slot[K_EGRESS_ALLOWED] = f->spans[F_EG_ALLOWED];
		ln->slot[K_INGRESS_DENIED] = f->spans[F_IN_DENIED];
		ln->slot[K_EGRESS_DENIED] = f->spans[F_EG_DENIED];
	}
	return 0;
}

// The key: per slot, 0xFF for absent, 0xFE for the Summary in summary mode, else a 2-byte
// big-endian length below 0xFE00 (so its first byte is no mark) and the bytes. -1 if too long.
static int64_t build_key(const struct line *ln, uint8_t *key, size_t cap)
{
	size_t n = 0;
	for (int i = 0; i < NSLOTS; i++) {
		span_t v = ln->slot[i];
		if (v.p == NULL || (i == K_SUMMARY && ln->summary_mode)) {
			if (n + 1 > cap)
				return -1;
			key[n++] = v.p == NULL ? 0xFF : 0xFE;
			continue;
		}
		if (v.n >= 0xFE00 || n + 3 + v.n > cap)
			return -1;
		key[n++] = (uint8_t)(v.n >> 8);
		key[n++] = (uint8_t)(v.n & 0xFF);
		memcpy(key + n, v.p, v.n);
		n += v.n;
	}
	return (int64_t)n;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	h ^= h >> 32;
	return h ? h : 1;
}

// ---------------------------------------------------------------------------------------
// Learnt tables

struct tmpl {
	uint64_t hash;
	uint32_t klen, alen, blen, clen;
	uint8_t first, second;
	uint8_t summary; // the line ends with the Summary's text and ")\n" (summary mode)
	uint8_t *key, *a, *b, *c; // into data
	uint8_t data[];
};

struct head {
	uint8_t used, na, blen;
	uint8_t head[19];
	uint8_t base[MAX_BASE];
};

struct hb_compact {
	int32_t digits; // -1 three fixed digits, 3/6/9 trimmed fraction, 0 none
	uint32_t flags; // HBC_*
	uint32_t limit;
	uint32_t cap; // slots in each table (power of two, > 2 * limit)
	uint32_t ntmpl, nheads;
	struct tmpl **tmpls;
	struct head *heads;
	uint8_t key[MAX_KEY];
};

static void clear_tmpls(struct hb_compact *c)
{
	for (uint32_t i = 0; i < c->cap; i++) {
		free(c->tmpls[i]);
		c->tmpls[i] = NULL;
	}
	c->ntmpl = 0;
}

API uint32_t hb_compact_version(void)
{
	return HB_COMPACT_VERSION;
}

API void *hb_compact_new(int32_t digits, uint32_t flags, uint32_t limit)
{
	if (limit < 1 || limit > (1u << 20))
		return NULL;
	struct hb_compact *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->digits = digits;
	c->flags = flags;
	c->limit = limit;
	c->cap = 16;
	while (c->cap < 2 * limit + 2)
		c->cap *= 2;
	c->tmpls = calloc(c->cap, sizeof(*c->tmpls));
	c->heads = calloc(c->cap, sizeof(*c->heads));
	if (c->tmpls == NULL || c->heads == NULL) {
		free(c->tmpls);
		free(c->heads);
		free(c);
		return NULL;
	}
	return c;
}

API void hb_compact_free(void *ctx)
{
	struct hb_compact *c = ctx;
	if (c == NULL)
		return;
	clear_tmpls(c);
	free(c->tmpls);
	free(c->heads);
	free(c);
}

static struct tmpl *find_tmpl(struct hb_compact *c, const uint8_t *key, size_t n, uint64_t h)
{
	uint32_t mask = c->cap - 1;
	for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
		struct tmpl *t = c->tmpls[i];
		if (t == NULL)
			return NULL;
		if (t->hash == h && t->klen == n && memcmp(t->key, key, n) == 0)
			return t;
	}
}

API int hb_compact_learn_line(void *ctx, const uint8_t *key, uint64_t klen, const uint8_t *a,
			      uint64_t alen, const uint8_t *b, uint64_t blen, const uint8_t *cc,
			      uint64_t clen, uint32_t first, uint32_t second, uint32_t summary)
{
	struct hb_compact *c = ctx;
	if (klen > MAX_KEY || alen > (1u << 20) || blen > (1u << 20) || clen > (1u << 20) ||
	    first > 2 || second > 2 || summary > 1)
		return -1;
	uint64_t h = hash_bytes(key, klen);
	if (find_tmpl(c, key, klen, h) != NULL)
		return 0;
	if (c->ntmpl >= c->limit)
		clear_tmpls(c);
	struct tmpl *t = malloc(sizeof(*t) + klen + alen + blen + clen);
	if (t == NULL)
		return -1;
	t->hash = h;
	t->klen = (uint32_t)klen;
	t->alen = (uint32_t)alen;
	t->blen = (uint32_t)blen;
	t->clen = (uint32_t)clen;
	t->first = (uint8_t)first;
	t->second = (uint8_t)second;
	t->summary = (uint8_t)summary;
	t->key = t->data;
	t->a = t->key + klen;
	t->b = t->a + alen;
	t->c = t->b + blen;
	memcpy(t->key, key, klen);
	memcpy(t->a, a, alen);
	memcpy(t->b, b, blen);
	memcpy(t->c, cc, clen);
	uint32_t mask = c->cap - 1;
	uint32_t i = (uint32_t)h & mask;
	while (c->tmpls[i] != NULL)
		i = (i + 1) & mask;
	c->tmpls[i] = t;
	c->ntmpl++;
	return 1;
}

static inline uint32_t head_hash(const uint8_t *head)
{
	return (uint32_t)hash_bytes(head, 19);
}

static struct head *find_head(struct hb_compact *c, const uint8_t *head)
{
	uint32_t mask = c->cap - 1;
	for (uint32_t i = head_hash(head) & mask;; i = (i + 1) & mask) {
		struct head *hd = &c->heads[i];
		if (!hd->used)
			return NULL;
		if (memcmp(hd->head, head, 19) == 0)
			return hd;
	}
}

// base_len 0: the head is not a valid time (the text is "N/A").
API int hb_compact_learn_time(void *ctx, const uint8_t *head, const uint8_t *base,
			      uint64_t base_len)
{
	struct hb_compact *c = ctx;
	if (base_len > MAX_BASE)
		return -1;
	if (find_head(c, head) != NULL)
		return 0;
	if (c->nheads >= c->limit) {
		memset(c->heads, 0, (size_t)c->cap * sizeof(*c->heads));
		c->nheads = 0;
	}
	uint32_t mask = c->cap - 1;
	uint32_t i = head_hash(head) & mask;
	while (c->heads[i].used)
		i = (i + 1) & mask;
	struct head *hd = &c->heads[i];
	hd->used = 1;
	hd->na = base_len == 0;
	hd->blen = (uint8_t)base_len;
	memcpy(hd->head, head, 19);
	memcpy(hd->base, base, base_len);
	c->nheads++;
	return 1;
}

// `YYYY-MM-DDTHH:MM:SS` with ASCII digits.
static int head_shape(const uint8_t *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd";
	for (int i = 0; i < 19; i++) {
		if (pat[i] == 'd') {
			if (s[i] < '0' || s[i] > '9')
				return 0;
		} else if (s[i] != (uint8_t)pat[i]) {
			return 0;
		}
	}
	return 1;
}

// The time text into out (room for MAX_BASE + 16); its length, -1 for another shape (left to
// Python), -2 for a head not learnt.
static int render_time(struct hb_compact *c, span_t t, uint8_t *out)
{
	const uint8_t *s = t.p;
	uint32_t n = t.n;
	if (n < 20 || s[n - 1] != 'Z' || n > 30)
		return -1;
	const uint8_t *frac = s + 20;
	uint32_t nf = 0;
	if (n > 20) {
		if (s[19] != '.')
			return -1;
		nf = n - 21;
		if (nf == 0)
			return -1;
		for (uint32_t i = 0; i < nf; i++)
			if (frac[i] < '0' || frac[i] > '9')
				return -1;
	}
	if (!head_shape(s))
		return -1;
	struct head *hd = find_head(c, s);
	if (hd == NULL)
		return -2;
	if (hd->na) {
		memcpy(out, "N/A", 3);
		return 3;
	}
	int len = hd->blen;
	memcpy(out, hd->base, len);
	if (c->digits < 0) {
		for (uint32_t i = 0; i < 3; i++)
			out[len++] = i < nf ? frac[i] : '0';
	} else if (c->digits > 0) {
		uint32_t kept = nf < (uint32_t)c->digits ? nf : (uint32_t)c->digits;
		while (kept > 0 && frac[kept - 1] == '0')
			kept--;
		if (kept) {
			out[len++] = '.';
			memcpy(out + len, frac, kept);
			len += (int)kept;
		}
		out[len++] = 'Z';
	}
	return len;
}

// ---------------------------------------------------------------------------------------
// Entry points

// A line's key; *summary_mode says whether the key leaves the Summary to be rendered here.
API int64_t hb_compact_key(void *ctx, const uint8_t *line, uint64_t len, uint8_t *key,
			   uint64_t cap, uint32_t *summary_mode)
{
	struct hb_compact *c = ctx;
	struct line ln;
	struct specs sp;
	specs_init(&sp);
	if (parse_line(&sp, line, line + len, c->flags, &ln) < 0)
		return -1;
	*summary_mode = (uint32_t)ln.summary_mode;
	return build_key(&ln, key, cap);
}

// Render lines of data[pos:len] into out until the end, a line Python must print, or a full
// buffer. res[0] where the scan stopped (the declined line's start, or where to resume),
// res[1] the declined line's end (after its newline), res[2] bytes written, res[3] lines
// written, res[4] the decline reasons.
API int hb_compact_render(void *ctx, const uint8_t *data, uint64_t len, uint64_t pos,
			  uint8_t *out, uint64_t cap, uint64_t *res)
{
	struct hb_compact *c = ctx;
	uint64_t o = 0, lines = 0;
	int status = HBC_DONE;
	uint8_t tbuf[MAX_BASE + 16];
	struct line ln;
	struct specs sp;
	specs_init(&sp);

	res[1] = res[4] = 0;
	while (pos < len) {
		const uint8_t *s = data + pos;
		const uint8_t *nl = memchr(s, '\n', len - pos);
		const uint8_t *e = nl ? nl : data + len;
		uint64_t next = (uint64_t)(e - data) + (nl ? 1 : 0);
		if (all_space(s, e)) {
			pos = next;
			continue;
		}
		uint64_t reason = 0;
		int tlen = 0;
		struct tmpl *t = NULL;
		if (parse_line(&sp, s, e, c->flags, &ln) < 0) {
			reason = HBC_OTHER;
		} else {
			tlen = render_time(c, ln.time, tbuf);
			if (tlen == -1)
				reason |= HBC_OTHER;
			else if (tlen == -2)
				reason |= HBC_MISS_TIME;
			int64_t kn = build_key(&ln, c->key, sizeof(c->key));
			if (kn < 0) {
				reason |= HBC_OTHER;
			} else {
				t = find_tmpl(c, c->key, (size_t)kn, hash_bytes(c->key, (size_t)kn));
				if (t == NULL)
					reason |= HBC_MISS_TEMPLATE;
			}
		}
		if (reason) {
			res[1] = next;
			res[4] = reason;
			status = HBC_DECLINED;
			break;
		}
		span_t port[3] = {{(const uint8_t *)"", 0}, ln.src_port, ln.dst_port};
		span_t p1 = port[t->first], p2 = port[t->second];
		span_t sum = t->summary ? ln.summary : port[0];
		uint64_t need = (uint64_t)tlen + t->alen + p1.n + t->blen + p2.n + t->clen +
				(t->summary ? sum.n + 2 : 0);
		if (o + need > cap) {
			status = HBC_FULL;
			break;
		}
		uint8_t *w = out + o;
		memcpy(w, tbuf, (size_t)tlen);
		w += tlen;
		memcpy(w, t->a, t->alen);
		w += t->alen;
		memcpy(w, p1.p, p1.n);
		w += p1.n;
		memcpy(w, t->b, t->blen);
		w += t->blen;
		memcpy(w, p2.p, p2.n);
		w += p2.n;
		memcpy(w, t->c, t->clen);
		w += t->clen;
		if (t->summary) {
			memcpy(w, sum.p, sum.n);
			w += sum.n;
			memcpy(w, ")\n", 2);
		}
		o += need;
		lines++;
		pos = next;
	}
	res[0] = pos;
	res[2] = o;
	res[3] = lines;
	return status;
}
