/*
 * The VM state stream's buffer: see vmstate.h.
 *
 * Threads: none of its own; a buffer is used by one thread at a time.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/vmstate.h"

void vmstate_buf_init(struct vmstate_buf *b)
{
	*b = (struct vmstate_buf){0};
}

void vmstate_buf_wrap(struct vmstate_buf *b, const void *data, size_t len)
{
	*b = (struct vmstate_buf){
		.data = (uint8_t *)data, .len = len, .cap = len, .borrowed = true};
}

void vmstate_buf_free(struct vmstate_buf *b)
{
	if (!b->borrowed) {
		free(b->data);
	}
	*b = (struct vmstate_buf){0};
}

void vmstate_put_bytes(struct vmstate_buf *b, const void *p, size_t n)
{
	if (b->failed || n == 0) {
		return;
	}
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *d;

		while (cap - b->len < n) {
			cap *= 2;
		}
		d = b->borrowed ? NULL : realloc(b->data, cap);
		if (!d) {
			b->failed = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void vmstate_put_u8(struct vmstate_buf *b, uint8_t v)
{
	vmstate_put_bytes(b, &v, 1);
}

void vmstate_put_u16(struct vmstate_buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

	vmstate_put_bytes(b, x, sizeof(x));
}

void vmstate_put_u32(struct vmstate_buf *b, uint32_t v)
{
	uint8_t x[4];

	for (unsigned i = 0; i < 4; i++) {
		x[i] = (uint8_t)(v >> (8 * i));
	}
	vmstate_put_bytes(b, x, sizeof(x));
}

void vmstate_put_u64(struct vmstate_buf *b, uint64_t v)
{
	uint8_t x[8];

	for (unsigned i = 0; i < 8; i++) {
		x[i] = (uint8_t)(v >> (8 * i));
	}
	vmstate_put_bytes(b, x, sizeof(x));
}

void vmstate_put_bool(struct vmstate_buf *b, bool v)
{
	vmstate_put_u8(b, v ? 1 : 0);
}

void vmstate_put_blob(struct vmstate_buf *b, const void *p, uint32_t n)
{
	vmstate_put_u32(b, n);
	vmstate_put_bytes(b, p, n);
}

void vmstate_get_bytes(struct vmstate_buf *b, void *p, size_t n)
{
	if (n == 0) {
		return; /* @p may be NULL (an empty item): memcpy must not see it */
	}
	if (b->failed || b->len - b->pos < n) {
		b->failed = true;
		memset(p, 0, n);
		return;
	}
	memcpy(p, b->data + b->pos, n);
	b->pos += n;
}

uint8_t vmstate_get_u8(struct vmstate_buf *b)
{
	uint8_t v;

	vmstate_get_bytes(b, &v, 1);
	return v;
}

uint16_t vmstate_get_u16(struct vmstate_buf *b)
{
	uint8_t x[2];

	vmstate_get_bytes(b, x, sizeof(x));
	return (uint16_t)(x[0] | x[1] << 8);
}

uint32_t vmstate_get_u32(struct vmstate_buf *b)
{
	uint8_t x[4];
	uint32_t v = 0;

	vmstate_get_bytes(b, x, sizeof(x));
	for (unsigned i = 0; i < 4; i++) {
		v |= (uint32_t)x[i] << (8 * i);
	}
	return v;
}

uint64_t vmstate_get_u64(struct vmstate_buf *b)
{
	uint8_t x[8];
	uint64_t v = 0;

	vmstate_get_bytes(b, x, sizeof(x));
	for (unsigned i = 0; i < 8; i++) {
		v |= (uint64_t)x[i] << (8 * i);
	}
	return v;
}

bool vmstate_get_bool(struct vmstate_buf *b)
{
	uint8_t v = vmstate_get_u8(b);

	if (v > 1) {
		b->failed = true;
	}
	return v == 1;
}

void vmstate_get_blob(struct vmstate_buf *b, void *p, uint32_t n)
{
	uint32_t len = vmstate_get_u32(b);

	if (len != n) {
		b->failed = true;
		if (n) {
			memset(p, 0, n);
		}
		return;
	}
	vmstate_get_bytes(b, p, n);
}

void *vmstate_get_blob_alloc(struct vmstate_buf *b, uint32_t max, uint32_t *ret_len)
{
	uint32_t len = vmstate_get_u32(b);
	void *p;

	if (b->failed || len > max || b->len - b->pos < len) {
		b->failed = true;
		return NULL;
	}
	p = malloc(len ? len : 1);
	if (!p) {
		b->failed = true;
		return NULL;
	}
	vmstate_get_bytes(b, p, len);
	*ret_len = len;
	return p;
}

int vmstate_check_end(struct vmstate_buf *b, const char *what, struct error **errp)
{
	if (b->failed) {
		return error_set(errp, EINVAL, "state of %s is truncated or has an invalid value",
				 what);
	}
	if (b->pos != b->len) {
		return error_set(errp, EINVAL, "state of %s has %zu unexpected trailing bytes",
				 what, b->len - b->pos);
	}
	return 0;
}

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (unsigned k = 0; k < 8; k++) {
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		}
		crc_table[i] = c;
	}
}

uint32_t vmstate_crc32(const void *data, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const uint8_t *p = data;
	uint32_t c = 0xffffffffu;

	pthread_once(&once, crc_init);
	for (size_t i = 0; i < len; i++) {
		c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	}
	return c ^ 0xffffffffu;
}
