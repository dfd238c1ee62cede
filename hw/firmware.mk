# hw/firmware.mk: firmware boot and the legacy PC devices (fw_cfg, IDE, e1000),
# included from hw/local.mk. Unit tests link the device model with a fake
# machine (tests/unit/fake-hw.c) so they need no KVM.

FAKE_HW = tests/unit/fake-hw.c tests/unit/fake-hw.h
FAKE_VM = tests/unit/fake-vm.c tests/unit/fake-vm.h hw/pci.c

hw_libhw_a_SOURCES += \
	hw/fw-cfg.c hw/fw-cfg.h \
	hw/firmware.c hw/firmware.h \
	hw/ide.c hw/ide.h \
	hw/e1000.c hw/e1000.h

check_PROGRAMS += tests/unit/test-fwcfg
TESTS += tests/unit/test-fwcfg
tests_unit_test_fwcfg_SOURCES = tests/unit/test-fwcfg.c hw/fw-cfg.c hw/fw-cfg.h $(FAKE_HW)
tests_unit_test_fwcfg_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_fwcfg_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-ide
TESTS += tests/unit/test-ide
tests_unit_test_ide_SOURCES = tests/unit/test-ide.c hw/ide.c hw/ide.h $(FAKE_HW) $(FAKE_VM)
tests_unit_test_ide_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_ide_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-e1000
TESTS += tests/unit/test-e1000
tests_unit_test_e1000_SOURCES = tests/unit/test-e1000.c hw/e1000.c hw/e1000.h $(FAKE_HW) \
	$(FAKE_VM)
tests_unit_test_e1000_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(ZLIB_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_e1000_LDADD = $(NET_LIBS) $(COMMON_LIBS) $(JANSSON_LIBS) $(ZLIB_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-firmware
TESTS += tests/unit/test-firmware
tests_unit_test_firmware_SOURCES = tests/unit/test-firmware.c hw/firmware.c hw/firmware.h \
	hw/fw-cfg.c hw/acpi.c hw/aml.c hw/ide.c $(FAKE_HW) $(FAKE_VM)
tests_unit_test_firmware_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_firmware_LDADD = $(BLOCK_LIBS) $(UNIT_LIBS)

# Functional tests: SeaBIOS boot paths and iPXE option ROMs under vmmd
# (skip until vmmd can run a VM in the foreground); the benchmark is run by hand.
TESTS += tests/functional/test-firmware-boot.py tests/functional/test-firmware-ipxe.py
EXTRA_DIST += tests/bench/firmware.sh
