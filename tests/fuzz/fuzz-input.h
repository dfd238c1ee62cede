/*
 * Reading a fuzz input as a stream of operations: each getter takes the
 * next bytes (little-endian) and yields 0 once the input is used up, so a
 * harness never reads past it and every prefix of an input is an input.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fz {
	const uint8_t *p;
	size_t n;
};

static inline bool fz_more(const struct fz *f)
{
	return f->n > 0;
}

static inline uint8_t fz_u8(struct fz *f)
{
	if (!f->n) {
		return 0;
	}
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t lo = fz_u8(f);

	return (uint16_t)(lo | fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint32_t lo = fz_u16(f);

	return lo | (uint32_t)fz_u16(f) << 16;
}

/* Up to @max bytes into @buf (what is left of the input if less); their count. */
static inline size_t fz_bytes(struct fz *f, void *buf, size_t max)
{
	size_t n = max < f->n ? max : f->n;

	memcpy(buf, f->p, n);
	f->p += n;
	f->n -= n;
	return n;
}

/* An access size: 1, 2 or 4. */
static inline unsigned fz_size(struct fz *f)
{
	return 1u << (fz_u8(f) % 3);
}
