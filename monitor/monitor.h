/*
 * The protocol server (DESIGN.md §5, vmmd-protocol(7)): listening sockets,
 * client connections with QMP framing, command dispatch and event fan-out.
 * A protocol library: it knows the schema (schema.json) and the protocol's
 * own commands (qmp_capabilities, query-*, getfd, closefd); the application
 * hands monitor_new() the table of its other commands (the daemon's are in
 * daemon/qmp-*.c). The daemon creates one monitor, a main listener and one
 * listener per running VM (where the VM selector is implied).
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
struct monitor;
struct monitor_client;
struct monitor_deferred;

struct monitor_limits {
	unsigned max_clients;	      /* connections over all sockets */
	size_t max_message;	      /* bytes of one incoming JSON message */
	unsigned max_depth;	      /* nesting of one incoming message */
	size_t max_output;	      /* bytes queued for one client before it is dropped */
	unsigned negotiation_timeout; /* seconds before qmp_capabilities, 0 = none */
};

/*
 * The greeting's and query-version's "version": the QEMU version whose QMP
 * behaviour vmmd implements (clients gate features on it) and a package
 * string naming vmmd's own version.
 */
struct monitor_version {
	unsigned major, minor, micro;
	char package[128];
};

#define MONITOR_DEFAULT_QEMU_MAJOR 7
#define MONITOR_DEFAULT_QEMU_MINOR 2
#define MONITOR_DEFAULT_QEMU_MICRO 0

/* Built-in defaults (also printed by vmmd --help). */
#define MONITOR_DEFAULT_MAX_CLIENTS 64
#define MONITOR_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define MONITOR_DEFAULT_MAX_DEPTH 64
#define MONITOR_DEFAULT_MAX_OUTPUT (4 * 1024 * 1024)
#define MONITOR_DEFAULT_NEGOTIATION_TIMEOUT 30

/* A command's context: the client and, for VM-scoped commands, the VM. */
struct monitor_request {
	struct monitor *mon;
	struct monitor_client *client;
	void *ctx;  /* monitor_handlers.ctx */
	void *vm;   /* VM-scoped commands: what monitor_handlers.find_vm returned */
	json_t *id; /* the request's id (borrowed), or NULL */
	/* Run after the reply is queued (quit ends the VM after answering). */
	void (*after)(struct monitor_request *req);
	/*
	 * The handler runs for human-monitor-command: a deferred answer is
	 * HMP's text (a string answer as it is, other success "", failure
	 * "Error: MESSAGE").
	 */
	bool hmp;
};

/*
 * A command handler. @args is the checked argument object (borrowed, without
 * "vm"). On success *ret is the "return" value (a new reference; {} if left
 * NULL). On failure *errp carries the QMP class and message. A handler whose
 * work runs elsewhere (a worker thread) takes a monitor_defer() token and
 * returns MONITOR_DEFERRED; the answer goes out at monitor_deferred_done().
 */
typedef int (*monitor_handler_fn)(struct monitor_request *req, json_t *args, json_t **ret,
				  struct error **errp);

/* A handler's return value: the reply comes later, through monitor_deferred_done(). */
#define MONITOR_DEFERRED 1

/*
 * Answer this request later. Until then the client's further input waits
 * (replies stay in order, as QMP requires); other clients are served. The
 * token stays valid after the client disconnects (the answer is dropped).
 */
struct monitor_deferred *monitor_defer(struct monitor_request *req);
/*
 * Send the deferred answer (control thread): r >= 0 with @ret (a new
 * reference taken; NULL = {}), or r < 0 with @err (taken). Frees @d.
 */
void monitor_deferred_done(struct monitor_deferred *d, int r, json_t *ret, struct error *err);
/*
 * Act again for @d's client (getfd lookups with monitor_get_fd) while @on,
 * e.g. when a deferred vm-create goes on to start the VM. Control thread.
 */
void monitor_deferred_act(struct monitor_deferred *d, bool on);
/* Forget @d without answering (the handler failed before deferring). */
void monitor_deferred_cancel(struct monitor_deferred *d);

struct monitor_command {
	const char *name;
	monitor_handler_fn fn;
};

/*
 * The application's commands. Together with the monitor's own they must be
 * exactly the commands of schema.json (checked by monitor_new).
 */
struct monitor_handlers {
	const struct monitor_command *cmds; /* in query-commands order */
	size_t n_cmds;
	void *ctx; /* passed to every handler as req->ctx */
	/* The VM a VM-scoped command names, or NULL (DeviceNotFound). */
	void *(*find_vm)(void *ctx, const char *name);
	/*
	 * Optional: emit the events other threads have queued, called before
	 * each command runs, so that its answer follows every event queued
	 * before it (as in QEMU), even when a client's commands come faster
	 * than the event loop turns.
	 */
	void (*flush_events)(void *ctx);
};

/* Check @h against the compiled-in schema (what monitor_new does first). */
int monitor_check_handlers(const struct monitor_handlers *h, struct error **errp);

/*
 * @h is copied (its table and ctx are borrowed); @group is the socket group
 * whose members may connect ((gid_t)-1 for none: root and the daemon's own uid only).
 */
int monitor_new(struct event_base *base, const struct monitor_handlers *h,
		const struct monitor_limits *lim, gid_t group, struct monitor **ret,
		struct error **errp);
void monitor_free(struct monitor *mon);
/* New limits apply to new messages and connections. */
void monitor_set_limits(struct monitor *mon, const struct monitor_limits *lim);
/* The version new connections are greeted with (default 7.2.0, "vmmd-VERSION"). */
void monitor_set_version(struct monitor *mon, const struct monitor_version *v);
/* The built-in version. */
void monitor_default_version(struct monitor_version *v);
/* query-version's answer, {"qemu": {...}, "package": ...}; new reference. */
json_t *monitor_version_info(struct monitor *mon);

/* Serve an already listening socket (socket activation); takes @fd. */
int monitor_listen_fd(struct monitor *mon, int fd, struct error **errp);
/*
 * Create and serve a UNIX socket at @path (a stale socket file is replaced)
 * with @mode and @group ((gid_t)-1 keeps the daemon's). @vm is NULL for the
 * main socket, or the VM this socket implies.
 */
int monitor_listen_path(struct monitor *mon, const char *path, mode_t mode, gid_t group,
			const char *vm, struct error **errp);
/*
 * monitor_listen_path in two steps. monitor_bind_path creates the listening
 * socket file (file-system calls: any thread, it touches no monitor) and
 * returns its fd; monitor_listen_bound serves it (the control thread) and
 * takes @fd, closing it and removing @path on failure.
 */
int monitor_bind_path(const char *path, mode_t mode, gid_t group, struct error **errp);
int monitor_listen_bound(struct monitor *mon, int fd, const char *path, const char *vm,
			 struct error **errp);
/*
 * Live upgrade (docs/upgrade.md). monitor_add_client serves @fd (a connected
 * stream socket, taken) as a client of the main socket; @on_gone(@tag) runs
 * when it goes, and monitor_request_tag() of its requests is @tag (NULL for
 * other clients). monitor_main_fd is the main listener's fd (borrowed) or
 * -ENOENT; monitor_pause_main stops or resumes accepting on it (waiting
 * clients stay queued in the kernel); after monitor_keep_socket_files no
 * socket file is removed when its listener closes (the new daemon owns them).
 */
int monitor_add_client(struct monitor *mon, int fd, void (*on_gone)(void *tag), void *tag,
		       struct error **errp);
void *monitor_request_tag(struct monitor_request *req);
int monitor_main_fd(struct monitor *mon);
void monitor_pause_main(struct monitor *mon, bool paused);
void monitor_keep_socket_files(struct monitor *mon);
/* Close every listener (the main one first); connected clients stay. */
void monitor_stop_listening(struct monitor *mon);
/* A VM went away: close its socket (the file is removed) and its clients, replies flushed. */
void monitor_vm_gone(struct monitor *mon, const char *vm);

/*
 * Send an event to every negotiated client concerned: all of the main
 * socket's, and those of @vm's own socket. @vm may be NULL for daemon
 * events. On the main socket "vm" is added to @data; a VM's own socket gets
 * QEMU's exact shape (no "vm", and no "data" when it is empty). @data is a
 * new reference the callee takes, or NULL.
 */
void monitor_emit_event(struct monitor *mon, const char *vm, const char *name, json_t *data);

/* An fd passed with getfd by the client whose command is running; a dup, or -ENOENT. */
int monitor_get_fd(struct monitor *mon, const char *name);
/*
 * The same fd itself, no longer the client's (QEMU's monitor_get_fd: a
 * dump's pipe ends when the dump closes it), or -ENOENT.
 */
int monitor_take_fd(struct monitor *mon, const char *name);
unsigned monitor_client_count(struct monitor *mon);
