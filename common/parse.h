/*
 * Number and size parsing with overflow checks. Pure functions, any thread.
 * All return 0 or -EINVAL (syntax) / -ERANGE (overflow), writing *ret only
 * on success.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * "4096", "512K", "512M", "2G", "1T", "1P", "1E", optional "B"/"iB" suffix
 * ("512MiB", "2GB"); binary multiples. Decimal fractions are accepted when the
 * result is a whole number of bytes ("1.5G"). Leading/trailing space, signs
 * and empty strings are rejected.
 */
int parse_size(const char *s, uint64_t *ret);

/* Unsigned decimal (or 0x hex) that fits in uint64_t. */
int parse_u64(const char *s, uint64_t *ret);
/* Unsigned that fits in uint32_t. */
int parse_u32(const char *s, uint32_t *ret);
/* Signed decimal that fits in int. */
int parse_int(const char *s, int *ret);

/*
 * QEMU's id_wellformed(): a letter, then letters, digits, '-', '.' and
 * '_'; at most @max bytes. For ids and node names clients choose.
 */
bool parse_id_ok(const char *id, size_t max);

/* Format bytes as the largest exact binary unit ("512M", "1536K", "7"). buf >= 32. */
const char *format_size(uint64_t bytes, char *buf, size_t len);
