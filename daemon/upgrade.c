/*
 * Live upgrade (docs/upgrade.md, daemon/upgrade.h).
 *
 * Launcher: a process forked by main() before the daemon has threads or a
 * seccomp filter (the control thread may not execve). It waits on a
 * SOCK_SEQPACKET pair for a request carrying two fds, forks, and the child
 * execs the daemon's executable with the daemon's own arguments plus
 * --take-over, the two fds as 3 (QMP channel) and 4 (listening socket). It
 * answers the child's pid and waits for the next request; it exits when the
 * daemon closes its end (the daemon exited).
 *
 * Old daemon: daemon-upgrade stops accepting on the main socket (clients
 * queue in the kernel), serves the channel as a QMP client, and answers when
 * the new daemon says x-daemon-upgrade-finish: with the new pid and each
 * VM's downtime, or with the error. After a successful finish it tells
 * systemd MAINPID=<new pid> and exits, removing no socket file.
 *
 * New daemon: a state machine on the channel (one request at a time):
 * greeting, qmp_capabilities, query-vms, then per running or paused VM (or
 * one a reset left in prelaunch):
 * its loaded definition waits in inmigrate, a socketpair's end goes to the
 * old daemon with getfd, migrate-set-parameters (no bandwidth cap: the link
 * is memory), migrate fd:upgrade, and the local MIGRATION event ends it
 * (query-migrate on the old side gives the downtime). Any failure: the VMs
 * already here go back the same way (x-daemon-upgrade-return) and the new
 * daemon reports the error with x-daemon-upgrade-finish and exits.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/migration.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/systemd.h"
#include "daemon/upgrade.h"
#include "monitor/monitor.h"

#define CHAN_FD 3
#define LISTEN_FD 4
#define MAX_LINE (16u << 20)

static struct upgrade_hooks hooks;

/* ---- the launcher ---------------------------------------------------------- */

static int launcher_fd = -1;
static char *self_exe;

static void launcher_exec(char **argv, int chan, int lfd)
{
	size_t n = 0, j = 0;
	char **nargv;
	sigset_t none;

	/* Away from 3 and 4 first, then into place (dup2 clears FD_CLOEXEC). */
	chan = fcntl(chan, F_DUPFD, 10);
	lfd = fcntl(lfd, F_DUPFD, 10);
	if (chan < 0 || lfd < 0 || dup2(chan, CHAN_FD) < 0 || dup2(lfd, LISTEN_FD) < 0) {
		_exit(127);
	}
	for (int fd = LISTEN_FD + 1; fd < 1024; fd++) {
		close(fd);
	}
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	while (argv[n]) {
		n++;
	}
	nargv = calloc(n + 2, sizeof(*nargv));
	if (!nargv) {
		_exit(127);
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(argv[i], "--take-over") != 0) {
			nargv[j++] = argv[i];
		}
	}
	nargv[j++] = (char *)"--take-over";
	nargv[j] = NULL;
	execv(self_exe, nargv);
	fprintf(stderr, "vmmd launcher: cannot execute %s: %s\n", self_exe, strerror(errno));
	_exit(127);
}

static void launcher_main(int sock, char **argv)
{
	prctl(PR_SET_NAME, "vmmd-launcher");
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGCHLD, SIG_IGN); /* the new daemon is reaped by whoever adopts it */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	for (;;) {
		char byte, cbuf[CMSG_SPACE(2 * sizeof(int))];
		struct iovec iov = {&byte, 1};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		struct cmsghdr *cm;
		int fds[2] = {-1, -1};
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		pid_t pid;

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			_exit(0); /* the daemon has gone */
		}
		cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(2 * sizeof(int))) {
			memcpy(fds, CMSG_DATA(cm), sizeof(fds));
		}
		pid = fds[0] >= 0 ? fork() : -1;
		if (pid == 0) {
			close(sock);
			launcher_exec(argv, fds[0], fds[1]);
		}
		if (pid < 0) {
			pid = -(errno ? errno : EINVAL);
		}
		close(fds[0]);
		close(fds[1]);
		if (send(sock, &pid, sizeof(pid), MSG_NOSIGNAL) < 0) {
			_exit(0);
		}
	}
}

int upgrade_launcher_start(char **argv)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	int sv[2];
	pid_t pid;
	char *del;

	if (n < 0) {
		log_warning("live upgrade unavailable: /proc/self/exe: %s", strerror(errno));
		return -errno;
	}
	buf[n] = '\0';
	/* An upgraded package replaced the file: the new binary is at the same path. */
	del = strstr(buf, " (deleted)");
	if (del && del[10] == '\0') {
		*del = '\0';
	}
	self_exe = strdup(buf);
	if (!self_exe || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_warning("live upgrade unavailable: cannot create the launcher's socket");
		return -ENOMEM;
	}
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(sv[0]);
		close(sv[1]);
		log_warning("live upgrade unavailable: cannot fork the launcher: %s", strerror(e));
		return -e;
	}
	if (pid == 0) {
		for (int fd = 3; fd < 1024; fd++) {
			if (fd != sv[1]) {
				close(fd);
			}
		}
		launcher_main(sv[1], argv);
	}
	close(sv[1]);
	launcher_fd = sv[0];
	return 0;
}

/* ---- the old daemon ---------------------------------------------------------- */

static struct {
	bool active, finished;
	pid_t pid;
	struct monitor_deferred *d;
	struct event *exit_timer;
} old;

/* The new daemon does not take NBD servers over: refuse while one runs. */
static int nbd_check(struct error **errp)
{
	json_auto_t *list = registry_query(hooks.reg);
	size_t i;
	json_t *v;

	json_array_foreach (list, i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));
		struct registry_vm *rv = registry_find(hooks.reg, name);

		if (rv && rv->nbd) {
			return error_set(
				errp, EBUSY,
				"VM '%s' serves disks over NBD: stop its server "
				"(nbd-server-stop) first, the new vmmd does not take it over",
				name);
		}
	}
	return 0;
}

static void old_reply(int r, json_t *ret, struct error *err)
{
	if (old.d) {
		monitor_deferred_done(TAKE_PTR(old.d), r, ret, err);
	} else {
		json_decref(ret);
		if (err) {
			log_error("live upgrade: %s", err->msg);
		}
		error_free(err);
	}
}

static void old_channel_gone(void *tag)
{
	struct error *err = NULL;

	if (!old.active || old.finished) {
		return;
	}
	old.active = false;
	monitor_pause_main(hooks.mon, false);
	error_set(&err, EPIPE,
		  "the new vmmd (pid %d) went away before it took over; the VMs still "
		  "running here stay here (see its log)",
		  (int)old.pid);
	log_error("live upgrade: %s", err->msg);
	old_reply(-EPIPE, NULL, err);
}

static void old_exit(evutil_socket_t fd, short what, void *opaque)
{
	hooks.exit(hooks.opaque);
}

bool upgrade_in_progress(void)
{
	return old.active;
}

int upgrade_begin(struct monitor_request *req, struct error **errp)
{
	_cleanup_close_ int c0 = -1, c1 = -1;
	char byte = 'u', cbuf[CMSG_SPACE(2 * sizeof(int))] = {0};
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	struct pollfd pfd = {.fd = launcher_fd, .events = POLLIN};
	int sv[2], lfd, fds[2], r;
	pid_t pid = 0;

	if (launcher_fd < 0) {
		return error_set(errp, ENOTSUP,
				 "live upgrade is not available in this daemon (no launcher; see "
				 "its log at startup)");
	}
	if (old.active) {
		return error_set(errp, EBUSY, "a live upgrade is already in progress");
	}
	r = nbd_check(errp);
	if (r < 0) {
		return r;
	}
	lfd = monitor_main_fd(hooks.mon);
	if (lfd < 0) {
		return error_set(errp, ENOTSUP, "this daemon has no main socket to hand over");
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		return error_set_errno(errp, errno, "socketpair");
	}
	c0 = sv[0];
	c1 = sv[1];
	fds[0] = c1;
	fds[1] = lfd;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	if (sendmsg(launcher_fd, &mh, MSG_NOSIGNAL) < 0 || poll(&pfd, 1, 5000) != 1 ||
	    recv(launcher_fd, &pid, sizeof(pid), 0) != (ssize_t)sizeof(pid)) {
		close(launcher_fd);
		launcher_fd = -1;
		return error_set(errp, EIO,
				 "the launcher did not answer; live upgrade unavailable");
	}
	if (pid < 0) {
		return error_set_errno(errp, -pid, "cannot start the new vmmd %s", self_exe);
	}
	close(TAKE_FD(c1));
	old.pid = pid;
	old.active = true;
	old.finished = false;
	r = monitor_add_client(hooks.mon, TAKE_FD(c0), old_channel_gone, &old, errp);
	if (r < 0) {
		old.active = false;
		kill(pid, SIGTERM);
		return r;
	}
	monitor_pause_main(hooks.mon, true);
	log_notice("live upgrade: started %s --take-over as pid %d", self_exe, (int)pid);
	if (req) {
		old.d = monitor_defer(req);
		return MONITOR_DEFERRED;
	}
	return 0;
}

int qmp_daemon_upgrade(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return upgrade_begin(req, errp);
}

static int channel_only(struct monitor_request *req, struct error **errp)
{
	if (!old.active || monitor_request_tag(req) != &old) {
		return error_set(errp, EPERM,
				 "only the new vmmd of a live upgrade in progress may send this");
	}
	return 0;
}

int qmp_x_daemon_upgrade_return(struct monitor_request *req, json_t *args, json_t **ret,
				struct error **errp)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	struct registry_vm *rv = registry_find(hooks.reg, name);
	int r = channel_only(req, errp), fd;

	if (r < 0) {
		return r;
	}
	if (!rv) {
		return error_set(errp, ENOENT, "no VM '%s' here", name);
	}
	fd = monitor_get_fd(req->mon, "upgrade");
	if (fd < 0) {
		return error_set(errp, ENOENT, "File descriptor named 'upgrade' not found");
	}
	r = registry_rearm_incoming(rv, errp);
	if (r == 0) {
		r = migration_incoming(rv, "fd:upgrade", fd, errp);
	} else {
		close(fd);
	}
	if (r == 0) {
		log_notice("live upgrade: VM '%s' comes back from the new daemon", name);
	}
	return r;
}

int qmp_x_daemon_upgrade_finish(struct monitor_request *req, json_t *args, json_t **ret,
				struct error **errp)
{
	json_t *error = json_object_get(args, "error");
	json_t *vms = json_object_get(args, "vms");
	json_t *list;
	struct error *err = NULL;
	size_t i;
	json_t *v;
	int r = channel_only(req, errp);

	if (r < 0) {
		return r;
	}
	if (error) {
		old.active = false;
		monitor_pause_main(hooks.mon, false);
		error_set(&err, EIO, "live upgrade failed, the VMs run on here: %s",
			  json_string_value(error));
		log_error("%s", err->msg);
		old_reply(-EIO, NULL, err);
		return 0;
	}
	list = registry_query(hooks.reg);
	json_array_foreach (list, i, v) {
		const char *st = json_string_value(json_object_get(v, "status"));

		if (strcmp(st, "shutdown") != 0 && strcmp(st, "postmigrate") != 0) {
			r = error_set(errp, EBUSY, "VM '%s' is still %s here",
				      json_string_value(json_object_get(v, "name")), st);
			json_decref(list);
			return r;
		}
	}
	json_decref(list);
	old.finished = true;
	monitor_keep_socket_files(hooks.mon);
	systemd_notify_mainpid(old.pid);
	log_notice("live upgrade: pid %d has taken over; exiting", (int)old.pid);
	old_reply(0, json_pack("{s:i, s:O}", "pid", (int)old.pid, "vms", vms ? vms : json_array()),
		  NULL);
	/* Let both answers go out first. */
	old.exit_timer = evtimer_new(hooks.base, old_exit, NULL);
	if (old.exit_timer) {
		evtimer_add(old.exit_timer, &(struct timeval){.tv_usec = 200000});
	} else {
		hooks.exit(hooks.opaque);
	}
	return 0;
}

void upgrade_init(const struct upgrade_hooks *h)
{
	hooks = *h;
}

/* ---- the new daemon ---------------------------------------------------------- */

enum tstate {
	T_GREETING,
	T_CAPS,
	T_LIST,
	T_GETFD,
	T_PARAMS,
	T_MIGRATE,
	T_WAIT,
	T_QUERY,
	T_RETURN_GETFD,
	T_RETURN,
	T_RETURN_WAIT,
	T_FINISH,
	T_DONE,
};

static struct {
	int chan;
	struct event *ev, *timer;
	char *in;
	size_t len;
	enum tstate st;
	json_t *todo;	 /* names of the VMs to take */
	size_t idx;	 /* the one moving */
	json_t *results; /* [{vm, downtime, total-time}] */
	char *error;	 /* set once failing: moving back, then finish with it */
	size_t back;	 /* VMs taken so far that go back */
	int64_t next_id; /* the id of the one request awaiting its answer */
	struct timespec t0;
} tk = {.chan = -1};

static void tk_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tk_next(void);
static void tk_back(void);
static void tk_end(int r);

static int tk_send(const char *cmd, json_t *args, int fd)
{
	json_auto_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)++tk.next_id);
	char *text;
	size_t len;
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (args) {
		json_object_set_new(msg, "arguments", args);
	}
	text = json_dumps(msg, JSON_COMPACT);
	if (!text) {
		return -ENOMEM;
	}
	len = strlen(text);
	text[len] = '\n'; /* json_dumps leaves room for the NUL: reuse it */
	iov.iov_base = text;
	iov.iov_len = len + 1;
	if (fd >= 0) {
		struct cmsghdr *cm;

		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	/* A few hundred bytes on a local socket: written whole or the old daemon is gone. */
	n = sendmsg(tk.chan, &mh, MSG_NOSIGNAL);
	free(text);
	return n == (ssize_t)(len + 1) ? 0 : -EPIPE;
}

static const char *tk_vm(void)
{
	return json_string_value(json_array_get(tk.todo, tk.idx));
}

static void tk_finish(void)
{
	json_t *args = json_pack("{s:O}", "vms", tk.results);

	if (tk.error) {
		json_object_set_new(args, "error", json_string(tk.error));
	}
	tk.st = T_FINISH;
	if (tk_send("x-daemon-upgrade-finish", args, -1) < 0) {
		log_error("live upgrade: the old daemon went away at the end");
		tk_end(0);
	}
}

static void tk_fail(const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		msg = NULL;
	}
	va_end(ap);
	if (tk.error) {
		/* Failing while moving back: that VM stays here, the others go on. */
		log_error("live upgrade: %s; it stays in this daemon", msg ? msg : "failed");
		free(msg);
		tk_back();
		return;
	}
	tk.error = msg ? msg : strdup("failed");
	log_error("live upgrade: %s; moving the VMs taken back", tk.error);
	/* The VM in flight (if any) stays on the old side: its migration failed. */
	tk.back = tk.idx;
	tk_back();
}

/* VMs this daemon still runs (or holds paused): it must not exit with them. */
static unsigned tk_vms_here(void)
{
	json_t *list = registry_query(hooks.reg), *v;
	unsigned n = 0;
	size_t i;

	json_array_foreach (list, i, v) {
		const char *st = json_string_value(json_object_get(v, "status"));

		n += st && strcmp(st, "shutdown") != 0 && strcmp(st, "postmigrate") != 0 &&
		     strcmp(st, "inmigrate") != 0;
	}
	json_decref(list);
	return n;
}

static void tk_end(int r)
{
	tk.st = T_DONE;
	if (r < 0 && tk_vms_here()) {
		r = -EBUSY;
	}
	hooks.took_over(hooks.opaque, r);
}

/* Rollback: send the VMs taken so far (0 .. back-1) back to the old daemon. */
static void tk_back(void)
{
	struct error *err = NULL;
	struct registry_vm *rv;
	int sv[2];

	if (tk.back == 0) {
		tk_finish();
		return;
	}
	tk.idx = --tk.back;
	rv = registry_find(hooks.reg, tk_vm());
	if (!rv || !rv->vm) {
		tk_back();
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		tk_fail("socketpair: %s", strerror(errno));
		return;
	}
	rv->mig_max_bandwidth = 1ull << 40;
	if (migration_start(rv, "fd:upgrade", sv[0], &err) < 0) {
		close(sv[1]);
		tk_fail("VM '%s' cannot go back: %s", rv->name, err->msg);
		error_free(err);
		return;
	}
	tk.st = T_RETURN_GETFD;
	if (tk_send("getfd", json_pack("{s:s}", "fdname", "upgrade"), sv[1]) < 0) {
		migration_cancel(rv, NULL);
		tk_fail("the old daemon went away");
	}
	close(sv[1]);
}

static void tk_next(void)
{
	struct error *err = NULL;
	struct registry_vm *rv;
	int sv[2];

	if (tk.idx >= json_array_size(tk.todo)) {
		tk_finish();
		return;
	}
	rv = registry_find(hooks.reg, tk_vm());
	if (registry_await_takeover(rv, &err) < 0) {
		tk_fail("%s", err->msg);
		error_free(err);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		rv->inmigrate = false;
		tk_fail("socketpair: %s", strerror(errno));
		return;
	}
	if (migration_incoming(rv, "fd:upgrade", sv[0], &err) < 0) {
		close(sv[1]);
		rv->inmigrate = false;
		tk_fail("VM '%s': %s", rv->name, err->msg);
		error_free(err);
		return;
	}
	tk.st = T_GETFD;
	if (tk_send("getfd", json_pack("{s:s}", "fdname", "upgrade"), sv[1]) < 0) {
		tk_fail("the old daemon went away");
	}
	close(sv[1]);
}

static void tk_query(evutil_socket_t fd, short what, void *opaque)
{
	tk.st = T_QUERY;
	if (tk_send("query-migrate", json_pack("{s:s}", "vm", tk_vm()), -1) < 0) {
		tk_fail("the old daemon went away");
	}
}

void upgrade_note_event(const char *vm, const char *name, json_t *data)
{
	const char *st = json_string_value(json_object_get(data, "status"));

	if (tk.chan < 0 || strcmp(name, "MIGRATION") != 0 || !st ||
	    (tk.st != T_WAIT && tk.st != T_MIGRATE && tk.st != T_RETURN_WAIT &&
	     tk.st != T_RETURN) ||
	    !tk_vm() || strcmp(vm, tk_vm()) != 0) {
		return;
	}
	if (tk.st == T_RETURN_WAIT || tk.st == T_RETURN) {
		if (strcmp(st, "completed") == 0) {
			log_notice("live upgrade: VM '%s' is back in the old daemon", vm);
			tk_back();
		} else if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
			tk_fail("VM '%s' could not go back (%s): it stays in this daemon", vm, st);
		}
		return;
	}
	if (strcmp(st, "completed") == 0) {
		/* The old side learns it at DONE, just after: ask it then. */
		evtimer_add(tk.timer, &(struct timeval){.tv_usec = 10000});
	} else if (strcmp(st, "failed") == 0) {
		struct registry_vm *rv = registry_find(hooks.reg, vm);
		json_t *q = rv ? migration_query(rv) : NULL;
		const char *desc = json_string_value(json_object_get(q, "error-desc"));

		tk_fail("VM '%s' could not be taken over: %s", vm, desc ? desc : "failed");
		json_decref(q);
	}
}

/* One message from the old daemon. */
static void tk_message(json_t *msg)
{
	json_t *ret = json_object_get(msg, "return");
	json_t *error = json_object_get(msg, "error");
	const char *desc = json_string_value(json_object_get(error, "desc"));

	if (json_object_get(msg, "event")) {
		return;
	}
	/* An answer to a request given up on (a failure changed course meanwhile). */
	if (tk.st != T_GREETING && json_integer_value(json_object_get(msg, "id")) != tk.next_id) {
		return;
	}
	if (tk.st == T_GREETING) {
		if (!json_object_get(msg, "QMP")) {
			tk_fail("the old daemon did not greet");
			return;
		}
		tk.st = T_CAPS;
		if (tk_send("qmp_capabilities", NULL, -1) < 0) {
			tk_fail("the old daemon went away");
		}
		return;
	}
	if (error) {
		switch (tk.st) {
		case T_RETURN_GETFD:
		case T_RETURN: {
			struct registry_vm *rv = registry_find(hooks.reg, tk_vm());

			if (rv) {
				migration_cancel(rv, NULL);
			}
			tk_fail("VM '%s' cannot go back: %s", tk_vm(), desc ? desc : "error");
			return;
		}
		case T_FINISH:
			log_error("live upgrade: the old daemon refused to hand over: %s",
				  desc ? desc : "error");
			if (!tk.error) {
				tk.error = strdup(desc ? desc : "refused");
				tk.back = tk.idx;
				tk_back();
				return;
			}
			tk_end(-EIO);
			return;
		case T_GETFD:
		case T_PARAMS:
		case T_MIGRATE: {
			struct registry_vm *rv = registry_find(hooks.reg, tk_vm());

			/* Our incoming side waits on the socketpair: end it. */
			if (rv) {
				migration_free(rv);
				rv->inmigrate = false;
			}
			tk_fail("VM '%s': %s", tk_vm(), desc ? desc : "error");
			return;
		}
		default:
			tk_fail("%s", desc ? desc : "the old daemon answered an error");
			return;
		}
	}
	switch (tk.st) {
	case T_CAPS:
		tk.st = T_LIST;
		if (tk_send("query-vms", NULL, -1) < 0) {
			tk_fail("the old daemon went away");
		}
		break;
	case T_LIST: {
		size_t i;
		json_t *v;

		json_array_foreach (ret, i, v) {
			const char *name = json_string_value(json_object_get(v, "name"));
			const char *st = json_string_value(json_object_get(v, "status"));

			if (!name || !st || strcmp(st, "shutdown") == 0) {
				continue;
			}
			/* prelaunch: stopped and reset; it arrives here paused */
			if (strcmp(st, "running") != 0 && strcmp(st, "paused") != 0 &&
			    strcmp(st, "prelaunch") != 0) {
				tk_fail("VM '%s' is %s in the old daemon; try again when it runs "
					"or is stopped",
					name, st);
				return;
			}
			if (!registry_find(hooks.reg, name)) {
				tk_fail("VM '%s' runs in the old daemon but its definition did "
					"not load here",
					name);
				return;
			}
			json_array_append_new(tk.todo, json_string(name));
		}
		log_notice("live upgrade: taking over %zu VM%s", json_array_size(tk.todo),
			   json_array_size(tk.todo) == 1 ? "" : "s");
		tk.idx = 0;
		tk_next();
		break;
	}
	case T_GETFD:
		tk.st = T_PARAMS;
		/* Memory to memory: no bandwidth cap (QEMU's default is 128 MiB/s). */
		if (tk_send("migrate-set-parameters",
			    json_pack("{s:s, s:I, s:s}", "vm", tk_vm(), "max-bandwidth",
				      (json_int_t)(1ll << 40), "tls-creds", ""),
			    -1) < 0) {
			tk_fail("the old daemon went away");
		}
		break;
	case T_PARAMS:
		tk.st = T_MIGRATE;
		if (tk_send("migrate", json_pack("{s:s, s:s}", "vm", tk_vm(), "uri", "fd:upgrade"),
			    -1) < 0) {
			tk_fail("the old daemon went away");
		}
		break;
	case T_MIGRATE:
		tk.st = T_WAIT;
		break;
	case T_QUERY: {
		const char *st = json_string_value(json_object_get(ret, "status"));

		if (!st || strcmp(st, "completed") != 0) {
			evtimer_add(tk.timer, &(struct timeval){.tv_usec = 10000});
			break;
		}
		json_array_append_new(
			tk.results,
			json_pack("{s:s, s:O*, s:O*, s:O*}", "vm", tk_vm(), "downtime",
				  json_object_get(ret, "downtime"), "total-time",
				  json_object_get(ret, "total-time"), "transferred",
				  json_object_get(json_object_get(ret, "ram"), "transferred")));
		tk.idx++;
		tk_next();
		break;
	}
	case T_RETURN_GETFD:
		tk.st = T_RETURN;
		if (tk_send("x-daemon-upgrade-return", json_pack("{s:s}", "vm", tk_vm()), -1) < 0) {
			tk_fail("the old daemon went away");
		}
		break;
	case T_RETURN:
		tk.st = T_RETURN_WAIT;
		break;
	case T_FINISH:
		tk_end(tk.error ? -EIO : 0);
		break;
	default:
		break;
	}
}

static void tk_read(evutil_socket_t fd, short what, void *opaque)
{
	char buf[65536];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	char *nl, *grown;

	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		return;
	}
	if (n <= 0) {
		event_del(tk.ev);
		if (tk.st != T_DONE) {
			/* It died: what runs here is all there is; serve the main socket. */
			log_error("live upgrade: the old daemon closed the channel; this daemon "
				  "serves with the VMs it has");
			tk_end(0);
		}
		return;
	}
	if (tk.len + (size_t)n > MAX_LINE) {
		tk_fail("the old daemon sent a message over %u bytes", MAX_LINE);
		return;
	}
	grown = realloc(tk.in, tk.len + (size_t)n + 1);
	if (!grown) {
		tk_fail("out of memory reading the old daemon's messages");
		return;
	}
	tk.in = grown;
	memcpy(tk.in + tk.len, buf, (size_t)n);
	tk.len += (size_t)n;
	while (tk.len && (nl = memchr(tk.in, '\n', tk.len))) {
		size_t line = (size_t)(nl - tk.in) + 1;
		json_t *msg = json_loadb(tk.in, line, 0, NULL);

		memmove(tk.in, tk.in + line, tk.len - line);
		tk.len -= line;
		if (msg) {
			tk_message(msg);
			json_decref(msg);
		}
		if (tk.st == T_DONE) {
			return;
		}
	}
}

int upgrade_takeover_start(int chan_fd, struct error **errp)
{
	tk.chan = chan_fd;
	tk.todo = json_array();
	tk.results = json_array();
	tk.ev = event_new(hooks.base, chan_fd, EV_READ | EV_PERSIST, tk_read, NULL);
	tk.timer = evtimer_new(hooks.base, tk_query, NULL);
	clock_gettime(CLOCK_MONOTONIC, &tk.t0);
	if (!tk.todo || !tk.results || !tk.ev || !tk.timer || event_add(tk.ev, NULL) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	log_notice("live upgrade: taking over from the old daemon");
	return 0;
}
