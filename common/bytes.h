/*
 * Unaligned little- and big-endian loads and stores for on-disk formats
 * (block/qed.c, vhdx.c, vmdk.c, vpc.c) and wire formats (daemon/nbd-server.c).
 * Pure functions, any thread.
 */
#pragma once

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define BYTES_LOAD(name, type, conv)              \
	static inline type name(const uint8_t *p) \
	{                                         \
		type v;                           \
		memcpy(&v, p, sizeof(v));         \
		return conv(v);                   \
	}
#define BYTES_STORE(name, type, conv)               \
	static inline void name(uint8_t *p, type v) \
	{                                           \
		v = conv(v);                        \
		memcpy(p, &v, sizeof(v));           \
	}

BYTES_LOAD(le32, uint32_t, le32toh)
BYTES_LOAD(le64, uint64_t, le64toh)
BYTES_LOAD(be16, uint16_t, be16toh)
BYTES_LOAD(be32, uint32_t, be32toh)
BYTES_LOAD(be64, uint64_t, be64toh)
BYTES_STORE(put_le16, uint16_t, htole16)
BYTES_STORE(put_le32, uint32_t, htole32)
BYTES_STORE(put_le64, uint64_t, htole64)
BYTES_STORE(put_be16, uint16_t, htobe16)
BYTES_STORE(put_be32, uint32_t, htobe32)
BYTES_STORE(put_be64, uint64_t, htobe64)
