/*
 * The memory part of the VM definition: "maxmem" and "memory_devices"
 * (virtio-mem devices, each with its own RAM backend), their validation
 * with QEMU 7.2's rules and messages, their canonical JSON form, and the
 * guest-physical layout of the device memory region (as QEMU's pc machine:
 * from the first 1 GiB boundary above the RAM, devices in order, each
 * aligned to its block size). See docs/memory-devices.md, man/vmmd-vm.5.
 *
 * Threads: pure functions over their arguments; any thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"
#include "common/util.h"
#include "hw/core/vm-config-mem.h"
#include "hw/device.h"

#define MEMDEV_ID_MAX 63

static int get_size(json_t *obj, const char *key, const char *where, uint64_t *ret,
		    struct error **errp)
{
	json_t *v = json_object_get(obj, key);

	if (!v) {
		return 0;
	}
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0) {
			return error_set(errp, EINVAL, "%s\"%s\" must not be negative", where, key);
		}
		*ret = (uint64_t)json_integer_value(v);
		return 1;
	}
	if (json_is_string(v) && parse_size(json_string_value(v), ret) == 0) {
		return 1;
	}
	return error_set(errp, EINVAL,
			 "%s\"%s\" must be a size (bytes, or with a suffix like \"512M\", \"2G\")",
			 where, key);
}

static bool id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > MEMDEV_ID_MAX ||
	    !((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z'))) {
		return false;
	}
	for (const char *p = id; *p; p++) {
		char c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_')) {
			return false;
		}
	}
	return true;
}

static int get_id(json_t *obj, const char *key, const char *where, char **ret, struct error **errp)
{
	json_t *v = json_object_get(obj, key);

	if (!v) {
		return 0;
	}
	if (!json_is_string(v) || !id_ok(json_string_value(v))) {
		return error_set(errp, EINVAL,
				 "%s\"%s\" must be a letter then up to %d letters, digits, "
				 "'-', '.' or '_'",
				 where, key, MEMDEV_ID_MAX - 1);
	}
	*ret = strdup(json_string_value(v));
	return *ret ? 1 : error_set(errp, ENOMEM, "out of memory");
}

int vm_memdev_check(uint64_t size, uint64_t requested, uint64_t block_size, struct error **errp)
{
	if (block_size < VM_MEMDEV_MIN_BLOCK) {
		return error_set(errp, EINVAL,
				 "'block-size' property has to be at least 0x%" PRIx64,
				 (uint64_t)VM_MEMDEV_MIN_BLOCK);
	}
	if (block_size & (block_size - 1)) {
		return error_set(errp, EINVAL, "'block-size' property has to be a power of two");
	}
	if (block_size > VM_MEMDEV_MAX_BLOCK) {
		return error_set(errp, EINVAL, "'block-size' property has to be at most 0x%" PRIx64,
				 (uint64_t)VM_MEMDEV_MAX_BLOCK);
	}
	if (size == 0 || size % block_size) {
		return error_set(errp, EINVAL, "backend memory size must be multiple of 0x%" PRIx64,
				 block_size);
	}
	if (requested % block_size) {
		return error_set(errp, EINVAL,
				 "'requested-size' property has to be multiples of 'block-size' "
				 "(0x%" PRIx64 ")",
				 block_size);
	}
	if (requested > size) {
		return error_set(errp, EINVAL,
				 "'requested-size' cannot exceed the memory backend size(0x%" PRIx64
				 ")",
				 size);
	}
	return 0;
}

uint64_t vm_device_memory_base(const struct vm_config *cfg)
{
	uint64_t high = cfg->memory > GUEST_MEM_HOLE_START ? cfg->memory - GUEST_MEM_HOLE_START : 0;

	return ALIGN_UP(GUEST_MEM_HIGH_START + high, 1ull << 30);
}

uint64_t vm_device_memory_size(const struct vm_config *cfg)
{
	return cfg->maxmem > cfg->memory ? cfg->maxmem - cfg->memory : 0;
}

uint64_t vm_memdev_addr(const struct vm_config *cfg, unsigned i)
{
	uint64_t addr = vm_device_memory_base(cfg);

	for (unsigned k = 0; k <= i && k < cfg->n_memdevs; k++) {
		addr = ALIGN_UP(addr, cfg->memdevs[k].block_size);
		if (k == i) {
			break;
		}
		addr += cfg->memdevs[k].size;
	}
	return addr;
}

int vm_memdev_place(const struct vm_config *cfg, uint64_t size, uint64_t block_size,
		    uint64_t *ret_addr, struct error **errp)
{
	uint64_t base = vm_device_memory_base(cfg), total = vm_device_memory_size(cfg);
	uint64_t used = 0, end = base, addr;

	for (unsigned k = 0; k < cfg->n_memdevs; k++) {
		used += cfg->memdevs[k].size;
		end = vm_memdev_addr(cfg, k) + cfg->memdevs[k].size;
	}
	if (total == 0) {
		return error_set(errp, EINVAL,
				 "memory devices (e.g. for memory hotplug) are not enabled, please "
				 "specify the maxmem option");
	}
	if (used + size > total || used + size < used) {
		return error_set(errp, ENOSPC,
				 "not enough space, currently 0x%" PRIx64 " in use of total space "
				 "for memory devices 0x%" PRIx64,
				 used, total);
	}
	addr = ALIGN_UP(end, block_size);
	if (addr + size > base + total) {
		return error_set(errp, ENOSPC,
				 "could not find position in guest address space for memory device "
				 "- memory fragmented due to alignments");
	}
	*ret_addr = addr;
	return 0;
}

static int parse_one(json_t *obj, unsigned idx, struct vm_memdev_config *m, struct error **errp)
{
	static const char *const keys[] = {
		"id", "driver", "memdev", "size", "requested_size", "block_size", NULL};
	char where[48];
	const char *key;
	json_t *v;
	int r;

	snprintf(where, sizeof(where), "memory_devices[%u]: ", idx);
	if (!json_is_object(obj)) {
		return error_set(errp, EINVAL, "memory_devices[%u] must be an object", idx);
	}
	json_object_foreach (obj, key, v) {
		bool known = false;

		for (const char *const *k = keys; *k; k++) {
			known |= strcmp(*k, key) == 0;
		}
		if (!known) {
			return error_set(errp, EINVAL, "%sunknown key \"%s\"", where, key);
		}
	}
	if ((r = get_id(obj, "id", where, &m->id, errp)) < 0 ||
	    (r = get_id(obj, "memdev", where, &m->memdev, errp)) < 0) {
		return r;
	}
	if (!m->id) {
		return error_set(errp, EINVAL, "%s\"id\" is required", where);
	}
	v = json_object_get(obj, "driver");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), "virtio-mem") != 0)) {
		return error_set(errp, EINVAL, "%s\"driver\" must be \"virtio-mem\"", where);
	}
	m->driver = strdup("virtio-mem");
	if (!m->memdev) {
		char buf[MEMDEV_ID_MAX + 16];

		/* the default must be a valid memdev itself: the definition is written back */
		snprintf(buf, sizeof(buf), "%s-mem", m->id);
		if (!id_ok(buf)) {
			return error_set(
				errp, EINVAL,
				"%s\"memdev\" is required with an \"id\" over %d characters "
				"(the default \"%s\" would be too long)",
				where, MEMDEV_ID_MAX - 4, buf);
		}
		m->memdev = strdup(buf);
	}
	if (!m->driver || !m->memdev) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	m->block_size = VM_MEMDEV_DEFAULT_BLOCK;
	if ((r = get_size(obj, "size", where, &m->size, errp)) < 0 ||
	    (r = get_size(obj, "requested_size", where, &m->requested_size, errp)) < 0 ||
	    (r = get_size(obj, "block_size", where, &m->block_size, errp)) < 0) {
		return r;
	}
	if (!json_object_get(obj, "size")) {
		return error_set(errp, EINVAL, "%s\"size\" is required", where);
	}
	r = vm_memdev_check(m->size, m->requested_size, m->block_size, errp);
	if (r < 0) {
		error_prefix(errp, "memory_devices[%u]", idx);
	}
	return r;
}

json_t *vm_config_memory_keys_removed(json_t *def, json_t **ret_copy)
{
	if (!json_is_object(def) ||
	    (!json_object_get(def, "maxmem") && !json_object_get(def, "memory_devices"))) {
		return def;
	}
	*ret_copy = json_copy(def);
	if (!*ret_copy) {
		return def; /* out of memory: the keys are reported unknown */
	}
	json_object_del(*ret_copy, "maxmem");
	json_object_del(*ret_copy, "memory_devices");
	return *ret_copy;
}

int vm_config_parse_memory(json_t *def, struct vm_config *cfg, struct error **errp)
{
	json_t *v = json_object_get(def, "memory_devices");
	size_t i;
	json_t *item;
	int r;

	if ((r = get_size(def, "maxmem", "", &cfg->maxmem, errp)) < 0) {
		return r;
	}
	if (r > 0) {
		if (cfg->maxmem < cfg->memory) {
			return error_set(errp, EINVAL,
					 "\"maxmem\" (%" PRIu64
					 ") must not be less than \"memory\" "
					 "(%" PRIu64 ")",
					 cfg->maxmem, cfg->memory);
		}
		if (cfg->maxmem > VM_MAXMEM_MAX || !IS_ALIGNED(cfg->maxmem, 1ull << 20)) {
			return error_set(errp, EINVAL,
					 "\"maxmem\" must be a multiple of 1M of at most 1T");
		}
	}
	if (!v) {
		return 0;
	}
	if (!json_is_array(v)) {
		return error_set(errp, EINVAL, "\"memory_devices\" must be an array");
	}
	if (json_array_size(v) > VM_MEMDEVS_MAX) {
		return error_set(errp, E2BIG,
				 "\"memory_devices\" has %zu entries, at most %d allowed",
				 json_array_size(v), VM_MEMDEVS_MAX);
	}
	cfg->memdevs = calloc(json_array_size(v) + 1, sizeof(*cfg->memdevs));
	if (!cfg->memdevs) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_array_foreach (v, i, item) {
		struct vm_memdev_config *m = &cfg->memdevs[i];
		uint64_t addr;

		cfg->n_memdevs++;
		if ((r = parse_one(item, (unsigned)i, m, errp)) < 0) {
			return r;
		}
		for (unsigned k = 0; k < i; k++) {
			if (strcmp(cfg->memdevs[k].id, m->id) == 0) {
				return error_set(errp, EEXIST, "device id \"%s\" is used twice",
						 m->id);
			}
			if (strcmp(cfg->memdevs[k].memdev, m->memdev) == 0) {
				return error_set(
					errp, EEXIST,
					"memory_devices[%zu]: 'memdev' property specifies a "
					"busy memdev: %s",
					i, m->memdev);
			}
		}
		/* placed against the devices before it */
		cfg->n_memdevs--;
		r = vm_memdev_place(cfg, m->size, m->block_size, &addr, errp);
		cfg->n_memdevs++;
		if (r < 0) {
			error_prefix(errp, "memory_devices[%zu]", i);
			return r;
		}
		m->addr = addr;
	}
	return 0;
}

uint64_t vm_config_device_memory_end(const struct vm_config *cfg)
{
	uint64_t size = vm_device_memory_size(cfg);

	return size ? vm_device_memory_base(cfg) + size : 0;
}

uint64_t vm_config_memory_total(const struct vm_config *cfg)
{
	uint64_t total = cfg->memory;

	for (unsigned i = 0; i < cfg->n_memdevs; i++) {
		total += cfg->memdevs[i].size;
	}
	return total;
}

void vm_config_memory_to_json(const struct vm_config *cfg, json_t *o)
{
	json_t *a;

	if (cfg->maxmem) {
		json_object_set_new(o, "maxmem", json_integer((json_int_t)cfg->maxmem));
	}
	if (!cfg->n_memdevs) {
		return;
	}
	a = json_array();
	for (unsigned i = 0; i < cfg->n_memdevs; i++) {
		const struct vm_memdev_config *m = &cfg->memdevs[i];

		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "id", m->id,
						   "driver", m->driver, "memdev", m->memdev, "size",
						   (json_int_t)m->size, "requested_size",
						   (json_int_t)m->requested_size, "block_size",
						   (json_int_t)m->block_size));
	}
	json_object_set_new(o, "memory_devices", a);
}

void vm_config_memory_free(struct vm_config *cfg)
{
	for (unsigned i = 0; i < cfg->n_memdevs; i++) {
		free(cfg->memdevs[i].id);
		free(cfg->memdevs[i].driver);
		free(cfg->memdevs[i].memdev);
	}
	free(cfg->memdevs);
	cfg->memdevs = NULL;
	cfg->n_memdevs = 0;
}
