/*
 * Guest RAM: host mappings below and above the 32-bit PCI hole and the one
 * bounds-checked translation from guest-physical addresses to host pointers.
 *
 * Threads: guest_mem_new/free on the control thread; the region table is
 * immutable in between, so translations are lock-free from any thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/memfd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/parse.h"
#include "common/util.h"
#include "hw/core/memory.h"
#include "hw/core/uffd.h"

/* RAM below and above the hole, then the regions of memory devices. */
#define GUEST_MEM_MAX_REGIONS (2 + GUEST_MEM_MAX_DEVICE_REGIONS)

struct guest_mem {
	uint64_t size;
	char *backend;
	/*
	 * Entries below n_regions are immutable; a region is added by filling
	 * the entry past the last and then publishing the new count (release),
	 * so lock-free readers see either the old table or the complete new one.
	 */
	_Atomic unsigned n_regions;
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
	/*
	 * Pages written by vmmd itself while a migration tracks (one bit per
	 * page per region). Allocated by the first guest_mem_track_start and
	 * kept until guest_mem_free, so markers never race with a free.
	 */
	_Atomic bool tracking;
	_Atomic uint64_t *dirty[GUEST_MEM_MAX_REGIONS];
	/* Shared RAM being populated from a snapshot (uffd.h); set before the vCPUs run. */
	struct uffd *lazy;
	bool thp; /* guest_mem_set_thp(): regions madvised MADV_HUGEPAGE */
};

/*
 * Each region of guest RAM sits between two inaccessible guard areas and
 * starts on a 2 MiB boundary (huge pages, for hugetlb and THP): an access
 * computed past the end of one VM's RAM faults instead of reaching the
 * next thing mapped (another VM's RAM, whose mapping the kernel would
 * otherwise merge with this one when they happen to be adjacent).
 */
#define RAM_GUARD (2ull << 20)

/* Reserve [guard, size, guard] with the region 2 MiB aligned; its address or NULL. */
static void *reserve_region(uint64_t size)
{
	size_t len = size + 3 * RAM_GUARD; /* one more guard's worth to align in */
	uint8_t *p, *host;

	p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		return NULL;
	}
	host = (uint8_t *)ALIGN_UP((uintptr_t)p + RAM_GUARD, RAM_GUARD);
	if (host - RAM_GUARD > p) {
		munmap(p, (size_t)(host - RAM_GUARD - p));
	}
	munmap(host + size + RAM_GUARD, (size_t)(p + len - (host + size + RAM_GUARD)));
	return host;
}

/* Give back what reserve_region() reserved for a region of @size at @host. */
static void unreserve(void *host, uint64_t size)
{
	munmap((uint8_t *)host - RAM_GUARD, size + 2 * RAM_GUARD);
}

static int map_region(struct guest_mem_region *r, const char *backend, struct error **errp)
{
	bool anon = strcmp(backend, "anonymous") == 0, huge = strcmp(backend, "hugepages") == 0;
	char buf[32];
	int fd = -1, e;
	void *at, *p;

	r->fd = -1;
	if (!anon && !huge && strcmp(backend, "memfd") != 0) {
		return error_set(errp, EINVAL, "unknown memory backend \"%s\"", backend);
	}
	if (huge && !IS_ALIGNED(r->size, 2ull << 20)) {
		return error_set(errp, EINVAL,
				 "hugepage-backed RAM must be a multiple of 2M, not %s",
				 format_size(r->size, buf, sizeof(buf)));
	}
	at = reserve_region(r->size);
	if (!at) {
		return error_set_errno(errp, errno,
				       "cannot reserve %s of address space for guest RAM",
				       format_size(r->size, buf, sizeof(buf)));
	}
	if (anon) {
		p = mmap(at, r->size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	} else {
		fd = memfd_create("vmmd-guest-ram", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));
		if (fd < 0) {
			e = errno;
			unreserve(at, r->size);
			return error_set_errno(errp, e, "cannot create %s memory file",
					       huge ? "hugetlb" : "memfd");
		}
		if (ftruncate(fd, (off_t)r->size) < 0) {
			e = errno;
			close(fd);
			unreserve(at, r->size);
			return error_set_errno(errp, e, "cannot size guest memory file to %s",
					       format_size(r->size, buf, sizeof(buf)));
		}
		/*
		 * Hugetlb pages are reserved at mmap time (no MAP_NORESERVE): a
		 * host short of them fails here instead of raising SIGBUS on a
		 * guest access later, which would kill the whole daemon.
		 */
		p = mmap(at, r->size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED | (huge ? 0 : MAP_NORESERVE), fd, 0);
	}
	if (p == MAP_FAILED) {
		e = errno;
		if (fd >= 0) {
			close(fd);
		}
		unreserve(at, r->size);
		return error_set_errno(
			errp, e, "cannot map %s of guest RAM (%s%s)",
			format_size(r->size, buf, sizeof(buf)), backend,
			huge ? ": not enough free 2M pages in /proc/sys/vm/nr_hugepages" : "");
	}
	/* Guest RAM never goes into core dumps of the daemon. */
	madvise(p, r->size, MADV_DONTDUMP);
	r->host = p;
	r->fd = fd;
	return 0;
}

/*
 * Ask for transparent huge pages on a region, or forbid them, whatever the
 * host's default ("madvise" on Debian, where nothing is huge unless asked
 * for). Hugetlb regions are huge already. Advice only: a host with THP
 * disabled, or shmem (memfd) outside shmem_enabled's "advise", keeps 4 KiB
 * pages, so a failure is not an error.
 */
static void advise_thp(struct guest_mem *mem, const struct guest_mem_region *r)
{
	if (strcmp(mem->backend, "hugepages") != 0) {
		madvise(r->host, r->size, mem->thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	}
}

void guest_mem_set_thp(struct guest_mem *mem, bool on)
{
	unsigned n = atomic_load(&mem->n_regions);

	mem->thp = on;
	for (unsigned i = 0; i < n; i++) {
		advise_thp(mem, &mem->regions[i]);
	}
}

void guest_mem_free(struct guest_mem *mem)
{
	if (!mem) {
		return;
	}
	uffd_free(mem->lazy);
	for (unsigned i = 0; i < mem->n_regions; i++) {
		unreserve(mem->regions[i].host, mem->regions[i].size);
		if (mem->regions[i].fd >= 0) {
			close(mem->regions[i].fd);
		}
		free((void *)mem->dirty[i]);
	}
	free(mem->backend);
	free(mem);
}

int guest_mem_new(uint64_t size, const char *backend, struct guest_mem **ret, struct error **errp)
{
	struct guest_mem *mem;
	uint64_t low;
	int r;

	if (size == 0 || !IS_ALIGNED(size, 4096)) {
		return error_set(errp, EINVAL,
				 "guest RAM size %" PRIu64 " must be a non-zero multiple of 4096",
				 size);
	}
	mem = calloc(1, sizeof(*mem));
	if (!mem) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	mem->size = size;
	mem->backend = strdup(backend);
	if (!mem->backend) {
		free(mem);
		return error_set(errp, ENOMEM, "out of memory");
	}
	low = MIN(size, GUEST_MEM_HOLE_START);
	mem->regions[0] = (struct guest_mem_region){.gpa = 0, .size = low, .fd = -1};
	r = map_region(&mem->regions[0], backend, errp);
	if (r < 0) {
		free(mem->backend);
		free(mem);
		return r;
	}
	mem->n_regions = 1;
	if (size > low) {
		mem->regions[1] = (struct guest_mem_region){
			.gpa = GUEST_MEM_HIGH_START, .size = size - low, .fd = -1};
		r = map_region(&mem->regions[1], backend, errp);
		if (r < 0) {
			guest_mem_free(mem);
			return r;
		}
		mem->n_regions = 2;
	}
	*ret = mem;
	return 0;
}

static void mark_range(struct guest_mem *mem, unsigned i, uint64_t off, uint64_t len)
{
	_Atomic uint64_t *bm = mem->dirty[i];

	if (!bm) {
		return;
	}
	for (uint64_t pg = off / 4096; pg <= (off + (len ? len : 1) - 1) / 4096; pg++) {
		atomic_fetch_or_explicit(&bm[pg / 64], 1ull << (pg % 64), memory_order_relaxed);
	}
}

/*
 * A translation may be used for writing: while a migration tracks, the
 * range counts as dirty (reads are over-counted, never writes missed).
 */
void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	unsigned n = atomic_load_explicit(&mem->n_regions, memory_order_acquire);

	for (unsigned i = 0; i < n; i++) {
		const struct guest_mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && range_within(gpa - r->gpa, len, r->size)) {
			if (atomic_load_explicit(&mem->tracking, memory_order_relaxed)) {
				mark_range(mem, i, gpa - r->gpa, len);
			}
			return r->host + (gpa - r->gpa);
		}
	}
	return NULL;
}

void guest_mem_mark_dirty(struct guest_mem *mem, const void *host, size_t len)
{
	const uint8_t *p = host;

	unsigned n;

	if (!mem || !atomic_load_explicit(&mem->tracking, memory_order_relaxed)) {
		return;
	}
	n = atomic_load_explicit(&mem->n_regions, memory_order_acquire);
	for (unsigned i = 0; i < n; i++) {
		const struct guest_mem_region *r = &mem->regions[i];

		if (p >= r->host && (uint64_t)(p - r->host) < r->size) {
			uint64_t off = (uint64_t)(p - r->host);

			mark_range(mem, i, off, MIN((uint64_t)len, r->size - off));
			return;
		}
	}
}

int guest_mem_track_start(struct guest_mem *mem)
{
	for (unsigned i = 0; i < mem->n_regions; i++) {
		size_t words = (mem->regions[i].size / 4096 + 63) / 64;

		if (!mem->dirty[i]) {
			mem->dirty[i] = calloc(words, sizeof(uint64_t));
			if (!mem->dirty[i]) {
				return -ENOMEM;
			}
		}
		for (size_t w = 0; w < words; w++) {
			atomic_store(&mem->dirty[i][w], 0);
		}
	}
	atomic_store(&mem->tracking, true);
	return 0;
}

void guest_mem_track_stop(struct guest_mem *mem)
{
	atomic_store(&mem->tracking, false);
}

void guest_mem_track_collect(struct guest_mem *mem, unsigned i, uint64_t *bitmap)
{
	size_t words;

	if (i >= mem->n_regions || !mem->dirty[i]) {
		return;
	}
	words = (mem->regions[i].size / 4096 + 63) / 64;
	for (size_t w = 0; w < words; w++) {
		bitmap[w] |= atomic_exchange_explicit(&mem->dirty[i][w], 0, memory_order_acq_rel);
	}
}

int guest_mem_read(struct guest_mem *mem, uint64_t gpa, void *buf, size_t len)
{
	void *p = guest_mem_ptr(mem, gpa, len);

	if (!p) {
		return -EFAULT;
	}
	memcpy(buf, p, len);
	return 0;
}

int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len)
{
	void *p = guest_mem_ptr(mem, gpa, len);

	if (!p) {
		return -EFAULT;
	}
	memcpy(p, buf, len);
	return 0;
}

uint64_t guest_mem_size(struct guest_mem *mem)
{
	uint64_t total = 0;
	unsigned n = atomic_load_explicit(&mem->n_regions, memory_order_acquire);

	for (unsigned i = 0; i < n; i++) {
		total += mem->regions[i].size;
	}
	return total;
}

unsigned guest_mem_region_count(struct guest_mem *mem)
{
	return mem->n_regions;
}

int guest_mem_adopt_fd(struct guest_mem *mem, unsigned i, int fd, struct error **errp)
{
	struct guest_mem_region *r = i < mem->n_regions ? &mem->regions[i] : NULL;
	struct stat st;
	void *p;

	if (!r || r->fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size != r->size) {
		close(fd);
		return error_set(errp, EINVAL, "the handed-over RAM does not fit region %u", i);
	}
	p = mmap(r->host, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE,
		 fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;

		close(fd);
		return error_set_errno(errp, e, "cannot map the handed-over RAM");
	}
	madvise(p, r->size, MADV_DONTDUMP);
	advise_thp(mem, r);
	close(r->fd);
	r->fd = fd;
	return 0;
}

const struct guest_mem_region *guest_mem_region(struct guest_mem *mem, unsigned i)
{
	return i < mem->n_regions ? &mem->regions[i] : NULL;
}

int guest_mem_add_device_region(struct guest_mem *mem, uint64_t gpa, uint64_t size,
				struct error **errp)
{
	unsigned n = atomic_load(&mem->n_regions);
	struct guest_mem_region *r;
	int ret;

	if (n >= GUEST_MEM_MAX_REGIONS) {
		return error_set(errp, ENOSPC, "at most %d memory device regions",
				 GUEST_MEM_MAX_DEVICE_REGIONS);
	}
	if (size == 0 || !IS_ALIGNED(gpa | size, 4096) || gpa + size < gpa) {
		return error_set(errp, EINVAL, "bad device memory region");
	}
	for (unsigned i = 0; i < n; i++) {
		const struct guest_mem_region *o = &mem->regions[i];

		if (gpa < o->gpa + o->size && o->gpa < gpa + size) {
			return error_set(errp, EEXIST, "device memory overlaps guest RAM");
		}
	}
	r = &mem->regions[n];
	*r = (struct guest_mem_region){.gpa = gpa, .size = size, .fd = -1, .device = true};
	ret = map_region(r, mem->backend, errp);
	if (ret < 0) {
		return ret;
	}
	advise_thp(mem, r);
	if (atomic_load(&mem->tracking) || mem->dirty[0]) {
		size_t words = (size / 4096 + 63) / 64;

		mem->dirty[n] = calloc(words, sizeof(uint64_t));
		if (!mem->dirty[n]) {
			unreserve(r->host, r->size);
			if (r->fd >= 0) {
				close(r->fd);
			}
			return error_set(errp, ENOMEM, "out of memory");
		}
	}
	atomic_store_explicit(&mem->n_regions, n + 1, memory_order_release);
	return (int)n;
}

int guest_mem_discard(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	unsigned n = atomic_load_explicit(&mem->n_regions, memory_order_acquire);

	for (unsigned i = 0; i < n; i++) {
		const struct guest_mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && range_within(gpa - r->gpa, len, r->size)) {
			uint8_t *p = r->host + (gpa - r->gpa);
			int ret = mem->lazy ? uffd_discard(mem->lazy, p, len) : -ENOENT;

			if (ret != -ENOENT) {
				return ret; /* a fault there reads zero, not the snapshot's page */
			}
			/* shared (memfd) pages need a hole punched; private ones just go */
			if (r->fd >= 0 && madvise(p, len, MADV_REMOVE) == 0) {
				return 0;
			}
			return madvise(p, len, MADV_DONTNEED) < 0 ? -errno : 0;
		}
	}
	return -EFAULT;
}

void guest_mem_set_lazy(struct guest_mem *mem, struct uffd *u)
{
	mem->lazy = u;
}

int guest_mem_populate_wait(struct guest_mem *mem)
{
	return mem->lazy ? uffd_wait(mem->lazy) : 0;
}

uint64_t guest_mem_low_size(struct guest_mem *mem)
{
	return mem->regions[0].size;
}
