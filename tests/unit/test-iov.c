/* Unit tests for common/iov.c. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "common/iov.h"

START_TEST(copy_across_elements)
{
	char a[3], b[5], c[2], out[10];
	struct iovec iov[] = {{a, sizeof(a)}, {b, sizeof(b)}, {c, sizeof(c)}};

	ck_assert_uint_eq(iov_size(iov, 3), 10);
	ck_assert_uint_eq(iov_from_buf(iov, 3, 0, "0123456789", 10), 10);
	ck_assert_int_eq(memcmp(a, "012", 3), 0);
	ck_assert_int_eq(memcmp(b, "34567", 5), 0);
	ck_assert_int_eq(memcmp(c, "89", 2), 0);
	memset(out, 0, sizeof(out));
	ck_assert_uint_eq(iov_to_buf(iov, 3, 2, out, 5), 5);
	ck_assert_int_eq(memcmp(out, "23456", 5), 0);
	/* clamped at the end */
	ck_assert_uint_eq(iov_to_buf(iov, 3, 8, out, 5), 2);
	ck_assert_uint_eq(iov_to_buf(iov, 3, 11, out, 5), 0);
}
END_TEST

START_TEST(memset_and_zero)
{
	char a[4] = "abcd", b[4] = "efgh";
	struct iovec iov[] = {{a, 4}, {b, 4}};

	ck_assert(!iov_is_zero(iov, 2));
	ck_assert_uint_eq(iov_memset(iov, 2, 2, 0, 100), 6);
	ck_assert_int_eq(a[0], 'a');
	ck_assert_int_eq(a[1], 'b');
	ck_assert_int_eq(a[2], 0);
	ck_assert_int_eq(b[3], 0);
	iov_memset(iov, 2, 0, 0, 2);
	ck_assert(iov_is_zero(iov, 2));
}
END_TEST

START_TEST(slice)
{
	char a[4], b[4], c[4];
	struct iovec iov[] = {{a, 4}, {b, 4}, {c, 4}}, out[3];
	size_t len;
	unsigned n;

	n = iov_slice(iov, 3, 3, 6, out, 3, &len);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(len, 6);
	ck_assert_ptr_eq(out[0].iov_base, a + 3);
	ck_assert_uint_eq(out[0].iov_len, 1);
	ck_assert_uint_eq(out[1].iov_len, 4);
	ck_assert_uint_eq(out[2].iov_len, 1);
	/* dst too small: stops early and says so */
	n = iov_slice(iov, 3, 0, 12, out, 2, &len);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(len, 8);
}
END_TEST

START_TEST(size_saturates)
{
	struct iovec iov[] = {{NULL, SIZE_MAX}, {NULL, 5}};

	ck_assert_uint_eq(iov_size(iov, 2), SIZE_MAX);
	ck_assert_uint_eq(iov_size(iov, 0), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("iov");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, copy_across_elements);
	tcase_add_test(tc, memset_and_zero);
	tcase_add_test(tc, slice);
	tcase_add_test(tc, size_saturates);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
