/*
 * The shared body of the virtio device fuzz targets (virtio-blk,
 * virtio-mem, virtio-net, virtio-balloon, virtio-rng): the device class
 * realized behind virtio-pci and the real PCI host on the fake machine, a
 * driver's probe and start written from the virtio 1.x spec (with a side
 * queue where the target asks for one), and a stream of operations: PCI
 * configuration writes, accesses to the common, notify, ISR and device
 * regions, guest writes anywhere, descriptors, avail ring entries and
 * kicks, the I/O loop that completes requests, reset, save/load round
 * trips once idle (what was saved must load) and hostile state streams.
 * Operation 5 and those from 13 up are the target's own (struct
 * fuzz_virtio.extra).
 */
#pragma once

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/error.h"
#include "common/vmstate.h"
#include "hw/core/iobus.h"
#include "hw/core/memory.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-machine.h"

#define QSZ 16
#define RING 0x10000  /* descriptors; avail at +0x1000, used at +0x2000 */
#define BUF 0x20000   /* requests, data and status bytes */
#define RING2 0x30000 /* the side queue's ring, laid out as RING */

struct drv {
	uint16_t device_id; /* PCI device id: 0x1040 + the virtio device id */
	uint64_t ram_size;
	struct iobus *bus;
	struct guest_mem *mem;
	unsigned slot;
	uint64_t region[4]; /* common, notify, ISR, device: 0 until probed */
	uint32_t notify_mult;
	uint16_t qnoff, avail_idx;
	unsigned side_q;	       /* the side queue (struct fuzz_virtio), or 0 */
	bool side_live;		       /* set up by the last start */
	uint16_t side_qnoff, side_idx; /* its notify offset and avail index */
};

static uint32_t cfg_read(struct drv *d, unsigned reg, unsigned size)
{
	uint64_t v = 0;

	iobus_write(d->bus, IOBUS_PIO, 0xcf8, 4, 0x80000000u | d->slot << 11 | (reg & 0xfc));
	iobus_read(d->bus, IOBUS_PIO, 0xcfc + (reg & 3), size, &v);
	return (uint32_t)v;
}

static void cfg_write(struct drv *d, unsigned reg, uint32_t v, unsigned size)
{
	iobus_write(d->bus, IOBUS_PIO, 0xcf8, 4, 0x80000000u | d->slot << 11 | (reg & 0xfc));
	iobus_write(d->bus, IOBUS_PIO, 0xcfc + (reg & 3), size, v);
}

static uint64_t mr(struct drv *d, uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	iobus_read(d->bus, IOBUS_MMIO, addr, size, &v);
	return v;
}

static void mw(struct drv *d, uint64_t addr, uint64_t v, unsigned size)
{
	iobus_write(d->bus, IOBUS_MMIO, addr, size, v);
}

/* Find the device's function, enable it, read where its virtio capabilities point. */
static void probe(struct drv *d)
{
	unsigned cap, n = 0;

	for (d->slot = 0; d->slot < 32; d->slot++) {
		if (cfg_read(d, 0, 2) == 0x1af4 && cfg_read(d, 2, 2) == d->device_id) {
			break;
		}
	}
	if (d->slot == 32) {
		abort(); /* the function realize made must be there */
	}
	cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	for (cap = cfg_read(d, 0x34, 1); cap && n++ < 48; cap = cfg_read(d, cap + 1, 1)) {
		unsigned type = cfg_read(d, cap + 3, 1), bar = cfg_read(d, cap + 4, 1) % 6;

		if (cfg_read(d, cap, 1) != 0x09 || type < 1 || type > 4) {
			continue;
		}
		d->region[type - 1] =
			(cfg_read(d, 0x10 + 4 * bar, 4) & ~0xfu) + cfg_read(d, cap + 8, 4);
		if (type == 2) {
			d->notify_mult = cfg_read(d, cap + 16, 4);
		}
	}
}

/* Queue @q of QSZ at @ring enabled; its notify offset. */
static uint16_t drv_queue(struct drv *d, unsigned q, uint64_t ring)
{
	uint64_t c = d->region[0];

	mw(d, c + 0x16, q, 2);
	mw(d, c + 0x18, QSZ, 2);
	mw(d, c + 0x20, ring, 8);
	mw(d, c + 0x28, ring + 0x1000, 8);
	mw(d, c + 0x30, ring + 0x2000, 8);
	mw(d, c + 0x1c, 1, 2);
	return (uint16_t)mr(d, c + 0x1e, 2);
}

/*
 * A driver's start: reset, features @want (VERSION_1 added), queue @q of
 * QSZ at RING, and the side queue at RING2 unless that is @q.
 */
static void drv_init(struct drv *d, uint64_t want, unsigned q)
{
	uint64_t c = d->region[0];

	if (!c) {
		return;
	}
	mw(d, c + 0x14, 0, 1);
	mw(d, c + 0x14, 3, 1); /* ACKNOWLEDGE, DRIVER */
	mw(d, c + 0x08, 0, 4);
	mw(d, c + 0x0c, (uint32_t)want, 4);
	mw(d, c + 0x08, 1, 4);
	mw(d, c + 0x0c, (uint32_t)(want >> 32) | 1, 4); /* VERSION_1 */
	mw(d, c + 0x14, 0x0b, 1);			/* FEATURES_OK */
	d->qnoff = drv_queue(d, q, RING);
	d->side_live = d->side_q && q != d->side_q;
	if (d->side_live) {
		d->side_qnoff = drv_queue(d, d->side_q, RING2);
	}
	mw(d, c + 0x14, 0x0f, 1); /* DRIVER_OK */
	d->avail_idx = 0;
	d->side_idx = 0;
}

/*
 * The side queue's next descriptor (they rotate, as its avail index):
 * @len bytes at @addr, read by the device; made available and kicked.
 */
static inline void drv_side_send(struct drv *d, uint64_t addr, uint32_t len)
{
	uint8_t e[16] = {0};
	uint16_t head = d->side_idx % QSZ, flags = 0;

	if (!d->side_live || !d->region[1]) {
		return;
	}
	memcpy(e, &addr, 8);
	memcpy(e + 8, &len, 4);
	memcpy(e + 12, &flags, 2);
	guest_mem_write(d->mem, RING2 + 16u * head, e, sizeof(e));
	guest_mem_write(d->mem, RING2 + 0x1000 + 4 + 2u * (d->side_idx % QSZ), &head, 2);
	d->side_idx++;
	guest_mem_write(d->mem, RING2 + 0x1000 + 2, &d->side_idx, 2);
	mw(d, d->region[1] + (uint64_t)d->side_qnoff * d->notify_mult, d->side_q, 2);
}

/* Run the I/O loop until the device has nothing in flight (bounded). */
static void run_io(struct event_base *base, const struct device_class *cls, void *state,
		   unsigned max)
{
	for (unsigned i = 0; i < max; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (!cls->busy || !cls->busy(state)) {
			break;
		}
		if (i > 64) {
			usleep(10);
		}
	}
}

struct fuzz_virtio {
	const struct device_class *cls;
	const void *cfg;	       /* the device's configuration for realize */
	const struct vm_config *vmcfg; /* the VM's, or NULL: a default */
	unsigned side_q; /* a queue every start also sets up, at RING2 (drv_side_send); 0: none */
	uint16_t device_id; /* PCI device id: 0x1040 + the virtio device id */
	uint64_t ram_size;
	unsigned nops; /* operations 0..nops-1; 5 and 13.. go to extra */
	/*
	 * Unrealize with the base's loop running on a thread of its own, as the
	 * VM's I/O thread runs during vm_destroy (virtio-net closes its backend
	 * there); the base then needs evthread_use_pthreads() before it is made.
	 */
	bool io_thread_at_unrealize;
	struct event_base *base;
	void (*extra)(struct drv *d, void *state, uint8_t op, struct fz *f);
};

static void *io_loop(void *base)
{
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* One input against @t's device; @t->base is made on the first. */
static void fuzz_virtio_run(struct fuzz_virtio *t, const uint8_t *data, size_t size)
{
	static const struct vm_config dflt = {.name = "fuzz", .vcpus = 2};
	const struct device_class *cls = t->cls;
	struct fz f = {data, size};
	struct vm *vm;
	void *pci, *state;
	struct drv d = {.device_id = t->device_id, .ram_size = t->ram_size, .side_q = t->side_q};
	unsigned ops = 0;

	if (!t->base) {
		t->base = event_base_new();
		if (!t->base) {
			abort();
		}
	}
	vm = fake_vm_new(t->vmcfg ? t->vmcfg : &dflt, t->ram_size, t->base);
	d.bus = vm_iobus(vm);
	d.mem = vm_guest_mem(vm);
	if (pci_host_class.realize(vm, NULL, &pci, NULL) < 0 ||
	    cls->realize(vm, t->cfg, &state, NULL) < 0) {
		abort();
	}
	probe(&d);
	while (fz_more(&f) && ops++ < 1024) {
		uint8_t op = fz_u8(&f);

		switch (op % t->nops) {
		case 0: { /* a driver's start: features from the input; queue 0, 1 or 2 (absent ones too) */
			uint64_t want = fz_u32(&f);

			drv_init(&d, want, fz_u8(&f) % 3);
			break;
		}
		case 1: { /* a register write in one of the four regions */
			unsigned r = fz_u8(&f) % 4;
			uint64_t off = fz_u8(&f) % 64;
			unsigned sz = 1u << (fz_u8(&f) % 4);

			if (d.region[r]) {
				mw(&d, d.region[r] + off, fz_u32(&f), sz);
			}
			break;
		}
		case 2: { /* a register read */
			unsigned r = fz_u8(&f) % 4;
			uint64_t off = fz_u8(&f) % 64;
			unsigned sz = 1u << (fz_u8(&f) % 4);

			if (d.region[r]) {
				mr(&d, d.region[r] + off, sz);
			}
			break;
		}
		case 3: { /* the guest writes up to 64 bytes anywhere */
			uint8_t buf[64];
			uint32_t gpa = ((uint32_t)fz_u16(&f) << 4) % d.ram_size;
			size_t n = fz_bytes(&f, buf, 1 + fz_u8(&f) % sizeof(buf));

			guest_mem_write(d.mem, gpa, buf, n);
			break;
		}
		case 4: { /* descriptor @i: a buffer in BUF's 64 KiB, length, flags, next */
			uint8_t e[16];
			unsigned i = fz_u8(&f) % QSZ;
			uint64_t addr = BUF + 16u * fz_u16(&f) % 0x10000;
			uint32_t len = fz_u16(&f) % 0x2200;
			uint16_t flags = fz_u8(&f) & 7, next = fz_u8(&f) % (QSZ + 2);

			memcpy(e, &addr, 8);
			memcpy(e + 8, &len, 4);
			memcpy(e + 12, &flags, 2);
			memcpy(e + 14, &next, 2);
			guest_mem_write(d.mem, RING + 16 * i, e, sizeof(e));
			break;
		}
		case 6: { /* head @i made available, then the kick */
			uint16_t head = fz_u8(&f) % (QSZ + 1), idx;

			idx = d.avail_idx++;
			guest_mem_write(d.mem, RING + 0x1000 + 4 + 2u * (idx % QSZ), &head, 2);
			guest_mem_write(d.mem, RING + 0x1000 + 2, &d.avail_idx, 2);
			if (d.region[1]) {
				mw(&d, d.region[1] + (uint64_t)d.qnoff * d.notify_mult, 0, 2);
			}
			break;
		}
		case 7:
			run_io(t->base, cls, state, 1 + fz_u8(&f) * 16u);
			break;
		case 8: { /* PCI configuration space */
			unsigned reg = fz_u8(&f);
			unsigned sz = 1u << (fz_u8(&f) % 3);

			cfg_write(&d, reg & ~(sz - 1), fz_u32(&f), sz);
			break;
		}
		case 9:
			probe(&d);
			break;
		case 10:
			run_io(t->base, cls, state, 100000);
			cls->reset(state);
			break;
		case 11: { /* save and load back once idle: what was saved must load */
			struct vmstate_buf out, in;

			run_io(t->base, cls, state, 100000);
			if (cls->busy && cls->busy(state)) {
				break;
			}
			vmstate_buf_init(&out);
			if (cls->save(state, &out, NULL) == 0 && !out.failed) {
				struct error *err = NULL;

				vmstate_buf_wrap(&in, out.data, out.len);
				if (cls->load(state, &in, cls->state_version, &err) < 0) {
					fprintf(stderr, "%s: own state refused: %s\n", cls->name,
						err ? err->msg : "?");
					abort();
				}
			}
			vmstate_buf_free(&out);
			break;
		}
		case 12: { /* a hostile stream, once idle: refused or taken, never a crash */
			uint8_t buf[256];
			struct vmstate_buf in;
			size_t n;

			run_io(t->base, cls, state, 100000);
			n = fz_bytes(&f, buf, fz_u8(&f));
			if (!cls->busy || !cls->busy(state)) {
				vmstate_buf_wrap(&in, buf, n);
				cls->load(state, &in, cls->state_version, NULL);
			}
			break;
		}
		default: /* the device's own operations */
			t->extra(&d, state, op, &f);
			break;
		}
	}
	run_io(t->base, cls, state, 100000);
	if (t->io_thread_at_unrealize) {
		pthread_t io;

		if (pthread_create(&io, NULL, io_loop, t->base) != 0) {
			abort();
		}
		cls->unrealize(state);
		event_base_loopexit(t->base, NULL);
		pthread_join(io, NULL);
	} else {
		cls->unrealize(state);
	}
	pci_host_class.unrealize(pci);
	if (fake_vm_ranges(vm) != 0) {
		abort(); /* unrealize must remove every range it registered */
	}
	fake_vm_free(vm);
	event_base_loop(t->base, EVLOOP_NONBLOCK);
}
