# hw/isa/: the fixed-port (legacy PC) devices: 16550 serial, i8042, RTC/CMOS,
# the ACPI PM block, the debug console port and pvpanic.
noinst_LIBRARIES += hw/isa/libhwisa.a
hw_isa_libhwisa_a_SOURCES = \
	hw/isa/serial.c hw/isa/serial.h \
	hw/isa/i8042.c hw/isa/rtc.c hw/isa/acpi-pm.c hw/isa/debugcon.c \
	hw/isa/pvpanic.c
hw_isa_libhwisa_a_CFLAGS = $(HW_CFLAGS)

check_PROGRAMS += tests/unit/test-serial
TESTS += tests/unit/test-serial
tests_unit_test_serial_SOURCES = tests/unit/test-serial.c tests/unit/check-main.h $(FAKE_MACHINE)
tests_unit_test_serial_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_serial_LDADD = hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-rtc tests/unit/test-i8042 tests/unit/test-acpi-pm
TESTS += tests/unit/test-rtc tests/unit/test-i8042 tests/unit/test-acpi-pm
tests_unit_test_rtc_SOURCES = tests/unit/test-rtc.c tests/unit/check-main.h $(FAKE_MACHINE)
tests_unit_test_rtc_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_rtc_LDADD = hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS) $(UNIT_LIBS)
tests_unit_test_i8042_SOURCES = tests/unit/test-i8042.c tests/unit/check-main.h $(FAKE_MACHINE)
tests_unit_test_i8042_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_i8042_LDADD = hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS) $(UNIT_LIBS)
tests_unit_test_acpi_pm_SOURCES = tests/unit/test-acpi-pm.c tests/unit/check-main.h \
	$(FAKE_MACHINE)
tests_unit_test_acpi_pm_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_acpi_pm_LDADD = hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS) $(UNIT_LIBS)
