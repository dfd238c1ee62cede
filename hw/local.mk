# hw/: the machine (KVM, vCPUs, memory, I/O bus, boot) and the device models,
# built as one convenience library. Device model files add themselves to
# hw_libhw_a_SOURCES and to the registry in hw/devices.c.
noinst_LIBRARIES += hw/libhw.a
hw_libhw_a_SOURCES = \
	hw/machine.h hw/memory.h hw/iobus.h hw/irq.h \
	hw/vm-int.h hw/devices.h \
	hw/kvm.c hw/kvm.h \
	hw/vm.c \
	hw/vm-config.c \
	hw/vcpu.c hw/vcpu.h \
	hw/memory.c \
	hw/iobus.c \
	hw/irq.c \
	hw/cpuid.c hw/cpuid.h \
	hw/boot.c hw/boot.h \
	hw/e820.c hw/e820.h \
	hw/devices.c \
	hw/debugcon.c
hw_libhw_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
HW_LIBS = hw/libhw.a $(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS)

# Unit tests of hw/.
check_PROGRAMS += tests/unit/test-iobus tests/unit/test-cpuid tests/unit/test-vmconfig \
	tests/unit/test-boot
TESTS += tests/unit/test-iobus tests/unit/test-cpuid tests/unit/test-vmconfig \
	tests/unit/test-boot
tests_unit_test_iobus_SOURCES = tests/unit/test-iobus.c tests/unit/check-main.h
tests_unit_test_iobus_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_iobus_LDADD = $(HW_LIBS) $(UNIT_LIBS)
tests_unit_test_cpuid_SOURCES = tests/unit/test-cpuid.c tests/unit/check-main.h
tests_unit_test_cpuid_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_cpuid_LDADD = $(HW_LIBS) $(UNIT_LIBS)
tests_unit_test_vmconfig_SOURCES = tests/unit/test-vmconfig.c tests/unit/check-main.h
tests_unit_test_vmconfig_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_vmconfig_LDADD = $(HW_LIBS) $(UNIT_LIBS)
tests_unit_test_boot_SOURCES = tests/unit/test-boot.c tests/unit/check-main.h
tests_unit_test_boot_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_boot_LDADD = $(HW_LIBS) $(UNIT_LIBS)

include hw/firmware.mk
include hw/platform.mk
