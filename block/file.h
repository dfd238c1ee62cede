/*
 * The file protocol's state, shared with the asynchronous engine (aio.c)
 * which submits io_uring requests on the fd directly. Private to block/.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct block_node;

struct file_state {
	int fd;
	bool is_blk;
	bool use_threads; /* aio=threads: never use io_uring for this node */
	bool native_aio;  /* aio=native: reads and writes through Linux AIO (O_DIRECT) */
	uint64_t blk_len; /* block devices: size at open */
	bool locked;	  /* holds the image lock (taken at open unless locking=off) */
};

/* Bytes allocated on the host for a file-protocol node (st_blocks * 512; 0 on error). */
uint64_t file_actual_size(struct block_node *bs);

/*
 * Set the node's image lock to @type (F_RDLCK, F_WRLCK or F_UNLCK); the
 * error names the holder, as at open. For block_reopen().
 */
int file_set_lock(struct block_node *bs, short type, struct error **errp);

/* The open fd of a file-protocol node. */
int file_fd(struct block_node *bs);

/*
 * Transfer exactly @len bytes between @fd at @offset and @iov, retrying
 * short transfers and EINTR; reads past end of file return zeroes.
 * Returns 0 or -errno.
 */
int file_rw(int fd, bool write, uint64_t offset, const struct iovec *iov, unsigned cnt,
	    uint64_t len);
