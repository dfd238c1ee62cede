# daemon/: the vmmd program.
sbin_PROGRAMS += vmmd
vmmd_SOURCES = daemon/main.c
vmmd_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS) $(LIBSYSTEMD_CFLAGS)
vmmd_LDADD = $(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS)
