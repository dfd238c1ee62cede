/*
 * Scatter-gather helpers over struct iovec arrays. Pure functions, any
 * thread. Offsets and sizes past the end of the vector are clamped: the
 * return value says how many bytes were actually handled.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Total bytes described by @iov. Saturates at SIZE_MAX. */
size_t iov_size(const struct iovec *iov, unsigned cnt);

/* Copy @len bytes from @buf into the vector starting at @offset. */
size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t offset, const void *buf,
		    size_t len);

/* Copy @len bytes from the vector starting at @offset into @buf. */
size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t offset, void *buf, size_t len);

/* Fill @len bytes of the vector from @offset with @c. */
size_t iov_memset(const struct iovec *iov, unsigned cnt, size_t offset, int c, size_t len);

/* True if every byte of the vector is zero. */
int iov_is_zero(const struct iovec *iov, unsigned cnt);

/*
 * Describe the sub-range [offset, offset+len) of @src in @dst (at most
 * @dst_max entries, no data copied). Returns the number of entries used;
 * *ret_len (may be NULL) receives the bytes covered.
 */
unsigned iov_slice(const struct iovec *src, unsigned src_cnt, size_t offset, size_t len,
		   struct iovec *dst, unsigned dst_max, size_t *ret_len);
