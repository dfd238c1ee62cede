/*
 * Unit tests for daemon/sandbox.c: the filters of each thread kind, loaded
 * the way vmmd loads them (the control thread's list on the process, the
 * kind's own on top in a thread), in a forked child so the test runner
 * stays unfiltered. A forbidden call must fail with EPERM, never run; on a
 * VM thread (I/O, vCPU, a block-layer helper, a job thread while it works
 * for one VM) it must also flag the VM and wake the control thread; calls
 * the kind needs must still work.
 */
#define _GNU_SOURCE
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/io_uring.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>

#include "common/util.h"
#include "daemon/sandbox.h"

static int efd;
static int violated;

/* Each check that fails sets one bit of the child's exit status. */
#define CHECK(bit, cond)                    \
	do {                                \
		if (!(cond)) {              \
			bad |= 1u << (bit); \
		}                           \
	} while (0)

static bool denied(long r)
{
	return r == -1 && errno == EPERM;
}

static void *nested(void *arg)
{
	*(int *)arg = denied(chdir("/"));
	return NULL;
}

static void *job_thread(void *arg)
{
	unsigned bad = 0;
	struct rlimit rl;
	pthread_t t;
	int fd, ok = 0, dn;

	CHECK(0, sandbox_enter(SANDBOX_JOB, NULL, NULL) == 0);
	/* what jobs need */
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(1, fd >= 0 && write(fd, "x", 1) == 1);
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(2, fd >= 0);
	CHECK(3, getrlimit(RLIMIT_NOFILE, &rl) == 0);
	/* a new thread (clone3 answers ENOSYS, glibc falls back to clone) inherits the list */
	CHECK(4, pthread_create(&t, NULL, nested, &ok) == 0 && pthread_join(t, NULL) == 0 && ok);
	/* what they must not do */
	CHECK(5, denied(chdir("/")));
	CHECK(6, denied(socket(AF_PACKET, SOCK_RAW, 0)));
	{
		struct ifreq ifr = {0};

		CHECK(7, denied(ioctl(fd, SIOCGIFFLAGS, &ifr)));
	}
	close(fd);
	CHECK(8, denied(prlimit(0, RLIMIT_NOFILE, &rl, NULL)));
	dn = (int)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); /* a process, not a thread */
	if (dn == 0) {
		_exit(0);
	}
	CHECK(9, denied(dn));
	CHECK(10, denied(syscall(SYS_kill, getpid(), 0)));
	/* a job is no VM thread: nothing flagged */
	CHECK(11, violated == 0);
	/* it sets up the block layer's io_uring rings (vm_new) */
	{
		struct io_uring_params p = {.flags = IORING_SETUP_R_DISABLED};
		int rfd = (int)syscall(SYS_io_uring_setup, 4, &p);

		CHECK(12, rfd >= 0 && syscall(SYS_io_uring_register, rfd,
					      IORING_REGISTER_ENABLE_RINGS, NULL, 0) == 0);
		close(rfd);
	}
	return (void *)(uintptr_t)bad;
}

static void *io_thread(void *arg)
{
	unsigned bad = 0;
	uint64_t v = 0;
	int fd;

	CHECK(0, sandbox_enter(SANDBOX_IO, &violated, NULL) == 0);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(1, fd >= 0);
	close(fd);
	CHECK(2, violated == 0);
	CHECK(3, denied(mkdir("/tmp/test-sandbox-never", 0700)));
	CHECK(4, violated == SYS_mkdir);
	CHECK(5, read(efd, &v, sizeof(v)) == sizeof(v) && v >= 1);
	CHECK(6, access("/tmp/test-sandbox-never", F_OK) < 0);
	CHECK(7, denied(unlink("/tmp/test-sandbox-never")));
	CHECK(8, denied(chdir("/")));
	CHECK(9, denied(setpriority(PRIO_PROCESS, 0, 5)));
	/* no new io_uring ring: its requests would pass no filter (block/aio.c) */
	{
		struct io_uring_params p = {0};

		CHECK(10, denied(syscall(SYS_io_uring_setup, 4, &p)));
		CHECK(11, denied(syscall(SYS_io_uring_register, -1, IORING_REGISTER_ENABLE_RINGS,
					 NULL, 0)));
	}
	return (void *)(uintptr_t)bad;
}

/* A block-layer worker started by the I/O thread: its list, the VM's flag. */
static void *helper_main(void *arg)
{
	unsigned bad = 0;
	uint64_t v = 0;

	CHECK(0, sandbox_enter(SANDBOX_IO_HELPER, &violated, NULL) == 0);
	CHECK(1, violated == 0);
	CHECK(2, denied(mkdir("/tmp/test-sandbox-never", 0700)));
	CHECK(3, violated == SYS_mkdir);
	CHECK(4, read(efd, &v, sizeof(v)) == sizeof(v) && v >= 1);
	CHECK(5, access("/tmp/test-sandbox-never", F_OK) < 0);
	/* the I/O thread's list it inherited: no new io_uring ring either */
	violated = 0;
	{
		struct io_uring_params p = {0};

		CHECK(6, denied(syscall(SYS_io_uring_setup, 4, &p)));
		CHECK(7, violated == SYS_io_uring_setup);
	}
	return (void *)(uintptr_t)bad;
}

static void *helper_thread(void *arg)
{
	unsigned bad = 0;
	void *ret = (void *)(uintptr_t)~0u;
	pthread_t t;
	int flag = 0;

	CHECK(0, sandbox_enter(SANDBOX_IO, &flag, NULL) == 0);
	if (pthread_create(&t, NULL, helper_main, NULL) == 0) {
		pthread_join(t, &ret);
	}
	bad |= (unsigned)(uintptr_t)ret << 1;
	/* the violation was the helper's VM's, through its own flag */
	CHECK(20, flag == 0);
	return (void *)(uintptr_t)bad;
}

/* A job thread working for one VM for a while: violations are that VM's, then nobody's. */
static void *job_for_vm_thread(void *arg)
{
	unsigned bad = 0;
	uint64_t v = 0;
	int *old;

	CHECK(0, sandbox_enter(SANDBOX_JOB, NULL, NULL) == 0);
	old = sandbox_work_for(&violated);
	CHECK(1, old == NULL);
	CHECK(2, denied(chdir("/")));
	CHECK(3, violated == SYS_chdir);
	CHECK(4, read(efd, &v, sizeof(v)) == sizeof(v) && v >= 1);
	CHECK(5, sandbox_work_for(old) == &violated);
	violated = 0;
	CHECK(6, denied(chdir("/")));
	CHECK(7, violated == 0);
	CHECK(8, read(efd, &v, sizeof(v)) < 0 && errno == EAGAIN);
	return (void *)(uintptr_t)bad;
}

static void *vcpu_thread(void *arg)
{
	unsigned bad = 0;

	CHECK(0, sandbox_enter(SANDBOX_VCPU, &violated, NULL) == 0);
	CHECK(1, denied(socket(AF_UNIX, SOCK_STREAM, 0)));
	CHECK(2, violated == SYS_socket);
#ifndef __SANITIZE_ADDRESS__
	/* (ASan builds allow openat on vCPU threads: its reports read /proc/self/maps) */
	CHECK(3, denied(open("/dev/null", O_RDONLY)));
#endif
	return (void *)(uintptr_t)bad;
}

/* Large blocks freed: glibc shrinks this thread's arena (a file read the first time). */
static void *vcpu_free_thread(void *arg)
{
	unsigned bad = 0;
	void *p[8];

	CHECK(0, sandbox_enter(SANDBOX_VCPU, &violated, NULL) == 0);
	for (unsigned i = 0; i < ARRAY_SIZE(p); i++) {
		p[i] = malloc(100 * 1024); /* under the mmap threshold: from the arena */
		CHECK(1, p[i] != NULL);
		__asm__ volatile("" : : "r"(p[i]) : "memory");
	}
	for (unsigned i = 0; i < ARRAY_SIZE(p); i++) {
		free(p[i]);
	}
	CHECK(2, violated == 0);
	return (void *)(uintptr_t)bad;
}

/* A restored VM's userfaultfd handler, started by the job thread below. */
static void *uffd_handler(void *arg)
{
	unsigned bad = 0;
	int ufd = *(int *)arg;
	struct uffdio_api api = {.api = UFFD_API};
	struct pollfd p = {.fd = ufd, .events = POLLIN};
	struct winsize ws;

	CHECK(0, sandbox_enter(SANDBOX_UFFD, &violated, NULL) == 0);
	/* what it needs: userfaultfd ioctls, poll, reading the memory file */
	CHECK(1, ioctl(ufd, UFFDIO_API, &api) == 0);
	CHECK(2, poll(&p, 1, 0) == 0);
	CHECK(3, lseek(ufd, 0, SEEK_CUR) >= 0 || errno != EPERM);
	CHECK(4, violated == 0);
	/* nothing else: no opening, no other ioctl, no new userfaultfd */
#ifndef __SANITIZE_ADDRESS__
	/* (ASan builds allow openat on every thread: its reports read /proc/self/maps) */
	CHECK(5, denied(open("/dev/null", O_RDONLY | O_CLOEXEC)));
	CHECK(6, violated == SYS_openat);
	violated = 0;
#endif
	CHECK(7, denied(ioctl(0, TIOCGWINSZ, &ws)));
	CHECK(8, denied(syscall(SYS_userfaultfd, O_CLOEXEC)));
	return (void *)(uintptr_t)bad;
}

static void *uffd_job_thread(void *arg)
{
	unsigned bad = 0;
	void *ret = (void *)(uintptr_t)~0u;
	pthread_t t;
	int ufd, dev;

	CHECK(0, sandbox_enter(SANDBOX_JOB, NULL, NULL) == 0);
	/* a restore makes the userfaultfd on its job thread (either way) */
	ufd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (ufd < 0) {
		dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		ufd = dev >= 0 ? ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK) : -1;
		close(dev);
	}
	if (ufd < 0 && (errno == EPERM || errno == EACCES || errno == ENOENT)) {
		return NULL; /* no userfaultfd for this user: nothing to check */
	}
	CHECK(1, ufd >= 0);
	CHECK(2, pthread_create(&t, NULL, uffd_handler, &ufd) == 0 && pthread_join(t, &ret) == 0);
	/* a job is no VM thread, the handler is: the job's own calls flag nothing */
	close(ufd);
	return (void *)(uintptr_t)(bad | (unsigned)(uintptr_t)ret << 3);
}

/* The I/O thread may not make a userfaultfd. */
static void *io_uffd_thread(void *arg)
{
	unsigned bad = 0;

	CHECK(0, sandbox_enter(SANDBOX_IO, &violated, NULL) == 0);
	CHECK(1, denied(syscall(SYS_userfaultfd, O_CLOEXEC)));
	return (void *)(uintptr_t)bad;
}

/*
 * Fork; the child loads the control list, runs @fn in a thread and sends
 * back its failed-check bits through a pipe.
 */
static unsigned run_kind(void *(*fn)(void *))
{
	unsigned bad = ~0u;
	int p[2], st;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pthread_t t;
		void *ret = (void *)(uintptr_t)~0u;

		close(p[0]);
		efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		sandbox_set_enabled(true);
		if (efd >= 0 && sandbox_init(efd, NULL) == 0 &&
		    sandbox_enter(SANDBOX_CONTROL, NULL, NULL) == 0 &&
		    pthread_create(&t, NULL, fn, NULL) == 0) {
			pthread_join(t, &ret);
		}
		bad = (unsigned)(uintptr_t)ret;
		_exit(write(p[1], &bad, sizeof(bad)) == sizeof(bad) ? 0 : 1);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &bad, sizeof(bad)), sizeof(bad));
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	return bad;
}

START_TEST(job_list)
{
	unsigned r = run_kind(job_thread);

	ck_assert_msg(r == 0, "job thread checks failed: %#x", r);
}
END_TEST

START_TEST(io_list)
{
	unsigned r = run_kind(io_thread);

	ck_assert_msg(r == 0, "I/O thread checks failed: %#x", r);
}
END_TEST

START_TEST(vcpu_list)
{
	unsigned r = run_kind(vcpu_thread);

	ck_assert_msg(r == 0, "vCPU thread checks failed: %#x", r);
}
END_TEST

START_TEST(vcpu_frees)
{
	unsigned r = run_kind(vcpu_free_thread);

	ck_assert_msg(r == 0, "vCPU thread freeing large blocks: checks failed: %#x", r);
}
END_TEST

START_TEST(io_helper_list)
{
	unsigned r = run_kind(helper_thread);

	ck_assert_msg(r == 0, "I/O helper thread checks failed: %#x", r);
}
END_TEST

START_TEST(job_for_vm)
{
	unsigned r = run_kind(job_for_vm_thread);

	ck_assert_msg(r == 0, "job thread (for a VM) checks failed: %#x", r);
}
END_TEST

START_TEST(uffd_list)
{
	unsigned r = run_kind(uffd_job_thread);

	ck_assert_msg(r == 0, "userfaultfd handler thread checks failed: %#x", r);
	r = run_kind(io_uffd_thread);
	ck_assert_msg(r == 0, "I/O thread userfaultfd checks failed: %#x", r);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc = tcase_create("kinds");

	tcase_add_test(tc, job_list);
	tcase_add_test(tc, io_list);
	tcase_add_test(tc, vcpu_list);
	tcase_add_test(tc, vcpu_frees);
	tcase_add_test(tc, io_helper_list);
	tcase_add_test(tc, job_for_vm);
	tcase_add_test(tc, uffd_list);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
