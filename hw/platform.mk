# hw/platform.mk: ACPI and MP tables and the legacy platform devices (serial,
# i8042, RTC, ACPI PM), included from hw/local.mk.

hw_libhw_a_SOURCES += \
	hw/aml.c hw/aml.h \
	hw/acpi.c hw/acpi.h \
	hw/mptable.c hw/mptable.h \
	hw/serial.c hw/serial.h \
	hw/acpi-pm.c hw/i8042.c hw/rtc.c hw/platform-tables.c hw/platform.h \
	hw/platform/acpi-hotplug.c hw/platform/acpi-hotplug.h

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

check_PROGRAMS += tests/unit/test-serial
TESTS += tests/unit/test-serial
tests_unit_test_serial_SOURCES = tests/unit/test-serial.c tests/unit/check-main.h \
	hw/serial.c $(FAKE_HW)
tests_unit_test_serial_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_serial_LDADD = $(COMMON_LIBS) $(LIBEVENT_LIBS) $(JANSSON_LIBS) $(UNIT_LIBS)

PLATFORM_DEV_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
PLATFORM_DEV_LIBS = $(COMMON_LIBS) $(JANSSON_LIBS) $(UNIT_LIBS)
check_PROGRAMS += tests/unit/test-rtc tests/unit/test-i8042 tests/unit/test-acpi-pm
TESTS += tests/unit/test-rtc tests/unit/test-i8042 tests/unit/test-acpi-pm
tests_unit_test_rtc_SOURCES = tests/unit/test-rtc.c tests/unit/check-main.h hw/rtc.c $(FAKE_HW)
tests_unit_test_rtc_CFLAGS = $(PLATFORM_DEV_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_rtc_LDADD = $(PLATFORM_DEV_LIBS) $(LIBEVENT_LIBS)
tests_unit_test_i8042_SOURCES = tests/unit/test-i8042.c tests/unit/check-main.h hw/i8042.c \
	$(FAKE_HW)
tests_unit_test_i8042_CFLAGS = $(PLATFORM_DEV_CFLAGS)
tests_unit_test_i8042_LDADD = $(PLATFORM_DEV_LIBS)
tests_unit_test_acpi_pm_SOURCES = tests/unit/test-acpi-pm.c tests/unit/check-main.h \
	hw/acpi-pm.c $(FAKE_HW)
tests_unit_test_acpi_pm_CFLAGS = $(PLATFORM_DEV_CFLAGS)
tests_unit_test_acpi_pm_LDADD = $(PLATFORM_DEV_LIBS)
check_PROGRAMS += tests/unit/test-acpi-hotplug
TESTS += tests/unit/test-acpi-hotplug
tests_unit_test_acpi_hotplug_SOURCES = tests/unit/test-acpi-hotplug.c tests/unit/check-main.h \
	hw/platform/acpi-hotplug.c hw/acpi-pm.c hw/acpi.c hw/aml.c $(FAKE_HW)
tests_unit_test_acpi_hotplug_CFLAGS = $(PLATFORM_DEV_CFLAGS)
tests_unit_test_acpi_hotplug_LDADD = $(PLATFORM_DEV_LIBS)

# The Linux guest kit and the boots of a stock Debian kernel.
TESTS += tests/functional/test-linux-boot.py
EXTRA_DIST += tests/guests/linux/build-kit.sh tests/guests/linux/init
