/*
 * Privilege after set-up (issue 14): resource limits and the capability
 * sets vmmd keeps, applied once on the control thread after the sockets
 * and directories exist and before the seccomp filter (which forbids
 * capset) and before any other thread exists (capabilities and limits are
 * per thread and inherited).
 *
 * Limits (vmmd.conf limit-nofile, limit-core, limit-memlock): RLIMIT_NOFILE
 * is raised to the hard limit (each VM holds dozens of fds) or set;
 * RLIMIT_CORE is 0 by default, since a core dump would hold every guest's
 * RAM, and then the process is also made non-dumpable (no ptrace or
 * /proc/PID/mem by other processes of the same user); RLIMIT_MEMLOCK is
 * left as inherited unless set.
 *
 * Capabilities (vmmd.conf capabilities): a daemon started with any keeps
 * only those listed (by default what the systemd unit's bounding set
 * allows: tap creation, socket groups, images of other users, locked
 * memory, limits and priorities) in its permitted, effective and bounding
 * sets; the inheritable and ambient sets are cleared. An unprivileged
 * daemon has none to drop.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

#define PRIVILEGE_LIMIT_KEEP UINT64_MAX /* leave the limit as inherited */
#define PRIVILEGE_LIMIT_INFINITY (UINT64_MAX - 1)
#define PRIVILEGE_CAPS_ALL UINT64_MAX /* keep every capability */
/* CAP_CHOWN, DAC_OVERRIDE, FOWNER, NET_ADMIN, IPC_LOCK, SYS_NICE, SYS_RESOURCE */
#define PRIVILEGE_CAPS_DEFAULT                                                                  \
	((1ull << 0) | (1ull << 1) | (1ull << 3) | (1ull << 12) | (1ull << 14) | (1ull << 23) | \
	 (1ull << 24))

struct privilege_config {
	uint64_t limit_nofile;	/* 0: the hard limit; KEEP; or a count */
	uint64_t limit_core;	/* bytes, INFINITY or KEEP; default 0 */
	uint64_t limit_memlock; /* bytes, INFINITY or KEEP (default) */
	uint64_t caps_keep;	/* capability bits kept, or PRIVILEGE_CAPS_ALL */
};

void privilege_defaults(struct privilege_config *p);

/*
 * Parse a "capabilities" value: a comma-separated list of names with or
 * without "cap_" ("net_admin,chown"), "all" or "none".
 */
int privilege_parse_caps(const char *v, uint64_t *ret, struct error **errp);
/* "unlimited", "keep" or a size/count (parse_size); for limit-* settings. */
int privilege_parse_limit(const char *v, bool size, uint64_t *ret, struct error **errp);

/* Apply @p to the calling thread (the only one): limits, dumpable, capabilities. */
int privilege_apply(const struct privilege_config *p, struct error **errp);

/* The names of the capabilities in @mask, comma-separated, into @buf (for the log). */
const char *privilege_caps_string(uint64_t mask, char *buf, size_t len);
