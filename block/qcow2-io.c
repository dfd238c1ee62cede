/*
 * qcow2's bottom layer, which every other qcow2 file calls: I/O on the
 * image file (the protocol node), aligned metadata buffers, the end-of-file
 * check, and writing the header (with the dirty and corrupt bits) and L1
 * entries. It calls
 * nothing else of the driver, so the qcow2 files form no cycle through it:
 * io <- cache <-> refcount <- cluster <- snapshot <- qcow2.c (the cache and
 * the allocator depend on each other through the write-back order, see
 * qcow2-cache.c).
 *
 * Threads: block worker threads, with s->lock held by the caller wherever
 * the header copy or the cached file length is touched.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

/* ---- protocol I/O ---- */

int qcow2_file_pread(struct qcow2_state *s, uint64_t off, void *buf, uint64_t len)
{
	return block_pread(s->bs->file, off, buf, len);
}

int qcow2_file_pwrite(struct qcow2_state *s, uint64_t off, const void *buf, uint64_t len)
{
	return block_pwrite(s->bs->file, off, buf, len);
}

int qcow2_file_flush(struct qcow2_state *s)
{
	return block_flush(s->bs->file);
}

uint64_t qcow2_file_length(struct qcow2_state *s)
{
	return block_length(s->bs->file);
}

bool qcow2_past_eof(struct qcow2_state *s, uint64_t off, uint64_t len)
{
	if (range_within(off, len, s->file_len)) {
		return false;
	}
	s->file_len = qcow2_file_length(s);
	return !range_within(off, len, s->file_len);
}

void *qcow2_alloc_buf(struct qcow2_state *s, size_t len)
{
	size_t align = MAX(4096u, s ? s->file_align : 0);
	void *p = NULL;

	if (posix_memalign(&p, align, ALIGN_UP(MAX(len, 1), 512))) {
		return NULL;
	}
	memset(p, 0, ALIGN_UP(MAX(len, 1), 512));
	return p;
}

/* ---- header ---- */

static const struct {
	uint8_t type, bit;
	const char *name;
} feature_names[] = {
	{0, 0, "dirty bit"},	    {0, 1, "corrupt bit"},	   {0, 2, "external data file"},
	{0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
	{2, 0, "bitmaps"},	    {2, 1, "raw external data"},
};

const char *qcow2_feature_name(unsigned type, unsigned bit)
{
	for (size_t i = 0; i < ARRAY_SIZE(feature_names); i++) {
		if (feature_names[i].type == type && feature_names[i].bit == bit) {
			return feature_names[i].name;
		}
	}
	return NULL;
}

static int build_header_ext(struct qcow2_state *s, uint8_t *buf, size_t buf_len, size_t *ret_used,
			    bool features);

/*
 * Serialize the header cluster; *ret_used is the number of meaningful bytes.
 * The feature name table is left out when it would not fit (512-byte clusters).
 */
int qcow2_build_header(struct qcow2_state *s, uint8_t *buf, size_t buf_len, size_t *ret_used)
{
	int ret = build_header_ext(s, buf, buf_len, ret_used, true);

	if (ret == -ENOSPC) {
		ret = build_header_ext(s, buf, buf_len, ret_used, false);
	}
	return ret;
}

static int build_header_ext(struct qcow2_state *s, uint8_t *buf, size_t buf_len, size_t *ret_used,
			    bool features)
{
	size_t p,
		hl = s->version >= 3 ? QCOW2_HEADER_V3_LEN + s->hdr_tail_len : QCOW2_HEADER_V2_LEN;
	size_t blen = s->backing_file ? strlen(s->backing_file) : 0;

#define NEED(n)                          \
	do {                             \
		if (p + (n) > buf_len) { \
			return -ENOSPC;  \
		}                        \
	} while (0)
	memset(buf, 0, buf_len);
	p = 0;
	NEED(hl);
	qcow2_put_be32(buf + 0, QCOW2_MAGIC);
	qcow2_put_be32(buf + 4, s->version);
	qcow2_put_be32(buf + 20, s->cluster_bits);
	qcow2_put_be64(buf + 24, s->size);
	qcow2_put_be32(buf + 36, s->l1_size);
	qcow2_put_be64(buf + 40, s->l1_table_offset);
	qcow2_put_be64(buf + 48, s->reftable_offset);
	qcow2_put_be32(buf + 56, s->reftable_clusters);
	qcow2_put_be32(buf + 60, s->nb_snapshots);
	qcow2_put_be64(buf + 64, s->snapshots_offset);
	if (s->version >= 3) {
		uint64_t incompat = s->incompat & ~QCOW2_INCOMPAT_COMPRESSION;

		if (s->compression_type != QCOW2_COMPRESSION_ZLIB) {
			incompat |= QCOW2_INCOMPAT_COMPRESSION;
		}
		qcow2_put_be64(buf + 72, incompat);
		qcow2_put_be64(buf + 80, s->compat);
		qcow2_put_be64(buf + 88, s->autoclear);
		qcow2_put_be32(buf + 96, s->refcount_order);
		qcow2_put_be32(buf + 100, (uint32_t)hl);
		buf[104] = (uint8_t)s->compression_type;
		if (s->hdr_tail_len) {
			memcpy(buf + QCOW2_HEADER_V3_LEN, s->hdr_tail, s->hdr_tail_len);
		}
	}
	p = hl;
	if (s->backing_format) {
		size_t l = strlen(s->backing_format);

		NEED(8 + ALIGN_UP(l, 8));
		qcow2_put_be32(buf + p, QCOW2_EXT_BACKING_FORMAT);
		qcow2_put_be32(buf + p + 4, (uint32_t)l);
		memcpy(buf + p + 8, s->backing_format, l);
		p += 8 + ALIGN_UP(l, 8);
	}
	if (s->version >= 3 && features) {
		size_t l = ARRAY_SIZE(feature_names) * 48;

		NEED(8 + l);
		qcow2_put_be32(buf + p, QCOW2_EXT_FEATURE_TABLE);
		qcow2_put_be32(buf + p + 4, (uint32_t)l);
		for (size_t i = 0; i < ARRAY_SIZE(feature_names); i++) {
			uint8_t *e = buf + p + 8 + 48 * i;

			e[0] = feature_names[i].type;
			e[1] = feature_names[i].bit;
			memcpy(e + 2, feature_names[i].name, strlen(feature_names[i].name));
		}
		p += 8 + l;
	}
	for (unsigned i = 0; i < s->n_unknown_exts; i++) {
		struct qcow2_unknown_ext *x = &s->unknown_exts[i];

		NEED(8 + ALIGN_UP((size_t)x->len, 8));
		qcow2_put_be32(buf + p, x->type);
		qcow2_put_be32(buf + p + 4, x->len);
		memcpy(buf + p + 8, x->data, x->len);
		p += 8 + ALIGN_UP((size_t)x->len, 8);
	}
	NEED(8);
	p += 8; /* end of extensions */
	if (blen) {
		NEED(blen);
		memcpy(buf + p, s->backing_file, blen);
		qcow2_put_be64(buf + 8, p);
		qcow2_put_be32(buf + 16, (uint32_t)blen);
		p += blen;
	}
#undef NEED
	*ret_used = p;
	return 0;
}

int qcow2_update_header(struct qcow2_state *s)
{
	_cleanup_free_ uint8_t *buf = qcow2_alloc_buf(s, s->cluster_size);
	size_t used;
	uint64_t align = MAX(512u, s->file_align);
	int ret;

	if (!buf) {
		return -ENOMEM;
	}
	ret = qcow2_build_header(s, buf, s->cluster_size, &used);
	if (ret < 0) {
		return ret;
	}
	return qcow2_file_pwrite(s, 0, buf, MIN(ALIGN_UP(used, align), s->cluster_size));
}

int qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
{
	va_list ap;

	if (!s->corrupt_msg) {
		va_start(ap, fmt);
		if (vasprintf(&s->corrupt_msg, fmt, ap) < 0) {
			s->corrupt_msg = NULL;
		}
		va_end(ap);
	}
	if (!s->corrupt) {
		s->corrupt = true;
		if (s->writable && s->version >= 3) {
			s->incompat |= QCOW2_INCOMPAT_CORRUPT;
			if (qcow2_update_header(s) == 0) {
				qcow2_file_flush(s);
			}
		}
	}
	return -EIO;
}

void qcow2_direct_writes_block(struct qcow2_state *s)
{
	pthread_mutex_lock(&s->lock);
	s->direct_blocked++;
	while (s->direct_writes) {
		pthread_cond_wait(&s->direct_cond, &s->lock);
	}
	pthread_mutex_unlock(&s->lock);
}

void qcow2_direct_writes_unblock(struct qcow2_state *s)
{
	pthread_mutex_lock(&s->lock);
	s->direct_blocked--;
	pthread_mutex_unlock(&s->lock);
}

void qcow2_lock_exclusive(struct qcow2_state *s)
{
	qcow2_direct_writes_block(s);
	pthread_rwlock_wrlock(&s->io_lock);
	pthread_mutex_lock(&s->lock);
}

void qcow2_unlock_exclusive(struct qcow2_state *s)
{
	s->direct_blocked--;
	pthread_mutex_unlock(&s->lock);
	pthread_rwlock_unlock(&s->io_lock);
}

int qcow2_mark_dirty(struct qcow2_state *s)
{
	int ret;

	if (s->lazy_active || !(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) || s->version < 3) {
		return 0;
	}
	s->incompat |= QCOW2_INCOMPAT_DIRTY;
	ret = qcow2_update_header(s);
	if (ret == 0) {
		ret = qcow2_file_flush(s);
	}
	if (ret < 0) {
		s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
		return ret;
	}
	s->lazy_active = true;
	return 0;
}

int qcow2_write_l1_entry(struct qcow2_state *s, uint32_t index)
{
	uint64_t align = MAX(512u, s->file_align);
	uint64_t first = ALIGN_DOWN((uint64_t)index * 8, align);
	uint64_t len = MIN(align, (uint64_t)s->l1_size * 8 - first);
	_cleanup_free_ uint8_t *buf = qcow2_alloc_buf(s, align);

	if (!buf) {
		return -ENOMEM;
	}
	if (s->l1_table_offset < s->cluster_size) {
		return qcow2_signal_corruption(s, "L1 table offset %#" PRIx64 " is invalid",
					       s->l1_table_offset);
	}
	for (uint64_t k = 0; k < len / 8; k++) {
		qcow2_put_be64(buf + 8 * k, s->l1_table[first / 8 + k]);
	}
	return qcow2_file_pwrite(s, s->l1_table_offset + first, buf, ALIGN_UP(len, 512));
}
