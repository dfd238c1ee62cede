/* Unit tests for common/fdset.c and /dev/fdset/N in common/pathpol.c. */
#define _GNU_SOURCE
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fdset.h"
#include "common/pathpol.h"

static char path[] = "/tmp/test-fdset-XXXXXX";

static void setup(void)
{
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "data", 4), 4);
	close(fd);
}

static void teardown(void)
{
	fdset_clear();
	unlink(path);
	strcpy(path, "/tmp/test-fdset-XXXXXX");
}

static int64_t add(bool has_id, int64_t id, int flags, const char *opaque)
{
	struct error *err = NULL;
	int64_t r = fdset_add(has_id, id, open(path, flags), opaque, &err);

	if (r < 0) {
		error_free(err);
	}
	return r;
}

START_TEST(names)
{
	int64_t id = -1;

	ck_assert(fdset_name("/dev/fdset/0", &id) && id == 0);
	ck_assert(fdset_name("/dev/fdset/42", &id) && id == 42);
	ck_assert(!fdset_name("/dev/fdset/", &id));
	ck_assert(!fdset_name("/dev/fdset/1x", &id));
	ck_assert(!fdset_name("/dev/fdset/-1", &id));
	ck_assert(!fdset_name("/dev/fdsetx/1", &id));
	ck_assert(!fdset_name("/tmp/dev/fdset/1", &id));
}
END_TEST

START_TEST(ids_and_access_modes)
{
	char buf[4];
	int fd;

	ck_assert_int_eq(add(false, -1, O_RDONLY, "ro"), 0);
	ck_assert_int_eq(add(true, 5, O_RDWR, NULL), 5);
	ck_assert_int_eq(add(false, -1, O_RDONLY, NULL), 1); /* the lowest unused */
	ck_assert_int_eq(add(true, 0, O_RDWR, NULL), 0);     /* into an existing set */
	ck_assert_int_eq(add(true, -2, O_RDWR, NULL), -EINVAL);
	/* the fd of the access mode asked for, a duplicate the caller owns */
	fd = pathpol_open("/dev/fdset/0", O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_eq(pread(fd, buf, 4, 0), 4);
	ck_assert_int_eq(memcmp(buf, "data", 4), 0);
	close(fd);
	ck_assert_int_eq(pathpol_open("/dev/fdset/1", O_WRONLY, 0), -EACCES);
	ck_assert_int_eq(pathpol_open("/dev/fdset/9", O_RDONLY, 0), -ENOENT);
	/* removing: one fd, then a set; a duplicate taken before stays valid */
	fd = pathpol_open("/dev/fdset/5", O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fdset_remove(5, false, -1, NULL), 0);
	ck_assert(!fdset_exists(5));
	ck_assert_int_eq(pread(fd, buf, 4, 0), 4);
	close(fd);
	ck_assert_int_eq(fdset_remove(5, false, -1, NULL), -ENOENT);
	ck_assert_int_eq(fdset_remove(0, true, 12345, NULL), -ENOENT);
	ck_assert(fdset_exists(0));
}
END_TEST

START_TEST(bounded)
{
	unsigned n = 0;

	while (add(true, n % 3, O_RDONLY, NULL) >= 0) {
		n++;
		ck_assert_uint_le(n, FDSET_MAX_FDS);
	}
	ck_assert_uint_eq(n, FDSET_MAX_FDS);
}
END_TEST

START_TEST(policy_check)
{
	struct error *err = NULL;
	char root[] = "/tmp/test-fdset-root-XXXXXX";
	char *roots[] = {root, NULL};

	ck_assert_int_eq(add(true, 3, O_RDONLY, NULL), 3);
	ck_assert_int_eq(pathpol_check("disk image", "/dev/fdset/3", NULL), 0);
	ck_assert_int_eq(pathpol_check("disk image", "/dev/fdset/4", &err), -ENOENT);
	ck_assert_str_eq(err->msg,
			 "disk image /dev/fdset/4: there is no fd set 4 (pass one with add-fd)");
	error_free(err);
	/* an empty root: the file by name is refused, its set opens all the same */
	ck_assert_ptr_nonnull(mkdtemp(root));
	ck_assert_int_eq(pathpol_set_roots(roots, NULL), 0);
	ck_assert(pathpol_active());
	ck_assert_int_eq(pathpol_open(path, O_RDONLY, 0), -PATHPOL_DENIED);
	{
		int fd = pathpol_open("/dev/fdset/3", O_RDONLY, 0);

		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	ck_assert_int_eq(pathpol_set_roots(NULL, NULL), 0);
	rmdir(root);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("fdset");
	TCase *tc = tcase_create("fdset");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, names);
	tcase_add_test(tc, ids_and_access_modes);
	tcase_add_test(tc, bounded);
	tcase_add_test(tc, policy_check);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
