/*
 * Unit tests of the ACPI PM block over the fake machine: S5 via PM1a_CNT
 * (16-bit and byte writes), other sleep types ignored, the power button
 * and GPEs raising the level-triggered SCI, write-1-to-clear status, and
 * the PM timer's rate.
 */
#include "config.h"

#include <check.h>
#include <time.h>

#include "hw/platform/acpi.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "tests/unit/fake-machine.h"

static struct iobus *bus;
static void *pm;
static struct vm *vm;

static void setup(void)
{
	vm = fake_vm_new(NULL, 0, NULL);
	bus = vm_iobus(vm);
	fake_irq_clear();
	ck_assert_int_eq(acpi_pm_class.realize(vm, NULL, &pm, NULL), 0);
	ck_assert(fake_vm_has_power_button(vm));
}

static void teardown(void)
{
	acpi_pm_class.unrealize(pm);
	ck_assert(!fake_vm_has_power_button(vm));
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
}

static uint64_t in(unsigned port, unsigned size)
{
	uint64_t v;

	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, port, size, &v), 0);
	return v;
}

static void out(unsigned port, unsigned size, uint64_t v)
{
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, port, size, v), 0);
}

START_TEST(test_s5)
{
	ck_assert_uint_eq(in(ACPI_PM1_CNT_BLK, 2) & 1, 1); /* SCI_EN: always ACPI mode */
	/* ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN */
	out(ACPI_PM1_CNT_BLK, 2, 5u << 10);
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_SHUTDOWN), 0);
	out(ACPI_PM1_CNT_BLK, 2, (5u << 10) | (1u << 13));
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_SHUTDOWN), 1);
	ck_assert_uint_eq(in(ACPI_PM1_CNT_BLK, 2) & (1u << 13), 0); /* SLP_EN reads 0 */
	/* byte write of the high half does it too */
	out(ACPI_PM1_CNT_BLK + 1, 1, (5u << 2) | (1u << 5));
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_SHUTDOWN), 2);
	/* S3 (not announced) is ignored */
	out(ACPI_PM1_CNT_BLK, 2, (1u << 10) | (1u << 13));
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_SHUTDOWN), 2);
	ck_assert_int_eq(fake_vm_other_requests(vm, VM_CAUSE_GUEST_SHUTDOWN), 0);
}
END_TEST

START_TEST(test_power_button)
{
	ck_assert_int_eq(fake_vm_power_button(vm), 0);
	ck_assert_uint_eq(in(ACPI_PM1_EVT_BLK, 2) & 0x100, 0x100);
	ck_assert_int_eq(fake_irq_level(9), 0); /* not enabled yet */
	out(ACPI_PM1_EVT_BLK + 2, 2, 0x100);	/* PWRBTN_EN */
	ck_assert_int_eq(fake_irq_level(9), 1);
	out(ACPI_PM1_EVT_BLK, 2, 0x100); /* write 1 to clear */
	ck_assert_int_eq(fake_irq_level(9), 0);
	ck_assert_uint_eq(in(ACPI_PM1_EVT_BLK, 2) & 0x100, 0);
	acpi_pm_press_power_button(pm);
	ck_assert_int_eq(fake_irq_level(9), 1);
	acpi_pm_class.reset(pm);
	ck_assert_int_eq(fake_irq_level(9), 0);
}
END_TEST

START_TEST(test_gpe)
{
	acpi_pm_raise_gpe(pm, 3);
	acpi_pm_raise_gpe(pm, 99); /* out of range: ignored */
	ck_assert_uint_eq(in(ACPI_GPE0_BLK, 2), 0x08);
	ck_assert_int_eq(fake_irq_level(9), 0);
	out(ACPI_GPE0_BLK + 2, 1, 0x08);
	ck_assert_int_eq(fake_irq_level(9), 1);
	out(ACPI_GPE0_BLK, 1, 0x08);
	ck_assert_int_eq(fake_irq_level(9), 0);
	ck_assert_uint_eq(in(ACPI_GPE0_BLK, 2), 0);
}
END_TEST

/* A 32-bit read of PM_TMR is one reading: never torn between its bytes, never backwards. */
START_TEST(test_pm_timer_reads_whole)
{
	uint32_t prev = (uint32_t)in(ACPI_PM_TMR_BLK, 4), v;
	unsigned backwards = 0;

	for (unsigned i = 0; i < 200000; i++) {
		v = (uint32_t)in(ACPI_PM_TMR_BLK, 4);
		/* 24 bits: a step of more than half the range is a step back */
		if (((v - prev) & 0xFFFFFF) >= 0x800000) {
			backwards++;
		}
		prev = v;
	}
	ck_assert_uint_eq(backwards, 0);
}
END_TEST

START_TEST(test_pm_timer)
{
	struct timespec ts = {0, 100000000}, t0, t1;
	uint32_t a, b, d;
	double elapsed;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	a = (uint32_t)in(ACPI_PM_TMR_BLK, 4);
	nanosleep(&ts, NULL);
	b = (uint32_t)in(ACPI_PM_TMR_BLK, 4);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_uint_eq(a >> 24, 0);
	d = (b - a) & 0xFFFFFF;
	elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* At 3.579545 MHz: at least the 100 ms slept, at most the time that really passed. */
	ck_assert_uint_ge(d, 357954);
	if (elapsed < 4.0) { /* the 24-bit counter wraps after 4.7 s */
		ck_assert_uint_le(d, (uint32_t)(elapsed * 3579545.0) + 1);
	}
	out(ACPI_PM_TMR_BLK, 4, 0); /* read-only: it keeps counting from b */
	d = ((uint32_t)in(ACPI_PM_TMR_BLK, 4) - b) & 0xFFFFFF;
	ck_assert_uint_lt(d, 0x800000);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("acpi-pm");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_s5);
	tcase_add_test(tc, test_power_button);
	tcase_add_test(tc, test_gpe);
	tcase_add_test(tc, test_pm_timer);
	tcase_add_test(tc, test_pm_timer_reads_whole);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
