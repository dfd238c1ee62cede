/*
 * Changing the block graph under a running guest: reopening a node with
 * other flags, inserting an external overlay above a disk's node, changing
 * a node's backing node (and the name recorded in its image), pivoting a
 * disk to its base after an active commit, and the allocation queries the
 * stream and commit jobs need.
 *
 * A disk device holds a pointer to its top node for its whole life. So the
 * graph changes *contents*, not pointers: swap_contents() exchanges what
 * two struct block_node hold (driver, state, children, names, flags) while
 * each keeps its reference count, statistics and drain gate; the device's
 * pointer then designates the new top (as QEMU's old bdrv_append did).
 *
 * Threads: any thread but the control thread (these open and flush
 * images). The caller drains the disk's top node around every change
 * (block_drain_begin()), so no request is inside a node that changes;
 * block_graph_lock keeps readers of other threads (query-block, chain
 * lookups) from seeing a change half done.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-int.h"
#include "block/file.h"
#include "common/pathpol.h"

/* The caller holds block_graph_lock for writing. */
static void swap_contents_locked(struct block_node *a, struct block_node *b)
{
#define SWAP(f)                               \
	do {                                  \
		__typeof__(a->f) tmp_ = a->f; \
		a->f = b->f;                  \
		b->f = tmp_;                  \
	} while (0)
	SWAP(drv);
	SWAP(opaque);
	SWAP(file);
	SWAP(backing);
	SWAP(filename);
	SWAP(node_name);
	SWAP(flags);
	SWAP(read_only);
	SWAP(alignment);
	SWAP(growable);
#undef SWAP
	if (a->drv && a->drv->rebind) {
		a->drv->rebind(a);
	}
	if (b->drv && b->drv->rebind) {
		b->drv->rebind(b);
	}
}

static void swap_contents(struct block_node *a, struct block_node *b)
{
	pthread_rwlock_wrlock(&block_graph_lock);
	swap_contents_locked(a, b);
	pthread_rwlock_unlock(&block_graph_lock);
}

/* The file-protocol node under @bs (itself, or its file), or NULL. */
static struct block_node *lock_node(struct block_node *bs)
{
	struct block_node *p = bs->drv->is_protocol ? bs : bs->file;

	return p && p->drv == &file_driver ? p : NULL;
}

struct block_node *block_backing(struct block_node *bs)
{
	return bs->backing;
}

struct block_node *block_chain_find(struct block_node *top, const char *filename,
				    const char *node_name)
{
	struct block_node *b;

	pthread_rwlock_rdlock(&block_graph_lock);
	for (b = top; b; b = b->backing) {
		if (filename && strcmp(b->filename, filename) == 0) {
			break;
		}
		if (node_name && b->node_name && strcmp(b->node_name, node_name) == 0) {
			break;
		}
	}
	pthread_rwlock_unlock(&block_graph_lock);
	return b;
}

int block_reopen(struct block_node *bs, bool rw, struct error **errp)
{
	struct block_node *nb = NULL, *oldp, *newp;
	unsigned keep =
		bs->flags & (BLOCK_O_NOCACHE | BLOCK_O_AIO_MASK | BLOCK_O_UNMAP | BLOCK_O_NO_LOCK);
	bool locked = !(bs->flags & BLOCK_O_NO_LOCK);
	int r;

	if (rw == !bs->read_only) {
		return 0;
	}
	if (bs->drv->is_protocol) {
		return error_set(errp, ENOTSUP, "cannot reopen protocol node '%s'", bs->filename);
	}
	r = block_do_flush(bs);
	if (r < 0) {
		return error_set_errno(errp, -r, "cannot flush '%s'", bs->filename);
	}
	r = block_open_driver(&nb, bs->drv->name, bs->filename, NULL,
			      keep | (rw ? BLOCK_O_RDWR : 0) | BLOCK_O_NO_BACKING | BLOCK_O_NO_LOCK,
			      errp);
	if (r < 0) {
		return r;
	}
	if (bs->node_name && !(nb->node_name = strdup(bs->node_name))) {
		block_unref(nb);
		return error_set(errp, ENOMEM, "out of memory");
	}
	oldp = lock_node(bs);
	newp = lock_node(nb);
	if (locked && oldp && newp) {
		/* hand the image lock over: the old fd's, then the new one's */
		r = file_set_lock(oldp, F_UNLCK, errp);
		if (r == 0) {
			r = file_set_lock(newp, rw ? F_WRLCK : F_RDLCK, errp);
			if (r < 0) {
				file_set_lock(oldp, bs->read_only ? F_RDLCK : F_WRLCK, NULL);
				error_prefix(errp, "Failed to get \"%s\" lock",
					     rw ? "write" : "shared");
			}
		}
		if (r < 0) {
			block_unref(nb);
			return r;
		}
		nb->flags &= ~BLOCK_O_NO_LOCK;
		newp->flags &= ~BLOCK_O_NO_LOCK;
	}
	nb->flags = (nb->flags & ~BLOCK_O_NO_BACKING) | (bs->flags & BLOCK_O_NO_BACKING);
	nb->backing = block_ref(bs->backing);
	swap_contents(bs, nb);
	/* nb holds the old instance now: closing it releases nothing more */
	block_unref(nb);
	return 0;
}

int block_create_target(const char *file, const char *format, uint64_t size,
			struct block_node *backing, struct error **errp)
{
	json_auto_t *opts = NULL;
	int fd, r;

	if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0) {
		return error_set(errp, EINVAL, "Unknown file format '%s'", format);
	}
	if (backing && strcmp(format, "raw") == 0) {
		return error_set(errp, ENOTSUP, "Backing file not supported for file format 'raw'");
	}
	/* Never overwrite a file: it may be another image, or this disk's own. */
	fd = pathpol_open(file, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd == -PATHPOL_DENIED) {
		return pathpol_denied("image", file, errp);
	}
	if (fd < 0) {
		return error_set_errno(errp, -fd, "Could not create '%s'", file);
	}
	close(fd);
	if (backing) {
		opts = json_pack("{s:s, s:s}", "backing_file", backing->filename, "backing_fmt",
				 backing->drv->name);
		if (!opts) {
			unlink(file);
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	r = block_create(format, file, size, opts, errp);
	if (r < 0) {
		unlink(file);
	}
	return r;
}

int block_create_overlay(const char *file, const char *format, struct block_node *backing,
			 struct error **errp)
{
	return block_create_target(file, format ? format : "qcow2", block_length(backing), backing,
				   errp);
}

int block_open_target(struct block_node **ret, const char *file, const char *format,
		      struct block_node *like, const char *node_name, bool backing,
		      struct error **errp)
{
	unsigned flags = (like->flags & (BLOCK_O_NOCACHE | BLOCK_O_AIO_MASK | BLOCK_O_UNMAP)) |
			 BLOCK_O_RDWR | (backing ? 0 : BLOCK_O_NO_BACKING);
	struct block_node *bs = NULL;
	int r;

	if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0) {
		return error_set(errp, EINVAL, "Unknown file format '%s'", format);
	}
	r = block_open(&bs, file, format, flags, errp);
	if (r < 0) {
		return r;
	}
	if (node_name && !(bs->node_name = strdup(node_name))) {
		block_unref(bs);
		return error_set(errp, ENOMEM, "out of memory");
	}
	*ret = bs;
	return 0;
}

int block_open_overlay(struct block_node **ret, const char *file, const char *format,
		       struct block_node *active, const char *node_name, struct error **errp)
{
	struct block_node *ov = NULL;
	int r;

	if (!format) {
		format = "qcow2";
	}
	if (strcmp(format, "raw") == 0) {
		return error_set(errp, ENOTSUP, "Backing file not supported for file format 'raw'");
	}
	r = block_open_target(&ov, file, format, active, node_name, false, errp);
	if (r < 0) {
		return r;
	}
	if (block_length(ov) != block_length(active)) {
		r = error_set(errp, EINVAL,
			      "overlay '%s' is %" PRIu64 " bytes, the image it covers %" PRIu64,
			      file, block_length(ov), block_length(active));
		block_unref(ov);
		return r;
	}
	*ret = ov;
	return 0;
}

void block_insert_overlay(struct block_node *active, struct block_node *overlay)
{
	pthread_rwlock_wrlock(&block_graph_lock);
	swap_contents_locked(active, overlay);
	/* @overlay holds the old top now: it becomes the backing node, read-only */
	active->backing = overlay;
	pthread_rwlock_unlock(&block_graph_lock);
	block_reopen(overlay, false, NULL);
}

int block_set_backing(struct block_node *bs, struct block_node *backing, const char *name,
		      struct error **errp)
{
	bool was_ro = bs->read_only;
	struct block_node *old;
	int r;

	if (!bs->drv->change_backing) {
		return error_set(errp, ENOTSUP, "format '%s' of '%s' has no backing file",
				 bs->drv->name, bs->filename);
	}
	if (was_ro) {
		r = block_reopen(bs, true, errp);
		if (r < 0) {
			return r;
		}
	}
	r = bs->drv->change_backing(bs, backing ? (name ? name : backing->filename) : NULL,
				    backing ? backing->drv->name : NULL, errp);
	if (was_ro) {
		block_reopen(bs, false, NULL);
	}
	if (r < 0) {
		return r;
	}
	pthread_rwlock_wrlock(&block_graph_lock);
	old = bs->backing;
	bs->backing = block_ref(backing);
	pthread_rwlock_unlock(&block_graph_lock);
	block_unref(old);
	return 0;
}

int block_is_allocated_above(struct block_node *top, struct block_node *base, uint64_t offset,
			     uint64_t len, uint64_t *ret_pnum, bool *ret_allocated)
{
	uint64_t pnum = len;

	for (struct block_node *b = top; b && b != base; b = b->backing) {
		uint64_t n, blen = block_length(b);
		unsigned status;
		int r;

		if (offset >= blen) {
			continue; /* a shorter backing image: nothing there */
		}
		r = block_get_status(b, offset, MIN(pnum, blen - offset), &n, &status, NULL);
		if (r < 0) {
			return r;
		}
		if (status & BLOCK_STATUS_ALLOCATED) {
			*ret_pnum = n;
			*ret_allocated = true;
			return 0;
		}
		pnum = MIN(pnum, n);
	}
	*ret_pnum = pnum;
	*ret_allocated = false;
	return 0;
}

void block_pivot(struct block_node *active, struct block_node *base)
{
	struct block_node *cut = NULL;

	pthread_rwlock_wrlock(&block_graph_lock);
	swap_contents_locked(active, base);
	/* @base holds the old top now; its chain leads back to @base itself: cut it */
	for (struct block_node *x = base; x; x = x->backing) {
		if (x->backing == base) {
			x->backing = NULL;
			cut = base;
			break;
		}
	}
	pthread_rwlock_unlock(&block_graph_lock);
	block_unref(cut);
}
