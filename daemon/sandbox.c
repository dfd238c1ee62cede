/*
 * seccomp filters per thread kind: see sandbox.h.
 *
 * The lists were taken from strace -f of the daemon over the VM, block,
 * network, protocol and systemd tests (thread kinds told apart by their
 * PR_SET_NAME: the control thread, vmmd-job, vm-io and its block-layer
 * helpers, vcpuN); docs/security.md has the method. Names this libseccomp
 * does not know are skipped.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/util.h"
#include "daemon/sandbox.h"

/* Every thread: what the daemon as a whole calls (the control thread's list). */
static const char *const base_calls[] = {
	/* memory, threads, signals, time */
	"brk",
	"mmap",
	"munmap",
	"mprotect",
	"mremap",
	"madvise",
	"membarrier",
	"futex",
	"set_robust_list",
	"rseq",
	"clone",
	"clone3",
	"exit",
	"exit_group",
	"gettid",
	"getpid",
	"getppid",
	"tgkill",
	"tkill",
	"rt_sigaction",
	"rt_sigprocmask",
	"rt_sigreturn",
	"rt_sigtimedwait",
	"sigaltstack",
	"restart_syscall",
	"sched_yield",
	"sched_getaffinity",
	"nanosleep",
	"clock_nanosleep",
	"clock_gettime",
	"clock_getres",
	"gettimeofday",
	"getrandom",
	"getpriority",
	"setpriority",
	"sched_setattr", /* the control thread steps down and up: control-sched.h */
	"prctl",
	"seccomp",
	"arch_prctl",
	"prlimit64",
	"getrlimit",
	"getrusage",
	"sysinfo",
	"uname",
	"getuid",
	"geteuid",
	"getgid",
	"getegid",
	"getgroups",
	/* files (opened through the path policy) */
	"openat",
	"openat2",
	"open",
	"close",
	"close_range",
	"read",
	"write",
	"readv",
	"writev",
	"pread64",
	"pwrite64",
	"preadv",
	"pwritev",
	"preadv2",
	"pwritev2",
	"lseek",
	"fsync",
	"fdatasync",
	"fallocate",
	"ftruncate",
	"sync_file_range",
	"fadvise64",
	"flock",
	"fcntl",
	"dup",
	"dup2",
	"dup3",
	"pipe",
	"pipe2",
	"newfstatat",
	"fstat",
	"stat",
	"lstat",
	"statx",
	"statfs",
	"fstatfs",
	"readlink",
	"readlinkat",
	"access",
	"faccessat",
	"faccessat2",
	"getcwd",
	"getdents64",
	"unlink",
	"unlinkat",
	"rename",
	"renameat",
	"renameat2",
	"mkdir",
	"mkdirat",
	"rmdir", /* a failed vm-save removes its temporary directory */
	"chmod",
	"fchmod",
	"fchmodat",
	"chown",
	"fchown",
	"fchownat",
	"umask",
	"memfd_create",
	"copy_file_range",
	"ioctl",
	"userfaultfd", /* a restore of shared RAM (job threads; else /dev/userfaultfd) */
	/* event loops, eventfds, io_uring */
	"epoll_create1",
	"epoll_ctl",
	"epoll_wait",
	"epoll_pwait",
	"poll",
	"ppoll",
	"select",
	"pselect6",
	"eventfd2",
	"signalfd4",
	"timerfd_create",
	"timerfd_settime",
	"timerfd_gettime",
	"io_uring_setup",
	"io_uring_enter",
	"io_uring_register",
	/* sockets: control, console, NBD, slirp, systemd, journal */
	"socket",
	"socketpair",
	"bind",
	"listen",
	"accept",
	"accept4",
	"connect",
	"shutdown",
	"getsockname",
	"getpeername",
	"getsockopt",
	"setsockopt",
	"sendto",
	"recvfrom",
	"sendmsg",
	"recvmsg",
	"sendmmsg",
	"recvmmsg",
	/* margin: harmless calls of libraries (librbd, glib, libslirp) and of
	 * features the test suite does not reach yet; reviewed, not observed */
	"io_setup",
	"io_submit",
	"io_getevents",
	"io_pgetevents",
	"io_destroy",
	"io_cancel",
	"sched_setaffinity",
	"sched_getparam",
	"sched_getscheduler",
	"getcpu",
	"ioprio_get",
	"ioprio_set",
	"mlock",
	"mlock2",
	"munlock",
	"mincore",
	"msync",
	"get_mempolicy",
	"set_mempolicy",
	"mbind",
	"getdents",
	"inotify_init1",
	"inotify_add_watch",
	"inotify_rm_watch",
	"timer_create",
	"timer_settime",
	"timer_gettime",
	"timer_delete",
	"getitimer",
	"setitimer",
	"capget",
	"getresuid",
	"getresgid",
	"getpgid",
	"getsid",
	"get_robust_list",
	"rt_sigqueueinfo",
	"rt_tgsigqueueinfo",
	"kill",
	"pause",
	"eventfd",
	"epoll_create",
	"splice",
	"tee",
	"sendfile",
	"readahead",
	"truncate",
	"utimensat",
	"futimesat",
	"linkat",
	"symlinkat",
	"rmdir",
	"chdir",
	"fchdir",
	"syncfs",
	"fgetxattr",
	"getxattr",
	"lgetxattr",
	"flistxattr",
	"futex_waitv",
	"times",
#ifdef __SANITIZE_ADDRESS__
	/* LeakSanitizer stops the world with ptrace at exit (./run check --sanitize) */
	"ptrace",
	"wait4",
	"waitid",
#endif
};

/*
 * What AddressSanitizer needs on threads with a narrow list: LeakSanitizer
 * stops the world with ptrace at exit, the symbolizer reads /proc.
 */
#ifdef __SANITIZE_ADDRESS__
#define SANITIZER_CALLS "ptrace", "wait4", "waitid", "readlink", "openat", "exit_group",
#else
#define SANITIZER_CALLS
#endif

/* vCPU threads: register-level emulation only. No opening, no new sockets. */
static const char *const vcpu_calls[] = {
	"brk",
	"mmap",
	"munmap",
	"mprotect",
	"madvise",
	"futex",
	"set_robust_list",
	"rseq",
	"clone",
	"clone3",
	"exit",
	"gettid",
	"getpid",
	"tgkill",
	"rt_sigprocmask",
	"rt_sigreturn",
	"rt_sigaction",
	"restart_syscall",
	"sched_yield",
	"nanosleep",
	"clock_nanosleep",
	"clock_gettime",
	"getrandom",
	"prctl",
	"read",
	"write",
	"readv",
	"writev",
	"pread64",
	"pwrite64",
	"preadv",
	"pwritev",
	"preadv2",
	"pwritev2",
	"lseek",
	"fsync",
	"fdatasync",
	"fallocate",
	"sendto",
	"sendmsg",
	"recvfrom",
	"recvmsg",
	"io_uring_enter",
	"close",
	"mremap",
	"fcntl",
	"fstat",
	"newfstatat",
	"getsockopt",
	"shutdown",
	"timerfd_settime",
	"timerfd_gettime",
	"clock_getres",
	"gettimeofday",
	"getcpu",
	"sched_getaffinity",
	"get_robust_list",
	"sigaltstack",
	SANITIZER_CALLS
	/* ioctl: KVM's (type 0xAE) and TUNSETOFFLOAD, added below with argument filters */
};

/*
 * Job (worker) threads and everything they start (a VM's I/O thread and its
 * block-layer helpers inherit their filter): the base list less what only
 * the control thread does (start-up, clients) or nobody does, with these
 * calls narrowed by their arguments (job_rules below): ioctl to KVM, tap
 * and block-device requests; socket to the UNIX, IP and netlink families;
 * clone to new threads (no processes), clone3 answered ENOSYS (glibc then
 * uses clone, whose flags a filter can see); prlimit64 to reading limits.
 */
static const char *const job_denied[] = {
	"chdir",
	"fchdir",
	"umask",
	"linkat",
	"symlinkat",
	"kill",
	"rt_sigqueueinfo",
	"rt_tgsigqueueinfo",
	"inotify_init1",
	"inotify_add_watch",
	"inotify_rm_watch",
	"pause",
	"ioctl",
	"socket",
	"clone",
	"clone3",
	"prlimit64",
	"setitimer",
	"getitimer",
	"syncfs",
	"sched_setattr",
};

/*
 * The I/O thread and its helpers: the job list less what changes the file
 * system's names and modes or the process: they read and write open files,
 * sockets and eventfds, accept console clients and reconnect NBD. They
 * submit on the block layer's io_uring rings (io_uring_enter) but never
 * create or register one: rings are set up, restricted to the block
 * layer's opcodes, on job threads (vm_new) and the control thread
 * (device_add). A new ring would be unrestricted: its requests pass no
 * filter (block/aio.c).
 */
static const char *const io_denied[] = {
	"io_uring_setup",  "io_uring_register",
	"unlink",	   "unlinkat",
	"rename",	   "renameat",
	"renameat2",	   "mkdir",
	"mkdirat",	   "rmdir",
	"chmod",	   "fchmod",
	"fchmodat",	   "chown",
	"fchown",	   "fchownat",
	"memfd_create",	   "seccomp",
	"truncate",	   "utimensat",
	"futimesat",	   "setpriority",
	"ioprio_set",	   "sched_setaffinity",
	"set_mempolicy",   "mbind",
	"copy_file_range", "userfaultfd",
};

/*
 * The userfaultfd handler of a restored VM (on top of the job list it
 * inherits): waits on its fds, reads the memory file, issues userfaultfd
 * ioctls (type 0xAA, added below), logs, and exits.
 */
static const char *const uffd_calls[] = {
	"brk",
	"mmap",
	"munmap",
	"madvise",
	"futex",
	"set_robust_list",
	"rseq",
	"exit",
	"gettid",
	"getpid",
	"tgkill",
	"rt_sigprocmask",
	"rt_sigreturn",
	"restart_syscall",
	"sched_yield",
	"clock_gettime",
	"clock_nanosleep",
	"nanosleep",
	"getrandom",
	"prctl",
	"poll",
	"ppoll",
	"read",
	"write",
	"writev",
	"pread64",
	"lseek",
	"close",
	"fstat",
	"newfstatat",
	"sendmsg",
	"sendto",
	"socket",
	"connect",
	"get_robust_list",
	"sigaltstack",
	SANITIZER_CALLS /* an ASan build's */
};

/* ioctl type of userfaultfd and /dev/userfaultfd (UFFDIO_*, USERFAULTFD_IOC_NEW) */
static const scmp_datum_t uffd_ioctl_type = 0xaa00;

static const scmp_datum_t tunsetoffload = TUNSETOFFLOAD;
static bool enabled;
static int violation_fd = -1;
static __thread int *tls_flag;
/* -1: a thread that never called sandbox_enter (a library's; it runs its creator's filters) */
static __thread int tls_kind = -1;

void sandbox_set_enabled(bool on)
{
	enabled = on;
}

bool sandbox_enabled(void)
{
	return enabled;
}

const char *sandbox_kind_name(enum sandbox_kind kind)
{
	static const char *const names[] = {"control", "job", "io", "vcpu", "io-helper", "uffd"};

	return (unsigned)kind < ARRAY_SIZE(names) ? names[kind] : "?";
}

const char *sandbox_syscall_name(int nr, char *buf, unsigned len)
{
	char *n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

	snprintf(buf, len, "%s", n ? n : "?");
	free(n);
	return buf;
}

/* Async-signal-safe decimal. */
static size_t put_num(char *p, long v)
{
	char tmp[24];
	size_t n = 0, i = 0;

	if (v < 0) {
		p[i++] = '-';
		v = -v;
	}
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n) {
		p[i++] = tmp[--n];
	}
	return i;
}

static size_t put_str(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return n;
}

static void on_sigsys(int sig, siginfo_t *si, void *uctx)
{
	ucontext_t *uc = uctx;
	int saved = errno;
	char line[160];
	size_t n = 0;

	/* The call fails; it never runs. */
	uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
	n += put_str(line + n, "vmmd: seccomp: forbidden system call ");
	n += put_num(line + n, si->si_syscall);
	n += put_str(line + n, " in a ");
	n += put_str(line + n, tls_kind < 0 ? "other" : sandbox_kind_name(tls_kind));
	n += put_str(line + n, tls_flag ? " thread: failed, its VM is stopped\n"
					: " thread: failed with EPERM\n");
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere else to say it. */
	}
	if (tls_flag) {
		uint64_t one = 1;

		__atomic_store_n(tls_flag, si->si_syscall ? si->si_syscall : -1, __ATOMIC_RELEASE);
		if (write(violation_fd, &one, sizeof(one)) < 0) {
			/* Saturated: the control thread is awake anyway. */
		}
	}
	errno = saved;
}

/*
 * glibc's free() reads /proc/sys/vm/overcommit_memory the first time it
 * shrinks the heap of a thread's own arena (once per process): a vCPU or
 * I/O thread freeing large blocks first would open a file under its
 * filter and have its VM stopped. A throwaway thread (its own arena)
 * shrinks one first.
 */
static void *shrink_an_arena(void *unused)
{
	void *p[8];

	for (size_t i = 0; i < ARRAY_SIZE(p); i++) {
		p[i] = malloc(100 * 1024); /* under the mmap threshold: from the arena */
		__asm__ volatile("" : : "r"(p[i]) : "memory");
	}
	for (size_t i = 0; i < ARRAY_SIZE(p); i++) {
		free(p[i]);
	}
	return unused;
}

int sandbox_init(int fd, struct error **errp)
{
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	pthread_t t;

	violation_fd = fd;
	/*
	 * glibc reads /etc/localtime at the first localtime(); a vCPU thread (the
	 * RTC) must not open it under its filter (Cloud Hypervisor #2111).
	 */
	tzset();
	if (pthread_create(&t, NULL, shrink_an_arena, NULL) == 0) {
		pthread_join(t, NULL);
	}
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		return error_set_errno(errp, errno, "cannot install the SIGSYS handler");
	}
	return 0;
}

static bool listed(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(name, list[i]) == 0) {
			return true;
		}
	}
	return false;
}

/* Add @names with @action, except those on @but1 or @but2 (NULL: none). */
static int add_list_but(scmp_filter_ctx ctx, const char *const *names, size_t n, uint32_t action,
			const char *const *but1, size_t n1, const char *const *but2, size_t n2)
{
	for (size_t i = 0; i < n; i++) {
		int nr, r;

		if ((but1 && listed(names[i], but1, n1)) || (but2 && listed(names[i], but2, n2))) {
			continue;
		}
		nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR) {
			continue;
		}
		r = seccomp_rule_add(ctx, action, nr, 0);
		if (r < 0 && r != -EEXIST) {
			return r;
		}
	}
	return 0;
}

static int add_list(scmp_filter_ctx ctx, const char *const *names, size_t n, uint32_t action)
{
	return add_list_but(ctx, names, n, action, NULL, 0, NULL, 0);
}

/* The argument-narrowed calls of job and I/O threads (see job_denied). */
static int add_job_rules(scmp_filter_ctx ctx)
{
	/* ioctl request types: KVM, 'T' (tap, and the tty requests of isatty), block devices */
	static const scmp_datum_t ioctl_types[] = {0xae00, 0x5400, 0x1200};
	static const scmp_datum_t families[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(ioctl_types) && r == 0; i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, ioctl_types[i]));
	}
	for (size_t i = 0; i < ARRAY_SIZE(families) && r == 0; i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				     SCMP_A0(SCMP_CMP_EQ, families[i]));
	}
	if (r == 0) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	}
	if (r == 0) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	}
	if (r == 0) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
				     SCMP_A2(SCMP_CMP_EQ, 0));
	}
	return r;
}

int *sandbox_work_for(int *flag)
{
	int *old = tls_flag;

	/* (a plain store: the SIGSYS handler runs on this same thread) */
	__atomic_store_n(&tls_flag, flag, __ATOMIC_RELAXED);
	return old;
}

int sandbox_enter(enum sandbox_kind kind, int *flag, struct error **errp)
{
	scmp_filter_ctx ctx;
	sigset_t sys;
	int r;

	tls_kind = kind;
	tls_flag = flag;
	if (!enabled) {
		return 0;
	}
	/*
	 * A blocked SIGSYS from a filter kills the whole process: threads are
	 * created with it unblocked (thread_block_signals), and so is this one.
	 */
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	if (kind == SANDBOX_IO_HELPER) {
		/*
		 * Its creator's filters stay (the I/O thread's list may not call
		 * seccomp() at all); only the attribution to the VM is new.
		 */
		return 0;
	}
	ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx) {
		return error_set(errp, ENOMEM, "seccomp_init failed");
	}
	switch (kind) {
	case SANDBOX_VCPU:
		r = add_list(ctx, vcpu_calls, ARRAY_SIZE(vcpu_calls), SCMP_ACT_ALLOW);
		if (r == 0) {
			/* KVM_RUN and every other KVM ioctl: _IOC type 0xAE. */
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, 0xae00));
		}
		if (r == 0) {
			/* The guest's driver sets a tap's offloads (virtio-net features). */
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					     SCMP_A1(SCMP_CMP_EQ, tunsetoffload));
		}
		break;
	case SANDBOX_JOB:
		r = add_list_but(ctx, base_calls, ARRAY_SIZE(base_calls), SCMP_ACT_ALLOW,
				 job_denied, ARRAY_SIZE(job_denied), NULL, 0);
		if (r == 0) {
			r = add_job_rules(ctx);
		}
		if (r == 0) {
			/* a restore registers shared RAM (its handler inherits this) */
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, uffd_ioctl_type));
		}
		break;
	case SANDBOX_UFFD:
		r = add_list(ctx, uffd_calls, ARRAY_SIZE(uffd_calls), SCMP_ACT_ALLOW);
		if (r == 0) {
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, uffd_ioctl_type));
		}
		break;
	case SANDBOX_IO:
	case SANDBOX_IO_HELPER:
		r = add_list_but(ctx, base_calls, ARRAY_SIZE(base_calls), SCMP_ACT_ALLOW,
				 job_denied, ARRAY_SIZE(job_denied), io_denied,
				 ARRAY_SIZE(io_denied));
		if (r == 0) {
			r = add_job_rules(ctx);
		}
		break;
	default:
		r = add_list(ctx, base_calls, ARRAY_SIZE(base_calls), SCMP_ACT_ALLOW);
		break;
	}
	if (r == 0) {
		r = seccomp_load(ctx);
	}
	seccomp_release(ctx);
	if (r < 0) {
		return error_set_errno(errp, -r, "cannot load the seccomp filter of the %s thread",
				       sandbox_kind_name(kind));
	}
	return 0;
}
