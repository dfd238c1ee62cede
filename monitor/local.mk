# monitor/: the protocol library (sockets, framing, dispatch, events, the
# protocol's own commands). schema.json is compiled in as a C string; the
# handler tables (dispatch.c's and the one the application passes to
# monitor_new, daemon/qmp-*.c) are checked against it at start-up.
noinst_LIBRARIES += monitor/libmonitor.a
monitor_libmonitor_a_SOURCES = \
	monitor/monitor.h monitor/monitor-int.h \
	monitor/json-stream.c monitor/json-stream.h \
	monitor/schema.c monitor/schema.h \
	monitor/server.c monitor/dispatch.c monitor/events.c \
	monitor/cmd-qmp.c
nodist_monitor_libmonitor_a_SOURCES = monitor/schema-data.c
monitor_libmonitor_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
BUILT_SOURCES += monitor/schema-data.c
CLEANFILES += monitor/schema-data.c
EXTRA_DIST += monitor/schema.json

monitor/schema-data.c: $(top_srcdir)/monitor/schema.json
	@$(MKDIR_P) monitor
	$(AM_V_GEN){ echo '/* Generated from monitor/schema.json by monitor/local.mk: do not edit. */'; \
	  echo '#include "monitor/schema.h"'; \
	  echo 'const char schema_json_text[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $(top_srcdir)/monitor/schema.json; \
	  echo ';'; } >$@.tmp && mv $@.tmp $@

# The library alone: no daemon code, no VM.
check_PROGRAMS += tests/unit/test-monitor
TESTS += tests/unit/test-monitor
tests_unit_test_monitor_SOURCES = tests/unit/test-monitor.c tests/unit/check-main.h
tests_unit_test_monitor_CFLAGS = $(UNIT_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_monitor_LDADD = monitor/libmonitor.a \
	$(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS) $(UNIT_LIBS)
