/*
 * virtio-pci, virtio-rng and virtio-blk driven through their registers by a
 * small driver written from the virtio 1.x spec, over the fake machine
 * (tests/unit/fake-machine.c: real guest RAM and I/O bus), the real PCI
 * host, and a libevent loop standing in for the I/O thread. Covers the capability walk, feature
 * negotiation and the status state machine, queue set-up, requests of every
 * virtio-blk type with the host file checked afterwards, requests that must
 * fail cleanly, and malicious rings that must end in DEVICE_NEEDS_RESET
 * with the device usable again after a reset.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/error.h"
#include "common/vmstate.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio.h"
#include "tests/unit/fake-machine.h"

/* ---- the fake VM (tests/unit/fake-machine.c) ---- */

static struct vm *vm;
static struct iobus *bus;
static struct event_base *base;
static void *pci_state;
static struct vm_config vmcfg = {.name = "t", .vcpus = 2};

/* ---- a minimal virtio 1.x PCI driver ---- */

#define RAM_SIZE (16u << 20)
#define QSZ 16
#define RING_BASE 0x100000
#define BUF_BASE 0x200000

struct drv {
	unsigned slot;
	uint64_t common, notify, isr, device;
	uint32_t notify_mult;
	uint16_t qnoff;
	uint16_t avail_idx, used_seen;
	uint64_t desc, avail, used;
};

static uint32_t cfg_read(unsigned slot, unsigned reg, unsigned size)
{
	uint64_t v = 0;

	iobus_write(bus, IOBUS_PIO, 0xCF8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	iobus_read(bus, IOBUS_PIO, 0xCFC + (reg & 3), size, &v);
	return v;
}

static void cfg_write(unsigned slot, unsigned reg, uint32_t val, unsigned size)
{
	iobus_write(bus, IOBUS_PIO, 0xCF8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	iobus_write(bus, IOBUS_PIO, 0xCFC + (reg & 3), size, val);
}

static uint64_t mr(uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	iobus_read(bus, IOBUS_MMIO, addr, size, &v);
	return v;
}

static void mw(uint64_t addr, uint64_t v, unsigned size)
{
	iobus_write(bus, IOBUS_MMIO, addr, size, v);
}

static uint8_t *ram(uint64_t gpa)
{
	return fake_vm_ram(vm, gpa);
}

/* Find the function with PCI device id @devid and locate its virtio capabilities. */
static void drv_probe(struct drv *d, uint16_t devid)
{
	unsigned slot, cap;

	memset(d, 0, sizeof(*d));
	for (slot = 0; slot < 32; slot++) {
		if (cfg_read(slot, 0, 2) == 0x1af4 && cfg_read(slot, 2, 2) == devid) {
			break;
		}
	}
	ck_assert_uint_lt(slot, 32);
	d->slot = slot;
	cfg_write(slot, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	for (cap = cfg_read(slot, 0x34, 1); cap; cap = cfg_read(slot, cap + 1, 1)) {
		unsigned type, bar;
		uint64_t addr;

		if (cfg_read(slot, cap, 1) != 0x09) {
			continue;
		}
		type = cfg_read(slot, cap + 3, 1);
		bar = cfg_read(slot, cap + 4, 1);
		addr = (cfg_read(slot, 0x10 + 4 * bar, 4) & ~0xfu) + cfg_read(slot, cap + 8, 4);
		switch (type) {
		case 1:
			d->common = addr;
			break;
		case 2:
			d->notify = addr;
			d->notify_mult = cfg_read(slot, cap + 16, 4);
			break;
		case 3:
			d->isr = addr;
			break;
		case 4:
			d->device = addr;
			break;
		}
	}
	ck_assert(d->common && d->notify && d->isr);
}

/* Reset, negotiate @want (VERSION_1 added), set up queue @q. Returns the final status. */
static uint8_t drv_init(struct drv *d, uint64_t want, unsigned q)
{
	uint64_t offered;
	uint8_t st;

	mw(d->common + 0x14, 0, 1);
	ck_assert_uint_eq(mr(d->common + 0x14, 1), 0);
	mw(d->common + 0x14, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	mw(d->common + 0x14, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	mw(d->common + 0x00, 0, 4);
	offered = mr(d->common + 0x04, 4);
	mw(d->common + 0x00, 1, 4);
	offered |= (uint64_t)mr(d->common + 0x04, 4) << 32;
	ck_assert(offered & (1ull << VIRTIO_F_VERSION_1));
	want = (want | 1ull << VIRTIO_F_VERSION_1) & offered;
	mw(d->common + 0x08, 0, 4);
	mw(d->common + 0x0c, (uint32_t)want, 4);
	mw(d->common + 0x08, 1, 4);
	mw(d->common + 0x0c, want >> 32, 4);
	mw(d->common + 0x14, 0x0b, 1);
	st = mr(d->common + 0x14, 1);
	if (!(st & VIRTIO_STATUS_FEATURES_OK)) {
		return st;
	}
	mw(d->common + 0x16, q, 2);
	ck_assert_uint_ge(mr(d->common + 0x18, 2), QSZ);
	mw(d->common + 0x18, QSZ, 2);
	d->desc = RING_BASE;
	d->avail = RING_BASE + 0x1000;
	d->used = RING_BASE + 0x2000;
	memset(ram(RING_BASE), 0, 0x3000);
	mw(d->common + 0x20, d->desc, 8);
	mw(d->common + 0x28, (uint32_t)d->avail, 4); /* low/high halves, as Linux does */
	mw(d->common + 0x2c, d->avail >> 32, 4);
	mw(d->common + 0x30, d->used, 8);
	d->qnoff = mr(d->common + 0x1e, 2);
	mw(d->common + 0x1c, 1, 2);
	ck_assert_uint_eq(mr(d->common + 0x1c, 2), 1);
	d->avail_idx = d->used_seen = 0;
	mw(d->common + 0x14, 0x0f, 1);
	return mr(d->common + 0x14, 1);
}

static void drv_desc(struct drv *d, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *p = ram(d->desc + 16 * i);

	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

static void drv_kick(struct drv *d, uint16_t head)
{
	uint16_t *ring = (uint16_t *)ram(d->avail);

	ring[2 + d->avail_idx % QSZ] = head;
	d->avail_idx++;
	__atomic_store_n(&ring[1], d->avail_idx, __ATOMIC_RELEASE);
	mw(d->notify + (uint64_t)d->qnoff * d->notify_mult, 0, 2);
}

static uint16_t used_idx(struct drv *d)
{
	return __atomic_load_n((uint16_t *)ram(d->used + 2), __ATOMIC_ACQUIRE);
}

/* Run the "I/O thread" until the device returns a chain; its used length. */
static uint32_t drv_wait(struct drv *d)
{
	int i;
	uint32_t len;

	for (i = 0; i < 5000 && used_idx(d) == d->used_seen; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (used_idx(d) == d->used_seen) {
			usleep(200);
		}
	}
	ck_assert_msg(used_idx(d) != d->used_seen, "the device never returned the chain");
	memcpy(&len, ram(d->used + 4 + 8 * (d->used_seen % QSZ) + 4), 4);
	d->used_seen++;
	return len;
}

static void spin(int ms)
{
	int i;

	for (i = 0; i < ms; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static uint8_t drv_status(struct drv *d)
{
	return mr(d->common + 0x14, 1);
}

/* ---- fixture ---- */

static void *dev_state;
static const struct device_class *dev_cls;
static char disk_path[64];

static void setup(void)
{
	base = event_base_new();
	vm = fake_vm_new(&vmcfg, RAM_SIZE, base);
	bus = vm_iobus(vm);
	ck_assert_int_eq(pci_host_class.realize(vm, NULL, &pci_state, NULL), 0);
	dev_state = NULL;
	dev_cls = NULL;
}

static void teardown(void)
{
	if (dev_cls) {
		dev_cls->unrealize(dev_state);
	}
	pci_host_class.unrealize(pci_state);
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
	event_base_free(base);
	if (disk_path[0]) {
		unlink(disk_path);
		disk_path[0] = 0;
	}
}

static void realize(const struct device_class *cls, const void *cfg)
{
	struct error *err = NULL;

	ck_assert_msg(cls->realize(vm, cfg, &dev_state, &err) == 0, "%s", err ? err->msg : "");
	dev_cls = cls;
}

/* ---- virtio-rng ---- */

START_TEST(test_rng_reads_random_bytes)
{
	struct drv d;
	static const uint8_t zero[256];
	uint32_t len;

	realize(&virtio_rng_class, NULL);
	drv_probe(&d, 0x1044);
	ck_assert_uint_eq(cfg_read(d.slot, 0x08, 1), 1); /* modern revision */
	ck_assert_uint_eq(drv_init(&d, 0, 0) & 0x0f, 0x0f);
	memset(ram(BUF_BASE), 0, 256);
	drv_desc(&d, 0, BUF_BASE, 256, VIRTQ_DESC_F_WRITE, 0);
	drv_kick(&d, 0);
	len = drv_wait(&d);
	ck_assert_uint_eq(len, 256);
	ck_assert(memcmp(ram(BUF_BASE), zero, 256) != 0);
	/* INTx: MSI-X is off, so the ISR says "queue" and reading clears it */
	ck_assert_uint_eq(mr(d.isr, 1), 1);
	ck_assert_uint_eq(mr(d.isr, 1), 0);
}
END_TEST

START_TEST(test_rng_rate_limited)
{
	struct drv d;
	uint32_t total = 0;
	unsigned i;

	realize(&virtio_rng_class, NULL);
	drv_probe(&d, 0x1044);
	drv_init(&d, 0, 0);
	/* ask for 8 x 64 KiB at once: the first burst is bounded */
	for (i = 0; i < 8; i++) {
		drv_desc(&d, i, BUF_BASE + i * 0x10000, 0x10000, VIRTQ_DESC_F_WRITE, 0);
		drv_kick(&d, i);
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
	for (i = 0; i < 8 && used_idx(&d) != d.used_seen; i++) {
		total += drv_wait(&d);
	}
	ck_assert_uint_le(total, 64 * 1024 + 16 * 1024);
}
END_TEST

START_TEST(test_feature_negotiation_rules)
{
	struct drv d;

	realize(&virtio_rng_class, NULL);
	drv_probe(&d, 0x1044);
	/* without VERSION_1 the device refuses FEATURES_OK */
	mw(d.common + 0x14, 0, 1);
	mw(d.common + 0x14, 3, 1);
	mw(d.common + 0x08, 1, 4);
	mw(d.common + 0x0c, 0, 4);
	mw(d.common + 0x14, 0x0b, 1);
	ck_assert_uint_eq(drv_status(&d) & VIRTIO_STATUS_FEATURES_OK, 0);
	/* DRIVER_OK without FEATURES_OK is not accepted */
	mw(d.common + 0x14, 0x07, 1);
	ck_assert_uint_eq(drv_status(&d) & VIRTIO_STATUS_DRIVER_OK, 0);
	/* features the device did not offer are refused */
	mw(d.common + 0x14, 0, 1);
	mw(d.common + 0x14, 3, 1);
	mw(d.common + 0x08, 1, 4);
	mw(d.common + 0x0c, 1 | 1u << 31, 4);
	mw(d.common + 0x14, 0x0b, 1);
	ck_assert_uint_eq(drv_status(&d) & VIRTIO_STATUS_FEATURES_OK, 0);
	/*
	 * ... and that state (the driver's unaccepted bits in the feature
	 * register) is saved and loads again as it was: a snapshot of such a
	 * guest used to be refused on restore (found by the virtio-blk fuzzer).
	 */
	{
		struct vmstate_buf out, in;
		struct error *err = NULL;

		vmstate_buf_init(&out);
		ck_assert_int_eq(dev_cls->save(dev_state, &out, NULL), 0);
		vmstate_buf_wrap(&in, out.data, out.len);
		ck_assert_msg(dev_cls->load(dev_state, &in, dev_cls->state_version, &err) == 0,
			      "%s", err ? err->msg : "");
		vmstate_buf_free(&out);
		mw(d.common + 0x08, 1, 4);
		ck_assert_uint_eq(mr(d.common + 0x0c, 4), 1 | 1u << 31);
		ck_assert_uint_eq(drv_status(&d) & VIRTIO_STATUS_FEATURES_OK, 0);
		/* so is a queue size no queue can have, on a queue never enabled */
		mw(d.common + 0x16, 0, 2);
		mw(d.common + 0x18, 3, 2);
		vmstate_buf_init(&out);
		ck_assert_int_eq(dev_cls->save(dev_state, &out, NULL), 0);
		vmstate_buf_wrap(&in, out.data, out.len);
		ck_assert_msg(dev_cls->load(dev_state, &in, dev_cls->state_version, &err) == 0,
			      "%s", err ? err->msg : "");
		vmstate_buf_free(&out);
		ck_assert_uint_eq(mr(d.common + 0x18, 2), 3);
	}
	/* a queue index past num_queues reads as absent */
	mw(d.common + 0x16, 7, 2);
	ck_assert_uint_eq(mr(d.common + 0x18, 2), 0);
	ck_assert_uint_eq(mr(d.common + 0x12, 2), 1);
	/* a proper negotiation still works after all that */
	ck_assert_uint_eq(drv_init(&d, 1ull << VIRTIO_F_EVENT_IDX, 0) & 0x0f, 0x0f);
}
END_TEST

static void expect_needs_reset(struct drv *d)
{
	spin(5);
	ck_assert_msg(drv_status(d) & VIRTIO_STATUS_NEEDS_RESET, "status 0x%x", drv_status(d));
	/* and the device recovers with a reset */
	ck_assert_uint_eq(drv_init(d, 0, 0) & 0x4f, 0x0f);
	memset(ram(BUF_BASE), 0, 16);
	drv_desc(d, 0, BUF_BASE, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_kick(d, 0);
	ck_assert_uint_eq(drv_wait(d), 16);
}

START_TEST(test_malicious_loop)
{
	struct drv d;

	realize(&virtio_rng_class, NULL);
	drv_probe(&d, 0x1044);
	drv_init(&d, 0, 0);
	drv_desc(&d, 0, BUF_BASE, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&d, 1, BUF_BASE, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	drv_kick(&d, 0);
	expect_needs_reset(&d);
}
END_TEST

START_TEST(test_malicious_outside_ram)
{
	struct drv d;

	realize(&virtio_rng_class, NULL);
	drv_probe(&d, 0x1044);
	drv_init(&d, 0, 0);
	drv_desc(&d, 0, RAM_SIZE - 8, 64, VIRTQ_DESC_F_WRITE, 0);
	drv_kick(&d, 0);
	expect_needs_reset(&d);
}
END_TEST

START_TEST(test_malicious_avail_jump)
{
	struct drv d;
	uint16_t *ring;

	realize(&virtio_rng_class, NULL);
	drv_probe(&d, 0x1044);
	drv_init(&d, 0, 0);
	ring = (uint16_t *)ram(d.avail);
	ring[1] = 1000;
	mw(d.notify, 0, 2);
	expect_needs_reset(&d);
}
END_TEST

START_TEST(test_malicious_ring_address)
{
	struct drv d;

	realize(&virtio_rng_class, NULL);
	drv_probe(&d, 0x1044);
	mw(d.common + 0x14, 0, 1);
	mw(d.common + 0x14, 3, 1);
	mw(d.common + 0x08, 1, 4);
	mw(d.common + 0x0c, 1, 4);
	mw(d.common + 0x14, 0x0b, 1);
	mw(d.common + 0x16, 0, 2);
	mw(d.common + 0x18, QSZ, 2);
	mw(d.common + 0x20, RAM_SIZE - 16, 8); /* descriptor table runs out of RAM */
	mw(d.common + 0x28, RING_BASE + 0x1000, 8);
	mw(d.common + 0x30, RING_BASE + 0x2000, 8);
	mw(d.common + 0x1c, 1, 2);
	ck_assert_uint_eq(mr(d.common + 0x1c, 2), 0);
	ck_assert(drv_status(&d) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_eq(drv_init(&d, 0, 0) & 0x4f, 0x0f);
}
END_TEST

/* ---- virtio-blk ---- */

#define DISK_SECTORS 2048

static void make_disk(void)
{
	int fd;

	snprintf(disk_path, sizeof(disk_path), "/tmp/test-virtio-%d.raw", getpid());
	fd = open(disk_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, DISK_SECTORS * 512), 0);
	close(fd);
}

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

#define HDR (BUF_BASE)
#define DATA (BUF_BASE + 0x1000)
#define STATUS (BUF_BASE + 0x800)

/* A three-descriptor request; returns the status byte. */
static uint8_t blk_rw(struct drv *d, uint32_t type, uint64_t sector, uint32_t len, bool write)
{
	struct blk_hdr h = {.type = type, .sector = sector};

	memcpy(ram(HDR), &h, sizeof(h));
	*ram(STATUS) = 0xff;
	drv_desc(d, 0, HDR, sizeof(h), VIRTQ_DESC_F_NEXT, 1);
	if (len) {
		drv_desc(d, 1, DATA, len, VIRTQ_DESC_F_NEXT | (write ? 0 : VIRTQ_DESC_F_WRITE), 2);
		drv_desc(d, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	} else {
		drv_desc(d, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	}
	drv_kick(d, 0);
	drv_wait(d);
	return *ram(STATUS);
}

static void read_file(uint64_t off, void *buf, size_t len)
{
	int fd = open(disk_path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

START_TEST(test_blk_io)
{
	struct vm_disk_config dc = {.id = "vda", .format = "raw", .serial = "SERIAL-123"};
	struct drv d;
	uint8_t buf[4096];
	uint64_t cap;
	unsigned i;

	make_disk();
	dc.file = disk_path;
	realize(&virtio_blk_class, &dc);
	drv_probe(&d, 0x1042);
	ck_assert_uint_eq(cfg_read(d.slot, 0x0a, 2), 0x0100); /* mass storage, SCSI */
	cap = mr(d.device, 8);
	ck_assert_uint_eq(cap, DISK_SECTORS);
	ck_assert_uint_eq(mr(d.device + 34, 2), 2); /* num_queues: one per vCPU */
	ck_assert_uint_eq(drv_init(&d, 1ull << 9 | 1ull << 13 | 1ull << 14 | 1ull << 12, 0) & 0xf,
			  0xf);
	/* write two sectors, read them back, check the host file */
	for (i = 0; i < 1024; i++) {
		ram(DATA)[i] = i * 7 + 3;
	}
	ck_assert_uint_eq(blk_rw(&d, 1, 10, 1024, true), 0);
	memset(ram(DATA), 0, 1024);
	ck_assert_uint_eq(blk_rw(&d, 0, 10, 1024, false), 0);
	for (i = 0; i < 1024; i++) {
		ck_assert_uint_eq(ram(DATA)[i], (uint8_t)(i * 7 + 3));
	}
	ck_assert_uint_eq(blk_rw(&d, 4, 0, 0, false), 0); /* flush */
	read_file(10 * 512, buf, 1024);
	ck_assert_mem_eq(buf, ram(DATA), 1024);
	/* get-id */
	ck_assert_uint_eq(blk_rw(&d, 8, 0, 20, false), 0);
	ck_assert_mem_eq(ram(DATA), "SERIAL-123\0", 11);
	/* past the end, partial sectors, unknown types */
	ck_assert_uint_eq(blk_rw(&d, 0, DISK_SECTORS - 1, 1024, false), 1);
	ck_assert_uint_eq(blk_rw(&d, 0, UINT64_MAX, 512, false), 1);
	ck_assert_uint_eq(blk_rw(&d, 1, 0, 100, true), 1);
	ck_assert_uint_eq(blk_rw(&d, 77, 0, 512, false), 2);
	/* write-zeroes over the data */
	{
		struct {
			uint64_t sector;
			uint32_t num, flags;
		} seg = {10, 2, 0};
		struct blk_hdr h = {.type = 13};

		memcpy(ram(HDR), &h, sizeof(h));
		memcpy(ram(HDR + 16), &seg, sizeof(seg));
		*ram(STATUS) = 0xff;
		drv_desc(&d, 0, HDR, 32, VIRTQ_DESC_F_NEXT, 1);
		drv_desc(&d, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
		drv_kick(&d, 0);
		drv_wait(&d);
		ck_assert_uint_eq(*ram(STATUS), 0);
		/* a discard with the unmap flag is unsupported by the spec's rules */
		h.type = 11;
		seg.flags = 1;
		memcpy(ram(HDR), &h, sizeof(h));
		memcpy(ram(HDR + 16), &seg, sizeof(seg));
		drv_kick(&d, 0);
		drv_wait(&d);
		ck_assert_uint_eq(*ram(STATUS), 2);
	}
	ck_assert_uint_eq(blk_rw(&d, 4, 0, 0, false), 0);
	read_file(10 * 512, buf, 1024);
	for (i = 0; i < 1024; i++) {
		ck_assert_uint_eq(buf[i], 0);
	}
	ck_assert(!(drv_status(&d) & VIRTIO_STATUS_NEEDS_RESET));
	/* query-block / query-blockstats */
	{
		json_t *info = dev_cls->query_block(dev_state);
		json_t *st = dev_cls->query_blockstats(dev_state);

		ck_assert_str_eq(json_string_value(json_object_get(info, "device")), "vda");
		ck_assert_ptr_nonnull(json_object_get(info, "inserted"));
		json_t *s = json_object_get(st, "stats");
		/* QEMU's BlockStats: write-zeroes count as writes; refused requests as invalid */
		ck_assert_str_eq(json_string_value(json_object_get(st, "qdev")), "vda");
		ck_assert_int_eq(json_integer_value(json_object_get(s, "invalid_rd_operations")),
				 2);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "invalid_wr_operations")),
				 1);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "invalid_unmap_operations")),
				 1);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "wr_operations")), 2);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "wr_bytes")), 2048);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "wr_highest_offset")),
				 12 * 512);
		ck_assert(json_is_true(json_object_get(s, "account_invalid")));
		ck_assert_int_eq(json_array_size(json_object_get(s, "timed_stats")), 0);
		ck_assert_ptr_nonnull(json_object_get(s, "idle_time_ns"));
		ck_assert_str_eq(
			json_string_value(json_object_get(
				json_object_get(json_object_get(st, "parent"), "driver-specific"),
				"driver")),
			"file");
		json_decref(info);
		json_decref(st);
	}
}
END_TEST

START_TEST(test_blk_bad_requests)
{
	struct vm_disk_config dc = {.id = "vdb", .format = "raw", .readonly = true};
	struct blk_hdr h = {.type = 0, .sector = 0};
	struct drv d;

	make_disk();
	dc.file = disk_path;
	realize(&virtio_blk_class, &dc);
	drv_probe(&d, 0x1042);
	drv_init(&d, 1ull << 9 | 1ull << 5, 0);
	/* read-only: writes fail, reads work */
	ck_assert_uint_eq(blk_rw(&d, 1, 0, 512, true), 1);
	ck_assert_uint_eq(blk_rw(&d, 0, 0, 512, false), 0);
	/* header in a device-writable descriptor: failed, not trusted */
	memcpy(ram(HDR), &h, sizeof(h));
	*ram(STATUS) = 0xff;
	drv_desc(&d, 0, HDR, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&d, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	drv_kick(&d, 0);
	drv_wait(&d);
	ck_assert_uint_eq(*ram(STATUS), 1);
	/* short header */
	drv_desc(&d, 0, HDR, 8, VIRTQ_DESC_F_NEXT, 1);
	drv_kick(&d, 0);
	drv_wait(&d);
	ck_assert_uint_eq(*ram(STATUS), 1);
	ck_assert(!(drv_status(&d) & VIRTIO_STATUS_NEEDS_RESET));
	/* no byte for the status at all: the device cannot answer, needs reset */
	drv_desc(&d, 0, HDR, 16, 0, 0);
	drv_kick(&d, 0);
	spin(5);
	ck_assert(drv_status(&d) & VIRTIO_STATUS_NEEDS_RESET);
}
END_TEST

START_TEST(test_blk_merging)
{
	struct vm_disk_config dc = {.id = "vdc", .format = "raw"};
	struct drv d;
	uint16_t *ring;
	uint8_t buf[4 * 512];
	unsigned i, r;

	make_disk();
	dc.file = disk_path;
	realize(&virtio_blk_class, &dc);
	drv_probe(&d, 0x1042);
	drv_init(&d, 1ull << 9, 0);
	/* four adjacent one-sector writes made available at once */
	ring = (uint16_t *)ram(d.avail);
	for (r = 0; r < 4; r++) {
		struct blk_hdr h = {.type = 1, .sector = 100 + r};

		memcpy(ram(HDR + 32 * r), &h, sizeof(h));
		memset(ram(DATA + 512 * r), 0x10 + r, 512);
		drv_desc(&d, 3 * r, HDR + 32 * r, 16, VIRTQ_DESC_F_NEXT, 3 * r + 1);
		drv_desc(&d, 3 * r + 1, DATA + 512 * r, 512, VIRTQ_DESC_F_NEXT, 3 * r + 2);
		drv_desc(&d, 3 * r + 2, STATUS + r, 1, VIRTQ_DESC_F_WRITE, 0);
		ring[2 + d.avail_idx % QSZ] = 3 * r;
		d.avail_idx++;
	}
	ring[1] = d.avail_idx;
	mw(d.notify, 0, 2);
	for (r = 0; r < 4; r++) {
		drv_wait(&d);
	}
	for (r = 0; r < 4; r++) {
		ck_assert_uint_eq(*ram(STATUS + r), 0);
	}
	read_file(100 * 512, buf, sizeof(buf));
	for (i = 0; i < sizeof(buf); i++) {
		ck_assert_uint_eq(buf[i], 0x10 + i / 512);
	}
	/* query-blockstats counts the guest's four requests, three of them merged */
	{
		json_t *st = dev_cls->query_blockstats(dev_state);
		json_t *s = json_object_get(st, "stats");
		json_int_t merged = json_integer_value(json_object_get(s, "wr_merged"));

		ck_assert_int_eq(json_integer_value(json_object_get(s, "wr_operations")), 4);
		ck_assert_int_ge(merged, 1);
		ck_assert_int_le(merged, 3);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "wr_bytes")), 4 * 512);
		json_decref(st);
	}
}
END_TEST

/*
 * A read of no bytes right after a read that ends where it starts, both in
 * one kick: the merging code linked the empty one behind the first and
 * then also submitted it on its own, so it completed twice (a double free
 * on the I/O thread, found by tests/fuzz/fuzz-virtio-blk.c). Each request
 * must come back exactly once, with its status.
 */
START_TEST(test_blk_empty_request_not_merged)
{
	struct vm_disk_config dc = {.id = "vde", .format = "raw"};
	struct drv d;
	uint16_t *ring;
	unsigned r;

	make_disk();
	dc.file = disk_path;
	realize(&virtio_blk_class, &dc);
	drv_probe(&d, 0x1042);
	drv_init(&d, 1ull << 9, 0);
	ring = (uint16_t *)ram(d.avail);
	for (r = 0; r < 3; r++) {
		/* sector 10 (one sector), 11 (no data), 11 (one sector) */
		struct blk_hdr h = {.type = 0, .sector = r ? 11 : 10};
		unsigned first = 3 * r;

		memcpy(ram(HDR + 32 * r), &h, sizeof(h));
		*ram(STATUS + r) = 0xff;
		drv_desc(&d, first, HDR + 32 * r, 16, VIRTQ_DESC_F_NEXT, first + 1);
		if (r == 1) {
			drv_desc(&d, first + 1, STATUS + r, 1, VIRTQ_DESC_F_WRITE, 0);
		} else {
			drv_desc(&d, first + 1, DATA + 512 * r, 512,
				 VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, first + 2);
			drv_desc(&d, first + 2, STATUS + r, 1, VIRTQ_DESC_F_WRITE, 0);
		}
		ring[2 + d.avail_idx % QSZ] = first;
		d.avail_idx++;
	}
	ring[1] = d.avail_idx;
	mw(d.notify, 0, 2);
	for (r = 0; r < 3; r++) {
		drv_wait(&d);
	}
	spin(20);
	ck_assert_uint_eq(used_idx(&d), 3); /* three chains back, none twice */
	for (r = 0; r < 3; r++) {
		ck_assert_uint_eq(*ram(STATUS + r), 0);
	}
}
END_TEST

START_TEST(test_blk_reset_with_requests_in_flight)
{
	struct vm_disk_config dc = {.id = "vdd", .format = "raw"};
	struct drv d;
	struct blk_hdr h = {.type = 0, .sector = 0};

	make_disk();
	dc.file = disk_path;
	realize(&virtio_blk_class, &dc);
	drv_probe(&d, 0x1042);
	drv_init(&d, 1ull << 9, 0);
	memcpy(ram(HDR), &h, sizeof(h));
	drv_desc(&d, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&d, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	drv_desc(&d, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	drv_kick(&d, 0);
	/* process the kick (submits) but reset before completion is delivered */
	event_base_loop(base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	mw(d.common + 0x14, 0, 1);
	memset(ram(RING_BASE), 0, 0x3000);
	spin(20);
	/* the stale completion did not touch the (zeroed) used ring */
	ck_assert_uint_eq(used_idx(&d), 0);
	ck_assert_uint_eq(drv_init(&d, 1ull << 9, 0) & 0xf, 0xf);
	ck_assert_uint_eq(blk_rw(&d, 0, 1, 512, false), 0);
}
END_TEST

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Kick a one-sector read at @sector without waiting for it. */
static void blk_read_nowait(struct drv *d, uint64_t sector)
{
	struct blk_hdr h = {.type = 0, .sector = sector};

	memcpy(ram(HDR), &h, sizeof(h));
	drv_desc(d, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(d, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	drv_desc(d, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	drv_kick(d, 0);
	event_base_loop(base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
}

/*
 * I/O limits: the definition's 10 reads a second let two through at once
 * (the second fills the bucket of a tenth of a second's worth) and hold
 * the next ones, which count as
 * busy and go when their time comes; writes are not limited by a read
 * limit; a reset drops a held read without completing it; a stopped VM's
 * held reads go when a save asks whether the disk is busy; block_set_io_throttle (the class hook) lifts the
 * limits, and query-block shows them meanwhile.
 */
START_TEST(test_blk_throttle)
{
	struct vm_disk_config dc = {.id = "vdt", .format = "raw"};
	struct block_throttle_limits none;
	struct drv d;
	double t0;

	make_disk();
	dc.file = disk_path;
	block_throttle_limits_init(&dc.throttle);
	dc.throttle.iops[BLOCK_THROTTLE_READ] = 10;
	realize(&virtio_blk_class, &dc);
	drv_probe(&d, 0x1042);
	drv_init(&d, 1ull << 9, 0);
	t0 = now_s();
	for (unsigned i = 0; i < 5; i++) {
		ck_assert_uint_eq(blk_rw(&d, 0, i, 512, false), 0);
	}
	/* the bucket holds a tenth of a second's worth (one): two at once, then one a tenth */
	ck_assert_double_ge(now_s() - t0, 0.28);
	t0 = now_s();
	for (unsigned i = 0; i < 4; i++) {
		ck_assert_uint_eq(blk_rw(&d, 1, i, 512, true), 0);
	}
	ck_assert_double_lt(now_s() - t0, 0.25);
	json_t *info = dev_cls->query_block(dev_state);
	json_t *ins = json_object_get(info, "inserted");

	ck_assert_int_eq(json_integer_value(json_object_get(ins, "iops_rd")), 10);
	ck_assert_int_eq(json_integer_value(json_object_get(ins, "bps")), 0);
	ck_assert_str_eq(json_string_value(json_object_get(ins, "group")), "vdt");
	json_decref(info);
	/* held, busy; a reset drops it and the used ring never sees it */
	blk_read_nowait(&d, 7);
	ck_assert_uint_eq(dev_cls->busy(dev_state), 1);
	mw(d.common + 0x14, 0, 1);
	ck_assert_uint_eq(dev_cls->busy(dev_state), 0);
	ck_assert_uint_eq(drv_init(&d, 1ull << 9, 0) & 0xf, 0xf);
	spin(300);
	ck_assert_uint_eq(used_idx(&d), 0);
	/*
	 * One read a second: a save of the stopped VM asks whether the disk
	 * is busy, and the held read goes at once (not a second later)
	 */
	block_throttle_limits_init(&none);
	none.iops[BLOCK_THROTTLE_READ] = 1;
	ck_assert_int_eq(dev_cls->set_io_throttle(dev_state, "vdt", &none), 0);
	ck_assert_uint_eq(blk_rw(&d, 0, 1, 512, false), 0);
	blk_read_nowait(&d, 2);
	spin(50);
	ck_assert_uint_eq(dev_cls->busy(dev_state), 1);
	fake_vm_set_state(vm, VM_STATE_PAUSED);
	ck_assert_uint_eq(dev_cls->busy(dev_state), 1);
	spin(50);
	ck_assert_uint_eq(dev_cls->busy(dev_state), 0);
	ck_assert_uint_eq(drv_wait(&d), 513);
	fake_vm_set_state(vm, VM_STATE_RUNNING);
	/* lifted: no wait, no limits shown */
	block_throttle_limits_init(&none);
	ck_assert_int_eq(dev_cls->set_io_throttle(dev_state, "other", &none), -ENOENT);
	ck_assert_int_eq(dev_cls->set_io_throttle(dev_state, "vdt", &none), 0);
	t0 = now_s();
	for (unsigned i = 0; i < 4; i++) {
		ck_assert_uint_eq(blk_rw(&d, 0, i, 512, false), 0);
	}
	ck_assert_double_lt(now_s() - t0, 0.25);
	info = dev_cls->query_block(dev_state);
	ck_assert_ptr_null(json_object_get(json_object_get(info, "inserted"), "group"));
	json_decref(info);
}
END_TEST

/* ---- virtio-net over the user (slirp) backend, with a real I/O thread ---- */

static pthread_t io_thread;

static void *io_loop(void *arg)
{
	(void)arg;
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void io_start(void)
{
	ck_assert_int_eq(pthread_create(&io_thread, NULL, io_loop, NULL), 0);
}

/* Unrealize with the I/O thread running (as vm_destroy does), then stop it. */
static void io_stop_and_unrealize(void)
{
	dev_cls->unrealize(dev_state);
	dev_cls = NULL;
	event_base_loopexit(base, NULL);
	pthread_join(io_thread, NULL);
}

#define NET_RX_RING RING_BASE
#define NET_TX_RING (RING_BASE + 0x4000)
#define NET_RXBUF (BUF_BASE + 0x10000)
#define NET_TXBUF BUF_BASE

static uint16_t ring_used_idx(uint64_t ring)
{
	return __atomic_load_n((uint16_t *)ram(ring + 0x2000 + 2), __ATOMIC_ACQUIRE);
}

static void ring_desc(uint64_t ring, unsigned i, uint64_t addr, uint32_t len, uint16_t flags)
{
	uint8_t *p = ram(ring + 16 * i);
	uint16_t next = 0;

	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

static void ring_avail(uint64_t ring, uint16_t *idx, uint16_t head)
{
	uint16_t *a = (uint16_t *)ram(ring + 0x1000);

	a[2 + *idx % QSZ] = head;
	(*idx)++;
	__atomic_store_n(&a[1], *idx, __ATOMIC_RELEASE);
}

static void net_queue(struct drv *d, unsigned qi, uint64_t ring)
{
	memset(ram(ring), 0, 0x3000);
	mw(d->common + 0x16, qi, 2);
	mw(d->common + 0x18, QSZ, 2);
	mw(d->common + 0x20, ring, 8);
	mw(d->common + 0x28, ring + 0x1000, 8);
	mw(d->common + 0x30, ring + 0x2000, 8);
	mw(d->common + 0x1c, 1, 2);
	ck_assert_uint_eq(mr(d->common + 0x1c, 2), 1);
}

/* Bring up rx (queue 0) and tx (queue 1) with @features; post @nbufs rx buffers of @len. */
static void net_init(struct drv *d, uint64_t features, unsigned nbufs, uint32_t len,
		     uint16_t *rx_idx)
{
	uint64_t want = features | 1ull << VIRTIO_F_VERSION_1;
	unsigned i;

	mw(d->common + 0x14, 0, 1);
	mw(d->common + 0x14, 3, 1);
	mw(d->common + 0x08, 0, 4);
	mw(d->common + 0x0c, (uint32_t)want, 4);
	mw(d->common + 0x08, 1, 4);
	mw(d->common + 0x0c, want >> 32, 4);
	mw(d->common + 0x14, 0x0b, 1);
	ck_assert(mr(d->common + 0x14, 1) & VIRTIO_STATUS_FEATURES_OK);
	net_queue(d, 0, NET_RX_RING);
	net_queue(d, 1, NET_TX_RING);
	mw(d->common + 0x14, 0x0f, 1);
	*rx_idx = 0;
	for (i = 0; i < nbufs; i++) {
		ring_desc(NET_RX_RING, i, NET_RXBUF + 0x800 * i, len, VIRTQ_DESC_F_WRITE);
		ring_avail(NET_RX_RING, rx_idx, i);
	}
	mw(d->notify, 0, 2);
}

static uint16_t ip_sum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2) {
		sum += p[i] << 8 | p[i + 1];
	}
	while (sum >> 16) {
		sum = (sum & 0xffff) + (sum >> 16);
	}
	return ~sum;
}

/* A DHCPDISCOVER (with the 12-byte virtio-net header in front) at NET_TXBUF. */
static size_t net_discover(void)
{
	uint8_t *f = ram(NET_TXBUF) + 12, *ip = f + 14, *udp = ip + 20, *bootp = udp + 8;
	size_t blen = 300, ulen = 8 + blen, ilen = 20 + ulen;
	uint16_t c;

	memset(ram(NET_TXBUF), 0, 12 + 14 + ilen);
	memset(f, 0xff, 6);
	memcpy(f + 6, "\x52\x54\x00\x00\x00\x01", 6);
	f[12] = 0x08;
	ip[0] = 0x45;
	ip[2] = ilen >> 8;
	ip[3] = ilen & 0xff;
	ip[8] = 64;
	ip[9] = 17;
	memset(ip + 16, 0xff, 4);
	c = ip_sum(ip, 20);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	udp[1] = 68;
	udp[3] = 67;
	udp[4] = ulen >> 8;
	udp[5] = ulen & 0xff;
	bootp[0] = 1;
	bootp[1] = 1;
	bootp[2] = 6;
	memcpy(bootp + 28, "\x52\x54\x00\x00\x00\x01", 6);
	memcpy(bootp + 236, "\x63\x82\x53\x63\x35\x01\x01\xff", 8);
	return 12 + 14 + ilen;
}

static void net_send_discover(struct drv *d, uint16_t *tx_idx)
{
	ring_desc(NET_TX_RING, 0, NET_TXBUF, net_discover(), 0);
	ring_avail(NET_TX_RING, tx_idx, 0);
	mw(d->notify + d->notify_mult, 1, 2);
}

START_TEST(test_net_dhcp_mergeable)
{
	struct vm_nic_config nc = {.id = "net0", .backend = "user", .mac = "52:54:00:00:00:01"};
	struct drv d;
	uint16_t rx_idx, tx_idx = 0, nbufs;
	uint8_t frame[2048];
	size_t flen = 0;
	unsigned i, u;

	realize(&virtio_net_class, &nc);
	io_start();
	drv_probe(&d, 0x1041);
	ck_assert_uint_eq(mr(d.device, 1), 0x52);
	ck_assert_uint_eq(mr(d.device + 5, 1), 0x01);
	ck_assert_uint_eq(mr(d.device + 6, 2) & 1, 1); /* link up */
	/* MAC, MRG_RXBUF, STATUS; 64-byte receive buffers force a merged frame */
	net_init(&d, 1ull << 5 | 1ull << 15 | 1ull << 16, 16, 64, &rx_idx);
	net_send_discover(&d, &tx_idx);
	for (i = 0; i < 4000 && ring_used_idx(NET_RX_RING) == 0; i++) {
		usleep(500);
	}
	ck_assert_uint_gt(ring_used_idx(NET_RX_RING), 0);
	ck_assert_uint_eq(ring_used_idx(NET_TX_RING), 1);
	/* the first buffer's header says how many buffers the frame spans */
	{
		uint32_t id0;

		memcpy(&id0, ram(NET_RX_RING + 0x2000 + 4), 4);
		memcpy(&nbufs, ram(NET_RXBUF + 0x800 * id0 + 10), 2);
	}
	ck_assert_uint_gt(nbufs, 1);
	for (i = 0; i < 4000 && ring_used_idx(NET_RX_RING) < nbufs; i++) {
		usleep(500);
	}
	for (u = 0; u < nbufs; u++) {
		uint32_t id, len;

		memcpy(&id, ram(NET_RX_RING + 0x2000 + 4 + 8 * u), 4);
		memcpy(&len, ram(NET_RX_RING + 0x2000 + 8 + 8 * u), 4);
		ck_assert_uint_le(len, 64);
		memcpy(frame + flen, ram(NET_RXBUF + 0x800 * id) + (u ? 0 : 12),
		       len - (u ? 0 : 12));
		flen += len - (u ? 0 : 12);
	}
	/* a DHCPOFFER of 10.0.2.15 */
	ck_assert_uint_gt(flen, 14 + 20 + 8 + 240);
	ck_assert_uint_eq(frame[14 + 20 + 8], 2);
	ck_assert_mem_eq(frame + 14 + 20 + 8 + 16, "\x0a\x00\x02\x0f", 4);
	io_stop_and_unrealize();
}
END_TEST

/*
 * Mergeable buffers too few for a frame: it waits for more (given back,
 * not cut), and goes when the driver adds them. The old code retried by
 * recursion while the chains it had given back were still there, without
 * end: a stack overflow on the I/O thread, ending the daemon (found by the
 * virtio-net fuzz target).
 */
START_TEST(test_net_frame_waits_for_buffers)
{
	struct vm_nic_config nc = {.id = "net0", .backend = "user", .mac = "52:54:00:00:00:01"};
	struct drv d;
	uint16_t rx_idx, tx_idx = 0, nbufs;
	unsigned i;

	realize(&virtio_net_class, &nc);
	io_start();
	drv_probe(&d, 0x1041);
	/* two 64-byte buffers; a DHCP offer needs about ten */
	net_init(&d, 1ull << 5 | 1ull << 15 | 1ull << 16, 2, 64, &rx_idx);
	net_send_discover(&d, &tx_idx);
	for (i = 0; i < 2000 && ring_used_idx(NET_TX_RING) == 0; i++) {
		usleep(500);
	}
	ck_assert_uint_eq(ring_used_idx(NET_TX_RING), 1);
	usleep(200000);
	ck_assert_uint_eq(ring_used_idx(NET_RX_RING), 0);
	for (i = 2; i < 16; i++) {
		ring_desc(NET_RX_RING, i, NET_RXBUF + 0x800 * i, 64, VIRTQ_DESC_F_WRITE);
		ring_avail(NET_RX_RING, &rx_idx, i);
	}
	mw(d.notify, 0, 2);
	for (i = 0; i < 4000 && ring_used_idx(NET_RX_RING) == 0; i++) {
		usleep(500);
	}
	ck_assert_uint_gt(ring_used_idx(NET_RX_RING), 2);
	memcpy(&nbufs, ram(NET_RXBUF + 10), 2); /* the first buffer's header */
	ck_assert_uint_eq(ring_used_idx(NET_RX_RING), nbufs);
	io_stop_and_unrealize();
}
END_TEST

START_TEST(test_net_no_truncation)
{
	struct vm_nic_config nc = {.id = "net0", .backend = "user", .mac = "52:54:00:00:00:01"};
	struct drv d;
	uint16_t rx_idx, tx_idx = 0;
	unsigned i;

	realize(&virtio_net_class, &nc);
	io_start();
	drv_probe(&d, 0x1041);
	/* without MRG_RXBUF, an offer does not fit a 64-byte buffer: dropped, never cut */
	net_init(&d, 1ull << 5, 4, 64, &rx_idx);
	net_send_discover(&d, &tx_idx);
	for (i = 0; i < 2000 && ring_used_idx(NET_TX_RING) == 0; i++) {
		usleep(500);
	}
	ck_assert_uint_eq(ring_used_idx(NET_TX_RING), 1);
	usleep(200000);
	ck_assert_uint_eq(ring_used_idx(NET_RX_RING), 0);
	/* a runt transmit (shorter than a header and an Ethernet header) is consumed, not sent */
	ring_desc(NET_TX_RING, 1, NET_TXBUF, 10, 0);
	ring_avail(NET_TX_RING, &tx_idx, 1);
	mw(d.notify + d.notify_mult, 1, 2);
	for (i = 0; i < 2000 && ring_used_idx(NET_TX_RING) < 2; i++) {
		usleep(500);
	}
	ck_assert_uint_eq(ring_used_idx(NET_TX_RING), 2);
	ck_assert(!(mr(d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET));
	io_stop_and_unrealize();
}
END_TEST

/* Save into a new buffer and load it back into the same device; the saved size. */
static size_t net_save_load(void)
{
	struct vmstate_buf out, in;
	struct error *err = NULL;
	size_t len;

	vmstate_buf_init(&out);
	ck_assert_int_eq(dev_cls->save(dev_state, &out, NULL), 0);
	len = out.len;
	vmstate_buf_wrap(&in, out.data, out.len);
	ck_assert_msg(dev_cls->load(dev_state, &in, dev_cls->state_version, &err) == 0, "%s",
		      err ? err->msg : "");
	vmstate_buf_free(&out);
	return len;
}

/*
 * set_link: down, the config's status shows it (with a config change: the
 * generation moves) and a frame the guest sends is consumed but never
 * reaches the backend (no DHCP offer comes back); a save carries it (one
 * byte more than with the link up, which saves what vmmd always saved);
 * up again, traffic flows.
 */
START_TEST(test_net_link)
{
	struct vm_nic_config nc = {.id = "net0", .backend = "user", .mac = "52:54:00:00:00:01"};
	struct drv d;
	uint16_t rx_idx, tx_idx = 0;
	size_t up_len, down_len;
	uint8_t gen;
	unsigned i;

	realize(&virtio_net_class, &nc);
	io_start();
	drv_probe(&d, 0x1041);
	net_init(&d, 1ull << 5 | 1ull << 15 | 1ull << 16, 16, 2048, &rx_idx);
	up_len = net_save_load();
	gen = (uint8_t)mr(d.common + 0x15, 1);
	ck_assert_int_eq(dev_cls->set_link(dev_state, false), 0);
	ck_assert_uint_eq(mr(d.device + 6, 2) & 1, 0);
	ck_assert_uint_ne(mr(d.common + 0x15, 1), gen);
	net_send_discover(&d, &tx_idx);
	for (i = 0; i < 2000 && ring_used_idx(NET_TX_RING) == 0; i++) {
		usleep(500);
	}
	ck_assert_uint_eq(ring_used_idx(NET_TX_RING), 1);
	usleep(300000);
	ck_assert_uint_eq(ring_used_idx(NET_RX_RING), 0);
	down_len = net_save_load();
	ck_assert_uint_eq(down_len, up_len + 1);
	ck_assert_uint_eq(mr(d.device + 6, 2) & 1, 0);
	ck_assert_int_eq(dev_cls->set_link(dev_state, true), 0);
	ck_assert_uint_eq(mr(d.device + 6, 2) & 1, 1);
	ring_desc(NET_TX_RING, 1, NET_TXBUF, net_discover(), 0);
	ring_avail(NET_TX_RING, &tx_idx, 1);
	mw(d.notify + d.notify_mult, 1, 2);
	for (i = 0; i < 4000 && ring_used_idx(NET_RX_RING) == 0; i++) {
		usleep(500);
	}
	ck_assert_uint_gt(ring_used_idx(NET_RX_RING), 0);
	io_stop_and_unrealize();
}
END_TEST

/* ---- virtio-mem: its region is a slice of the fake RAM (8 MiB, 4 MiB, 1 MiB blocks) ---- */

#define MEM_ADDR (8ull << 20)
#define MEM_BLOCK (1ull << 20)

static const struct vm_memdev_config mem_cfg = {
	.id = "vm0",
	.driver = "virtio-mem",
	.memdev = "m0",
	.size = 4 << 20,
	.requested_size = 2 << 20,
	.block_size = MEM_BLOCK,
	.addr = MEM_ADDR,
};

/* One request; the response type, and the state into *state. */
static unsigned mem_req(struct drv *d, uint16_t type, uint64_t addr, uint16_t nb, uint16_t *state)
{
	uint8_t *req = ram(BUF_BASE), *resp = ram(BUF_BASE + 0x100);
	uint16_t t = 0xffff, st = 0xffff;

	memset(req, 0, 24);
	memcpy(req, &type, 2);
	memcpy(req + 8, &addr, 8);
	memcpy(req + 16, &nb, 2);
	memset(resp, 0xff, 10);
	drv_desc(d, 0, BUF_BASE, 24, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(d, 1, BUF_BASE + 0x100, 10, VIRTQ_DESC_F_WRITE, 0);
	drv_kick(d, 0);
	ck_assert_uint_eq(drv_wait(d), 10);
	memcpy(&t, resp, 2);
	memcpy(&st, resp + 8, 2);
	if (state) {
		*state = st;
	}
	return t;
}

static uint64_t mem_cfg64(struct drv *d, unsigned off)
{
	return mr(d->device + off, 4) | mr(d->device + off + 4, 4) << 32;
}

START_TEST(test_mem_requests)
{
	struct drv d;
	uint16_t st;

	realize(&virtio_mem_class, &mem_cfg);
	drv_probe(&d, 0x1040 + 24);
	ck_assert_uint_eq(drv_init(&d, 1, 0) & 0x0f, 0x0f);
	ck_assert_uint_eq(mem_cfg64(&d, 0), MEM_BLOCK);
	ck_assert_uint_eq(mem_cfg64(&d, 16), MEM_ADDR);
	ck_assert_uint_eq(mem_cfg64(&d, 24), 4 << 20);
	ck_assert_uint_eq(mem_cfg64(&d, 32), 4 << 20); /* usable: min(region, 2M + 256M) */
	ck_assert_uint_eq(mem_cfg64(&d, 48), 2 << 20);
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR, 1, NULL), 0);	     /* plug: ACK */
	ck_assert_uint_eq(mem_cfg64(&d, 40), MEM_BLOCK);		     /* plugged */
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR, 1, NULL), 3);	     /* again: ERROR */
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR + MEM_BLOCK, 2, NULL), 1); /* > requested */
	ck_assert_uint_eq(mem_req(&d, 3, MEM_ADDR, 2, &st), 0);
	ck_assert_uint_eq(st, 2); /* MIXED */
	ck_assert_uint_eq(mem_req(&d, 3, MEM_ADDR + MEM_BLOCK, 3, &st), 0);
	ck_assert_uint_eq(st, 1); /* UNPLUGGED */
	/* crossing the region's end, misaligned, below, empty, wrapping: ERROR */
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR + 3 * MEM_BLOCK, 2, NULL), 3);
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR + 4096, 1, NULL), 3);
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR - MEM_BLOCK, 1, NULL), 3);
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR + MEM_BLOCK, 0, NULL), 3);
	ck_assert_uint_eq(mem_req(&d, 1, ~0ull & ~(MEM_BLOCK - 1), 0xffff, NULL), 3);
	ck_assert_uint_eq(mem_req(&d, 3, MEM_ADDR + 4 * MEM_BLOCK, 1, NULL), 3);
	ck_assert_uint_eq(mem_req(&d, 1, MEM_ADDR + MEM_BLOCK, 1, NULL), 3); /* unplugged */
	/* plugged memory keeps what the guest wrote; unplug gives zeroes back */
	memset(ram(MEM_ADDR), 0xab, 4096);
	ck_assert_uint_eq(mem_req(&d, 1, MEM_ADDR, 1, NULL), 0);
	ck_assert_uint_eq(ram(MEM_ADDR)[0], 0);
	ck_assert_uint_eq(mem_cfg64(&d, 40), 0);
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR + MEM_BLOCK, 2, NULL), 0);
	ck_assert_uint_eq(mem_req(&d, 2, 0, 0, NULL), 0); /* unplug all */
	ck_assert_uint_eq(mem_cfg64(&d, 40), 0);
	/* an unknown request type is a protocol violation */
	{
		uint8_t *req = ram(BUF_BASE);
		uint16_t type = 9;

		memcpy(req, &type, 2);
		drv_desc(&d, 0, BUF_BASE, 24, VIRTQ_DESC_F_NEXT, 1);
		drv_desc(&d, 1, BUF_BASE + 0x100, 10, VIRTQ_DESC_F_WRITE, 0);
		drv_kick(&d, 0);
		spin(5);
		ck_assert(drv_status(&d) & VIRTIO_STATUS_NEEDS_RESET);
	}
	/* the host side: QEMU's checks for requested-size */
	{
		struct error *err = NULL;
		json_t *v = json_integer(3 << 20);

		ck_assert_int_eq(virtio_mem_class.qom_set(dev_state, "requested-size", v, NULL), 0);
		json_decref(v);
		v = json_integer(12345);
		ck_assert_int_lt(virtio_mem_class.qom_set(dev_state, "requested-size", v, &err), 0);
		ck_assert_str_eq(err->msg,
				 "'requested-size' has to be multiples of 'block-size' (0x100000)");
		error_free(err);
		err = NULL;
		json_decref(v);
		v = json_integer(8 << 20);
		ck_assert_int_lt(virtio_mem_class.qom_set(dev_state, "requested-size", v, &err), 0);
		ck_assert_str_eq(
			err->msg,
			"'requested-size' cannot exceed the memory backend size(0x400000)");
		error_free(err);
		json_decref(v);
	}
}
END_TEST

START_TEST(test_mem_save_load)
{
	struct vmstate_buf out, in;
	struct error *err = NULL;
	struct drv d;
	json_t *info;
	uint8_t *bad;

	realize(&virtio_mem_class, &mem_cfg);
	drv_probe(&d, 0x1040 + 24);
	ck_assert_uint_eq(drv_init(&d, 1, 0) & 0x0f, 0x0f);
	ck_assert_uint_eq(mem_req(&d, 0, MEM_ADDR + MEM_BLOCK, 2, NULL), 0);
	vmstate_buf_init(&out);
	ck_assert_int_eq(virtio_mem_class.save(dev_state, &out, NULL), 0);
	ck_assert(!out.failed);
	dev_cls->unrealize(dev_state);
	dev_cls = NULL;
	realize(&virtio_mem_class, &mem_cfg);
	vmstate_buf_wrap(&in, out.data, out.len);
	ck_assert_msg(virtio_mem_class.load(dev_state, &in, 1, &err) == 0, "%s",
		      err ? err->msg : "");
	info = virtio_mem_class.query_memory(dev_state);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(info, "data"), "size")),
			 2 << 20);
	json_decref(info);
	/* a state whose plugged size disagrees with its bitmap, or another version */
	bad = malloc(out.len);
	memcpy(bad, out.data, out.len);
	bad[32] ^= 0x10; /* plugged_size */
	dev_cls->unrealize(dev_state);
	dev_cls = NULL;
	realize(&virtio_mem_class, &mem_cfg);
	vmstate_buf_wrap(&in, bad, out.len);
	ck_assert_int_lt(virtio_mem_class.load(dev_state, &in, 1, &err), 0);
	error_free(err);
	err = NULL;
	vmstate_buf_wrap(&in, out.data, out.len);
	ck_assert_int_lt(virtio_mem_class.load(dev_state, &in, 2, &err), 0);
	error_free(err);
	free(bad);
	vmstate_buf_free(&out);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("virtio");

	/* the net tests run the loop on a thread of its own, as a VM does */
	evthread_use_pthreads();
	TCase *tc = tcase_create("transport");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_rng_reads_random_bytes);
	tcase_add_test(tc, test_rng_rate_limited);
	tcase_add_test(tc, test_feature_negotiation_rules);
	tcase_add_test(tc, test_malicious_loop);
	tcase_add_test(tc, test_malicious_outside_ram);
	tcase_add_test(tc, test_malicious_avail_jump);
	tcase_add_test(tc, test_malicious_ring_address);
	tcase_add_test(tc, test_blk_io);
	tcase_add_test(tc, test_blk_bad_requests);
	tcase_add_test(tc, test_blk_merging);
	tcase_add_test(tc, test_blk_empty_request_not_merged);
	tcase_add_test(tc, test_blk_reset_with_requests_in_flight);
	tcase_add_test(tc, test_blk_throttle);
	tcase_add_test(tc, test_net_dhcp_mergeable);
	tcase_add_test(tc, test_net_frame_waits_for_buffers);
	tcase_add_test(tc, test_net_no_truncation);
	tcase_add_test(tc, test_net_link);
	tcase_add_test(tc, test_mem_requests);
	tcase_add_test(tc, test_mem_save_load);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
