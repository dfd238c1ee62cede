# Hardening (issue 14): the path policy, the protocol server's limits, the
# control thread's latency, seccomp. Unit tests of common/ and functional tests.
check_PROGRAMS += tests/unit/test-pathpol
TESTS += tests/unit/test-pathpol
tests_unit_test_pathpol_SOURCES = tests/unit/test-pathpol.c tests/unit/check-main.h
tests_unit_test_pathpol_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_pathpol_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

TESTS += tests/functional/test-security-paths.py
TESTS += tests/functional/test-security-protocol.py
TESTS += tests/functional/test-protocol-stray.py
TESTS += tests/functional/test-security-files.py
TESTS += tests/functional/test-security-lifecycles.py
TESTS += tests/functional/test-security-control.py
TESTS += tests/functional/test-security-seccomp.py
TESTS += tests/functional/test-security-privilege.py
TESTS += tests/functional/test-security-fdset.py

# Fuzz targets (tests/fuzz/): libFuzzer harnesses. The default build links
# each with a replay main (gcc, no libFuzzer) and replays the committed seed
# corpora; tests/fuzz/fuzz.sh builds them with clang -fsanitize=fuzzer and
# runs them (.ci/run: short runs; --slow: long ones).
FUZZ_REPLAYS = tests/fuzz/replay-json-stream tests/fuzz/replay-virtqueue \
	tests/fuzz/replay-qcow2-open tests/fuzz/replay-image-write tests/fuzz/replay-image-formats \
	tests/fuzz/replay-ide \
	tests/fuzz/replay-e1000 tests/fuzz/replay-uart tests/fuzz/replay-rtc tests/fuzz/replay-fwcfg \
	tests/fuzz/replay-xhci tests/fuzz/replay-i8042 tests/fuzz/replay-acpi \
	tests/fuzz/replay-virtio-blk tests/fuzz/replay-virtio-mem tests/fuzz/replay-virtio-net \
	tests/fuzz/replay-virtio-balloon tests/fuzz/replay-virtio-rng tests/fuzz/replay-x86-emul \
	tests/fuzz/replay-vm-config tests/fuzz/replay-qmp tests/fuzz/replay-xbzrle \
	tests/fuzz/replay-nbd-server
check_PROGRAMS += $(FUZZ_REPLAYS)
FUZZ_INPUT = tests/fuzz/fuzz-input.h tests/fuzz/replay-main.c
tests_fuzz_replay_json_stream_SOURCES = tests/fuzz/fuzz-json-stream.c $(FUZZ_INPUT)
tests_fuzz_replay_json_stream_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_json_stream_LDADD = monitor/libmonitor.a $(COMMON_LIBS) $(JANSSON_LIBS) \
	$(LIBEVENT_LIBS)
tests_fuzz_replay_virtqueue_SOURCES = tests/fuzz/fuzz-virtqueue.c $(FUZZ_INPUT) \
	hw/virtio/virtqueue.c
tests_fuzz_replay_virtqueue_CFLAGS = $(AM_CFLAGS)
tests_fuzz_replay_virtqueue_LDADD = $(COMMON_LIBS)
tests_fuzz_replay_qcow2_open_SOURCES = tests/fuzz/fuzz-qcow2-open.c $(FUZZ_INPUT)
tests_fuzz_replay_qcow2_open_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_qcow2_open_LDADD = $(BLOCK_LIBS)
tests_fuzz_replay_image_write_SOURCES = tests/fuzz/fuzz-image-write.c $(FUZZ_INPUT)
tests_fuzz_replay_image_write_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_image_write_LDADD = $(BLOCK_LIBS)
tests_fuzz_replay_vm_config_SOURCES = tests/fuzz/fuzz-vm-config.c $(FUZZ_INPUT)
tests_fuzz_replay_vm_config_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_vm_config_LDADD = $(HW_LIBS)
# The daemon's commands with the VM double, as test-monitor-dispatch links them.
tests_fuzz_replay_xbzrle_SOURCES = tests/fuzz/fuzz-xbzrle.c $(FUZZ_INPUT) daemon/xbzrle.c
tests_fuzz_replay_xbzrle_CFLAGS = $(AM_CFLAGS)
tests_fuzz_replay_xbzrle_LDADD = $(COMMON_LIBS)
tests_fuzz_replay_nbd_server_SOURCES = tests/fuzz/fuzz-nbd-server.c $(FUZZ_INPUT)
tests_fuzz_replay_nbd_server_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_nbd_server_LDADD = daemon/libdaemon.a $(BLOCK_LIBS) $(COMMON_LIBS) $(JANSSON_LIBS) \
	$(LIBSECCOMP_LIBS)
tests_fuzz_replay_qmp_SOURCES = tests/fuzz/fuzz-qmp.c $(FUZZ_INPUT) tests/unit/monitor-vm-double.c \
	tests/unit/registry-hooks.h
tests_fuzz_replay_qmp_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_qmp_LDADD = daemon/libdaemon.a monitor/libmonitor.a $(BLOCK_LIBS) $(NET_LIBS) \
	$(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS) $(LIBSECCOMP_LIBS) $(GNUTLS_LIBS)
tests_fuzz_replay_image_formats_SOURCES = tests/fuzz/fuzz-image-formats.c $(FUZZ_INPUT)
tests_fuzz_replay_image_formats_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_image_formats_LDADD = $(BLOCK_LIBS)
# Device targets: the fake machine and the device's group library, as its unit test.
tests_fuzz_replay_ide_SOURCES = tests/fuzz/fuzz-ide.c $(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_ide_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_ide_LDADD = hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) $(BLOCK_LIBS)
tests_fuzz_replay_e1000_SOURCES = tests/fuzz/fuzz-e1000.c $(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_e1000_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_e1000_LDADD = hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) $(NET_LIBS) $(ZLIB_LIBS)
tests_fuzz_replay_uart_SOURCES = tests/fuzz/fuzz-uart.c tests/fuzz/fuzz-pio.h $(FUZZ_INPUT) \
	$(FAKE_MACHINE)
tests_fuzz_replay_uart_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_uart_LDADD = hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS)
tests_fuzz_replay_rtc_SOURCES = tests/fuzz/fuzz-rtc.c tests/fuzz/fuzz-pio.h $(FUZZ_INPUT) \
	$(FAKE_MACHINE)
tests_fuzz_replay_rtc_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_rtc_LDADD = hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS)
tests_fuzz_replay_fwcfg_SOURCES = tests/fuzz/fuzz-fwcfg.c $(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_fwcfg_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_fwcfg_LDADD = hw/platform/libhwplatform.a $(FAKE_MACHINE_LIBS)
tests_fuzz_replay_i8042_SOURCES = tests/fuzz/fuzz-i8042.c tests/fuzz/fuzz-pio.h $(FUZZ_INPUT) \
	$(FAKE_MACHINE)
tests_fuzz_replay_i8042_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_i8042_LDADD = hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS)
tests_fuzz_replay_acpi_SOURCES = tests/fuzz/fuzz-acpi.c $(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_acpi_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_acpi_LDADD = hw/platform/libhwplatform.a hw/isa/libhwisa.a $(FAKE_MACHINE_LIBS)
tests_fuzz_replay_virtio_blk_SOURCES = tests/fuzz/fuzz-virtio-blk.c tests/fuzz/fuzz-virtio.h \
	tests/fuzz/fuzz-disk.h \
	$(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_virtio_blk_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_virtio_blk_LDADD = hw/virtio/libhwvirtio.a hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) \
	$(BLOCK_LIBS)
tests_fuzz_replay_virtio_mem_SOURCES = tests/fuzz/fuzz-virtio-mem.c tests/fuzz/fuzz-virtio.h \
	$(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_virtio_mem_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_virtio_mem_LDADD = hw/virtio/libhwvirtio.a hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) \
	$(BLOCK_LIBS)
tests_fuzz_replay_virtio_net_SOURCES = tests/fuzz/fuzz-virtio-net.c tests/fuzz/fuzz-virtio.h \
	$(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_virtio_net_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_virtio_net_LDADD = hw/virtio/libhwvirtio.a hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS) \
	$(NET_LIBS)
tests_fuzz_replay_virtio_balloon_SOURCES = tests/fuzz/fuzz-virtio-balloon.c \
	tests/fuzz/fuzz-virtio.h $(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_virtio_balloon_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_virtio_balloon_LDADD = hw/virtio/libhwvirtio.a hw/pci/libhwpci.a \
	$(FAKE_MACHINE_LIBS)
tests_fuzz_replay_virtio_rng_SOURCES = tests/fuzz/fuzz-virtio-rng.c tests/fuzz/fuzz-virtio.h \
	$(FUZZ_INPUT) $(FAKE_MACHINE)
tests_fuzz_replay_virtio_rng_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_fuzz_replay_virtio_rng_LDADD = hw/virtio/libhwvirtio.a hw/pci/libhwpci.a $(FAKE_MACHINE_LIBS)
tests_fuzz_replay_x86_emul_SOURCES = tests/fuzz/fuzz-x86-emul.c hw/core/x86-emul.c \
	tests/unit/fake-cpu.h $(FUZZ_INPUT)
tests_fuzz_replay_x86_emul_CFLAGS = $(AM_CFLAGS)
tests_fuzz_replay_x86_emul_LDADD = $(COMMON_LIBS)
tests_fuzz_replay_xhci_SOURCES = tests/fuzz/fuzz-xhci.c tests/fuzz/fuzz-disk.h $(FUZZ_INPUT) \
	$(FAKE_MACHINE)
tests_fuzz_replay_xhci_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_xhci_LDADD = hw/usb/libhwusb.a $(FAKE_MACHINE_LIBS) $(BLOCK_LIBS)
TESTS += tests/fuzz/replay.sh tests/fuzz/fuzz-long.sh
EXTRA_DIST += tests/fuzz
TESTS += tests/functional/test-security-unit.sh

check_PROGRAMS += tests/unit/test-sandbox
TESTS += tests/unit/test-sandbox
tests_unit_test_sandbox_SOURCES = tests/unit/test-sandbox.c tests/unit/check-main.h
tests_unit_test_sandbox_CFLAGS = $(UNIT_CFLAGS) $(LIBSECCOMP_CFLAGS)
tests_unit_test_sandbox_LDADD = daemon/libdaemon.a $(COMMON_LIBS) $(LIBSECCOMP_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-fdset
TESTS += tests/unit/test-fdset
tests_unit_test_fdset_SOURCES = tests/unit/test-fdset.c tests/unit/check-main.h
tests_unit_test_fdset_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_fdset_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)
