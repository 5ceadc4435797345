// SPDX-License-Identifier: Apache-2.0
/*
 * hbpb.c - canonical GetFlowsResponse JSON lines -> gRPC-framed protobuf messages.
 *
 * The reference is observer/api/grpcframe.py's Python path:
 *     payload = response_to_proto(orjson.loads(line)).SerializeToString()
 *     frame   = b"\x00" + len(payload).to_bytes(4, "big") + payload
 * This file transcodes a batch of lines in one call, driven by a schema table the Python
 * binding (observer/native/transcode.py) builds from the generated descriptors: per message
 * its fields (proto name, number, kind, flags, sub-message / enum / wrapped kind, oneof group)
 * and per enum its value names.
 *
 * It accepts only the canonical shapes of observer/api/convert.py's fast path (proto field
 * names, enum names, 64-bit integers as ASCII digit strings, RFC 3339 "...Z" timestamps with
 * 0-9 fraction digits, wrapper scalars, lists, objects, JSON strings with any escapes) and
 * only input orjson accepts. Anything else (null, lowerCamel names, enum numbers, duplicate
 * keys, two members of a oneof, bytes, floats, Any, maps, invalid JSON or UTF-8, integers out
 * of range, nesting deeper than HB_PB_MAX_DEPTH, ...) gives that line the status
 * HB_PB_PYTHON and no output: the caller converts it with the Python path, in order.
 *
 * Output: fields in field-number order, repeated numeric fields packed, zero-valued fields
 * without presence omitted - what upb's SerializeToString writes for such messages, so
 * the bytes are equal, not only the parsed messages.
 *
 * Every read is bounds-checked against the line; every write against the output capacity
 * (sizes are computed before anything is written). Only libc. The schema is read-only once
 * built, so calls may run concurrently; each call allocates its own scratch.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hbjson.h"

#define HB_PB_API __attribute__((visibility("default")))

/* Bumped whenever a signature or the layout of the schema arrays changes. */
#define HB_PB_ABI_VERSION 1

/* field kinds (observer/native/transcode.py mirrors them) */
enum {
	K_NONE = 0, /* not transcoded: a line using the field goes to Python */
	K_INT32 = 1,
	K_INT64 = 2,
	K_UINT32 = 3,
	K_UINT64 = 4,
	K_SINT32 = 5,
	K_SINT64 = 6,
	K_FIXED32 = 7,
	K_FIXED64 = 8,
	K_SFIXED32 = 9,
	K_SFIXED64 = 10,
	K_BOOL = 11,
	K_ENUM = 12,
	K_DOUBLE = 13,
	K_STRING = 14,
	K_MESSAGE = 15,
	K_TIMESTAMP = 16,
	K_WRAPPER = 17,
	K__COUNT
};

/* field flags */
#define F_REPEATED 1u
#define F_PRESENCE 2u
#define F_PACKED 4u

/* per-line status */
#define HB_PB_NATIVE 0
#define HB_PB_PYTHON 1

/* hb_pb_transcode errors */
#define HB_PB_E_ARGS (-1)
#define HB_PB_E_NOMEM (-2)

#define HB_PB_MAX_DEPTH 64
#define HB_PB_LOOKAHEAD 12 /* declared fields tried after the last key's before hashing */
#define HB_PB_MAX_FIELDS 1024 /* per message: the duplicate-key bitmap */
#define HB_PB_MAX_ONEOFS 64   /* per message: the oneof bitmap */
#define HB_PB_MAX_LINE (1u << 28)
#define HB_PB_MAX_SIZE (1u << 30) /* any message body, checked while summing */

/* words per record of the arrays the binding passes in */
#define FIELD_WORDS 8 /* name_off, name_len, number, kind, flags, aux, oneof, reserved */
#define MSG_WORDS 2   /* first field, field count */
#define ENUM_WORDS 2  /* first value, value count */
#define EVAL_WORDS 3  /* name_off, name_len, number (int32 bits) */

typedef struct {
	uint32_t name_off, name_len;
	uint32_t number;
	uint32_t msg;	 /* owning message */
	uint32_t aux;	 /* K_MESSAGE: message index; K_ENUM: enum index; K_WRAPPER: inner kind */
	uint32_t tag;	 /* (number << 3) | wire type (2 when packed) */
	uint8_t tagsz;	 /* bytes of the tag's varint */
	uint8_t kind;
	uint8_t flags;
	uint8_t oneof;	 /* 1..64 within the message, 0: none */
} pb_field;

typedef struct {
	uint32_t start, count;
} pb_range;

typedef struct {
	uint32_t name_off, name_len;
	uint32_t owner;
	int32_t number;
} pb_eval;

typedef struct hb_pb_schema {
	char *names;
	uint32_t names_len;
	pb_field *fields;
	uint32_t nfields;
	pb_range *msgs;
	uint32_t nmsgs;
	pb_range *enums;
	uint32_t nenums;
	pb_eval *evals;
	uint32_t nevals;
	uint32_t *fslots; /* open addressing: field index + 1, 0 empty */
	uint32_t fmask;
	uint32_t *eslots; /* enum value index + 1 */
	uint32_t emask;
	locale_t cloc;
} hb_pb_schema;

/* ------------------------------------------------------------------------------------------ */
/* schema */

/* a name's hash from its length and first and last 8 bytes (collisions end in memcmp) */
static inline uint32_t hash_name(uint32_t owner, const uint8_t *p, size_t n)
{
	uint64_t a = 0, b = 0;
	if (n >= 8) {
		memcpy(&a, p, 8);
		memcpy(&b, p + n - 8, 8);
	} else {
		for (size_t i = 0; i < n; i++)
			a |= (uint64_t)p[i] << (8 * i);
	}
	uint64_t h = a * 0x9e3779b97f4a7c15ull;
	h ^= (b + n) * 0xc2b2ae3d27d4eb4full;
	h ^= (uint64_t)owner * 0x165667b19e3779f9ull;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return (uint32_t)h;
}

static uint32_t table_size(uint32_t n)
{
	uint32_t size = 16;
	while (size < 2 * n + 1)
		size <<= 1;
	return size;
}

static uint8_t varint_size(uint64_t v)
{
	uint8_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static int kind_is_varint(uint32_t k)
{
	return k == K_INT32 || k == K_INT64 || k == K_UINT32 || k == K_UINT64 || k == K_SINT32 ||
	       k == K_SINT64 || k == K_BOOL || k == K_ENUM;
}

static int kind_is_fixed32(uint32_t k)
{
	return k == K_FIXED32 || k == K_SFIXED32;
}

static int kind_is_fixed64(uint32_t k)
{
	return k == K_FIXED64 || k == K_SFIXED64 || k == K_DOUBLE;
}

static int kind_is_scalar_number(uint32_t k)
{
	return kind_is_varint(k) || kind_is_fixed32(k) || kind_is_fixed64(k);
}

static uint32_t wire_type(uint32_t k)
{
	if (kind_is_varint(k))
		return 0;
	if (kind_is_fixed64(k))
		return 1;
	if (kind_is_fixed32(k))
		return 5;
	return 2;
}

HB_PB_API uint32_t hb_pb_abi_version(void)
{
	return HB_PB_ABI_VERSION;
}

HB_PB_API void hb_pb_schema_free(hb_pb_schema *s)
{
	if (!s)
		return;
	free(s->names);
	free(s->fields);
	free(s->msgs);
	free(s->enums);
	free(s->evals);
	free(s->fslots);
	free(s->eslots);
	if (s->cloc)
		freelocale(s->cloc);
	free(s);
}

static int range_ok(uint32_t off, uint32_t len, uint32_t total)
{
	return off <= total && len <= total - off;
}

/*
 * Builds a schema from the binding's arrays (see *_WORDS); message 0 is the root. Returns
 * NULL when an array is inconsistent (an index out of range, a kind it does not know, ...)
 * or memory runs out; *err says which (1 invalid, 2 memory).
 */
HB_PB_API hb_pb_schema *hb_pb_schema_new(const char *names, uint32_t names_len,
					 const uint32_t *msgs, uint32_t nmsgs,
					 const uint32_t *fields, uint32_t nfields,
					 const uint32_t *enums, uint32_t nenums,
					 const uint32_t *evals, uint32_t nevals, int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	*err = 1;
	if (nmsgs == 0 || nmsgs > (1u << 20) || nfields > (1u << 20) || nenums > (1u << 20) ||
	    nevals > (1u << 20) || (names_len && !names) || !msgs || (nfields && !fields) ||
	    (nenums && !enums) || (nevals && !evals))
		return NULL;
	hb_pb_schema *s = calloc(1, sizeof(*s));
	if (!s) {
		*err = 2;
		return NULL;
	}
	s->names_len = names_len;
	s->nfields = nfields;
	s->nmsgs = nmsgs;
	s->nenums = nenums;
	s->nevals = nevals;
	s->names = malloc(names_len ? names_len : 1);
	s->fields = calloc(nfields ? nfields : 1, sizeof(pb_field));
	s->msgs = calloc(nmsgs, sizeof(pb_range));
	s->enums = calloc(nenums ? nenums : 1, sizeof(pb_range));
	s->evals = calloc(nevals ? nevals : 1, sizeof(pb_eval));
	uint32_t fsize = table_size(nfields), esize = table_size(nevals);
	s->fslots = calloc(fsize, sizeof(uint32_t));
	s->eslots = calloc(esize, sizeof(uint32_t));
	s->fmask = fsize - 1;
	s->emask = esize - 1;
	s->cloc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (!s->names || !s->fields || !s->msgs || !s->enums || !s->evals || !s->fslots ||
	    !s->eslots || !s->cloc) {
		hb_pb_schema_free(s);
		*err = 2;
		return NULL;
	}
	if (names_len)
		memcpy(s->names, names, names_len);

	for (uint32_t m = 0; m < nmsgs; m++) {
		uint32_t start = msgs[m * MSG_WORDS], count = msgs[m * MSG_WORDS + 1];
		if (!range_ok(start, count, nfields) || count > HB_PB_MAX_FIELDS)
			goto invalid;
		s->msgs[m].start = start;
		s->msgs[m].count = count;
		for (uint32_t i = start; i < start + count; i++) {
			const uint32_t *w = fields + (size_t)i * FIELD_WORDS;
			pb_field *f = &s->fields[i];
			if (f->tagsz) /* a field listed by two messages */
				goto invalid;
			f->name_off = w[0];
			f->name_len = w[1];
			f->number = w[2];
			f->kind = (uint8_t)(w[3] < K__COUNT ? w[3] : K__COUNT);
			f->flags = (uint8_t)w[4];
			f->aux = w[5];
			f->msg = m;
			if (!range_ok(w[0], w[1], names_len) || w[2] == 0 || w[2] >= (1u << 29) ||
			    w[3] >= K__COUNT || w[4] > 7 || w[6] > HB_PB_MAX_ONEOFS)
				goto invalid;
			f->oneof = (uint8_t)w[6];
			if (f->kind == K_MESSAGE && f->aux >= nmsgs)
				goto invalid;
			if (f->kind == K_ENUM && f->aux >= nenums)
				goto invalid;
			if (f->kind == K_WRAPPER &&
			    !(kind_is_scalar_number(f->aux) || f->aux == K_STRING) )
				goto invalid;
			if (f->kind == K_WRAPPER && f->aux == K_ENUM)
				goto invalid; /* no enum wrapper exists */
			if ((f->flags & F_PACKED) &&
			    (!(f->flags & F_REPEATED) || !kind_is_scalar_number(f->kind)))
				goto invalid;
			uint32_t wt = (f->flags & F_PACKED) ? 2 : wire_type(f->kind);
			f->tag = (f->number << 3) | wt;
			f->tagsz = varint_size(f->tag);
			/* index by name; a name twice in one message is invalid */
			const uint8_t *name = (const uint8_t *)s->names + f->name_off;
			uint32_t h = hash_name(m, name, f->name_len) & s->fmask;
			while (s->fslots[h]) {
				const pb_field *o = &s->fields[s->fslots[h] - 1];
				if (o->msg == m && o->name_len == f->name_len &&
				    memcmp(s->names + o->name_off, name, f->name_len) == 0)
					goto invalid;
				h = (h + 1) & s->fmask;
			}
			s->fslots[h] = i + 1;
		}
	}
	for (uint32_t i = 0; i < nfields; i++)
		if (!s->fields[i].tagsz) /* a field no message lists */
			goto invalid;
	for (uint32_t e = 0; e < nenums; e++) {
		uint32_t start = enums[e * ENUM_WORDS], count = enums[e * ENUM_WORDS + 1];
		if (!range_ok(start, count, nevals))
			goto invalid;
		s->enums[e].start = start;
		s->enums[e].count = count;
		for (uint32_t i = start; i < start + count; i++) {
			const uint32_t *w = evals + (size_t)i * EVAL_WORDS;
			pb_eval *v = &s->evals[i];
			if (v->name_len || v->owner)
				goto invalid; /* listed twice */
			if (!range_ok(w[0], w[1], names_len) || w[1] == 0)
				goto invalid;
			v->name_off = w[0];
			v->name_len = w[1];
			v->owner = e;
			v->number = (int32_t)w[2];
			const uint8_t *name = (const uint8_t *)s->names + v->name_off;
			uint32_t h = hash_name(e, name, v->name_len) & s->emask;
			while (s->eslots[h]) {
				const pb_eval *o = &s->evals[s->eslots[h] - 1];
				if (o->owner == e && o->name_len == v->name_len &&
				    memcmp(s->names + o->name_off, name, v->name_len) == 0)
					goto invalid;
				h = (h + 1) & s->emask;
			}
			s->eslots[h] = i + 1;
		}
	}
	*err = 0;
	return s;
invalid:
	hb_pb_schema_free(s);
	*err = 1;
	return NULL;
}

static inline int same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
	while (n >= 8) {
		uint64_t x, y;
		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		if (x != y)
			return 0;
		a += 8;
		b += 8;
		n -= 8;
	}
	while (n--)
		if (*a++ != *b++)
			return 0;
	return 1;
}

static const pb_field *find_field(const hb_pb_schema *s, uint32_t msg, const uint8_t *name,
				  size_t n)
{
	uint32_t h = hash_name(msg, name, n) & s->fmask;
	uint32_t idx;
	while ((idx = s->fslots[h]) != 0) {
		const pb_field *f = &s->fields[idx - 1];
		if (f->msg == msg && f->name_len == n &&
		    same_bytes((const uint8_t *)s->names + f->name_off, name, n))
			return f;
		h = (h + 1) & s->fmask;
	}
	return NULL;
}

static int find_enum(const hb_pb_schema *s, uint32_t e, const uint8_t *name, size_t n,
		     int32_t *number)
{
	uint32_t h = hash_name(e, name, n) & s->emask;
	uint32_t idx;
	while ((idx = s->eslots[h]) != 0) {
		const pb_eval *v = &s->evals[idx - 1];
		if (v->owner == e && v->name_len == n &&
		    same_bytes((const uint8_t *)s->names + v->name_off, name, n)) {
			*number = v->number;
			return 1;
		}
		h = (h + 1) & s->emask;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* parsing: one line -> a tree of nodes with every size computed */

typedef struct {
	uint32_t field; /* index into schema->fields */
	uint32_t next;	/* next entry of the message / element of the list; 0 ends */
	uint32_t child; /* message: first entry (field-number order); list: first element */
	uint32_t len;	/* message, timestamp, wrapper: body size; packed list: body size */
	uint64_t v;	/* scalar: wire value; string: offset of the raw text in the line */
	uint32_t raw;	/* string: raw length; timestamp: nanos */
	uint32_t dlen;	/* string: decoded length */
	uint32_t esc;	/* string: has escapes */
	uint32_t pad;
} pb_node;

typedef struct {
	const hb_pb_schema *s;
	const uint8_t *p; /* the line */
	size_t pos, end;
	pb_node *nodes;
	uint32_t nn, ncap;
	uint64_t *stack; /* entries of the open messages (number << 32 | node), sorted on close */
	uint32_t sp, scap;
} pb_parser;

#define FAIL (-1)

static inline void skip_ws(pb_parser *P)
{
	while (P->pos < P->end) {
		uint8_t c = P->p[P->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		P->pos++;
	}
}

static inline int peek(const pb_parser *P)
{
	return P->pos < P->end ? P->p[P->pos] : -1;
}

static uint32_t new_node(pb_parser *P, uint32_t field)
{
	if (P->nn >= P->ncap)
		return 0;
	uint32_t i = P->nn++;
	pb_node *n = &P->nodes[i];
	memset(n, 0, sizeof(*n));
	n->field = field;
	return i;
}

static int read_hex4(const uint8_t *p, size_t avail, uint32_t *out)
{
	if (avail < 4)
		return FAIL;
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hb_hexval(p[i]);
		if (h < 0)
			return FAIL;
		v = (v << 4) | (uint32_t)h;
	}
	*out = v;
	return 0;
}

/* the word scans read 8 bytes as one little-endian integer (byte i = bits 8i..8i+7) */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "hbpb.c assumes little-endian");

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* nonzero when one of the 8 bytes of v may be '"', '\\', a control character or non-ASCII
 * (no false negatives; a false positive only sends that word to the byte loop) */
static inline uint64_t special_bytes(uint64_t v)
{
	uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');
	return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((v - ONES * 0x20) & ~v) | v) & HIGHS;
}

/*
 * A JSON string at P->pos (the opening quote): validates it as orjson does (no control
 * characters, known escapes, paired surrogates, strict UTF-8) and gives the offset and
 * length of its raw text, its decoded length and whether it has escapes.
 */
static int scan_string(pb_parser *P, uint32_t *off, uint32_t *raw, uint32_t *dlen, uint32_t *esc)
{
	const uint8_t *p = P->p;
	size_t i = P->pos + 1, end = P->end, start = i;
	size_t decoded = 0;
	uint32_t has_esc = 0;
	for (;;) {
		while (end - i >= 8) {
			uint64_t v;
			memcpy(&v, p + i, 8);
			uint64_t sp = special_bytes(v);
			if (sp) {
				/* the lowest flagged byte is exact: skip to it */
				size_t k = (size_t)__builtin_ctzll(sp) / 8;
				i += k;
				decoded += k;
				break;
			}
			i += 8;
			decoded += 8;
		}
		if (i >= end)
			return FAIL;
		uint8_t c = p[i];
		if (c == '"')
			break;
		if (c < 0x20)
			return FAIL;
		if (c == '\\') {
			has_esc = 1;
			if (i + 1 >= end)
				return FAIL;
			uint8_t e = p[i + 1];
			if (e == 'u') {
				uint32_t cp;
				if (read_hex4(p + i + 2, end - (i + 2), &cp))
					return FAIL;
				i += 6;
				if (cp >= 0xd800 && cp <= 0xdbff) {
					uint32_t lo;
					if (i + 1 >= end || p[i] != '\\' || p[i + 1] != 'u' ||
					    read_hex4(p + i + 2, end - (i + 2), &lo) || lo < 0xdc00 ||
					    lo > 0xdfff)
						return FAIL;
					i += 6;
					decoded += 4;
				} else if (cp >= 0xdc00 && cp <= 0xdfff) {
					return FAIL;
				} else {
					decoded += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
				}
				continue;
			}
			if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
			    e != 'r' && e != 't')
				return FAIL;
			i += 2;
			decoded += 1;
			continue;
		}
		if (c < 0x80) {
			i++;
			decoded++;
			continue;
		}
		/* strict UTF-8 */
		const size_t n = hb_utf8_seq_len(p + i, p + end);
		if (n == 0)
			return FAIL;
		i += n;
		decoded += n;
	}
	if (i - start > HB_PB_MAX_LINE)
		return FAIL;
	*off = (uint32_t)start;
	*raw = (uint32_t)(i - start);
	*dlen = (uint32_t)decoded;
	*esc = has_esc;
	P->pos = i + 1;
	return 0;
}

/* A JSON number at P->pos, which must be an integer (no fraction or exponent). */
static int scan_int(pb_parser *P, int *neg, uint64_t *mag)
{
	const uint8_t *p = P->p;
	size_t i = P->pos, end = P->end;
	*neg = 0;
	if (i < end && p[i] == '-') {
		*neg = 1;
		i++;
	}
	if (i >= end || p[i] < '0' || p[i] > '9')
		return FAIL;
	uint64_t v = 0;
	if (p[i] == '0') {
		i++;
	} else {
		while (i < end && p[i] >= '0' && p[i] <= '9') {
			uint64_t d = (uint64_t)(p[i] - '0');
			if (v > (UINT64_MAX - d) / 10)
				return FAIL; /* orjson gives a float: the Python path decides */
			v = v * 10 + d;
			i++;
		}
	}
	if (i < end && (p[i] == '.' || p[i] == 'e' || p[i] == 'E'))
		return FAIL; /* a float */
	if (*neg && v > (1ull << 63))
		return FAIL; /* orjson gives a float */
	*mag = v;
	P->pos = i;
	return 0;
}

/* A JSON number with a fraction or an exponent (orjson: a float), finite and normal or 0. */
static int scan_double(pb_parser *P, double *out)
{
	const uint8_t *p = P->p;
	size_t i = P->pos, end = P->end, start = i;
	int is_float = 0, nonzero = 0;
	if (i < end && p[i] == '-')
		i++;
	if (i >= end || p[i] < '0' || p[i] > '9')
		return FAIL;
	if (p[i] == '0') {
		i++;
	} else {
		while (i < end && p[i] >= '0' && p[i] <= '9') {
			nonzero = 1;
			i++;
		}
	}
	if (i < end && p[i] == '.') {
		is_float = 1;
		i++;
		if (i >= end || p[i] < '0' || p[i] > '9')
			return FAIL;
		while (i < end && p[i] >= '0' && p[i] <= '9') {
			if (p[i] != '0')
				nonzero = 1;
			i++;
		}
	}
	if (i < end && (p[i] == 'e' || p[i] == 'E')) {
		is_float = 1;
		i++;
		if (i < end && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= end || p[i] < '0' || p[i] > '9')
			return FAIL;
		while (i < end && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (!is_float)
		return FAIL; /* orjson gives an int: the fast path takes only floats */
	char buf[64];
	size_t n = i - start;
	if (n >= sizeof(buf))
		return FAIL;
	memcpy(buf, p + start, n);
	buf[n] = 0;
	char *stop = NULL;
	double d = strtod_l(buf, &stop, P->s->cloc);
	if (stop != buf + n || !isfinite(d))
		return FAIL;
	if (d == 0.0 ? nonzero : !isnormal(d))
		return FAIL; /* underflow: leave the rounding to the Python path */
	*out = d;
	P->pos = i;
	return 0;
}

static int scan_literal(pb_parser *P, const char *lit, size_t n)
{
	if (P->end - P->pos < n || memcmp(P->p + P->pos, lit, n) != 0)
		return FAIL;
	P->pos += n;
	return 0;
}

/* "[-]digits" (convert._int64: ASCII digits, one optional leading minus) */
static int digits64(const uint8_t *p, size_t n, int allow_neg, int64_t *sv, uint64_t *uv)
{
	int neg = 0;
	if (n && p[0] == '-') {
		if (!allow_neg)
			return FAIL;
		neg = 1;
		p++;
		n--;
	}
	if (n == 0)
		return FAIL;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return FAIL;
		uint64_t d = (uint64_t)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return FAIL;
		v = v * 10 + d;
	}
	if (allow_neg) {
		if (neg ? v > (1ull << 63) : v > (uint64_t)INT64_MAX)
			return FAIL;
		*sv = neg ? (int64_t)(0 - v) : (int64_t)v;
	} else {
		*uv = v;
	}
	return 0;
}

static int two(const uint8_t *p, uint32_t *out)
{
	if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
		return FAIL;
	*out = (uint32_t)(p[0] - '0') * 10 + (uint32_t)(p[1] - '0');
	return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date */
static int64_t days_from_civil(int64_t y, uint32_t m, uint32_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* convert._timestamp: "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z", a valid date and time, year >= 1 */
static int parse_timestamp(const uint8_t *p, size_t n, int64_t *seconds, uint32_t *nanos)
{
	if (n < 20 || p[n - 1] != 'Z' || p[4] != '-' || p[7] != '-' || p[10] != 'T' ||
	    p[13] != ':' || p[16] != ':')
		return FAIL;
	uint32_t yh, yl, mo, d, h, mi, s;
	if (two(p, &yh) || two(p + 2, &yl) || two(p + 5, &mo) || two(p + 8, &d) ||
	    two(p + 11, &h) || two(p + 14, &mi) || two(p + 17, &s))
		return FAIL;
	uint32_t y = yh * 100 + yl;
	static const uint8_t mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59)
		return FAIL;
	uint32_t dim = mdays[mo - 1];
	if (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		dim = 29;
	if (d > dim)
		return FAIL;
	uint32_t ns = 0;
	if (n > 20) {
		size_t digits = n - 21;
		if (p[19] != '.' || digits < 1 || digits > 9)
			return FAIL;
		for (size_t i = 0; i < 9; i++) {
			uint32_t dgt = 0;
			if (i < digits) {
				uint8_t c = p[20 + i];
				if (c < '0' || c > '9')
					return FAIL;
				dgt = (uint32_t)(c - '0');
			}
			ns = ns * 10 + dgt;
		}
	}
	*seconds = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + s;
	*nanos = ns;
	return 0;
}

/* size of a value's payload (after the tag) */
static uint64_t payload_size(uint32_t kind, const pb_node *n)
{
	if (kind_is_varint(kind))
		return varint_size(n->v);
	if (kind_is_fixed32(kind))
		return 4;
	if (kind_is_fixed64(kind))
		return 8;
	if (kind == K_STRING)
		return varint_size(n->dlen) + (uint64_t)n->dlen;
	return varint_size(n->len) + (uint64_t)n->len; /* message, timestamp, wrapper */
}

static int value_is_zero(uint32_t kind, const pb_node *n)
{
	if (kind == K_STRING)
		return n->dlen == 0;
	return n->v == 0;
}

static int parse_message(pb_parser *P, uint32_t msg, uint32_t node, int depth);

/* A scalar of `kind` (not a message, timestamp or wrapper) into node n. */
static int parse_scalar(pb_parser *P, uint32_t kind, uint32_t aux, pb_node *n)
{
	int c = peek(P);
	switch (kind) {
	case K_INT32:
	case K_SINT32:
	case K_SFIXED32:
	case K_UINT32:
	case K_FIXED32: {
		int neg;
		uint64_t mag;
		if (c != '-' && (c < '0' || c > '9'))
			return FAIL;
		if (scan_int(P, &neg, &mag))
			return FAIL;
		if (kind == K_UINT32 || kind == K_FIXED32) {
			if ((neg && mag) || mag > UINT32_MAX)
				return FAIL;
			n->v = mag;
			return 0;
		}
		if (neg ? mag > (1ull << 31) : mag > INT32_MAX)
			return FAIL;
		int32_t x = neg ? (int32_t)(0 - (int64_t)mag) : (int32_t)mag;
		if (kind == K_INT32)
			n->v = (uint64_t)(int64_t)x;
		else if (kind == K_SINT32)
			n->v = (uint32_t)(((uint32_t)x << 1) ^ (uint32_t)(x >> 31));
		else
			n->v = (uint32_t)x;
		return 0;
	}
	case K_INT64:
	case K_SINT64:
	case K_SFIXED64:
	case K_UINT64:
	case K_FIXED64: {
		uint32_t off, raw, dlen, esc;
		if (c != '"' || scan_string(P, &off, &raw, &dlen, &esc) || esc)
			return FAIL;
		if (kind == K_UINT64 || kind == K_FIXED64) {
			uint64_t u;
			if (digits64(P->p + off, raw, 0, NULL, &u))
				return FAIL;
			n->v = u;
			return 0;
		}
		int64_t sv;
		if (digits64(P->p + off, raw, 1, &sv, NULL))
			return FAIL;
		if (kind == K_SINT64)
			n->v = ((uint64_t)sv << 1) ^ (uint64_t)(sv >> 63);
		else
			n->v = (uint64_t)sv;
		return 0;
	}
	case K_BOOL:
		if (c == 't') {
			if (scan_literal(P, "true", 4))
				return FAIL;
			n->v = 1;
			return 0;
		}
		if (c == 'f') {
			if (scan_literal(P, "false", 5))
				return FAIL;
			n->v = 0;
			return 0;
		}
		return FAIL;
	case K_ENUM: {
		uint32_t off, raw, dlen, esc;
		int32_t number;
		if (c != '"' || scan_string(P, &off, &raw, &dlen, &esc) || esc ||
		    !find_enum(P->s, aux, P->p + off, raw, &number))
			return FAIL;
		n->v = (uint64_t)(int64_t)number;
		return 0;
	}
	case K_DOUBLE: {
		double d;
		if (c != '-' && (c < '0' || c > '9'))
			return FAIL;
		if (scan_double(P, &d))
			return FAIL;
		memcpy(&n->v, &d, sizeof(d));
		return 0;
	}
	case K_STRING:
		if (c != '"')
			return FAIL;
		{
			uint32_t off;
			if (scan_string(P, &off, &n->raw, &n->dlen, &n->esc))
				return FAIL;
			n->v = off;
		}
		return 0;
	default:
		return FAIL;
	}
}

/*
 * One value of field f (an element when f is repeated) into a new node; *size gets its
 * payload size.
 */
static int parse_single(pb_parser *P, const pb_field *f, int depth, uint32_t *out,
			uint64_t *size)
{
	uint32_t fi = (uint32_t)(f - P->s->fields);
	uint32_t ni = new_node(P, fi);
	if (!ni)
		return FAIL;
	pb_node *n = &P->nodes[ni];
	int c = peek(P);
	switch (f->kind) {
	case K_MESSAGE:
		if (c != '{' || parse_message(P, f->aux, ni, depth + 1))
			return FAIL;
		n = &P->nodes[ni];
		break;
	case K_TIMESTAMP: {
		uint32_t off, raw, dlen, esc;
		int64_t sec;
		uint32_t ns;
		if (c != '"' || scan_string(P, &off, &raw, &dlen, &esc) || esc ||
		    parse_timestamp(P->p + off, raw, &sec, &ns))
			return FAIL;
		n->v = (uint64_t)sec;
		n->raw = ns;
		n->len = (sec ? 1 + varint_size((uint64_t)sec) : 0) +
			 (ns ? 1 + varint_size(ns) : 0);
		break;
	}
	case K_WRAPPER: {
		if (parse_scalar(P, f->aux, 0, n))
			return FAIL;
		n->len = value_is_zero(f->aux, n) ? 0 : (uint32_t)(1 + payload_size(f->aux, n));
		break;
	}
	default:
		if (parse_scalar(P, f->kind, f->aux, n))
			return FAIL;
	}
	*out = ni;
	*size = payload_size(f->kind, n);
	return 0;
}

/*
 * The value of field f: a new entry node (0 when nothing is written: a zero without presence
 * or an empty list) and its encoded size, tag included.
 */
static int parse_field(pb_parser *P, const pb_field *f, int depth, uint32_t *out,
		       uint64_t *size)
{
	if (f->kind == K_NONE)
		return FAIL;
	if (!(f->flags & F_REPEATED)) {
		uint32_t ni;
		uint64_t payload;
		if (parse_single(P, f, depth, &ni, &payload))
			return FAIL;
		if (!(f->flags & F_PRESENCE) && f->kind != K_MESSAGE && f->kind != K_TIMESTAMP &&
		    f->kind != K_WRAPPER && value_is_zero(f->kind, &P->nodes[ni])) {
			P->nn = ni; /* drop it (it was the last node allocated) */
			*out = 0;
			*size = 0;
			return 0;
		}
		*out = ni;
		*size = f->tagsz + payload;
		return 0;
	}
	if (peek(P) != '[')
		return FAIL;
	P->pos++;
	uint32_t li = new_node(P, (uint32_t)(f - P->s->fields));
	if (!li)
		return FAIL;
	uint32_t count = 0, tail = 0;
	uint64_t body = 0;
	skip_ws(P);
	if (peek(P) == ']') {
		P->pos++;
	} else {
		for (;;) {
			skip_ws(P);
			uint32_t ei;
			uint64_t payload;
			if (parse_single(P, f, depth, &ei, &payload))
				return FAIL;
			if (f->flags & F_PACKED)
				body += payload; /* elements carry no tags */
			else
				body += f->tagsz + payload;
			if (body > HB_PB_MAX_SIZE)
				return FAIL;
			if (tail)
				P->nodes[tail].next = ei;
			else
				P->nodes[li].child = ei;
			tail = ei;
			count++;
			skip_ws(P);
			int c = peek(P);
			if (c == ',') {
				P->pos++;
				continue;
			}
			if (c == ']') {
				P->pos++;
				break;
			}
			return FAIL;
		}
	}
	if (count == 0) {
		P->nn = li;
		*out = 0;
		*size = 0;
		return 0;
	}
	*out = li;
	if (f->flags & F_PACKED) {
		P->nodes[li].len = (uint32_t)body;
		*size = f->tagsz + varint_size(body) + body;
	} else {
		*size = body;
	}
	return 0;
}

/* An object at P->pos into message node `node` of message type `msg`. */
static int parse_message(pb_parser *P, uint32_t msg, uint32_t node, int depth)
{
	if (depth > HB_PB_MAX_DEPTH)
		return FAIL;
	const hb_pb_schema *s = P->s;
	const pb_range *m = &s->msgs[msg];
	uint64_t seen[HB_PB_MAX_FIELDS / 64];
	memset(seen, 0, ((m->count + 63) / 64) * sizeof(uint64_t));
	uint64_t oneofs = 0;
	uint64_t body = 0;
	uint32_t base = P->sp;
	uint32_t hint = 0; /* the local index after the last key's field */
	P->pos++; /* '{' */
	skip_ws(P);
	if (peek(P) == '}') {
		P->pos++;
	} else {
		for (;;) {
			skip_ws(P);
			if (peek(P) != '"')
				return FAIL;
			/* keys: proto names, no escapes; usually the next declared fields */
			const uint8_t *q = P->p + P->pos + 1;
			size_t avail = P->end - (P->pos + 1);
			const pb_field *f = NULL;
			uint32_t lim = hint + HB_PB_LOOKAHEAD < m->count ? hint + HB_PB_LOOKAHEAD
								      : m->count;
			for (uint32_t c = hint; c < lim; c++) {
				const pb_field *g = &s->fields[m->start + c];
				uint32_t len = g->name_len;
				if (len < avail && q[len] == '"' &&
				    same_bytes(q, (const uint8_t *)s->names + g->name_off, len)) {
					f = g;
					break;
				}
			}
			if (f) {
				P->pos += f->name_len + 2;
			} else {
				size_t k = P->pos + 1;
				while (P->end - k >= 8) {
					uint64_t v;
					memcpy(&v, P->p + k, 8);
					uint64_t sp = special_bytes(v);
					if (sp) {
						k += (size_t)__builtin_ctzll(sp) / 8;
						break;
					}
					k += 8;
				}
				while (k < P->end && P->p[k] != '"' && P->p[k] != '\\')
					k++;
				if (k >= P->end || P->p[k] != '"')
					return FAIL;
				f = find_field(s, msg, q, k - P->pos - 1);
				if (!f)
					return FAIL;
				P->pos = k + 1;
			}
			uint32_t local = (uint32_t)(f - s->fields) - m->start;
			hint = local + 1;
			if (seen[local / 64] & (1ull << (local % 64)))
				return FAIL; /* a duplicate key: orjson keeps the last; leave it to Python */
			seen[local / 64] |= 1ull << (local % 64);
			if (f->oneof) {
				uint64_t bit = 1ull << (f->oneof - 1);
				if (oneofs & bit)
					return FAIL;
				oneofs |= bit;
			}
			skip_ws(P);
			if (peek(P) != ':')
				return FAIL;
			P->pos++;
			skip_ws(P);
			uint32_t entry;
			uint64_t size;
			if (parse_field(P, f, depth, &entry, &size))
				return FAIL;
			if (entry) {
				if (P->sp >= P->scap)
					return FAIL;
				P->stack[P->sp++] = (uint64_t)f->number << 32 | entry;
				body += size;
				if (body > HB_PB_MAX_SIZE)
					return FAIL;
			}
			skip_ws(P);
			int c = peek(P);
			if (c == ',') {
				P->pos++;
				continue;
			}
			if (c == '}') {
				P->pos++;
				break;
			}
			return FAIL;
		}
	}
	/* field-number order: insertion sort (input keys are nearly in that order) */
	uint64_t *st = P->stack + base;
	uint32_t cnt = P->sp - base;
	for (uint32_t i = 1; i < cnt; i++) {
		uint64_t e = st[i];
		uint32_t j = i;
		while (j > 0 && st[j - 1] > e) {
			st[j] = st[j - 1];
			j--;
		}
		st[j] = e;
	}
	pb_node *n = &P->nodes[node];
	n->child = cnt ? (uint32_t)st[0] : 0;
	for (uint32_t i = 0; i + 1 < cnt; i++)
		P->nodes[(uint32_t)st[i]].next = (uint32_t)st[i + 1];
	if (cnt)
		P->nodes[(uint32_t)st[cnt - 1]].next = 0;
	n->len = (uint32_t)body;
	P->sp = base;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* writing: sizes are known, the caller checked the room */

static inline uint8_t *put_varint(uint8_t *o, uint64_t v)
{
	while (v >= 0x80) {
		*o++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*o++ = (uint8_t)v;
	return o;
}

static inline uint8_t *put_le(uint8_t *o, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		*o++ = (uint8_t)(v >> (8 * i));
	return o;
}

static void put_utf8(uint8_t **po, uint32_t cp)
{
	uint8_t *o = *po;
	if (cp < 0x80) {
		*o++ = (uint8_t)cp;
	} else if (cp < 0x800) {
		*o++ = (uint8_t)(0xc0 | (cp >> 6));
		*o++ = (uint8_t)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (uint8_t)(0xe0 | (cp >> 12));
		*o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (uint8_t)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (uint8_t)(0xf0 | (cp >> 18));
		*o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (uint8_t)(0x80 | (cp & 0x3f));
	}
	*po = o;
}

static uint32_t hex4(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = (v << 4) | (uint32_t)hb_hexval(p[i]);
	return v;
}

/* the decoded bytes of a string scan_string accepted */
static uint8_t *put_string(uint8_t *o, const uint8_t *p, uint32_t raw, uint32_t esc)
{
	if (!esc) {
		memcpy(o, p, raw);
		return o + raw;
	}
	uint32_t i = 0;
	while (i < raw) {
		uint32_t j = i;
		while (j < raw && p[j] != '\\')
			j++;
		memcpy(o, p + i, j - i);
		o += j - i;
		i = j;
		if (i >= raw)
			break;
		uint8_t e = p[i + 1];
		switch (e) {
		case 'u': {
			uint32_t cp = hex4(p + i + 2);
			i += 6;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				uint32_t lo = hex4(p + i + 2);
				i += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			put_utf8(&o, cp);
			continue;
		}
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		default: /* " \ / */
			*o++ = e;
		}
		i += 2;
	}
	return o;
}

static uint8_t *write_message(const pb_parser *P, const pb_node *m, uint8_t *o);

/* the payload of one value (after its tag) */
static uint8_t *write_payload(const pb_parser *P, uint32_t kind, uint32_t aux, const pb_node *n,
			      uint8_t *o)
{
	if (kind_is_varint(kind))
		return put_varint(o, n->v);
	if (kind_is_fixed32(kind))
		return put_le(o, n->v, 4);
	if (kind_is_fixed64(kind))
		return put_le(o, n->v, 8);
	if (kind == K_STRING) {
		o = put_varint(o, n->dlen);
		return put_string(o, P->p + n->v, n->raw, n->esc);
	}
	o = put_varint(o, n->len);
	if (kind == K_MESSAGE)
		return write_message(P, n, o);
	if (kind == K_TIMESTAMP) {
		if (n->v) {
			*o++ = 0x08;
			o = put_varint(o, n->v);
		}
		if (n->raw) {
			*o++ = 0x10;
			o = put_varint(o, n->raw);
		}
		return o;
	}
	/* K_WRAPPER: field 1 of the wrapped kind, unless zero */
	if (n->len) {
		*o++ = (uint8_t)((1u << 3) | wire_type(aux));
		o = write_payload(P, aux, 0, n, o);
	}
	return o;
}

static uint8_t *write_message(const pb_parser *P, const pb_node *m, uint8_t *o)
{
	const hb_pb_schema *s = P->s;
	for (uint32_t e = m->child; e; e = P->nodes[e].next) {
		const pb_node *n = &P->nodes[e];
		const pb_field *f = &s->fields[n->field];
		if (!(f->flags & F_REPEATED)) {
			o = put_varint(o, f->tag);
			o = write_payload(P, f->kind, f->aux, n, o);
		} else if (f->flags & F_PACKED) {
			o = put_varint(o, f->tag);
			o = put_varint(o, n->len);
			for (uint32_t x = n->child; x; x = P->nodes[x].next)
				o = write_payload(P, f->kind, f->aux, &P->nodes[x], o);
		} else {
			for (uint32_t x = n->child; x; x = P->nodes[x].next) {
				o = put_varint(o, f->tag);
				o = write_payload(P, f->kind, f->aux, &P->nodes[x], o);
			}
		}
	}
	return o;
}

/* ------------------------------------------------------------------------------------------ */
/* the batch */

/* Parses one line into P; the root message node is 1. */
static int parse_line(pb_parser *P, const uint8_t *line, size_t len)
{
	P->p = line;
	P->pos = 0;
	P->end = len;
	P->nn = 1;
	P->sp = 0;
	if (len > HB_PB_MAX_LINE)
		return FAIL;
	uint32_t root = new_node(P, 0);
	if (!root)
		return FAIL;
	skip_ws(P);
	if (peek(P) != '{' || parse_message(P, 0, root, 0))
		return FAIL;
	skip_ws(P);
	if (P->pos != P->end)
		return FAIL;
	return 0;
}

/*
 * Transcodes lines buf[offs[i] .. offs[i+1]) for i < n. For each line done, status[i] is
 * HB_PB_NATIVE (its gRPC frame - 0x00, 4-byte big-endian length, message - was appended to
 * out) or HB_PB_PYTHON (nothing appended), and ends[i] is the length of out after it.
 * Returns the number of lines done: fewer than n when the next frame does not fit in
 * out_cap (call again with the rest), or a negative HB_PB_E_* error.
 */
HB_PB_API int64_t hb_pb_transcode(const hb_pb_schema *s, const uint8_t *buf, const uint64_t *offs,
				  uint32_t n, uint8_t *out, uint64_t out_cap, uint64_t *ends,
				  uint8_t *status)
{
	if (!s || !offs || (n && (!ends || !status)) || (!out && out_cap))
		return HB_PB_E_ARGS;
	size_t maxlen = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (offs[i + 1] < offs[i])
			return HB_PB_E_ARGS;
		size_t len = (size_t)(offs[i + 1] - offs[i]);
		if (len > maxlen)
			maxlen = len;
	}
	if (n && offs[n] && !buf)
		return HB_PB_E_ARGS;
	if (maxlen > HB_PB_MAX_LINE)
		maxlen = HB_PB_MAX_LINE; /* longer lines go to Python (parse_line refuses them) */
	pb_parser P;
	memset(&P, 0, sizeof(P));
	P.s = s;
	/* every node but the root takes at least one byte of the line */
	P.ncap = (uint32_t)maxlen + 2;
	P.scap = P.ncap;
	P.nodes = malloc((size_t)P.ncap * sizeof(pb_node));
	P.stack = malloc((size_t)P.scap * sizeof(uint64_t));
	if (!P.nodes || !P.stack) {
		free(P.nodes);
		free(P.stack);
		return HB_PB_E_NOMEM;
	}
	uint64_t used = 0;
	uint32_t i;
	for (i = 0; i < n; i++) {
		const uint8_t *line = buf + offs[i];
		size_t len = (size_t)(offs[i + 1] - offs[i]);
		if (parse_line(&P, line, len)) {
			status[i] = HB_PB_PYTHON;
			ends[i] = used;
			continue;
		}
		uint64_t body = P.nodes[1].len;
		if (out_cap - used < 5 || out_cap - used - 5 < body)
			break;
		uint8_t *o = out + used;
		o[0] = 0;
		o[1] = (uint8_t)(body >> 24);
		o[2] = (uint8_t)(body >> 16);
		o[3] = (uint8_t)(body >> 8);
		o[4] = (uint8_t)body;
		uint8_t *e = write_message(&P, &P.nodes[1], o + 5);
		if ((uint64_t)(e - (o + 5)) != body) {
			/* cannot happen: sizes and writes disagree; never send a wrong message */
			status[i] = HB_PB_PYTHON;
			ends[i] = used;
			continue;
		}
		used += 5 + body;
		status[i] = HB_PB_NATIVE;
		ends[i] = used;
	}
	free(P.nodes);
	free(P.stack);
	return i;
}
