/*
 * The scratch raw image of the fuzz targets whose devices have a disk
 * (xhci's usb-storage, virtio-blk): made in /tmp on the first run and
 * removed at exit, emptied to @size zero bytes at the start of every run
 * so that runs stay independent (a run that crashes leaves the file).
 */
#pragma once

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

static char fuzz_disk_path[] = "/tmp/fuzz-disk-XXXXXX";

static void fuzz_disk_cleanup(void)
{
	unlink(fuzz_disk_path);
}

static void fuzz_disk_reset(off_t size)
{
	static bool made;
	int fd;

	if (made) {
		fd = open(fuzz_disk_path, O_WRONLY);
	} else {
		fd = mkstemp(fuzz_disk_path);
		made = true;
		atexit(fuzz_disk_cleanup);
	}
	if (fd < 0 || ftruncate(fd, 0) < 0 || ftruncate(fd, size) < 0) {
		abort();
	}
	close(fd);
}
