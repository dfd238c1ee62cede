/*
 * qcow2 internal snapshots: the snapshot table (read bounded, written
 * whole to new clusters and switched in the header), and create / apply /
 * delete / list. A snapshot is a copy of the active L1 table; taking one
 * adds a reference to every L2 table and data cluster it reaches, so later
 * writes copy on write.
 *
 * Ordering: references are added and synced before anything points at
 * them; they are dropped only after the table or header that used them is
 * synced, so an interrupted operation leaves leaks at most.
 *
 * Threads: the block_driver ops take s->io_lock exclusively and s->lock.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2.h"

#define SN_HEADER 40

void qcow2_snapshots_free(struct qcow2_state *s)
{
	for (uint32_t i = 0; i < s->nb_snapshots && s->snapshots; i++) {
		free(s->snapshots[i].id);
		free(s->snapshots[i].name);
		free(s->snapshots[i].extra);
	}
	free(s->snapshots);
	s->snapshots = NULL;
}

int qcow2_snapshots_load(struct qcow2_state *s, struct error **errp)
{
	uint64_t pos = s->snapshots_offset, file_len = qcow2_file_length(s);
	uint8_t h[SN_HEADER];
	int ret;

	s->snapshots_size = 0;
	if (!s->nb_snapshots) {
		return 0;
	}
	s->snapshots = calloc(s->nb_snapshots, sizeof(*s->snapshots));
	if (!s->snapshots) {
		return error_set(errp, ENOMEM, "out of memory for %u snapshots", s->nb_snapshots);
	}
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		struct qcow2_snapshot *sn = &s->snapshots[i];
		uint32_t extra, id_len, name_len;
		uint64_t ent;
		_cleanup_free_ uint8_t *var = NULL;

		if (!range_within(pos, SN_HEADER, file_len)) {
			return error_set(errp, EINVAL,
					 "snapshot table runs past the end of the image");
		}
		ret = qcow2_file_pread(s, pos, h, SN_HEADER);
		if (ret < 0) {
			return error_set_errno(errp, -ret, "cannot read the snapshot table");
		}
		sn->l1_table_offset = qcow2_be64(h);
		sn->l1_size = qcow2_be32(h + 8);
		id_len = qcow2_be16(h + 12);
		name_len = qcow2_be16(h + 14);
		sn->date_sec = qcow2_be32(h + 16);
		sn->date_nsec = qcow2_be32(h + 20);
		sn->vm_clock_nsec = qcow2_be64(h + 24);
		sn->vm_state_size = qcow2_be32(h + 32);
		extra = qcow2_be32(h + 36);
		if (extra > QCOW2_MAX_SNAPSHOT_EXTRA) {
			return error_set(errp, EINVAL,
					 "snapshot %u has too much extra data (%u bytes)", i,
					 extra);
		}
		ent = SN_HEADER + (uint64_t)extra + id_len + name_len;
		if (pos - s->snapshots_offset + ent > QCOW2_MAX_SNAPSHOT_TABLE_BYTES) {
			return error_set(errp, EFBIG, "snapshot table too large (limit %u bytes)",
					 QCOW2_MAX_SNAPSHOT_TABLE_BYTES);
		}
		if (!range_within(pos, ent, file_len)) {
			return error_set(errp, EINVAL,
					 "snapshot table runs past the end of the image");
		}
		var = malloc(ent - SN_HEADER + 1);
		if (!var) {
			return -ENOMEM;
		}
		ret = qcow2_file_pread(s, pos + SN_HEADER, var, ent - SN_HEADER);
		if (ret < 0) {
			return error_set_errno(errp, -ret, "cannot read the snapshot table");
		}
		sn->extra_size = extra;
		if (extra >= 8) {
			sn->vm_state_size = qcow2_be64(var);
		}
		sn->disk_size = extra >= 16 ? qcow2_be64(var + 8) : s->size;
		if (extra > 16) {
			sn->extra = malloc(extra - 16);
			if (!sn->extra) {
				return -ENOMEM;
			}
			memcpy(sn->extra, var + 16, extra - 16);
		}
		sn->id = strndup((char *)var + extra, id_len);
		sn->name = strndup((char *)var + extra + id_len, name_len);
		if (!sn->id || !sn->name) {
			return -ENOMEM;
		}
		if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
			return error_set(errp, EFBIG,
					 "snapshot '%s' has an L1 table too large (%u entries)",
					 sn->name, sn->l1_size);
		}
		if (sn->l1_size &&
		    (sn->l1_table_offset & (s->cluster_size - 1) ||
		     sn->l1_table_offset < s->cluster_size ||
		     !range_within(sn->l1_table_offset, (uint64_t)sn->l1_size * 8, file_len))) {
			return error_set(
				errp, EINVAL,
				"snapshot '%s' has an L1 table outside the image (%#" PRIx64 ")",
				sn->name, sn->l1_table_offset);
		}
		pos += ALIGN_UP(ent, 8);
	}
	s->snapshots_size = pos - s->snapshots_offset;
	return 0;
}

static uint8_t *serialize_table(struct qcow2_state *s, const struct qcow2_snapshot *sns, uint32_t n,
				uint64_t *ret_len)
{
	uint64_t len = 0, p = 0;
	uint8_t *buf;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t extra = MAX(16u, sns[i].extra_size);

		len += ALIGN_UP(SN_HEADER + extra + strlen(sns[i].id) + strlen(sns[i].name), 8);
	}
	buf = qcow2_alloc_buf(s, ALIGN_UP(MAX(len, 1), s->cluster_size));
	if (!buf) {
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct qcow2_snapshot *sn = &sns[i];
		uint32_t extra = MAX(16u, sn->extra_size);
		size_t il = strlen(sn->id), nl = strlen(sn->name);
		uint8_t *e = buf + p;

		qcow2_put_be64(e, sn->l1_table_offset);
		qcow2_put_be32(e + 8, sn->l1_size);
		qcow2_put_be16(e + 12, (uint16_t)il);
		qcow2_put_be16(e + 14, (uint16_t)nl);
		qcow2_put_be32(e + 16, sn->date_sec);
		qcow2_put_be32(e + 20, sn->date_nsec);
		qcow2_put_be64(e + 24, sn->vm_clock_nsec);
		qcow2_put_be32(e + 32, (uint32_t)MIN(sn->vm_state_size, UINT32_MAX));
		qcow2_put_be32(e + 36, extra);
		qcow2_put_be64(e + 40, sn->vm_state_size);
		qcow2_put_be64(e + 48, sn->disk_size);
		if (sn->extra_size > 16) {
			memcpy(e + 56, sn->extra, sn->extra_size - 16);
		}
		memcpy(e + SN_HEADER + extra, sn->id, il);
		memcpy(e + SN_HEADER + extra + il, sn->name, nl);
		p += ALIGN_UP(SN_HEADER + extra + il + nl, 8);
	}
	*ret_len = len;
	return buf;
}

/* Write @sns as the new snapshot table and switch the header to it. */
static int write_table(struct qcow2_state *s, struct qcow2_snapshot *sns, uint32_t n)
{
	uint64_t len = 0, old_off = s->snapshots_offset, old_size = s->snapshots_size;
	uint32_t old_n = s->nb_snapshots;
	_cleanup_free_ uint8_t *buf = serialize_table(s, sns, n, &len);
	int64_t off = 0;
	int ret;

	if (!buf) {
		return -ENOMEM;
	}
	if (n) {
		off = qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, len));
		if (off < 0) {
			return (int)off;
		}
		ret = qcow2_cache_flush(s, &s->rb_cache);
		if (ret < 0) {
			return ret;
		}
		ret = qcow2_file_pwrite(s, (uint64_t)off, buf, ALIGN_UP(len, 512));
		if (ret < 0) {
			return ret;
		}
		ret = qcow2_file_flush(s);
		if (ret < 0) {
			return ret;
		}
	}
	s->snapshots_offset = (uint64_t)off;
	s->nb_snapshots = n;
	s->snapshots_size = len;
	ret = qcow2_update_header(s);
	if (ret == 0) {
		ret = qcow2_file_flush(s);
	}
	if (ret < 0) {
		s->snapshots_offset = old_off;
		s->nb_snapshots = old_n;
		s->snapshots_size = old_size;
		return ret;
	}
	if (old_n && old_size) {
		ret = qcow2_update_refcount(s, old_off, old_size, -1);
	}
	return ret;
}

int qcow2_snapshots_rewrite(struct qcow2_state *s)
{
	return s->nb_snapshots ? write_table(s, s->snapshots, s->nb_snapshots) : 0;
}

static int entry_refcount(struct qcow2_state *s, uint64_t off, uint64_t *ret)
{
	return qcow2_get_refcount(s, off >> s->cluster_bits, ret);
}

int qcow2_update_l1_refcounts(struct qcow2_state *s, const uint64_t *l1, uint32_t l1_size,
			      int delta, bool active)
{
	int ret;

	for (uint32_t i = 0; i < l1_size; i++) {
		uint64_t l2_off = l1[i] & QCOW2_OFFSET_MASK, rc;
		uint64_t *t;
		bool dirty = false;

		if (!l2_off) {
			continue;
		}
		if (l2_off & (s->cluster_size - 1) ||
		    l2_off + s->cluster_size > qcow2_file_length(s)) {
			return qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " is invalid",
						       l2_off);
		}
		ret = qcow2_cache_get(s, &s->l2_cache, l2_off, (void **)&t);
		if (ret < 0) {
			return ret;
		}
		for (uint64_t k = 0; k < s->l2_entries; k++) {
			uint64_t e = qcow2_be64(&t[k]), off, len;

			switch (qcow2_l2_entry_type(s, e)) {
			case QCOW2_CLUSTER_COMPRESSED:
				if (delta) {
					qcow2_compressed_range(s, e, &off, &len);
					ret = qcow2_update_refcount(s, off, len, delta);
				}
				break;
			case QCOW2_CLUSTER_NORMAL:
			case QCOW2_CLUSTER_ZERO_ALLOC:
				off = e & QCOW2_OFFSET_MASK;
				if (delta) {
					ret = qcow2_update_refcount(s, off, s->cluster_size, delta);
				}
				if (ret == 0 && active) {
					uint64_t ne;

					ret = entry_refcount(s, off, &rc);
					ne = rc == 1 ? e | QCOW2_OFLAG_COPIED
						     : e & ~QCOW2_OFLAG_COPIED;
					if (ret == 0 && ne != e) {
						qcow2_put_be64(&t[k], ne);
						dirty = true;
					}
				}
				break;
			default:
				break;
			}
			if (ret < 0) {
				qcow2_cache_put(&s->l2_cache, (void **)&t);
				return ret;
			}
		}
		if (dirty) {
			qcow2_cache_mark_dirty(&s->l2_cache, t);
		}
		qcow2_cache_put(&s->l2_cache, (void **)&t);
		if (delta) {
			ret = qcow2_update_refcount(s, l2_off, s->cluster_size, delta);
			if (ret < 0) {
				return ret;
			}
		}
		if (active) {
			ret = entry_refcount(s, l2_off, &rc);
			if (ret < 0) {
				return ret;
			}
			s->l1_table[i] = rc == 1 ? s->l1_table[i] | QCOW2_OFLAG_COPIED
						 : s->l1_table[i] & ~QCOW2_OFLAG_COPIED;
		}
	}
	return 0;
}

static int write_l1(struct qcow2_state *s, uint64_t off, const uint64_t *l1, uint32_t n)
{
	uint64_t bytes = ALIGN_UP((uint64_t)n * 8, 512);
	_cleanup_free_ uint8_t *buf = qcow2_alloc_buf(s, bytes);

	if (!buf) {
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		qcow2_put_be64(buf + 8 * i, l1[i]);
	}
	return qcow2_file_pwrite(s, off, buf, bytes);
}

static int read_l1(struct qcow2_state *s, uint64_t off, uint32_t n, uint64_t **ret)
{
	_cleanup_free_ uint8_t *buf = qcow2_alloc_buf(s, (uint64_t)n * 8);
	uint64_t *l1 = calloc(MAX(n, 1), sizeof(uint64_t));
	int r;

	if (!buf || !l1) {
		free(l1);
		return -ENOMEM;
	}
	if (n) {
		r = qcow2_file_pread(s, off, buf, ALIGN_UP((uint64_t)n * 8, 512));
		if (r < 0) {
			free(l1);
			return r;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		l1[i] = qcow2_be64(buf + 8 * i);
	}
	*ret = l1;
	return 0;
}

static int find_name(struct qcow2_state *s, const char *name)
{
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		if (!strcmp(s->snapshots[i].name, name)) {
			return (int)i;
		}
	}
	return -1;
}

/* By name, else by id (QEMU's bdrv_snapshot_find). */
static int find_snapshot(struct qcow2_state *s, const char *name)
{
	int found = find_name(s, name);

	if (found >= 0) {
		return found;
	}
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		if (!strcmp(s->snapshots[i].id, name)) {
			return (int)i;
		}
	}
	return -1;
}

static int begin(struct block_node *bs, struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	int ret;

	qcow2_lock_exclusive(s);
	if (!s->writable) {
		ret = error_set(errp, EROFS, "'%s' is read-only", bs->filename);
	} else if (s->corrupt) {
		ret = error_set(errp, EIO, "'%s' is marked corrupt; repair it first", bs->filename);
	} else {
		ret = qcow2_flush_all(s);
		if (ret < 0) {
			error_set_errno(errp, -ret, "cannot flush '%s'", bs->filename);
		}
	}
	return ret;
}

static void end(struct qcow2_state *s)
{
	qcow2_unlock_exclusive(s);
}

uint64_t qcow2_vm_state_offset(struct qcow2_state *s)
{
	uint64_t gran = 1ull << (s->cluster_bits + s->l2_bits);

	return (s->size + gran - 1) / gran * gran;
}

int qcow2_snapshot_create(struct block_node *bs, const char *name,
			  const struct block_snapshot_vm *vm, struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	struct qcow2_snapshot *sns = NULL, *sn;
	uint64_t l1_bytes, max_id = 0;
	int64_t l1_off = 0;
	struct timespec ts;
	char idbuf[32];
	int ret;

	if (!name || !*name || strlen(name) > 65535) {
		return error_set(errp, EINVAL, "invalid snapshot name");
	}
	ret = begin(bs, errp);
	if (ret < 0) {
		goto out;
	}
	/* names and ids are apart, as QEMU's: a name may be another snapshot's id */
	if (find_name(s, name) >= 0) {
		ret = error_set(errp, EEXIST, "snapshot '%s' already exists in '%s'", name,
				bs->filename);
		goto out;
	}
	if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
		ret = error_set(errp, EFBIG, "'%s' already has %d snapshots", bs->filename,
				QCOW2_MAX_SNAPSHOTS);
		goto out;
	}
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		uint64_t v = strtoull(s->snapshots[i].id, NULL, 10);

		max_id = MAX(max_id, v);
	}
	/* 1. every cluster the active table reaches gains a reference (COPIED cleared) */
	ret = qcow2_update_l1_refcounts(s, s->l1_table, s->l1_size, 1, true);
	if (ret < 0) {
		goto fail;
	}
	/* 2. the copy of the L1 table */
	l1_bytes = ALIGN_UP((uint64_t)s->l1_size * 8, s->cluster_size);
	if (s->l1_size) {
		_cleanup_free_ uint64_t *copy = calloc(s->l1_size, sizeof(uint64_t));

		if (!copy) {
			ret = -ENOMEM;
			goto fail;
		}
		l1_off = qcow2_alloc_clusters(s, l1_bytes >> s->cluster_bits);
		if (l1_off < 0) {
			ret = (int)l1_off;
			goto fail;
		}
		for (uint32_t i = 0; i < s->l1_size; i++) {
			copy[i] = s->l1_table[i] & ~QCOW2_OFLAG_COPIED;
		}
		ret = write_l1(s, (uint64_t)l1_off, copy, s->l1_size);
		if (ret < 0) {
			goto fail;
		}
	}
	for (uint32_t i = 0; ret == 0 && i < s->l1_size; i += 64) {
		ret = qcow2_write_l1_entry(s, i);
	}
	if (ret == 0) {
		ret = qcow2_flush_all(s);
	}
	if (ret < 0) {
		goto fail;
	}
	/* 3. the table entry, then the header */
	sns = calloc(s->nb_snapshots + 1, sizeof(*sns));
	if (!sns) {
		ret = -ENOMEM;
		goto fail;
	}
	if (s->nb_snapshots) {
		memcpy(sns, s->snapshots, s->nb_snapshots * sizeof(*sns));
	}
	sn = &sns[s->nb_snapshots];
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(idbuf, sizeof(idbuf), "%" PRIu64, max_id + 1);
	sn->id = strdup(idbuf);
	sn->name = strdup(name);
	sn->l1_table_offset = (uint64_t)l1_off;
	sn->l1_size = s->l1_size;
	sn->date_sec = (uint32_t)ts.tv_sec;
	sn->date_nsec = (uint32_t)ts.tv_nsec;
	if (vm) {
		sn->date_sec = vm->date_sec;
		sn->date_nsec = vm->date_nsec;
		sn->vm_state_size = vm->vm_state_size;
		sn->vm_clock_nsec = vm->vm_clock_ns;
	}
	sn->disk_size = s->size;
	/* the icount field too, 0 as QEMU records it when not replaying */
	sn->extra_size = 24;
	sn->extra = calloc(1, 8);
	if (sn->extra && vm) {
		/* a VM's snapshot records no instruction count: -1, as QEMU's savevm */
		qcow2_put_be64(sn->extra, UINT64_MAX);
	}
	if (!sn->id || !sn->name || !sn->extra) {
		free(sn->extra);
		free(sn->id);
		free(sn->name);
		ret = -ENOMEM;
		goto fail;
	}
	ret = write_table(s, sns, s->nb_snapshots + 1);
	if (ret < 0) {
		free(sn->extra);
		free(sn->id);
		free(sn->name);
		goto fail;
	}
	free(s->snapshots);
	s->snapshots = TAKE_PTR(sns);
	if (vm && vm->vm_state_size) {
		/*
		 * The snapshot holds the VM state now; the active image need not
		 * (QEMU drops it too: later snapshots would copy it for nothing).
		 */
		ret = qcow2_discard_range(s, qcow2_vm_state_offset(s),
					  ALIGN_UP(vm->vm_state_size, s->cluster_size),
					  QCOW2_DISCARD);
		if (ret < 0) {
			goto fail;
		}
	}
	ret = qcow2_flush_all(s);
	if (ret < 0) {
		goto fail;
	}
	goto out;
fail:
	free(sns);
	error_set_errno(errp, -ret, "cannot create snapshot '%s' in '%s'", name, bs->filename);
out:
	end(s);
	return ret;
}

int qcow2_snapshot_apply(struct block_node *bs, const char *name, struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	_cleanup_free_ uint64_t *sl1 = NULL;
	uint64_t *old_l1 = NULL;
	uint64_t old_off, old_bytes, bytes;
	uint32_t old_size;
	struct qcow2_snapshot *sn;
	int64_t off;
	int idx, ret;

	ret = begin(bs, errp);
	if (ret < 0) {
		goto out;
	}
	idx = find_snapshot(s, name);
	if (idx < 0) {
		ret = error_set(errp, ENOENT, "snapshot '%s' not found in '%s'", name,
				bs->filename);
		goto out;
	}
	sn = &s->snapshots[idx];
	ret = read_l1(s, sn->l1_table_offset, sn->l1_size, &sl1);
	if (ret < 0) {
		goto fail;
	}
	/* 1. the snapshot's clusters gain the active table's reference */
	ret = qcow2_update_l1_refcounts(s, sl1, sn->l1_size, 1, false);
	if (ret < 0) {
		goto fail;
	}
	/* 2. a new active L1 with the snapshot's content, switched in the header */
	bytes = ALIGN_UP(MAX((uint64_t)sn->l1_size * 8, 1), s->cluster_size);
	off = qcow2_alloc_clusters(s, bytes >> s->cluster_bits);
	if (off < 0) {
		ret = (int)off;
		goto fail;
	}
	ret = write_l1(s, (uint64_t)off, sl1, sn->l1_size);
	if (ret == 0) {
		ret = qcow2_flush_all(s);
	}
	if (ret < 0) {
		goto fail;
	}
	old_l1 = s->l1_table;
	old_size = s->l1_size;
	old_off = s->l1_table_offset;
	old_bytes = ALIGN_UP((uint64_t)old_size * 8, s->cluster_size);
	s->l1_table = TAKE_PTR(sl1);
	s->l1_size = sn->l1_size;
	s->l1_table_offset = (uint64_t)off;
	if (sn->disk_size) {
		s->size = sn->disk_size;
	}
	ret = qcow2_update_header(s);
	if (ret == 0) {
		ret = qcow2_file_flush(s);
	}
	if (ret < 0) {
		free(old_l1);
		goto fail;
	}
	qcow2_cache_drop_all(&s->l2_cache);
	/* 3. the old active tree and table lose their references */
	ret = qcow2_update_l1_refcounts(s, old_l1, old_size, -1, false);
	free(old_l1);
	if (ret == 0 && old_size) {
		ret = qcow2_update_refcount(s, old_off, old_bytes, -1);
	}
	/* 4. COPIED flags of the new active tree */
	if (ret == 0) {
		ret = qcow2_update_l1_refcounts(s, s->l1_table, s->l1_size, 0, true);
	}
	for (uint32_t i = 0; ret == 0 && i < s->l1_size; i += 64) {
		ret = qcow2_write_l1_entry(s, i);
	}
	if (ret == 0) {
		ret = qcow2_flush_all(s);
	}
	if (ret < 0) {
		goto fail;
	}
	s->dc_entry = 0;
	goto out;
fail:
	error_set_errno(errp, -ret, "cannot apply snapshot '%s' to '%s'", name, bs->filename);
out:
	end(s);
	return ret;
}

/* The snapshot with id @id, and name @name unless NULL; -1 if none. */
static int find_exact(struct qcow2_state *s, const char *id, const char *name)
{
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		if (!strcmp(s->snapshots[i].id, id) &&
		    (!name || !strcmp(s->snapshots[i].name, name))) {
			return (int)i;
		}
	}
	return -1;
}

int qcow2_snapshot_delete(struct block_node *bs, const char *id, const char *name,
			  struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	struct qcow2_snapshot victim, *sns = NULL;
	_cleanup_free_ uint64_t *l1 = NULL;
	int idx, ret;

	ret = begin(bs, errp);
	if (ret < 0) {
		goto out;
	}
	idx = id ? find_exact(s, id, name) : find_snapshot(s, name);
	if (idx < 0) {
		ret = error_set(errp, ENOENT, "snapshot '%s' not found in '%s'", id ? id : name,
				bs->filename);
		goto out;
	}
	victim = s->snapshots[idx];
	ret = read_l1(s, victim.l1_table_offset, victim.l1_size, &l1);
	if (ret < 0) {
		goto fail;
	}
	sns = calloc(MAX(s->nb_snapshots, 1), sizeof(*sns));
	if (!sns) {
		ret = -ENOMEM;
		goto fail;
	}
	memcpy(sns, s->snapshots, (size_t)idx * sizeof(*sns));
	memcpy(sns + idx, s->snapshots + idx + 1,
	       (s->nb_snapshots - (uint32_t)idx - 1) * sizeof(*sns));
	/* 1. the table without it */
	ret = write_table(s, sns, s->nb_snapshots - 1);
	if (ret < 0) {
		free(sns);
		goto fail;
	}
	free(s->snapshots);
	s->snapshots = sns;
	/* 2. its references go */
	ret = qcow2_update_l1_refcounts(s, l1, victim.l1_size, -1, false);
	if (ret == 0 && victim.l1_size) {
		ret = qcow2_update_refcount(s, victim.l1_table_offset,
					    ALIGN_UP((uint64_t)victim.l1_size * 8, s->cluster_size),
					    -1);
	}
	free(victim.id);
	free(victim.name);
	free(victim.extra);
	/* 3. clusters now used by the active table alone become COPIED again */
	if (ret == 0) {
		ret = qcow2_update_l1_refcounts(s, s->l1_table, s->l1_size, 0, true);
	}
	for (uint32_t i = 0; ret == 0 && i < s->l1_size; i += 64) {
		ret = qcow2_write_l1_entry(s, i);
	}
	if (ret == 0) {
		ret = qcow2_flush_all(s);
	}
	if (ret < 0) {
		goto fail;
	}
	goto out;
fail:
	error_set_errno(errp, -ret, "cannot delete snapshot '%s' from '%s'", id ? id : name,
			bs->filename);
out:
	end(s);
	return ret;
}

json_t *qcow2_snapshots_json(struct qcow2_state *s)
{
	json_t *arr = json_array();

	for (uint32_t i = 0; arr && i < s->nb_snapshots; i++) {
		struct qcow2_snapshot *sn = &s->snapshots[i];
		uint64_t icount = sn->extra_size >= 24 ? qcow2_be64(sn->extra) : UINT64_MAX;
		json_t *o;

		json_array_append_new(
			arr,
			o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "id", sn->id, "name",
				      sn->name, "vm-state-size", (json_int_t)sn->vm_state_size,
				      "date-sec", (json_int_t)sn->date_sec, "date-nsec",
				      (json_int_t)sn->date_nsec, "vm-clock-sec",
				      (json_int_t)(sn->vm_clock_nsec / 1000000000ull),
				      "vm-clock-nsec",
				      (json_int_t)(sn->vm_clock_nsec % 1000000000ull)));
		if (o && icount != UINT64_MAX) {
			json_object_set_new(o, "icount", json_integer((json_int_t)icount));
		}
	}
	return arr;
}

json_t *qcow2_snapshot_list(struct block_node *bs, struct error **errp)
{
	struct qcow2_state *s = bs->opaque;
	json_t *arr;

	pthread_mutex_lock(&s->lock);
	arr = qcow2_snapshots_json(s);
	pthread_mutex_unlock(&s->lock);
	if (!arr) {
		error_set(errp, ENOMEM, "out of memory");
	}
	return arr;
}
