/*
 * The settings file and defaults: see config.h and vmmd.conf(5).
 * Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/parse.h"
#include "daemon/settings.h"

int config_set_string(char **field, const char *value, struct error **errp)
{
	char *s = value ? strdup(value) : NULL;

	if (value && !s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	free(*field);
	*field = s;
	return 0;
}

static void free_strv(char **v)
{
	for (char **p = v; p && *p; p++) {
		free(*p);
	}
	free(v);
}

void config_release(struct daemon_config *c)
{
	free(c->config_path);
	free(c->socket_path);
	free(c->socket_group);
	free(c->state_dir);
	free(c->run_dir);
	free_strv(c->image_roots);
	memset(c, 0, sizeof(*c));
}

static char *join(const char *a, const char *b)
{
	char *p = NULL;

	return asprintf(&p, "%s%s", a, b) < 0 ? NULL : p;
}

int config_defaults(struct daemon_config *c, bool user_session, struct error **errp)
{
	memset(c, 0, sizeof(*c));
	c->socket_mode = 0660;
	/* monitor_default_version()'s values (this file links without the monitor) */
	c->version.major = MONITOR_DEFAULT_QEMU_MAJOR;
	c->version.minor = MONITOR_DEFAULT_QEMU_MINOR;
	c->version.micro = MONITOR_DEFAULT_QEMU_MICRO;
	snprintf(c->version.package, sizeof(c->version.package), "vmmd-%s", PACKAGE_VERSION);
	c->lim.max_clients = MONITOR_DEFAULT_MAX_CLIENTS;
	c->lim.max_message = MONITOR_DEFAULT_MAX_MESSAGE;
	c->lim.max_depth = MONITOR_DEFAULT_MAX_DEPTH;
	c->lim.max_output = MONITOR_DEFAULT_MAX_OUTPUT;
	c->lim.negotiation_timeout = MONITOR_DEFAULT_NEGOTIATION_TIMEOUT;
	c->max_vms = CONFIG_DEFAULT_MAX_VMS;
	c->job_nice = CONFIG_DEFAULT_JOB_NICE;
	c->start_timeout = CONFIG_DEFAULT_START_TIMEOUT;
	c->log_level = LOG_INFO;
	c->log_target = CONFIG_LOG_AUTO;
	c->seccomp = true;
	c->keep_vms = true;
	privilege_defaults(&c->priv);
	if (!user_session) {
		c->config_path = strdup(CONFIG_SYSTEM_PATH);
		c->socket_path = strdup("/run/vmmd/vmmd.sock");
		c->state_dir = strdup("/var/lib/vmmd");
		c->run_dir = strdup("/run/vmmd");
	} else {
		const char *rt = getenv("XDG_RUNTIME_DIR");
		const char *st = getenv("XDG_STATE_HOME");
		const char *cf = getenv("XDG_CONFIG_HOME");
		const char *home = getenv("HOME");

		if (!rt || rt[0] != '/') {
			return error_set(
				errp, EINVAL,
				"--user-session needs $XDG_RUNTIME_DIR (an absolute path)");
		}
		if ((!st || st[0] != '/' || !cf || cf[0] != '/') && (!home || home[0] != '/')) {
			return error_set(errp, EINVAL,
					 "--user-session needs $HOME or "
					 "$XDG_STATE_HOME and $XDG_CONFIG_HOME");
		}
		c->socket_path = join(rt, "/vmmd/vmmd.sock");
		c->run_dir = join(rt, "/vmmd");
		c->state_dir =
			st && st[0] == '/' ? join(st, "/vmmd") : join(home, "/.local/state/vmmd");
		c->config_path = cf && cf[0] == '/' ? join(cf, "/vmmd/vmmd.conf")
						    : join(home, "/.config/vmmd/vmmd.conf");
		c->socket_mode = 0600;
	}
	if (!c->config_path || !c->socket_path || !c->state_dir || !c->run_dir) {
		config_release(c);
		return error_set(errp, ENOMEM, "out of memory");
	}
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t') {
		s++;
	}
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
		*--e = '\0';
	}
	return s;
}

static int parse_count(const char *v, uint64_t min, uint64_t max, bool size, uint64_t *ret)
{
	uint64_t x;
	int r = size ? parse_size(v, &x) : parse_u64(v, &x);

	if (r < 0) {
		return r;
	}
	if (x < min || x > max) {
		return -ERANGE;
	}
	*ret = x;
	return 0;
}

static int add_roots(struct daemon_config *c, char *v, struct error **errp)
{
	size_t n = 0;
	char *save = NULL;

	for (char **p = c->image_roots; p && *p; p++) {
		n++;
	}
	for (char *tok = strtok_r(v, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		char **nv;

		if (tok[0] != '/') {
			return error_set(errp, EINVAL, "image root '%s' is not an absolute path",
					 tok);
		}
		nv = realloc(c->image_roots, (n + 2) * sizeof(*nv));
		if (!nv) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		c->image_roots = nv;
		nv[n] = strdup(tok);
		nv[n + 1] = NULL;
		if (!nv[n]) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		n++;
	}
	return 0;
}

/* One "key = value" setting. */
static int apply(struct daemon_config *c, const char *key, char *v, struct error **errp)
{
	uint64_t x;
	int r;

	if (strcmp(key, "socket") == 0 || strcmp(key, "state-dir") == 0 ||
	    strcmp(key, "run-dir") == 0) {
		char **field = key[0] == 's' && key[1] == 'o'  ? &c->socket_path
			       : strcmp(key, "state-dir") == 0 ? &c->state_dir
							       : &c->run_dir;

		if (v[0] != '/') {
			return error_set(errp, EINVAL, "%s must be an absolute path, not '%s'", key,
					 v);
		}
		return config_set_string(field, v, errp);
	}
	if (strcmp(key, "socket-group") == 0) {
		return config_set_string(&c->socket_group, v[0] ? v : NULL, errp);
	}
	if (strcmp(key, "socket-mode") == 0) {
		char *end;
		unsigned long m = strtoul(v, &end, 8);

		if (!v[0] || *end || m > 0777 || (m & 0600) != 0600) {
			return error_set(errp, EINVAL,
					 "socket-mode '%s' must be octal, at most 0777, and "
					 "allow the owner to read and write (e.g. 0660)",
					 v);
		}
		c->socket_mode = (mode_t)m;
		return 0;
	}
	if (strcmp(key, "image-roots") == 0) {
		return add_roots(c, v, errp);
	}
	if (strcmp(key, "qmp-version") == 0) {
		unsigned major, minor, micro;
		int n = -1;

		if (sscanf(v, "%u.%u.%u%n", &major, &minor, &micro, &n) != 3 || v[n] ||
		    major > 1000 || minor > 1000 || micro > 1000) {
			return error_set(
				errp, EINVAL,
				"qmp-version '%s' must be a QEMU version MAJOR.MINOR.MICRO "
				"(e.g. 7.2.0)",
				v);
		}
		c->version.major = major;
		c->version.minor = minor;
		c->version.micro = micro;
		return 0;
	}
	if (strcmp(key, "qmp-package") == 0) {
		if (strlen(v) >= sizeof(c->version.package)) {
			return error_set(errp, EINVAL, "qmp-package is longer than %zu bytes",
					 sizeof(c->version.package) - 1);
		}
		snprintf(c->version.package, sizeof(c->version.package), "%s", v);
		return 0;
	}
	if (strcmp(key, "log-level") == 0) {
		r = log_level_from_string(v);
		if (r < 0) {
			return error_set(errp, EINVAL,
					 "log-level '%s' is not one of err, warning, notice, "
					 "info, debug",
					 v);
		}
		c->log_level = r;
		return 0;
	}
	if (strcmp(key, "seccomp") == 0) {
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
			return error_set(errp, EINVAL, "seccomp '%s' must be on or off", v);
		}
		c->seccomp = strcmp(v, "on") == 0;
		return 0;
	}
	if (strcmp(key, "keep-vms-on-restart") == 0) {
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
			return error_set(errp, EINVAL, "keep-vms-on-restart '%s' must be on or off",
					 v);
		}
		c->keep_vms = strcmp(v, "on") == 0;
		return 0;
	}
	if (strcmp(key, "capabilities") == 0) {
		return privilege_parse_caps(v, &c->priv.caps_keep, errp);
	}
	if (strcmp(key, "limit-nofile") == 0 || strcmp(key, "limit-core") == 0 ||
	    strcmp(key, "limit-memlock") == 0) {
		uint64_t *f = key[6] == 'n'   ? &c->priv.limit_nofile
			      : key[6] == 'c' ? &c->priv.limit_core
					      : &c->priv.limit_memlock;

		if (privilege_parse_limit(v, key[6] != 'n', f, errp) < 0) {
			error_prefix(errp, "%s", key);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "log-target") == 0) {
		if (strcmp(v, "auto") == 0) {
			c->log_target = CONFIG_LOG_AUTO;
		} else if (strcmp(v, "stderr") == 0) {
			c->log_target = CONFIG_LOG_STDERR;
		} else if (strcmp(v, "journal") == 0) {
			c->log_target = CONFIG_LOG_JOURNAL;
		} else {
			return error_set(errp, EINVAL,
					 "log-target '%s' is not one of auto, stderr, journal", v);
		}
		return 0;
	}
#define LIMIT(name, field, min, max, size)                                                         \
	if (strcmp(key, name) == 0) {                                                              \
		if (parse_count(v, min, max, size, &x) < 0) {                                      \
			return error_set(errp, ERANGE, "%s '%s' must be %s between %llu and %llu", \
					 name, v, size ? "a size" : "a number",                    \
					 (unsigned long long)(min), (unsigned long long)(max));    \
		}                                                                                  \
		field = x;                                                                         \
		return 0;                                                                          \
	}
	LIMIT("max-clients", c->lim.max_clients, 1, 100000, false)
	LIMIT("max-message-size", c->lim.max_message, 1024, 1ull << 30, true)
	LIMIT("max-nesting-depth", c->lim.max_depth, 1, 10000, false)
	LIMIT("output-queue-size", c->lim.max_output, 65536, 1ull << 30, true)
	LIMIT("negotiation-timeout", c->lim.negotiation_timeout, 0, 3600, false)
	LIMIT("max-vms", c->max_vms, 1, 100000, false)
	LIMIT("restore-populate-rate", c->populate_rate, 0, 1ull << 40, true)
	LIMIT("job-nice", c->job_nice, 0, 19, false)
	LIMIT("start-timeout", c->start_timeout, 1, 3600, false)
#undef LIMIT
	return error_set(errp, EINVAL, "unknown setting '%s'", key);
}

int config_parse_text(struct daemon_config *c, const char *text, const char *origin,
		      struct error **errp)
{
	_cleanup_free_ char *copy = strdup(text);
	char *line, *save = NULL;
	unsigned lineno = 0;

	if (!copy) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	/* strtok_r would skip empty lines and miscount: split by hand. */
	for (line = copy; line; line = save) {
		char *eq, *key, *val;
		int r;

		save = strchr(line, '\n');
		if (save) {
			*save++ = '\0';
		}
		lineno++;
		line = trim(line);
		if (line[0] == '\0' || line[0] == '#') {
			continue;
		}
		eq = strchr(line, '=');
		if (!eq) {
			return error_set(errp, EINVAL, "%s:%u: expected 'key = value', got '%s'",
					 origin, lineno, line);
		}
		*eq = '\0';
		key = trim(line);
		val = trim(eq + 1);
		r = apply(c, key, val, errp);
		if (r < 0) {
			error_prefix(errp, "%s:%u", origin, lineno);
			return r;
		}
	}
	return 0;
}

int config_load_file(struct daemon_config *c, bool must_exist, struct error **errp)
{
	_cleanup_fclose_ FILE *f = fopen(c->config_path, "re");
	_cleanup_free_ char *text = NULL;
	size_t len = 0, cap = 0, n;
	char buf[4096];

	if (!f) {
		if (errno == ENOENT && !must_exist) {
			return 0;
		}
		return error_set_errno(errp, errno, "cannot read %s", c->config_path);
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (len + n + 1 > cap) {
			char *nt;

			cap = (len + n + 1) * 2;
			if (cap > (1 << 20)) {
				return error_set(errp, EFBIG, "%s is larger than 1 MiB",
						 c->config_path);
			}
			nt = realloc(text, cap);
			if (!nt) {
				return error_set(errp, ENOMEM, "out of memory");
			}
			text = nt;
		}
		memcpy(text + len, buf, n);
		len += n;
	}
	if (ferror(f)) {
		return error_set_errno(errp, EIO, "cannot read %s", c->config_path);
	}
	if (memchr(text ? text : "", '\0', len)) {
		return error_set(errp, EINVAL, "%s contains a NUL byte", c->config_path);
	}
	if (!text) {
		return 0;
	}
	text[len] = '\0';
	return config_parse_text(c, text, c->config_path, errp);
}
