/* iovec helpers: see iov.h. */
#include "config.h"

#include <string.h>

#include "common/iov.h"
#include "common/util.h"

size_t iov_size(const struct iovec *iov, unsigned cnt)
{
	size_t total = 0;

	for (unsigned i = 0; i < cnt; i++) {
		if (iov[i].iov_len > SIZE_MAX - total) {
			return SIZE_MAX;
		}
		total += iov[i].iov_len;
	}
	return total;
}

/* Walk the vector, calling @fn on each piece of [offset, offset+len). */
static size_t iov_walk(const struct iovec *iov, unsigned cnt, size_t offset, size_t len,
		       void (*fn)(void *base, size_t done, size_t n, void *arg), void *arg)
{
	size_t done = 0;

	for (unsigned i = 0; i < cnt && done < len; i++) {
		size_t n;

		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - offset, len - done);
		fn((char *)iov[i].iov_base + offset, done, n, arg);
		done += n;
		offset = 0;
	}
	return done;
}

static void copy_in(void *base, size_t done, size_t n, void *arg)
{
	memcpy(base, (const char *)arg + done, n);
}

static void copy_out(void *base, size_t done, size_t n, void *arg)
{
	memcpy((char *)arg + done, base, n);
}

static void fill(void *base, size_t done, size_t n, void *arg)
{
	memset(base, *(int *)arg, n);
}

size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t offset, const void *buf,
		    size_t len)
{
	return iov_walk(iov, cnt, offset, len, copy_in, (void *)buf);
}

size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t offset, void *buf, size_t len)
{
	return iov_walk(iov, cnt, offset, len, copy_out, buf);
}

size_t iov_memset(const struct iovec *iov, unsigned cnt, size_t offset, int c, size_t len)
{
	return iov_walk(iov, cnt, offset, len, fill, &c);
}

int iov_is_zero(const struct iovec *iov, unsigned cnt)
{
	for (unsigned i = 0; i < cnt; i++) {
		const unsigned char *p = iov[i].iov_base;

		for (size_t j = 0; j < iov[i].iov_len; j++) {
			if (p[j]) {
				return 0;
			}
		}
	}
	return 1;
}

unsigned iov_slice(const struct iovec *src, unsigned src_cnt, size_t offset, size_t len,
		   struct iovec *dst, unsigned dst_max, size_t *ret_len)
{
	unsigned used = 0;
	size_t done = 0;

	for (unsigned i = 0; i < src_cnt && done < len && used < dst_max; i++) {
		size_t n;

		if (offset >= src[i].iov_len) {
			offset -= src[i].iov_len;
			continue;
		}
		n = MIN(src[i].iov_len - offset, len - done);
		dst[used].iov_base = (char *)src[i].iov_base + offset;
		dst[used].iov_len = n;
		used++;
		done += n;
		offset = 0;
	}
	if (ret_len) {
		*ret_len = done;
	}
	return used;
}
