/*
 * libFuzzer target: the e1000 NIC model (hw/pci/e1000.c) over the fake
 * machine's guest RAM: register writes and reads through the memory and
 * I/O BARs (EEPROM, PHY/MDIC, interrupt, filter and ring registers),
 * guest-written transmit and receive descriptor rings and buffers (legacy,
 * context and data descriptors, TSO), transmit processing, received frames
 * and link changes, reset and a save/load round trip. The input is a
 * stream of operations (see the switch below).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "common/vmstate.h"
#include "hw/core/memory.h"
#include "hw/device.h"
#include "hw/pci/e1000.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-machine.h"

#define RAM_SIZE (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned kicked, resumed;

static int host_send(void *opaque, const struct iovec *iov, unsigned cnt)
{
	size_t n = 0;

	(void)opaque;
	for (unsigned i = 0; i < cnt; i++) {
		const volatile uint8_t *b = iov[i].iov_base;

		/* every byte handed to the backend must be readable */
		for (size_t k = 0; k < iov[i].iov_len; k++) {
			n += b[k];
		}
	}
	return n == (size_t)-1 ? -1 : 0;
}

static void host_irq(void *opaque, int level)
{
	(void)opaque;
	(void)level;
}

static void host_kick(void *opaque)
{
	(void)opaque;
	kicked++;
}

static void host_resume(void *opaque)
{
	(void)opaque;
	resumed++;
}

static const struct e1000_host_ops ops = {
	.send = host_send, .set_irq = host_irq, .kick_tx = host_kick, .rx_resume = host_resume};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
	static uint8_t frame[E1000_MAX_FRAME];
	struct fz f = {data, size};
	struct vm *vm = fake_vm_new(NULL, RAM_SIZE, NULL);
	struct guest_mem *mem = vm_guest_mem(vm);
	struct e1000 *e = e1000_new(mem, mac, &ops, NULL);
	unsigned n_ops = 0;

	if (!e) {
		abort();
	}
	while (fz_more(&f) && n_ops++ < 4096) {
		uint8_t op = fz_u8(&f);

		switch (op % 10) {
		case 0: { /* memory BAR write: registers live below 0x8000 */
			uint32_t off = fz_u16(&f) & 0x7ffc;

			e1000_mmio_write(e, off, fz_u32(&f), 4);
			break;
		}
		case 1: /* memory BAR read */
			e1000_mmio_read(e, fz_u16(&f) & 0x7ffc, 4);
			break;
		case 2: { /* I/O BAR: IOADDR/IODATA (and stray offsets) */
			uint32_t off = fz_u8(&f) % E1000_IO_SIZE;
			unsigned sz = fz_size(&f);

			if (fz_u8(&f) & 1) {
				e1000_io_write(e, off, fz_u32(&f), sz);
			} else {
				e1000_io_read(e, off, sz);
			}
			break;
		}
		case 3: { /* guest writes a descriptor or buffer: up to 64 bytes */
			uint8_t buf[64];
			uint32_t gpa = (uint32_t)fz_u16(&f) << 4;
			size_t n = fz_bytes(&f, buf, 1 + fz_u8(&f) % sizeof(buf));

			guest_mem_write(mem, gpa, buf, n);
			break;
		}
		case 4: /* the I/O thread runs the transmit ring */
			e1000_tx_process(e);
			break;
		case 5: { /* a frame arrives: size from the input, bytes from it too */
			size_t len = fz_u16(&f) % (sizeof(frame) + 1);
			struct iovec iov[2];

			memset(frame, 0, len);
			fz_bytes(&f, frame, len < 64 ? len : 64);
			iov[0] = (struct iovec){frame, len / 2};
			iov[1] = (struct iovec){frame + len / 2, len - len / 2};
			e1000_receive(e, iov, 2);
			break;
		}
		case 6:
			e1000_set_link(e, fz_u8(&f) & 1);
			break;
		case 7:
			e1000_reset(e);
			break;
		case 8: { /* save, then load into a second device; both must agree */
			struct vmstate_buf out, in;
			struct e1000 *e2 = e1000_new(mem, mac, &ops, NULL);

			vmstate_buf_init(&out);
			e1000_save(e, &out);
			if (!e2 || out.failed) {
				abort();
			}
			vmstate_buf_wrap(&in, out.data, out.len);
			if (e1000_load(e2, &in, NULL) < 0) {
				abort(); /* what we saved must load */
			}
			e1000_free(e2);
			vmstate_buf_free(&in);
			vmstate_buf_free(&out);
			break;
		}
		case 9: { /* a descriptor ring set up in one go: base, length, head, tail */
			uint32_t base = fz_u8(&f) & 1 ? 0x3800 : 0x2800; /* TDBAL : RDBAL */

			e1000_mmio_write(e, base, (uint32_t)fz_u16(&f) << 4, 4);
			e1000_mmio_write(e, base + 4, 0, 4);
			e1000_mmio_write(e, base + 8, (fz_u8(&f) + 1u) * 128, 4);
			e1000_mmio_write(e, base + 0x10, fz_u16(&f), 4);
			e1000_mmio_write(e, base + 0x18, fz_u16(&f), 4);
			break;
		}
		}
	}
	e1000_free(e);
	fake_vm_free(vm);
	return 0;
}
