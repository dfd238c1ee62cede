/*
 * libFuzzer target: fw_cfg (hw/platform/fw-cfg.c) on the fake machine's
 * I/O bus and guest RAM: selector writes (numbered keys, arch keys, files,
 * the directory), data-port reads and writes, and DMA descriptors the
 * guest writes into RAM (select, read, skip, write to a writable file,
 * errors, addresses at and past the end of RAM), triggered by the split
 * and the 64-bit address writes; reset and a save/load round trip. The
 * input is a stream of operations (see the switch below).
 */
#include "config.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "common/vmstate.h"
#include "hw/core/iobus.h"
#include "hw/core/memory.h"
#include "hw/device.h"
#include "hw/platform/fw-cfg.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-machine.h"

#define RAM_SIZE (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fw_cfg *make(struct guest_mem *mem)
{
	static const char blob[] = "0123456789abcdef";
	struct fw_cfg *fw = fw_cfg_new(mem);

	if (!fw || fw_cfg_add_i32(fw, FW_CFG_NB_CPUS, 2) < 0 ||
	    fw_cfg_add_i64(fw, FW_CFG_RAM_SIZE, RAM_SIZE) < 0 ||
	    fw_cfg_add_bytes(fw, FW_CFG_E820_TABLE, blob, sizeof(blob)) < 0 ||
	    fw_cfg_add_file(fw, "etc/ro", blob, 10, false, NULL) < 0 ||
	    fw_cfg_add_file(fw, "etc/rw", blob, 16, true, NULL) < 0 ||
	    fw_cfg_add_file(fw, "etc/empty", blob, 0, true, NULL) < 0) {
		abort();
	}
	return fw;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = {data, size};
	struct vm *vm = fake_vm_new(NULL, RAM_SIZE, NULL);
	struct guest_mem *mem = vm_guest_mem(vm);
	struct iobus *bus = vm_iobus(vm);
	struct fw_cfg *fw = make(mem);
	unsigned ops = 0;
	uint64_t v;

	if (fw_cfg_register(fw, bus, NULL) < 0) {
		abort();
	}
	while (fz_more(&f) && ops++ < 4096) {
		uint8_t op = fz_u8(&f);

		switch (op % 10) {
		case 0: { /* selector: a key near the interesting ones */
			static const uint16_t keys[] = {0x00, 0x01, 0x05,   0x19,   0x20,  0x21,
							0x22, 0x23, 0x8003, 0x7fff, 0xffff};
			uint8_t k = fz_u8(&f);

			iobus_write(bus, IOBUS_PIO, 0x510, 2,
				    k < 128 ? keys[k % (sizeof(keys) / sizeof(keys[0]))]
					    : fz_u16(&f));
			break;
		}
		case 1: { /* data port reads: up to 64 */
			unsigned n = fz_u8(&f) % 65;

			for (unsigned i = 0; i < n; i++) {
				iobus_read(bus, IOBUS_PIO, 0x511, 1, &v);
			}
			break;
		}
		case 2: /* any access in the block, any size */
		{
			unsigned off = fz_u8(&f) % FW_CFG_IO_SIZE, sz = 1u << (fz_u8(&f) % 4);

			if (fz_u8(&f) & 1) {
				uint64_t val = fz_u32(&f);

				iobus_write(bus, IOBUS_PIO, 0x510 + off, sz,
					    val | (uint64_t)fz_u32(&f) << 32);
			} else {
				iobus_read(bus, IOBUS_PIO, 0x510 + off, sz, &v);
			}
			break;
		}
		case 3: { /* a DMA descriptor at a guest address */
			uint32_t at = fz_u32(&f) % (RAM_SIZE + 64);
			uint32_t d[4] = {htobe32(fz_u32(&f)), 0, 0, 0}; /* control, length */
			uint64_t addr;

			d[1] = htobe32(
				fz_u32(&f)); /* after d[0]: an initializer's order is unspecified */
			addr = fz_u32(&f) % (RAM_SIZE + 4096);
			d[2] = htobe32((uint32_t)(addr >> 32));
			d[3] = htobe32((uint32_t)addr);
			guest_mem_write(mem, at, d, sizeof(d));
			break;
		}
		case 4: { /* run a DMA: high then low half, or one 64-bit write */
			uint32_t at = fz_u32(&f) % (RAM_SIZE + 64);

			if (fz_u8(&f) & 1) {
				iobus_write(bus, IOBUS_PIO, 0x514, 8, htobe64(at));
			} else {
				iobus_write(bus, IOBUS_PIO, 0x514, 4, 0);
				iobus_write(bus, IOBUS_PIO, 0x518, 4, htobe32(at));
			}
			break;
		}
		case 5: { /* a descriptor with a structured control word, run at once */
			uint32_t ctl = fz_u8(&f) & 0x1f, key = fz_u8(&f);
			uint32_t len = fz_u16(&f), dst = fz_u32(&f) % (RAM_SIZE + 4096);
			uint32_t d[4] = {htobe32(ctl | (key < 0x30 ? key : 0x8000 | key) << 16),
					 htobe32(len), 0, htobe32(dst)};

			guest_mem_write(mem, 0x1000, d, sizeof(d));
			iobus_write(bus, IOBUS_PIO, 0x514, 8, htobe64(0x1000));
			break;
		}
		case 6: { /* guest data for DMA writes */
			uint8_t buf[32];
			uint32_t gpa = fz_u32(&f) % RAM_SIZE;
			size_t n = fz_bytes(&f, buf, sizeof(buf));

			guest_mem_write(mem, gpa, buf, n);
			break;
		}
		case 7:
			fw_cfg_reset(fw);
			break;
		case 8: { /* save, load into a second device built the same way */
			struct vmstate_buf out, in;
			struct fw_cfg *fw2 = make(mem);

			vmstate_buf_init(&out);
			fw_cfg_save(fw, &out);
			if (out.failed) {
				abort();
			}
			vmstate_buf_wrap(&in, out.data, out.len);
			if (fw_cfg_load(fw2, &in, NULL) < 0) {
				abort(); /* what was saved must load */
			}
			vmstate_buf_free(&in);
			vmstate_buf_free(&out);
			fw_cfg_free(fw2);
			break;
		}
		case 9: { /* a hostile state stream: may fail, must not crash */
			struct vmstate_buf in;
			struct fw_cfg *fw2 = make(mem);
			size_t n = fz_u8(&f);

			n = n < f.n ? n : f.n;
			vmstate_buf_wrap(&in, f.p, n);
			f.p += n;
			f.n -= n;
			fw_cfg_load(fw2, &in, NULL);
			vmstate_buf_free(&in);
			fw_cfg_free(fw2);
			break;
		}
		}
	}
	fw_cfg_unregister(fw, bus);
	if (iobus_count(bus) != 0) {
		abort();
	}
	fw_cfg_free(fw);
	fake_vm_free(vm);
	return 0;
}
