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

# Fuzz targets (tests/fuzz/): libFuzzer harnesses. The default build links
# each with a replay main (gcc, no libFuzzer) and replays the committed seed
# corpora; tests/fuzz/fuzz.sh builds them with clang -fsanitize=fuzzer and
# runs them (.ci/run: short runs; --slow: long ones).
FUZZ_REPLAYS = tests/fuzz/replay-json-stream tests/fuzz/replay-virtqueue \
	tests/fuzz/replay-qcow2-open
check_PROGRAMS += $(FUZZ_REPLAYS)
tests_fuzz_replay_json_stream_SOURCES = tests/fuzz/fuzz-json-stream.c tests/fuzz/replay-main.c
tests_fuzz_replay_json_stream_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_json_stream_LDADD = monitor/libmonitor.a $(COMMON_LIBS) $(JANSSON_LIBS) \
	$(LIBEVENT_LIBS)
tests_fuzz_replay_virtqueue_SOURCES = tests/fuzz/fuzz-virtqueue.c tests/fuzz/replay-main.c \
	hw/virtio/virtqueue.c
tests_fuzz_replay_virtqueue_CFLAGS = $(AM_CFLAGS)
tests_fuzz_replay_virtqueue_LDADD = $(COMMON_LIBS)
tests_fuzz_replay_qcow2_open_SOURCES = tests/fuzz/fuzz-qcow2-open.c tests/fuzz/replay-main.c
tests_fuzz_replay_qcow2_open_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_fuzz_replay_qcow2_open_LDADD = $(BLOCK_LIBS)
TESTS += tests/fuzz/replay.sh
EXTRA_DIST += tests/fuzz
TESTS += tests/functional/test-security-unit.sh
