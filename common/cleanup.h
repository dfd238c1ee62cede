/*
 * Scope-bound cleanup, after systemd's style. A variable declared with one of
 * these attributes is released when it leaves scope; TAKE_PTR/TAKE_FD move
 * ownership out so the release becomes a no-op. All destructors accept the
 * "empty" value (NULL, -1).
 */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;

		close(*fd);
		errno = saved;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f) {
		fclose(*f);
	}
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Return the value of a pointer variable and set the variable to NULL. */
#define TAKE_PTR(p)                        \
	({                                 \
		__typeof__(p) *_pp = &(p); \
		__typeof__(p) _ret = *_pp; \
		*_pp = NULL;               \
		_ret;                      \
	})

/* Return the value of an fd variable and set the variable to -1. */
#define TAKE_FD(fd)                \
	({                         \
		int *_pfd = &(fd); \
		int _ret = *_pfd;  \
		*_pfd = -1;        \
		_ret;              \
	})

/*
 * Define a pointer destructor "NAMEp" for a type whose "free" function
 * accepts NULL, for use with _cleanup_(NAMEp).
 */
#define DEFINE_CLEANUP_FUNC(type, func)      \
	static inline void func##p(type **p) \
	{                                    \
		if (*p) {                    \
			func(*p);            \
		}                            \
	}
