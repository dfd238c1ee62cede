/*
 * vmmd: the hypervisor daemon's entry point. Settings (defaults, the
 * settings file, command-line overrides), logging, the control thread's
 * event loop with its signals, the registry of VMs and the protocol server,
 * and systemd integration. Runs in the foreground (no double fork).
 *
 * Threads: this file runs on the control thread only. VM threads reach the
 * control thread through the registry's event queue.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "daemon/control-sched.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/privilege.h"
#include "daemon/sandbox.h"
#include "daemon/settings.h"
#include "daemon/run-vm.h"
#include "daemon/keep.h"
#include "daemon/systemd.h"
#include "daemon/upgrade.h"
#include "monitor/monitor.h"
#include "vmmd/block.h"

/* Command-line settings; they win over the settings file, also on SIGHUP. */
struct overrides {
	const char *config, *socket, *state_dir, *run_dir, *log_level;
	bool user_session;
};

struct daemon {
	struct event_base *base;
	struct daemon_config cfg;
	struct overrides ov;
	gid_t group;
	struct registry *reg;
	struct monitor *mon;
	struct control_sched sched;
	bool stopping;
	bool take_over; /* --take-over: a live upgrade's new daemon (docs/upgrade.md) */
	int rc;
};

static void usage(FILE *out, const struct daemon_config *d)
{
	fprintf(out,
		"Usage: vmmd [OPTION]...\n"
		"Run the vmmd hypervisor daemon in the foreground.\n"
		"\n"
		"  -c, --config FILE      settings file (default: %s)\n"
		"  -s, --socket PATH      control socket (default: %s)\n"
		"      --state-dir DIR    VM definitions are kept in DIR/vms (default: %s)\n"
		"      --run-dir DIR      per-VM sockets and consoles in DIR/vms (default: %s)\n"
		"      --user-session     per-user defaults: $XDG_RUNTIME_DIR/vmmd/vmmd.sock,\n"
		"                         $XDG_STATE_HOME/vmmd, $XDG_CONFIG_HOME/vmmd/vmmd.conf\n"
		"      --log-level LEVEL  err, warning, notice, info or debug (default: %s)\n"
		"      --take-over        internal: the new daemon of a live upgrade, started\n"
		"                         by the old one (daemon-upgrade, SIGUSR2)\n"
		"      --run-vm FILE      run only the VM defined in FILE (a vm-create JSON\n"
		"                         definition) in the foreground until it stops, without\n"
		"                         a socket; console and sockets in --run-dir (default .)\n"
		"  -h, --help             show this help and exit\n"
		"  -V, --version          show the version and exit\n"
		"\n"
		"Limits (set in the settings file, see vmmd.conf(5)): max-clients %u,\n"
		"max-message-size %zu, max-nesting-depth %u, output-queue-size %zu,\n"
		"negotiation-timeout %u s, max-vms %u, socket-mode %04o.\n"
		"Signals: SIGTERM stops all VMs and exits 0 (under systemd, it hands them to\n"
		"the fd store, so a restart resumes them: keep-vms-on-restart); SIGHUP reloads\n"
		"the settings; "
		"SIGUSR2 upgrades in place: the daemon's executable, started\n"
		"again, takes over every VM without stopping it.\n",
		d->config_path, d->socket_path, d->state_dir, d->run_dir,
		log_level_to_string(d->log_level), d->lim.max_clients, d->lim.max_message,
		d->lim.max_depth, d->lim.max_output, d->lim.negotiation_timeout, d->max_vms,
		(unsigned)d->socket_mode);
}

/* Defaults, then the settings file, then the command line. */
static int load_settings(const struct overrides *ov, struct daemon_config *c, struct error **errp)
{
	int r;

	r = config_defaults(c, ov->user_session, errp);
	if (r < 0) {
		return r;
	}
	if (ov->config) {
		r = config_set_string(&c->config_path, ov->config, errp);
	}
	if (r == 0) {
		r = config_load_file(c, ov->config != NULL, errp);
	}
	if (r == 0 && ov->socket) {
		r = config_set_string(&c->socket_path, ov->socket, errp);
	}
	if (r == 0 && ov->state_dir) {
		r = config_set_string(&c->state_dir, ov->state_dir, errp);
	}
	if (r == 0 && ov->run_dir) {
		r = config_set_string(&c->run_dir, ov->run_dir, errp);
	}
	if (r == 0 && ov->log_level) {
		int lvl = log_level_from_string(ov->log_level);

		if (lvl < 0) {
			r = error_set(errp, EINVAL,
				      "--log-level '%s' is not one of err, warning, "
				      "notice, info, debug",
				      ov->log_level);
		} else {
			c->log_level = lvl;
		}
	}
	if (r < 0) {
		config_release(c);
	}
	return r;
}

static void apply_logging(const struct daemon_config *c)
{
	bool journal = c->log_target == CONFIG_LOG_JOURNAL ||
		       (c->log_target == CONFIG_LOG_AUTO && systemd_stderr_is_journal());

	log_set_backend(journal ? LOG_BACKEND_JOURNAL : LOG_BACKEND_STDERR);
	log_set_level(c->log_level);
}

static int resolve_group(const char *name, gid_t *ret, struct error **errp)
{
	struct group *g;

	if (!name) {
		*ret = (gid_t)-1;
		return 0;
	}
	errno = 0;
	g = getgrnam(name);
	if (!g) {
		return error_set(errp, errno ? errno : ENOENT,
				 "socket-group '%s' does not exist on this host", name);
	}
	*ret = g->gr_gid;
	return 0;
}

static int mkdir_parents(const char *path, mode_t mode, struct error **errp)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(tmp)) {
		return error_set(errp, ENAMETOOLONG, "path too long: %s", path);
	}
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, mode) < 0 && errno != EEXIST) {
				return error_set_errno(errp, errno, "cannot create %s", tmp);
			}
			*p = '/';
		}
	}
	return 0;
}

/* Registry hooks: VM events and lifecycles reach the monitor and systemd. */
static void hook_event(void *opaque, const char *vm, const char *name, json_t *data)
{
	struct daemon *d = opaque;

	if (d->take_over) {
		upgrade_note_event(vm, name, data);
	}
	if (d->mon) {
		monitor_emit_event(d->mon, vm, name, data);
	} else {
		json_decref(data);
	}
}

static char *vm_socket_path(struct daemon *d, const char *vm)
{
	char *path = NULL;

	return asprintf(&path, "%s/%s.qmp", registry_run_dir(d->reg), vm) < 0 ? NULL : path;
}

static int hook_vm_up(void *opaque, const char *vm, int fd, struct error **errp)
{
	struct daemon *d = opaque;
	_cleanup_free_ char *path = vm_socket_path(d, vm);

	if (!path) {
		if (fd >= 0) {
			close(fd);
		}
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (fd >= 0) {
		return monitor_listen_bound(d->mon, fd, path, vm, errp);
	}
	return monitor_listen_path(d->mon, path, d->cfg.socket_mode, d->group, vm, errp);
}

/* On a worker: only the registry's run directory (fixed) is read here. */
static int hook_vm_bind(void *opaque, const char *vm, mode_t mode, gid_t gid, struct error **errp)
{
	_cleanup_free_ char *path = vm_socket_path(opaque, vm);

	if (!path) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	return monitor_bind_path(path, mode, gid, errp);
}

static void hook_vm_down(void *opaque, const char *vm)
{
	struct daemon *d = opaque;

	if (d->mon) {
		monitor_vm_gone(d->mon, vm);
	}
}

static void hook_changed(void *opaque)
{
	struct daemon *d = opaque;

	if (!d->stopping) {
		systemd_notify_status(registry_running(d->reg), registry_count(d->reg));
	}
}

static int hook_get_fd(void *opaque, const char *name)
{
	struct daemon *d = opaque;

	return monitor_get_fd(d->mon, name);
}

static struct registry_hooks hooks = {
	.event = hook_event,
	.vm_up = hook_vm_up,
	.vm_bind = hook_vm_bind,
	.vm_down = hook_vm_down,
	.changed = hook_changed,
	.get_fd = hook_get_fd,
};

static void on_term(evutil_socket_t sig, short what, void *opaque)
{
	struct daemon *d = opaque;

	if (d->stopping) {
		return;
	}
	d->stopping = true;
	log_notice("signal %d: stopping (%u VMs running)", (int)sig, registry_running(d->reg));
	systemd_notify_stopping();
	monitor_stop_listening(d->mon);
	if (d->cfg.keep_vms && systemd_can_store_fds()) {
		/* A restart (or not: systemd drops the store on a stop) resumes them. */
		registry_shutdown_keep(d->reg, keep_vm);
		keep_flush();
	} else {
		registry_shutdown(d->reg);
	}
	event_base_loopexit(d->base, NULL);
}

static void on_usr2(evutil_socket_t sig, short what, void *opaque)
{
	struct error *err = NULL;

	log_notice("SIGUSR2: live upgrade");
	if (upgrade_begin(NULL, &err) < 0) {
		log_error("SIGUSR2: no live upgrade: %s", err->msg);
		error_free(err);
	}
}

/* Live upgrade, old daemon: the new one has every VM; leave, removing no socket file. */
static void upgrade_exit(void *opaque)
{
	struct daemon *d = opaque;

	if (d->stopping) {
		return;
	}
	d->stopping = true;
	monitor_stop_listening(d->mon);
	registry_shutdown(d->reg);
	event_base_loopexit(d->base, NULL);
}

/* Live upgrade, new daemon: serve the main socket, or give up and exit. */
static void upgrade_took_over(void *opaque, int r)
{
	struct daemon *d = opaque;
	struct error *err = NULL;

	d->take_over = false;
	if (r == 0 && monitor_listen_fd(d->mon, 4, &err) == 0) {
		log_notice("live upgrade done: %u VMs running", registry_running(d->reg));
		systemd_notify_ready(registry_running(d->reg), registry_count(d->reg));
		return;
	}
	if (err) {
		log_error("%s", err->msg);
		error_free(err);
	} else {
		close(4);
	}
	if (r == -EBUSY) {
		log_error("live upgrade failed and some VMs could not go back: this daemon "
			  "(pid %d) keeps running them, reachable on their own sockets",
			  (int)getpid());
		systemd_notify_status(registry_running(d->reg), registry_count(d->reg));
		return;
	}
	log_error("live upgrade failed: this daemon exits, the old one keeps the VMs");
	d->rc = EXIT_FAILURE;
	monitor_keep_socket_files(d->mon);
	upgrade_exit(d);
}

static void on_hup(evutil_socket_t sig, short what, void *opaque)
{
	struct daemon *d = opaque;
	struct daemon_config c;
	struct registry_limits rl;
	struct error *err = NULL;

	systemd_notify_reloading(false);
	if (load_settings(&d->ov, &c, &err) < 0) {
		log_error("SIGHUP: settings not reloaded: %s", err->msg);
		error_free(err);
		systemd_notify_reloading(true);
		return;
	}
	rl.max_vms = c.max_vms;
	rl.image_roots = c.image_roots;
	rl.socket_mode = d->cfg.socket_mode; /* socket changes need a restart */
	rl.socket_gid = d->group;
	rl.populate_rate = c.populate_rate;
	rl.job_nice = (int)c.job_nice;
	rl.start_timeout = c.start_timeout;
	if (registry_set_limits(d->reg, &rl, &err) < 0) {
		log_error("SIGHUP: settings not reloaded: %s", err->msg);
		error_free(err);
		config_release(&c);
		systemd_notify_reloading(true);
		return;
	}
	if (strcmp(c.socket_path, d->cfg.socket_path) != 0 ||
	    strcmp(c.state_dir, d->cfg.state_dir) != 0 || strcmp(c.run_dir, d->cfg.run_dir) != 0) {
		log_warning("SIGHUP: socket, state-dir and run-dir changes need a restart");
	}
	monitor_set_limits(d->mon, &c.lim);
	monitor_set_version(d->mon, &c.version);
	apply_logging(&c);
	/* Keep the paths in use; take everything else. */
	free(c.socket_path);
	c.socket_path = TAKE_PTR(d->cfg.socket_path);
	free(c.state_dir);
	c.state_dir = TAKE_PTR(d->cfg.state_dir);
	free(c.run_dir);
	c.run_dir = TAKE_PTR(d->cfg.run_dir);
	c.socket_mode = d->cfg.socket_mode;
	config_release(&d->cfg);
	d->cfg = c;
	log_notice("settings reloaded from %s", d->cfg.config_path);
	systemd_notify_reloading(true);
}

/* What privilege_apply left: the capabilities (if any) and the limits. */
/*
 * The block layer's io_uring rings run requests past seccomp; they exist only
 * restricted to its opcodes (docs/security.md). Say which one applies here.
 */
static void log_io_uring(void)
{
	struct error *err = NULL;
	int r = block_aio_probe_io_uring(&err);

	if (r == 0) {
		log_info("block I/O: io_uring rings restricted to readv, writev and fsync");
	} else if (r == -ENOTSUP) {
		log_info("block I/O: worker threads only (%s)", err->msg);
	} else {
		log_warning("block I/O: %s; worker threads only, never an unrestricted ring",
			    err->msg);
	}
	error_free(err);
}

static void log_privilege(void)
{
	struct rlimit nofile, core;
	char caps[512];
	uint64_t eff = 0;
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];

	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "CapEff:", 7) == 0) {
			eff = strtoull(line + 7, NULL, 16);
		}
	}
	if (f) {
		fclose(f);
	}
	getrlimit(RLIMIT_NOFILE, &nofile);
	getrlimit(RLIMIT_CORE, &core);
	log_info("capabilities: %s; open files up to %llu; core dumps %s",
		 privilege_caps_string(eff, caps, sizeof(caps)),
		 (unsigned long long)nofile.rlim_cur, core.rlim_cur == 0 ? "off" : "on");
}

static int run(struct daemon *d)
{
	struct registry_limits rl = {.max_vms = d->cfg.max_vms,
				     .image_roots = d->cfg.image_roots,
				     .socket_mode = d->cfg.socket_mode,
				     .populate_rate = d->cfg.populate_rate,
				     .job_nice = (int)d->cfg.job_nice,
				     .start_timeout = d->cfg.start_timeout};
	struct event *ev_term = NULL, *ev_int = NULL, *ev_hup = NULL, *ev_usr2 = NULL;
	struct monitor_handlers handlers = {
		.cmds = qmp_commands,
		.n_cmds = qmp_n_commands,
		.find_vm = qmp_find_vm,
		.flush_events = registry_flush_events,
	};
	struct error *err = NULL;
	int fd, n, rc = EXIT_FAILURE;

	d->base = event_base_new();
	if (!d->base) {
		log_error("cannot create the event loop");
		return EXIT_FAILURE;
	}
	hooks.opaque = d;
	if (resolve_group(d->cfg.socket_group, &d->group, &err) < 0) {
		goto out;
	}
	sandbox_set_enabled(d->cfg.seccomp);
	rl.socket_gid = d->group;
	if (registry_new(d->base, d->cfg.state_dir, d->cfg.run_dir, &rl, &hooks, &d->reg, &err) <
	    0) {
		goto out;
	}
	handlers.ctx = d->reg;
	if (monitor_new(d->base, &handlers, &d->cfg.lim, d->group, &d->mon, &err) < 0) {
		goto out;
	}
	monitor_set_version(d->mon, &d->cfg.version);
	upgrade_init(&(struct upgrade_hooks){.base = d->base,
					     .mon = d->mon,
					     .reg = d->reg,
					     .exit = upgrade_exit,
					     .took_over = upgrade_took_over,
					     .opaque = d});
	fd = d->take_over ? -EALREADY : systemd_listen_fd(&err);
	if (fd == -EALREADY) {
		log_info("live upgrade: the main socket comes from the old daemon (fd 4)");
	} else if (fd >= 0) {
		if (monitor_listen_fd(d->mon, fd, &err) < 0) {
			goto out;
		}
		log_info("listening on the socket passed by systemd");
	} else if (fd == -ENOENT) {
		if (mkdir_parents(d->cfg.socket_path, 0755, &err) < 0 ||
		    monitor_listen_path(d->mon, d->cfg.socket_path, d->cfg.socket_mode, d->group,
					NULL, &err) < 0) {
			goto out;
		}
		log_info("listening on %s", d->cfg.socket_path);
	} else {
		goto out;
	}
	ev_term = evsignal_new(d->base, SIGTERM, on_term, d);
	ev_int = evsignal_new(d->base, SIGINT, on_term, d);
	ev_hup = evsignal_new(d->base, SIGHUP, on_hup, d);
	ev_usr2 = evsignal_new(d->base, SIGUSR2, on_usr2, d);
	if (!ev_term || !ev_int || !ev_hup || !ev_usr2 || evsignal_add(ev_term, NULL) < 0 ||
	    evsignal_add(ev_int, NULL) < 0 || evsignal_add(ev_hup, NULL) < 0 ||
	    evsignal_add(ev_usr2, NULL) < 0) {
		error_set(&err, ENOMEM, "cannot install signal handlers");
		goto out;
	}
	n = registry_load(d->reg);
	log_info("%d VM definition%s loaded from %s/vms", n, n == 1 ? "" : "s", d->cfg.state_dir);
	control_sched_boost(&d->sched);
	/* Sockets and directories exist; no other thread yet; capset is not in the filter. */
	if (privilege_apply(&d->cfg.priv, &err) < 0) {
		goto out;
	}
	log_privilege();
	control_sched_settle(&d->sched);
	if (sandbox_enter(SANDBOX_CONTROL, NULL, &err) < 0) {
		goto out;
	}
	if (sandbox_enabled()) {
		log_info("seccomp filters on (vmmd.conf seccomp)");
	}
	log_io_uring();
	if (d->take_over) {
		if (upgrade_takeover_start(3, &err) < 0) {
			goto out;
		}
	} else {
		n = (int)keep_restore(d->reg);
		if (n > 0) {
			log_notice("resuming %d VM%s kept by the previous vmmd", n,
				   n == 1 ? "" : "s");
		}
		registry_autostart(d->reg);
	}
	if (systemd_watchdog_start(d->base, &err) < 0) {
		goto out;
	}
	if (!d->take_over) {
		systemd_notify_ready(registry_running(d->reg), registry_count(d->reg));
	}
	/* event_base_dispatch, with a look at the control thread's CPU use after each turn */
	while (event_base_loop(d->base, EVLOOP_ONCE) == 0 && !event_base_got_exit(d->base) &&
	       !event_base_got_break(d->base)) {
		control_sched_tick(&d->sched);
	}
	log_notice("stopped");
	rc = d->rc;
out:
	if (err) {
		log_error("%s", err->msg);
		error_free(err);
	}
	systemd_watchdog_stop();
	if (d->reg) {
		registry_shutdown(d->reg);
	}
	monitor_free(d->mon);
	d->mon = NULL;
	registry_free(d->reg);
	if (ev_term) {
		event_free(ev_term);
	}
	if (ev_int) {
		event_free(ev_int);
	}
	if (ev_hup) {
		event_free(ev_hup);
	}
	if (ev_usr2) {
		event_free(ev_usr2);
	}
	event_base_free(d->base);
	return rc;
}

int main(int argc, char **argv)
{
	enum {
		OPT_STATE_DIR = 256,
		OPT_RUN_DIR,
		OPT_USER,
		OPT_LOG_LEVEL,
		OPT_RUN_VM,
		OPT_TAKE_OVER
	};
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 's'},
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},
		{"run-dir", required_argument, NULL, OPT_RUN_DIR},
		{"user-session", no_argument, NULL, OPT_USER},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"run-vm", required_argument, NULL, OPT_RUN_VM},
		{"take-over", no_argument, NULL, OPT_TAKE_OVER},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	struct daemon d = {0};
	struct error *err = NULL;
	const char *run_vm = NULL;
	bool help = false;
	int c, rc;

	log_set_ident("vmmd");
	/*
	 * glibc gives threads up to 8 malloc arenas per core; each keeps its
	 * fragments. vmmd's threads allocate little outside the control thread
	 * and the VM workers, and 16 idle workers (worker.c) kept ~200 KiB each
	 * in arenas of their own: 16 lifecycle clients grew RSS by 2.4 MiB
	 * where 4 arenas grow it by 1.1 MiB, and no slower. An explicit
	 * MALLOC_ARENA_MAX wins.
	 */
	if (!getenv("MALLOC_ARENA_MAX")) {
		mallopt(M_ARENA_MAX, 4);
	}
	while ((c = getopt_long(argc, argv, "c:s:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			d.ov.config = optarg;
			break;
		case 's':
			d.ov.socket = optarg;
			break;
		case OPT_STATE_DIR:
			d.ov.state_dir = optarg;
			break;
		case OPT_RUN_DIR:
			d.ov.run_dir = optarg;
			break;
		case OPT_USER:
			d.ov.user_session = true;
			break;
		case OPT_LOG_LEVEL:
			d.ov.log_level = optarg;
			break;
		case OPT_RUN_VM:
			run_vm = optarg;
			break;
		case OPT_TAKE_OVER:
			d.take_over = true;
			break;
		case 'h':
			help = true;
			break;
		case 'V':
			printf("vmmd %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		default:
			fprintf(stderr, "Try 'vmmd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmmd: unexpected argument '%s'\nTry 'vmmd --help'.\n",
			argv[optind]);
		return 2;
	}
	if (help) {
		/* The defaults, without the settings file. */
		if (config_defaults(&d.cfg, d.ov.user_session, &err) < 0) {
			fprintf(stderr, "vmmd: %s\n", err->msg);
			error_free(err);
			return 2;
		}
		usage(stdout, &d.cfg);
		config_release(&d.cfg);
		return EXIT_SUCCESS;
	}
	if (run_vm) {
		/* One VM and no daemon: no settings file, socket or state directory. */
		if (d.ov.log_level && log_level_from_string(d.ov.log_level) >= 0) {
			log_set_level(log_level_from_string(d.ov.log_level));
		}
		return run_vm_foreground(run_vm, d.ov.run_dir);
	}
	if (load_settings(&d.ov, &d.cfg, &err) < 0) {
		fprintf(stderr, "vmmd: %s\n", err->msg);
		error_free(err);
		return EXIT_FAILURE;
	}
	apply_logging(&d.cfg);
	/* Before any thread or seccomp filter exists: the live upgrade's launcher. */
	upgrade_launcher_start(argv);
	signal(SIGPIPE, SIG_IGN);
	d.rc = EXIT_SUCCESS;
	rc = run(&d);
	config_release(&d.cfg);
	return rc;
}
