/*
 * QEMU's fw_cfg interface (docs/specs/fw_cfg.rst), the channel through which
 * SeaBIOS and other firmware learn the machine: RAM size, e820 map, CPU
 * count, boot order, SMBIOS and ACPI tables. x86 layout: selector port 0x510
 * (16-bit write), data port 0x511 (byte reads), DMA address register at
 * 0x514 (two big-endian 32-bit halves; writing the low half at 0x518 runs
 * the transfer, as does one 64-bit write at 0x514).
 *
 * Items are either numbered (keys below FW_CFG_FILE_FIRST, and the x86
 * "arch" keys with bit 15 set) or named files listed in the directory at
 * FW_CFG_FILE_DIR. Contents are copied in when added and are read-only to
 * the guest unless added as writable.
 *
 * Threads: items are added on the control thread before the vCPUs run.
 * Port accesses come from vCPU threads and are serialized by an internal
 * mutex, so several vCPUs may touch the device at once.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct fw_cfg;
struct guest_mem;
struct iobus;

#define FW_CFG_IO_BASE 0x510
#define FW_CFG_IO_SIZE 12 /* 0x510..0x51b: selector, data, DMA address */

enum {
	FW_CFG_SIGNATURE = 0x00,
	FW_CFG_ID = 0x01,
	FW_CFG_UUID = 0x02,
	FW_CFG_RAM_SIZE = 0x03,
	FW_CFG_NOGRAPHIC = 0x04,
	FW_CFG_NB_CPUS = 0x05,
	FW_CFG_MACHINE_ID = 0x06,
	FW_CFG_KERNEL_ADDR = 0x07,
	FW_CFG_KERNEL_SIZE = 0x08,
	FW_CFG_KERNEL_CMDLINE = 0x09,
	FW_CFG_INITRD_ADDR = 0x0a,
	FW_CFG_INITRD_SIZE = 0x0b,
	FW_CFG_BOOT_DEVICE = 0x0c,
	FW_CFG_NUMA = 0x0d,
	FW_CFG_BOOT_MENU = 0x0e,
	FW_CFG_MAX_CPUS = 0x0f,
	FW_CFG_FILE_DIR = 0x19,
	FW_CFG_FILE_FIRST = 0x20,
	FW_CFG_ARCH_LOCAL = 0x8000,
	FW_CFG_ACPI_TABLES = 0x8000,
	FW_CFG_SMBIOS_ENTRIES = 0x8001,
	FW_CFG_IRQ0_OVERRIDE = 0x8002,
	FW_CFG_E820_TABLE = 0x8003,
	FW_CFG_HPET = 0x8004,
};

/* DMA control bits (the high 16 bits carry a selector with FW_CFG_DMA_SELECT). */
enum {
	FW_CFG_DMA_ERROR = 0x01,
	FW_CFG_DMA_READ = 0x02,
	FW_CFG_DMA_SKIP = 0x04,
	FW_CFG_DMA_SELECT = 0x08,
	FW_CFG_DMA_WRITE = 0x10,
};

/* Limits: files in the directory, and the size of any one item. */
#define FW_CFG_MAX_FILES 64
#define FW_CFG_MAX_FILE_NAME 56 /* including the terminating NUL */
#define FW_CFG_MAX_ITEM_SIZE (16u << 20)

/*
 * A device with the signature, the ID (traditional + DMA) and an empty file
 * directory. DMA transfers reach guest RAM through @mem (borrowed; NULL
 * disables the DMA interface). Returns NULL on allocation failure.
 */
struct fw_cfg *fw_cfg_new(struct guest_mem *mem);
void fw_cfg_free(struct fw_cfg *fw);

/*
 * Set numbered item @key to a copy of @data. Replaces an existing value.
 * -EINVAL for a key in the file range or the directory, -E2BIG above
 * FW_CFG_MAX_ITEM_SIZE, -ENOMEM.
 */
int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data, size_t len);
/* Little-endian integers, as the fw_cfg spec stores them. */
int fw_cfg_add_i16(struct fw_cfg *fw, uint16_t key, uint16_t value);
int fw_cfg_add_i32(struct fw_cfg *fw, uint16_t key, uint32_t value);
int fw_cfg_add_i64(struct fw_cfg *fw, uint16_t key, uint64_t value);

/*
 * Add (or replace) the file @name with a copy of @data; the directory is
 * rebuilt, sorted by name. @writable lets the guest write it through DMA.
 * Errors name the file: empty or too long names, too many files, too big.
 */
int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len,
		    bool writable, struct error **errp);
/* The current contents of a file (tests, and reading back guest writes). */
const void *fw_cfg_file_data(struct fw_cfg *fw, const char *name, size_t *ret_len);

/* Register the ports on @bus (FW_CFG_IO_BASE, FW_CFG_IO_SIZE). */
int fw_cfg_register(struct fw_cfg *fw, struct iobus *bus, struct error **errp);
void fw_cfg_unregister(struct fw_cfg *fw, struct iobus *bus);
/* Power-on state: no item selected, no DMA address latched. */
void fw_cfg_reset(struct fw_cfg *fw);
/*
 * Save/restore (docs/vmstate.md): the selector, read offset and DMA
 * address latch, and the contents of writable items (the rest is rebuilt
 * from the configuration). Load refuses an item this fw_cfg lacks or one
 * of a different size.
 */
struct vmstate_buf;
struct error;
void fw_cfg_save(struct fw_cfg *fw, struct vmstate_buf *out);
int fw_cfg_load(struct fw_cfg *fw, struct vmstate_buf *in, struct error **errp);

/* The port handlers (@offset from FW_CFG_IO_BASE); exported for unit tests. */
uint64_t fw_cfg_io_read(void *opaque, uint64_t offset, unsigned size);
void fw_cfg_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size);

/*
 * Builder for the "etc/table-loader" script that QEMU-style firmware runs to
 * place ACPI tables: each command is one 128-byte record, little-endian.
 */
struct fw_cfg_loader {
	uint8_t *buf;
	size_t len;
	unsigned n_cmds;
};

#define FW_CFG_LOADER_CMD_SIZE 128
#define FW_CFG_LOADER_MAX_CMDS 256

enum {
	FW_CFG_LOADER_ZONE_HIGH = 1, /* anywhere in RAM below 4 GiB */
	FW_CFG_LOADER_ZONE_FSEG = 2, /* the 0xE0000-0xFFFFF segment (RSDP) */
};

/* Allocate @file in guest memory, aligned to @align (a power of two). */
int fw_cfg_loader_allocate(struct fw_cfg_loader *l, const char *file, uint32_t align, uint8_t zone);
/*
 * Add the guest address of @src_file to the @size-byte (1, 2, 4, 8)
 * little-endian value at @offset of @dest_file.
 */
int fw_cfg_loader_add_pointer(struct fw_cfg_loader *l, const char *dest_file, const char *src_file,
			      uint32_t offset, uint8_t size);
/* Set the byte at @offset of @file so that bytes [start, start+length) sum to 0. */
int fw_cfg_loader_add_checksum(struct fw_cfg_loader *l, const char *file, uint32_t offset,
			       uint32_t start, uint32_t length);
void fw_cfg_loader_free(struct fw_cfg_loader *l);
