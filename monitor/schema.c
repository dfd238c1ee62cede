/*
 * The protocol schema: loading, strict argument checking and introspection.
 * See schema.h. The loaded schema is immutable; any thread.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "monitor/schema.h"

struct schema {
	json_t *root;
	json_t *commands; /* borrowed from root */
	json_t *events;
	json_t *types;
};

static const char *const builtins[][2] = {
	{"str", "string"},   {"int", "int"},   {"number", "number"},
	{"bool", "boolean"}, {"null", "null"}, {"any", "value"},
};

static const char *builtin_json_type(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(builtins); i++) {
		if (strcmp(builtins[i][0], name) == 0) {
			return builtins[i][1];
		}
	}
	return NULL;
}

/* A type reference is a string (builtin or named) or a one-element array. */
static int check_typeref(const struct schema *s, json_t *t, const char *where, struct error **errp)
{
	if (json_is_array(t)) {
		if (json_array_size(t) != 1) {
			return error_set(errp, EINVAL, "schema: %s: array type needs one element",
					 where);
		}
		return check_typeref(s, json_array_get(t, 0), where, errp);
	}
	if (!json_is_string(t)) {
		return error_set(errp, EINVAL, "schema: %s: a type must be a string or [T]", where);
	}
	if (!builtin_json_type(json_string_value(t)) &&
	    !json_object_get(s->types, json_string_value(t))) {
		return error_set(errp, EINVAL, "schema: %s: unknown type '%s'", where,
				 json_string_value(t));
	}
	return 0;
}

static int check_members(const struct schema *s, json_t *members, const char *where,
			 struct error **errp)
{
	const char *key;
	json_t *t;
	int r;

	if (!json_is_object(members)) {
		return error_set(errp, EINVAL, "schema: %s: members must be an object", where);
	}
	json_object_foreach (members, key, t) {
		r = check_typeref(s, t, where, errp);
		if (r < 0) {
			return r;
		}
	}
	return 0;
}

/* "data" of a command or event: an object of members or a named object type. */
static int check_data(const struct schema *s, json_t *data, const char *where, struct error **errp)
{
	if (!data) {
		return 0;
	}
	if (json_is_string(data)) {
		json_t *t = json_object_get(s->types, json_string_value(data));

		if (!t || !json_object_get(t, "members")) {
			return error_set(errp, EINVAL, "schema: %s: data must name an object type",
					 where);
		}
		return 0;
	}
	return check_members(s, data, where, errp);
}

static int validate(struct schema *s, struct error **errp)
{
	const char *key;
	json_t *v;
	int r;

	if (!json_is_object(s->commands) || !json_is_object(s->events) ||
	    !json_is_object(s->types)) {
		return error_set(errp, EINVAL, "schema: commands, events and types are required");
	}
	json_object_foreach (s->types, key, v) {
		json_t *m = json_object_get(v, "members");
		json_t *e = json_object_get(v, "enum");
		json_t *a = json_object_get(v, "alternate");

		if (builtin_json_type(key)) {
			return error_set(errp, EINVAL, "schema: type %s shadows a builtin", key);
		}
		if (m) {
			r = check_members(s, m, key, errp);
		} else if (e) {
			r = json_is_array(e) ? 0
					     : error_set(errp, EINVAL, "schema: %s: bad enum", key);
		} else if (a) {
			size_t i;
			json_t *t;

			r = json_is_array(a)
				    ? 0
				    : error_set(errp, EINVAL, "schema: %s: bad alternate", key);
			json_array_foreach (a, i, t) {
				if (r == 0) {
					r = check_typeref(s, t, key, errp);
				}
			}
		} else {
			r = error_set(errp, EINVAL, "schema: type %s has no members/enum/alternate",
				      key);
		}
		if (r < 0) {
			return r;
		}
	}
	json_object_foreach (s->commands, key, v) {
		const char *scope = json_string_value(json_object_get(v, "scope"));
		json_t *ret = json_object_get(v, "returns");

		if (!scope || (strcmp(scope, "global") != 0 && strcmp(scope, "vm") != 0 &&
			       strcmp(scope, "daemon") != 0)) {
			return error_set(errp, EINVAL, "schema: command %s: bad scope", key);
		}
		r = check_data(s, json_object_get(v, "data"), key, errp);
		if (r == 0 && ret) {
			r = check_typeref(s, ret, key, errp);
		}
		if (r < 0) {
			return r;
		}
	}
	json_object_foreach (s->events, key, v) {
		r = check_data(s, v, key, errp);
		if (r < 0) {
			return r;
		}
	}
	return 0;
}

int schema_load(const char *text, struct schema **ret, struct error **errp)
{
	struct schema *s;
	json_error_t jerr;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!s->root) {
		free(s);
		return error_set(errp, EINVAL, "schema: line %d: %s", jerr.line, jerr.text);
	}
	s->commands = json_object_get(s->root, "commands");
	s->events = json_object_get(s->root, "events");
	s->types = json_object_get(s->root, "types");
	r = validate(s, errp);
	if (r < 0) {
		schema_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void schema_free(struct schema *s)
{
	if (!s) {
		return;
	}
	json_decref(s->root);
	free(s);
}

bool schema_has_command(const struct schema *s, const char *name, enum schema_scope *ret_scope)
{
	json_t *c = json_object_get(s->commands, name);
	const char *scope;

	if (!c) {
		return false;
	}
	scope = json_string_value(json_object_get(c, "scope"));
	if (ret_scope) {
		*ret_scope = strcmp(scope, "vm") == 0	    ? SCHEMA_SCOPE_VM
			     : strcmp(scope, "daemon") == 0 ? SCHEMA_SCOPE_DAEMON
							    : SCHEMA_SCOPE_GLOBAL;
	}
	return true;
}

json_t *schema_commands(const struct schema *s)
{
	return s->commands;
}

static const char *type_desc(const char *builtin)
{
	if (strcmp(builtin, "str") == 0) {
		return "string";
	}
	if (strcmp(builtin, "int") == 0) {
		return "integer";
	}
	if (strcmp(builtin, "bool") == 0) {
		return "boolean";
	}
	return builtin;
}

static int check_value(const struct schema *s, json_t *type, json_t *v, const char *path,
		       struct error **errp);

static int check_object(const struct schema *s, json_t *members, bool open, json_t *v,
			const char *path, const char *extra_optional, struct error **errp)
{
	const char *key;
	json_t *t, *val;
	char sub[512];
	int r;

	if (!json_is_object(v)) {
		return error_set(errp, EINVAL, "Invalid parameter type for '%s', expected: object",
				 path[0] ? path : "arguments");
	}
	json_object_foreach (members, key, t) {
		bool optional = key[0] == '*';
		const char *name = optional ? key + 1 : key;

		snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", name);
		val = json_object_get(v, name);
		if (!val) {
			if (!optional) {
				return error_set(errp, EINVAL, "Parameter '%s' is missing", sub);
			}
			continue;
		}
		r = check_value(s, t, val, sub, errp);
		if (r < 0) {
			return r;
		}
	}
	/* Unknown keys last, as QEMU's input visitor checks them after the members. */
	json_object_foreach (v, key, val) {
		char opt[256];

		if (json_object_get(members, key)) {
			continue;
		}
		snprintf(opt, sizeof(opt), "*%s", key);
		if (json_object_get(members, opt) ||
		    (extra_optional && strcmp(key, extra_optional) == 0) || open) {
			continue;
		}
		snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", key);
		return error_set(errp, EINVAL, "Parameter '%s' is unexpected", sub);
	}
	if (extra_optional && json_object_get(v, extra_optional) &&
	    !json_is_string(json_object_get(v, extra_optional))) {
		return error_set(errp, EINVAL, "Invalid parameter type for '%s', expected: string",
				 extra_optional);
	}
	return 0;
}

static bool value_matches(const struct schema *s, json_t *type, json_t *v)
{
	struct error *err = NULL;
	int r = check_value(s, type, v, "", &err);

	error_free(err);
	return r == 0;
}

static int check_value(const struct schema *s, json_t *type, json_t *v, const char *path,
		       struct error **errp)
{
	const char *name;
	json_t *def, *list;
	bool ok;

	if (json_is_array(type)) {
		json_t *elem = json_array_get(type, 0), *item;
		char sub[512];
		size_t i;
		int r;

		if (!json_is_array(v)) {
			return error_set(errp, EINVAL,
					 "Invalid parameter type for '%s', expected: array", path);
		}
		json_array_foreach (v, i, item) {
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			r = check_value(s, elem, item, sub, errp);
			if (r < 0) {
				return r;
			}
		}
		return 0;
	}
	name = json_string_value(type);
	if (builtin_json_type(name)) {
		if (strcmp(name, "str") == 0) {
			ok = json_is_string(v);
		} else if (strcmp(name, "int") == 0) {
			ok = json_is_integer(v);
		} else if (strcmp(name, "number") == 0) {
			ok = json_is_number(v);
		} else if (strcmp(name, "bool") == 0) {
			ok = json_is_boolean(v);
		} else if (strcmp(name, "null") == 0) {
			ok = json_is_null(v);
		} else {
			ok = true;
		}
		if (!ok) {
			return error_set(errp, EINVAL,
					 "Invalid parameter type for '%s', expected: %s", path,
					 type_desc(name));
		}
		return 0;
	}
	def = json_object_get(s->types, name);
	if ((list = json_object_get(def, "enum"))) {
		size_t i;
		json_t *e;

		if (!json_is_string(v)) {
			return error_set(errp, EINVAL,
					 "Invalid parameter type for '%s', expected: %s", path,
					 name);
		}
		json_array_foreach (list, i, e) {
			if (strcmp(json_string_value(e), json_string_value(v)) == 0) {
				return 0;
			}
		}
		return error_set(errp, EINVAL, "Parameter '%s' does not accept value '%s'", path,
				 json_string_value(v));
	}
	if ((list = json_object_get(def, "alternate"))) {
		size_t i;
		json_t *t;

		json_array_foreach (list, i, t) {
			if (value_matches(s, t, v)) {
				return 0;
			}
		}
		return error_set(errp, EINVAL, "Invalid parameter type for '%s', expected: %s",
				 path, name);
	}
	return check_object(s, json_object_get(def, "members"),
			    json_is_true(json_object_get(def, "open")), v, path, NULL, errp);
}

static json_t *data_members(const struct schema *s, json_t *data)
{
	if (json_is_string(data)) {
		return json_object_get(json_object_get(s->types, json_string_value(data)),
				       "members");
	}
	return data;
}

static bool type_is_open(const struct schema *s, json_t *data)
{
	return json_is_string(data) &&
	       json_is_true(
		       json_object_get(json_object_get(s->types, json_string_value(data)), "open"));
}

int schema_check_args(const struct schema *s, const char *cmd, json_t *args, struct error **errp)
{
	_cleanup_(json_decrefp) json_t *empty = json_object();
	json_t *c = json_object_get(s->commands, cmd);
	json_t *members;
	enum schema_scope scope;

	if (!c || !schema_has_command(s, cmd, &scope)) {
		return error_set_class(errp, ERROR_CLASS_COMMAND_NOT_FOUND, ENOENT,
				       "The command %s has not been found", cmd);
	}
	members = data_members(s, json_object_get(c, "data"));
	/* an "open" type (the VM definition) leaves unknown keys to its own parser */
	return check_object(s, members ? members : empty,
			    type_is_open(s, json_object_get(c, "data")), args, "",
			    scope == SCHEMA_SCOPE_VM ? "vm" : NULL, errp);
}

int schema_check_event(const struct schema *s, const char *event, json_t *data, struct error **errp)
{
	_cleanup_(json_decrefp) json_t *empty = json_object();
	json_t *e = json_object_get(s->events, event);
	json_t *members;

	if (!e) {
		return 0;
	}
	members = data_members(s, e);
	return check_object(s, members ? members : empty, false, data ? data : empty, "", "vm",
			    errp);
}

/* Introspection. Array types are named "[T]" as QEMU does. */
static const char *typeref_name(json_t *introspected, json_t *t, char *buf, size_t len);

static void add_array(json_t *out, json_t *seen, json_t *t, char *buf, size_t len)
{
	char elem[256];
	const char *en = typeref_name(out, json_array_get(t, 0), elem, sizeof(elem));

	snprintf(buf, len, "[%s]", en);
	if (json_object_get(seen, buf)) {
		return;
	}
	json_object_set_new(seen, buf, json_true());
	json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", buf, "meta-type", "array",
					     "element-type", en));
}

static const char *typeref_name(json_t *out, json_t *t, char *buf, size_t len)
{
	if (json_is_array(t)) {
		/* Slot 0 of @out holds the set of array types emitted: see schema_introspect. */
		json_t *seen = json_object_get(json_array_get(out, 0), "__seen");

		add_array(out, seen, t, buf, len);
		return buf;
	}
	snprintf(buf, len, "%s", json_string_value(t));
	return buf;
}

static json_t *members_info(json_t *out, json_t *members, bool with_vm)
{
	json_t *list = json_array();
	const char *key;
	json_t *t;
	char buf[256];

	json_object_foreach (members, key, t) {
		bool optional = key[0] == '*';
		json_t *m = json_pack("{s:s, s:s}", "name", optional ? key + 1 : key, "type",
				      typeref_name(out, t, buf, sizeof(buf)));

		if (optional) {
			json_object_set_new(m, "default", json_null());
		}
		json_array_append_new(list, m);
	}
	if (with_vm) {
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:n}", "name", "vm", "type", "str", "default"));
	}
	return list;
}

static const char *arg_type(json_t *out, const struct schema *s, const char *owner, json_t *data,
			    bool with_vm, char *buf, size_t len)
{
	if (json_is_string(data) && !with_vm) {
		snprintf(buf, len, "%s", json_string_value(data));
		return buf;
	}
	if (!data && !with_vm) {
		return "q_empty";
	}
	snprintf(buf, len, "q_obj_%s-arg", owner);
	json_array_append_new(out, json_pack("{s:s, s:s, s:o}", "name", buf, "meta-type", "object",
					     "members",
					     members_info(out, data_members(s, data), with_vm)));
	return buf;
}

json_t *schema_introspect(const struct schema *s, bool vm_socket)
{
	json_t *out = json_array();
	json_t *holder = json_pack("{s:{}}", "__seen");
	const char *key;
	json_t *v;
	char buf[256], buf2[256];

	/* Slot 0 temporarily holds the set of array types already emitted. */
	json_array_append_new(out, holder);
	json_object_foreach (s->commands, key, v) {
		const char *scope = json_string_value(json_object_get(v, "scope"));
		/* the VM selector exists on the main socket; a VM's socket implies it */
		bool vm = strcmp(scope, "vm") == 0 && !vm_socket;
		json_t *ret = json_object_get(v, "returns");
		const char *at;

		if (vm_socket && strcmp(scope, "daemon") == 0) {
			continue; /* not a command there */
		}
		at = arg_type(out, s, key, json_object_get(v, "data"), vm, buf, sizeof(buf));
		const char *rt = ret ? typeref_name(out, ret, buf2, sizeof(buf2)) : "q_empty";

		json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:b}", "name", key,
						     "meta-type", "command", "arg-type", at,
						     "ret-type", rt, "allow-oob", 0));
	}
	json_object_foreach (s->events, key, v) {
		const char *at = arg_type(out, s, key, json_object_size(v) ? v : NULL, !vm_socket,
					  buf, sizeof(buf));

		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", key, "meta-type",
						     "event", "arg-type", at));
	}
	json_array_append_new(out, json_pack("{s:s, s:s, s:[]}", "name", "q_empty", "meta-type",
					     "object", "members"));
	json_object_foreach (s->types, key, v) {
		json_t *m = json_object_get(v, "members");
		json_t *e = json_object_get(v, "enum");
		json_t *a = json_object_get(v, "alternate");

		if (m) {
			json_array_append_new(out, json_pack("{s:s, s:s, s:o}", "name", key,
							     "meta-type", "object", "members",
							     members_info(out, m, false)));
		} else if (e) {
			/* "members" since QEMU 6.2, "values" (deprecated) for older clients */
			json_t *members = json_array();
			size_t i;
			json_t *name;

			json_array_foreach (e, i, name) {
				json_array_append_new(members, json_pack("{s:O}", "name", name));
			}
			json_array_append_new(out, json_pack("{s:s, s:s, s:o, s:O}", "name", key,
							     "meta-type", "enum", "members",
							     members, "values", e));
		} else if (a) {
			json_t *list = json_array();
			size_t i;
			json_t *t;

			json_array_foreach (a, i, t) {
				json_array_append_new(
					list, json_pack("{s:s}", "type",
							typeref_name(out, t, buf, sizeof(buf))));
			}
			json_array_append_new(out,
					      json_pack("{s:s, s:s, s:o}", "name", key, "meta-type",
							"alternate", "members", list));
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(builtins); i++) {
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", builtins[i][0],
						     "meta-type", "builtin", "json-type",
						     builtins[i][1]));
	}
	json_array_remove(out, 0);
	return out;
}
