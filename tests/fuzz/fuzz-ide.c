/*
 * libFuzzer target: the IDE controller (hw/pci/ide.c) on the fake machine
 * (tests/unit/fake-machine.c): ATA and ATAPI commands through the task
 * file, PIO data in and out, bus-master DMA with guest-written PRD tables,
 * software reset and the host's CD-ROM tray and media, on a 1 MiB raw disk (primary
 * master) and a 100-sector CD-ROM (secondary master), both fresh each run.
 * The input is a stream of operations (see the switch below).
 */
#include "config.h"

#include <endian.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/core/iobus.h"
#include "hw/core/memory.h"
#include "hw/device.h"
#include "hw/pci/ide.h"
#include "tests/fuzz/fuzz-input.h"
#include "tests/unit/fake-machine.h"
#include "vmmd/block.h"

#define RAM_SIZE (1u << 20)
#define HD_SIZE (1u << 20)
#define CD_SIZE (100u * 2048)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path_hd[] = "/tmp/fuzz-ide-hd-XXXXXX", path_cd[] = "/tmp/fuzz-ide-cd-XXXXXX";

static void cleanup(void)
{
	unlink(path_hd);
	unlink(path_cd);
}

static uint8_t hd_data[HD_SIZE];

/* Sector i of a @sector-byte-sector image of @size bytes starts with i. */
static void make_image(char *path, uint8_t *buf, uint32_t size, unsigned sector)
{
	int fd = mkstemp(path);

	for (uint32_t i = 0; i < size / sector; i++) {
		memcpy(buf + (size_t)i * sector, &i, 4);
	}
	if (fd < 0 || pwrite(fd, buf, size, 0) != (ssize_t)size) {
		abort();
	}
	close(fd);
}

/* Undo a run's writes to the disk so that runs stay independent. */
static void restore_hd(void)
{
	int fd = open(path_hd, O_WRONLY);

	if (fd < 0 || pwrite(fd, hd_data, HD_SIZE, 0) != HD_SIZE) {
		abort();
	}
	close(fd);
}

static struct block_node *open_img(const char *path, bool rw)
{
	struct block_node *bs = NULL;

	if (block_open(&bs, path, "raw", rw ? BLOCK_O_RDWR : 0, NULL) < 0) {
		abort();
	}
	return bs;
}

/* The command-block ports of both channels, then their control ports. */
static const uint16_t ports[] = {0x1f0, 0x1f1, 0x1f2, 0x1f3, 0x1f4, 0x1f5, 0x1f6, 0x1f7, 0x170,
				 0x171, 0x172, 0x173, 0x174, 0x175, 0x176, 0x177, 0x3f6, 0x376};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	struct fz f = {data, size};
	struct vm *vm;
	struct iobus *bus;
	struct guest_mem *mem;
	struct ide *ide;
	unsigned ops = 0;
	uint64_t v;

	if (!init) {
		static uint8_t cd_data[CD_SIZE];

		make_image(path_hd, hd_data, HD_SIZE, 512);
		make_image(path_cd, cd_data, CD_SIZE, 2048);
		atexit(cleanup);
		init = true;
	}
	vm = fake_vm_new(NULL, RAM_SIZE, NULL);
	bus = vm_iobus(vm);
	mem = vm_guest_mem(vm);
	ide = ide_new(NULL, bus, mem);
	if (!ide || ide_attach(ide, 0, open_img(path_hd, true), false, "FUZZ", NULL) < 0 ||
	    ide_attach(ide, 2, open_img(path_cd, false), true, NULL, NULL) < 0 ||
	    ide_register(ide, NULL) < 0) {
		abort();
	}
	while (fz_more(&f) && ops++ < 4096) {
		uint8_t op = fz_u8(&f);
		uint16_t port = ports[fz_u8(&f) % (sizeof(ports) / sizeof(ports[0]))];

		switch (op % 12) {
		case 0: /* one register write */
			iobus_write(bus, IOBUS_PIO, port, 1, fz_u8(&f));
			break;
		case 1: /* one register read */
			iobus_read(bus, IOBUS_PIO, port, 1, &v);
			break;
		case 2: { /* PIO data in: up to 1020 words */
			unsigned n = fz_u8(&f) * 4u;

			for (unsigned i = 0; i < n; i++) {
				iobus_read(bus, IOBUS_PIO, port & ~7u, 2, &v);
			}
			break;
		}
		case 3: { /* PIO data out: up to 1020 words of one value */
			unsigned n = fz_u8(&f) * 4u;
			uint16_t w = fz_u16(&f);

			for (unsigned i = 0; i < n; i++) {
				iobus_write(bus, IOBUS_PIO, port & ~7u, 2, w);
			}
			break;
		}
		case 4: { /* an ATA command with LBA28 task file */
			uint16_t base = port & ~7u;
			uint8_t dev = fz_u8(&f), cmd = fz_u8(&f);

			iobus_write(bus, IOBUS_PIO, base + 1, 1, fz_u8(&f));
			iobus_write(bus, IOBUS_PIO, base + 2, 1, fz_u8(&f));
			iobus_write(bus, IOBUS_PIO, base + 3, 1, fz_u8(&f));
			iobus_write(bus, IOBUS_PIO, base + 4, 1, fz_u8(&f));
			iobus_write(bus, IOBUS_PIO, base + 5, 1, fz_u8(&f));
			iobus_write(bus, IOBUS_PIO, base + 6, 1, dev);
			iobus_write(bus, IOBUS_PIO, base + 7, 1, cmd);
			break;
		}
		case 5: { /* ATAPI PACKET with a 12-byte CDB */
			uint16_t base = port & ~7u;
			uint8_t cdb[12] = {0};

			iobus_write(bus, IOBUS_PIO, base + 6, 1, fz_u8(&f) & 0x10);
			iobus_write(bus, IOBUS_PIO, base + 1, 1, fz_u8(&f) & 1);
			iobus_write(bus, IOBUS_PIO, base + 4, 1, fz_u8(&f));
			iobus_write(bus, IOBUS_PIO, base + 5, 1, fz_u8(&f));
			iobus_write(bus, IOBUS_PIO, base + 7, 1, 0xa0);
			fz_bytes(&f, cdb, sizeof(cdb));
			for (unsigned i = 0; i < 6; i++) {
				iobus_write(bus, IOBUS_PIO, base, 2,
					    cdb[2 * i] | cdb[2 * i + 1] << 8);
			}
			break;
		}
		case 6: { /* bus-master register write */
			unsigned off = fz_u8(&f) % IDE_BM_SIZE, sz = fz_size(&f);

			ide_bm_write(ide, off, fz_u32(&f), sz);
			break;
		}
		case 7: { /* bus-master register read */
			unsigned off = fz_u8(&f) % IDE_BM_SIZE;

			ide_bm_read(ide, off, fz_size(&f));
			break;
		}
		case 8: { /* a PRD entry in the table area (guest RAM 0x1000..0x1fff) */
			uint32_t e[2];
			unsigned i = fz_u8(&f) % 512;

			e[0] = htole32(fz_u32(&f));
			e[1] = htole32(fz_u32(&f));
			guest_mem_write(mem, 0x1000 + 8 * i, e, 8);
			break;
		}
		case 9: /* start the port's channel bus master, table at 0x1000 (0x1f0: bit 7) */
			ide_bm_write(ide, (port & 0x80) ? 4 : 8 + 4, 0x1000, 4);
			ide_bm_write(ide, (port & 0x80) ? 0 : 8, fz_u8(&f) & 0x09, 1);
			break;
		case 10: /* system reset */
			ide_reset(ide);
			break;
		case 11: { /* the host's tray: a media change, open, close, a medium in the open tray */
			struct block_node *bs = NULL;
			unsigned mode;

			v = fz_u8(&f);
			mode = v >> 4 & 3;
			if (v & 1 && (mode == 0 || mode == 3)) {
				bs = open_img(path_cd, false);
			}
			switch (mode) {
			case 0: /* changes (or ejects) the CD, forced or not */
				if (ide_cd_change_media(ide, 2, bs, v & 2, NULL) < 0) {
					block_unref(bs); /* refused: still ours */
				}
				break;
			case 1:
				ide_cd_open_tray(ide, 2, v & 2, NULL);
				break;
			case 2:
				ide_cd_close_tray(ide, 2);
				break;
			default:
				if (ide_cd_set_medium(ide, 2, bs, NULL) < 0) {
					block_unref(bs);
				}
				break;
			}
			break;
		}
		}
	}
	ide_unregister(ide);
	if (iobus_count(bus) != 0) {
		abort();
	}
	ide_free(ide);
	fake_vm_free(vm);
	restore_hd();
	return 0;
}
