/*
 * The firmware tables of a direct (firmware-less) boot as a device: realize
 * and reset write the MP table, and the ACPI tables when vm_config.acpi is
 * true, into guest RAM below 1 MiB (hw/platform/acpi.h, hw/platform/mptable.h). Rewriting
 * them on reset undoes whatever the guest scribbled over them. With
 * boot.firmware the firmware builds its own tables and this device writes
 * nothing.
 *
 * Threads: control thread (realize, reset with the vCPUs paused).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/platform/acpi.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/platform/mptable.h"
#include "hw/pci/pci.h"
#include "hw/platform/platform.h"

struct platform_tables {
	struct vm *vm;
};

/* The SRAT of a VM with memory hotplug (also used by firmware.c for SeaBIOS). */
bool acpi_srat_from_config(const struct vm_config *cfg, struct acpi_srat_info *s)
{
	uint64_t end = vm_config_device_memory_end(cfg);

	if (!end) {
		return false;
	}
	memset(s, 0, sizeof(*s));
	s->ram_below_4g = cfg->memory < GUEST_MEM_HOLE_START ? cfg->memory : GUEST_MEM_HOLE_START;
	s->ram_above_4g = cfg->memory - s->ram_below_4g;
	s->hotplug_len = cfg->maxmem - cfg->memory;
	s->hotplug_base = end - s->hotplug_len;
	return true;
}

static int tables_write(struct vm *vm, struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(vm);
	struct acpi_srat_info srat;
	struct acpi_pci_info *pci;
	struct mptable_config mp = {.n_cpus = cfg->vcpus};
	struct acpi_config acpi = {
		.n_cpus = cfg->vcpus, .max_cpus = cfg->maxcpus, .pvpanic = cfg->pvpanic};
	int r;

	if (cfg->boot.firmware) {
		return 0;
	}
	/* The host bridge as hw/pci/pci.c lays it out: windows, ECAM, INTx routes. */
	pci = malloc(sizeof(*pci));
	if (!pci) {
		return error_set(errp, ENOMEM, "platform tables: out of memory");
	}
	pci_acpi_info(pci);
	mp.pci = acpi.pci = pci;
	if (acpi_srat_from_config(cfg, &srat)) {
		acpi.srat = &srat;
	}
	r = mptable_build(vm_guest_mem(vm), &mp, errp);
	if (r >= 0 && cfg->acpi) {
		r = acpi_build(vm_guest_mem(vm), &acpi, errp);
	}
	free(pci);
	return r;
}

static int tables_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct platform_tables *t;
	int r = tables_write(vm, errp);

	if (r < 0) {
		return r;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		return error_set(errp, ENOMEM, "platform tables: out of memory");
	}
	t->vm = vm;
	*ret_state = t;
	return 0;
}

static void tables_unrealize(void *state)
{
	free(state);
}

static void tables_reset(void *state)
{
	struct platform_tables *t = state;

	/* Guest RAM did not change size since realize, so this cannot fail. */
	tables_write(t->vm, NULL);
}

const struct device_class platform_tables_class = {
	.name = "platform-tables",
	.realize = tables_realize,
	.unrealize = tables_unrealize,
	.reset = tables_reset,
	.stateless = true, /* the tables live in guest RAM */
};
