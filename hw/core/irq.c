/*
 * Interrupts into the in-kernel irqchip: GSI lines, MSI messages, MSI
 * routes bound to irqfds, and ioeventfds (declared in hw/device.h).
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so this file keeps the
 * table: the default irqchip routes (GSI 0-15 to the PICs and the IOAPIC,
 * 16-23 to the IOAPIC) followed by one MSI route per allocated GSI.
 *
 * Threads: any VM thread; routing_lock protects the table.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hw/device.h"
#include "hw/core/vm-int.h"

#define IRQ_IOAPIC_PINS 24
#define IRQ_MAX_GSI 1024

struct irq_routing {
	pthread_mutex_t lock;
	unsigned max_gsi;
	bool used[IRQ_MAX_GSI];
	struct {
		uint64_t addr;
		uint32_t data;
	} msi[IRQ_MAX_GSI];
	struct kvm_irq_routing *table; /* scratch, sized for every route */
};

/* Push the whole table to KVM. Caller holds the lock. */
static int commit(struct vm *vm)
{
	struct irq_routing *ir = vm->irq;
	struct kvm_irq_routing *t = ir->table;
	unsigned n = 0;

	for (unsigned gsi = 0; gsi < IRQ_IOAPIC_PINS; gsi++) {
		if (gsi < 16) {
			t->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi,
				.type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = {.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
								 : KVM_IRQCHIP_PIC_SLAVE,
					      .pin = gsi % 8},
			};
		}
		t->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi,
			.type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = {.irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi},
		};
	}
	for (unsigned gsi = IRQ_IOAPIC_PINS; gsi < ir->max_gsi; gsi++) {
		if (!ir->used[gsi]) {
			continue;
		}
		t->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi,
			.type = KVM_IRQ_ROUTING_MSI,
			.u.msi = {.address_lo = (uint32_t)ir->msi[gsi].addr,
				  .address_hi = (uint32_t)(ir->msi[gsi].addr >> 32),
				  .data = ir->msi[gsi].data},
		};
	}
	t->nr = n;
	t->flags = 0;
	if (ioctl(vm->kvm.vm_fd, KVM_SET_GSI_ROUTING, t) < 0) {
		return -errno;
	}
	return 0;
}

int vm_irq_init(struct vm *vm, struct error **errp)
{
	struct irq_routing *ir;
	int r;

	ir = calloc(1, sizeof(*ir));
	if (!ir) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	ir->max_gsi = MIN(vm->kvm.max_routes, IRQ_MAX_GSI);
	ir->table =
		calloc(1, sizeof(*ir->table) + (ir->max_gsi + 16) * sizeof(ir->table->entries[0]));
	if (!ir->table) {
		free(ir);
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&ir->lock, NULL);
	vm->irq = ir;
	pthread_mutex_lock(&ir->lock);
	r = commit(vm);
	pthread_mutex_unlock(&ir->lock);
	if (r < 0) {
		return error_set_errno(errp, r, "KVM_SET_GSI_ROUTING failed");
	}
	return 0;
}

void vm_irq_fini(struct vm *vm)
{
	if (!vm->irq) {
		return;
	}
	pthread_mutex_destroy(&vm->irq->lock);
	free(vm->irq->table);
	free(vm->irq);
	vm->irq = NULL;
}

int vm_irq_set_level(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level l = {.irq = gsi, .level = level ? 1 : 0};

	if (gsi >= IRQ_IOAPIC_PINS) {
		return -EINVAL;
	}
	if (ioctl(vm->kvm.vm_fd, KVM_IRQ_LINE, &l) < 0) {
		return -errno;
	}
	return 0;
}

int vm_msi_signal(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};
	int r = ioctl(vm->kvm.vm_fd, KVM_SIGNAL_MSI, &msi);

	if (r < 0) {
		return -errno;
	}
	return 0;
}

static int irqfd(struct vm *vm, int fd, unsigned gsi, int resample_fd, bool assign)
{
	struct kvm_irqfd f = {
		.fd = (uint32_t)fd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	if (assign && resample_fd >= 0) {
		f.flags |= KVM_IRQFD_FLAG_RESAMPLE;
		f.resamplefd = (uint32_t)resample_fd;
	}
	if (ioctl(vm->kvm.vm_fd, KVM_IRQFD, &f) < 0) {
		return -errno;
	}
	return 0;
}

int vm_msi_route_add(struct vm *vm, int fd, uint64_t addr, uint32_t data)
{
	struct irq_routing *ir = vm->irq;
	int gsi = -ENOSPC;
	int r;

	pthread_mutex_lock(&ir->lock);
	for (unsigned g = IRQ_IOAPIC_PINS; g < ir->max_gsi; g++) {
		if (!ir->used[g]) {
			gsi = (int)g;
			break;
		}
	}
	if (gsi < 0) {
		goto out;
	}
	ir->used[gsi] = true;
	ir->msi[gsi].addr = addr;
	ir->msi[gsi].data = data;
	r = commit(vm);
	if (r == 0 && fd >= 0) {
		r = irqfd(vm, fd, (unsigned)gsi, -1, true);
	}
	if (r < 0) {
		ir->used[gsi] = false;
		commit(vm);
		gsi = r;
	}
out:
	pthread_mutex_unlock(&ir->lock);
	return gsi;
}

int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data)
{
	struct irq_routing *ir = vm->irq;
	int r;

	pthread_mutex_lock(&ir->lock);
	if (gsi < IRQ_IOAPIC_PINS || (unsigned)gsi >= ir->max_gsi || !ir->used[gsi]) {
		r = -EINVAL;
	} else if (ir->msi[gsi].addr == addr && ir->msi[gsi].data == data) {
		r = 0;
	} else {
		ir->msi[gsi].addr = addr;
		ir->msi[gsi].data = data;
		r = commit(vm);
	}
	pthread_mutex_unlock(&ir->lock);
	return r;
}

void vm_msi_route_release(struct vm *vm, int gsi, int fd)
{
	struct irq_routing *ir = vm->irq;

	pthread_mutex_lock(&ir->lock);
	if (gsi >= IRQ_IOAPIC_PINS && (unsigned)gsi < ir->max_gsi && ir->used[gsi]) {
		if (fd >= 0) {
			irqfd(vm, fd, (unsigned)gsi, -1, false);
		}
		ir->used[gsi] = false;
		commit(vm);
	}
	pthread_mutex_unlock(&ir->lock);
}

int vm_irqfd_gsi(struct vm *vm, int fd, unsigned gsi, bool assign)
{
	if (gsi >= IRQ_IOAPIC_PINS) {
		return -EINVAL;
	}
	return irqfd(vm, fd, gsi, -1, assign);
}

int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool pio, int64_t datamatch,
		 bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = addr,
		.len = len,
		.fd = fd,
	};

	if (len != 0 && len != 1 && len != 2 && len != 4 && len != 8) {
		return -EINVAL;
	}
	if (pio) {
		io.flags |= KVM_IOEVENTFD_FLAG_PIO;
	}
	if (datamatch >= 0) {
		io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
		io.datamatch = (uint64_t)datamatch;
	}
	if (!assign) {
		io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	}
	if (ioctl(vm->kvm.vm_fd, KVM_IOEVENTFD, &io) < 0) {
		return -errno;
	}
	return 0;
}
