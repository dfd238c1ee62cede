# hw/pci/: the PCI bus (config space, BARs, INTx/MSI-X), the host bridge and
# the plain PCI devices (IDE, e1000).
noinst_LIBRARIES += hw/pci/libhwpci.a
hw_pci_libhwpci_a_SOURCES = \
	hw/pci/pci.c hw/pci/pci.h hw/pci/pci-host.c \
	hw/pci/ide.c hw/pci/ide.h \
	hw/pci/e1000.c hw/pci/e1000.h
hw_pci_libhwpci_a_CFLAGS = $(HW_CFLAGS)

check_PROGRAMS += tests/unit/test-pci
TESTS += tests/unit/test-pci
tests_unit_test_pci_SOURCES = tests/unit/test-pci.c tests/unit/check-main.h $(FAKE_MACHINE)
tests_unit_test_pci_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_pci_LDADD = hw/pci/libhwpci.a hw/platform/libhwplatform.a $(FAKE_MACHINE_LIBS) \
	$(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-ide
TESTS += tests/unit/test-ide
tests_unit_test_ide_SOURCES = tests/unit/test-ide.c $(FAKE_MACHINE)
tests_unit_test_ide_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_ide_LDADD = hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) $(BLOCK_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-e1000
TESTS += tests/unit/test-e1000
tests_unit_test_e1000_SOURCES = tests/unit/test-e1000.c $(FAKE_MACHINE)
tests_unit_test_e1000_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(ZLIB_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_e1000_LDADD = hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) $(NET_LIBS) $(ZLIB_LIBS) \
	$(UNIT_LIBS)
