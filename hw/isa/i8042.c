/*
 * i8042 keyboard controller at ports 0x60 (data) and 0x64 (status/command),
 * with a keyboard that answers the PS/2 commands an OS sends at probe
 * (reset, identify, LEDs, typematic, scan code set) but never types. The
 * controller's reset line is the reason it exists here: the pulse command
 * 0xFE (also the FADT's reset register) and an output-port write with bit
 * 0 clear ask the VM to reset. There is no PS/2 mouse: the AUX port fails
 * its tests (the loop command answers on the keyboard channel, the AUX
 * interface test reports the clock line stuck low), so an OS gives up on
 * it at once instead of waiting for time-outs.
 *
 * IRQ 1 follows "keyboard byte waiting and interrupts enabled"; after each
 * read of port 0x60 the line drops, and rises again if more bytes wait, so
 * every byte is an edge.
 *
 * Threads: vCPU threads (port accesses), control thread (realize, reset);
 * kbd->lock protects all state.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/util.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "common/vmstate.h"
#include "hw/platform/platform.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_KBD_IRQ 1
#define I8042_AUX_IRQ 12
#define I8042_QUEUE 16

#define STS_OBF 0x01
#define STS_SYS 0x04
#define STS_CMD 0x08 /* last write was to the command port */
#define STS_UNLOCKED 0x10
#define STS_AUXOBF 0x20

#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40

struct i8042 {
	struct vm *vm;
	struct iobus *bus;
	pthread_mutex_t lock;
	uint8_t ctr;	     /* controller command byte */
	uint8_t status_cmd;  /* STS_CMD */
	uint8_t pending;     /* controller command waiting for its data byte, or 0 */
	uint8_t kbd_pending; /* keyboard command waiting for its argument, or 0 */
	uint8_t outport;
	uint8_t last;
	struct {
		uint8_t byte;
		bool aux;
	} q[I8042_QUEUE];
	unsigned q_head, q_len;
	int kbd_level, aux_level;
};

static void kbd_update_irq(struct i8042 *k)
{
	int kbd = k->q_len && !k->q[k->q_head].aux && (k->ctr & CTR_KBDINT);
	int aux = k->q_len && k->q[k->q_head].aux && (k->ctr & CTR_AUXINT);

	if (kbd != k->kbd_level) {
		k->kbd_level = kbd;
		vm_irq_set_level(k->vm, I8042_KBD_IRQ, kbd);
	}
	if (aux != k->aux_level) {
		k->aux_level = aux;
		vm_irq_set_level(k->vm, I8042_AUX_IRQ, aux);
	}
}

static void kbd_queue(struct i8042 *k, uint8_t b, bool aux)
{
	if (k->q_len == I8042_QUEUE) {
		return; /* a guest that never reads loses replies, memory stays bounded */
	}
	k->q[(k->q_head + k->q_len) % I8042_QUEUE].byte = b;
	k->q[(k->q_head + k->q_len) % I8042_QUEUE].aux = aux;
	k->q_len++;
}

static void kbd_reset_line(struct i8042 *k)
{
	vm_request(k->vm, VM_CAUSE_GUEST_RESET);
}

/* A byte for the keyboard device itself (port 0x60 with no controller command pending). */
static void kbd_device_write(struct i8042 *k, uint8_t v)
{
	if (k->kbd_pending) {
		uint8_t cmd = k->kbd_pending;

		k->kbd_pending = 0;
		kbd_queue(k, 0xFA, false);
		if (cmd == 0xF0 && v == 0) {
			kbd_queue(k, 0x02, false); /* current scan code set */
		}
		return;
	}
	switch (v) {
	case 0xFF: /* reset: ACK, self-test passed */
		kbd_queue(k, 0xFA, false);
		kbd_queue(k, 0xAA, false);
		break;
	case 0xF2: /* identify: MF2 keyboard */
		kbd_queue(k, 0xFA, false);
		kbd_queue(k, 0xAB, false);
		kbd_queue(k, 0x83, false);
		break;
	case 0xEE: /* echo */
		kbd_queue(k, 0xEE, false);
		break;
	case 0xED: /* LEDs */
	case 0xF3: /* typematic rate */
	case 0xF0: /* scan code set */
		k->kbd_pending = v;
		kbd_queue(k, 0xFA, false);
		break;
	default: /* enable, disable, defaults, ... */
		kbd_queue(k, 0xFA, false);
		break;
	}
}

static void kbd_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case 0x20: /* read command byte */
		kbd_queue(k, k->ctr, false);
		break;
	case 0x60: /* write command byte */
	case 0xD1: /* write output port */
	case 0xD2: /* write keyboard output buffer */
	case 0xD3: /* write AUX output buffer (loop) */
	case 0xD4: /* write to AUX device */
		k->pending = cmd;
		break;
	case 0xA7:
		k->ctr |= CTR_AUXDIS;
		break;
	case 0xA8:
		k->ctr &= (uint8_t)~CTR_AUXDIS;
		break;
	case 0xA9:			   /* AUX interface test */
		kbd_queue(k, 0x01, false); /* clock line stuck low: no mouse */
		break;
	case 0xAA: /* controller self-test */
		k->ctr |= CTR_SYS;
		kbd_queue(k, 0x55, false);
		break;
	case 0xAB: /* keyboard interface test */
		kbd_queue(k, 0x00, false);
		break;
	case 0xAD:
		k->ctr |= CTR_KBDDIS;
		break;
	case 0xAE:
		k->ctr &= (uint8_t)~CTR_KBDDIS;
		break;
	case 0xC0: /* read input port */
		kbd_queue(k, 0x00, false);
		break;
	case 0xD0: /* read output port */
		kbd_queue(k, k->outport, false);
		break;
	case 0xDD: /* A20 off / on: A20 is always on */
	case 0xDF:
		break;
	default:
		/* 0xF0-0xFF pulse the output lines whose bit is clear; line 0 is reset. */
		if ((cmd & 0xF0) == 0xF0 && !(cmd & 0x01)) {
			kbd_reset_line(k);
		}
		break;
	}
}

static void kbd_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;

	k->pending = 0;
	switch (cmd) {
	case 0x60:
		k->ctr = v;
		break;
	case 0xD1:
		k->outport = v | 0x01;
		if (!(v & 0x01)) {
			kbd_reset_line(k);
		}
		break;
	case 0xD2:
		kbd_queue(k, v, false);
		break;
	case 0xD3: /* no AUX port: the byte comes back on the keyboard channel */
		kbd_queue(k, v, false);
		break;
	case 0xD4: /* no mouse: the AUX device never answers */
		break;
	default:
		kbd_device_write(k, v);
		break;
	}
}

/* @port is I8042_DATA or I8042_CMD. */
static uint64_t kbd_pio_read(struct i8042 *k, unsigned port)
{
	uint8_t v;

	pthread_mutex_lock(&k->lock);
	if (port == I8042_DATA) {
		if (k->q_len) {
			k->last = k->q[k->q_head].byte;
			k->q_head = (k->q_head + 1) % I8042_QUEUE;
			k->q_len--;
			/* drop the line so the next byte is a fresh edge */
			if (k->kbd_level) {
				k->kbd_level = 0;
				vm_irq_set_level(k->vm, I8042_KBD_IRQ, 0);
			}
			if (k->aux_level) {
				k->aux_level = 0;
				vm_irq_set_level(k->vm, I8042_AUX_IRQ, 0);
			}
		}
		v = k->last;
	} else {
		v = (uint8_t)(STS_UNLOCKED | k->status_cmd | ((k->ctr & CTR_SYS) ? STS_SYS : 0));
		if (k->q_len) {
			v |= STS_OBF | (k->q[k->q_head].aux ? STS_AUXOBF : 0);
		}
	}
	kbd_update_irq(k);
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void kbd_pio_write(struct i8042 *k, unsigned port, uint8_t value)
{
	pthread_mutex_lock(&k->lock);
	if (port == I8042_DATA) {
		k->status_cmd = 0;
		kbd_data(k, value);
	} else {
		k->status_cmd = STS_CMD;
		k->pending = 0;
		kbd_command(k, value);
	}
	kbd_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static uint64_t kbd_data_read(void *opaque, uint64_t offset, unsigned size)
{
	return kbd_pio_read(opaque, I8042_DATA);
}

static void kbd_data_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	kbd_pio_write(opaque, I8042_DATA, (uint8_t)value);
}

static uint64_t kbd_cmd_read(void *opaque, uint64_t offset, unsigned size)
{
	return kbd_pio_read(opaque, I8042_CMD);
}

static void kbd_cmd_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	kbd_pio_write(opaque, I8042_CMD, (uint8_t)value);
}

static const struct iobus_ops kbd_data_ops = {
	.read = kbd_data_read,
	.write = kbd_data_write,
};

static const struct iobus_ops kbd_cmd_ops = {
	.read = kbd_cmd_read,
	.write = kbd_cmd_write,
};

static void kbd_reset_regs(struct i8042 *k)
{
	k->ctr = CTR_KBDINT | CTR_SYS | CTR_XLATE;
	k->status_cmd = 0;
	k->pending = 0;
	k->kbd_pending = 0;
	k->outport = 0x03; /* reset line inactive, A20 on */
	k->last = 0;
	k->q_head = k->q_len = 0;
}

static void kbd_unrealize(void *state)
{
	struct i8042 *k = state;

	if (!k) {
		return;
	}
	iobus_unregister(k->bus, IOBUS_PIO, I8042_CMD);
	iobus_unregister(k->bus, IOBUS_PIO, I8042_DATA);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static int kbd_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	int r;

	if (!k) {
		return error_set(errp, ENOMEM, "i8042: out of memory");
	}
	k->vm = vm;
	k->bus = vm_iobus(vm);
	pthread_mutex_init(&k->lock, NULL);
	kbd_reset_regs(k);
	r = iobus_register(k->bus, IOBUS_PIO, I8042_DATA, 1, &kbd_data_ops, k, "i8042", errp);
	if (r < 0) {
		goto err_free;
	}
	r = iobus_register(k->bus, IOBUS_PIO, I8042_CMD, 1, &kbd_cmd_ops, k, "i8042", errp);
	if (r < 0) {
		goto err_unregister;
	}
	*ret_state = k;
	return 0;

err_unregister:
	iobus_unregister(k->bus, IOBUS_PIO, I8042_DATA);
err_free:
	pthread_mutex_destroy(&k->lock);
	free(k);
	return r;
}

static void kbd_reset(void *state)
{
	struct i8042 *k = state;

	pthread_mutex_lock(&k->lock);
	kbd_reset_regs(k);
	kbd_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static int kbd_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct i8042 *k = state;

	pthread_mutex_lock(&k->lock);
	vmstate_put_u8(out, k->ctr);
	vmstate_put_u8(out, k->status_cmd);
	vmstate_put_u8(out, k->pending);
	vmstate_put_u8(out, k->kbd_pending);
	vmstate_put_u8(out, k->outport);
	vmstate_put_u8(out, k->last);
	vmstate_put_u32(out, k->q_len);
	for (unsigned i = 0; i < k->q_len; i++) {
		vmstate_put_u8(out, k->q[(k->q_head + i) % I8042_QUEUE].byte);
		vmstate_put_bool(out, k->q[(k->q_head + i) % I8042_QUEUE].aux);
	}
	vmstate_put_u8(out, (uint8_t)k->kbd_level);
	vmstate_put_u8(out, (uint8_t)k->aux_level);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static int kbd_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct i8042 *k = state;
	uint8_t regs[6], kbd, aux;
	uint8_t qb[I8042_QUEUE];
	bool qa[I8042_QUEUE];
	uint32_t n;
	int r;

	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++) {
		regs[i] = vmstate_get_u8(in);
	}
	n = vmstate_get_u32(in);
	if (n > I8042_QUEUE) {
		in->failed = true;
		n = 0;
	}
	for (unsigned i = 0; i < n; i++) {
		qb[i] = vmstate_get_u8(in);
		qa[i] = vmstate_get_bool(in);
	}
	kbd = vmstate_get_u8(in);
	aux = vmstate_get_u8(in);
	if (kbd > 1 || aux > 1) {
		in->failed = true;
	}
	r = vmstate_check_end(in, "the i8042 controller", errp);
	if (r < 0) {
		return r;
	}
	pthread_mutex_lock(&k->lock);
	k->ctr = regs[0];
	k->status_cmd = regs[1];
	k->pending = regs[2];
	k->kbd_pending = regs[3];
	k->outport = regs[4];
	k->last = regs[5];
	k->q_head = 0;
	k->q_len = n;
	for (unsigned i = 0; i < n; i++) {
		k->q[i].byte = qb[i];
		k->q[i].aux = qa[i];
	}
	k->kbd_level = kbd;
	k->aux_level = aux;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

const struct device_class i8042_class = {
	.name = "i8042",
	.realize = kbd_realize,
	.unrealize = kbd_unrealize,
	.reset = kbd_reset,
	.state_version = 1,
	.save = kbd_save,
	.load = kbd_load,
};
