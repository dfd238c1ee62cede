/* The control thread's scheduling policy: see control-sched.h. */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/control-sched.h"

/* linux/sched.h and uapi/linux/sched/types.h clash with glibc's sched.h */
#define KERNEL_SCHED_DEADLINE 6
#define SCHED_FLAG_RESET_ON_FORK 0x01
#define SCHED_FLAG_RECLAIM 0x02

/*
 * The fair policy's time slice (sched_runtime of SCHED_OTHER, Linux 6.12
 * and later; older kernels ignore it): a short slice gives an early
 * deadline, so the scheduler lets the thread preempt the running one when
 * a client writes.
 */
#define CONTROL_SLICE_NS 100000
/*
 * SCHED_DEADLINE: 8 ms of every 10 ms reserved, more where no other
 * deadline task uses its share (SCHED_FLAG_RECLAIM). A smaller reservation
 * (1 ms) made it wait for the next period under VM lifecycles alone;
 * without reclaiming it stalled 2 ms of every 10 under a command flood.
 */
#define CONTROL_DL_RUNTIME_NS 8000000
#define CONTROL_DL_PERIOD_NS 10000000
/*
 * Stepping down and up: the share of one CPU the thread used over a window
 * of at least 50 ms (measured at the first turn of the loop after it).
 * Under 16 clients cycling VMs it uses about a quarter of a CPU; a flood
 * of commands takes all of one.
 */
#define CONTROL_WINDOW_NS 50000000
#define CONTROL_STEP_DOWN_PCT 70
#define CONTROL_STEP_UP_PCT 30

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int set_attr(const struct kernel_sched_attr *a)
{
	return syscall(SYS_sched_setattr, 0, a, 0) == 0 ? 0 : -errno;
}

static const char *policy_name(const struct kernel_sched_attr *a)
{
	return a->sched_policy == SCHED_FIFO ? "SCHED_FIFO 1" : "SCHED_DEADLINE";
}

void control_sched_boost(struct control_sched *s)
{
	int nice = getpriority(PRIO_PROCESS, 0);
	int r_fifo, r_dl;

	memset(s, 0, sizeof(*s));
	s->fair = (struct kernel_sched_attr){
		.size = sizeof(s->fair),
		.sched_policy = SCHED_OTHER,
		.sched_flags = SCHED_FLAG_RESET_ON_FORK,
		.sched_nice = nice - 5,
		.sched_runtime = CONTROL_SLICE_NS,
	};
	/*
	 * Reset on fork: the threads it creates (block jobs, migrations) and
	 * the processes it forks start at the daemon's own policy and nice
	 * value, like the VM threads and workers.
	 */
	s->rt = (struct kernel_sched_attr){
		.size = sizeof(s->rt),
		.sched_policy = SCHED_FIFO,
		.sched_flags = SCHED_FLAG_RESET_ON_FORK,
		.sched_priority = 1,
	};
	r_fifo = set_attr(&s->rt);
	if (r_fifo == 0) {
		log_debug("control thread at SCHED_FIFO 1");
		s->adaptive = true;
		return;
	}
	s->rt = (struct kernel_sched_attr){
		.size = sizeof(s->rt),
		.sched_policy = KERNEL_SCHED_DEADLINE,
		.sched_flags = SCHED_FLAG_RESET_ON_FORK | SCHED_FLAG_RECLAIM,
		.sched_runtime = CONTROL_DL_RUNTIME_NS,
		.sched_deadline = CONTROL_DL_PERIOD_NS,
		.sched_period = CONTROL_DL_PERIOD_NS,
	};
	r_dl = set_attr(&s->rt);
	if (r_dl == 0) {
		log_info("control thread at SCHED_DEADLINE, %d of every %d ms (SCHED_FIFO: %s)",
			 CONTROL_DL_RUNTIME_NS / 1000000, CONTROL_DL_PERIOD_NS / 1000000,
			 strerror(-r_fifo));
		s->adaptive = true;
		return;
	}
	/* said once at start: without it, answers can wait behind busy guests */
	log_notice("control thread not real-time (SCHED_FIFO: %s, SCHED_DEADLINE: %s; needs "
		   "CAP_SYS_NICE or RLIMIT_RTPRIO, and a real-time budget in its cgroup): nice "
		   "%d instead",
		   strerror(-r_fifo), strerror(-r_dl), nice - 5);
	if (set_attr(&s->fair) == 0) {
		return;
	}
	if (setpriority(PRIO_PROCESS, 0, nice - 5) < 0) {
		log_notice("control thread priority not raised either: %s", strerror(errno));
	}
}

void control_sched_settle(struct control_sched *s)
{
	int r;

	if (!s->adaptive) {
		return;
	}
	r = set_attr(&s->fair);
	if (r < 0) {
		s->adaptive = false;
		log_info("control thread stays at %s under a command flood (nice %d: %s)",
			 policy_name(&s->rt), s->fair.sched_nice, strerror(-r));
		return;
	}
	r = set_attr(&s->rt);
	if (r < 0) {
		s->adaptive = false;
		s->stepped_down = true;
		log_notice("control thread at nice %d: %s refused after set-up (%s)",
			   s->fair.sched_nice, policy_name(&s->rt), strerror(-r));
		return;
	}
	s->window_ns = clock_ns(CLOCK_MONOTONIC);
	s->window_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

void control_sched_tick(struct control_sched *s)
{
	uint64_t now, cpu, span, used;
	int r;

	if (!s->adaptive) {
		return;
	}
	now = clock_ns(CLOCK_MONOTONIC);
	span = now - s->window_ns;
	if (span < CONTROL_WINDOW_NS) {
		return;
	}
	cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	used = cpu - s->window_cpu_ns;
	s->window_ns = now;
	s->window_cpu_ns = cpu;
	if (!s->stepped_down && used * 100 >= span * CONTROL_STEP_DOWN_PCT) {
		r = set_attr(&s->fair);
		if (r == 0) {
			s->stepped_down = true;
			log_debug("control thread used %u%% of a CPU: nice %d until it is light "
				  "again",
				  (unsigned)(used * 100 / span), s->fair.sched_nice);
		}
	} else if (s->stepped_down && used * 100 <= span * CONTROL_STEP_UP_PCT) {
		/* refused for now (another deadline task took the bandwidth): next window */
		r = set_attr(&s->rt);
		if (r == 0) {
			s->stepped_down = false;
			log_debug("control thread used %u%% of a CPU: back at %s",
				  (unsigned)(used * 100 / span), policy_name(&s->rt));
		}
	}
}
