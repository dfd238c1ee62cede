/*
 * ACPI CPU hotplug registers with QEMU's ABI (hw/platform/acpi-cpuhp.h):
 * a selector, a status/control byte, a command byte and command data at
 * 0xAF00..0xAF0B. Semantics copied from QEMU 7.2's hw/acpi/cpu.c:
 *
 * - A selector at or beyond maxcpus makes reads return 0 and every write
 *   but a new selector be ignored; on reset the selector keeps its value.
 * - Status: bit 0 the vCPU is present, bit 1 insert event, bit 2 remove
 *   event. Control writes: bit 1 clears the insert event, else bit 2 the
 *   remove event, else bit 3 ejects (never vCPU 0, never an absent one).
 * - Command 0 selects the next vCPU with an event, searching round from
 *   the current selector; command data then reads the selector. Command 3
 *   makes command data read the APIC ID (= the selector here) and command
 *   data 2 its upper half (0). Commands 1 and 2 store _OST's event and
 *   status; the status write reports both (QEMU's ACPI_DEVICE_OST).
 *
 * Legacy mode, as QEMU's PIIX4: until the guest first writes the selector
 * (what the DSDT's \_SB.PRES._INI does), reads return the legacy present
 * bitmap (bit per APIC ID), writes other than the selector are ignored,
 * and a removal cannot be requested (acpi_cpuhp_modern() is false); the
 * switch is one-way and survives resets, as in QEMU.
 *
 * Access: any size from 1 to 4 bytes, as QEMU (min 1, max 4); a write
 * wider than its register is applied to the register it starts at.
 *
 * Threads: see the header; c->lock protects all state.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/platform/acpi-cpuhp.h"
#include "hw/platform/acpi.h"

#define CPUHP_MAX ACPI_MAX_CPUS

struct cpuhp_slot {
	bool present, inserting, removing;
	uint32_t ost_event, ost_status;
};

struct acpi_cpuhp {
	struct vm *vm;
	struct iobus *bus;
	pthread_mutex_t lock;
	unsigned n;  /* maxcpus */
	bool modern; /* the guest switched from the legacy interface */
	uint32_t selector;
	uint8_t command;
	struct cpuhp_slot cpus[CPUHP_MAX];
	struct acpi_cpuhp_handlers h;
	void *opaque;
};

static void cpuhp_raise(struct acpi_cpuhp *c)
{
	void *pm = vm_device_state(c->vm, &acpi_pm_class);

	if (pm) {
		acpi_pm_raise_gpe(pm, ACPI_GPE_CPU_HOTPLUG);
	}
}

static uint64_t cpuhp_read(void *opaque, uint64_t offset, unsigned size)
{
	struct acpi_cpuhp *c = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->modern) {
		for (unsigned i = 0; i < size; i++) {
			for (unsigned b = 0; b < 8; b++) {
				unsigned cpu = (unsigned)(offset + i) * 8 + b;

				if (cpu < c->n && c->cpus[cpu].present) {
					v |= 1ull << (8 * i + b);
				}
			}
		}
	} else if (c->selector < c->n) {
		const struct cpuhp_slot *s = &c->cpus[c->selector];

		switch (offset) {
		case ACPI_CPUHP_FLAGS:
			v = (s->present ? ACPI_CPUHP_ENABLED : 0) |
			    (s->inserting ? ACPI_CPUHP_INSERT : 0) |
			    (s->removing ? ACPI_CPUHP_REMOVE : 0);
			break;
		case ACPI_CPUHP_DATA:
			if (c->command == ACPI_CPUHP_CMD_NEXT_EVENT ||
			    c->command == ACPI_CPUHP_CMD_GET_ID) {
				v = c->selector; /* the APIC ID is the selector */
			}
			break;
		default: /* command data 2 (upper APIC ID bits: 0), reserved bytes */
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return size >= 4 ? (uint32_t)v : v & ((1ull << (8 * size)) - 1);
}

static void cpuhp_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct acpi_cpuhp *c = opaque;
	uint32_t data = (uint32_t)value;
	struct cpuhp_slot *s;
	int eject = -1, ost = -1;
	uint32_t ost_event = 0, ost_status = 0;

	(void)size;
	pthread_mutex_lock(&c->lock);
	if (offset == ACPI_CPUHP_SEL) {
		c->modern = true;
		c->selector = data;
		goto out;
	}
	if (!c->modern || c->selector >= c->n) {
		goto out;
	}
	s = &c->cpus[c->selector];
	switch (offset) {
	case ACPI_CPUHP_FLAGS:
		if (data & ACPI_CPUHP_INSERT) {
			s->inserting = false;
		} else if (data & ACPI_CPUHP_REMOVE) {
			s->removing = false;
		} else if ((data & ACPI_CPUHP_EJECT) && s->present && c->selector != 0) {
			/* gone for the guest at once, as in QEMU (its _STA after _EJ0 reads 0) */
			eject = (int)c->selector;
			s->present = s->inserting = s->removing = false;
		}
		break;
	case ACPI_CPUHP_CMD:
		if ((data & 0xff) > ACPI_CPUHP_CMD_GET_ID) {
			break;
		}
		c->command = (uint8_t)data;
		if (c->command == ACPI_CPUHP_CMD_NEXT_EVENT) {
			uint32_t i = c->selector;

			do {
				if (c->cpus[i].inserting || c->cpus[i].removing) {
					c->selector = i;
					break;
				}
				i = i + 1 < c->n ? i + 1 : 0;
			} while (i != c->selector);
		}
		break;
	case ACPI_CPUHP_DATA:
		if (c->command == ACPI_CPUHP_CMD_OST_EVENT) {
			s->ost_event = data;
		} else if (c->command == ACPI_CPUHP_CMD_OST_STATUS) {
			s->ost_status = data;
			ost = (int)c->selector;
			ost_event = s->ost_event;
			ost_status = s->ost_status;
		}
		break;
	default:
		break;
	}
out:
	pthread_mutex_unlock(&c->lock);
	if (ost >= 0 && c->h.ost) {
		c->h.ost(c->opaque, (unsigned)ost, ost_event, ost_status);
	}
	if (eject >= 0 && c->h.eject) {
		c->h.eject(c->opaque, (unsigned)eject);
	}
}

static const struct iobus_ops cpuhp_ops = {
	.read = cpuhp_read,
	.write = cpuhp_write,
};

void acpi_cpuhp_set_handlers(struct acpi_cpuhp *c, const struct acpi_cpuhp_handlers *h,
			     void *opaque)
{
	pthread_mutex_lock(&c->lock);
	c->h = h ? *h : (struct acpi_cpuhp_handlers){0};
	c->opaque = opaque;
	pthread_mutex_unlock(&c->lock);
}

void acpi_cpuhp_plug(struct acpi_cpuhp *c, unsigned cpu)
{
	if (cpu >= c->n) {
		return;
	}
	pthread_mutex_lock(&c->lock);
	c->cpus[cpu].present = true;
	c->cpus[cpu].inserting = true;
	c->cpus[cpu].removing = false;
	pthread_mutex_unlock(&c->lock);
	cpuhp_raise(c);
}

void acpi_cpuhp_unplug_request(struct acpi_cpuhp *c, unsigned cpu)
{
	if (cpu >= c->n) {
		return;
	}
	pthread_mutex_lock(&c->lock);
	c->cpus[cpu].removing = true;
	pthread_mutex_unlock(&c->lock);
	cpuhp_raise(c);
}

bool acpi_cpuhp_modern(struct acpi_cpuhp *c)
{
	bool m;

	pthread_mutex_lock(&c->lock);
	m = c->modern;
	pthread_mutex_unlock(&c->lock);
	return m;
}

void acpi_cpuhp_unplugged(struct acpi_cpuhp *c, unsigned cpu)
{
	if (cpu >= c->n) {
		return;
	}
	pthread_mutex_lock(&c->lock);
	c->cpus[cpu].present = false;
	c->cpus[cpu].inserting = false;
	c->cpus[cpu].removing = false;
	pthread_mutex_unlock(&c->lock);
}

static int cpuhp_realize(struct vm *vm, const void *item, void **ret_state, struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(vm);
	struct acpi_cpuhp *c = calloc(1, sizeof(*c));
	int r;

	(void)item;
	if (!c) {
		return error_set(errp, ENOMEM, "acpi-cpuhp: out of memory");
	}
	c->vm = vm;
	c->bus = vm_iobus(vm);
	c->n = MIN(cfg->maxcpus, CPUHP_MAX);
	for (unsigned i = 0; i < MIN(cfg->vcpus, c->n); i++) {
		c->cpus[i].present = true; /* cold-plugged: no event */
	}
	pthread_mutex_init(&c->lock, NULL);
	r = iobus_register(c->bus, IOBUS_PIO, ACPI_CPUHP_BASE, ACPI_CPUHP_LEN, &cpuhp_ops, c,
			   "acpi-cpuhp", errp);
	if (r < 0) {
		pthread_mutex_destroy(&c->lock);
		free(c);
		return r;
	}
	*ret_state = c;
	return 0;
}

static void cpuhp_unrealize(void *state)
{
	struct acpi_cpuhp *c = state;

	if (!c) {
		return;
	}
	iobus_unregister(c->bus, IOBUS_PIO, ACPI_CPUHP_BASE);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Only with ACPI and room to plug: maxcpus above vcpus. */
static bool cpuhp_wanted(const struct vm_config *cfg, const void *item)
{
	(void)item;
	return cfg->acpi && cfg->maxcpus > cfg->vcpus;
}

static int cpuhp_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct acpi_cpuhp *c = state;

	pthread_mutex_lock(&c->lock);
	vmstate_put_u32(out, c->n);
	vmstate_put_u8(out, c->modern);
	vmstate_put_u32(out, c->selector);
	vmstate_put_u8(out, c->command);
	for (unsigned i = 0; i < c->n; i++) {
		const struct cpuhp_slot *s = &c->cpus[i];

		vmstate_put_u8(out, (uint8_t)(s->present | s->inserting << 1 | s->removing << 2));
		vmstate_put_u32(out, s->ost_event);
		vmstate_put_u32(out, s->ost_status);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int cpuhp_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct acpi_cpuhp *c = state;
	struct cpuhp_slot cpus[CPUHP_MAX] = {{0}};
	uint32_t n = vmstate_get_u32(in), sel;
	uint8_t cmd, modern;
	int r;

	(void)version;
	if (n != c->n) {
		return error_set(errp, EINVAL, "CPU hotplug state for %u vCPUs, this VM has %u", n,
				 c->n);
	}
	modern = vmstate_get_u8(in);
	sel = vmstate_get_u32(in);
	cmd = vmstate_get_u8(in);
	for (unsigned i = 0; i < n; i++) {
		uint8_t f = vmstate_get_u8(in);

		cpus[i].present = f & 1;
		cpus[i].inserting = f & 2;
		cpus[i].removing = f & 4;
		cpus[i].ost_event = vmstate_get_u32(in);
		cpus[i].ost_status = vmstate_get_u32(in);
	}
	if (cmd > ACPI_CPUHP_CMD_GET_ID || modern > 1) {
		in->failed = true;
	}
	r = vmstate_check_end(in, "the ACPI CPU hotplug registers", errp);
	if (r < 0) {
		return r;
	}
	pthread_mutex_lock(&c->lock);
	c->modern = modern;
	c->selector = sel;
	c->command = cmd;
	memcpy(c->cpus, cpus, sizeof(cpus));
	pthread_mutex_unlock(&c->lock);
	return 0;
}

const struct device_class acpi_cpuhp_class = {
	.name = "acpi-cpuhp",
	.each = DEVICE_ONCE,
	.wanted = cpuhp_wanted,
	.realize = cpuhp_realize,
	.unrealize = cpuhp_unrealize,
	.state_version = 1,
	.save = cpuhp_save,
	.load = cpuhp_load,
};
