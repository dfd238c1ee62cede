/*
 * Shared helpers of the vmm-img verbs (clients/vmm-img.c, clients/img-*.c).
 * Single-threaded tool code: everything runs on the main thread (bench
 * adds the block layer's own worker threads behind the aio API).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "block/block-int.h"

/* Print "vmm-img: MESSAGE" to stderr. */
void img_error(const char *fmt, ...) _printf_(1, 2);

/*
 * Open @filename ("json:{...}" is a blockdev-add tree) with format @fmt.
 * Without @fmt the format is probed (qcow2 by magic, raw otherwise); a
 * probed raw image opened for writing gets QEMU's warning on stderr and
 * BLOCK_O_PROBED. Prints the error; returns 0 or -errno.
 */
int img_open(struct block_node **ret, const char *filename, const char *fmt, unsigned flags);

/* Cache mode names (none, writeback, writethrough, directsync, unsafe) to BLOCK_O_ flags. */
int img_cache_flags(const char *mode, unsigned *ret_flags);

/* qemu's human size: "0 B", "64 KiB", "1.5 GiB" (three significant digits). */
const char *img_size_str(uint64_t v, char *buf, size_t len);

/* A verb: its name, function, one-line summary and usage (for -h and --help). */
struct img_command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *usage;
};

/* --output's getopt value (a long option only: -O is convert's output format). */
#define IMG_OPT_OUTPUT 0x100

/* The options every verb shares, filled by the verbs' common parser. */
struct img_common {
	const char *fmt; /* -f, or NULL to probe */
	bool json;	 /* --output=json */
	bool quiet;	 /* -q */
	unsigned flags;	 /* BLOCK_O_NO_LOCK for -U */
};

/* The bench verb (img-bench.c). */
int img_cmd_bench(int argc, char **argv);
