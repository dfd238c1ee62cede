/* Logging backends and rate limiting: see log.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "common/log.h"

static enum log_backend backend = LOG_BACKEND_STDERR;
static int max_level = LOG_INFO;
static const char *ident;

static const char *const level_names[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

void log_set_backend(enum log_backend b)
{
	backend = b;
}

void log_set_level(int level)
{
	max_level = level;
}

int log_get_level(void)
{
	return max_level;
}

void log_set_ident(const char *id)
{
	ident = id;
}

int log_level_from_string(const char *s)
{
	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0') {
		return s[0] - '0';
	}
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			return (int)i;
		}
	}
	if (strcasecmp(s, "error") == 0) {
		return LOG_ERR;
	}
	if (strcasecmp(s, "warn") == 0) {
		return LOG_WARNING;
	}
	return -EINVAL;
}

const char *log_level_to_string(int level)
{
	if (level < 0 || (size_t)level >= ARRAY_SIZE(level_names)) {
		return "unknown";
	}
	return level_names[level];
}

void log_fullv(int level, const char *vm, const char *device, const char *fmt, va_list ap)
{
	char buf[2048];
	int saved = errno;

	if (level > max_level) {
		return;
	}
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (backend == LOG_BACKEND_JOURNAL) {
		sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%d", level,
				vm ? "VM=%s" : "VM=", vm ? vm : "",
				device ? "DEVICE=%s" : "DEVICE=", device ? device : "", NULL);
	} else {
		char ctx[256] = "";

		if (vm || device) {
			snprintf(ctx, sizeof(ctx), "[%s%s%s] ", vm ? vm : "",
				 vm && device ? "/" : "", device ? device : "");
		}
		fprintf(stderr, "%s%s%s: %s%s\n", ident ? ident : "", ident ? " " : "",
			log_level_to_string(level), ctx, buf);
	}
	errno = saved;
}

void log_full(int level, const char *vm, const char *device, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_fullv(level, vm, device, fmt, ap);
	va_end(ap);
}

uint64_t now_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool ratelimit_allow_at(struct ratelimit *rl, uint64_t now_us, unsigned *ret_missed)
{
	bool ok;

	pthread_mutex_lock(&rl->lock);
	if (rl->begin_us == 0 || now_us - rl->begin_us >= rl->interval_us) {
		rl->begin_us = now_us;
		rl->printed = 0;
	}
	ok = rl->printed < rl->burst;
	if (ok) {
		rl->printed++;
		if (ret_missed) {
			*ret_missed = rl->missed;
		}
		rl->missed = 0;
	} else {
		rl->missed++;
	}
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

bool ratelimit_allow(struct ratelimit *rl, unsigned *ret_missed)
{
	return ratelimit_allow_at(rl, now_monotonic_us(), ret_missed);
}

void log_ratelimited(struct ratelimit *rl, int level, const char *vm, const char *device,
		     const char *fmt, ...)
{
	unsigned missed = 0;
	va_list ap;

	if (level > max_level || !ratelimit_allow(rl, &missed)) {
		return;
	}
	if (missed) {
		log_full(level, vm, device, "%u similar messages suppressed", missed);
	}
	va_start(ap, fmt);
	log_fullv(level, vm, device, fmt, ap);
	va_end(ap);
}
