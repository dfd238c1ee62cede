/*
 * Firmware boot (cfg->boot.firmware): a BIOS image (SeaBIOS) mapped read-only
 * just below 4 GiB, its last 128 KiB also copied into the 0xE0000-0xFFFFF
 * shadow RAM, the vCPU starting at the reset vector in real mode, and the
 * machine described to the firmware through fw_cfg: RAM size and e820 map,
 * CPU counts, boot order, SMBIOS tables and the ACPI tables through the
 * table loader.
 *
 * The builders below are pure functions over buffers (unit-tested);
 * firmware_fw_cfg_populate() fills a struct fw_cfg from them.
 *
 * Threads: everything here runs on the control thread while the VM is
 * built, before any vCPU runs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct fw_cfg;
struct acpi_config;

#define FIRMWARE_MAX_SIZE (16u << 20)
#define FIRMWARE_MIN_SIZE (64u << 10)
#define FIRMWARE_SHADOW_BASE 0xE0000u
#define FIRMWARE_SHADOW_SIZE 0x20000u /* 0xE0000-0xFFFFF */
#define FIRMWARE_MAX_BOOT_ENTRIES 16

/*
 * Read a firmware image: a regular file whose size is a multiple of 64 KiB
 * between FIRMWARE_MIN_SIZE and FIRMWARE_MAX_SIZE. *ret_buf (malloc'ed) and
 * *ret_len are set on success; errors name the file and the limit.
 */
int firmware_load_image(const char *path, uint8_t **ret_buf, size_t *ret_len, struct error **errp);

/* An option ROM (55 AA signature, 1 KiB to FIRMWARE_MAX_ROM_SIZE, multiple of 512). */
#define FIRMWARE_MAX_ROM_SIZE (1u << 20)
int firmware_read_rom(const char *path, uint8_t **ret_buf, size_t *ret_len, struct error **errp);

/* A stable UUID derived from the VM name (SMBIOS type 1, fw_cfg). */
void firmware_uuid(const char *name, uint8_t uuid[16]);

/* Guest-physical address the image is mapped at: its end is 4 GiB. */
static inline uint64_t firmware_image_base(size_t len)
{
	return 0x100000000ull - len;
}

/* What the firmware is told about the machine. */
struct firmware_machine {
	uint64_t ram_below_4g; /* bytes of RAM from 0 */
	uint64_t ram_above_4g; /* bytes of RAM from 4 GiB */
	unsigned n_cpus, max_cpus;
	uint8_t uuid[16];
	const char *name; /* VM name, for SMBIOS serial numbers; may be NULL */
	/* Open Firmware device paths in boot order ("bootorder"), may be empty. */
	const char *boot_paths[FIRMWARE_MAX_BOOT_ENTRIES];
	unsigned n_boot_paths;
	/* Ranges to report as reserved in e820 (e.g. the KVM TSS pages). */
	uint64_t reserved_base, reserved_len;
	/* ACPI tables: built with hw/platform/acpi.c and passed through the table loader; NULL: none. */
	const struct acpi_config *acpi;
	uint16_t sercon_port; /* serial console for the BIOS (0x3F8); 0: none */
	/* End of the memory devices' region ("etc/reserved-memory-end"); 0: none. */
	uint64_t reserved_memory_end;
};

/* The "etc/e820" file: packed {le64 addr, le64 len, le32 type}. Returns its length. */
size_t firmware_build_e820(const struct firmware_machine *m, uint8_t *buf, size_t len);

/*
 * SMBIOS 2.8 structures of types 0, 1, 3, 4 (one per CPU), 16, 17, 19 (one
 * per RAM range), 32 and 127 into @tables, and the matching 31-byte entry
 * point into @anchor (table address 0: the firmware places the table).
 * Returns the table length, or -ENOSPC if @len is too small.
 */
int64_t firmware_build_smbios(const struct firmware_machine *m, uint8_t *tables, size_t len,
			      uint8_t anchor[31]);

/*
 * The ACPI tables of hw/platform/acpi.c as QEMU-style table-loader blobs:
 * "etc/acpi/rsdp" (36 bytes, allocated in the F segment),
 * "etc/acpi/tables" (everything else) and "etc/table-loader" (the commands
 * that allocate them, link their pointers and fix their checksums).
 * Adds the three files to @fw.
 */
int firmware_acpi_to_fw_cfg(struct fw_cfg *fw, const struct acpi_config *acpi, struct error **errp);

/* Add every item above (and the numbered ones: RAM size, CPU counts, ...) to @fw. */
int firmware_fw_cfg_populate(struct fw_cfg *fw, const struct firmware_machine *m,
			     struct error **errp);
