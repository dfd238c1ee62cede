# daemon/: the vmmd program.
sbin_PROGRAMS += vmmd
vmmd_SOURCES = daemon/main.c daemon/run-vm.c daemon/run-vm.h
vmmd_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS) $(LIBSYSTEMD_CFLAGS)
vmmd_LDADD = $(HW_LIBS) $(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS)
