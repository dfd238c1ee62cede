/* Unit tests for common/error.c and common/cleanup.h. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"

START_TEST(set_returns_negative_errno)
{
	struct error *e = NULL;

	ck_assert_int_eq(error_set(&e, ENOENT, "disk %s missing", "a.img"), -ENOENT);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->code, ENOENT);
	ck_assert_str_eq(e->msg, "disk a.img missing");
	ck_assert_str_eq(error_class_name(e->cls), "GenericError");
	error_free(e);
}
END_TEST

START_TEST(negative_and_zero_codes)
{
	struct error *e = NULL;

	ck_assert_int_eq(error_set(&e, -EIO, "x"), -EIO);
	ck_assert_int_eq(e->code, EIO);
	error_free(e);
	e = NULL;
	ck_assert_int_eq(error_set(&e, 0, "y"), -EINVAL);
	error_free(e);
}
END_TEST

START_TEST(null_errp_still_returns)
{
	ck_assert_int_eq(error_set(NULL, EPERM, "ignored"), -EPERM);
}
END_TEST

START_TEST(first_error_wins)
{
	struct error *e = NULL;

	error_set(&e, EIO, "first");
	error_set(&e, ENOSPC, "second");
	ck_assert_str_eq(e->msg, "first");
	ck_assert_int_eq(e->code, EIO);
	error_free(e);
}
END_TEST

START_TEST(class_errno_prefix_propagate)
{
	struct error *e = NULL, *dst = NULL;

	error_set_class(&e, ERROR_CLASS_DEVICE_NOT_FOUND, ENODEV, "no device '%s'", "vda");
	ck_assert_str_eq(error_class_name(e->cls), "DeviceNotFound");
	error_prefix(&e, "vm %s", "web1");
	ck_assert_str_eq(e->msg, "vm web1: no device 'vda'");
	error_propagate(&dst, e);
	ck_assert_ptr_eq(dst, e);
	error_free(dst);

	e = NULL;
	error_set_errno(&e, ENOENT, "open %s", "/x");
	ck_assert_str_eq(e->msg, "open /x: No such file or directory");
	error_free(e);
	error_prefix(NULL, "nothing");
	error_free(NULL);
}
END_TEST

static int freed_count;
struct thing {
	int x;
};
static void thing_free(struct thing *t)
{
	freed_count++;
	free(t);
}
DEFINE_CLEANUP_FUNC(struct thing, thing_free)

static struct thing *make_and_take(void)
{
	_cleanup_(thing_freep) struct thing *t = calloc(1, sizeof(*t));

	return TAKE_PTR(t);
}

START_TEST(cleanup_macros)
{
	int fd_copy;

	freed_count = 0;
	{
		_cleanup_(thing_freep) struct thing *t = calloc(1, sizeof(*t));
		_cleanup_(thing_freep) struct thing *none = NULL;

		(void)t;
		(void)none;
	}
	ck_assert_int_eq(freed_count, 1);
	{
		struct thing *t = make_and_take();

		ck_assert_ptr_nonnull(t);
		ck_assert_int_eq(freed_count, 1);
		thing_free(t);
	}
	{
		_cleanup_close_ int fd = open("/dev/null", O_RDONLY);

		fd_copy = fd;
		ck_assert_int_ge(fd, 0);
	}
	ck_assert_int_eq(fcntl(fd_copy, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
	{
		_cleanup_close_ int fd = open("/dev/null", O_RDONLY);
		int kept = TAKE_FD(fd);

		ck_assert_int_eq(fd, -1);
		fd_copy = kept;
	}
	ck_assert_int_ne(fcntl(fd_copy, F_GETFD), -1);
	close(fd_copy);
	{
		_cleanup_free_ char *s = strdup("freed by scope");

		ck_assert_ptr_nonnull(s);
	}
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, set_returns_negative_errno);
	tcase_add_test(tc, negative_and_zero_codes);
	tcase_add_test(tc, null_errp_still_returns);
	tcase_add_test(tc, first_error_wins);
	tcase_add_test(tc, class_errno_prefix_propagate);
	tcase_add_test(tc, cleanup_macros);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
