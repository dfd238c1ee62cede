/*
 * The inside of struct vm, shared by the machine's own files (vm.c, vcpu.c,
 * irq.c, boot.c). Device models use hw/device.h instead.
 *
 * Locks: ctl_lock serializes run-state transitions (control thread API and
 * the I/O thread's request handler); run_lock/run_cond park and release the
 * vCPU threads; irq.c's routing_lock protects the GSI routing table.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/log.h"
#include "hw/core/boot.h"
#include "hw/core/cpuid.h"
#include "hw/core/kvm.h"
#include "hw/core/vm-devices.h"
#include "hw/device.h"

struct vcpu;
struct irq_routing;

#define VM_MAX_ROMS 4
/* ROM memslots come after the RAM's and the memory devices' (memory.h). */
#define VM_ROM_SLOT_BASE 16
_Static_assert(VM_RAM_REGIONS_MAX <= VM_ROM_SLOT_BASE, "RAM and ROM memslots overlap");

enum vcpu_cmd {
	VCPU_CMD_RUN,
	VCPU_CMD_PAUSE,
	VCPU_CMD_STOP,
};

#define VM_MAX_INPUTS 8

struct vm_input {
	char id[65];
	unsigned kinds;
	vm_input_fn *fn;
	void *opaque;
};

/* A setup phase and how long it took (vm_setup_phases). */
#define VM_MAX_PHASES 48
struct vm_phase {
	const char *name; /* static */
	uint32_t us;
};

struct vm {
	struct vm_config *cfg;
	struct vm_host host;
	struct kvm kvm;
	struct guest_mem *mem;
	struct iobus *iobus;
	struct pci_host *pci; /* set by hw/pci/pci-host.c */
	struct cpuid_model cpu_model;

	pthread_mutex_t ctl_lock;
	struct ratelimit exit_rl; /* vCPU exit messages of this VM (vcpu.c, x86-emul.c) */
	_Atomic enum vm_run_state state;
	bool started; /* vCPU threads exist */
	bool spawned; /* they exist parked before the first vm_start (vm_spawn_vcpus) */
	bool dying;   /* vm_destroy has begun: requests are ignored */
	/* Setup phases of vm_build and vm_start (the thread building the VM). */
	struct vm_phase phases[VM_MAX_PHASES];
	unsigned n_phases;
	uint64_t phase_ns; /* when the last phase ended */

	/* vCPUs */
	struct vcpu **vcpus;
	unsigned n_vcpus;
	pthread_mutex_t run_lock;
	pthread_cond_t run_cond;
	enum vcpu_cmd vcpu_cmd;
	unsigned n_parked; /* threads waiting in the park loop (or exited) */
	/* vm_set_cpu_throttle: percent of the time vCPUs stay out of the guest, 0 = off. */
	_Atomic unsigned throttle_pct;

	/* I/O thread and requests */
	struct event_base *io_base;
	struct event *req_event;
	struct event *stop_event; /* activated to end the I/O thread's loop */
	pthread_t io_thread;
	bool io_started;
	int req_fd;		 /* eventfd poked by vm_request */
	atomic_uint req_pending; /* bit per enum vm_shutdown_cause */

	struct irq_routing *irq;

	struct vm_device *devices;
	unsigned n_devices, max_devices;
	struct hotplug *hotplug;   /* hw/hotplug.c */
	struct announce *announce; /* hw/announce.c; NULL until vm_announce */

	/* Input devices (hw/core/input.c), control thread only. */
	struct vm_input inputs[VM_MAX_INPUTS];
	unsigned n_inputs;
	char *(*usb_info)(void *opaque);
	void *usb_info_opaque;

	/* Power button (ACPI), set by the device that implements it. */
	int (*powerdown)(void *opaque);
	void *powerdown_opaque;

	struct boot_entry boot;
	char *console_socket;
	struct vm_ringbuf ringbuf; /* all NULL without the UART */

	/* Read-only memslots (vm_map_rom), after the RAM slots. */
	struct {
		uint64_t gpa;
		uint64_t len;
	} roms[VM_MAX_ROMS];

	/* Save/restore (vm-save.c): a save runs between vm_save_begin and _end. */
	bool saving;	  /* under ctl_lock */
	bool was_running; /* running at vm_save_begin */
	pthread_mutex_t hold_lock;
	pthread_cond_t hold_cond;
	bool held, release; /* the I/O thread parked in vm_io_hold's callback */

	/* In-kernel irqchip power-on state: PIC master, PIC slave, IOAPIC; PIT. */
	struct kvm_irqchip init_chips[3];
	struct kvm_pit_state2 init_pit;
};

/* vcpu.c */
int vcpu_new(struct vm *vm, unsigned index, struct vcpu **ret, struct error **errp);
void vcpu_free(struct vcpu *vcpu);
/* Power-on state: the state saved at creation, then the boot entry for the BSP. */
int vcpu_reset(struct vcpu *vcpu, const struct boot_entry *entry);
int vcpu_start_thread(struct vcpu *vcpu, struct error **errp);
void vcpu_join(struct vcpu *vcpu);
/* Interrupt KVM_RUN so the thread looks at vm->vcpu_cmd. Caller holds run_lock. */
void vcpu_kick(struct vcpu *vcpu);
/*
 * inject-nmi: the vCPU takes an NMI before it next runs guest code; a
 * parked one has it pending in KVM at once (so a save carries it). Caller
 * holds run_lock.
 */
void vcpu_inject_nmi(struct vcpu *vcpu);
/* Let a vCPU stalled by a fatal exit run again (after a reset). Caller holds run_lock. */
void vcpu_unstall(struct vcpu *vcpu);
/* Install the kick signal handler (idempotent, any thread). */
void vcpu_init_signals(void);
/*
 * Start (@on) or stop the timer that sends the vCPU's thread
 * VCPU_THROTTLE_SIGNAL every VCPU_THROTTLE_SLICE_NS; 0 or -errno. Caller
 * holds run_lock.
 */
int vcpu_throttle_timer(struct vcpu *vcpu, bool on);

/* vm.c: park all vCPUs (returns once all are parked) / release them. */
void vm_vcpus_pause(struct vm *vm);
void vm_vcpus_resume(struct vm *vm);

/*
 * vm.c: build the machine as vm_new does; @restoring skips loading the
 * kernel/firmware files into RAM (the snapshot's RAM replaces it).
 */
int vm_build(const struct vm_config *cfg, const struct vm_host *host, bool restoring,
	     struct vm **ret, struct error **errp);
/*
 * vm_build in two parts: the kernel's (the KVM VM, guest RAM and its
 * memslots, IRQ routing: the calls that wait for the kernel, ~15 ms) and
 * the rest (vCPUs, I/O thread, devices with their disks and NICs, reset).
 * vm_build_rest tears @vm down when it fails.
 */
int vm_build_kernel(const struct vm_config *cfg, const struct vm_host *host, struct vm **ret,
		    struct error **errp);
int vm_build_rest(struct vm *vm, bool restoring, struct error **errp);
/* Undo vm_build (for whatever part of it was done). */
void vm_teardown(struct vm *vm);
/* Reset devices, irqchip and vCPUs without loading the boot files (snapshot-load); paused. */
int vm_machine_reset_for_load(struct vm *vm, struct error **errp);
/* Start the vCPU threads of a restored VM, parked (paused) or running. ctl_lock not held. */
int vm_start_restored(struct vm *vm, bool paused, struct error **errp);
/*
 * Park the I/O thread in a callback until vm_io_release (no device
 * completion, timer or backend runs meanwhile). Not from the I/O thread.
 */
void vm_io_hold(struct vm *vm);
void vm_io_release(struct vm *vm);

/* irq.c */
int vm_irq_init(struct vm *vm, struct error **errp);
void vm_irq_fini(struct vm *vm);
