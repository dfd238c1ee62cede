# hw: see the top-level Makefile.am
noinst_LIBRARIES += hw/libhw.a
hw_libhw_a_SOURCES =
hw_libhw_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
HW_LIBS = hw/libhw.a $(COMMON_LIBS) $(JANSSON_LIBS) $(LIBEVENT_LIBS)

include hw/firmware.mk
include hw/platform.mk
