/*
 * hw/pci/pci.c over the fake machine (tests/unit/fake-machine.c): the 440FX identity through
 * 0xCF8/0xCFC and ECAM, absent functions, BAR sizing and (re)mapping
 * following the BAR registers and the command bits, the slot allocator,
 * INTx sharing, MSI-X masking with pending bits, 0xCF9 reset, and the ACPI
 * description.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/platform/acpi.h"
#include "hw/device.h"
#include "hw/pci/pci.h"
#include "hw/platform/platform.h"
#include "tests/unit/fake-machine.h"

/* ---- the fake VM (tests/unit/fake-machine.c) ---- */

static struct vm *vm;

static uint64_t rd(enum iobus_space space, uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	iobus_read(vm_iobus(vm), space, addr, size, &v);
	return v;
}

/* Whether @addr is decoded by some range (a read reaches a handler). */
static bool decoded(enum iobus_space space, uint64_t addr)
{
	uint64_t v;

	return iobus_read(vm_iobus(vm), space, addr, 1, &v) == 0;
}

static void wr(enum iobus_space space, uint64_t addr, uint64_t val, unsigned size)
{
	iobus_write(vm_iobus(vm), space, addr, size, val);
}

/* ---- helpers ---- */

static struct pci_host *host;

static void setup(void)
{
	vm = fake_vm_new(NULL, 0, NULL);
	fake_vm_set_msi_routes(vm, true);
	fake_irq_clear();
	ck_assert_int_eq(pci_host_new(vm, vm_iobus(vm), &host, NULL), 0);
}

static void teardown(void)
{
	pci_host_free(host);
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
}

static uint32_t cfg_read_cf8(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned size)
{
	wr(IOBUS_PIO, 0xCF8, 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc), 4);
	return rd(IOBUS_PIO, 0xCFC + (reg & 3), size);
}

static void cfg_write_cf8(unsigned dev, unsigned reg, uint32_t val, unsigned size)
{
	wr(IOBUS_PIO, 0xCF8, 0x80000000u | dev << 11 | (reg & 0xfc), 4);
	wr(IOBUS_PIO, 0xCFC + (reg & 3), val, size);
}

static uint32_t ecam_read(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned size)
{
	return rd(IOBUS_MMIO, PCI_ECAM_BASE + (bus << 20 | dev << 15 | fn << 12 | reg), size);
}

static void ecam_write(unsigned dev, unsigned reg, uint32_t val, unsigned size)
{
	wr(IOBUS_MMIO, PCI_ECAM_BASE + (dev << 15 | reg), val, size);
}

static uint64_t bar_hits;
static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque;
	(void)size;
	bar_hits++;
	return 0xab00 + off;
}

static void bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	(void)opaque;
	(void)off;
	(void)val;
	(void)size;
	bar_hits++;
}

static const struct iobus_ops bar_ops = {.read = bar_read, .write = bar_write};

static void make_dev(struct pci_device *d, const char *name)
{
	pci_device_init(d, name, 0x1af4, 0x1042, 0x010000, 1, 0x1af4, 2);
	pci_device_set_bar(d, 0, PCI_BAR_MEM32, 0x4000, &bar_ops, d);
	pci_device_set_bar(d, 2, PCI_BAR_IO, 0x20, &bar_ops, d);
}

/* ---- tests ---- */

START_TEST(test_host_bridge_identity)
{
	ck_assert_uint_eq(cfg_read_cf8(0, 0, 0, 0, 4), 0x12378086);
	ck_assert_uint_eq(cfg_read_cf8(0, 0, 0, 2, 2), 0x1237);
	ck_assert_uint_eq(cfg_read_cf8(0, 0, 0, 0x0a, 2), 0x0600); /* host bridge class */
	ck_assert_uint_eq(ecam_read(0, 0, 0, 0, 4), 0x12378086);
	/* CONFIG_ADDRESS reads back */
	wr(IOBUS_PIO, 0xCF8, 0x80001234, 4);
	ck_assert_uint_eq(rd(IOBUS_PIO, 0xCF8, 4), 0x80001234);
	/* without the enable bit, data reads float */
	wr(IOBUS_PIO, 0xCF8, 0x00000000, 4);
	ck_assert_uint_eq(rd(IOBUS_PIO, 0xCFC, 4), 0xffffffff);
	/* PAM registers keep what firmware writes */
	cfg_write_cf8(0, 0x59, 0x30, 1);
	ck_assert_uint_eq(cfg_read_cf8(0, 0, 0, 0x59, 1), 0x30);
	/* vendor id is read-only */
	cfg_write_cf8(0, 0, 0xffffffff, 4);
	ck_assert_uint_eq(cfg_read_cf8(0, 0, 0, 0, 4), 0x12378086);
}
END_TEST

START_TEST(test_absent_functions)
{
	ck_assert_uint_eq(cfg_read_cf8(0, 5, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(cfg_read_cf8(0, 0, 1, 0, 4), 0xffffffff);
	ck_assert_uint_eq(cfg_read_cf8(1, 0, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(cfg_read_cf8(0, 5, 0, 0, 2), 0xffff);
	ck_assert_uint_eq(ecam_read(3, 0, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(ecam_read(0, 31, 7, 0x100, 4), 0xffffffff);
	/* present device, extended config space: no capabilities there */
	ck_assert_uint_eq(ecam_read(0, 0, 0, 0x100, 4), 0);
	/* a dword-crossing ECAM access is refused */
	ck_assert_uint_eq(ecam_read(0, 0, 0, 0x3, 2), 0xffff);
}
END_TEST

START_TEST(test_bar_sizing_and_mapping)
{
	struct pci_device d;
	uint32_t bar0;

	make_dev(&d, "d");
	ck_assert_int_eq(pci_register_device(host, &d, -1, NULL), 0);
	ck_assert_int_eq(d.slot, 1);
	bar0 = cfg_read_cf8(0, 1, 0, 0x10, 4);
	ck_assert_uint_eq(bar0 & 0xf, 0);
	ck_assert_uint_ge(bar0, PCI_MMIO32_BASE);
	ck_assert_uint_eq(bar0 % 0x4000, 0);
	/* pre-assigned but not decoded until the command register says so */
	ck_assert(!decoded(IOBUS_MMIO, bar0));
	/* sizing */
	cfg_write_cf8(1, 0x10, 0xffffffff, 4);
	ck_assert_uint_eq(cfg_read_cf8(0, 1, 0, 0x10, 4), 0xffffc000);
	cfg_write_cf8(1, 0x18, 0xffffffff, 4);
	ck_assert_uint_eq(cfg_read_cf8(0, 1, 0, 0x18, 4), 0xffffffe1);
	ck_assert_uint_eq(cfg_read_cf8(0, 1, 0, 0x14, 4), 0); /* unused BAR */
	cfg_write_cf8(1, 0x14, 0xffffffff, 4);
	ck_assert_uint_eq(cfg_read_cf8(0, 1, 0, 0x14, 4), 0);
	/* program and enable */
	cfg_write_cf8(1, 0x10, 0xE0000000, 4);
	cfg_write_cf8(1, 0x18, 0xD000, 4);
	ck_assert(!decoded(IOBUS_MMIO, 0xE0000000));
	cfg_write_cf8(1, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
	ck_assert(decoded(IOBUS_MMIO, 0xE0000000));
	ck_assert_uint_eq(rd(IOBUS_MMIO, 0xE0000010, 4), 0xab10);
	ck_assert_uint_eq(rd(IOBUS_PIO, 0xD004, 2), 0xab04); /* the bus masks to the access size */
	/* move it: the old address stops decoding (ECAM writes work too) */
	ecam_write(1, 0x10, 0xE0100000, 4);
	ck_assert(!decoded(IOBUS_MMIO, 0xE0000000));
	ck_assert_uint_eq(rd(IOBUS_MMIO, 0xE0100000, 4), 0xab00);
	/* a BAR pointed at RAM is not decoded */
	cfg_write_cf8(1, 0x10, 0x00100000, 4);
	ck_assert(!decoded(IOBUS_MMIO, 0x00100000));
	cfg_write_cf8(1, 0x10, 0xE0000000, 4);
	/* memory decoding off */
	cfg_write_cf8(1, PCI_COMMAND, PCI_COMMAND_IO, 2);
	ck_assert(!decoded(IOBUS_MMIO, 0xE0000000));
	ck_assert(decoded(IOBUS_PIO, 0xD000));
	pci_unregister_device(&d);
	ck_assert(!decoded(IOBUS_PIO, 0xD000));
	ck_assert_uint_eq(cfg_read_cf8(0, 1, 0, 0, 4), 0xffffffff);
}
END_TEST

START_TEST(test_slot_allocator)
{
	static struct pci_device d[PCI_SLOTS];
	struct pci_device extra;
	struct error *err = NULL;
	int i;

	for (i = 1; i < PCI_SLOTS; i++) {
		pci_device_init(&d[i], "d", 0x1af4, 0x1000 + i, 0, 0, 0, 0);
		ck_assert_int_eq(pci_register_device(host, &d[i], -1, NULL), 0);
		ck_assert_int_eq(d[i].slot, i);
	}
	pci_device_init(&extra, "extra", 0x1af4, 0x1000, 0, 0, 0, 0);
	ck_assert_int_eq(pci_register_device(host, &extra, -1, &err), -ENOSPC);
	error_free(err);
	err = NULL;
	pci_unregister_device(&d[7]);
	ck_assert_int_eq(pci_register_device(host, &extra, 5, &err), -EBUSY);
	error_free(err);
	err = NULL;
	ck_assert_int_eq(pci_register_device(host, &extra, 32, &err), -EBUSY);
	error_free(err);
	/* hotplug reuses the freed slot */
	ck_assert_int_eq(pci_register_device(host, &extra, -1, NULL), 0);
	ck_assert_int_eq(extra.slot, 7);
	ck_assert_uint_eq(cfg_read_cf8(0, 7, 0, 0, 4), 0x10001af4);
}
END_TEST

/* Removed devices give their BAR space back: add/remove cycles never exhaust a window. */
START_TEST(test_bar_space_reused)
{
	static struct pci_device d, e, f;
	struct error *err = NULL;
	uint32_t io0, mem0, mem1;

	for (unsigned i = 0; i < 2000; i++) {
		pci_device_init(&d, "e1000", 0x8086, 0x100e, 0x020000, 0, 0, 0);
		pci_device_set_bar(&d, 0, PCI_BAR_MEM32, 0x20000, &bar_ops, NULL);
		pci_device_set_bar(&d, 1, PCI_BAR_IO, 0x40, &bar_ops, NULL);
		ck_assert_msg(pci_register_device(host, &d, -1, &err) == 0, "cycle %u: %s", i,
			      err ? err->msg : "?");
		if (i == 0) {
			mem0 = cfg_read_cf8(0, d.slot, 0, PCI_BAR0, 4);
			io0 = cfg_read_cf8(0, d.slot, 0, PCI_BAR0 + 4, 4);
		} else {
			/* the same device gets the same addresses again */
			ck_assert_uint_eq(cfg_read_cf8(0, d.slot, 0, PCI_BAR0, 4), mem0);
			ck_assert_uint_eq(cfg_read_cf8(0, d.slot, 0, PCI_BAR0 + 4, 4), io0);
		}
		pci_unregister_device(&d);
	}
	/* a freed hole in the middle is used by a smaller BAR that fits, in order */
	pci_device_init(&d, "a", 0x1af4, 1, 0, 0, 0, 0);
	pci_device_set_bar(&d, 0, PCI_BAR_MEM32, 0x4000, &bar_ops, NULL);
	pci_device_init(&e, "b", 0x1af4, 2, 0, 0, 0, 0);
	pci_device_set_bar(&e, 0, PCI_BAR_MEM32, 0x4000, &bar_ops, NULL);
	ck_assert_int_eq(pci_register_device(host, &d, -1, NULL), 0);
	ck_assert_int_eq(pci_register_device(host, &e, -1, NULL), 0);
	mem0 = cfg_read_cf8(0, d.slot, 0, PCI_BAR0, 4);
	mem1 = cfg_read_cf8(0, e.slot, 0, PCI_BAR0, 4);
	ck_assert_uint_eq(mem1, mem0 + 0x4000);
	pci_unregister_device(&d);
	pci_device_init(&f, "c", 0x1af4, 3, 0, 0, 0, 0);
	pci_device_set_bar(&f, 0, PCI_BAR_MEM32, 0x1000, &bar_ops, NULL);
	ck_assert_int_eq(pci_register_device(host, &f, -1, NULL), 0);
	ck_assert_uint_eq(cfg_read_cf8(0, f.slot, 0, PCI_BAR0, 4), mem0);
	pci_unregister_device(&f);
	pci_unregister_device(&e);
}
END_TEST

START_TEST(test_intx_sharing)
{
	struct pci_device a, b;
	unsigned gsi;

	make_dev(&a, "a");
	make_dev(&b, "b");
	ck_assert_int_eq(pci_register_device(host, &a, 1, NULL), 0);
	ck_assert_int_eq(pci_register_device(host, &b, 5, NULL), 0); /* same line as slot 1 */
	gsi = pci_intx_gsi(1, 0);
	ck_assert_uint_eq(gsi, pci_intx_gsi(5, 0));
	ck_assert_uint_eq(cfg_read_cf8(0, 1, 0, PCI_INTERRUPT_LINE, 1), gsi);
	ck_assert_uint_eq(cfg_read_cf8(0, 1, 0, PCI_INTERRUPT_PIN, 1), 1);
	pci_set_irq(&a, true);
	ck_assert_int_eq(fake_irq_level(gsi), 1);
	ck_assert(cfg_read_cf8(0, 1, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	pci_set_irq(&b, true);
	pci_set_irq(&a, false);
	ck_assert_int_eq(fake_irq_level(gsi), 1);
	pci_set_irq(&b, false);
	ck_assert_int_eq(fake_irq_level(gsi), 0);
	/* INTx disable masks the line but keeps the status bit */
	cfg_write_cf8(1, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
	pci_set_irq(&a, true);
	ck_assert_int_eq(fake_irq_level(gsi), 0);
	ck_assert(cfg_read_cf8(0, 1, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_write_cf8(1, PCI_COMMAND, 0, 2);
	ck_assert_int_eq(fake_irq_level(gsi), 1);
	pci_unregister_device(&a);
	ck_assert_int_eq(fake_irq_level(gsi), 0);
	pci_unregister_device(&b);
}
END_TEST

static int eventfd_count(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v)) {
		return 0;
	}
	return (int)v;
}

START_TEST(test_msix)
{
	struct pci_device d;
	unsigned cap, ctl_off;
	uint32_t bar1, tbl;

	make_dev(&d, "m");
	ck_assert_int_eq(pci_msix_init(&d, 1, 3, NULL), 0);
	ck_assert_int_eq(pci_register_device(host, &d, 2, NULL), 0);
	/* walk the capability list to the MSI-X capability */
	ck_assert(cfg_read_cf8(0, 2, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	cap = cfg_read_cf8(0, 2, 0, PCI_CAPABILITY_LIST, 1);
	while (cap && cfg_read_cf8(0, 2, 0, cap, 1) != PCI_CAP_ID_MSIX) {
		cap = cfg_read_cf8(0, 2, 0, cap + 1, 1);
	}
	ck_assert_uint_ne(cap, 0);
	ctl_off = cap + 2;
	ck_assert_uint_eq(cfg_read_cf8(0, 2, 0, ctl_off, 2) & 0x7ff, 2); /* 3 vectors */
	tbl = cfg_read_cf8(0, 2, 0, cap + 4, 4);
	ck_assert_uint_eq(tbl & 7, 1); /* BIR */
	bar1 = cfg_read_cf8(0, 2, 0, 0x14, 4) & ~0xfu;
	cfg_write_cf8(2, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	/* program vector 1, still masked */
	wr(IOBUS_MMIO, bar1 + 16, 0xFEE00000, 4);
	wr(IOBUS_MMIO, bar1 + 16 + 8, 0x41, 4);
	ck_assert_uint_eq(rd(IOBUS_MMIO, bar1 + 16 + 12, 4), 1);
	ck_assert_uint_eq(rd(IOBUS_MMIO, bar1 + 16, 4), 0xFEE00000);
	/* disabled: notifications are dropped */
	pci_msix_notify(&d, 1);
	ck_assert_uint_eq(rd(IOBUS_MMIO, bar1 + 0x1000, 4), 0);
	cfg_write_cf8(2, ctl_off, PCI_MSIX_FLAGS_ENABLE, 2);
	ck_assert(pci_msix_enabled(&d));
	ck_assert_int_eq(fake_vm_msi_routes_added(vm), 3);
	/* masked: pending bit */
	pci_msix_notify(&d, 1);
	ck_assert_uint_eq(rd(IOBUS_MMIO, bar1 + 0x1000, 4), 2);
	ck_assert_int_eq(eventfd_count(d.msix->vec[1].fd), 0);
	/* unmask delivers it and clears pending */
	wr(IOBUS_MMIO, bar1 + 16 + 12, 0, 4);
	ck_assert_int_eq(eventfd_count(d.msix->vec[1].fd), 1);
	ck_assert_uint_eq(rd(IOBUS_MMIO, bar1 + 0x1000, 4), 0);
	pci_msix_notify(&d, 1);
	ck_assert_int_eq(eventfd_count(d.msix->vec[1].fd), 1);
	/* function mask */
	cfg_write_cf8(2, ctl_off, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 2);
	pci_msix_notify(&d, 1);
	ck_assert_int_eq(eventfd_count(d.msix->vec[1].fd), 0);
	cfg_write_cf8(2, ctl_off, PCI_MSIX_FLAGS_ENABLE, 2);
	ck_assert_int_eq(eventfd_count(d.msix->vec[1].fd), 1);
	/* out-of-range vectors and table offsets are ignored */
	pci_msix_notify(&d, 3);
	pci_msix_notify(&d, 100000);
	wr(IOBUS_MMIO, bar1 + 16 * 3, 0x1234, 4);
	ck_assert_uint_eq(rd(IOBUS_MMIO, bar1 + 16 * 3, 4), 0);
	/* disable releases the routes */
	cfg_write_cf8(2, ctl_off, 0, 2);
	ck_assert_int_eq(fake_vm_msi_routes_released(vm), 3);
	pci_unregister_device(&d);
}
END_TEST

START_TEST(test_reset_control)
{
	wr(IOBUS_PIO, 0xCF9, 0x02, 1);
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_RESET), 0);
	wr(IOBUS_PIO, 0xCF9, 0x06, 1);
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_RESET), 1);
	/* a dword write to 0xCF8 is CONFIG_ADDRESS, not a reset */
	wr(IOBUS_PIO, 0xCF8, 0x80000600, 4);
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_RESET), 1);
}
END_TEST

START_TEST(test_acpi_info)
{
	struct acpi_pci_info info;
	unsigned i;

	pci_acpi_info(&info);
	ck_assert_uint_eq(info.ecam_base, PCI_ECAM_BASE);
	ck_assert_uint_eq(info.n_prt, 128);
	for (i = 0; i < info.n_prt; i++) {
		ck_assert_uint_eq(info.prt[i].gsi, pci_intx_gsi(info.prt[i].slot, info.prt[i].pin));
		ck_assert_uint_ge(info.prt[i].gsi, 16);
		ck_assert_uint_le(info.prt[i].gsi, 19);
	}
	ck_assert_uint_eq(info.mmio32_base + info.mmio32_len, 0xFEC00000);
	ck_assert_uint_le(PCI_ECAM_BASE + PCI_ECAM_SIZE, info.mmio32_base);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("pci");
	TCase *tc = tcase_create("host");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_host_bridge_identity);
	tcase_add_test(tc, test_absent_functions);
	tcase_add_test(tc, test_bar_sizing_and_mapping);
	tcase_add_test(tc, test_slot_allocator);
	tcase_add_test(tc, test_bar_space_reused);
	tcase_add_test(tc, test_intx_sharing);
	tcase_add_test(tc, test_msix);
	tcase_add_test(tc, test_reset_control);
	tcase_add_test(tc, test_acpi_info);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
