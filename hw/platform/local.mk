# hw/platform/: what firmware and the guest read: the AML builder, ACPI and MP
# tables, the platform-table device, fw_cfg and firmware (SeaBIOS) boot.
noinst_LIBRARIES += hw/platform/libhwplatform.a
hw_platform_libhwplatform_a_SOURCES = \
	hw/platform/aml.c hw/platform/aml.h \
	hw/platform/acpi.c hw/platform/acpi.h hw/platform/acpi-srat.c \
	hw/platform/mptable.c hw/platform/mptable.h \
	hw/platform/platform-tables.c hw/platform/platform.h hw/platform/pci-acpi.c \
	hw/platform/fw-cfg.c hw/platform/fw-cfg.h \
	hw/platform/firmware.c hw/platform/firmware.h \
	hw/platform/acpi-hotplug.c hw/platform/acpi-hotplug.h \
	hw/platform/acpi-cpuhp.c hw/platform/acpi-cpuhp.h \
	hw/platform/acpi-cpuhp-aml.c
hw_platform_libhwplatform_a_CFLAGS = $(HW_CFLAGS)

check_PROGRAMS += tests/unit/test-acpi tests/unit/test-mptable
TESTS += tests/unit/test-acpi tests/unit/test-mptable
tests_unit_test_acpi_SOURCES = tests/unit/test-acpi.c tests/unit/check-main.h \
	hw/platform/aml.c hw/platform/acpi.c hw/platform/acpi-cpuhp-aml.c
tests_unit_test_acpi_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_acpi_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)
tests_unit_test_mptable_SOURCES = tests/unit/test-mptable.c tests/unit/check-main.h \
	hw/platform/mptable.c hw/platform/acpi.c hw/platform/aml.c hw/platform/acpi-cpuhp-aml.c
tests_unit_test_mptable_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_mptable_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-acpi-hotplug
TESTS += tests/unit/test-acpi-hotplug
tests_unit_test_acpi_hotplug_SOURCES = tests/unit/test-acpi-hotplug.c tests/unit/check-main.h \
	$(FAKE_MACHINE)
tests_unit_test_acpi_hotplug_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_acpi_hotplug_LDADD = hw/platform/libhwplatform.a hw/isa/libhwisa.a \
	$(FAKE_MACHINE_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-acpi-cpuhp
TESTS += tests/unit/test-acpi-cpuhp
tests_unit_test_acpi_cpuhp_SOURCES = tests/unit/test-acpi-cpuhp.c tests/unit/check-main.h \
	$(FAKE_MACHINE)
tests_unit_test_acpi_cpuhp_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_acpi_cpuhp_LDADD = hw/platform/libhwplatform.a hw/isa/libhwisa.a \
	$(FAKE_MACHINE_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-fwcfg
TESTS += tests/unit/test-fwcfg
tests_unit_test_fwcfg_SOURCES = tests/unit/test-fwcfg.c $(FAKE_MACHINE)
tests_unit_test_fwcfg_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_fwcfg_LDADD = hw/platform/libhwplatform.a $(FAKE_MACHINE_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-firmware
TESTS += tests/unit/test-firmware
tests_unit_test_firmware_SOURCES = tests/unit/test-firmware.c $(FAKE_MACHINE)
tests_unit_test_firmware_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_firmware_LDADD = hw/platform/libhwplatform.a hw/pci/libhwpci.a \
	$(FAKE_MACHINE_LIBS) $(BLOCK_LIBS) $(UNIT_LIBS)

# Functional tests: SeaBIOS boot paths and iPXE option ROMs under vmmd
# (skip until vmmd can run a VM in the foreground); the benchmark is run by hand.
TESTS += tests/functional/test-firmware-boot.py tests/functional/test-firmware-ipxe.py
EXTRA_DIST += tests/bench/firmware.sh

# The SRAT builder (memory hotplug), part of the ACPI tables the unit tests build.
tests_unit_test_acpi_SOURCES += hw/platform/acpi-srat.c
tests_unit_test_mptable_SOURCES += hw/platform/acpi-srat.c
