/*
 * The shared body of the fuzz targets of fixed-port devices (UART, RTC):
 * the device class @cls realized on the fake machine, then a stream of
 * operations: port writes and reads in [@base, @base + @len), runs of the
 * VM's I/O loop, reset, a save/load round trip into a second instance (it
 * must load) and a load of raw input bytes (a hostile migration stream: it
 * may fail, never crash). The target describes itself in a struct
 * fuzz_pio: prepare (may be NULL) sets up each fake VM before realize,
 * extra (may be NULL) takes the device's own operations (op % 16 >= 9).
 */
#pragma once

#include <stdlib.h>

#include <event2/event.h>

#include "common/vmstate.h"
#include "hw/core/iobus.h"
#include "hw/device.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-machine.h"

struct fuzz_pio {
	const struct device_class *cls;
	const struct vm_config *cfg;
	struct event_base *base;
	uint16_t port0;
	unsigned nports;
	void (*prepare)(struct vm *vm);
	void (*extra)(struct vm *vm, void *state, uint8_t op, struct fz *f);
};

/* @second: the round trip's instance, on a VM of another name (console paths). */
static struct vm *fuzz_pio_vm(const struct fuzz_pio *t, bool second, void **ret_state)
{
	static const struct vm_config cfg2 = {.name = "fuzz2"};
	struct vm *vm = fake_vm_new(second ? &cfg2 : t->cfg, 0, t->base);

	if (t->prepare) {
		t->prepare(vm);
	}
	*ret_state = NULL;
	if (t->cls->realize(vm, NULL, ret_state, NULL) < 0) {
		abort();
	}
	return vm;
}

/* A second instance needs its own VM (one device of a class per VM). */
static void fuzz_pio_roundtrip(const struct fuzz_pio *t, void *state, const uint8_t *raw,
			       size_t raw_len)
{
	const struct device_class *cls = t->cls;
	void *s2;
	struct vm *vm2 = fuzz_pio_vm(t, true, &s2);
	struct vmstate_buf out, in;

	vmstate_buf_init(&out);
	if (raw) {
		vmstate_buf_wrap(&in, raw, raw_len);
		cls->load(s2, &in, cls->state_version, NULL);
	} else {
		if (cls->save(state, &out, NULL) < 0 || out.failed) {
			abort();
		}
		vmstate_buf_wrap(&in, out.data, out.len);
		if (cls->load(s2, &in, cls->state_version, NULL) < 0) {
			abort(); /* what was saved must load */
		}
	}
	vmstate_buf_free(&in);
	vmstate_buf_free(&out);
	cls->unrealize(s2);
	fake_vm_free(vm2);
}

static void fuzz_pio_run(const struct fuzz_pio *t, const uint8_t *data, size_t size)
{
	const struct device_class *cls = t->cls;
	struct fz f = {data, size};
	void *state;
	struct vm *vm = fuzz_pio_vm(t, false, &state);
	struct iobus *bus = vm_iobus(vm);
	unsigned ops = 0;
	uint64_t v;

	while (fz_more(&f) && ops++ < 4096) {
		uint8_t op = fz_u8(&f);
		uint16_t port = t->port0 + fz_u8(&f) % t->nports;

		switch (op % 16) {
		case 0:
		case 1:
		case 2:
			iobus_write(bus, IOBUS_PIO, port, 1, fz_u8(&f));
			break;
		case 3:
		case 4:
			iobus_read(bus, IOBUS_PIO, port, 1, &v);
			break;
		case 5:
			event_base_loop(t->base, EVLOOP_NONBLOCK);
			break;
		case 6:
			if (cls->reset) {
				cls->reset(state);
			}
			break;
		case 7:
			if (cls->save) {
				fuzz_pio_roundtrip(t, state, NULL, 0);
			}
			break;
		case 8:
			if (cls->load) {
				size_t n = fz_u8(&f);

				n = n < f.n ? n : f.n;
				fuzz_pio_roundtrip(t, state, f.p, n);
				f.p += n;
				f.n -= n;
			}
			break;
		default:
			if (t->extra) {
				t->extra(vm, state, op, &f);
			}
			break;
		}
	}
	cls->unrealize(state);
	if (iobus_count(bus) != 0) {
		abort(); /* unrealize must remove every range it registered */
	}
	fake_vm_free(vm);
	/* Events the device left behind must not fire into freed state. */
	event_base_loop(t->base, EVLOOP_NONBLOCK);
}
