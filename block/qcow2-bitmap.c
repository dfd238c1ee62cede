/*
 * qcow2 persistent dirty bitmaps: the "Bitmaps" header extension, the
 * bitmap directory, bitmap tables and bitmap data clusters, as QEMU's
 * docs/interop/qcow2.txt describes them.
 *
 * vmmd does not track guest writes in these bitmaps: a read-write open
 * without BLOCK_O_BITMAPS (which only vmm-img bitmap and check -r pass)
 * clears autoclear bit 0 (qcow2.c), which marks them stale. This file serves vmm-img bitmap (add, remove, clear,
 * enable, disable, merge on an image no guest writes to) and vmm-img info.
 *
 * Every value read from the image is bounded before use: a hostile image
 * gives an error, never a read past a buffer or an unbounded allocation.
 * Changes are crash-safe in QEMU's order: new tables and data first, then
 * the new directory, then the header that points to it, then the old
 * clusters are freed (a crash leaks clusters at worst).
 *
 * Threads: called with s->lock free (it is taken here); vmm-img only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "common/bytes.h"

#define BME_ENTRY_HDR 24
#define BME_TYPE_DIRTY 1
#define BME_MIN_GRAN_BITS 9
#define BME_MAX_GRAN_BITS 31
#define BME_MAX_NAME 1023
#define BME_MAX_BITMAPS 65535
#define BME_MAX_DIR_SIZE (64u << 20)
/* QEMU's limit on one bitmap's data (BME_MAX_PHYS_SIZE): bounds our buffers too */
#define BME_MAX_DATA (512u << 20)
#define BME_MAX_EXTRA (64u << 10)
#define BME_TABLE_RESERVED UINT64_C(0xff000000000001fe)
#define BME_TABLE_ALL_ONES 1u

static struct qcow2_unknown_ext *find_ext(struct qcow2_state *s)
{
	for (unsigned i = 0; i < s->n_unknown_exts; i++) {
		if (s->unknown_exts[i].type == QCOW2_EXT_BITMAPS) {
			return &s->unknown_exts[i];
		}
	}
	return NULL;
}

/* Bytes of bitmap data for @size bytes of disk at 2^@gbits bytes per bit. */
static uint64_t data_bytes(uint64_t size, uint32_t gbits)
{
	uint64_t bits = (size >> gbits) + ((size & ((1ull << gbits) - 1)) ? 1 : 0);

	return DIV_ROUND_UP(bits, 8);
}

static uint64_t table_entries(struct qcow2_state *s, uint32_t gbits)
{
	return DIV_ROUND_UP(data_bytes(s->size, gbits), s->cluster_size);
}

static void bitmap_free_one(struct qcow2_bitmap *bm)
{
	free(bm->name);
	free(bm->extra);
}

void qcow2_bitmaps_free(struct qcow2_state *s)
{
	for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
		bitmap_free_one(&s->bitmaps[i]);
	}
	free(s->bitmaps);
	s->bitmaps = NULL;
	s->nb_bitmaps = 0;
	s->bitmap_dir_offset = s->bitmap_dir_size = 0;
}

static uint64_t entry_size(uint32_t name_len, uint32_t extra)
{
	return ALIGN_UP((uint64_t)BME_ENTRY_HDR + extra + name_len, 8);
}

static int parse_dir(struct qcow2_state *s, const uint8_t *dir, uint64_t dir_size, uint32_t nb,
		     struct error **errp)
{
	uint64_t p = 0, file_len = qcow2_file_length(s);

	s->bitmaps = calloc(nb, sizeof(*s->bitmaps));
	if (!s->bitmaps) {
		return error_set(errp, ENOMEM, "out of memory for the bitmap directory");
	}
	for (uint32_t i = 0; i < nb; i++) {
		struct qcow2_bitmap *bm = &s->bitmaps[i];
		uint32_t name_len, type;
		uint64_t len;

		if (dir_size - p < BME_ENTRY_HDR) {
			return error_set(errp, EINVAL, "bitmap directory is truncated at entry %u",
					 i);
		}
		bm->table_offset = be64(dir + p);
		bm->table_size = be32(dir + p + 8);
		bm->flags = be32(dir + p + 12);
		type = dir[p + 16];
		bm->granularity_bits = dir[p + 17];
		name_len = be32(dir + p + 18) >> 16;
		bm->extra_size = be32(dir + p + 20);
		if (bm->extra_size > BME_MAX_EXTRA || name_len == 0 || name_len > BME_MAX_NAME) {
			return error_set(
				errp, EINVAL,
				"bitmap directory entry %u: invalid name (%u bytes) or extra "
				"data (%u bytes)",
				i, name_len, bm->extra_size);
		}
		len = entry_size(name_len, bm->extra_size);
		if (len > dir_size - p) {
			return error_set(errp, EINVAL, "bitmap directory entry %u is truncated", i);
		}
		if (bm->extra_size && !(bm->flags & QCOW2_BME_EXTRA_COMPAT)) {
			return error_set(errp, ENOTSUP,
					 "bitmap directory entry %u: extra data is not supported",
					 i);
		}
		bm->name =
			strndup((const char *)dir + p + BME_ENTRY_HDR + bm->extra_size, name_len);
		if (!bm->name) {
			return error_set(errp, ENOMEM, "out of memory for the bitmap directory");
		}
		s->nb_bitmaps = i + 1; /* freed from here on */
		if (strlen(bm->name) != name_len) {
			return error_set(errp, EINVAL, "bitmap directory entry %u: NUL in the name",
					 i);
		}
		if (bm->extra_size) {
			bm->extra = malloc(bm->extra_size);
			if (!bm->extra) {
				return error_set(errp, ENOMEM, "out of memory for bitmap '%s'",
						 bm->name);
			}
			memcpy(bm->extra, dir + p + BME_ENTRY_HDR, bm->extra_size);
		}
		if (bm->flags & ~(QCOW2_BME_IN_USE | QCOW2_BME_AUTO | QCOW2_BME_EXTRA_COMPAT) ||
		    type != BME_TYPE_DIRTY || bm->granularity_bits < BME_MIN_GRAN_BITS ||
		    bm->granularity_bits > BME_MAX_GRAN_BITS ||
		    data_bytes(s->size, bm->granularity_bits) > BME_MAX_DATA ||
		    bm->table_size != table_entries(s, bm->granularity_bits) || !bm->table_offset ||
		    bm->table_offset & (s->cluster_size - 1) ||
		    !range_within(bm->table_offset, (uint64_t)bm->table_size * 8, file_len)) {
			return error_set(errp, EINVAL,
					 "Bitmap '%s' doesn't satisfy the constraints", bm->name);
		}
		for (uint32_t k = 0; k < i; k++) {
			if (!strcmp(s->bitmaps[k].name, bm->name)) {
				return error_set(errp, EINVAL,
						 "bitmap directory: two bitmaps named '%s'",
						 bm->name);
			}
		}
		p += len;
	}
	if (p != dir_size) {
		return error_set(errp, EINVAL,
				 "Broken bitmap directory (%" PRIu64
				 " bytes, entries end at %" PRIu64 ")",
				 dir_size, p);
	}
	return 0;
}

int qcow2_bitmaps_load(struct qcow2_state *s, struct error **errp)
{
	struct qcow2_unknown_ext *x = find_ext(s);
	const uint8_t *d;
	_cleanup_free_ uint8_t *dir = NULL;
	uint64_t dir_size, dir_off;
	uint32_t nb;
	int ret;

	if (!x || !(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
		return 0;
	}
	d = x->data;
	if (x->len != 24) {
		return error_set(errp, EINVAL, "bitmaps_ext: Invalid extension length");
	}
	nb = be32(d);
	dir_size = be64(d + 8);
	dir_off = be64(d + 16);
	if (be32(d + 4)) {
		return error_set(errp, EINVAL, "bitmaps_ext: Reserved field is not zero");
	}
	if (nb == 0) {
		return error_set(errp, EINVAL, "found bitmaps extension with zero bitmaps");
	}
	if (nb > BME_MAX_BITMAPS) {
		return error_set(errp, EINVAL,
				 "bitmaps_ext: Image has %u bitmaps, exceeding the QEMU supported "
				 "maximum of %d",
				 nb, BME_MAX_BITMAPS);
	}
	if (dir_size > BME_MAX_DIR_SIZE || dir_size < (uint64_t)nb * BME_ENTRY_HDR) {
		return error_set(errp, EINVAL,
				 "bitmaps_ext: bitmap directory size (%" PRIu64
				 ") is invalid for %u bitmaps (maximum %u)",
				 dir_size, nb, BME_MAX_DIR_SIZE);
	}
	if (!dir_off || dir_off & (s->cluster_size - 1) ||
	    !range_within(dir_off, dir_size, qcow2_file_length(s))) {
		return error_set(errp, EINVAL, "bitmaps_ext: invalid bitmap directory offset");
	}
	dir = malloc(dir_size);
	if (!dir) {
		return error_set(errp, ENOMEM, "out of memory for the bitmap directory");
	}
	ret = qcow2_file_pread(s, dir_off, dir, dir_size);
	if (ret < 0) {
		return error_set_errno(errp, -ret, "cannot read the bitmap directory");
	}
	ret = parse_dir(s, dir, dir_size, nb, errp);
	if (ret < 0) {
		qcow2_bitmaps_free(s);
		return ret;
	}
	s->bitmap_dir_offset = dir_off;
	s->bitmap_dir_size = dir_size;
	return 0;
}

json_t *qcow2_bitmaps_json(struct qcow2_state *s)
{
	json_t *list;

	if (!s->nb_bitmaps) {
		return NULL;
	}
	list = json_array();
	for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
		const struct qcow2_bitmap *bm = &s->bitmaps[i];
		json_t *flags = json_array();

		if (bm->flags & QCOW2_BME_IN_USE) {
			json_array_append_new(flags, json_string("in-use"));
		}
		if (bm->flags & QCOW2_BME_AUTO) {
			json_array_append_new(flags, json_string("auto"));
		}
		json_array_append_new(list, json_pack("{s:o, s:s, s:I}", "flags", flags, "name",
						      bm->name, "granularity",
						      (json_int_t)(1ull << bm->granularity_bits)));
	}
	return list;
}

static struct qcow2_bitmap *find_bitmap(struct qcow2_state *s, const char *name)
{
	for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
		if (!strcmp(s->bitmaps[i].name, name)) {
			return &s->bitmaps[i];
		}
	}
	return NULL;
}

/* Read and check @bm's table: *ret (host order) has bm->table_size entries. */
static int read_table(struct qcow2_state *s, const struct qcow2_bitmap *bm, uint64_t **ret)
{
	uint64_t n = bm->table_size, file_len = qcow2_file_length(s);
	uint64_t *t = malloc(MAX(n, 1) * 8);
	int r;

	if (!t) {
		return -ENOMEM;
	}
	r = qcow2_file_pread(s, bm->table_offset, t, n * 8);
	if (r < 0) {
		free(t);
		return r;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t e = be64((const uint8_t *)&t[i]), off = e & QCOW2_OFFSET_MASK;

		if (e & BME_TABLE_RESERVED || (off && e & BME_TABLE_ALL_ONES) ||
		    (off && !range_within(off, s->cluster_size, file_len)) ||
		    off & (s->cluster_size - 1)) {
			/* the op fails; the image stays usable (the bitmap can be removed) */
			free(t);
			return -EUCLEAN;
		}
		t[i] = e;
	}
	*ret = t;
	return 0;
}

/* The dense bits of @bm into *ret (data_bytes() long). */
static int read_bits(struct qcow2_state *s, const struct qcow2_bitmap *bm, uint8_t **ret)
{
	uint64_t len = data_bytes(s->size, bm->granularity_bits);
	_cleanup_free_ uint64_t *t = NULL;
	uint8_t *bits = calloc(1, MAX(len, 1));
	int r;

	if (!bits) {
		return -ENOMEM;
	}
	r = read_table(s, bm, &t);
	/* the table was sized for s->size at load; stay inside @bits regardless */
	for (uint64_t i = 0; r == 0 && i < bm->table_size && i * s->cluster_size < len; i++) {
		uint64_t pos = i * s->cluster_size, n = MIN(s->cluster_size, len - pos);

		if (t[i] & QCOW2_OFFSET_MASK) {
			r = qcow2_file_pread(s, t[i] & QCOW2_OFFSET_MASK, bits + pos, n);
		} else if (t[i] & BME_TABLE_ALL_ONES) {
			memset(bits + pos, 0xff, n);
		}
	}
	if (r < 0) {
		free(bits);
		return r;
	}
	/* bits past the disk's end are not part of the bitmap */
	{
		uint64_t nbits = (s->size >> bm->granularity_bits) +
				 ((s->size & ((1ull << bm->granularity_bits) - 1)) ? 1 : 0);

		if (nbits % 8) {
			bits[len - 1] &= (uint8_t)((1u << (nbits % 8)) - 1);
		}
	}
	*ret = bits;
	return 0;
}

/* Drop the references of @bm's table and data clusters. */
static int free_clusters(struct qcow2_state *s, const struct qcow2_bitmap *bm)
{
	_cleanup_free_ uint64_t *t = NULL;
	int r = read_table(s, bm, &t);

	for (uint64_t i = 0; r == 0 && i < bm->table_size; i++) {
		if (t[i] & QCOW2_OFFSET_MASK) {
			r = qcow2_update_refcount(s, t[i] & QCOW2_OFFSET_MASK, s->cluster_size, -1);
		}
	}
	if (r == 0) {
		r = qcow2_update_refcount(s, bm->table_offset, MAX((uint64_t)bm->table_size * 8, 1),
					  -1);
	}
	return r;
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if (p[i]) {
			return false;
		}
	}
	return true;
}

/*
 * Write @bits as a new table and data clusters; *ret_off is the table's
 * offset. Only clusters with a set bit get a data cluster.
 */
static int write_bits(struct qcow2_state *s, uint32_t gbits, const uint8_t *bits, uint64_t *ret_off)
{
	uint64_t len = data_bytes(s->size, gbits), n = table_entries(s, gbits);
	_cleanup_free_ uint8_t *t = calloc(1, MAX(n, 1) * 8);
	_cleanup_free_ uint8_t *cbuf = calloc(1, s->cluster_size);
	int64_t toff;
	int r;

	if (!t || !cbuf) {
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pos = i * s->cluster_size, cn = MIN(s->cluster_size, len - pos);
		int64_t off;

		if (all_zero(bits + pos, cn)) {
			continue;
		}
		off = qcow2_alloc_clusters(s, 1);
		if (off < 0) {
			return (int)off;
		}
		memset(cbuf, 0, s->cluster_size);
		memcpy(cbuf, bits + pos, cn);
		r = qcow2_file_pwrite(s, (uint64_t)off, cbuf, s->cluster_size);
		if (r < 0) {
			return r;
		}
		put_be64(t + 8 * i, (uint64_t)off);
	}
	toff = qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, MAX(n * 8, 1)));
	if (toff < 0) {
		return (int)toff;
	}
	r = qcow2_file_pwrite(s, (uint64_t)toff, t, n * 8);
	if (r < 0) {
		return r;
	}
	*ret_off = (uint64_t)toff;
	return 0;
}

/*
 * Write the directory of @bms (@nb entries) and point the header at it;
 * on success the old directory's clusters are freed and s->bitmaps is
 * @bms (the caller's array, now owned here).
 */
static int commit_dir(struct qcow2_state *s, struct qcow2_bitmap *bms, uint32_t nb)
{
	uint64_t size = 0, p = 0, old_off = s->bitmap_dir_offset, old_size = s->bitmap_dir_size;
	uint64_t old_autoclear = s->autoclear;
	_cleanup_free_ uint8_t *dir = NULL;
	struct qcow2_unknown_ext *x = find_ext(s);
	uint8_t old_ext[24] = {0};
	int64_t off = 0;
	int r;

	for (uint32_t i = 0; i < nb; i++) {
		size += entry_size((uint32_t)strlen(bms[i].name), bms[i].extra_size);
	}
	if (size > BME_MAX_DIR_SIZE) {
		return -EFBIG;
	}
	/* tables, data and refcounts reach the disk before anything points to them */
	r = qcow2_cache_flush(s, &s->rb_cache);
	if (r < 0) {
		return r;
	}
	if (nb) {
		dir = calloc(1, size);
		if (!dir) {
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < nb; i++) {
			uint32_t nl = (uint32_t)strlen(bms[i].name);

			put_be64(dir + p, bms[i].table_offset);
			put_be32(dir + p + 8, bms[i].table_size);
			put_be32(dir + p + 12, bms[i].flags);
			dir[p + 16] = BME_TYPE_DIRTY;
			dir[p + 17] = (uint8_t)bms[i].granularity_bits;
			put_be16(dir + p + 18, (uint16_t)nl);
			put_be32(dir + p + 20, bms[i].extra_size);
			if (bms[i].extra_size) {
				memcpy(dir + p + BME_ENTRY_HDR, bms[i].extra, bms[i].extra_size);
			}
			memcpy(dir + p + BME_ENTRY_HDR + bms[i].extra_size, bms[i].name, nl);
			p += entry_size(nl, bms[i].extra_size);
		}
		off = qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, size));
		if (off < 0) {
			return (int)off;
		}
		r = qcow2_cache_flush(s, &s->rb_cache);
		if (r == 0) {
			r = qcow2_file_pwrite(s, (uint64_t)off, dir, size);
		}
		if (r == 0) {
			r = qcow2_file_flush(s);
		}
		if (r < 0) {
			return r;
		}
	}
	/* the extension: updated in place, added or dropped */
	if (nb && !x) {
		struct qcow2_unknown_ext *nx;

		if (s->n_unknown_exts >= QCOW2_MAX_HEADER_EXTS) {
			return -ENOSPC;
		}
		nx = realloc(s->unknown_exts, (s->n_unknown_exts + 1) * sizeof(*nx));
		if (!nx) {
			return -ENOMEM;
		}
		s->unknown_exts = nx;
		x = &nx[s->n_unknown_exts];
		x->data = calloc(1, 24);
		if (!x->data) {
			return -ENOMEM;
		}
		x->type = QCOW2_EXT_BITMAPS;
		x->len = 24;
		s->n_unknown_exts++;
	} else if (x) {
		memcpy(old_ext, x->data, MIN(x->len, 24u));
		if (x->len != 24) {
			/* a stale extension (bit 0 clear) of another length: ours replaces it */
			void *d = realloc(x->data, 24);

			if (!d) {
				return -ENOMEM;
			}
			x->data = d;
			x->len = 24;
		}
	}
	if (nb) {
		put_be32(x->data, nb);
		put_be32((uint8_t *)x->data + 4, 0);
		put_be64((uint8_t *)x->data + 8, size);
		put_be64((uint8_t *)x->data + 16, (uint64_t)off);
		s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
	} else {
		s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
		if (x) {
			free(x->data);
			*x = s->unknown_exts[--s->n_unknown_exts];
			x = NULL;
		}
	}
	r = qcow2_update_header(s);
	if (r == 0) {
		r = qcow2_file_flush(s);
	}
	if (r < 0) {
		/* the old header may still be on disk: keep describing it */
		s->autoclear = old_autoclear;
		if (x) {
			memcpy(x->data, old_ext, 24);
		}
		return r;
	}
	if (old_off && old_size) {
		r = qcow2_update_refcount(s, old_off, old_size, -1);
	}
	/* entries left out (remove) are the caller's to free */
	if (s->bitmaps != bms) {
		free(s->bitmaps);
	}
	s->bitmaps = bms;
	s->nb_bitmaps = nb;
	s->bitmap_dir_offset = nb ? (uint64_t)off : 0;
	s->bitmap_dir_size = nb ? size : 0;
	if (r == 0) {
		r = qcow2_flush_all(s);
	}
	return r;
}

/* A copy of the directory array (sharing names and extra data) for commit_dir. */
static struct qcow2_bitmap *copy_dir(struct qcow2_state *s, uint32_t extra_slots)
{
	struct qcow2_bitmap *b = calloc(s->nb_bitmaps + extra_slots, sizeof(*b));

	if (b && s->nb_bitmaps) {
		memcpy(b, s->bitmaps, s->nb_bitmaps * sizeof(*b));
	}
	return b;
}

static int check_usable(struct qcow2_bitmap *bm, struct error **errp)
{
	if (bm->flags & QCOW2_BME_IN_USE) {
		return error_set(errp, EBUSY,
				 "Bitmap '%s' is inconsistent and cannot be used\n"
				 "Try block-dirty-bitmap-remove to delete this bitmap from disk",
				 bm->name);
	}
	return 0;
}

static int add_bitmap(struct block_node *bs, struct qcow2_state *s,
		      const struct block_bitmap_req *req, struct error **errp)
{
	uint64_t g = req->granularity;
	struct qcow2_bitmap *bms, *bm;
	uint32_t gbits = 0;
	size_t nl = strlen(req->name);
	int r;

	if (!g) {
		g = MIN(MAX(s->cluster_size, 4096u), 65536u);
	}
	if (g < 512 || g & (g - 1) || g > (1ull << BME_MAX_GRAN_BITS)) {
		return error_set(errp, EINVAL, "Granularity must be power of 2 and at least 512");
	}
	while ((1ull << gbits) < g) {
		gbits++;
	}
	if (s->version < 3) {
		return error_set(errp, ENOTSUP,
				 "Can't make bitmap '%s' persistent in '%s': Cannot store dirty "
				 "bitmaps in qcow2 v2 files",
				 req->name, bs->node_name ? bs->node_name : bs->filename);
	}
	if (s->nb_bitmaps >= BME_MAX_BITMAPS) {
		return error_set(errp, ENOSPC,
				 "Can't make bitmap '%s' persistent in '%s': Maximum number of "
				 "persistent bitmaps is already reached",
				 req->name, bs->node_name ? bs->node_name : bs->filename);
	}
	if (nl > BME_MAX_NAME) {
		return error_set(errp, EINVAL,
				 "Can't make bitmap '%s' persistent in '%s': Name length exceeds "
				 "maximum (%u characters)",
				 req->name, bs->node_name ? bs->node_name : bs->filename,
				 BME_MAX_NAME);
	}
	if (s->bitmap_dir_size + entry_size((uint32_t)nl, 0) > BME_MAX_DIR_SIZE) {
		return error_set(errp, ENOSPC,
				 "Can't make bitmap '%s' persistent in '%s': Not enough space in "
				 "the bitmap directory",
				 req->name, bs->node_name ? bs->node_name : bs->filename);
	}
	if (data_bytes(s->size, gbits) > BME_MAX_DATA) {
		return error_set(errp, EFBIG,
				 "Can't make bitmap '%s' persistent in '%s': Too much space will "
				 "be occupied by the bitmap. Use larger granularity",
				 req->name, bs->node_name ? bs->node_name : bs->filename);
	}
	if (find_bitmap(s, req->name)) {
		return error_set(errp, EEXIST, "Bitmap already exists: %s", req->name);
	}
	bms = copy_dir(s, 1);
	if (!bms) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	bm = &bms[s->nb_bitmaps];
	bm->name = strdup(req->name);
	bm->granularity_bits = gbits;
	bm->flags = QCOW2_BME_AUTO;
	bm->table_size = (uint32_t)table_entries(s, gbits);
	{
		_cleanup_free_ uint8_t *zero = calloc(1, MAX(data_bytes(s->size, gbits), 1));

		r = bm->name && zero ? write_bits(s, gbits, zero, &bm->table_offset) : -ENOMEM;
	}
	if (r == 0) {
		r = commit_dir(s, bms, s->nb_bitmaps + 1);
	}
	if (r < 0) {
		if (s->bitmaps != bms) {
			free(bm->name);
			free(bms);
		}
		return error_set_errno(errp, -r, "cannot write bitmap '%s'", req->name);
	}
	return 0;
}

/* Replace @bm's data by @bits (new clusters; the old ones are freed after). */
static int replace_bits(struct qcow2_state *s, struct qcow2_bitmap *bm, const uint8_t *bits)
{
	struct qcow2_bitmap old = *bm, *bms;
	uint32_t idx = (uint32_t)(bm - s->bitmaps);
	int r;

	bms = copy_dir(s, 0);
	if (!bms) {
		return -ENOMEM;
	}
	r = write_bits(s, bm->granularity_bits, bits, &bms[idx].table_offset);
	if (r == 0) {
		r = commit_dir(s, bms, s->nb_bitmaps);
	}
	if (r < 0) {
		if (s->bitmaps != bms) {
			free(bms);
		}
		return r;
	}
	r = free_clusters(s, &old);
	return r == 0 ? qcow2_flush_all(s) : r;
}

static int merge_bits(struct qcow2_state *s, struct qcow2_bitmap *bm, uint8_t *dst,
		      const struct block_bitmap_data *src)
{
	uint64_t gd = 1ull << bm->granularity_bits, gs = src->granularity;
	uint64_t len = DIV_ROUND_UP(DIV_ROUND_UP(src->size, gs), 8);

	(void)s;
	for (uint64_t byte = 0; byte < len; byte++) {
		if (!src->bits[byte]) {
			continue;
		}
		for (unsigned b = 0; b < 8; b++) {
			uint64_t i = byte * 8 + b, start, end;

			if (!(src->bits[byte] & (1u << b)) || i * gs >= src->size) {
				continue;
			}
			start = i * gs;
			end = MIN(start + gs, src->size);
			for (uint64_t j = start / gd; j <= (end - 1) / gd; j++) {
				dst[j / 8] |= (uint8_t)(1u << (j % 8));
			}
		}
	}
	return 0;
}

int qcow2_bitmap_op(struct block_node *bs, const struct block_bitmap_req *req, struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	struct block_bitmap_data src = {0};
	struct qcow2_bitmap *bm;
	_cleanup_free_ uint8_t *bits = NULL;
	int r = 0;

	if (req->action == BLOCK_BITMAP_MERGE) {
		/* the source first, lock free: it may be this very node */
		pthread_mutex_lock(&s->lock);
		bm = find_bitmap(s, req->name);
		pthread_mutex_unlock(&s->lock);
		if (!bm) {
			return error_set(errp, ENOENT, "Dirty bitmap '%s' not found", req->name);
		}
		r = block_bitmap_read(req->src, req->src_name, &src, errp);
		if (r < 0) {
			return r;
		}
	}
	pthread_mutex_lock(&s->lock);
	if (s->corrupt || !s->writable) {
		r = error_set(errp, EIO, "'%s' is marked corrupt or read-only", bs->filename);
		goto out;
	}
	if (req->action == BLOCK_BITMAP_ADD) {
		r = add_bitmap(bs, s, req, errp);
		goto out;
	}
	bm = find_bitmap(s, req->name);
	if (!bm) {
		r = error_set(errp, ENOENT, "Dirty bitmap '%s' not found", req->name);
		goto out;
	}
	switch (req->action) {
	case BLOCK_BITMAP_REMOVE: {
		struct qcow2_bitmap old = *bm, *bms = copy_dir(s, 0);
		uint32_t idx = (uint32_t)(bm - s->bitmaps);

		if (!bms) {
			r = -ENOMEM;
			break;
		}
		memmove(&bms[idx], &bms[idx + 1], (s->nb_bitmaps - idx - 1) * sizeof(*bms));
		r = commit_dir(s, bms, s->nb_bitmaps - 1);
		if (r < 0) {
			if (s->bitmaps != bms) {
				free(bms);
			}
			break;
		}
		r = free_clusters(s, &old);
		if (r == -EUCLEAN) {
			r = 0; /* a broken table: its clusters leak (check -r frees them) */
		}
		bitmap_free_one(&old);
		if (r == 0) {
			r = qcow2_flush_all(s);
		}
		break;
	}
	case BLOCK_BITMAP_CLEAR:
		if ((r = check_usable(bm, errp)) < 0) {
			goto out;
		}
		bits = calloc(1, MAX(data_bytes(s->size, bm->granularity_bits), 1));
		r = bits ? replace_bits(s, bm, bits) : -ENOMEM;
		break;
	case BLOCK_BITMAP_ENABLE:
	case BLOCK_BITMAP_DISABLE: {
		struct qcow2_bitmap *bms;
		uint32_t idx = (uint32_t)(bm - s->bitmaps);

		if ((r = check_usable(bm, errp)) < 0) {
			goto out;
		}
		bms = copy_dir(s, 0);
		if (!bms) {
			r = -ENOMEM;
			break;
		}
		if (req->action == BLOCK_BITMAP_ENABLE) {
			bms[idx].flags |= QCOW2_BME_AUTO;
		} else {
			bms[idx].flags &= ~QCOW2_BME_AUTO;
		}
		r = commit_dir(s, bms, s->nb_bitmaps);
		if (r < 0 && s->bitmaps != bms) {
			free(bms);
		}
		break;
	}
	case BLOCK_BITMAP_MERGE:
		if ((r = check_usable(bm, errp)) < 0) {
			goto out;
		}
		if (src.size != s->size) {
			r = error_set(errp, EINVAL,
				      "Bitmaps are of different sizes (destination size is %" PRIu64
				      ", source size is %" PRIu64 ") and can't be merged",
				      s->size, src.size);
			goto out;
		}
		r = read_bits(s, bm, &bits);
		if (r == 0) {
			merge_bits(s, bm, bits, &src);
			r = replace_bits(s, bm, bits);
		}
		break;
	default:
		r = error_set(errp, EINVAL, "unknown bitmap action");
		goto out;
	}
	if (r < 0) {
		r = error_set_errno(errp, -r, "cannot update bitmap '%s'", req->name);
	}
out:
	pthread_mutex_unlock(&s->lock);
	free(src.bits);
	return r;
}

int qcow2_bitmap_read(struct block_node *bs, const char *name, struct block_bitmap_data *ret,
		      struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	struct qcow2_bitmap *bm;
	int r;

	pthread_mutex_lock(&s->lock);
	bm = find_bitmap(s, name);
	if (!bm) {
		r = error_set(errp, ENOENT, "Dirty bitmap '%s' not found", name);
	} else if ((r = check_usable(bm, errp)) == 0) {
		r = read_bits(s, bm, &ret->bits);
		if (r < 0) {
			r = error_set_errno(errp, -r, "cannot read bitmap '%s'", name);
		} else {
			ret->granularity = 1ull << bm->granularity_bits;
			ret->size = s->size;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}
