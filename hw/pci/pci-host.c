/*
 * The PCI host bridge as a device class: realize creates the VM's host
 * (hw/pci/pci.c) and publishes it for the PCI devices realized after it
 * (virtio, IDE, e1000 call pci_host_of()). It must come before them in
 * hw/devices.c.
 *
 * Threads: control thread (realize/unrealize); pci_host_of() from any
 * thread once realized.
 */
#include "config.h"

#include "hw/device.h"
#include "hw/devices.h"
#include "common/vmstate.h"
#include "hw/pci/pci.h"

struct pci_host *pci_host_of(struct vm *vm)
{
	return vm_pci_host(vm);
}

static int pci_host_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct pci_host *h;
	int r;

	(void)cfg;
	r = pci_host_new(vm, vm_iobus(vm), &h, errp);
	if (r < 0) {
		return r;
	}
	vm_set_pci_host(vm, h);
	*ret_state = h;
	return 0;
}

static void pci_host_unrealize(void *state)
{
	struct pci_host *h = state;

	vm_set_pci_host(pci_host_vm(h), NULL);
	pci_host_free(h);
}

static int pci_host_save_state(void *state, struct vmstate_buf *out, struct error **errp)
{
	pci_host_save(state, out);
	return 0;
}

static int pci_host_load_state(void *state, struct vmstate_buf *in, unsigned version,
			       struct error **errp)
{
	int r = pci_host_load(state, in, errp);

	return r < 0 ? r : vmstate_check_end(in, "the PCI host bridge", errp);
}

static json_t *pci_host_query_pci(void *state)
{
	return pci_host_query(state);
}

const struct device_class pci_host_class = {
	.name = "pci-host",
	.realize = pci_host_realize,
	.unrealize = pci_host_unrealize,
	.state_version = 1,
	.save = pci_host_save_state,
	.load = pci_host_load_state,
	.query_pci = pci_host_query_pci,
};
