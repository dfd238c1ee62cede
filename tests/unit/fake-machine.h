/*
 * The fake machine of the device unit tests: it implements exactly the
 * machine services of hw/device.h (plus vm_name/vm_get_state of
 * include/vmmd/vm.h), over the real guest memory (hw/core/memory.c) and
 * the real I/O bus (hw/core/iobus.c), without KVM. Interrupts, requests,
 * events and the side channels are recorded for the test to inspect. A
 * device test links this file, its device's hw/<group>/lib*.a and
 * hw/core/libhwcore.a (for memory.o and iobus.o only).
 *
 * Threads: single-threaded; the test runs the I/O loop (@base) itself.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "hw/core/iobus.h"
#include "hw/device.h"

struct event_base;

/*
 * A VM with @cfg (borrowed; NULL: a default named "t"), @ram_size bytes of
 * anonymous guest RAM (0: none) and @base as its I/O thread loop (may be
 * NULL). Never NULL.
 */
struct vm *fake_vm_new(const struct vm_config *cfg, uint64_t ram_size, struct event_base *base);
void fake_vm_free(struct vm *vm);

/* Host view of guest RAM at @gpa (RAM below the PCI hole is one mapping). */
uint8_t *fake_vm_ram(struct vm *vm, uint64_t gpa);
/* The host hooks devices see through vm_get_host() (run_dir, ...). */
struct vm_host *fake_vm_host(struct vm *vm);
/* Ranges registered on the VM's I/O bus (leak checks). */
unsigned fake_vm_ranges(struct vm *vm);
/* Run state for vm_get_state(); VM_CAUSE_IO_ERROR requests also set io-error. */
void fake_vm_set_state(struct vm *vm, enum vm_run_state s);
/* How many vm_request(@cause) / vm_emit_event() calls were made. */
unsigned fake_vm_requests(struct vm *vm, enum vm_shutdown_cause cause);
/* How many vm_request() calls were made with a cause other than @cause. */
unsigned fake_vm_other_requests(struct vm *vm, enum vm_shutdown_cause cause);
unsigned fake_vm_events(struct vm *vm);
/* The power button a device registered: -ENOENT if none, else its result. */
int fake_vm_power_button(struct vm *vm);
bool fake_vm_has_power_button(struct vm *vm);
/* The path a device published with vm_set_console_socket(), or NULL. */
const char *fake_vm_console_socket(struct vm *vm);
/* What a device published with vm_set_ringbuf() (all NULL if nothing). */
const struct vm_ringbuf *fake_vm_ringbuf(struct vm *vm);
/* Make @state the realized state of @cls for vm_device_state(). */
void fake_vm_add_device(struct vm *vm, const struct device_class *cls, void *state);

/*
 * MSI: by default irqfd routes fail (-ENOSYS) and devices fall back to
 * vm_msi_signal(); with @on, vm_msi_route_add() hands out GSIs 100, 101, ...
 * The counters say how many routes were added/released and MSIs signalled.
 */
void fake_vm_set_msi_routes(struct vm *vm, bool on);
unsigned fake_vm_msi_routes_added(struct vm *vm);
unsigned fake_vm_msi_routes_released(struct vm *vm);
unsigned fake_vm_msi_signals(struct vm *vm);

/* Level of GSI @gsi as last set through vm_irq_set_level(), and its number of rising edges. */
int fake_irq_level(unsigned gsi);
unsigned fake_irq_raises(unsigned gsi);
void fake_irq_clear(void);
