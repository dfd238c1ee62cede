/*
 * Lazy population of shared guest RAM (memfd, hugetlb) from a snapshot's
 * memory file through a userfaultfd in MISSING mode (docs/vmstate.md,
 * "Restore and memory"). A handler thread per VM serves every fault on the
 * registered ranges (vCPUs through KVM, device models, the daemon's own
 * reads) with UFFDIO_COPY from the file or a zero page for its holes, and
 * in its idle time copies the file's remaining data extents; then it
 * unregisters and ends. It never touches guest RAM through the mapping.
 *
 * Threads: uffd_new, uffd_free on the thread that builds or tears down the
 * VM (a worker); uffd_wait on workers (never the control thread: it waits
 * for the population to end); uffd_discard from any thread of the VM. One
 * mutex protects the populated-page bitmaps and the end of population.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct error;
struct uffd;

/* A range of guest RAM to populate from the memory file at @file_off. */
struct uffd_range {
	uint8_t *host; /* a MAP_SHARED mapping of a memfd */
	uint64_t size;
	uint64_t file_off;
};

#define UFFD_MAX_RANGES 16

struct uffd_config {
	int file_fd;	/* the memory file (borrowed: it is duplicated) */
	bool hugetlb;	/* the ranges are hugetlbfs: 2 MiB pages */
	uint64_t rate;	/* background population in bytes/s; 0 = no limit */
	const char *vm; /* the VM's name, for the log */
	/* Called first on the handler thread with kind "uffd" (its seccomp filter). */
	void (*thread_start)(void *opaque, const char *kind);
	void *opaque;
};

/*
 * Register @ranges (at most UFFD_MAX_RANGES; sizes and file offsets
 * multiples of the page size) with a new userfaultfd and start the handler.
 * The userfaultfd comes from userfaultfd(2), or where that is refused
 * (vm.unprivileged_userfaultfd = 0 without CAP_SYS_PTRACE) from
 * /dev/userfaultfd. Returns 0, or -errno with a message saying why no
 * userfaultfd could be had (the caller then copies the RAM instead);
 * nothing is left registered on failure.
 */
int uffd_new(const struct uffd_config *cfg, const struct uffd_range *ranges, unsigned n,
	     struct uffd **ret, struct error **errp);

/*
 * Stop the handler (message and join) if it still runs, unregister the
 * ranges (threads waiting in a fault then fault as usual) and free. NULL
 * is fine. Call it with no other thread of the VM left, before the
 * mapping goes.
 */
void uffd_free(struct uffd *u);

/*
 * Wait until every page of the memory file is in guest RAM and the ranges
 * are unregistered; the handler stops pacing its background copy while
 * anybody waits. 0, or -errno if population failed (the memory file could
 * not be read: the VM's RAM is incomplete) or was stopped.
 */
int uffd_wait(struct uffd *u);

/*
 * Give [@host, @host+@len) back to the host (MADV_REMOVE) and remember that
 * its pages no longer come from the memory file: a later fault reads zero.
 * -ENOENT if the range is not one of @u's or population has ended (the
 * caller discards as usual), else 0 or -errno of madvise.
 */
int uffd_discard(struct uffd *u, uint8_t *host, uint64_t len);
