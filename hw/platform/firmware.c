/*
 * Firmware boot support: loading the BIOS image and describing the machine
 * to it through fw_cfg (see firmware.h). The SMBIOS and e820 builders and
 * the ACPI-to-table-loader conversion are pure functions over buffers.
 *
 * Threads: control thread only, while the VM is built.
 */
#include "config.h"

#include <cpuid.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/pathpol.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/platform/acpi.h"
#include "hw/platform/firmware.h"
#include "hw/platform/fw-cfg.h"
#include "hw/pci/ide.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "hw/platform/platform.h"
#include "vmmd/vm.h"

/* Read a whole regular file of @min..@max bytes, a multiple of @unit. */
static int firmware_read_file(const char *what, const char *path, size_t min, size_t max,
			      size_t unit, uint8_t **ret_buf, size_t *ret_len, struct error **errp)
{
	_cleanup_close_ int fd = pathpol_open_err(what, path, O_RDONLY, 0, errp);
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat st;
	size_t done = 0;

	if (fd < 0) {
		return fd;
	}
	if (fstat(fd, &st) < 0) {
		return error_set_errno(errp, errno, "cannot stat %s '%s'", what, path);
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)min || st.st_size > (off_t)max ||
	    st.st_size % (off_t)unit) {
		return error_set(errp, EINVAL,
				 "%s '%s' must be a file of %zu KiB to %zu KiB in multiples of "
				 "%zu bytes (it is %jd bytes)",
				 what, path, min >> 10, max >> 10, unit, (intmax_t)st.st_size);
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		return error_set(errp, ENOMEM, "out of memory loading '%s'", path);
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return error_set_errno(errp, n < 0 ? errno : EIO, "cannot read %s '%s'",
					       what, path);
		}
		done += (size_t)n;
	}
	*ret_buf = TAKE_PTR(buf);
	*ret_len = done;
	return 0;
}

int firmware_load_image(const char *path, uint8_t **ret_buf, size_t *ret_len, struct error **errp)
{
	return firmware_read_file("firmware image", path, FIRMWARE_MIN_SIZE, FIRMWARE_MAX_SIZE,
				  64 * 1024, ret_buf, ret_len, errp);
}

int firmware_read_rom(const char *path, uint8_t **ret_buf, size_t *ret_len, struct error **errp)
{
	int r = firmware_read_file("option ROM", path, 1024, FIRMWARE_MAX_ROM_SIZE, 512, ret_buf,
				   ret_len, errp);

	if (r == 0 && ((*ret_buf)[0] != 0x55 || (*ret_buf)[1] != 0xaa)) {
		free(*ret_buf);
		*ret_buf = NULL;
		return error_set(errp, EINVAL, "option ROM '%s' lacks the 55 AA signature", path);
	}
	return r;
}

void firmware_uuid(const char *name, uint8_t uuid[16])
{
	uint64_t h1 = 14695981039346656037ull, h2 = 1099511628211ull * 31;

	for (const char *s = name ? name : ""; *s; s++) {
		h1 = (h1 ^ (uint8_t)*s) * 1099511628211ull;
		h2 = (h2 ^ (uint8_t)*s) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
	}
	for (unsigned i = 0; i < 8; i++) {
		uuid[i] = (uint8_t)(h1 >> (8 * i));
		uuid[8 + i] = (uint8_t)(h2 >> (8 * i));
	}
	uuid[6] = (uuid[6] & 0x0f) | 0x50; /* version 5 style: name-based */
	uuid[8] = (uuid[8] & 0x3f) | 0x80; /* RFC 4122 variant */
}

/* e820 */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t e820_put(uint8_t *buf, size_t len, size_t at, uint64_t addr, uint64_t size,
		       uint32_t type)
{
	if (at + 20 > len) {
		return at;
	}
	put_le64(buf + at, addr);
	put_le64(buf + at + 8, size);
	put_le32(buf + at + 16, type);
	return at + 20;
}

size_t firmware_build_e820(const struct firmware_machine *m, uint8_t *buf, size_t len)
{
	size_t at = 0;

	/* Like QEMU: all low RAM; the firmware carves out what it uses itself. */
	at = e820_put(buf, len, at, 0, m->ram_below_4g, 1);
	if (m->reserved_len) {
		at = e820_put(buf, len, at, m->reserved_base, m->reserved_len, 2);
	}
	if (m->ram_above_4g) {
		at = e820_put(buf, len, at, 0x100000000ull, m->ram_above_4g, 1);
	}
	return at;
}

/* SMBIOS */

struct smbios_buf {
	uint8_t *buf;
	size_t len, used;
	uint16_t handle;
	unsigned count;
	size_t max_struct;
	bool overflow;
};

/*
 * Append one structure: @fmt_len bytes of formatted area (type and length
 * filled in here) and the NULL-terminated list of strings.
 */
static void smbios_add(struct smbios_buf *s, uint8_t *fmt, uint8_t fmt_len,
		       const char *const *strings)
{
	size_t start = s->used, need = fmt_len;
	unsigned n_str = 0;

	for (const char *const *p = strings; p && *p; p++) {
		need += strlen(*p) + 1;
		n_str++;
	}
	need += n_str ? 1 : 2;
	if (s->used + need > s->len) {
		s->overflow = true;
		return;
	}
	fmt[1] = fmt_len;
	put_le16(fmt + 2, s->handle++);
	memcpy(s->buf + s->used, fmt, fmt_len);
	s->used += fmt_len;
	for (const char *const *p = strings; p && *p; p++) {
		size_t l = strlen(*p) + 1;

		memcpy(s->buf + s->used, *p, l);
		s->used += l;
	}
	s->buf[s->used++] = 0;
	if (!n_str) {
		s->buf[s->used++] = 0;
	}
	s->count++;
	s->max_struct = MAX(s->max_struct, s->used - start);
}

int64_t firmware_build_smbios(const struct firmware_machine *m, uint8_t *tables, size_t len,
			      uint8_t anchor[31])
{
	struct smbios_buf s = {.buf = tables, .len = len, .handle = 0};
	uint64_t total_mb = (m->ram_below_4g + m->ram_above_4g) >> 20;
	uint16_t array_handle;
	uint8_t f[0x30];
	unsigned a, b, c, d;
	uint8_t sum;
	char serial[64];

	snprintf(serial, sizeof(serial), "%s", m->name ? m->name : "vmmd");

	/* Type 0: BIOS information */
	memset(f, 0, sizeof(f));
	f[0] = 0;
	f[4] = 1;		 /* vendor */
	f[5] = 2;		 /* version */
	put_le16(f + 6, 0xe800); /* starting segment */
	f[8] = 3;		 /* release date */
	f[9] = 0;		 /* ROM size: 64 KiB */
	f[10] = 0x08;		 /* characteristics not supported */
	f[0x12] = 0x01;		 /* ext 1: ACPI */
	f[0x13] = 0x08 | 0x10;	 /* ext 2: targeted content distribution, UEFI no */
	f[0x14] = 0;
	f[0x15] = 0;
	f[0x16] = 0xff;
	f[0x17] = 0xff;
	smbios_add(&s, f, 0x18, (const char *const[]){"vmmd", "1.0", "01/01/2026", NULL});

	/* Type 1: system */
	memset(f, 0, sizeof(f));
	f[0] = 1;
	f[4] = 1; /* manufacturer */
	f[5] = 2; /* product */
	f[6] = 3; /* version */
	f[7] = 4; /* serial */
	/* UUID: the first three fields little-endian, as SMBIOS 2.6+ wants */
	f[8] = m->uuid[3];
	f[9] = m->uuid[2];
	f[10] = m->uuid[1];
	f[11] = m->uuid[0];
	f[12] = m->uuid[5];
	f[13] = m->uuid[4];
	f[14] = m->uuid[7];
	f[15] = m->uuid[6];
	memcpy(f + 16, m->uuid + 8, 8);
	f[0x18] = 0x06; /* wake-up: power switch */
	f[0x19] = 5;	/* SKU */
	f[0x1a] = 6;	/* family */
	smbios_add(&s, f, 0x1b,
		   (const char *const[]){"vmmd", "vmmd virtual machine", "1.0", serial, "vmmd",
					 "Virtual Machine", NULL});

	/* Type 3: chassis */
	memset(f, 0, sizeof(f));
	f[0] = 3;
	f[4] = 1;    /* manufacturer */
	f[5] = 0x01; /* type: other */
	f[6] = 2;    /* version */
	f[7] = 3;    /* serial */
	f[8] = 0;    /* asset tag */
	f[9] = 0x03; /* boot-up state: safe */
	f[10] = 0x03;
	f[11] = 0x03;
	f[12] = 0x02; /* security: unknown */
	smbios_add(&s, f, 0x15, (const char *const[]){"vmmd", "1.0", serial, NULL});

	/* Type 4: one processor per vCPU */
	a = b = c = d = 0;
	__get_cpuid(1, &a, &b, &c, &d);
	for (unsigned i = 0; i < MAX(m->n_cpus, 1u); i++) {
		char socket[16];

		snprintf(socket, sizeof(socket), "CPU %u", i);
		memset(f, 0, sizeof(f));
		f[0] = 4;
		f[4] = 1;    /* socket designation */
		f[5] = 0x03; /* central processor */
		f[6] = 0xfe; /* family: see family 2 */
		f[7] = 2;    /* manufacturer */
		put_le32(f + 8, a);
		put_le32(f + 12, d);
		f[16] = 3; /* version */
		put_le16(f + 0x14, 2000);
		put_le16(f + 0x16, 2000);
		f[0x18] = 0x41; /* populated, enabled */
		f[0x19] = 0x01;
		put_le16(f + 0x1a, 0xffff);
		put_le16(f + 0x1c, 0xffff);
		put_le16(f + 0x1e, 0xffff);
		f[0x23] = 1; /* cores */
		f[0x24] = 1;
		f[0x25] = 1; /* threads */
		put_le16(f + 0x26, 0x02);
		put_le16(f + 0x28, 0x01); /* family 2: other */
		smbios_add(&s, f, 0x2a, (const char *const[]){socket, "vmmd", "vmmd CPU", NULL});
	}

	/* Type 16: physical memory array */
	array_handle = s.handle;
	memset(f, 0, sizeof(f));
	f[0] = 16;
	f[4] = 0x01; /* location: other */
	f[5] = 0x03; /* use: system memory */
	f[6] = 0x06; /* error correction: multi-bit ECC */
	if (total_mb * 1024 >= 0x80000000ull) {
		put_le32(f + 7, 0x80000000u);
		put_le64(f + 0x0f, total_mb << 20);
	} else {
		put_le32(f + 7, (uint32_t)(total_mb * 1024));
	}
	put_le16(f + 11, 0xfffe);
	put_le16(f + 13, 1);
	smbios_add(&s, f, 0x17, NULL);

	/* Type 17: one memory device holding all RAM */
	memset(f, 0, sizeof(f));
	f[0] = 17;
	put_le16(f + 4, array_handle);
	put_le16(f + 6, 0xfffe);
	put_le16(f + 8, 0xffff);
	put_le16(f + 10, 0xffff);
	if (total_mb < 0x7fff) {
		put_le16(f + 12, (uint16_t)total_mb);
	} else {
		put_le16(f + 12, 0x7fff);
		put_le32(f + 0x1c, (uint32_t)MIN(total_mb, 0x7fffffffull));
	}
	f[14] = 0x09; /* DIMM */
	f[16] = 1;    /* device locator */
	f[18] = 0x07; /* RAM */
	put_le16(f + 19, 0x0002);
	f[0x17] = 2; /* manufacturer */
	smbios_add(&s, f, 0x28, (const char *const[]){"DIMM 0", "vmmd", NULL});

	/* Type 19: one mapped range per RAM region */
	for (unsigned r = 0; r < 2; r++) {
		uint64_t base = r ? 0x100000000ull : 0,
			 size = r ? m->ram_above_4g : m->ram_below_4g;
		uint64_t end = base + size - 1;

		if (!size) {
			continue;
		}
		memset(f, 0, sizeof(f));
		f[0] = 19;
		if (end >> 10 < 0xffffffffull) {
			put_le32(f + 4, (uint32_t)(base >> 10));
			put_le32(f + 8, (uint32_t)(end >> 10));
		} else {
			put_le32(f + 4, 0xffffffffu);
			put_le32(f + 8, 0xffffffffu);
			put_le64(f + 0x0f, base);
			put_le64(f + 0x17, end);
		}
		put_le16(f + 12, array_handle);
		f[14] = 1;
		smbios_add(&s, f, 0x1f, NULL);
	}

	/* Type 32: system boot information, no errors */
	memset(f, 0, sizeof(f));
	f[0] = 32;
	smbios_add(&s, f, 0x0b, NULL);

	/* Type 127: end of table */
	memset(f, 0, sizeof(f));
	f[0] = 127;
	smbios_add(&s, f, 4, NULL);

	if (s.overflow || s.used > 0xffff) {
		return -ENOSPC;
	}

	memset(anchor, 0, 31);
	memcpy(anchor, "_SM_", 4);
	anchor[5] = 0x1f;
	anchor[6] = 2;
	anchor[7] = 8;
	put_le16(anchor + 8, (uint16_t)s.max_struct);
	memcpy(anchor + 16, "_DMI_", 5);
	put_le16(anchor + 22, (uint16_t)s.used);
	put_le32(anchor + 24, 0);
	put_le16(anchor + 28, (uint16_t)s.count);
	anchor[30] = 0x28;
	sum = 0;
	for (unsigned i = 16; i < 31; i++) {
		sum += anchor[i];
	}
	anchor[21] = (uint8_t)-sum;
	sum = 0;
	for (unsigned i = 0; i < 31; i++) {
		sum += anchor[i];
	}
	anchor[4] = (uint8_t)-sum;
	return (int64_t)s.used;
}

/* ACPI through the table loader */

#define ACPI_BLOB_SIZE 0x10000
#define ACPI_GPA_A 0x100000ull
#define ACPI_GPA_B 0x200000ull
#define ACPI_MAX_TABLES 16

/*
 * Offsets of the tables in a buffer built at @gpa, found by following the
 * pointers from the RSDP (RSDT, XSDT, their entries, and the FADT's FACS
 * and DSDT). Returns the count, or -EINVAL if a pointer leaves the buffer.
 */
static int acpi_find_tables(const uint8_t *buf, size_t used, uint64_t gpa, uint32_t *offs)
{
	unsigned n = 0;
	uint64_t rsdt = get_le32(buf + 16), xsdt = get_le32(buf + 24);

	for (int wide = 0; wide < 2; wide++) {
		uint64_t t = (wide ? xsdt : rsdt), off;
		uint32_t len;

		if (!t) {
			continue;
		}
		off = t - gpa;
		if (t < gpa || off + 36 > used || n >= ACPI_MAX_TABLES) {
			return -EINVAL;
		}
		offs[n++] = (uint32_t)off;
		len = get_le32(buf + off + 4);
		if (len < 36 || off + len > used) {
			return -EINVAL;
		}
		for (uint32_t e = 36; e + (wide ? 8u : 4u) <= len; e += wide ? 8 : 4) {
			uint64_t p = get_le32(buf + off + e);
			bool seen = false;

			if (p < gpa || p - gpa + 36 > used) {
				return -EINVAL;
			}
			for (unsigned k = 0; k < n; k++) {
				seen |= offs[k] == p - gpa;
			}
			if (!seen) {
				if (n >= ACPI_MAX_TABLES) {
					return -EINVAL;
				}
				offs[n++] = (uint32_t)(p - gpa);
			}
		}
	}
	/* FADT -> FACS, DSDT */
	for (unsigned k = 0, m = n; k < m; k++) {
		if (memcmp(buf + offs[k], "FACP", 4) == 0) {
			for (unsigned f = 0; f < 2; f++) {
				uint64_t p = get_le32(buf + offs[k] + (f ? 40 : 36));

				if (!p) {
					continue;
				}
				if (p < gpa || p - gpa + 36 > used || n >= ACPI_MAX_TABLES) {
					return -EINVAL;
				}
				offs[n++] = (uint32_t)(p - gpa);
			}
		}
	}
	return (int)n;
}

int firmware_acpi_to_fw_cfg(struct fw_cfg *fw, const struct acpi_config *acpi, struct error **errp)
{
	_cleanup_free_ uint8_t *a = calloc(1, ACPI_BLOB_SIZE), *b = calloc(1, ACPI_BLOB_SIZE);
	struct fw_cfg_loader l = {0};
	uint32_t offs[ACPI_MAX_TABLES];
	bool is_csum[ACPI_BLOB_SIZE / 8];
	int64_t used, used_b;
	uint8_t rsdp[36];
	int n, r = 0;

	if (!a || !b) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	used = acpi_build_tables(a, ACPI_BLOB_SIZE, ACPI_GPA_A, acpi, errp);
	if (used < 0) {
		return (int)used;
	}
	used_b = acpi_build_tables(b, ACPI_BLOB_SIZE, ACPI_GPA_B, acpi, errp);
	if (used_b != used) {
		return error_set(errp, EINVAL, "ACPI tables are not relocatable");
	}
	n = acpi_find_tables(a, (size_t)used, ACPI_GPA_A, offs);
	if (n < 0) {
		return error_set(errp, EINVAL, "ACPI tables point outside their buffer");
	}
	memset(is_csum, 0, sizeof(is_csum));

	/* The RSDP goes in its own blob; the tables blob keeps buffer offsets. */
	memcpy(rsdp, a, 36);
	memset(a, 0, 36);
	r |= fw_cfg_loader_allocate(&l, "etc/acpi/tables", 64, FW_CFG_LOADER_ZONE_HIGH);
	r |= fw_cfg_loader_allocate(&l, "etc/acpi/rsdp", 16, FW_CFG_LOADER_ZONE_FSEG);

	/* Pointer fields are the bytes (other than checksums) that moved with the address. */
	for (size_t i = 36; i + 2 <= (size_t)used; i++) {
		bool csum = false;

		for (int k = 0; k < n; k++) {
			csum |= i == offs[k] + 9u;
		}
		if (csum || a[i] == b[i]) {
			continue;
		}
		if (i < 2 || a[i] != (uint8_t)(b[i] - 0x10)) {
			return error_set(errp, EINVAL, "ACPI tables: unexpected relocation at %zu",
					 i);
		}
		size_t field = i - 2;
		uint32_t v = get_le32(a + field) - (uint32_t)ACPI_GPA_A;

		put_le32(a + field, v);
		r |= fw_cfg_loader_add_pointer(&l, "etc/acpi/tables", "etc/acpi/tables",
					       (uint32_t)field, 4);
	}
	for (unsigned f = 0; f < 2; f++) {
		size_t field = f ? 24 : 16;
		uint32_t v = get_le32(rsdp + field);

		if (v) {
			put_le32(rsdp + field, v - (uint32_t)ACPI_GPA_A);
			r |= fw_cfg_loader_add_pointer(&l, "etc/acpi/rsdp", "etc/acpi/tables",
						       (uint32_t)field, f ? 8 : 4);
		}
	}
	for (int k = 0; k < n; k++) {
		if (memcmp(a + offs[k], "FACS", 4) == 0) {
			continue; /* the FACS has no checksum */
		}
		r |= fw_cfg_loader_add_checksum(&l, "etc/acpi/tables", offs[k] + 9, offs[k],
						get_le32(a + offs[k] + 4));
	}
	r |= fw_cfg_loader_add_checksum(&l, "etc/acpi/rsdp", 8, 0, 20);
	r |= fw_cfg_loader_add_checksum(&l, "etc/acpi/rsdp", 32, 0, 36);
	if (r) {
		fw_cfg_loader_free(&l);
		return error_set(errp, ENOMEM, "ACPI table loader script too large");
	}
	r = fw_cfg_add_file(fw, "etc/acpi/tables", a, (size_t)used, false, errp);
	if (r == 0) {
		r = fw_cfg_add_file(fw, "etc/acpi/rsdp", rsdp, sizeof(rsdp), false, errp);
	}
	if (r == 0) {
		r = fw_cfg_add_file(fw, "etc/table-loader", l.buf, l.len, false, errp);
	}
	fw_cfg_loader_free(&l);
	return r;
}

int firmware_fw_cfg_populate(struct fw_cfg *fw, const struct firmware_machine *m,
			     struct error **errp)
{
	uint8_t e820[5 * 20], anchor[31];
	_cleanup_free_ uint8_t *smbios = malloc(16384);
	_cleanup_free_ char *order = NULL;
	size_t order_len = 0;
	int64_t smbios_len;
	size_t n;
	int r = 0;

	if (!smbios) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r |= fw_cfg_add_i64(fw, FW_CFG_RAM_SIZE, m->ram_below_4g + m->ram_above_4g);
	r |= fw_cfg_add_i16(fw, FW_CFG_NB_CPUS, (uint16_t)m->n_cpus);
	r |= fw_cfg_add_i16(fw, FW_CFG_MAX_CPUS, (uint16_t)MAX(m->max_cpus, m->n_cpus));
	r |= fw_cfg_add_i16(fw, FW_CFG_NOGRAPHIC, 1);
	r |= fw_cfg_add_i16(fw, FW_CFG_BOOT_MENU, 0);
	r |= fw_cfg_add_bytes(fw, FW_CFG_UUID, m->uuid, 16);
	r |= fw_cfg_add_i32(fw, FW_CFG_IRQ0_OVERRIDE, 1);
	if (r) {
		return error_set(errp, ENOMEM, "fw_cfg: cannot add items");
	}
	n = firmware_build_e820(m, e820, sizeof(e820));
	r = fw_cfg_add_file(fw, "etc/e820", e820, n, false, errp);
	if (r < 0) {
		return r;
	}
	for (unsigned i = 0; i < m->n_boot_paths && i < FIRMWARE_MAX_BOOT_ENTRIES; i++) {
		size_t l = strlen(m->boot_paths[i]);
		char *p = realloc(order, order_len + l + 2);

		if (!p) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		order = p;
		memcpy(order + order_len, m->boot_paths[i], l);
		order_len += l;
		order[order_len++] = '\n';
		order[order_len] = 0;
	}
	if (order_len) {
		/* QEMU's format: one path per line, NUL-terminated */
		r = fw_cfg_add_file(fw, "bootorder", order, order_len + 1, false, errp);
		if (r < 0) {
			return r;
		}
	}
	smbios_len = firmware_build_smbios(m, smbios, 16384, anchor);
	if (smbios_len < 0) {
		return error_set(errp, ENOSPC, "SMBIOS tables too large");
	}
	r = fw_cfg_add_file(fw, "etc/smbios/smbios-tables", smbios, (size_t)smbios_len, false,
			    errp);
	if (r == 0) {
		r = fw_cfg_add_file(fw, "etc/smbios/smbios-anchor", anchor, sizeof(anchor), false,
				    errp);
	}
	if (r == 0 && m->sercon_port) {
		uint16_t port = htole16(m->sercon_port);

		r = fw_cfg_add_file(fw, "etc/sercon-port", &port, sizeof(port), false, errp);
	}
	if (r == 0) {
		/* Do not wait for a boot menu key nobody can press quickly anyway. */
		uint16_t wait = htole16(0);

		r = fw_cfg_add_file(fw, "etc/boot-menu-wait", &wait, sizeof(wait), false, errp);
	}
	if (r == 0 && m->reserved_memory_end) {
		/* as QEMU: SeaBIOS puts 64-bit BARs above the memory devices' region */
		uint64_t end = htole64(m->reserved_memory_end);

		r = fw_cfg_add_file(fw, "etc/reserved-memory-end", &end, sizeof(end), false, errp);
	}
	if (r == 0 && m->acpi) {
		r = firmware_acpi_to_fw_cfg(fw, m->acpi, errp);
	}
	return r;
}

/*
 * The device class (realized after every PCI device, so boot paths can name
 * their slots): with cfg->boot.firmware it loads the image, maps it below
 * 4 GiB, fills the shadow at 0xE0000-0xFFFFF, and serves fw_cfg; the
 * vCPUs then start from the architectural reset state. Without firmware it
 * does nothing.
 */

struct firmware {
	struct vm *vm;
	uint8_t *image; /* page-aligned, mapped read-only at firmware_image_base() */
	size_t len;
	bool mapped;
	struct fw_cfg *fw;
	bool fw_registered;
	char *roms[2 * FIRMWARE_MAX_BOOT_ENTRIES];
	unsigned n_roms;
};

/* Copy the top of the image into the shadow RAM below 1 MiB (realize and reset). */
static int firmware_fill_shadow(struct firmware *f, struct error **errp)
{
	size_t n = MIN(f->len, (size_t)FIRMWARE_SHADOW_SIZE);
	uint64_t gpa = 0x100000 - n;
	void *p = guest_mem_ptr(vm_guest_mem(f->vm), gpa, n);

	if (!p) {
		return error_set(errp, ENOSPC,
				 "firmware: guest RAM does not cover 0x%" PRIx64
				 "-0xfffff for the BIOS shadow",
				 gpa);
	}
	memcpy(p, f->image + f->len - n, n);
	return 0;
}

/* The option ROM of a NIC: its "rom" key, or Debian's ipxe-qemu ROM for the model. */
static const char *firmware_nic_rom(const struct vm_nic_config *nc, char *buf, size_t len)
{
	static const char *const dirs[] = {"/usr/lib/ipxe/qemu", "/usr/share/qemu"};
	const char *file =
		nc->driver && strcmp(nc->driver, "e1000") == 0 ? "pxe-e1000.rom" : "pxe-virtio.rom";

	if (nc->rom) {
		return nc->rom[0] ? nc->rom : NULL;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(buf, len, "%s/%s", dirs[i], file);
		if (access(buf, R_OK) == 0) {
			return buf;
		}
	}
	return NULL;
}

/* "pciVVVV,DDDD.rom" files SeaBIOS looks up before a device's ROM BAR. */
static int firmware_add_roms(struct firmware *f, struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(f->vm);

	for (unsigned i = 0; i < cfg->n_nics; i++) {
		const struct vm_nic_config *nc = &cfg->nics[i];
		bool e1000 = nc->driver && strcmp(nc->driver, "e1000") == 0;
		char buf[256], name[32];
		const char *path = firmware_nic_rom(nc, buf, sizeof(buf));
		_cleanup_free_ uint8_t *rom = NULL;
		size_t len = 0;
		size_t dummy;

		if (!path) {
			continue;
		}
		snprintf(name, sizeof(name), "pci%04x,%04x.rom", e1000 ? 0x8086 : 0x1af4,
			 e1000 ? 0x100e : 0x1041);
		if (fw_cfg_file_data(f->fw, name, &dummy)) {
			continue; /* one ROM per model: SeaBIOS runs it for each device */
		}
		if (firmware_read_rom(path, &rom, &len, errp) < 0) {
			error_prefix(errp, "nic '%s'", nc->id);
			return -EINVAL;
		}
		if (fw_cfg_add_file(f->fw, name, rom, len, false, errp) < 0) {
			return -EINVAL;
		}
	}
	return 0;
}

/* Boot paths from boot.order: disk and NIC ids to the Open Firmware paths SeaBIOS matches. */
static int firmware_boot_paths(struct firmware *f, struct firmware_machine *m, char **store,
			       struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(f->vm);
	struct pci_host *host = pci_host_of(f->vm);
	unsigned n = 0;

	for (char **o = cfg->boot.order; o && *o; o++) {
		unsigned ide_index = 0, usb_port = 1;
		int slot = -1;
		char path[128];

		if (n >= FIRMWARE_MAX_BOOT_ENTRIES) {
			return error_set(errp, EINVAL, "boot.order has more than %d entries",
					 FIRMWARE_MAX_BOOT_ENTRIES);
		}
		for (unsigned i = 0; i < cfg->n_disks && slot < 0; i++) {
			const struct vm_disk_config *dc = &cfg->disks[i];
			bool usb = dc->driver && strcmp(dc->driver, "usb-storage") == 0;

			if (strcmp(dc->id, *o) == 0) {
				if (usb) {
					/* usb-storage disks take root ports 1.. in order (hw/usb/xhci.c) */
					slot = pci_host_find_slot(host, "xhci");
					snprintf(path, sizeof(path),
						 "/pci@i0cf8/usb@%x/storage@%x/channel@0/disk@0,0",
						 slot, usb_port);
				} else if (ide_disk_driver(dc->driver)) {
					slot = pci_host_find_slot(host, "ide");
					snprintf(path, sizeof(path),
						 "/pci@i0cf8/*@%x/drive@%u/disk@%u", slot,
						 ide_index / 2, ide_index % 2);
				} else {
					slot = pci_host_find_slot(host, dc->id);
					snprintf(path, sizeof(path), "/pci@i0cf8/*@%x", slot);
				}
			}
			ide_index += ide_disk_driver(dc->driver);
			usb_port += usb;
		}
		for (unsigned i = 0; i < cfg->n_nics && slot < 0; i++) {
			if (strcmp(cfg->nics[i].id, *o) == 0) {
				slot = pci_host_find_slot(host, cfg->nics[i].id);
				snprintf(path, sizeof(path), "/pci@i0cf8/*@%x", slot);
			}
		}
		if (slot < 0) {
			return error_set(
				errp, ENOENT,
				"boot.order names '%s', which is no disk or NIC of this VM", *o);
		}
		store[n] = strdup(path);
		if (!store[n]) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		m->boot_paths[n] = store[n];
		n++;
	}
	m->n_boot_paths = n;
	return 0;
}

static void firmware_unrealize(void *state)
{
	struct firmware *f = state;

	if (!f) {
		return;
	}
	if (f->fw_registered) {
		fw_cfg_unregister(f->fw, vm_iobus(f->vm));
	}
	fw_cfg_free(f->fw);
	if (f->mapped) {
		vm_unmap_rom(f->vm, firmware_image_base(f->len));
	}
	free(f->image);
	for (unsigned i = 0; i < f->n_roms; i++) {
		free(f->roms[i]);
	}
	free(f);
}

static int firmware_realize(struct vm *vm, const void *unused, void **ret_state,
			    struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(vm);
	struct guest_mem *mem = vm_guest_mem(vm);
	struct firmware_machine m = {0};
	struct acpi_pci_info *pci = NULL;
	struct acpi_config acpi = {0};
	struct acpi_srat_info srat;
	_cleanup_free_ uint8_t *raw = NULL;
	struct firmware *f;
	uint64_t total = cfg->memory; /* RAM; memory devices are not in e820 */
	int r;

	(void)unused;
	*ret_state = NULL;
	if (!cfg->boot.firmware) {
		return 0;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		return error_set(errp, ENOMEM, "firmware: out of memory");
	}
	f->vm = vm;
	r = firmware_load_image(cfg->boot.firmware, &raw, &f->len, errp);
	if (r < 0) {
		goto err;
	}
	/* KVM maps whole pages: keep the image in page-aligned memory. */
	if (posix_memalign((void **)&f->image, 4096, f->len) != 0) {
		r = error_set(errp, ENOMEM, "firmware: out of memory");
		goto err;
	}
	memcpy(f->image, raw, f->len);
	r = vm_map_rom(vm, firmware_image_base(f->len), f->image, f->len, errp);
	if (r < 0) {
		goto err;
	}
	f->mapped = true;
	r = firmware_fill_shadow(f, errp);
	if (r < 0) {
		goto err;
	}

	f->fw = fw_cfg_new(mem);
	if (!f->fw) {
		r = error_set(errp, ENOMEM, "firmware: out of memory");
		goto err;
	}
	m.ram_below_4g = MIN(total, PCI_ECAM_BASE);
	m.ram_above_4g = total - m.ram_below_4g;
	m.n_cpus = cfg->vcpus;
	m.max_cpus = cfg->maxcpus;
	m.name = cfg->name;
	firmware_uuid(cfg->name, m.uuid);
	m.sercon_port = 0x3f8;
	m.reserved_memory_end = vm_config_device_memory_end(cfg);
	if (cfg->acpi) {
		pci = malloc(sizeof(*pci));
		if (!pci) {
			r = error_set(errp, ENOMEM, "firmware: out of memory");
			goto err;
		}
		pci_acpi_info(pci);
		acpi.n_cpus = cfg->vcpus;
		acpi.max_cpus = cfg->maxcpus;
		acpi.pvpanic = cfg->pvpanic;
		acpi.pci = pci;
		if (acpi_srat_from_config(cfg, &srat)) {
			acpi.srat = &srat;
		}
		m.acpi = &acpi;
	}
	r = firmware_boot_paths(f, &m, f->roms, errp);
	if (r == 0) {
		f->n_roms = m.n_boot_paths;
		r = firmware_fw_cfg_populate(f->fw, &m, errp);
	}
	free(pci);
	if (r == 0) {
		r = firmware_add_roms(f, errp);
	}
	if (r == 0) {
		r = fw_cfg_register(f->fw, vm_iobus(vm), errp);
		f->fw_registered = r == 0;
	}
	if (r < 0) {
		goto err;
	}
	*ret_state = f;
	return 0;
err:
	firmware_unrealize(f);
	return r;
}

static void firmware_reset(void *state)
{
	struct firmware *f = state;

	if (!f) {
		return;
	}
	/* The guest may have rewritten the shadow: a reset starts from the image again. */
	firmware_fill_shadow(f, NULL);
	fw_cfg_reset(f->fw);
}

static bool firmware_wanted(const struct vm_config *cfg, const void *item)
{
	return cfg->boot.firmware != NULL;
}

/* The ROM comes from the file again; the shadow is guest RAM; fw_cfg is the state. */
static int firmware_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct firmware *f = state;

	fw_cfg_save(f->fw, out);
	return 0;
}

static int firmware_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct firmware *f = state;
	int r = fw_cfg_load(f->fw, in, errp);

	return r < 0 ? r : vmstate_check_end(in, "fw_cfg", errp);
}

const struct device_class firmware_class = {
	.name = "firmware",
	.each = DEVICE_ONCE,
	.wanted = firmware_wanted,
	.realize = firmware_realize,
	.unrealize = firmware_unrealize,
	.reset = firmware_reset,
	.state_version = 1,
	.save = firmware_save,
	.load = firmware_load,
};
