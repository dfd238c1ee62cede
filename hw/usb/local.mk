# hw/usb/: the xHCI host controller and the USB devices (usb-storage with its
# SCSI disk), one convenience library listed in HW_ARCHIVES (hw/local.mk).
noinst_LIBRARIES += hw/usb/libhwusb.a
hw_usb_libhwusb_a_SOURCES = \
	hw/usb/usb.c hw/usb/usb.h \
	hw/usb/scsi.c hw/usb/scsi.h \
	hw/usb/usb-storage.c \
	hw/usb/usb-hid.c \
	hw/usb/xhci-ring.c hw/usb/xhci-ring.h \
	hw/usb/xhci.c hw/usb/xhci.h \
	hw/usb/xhci-pci.c
hw_usb_libhwusb_a_CFLAGS = $(HW_CFLAGS)

TESTS += tests/functional/test-usb-xhci.py tests/functional/test-usb-hotplug.py \
	tests/functional/test-usb-vmstate.py

# The ring walker, the SCSI disk and the BOT state machine over fake guest RAM.
check_PROGRAMS += tests/unit/test-usb
TESTS += tests/unit/test-usb
tests_unit_test_usb_SOURCES = tests/unit/test-usb.c tests/unit/check-main.h \
	hw/usb/xhci-ring.c hw/usb/scsi.c hw/usb/usb.c hw/usb/usb-storage.c hw/usb/usb-hid.c \
	$(FAKE_MACHINE)
tests_unit_test_usb_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_usb_LDADD = $(FAKE_MACHINE_LIBS) $(BLOCK_LIBS) $(UNIT_LIBS)
