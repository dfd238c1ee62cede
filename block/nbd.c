/*
 * The NBD protocol driver, a client built on libnbd: nbd:// and
 * nbd+unix:// URIs (nbds:// for TLS), or blockdev options
 *   {"server": {"type": "unix", "path": P} | {"type": "inet", "host": H, "port": "10809"},
 *    "export": NAME, "tls": "off"|"allow"|"require", "tls-certificates": DIR,
 *    "tls-psk-file": FILE, "tls-username": USER, "timeout": SECONDS,
 *    "reconnect-delay": SECONDS}
 * Newstyle fixed handshake, structured replies and the base:allocation
 * block-status context are negotiated by libnbd.
 *
 * Every request runs libnbd's asynchronous API under a deadline (the
 * request timeout, 30 s by default): a server that stops answering or
 * disappears gives -EIO within the timeout, never a hang. The connection
 * is then dropped; with a reconnect delay, later requests (and the failed
 * one, once) try to reconnect for up to that long, else they fail at once.
 *
 * Threads: requests come from I/O worker threads; s->lock serializes them
 * (one request in flight per connection). Open and close run on the
 * caller's thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/block-int.h"

#define NBD_DEFAULT_TIMEOUT_S 30
#define NBD_MAX_TIMEOUT_S 3600
/* Largest single command (the protocol's usual maximum is 32 MiB). */
#define NBD_MAX_REQUEST (32u << 20)
#define NBD_MAX_COOKIES 64

struct nbd_state {
	pthread_mutex_t lock;
	struct nbd_handle *h; /* NULL while disconnected */
	char *uri;	      /* when opened by URI */
	char *unix_path, *host, *port, *export_name;
	char *tls_certs, *tls_psk, *tls_user;
	int tls;
	uint64_t size;
	uint64_t timeout_ms;
	uint64_t reconnect_ms; /* 0: no reconnect */
	bool can_flush, can_trim, can_zero, can_status;
};

static struct nbd_state *state(struct block_node *bs)
{
	return bs->opaque;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Drive the handle until @done(h, arg) is true or @deadline passes.
 * Returns 0, -ETIMEDOUT, or -EIO if the connection died.
 */
static int run_until(struct nbd_handle *h, bool (*done)(struct nbd_handle *, void *), void *arg,
		     uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd;
		unsigned dir;
		uint64_t now;
		int r;

		if (done(h, arg)) {
			return 0;
		}
		if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
			return -EIO;
		}
		now = mono_ms();
		if (now >= deadline) {
			return -ETIMEDOUT;
		}
		pfd.fd = nbd_aio_get_fd(h);
		if (pfd.fd < 0) {
			return -EIO;
		}
		dir = nbd_aio_get_direction(h);
		pfd.events = 0;
		if (dir & LIBNBD_AIO_DIRECTION_READ) {
			pfd.events |= POLLIN;
		}
		if (dir & LIBNBD_AIO_DIRECTION_WRITE) {
			pfd.events |= POLLOUT;
		}
		pfd.revents = 0;
		r = poll(&pfd, 1, (int)MIN(deadline - now, (uint64_t)INT32_MAX));
		if (r < 0 && errno != EINTR) {
			return -EIO;
		}
		if (r <= 0) {
			continue;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (nbd_aio_notify_read(h) < 0 && nbd_aio_is_dead(h)) {
				return -EIO;
			}
		} else if (pfd.revents & POLLOUT) {
			if (nbd_aio_notify_write(h) < 0 && nbd_aio_is_dead(h)) {
				return -EIO;
			}
		}
	}
}

static bool connected(struct nbd_handle *h, void *arg)
{
	return !nbd_aio_is_connecting(h) && !nbd_aio_is_created(h);
}

static bool closed(struct nbd_handle *h, void *arg)
{
	return nbd_aio_is_closed(h) || nbd_aio_is_dead(h);
}

static void disconnect(struct nbd_state *s)
{
	if (s->h) {
		nbd_close(s->h);
		s->h = NULL;
	}
}

/* Connect (or reconnect) within the request timeout; fills the error on failure. */
static int nbd_drv_connect(struct block_node *bs, struct nbd_state *s, struct error **errp)
{
	struct nbd_handle *h = nbd_create();
	int64_t size;
	int r;

	if (!h) {
		return error_set(errp, ENOMEM, "could not create an NBD handle: %s",
				 nbd_get_error());
	}
	if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
	    nbd_set_request_structured_replies(h, true) < 0) {
		goto err_lib;
	}
	if (s->uri) {
		r = nbd_aio_connect_uri(h, s->uri);
	} else {
		if (nbd_set_export_name(h, s->export_name ? s->export_name : "") < 0 ||
		    nbd_set_tls(h, s->tls) < 0 ||
		    (s->tls_certs && nbd_set_tls_certificates(h, s->tls_certs) < 0) ||
		    (s->tls_psk && nbd_set_tls_psk_file(h, s->tls_psk) < 0) ||
		    (s->tls_user && nbd_set_tls_username(h, s->tls_user) < 0)) {
			goto err_lib;
		}
		r = s->unix_path ? nbd_aio_connect_unix(h, s->unix_path)
				 : nbd_aio_connect_tcp(h, s->host, s->port);
	}
	if (r < 0) {
		goto err_lib;
	}
	r = run_until(h, connected, NULL, mono_ms() + s->timeout_ms);
	if (r == -ETIMEDOUT) {
		nbd_close(h);
		return error_set(errp, EIO,
				 "NBD server for '%s' did not answer within %" PRIu64 " ms",
				 bs->filename, s->timeout_ms);
	}
	if (r < 0 || !nbd_aio_is_ready(h)) {
		goto err_lib;
	}
	size = nbd_get_size(h);
	if (size < 0) {
		goto err_lib;
	}
	if (s->h == NULL && s->size != UINT64_MAX && (uint64_t)size != s->size) {
		nbd_close(h);
		return error_set(errp, EIO, "NBD export '%s' changed size on reconnect",
				 bs->filename);
	}
	if (!bs->read_only && nbd_is_read_only(h) == 1) {
		nbd_close(h);
		return error_set(errp, EACCES, "NBD export '%s' is read-only", bs->filename);
	}
	s->size = (uint64_t)size;
	s->can_flush = nbd_can_flush(h) == 1;
	s->can_trim = nbd_can_trim(h) == 1;
	s->can_zero = nbd_can_zero(h) == 1;
	s->can_status = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	s->h = h;
	return 0;

err_lib:
	r = nbd_get_errno();
	r = error_set(errp, r ? r : EIO, "could not connect to NBD server '%s': %s", bs->filename,
		      nbd_get_error() ? nbd_get_error() : "connection failed");
	nbd_close(h);
	return r;
}

/* A live handle, reconnecting if allowed; NULL with -EIO if there is none. */
static int ensure_connected(struct block_node *bs, struct nbd_state *s)
{
	uint64_t deadline;
	struct error *err = NULL;

	if (s->h && !nbd_aio_is_dead(s->h) && !nbd_aio_is_closed(s->h)) {
		return 0;
	}
	disconnect(s);
	if (!s->reconnect_ms) {
		return -EIO;
	}
	deadline = mono_ms() + s->reconnect_ms;
	do {
		if (nbd_drv_connect(bs, s, &err) == 0) {
			return 0;
		}
		error_free(err);
		err = NULL;
		if (mono_ms() < deadline) {
			struct timespec ts = {0, 100 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
	} while (mono_ms() < deadline);
	return -EIO;
}

struct cookies {
	int64_t c[NBD_MAX_COOKIES];
	bool done[NBD_MAX_COOKIES];
	unsigned n;
	int err;
};

static bool cookies_done(struct nbd_handle *h, void *arg)
{
	struct cookies *ck = arg;
	bool all = true;

	for (unsigned i = 0; i < ck->n; i++) {
		int r;

		if (ck->done[i]) {
			continue;
		}
		r = nbd_aio_command_completed(h, (uint64_t)ck->c[i]);
		if (r == 0) {
			all = false;
			continue;
		}
		ck->done[i] = true;
		if (r < 0 && !ck->err) {
			ck->err = nbd_get_errno() ? nbd_get_errno() : EIO;
		}
	}
	return all;
}

enum nbd_cmd {
	NBD_CMD_READ_,
	NBD_CMD_WRITE_,
	NBD_CMD_FLUSH_,
	NBD_CMD_TRIM_,
	NBD_CMD_ZERO_,
};

/* Issue one logical request as up to NBD_MAX_COOKIES commands and wait for all. */
static int issue(struct nbd_state *s, enum nbd_cmd cmd, uint64_t offset, const struct iovec *iov,
		 unsigned cnt, uint64_t len, uint32_t flags)
{
	struct cookies ck = {0};
	uint64_t off = offset;
	unsigned i = 0;
	size_t in_iov = 0;
	int r;

	if (cmd == NBD_CMD_FLUSH_) {
		ck.c[ck.n++] = nbd_aio_flush(s->h, NBD_NULL_COMPLETION, 0);
	} else if (cmd == NBD_CMD_TRIM_ || cmd == NBD_CMD_ZERO_) {
		while (len > 0 && ck.n < NBD_MAX_COOKIES) {
			uint64_t n = MIN(len, (uint64_t)NBD_MAX_REQUEST);

			ck.c[ck.n++] =
				cmd == NBD_CMD_TRIM_
					? nbd_aio_trim(s->h, n, off, NBD_NULL_COMPLETION, 0)
					: nbd_aio_zero(s->h, n, off, NBD_NULL_COMPLETION, flags);
			if (ck.c[ck.n - 1] < 0) {
				break;
			}
			off += n;
			len -= n;
		}
	} else {
		while (i < cnt && ck.n < NBD_MAX_COOKIES) {
			size_t n = MIN(iov[i].iov_len - in_iov, (size_t)NBD_MAX_REQUEST);
			char *p = (char *)iov[i].iov_base + in_iov;

			if (n == 0) {
				i++;
				in_iov = 0;
				continue;
			}
			ck.c[ck.n++] =
				cmd == NBD_CMD_READ_
					? nbd_aio_pread(s->h, p, n, off, NBD_NULL_COMPLETION, 0)
					: nbd_aio_pwrite(s->h, p, n, off, NBD_NULL_COMPLETION, 0);
			if (ck.c[ck.n - 1] < 0) {
				break;
			}
			off += n;
			in_iov += n;
			len -= n;
		}
	}
	/* A command the library refused was never sent. */
	for (unsigned j = 0; j < ck.n; j++) {
		if (ck.c[j] < 0) {
			ck.done[j] = true;
			ck.err = nbd_get_errno() ? nbd_get_errno() : EIO;
		}
	}
	r = run_until(s->h, cookies_done, &ck, mono_ms() + s->timeout_ms);
	if (r < 0 || nbd_aio_is_dead(s->h) || nbd_aio_is_closed(s->h) ||
	    (ck.err && !nbd_aio_is_ready(s->h) && !nbd_aio_is_processing(s->h))) {
		/* Timed out or died: the connection's state is unknown; drop it. */
		disconnect(s);
		return -EIO;
	}
	if (ck.err) {
		return -ck.err;
	}
	if (len > 0 && cmd != NBD_CMD_FLUSH_) {
		/* More than NBD_MAX_COOKIES pieces: continue where we stopped. */
		struct iovec *tail;

		if (cmd == NBD_CMD_TRIM_ || cmd == NBD_CMD_ZERO_) {
			return issue(s, cmd, off, NULL, 0, len, flags);
		}
		tail = malloc((cnt - i) * sizeof(*tail));
		if (!tail) {
			return -ENOMEM;
		}
		memcpy(tail, iov + i, (cnt - i) * sizeof(*tail));
		tail[0].iov_base = (char *)tail[0].iov_base + in_iov;
		tail[0].iov_len -= in_iov;
		r = issue(s, cmd, off, tail, cnt - i, len, flags);
		free(tail);
		return r;
	}
	return 0;
}

/* Run one request with reconnect-and-retry-once semantics. */
static int request(struct block_node *bs, enum nbd_cmd cmd, uint64_t offset,
		   const struct iovec *iov, unsigned cnt, uint64_t len, uint32_t flags)
{
	struct nbd_state *s = state(bs);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ensure_connected(bs, s);
	if (r == 0) {
		r = issue(s, cmd, offset, iov, cnt, len, flags);
		if (r == -EIO && !s->h && s->reconnect_ms && ensure_connected(bs, s) == 0) {
			r = issue(s, cmd, offset, iov, cnt, len, flags);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int dup_opt(json_t *v, const char *key, char **ret, struct error **errp)
{
	if (!json_is_string(v)) {
		return error_set(errp, EINVAL, "NBD option '%s' must be a string", key);
	}
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}

static int parse_seconds(json_t *v, const char *key, uint64_t *ret_ms, struct error **errp)
{
	double d;

	if (!json_is_number(v)) {
		return error_set(errp, EINVAL, "NBD option '%s' must be a number of seconds", key);
	}
	d = json_number_value(v);
	if (!(d >= 0 && d <= NBD_MAX_TIMEOUT_S)) {
		return error_set(errp, EINVAL, "NBD option '%s' must be between 0 and %d seconds",
				 key, NBD_MAX_TIMEOUT_S);
	}
	*ret_ms = (uint64_t)(d * 1000);
	return 0;
}

static int parse_server(struct nbd_state *s, json_t *server, struct error **errp)
{
	const char *type, *key;
	json_t *v;
	int r = 0;

	if (!json_is_object(server) || !json_is_string(json_object_get(server, "type"))) {
		return error_set(errp, EINVAL, "NBD option 'server' needs a 'type'");
	}
	type = json_string_value(json_object_get(server, "type"));
	json_object_foreach (server, key, v) {
		if (strcmp(key, "type") == 0) {
			continue;
		} else if (strcmp(type, "unix") == 0 && strcmp(key, "path") == 0) {
			r = dup_opt(v, key, &s->unix_path, errp);
		} else if (strcmp(type, "inet") == 0 && strcmp(key, "host") == 0) {
			r = dup_opt(v, key, &s->host, errp);
		} else if (strcmp(type, "inet") == 0 && strcmp(key, "port") == 0) {
			if (json_is_integer(v)) {
				char buf[24];

				snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
					 json_integer_value(v));
				s->port = strdup(buf);
			} else {
				r = dup_opt(v, key, &s->port, errp);
			}
		} else {
			return error_set(errp, EINVAL,
					 "invalid NBD server option '%s' for type '%s'", key, type);
		}
		if (r < 0) {
			return r;
		}
	}
	if (strcmp(type, "unix") == 0 ? !s->unix_path : strcmp(type, "inet") != 0 || !s->host) {
		return error_set(
			errp, EINVAL,
			"NBD server must be {type: unix, path} or {type: inet, host, port}");
	}
	if (!s->unix_path && !s->port) {
		s->port = strdup("10809");
	}
	return 0;
}

static void state_free(struct nbd_state *s)
{
	disconnect(s);
	pthread_mutex_destroy(&s->lock);
	free(s->uri);
	free(s->unix_path);
	free(s->host);
	free(s->port);
	free(s->export_name);
	free(s->tls_certs);
	free(s->tls_psk);
	free(s->tls_user);
	free(s);
}

static int nbd_drv_open(struct block_node *bs, const char *filename, json_t *opts,
			struct error **errp)
{
	struct nbd_state *s;
	const char *key;
	json_t *v, *server = NULL;
	int r = 0;

	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&s->lock, NULL);
	s->timeout_ms = NBD_DEFAULT_TIMEOUT_S * 1000;
	s->size = UINT64_MAX;
	s->tls = LIBNBD_TLS_DISABLE;
	json_object_foreach (opts, key, v) {
		if (strcmp(key, "server") == 0) {
			server = v;
		} else if (strcmp(key, "export") == 0) {
			r = dup_opt(v, key, &s->export_name, errp);
		} else if (strcmp(key, "timeout") == 0) {
			r = parse_seconds(v, key, &s->timeout_ms, errp);
			if (r == 0 && s->timeout_ms == 0) {
				r = error_set(errp, EINVAL, "NBD option 'timeout' must be > 0");
			}
		} else if (strcmp(key, "reconnect-delay") == 0) {
			r = parse_seconds(v, key, &s->reconnect_ms, errp);
		} else if (strcmp(key, "tls-certificates") == 0) {
			r = dup_opt(v, key, &s->tls_certs, errp);
		} else if (strcmp(key, "tls-psk-file") == 0) {
			r = dup_opt(v, key, &s->tls_psk, errp);
		} else if (strcmp(key, "tls-username") == 0) {
			r = dup_opt(v, key, &s->tls_user, errp);
		} else if (strcmp(key, "tls") == 0 && json_is_string(v)) {
			const char *t = json_string_value(v);

			if (strcmp(t, "off") == 0) {
				s->tls = LIBNBD_TLS_DISABLE;
			} else if (strcmp(t, "allow") == 0) {
				s->tls = LIBNBD_TLS_ALLOW;
			} else if (strcmp(t, "require") == 0) {
				s->tls = LIBNBD_TLS_REQUIRE;
			} else {
				r = error_set(errp, EINVAL,
					      "NBD option 'tls' must be off, allow or "
					      "require");
			}
		} else {
			r = error_set(errp, EINVAL, "invalid option '%s' for NBD", key);
		}
		if (r < 0) {
			goto err_free;
		}
	}
	if (server) {
		r = parse_server(s, server, errp);
		if (r < 0) {
			goto err_free;
		}
		free(bs->filename);
		if (s->unix_path) {
			r = asprintf(&bs->filename, "nbd+unix:///%s?socket=%s",
				     s->export_name ? s->export_name : "", s->unix_path);
		} else {
			r = asprintf(&bs->filename, "nbd://%s:%s/%s", s->host, s->port,
				     s->export_name ? s->export_name : "");
		}
		if (r < 0) {
			bs->filename = NULL;
			r = error_set(errp, ENOMEM, "out of memory");
			goto err_free;
		}
	} else if (filename && *filename) {
		if (s->export_name) {
			r = error_set(errp, EINVAL, "NBD 'export' is part of the URI '%s'",
				      filename);
			goto err_free;
		}
		s->uri = strdup(filename);
		if (!s->uri) {
			r = error_set(errp, ENOMEM, "out of memory");
			goto err_free;
		}
	} else {
		r = error_set(errp, EINVAL, "NBD needs a URI or a 'server'");
		goto err_free;
	}
	r = nbd_drv_connect(bs, s, errp);
	if (r < 0) {
		goto err_free;
	}
	bs->opaque = s;
	return 0;

err_free:
	state_free(s);
	return r;
}

static void nbd_drv_close_node(struct block_node *bs)
{
	struct nbd_state *s = state(bs);

	if (!s) {
		return;
	}
	if (s->h && !bs->read_only && s->can_flush) {
		issue(s, NBD_CMD_FLUSH_, 0, NULL, 0, 0, 0);
	}
	if (s->h && nbd_aio_is_ready(s->h) && nbd_aio_disconnect(s->h, 0) == 0) {
		/*
		 * The server closes the connection; nbd_shutdown() would wait for
		 * that without a limit, and a server that never does held the
		 * thread closing the node (a VM's teardown) for good.
		 */
		run_until(s->h, closed, NULL, mono_ms() + s->timeout_ms);
	}
	state_free(s);
	bs->opaque = NULL;
}

static uint64_t nbd_drv_get_length(struct block_node *bs)
{
	return state(bs)->size;
}

static int nbd_drv_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			  unsigned cnt, uint64_t len)
{
	struct nbd_state *s = state(bs);

	if (offset >= s->size) {
		/* A growable node past the export's end reads zeroes. */
		for (unsigned i = 0; i < cnt; i++) {
			memset(iov[i].iov_base, 0, iov[i].iov_len);
		}
		return 0;
	}
	if (len > s->size - offset) {
		return -EIO;
	}
	return request(bs, NBD_CMD_READ_, offset, iov, cnt, len, 0);
}

static int nbd_drv_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			   unsigned cnt, uint64_t len)
{
	if (!range_within(offset, len, state(bs)->size)) {
		return -ENOSPC;
	}
	return request(bs, NBD_CMD_WRITE_, offset, iov, cnt, len, 0);
}

static int nbd_drv_flush(struct block_node *bs)
{
	if (!state(bs)->can_flush) {
		return 0;
	}
	return request(bs, NBD_CMD_FLUSH_, 0, NULL, 0, 0, 0);
}

static int nbd_drv_discard(struct block_node *bs, uint64_t offset, uint64_t len)
{
	if (!state(bs)->can_trim || !range_within(offset, len, state(bs)->size)) {
		return -ENOTSUP;
	}
	return request(bs, NBD_CMD_TRIM_, offset, NULL, 0, len, 0);
}

static int nbd_drv_write_zeroes(struct block_node *bs, uint64_t offset, uint64_t len,
				unsigned flags)
{
	if (!state(bs)->can_zero || !range_within(offset, len, state(bs)->size)) {
		return -ENOTSUP;
	}
	return request(bs, NBD_CMD_ZERO_, offset, NULL, 0, len,
		       (flags & BLOCK_ZERO_MAY_UNMAP) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE);
}

static int nbd_drv_truncate(struct block_node *bs, uint64_t len, struct error **errp)
{
	if (len == state(bs)->size) {
		return 0;
	}
	return error_set(errp, ENOTSUP, "cannot resize NBD export '%s'", bs->filename);
}

struct extent_result {
	uint64_t pnum;
	unsigned status;
	bool got;
};

static int on_extent(void *user_data, const char *metacontext, uint64_t offset, uint32_t *entries,
		     size_t nr_entries, int *error)
{
	struct extent_result *res = user_data;

	if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || nr_entries < 2 ||
	    res->got) {
		return 0;
	}
	res->pnum = entries[0];
	res->status = BLOCK_STATUS_ALLOCATED;
	if (!(entries[1] & LIBNBD_STATE_HOLE)) {
		res->status |= BLOCK_STATUS_DATA;
	}
	if (entries[1] & LIBNBD_STATE_ZERO) {
		res->status |= BLOCK_STATUS_ZERO;
	}
	if (!(res->status & (BLOCK_STATUS_DATA | BLOCK_STATUS_ZERO))) {
		res->status |= BLOCK_STATUS_DATA; /* a hole of unknown content */
	}
	res->got = true;
	return 0;
}

static int nbd_drv_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
				uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct nbd_state *s = state(bs);
	struct extent_result res = {0};
	struct cookies ck = {0};
	int r;

	*ret_file_offset = offset;
	*ret_pnum = len;
	*ret_status = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
	if (offset >= s->size) {
		*ret_status = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
		return 0;
	}
	len = MIN(len, s->size - offset);
	*ret_pnum = len;
	if (!s->can_status) {
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	r = ensure_connected(bs, s);
	if (r == 0) {
		nbd_extent_callback cb = {.callback = on_extent, .user_data = &res};

		ck.c[0] = nbd_aio_block_status(s->h, MIN(len, (uint64_t)UINT32_MAX & ~4095u),
					       offset, cb, NBD_NULL_COMPLETION, 0);
		ck.n = 1;
		if (ck.c[0] < 0) {
			r = -EIO;
		} else {
			r = run_until(s->h, cookies_done, &ck, mono_ms() + s->timeout_ms);
			if (r < 0) {
				disconnect(s);
				r = -EIO;
			} else if (ck.err) {
				r = -ck.err;
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		return r;
	}
	if (res.got && res.pnum > 0) {
		*ret_pnum = MIN(res.pnum, len);
		*ret_status = res.status;
	}
	return 0;
}

const struct block_driver nbd_driver = {
	.name = "nbd",
	.is_protocol = true,
	.open = nbd_drv_open,
	.close = nbd_drv_close_node,
	.get_length = nbd_drv_get_length,
	.preadv = nbd_drv_preadv,
	.pwritev = nbd_drv_pwritev,
	.flush = nbd_drv_flush,
	.discard = nbd_drv_discard,
	.write_zeroes = nbd_drv_write_zeroes,
	.truncate = nbd_drv_truncate,
	.block_status = nbd_drv_block_status,
};
