/* Unit tests for hw/pci/ide.c: ATA PIO/DMA and ATAPI over a fake I/O bus and guest RAM. */
#include "config.h"

#include <check.h>
#include <endian.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vmstate.h"
#include "hw/pci/ide.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "tests/unit/fake-machine.h"
#include "vmmd/block.h"

#define P 0x1f0
#define CTL 0x3f6

static struct vm *vm0;
static struct guest_mem *mem;
static uint8_t *ram;
static struct iobus *bus;
static struct ide *ide;
static char path_hd[64], path_cd[64], path_cd2[64];
/*
 * The "io-thread" test case runs the same tests with DMA and flushes on an
 * event loop (ide_use_io_thread), as in a VM; the test's port reads first
 * let that loop finish what is in flight (settle), as a guest would wait
 * for the interrupt or for BSY to clear.
 */
static struct event_base *io_base;

static void settle(void)
{
	while (io_base && ide_busy(ide)) {
		event_base_loop(io_base, EVLOOP_ONCE);
	}
}

static uint64_t bm_read(struct ide *c, uint64_t offset, unsigned size)
{
	settle();
	return ide_bm_read(c, offset, size);
}
#define ide_bm_read bm_read

static void make_image(char *path, uint64_t size, unsigned sector, unsigned count)
{
	int fd;

	strcpy(path, "/tmp/test-ide-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	/* sector i is filled with the byte (i & 0xff) ^ 0x5a and starts with its number */
	for (unsigned i = 0; i < count; i++) {
		uint8_t buf[2048];

		memset(buf, (i & 0xff) ^ 0x5a, sector);
		memcpy(buf, &i, 4);
		ck_assert_int_eq(pwrite(fd, buf, sector, (off_t)i * sector), (ssize_t)sector);
	}
	close(fd);
}

static struct block_node *open_img(const char *path, bool rw)
{
	struct block_node *bs = NULL;

	ck_assert_int_eq(block_open(&bs, path, "raw", rw ? BLOCK_O_RDWR : 0, NULL), 0);
	return bs;
}

static void setup_ide(bool io_thread)
{
	vm0 = fake_vm_new(NULL, 1 << 20, NULL);
	mem = vm_guest_mem(vm0);
	ram = fake_vm_ram(vm0, 0);
	bus = vm_iobus(vm0);
	fake_irq_clear();
	make_image(path_hd, 1 << 20, 512, 64);
	make_image(path_cd, 100 * 2048, 2048, 100);
	make_image(path_cd2, 50 * 2048, 2048, 50);
	ide = ide_new(NULL, bus, mem);
	ck_assert_ptr_nonnull(ide);
	io_base = NULL;
	if (io_thread) {
		io_base = event_base_new();
		ck_assert_ptr_nonnull(io_base);
		ck_assert_int_eq(ide_use_io_thread(ide, io_base, NULL), 0);
	}
	ck_assert_int_eq(ide_attach(ide, 0, open_img(path_hd, true), false, "SER1", NULL), 0);
	ck_assert_int_eq(ide_attach(ide, 2, open_img(path_cd, false), true, NULL, NULL), 0);
	ck_assert_int_eq(ide_register(ide, NULL), 0);
}

static void setup(void)
{
	setup_ide(false);
}

static void setup_io_thread(void)
{
	setup_ide(true);
}

static void teardown(void)
{
	ide_unregister(ide);
	ck_assert_uint_eq(iobus_count(bus), 0);
	settle();
	ide_free(ide);
	if (io_base) {
		event_base_free(io_base);
		io_base = NULL;
	}
	fake_vm_free(vm0);
	unlink(path_hd);
	unlink(path_cd);
	unlink(path_cd2);
}

static uint8_t inb(uint16_t port)
{
	uint64_t v;

	settle();
	iobus_read(bus, IOBUS_PIO, port, 1, &v);
	return (uint8_t)v;
}

static uint16_t inw(uint16_t port)
{
	uint64_t v;

	settle();
	iobus_read(bus, IOBUS_PIO, port, 2, &v);
	return (uint16_t)v;
}

static void outb(uint16_t port, uint8_t v)
{
	settle();
	iobus_write(bus, IOBUS_PIO, port, 1, v);
}

static void outw(uint16_t port, uint16_t v)
{
	settle();
	iobus_write(bus, IOBUS_PIO, port, 2, v);
}

static void insw(uint16_t port, void *buf, unsigned words)
{
	for (unsigned i = 0; i < words; i++) {
		((uint16_t *)buf)[i] = inw(port);
	}
}

static void lba28(uint16_t base, uint8_t dev, uint32_t lba, uint8_t count)
{
	outb(base + 6, 0xe0 | dev << 4 | ((lba >> 24) & 0xf));
	outb(base + 2, count);
	outb(base + 3, lba & 0xff);
	outb(base + 4, (lba >> 8) & 0xff);
	outb(base + 5, (lba >> 16) & 0xff);
}

START_TEST(presence_and_signature)
{
	outb(P + 6, 0xa0);
	outb(P + 2, 0x55);
	outb(P + 3, 0xaa);
	ck_assert_uint_eq(inb(P + 2), 0x55);
	ck_assert_uint_eq(inb(P + 3), 0xaa);
	ck_assert_uint_eq(inb(P + 7) & 0xc0, 0x40); /* DRDY, not BSY */
	/* absent slave: status 0 */
	outb(P + 6, 0xb0);
	ck_assert_uint_eq(inb(P + 7), 0);
	/* soft reset puts the signatures back */
	outb(P + 6, 0xa0);
	outb(CTL, 0x04);
	ck_assert_uint_eq(inb(CTL) & 0x80, 0x80);
	outb(CTL, 0x00);
	ck_assert_uint_eq(inb(P + 2), 1);
	ck_assert_uint_eq(inb(P + 3), 1);
	ck_assert_uint_eq(inb(P + 4), 0);
	ck_assert_uint_eq(inb(P + 5), 0);
	outb(0x376, 0x04);
	outb(0x376, 0x00);
	ck_assert_uint_eq(inb(0x174), 0x14);
	ck_assert_uint_eq(inb(0x175), 0xeb);
}
END_TEST

START_TEST(identify_disk)
{
	uint16_t w[256];
	char model[41];

	outb(P + 6, 0xa0);
	outb(P + 7, 0xec);
	ck_assert_uint_eq(inb(CTL) & 0x08, 0x08);
	ck_assert_uint_eq(fake_irq_raises(14), 1);
	insw(P, w, 256);
	ck_assert_uint_eq(inb(P + 7) & 0x88, 0);
	for (unsigned i = 0; i < 20; i++) {
		model[2 * i] = (char)(w[27 + i] >> 8);
		model[2 * i + 1] = (char)(w[27 + i] & 0xff);
	}
	model[13] = 0;
	ck_assert_str_eq(model, "VMMD HARDDISK");
	ck_assert_uint_eq(w[60] | (uint32_t)w[61] << 16, 2048);
	ck_assert_uint_eq(w[100], 2048);
	ck_assert_uint_eq(w[83] & 0x0400, 0x0400); /* LBA48 */
	ck_assert_uint_eq(w[10], ('S' << 8) | 'E');
	/* a disk aborts IDENTIFY PACKET DEVICE */
	outb(P + 7, 0xa1);
	ck_assert_uint_eq(inb(P + 7) & 0x01, 0x01);
	ck_assert_uint_eq(inb(P + 1), 0x04);
}
END_TEST

START_TEST(pio_read_write)
{
	uint8_t buf[1024];
	uint32_t n;

	/* nIEN set: no interrupt */
	outb(CTL, 0x02);
	lba28(P, 0, 5, 2);
	outb(P + 7, 0x20);
	ck_assert_uint_eq(fake_irq_level(14), 0);
	insw(P, buf, 256);
	ck_assert_uint_eq(inb(P + 7) & 0x08, 0x08); /* second sector ready */
	insw(P, buf + 512, 256);
	ck_assert_uint_eq(inb(P + 7) & 0x89, 0);
	memcpy(&n, buf, 4);
	ck_assert_uint_eq(n, 5);
	ck_assert_uint_eq(buf[100], 5 ^ 0x5a);
	memcpy(&n, buf + 512, 4);
	ck_assert_uint_eq(n, 6);
	/* the registers end at the last sector */
	ck_assert_uint_eq(inb(P + 3), 6);

	/* write 1 sector with interrupts on; reads back through the block layer */
	outb(CTL, 0x00);
	lba28(P, 0, 9, 1);
	outb(P + 7, 0x30);
	ck_assert_uint_eq(inb(CTL) & 0x08, 0x08);
	for (unsigned i = 0; i < 256; i++) {
		outw(P, 0x1234);
	}
	settle(); /* the I/O thread's completion raises it */
	ck_assert_uint_eq(fake_irq_level(14), 1);
	ck_assert_uint_eq(inb(P + 7) & 0x89, 0);
	ck_assert_uint_eq(fake_irq_level(14), 0); /* reading status acknowledges */
	int fd = open(path_hd, O_RDONLY);
	ck_assert_int_eq(pread(fd, buf, 512, 9 * 512), 512);
	close(fd);
	ck_assert_uint_eq(buf[0], 0x34);
	ck_assert_uint_eq(buf[511], 0x12);
}
END_TEST

START_TEST(chs_and_multiple)
{
	uint8_t buf[4 * 512];
	uint32_t n;

	/* CHS: cylinder 0, head 1, sector 3 -> LBA 63 + 2 = 65 is past our 64 sectors? no: 2048 total */
	outb(P + 6, 0xa1); /* CHS, head 1 */
	outb(P + 2, 1);
	outb(P + 3, 3);
	outb(P + 4, 0);
	outb(P + 5, 0);
	outb(P + 7, 0x20);
	insw(P, buf, 256);
	memcpy(&n, buf, 4);
	ck_assert_uint_eq(n, 0); /* LBA 65 is beyond the written pattern: zeros */
	/* sector 0 is invalid in CHS */
	outb(P + 3, 0);
	outb(P + 7, 0x20);
	ck_assert_uint_eq(inb(P + 7) & 0x01, 0x01);

	/* READ MULTIPLE with 4 sectors per block: one DRQ block of 2048 bytes */
	outb(P + 2, 4);
	outb(P + 7, 0xc6);
	ck_assert_uint_eq(inb(P + 7) & 0x01, 0);
	lba28(P, 0, 10, 4);
	outb(P + 7, 0xc4);
	insw(P, buf, 1024);
	ck_assert_uint_eq(inb(P + 7) & 0x08, 0);
	memcpy(&n, buf + 3 * 512, 4);
	ck_assert_uint_eq(n, 13);
	/* invalid multiple count */
	outb(P + 2, 3);
	outb(P + 7, 0xc6);
	ck_assert_uint_eq(inb(P + 7) & 0x01, 0x01);
}
END_TEST

START_TEST(bounds)
{
	/* count 0 = 256 sectors starting at 2000 runs past the 2048-sector disk */
	lba28(P, 0, 2000, 0);
	outb(P + 7, 0x20);
	ck_assert_uint_eq(inb(P + 7) & 0x09, 0x01);
	ck_assert_uint_eq(inb(P + 1) & 0x10, 0x10);
	/* the last sector is fine */
	lba28(P, 0, 2047, 1);
	outb(P + 7, 0x20);
	ck_assert_uint_eq(inb(P + 7) & 0x09, 0x08);
	/* unknown command aborts */
	outb(P + 7, 0x01);
	ck_assert_uint_eq(inb(P + 1), 0x04);
}
END_TEST

START_TEST(lba48)
{
	char big[64];
	struct block_node *bs;
	uint8_t buf[512];
	uint64_t lba = 0x10000002ull;
	int fd;

	/* a sparse disk larger than LBA28 can address */
	strcpy(big, "/tmp/test-ide-big-XXXXXX");
	fd = mkstemp(big);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(lba + 16) * 512), 0);
	memset(buf, 0xc3, sizeof(buf));
	ck_assert_int_eq(pwrite(fd, buf, 512, (off_t)lba * 512), 512);
	close(fd);
	bs = open_img(big, true);
	ck_assert_int_eq(ide_attach(ide, 1, bs, false, NULL, NULL), 0);
	outb(P + 6, 0x50); /* slave, LBA */
	/* high-order bytes first, then low-order */
	outb(P + 2, 0);
	outb(P + 3, (lba >> 24) & 0xff);
	outb(P + 4, (lba >> 32) & 0xff);
	outb(P + 5, (lba >> 40) & 0xff);
	outb(P + 2, 1);
	outb(P + 3, lba & 0xff);
	outb(P + 4, (lba >> 8) & 0xff);
	outb(P + 5, (lba >> 16) & 0xff);
	outb(P + 7, 0x24);
	ck_assert_uint_eq(inb(P + 7) & 0x09, 0x08);
	insw(P, buf, 256);
	ck_assert_uint_eq(buf[0], 0xc3);
	ck_assert_uint_eq(buf[511], 0xc3);
	/* HOB reads the high bytes of the final address */
	outb(CTL, 0x80);
	ck_assert_uint_eq(inb(P + 3), (lba >> 24) & 0xff);
	outb(CTL, 0x00);
	ck_assert_uint_eq(inb(P + 3), lba & 0xff);
	/* LBA28 cannot reach it: the same command without EXT reads sector 2 */
	outb(P + 7, 0xea); /* FLUSH CACHE EXT */
	ck_assert_uint_eq(inb(P + 7) & 0x01, 0);
	unlink(big);
}
END_TEST

static void prd(uint32_t at, unsigned i, uint32_t addr, uint32_t len, bool eot)
{
	uint32_t e[2] = {htole32(addr), htole32((len & 0xffff) | (eot ? 0x80000000u : 0))};

	guest_mem_write(mem, at + 8 * i, e, 8);
}

START_TEST(dma_read_write)
{
	uint32_t n;

	/* 3 sectors into two PRDs of 1000 and 536 bytes */
	prd(0x1000, 0, 0x10000, 1000, false);
	prd(0x1000, 1, 0x20000, 536, true);
	ide_bm_write(ide, 4, 0x1000, 4);
	ck_assert_uint_eq(ide_bm_read(ide, 4, 4), 0x1000);
	lba28(P, 0, 20, 3);
	outb(P + 7, 0xc8);
	ck_assert_uint_eq(inb(CTL) & 0x80, 0x80); /* waits for the bus master */
	ide_bm_write(ide, 0, 0x09, 1);		  /* start, to memory */
	ck_assert_uint_eq(ide_bm_read(ide, 2, 1) & 0x07, 0x04);
	ck_assert_uint_eq(inb(P + 7) & 0x89, 0);
	memcpy(&n, ram + 0x10000, 4);
	ck_assert_uint_eq(n, 20);
	memcpy(&n, ram + 0x10000 + 512, 4);
	ck_assert_uint_eq(n, 21);
	ck_assert_uint_eq(ram[0x10000 + 999], 21 ^ 0x5a);
	ck_assert_uint_eq(ram[0x20000], 21 ^ 0x5a);
	memcpy(&n, ram + 0x20000 + 24, 4);
	ck_assert_uint_eq(n, 22);
	ide_bm_write(ide, 2, 0x04, 1); /* W1C interrupt */
	ck_assert_uint_eq(ide_bm_read(ide, 2, 1) & 0x04, 0);
	ide_bm_write(ide, 0, 0x00, 1);

	/* DMA write of one sector, bus master started first */
	memset(ram + 0x30000, 0x77, 512);
	prd(0x1000, 0, 0x30000, 512, true);
	ide_bm_write(ide, 0, 0x01, 1);
	lba28(P, 0, 30, 1);
	outb(P + 7, 0xca);
	ck_assert_uint_eq(inb(P + 7) & 0x89, 0);
	ide_bm_write(ide, 0, 0x00, 1);
	uint8_t b[512];
	int fd = open(path_hd, O_RDONLY);
	ck_assert_int_eq(pread(fd, b, 512, 30 * 512), 512);
	close(fd);
	ck_assert_uint_eq(b[0], 0x77);
	ck_assert_uint_eq(b[511], 0x77);
}
END_TEST

START_TEST(dma_faults)
{
	/* PRD pointing outside guest RAM */
	prd(0x1000, 0, 0xfffff000, 512, true);
	ide_bm_write(ide, 4, 0x1000, 4);
	lba28(P, 0, 0, 1);
	outb(P + 7, 0xc8);
	ide_bm_write(ide, 0, 0x09, 1);
	ck_assert_uint_eq(ide_bm_read(ide, 2, 1) & 0x03, 0x02);
	ck_assert_uint_eq(inb(P + 7) & 0x01, 0x01);
	ide_bm_write(ide, 0, 0x00, 1);
	ide_bm_write(ide, 2, 0x06, 1);
	/* PRD table shorter than the transfer */
	prd(0x1000, 0, 0x10000, 512, true);
	lba28(P, 0, 0, 2);
	outb(P + 7, 0xc8);
	ide_bm_write(ide, 0, 0x09, 1);
	ck_assert_uint_eq(ide_bm_read(ide, 2, 1) & 0x02, 0x02);
	ck_assert_uint_eq(inb(P + 7) & 0x01, 0x01);
	ide_bm_write(ide, 0, 0x00, 1);
	/* a PRD table that never ends (no EOT, all of RAM) is bounded */
	for (unsigned i = 0; i < 8192; i++) {
		prd(0x80000, i, 0x10000, 2, false);
	}
	ide_bm_write(ide, 4, 0x80000, 4);
	lba28(P, 0, 0, 0); /* 256 sectors = 128 KiB > 8192 * 2 bytes */
	outb(P + 7, 0xc8);
	ide_bm_write(ide, 0, 0x09, 1);
	ck_assert_uint_eq(ide_bm_read(ide, 2, 1) & 0x02, 0x02);
	/* wrong direction */
	ide_bm_write(ide, 0, 0x00, 1);
	ide_bm_write(ide, 2, 0x06, 1);
	prd(0x1000, 0, 0x10000, 512, true);
	ide_bm_write(ide, 4, 0x1000, 4);
	lba28(P, 0, 0, 1);
	outb(P + 7, 0xc8);
	ide_bm_write(ide, 0, 0x01, 1);
	ck_assert_uint_eq(ide_bm_read(ide, 2, 1) & 0x02, 0x02);
}
END_TEST

/* ATAPI helpers on the secondary channel (master CD-ROM). */
#define S 0x170

static uint8_t packet(const uint8_t cdb[12], uint16_t limit)
{
	outb(S + 6, 0xa0);
	outb(S + 1, 0);
	outb(S + 4, limit & 0xff);
	outb(S + 5, limit >> 8);
	outb(S + 7, 0xa0);
	ck_assert_uint_eq(inb(S + 2), 0x01); /* CoD */
	for (unsigned i = 0; i < 6; i++) {
		outw(S, (uint16_t)(cdb[2 * i] | cdb[2 * i + 1] << 8));
	}
	return inb(S + 7);
}

/* Read the whole data-in phase, DRQ block by DRQ block; returns bytes read. */
static unsigned data_in(uint8_t *buf, unsigned max, unsigned *ret_blocks)
{
	unsigned total = 0, blocks = 0;

	while (inb(0x376) & 0x08) {
		unsigned len = inb(S + 4) | inb(S + 5) << 8;

		ck_assert_uint_eq(inb(S + 2), 0x02); /* IO */
		ck_assert_uint_le(total + len, max);
		insw(S, buf + total, len / 2);
		total += len;
		blocks++;
	}
	if (ret_blocks) {
		*ret_blocks = blocks;
	}
	ck_assert_uint_eq(inb(S + 2), 0x03);
	return total;
}

static uint8_t sense_key(void)
{
	uint8_t cdb[12] = {0x03, 0, 0, 0, 18}, buf[18];

	packet(cdb, 18);
	ck_assert_uint_eq(data_in(buf, sizeof(buf), NULL), 18);
	return buf[2] << 4 | (buf[12] == 0x28 ? 1 : buf[12] == 0x3a ? 2 : buf[12] == 0x21 ? 3 : 0);
}

START_TEST(atapi_identify_inquiry_capacity)
{
	uint16_t w[256];
	uint8_t buf[64];
	uint8_t inquiry[12] = {0x12, 0, 0, 0, 36}, cap[12] = {0x25};

	outb(S + 6, 0xa0);
	outb(S + 7, 0xec);
	ck_assert_uint_eq(inb(S + 7) & 0x01, 0x01);
	ck_assert_uint_eq(inb(S + 4), 0x14);
	ck_assert_uint_eq(inb(S + 5), 0xeb);
	outb(S + 7, 0xa1);
	insw(S, w, 256);
	ck_assert_uint_eq(w[0], 0x85c0);

	packet(inquiry, 0xfffe);
	ck_assert_uint_eq(data_in(buf, sizeof(buf), NULL), 36);
	ck_assert_uint_eq(buf[0], 0x05);
	ck_assert_int_eq(memcmp(buf + 8, "VMMD", 4), 0);
	packet(cap, 0xfffe);
	ck_assert_uint_eq(data_in(buf, sizeof(buf), NULL), 8);
	ck_assert_uint_eq(be32toh(*(uint32_t *)buf), 99);
	ck_assert_uint_eq(be32toh(*(uint32_t *)(buf + 4)), 2048);
}
END_TEST

START_TEST(atapi_read)
{
	static uint8_t buf[40 * 2048];
	uint8_t r10[12] = {0x28, 0, 0, 0, 0, 3, 0, 0, 2};
	uint8_t r12[12] = {0xa8, 0, 0, 0, 0, 10, 0, 0, 0, 40};
	unsigned blocks;
	uint32_t n;

	/* READ(10) 2 sectors from LBA 3 with 1000-byte DRQ blocks */
	packet(r10, 1000);
	ck_assert_uint_eq(data_in(buf, sizeof(buf), &blocks), 4096);
	ck_assert_uint_eq(blocks, 5);
	memcpy(&n, buf, 4);
	ck_assert_uint_eq(n, 3);
	memcpy(&n, buf + 2048, 4);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(buf[4095], 4 ^ 0x5a);
	/* READ(12) of 40 sectors (more than one buffer load is fine too) */
	packet(r12, 0xffff);
	ck_assert_uint_eq(data_in(buf, sizeof(buf), NULL), 40 * 2048);
	memcpy(&n, buf + 39 * 2048, 4);
	ck_assert_uint_eq(n, 49);
	/* past the end */
	r10[5] = 99;
	packet(r10, 0xfffe);
	ck_assert_uint_eq(inb(S + 7) & 0x01, 0x01);
	ck_assert_uint_eq(inb(S + 1) >> 4, 0x05);
	ck_assert_uint_eq(sense_key(), 0x53);
	/* DMA: features bit 0 */
	prd(0x1000, 0, 0x10000, 4096, true);
	ide_bm_write(ide, 8 + 4, 0x1000, 4);
	r10[5] = 7;
	outb(S + 6, 0xa0);
	outb(S + 1, 1);
	outb(S + 4, 0xfe);
	outb(S + 5, 0xff);
	outb(S + 7, 0xa0);
	for (unsigned i = 0; i < 6; i++) {
		outw(S, (uint16_t)(r10[2 * i] | r10[2 * i + 1] << 8));
	}
	ck_assert_uint_eq(inb(S + 7) & 0x80, 0x80);
	ide_bm_write(ide, 8, 0x09, 1);
	ck_assert_uint_eq(inb(S + 7) & 0x89, 0);
	ck_assert_uint_eq(ide_bm_read(ide, 8 + 2, 1) & 0x07, 0x04);
	memcpy(&n, ram + 0x10000 + 2048, 4);
	ck_assert_uint_eq(n, 8);
}
END_TEST

START_TEST(atapi_toc_mode_sense_config)
{
	uint8_t toc[12] = {0x43, 0, 0, 0, 0, 0, 0, 0, 100};
	uint8_t ms[12] = {0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 64};
	uint8_t gc[12] = {0x46, 0, 0, 0, 0, 0, 0, 0, 64};
	uint8_t buf[128];
	unsigned len;

	packet(toc, 0xfffe);
	len = data_in(buf, sizeof(buf), NULL);
	ck_assert_uint_eq(len, 20);
	ck_assert_uint_eq(buf[2], 1);
	ck_assert_uint_eq(buf[4 + 2], 1);
	ck_assert_uint_eq(buf[12 + 2], 0xaa);
	ck_assert_uint_eq(be32toh(*(uint32_t *)(buf + 12 + 4)), 100);
	/* MSF lead-out: 100 + 150 frames = 0:03:25 */
	toc[1] = 2;
	packet(toc, 0xfffe);
	data_in(buf, sizeof(buf), NULL);
	ck_assert_uint_eq(buf[12 + 5], 0);
	ck_assert_uint_eq(buf[12 + 6], 3);
	ck_assert_uint_eq(buf[12 + 7], 25);
	/* allocation length truncates */
	toc[1] = 0;
	toc[8] = 4;
	packet(toc, 0xfffe);
	ck_assert_uint_eq(data_in(buf, sizeof(buf), NULL), 4);
	packet(ms, 0xfffe);
	len = data_in(buf, sizeof(buf), NULL);
	ck_assert_uint_eq(len, 30);
	ck_assert_uint_eq(buf[8], 0x2a);
	packet(gc, 0xfffe);
	len = data_in(buf, sizeof(buf), NULL);
	ck_assert_uint_eq(len, 20);
	ck_assert_uint_eq(buf[7], 0x08); /* CD-ROM profile for a small disc */
	/* unknown opcode */
	gc[0] = 0xff;
	packet(gc, 0xfffe);
	ck_assert_uint_eq(inb(S + 7) & 0x01, 0x01);
	ck_assert_uint_eq(sense_key(), 0x50);
}
END_TEST

START_TEST(atapi_media_change)
{
	uint8_t tur[12] = {0x00}, lock[12] = {0x1e, 0, 0, 0, 1}, eject[12] = {0x1b, 0, 0, 0, 2};
	uint8_t cap[12] = {0x25}, buf[8];
	struct error *err = NULL;

	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0);
	ck_assert_int_eq(ide_cd_change_media(ide, 2, open_img(path_cd2, false), false, NULL), 0);
	/* as QEMU's drive: NOT READY once, UNIT ATTENTION once, then ready with the new capacity */
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0x01);
	ck_assert_uint_eq(sense_key(), 0x22);
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0x01);
	ck_assert_uint_eq(sense_key(), 0x61);
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0);
	packet(cap, 0xfffe);
	data_in(buf, sizeof(buf), NULL);
	ck_assert_uint_eq(be32toh(*(uint32_t *)buf), 49);
	/* locked tray refuses host and guest ejects */
	packet(lock, 0);
	struct block_node *bs = open_img(path_cd, false);
	ck_assert_int_eq(ide_cd_change_media(ide, 2, bs, false, &err), -EBUSY);
	error_free(err);
	err = NULL;
	block_unref(bs);
	ck_assert_uint_eq(packet(eject, 0) & 0x01, 0x01);
	lock[4] = 0;
	packet(lock, 0);
	ck_assert_uint_eq(packet(eject, 0) & 0x01, 0);
	/* the tray is open: no medium to read */
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0x01);
	ck_assert_uint_eq(sense_key(), 0x22);
	/* the disk slot is not a CD-ROM */
	ck_assert_int_eq(ide_cd_change_media(ide, 0, NULL, false, &err), -ENODEV);
	error_free(err);
}
END_TEST

static unsigned trays_moved, tray_last;

static void tray_moved(void *opaque, unsigned slot, bool open)
{
	trays_moved++;
	tray_last = slot << 1 | open;
}

/* GET EVENT STATUS NOTIFICATION (media class): event code << 8 | media status. */
static unsigned media_event(void)
{
	uint8_t cdb[12] = {0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, buf[8];

	packet(cdb, 0xfffe);
	ck_assert_uint_eq(data_in(buf, sizeof(buf), NULL), 8);
	return (unsigned)buf[4] << 8 | buf[5];
}

/*
 * The tray, as QEMU's ide-cd (golden/cdrom.json has the same steps seen
 * by tests/guests/cdrom.c): the host's open of a locked tray is an eject
 * request for the guest; the guest opens and closes it (each move told);
 * the medium stays in an open tray and is not read; a forced open drops
 * the lock; a medium put in the open tray reads as new once it closes.
 */
START_TEST(atapi_tray)
{
	uint8_t tur[12] = {0x00}, lock[12] = {0x1e, 0, 0, 0, 1};
	uint8_t open[12] = {0x1b, 0, 0, 0, 2}, close[12] = {0x1b, 0, 0, 0, 3};
	struct ide_cd_state st;
	struct error *err = NULL;

	ide_set_tray_handler(ide, tray_moved, NULL);
	trays_moved = 0;
	ck_assert_uint_eq(media_event(), 0x0002); /* no event, medium present */
	packet(lock, 0);
	ck_assert_int_eq(ide_cd_open_tray(ide, 2, false, &err), -EBUSY);
	error_free(TAKE_PTR(err));
	ck_assert_uint_eq(trays_moved, 0);
	ck_assert_uint_eq(media_event(), 0x0102); /* eject request, once */
	ck_assert_uint_eq(media_event(), 0x0002);
	/* the guest's open is refused while it holds the lock */
	ck_assert_uint_eq(packet(open, 0) & 0x01, 0x01);
	lock[4] = 0;
	packet(lock, 0);
	ck_assert_uint_eq(packet(open, 0) & 0x01, 0);
	ck_assert_uint_eq(trays_moved, 1);
	ck_assert_uint_eq(tray_last, 2 << 1 | 1);
	ck_assert_int_eq(ide_cd_state(ide, 2, &st), 0);
	ck_assert(st.tray_open && st.bs);	  /* the medium stays in the tray */
	ck_assert_uint_eq(media_event(), 0x0001); /* tray open */
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0x01);
	ck_assert_uint_eq(sense_key(), 0x22);
	/* the guest closes it: the same medium, no change reported */
	ck_assert_uint_eq(packet(close, 0) & 0x01, 0);
	ck_assert_uint_eq(trays_moved, 2);
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0);
	/* host: a medium cannot go into a closed tray */
	ck_assert_int_eq(ide_cd_set_medium(ide, 2, NULL, &err), -EBUSY);
	error_free(TAKE_PTR(err));
	/* locked again, forced open: the lock goes, the tray opens */
	lock[4] = 1;
	packet(lock, 0);
	ck_assert_int_eq(ide_cd_open_tray(ide, 2, true, NULL), 0);
	ck_assert_uint_eq(trays_moved, 3);
	ck_assert_int_eq(ide_cd_state(ide, 2, &st), 0);
	ck_assert(st.tray_open && !st.locked);
	ck_assert_int_eq(ide_cd_open_tray(ide, 2, false, NULL), 0); /* open already: no move */
	ck_assert_uint_eq(trays_moved, 3);
	ck_assert_int_eq(ide_cd_set_medium(ide, 2, open_img(path_cd2, false), NULL), 0);
	ck_assert_uint_eq(media_event(), 0x0001); /* no event while open */
	ide_cd_close_tray(ide, 2);
	ck_assert_uint_eq(trays_moved, 4);
	ck_assert_uint_eq(tray_last, 2 << 1);
	ck_assert_uint_eq(media_event(), 0x0202); /* new medium, once */
	ck_assert_uint_eq(media_event(), 0x0002);
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0x01);
	ck_assert_uint_eq(sense_key(), 0x22);
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0x01);
	ck_assert_uint_eq(sense_key(), 0x61);
	ck_assert_uint_eq(packet(tur, 0) & 0x01, 0);
	ide_set_tray_handler(ide, NULL, NULL);
}
END_TEST

/* The device class over a fake VM: one PCI function, the ports, and nothing left behind. */
START_TEST(device_class)
{
	char hd[64], cd[64];
	struct vm_disk_config disks[3] = {
		{.id = "hd0", .driver = "ide-hd", .file = hd, .format = "raw"},
		{.id = "vda", .driver = "virtio-blk", .file = hd},
		{.id = "cd0", .driver = "ide-cd", .file = cd, .format = "raw"},
	};
	struct vm_config cfg = {.name = "t", .disks = disks, .n_disks = 3};
	struct iobus *b;

	make_image(hd, 1 << 20, 512, 1);
	make_image(cd, 2048 * 4, 2048, 1);
	struct vm *vm = fake_vm_new(&cfg, 1 << 20, NULL);
	void *pci = NULL, *state = NULL;

	ck_assert_int_eq(pci_host_class.realize(vm, NULL, &pci, NULL), 0);
	b = vm_iobus(vm);
	unsigned base = iobus_count(b), found = 0;
	uint64_t v;

	ck_assert_ptr_nonnull(vm);
	ck_assert_int_eq(ide_class.realize(vm, NULL, &state, NULL), 0);
	ck_assert_ptr_nonnull(state);
	for (unsigned slot = 0; slot < 32; slot++) {
		if (pci_host_config_read(pci_host_of(vm), 0, slot << 3, 0, 4) == 0x70108086) {
			found++;
			ck_assert_uint_eq(
				pci_host_config_read(pci_host_of(vm), 0, slot << 3, 8, 4) >> 8,
				0x010180);
		}
	}
	ck_assert_uint_eq(found, 1);
	/* hd0 is the primary master, cd0 the primary slave (ATAPI signature) */
	iobus_write(b, IOBUS_PIO, 0x1f6, 1, 0xa0);
	iobus_read(b, IOBUS_PIO, 0x1f7, 1, &v);
	ck_assert_uint_eq(v & 0x40, 0x40);
	iobus_write(b, IOBUS_PIO, 0x1f6, 1, 0xb0);
	iobus_write(b, IOBUS_PIO, 0x1f7, 1, 0xa1);
	iobus_read(b, IOBUS_PIO, 0x1f7, 1, &v);
	ck_assert_uint_eq(v & 0x08, 0x08);

	/* the tray hooks find cd0 only; a move is an event; query-block lists both */
	struct vm_tray st;
	struct vmstate_buf closed, opened, in;
	unsigned events = fake_vm_events(vm);

	ck_assert_int_eq(ide_class.tray(state, "hd0", &st), -ENOENT);
	ck_assert_int_eq(ide_class.tray(state, "cd0", &st), 0);
	ck_assert(!st.open && st.bs);
	vmstate_buf_init(&closed);
	ck_assert_int_eq(ide_class.save(state, &closed, NULL), 0);
	ck_assert_int_eq(ide_class.tray_open(state, "cd0", false, NULL), 0);
	ck_assert_uint_eq(fake_vm_events(vm), events + 1);
	json_t *qb = ide_class.query_block(state);

	ck_assert_uint_eq(json_array_size(qb), 2);
	ck_assert(json_is_true(json_object_get(json_array_get(qb, 1), "tray_open")));
	ck_assert(json_is_false(json_object_get(json_array_get(qb, 1), "locked")));
	ck_assert_ptr_null(json_object_get(json_array_get(qb, 0), "tray_open"));
	json_decref(qb);
	/* an open tray is saved after the rest, 4 bytes longer; closed ones as before */
	vmstate_buf_init(&opened);
	ck_assert_int_eq(ide_class.save(state, &opened, NULL), 0);
	ck_assert_uint_eq(opened.len, closed.len + 4);
	ide_class.unrealize(state);
	ck_assert_int_eq(ide_class.realize(vm, NULL, &state, NULL), 0);
	vmstate_buf_wrap(&in, opened.data, opened.len);
	ck_assert_int_eq(ide_class.load(state, &in, 1, NULL), 0);
	ck_assert_int_eq(ide_class.tray(state, "cd0", &st), 0);
	ck_assert(st.open && st.bs);
	vmstate_buf_wrap(&in, closed.data, closed.len);
	ck_assert_int_eq(ide_class.load(state, &in, 1, NULL), 0);
	ck_assert_int_eq(ide_class.tray(state, "cd0", &st), 0);
	ck_assert(!st.open);
	/* a tray state for the hard disk's slot is refused */
	opened.data[opened.len - 4] = 1;
	vmstate_buf_wrap(&in, opened.data, opened.len);
	ck_assert_int_lt(ide_class.load(state, &in, 1, NULL), 0);
	vmstate_buf_free(&closed);
	vmstate_buf_free(&opened);

	ide_class.reset(state);
	ide_class.unrealize(state);
	ck_assert_uint_eq(iobus_count(b), base);

	/* a missing image fails cleanly, naming the disk */
	struct error *err = NULL;
	disks[2].file = "/nonexistent.iso";
	state = NULL;
	ck_assert_int_lt(ide_class.realize(vm, NULL, &state, &err), 0);
	ck_assert_ptr_nonnull(strstr(err->msg, "cd0"));
	error_free(err);
	ck_assert_uint_eq(iobus_count(b), base);
	/* no IDE disk: no controller */
	disks[0].driver = "virtio-blk";
	disks[2].driver = "virtio-blk";
	ck_assert_int_eq(ide_class.realize(vm, NULL, &state, NULL), 0);
	ck_assert_ptr_null(state);
	ck_assert_uint_eq(iobus_count(b), base);
	pci_host_class.unrealize(pci);
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
	unlink(hd);
	unlink(cd);
}
END_TEST

/* With the I/O thread: the vCPU only starts the transfer; BSY until the loop ran. */
START_TEST(io_thread_dma_and_flush)
{
	uint64_t v;
	uint32_t n;

	prd(0x1000, 0, 0x10000, 1536, true);
	ide_bm_write(ide, 4, 0x1000, 4);
	lba28(P, 0, 40, 3);
	outb(P + 7, 0xc8);
	ide_bm_write(ide, 0, 0x09, 1);
	/* not done by the port write: in flight, the status says busy */
	ck_assert_uint_eq(ide_busy(ide), 1);
	iobus_read(bus, IOBUS_PIO, P + 7, 1, &v);
	ck_assert_uint_eq(v & 0x80, 0x80);
	iobus_read(bus, IOBUS_PIO, 0x3f6, 1, &v);
	ck_assert_uint_eq(v & 0x80, 0x80);
	settle();
	ck_assert_uint_eq(ide_busy(ide), 0);
	ck_assert_uint_eq(inb(P + 7) & 0x89, 0);
	ck_assert_uint_eq(ide_bm_read(ide, 2, 1) & 0x07, 0x04);
	memcpy(&n, ram + 0x10000 + 1024, 4);
	ck_assert_uint_eq(n, 42);
	ide_bm_write(ide, 0, 0x00, 1);
	/* FLUSH CACHE: busy, then done */
	outb(P + 7, 0xe7);
	ck_assert_uint_eq(ide_busy(ide), 1);
	ck_assert_uint_eq(inb(P + 7) & 0x81, 0);
	/* PIO: the command only starts the read; the block arrives from the loop */
	lba28(P, 0, 43, 1);
	outb(P + 7, 0x20);
	ck_assert_uint_eq(ide_busy(ide), 1);
	iobus_read(bus, IOBUS_PIO, P + 7, 1, &v);
	ck_assert_uint_eq(v & 0x88, 0x80); /* BSY, no DRQ yet */
	ck_assert_uint_eq(inb(P + 7) & 0x89, 0x08);
	ck_assert_uint_eq(inw(P), 43);
	insw(P, ram + 0x40000, 255);
	/* a second transfer on the same channel */
	lba28(P, 0, 41, 1);
	outb(P + 7, 0xc8);
	ide_bm_write(ide, 0, 0x09, 1);
	settle();
	memcpy(&n, ram + 0x10000, 4);
	ck_assert_uint_eq(n, 41);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("ide");
	TCase *tc = tcase_create("core");
	TCase *io = tcase_create("io-thread");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, presence_and_signature);
	tcase_add_test(tc, identify_disk);
	tcase_add_test(tc, pio_read_write);
	tcase_add_test(tc, chs_and_multiple);
	tcase_add_test(tc, bounds);
	tcase_add_test(tc, lba48);
	tcase_add_test(tc, dma_read_write);
	tcase_add_test(tc, dma_faults);
	tcase_add_test(tc, atapi_identify_inquiry_capacity);
	tcase_add_test(tc, atapi_read);
	tcase_add_test(tc, atapi_toc_mode_sense_config);
	tcase_add_test(tc, atapi_media_change);
	tcase_add_test(tc, atapi_tray);
	tcase_add_test(tc, device_class);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(io, setup_io_thread, teardown);
	tcase_add_test(io, identify_disk);
	tcase_add_test(io, pio_read_write);
	tcase_add_test(io, chs_and_multiple);
	tcase_add_test(io, bounds);
	tcase_add_test(io, lba48);
	tcase_add_test(io, dma_read_write);
	tcase_add_test(io, dma_faults);
	tcase_add_test(io, atapi_identify_inquiry_capacity);
	tcase_add_test(io, atapi_read);
	tcase_add_test(io, atapi_toc_mode_sense_config);
	tcase_add_test(io, atapi_media_change);
	tcase_add_test(io, atapi_tray);
	tcase_add_test(io, io_thread_dma_and_flush);
	suite_add_tcase(s, io);
	return s;
}

#include "tests/unit/check-main.h"
