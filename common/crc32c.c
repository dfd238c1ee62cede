/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), table-driven. */
#include "common/crc32c.h"

#include <pthread.h>

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++) {
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		}
		crc_table[i] = c;
	}
}

uint32_t crc32c_field(const uint8_t *p, size_t len, size_t at)
{
	uint32_t crc = 0xffffffffu;

	pthread_once(&crc_once, crc_init);
	for (size_t i = 0; i < len; i++) {
		uint8_t b = i >= at && i < at + 4 ? 0 : p[i];

		crc = crc_table[(crc ^ b) & 0xff] ^ (crc >> 8);
	}
	return ~crc;
}
