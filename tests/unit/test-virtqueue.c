/*
 * Virtqueue parsing over a fake guest RAM with malicious rings: loops,
 * overlong chains, out-of-range, wrapping and region-spanning addresses,
 * zero-length buffers, readable-after-writable ordering, avail index jumps,
 * bad indirect tables, and the EVENT_IDX / NO_INTERRUPT notification rules.
 * The fake RAM is two adjacent but separate mappings, so a buffer spanning
 * them must be refused just as guest_mem_ptr() refuses it in a VM.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hw/core/memory.h"
#include "hw/virtio/virtqueue.h"

#define RAM_A_SIZE (8u << 20)
#define RAM_B_BASE RAM_A_SIZE
#define RAM_B_SIZE (64u << 10)

static uint8_t *ram_a, *ram_b;

/* The test's stand-in for hw/core/memory.c: same contract as the real one. */
void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	(void)mem;
	if (gpa + len < gpa) {
		return NULL;
	}
	if (gpa <= RAM_A_SIZE && len <= RAM_A_SIZE - gpa) {
		return ram_a + gpa;
	}
	if (gpa >= RAM_B_BASE && gpa - RAM_B_BASE <= RAM_B_SIZE &&
	    len <= RAM_B_SIZE - (gpa - RAM_B_BASE)) {
		return ram_b + (gpa - RAM_B_BASE);
	}
	return NULL;
}

/* Pages of ram_a the queue reported as written by the device (live migration). */
static uint8_t dirty_a[RAM_A_SIZE / 4096];

void guest_mem_mark_dirty(struct guest_mem *mem, const void *host, size_t len)
{
	const uint8_t *p = host;

	(void)mem;
	if (p >= ram_a && p < ram_a + RAM_A_SIZE && len) {
		for (size_t pg = (size_t)(p - ram_a) / 4096;
		     pg <= (size_t)(p - ram_a + len - 1) / 4096; pg++) {
			dirty_a[pg] = 1;
		}
	}
}

#define QSIZE 8
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define IND 0x4000
#define DATA 0x10000

static struct virtq vq;
static struct virtq_elem *elem;
static uint16_t avail_next;

static void setup(void)
{
	ram_a = calloc(1, RAM_A_SIZE);
	ram_b = calloc(1, RAM_B_SIZE);
	elem = calloc(1, sizeof(*elem));
	ck_assert(ram_a && ram_b && elem);
	virtq_reset(&vq, NULL);
	vq.size = QSIZE;
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	vq.indirect = true;
	avail_next = 0;
	memset(dirty_a, 0, sizeof(dirty_a));
	ck_assert_int_eq(virtq_enable(&vq), 0);
}

static void teardown(void)
{
	free(ram_a);
	free(ram_b);
	free(elem);
}

static void set_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};

	memcpy(ram_a + table + 16 * i, &d, sizeof(d));
}

static uint16_t *avail16(unsigned i)
{
	return (uint16_t *)(ram_a + AVAIL + 2 * i);
}

static uint16_t *used16(unsigned i)
{
	return (uint16_t *)(ram_a + USED + 2 * i);
}

static void make_avail(uint16_t head)
{
	*avail16(2 + (avail_next % QSIZE)) = head;
	avail_next++;
	*avail16(1) = avail_next;
}

START_TEST(test_simple_chain)
{
	set_desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA + 0x100, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(DESC, 2, DATA + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	ck_assert_int_eq(virtq_pop(&vq, elem), 0);
	make_avail(0);
	ck_assert(virtq_has_avail(&vq));
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_int_eq(elem->head, 0);
	ck_assert_uint_eq(elem->out_num, 1);
	ck_assert_uint_eq(elem->in_num, 2);
	ck_assert_uint_eq(elem->out_len, 16);
	ck_assert_uint_eq(elem->in_len, 513);
	ck_assert_ptr_eq(elem->out[0].iov_base, ram_a + DATA);
	ck_assert_ptr_eq(elem->in[1].iov_base, ram_a + DATA + 0x400);
	ck_assert_int_eq(virtq_pop(&vq, elem), 0);
	virtq_push(&vq, elem, 513);
	ck_assert_uint_eq(*used16(1), 1);
	ck_assert_uint_eq(*(uint32_t *)(ram_a + USED + 4), 0);
	ck_assert_uint_eq(*(uint32_t *)(ram_a + USED + 8), 513);
	ck_assert(!vq.broken);
	/* KVM's dirty log does not see these writes: the used ring and the in-buffers. */
	ck_assert(dirty_a[USED / 4096]);
	ck_assert(dirty_a[(DATA + 0x400) / 4096]);
	ck_assert(!dirty_a[DESC / 4096] && !dirty_a[AVAIL / 4096]);
}
END_TEST

START_TEST(test_loop)
{
	set_desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -ELOOP);
	ck_assert(vq.broken);
	/* a broken queue is inert until reset */
	ck_assert_int_eq(virtq_pop(&vq, elem), 0);
	ck_assert(!virtq_has_avail(&vq));
}
END_TEST

START_TEST(test_self_loop)
{
	set_desc(DESC, 3, DATA, 16, VIRTQ_DESC_F_NEXT, 3);
	make_avail(3);
	ck_assert_int_eq(virtq_pop(&vq, elem), -ELOOP);
}
END_TEST

START_TEST(test_overlong_chain)
{
	unsigned i;

	/* every descriptor chained, last one pointing back: QSIZE+1 steps */
	for (i = 0; i < QSIZE; i++) {
		set_desc(DESC, i, DATA, 1, VIRTQ_DESC_F_NEXT, (i + 1) % QSIZE);
	}
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -ELOOP);
}
END_TEST

START_TEST(test_full_length_chain_ok)
{
	unsigned i;

	for (i = 0; i < QSIZE; i++) {
		set_desc(DESC, i, DATA + i, 1, i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	}
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_uint_eq(elem->out_num, QSIZE);
}
END_TEST

START_TEST(test_next_out_of_range)
{
	set_desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_NEXT, QSIZE);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_head_out_of_range)
{
	make_avail(QSIZE + 5);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_addr_outside_ram)
{
	set_desc(DESC, 0, RAM_B_BASE + RAM_B_SIZE, 16, 0, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EFAULT);
}
END_TEST

START_TEST(test_addr_partly_outside_ram)
{
	set_desc(DESC, 0, RAM_B_BASE + RAM_B_SIZE - 8, 16, 0, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EFAULT);
}
END_TEST

START_TEST(test_addr_wraps)
{
	set_desc(DESC, 0, UINT64_MAX - 7, 16, 0, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EFAULT);
}
END_TEST

START_TEST(test_addr_spans_regions)
{
	set_desc(DESC, 0, RAM_B_BASE - 8, 16, 0, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EFAULT);
}
END_TEST

START_TEST(test_second_region_ok)
{
	set_desc(DESC, 0, RAM_B_BASE + 16, 16, VIRTQ_DESC_F_WRITE, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_ptr_eq(elem->in[0].iov_base, ram_b + 16);
}
END_TEST

START_TEST(test_zero_length_buffers)
{
	set_desc(DESC, 0, DATA, 0, VIRTQ_DESC_F_NEXT, 1);
	/* a zero-length buffer is not dereferenced, even at a bogus address */
	set_desc(DESC, 1, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(DESC, 2, DATA, 4, VIRTQ_DESC_F_WRITE, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_uint_eq(elem->out_num, 0);
	ck_assert_uint_eq(elem->in_num, 1);
	ck_assert_uint_eq(elem->in_len, 4);
}
END_TEST

START_TEST(test_header_in_writable_descriptor)
{
	/* a request whose header the driver marked device-writable: no out bytes */
	set_desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA + 16, 1, VIRTQ_DESC_F_WRITE, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_uint_eq(elem->out_len, 0);
	ck_assert_uint_eq(elem->in_len, 17);
}
END_TEST

START_TEST(test_readable_after_writable)
{
	set_desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA + 16, 16, 0, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_avail_idx_jump)
{
	set_desc(DESC, 0, DATA, 16, 0, 0);
	*avail16(1) = QSIZE + 1;
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
	ck_assert(vq.broken);
}
END_TEST

START_TEST(test_avail_idx_full_queue_ok)
{
	unsigned i;

	for (i = 0; i < QSIZE; i++) {
		set_desc(DESC, i, DATA, 16, 0, 0);
		make_avail(i);
	}
	for (i = 0; i < QSIZE; i++) {
		ck_assert_int_eq(virtq_pop(&vq, elem), 1);
		ck_assert_uint_eq(elem->head, i);
	}
	ck_assert_int_eq(virtq_pop(&vq, elem), 0);
}
END_TEST

START_TEST(test_avail_idx_wraps_16bit)
{
	unsigned round;

	set_desc(DESC, 0, DATA, 16, 0, 0);
	for (round = 0; round < 70000; round++) {
		make_avail(0);
		ck_assert_int_eq(virtq_pop(&vq, elem), 1);
		virtq_push(&vq, elem, 0);
	}
	ck_assert_uint_eq(*used16(1), (uint16_t)70000);
	ck_assert(!vq.broken);
}
END_TEST

START_TEST(test_indirect_ok)
{
	set_desc(IND, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(IND, 1, DATA + 64, 100, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(IND, 2, DATA + 256, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(DESC, 5, IND, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(5);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_uint_eq(elem->head, 5);
	ck_assert_uint_eq(elem->out_num, 1);
	ck_assert_uint_eq(elem->in_num, 2);
	ck_assert_uint_eq(elem->in_len, 101);
}
END_TEST

START_TEST(test_indirect_not_negotiated)
{
	vq.indirect = false;
	set_desc(IND, 0, DATA, 16, 0, 0);
	set_desc(DESC, 0, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_indirect_nested)
{
	set_desc(IND, 0, IND + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(DESC, 0, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_indirect_with_next)
{
	set_desc(IND, 0, DATA, 16, 0, 0);
	set_desc(DESC, 0, IND, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA, 16, 0, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_indirect_after_direct)
{
	set_desc(IND, 0, DATA, 16, 0, 0);
	set_desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_indirect_bad_length)
{
	set_desc(DESC, 0, IND, 24, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_indirect_zero_length)
{
	set_desc(DESC, 0, IND, 0, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_indirect_table_outside_ram)
{
	set_desc(DESC, 0, RAM_B_BASE + RAM_B_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EFAULT);
}
END_TEST

START_TEST(test_indirect_table_too_big)
{
	set_desc(DESC, 0, DATA, (VIRTQ_MAX_INDIRECT + 1) * 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -E2BIG);
}
END_TEST

START_TEST(test_indirect_loop)
{
	set_desc(IND, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(IND, 1, DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	set_desc(DESC, 0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -ELOOP);
}
END_TEST

START_TEST(test_indirect_next_out_of_table)
{
	set_desc(IND, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc(DESC, 0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EINVAL);
}
END_TEST

START_TEST(test_total_length_overflow)
{
	unsigned i;

	/* 1024 descriptors of 8 MiB each, all over the same RAM: 8 GiB claimed */
	for (i = 0; i < VIRTQ_MAX_INDIRECT; i++) {
		set_desc(DATA, i, 0, RAM_A_SIZE, i + 1 < VIRTQ_MAX_INDIRECT ? VIRTQ_DESC_F_NEXT : 0,
			 i + 1);
	}
	set_desc(DESC, 0, DATA, VIRTQ_MAX_INDIRECT * 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), -EOVERFLOW);
}
END_TEST

START_TEST(test_enable_checks)
{
	struct virtq q;

	virtq_reset(&q, NULL);
	q.size = 6; /* not a power of two */
	q.desc_gpa = DESC;
	q.avail_gpa = AVAIL;
	q.used_gpa = USED;
	ck_assert_int_eq(virtq_enable(&q), -EINVAL);
	q.size = VIRTQ_MAX_SIZE * 2;
	ck_assert_int_eq(virtq_enable(&q), -EINVAL);
	q.size = 0;
	ck_assert_int_eq(virtq_enable(&q), -EINVAL);
	q.size = 8;
	q.desc_gpa = DESC + 8; /* misaligned */
	ck_assert_int_eq(virtq_enable(&q), -EINVAL);
	q.desc_gpa = RAM_B_BASE + RAM_B_SIZE - 64; /* runs past RAM */
	ck_assert_int_eq(virtq_enable(&q), -EFAULT);
	ck_assert(!q.enabled);
	q.desc_gpa = UINT64_MAX - 15; /* wraps */
	ck_assert_int_eq(virtq_enable(&q), -EFAULT);
	q.desc_gpa = DESC;
	q.used_gpa = USED + 2;
	ck_assert_int_eq(virtq_enable(&q), -EINVAL);
	q.used_gpa = USED;
	ck_assert_int_eq(virtq_enable(&q), 0);
	ck_assert_int_eq(virtq_pop(&q, elem), 0);
}
END_TEST

START_TEST(test_disabled_queue_inert)
{
	struct virtq q;

	virtq_reset(&q, NULL);
	ck_assert_int_eq(virtq_pop(&q, elem), 0);
	ck_assert(!virtq_has_avail(&q));
	ck_assert(!virtq_should_notify(&q));
	virtq_push_head(&q, 0, 0);
}
END_TEST

START_TEST(test_no_interrupt_flag)
{
	set_desc(DESC, 0, DATA, 16, 0, 0);
	make_avail(0);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	virtq_push(&vq, elem, 0);
	ck_assert(virtq_should_notify(&vq));
	*avail16(0) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	ck_assert(!virtq_should_notify(&vq));
}
END_TEST

START_TEST(test_event_idx)
{
	unsigned i;

	vq.event_idx = true;
	set_desc(DESC, 0, DATA, 16, 0, 0);
	/* the driver asks for an interrupt once used idx passes 2 */
	*avail16(2 + QSIZE) = 2;
	for (i = 0; i < 4; i++) {
		make_avail(0);
		ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	}
	/* avail_event tells the driver what we consumed */
	ck_assert_uint_eq(*(uint16_t *)(ram_a + USED + 4 + 8 * QSIZE), 4);
	virtq_push_head(&vq, 0, 0);
	ck_assert(virtq_should_notify(&vq)); /* first one always */
	virtq_push_head(&vq, 0, 0);
	ck_assert(!virtq_should_notify(&vq)); /* used idx 2: event 2 not yet passed */
	virtq_push_head(&vq, 0, 0);
	ck_assert(virtq_should_notify(&vq)); /* used idx 3 passed event 2 */
	virtq_push_head(&vq, 0, 0);
	ck_assert(!virtq_should_notify(&vq));
	virtq_set_notification(&vq, true);
	ck_assert_uint_eq(*(uint16_t *)(ram_a + USED + 4 + 8 * QSIZE), 4);
}
END_TEST

START_TEST(test_unpop)
{
	set_desc(DESC, 0, DATA, 16, 0, 0);
	set_desc(DESC, 1, DATA, 32, 0, 0);
	make_avail(0);
	make_avail(1);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	virtq_unpop(&vq, 2);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_uint_eq(elem->head, 0);
	/* never more than what is in flight */
	virtq_unpop(&vq, 100);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_uint_eq(elem->head, 0);
	ck_assert_int_eq(virtq_pop(&vq, elem), 1);
	ck_assert_uint_eq(elem->head, 1);
	ck_assert_int_eq(virtq_pop(&vq, elem), 0);
}
END_TEST

START_TEST(test_no_notify_flag)
{
	virtq_set_notification(&vq, false);
	ck_assert_uint_eq(*used16(0), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notification(&vq, true);
	ck_assert_uint_eq(*used16(0), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("virtqueue");
	TCase *tc = tcase_create("rings");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_simple_chain);
	tcase_add_test(tc, test_loop);
	tcase_add_test(tc, test_self_loop);
	tcase_add_test(tc, test_overlong_chain);
	tcase_add_test(tc, test_full_length_chain_ok);
	tcase_add_test(tc, test_next_out_of_range);
	tcase_add_test(tc, test_head_out_of_range);
	tcase_add_test(tc, test_addr_outside_ram);
	tcase_add_test(tc, test_addr_partly_outside_ram);
	tcase_add_test(tc, test_addr_wraps);
	tcase_add_test(tc, test_addr_spans_regions);
	tcase_add_test(tc, test_second_region_ok);
	tcase_add_test(tc, test_zero_length_buffers);
	tcase_add_test(tc, test_header_in_writable_descriptor);
	tcase_add_test(tc, test_readable_after_writable);
	tcase_add_test(tc, test_avail_idx_jump);
	tcase_add_test(tc, test_avail_idx_full_queue_ok);
	tcase_add_test(tc, test_avail_idx_wraps_16bit);
	tcase_add_test(tc, test_indirect_ok);
	tcase_add_test(tc, test_indirect_not_negotiated);
	tcase_add_test(tc, test_indirect_nested);
	tcase_add_test(tc, test_indirect_with_next);
	tcase_add_test(tc, test_indirect_after_direct);
	tcase_add_test(tc, test_indirect_bad_length);
	tcase_add_test(tc, test_indirect_zero_length);
	tcase_add_test(tc, test_indirect_table_outside_ram);
	tcase_add_test(tc, test_indirect_table_too_big);
	tcase_add_test(tc, test_indirect_loop);
	tcase_add_test(tc, test_indirect_next_out_of_table);
	tcase_add_test(tc, test_total_length_overflow);
	tcase_add_test(tc, test_enable_checks);
	tcase_add_test(tc, test_disabled_queue_inert);
	tcase_add_test(tc, test_no_interrupt_flag);
	tcase_add_test(tc, test_event_idx);
	tcase_add_test(tc, test_no_notify_flag);
	tcase_add_test(tc, test_unpop);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
