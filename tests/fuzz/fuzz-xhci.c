/*
 * libFuzzer target: the xHCI controller model (hw/usb/xhci.c) with its USB
 * devices over the fake machine's guest RAM: register writes and reads
 * (capability, operational, port, runtime and doorbell registers),
 * guest-written command, transfer and event ring structures (TRBs, the
 * event ring segment table, device and input contexts), doorbells, device
 * attach and detach on any port (keyboard, tablet, usb-storage without a
 * 256 KiB raw medium), HID input, wakeups, reset, a save/load round trip and a load of
 * arbitrary bytes. The input is a stream of operations (see the switch
 * below); one of them lays out a running controller so that commands and
 * transfers are reached from short inputs.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/vmstate.h"
#include "hw/core/memory.h"
#include "hw/usb/usb.h"
#include "hw/usb/xhci-ring.h"
#include "hw/usb/xhci.h"
#include "tests/fuzz/fuzz-disk.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-machine.h"
#include "vmmd/block.h"

#define RAM_SIZE (1u << 20)

/* Where the layout operation puts the controller's structures. */
#define DCBAA 0x1000
#define CMD_RING 0x2000
#define CMD_TRBS 64
#define ERST 0x3000
#define EVENT_RING 0x4000
#define INPUT_CTX 0x8000 /* eight of 4 KiB */
#define DEV_CTX 0x10000	 /* one of 2 KiB per slot */
#define XFER_RING 0x30000

/* Register offsets in the BAR (xHCI 1.2 §5.4, §5.5; the model's layout in xhci.h). */
#define USBCMD 0x40
#define CRCR 0x58
#define DCBAAP 0x70
#define CONFIG 0x78
#define IMAN0 0x1020
#define ERSTSZ0 0x1028
#define ERSTBA0 0x1030
#define ERDP0 0x1038
#define DOORBELL 0x2000

#define DISK_SIZE (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool host_msix_enabled(void *opaque)
{
	return opaque != NULL;
}

static void host_msix_notify(void *opaque, unsigned intr)
{
	(void)opaque;
	(void)intr;
}

static void host_set_intx(void *opaque, bool level)
{
	(void)opaque;
	(void)level;
}

static void host_wake(void *opaque)
{
	(void)opaque;
}

static void host_wake_at(void *opaque, uint64_t ns)
{
	(void)opaque;
	(void)ns;
}

static const struct xhci_host_ops ops = {.msix_enabled = host_msix_enabled,
					 .msix_notify = host_msix_notify,
					 .set_intx = host_set_intx,
					 .wake = host_wake,
					 .wake_at = host_wake_at};

static void put_trb(struct guest_mem *mem, uint64_t gpa, uint64_t param, uint32_t status,
		    uint32_t control)
{
	uint8_t t[16];

	for (unsigned i = 0; i < 8; i++) {
		t[i] = (uint8_t)(param >> (8 * i));
	}
	for (unsigned i = 0; i < 4; i++) {
		t[8 + i] = (uint8_t)(status >> (8 * i));
		t[12 + i] = (uint8_t)(control >> (8 * i));
	}
	guest_mem_write(mem, gpa % RAM_SIZE, t, sizeof(t));
}

static void put_u64(struct guest_mem *mem, uint64_t gpa, uint64_t v)
{
	uint8_t b[8];

	for (unsigned i = 0; i < 8; i++) {
		b[i] = (uint8_t)(v >> (8 * i));
	}
	guest_mem_write(mem, gpa, b, sizeof(b));
}

/* A running controller: DCBAA, command ring (with a Link back), one event ring segment. */
static void layout(struct xhci *x, struct guest_mem *mem, struct fz *f)
{
	unsigned ev_trbs = 16u << (fz_u8(f) % 3);

	for (unsigned slot = 1; slot <= XHCI_MAX_SLOTS; slot++) {
		put_u64(mem, DCBAA + 8ull * slot, DEV_CTX + 0x800ull * (slot - 1));
	}
	put_trb(mem, CMD_RING + 16 * (CMD_TRBS - 1), CMD_RING, 0, TRB_LINK << 10 | TRB_TC);
	put_u64(mem, ERST, EVENT_RING);
	put_u64(mem, ERST + 8, ev_trbs);
	xhci_mmio_write(x, DCBAAP, DCBAA, 8);
	xhci_mmio_write(x, CRCR, CMD_RING | 1, 8); /* RCS */
	xhci_mmio_write(x, CONFIG, XHCI_MAX_SLOTS, 4);
	xhci_mmio_write(x, ERSTSZ0, 1, 4);
	xhci_mmio_write(x, ERDP0, EVENT_RING, 8);
	xhci_mmio_write(x, ERSTBA0, ERST, 8);
	xhci_mmio_write(x, IMAN0, 2, 4);		       /* IE */
	xhci_mmio_write(x, USBCMD, 1 | 4 | (fz_u8(f) & 8), 4); /* RS, INTE, maybe HSEE */
}

static struct usb_device *new_device(unsigned kind, unsigned port)
{
	char id[16];
	struct usb_device *dev = NULL;
	int r;

	snprintf(id, sizeof(id), "d%u", port);
	if (kind == 2) {
		struct usb_storage_config sc = {.id = id, .removable = port & 1};

		/* several devices may share the medium: no image lock */
		if (block_open(&sc.bs, fuzz_disk_path, "raw",
			       BLOCK_O_NO_LOCK | (port & 2 ? 0 : BLOCK_O_RDWR), NULL) < 0) {
			abort();
		}
		r = usb_storage_new(&sc, &dev, NULL); /* takes the node, also on failure */
	} else {
		r = usb_hid_new(kind ? USB_HID_TABLET : USB_HID_KEYBOARD, id, &dev, NULL);
	}
	return r == 0 ? dev : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = {data, size};
	struct vm *vm = fake_vm_new(NULL, RAM_SIZE, NULL);
	struct guest_mem *mem = vm_guest_mem(vm);
	struct xhci *x = xhci_new(mem, &ops, NULL);
	unsigned n_ops = 0, cmd_next = 0;
	bool cmd_cycle = true;

	if (!x) {
		abort();
	}
	fuzz_disk_reset(DISK_SIZE);
	while (fz_more(&f) && n_ops++ < 2048) {
		uint8_t op = fz_u8(&f);

		switch (op % 14) {
		case 0: { /* register write, 4 or 8 bytes (the MSI-X range is the owner's) */
			bool wide = fz_u8(&f) & 1;
			uint64_t off = (fz_u16(&f) % XHCI_MSIX_TABLE) & (wide ? ~7u : ~3u);
			uint64_t v = fz_u32(&f);

			if (wide) {
				v |= (uint64_t)fz_u32(&f) << 32;
			}
			xhci_mmio_write(x, off, v, wide ? 8 : 4);
			break;
		}
		case 1: { /* register read of any size, also misaligned */
			unsigned sz = 1u << (fz_u8(&f) % 4);

			xhci_mmio_read(x, fz_u16(&f) % XHCI_MMIO_SIZE, sz);
			break;
		}
		case 2: { /* guest writes up to 64 bytes anywhere */
			uint8_t buf[64];
			uint32_t gpa = ((uint32_t)fz_u16(&f) << 4) % RAM_SIZE;
			size_t n = fz_bytes(&f, buf, 1 + fz_u8(&f) % sizeof(buf));

			guest_mem_write(mem, gpa, buf, n);
			break;
		}
		case 3: { /* a TRB anywhere: type and flags from the input */
			uint64_t gpa = (uint64_t)fz_u16(&f) << 4;
			uint64_t param = fz_u32(&f);
			uint32_t status, control;

			/* one getter per statement: the input is read in this order */
			param |= (uint64_t)fz_u32(&f) << 32;
			status = fz_u32(&f);
			control = (uint32_t)(fz_u8(&f) % 64) << 10;
			control |= fz_u8(&f);
			control |= (uint32_t)fz_u16(&f) << 16;

			put_trb(mem, gpa, param, status, control);
			break;
		}
		case 4: { /* doorbell: slot 0..64, target */
			unsigned slot = fz_u8(&f) % (XHCI_MAX_SLOTS + 1);
			uint32_t v = fz_u8(&f); /* target */

			v |= (uint32_t)fz_u16(&f) << 16; /* stream id */
			xhci_mmio_write(x, DOORBELL + 4 * slot, v, 4);
			break;
		}
		case 5:
			layout(x, mem, &f);
			cmd_next = 0;
			cmd_cycle = true;
			break;
		case 6: { /* the next command on the laid-out ring, then doorbell 0 */
			uint32_t type = fz_u8(&f) % 24 + 1;
			uint32_t slot = fz_u8(&f) % (XHCI_MAX_SLOTS + 2);
			uint64_t param = INPUT_CTX + 0x1000ull * (fz_u8(&f) % 8);
			uint32_t flags = (fz_u8(&f) & 1u) << 9; /* BSR, DC, TSP: bit 9 */
			uint32_t ep;

			if (type == TRB_CMD_SET_TR_DEQUEUE) {
				param = XFER_RING + 0x400ull * (fz_u8(&f) % 64) + 1;
			}
			ep = fz_u8(&f) % 32;
			put_trb(mem, CMD_RING + 16 * cmd_next, param, 0,
				slot << 24 | ep << 16 | type << 10 | flags | cmd_cycle);
			if (++cmd_next == CMD_TRBS - 1) {
				/* the Link: written with our cycle, it toggles it */
				put_trb(mem, CMD_RING + 16 * cmd_next, CMD_RING, 0,
					TRB_LINK << 10 | TRB_TC | cmd_cycle);
				cmd_next = 0;
				cmd_cycle = !cmd_cycle;
			}
			xhci_mmio_write(x, DOORBELL, 0, 4);
			break;
		}
		case 7: { /* a context dword: input contexts (8) or device contexts (64 slots) */
			uint32_t ctx = fz_u8(&f) & 1 ? INPUT_CTX + 0x1000u * (fz_u8(&f) % 8)
						     : DEV_CTX + 0x800u * (fz_u8(&f) % 64);
			uint32_t off = 32u * (fz_u8(&f) % 34);
			uint8_t v[4];

			off += 4u * (fz_u8(&f) % 8);
			for (unsigned i = 0; i < 4; i++) {
				v[i] = fz_u8(&f);
			}
			guest_mem_write(mem, ctx + off, v, 4);
			break;
		}
		case 8:
			if (fz_u8(&f) & 1) {
				xhci_process_wakeups(x);
			} else {
				xhci_wake_all(x);
			}
			break;
		case 9: { /* attach to a port (0: the first free USB 2.0 one) or detach */
			unsigned port = fz_u8(&f) % (XHCI_PORTS + 2);
			unsigned kind = fz_u8(&f) % 4;

			if (kind == 3) {
				usb_device_free(xhci_detach(x, port));
			} else {
				struct usb_device *dev = new_device(kind, port);

				if (dev && xhci_attach(x, port, dev) < 0) {
					usb_device_free(dev);
				}
			}
			break;
		}
		case 10: { /* HID input for the device of a port */
			char id[16];
			struct usb_device *dev;
			struct usb_input_event ev;

			/* field by field: an initializer list's order is unspecified */
			ev.type = fz_u8(&f) % 4;
			ev.code = fz_u8(&f);
			ev.down = fz_u8(&f) & 1;
			ev.value = (int16_t)fz_u16(&f);
			ev.delay_ms = fz_u8(&f) % 4;
			snprintf(id, sizeof(id), "d%u", fz_u8(&f) % (XHCI_PORTS + 2));
			dev = xhci_find(x, id);
			if (dev && (usb_hid_is_keyboard(dev) || usb_hid_is_pointer(dev))) {
				usb_hid_input(dev, &ev, 1);
			}
			break;
		}
		case 11:
			xhci_reset(x);
			break;
		case 12: { /* save and load back: what was saved must load */
			struct vmstate_buf out, in;
			struct error *err = NULL;

			vmstate_buf_init(&out);
			xhci_save(x, &out);
			if (out.failed) {
				abort();
			}
			vmstate_buf_wrap(&in, out.data, out.len);
			if (xhci_load(x, &in, &err) < 0) {
				fprintf(stderr, "xhci: own state refused: %s\n",
					err ? err->msg : "?");
				abort();
			}
			vmstate_buf_free(&in);
			vmstate_buf_free(&out);
			break;
		}
		case 13: { /* a load of arbitrary bytes: refused or taken, never a crash */
			uint8_t buf[512];
			struct vmstate_buf in;
			struct error *err = NULL;
			size_t n = fz_bytes(&f, buf, fz_u16(&f) % sizeof(buf));

			vmstate_buf_wrap(&in, buf, n);
			if (xhci_load(x, &in, &err) < 0) {
				error_free(err);
			}
			break;
		}
		}
	}
	xhci_free(x);
	fake_vm_free(vm);
	return 0;
}
