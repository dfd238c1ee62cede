/*
 * Unit tests of the MP table builder: floating pointer, checksums, entry
 * counts and the ISA interrupt wiring (IRQ0 on pin 2), limits.
 */
#include "config.h"

#include <check.h>
#include <string.h>

#include "hw/platform/acpi.h"
#include "hw/core/memory.h"
#include "hw/platform/mptable.h"

#define BASE 0xF0000ULL

static uint8_t buf[MPTABLE_SIZE];

static uint64_t rd(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++) {
		v |= (uint64_t)p[i] << (8 * i);
	}
	return v;
}

static int sum_ok(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	for (size_t i = 0; i < len; i++) {
		s = (uint8_t)(s + p[i]);
	}
	return s == 0;
}

struct counts {
	unsigned cpus, bsp, buses, ioapics, ioints, lints;
	int pin_of_isa_irq[16];
	unsigned pci_routes;
};

static void parse(struct counts *c)
{
	const uint8_t *ct, *e, *end;
	unsigned entries;

	memset(c, 0, sizeof(*c));
	for (int i = 0; i < 16; i++) {
		c->pin_of_isa_irq[i] = -1;
	}
	ck_assert(memcmp(buf, "_MP_", 4) == 0);
	ck_assert(sum_ok(buf, 16));
	ck_assert_uint_eq(buf[8], 1);
	ck_assert_uint_eq(buf[9], 4);
	ck_assert_uint_eq(rd(buf + 4, 4), BASE + 16);
	ct = buf + 16;
	ck_assert(memcmp(ct, "PCMP", 4) == 0);
	ck_assert(sum_ok(ct, rd(ct + 4, 2)));
	ck_assert_uint_eq(rd(ct + 36, 4), ACPI_LAPIC_ADDR);
	entries = (unsigned)rd(ct + 34, 2);
	end = ct + rd(ct + 4, 2);
	e = ct + 44;
	for (unsigned i = 0; i < entries; i++) {
		ck_assert(e < end);
		switch (e[0]) {
		case 0:
			ck_assert_uint_eq(e[1], c->cpus);
			c->cpus++;
			c->bsp += (e[3] & 2) != 0;
			e += 20;
			break;
		case 1:
			c->buses++;
			e += 8;
			break;
		case 2:
			ck_assert_uint_eq(rd(e + 4, 4), ACPI_IOAPIC_ADDR);
			c->ioapics++;
			e += 8;
			break;
		case 3:
			if (e[1] == 0 && e[4] == MPTABLE_BUS_ISA) {
				ck_assert_int_eq(c->pin_of_isa_irq[e[5]], -1);
				c->pin_of_isa_irq[e[5]] = e[7];
			}
			if (e[4] == MPTABLE_BUS_PCI) {
				c->pci_routes++;
			}
			c->ioints++;
			e += 8;
			break;
		case 4:
			c->lints++;
			e += 8;
			break;
		default:
			ck_abort_msg("bad entry type %u", e[0]);
		}
	}
	ck_assert(e == end);
}

START_TEST(test_cpus)
{
	static const unsigned n[] = {1, 2, 3, 64};

	for (unsigned i = 0; i < 4; i++) {
		struct mptable_config cfg = {.n_cpus = n[i]};
		struct counts c;

		ck_assert_int_gt(mptable_build_tables(buf, sizeof(buf), BASE, &cfg, NULL), 0);
		parse(&c);
		ck_assert_uint_eq(c.cpus, n[i]);
		ck_assert_uint_eq(c.bsp, 1);
		ck_assert_uint_eq(c.buses, 2);
		ck_assert_uint_eq(c.ioapics, 1);
		ck_assert_uint_eq(c.lints, 2);
		ck_assert_int_eq(c.pin_of_isa_irq[0], 2);
		ck_assert_int_eq(c.pin_of_isa_irq[2], -1);
		for (int irq = 3; irq < 16; irq++) {
			ck_assert_int_eq(c.pin_of_isa_irq[irq], irq);
		}
		ck_assert_int_eq(c.pin_of_isa_irq[1], 1);
	}
}
END_TEST

START_TEST(test_pci_routes)
{
	static struct acpi_pci_info pci = {
		.prt = {{1, 0, 16}, {2, 3, 19}},
		.n_prt = 2,
	};
	struct mptable_config cfg = {.n_cpus = 2, .pci = &pci};
	struct counts c;

	ck_assert_int_gt(mptable_build_tables(buf, sizeof(buf), BASE, &cfg, NULL), 0);
	parse(&c);
	ck_assert_uint_eq(c.pci_routes, 2);
	pci.prt[1].gsi = 24;
	ck_assert_int_eq(mptable_build_tables(buf, sizeof(buf), BASE, &cfg, NULL), -EINVAL);
}
END_TEST

START_TEST(test_limits)
{
	struct mptable_config cfg = {.n_cpus = 0};
	struct error *err = NULL;

	ck_assert_int_eq(mptable_build_tables(buf, sizeof(buf), BASE, &cfg, &err), -EINVAL);
	ck_assert_ptr_nonnull(err);
	error_free(err);
	err = NULL;
	cfg.n_cpus = 65;
	ck_assert_int_eq(mptable_build_tables(buf, sizeof(buf), BASE, &cfg, NULL), -EINVAL);
	cfg.n_cpus = 64;
	ck_assert_int_eq(mptable_build_tables(buf, 256, BASE, &cfg, &err), -ENOSPC);
	ck_assert_ptr_nonnull(err);
	error_free(err);
}
END_TEST

static uint8_t low_ram[0x100000];

void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (gpa > sizeof(low_ram) || len > sizeof(low_ram) - gpa) {
		return NULL;
	}
	return low_ram + gpa;
}

START_TEST(test_build_into_guest)
{
	struct mptable_config cfg = {.n_cpus = 2};
	int found = 0;

	ck_assert_int_eq(mptable_build(NULL, &cfg, NULL), 0);
	/* Linux scans the BIOS area 0xF0000-0xFFFFF for "_MP_" on 16-byte boundaries. */
	for (uint64_t a = 0xF0000; a < 0x100000; a += 16) {
		if (memcmp(low_ram + a, "_MP_", 4) == 0 && sum_ok(low_ram + a, 16)) {
			found = 1;
			break;
		}
	}
	ck_assert(found);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("mptable");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_cpus);
	tcase_add_test(tc, test_pci_routes);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_build_into_guest);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
