/*
 * Test guest: a virtio-mem driver written from the virtio 1.2 spec (§5.15
 * "Memory Device"). It first checks the device's answers to requests a
 * driver must not send (misaligned, outside the usable region, empty,
 * unplug of unplugged blocks, more than requested; a short request, which
 * is a protocol violation: DEVICE_NEEDS_RESET), then follows the device's
 * requested_size: it plugs blocks from the bottom of the region (or
 * unplugs from the top) one request per block, writes a pattern into each
 * block it plugs and checks it is still there before unplugging. It
 * prints "vmem: plugged N" each time it has converged.
 *
 * It also prints the SRAT's memory ranges (the hotpluggable one covers the
 * device memory region).
 *
 * Lines starting "vmem: " are the transcript test-virtio-mem.py compares
 * between vmmd and QEMU 7.2 (the same ELF booted with -kernel).
 */
#include "lib.h"
#include "virtio-drv.h"

#define F_ACPI_PXM 0

/* config offsets (§5.15.4) */
#define CFG_BLOCK_SIZE 0
#define CFG_NODE_ID 8
#define CFG_ADDR 16
#define CFG_REGION_SIZE 24
#define CFG_USABLE 32
#define CFG_PLUGGED 40
#define CFG_REQUESTED 48

#define REQ_PLUG 0
#define REQ_UNPLUG 1
#define REQ_UNPLUG_ALL 2
#define REQ_STATE 3

#define MAX_GIB 4 /* device memory the guest maps: 4 GiB above the region's start */

struct mem_req {
	uint16_t type;
	uint16_t pad[3];
	uint64_t addr;
	uint16_t nb_blocks;
	uint16_t pad2[3];
} __attribute__((packed));

struct mem_resp {
	uint16_t type;
	uint16_t pad[3];
	uint16_t state;
} __attribute__((packed));

static struct vq q;
static struct mem_req req;
static struct mem_resp resp;
static uint64_t pds[MAX_GIB][512] __attribute__((aligned(4096)));
static struct vdev d;
static uint64_t block, base, region, plugged;

static uint64_t cfg64(unsigned off)
{
	for (;;) {
		uint8_t gen = mr8(d.common + 21); /* config_generation */
		uint64_t v = mr32(d.device + off) | (uint64_t)mr32(d.device + off + 4) << 32;

		if (mr8(d.common + 21) == gen) {
			return v;
		}
	}
}

/* Identity-map [base, base + MAX_GIB GiB) with 2 MiB pages (start.S maps the first 4 GiB). */
static void map_region(void)
{
	uint64_t cr3;
	uint64_t *pml4, *pdpt;

	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	pml4 = (uint64_t *)(cr3 & ~0xfffull);
	pdpt = (uint64_t *)(pml4[0] & ~0xfffull);
	for (unsigned g = 0; g < MAX_GIB; g++) {
		uint64_t gib = (base >> 30) + g;

		if (gib >= 512) {
			break;
		}
		for (unsigned i = 0; i < 512; i++) {
			pds[g][i] = (gib << 30) + ((uint64_t)i << 21) + 0x83;
		}
		pdpt[gib] = (uint64_t)pds[g] + 3;
	}
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

/* One request; the response type (0xffff if the device did not answer). */
static unsigned send(uint16_t type, uint64_t addr, uint16_t nb, unsigned req_len, uint16_t *state)
{
	uint32_t id, len;

	req = (struct mem_req){.type = type, .addr = addr, .nb_blocks = nb};
	resp = (struct mem_resp){.type = 0xffff, .state = 0xffff};
	q.desc[0] = (struct vq_desc){(uint64_t)&req, req_len, VQ_F_NEXT, 1};
	q.desc[1] = (struct vq_desc){(uint64_t)&resp, sizeof(resp), VQ_F_WRITE, 0};
	vq_kick(&d, &q, 0);
	if (!vq_wait(&q, &id, &len, 200000000)) {
		print("vmem: request timed out\n");
		return 0xffff;
	}
	if (state) {
		*state = resp.state;
	}
	return resp.type;
}

static bool sum_ok(const uint8_t *p, unsigned len)
{
	uint8_t sum = 0;

	while (len--) {
		sum += *p++;
	}
	return sum == 0;
}

/* The SRAT the firmware or VMM gave us (RSDP -> XSDT/RSDT): its CPUs and memory ranges. */
static void print_srat(void)
{
	const uint8_t *rsdp = 0, *srat = 0;
	uint64_t sdt;
	unsigned entsz, n, cpus = 0;

	for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
		if (!memcmp((const void *)a, "RSD PTR ", 8) && sum_ok((const void *)a, 20)) {
			rsdp = (const uint8_t *)a;
			break;
		}
	}
	if (!rsdp) {
		print("vmem: no RSDP\n");
		return;
	}
	if (rsdp[15] >= 2 && *(const uint64_t *)(rsdp + 24)) {
		sdt = *(const uint64_t *)(rsdp + 24);
		entsz = 8;
	} else {
		sdt = *(const uint32_t *)(rsdp + 16);
		entsz = 4;
	}
	n = (*(const uint32_t *)(sdt + 4) - 36) / entsz;
	for (unsigned i = 0; i < n && i < 64; i++) {
		uint64_t t = entsz == 8 ? *(const uint64_t *)(sdt + 36 + 8 * i)
					: *(const uint32_t *)(sdt + 36 + 4 * i);

		if (!memcmp((const void *)t, "SRAT", 4)) {
			srat = (const uint8_t *)t;
		}
	}
	if (!srat) {
		print("vmem: no SRAT\n");
		return;
	}
	print("vmem: srat revision ");
	print_dec(srat[8]);
	print(" checksum ");
	print(sum_ok(srat, *(const uint32_t *)(srat + 4)) ? "ok" : "BAD");
	print("\n");
	for (uint32_t off = 48, len = *(const uint32_t *)(srat + 4); off + 2 <= len;
	     off += srat[off + 1]) {
		const uint8_t *e = srat + off;

		if (e[1] == 0) {
			break;
		}
		if (e[0] == 0) {
			cpus++;
		} else if (e[0] == 1) {
			print("vmem: srat memory ");
			print_hex(*(const uint64_t *)(e + 8));
			print("+");
			print_hex(*(const uint64_t *)(e + 16));
			print(" node ");
			print_dec(*(const uint32_t *)(e + 2));
			print(" flags ");
			print_hex(*(const uint32_t *)(e + 28));
			print("\n");
		}
	}
	print("vmem: srat cpus ");
	print_dec(cpus);
	print("\n");
}

static void report(const char *what, unsigned v)
{
	print("vmem: ");
	print(what);
	print(" -> ");
	print_dec(v);
	print("\n");
}

static bool setup(void)
{
	if (!virtio_negotiate(&d, 1ull << F_ACPI_PXM)) {
		return false;
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &q, 0, 16, 1)) {
		print("vmem: queue setup failed\n");
		return false;
	}
	virtio_driver_ok(&d);
	return true;
}

static uint64_t pattern(uint64_t addr)
{
	return addr * 0x9e3779b97f4a7c15ull ^ 0x5a5a5a5a5a5a5a5aull;
}

/* Write one word per 4 KiB page of the block at @addr (each guest store costs time here). */
static void fill(uint64_t addr)
{
	for (uint64_t off = 0; off < block; off += 4096) {
		*(volatile uint64_t *)(addr + off) = pattern(addr + off);
	}
}

static bool check(uint64_t addr)
{
	for (uint64_t off = 0; off < block; off += 4096) {
		if (*(volatile uint64_t *)(addr + off) != pattern(addr + off)) {
			print("vmem: pattern lost at ");
			print_hex(addr + off);
			print("\n");
			return false;
		}
	}
	return true;
}

static void bad_requests(void)
{
	uint16_t state = 0;

	uint64_t over = cfg64(CFG_REQUESTED) / block + 1;

	report("plug beyond requested",
	       send(REQ_PLUG, base, over > 0xffff ? 0xffff : (uint16_t)over, sizeof(req), 0));
	report("plug misaligned", send(REQ_PLUG, base + 4096, 1, sizeof(req), 0));
	report("plug below region", send(REQ_PLUG, base - block, 1, sizeof(req), 0));
	report("plug beyond usable", send(REQ_PLUG, base + region, 1, sizeof(req), 0));
	report("plug zero blocks", send(REQ_PLUG, base, 0, sizeof(req), 0));
	report("plug wrapping", send(REQ_PLUG, 0xffffffffffe00000ull, 0xffff, sizeof(req), 0));
	report("unplug unplugged", send(REQ_UNPLUG, base, 1, sizeof(req), 0));
	report("state", send(REQ_STATE, base, 1, sizeof(req), &state));
	report("state is", state);
	report("state beyond usable", send(REQ_STATE, base + region, 1, sizeof(req), 0));
	report("unplug all", send(REQ_UNPLUG_ALL, 0, 0, sizeof(req), 0));
	/*
	 * A request shorter than struct virtio_mem_req: a protocol violation.
	 * The device sets DEVICE_NEEDS_RESET (QEMU does not use the buffers).
	 */
	req = (struct mem_req){.type = REQ_PLUG, .addr = base, .nb_blocks = 1};
	q.desc[0] = (struct vq_desc){(uint64_t)&req, 8, VQ_F_NEXT, 1};
	q.desc[1] = (struct vq_desc){(uint64_t)&resp, sizeof(resp), VQ_F_WRITE, 0};
	vq_kick(&d, &q, 0);
	for (unsigned long i = 0; i < 100000000 && !(virtio_status(&d) & 64); i++) {
		__asm__ volatile("pause");
	}
	report("short request needs reset", (virtio_status(&d) & 64) ? 1 : 0);
}

void guest_main(void)
{
	uint64_t ecam;
	unsigned nplugged = 0;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(24, 0, &d)) {
		print("vmem: no device\n");
		guest_poweroff();
	}
	/* the device-specific features offered (ACPI_PXM, UNPLUGGED_INACCESSIBLE) */
	virtio_negotiate(&d, 0xffffff);
	print("vmem: features ");
	print_hex(d.features & 0xffffff);
	print("\n");
	if (!setup()) {
		print("vmem: setup failed\n");
		guest_poweroff();
	}
	block = cfg64(CFG_BLOCK_SIZE);
	base = cfg64(CFG_ADDR);
	region = cfg64(CFG_REGION_SIZE);
	print("vmem: block_size ");
	print_hex(block);
	print(" addr ");
	print_hex(base);
	print(" region_size ");
	print_hex(region);
	print(" usable ");
	print_hex(cfg64(CFG_USABLE));
	print(" plugged ");
	print_hex(cfg64(CFG_PLUGGED));
	print(" requested ");
	print_hex(cfg64(CFG_REQUESTED));
	print(" node ");
	print_dec(mr16(d.device + CFG_NODE_ID));
	print("\n");
	if (block == 0 || (block & (block - 1)) || (base & (block - 1)) ||
	    region > ((uint64_t)MAX_GIB << 30)) {
		print("vmem: bad config\n");
		guest_poweroff();
	}
	print_srat();
	map_region();
	bad_requests();
	virtio_reset(&d);
	if (!setup()) {
		print("vmem: setup after reset failed\n");
		guest_poweroff();
	}
	print("vmem: ready\n");
	for (;;) {
		uint64_t want = cfg64(CFG_REQUESTED);
		bool changed = false;

		while (plugged < want) {
			uint64_t a = base + (uint64_t)nplugged * block;
			unsigned r = send(REQ_PLUG, a, 1, sizeof(req), 0);

			if (r != 0) {
				report("plug refused", r);
				break;
			}
			fill(a);
			nplugged++;
			plugged += block;
			changed = true;
		}
		while (plugged > want) {
			uint64_t a = base + (uint64_t)(nplugged - 1) * block;
			unsigned r;

			if (!check(a)) {
				break;
			}
			r = send(REQ_UNPLUG, a, 1, sizeof(req), 0);
			if (r != 0) {
				report("unplug refused", r);
				break;
			}
			nplugged--;
			plugged -= block;
			changed = true;
		}
		if (changed) {
			for (unsigned i = 0; i < nplugged; i++) {
				if (!check(base + (uint64_t)i * block)) {
					break;
				}
			}
			print("vmem: plugged ");
			print_dec(cfg64(CFG_PLUGGED));
			print(" usable ");
			print_hex(cfg64(CFG_USABLE));
			print("\n");
		}
		/* poll gently: every config read is a VM exit */
		for (volatile unsigned spin = 0; spin < 20000; spin++) {
		}
	}
}
