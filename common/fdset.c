/* fd sets (add-fd, /dev/fdset/N): see fdset.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fdset.h"
#include "common/list.h"

struct fdset_fd {
	struct list_head link;
	int fd;
	char *opaque;
};

struct fdset {
	struct list_head link; /* in sets, ascending id */
	int64_t id;
	struct list_head fds; /* ascending fd */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head sets = LIST_HEAD_INIT(sets);
static unsigned n_fds;

static struct fdset *find(int64_t id)
{
	struct list_head *p;

	list_for_each (p, &sets) {
		struct fdset *s = list_entry(p, struct fdset, link);

		if (s->id == id) {
			return s;
		}
	}
	return NULL;
}

static void free_fd(struct fdset_fd *f)
{
	list_del(&f->link);
	close(f->fd);
	free(f->opaque);
	free(f);
	n_fds--;
}

static void drop_if_empty(struct fdset *s)
{
	if (list_empty(&s->fds)) {
		list_del(&s->link);
		free(s);
	}
}

int64_t fdset_add(bool has_id, int64_t id, int fd, const char *opaque, struct error **errp)
{
	struct fdset *s = NULL;
	struct fdset_fd *f;
	struct list_head *p, *at;
	int64_t ret;

	if (has_id && id < 0) {
		close(fd);
		return error_set(errp, EINVAL, "Parameter 'fdset-id' expects a non-negative value");
	}
	if (opaque && strlen(opaque) > FDSET_MAX_OPAQUE) {
		close(fd);
		return error_set(errp, EINVAL, "Parameter 'opaque' is longer than %u bytes",
				 FDSET_MAX_OPAQUE);
	}
	f = calloc(1, sizeof(*f));
	if (!f || (opaque && !(f->opaque = strdup(opaque)))) {
		free(f);
		close(fd);
		return error_set(errp, ENOMEM, "out of memory");
	}
	f->fd = fd;
	pthread_mutex_lock(&lock);
	if (n_fds >= FDSET_MAX_FDS) {
		pthread_mutex_unlock(&lock);
		free(f->opaque);
		free(f);
		close(fd);
		return error_set(errp, EMFILE, "The fd sets already hold %u fds (the limit)",
				 FDSET_MAX_FDS);
	}
	if (has_id) {
		s = find(id);
	} else {
		/* the lowest unused number */
		id = 0;
		list_for_each (p, &sets) {
			if (list_entry(p, struct fdset, link)->id != id) {
				break;
			}
			id++;
		}
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			pthread_mutex_unlock(&lock);
			free(f->opaque);
			free(f);
			close(fd);
			return error_set(errp, ENOMEM, "out of memory");
		}
		s->id = id;
		list_init(&s->fds);
		at = &sets;
		list_for_each (p, &sets) {
			if (list_entry(p, struct fdset, link)->id > id) {
				at = p;
				break;
			}
		}
		list_add_tail(&s->link, at); /* before the first larger id */
	}
	at = &s->fds;
	list_for_each (p, &s->fds) {
		if (list_entry(p, struct fdset_fd, link)->fd > fd) {
			at = p;
			break;
		}
	}
	list_add_tail(&f->link, at);
	n_fds++;
	ret = s->id;
	pthread_mutex_unlock(&lock);
	return ret;
}

int fdset_remove(int64_t id, bool has_fd, int64_t fd, struct error **errp)
{
	struct fdset *s;
	struct list_head *p, *n;
	bool found = false;

	pthread_mutex_lock(&lock);
	s = find(id);
	if (s) {
		list_for_each_safe (p, n, &s->fds) {
			struct fdset_fd *f = list_entry(p, struct fdset_fd, link);

			if (!has_fd || f->fd == fd) {
				free_fd(f);
				found = true;
			}
		}
		drop_if_empty(s);
	}
	pthread_mutex_unlock(&lock);
	if (s && (found || !has_fd)) {
		return 0;
	}
	if (has_fd) {
		return error_set(errp, ENOENT,
				 "File descriptor named 'fdset-id:%" PRId64 ", fd:%" PRId64
				 "' not found",
				 id, fd);
	}
	return error_set(errp, ENOENT, "File descriptor named 'fdset-id:%" PRId64 "' not found",
			 id);
}

void fdset_foreach(void (*fn)(void *opaque, int64_t id, int fd, const char *fd_opaque),
		   void *opaque)
{
	struct list_head *p, *q;

	pthread_mutex_lock(&lock);
	list_for_each (p, &sets) {
		struct fdset *s = list_entry(p, struct fdset, link);

		list_for_each (q, &s->fds) {
			struct fdset_fd *f = list_entry(q, struct fdset_fd, link);

			fn(opaque, s->id, f->fd, f->opaque);
		}
	}
	pthread_mutex_unlock(&lock);
}

bool fdset_name(const char *path, int64_t *ret_id)
{
	const char *n;
	char *end;
	long long v;

	if (!path || strncmp(path, FDSET_PREFIX, strlen(FDSET_PREFIX)) != 0) {
		return false;
	}
	n = path + strlen(FDSET_PREFIX);
	if (*n < '0' || *n > '9') {
		return false;
	}
	errno = 0;
	v = strtoll(n, &end, 10);
	if (errno || *end) {
		return false;
	}
	*ret_id = v;
	return true;
}

bool fdset_exists(int64_t id)
{
	bool r;

	pthread_mutex_lock(&lock);
	r = find(id) != NULL;
	pthread_mutex_unlock(&lock);
	return r;
}

int fdset_open(const char *path, int flags)
{
	struct fdset *s;
	struct list_head *p;
	int64_t id;
	int fd = -ENOENT;

	if (!fdset_name(path, &id)) {
		return -ENOENT;
	}
	pthread_mutex_lock(&lock);
	s = find(id);
	if (s) {
		fd = -EACCES; /* a set without an fd of the access mode asked for */
		list_for_each (p, &s->fds) {
			struct fdset_fd *f = list_entry(p, struct fdset_fd, link);
			int fl = fcntl(f->fd, F_GETFL);

			if (fl >= 0 && (fl & O_ACCMODE) == (flags & O_ACCMODE)) {
				fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
				if (fd < 0) {
					fd = -errno;
				} else if ((flags & (O_DIRECT | O_APPEND | O_NONBLOCK)) !=
					   (fl & (O_DIRECT | O_APPEND | O_NONBLOCK))) {
					/* QEMU's qemu_dup_flags: on the shared file description */
					fl = (fl & ~(O_DIRECT | O_APPEND | O_NONBLOCK)) |
					     (flags & (O_DIRECT | O_APPEND | O_NONBLOCK));
					if (fcntl(fd, F_SETFL, fl) < 0) {
						int e = errno;

						close(fd);
						fd = -e;
					}
				}
				break;
			}
		}
	}
	pthread_mutex_unlock(&lock);
	return fd;
}

void fdset_clear(void)
{
	pthread_mutex_lock(&lock);
	while (!list_empty(&sets)) {
		struct fdset *s = list_entry(sets.next, struct fdset, link);

		while (!list_empty(&s->fds)) {
			free_fd(list_entry(s->fds.next, struct fdset_fd, link));
		}
		drop_if_empty(s);
	}
	pthread_mutex_unlock(&lock);
}
