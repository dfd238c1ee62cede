/* Unit tests for common/pathpol.c: the host path policy (image-roots). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pathpol.h"

static char tmp[256], root[512], outside[512];

__attribute__((format(printf, 1, 2))) static void touch(const char *fmt, ...)
{
	char p[PATH_MAX];
	int fd;

	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

static void setup(void)
{
	char p[PATH_MAX], q[PATH_MAX];
	char *roots[2] = {root, NULL};

	snprintf(tmp, sizeof(tmp), "/tmp/test-pathpol.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	snprintf(root, sizeof(root), "%s/root", tmp);
	snprintf(outside, sizeof(outside), "%s/outside", tmp);
	ck_assert_int_eq(mkdir(root, 0700), 0);
	ck_assert_int_eq(mkdir(outside, 0700), 0);
	snprintf(p, sizeof(p), "%s/sub", root);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	touch("%s/in.img", root);
	touch("%s/sub/deep.img", root);
	touch("%s/secret", outside);
	/* Links inside the root that lead out, and one that stays in. */
	snprintf(p, sizeof(p), "%s/secret", outside);
	snprintf(q, sizeof(q), "%s/link-out.img", root);
	ck_assert_int_eq(symlink(p, q), 0);
	snprintf(q, sizeof(q), "%s/dir-out", root);
	ck_assert_int_eq(symlink(outside, q), 0);
	snprintf(q, sizeof(q), "%s/link-in.img", root);
	ck_assert_int_eq(symlink("in.img", q), 0);
	ck_assert_int_eq(pathpol_set_roots(roots, NULL), 0);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	pathpol_set_roots(NULL, NULL);
	pathpol_force_fallback(false);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	ck_assert_int_eq(system(cmd), 0);
}

__attribute__((format(printf, 1, 2))) static int try_open(const char *fmt, ...)
{
	char p[PATH_MAX];
	int fd;

	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	fd = pathpol_open(p, O_RDONLY, 0);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return fd;
}

static void check_all(void)
{
	ck_assert(pathpol_active());
	ck_assert_int_eq(try_open("%s/in.img", root), 0);
	ck_assert_int_eq(try_open("%s/sub/deep.img", root), 0);
	ck_assert_int_eq(try_open("%s//sub/./deep.img", root), 0);
	ck_assert_int_eq(try_open("%s/missing.img", root), -ENOENT);
	/* Outside, by name, by "..", by a link to a file or a directory. */
	ck_assert_int_eq(try_open("%s/secret", outside), -PATHPOL_DENIED);
	ck_assert_int_eq(try_open("%s/../outside/secret", root), -PATHPOL_DENIED);
	ck_assert_int_eq(try_open("%s/sub/../../outside/secret", root), -PATHPOL_DENIED);
	ck_assert_int_eq(try_open("%s/link-out.img", root), -PATHPOL_DENIED);
	ck_assert_int_eq(try_open("%s/dir-out/secret", root), -PATHPOL_DENIED);
	/* No symbolic links at all, even ones that stay inside. */
	ck_assert_int_eq(try_open("%s/link-in.img", root), -PATHPOL_DENIED);
	ck_assert_int_eq(try_open("%s", "/etc/passwd"), -PATHPOL_DENIED);
	ck_assert_int_eq(try_open("%s", "/proc/self/root/etc/passwd"), -PATHPOL_DENIED);
}

START_TEST(beneath_openat2)
{
	check_all();
}
END_TEST

START_TEST(beneath_fallback)
{
	pathpol_force_fallback(true);
	check_all();
}
END_TEST

START_TEST(create_and_check)
{
	char p[PATH_MAX];
	struct error *err = NULL;
	int fd;

	snprintf(p, sizeof(p), "%s/new.log", root);
	fd = pathpol_open(p, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(pathpol_check("log", p, NULL), 0);
	snprintf(p, sizeof(p), "%s/not-yet.log", root);
	ck_assert_int_eq(pathpol_check("log", p, NULL), 0);
	/* A file to create through a directory link that leads out. */
	snprintf(p, sizeof(p), "%s/dir-out/new.log", root);
	ck_assert_int_eq(pathpol_open(p, O_WRONLY | O_CREAT, 0600), -PATHPOL_DENIED);
	ck_assert_int_eq(pathpol_check("debugcon file", p, &err), -PATHPOL_DENIED);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err->msg, "outside the image roots"));
	error_free(err);
	snprintf(p, sizeof(p), "%s/new.log", outside);
	ck_assert_int_eq(pathpol_check("log", p, NULL), -PATHPOL_DENIED);
	ck_assert_int_eq(access(p, F_OK), -1);
}
END_TEST

START_TEST(no_roots)
{
	char p[PATH_MAX];

	ck_assert_int_eq(pathpol_set_roots(NULL, NULL), 0);
	ck_assert(!pathpol_active());
	snprintf(p, sizeof(p), "%s/secret", outside);
	ck_assert_int_eq(try_open("%s", p), 0);
	ck_assert_int_eq(pathpol_check("x", p, NULL), 0);
}
END_TEST

START_TEST(bad_root)
{
	char *roots[] = {"/nonexistent/root", NULL};
	struct error *err = NULL;

	ck_assert_int_eq(pathpol_set_roots(roots, &err), -ENOENT);
	error_free(err);
	/* The old roots stay. */
	ck_assert(pathpol_active());
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("pathpol");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, beneath_openat2);
	tcase_add_test(tc, beneath_fallback);
	tcase_add_test(tc, create_and_check);
	tcase_add_test(tc, no_roots);
	tcase_add_test(tc, bad_root);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
