# daemon/: the vmmd program. The settings, registry and systemd code build as
# a convenience library so the unit tests link exactly it.
noinst_LIBRARIES += daemon/libdaemon.a
daemon_libdaemon_a_SOURCES = \
	daemon/config.c daemon/settings.h \
	daemon/qmp.h daemon/qmp-vm.c daemon/qmp-run.c daemon/qmp-input.c daemon/qmp-vmstate.c \
	daemon/qmp-info.c daemon/qmp-hmp.c daemon/qmp-job.c \
	daemon/qmp-blockjob.c \
	daemon/qmp-nbd.c daemon/nbd-server.c daemon/nbd-server.h \
	daemon/jobs.c daemon/jobs.h \
	daemon/blockjob.c daemon/blockjob.h \
	daemon/snapshot.c daemon/snapshot.h \
	daemon/qmp-hotplug.c \
	daemon/qmp-media.c \
	daemon/qmp-migration.c daemon/migration.c daemon/migration.h \
	daemon/xbzrle.c daemon/xbzrle.h \
	daemon/upgrade.c daemon/upgrade.h \
	daemon/keep.c daemon/keep.h \
	daemon/qmp-dump.c \
	daemon/hmp.h daemon/hmp-memory.c daemon/hmp-block.c \
	daemon/qmp-memory.c \
	daemon/tls.c daemon/tls.h \
	daemon/authz.c daemon/authz.h \
	daemon/registry.c daemon/registry.h \
	daemon/worker.c daemon/worker.h \
	daemon/sandbox.c daemon/sandbox.h \
	daemon/privilege.c daemon/privilege.h \
	daemon/control-sched.c daemon/control-sched.h \
	daemon/systemd.c daemon/systemd.h
daemon_libdaemon_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS) $(LIBSYSTEMD_CFLAGS) \
	$(LIBSECCOMP_CFLAGS) $(GNUTLS_CFLAGS)

sbin_PROGRAMS += vmmd
vmmd_SOURCES = daemon/main.c daemon/run-vm.c daemon/run-vm.h
vmmd_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS) $(LIBSYSTEMD_CFLAGS)
vmmd_LDADD = monitor/libmonitor.a daemon/libdaemon.a $(HW_LIBS) \
	$(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS) $(LIBSYSTEMD_LIBS) $(LIBSECCOMP_LIBS) $(GNUTLS_LIBS)

# Two guests of the daemon's own tests, built like tests/guests/ (its GUEST_LINK).
DAEMON_TEST_GUESTS = tests/functional/guest-idle.elf tests/functional/guest-echo.elf \
	tests/functional/guest-acpi.elf
noinst_DATA += $(DAEMON_TEST_GUESTS)
CLEANFILES += $(DAEMON_TEST_GUESTS)
EXTRA_DIST += tests/functional/guest-idle.c tests/functional/guest-echo.c \
	tests/functional/guest-acpi.c
tests/functional/guest-idle.elf: $(srcdir)/tests/functional/guest-idle.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/functional
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/functional/guest-idle.c
tests/functional/guest-echo.elf: $(srcdir)/tests/functional/guest-echo.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/functional
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/functional/guest-echo.c
tests/functional/guest-acpi.elf: $(srcdir)/tests/functional/guest-acpi.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/functional
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/functional/guest-acpi.c

# Functional tests of the daemon, the protocol, vmctl and systemd integration.
TESTS += \
	tests/functional/test-control-path.py \
	tests/functional/test-daemon-config.py \
	tests/functional/test-daemon-vms.py \
	tests/functional/test-jobs-qmp.py \
	tests/functional/test-jobs-golden.py \
	tests/functional/test-jobs-live.py \
	tests/functional/test-nbd-server.py \
	tests/functional/test-blockdev-snapshot-internal.py \
	tests/functional/test-backup.py \
	tests/functional/test-vmctl-disk.py \
	tests/functional/test-protocol-framing.py \
	tests/functional/test-protocol-limits.py \
	tests/functional/test-protocol-qmp-library.py \
	tests/functional/test-qmp-conformance.py tests/functional/test-qmp-blockstats.py \
	tests/functional/test-systemd-activation.py \
	tests/functional/test-vmctl-basic.py \
	tests/functional/test-vmctl-running.py tests/functional/test-runstate-reset.py

# The daemon's commands through the monitor and the registry, with a test
# double of the VM object (tests/unit/monitor-vm-double.c) instead of hw/.
check_PROGRAMS += tests/unit/test-monitor-dispatch
TESTS += tests/unit/test-monitor-dispatch
tests_unit_test_monitor_dispatch_SOURCES = tests/unit/test-monitor-dispatch.c \
	tests/unit/monitor-vm-double.c tests/unit/registry-hooks.h tests/unit/strdup-fail.c \
	tests/unit/strdup-fail.h tests/unit/check-main.h
tests_unit_test_monitor_dispatch_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_monitor_dispatch_LDFLAGS = $(AM_LDFLAGS) -Wl,--wrap=strdup
tests_unit_test_monitor_dispatch_LDADD = daemon/libdaemon.a monitor/libmonitor.a $(BLOCK_LIBS) $(NET_LIBS) \
	$(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS) $(LIBSECCOMP_LIBS) $(GNUTLS_LIBS) $(UNIT_LIBS)

# The fds systemd passes (daemon/systemd.c), out of memory included.
check_PROGRAMS += tests/unit/test-systemd-fds
TESTS += tests/unit/test-systemd-fds
tests_unit_test_systemd_fds_SOURCES = tests/unit/test-systemd-fds.c tests/unit/strdup-fail.c \
	tests/unit/strdup-fail.h tests/unit/check-main.h
tests_unit_test_systemd_fds_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_systemd_fds_LDFLAGS = $(AM_LDFLAGS) -Wl,--wrap=strdup
tests_unit_test_systemd_fds_LDADD = daemon/libdaemon.a $(COMMON_LIBS) $(LIBSYSTEMD_LIBS) $(LIBEVENT_LIBS) \
	$(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-config
TESTS += tests/unit/test-config
tests_unit_test_config_SOURCES = tests/unit/test-config.c tests/unit/check-main.h
tests_unit_test_config_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_config_LDADD = daemon/libdaemon.a $(COMMON_LIBS) $(LIBSECCOMP_LIBS) $(GNUTLS_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-authz
TESTS += tests/unit/test-authz
tests_unit_test_authz_SOURCES = tests/unit/test-authz.c tests/unit/check-main.h
tests_unit_test_authz_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_authz_LDADD = daemon/libdaemon.a $(COMMON_LIBS) $(JANSSON_LIBS) $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-xbzrle
TESTS += tests/unit/test-xbzrle
tests_unit_test_xbzrle_SOURCES = tests/unit/test-xbzrle.c tests/unit/check-main.h
tests_unit_test_xbzrle_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_xbzrle_LDADD = daemon/libdaemon.a $(UNIT_LIBS)

check_PROGRAMS += tests/unit/test-jobs
TESTS += tests/unit/test-jobs
tests_unit_test_jobs_SOURCES = tests/unit/test-jobs.c tests/unit/check-main.h
tests_unit_test_jobs_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_jobs_LDADD = daemon/libdaemon.a $(COMMON_LIBS) $(JANSSON_LIBS) \
	$(LIBEVENT_LIBS) $(LIBSECCOMP_LIBS) $(GNUTLS_LIBS) $(UNIT_LIBS)
EXTRA_DIST += tests/functional/make-golden-nbd-server.py tests/functional/golden/nbd-server.json \
	tests/functional/make-golden-blockdev-snapshot-internal.py \
	tests/functional/golden/blockdev-snapshot-internal.json
EXTRA_DIST += tests/jobs/scenarios.json tests/jobs/qmptrace.py tests/jobs/record-qemu.py \
	tests/jobs/golden/commit-active-cancel.json \
	tests/jobs/golden/commit-active-soft-cancel.json \
	tests/jobs/golden/commit-active.json \
	tests/jobs/golden/commit-intermediate.json \
	tests/jobs/golden/job-errors.json \
	tests/jobs/golden/job-id-in-use.json \
	tests/jobs/golden/snapshot-sync.json \
	tests/jobs/golden/stream-error-stop.json \
	tests/jobs/golden/stream-error.json \
	tests/jobs/golden/stream-manual.json \
	tests/jobs/golden/stream-pause-cancel.json \
	tests/jobs/golden/stream-paused-cancel.json \
	tests/jobs/golden/stream.json \
	tests/jobs/golden/transaction.json
