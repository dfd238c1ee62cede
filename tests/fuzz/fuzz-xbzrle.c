/*
 * libFuzzer target: xbzrle pages (daemon/xbzrle.c), which a migration's
 * destination applies to its RAM as a source sent them. The first byte
 * picks the test: 0-127 decode the rest as a source's encoding onto a
 * page (it must fail cleanly or stay inside the page); 128-255 patch a
 * page with the rest, (u16 offset, byte) at a time, encode the change
 * with a limit the first byte also picks, and decode it back: the new
 * page must come back exactly, and an encoding may only be refused for
 * being over its limit. Pages are allocated to their size, so ASan sees
 * a byte written past one.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/xbzrle.h"

#define PAGE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *old, *cur, *enc;
	size_t dlen;
	int n;

	if (size < 1) {
		return 0;
	}
	old = malloc(PAGE);
	cur = malloc(PAGE);
	for (size_t i = 0; i < PAGE; i++) {
		old[i] = (uint8_t)(i * 31);
	}
	memcpy(cur, old, PAGE);
	if (data[0] < 128) {
		uint8_t *src = malloc(size - 1 ? size - 1 : 1);

		memcpy(src, data + 1, size - 1);
		(void)xbzrle_decode(src, size - 1, cur, PAGE);
		free(src);
		free(old);
		free(cur);
		return 0;
	}
	for (size_t i = 1; i + 3 <= size; i += 3) {
		cur[(data[i] | (size_t)data[i + 1] << 8) % PAGE] = data[i + 2];
	}
	/* from 3 bytes (a change of one byte needs up to 5) to the page's size */
	dlen = data[0] & 1 ? PAGE - 16 : 3 + (data[0] & 0x7f) * 31u;
	enc = malloc(dlen);
	n = xbzrle_encode(old, cur, PAGE, enc, dlen);
	if (n == 0 && memcmp(old, cur, PAGE) != 0) {
		abort(); /* a change encoded as nothing */
	}
	if (n > 0) {
		if ((size_t)n > dlen || xbzrle_decode(enc, (size_t)n, old, PAGE) < 0 ||
		    memcmp(old, cur, PAGE) != 0) {
			abort();
		}
	}
	if (n < 0) {
		/* refused: the same change takes more than the limit */
		uint8_t *big = malloc(2 * PAGE);

		n = xbzrle_encode(old, cur, PAGE, big, 2 * PAGE);
		if (n <= (int)dlen || xbzrle_decode(big, (size_t)n, old, PAGE) < 0 ||
		    memcmp(old, cur, PAGE) != 0) {
			abort();
		}
		free(big);
	}
	free(enc);
	free(old);
	free(cur);
	return 0;
}
