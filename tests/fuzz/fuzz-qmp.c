/*
 * libFuzzer target: the commands a client sends on the main socket, after
 * the framing (json-stream's target): the message checks and the schema's
 * argument check (monitor/dispatch.c, schema.c), the daemon's handlers
 * (daemon/qmp-*.c, HMP's command lines among them) and the registry, with
 * the unit tests' double of the VM object (tests/unit/monitor-vm-double.c:
 * no KVM, definitions with the double's few keys).
 *
 * The input is a sequence of JSON texts. Each is sent, after
 * qmp_capabilities, on a connected socket served as a client of the main
 * socket, in a fresh daemon state (state and run directories, the path
 * policy's root) made for this input and removed after it. Checked besides
 * memory safety: every message gets exactly one answer, in order, carrying
 * the message's id (events of QMP's shape may come between); a last
 * query-vms is answered (the daemon still serves); shutting the registry
 * down frees every VM.
 *
 * A string that begins with "$ROOT/" names a path beneath that root (the
 * policy refuses paths elsewhere): "$ROOT" is replaced by it.
 *
 * Left out, by name: the commands that reach outside the process by design
 * (daemon-upgrade starts a new vmmd; migrate, migrate-incoming and
 * nbd-server-start open network connections or listeners); their
 * arguments are the schema's checks, which every other command exercises.
 * Left out too: a message with a string shaped like the protocol writer's
 * marker for large numbers, secret included (is_left_out).
 */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/log.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/upgrade.h"
#include "monitor/monitor.h"
#include "tests/unit/registry-hooks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

extern int vm_double_live; /* monitor-vm-double.c */

#define MAX_MESSAGES 64

static const char *const left_out[] = {
	"daemon-upgrade",
	"migrate",
	"migrate-incoming",
	"nbd-server-start",
};

static char root[64]; /* this process's directory; one daemon state per input beneath */
static struct event_base *base;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int remove_beneath(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return ftw->level > 0 ? remove_one(path, st, flag, ftw) : 0;
}

static void remove_root(void)
{
	nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* (A sanitizer's report ends the process without removing the directory.) */
static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz-qmp: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	remove_root();
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	strcpy(root, "/tmp/fuzz-qmp.XXXXXX");
	if (!mkdtemp(root)) {
		fail("mkdtemp", strerror(errno));
	}
	atexit(remove_root);
	log_set_level(LOG_CRIT); /* refusals are the point; do not log each */
	return 0;
}

/* The client's end of the connection: what is left to send, what came back. */
struct peer {
	int fd;
	char *out;
	size_t out_len, out_done;
	size_t in_len;
};

/* What came back and is not read yet: up to the client's output limit and a message. */
static char in[MONITOR_DEFAULT_MAX_OUTPUT + MONITOR_DEFAULT_MAX_MESSAGE];

/* The next message from the daemon, running the loop meanwhile; NULL on EOF. */
static json_t *next_message(struct peer *p)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		char *nl = memchr(in, '\n', p->in_len);
		ssize_t n;

		if (nl) {
			json_t *j;

			if (nl == in || nl[-1] != '\r') {
				fail("an answer not ended by CRLF", NULL);
			}
			j = json_loadb(in, (size_t)(nl - in), 0, NULL);
			if (!json_is_object(j)) {
				fail("an answer that is not a JSON object", NULL);
			}
			p->in_len -= (size_t)(nl + 1 - in);
			memmove(in, nl + 1, p->in_len);
			return j;
		}
		if (p->in_len == sizeof(in)) {
			fail("an answer longer than the output limit", NULL);
		}
		if (p->out_done < p->out_len) {
			n = send(p->fd, p->out + p->out_done, p->out_len - p->out_done,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0) {
				p->out_done += (size_t)n;
			}
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		n = recv(p->fd, in + p->in_len, sizeof(in) - p->in_len, MSG_DONTWAIT);
		if (n == 0) {
			return NULL;
		}
		if (n > 0) {
			p->in_len += (size_t)n;
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 10) {
			fail("no answer for 10 seconds", NULL);
		}
		usleep(50);
	}
}

/* FUZZ_QMP_SHOW=1 prints what the daemon sends (for writing seeds). */
static void show(json_t *a)
{
	static int on = -1;
	char *s;

	if (on < 0) {
		on = getenv("FUZZ_QMP_SHOW") != NULL;
	}
	if (on && a && (s = json_dumps(a, JSON_COMPACT))) {
		fprintf(stderr, "%.300s\n", s);
		free(s);
	}
}

/* QMP's event shape: event, timestamp (seconds, microseconds) and maybe data. */
static void check_event(json_t *e)
{
	json_t *ts = json_object_get(e, "timestamp"), *data = json_object_get(e, "data");
	json_int_t us = json_integer_value(json_object_get(ts, "microseconds"));

	if (!json_is_string(json_object_get(e, "event")) ||
	    !json_is_integer(json_object_get(ts, "seconds")) || us < 0 || us > 999999 ||
	    (data && !json_is_object(data)) || json_object_size(e) != 2u + (data != NULL)) {
		fail("an event not of QMP's shape", json_string_value(json_object_get(e, "event")));
	}
}

/* The answer to the message with @id: events before it are skipped. */
static void expect_answer(struct peer *p, json_t *id, const char *what)
{
	json_t *a;

	while ((a = next_message(p)) && json_object_get(a, "event")) {
		show(a);
		check_event(a);
		json_decref(a);
	}
	show(a);
	if (!a) {
		fail("the daemon closed the connection before answering", what);
	}
	if (!json_object_get(a, "return") == !json_object_get(a, "error")) {
		fail("an answer with neither or both of return and error", what);
	}
	if (id ? !json_equal(id, json_object_get(a, "id")) : json_object_get(a, "id") != NULL) {
		fail("an answer whose id is not the message's", what);
	}
	json_decref(a);
}

/*
 * Visit @j, every value inside it and every object key in it (@v NULL), up
 * to the first visit that returns true: then true.
 */
static bool walk(json_t *j, bool (*visit)(json_t *v, const char *key))
{
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach (j, key, v) {
		if (visit(NULL, key) || walk(v, visit)) {
			return true;
		}
	}
	json_array_foreach (j, i, v) {
		if (walk(v, visit)) {
			return true;
		}
	}
	return visit(j, NULL);
}

/* "$ROOT/..." becomes "<root>/..." (every string, through walk). */
static bool place_path(json_t *v, const char *key)
{
	const char *s = json_string_value(v);
	char *path;

	if (s && strncmp(s, "$ROOT/", 6) == 0 && asprintf(&path, "%s%s", root, s + 5) >= 0) {
		json_string_set(v, path);
		free(path);
	}
	return false;
}

/*
 * A string or key shaped like common/json-u64.c's marker with its secret:
 * "\x01u64:", 32 hex digits, ":" (through walk).
 */
static bool marker_shaped(json_t *v, const char *key)
{
	const char *s = v ? json_string_value(v) : key;

	if (!s || strncmp(s, "\001u64:", 5) != 0 || strlen(s) < 5 + 32 + 1 || s[5 + 32] != ':') {
		return false;
	}
	return strspn(s + 5, "0123456789abcdef") >= 32;
}

/*
 * Left out by name (above), and a message holding the protocol writer's
 * marker for large numbers with this process's secret: libFuzzer learns
 * the secret from the writer's string comparisons, which no client sees.
 */
static bool is_left_out(json_t *msg)
{
	const char *name = json_string_value(json_object_get(msg, "execute"));

	for (size_t i = 0; name && i < sizeof(left_out) / sizeof(left_out[0]); i++) {
		if (strcmp(name, left_out[i]) == 0) {
			return true;
		}
	}
	return walk(msg, marker_shaped);
}

/* The input's messages (at most MAX_MESSAGES), as jansson reads them one after another. */
static size_t read_messages(const uint8_t *data, size_t size, json_t **msgs)
{
	size_t n = 0, at = 0;

	while (n < MAX_MESSAGES && at < size) {
		json_error_t e;
		json_t *j = json_loadb(
			(const char *)data + at, size - at,
			JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);

		if (!j) {
			break;
		}
		at += (size_t)e.position;
		if (is_left_out(j)) {
			json_decref(j);
			continue;
		}
		walk(j, place_path);
		msgs[n++] = j;
	}
	return n;
}

static void append(struct peer *p, const char *text)
{
	size_t len = strlen(text);
	char *o = realloc(p->out, p->out_len + len + 1);

	if (!o) {
		fail("out of memory", NULL);
	}
	memcpy(o + p->out_len, text, len);
	o[p->out_len + len] = '\n';
	p->out = o;
	p->out_len += len + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct monitor_limits lim = {
		.max_clients = 8,
		.max_message = MONITOR_DEFAULT_MAX_MESSAGE,
		.max_depth = MONITOR_DEFAULT_MAX_DEPTH,
		.max_output = MONITOR_DEFAULT_MAX_OUTPUT,
	};
	char state[128], *roots[] = {root, NULL};
	struct registry_limits rl = {.max_vms = 4, .image_roots = roots, .socket_gid = (gid_t)-1};
	struct monitor_handlers handlers = {
		.cmds = qmp_commands,
		.n_cmds = qmp_n_commands,
		.find_vm = qmp_find_vm,
		.flush_events = registry_flush_events,
	};
	json_t *msgs[MAX_MESSAGES], *greeting, *last_id = json_string("fuzz-last");
	struct registry *reg;
	struct error *err = NULL;
	struct peer p = {0};
	int sv[2];
	size_t n;

	n = read_messages(data, size, msgs);
	snprintf(state, sizeof(state), "%s/state", root);
	snprintf(run_dir, sizeof(run_dir), "%s/run", root);
	base = event_base_new();
	if (!base || registry_new(base, state, run_dir, &rl, &hooks, &reg, &err) < 0) {
		fail("set-up", err ? err->msg : NULL);
	}
	handlers.ctx = reg;
	if (monitor_new(base, &handlers, &lim, (gid_t)-1, &mon, &err) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    monitor_add_client(mon, sv[0], NULL, NULL, &err) < 0) {
		fail("set-up", err ? err->msg : strerror(errno));
	}
	/* as the daemon's main does (the x-daemon-upgrade-* commands look the VM up there) */
	upgrade_init(&(struct upgrade_hooks){.base = base, .mon = mon, .reg = reg});
	p.fd = sv[1];
	greeting = next_message(&p);
	if (!json_object_get(greeting, "QMP")) {
		fail("no greeting", NULL);
	}
	json_decref(greeting);

	append(&p, "{\"execute\": \"qmp_capabilities\"}");
	for (size_t i = 0; i < n; i++) {
		char *text = json_dumps(msgs[i], JSON_COMPACT | JSON_ENCODE_ANY);

		if (!text) {
			fail("json_dumps", NULL);
		}
		append(&p, text);
		free(text);
	}
	append(&p, "{\"execute\": \"query-vms\", \"id\": \"fuzz-last\"}");
	expect_answer(&p, NULL, "qmp_capabilities");
	for (size_t i = 0; i < n; i++) {
		json_t *id = json_is_object(msgs[i]) ? json_object_get(msgs[i], "id") : NULL;

		expect_answer(&p, id, json_string_value(json_object_get(msgs[i], "execute")));
		json_decref(msgs[i]);
	}
	expect_answer(&p, last_id, "the last query-vms");
	json_decref(last_id);

	close(p.fd);
	free(p.out);
	registry_shutdown(reg);
	monitor_free(mon);
	registry_free(reg);
	event_base_free(base);
	if (vm_double_live != 0) {
		fail("a VM object outlived the registry", NULL);
	}
	if (nftw(root, remove_beneath, 16, FTW_DEPTH | FTW_PHYS) < 0) {
		fail("cleaning the daemon's directories", strerror(errno));
	}
	return 0;
}
