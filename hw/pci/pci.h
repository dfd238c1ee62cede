/*
 * PCI: one host bridge on bus 0 presenting as an Intel 440FX (8086:1237) so
 * firmware (SeaBIOS) recognises the chipset, configuration through ports
 * 0xCF8/0xCFC and through ECAM (MMCONFIG, described by ACPI MCFG), 32 slots
 * with function 0 each, BAR sizing and mapping onto the I/O bus, INTx routed
 * to IOAPIC GSIs 16..19 (the ACPI _PRT and MP table say so), and MSI-X
 * (capability, table and PBA, vectors delivered through irqfds).
 *
 * Guest physical layout of the 32-bit hole (GUEST_MEM_HOLE_START..4 GiB):
 *   [PCI_ECAM_BASE, +256 MiB)          ECAM for buses 0..255 (only bus 0 populated)
 *   [PCI_MMIO32_BASE, PCI_MMIO32_END)  memory BARs (pre-assigned from the bottom,
 *                                      firmware may reassign anywhere in it)
 *   0xFEC00000 IOAPIC, 0xFEE00000 LAPIC
 * I/O BARs live in [PCI_IO_BASE, 0x10000).
 *
 * Port 0xCF9 (PIIX reset control) belongs to the same decoder as 0xCF8:
 * writing 0x06 or 0x0E to it resets the VM.
 *
 * Threads: config accesses arrive on vCPU threads and are serialized by the
 * host's lock; BAR (un)mapping happens under it. pci_set_irq() and
 * pci_msix_notify() may be called from any VM thread (I/O threads).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "hw/device.h"

struct vm;
struct pci_host;

#define PCI_SLOTS 32
#define PCI_ECAM_BASE 0xC0000000ull
#define PCI_ECAM_SIZE 0x10000000ull
#define PCI_MMIO32_BASE 0xD0000000ull
#define PCI_MMIO32_END 0xFEC00000ull
#define PCI_IO_BASE 0xC000u
#define PCI_IO_END 0x10000u
#define PCI_INTX_GSI_BASE 16u

/* Config space registers and bits used across hw/. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS 0x06
#define PCI_STATUS_INTERRUPT 0x08
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CLASS_DEVICE 0x0a
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 1u

#define PCI_NUM_BARS 6
#define PCI_CONFIG_SIZE 256
#define PCI_MSIX_MAX_VECTORS 128

struct pci_device;

enum pci_bar_type {
	PCI_BAR_NONE = 0,
	PCI_BAR_MEM32,
	PCI_BAR_IO,
};

struct pci_bar {
	enum pci_bar_type type;
	uint64_t size; /* power of two; >= 16 for memory, >= 4 for I/O */
	const struct iobus_ops *ops;
	void *opaque;
	uint64_t mapped_addr; /* valid when mapped */
	bool mapped;
};

struct pci_msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl;
	int fd;	 /* irqfd eventfd, -1 if none */
	int gsi; /* KVM route, -1 if none */
};

struct pci_msix {
	pthread_mutex_t lock; /* table, pending bits, enable/mask state */
	unsigned nvec;
	unsigned bar;
	uint8_t cap;
	bool enabled, masked;
	struct pci_msix_vector vec[PCI_MSIX_MAX_VECTORS];
	uint64_t pending[PCI_MSIX_MAX_VECTORS / 64];
};

struct pci_device_ops {
	/*
	 * A BAR was mapped at @addr (@mapped) or unmapped. vCPU thread, host
	 * lock held. May be NULL. (virtio-pci moves its ioeventfds here.)
	 */
	void (*bar_remapped)(struct pci_device *dev, unsigned bar, bool mapped, uint64_t addr);
	/*
	 * Config space read/write hooks for device-specific registers at
	 * [off, off+len) (after the generic handling of a write). May be NULL.
	 */
	void (*config_read)(struct pci_device *dev, unsigned off, unsigned len, uint32_t *val);
	void (*config_write)(struct pci_device *dev, unsigned off, unsigned len, uint32_t val);
	/* MSI-X was enabled/disabled or masked as a whole. May be NULL. */
	void (*msix_changed)(struct pci_device *dev);
};

struct pci_device {
	const char *name;
	struct pci_host *host;
	int slot; /* -1 until registered */
	uint8_t config[PCI_CONFIG_SIZE];
	uint8_t wmask[PCI_CONFIG_SIZE];
	uint8_t w1cmask[PCI_CONFIG_SIZE];
	struct pci_bar bars[PCI_NUM_BARS];
	const struct pci_device_ops *ops;
	void *opaque;
	unsigned next_cap; /* where pci_add_capability puts the next one */
	bool intx_level;
	struct pci_msix *msix;
};

/*
 * Fill the identity of a type-0 function. Registers vendor/device/class,
 * the subsystem ids and interrupt pin A. The caller adds BARs and
 * capabilities, then registers the device.
 */
void pci_device_init(struct pci_device *dev, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		     uint16_t subsys_id);
/* Describe BAR @idx (before pci_register_device). */
void pci_device_set_bar(struct pci_device *dev, unsigned idx, enum pci_bar_type type, uint64_t size,
			const struct iobus_ops *ops, void *opaque);
/* Reserve @len bytes for a capability with id @id; returns its offset, or 0 if full. */
uint8_t pci_add_capability(struct pci_device *dev, uint8_t id, uint8_t len);
/*
 * Add an MSI-X capability with @nvec vectors whose table (offset 0) and PBA
 * (offset 0x1000) occupy memory BAR @bar, which this call sets up (size
 * 0x2000). One eventfd per vector is bound as an irqfd while MSI-X is on.
 */
int pci_msix_init(struct pci_device *dev, unsigned bar, unsigned nvec, struct error **errp);
/*
 * MSI-X whose table (at @table_off) and PBA (at @pba_off, both 8-byte
 * aligned) live inside memory BAR @bar that the device itself sets up, as
 * QEMU's xHCI has them. The device forwards accesses to those ranges to
 * pci_msix_mmio_read/write with @off relative to the table, or to
 * PCI_MSIX_PBA_OFF plus the offset into the PBA.
 */
int pci_msix_init_shared(struct pci_device *dev, unsigned bar, uint32_t table_off, uint32_t pba_off,
			 unsigned nvec, struct error **errp);
#define PCI_MSIX_PBA_OFF 0x1000
uint64_t pci_msix_mmio_read(struct pci_device *dev, uint64_t off, unsigned size);
void pci_msix_mmio_write(struct pci_device *dev, uint64_t off, uint64_t val, unsigned size);

/*
 * Put @dev into slot @slot (or the first free slot when @slot < 0), assign
 * its BARs an address in the host windows (as firmware would), and make it
 * visible to config cycles. -EBUSY if the slot is taken, -ENOSPC if none is
 * free.
 */
int pci_register_device(struct pci_host *host, struct pci_device *dev, int slot,
			struct error **errp);
/* Hide the device, unmap its BARs, release MSI-X routes. vCPUs stopped or paused. */
void pci_unregister_device(struct pci_device *dev);
/* Back to power-on config state (BARs keep their firmware-less assignment). */
void pci_device_reset(struct pci_device *dev);

/*
 * Save/restore of a function's guest-visible PCI state (docs/vmstate.md):
 * the writable config bytes, the INTx level, the MSI-X table and pending
 * bits. pci_device_load applies it to a registered device in its reset
 * state, then maps the BARs and MSI-X routes as the config says. Neither
 * may be called with the device's own lock held (BAR moves call its ops).
 */
struct vmstate_buf;
void pci_device_save(struct pci_device *dev, struct vmstate_buf *out);
int pci_device_load(struct pci_device *dev, struct vmstate_buf *in, struct error **errp);
/* The host's own state: the CF8 address latch and the host bridge's config. */
void pci_host_save(struct pci_host *host, struct vmstate_buf *out);
int pci_host_load(struct pci_host *host, struct vmstate_buf *in, struct error **errp);

/* Drive INTx (pin A) of @dev. Any VM thread. */
void pci_set_irq(struct pci_device *dev, bool level);
/* Signal MSI-X vector @vec (pending if masked). Any VM thread. */
void pci_msix_notify(struct pci_device *dev, unsigned vec);
bool pci_msix_enabled(struct pci_device *dev);

/* The GSI slot @slot's INTA..INTD (@pin 0..3) is wired to. */
unsigned pci_intx_gsi(unsigned slot, unsigned pin);

/* The VM's PCI host, created by the pci host device class (first in hw/devices.c). */
struct pci_host *pci_host_of(struct vm *vm);

/* The slot of the device registered under @name (its id), or -ENOENT. */
int pci_host_find_slot(struct pci_host *host, const char *name);

/* A copy of what a slot holds, for query-pci and hotplug messages. */
struct pci_slot_info {
	char name[64]; /* the device's id ("" for the bridge) */
	uint8_t config[64];
	struct {
		enum pci_bar_type type;
		uint64_t size, addr; /* addr: where it is mapped, else what the BAR holds */
	} bars[PCI_NUM_BARS];
};
/* Fill @ret with the device in @slot; false if the slot is empty. */
bool pci_host_slot_info(struct pci_host *host, unsigned slot, struct pci_slot_info *ret);
/*
 * Make the next pci_register_device(host, dev, -1, ...) use @slot (device_add
 * with "addr"); -1 cancels. Control thread, vCPUs paused.
 */
void pci_host_set_next_slot(struct pci_host *host, int slot);

/* Config access as the CF8/CFC and ECAM decoders perform it (exposed for tests). */
uint32_t pci_host_config_read(struct pci_host *host, unsigned bus, unsigned devfn, unsigned off,
			      unsigned len);
void pci_host_config_write(struct pci_host *host, unsigned bus, unsigned devfn, unsigned off,
			   unsigned len, uint32_t val);

/*
 * A host not tied to a VM's device table (unit tests, and the device class
 * below): registers CF8/CFC and ECAM on @bus; @vm (may be NULL in tests)
 * receives interrupts.
 */
int pci_host_new(struct vm *vm, struct iobus *bus, struct pci_host **ret, struct error **errp);
void pci_host_free(struct pci_host *host);
/* The VM @host belongs to. */
struct vm *pci_host_vm(struct pci_host *host);
/* query-pci: QEMU's PciInfo list (bus 0 and its functions); new reference. Control thread. */
json_t *pci_host_query(struct pci_host *host);
