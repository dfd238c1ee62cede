/*
 * Command dispatch: message shape, negotiation mode, the command tables
 * (the protocol's own below, the application's from monitor_new; together
 * checked against schema.json at start-up and in the unit tests), strict
 * argument checking, VM selection and the reply with the echoed id.
 *
 * Adding a command: declare it in schema.json, write its handler and list
 * it in its table (a VM command: daemon/qmp-*.c and daemon/qmp.h); a missing
 * or extra entry stops the daemon at start-up and fails test-monitor-dispatch.
 *
 * Threads: control thread only.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/monitor-int.h"

const struct monitor_command monitor_protocol_commands[] = {
	{"qmp_capabilities", cmd_qmp_capabilities},
	{"query-version", cmd_query_version},
	{"query-commands", cmd_query_commands},
	{"query-qmp-schema", cmd_query_qmp_schema},
	{"getfd", cmd_getfd},
	{"closefd", cmd_closefd},
	{"add-fd", cmd_add_fd},
	{"remove-fd", cmd_remove_fd},
	{"query-fdsets", cmd_query_fdsets},
};
const size_t monitor_n_protocol_commands = ARRAY_SIZE(monitor_protocol_commands);

const struct monitor_command *monitor_find_command(const struct monitor_handlers *h,
						   const char *name)
{
	for (size_t i = 0; i < monitor_n_protocol_commands; i++) {
		if (strcmp(monitor_protocol_commands[i].name, name) == 0) {
			return &monitor_protocol_commands[i];
		}
	}
	for (size_t i = 0; i < h->n_cmds; i++) {
		if (strcmp(h->cmds[i].name, name) == 0) {
			return &h->cmds[i];
		}
	}
	return NULL;
}

static int check_entry(const struct schema *s, const struct monitor_handlers *h,
		       const struct monitor_command *cmd, struct error **errp)
{
	if (!schema_has_command(s, cmd->name, NULL)) {
		return error_set(errp, EINVAL, "command %s has a handler but is not in schema.json",
				 cmd->name);
	}
	if (monitor_find_command(h, cmd->name) != cmd) {
		return error_set(errp, EINVAL, "command %s is listed twice", cmd->name);
	}
	return 0;
}

int monitor_check_table(const struct schema *s, const struct monitor_handlers *h,
			struct error **errp)
{
	const char *key;
	json_t *v;
	int r;

	for (size_t i = 0; i < monitor_n_protocol_commands; i++) {
		r = check_entry(s, h, &monitor_protocol_commands[i], errp);
		if (r < 0) {
			return r;
		}
	}
	for (size_t i = 0; i < h->n_cmds; i++) {
		r = check_entry(s, h, &h->cmds[i], errp);
		if (r < 0) {
			return r;
		}
	}
	json_object_foreach (schema_commands(s), key, v) {
		if (!monitor_find_command(h, key)) {
			return error_set(errp, EINVAL, "command %s of schema.json has no handler",
					 key);
		}
	}
	return 0;
}

int monitor_check_handlers(const struct monitor_handlers *h, struct error **errp)
{
	struct schema *s;
	int r;

	r = schema_load(schema_json_text, &s, errp);
	if (r < 0) {
		return r;
	}
	r = monitor_check_table(s, h, errp);
	schema_free(s);
	return r;
}

struct monitor_deferred *monitor_defer(struct monitor_request *req)
{
	struct monitor_client *c = req->client;
	struct monitor_deferred *d = calloc(1, sizeof(*d));

	if (!d) {
		return NULL;
	}
	d->mon = req->mon;
	d->client = c;
	d->id = json_incref(req->id);
	d->hmp = req->hmp;
	c->deferred = d;
	return d;
}

void monitor_deferred_act(struct monitor_deferred *d, bool on)
{
	d->mon->current = on ? d->client : NULL;
}

void monitor_deferred_cancel(struct monitor_deferred *d)
{
	if (!d) {
		return;
	}
	if (d->client) {
		d->client->deferred = NULL;
	}
	json_decref(d->id);
	free(d);
}

void monitor_deferred_done(struct monitor_deferred *d, int r, json_t *ret, struct error *err)
{
	struct monitor_client *c = d->client;

	if (d->hmp) {
		/* HMP's text, its lines ending in "\r\n" as QEMU's: a string answer is it */
		if (r < 0 || !json_is_string(ret)) {
			json_decref(ret);
			ret = r < 0 ? json_sprintf("Error: %s\r\n", err ? err->msg : strerror(-r))
				    : json_string("");
		}
		r = 0;
	}
	if (c) {
		if (r < 0) {
			if (!err) {
				error_set(&err, r, "command failed");
			}
			monitor_client_send_error(c, error_class_name(err->cls), err->msg, d->id);
		} else {
			json_auto_t *reply =
				json_pack("{s:o}", "return", ret ? ret : json_object());

			ret = NULL;
			if (reply && d->id) {
				json_object_set(reply, "id", d->id);
			}
			monitor_client_send(c, reply);
		}
	}
	json_decref(ret);
	error_free(err);
	monitor_deferred_cancel(d);
	if (c) {
		monitor_client_resume(c);
	}
}

static void reply_error(struct monitor_client *c, struct error *err, json_t *id)
{
	monitor_client_send_error(c, error_class_name(err->cls), err->msg, id);
}

static int check_shape(json_t *msg, const char **ret_name, json_t **ret_args, struct error **errp)
{
	const char *key;
	json_t *v, *exec;

	json_object_foreach (msg, key, v) {
		if (strcmp(key, "execute") != 0 && strcmp(key, "arguments") != 0 &&
		    strcmp(key, "id") != 0) {
			if (strcmp(key, "exec-oob") == 0) {
				return error_set(errp, EINVAL,
						 "Out-of-band execution is not "
						 "supported: the 'oob' capability is not offered");
			}
			return error_set(errp, EINVAL, "QMP input member '%s' is unexpected", key);
		}
	}
	exec = json_object_get(msg, "execute");
	if (!exec) {
		return error_set(errp, EINVAL, "QMP input lacks member 'execute'");
	}
	if (!json_is_string(exec)) {
		return error_set(errp, EINVAL, "QMP input member 'execute' must be a string");
	}
	v = json_object_get(msg, "arguments");
	if (v && !json_is_object(v)) {
		return error_set(errp, EINVAL, "QMP input member 'arguments' must be an object");
	}
	*ret_name = json_string_value(exec);
	*ret_args = v;
	return 0;
}

void monitor_dispatch(struct monitor_client *c, json_t *msg)
{
	struct monitor *mon = c->mon;
	struct error *err = NULL;
	json_t *id = json_object_get(msg, "id");
	json_auto_t *args = NULL;
	json_auto_t *empty = json_object();
	json_t *ret = NULL, *given = NULL;
	const struct monitor_command *cmd;
	struct monitor_request req = {.mon = mon, .client = c, .ctx = mon->handlers.ctx, .id = id};
	enum schema_scope scope;
	const char *name = NULL;
	int r;

	if (check_shape(msg, &name, &given, &err) < 0) {
		goto fail;
	}
	if (!c->negotiated && strcmp(name, "qmp_capabilities") != 0) {
		error_set_class(&err, ERROR_CLASS_COMMAND_NOT_FOUND, EINVAL,
				"Expecting capabilities negotiation with 'qmp_capabilities'");
		goto fail;
	}
	if (c->negotiated && strcmp(name, "qmp_capabilities") == 0) {
		error_set_class(&err, ERROR_CLASS_COMMAND_NOT_FOUND, EINVAL,
				"Capabilities negotiation is already complete, command ignored");
		goto fail;
	}
	cmd = monitor_find_command(&mon->handlers, name);
	if (!cmd || !schema_has_command(mon->schema, name, &scope) ||
	    (scope == SCHEMA_SCOPE_DAEMON && c->vm)) {
		error_set_class(&err, ERROR_CLASS_COMMAND_NOT_FOUND, ENOENT,
				"The command %s has not been found", name);
		goto fail;
	}
	if (schema_check_args(mon->schema, name, given ? given : empty, &err) < 0) {
		goto fail;
	}
	args = json_deep_copy(given ? given : empty);
	if (!args) {
		error_set(&err, ENOMEM, "out of memory");
		goto fail;
	}
	if (scope == SCHEMA_SCOPE_VM) {
		const char *vm = json_string_value(json_object_get(args, "vm"));

		if (c->vm && vm && strcmp(vm, c->vm) != 0) {
			error_set(&err, EINVAL, "This socket belongs to VM '%s', not '%s'", c->vm,
				  vm);
			goto fail;
		}
		if (!c->vm && !vm) {
			error_set(&err, EINVAL, "Parameter 'vm' is missing");
			goto fail;
		}
		req.vm = mon->handlers.find_vm(mon->handlers.ctx, c->vm ? c->vm : vm);
		if (!req.vm) {
			error_set_class(&err, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
					"VM '%s' does not exist", c->vm ? c->vm : vm);
			goto fail;
		}
		json_object_del(args, "vm");
	}
	mon->current = c;
	r = cmd->fn(&req, args, &ret, &err);
	mon->current = NULL;
	if (r == MONITOR_DEFERRED) {
		return;
	}
	if (r < 0) {
		if (!err) {
			error_set(&err, r, "%s failed", name);
		}
		goto fail;
	}
	{
		json_auto_t *reply = json_pack("{s:o}", "return", ret ? ret : json_object());

		if (reply && id) {
			json_object_set(reply, "id", id);
		}
		monitor_client_send(c, reply);
	}
	if (req.after) {
		req.after(&req);
	}
	return;

fail:
	reply_error(c, err, id);
	error_free(err);
}
