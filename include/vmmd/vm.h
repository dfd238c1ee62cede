/*
 * The virtual machine object, as the daemon sees it (DESIGN.md §2, §5.1).
 * A struct vm owns its vCPU threads, I/O thread(s), guest RAM and devices;
 * it has no global state, so many can live in one process.
 *
 * Threads: vm_new/vm_start/vm_pause/vm_resume/vm_reset/vm_powerdown/
 * vm_destroy and the getters are called from the daemon's control thread and
 * never wait on guest I/O (vm_destroy joins the VM's threads, which stop
 * promptly). Events are delivered through struct vm_host.event from any of
 * the VM's threads: the daemon must hand them over to its own thread.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/error.h"
#include "vmmd/block.h"

struct vm;

/* QEMU's RunState names. */
enum vm_run_state {
	VM_STATE_PRELAUNCH,
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_SHUTDOWN,
	VM_STATE_INTERNAL_ERROR,
	VM_STATE_GUEST_PANICKED,
	VM_STATE_IO_ERROR,
	VM_STATE_INMIGRATE,	 /* waiting for an incoming migration */
	VM_STATE_FINISH_MIGRATE, /* paused, sending the last of its state */
	VM_STATE_POSTMIGRATE,	 /* paused, the destination has taken over */
	VM_STATE_SAVE_VM,	 /* paused, snapshot-save writes its state */
	VM_STATE_RESTORE_VM,	 /* paused, snapshot-load loads it (or failed to) */
};

const char *vm_run_state_name(enum vm_run_state s);

/* One entry of "disks" in the VM definition. */
struct vm_disk_config {
	char *id;     /* "vda" */
	char *driver; /* "virtio-blk" (default), "ide-hd", "ide-cd", "usb-storage" */
	char *file;   /* path or NBD URI */
	char *format; /* "raw" (default) or "qcow2" */
	char *node;   /* node-name of a blockdev-add'ed node instead of file/format */
	bool readonly;
	bool removable;	 /* usb-storage: the SCSI RMB bit */
	char *cache;	 /* "writeback" (default) or "none" */
	char *aio;	 /* "io_uring" (default), "native" (needs cache none), "threads" */
	char *serial;	 /* may be NULL */
	char *werror;	 /* "report" (default), "stop" */
	char *rerror;	 /* "report" (default), "stop" */
	unsigned queues; /* 0 = one per vCPU */
	/* virtio-blk: I/O limits ("throttle", QEMU's block_set_io_throttle names) */
	struct block_throttle_limits throttle;
};

/* One entry of "nics". */
struct vm_nic_config {
	char *id;	/* "net0" */
	char *driver;	/* "virtio-net" (default), "e1000" */
	char *backend;	/* "user" (default) or "tap" */
	char *ifname;	/* tap: existing interface */
	char *fd;	/* tap: name of an fd passed with getfd */
	char *mac;	/* "52:54:00:12:34:56"; generated when NULL */
	char **hostfwd; /* user: NULL-terminated "tcp::2222-:22" rules */
	char *rom;	/* option ROM path, NULL for the default, "" for none */
	int tap_fd;	/* > 0: an open tap fd to dup (netdev_add's fd); then "fd" is unused */
};

/* One entry of "input": a USB HID device on the VM's xHCI controller. */
struct vm_input_config {
	char *id;     /* "kbd0" */
	char *driver; /* "usb-kbd" or "usb-tablet" */
};

/*
 * One entry of "memory_devices": a virtio-mem device (QEMU's
 * memory-backend-ram + virtio-mem-pci) with its own region of device
 * memory above the RAM (docs/memory-devices.md).
 */
struct vm_memdev_config {
	char *id;		 /* "vmem0" */
	char *driver;		 /* "virtio-mem" */
	char *memdev;		 /* the backend's id ("/objects/<memdev>"), default "<id>-mem" */
	uint64_t size;		 /* the backend's size: the most it can plug */
	uint64_t requested_size; /* what the guest is asked to plug */
	uint64_t block_size;	 /* plug granularity, a power of two >= 1M */
	uint64_t addr;		 /* guest-physical base (derived: the layout, not a key) */
};

/* The VM definition (DESIGN.md §5.1), parsed and validated. */
struct vm_config {
	char *name;
	unsigned vcpus;	  /* 1..64 */
	unsigned maxcpus; /* vcpus..64: possible vCPUs, the rest hot-pluggable (device_add) */
	uint64_t memory;  /* bytes */
	char *cpu;	  /* "host" (default), "baseline", with ",+feat,-feat" */
	struct {
		char *kernel; /* bzImage, ELF vmlinux (PVH note or entry), or ELF64 test guest */
		char *initrd;
		char *cmdline;
		char *firmware; /* e.g. /usr/share/seabios/bios.bin; excludes kernel */
		char **order;	/* NULL-terminated device ids for firmware boot */
	} boot;
	struct vm_disk_config *disks;
	unsigned n_disks;
	struct vm_nic_config *nics;
	unsigned n_nics;
	struct vm_input_config *inputs;
	unsigned n_inputs;
	bool rng;	  /* virtio-rng */
	bool balloon;	  /* virtio-balloon */
	bool usb;	  /* the xHCI controller even without USB devices (for hotplug) */
	char *serial_log; /* NULL: <rundir>/vms/<name>.console */
	char *on_reboot;  /* "reset" (default) or "shutdown" */
	bool autostart;
	bool incoming;	   /* wait in "inmigrate" for migrate-incoming instead of booting */
	bool acpi;	   /* default true */
	char *mem_backend; /* "anonymous" (default), "memfd", "hugepages" */
	bool mem_thp;	   /* transparent huge pages for guest RAM (default true) */
	char *debugcon;	   /* file for bytes written to port 0x402; NULL: none */
	bool pvpanic;	   /* QEMU's pvpanic ISA device at port 0x505 */
	uint64_t maxmem;   /* RAM plus device memory (QEMU's -m maxmem=); 0: memory */
	struct vm_memdev_config *memdevs;
	unsigned n_memdevs;
};

/*
 * Parse a VM definition strictly: unknown keys, wrong types and out-of-range
 * values fail with a message naming the key. Keys that only the daemon acts
 * on ("start") are ignored when @allow_start is true. @def is borrowed.
 */
int vm_config_from_json(json_t *def, bool allow_start, struct vm_config **ret, struct error **errp);
/*
 * The MAC address a NIC without "mac" gets: 52:54:00 and three bytes
 * derived from the VM and NIC names, as "52:54:00:xx:xx:xx" in @buf.
 */
void vm_nic_default_mac(const char *vm_name, const char *nic_id, char buf[18]);
/* The block layer's open flags a disk's "cache" and "aio" ask for (BLOCK_O_*). */
static inline unsigned vm_disk_block_flags(const struct vm_disk_config *d)
{
	unsigned f = 0;

	if (d->cache && strcmp(d->cache, "none") == 0) {
		f |= BLOCK_O_NOCACHE;
	}
	if (d->aio && strcmp(d->aio, "native") == 0) {
		f |= BLOCK_O_AIO_NATIVE;
	} else if (d->aio && strcmp(d->aio, "threads") == 0) {
		f |= BLOCK_O_AIO_THREADS;
	}
	return f;
}
/* The canonical JSON form (what vmmd persists); new reference. */
json_t *vm_config_to_json(const struct vm_config *cfg);
void vm_config_free(struct vm_config *cfg);
/* Bytes of guest memory @cfg maps: the RAM and every memory device's region. */
uint64_t vm_config_memory_total(const struct vm_config *cfg);
/* End of the device memory region (QEMU's "etc/reserved-memory-end"); 0 without maxmem. */
uint64_t vm_config_device_memory_end(const struct vm_config *cfg);
/* Deep copy of a valid configuration. */
int vm_config_copy(const struct vm_config *cfg, struct vm_config **ret, struct error **errp);
DEFINE_CLEANUP_FUNC(struct vm_config, vm_config_free)

/* What the VM needs from its host process. Borrowed for the VM's lifetime. */
struct vm_host {
	const char *run_dir; /* <rundir>/vms/ is where console logs and sockets go */
	/* Mode and group of the console socket (0 = 0600, the daemon's group). */
	mode_t socket_mode;
	gid_t socket_gid; /* (gid_t)-1 = the daemon's */
	/*
	 * The VM continues one that ran on this host (an incoming migration,
	 * a live upgrade): its console log is appended to, not truncated.
	 */
	bool keep_console_log;
	/*
	 * A QMP event for this VM: @name is "STOP", "RESUME", "RESET",
	 * "POWERDOWN", "SHUTDOWN", "BLOCK_IO_ERROR", ...; @data is a new
	 * reference the callee takes (without "vm": the daemon adds it). Any
	 * thread. The run state has already changed when it is called.
	 */
	void (*event)(void *opaque, struct vm *vm, const char *name, json_t *data);
	/*
	 * Called first on each VM thread, @kind "vcpu", "io" or "helper" (a
	 * block-layer worker of the VM's disks, block_aio_ctx_set_thread_start):
	 * the daemon loads its seccomp filter there. May be NULL.
	 */
	void (*thread_start)(void *opaque, const char *kind);
	/* Resolve an fd passed with getfd (tap fds); -ENOENT if none. May be NULL. */
	int (*get_fd)(void *opaque, const char *name);
	/*
	 * The tap fd a local migration handed over for NIC @nic_id (a new fd
	 * the caller owns; it checked the fd is a tap of the name the source
	 * and this VM's definition give), or -ENOENT: open the NIC's tap as
	 * usual. Preferred over "ifname" and get_fd. May be NULL.
	 */
	int (*nic_fd)(void *opaque, const char *nic_id);
	/*
	 * The image of disk @disk_id opened already (an incoming VM's disk that
	 * its NBD server exported while the VM waited): a new reference, or
	 * NULL: open the disk as its definition says. May be NULL.
	 */
	struct block_node *(*disk_node)(void *opaque, const char *disk_id);
	/*
	 * The guest ejected a hot-pluggable device (or a reset completed a
	 * removal): call vm_hotplug_poll() on the control thread soon. Any
	 * thread; must not block. May be NULL (then nothing is ever removed).
	 */
	void (*hotplug_pending)(void *opaque, struct vm *vm);
	/*
	 * Run @work(@arg) on a worker thread, then @done(@arg) on the control
	 * thread if this VM still exists; if it is gone, @arg (malloc'ed) is
	 * freed instead. Called on the control thread; 0 or -errno. May be
	 * NULL (the blocking work then runs on the control thread).
	 */
	int (*offload)(void *opaque, void (*work)(void *arg), void (*done)(void *arg), void *arg);
	/*
	 * Bytes per second at which a restore populates shared RAM from the
	 * snapshot in the background (vmmd.conf restore-populate-rate); 0: as
	 * fast as it can. Faults are served at once either way.
	 */
	uint64_t populate_rate;
	void *opaque;
};

/*
 * Build the machine from @cfg (copied): guest RAM, devices, backends, the
 * loaded kernel or firmware. The VM is left in VM_STATE_PRELAUNCH with no
 * vCPU running. On failure nothing is left behind.
 */
int vm_new(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
	   struct error **errp);

/*
 * Create the vCPU threads of a VM in prelaunch, parked until vm_start: the
 * thread that built the VM calls it, so that vm_start creates no thread (the
 * daemon's control thread must not wait for the process's mmap lock, which
 * VM setup and teardown on other threads hold for long stretches). The
 * threads start at the caller's nice value or the one it chose for its
 * children (common/thread.h). Optional: vm_start creates the threads that
 * do not exist yet.
 */
int vm_spawn_vcpus(struct vm *vm, struct error **errp);

/*
 * prelaunch -> running (event RESUME): start the vCPUs, or resume them when
 * a reset of a stopped VM left it in prelaunch (vm_reset).
 */
int vm_start(struct vm *vm, struct error **errp);
/*
 * How long each phase of the VM's setup took (vm_new or vm_restore, each
 * device class, vm_start), as text for a debug log: "kvm 1.20, memory
 * 0.31, ..." in milliseconds; phases under 0.05 ms are summed as "other".
 * NULL on allocation failure. The caller frees it. Same threads as vm_start.
 */
char *vm_setup_phases(struct vm *vm);
/*
 * running -> paused (event STOP) and back (event RESUME); vm_resume also
 * leaves io-error (QEMU's cont), and disks retry the requests they held.
 */
int vm_pause(struct vm *vm, struct error **errp);
int vm_resume(struct vm *vm, struct error **errp);
/*
 * Hard reset (event RESET {"guest": false, "reason": "host-qmp-system-reset"}).
 * A running VM runs on; any other ends in prelaunch, as in QEMU 7.2. Refused
 * (EBUSY) between vm_save_begin and vm_save_end.
 */
int vm_reset(struct vm *vm, struct error **errp);
/* Press the ACPI power button (event POWERDOWN); the guest may ignore it. */
int vm_powerdown(struct vm *vm, struct error **errp);
/*
 * inject-nmi: an NMI to every present vCPU, as QEMU's on x86. A vCPU that
 * does not run now (paused, prelaunch) takes it when it runs; a reset
 * before that drops it, as a reset does on hardware.
 */
int vm_inject_nmi(struct vm *vm, struct error **errp);
/*
 * Hard stop and free: vCPUs and I/O threads are stopped and joined, disks
 * flushed, every fd, mapping and file released. NULL is fine.
 */
void vm_destroy(struct vm *vm);

enum vm_run_state vm_get_state(struct vm *vm);
const char *vm_name(struct vm *vm);
/* Exits to user space of all vCPUs so far (benchmarks). */
uint64_t vm_get_exit_count(struct vm *vm);
/* UNIX socket path of the live serial console (vmctl console); NULL if none. */
const char *vm_console_socket(struct vm *vm);
/*
 * Input (QEMU's InputEvent, as send-key and input-send-event carry it).
 * KEY: @code is a QKeyCode index (vm_input_qcode); BTN: @code is QEMU's
 * InputButton (0 left, 1 middle, 2 right, 3 wheel-up, 4 wheel-down, 5 side,
 * 6 extra, 7 wheel-left, 8 wheel-right) and @down; REL/ABS: @code is the
 * axis (0 x, 1 y) and @value (ABS: 0..0x7fff). An event is not delivered
 * to the guest before @delay_ms (send-key's hold time for the releases).
 */
enum vm_input_type {
	VM_INPUT_KEY,
	VM_INPUT_BTN,
	VM_INPUT_REL,
	VM_INPUT_ABS,
};
struct vm_input_event {
	enum vm_input_type type;
	int code;
	bool down;
	int64_t value;
	uint32_t delay_ms;
};
#define VM_INPUT_MAX_EVENTS 256
#define VM_INPUT_ABS_MAX 0x7fff
/* QKeyCode @name (QEMU 7.2's names: "a", "shift", "kp_enter", ...) as an index; -1 if unknown. */
int vm_input_qcode(const char *name);
/* send-key's {"type": "number"}: an XT set-1 scancode (0x80 | code for E0 keys); 0 if none. */
int vm_input_qcode_from_number(int64_t number);
/*
 * Send @n events (at most VM_INPUT_MAX_EVENTS) to the input device @device
 * (an "input" id), or with @device NULL keys to the first keyboard and the
 * rest to the first pointer. -ENOENT (class DeviceNotFound) if no device
 * has that id, -EINVAL if it is no input device. Control thread; does not
 * block.
 */
int vm_input_send(struct vm *vm, const char *device, const struct vm_input_event *ev, unsigned n,
		  struct error **errp);

/*
 * x-query-usb: QEMU's "info usb" text, one line per USB device (malloc'ed
 * into *ret). -ENODEV "USB support not enabled" when the VM has no USB
 * controller.
 */
int vm_query_usb(struct vm *vm, char **ret, struct error **errp);

/*
 * query-cpus-fast: QEMU's CpuInfoFast of each vCPU (one socket of vcpus
 * cores); "thread-id" is 0 until the VM first runs (vCPU threads start with
 * it). New reference.
 */
json_t *vm_query_cpus_fast(struct vm *vm);
/*
 * query-hotpluggable-cpus: QEMU's HotpluggableCPU list, one per possible
 * vCPU (maxcpus), highest first; "qom-path" on the present ones (hw/hotplug.c).
 */
json_t *vm_query_hotpluggable_cpus(struct vm *vm);
/*
 * ringbuf-read / ringbuf-write on COM1 (QEMU's ringbuf chardev semantics,
 * see serial.h): -ENODEV without the UART.
 */
int vm_ringbuf_read(struct vm *vm, uint8_t *buf, size_t max, size_t *ret_len);
int vm_ringbuf_write(struct vm *vm, const uint8_t *buf, size_t len);
/* query-pci: QEMU's PciInfo list of the VM's PCI bus; new reference. */
json_t *vm_query_pci(struct vm *vm);
struct block_node;
/*
 * The top block node of the VM's disk @id (borrowed; the pointer stays
 * valid while @vm exists, whatever snapshots and block jobs do to its
 * contents), or NULL. vm_for_each_disk() calls @fn for every disk.
 * Control thread.
 */
struct block_node *vm_disk_node(struct vm *vm, const char *id);
void vm_for_each_disk(struct vm *vm,
		      void (*fn)(void *opaque, const char *id, struct block_node *bs),
		      void *opaque);
/* query-block / query-blockstats for this VM's disks; new references. */
json_t *vm_query_block(struct vm *vm);
json_t *vm_query_blockstats(struct vm *vm);

/*
 * Save and restore of a whole VM to a directory (docs/vmstate.md): a
 * manifest, the device and vCPU state, and guest RAM as a sparse file.
 *
 * vm_save_begin (control thread): the VM must be running or paused; it is
 * paused (event STOP if it ran) and marked as saving, which refuses start,
 * resume, reset and guest reset requests until vm_save_end.
 * vm_save (any other thread, between the two): drains in-flight device
 * requests, holds the I/O thread, writes the snapshot into a temporary
 * directory beside @dir and renames it to @dir at the end, so a failed
 * save (ENOSPC...) leaves nothing that looks like a snapshot. @dir must not
 * exist. Fills @ret_bytes with the bytes of RAM written (non-zero pages).
 * vm_save_end (control thread): clears the mark and resumes the VM if
 * @resume and it was running at vm_save_begin (event RESUME).
 */
/*
 * pmemsave: @size bytes of guest-physical memory from @addr into @fd (from
 * its offset 0; @name for messages), as the guest has them now (a running
 * guest may change them meanwhile): RAM and memory devices; device MMIO,
 * firmware and holes read as zeroes (no device is accessed). At most the
 * guest's memory size plus 4 GiB (vm_pmemsave_check, before a file is
 * opened); addresses wrap at 2^64 as QEMU's. Any thread, while the VM
 * object stays (the caller holds it).
 */
int vm_pmemsave_check(struct vm *vm, uint64_t size, struct error **errp);
int vm_pmemsave(struct vm *vm, uint64_t addr, uint64_t size, int fd, const char *name,
		struct error **errp);
/*
 * dump-guest-memory as an ELF core of QEMU's layout (the notes and blocks
 * are described in hw/core/vm-dump.c): guest RAM and memory devices,
 * clipped to [@begin, @begin+@length) with @filter; with @paging, the
 * PT_LOADs are the vCPUs' page-table mappings of that memory.
 * vm_dump_size: the bytes of memory that makes (0: nothing to dump).
 * vm_dump_elf: between vm_save_begin and vm_save_end on a worker, into
 * @fd from its offset (a regular file gets holes for zero pages; a pipe
 * every byte); adds the bytes of memory written to *@done as it goes.
 */
uint64_t vm_dump_size(struct vm *vm, bool filter, uint64_t begin, uint64_t length);
int vm_dump_elf(struct vm *vm, int fd, bool paging, bool filter, uint64_t begin, uint64_t length,
		atomic_uint_fast64_t *done, struct error **errp);
/*
 * A vCPU's address space, read through its page tables as the MMU reads
 * them (hw/core/pagewalk.c: 32-bit, PAE, 4- and 5-level paging; no
 * permission checks; a table outside RAM is not present). Any thread but
 * the control thread (the vCPUs may have to leave KVM_RUN; RAM restored
 * lazily may wait on its file), while the VM object stays.
 *
 * vm_vcpu_paging: present vCPU @cpu's paging registers; running vCPUs
 * leave the guest for the moment of the read (no event). "Parameter
 * 'cpu-index' expects a CPU number" for another @cpu.
 * vm_translate: the guest-physical address of linear address @la, or
 * -EFAULT (not mapped, or not canonical). Paging off: @la.
 * vm_read_memory: @len bytes at linear address @addr through @p, or at
 * guest-physical @addr with @p NULL; -EFAULT unless every byte is RAM or
 * a memory device's (device registers and firmware are not read).
 * vm_walk_pages: @fn for every present page in linear-address order: its
 * canonical linear address, guest-physical base, size (4 KiB to 1 GiB),
 * the leaf entry, and VM_PAGE_USER | VM_PAGE_WRITE as every level grants
 * them. Stops at the first nonzero return and returns it; paging off:
 * -ENOENT; -E2BIG past 2^17 tables (guest-controlled).
 */
struct vm_paging {
	uint64_t cr0, cr3, cr4, efer;
};
#define VM_PAGE_WRITE 2u
#define VM_PAGE_USER 4u
typedef int vm_page_fn(void *opaque, uint64_t la, uint64_t gpa, uint64_t len, uint64_t pte,
		       unsigned prot);
int vm_vcpu_paging(struct vm *vm, unsigned cpu, struct vm_paging *ret, struct error **errp);
int vm_translate(struct vm *vm, const struct vm_paging *p, uint64_t la, uint64_t *ret_gpa);
int vm_read_memory(struct vm *vm, const struct vm_paging *p, uint64_t addr, void *buf, size_t len);
int vm_walk_pages(struct vm *vm, const struct vm_paging *p, vm_page_fn *fn, void *opaque);
/*
 * memsave: @size bytes of vCPU @cpu's linear address space from @addr
 * into @fd (-1: only check), through that vCPU's page tables as they are
 * now; running vCPUs leave KVM_RUN for the moment their registers are
 * read (no event). QEMU's errors: "Parameter 'cpu-index' expects a CPU
 * number", "Invalid addr 0x.../size N specified" (a page not mapped, or
 * mapped outside RAM and memory devices); the bound of vm_pmemsave_check.
 * A worker thread, while the VM object stays.
 */
int vm_memsave(struct vm *vm, unsigned cpu, uint64_t addr, uint64_t size, int fd, const char *name,
	       struct error **errp);
int vm_save_begin(struct vm *vm, struct error **errp);
int vm_save(struct vm *vm, const char *dir, uint64_t *ret_bytes, struct error **errp);
void vm_save_end(struct vm *vm, bool resume);

/*
 * An opened snapshot directory: manifest parsed and checked (format
 * version, every section's CRC-32, the memory file's size), state loaded.
 */
struct vm_snapshot;
int vm_snapshot_open(const char *dir, struct vm_snapshot **ret, struct error **errp);
/* The saved VM definition (borrowed, valid until close). */
json_t *vm_snapshot_definition(struct vm_snapshot *snap);
void vm_snapshot_close(struct vm_snapshot *snap);

/*
 * Build a VM from @cfg (the snapshot's definition, backends possibly
 * overridden) with the state of @snap: guest RAM is a private mapping of
 * the memory file (read lazily, on first touch) for anonymous RAM; for
 * memfd/hugepage RAM a userfaultfd handler thread fills it from the file
 * (on first touch and in the background), or a copy where the daemon can
 * have no userfaultfd. The kernel/initrd files are not read. The VM
 * ends paused (event STOP not sent) if @paused, else running (RESUME).
 * On failure (CPU or TSC the host cannot provide, a device mismatch, bad
 * state) nothing is left behind.
 */
int vm_restore(const struct vm_config *cfg, const struct vm_host *host, struct vm_snapshot *snap,
	       bool paused, struct vm **ret, struct error **errp);
/*
 * vm_restore in two steps, for a caller that knows the definition before
 * the state: vm_restore_prepare does the kernel's share of the build (the
 * KVM VM, guest RAM's memslots, IRQ routing: most of a build's time, all
 * of it waiting for the kernel; no disk, NIC or vCPU yet), so that
 * vm_restore_into, once the state is there, does only the rest. A
 * migration's destination prepares while RAM still streams in. The
 * prepared VM is taken by vm_restore_into (torn down if it fails), or
 * freed with vm_destroy if never used.
 */
int vm_restore_prepare(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
		       struct error **errp);
int vm_restore_into(struct vm *pre, struct vm_snapshot *snap, bool paused, struct vm **ret,
		    struct error **errp);

/*
 * Hotplug (hw/hotplug.c), with QEMU's argument shapes and error
 * messages; control thread. @args are the QMP arguments (borrowed, already
 * checked against the schema's types). Errors leave nothing half-added.
 *
 * blockdev-add opens a node (block_open_json) the VM's devices can use by
 * its node-name (see vm_blockdev_add_prepare); blockdev-del closes it
 * unless a device uses it.
 * netdev_add records a backend ("user", or "tap" by "ifname" or by "fd"
 * from getfd, whose fd is taken now) for device_add's "netdev".
 * device_add realizes virtio-blk-pci, virtio-net-pci or e1000 on bus 0
 * and tells the guest (ACPI hotplug). device_del asks the guest to eject
 * and returns at once; the device goes (DEVICE_DELETED, its id free again,
 * its node or netdev released) when the guest ejects it or the VM resets.
 * *ret_changed (may be NULL) says whether the VM's devices changed in a
 * way the persisted definition should follow.
 */
/*
 * blockdev-add in three steps so the open (an NBD connect can take its
 * whole timeout) runs off the control thread: prepare checks the arguments
 * and reserves the node-name (control thread); open opens the image (any
 * thread, touches no VM state); finish installs the node or drops the
 * reservation and returns the open's error (control thread, the VM still
 * alive). abandon frees an op whose VM went away in between.
 */
struct vm_blockdev_op;
int vm_blockdev_add_prepare(struct vm *vm, json_t *args, struct vm_blockdev_op **ret,
			    struct error **errp);
void vm_blockdev_add_open(struct vm_blockdev_op *op);
int vm_blockdev_add_finish(struct vm *vm, struct vm_blockdev_op *op, struct error **errp);
void vm_blockdev_add_abandon(struct vm_blockdev_op *op);
/* blockdev-del: the node leaves the table; *ret is its reference, to drop on a worker. */
int vm_blockdev_del(struct vm *vm, const char *node_name, struct block_node **ret,
		    struct error **errp);
/*
 * blockdev-snapshot's overlay: the node blockdev-add opened as @name (a new
 * reference in *ret); -ENOENT if there is none, -EBUSY if a device uses it
 * or it is part of a disk's chain. vm_blockdev_forget drops the
 * blockdev-add entry once the overlay is a disk's top (the name stays
 * taken by the disk's chain: blockdev-del says "in use").
 */
int vm_blockdev_overlay(struct vm *vm, const char *name, struct block_node **ret);
void vm_blockdev_forget(struct vm *vm, const char *name);
/*
 * blockdev-mirror's target: as vm_blockdev_overlay, and the node is
 * claimed for the job (blockdev-del says "in use", device_add, block_resize
 * and other jobs refuse it) until vm_blockdev_unclaim. That one, with
 * @drop, also removes the blockdev-add entry (the mirror pivoted: the name
 * is now the disk's) and returns the entry's reference for the caller to
 * drop on a thread that may close images. Any thread.
 */
int vm_blockdev_claim(struct vm *vm, const char *name, struct block_node **ret);
struct block_node *vm_blockdev_unclaim(struct vm *vm, const char *name, bool drop);
int vm_netdev_add(struct vm *vm, json_t *args, int fd, struct error **errp);
int vm_netdev_del(struct vm *vm, const char *id, struct error **errp);
int vm_device_add(struct vm *vm, json_t *args, struct error **errp);
/*
 * QEMU's set_link on the NIC @name (its id, or the netdev_add id it uses):
 * down, the guest sees the link down and frames are dropped both ways;
 * DeviceNotFound "Device 'NAME' not found" otherwise.
 */
int vm_set_link(struct vm *vm, const char *name, bool up, struct error **errp);
/*
 * QEMU's block_set_io_throttle on disk @id (a virtio-blk disk: other disks
 * answer that they take none): @l (checked by block_throttle_check) from
 * now on; DeviceNotFound "Device 'ID' not found" for no disk.
 */
struct block_throttle_limits;
int vm_set_io_throttle(struct vm *vm, const char *id, const struct block_throttle_limits *l,
		       struct error **errp);
/*
 * Removable media (hw/media.c: ide-cd drives), QEMU's commands in steps,
 * for the drive whose definition id is @id (QEMU's "device" and "id"
 * both name it here). Every call: DeviceNotFound "Device 'ID' not found",
 * or "Device 'ID' is not removable" for a disk that is not.
 * vm_media_state: the tray (its medium borrowed: valid until the next
 * media call). vm_media_open_tray (QEMU's blockdev-open-tray with the
 * error eject reports): -EINPROGRESS with QEMU's "is locked and force was
 * not specified" when the guest locked the tray and @force is false (the
 * guest was asked to open it). vm_media_remove: the medium of the open
 * tray goes ("Tray of device 'ID' is not open"). vm_media_insert_node /
 * vm_media_insert: blockdev-add's node @node_name / the image @bs (a
 * reference taken over, failure or not) into the open, empty tray.
 * vm_media_close_tray: closes it; a medium in it reads as new. A tray
 * that moves emits DEVICE_TRAY_MOVED. Control thread.
 */
struct vm_tray;
int vm_media_state(struct vm *vm, const char *id, struct vm_tray *st, struct error **errp);
int vm_media_open_tray(struct vm *vm, const char *id, bool force, struct error **errp);
int vm_media_close_tray(struct vm *vm, const char *id, struct error **errp);
int vm_media_remove(struct vm *vm, const char *id, struct error **errp);
int vm_media_insert_node(struct vm *vm, const char *id, const char *node_name, struct error **errp);
int vm_media_insert(struct vm *vm, const char *id, struct block_node *bs, struct error **errp);
int vm_device_del(struct vm *vm, const char *id, struct error **errp);
/*
 * block_resize in three steps, so the truncation (disk I/O) runs off the
 * control thread: _prepare (control thread) finds the node of @device or
 * @node_name and checks it; _run (a worker) truncates; _finish (control
 * thread; @vm NULL when the VM is gone) tells the virtio-blk disk still on
 * that node (capacity, config-change interrupt), frees @op and returns the
 * result. Always call _finish after a successful _prepare.
 */
struct vm_resize_op;
int vm_block_resize_prepare(struct vm *vm, const char *device, const char *node_name, uint64_t size,
			    struct vm_resize_op **ret, struct error **errp);
void vm_block_resize_run(struct vm_resize_op *op);
int vm_block_resize_finish(struct vm *vm, struct vm_resize_op *op, struct error **errp);
/*
 * QEMU's balloon: ask the guest to keep @value bytes of RAM (> 0; more than
 * its RAM means all of it); query-balloon: {"actual": bytes it keeps}. The
 * guest's answer comes as BALLOON_CHANGE. DeviceNotActive without a balloon.
 */
int vm_balloon(struct vm *vm, int64_t value, struct error **errp);
json_t *vm_query_balloon(struct vm *vm, struct error **errp);
/*
 * QEMU's qom-get / qom-set on a device ("/machine/peripheral/<id>" or
 * "<id>"; DeviceNotFound otherwise) and the memory queries
 * (query-memory-devices: MemoryDeviceInfo list; query-memory-size-summary:
 * {"base-memory", "plugged-memory"}); hw/qom.c. New references.
 */
json_t *vm_qom_get(struct vm *vm, const char *path, const char *property, struct error **errp);
int vm_qom_set(struct vm *vm, const char *path, const char *property, json_t *value,
	       struct error **errp);
json_t *vm_query_memory_devices(struct vm *vm);
json_t *vm_query_memory_size_summary(struct vm *vm);
/*
 * QEMU's self-announcement (hw/announce.c; announce-self, and after an
 * incoming migration): each NIC sends a RARP of its MAC (every NIC, or
 * those whose id is in @interfaces, NULL-terminated; an empty list names
 * none) @rounds times: at once, then after initial, initial + step,
 * initial + 2 * step, ... ms, each gap capped at max. The timer named @id
 * ("" for announce-self without one, NULL for the migration's) starts its
 * schedule again. Rounds due while the VM does not run go out when it
 * runs. Values outside QEMU's migration parameter ranges are refused.
 */
struct vm_announce_params {
	int64_t initial, max, rounds, step; /* ms, ms, count, ms */
};
#define VM_ANNOUNCE_MAX_INITIAL 100000
#define VM_ANNOUNCE_MAX_MAX 100000
#define VM_ANNOUNCE_MAX_ROUNDS 1000
#define VM_ANNOUNCE_MAX_STEP 10000
#define VM_ANNOUNCE_MAX_TIMERS 16 /* ids per VM besides "" */
#define VM_ANNOUNCE_MAX_ID 63
#define VM_ANNOUNCE_MAX_INTERFACES 64
int vm_announce(struct vm *vm, const struct vm_announce_params *p, const char *const *interfaces,
		const char *id, struct error **errp);
/*
 * Finish the removals the guest acknowledged (vm_host.hotplug_pending):
 * unrealize those devices, release their backends, emit DEVICE_DELETED.
 */
void vm_hotplug_poll(struct vm *vm);
/*
 * What a hot-added device looks like as a VM definition entry, for the
 * definition to follow device_add: {"kind": "disks"|"nics", "entry": {...}};
 * NULL if @id is not a device the definition can describe. New reference.
 */
json_t *vm_device_definition(struct vm *vm, const char *id);

/*
 * Live migration, the machine's side (docs/migration.md); daemon/migration.c
 * runs the protocol.
 *
 * Dirty tracking: vm_dirty_log_start turns on KVM's dirty log on every RAM
 * memslot and vmmd's own bitmap of the pages its device models write
 * (guest_mem_ptr translations, guest_mem_write, virtqueue pushes).
 * vm_dirty_log_sync ORs into @bitmap (one bit per 4 KiB page of region @i,
 * 64-bit words) every page dirtied since the previous call, from both, and
 * clears them. Any thread, one caller at a time; between _start and _stop.
 */
int vm_dirty_log_start(struct vm *vm, struct error **errp);
int vm_dirty_log_sync(struct vm *vm, unsigned i, uint64_t *bitmap, struct error **errp);
void vm_dirty_log_stop(struct vm *vm);
/*
 * CPU throttling for auto-converge, as QEMU's cpu_throttle: with @pct in
 * 1..VM_CPU_THROTTLE_MAX each vCPU thread, after every 10 ms the guest ran,
 * stays out of the guest for pct/(100-pct) of that time (a per-vCPU timer
 * takes it out of KVM_RUN even when the guest makes no exits; the vCPU
 * thread sleeps, never the caller). @pct 0 ends it and a sleeping vCPU runs
 * again at once. A pause cuts a sleep short. vCPUs hot-added meanwhile
 * sleep on their exits only. Any thread, one caller at a time; ended (0)
 * before the VM is destroyed. vm_cpu_throttle reads the percentage.
 */
#define VM_CPU_THROTTLE_MAX 99u
int vm_set_cpu_throttle(struct vm *vm, unsigned pct, struct error **errp);
unsigned vm_cpu_throttle(struct vm *vm);
/*
 * RAM regions (back to back in the stream): count, host pointer and size.
 * RAM below and above the PCI hole, then one region per memory device.
 */
#define VM_RAM_REGIONS_MAX 10
/* QEMU's migration blockers: a device without state support; -ENOTSUP naming it. */
int vm_migration_blocker(struct vm *vm, struct error **errp);
unsigned vm_ram_region_count(struct vm *vm);
uint8_t *vm_ram_region(struct vm *vm, unsigned i, uint64_t *ret_gpa, uint64_t *ret_size);
/*
 * Between vm_save_begin and vm_save_end: show @s (VM_STATE_FINISH_MIGRATE,
 * VM_STATE_POSTMIGRATE, VM_STATE_SAVE_VM, VM_STATE_RESTORE_VM or back to
 * VM_STATE_PAUSED) as the run state. A VM left in restore-vm (a failed
 * snapshot-load) resumes with cont, as QEMU's.
 */
void vm_set_migrate_state(struct vm *vm, enum vm_run_state s);
/*
 * A paused VM whose vCPUs never ran (one that arrived from a source in
 * prelaunch, as QEMU's): prelaunch, which cont leaves as from a reset.
 * Nothing for a VM in any other state.
 */
void vm_mark_prelaunch(struct vm *vm);
/*
 * Between vm_save_begin and vm_save_end, on a worker thread: drain device
 * requests, hold the I/O thread and serialize the vCPUs, the in-kernel
 * devices and every device into @state (the sections of docs/vmstate.md)
 * with a manifest of the vm-save shape (new reference). On success the I/O
 * thread stays held (nothing writes guest RAM) until vm_state_release.
 */
struct vmstate_buf;
/*
 * The image hand-over (docs/migration.md), while the state is captured:
 * false = flush every disk and release its image locks so the destination
 * may open them; true = take them back (a failed hand-over). All or
 * nothing when releasing.
 */
int vm_disks_set_active(struct vm *vm, bool active, struct error **errp);
/*
 * Tap NICs by fd (docs/migration.md), while the state is captured:
 * vm_for_each_nic_fd calls @fn with each NIC's id and the open fd of its
 * tap (borrowed) and stops at, and returns, the first negative return;
 * vm_nic_fds_release closes those fds here once the destination runs the
 * VM (or the next daemon will), so this side never reads the tap again, and
 * no NIC of any backend delivers a frame into guest RAM again.
 */
typedef int vm_nic_fd_fn(void *opaque, const char *nic_id, int fd);
int vm_for_each_nic_fd(struct vm *vm, vm_nic_fd_fn *fn, void *opaque);
void vm_nic_fds_release(struct vm *vm);
int vm_state_capture(struct vm *vm, struct vmstate_buf *state, json_t **ret_manifest,
		     struct error **errp);
void vm_state_release(struct vm *vm);
/*
 * A snapshot from a migration stream: @manifest (taken), @state (malloc'ed,
 * taken) and @mem_fd (taken; RAM, regions back to back) are checked as
 * vm_snapshot_open checks a directory. Nothing is kept on failure.
 */
int vm_snapshot_from_stream(json_t *manifest, void *state, size_t state_len, int mem_fd,
			    struct vm_snapshot **ret, struct error **errp);

/*
 * Loading a snapshot into the VM it came from, in place (snapshot-load,
 * QEMU's loadvm). Between vm_save_begin and vm_save_end, on a worker:
 * vm_state_hold drains device requests and holds the I/O thread (release
 * with vm_state_release); vm_state_load_check compares @snap (from
 * vm_snapshot_from_stream with @mem_fd -1: RAM comes separately) with the
 * VM (RAM layout, vCPUs, a section for every device) and changes nothing;
 * the caller then writes guest RAM (vm_ram_region); vm_state_load resets
 * the devices, irqchip and vCPUs and loads them from @snap.
 */
int vm_state_hold(struct vm *vm, struct error **errp);
int vm_state_load_check(struct vm *vm, struct vm_snapshot *snap, struct error **errp);
int vm_state_load(struct vm *vm, struct vm_snapshot *snap, struct error **errp);
/* The guest's clock (kvmclock) in ns, for the snapshot table's "VM CLOCK". */
uint64_t vm_guest_clock_ns(struct vm *vm);
/*
 * The stream's mem_fd is the source's own guest RAM (a memfd handed over on
 * a UNIX socket): a VM with fd-backed RAM in one region adopts it as its RAM
 * instead of copying it (vm_restore); others map or copy it as usual.
 */
void vm_snapshot_share_memory(struct vm_snapshot *snap);
/*
 * The memfd backing RAM region @i (borrowed), or -1 (anonymous RAM). After a
 * vm-restore its pages may still be arriving (lazily, docs/vmstate.md):
 * call vm_ram_populate_wait before another process or VM gets it.
 */
int vm_ram_region_fd(struct vm *vm, unsigned i);
/*
 * Wait until RAM a restore populates lazily is all in the VM's memory
 * (returns at once otherwise). A worker thread, never the control thread
 * while it serves clients (keeping VMs at SIGTERM, keep.c, is the one
 * caller there). 0, or -errno with a message if the snapshot's memory
 * could not be read.
 */
int vm_ram_populate_wait(struct vm *vm, struct error **errp);
