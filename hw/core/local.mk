# hw/core/: the machine (KVM, the VM object, vCPUs, guest memory, the I/O bus,
# IRQs and MSIs, CPUID, boot protocols, the E820 map, VM definitions).
noinst_LIBRARIES += hw/core/libhwcore.a
hw_core_libhwcore_a_SOURCES = \
	hw/core/memory.h hw/core/iobus.h hw/core/vm-int.h \
	hw/core/kvm.c hw/core/kvm.h \
	hw/core/vm.c \
	hw/core/input.c \
	hw/core/vm-config.c \
	hw/core/vm-config-mem.c hw/core/vm-config-mem.h \
	hw/core/vcpu.c hw/core/vcpu.h \
	hw/core/x86-emul.c hw/core/x86-emul.h \
	hw/core/memory.c \
	hw/core/iobus.c \
	hw/core/irq.c \
	hw/core/cpuid.c hw/core/cpuid.h \
	hw/core/boot.c hw/core/boot.h \
	hw/core/e820.c hw/core/e820.h \
	hw/core/vcpu-state.c hw/core/vcpu-state.h \
	hw/core/pagewalk.c hw/core/pagewalk.h \
	hw/core/vm-dump.c \
	hw/core/vm-save.c \
	hw/core/vm-migrate.c \
	hw/core/uffd.c hw/core/uffd.h
hw_core_libhwcore_a_CFLAGS = $(HW_CFLAGS)

# Unit tests of hw/core/.
check_PROGRAMS += tests/unit/test-iobus tests/unit/test-cpuid tests/unit/test-vmconfig \
	tests/unit/test-boot tests/unit/test-pagewalk
TESTS += tests/unit/test-iobus tests/unit/test-cpuid tests/unit/test-vmconfig \
	tests/unit/test-boot tests/unit/test-pagewalk
tests_unit_test_iobus_SOURCES = tests/unit/test-iobus.c tests/unit/check-main.h
tests_unit_test_iobus_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_iobus_LDADD = $(HW_LIBS) $(UNIT_LIBS)
tests_unit_test_cpuid_SOURCES = tests/unit/test-cpuid.c tests/unit/check-main.h
tests_unit_test_cpuid_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_cpuid_LDADD = $(HW_LIBS) $(UNIT_LIBS)
tests_unit_test_vmconfig_SOURCES = tests/unit/test-vmconfig.c tests/unit/strdup-fail.c \
	tests/unit/strdup-fail.h tests/unit/check-main.h
tests_unit_test_vmconfig_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_vmconfig_LDFLAGS = $(AM_LDFLAGS) -Wl,--wrap=strdup
tests_unit_test_vmconfig_LDADD = $(HW_LIBS) $(UNIT_LIBS)
tests_unit_test_boot_SOURCES = tests/unit/test-boot.c tests/unit/check-main.h
tests_unit_test_boot_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_boot_LDADD = $(HW_LIBS) $(UNIT_LIBS)
tests_unit_test_pagewalk_SOURCES = tests/unit/test-pagewalk.c tests/unit/check-main.h
tests_unit_test_pagewalk_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_pagewalk_LDADD = $(HW_LIBS) $(UNIT_LIBS)

# The host-emulator work-arounds over a fake CPU.
check_PROGRAMS += tests/unit/test-x86-emul
TESTS += tests/unit/test-x86-emul
tests_unit_test_x86_emul_SOURCES = tests/unit/test-x86-emul.c tests/unit/check-main.h \
	tests/unit/fake-cpu.h hw/core/x86-emul.c hw/core/x86-emul.h
tests_unit_test_x86_emul_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_x86_emul_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

# The Linux guest kit and the boots of a stock Debian kernel.
TESTS += tests/functional/test-linux-boot.py tests/functional/test-vm-ram.py
EXTRA_DIST += tests/guests/linux/build-kit.sh tests/guests/linux/init

# Two VMs in one process, for the robustness test.
check_PROGRAMS += tests/functional/two-vms
tests_functional_two_vms_SOURCES = tests/functional/two-vms.c
tests_functional_two_vms_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_functional_two_vms_LDADD = $(HW_LIBS)
