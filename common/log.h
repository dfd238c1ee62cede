/*
 * Logging for the program boundary (daemon, tools). Library code returns
 * errors instead of logging. Two backends: stderr (default; with a level
 * prefix and structured fields appended) and the systemd journal (structured
 * fields VM= and DEVICE= as journal fields). Anything a guest or a client can
 * trigger repeatedly goes through a struct ratelimit.
 *
 * Threads: callable from any thread; the backend and level are set once at
 * start-up (and on SIGHUP from the control thread) and read without locks.
 * Each ratelimit object is protected by its own mutex.
 */
#pragma once

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "common/util.h"

enum log_backend {
	LOG_BACKEND_STDERR,
	LOG_BACKEND_JOURNAL,
};

void log_set_backend(enum log_backend backend);
void log_set_level(int level); /* LOG_ERR .. LOG_DEBUG */
int log_get_level(void);
/* Parse "err", "warning", "notice", "info", "debug" (or 0..7). -EINVAL if unknown. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);
/* Prefix for stderr lines, e.g. the program name. Not copied. */
void log_set_ident(const char *ident);

/*
 * Log one message. @vm and @device may be NULL; when set they are journal
 * fields VM= and DEVICE= (and "[vm/device]" on stderr).
 */
void log_full(int level, const char *vm, const char *device, const char *fmt, ...) _printf_(4, 5);
void log_fullv(int level, const char *vm, const char *device, const char *fmt, va_list ap)
	_printf_(4, 0);

#define log_error(...) log_full(LOG_ERR, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, NULL, NULL, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, NULL, NULL, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, NULL, NULL, __VA_ARGS__)

/*
 * At most @burst messages per @interval_us; the first message after a
 * suppressed run reports how many were dropped.
 */
struct ratelimit {
	pthread_mutex_t lock;
	uint64_t interval_us;
	unsigned burst;
	uint64_t begin_us;
	unsigned printed;
	unsigned missed;
};

#define RATELIMIT_INIT(interval_us_, burst_)                                      \
	{                                                                         \
		.lock = PTHREAD_MUTEX_INITIALIZER, .interval_us = (interval_us_), \
		.burst = (burst_),                                                \
	}

/*
 * True if a message may be emitted now. *ret_missed (may be NULL) receives
 * the count suppressed since the last allowed message.
 */
bool ratelimit_allow(struct ratelimit *rl, unsigned *ret_missed);
/* Test hook: ratelimit_allow() with an explicit clock. */
bool ratelimit_allow_at(struct ratelimit *rl, uint64_t now_us, unsigned *ret_missed);

void log_ratelimited(struct ratelimit *rl, int level, const char *vm, const char *device,
		     const char *fmt, ...) _printf_(5, 6);

/* Monotonic clock in microseconds. */
uint64_t now_monotonic_us(void);
