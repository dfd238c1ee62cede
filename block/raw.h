/*
 * The raw format's state shared with the asynchronous engine (aio.c), which
 * sends raw-over-file requests to io_uring shifted by the raw window.
 * Private to block/.
 */
#pragma once

#include <stdint.h>

struct block_node;

/* Offset of a raw node's window in its file. */
uint64_t raw_window_offset(struct block_node *bs);
