/*
 * The protocol schema (monitor/schema.json, compiled into the program):
 * strict argument checking and QEMU-style introspection (query-qmp-schema).
 * Read-only after schema_load(); any thread may use a loaded schema.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "common/error.h"

struct schema;

enum schema_scope {
	SCHEMA_SCOPE_GLOBAL, /* everywhere, no VM */
	SCHEMA_SCOPE_VM,     /* takes the VM selector "vm" (implied on a per-VM socket) */
	SCHEMA_SCOPE_DAEMON, /* main socket only */
};

/* The embedded schema.json text (generated into schema-data.c). */
extern const char schema_json_text[];

/*
 * Parse and validate a schema: every referenced type exists, every command
 * has a scope. On failure *errp says what is wrong.
 */
int schema_load(const char *text, struct schema **ret, struct error **errp);
void schema_free(struct schema *s);
DEFINE_CLEANUP_FUNC(struct schema, schema_free)

/* True if @name is a command of the schema; *ret_scope is set if so. */
bool schema_has_command(const struct schema *s, const char *name, enum schema_scope *ret_scope);
/* Command names in schema order; a borrowed JSON object keyed by name. */
json_t *schema_commands(const struct schema *s);

/*
 * Check @args (an object, borrowed) against the command's argument type:
 * unknown keys, missing members and wrong types fail with a message naming
 * the parameter. For VM-scoped commands the "vm" member is accepted as an
 * optional string in addition to the declared ones.
 */
int schema_check_args(const struct schema *s, const char *cmd, json_t *args, struct error **errp);
/* Check an event's data (without "vm") against its declaration; unknown events pass. */
int schema_check_event(const struct schema *s, const char *event, json_t *data,
		       struct error **errp);

/*
 * QEMU's SchemaInfo list: builtin, enum, object, array, alternate, command
 * and event entries. New reference. @vm_socket: as a VM's own socket
 * sees it (no daemon-only commands, no "vm" selector).
 */
json_t *schema_introspect(const struct schema *s, bool vm_socket);
