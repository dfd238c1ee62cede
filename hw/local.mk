# hw: see the top-level Makefile.am
include hw/firmware.mk
