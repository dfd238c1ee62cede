/*
 * The QMP client library: see client.h. Blocking I/O with poll() for
 * timeouts; events that arrive while waiting for a reply are queued
 * (bounded: the oldest are dropped past the limit).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clients/client.h"
#include "common/cleanup.h"
#include "common/log.h"

#define QMP_CLIENT_MAX_EVENTS 1024
#define QMP_CLIENT_MAX_LINE (64 * 1024 * 1024)

struct qmp_client {
	int fd;
	char *buf;
	size_t len, cap;
	json_t *greeting;
	json_t *events; /* array */
	json_int_t next_id;
};

void qmp_client_free(struct qmp_client *c)
{
	if (!c) {
		return;
	}
	if (c->fd >= 0) {
		close(c->fd);
	}
	free(c->buf);
	json_decref(c->greeting);
	json_decref(c->events);
	free(c);
}

json_t *qmp_client_greeting(struct qmp_client *c)
{
	return c->greeting;
}

/* Read until a complete line is buffered; -ETIMEDOUT / -EPIPE / -errno. */
static int fill_line(struct qmp_client *c, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : now_monotonic_us() + (uint64_t)timeout_ms * 1000;

	while (!memchr(c->buf ? c->buf : "", '\n', c->len)) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		int wait = -1;
		ssize_t n;

		if (timeout_ms >= 0) {
			uint64_t now = now_monotonic_us();

			if (now >= deadline) {
				return -ETIMEDOUT;
			}
			wait = (int)((deadline - now + 999) / 1000);
		}
		if (poll(&pfd, 1, wait) < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
			continue;
		}
		if (c->cap - c->len < 65536) {
			size_t cap = c->cap ? c->cap * 2 : 131072;
			char *nb;

			if (cap > QMP_CLIENT_MAX_LINE) {
				return -EMSGSIZE;
			}
			nb = realloc(c->buf, cap);
			if (!nb) {
				return -ENOMEM;
			}
			c->buf = nb;
			c->cap = cap;
		}
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		if (n == 0) {
			return -EPIPE;
		}
		c->len += (size_t)n;
	}
	return 0;
}

/*
 * QEMU (and vmmd) answer some uint64 values above INT64_MAX, which jansson
 * cannot hold: parse @len bytes at @text again with each such number turned
 * into a string of its digits. NULL if that does not help.
 */
static json_t *load_with_u64(const char *text, size_t len)
{
	char *out = malloc(len * 2 + 1);
	bool in_str = false, esc = false;
	size_t o = 0;
	json_t *j;

	if (!out) {
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = text[i];

		if (in_str) {
			in_str = esc || ch != '"';
			esc = !esc && ch == '\\';
			out[o++] = ch;
			continue;
		}
		if (ch == '"') {
			in_str = true;
			out[o++] = ch;
			continue;
		}
		if (ch >= '0' && ch <= '9' && (i == 0 || !strchr("0123456789.eE+-", text[i - 1]))) {
			size_t e = i;

			while (e < len && text[e] >= '0' && text[e] <= '9') {
				e++;
			}
			if (e - i >= 19 && (e == len || !strchr(".eE", text[e])) &&
			    (e - i > 19 || strncmp(text + i, "9223372036854775807", 19) > 0)) {
				out[o++] = '"';
				memcpy(out + o, text + i, e - i);
				o += e - i;
				out[o++] = '"';
				i = e - 1;
				continue;
			}
		}
		out[o++] = ch;
	}
	j = json_loadb(out, o, 0, NULL);
	free(out);
	return j;
}

static int read_msg(struct qmp_client *c, int timeout_ms, json_t **ret, struct error **errp)
{
	json_error_t jerr;
	char *nl;
	json_t *j;
	int r = fill_line(c, timeout_ms);

	if (r == -ETIMEDOUT) {
		return r;
	}
	if (r == -EPIPE) {
		return error_set(errp, EPIPE, "vmmd closed the connection");
	}
	if (r < 0) {
		return error_set_errno(errp, r, "reading from vmmd");
	}
	nl = memchr(c->buf, '\n', c->len);
	j = json_loadb(c->buf, (size_t)(nl - c->buf), 0, &jerr);
	if (!j) {
		j = load_with_u64(c->buf, (size_t)(nl - c->buf));
	}
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return error_set(errp, EPROTO, "vmmd sent something that is not a JSON object");
	}
	*ret = j;
	return 0;
}

static void queue_event(struct qmp_client *c, json_t *ev)
{
	if (json_array_size(c->events) >= QMP_CLIENT_MAX_EVENTS) {
		json_array_remove(c->events, 0);
	}
	json_array_append_new(c->events, ev);
}

int qmp_client_send_raw(struct qmp_client *c, const char *buf, size_t len, struct error **errp)
{
	while (len > 0) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return error_set_errno(errp, errno, "writing to vmmd");
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static enum error_class class_from_name(const char *name)
{
	static const struct {
		const char *name;
		enum error_class cls;
	} map[] = {
		{"CommandNotFound", ERROR_CLASS_COMMAND_NOT_FOUND},
		{"DeviceNotActive", ERROR_CLASS_DEVICE_NOT_ACTIVE},
		{"DeviceNotFound", ERROR_CLASS_DEVICE_NOT_FOUND},
		{"KVMMissingCap", ERROR_CLASS_KVM_MISSING_CAP},
	};

	for (size_t i = 0; name && i < ARRAY_SIZE(map); i++) {
		if (strcmp(map[i].name, name) == 0) {
			return map[i].cls;
		}
	}
	return ERROR_CLASS_GENERIC;
}

int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args, json_t **ret,
		       struct error **errp)
{
	json_auto_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", ++c->next_id);
	json_int_t id = c->next_id;
	_cleanup_free_ char *text = NULL;
	int r;

	if (!msg) {
		json_decref(args);
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (args) {
		json_object_set_new(msg, "arguments", args);
	}
	text = json_dumps(msg, JSON_COMPACT);
	if (!text) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = qmp_client_send_raw(c, text, strlen(text), errp);
	if (r == 0) {
		r = qmp_client_send_raw(c, "\r\n", 2, errp);
	}
	if (r < 0) {
		return r;
	}
	for (;;) {
		json_t *m = NULL, *err;

		r = read_msg(c, -1, &m, errp);
		if (r < 0) {
			return r;
		}
		if (json_object_get(m, "event")) {
			queue_event(c, m);
			continue;
		}
		if (json_integer_value(json_object_get(m, "id")) != id) {
			/* A reply to something else (an id-less error): not ours. */
			json_decref(m);
			continue;
		}
		err = json_object_get(m, "error");
		if (err) {
			const char *cls = json_string_value(json_object_get(err, "class"));
			const char *desc = json_string_value(json_object_get(err, "desc"));

			r = error_set_class(errp, class_from_name(cls), EREMOTEIO, "%s",
					    desc ? desc : "unknown error");
			json_decref(m);
			return r;
		}
		if (ret) {
			*ret = json_incref(json_object_get(m, "return"));
		}
		json_decref(m);
		return 0;
	}
}

int qmp_client_recv(struct qmp_client *c, int timeout_ms, json_t **ret, struct error **errp)
{
	return read_msg(c, timeout_ms, ret, errp);
}

int qmp_client_next_event(struct qmp_client *c, int timeout_ms, json_t **ret, struct error **errp)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : now_monotonic_us() + (uint64_t)timeout_ms * 1000;

	for (;;) {
		json_t *m = NULL;
		int wait = -1, r;

		if (json_array_size(c->events) > 0) {
			*ret = json_incref(json_array_get(c->events, 0));
			json_array_remove(c->events, 0);
			return 0;
		}
		if (timeout_ms >= 0) {
			uint64_t now = now_monotonic_us();

			wait = now >= deadline ? 0 : (int)((deadline - now + 999) / 1000);
		}
		r = read_msg(c, wait, &m, errp);
		if (r < 0) {
			return r;
		}
		if (json_object_get(m, "event")) {
			*ret = m;
			return 0;
		}
		json_decref(m);
	}
}

int qmp_client_connect(const char *path, bool negotiate, struct qmp_client **ret,
		       struct error **errp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_(qmp_client_freep) struct qmp_client *c = NULL;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		return error_set(errp, ENAMETOOLONG, "socket path %s is too long", path);
	}
	strcpy(sa.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (!c) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	c->events = json_array();
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		return error_set_errno(errp, errno, "socket");
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		return error_set_errno(errp, errno, "cannot connect to vmmd at %s", path);
	}
	r = read_msg(c, 10000, &c->greeting, errp);
	if (r == -ETIMEDOUT) {
		return error_set(errp, ETIMEDOUT, "no greeting from %s within 10 s", path);
	}
	if (r < 0) {
		return r;
	}
	if (!json_object_get(c->greeting, "QMP")) {
		json_t *e = json_object_get(c->greeting, "error");
		const char *desc = json_string_value(json_object_get(e, "desc"));

		return error_set(errp, ECONNREFUSED, "%s refused the connection: %s", path,
				 desc ? desc : "no QMP greeting");
	}
	if (negotiate) {
		r = qmp_client_execute(c, "qmp_capabilities", NULL, NULL, errp);
		if (r < 0) {
			return r;
		}
	}
	*ret = TAKE_PTR(c);
	return 0;
}
