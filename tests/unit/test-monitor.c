/*
 * Unit tests for monitor/json-stream.c, monitor/schema.c and the check of
 * handler tables against the schema. Links the protocol library only.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/json-stream.h"
#include "monitor/monitor-int.h"
#include "monitor/schema.h"

/* Feed @in whole; collect results as "O:<compact json>" or "E:<message>" lines. */
static char *run(struct json_stream *s, const char *in, size_t len)
{
	static char out[65536];
	size_t off = 0;

	out[0] = '\0';
	while (off < len) {
		enum json_stream_status st;
		json_t *obj = NULL;
		char *err = NULL;

		off += json_stream_feed(s, in + off, len - off, &st, &obj, &err);
		if (st == JSON_STREAM_OBJECT) {
			char *t = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);

			strcat(out, "O:");
			strcat(out, t);
			strcat(out, "\n");
			free(t);
			json_decref(obj);
		} else if (st == JSON_STREAM_ERROR) {
			strcat(out, "E:");
			strcat(out, err);
			strcat(out, "\n");
			free(err);
		}
	}
	return out;
}

static char *feed_str(struct json_stream *s, const char *in)
{
	return run(s, in, strlen(in));
}

START_TEST(stream_objects_without_newlines)
{
	struct json_stream s;

	json_stream_init(&s, 1024, 8);
	ck_assert_str_eq(feed_str(&s, "{\"a\":1}{\"b\":\"}{\"}  {\"c\":[1,{}]}\r\n"),
			 "O:{\"a\":1}\nO:{\"b\":\"}{\"}\nO:{\"c\":[1,{}]}\n");
	json_stream_release(&s);
}
END_TEST

START_TEST(stream_split_anywhere)
{
	const char *msg = "{\"execute\": \"x\\\"}\", \"id\": [1, 2]}";
	struct json_stream s;
	char got[512] = "";

	json_stream_init(&s, 1024, 8);
	/* One byte at a time: the same single object. */
	for (size_t i = 0; i < strlen(msg); i++) {
		strcat(got, run(&s, msg + i, 1));
	}
	ck_assert_str_eq(got, "O:{\"execute\":\"x\\\"}\",\"id\":[1,2]}\n");
	json_stream_release(&s);
}
END_TEST

START_TEST(stream_errors_and_recovery)
{
	struct json_stream s;

	json_stream_init(&s, 1024, 8);
	ck_assert_str_eq(feed_str(&s, "{\"a\" 1}{\"ok\":1}"),
			 "E:JSON parse error, ':' expected near '1'\nO:{\"ok\":1}\n");
	ck_assert_str_eq(feed_str(&s, "[1,2] 42 \"str\" {\"ok\":2}"),
			 "E:QMP input must be a JSON object\nE:QMP input must be a JSON object\n"
			 "E:QMP input must be a JSON object\nO:{\"ok\":2}\n");
	/* A control character abandons a half-sent object (QEMU's resync). */
	ck_assert_str_eq(feed_str(&s, "{\"execute\": \x1b{\"ok\":3}"),
			 "E:JSON parse error, invalid character\nO:{\"ok\":3}\n");
	/* Bad UTF-8 inside a string. */
	ck_assert_str_eq(feed_str(&s, "{\"a\":\"\xc3\x28\"}{\"ok\":4}"),
			 "E:JSON parse error, unable to decode byte 0xc3 near '\"'\n"
			 "O:{\"ok\":4}\n");
	ck_assert_str_eq(feed_str(&s, "}{\"ok\":5}"),
			 "E:JSON parse error, expecting value\nO:{\"ok\":5}\n");
	/* Stray bytes and words between values, with QEMU 7.2's messages. */
	ck_assert_str_eq(feed_str(&s, "hello123 @\x01\xc3\xa9 true{\"ok\":6}junk"),
			 "E:JSON parse error, invalid keyword 'hello'\n"
			 "E:QMP input must be a JSON object\n"
			 "E:JSON parse error, stray '@'\n"
			 "E:JSON parse error, stray '\x01'\n"
			 "O:{\"ok\":6}\n");
	/* A word split across reads is one word. */
	ck_assert_str_eq(feed_str(&s, "y "), "E:JSON parse error, invalid keyword 'junky'\n");
	json_stream_release(&s);
}
END_TEST

START_TEST(stream_limits)
{
	struct json_stream s;
	char big[5000];

	json_stream_init(&s, 1024, 4);
	/* Too deep: one error, the rest of the value skipped, then back in sync. */
	ck_assert_str_eq(feed_str(&s, "[[[[[[[[[[1]]]]]]]]]]{\"ok\":1}"),
			 "E:JSON nesting exceeds the maximum depth of 4\nO:{\"ok\":1}\n");
	ck_assert_str_eq(feed_str(&s, "{\"a\":[[[1]]]}"), "O:{\"a\":[[[1]]]}\n");
	/* Too big: one error and nothing buffered beyond the limit. */
	memset(big, 'x', sizeof(big));
	memcpy(big, "{\"a\":\"", 6);
	memcpy(big + sizeof(big) - 2, "\"}", 2);
	ck_assert_str_eq(run(&s, big, sizeof(big)),
			 "E:JSON message exceeds the maximum size of 1024 bytes\n");
	ck_assert_uint_le(s.cap, 1024);
	ck_assert_str_eq(feed_str(&s, "{\"ok\":2}"), "O:{\"ok\":2}\n");
	json_stream_release(&s);
}
END_TEST

static struct schema *load(void)
{
	struct schema *s = NULL;
	struct error *err = NULL;

	if (schema_load(schema_json_text, &s, &err) < 0) {
		ck_abort_msg("schema.json: %s", err->msg);
	}
	return s;
}

static const char *check(struct schema *s, const char *cmd, const char *args)
{
	static char msg[512];
	json_t *a = json_loads(args, 0, NULL);
	struct error *err = NULL;
	int r = schema_check_args(s, cmd, a, &err);

	json_decref(a);
	if (r == 0) {
		return "ok";
	}
	snprintf(msg, sizeof(msg), "%s", err->msg);
	error_free(err);
	return msg;
}

START_TEST(schema_strict_arguments)
{
	struct schema *s = load();

	ck_assert_str_eq(check(s, "query-status", "{\"vm\": \"a\"}"), "ok");
	ck_assert_str_eq(check(s, "query-status", "{}"), "ok");
	ck_assert_str_eq(check(s, "query-status", "{\"vm\": 1}"),
			 "Invalid parameter type for 'vm', expected: string");
	ck_assert_str_eq(check(s, "stop", "{\"vm\": \"a\", \"now\": true}"),
			 "Parameter 'now' is unexpected");
	ck_assert_str_eq(check(s, "getfd", "{}"), "Parameter 'fdname' is missing");
	/* QEMU's order: the members (missing, mistyped), then the unknown keys */
	ck_assert_str_eq(check(s, "getfd", "{\"nme\": \"x\"}"), "Parameter 'fdname' is missing");
	ck_assert_str_eq(check(s, "getfd", "{\"fdname\": 1, \"zz\": 1}"),
			 "Invalid parameter type for 'fdname', expected: string");
	ck_assert_str_eq(check(s, "getfd", "{\"fdname\": \"x\", \"zz\": 1}"),
			 "Parameter 'zz' is unexpected");
	ck_assert_str_eq(check(s, "getfd", "{\"fdname\": false}"),
			 "Invalid parameter type for 'fdname', expected: string");
	ck_assert_str_eq(check(s, "vm-delete", "{\"vm\": \"a\", \"force\": 1}"),
			 "Invalid parameter type for 'force', expected: boolean");
	ck_assert_str_eq(check(s, "vm-create", "{\"name\": \"a\", \"memory\": \"1G\"}"), "ok");
	ck_assert_str_eq(check(s, "vm-create", "{\"name\": \"a\", \"memory\": 1.5}"),
			 "Invalid parameter type for 'memory', expected: Size");
	ck_assert_str_eq(check(s, "vm-create", "{\"name\": \"a\", \"disks\": [{\"id\": 1}]}"),
			 "Invalid parameter type for 'disks[0].id', expected: string");
	ck_assert_str_eq(check(s, "vm-create", "{\"name\": \"a\", \"boot\": {\"kernel\": 3}}"),
			 "Invalid parameter type for 'boot.kernel', expected: string");
	ck_assert_str_eq(check(s, "qmp_capabilities", "{\"enable\": [\"oob\"]}"), "ok");
	ck_assert_str_eq(check(s, "qmp_capabilities", "{\"enable\": [\"x\"]}"),
			 "Parameter 'enable[0]' does not accept value 'x'");
	ck_assert_str_eq(check(s, "no-such", "{}"), "The command no-such has not been found");
	schema_free(s);
}
END_TEST

static int fake_handler(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	return 0;
}

/* An application table of every schema command the protocol does not handle itself. */
static size_t app_table(const struct schema *s, struct monitor_command *cmds, size_t max)
{
	const struct monitor_handlers none = {0};
	const char *key;
	size_t n = 0;
	json_t *v;

	json_object_foreach (schema_commands(s), key, v) {
		if (!monitor_find_command(&none, key)) {
			ck_assert_uint_lt(n, max);
			cmds[n++] = (struct monitor_command){key, fake_handler};
		}
	}
	return n;
}

static const char *check_table(const struct schema *s, const struct monitor_command *cmds, size_t n)
{
	static char msg[256];
	const struct monitor_handlers h = {.cmds = cmds, .n_cmds = n};
	struct error *err = NULL;

	if (monitor_check_table(s, &h, &err) == 0) {
		return "ok";
	}
	snprintf(msg, sizeof(msg), "%s", err->msg);
	error_free(err);
	return msg;
}

START_TEST(schema_matches_handler_table)
{
	struct schema *s = load();
	struct monitor_command cmds[256];
	size_t n = app_table(s, cmds, 255);
	char want[256];

	ck_assert_uint_gt(n, 0);
	ck_assert_uint_eq(monitor_n_protocol_commands + n, json_object_size(schema_commands(s)));
	ck_assert_str_eq(check_table(s, cmds, n), "ok");
	/* One schema command without a handler. */
	snprintf(want, sizeof(want), "command %s of schema.json has no handler", cmds[0].name);
	ck_assert_str_eq(check_table(s, cmds + 1, n - 1), want);
	/* A handler the schema does not declare. */
	cmds[n] = (struct monitor_command){"no-such-command", fake_handler};
	ck_assert_str_eq(check_table(s, cmds, n + 1),
			 "command no-such-command has a handler but is not in schema.json");
	/* A command both the protocol and the application handle. */
	cmds[n] = (struct monitor_command){"query-version", fake_handler};
	ck_assert_str_eq(check_table(s, cmds, n + 1), "command query-version is listed twice");
	schema_free(s);
}
END_TEST

START_TEST(schema_rejects_bad_schemas)
{
	struct schema *s = NULL;
	struct error *err = NULL;

	ck_assert_int_lt(schema_load("{\"commands\": {\"x\": {\"scope\": \"vm\", \"data\": "
				     "{\"a\": \"Nope\"}}}, \"events\": {}, \"types\": {}}",
				     &s, &err),
			 0);
	ck_assert_str_eq(err->msg, "schema: x: unknown type 'Nope'");
	error_free(err);
}
END_TEST

static json_t *find_entry(json_t *list, const char *name)
{
	size_t i;
	json_t *e;

	json_array_foreach (list, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0) {
			return e;
		}
	}
	return NULL;
}

START_TEST(schema_introspection)
{
	struct schema *s = load();
	json_t *list = schema_introspect(s, false), *e, *t;
	size_t i;

	e = find_entry(list, "query-status");
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(json_string_value(json_object_get(e, "meta-type")), "command");
	ck_assert_str_eq(json_string_value(json_object_get(e, "ret-type")), "StatusInfo");
	/* Every type an entry names is itself an entry (QEMU's SchemaInfo invariant). */
	json_array_foreach (list, i, e) {
		const char *fields[] = {"arg-type", "ret-type", "element-type"};

		for (size_t f = 0; f < 3; f++) {
			t = json_object_get(e, fields[f]);
			if (t) {
				ck_assert_msg(find_entry(list, json_string_value(t)) != NULL,
					      "%s refers to missing %s",
					      json_string_value(json_object_get(e, "name")),
					      json_string_value(t));
			}
		}
	}
	ck_assert_ptr_nonnull(find_entry(list, "[VmInfo]"));
	ck_assert_ptr_nonnull(find_entry(list, "SHUTDOWN"));
	/* enums: "members" (QEMU 6.2+) and the deprecated "values" */
	e = find_entry(list, "RunState");
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(e, "members"), 0), "name")),
			 "prelaunch");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(e, "values"), 0)),
			 "prelaunch");
	ck_assert_ptr_nonnull(find_entry(list, "vm-create"));
	json_decref(list);
	/* a VM's socket: no daemon-only command, no "vm" selector in arguments */
	list = schema_introspect(s, true);
	ck_assert_ptr_null(find_entry(list, "vm-create"));
	ck_assert_ptr_null(find_entry(list, "query-vms"));
	e = find_entry(list, "query-status");
	ck_assert_str_eq(json_string_value(json_object_get(e, "arg-type")), "q_empty");
	e = find_entry(list, "q_obj_ringbuf-read-arg");
	json_array_foreach (json_object_get(e, "members"), i, t) {
		ck_assert_str_ne(json_string_value(json_object_get(t, "name")), "vm");
	}
	json_decref(list);
	schema_free(s);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("monitor");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, stream_objects_without_newlines);
	tcase_add_test(tc, stream_split_anywhere);
	tcase_add_test(tc, stream_errors_and_recovery);
	tcase_add_test(tc, stream_limits);
	tcase_add_test(tc, schema_strict_arguments);
	tcase_add_test(tc, schema_matches_handler_table);
	tcase_add_test(tc, schema_rejects_bad_schemas);
	tcase_add_test(tc, schema_introspection);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
