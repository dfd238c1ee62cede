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
