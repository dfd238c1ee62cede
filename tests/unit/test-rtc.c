/*
 * Unit tests of the CMOS RTC over the fake machine: the host clock in BCD
 * and binary, 12- and 24-hour formats, setting the time (with and without
 * SET), update-in-progress, register C/D, and the CMOS memory-size bytes.
 */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "hw/device.h"
#include "hw/devices.h"
#include "hw/platform/platform.h"
#include "tests/unit/fake-machine.h"

static struct iobus *bus;
static struct event_base *base;
static struct vm_config cfg = {.name = "t", .vcpus = 2, .memory = 512ULL << 20};
static void *rtc;
static struct vm *vm;

static void setup(void)
{
	base = event_base_new();
	vm = fake_vm_new(&cfg, 0, base);
	bus = vm_iobus(vm);
	fake_irq_clear();
	ck_assert_int_eq(rtc_class.realize(vm, NULL, &rtc, NULL), 0);
}

static void teardown(void)
{
	rtc_class.unrealize(rtc);
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
	event_base_free(base);
}

static uint8_t cmos_read(uint8_t idx)
{
	uint64_t v;

	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x70, 1, idx), 0);
	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0x71, 1, &v), 0);
	return (uint8_t)v;
}

static void cmos_write(uint8_t idx, uint8_t v)
{
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x70, 1, idx), 0);
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x71, 1, v), 0);
}

static unsigned bcd(uint8_t v)
{
	ck_assert_uint_le(v & 0x0F, 9);
	return (v >> 4) * 10 + (v & 0x0F);
}

/* Seconds since midnight read from the RTC (BCD, 24 h) vs the host's UTC. */
static long rtc_day_seconds_bcd(void)
{
	return (long)bcd(cmos_read(4)) * 3600 + (long)bcd(cmos_read(2)) * 60 + bcd(cmos_read(0));
}

static long host_day_seconds(void)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	return tm.tm_hour * 3600L + tm.tm_min * 60L + tm.tm_sec;
}

static long diff_mod_day(long a, long b)
{
	long d = (a - b) % 86400;

	if (d < -43200) {
		d += 86400;
	} else if (d > 43200) {
		d -= 86400;
	}
	return d;
}

START_TEST(test_host_clock_bcd)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	ck_assert_uint_eq(cmos_read(0x0B) & 0x06, 0x02); /* BCD, 24 h */
	ck_assert_int_le(labs(diff_mod_day(rtc_day_seconds_bcd(), host_day_seconds())), 2);
	ck_assert_uint_eq(bcd(cmos_read(9)), (unsigned)tm.tm_year % 100);
	ck_assert_uint_eq(bcd(cmos_read(0x32)), (unsigned)(1900 + tm.tm_year) / 100);
	ck_assert_uint_eq(bcd(cmos_read(8)), (unsigned)tm.tm_mon + 1);
	ck_assert_uint_eq(cmos_read(0x0D), 0x80);
}
END_TEST

START_TEST(test_binary_and_12h)
{
	time_t t;
	struct tm tm;
	uint8_t h;

	cmos_write(0x0B, 0x04); /* binary, 12 h */
	t = time(NULL);
	gmtime_r(&t, &tm);
	ck_assert_uint_eq(cmos_read(9), (unsigned)tm.tm_year % 100);
	ck_assert_uint_eq(cmos_read(8), (unsigned)tm.tm_mon + 1);
	h = cmos_read(4);
	if (tm.tm_hour >= 12) {
		ck_assert_uint_eq(h & 0x80, 0x80);
	} else {
		ck_assert_uint_eq(h & 0x80, 0);
	}
	ck_assert_uint_ge(h & 0x7F, 1);
	ck_assert_uint_le(h & 0x7F, 12);
}
END_TEST

START_TEST(test_set_time)
{
	/* Freeze with SET, write 1999-12-31 23:59:58, release. */
	cmos_write(0x0B, 0x82);
	cmos_write(0x32, 0x19);
	cmos_write(9, 0x99);
	cmos_write(8, 0x12);
	cmos_write(7, 0x31);
	cmos_write(4, 0x23);
	cmos_write(2, 0x59);
	cmos_write(0, 0x58);
	ck_assert_uint_eq(cmos_read(0), 0x58); /* frozen while SET */
	ck_assert_uint_eq(cmos_read(0x0A) & 0x80, 0);
	cmos_write(0x0B, 0x02);
	{
		unsigned year = bcd(cmos_read(0x32)) * 100 + bcd(cmos_read(9));
		unsigned s = bcd(cmos_read(0));

		/* moments later: still 1999-12-31, or just into 2000-01-01 */
		if (year == 1999) {
			ck_assert_uint_eq(cmos_read(8), 0x12);
			ck_assert_uint_eq(cmos_read(4), 0x23);
			ck_assert_uint_ge(s, 58);
			ck_assert_uint_eq(cmos_read(6), 0x06); /* Friday */
		} else {
			/* a loaded host may have kept us away for a while */
			ck_assert_uint_eq(year, 2000);
			ck_assert_uint_eq(cmos_read(8), 0x01);
			ck_assert_uint_le(s, 30);
		}
	}
	/* A direct write of the hour (no SET) moves the clock too. */
	cmos_write(4, 0x05);
	ck_assert_uint_eq(cmos_read(4) == 0x05 || cmos_read(4) == 0x06, 1);
	/* The offset survives a reset; the format does not. */
	rtc_class.reset(rtc);
	ck_assert_uint_eq(cmos_read(9) == 0x99 || cmos_read(9) == 0x00, 1);
}
END_TEST

START_TEST(test_uip)
{
	/* UIP covers the last 244 us of each second, and never while SET freezes the clock. */
	ck_assert(!rtc_update_in_progress(0, 0x02));
	ck_assert(!rtc_update_in_progress(999755999L, 0x02));
	ck_assert(rtc_update_in_progress(999756000L, 0x02));
	ck_assert(rtc_update_in_progress(999999999L, 0x02));
	ck_assert(!rtc_update_in_progress(999999999L, 0x82));
	/* Register A reads back what was written, without a stored UIP. */
	ck_assert_uint_eq(cmos_read(0x0A) & 0x7F, 0x26);
	cmos_write(0x0A, 0xA6);
	ck_assert_uint_eq(cmos_read(0x0A) & 0x7F, 0x26);
}
END_TEST

START_TEST(test_reg_c)
{
	struct timespec ts = {1, 100000000};

	cmos_read(0x0C);
	ck_assert_uint_eq(cmos_read(0x0C) & 0x10, 0);
	nanosleep(&ts, NULL);
	cmos_write(0x0B, 0x12); /* UIE */
	ck_assert_uint_eq(cmos_read(0x0C) & 0x90, 0x90);
	ck_assert_uint_eq(cmos_read(0x0C), 0);
}
END_TEST

START_TEST(test_cmos_memory)
{
	unsigned sum = 0;

	ck_assert_uint_eq(cmos_read(0x15) | (cmos_read(0x16) << 8), 640);
	ck_assert_uint_eq(cmos_read(0x17) | (cmos_read(0x18) << 8), 0xFFFF); /* capped at 64 MiB */
	ck_assert_uint_eq(cmos_read(0x34) | (cmos_read(0x35) << 8), (512 - 16) * 16);
	ck_assert_uint_eq(cmos_read(0x5B) | (cmos_read(0x5C) << 8) | (cmos_read(0x5D) << 16), 0);
	ck_assert_uint_eq(cmos_read(0x5F), 1);
	for (unsigned i = 0x10; i <= 0x2D; i++) {
		sum += cmos_read((uint8_t)i);
	}
	ck_assert_uint_eq((cmos_read(0x2E) << 8) | cmos_read(0x2F), sum);
	/* scratch RAM, and the NMI-mask bit of the index is not part of it */
	cmos_write(0x80 | 0x40, 0xA5);
	ck_assert_uint_eq(cmos_read(0x40), 0xA5);

	/* 6 GiB: 3 GiB below the PCI hole, 3 GiB above 4 GiB; 64 vCPUs */
	rtc_class.unrealize(rtc);
	cfg.memory = 6ULL << 30;
	cfg.vcpus = 64;
	ck_assert_int_eq(rtc_class.realize(vm, NULL, &rtc, NULL), 0);
	ck_assert_uint_eq(cmos_read(0x34) | (cmos_read(0x35) << 8), (3072 - 16) * 16);
	ck_assert_uint_eq(cmos_read(0x17) | (cmos_read(0x18) << 8), 0xFFFF);
	ck_assert_uint_eq(cmos_read(0x5B) | (cmos_read(0x5C) << 8) | (cmos_read(0x5D) << 16),
			  (3ULL << 30) / 65536);
	ck_assert_uint_eq(cmos_read(0x5F), 63);
	cfg.memory = 512ULL << 20;
	cfg.vcpus = 2;
}
END_TEST

/* Run the I/O thread's loop here for @ms milliseconds. */
static void run_loop(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

START_TEST(test_update_interrupt)
{
	cmos_read(0x0C);
	run_loop(1200);
	ck_assert_uint_eq(fake_irq_raises(8), 0); /* nothing enabled: no timer, no IRQ */
	cmos_write(0x0B, 0x12);			  /* UIE */
	run_loop(1200);
	ck_assert_uint_ge(fake_irq_raises(8), 1);
	ck_assert_int_eq(fake_irq_level(8), 1); /* held until register C is read */
	ck_assert_uint_eq(cmos_read(0x0C) & 0x90, 0x90);
	ck_assert_int_eq(fake_irq_level(8), 0);
	cmos_write(0x0B, 0x02);
	cmos_read(0x0C);
	fake_irq_clear();
	run_loop(1200);
	ck_assert_uint_eq(fake_irq_raises(8), 0);
}
END_TEST

START_TEST(test_periodic_interrupt)
{
	cmos_write(0x0A, 0x2F); /* rate 15: 2 Hz */
	cmos_write(0x0B, 0x42); /* PIE */
	run_loop(1300);
	ck_assert_uint_ge(fake_irq_raises(8), 1);
	ck_assert_uint_eq(cmos_read(0x0C) & 0xC0, 0xC0);
	/* acknowledged, it comes again */
	fake_irq_clear();
	run_loop(1100);
	ck_assert_uint_ge(fake_irq_raises(8), 1);
	rtc_class.reset(rtc);
	ck_assert_int_eq(fake_irq_level(8), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("rtc");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_host_clock_bcd);
	tcase_add_test(tc, test_binary_and_12h);
	tcase_add_test(tc, test_set_time);
	tcase_add_test(tc, test_uip);
	tcase_add_test(tc, test_reg_c);
	tcase_add_test(tc, test_cmos_memory);
	tcase_add_test(tc, test_update_interrupt);
	tcase_add_test(tc, test_periodic_interrupt);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
