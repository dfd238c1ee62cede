# common/: dependency-free helpers (libsystemd only for the journal backend).
noinst_LIBRARIES += common/libcommon.a
common_libcommon_a_SOURCES = \
	common/cleanup.h common/util.h common/list.h common/bytes.h \
	common/json-u64.c common/json-u64.h \
	common/crc32c.c common/crc32c.h \
	common/error.c common/error.h \
	common/log.c common/log.h \
	common/parse.c common/parse.h \
	common/iov.c common/iov.h \
	common/pathpol.c common/pathpol.h \
	common/fdset.c common/fdset.h \
	common/vmstate.c common/vmstate.h \
	common/thread.c common/thread.h
common_libcommon_a_CFLAGS = $(AM_CFLAGS) $(LIBSYSTEMD_CFLAGS)
COMMON_LIBS = common/libcommon.a $(LIBSYSTEMD_LIBS) $(PTHREAD_LIBS)
