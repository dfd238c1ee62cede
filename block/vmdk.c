/*
 * VMDK format driver for the two single-file sparse kinds QEMU makes and
 * uses: monolithicSparse and streamOptimized (VMware's Virtual Disk Format
 * 5.0, "hosted sparse extent"). One file: a little-endian sparse extent
 * header ("KDMV"), the embedded text descriptor, a grain directory (GD) of
 * 32-bit sector offsets of grain tables (GT, 512 entries each) and a
 * redundant copy of both, then grains. streamOptimized grains are
 * zlib-compressed, each behind a marker (LBA, size); its GD may be at the
 * end of the file behind a footer (VMware's stream), which is read-only
 * here.
 *
 * Writes append grains at the end of the file and then update the GT
 * entry in both the GT and its redundant copy (a crash leaves at most an
 * unreferenced grain). A partial write to an unallocated grain writes the
 * whole grain with zeroes around the data. streamOptimized: every write
 * compresses whole grains; rewriting an allocated grain appends a new
 * compressed copy (QEMU refuses that instead), leaving the old one unused.
 * The end-of-stream marker is rewritten at the end on close.
 *
 * Refused: other create types (split, flat, VMFS, descriptor-only files),
 * images with a parent (parentCID), VMDK3 ("COWD"), more than one extent,
 * grain tables other than 512 entries, grains over 2 MiB, a GD over
 * 32 MiB or outside the file, a descriptor over 1 MiB or without a valid
 * createType/extent line.
 *
 * Threads: block worker threads; s->lock protects the GD, the GT cache and
 * the allocation point. Reads of uncompressed grains and in-place writes
 * transfer without it (grains never move); compressed grains and
 * allocations are handled under it.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

#include "block/block-int.h"
#include "common/bytes.h"
#include "block/table-cache.h"
#include "common/iov.h"

#define VMDK4_MAGIC 0x564d444bu /* "KDMV" */
#define VMDK3_MAGIC 0x44574f43u /* "COWD" */
#define VMDK_FLAG_NL_DETECT (1u << 0)
#define VMDK_FLAG_RGD (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK_FLAG_COMPRESS (1u << 16)
#define VMDK_FLAG_MARKER (1u << 17)
#define VMDK_GD_AT_END UINT64_MAX
#define VMDK_GTES 512
#define VMDK_GT_BYTES (VMDK_GTES * 4)
#define VMDK_MAX_GRAIN_SECTORS 4096 /* 2 MiB */
#define VMDK_MAX_GD_BYTES (32u << 20)
#define VMDK_MAX_DESC (1u << 20)
#define VMDK_GT_CACHE 64
#define VMDK_MARKER_EOS 0
#define VMDK_MARKER_GT 1
#define VMDK_MARKER_GD 2
#define VMDK_MARKER_FOOTER 3

struct vmdk_state {
	struct block_node *bs;
	pthread_mutex_t lock;
	uint8_t header[512];
	uint32_t flags;
	uint64_t capacity; /* sectors */
	uint64_t grain_sectors, grain_bytes;
	uint64_t gd_offset, rgd_offset; /* sectors; rgd 0 if none */
	uint32_t gd_entries;
	uint32_t *gd, *rgd; /* host order */
	struct table_cache *gt_cache;
	bool compressed, stream_footer, writable, dirty_eos;
	uint64_t next_sector; /* allocation point */
	uint8_t *zbuf;	      /* compressed grain buffer (marker + data) */
	size_t zbuf_len;
	uint8_t *gbuf;	     /* one grain */
	uint64_t cached_lba; /* gbuf holds the decompressed grain at this sector, or UINT64_MAX */
};

static int vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	if (len >= 4 && (le32(buf) == VMDK4_MAGIC || le32(buf) == VMDK3_MAGIC)) {
		return 100;
	}
	return 0;
}

/* Value of `key=` or `key="..."` on its own line of @desc, copied into @out. */
static bool desc_value(const char *desc, const char *key, char *out, size_t out_len)
{
	size_t kl = strlen(key);

	for (const char *p = desc; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		const char *v, *end;

		while (*p == ' ' || *p == '\t') {
			p++;
		}
		if (strncmp(p, key, kl) != 0) {
			continue;
		}
		v = p + kl;
		while (*v == ' ' || *v == '\t') {
			v++;
		}
		if (*v != '=') {
			continue;
		}
		v++;
		while (*v == ' ' || *v == '\t') {
			v++;
		}
		if (*v == '"') {
			v++;
			end = strchr(v, '"');
		} else {
			end = v + strcspn(v, " \t\r\n");
		}
		if (!end || (size_t)(end - v) >= out_len) {
			return false;
		}
		memcpy(out, v, (size_t)(end - v));
		out[end - v] = 0;
		return true;
	}
	return false;
}

static int parse_descriptor(struct vmdk_state *s, const char *fn, uint64_t off, uint64_t len,
			    uint64_t file_len, struct error **errp)
{
	_cleanup_free_ char *d = NULL;
	char type[64], parent[32];
	unsigned extents = 0;
	int r;

	if (len == 0 || len > VMDK_MAX_DESC || off > file_len || len > file_len - off) {
		return error_set(errp, EINVAL,
				 "VMDK image '%s': descriptor at %#" PRIx64 " (%" PRIu64
				 " bytes) is empty, over 1 MiB or outside the file",
				 fn, off, len);
	}
	d = malloc(len + 1);
	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = block_pread(s->bs->file, off, d, len);
	if (r < 0) {
		return error_set_errno(errp, r, "could not read the VMDK descriptor of '%s'", fn);
	}
	d[len] = 0;
	if (!desc_value(d, "createType", type, sizeof(type))) {
		return error_set(errp, EINVAL, "VMDK image '%s': the descriptor has no createType",
				 fn);
	}
	if (strcmp(type, "monolithicSparse") != 0 && strcmp(type, "streamOptimized") != 0) {
		return error_set(errp, ENOTSUP,
				 "VMDK image '%s': createType '%s' is not supported "
				 "(monolithicSparse, streamOptimized)",
				 fn, type);
	}
	if (desc_value(d, "parentCID", parent, sizeof(parent)) && strcasecmp(parent, "ffffffff")) {
		return error_set(
			errp, ENOTSUP,
			"VMDK image '%s' has a parent (parentCID=%s), which is not supported", fn,
			parent);
	}
	for (const char *p = d; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		char access[16], kind[16];
		unsigned long long sectors;

		if (sscanf(p, "%15s %llu %15s", access, &sectors, kind) == 3 &&
		    (!strcmp(access, "RW") || !strcmp(access, "RDONLY") ||
		     !strcmp(access, "NOACCESS"))) {
			extents++;
			if (strcmp(kind, "SPARSE") != 0) {
				return error_set(
					errp, ENOTSUP,
					"VMDK image '%s': extent type '%s' is not supported", fn,
					kind);
			}
		}
	}
	if (extents != 1) {
		return error_set(errp, ENOTSUP,
				 "VMDK image '%s': %u extents in the descriptor (one is supported)",
				 fn, extents);
	}
	return 0;
}

/* Validate the sparse extent header at @h; fills the geometry fields. */
static int parse_header(struct vmdk_state *s, const uint8_t *h, const char *fn, uint64_t file_len,
			struct error **errp)
{
	uint32_t version = le32(h + 4), gtes = le32(h + 44);
	uint64_t gd_bytes, gt_coverage;

	s->flags = le32(h + 8);
	s->capacity = le64(h + 12);
	s->grain_sectors = le64(h + 20);
	s->rgd_offset = le64(h + 48);
	s->gd_offset = le64(h + 56);
	if (version < 1 || version > 3) {
		return error_set(errp, ENOTSUP,
				 "VMDK image '%s': version %" PRIu32 " is not supported", fn,
				 version);
	}
	if (gtes != VMDK_GTES) {
		return error_set(errp, ENOTSUP,
				 "VMDK image '%s': %" PRIu32
				 " entries per grain table (512 supported)",
				 fn, gtes);
	}
	if (s->grain_sectors == 0 || s->grain_sectors > VMDK_MAX_GRAIN_SECTORS ||
	    (s->grain_sectors & (s->grain_sectors - 1))) {
		return error_set(errp, EINVAL,
				 "VMDK image '%s': grain size %" PRIu64
				 " sectors is not a power of two up to 2 MiB",
				 fn, s->grain_sectors);
	}
	s->grain_bytes = s->grain_sectors * 512;
	s->compressed = s->flags & VMDK_FLAG_COMPRESS;
	if (s->compressed && (h[77] | h[78] << 8) != 1) {
		return error_set(errp, ENOTSUP, "VMDK image '%s': unknown compression algorithm",
				 fn);
	}
	if (s->compressed && !(s->flags & VMDK_FLAG_MARKER)) {
		return error_set(errp, ENOTSUP,
				 "VMDK image '%s': compressed grains without markers are not "
				 "supported",
				 fn);
	}
	gt_coverage = VMDK_GTES * s->grain_sectors;
	if (s->capacity == 0 || s->capacity > (1ull << 40)) {
		return error_set(errp, EINVAL,
				 "VMDK image '%s': capacity %" PRIu64 " sectors is invalid", fn,
				 s->capacity);
	}
	gd_bytes = DIV_ROUND_UP(s->capacity, gt_coverage) * 4;
	if (gd_bytes > VMDK_MAX_GD_BYTES) {
		return error_set(errp, EFBIG,
				 "VMDK image '%s': a grain directory of %" PRIu64
				 " bytes exceeds the 32 MiB this driver supports",
				 fn, gd_bytes);
	}
	s->gd_entries = (uint32_t)(gd_bytes / 4);
	if (s->gd_offset != VMDK_GD_AT_END && (s->gd_offset == 0 || s->gd_offset > file_len / 512 ||
					       gd_bytes > file_len - s->gd_offset * 512)) {
		return error_set(errp, EINVAL,
				 "VMDK image '%s': grain directory at sector %" PRIu64
				 " is outside the file",
				 fn, s->gd_offset);
	}
	if (!(s->flags & VMDK_FLAG_RGD) || s->rgd_offset == 0 || s->rgd_offset > file_len / 512 ||
	    gd_bytes > file_len - s->rgd_offset * 512) {
		s->rgd_offset = 0; /* no usable redundant copy: maintain only the GD */
	}
	return 0;
}

/* A stream with the GD at the end: the real header is the footer before the EOS marker. */
static int read_footer(struct vmdk_state *s, const char *fn, uint64_t file_len, struct error **errp)
{
	uint8_t tail[1536];
	int r;

	if (file_len < 3 * 512 + 512) {
		return error_set(errp, EINVAL, "VMDK image '%s': too short for a stream footer",
				 fn);
	}
	r = block_pread(s->bs->file, file_len - 1536, tail, sizeof(tail));
	if (r < 0) {
		return error_set_errno(errp, r, "could not read the VMDK footer of '%s'", fn);
	}
	if (le32(tail + 8) != 0 || le32(tail + 12) != VMDK_MARKER_FOOTER ||
	    le32(tail + 512) != VMDK4_MAGIC || le32(tail + 1024 + 12) != VMDK_MARKER_EOS) {
		return error_set(errp, EINVAL,
				 "VMDK image '%s': the grain directory is at the end but there is "
				 "no valid footer",
				 fn);
	}
	memcpy(s->header, tail + 512, 512);
	s->stream_footer = true;
	return 0;
}

static void vmdk_close(struct block_node *bs);

static int vmdk_open(struct block_node *bs, const char *filename, json_t *opts, struct error **errp)
{
	uint64_t file_len = block_length(bs->file), desc_off, desc_len;
	struct vmdk_state *s;
	_cleanup_free_ uint8_t *raw = NULL;
	int r;

	if (json_object_size(opts)) {
		return error_set(errp, EINVAL, "invalid option '%s' for VMDK image '%s'",
				 json_object_iter_key(json_object_iter(opts)), filename);
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	bs->opaque = s;
	s->bs = bs;
	s->cached_lba = UINT64_MAX;
	pthread_mutex_init(&s->lock, NULL);
	r = block_pread(bs->file, 0, s->header, MIN(file_len, 512));
	if (r < 0) {
		error_set_errno(errp, r, "could not read the VMDK header of '%s'", filename);
		goto fail;
	}
	if (le32(s->header) == VMDK3_MAGIC) {
		r = error_set(errp, ENOTSUP, "VMDK image '%s': VMDK3 (COWD) is not supported",
			      filename);
		goto fail;
	}
	if (file_len < 512 || le32(s->header) != VMDK4_MAGIC) {
		r = error_set(errp, EINVAL,
			      "'%s' is not a VMDK sparse extent (descriptor-only and flat VMDK "
			      "files are not supported)",
			      filename);
		goto fail;
	}
	desc_off = le64(s->header + 28) * 512;
	desc_len = le64(s->header + 36) * 512;
	if (le64(s->header + 56) == VMDK_GD_AT_END) {
		r = read_footer(s, filename, file_len, errp);
		if (r < 0) {
			goto fail;
		}
	}
	r = parse_header(s, s->header, filename, file_len, errp);
	if (r < 0) {
		goto fail;
	}
	if (s->gd_offset == VMDK_GD_AT_END) {
		r = error_set(errp, EINVAL, "VMDK image '%s': the footer has no grain directory",
			      filename);
		goto fail;
	}
	r = parse_descriptor(s, filename, desc_off, desc_len, file_len, errp);
	if (r < 0) {
		goto fail;
	}
	if (s->stream_footer && !bs->read_only) {
		r = error_set(errp, EROFS,
			      "VMDK image '%s' is a stream with its grain directory at the end; "
			      "it can only be opened read-only",
			      filename);
		goto fail;
	}
	s->writable = !bs->read_only;
	s->gd = calloc(s->gd_entries, 4);
	s->rgd = calloc(s->gd_entries, 4);
	raw = malloc(ALIGN_UP((uint64_t)s->gd_entries * 4, 512));
	if (!s->gd || !s->rgd || !raw) {
		r = error_set(errp, ENOMEM, "out of memory for the grain directory of '%s'",
			      filename);
		goto fail;
	}
	for (int pass = 0; pass < (s->rgd_offset ? 2 : 1); pass++) {
		uint32_t *dst = pass ? s->rgd : s->gd;

		r = block_pread(bs->file, (pass ? s->rgd_offset : s->gd_offset) * 512, raw,
				ALIGN_UP((uint64_t)s->gd_entries * 4, 512));
		if (r < 0) {
			error_set_errno(errp, r, "could not read the grain directory of '%s'",
					filename);
			goto fail;
		}
		for (uint32_t i = 0; i < s->gd_entries; i++) {
			dst[i] = le32(raw + 4 * i);
			if (dst[i] && ((uint64_t)dst[i] > file_len / 512 ||
				       VMDK_GT_BYTES > file_len - (uint64_t)dst[i] * 512)) {
				r = error_set(errp, EINVAL,
					      "VMDK image '%s': grain table %" PRIu32
					      " at sector %" PRIu32 " is outside the file",
					      filename, i, dst[i]);
				goto fail;
			}
		}
	}
	r = table_cache_new(&s->gt_cache, VMDK_GT_CACHE, VMDK_GT_BYTES);
	if (r == 0) {
		s->gbuf = malloc(s->grain_bytes);
		s->zbuf_len = ALIGN_UP(compressBound((uLong)s->grain_bytes) + 12, 512) + 512;
		s->zbuf = malloc(s->zbuf_len);
		if (!s->gbuf || !s->zbuf) {
			r = -ENOMEM;
		}
	}
	if (r < 0) {
		error_set(errp, r, "out of memory for '%s'", filename);
		goto fail;
	}
	s->next_sector = DIV_ROUND_UP(file_len, 512);
	if (s->compressed) {
		/* new grains replace a trailing end-of-stream marker (past the overhead) */
		uint8_t eos[512], zero[512] = {0};

		r = block_pread(bs->file, (s->next_sector - 1) * 512, eos, 512);
		if (r == 0 && memcmp(eos, zero, 512) == 0 &&
		    s->next_sector - 1 >= le64(s->header + 64)) {
			s->next_sector--;
		}
		r = 0;
	} else {
		s->next_sector = ALIGN_UP(s->next_sector, s->grain_sectors);
	}
	return 0;
fail:
	vmdk_close(bs);
	return r;
}

static void vmdk_close(struct block_node *bs)
{
	struct vmdk_state *s = bs->opaque;

	if (!s) {
		return;
	}
	if (s->writable && s->dirty_eos) {
		uint8_t eos[512] = {0};

		if (block_pwrite(bs->file, s->next_sector * 512, eos, 512) == 0) {
			block_flush(bs->file);
		}
	}
	table_cache_free(s->gt_cache);
	free(s->gd);
	free(s->rgd);
	free(s->gbuf);
	free(s->zbuf);
	pthread_mutex_destroy(&s->lock);
	free(s);
	bs->opaque = NULL;
}

static uint64_t vmdk_get_length(struct block_node *bs)
{
	return ((struct vmdk_state *)bs->opaque)->capacity * 512;
}

/* The GT entry of grain @g (0: unallocated; 1 with the zero-grain flag: zeroes). s->lock held. */
static int gt_entry(struct vmdk_state *s, uint64_t g, uint32_t *ret)
{
	uint32_t gde = s->gd[g / VMDK_GTES];
	uint8_t *t;
	int r;

	if (gde == 0) {
		*ret = 0;
		return 0;
	}
	r = table_cache_get(s->gt_cache, s->bs->file, (uint64_t)gde * 512, (void **)&t);
	if (r < 0) {
		return r;
	}
	*ret = le32(t + 4 * (g % VMDK_GTES));
	return 0;
}

enum vmdk_kind {
	VMDK_UNALLOC,
	VMDK_ZERO,
	VMDK_DATA,
	VMDK_COMPRESSED
};

/* Map guest @offset: kind, host byte offset (data) and run length. s->lock held. */
static int lookup(struct vmdk_state *s, uint64_t offset, uint64_t len, enum vmdk_kind *ret_kind,
		  uint64_t *ret_host, uint64_t *ret_n)
{
	uint64_t g = offset / s->grain_bytes, in = offset % s->grain_bytes;
	uint64_t n = MIN(len, s->grain_bytes - in),
		 ngrains = DIV_ROUND_UP(s->capacity, s->grain_sectors);
	uint32_t e;
	int r = gt_entry(s, g, &e);

	if (r < 0) {
		return r;
	}
	if (e == 0) {
		*ret_kind = VMDK_UNALLOC;
	} else if (e == 1 && (s->flags & VMDK_FLAG_ZERO_GRAIN)) {
		*ret_kind = VMDK_ZERO;
	} else if (s->compressed) {
		*ret_kind = VMDK_COMPRESSED;
		*ret_host = (uint64_t)e * 512;
		*ret_n = n;
		return 0;
	} else {
		if ((uint64_t)e * 512 + s->grain_bytes > block_length(s->bs->file)) {
			return -EIO;
		}
		*ret_kind = VMDK_DATA;
		*ret_host = (uint64_t)e * 512 + in;
	}
	for (uint64_t k = g + 1; n < len && k < ngrains; k++) {
		uint32_t f;

		if (*ret_kind == VMDK_UNALLOC && s->gd[k / VMDK_GTES] == 0) {
			/* no grain table: its grains are all unallocated */
			uint64_t skip = MIN(VMDK_GTES - k % VMDK_GTES, ngrains - k);

			n = MIN(len, n + skip * s->grain_bytes);
			k += skip - 1;
			continue;
		}
		r = gt_entry(s, k, &f);
		if (r < 0) {
			return r;
		}
		if (*ret_kind == VMDK_DATA ? f != e + (k - g) * s->grain_sectors
					   : (f == 0   ? VMDK_UNALLOC
					      : f == 1 ? VMDK_ZERO
						       : VMDK_DATA) != *ret_kind) {
			break;
		}
		n = MIN(len, n + s->grain_bytes);
	}
	*ret_n = n;
	return 0;
}

/* Decompress the grain whose marker is at @host into s->gbuf. s->lock held. */
static int load_compressed(struct vmdk_state *s, uint64_t host, uint64_t grain)
{
	uint64_t file_len = block_length(s->bs->file), avail;
	uint32_t size;
	uLongf out = (uLongf)s->grain_bytes;
	int r;

	if (s->cached_lba == grain * s->grain_sectors) {
		return 0;
	}
	if (host >= file_len || host % 512) {
		return -EIO;
	}
	avail = MIN(s->zbuf_len, ALIGN_UP(file_len - host, 512));
	r = block_pread(s->bs->file, host, s->zbuf, MIN(avail, 512));
	if (r < 0) {
		return r;
	}
	size = le32(s->zbuf + 8);
	if (le64(s->zbuf) != grain * s->grain_sectors || size == 0 || size > avail - 12) {
		return -EIO;
	}
	if (12 + size > 512) {
		r = block_pread(s->bs->file, host + 512, s->zbuf + 512,
				ALIGN_UP(12 + (uint64_t)size, 512) - 512);
		if (r < 0) {
			return r;
		}
	}
	memset(s->gbuf, 0, s->grain_bytes);
	if (uncompress(s->gbuf, &out, s->zbuf + 12, size) != Z_OK) {
		return -EIO;
	}
	s->cached_lba = grain * s->grain_sectors;
	return 0;
}

static int vmdk_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len)
{
	struct vmdk_state *s = bs->opaque;
	uint64_t done = 0;

	while (done < len) {
		enum vmdk_kind kind;
		uint64_t host = 0, n;
		int r;

		pthread_mutex_lock(&s->lock);
		r = lookup(s, offset + done, len - done, &kind, &host, &n);
		if (r == 0 && kind == VMDK_COMPRESSED) {
			uint64_t g = (offset + done) / s->grain_bytes;

			r = load_compressed(s, host, g);
			if (r == 0) {
				iov_from_buf(iov, cnt, done,
					     s->gbuf + (offset + done) % s->grain_bytes, n);
			}
		}
		pthread_mutex_unlock(&s->lock);
		if (r < 0) {
			return r;
		}
		if (kind == VMDK_DATA) {
			r = block_io_slice(bs->file, false, host, iov, cnt, done, n);
			if (r < 0) {
				return r;
			}
		} else if (kind != VMDK_COMPRESSED) {
			iov_memset(iov, cnt, done, 0, n);
		}
		done += n;
	}
	return 0;
}

/* Point grain @g at sector @sector in the GT and its redundant copy. s->lock held. */
static int set_gt_entry(struct vmdk_state *s, uint64_t g, uint32_t sector)
{
	uint32_t gti = (uint32_t)(g / VMDK_GTES), k = (uint32_t)(g % VMDK_GTES);
	uint8_t *t, e[4];
	int r;

	if (s->gd[gti] == 0) {
		return -EIO; /* QEMU preallocates every grain table; we do not add them */
	}
	r = table_cache_get(s->gt_cache, s->bs->file, (uint64_t)s->gd[gti] * 512, (void **)&t);
	if (r < 0) {
		return r;
	}
	put_le32(t + 4 * k, sector);
	put_le32(e, sector);
	r = block_pwrite(s->bs->file, (uint64_t)s->gd[gti] * 512 + 4 * k, e, 4);
	if (r == 0 && s->rgd_offset && s->rgd[gti]) {
		r = block_pwrite(s->bs->file, (uint64_t)s->rgd[gti] * 512 + 4 * k, e, 4);
	}
	if (r < 0) {
		table_cache_clear(s->gt_cache);
	}
	return r;
}

/*
 * Write [offset, offset+n) (inside grain g) as a new compressed grain
 * appended at the end: the grain's current contents (decompressed, or
 * zeroes) merged with the data. s->lock held.
 */
static int write_compressed(struct vmdk_state *s, uint64_t offset, const struct iovec *iov,
			    unsigned cnt, uint64_t iov_off, uint64_t n, enum vmdk_kind kind,
			    uint64_t host)
{
	uint64_t g = offset / s->grain_bytes, lba = g * s->grain_sectors;
	uint64_t glen = MIN(s->grain_bytes, (s->capacity - lba) * 512);
	uLongf zlen = (uLongf)(s->zbuf_len - 12);
	uint64_t at = s->next_sector, bytes;
	int r;

	if (kind == VMDK_COMPRESSED) {
		r = load_compressed(s, host, g);
		if (r < 0) {
			return r;
		}
	} else {
		memset(s->gbuf, 0, s->grain_bytes);
	}
	iov_to_buf(iov, cnt, iov_off, s->gbuf + offset % s->grain_bytes, n);
	s->cached_lba = UINT64_MAX;
	if (compress(s->zbuf + 12, &zlen, s->gbuf, (uLong)glen) != Z_OK) {
		return -EIO;
	}
	put_le64(s->zbuf, lba);
	put_le32(s->zbuf + 8, (uint32_t)zlen);
	bytes = ALIGN_UP(12 + (uint64_t)zlen, 512);
	memset(s->zbuf + 12 + zlen, 0, bytes - 12 - zlen);
	if (at > UINT32_MAX) {
		return -EFBIG;
	}
	r = block_pwrite(s->bs->file, at * 512, s->zbuf, bytes);
	if (r < 0) {
		return r;
	}
	s->next_sector = at + bytes / 512;
	s->dirty_eos = true;
	return set_gt_entry(s, g, (uint32_t)at);
}

/* Allocate grains for [offset, offset+n) (one GT, unallocated or zero) and write. s->lock held. */
static int write_alloc(struct vmdk_state *s, uint64_t offset, const struct iovec *iov, unsigned cnt,
		       uint64_t iov_off, uint64_t n)
{
	uint64_t start = ALIGN_DOWN(offset, s->grain_bytes);
	uint64_t end = ALIGN_UP(offset + n, s->grain_bytes);
	uint64_t at = s->next_sector, g = start / s->grain_bytes;
	uint64_t host = at * 512;
	int r;

	if (at + (end - start) / 512 > UINT32_MAX) {
		return -EFBIG;
	}
	/* the head of the new grains past the file's end is a hole; write the tail as zeroes */
	r = block_io_slice(s->bs->file, true, host + (offset - start), iov, cnt, iov_off, n);
	if (r == 0 && end > offset + n) {
		r = block_write_zeroes(s->bs->file, host + (offset + n - start), end - (offset + n),
				       0);
	}
	if (r < 0) {
		return r;
	}
	s->next_sector = at + (end - start) / 512;
	for (uint64_t k = 0; k < (end - start) / s->grain_bytes && r == 0; k++) {
		r = set_gt_entry(s, g + k, (uint32_t)(at + k * s->grain_sectors));
	}
	return r;
}

static int vmdk_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			unsigned cnt, uint64_t len)
{
	struct vmdk_state *s = bs->opaque;
	uint64_t done = 0;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	while (done < len && r == 0) {
		enum vmdk_kind kind;
		uint64_t host = 0, n;

		r = lookup(s, offset + done, len - done, &kind, &host, &n);
		if (r < 0) {
			break;
		}
		if (s->compressed) {
			n = MIN(n, s->grain_bytes - (offset + done) % s->grain_bytes);
			r = write_compressed(s, offset + done, iov, cnt, done, n, kind, host);
		} else if (kind == VMDK_DATA) {
			r = block_io_slice(bs->file, true, host, iov, cnt, done, n);
		} else {
			/* stay inside one grain table */
			uint64_t gt_bytes = VMDK_GTES * s->grain_bytes;

			n = MIN(n, gt_bytes - (offset + done) % gt_bytes);
			r = write_alloc(s, offset + done, iov, cnt, done, n);
		}
		done += n;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int vmdk_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
			     uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct vmdk_state *s = bs->opaque;
	enum vmdk_kind kind;
	uint64_t host = 0;
	int r;

	pthread_mutex_lock(&s->lock);
	r = lookup(s, offset, len, &kind, &host, ret_pnum);
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		return r;
	}
	*ret_file_offset = kind == VMDK_DATA ? host : UINT64_MAX;
	switch (kind) {
	case VMDK_DATA:
	case VMDK_COMPRESSED:
		*ret_status = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
		break;
	case VMDK_ZERO:
		*ret_status = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
		break;
	default:
		*ret_status = BLOCK_STATUS_ZERO;
	}
	return 0;
}

static void vmdk_info(struct block_node *bs, json_t *info)
{
	struct vmdk_state *s = bs->opaque;

	json_object_set_new(info, "cluster-size", json_integer((json_int_t)s->grain_bytes));
}

/* Count grains that point outside the file (corruptions); allocated grains. */
static int vmdk_check(struct block_node *bs, struct block_check_result *res, unsigned fix)
{
	struct vmdk_state *s = bs->opaque;
	uint64_t ngrains = DIV_ROUND_UP(s->capacity, s->grain_sectors);
	uint64_t file_len = block_length(bs->file);
	int r = 0;

	(void)fix;
	pthread_mutex_lock(&s->lock);
	for (uint64_t g = 0; g < ngrains && r == 0; g++) {
		uint32_t e;

		if (s->gd[g / VMDK_GTES] == 0) {
			g += VMDK_GTES - 1 - g % VMDK_GTES; /* no grain table: none allocated */
			continue;
		}
		r = gt_entry(s, g, &e);
		if (r < 0 || e == 0 || (e == 1 && (s->flags & VMDK_FLAG_ZERO_GRAIN))) {
			continue;
		}
		res->allocated_clusters++;
		if ((uint64_t)e * 512 + (s->compressed ? 512 : s->grain_bytes) > file_len) {
			res->corruptions++;
		}
	}
	res->total_clusters = ngrains;
	res->image_end_offset = file_len;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* QEMU's layout: header, descriptor (20 sectors), RGD, redundant GTs, GD, GTs, grains. */
static int vmdk_create(const char *filename, uint64_t size, json_t *opts, struct error **errp)
{
	bool stream = false;
	uint64_t capacity, grain = 128, gt_count, gd_sectors, gt_sectors = 4, rgd, gd, overhead;
	struct block_node *file = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ char *name = strdup(filename);
	char desc[1024];
	uint32_t cid;
	const char *key;
	json_t *v;
	int r, dl;

	json_object_foreach (opts, key, v) {
		const char *val = json_string_value(v);

		if (strcmp(key, "size") == 0) {
			continue;
		}
		if (!val) {
			return error_set(errp, EINVAL, "VMDK option '%s' must be a string", key);
		}
		if (strcmp(key, "subformat") == 0 && strcmp(val, "monolithicSparse") == 0) {
			stream = false;
		} else if (strcmp(key, "subformat") == 0 && strcmp(val, "streamOptimized") == 0) {
			stream = true;
		} else if (strcmp(key, "subformat") == 0) {
			return error_set(errp, ENOTSUP,
					 "VMDK subformat '%s' is not supported (monolithicSparse, "
					 "streamOptimized)",
					 val);
		} else if ((strcmp(key, "compat6") == 0 || strcmp(key, "zeroed_grain") == 0) &&
			   strcmp(val, "off") == 0) {
			continue;
		} else if (strcmp(key, "adapter_type") == 0 && strcmp(val, "ide") == 0) {
			continue;
		} else if (strcmp(key, "preallocation") == 0 && strcmp(val, "off") == 0) {
			continue;
		} else {
			return error_set(errp, EINVAL, "invalid option '%s' for format 'vmdk'",
					 key);
		}
	}
	capacity = DIV_ROUND_UP(size, 512);
	if (!name) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (capacity == 0 || capacity > (1ull << 32) * 512) {
		return error_set(errp, EINVAL, "VMDK size %" PRIu64 " is zero or too large", size);
	}
	gt_count = DIV_ROUND_UP(capacity, VMDK_GTES * grain);
	gd_sectors = DIV_ROUND_UP(gt_count * 4, 512);
	rgd = 21;
	gd = rgd + gd_sectors + gt_count * gt_sectors;
	overhead = ALIGN_UP(gd + gd_sectors + gt_count * gt_sectors, grain);
	if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid)) {
		cid = (uint32_t)rand();
	}
	dl = snprintf(desc, sizeof(desc),
		      "# Disk DescriptorFile\nversion=1\nCID=%08" PRIx32 "\nparentCID=ffffffff\n"
		      "createType=\"%s\"\n\n# Extent description\nRW %" PRIu64
		      " SPARSE \"%s\"\n\n# The Disk Data Base\n#DDB\n\n"
		      "ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"%" PRIu64 "\"\n"
		      "ddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\n"
		      "ddb.adapterType = \"ide\"\nddb.toolsVersion = \"2147483647\"\n",
		      cid, stream ? "streamOptimized" : "monolithicSparse", capacity,
		      basename(name), capacity / (63 * 16));
	if (dl < 0 || (size_t)dl >= 20 * 512 || (size_t)dl >= sizeof(desc)) {
		return error_set(errp, EINVAL, "VMDK descriptor for '%s' is too long", filename);
	}
	buf = calloc(overhead, 512);
	if (!buf) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	put_le32(buf, VMDK4_MAGIC);
	put_le32(buf + 4, stream ? 3 : 1);
	put_le32(buf + 8, VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD |
				  (stream ? VMDK_FLAG_COMPRESS | VMDK_FLAG_MARKER : 0));
	put_le64(buf + 12, capacity);
	put_le64(buf + 20, grain);
	put_le64(buf + 28, 1);
	put_le64(buf + 36, 20);
	put_le32(buf + 44, VMDK_GTES);
	put_le64(buf + 48, rgd);
	put_le64(buf + 56, gd);
	put_le64(buf + 64, overhead);
	buf[72] = 0;
	buf[73] = '\n';
	buf[74] = ' ';
	buf[75] = '\r';
	buf[76] = '\n';
	put_le16(buf + 77, stream ? 1 : 0);
	memcpy(buf + 512, desc, (size_t)dl);
	for (uint64_t i = 0; i < gt_count; i++) {
		put_le32(buf + rgd * 512 + 4 * i, (uint32_t)(rgd + gd_sectors + i * gt_sectors));
		put_le32(buf + gd * 512 + 4 * i, (uint32_t)(gd + gd_sectors + i * gt_sectors));
	}
	r = block_create("raw", filename, overhead * 512, NULL, errp);
	if (r == 0) {
		r = block_open(&file, filename, "raw", BLOCK_O_RDWR, errp);
	}
	if (r < 0) {
		return r;
	}
	r = block_pwrite(file, 0, buf, overhead * 512);
	if (r == 0) {
		r = block_flush(file);
	}
	block_unref(file);
	if (r < 0) {
		return error_set_errno(errp, r, "could not write VMDK image '%s'", filename);
	}
	return 0;
}

const struct block_driver vmdk_driver = {
	.name = "vmdk",
	.probe = vmdk_probe,
	.create = vmdk_create,
	.open = vmdk_open,
	.close = vmdk_close,
	.get_length = vmdk_get_length,
	.preadv = vmdk_preadv,
	.pwritev = vmdk_pwritev,
	.block_status = vmdk_block_status,
	.check = vmdk_check,
	.info = vmdk_info,
};
