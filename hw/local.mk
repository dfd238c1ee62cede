# hw/: the machine and its devices, one folder per group, each built as one
# convenience library by its own local.mk:
#   hw/core/      the machine: KVM, VM, vCPUs, guest memory, I/O bus, IRQs, boot
#   hw/platform/  what firmware and the guest read: ACPI, MP tables, fw_cfg, firmware
#   hw/isa/       fixed-port devices: serial, i8042, RTC, ACPI PM, debugcon
#   hw/pci/       the PCI bus and plain PCI devices: host bridge, IDE, e1000
#   hw/virtio/    virtqueues, the virtio-pci transport and the virtio devices
#   hw/usb/       the xHCI controller and the USB devices
# hw/devices.c is the device registry (the composition root, the only file
# that knows every device); it builds into libhwcore.a.
HW_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)

# Unit tests of device models link their group's library with the fake
# machine (tests/unit/fake-machine.c, exactly hw/device.h) instead of
# hw/core/, so they need no KVM. libhwcore.a is listed for the real guest
# memory and I/O bus only (memory.o, iobus.o): the fake defines every vm_*.
FAKE_MACHINE = tests/unit/fake-machine.c tests/unit/fake-machine.h
FAKE_MACHINE_LIBS = hw/core/libhwcore.a $(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS)

include hw/core/local.mk
include hw/platform/local.mk
include hw/isa/local.mk
include hw/pci/local.mk
include hw/virtio/local.mk
include hw/usb/local.mk

hw_core_libhwcore_a_SOURCES += hw/device.h hw/devices.h hw/devices.c hw/hotplug.c hw/hotplug.h
hw_core_libhwcore_a_SOURCES += hw/cpu-hotplug.c hw/cpu-hotplug.h
hw_core_libhwcore_a_SOURCES += hw/announce.c hw/announce.h
hw_core_libhwcore_a_SOURCES += hw/media.c

# The libraries depend on one another (the machine realizes the devices in
# hw/devices.c; devices call back into the machine): the core is listed again
# at the end so a static link resolves those references in one pass.
HW_ARCHIVES = hw/core/libhwcore.a hw/virtio/libhwvirtio.a hw/platform/libhwplatform.a \
	hw/usb/libhwusb.a hw/pci/libhwpci.a hw/isa/libhwisa.a hw/core/libhwcore.a
HW_LIBS = $(HW_ARCHIVES) $(NET_LIBS) $(BLOCK_LIBS) $(COMMON_LIBS) $(JANSSON_LIBS) \
	$(LIBEVENT_LIBS)

# QOM properties of devices and the memory queries (hw/qom.c).
hw_core_libhwcore_a_SOURCES += hw/qom.c
