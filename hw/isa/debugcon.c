/*
 * Debug console: bytes the guest writes to port 0x402 are appended to the
 * file named by "debugcon" in the VM definition (as QEMU's isa-debugcon);
 * reads return 0xe9, the port's presence signature. The file stops growing
 * at DEBUGCON_MAX_BYTES so a flooding guest cannot fill the disk.
 *
 * Threads: realize/unrealize on the control thread; write on vCPU threads
 * (serialized by the lock: several vCPUs may print at once).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/pathpol.h"
#include "hw/devices.h"
#include "hw/device.h"

#define DEBUGCON_PORT 0x402
#define DEBUGCON_MAX_BYTES (16u << 20)

struct debugcon {
	struct vm *vm;
	int fd;
	pthread_mutex_t lock;
	uint64_t written;
};

static uint64_t debugcon_read(void *opaque, uint64_t offset, unsigned size)
{
	return 0xe9;
}

static void debugcon_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct debugcon *d = opaque;
	uint8_t c = (uint8_t)value;

	pthread_mutex_lock(&d->lock);
	if (d->written < DEBUGCON_MAX_BYTES && write(d->fd, &c, 1) == 1) {
		d->written++;
	}
	pthread_mutex_unlock(&d->lock);
}

static const struct iobus_ops debugcon_ops = {
	.read = debugcon_read,
	.write = debugcon_write,
};

static int debugcon_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	const char *path = vm_get_config(vm)->debugcon;
	struct debugcon *d;
	int r;

	d = calloc(1, sizeof(*d));
	if (!d) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	d->vm = vm;
	/* The guest chooses the bytes, the definition the path: the path policy decides. */
	d->fd = pathpol_open_err("debugcon file", path, O_WRONLY | O_CREAT | O_APPEND, 0640, errp);
	if (d->fd < 0) {
		r = d->fd;
		free(d);
		return r;
	}
	pthread_mutex_init(&d->lock, NULL);
	r = iobus_register(vm_iobus(vm), IOBUS_PIO, DEBUGCON_PORT, 1, &debugcon_ops, d, "debugcon",
			   errp);
	if (r < 0) {
		close(d->fd);
		pthread_mutex_destroy(&d->lock);
		free(d);
		return r;
	}
	*ret_state = d;
	return 0;
}

static void debugcon_unrealize(void *state)
{
	struct debugcon *d = state;

	iobus_unregister(vm_iobus(d->vm), IOBUS_PIO, DEBUGCON_PORT);
	close(d->fd);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static bool debugcon_wanted(const struct vm_config *cfg, const void *item)
{
	return cfg->debugcon != NULL;
}

const struct device_class debugcon_class = {
	.name = "debugcon",
	.each = DEVICE_ONCE,
	.wanted = debugcon_wanted,
	.realize = debugcon_realize,
	.unrealize = debugcon_unrealize,
	.stateless = true, /* write-only port; bytes go straight to the file */
};
