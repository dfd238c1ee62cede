/*
 * Live migration between two daemons (docs/migration.md).
 *
 * Source: a worker thread connects, sends the header, then RAM in passes
 * (pass 1: every non-zero page; then the pages KVM's dirty log and vmmd's
 * own bitmap report) at most max-bandwidth bytes per second, until the
 * pages left would go in downtime-limit at the measured bandwidth. Then it
 * pauses the VM (finish-migrate), drains and holds its devices, sends the
 * last dirty pages, the manifest and the device/vCPU state (vmstate's
 * sections), and waits for the destination to say it has everything
 * (READY). It answers GO and waits for DONE: only then is it postmigrate.
 * On any failure before GO the VM resumes where it was; after GO without
 * DONE it stays paused (the destination may run it: never two). With
 * auto-converge, a source whose guest dirties RAM faster than the link
 * carries has its vCPUs throttled (vm_set_cpu_throttle) until the
 * migration ends, however it ends. With xbzrle, from pass 2 on a page
 * kept in the source's cache since it last went is sent as its changes
 * (daemon/xbzrle.c).
 *
 * Destination: a VM defined with "incoming" waits in inmigrate; a worker
 * accepts one connection, writes pages into a memfd, and after END builds
 * a snapshot from the stream; on GO the control thread builds and resumes
 * the VM from it (the memfd is mapped privately, as vm-restore maps its
 * memory file), and the worker sends DONE.
 *
 * Threads: the public functions and finish()/adopt run on the control
 * thread; source_thread/dest_thread are the workers. Statistics are
 * atomics; m->lock protects the adopt hand-off and the error text.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/pathpol.h"
#include "common/thread.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "daemon/migration.h"
#include "daemon/sandbox.h"
#include "daemon/registry.h"
#include "daemon/tls.h"
#include "daemon/xbzrle.h"
#include "net/net.h"

#define WIRE_MAGIC "VMMDMIG\n"
#define PAGE 4096u
#define BATCH_PAGES 256u
#define MAX_JSON (16u << 20)
#define MAX_STATE (256u << 20)

enum rec_type {
	REC_CONFIG = 1,	    /* JSON: {"vm": definition, "memory-size": N} */
	REC_PAGES = 2,	    /* count x (u64 offset, 4096 bytes) */
	REC_PASS = 3,	    /* a pass over RAM ended (count = pass number) */
	REC_MANIFEST = 4,   /* JSON: the manifest (docs/vmstate.md) */
	REC_STATE = 5,	    /* the state sections */
	REC_END = 6,	    /* nothing follows; count = 1: the VM was paused, stays so */
	REC_READY = 7,	    /* destination: count = 0 or errno, payload = message */
	REC_GO = 8,	    /* source: paused for good, take over */
	REC_DONE = 9,	    /* destination: count = 0 (running) or errno, payload = message */
	REC_MEMFD = 10,	    /* unix only: 1 byte carrying the RAM's memfd (SCM_RIGHTS) */
	REC_TAPFD = 11,	    /* unix only: JSON {"id", "ifname"}, then 1 byte carrying the tap */
	REC_PRELAUNCH = 12, /* before END: the VM never ran (prelaunch), stays so */
	REC_XBZRLE = 13,    /* count x (u64 offset, u16 length, that many bytes of changes) */
};

/* An xbzrle encoding longer than this goes as the whole page. */
#define XBZRLE_MAX (PAGE - 16)

#define MAX_TAPFD_JSON 256u

struct wire_header {
	char magic[8];
	uint32_t version; /* little-endian */
	uint32_t status;  /* reply: 0 or errno */
	char vmmd_version[48];
};

struct rec {
	uint32_t type, count;
	uint64_t len;
};

enum mig_status {
	MIG_NONE,
	MIG_SETUP,
	MIG_ACTIVE,
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLING,
	MIG_CANCELLED,
};

static const char *const status_names[] = {
	[MIG_NONE] = "none",	       [MIG_SETUP] = "setup",	[MIG_ACTIVE] = "active",
	[MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed", [MIG_CANCELLING] = "cancelling",
	[MIG_CANCELLED] = "cancelled",
};

struct migration {
	struct registry_vm *rv;
	struct registry *reg;
	char *name;
	bool incoming;
	int *vm_flag; /* source: the VM's seccomp violation flag (its thread works for it) */
	pthread_t thread;
	bool running; /* the worker exists and is not joined */
	int efd;      /* worker -> control thread */
	struct event *ev;
	_Atomic int sock; /* the connection (set by the worker once connected) */
	char *uri;	  /* source: where to connect (on the worker) */
	int listen_fd;	  /* destination, until accepted */
	_Atomic int status;
	_Atomic bool cancel;
	bool events;	    /* the events capability: MIGRATION and MIGRATION_PASS */
	bool auto_converge; /* the source throttles its vCPUs (QEMU's auto-converge) */
	bool xbzrle;	    /* the source sends pages it has cached as their changes */
	struct timespec t0;

	_Atomic uint64_t transferred, remaining, total, duplicate, normal, dirty_rate, passes;
	_Atomic uint64_t setup_ms, total_ms, downtime_ms, expected_downtime_ms, mbps_x1000;
	/* xbzrle: pages looked up in the cache, misses, pages and bytes sent as
	 * changes, pages whose changes were too long */
	_Atomic uint64_t xb_lookups, xb_miss, xb_pages, xb_bytes, xb_overflow;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *error;
	/* destination hand-off: the worker builds the VM, the control thread adopts it */
	struct registry_instance *inst;
	struct vm *new_vm;
	bool adopt_asked, adopt_done;
	bool stay_paused; /* the source's VM was paused: adopt it paused */
	bool prelaunch;	  /* ... and it never ran: adopt it in prelaunch */
	/* TLS (migrate-set-parameters tls-creds): the id, its credentials (NULL:
	 * none by that id, the worker fails as QEMU), the name to check, and
	 * a destination's authorization object (tls-authz) */
	char *tls_id, *tls_host, *tls_authz;
	struct tls_creds *creds;
	int adopt_result;
	char *adopt_error;
	unsigned taps_sent; /* source: tap fds handed over (worker) */
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - t0->tv_sec) * 1000 +
	       (uint64_t)((t.tv_nsec - t0->tv_nsec) / 1000000);
}

static unsigned wire_version(void)
{
	/* Tests only: pretend to speak another version (docs/migration.md). */
	const char *v = getenv("VMMD_MIGRATION_WIRE_VERSION");

	return v && *v ? (unsigned)strtoul(v, NULL, 10) : MIGRATION_WIRE_VERSION;
}

/*
 * The new status and its event under m->lock, which query-migrate reads the
 * status under: once a client has seen a status, its event is queued, and
 * the monitor emits it before the answer to the client's next command.
 */
static void set_status(struct migration *m, enum mig_status s)
{
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->status, s);
	if (m->events) {
		registry_queue_event(m->reg, m->name, "MIGRATION",
				     json_pack("{s:s}", "status", status_names[s]));
	}
	pthread_mutex_unlock(&m->lock);
}

/* MIGRATION_PASS: the dirty bitmap's sync number @pass (events capability only). */
static void pass_event(struct migration *m, uint64_t pass)
{
	if (m->events) {
		registry_queue_event(m->reg, m->name, "MIGRATION_PASS",
				     json_pack("{s:I}", "pass", (json_int_t)pass));
	}
}

static void set_error(struct migration *m, const char *msg)
{
	pthread_mutex_lock(&m->lock);
	if (!m->error) {
		m->error = strdup(msg);
	}
	pthread_mutex_unlock(&m->lock);
}

/* ---- stream I/O ----------------------------------------------------------- */

/* The worker's TLS session: when set, the stream goes through it. */
static __thread struct tls_session *tls_io;

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n =
			tls_io ? tls_session_send(tls_io, p, len) : send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && tls_io) {
			return (int)n;
		}

		if (n < 0 && errno == ENOTSOCK) {
			n = write(fd, p, len);
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = tls_io ? tls_session_recv(tls_io, p, len) : read(fd, p, len);

		if (n < 0 && tls_io) {
			return (int)n;
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
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

static int send_rec(int fd, uint32_t type, uint32_t count, const void *payload, uint64_t len)
{
	struct rec r = {htole32(type), htole32(count), htole64(len)};
	int e = write_full(fd, &r, sizeof(r));

	return e < 0 || !len ? e : write_full(fd, payload, len);
}

static int recv_rec(int fd, struct rec *r)
{
	int e = read_full(fd, r, sizeof(*r));

	r->type = le32toh(r->type);
	r->count = le32toh(r->count);
	r->len = le64toh(r->len);
	return e;
}

static void fill_header(struct wire_header *h, uint32_t status)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, WIRE_MAGIC, 8);
	h->version = htole32(wire_version());
	h->status = htole32(status);
	snprintf(h->vmmd_version, sizeof(h->vmmd_version), "%s", PACKAGE_VERSION);
}

/*
 * A cut link must end the migration (the source then resumes) rather than
 * hang it: TCP gives up on data unacknowledged for MIGRATION_LINK_TIMEOUT_S
 * (TCP_USER_TIMEOUT), and keepalive probes find a dead peer of an idle
 * connection in about the same time. Not for unix: or fd: sockets.
 */
#define MIGRATION_LINK_TIMEOUT_S 30
static void set_link_timeouts(int fd)
{
	unsigned ms = MIGRATION_LINK_TIMEOUT_S * 1000;
	int one = 1, idle = 10, intvl = 5, cnt = 4;

	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/*
 * Guest RAM by fd (docs/upgrade.md): on a UNIX socket, a VM whose RAM is one
 * memfd sends the fd instead of its pages; the destination adopts it.
 */
static bool local_socket(struct migration *m)
{
	int domain = 0;
	socklen_t len = sizeof(domain);

	return !tls_io && getsockopt(m->sock, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
	       domain == AF_UNIX;
}

static bool can_share_ram(struct migration *m, struct vm *vm)
{
	return vm_ram_region_count(vm) == 1 && vm_ram_region_fd(vm, 0) >= 0 && local_socket(m);
}

/* One byte carrying @fd (SCM_RIGHTS), after its record's header. */
static int send_fd(int sock, int fd)
{
	char byte = 'F', cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

static int send_memfd(int sock, int fd)
{
	int r = send_rec(sock, REC_MEMFD, 1, NULL, 0);

	return r < 0 ? r : send_fd(sock, fd);
}

/*
 * The one fd of the byte that follows a record's header, from a peer
 * running as us or root; -errno. Anything else the message carries (more
 * fds, a truncated control buffer) is closed and refused.
 */
static int recv_fd(int sock, const char *what, struct error **errp)
{
	char byte, cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct cmsghdr *cm;
	int fd = -1, extra = 0;

	if (tls_io || getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		return error_set(errp, EPERM,
				 "%s by fd is taken only on a UNIX socket from root or this "
				 "daemon's user",
				 what);
	}
	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1) {
		return error_set_errno(errp, errno ? errno : EPROTO, "the source went away");
	}
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t n;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			continue;
		}
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int f;

			memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fd < 0) {
				fd = f;
			} else {
				close(f);
				extra++;
			}
		}
	}
	if (extra || (mh.msg_flags & MSG_CTRUNC)) {
		if (fd >= 0) {
			close(fd);
		}
		return error_set(errp, EPROTO, "the %s record carries more than one fd", what);
	}
	if (fd < 0) {
		return error_set(errp, EPROTO, "the %s record carries no fd", what);
	}
	return fd;
}

/* The memfd after a REC_MEMFD header: a memfd of exactly @size bytes; -errno. */
static int recv_memfd(int sock, uint64_t size, struct error **errp)
{
	struct stat st;
	int fd = recv_fd(sock, "guest RAM", errp);

	if (fd < 0) {
		return fd;
	}
	/* A memfd (F_GET_SEALS works only on one) of exactly the VM's RAM size. */
	if (fcntl(fd, F_GET_SEALS) < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size != size) {
		close(fd);
		return error_set(errp, EPROTO, "the RAM fd is not a memfd of %" PRIu64 " bytes",
				 size);
	}
	return fd;
}

static int recv_payload(int fd, uint64_t len, uint64_t max, void **ret, struct error **errp);

/*
 * Tap NICs by fd (docs/migration.md): the source sends each tap NIC's open
 * fd with the NIC's id and the interface's name; the destination adopts it
 * (registry_instance_add_nic_fd) only for a tap NIC of its definition, and
 * only if the fd really is a tap of that name and of the name the
 * definition gives.
 */
static int send_tap(void *opaque, const char *nic_id, int fd)
{
	struct migration *m = opaque;
	char name[IFNAMSIZ];
	json_t *j;
	char *text;
	int r;

	if (net_tap_fd_name(fd, name, NULL) < 0) {
		return 0; /* not a tap: the destination opens what its definition says */
	}
	j = json_pack("{s:s, s:s}", "id", nic_id, "ifname", name);
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text) {
		return -ENOMEM;
	}
	r = send_rec(m->sock, REC_TAPFD, 1, text, strlen(text));
	free(text);
	if (r == 0) {
		r = send_fd(m->sock, fd);
	}
	if (r == 0) {
		m->taps_sent++;
	}
	return r;
}

static int recv_tap(struct migration *m, const struct rec *rc, struct error **errp)
{
	const struct vm_config *cfg = m->rv->cfg;
	const struct vm_nic_config *nic = NULL;
	json_t *j = NULL;
	const char *id = NULL, *ifname = NULL;
	char name[IFNAMSIZ];
	void *p = NULL;
	int fd, r;

	if (rc->count != 1 || rc->len == 0 || rc->len > MAX_TAPFD_JSON) {
		return error_set(errp, EPROTO, "malformed tap fd record");
	}
	r = recv_payload(m->sock, rc->len, MAX_TAPFD_JSON, &p, errp);
	if (r < 0) {
		return r;
	}
	/* The fd comes first: whatever is wrong, it is received and closed here. */
	fd = recv_fd(m->sock, "a tap", errp);
	if (fd < 0) {
		free(p);
		return fd;
	}
	j = json_loads(p, JSON_REJECT_DUPLICATES, NULL);
	free(p);
	if (json_unpack(j, "{s:s, s:s !}", "id", &id, "ifname", &ifname) < 0) {
		r = error_set(errp, EPROTO, "malformed tap fd record");
		goto fail;
	}
	for (unsigned i = 0; i < cfg->n_nics; i++) {
		if (strcmp(cfg->nics[i].id, id) == 0) {
			nic = &cfg->nics[i];
		}
	}
	if (!nic || !nic->backend || strcmp(nic->backend, "tap") != 0) {
		r = error_set(errp, EINVAL,
			      "nic %.64s: the source hands over a tap fd, but here it is %s", id,
			      nic ? "not a tap NIC" : "not defined");
		goto fail;
	}
	r = net_tap_fd_name(fd, name, errp);
	if (r < 0) {
		error_prefix(errp, "nic %s: ", nic->id);
		goto fail;
	}
	if (strcmp(name, ifname) != 0 || (nic->ifname && strcmp(name, nic->ifname) != 0)) {
		r = error_set(errp, EINVAL,
			      "nic %s: the tap fd handed over is attached to '%s', expected '%s'",
			      nic->id, name, nic->ifname ? nic->ifname : ifname);
		goto fail;
	}
	/* "ifname" names an interface of this daemon's namespace, not a namesake elsewhere. */
	if (nic->ifname && net_tap_fd_in_our_netns(fd) == 0) {
		r = error_set(errp, EINVAL,
			      "nic %s: the tap '%s' handed over is in another network namespace",
			      nic->id, name);
		goto fail;
	}
	json_decref(j);
	return registry_instance_add_nic_fd(m->inst, nic->id, fd, errp);

fail:
	json_decref(j);
	close(fd);
	return r;
}

/* ---- connecting ------------------------------------------------------------ */

static int parse_tcp(const char *spec, char **ret_host, char **ret_port)
{
	const char *colon = strrchr(spec, ':');
	char *host;

	if (!colon || colon == spec || !colon[1]) {
		return -EINVAL;
	}
	if (spec[0] == '[' && colon[-1] == ']') {
		host = strndup(spec + 1, (size_t)(colon - spec - 2));
	} else {
		host = strndup(spec, (size_t)(colon - spec));
	}
	*ret_host = host;
	*ret_port = strdup(colon + 1);
	return host && *ret_port ? 0 : -ENOMEM;
}

/*
 * Connect @fd to @addr, giving up after MIGRATION_CONNECT_TIMEOUT_MS or when
 * *@cancel is set (NULL: never); 0 or -errno.
 */
#define MIGRATION_CONNECT_TIMEOUT_MS 30000
static int connect_cancellable(int fd, const struct sockaddr *addr, socklen_t len,
			       _Atomic bool *cancel)
{
	int flags = fcntl(fd, F_GETFL), err = 0;
	socklen_t elen = sizeof(err);

	if (!cancel) {
		return connect(fd, addr, len) == 0 ? 0 : -errno;
	}
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	if (connect(fd, addr, len) < 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int waited = 0;

		if (errno != EINPROGRESS) {
			return -errno;
		}
		while (poll(&p, 1, 200) == 0) {
			waited += 200;
			if (atomic_load(cancel)) {
				return -ECANCELED;
			}
			if (waited >= MIGRATION_CONNECT_TIMEOUT_MS) {
				return -ETIMEDOUT;
			}
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
			return -errno;
		}
		if (err) {
			return -err;
		}
	}
	fcntl(fd, F_SETFL, flags);
	return 0;
}

/*
 * Open the listening (@listen) or connected socket for @uri; -errno with a
 * message. Connecting stops early when *@cancel is set.
 */
static int open_uri(const char *uri, bool listen_it, _Atomic bool *cancel, struct error **errp)
{
	if (strncmp(uri, "tcp:", 4) == 0) {
		_cleanup_free_ char *host = NULL, *port = NULL;
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
		struct addrinfo *ai = NULL, *a;
		int fd = -1, e, err = 0;

		if (parse_tcp(uri + 4, &host, &port) < 0) {
			return error_set(errp, EINVAL, "'%s' is not tcp:HOST:PORT", uri);
		}
		e = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
		if (e) {
			return error_set(errp, EINVAL, "cannot resolve '%s': %s", uri,
					 gai_strerror(e));
		}
		for (a = ai; a; a = a->ai_next) {
			int one = 1;

			fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
			if (fd < 0) {
				err = errno;
				continue;
			}
			if (listen_it) {
				setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
				if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 &&
				    listen(fd, 1) == 0) {
					break;
				}
			} else {
				int c = connect_cancellable(fd, a->ai_addr, a->ai_addrlen, cancel);

				if (c == 0) {
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					set_link_timeouts(fd);
					break;
				}
				errno = -c;
			}
			err = errno;
			close(fd);
			fd = -1;
		}
		freeaddrinfo(ai);
		if (fd < 0) {
			return error_set_errno(errp, err ? err : EINVAL, "cannot %s %s",
					       listen_it ? "listen on" : "connect to", uri);
		}
		return fd;
	}
	if (strncmp(uri, "unix:", 5) == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		const char *path = uri + 5;
		int fd, r;

		if (strlen(path) >= sizeof(sa.sun_path) || !path[0]) {
			return error_set(errp, EINVAL, "socket path '%s' is empty or too long",
					 path);
		}
		r = pathpol_check("migration socket", path, errp);
		if (r < 0) {
			return r;
		}
		strcpy(sa.sun_path, path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			return error_set_errno(errp, errno, "socket");
		}
		if (listen_it) {
			unlink(path);
			r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0
				    ? 0
				    : -errno;
		} else {
			r = connect_cancellable(fd, (struct sockaddr *)&sa, sizeof(sa), cancel);
		}
		if (r < 0) {
			close(fd);
			return error_set_errno(errp, -r, "cannot %s %s",
					       listen_it ? "listen on" : "connect to", path);
		}
		return fd;
	}
	return error_set(errp, EINVAL,
			 "migration URI '%s' is not supported (tcp:HOST:PORT, unix:PATH, fd:NAME)",
			 uri);
}

/*
 * TLS on the worker's connection when tls-creds is set: the credentials
 * must exist and be for this side's endpoint (QEMU's messages).
 */
static int start_tls(struct migration *m, bool server, struct error **errp)
{
	struct tls_session *sess = NULL;
	int r;

	if (!m->tls_id) {
		return 0;
	}
	if (!m->creds) {
		return error_set(errp, ENOENT, "No TLS credentials with id '%s'", m->tls_id);
	}
	if (tls_creds_is_server(m->creds) != server) {
		return error_set(errp, EINVAL, "Expected TLS credentials for a %s endpoint",
				 server ? "server" : "client");
	}
	if (tls_creds_checks_hostname(m->creds) && !m->tls_host) {
		return error_set(errp, EINVAL, "No hostname available for TLS");
	}
	r = tls_session_start(m->creds, m->sock, server ? NULL : m->tls_host,
			      server ? m->tls_authz : NULL, &sess, errp);
	if (r < 0) {
		return r;
	}
	tls_io = sess;
	return 0;
}

static void end_tls(void)
{
	tls_session_free(tls_io);
	tls_io = NULL;
}

/* ---- bookkeeping ------------------------------------------------------------ */

static void notify(struct migration *m)
{
	uint64_t one = 1;

	if (write(m->efd, &one, sizeof(one)) < 0) {
		/* Already signalled. */
	}
}

static void join(struct migration *m)
{
	if (m->running) {
		pthread_join(m->thread, NULL);
		m->running = false;
	}
}

/*
 * A migration that has ended keeps its statistics for query-migrate, not
 * its connection or wake-up fd: a rolled-back upgrade or a failed attempt
 * leaves no fd behind. Control thread, the worker joined (freeing the
 * event from its own callback is fine in libevent 2.1).
 */
static void release_fds(struct migration *m)
{
	if (m->ev) {
		event_free(m->ev);
		m->ev = NULL;
	}
	if (m->efd >= 0) {
		close(m->efd);
		m->efd = -1;
	}
	if (m->sock >= 0) {
		close(m->sock);
		m->sock = -1;
	}
	if (m->listen_fd >= 0) {
		close(m->listen_fd);
		m->listen_fd = -1;
	}
}

/* Join a worker that has ended (its status is final); true if it had. */
static bool reap(struct migration *m)
{
	int st = atomic_load(&m->status);

	if (st < MIG_COMPLETED || st == MIG_CANCELLING) {
		return false;
	}
	join(m);
	if (m->incoming && st != MIG_COMPLETED) {
		m->rv->inmigrate = false;
	}
	release_fds(m);
	return true;
}

/*
 * As QEMU after an incoming migration: the NICs announce where the VM runs
 * now, with this side's announce-* parameters (if the VM stays paused, the
 * frames go when it runs). A failure costs the announcement only.
 */
static void announce(struct registry_vm *rv, struct vm *vm)
{
	struct vm_announce_params p;
	struct error *err = NULL;

	migration_announce_params(rv, &p);
	if (vm_announce(vm, &p, NULL, NULL, &err) < 0) {
		log_full(LOG_WARNING, rv->name, NULL, "cannot announce the NICs: %s", err->msg);
		error_free(err);
	}
}

static void on_notify(evutil_socket_t fd, short what, void *opaque)
{
	struct migration *m = opaque;
	uint64_t v;
	bool ask;

	if (read(m->efd, &v, sizeof(v)) < 0) {
		/* Nothing pending. */
	}
	pthread_mutex_lock(&m->lock);
	ask = m->adopt_asked && !m->adopt_done;
	pthread_mutex_unlock(&m->lock);
	if (ask) {
		struct error *err = NULL;
		int r;

		/*
		 * QEMU's runstate after the stream: the source's if it did not
		 * run, else running unless stop cleared autostart meanwhile.
		 */
		struct vm *vm = m->new_vm;

		r = registry_adopt(m->rv, m->inst, vm, m->stay_paused || m->rv->incoming_stopped,
				   "an incoming migration", &err);
		m->rv->incoming_stopped = false;
		if (r == 0 && m->stay_paused && m->prelaunch) {
			vm_mark_prelaunch(vm);
		}
		if (r == 0) {
			announce(m->rv, vm);
		}
		m->inst = NULL;
		m->new_vm = NULL;
		pthread_mutex_lock(&m->lock);
		m->adopt_result = r;
		m->adopt_error = r < 0 ? strdup(err ? err->msg : "cannot build the VM") : NULL;
		m->adopt_done = true;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		error_free(err);
		if (r < 0) {
			m->rv->inmigrate = false;
		}
		return;
	}
	if (reap(m)) {
		/*
		 * A forbidden call during the migration (which deferred it) ends the
		 * VM now: the source's, or the destination's once adopted.
		 */
		registry_check_violation(m->rv);
	}
}

static void mig_free(struct migration *m)
{
	if (!m) {
		return;
	}
	atomic_store(&m->cancel, true);
	if (m->sock >= 0) {
		shutdown(m->sock, SHUT_RDWR);
	}
	if (m->listen_fd >= 0) {
		shutdown(m->listen_fd, SHUT_RDWR);
	}
	pthread_mutex_lock(&m->lock);
	if (m->adopt_asked && !m->adopt_done) {
		m->adopt_result = -ECANCELED;
		m->adopt_done = true;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	join(m);
	if (m->ev) {
		event_free(m->ev);
	}
	if (m->efd >= 0) {
		close(m->efd);
	}
	if (m->sock >= 0) {
		close(m->sock);
	}
	if (m->listen_fd >= 0) {
		close(m->listen_fd);
	}
	if (m->new_vm) {
		vm_destroy(m->new_vm);
	}
	registry_instance_free(m->inst);
	tls_creds_put(m->creds);
	free(m->tls_id);
	free(m->tls_host);
	free(m->tls_authz);
	free(m->uri);
	free(m->error);
	free(m->adopt_error);
	free(m->name);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

bool migration_active(struct registry_vm *rv)
{
	struct migration *m = rv->mig;

	/*
	 * A worker that has ended but whose wake-up the control thread has not
	 * handled yet is over: a client that read "failed" may migrate again.
	 */
	return m && m->running && !reap(m);
}

bool migration_outgoing(struct registry_vm *rv)
{
	return rv->mig && !rv->mig->incoming;
}

void migration_free(struct registry_vm *rv)
{
	mig_free(rv->mig);
	rv->mig = NULL;
}

static uint64_t max_bandwidth(struct migration *m)
{
	uint64_t v = m->rv->mig_max_bandwidth;

	return v ? v : MIGRATION_DEFAULT_MAX_BANDWIDTH;
}

static uint64_t downtime_limit(struct migration *m)
{
	uint64_t v = m->rv->mig_downtime_limit;

	return v ? v : MIGRATION_DEFAULT_DOWNTIME_LIMIT;
}

/* ---- the source ------------------------------------------------------------- */

struct sender {
	struct migration *m;
	uint8_t *buf; /* one REC_PAGES record */
	unsigned n;
	uint64_t pass_bytes, pass_pages, pass_t0;
	bool unlimited;
	/* xbzrle: one REC_XBZRLE record, and a direct-mapped cache of pages as
	 * the destination has them (tags[slot] = offset + 1, 0: empty) */
	uint8_t *xbuf;
	unsigned xn;
	size_t xlen;
	uint8_t *cache;
	uint64_t *tags, slots, cache_param;
	uint8_t page[PAGE]; /* the copy of a page that is both sent and cached */
};

/* Count @len bytes sent (the pass's and the total), then stay under max-bandwidth. */
static int pace(struct sender *s, uint64_t len)
{
	struct migration *m = s->m;

	atomic_fetch_add(&m->transferred, len + sizeof(struct rec));
	s->pass_bytes += len;
	/* Keep under max-bandwidth (read each time: migrate-set-parameters applies live). */
	while (!s->unlimited && !atomic_load(&m->cancel)) {
		uint64_t due = s->pass_t0 + s->pass_bytes * 1000000000ull / max_bandwidth(m);
		uint64_t now = now_ns();
		struct timespec ts;

		if (now >= due) {
			break;
		}
		due = MIN(due - now, 50000000ull);
		ts.tv_sec = 0;
		ts.tv_nsec = (long)due;
		nanosleep(&ts, NULL);
	}
	return atomic_load(&m->cancel) ? -ECANCELED : 0;
}

static int flush_pages(struct sender *s)
{
	uint64_t len = (uint64_t)s->n * (8 + PAGE);
	int r;

	if (!s->n) {
		return 0;
	}
	r = send_rec(s->m->sock, REC_PAGES, s->n, s->buf, len);
	if (r < 0) {
		return r;
	}
	atomic_fetch_add(&s->m->normal, s->n);
	s->n = 0;
	return pace(s, len);
}

static int flush_xbzrle(struct sender *s)
{
	uint64_t len = s->xlen;
	int r;

	if (!s->xn) {
		return 0;
	}
	r = send_rec(s->m->sock, REC_XBZRLE, s->xn, s->xbuf, len);
	if (r < 0) {
		return r;
	}
	s->xn = 0;
	s->xlen = 0;
	return pace(s, len);
}

static int queue_page(struct sender *s, uint64_t off, const uint8_t *page)
{
	uint8_t *p = s->buf + (size_t)s->n * (8 + PAGE);
	uint64_t le = htole64(off);

	memcpy(p, &le, 8);
	memcpy(p + 8, page, PAGE);
	if (++s->n == BATCH_PAGES) {
		return flush_pages(s);
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (unsigned i = 0; i < PAGE / 8; i++) {
		if (w[i]) {
			return false;
		}
	}
	return true;
}

/*
 * xbzrle: (re)make the cache at the start of a pass when the parameter
 * changed (as QEMU's resize: it starts empty), at most the RAM's size.
 */
static int xbzrle_cache_setup(struct sender *s, uint64_t ram, struct error **errp)
{
	uint64_t param = migration_xbzrle_cache_size(s->m->rv), bytes = PAGE;

	if (param == s->cache_param) {
		return 0;
	}
	while (bytes < param && bytes < ram) {
		bytes *= 2;
	}
	free(s->cache);
	free(s->tags);
	s->slots = bytes / PAGE;
	s->cache = malloc(bytes);
	s->tags = calloc(s->slots, sizeof(*s->tags));
	if (!s->cache || !s->tags) {
		return error_set(errp, ENOMEM,
				 "cannot allocate the xbzrle cache (%" PRIu64 " bytes)", bytes);
	}
	s->cache_param = param;
	return 0;
}

/*
 * Send the page at @off (live in guest RAM) through the xbzrle cache: as
 * its changes against the cached copy, or whole (a miss, which caches it,
 * or changes too long to be worth it); not at all when it did not change.
 */
static int send_xbzrle(struct sender *s, uint64_t off, const uint8_t *live)
{
	struct migration *m = s->m;
	uint64_t slot = off / PAGE & (s->slots - 1);
	uint8_t *cached = s->cache + slot * PAGE, *e = s->xbuf + s->xlen;
	uint64_t le = htole64(off);
	uint16_t le_len;
	int n;

	/* The guest may write the page meanwhile: encode, send and cache one copy. */
	memcpy(s->page, live, PAGE);
	atomic_fetch_add(&m->xb_lookups, 1);
	if (s->tags[slot] != off + 1) {
		atomic_fetch_add(&m->xb_miss, 1);
		s->tags[slot] = off + 1;
		memcpy(cached, s->page, PAGE);
		return queue_page(s, off, s->page);
	}
	n = xbzrle_encode(cached, s->page, PAGE, e + 10, XBZRLE_MAX);
	if (n == 0) {
		return 0; /* as the destination has it */
	}
	memcpy(cached, s->page, PAGE);
	if (n < 0) {
		atomic_fetch_add(&m->xb_overflow, 1);
		return queue_page(s, off, s->page);
	}
	le_len = htole16((uint16_t)n);
	memcpy(e, &le, 8);
	memcpy(e + 8, &le_len, 2);
	s->xlen += 10 + (size_t)n;
	atomic_fetch_add(&m->xb_pages, 1);
	atomic_fetch_add(&m->xb_bytes, 10 + (uint64_t)n);
	if (++s->xn == BATCH_PAGES) {
		return flush_xbzrle(s);
	}
	return 0;
}

/* Send the pages set in @bm (cleared as they go); pass 1 skips zero pages. */
static int send_dirty(struct sender *s, struct vm *vm, uint64_t **bm, bool first)
{
	uint64_t base = 0;
	int r;

	for (unsigned i = 0; i < vm_ram_region_count(vm); i++) {
		uint64_t gpa, size;
		uint8_t *host = vm_ram_region(vm, i, &gpa, &size);
		uint64_t pages = size / PAGE;

		for (uint64_t pg = 0; pg < pages; pg++) {
			if (!(bm[i][pg / 64] & (1ull << (pg % 64)))) {
				continue;
			}
			bm[i][pg / 64] &= ~(1ull << (pg % 64));
			atomic_fetch_sub(&s->m->remaining,
					 MIN(PAGE, atomic_load(&s->m->remaining)));
			if (first && page_is_zero(host + pg * PAGE)) {
				atomic_fetch_add(&s->m->duplicate, 1);
				continue;
			}
			s->pass_pages++;
			r = s->cache && !first ? send_xbzrle(s, base + pg * PAGE, host + pg * PAGE)
					       : queue_page(s, base + pg * PAGE, host + pg * PAGE);
			if (r < 0) {
				return r;
			}
		}
		base += size;
	}
	r = flush_xbzrle(s);
	return r < 0 ? r : flush_pages(s);
}

/* Collect the dirty pages since the last sync into @bm; returns their count. */
static int64_t sync_dirty(struct migration *m, struct vm *vm, uint64_t **bm, struct error **errp)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < vm_ram_region_count(vm); i++) {
		uint64_t gpa, size;
		int r;

		vm_ram_region(vm, i, &gpa, &size);
		r = vm_dirty_log_sync(vm, i, bm[i], errp);
		if (r < 0) {
			return r;
		}
		for (uint64_t w = 0; w < (size / PAGE + 63) / 64; w++) {
			n += (uint64_t)__builtin_popcountll(bm[i][w]);
		}
	}
	atomic_store(&m->remaining, n * PAGE);
	pass_event(m, atomic_fetch_add(&m->passes, 1) + 1);
	return (int64_t)n;
}

uint64_t migration_xbzrle_cache_size(const struct registry_vm *rv)
{
	return rv->mig_xbzrle_cache_size ? rv->mig_xbzrle_cache_size
					 : MIGRATION_DEFAULT_XBZRLE_CACHE_SIZE;
}

void migration_announce_params(const struct registry_vm *rv, struct vm_announce_params *ret)
{
	static const struct vm_announce_params qemu = {
		.initial = 50, .max = 550, .rounds = 5, .step = 100};

	*ret = rv->mig_announce_set ? rv->mig_announce : qemu;
}

void migration_throttle_params(const struct registry_vm *rv, struct migration_throttle_params *ret)
{
	ret->threshold = rv->mig_throttle_threshold ? rv->mig_throttle_threshold
						    : MIGRATION_DEFAULT_THROTTLE_THRESHOLD;
	ret->initial = rv->mig_throttle_initial ? rv->mig_throttle_initial
						: MIGRATION_DEFAULT_THROTTLE_INITIAL;
	ret->increment = rv->mig_throttle_increment ? rv->mig_throttle_increment
						    : MIGRATION_DEFAULT_THROTTLE_INCREMENT;
	ret->max = rv->mig_max_throttle ? rv->mig_max_throttle : MIGRATION_DEFAULT_MAX_THROTTLE;
	ret->tailslow = rv->mig_throttle_tailslow;
}

/*
 * auto-converge, QEMU's rule: the dirty syncs are grouped into periods of
 * at least a second; a period whose dirtied bytes exceed
 * throttle-trigger-threshold percent of the bytes sent in it counts as
 * high, and every second high period throttles the vCPUs down: first to
 * cpu-throttle-initial, then by cpu-throttle-increment (with
 * cpu-throttle-tailslow, by no more than what would bring the dirty rate
 * down to the threshold), never above max-cpu-throttle. Source worker only.
 */
struct converge {
	uint64_t t0, sent0, dirty; /* the current period: start, bytes sent before, dirtied */
	unsigned high;		   /* high periods since the last step */
};

static int converge_sync(struct migration *m, struct vm *vm, struct converge *c,
			 uint64_t dirty_pages, struct error **errp)
{
	struct migration_throttle_params p;
	uint64_t now = now_ns(), sent, dirty, limit;
	unsigned pct, now_pct;

	c->dirty += dirty_pages * PAGE;
	if (!m->auto_converge || now < c->t0 + 1000000000ull) {
		return 0;
	}
	migration_throttle_params(m->rv, &p);
	sent = atomic_load(&m->transferred) - c->sent0;
	dirty = c->dirty;
	limit = sent * p.threshold / 100;
	c->t0 = now;
	c->sent0 = atomic_load(&m->transferred);
	c->dirty = 0;
	if (dirty <= limit || ++c->high < 2) {
		return 0;
	}
	c->high = 0;
	now_pct = vm_cpu_throttle(vm);
	if (!now_pct) {
		pct = p.initial;
	} else {
		unsigned inc = p.increment;

		if (p.tailslow) {
			/* The share of CPU that would dirty just the threshold's bytes. */
			uint64_t cpu_now = 100 - now_pct;
			uint64_t cpu_ideal = cpu_now * limit / dirty;

			inc = (unsigned)MIN(cpu_now - cpu_ideal, (uint64_t)inc);
		}
		pct = MIN(now_pct + inc, p.max);
	}
	pct = MAX(MIN(pct, VM_CPU_THROTTLE_MAX), 1u);
	if (pct == now_pct) {
		return 0;
	}
	log_full(LOG_INFO, m->name, NULL,
		 "auto-converge: %" PRIu64 " bytes dirtied against %" PRIu64
		 " sent in the last period; vCPUs throttled to %u%%",
		 dirty, sent, pct);
	return vm_set_cpu_throttle(vm, pct, errp);
}

static int handshake_source(struct migration *m, struct error **errp)
{
	struct wire_header h, reply;
	int r;

	fill_header(&h, 0);
	r = write_full(m->sock, &h, sizeof(h));
	if (r == 0) {
		r = read_full(m->sock, &reply, sizeof(reply));
	}
	if (r < 0 && tls_io && tls_session_alert(tls_io)) {
		/* The destination's verdict on this side's TLS identity, e.g. its tls-authz. */
		return error_set(errp, -r, "the destination refused the TLS session: %s%s",
				 tls_session_alert(tls_io),
				 r == -EACCES ? " (its tls-authz does not allow this source)" : "");
	}
	if (r < 0) {
		return error_set_errno(errp, -r,
				       "the destination closed the connection at the start");
	}
	reply.vmmd_version[sizeof(reply.vmmd_version) - 1] = '\0';
	if (memcmp(reply.magic, WIRE_MAGIC, 8) != 0) {
		return error_set(errp, EPROTO, "the destination is not a vmmd migration listener");
	}
	if (le32toh(reply.status)) {
		return error_set(
			errp, EPROTONOSUPPORT,
			"the destination (vmmd %s, migration wire version %u) refused this "
			"vmmd's wire version %u",
			reply.vmmd_version, le32toh(reply.version), wire_version());
	}
	return 0;
}

/*
 * Wait for the destination's READY or DONE: 0, or -errno with its message;
 * *ret_refused tells an answer with an error from a lost connection.
 */
static int wait_reply(struct migration *m, uint32_t type, bool *ret_refused, struct error **errp)
{
	struct rec r;
	char msg[512] = "";
	int e = recv_rec(m->sock, &r);

	if (e < 0) {
		return error_set_errno(errp, -e, "the destination went away");
	}
	if (r.type != type || r.len >= sizeof(msg)) {
		return error_set(errp, EPROTO, "the destination sent an unexpected record %u",
				 r.type);
	}
	e = read_full(m->sock, msg, r.len);
	if (e < 0) {
		return error_set_errno(errp, -e, "the destination went away");
	}
	if (r.count) {
		*ret_refused = true;
		return error_set(errp, (int)MIN(r.count, 4095u), "the destination failed: %s",
				 msg[0] ? msg : strerror((int)r.count));
	}
	return 0;
}

static void *source_thread(void *arg)
{
	struct migration *m = arg;
	struct vm *vm = m->rv->vm;
	struct sender s = {.m = m};
	struct error *err = NULL;
	uint64_t *bm[VM_RAM_REGIONS_MAX] = {NULL};
	bool bm_ok = true;
	struct vmstate_buf state = {0};
	struct converge conv = {0};
	json_t *manifest = NULL, *cfg = NULL;
	char *text = NULL;
	enum vm_run_state before = VM_STATE_RUNNING;
	bool tracking = false, paused = false, shared = false, held = false, go_sent = false,
	     refused = false;
	uint64_t total = 0, t_stop = 0;
	int r;

	pthread_setname_np(pthread_self(), "migrate-out");
	/* a job thread's list (sandbox.h), working for the VM it sends */
	sandbox_enter(SANDBOX_JOB, m->vm_flag, NULL);
	/* Tests only (test-security-seccomp.py): a call job threads may not make. */
	if (getenv("VMMD_SECCOMP_SELFTEST") &&
	    strncmp(getenv("VMMD_SECCOMP_SELFTEST"), "migrate:", 8) == 0 &&
	    strcmp(getenv("VMMD_SECCOMP_SELFTEST") + 8, m->rv->name) == 0 && chdir("/") == 0) {
		log_error("seccomp self-test: chdir passed the migration thread's filter");
	}
	if (m->sock < 0) {
		int fd = open_uri(m->uri, false, &m->cancel, &err);

		if (fd < 0) {
			r = fd;
			goto fail;
		}
		m->sock = fd;
	}
	r = start_tls(m, false, &err);
	if (r < 0) {
		goto fail;
	}
	s.buf = malloc((size_t)BATCH_PAGES * (8 + PAGE));
	s.xbuf = m->xbzrle ? malloc((size_t)BATCH_PAGES * (10 + XBZRLE_MAX)) : NULL;
	for (unsigned i = 0; i < vm_ram_region_count(vm) && i < VM_RAM_REGIONS_MAX; i++) {
		uint64_t gpa, size;

		vm_ram_region(vm, i, &gpa, &size);
		total += size;
		bm[i] = malloc((size / PAGE + 63) / 64 * 8);
		bm_ok &= bm[i] != NULL;
		if (bm[i]) {
			memset(bm[i], 0xff, (size / PAGE + 63) / 64 * 8);
			if (size / PAGE % 64) {
				bm[i][size / PAGE / 64] = (1ull << (size / PAGE % 64)) - 1;
			}
		}
	}
	atomic_store(&m->total, total);
	atomic_store(&m->remaining, total);
	if (!s.buf || (m->xbzrle && !s.xbuf) || !bm_ok ||
	    vm_ram_region_count(vm) > VM_RAM_REGIONS_MAX) {
		r = error_set(&err, ENOMEM, "out of memory");
		goto fail;
	}
	r = handshake_source(m, &err);
	if (r < 0) {
		goto fail;
	}
	cfg = json_pack("{s:O, s:I}", "vm", m->rv->def, "memory-size", (json_int_t)total);
	text = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
	if (!text) {
		r = error_set(&err, ENOMEM, "out of memory");
		goto fail;
	}
	r = send_rec(m->sock, REC_CONFIG, 0, text, strlen(text));
	free(text);
	text = NULL;
	if (r < 0) {
		r = error_set_errno(&err, -r, "cannot send to the destination");
		goto fail;
	}
	shared = can_share_ram(m, vm);
	if (shared) {
		/* A restore may still be filling it: the destination would read zeros. */
		r = vm_ram_populate_wait(vm, &err);
		if (r < 0) {
			goto fail;
		}
		r = send_memfd(m->sock, vm_ram_region_fd(vm, 0));
		if (r < 0) {
			r = error_set_errno(&err, -r, "cannot send the RAM's fd");
			goto fail;
		}
		atomic_store(&m->remaining, 0);
	} else {
		r = vm_dirty_log_start(vm, &err);
		if (r < 0) {
			goto fail;
		}
		tracking = true;
	}
	atomic_store(&m->setup_ms, ms_since(&m->t0));
	pass_event(m, 1);
	atomic_store(&m->passes, 1);
	conv.t0 = now_ns();
	set_status(m, MIG_ACTIVE);

	/*
	 * Pre-copy: pass 1 sends everything, later passes what was dirtied
	 * meanwhile. RAM handed over by fd needs none: the destination maps it.
	 */
	for (bool first = true; !shared; first = false) {
		uint64_t t_pass = now_ns(), bw, exp_ms;
		int64_t dirty;

		s.pass_t0 = t_pass;
		s.pass_bytes = 0;
		s.pass_pages = 0;
		r = m->xbzrle && !first ? xbzrle_cache_setup(&s, total, &err) : 0;
		if (r < 0) {
			goto fail;
		}
		r = send_dirty(&s, vm, bm, first);
		if (r < 0) {
			r = error_set_errno(&err, -r, "cannot send RAM to the destination");
			goto fail;
		}
		dirty = sync_dirty(m, vm, bm, &err);
		if (dirty < 0) {
			r = (int)dirty;
			goto fail;
		}
		r = converge_sync(m, vm, &conv, (uint64_t)dirty, &err);
		if (r < 0) {
			goto fail;
		}
		t_pass = MAX(now_ns() - t_pass, 1000000ull);
		bw = MAX(s.pass_bytes * 1000000000ull / t_pass, 1ull);
		atomic_store(&m->mbps_x1000, bw * 8 / 1000);
		atomic_store(&m->dirty_rate, (uint64_t)dirty * 1000000000ull / t_pass);
		/* each dirty page costs on the wire what this pass's did (xbzrle: less) */
		exp_ms = (uint64_t)dirty * (s.pass_pages ? s.pass_bytes / s.pass_pages : PAGE) *
			 1000 / MIN(bw, max_bandwidth(m));
		atomic_store(&m->expected_downtime_ms, exp_ms);
		if (exp_ms <= downtime_limit(m)) {
			break;
		}
	}

	/* Stop-and-copy: paused, devices drained and held, the rest of RAM and the state. */
	t_stop = now_ns();
	before = vm_get_state(vm);
	r = vm_save_begin(vm, &err);
	if (r < 0) {
		goto fail;
	}
	paused = true;
	vm_set_migrate_state(vm, VM_STATE_FINISH_MIGRATE);
	r = vm_state_capture(vm, &state, &manifest, &err);
	if (r < 0) {
		goto fail;
	}
	held = true;
	if (!shared && sync_dirty(m, vm, bm, &err) < 0) {
		r = -EIO;
		goto fail;
	}
	s.unlimited = true;
	r = m->xbzrle && !shared ? xbzrle_cache_setup(&s, total, &err) : 0;
	if (r < 0) {
		goto fail;
	}
	r = shared ? 0 : send_dirty(&s, vm, bm, false);
	if (r == 0 && local_socket(m)) {
		/* Tap NICs by fd: the destination goes on with the very same queues. */
		r = vm_for_each_nic_fd(vm, send_tap, m);
	}
	text = r == 0 ? json_dumps(manifest, JSON_COMPACT) : NULL;
	if (r == 0 && !text) {
		r = -ENOMEM;
	}
	if (r == 0) {
		r = send_rec(m->sock, REC_MANIFEST, 0, text, strlen(text));
	}
	if (r == 0) {
		r = send_rec(m->sock, REC_STATE, 0, state.data, state.len);
	}
	if (r == 0) {
		atomic_fetch_add(&m->transferred, state.len + strlen(text));
		/* an older destination refuses PRELAUNCH as unknown: the source stays */
		r = before == VM_STATE_PRELAUNCH ? send_rec(m->sock, REC_PRELAUNCH, 0, NULL, 0) : 0;
	}
	if (r == 0) {
		r = send_rec(m->sock, REC_END, before == VM_STATE_RUNNING ? 0 : 1, NULL, 0);
	}
	if (r < 0) {
		r = error_set_errno(&err, -r, "cannot send the VM state to the destination");
		goto fail;
	}
	/* The destination has everything; it loads nothing until GO. */
	r = wait_reply(m, REC_READY, &refused, &err);
	if (r < 0) {
		goto fail;
	}
	if (atomic_load(&m->cancel)) {
		r = error_set(&err, ECANCELED, "cancelled");
		goto fail;
	}
	/* Hand the images over: flushed and unlocked, the destination may open them. */
	r = vm_disks_set_active(vm, false, &err);
	if (r < 0) {
		goto fail;
	}
	r = send_rec(m->sock, REC_GO, 0, NULL, 0);
	go_sent = true;
	if (r < 0) {
		r = error_set_errno(&err, -r, "the destination went away");
		goto fail;
	}
	refused = false;
	r = wait_reply(m, REC_DONE, &refused, &err);
	if (r < 0 && refused) {
		/* The destination said it does not run the VM: take the images back. */
		struct error *e2 = NULL;

		if (vm_disks_set_active(vm, true, &e2) == 0) {
			go_sent = false;
		} else {
			error_prefix(&err, "taking the images back failed (%s) after: ",
				     e2 ? e2->msg : "?");
		}
		error_free(e2);
	}
	if (r < 0) {
		goto fail;
	}
	atomic_store(&m->downtime_ms, (now_ns() - t_stop) / 1000000);
	atomic_store(&m->total_ms, ms_since(&m->t0));
	atomic_store(&m->remaining, 0);
	vm_set_migrate_state(vm, VM_STATE_POSTMIGRATE);
	if (m->taps_sent) {
		/* The destination reads the taps now: never this side again. */
		vm_nic_fds_release(vm);
	}
	vm_state_release(vm);
	vm_save_end(vm, false);
	vm_dirty_log_stop(vm);
	vm_set_cpu_throttle(vm, 0, NULL);
	set_status(m, MIG_COMPLETED);
	log_full(LOG_INFO, m->name, NULL,
		 "migrated out in %" PRIu64 " ms (downtime %" PRIu64 " ms)",
		 atomic_load(&m->total_ms), atomic_load(&m->downtime_ms));
	goto out;

fail:
	atomic_store(&m->total_ms, ms_since(&m->t0));
	/* The migration is over: a VM that runs on here runs at full speed. */
	vm_set_cpu_throttle(vm, 0, NULL);
	if (held) {
		vm_state_release(vm);
	}
	if (paused) {
		/*
		 * After GO without DONE the destination may be running the VM:
		 * stay paused rather than risk two copies (docs/migration.md).
		 */
		vm_set_migrate_state(vm, before == VM_STATE_PRELAUNCH && !go_sent
						 ? VM_STATE_PRELAUNCH
						 : VM_STATE_PAUSED);
		vm_save_end(vm, !go_sent);
	}
	if (tracking) {
		vm_dirty_log_stop(vm);
	}
	if (go_sent) {
		error_prefix(&err, "the destination did not confirm after the hand-over; the VM "
				   "stays paused here (cont only if it does not run there)");
	}
	set_error(m, err ? err->msg : "failed");
	log_full(LOG_ERR, m->name, NULL, "migration failed: %s", err ? err->msg : "?");
	set_status(m, atomic_load(&m->cancel) && !go_sent ? MIG_CANCELLED : MIG_FAILED);
out:
	error_free(err);
	json_decref(manifest);
	json_decref(cfg);
	free(text);
	vmstate_buf_free(&state);
	for (unsigned i = 0; i < VM_RAM_REGIONS_MAX; i++) {
		free(bm[i]);
	}
	free(s.buf);
	free(s.xbuf);
	free(s.cache);
	free(s.tags);
	end_tls();
	shutdown(m->sock, SHUT_RDWR);
	notify(m);
	return NULL;
}

/* ---- the destination -------------------------------------------------------- */

static int recv_payload(int fd, uint64_t len, uint64_t max, void **ret, struct error **errp)
{
	uint8_t *p;
	int r;

	if (len > max) {
		return error_set(errp, EPROTO, "a record of %" PRIu64 " bytes is over the limit",
				 len);
	}
	p = malloc(len + 1);
	if (!p) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = read_full(fd, p, len);
	if (r < 0) {
		free(p);
		return error_set_errno(errp, -r, "the source went away");
	}
	p[len] = '\0';
	*ret = p;
	return 0;
}

static int recv_pages(struct migration *m, int memfd, uint64_t mem_size, const struct rec *r,
		      uint8_t *buf, struct error **errp)
{
	int e;

	if (memfd < 0 || r->count > BATCH_PAGES || r->len != (uint64_t)r->count * (8 + PAGE)) {
		return error_set(errp, EPROTO, "malformed RAM record");
	}
	e = read_full(m->sock, buf, r->len);
	if (e < 0) {
		return error_set_errno(errp, -e, "the source went away");
	}
	for (uint32_t i = 0; i < r->count; i++) {
		uint8_t *p = buf + (size_t)i * (8 + PAGE);
		uint64_t off;

		memcpy(&off, p, 8);
		off = le64toh(off);
		if (off % PAGE || off >= mem_size) {
			return error_set(errp, EPROTO, "RAM page at %" PRIu64 " is outside the VM",
					 off);
		}
		if (pwrite(memfd, p + 8, PAGE, (off_t)off) != PAGE) {
			return error_set_errno(errp, errno, "cannot store RAM");
		}
	}
	atomic_fetch_add(&m->transferred, r->len + sizeof(*r));
	atomic_fetch_add(&m->normal, r->count);
	return 0;
}

/* REC_XBZRLE: each page's changes applied to what the destination has of it. */
static int recv_xbzrle(struct migration *m, int memfd, uint64_t mem_size, const struct rec *r,
		       uint8_t *buf, struct error **errp)
{
	uint8_t page[PAGE];
	size_t at = 0;
	int e;

	if (memfd < 0 || r->count > BATCH_PAGES ||
	    r->len > (uint64_t)r->count * (10 + XBZRLE_MAX)) {
		return error_set(errp, EPROTO, "malformed xbzrle record");
	}
	e = read_full(m->sock, buf, r->len);
	if (e < 0) {
		return error_set_errno(errp, -e, "the source went away");
	}
	for (uint32_t i = 0; i < r->count; i++) {
		uint64_t off;
		uint16_t n;

		if (r->len - at < 10) {
			return error_set(errp, EPROTO, "malformed xbzrle record");
		}
		memcpy(&off, buf + at, 8);
		memcpy(&n, buf + at + 8, 2);
		off = le64toh(off);
		n = le16toh(n);
		at += 10;
		if (off % PAGE || off >= mem_size) {
			return error_set(errp, EPROTO, "RAM page at %" PRIu64 " is outside the VM",
					 off);
		}
		if (n > r->len - at) {
			return error_set(errp, EPROTO, "malformed xbzrle record");
		}
		if (pread(memfd, page, PAGE, (off_t)off) != PAGE) {
			return error_set_errno(errp, errno, "cannot read RAM");
		}
		if (xbzrle_decode(buf + at, n, page, PAGE) < 0) {
			return error_set(errp, EPROTO, "malformed xbzrle page at %" PRIu64, off);
		}
		if (pwrite(memfd, page, PAGE, (off_t)off) != PAGE) {
			return error_set_errno(errp, errno, "cannot store RAM");
		}
		at += n;
	}
	if (at != r->len) {
		return error_set(errp, EPROTO, "malformed xbzrle record");
	}
	atomic_fetch_add(&m->transferred, r->len + sizeof(*r));
	return 0;
}

static void reply(struct migration *m, uint32_t type, int status, const char *msg)
{
	send_rec(m->sock, type, (uint32_t)status, msg, msg ? strlen(msg) : 0);
}

static void *dest_thread(void *arg)
{
	struct migration *m = arg;
	struct error *err = NULL;
	struct wire_header h, rep;
	struct pollfd pfd = {.fd = m->listen_fd, .events = POLLIN};
	json_t *manifest = NULL;
	struct vm_snapshot *snap = NULL;
	struct vm *pre = NULL; /* vm_restore_prepare's, until vm_restore_into takes it */
	void *state = NULL;
	uint64_t state_len = 0, mem_size = 0;
	uint8_t *buf = NULL;
	int memfd = -1, r, acc = 0;
	socklen_t acclen = sizeof(acc);
	bool ready_sent = false, shared = false, listening;
	unsigned ver;

	pthread_setname_np(pthread_self(), "migrate-in");
	/*
	 * A job thread's list (sandbox.h), working for the VM it builds until
	 * the control thread adopts it (the instance is no longer this
	 * thread's then).
	 */
	sandbox_enter(SANDBOX_JOB, registry_instance_violation_flag(m->inst), NULL);
	/* Tests only (test-security-seccomp.py): a call job threads may not make. */
	if (getenv("VMMD_SECCOMP_SELFTEST") &&
	    strncmp(getenv("VMMD_SECCOMP_SELFTEST"), "migrate-in:", 11) == 0 &&
	    strcmp(getenv("VMMD_SECCOMP_SELFTEST") + 11, m->rv->name) == 0 && chdir("/") == 0) {
		log_error("seccomp self-test: chdir passed the migration thread's filter");
	}
	/*
	 * The kernel's share of the VM's build first (the KVM VM, its RAM's
	 * memslots, IRQ routing: ~15 ms of waiting for the kernel), before the
	 * source hears from this side (it waits for the header's answer): the
	 * hand-over's pause then waits only for the devices and their disks,
	 * as with QEMU's destination, built before it listens.
	 */
	r = vm_restore_prepare(m->rv->cfg, registry_instance_host(m->inst), &pre, &err);
	if (r < 0) {
		goto fail;
	}
	/* fd:NAME with a connected socket (QEMU's fd: incoming) is the stream itself. */
	listening = getsockopt(m->listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &acclen) != 0 || acc;
	for (;;) {
		int fd;

		while (listening && ((r = poll(&pfd, 1, 200)) <= 0 || !(pfd.revents & POLLIN))) {
			if (atomic_load(&m->cancel) ||
			    (r > 0 && (pfd.revents & (POLLERR | POLLHUP)))) {
				r = error_set(&err, ECANCELED,
					      "cancelled before a source connected");
				goto fail;
			}
		}
		m->sock = listening ? accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC)
				    : fcntl(m->listen_fd, F_DUPFD_CLOEXEC, 3);
		if (m->sock < 0) {
			r = error_set_errno(&err, errno, "accept");
			goto fail;
		}
		set_link_timeouts(m->sock); /* fails harmlessly on a unix socket */
		r = start_tls(m, true, &err);
		if (r == 0 || !listening || !m->creds || atomic_load(&m->cancel)) {
			break;
		}
		/*
		 * As QEMU's destination: a source refused at the TLS handshake
		 * (credentials, tls-authz) is dropped, and this one listens on.
		 */
		log_full(LOG_WARNING, m->name, NULL,
			 "incoming migration: %s; waiting for another source", err->msg);
		error_free(err);
		err = NULL;
		fd = m->sock;
		m->sock = -1;
		close(fd);
	}
	if (r < 0) {
		goto fail;
	}
	clock_gettime(CLOCK_MONOTONIC, &m->t0);
	set_status(m, MIG_SETUP);
	r = read_full(m->sock, &h, sizeof(h));
	if (r < 0 || memcmp(h.magic, WIRE_MAGIC, 8) != 0) {
		r = error_set(&err, EPROTO, "the peer is not a vmmd migration source");
		goto fail;
	}
	ver = le32toh(h.version);
	h.vmmd_version[sizeof(h.vmmd_version) - 1] = '\0';
	if (ver != wire_version() && ver + 1 != wire_version()) {
		fill_header(&rep, EPROTONOSUPPORT);
		write_full(m->sock, &rep, sizeof(rep));
		r = error_set(&err, EPROTONOSUPPORT,
			      "the source (vmmd %s) speaks migration wire version %u; this vmmd "
			      "accepts %u and %u",
			      h.vmmd_version, ver, wire_version() - 1, wire_version());
		goto fail;
	}
	fill_header(&rep, 0);
	r = write_full(m->sock, &rep, sizeof(rep));
	if (r < 0) {
		r = error_set_errno(&err, -r, "the source went away");
		goto fail;
	}
	set_status(m, MIG_ACTIVE);
	buf = malloc((size_t)BATCH_PAGES * (8 + PAGE));
	if (!buf) {
		r = error_set(&err, ENOMEM, "out of memory");
		goto fail;
	}
	for (;;) {
		struct rec rc;
		void *p = NULL;

		r = recv_rec(m->sock, &rc);
		if (r < 0) {
			r = error_set_errno(&err, -r, "the source went away");
			goto fail;
		}
		if (rc.type == REC_END) {
			/* A VM paused on the source stays paused here (QEMU's runstate). */
			m->stay_paused = rc.count == 1;
			break;
		}
		switch (rc.type) {
		case REC_CONFIG: {
			json_t *c;
			json_t *sz;

			r = recv_payload(m->sock, rc.len, MAX_JSON, &p, &err);
			if (r < 0) {
				goto fail;
			}
			c = json_loads(p, 0, NULL);
			free(p);
			sz = json_object_get(c, "memory-size");
			mem_size = json_is_integer(sz) ? (uint64_t)json_integer_value(sz) : 0;
			json_decref(c);
			if (mem_size != vm_config_memory_total(m->rv->cfg) || memfd >= 0) {
				r = error_set(&err, EINVAL,
					      "the source's VM has %" PRIu64
					      " bytes of RAM, this one %" PRIu64,
					      mem_size, vm_config_memory_total(m->rv->cfg));
				goto fail;
			}
			memfd = memfd_create("vmmd-migration", MFD_CLOEXEC);
			if (memfd < 0 || ftruncate(memfd, (off_t)mem_size) < 0) {
				r = error_set_errno(&err, errno, "cannot allocate RAM");
				goto fail;
			}
			atomic_store(&m->total, mem_size);
			break;
		}
		case REC_MEMFD: {
			int fd;

			if (memfd < 0 || rc.count != 1 || rc.len != 0) {
				r = error_set(&err, EPROTO, "malformed RAM fd record");
				goto fail;
			}
			fd = recv_memfd(m->sock, mem_size, &err);
			if (fd < 0) {
				r = fd;
				goto fail;
			}
			close(memfd);
			memfd = fd;
			shared = true;
			break;
		}
		case REC_TAPFD:
			if (memfd < 0) {
				r = error_set(&err, EPROTO, "a tap fd before the configuration");
				goto fail;
			}
			r = recv_tap(m, &rc, &err);
			if (r < 0) {
				goto fail;
			}
			break;
		case REC_PAGES:
		case REC_XBZRLE:
			if (shared) {
				r = error_set(&err, EPROTO, "RAM pages after the RAM's fd");
				goto fail;
			}
			r = rc.type == REC_PAGES ? recv_pages(m, memfd, mem_size, &rc, buf, &err)
						 : recv_xbzrle(m, memfd, mem_size, &rc, buf, &err);
			if (r < 0) {
				goto fail;
			}
			break;
		case REC_MANIFEST:
			r = recv_payload(m->sock, rc.len, MAX_JSON, &p, &err);
			if (r < 0) {
				goto fail;
			}
			json_decref(manifest);
			manifest = json_loads(p, JSON_REJECT_DUPLICATES, NULL);
			free(p);
			if (!manifest) {
				r = error_set(&err, EPROTO, "the manifest is not JSON");
				goto fail;
			}
			break;
		case REC_PRELAUNCH:
			if (rc.len != 0) {
				r = error_set(&err, EPROTO, "a prelaunch record with a payload");
				goto fail;
			}
			m->prelaunch = true;
			break;
		case REC_STATE:
			free(state);
			state = NULL;
			r = recv_payload(m->sock, rc.len, MAX_STATE, &state, &err);
			if (r < 0) {
				goto fail;
			}
			state_len = rc.len;
			break;
		default:
			r = error_set(&err, EPROTO, "unknown record type %u", rc.type);
			goto fail;
		}
	}
	if (!manifest || !state || memfd < 0) {
		r = error_set(&err, EPROTO, "the stream ended without RAM, manifest or state");
		goto fail;
	}
	r = vm_snapshot_from_stream(manifest, state, state_len, memfd, &snap, &err);
	manifest = NULL;
	state = NULL;
	memfd = -1;
	if (r < 0) {
		goto fail;
	}
	if (shared) {
		vm_snapshot_share_memory(snap);
	}
	reply(m, REC_READY, 0, NULL);
	ready_sent = true;
	{
		struct rec go;

		r = recv_rec(m->sock, &go);
		if (r < 0 || go.type != REC_GO) {
			r = error_set(&err, ECONNRESET,
				      "the source went away before handing the VM over");
			goto fail;
		}
	}
	/*
	 * Build the VM here (its disks open now that the source released
	 * them; RAM is the memfd mapped privately), then the control thread
	 * adopts and resumes it.
	 */
	r = vm_restore_into(pre, snap, true, &m->new_vm, &err);
	pre = NULL;
	vm_snapshot_close(snap);
	snap = NULL;
	if (r < 0) {
		goto fail;
	}
	sandbox_work_for(NULL);
	pthread_mutex_lock(&m->lock);
	m->adopt_asked = true;
	notify(m);
	while (!m->adopt_done) {
		pthread_cond_wait(&m->cond, &m->lock);
	}
	r = m->adopt_result;
	if (r < 0) {
		error_set(&err, -r, "%s", m->adopt_error ? m->adopt_error : "cancelled");
	}
	pthread_mutex_unlock(&m->lock);
	if (r < 0) {
		goto fail;
	}
	reply(m, REC_DONE, 0, NULL);
	atomic_store(&m->total_ms, ms_since(&m->t0));
	set_status(m, MIG_COMPLETED);
	log_full(LOG_INFO, m->name, NULL, "migrated in: %" PRIu64 " bytes in %" PRIu64 " ms",
		 atomic_load(&m->transferred), atomic_load(&m->total_ms));
	goto out;

fail:
	/* Tap fds received for a VM that is not built here: closed now, not with m. */
	pthread_mutex_lock(&m->lock);
	if (!m->adopt_asked && m->inst) {
		registry_instance_drop_nic_fds(m->inst);
	}
	pthread_mutex_unlock(&m->lock);
	if (m->sock >= 0) {
		reply(m, ready_sent ? REC_DONE : REC_READY, r < 0 ? -r : EIO,
		      err ? err->msg : "failed");
	}
	set_error(m, err ? err->msg : "failed");
	log_full(LOG_ERR, m->name, NULL, "incoming migration failed: %s", err ? err->msg : "?");
	set_status(m, MIG_FAILED);
out:
	error_free(err);
	vm_destroy(pre);
	vm_snapshot_close(snap);
	json_decref(manifest);
	free(state);
	free(buf);
	if (memfd >= 0) {
		close(memfd);
	}
	end_tls();
	if (m->sock >= 0) {
		shutdown(m->sock, SHUT_RDWR);
	}
	notify(m);
	return NULL;
}

/* ---- control thread ----------------------------------------------------------- */

/* *@dst = a copy of @src when it is set and not empty; false: out of memory */
static bool copy_param(char **dst, const char *src)
{
	if (!src || !src[0]) {
		return true;
	}
	*dst = strdup(src);
	return *dst != NULL;
}

static struct migration *mig_new(struct registry_vm *rv, bool incoming, struct error **errp)
{
	struct migration *m = calloc(1, sizeof(*m));

	if (!m) {
		error_set(errp, ENOMEM, "out of memory");
		return NULL;
	}
	m->rv = rv;
	m->reg = rv->reg;
	m->incoming = incoming;
	m->sock = m->listen_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->name = strdup(rv->name);
	m->events = !rv->mig_no_events;
	m->auto_converge = rv->mig_auto_converge;
	m->xbzrle = !incoming && rv->mig_xbzrle;
	m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->ev = m->efd >= 0 ? event_new(registry_base(rv->reg), m->efd, EV_READ | EV_PERSIST,
					on_notify, m)
			    : NULL;
	if (!m->name || !m->ev || event_add(m->ev, NULL) < 0) {
		mig_free(m);
		error_set(errp, ENOMEM, "out of memory");
		return NULL;
	}
	if (rv->mig_tls_creds && rv->mig_tls_creds[0]) {
		m->creds = tls_creds_get(rv->mig_tls_creds);
		/* a lost tls-authz would let any certified peer in: fail instead */
		if (!copy_param(&m->tls_id, rv->mig_tls_creds) ||
		    !copy_param(&m->tls_host, rv->mig_tls_hostname) ||
		    !copy_param(&m->tls_authz, rv->mig_tls_authz)) {
			mig_free(m);
			error_set(errp, ENOMEM, "out of memory");
			return NULL;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &m->t0);
	return m;
}

static int spawn(struct migration *m, void *(*fn)(void *), struct error **errp)
{
	sigset_t old;
	int r;

	thread_block_signals(&old);
	r = pthread_create(&m->thread, NULL, fn, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		return error_set_errno(errp, r, "cannot start the migration thread");
	}
	m->running = true;
	return 0;
}

int migration_start(struct registry_vm *rv, const char *uri, int fd, struct error **errp)
{
	struct migration *m;
	enum vm_run_state st;
	int r;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running", rv->name);
	}
	if (migration_active(rv)) {
		return error_set(errp, EBUSY,
				 "There's a migration process in progress"); /* QEMU's words */
	}
	st = vm_get_state(rv->vm);
	/* prelaunch: a live VM is there only after a reset of a stopped one */
	if (st != VM_STATE_RUNNING && st != VM_STATE_PAUSED && st != VM_STATE_PRELAUNCH) {
		return error_set(errp, EINVAL, "VM '%s' cannot migrate in state %s", rv->name,
				 vm_run_state_name(st));
	}
	if (rv->busy) {
		return error_set(errp, EBUSY, "VM '%s' is busy (being saved, started or stopped)",
				 rv->name);
	}
	r = registry_disks_check(rv, errp);
	if (r < 0) {
		return r;
	}
	r = vm_migration_blocker(rv->vm, errp);
	if (r < 0) {
		return r;
	}
	m = mig_new(rv, false, errp);
	if (!m) {
		return -ENOMEM;
	}
	/* TLS checks the server's name: tls-hostname, else the tcp: URI's host (as QEMU). */
	if (m->tls_id && !m->tls_host && strncmp(uri, "tcp:", 4) == 0) {
		char *host = NULL, *port = NULL;

		if (parse_tcp(uri + 4, &host, &port) == 0) {
			m->tls_host = host;
			host = NULL;
		}
		free(host);
		free(port);
	}
	/* As QEMU: connecting is part of the migration, a failure a "failed" status. */
	m->sock = fd;
	if (fd < 0 && !(m->uri = strdup(uri))) {
		mig_free(m);
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (fd < 0 && strncmp(uri, "tcp:", 4) != 0 && strncmp(uri, "unix:", 5) != 0) {
		mig_free(m);
		return error_set(errp, EINVAL,
				 "migration URI '%s' is not supported (tcp:HOST:PORT, unix:PATH, "
				 "fd:NAME)",
				 uri);
	}
	migration_free(rv);
	rv->mig = m;
	m->vm_flag = registry_violation_flag(rv);
	set_status(m, MIG_SETUP);
	r = spawn(m, source_thread, errp);
	if (r < 0) {
		set_status(m, MIG_FAILED);
		return r;
	}
	log_full(LOG_INFO, rv->name, NULL, "migrating to %s", uri);
	return 0;
}

int migration_incoming(struct registry_vm *rv, const char *uri, int fd, struct error **errp)
{
	struct migration *m;
	int r;

	if (!rv->inmigrate || rv->vm) {
		return error_set(errp, EINVAL,
				 "VM '%s' is not waiting for a migration (create it with "
				 "\"incoming\": true)",
				 rv->name);
	}
	if (rv->mig && (migration_active(rv) || atomic_load(&rv->mig->status) != MIG_NONE)) {
		return error_set(errp, EBUSY,
				 "The incoming migration has already been started"); /* QEMU's */
	}
	m = mig_new(rv, true, errp);
	if (!m) {
		return -ENOMEM;
	}
	m->inst = registry_adopt_prepare(rv, errp);
	if (!m->inst) {
		mig_free(m);
		return -ENOMEM;
	}
	m->listen_fd = fd >= 0 ? fd : open_uri(uri, true, NULL, errp);
	if (m->listen_fd < 0) {
		r = m->listen_fd;
		m->listen_fd = -1;
		mig_free(m);
		return r;
	}
	migration_free(rv);
	rv->mig = m;
	r = spawn(m, dest_thread, errp);
	if (r < 0) {
		migration_free(rv);
		return r;
	}
	log_full(LOG_INFO, rv->name, NULL, "waiting for a migration on %s", uri);
	return 0;
}

int migration_cancel(struct registry_vm *rv, struct error **errp)
{
	struct migration *m = rv->mig;

	if (!m || !m->running || m->incoming || atomic_load(&m->status) >= MIG_COMPLETED) {
		return 0; /* QEMU: nothing to cancel is not an error */
	}
	atomic_store(&m->cancel, true);
	set_status(m, MIG_CANCELLING);
	/* Wake the worker out of a blocked send or receive. */
	if (m->sock >= 0) {
		shutdown(m->sock, SHUT_RDWR);
	}
	return 0;
}

/* query-migrate's "xbzrle-cache" (QEMU's XBZRLECacheStats), over the whole migration. */
static json_t *xbzrle_query(struct registry_vm *rv, struct migration *m)
{
	uint64_t lookups = atomic_load(&m->xb_lookups), pages = atomic_load(&m->xb_pages);
	uint64_t bytes = atomic_load(&m->xb_bytes), miss = atomic_load(&m->xb_miss);

	return json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:I}", "cache-size",
			 (json_int_t)migration_xbzrle_cache_size(rv), "bytes", (json_int_t)bytes,
			 "pages", (json_int_t)pages, "cache-miss", (json_int_t)miss,
			 "cache-miss-rate", lookups ? (double)miss / (double)lookups : 0.0,
			 "encoding-rate", bytes ? (double)(pages * PAGE) / (double)bytes : 0.0,
			 "overflow", (json_int_t)atomic_load(&m->xb_overflow));
}

json_t *migration_query(struct registry_vm *rv)
{
	struct migration *m = rv->mig;
	enum mig_status s = MIG_NONE;
	json_t *o, *ram;

	if (m) {
		pthread_mutex_lock(&m->lock); /* see set_status */
		s = atomic_load(&m->status);
		pthread_mutex_unlock(&m->lock);
	}

	/*
	 * A final status is read only once the worker is joined: a client that
	 * sees "failed" on a destination then finds the VM out of inmigrate.
	 */
	if (m && m->running) {
		reap(m);
	}
	if (s == MIG_NONE) {
		return json_object();
	}
	o = json_pack("{s:s}", "status", status_names[s]);
	if (s == MIG_FAILED) {
		pthread_mutex_lock(&m->lock);
		json_object_set_new(o, "error-desc", json_string(m->error ? m->error : "failed"));
		pthread_mutex_unlock(&m->lock);
	}
	if (s != MIG_ACTIVE && s != MIG_COMPLETED && s != MIG_CANCELLING) {
		return o;
	}
	ram = json_pack("{s:I, s:I, s:I, s:I, s:i, s:I, s:I, s:I, s:f, s:I, s:i}", "transferred",
			(json_int_t)atomic_load(&m->transferred), "remaining",
			(json_int_t)atomic_load(&m->remaining), "total",
			(json_int_t)atomic_load(&m->total), "duplicate",
			(json_int_t)atomic_load(&m->duplicate), "skipped", 0, "normal",
			(json_int_t)atomic_load(&m->normal), "normal-bytes",
			(json_int_t)(atomic_load(&m->normal) * PAGE), "dirty-pages-rate",
			(json_int_t)atomic_load(&m->dirty_rate), "mbps",
			(double)atomic_load(&m->mbps_x1000) / 1000.0, "dirty-sync-count",
			(json_int_t)atomic_load(&m->passes), "page-size", (int)PAGE);
	json_object_set_new(o, "ram", ram);
	if (m->xbzrle) {
		json_object_set_new(o, "xbzrle-cache", xbzrle_query(rv, m));
	}
	json_object_set_new(o, "setup-time", json_integer((json_int_t)atomic_load(&m->setup_ms)));
	if (!m->incoming && rv->vm && vm_cpu_throttle(rv->vm)) {
		json_object_set_new(o, "cpu-throttle-percentage",
				    json_integer((json_int_t)vm_cpu_throttle(rv->vm)));
	}
	if (s == MIG_COMPLETED) {
		json_object_set_new(o, "total-time",
				    json_integer((json_int_t)atomic_load(&m->total_ms)));
		if (!m->incoming) {
			json_object_set_new(o, "downtime",
					    json_integer((json_int_t)atomic_load(&m->downtime_ms)));
		}
	} else {
		json_object_set_new(o, "total-time", json_integer((json_int_t)ms_since(&m->t0)));
		json_object_set_new(
			o, "expected-downtime",
			json_integer((json_int_t)atomic_load(&m->expected_downtime_ms)));
	}
	return o;
}
