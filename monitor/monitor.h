/*
 * The protocol server (DESIGN.md §5, vmmd-protocol(7)): listening sockets,
 * client connections with QMP framing, command dispatch and event fan-out.
 * The daemon creates one monitor, a main listener and one listener per
 * running VM (where the VM selector is implied).
 *
 * Threads: control thread only (the libevent base given to monitor_new).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/error.h"

struct event_base;
struct registry;
struct monitor;

struct monitor_limits {
	unsigned max_clients;	      /* connections over all sockets */
	size_t max_message;	      /* bytes of one incoming JSON message */
	unsigned max_depth;	      /* nesting of one incoming message */
	size_t max_output;	      /* bytes queued for one client before it is dropped */
	unsigned negotiation_timeout; /* seconds before qmp_capabilities, 0 = none */
};

/* Built-in defaults (also printed by vmmd --help). */
#define MONITOR_DEFAULT_MAX_CLIENTS 64
#define MONITOR_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define MONITOR_DEFAULT_MAX_DEPTH 64
#define MONITOR_DEFAULT_MAX_OUTPUT (4 * 1024 * 1024)
#define MONITOR_DEFAULT_NEGOTIATION_TIMEOUT 30

/*
 * @reg is borrowed; @group is the socket group whose members may connect
 * ((gid_t)-1 for none: root and the daemon's own uid only).
 */
int monitor_new(struct event_base *base, struct registry *reg, const struct monitor_limits *lim,
		gid_t group, struct monitor **ret, struct error **errp);
void monitor_free(struct monitor *mon);
/* New limits apply to new messages and connections. */
void monitor_set_limits(struct monitor *mon, const struct monitor_limits *lim);

/* Serve an already listening socket (socket activation); takes @fd. */
int monitor_listen_fd(struct monitor *mon, int fd, struct error **errp);
/*
 * Create and serve a UNIX socket at @path (a stale socket file is replaced)
 * with @mode and @group ((gid_t)-1 keeps the daemon's). @vm is NULL for the
 * main socket, or the VM this socket implies.
 */
int monitor_listen_path(struct monitor *mon, const char *path, mode_t mode, gid_t group,
			const char *vm, struct error **errp);
/* Close every listener (the main one first); connected clients stay. */
void monitor_stop_listening(struct monitor *mon);
/* A VM went away: close its socket (the file is removed) and its clients, replies flushed. */
void monitor_vm_gone(struct monitor *mon, const char *vm);

/*
 * Send an event to every negotiated client concerned: all of the main
 * socket's, and those of @vm's own socket. @vm may be NULL for daemon
 * events; "vm" is added to @data (a new reference the callee takes, or NULL).
 */
void monitor_emit_event(struct monitor *mon, const char *vm, const char *name, json_t *data);

/* An fd passed with getfd by the client whose command is running; a dup, or -ENOENT. */
int monitor_get_fd(struct monitor *mon, const char *name);
unsigned monitor_client_count(struct monitor *mon);
