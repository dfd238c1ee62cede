/*
 * The host path policy: the one place that opens a host file named by a VM
 * definition, a hot-added device, a backing chain or any other client- or
 * image-supplied string.
 *
 * With roots set (vmmd.conf image-roots), a path must name a file beneath
 * one of them, and it is opened relative to the root's directory fd with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS),
 * so neither "..", nor a symbolic link, nor a rename race leads out. Where
 * the kernel lacks openat2 the path is walked one component at a time with
 * O_NOFOLLOW and ".." refused. Without roots, paths open as given.
 *
 * "/dev/fdset/N" names an fd set (common/fdset.h, add-fd): such a name is
 * opened by duplicating a passed fd, never through the file system, and
 * pathpol_check accepts it when the set exists. Names a passed image holds
 * (a qcow2's backing file) are host paths again and obey the roots.
 *
 * The policy is process-wide (the daemon sets it from its settings; vmm-img
 * leaves it unset) and may be replaced at any time (settings reload); every
 * function is thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"

/* Returned (negated) when a path lies outside the roots. */
#define PATHPOL_DENIED EXDEV

/*
 * Replace the roots with @roots (NULL-terminated; NULL or empty = no
 * restriction). Each root must be an existing directory; it is opened now.
 */
int pathpol_set_roots(char *const *roots, struct error **errp);

/* Whether roots are set. */
bool pathpol_active(void);

/*
 * open(2) under the policy: O_CLOEXEC and O_NOCTTY are always added.
 * Returns the fd, -PATHPOL_DENIED when @path is outside the roots or
 * leads out of them (symbolic link, ".."), or another -errno.
 */
int pathpol_open(const char *path, int flags, mode_t mode);

/*
 * pathpol_open() with a message naming @what ("disk image", "kernel", ...)
 * on failure: the policy's own message, or "cannot open WHAT PATH: errno".
 */
int pathpol_open_err(const char *what, const char *path, int flags, mode_t mode,
		     struct error **errp);

/*
 * Check @path against the policy without using the file: it must resolve
 * beneath a root, or, when it does not exist yet, its directory must (a log
 * file vmmd will create). 0 when no roots are set.
 */
int pathpol_check(const char *what, const char *path, struct error **errp);

/* Set the policy's message for @what @path on @errp; returns -PATHPOL_DENIED. */
int pathpol_denied(const char *what, const char *path, struct error **errp);

/* Tests: walk paths without openat2 even where the kernel has it. */
void pathpol_force_fallback(bool on);
