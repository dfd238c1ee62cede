# hw/ PCI and virtio: host bridge, virtqueues, virtio-pci transport and the
# virtio devices. Included from the top-level Makefile.am after hw/local.mk.

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
