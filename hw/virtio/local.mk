# hw/virtio/: virtqueues, the virtio-pci transport and the virtio device
# models (blk, net, rng, balloon, mem).
noinst_LIBRARIES += hw/virtio/libhwvirtio.a
hw_virtio_libhwvirtio_a_SOURCES = \
	hw/virtio/virtqueue.c hw/virtio/virtqueue.h \
	hw/virtio/virtio.h hw/virtio/virtio-pci.c hw/virtio/virtio-pci.h \
	hw/virtio/rng.c hw/virtio/blk.c hw/virtio/net.c hw/virtio/balloon.c hw/virtio/mem.c
hw_virtio_libhwvirtio_a_CFLAGS = $(HW_CFLAGS)

check_PROGRAMS += tests/unit/test-virtqueue
TESTS += tests/unit/test-virtqueue
tests_unit_test_virtqueue_SOURCES = tests/unit/test-virtqueue.c hw/virtio/virtqueue.c \
	hw/virtio/virtqueue.h tests/unit/check-main.h
tests_unit_test_virtqueue_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_virtqueue_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-virtio
TESTS += tests/unit/test-virtio
tests_unit_test_virtio_SOURCES = tests/unit/test-virtio.c tests/unit/check-main.h $(FAKE_MACHINE)
tests_unit_test_virtio_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_virtio_LDADD = hw/virtio/libhwvirtio.a hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) \
	$(NET_LIBS) $(BLOCK_LIBS) $(UNIT_LIBS)

TESTS += tests/functional/test-virtio-rng.py tests/functional/test-virtio-blk.py \
	tests/functional/test-virtio-net.py tests/functional/test-virtio-robust.py

# I/O limits (block_set_io_throttle) against QEMU 7.2's answers, recorded by
# make-golden-io-throttle.py, and a guest reading at its disk's limit.
TESTS += tests/functional/test-io-throttle.py
EXTRA_DIST += tests/functional/make-golden-io-throttle.py tests/functional/golden/io-throttle.json

# virtio-mem and the balloon's statistics against QEMU 7.2 (golden traces in
# tests/functional/memory/, recorded by its record-qemu.py).
TESTS += tests/functional/test-virtio-mem.py tests/functional/test-balloon-stats.py
