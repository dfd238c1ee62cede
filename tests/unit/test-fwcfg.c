/* Unit tests for hw/platform/fw-cfg.c over a fake I/O bus and guest RAM. */
#include "config.h"

#include <check.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "hw/platform/fw-cfg.h"
#include "tests/unit/fake-machine.h"

static struct vm *vm;
static struct guest_mem *mem;
static uint8_t *ram;
static struct iobus *bus;
static struct fw_cfg *fw;

static void setup(void)
{
	vm = fake_vm_new(NULL, 1 << 20, NULL);
	mem = vm_guest_mem(vm);
	ram = fake_vm_ram(vm, 0);
	bus = vm_iobus(vm);
	fw = fw_cfg_new(mem);
	ck_assert_ptr_nonnull(fw);
	ck_assert_int_eq(fw_cfg_register(fw, bus, NULL), 0);
}

static void teardown(void)
{
	fw_cfg_unregister(fw, bus);
	fw_cfg_free(fw);
	fake_vm_free(vm);
}

static void sel(uint16_t key)
{
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x510, 2, key), 0);
}

static uint8_t rd8(void)
{
	uint64_t v;

	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0x511, 1, &v), 0);
	return (uint8_t)v;
}

static void rdbuf(void *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		((uint8_t *)buf)[i] = rd8();
	}
}

/* Write an FWCfgDmaAccess at @at and kick it as SeaBIOS does (high then low half). */
static uint32_t dma(uint64_t at, uint32_t control, uint32_t len, uint64_t addr)
{
	uint32_t d[4];
	uint64_t a = htobe64(addr);

	d[0] = htobe32(control);
	d[1] = htobe32(len);
	memcpy(&d[2], &a, 8);
	ck_assert_int_eq(guest_mem_write(mem, at, d, sizeof(d)), 0);
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x514, 4, htobe32((uint32_t)(at >> 32))), 0);
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x518, 4, htobe32((uint32_t)at)), 0);
	ck_assert_int_eq(guest_mem_read(mem, at, d, 4), 0);
	return be32toh(d[0]);
}

START_TEST(signature_and_id)
{
	char sig[5] = {0};
	uint32_t id;
	uint64_t v;

	sel(FW_CFG_SIGNATURE);
	rdbuf(sig, 4);
	ck_assert_str_eq(sig, "QEMU");
	/* past the end: zeros */
	ck_assert_uint_eq(rd8(), 0);
	sel(FW_CFG_ID);
	rdbuf(&id, 4);
	ck_assert_uint_eq(le32toh(id), 3);
	/* the DMA register reads "QEMU CFG" big-endian */
	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0x514, 4, &v), 0);
	ck_assert_uint_eq(v, htobe32(0x51454d55));
	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0x518, 4, &v), 0);
	ck_assert_uint_eq(v, htobe32(0x20434647));
	/* unknown keys read as zeros */
	sel(0x1234);
	ck_assert_uint_eq(rd8(), 0);
}
END_TEST

START_TEST(numbered_items)
{
	uint64_t ram_size;
	uint16_t cpus;

	ck_assert_int_eq(fw_cfg_add_i64(fw, FW_CFG_RAM_SIZE, 0x12345678abcdull), 0);
	ck_assert_int_eq(fw_cfg_add_i16(fw, FW_CFG_NB_CPUS, 4), 0);
	ck_assert_int_eq(fw_cfg_add_i16(fw, FW_CFG_NB_CPUS, 3), 0); /* replaces */
	sel(FW_CFG_RAM_SIZE);
	rdbuf(&ram_size, 8);
	ck_assert_uint_eq(le64toh(ram_size), 0x12345678abcdull);
	sel(FW_CFG_NB_CPUS);
	rdbuf(&cpus, 2);
	ck_assert_uint_eq(le16toh(cpus), 3);
	/* file range, the directory and the write channel are refused */
	ck_assert_int_eq(fw_cfg_add_i16(fw, FW_CFG_FILE_FIRST, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_i16(fw, FW_CFG_FILE_DIR, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_add_i16(fw, 0x4003, 1), -EINVAL);
	/* arch-local keys are fine */
	ck_assert_int_eq(fw_cfg_add_i32(fw, FW_CFG_IRQ0_OVERRIDE, 1), 0);
	sel(FW_CFG_IRQ0_OVERRIDE);
	ck_assert_uint_eq(rd8(), 1);
}
END_TEST

START_TEST(file_directory_sorted)
{
	uint32_t count;
	uint8_t e[64];
	const char *names[] = {"etc/e820", "bootorder", "opt/x"};

	for (unsigned i = 0; i < 3; i++) {
		ck_assert_int_eq(
			fw_cfg_add_file(fw, names[i], names[i], strlen(names[i]), false, NULL), 0);
	}
	sel(FW_CFG_FILE_DIR);
	rdbuf(&count, 4);
	ck_assert_uint_eq(be32toh(count), 3);
	rdbuf(e, 64);
	ck_assert_str_eq((char *)e + 8, "bootorder");
	ck_assert_uint_eq(be32toh(*(uint32_t *)e), 9);
	ck_assert_uint_eq(be16toh(*(uint16_t *)(e + 4)), FW_CFG_FILE_FIRST + 1);
	rdbuf(e, 64);
	ck_assert_str_eq((char *)e + 8, "etc/e820");
	ck_assert_uint_eq(be16toh(*(uint16_t *)(e + 4)), FW_CFG_FILE_FIRST);
	rdbuf(e, 64);
	ck_assert_str_eq((char *)e + 8, "opt/x");

	/* select the file by its key and read it through the data port */
	char buf[10] = {0};
	sel(FW_CFG_FILE_FIRST + 1);
	rdbuf(buf, 9);
	ck_assert_str_eq(buf, "bootorder");

	/* replacing keeps the key and updates the size */
	ck_assert_int_eq(fw_cfg_add_file(fw, "bootorder", "ab", 2, false, NULL), 0);
	sel(FW_CFG_FILE_DIR);
	rdbuf(&count, 4);
	ck_assert_uint_eq(be32toh(count), 3);
	rdbuf(e, 64);
	ck_assert_uint_eq(be32toh(*(uint32_t *)e), 2);
	ck_assert_uint_eq(be16toh(*(uint16_t *)(e + 4)), FW_CFG_FILE_FIRST + 1);
}
END_TEST

START_TEST(file_limits)
{
	char name[80];
	struct error *err = NULL;

	memset(name, 'a', 56);
	name[56] = 0;
	ck_assert_int_eq(fw_cfg_add_file(fw, name, "x", 1, false, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "must be 1..55"));
	error_free(err);
	err = NULL;
	name[55] = 0;
	ck_assert_int_eq(fw_cfg_add_file(fw, name, "x", 1, false, NULL), 0);
	ck_assert_int_eq(fw_cfg_add_file(fw, "", "x", 1, false, NULL), -EINVAL);
	for (unsigned i = 1; i < FW_CFG_MAX_FILES; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		ck_assert_int_eq(fw_cfg_add_file(fw, name, "x", 1, false, NULL), 0);
	}
	ck_assert_int_eq(fw_cfg_add_file(fw, "one-too-many", "x", 1, false, &err), -ENOSPC);
	error_free(err);
	ck_assert_int_eq(fw_cfg_add_file(fw, "big", "x", FW_CFG_MAX_ITEM_SIZE + 1, false, NULL),
			 -E2BIG);
}
END_TEST

START_TEST(dma_read_skip_and_zero_fill)
{
	uint8_t out[16];

	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/test", "0123456789", 10, false, NULL), 0);
	/* select + read 4 */
	ck_assert_uint_eq(dma(0x1000,
			      FW_CFG_DMA_SELECT | FW_CFG_DMA_READ | (FW_CFG_FILE_FIRST << 16), 4,
			      0x2000),
			  0);
	ck_assert_int_eq(memcmp(ram + 0x2000, "0123", 4), 0);
	/* skip 2, then read past the end: 4 data bytes and zero fill */
	ck_assert_uint_eq(dma(0x1000, FW_CFG_DMA_SKIP, 2, 0), 0);
	memset(ram + 0x3000, 0xff, 16);
	ck_assert_uint_eq(dma(0x1000, FW_CFG_DMA_READ, 8, 0x3000), 0);
	memcpy(out, ram + 0x3000, 8);
	ck_assert_int_eq(memcmp(out, "6789\0\0\0\0", 8), 0);
	ck_assert_uint_eq(ram[0x3008], 0xff);
	/* data port continues at the DMA's offset (past the end -> 0) */
	ck_assert_uint_eq(rd8(), 0);
}
END_TEST

START_TEST(dma_bad_addresses)
{
	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/test", "0123456789", 10, false, NULL), 0);
	/* destination outside RAM */
	ck_assert_uint_eq(dma(0x1000,
			      FW_CFG_DMA_SELECT | FW_CFG_DMA_READ | (FW_CFG_FILE_FIRST << 16), 4,
			      (1 << 20) - 2),
			  FW_CFG_DMA_ERROR);
	/* huge length bounded by RAM, not allocated */
	ck_assert_uint_eq(dma(0x1000,
			      FW_CFG_DMA_SELECT | FW_CFG_DMA_READ | (FW_CFG_FILE_FIRST << 16),
			      0xffffffff, 0x2000),
			  FW_CFG_DMA_ERROR);
	/* descriptor outside RAM: nothing happens, nothing crashes */
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x514, 4, htobe32(0x1)), 0);
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x518, 4, 0), 0);
	/* one 64-bit write also triggers */
	uint32_t d[4] = {htobe32(FW_CFG_DMA_SELECT | FW_CFG_DMA_READ | (FW_CFG_SIGNATURE << 16)),
			 htobe32(4), 0, htobe32(0x5000)};
	guest_mem_write(mem, 0x4000, d, sizeof(d));
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x514, 8, htobe64(0x4000)), 0);
	ck_assert_int_eq(memcmp(ram + 0x5000, "QEMU", 4), 0);
	ck_assert_uint_eq(ram[0x4000], 0);
}
END_TEST

START_TEST(dma_write)
{
	size_t len;
	const char *p;

	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/ro", "aaaa", 4, false, NULL), 0);
	ck_assert_int_eq(fw_cfg_add_file(fw, "etc/rw", "bbbb", 4, true, NULL), 0);
	memcpy(ram + 0x2000, "XYZW", 4);
	ck_assert_uint_eq(dma(0x1000,
			      FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE | (FW_CFG_FILE_FIRST << 16), 4,
			      0x2000),
			  FW_CFG_DMA_ERROR);
	p = fw_cfg_file_data(fw, "etc/ro", &len);
	ck_assert_int_eq(memcmp(p, "aaaa", 4), 0);
	ck_assert_uint_eq(
		dma(0x1000, FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE | ((FW_CFG_FILE_FIRST + 1) << 16),
		    2, 0x2000),
		0);
	p = fw_cfg_file_data(fw, "etc/rw", &len);
	ck_assert_uint_eq(len, 4);
	ck_assert_int_eq(memcmp(p, "XYbb", 4), 0);
	/* writing past the end fails */
	ck_assert_uint_eq(dma(0x1000, FW_CFG_DMA_WRITE, 4, 0x2000), FW_CFG_DMA_ERROR);
}
END_TEST

START_TEST(reset_deselects)
{
	sel(FW_CFG_SIGNATURE);
	ck_assert_uint_eq(rd8(), 'Q');
	fw_cfg_reset(fw);
	ck_assert_uint_eq(rd8(), 0);
}
END_TEST

START_TEST(loader_commands)
{
	struct fw_cfg_loader l = {0};

	ck_assert_int_eq(fw_cfg_loader_allocate(&l, "etc/acpi/rsdp", 16, FW_CFG_LOADER_ZONE_FSEG),
			 0);
	ck_assert_int_eq(fw_cfg_loader_add_pointer(&l, "etc/acpi/rsdp", "etc/acpi/tables", 16, 4),
			 0);
	ck_assert_int_eq(fw_cfg_loader_add_checksum(&l, "etc/acpi/rsdp", 8, 0, 20), 0);
	ck_assert_int_eq(fw_cfg_loader_allocate(&l, "x", 3, 1), -EINVAL);
	ck_assert_int_eq(fw_cfg_loader_add_pointer(&l, "a", "b", 0, 3), -EINVAL);
	ck_assert_uint_eq(l.len, 3 * 128);
	ck_assert_uint_eq(le32toh(*(uint32_t *)l.buf), 1);
	ck_assert_str_eq((char *)l.buf + 4, "etc/acpi/rsdp");
	ck_assert_uint_eq(le32toh(*(uint32_t *)(l.buf + 60)), 16);
	ck_assert_uint_eq(l.buf[64], 2);
	ck_assert_uint_eq(le32toh(*(uint32_t *)(l.buf + 128)), 2);
	ck_assert_str_eq((char *)l.buf + 128 + 60, "etc/acpi/tables");
	ck_assert_uint_eq(le32toh(*(uint32_t *)(l.buf + 128 + 116)), 16);
	ck_assert_uint_eq(l.buf[128 + 120], 4);
	ck_assert_uint_eq(le32toh(*(uint32_t *)(l.buf + 256)), 3);
	ck_assert_uint_eq(le32toh(*(uint32_t *)(l.buf + 256 + 60)), 8);
	ck_assert_uint_eq(le32toh(*(uint32_t *)(l.buf + 256 + 68)), 20);
	fw_cfg_loader_free(&l);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("fw-cfg");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, signature_and_id);
	tcase_add_test(tc, numbered_items);
	tcase_add_test(tc, file_directory_sorted);
	tcase_add_test(tc, file_limits);
	tcase_add_test(tc, dma_read_skip_and_zero_fill);
	tcase_add_test(tc, dma_bad_addresses);
	tcase_add_test(tc, dma_write);
	tcase_add_test(tc, reset_deselects);
	tcase_add_test(tc, loader_commands);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
