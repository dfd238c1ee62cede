/*
 * ACPI PCI hotplug registers with QEMU's i440fx ABI (hw/platform/
 * acpi-hotplug.h): PCIU, PCID, B0EJ, RMV, BNUM and PIDX, 32 bits each at
 * 0xAE00..0xAE17. Only bus 0 takes hotplug, as on QEMU's pc machine
 * without bridges: BNUM keeps what the guest wrote, and with a bus other
 * than 0 selected the slot registers read 0 and ejects are ignored.
 *
 * Access size: QEMU declares the block 4-byte only. Reads of 1 or 2 bytes
 * return those bytes of the register; writes narrower than 4 bytes or not
 * 4-byte aligned are ignored (logged, rate-limited).
 *
 * Semantics copied from QEMU 7.2: PCIU clears when read (the bridge-capable
 * variant QEMU uses on pc-i440fx >= 2.0); a plug sets PCIU, an unplug
 * request sets PCID, both raise GPE0 bit 1; writing B0EJ ejects the lowest
 * slot in the mask and clears its PCID bit; a reset ejects every slot with
 * PCID set, then clears PCIU/PCID. No device has an acpi-index: PIDX reads 0.
 *
 * Threads: see the header; hp->lock protects the registers.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/platform/acpi.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/platform/acpi-hotplug.h"

struct acpi_pcihp {
	struct vm *vm;
	struct iobus *bus;
	pthread_mutex_t lock;
	uint32_t up, down;
	uint32_t fixed; /* slots whose device is not removable (RMV bit clear) */
	uint32_t bsel;
	acpi_pcihp_eject_fn *eject;
	void *eject_opaque;
	struct ratelimit rl;
};

static void pcihp_raise(struct acpi_pcihp *hp)
{
	void *pm = hp->vm ? vm_device_state(hp->vm, &acpi_pm_class) : NULL;

	if (pm) {
		acpi_pm_raise_gpe(pm, ACPI_GPE_PCI_HOTPLUG);
	}
}

/* Caller holds hp->lock. */
static uint32_t pcihp_read_reg(struct acpi_pcihp *hp, unsigned reg)
{
	uint32_t v = 0;

	if (reg == ACPI_PCIHP_SEL) {
		return hp->bsel;
	}
	if (hp->bsel != 0) {
		return 0; /* no other bus takes hotplug */
	}
	switch (reg) {
	case ACPI_PCIHP_UP:
		v = hp->up;
		hp->up = 0;
		break;
	case ACPI_PCIHP_DOWN:
		v = hp->down;
		break;
	case ACPI_PCIHP_RMV:
		v = ~hp->fixed;
		break;
	default: /* B0EJ: no feature bits; PIDX: no acpi-index */
		break;
	}
	return v;
}

static uint64_t pcihp_pio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct acpi_pcihp *hp = opaque;
	unsigned reg = (unsigned)(offset & ~3ull), sh = (unsigned)(offset & 3) * 8;
	uint64_t v;

	if (offset >= ACPI_PCIHP_LEN || size > 4) {
		return 0;
	}
	pthread_mutex_lock(&hp->lock);
	v = pcihp_read_reg(hp, reg) >> sh;
	pthread_mutex_unlock(&hp->lock);
	return size == 4 ? (uint32_t)v : v & ((1ull << (8 * size)) - 1);
}

static void pcihp_pio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct acpi_pcihp *hp = opaque;
	uint32_t v = (uint32_t)value;
	int eject_slot = -1;

	if (size != 4 || (offset & 3) || offset >= ACPI_PCIHP_LEN) {
		log_ratelimited(&hp->rl, LOG_NOTICE, hp->vm ? vm_name(hp->vm) : NULL, "acpi-pcihp",
				"ignored %u-byte write at offset 0x%x", size, (unsigned)offset);
		return;
	}
	pthread_mutex_lock(&hp->lock);
	switch (offset) {
	case ACPI_PCIHP_EJECT:
		if (hp->bsel == 0 && v) {
			eject_slot = __builtin_ctz(v);
			hp->down &= ~(1u << eject_slot);
		}
		break;
	case ACPI_PCIHP_SEL:
		hp->bsel = v;
		break;
	default: /* PCIU, PCID, RMV are read-only; PIDX selects a slot with no index */
		break;
	}
	pthread_mutex_unlock(&hp->lock);
	if (eject_slot > 0 && hp->eject) {
		hp->eject(hp->eject_opaque, (unsigned)eject_slot);
	}
}

static const struct iobus_ops pcihp_ops = {
	.read = pcihp_pio_read,
	.write = pcihp_pio_write,
};

void acpi_pcihp_set_eject_handler(struct acpi_pcihp *hp, acpi_pcihp_eject_fn *fn, void *opaque)
{
	pthread_mutex_lock(&hp->lock);
	hp->eject = fn;
	hp->eject_opaque = opaque;
	pthread_mutex_unlock(&hp->lock);
}

void acpi_pcihp_plug(struct acpi_pcihp *hp, unsigned slot)
{
	if (slot == 0 || slot >= 32) {
		return;
	}
	pthread_mutex_lock(&hp->lock);
	hp->up |= 1u << slot;
	hp->down &= ~(1u << slot);
	pthread_mutex_unlock(&hp->lock);
	pcihp_raise(hp);
}

void acpi_pcihp_unplug_request(struct acpi_pcihp *hp, unsigned slot)
{
	if (slot == 0 || slot >= 32) {
		return;
	}
	pthread_mutex_lock(&hp->lock);
	hp->down |= 1u << slot;
	pthread_mutex_unlock(&hp->lock);
	pcihp_raise(hp);
}

void acpi_pcihp_set_removable(struct acpi_pcihp *hp, unsigned slot, bool removable)
{
	if (slot == 0 || slot >= 32) {
		return;
	}
	pthread_mutex_lock(&hp->lock);
	if (removable) {
		hp->fixed &= ~(1u << slot);
	} else {
		hp->fixed |= 1u << slot;
	}
	pthread_mutex_unlock(&hp->lock);
}

uint32_t acpi_pcihp_pending_removals(struct acpi_pcihp *hp)
{
	uint32_t v;

	pthread_mutex_lock(&hp->lock);
	v = hp->down;
	pthread_mutex_unlock(&hp->lock);
	return v;
}

static int pcihp_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct acpi_pcihp *hp = calloc(1, sizeof(*hp));
	int r;

	(void)cfg;
	if (!hp) {
		return error_set(errp, ENOMEM, "acpi-pcihp: out of memory");
	}
	hp->vm = vm;
	hp->bus = vm_iobus(vm);
	hp->fixed = 1u; /* slot 0: the host bridge */
	hp->rl = (struct ratelimit)RATELIMIT_INIT(5 * 1000000, 3);
	pthread_mutex_init(&hp->lock, NULL);
	r = iobus_register(hp->bus, IOBUS_PIO, ACPI_PCIHP_BASE, ACPI_PCIHP_LEN, &pcihp_ops, hp,
			   "acpi-pcihp", errp);
	if (r < 0) {
		pthread_mutex_destroy(&hp->lock);
		free(hp);
		return r;
	}
	*ret_state = hp;
	return 0;
}

static void pcihp_unrealize(void *state)
{
	struct acpi_pcihp *hp = state;

	if (!hp) {
		return;
	}
	iobus_unregister(hp->bus, IOBUS_PIO, ACPI_PCIHP_BASE);
	pthread_mutex_destroy(&hp->lock);
	free(hp);
}

/* QEMU's acpi_pcihp_reset: pending removals complete, then the slate is clean. */
static void pcihp_reset(void *state)
{
	struct acpi_pcihp *hp = state;
	uint32_t down;

	pthread_mutex_lock(&hp->lock);
	down = hp->down;
	hp->down = 0;
	hp->up = 0;
	hp->bsel = 0;
	pthread_mutex_unlock(&hp->lock);
	for (unsigned slot = 1; slot < 32; slot++) {
		if ((down & (1u << slot)) && hp->eject) {
			hp->eject(hp->eject_opaque, slot);
		}
	}
}

static bool pcihp_wanted(const struct vm_config *cfg, const void *item)
{
	return cfg->acpi;
}

/* The pending insert/remove bitmaps and the bus selector (QEMU migrates the same). */
static int pcihp_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct acpi_pcihp *hp = state;

	pthread_mutex_lock(&hp->lock);
	vmstate_put_u32(out, hp->up);
	vmstate_put_u32(out, hp->down);
	vmstate_put_u32(out, hp->fixed);
	vmstate_put_u32(out, hp->bsel);
	pthread_mutex_unlock(&hp->lock);
	return 0;
}

static int pcihp_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct acpi_pcihp *hp = state;
	uint32_t up = vmstate_get_u32(in), down = vmstate_get_u32(in);
	uint32_t fixed = vmstate_get_u32(in), bsel = vmstate_get_u32(in);
	int r = vmstate_check_end(in, "the ACPI PCI hotplug registers", errp);

	if (r < 0) {
		return r;
	}
	pthread_mutex_lock(&hp->lock);
	hp->up = up;
	hp->down = down;
	hp->fixed = fixed;
	hp->bsel = bsel;
	pthread_mutex_unlock(&hp->lock);
	return 0;
}

const struct device_class acpi_pcihp_class = {
	.name = "acpi-pcihp",
	.each = DEVICE_ONCE,
	.wanted = pcihp_wanted,
	.realize = pcihp_realize,
	.unrealize = pcihp_unrealize,
	.reset = pcihp_reset,
	.state_version = 1,
	.save = pcihp_save,
	.load = pcihp_load,
};
