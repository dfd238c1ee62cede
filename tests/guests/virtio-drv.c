/* The test guests' virtio 1.x PCI driver (see virtio-drv.h). */
#include "lib.h"
#include "virtio-drv.h"

/* PCI header and capability layout (PCI Local Bus 3.0, virtio 1.x §4.1.4) */
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define CAP_VNDR 0x09
#define CAP_MSIX 0x11
#define CFG_COMMON 1
#define CFG_NOTIFY 2
#define CFG_ISR 3
#define CFG_DEVICE 4

/* common configuration structure offsets (§4.1.4.3) */
#define C_DFSEL 0x00
#define C_DF 0x04
#define C_GFSEL 0x08
#define C_GF 0x0c
#define C_MSIX 0x10
#define C_NUMQ 0x12
#define C_STATUS 0x14
#define C_QSEL 0x16
#define C_QSIZE 0x18
#define C_QMSIX 0x1a
#define C_QENABLE 0x1c
#define C_QNOFF 0x1e
#define C_QDESC 0x20
#define C_QDRIVER 0x28
#define C_QDEVICE 0x30

static uint64_t ecam_base;
static uint64_t next_bar = 0xE0000000ull; /* for BARs firmware left at 0 */

void *memset(void *s, int c, unsigned long n)
{
	uint8_t *p = s;

	while (n--) {
		*p++ = (uint8_t)c;
	}
	return s;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
	uint8_t *a = d;
	const uint8_t *b = s;

	while (n--) {
		*a++ = *b++;
	}
	return d;
}

int memcmp(const void *x, const void *y, unsigned long n)
{
	const uint8_t *a = x, *b = y;

	for (; n; n--, a++, b++) {
		if (*a != *b) {
			return *a < *b ? -1 : 1;
		}
	}
	return 0;
}

uint32_t crc32(const void *buf, unsigned long len, uint32_t crc)
{
	const uint8_t *p = buf;
	int k;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (k = 0; k < 8; k++) {
			crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
		}
	}
	return ~crc;
}

uint8_t mr8(uint64_t a)
{
	return *(volatile uint8_t *)a;
}
uint16_t mr16(uint64_t a)
{
	return *(volatile uint16_t *)a;
}
uint32_t mr32(uint64_t a)
{
	return *(volatile uint32_t *)a;
}
uint64_t mr64(uint64_t a)
{
	/* the spec lets a driver read 64-bit fields as two halves */
	return mr32(a) | (uint64_t)mr32(a + 4) << 32;
}
void mw8(uint64_t a, uint8_t v)
{
	*(volatile uint8_t *)a = v;
}
void mw16(uint64_t a, uint16_t v)
{
	*(volatile uint16_t *)a = v;
}
void mw32(uint64_t a, uint32_t v)
{
	*(volatile uint32_t *)a = v;
}
void mw64(uint64_t a, uint64_t v)
{
	mw32(a, (uint32_t)v);
	mw32(a + 4, (uint32_t)(v >> 32));
}

static uint32_t cf8_read(unsigned slot, unsigned off, unsigned size)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (off & 0xfc));
	if (size == 1) {
		return inb(0xcfc + (off & 3));
	}
	if (size == 2) {
		return inw(0xcfc + (off & 2));
	}
	return inl(0xcfc);
}

static void cf8_write(unsigned slot, unsigned off, uint32_t v, unsigned size)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (off & 0xfc));
	if (size == 1) {
		outb(0xcfc + (off & 3), v);
	} else if (size == 2) {
		outw(0xcfc + (off & 2), v);
	} else {
		outl(0xcfc, v);
	}
}

static uint64_t ecam_addr(unsigned slot, unsigned off)
{
	return ecam_base + ((uint64_t)slot << 15) + off;
}

uint32_t pci_read(unsigned slot, unsigned off, unsigned size)
{
	if (!ecam_base) {
		return cf8_read(slot, off, size);
	}
	if (size == 1) {
		return mr8(ecam_addr(slot, off));
	}
	if (size == 2) {
		return mr16(ecam_addr(slot, off));
	}
	return mr32(ecam_addr(slot, off));
}

void pci_write(unsigned slot, unsigned off, uint32_t v, unsigned size)
{
	if (!ecam_base) {
		cf8_write(slot, off, v, size);
	} else if (size == 1) {
		mw8(ecam_addr(slot, off), v);
	} else if (size == 2) {
		mw16(ecam_addr(slot, off), v);
	} else {
		mw32(ecam_addr(slot, off), v);
	}
}

void pci_use_ecam(uint64_t base)
{
	ecam_base = base;
}

bool pci_probe_ecam(uint64_t base)
{
	uint32_t id = cf8_read(0, 0, 4);

	return id != 0xffffffffu && mr32(base) == id;
}

bool pci_cross_check(unsigned slot, unsigned off)
{
	uint64_t save = ecam_base;
	uint32_t a, b;

	ecam_base = 0;
	a = cf8_read(slot, off, 4);
	ecam_base = save;
	b = save ? mr32(ecam_addr(slot, off)) : a;
	return a == b;
}

static bool sum_ok(const uint8_t *p, unsigned len)
{
	uint8_t s = 0;

	while (len--) {
		s += *p++;
	}
	return s == 0;
}

/* ACPI: RSDP in the BIOS area, then XSDT (or RSDT) entries, then MCFG. */
uint64_t pci_find_ecam(void)
{
	const uint8_t *rsdp = 0;
	uint64_t a, sdt;
	unsigned entsz, n, i;

	for (a = 0xe0000; a < 0x100000; a += 16) {
		if (!memcmp((const void *)a, "RSD PTR ", 8) && sum_ok((const void *)a, 20)) {
			rsdp = (const uint8_t *)a;
			break;
		}
	}
	if (!rsdp) {
		return 0;
	}
	if (rsdp[15] >= 2 && *(const uint64_t *)(rsdp + 24)) {
		sdt = *(const uint64_t *)(rsdp + 24);
		entsz = 8;
	} else {
		sdt = *(const uint32_t *)(rsdp + 16);
		entsz = 4;
	}
	n = (*(const uint32_t *)(sdt + 4) - 36) / entsz;
	for (i = 0; i < n && i < 64; i++) {
		uint64_t t = entsz == 8 ? *(const uint64_t *)(sdt + 36 + 8 * i)
					: *(const uint32_t *)(sdt + 36 + 4 * i);

		if (!memcmp((const void *)t, "MCFG", 4)) {
			/* first allocation structure: base (8), segment (2), buses (1+1) */
			return *(const uint64_t *)(t + 44);
		}
	}
	return 0;
}

/*
 * Size BAR @i (PCI 3.0 §6.2.5.1), a 64-bit one together with its upper half;
 * assign an address below 4 GiB if it has none. *ret_is64 tells the caller
 * to skip the next BAR.
 */
static uint64_t bar_setup(unsigned slot, unsigned i, bool *ret_is64)
{
	unsigned off = PCI_BAR0 + 4 * i;
	uint32_t orig = pci_read(slot, off, 4), orig_hi = 0, mask, mask_hi = 0xffffffffu;
	bool is64 = (orig & 7) == 4;
	uint64_t size, addr;

	*ret_is64 = is64;
	if (orig & 1) {
		return 0; /* I/O BAR: unused by modern virtio */
	}
	pci_write(slot, off, 0xffffffff, 4);
	mask = pci_read(slot, off, 4) & ~0xfu;
	pci_write(slot, off, orig, 4);
	if (is64) {
		orig_hi = pci_read(slot, off + 4, 4);
		pci_write(slot, off + 4, 0xffffffff, 4);
		mask_hi = pci_read(slot, off + 4, 4);
		pci_write(slot, off + 4, orig_hi, 4);
	}
	if (!mask && !(is64 && mask_hi)) {
		return 0;
	}
	size = ~((uint64_t)mask_hi << 32 | mask) + 1;
	if (!is64) {
		size &= 0xffffffffull;
	}
	addr = (uint64_t)orig_hi << 32 | (orig & ~0xfu);
	if (addr == 0) {
		next_bar = (next_bar + size - 1) & ~(size - 1);
		addr = next_bar;
		pci_write(slot, off, (uint32_t)addr, 4);
		if (is64) {
			pci_write(slot, off + 4, 0, 4);
		}
		next_bar += size;
	}
	print("  bar");
	print_dec(i);
	print(is64 ? " (64-bit)" : "");
	print(" size ");
	print_hex(size);
	print(" at ");
	print_hex(addr);
	print("\n");
	return addr;
}

uint64_t pci_bar_assign(unsigned slot, unsigned i, bool *ret_is64)
{
	return bar_setup(slot, i, ret_is64);
}

bool virtio_find(uint16_t type, unsigned nth, struct vdev *d)
{
	uint64_t bars[6] = {0};
	unsigned slot, cap, i, seen = 0;

	memset(d, 0, sizeof(*d));
	for (slot = 0; slot < 32; slot++) {
		uint32_t id = pci_read(slot, 0, 4);

		if ((id & 0xffff) != 0x1af4 || (id >> 16) != 0x1040u + type) {
			continue;
		}
		if (seen++ == nth) {
			break;
		}
	}
	if (slot == 32) {
		return false;
	}
	d->slot = slot;
	d->device_id = type;
	print("pci: slot ");
	print_dec(slot);
	print(" virtio type ");
	print_dec(type);
	print("\n");
	pci_write(slot, PCI_COMMAND, 0, 2);
	for (i = 0; i < 6; i++) {
		bool is64;

		bars[i] = bar_setup(slot, i, &is64);
		if (is64) {
			i++;
		}
	}
	/* memory decoding and bus mastering on */
	pci_write(slot, PCI_COMMAND, 0x6, 2);
	if (!(pci_read(slot, PCI_STATUS, 2) & 0x10)) {
		return false;
	}
	for (cap = pci_read(slot, PCI_CAP_PTR, 1) & ~3u; cap;
	     cap = pci_read(slot, cap + 1, 1) & ~3u) {
		unsigned id = pci_read(slot, cap, 1);

		if (id == CAP_MSIX) {
			uint32_t t = pci_read(slot, cap + 4, 4);

			d->msix_cap = cap;
			d->msix_n = (pci_read(slot, cap + 2, 2) & 0x7ff) + 1;
			d->msix_table = bars[t & 7] + (t & ~7u);
		} else if (id == CAP_VNDR) {
			unsigned t = pci_read(slot, cap + 3, 1), bar = pci_read(slot, cap + 4, 1);
			uint64_t addr = bar < 6 ? bars[bar] + pci_read(slot, cap + 8, 4) : 0;

			if (t == CFG_COMMON && !d->common) {
				d->common = addr;
			} else if (t == CFG_NOTIFY && !d->notify) {
				d->notify = addr;
				d->notify_mult = pci_read(slot, cap + 16, 4);
			} else if (t == CFG_ISR && !d->isr) {
				d->isr = addr;
			} else if (t == CFG_DEVICE && !d->device) {
				d->device = addr;
			}
		}
	}
	return d->common && d->notify && d->isr;
}

uint8_t virtio_status(struct vdev *d)
{
	return mr8(d->common + C_STATUS);
}

void virtio_reset(struct vdev *d)
{
	unsigned i;

	mw8(d->common + C_STATUS, 0);
	/* §4.1.4.3.2: wait until the device reads back 0 */
	for (i = 0; i < 1000000 && mr8(d->common + C_STATUS); i++) {
	}
}

bool virtio_negotiate(struct vdev *d, uint64_t want)
{
	uint64_t offered;

	virtio_reset(d);
	mw8(d->common + C_STATUS, 1);
	mw8(d->common + C_STATUS, 1 | 2);
	mw32(d->common + C_DFSEL, 0);
	offered = mr32(d->common + C_DF);
	mw32(d->common + C_DFSEL, 1);
	offered |= (uint64_t)mr32(d->common + C_DF) << 32;
	if (!(offered >> 32 & 1)) {
		print("virtio: device lacks VERSION_1\n");
		return false;
	}
	d->features = (want | 1ull << 32) & offered;
	mw32(d->common + C_GFSEL, 0);
	mw32(d->common + C_GF, (uint32_t)d->features);
	mw32(d->common + C_GFSEL, 1);
	mw32(d->common + C_GF, (uint32_t)(d->features >> 32));
	mw8(d->common + C_STATUS, 1 | 2 | 8);
	if (!(mr8(d->common + C_STATUS) & 8)) {
		print("virtio: FEATURES_OK refused\n");
		return false;
	}
	return true;
}

void virtio_msix_enable(struct vdev *d)
{
	unsigned i;
	uint64_t msg_addr = 0xfee00000ull | (uint64_t)apic_id() << 12;

	if (!d->msix_cap) {
		return;
	}
	for (i = 0; i < d->msix_n && i < 32; i++) {
		uint64_t e = d->msix_table + 16 * i;

		mw32(e + 0, (uint32_t)msg_addr);
		mw32(e + 4, 0);
		mw32(e + 8, 0x40 + i); /* fixed delivery, edge, vector 0x40+i */
		mw32(e + 12, 0);       /* unmasked */
	}
	pci_write(d->slot, d->msix_cap + 2, 0x8000, 2);
	mw16(d->common + C_MSIX, 0);
}

bool virtio_queue_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t size,
			unsigned vector)
{
	uint16_t max;

	memset(q, 0, sizeof(*q));
	mw16(d->common + C_QSEL, index);
	max = mr16(d->common + C_QSIZE);
	if (max == 0) {
		return false;
	}
	if (size > max) {
		size = max;
	}
	q->index = index;
	q->size = size;
	q->vector = vector;
	mw16(d->common + C_QSIZE, size);
	mw16(d->common + C_QMSIX, vector);
	if (d->msix_cap && mr16(d->common + C_QMSIX) != vector) {
		print("virtio: MSI-X vector not accepted\n");
		return false;
	}
	mw64(d->common + C_QDESC, (uint64_t)q->desc);
	mw64(d->common + C_QDRIVER, (uint64_t)&q->avail);
	mw64(d->common + C_QDEVICE, (uint64_t)&q->used);
	q->notify_addr = d->notify + (uint64_t)mr16(d->common + C_QNOFF) * d->notify_mult;
	mw16(d->common + C_QENABLE, 1);
	return mr16(d->common + C_QENABLE) == 1;
}

void virtio_driver_ok(struct vdev *d)
{
	mw8(d->common + C_STATUS, 1 | 2 | 8 | 4);
}

void vq_kick(struct vdev *d, struct vq *q, uint16_t head)
{
	(void)d;
	q->avail.ring[q->avail.idx % q->size] = head;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q->avail.idx++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	mw16(q->notify_addr, q->index);
}

bool vq_wait(struct vq *q, uint32_t *ret_id, uint32_t *ret_len, unsigned long spins)
{
	unsigned long i;

	for (i = 0; i < spins; i++) {
		if (*(volatile uint16_t *)&q->used.idx != q->last_used) {
			unsigned e = q->last_used % q->size;

			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (ret_id) {
				*ret_id = q->used.ring[e].id;
			}
			if (ret_len) {
				*ret_len = q->used.ring[e].len;
			}
			q->last_used++;
			return true;
		}
		__asm__ volatile("pause");
	}
	return false;
}

void lapic_enable(void)
{
	mmio_write32(LAPIC_BASE + 0x80, 0);	/* TPR: accept everything */
	mmio_write32(LAPIC_BASE + 0xf0, 0x1ff); /* SVR: software enable, spurious 0xff */
}

bool lapic_irr(unsigned vector)
{
	return mmio_read32(LAPIC_BASE + 0x200 + 0x10 * (vector / 32)) >> (vector % 32) & 1;
}
