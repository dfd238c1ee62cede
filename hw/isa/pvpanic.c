/*
 * pvpanic (QEMU's pvpanic ISA device, "pvpanic": true in the definition):
 * I/O port 0x505. Reads return the events the device reports (bit 0:
 * panicked, bit 1: crash loaded); a write of bit 0 says the guest
 * panicked: the VM stops in "guest-panicked" with GUEST_PANICKED
 * {"action": "pause"} and STOP, and cont runs it again (QEMU 7.2's
 * default panic action); bit 1 alone says a crash kernel was loaded:
 * GUEST_CRASHLOADED {"action": "run"}, the guest goes on. The DSDT
 * describes it as QEMU does (device PEVT, _HID "QEMU0001"), which is how
 * Linux's pvpanic driver finds it.
 *
 * Threads: realize/unrealize on the control thread; read/write on vCPU
 * threads (no state).
 */
#include "config.h"

#include <errno.h>

#include "hw/device.h"
#include "hw/devices.h"

#define PVPANIC_PORT 0x505
#define PVPANIC_PANICKED (1u << 0)
#define PVPANIC_CRASH_LOADED (1u << 1)

static uint64_t pvpanic_read(void *opaque, uint64_t offset, unsigned size)
{
	return PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
}

static void pvpanic_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct vm *vm = opaque;

	/* as QEMU's pvpanic_set_event: a panic wins over crash-loaded */
	if (value & PVPANIC_PANICKED) {
		vm_request(vm, VM_CAUSE_GUEST_PANIC);
	} else if (value & PVPANIC_CRASH_LOADED) {
		vm_emit_event(vm, "GUEST_CRASHLOADED", json_pack("{s:s}", "action", "run"));
	}
}

static const struct iobus_ops pvpanic_ops = {
	.read = pvpanic_read,
	.write = pvpanic_write,
};

static int pvpanic_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	int r = iobus_register(vm_iobus(vm), IOBUS_PIO, PVPANIC_PORT, 1, &pvpanic_ops, vm,
			       "pvpanic", errp);

	if (r == 0) {
		*ret_state = vm;
	}
	return r;
}

static void pvpanic_unrealize(void *state)
{
	iobus_unregister(vm_iobus(state), IOBUS_PIO, PVPANIC_PORT);
}

static bool pvpanic_wanted(const struct vm_config *cfg, const void *item)
{
	return cfg->pvpanic;
}

const struct device_class pvpanic_class = {
	.name = "pvpanic",
	.each = DEVICE_ONCE,
	.wanted = pvpanic_wanted,
	.realize = pvpanic_realize,
	.unrealize = pvpanic_unrealize,
	.stateless = true,
};
