/*
 * The VM state stream (docs/vmstate.md): a growable byte buffer that device
 * models, vCPUs and the VM write their state into (little-endian fixed-width
 * fields) and read it back from, with every read bounds-checked. A snapshot
 * is a list of such sections, each with a name, an instance number, a
 * version and a CRC-32, indexed by manifest.json.
 *
 * Threads: a buffer belongs to one thread at a time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct vmstate_buf {
	uint8_t *data;
	size_t len; /* bytes written (out) / available (in) */
	size_t cap;
	size_t pos;    /* read position */
	bool failed;   /* allocation failure (out) or overrun (in): sticky */
	bool borrowed; /* data is not ours to free */
};

/* An empty output buffer. */
void vmstate_buf_init(struct vmstate_buf *b);
/* An input buffer over @len bytes at @data (borrowed, must outlive @b). */
void vmstate_buf_wrap(struct vmstate_buf *b, const void *data, size_t len);
void vmstate_buf_free(struct vmstate_buf *b);

void vmstate_put_u8(struct vmstate_buf *b, uint8_t v);
void vmstate_put_u16(struct vmstate_buf *b, uint16_t v);
void vmstate_put_u32(struct vmstate_buf *b, uint32_t v);
void vmstate_put_u64(struct vmstate_buf *b, uint64_t v);
void vmstate_put_bool(struct vmstate_buf *b, bool v);
void vmstate_put_bytes(struct vmstate_buf *b, const void *p, size_t n);
/* A u32 length followed by the bytes. */
void vmstate_put_blob(struct vmstate_buf *b, const void *p, uint32_t n);

/* Reads past the end return 0 and set b->failed. */
uint8_t vmstate_get_u8(struct vmstate_buf *b);
uint16_t vmstate_get_u16(struct vmstate_buf *b);
uint32_t vmstate_get_u32(struct vmstate_buf *b);
uint64_t vmstate_get_u64(struct vmstate_buf *b);
bool vmstate_get_bool(struct vmstate_buf *b);
void vmstate_get_bytes(struct vmstate_buf *b, void *p, size_t n);
/*
 * A blob written by vmstate_put_blob whose length must be exactly @n
 * (otherwise b->failed is set and @p is zeroed).
 */
void vmstate_get_blob(struct vmstate_buf *b, void *p, uint32_t n);
/*
 * A blob of at most @max bytes into a new allocation (*ret_len bytes);
 * NULL with b->failed set if longer, truncated or out of memory.
 */
void *vmstate_get_blob_alloc(struct vmstate_buf *b, uint32_t max, uint32_t *ret_len);

/*
 * After loading section @what: fail unless every byte was consumed and no
 * read overran. -EINVAL with a message naming @what.
 */
int vmstate_check_end(struct vmstate_buf *b, const char *what, struct error **errp);

/* CRC-32 (IEEE 802.3, as zlib's crc32()) of @len bytes. */
uint32_t vmstate_crc32(const void *data, size_t len);
