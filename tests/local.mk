# tests/: the harness and the tests of common/. Each module's fragment adds
# its own unit tests (tests/unit/test-<module>*.c) and functional tests.

UNIT_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
UNIT_LIBS = $(CHECK_LIBS)

check_PROGRAMS += tests/unit/test-error tests/unit/test-parse tests/unit/test-iov tests/unit/test-log
TESTS += tests/unit/test-error tests/unit/test-parse tests/unit/test-iov tests/unit/test-log
tests_unit_test_error_SOURCES = tests/unit/test-error.c tests/unit/check-main.h
tests_unit_test_error_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_error_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)
tests_unit_test_parse_SOURCES = tests/unit/test-parse.c tests/unit/check-main.h
tests_unit_test_parse_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_parse_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)
tests_unit_test_iov_SOURCES = tests/unit/test-iov.c tests/unit/check-main.h
tests_unit_test_iov_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_iov_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)
tests_unit_test_log_SOURCES = tests/unit/test-log.c tests/unit/check-main.h
tests_unit_test_log_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_log_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

# Functional tests: scripts run from the source tree against the built
# binaries; tests/lib holds the shared harness.
TESTS += tests/functional/test-binaries.sh tests/functional/test-harness.py

# The include rules between layers (scripts/check-layering.sh, also run by
# .ci/run), and a proof that it fails on each forbidden include.
TESTS += tests/functional/test-check-layering.sh
EXTRA_DIST += scripts/check-layering.sh
EXTRA_DIST += tests/lib/vmmdtest.py tests/lib/harness.sh tests/functional

check_PROGRAMS += tests/unit/test-vmstate
TESTS += tests/unit/test-vmstate
tests_unit_test_vmstate_SOURCES = tests/unit/test-vmstate.c tests/unit/check-main.h
tests_unit_test_vmstate_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_vmstate_LDADD = $(COMMON_LIBS) $(UNIT_LIBS)

# Hotplug (issue 13): QMP against QEMU 7.2's answers, the guest side, vmctl.
TESTS += tests/functional/test-hotplug-qmp.py tests/functional/test-hotplug-guest.py \
	tests/functional/test-hotplug-vmctl.py tests/functional/test-balloon.py
TESTS += tests/functional/test-hotplug-cpu.py
EXTRA_DIST += tests/functional/hotplug/record-qemu-cpu.py tests/functional/hotplug/qemu-7.2-cpu.json
