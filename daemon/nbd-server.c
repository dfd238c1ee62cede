/*
 * A VM's NBD server (nbd-server.h, docs/nbd-server.md). The protocol is
 * the NBD project's doc/proto.md: the fixed newstyle handshake (options
 * EXPORT_NAME, LIST, INFO, GO, ABORT; the others answered "unsupported")
 * and simple replies to READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE and
 * DISC. No structured replies, so no BLOCK_STATUS: a client then reads the
 * whole export as data, which is correct for both copies and mirrors.
 *
 * Lifetimes: an export holds a reference on its node, and is counted once
 * while listed plus once per connection serving it; whoever drops the last
 * count releases the node and reports the export deleted. A connection
 * thread is detached and counted in s->nconns; the listener waits for that
 * count to reach zero before it returns, so nbd_server_free's join means no
 * thread of the server is left.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "common/bytes.h"
#include "common/cleanup.h"
#include "common/list.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/pathpol.h"
#include "common/thread.h"
#include "common/util.h"
#include "daemon/nbd-server.h"
#include "daemon/sandbox.h"
#include "vmmd/block.h"

/* The protocol's numbers (doc/proto.md). */
#define NBD_MAGIC 0x4e42444d41474943ull	     /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC 0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x3e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)

enum {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT = 2,
	NBD_OPT_LIST = 3,
	NBD_OPT_STARTTLS = 5,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO = 7,
};

#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_ERR_UNSUP ((1u << 31) | 1)
#define NBD_REP_ERR_POLICY ((1u << 31) | 2)
#define NBD_REP_ERR_INVALID ((1u << 31) | 3)
#define NBD_REP_ERR_UNKNOWN ((1u << 31) | 6)
#define NBD_REP_ERR_SHUTDOWN ((1u << 31) | 7)

enum {
	NBD_INFO_EXPORT = 0,
	NBD_INFO_NAME = 1,
	NBD_INFO_DESCRIPTION = 2,
	NBD_INFO_BLOCK_SIZE = 3,
};

#define NBD_TF_HAS_FLAGS (1u << 0)
#define NBD_TF_READ_ONLY (1u << 1)
#define NBD_TF_SEND_FLUSH (1u << 2)
#define NBD_TF_SEND_FUA (1u << 3)
#define NBD_TF_SEND_TRIM (1u << 5)
#define NBD_TF_SEND_WRITE_ZEROES (1u << 6)
#define NBD_TF_CAN_MULTI_CONN (1u << 8)
#define NBD_TF_SEND_CACHE (1u << 10)

enum {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_CACHE = 5,
	NBD_CMD_WRITE_ZEROES = 6,
};

#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)

/* The errors the protocol knows (Linux's numbers, whatever the host's). */
enum {
	NBD_EPERM = 1,
	NBD_EIO = 5,
	NBD_ENOMEM = 12,
	NBD_EINVAL = 22,
	NBD_ENOSPC = 28,
	NBD_EOVERFLOW = 75,
	NBD_ENOTSUP = 95,
	NBD_ESHUTDOWN = 108,
};

/* An option's data beyond this drops the client (GO: a name and 2-byte requests). */
#define NBD_MAX_OPTION (NBD_MAX_STRING + 1024)
/* The preferred block size announced (QEMU's). */
#define NBD_PREFERRED_BLOCK 4096u

struct nbd_export {
	struct list_head link; /* s->exports, until freed */
	char *id, *name, *description, *node_name;
	struct block_node *bs;
	uint64_t size;
	bool writable, writethrough;
	bool shutting_down; /* removed: no new client, listed until freed */
	bool list_dropped;  /* the list's count was dropped */
	unsigned refs;	    /* 1 while listed + 1 per connection */
};

struct nbd_conn {
	struct list_head link; /* s->conns */
	struct nbd_server *s;
	int fd;
	struct nbd_export *exp;
	bool no_zeroes;
	uint8_t *buf;
	size_t buf_size;
};

struct nbd_server {
	unsigned users; /* nbd_server_get; the memory goes with the last */
	pthread_mutex_t lock;
	pthread_cond_t conns_gone;
	struct list_head exports, conns;
	unsigned nconns;
	bool stopping;
	int listen_fd, wake_fd;
	char *unix_path; /* removed at the end */
	pthread_t listener;
	struct nbd_server_config cfg;
	char *vm;
};

/* ---- wire helpers ---- */

static void wake(struct nbd_server *s)
{
	uint64_t one = 1;

	if (write(s->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: a wake-up is pending anyway */
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read exactly @len bytes before @deadline (ms, 0: none): 0, or -errno (EOF: -ECONNRESET). */
static int read_full(int fd, void *buf, size_t len, uint64_t deadline)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n;

		if (deadline) {
			uint64_t now = now_ms();
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			int r;

			if (now >= deadline) {
				return -ETIMEDOUT;
			}
			r = poll(&pfd, 1, (int)MIN(deadline - now, (uint64_t)INT32_MAX));
			if (r < 0 && errno != EINTR) {
				return -errno;
			}
			if (r <= 0) {
				continue;
			}
		}
		n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -errno;
		}
		if (n == 0) {
			return -ECONNRESET;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_iov(int fd, struct iovec *iov, int cnt)
{
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};

	while (msg.msg_iovlen) {
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -errno;
		}
		while (msg.msg_iovlen && (size_t)n >= msg.msg_iov->iov_len) {
			n -= (ssize_t)msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen) {
			msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
			msg.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	return write_iov(fd, &iov, 1);
}

/* One option reply: its header and @len bytes of @data. */
static int opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
		     uint32_t len)
{
	uint8_t h[20];
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)data, len}};

	put_be64(h, NBD_REP_MAGIC);
	put_be32(h + 8, opt);
	put_be32(h + 12, type);
	put_be32(h + 16, len);
	return write_iov(c->fd, iov, len ? 2 : 1);
}

static int opt_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	return opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

/* ---- exports ---- */

static void export_free(struct nbd_server *s, struct nbd_export *e)
{
	block_unref(e->bs);
	if (s->cfg.deleted) {
		s->cfg.deleted(s->cfg.opaque, s->vm, e->id);
	}
	free(e->id);
	free(e->name);
	free(e->description);
	free(e->node_name);
	free(e);
}

/* Drop one count of @e; the last one frees it (a server thread). */
static void export_put(struct nbd_server *s, struct nbd_export *e)
{
	bool last;

	pthread_mutex_lock(&s->lock);
	last = --e->refs == 0;
	if (last) {
		list_del(&e->link);
	}
	pthread_mutex_unlock(&s->lock);
	if (last) {
		export_free(s, e);
	}
}

/*
 * The export named @name, counted for @c, or NULL if none; with @attach
 * it becomes @c's (under the lock, so a hard removal finds the client).
 */
static struct nbd_export *export_get(struct nbd_conn *c, const char *name, bool attach)
{
	struct nbd_server *s = c->s;
	struct nbd_export *found = NULL;
	struct list_head *p;

	pthread_mutex_lock(&s->lock);
	list_for_each (p, &s->exports) {
		struct nbd_export *e = list_entry(p, struct nbd_export, link);

		if (!e->shutting_down && strcmp(e->name, name) == 0) {
			found = e;
			found->refs++;
			break;
		}
	}
	if (attach) {
		c->exp = found;
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

/*
 * QEMU's flags but SEND_FAST_ZERO. Every client of an export is served
 * from the same node, so a flush on one connection covers writes done on
 * another: multiple connections are consistent.
 */
static uint16_t export_flags(const struct nbd_export *e)
{
	uint16_t f = NBD_TF_HAS_FLAGS | NBD_TF_SEND_FLUSH | NBD_TF_SEND_FUA | NBD_TF_SEND_CACHE |
		     NBD_TF_CAN_MULTI_CONN;

	return f | (e->writable ? NBD_TF_SEND_TRIM | NBD_TF_SEND_WRITE_ZEROES : NBD_TF_READ_ONLY);
}

/* ---- the handshake ---- */

/* NBD_OPT_LIST: one NBD_REP_SERVER per export, then NBD_REP_ACK. */
static int opt_list(struct nbd_conn *c)
{
	struct nbd_server *s = c->s;
	struct list_head *p;
	json_t *names = json_array();
	size_t i;
	int r = 0;

	if (!names) {
		return -ENOMEM;
	}
	/* copy the names: no socket write under the lock */
	pthread_mutex_lock(&s->lock);
	list_for_each (p, &s->exports) {
		struct nbd_export *e = list_entry(p, struct nbd_export, link);

		if (!e->shutting_down) {
			json_array_append_new(
				names,
				json_pack("[ss]", e->name, e->description ? e->description : ""));
		}
	}
	pthread_mutex_unlock(&s->lock);
	for (i = 0; r == 0 && i < json_array_size(names); i++) {
		const char *name = json_string_value(json_array_get(json_array_get(names, i), 0));
		const char *desc = json_string_value(json_array_get(json_array_get(names, i), 1));
		size_t nlen = strlen(name), dlen = strlen(desc);
		_cleanup_free_ uint8_t *d = malloc(4 + nlen + dlen);

		if (!d) {
			r = -ENOMEM;
			break;
		}
		put_be32(d, (uint32_t)nlen);
		memcpy(d + 4, name, nlen);
		memcpy(d + 4 + nlen, desc, dlen);
		r = opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, d, (uint32_t)(4 + nlen + dlen));
	}
	json_decref(names);
	return r < 0 ? r : opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static int send_info(struct nbd_conn *c, uint32_t opt, uint16_t type, const void *data, size_t len)
{
	uint8_t d[2 + NBD_MAX_STRING];

	put_be16(d, type);
	memcpy(d + 2, data, len);
	return opt_reply(c, opt, NBD_REP_INFO, d, (uint32_t)(2 + len));
}

/*
 * NBD_OPT_INFO and NBD_OPT_GO: u32 name length, the name, u16 count of
 * information requests, u16 each. 1 when GO attached the client.
 */
static int opt_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	char name[NBD_MAX_STRING + 1];
	uint32_t nlen;
	uint16_t nreq, i;
	bool want_name = false;
	struct nbd_export *e;
	uint8_t d[12];
	int r;

	if (len < 6 || (nlen = be32(data)) > len - 6 || nlen > NBD_MAX_STRING) {
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed request");
	}
	nreq = be16(data + 4 + nlen);
	if (len != 6 + nlen + 2u * nreq) {
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed request");
	}
	memcpy(name, data + 4, nlen);
	name[nlen] = 0;
	for (i = 0; i < nreq; i++) {
		uint16_t t = be16(data + 6 + nlen + 2u * i);

		want_name |= t == NBD_INFO_NAME;
	}
	if (strlen(name) != nlen) {
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "export name holds a NUL byte");
	}
	e = export_get(c, name, opt == NBD_OPT_GO);
	if (!e) {
		char msg[NBD_MAX_STRING + 64];

		snprintf(msg, sizeof(msg), "export '%s' not present", name);
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
	}
	/* QEMU's order: name if asked, description if set, sizes, the export */
	r = want_name ? send_info(c, opt, NBD_INFO_NAME, e->name, strlen(e->name)) : 0;
	if (r == 0 && e->description) {
		r = send_info(c, opt, NBD_INFO_DESCRIPTION, e->description, strlen(e->description));
	}
	if (r == 0) {
		/* any size works (the block layer pads); these are what is best */
		put_be32(d, 1);
		put_be32(d + 4, NBD_PREFERRED_BLOCK);
		put_be32(d + 8, NBD_MAX_REQUEST);
		r = send_info(c, opt, NBD_INFO_BLOCK_SIZE, d, 12);
	}
	if (r == 0) {
		put_be64(d, e->size);
		put_be16(d + 8, export_flags(e));
		r = send_info(c, opt, NBD_INFO_EXPORT, d, 10);
	}
	if (r == 0) {
		r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
	}
	if (opt == NBD_OPT_INFO) {
		export_put(c->s, e);
	}
	return r < 0 ? r : opt == NBD_OPT_GO;
}

/* NBD_OPT_EXPORT_NAME: the old way in, no error reply possible. */
static int opt_export_name(struct nbd_conn *c, const uint8_t *data, uint32_t len)
{
	char name[NBD_MAX_STRING + 1];
	uint8_t d[10 + 124] = {0};
	int r;

	if (len > NBD_MAX_STRING) {
		return -EINVAL;
	}
	memcpy(name, data, len);
	name[len] = 0;
	if (!export_get(c, name, true)) {
		return -ENOENT;
	}
	put_be64(d, c->exp->size);
	put_be16(d + 8, export_flags(c->exp));
	r = write_full(c->fd, d, c->no_zeroes ? 10 : sizeof(d));
	return r < 0 ? r : 1;
}

/* Negotiate until the client is attached to an export (0) or must go (-errno). */
static int negotiate(struct nbd_conn *c)
{
	uint64_t deadline = now_ms() + NBD_HANDSHAKE_SECONDS * 1000ull;
	uint8_t hello[18], h[16];
	_cleanup_free_ uint8_t *data = NULL;
	uint32_t cflags;
	int r;

	put_be64(hello, NBD_MAGIC);
	put_be64(hello + 8, NBD_OPTS_MAGIC);
	put_be16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	r = write_full(c->fd, hello, sizeof(hello));
	if (r == 0) {
		r = read_full(c->fd, h, 4, deadline);
	}
	if (r < 0) {
		return r;
	}
	cflags = be32(h);
	if (cflags & ~(uint32_t)(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)) {
		return -EPROTO; /* flags we did not offer: the protocol says drop */
	}
	c->no_zeroes = cflags & NBD_FLAG_NO_ZEROES;
	data = malloc(NBD_MAX_OPTION);
	if (!data) {
		return -ENOMEM;
	}
	for (;;) {
		uint32_t opt, len;

		r = read_full(c->fd, h, 16, deadline);
		if (r < 0) {
			return r;
		}
		opt = be32(h + 8);
		len = be32(h + 12);
		if (be64(h) != NBD_OPTS_MAGIC || len > NBD_MAX_OPTION) {
			return -EPROTO;
		}
		r = read_full(c->fd, data, len, deadline);
		if (r < 0) {
			return r;
		}
		switch (opt) {
		case NBD_OPT_EXPORT_NAME:
			r = opt_export_name(c, data, len);
			break;
		case NBD_OPT_ABORT:
			opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			return -ECONNABORTED;
		case NBD_OPT_LIST:
			r = len ? opt_error(c, opt, NBD_REP_ERR_INVALID, "LIST takes no data")
				: opt_list(c);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			r = opt_info_go(c, opt, data, len);
			break;
		case NBD_OPT_STARTTLS:
			r = opt_error(c, opt, NBD_REP_ERR_POLICY, "TLS not configured");
			break;
		default: {
			/* structured replies, meta contexts, extended headers... */
			static const char *const names[] = {
				[8] = "structured reply",
				[9] = "list meta context",
				[10] = "set meta context",
				[11] = "extended headers",
			};
			char msg[64];

			snprintf(msg, sizeof(msg), "Unsupported option %" PRIu32 " (%s)", opt,
				 opt < ARRAY_SIZE(names) && names[opt] ? names[opt] : "<unknown>");
			r = opt_error(c, opt, NBD_REP_ERR_UNSUP, msg);
			break;
		}
		}
		if (r != 0) {
			return r < 0 ? r : 0;
		}
	}
}

/* ---- transmission ---- */

static uint32_t nbd_errno(int r)
{
	switch (-r) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case EIO:
		return NBD_EIO;
	case ENOMEM:
		return NBD_ENOMEM;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EINVAL;
	}
}

static int simple_reply(struct nbd_conn *c, uint64_t handle, int r, const void *data, size_t len)
{
	uint8_t h[16];
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)data, r == 0 ? len : 0}};

	put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(h + 4, nbd_errno(r));
	put_be64(h + 8, handle);
	return write_iov(c->fd, iov, iov[1].iov_len ? 2 : 1);
}

static int grow_buf(struct nbd_conn *c, size_t len)
{
	void *p;

	if (len <= c->buf_size) {
		return 0;
	}
	if (posix_memalign(&p, 4096, len)) {
		return -ENOMEM;
	}
	free(c->buf);
	c->buf = p;
	c->buf_size = len;
	return 0;
}

/* Serve requests until the client leaves (0) or the connection fails. */
static int serve(struct nbd_conn *c)
{
	struct nbd_export *e = c->exp;
	uint8_t h[28];

	for (;;) {
		uint16_t flags, type;
		uint64_t handle, off;
		uint32_t len;
		int r = 0;

		r = read_full(c->fd, h, sizeof(h), 0);
		if (r < 0) {
			return r == -ECONNRESET ? 0 : r;
		}
		if (be32(h) != NBD_REQUEST_MAGIC) {
			return -EPROTO;
		}
		flags = be16(h + 4);
		type = be16(h + 6);
		handle = be64(h + 8);
		off = be64(h + 16);
		len = be32(h + 24);
		if (type == NBD_CMD_WRITE) {
			/* the data follows whatever the answer: read it or drop the client */
			if (len > NBD_MAX_REQUEST) {
				return -EPROTO;
			}
			r = grow_buf(c, len);
			if (r == 0) {
				r = read_full(c->fd, c->buf, len, 0);
			}
			if (r < 0) {
				return r;
			}
		}
		if (type == NBD_CMD_DISC) {
			return 0;
		}
		if (flags & ~(uint16_t)(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE) ||
		    (flags & NBD_CMD_FLAG_NO_HOLE && type != NBD_CMD_WRITE_ZEROES)) {
			r = -EINVAL;
		} else if (type == NBD_CMD_FLUSH) {
			r = block_flush(e->bs);
		} else if (type > NBD_CMD_WRITE_ZEROES) {
			r = -EINVAL;
		} else if (off > e->size || len > e->size - off) {
			/* QEMU's answers: no space for writes, invalid otherwise */
			r = type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES ? -ENOSPC
										  : -EINVAL;
		} else if (!e->writable && (type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
					    type == NBD_CMD_WRITE_ZEROES)) {
			r = -EPERM;
		} else if (type == NBD_CMD_READ) {
			r = len > NBD_MAX_REQUEST ? -EINVAL : grow_buf(c, len);
			if (r == 0) {
				r = block_pread(e->bs, off, c->buf, len);
			}
		} else if (type == NBD_CMD_CACHE) {
			/* read ahead: the data is now in the host's cache (or nowhere to gain) */
			uint64_t done;

			r = grow_buf(c, MIN(len, NBD_MAX_REQUEST));
			for (done = 0; r == 0 && done < len; done += NBD_MAX_REQUEST) {
				r = block_pread(e->bs, off + done, c->buf,
						MIN(len - done, (uint64_t)NBD_MAX_REQUEST));
			}
		} else if (type == NBD_CMD_WRITE) {
			r = block_pwrite(e->bs, off, c->buf, len);
		} else if (type == NBD_CMD_TRIM) {
			r = block_discard(e->bs, off, len);
		} else if (type == NBD_CMD_WRITE_ZEROES) {
			r = block_write_zeroes(e->bs, off, len,
					       flags & NBD_CMD_FLAG_NO_HOLE ? 0
									    : BLOCK_ZERO_MAY_UNMAP);
		}
		if (r == 0 && type != NBD_CMD_READ && type != NBD_CMD_CACHE &&
		    type != NBD_CMD_FLUSH && (flags & NBD_CMD_FLAG_FUA || e->writethrough)) {
			r = block_flush(e->bs);
		}
		r = simple_reply(c, handle, r, c->buf, type == NBD_CMD_READ ? len : 0);
		if (r < 0) {
			return r;
		}
	}
}

static void *conn_main(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_server *s = c->s;
	int r;

	sandbox_work_for(s->cfg.violation_flag);
	r = negotiate(c);
	if (r == 0) {
		r = serve(c);
	}
	if (r < 0 && r != -ECONNABORTED && r != -ECONNRESET && r != -EPIPE) {
		log_full(LOG_INFO, s->vm, NULL, "NBD client dropped%s%s: %s",
			 c->exp ? " from export " : "", c->exp ? c->exp->name : "",
			 r == -ETIMEDOUT ? "no handshake in time"
			 : r == -EPROTO	 ? "protocol violation"
					 : strerror(-r));
	}
	if (c->exp) {
		export_put(s, c->exp);
	}
	free(c->buf);
	pthread_mutex_lock(&s->lock);
	list_del(&c->link);
	/* under the lock: removals shut the listed clients' fds down */
	close(c->fd);
	if (s->nconns-- == s->cfg.max_connections) {
		wake(s); /* the listener accepts again */
	}
	if (s->nconns == 0) {
		pthread_cond_broadcast(&s->conns_gone);
	}
	pthread_mutex_unlock(&s->lock);
	free(c);
	return NULL;
}

/* ---- the listener ---- */

/* Drop the list's count of every export removed (all of them when stopping). */
static void drop_removed(struct nbd_server *s)
{
	struct list_head *p, *n;
	struct nbd_export *drop[64];
	unsigned cnt;

	do {
		cnt = 0;
		pthread_mutex_lock(&s->lock);
		list_for_each_safe (p, n, &s->exports) {
			struct nbd_export *e = list_entry(p, struct nbd_export, link);

			if ((e->shutting_down || s->stopping) && !e->list_dropped &&
			    cnt < ARRAY_SIZE(drop)) {
				e->shutting_down = e->list_dropped = true;
				drop[cnt++] = e;
			}
		}
		pthread_mutex_unlock(&s->lock);
		for (unsigned i = 0; i < cnt; i++) {
			export_put(s, drop[i]);
		}
	} while (cnt == ARRAY_SIZE(drop));
}

static void accept_one(struct nbd_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE) {
			usleep(100000); /* no fd left: do not spin on the pending one */
		}
		return;
	}
	nbd_server_serve_fd(s, fd);
}

void nbd_server_serve_fd(struct nbd_server *s, int fd)
{
	struct nbd_conn *c;
	pthread_attr_t attr;
	pthread_t t;
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on UNIX: fine */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &(struct timeval){.tv_sec = NBD_HANDSHAKE_SECONDS},
		   sizeof(struct timeval));
	c = calloc(1, sizeof(*c));
	pthread_mutex_lock(&s->lock);
	if (!c || s->stopping) {
		pthread_mutex_unlock(&s->lock);
		free(c);
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	list_add_tail(&c->link, &s->conns);
	s->nconns++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (thread_create(&t, &attr, conn_main, c) != 0) {
		list_del(&c->link);
		s->nconns--;
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&s->lock);
}

static void *listener_main(void *arg)
{
	struct nbd_server *s = arg;

	sandbox_work_for(s->cfg.violation_flag);
	for (;;) {
		struct pollfd pfd[2] = {{.fd = s->listen_fd}, {.fd = s->wake_fd, .events = POLLIN}};
		bool stopping;
		uint64_t v;

		/* at the limit, new clients wait in the backlog (as QEMU's) */
		pthread_mutex_lock(&s->lock);
		stopping = s->stopping;
		pfd[0].events = s->nconns < s->cfg.max_connections ? POLLIN : 0;
		pthread_mutex_unlock(&s->lock);
		if (stopping) {
			break;
		}
		if (poll(pfd, 2, -1) < 0) {
			continue;
		}
		if (pfd[1].revents && read(s->wake_fd, &v, sizeof(v)) < 0) {
			/* nothing pending */
		}
		if (pfd[0].revents) {
			accept_one(s);
		}
	}
	drop_removed(s);
	pthread_mutex_lock(&s->lock);
	while (s->nconns) {
		pthread_cond_wait(&s->conns_gone, &s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- the API ---- */

/*
 * The members of @data (QEMU's InetSocketAddress or UnixSocketAddress):
 * the strings @names[i] into @vals[i]; QEMU's members vmmd does not take
 * (@unsupported) and unknown ones are refused.
 */
static int addr_members(json_t *data, const char *const *names, const char **vals, unsigned n,
			const char *const *unsupported, struct error **errp)
{
	const char *key;
	json_t *v;

	json_object_foreach (data, key, v) {
		unsigned i;

		for (i = 0; i < n && strcmp(key, names[i]) != 0; i++) {
		}
		if (i < n && !json_is_string(v)) {
			return error_set(
				errp, EINVAL,
				"Invalid parameter type for 'addr.data.%s', expected: string", key);
		}
		if (i < n) {
			vals[i] = json_string_value(v);
			continue;
		}
		for (i = 0; unsupported[i] && strcmp(key, unsupported[i]) != 0; i++) {
		}
		return unsupported[i]
			       ? error_set(errp, ENOTSUP,
					   "vmmd's NBD server does not take 'addr.data.%s'", key)
			       : error_set(errp, EINVAL, "Parameter 'addr.data.%s' is unexpected",
					   key);
	}
	for (unsigned i = 0; i < n; i++) {
		if (!vals[i]) {
			return error_set(errp, EINVAL, "Parameter 'addr.data.%s' is missing",
					 names[i]);
		}
	}
	return 0;
}

static int listen_inet(json_t *data, struct error **errp)
{
	static const char *const names[] = {"host", "port"};
	static const char *const unsupported[] = {"numeric",	"to",	 "ipv4", "ipv6",
						  "keep-alive", "mptcp", NULL};
	const char *vals[2] = {NULL, NULL}, *host, *port;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL, *a;
	int fd = -1, e, err = 0;

	e = addr_members(data, names, vals, 2, unsupported, errp);
	if (e < 0) {
		return e;
	}
	host = vals[0];
	port = vals[1];
	e = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (e) {
		return error_set(errp, EINVAL, "address resolution failed for %s:%s: %s", host,
				 port, gai_strerror(e));
	}
	for (a = ai; a; a = a->ai_next) {
		int one = 1;

		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0) {
			break;
		}
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		return error_set_errno(errp, err ? err : EINVAL, "Failed to bind socket on %s:%s",
				       host, port);
	}
	return fd;
}

static int listen_unix(json_t *data, struct error **errp)
{
	static const char *const names[] = {"path"};
	static const char *const unsupported[] = {"abstract", "tight", NULL};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = NULL;
	int fd, r;

	r = addr_members(data, names, &path, 1, unsupported, errp);
	if (r < 0) {
		return r;
	}
	if (!path[0] || strlen(path) >= sizeof(sa.sun_path)) {
		return error_set(errp, EINVAL, "UNIX socket path '%s' is too long", path);
	}
	r = pathpol_check("NBD server socket", path, errp);
	if (r < 0) {
		return r;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return error_set_errno(errp, errno, "socket");
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		r = errno;
		close(fd);
		return error_set_errno(errp, r, "Failed to bind socket to %s", path);
	}
	return fd;
}

int nbd_server_listen(json_t *addr, struct error **errp)
{
	const char *type = json_string_value(json_object_get(addr, "type"));
	json_t *data = json_object_get(addr, "data");
	const char *key;
	json_t *v;

	if (!json_is_object(addr)) {
		return error_set(errp, EINVAL,
				 "Invalid parameter type for 'addr', expected: object");
	}
	json_object_foreach (addr, key, v) {
		if (strcmp(key, "type") != 0 && strcmp(key, "data") != 0) {
			return error_set(errp, EINVAL, "Parameter 'addr.%s' is unexpected", key);
		}
	}
	if (!type) {
		return error_set(errp, EINVAL, "Parameter 'addr.type' is missing");
	}
	if (strcmp(type, "inet") != 0 && strcmp(type, "unix") != 0 && strcmp(type, "vsock") != 0 &&
	    strcmp(type, "fd") != 0) {
		return error_set(errp, EINVAL, "Parameter 'type' does not accept value '%s'", type);
	}
	if (!json_is_object(data)) {
		return error_set(errp, EINVAL, "Parameter 'addr.data' is missing");
	}
	if (strcmp(type, "inet") == 0) {
		return listen_inet(data, errp);
	}
	if (strcmp(type, "unix") == 0) {
		return listen_unix(data, errp);
	}
	return error_set(errp, ENOTSUP,
			 "vmmd's NBD server listens on inet and unix addresses ('%s' is not "
			 "supported)",
			 type);
}

int nbd_server_start(int fd, const struct nbd_server_config *cfg, struct nbd_server **ret,
		     struct error **errp)
{
	struct nbd_server *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa;
	socklen_t salen = sizeof(sa);

	if (!s) {
		close(fd);
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->conns_gone, NULL);
	list_init(&s->exports);
	list_init(&s->conns);
	s->users = 1;
	s->listen_fd = fd;
	s->cfg = *cfg;
	if (!s->cfg.max_connections) {
		s->cfg.max_connections = NBD_SERVER_DEFAULT_CONNECTIONS;
	}
	s->vm = strdup(cfg->vm ? cfg->vm : "");
	if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0 && sa.sun_family == AF_UNIX &&
	    sa.sun_path[0]) {
		s->unix_path = strdup(sa.sun_path);
	}
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0 || !s->vm || thread_create(&s->listener, NULL, listener_main, s) != 0) {
		int e = s->wake_fd < 0 ? errno : ENOMEM;

		if (s->wake_fd >= 0) {
			close(s->wake_fd);
		}
		close(fd);
		free(s->unix_path);
		free(s->vm);
		free(s);
		return error_set_errno(errp, e, "cannot start the NBD server");
	}
	*ret = s;
	return 0;
}

void nbd_server_free(struct nbd_server *s)
{
	struct list_head *p;

	if (!s) {
		return;
	}
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	list_for_each (p, &s->conns) {
		shutdown(list_entry(p, struct nbd_conn, link)->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&s->lock);
	wake(s);
	pthread_join(s->listener, NULL);
	/* every export has gone: the listener dropped the list's counts, the clients theirs */
	close(s->listen_fd);
	close(s->wake_fd);
	if (s->unix_path) {
		unlink(s->unix_path);
	}
	nbd_server_put(s);
}

struct nbd_server *nbd_server_get(struct nbd_server *s)
{
	__atomic_fetch_add(&s->users, 1, __ATOMIC_RELAXED);
	return s;
}

void nbd_server_put(struct nbd_server *s)
{
	if (s && __atomic_sub_fetch(&s->users, 1, __ATOMIC_ACQ_REL) == 0) {
		pthread_cond_destroy(&s->conns_gone);
		pthread_mutex_destroy(&s->lock);
		free(s->unix_path);
		free(s->vm);
		free(s);
	}
}

static struct nbd_export *find_locked(struct nbd_server *s, const char *id, const char *name)
{
	struct list_head *p;

	list_for_each (p, &s->exports) {
		struct nbd_export *e = list_entry(p, struct nbd_export, link);

		if ((id && strcmp(e->id, id) == 0) ||
		    (name && !e->shutting_down && strcmp(e->name, name) == 0)) {
			return e;
		}
	}
	return NULL;
}

int nbd_server_add(struct nbd_server *s, const struct nbd_export_config *c, struct error **errp)
{
	struct nbd_export *e;
	int r = 0;

	e = calloc(1, sizeof(*e));
	if (!e || !(e->id = strdup(c->id)) || !(e->name = strdup(c->name)) ||
	    !(e->node_name = strdup(c->node_name)) ||
	    (c->description && !(e->description = strdup(c->description)))) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto fail;
	}
	e->size = block_length(c->bs);
	e->writable = c->writable;
	e->writethrough = c->writethrough;
	e->refs = 1;
	pthread_mutex_lock(&s->lock);
	if (find_locked(s, c->id, NULL)) {
		r = error_set(errp, EEXIST, "Block export id '%s' is already in use", c->id);
	} else if (find_locked(s, NULL, c->name)) {
		r = error_set(errp, EEXIST, "NBD server already has export named '%s'", c->name);
	} else {
		e->bs = block_ref(c->bs);
		list_add_tail(&e->link, &s->exports);
	}
	pthread_mutex_unlock(&s->lock);
	if (r == 0) {
		return 0;
	}
fail:
	if (e) {
		free(e->id);
		free(e->name);
		free(e->node_name);
		free(e->description);
		free(e);
	}
	return r;
}

int nbd_server_remove(struct nbd_server *s, const char *id, bool hard, struct error **errp)
{
	struct nbd_export *e;
	struct list_head *p;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, id, NULL);
	if (e && !e->shutting_down) {
		r = e->refs > 1; /* clients still attached */
	}
	if (!e) {
		r = error_set(errp, ENOENT, "Export '%s' is not found", id);
	} else if (e->shutting_down) {
		r = error_set(errp, EBUSY, "Export '%s' is already shutting down", id);
	} else if (!hard && r) {
		r = error_set(errp, EBUSY, "export '%s' still in use", id);
	} else {
		e->shutting_down = true;
		list_for_each (p, &s->conns) {
			struct nbd_conn *c = list_entry(p, struct nbd_conn, link);

			if (c->exp == e) {
				shutdown(c->fd, SHUT_RDWR);
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

void nbd_server_reap(struct nbd_server *s)
{
	drop_removed(s);
}

bool nbd_server_uses_node(struct nbd_server *s, struct block_node *bs)
{
	struct list_head *p;
	bool found = false;

	pthread_mutex_lock(&s->lock);
	list_for_each (p, &s->exports) {
		found |= list_entry(p, struct nbd_export, link)->bs == bs;
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

bool nbd_server_has_export(struct nbd_server *s, const char *id)
{
	bool found;

	pthread_mutex_lock(&s->lock);
	found = find_locked(s, id, NULL) != NULL;
	pthread_mutex_unlock(&s->lock);
	return found;
}

json_t *nbd_server_query(struct nbd_server *s)
{
	json_t *a = json_array();
	struct list_head *p;

	if (!a || !s) {
		return a;
	}
	pthread_mutex_lock(&s->lock);
	list_for_each (p, &s->exports) {
		struct nbd_export *e = list_entry(p, struct nbd_export, link);

		/* newest first, as QEMU's */
		json_array_insert_new(a, 0,
				      json_pack("{s:s, s:s, s:s, s:b}", "type", "nbd", "id", e->id,
						"node-name", e->node_name, "shutting-down",
						e->shutting_down));
	}
	pthread_mutex_unlock(&s->lock);
	return a;
}
