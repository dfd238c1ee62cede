/*
 * The Ceph RBD protocol driver, a client built on librados/librbd.
 *
 * Names, as QEMU's: "rbd:POOL/IMAGE", "rbd:POOL/NAMESPACE/IMAGE", with
 * "@SNAPSHOT" after the image (read-only) and ":key=value" options after
 * that (conf=FILE, id=USER, timeout=SECONDS, and the Ceph settings listed
 * in allowed_options, e.g. mon_host=127.0.0.1:6789); or blockdev options
 *   {"pool": P, "image": I, "namespace": N, "snapshot": S, "user": U, "conf": FILE}
 * A ":" or "@" inside a name is written "\:" / "\@" as in QEMU.
 *
 * Every librbd request is issued with librbd's asynchronous API and waited
 * for on the calling block worker thread, so guest requests stay off the
 * vCPU and control threads and several can be in flight on one image.
 * Connecting to the cluster runs under a deadline (client_mount_timeout and
 * the monitor/OSD operation timeouts, 30 s by default; a "timeout" option
 * changes it): a cluster that stops answering fails the open or the request
 * with -ETIMEDOUT instead of hanging.
 *
 * A writable image is opened with RBD's exclusive lock taken explicitly
 * (rbd_lock_acquire): while one vmmd has the image open for writing,
 * another client's attempt fails and names the lock owner, as the file
 * driver's OFD locks do for local images. BLOCK_O_NO_LOCK skips it.
 *
 * Threads: open, close, create and truncate on the caller's thread (never
 * the daemon's control thread); requests from any I/O worker thread
 * (librbd is thread-safe per image).
 *
 * librbd and librados are not linked: they are loaded with dlopen when the
 * first RBD image is opened or created (rbd_load). Linked, they put Ceph's
 * code and static initialisers into every vmmd, RBD or not: ~14 MiB more
 * resident library pages, ~3.4 MiB more anonymous memory at start, and
 * one initialiser (libceph-common's get_global_options) grows a ~456 KiB
 * std::vector to ~912 KiB while the daemon starts. Freeing the first, mmap()ed, block
 * raises glibc's dynamic thresholds for the whole process (mmap 456 KiB,
 * trim 912 KiB), and malloc_trim() never trims the top of a thread arena:
 * after many VM lifecycles each of the 16 arenas kept up to ~300 KiB
 * resident (test-security-lifecycles: +3.0-3.4 MiB instead of +0.7 MiB).
 * Loaded on demand, a daemon without RBD disks runs none of that. There is
 * no second allocator to fear: Debian's librbd1/librados2 use glibc's
 * malloc (no tcmalloc or jemalloc among their dependencies).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block-int.h"
#include "common/cleanup.h"
#include "common/pathpol.h"

#define RBD_DEFAULT_TIMEOUT_S 30
#define RBD_MAX_TIMEOUT_S 3600
#define RBD_MAX_NAME 4096
#define RBD_MAX_OPTS 32
#define RBD_TRIM_THRESHOLD (128 * 1024) /* glibc's DEFAULT_TRIM_THRESHOLD */

struct rbd_name {
	char *pool, *ns, *image, *snap, *user, *conf;
	/* other Ceph settings from the ":key=value" tail */
	char *keys[RBD_MAX_OPTS], *values[RBD_MAX_OPTS];
	unsigned nopts;
	unsigned timeout_s;
};

struct rbd_state {
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t image;
	struct rbd_name name;
	uint64_t size;
	bool locked;
};

/* The librados/librbd calls of this driver, resolved by rbd_load(). */
#define RADOS_CALLS(X)                \
	X(rados_create);              \
	X(rados_conf_read_file);      \
	X(rados_conf_set);            \
	X(rados_connect);             \
	X(rados_ioctx_create);        \
	X(rados_ioctx_set_namespace); \
	X(rados_ioctx_destroy);       \
	X(rados_shutdown);
#define RBD_CALLS(X)                    \
	X(rbd_open);                    \
	X(rbd_open_read_only);          \
	X(rbd_close);                   \
	X(rbd_create);                  \
	X(rbd_resize);                  \
	X(rbd_get_size);                \
	X(rbd_stat);                    \
	X(rbd_flush);                   \
	X(rbd_lock_acquire);            \
	X(rbd_lock_release);            \
	X(rbd_lock_get_owners);         \
	X(rbd_lock_get_owners_cleanup); \
	X(rbd_aio_create_completion);   \
	X(rbd_aio_release);             \
	X(rbd_aio_wait_for_complete);   \
	X(rbd_aio_get_return_value);    \
	X(rbd_aio_readv);               \
	X(rbd_aio_writev);              \
	X(rbd_aio_flush);               \
	X(rbd_aio_discard);             \
	X(rbd_aio_write_zeroes);

static struct {
#define X(fn) __typeof__(fn) *fn
	RADOS_CALLS(X)
	RBD_CALLS(X)
#undef X
} lib;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256]; /* why loading failed, empty when it worked */

static void *load_symbol(void *handle, const char *soname, const char *fn)
{
	void *sym = dlsym(handle, fn);

	if (!sym && !lib_error[0]) {
		snprintf(lib_error, sizeof(lib_error), "%s has no %s", soname, fn);
	}
	return sym;
}

static void load_libraries(void)
{
	/* Never closed: librados' threads and atexit handlers outlive any image. */
	void *rados = dlopen("librados.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	void *rbd = rados ? dlopen("librbd.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) : NULL;

	if (!rados || !rbd) {
		snprintf(lib_error, sizeof(lib_error), "%s", dlerror());
		return;
	}
#define X(fn) lib.fn = (__typeof__(fn) *)load_symbol(rados, "librados.so.2", #fn)
	RADOS_CALLS(X)
#undef X
#define X(fn) lib.fn = (__typeof__(fn) *)load_symbol(rbd, "librbd.so.1", #fn)
	RBD_CALLS(X)
#undef X
	/*
	 * Loading ran libceph-common's initialisers, which raised glibc's
	 * dynamic trim threshold to ~912 KiB (see the top of this file): put
	 * it back to glibc's default so that thread arenas give their free
	 * tops back again. This also stops the dynamic adjustment.
	 */
	mallopt(M_TRIM_THRESHOLD, RBD_TRIM_THRESHOLD);
}

/* Load librados and librbd once; an error names what is missing. */
static int rbd_load(struct error **errp)
{
	pthread_once(&lib_once, load_libraries);
	if (lib_error[0]) {
		return error_set(errp, ENOSYS, "rbd: cannot load librbd (Debian: librbd1): %s",
				 lib_error);
	}
	return 0;
}

static struct rbd_state *state(struct block_node *bs)
{
	return bs->opaque;
}

static void name_clear(struct rbd_name *n)
{
	free(n->pool);
	free(n->ns);
	free(n->image);
	free(n->snap);
	free(n->user);
	free(n->conf);
	for (unsigned i = 0; i < n->nopts; i++) {
		free(n->keys[i]);
		free(n->values[i]);
	}
	memset(n, 0, sizeof(*n));
}

/*
 * Copy the next field of @*p up to one of @stops (not escaped by '\'),
 * removing the escapes; *p is left on the stop character (or the end).
 */
static char *take_field(const char **p, const char *stops)
{
	const char *s = *p;
	char *out = malloc(strlen(s) + 1), *o = out;

	if (!out) {
		return NULL;
	}
	while (*s && !strchr(stops, *s)) {
		if (*s == '\\' && s[1]) {
			s++;
		}
		*o++ = *s++;
	}
	*o = '\0';
	*p = s;
	return out;
}

static int set_timeout(struct rbd_name *n, const char *v, const char *what, struct error **errp)
{
	char *end;
	unsigned long t;

	errno = 0;
	t = strtoul(v, &end, 10);
	if (errno || *end || t == 0 || t > RBD_MAX_TIMEOUT_S) {
		return error_set(errp, EINVAL, "rbd %s: timeout must be 1 to %u seconds, not '%s'",
				 what, RBD_MAX_TIMEOUT_S, v);
	}
	n->timeout_s = (unsigned)t;
	return 0;
}

/*
 * The Ceph settings an rbd name may carry: how to reach and authenticate to
 * the cluster and the client cache. Others (log files, admin sockets, any
 * path librados would write) are refused: a client or image names them.
 */
static const char *const allowed_options[] = {
	"mon_host",
	"key",
	"keyring",
	"auth_client_required",
	"auth_supported",
	"rbd_cache",
	"rbd_cache_size",
	"rbd_cache_max_dirty",
	"rbd_cache_writethrough_until_flush",
};
#define ALLOWED_LIST                                                                \
	"mon_host, key, keyring, auth_client_required, auth_supported, rbd_cache, " \
	"rbd_cache_size, rbd_cache_max_dirty, rbd_cache_writethrough_until_flush"

static bool option_allowed(const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(allowed_options); i++) {
		if (strcmp(key, allowed_options[i]) == 0) {
			return true;
		}
	}
	return false;
}

/* Parse "rbd:POOL[/NS]/IMAGE[@SNAP][:k=v...]". */
static int name_parse(struct rbd_name *n, const char *filename, struct error **errp)
{
	const char *p = filename + strlen("rbd:");
	char *parts[3] = {NULL, NULL, NULL};
	unsigned nparts = 0;
	int r = 0;

	memset(n, 0, sizeof(*n));
	n->timeout_s = RBD_DEFAULT_TIMEOUT_S;
	if (strlen(filename) > RBD_MAX_NAME) {
		return error_set(errp, ENAMETOOLONG, "rbd name longer than %d bytes", RBD_MAX_NAME);
	}
	for (;;) {
		char *f = take_field(&p, "/@:");

		if (!f) {
			r = -ENOMEM;
			goto err;
		}
		if (nparts == ARRAY_SIZE(parts)) {
			free(f);
			r = error_set(errp, EINVAL,
				      "'%s': an rbd name is POOL/IMAGE or POOL/NAMESPACE/IMAGE",
				      filename);
			goto err;
		}
		parts[nparts++] = f;
		if (*p != '/') {
			break;
		}
		p++;
	}
	if (nparts < 2 || !*parts[0] || !*parts[nparts - 1] || (nparts == 3 && !*parts[1])) {
		r = error_set(errp, EINVAL, "'%s': an rbd name is rbd:POOL/IMAGE[@SNAPSHOT][:OPTS]",
			      filename);
		goto err;
	}
	n->pool = parts[0];
	n->ns = nparts == 3 ? parts[1] : NULL;
	n->image = parts[nparts - 1];
	memset(parts, 0, sizeof(parts)); /* owned by @n now */
	if (*p == '@') {
		p++;
		n->snap = take_field(&p, ":");
		if (!n->snap || !*n->snap) {
			r = n->snap ? error_set(errp, EINVAL, "'%s': empty snapshot name", filename)
				    : -ENOMEM;
			goto err;
		}
	}
	while (*p == ':') {
		_cleanup_free_ char *k = NULL, *v = NULL;

		p++;
		k = take_field(&p, "=:");
		if (!k) {
			r = -ENOMEM;
			goto err;
		}
		if (*p != '=') {
			r = error_set(errp, EINVAL, "'%s': option '%s' has no value", filename, k);
			goto err;
		}
		p++;
		v = take_field(&p, ":");
		if (!v) {
			r = -ENOMEM;
			goto err;
		}
		if (strcmp(k, "conf") == 0) {
			free(n->conf);
			n->conf = TAKE_PTR(v);
		} else if (strcmp(k, "id") == 0) {
			free(n->user);
			n->user = TAKE_PTR(v);
		} else if (strcmp(k, "timeout") == 0) {
			r = set_timeout(n, v, filename, errp);
			if (r < 0) {
				goto err;
			}
		} else {
			if (!option_allowed(k)) {
				r = error_set(
					errp, EINVAL,
					"'%s': option '%s' is not accepted (rbd names take conf, "
					"id, timeout, %s)",
					filename, k, ALLOWED_LIST);
				goto err;
			}
			if (n->nopts == RBD_MAX_OPTS) {
				r = error_set(errp, E2BIG, "'%s': more than %d options", filename,
					      RBD_MAX_OPTS);
				goto err;
			}
			n->keys[n->nopts] = TAKE_PTR(k);
			n->values[n->nopts++] = TAKE_PTR(v);
		}
	}
	if (*p) {
		r = error_set(errp, EINVAL, "'%s': unexpected '%s'", filename, p);
		goto err;
	}
	return 0;

err:
	for (unsigned i = 0; i < ARRAY_SIZE(parts); i++) {
		free(parts[i]);
	}
	name_clear(n);
	return r == -ENOMEM ? error_set(errp, ENOMEM, "out of memory") : r;
}

/* The structured blockdev-add form. */
static int name_from_opts(struct rbd_name *n, json_t *opts, struct error **errp)
{
	static const char *const keys[] = {"pool",     "image", "namespace",
					   "snapshot", "user",	"conf"};
	char **dst[] = {&n->pool, &n->image, &n->ns, &n->snap, &n->user, &n->conf};
	const char *key;
	json_t *v;

	memset(n, 0, sizeof(*n));
	n->timeout_s = RBD_DEFAULT_TIMEOUT_S;
	json_object_foreach (opts, key, v) {
		size_t i;

		if (strcmp(key, "timeout") == 0) {
			char buf[32];

			if (!json_is_integer(v)) {
				name_clear(n);
				return error_set(errp, EINVAL,
						 "rbd option 'timeout' must be an integer");
			}
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			if (set_timeout(n, buf, "blockdev", errp) < 0) {
				name_clear(n);
				return -EINVAL;
			}
			continue;
		}
		for (i = 0; i < ARRAY_SIZE(keys); i++) {
			if (strcmp(key, keys[i]) == 0) {
				break;
			}
		}
		if (i == ARRAY_SIZE(keys)) {
			name_clear(n);
			return error_set(errp, EINVAL, "rbd: unknown option '%s'", key);
		}
		if (!json_is_string(v) || !*json_string_value(v)) {
			name_clear(n);
			return error_set(errp, EINVAL, "rbd option '%s' must be a non-empty string",
					 key);
		}
		free(*dst[i]);
		*dst[i] = strdup(json_string_value(v));
		if (!*dst[i]) {
			name_clear(n);
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	if (!n->pool || !n->image) {
		name_clear(n);
		return error_set(errp, EINVAL, "rbd: options 'pool' and 'image' are required");
	}
	return 0;
}

static int connect_cluster(const struct rbd_name *n, const char *what, rados_t *ret_cluster,
			   rados_ioctx_t *ret_io, struct error **errp)
{
	rados_t cluster;
	rados_ioctx_t io;
	char t[16];
	int r;

	r = rbd_load(errp);
	if (r < 0) {
		return r;
	}
	r = lib.rados_create(&cluster, n->user);
	if (r < 0) {
		return error_set_errno(errp, r, "rbd %s: cannot create a cluster handle", what);
	}
	if (n->conf) {
		/* A host file the definition names: the same policy as images. */
		r = pathpol_check("ceph configuration", n->conf, errp);
		if (r < 0) {
			goto err_shutdown;
		}
		r = lib.rados_conf_read_file(cluster, n->conf);
	} else {
		r = lib.rados_conf_read_file(cluster, NULL); /* the default search path */
		if (r == -ENOENT || r == -EINVAL) {
			r = 0; /* no ceph.conf: settings may come as options */
		}
	}
	if (r < 0) {
		error_set_errno(errp, r, "rbd %s: cannot read the Ceph configuration %s", what,
				n->conf ? n->conf : "(default)");
		goto err_shutdown;
	}
	for (unsigned i = 0; i < n->nopts; i++) {
		if (strcmp(n->keys[i], "keyring") == 0) {
			r = pathpol_check("ceph keyring", n->values[i], errp);
			if (r < 0) {
				goto err_shutdown;
			}
		}
		r = lib.rados_conf_set(cluster, n->keys[i], n->values[i]);
		if (r < 0) {
			error_set_errno(errp, r, "rbd %s: invalid Ceph option %s=%s", what,
					n->keys[i], n->values[i]);
			goto err_shutdown;
		}
	}
	/*
	 * librados must not write files a configuration names (a log file or an
	 * admin socket at any path, as root): the daemon's log is its own.
	 */
	if (lib.rados_conf_set(cluster, "log_to_file", "false") < 0 ||
	    lib.rados_conf_set(cluster, "log_file", "") < 0 ||
	    lib.rados_conf_set(cluster, "admin_socket", "") < 0) {
		r = error_set(errp, EINVAL, "rbd %s: cannot turn off librados' files", what);
		goto err_shutdown;
	}
	snprintf(t, sizeof(t), "%u", n->timeout_s);
	if (lib.rados_conf_set(cluster, "client_mount_timeout", t) < 0 ||
	    lib.rados_conf_set(cluster, "rados_mon_op_timeout", t) < 0 ||
	    lib.rados_conf_set(cluster, "rados_osd_op_timeout", t) < 0) {
		r = error_set(errp, EINVAL, "rbd %s: cannot set the timeouts", what);
		goto err_shutdown;
	}
	r = lib.rados_connect(cluster);
	if (r < 0) {
		error_set_errno(errp, r, "rbd %s: cannot connect to the Ceph cluster", what);
		goto err_shutdown;
	}
	r = lib.rados_ioctx_create(cluster, n->pool, &io);
	if (r < 0) {
		error_set_errno(errp, r, "rbd %s: cannot open pool '%s'", what, n->pool);
		goto err_shutdown;
	}
	if (n->ns) {
		lib.rados_ioctx_set_namespace(io, n->ns);
	}
	*ret_cluster = cluster;
	*ret_io = io;
	return 0;

err_shutdown:
	lib.rados_shutdown(cluster);
	return r < 0 ? r : -EIO;
}

/* "client.4123 (127.0.0.1:0/12345)": who holds the exclusive lock, for messages. */
static void lock_owner(rbd_image_t image, char *buf, size_t size)
{
	rbd_lock_mode_t mode;
	char *owners[4];
	size_t n = ARRAY_SIZE(owners);

	snprintf(buf, size, "another client");
	if (lib.rbd_lock_get_owners(image, &mode, owners, &n) == 0 && n > 0) {
		snprintf(buf, size, "%s", owners[0]);
		lib.rbd_lock_get_owners_cleanup(owners, n);
	}
}

static void rbd_close_node(struct block_node *bs)
{
	struct rbd_state *s = state(bs);

	if (!s) {
		return;
	}
	if (s->image) {
		if (!bs->read_only) {
			lib.rbd_flush(s->image);
		}
		if (s->locked) {
			lib.rbd_lock_release(s->image);
		}
		lib.rbd_close(s->image);
	}
	lib.rados_ioctx_destroy(s->io);
	lib.rados_shutdown(s->cluster);
	name_clear(&s->name);
	free(s);
	bs->opaque = NULL;
}

static int rbd_open_node(struct block_node *bs, const char *filename, json_t *opts,
			 struct error **errp)
{
	struct rbd_state *s = calloc(1, sizeof(*s));
	int r;

	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (strncmp(filename, "rbd:", 4) == 0) {
		r = name_parse(&s->name, filename, errp);
	} else {
		r = name_from_opts(&s->name, opts, errp);
	}
	if (r < 0) {
		free(s);
		return r;
	}
	if (s->name.snap && !bs->read_only) {
		name_clear(&s->name);
		free(s);
		return error_set(errp, EROFS, "rbd image '%s' at a snapshot is read-only",
				 filename);
	}
	r = connect_cluster(&s->name, filename, &s->cluster, &s->io, errp);
	if (r < 0) {
		name_clear(&s->name);
		free(s);
		return r;
	}
	bs->opaque = s;
	if (bs->read_only) {
		r = lib.rbd_open_read_only(s->io, s->name.image, &s->image, s->name.snap);
	} else {
		r = lib.rbd_open(s->io, s->name.image, &s->image, NULL);
	}
	if (r < 0) {
		s->image = NULL;
		error_set_errno(errp, r, "cannot open rbd image '%s' in pool '%s'", s->name.image,
				s->name.pool);
		goto err_close;
	}
	if (!bs->read_only && !(bs->flags & BLOCK_O_NO_LOCK)) {
		r = lib.rbd_lock_acquire(s->image, RBD_LOCK_MODE_EXCLUSIVE);
		if (r < 0) {
			char owner[256];

			lock_owner(s->image, owner, sizeof(owner));
			if (r == -EROFS || r == -EBUSY || r == -EAGAIN) {
				error_set(errp, EAGAIN,
					  "rbd image '%s/%s' is in use: its exclusive lock is held "
					  "by %s",
					  s->name.pool, s->name.image, owner);
				r = -EAGAIN;
			} else {
				error_set_errno(errp, r, "cannot lock rbd image '%s/%s'",
						s->name.pool, s->name.image);
			}
			goto err_close;
		}
		s->locked = true;
	}
	r = lib.rbd_get_size(s->image, &s->size);
	if (r < 0) {
		error_set_errno(errp, r, "cannot get the size of rbd image '%s'", s->name.image);
		goto err_close;
	}
	return 0;

err_close:
	rbd_close_node(bs);
	return r;
}

/*
 * Live migration's hand-over (block_set_active): the source releases RBD's
 * exclusive lock after flushing, once the destination has everything, and
 * keeps the image open; the destination takes the lock when it opens the
 * image. If the destination fails, the source takes the lock back; that
 * fails, naming the holder, if someone else took the image meanwhile.
 */
static int rbd_set_active(struct block_node *bs, bool active, struct error **errp)
{
	struct rbd_state *s = state(bs);
	int r;

	if (bs->read_only || (bs->flags & BLOCK_O_NO_LOCK) || s->locked == active) {
		return 0;
	}
	if (!active) {
		r = lib.rbd_lock_release(s->image);
		if (r < 0) {
			return error_set_errno(errp, r,
					       "cannot release the lock of rbd image '%s/%s'",
					       s->name.pool, s->name.image);
		}
		s->locked = false;
		return 0;
	}
	r = lib.rbd_lock_acquire(s->image, RBD_LOCK_MODE_EXCLUSIVE);
	if (r < 0) {
		char owner[256];

		lock_owner(s->image, owner, sizeof(owner));
		return error_set_errno(
			errp, r, "cannot take back the lock of rbd image '%s/%s' (held by %s)",
			s->name.pool, s->name.image, owner);
	}
	s->locked = true;
	return 0;
}

static uint64_t rbd_get_length(struct block_node *bs)
{
	return __atomic_load_n(&state(bs)->size, __ATOMIC_RELAXED);
}

enum rbd_op {
	RBD_READ,
	RBD_WRITE,
	RBD_FLUSH,
	RBD_DISCARD,
	RBD_ZERO
};

/* Issue one asynchronous librbd request and wait for it on this thread. */
static int rbd_request(struct block_node *bs, enum rbd_op op, uint64_t offset,
		       const struct iovec *iov, unsigned cnt, uint64_t len)
{
	struct rbd_state *s = state(bs);
	rbd_completion_t c;
	ssize_t ret;
	int r;

	r = lib.rbd_aio_create_completion(NULL, NULL, &c);
	if (r < 0) {
		return r;
	}
	switch (op) {
	case RBD_READ:
		r = lib.rbd_aio_readv(s->image, iov, (int)cnt, offset, c);
		break;
	case RBD_WRITE:
		r = lib.rbd_aio_writev(s->image, iov, (int)cnt, offset, c);
		break;
	case RBD_FLUSH:
		r = lib.rbd_aio_flush(s->image, c);
		break;
	case RBD_DISCARD:
		r = lib.rbd_aio_discard(s->image, offset, len, c);
		break;
	case RBD_ZERO:
		r = lib.rbd_aio_write_zeroes(s->image, offset, len, c, 0, 0);
		break;
	}
	if (r < 0) {
		lib.rbd_aio_release(c);
		return r;
	}
	lib.rbd_aio_wait_for_complete(c);
	ret = lib.rbd_aio_get_return_value(c);
	lib.rbd_aio_release(c);
	if (ret < 0) {
		return (int)ret;
	}
	/* a read answers its length; the others 0 */
	if (op == RBD_READ && (uint64_t)ret != len) {
		return -EIO;
	}
	return 0;
}

static int rbd_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov, unsigned cnt,
		      uint64_t len)
{
	return rbd_request(bs, RBD_READ, offset, iov, cnt, len);
}

static int rbd_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len)
{
	return rbd_request(bs, RBD_WRITE, offset, iov, cnt, len);
}

static int rbd_flush_node(struct block_node *bs)
{
	return rbd_request(bs, RBD_FLUSH, 0, NULL, 0, 0);
}

static int rbd_discard_node(struct block_node *bs, uint64_t offset, uint64_t len)
{
	return rbd_request(bs, RBD_DISCARD, offset, NULL, 0, len);
}

static int rbd_write_zeroes_node(struct block_node *bs, uint64_t offset, uint64_t len,
				 unsigned flags)
{
	(void)flags; /* librbd deallocates whole objects and zeroes the rest either way */
	return rbd_request(bs, RBD_ZERO, offset, NULL, 0, len);
}

static int rbd_truncate_node(struct block_node *bs, uint64_t len, struct error **errp)
{
	struct rbd_state *s = state(bs);
	int r = lib.rbd_resize(s->image, len);

	if (r < 0) {
		return error_set_errno(errp, r, "cannot resize rbd image '%s/%s'", s->name.pool,
				       s->name.image);
	}
	__atomic_store_n(&s->size, len, __ATOMIC_RELAXED);
	return 0;
}

static void rbd_info(struct block_node *bs, json_t *info)
{
	struct rbd_state *s = state(bs);
	rbd_image_info_t st;
	json_t *o = json_object();

	if (!o) {
		return;
	}
	json_object_set_new(o, "pool", json_string(s->name.pool));
	json_object_set_new(o, "image", json_string(s->name.image));
	if (s->name.ns) {
		json_object_set_new(o, "namespace", json_string(s->name.ns));
	}
	if (s->name.snap) {
		json_object_set_new(o, "snapshot", json_string(s->name.snap));
	}
	if (lib.rbd_stat(s->image, &st, sizeof(st)) == 0) {
		json_object_set_new(o, "object-size", json_integer((json_int_t)st.obj_size));
		json_object_set_new(o, "objects", json_integer((json_int_t)st.num_objs));
	}
	json_object_set_new(info, "rbd", o);
}

/*
 * vmm-img create -f raw rbd:POOL/IMAGE SIZE (the core sends a raw image on
 * an RBD name here). Option: cluster_size (the object size, a power of two
 * from 4 KiB to 32 MiB), as QEMU's rbd driver.
 */
static int rbd_create_image(const char *filename, uint64_t size, json_t *opts, struct error **errp)
{
	struct rbd_name n;
	rados_t cluster;
	rados_ioctx_t io;
	const char *key;
	json_t *v;
	int order = 0, r;

	json_object_foreach (opts, key, v) {
		if (strcmp(key, "cluster_size") == 0 && json_is_string(v)) {
			char *end;
			unsigned long long cs = strtoull(json_string_value(v), &end, 10);

			if (*end || cs < 4096 || cs > (32u << 20) || (cs & (cs - 1))) {
				return error_set(errp, EINVAL,
						 "rbd cluster_size must be a power of two from "
						 "4096 to 33554432, not '%s'",
						 json_string_value(v));
			}
			order = __builtin_ctzll(cs);
		} else if (strcmp(key, "size") != 0) {
			return error_set(errp, EINVAL,
					 "invalid option '%s' for an rbd image (rbd takes "
					 "cluster_size)",
					 key);
		}
	}
	r = name_parse(&n, filename, errp);
	if (r < 0) {
		return r;
	}
	if (n.snap) {
		name_clear(&n);
		return error_set(errp, EINVAL, "'%s': cannot create an image at a snapshot",
				 filename);
	}
	r = connect_cluster(&n, filename, &cluster, &io, errp);
	if (r < 0) {
		name_clear(&n);
		return r;
	}
	r = lib.rbd_create(io, n.image, size, &order);
	if (r < 0) {
		error_set_errno(errp, r, "could not create rbd image '%s' in pool '%s'", n.image,
				n.pool);
	}
	lib.rados_ioctx_destroy(io);
	lib.rados_shutdown(cluster);
	name_clear(&n);
	return r;
}

const struct block_driver rbd_driver = {
	.name = "rbd",
	.is_protocol = true,
	.create = rbd_create_image,
	.open = rbd_open_node,
	.close = rbd_close_node,
	.get_length = rbd_get_length,
	.preadv = rbd_preadv,
	.pwritev = rbd_pwritev,
	.flush = rbd_flush_node,
	.discard = rbd_discard_node,
	.write_zeroes = rbd_write_zeroes_node,
	.truncate = rbd_truncate_node,
	.info = rbd_info,
	.set_active = rbd_set_active,
};
