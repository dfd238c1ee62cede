/*
 * Thread creation with a chosen nice value: see thread.h.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/resource.h>

#include "common/thread.h"

static __thread bool child_nice_set;
static __thread int child_nice;

void thread_set_child_nice(int nice)
{
	child_nice = nice;
	child_nice_set = true;
}

int thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	int mine, r;

	if (!child_nice_set) {
		return pthread_create(thread, attr, fn, arg);
	}
	errno = 0;
	mine = getpriority(PRIO_PROCESS, 0);
	if (mine == -1 && errno) {
		return pthread_create(thread, attr, fn, arg);
	}
	/* PRIO_PROCESS with 0 is this thread alone on Linux. */
	setpriority(PRIO_PROCESS, 0, child_nice);
	r = pthread_create(thread, attr, fn, arg);
	setpriority(PRIO_PROCESS, 0, mine);
	return r;
}

void thread_block_signals(sigset_t *old)
{
	static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
	sigset_t set;

	sigfillset(&set);
	for (unsigned i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		sigdelset(&set, faults[i]);
	}
	pthread_sigmask(SIG_BLOCK, &set, old);
}
