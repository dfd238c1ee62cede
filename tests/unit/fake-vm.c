/* Fake struct vm for device-class unit tests (see fake-vm.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "hw/device.h"
#include "tests/unit/fake-vm.h"

struct vm {
	const struct vm_config *cfg;
	struct vm_host host;
	struct iobus *bus;
	struct guest_mem *mem;
	struct event_base *base;
	struct pci_host *pci;
};

struct vm *fake_vm_new(const struct vm_config *cfg, struct iobus *bus, struct guest_mem *mem,
		       struct event_base *base)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	vm->cfg = cfg;
	vm->bus = bus;
	vm->mem = mem;
	vm->base = base;
	if (pci_host_new(vm, bus, &vm->pci, NULL) < 0) {
		free(vm);
		return NULL;
	}
	return vm;
}

void fake_vm_free(struct vm *vm)
{
	if (vm) {
		pci_host_free(vm->pci);
		free(vm);
	}
}

const struct vm_config *vm_get_config(struct vm *vm)
{
	return vm->cfg;
}

const struct vm_host *vm_get_host(struct vm *vm)
{
	return &vm->host;
}

struct iobus *vm_iobus(struct vm *vm)
{
	return vm->bus;
}

struct guest_mem *vm_guest_mem(struct vm *vm)
{
	return vm->mem;
}

struct event_base *vm_io_base(struct vm *vm)
{
	return vm->base;
}

const char *vm_name(struct vm *vm)
{
	return vm->cfg->name;
}

struct pci_host *pci_host_of(struct vm *vm)
{
	return vm->pci;
}

void vm_request(struct vm *vm, enum vm_shutdown_cause cause)
{
	(void)vm;
	(void)cause;
}

void vm_emit_event(struct vm *vm, const char *name, json_t *data)
{
	(void)vm;
	(void)name;
	json_decref(data);
}

int vm_msi_signal(struct vm *vm, uint64_t addr, uint32_t data)
{
	(void)vm;
	(void)addr;
	(void)data;
	return 0;
}

int vm_msi_route_add(struct vm *vm, int fd, uint64_t addr, uint32_t data)
{
	(void)vm;
	(void)fd;
	(void)addr;
	(void)data;
	return -ENOSYS;
}

int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data)
{
	(void)vm;
	(void)gsi;
	(void)addr;
	(void)data;
	return -ENOSYS;
}

void vm_msi_route_release(struct vm *vm, int gsi, int fd)
{
	(void)vm;
	(void)gsi;
	(void)fd;
}

int vm_map_rom(struct vm *vm, uint64_t gpa, void *host, uint64_t len, struct error **errp)
{
	(void)vm;
	(void)gpa;
	(void)host;
	(void)len;
	(void)errp;
	return 0;
}

void vm_unmap_rom(struct vm *vm, uint64_t gpa)
{
	(void)vm;
	(void)gpa;
}
