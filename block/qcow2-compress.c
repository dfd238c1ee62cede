/*
 * qcow2 compressed clusters: zlib (raw deflate, 4 KiB window, as qcow2
 * requires) and zstd. Pure functions on buffers; any thread, no state.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "block/qcow2.h"

static int64_t compress_zlib(void *out, size_t out_len, const void *in, size_t in_len)
{
	z_stream z;
	int64_t ret;
	int r;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) !=
	    Z_OK) {
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)out_len;
	r = deflate(&z, Z_FINISH);
	if (r == Z_STREAM_END) {
		ret = (int64_t)(out_len - z.avail_out);
	} else if (r == Z_OK || r == Z_BUF_ERROR) {
		ret = -ENOSPC;
	} else {
		ret = -EIO;
	}
	deflateEnd(&z);
	return ret;
}

static int decompress_zlib(void *out, size_t out_len, const void *in, size_t in_len)
{
	z_stream z;
	int r, ret;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK) {
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)out_len;
	r = inflate(&z, Z_FINISH);
	/* Trailing bytes of the last sector may belong to someone else: stop when full. */
	if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && z.avail_out == 0) {
		ret = 0;
	} else {
		ret = -EIO;
	}
	inflateEnd(&z);
	return ret;
}

static int64_t compress_zstd(void *out, size_t out_len, const void *in, size_t in_len)
{
	size_t r = ZSTD_compress(out, out_len, in, in_len, 3);

	if (ZSTD_isError(r)) {
		return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
	}
	return (int64_t)r;
}

static int decompress_zstd(void *out, size_t out_len, const void *in, size_t in_len)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	ZSTD_inBuffer ib = {in, in_len, 0};
	ZSTD_outBuffer ob = {out, out_len, 0};
	int ret = -EIO;

	if (!ds) {
		return -ENOMEM;
	}
	ZSTD_initDStream(ds);
	/* Frames may be followed by unrelated bytes: stop once the cluster is full. */
	while (ob.pos < ob.size) {
		size_t prev_in = ib.pos, prev_out = ob.pos;
		size_t r = ZSTD_decompressStream(ds, &ob, &ib);

		if (ZSTD_isError(r)) {
			goto out;
		}
		if (ob.pos == ob.size) {
			break;
		}
		if (r == 0 && ib.pos < ib.size) {
			/* end of a frame: the next one continues the data */
			continue;
		}
		if (ib.pos == prev_in && ob.pos == prev_out) {
			goto out; /* no progress: input exhausted */
		}
	}
	ret = 0;
out:
	ZSTD_freeDStream(ds);
	return ret;
}

int64_t qcow2_compress(int type, void *out, size_t out_len, const void *in, size_t in_len)
{
	switch (type) {
	case QCOW2_COMPRESSION_ZLIB:
		return compress_zlib(out, out_len, in, in_len);
	case QCOW2_COMPRESSION_ZSTD:
		return compress_zstd(out, out_len, in, in_len);
	default:
		return -ENOTSUP;
	}
}

int qcow2_decompress(int type, void *out, size_t out_len, const void *in, size_t in_len)
{
	switch (type) {
	case QCOW2_COMPRESSION_ZLIB:
		return decompress_zlib(out, out_len, in, in_len);
	case QCOW2_COMPRESSION_ZSTD:
		return decompress_zstd(out, out_len, in, in_len);
	default:
		return -ENOTSUP;
	}
}
