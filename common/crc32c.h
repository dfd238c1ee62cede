/*
 * CRC-32C (Castagnoli), as VHDX checksums its structures (block/vhdx.c).
 * Any thread.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of @len bytes at @p, the 4-byte checksum field at @at read as zero. */
uint32_t crc32c_field(const uint8_t *p, size_t len, size_t at);
