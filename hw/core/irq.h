/*
 * Interrupt delivery into the in-kernel irqchip: GSI lines (IOAPIC/PIC),
 * MSI messages, and the eventfd plumbing (irqfd for interrupts raised from
 * an I/O thread, ioeventfd for guest notifications that skip the vCPU exit).
 *
 * Threads: any thread of the VM. Routing table updates are serialized by
 * an internal mutex.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct vm;

/* Drive GSI @gsi to @level (edge devices pulse 1 then 0). */
int vm_irq_set_level(struct vm *vm, unsigned gsi, int level);
/* Deliver one MSI message now. */
int vm_msi_signal(struct vm *vm, uint64_t addr, uint32_t data);

/*
 * Allocate a GSI routed to an MSI message and bind @fd to it as an irqfd:
 * writing 1 to @fd raises the interrupt without any user-space hop.
 * Returns the GSI (>= 0) or -errno. vm_msi_route_update() changes the
 * message (MSI-X table writes); vm_msi_route_release() unbinds and frees.
 */
int vm_msi_route_add(struct vm *vm, int fd, uint64_t addr, uint32_t data);
int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data);
void vm_msi_route_release(struct vm *vm, int gsi, int fd);

/* Bind @fd as an irqfd to a plain GSI line (INTx); @resample_fd may be -1. */
int vm_irqfd_gsi(struct vm *vm, int fd, unsigned gsi, bool assign);

/*
 * Guest writes of @len bytes to @addr (MMIO, or PIO when @pio) signal @fd
 * instead of exiting to user space. @datamatch < 0 matches any value.
 */
int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool pio, int64_t datamatch,
		 bool assign);
