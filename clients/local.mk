# clients/: vmctl and vmm-img.
bin_PROGRAMS += vmctl vmm-img
vmctl_SOURCES = clients/vmctl.c clients/client.c clients/client.h clients/vmctl-import.c \
	clients/vmctl-import.h clients/vmctl.h clients/vmctl-hotplug.c clients/vmctl-cpus.c \
	clients/vmctl-export.c
vmctl_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBXML_CFLAGS)
vmctl_LDADD = $(COMMON_LIBS) $(JANSSON_LIBS) $(LIBXML_LIBS)
vmm_img_SOURCES = clients/vmm-img.c clients/img-bench.c clients/img.h
vmm_img_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(LIBEVENT_CFLAGS)
vmm_img_LDADD = $(BLOCK_LIBS) -lm

# vmctl's QEMU and libvirt import (needs no daemon for the mapping half).
TESTS += tests/functional/test-vmctl-import.py

# vmctl memory (memory devices, balloon statistics).
vmctl_SOURCES += clients/vmctl-memory.c
