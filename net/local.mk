# net/: network backends (tap, libslirp user networking) behind one interface.
noinst_LIBRARIES += net/libnet.a
net_libnet_a_SOURCES = net/net.c net/net.h net/tap.c net/slirp.c
net_libnet_a_CFLAGS = $(AM_CFLAGS) $(SLIRP_CFLAGS) $(LIBEVENT_CFLAGS)
NET_LIBS = net/libnet.a $(SLIRP_LIBS) $(LIBEVENT_LIBS)

check_PROGRAMS += tests/unit/test-net tests/unit/test-net-tap
TESTS += tests/unit/test-net tests/unit/test-net-tap
tests_unit_test_net_SOURCES = tests/unit/test-net.c tests/unit/check-main.h
tests_unit_test_net_CFLAGS = $(UNIT_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_net_LDADD = $(NET_LIBS) $(COMMON_LIBS) $(UNIT_LIBS)
tests_unit_test_net_tap_SOURCES = tests/unit/test-net-tap.c
tests_unit_test_net_tap_CFLAGS = $(UNIT_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_net_tap_LDADD = $(NET_LIBS) $(COMMON_LIBS) $(UNIT_LIBS)
