/*
 * XBZRLE page encoding (daemon/xbzrle.h). Runs are at most a page long,
 * so a length takes one or two ULEB128 bytes.
 */
#include "config.h"

#include <string.h>

#include "daemon/xbzrle.h"

/* Bytes from @i on where @a and @b agree (@same) or differ (!@same). */
static size_t run(const uint8_t *a, const uint8_t *b, size_t i, size_t len, int same)
{
	size_t j = i;

	if (same) {
		/* a word at a time where both agree: most of a page, usually */
		while (j + 8 <= len && memcmp(a + j, b + j, 8) == 0) {
			j += 8;
		}
	}
	while (j < len && (a[j] == b[j]) == same) {
		j++;
	}
	return j - i;
}

/* How many bytes put_len takes for @v. */
static size_t len_size(size_t v)
{
	return v < 0x80 ? 1 : 2;
}

static size_t put_len(uint8_t *p, size_t v)
{
	if (len_size(v) == 1) {
		p[0] = (uint8_t)v;
		return 1;
	}
	p[0] = (uint8_t)(v | 0x80);
	p[1] = (uint8_t)(v >> 7);
	return 2;
}

int xbzrle_encode(const uint8_t *old, const uint8_t *cur, size_t len, uint8_t *dst, size_t dlen)
{
	size_t i = 0, d = 0;

	while (i < len) {
		size_t z = run(old, cur, i, len, 1), nz;

		i += z;
		if (i == len) {
			break; /* a trailing unchanged run is implied */
		}
		nz = run(old, cur, i, len, 0);
		if (d + len_size(z) + len_size(nz) + nz > dlen) {
			return -1;
		}
		d += put_len(dst + d, z);
		d += put_len(dst + d, nz);
		memcpy(dst + d, cur + i, nz);
		d += nz;
		i += nz;
	}
	return (int)d;
}

/* A length at @src[*s]: -1 past @slen or over two bytes. */
static long get_len(const uint8_t *src, size_t slen, size_t *s)
{
	long v;

	if (*s >= slen) {
		return -1;
	}
	v = src[*s] & 0x7f;
	if (!(src[(*s)++] & 0x80)) {
		return v;
	}
	if (*s >= slen || (src[*s] & 0x80)) {
		return -1;
	}
	return v | (long)src[(*s)++] << 7;
}

int xbzrle_decode(const uint8_t *src, size_t slen, uint8_t *page, size_t len)
{
	size_t s = 0, i = 0;

	while (s < slen) {
		long z = get_len(src, slen, &s), nz;

		if (z < 0 || (size_t)z > len - i) {
			return -1;
		}
		i += (size_t)z;
		nz = get_len(src, slen, &s);
		if (nz <= 0 || (size_t)nz > len - i || (size_t)nz > slen - s) {
			return -1;
		}
		memcpy(page + i, src + s, (size_t)nz);
		i += (size_t)nz;
		s += (size_t)nz;
	}
	return 0;
}
