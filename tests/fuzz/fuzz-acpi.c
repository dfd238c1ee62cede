/*
 * libFuzzer target: the ACPI register blocks a guest's AML and OS drive
 * (hw/isa/acpi-pm.c: PM1 event, control and timer, GPE0; hw/platform/
 * acpi-hotplug.c: QEMU's PCI hotplug registers at 0xae00;
 * hw/platform/acpi-cpuhp.c: the CPU hotplug interface at 0xaf00, legacy
 * and modern) on the fake machine, with the host's side interleaved:
 * PCI slots and vCPUs plugged, unplug requests, vCPUs removed after the
 * guest's eject, slots made (non-)removable, reset, save/load round trips
 * (what was saved must load) and loads of hostile streams. The input is
 * a stream of operations (see the switch below).
 */
#include "config.h"

#include <stdlib.h>

#include "common/vmstate.h"
#include "hw/core/iobus.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/platform/acpi-cpuhp.h"
#include "hw/platform/acpi-hotplug.h"
#include "hw/platform/acpi.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-machine.h"

#define MAXCPUS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
	uint16_t base, len;
} blocks[] = {
	{ACPI_PM_BASE, ACPI_PM_REGION_LEN},
	{ACPI_GPE0_BLK, ACPI_GPE0_BLK_LEN},
	{ACPI_PCIHP_BASE, ACPI_PCIHP_LEN},
	{ACPI_CPUHP_BASE, 32}, /* also past the modern block, where QEMU's legacy bitmap is */
};

static unsigned ejected_cpus, ejected_slots;

static void on_cpu_eject(void *opaque, unsigned cpu)
{
	(void)opaque;
	if (cpu >= MAXCPUS) {
		abort(); /* only a vCPU the machine can have */
	}
	ejected_cpus |= 1u << cpu;
}

static void on_ost(void *opaque, unsigned cpu, uint32_t event, uint32_t status)
{
	(void)opaque;
	(void)cpu;
	(void)event;
	(void)status;
}

static void on_slot_eject(void *opaque, unsigned slot)
{
	(void)opaque;
	if (slot >= 32) {
		abort();
	}
	ejected_slots |= 1u << slot;
}

static const struct acpi_cpuhp_handlers cpu_handlers = {.eject = on_cpu_eject, .ost = on_ost};

/* Save @state and load it back: what was saved must load. */
static void roundtrip(const struct device_class *cls, void *state)
{
	struct vmstate_buf out, in;

	vmstate_buf_init(&out);
	if (cls->save(state, &out, NULL) < 0 || out.failed) {
		abort();
	}
	vmstate_buf_wrap(&in, out.data, out.len);
	if (cls->load(state, &in, cls->state_version, NULL) < 0) {
		abort();
	}
	vmstate_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_config cfg = {
		.name = "fuzz", .vcpus = 2, .maxcpus = MAXCPUS, .acpi = true};
	const struct device_class *cls[3] = {&acpi_pm_class, &acpi_pcihp_class, &acpi_cpuhp_class};
	struct fz f = {data, size};
	struct vm *vm = fake_vm_new(&cfg, 0, NULL);
	struct iobus *bus = vm_iobus(vm);
	void *st[3];
	struct acpi_pcihp *hp;
	struct acpi_cpuhp *c;
	unsigned ops = 0;
	uint64_t v;

	for (unsigned i = 0; i < 3; i++) {
		if (cls[i]->realize(vm, NULL, &st[i], NULL) < 0) {
			abort();
		}
		if (i == 0) { /* the hotplug blocks raise its GPEs */
			fake_vm_add_device(vm, &acpi_pm_class, st[0]);
		}
	}
	hp = st[1];
	c = st[2];
	acpi_pcihp_set_eject_handler(hp, on_slot_eject, NULL);
	acpi_cpuhp_set_handlers(c, &cpu_handlers, NULL);
	ejected_cpus = ejected_slots = 0;
	while (fz_more(&f) && ops++ < 4096) {
		uint8_t op = fz_u8(&f);

		switch (op % 12) {
		case 0:
		case 1:
		case 2: { /* guest port write: block, offset, size, value */
			unsigned b = fz_u8(&f) % 4;
			uint16_t port = blocks[b].base + fz_u8(&f) % blocks[b].len;

			unsigned sz = fz_size(&f);

			iobus_write(bus, IOBUS_PIO, port, sz, fz_u32(&f));
			break;
		}
		case 3:
		case 4: { /* guest port read */
			unsigned b = fz_u8(&f) % 4;
			uint16_t port = blocks[b].base + fz_u8(&f) % blocks[b].len;

			iobus_read(bus, IOBUS_PIO, port, fz_size(&f), &v);
			break;
		}
		case 5: /* the host plugs a device or a vCPU (index checked by the model) */
			if (fz_u8(&f) & 1) {
				acpi_pcihp_plug(hp, fz_u8(&f) % 32);
			} else {
				acpi_cpuhp_plug(c, fz_u8(&f) % MAXCPUS);
			}
			break;
		case 6: /* the host asks for an unplug */
			if (fz_u8(&f) & 1) {
				acpi_pcihp_unplug_request(hp, fz_u8(&f) % 32);
			} else {
				acpi_cpuhp_unplug_request(c, fz_u8(&f) % MAXCPUS);
			}
			break;
		case 7: /* the host removes the vCPUs the guest ejected */
			for (unsigned cpu = 0; cpu < MAXCPUS; cpu++) {
				if (ejected_cpus & (1u << cpu)) {
					acpi_cpuhp_unplugged(c, cpu);
				}
			}
			ejected_cpus = 0;
			break;
		case 8: {
			unsigned slot = fz_u8(&f) % 32;

			acpi_pcihp_set_removable(hp, slot, fz_u8(&f) & 1);
			acpi_pcihp_pending_removals(hp);
			break;
		}
		case 9: {
			unsigned i = fz_u8(&f) % 3;

			if (cls[i]->reset) {
				cls[i]->reset(st[i]);
			}
			break;
		}
		case 10: {
			unsigned i = fz_u8(&f) % 3;

			roundtrip(cls[i], st[i]);
			break;
		}
		case 11: { /* a hostile stream: refused or taken, never a crash */
			unsigned i = fz_u8(&f) % 3;
			uint8_t buf[256];
			struct vmstate_buf in;
			size_t n = fz_bytes(&f, buf, fz_u8(&f));

			vmstate_buf_wrap(&in, buf, n);
			cls[i]->load(st[i], &in, cls[i]->state_version, NULL);
			break;
		}
		}
	}
	for (unsigned i = 3; i-- > 0;) {
		cls[i]->unrealize(st[i]);
	}
	if (iobus_count(bus) != 0) {
		abort(); /* unrealize must remove every range it registered */
	}
	fake_vm_free(vm);
	return 0;
}
