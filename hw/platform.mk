# hw/platform.mk: ACPI and MP tables and the legacy platform devices (serial,
# i8042, RTC, ACPI PM), included from hw/local.mk.

hw_libhw_a_SOURCES += \
	hw/aml.c hw/aml.h \
	hw/acpi.c hw/acpi.h \
	hw/mptable.c hw/mptable.h

check_PROGRAMS += tests/unit/test-acpi tests/unit/test-mptable
TESTS += tests/unit/test-acpi tests/unit/test-mptable
tests_unit_test_acpi_SOURCES = tests/unit/test-acpi.c tests/unit/check-main.h \
	hw/aml.c hw/acpi.c
tests_unit_test_acpi_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_acpi_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)
tests_unit_test_mptable_SOURCES = tests/unit/test-mptable.c tests/unit/check-main.h \
	hw/mptable.c hw/acpi.c hw/aml.c
tests_unit_test_mptable_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_mptable_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)
