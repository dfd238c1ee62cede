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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/error.h"
#include "common/parse.h"
#include "hw/core/memory.h"

#define GUEST_MEM_MAX_REGIONS 2

struct guest_mem {
	uint64_t size;
	unsigned n_regions;
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
};

static int map_region(struct guest_mem_region *r, const char *backend, struct error **errp)
{
	char buf[32];
	void *p;

	r->fd = -1;
	if (strcmp(backend, "anonymous") == 0) {
		p = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	} else {
		bool huge = strcmp(backend, "hugepages") == 0;
		int fd;

		if (!huge && strcmp(backend, "memfd") != 0) {
			return error_set(errp, EINVAL, "unknown memory backend \"%s\"", backend);
		}
		if (huge && !IS_ALIGNED(r->size, 2ull << 20)) {
			return error_set(errp, EINVAL,
					 "hugepage-backed RAM must be a multiple of 2M, not %s",
					 format_size(r->size, buf, sizeof(buf)));
		}
		fd = memfd_create("vmmd-guest-ram", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));
		if (fd < 0) {
			return error_set_errno(errp, errno, "cannot create %s memory file",
					       huge ? "hugetlb" : "memfd");
		}
		if (ftruncate(fd, (off_t)r->size) < 0) {
			int e = errno;

			close(fd);
			return error_set_errno(errp, e, "cannot size guest memory file to %s",
					       format_size(r->size, buf, sizeof(buf)));
		}
		/*
		 * Hugetlb pages are reserved at mmap time (no MAP_NORESERVE): a
		 * host short of them fails here instead of raising SIGBUS on a
		 * guest access later, which would kill the whole daemon.
		 */
		p = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | (huge ? 0 : MAP_NORESERVE), fd, 0);
		if (p == MAP_FAILED) {
			int e = errno;

			close(fd);
			errno = e;
		} else {
			r->fd = fd;
		}
	}
	if (p == MAP_FAILED) {
		return error_set_errno(
			errp, errno, "cannot map %s of guest RAM (%s%s)",
			format_size(r->size, buf, sizeof(buf)), backend,
			strcmp(backend, "hugepages") == 0
				? ": not enough free 2M pages in /proc/sys/vm/nr_hugepages"
				: "");
	}
	/* Guest RAM never goes into core dumps of the daemon. */
	madvise(p, r->size, MADV_DONTDUMP);
	r->host = p;
	return 0;
}

void guest_mem_free(struct guest_mem *mem)
{
	if (!mem) {
		return;
	}
	for (unsigned i = 0; i < mem->n_regions; i++) {
		munmap(mem->regions[i].host, mem->regions[i].size);
		if (mem->regions[i].fd >= 0) {
			close(mem->regions[i].fd);
		}
	}
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
	low = MIN(size, GUEST_MEM_HOLE_START);
	mem->regions[0] = (struct guest_mem_region){.gpa = 0, .size = low, .fd = -1};
	r = map_region(&mem->regions[0], backend, errp);
	if (r < 0) {
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

void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->n_regions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && range_within(gpa - r->gpa, len, r->size)) {
			return r->host + (gpa - r->gpa);
		}
	}
	return NULL;
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
	return mem->size;
}

unsigned guest_mem_region_count(struct guest_mem *mem)
{
	return mem->n_regions;
}

const struct guest_mem_region *guest_mem_region(struct guest_mem *mem, unsigned i)
{
	return i < mem->n_regions ? &mem->regions[i] : NULL;
}

uint64_t guest_mem_low_size(struct guest_mem *mem)
{
	return mem->regions[0].size;
}
