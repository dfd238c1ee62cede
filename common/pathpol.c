/*
 * The host path policy: see pathpol.h.
 *
 * Threads: any. The roots are replaced under the write side of a rwlock and
 * used under its read side, so a settings reload never closes a directory fd
 * an open in flight is using.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/fdset.h"
#include "common/pathpol.h"

struct pathpol_root {
	char *path;  /* as configured, without trailing slashes */
	char *canon; /* realpath() of it */
	int dirfd;   /* O_PATH | O_DIRECTORY */
};

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static struct pathpol_root *roots;
static size_t n_roots;
static bool force_fallback;

static void roots_free(struct pathpol_root *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].path);
		free(r[i].canon);
		if (r[i].dirfd >= 0) {
			close(r[i].dirfd);
		}
	}
	free(r);
}

int pathpol_set_roots(char *const *list, struct error **errp)
{
	struct pathpol_root *nr = NULL, *old;
	size_t n = 0, old_n;

	while (list && list[n]) {
		n++;
	}
	if (n) {
		nr = calloc(n, sizeof(*nr));
		if (!nr) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < n; i++) {
			size_t len = strlen(list[i]);

			nr[i].dirfd = -1;
			while (len > 1 && list[i][len - 1] == '/') {
				len--;
			}
			nr[i].path = strndup(list[i], len);
			nr[i].canon = realpath(list[i], NULL);
			if (!nr[i].path || !nr[i].canon) {
				int r = error_set_errno(errp, errno ? errno : ENOMEM,
							"image root %s", list[i]);

				roots_free(nr, n);
				return r;
			}
			nr[i].dirfd = open(nr[i].canon, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (nr[i].dirfd < 0) {
				int r = error_set_errno(errp, errno, "image root %s", list[i]);

				roots_free(nr, n);
				return r;
			}
		}
	}
	pthread_rwlock_wrlock(&lock);
	old = roots;
	old_n = n_roots;
	roots = nr;
	n_roots = n;
	pthread_rwlock_unlock(&lock);
	roots_free(old, old_n);
	return 0;
}

bool pathpol_active(void)
{
	bool on;

	pthread_rwlock_rdlock(&lock);
	on = n_roots > 0;
	pthread_rwlock_unlock(&lock);
	return on;
}

void pathpol_force_fallback(bool on)
{
	force_fallback = on;
}

/* The part of absolute @path below @prefix, or NULL. "" for the root itself. */
static const char *below(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 1 && prefix[0] == '/') {
		return path + 1;
	}
	if (strncmp(path, prefix, n) != 0 || (path[n] != '/' && path[n] != '\0')) {
		return NULL;
	}
	path += n;
	while (*path == '/') {
		path++;
	}
	return path;
}

/* Walk @rel from @dirfd one component at a time: no "..", no symbolic link. */
static int walk_open(int dirfd, const char *rel, int flags, mode_t mode)
{
	_cleanup_free_ char *copy = strdup(rel);
	int cur = dirfd;
	char *save = NULL, *comp, *next;
	int fd;

	if (!copy) {
		return -ENOMEM;
	}
	comp = strtok_r(copy, "/", &save);
	if (!comp) {
		fd = openat(dirfd, ".", flags, mode);
		return fd < 0 ? -errno : fd;
	}
	for (;;) {
		next = strtok_r(NULL, "/", &save);
		if (strcmp(comp, "..") == 0) {
			fd = -PATHPOL_DENIED;
			break;
		}
		if (!next) {
			fd = openat(cur, comp, flags | O_NOFOLLOW, mode);
			/* O_NOFOLLOW on a symbolic link fails with ELOOP (O_PATH opens the link). */
			if (fd >= 0 && (flags & O_PATH)) {
				struct stat st;

				if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
					close(fd);
					fd = -1;
					errno = ELOOP;
				}
			}
			fd = fd < 0 ? (errno == ELOOP ? -PATHPOL_DENIED : -errno) : fd;
			break;
		}
		if (strcmp(comp, ".") != 0) {
			int nfd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (nfd < 0) {
				/* A symbolic link to a directory fails with ENOTDIR here. */
				struct stat st;

				fd = -errno;
				if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    S_ISLNK(st.st_mode)) {
					fd = -PATHPOL_DENIED;
				}
				break;
			}
			if (cur != dirfd) {
				close(cur);
			}
			cur = nfd;
		}
		comp = next;
	}
	if (cur != dirfd) {
		close(cur);
	}
	return fd;
}

static int open_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)flags,
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	if (!*rel) {
		rel = ".";
	}
	if (!force_fallback) {
		fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
		if (fd >= 0) {
			return (int)fd;
		}
		if (errno == EXDEV || errno == ELOOP) {
			return -PATHPOL_DENIED;
		}
		if (errno != ENOSYS && errno != EPERM) {
			/* EPERM: a seccomp filter of a container that does not know openat2. */
			return -errno;
		}
	}
	return walk_open(dirfd, rel, flags, mode);
}

int pathpol_open(const char *path, int flags, mode_t mode)
{
	_cleanup_free_ char *abs = NULL;
	int fd = -PATHPOL_DENIED;
	int64_t set;

	/* openat2 accepts only O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC with O_PATH. */
	flags |= O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY);
	if (!path || !*path) {
		return -ENOENT;
	}
	if (fdset_name(path, &set)) {
		/* an fd the client passed (add-fd): no file system access at all */
		return fdset_open(path, flags);
	}
	pthread_rwlock_rdlock(&lock);
	if (n_roots == 0) {
		pthread_rwlock_unlock(&lock);
		fd = open(path, flags, mode);
		return fd < 0 ? -errno : fd;
	}
	if (path[0] != '/') {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)) || asprintf(&abs, "%s/%s", cwd, path) < 0) {
			pthread_rwlock_unlock(&lock);
			return -ENOMEM;
		}
		path = abs;
	}
	for (size_t i = 0; i < n_roots; i++) {
		const char *rel = below(path, roots[i].path);

		if (!rel) {
			rel = below(path, roots[i].canon);
		}
		if (rel) {
			fd = open_beneath(roots[i].dirfd, rel, flags, mode);
			if (fd != -PATHPOL_DENIED) {
				break;
			}
		}
	}
	pthread_rwlock_unlock(&lock);
	return fd;
}

int pathpol_denied(const char *what, const char *path, struct error **errp)
{
	return error_set(errp, PATHPOL_DENIED,
			 "%s %s is outside the image roots of vmmd.conf (image-roots), or a "
			 "symbolic link or '..' in it leads outside them; move it under one of "
			 "them, add its directory, or pass the file as an fd",
			 what, path);
}

int pathpol_open_err(const char *what, const char *path, int flags, mode_t mode,
		     struct error **errp)
{
	int fd = pathpol_open(path, flags, mode);

	if (fd == -PATHPOL_DENIED) {
		return pathpol_denied(what, path, errp);
	}
	if (fd < 0) {
		return error_set_errno(errp, -fd, "cannot open %s %s", what, path ? path : "");
	}
	return fd;
}

int pathpol_check(const char *what, const char *path, struct error **errp)
{
	_cleanup_free_ char *dir = NULL;
	char *slash;
	int64_t set;
	int fd;

	if (fdset_name(path, &set)) {
		return fdset_exists(set)
			       ? 0
			       : error_set(errp, ENOENT,
					   "%s %s: there is no fd set %lld (pass one with add-fd)",
					   what, path, (long long)set);
	}
	if (!pathpol_active()) {
		return 0;
	}
	fd = pathpol_open(path, O_PATH, 0);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (fd == -ENOENT && path && (dir = strdup(path)) && (slash = strrchr(dir, '/'))) {
		/* A file vmmd will create: its directory must be beneath a root. */
		*slash = '\0';
		fd = pathpol_open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY, 0);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
	}
	if (fd == -PATHPOL_DENIED) {
		return pathpol_denied(what, path, errp);
	}
	return error_set_errno(errp, -fd, "%s %s", what, path ? path : "");
}
