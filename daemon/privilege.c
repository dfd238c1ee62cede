/* Resource limits and capabilities after set-up: see privilege.h. */
#include "config.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/parse.h"
#include "common/util.h"
#include "daemon/privilege.h"

/* Index = capability number (linux/capability.h), lower-case without "cap_". */
static const char *const cap_names[] = {
	"chown",
	"dac_override",
	"dac_read_search",
	"fowner",
	"fsetid",
	"kill",
	"setgid",
	"setuid",
	"setpcap",
	"linux_immutable",
	"net_bind_service",
	"net_broadcast",
	"net_admin",
	"net_raw",
	"ipc_lock",
	"ipc_owner",
	"sys_module",
	"sys_rawio",
	"sys_chroot",
	"sys_ptrace",
	"sys_pacct",
	"sys_admin",
	"sys_boot",
	"sys_nice",
	"sys_resource",
	"sys_time",
	"sys_tty_config",
	"mknod",
	"lease",
	"audit_write",
	"audit_control",
	"setfcap",
	"mac_override",
	"mac_admin",
	"syslog",
	"wake_alarm",
	"block_suspend",
	"audit_read",
	"perfmon",
	"bpf",
	"checkpoint_restore",
};

void privilege_defaults(struct privilege_config *p)
{
	p->limit_nofile = 0;
	p->limit_core = 0;
	p->limit_memlock = PRIVILEGE_LIMIT_KEEP;
	p->caps_keep = PRIVILEGE_CAPS_DEFAULT;
}

int privilege_parse_caps(const char *v, uint64_t *ret, struct error **errp)
{
	_cleanup_free_ char *copy = strdup(v);
	char *save = NULL, *tok;
	uint64_t mask = 0;

	if (!copy) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (strcmp(v, "all") == 0) {
		*ret = PRIVILEGE_CAPS_ALL;
		return 0;
	}
	if (strcmp(v, "none") == 0) {
		*ret = 0;
		return 0;
	}
	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		const char *n = strncasecmp(tok, "cap_", 4) == 0 ? tok + 4 : tok;
		size_t i;

		for (i = 0; i < ARRAY_SIZE(cap_names); i++) {
			if (strcasecmp(n, cap_names[i]) == 0) {
				break;
			}
		}
		if (i == ARRAY_SIZE(cap_names)) {
			return error_set(
				errp, EINVAL,
				"capabilities: '%s' is not a capability name (or all, none)", tok);
		}
		mask |= 1ull << i;
	}
	*ret = mask;
	return 0;
}

int privilege_parse_limit(const char *v, bool size, uint64_t *ret, struct error **errp)
{
	uint64_t x;

	if (strcmp(v, "unlimited") == 0 || strcmp(v, "infinity") == 0) {
		*ret = PRIVILEGE_LIMIT_INFINITY;
		return 0;
	}
	if (strcmp(v, "keep") == 0) {
		*ret = PRIVILEGE_LIMIT_KEEP;
		return 0;
	}
	if ((size ? parse_size(v, &x) : parse_u64(v, &x)) < 0 || x >= PRIVILEGE_LIMIT_INFINITY) {
		return error_set(errp, EINVAL, "'%s' is not %s, unlimited or keep", v,
				 size ? "a size" : "a number");
	}
	*ret = x;
	return 0;
}

const char *privilege_caps_string(uint64_t mask, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(cap_names) && n < len; i++) {
		if (mask & (1ull << i)) {
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "", cap_names[i]);
		}
	}
	if (!buf[0]) {
		snprintf(buf, len, "none");
	}
	return buf;
}

static int set_limit(int res, const char *name, uint64_t want, struct error **errp)
{
	struct rlimit rl;

	if (want == PRIVILEGE_LIMIT_KEEP) {
		return 0;
	}
	if (getrlimit(res, &rl) < 0) {
		return error_set_errno(errp, errno, "cannot read %s", name);
	}
	if (want == 0 && res == RLIMIT_NOFILE) {
		rl.rlim_cur = rl.rlim_max; /* 0 for NOFILE: up to the hard limit */
	} else {
		rl.rlim_cur = want == PRIVILEGE_LIMIT_INFINITY ? RLIM_INFINITY : (rlim_t)want;
		/* Raising the hard limit needs CAP_SYS_RESOURCE; lowering it is always allowed. */
		if (rl.rlim_max != RLIM_INFINITY &&
		    (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > rl.rlim_max)) {
			rl.rlim_max = rl.rlim_cur;
		}
	}
	if (setrlimit(res, &rl) < 0) {
		return error_set_errno(errp, errno, "cannot set %s to %llu", name,
				       (unsigned long long)want);
	}
	return 0;
}

static int get_caps(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};

	return (int)syscall(SYS_capget, &h, d);
}

int privilege_apply(const struct privilege_config *p, struct error **errp)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	uint64_t have, keep;

	if (set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", p->limit_nofile, errp) < 0 ||
	    set_limit(RLIMIT_CORE, "RLIMIT_CORE", p->limit_core, errp) < 0 ||
	    set_limit(RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", p->limit_memlock, errp) < 0) {
		return -1;
	}
#ifndef __SANITIZE_ADDRESS__
	/* LeakSanitizer ptraces the process at exit: it must stay dumpable there. */
	if (p->limit_core == 0 && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		return error_set_errno(errp, errno, "cannot make the process non-dumpable");
	}
#endif
	if (p->caps_keep == PRIVILEGE_CAPS_ALL) {
		return 0;
	}
	if (get_caps(d) < 0) {
		return error_set_errno(errp, errno, "cannot read the capability sets");
	}
	have = d[0].permitted | (uint64_t)d[1].permitted << 32;
	keep = have & p->caps_keep;
	/* The bounding set first: dropping from it needs CAP_SETPCAP, which goes next. */
	for (unsigned c = 0; c < ARRAY_SIZE(cap_names); c++) {
		if (!(p->caps_keep & (1ull << c)) && prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1 &&
		    prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EPERM) {
			return error_set_errno(errp, errno,
					       "cannot drop cap_%s from the bounding set",
					       cap_names[c]);
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
		return error_set_errno(errp, errno, "cannot clear the ambient capabilities");
	}
	memset(d, 0, sizeof(d));
	d[0].permitted = d[0].effective = (uint32_t)keep;
	d[1].permitted = d[1].effective = (uint32_t)(keep >> 32);
	if (syscall(SYS_capset, &h, d) < 0) {
		return error_set_errno(errp, errno, "cannot drop capabilities");
	}
	return 0;
}
