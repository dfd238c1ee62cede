/*
 * systemd integration: see systemd.h. Control thread only; the watchdog is a
 * timer on the control thread's event loop, so a wedged loop stops pinging
 * and systemd restarts the daemon.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "daemon/systemd.h"

static struct event *watchdog_ev;

/*
 * What systemd passed (LISTEN_FDS, read once): at most one listening socket
 * and the fd store's entries named SYSTEMD_KEEP_PREFIX... (keep.h).
 */
static bool fds_read;
static int listen_fd = -ENOENT;
static int listen_err;
static unsigned n_kept;
static char **kept_names;
static int *kept_fds;

static void read_fds(void)
{
	char **names = NULL;
	int n, n_sockets = 0;

	if (fds_read) {
		return;
	}
	fds_read = true;
	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		listen_err = n;
		return;
	}
	kept_names = calloc((size_t)n + 1, sizeof(*kept_names));
	kept_fds = calloc((size_t)n + 1, sizeof(*kept_fds));
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "";

		/* Nothing systemd passed goes to a program the launcher starts. */
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (strncmp(name, SYSTEMD_KEEP_PREFIX, strlen(SYSTEMD_KEEP_PREFIX)) == 0) {
			/* a kept fd must not be taken for the socket: no copy, no start */
			if (!kept_names || !kept_fds || !(kept_names[n_kept] = strdup(name))) {
				listen_err = -ENOMEM;
				continue;
			}
			kept_fds[n_kept++] = fd;
			continue;
		}
		n_sockets++;
		listen_fd = fd;
	}
	if (n_sockets > 1 && listen_err == 0) {
		listen_err = -E2BIG;
	}
	if (names) {
		for (int i = 0; i < n; i++) {
			free(names[i]);
		}
		free(names);
	}
}

int systemd_listen_fd(struct error **errp)
{
	read_fds();
	if (listen_err == -E2BIG) {
		return error_set(errp, EINVAL,
				 "systemd passed more than one socket; vmmd.socket must have "
				 "exactly one ListenStream=");
	}
	if (listen_err == -ENOMEM) {
		return error_set(errp, ENOMEM, "out of memory for the fds systemd passed");
	}
	if (listen_err < 0) {
		return error_set_errno(errp, listen_err, "sd_listen_fds");
	}
	if (listen_fd < 0) {
		return -ENOENT;
	}
	if (sd_is_socket_unix(listen_fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
		return error_set(errp, EINVAL,
				 "the socket systemd passed is not a listening UNIX stream socket");
	}
	return listen_fd;
}

unsigned systemd_kept_fds(char ***ret_names, int **ret_fds)
{
	unsigned n;

	read_fds();
	n = n_kept;
	*ret_names = kept_names;
	*ret_fds = kept_fds;
	kept_names = NULL;
	kept_fds = NULL;
	n_kept = 0;
	return n;
}

bool systemd_can_store_fds(void)
{
	return getenv("NOTIFY_SOCKET") != NULL;
}

int systemd_store_fd(int fd, const char *name)
{
	char msg[320];
	int r;

	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	return r > 0 ? 0 : r == 0 ? -ENOTCONN : r;
}

void systemd_unstore_fds(const char *name)
{
	sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", name);
}

int systemd_notify_barrier(void)
{
	return sd_notify_barrier(0, 5 * 1000000ull);
}

void systemd_notify_status(unsigned running, unsigned defined)
{
	sd_notifyf(0, "STATUS=%u VM%s running, %u defined", running, running == 1 ? "" : "s",
		   defined);
}

void systemd_notify_ready(unsigned running, unsigned defined)
{
	sd_notifyf(0, "READY=1\nSTATUS=%u VM%s running, %u defined", running,
		   running == 1 ? "" : "s", defined);
}

void systemd_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=Stopping: pausing and destroying VMs");
}

void systemd_notify_mainpid(pid_t pid)
{
	sd_notifyf(0, "MAINPID=%d", (int)pid);
}

void systemd_notify_reloading(bool done)
{
	sd_notify(0, done ? "READY=1" : "RELOADING=1");
}

static void watchdog_ping(evutil_socket_t fd, short what, void *opaque)
{
	sd_notify(0, "WATCHDOG=1");
}

int systemd_watchdog_start(struct event_base *base, struct error **errp)
{
	uint64_t usec = 0;
	struct timeval tv;
	int r = sd_watchdog_enabled(0, &usec);

	if (r <= 0 || usec == 0) {
		return 0;
	}
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	watchdog_ev = event_new(base, -1, EV_PERSIST, watchdog_ping, NULL);
	if (!watchdog_ev || event_add(watchdog_ev, &tv) < 0) {
		return error_set(errp, ENOMEM, "cannot arm the watchdog timer");
	}
	sd_notify(0, "WATCHDOG=1");
	return 1;
}

void systemd_watchdog_stop(void)
{
	if (watchdog_ev) {
		event_free(watchdog_ev);
		watchdog_ev = NULL;
	}
}

bool systemd_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) < 0) {
		return false;
	}
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}
