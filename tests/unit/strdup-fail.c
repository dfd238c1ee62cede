/* See strdup-fail.h. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "strdup-fail.h"

const char *strdup_fail_on;

char *__wrap_strdup(const char *s)
{
	if (strdup_fail_on && strcmp(s, strdup_fail_on) == 0) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_strdup(s);
}
