/*
 * systemd integration: see systemd.h. Control thread only; the watchdog is a
 * timer on the control thread's event loop, so a wedged loop stops pinging
 * and systemd restarts the daemon.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "daemon/systemd.h"

static struct event *watchdog_ev;

int systemd_listen_fd(struct error **errp)
{
	int n = sd_listen_fds(1);

	if (n < 0) {
		return error_set_errno(errp, n, "sd_listen_fds");
	}
	if (n == 0) {
		return -ENOENT;
	}
	if (n > 1) {
		return error_set(errp, EINVAL,
				 "systemd passed %d sockets; vmmd.socket must have exactly one "
				 "ListenStream=",
				 n);
	}
	if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0) {
		return error_set(errp, EINVAL,
				 "the socket systemd passed is not a listening UNIX stream socket");
	}
	return SD_LISTEN_FDS_START;
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
