/* Unit tests for hw/core/iobus.c: range maps, unclaimed accesses, safe removal. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/core/iobus.h"

struct dev {
	uint64_t last_off;
	uint64_t last_val;
	unsigned last_size;
	unsigned reads, writes;
	atomic_int inside;
	atomic_bool freed;
	struct iobus *bus;
	bool unregister_self;
};

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
	struct dev *d = opaque;

	ck_assert(!atomic_load(&d->freed));
	d->reads++;
	d->last_off = off;
	d->last_size = size;
	return 0x1122334455667788ull + off;
}

static void dev_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct dev *d = opaque;

	ck_assert(!atomic_load(&d->freed));
	d->writes++;
	d->last_off = off;
	d->last_val = val;
	d->last_size = size;
	if (d->unregister_self) {
		/* A handler may remove its own range (a BAR move) without deadlock. */
		iobus_unregister(d->bus, IOBUS_MMIO, 0x1000);
	}
}

static const struct iobus_ops dev_ops = {.read = dev_read, .write = dev_write};

START_TEST(dispatch_and_offsets)
{
	struct iobus *bus = iobus_new("t");
	struct dev d = {0};
	uint64_t v;

	ck_assert_int_eq(iobus_register(bus, IOBUS_PIO, 0x3f8, 8, &dev_ops, &d, "uart", NULL), 0);
	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0x3fd, 1, &v), 0);
	ck_assert_uint_eq(d.last_off, 5);
	ck_assert_uint_eq(v, 0x8d); /* masked to the access size */
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, 0x3f8, 2, 0xabcdef), 0);
	ck_assert_uint_eq(d.last_val, 0xcdef);
	ck_assert_uint_eq(d.last_size, 2);
	/* The same address in the other space is unclaimed. */
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, 0x3f8, 1, &v), -ENOENT);
	ck_assert_uint_eq(v, 0xff);
	iobus_unregister(bus, IOBUS_PIO, 0x3f8);
	iobus_free(bus);
}
END_TEST

START_TEST(unclaimed_all_ones)
{
	struct iobus *bus = iobus_new("t");
	uint64_t v = 0;

	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0x1234, 1, &v), -ENOENT);
	ck_assert_uint_eq(v, 0xff);
	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0x1234, 2, &v), -ENOENT);
	ck_assert_uint_eq(v, 0xffff);
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, 0xd0000000, 4, &v), -ENOENT);
	ck_assert_uint_eq(v, 0xffffffffu);
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, UINT64_MAX - 7, 8, &v), -ENOENT);
	ck_assert_uint_eq(v, UINT64_MAX);
	ck_assert_int_eq(iobus_write(bus, IOBUS_MMIO, 0, 8, 1), -ENOENT);
	/* Sizes other than 1, 2, 4, 8 are refused but still read as all ones. */
	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, 0, 3, &v), -EINVAL);
	ck_assert_uint_eq(v, UINT64_MAX);
	/* A flood of unclaimed accesses is fine (rate-limited logging). */
	for (int i = 0; i < 100000; i++) {
		iobus_write(bus, IOBUS_PIO, 0x80, 1, (uint64_t)i);
	}
	iobus_free(bus);
}
END_TEST

START_TEST(overlaps_and_edges)
{
	struct iobus *bus = iobus_new("t");
	struct error *err = NULL;
	struct dev d = {0};
	uint64_t v;

	ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0x1000, 0x100, &dev_ops, &d, "a", NULL),
			 0);
	ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0x10ff, 1, &dev_ops, &d, "b", &err),
			 -EEXIST);
	ck_assert_ptr_nonnull(strstr(err->msg, "overlaps a"));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0xf00, 0x101, &dev_ops, &d, "c", NULL),
			 -EEXIST);
	ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0xf00, 0x100, &dev_ops, &d, "c", NULL), 0);
	ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0x1100, 0x100, &dev_ops, &d, "d", NULL),
			 0);
	/* Zero length, wrap-around, ports beyond 64K. */
	ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0x5000, 0, &dev_ops, &d, "z", NULL),
			 -EINVAL);
	ck_assert_int_eq(
		iobus_register(bus, IOBUS_MMIO, UINT64_MAX - 1, 4, &dev_ops, &d, "w", NULL),
		-EINVAL);
	ck_assert_int_eq(iobus_register(bus, IOBUS_PIO, 0xfffe, 4, &dev_ops, &d, "p", NULL),
			 -EINVAL);
	/* The last byte is claimed; an access straddling the end is not. */
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, 0x10ff, 1, &v), 0);
	ck_assert_uint_eq(d.last_off, 0xff);
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, 0x11fe, 4, &v), -ENOENT);
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, 0xeff, 1, &v), -ENOENT);
	iobus_unregister(bus, IOBUS_MMIO, 0x1000);
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, 0x1000, 1, &v), -ENOENT);
	iobus_unregister(bus, IOBUS_MMIO, 0x1000); /* not there: no-op */
	iobus_unregister(bus, IOBUS_MMIO, 0xf00);
	iobus_unregister(bus, IOBUS_MMIO, 0x1100);
	iobus_free(bus);
}
END_TEST

START_TEST(unregister_from_own_handler)
{
	struct iobus *bus = iobus_new("t");
	struct dev d = {0};
	uint64_t v;

	d.bus = bus;
	d.unregister_self = true;
	ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0x1000, 0x10, &dev_ops, &d, "a", NULL), 0);
	ck_assert_int_eq(iobus_write(bus, IOBUS_MMIO, 0x1004, 4, 1), 0);
	ck_assert_int_eq(iobus_read(bus, IOBUS_MMIO, 0x1004, 4, &v), -ENOENT);
	iobus_free(bus);
}
END_TEST

/* Slow handler + concurrent removal: unregister must wait for it. */
struct slow {
	atomic_int inside;
	atomic_bool freed;
	atomic_bool stop;
};

static uint64_t slow_read(void *opaque, uint64_t off, unsigned size)
{
	struct slow *s = opaque;

	atomic_fetch_add(&s->inside, 1);
	usleep(200);
	ck_assert(!atomic_load(&s->freed));
	atomic_fetch_sub(&s->inside, 1);
	return 0;
}

static const struct iobus_ops slow_ops = {.read = slow_read};

struct reader {
	struct iobus *bus;
	struct slow *s;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	uint64_t v;

	while (!atomic_load(&r->s->stop)) {
		iobus_read(r->bus, IOBUS_PIO, 0x100, 1, &v);
	}
	return NULL;
}

START_TEST(concurrent_unregister)
{
	struct iobus *bus = iobus_new("t");
	pthread_t th[4];

	for (int round = 0; round < 50; round++) {
		struct slow *s = calloc(1, sizeof(*s));
		struct reader r = {bus, s};

		ck_assert_int_eq(
			iobus_register(bus, IOBUS_PIO, 0x100, 4, &slow_ops, s, "slow", NULL), 0);
		for (int i = 0; i < 4; i++) {
			pthread_create(&th[i], NULL, reader_thread, &r);
		}
		usleep(1000);
		iobus_unregister(bus, IOBUS_PIO, 0x100);
		/* Nobody may be inside the handler once unregister returned. */
		ck_assert_int_eq(atomic_load(&s->inside), 0);
		atomic_store(&s->freed, true);
		usleep(500);
		atomic_store(&s->stop, true);
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
		}
		free(s);
	}
	iobus_free(bus);
}
END_TEST

START_TEST(many_ranges_sorted)
{
	struct iobus *bus = iobus_new("t");
	struct dev d = {0};
	uint64_t v;

	/* Registered in reverse order; lookups must find each. */
	for (int i = 99; i >= 0; i--) {
		ck_assert_int_eq(iobus_register(bus, IOBUS_MMIO, 0x10000 + (uint64_t)i * 0x100,
						0x80, &dev_ops, &d, "r", NULL),
				 0);
	}
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(
			iobus_read(bus, IOBUS_MMIO, 0x10000 + (uint64_t)i * 0x100 + 0x7c, 4, &v),
			0);
		ck_assert_uint_eq(d.last_off, 0x7c);
		ck_assert_int_eq(
			iobus_read(bus, IOBUS_MMIO, 0x10000 + (uint64_t)i * 0x100 + 0x80, 4, &v),
			-ENOENT);
	}
	for (int i = 0; i < 100; i++) {
		iobus_unregister(bus, IOBUS_MMIO, 0x10000 + (uint64_t)i * 0x100);
	}
	iobus_free(bus);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("iobus");
	TCase *tc = tcase_create("iobus");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, dispatch_and_offsets);
	tcase_add_test(tc, unclaimed_all_ones);
	tcase_add_test(tc, overlaps_and_edges);
	tcase_add_test(tc, unregister_from_own_handler);
	tcase_add_test(tc, concurrent_unregister);
	tcase_add_test(tc, many_ranges_sorted);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
