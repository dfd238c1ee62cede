/*
 * Unsigned 64-bit integers in protocol output. Jansson holds integers as
 * int64_t, but QEMU answers with uint64 values above INT64_MAX (a balloon
 * statistic the guest never reported is 18446744073709551615). json_u64()
 * gives a plain integer when it fits, else a marker string that the
 * monitor's writer (monitor/server.c) turns back into the bare number.
 *
 * Threads: pure; any thread.
 */
#pragma once

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* "\x01u64:" then the decimal digits; \x01 never appears in a valid id or name. */
#define JSON_U64_MARKER "\001u64:"

static inline json_t *json_u64(uint64_t v)
{
	char buf[40];

	if (v <= INT64_MAX) {
		return json_integer((json_int_t)v);
	}
	snprintf(buf, sizeof(buf), JSON_U64_MARKER "%" PRIu64, v);
	return json_string(buf);
}
