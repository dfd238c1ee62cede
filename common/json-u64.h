/*
 * Unsigned 64-bit integers in protocol output. Jansson holds integers as
 * int64_t, but QEMU answers with uint64 values above INT64_MAX (a balloon
 * statistic the guest never reported is 18446744073709551615). json_u64()
 * gives a plain integer when it fits, else a marker string that the
 * monitor's writer turns back into the bare number (json_u64_unmark).
 *
 * The marker holds a secret drawn once per process, so that no string a
 * client or a guest supplies (a command's id, a job's name, serial output
 * read with ringbuf-read) can pass for one: such a string is written as the
 * string it is.
 *
 * Threads: any thread.
 */
#pragma once

#include <stdint.h>

#include <jansson.h>

/* @v as a JSON integer, or its marker string above INT64_MAX; a new reference. */
json_t *json_u64(uint64_t v);

/* Turn the markers in @text (as json_dumps writes them) into bare numbers, in place. */
void json_u64_unmark(char *text);
