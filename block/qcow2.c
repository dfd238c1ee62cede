/*
 * qcow2 format driver: header parsing and validation, open/close, the
 * guest read and write paths (copy-on-write, compressed clusters, zero
 * clusters), discard, resize, flush, status, info, and image creation.
 * The mapping, refcount, snapshot and cache code live in qcow2-*.c.
 *
 * Threads: driver ops run on block worker threads, possibly concurrently;
 * see qcow2.h for the two locks. qcow2_create() runs on the caller's thread
 * (vmm-img), never on the daemon's control thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "common/iov.h"
#include "common/parse.h"

#define MAX_SLICE 64

static __thread unsigned backing_depth;

static void feature_list(struct qcow2_state *s, uint64_t bits, char *out, size_t len)
{
	size_t p = 0;

	(void)s;
	out[0] = 0;
	for (unsigned b = 0; b < 64 && p < len; b++) {
		const char *name = NULL;

		if (!(bits & (1ull << b))) {
			continue;
		}
		name = qcow2_feature_name(0, b);
		if (name) {
			p += (size_t)snprintf(out + p, len - p, "%s%s", p ? ", " : "", name);
		} else {
			p += (size_t)snprintf(out + p, len - p, "%sbit %u", p ? ", " : "", b);
		}
	}
}

int qcow2_parse_header(struct qcow2_state *s, const uint8_t *buf, size_t buf_len, uint64_t file_len,
		       struct error **errp)
{
	uint64_t backing_off, l1_bytes, rt_bytes, need_l1;
	uint32_t backing_len, crypt, hl;
	size_t p;

	if (buf_len < QCOW2_HEADER_V2_LEN) {
		return error_set(errp, EINVAL, "image is too small for a qcow2 header (%zu bytes)",
				 buf_len);
	}
	if (qcow2_be32(buf) != QCOW2_MAGIC) {
		return error_set(errp, EINVAL, "not a qcow2 image (bad magic)");
	}
	s->version = qcow2_be32(buf + 4);
	if (s->version != 2 && s->version != 3) {
		return error_set(errp, ENOTSUP,
				 "unsupported qcow2 version %u (2 and 3 are supported)",
				 s->version);
	}
	s->cluster_bits = qcow2_be32(buf + 20);
	if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		return error_set(errp, EINVAL, "cluster_bits %u out of range %d..%d",
				 s->cluster_bits, QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
	}
	s->cluster_size = 1ull << s->cluster_bits;
	s->l2_bits = s->cluster_bits - 3;
	s->l2_entries = 1ull << s->l2_bits;
	s->size = qcow2_be64(buf + 24);
	crypt = qcow2_be32(buf + 32);
	s->l1_size = qcow2_be32(buf + 36);
	s->l1_table_offset = qcow2_be64(buf + 40);
	s->reftable_offset = qcow2_be64(buf + 48);
	s->reftable_clusters = qcow2_be32(buf + 56);
	s->nb_snapshots = qcow2_be32(buf + 60);
	s->snapshots_offset = qcow2_be64(buf + 64);
	backing_off = qcow2_be64(buf + 8);
	backing_len = qcow2_be32(buf + 16);

	if (s->version == 2) {
		hl = QCOW2_HEADER_V2_LEN;
		s->refcount_order = 4;
	} else {
		if (buf_len < 104) {
			return error_set(errp, EINVAL, "image is too small for a v3 header");
		}
		s->incompat = qcow2_be64(buf + 72);
		s->compat = qcow2_be64(buf + 80);
		s->autoclear = qcow2_be64(buf + 88);
		s->refcount_order = qcow2_be32(buf + 96);
		hl = qcow2_be32(buf + 100);
		if (hl < 104 || hl % 8 || hl > s->cluster_size || hl > buf_len) {
			return error_set(errp, EINVAL, "invalid header_length %u", hl);
		}
		if (s->refcount_order > 6) {
			return error_set(errp, EINVAL, "refcount_order %u out of range 0..6",
					 s->refcount_order);
		}
	}
	s->header_length = hl;
	s->refcount_bits = 1u << s->refcount_order;
	s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
	s->rb_entries = 1ull << s->rb_bits;
	s->csize_shift = 62 - (s->cluster_bits - 8);
	s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
	s->coffset_mask = (1ull << s->csize_shift) - 1;

	if (s->incompat & ~QCOW2_INCOMPAT_SUPPORTED) {
		char names[256];

		feature_list(s, s->incompat & ~QCOW2_INCOMPAT_SUPPORTED, names, sizeof(names));
		return error_set(errp, ENOTSUP, "unsupported incompatible qcow2 features: %s",
				 names);
	}
	if (crypt) {
		return error_set(errp, ENOTSUP, "encrypted qcow2 images are not supported");
	}
	s->compression_type = QCOW2_COMPRESSION_ZLIB;
	if (hl > 104) {
		s->compression_type = buf[104];
	}
	if (!!(s->incompat & QCOW2_INCOMPAT_COMPRESSION) !=
	    (s->compression_type != QCOW2_COMPRESSION_ZLIB)) {
		return error_set(errp, EINVAL,
				 "compression type %u does not match the compression feature bit",
				 s->compression_type);
	}
	if (s->compression_type > QCOW2_COMPRESSION_ZSTD) {
		return error_set(errp, ENOTSUP, "unknown compression type %u", s->compression_type);
	}
	if (hl > QCOW2_HEADER_V3_LEN) {
		s->hdr_tail_len = hl - QCOW2_HEADER_V3_LEN;
		s->hdr_tail = malloc(s->hdr_tail_len);
		if (!s->hdr_tail) {
			return -ENOMEM;
		}
		memcpy(s->hdr_tail, buf + QCOW2_HEADER_V3_LEN, s->hdr_tail_len);
	}

	/* the L1 table */
	if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		return error_set(errp, EFBIG, "L1 table too large (%u entries, limit %u)",
				 s->l1_size, QCOW2_MAX_L1_BYTES / 8);
	}
	need_l1 = qcow2_l1_size_for(s->cluster_bits, s->size);
	if (s->size > (1ull << 62) || need_l1 > s->l1_size) {
		return error_set(errp, EINVAL,
				 "L1 table too small for the virtual size %" PRIu64
				 " (%u entries, need %" PRIu64 ")",
				 s->size, s->l1_size, need_l1);
	}
	l1_bytes = (uint64_t)s->l1_size * 8;
	if (s->l1_table_offset & (s->cluster_size - 1)) {
		return error_set(errp, EINVAL,
				 "L1 table offset %#" PRIx64 " is not cluster aligned",
				 s->l1_table_offset);
	}
	if (l1_bytes && (s->l1_table_offset < s->cluster_size ||
			 !range_within(s->l1_table_offset, l1_bytes, file_len))) {
		return error_set(errp, EINVAL,
				 "L1 table (%#" PRIx64 ", %u entries) is outside the image",
				 s->l1_table_offset, s->l1_size);
	}

	/* the refcount table */
	rt_bytes = (uint64_t)s->reftable_clusters << s->cluster_bits;
	if (!s->reftable_clusters) {
		return error_set(errp, EINVAL, "image has no refcount table");
	}
	if (rt_bytes > QCOW2_MAX_REFTABLE_BYTES) {
		return error_set(errp, EFBIG,
				 "refcount table too large (%u clusters, limit %u bytes)",
				 s->reftable_clusters, QCOW2_MAX_REFTABLE_BYTES);
	}
	if (s->reftable_offset & (s->cluster_size - 1)) {
		return error_set(errp, EINVAL,
				 "refcount table offset %#" PRIx64 " is not cluster aligned",
				 s->reftable_offset);
	}
	if (s->reftable_offset < s->cluster_size ||
	    !range_within(s->reftable_offset, rt_bytes, file_len)) {
		return error_set(errp, EINVAL, "refcount table (%#" PRIx64 ") is outside the image",
				 s->reftable_offset);
	}

	/* the snapshot table (entries are read later, bounded) */
	if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		return error_set(errp, EFBIG, "too many snapshots (%u, limit %d)", s->nb_snapshots,
				 QCOW2_MAX_SNAPSHOTS);
	}
	if (s->nb_snapshots) {
		if (s->snapshots_offset & (s->cluster_size - 1)) {
			return error_set(errp, EINVAL,
					 "snapshot table offset %#" PRIx64
					 " is not cluster aligned",
					 s->snapshots_offset);
		}
		if (s->snapshots_offset < s->cluster_size ||
		    !range_within(s->snapshots_offset, (uint64_t)s->nb_snapshots * 40, file_len)) {
			return error_set(errp, EINVAL,
					 "snapshot table (%#" PRIx64
					 ", %u entries) is outside the image",
					 s->snapshots_offset, s->nb_snapshots);
		}
	}

	/* header extensions */
	p = hl;
	for (unsigned n = 0;; n++) {
		uint32_t type, len;

		if (p + 8 > buf_len || p + 8 > s->cluster_size) {
			break; /* no end marker before the end of the cluster: tolerated */
		}
		if (n > 4096) {
			return error_set(errp, EINVAL, "too many header extensions");
		}
		type = qcow2_be32(buf + p);
		len = qcow2_be32(buf + p + 4);
		if (type == QCOW2_EXT_END) {
			break;
		}
		if (len > buf_len - p - 8) {
			return error_set(
				errp, EINVAL,
				"header extension %#x (%u bytes) runs past the header cluster",
				type, len);
		}
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			if (len > 63) {
				return error_set(errp, EINVAL,
						 "backing format name too long (%u bytes)", len);
			}
			free(s->backing_format);
			s->backing_format = strndup((const char *)buf + p + 8, len);
			if (!s->backing_format) {
				return -ENOMEM;
			}
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			break; /* rewritten from our own table */
		case QCOW2_EXT_CRYPTO:
		case QCOW2_EXT_DATA_FILE:
			return error_set(errp, ENOTSUP, "unsupported header extension %#x", type);
		default: {
			struct qcow2_unknown_ext *x;

			if (s->n_unknown_exts >= QCOW2_MAX_HEADER_EXTS) {
				return error_set(errp, EINVAL, "too many header extensions");
			}
			x = realloc(s->unknown_exts, (s->n_unknown_exts + 1) * sizeof(*x));
			if (!x) {
				return -ENOMEM;
			}
			s->unknown_exts = x;
			x = &s->unknown_exts[s->n_unknown_exts];
			x->type = type;
			x->len = len;
			x->data = malloc(MAX(len, 1));
			if (!x->data) {
				return -ENOMEM;
			}
			memcpy(x->data, buf + p + 8, len);
			s->n_unknown_exts++;
			break;
		}
		}
		p += 8 + ALIGN_UP((uint64_t)len, 8);
	}

	/* the backing file name */
	if (backing_off) {
		if (backing_len > QCOW2_MAX_BACKING_NAME) {
			return error_set(errp, EINVAL,
					 "backing file name too long (%u bytes, limit %d)",
					 backing_len, QCOW2_MAX_BACKING_NAME);
		}
		if (!range_within(backing_off, backing_len, MIN(buf_len, s->cluster_size))) {
			return error_set(errp, EINVAL,
					 "backing file name (%#" PRIx64
					 ", %u bytes) is outside the "
					 "header cluster",
					 backing_off, backing_len);
		}
		s->backing_file = strndup((const char *)buf + backing_off, backing_len);
		if (!s->backing_file) {
			return -ENOMEM;
		}
		if (strlen(s->backing_file) != backing_len || !backing_len) {
			return error_set(errp, EINVAL, "backing file name contains a NUL byte");
		}
	}
	s->corrupt = s->incompat & QCOW2_INCOMPAT_CORRUPT;
	return 0;
}

/* ---- open and close ---- */

static void state_free(struct qcow2_state *s)
{
	if (!s) {
		return;
	}
	qcow2_cache_destroy(&s->l2_cache);
	qcow2_cache_destroy(&s->rb_cache);
	qcow2_snapshots_free(s);
	qcow2_bitmaps_free(s);
	for (unsigned i = 0; i < s->n_unknown_exts; i++) {
		free(s->unknown_exts[i].data);
	}
	free(s->unknown_exts);
	free(s->hdr_tail);
	free(s->backing_file);
	free(s->backing_format);
	free(s->l1_table);
	free(s->reftable);
	free(s->pending);
	free(s->dc_buf);
	free(s->corrupt_msg);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->alloc_cond);
	pthread_cond_destroy(&s->direct_cond);
	pthread_rwlock_destroy(&s->io_lock);
	free(s);
}

static int load_l1(struct qcow2_state *s, struct error **errp)
{
	uint64_t bytes = (uint64_t)s->l1_size * 8;
	_cleanup_free_ uint8_t *buf = NULL;
	int ret;

	s->l1_table = calloc(MAX(s->l1_size, 1), sizeof(uint64_t));
	if (!s->l1_table) {
		return error_set(errp, ENOMEM, "out of memory for the L1 table");
	}
	if (!bytes) {
		return 0;
	}
	buf = qcow2_alloc_buf(s, bytes);
	if (!buf) {
		return error_set(errp, ENOMEM, "out of memory for the L1 table");
	}
	ret = qcow2_file_pread(s, s->l1_table_offset, buf, bytes);
	if (ret < 0) {
		return error_set_errno(errp, -ret, "cannot read the L1 table");
	}
	for (uint32_t i = 0; i < s->l1_size; i++) {
		s->l1_table[i] = qcow2_be64(buf + 8 * i);
	}
	return 0;
}

/* Resolve a backing name relative to the directory of the image that names it. */
static char *backing_path(const char *image, const char *name)
{
	const char *slash;
	char *out;

	if (name[0] == '/' || strstr(name, "://") || !image || !(slash = strrchr(image, '/'))) {
		return strdup(name);
	}
	if (asprintf(&out, "%.*s/%s", (int)(slash - image), image, name) < 0) {
		return NULL;
	}
	return out;
}

static int open_backing(struct block_node *bs, struct qcow2_state *s, struct error **errp)
{
	const char *image = bs->file && bs->file->filename ? bs->file->filename : bs->filename;
	_cleanup_free_ char *path = backing_path(image, s->backing_file);
	const char *fmt = s->backing_format;
	unsigned flags = bs->flags & (BLOCK_O_NOCACHE | BLOCK_O_AIO_MASK | BLOCK_O_NO_LOCK);
	int ret;

	if (!path) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (backing_depth >= QCOW2_MAX_BACKING_DEPTH) {
		return error_set(errp, ELOOP, "backing chain is deeper than %d images at '%s'",
				 QCOW2_MAX_BACKING_DEPTH, path);
	}
	if (!fmt) {
		ret = block_probe_format(path, &fmt, errp);
		if (ret < 0) {
			error_prefix(errp, "backing file '%s' of '%s'", path, image);
			return ret;
		}
	}
	if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2") && strcmp(fmt, "qed") &&
	    strcmp(fmt, "vhdx") && strcmp(fmt, "vmdk") && strcmp(fmt, "vpc")) {
		return error_set(errp, ENOTSUP,
				 "backing file '%s' of '%s' has unsupported format '%s'", path,
				 image, fmt);
	}
	backing_depth++;
	ret = block_open_driver(&bs->backing, fmt, path, NULL, flags, errp);
	backing_depth--;
	if (ret < 0) {
		error_prefix(errp, "backing file '%s' of '%s'", path, image);
		return ret;
	}
	return 0;
}

static unsigned cache_entries(uint64_t cluster_size, uint64_t bytes, unsigned lo, unsigned hi)
{
	uint64_t n = bytes / cluster_size;

	return (unsigned)MAX(lo, MIN(n, hi));
}

static int qcow2_open(struct block_node *bs, const char *filename, json_t *opts,
		      struct error **errp)
{
	struct qcow2_state *s;
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t file_len, n, l2_cache_bytes = 32u << 20;
	bool no_backing = false;
	int ret;

	(void)filename;
	if (opts && json_is_object(opts)) {
		const char *key;
		json_t *v;

		json_object_foreach (opts, key, v) {
			if (!strcmp(key, "backing") && json_is_null(v)) {
				no_backing = true;
			} else if (!strcmp(key, "l2-cache-size") && json_is_integer(v) &&
				   json_integer_value(v) > 0) {
				l2_cache_bytes = (uint64_t)json_integer_value(v);
			} else {
				return error_set(errp, EINVAL,
						 "qcow2 option '%s' is unknown or invalid (known: "
						 "\"backing\": null, \"l2-cache-size\": bytes)",
						 key);
			}
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->alloc_cond, NULL);
	pthread_cond_init(&s->direct_cond, NULL);
	{
		pthread_rwlockattr_t ra;

		/* a discard or snapshot must not starve behind a stream of guest reads */
		pthread_rwlockattr_init(&ra);
		pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&s->io_lock, &ra);
		pthread_rwlockattr_destroy(&ra);
	}
	s->bs = bs;
	s->file_align = bs->file->alignment ? bs->file->alignment : 1;
	s->writable = !bs->read_only;
	bs->opaque = s;

	file_len = block_length(bs->file);
	n = MIN(file_len, 65536);
	buf = qcow2_alloc_buf(s, 65536);
	if (!buf) {
		ret = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	ret = qcow2_file_pread(s, 0, buf, ALIGN_UP(n, 512));
	if (ret < 0) {
		ret = error_set_errno(errp, -ret, "cannot read the qcow2 header");
		goto err;
	}
	if (n >= 24 && qcow2_be32(buf + 20) > 16 &&
	    qcow2_be32(buf + 20) <= QCOW2_MAX_CLUSTER_BITS) {
		n = MIN(file_len, 1ull << qcow2_be32(buf + 20));
		free(buf);
		buf = qcow2_alloc_buf(s, n);
		if (!buf) {
			ret = error_set(errp, ENOMEM, "out of memory");
			goto err;
		}
		ret = qcow2_file_pread(s, 0, buf, ALIGN_UP(n, 512));
		if (ret < 0) {
			ret = error_set_errno(errp, -ret, "cannot read the qcow2 header");
			goto err;
		}
	}
	ret = qcow2_parse_header(s, buf, n, file_len, errp);
	if (ret < 0) {
		goto err;
	}
	if (s->corrupt && s->writable) {
		/* writes are refused; a repair (check -r all) clears the bit */
		s->corrupt_msg = strdup("the image is marked corrupt");
	}
	ret = load_l1(s, errp);
	if (ret < 0) {
		goto err;
	}
	ret = qcow2_refcount_load(s, errp);
	if (ret < 0) {
		goto err;
	}
	ret = qcow2_snapshots_load(s, errp);
	if (ret < 0) {
		goto err;
	}
	if (qcow2_cache_init(&s->l2_cache, cache_entries(s->cluster_size, l2_cache_bytes, 8, 1024),
			     true) < 0 ||
	    qcow2_cache_init(&s->rb_cache, cache_entries(s->cluster_size, 4u << 20, 8, 64), false) <
		    0) {
		ret = error_set(errp, ENOMEM, "out of memory for the metadata cache");
		goto err;
	}
	s->l2_cache.depends = &s->rb_cache;
	if (!s->writable || bs->flags & BLOCK_O_BITMAPS) {
		ret = qcow2_bitmaps_load(s, errp);
		if (ret < 0) {
			goto err;
		}
	}

	if (s->writable) {
		bool rewrite = false;
		/* vmm-img bitmap writes no guest data: its bitmaps stay valid */
		uint64_t keep = bs->flags & BLOCK_O_BITMAPS ? QCOW2_AUTOCLEAR_BITMAPS : 0;

		if (s->autoclear & ~keep) {
			/*
			 * Guest writes do not update the bitmaps (and unknown
			 * autoclear features): tell other readers they are stale.
			 */
			s->autoclear &= keep;
			rewrite = true;
		}
		if (s->incompat & QCOW2_INCOMPAT_DIRTY && !s->corrupt) {
			/* an unclean shutdown with lazy refcounts: recount everything */
			ret = qcow2_rebuild_refcounts(s);
			if (ret < 0) {
				ret = error_set_errno(errp, -ret,
						      "cannot repair the refcounts of dirty image");
				goto err;
			}
			s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
			rewrite = true;
		}
		if (rewrite) {
			ret = qcow2_update_header(s);
			if (ret == 0) {
				ret = qcow2_file_flush(s);
			}
			if (ret < 0) {
				ret = error_set_errno(errp, -ret, "cannot update the qcow2 header");
				goto err;
			}
		}
	}
	if (s->backing_file && !(bs->flags & BLOCK_O_NO_BACKING) && !no_backing) {
		ret = open_backing(bs, s, errp);
		if (ret < 0) {
			goto err;
		}
	}
	return 0;
err:
	bs->opaque = NULL;
	state_free(s);
	return ret;
}

static void qcow2_close(struct block_node *bs)
{
	struct qcow2_state *s = bs->opaque;

	if (!s) {
		return;
	}
	if (s->writable) {
		pthread_mutex_lock(&s->lock);
		if (qcow2_flush_all(s) == 0 && s->lazy_active) {
			s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
			if (qcow2_update_header(s) == 0) {
				qcow2_file_flush(s);
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
	if (bs->backing) {
		block_unref(bs->backing);
		bs->backing = NULL;
	}
	state_free(s);
	bs->opaque = NULL;
}

static uint64_t qcow2_get_length(struct block_node *bs)
{
	struct qcow2_state *s = bs->opaque;

	return s->size;
}

/* ---- reading ---- */

static int read_backing(struct qcow2_state *s, uint64_t offset, const struct iovec *iov,
			unsigned cnt)
{
	return block_preadv(s->bs->backing, offset, iov, cnt);
}

/* Decompress the cluster of @entry into s->dc_buf (cached). Locked. */
static int load_compressed(struct qcow2_state *s, uint64_t entry)
{
	uint64_t off, len, a, b;
	_cleanup_free_ uint8_t *in = NULL;
	int ret;

	if (s->dc_entry == entry && s->dc_buf) {
		return 0;
	}
	if (!s->dc_buf) {
		s->dc_buf = qcow2_alloc_buf(s, s->cluster_size);
		if (!s->dc_buf) {
			return -ENOMEM;
		}
	}
	qcow2_compressed_range(s, entry, &off, &len);
	if (off < s->cluster_size || qcow2_past_eof(s, off, len - MIN(len, 511))) {
		return qcow2_signal_corruption(
			s, "compressed cluster at %#" PRIx64 " is outside the image", off);
	}
	a = ALIGN_DOWN(off, 512);
	b = ALIGN_UP(off + len, 512);
	in = qcow2_alloc_buf(s, b - a);
	if (!in) {
		return -ENOMEM;
	}
	ret = qcow2_file_pread(s, a, in, b - a);
	if (ret < 0) {
		return ret;
	}
	s->dc_entry = 0;
	ret = qcow2_decompress(s->compression_type, s->dc_buf, s->cluster_size, in + (off - a),
			       len);
	if (ret < 0) {
		return ret;
	}
	s->dc_entry = entry;
	return 0;
}

/*
 * Read guest [offset, offset+len) into iov (starting at iov byte @ioff).
 * Called with s->lock held; drops it around plain data reads when @unlock.
 */
static int read_range(struct qcow2_state *s, uint64_t offset, const struct iovec *iov, unsigned cnt,
		      uint64_t ioff, uint64_t len, bool unlock)
{
	struct iovec sl[MAX_SLICE];

	while (len) {
		uint64_t entry, n;
		size_t covered;
		unsigned k;
		int ret;

		ret = qcow2_get_cluster(s, offset, len, &entry, &n);
		if (ret < 0) {
			return ret;
		}
		k = iov_slice(iov, cnt, ioff, n, sl, MAX_SLICE, &covered);
		n = covered;
		if (!n) {
			return -EINVAL;
		}
		switch (qcow2_l2_entry_type(s, entry)) {
		case QCOW2_CLUSTER_UNALLOCATED: {
			struct block_node *b = s->bs->backing;
			uint64_t blen = b ? block_length(b) : 0;
			uint64_t have = offset < blen ? MIN(n, blen - offset) : 0;

			if (have) {
				struct iovec sl2[MAX_SLICE];
				size_t c2;
				unsigned k2 = iov_slice(iov, cnt, ioff, have, sl2, MAX_SLICE, &c2);

				if (unlock) {
					pthread_mutex_unlock(&s->lock);
				}
				ret = c2 == have ? read_backing(s, offset, sl2, k2) : -EINVAL;
				if (unlock) {
					pthread_mutex_lock(&s->lock);
				}
				if (ret < 0) {
					return ret;
				}
			}
			if (have < n) {
				iov_memset(iov, cnt, ioff + have, 0, n - have);
			}
			break;
		}
		case QCOW2_CLUSTER_ZERO_PLAIN:
		case QCOW2_CLUSTER_ZERO_ALLOC:
			iov_memset(iov, cnt, ioff, 0, n);
			break;
		case QCOW2_CLUSTER_COMPRESSED:
			n = MIN(n, s->cluster_size - qcow2_offset_into_cluster(s, offset));
			ret = load_compressed(s, entry);
			if (ret < 0) {
				return ret;
			}
			iov_from_buf(iov, cnt, ioff,
				     s->dc_buf + qcow2_offset_into_cluster(s, offset), n);
			break;
		case QCOW2_CLUSTER_NORMAL: {
			uint64_t host =
				(entry & QCOW2_OFFSET_MASK) + qcow2_offset_into_cluster(s, offset);

			if (unlock) {
				pthread_mutex_unlock(&s->lock);
			}
			ret = block_preadv(s->bs->file, host, sl, k);
			if (unlock) {
				pthread_mutex_lock(&s->lock);
			}
			if (ret < 0) {
				return ret;
			}
			break;
		}
		}
		offset += n;
		ioff += n;
		len -= n;
	}
	return 0;
}

static int qcow2_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			unsigned cnt, uint64_t len)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	pthread_rwlock_rdlock(&s->io_lock);
	pthread_mutex_lock(&s->lock);
	ret = read_range(s, offset, iov, cnt, 0, len, true);
	pthread_mutex_unlock(&s->lock);
	pthread_rwlock_unlock(&s->io_lock);
	return ret;
}

/* ---- writing ---- */

static bool needs_alloc(struct qcow2_state *s, uint64_t entry)
{
	return qcow2_l2_entry_type(s, entry) != QCOW2_CLUSTER_NORMAL ||
	       !(entry & QCOW2_OFLAG_COPIED);
}

/*
 * Allocating write at @offset of up to @len bytes from iov byte @ioff:
 * new clusters get the old content (backing, zeroes, compressed or shared
 * data) merged with the new bytes. Locked. *ret_n: bytes consumed.
 */
static bool inflight_overlaps(struct qcow2_state *s, uint64_t start, uint64_t end)
{
	if (s->n_inflight == QCOW2_MAX_INFLIGHT) {
		return true;
	}
	for (unsigned i = 0; i < QCOW2_MAX_INFLIGHT; i++) {
		if (s->inflight[i].end && s->inflight[i].start < end &&
		    start < s->inflight[i].end) {
			return true;
		}
	}
	return false;
}

static unsigned inflight_add(struct qcow2_state *s, uint64_t start, uint64_t end)
{
	for (unsigned i = 0; i < QCOW2_MAX_INFLIGHT; i++) {
		if (!s->inflight[i].end) {
			s->inflight[i].start = start;
			s->inflight[i].end = end;
			s->n_inflight++;
			return i;
		}
	}
	return 0; /* not reached: inflight_overlaps() said there is room */
}

static void inflight_remove(struct qcow2_state *s, unsigned slot)
{
	s->inflight[slot].start = s->inflight[slot].end = 0;
	s->n_inflight--;
	pthread_cond_broadcast(&s->alloc_cond);
}

/*
 * Allocating write at @offset of up to @len bytes from iov byte @ioff:
 * new clusters get the old content (backing, zeroes, compressed or shared
 * data) merged with the new bytes. Locked; with @unlock the data write runs
 * with s->lock dropped, the guest range reserved against other allocating
 * writers. *ret_n: bytes consumed (0: waited for another writer, retry).
 */
static int write_alloc(struct qcow2_state *s, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t ioff, uint64_t len, bool unlock, uint64_t *ret_n)
{
	uint64_t cs = s->cluster_size, in = qcow2_offset_into_cluster(s, offset);
	uint64_t start = offset - in, k = 1, n, *t, idx, e0, n0;
	struct iovec sl[MAX_SLICE];
	unsigned slot = 0, nsl = 0;
	bool reuse;
	uint64_t max_k = MAX(1, (8u << 20) >> s->cluster_bits);
	_cleanup_free_ uint8_t *buf = NULL;
	int64_t host;
	int ret;

	if (in == 0 && len >= cs) {
		/* a run of whole clusters: no old content needed */
		uint64_t l2left = s->l2_entries - qcow2_l2_index(s, offset);

		k = MIN(MIN(len / cs, l2left), max_k);
		for (uint64_t j = 1; j < k; j++) {
			uint64_t e, nn;

			ret = qcow2_get_cluster(s, offset + j * cs, cs, &e, &nn);
			if (ret < 0) {
				return ret;
			}
			if (!needs_alloc(s, e)) {
				k = j;
				break;
			}
		}
	}
	if (unlock) {
		/* one allocation per guest cluster at a time: wait for a writer in flight */
		if (inflight_overlaps(s, start, start + k * cs)) {
			pthread_cond_wait(&s->alloc_cond, &s->lock);
			*ret_n = 0;
			return 0;
		}
	}
	if (in == 0 && len >= cs) {
		size_t covered;

		n = k * cs;
		/* whole clusters go straight from the caller's buffers when they can */
		nsl = iov_slice(iov, cnt, ioff, n, sl, MAX_SLICE, &covered);
		if (covered != n) {
			nsl = 0;
			buf = qcow2_alloc_buf(s, n);
			if (!buf) {
				return -ENOMEM;
			}
			iov_to_buf(iov, cnt, ioff, buf, n);
		}
	} else {
		struct iovec one = {0};

		n = MIN(len, cs - in);
		buf = qcow2_alloc_buf(s, cs);
		if (!buf) {
			return -ENOMEM;
		}
		one.iov_base = buf;
		one.iov_len = cs;
		/* past the disk's end (the VM-state area) the old content is read too */
		ret = read_range(s, start, &one, 1, 0,
				 start < s->size ? MIN(cs, ALIGN_UP(s->size, 512) - start) : cs,
				 false);
		if (ret < 0) {
			return ret;
		}
		iov_to_buf(iov, cnt, ioff, buf + in, n);
	}
	ret = qcow2_get_cluster(s, start, cs, &e0, &n0);
	if (ret < 0) {
		return ret;
	}
	/* a preallocated zero cluster we own alone takes the data in place */
	reuse = k == 1 && qcow2_l2_entry_type(s, e0) == QCOW2_CLUSTER_ZERO_ALLOC &&
		e0 & QCOW2_OFLAG_COPIED;
	host = reuse ? (int64_t)(e0 & QCOW2_OFFSET_MASK) : qcow2_alloc_clusters(s, k);
	if (host < 0) {
		return (int)host;
	}
	if (qcow2_overlaps_metadata(s, (uint64_t)host, k * cs, true)) {
		return qcow2_signal_corruption(s, "new data cluster %#" PRIx64 " overlaps metadata",
					       (uint64_t)host);
	}
	if (unlock) {
		/* the data goes out unlocked; the range is ours until the L2 update */
		slot = inflight_add(s, start, start + k * cs);
		pthread_mutex_unlock(&s->lock);
	}
	if (nsl) {
		ret = block_pwritev(s->bs->file, (uint64_t)host, sl, nsl);
	} else {
		ret = qcow2_file_pwrite(s, (uint64_t)host, buf, k * cs);
	}
	if (unlock) {
		pthread_mutex_lock(&s->lock);
		inflight_remove(s, slot);
	}
	if (ret < 0) {
		if (!reuse) {
			/* nothing refers to the new clusters yet */
			qcow2_update_refcount(s, (uint64_t)host, k * cs, -1);
		}
		return ret;
	}
	ret = qcow2_get_l2_for_write(s, start, &t, &idx);
	if (ret < 0) {
		return ret;
	}
	for (uint64_t j = 0; j < k; j++) {
		uint64_t old = qcow2_be64(&t[idx + j]);

		qcow2_put_be64(&t[idx + j], ((uint64_t)host + j * cs) | QCOW2_OFLAG_COPIED);
		ret = reuse ? 0 : qcow2_free_l2_entry_deferred(s, old);
		if (ret < 0) {
			break;
		}
	}
	qcow2_cache_mark_dirty(&s->l2_cache, t);
	qcow2_cache_put(&s->l2_cache, (void **)&t);
	if (ret < 0) {
		return ret;
	}
	*ret_n = n;
	return 0;
}

static int write_range(struct qcow2_state *s, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len, bool unlock)
{
	struct iovec sl[MAX_SLICE];
	uint64_t ioff = 0;
	int ret;

	if (s->corrupt) {
		return -EIO;
	}
	ret = qcow2_mark_dirty(s);
	if (ret < 0) {
		return ret;
	}
	while (len) {
		uint64_t entry, n;

		ret = qcow2_get_cluster(s, offset, len, &entry, &n);
		if (ret < 0) {
			return ret;
		}
		if (!needs_alloc(s, entry)) {
			uint64_t host =
				(entry & QCOW2_OFFSET_MASK) + qcow2_offset_into_cluster(s, offset);
			size_t covered;
			unsigned k = iov_slice(iov, cnt, ioff, n, sl, MAX_SLICE, &covered);

			n = covered;
			if (!n) {
				return -EINVAL;
			}
			if (qcow2_overlaps_metadata(s, host, n, true)) {
				return qcow2_signal_corruption(
					s, "data cluster %#" PRIx64 " overlaps metadata",
					entry & QCOW2_OFFSET_MASK);
			}
			if (unlock) {
				pthread_mutex_unlock(&s->lock);
			}
			ret = block_pwritev(s->bs->file, host, sl, k);
			if (unlock) {
				pthread_mutex_lock(&s->lock);
			}
		} else {
			ret = write_alloc(s, offset, iov, cnt, ioff, len, unlock, &n);
		}
		if (ret < 0) {
			return ret;
		}
		offset += n;
		ioff += n;
		len -= n;
	}
	return 0;
}

/*
 * A write in place that needs no metadata: no allocation, no dirty bit to
 * set first (lazy refcounts), no overlap with metadata. Loop thread.
 */
static bool qcow2_write_direct_begin(struct block_node *bs, uint64_t offset, uint64_t len,
				     uint64_t *ret_file_offset)
{
	struct qcow2_state *s = bs->opaque;
	bool lazy_first =
		!s->lazy_active && s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS && s->version >= 3;
	uint64_t entry, n, host;
	bool ok = false;

	pthread_mutex_lock(&s->lock);
	if (s->writable && !s->corrupt && !s->direct_blocked && !lazy_first &&
	    qcow2_get_cluster(s, offset, len, &entry, &n) == 0 && n >= len &&
	    !needs_alloc(s, entry)) {
		host = (entry & QCOW2_OFFSET_MASK) + qcow2_offset_into_cluster(s, offset);
		ok = !qcow2_overlaps_metadata(s, host, len, true);
	}
	if (ok) {
		s->direct_writes++;
		*ret_file_offset = host;
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static void qcow2_write_direct_end(struct block_node *bs)
{
	struct qcow2_state *s = bs->opaque;

	pthread_mutex_lock(&s->lock);
	if (--s->direct_writes == 0) {
		pthread_cond_broadcast(&s->direct_cond);
	}
	pthread_mutex_unlock(&s->lock);
}

static int qcow2_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			 unsigned cnt, uint64_t len)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	pthread_rwlock_rdlock(&s->io_lock);
	pthread_mutex_lock(&s->lock);
	ret = write_range(s, offset, iov, cnt, len, true);
	pthread_mutex_unlock(&s->lock);
	pthread_rwlock_unlock(&s->io_lock);
	return ret;
}

/* The VM-state area: guest offsets past the disk (QEMU's layout), no range check. */
static int qcow2_vmstate_rw(struct block_node *bs, uint64_t pos, void *buf, size_t len, int op)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t off = qcow2_vm_state_offset(s);
	struct iovec v = {buf, len};
	int ret;

	if (pos > QCOW2_MAX_VMSTATE || len > QCOW2_MAX_VMSTATE - pos) {
		return -EFBIG;
	}
	if (op == BLOCK_VMSTATE_DISCARD) {
		qcow2_lock_exclusive(s);
	} else {
		pthread_rwlock_rdlock(&s->io_lock);
		pthread_mutex_lock(&s->lock);
	}
	switch (op) {
	case BLOCK_VMSTATE_READ:
		ret = read_range(s, off + pos, &v, 1, 0, len, false);
		break;
	case BLOCK_VMSTATE_WRITE:
		ret = s->writable ? write_range(s, off + pos, &v, 1, len, false) : -EROFS;
		break;
	default:
		ret = s->writable ? qcow2_discard_range(s, off, ALIGN_UP(len, s->cluster_size),
							QCOW2_DISCARD)
				  : -EROFS;
		if (ret == 0) {
			ret = qcow2_flush_all(s);
		}
		qcow2_unlock_exclusive(s);
		return ret;
	}
	pthread_mutex_unlock(&s->lock);
	pthread_rwlock_unlock(&s->io_lock);
	return ret;
}

static int write_zero_buffers(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
	_cleanup_free_ uint8_t *z = qcow2_alloc_buf(s, s->cluster_size);

	if (!z) {
		return -ENOMEM;
	}
	while (len) {
		uint64_t n = MIN(len, s->cluster_size - qcow2_offset_into_cluster(s, offset));
		struct iovec v = {z, n};
		int ret = write_range(s, offset, &v, 1, n, false);

		if (ret < 0) {
			return ret;
		}
		offset += n;
		len -= n;
	}
	return 0;
}

/* Make [offset, offset+len) read as zeroes. Locked, io_lock exclusive. */
static int zero_range(struct qcow2_state *s, uint64_t offset, uint64_t len, bool unmap)
{
	uint64_t cs = s->cluster_size, head, tail, end = offset + len;
	int ret;

	if (s->corrupt) {
		return -EIO;
	}
	ret = qcow2_mark_dirty(s);
	if (ret < 0) {
		return ret;
	}
	if (s->version < 3 && s->bs->backing) {
		return write_zero_buffers(s, offset, len);
	}
	head = MIN(ALIGN_UP(offset, cs), end) - offset;
	if (head) {
		ret = write_zero_buffers(s, offset, head);
		if (ret < 0) {
			return ret;
		}
		offset += head;
	}
	tail = end == s->size ? 0 : end - MAX(ALIGN_DOWN(end, cs), offset);
	if (end - tail > offset) {
		ret = qcow2_discard_range(s, offset, end - tail - offset,
					  unmap ? QCOW2_ZERO_UNMAP : QCOW2_ZERO_KEEP);
		if (ret < 0) {
			return ret;
		}
	}
	if (tail) {
		ret = write_zero_buffers(s, end - tail, tail);
	}
	return ret;
}

static int qcow2_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	qcow2_lock_exclusive(s);
	ret = zero_range(s, offset, len, flags & BLOCK_ZERO_MAY_UNMAP);
	qcow2_unlock_exclusive(s);
	return ret;
}

static int qcow2_discard(struct block_node *bs, uint64_t offset, uint64_t len)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	qcow2_lock_exclusive(s);
	ret = s->corrupt ? -EIO : qcow2_mark_dirty(s);
	if (ret == 0) {
		ret = qcow2_discard_range(s, offset, len, QCOW2_DISCARD);
	}
	qcow2_unlock_exclusive(s);
	return ret;
}

static int qcow2_pwrite_compressed(struct block_node *bs, uint64_t offset, const void *data,
				   uint64_t len)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t cs = s->cluster_size, *t, idx, old, entry, nsec;
	_cleanup_free_ uint8_t *in = NULL, *out = NULL;
	int64_t clen, coff;
	int ret;

	if (offset & (cs - 1) || len > cs || (len < cs && offset + len != s->size)) {
		return -EINVAL;
	}
	in = qcow2_alloc_buf(s, cs);
	out = qcow2_alloc_buf(s, cs);
	if (!in || !out) {
		return -ENOMEM;
	}
	memcpy(in, data, len);
	clen = qcow2_compress(s->compression_type, out, cs - 1, in, cs);
	if (clen == -ENOSPC) {
		/* incompressible: store it plainly */
		struct iovec v = {in, len};

		return qcow2_pwritev(bs, offset, &v, 1, len);
	}
	if (clen < 0) {
		return (int)clen;
	}
	/* the cluster it replaces may be one a direct write is writing */
	qcow2_direct_writes_block(s);
	pthread_rwlock_rdlock(&s->io_lock);
	pthread_mutex_lock(&s->lock);
	/* an allocating write of this cluster in flight decided on its old entry */
	while (inflight_overlaps(s, offset, offset + cs)) {
		pthread_cond_wait(&s->alloc_cond, &s->lock);
	}
	ret = s->corrupt ? -EIO : qcow2_mark_dirty(s);
	if (ret < 0) {
		goto out;
	}
	coff = qcow2_alloc_bytes(s, (uint64_t)clen);
	if (coff < 0) {
		ret = (int)coff;
		goto out;
	}
	if (qcow2_overlaps_metadata(s, (uint64_t)coff, (uint64_t)clen, true)) {
		ret = qcow2_signal_corruption(
			s, "compressed data at %#" PRIx64 " overlaps metadata", (uint64_t)coff);
		goto out;
	}
	ret = qcow2_file_pwrite(s, (uint64_t)coff, out, (uint64_t)clen);
	if (ret < 0) {
		goto out;
	}
	nsec = (((uint64_t)coff + (uint64_t)clen - 1) >> 9) - ((uint64_t)coff >> 9);
	entry = QCOW2_OFLAG_COMPRESSED | (nsec << s->csize_shift) | (uint64_t)coff;
	ret = qcow2_get_l2_for_write(s, offset, &t, &idx);
	if (ret < 0) {
		goto out;
	}
	old = qcow2_be64(&t[idx]);
	qcow2_put_be64(&t[idx], entry);
	qcow2_cache_mark_dirty(&s->l2_cache, t);
	qcow2_cache_put(&s->l2_cache, (void **)&t);
	ret = qcow2_free_l2_entry_deferred(s, old);
out:
	s->direct_blocked--;
	pthread_mutex_unlock(&s->lock);
	pthread_rwlock_unlock(&s->io_lock);
	return ret;
}

static int qcow2_flush(struct block_node *bs)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = qcow2_flush_all(s);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int qcow2_truncate(struct block_node *bs, uint64_t len, struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t old = s->size, need;
	int ret = 0;

	qcow2_lock_exclusive(s);
	if (len < s->size) {
		ret = error_set(errp, ENOTSUP, "'%s': shrinking a qcow2 image is not supported",
				bs->filename);
		goto out;
	}
	if (s->corrupt) {
		ret = error_set(errp, EIO, "'%s' is marked corrupt", bs->filename);
		goto out;
	}
	need = qcow2_l1_size_for(s->cluster_bits, len);
	if (need * 8 > QCOW2_MAX_L1_BYTES || len > (1ull << 62)) {
		ret = error_set(errp, EFBIG,
				"'%s': size %" PRIu64 " is too large for cluster size %" PRIu64,
				bs->filename, len, s->cluster_size);
		goto out;
	}
	ret = qcow2_flush_all(s);
	if (ret == 0) {
		ret = qcow2_grow_l1(s, need);
	}
	if (ret == 0) {
		s->size = len;
		ret = qcow2_update_header(s);
	}
	if (ret == 0 && bs->backing && block_length(bs->backing) > old) {
		/* the grown area must not show what the backing file has there */
		ret = zero_range(s, old, MIN(len, block_length(bs->backing)) - old, true);
	}
	if (ret == 0) {
		ret = qcow2_flush_all(s);
	}
	if (ret < 0) {
		error_set_errno(errp, -ret, "cannot resize '%s'", bs->filename);
	}
out:
	qcow2_unlock_exclusive(s);
	return ret;
}

static int qcow2_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
			      uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct qcow2_state *s = bs->opaque;
	uint64_t entry, n, foff = UINT64_MAX;
	unsigned st = 0;
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = qcow2_get_cluster(s, offset, len, &entry, &n);
	pthread_mutex_unlock(&s->lock);
	if (ret < 0) {
		return ret;
	}
	switch (qcow2_l2_entry_type(s, entry)) {
	case QCOW2_CLUSTER_UNALLOCATED:
		if (bs->backing) {
			uint64_t blen = block_length(bs->backing);

			if (offset < blen) {
				uint64_t pn;
				unsigned bst;

				ret = block_get_status(bs->backing, offset, MIN(n, blen - offset),
						       &pn, &bst, NULL);
				if (ret < 0) {
					return ret;
				}
				n = pn;
				st = bst & ~BLOCK_STATUS_ALLOCATED;
			} else {
				st = BLOCK_STATUS_ZERO;
			}
		} else {
			st = BLOCK_STATUS_ZERO;
		}
		break;
	case QCOW2_CLUSTER_ZERO_PLAIN:
	case QCOW2_CLUSTER_ZERO_ALLOC:
		st = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
		break;
	case QCOW2_CLUSTER_COMPRESSED:
		st = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
		n = MIN(n, s->cluster_size - qcow2_offset_into_cluster(s, offset));
		break;
	case QCOW2_CLUSTER_NORMAL:
		st = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
		foff = (entry & QCOW2_OFFSET_MASK) + qcow2_offset_into_cluster(s, offset);
		break;
	}
	*ret_pnum = n;
	*ret_status = st;
	if (ret_file_offset) {
		*ret_file_offset = foff;
	}
	return 0;
}

static int qcow2_check_op(struct block_node *bs, struct block_check_result *res, unsigned fix)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	if (fix && !s->writable) {
		return -EROFS;
	}
	qcow2_lock_exclusive(s);
	ret = qcow2_flush_all(s);
	if (ret == 0) {
		ret = qcow2_check(s, res, fix);
	}
	if (ret == 0 && fix) {
		ret = qcow2_flush_all(s);
	}
	qcow2_unlock_exclusive(s);
	return ret;
}

static void qcow2_info(struct block_node *bs, json_t *info)
{
	struct qcow2_state *s = bs->opaque;
	json_t *data = json_object(), *v;

	pthread_mutex_lock(&s->lock);
	json_object_set_new(data, "compat", json_string(s->version >= 3 ? "1.1" : "0.10"));
	json_object_set_new(
		data, "compression-type",
		json_string(s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib"));
	json_object_set_new(data, "lazy-refcounts",
			    json_boolean(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS));
	if ((v = qcow2_bitmaps_json(s))) {
		json_object_set_new(data, "bitmaps", v);
	}
	json_object_set_new(data, "refcount-bits", json_integer(s->refcount_bits));
	json_object_set_new(data, "corrupt", json_boolean(s->corrupt));
	json_object_set_new(data, "extended-l2", json_false());
	json_object_set_new(info, "cluster-size", json_integer((json_int_t)s->cluster_size));
	if (s->backing_file) {
		json_object_set_new(info, "backing-filename", json_string(s->backing_file));
	}
	if (s->backing_format) {
		json_object_set_new(info, "backing-filename-format",
				    json_string(s->backing_format));
	}
	json_object_set_new(info, "dirty-flag", json_boolean(s->incompat & QCOW2_INCOMPAT_DIRTY));
	if (s->nb_snapshots) {
		json_object_set_new(info, "snapshots", qcow2_snapshots_json(s));
	}

	pthread_mutex_unlock(&s->lock);
	json_object_set_new(info, "format-specific",
			    json_pack("{s:s, s:o}", "type", "qcow2", "data", data));
}

static int qcow2_change_backing(struct block_node *bs, const char *file, const char *fmt,
				struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	char *nf = NULL, *nfmt = NULL, *of, *ofmt;
	int ret;

	if (file && strlen(file) > QCOW2_MAX_BACKING_NAME) {
		return error_set(errp, EINVAL, "backing file name too long (limit %d bytes)",
				 QCOW2_MAX_BACKING_NAME);
	}
	if ((file && !(nf = strdup(file))) || (fmt && file && !(nfmt = strdup(fmt)))) {
		free(nf);
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&s->lock);
	of = s->backing_file;
	ofmt = s->backing_format;
	s->backing_file = nf;
	s->backing_format = nfmt;
	ret = qcow2_update_header(s);
	if (ret == 0) {
		ret = qcow2_file_flush(s);
	}
	if (ret < 0) {
		s->backing_file = of;
		s->backing_format = ofmt;
		free(nf);
		free(nfmt);
	} else {
		free(of);
		free(ofmt);
	}
	pthread_mutex_unlock(&s->lock);
	if (ret == -ENOSPC) {
		return error_set(errp, ENOSPC,
				 "backing file name does not fit in the header of '%s'",
				 bs->filename);
	}
	if (ret < 0) {
		return error_set_errno(errp, -ret, "cannot update the header of '%s'",
				       bs->filename);
	}
	return 0;
}

/* ---- amend (qemu-img amend -o compat,lazy_refcounts,refcount_bits) ---- */

/*
 * Zero clusters of an L1 table (@n entries at @off, or @l1 in memory), for a
 * downgrade to v2, which has none. Without @apply: set *ret_refuse if one
 * cannot be expanded here (unallocated with a backing file, or allocated in
 * a cluster another table shares). With @apply: an unallocated one becomes
 * unallocated (reads zeroes: there is no backing file), an allocated one
 * gets zeroes written into its cluster and loses the flag.
 */
static int zero_pass(struct qcow2_state *s, const uint64_t *l1, uint64_t off, uint32_t n,
		     bool apply, bool *ret_refuse)
{
	_cleanup_free_ uint8_t *raw = NULL;
	_cleanup_free_ uint8_t *l2 = qcow2_alloc_buf(s, s->cluster_size);
	_cleanup_free_ uint8_t *zeroes = qcow2_alloc_buf(s, s->cluster_size);
	int ret;

	if (!l2 || !zeroes) {
		return -ENOMEM;
	}
	if (!l1) {
		raw = malloc(MAX((uint64_t)n * 8, 1));
		if (!raw) {
			return -ENOMEM;
		}
		ret = n ? qcow2_file_pread(s, off, raw, (uint64_t)n * 8) : 0;
		if (ret < 0) {
			return ret;
		}
	}
	for (uint32_t i = 0; i < n && !*ret_refuse; i++) {
		uint64_t e = l1 ? l1[i] : qcow2_be64(raw + 8 * (uint64_t)i);
		uint64_t l2off = e & QCOW2_OFFSET_MASK;
		bool changed = false;

		if (!l2off) {
			continue;
		}
		ret = qcow2_file_pread(s, l2off, l2, s->cluster_size);
		if (ret < 0) {
			return ret;
		}
		for (uint64_t k = 0; k < s->l2_entries && !*ret_refuse; k++) {
			uint64_t x = qcow2_be64(l2 + 8 * k), data = x & QCOW2_OFFSET_MASK, rc = 0;

			if ((x & QCOW2_OFLAG_COMPRESSED) || !(x & QCOW2_OFLAG_ZERO)) {
				continue;
			}
			if (!data) {
				if (s->backing_file) {
					*ret_refuse = true;
				} else if (apply) {
					qcow2_put_be64(l2 + 8 * k, 0);
					changed = true;
				}
				continue;
			}
			ret = qcow2_get_refcount(s, data >> s->cluster_bits, &rc);
			if (ret < 0) {
				return ret;
			}
			if (rc != 1) {
				*ret_refuse = true;
			} else if (apply) {
				ret = qcow2_file_pwrite(s, data, zeroes, s->cluster_size);
				if (ret < 0) {
					return ret;
				}
				qcow2_put_be64(l2 + 8 * k, x & ~QCOW2_OFLAG_ZERO);
				changed = true;
			}
		}
		if (changed) {
			/* the zeroes are on disk before any table says the cluster holds data */
			ret = qcow2_file_flush(s);
			if (ret == 0) {
				ret = qcow2_file_pwrite(s, l2off, l2, s->cluster_size);
			}
			if (ret < 0) {
				return ret;
			}
		}
	}
	return 0;
}

/* Run zero_pass over the active L1 and every snapshot's. */
static int zero_pass_all(struct qcow2_state *s, bool apply, bool *ret_refuse)
{
	int ret = zero_pass(s, s->l1_table, 0, s->l1_size, apply, ret_refuse);

	for (uint32_t i = 0; ret == 0 && !*ret_refuse && i < s->nb_snapshots; i++) {
		ret = zero_pass(s, NULL, s->snapshots[i].l1_table_offset, s->snapshots[i].l1_size,
				apply, ret_refuse);
	}
	if (apply) {
		qcow2_cache_drop_all(&s->l2_cache); /* tables changed under it */
	}
	return ret;
}

static int qcow2_amend(struct block_node *bs, json_t *opts, struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	const char *compat = json_string_value(json_object_get(opts, "compat"));
	const char *lazy = json_string_value(json_object_get(opts, "lazy_refcounts"));
	const char *rbits = json_string_value(json_object_get(opts, "refcount_bits"));
	uint32_t version = s->version, order = s->refcount_order;
	int want_lazy = -1, ret = 0;

	if (compat) {
		if (!strcmp(compat, "0.10") || !strcmp(compat, "v2")) {
			version = 2;
		} else if (!strcmp(compat, "1.1") || !strcmp(compat, "v3")) {
			version = 3;
		} else {
			return error_set(errp, EINVAL, "Unknown compatibility level %s", compat);
		}
	}
	if (lazy) {
		if (strcmp(lazy, "on") != 0 && strcmp(lazy, "off") != 0) {
			return error_set(errp, EINVAL,
					 "Parameter 'lazy_refcounts' expects 'on' or 'off'");
		}
		want_lazy = !strcmp(lazy, "on");
	}
	if (rbits) {
		char *end;
		unsigned long b = strtoul(rbits, &end, 10);

		if (*end || !b || b > 64 || (b & (b - 1))) {
			return error_set(errp, EINVAL,
					 "Refcount width must be a power of two and may not exceed "
					 "64 bits");
		}
		order = (uint32_t)__builtin_ctzl(b);
	}
	if (want_lazy == 1 && version < 3) {
		return error_set(errp, EINVAL,
				 "Lazy refcounts only supported with compatibility level 1.1 and "
				 "above (use compat=1.1 or greater)");
	}
	if (order != 4 && version < 3) {
		return error_set(errp, EINVAL,
				 "Refcount widths other than 16 bits require compatibility level "
				 "1.1 or above (use compat=1.1 or greater)");
	}
	pthread_mutex_lock(&s->lock);
	ret = qcow2_flush_all(s);
	if (ret < 0) {
		goto io_err;
	}
	/* as QEMU: upgrade first, then refcounts, lazy refcounts, downgrade last */
	if (version > s->version) {
		s->version = 3;
		s->incompat = s->compat = s->autoclear = 0;
		s->refcount_order = 4;
		ret = qcow2_update_header(s);
		if (ret == 0) {
			ret = qcow2_snapshots_rewrite(
				s); /* v3 snapshots carry 16 bytes of extra data */
		}
		if (ret < 0) {
			goto io_err;
		}
	}
	if (order != s->refcount_order) {
		uint64_t bad = 0;

		ret = qcow2_change_refcount_order(s, order, &bad);
		if (ret == -ERANGE) {
			uint64_t rc = 0;

			qcow2_get_refcount(s, bad, &rc);
			pthread_mutex_unlock(&s->lock);
			return error_set(errp, EINVAL,
					 "Cannot decrease refcount entry width to %u bits: Cluster "
					 "at offset %#" PRIx64 " has a refcount of %" PRIu64,
					 1u << order, bad << s->cluster_bits, rc);
		}
		if (ret < 0) {
			goto io_err;
		}
	}
	if (want_lazy >= 0 && version >= 3 &&
	    !!(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) != want_lazy) {
		if (want_lazy) {
			s->compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
		} else {
			/* refcounts are exact once every cache is on disk: the dirty bit goes */
			ret = qcow2_flush_all(s);
			s->compat &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
			s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
			s->lazy_active = false;
		}
		if (ret == 0) {
			ret = qcow2_update_header(s);
		}
		if (ret < 0) {
			goto io_err;
		}
	}
	if (version < s->version) {
		bool zero = false;

		if (s->refcount_order != 4 || s->compression_type != QCOW2_COMPRESSION_ZLIB ||
		    (s->incompat & ~QCOW2_INCOMPAT_DIRTY)) {
			pthread_mutex_unlock(&s->lock);
			return error_set(
				errp, ENOTSUP,
				"Cannot downgrade an image with refcount_bits other than "
				"16, zstd compression, an external data file or extended L2 "
				"entries to compat=0.10");
		}
		/* zero clusters are v3 only: expanded where that is safe, else refused */
		ret = zero_pass_all(s, false, &zero);
		if (ret < 0) {
			goto io_err;
		}
		if (zero) {
			pthread_mutex_unlock(&s->lock);
			return error_set(
				errp, ENOTSUP,
				"Cannot downgrade to compat=0.10: the image has zero clusters "
				"over a backing file or in clusters shared with snapshots "
				"(qemu-img allocates them; vmm-img does not)");
		}
		ret = zero_pass_all(s, true, &zero);
		if (ret < 0) {
			goto io_err;
		}
		if (s->lazy_active) {
			ret = qcow2_flush_all(s);
			s->lazy_active = false;
		}
		s->version = 2;
		s->incompat = s->compat = s->autoclear = 0;
		free(s->hdr_tail);
		s->hdr_tail = NULL;
		s->hdr_tail_len = 0;
		if (ret == 0) {
			ret = qcow2_update_header(s);
		}
		if (ret < 0) {
			goto io_err;
		}
	}
	ret = qcow2_file_flush(s);
	if (ret < 0) {
		goto io_err;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
io_err:
	pthread_mutex_unlock(&s->lock);
	return error_set_errno(errp, -ret, "cannot amend '%s'", bs->filename);
}

/* ---- creation ---- */

int qcow2_compression_from_string(const char *s, int *ret)
{
	if (!strcmp(s, "zlib")) {
		*ret = QCOW2_COMPRESSION_ZLIB;
	} else if (!strcmp(s, "zstd")) {
		*ret = QCOW2_COMPRESSION_ZSTD;
	} else {
		return -EINVAL;
	}
	return 0;
}

int qcow2_prealloc_from_string(const char *s, enum qcow2_prealloc *ret)
{
	if (!strcmp(s, "off")) {
		*ret = QCOW2_PREALLOC_OFF;
	} else if (!strcmp(s, "metadata")) {
		*ret = QCOW2_PREALLOC_METADATA;
	} else if (!strcmp(s, "full")) {
		*ret = QCOW2_PREALLOC_FULL;
	} else {
		return -EINVAL;
	}
	return 0;
}

static int backing_size(const char *filename, const char *backing, const char *fmt, uint64_t *ret,
			struct error **errp)
{
	_cleanup_free_ char *path = backing_path(filename, backing);
	struct block_node *b = NULL;
	int r;

	if (!path) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (!fmt) {
		r = block_probe_format(path, &fmt, errp);
		if (r < 0) {
			return r;
		}
	}
	r = block_open(&b, path, fmt, BLOCK_O_NO_LOCK, errp);
	if (r < 0) {
		error_prefix(errp, "backing file '%s'", path);
		return r;
	}
	*ret = block_length(b);
	block_unref(b);
	return 0;
}

/* Map every guest cluster to a host cluster (preallocation=metadata|full). */
static int preallocate(const char *filename, enum qcow2_prealloc mode, struct error **errp)
{
	struct block_node *bs = NULL;
	struct qcow2_state *s;
	uint64_t off = 0;
	int ret;

	ret = block_open(&bs, filename, "qcow2", BLOCK_O_RDWR | BLOCK_O_NO_BACKING, errp);
	if (ret < 0) {
		return ret;
	}
	s = bs->opaque;
	pthread_mutex_lock(&s->lock);
	while (off < s->size && ret == 0) {
		uint64_t *t, idx, k;
		int64_t host;

		k = MIN(s->l2_entries - qcow2_l2_index(s, off),
			qcow2_size_to_clusters(s, s->size - off));
		ret = qcow2_get_l2_for_write(s, off, &t, &idx);
		if (ret < 0) {
			break;
		}
		host = qcow2_alloc_clusters(s, k);
		if (host < 0) {
			ret = (int)host;
		} else {
			for (uint64_t j = 0; j < k; j++) {
				qcow2_put_be64(&t[idx + j],
					       ((uint64_t)host + (j << s->cluster_bits)) |
						       QCOW2_OFLAG_COPIED);
			}
			qcow2_cache_mark_dirty(&s->l2_cache, t);
			if (mode == QCOW2_PREALLOC_FULL) {
				ret = block_write_zeroes(bs->file, (uint64_t)host,
							 k << s->cluster_bits, 0);
			} else {
				/* the file must cover the clusters: reads there see zeroes */
				uint64_t end = (uint64_t)host + (k << s->cluster_bits);

				if (end > block_length(bs->file)) {
					ret = block_truncate(bs->file, end, NULL);
				}
			}
		}
		qcow2_cache_put(&s->l2_cache, (void **)&t);
		off += k << s->cluster_bits;
	}
	if (ret == 0) {
		ret = qcow2_flush_all(s);
	}
	pthread_mutex_unlock(&s->lock);
	block_unref(bs);
	if (ret < 0) {
		return error_set_errno(errp, -ret, "cannot preallocate '%s'", filename);
	}
	return 0;
}

int qcow2_create(const char *filename, uint64_t size, const struct qcow2_create_opts *opts,
		 struct error **errp)
{
	struct qcow2_create_opts o = opts ? *opts : (struct qcow2_create_opts){0};
	struct qcow2_state st;
	uint64_t cs, l1_entries, l1c, nrb = 0, nrt = 0, total, rbe;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int fd = -1;
	size_t used;
	int ret;

	if (!o.cluster_size) {
		o.cluster_size = 1u << QCOW2_DEFAULT_CLUSTER_BITS;
	}
	if (!o.version) {
		o.version = 3;
	}
	if (!o.refcount_bits) {
		o.refcount_bits = 16;
	}
	if (!IS_POWER_OF_2(o.cluster_size) || o.cluster_size < 512 || o.cluster_size > (2u << 20)) {
		return error_set(errp, EINVAL,
				 "cluster size %u must be a power of two between 512 and 2M",
				 o.cluster_size);
	}
	if (o.version != 2 && o.version != 3) {
		return error_set(errp, EINVAL,
				 "compat must be 0.10 (version 2) or 1.1 (version 3)");
	}
	if (!IS_POWER_OF_2(o.refcount_bits) || o.refcount_bits > 64) {
		return error_set(errp, EINVAL, "refcount_bits %u must be a power of two up to 64",
				 o.refcount_bits);
	}
	if (o.version == 2 && o.refcount_bits != 16) {
		return error_set(errp, EINVAL, "compat=0.10 images need refcount_bits=16");
	}
	if (o.version == 2 && o.lazy_refcounts) {
		return error_set(errp, EINVAL, "lazy_refcounts need compat=1.1");
	}
	if (o.compression_type != QCOW2_COMPRESSION_ZLIB &&
	    o.compression_type != QCOW2_COMPRESSION_ZSTD) {
		return error_set(errp, EINVAL, "unknown compression type %d", o.compression_type);
	}
	if (o.version == 2 && o.compression_type != QCOW2_COMPRESSION_ZLIB) {
		return error_set(errp, EINVAL, "compression_type=zstd needs compat=1.1");
	}
	if (o.backing_fmt && !o.backing_file) {
		return error_set(errp, EINVAL, "backing_fmt given without backing_file");
	}
	if (o.backing_file && strlen(o.backing_file) > QCOW2_MAX_BACKING_NAME) {
		return error_set(errp, EINVAL, "backing file name too long (limit %d bytes)",
				 QCOW2_MAX_BACKING_NAME);
	}
	if (o.backing_file && o.prealloc != QCOW2_PREALLOC_OFF) {
		return error_set(errp, EINVAL,
				 "preallocation and a backing file cannot be combined");
	}
	if (o.backing_fmt && strcmp(o.backing_fmt, "raw") && strcmp(o.backing_fmt, "qcow2")) {
		return error_set(errp, EINVAL, "unsupported backing format '%s'", o.backing_fmt);
	}
	if (!size && o.backing_file) {
		ret = backing_size(filename, o.backing_file, o.backing_fmt, &size, errp);
		if (ret < 0) {
			return ret;
		}
	}

	memset(&st, 0, sizeof(st));
	st.version = (uint32_t)o.version;
	st.cluster_bits = (uint32_t)__builtin_ctz(o.cluster_size);
	cs = st.cluster_size = o.cluster_size;
	st.refcount_order = (uint32_t)__builtin_ctz(o.refcount_bits);
	st.size = size;
	st.compression_type = o.compression_type;
	st.compat = o.lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0;
	st.backing_file = (char *)o.backing_file;
	st.backing_format = (char *)o.backing_fmt;
	l1_entries = qcow2_l1_size_for(st.cluster_bits, size);
	if (size > (1ull << 62) || l1_entries * 8 > QCOW2_MAX_L1_BYTES) {
		return error_set(errp, EFBIG,
				 "size %" PRIu64 " is too large for cluster size %" PRIu64, size,
				 cs);
	}
	l1c = DIV_ROUND_UP(l1_entries * 8, cs);
	rbe = cs * 8 / o.refcount_bits;
	for (;;) {
		uint64_t nnrb, nnrt;

		total = 1 + l1c + nrb + nrt;
		nnrb = DIV_ROUND_UP(total, rbe);
		nnrt = DIV_ROUND_UP(nnrb * 8, cs);
		if (nnrb == nrb && nnrt == nrt) {
			break;
		}
		nrb = nnrb;
		nrt = nnrt;
	}
	if (nrt * cs > QCOW2_MAX_REFTABLE_BYTES) {
		return error_set(errp, EFBIG, "size %" PRIu64 " needs a refcount table too large",
				 size);
	}
	st.reftable_offset = cs;
	st.reftable_clusters = (uint32_t)nrt;
	st.l1_table_offset = (1 + nrt + nrb) * cs;
	st.l1_size = (uint32_t)l1_entries;

	buf = qcow2_alloc_buf(NULL, cs);
	if (!buf) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	ret = qcow2_build_header(&st, buf, cs, &used);
	if (ret < 0) {
		return error_set(errp, ENOSPC, "the header of '%s' does not fit in one cluster",
				 filename);
	}
	fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		return error_set_errno(errp, errno, "cannot create '%s'", filename);
	}
	if (pwrite(fd, buf, cs, 0) != (ssize_t)cs) {
		return error_set_errno(errp, errno, "cannot write '%s'", filename);
	}
	/* refcount table */
	for (uint64_t i = 0; i < nrt; i++) {
		memset(buf, 0, cs);
		for (uint64_t k = 0; k < cs / 8; k++) {
			uint64_t bi = i * (cs / 8) + k;

			if (bi < nrb) {
				qcow2_put_be64(buf + 8 * k, (1 + nrt + bi) * cs);
			}
		}
		if (pwrite(fd, buf, cs, (off_t)((1 + i) * cs)) != (ssize_t)cs) {
			return error_set_errno(errp, errno, "cannot write '%s'", filename);
		}
	}
	/* refcount blocks: every cluster of the initial layout has refcount 1 */
	for (uint64_t b = 0; b < nrb; b++) {
		memset(buf, 0, cs);
		for (uint64_t k = 0; k < rbe; k++) {
			if (b * rbe + k < total) {
				qcow2_set_refcount_entry(buf, k, st.refcount_order, 1);
			}
		}
		if (pwrite(fd, buf, cs, (off_t)((1 + nrt + b) * cs)) != (ssize_t)cs) {
			return error_set_errno(errp, errno, "cannot write '%s'", filename);
		}
	}
	if (ftruncate(fd, (off_t)(total * cs)) < 0 || fsync(fd) < 0) {
		return error_set_errno(errp, errno, "cannot write '%s'", filename);
	}
	if (close(TAKE_FD(fd)) < 0) {
		return error_set_errno(errp, errno, "cannot write '%s'", filename);
	}
	if (o.prealloc != QCOW2_PREALLOC_OFF && size) {
		return preallocate(filename, o.prealloc, errp);
	}
	return 0;
}

static bool is_true(const char *v)
{
	return strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
	       strcmp(v, "1") == 0;
}

/* The driver's create op: qemu-img's -o options for qcow2, then qcow2_create(). */
static int qcow2_create_op(const char *filename, uint64_t size, json_t *opts, struct error **errp)
{
	struct qcow2_create_opts o = {0};
	const char *key;
	json_t *v;

	json_object_foreach (opts, key, v) {
		const char *val = json_string_value(v);
		uint64_t n;

		if (strcmp(key, "size") == 0) {
			continue;
		}
		if (!val) {
			return error_set(errp, EINVAL, "qcow2 option '%s' must be a string", key);
		}
		if (strcmp(key, "cluster_size") == 0) {
			if (parse_size(val, &n) < 0 || n > UINT32_MAX) {
				return error_set(errp, EINVAL, "invalid cluster_size '%s'", val);
			}
			o.cluster_size = (uint32_t)n;
		} else if (strcmp(key, "backing_file") == 0) {
			o.backing_file = val;
		} else if (strcmp(key, "backing_fmt") == 0) {
			o.backing_fmt = val;
		} else if (strcmp(key, "compression_type") == 0) {
			if (qcow2_compression_from_string(val, &o.compression_type) < 0) {
				return error_set(errp, EINVAL,
						 "invalid compression_type '%s' (zlib, zstd)", val);
			}
		} else if (strcmp(key, "lazy_refcounts") == 0) {
			o.lazy_refcounts = is_true(val);
		} else if (strcmp(key, "preallocation") == 0) {
			if (qcow2_prealloc_from_string(val, &o.prealloc) < 0) {
				return error_set(errp, EINVAL,
						 "invalid preallocation '%s' (off, metadata, full)",
						 val);
			}
		} else if (strcmp(key, "refcount_bits") == 0) {
			if (parse_u64(val, &n) < 0 || n > 64) {
				return error_set(errp, EINVAL, "invalid refcount_bits '%s'", val);
			}
			o.refcount_bits = (unsigned)n;
		} else if (strcmp(key, "compat") == 0) {
			if (strcmp(val, "0.10") == 0 || strcmp(val, "v2") == 0) {
				o.version = 2;
			} else if (strcmp(val, "1.1") == 0 || strcmp(val, "v3") == 0) {
				o.version = 3;
			} else {
				return error_set(errp, EINVAL, "invalid compat '%s' (0.10, 1.1)",
						 val);
			}
		} else {
			return error_set(errp, EINVAL, "invalid option '%s' for format 'qcow2'",
					 key);
		}
	}
	return qcow2_create(filename, size, &o, errp);
}

/* As QEMU's qcow2_probe: the magic and a version of at least 2. */
static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	if (len >= 8 && qcow2_be32(buf) == QCOW2_MAGIC && qcow2_be32(buf + 4) >= 2) {
		return 100;
	}
	return 0;
}

static void qcow2_rebind(struct block_node *bs)
{
	struct qcow2_state *s = bs->opaque;

	if (s) {
		s->bs = bs;
	}
}

const struct block_driver qcow2_driver = {
	.name = "qcow2",
	.is_protocol = false,
	.probe = qcow2_probe,
	.create = qcow2_create_op,
	.open = qcow2_open,
	.close = qcow2_close,
	.get_length = qcow2_get_length,
	.preadv = qcow2_preadv,
	.pwritev = qcow2_pwritev,
	.flush = qcow2_flush,
	.discard = qcow2_discard,
	.write_zeroes = qcow2_write_zeroes,
	.truncate = qcow2_truncate,
	.block_status = qcow2_block_status,
	.write_direct_begin = qcow2_write_direct_begin,
	.write_direct_end = qcow2_write_direct_end,
	.pwrite_compressed = qcow2_pwrite_compressed,
	.check = qcow2_check_op,
	.info = qcow2_info,
	.snapshot_create = qcow2_snapshot_create,
	.snapshot_apply = qcow2_snapshot_apply,
	.snapshot_delete = qcow2_snapshot_delete,
	.snapshot_list = qcow2_snapshot_list,
	.vmstate_rw = qcow2_vmstate_rw,
	.change_backing = qcow2_change_backing,
	.amend = qcow2_amend,
	.rebind = qcow2_rebind,
	.bitmap_op = qcow2_bitmap_op,
	.bitmap_read = qcow2_bitmap_read,
};
