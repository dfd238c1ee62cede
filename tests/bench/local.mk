# tests/bench/: vmmd vs QEMU benchmarks (run by hand: tests/bench/run; see
# tests/bench/README), their tiny PVH guest, and the harness's smoke test.

check_DATA += tests/bench/guest/bench-guest.elf
CLEANFILES += tests/bench/guest/bench-guest.elf
TESTS += tests/functional/test-bench-smoke.py
EXTRA_DIST += tests/bench/run tests/bench/README tests/bench/lib tests/bench/guest \
	tests/bench/vmstate.py tests/bench/vmstate.sh tests/bench/migration.py tests/bench/migration.sh \
	tests/bench/control-latency.py \
	tests/bench/create-phases.py tests/bench/restore-latency.py tests/bench/upgrade.py \
	tests/bench/upgrade.sh

BENCH_GUEST_SRC = $(srcdir)/tests/bench/guest/bench-guest.S
BENCH_GUEST_LDS = $(srcdir)/tests/bench/guest/bench-guest.ld

# A freestanding ELF64 with a PVH note, built with the guest compiler.
tests/bench/guest/bench-guest.elf: $(BENCH_GUEST_SRC) $(BENCH_GUEST_LDS)
	$(AM_V_GEN)$(MKDIR_P) tests/bench/guest && \
	$(GUEST_CC) -nostdlib -static -no-pie -Wl,-T,$(BENCH_GUEST_LDS) -Wl,--build-id=none \
		-Wl,-z,noexecstack -o $@ $(BENCH_GUEST_SRC)

# The control-plane load generator (figure 4): C, so that the client's own
# cost stays small next to the server's on a 2-core machine.
check_PROGRAMS += tests/bench/qmp-load
tests_bench_qmp_load_SOURCES = tests/bench/qmp-load.c
tests_bench_qmp_load_LDADD = $(PTHREAD_LIBS)

# The scale table's script (tests/bench/README, "Scale").
EXTRA_DIST += tests/bench/scale.py
