/*
 * The protocol server: listening sockets (mode, group, SO_PEERCRED checks),
 * client connections, input splitting and output queues with their limits.
 * See monitor.h and vmmd-protocol(7).
 *
 * Threads: control thread only. Clients are never freed inside their own
 * callbacks: they are marked dead and reaped by a deferred event.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/cleanup.h"
#include "common/json-u64.h"
#include "common/log.h"
#include "common/util.h"
#include "monitor/monitor-int.h"

static struct ratelimit refuse_rl = RATELIMIT_INIT(5 * 1000000, 20);
static struct ratelimit drop_rl = RATELIMIT_INIT(5 * 1000000, 20);

static void reap(evutil_socket_t fd, short what, void *opaque);

int monitor_new(struct event_base *base, const struct monitor_handlers *h,
		const struct monitor_limits *lim, gid_t group, struct monitor **ret,
		struct error **errp)
{
	struct monitor *mon;
	int r;

	mon = calloc(1, sizeof(*mon));
	if (!mon) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	mon->base = base;
	mon->handlers = *h;
	mon->lim = *lim;
	monitor_default_version(&mon->version);
	mon->group = group;
	list_init(&mon->listeners);
	list_init(&mon->clients);
	r = schema_load(schema_json_text, &mon->schema, errp);
	if (r < 0) {
		goto err_free;
	}
	r = monitor_check_table(mon->schema, h, errp);
	if (r < 0) {
		goto err_schema;
	}
	mon->reaper = event_new(base, -1, 0, reap, mon);
	if (!mon->reaper) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err_schema;
	}
	*ret = mon;
	return 0;

err_schema:
	schema_free(mon->schema);
err_free:
	free(mon);
	return r;
}

void monitor_set_limits(struct monitor *mon, const struct monitor_limits *lim)
{
	mon->lim = *lim;
}

static void client_free(struct monitor_client *c)
{
	struct list_head *p, *t;

	list_del(&c->link);
	c->mon->n_clients--;
	if (c->timer) {
		event_free(c->timer);
	}
	if (c->rev) {
		event_free(c->rev);
	}
	bufferevent_free(c->bev);
	if (c->inq) {
		evbuffer_free(c->inq);
	}
	for (unsigned i = 0; i < c->n_pending; i++) {
		close(c->pending[i]);
	}
	json_stream_release(&c->in);
	if (c->deferred) {
		c->deferred->client = NULL;
	}
	list_for_each_safe (p, t, &c->fds) {
		struct monitor_fd *f = list_entry(p, struct monitor_fd, link);

		close(f->fd);
		free(f->name);
		free(f);
	}
	if (c->on_gone) {
		c->on_gone(c->tag);
	}
	free(c->vm);
	free(c);
}

static void reap(evutil_socket_t fd, short what, void *opaque)
{
	struct monitor *mon = opaque;
	struct list_head *p, *t;

	list_for_each_safe (p, t, &mon->clients) {
		struct monitor_client *c = list_entry(p, struct monitor_client, link);

		if (c->dead ||
		    (c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)) {
			client_free(c);
		}
	}
}

void monitor_client_drop(struct monitor_client *c)
{
	if (c->dead) {
		return;
	}
	c->dead = true;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (c->rev) {
		event_del(c->rev);
	}
	event_active(c->mon->reaper, 0, 0);
}

static void listener_free(struct monitor_listener *l)
{
	list_del(&l->link);
	event_free(l->ev);
	close(l->fd);
	if (l->path && !l->mon->keep_files) {
		unlink(l->path);
	}
	free(l->path);
	free(l->vm);
	free(l);
}

void monitor_free(struct monitor *mon)
{
	struct list_head *p, *t;

	if (!mon) {
		return;
	}
	list_for_each_safe (p, t, &mon->listeners) {
		listener_free(list_entry(p, struct monitor_listener, link));
	}
	list_for_each_safe (p, t, &mon->clients) {
		client_free(list_entry(p, struct monitor_client, link));
	}
	event_free(mon->reaper);
	schema_free(mon->schema);
	free(mon);
}

unsigned monitor_client_count(struct monitor *mon)
{
	return mon->n_clients;
}

json_t *monitor_timestamp(void)
{
	struct timeval tv;

	if (gettimeofday(&tv, NULL) < 0) {
		return json_pack("{s:i, s:i}", "seconds", -1, "microseconds", -1);
	}
	return json_pack("{s:I, s:I}", "seconds", (json_int_t)tv.tv_sec, "microseconds",
			 (json_int_t)tv.tv_usec);
}

static size_t high_mark(struct monitor_client *c);

char *monitor_dump(json_t *obj)
{
	/* ASCII output as QMP requires; compact, one object per line. */
	char *text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);

	if (text) {
		json_u64_unmark(text);
	}
	return text;
}

/*
 * With @now, what nothing is queued before goes straight to the socket: an
 * answer leaves at once, not after every other callback of this loop
 * iteration, and costs no write event. What the socket does not take (and
 * any error, which the bufferevent then reports) goes to the output buffer.
 * Events wait there for the loop to write them, a client's together: one
 * write per message would make the kernel keep a buffer for each, and a
 * client that reads late would fill its socket with far fewer bytes.
 */
void monitor_client_send_text(struct monitor_client *c, const char *text, bool now)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = strlen(text), queued = evbuffer_get_length(out);
	char crlf[] = "\r\n";
	struct iovec iov[2] = {{(void *)text, len}, {crlf, 2}};
	size_t sent = 0;

	if (c->dead) {
		return;
	}
	/*
	 * Over the size: dropped, unless the queue was below the flow-control
	 * mark (the client reads; its input stops now), whatever this
	 * message's size: a large answer (query-qmp-schema is about 57 KiB)
	 * never cuts off a client that reads.
	 */
	if (queued >= high_mark(c) && queued + len + 2 > c->mon->lim.max_output) {
		log_ratelimited(&drop_rl, LOG_WARNING, c->vm, NULL,
				"dropping client pid %d uid %u: output queue over %zu bytes "
				"(it does not read)",
				(int)c->pid, (unsigned)c->uid, c->mon->lim.max_output);
		monitor_client_drop(c);
		return;
	}
	if (now && queued == 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		ssize_t n;

		do {
			n = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		} while (n < 0 && errno == EINTR);
		sent = n > 0 ? (size_t)n : 0;
	}
	/* what the socket did not take */
	for (size_t i = 0; i < 2; i++) {
		size_t skip = MIN(sent, iov[i].iov_len);

		evbuffer_add(out, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
		sent -= skip;
	}
}

void monitor_client_send(struct monitor_client *c, json_t *obj)
{
	char *text;

	if (c->dead || !obj) {
		return;
	}
	text = monitor_dump(obj);
	if (!text) {
		monitor_client_drop(c);
		return;
	}
	monitor_client_send_text(c, text, true);
	free(text);
}

void monitor_client_send_error(struct monitor_client *c, const char *cls, const char *desc,
			       json_t *id)
{
	json_auto_t *reply = json_pack("{s:{s:s, s:s}}", "error", "class", cls, "desc", desc);

	if (reply && id) {
		json_object_set(reply, "id", id);
	}
	monitor_client_send(c, reply);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t out_len(struct monitor_client *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* Stop reading input while this much output is queued; resume below half of it. */
static size_t high_mark(struct monitor_client *c)
{
	return MAX(c->mon->lim.max_output / 4, 4096);
}

static void process_input(struct monitor_client *c);

static void client_written(struct bufferevent *bev, void *opaque)
{
	struct monitor_client *c = opaque;

	if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		monitor_client_drop(c);
		return;
	}
	if (c->throttled && !c->dead && !c->closing && out_len(c) <= high_mark(c) / 2) {
		c->throttled = false;
		monitor_client_resume(c);
	}
}

static void closing_timeout(evutil_socket_t fd, short what, void *opaque)
{
	monitor_client_drop(opaque);
}

void monitor_client_close_after_flush(struct monitor_client *c)
{
	if (c->dead || c->closing) {
		return;
	}
	c->closing = true;
	if (c->rev) {
		event_del(c->rev);
	}
	/* A peer that never reads its last words is dropped after a while. */
	if (c->timer) {
		event_free(c->timer);
	}
	c->timer = evtimer_new(c->mon->base, closing_timeout, c);
	if (c->timer) {
		struct timeval tv = {.tv_sec = MONITOR_CLOSE_TIMEOUT};

		evtimer_add(c->timer, &tv);
	}
	/* Reaped once the output is empty (here or in client_written). */
	event_active(c->mon->reaper, 0, 0);
}

/* Keep fds that arrived with SCM_RIGHTS until a getfd claims them (bounded). */
static void stash_fds(struct monitor_client *c, struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n;
		int *fds;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			continue;
		}
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		fds = (int *)CMSG_DATA(cm);
		for (size_t i = 0; i < n; i++) {
			if (c->n_pending < MONITOR_MAX_PENDING_FDS) {
				c->pending[c->n_pending++] = fds[i];
			} else {
				close(fds[i]);
			}
		}
	}
}

/*
 * Parse and dispatch queued input until it runs out or the output queue is
 * over the high mark (then input stays queued, the socket is not read, and
 * client_written() resumes once the peer has read). After the peer's end of
 * input, the connection closes once every answer is written.
 */
static void process_input(struct monitor_client *c)
{
	while (!c->dead && !c->closing && !c->deferred && evbuffer_get_length(c->inq) > 0) {
		size_t avail = MIN(evbuffer_get_length(c->inq), (size_t)65536);
		const char *data = (const char *)evbuffer_pullup(c->inq, (ev_ssize_t)avail);
		enum json_stream_status st;
		json_t *obj = NULL;
		char *err = NULL;
		size_t used;

		if (out_len(c) > high_mark(c)) {
			c->throttled = true;
			event_del(c->rev);
			return;
		}
		if (!data) {
			monitor_client_drop(c);
			return;
		}
		used = json_stream_feed(&c->in, data, avail, &st, &obj, &err);
		evbuffer_drain(c->inq, used);
		if (st == JSON_STREAM_OBJECT) {
			if (c->mon->handlers.flush_events) {
				c->mon->handlers.flush_events(c->mon->handlers.ctx);
			}
			monitor_dispatch(c, obj);
			json_decref(obj);
		} else if (st == JSON_STREAM_ERROR) {
			monitor_client_send_error(c, "GenericError", err ? err : "out of memory",
						  NULL);
			free(err);
		}
	}
	if (c->deferred && !c->eof) {
		/* A command runs elsewhere: the rest waits (in order) in the socket. */
		event_del(c->rev);
		return;
	}
	if (c->eof && !c->dead && !c->closing && !c->deferred && evbuffer_get_length(c->inq) == 0) {
		/* Half-closed: answer everything, then close (like QEMU). */
		monitor_client_close_after_flush(c);
	}
}

void monitor_client_resume(struct monitor_client *c)
{
	if (c->dead || c->closing) {
		return;
	}
	process_input(c);
	if (!c->throttled && !c->deferred && !c->eof && !c->dead && !c->closing) {
		event_add(c->rev, NULL);
	}
}

static void client_read(evutil_socket_t fd, short what, void *opaque)
{
	struct monitor_client *c = opaque;
	char chunk[65536];

	/* A bounded amount per wakeup: one flooding client cannot starve the others. */
	for (int round = 0; round < 4 && !c->dead && !c->closing && !c->throttled && !c->deferred;
	     round++) {
		char cbuf[CMSG_SPACE(sizeof(int) * MONITOR_MAX_PENDING_FDS)];
		struct iovec iov = {.iov_base = chunk, .iov_len = sizeof(chunk)};
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = cbuf,
			.msg_controllen = sizeof(cbuf),
		};
		ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				monitor_client_drop(c);
			}
			return;
		}
		stash_fds(c, &mh);
		if (n == 0) {
			c->eof = true;
			event_del(c->rev);
			process_input(c);
			return;
		}
		c->last_active = now_ms();
		if (evbuffer_add(c->inq, chunk, (size_t)n) < 0) {
			monitor_client_drop(c);
			return;
		}
		process_input(c);
	}
}

static void client_event(struct bufferevent *bev, short what, void *opaque)
{
	struct monitor_client *c = opaque;

	if (what & BEV_EVENT_TIMEOUT) {
		log_ratelimited(&drop_rl, LOG_WARNING, c->vm, NULL,
				"dropping client pid %d uid %u: %zu bytes of output did not move "
				"for %u s (it does not read)",
				(int)c->pid, (unsigned)c->uid, out_len(c), MONITOR_STALL_TIMEOUT);
		monitor_client_drop(c);
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		monitor_client_drop(c);
	}
}

static void negotiation_timeout(evutil_socket_t fd, short what, void *opaque)
{
	struct monitor_client *c = opaque;

	if (c->negotiated || c->dead) {
		return;
	}
	log_ratelimited(&drop_rl, LOG_NOTICE, c->vm, NULL,
			"dropping client pid %d uid %u: no qmp_capabilities within %u s",
			(int)c->pid, (unsigned)c->uid, c->mon->lim.negotiation_timeout);
	monitor_client_send_error(c, "GenericError",
				  "Capabilities negotiation timed out, closing the connection",
				  NULL);
	monitor_client_close_after_flush(c);
}

/* Root, the daemon's own uid and members of the socket group may connect. */
static bool peer_allowed(struct monitor *mon, int fd, struct ucred *cred)
{
	socklen_t len = sizeof(*cred);
	gid_t groups[256];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0) {
		return false;
	}
	if (cred->uid == 0 || cred->uid == geteuid()) {
		return true;
	}
	if (mon->group == (gid_t)-1) {
		return false;
	}
	if (cred->gid == mon->group) {
		return true;
	}
	len = sizeof(groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
		for (size_t i = 0; i < len / sizeof(gid_t); i++) {
			if (groups[i] == mon->group) {
				return true;
			}
		}
	}
	return false;
}

static unsigned live_clients(struct monitor *mon)
{
	struct list_head *p;
	unsigned n = 0;

	list_for_each (p, &mon->clients) {
		struct monitor_client *c = list_entry(p, struct monitor_client, link);

		n += !c->dead && !c->closing;
	}
	return n;
}

/*
 * At max-clients, a new connection closes the client idle longest (no input
 * for MONITOR_EVICT_IDLE seconds, nothing queued either way), so idle
 * connections cannot lock the administrator out. None idle: refused.
 */
static void evict_idle(struct monitor *mon, struct monitor_client *newc)
{
	struct monitor_client *victim = NULL;
	uint64_t now = now_ms();
	struct list_head *p;

	list_for_each (p, &mon->clients) {
		struct monitor_client *c = list_entry(p, struct monitor_client, link);

		if (c == newc || c->dead || c->closing || c->deferred || out_len(c) ||
		    evbuffer_get_length(c->inq) ||
		    now - c->last_active < MONITOR_EVICT_IDLE * 1000) {
			continue;
		}
		if (!victim || c->last_active < victim->last_active) {
			victim = c;
		}
	}
	if (!victim) {
		return;
	}
	log_ratelimited(&refuse_rl, LOG_NOTICE, victim->vm, NULL,
			"closing client pid %d uid %u, idle %" PRIu64 " s, to serve a new one "
			"(max-clients %u)",
			(int)victim->pid, (unsigned)victim->uid, (now - victim->last_active) / 1000,
			mon->lim.max_clients);
	monitor_client_send_error(victim, "GenericError",
				  "Too many clients: closing the longest-idle connection", NULL);
	monitor_client_close_after_flush(victim);
}

static struct monitor_client *accept_one(struct monitor *mon, const char *vm, int fd)
{
	struct monitor_client *c;
	struct ucred cred = {0};
	json_auto_t *greeting = NULL;

	if (!peer_allowed(mon, fd, &cred)) {
		log_ratelimited(&refuse_rl, LOG_WARNING, vm, NULL,
				"refused connection from pid %d uid %u gid %u: not root, the "
				"daemon's uid or a member of the socket group",
				(int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
		close(fd);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	/* a per-VM socket's client without its VM would get the whole daemon */
	if (vm && !(c->vm = strdup(vm))) {
		free(c);
		close(fd);
		return NULL;
	}
	c->mon = mon;
	c->pid = cred.pid;
	c->uid = cred.uid;
	list_init(&c->fds);
	json_stream_init(&c->in, mon->lim.max_message, mon->lim.max_depth);
	c->last_active = now_ms();
	c->inq = evbuffer_new();
	c->bev = c->inq ? bufferevent_socket_new(mon->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!c->bev) {
		if (c->inq) {
			evbuffer_free(c->inq);
		}
		close(fd);
		free(c->vm);
		free(c);
		return NULL;
	}
	list_add_tail(&c->link, &mon->clients);
	mon->n_clients++;
	bufferevent_setcb(c->bev, NULL, client_written, client_event, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, high_mark(c) / 2, 0);
	bufferevent_set_timeouts(c->bev, NULL, &(struct timeval){.tv_sec = MONITOR_STALL_TIMEOUT});
	c->rev = event_new(mon->base, fd, EV_READ | EV_PERSIST, client_read, c);
	if (!c->rev) {
		monitor_client_drop(c);
		return NULL;
	}
	if (mon->n_clients > mon->lim.max_clients) {
		evict_idle(mon, c);
	}
	if (live_clients(mon) > mon->lim.max_clients) {
		char desc[128];

		log_ratelimited(&refuse_rl, LOG_WARNING, vm, NULL,
				"refused connection from pid %d uid %u: %u clients already",
				(int)cred.pid, (unsigned)cred.uid, mon->lim.max_clients);
		snprintf(desc, sizeof(desc), "Too many clients (limit %u), try again later",
			 mon->lim.max_clients);
		bufferevent_enable(c->bev, EV_WRITE);
		monitor_client_send_error(c, "GenericError", desc, NULL);
		monitor_client_close_after_flush(c);
		return NULL;
	}
	if (mon->lim.negotiation_timeout) {
		struct timeval tv = {.tv_sec = mon->lim.negotiation_timeout};

		c->timer = evtimer_new(mon->base, negotiation_timeout, c);
		if (c->timer) {
			evtimer_add(c->timer, &tv);
		}
	}
	bufferevent_enable(c->bev, EV_WRITE);
	event_add(c->rev, NULL);
	greeting = monitor_greeting(mon);
	monitor_client_send(c, greeting);
	log_debug("client pid %d uid %u connected%s%s", (int)cred.pid, (unsigned)cred.uid,
		  vm ? " to VM " : "", vm ? vm : "");
	return c;
}

static void listener_ready(evutil_socket_t lfd, short what, void *opaque)
{
	struct monitor_listener *l = opaque;

	/* Bounded per wakeup so a connection storm cannot starve other clients. */
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_ratelimited(&refuse_rl, LOG_WARNING, l->vm, NULL,
						"accept failed: %s", strerror(errno));
			}
			return;
		}
		accept_one(l->mon, l->vm, fd);
	}
}

static int add_listener(struct monitor *mon, int fd, const char *path, const char *vm,
			struct error **errp)
{
	struct monitor_listener *l;

	l = calloc(1, sizeof(*l));
	if (!l) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	l->mon = mon;
	l->fd = fd;
	l->path = path ? strdup(path) : NULL;
	l->vm = vm ? strdup(vm) : NULL;
	l->ev = event_new(mon->base, fd, EV_READ | EV_PERSIST, listener_ready, l);
	if (!l->ev || (path && !l->path) || (vm && !l->vm) || event_add(l->ev, NULL) < 0) {
		if (l->ev) {
			event_free(l->ev);
		}
		free(l->path);
		free(l->vm);
		free(l);
		return error_set(errp, ENOMEM, "out of memory");
	}
	list_add_tail(&l->link, &mon->listeners);
	return 0;
}

int monitor_listen_fd(struct monitor *mon, int fd, struct error **errp)
{
	int flags = fcntl(fd, F_GETFL);
	int r;

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		r = error_set_errno(errp, errno, "cannot use the passed socket (fd %d)", fd);
		close(fd);
		return r;
	}
	r = add_listener(mon, fd, NULL, NULL, errp);
	if (r < 0) {
		close(fd);
	}
	return r;
}

int monitor_bind_path(const char *path, mode_t mode, gid_t group, struct error **errp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;
	char tmp[sizeof(sa.sun_path) + 8];
	struct stat st;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		return error_set(errp, ENAMETOOLONG,
				 "socket path %s is longer than the %zu bytes a UNIX socket allows",
				 path, sizeof(sa.sun_path) - 1);
	}
	/*
	 * Bind under a temporary name, set mode and group, listen, then rename
	 * into place: the socket appears only once it accepts connections and
	 * never with the wrong permissions.
	 */
	if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int)sizeof(sa.sun_path)) {
		snprintf(tmp, sizeof(tmp), "%s", path);
	}
	strcpy(sa.sun_path, tmp);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return error_set_errno(errp, errno, "socket");
	}
	/* Replace a stale socket file, but never anything else. */
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		return error_set(
			errp, EEXIST,
			"%s exists and is not a socket; remove it or choose another --socket",
			path);
	}
	unlink(tmp);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		return error_set_errno(errp, errno, "cannot bind %s", tmp);
	}
	if (chmod(tmp, mode) < 0 || (group != (gid_t)-1 && chown(tmp, (uid_t)-1, group) < 0)) {
		r = error_set_errno(errp, errno, "cannot set mode %04o and group %d on %s",
				    (unsigned)mode, (int)group, tmp);
		goto err_unlink;
	}
	if (listen(fd, 128) < 0) {
		r = error_set_errno(errp, errno, "cannot listen on %s", tmp);
		goto err_unlink;
	}
	if (strcmp(tmp, path) != 0 && rename(tmp, path) < 0) {
		r = error_set_errno(errp, errno, "cannot rename %s to %s", tmp, path);
		goto err_unlink;
	}
	return TAKE_FD(fd);

err_unlink:
	unlink(tmp);
	return r;
}

int monitor_listen_bound(struct monitor *mon, int fd, const char *path, const char *vm,
			 struct error **errp)
{
	int r = add_listener(mon, fd, path, vm, errp);

	if (r < 0) {
		close(fd);
		unlink(path);
	}
	return r;
}

int monitor_listen_path(struct monitor *mon, const char *path, mode_t mode, gid_t group,
			const char *vm, struct error **errp)
{
	int fd = monitor_bind_path(path, mode, group, errp);

	return fd < 0 ? fd : monitor_listen_bound(mon, fd, path, vm, errp);
}

int monitor_add_client(struct monitor *mon, int fd, void (*on_gone)(void *tag), void *tag,
		       struct error **errp)
{
	struct monitor_client *c;
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		close(fd);
		return error_set_errno(errp, errno, "cannot use the client socket");
	}
	c = accept_one(mon, NULL, fd);
	if (!c) {
		return error_set(errp, EPERM, "the client was refused (see the log)");
	}
	c->on_gone = on_gone;
	c->tag = tag;
	return 0;
}

void *monitor_request_tag(struct monitor_request *req)
{
	return req->client ? req->client->tag : NULL;
}

int monitor_main_fd(struct monitor *mon)
{
	struct list_head *p;

	list_for_each (p, &mon->listeners) {
		struct monitor_listener *l = list_entry(p, struct monitor_listener, link);

		if (!l->vm) {
			return l->fd;
		}
	}
	return -ENOENT;
}

void monitor_pause_main(struct monitor *mon, bool paused)
{
	struct list_head *p;

	list_for_each (p, &mon->listeners) {
		struct monitor_listener *l = list_entry(p, struct monitor_listener, link);

		if (!l->vm) {
			if (paused) {
				event_del(l->ev);
			} else {
				event_add(l->ev, NULL);
			}
		}
	}
}

void monitor_keep_socket_files(struct monitor *mon)
{
	mon->keep_files = true;
}

void monitor_stop_listening(struct monitor *mon)
{
	struct list_head *p, *t;

	list_for_each_safe (p, t, &mon->listeners) {
		listener_free(list_entry(p, struct monitor_listener, link));
	}
}

void monitor_vm_gone(struct monitor *mon, const char *vm)
{
	struct list_head *p, *t;

	list_for_each_safe (p, t, &mon->listeners) {
		struct monitor_listener *l = list_entry(p, struct monitor_listener, link);

		if (l->vm && strcmp(l->vm, vm) == 0) {
			listener_free(l);
		}
	}
	list_for_each (p, &mon->clients) {
		struct monitor_client *c = list_entry(p, struct monitor_client, link);

		if (c->vm && strcmp(c->vm, vm) == 0) {
			monitor_client_close_after_flush(c);
		}
	}
}

int monitor_take_fd(struct monitor *mon, const char *name)
{
	struct list_head *p;

	if (!mon->current) {
		return -ENOENT;
	}
	list_for_each (p, &mon->current->fds) {
		struct monitor_fd *f = list_entry(p, struct monitor_fd, link);
		int fd = f->fd;

		if (strcmp(f->name, name) == 0) {
			list_del(&f->link);
			free(f->name);
			free(f);
			return fd;
		}
	}
	return -ENOENT;
}

int monitor_get_fd(struct monitor *mon, const char *name)
{
	struct list_head *p;
	int fd;

	if (!mon->current) {
		return -ENOENT;
	}
	list_for_each (p, &mon->current->fds) {
		struct monitor_fd *f = list_entry(p, struct monitor_fd, link);

		if (strcmp(f->name, name) == 0) {
			fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 3);
			return fd < 0 ? -errno : fd;
		}
	}
	return -ENOENT;
}
