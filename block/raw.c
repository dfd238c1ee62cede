/*
 * The raw format: the protocol's bytes as the guest sees them, optionally
 * a window [offset, offset+size) of them (blockdev options "offset" and
 * "size"). Requests are forwarded to bs->file shifted by the offset.
 *
 * Threads: any I/O thread; the only mutable state is the size, changed by
 * truncate (control path, with no request in flight) and read atomically.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-int.h"
#include "block/raw.h"
#include "common/util.h"

/* The first sector: what QEMU checks of a write to a probed raw image. */
#define RAW_PROBE_SIZE 512

struct raw_state {
	uint64_t offset;
	uint64_t size; /* the window; the whole file from offset when !has_size */
	bool has_size;
};

static struct raw_state *state(struct block_node *bs)
{
	return bs->opaque;
}

static int get_u64(json_t *v, const char *key, uint64_t *ret, struct error **errp)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		return error_set(errp, EINVAL, "raw option '%s' must be a non-negative integer",
				 key);
	}
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

static int raw_open(struct block_node *bs, const char *filename, json_t *opts, struct error **errp)
{
	struct raw_state *s;
	uint64_t offset = 0, size = 0, flen;
	bool has_size = false;
	const char *key;
	json_t *v;
	int r;

	json_object_foreach (opts, key, v) {
		if (strcmp(key, "offset") == 0) {
			r = get_u64(v, key, &offset, errp);
		} else if (strcmp(key, "size") == 0) {
			r = get_u64(v, key, &size, errp);
			has_size = true;
		} else {
			r = error_set(errp, EINVAL, "invalid option '%s' for raw image '%s'", key,
				      filename);
		}
		if (r < 0) {
			return r;
		}
	}
	flen = block_length(bs->file);
	if (offset > flen) {
		return error_set(errp, EINVAL,
				 "raw offset %" PRIu64 " is past the end of '%s' (%" PRIu64
				 " bytes)",
				 offset, filename, flen);
	}
	if (has_size && size > flen - offset) {
		return error_set(errp, EINVAL,
				 "raw window %" PRIu64 "+%" PRIu64 " exceeds '%s' (%" PRIu64
				 " bytes)",
				 offset, size, filename, flen);
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->offset = offset;
	s->has_size = has_size;
	s->size = has_size ? size : flen - offset;
	bs->opaque = s;
	bs->alignment = bs->file->alignment;
	return 0;
}

static void raw_close(struct block_node *bs)
{
	free(bs->opaque);
	bs->opaque = NULL;
}

static uint64_t raw_get_length(struct block_node *bs)
{
	return __atomic_load_n(&state(bs)->size, __ATOMIC_RELAXED);
}

static int raw_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		      uint64_t len)
{
	return block_do_preadv(bs->file, offset + state(bs)->offset, iov, cnt, len);
}

/*
 * A probed raw image (BLOCK_O_PROBED) must keep probing as raw: a write to
 * its first sector must cover the whole sector (-EINVAL otherwise, as QEMU)
 * and must not make any format's probe claim it (-EPERM).
 */
static int raw_check_probed_write(struct block_node *bs, uint64_t offset, const struct iovec *iov,
				  unsigned cnt, uint64_t len)
{
	uint8_t head[RAW_PROBE_SIZE];
	size_t got = 0;

	if (!(bs->flags & BLOCK_O_PROBED) || offset >= RAW_PROBE_SIZE || len == 0) {
		return 0;
	}
	if (offset != 0 || len < RAW_PROBE_SIZE) {
		return -EINVAL;
	}
	for (unsigned i = 0; i < cnt && got < sizeof(head); i++) {
		size_t n = MIN(iov[i].iov_len, sizeof(head) - got);

		memcpy(head + got, iov[i].iov_base, n);
		got += n;
	}
	return strcmp(block_probe_buf(head, sizeof(head), bs->filename), "raw") != 0 ? -EPERM : 0;
}

static int raw_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len)
{
	int r = raw_check_probed_write(bs, offset, iov, cnt, len);

	if (r < 0) {
		return r;
	}
	return block_do_pwritev(bs->file, offset + state(bs)->offset, iov, cnt, len);
}

static int raw_discard(struct block_node *bs, uint64_t offset, uint64_t len)
{
	return block_do_discard(bs->file, offset + state(bs)->offset, len);
}

static int raw_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags)
{
	return block_do_write_zeroes(bs->file, offset + state(bs)->offset, len, flags);
}

static int raw_truncate(struct block_node *bs, uint64_t len, struct error **errp)
{
	struct raw_state *s = state(bs);
	int r;

	if (s->has_size || s->offset) {
		return error_set(errp, ENOTSUP, "cannot resize a raw window of '%s'", bs->filename);
	}
	r = block_truncate(bs->file, len, errp);
	if (r < 0) {
		return r;
	}
	__atomic_store_n(&s->size, block_length(bs->file), __ATOMIC_RELAXED);
	return 0;
}

static int raw_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
			    uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct raw_state *s = state(bs);
	uint64_t foff = UINT64_MAX;
	int r;

	r = block_get_status(bs->file, offset + s->offset, len, ret_pnum, ret_status, &foff);
	if (r < 0) {
		return r;
	}
	*ret_file_offset = foff == UINT64_MAX ? UINT64_MAX : foff;
	return 0;
}

uint64_t raw_window_offset(struct block_node *bs)
{
	return state(bs)->offset;
}

/* vmm-img create -f raw: a sparse file, or preallocated (falloc, full). */
static int raw_create(const char *filename, uint64_t size, json_t *opts, struct error **errp)
{
	const char *prealloc = "off", *key;
	json_t *v;
	int fd, r = 0;

	json_object_foreach (opts, key, v) {
		if (strcmp(key, "preallocation") == 0 && json_is_string(v)) {
			prealloc = json_string_value(v);
		} else if (strcmp(key, "size") != 0) {
			return error_set(errp, EINVAL,
					 "invalid option '%s' for format 'raw' (raw takes "
					 "preallocation)",
					 key);
		}
	}
	if (strcmp(prealloc, "off") != 0 && strcmp(prealloc, "falloc") != 0 &&
	    strcmp(prealloc, "full") != 0) {
		return error_set(errp, EINVAL,
				 "invalid preallocation '%s' for raw (off, falloc, full)",
				 prealloc);
	}
	if (size > INT64_MAX) {
		return error_set(errp, EFBIG, "could not create '%s': size too large", filename);
	}
	fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		return error_set_errno(errp, -errno, "could not create '%s'", filename);
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		r = -errno;
	} else if (strcmp(prealloc, "off") == 0 && size > 0) {
		/*
		 * As QEMU's file driver: allocate the first block, so that a later
		 * probe of the file's alignment (O_DIRECT) reads a real block (and
		 * qemu-img map shows the same first range for our images).
		 */
		static const char zero[4096];

		if (pwrite(fd, zero, MIN(sizeof(zero), size), 0) < 0) {
			r = -errno;
		}
	} else if (strcmp(prealloc, "falloc") == 0 && size > 0) {
		r = -posix_fallocate(fd, 0, (off_t)size);
	} else if (strcmp(prealloc, "full") == 0) {
		static const char zero[65536];

		for (uint64_t off = 0; off < size && r == 0;) {
			ssize_t n = pwrite(fd, zero, MIN(sizeof(zero), size - off), (off_t)off);

			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
			} else {
				off += (uint64_t)n;
			}
		}
		if (r == 0 && fdatasync(fd) < 0) {
			r = -errno;
		}
	}
	close(fd);
	if (r < 0) {
		return error_set_errno(errp, r, "could not create '%s'", filename);
	}
	return 0;
}

const struct block_driver raw_driver = {
	.name = "raw",
	.create = raw_create,
	.open = raw_open,
	.close = raw_close,
	.get_length = raw_get_length,
	.preadv = raw_preadv,
	.pwritev = raw_pwritev,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.truncate = raw_truncate,
	.block_status = raw_block_status,
};
