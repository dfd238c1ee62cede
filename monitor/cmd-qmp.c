/*
 * Protocol-level commands: qmp_capabilities, query-version, query-commands,
 * query-qmp-schema, getfd and closefd. Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fdset.h"
#include "monitor/monitor-int.h"

int cmd_qmp_capabilities(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	json_t *enable = json_object_get(args, "enable");
	struct monitor_client *c = req->client;

	if (json_array_size(enable) > 0) {
		/* The greeting offers no capability (no out-of-band execution). */
		return error_set(errp, EINVAL, "Capability '%s' not available",
				 json_string_value(json_array_get(enable, 0)));
	}
	c->negotiated = true;
	if (c->timer) {
		event_free(c->timer);
		c->timer = NULL;
	}
	return 0;
}

int cmd_query_version(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_auto_t *g = monitor_greeting(req->mon);

	*ret = json_deep_copy(json_object_get(json_object_get(g, "QMP"), "version"));
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int cmd_query_commands(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *list = json_array();
	enum schema_scope scope;

	const struct monitor_handlers *h = &req->mon->handlers;

	for (size_t i = 0; i < monitor_n_protocol_commands + h->n_cmds; i++) {
		const char *name = i < monitor_n_protocol_commands
					   ? monitor_protocol_commands[i].name
					   : h->cmds[i - monitor_n_protocol_commands].name;

		schema_has_command(req->mon->schema, name, &scope);
		if (scope == SCHEMA_SCOPE_DAEMON && req->client->vm) {
			continue;
		}
		json_array_append_new(list, json_pack("{s:s}", "name", name));
	}
	*ret = list;
	return 0;
}

int cmd_query_qmp_schema(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	*ret = schema_introspect(req->mon->schema, req->client->vm != NULL);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

static struct monitor_fd *find_fd(struct monitor_client *c, const char *name)
{
	struct list_head *p;

	list_for_each (p, &c->fds) {
		struct monitor_fd *f = list_entry(p, struct monitor_fd, link);

		if (strcmp(f->name, name) == 0) {
			return f;
		}
	}
	return NULL;
}

/* The oldest fd received with SCM_RIGHTS and not claimed yet (now the caller's), or -1. */
static int take_pending(struct monitor_client *c)
{
	int fd;

	if (c->n_pending == 0) {
		return -1;
	}
	fd = c->pending[0];
	memmove(c->pending, c->pending + 1, (c->n_pending - 1) * sizeof(int));
	c->n_pending--;
	return fd;
}

int cmd_getfd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct monitor_client *c = req->client;
	const char *name = json_string_value(json_object_get(args, "fdname"));
	struct monitor_fd *f;
	int fd;

	if (c->n_pending == 0) {
		return error_set(errp, EINVAL, "No file descriptor supplied via SCM_RIGHTS");
	}
	if (name[0] >= '0' && name[0] <= '9') {
		return error_set(errp, EINVAL, "Parameter 'fdname' may not start with a digit");
	}
	/* The oldest fd received goes with this command; it is ours from now on. */
	fd = take_pending(c);
	f = find_fd(c, name);
	if (f) {
		close(f->fd);
		f->fd = fd;
		return 0;
	}
	if (c->n_fds >= MONITOR_MAX_FDS) {
		close(fd);
		return error_set(errp, EMFILE, "This connection already holds %u fds (the limit)",
				 MONITOR_MAX_FDS);
	}
	f = calloc(1, sizeof(*f));
	if (!f || !(f->name = strdup(name))) {
		free(f);
		close(fd);
		return error_set(errp, ENOMEM, "out of memory");
	}
	f->fd = fd;
	list_add_tail(&f->link, &c->fds);
	c->n_fds++;
	return 0;
}

int cmd_closefd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct monitor_client *c = req->client;
	const char *name = json_string_value(json_object_get(args, "fdname"));
	struct monitor_fd *f = find_fd(c, name);

	if (!f) {
		return error_set(errp, ENOENT, "File descriptor named '%s' not found", name);
	}
	list_del(&f->link);
	c->n_fds--;
	close(f->fd);
	free(f->name);
	free(f);
	return 0;
}

/* fd sets (common/fdset.h): daemon-wide, as in one QEMU process. */
int cmd_add_fd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *id = json_object_get(args, "fdset-id");
	int fd = take_pending(req->client);
	int64_t set;

	if (fd < 0) {
		return error_set(errp, EINVAL, "No file descriptor supplied via SCM_RIGHTS");
	}
	set = fdset_add(id != NULL, id ? json_integer_value(id) : -1, fd,
			json_string_value(json_object_get(args, "opaque")), errp);
	if (set < 0) {
		return (int)set;
	}
	*ret = json_pack("{s:I, s:i}", "fdset-id", (json_int_t)set, "fd", fd);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

int cmd_remove_fd(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	json_t *fd = json_object_get(args, "fd");

	return fdset_remove(json_integer_value(json_object_get(args, "fdset-id")), fd != NULL,
			    fd ? json_integer_value(fd) : -1, errp);
}

static void add_fdset_fd(void *opaque, int64_t id, int fd, const char *fd_opaque)
{
	json_t *list = opaque, *last = json_array_get(list, json_array_size(list) - 1);
	json_t *entry = json_pack("{s:i}", "fd", fd);

	if (fd_opaque) {
		json_object_set_new(entry, "opaque", json_string(fd_opaque));
	}
	if (!last || json_integer_value(json_object_get(last, "fdset-id")) != id) {
		last = json_pack("{s:I, s:[]}", "fdset-id", (json_int_t)id, "fds");
		json_array_append_new(list, last);
	}
	json_array_append_new(json_object_get(last, "fds"), entry);
}

int cmd_query_fdsets(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	*ret = json_array();
	if (!*ret) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	fdset_foreach(add_fdset_fd, *ret);
	return 0;
}
