/*
 * A small blocking QMP client: connect, read the greeting, negotiate,
 * execute commands with ids, keep events aside. Shared by vmctl and the
 * tests. Single-threaded; one object per connection.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "common/error.h"

struct qmp_client;

/* Connect to @path, read the greeting and (if @negotiate) run qmp_capabilities. */
int qmp_client_connect(const char *path, bool negotiate, struct qmp_client **ret,
		       struct error **errp);
void qmp_client_free(struct qmp_client *c);
DEFINE_CLEANUP_FUNC(struct qmp_client, qmp_client_free)

/* The greeting object (borrowed). */
json_t *qmp_client_greeting(struct qmp_client *c);

/*
 * Run @cmd with @args (stolen; NULL for none) and wait for its reply. On
 * success *ret (may be NULL) gets the "return" value (new reference). A QMP
 * error fills *errp with the server's class and description and returns
 * -EREMOTEIO; a connection problem returns another -errno.
 */
int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args, json_t **ret,
		       struct error **errp);

/* Write raw bytes as they are. */
int qmp_client_send_raw(struct qmp_client *c, const char *buf, size_t len, struct error **errp);
/*
 * The next message of any kind read from the socket (queued events are not
 * looked at), waiting at most @timeout_ms (-1: forever). -ETIMEDOUT quietly;
 * -EPIPE with *errp at the end of the stream.
 */
int qmp_client_recv(struct qmp_client *c, int timeout_ms, json_t **ret, struct error **errp);
/* The next event (queued ones first), waiting at most @timeout_ms (-1: forever). */
int qmp_client_next_event(struct qmp_client *c, int timeout_ms, json_t **ret, struct error **errp);
