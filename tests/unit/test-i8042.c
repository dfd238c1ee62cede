/*
 * Unit tests of the i8042 keyboard controller over the fake machine: the
 * reset paths (pulse command 0xFE, output port), the command byte, probe
 * replies, and IRQ 1 edges per byte.
 */
#include "config.h"

#include <check.h>

#include "hw/device.h"
#include "hw/devices.h"
#include "hw/platform/platform.h"
#include "tests/unit/fake-machine.h"

static struct iobus *bus;
static void *kbd;
static struct vm *vm;

static void setup(void)
{
	vm = fake_vm_new(NULL, 0, NULL);
	bus = vm_iobus(vm);
	fake_irq_clear();
	ck_assert_int_eq(i8042_class.realize(vm, NULL, &kbd, NULL), 0);
}

static void teardown(void)
{
	i8042_class.unrealize(kbd);
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
}

static uint8_t in(unsigned port)
{
	uint64_t v;

	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, port, 1, &v), 0);
	return (uint8_t)v;
}

static void out(unsigned port, uint8_t v)
{
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, port, 1, v), 0);
}

START_TEST(test_reset_pulse)
{
	ck_assert_uint_eq(in(0x64) & 0x02, 0); /* input buffer never full */
	out(0x64, 0xFE);
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_RESET), 1);
	out(0x64, 0xFF); /* pulse nothing */
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_RESET), 1);
	out(0x64, 0xD1); /* output port with the reset line low */
	out(0x60, 0x02);
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_RESET), 2);
	out(0x64, 0xD1);
	out(0x60, 0x03);
	ck_assert_int_eq(fake_vm_requests(vm, VM_CAUSE_GUEST_RESET), 2);
	ck_assert_int_eq(fake_vm_other_requests(vm, VM_CAUSE_GUEST_RESET), 0);
}
END_TEST

START_TEST(test_command_byte)
{
	out(0x64, 0x20);
	ck_assert_uint_eq(in(0x64) & 0x01, 0x01);
	ck_assert_uint_eq(in(0x60), 0x45);
	ck_assert_uint_eq(in(0x64) & 0x01, 0x00);
	out(0x64, 0x60);
	out(0x60, 0x44); /* keyboard interrupt off */
	out(0x64, 0x20);
	ck_assert_uint_eq(in(0x60), 0x44);
	ck_assert_uint_eq(in(0x64) & 0x04, 0x04); /* system flag */
	out(0x64, 0xAA);
	ck_assert_uint_eq(in(0x60), 0x55);
	out(0x64, 0xAB);
	ck_assert_uint_eq(in(0x60), 0x00);
	/* no AUX port: the loop comes back as keyboard data, the test fails */
	out(0x64, 0xD3);
	out(0x60, 0x5A);
	ck_assert_uint_eq(in(0x64) & 0x21, 0x01);
	ck_assert_uint_eq(in(0x60), 0x5A);
	out(0x64, 0xA9);
	ck_assert_uint_eq(in(0x60), 0x01);
}
END_TEST

START_TEST(test_keyboard_replies_and_irq)
{
	ck_assert_int_eq(fake_irq_level(1), 0);
	out(0x60, 0xFF); /* reset: FA AA */
	ck_assert_int_eq(fake_irq_level(1), 1);
	ck_assert_uint_eq(in(0x60), 0xFA);
	ck_assert_int_eq(fake_irq_level(1), 1);
	ck_assert_uint_eq(fake_irq_raises(1), 2); /* a fresh edge for the second byte */
	ck_assert_uint_eq(in(0x60), 0xAA);
	ck_assert_int_eq(fake_irq_level(1), 0);
	out(0x60, 0xF2);
	ck_assert_uint_eq(in(0x60), 0xFA);
	ck_assert_uint_eq(in(0x60), 0xAB);
	ck_assert_uint_eq(in(0x60), 0x83);
	out(0x60, 0xF0);
	ck_assert_uint_eq(in(0x60), 0xFA);
	out(0x60, 0x00);
	ck_assert_uint_eq(in(0x60), 0xFA);
	ck_assert_uint_eq(in(0x60), 0x02);
	/* replies a guest never reads are bounded */
	for (int i = 0; i < 1000; i++) {
		out(0x60, 0xEE);
	}
	for (int i = 0; i < 16; i++) {
		ck_assert_uint_eq(in(0x60), 0xEE);
	}
	ck_assert_uint_eq(in(0x64) & 0x01, 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("i8042");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reset_pulse);
	tcase_add_test(tc, test_command_byte);
	tcase_add_test(tc, test_keyboard_replies_and_irq);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
