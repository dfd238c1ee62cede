/*
 * vmmd's settings: built-in defaults, the settings file (vmmd.conf(5), a
 * "key = value" format) and command-line overrides. Pure parsing apart from
 * reading the file; control thread only.
 */
#pragma once

#include "daemon/privilege.h"
#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"
#include "monitor/monitor.h"

enum config_log_target {
	CONFIG_LOG_AUTO, /* the journal when stderr is connected to it, else stderr */
	CONFIG_LOG_STDERR,
	CONFIG_LOG_JOURNAL,
};

struct daemon_config {
	char *config_path; /* the settings file read (or that would be) */
	char *socket_path;
	char *socket_group; /* NULL: none */
	mode_t socket_mode;
	char *state_dir;
	char *run_dir;
	char **image_roots; /* NULL-terminated; NULL = any path */
	struct monitor_limits lim;
	struct monitor_version version; /* qmp-version, qmp-package */
	unsigned max_vms;
	int log_level;
	enum config_log_target log_target;
	bool seccomp;  /* per-thread-kind seccomp filters (sandbox.h); restart to change */
	bool keep_vms; /* under systemd, SIGTERM hands running VMs to the fd store (keep.h) */
	uint64_t populate_rate;	      /* restore-populate-rate: bytes/s, 0 = unpaced (vm_host) */
	unsigned job_nice;	      /* job-nice: VM setup/teardown below the VMs' priority */
	unsigned start_timeout;	      /* start-timeout: seconds a VM's setup may take */
	struct privilege_config priv; /* limits and capabilities (privilege.h); restart to change */
};

#define CONFIG_SYSTEM_PATH "/etc/vmmd/vmmd.conf"
#define CONFIG_DEFAULT_MAX_VMS 256
#define CONFIG_DEFAULT_JOB_NICE 10
#define CONFIG_DEFAULT_START_TIMEOUT 60

/*
 * Fill @c with the built-in defaults: the system paths, or with
 * @user_session those under $XDG_RUNTIME_DIR, $XDG_STATE_HOME and
 * $XDG_CONFIG_HOME (falling back to ~/.local/state and ~/.config).
 */
int config_defaults(struct daemon_config *c, bool user_session, struct error **errp);
/*
 * Apply settings text (the file format); @origin names it in errors
 * ("vmmd.conf:12: ..."). Unknown keys and bad values are errors.
 */
int config_parse_text(struct daemon_config *c, const char *text, const char *origin,
		      struct error **errp);
/* Read c->config_path; a missing file is an error only if @must_exist. */
int config_load_file(struct daemon_config *c, bool must_exist, struct error **errp);
void config_release(struct daemon_config *c);
/* Replace a string setting (copies @value). */
int config_set_string(char **field, const char *value, struct error **errp);
