/*
 * VPC format driver: Microsoft's Virtual Hard Disk (VHD) images, QEMU's
 * "vpc". A 512-byte big-endian footer ("conectix") at the end of the file
 * says fixed (the data, then the footer) or dynamic (a copy of the footer
 * at offset 0, a "cxsparse" header, a block allocation table of 32-bit
 * sector numbers, and blocks of a sector bitmap plus data, appended before
 * the trailing footer).
 *
 * As QEMU: the virtual size comes from the CHS geometry unless the creator
 * is one that uses the footer's size ("win ", "qem2", "d2v ", "CTXS",
 * "tap") or the geometry is the maximum; block bitmaps are written all-ones
 * and not consulted on reads. A new block overwrites the trailing footer
 * with its bitmap, the footer is rewritten after the block, then the BAT
 * entry is written (each step synced, so a crash leaves at most an
 * unreferenced block).
 *
 * Refused: differencing images, a bad footer or header checksum, sizes over
 * 2040 GiB, block sizes that are not a power of two from 512 bytes to
 * 256 MiB, a BAT that does not fit in the file or exceeds 64 MiB.
 *
 * Threads: block worker threads, concurrently. s->lock protects the BAT
 * copy and the allocation point; reads and in-place writes look up under it
 * and transfer without it (blocks never move); allocations run under it.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "block/block-int.h"
#include "common/bytes.h"
#include "common/iov.h"

#define VHD_FOOTER 512
#define VHD_DYN_HEADER 1024
#define VHD_FIXED 2
#define VHD_DYNAMIC 3
#define VHD_DIFFERENCING 4
#define VHD_TIMESTAMP_BASE 946684800 /* 2000-01-01 00:00:00 UTC */
#define VHD_CHS_MAX_C 65535ull
#define VHD_CHS_MAX_H 16
#define VHD_CHS_MAX_S 255
#define VHD_MAX_GEOMETRY (VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S)
#define VHD_MAX_SECTORS 0xff000000ull /* 2040 GiB, as QEMU */
#define VHD_BAT_UNUSED 0xffffffffu
#define VHD_DEFAULT_BLOCK (2u << 20)
#define VHD_MAX_BLOCK (256u << 20)
#define VHD_MAX_BAT_BYTES (64u << 20)

struct vpc_state {
	struct block_node *bs;
	pthread_mutex_t lock;
	uint8_t footer[VHD_FOOTER];
	uint32_t type;
	uint64_t size; /* virtual size */
	/* dynamic */
	uint32_t block_size, bitmap_size;
	uint32_t max_entries;
	uint64_t bat_offset;
	uint32_t *bat;	      /* host order */
	uint64_t free_offset; /* where the next block (and the footer now) goes */
};

/* One's complement of the byte sum, with the checksum field (at @at) as zero. */
static uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t at)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++) {
		if (i < at || i >= at + 4) {
			sum += buf[i];
		}
	}
	return ~sum;
}

static int vpc_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	/* as QEMU: only a dynamic image (footer copy at 0) is recognised; fixed is raw */
	return len >= 8 && memcmp(buf, "conectix", 8) == 0 ? 100 : 0;
}

/* The VHD spec's CHS algorithm, as QEMU's calculate_geometry(). */
static void calculate_geometry(uint64_t total, uint16_t *cyls, uint8_t *heads, uint8_t *secs)
{
	uint64_t cth;

	total = MIN(total, VHD_MAX_GEOMETRY);
	if (total >= 65535ull * 16 * 63) {
		*secs = 255;
		*heads = 16;
		cth = total / *secs;
	} else {
		*secs = 17;
		cth = total / *secs;
		*heads = (uint8_t)MAX(4, DIV_ROUND_UP(cth, 1024));
		if (cth >= (uint64_t)*heads * 1024 || *heads > 16) {
			*secs = 31;
			*heads = 16;
			cth = total / *secs;
		}
		if (cth >= (uint64_t)*heads * 1024) {
			*secs = 63;
			*heads = 16;
			cth = total / *secs;
		}
	}
	*cyls = (uint16_t)MIN(cth / *heads, 65535);
}

/* Validate a footer; fills type and the virtual size. */
static int parse_footer(struct vpc_state *s, const char *fn, struct error **errp)
{
	const uint8_t *f = s->footer;
	uint64_t chs;
	bool use_chs;

	if (memcmp(f, "conectix", 8) != 0) {
		return error_set(errp, EINVAL, "'%s' is not a VPC image (no 'conectix' footer)",
				 fn);
	}
	if (vhd_checksum(f, VHD_FOOTER, 64) != be32(f + 64)) {
		return error_set(errp, EINVAL, "VPC image '%s': the footer checksum is incorrect",
				 fn);
	}
	s->type = be32(f + 60);
	if (s->type == VHD_DIFFERENCING) {
		return error_set(errp, ENOTSUP,
				 "VPC image '%s' is a differencing image, which is not supported",
				 fn);
	}
	if (s->type != VHD_FIXED && s->type != VHD_DYNAMIC) {
		return error_set(errp, EINVAL, "VPC image '%s': unknown disk type %" PRIu32, fn,
				 s->type);
	}
	chs = (uint64_t)(f[56] << 8 | f[57]) * f[58] * f[59];
	use_chs = memcmp(f + 28, "win ", 4) && memcmp(f + 28, "qem2", 4) &&
		  memcmp(f + 28, "d2v ", 4) && memcmp(f + 28, "CTXS", 4) &&
		  memcmp(f + 28, "tap", 4);
	if (!use_chs || chs == VHD_MAX_GEOMETRY) {
		s->size = be64(f + 48) / 512 * 512;
	} else {
		s->size = chs * 512;
	}
	if (s->size / 512 > VHD_MAX_SECTORS) {
		return error_set(errp, EFBIG,
				 "VPC image '%s': virtual size %" PRIu64 " exceeds 2040 GiB", fn,
				 s->size);
	}
	return 0;
}

static int parse_dynamic(struct vpc_state *s, const char *fn, uint64_t file_len,
			 struct error **errp)
{
	uint8_t h[VHD_DYN_HEADER];
	uint64_t off = be64(s->footer + 16), bat_bytes;
	_cleanup_free_ uint8_t *raw = NULL;
	int r;

	if (off > file_len || VHD_DYN_HEADER > file_len - off) {
		return error_set(errp, EINVAL,
				 "VPC image '%s': dynamic header offset %#" PRIx64
				 " is past the end of the file",
				 fn, off);
	}
	r = block_pread(s->bs->file, off, h, sizeof(h));
	if (r < 0) {
		return error_set_errno(errp, r, "could not read the VPC header of '%s'", fn);
	}
	if (memcmp(h, "cxsparse", 8) != 0) {
		return error_set(errp, EINVAL, "VPC image '%s': no 'cxsparse' dynamic header", fn);
	}
	if (vhd_checksum(h, sizeof(h), 36) != be32(h + 36)) {
		return error_set(errp, EINVAL,
				 "VPC image '%s': the dynamic header checksum is incorrect", fn);
	}
	s->bat_offset = be64(h + 16);
	s->max_entries = be32(h + 28);
	s->block_size = be32(h + 32);
	if (s->block_size < 512 || s->block_size > VHD_MAX_BLOCK ||
	    (s->block_size & (s->block_size - 1))) {
		return error_set(errp, EINVAL,
				 "VPC image '%s': block size %" PRIu32
				 " is not a power of two from 512 to 256 MiB",
				 fn, s->block_size);
	}
	s->bitmap_size = ALIGN_UP(s->block_size / (8 * 512), 512u);
	bat_bytes = (uint64_t)s->max_entries * 4;
	if ((uint64_t)s->max_entries * s->block_size < s->size || bat_bytes > VHD_MAX_BAT_BYTES) {
		return error_set(errp, EINVAL,
				 "VPC image '%s': %" PRIu32
				 " BAT entries do not cover the disk or exceed 64 MiB",
				 fn, s->max_entries);
	}
	if (s->bat_offset % 512 || s->bat_offset > file_len ||
	    bat_bytes > file_len - s->bat_offset) {
		return error_set(errp, EINVAL,
				 "VPC image '%s': BAT offset %#" PRIx64
				 " is unaligned or past the end of the file",
				 fn, s->bat_offset);
	}
	s->bat = malloc(MAX(bat_bytes, 4));
	raw = malloc(ALIGN_UP(MAX(bat_bytes, 1), 512));
	if (!s->bat || !raw) {
		return error_set(errp, ENOMEM, "out of memory for the BAT of '%s'", fn);
	}
	r = block_pread(s->bs->file, s->bat_offset, raw, ALIGN_UP(bat_bytes, 512));
	if (r < 0) {
		return error_set_errno(errp, r, "could not read the BAT of '%s'", fn);
	}
	s->free_offset = ALIGN_UP(s->bat_offset + bat_bytes, 512);
	for (uint32_t i = 0; i < s->max_entries; i++) {
		uint64_t end;

		s->bat[i] = be32(raw + 4 * i);
		if (s->bat[i] == VHD_BAT_UNUSED) {
			continue;
		}
		end = (uint64_t)s->bat[i] * 512 + s->bitmap_size + s->block_size;
		if ((uint64_t)s->bat[i] * 512 < s->bat_offset + bat_bytes &&
		    (uint64_t)s->bat[i] * 512 + s->bitmap_size + s->block_size > s->bat_offset) {
			return error_set(errp, EINVAL,
					 "VPC image '%s': block %" PRIu32 " overlaps the BAT", fn,
					 i);
		}
		s->free_offset = MAX(s->free_offset, end);
	}
	if (s->free_offset > file_len) {
		return error_set(errp, EINVAL,
				 "VPC image '%s': a block lies past the end of the file (the image "
				 "has been truncated)",
				 fn);
	}
	return 0;
}

static void vpc_close(struct block_node *bs)
{
	struct vpc_state *s = bs->opaque;

	if (!s) {
		return;
	}
	free(s->bat);
	pthread_mutex_destroy(&s->lock);
	free(s);
	bs->opaque = NULL;
}

static int vpc_open(struct block_node *bs, const char *filename, json_t *opts, struct error **errp)
{
	uint64_t file_len = block_length(bs->file);
	struct vpc_state *s;
	int r;

	if (json_object_size(opts)) {
		return error_set(errp, EINVAL, "invalid option '%s' for VPC image '%s'",
				 json_object_iter_key(json_object_iter(opts)), filename);
	}
	if (file_len < VHD_FOOTER) {
		return error_set(errp, EINVAL, "'%s' is too short for a VPC image", filename);
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	bs->opaque = s;
	s->bs = bs;
	pthread_mutex_init(&s->lock, NULL);
	/* a dynamic image has a copy of the footer at 0; a fixed one only at the end */
	r = block_pread(bs->file, 0, s->footer, VHD_FOOTER);
	if (r == 0 && memcmp(s->footer, "conectix", 8) != 0) {
		r = block_pread(bs->file, file_len - VHD_FOOTER, s->footer, VHD_FOOTER);
	}
	if (r < 0) {
		error_set_errno(errp, r, "could not read the VPC footer of '%s'", filename);
		goto fail;
	}
	r = parse_footer(s, filename, errp);
	if (r < 0) {
		goto fail;
	}
	if (s->type == VHD_FIXED) {
		if (s->size > file_len - VHD_FOOTER) {
			r = error_set(errp, EINVAL,
				      "VPC image '%s': fixed disk of %" PRIu64
				      " bytes does not fit in the file",
				      filename, s->size);
			goto fail;
		}
		return 0;
	}
	r = parse_dynamic(s, filename, file_len, errp);
	if (r < 0) {
		goto fail;
	}
	return 0;
fail:
	vpc_close(bs);
	return r;
}

static uint64_t vpc_get_length(struct block_node *bs)
{
	return ((struct vpc_state *)bs->opaque)->size;
}

/* Host offset of guest @offset (UINT64_MAX: unallocated) and the bytes to the block's end. */
static uint64_t lookup(struct vpc_state *s, uint64_t offset, uint64_t len, uint64_t *ret_n)
{
	uint64_t idx, in, n;

	if (s->type == VHD_FIXED) {
		*ret_n = len;
		return offset;
	}
	idx = offset / s->block_size;
	in = offset % s->block_size;
	n = MIN(len, s->block_size - in);
	/* unallocated blocks in a row are one run */
	if (s->bat[idx] == VHD_BAT_UNUSED) {
		for (uint64_t k = idx + 1;
		     n < len && k < s->max_entries && s->bat[k] == VHD_BAT_UNUSED; k++) {
			n = MIN(len, n + s->block_size);
		}
		*ret_n = n;
		return UINT64_MAX;
	}
	*ret_n = n;
	return (uint64_t)s->bat[idx] * 512 + s->bitmap_size + in;
}

static int vpc_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		      uint64_t len)
{
	struct vpc_state *s = bs->opaque;
	uint64_t done = 0;

	while (done < len) {
		uint64_t host, n;
		int r;

		pthread_mutex_lock(&s->lock);
		host = lookup(s, offset + done, len - done, &n);
		pthread_mutex_unlock(&s->lock);
		if (host == UINT64_MAX) {
			iov_memset(iov, cnt, done, 0, n);
		} else {
			r = block_io_slice(bs->file, false, host, iov, cnt, done, n);
			if (r < 0) {
				return r;
			}
		}
		done += n;
	}
	return 0;
}

static int write_footer(struct vpc_state *s, uint64_t off)
{
	uint8_t buf[VHD_FOOTER];
	int r;

	memcpy(buf, s->footer, VHD_FOOTER);
	r = block_pwrite(s->bs->file, off, buf, VHD_FOOTER);
	return r < 0 ? r : block_flush(s->bs->file);
}

/* Allocate the block holding guest @offset; s->lock held. */
static int alloc_block(struct vpc_state *s, uint64_t offset)
{
	uint32_t idx = (uint32_t)(offset / s->block_size);
	uint64_t at = s->free_offset;
	_cleanup_free_ uint8_t *bitmap = malloc(s->bitmap_size);
	uint8_t e[4];
	int r;

	if (!bitmap) {
		return -ENOMEM;
	}
	if (at / 512 >= VHD_BAT_UNUSED) {
		return -EFBIG;
	}
	memset(bitmap, 0xff, s->bitmap_size);
	/* the bitmap overwrites the old trailing footer; the data area is a hole */
	r = block_pwrite(s->bs->file, at, bitmap, s->bitmap_size);
	if (r == 0 && block_length(s->bs->file) > at + s->bitmap_size) {
		/* bytes after the old end of the blocks (padding, the old footer) read as zeroes */
		r = block_write_zeroes(s->bs->file, at + s->bitmap_size,
				       MIN(block_length(s->bs->file) - at - s->bitmap_size,
					   (uint64_t)s->block_size),
				       0);
	}
	if (r == 0) {
		r = write_footer(s, at + s->bitmap_size + s->block_size);
	}
	if (r < 0) {
		return r;
	}
	s->free_offset = at + s->bitmap_size + s->block_size;
	put_be32(e, (uint32_t)(at / 512));
	r = block_pwrite(s->bs->file, s->bat_offset + 4ull * idx, e, 4);
	if (r == 0) {
		r = block_flush(s->bs->file);
	}
	if (r < 0) {
		return r;
	}
	s->bat[idx] = (uint32_t)(at / 512);
	return 0;
}

static int vpc_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len)
{
	struct vpc_state *s = bs->opaque;
	uint64_t done = 0;

	while (done < len) {
		uint64_t host, n;
		int r = 0;

		pthread_mutex_lock(&s->lock);
		host = lookup(s, offset + done, len - done, &n);
		if (host == UINT64_MAX) {
			r = alloc_block(s, offset + done);
			if (r == 0) {
				host = lookup(s, offset + done, len - done, &n);
			}
		}
		pthread_mutex_unlock(&s->lock);
		if (r == 0) {
			r = block_io_slice(bs->file, true, host, iov, cnt, done, n);
		}
		if (r < 0) {
			return r;
		}
		done += n;
	}
	return 0;
}

static int vpc_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
			    uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct vpc_state *s = bs->opaque;
	uint64_t host;

	pthread_mutex_lock(&s->lock);
	host = lookup(s, offset, len, ret_pnum);
	pthread_mutex_unlock(&s->lock);
	if (host == UINT64_MAX) {
		*ret_status = BLOCK_STATUS_ZERO;
		*ret_file_offset = UINT64_MAX;
	} else {
		*ret_status = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
		*ret_file_offset = host;
	}
	return 0;
}

static void vpc_info(struct block_node *bs, json_t *info)
{
	struct vpc_state *s = bs->opaque;

	if (s->type == VHD_DYNAMIC) {
		json_object_set_new(info, "cluster-size", json_integer(s->block_size));
	}
}

static int vpc_create(const char *filename, uint64_t size, json_t *opts, struct error **errp)
{
	bool fixed = false, force_size = false;
	uint8_t f[VHD_FOOTER] = {0};
	uint16_t cyls = 0;
	uint8_t heads = 0, secs = 0;
	uint64_t total = size / 512, file_len;
	struct block_node *file = NULL;
	const char *key;
	json_t *v;
	int r;

	json_object_foreach (opts, key, v) {
		const char *val = json_string_value(v);

		if (strcmp(key, "size") == 0) {
			continue;
		}
		if (!val) {
			return error_set(errp, EINVAL, "VPC option '%s' must be a string", key);
		}
		if (strcmp(key, "subformat") == 0 && strcmp(val, "dynamic") == 0) {
			fixed = false;
		} else if (strcmp(key, "subformat") == 0 && strcmp(val, "fixed") == 0) {
			fixed = true;
		} else if (strcmp(key, "subformat") == 0) {
			return error_set(errp, EINVAL, "Invalid subformat '%s' (dynamic, fixed)",
					 val);
		} else if (strcmp(key, "force_size") == 0 &&
			   (strcmp(val, "on") == 0 || strcmp(val, "off") == 0)) {
			force_size = strcmp(val, "on") == 0;
		} else if (strcmp(key, "preallocation") == 0 && strcmp(val, "off") == 0) {
			continue;
		} else {
			return error_set(errp, EINVAL, "invalid option '%s' for format 'vpc'", key);
		}
	}
	/* as QEMU: round up to the nearest CHS geometry unless force_size */
	if (force_size) {
		cyls = VHD_CHS_MAX_C;
		heads = VHD_CHS_MAX_H;
		secs = VHD_CHS_MAX_S;
	} else {
		for (uint64_t i = 0; total > (uint64_t)cyls * heads * secs &&
				     (uint64_t)cyls * heads * secs != VHD_MAX_GEOMETRY;
		     i++) {
			calculate_geometry(total + i, &cyls, &heads, &secs);
		}
	}
	if ((uint64_t)cyls * heads * secs == VHD_MAX_GEOMETRY) {
		total = size / 512;
	} else {
		total = (uint64_t)cyls * heads * secs;
	}
	if (total > VHD_MAX_SECTORS) {
		return error_set(
			errp, EFBIG,
			"The image size is too large for file format 'vpc' (at most 2040 GiB)");
	}
	memcpy(f, "conectix", 8);
	put_be32(f + 8, 2);
	put_be32(f + 12, 0x00010000);
	put_be64(f + 16, fixed ? UINT64_MAX : VHD_FOOTER);
	put_be32(f + 24, (uint32_t)(time(NULL) - VHD_TIMESTAMP_BASE));
	memcpy(f + 28, force_size ? "qem2" : "qemu", 4);
	put_be32(f + 32, 0x00050003);
	memcpy(f + 36, "Wi2k", 4);
	put_be64(f + 40, total * 512);
	put_be64(f + 48, total * 512);
	put_be16(f + 56, cyls);
	f[58] = heads;
	f[59] = secs;
	put_be32(f + 60, fixed ? VHD_FIXED : VHD_DYNAMIC);
	if (getrandom(f + 68, 16, 0) != 16) {
		memset(f + 68, 0x5a, 16);
	}
	f[68 + 6] = (uint8_t)((f[68 + 6] & 0x0f) | 0x40); /* a version 4 UUID */
	f[68 + 8] = (uint8_t)((f[68 + 8] & 0x3f) | 0x80);
	put_be32(f + 64, vhd_checksum(f, VHD_FOOTER, 64));

	if (fixed) {
		file_len = total * 512 + VHD_FOOTER;
	} else {
		uint32_t entries = (uint32_t)DIV_ROUND_UP(total * 512, VHD_DEFAULT_BLOCK);

		file_len = 3 * 512 + ALIGN_UP(4ull * entries, 512) + VHD_FOOTER;
	}
	r = block_create("raw", filename, file_len, NULL, errp);
	if (r == 0) {
		r = block_open(&file, filename, "raw", BLOCK_O_RDWR, errp);
	}
	if (r < 0) {
		return r;
	}
	r = block_pwrite(file, file_len - VHD_FOOTER, f, VHD_FOOTER);
	if (r == 0 && !fixed) {
		uint32_t entries = (uint32_t)DIV_ROUND_UP(total * 512, VHD_DEFAULT_BLOCK);
		uint64_t bat_bytes = ALIGN_UP(4ull * entries, 512);
		_cleanup_free_ uint8_t *hb = calloc(1, 3 * 512 + bat_bytes);

		if (!hb) {
			r = -ENOMEM;
		} else {
			uint8_t *h = hb + 512;

			memcpy(hb, f, VHD_FOOTER);
			memcpy(h, "cxsparse", 8);
			put_be64(h + 8, UINT64_MAX);
			put_be64(h + 16, 3 * 512);
			put_be32(h + 24, 0x00010000);
			put_be32(h + 28, entries);
			put_be32(h + 32, VHD_DEFAULT_BLOCK);
			put_be32(h + 36, vhd_checksum(h, VHD_DYN_HEADER, 36));
			memset(hb + 3 * 512, 0xff, bat_bytes);
			r = block_pwrite(file, 0, hb, 3 * 512 + bat_bytes);
		}
	}
	if (r == 0) {
		r = block_flush(file);
	}
	block_unref(file);
	if (r < 0) {
		return error_set_errno(errp, r, "could not write VPC image '%s'", filename);
	}
	return 0;
}

const struct block_driver vpc_driver = {
	.name = "vpc",
	.probe = vpc_probe,
	.create = vpc_create,
	.open = vpc_open,
	.close = vpc_close,
	.get_length = vpc_get_length,
	.preadv = vpc_preadv,
	.pwritev = vpc_pwritev,
	.block_status = vpc_block_status,
	.info = vpc_info,
};
