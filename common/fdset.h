/*
 * fd sets: QEMU's add-fd / remove-fd / query-fdsets, and the names
 * "/dev/fdset/N" that stand for set N wherever a host path is accepted
 * (disk images, blockdev-add files, kernels, logs...). A client passes open
 * files over SCM_RIGHTS, so a daemon that may not open the images itself
 * (a sandbox, another user's files) can still use them.
 *
 * Opening "/dev/fdset/N" with access mode O_RDONLY, O_WRONLY or O_RDWR
 * dups an fd of set N opened with the same access mode (QEMU's rule), and
 * applies O_DIRECT, O_APPEND and O_NONBLOCK from the requested flags to the
 * shared file description as QEMU does. The dup is the opener's: removing
 * the fd from its set (remove-fd) does not affect a VM that opened it.
 *
 * Sets are daemon-wide (as in one QEMU process) and outlive the client
 * that added them; a set is gone when its last fd is removed. Bounded:
 * FDSET_MAX_FDS fds over all sets. Every function is thread-safe (VMs are
 * set up on worker threads while clients add and remove fds).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

#define FDSET_PREFIX "/dev/fdset/"
#define FDSET_MAX_FDS 64
#define FDSET_MAX_OPAQUE 256

/*
 * Add @fd (taken over, also on error) to set @id, created if needed; @id
 * < 0 with !@has_id: the lowest unused set number. @opaque may be NULL.
 * Returns the set's number, or -errno with QEMU's message.
 */
int64_t fdset_add(bool has_id, int64_t id, int fd, const char *opaque, struct error **errp);

/* Close and remove @fd (or, with !@has_fd, every fd) of set @id. */
int fdset_remove(int64_t id, bool has_fd, int64_t fd, struct error **errp);

/* Call @fn for every fd of every set, sets and fds in ascending order. */
void fdset_foreach(void (*fn)(void *opaque, int64_t id, int fd, const char *fd_opaque),
		   void *opaque);

/* Whether @path is "/dev/fdset/N" (N a decimal set number): N in *@ret_id. */
bool fdset_name(const char *path, int64_t *ret_id);

/* Open "/dev/fdset/N" with @flags: a new fd (O_CLOEXEC), or -ENOENT / -EACCES / -errno. */
int fdset_open(const char *path, int flags);

/* Whether set @id exists (for early checks of definitions). */
bool fdset_exists(int64_t id);

/* Tests: close every set. */
void fdset_clear(void);
