/*
 * The control thread's scheduling policy.
 *
 * The control thread answers clients while guests compute: with more busy
 * threads than cores it would wait for a time slice behind them (tens of
 * milliseconds on a loaded host). So it runs ahead of them where the
 * daemon may: at SCHED_FIFO priority 1, or, where that is refused (a
 * cgroup v1 without a real-time budget), at SCHED_DEADLINE with 8 ms of
 * every 10 ms reserved. Elsewhere at nice -5 with a 0.1 ms time slice.
 *
 * A real-time control thread that is itself the busy one (a flood of
 * commands) gains nothing by preempting everyone: its clients wait behind
 * it, and the kernel's caps (95% of a CPU for SCHED_FIFO, the reservation
 * for SCHED_DEADLINE) stall it for milliseconds at a time. So it watches
 * its own CPU use and steps down to nice -5 while it uses most of a CPU,
 * and back up once it is light again.
 *
 * Only the control thread calls these.
 */
#ifndef VMMD_DAEMON_CONTROL_SCHED_H
#define VMMD_DAEMON_CONTROL_SCHED_H

#include <stdbool.h>
#include <stdint.h>

/* The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER0); glibc has no wrapper. */
struct kernel_sched_attr {
	uint32_t size;
	uint32_t sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime;
	uint64_t sched_deadline;
	uint64_t sched_period;
};

struct control_sched {
	struct kernel_sched_attr rt;   /* the real-time policy it got at start, if any */
	struct kernel_sched_attr fair; /* nice -5 with a short slice */
	bool adaptive;		       /* may step down and back up */
	bool stepped_down;	       /* at the fair policy for now */
	uint64_t window_ns;	       /* CLOCK_MONOTONIC at the window's start */
	uint64_t window_cpu_ns;	       /* the thread's CPU time then */
};

/* At start-up, on the control thread: the best policy this process may have. */
void control_sched_boost(struct control_sched *s);

/*
 * After privileges were dropped: step down and back up once; if either is
 * refused now, the thread keeps the policy it has and never switches.
 */
void control_sched_settle(struct control_sched *s);

/* After each turn of the event loop: step down or up as its CPU use says. */
void control_sched_tick(struct control_sched *s);

#endif
