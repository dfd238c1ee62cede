/*
 * XBZRLE (XOR-based zero run-length encoding) of a RAM page against the
 * copy sent before, for the migration's xbzrle capability
 * (docs/migration.md). The scheme is QEMU's: an encoded page is a
 * sequence of (unchanged-run length, changed-run length, the changed
 * bytes), lengths as ULEB128; a trailing unchanged run is left out.
 * Pure functions; any thread.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Encode how @cur differs from @old (@len bytes each, @len < 16384) into
 * @dst: its length, 0 when they are equal, -1 when the encoding would
 * take more than @dlen bytes (send the page whole instead).
 */
int xbzrle_encode(const uint8_t *old, const uint8_t *cur, size_t len, uint8_t *dst, size_t dlen);

/*
 * Apply the encoding @src (@slen bytes) to @page (@len bytes, the copy it
 * was made against): 0, or -1 when @src is malformed (a run past the page
 * or past @src, a length over two bytes, an empty changed run, nothing
 * after a run of unchanged bytes); @page may then be partly changed.
 */
int xbzrle_decode(const uint8_t *src, size_t slen, uint8_t *page, size_t len);
