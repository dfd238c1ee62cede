/*
 * Unit tests for the pure parts of hw/platform/firmware.c: e820, SMBIOS, and the ACPI
 * table-loader conversion (run through an independent loader interpreter
 * that does what SeaBIOS does with "etc/table-loader").
 */
#include "config.h"

#include <check.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/platform/acpi.h"
#include "hw/platform/firmware.h"
#include "hw/platform/fw-cfg.h"
#include "hw/pci/ide.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "tests/unit/fake-machine.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--) {
		s += *p++;
	}
	return s;
}

START_TEST(e820_layout)
{
	struct firmware_machine m = {.ram_below_4g = 0xc0000000,
				     .ram_above_4g = 0x40000000,
				     .reserved_base = 0xfeffc000,
				     .reserved_len = 0x4000};
	uint8_t buf[100];
	size_t n = firmware_build_e820(&m, buf, sizeof(buf));

	ck_assert_uint_eq(n, 60);
	ck_assert_uint_eq(le64(buf), 0);
	ck_assert_uint_eq(le64(buf + 8), 0xc0000000);
	ck_assert_uint_eq(le32(buf + 16), 1);
	ck_assert_uint_eq(le64(buf + 20), 0xfeffc000);
	ck_assert_uint_eq(le32(buf + 36), 2);
	ck_assert_uint_eq(le64(buf + 40), 0x100000000ull);
	ck_assert_uint_eq(le64(buf + 48), 0x40000000);
	/* truncated, never overflowing the buffer */
	ck_assert_uint_eq(firmware_build_e820(&m, buf, 30), 20);
	m.ram_above_4g = 0;
	m.reserved_len = 0;
	ck_assert_uint_eq(firmware_build_e820(&m, buf, sizeof(buf)), 20);
}
END_TEST

START_TEST(smbios_structures)
{
	struct firmware_machine m = {.ram_below_4g = 512ull << 20,
				     .ram_above_4g = 1ull << 30,
				     .n_cpus = 3,
				     .name = "vm1",
				     .uuid = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
					      0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}};
	static uint8_t t[16384];
	uint8_t anchor[31];
	int64_t len = firmware_build_smbios(&m, t, sizeof(t), anchor);
	unsigned types[32], n = 0;
	size_t off = 0;
	uint16_t max = 0;

	ck_assert_int_gt(len, 0);
	while (off < (size_t)len) {
		size_t start = off;
		uint8_t type = t[off], flen = t[off + 1];

		ck_assert_uint_lt(n, 32);
		ck_assert_uint_eq(le32(t + off + 2) & 0xffff, n); /* handles 0, 1, 2... */
		types[n++] = type;
		if (type == 1) {
			/* UUID: first three fields byte-swapped */
			ck_assert_uint_eq(t[off + 8], 0x04);
			ck_assert_uint_eq(t[off + 11], 0x01);
			ck_assert_uint_eq(t[off + 16], 0x09);
		}
		if (type == 17) {
			ck_assert_uint_eq(t[off + 12] | t[off + 13] << 8, 1536);
		}
		if (type == 19 && n == 10) {
			ck_assert_uint_eq(le32(t + off + 4), 0x100000000ull >> 10);
			ck_assert_uint_eq(le32(t + off + 8), ((0x140000000ull) >> 10) - 1);
		}
		off += flen;
		/* strings end with a double NUL */
		while (!(t[off] == 0 && t[off + 1] == 0)) {
			off++;
			ck_assert_uint_lt(off, (size_t)len);
		}
		off += 2;
		if (off - start > max) {
			max = (uint16_t)(off - start);
		}
		if (type == 127) {
			break;
		}
	}
	ck_assert_uint_eq(off, (size_t)len);
	unsigned want[] = {0, 1, 3, 4, 4, 4, 16, 17, 19, 19, 32, 127};
	ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
	for (unsigned i = 0; i < n; i++) {
		ck_assert_uint_eq(types[i], want[i]);
	}
	ck_assert_int_eq(memcmp(anchor, "_SM_", 4), 0);
	ck_assert_int_eq(memcmp(anchor + 16, "_DMI_", 5), 0);
	ck_assert_uint_eq(sum8(anchor, 31), 0);
	ck_assert_uint_eq(sum8(anchor + 16, 15), 0);
	ck_assert_uint_eq(anchor[22] | anchor[23] << 8, len);
	ck_assert_uint_eq(anchor[28] | anchor[29] << 8, n);
	ck_assert_uint_eq(anchor[8] | anchor[9] << 8, max);
	/* too small a buffer */
	ck_assert_int_eq(firmware_build_smbios(&m, t, 100, anchor), -ENOSPC);
}
END_TEST

/* Run "etc/table-loader" like firmware does, placing files at the given addresses. */
struct blob {
	const char *name;
	uint8_t *data;
	size_t len;
	uint64_t addr;
	bool allocated;
};

static struct blob *find(struct blob *b, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(b[i].name, name) == 0) {
			return &b[i];
		}
	}
	ck_abort_msg("loader names unknown file %s", name);
	return NULL;
}

static void run_loader(const uint8_t *script, size_t len, struct blob *b, unsigned n)
{
	ck_assert_uint_eq(len % 128, 0);
	for (size_t at = 0; at < len; at += 128) {
		const uint8_t *c = script + at;
		uint32_t cmd = le32(c);

		if (cmd == 1) {
			struct blob *x = find(b, n, (const char *)c + 4);

			ck_assert_uint_eq(x->addr % le32(c + 60), 0);
			ck_assert_uint_eq(c[64], strcmp(x->name, "etc/acpi/rsdp") == 0 ? 2 : 1);
			x->allocated = true;
		} else if (cmd == 2) {
			struct blob *d = find(b, n, (const char *)c + 4);
			struct blob *s = find(b, n, (const char *)c + 60);
			uint32_t off = le32(c + 116);
			uint8_t size = c[120];
			uint64_t v = 0;

			ck_assert(d->allocated && s->allocated);
			ck_assert_uint_le(off + size, d->len);
			memcpy(&v, d->data + off, size);
			v = le64toh(v) + s->addr;
			v = htole64(v);
			memcpy(d->data + off, &v, size);
		} else if (cmd == 3) {
			struct blob *d = find(b, n, (const char *)c + 4);
			uint32_t off = le32(c + 60), start = le32(c + 64), l = le32(c + 68);

			ck_assert_uint_le(start + l, d->len);
			d->data[off] -= sum8(d->data + start, l);
		} else {
			ck_abort_msg("unknown loader command %u", cmd);
		}
	}
}

START_TEST(acpi_through_loader)
{
	struct acpi_config cfg = {
		.n_cpus = 2, .pci_hole_base = 0xc0000000, .pci_hole_len = 0x3ec00000};
	struct fw_cfg *fw = fw_cfg_new(NULL);
	const uint64_t X = 0x7fe0000, R = 0xf5a40;
	static uint8_t direct[0x10000];
	size_t tlen, rlen, llen;
	const uint8_t *tables, *rsdp, *loader;
	int64_t used;

	ck_assert_int_eq(firmware_acpi_to_fw_cfg(fw, &cfg, NULL), 0);
	tables = fw_cfg_file_data(fw, "etc/acpi/tables", &tlen);
	rsdp = fw_cfg_file_data(fw, "etc/acpi/rsdp", &rlen);
	loader = fw_cfg_file_data(fw, "etc/table-loader", &llen);
	ck_assert_ptr_nonnull(tables);
	ck_assert_uint_eq(rlen, 36);

	struct blob b[2] = {{"etc/acpi/tables", malloc(tlen), tlen, X, false},
			    {"etc/acpi/rsdp", malloc(36), 36, R, false}};
	memcpy(b[0].data, tables, tlen);
	memcpy(b[1].data, rsdp, 36);
	run_loader(loader, llen, b, 2);

	/* the result is byte for byte what the builder produces at that address */
	used = acpi_build_tables(direct, sizeof(direct), X, &cfg, NULL);
	ck_assert_int_eq(used, (int64_t)tlen);
	ck_assert_int_eq(memcmp(b[0].data + 36, direct + 36, tlen - 36), 0);
	ck_assert_int_eq(memcmp(b[1].data, direct, 36), 0);
	ck_assert_uint_eq(sum8(b[1].data, 20), 0);
	ck_assert_uint_eq(le64(b[1].data + 24) - X < tlen, 1);
	ck_assert_int_eq(memcmp(b[0].data + (le64(b[1].data + 24) - X), "XSDT", 4), 0);
	free(b[0].data);
	free(b[1].data);
	fw_cfg_free(fw);
}
END_TEST

START_TEST(populate)
{
	struct fw_cfg *fw = fw_cfg_new(NULL);
	struct acpi_config acpi = {
		.n_cpus = 1, .pci_hole_base = 0xc0000000, .pci_hole_len = 0x3ec00000};
	struct firmware_machine m = {
		.ram_below_4g = 256 << 20,
		.n_cpus = 1,
		.max_cpus = 4,
		.boot_paths = {"/pci@i0cf8/ide@1,1/drive@0/disk@0", "/pci@i0cf8/ethernet@3"},
		.n_boot_paths = 2,
		.acpi = &acpi,
		.sercon_port = 0x3f8};
	const char *names[] = {"etc/e820",
			       "bootorder",
			       "etc/smbios/smbios-tables",
			       "etc/smbios/smbios-anchor",
			       "etc/sercon-port",
			       "etc/acpi/tables",
			       "etc/acpi/rsdp",
			       "etc/table-loader"};
	size_t len;
	const char *order;

	ck_assert_int_eq(firmware_fw_cfg_populate(fw, &m, NULL), 0);
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ck_assert_msg(fw_cfg_file_data(fw, names[i], &len) != NULL, "%s missing", names[i]);
	}
	order = fw_cfg_file_data(fw, "bootorder", &len);
	ck_assert_str_eq(order, "/pci@i0cf8/ide@1,1/drive@0/disk@0\n/pci@i0cf8/ethernet@3\n");
	ck_assert_uint_eq(len, strlen(order) + 1);
	fw_cfg_free(fw);
}
END_TEST

START_TEST(load_image_checks)
{
	char path[] = "/tmp/test-firmware-XXXXXX";
	int fd = mkstemp(path);
	uint8_t *buf = NULL;
	size_t len = 0;
	struct error *err = NULL;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1000), 0);
	ck_assert_int_eq(firmware_load_image(path, &buf, &len, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, path));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(ftruncate(fd, 128 * 1024), 0);
	ck_assert_int_eq(pwrite(fd, "\xea", 1, 128 * 1024 - 16), 1);
	ck_assert_int_eq(firmware_load_image(path, &buf, &len, NULL), 0);
	ck_assert_uint_eq(len, 128 * 1024);
	ck_assert_uint_eq(buf[len - 16], 0xea);
	ck_assert_uint_eq(firmware_image_base(len), 0xfffe0000u);
	free(buf);
	close(fd);
	unlink(path);
	ck_assert_int_eq(firmware_load_image("/nonexistent/bios.bin", &buf, &len, NULL), -ENOENT);
}
END_TEST

START_TEST(option_roms_and_uuid)
{
	char path[] = "/tmp/test-firmware-rom-XXXXXX";
	int fd = mkstemp(path);
	uint8_t rom[2048] = {0x55, 0xaa, 4}, *buf = NULL, a[16], b[16], c[16];
	size_t len;

	ck_assert_int_eq(write(fd, rom, sizeof(rom)), (int)sizeof(rom));
	ck_assert_int_eq(firmware_read_rom(path, &buf, &len, NULL), 0);
	ck_assert_uint_eq(len, 2048);
	free(buf);
	/* no signature */
	ck_assert_int_eq(pwrite(fd, "\0", 1, 0), 1);
	ck_assert_int_eq(firmware_read_rom(path, &buf, &len, NULL), -EINVAL);
	/* not a multiple of 512 */
	ck_assert_int_eq(ftruncate(fd, 2000), 0);
	ck_assert_int_eq(firmware_read_rom(path, &buf, &len, NULL), -EINVAL);
	close(fd);
	unlink(path);
	if (access("/usr/lib/ipxe/qemu/pxe-e1000.rom", R_OK) == 0) {
		ck_assert_int_eq(
			firmware_read_rom("/usr/lib/ipxe/qemu/pxe-e1000.rom", &buf, &len, NULL), 0);
		free(buf);
	}
	/* name-based UUID: stable, distinct, RFC 4122 variant */
	firmware_uuid("vm1", a);
	firmware_uuid("vm1", b);
	firmware_uuid("vm2", c);
	ck_assert_int_eq(memcmp(a, b, 16), 0);
	ck_assert_int_ne(memcmp(a, c, 16), 0);
	ck_assert_uint_eq(a[8] & 0xc0, 0x80);
}
END_TEST

/* Read fw_cfg file @name through the ports, as firmware does; returns its size or -1. */
static int fwcfg_read_file(struct iobus *b, const char *name, uint8_t *buf, size_t max)
{
	uint64_t v;
	uint32_t count = 0;

	iobus_write(b, IOBUS_PIO, 0x510, 2, FW_CFG_FILE_DIR);
	for (int i = 0; i < 4; i++) {
		iobus_read(b, IOBUS_PIO, 0x511, 1, &v);
		count = count << 8 | (uint32_t)v;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint8_t e[64];

		for (int k = 0; k < 64; k++) {
			iobus_read(b, IOBUS_PIO, 0x511, 1, &v);
			e[k] = (uint8_t)v;
		}
		if (strcmp((char *)e + 8, name) == 0) {
			uint32_t size = (uint32_t)e[0] << 24 | e[1] << 16 | e[2] << 8 | e[3];

			iobus_write(b, IOBUS_PIO, 0x510, 2, (uint64_t)(e[4] << 8 | e[5]));
			for (uint32_t k = 0; k < size && k < max; k++) {
				iobus_read(b, IOBUS_PIO, 0x511, 1, &v);
				buf[k] = (uint8_t)v;
			}
			return (int)size;
		}
	}
	return -1;
}

/* The device class over a fake VM: shadow copy, fw_cfg contents, boot order, cleanup. */
START_TEST(device_class)
{
	char bios[] = "/tmp/test-firmware-bios-XXXXXX", hd[] = "/tmp/test-firmware-hd-XXXXXX";
	int fd = mkstemp(bios), hfd = mkstemp(hd);
	static uint8_t img[128 * 1024], buf[4096];
	struct vm_disk_config disks[] = {{.id = "hd0", .driver = "ide-hd", .file = hd}};
	char *order[] = {"hd0", NULL};
	struct vm_config cfg = {.name = "fwvm",
				.vcpus = 2,
				.memory = 2 << 20,
				.acpi = true,
				.disks = disks,
				.n_disks = 1};
	struct iobus *b;
	struct vm *vm;
	uint8_t *ram;
	void *pci = NULL, *ide_state = NULL, *state = NULL;
	unsigned base;
	int n;

	for (unsigned i = 0; i < sizeof(img); i++) {
		img[i] = (uint8_t)(i * 13 + 1);
	}
	ck_assert_int_eq(write(fd, img, sizeof(img)), (int)sizeof(img));
	ck_assert_int_eq(ftruncate(hfd, 1 << 20), 0);
	close(fd);
	close(hfd);
	cfg.boot.firmware = bios;
	cfg.boot.order = order;
	vm = fake_vm_new(&cfg, 2 << 20, NULL);
	b = vm_iobus(vm);
	ram = fake_vm_ram(vm, 0);
	ck_assert_int_eq(pci_host_class.realize(vm, NULL, &pci, NULL), 0);
	base = iobus_count(b);
	ck_assert_int_eq(ide_class.realize(vm, NULL, &ide_state, NULL), 0);
	ck_assert_int_eq(firmware_class.realize(vm, NULL, &state, NULL), 0);
	ck_assert_ptr_nonnull(state);
	/* the whole 128 KiB image is the shadow at 0xE0000 */
	ck_assert_int_eq(memcmp(ram + 0xe0000, img, sizeof(img)), 0);
	n = fwcfg_read_file(b, "bootorder", buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	{
		char want[64];

		snprintf(want, sizeof(want), "/pci@i0cf8/*@%x/drive@0/disk@0\n",
			 pci_host_find_slot(pci_host_of(vm), "ide"));
		ck_assert_str_eq((char *)buf, want);
	}
	n = fwcfg_read_file(b, "etc/e820", buf, sizeof(buf));
	ck_assert_int_eq(n, 20);
	ck_assert_uint_eq(le64(buf + 8), 2 << 20);
	ck_assert_int_gt(fwcfg_read_file(b, "etc/table-loader", buf, sizeof(buf)), 0);
	ck_assert_int_eq(fwcfg_read_file(b, "etc/sercon-port", buf, sizeof(buf)), 2);
	ck_assert_uint_eq(buf[0] | buf[1] << 8, 0x3f8);
	/* reset restores a scribbled shadow */
	memset(ram + 0xf0000, 0, 16);
	firmware_class.reset(state);
	ck_assert_int_eq(memcmp(ram + 0xe0000, img, sizeof(img)), 0);
	firmware_class.unrealize(state);
	ide_class.unrealize(ide_state);
	ck_assert_uint_eq(iobus_count(b), base);

	/* an unknown boot device and a bad image fail cleanly, naming them */
	struct error *err = NULL;
	order[0] = "nope";
	ck_assert_int_eq(firmware_class.realize(vm, NULL, &state, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err->msg, "nope"));
	error_free(err);
	err = NULL;
	cfg.boot.firmware = hd; /* 1 MiB of zeros is a valid size; a 1000-byte file is not */
	order[0] = NULL;
	ck_assert_int_eq(truncate(hd, 1000), 0);
	ck_assert_int_eq(firmware_class.realize(vm, NULL, &state, &err), -EINVAL);
	error_free(err);
	ck_assert_uint_eq(iobus_count(b), base);
	/* no firmware: nothing */
	cfg.boot.firmware = NULL;
	ck_assert_int_eq(firmware_class.realize(vm, NULL, &state, NULL), 0);
	ck_assert_ptr_null(state);
	pci_host_class.unrealize(pci);
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
	unlink(bios);
	unlink(hd);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("firmware");
	TCase *tc = tcase_create("builders");

	tcase_add_test(tc, e820_layout);
	tcase_add_test(tc, smbios_structures);
	tcase_add_test(tc, acpi_through_loader);
	tcase_add_test(tc, populate);
	tcase_add_test(tc, load_image_checks);
	tcase_add_test(tc, option_roms_and_uuid);
	tcase_add_test(tc, device_class);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
