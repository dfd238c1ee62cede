/* The fake machine of the device unit tests (see fake-machine.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/core/memory.h"
#include "tests/unit/fake-machine.h"

#define FAKE_MAX_DEVICES 8

struct vm {
	struct vm_config dflt;
	const struct vm_config *cfg;
	struct vm_host host;
	struct iobus *bus;
	struct guest_mem *mem;
	struct event_base *base;
	struct pci_host *pci;
	enum vm_run_state state;
	unsigned requests[VM_CAUSE_IO_ERROR + 1];
	unsigned events;
	bool msi_routes;
	unsigned routes_added, routes_released, msi_signals;
	int (*powerdown)(void *opaque);
	void *powerdown_opaque;
	char *console_socket;
	struct vm_ringbuf ringbuf;
	struct {
		const struct device_class *cls;
		void *state;
	} devices[FAKE_MAX_DEVICES];
	unsigned n_devices;
};

struct vm *fake_vm_new(const struct vm_config *cfg, uint64_t ram_size, struct event_base *base)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct error *err = NULL;

	if (!vm) {
		abort();
	}
	vm->dflt.name = "t";
	vm->cfg = cfg ? cfg : &vm->dflt;
	vm->base = base;
	vm->state = VM_STATE_RUNNING;
	vm->bus = iobus_new(vm->cfg->name);
	if (!vm->bus || (ram_size && guest_mem_new(ram_size, "anonymous", &vm->mem, &err) < 0)) {
		abort();
	}
	return vm;
}

void fake_vm_free(struct vm *vm)
{
	if (!vm) {
		return;
	}
	iobus_free(vm->bus);
	guest_mem_free(vm->mem);
	free(vm->console_socket);
	free(vm);
}

uint8_t *fake_vm_ram(struct vm *vm, uint64_t gpa)
{
	return guest_mem_ptr(vm->mem, gpa, 0);
}

struct vm_host *fake_vm_host(struct vm *vm)
{
	return &vm->host;
}

unsigned fake_vm_ranges(struct vm *vm)
{
	return iobus_count(vm->bus);
}

void fake_vm_set_state(struct vm *vm, enum vm_run_state s)
{
	vm->state = s;
}

unsigned fake_vm_requests(struct vm *vm, enum vm_shutdown_cause cause)
{
	return vm->requests[cause];
}

unsigned fake_vm_other_requests(struct vm *vm, enum vm_shutdown_cause cause)
{
	unsigned n = 0;

	for (unsigned c = 0; c <= VM_CAUSE_IO_ERROR; c++) {
		n += c == cause ? 0 : vm->requests[c];
	}
	return n;
}

unsigned fake_vm_events(struct vm *vm)
{
	return vm->events;
}

int fake_vm_power_button(struct vm *vm)
{
	return vm->powerdown ? vm->powerdown(vm->powerdown_opaque) : -ENOENT;
}

bool fake_vm_has_power_button(struct vm *vm)
{
	return vm->powerdown != NULL;
}

const char *fake_vm_console_socket(struct vm *vm)
{
	return vm->console_socket;
}

const struct vm_ringbuf *fake_vm_ringbuf(struct vm *vm)
{
	return &vm->ringbuf;
}

void fake_vm_add_device(struct vm *vm, const struct device_class *cls, void *state)
{
	if (vm->n_devices == FAKE_MAX_DEVICES) {
		abort();
	}
	vm->devices[vm->n_devices].cls = cls;
	vm->devices[vm->n_devices++].state = state;
}

void fake_vm_set_msi_routes(struct vm *vm, bool on)
{
	vm->msi_routes = on;
}

unsigned fake_vm_msi_routes_added(struct vm *vm)
{
	return vm->routes_added;
}

unsigned fake_vm_msi_routes_released(struct vm *vm)
{
	return vm->routes_released;
}

unsigned fake_vm_msi_signals(struct vm *vm)
{
	return vm->msi_signals;
}

/* ---- hw/device.h ---- */

struct iobus *vm_iobus(struct vm *vm)
{
	return vm->bus;
}

struct guest_mem *vm_guest_mem(struct vm *vm)
{
	return vm->mem;
}

const struct vm_config *vm_get_config(struct vm *vm)
{
	return vm->cfg;
}

const struct vm_host *vm_get_host(struct vm *vm)
{
	return &vm->host;
}

struct event_base *vm_io_base(struct vm *vm)
{
	return vm->base;
}

const char *vm_name(struct vm *vm)
{
	return vm->cfg->name;
}

enum vm_run_state vm_get_state(struct vm *vm)
{
	return vm->state;
}

static int irq_levels[256];
static unsigned irq_raises[256];

int vm_irq_set_level(struct vm *vm, unsigned gsi, int level)
{
	if (gsi >= 256) {
		return -EINVAL;
	}
	if (level && !irq_levels[gsi]) {
		irq_raises[gsi]++;
	}
	irq_levels[gsi] = level;
	return 0;
}

int fake_irq_level(unsigned gsi)
{
	return irq_levels[gsi];
}

unsigned fake_irq_raises(unsigned gsi)
{
	return irq_raises[gsi];
}

void fake_irq_clear(void)
{
	memset(irq_levels, 0, sizeof(irq_levels));
	memset(irq_raises, 0, sizeof(irq_raises));
}

int vm_msi_signal(struct vm *vm, uint64_t addr, uint32_t data)
{
	vm->msi_signals++;
	return 0;
}

/* No ioeventfds (the MMIO path); irqfd routes only if the test asked for them. */
int vm_msi_route_add(struct vm *vm, int fd, uint64_t addr, uint32_t data)
{
	return vm->msi_routes ? 100 + (int)vm->routes_added++ : -ENOSYS;
}

int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data)
{
	return 0;
}

void vm_msi_route_release(struct vm *vm, int gsi, int fd)
{
	vm->routes_released++;
}

int vm_irqfd_gsi(struct vm *vm, int fd, unsigned gsi, bool assign)
{
	return -ENOSYS;
}

int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool pio, int64_t datamatch,
		 bool assign)
{
	return -ENOSYS;
}

/* No memory slots: a ROM mapping is accepted and not backed. */
int vm_map_rom(struct vm *vm, uint64_t gpa, void *host, uint64_t len, struct error **errp)
{
	return 0;
}

void vm_unmap_rom(struct vm *vm, uint64_t gpa)
{
}

void *vm_device_state(struct vm *vm, const struct device_class *cls)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		if (vm->devices[i].cls == cls) {
			return vm->devices[i].state;
		}
	}
	return NULL;
}

/* No blockdev-add nodes on the fake machine (hw/hotplug.c has the real table). */
struct block_node *vm_block_node_get(struct vm *vm, const char *node_name, struct error **errp)
{
	(void)vm;
	error_set(errp, ENOENT, "no node '%s'", node_name);
	return NULL;
}

void vm_request(struct vm *vm, enum vm_shutdown_cause cause)
{
	vm->requests[cause]++;
	if (cause == VM_CAUSE_IO_ERROR) {
		vm->state = VM_STATE_IO_ERROR;
	}
}

void vm_emit_event(struct vm *vm, const char *name, json_t *data)
{
	vm->events++;
	json_decref(data);
}

void vm_set_powerdown_handler(struct vm *vm, int (*fn)(void *opaque), void *opaque)
{
	vm->powerdown = fn;
	vm->powerdown_opaque = opaque;
}

void vm_set_console_socket(struct vm *vm, const char *path)
{
	free(vm->console_socket);
	vm->console_socket = path ? strdup(path) : NULL;
}

void vm_set_ringbuf(struct vm *vm, const struct vm_ringbuf *rb)
{
	vm->ringbuf = rb ? *rb : (struct vm_ringbuf){0};
}

void vm_set_pci_host(struct vm *vm, struct pci_host *host)
{
	vm->pci = host;
}

struct pci_host *vm_pci_host(struct vm *vm)
{
	return vm->pci;
}
