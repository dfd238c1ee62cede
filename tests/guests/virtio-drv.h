/*
 * A minimal virtio 1.x PCI driver for the test guests, written from the
 * virtio specification (§4.1 PCI transport, §2.7 split virtqueues) and the
 * PCI local bus / PCIe ECAM conventions, not from vmmd's device code:
 * configuration through 0xCF8/0xCFC or ECAM (found via ACPI MCFG), BAR
 * sizing, capability walk, feature negotiation, queues with MSI-X vectors
 * whose delivery is observed in the local APIC's IRR (the guests run with
 * interrupts disabled and poll the used rings).
 *
 * Single CPU, identity-mapped memory, no allocator: rings and buffers live
 * in static arrays.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define VQ_SIZE 64

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

#define VQ_F_NEXT 1
#define VQ_F_WRITE 2
#define VQ_F_INDIRECT 4

struct vq {
	struct vq_desc desc[VQ_SIZE] __attribute__((aligned(16)));
	struct {
		uint16_t flags, idx, ring[VQ_SIZE], used_event;
	} avail __attribute__((aligned(2)));
	struct {
		uint16_t flags, idx;
		struct {
			uint32_t id, len;
		} ring[VQ_SIZE];
		uint16_t avail_event;
	} used __attribute__((aligned(4)));
	uint16_t index;
	uint16_t size;
	uint16_t last_used;
	uint64_t notify_addr;
	unsigned vector; /* MSI-X table entry, APIC vector = 0x40 + entry */
};

struct vdev {
	unsigned slot;
	uint16_t device_id; /* virtio device type */
	uint64_t common, isr, device, notify;
	uint32_t notify_mult;
	unsigned msix_cap;
	uint64_t msix_table;
	unsigned msix_n;
	uint64_t features;
};

/* Config access. ECAM is used when pci_use_ecam() found it in MCFG. */
uint32_t pci_read(unsigned slot, unsigned off, unsigned size);
void pci_write(unsigned slot, unsigned off, uint32_t v, unsigned size);
/*
 * Size memory BAR @i of @slot and give it an address if it has none (any
 * PCI device, not only virtio); *ret_is64 says the next BAR is its upper half.
 */
uint64_t pci_bar_assign(unsigned slot, unsigned i, bool *ret_is64);
/* Look for MCFG through the RSDP; returns the ECAM base or 0. */
uint64_t pci_find_ecam(void);
void pci_use_ecam(uint64_t base);
/* True if @base decodes as ECAM (the host bridge's id matches CF8/CFC's). */
bool pci_probe_ecam(uint64_t base);
/* Compare a register as seen through CF8/CFC and ECAM; true if equal. */
bool pci_cross_check(unsigned slot, unsigned off);

uint8_t mr8(uint64_t a);
uint16_t mr16(uint64_t a);
uint32_t mr32(uint64_t a);
uint64_t mr64(uint64_t a);
void mw8(uint64_t a, uint8_t v);
void mw16(uint64_t a, uint16_t v);
void mw32(uint64_t a, uint32_t v);
void mw64(uint64_t a, uint64_t v);

/*
 * Find the @nth (0-based) virtio device of type @type; size its BARs and
 * assign any the firmware left unassigned; walk the capabilities. Prints
 * what it finds. false if absent.
 */
bool virtio_find(uint16_t type, unsigned nth, struct vdev *d);
/* Reset, ACKNOWLEDGE|DRIVER, negotiate @want & offered (VERSION_1 always). */
bool virtio_negotiate(struct vdev *d, uint64_t want);
/* Enable MSI-X with every vector unmasked (vector i -> APIC vector 0x40+i). */
void virtio_msix_enable(struct vdev *d);
/* Set up queue @index with @size entries on @q, MSI-X vector @vector. */
bool virtio_queue_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t size,
			unsigned vector);
void virtio_driver_ok(struct vdev *d);
uint8_t virtio_status(struct vdev *d);
void virtio_reset(struct vdev *d);

/* Make chain @head available and notify. */
void vq_kick(struct vdev *d, struct vq *q, uint16_t head);
/* Wait for a used entry (up to ~@spins polls); its id and len. false on timeout. */
bool vq_wait(struct vq *q, uint32_t *ret_id, uint32_t *ret_len, unsigned long spins);

/* The local APIC, software-enabled so MSIs land in IRR. */
void lapic_enable(void);
bool lapic_irr(unsigned vector);

uint32_t crc32(const void *buf, unsigned long len, uint32_t crc);
void *memset(void *s, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
