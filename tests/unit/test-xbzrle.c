/*
 * Unit tests for daemon/xbzrle.c: pages that differ in a byte at either
 * end, in scattered bytes and in runs decode back to the new page; equal
 * pages encode to nothing; an encoding over its limit is refused; and
 * every malformed encoding a hostile source could send is refused
 * without touching memory outside the page.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/xbzrle.h"

#define PAGE 4096

static uint8_t old_page[PAGE], cur_page[PAGE], enc[2 * PAGE];

/* cur_page must come back from old_page and its encoding. */
static void round_trip(size_t dlen)
{
	uint8_t page[PAGE];
	int n = xbzrle_encode(old_page, cur_page, PAGE, enc, dlen);

	ck_assert_int_gt(n, 0);
	ck_assert_int_le(n, (int)dlen);
	memcpy(page, old_page, PAGE);
	ck_assert_int_eq(xbzrle_decode(enc, (size_t)n, page, PAGE), 0);
	ck_assert_mem_eq(page, cur_page, PAGE);
}

START_TEST(equal_pages_encode_to_nothing)
{
	memset(old_page, 0x5a, PAGE);
	memcpy(cur_page, old_page, PAGE);
	ck_assert_int_eq(xbzrle_encode(old_page, cur_page, PAGE, enc, PAGE), 0);
}
END_TEST

START_TEST(single_bytes)
{
	static const size_t at[] = {0, 1, 7, 8, 127, 128, 129, 2048, 4088, 4095};

	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
		memset(old_page, 0, PAGE);
		memcpy(cur_page, old_page, PAGE);
		cur_page[at[k]] = 0xff;
		round_trip(PAGE);
		/* QEMU's migration guest: one byte of the page changes, 3 or 4 bytes go */
		ck_assert_int_le(xbzrle_encode(old_page, cur_page, PAGE, enc, PAGE), 4);
	}
}
END_TEST

START_TEST(random_changes)
{
	srand(12345);
	for (int t = 0; t < 2000; t++) {
		int changes = rand() % 300;

		for (size_t i = 0; i < PAGE; i++) {
			old_page[i] = (uint8_t)rand();
		}
		memcpy(cur_page, old_page, PAGE);
		for (int c = 0; c < changes; c++) {
			size_t at = (size_t)rand() % PAGE, n = 1 + (size_t)rand() % 64;

			for (size_t i = at; i < at + n && i < PAGE; i++) {
				cur_page[i] = (uint8_t)(old_page[i] + 1 + rand() % 255);
			}
		}
		if (changes) {
			round_trip(2 * PAGE);
		}
	}
}
END_TEST

START_TEST(over_the_limit)
{
	memset(old_page, 0, PAGE);
	memset(cur_page, 1, PAGE);
	ck_assert_int_eq(xbzrle_encode(old_page, cur_page, PAGE, enc, PAGE - 16), -1);
	/* every other byte: two header bytes per changed byte */
	memcpy(cur_page, old_page, PAGE);
	for (size_t i = 0; i < PAGE; i += 2) {
		cur_page[i] = 1;
	}
	ck_assert_int_eq(xbzrle_encode(old_page, cur_page, PAGE, enc, PAGE - 16), -1);
	round_trip(2 * PAGE);
}
END_TEST

static int decode(const uint8_t *src, size_t slen)
{
	uint8_t page[PAGE + 16];
	int r;

	memset(page, 0, sizeof(page));
	r = xbzrle_decode(src, slen, page, PAGE);
	for (size_t i = PAGE; i < sizeof(page); i++) {
		ck_assert_int_eq(page[i], 0);
	}
	return r;
}

START_TEST(malformed)
{
	/* (unchanged, changed, bytes): 4096 unchanged then one more */
	static const uint8_t past_page[] = {0x80, 0x20, 0x01, 0xaa};
	/* 4095 unchanged, then two changed bytes */
	static const uint8_t run_past_page[] = {0xff, 0x1f, 0x02, 0xaa, 0xbb};
	/* a changed run longer than what follows */
	static const uint8_t short_src[] = {0x00, 0x05, 0xaa, 0xbb};
	/* a length of three bytes */
	static const uint8_t long_len[] = {0x80, 0x80, 0x01, 0x01, 0xaa};
	/* an empty changed run */
	static const uint8_t empty_run[] = {0x01, 0x00};
	/* an unchanged run and nothing after it */
	static const uint8_t only_zrun[] = {0x10};
	/* a two-byte length cut after its first byte */
	static const uint8_t cut_len[] = {0x00, 0x81};
	static const uint8_t ok[] = {0xff, 0x1f, 0x01, 0xaa};

	ck_assert_int_eq(decode(past_page, sizeof(past_page)), -1);
	ck_assert_int_eq(decode(run_past_page, sizeof(run_past_page)), -1);
	ck_assert_int_eq(decode(short_src, sizeof(short_src)), -1);
	ck_assert_int_eq(decode(long_len, sizeof(long_len)), -1);
	ck_assert_int_eq(decode(empty_run, sizeof(empty_run)), -1);
	ck_assert_int_eq(decode(only_zrun, sizeof(only_zrun)), -1);
	ck_assert_int_eq(decode(cut_len, sizeof(cut_len)), -1);
	ck_assert_int_eq(decode(ok, sizeof(ok)), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("xbzrle");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, equal_pages_encode_to_nothing);
	tcase_add_test(tc, single_bytes);
	tcase_add_test(tc, random_changes);
	tcase_add_test(tc, over_the_limit);
	tcase_add_test(tc, malformed);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
