/* Unit tests for common/log.c: levels, stderr output, rate limiting. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

START_TEST(levels)
{
	ck_assert_int_eq(log_level_from_string("debug"), LOG_DEBUG);
	ck_assert_int_eq(log_level_from_string("WARNING"), LOG_WARNING);
	ck_assert_int_eq(log_level_from_string("warn"), LOG_WARNING);
	ck_assert_int_eq(log_level_from_string("error"), LOG_ERR);
	ck_assert_int_eq(log_level_from_string("3"), LOG_ERR);
	ck_assert_int_eq(log_level_from_string("loud"), -EINVAL);
	ck_assert_str_eq(log_level_to_string(LOG_INFO), "info");
}
END_TEST

static char *capture(void (*fn)(void))
{
	static char buf[4096];
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, sizeof(buf) - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return buf;
}

static void emit(void)
{
	log_set_backend(LOG_BACKEND_STDERR);
	log_set_ident("unit");
	log_set_level(LOG_INFO);
	log_full(LOG_WARNING, "web1", "vda", "read error at %d", 42);
	log_debug("hidden");
	log_info("plain");
}

START_TEST(stderr_backend)
{
	const char *out = capture(emit);

	ck_assert_msg(strstr(out, "unit warning: [web1/vda] read error at 42\n") != NULL, "got: %s",
		      out);
	ck_assert_msg(strstr(out, "unit info: plain\n") != NULL, "got: %s", out);
	ck_assert_ptr_null(strstr(out, "hidden"));
}
END_TEST

START_TEST(ratelimit_burst_then_window)
{
	struct ratelimit rl = RATELIMIT_INIT(1000000, 3);
	unsigned missed = 99;
	uint64_t t = 5000000;

	for (int i = 0; i < 3; i++) {
		ck_assert(ratelimit_allow_at(&rl, t + (uint64_t)i, &missed));
		ck_assert_uint_eq(missed, 0);
	}
	for (int i = 0; i < 10; i++) {
		ck_assert(!ratelimit_allow_at(&rl, t + 100 + (uint64_t)i, &missed));
	}
	/* A new window: allowed again, and it reports the ten suppressed. */
	ck_assert(ratelimit_allow_at(&rl, t + 1000000, &missed));
	ck_assert_uint_eq(missed, 10);
	ck_assert(ratelimit_allow_at(&rl, t + 1000001, &missed));
	ck_assert_uint_eq(missed, 0);
}
END_TEST

static struct ratelimit flood_rl = RATELIMIT_INIT(60000000, 2);

static void flood(void)
{
	log_set_level(LOG_INFO);
	for (int i = 0; i < 1000; i++) {
		log_ratelimited(&flood_rl, LOG_WARNING, "vm", NULL, "flood %d", i);
	}
}

START_TEST(ratelimited_log_is_bounded)
{
	const char *out = capture(flood);
	int lines = 0;

	for (const char *p = out; *p; p++) {
		lines += *p == '\n';
	}
	ck_assert_int_eq(lines, 2);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, levels);
	tcase_add_test(tc, stderr_backend);
	tcase_add_test(tc, ratelimit_burst_then_window);
	tcase_add_test(tc, ratelimited_log_is_bounded);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
