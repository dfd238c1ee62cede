/*
 * Inside the monitor: the client and server objects shared by server.c,
 * dispatch.c, events.c and the protocol's own commands (cmd-qmp.c).
 * Control thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "common/list.h"
#include "monitor/json-stream.h"
#include "monitor/monitor.h"
#include "monitor/schema.h"

struct monitor_fd {
	struct list_head link;
	char *name;
	int fd;
};

struct monitor_listener {
	struct list_head link;
	struct monitor *mon;
	struct event *ev;
	int fd;
	char *path; /* removed on close; NULL for an activated socket */
	char *vm;   /* NULL: the main socket */
};

/* fds received with SCM_RIGHTS and not yet claimed by getfd; more are closed. */
#define MONITOR_MAX_PENDING_FDS 8
/* Seconds a closing connection may take to read its last replies. */
#define MONITOR_CLOSE_TIMEOUT 5
/*
 * Flow control (vmmd-protocol(7), LIMITS): a client's input is not read while
 * its output queue holds more than a quarter of max_output, and again once it
 * drains below an eighth; a client whose queue does not move for
 * MONITOR_STALL_TIMEOUT seconds, or that passes max_output while over that
 * quarter (events pile up), does not read and is dropped. A message to a
 * queue under the quarter is taken whatever its size.
 */
#define MONITOR_STALL_TIMEOUT 10
/* At max-clients, a new client evicts the longest-idle one idle this long. */
#define MONITOR_EVICT_IDLE 2
/* fds a client may hold with getfd. */
#define MONITOR_MAX_FDS 64

struct monitor_client {
	struct list_head link;
	struct monitor *mon;
	struct bufferevent *bev; /* output only */
	struct event *rev;	 /* input, read with recvmsg for SCM_RIGHTS */
	struct event *timer;	 /* negotiation timeout, then closing timeout */
	struct json_stream in;
	char *vm; /* implied VM (per-VM socket), else NULL */
	pid_t pid;
	uid_t uid;
	bool negotiated;
	bool dead;			   /* freed at the next safe point */
	bool closing;			   /* freed once its output is flushed */
	bool throttled;			   /* input not read until the output drains */
	bool eof;			   /* the peer closed its write side */
	struct monitor_deferred *deferred; /* a command whose answer comes later */
	struct evbuffer *inq;		   /* input read but not yet processed */
	uint64_t last_active;		   /* CLOCK_MONOTONIC ms of the last input */
	struct list_head fds;		   /* struct monitor_fd from getfd */
	unsigned n_fds;
	int pending[MONITOR_MAX_PENDING_FDS];
	unsigned n_pending;
	/* monitor_add_client: told when the client goes; its requests carry @tag */
	void (*on_gone)(void *tag);
	void *tag;
};

struct monitor {
	struct event_base *base;
	struct monitor_handlers handlers;
	struct schema *schema;
	struct monitor_limits lim;
	gid_t group;
	struct list_head listeners;
	struct list_head clients;
	unsigned n_clients;
	struct event *reaper;		/* frees dead clients outside their callbacks */
	struct monitor_client *current; /* whose command runs now (getfd lookups) */
	struct monitor_version version; /* what the greeting reports */
	bool keep_files;		/* socket files stay when listeners close */
};

/* The protocol's own commands (cmd-qmp.c), listed before the application's. */
extern const struct monitor_command monitor_protocol_commands[];
extern const size_t monitor_n_protocol_commands;
/* The protocol's and @h's commands against the schema, both ways. */
int monitor_check_table(const struct schema *s, const struct monitor_handlers *h,
			struct error **errp);
/* The handler of @name among the protocol's and @h's commands, or NULL. */
const struct monitor_command *monitor_find_command(const struct monitor_handlers *h,
						   const char *name);

struct monitor_deferred {
	struct monitor *mon;
	struct monitor_client *client; /* NULL once it has gone */
	json_t *id;
	bool hmp; /* monitor_request.hmp */
};

/* Parse and dispatch @c's queued input (after a deferred answer went out). */
void monitor_client_resume(struct monitor_client *c);

/* Run one complete input message from @c (borrowed). */
void monitor_dispatch(struct monitor_client *c, json_t *msg);
/* Queue one JSON object (CRLF-terminated) to @c; drops @c if its queue overflows. */
void monitor_client_send(struct monitor_client *c, json_t *obj);
/* obj as one line of QMP text (malloc'd; NULL when out of memory) */
char *monitor_dump(json_t *obj);
/* text (no line end) to c; with now, written at once when nothing is queued before it */
void monitor_client_send_text(struct monitor_client *c, const char *text, bool now);
void monitor_client_send_error(struct monitor_client *c, const char *cls, const char *desc,
			       json_t *id);
/* Drop @c now (freed at the next safe point), or once its output is flushed. */
void monitor_client_drop(struct monitor_client *c);
void monitor_client_close_after_flush(struct monitor_client *c);
/* {"seconds": S, "microseconds": US}, new reference. */
json_t *monitor_timestamp(void);
json_t *monitor_greeting(struct monitor *mon);

/* The protocol's own handlers (cmd-qmp.c). */
int cmd_qmp_capabilities(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int cmd_query_version(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int cmd_query_commands(struct monitor_request *req, json_t *args, json_t **ret,
		       struct error **errp);
int cmd_query_qmp_schema(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp);
int cmd_getfd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int cmd_closefd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int cmd_add_fd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int cmd_remove_fd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
int cmd_query_fdsets(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp);
