/*
 * The scratch raw image of the fuzz targets whose devices have a disk
 * (xhci's usb-storage, virtio-blk): a file in /tmp removed as soon as it is
 * made and opened through its /proc/self/fd path, so nothing is left
 * behind even when a run crashes. Made on the first run, emptied to @size
 * zero bytes at the start of every run so that runs stay independent.
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char fuzz_disk_path[32];

static void fuzz_disk_reset(off_t size)
{
	static int fd = -1;

	if (fd < 0) {
		char name[] = "/tmp/fuzz-disk-XXXXXX";

		fd = mkstemp(name);
		if (fd < 0 || unlink(name) < 0) {
			abort();
		}
		snprintf(fuzz_disk_path, sizeof(fuzz_disk_path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, size) < 0) {
		abort();
	}
}
