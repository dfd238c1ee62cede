/*
 * One scratch directory per test run for the tests that make files, made
 * and removed by check's parent process: register the pair as an
 * unchecked fixture, e.g.
 *     static void scratch_setup(void) { scratch_make("test-foo"); }
 *     tcase_add_unchecked_fixture(tc, scratch_setup, scratch_remove);
 * A checked teardown runs in the test's child only after the test
 * returned; this one also runs after a test failed or timed out, so no
 * scratch is left in $TMPDIR (default /var/tmp).
 */
#pragma once

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static char scratch[200];

static inline void scratch_make(const char *name)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";

	snprintf(scratch, sizeof(scratch), "%s/%s.XXXXXX", tmp, name);
	ck_assert_ptr_nonnull(mkdtemp(scratch));
}

static inline void scratch_remove(void)
{
	char cmd[sizeof(scratch) + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
	ck_assert_int_eq(system(cmd), 0);
}
