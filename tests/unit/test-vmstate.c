/* Unit tests for common/vmstate.c: the state stream's buffer and CRC-32. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/vmstate.h"

START_TEST(round_trip)
{
	struct vmstate_buf out, in;
	uint8_t blob[5] = {1, 2, 3, 4, 5}, back[5];

	vmstate_buf_init(&out);
	vmstate_put_u8(&out, 0xab);
	vmstate_put_u16(&out, 0x1234);
	vmstate_put_u32(&out, 0xdeadbeef);
	vmstate_put_u64(&out, 0x0123456789abcdefull);
	vmstate_put_bool(&out, true);
	vmstate_put_blob(&out, blob, sizeof(blob));
	ck_assert(!out.failed);
	ck_assert_uint_eq(out.len, 1 + 2 + 4 + 8 + 1 + 4 + 5);
	/* little-endian on the wire whatever the host */
	ck_assert_uint_eq(out.data[1], 0x34);
	ck_assert_uint_eq(out.data[2], 0x12);

	vmstate_buf_wrap(&in, out.data, out.len);
	ck_assert_uint_eq(vmstate_get_u8(&in), 0xab);
	ck_assert_uint_eq(vmstate_get_u16(&in), 0x1234);
	ck_assert_uint_eq(vmstate_get_u32(&in), 0xdeadbeef);
	ck_assert(vmstate_get_u64(&in) == 0x0123456789abcdefull);
	ck_assert(vmstate_get_bool(&in));
	vmstate_get_blob(&in, back, sizeof(back));
	ck_assert_int_eq(memcmp(back, blob, sizeof(blob)), 0);
	ck_assert_int_eq(vmstate_check_end(&in, "test", NULL), 0);
	vmstate_buf_free(&in);
	vmstate_buf_free(&out);
}
END_TEST

START_TEST(overrun_and_mismatch_fail)
{
	struct vmstate_buf out, in;
	uint8_t four[4];
	uint32_t len;
	void *p;

	vmstate_buf_init(&out);
	vmstate_put_blob(&out, "abc", 3);
	vmstate_put_u8(&out, 7);

	/* a blob of another length than expected */
	vmstate_buf_wrap(&in, out.data, out.len);
	vmstate_get_blob(&in, four, sizeof(four));
	ck_assert(in.failed);
	ck_assert_int_eq(vmstate_check_end(&in, "x", NULL), -EINVAL);

	/* trailing bytes */
	vmstate_buf_wrap(&in, out.data, out.len);
	p = vmstate_get_blob_alloc(&in, 16, &len);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(len, 3);
	free(p);
	ck_assert_int_eq(vmstate_check_end(&in, "x", NULL), -EINVAL);

	/* a blob over the limit, a read past the end, a bool that is not 0/1 */
	vmstate_buf_wrap(&in, out.data, out.len);
	ck_assert_ptr_null(vmstate_get_blob_alloc(&in, 2, &len));
	ck_assert(in.failed);
	vmstate_buf_wrap(&in, out.data, 2);
	ck_assert_uint_eq(vmstate_get_u32(&in), 0);
	ck_assert(in.failed);
	vmstate_buf_wrap(&in, out.data + 7, 1);
	vmstate_get_bool(&in);
	ck_assert(in.failed);
	vmstate_buf_free(&out);
}
END_TEST

START_TEST(crc32_matches_zlib)
{
	/* The standard check value of CRC-32/ISO-HDLC (zlib's crc32). */
	ck_assert_uint_eq(vmstate_crc32("123456789", 9), 0xcbf43926u);
	ck_assert_uint_eq(vmstate_crc32("", 0), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("vmstate");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, overrun_and_mismatch_fail);
	tcase_add_test(tc, crc32_matches_zlib);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
