// SPDX-License-Identifier: Apache-2.0
/*
 * hbwire.c - the relay's line table: JSON lines kept inside the serialized FlowBatch
 * messages the nodes sent, and the merged output built from them.
 *
 * The relay (observer/relay/lines.py) keeps each node batch as the bytes gRPC handed over.
 * hb_wire_offsets finds where each line of its json_lines field starts, so no line is
 * copied out; the merge then orders line ids (integers), and hb_wire_plan / hb_wire_fill
 * copy the lines of a list of ids straight into outgoing serialized FlowBatch messages
 * (field 1 json_lines, field 2 count), cut as observer/api/wire.py encode_flow_batches cuts
 * them: a message ends with the line whose newline reaches max_bytes of JSON.
 *
 * A table of k batches is given as parallel arrays: bases[j] (the id of the batch's first
 * line), counts[j] (its lines), datas[j] (its bytes) and offs[j] (counts[j] + 1 offsets into
 * datas[j]: line i is datas[j][offs[j][i] : offs[j][i+1] - 1]); bases ascending, ranges
 * disjoint. Only libc; no Python C-API; no state.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HB_API __attribute__((visibility("default")))

/* Bumped whenever a signature here changes; observer/relay/lines.py checks it. */
#define HB_WIRE_VERSION 1

HB_API uint32_t hb_wire_version(void) { return HB_WIRE_VERSION; }

/*
 * The lines of data[start:end] (newline-separated; the last one may lack its newline):
 * writes offs[0..n] (line i is data[offs[i] : offs[i+1] - 1]) and returns n.
 * Returns -1 if a line is empty (the caller takes the slow path), -2 if cap < n + 1.
 */
HB_API int64_t hb_wire_offsets(const uint8_t *data, int64_t start, int64_t end, int64_t *offs,
			       int64_t cap)
{
	int64_t n = 0;
	const uint8_t *p = data + start;
	const uint8_t *e = data + end;

	if (start < 0 || end < start)
		return -2;
	while (p < e) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(e - p));

		if (n + 1 >= cap)
			return -2;
		if (nl == p)
			return -1;
		offs[n++] = p - data;
		if (nl == NULL) {
			offs[n] = end + 1; /* no newline after the last line */
			return n;
		}
		p = nl + 1;
	}
	if (cap < 1)
		return -2;
	offs[n] = end;
	return n;
}

/* The batch holding id, or -1; *hint is the last batch found (ids come in runs). */
static int64_t find_batch(int64_t id, const int64_t *bases, const int64_t *counts, int64_t k,
			  int64_t *hint)
{
	int64_t lo = 0, hi = k;
	int64_t j = *hint;

	if (j >= 0 && j < k && id >= bases[j] && id - bases[j] < counts[j])
		return j;
	while (lo < hi) { /* the last batch with base <= id */
		int64_t mid = lo + (hi - lo) / 2;

		if (bases[mid] <= id)
			lo = mid + 1;
		else
			hi = mid;
	}
	j = lo - 1;
	if (j < 0 || id - bases[j] >= counts[j])
		return -1;
	*hint = j;
	return j;
}

/*
 * Cuts ids[0..n) into messages: writes ends[m] (the index after the last id of message m)
 * and sizes[m] (its JSON bytes, newlines included) for each, adds to used[j] the number of
 * ids of batch j, and returns the number of messages (ends and sizes need room for n).
 * Returns -1 if an id is in no batch (nothing is added to used then).
 */
HB_API int64_t hb_wire_plan(const int64_t *ids, int64_t n, const int64_t *bases,
			    const int64_t *counts, const int64_t *const *offs, int64_t k,
			    int64_t max_bytes, int64_t *ends, int64_t *sizes, int64_t *used)
{
	int64_t hint = -1, m = 0, size = 0;

	for (int64_t i = 0; i < n; i++) {
		int64_t j = find_batch(ids[i], bases, counts, k, &hint);
		int64_t li;

		if (j < 0)
			return -1;
		li = ids[i] - bases[j];
		size += offs[j][li + 1] - offs[j][li]; /* the line and its newline */
		if (size >= max_bytes || i + 1 == n) {
			ends[m] = i + 1;
			sizes[m] = size;
			m++;
			size = 0;
		}
	}
	hint = -1;
	for (int64_t i = 0; i < n; i++)
		used[find_batch(ids[i], bases, counts, k, &hint)]++;
	return m;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v > 0x7f) {
		*p++ = (uint8_t)((v & 0x7f) | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/*
 * Writes the serialized FlowBatch of the lines ids[0..n) (n >= 1) whose JSON is size bytes
 * (as hb_wire_plan gave) into dst, which holds dst_len bytes: json_lines, then count.
 * Returns the bytes written, or -1 if they would not be exactly dst_len or an id is unknown.
 */
HB_API int64_t hb_wire_fill(const int64_t *ids, int64_t n, const int64_t *bases,
			    const int64_t *counts, const uint8_t *const *datas,
			    const int64_t *const *offs, int64_t k, int64_t size, uint8_t *dst,
			    int64_t dst_len)
{
	uint8_t head[24];
	uint8_t *h = head;
	uint8_t *p;
	uint8_t *limit = dst + dst_len;
	int64_t hint = -1;

	*h++ = 0x0a; /* field 1, length-delimited */
	h = put_varint(h, (uint64_t)size);
	if (n < 1 || (int64_t)(h - head) + size > dst_len)
		return -1;
	memcpy(dst, head, (size_t)(h - head));
	p = dst + (h - head);
	for (int64_t i = 0; i < n; i++) {
		int64_t j = find_batch(ids[i], bases, counts, k, &hint);
		int64_t li, from, len;

		if (j < 0)
			return -1;
		li = ids[i] - bases[j];
		from = offs[j][li];
		len = offs[j][li + 1] - 1 - from;
		if (len + 1 > limit - p)
			return -1;
		memcpy(p, datas[j] + from, (size_t)len);
		p += len;
		*p++ = '\n';
	}
	h = head;
	*h++ = 0x10; /* field 2, varint */
	h = put_varint(h, (uint64_t)n);
	if (limit - p != h - head)
		return -1;
	memcpy(p, head, (size_t)(h - head));
	return dst_len;
}
