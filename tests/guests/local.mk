# tests/guests/: freestanding 64-bit test guests, each reporting on COM1.
# Built with the host compiler but none of the project's flags (no
# sanitizers, no libc): own entry code and linker script, a PVH note so
# QEMU can boot them with -kernel too.

GUEST_CFLAGS = -O2 -g -Wall -Wextra -ffreestanding -fno-pic -no-pie -static -nostdlib \
	-fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables \
	-mno-red-zone -mno-sse -mno-sse2 -mno-mmx -mno-avx -mno-80387 -mgeneral-regs-only \
	-Wl,--build-id=none -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments
GUEST_COMMON = $(srcdir)/tests/guests/start.S $(srcdir)/tests/guests/lib.c
GUEST_DEPS = $(GUEST_COMMON) $(srcdir)/tests/guests/lib.h $(srcdir)/tests/guests/guest.ld
GUEST_LINK = $(CC) $(GUEST_CFLAGS) -T $(srcdir)/tests/guests/guest.ld -o $@ $(GUEST_COMMON)
TEST_GUESTS = tests/guests/hello.elf tests/guests/smp.elf tests/guests/unclaimed.elf \
	tests/guests/reboot.elf tests/guests/emul.elf tests/guests/panic.elf tests/guests/nmi.elf \
	tests/guests/cdrom.elf

noinst_DATA += $(TEST_GUESTS)
CLEANFILES += $(TEST_GUESTS)
EXTRA_DIST += tests/guests/start.S tests/guests/lib.c tests/guests/lib.h \
	tests/guests/guest.ld tests/guests/hello.c tests/guests/smp.c \
	tests/guests/unclaimed.c tests/guests/reboot.c tests/guests/emul.c tests/guests/panic.c \
	tests/guests/nmi.c tests/guests/cdrom.c

tests/guests/hello.elf: $(srcdir)/tests/guests/hello.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/hello.c
tests/guests/smp.elf: $(srcdir)/tests/guests/smp.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/smp.c
tests/guests/nmi.elf: $(srcdir)/tests/guests/nmi.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/nmi.c
tests/guests/cdrom.elf: $(srcdir)/tests/guests/cdrom.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/cdrom.c
tests/guests/unclaimed.elf: $(srcdir)/tests/guests/unclaimed.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/unclaimed.c
tests/guests/reboot.elf: $(srcdir)/tests/guests/reboot.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/reboot.c
tests/guests/emul.elf: $(srcdir)/tests/guests/emul.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/emul.c
tests/guests/panic.elf: $(srcdir)/tests/guests/panic.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/panic.c

# Functional tests that boot them under vmmd --run-vm.
TESTS += tests/functional/test-guest-hello.py tests/functional/test-guest-smp.py \
	tests/functional/test-guest-unclaimed.py tests/functional/test-guest-reboot.py \
	tests/functional/test-guest-emul.py
EXTRA_DIST += tests/functional/guestrun.py

# virtio test guests (hw/virtio/): a shared spec-written driver, virtio-drv.c.
VIRTIO_GUESTS = tests/guests/virtio-rng.elf tests/guests/virtio-blk.elf \
	tests/guests/virtio-net.elf tests/guests/virtio-robust.elf tests/guests/virtio-rng-loop.elf \
	tests/guests/virtio-bench.elf tests/guests/blk-writer.elf tests/guests/hotplug.elf tests/guests/balloon.elf \
	tests/guests/virtio-mem.elf tests/guests/balloon-stats.elf
VIRTIO_GUEST_DEPS = $(GUEST_DEPS) $(srcdir)/tests/guests/virtio-drv.c \
	$(srcdir)/tests/guests/virtio-drv.h
noinst_DATA += $(VIRTIO_GUESTS)
CLEANFILES += $(VIRTIO_GUESTS)
EXTRA_DIST += tests/guests/virtio-drv.c tests/guests/virtio-drv.h tests/guests/virtio-rng.c \
	tests/guests/virtio-blk.c tests/guests/virtio-net.c tests/guests/virtio-robust.c \
	tests/guests/virtio-bench.c tests/guests/blk-writer.c tests/guests/hotplug.c tests/guests/balloon.c \
	tests/guests/virtio-mem.c tests/guests/balloon-stats.c

tests/guests/virtio-rng.elf: $(srcdir)/tests/guests/virtio-rng.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/virtio-rng.c
tests/guests/virtio-blk.elf: $(srcdir)/tests/guests/virtio-blk.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/virtio-blk.c
tests/guests/virtio-net.elf: $(srcdir)/tests/guests/virtio-net.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/virtio-net.c
tests/guests/virtio-robust.elf: $(srcdir)/tests/guests/virtio-robust.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/virtio-robust.c
tests/guests/virtio-rng-loop.elf: $(srcdir)/tests/guests/virtio-rng.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) -DRNG_LOOP=1000000 $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/virtio-rng.c
tests/guests/virtio-bench.elf: $(srcdir)/tests/guests/virtio-bench.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/virtio-bench.c
tests/guests/hotplug.elf: $(srcdir)/tests/guests/hotplug.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/hotplug.c
tests/guests/balloon.elf: $(srcdir)/tests/guests/balloon.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/balloon.c
tests/guests/virtio-mem.elf: $(srcdir)/tests/guests/virtio-mem.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/virtio-mem.c
tests/guests/balloon-stats.elf: $(srcdir)/tests/guests/balloon-stats.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/balloon-stats.c

# The xHCI/usb-storage test guest (hw/usb/), on the virtio guests' PCI helpers.
noinst_DATA += tests/guests/xhci.elf
CLEANFILES += tests/guests/xhci.elf
EXTRA_DIST += tests/guests/xhci.c
tests/guests/xhci.elf: $(srcdir)/tests/guests/xhci.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c $(srcdir)/tests/guests/xhci.c

# Save/restore (hw/core/vm-save.c): a counter and a nonce in RAM, mirrored on a virtio-blk disk.
noinst_DATA += tests/guests/counter.elf
CLEANFILES += tests/guests/counter.elf
EXTRA_DIST += tests/guests/counter.c
tests/guests/counter.elf: $(srcdir)/tests/guests/counter.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/counter.c
TESTS += tests/functional/test-vm-save.py tests/functional/test-vm-save-firmware.py
TESTS += tests/functional/test-snapshot-internal.py tests/functional/test-blockdev-snapshot.py

# The save/restore benchmark's guest (tests/bench/vmstate.py) and the lazy restore's test:
# touches all of its low RAM, then checks it.
noinst_DATA += tests/guests/memtouch.elf
CLEANFILES += tests/guests/memtouch.elf
EXTRA_DIST += tests/guests/memtouch.c
tests/guests/memtouch.elf: $(srcdir)/tests/guests/memtouch.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/memtouch.c
TESTS += tests/functional/test-vm-restore-lazy.py
tests/guests/blk-writer.elf: $(srcdir)/tests/guests/blk-writer.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/blk-writer.c


# Tap NICs across a live upgrade (tests/functional/test-upgrade.py): answers frames on virtio-net.
noinst_DATA += tests/guests/net-echo.elf
CLEANFILES += tests/guests/net-echo.elf
EXTRA_DIST += tests/guests/net-echo.c
tests/guests/net-echo.elf: $(srcdir)/tests/guests/net-echo.c $(VIRTIO_GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/virtio-drv.c \
		$(srcdir)/tests/guests/net-echo.c

# Live migration (daemon/migration.c): rewrites a RAM pattern and checks it, like QEMU's a-b-bootblock.
noinst_DATA += tests/guests/migrate.elf
CLEANFILES += tests/guests/migrate.elf
EXTRA_DIST += tests/guests/migrate.c tests/functional/make-golden-migration.py \
	tests/functional/golden/migration.json tests/lib/two-hosts.sh
tests/guests/migrate.elf: $(srcdir)/tests/guests/migrate.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/migrate.c
TESTS += tests/functional/test-migration.py
# Live upgrade (daemon/upgrade.c, docs/upgrade.md): the counter and migrate guests across a binary swap.
TESTS += tests/functional/test-upgrade.py
# `systemctl restart vmmd` keeps the VMs (daemon/keep.c): under Debian's systemd as a user manager.
TESTS += tests/functional/test-systemd-restart.py

# vCPU hotplug: the OS side of QEMU's ACPI CPU hotplug interface (hw/cpu-hotplug.c).
# cpuhp-noap.elf runs the protocol without AP code, for recording QEMU's answers.
noinst_DATA += tests/guests/cpuhp.elf tests/guests/cpuhp-noap.elf
CLEANFILES += tests/guests/cpuhp.elf tests/guests/cpuhp-noap.elf
EXTRA_DIST += tests/guests/cpuhp.c
tests/guests/cpuhp.elf: $(srcdir)/tests/guests/cpuhp.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) $(srcdir)/tests/guests/cpuhp.c
tests/guests/cpuhp-noap.elf: $(srcdir)/tests/guests/cpuhp.c $(GUEST_DEPS)
	@$(MKDIR_P) tests/guests
	$(AM_V_CCLD)$(GUEST_LINK) -DCPUHP_NO_AP $(srcdir)/tests/guests/cpuhp.c

# Migration capabilities and auto-converge: QEMU 7.2's answers recorded by
# make-golden-migration-caps.py (which boots migrate.elf in QEMU).
TESTS += tests/functional/test-migration-caps.py
EXTRA_DIST += tests/functional/make-golden-migration-caps.py \
	tests/functional/golden/migration-caps.json

# The xbzrle capability (daemon/xbzrle.c): QEMU 7.2's answers recorded by
# make-golden-migration-xbzrle.py (two QEMUs migrating migrate.elf with xbzrle).
TESTS += tests/functional/test-migration-xbzrle.py
EXTRA_DIST += tests/functional/make-golden-migration-xbzrle.py \
	tests/functional/golden/migration-xbzrle.json

# Self-announcement (hw/announce.c, announce-self, after a migration): QEMU
# 7.2's answers and frames recorded by make-golden-announce.py.
TESTS += tests/functional/test-announce.py
EXTRA_DIST += tests/functional/make-golden-announce.py tests/functional/golden/announce.json

# inject-nmi (tests/guests/nmi.c): QEMU 7.2's answers and what its guest saw,
# recorded by make-golden-nmi.py.
TESTS += tests/functional/test-nmi.py
EXTRA_DIST += tests/functional/make-golden-nmi.py tests/functional/golden/nmi.json

# pmemsave on guest-idle.elf: QEMU 7.2's answers and files, recorded by
# make-golden-pmemsave.py.
TESTS += tests/functional/test-pmemsave.py
EXTRA_DIST += tests/functional/make-golden-pmemsave.py tests/functional/golden/pmemsave.json
# dump-guest-memory on guest-idle.elf: QEMU 7.2's answers, events and core,
# recorded by make-golden-dump.py (gdb reads both cores).
TESTS += tests/functional/test-dump.py
EXTRA_DIST += tests/functional/make-golden-dump.py tests/functional/golden/dump.json

# Removable media (tests/guests/cdrom.c): QEMU 7.2's answers, events and what
# its guest saw, recorded by make-golden-cdrom.py.
TESTS += tests/functional/test-cdrom.py
EXTRA_DIST += tests/functional/make-golden-cdrom.py tests/functional/golden/cdrom.json

# set_link (virtio-net, e1000): QEMU 7.2's answers and what net-echo.elf
# answered around a link down, recorded by make-golden-set-link.py.
TESTS += tests/functional/test-set-link.py
EXTRA_DIST += tests/functional/make-golden-set-link.py tests/functional/golden/set-link.json

# Run states at a migration's ends (stop/cont while inmigrate, a prelaunch
# source, migrate_cancel): QEMU 7.2's answers recorded by
# make-golden-migration-runstate.py (two QEMUs migrating over a unix socket).
TESTS += tests/functional/test-migration-runstate.py
EXTRA_DIST += tests/functional/make-golden-migration-runstate.py \
	tests/functional/golden/migration-runstate.json

# TLS for migration (daemon/tls.c): QEMU 7.2's shapes recorded by make-golden-tls.py.
TESTS += tests/functional/test-migration-tls.py
EXTRA_DIST += tests/functional/make-golden-tls.py tests/functional/golden/migration-tls.json \
	tests/lib/tlscerts.py

# TLS pre-shared keys and tls-authz (daemon/tls.c, daemon/authz.c): QEMU 7.2's
# shapes recorded by make-golden-psk.py.
TESTS += tests/functional/test-migration-psk.py
EXTRA_DIST += tests/functional/make-golden-psk.py tests/functional/golden/migration-psk.json
