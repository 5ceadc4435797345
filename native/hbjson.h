/* JSON text helpers shared by the native parts that scan JSON lines as strictly as orjson
 * (hbpb.c, hbcompact.c): hex digits of \u escapes, strict UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
#ifndef HB_JSON_H
#define HB_JSON_H

#include <stddef.h>
#include <stdint.h>

/* The value of a hex digit, or -1. */
static inline int hb_hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The length (2-4) of the multi-byte sequence at p (p[0] >= 0x80), which must end by e;
 * 0 if it is not valid UTF-8. */
static inline size_t hb_utf8_seq_len(const uint8_t *p, const uint8_t *e)
{
	const uint8_t c = p[0];
	size_t n;
	uint8_t lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* no overlongs */
		else if (c == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* nothing above U+10FFFF */
	} else {
		return 0;
	}
	if ((size_t)(e - p) < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 2; k < n; k++)
		if (p[k] < 0x80 || p[k] > 0xbf)
			return 0;
	return n;
}

#endif
