/*
 * The monitor and the registry together, over a real UNIX socket and the
 * libevent loop, with a test double of the VM object (monitor-vm-double.c): the
 * greeting, negotiation, strict arguments, ids, error classes, events with
 * the "vm" selector, per-VM sockets, persistence and getfd.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "monitor/monitor.h"
#include "registry-hooks.h"
#include "strdup-fail.h"

extern int vm_double_live;

static struct event_base *base;
static struct registry *reg;
static char tmpdir[64];
static char sock_path[128];

/* The daemon's table (n_cmds and ctx are set by start()). */
static struct monitor_handlers handlers = {
	.cmds = qmp_commands,
	.find_vm = qmp_find_vm,
};

static void start(void)
{
	struct monitor_limits lim = {
		.max_clients = 4,
		.max_message = 4096,
		.max_depth = 8,
		.max_output = 1 << 20,
		.negotiation_timeout = 30,
	};
	struct registry_limits rl = {.max_vms = 3, .socket_gid = (gid_t)-1};
	char state[128];
	struct error *err = NULL;

	base = event_base_new();
	snprintf(state, sizeof(state), "%s/state", tmpdir);
	snprintf(run_dir, sizeof(run_dir), "%s/run", tmpdir);
	if (registry_new(base, state, run_dir, &rl, &hooks, &reg, &err) < 0) {
		ck_abort_msg("setup: %s", err->msg);
	}
	handlers.n_cmds = qmp_n_commands;
	handlers.ctx = reg;
	if (monitor_new(base, &handlers, &lim, (gid_t)-1, &mon, &err) < 0 ||
	    monitor_listen_path(mon, sock_path, 0600, (gid_t)-1, NULL, &err) < 0) {
		ck_abort_msg("setup: %s", err->msg);
	}
	registry_load(reg);
	registry_autostart(reg);
}

static void stop(void)
{
	registry_shutdown(reg);
	monitor_free(mon);
	registry_free(reg);
	event_base_free(base);
	ck_assert_int_eq(vm_double_live, 0);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/test-monitor.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/vmmd.sock", tmpdir);
	start();
}

static void teardown(void)
{
	char cmd[128];

	stop();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

struct client {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void pump(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* The next line from the server, running the loop meanwhile; NULL on EOF. */
static json_t *recv_msg(struct client *c)
{
	for (int spins = 0; spins < 20000; spins++) {
		char *nl = memchr(c->buf, '\n', c->len);
		ssize_t n;

		if (nl) {
			json_t *j;

			ck_assert_msg(nl > c->buf && nl[-1] == '\r', "no CRLF");
			j = json_loadb(c->buf, (size_t)(nl - c->buf), 0, NULL);
			ck_assert_ptr_nonnull(j);
			c->len -= (size_t)(nl + 1 - c->buf);
			memmove(c->buf, nl + 1, c->len);
			return j;
		}
		pump();
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
		if (n == 0) {
			return NULL;
		}
		if (n > 0) {
			c->len += (size_t)n;
		} else {
			usleep(100);
		}
	}
	ck_abort_msg("no message from the server");
	return NULL;
}

/* Until the VM objects are gone (destroyed on a worker thread). */
static void wait_no_vm(void)
{
	for (int i = 0; i < 20000 && vm_double_live; i++) {
		pump();
		usleep(100);
	}
	ck_assert_int_eq(vm_double_live, 0);
}

static void send_raw(struct client *c, const char *s)
{
	ck_assert_int_eq(send(c->fd, s, strlen(s), 0), (ssize_t)strlen(s));
}

static struct client *connect_to(const char *path, bool negotiate)
{
	struct client *c = calloc(1, sizeof(*c));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	json_t *g;

	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	g = recv_msg(c);
	ck_assert_ptr_nonnull(json_object_get(g, "QMP"));
	json_decref(g);
	if (negotiate) {
		send_raw(c, "{\"execute\":\"qmp_capabilities\"}");
		g = recv_msg(c);
		ck_assert_ptr_nonnull(json_object_get(g, "return"));
		json_decref(g);
	}
	return c;
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c);
	pump();
}

/* Send a command, skip events, return the reply's compact text. */
static const char *cmd(struct client *c, const char *json)
{
	static char out[8192];
	json_t *r;
	char *t;

	send_raw(c, json);
	for (;;) {
		r = recv_msg(c);
		ck_assert_ptr_nonnull(r);
		if (!json_object_get(r, "event")) {
			break;
		}
		json_decref(r);
	}
	t = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
	snprintf(out, sizeof(out), "%s", t);
	free(t);
	json_decref(r);
	return out;
}

/* The next event's name and data, as "NAME {data}". */
static const char *next_event(struct client *c)
{
	static char out[1024];
	json_t *r = recv_msg(c);
	char *t;

	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_nonnull(json_object_get(r, "event"));
	ck_assert_ptr_nonnull(json_object_get(json_object_get(r, "timestamp"), "seconds"));
	t = json_dumps(json_object_get(r, "data"), JSON_COMPACT | JSON_SORT_KEYS);
	snprintf(out, sizeof(out), "%s %s", json_string_value(json_object_get(r, "event")), t);
	free(t);
	json_decref(r);
	return out;
}

/* The daemon's table plus the monitor's own commands are exactly schema.json. */
START_TEST(daemon_table_matches_schema)
{
	struct error *err = NULL;

	handlers.n_cmds = qmp_n_commands;
	if (monitor_check_handlers(&handlers, &err) < 0) {
		ck_abort_msg("%s", err->msg);
	}
}
END_TEST

START_TEST(negotiation)
{
	struct client *c = connect_to(sock_path, false);

	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"id\":1}"),
			 "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Expecting "
			 "capabilities negotiation with 'qmp_capabilities'\"},\"id\":1}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":"
				"[\"oob\"]}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"Capability 'oob' not "
			 "available\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"qmp_capabilities\",\"id\":\"x\"}"),
			 "{\"id\":\"x\",\"return\":{}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"qmp_capabilities\"}"),
			 "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Capabilities "
			 "negotiation is already complete, command ignored\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"id\":{\"a\":[1]}}"),
			 "{\"id\":{\"a\":[1]},\"return\":[]}");
	client_close(c);
}
END_TEST

START_TEST(bad_messages)
{
	struct client *c = connect_to(sock_path, true);

	ck_assert_str_eq(cmd(c, "{\"execute\":\"nope\",\"id\":2}"),
			 "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"The command nope "
			 "has not been found\"},\"id\":2}");
	ck_assert_str_eq(cmd(c, "{\"id\":3}"), "{\"error\":{\"class\":\"GenericError\",\"desc\":"
					       "\"QMP input lacks member 'execute'\"},\"id\":3}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"foo\":1}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member "
			 "'foo' is unexpected\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"arguments\":[]}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member "
			 "'arguments' must be an object\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-status\"}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"Parameter 'vm' is "
			 "missing\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-status\",\"arguments\":{\"vm\":\"x\"}}"),
			 "{\"error\":{\"class\":\"DeviceNotFound\",\"desc\":\"VM 'x' does not "
			 "exist\"}}");
	ck_assert_str_eq(cmd(c, "[]"), "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP "
				       "input must be a JSON object\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\"}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"JSON parse error, ':' "
			 "expected near '}'\"}}");
	/* Unlike QEMU 7.2, which reads it (vmmd-protocol(7), FRAMING). */
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"id\":18446744073709551615}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"JSON parse error, "
			 "too big integer near '18446744073709551615'\"}}");
	/* Still working after all that. */
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\"}"), "{\"return\":[]}");
	client_close(c);
}
END_TEST

/*
 * An id is echoed as sent, whatever it holds: a string or an object key
 * that looks like the marker of a large unsigned number (common/json-u64.h)
 * once became a bare number, and the key made the answer invalid JSON.
 */
START_TEST(ids_echoed_as_sent)
{
	struct client *c = connect_to(sock_path, true);

	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"id\":\"\\u0001u64:5\"}"),
			 "{\"id\":\"\\u0001u64:5\",\"return\":[]}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"id\":{\"\\u0001u64:5\":[1]}}"),
			 "{\"id\":{\"\\u0001u64:5\":[1]},\"return\":[]}");
	client_close(c);
}
END_TEST

START_TEST(lifecycle_and_events)
{
	struct client *c = connect_to(sock_path, true);
	struct client *w = connect_to(sock_path, true);
	char path[256];
	struct stat st;

	/* Wrong types are rejected before anything happens. */
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"a\","
				"\"vcpus\":\"2\"}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"Invalid parameter "
			 "type for 'vcpus', expected: integer\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\"}"), "{\"return\":[]}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"../a\"}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"VM name '../a' is "
			 "invalid: use letters, digits, '.', '_' and '-' (at most 64, starting "
			 "with a letter or digit)\"}}");
	ck_assert_ptr_nonnull(strstr(cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{"
					    "\"name\":\"a\",\"memory\":\"64M\"}}"),
				     "\"memory\":67108864,\"name\":\"a\",\"running\":false,"
				     "\"status\":\"shutdown\""));
	snprintf(path, sizeof(path), "%s/state/vms/a.json", tmpdir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"a\"}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"VM 'a' already "
			 "exists\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-status\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{\"running\":false,\"singlestep\":false,\"status\":"
			 "\"shutdown\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"stop\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"error\":{\"class\":\"DeviceNotActive\",\"desc\":\"VM 'a' is not "
			 "running; start it with vm-start\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-start\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-status\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{\"running\":true,\"singlestep\":false,\"status\":"
			 "\"running\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"stop\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	/* Every negotiated client gets the event, with the VM named. */
	ck_assert_str_eq(next_event(w), "STOP {\"vm\":\"a\"}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"cont\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	ck_assert_str_eq(next_event(w), "RESUME {\"vm\":\"a\"}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"system_reset\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	ck_assert_str_eq(
		next_event(w),
		"RESET {\"guest\":false,\"reason\":\"host-qmp-system-reset\",\"vm\":\"a\"}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-delete\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"VM 'a' is running; "
			 "destroy it first or pass \\\"force\\\": true\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"system_powerdown\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	ck_assert_str_eq(next_event(w), "POWERDOWN {\"vm\":\"a\"}");
	ck_assert_str_eq(next_event(w),
			 "SHUTDOWN {\"guest\":true,\"reason\":\"guest-shutdown\",\"vm\":\"a\"}");
	/* The guest powered off: the VM object goes (on a worker), the definition stays. */
	wait_no_vm();
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-start\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-destroy\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	ck_assert_str_eq(next_event(w),
			 "SHUTDOWN {\"guest\":false,\"reason\":\"host-qmp-quit\",\"vm\":\"a\"}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-delete\",\"arguments\":{\"vm\":\"a\"}}"),
			 "{\"return\":{}}");
	ck_assert_int_eq(stat(path, &st), -1);
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\"}"), "{\"return\":[]}");
	client_close(c);
	client_close(w);
}
END_TEST

START_TEST(per_vm_socket)
{
	struct client *c = connect_to(sock_path, true);
	struct client *v;
	char path[256];
	json_t *r;

	cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"b\",\"start\":true}}");
	snprintf(path, sizeof(path), "%s/run/vms/b.qmp", tmpdir);
	v = connect_to(path, true);
	/* Here the VM is implied, and the daemon's own commands do not exist. */
	ck_assert_str_eq(cmd(v, "{\"execute\":\"query-status\"}"),
			 "{\"return\":{\"running\":true,\"singlestep\":false,\"status\":"
			 "\"running\"}}");
	ck_assert_str_eq(cmd(v, "{\"execute\":\"query-vms\"}"),
			 "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"The command "
			 "query-vms has not been found\"}}");
	ck_assert_str_eq(cmd(v, "{\"execute\":\"stop\",\"arguments\":{\"vm\":\"c\"}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"This socket belongs "
			 "to VM 'b', not 'c'\"}}");
	/* quit ends this VM: reply, SHUTDOWN, then the connection closes. */
	send_raw(v, "{\"execute\":\"quit\",\"id\":9}");
	r = recv_msg(v);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 9);
	ck_assert_ptr_nonnull(json_object_get(r, "return"));
	json_decref(r);
	/* QEMU's shape on a VM's own socket: no "vm" member */
	ck_assert_str_eq(next_event(v), "SHUTDOWN {\"guest\":false,\"reason\":\"host-qmp-quit\"}");
	ck_assert_ptr_null(recv_msg(v));
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-status\",\"arguments\":{\"vm\":\"b\"}}"),
			 "{\"return\":{\"running\":false,\"singlestep\":false,\"status\":"
			 "\"shutdown\"}}");
	client_close(v);
	client_close(c);
}
END_TEST

START_TEST(per_vm_socket_out_of_memory)
{
	struct client *c = connect_to(sock_path, true);
	struct client *v = calloc(1, sizeof(*v));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"oomvm\",\"start\":true}}");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/run/vms/oomvm.qmp", tmpdir);
	/*
	 * The client's copy of its VM's name fails: refused, where it used to
	 * become a client of the whole daemon (greeted, daemon commands too).
	 */
	strdup_fail_on = "oomvm";
	v->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(v->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_ptr_null(recv_msg(v));
	strdup_fail_on = NULL;
	client_close(v);
	v = connect_to(sa.sun_path, true);
	ck_assert_str_eq(cmd(v, "{\"execute\":\"query-vms\"}"),
			 "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"The command "
			 "query-vms has not been found\"}}");
	client_close(v);
	client_close(c);
}
END_TEST

START_TEST(restart_keeps_definitions)
{
	struct client *c = connect_to(sock_path, true);

	cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"auto\",\"autostart\":true,"
	       "\"start\":true}}");
	cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"manual\"}}");
	client_close(c);
	stop();
	start();
	c = connect_to(sock_path, true);
	/* Autostart runs on a worker thread: prelaunch until it is up. */
	for (int i = 0; i < 2000 && strstr(cmd(c, "{\"execute\":\"query-status\",\"arguments\":"
						  "{\"vm\":\"auto\"}}"),
					   "prelaunch");
	     i++) {
		usleep(1000);
	}
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-status\",\"arguments\":{\"vm\":\"auto\"}}"),
			 "{\"return\":{\"running\":true,\"singlestep\":false,\"status\":"
			 "\"running\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-status\",\"arguments\":{\"vm\":"
				"\"manual\"}}"),
			 "{\"return\":{\"running\":false,\"singlestep\":false,\"status\":"
			 "\"shutdown\"}}");
	/* max-vms is 3. */
	cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"third\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"x\"}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"vmmd already has 3 "
			 "VMs defined (max-vms in vmmd.conf)\"}}");
	/* A failed start leaves no definition behind. */
	cmd(c, "{\"execute\":\"vm-delete\",\"arguments\":{\"vm\":\"third\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"vm-create\",\"arguments\":{\"name\":\"bad\","
				"\"boot\":{\"kernel\":\"/nonexistent\"},\"start\":true}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"cannot start VM "
			 "'bad': cannot open kernel /nonexistent\"}}");
	ck_assert_str_eq(cmd(c, "{\"execute\":\"query-vms\",\"arguments\":{\"vm\":\"bad\"}}"),
			 "{\"error\":{\"class\":\"DeviceNotFound\",\"desc\":\"VM 'bad' does not "
			 "exist\"}}");
	client_close(c);
}
END_TEST

START_TEST(too_many_clients)
{
	struct client *cs[4];
	struct client *extra = calloc(1, sizeof(*extra));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	json_t *r;

	for (int i = 0; i < 4; i++) {
		cs[i] = connect_to(sock_path, true);
	}
	strcpy(sa.sun_path, sock_path);
	extra->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(extra->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	r = recv_msg(extra);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
			 "Too many clients (limit 4), try again later");
	json_decref(r);
	ck_assert_ptr_null(recv_msg(extra));
	client_close(extra);
	client_close(cs[0]);
	cs[0] = connect_to(sock_path, true);
	for (int i = 0; i < 4; i++) {
		ck_assert_str_eq(cmd(cs[i], "{\"execute\":\"query-vms\"}"), "{\"return\":[]}");
		client_close(cs[i]);
	}
}
END_TEST

START_TEST(getfd)
{
	struct client *c = connect_to(sock_path, true);
	char cbuf[CMSG_SPACE(sizeof(int))];
	const char *msg = "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"tap0\"}}";
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	int pipefd[2];
	json_t *r;

	ck_assert_str_eq(cmd(c, msg), "{\"error\":{\"class\":\"GenericError\",\"desc\":\"No file "
				      "descriptor supplied via SCM_RIGHTS\"}}");
	ck_assert_int_eq(pipe(pipefd), 0);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &pipefd[1], sizeof(int));
	ck_assert_int_eq(sendmsg(c->fd, &mh, 0), (ssize_t)strlen(msg));
	close(pipefd[1]);
	r = recv_msg(c);
	ck_assert_ptr_nonnull(json_object_get(r, "return"));
	json_decref(r);
	ck_assert_str_eq(cmd(c, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"tap0\"}}"),
			 "{\"return\":{}}");
	/* The daemon's copy is closed: the pipe reports EOF. */
	{
		char b;

		ck_assert_int_eq(read(pipefd[0], &b, 1), 0);
	}
	close(pipefd[0]);
	ck_assert_str_eq(cmd(c, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"tap0\"}}"),
			 "{\"error\":{\"class\":\"GenericError\",\"desc\":\"File descriptor named "
			 "'tap0' not found\"}}");
	client_close(c);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("monitor-dispatch");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, daemon_table_matches_schema);
	tcase_add_test(tc, negotiation);
	tcase_add_test(tc, bad_messages);
	tcase_add_test(tc, ids_echoed_as_sent);
	tcase_add_test(tc, lifecycle_and_events);
	tcase_add_test(tc, per_vm_socket);
	tcase_add_test(tc, per_vm_socket_out_of_memory);
	tcase_add_test(tc, restart_keeps_definitions);
	tcase_add_test(tc, too_many_clients);
	tcase_add_test(tc, getfd);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
