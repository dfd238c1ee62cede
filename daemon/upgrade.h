/*
 * Live upgrade (docs/upgrade.md): a new vmmd binary takes over every
 * running VM of the old daemon without stopping them.
 *
 * The old daemon forks a launcher at startup, before it has threads or a
 * seccomp filter; `daemon-upgrade` (or SIGUSR2) asks the launcher to start
 * the daemon's executable again with --take-over, handing it a QMP channel
 * to the old daemon (fd 3) and the main listening socket (fd 4). The new
 * daemon, a QMP client of the old one on that channel, moves each VM by
 * local migration over a socketpair (fd:), then says
 * x-daemon-upgrade-finish; the old daemon answers the upgrade, hands the
 * service over (MAINPID=) and exits without removing any socket file. The
 * new daemon then serves the same listening socket. A failure before the
 * finish moves the VMs already taken back to the old daemon, which goes on.
 *
 * Threads: control thread only, except the launcher (a process of its own).
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/error.h"

struct event_base;
struct monitor;
struct monitor_request;
struct registry;

/* Fork the launcher (main(), before anything else runs); -errno, logged. */
int upgrade_launcher_start(char **argv);

struct upgrade_hooks {
	struct event_base *base;
	struct monitor *mon;
	struct registry *reg;
	/* The old daemon has handed over: leave the event loop and exit. */
	void (*exit)(void *opaque);
	/* The new daemon has taken over (r = 0) or gave up (r < 0, then exit). */
	void (*took_over)(void *opaque, int r);
	void *opaque;
};
void upgrade_init(const struct upgrade_hooks *h);

/* Old daemon: start an upgrade (daemon-upgrade, SIGUSR2); @req may be NULL. */
int upgrade_begin(struct monitor_request *req, struct error **errp);
bool upgrade_in_progress(void);

/* New daemon (--take-over): start taking the VMs over the channel @chan_fd. */
int upgrade_takeover_start(int chan_fd, struct error **errp);
/* The new daemon's registry events (MIGRATION of the VM being moved). */
void upgrade_note_event(const char *vm, const char *name, json_t *data);
