# hw/ PCI and virtio: host bridge, virtqueues, virtio-pci transport and the
# virtio devices. Included from the top-level Makefile.am after hw/local.mk.

hw_libhw_a_SOURCES += \
	hw/pci.c hw/pci.h hw/pci-host.c \
	hw/virtqueue.c hw/virtqueue.h \
	hw/virtio-pci.c hw/virtio-pci.h \
	hw/virtio-rng.c hw/virtio-blk.c hw/virtio-net.c
HW_LIBS += $(NET_LIBS) $(BLOCK_LIBS)

check_PROGRAMS += tests/unit/test-virtqueue
TESTS += tests/unit/test-virtqueue
tests_unit_test_virtqueue_SOURCES = tests/unit/test-virtqueue.c hw/virtqueue.c hw/virtqueue.h \
	tests/unit/check-main.h
tests_unit_test_virtqueue_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_virtqueue_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-pci
TESTS += tests/unit/test-pci
tests_unit_test_pci_SOURCES = tests/unit/test-pci.c hw/pci.c hw/pci.h tests/unit/check-main.h
tests_unit_test_pci_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_pci_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-virtio
TESTS += tests/unit/test-virtio
tests_unit_test_virtio_SOURCES = tests/unit/test-virtio.c tests/unit/check-main.h \
	hw/pci.c hw/virtqueue.c hw/virtio-pci.c hw/virtio-pci.h hw/virtio-rng.c hw/virtio-blk.c \
	hw/virtio-net.c $(FAKE_HW)
tests_unit_test_virtio_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_virtio_LDADD = $(NET_LIBS) $(BLOCK_LIBS) $(LIBEVENT_LIBS) $(JANSSON_LIBS) \
	$(UNIT_LIBS)

# Two VMs in one process, for the robustness test.
check_PROGRAMS += tests/functional/two-vms
tests_functional_two_vms_SOURCES = tests/functional/two-vms.c
tests_functional_two_vms_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_functional_two_vms_LDADD = $(HW_LIBS)

TESTS += tests/functional/test-virtio-rng.py tests/functional/test-virtio-blk.py \
	tests/functional/test-virtio-net.py tests/functional/test-virtio-robust.py
