/*
 * Lazy population of shared guest RAM through a userfaultfd: see uffd.h.
 *
 * Each range has a bitmap of its pages (4 KiB, or 2 MiB for hugetlb) that
 * no longer come from the file: populated by the handler (copied or
 * zeroed) or discarded (uffd_discard). A fault on a marked page is one
 * that was punched out after population (a balloon, virtio-mem): it gets
 * a zero page. A fault on an unmarked page gets the file's data (a few
 * pages from the fault on, up to FAULT_BLOCK) or, in a hole, a zero page.
 * In between faults the handler walks the file's data extents (SEEK_DATA)
 * and copies what is unmarked and not zero, in BG_CHUNK steps, paced to
 * cfg.rate unless someone waits (uffd_wait). Then it unregisters the
 * ranges: pages still missing are holes or zero pages, which shared
 * memory reads as zero by itself.
 *
 * Threads: the handler thread serves faults and copies; uffd_discard runs
 * on any VM thread. u->lock covers the bitmaps, the copy of a page with
 * the check of its bit, and the end of population (u->state), so a discard
 * never races with a copy of the same page.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/util.h"
#include "hw/core/uffd.h"

#define SMALL_PAGE 4096ull
#define HUGE_PAGE (2ull << 20)
#define BG_CHUNK (2ull << 20)	  /* background copy step */
#define FAULT_BLOCK (64ull << 10) /* a fault copies up to this many bytes of the file */
#define MAX_MSGS 32
#define EAGAIN_RETRIES 100

enum uffd_state {
	UFFD_RUNNING,
	UFFD_DONE,    /* populated and unregistered */
	UFFD_FAILED,  /* the file could not be read: faults on the page wait forever */
	UFFD_STOPPED, /* uffd_free came first */
};

struct range {
	struct uffd_range r;
	uint64_t *marked; /* a bit per page: no longer from the file */
};

struct uffd {
	int fd;	     /* the userfaultfd */
	int stop_fd; /* eventfd: uffd_free wants the handler to end */
	int kick_fd; /* eventfd: a waiter came (the handler stops pacing) */
	int file_fd; /* our duplicate of the memory file; closed when done */
	uint64_t page;
	uint64_t rate;
	char *vm;
	void (*thread_start)(void *opaque, const char *kind);
	void *opaque;
	unsigned n;
	struct range ranges[UFFD_MAX_RANGES];
	uint8_t *buf;  /* BG_CHUNK bytes read from the file */
	uint8_t *zero; /* one zero page (hugetlb has no UFFDIO_ZEROPAGE) */

	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum uffd_state state; /* under lock */
	int error;	       /* under lock: why FAILED */
	_Atomic unsigned waiters;

	/* handler thread only */
	unsigned bg_range;
	uint64_t bg_off;
	uint64_t bg_bytes;    /* copied in the background (paced) */
	uint64_t fault_count; /* faults served */
	uint64_t copied;      /* bytes copied, faults and background */
	uint64_t start_ns;
};

static bool marked(const struct range *g, uint64_t pg)
{
	return g->marked[pg / 64] & (1ull << (pg % 64));
}

static void mark(struct range *g, uint64_t pg)
{
	g->marked[pg / 64] |= 1ull << (pg % 64);
}

static bool is_zero(const uint8_t *p, uint64_t len)
{
	return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

/* The first data at or after @off below @end as [*ret_s, *ret_e); false if none. */
static bool next_data(int fd, uint64_t off, uint64_t end, uint64_t *ret_s, uint64_t *ret_e)
{
	off_t s = lseek(fd, (off_t)off, SEEK_DATA);
	off_t e;

	if (s < 0 || (uint64_t)s >= end) {
		return false; /* ENXIO: only a hole from here on */
	}
	e = lseek(fd, s, SEEK_HOLE);
	*ret_s = (uint64_t)s;
	*ret_e = e < 0 ? end : MIN((uint64_t)e, end);
	return true;
}

/* The file's [@off, @off+@len) into u->buf; 0 or -errno. */
static int read_file(struct uffd *u, uint64_t off, uint64_t len)
{
	uint64_t got = 0;

	while (got < len) {
		ssize_t n = pread(u->file_fd, u->buf + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -errno;
		}
		if (n == 0) {
			memset(u->buf + got, 0, len - got); /* a shorter file reads as zero */
			break;
		}
		got += (uint64_t)n;
	}
	return 0;
}

/*
 * UFFDIO_COPY @len bytes from @src to @dst (waking whoever waits there).
 * Returns the bytes placed before a page that exists already (EEXIST:
 * *@exists set) or all of them; -errno on another error.
 */
static int64_t copy(struct uffd *u, uint8_t *dst, const uint8_t *src, uint64_t len, bool *exists)
{
	uint64_t done = 0;

	*exists = false;
	for (unsigned tries = 0; done < len;) {
		struct uffdio_copy c = {.dst = (uintptr_t)(dst + done),
					.src = (uintptr_t)(src + done),
					.len = len - done};

		if (ioctl(u->fd, UFFDIO_COPY, &c) == 0) {
			return (int64_t)len;
		}
		if (c.copy > 0) {
			done += (uint64_t)c.copy;
		}
		if (errno == EEXIST) {
			*exists = true;
			return (int64_t)done;
		}
		if (errno != EAGAIN || ++tries > EAGAIN_RETRIES) {
			return -errno;
		}
	}
	return (int64_t)len;
}

/* A zero page at @pg of @g; 0 (also when the page exists already) or -errno. */
static int zero_page(struct uffd *u, struct range *g, uint64_t pg)
{
	uint8_t *dst = g->r.host + pg * u->page;
	bool exists;
	int64_t r;

	if (u->page == SMALL_PAGE) {
		struct uffdio_zeropage z = {.range = {.start = (uintptr_t)dst, .len = u->page}};

		for (unsigned tries = 0;; tries++) {
			if (ioctl(u->fd, UFFDIO_ZEROPAGE, &z) == 0 || errno == EEXIST) {
				r = 0;
				break;
			}
			if (errno != EAGAIN || tries >= EAGAIN_RETRIES) {
				return -errno;
			}
		}
	} else {
		r = copy(u, dst, u->zero, u->page, &exists);
	}
	if (r >= 0) {
		mark(g, pg);
	}
	return r < 0 ? (int)r : 0;
}

/*
 * Copy the pages of [@off, @off+@len) of @g (page-aligned, within one
 * BG_CHUNK) that are not marked from the file; zero pages of the file are
 * skipped unless @all. Marks what it placed or found there. Lock held.
 * 0 or -errno (the file could not be read, or UFFDIO_COPY failed).
 */
static int populate(struct uffd *u, struct range *g, uint64_t off, uint64_t len, bool all)
{
	uint64_t first = off / u->page, n = len / u->page, todo = 0;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		todo += !marked(g, first + i);
	}
	if (todo == 0) {
		return 0; /* the guest faulted it all in already */
	}
	r = read_file(u, g->r.file_off + off, len);
	if (r < 0) {
		return r;
	}
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i;
		bool exists;
		int64_t placed;

		while (j < n && !marked(g, first + j) &&
		       (all || !is_zero(u->buf + j * u->page, u->page))) {
			j++;
		}
		if (j == i) {
			i++;
			continue;
		}
		placed = copy(u, g->r.host + (first + i) * u->page, u->buf + i * u->page,
			      (j - i) * u->page, &exists);
		if (placed < 0) {
			return (int)placed;
		}
		u->copied += (uint64_t)placed;
		/* The page that existed counts as populated too (someone else wrote it). */
		j = i + (uint64_t)placed / u->page + (exists ? 1 : 0);
		for (; i < j; i++) {
			mark(g, first + i);
		}
	}
	return 0;
}

static struct range *find(struct uffd *u, uint64_t addr)
{
	for (unsigned i = 0; i < u->n; i++) {
		struct range *g = &u->ranges[i];

		if (addr >= (uintptr_t)g->r.host && addr - (uintptr_t)g->r.host < g->r.size) {
			return g;
		}
	}
	return NULL;
}

/* Log the failure once, make the VM's RAM count as failed; lock held. */
static void fail(struct uffd *u, const char *what, uint64_t file_off, int err)
{
	if (u->state == UFFD_RUNNING) {
		log_full(LOG_ERR, u->vm, NULL,
			 "cannot restore guest RAM at offset 0x%" PRIx64
			 " of the memory file (%s): %s; the VM's accesses there wait",
			 file_off, what, strerror(-err));
		u->state = UFFD_FAILED;
		u->error = err;
		pthread_cond_broadcast(&u->cond);
	}
}

static void serve_fault(struct uffd *u, uint64_t addr)
{
	struct range *g = find(u, addr);
	struct uffdio_range w;
	uint64_t off, pg, s, e;
	int r = 0;

	if (!g) {
		return;
	}
	u->fault_count++;
	off = ALIGN_DOWN(addr - (uintptr_t)g->r.host, u->page);
	pg = off / u->page;
	w = (struct uffdio_range){.start = (uintptr_t)g->r.host + off, .len = u->page};
	pthread_mutex_lock(&u->lock);
	if (u->state == UFFD_FAILED) {
		pthread_mutex_unlock(&u->lock);
		return;
	}
	if (marked(g, pg) ||
	    !next_data(u->file_fd, g->r.file_off + off, g->r.file_off + off + u->page, &s, &e)) {
		/* punched out after population, or a hole of the file */
		r = zero_page(u, g, pg);
	} else {
		uint64_t end = MIN(ALIGN_DOWN(off, FAULT_BLOCK) + FAULT_BLOCK, g->r.size);

		if (u->page == HUGE_PAGE) {
			end = off + u->page;
		} else {
			/* to the end of the block or of the data extent, whichever is first */
			if (next_data(u->file_fd, g->r.file_off + off, g->r.file_off + end, &s,
				      &e)) {
				end = MIN(end, ALIGN_UP(e - g->r.file_off, u->page));
			}
		}
		r = populate(u, g, off, end - off, true);
	}
	if (r < 0) {
		fail(u, "a fault", g->r.file_off + off, r);
		pthread_mutex_unlock(&u->lock);
		return;
	}
	pthread_mutex_unlock(&u->lock);
	/* The page may have been there already (a background copy raced with the fault). */
	ioctl(u->fd, UFFDIO_WAKE, &w);
}

/* Read and serve every queued fault. */
static void serve_faults(struct uffd *u)
{
	struct uffd_msg msgs[MAX_MSGS];

	for (;;) {
		ssize_t n = read(u->fd, msgs, sizeof(msgs));

		if (n <= 0) {
			return; /* EAGAIN: none left */
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
				serve_fault(u, msgs[i].arg.pagefault.address);
			}
		}
	}
}

/* One background step: the next chunk of file data. false when there is none left. */
static bool background_step(struct uffd *u)
{
	while (u->bg_range < u->n) {
		struct range *g = &u->ranges[u->bg_range];
		uint64_t s, e, off, end, before;
		int r;

		if (u->bg_off >= g->r.size || !next_data(u->file_fd, g->r.file_off + u->bg_off,
							 g->r.file_off + g->r.size, &s, &e)) {
			u->bg_range++;
			u->bg_off = 0;
			continue;
		}
		off = ALIGN_DOWN(s - g->r.file_off, u->page);
		end = MIN(ALIGN_UP(e - g->r.file_off, u->page),
			  ALIGN_DOWN(off, BG_CHUNK) + BG_CHUNK);
		pthread_mutex_lock(&u->lock);
		before = u->copied;
		r = u->state == UFFD_RUNNING ? populate(u, g, off, end - off, false) : -EIO;
		if (r < 0) {
			fail(u, "populating", g->r.file_off + off, r);
		}
		pthread_mutex_unlock(&u->lock);
		if (r < 0) {
			return false;
		}
		u->bg_off = end;
		u->bg_bytes += u->copied - before; /* the pace counts what it copied */
		return true;
	}
	return false;
}

static void unregister(struct uffd *u)
{
	for (unsigned i = 0; i < u->n; i++) {
		struct uffdio_range r = {.start = (uintptr_t)u->ranges[i].r.host,
					 .len = u->ranges[i].r.size};

		ioctl(u->fd, UFFDIO_UNREGISTER, &r);
	}
}

/* Milliseconds until the next background step is due (0: now). */
static int pace_ms(struct uffd *u)
{
	uint64_t due, now;

	if (u->rate == 0 || atomic_load(&u->waiters) > 0) {
		return 0;
	}
	due = u->start_ns + (uint64_t)((double)u->bg_bytes * 1e9 / (double)u->rate);
	now = mono_ns();
	return due <= now ? 0 : (int)MIN((due - now + 999999) / 1000000, 1000);
}

static void *handler(void *arg)
{
	struct uffd *u = arg;
	bool more = true;

	pthread_setname_np(pthread_self(), "vm-uffd");
	if (u->thread_start) {
		u->thread_start(u->opaque, "uffd");
	}
	u->start_ns = mono_ns();
	for (;;) {
		struct pollfd p[3] = {{.fd = u->fd, .events = POLLIN},
				      {.fd = u->stop_fd, .events = POLLIN},
				      {.fd = u->kick_fd, .events = POLLIN}};
		int timeout = more ? pace_ms(u) : -1;
		enum uffd_state st;
		uint64_t v;

		if (poll(p, 3, timeout) < 0 && errno != EINTR) {
			int e = -errno;

			pthread_mutex_lock(&u->lock);
			fail(u, "waiting for faults", 0, e); /* waiters must not wait forever */
			pthread_mutex_unlock(&u->lock);
			break;
		}
		if (p[1].revents) {
			break;
		}
		if (p[2].revents && read(u->kick_fd, &v, sizeof(v)) < 0) {
			/* nothing to drain */
		}
		if (p[0].revents & POLLIN) {
			serve_faults(u);
		}
		if (more && pace_ms(u) == 0) {
			more = background_step(u);
		}
		if (more) {
			continue;
		}
		pthread_mutex_lock(&u->lock);
		if (u->state == UFFD_RUNNING) {
			unregister(u);
			u->state = UFFD_DONE;
			pthread_cond_broadcast(&u->cond);
			log_full(LOG_INFO, u->vm, NULL,
				 "guest RAM restored: %" PRIu64 " MiB copied in %.2f s, %" PRIu64
				 " faults served",
				 u->copied >> 20, (double)(mono_ns() - u->start_ns) / 1e9,
				 u->fault_count);
		}
		st = u->state;
		pthread_mutex_unlock(&u->lock);
		if (st == UFFD_DONE) {
			/* (a migration's memory file is a memfd: its memory goes now) */
			closep(&u->file_fd);
			break;
		}
		/* FAILED: the VM's accesses to pages not there yet wait until uffd_free */
	}
	return NULL;
}

/* A userfaultfd: the system call, else /dev/userfaultfd. -errno with both reasons. */
static int open_uffd(struct error **errp)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int e1, e2, dev;

	if (fd >= 0) {
		return fd;
	}
	e1 = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		e2 = errno;
		close(dev);
		if (fd >= 0) {
			return fd;
		}
	} else {
		e2 = errno;
	}
	return error_set(
		errp, e2,
		"no userfaultfd: userfaultfd(2) failed (%s%s) and /dev/userfaultfd %s (%s)",
		strerror(e1),
		e1 == EPERM ? ": vm.unprivileged_userfaultfd is 0 and the daemon lacks "
			      "CAP_SYS_PTRACE"
			    : "",
		dev >= 0 ? "refused a new one" : "cannot be opened", strerror(e2));
}

void uffd_free(struct uffd *u)
{
	if (!u) {
		return;
	}
	if (u->started) {
		uint64_t one = 1;

		if (write(u->stop_fd, &one, sizeof(one)) < 0) {
			/* saturated: the handler wakes anyway */
		}
		pthread_join(u->thread, NULL);
	}
	pthread_mutex_lock(&u->lock);
	if (u->state != UFFD_DONE) {
		unregister(u);
		u->state = UFFD_STOPPED;
		pthread_cond_broadcast(&u->cond);
	}
	pthread_mutex_unlock(&u->lock);
	closep(&u->fd);
	closep(&u->stop_fd);
	closep(&u->kick_fd);
	closep(&u->file_fd);
	if (u->buf) {
		munmap(u->buf, BG_CHUNK);
	}
	if (u->zero) {
		munmap(u->zero, HUGE_PAGE);
	}
	for (unsigned i = 0; i < u->n; i++) {
		free(u->ranges[i].marked);
	}
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->cond);
	free(u->vm);
	free(u);
}

static int register_ranges(struct uffd *u, struct error **errp)
{
	struct uffdio_api api = {.api = UFFD_API};
	uint64_t need_feat =
		u->page == HUGE_PAGE ? UFFD_FEATURE_MISSING_HUGETLBFS : UFFD_FEATURE_MISSING_SHMEM;
	uint64_t need_ioctls = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_WAKE) |
			       (u->page == SMALL_PAGE ? 1ull << _UFFDIO_ZEROPAGE : 0);

	if (ioctl(u->fd, UFFDIO_API, &api) < 0) {
		return error_set_errno(errp, errno, "UFFDIO_API");
	}
	if (!(api.features & need_feat)) {
		return error_set(errp, ENOTSUP, "this kernel's userfaultfd cannot serve %s memory",
				 u->page == HUGE_PAGE ? "hugetlbfs" : "shared");
	}
	for (unsigned i = 0; i < u->n; i++) {
		struct uffdio_register reg = {.range = {.start = (uintptr_t)u->ranges[i].r.host,
							.len = u->ranges[i].r.size},
					      .mode = UFFDIO_REGISTER_MODE_MISSING};

		if (ioctl(u->fd, UFFDIO_REGISTER, &reg) < 0) {
			int e = errno;

			u->n = i; /* unregister only what was registered */
			unregister(u);
			u->n = 0;
			return error_set_errno(errp, e,
					       "cannot register guest RAM with userfaultfd");
		}
		u->n = i + 1;
		if ((reg.ioctls & need_ioctls) != need_ioctls) {
			unregister(u);
			u->n = 0;
			return error_set(errp, ENOTSUP,
					 "this kernel's userfaultfd lacks the copy ioctls here");
		}
	}
	return 0;
}

int uffd_new(const struct uffd_config *cfg, const struct uffd_range *ranges, unsigned n,
	     struct uffd **ret, struct error **errp)
{
	struct uffd *u;
	sigset_t old;
	unsigned count = n;
	int r;

	if (n == 0 || n > UFFD_MAX_RANGES) {
		return error_set(errp, EINVAL, "%u RAM ranges to restore lazily (1-%u)", n,
				 UFFD_MAX_RANGES);
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	u->fd = u->stop_fd = u->kick_fd = u->file_fd = -1;
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond, NULL);
	u->page = cfg->hugetlb ? HUGE_PAGE : SMALL_PAGE;
	u->rate = cfg->rate;
	u->thread_start = cfg->thread_start;
	u->opaque = cfg->opaque;
	u->vm = strdup(cfg->vm ? cfg->vm : "");
	for (unsigned i = 0; i < count; i++) {
		if (!IS_ALIGNED(ranges[i].size | ranges[i].file_off, u->page) ||
		    ranges[i].size == 0) {
			r = error_set(errp, EINVAL, "RAM range %u is not a multiple of its pages",
				      i);
			goto err;
		}
		u->ranges[i].r = ranges[i];
		u->ranges[i].marked = calloc((ranges[i].size / u->page + 63) / 64, 8);
		if (!u->ranges[i].marked) {
			r = error_set(errp, ENOMEM, "out of memory");
			goto err;
		}
	}
	u->buf = mmap(NULL, BG_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	u->zero = mmap(NULL, HUGE_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->buf == MAP_FAILED || u->zero == MAP_FAILED || !u->vm) {
		u->buf = u->buf == MAP_FAILED ? NULL : u->buf;
		u->zero = u->zero == MAP_FAILED ? NULL : u->zero;
		r = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	u->file_fd = fcntl(cfg->file_fd, F_DUPFD_CLOEXEC, 3);
	u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->file_fd < 0 || u->stop_fd < 0 || u->kick_fd < 0) {
		r = error_set_errno(errp, errno, "cannot set up lazy RAM restore");
		goto err;
	}
	r = open_uffd(errp);
	if (r < 0) {
		goto err;
	}
	u->fd = r;
	u->n = count; /* (register_ranges sets it to what it registered) */
	r = register_ranges(u, errp);
	if (r < 0) {
		goto err;
	}
	thread_block_signals(&old);
	r = thread_create(&u->thread, NULL, handler, u);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		r = error_set_errno(errp, r, "cannot start the userfaultfd handler thread");
		goto err;
	}
	u->started = true;
	*ret = u;
	return 0;
err:
	/* free the bitmaps of every range, registered or not */
	u->n = count;
	for (unsigned i = 0; i < count; i++) {
		if (!u->ranges[i].marked) {
			u->n = i;
			break;
		}
	}
	uffd_free(u);
	return r;
}

int uffd_wait(struct uffd *u)
{
	uint64_t one = 1;
	int r;

	atomic_fetch_add(&u->waiters, 1);
	/* the handler may sleep for its pace: wake it to see the waiter */
	if (write(u->kick_fd, &one, sizeof(one)) < 0) {
		/* saturated: it wakes anyway */
	}
	pthread_mutex_lock(&u->lock);
	while (u->state == UFFD_RUNNING) {
		pthread_cond_wait(&u->cond, &u->lock);
	}
	r = u->state == UFFD_DONE ? 0 : u->state == UFFD_FAILED ? u->error : -ESHUTDOWN;
	pthread_mutex_unlock(&u->lock);
	atomic_fetch_sub(&u->waiters, 1);
	return r;
}

int uffd_discard(struct uffd *u, uint8_t *host, uint64_t len)
{
	struct range *g = find(u, (uintptr_t)host);
	uint64_t off;
	int r;

	if (!g || len == 0 || (uint64_t)(host - g->r.host) + len > g->r.size) {
		return -ENOENT;
	}
	off = (uint64_t)(host - g->r.host);
	pthread_mutex_lock(&u->lock);
	if (u->state == UFFD_DONE || u->state == UFFD_STOPPED) {
		pthread_mutex_unlock(&u->lock);
		return -ENOENT;
	}
	/* Whole pages only: a partly discarded hugepage keeps its contents. */
	for (uint64_t pg = ALIGN_UP(off, u->page) / u->page; (pg + 1) * u->page <= off + len;
	     pg++) {
		mark(g, pg);
	}
	r = madvise(host, len, MADV_REMOVE) < 0 ? -errno : 0;
	pthread_mutex_unlock(&u->lock);
	return r;
}
