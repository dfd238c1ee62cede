/*
 * Out of memory on demand, for the paths that copy a string: a test linked
 * with -Wl,--wrap=strdup (and tests/unit/strdup-fail.c) makes every
 * strdup() of the string strdup_fail_on points to fail with ENOMEM, in the
 * code under test too; NULL (the default) fails none.
 */
#ifndef TESTS_UNIT_STRDUP_FAIL_H
#define TESTS_UNIT_STRDUP_FAIL_H

extern const char *strdup_fail_on;

char *__real_strdup(const char *s);
char *__wrap_strdup(const char *s);

#endif
