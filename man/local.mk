# man/: one page per program, the settings file and the protocol.
dist_man_MANS += man/vmmd.8 man/vmctl.1 man/vmm-img.1 man/vmmd.conf.5 man/vmmd-protocol.7 \
	man/vmmd-vm.5

# Every page formats without a warning (man --warnings).
TESTS += tests/functional/test-man-pages.sh
