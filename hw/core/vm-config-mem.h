/*
 * The memory part of the VM definition ("maxmem", "memory_devices") and
 * the layout of the device memory region; see vm-config-mem.c.
 *
 * Threads: pure functions; any thread.
 */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "vmmd/vm.h"

#define VM_MEMDEVS_MAX 8
#define VM_MAXMEM_MAX (1ull << 40)
#define VM_MEMDEV_MIN_BLOCK (1ull << 20)
#define VM_MEMDEV_MAX_BLOCK (1ull << 30)
#define VM_MEMDEV_DEFAULT_BLOCK (2ull << 20) /* QEMU's default: the THP size */

/*
 * @def without this file's keys, for the strict key check of the rest:
 * @def itself when it has none, else a shallow copy in *ret_copy (the
 * caller's reference).
 */
json_t *vm_config_memory_keys_removed(json_t *def, json_t **ret_copy);
/* Parse "maxmem" and "memory_devices" of @def into @cfg (cfg->memory already set). */
int vm_config_parse_memory(json_t *def, struct vm_config *cfg, struct error **errp);
/* Add them to the canonical JSON object @o. */
void vm_config_memory_to_json(const struct vm_config *cfg, json_t *o);
void vm_config_memory_free(struct vm_config *cfg);

/* QEMU's virtio-mem property checks, with its messages. */
int vm_memdev_check(uint64_t size, uint64_t requested, uint64_t block_size, struct error **errp);
/* The device memory region: [base, base + size). */
uint64_t vm_device_memory_base(const struct vm_config *cfg);
uint64_t vm_device_memory_size(const struct vm_config *cfg);
/* Guest-physical address of memory device @i of @cfg. */
uint64_t vm_memdev_addr(const struct vm_config *cfg, unsigned i);
/* Where a new device of @size after those of @cfg would go; QEMU's errors if nowhere. */
int vm_memdev_place(const struct vm_config *cfg, uint64_t size, uint64_t block_size,
		    uint64_t *ret_addr, struct error **errp);
