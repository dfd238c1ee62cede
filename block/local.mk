# block/: the block layer, built as one convenience library (libblock.a)
# that virtio-blk, the monitor and vmm-img link. Drivers: file, raw (this
# fragment) and qcow2 (block/qcow2*.c, added to BLOCK_SOURCES by its owner).
noinst_LIBRARIES += block/libblock.a
BLOCK_SOURCES = \
	block/block-int.h block/block.c block/aio.c block/graph.c \
	block/file.c block/file.h \
	block/nbd.c block/rbd.c \
	block/raw.c block/raw.h \
	block/table-cache.c block/table-cache.h \
	block/qed.c block/vhdx.c block/vmdk.c block/vpc.c \
	block/qcow2.h block/qcow2.c block/qcow2-io.c block/qcow2-cache.c block/qcow2-cluster.c \
	block/qcow2-refcount.c block/qcow2-snapshot.c block/qcow2-compress.c \
	block/qcow2-bitmap.c block/throttle.c
block_libblock_a_SOURCES = $(BLOCK_SOURCES)
block_libblock_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS) $(LIBURING_CFLAGS) \
	$(LIBNBD_CFLAGS) $(LIBRBD_CFLAGS) $(ZLIB_CFLAGS) $(ZSTD_CFLAGS)
BLOCK_LIBS = block/libblock.a $(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS) $(LIBURING_LIBS) $(LIBAIO_LIBS) \
	$(LIBNBD_LIBS) $(LIBRBD_LIBS) $(ZLIB_LIBS) $(ZSTD_LIBS) $(PTHREAD_LIBS)

check_PROGRAMS += tests/unit/test-block
TESTS += tests/unit/test-block
tests_unit_test_block_SOURCES = tests/unit/test-block.c tests/unit/check-main.h
tests_unit_test_block_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_block_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-block-graph
TESTS += tests/unit/test-block-graph
tests_unit_test_block_graph_SOURCES = tests/unit/test-block-graph.c tests/unit/strdup-fail.c \
	tests/unit/strdup-fail.h tests/unit/check-main.h tests/unit/scratch-dir.h
tests_unit_test_block_graph_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_block_graph_LDFLAGS = $(AM_LDFLAGS) -Wl,--wrap=strdup
tests_unit_test_block_graph_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-block-aio
TESTS += tests/unit/test-block-aio
tests_unit_test_block_aio_SOURCES = tests/unit/test-block-aio.c tests/unit/check-main.h \
	tests/unit/scratch-dir.h
tests_unit_test_block_aio_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_block_aio_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-block-nbd
TESTS += tests/unit/test-block-nbd
tests_unit_test_block_nbd_SOURCES = tests/unit/test-block-nbd.c tests/unit/check-main.h
tests_unit_test_block_nbd_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_block_nbd_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)

# Functional tests of vmm-img against qemu-img (tests/block/).
TESTS += tests/block/test-img-raw.sh tests/block/test-img-chain.sh tests/block/test-img-blockdev.sh \
	tests/block/test-img-qemu-table.py tests/block/test-img-bitmap.py
EXTRA_DIST += tests/block

# qcow2: a test driver program for the interop scripts, the unit tests of the
# format's math and of crafted headers, and the interop/crash scripts.
check_PROGRAMS += tests/block/qcow2-io tests/unit/test-qcow2
tests_block_qcow2_io_SOURCES = tests/block/qcow2-io.c
tests_block_qcow2_io_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_block_qcow2_io_LDADD = $(BLOCK_LIBS)
TESTS += tests/unit/test-qcow2
tests_unit_test_qcow2_SOURCES = tests/unit/test-qcow2.c tests/unit/check-main.h
tests_unit_test_qcow2_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_qcow2_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)
TESTS += tests/block/test-qcow2-read.sh tests/block/test-qcow2-write.sh \
	tests/block/test-qcow2-crash.sh

# qed, vhdx, vmdk and vpc: a format-neutral test driver, the unit tests of
# probing and crafted images, and an interop script per format.
check_PROGRAMS += tests/block/img-io tests/unit/test-formats
tests_block_img_io_SOURCES = tests/block/img-io.c
tests_block_img_io_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_block_img_io_LDADD = $(BLOCK_LIBS) $(PTHREAD_LIBS)
TESTS += tests/unit/test-formats
tests_unit_test_formats_SOURCES = tests/unit/test-formats.c tests/unit/check-main.h
tests_unit_test_formats_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_formats_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)
TESTS += tests/block/test-qed.sh tests/block/test-vpc.sh tests/block/test-vhdx.sh \
	tests/block/test-img-convert-cache.sh tests/block/test-vhdx-log.sh tests/block/test-img-amend.sh \
	tests/block/test-vmdk.sh
# A VM disk in each format through virtio-blk (the test guest is built by hw/virtio/).
TESTS += tests/functional/test-disk-formats.py

# Ceph RBD on a real single-node cluster started by the test (tests/lib/ceph-cluster.sh).
TESTS += tests/functional/test-rbd.py
