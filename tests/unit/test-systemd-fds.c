/*
 * Unit tests of the fds systemd passes (daemon/systemd.c): the listening
 * socket and the fd store's kept fds told apart by name, and the errors
 * when they cannot be (two sockets, out of memory for the kept names).
 *
 * systemd passes fds from 3 on, where check keeps its own, so each case
 * runs in a child that puts its fds there and writes what systemd.c said
 * into a pipe.
 */
#define _GNU_SOURCE
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/systemd.h"
#include "tests/unit/strdup-fail.h"

#define KEPT SYSTEMD_KEEP_PREFIX "vm1/ram"

static int listening_socket(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	/* autobind: an abstract name of the kernel's choice */
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa_family_t)) < 0 ||
	    listen(fd, 1) < 0) {
		_exit(2);
	}
	return fd;
}

/* In the child: pass @kinds ('S' socket, 'K' memfd) named @names, report. */
static void child(const char *kinds, const char *names, int out)
{
	struct error *err = NULL;
	char **kept_names, buf[256];
	int *kept_fds, fd, n = 0, len;
	unsigned kept;

	for (const char *k = kinds; *k; k++, n++) {
		int f = *k == 'S' ? listening_socket() : memfd_create("kept", 0);

		if (f < 0 || dup2(f, 3 + n) < 0) {
			_exit(2);
		}
	}
	snprintf(buf, sizeof(buf), "%d", (int)getpid());
	setenv("LISTEN_PID", buf, 1);
	snprintf(buf, sizeof(buf), "%d", n);
	setenv("LISTEN_FDS", buf, 1);
	setenv("LISTEN_FDNAMES", names, 1);
	fd = systemd_listen_fd(&err);
	kept = systemd_kept_fds(&kept_names, &kept_fds);
	if (fd < 0) {
		len = snprintf(buf, sizeof(buf), "error %d: %s", -fd, err ? err->msg : "");
	} else {
		len = snprintf(buf, sizeof(buf), "socket %d, kept %u: %s at %d", fd, kept,
			       kept ? kept_names[0] : "-", kept ? kept_fds[0] : -1);
	}
	_exit(write(out, buf, (size_t)len) == len ? 0 : 2);
}

static const char *run(const char *kinds, const char *names)
{
	static char buf[256];
	int p[2], status;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* out of the way of the fds the child passes */
		child(kinds, names, dup2(p[1], 20));
	}
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	return buf;
}

START_TEST(socket_and_kept_fd)
{
	ck_assert_str_eq(run("SK", "vmmd.socket:" KEPT), "socket 3, kept 1: " KEPT " at 4");
	ck_assert_str_eq(run("KS", KEPT ":vmmd.socket"), "socket 4, kept 1: " KEPT " at 3");
}
END_TEST

START_TEST(two_sockets)
{
	ck_assert_str_eq(run("SS", "a:b"),
			 "error 22: systemd passed more than one socket; vmmd.socket must have "
			 "exactly one ListenStream=");
}
END_TEST

/* A kept fd whose name cannot be copied is not taken for a second socket. */
START_TEST(kept_name_out_of_memory)
{
	strdup_fail_on = KEPT;
	ck_assert_str_eq(run("SK", "vmmd.socket:" KEPT),
			 "error 12: out of memory for the fds systemd passed");
	ck_assert_str_eq(run("K", KEPT), "error 12: out of memory for the fds systemd passed");
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("systemd-fds");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, socket_and_kept_fd);
	tcase_add_test(tc, two_sockets);
	tcase_add_test(tc, kept_name_out_of_memory);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
