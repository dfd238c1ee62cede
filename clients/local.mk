# clients/: vmctl and vmm-img.
bin_PROGRAMS += vmctl vmm-img
vmctl_SOURCES = clients/vmctl.c
vmctl_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
vmctl_LDADD = $(COMMON_LIBS) $(JANSSON_LIBS)
vmm_img_SOURCES = clients/vmm-img.c
vmm_img_LDADD = $(COMMON_LIBS)
