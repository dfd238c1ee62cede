/*
 * The file protocol: regular files and block devices through POSIX calls
 * (preadv/pwritev, fdatasync, fallocate, the BLK* ioctls), with O_DIRECT
 * for cache=none and OFD image locks (shared for read-only users,
 * exclusive for a writer) so two VMs cannot write one image.
 *
 * Threads: every op may run concurrently from I/O worker threads; the
 * only shared state is the fd and values fixed at open, except the cached
 * length of a block device (read-only after open).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "block/block-int.h"
#include "block/file.h"
#include "common/pathpol.h"

/* The byte every user of an image locks (outside QEMU's lock bytes). */
#define FILE_LOCK_BYTE 0x766d6d64

static struct file_state *state(struct block_node *bs)
{
	return bs->opaque;
}

int file_fd(struct block_node *bs)
{
	return state(bs)->fd;
}

/* Scan /proc/PID/fdinfo for an OFD lock on @st's inode; 0 if none found. */
static pid_t find_lock_holder(const struct stat *st)
{
	char want[64], path[300], line[256];
	struct dirent *pde, *fde;
	pid_t found = 0;
	DIR *proc, *fds;

	snprintf(want, sizeof(want), " %02x:%02x:%" PRIu64 " ", major(st->st_dev),
		 minor(st->st_dev), (uint64_t)st->st_ino);
	proc = opendir("/proc");
	if (!proc) {
		return 0;
	}
	while (!found && (pde = readdir(proc))) {
		pid_t pid = (pid_t)strtol(pde->d_name, NULL, 10);

		if (pid <= 0) {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%d/fdinfo", pid);
		fds = opendir(path);
		if (!fds) {
			continue;
		}
		while (!found && (fde = readdir(fds))) {
			FILE *f;

			if (fde->d_name[0] == '.') {
				continue;
			}
			snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, fde->d_name);
			f = fopen(path, "re");
			if (!f) {
				continue;
			}
			while (fgets(line, sizeof(line), f)) {
				if (strncmp(line, "lock:", 5) == 0 && strstr(line, "OFDLCK") &&
				    strstr(line, want)) {
					found = pid;
					break;
				}
			}
			fclose(f);
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

static int file_lock_type(struct block_node *bs, int fd, const struct stat *st, short type,
			  struct error **errp)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = FILE_LOCK_BYTE,
		.l_len = 1,
	};
	pid_t holder;

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
		return 0;
	}
	if (errno != EAGAIN && errno != EACCES) {
		if (errno == EINVAL || errno == ENOTSUP || errno == ENOLCK) {
			return 0; /* the filesystem has no locks: nothing to enforce */
		}
		return error_set_errno(errp, errno, "could not lock image '%s'", bs->filename);
	}
	holder = find_lock_holder(st);
	if (holder > 0) {
		return error_set(errp, EBUSY,
				 "image '%s' is locked: process %d has it open%s (an image is "
				 "shared only by readers; a writer needs it alone)",
				 bs->filename, (int)holder, type == F_RDLCK ? " for writing" : "");
	}
	return error_set(errp, EBUSY,
			 "image '%s' is locked by another user (an image is shared only by "
			 "readers; a writer needs it alone)",
			 bs->filename);
}

static int file_lock(struct block_node *bs, int fd, const struct stat *st, struct error **errp)
{
	return file_lock_type(bs, fd, st, bs->read_only ? F_RDLCK : F_WRLCK, errp);
}

int file_set_lock(struct block_node *bs, short type, struct error **errp)
{
	struct file_state *s = state(bs);
	struct flock fl = {
		.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = FILE_LOCK_BYTE, .l_len = 1};
	struct stat st;

	if (type == F_UNLCK) {
		if (fcntl(s->fd, F_OFD_SETLK, &fl) < 0 && errno != EINVAL && errno != ENOLCK) {
			return error_set_errno(errp, errno, "could not unlock image '%s'",
					       bs->filename);
		}
		return 0;
	}
	if (fstat(s->fd, &st) < 0) {
		return error_set_errno(errp, errno, "could not stat '%s'", bs->filename);
	}
	return file_lock_type(bs, s->fd, &st, type, errp);
}

/* O_DIRECT request alignment: the logical block size, found by probing. */
static uint32_t probe_alignment(int fd, bool is_blk)
{
	static const uint32_t sizes[] = {512, 1024, 2048, 4096};
	void *buf;
	uint32_t found = 4096;

	if (is_blk) {
		int ssz = 0;

		if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz > 0 && IS_POWER_OF_2((unsigned)ssz)) {
			return (uint32_t)ssz;
		}
	}
	if (posix_memalign(&buf, 4096, 4096) != 0) {
		return 4096;
	}
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		ssize_t r = pread(fd, buf, sizes[i], 0);

		if (r >= 0) {
			/* An empty file proves nothing: stay conservative. */
			found = r > 0 ? sizes[i] : 4096;
			break;
		}
		if (errno != EINVAL) {
			break;
		}
	}
	free(buf);
	return found;
}

static int file_open(struct block_node *bs, const char *filename, json_t *opts, struct error **errp)
{
	_cleanup_close_ int fd = -1;
	struct file_state *s;
	const char *key;
	bool locking = !(bs->flags & BLOCK_O_NO_LOCK);
	bool use_threads = bs->flags & BLOCK_O_AIO_THREADS, native = bs->flags & BLOCK_O_AIO_NATIVE;
	struct stat st;
	json_t *v;
	int oflags, r;

	json_object_foreach (opts, key, v) {
		if (strcmp(key, "locking") == 0 && json_is_string(v)) {
			const char *l = json_string_value(v);

			if (strcmp(l, "off") == 0) {
				locking = false;
			} else if (strcmp(l, "on") != 0 && strcmp(l, "auto") != 0) {
				return error_set(errp, EINVAL, "locking must be on, off or auto");
			}
		} else if (strcmp(key, "aio") == 0 && json_is_string(v)) {
			const char *a = json_string_value(v);

			use_threads = strcmp(a, "threads") == 0;
			native = strcmp(a, "native") == 0;
			if (!use_threads && !native && strcmp(a, "io_uring") != 0) {
				return error_set(errp, EINVAL,
						 "aio must be 'threads', 'native' or 'io_uring'");
			}
		} else {
			return error_set(errp, EINVAL, "invalid option '%s' for file '%s'", key,
					 filename);
		}
	}

	/* the flags say the engine from here on: a reopen or a parent finds it there */
	bs->flags = (bs->flags & ~BLOCK_O_AIO_MASK) | (native ? BLOCK_O_AIO_NATIVE : 0) |
		    (use_threads ? BLOCK_O_AIO_THREADS : 0);
	if (native && !(bs->flags & BLOCK_O_NOCACHE)) {
		/* QEMU's words: Linux AIO is synchronous without O_DIRECT */
		return error_set(errp, EINVAL,
				 "aio=native was specified, but it requires cache.direct=on, "
				 "which was not specified.");
	}
	oflags = (bs->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	if (bs->flags & BLOCK_O_NOCACHE) {
		oflags |= O_DIRECT;
	}
	fd = pathpol_open(filename, oflags, 0);
	if (fd == -PATHPOL_DENIED) {
		return pathpol_denied("image", filename, errp);
	}
	if (fd < 0) {
		errno = -fd;
		if (errno == EINVAL && (oflags & O_DIRECT)) {
			return error_set(errp, EINVAL,
					 "cannot open '%s' with cache=none: the filesystem does "
					 "not support O_DIRECT",
					 filename);
		}
		return error_set_errno(errp, errno, "Could not open '%s'", filename);
	}
	if (fstat(fd, &st) < 0) {
		return error_set_errno(errp, errno, "could not stat '%s'", filename);
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		return error_set(errp, EINVAL, "'%s' is not a regular file or a block device",
				 filename);
	}
	if (locking) {
		r = file_lock(bs, fd, &st, errp);
		if (r < 0) {
			return r;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->is_blk = S_ISBLK(st.st_mode);
	s->use_threads = use_threads;
	s->native_aio = native;
	s->locked = locking;
	if (s->is_blk && ioctl(fd, BLKGETSIZE64, &s->blk_len) < 0) {
		free(s);
		return error_set_errno(errp, errno, "could not get the size of '%s'", filename);
	}
	if (oflags & O_DIRECT) {
		bs->alignment = probe_alignment(fd, s->is_blk);
	}
	s->fd = TAKE_FD(fd);
	bs->opaque = s;
	return 0;
}

static void file_close(struct block_node *bs)
{
	struct file_state *s = state(bs);

	if (!s) {
		return;
	}
	if (!bs->read_only && !(bs->flags & BLOCK_O_NO_FLUSH)) {
		fdatasync(s->fd);
	}
	close(s->fd);
	free(s);
	bs->opaque = NULL;
}

static uint64_t file_get_length(struct block_node *bs)
{
	struct file_state *s = state(bs);
	struct stat st;

	if (s->is_blk) {
		return s->blk_len;
	}
	if (fstat(s->fd, &st) < 0) {
		return 0;
	}
	return (uint64_t)st.st_size;
}

uint64_t file_actual_size(struct block_node *bs)
{
	struct stat st;

	if (fstat(state(bs)->fd, &st) < 0) {
		return 0;
	}
	return (uint64_t)st.st_blocks * 512;
}

int file_rw(int fd, bool write, uint64_t offset, const struct iovec *iov, unsigned cnt,
	    uint64_t len)
{
	struct iovec *local = NULL;
	uint64_t done = 0;
	ssize_t n;

	n = write ? pwritev(fd, iov, (int)cnt, (off_t)offset)
		  : preadv(fd, iov, (int)cnt, (off_t)offset);
	if (n >= 0 && (uint64_t)n == len) {
		return 0;
	}
	/* Short transfer or EINTR: continue on a private copy of the vector. */
	local = malloc(cnt * sizeof(*local));
	if (!local) {
		return -ENOMEM;
	}
	memcpy(local, iov, cnt * sizeof(*local));
	iov = local;
	for (;;) {
		if (n < 0) {
			if (errno != EINTR) {
				int err = -errno;

				free(local);
				return err;
			}
		} else if (n == 0) {
			if (write) {
				free(local);
				return -EIO;
			}
			/* End of file: the rest reads as zeroes. */
			for (unsigned i = 0; i < cnt; i++) {
				memset(local[i].iov_base, 0, local[i].iov_len);
			}
			break;
		} else {
			done += (uint64_t)n;
			while (cnt > 0 && (size_t)n >= local->iov_len) {
				n -= (ssize_t)local->iov_len;
				local++;
				cnt--;
			}
			if (cnt > 0) {
				local->iov_base = (char *)local->iov_base + n;
				local->iov_len -= (size_t)n;
			}
		}
		if (done >= len || cnt == 0) {
			break;
		}
		n = write ? pwritev(fd, local, (int)cnt, (off_t)(offset + done))
			  : preadv(fd, local, (int)cnt, (off_t)(offset + done));
	}
	free((void *)iov);
	return 0;
}

static int file_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len)
{
	return file_rw(state(bs)->fd, false, offset, iov, cnt, len);
}

static int file_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			unsigned cnt, uint64_t len)
{
	return file_rw(state(bs)->fd, true, offset, iov, cnt, len);
}

static int file_flush(struct block_node *bs)
{
	return fdatasync(state(bs)->fd) < 0 ? -errno : 0;
}

static int file_discard(struct block_node *bs, uint64_t offset, uint64_t len)
{
	struct file_state *s = state(bs);

	if (s->is_blk) {
		uint64_t range[2] = {offset, len};

		return ioctl(s->fd, BLKDISCARD, range) < 0 ? -errno : 0;
	}
	if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
		      (off_t)len) < 0) {
		return -errno;
	}
	return 0;
}

static int file_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len, unsigned flags)
{
	struct file_state *s = state(bs);

	if (s->is_blk) {
		uint64_t range[2] = {offset, len};

		if ((flags & BLOCK_ZERO_MAY_UNMAP) &&
		    fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
			      (off_t)len) == 0) {
			return 0;
		}
		if (!IS_ALIGNED(offset | len, 512)) {
			return -ENOTSUP;
		}
		return ioctl(s->fd, BLKZEROOUT, range) < 0 ? -ENOTSUP : 0;
	}
	if ((flags & BLOCK_ZERO_MAY_UNMAP) && offset + len <= file_get_length(bs) &&
	    fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
		      (off_t)len) == 0) {
		return 0;
	}
	if (fallocate(s->fd, FALLOC_FL_ZERO_RANGE, (off_t)offset, (off_t)len) == 0) {
		return 0;
	}
	return errno == ENOSPC || errno == EIO ? -errno : -ENOTSUP;
}

static int file_truncate(struct block_node *bs, uint64_t len, struct error **errp)
{
	struct file_state *s = state(bs);

	if (s->is_blk) {
		if (len == s->blk_len) {
			return 0;
		}
		return error_set(errp, ENOTSUP, "cannot resize block device '%s'", bs->filename);
	}
	if (ftruncate(s->fd, (off_t)len) < 0) {
		return error_set_errno(errp, errno, "could not resize '%s' to %" PRIu64 " bytes",
				       bs->filename, len);
	}
	return 0;
}

static int file_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
			     uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct file_state *s = state(bs);
	uint64_t end = file_get_length(bs);
	off_t data, hole;

	*ret_file_offset = offset;
	*ret_pnum = len;
	*ret_status = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
	if (s->is_blk) {
		return 0;
	}
	if (offset >= end) {
		/* Past EOF of a growable node: reads return zeroes. */
		*ret_status = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
		return 0;
	}
	data = lseek(s->fd, (off_t)offset, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO) {
			/* A hole up to the end of the file. */
			*ret_pnum = MIN(len, end - offset);
			*ret_status = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
		}
		return 0; /* no SEEK_DATA support: all data */
	}
	if ((uint64_t)data > offset) {
		*ret_pnum = MIN(len, (uint64_t)data - offset);
		*ret_status = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
		return 0;
	}
	hole = lseek(s->fd, (off_t)offset, SEEK_HOLE);
	if (hole < 0 || (uint64_t)hole <= offset) {
		return 0;
	}
	*ret_pnum = MIN(len, (uint64_t)hole - offset);
	return 0;
}

const struct block_driver file_driver = {
	.name = "file",
	.is_protocol = true,
	.open = file_open,
	.close = file_close,
	.get_length = file_get_length,
	.preadv = file_preadv,
	.pwritev = file_pwritev,
	.flush = file_flush,
	.discard = file_discard,
	.write_zeroes = file_write_zeroes,
	.truncate = file_truncate,
	.block_status = file_block_status,
};
