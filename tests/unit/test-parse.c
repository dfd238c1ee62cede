/* Unit tests for common/parse.c. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>

#include "common/parse.h"

static uint64_t size_ok(const char *s)
{
	uint64_t v = 12345;

	ck_assert_msg(parse_size(s, &v) == 0, "parse_size(\"%s\") failed", s);
	return v;
}

static void size_bad(const char *s, int err)
{
	uint64_t v = 777;

	ck_assert_int_eq(parse_size(s, &v), err);
	ck_assert_msg(v == 777, "output written on failure for \"%s\"", s);
}

START_TEST(sizes)
{
	ck_assert_uint_eq(size_ok("0"), 0);
	ck_assert_uint_eq(size_ok("4096"), 4096);
	ck_assert_uint_eq(size_ok("512K"), 512u * 1024);
	ck_assert_uint_eq(size_ok("512M"), 512ull << 20);
	ck_assert_uint_eq(size_ok("512m"), 512ull << 20);
	ck_assert_uint_eq(size_ok("2G"), 2ull << 30);
	ck_assert_uint_eq(size_ok("2GiB"), 2ull << 30);
	ck_assert_uint_eq(size_ok("2GB"), 2ull << 30);
	ck_assert_uint_eq(size_ok("64B"), 64);
	ck_assert_uint_eq(size_ok("1T"), 1ull << 40);
	ck_assert_uint_eq(size_ok("1.5G"), 3ull << 29);
	ck_assert_uint_eq(size_ok("15E"), 15ull << 60);
	ck_assert_uint_eq(size_ok("18446744073709551615"), UINT64_MAX);
}
END_TEST

START_TEST(size_errors)
{
	size_bad("", -EINVAL);
	size_bad(" 1G", -EINVAL);
	size_bad("1G ", -EINVAL);
	size_bad("-1", -EINVAL);
	size_bad("+1", -EINVAL);
	size_bad("1X", -EINVAL);
	size_bad("1GG", -EINVAL);
	size_bad("G", -EINVAL);
	size_bad("1.", -EINVAL);
	size_bad("0.3B", -EINVAL);
	size_bad("16E", -ERANGE);
	size_bad("18446744073709551616", -ERANGE);
	size_bad("99999999999999999999999", -ERANGE);
	size_bad("17179869184G", -ERANGE);
	ck_assert_int_eq(parse_size(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(integers)
{
	uint64_t u;
	uint32_t u32;
	int i;

	ck_assert_int_eq(parse_u64("18446744073709551615", &u), 0);
	ck_assert_uint_eq(u, UINT64_MAX);
	ck_assert_int_eq(parse_u64("18446744073709551616", &u), -ERANGE);
	ck_assert_int_eq(parse_u64("0x10", &u), 0);
	ck_assert_uint_eq(u, 16);
	ck_assert_int_eq(parse_u64("-1", &u), -EINVAL);
	ck_assert_int_eq(parse_u64("12a", &u), -EINVAL);
	ck_assert_int_eq(parse_u32("4294967295", &u32), 0);
	ck_assert_uint_eq(u32, UINT32_MAX);
	ck_assert_int_eq(parse_u32("4294967296", &u32), -ERANGE);
	ck_assert_int_eq(parse_int("-2147483648", &i), 0);
	ck_assert_int_eq(i, INT32_MIN);
	ck_assert_int_eq(parse_int("2147483648", &i), -ERANGE);
	ck_assert_int_eq(parse_int("x", &i), -EINVAL);
}
END_TEST

START_TEST(ids)
{
	ck_assert(parse_id_ok("a", 3));
	ck_assert(parse_id_ok("a-1._b", 6));
	ck_assert(!parse_id_ok("a-1._b", 5)); /* longer than its bound */
	ck_assert(!parse_id_ok("", 3));
	ck_assert(!parse_id_ok("1a", 3));
	ck_assert(!parse_id_ok("a b", 3));
	ck_assert(!parse_id_ok("a/b", 3));
}
END_TEST

START_TEST(formatting)
{
	char buf[32];

	ck_assert_str_eq(format_size(512ull << 20, buf, sizeof(buf)), "512M");
	ck_assert_str_eq(format_size(1536 * 1024, buf, sizeof(buf)), "1536K");
	ck_assert_str_eq(format_size(7, buf, sizeof(buf)), "7");
	ck_assert_str_eq(format_size(0, buf, sizeof(buf)), "0");
	ck_assert_str_eq(format_size(1ull << 60, buf, sizeof(buf)), "1E");
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("parse");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, sizes);
	tcase_add_test(tc, size_errors);
	tcase_add_test(tc, integers);
	tcase_add_test(tc, ids);
	tcase_add_test(tc, formatting);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
