/*
 * The PCI host bridge (440FX identity), its config decoders (0xCF8/0xCFC,
 * ECAM), BAR mapping, INTx and MSI-X. See pci.h for the layout.
 *
 * Threads: config cycles (vCPU threads) take host->lock; BAR handlers are
 * called by the I/O bus without it. Lock order: host->lock, then a device's
 * own lock (virtio-pci), then host->intx_lock (INTx state) or the device's
 * msix->lock (MSI-X state): I/O threads signalling interrupts with their
 * device lock held never wait for host->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "hw/device.h"
#include "common/vmstate.h"
#include "hw/pci/pci.h"

#define PCI_MSIX_TABLE_OFF 0x0
#define PCI_MSIX_BAR_SIZE 0x2000

#define PCI_FREE_RANGES 64

struct pci_free_space {
	struct {
		uint64_t base, end;
	} r[PCI_FREE_RANGES];
	unsigned n;
};

struct pci_host {
	struct vm *vm;
	struct iobus *bus;
	pthread_mutex_t lock;
	pthread_mutex_t intx_lock; /* intx_mask and devices' intx_level; taken after lock */
	uint32_t cf8;
	struct pci_device *slots[PCI_SLOTS];
	struct pci_device bridge;
	uint32_t intx_mask[4]; /* per GSI 16..19: slots asserting it */
	uint64_t mmio_next;
	uint32_t io_next;
	/*
	 * BAR space given back by removed devices (hotplug), reused first:
	 * without it add/remove cycles would exhaust the windows (e1000's I/O
	 * BAR: 16 KiB of I/O space last about 250 cycles). Under lock.
	 */
	struct pci_free_space mmio_free, io_free;
	uint64_t slot_bars[PCI_SLOTS][PCI_NUM_BARS]; /* what assign_bars gave each slot */
	bool cf8_registered, ecam_registered;
	struct ratelimit rl; /* messages about this VM's PCI devices */
	int next_slot;	     /* pci_host_set_next_slot(), -1 if none */
};

unsigned pci_intx_gsi(unsigned slot, unsigned pin)
{
	return PCI_INTX_GSI_BASE + ((slot + pin) & 3);
}

static void cfg_set(uint8_t *cfg, unsigned off, unsigned len, uint32_t v)
{
	unsigned i;

	for (i = 0; i < len; i++) {
		cfg[off + i] = v >> (8 * i);
	}
}

static uint32_t cfg_get(const uint8_t *cfg, unsigned off, unsigned len)
{
	uint32_t v = 0;
	unsigned i;

	for (i = 0; i < len; i++) {
		v |= (uint32_t)cfg[off + i] << (8 * i);
	}
	return v;
}

void pci_device_init(struct pci_device *dev, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		     uint16_t subsys_id)
{
	memset(dev, 0, sizeof(*dev));
	dev->name = name;
	dev->slot = -1;
	cfg_set(dev->config, PCI_VENDOR_ID, 2, vendor);
	cfg_set(dev->config, PCI_DEVICE_ID, 2, device);
	dev->config[PCI_REVISION_ID] = revision;
	cfg_set(dev->config, PCI_CLASS_PROG, 3, class_code);
	cfg_set(dev->config, PCI_SUBSYSTEM_VENDOR_ID, 2, subsys_vendor);
	cfg_set(dev->config, PCI_SUBSYSTEM_ID, 2, subsys_id);
	dev->config[PCI_INTERRUPT_PIN] = 1;
	/* command: I/O, memory, bus master, INTx disable */
	cfg_set(dev->wmask, PCI_COMMAND, 2, 0x0407);
	/* status: the error bits are write-one-to-clear */
	cfg_set(dev->w1cmask, PCI_STATUS, 2, 0xf900);
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	dev->wmask[0x0c] = 0xff; /* cache line size */
	dev->wmask[0x0d] = 0xff; /* latency timer */
	dev->next_cap = 0x40;
}

void pci_device_set_bar(struct pci_device *dev, unsigned idx, enum pci_bar_type type, uint64_t size,
			const struct iobus_ops *ops, void *opaque)
{
	struct pci_bar *b = &dev->bars[idx];
	unsigned off = PCI_BAR0 + 4 * idx;

	b->type = type;
	b->size = size;
	b->ops = ops;
	b->opaque = opaque;
	if (type == PCI_BAR_IO) {
		cfg_set(dev->config, off, 4, 1);
		cfg_set(dev->wmask, off, 4, ~(uint32_t)(size - 1) & ~3u);
	} else {
		cfg_set(dev->config, off, 4, 0);
		cfg_set(dev->wmask, off, 4, ~(uint32_t)(size - 1) & ~15u);
	}
}

uint8_t pci_add_capability(struct pci_device *dev, uint8_t id, uint8_t len)
{
	unsigned off = ALIGN_UP((unsigned)dev->next_cap, 4u);

	if ((unsigned)off + len > PCI_CONFIG_SIZE) {
		return 0;
	}
	dev->config[off] = id;
	dev->config[off + 1] = dev->config[PCI_CAPABILITY_LIST];
	dev->config[PCI_CAPABILITY_LIST] = off;
	dev->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	dev->next_cap = off + len;
	return off;
}

/* ---- BAR mapping ---- */

static uint64_t bar_addr(struct pci_device *dev, unsigned idx)
{
	uint32_t v = cfg_get(dev->config, PCI_BAR0 + 4 * idx, 4);

	return dev->bars[idx].type == PCI_BAR_IO ? (v & ~3u) : (v & ~15u);
}

static void bar_unmap(struct pci_device *dev, unsigned idx)
{
	struct pci_bar *b = &dev->bars[idx];

	if (!b->mapped) {
		return;
	}
	if (dev->ops && dev->ops->bar_remapped) {
		dev->ops->bar_remapped(dev, idx, false, b->mapped_addr);
	}
	iobus_unregister(dev->host->bus, b->type == PCI_BAR_IO ? IOBUS_PIO : IOBUS_MMIO,
			 b->mapped_addr);
	b->mapped = false;
}

/* Bring BAR @idx's mapping in line with its register and the command bits. */
static void bar_update(struct pci_device *dev, unsigned idx)
{
	struct pci_bar *b = &dev->bars[idx];
	uint16_t cmd = cfg_get(dev->config, PCI_COMMAND, 2);
	uint64_t addr = bar_addr(dev, idx);
	bool want;
	struct error *err = NULL;

	if (b->type == PCI_BAR_NONE || !dev->host) {
		return;
	}
	if (b->type == PCI_BAR_IO) {
		want = (cmd & PCI_COMMAND_IO) && addr != 0 && addr + b->size <= 0x10000;
	} else {
		/* a BAR that overlaps RAM or the system MMIO above the hole is not decoded */
		want = (cmd & PCI_COMMAND_MEMORY) && addr >= PCI_ECAM_BASE &&
		       addr + b->size <= PCI_MMIO32_END && addr != (~(b->size - 1) & 0xfffffff0u);
	}
	if (b->mapped && (!want || b->mapped_addr != addr)) {
		bar_unmap(dev, idx);
	}
	if (!want || b->mapped) {
		return;
	}
	if (iobus_register(dev->host->bus, b->type == PCI_BAR_IO ? IOBUS_PIO : IOBUS_MMIO, addr,
			   b->size, b->ops, b->opaque, dev->name, &err) < 0) {
		log_ratelimited(&dev->host->rl, LOG_WARNING, NULL, dev->name,
				"BAR%u at 0x%" PRIx64 " not mapped: %s", idx, addr, err->msg);
		error_free(err);
		return;
	}
	b->mapped = true;
	b->mapped_addr = addr;
	if (dev->ops && dev->ops->bar_remapped) {
		dev->ops->bar_remapped(dev, idx, true, addr);
	}
}

static void bars_update(struct pci_device *dev)
{
	unsigned i;

	for (i = 0; i < PCI_NUM_BARS; i++) {
		bar_update(dev, i);
	}
}

/* ---- INTx ---- */

/* Caller holds intx_lock. */
static void intx_apply(struct pci_host *h, struct pci_device *dev)
{
	unsigned line = (dev->slot + 0) & 3; /* pin A */
	uint16_t cmd = cfg_get(dev->config, PCI_COMMAND, 2);
	bool level = dev->intx_level && !(cmd & PCI_COMMAND_INTX_DISABLE);
	uint32_t old = h->intx_mask[line];

	/* the status bit shows the device's request even while INTx is disabled */
	if (dev->intx_level) {
		dev->config[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
	} else {
		dev->config[PCI_STATUS] &= ~PCI_STATUS_INTERRUPT;
	}
	if (level) {
		h->intx_mask[line] |= 1u << dev->slot;
	} else {
		h->intx_mask[line] &= ~(1u << dev->slot);
	}
	if (!old != !h->intx_mask[line] && h->vm) {
		vm_irq_set_level(h->vm, PCI_INTX_GSI_BASE + line, h->intx_mask[line] != 0);
	}
}

void pci_set_irq(struct pci_device *dev, bool level)
{
	struct pci_host *h = dev->host;

	if (!h || dev->slot < 0) {
		return;
	}
	pthread_mutex_lock(&h->intx_lock);
	dev->intx_level = level;
	intx_apply(h, dev);
	pthread_mutex_unlock(&h->intx_lock);
}

/* ---- MSI-X ---- */

static uint64_t msix_addr(const struct pci_msix_vector *v)
{
	return (uint64_t)v->addr_hi << 32 | v->addr_lo;
}

static void msix_fire(struct pci_device *dev, struct pci_msix_vector *v)
{
	static const uint64_t one = 1;

	if (v->fd >= 0 && v->gsi >= 0) {
		if (write(v->fd, &one, sizeof(one)) < 0) {
			log_ratelimited(&dev->host->rl, LOG_WARNING, NULL, dev->name,
					"MSI-X irqfd write failed");
		}
	} else if (dev->host && dev->host->vm) {
		vm_msi_signal(dev->host->vm, msix_addr(v), v->data);
	}
}

static bool msix_vec_masked(struct pci_msix *m, unsigned i)
{
	return m->masked || (m->vec[i].ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* Deliver pending vectors that are no longer masked. msix->lock held. */
static void msix_flush_pending(struct pci_device *dev)
{
	struct pci_msix *m = dev->msix;
	unsigned i;

	if (!m->enabled) {
		return;
	}
	for (i = 0; i < m->nvec; i++) {
		if ((m->pending[i / 64] >> (i % 64)) & 1 && !msix_vec_masked(m, i)) {
			m->pending[i / 64] &= ~(1ull << (i % 64));
			msix_fire(dev, &m->vec[i]);
		}
	}
}

static void msix_routes_release(struct pci_device *dev)
{
	struct pci_msix *m = dev->msix;
	unsigned i;

	for (i = 0; i < m->nvec; i++) {
		if (m->vec[i].gsi >= 0 && dev->host && dev->host->vm) {
			vm_msi_route_release(dev->host->vm, m->vec[i].gsi, m->vec[i].fd);
		}
		m->vec[i].gsi = -1;
	}
}

static void msix_routes_add(struct pci_device *dev)
{
	struct pci_msix *m = dev->msix;
	unsigned i;

	if (!dev->host || !dev->host->vm) {
		return;
	}
	for (i = 0; i < m->nvec; i++) {
		struct pci_msix_vector *v = &m->vec[i];
		int gsi;

		if (v->gsi >= 0 || v->fd < 0) {
			continue;
		}
		gsi = vm_msi_route_add(dev->host->vm, v->fd, msix_addr(v), v->data);
		v->gsi = gsi >= 0 ? gsi : -1; /* without a route, vectors use vm_msi_signal */
	}
}

void pci_msix_notify(struct pci_device *dev, unsigned vec)
{
	struct pci_msix *m = dev->msix;

	if (!m || vec >= m->nvec) {
		return;
	}
	pthread_mutex_lock(&m->lock);
	if (m->enabled) {
		if (msix_vec_masked(m, vec)) {
			m->pending[vec / 64] |= 1ull << (vec % 64);
		} else {
			msix_fire(dev, &m->vec[vec]);
		}
	}
	pthread_mutex_unlock(&m->lock);
}

bool pci_msix_enabled(struct pci_device *dev)
{
	bool on;

	if (!dev->msix) {
		return false;
	}
	pthread_mutex_lock(&dev->msix->lock);
	on = dev->msix->enabled;
	pthread_mutex_unlock(&dev->msix->lock);
	return on;
}

static uint64_t msix_bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_device *dev = opaque;
	struct pci_msix *m = dev->msix;
	uint64_t v = 0;
	unsigned i;

	if (size != 4 && size != 8) {
		return 0;
	}
	pthread_mutex_lock(&m->lock);
	for (i = 0; i < size; i += 4) {
		uint64_t o = off + i;
		uint32_t w = 0;

		if (o < PCI_MSIX_PBA_OFF) {
			unsigned idx = o / 16;

			if (idx < m->nvec && !(o & 3)) {
				const struct pci_msix_vector *e = &m->vec[idx];
				uint32_t f[4] = {e->addr_lo, e->addr_hi, e->data, e->ctrl};

				w = f[(o % 16) / 4];
			}
		} else if (o - PCI_MSIX_PBA_OFF < sizeof(m->pending) && !(o & 3)) {
			unsigned word = (o - PCI_MSIX_PBA_OFF) / 8;

			w = m->pending[word] >> (((o - PCI_MSIX_PBA_OFF) % 8) * 8);
		}
		v |= (uint64_t)w << (8 * i);
	}
	pthread_mutex_unlock(&m->lock);
	return v;
}

static void msix_bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct pci_device *dev = opaque;
	struct pci_msix *m = dev->msix;
	unsigned i;

	if (size != 4 && size != 8) {
		return;
	}
	pthread_mutex_lock(&m->lock);
	for (i = 0; i < size; i += 4) {
		uint64_t o = off + i;
		uint32_t w = val >> (8 * i);
		unsigned idx = o / 16;
		struct pci_msix_vector *e;

		if (o >= PCI_MSIX_PBA_OFF || idx >= m->nvec || (o & 3)) {
			continue; /* the PBA is read-only */
		}
		e = &m->vec[idx];
		switch ((o % 16) / 4) {
		case 0:
			e->addr_lo = w & ~3u;
			break;
		case 1:
			e->addr_hi = w;
			break;
		case 2:
			e->data = w;
			break;
		case 3:
			e->ctrl = w & PCI_MSIX_ENTRY_CTRL_MASKBIT;
			break;
		}
		if ((o % 16) / 4 < 3 && e->gsi >= 0 && dev->host && dev->host->vm) {
			vm_msi_route_update(dev->host->vm, e->gsi, msix_addr(e), e->data);
		}
	}
	msix_flush_pending(dev);
	pthread_mutex_unlock(&m->lock);
}

static const struct iobus_ops msix_bar_ops = {
	.read = msix_bar_read,
	.write = msix_bar_write,
};

uint64_t pci_msix_mmio_read(struct pci_device *dev, uint64_t off, unsigned size)
{
	return dev->msix ? msix_bar_read(dev, off, size) : 0;
}

void pci_msix_mmio_write(struct pci_device *dev, uint64_t off, uint64_t val, unsigned size)
{
	if (dev->msix) {
		msix_bar_write(dev, off, val, size);
	}
}

static int msix_setup(struct pci_device *dev, unsigned bar, uint32_t table_off, uint32_t pba_off,
		      unsigned nvec, struct error **errp);

int pci_msix_init(struct pci_device *dev, unsigned bar, unsigned nvec, struct error **errp)
{
	int r = msix_setup(dev, bar, PCI_MSIX_TABLE_OFF, PCI_MSIX_PBA_OFF, nvec, errp);

	if (r == 0) {
		pci_device_set_bar(dev, bar, PCI_BAR_MEM32, PCI_MSIX_BAR_SIZE, &msix_bar_ops, dev);
	}
	return r;
}

int pci_msix_init_shared(struct pci_device *dev, unsigned bar, uint32_t table_off, uint32_t pba_off,
			 unsigned nvec, struct error **errp)
{
	return msix_setup(dev, bar, table_off, pba_off, nvec, errp);
}

static int msix_setup(struct pci_device *dev, unsigned bar, uint32_t table_off, uint32_t pba_off,
		      unsigned nvec, struct error **errp)
{
	struct pci_msix *m;
	uint8_t cap;
	unsigned i;

	if (nvec == 0 || nvec > PCI_MSIX_MAX_VECTORS || bar >= PCI_NUM_BARS) {
		return error_set(errp, EINVAL, "%s: %u MSI-X vectors (limit %u)", dev->name, nvec,
				 PCI_MSIX_MAX_VECTORS);
	}
	cap = pci_add_capability(dev, PCI_CAP_ID_MSIX, 12);
	if (!cap) {
		return error_set(errp, ENOSPC, "%s: no room for the MSI-X capability", dev->name);
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&m->lock, NULL);
	m->nvec = nvec;
	m->bar = bar;
	m->cap = cap;
	for (i = 0; i < nvec; i++) {
		m->vec[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
		m->vec[i].gsi = -1;
		m->vec[i].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (m->vec[i].fd < 0) {
			int e = errno;

			while (i--) {
				close(m->vec[i].fd);
			}
			free(m);
			return error_set_errno(errp, e, "%s: eventfd for MSI-X", dev->name);
		}
	}
	cfg_set(dev->config, cap + 2, 2, nvec - 1);
	cfg_set(dev->wmask, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	cfg_set(dev->config, cap + 4, 4, table_off | bar);
	cfg_set(dev->config, cap + 8, 4, pba_off | bar);
	dev->msix = m;
	return 0;
}

static void msix_free(struct pci_device *dev)
{
	struct pci_msix *m = dev->msix;
	unsigned i;

	if (!m) {
		return;
	}
	msix_routes_release(dev);
	for (i = 0; i < m->nvec; i++) {
		if (m->vec[i].fd >= 0) {
			close(m->vec[i].fd);
		}
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
	dev->msix = NULL;
}

/* The control word changed: follow enable and function mask. Host lock held. */
static void msix_control_written(struct pci_device *dev)
{
	struct pci_msix *m = dev->msix;
	uint16_t ctl = cfg_get(dev->config, m->cap + 2, 2);
	bool en = ctl & PCI_MSIX_FLAGS_ENABLE, masked = ctl & PCI_MSIX_FLAGS_MASKALL;
	bool changed;

	pthread_mutex_lock(&m->lock);
	changed = en != m->enabled || masked != m->masked;
	if (en && !m->enabled) {
		msix_routes_add(dev);
	} else if (!en && m->enabled) {
		msix_routes_release(dev);
	}
	m->enabled = en;
	m->masked = masked;
	msix_flush_pending(dev);
	pthread_mutex_unlock(&m->lock);
	if (changed && dev->ops && dev->ops->msix_changed) {
		dev->ops->msix_changed(dev);
	}
}

/* ---- config space ---- */

static struct pci_device *find_dev(struct pci_host *h, unsigned bus, unsigned devfn)
{
	if (bus != 0 || (devfn & 7) != 0) {
		return NULL;
	}
	return h->slots[devfn >> 3];
}

int pci_host_find_slot(struct pci_host *h, const char *name)
{
	int slot = -ENOENT;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < PCI_SLOTS; i++) {
		if (h->slots[i] && h->slots[i]->name && strcmp(h->slots[i]->name, name) == 0) {
			slot = (int)i;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
	return slot;
}

bool pci_host_slot_info(struct pci_host *h, unsigned slot, struct pci_slot_info *ret)
{
	struct pci_device *d;

	if (slot >= PCI_SLOTS) {
		return false;
	}
	pthread_mutex_lock(&h->lock);
	d = h->slots[slot];
	if (d) {
		memset(ret, 0, sizeof(*ret));
		snprintf(ret->name, sizeof(ret->name), "%s",
			 d == &h->bridge || !d->name ? "" : d->name);
		memcpy(ret->config, d->config, sizeof(ret->config));
		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &d->bars[i];
			uint32_t v = (uint32_t)d->config[PCI_BAR0 + 4 * i] |
				     (uint32_t)d->config[PCI_BAR0 + 4 * i + 1] << 8 |
				     (uint32_t)d->config[PCI_BAR0 + 4 * i + 2] << 16 |
				     (uint32_t)d->config[PCI_BAR0 + 4 * i + 3] << 24;

			ret->bars[i].type = b->type;
			ret->bars[i].size = b->size;
			ret->bars[i].addr = b->mapped
						    ? b->mapped_addr
						    : (b->type == PCI_BAR_IO ? v & ~3u : v & ~15u);
		}
	}
	pthread_mutex_unlock(&h->lock);
	return d != NULL;
}

void pci_host_set_next_slot(struct pci_host *h, int slot)
{
	pthread_mutex_lock(&h->lock);
	h->next_slot = slot;
	pthread_mutex_unlock(&h->lock);
}

uint32_t pci_host_config_read(struct pci_host *h, unsigned bus, unsigned devfn, unsigned off,
			      unsigned len)
{
	struct pci_device *dev;
	uint32_t v;

	if (len != 1 && len != 2 && len != 4) {
		return ~0u;
	}
	pthread_mutex_lock(&h->lock);
	dev = find_dev(h, bus, devfn);
	if (!dev) {
		v = len == 4 ? ~0u : (1u << (8 * len)) - 1;
	} else if (off + len > PCI_CONFIG_SIZE) {
		v = 0; /* extended config space: no extended capabilities */
	} else {
		v = cfg_get(dev->config, off, len);
		if (dev->ops && dev->ops->config_read) {
			dev->ops->config_read(dev, off, len, &v);
		}
	}
	pthread_mutex_unlock(&h->lock);
	return v;
}

void pci_host_config_write(struct pci_host *h, unsigned bus, unsigned devfn, unsigned off,
			   unsigned len, uint32_t val)
{
	struct pci_device *dev;
	bool bars = false, cmd = false, msix = false;
	unsigned i;

	if ((len != 1 && len != 2 && len != 4) || off + len > PCI_CONFIG_SIZE) {
		return;
	}
	pthread_mutex_lock(&h->lock);
	dev = find_dev(h, bus, devfn);
	if (!dev) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	for (i = 0; i < len; i++) {
		unsigned o = off + i;
		uint8_t b = val >> (8 * i);
		uint8_t wm = dev->wmask[o], w1c = dev->w1cmask[o];

		dev->config[o] = (dev->config[o] & ~wm) | (b & wm);
		dev->config[o] &= ~(b & w1c);
		if (o >= PCI_BAR0 && o < PCI_BAR0 + 4 * PCI_NUM_BARS) {
			bars = true;
		}
		if (o == PCI_COMMAND || o == PCI_COMMAND + 1) {
			cmd = true;
		}
		if (dev->msix && (o == dev->msix->cap + 2u || o == dev->msix->cap + 3u)) {
			msix = true;
		}
	}
	if (bars || cmd) {
		bars_update(dev);
	}
	if (cmd) {
		pthread_mutex_lock(&h->intx_lock);
		intx_apply(h, dev);
		pthread_mutex_unlock(&h->intx_lock);
	}
	if (msix) {
		msix_control_written(dev);
	}
	if (dev->ops && dev->ops->config_write) {
		dev->ops->config_write(dev, off, len, val);
	}
	pthread_mutex_unlock(&h->lock);
}

/* 0xCF8..0xCFF: CONFIG_ADDRESS (dword at 0xCF8), reset control (byte at 0xCF9), CONFIG_DATA. */
static uint64_t cf8_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_host *h = opaque;
	uint32_t a;

	if (off == 0 && size == 4) {
		return h->cf8;
	}
	if (off < 4) {
		return off == 1 && size == 1 ? 0 : ~0ull;
	}
	a = h->cf8;
	if (!(a & 0x80000000u) || off - 4 + size > 4) {
		return (1ull << (8 * size)) - 1;
	}
	return pci_host_config_read(h, (a >> 16) & 0xff, (a >> 8) & 0xff, (a & 0xfc) + (off - 4),
				    size);
}

static void cf8_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct pci_host *h = opaque;
	uint32_t a;

	if (off == 0 && size == 4) {
		h->cf8 = val & 0x80fffffcu;
		return;
	}
	if (off == 1 && size == 1) {
		/* PIIX reset control: SYS_RST with RST_CPU requests a reset */
		if ((val & 0x04) && (val & 0x02) && h->vm) {
			vm_request(h->vm, VM_CAUSE_GUEST_RESET);
		}
		return;
	}
	if (off < 4) {
		return;
	}
	a = h->cf8;
	if (!(a & 0x80000000u) || off - 4 + size > 4) {
		return;
	}
	pci_host_config_write(h, (a >> 16) & 0xff, (a >> 8) & 0xff, (a & 0xfc) + (off - 4), size,
			      val);
}

static const struct iobus_ops cf8_ops = {
	.read = cf8_read,
	.write = cf8_write,
};

static bool ecam_decode(uint64_t off, unsigned size, unsigned *bus, unsigned *devfn, unsigned *reg)
{
	*bus = off >> 20;
	*devfn = (off >> 12) & 0xff;
	*reg = off & 0xfff;
	/* accesses must not cross a dword */
	return (size == 1 || size == 2 || size == 4) && ((*reg & 3) + size) <= 4;
}

static uint64_t ecam_read(void *opaque, uint64_t off, unsigned size)
{
	unsigned bus, devfn, reg;

	if (!ecam_decode(off, size, &bus, &devfn, &reg)) {
		return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
	}
	return pci_host_config_read(opaque, bus, devfn, reg, size);
}

static void ecam_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	unsigned bus, devfn, reg;

	if (!ecam_decode(off, size, &bus, &devfn, &reg)) {
		return;
	}
	pci_host_config_write(opaque, bus, devfn, reg, size, val);
}

static const struct iobus_ops ecam_ops = {
	.read = ecam_read,
	.write = ecam_write,
};

/* ---- devices ---- */

/* First fit of @size (a power of two) at its alignment in the freed ranges; 0 if none. */
static uint64_t free_take(struct pci_free_space *f, uint64_t size)
{
	for (unsigned i = 0; i < f->n; i++) {
		uint64_t base = f->r[i].base, end = f->r[i].end, a = ALIGN_UP(base, size);

		if (a < base || a + size > end) {
			continue;
		}
		/* keep what is left on either side (the tail only if there is room) */
		if (a > base) {
			f->r[i].end = a;
			if (a + size < end && f->n < PCI_FREE_RANGES) {
				f->r[f->n].base = a + size;
				f->r[f->n++].end = end;
			}
		} else if (a + size < end) {
			f->r[i].base = a + size;
		} else {
			f->r[i] = f->r[--f->n];
		}
		return a;
	}
	return 0;
}

/*
 * Give [base, base + size) back: merged with its neighbours, or returned to
 * the bump pointer *@next when it ends there. A range that fits nowhere
 * (more than PCI_FREE_RANGES fragments) is dropped: space lost, never reused twice.
 */
static void free_give(struct pci_free_space *f, uint64_t *next, uint64_t base, uint64_t size)
{
	uint64_t end = base + size;
	bool merged = true;

	while (merged) {
		merged = false;
		for (unsigned i = 0; i < f->n; i++) {
			if (f->r[i].end == base || f->r[i].base == end) {
				base = MIN(base, f->r[i].base);
				end = MAX(end, f->r[i].end);
				f->r[i] = f->r[--f->n];
				merged = true;
				break;
			}
		}
	}
	if (end == *next) {
		*next = base;
	} else if (f->n < PCI_FREE_RANGES) {
		f->r[f->n].base = base;
		f->r[f->n++].end = end;
	}
}

static void release_bars(struct pci_host *h, const struct pci_device *dev, const uint64_t *addrs)
{
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *b = &dev->bars[i];
		uint64_t io_next = h->io_next;

		if (!addrs[i]) {
			continue;
		}
		if (b->type == PCI_BAR_MEM32) {
			free_give(&h->mmio_free, &h->mmio_next, addrs[i], b->size);
		} else if (b->type == PCI_BAR_IO) {
			free_give(&h->io_free, &io_next, addrs[i], b->size);
			h->io_next = (uint32_t)io_next;
		}
	}
}

/* Pre-assign @dev's BARs (freed space first); their addresses go to @addrs (0: none). */
static int assign_bars(struct pci_host *h, struct pci_device *dev, uint64_t *addrs,
		       struct error **errp)
{
	unsigned i;

	memset(addrs, 0, PCI_NUM_BARS * sizeof(addrs[0]));
	for (i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &dev->bars[i];
		uint64_t a;

		if (b->type == PCI_BAR_MEM32) {
			a = free_take(&h->mmio_free, b->size);
			if (!a) {
				a = ALIGN_UP(h->mmio_next, b->size);
				if (a + b->size > PCI_MMIO32_END) {
					release_bars(h, dev, addrs);
					return error_set(errp, ENOSPC,
							 "%s: PCI memory window is full",
							 dev->name);
				}
				h->mmio_next = a + b->size;
			}
		} else if (b->type == PCI_BAR_IO) {
			a = free_take(&h->io_free, b->size);
			if (!a) {
				a = ALIGN_UP(h->io_next, b->size);
				if (a + b->size > PCI_IO_END) {
					release_bars(h, dev, addrs);
					return error_set(errp, ENOSPC, "%s: PCI I/O window is full",
							 dev->name);
				}
				h->io_next = (uint32_t)(a + b->size);
			}
		} else {
			continue;
		}
		addrs[i] = a;
		cfg_set(dev->config, PCI_BAR0 + 4 * i, 4,
			(uint32_t)a | (b->type == PCI_BAR_IO ? 1 : 0));
	}
	return 0;
}

int pci_register_device(struct pci_host *h, struct pci_device *dev, int slot, struct error **errp)
{
	int r;

	pthread_mutex_lock(&h->lock);
	if (slot < 0 && h->next_slot >= 0) {
		slot = h->next_slot;
		h->next_slot = -1;
	}
	if (slot < 0) {
		for (slot = 1; slot < PCI_SLOTS && h->slots[slot]; slot++) {
		}
		if (slot == PCI_SLOTS) {
			pthread_mutex_unlock(&h->lock);
			return error_set(errp, ENOSPC, "%s: all %d PCI slots are in use", dev->name,
					 PCI_SLOTS);
		}
	} else if (slot >= PCI_SLOTS || h->slots[slot]) {
		pthread_mutex_unlock(&h->lock);
		return error_set(errp, EBUSY, "%s: PCI slot %d is %s", dev->name, slot,
				 slot >= PCI_SLOTS ? "out of range" : "in use");
	}
	r = assign_bars(h, dev, h->slot_bars[slot], errp);
	if (r < 0) {
		pthread_mutex_unlock(&h->lock);
		return r;
	}
	dev->host = h;
	dev->slot = slot;
	dev->config[PCI_INTERRUPT_LINE] = pci_intx_gsi(slot, 0);
	h->slots[slot] = dev;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void pci_unregister_device(struct pci_device *dev)
{
	struct pci_host *h = dev->host;
	unsigned i;

	if (!h || dev->slot < 0) {
		msix_free(dev);
		return;
	}
	pthread_mutex_lock(&h->lock);
	for (i = 0; i < PCI_NUM_BARS; i++) {
		bar_unmap(dev, i);
	}
	pthread_mutex_lock(&h->intx_lock);
	dev->intx_level = false;
	intx_apply(h, dev);
	pthread_mutex_unlock(&h->intx_lock);
	h->slots[dev->slot] = NULL;
	release_bars(h, dev, h->slot_bars[dev->slot]);
	memset(h->slot_bars[dev->slot], 0, sizeof(h->slot_bars[dev->slot]));
	pthread_mutex_unlock(&h->lock);
	msix_free(dev);
	dev->slot = -1;
	dev->host = NULL;
}

void pci_device_reset(struct pci_device *dev)
{
	struct pci_host *h = dev->host;
	unsigned i;

	if (!h) {
		return;
	}
	pthread_mutex_lock(&h->lock);
	cfg_set(dev->config, PCI_COMMAND, 2, 0);
	dev->config[PCI_STATUS + 1] = 0;
	bars_update(dev);
	pthread_mutex_lock(&h->intx_lock);
	dev->intx_level = false;
	intx_apply(h, dev);
	pthread_mutex_unlock(&h->intx_lock);
	if (dev->msix) {
		struct pci_msix *m = dev->msix;

		cfg_set(dev->config, m->cap + 2, 2, m->nvec - 1);
		pthread_mutex_lock(&m->lock);
		msix_routes_release(dev);
		m->enabled = m->masked = false;
		memset(m->pending, 0, sizeof(m->pending));
		for (i = 0; i < m->nvec; i++) {
			m->vec[i].addr_lo = m->vec[i].addr_hi = m->vec[i].data = 0;
			m->vec[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
		}
		pthread_mutex_unlock(&m->lock);
	}
	pthread_mutex_unlock(&h->lock);
}

/* ---- the host ---- */

int pci_host_new(struct vm *vm, struct iobus *bus, struct pci_host **ret, struct error **errp)
{
	struct pci_host *h = calloc(1, sizeof(*h));
	int r;

	if (!h) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	h->vm = vm;
	h->rl = (struct ratelimit)RATELIMIT_INIT(5000000, 5);
	h->bus = bus;
	h->mmio_next = PCI_MMIO32_BASE;
	h->io_next = PCI_IO_BASE;
	h->next_slot = -1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->intx_lock, NULL);
	/* 00:00.0 Intel 440FX host bridge */
	pci_device_init(&h->bridge, "i440fx", 0x8086, 0x1237, 0x060000, 0x02, 0x1af4, 0x1100);
	h->bridge.config[PCI_INTERRUPT_PIN] = 0;
	/* chipset registers firmware programs (PAM, SMRAM, ...) keep what is written */
	memset(h->bridge.wmask + 0x40, 0xff, PCI_CONFIG_SIZE - 0x40);
	h->bridge.host = h;
	h->bridge.slot = 0;
	h->slots[0] = &h->bridge;
	r = iobus_register(bus, IOBUS_PIO, 0xCF8, 8, &cf8_ops, h, "pci-cf8", errp);
	if (r < 0) {
		goto err_free;
	}
	h->cf8_registered = true;
	r = iobus_register(bus, IOBUS_MMIO, PCI_ECAM_BASE, PCI_ECAM_SIZE, &ecam_ops, h, "pci-ecam",
			   errp);
	if (r < 0) {
		goto err_cf8;
	}
	h->ecam_registered = true;
	*ret = h;
	return 0;
err_cf8:
	iobus_unregister(bus, IOBUS_PIO, 0xCF8);
err_free:
	pthread_mutex_destroy(&h->intx_lock);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return r;
}

struct vm *pci_host_vm(struct pci_host *h)
{
	return h->vm;
}

void pci_host_free(struct pci_host *h)
{
	if (!h) {
		return;
	}
	if (h->ecam_registered) {
		iobus_unregister(h->bus, IOBUS_MMIO, PCI_ECAM_BASE);
	}
	if (h->cf8_registered) {
		iobus_unregister(h->bus, IOBUS_PIO, 0xCF8);
	}
	pthread_mutex_destroy(&h->intx_lock);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* ---- save/restore ---- */

void pci_device_save(struct pci_device *dev, struct vmstate_buf *out)
{
	struct pci_host *h = dev->host;
	struct pci_msix *m = dev->msix;

	pthread_mutex_lock(&h->lock);
	vmstate_put_bytes(out, dev->config, PCI_CONFIG_SIZE);
	pthread_mutex_lock(&h->intx_lock);
	vmstate_put_bool(out, dev->intx_level);
	pthread_mutex_unlock(&h->intx_lock);
	vmstate_put_u32(out, m ? m->nvec : 0);
	if (m) {
		pthread_mutex_lock(&m->lock);
		for (unsigned i = 0; i < m->nvec; i++) {
			vmstate_put_u32(out, m->vec[i].addr_lo);
			vmstate_put_u32(out, m->vec[i].addr_hi);
			vmstate_put_u32(out, m->vec[i].data);
			vmstate_put_u32(out, m->vec[i].ctrl);
		}
		for (unsigned i = 0; i < ARRAY_SIZE(m->pending); i++) {
			vmstate_put_u64(out, m->pending[i]);
		}
		pthread_mutex_unlock(&m->lock);
	}
	pthread_mutex_unlock(&h->lock);
}

int pci_device_load(struct pci_device *dev, struct vmstate_buf *in, struct error **errp)
{
	struct pci_host *h = dev->host;
	struct pci_msix *m = dev->msix;
	uint8_t cfg[PCI_CONFIG_SIZE];
	uint32_t vec[PCI_MSIX_MAX_VECTORS][4];
	uint64_t pending[PCI_MSIX_MAX_VECTORS / 64] = {0};
	uint32_t nvec;
	bool intx;

	vmstate_get_bytes(in, cfg, sizeof(cfg));
	intx = vmstate_get_bool(in);
	nvec = vmstate_get_u32(in);
	if (nvec != (m ? m->nvec : 0)) {
		return error_set(errp, EINVAL,
				 "%s: the snapshot has %u MSI-X vectors, the device %u", dev->name,
				 nvec, m ? m->nvec : 0);
	}
	for (unsigned i = 0; i < nvec; i++) {
		for (unsigned j = 0; j < 4; j++) {
			vec[i][j] = vmstate_get_u32(in);
		}
	}
	if (m) {
		for (unsigned i = 0; i < ARRAY_SIZE(pending); i++) {
			pending[i] = vmstate_get_u64(in);
		}
	}
	if (in->failed) {
		return error_set(errp, EINVAL, "%s: PCI state is truncated", dev->name);
	}
	pthread_mutex_lock(&h->lock);
	/* Only what the guest can write: identity and read-only bits stay the device's. */
	for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++) {
		uint8_t w = dev->wmask[i] | dev->w1cmask[i];

		dev->config[i] = (uint8_t)((dev->config[i] & ~w) | (cfg[i] & w));
	}
	bars_update(dev);
	pthread_mutex_lock(&h->intx_lock);
	dev->intx_level = intx;
	intx_apply(h, dev);
	pthread_mutex_unlock(&h->intx_lock);
	if (m) {
		pthread_mutex_lock(&m->lock);
		for (unsigned i = 0; i < nvec; i++) {
			m->vec[i].addr_lo = vec[i][0] & ~3u;
			m->vec[i].addr_hi = vec[i][1];
			m->vec[i].data = vec[i][2];
			m->vec[i].ctrl = vec[i][3] & PCI_MSIX_ENTRY_CTRL_MASKBIT;
		}
		memcpy(m->pending, pending, sizeof(m->pending));
		pthread_mutex_unlock(&m->lock);
		/* The control word in config decides enable and mask: routes follow. */
		msix_control_written(dev);
	}
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void pci_host_save(struct pci_host *h, struct vmstate_buf *out)
{
	pthread_mutex_lock(&h->lock);
	vmstate_put_u32(out, h->cf8);
	pthread_mutex_unlock(&h->lock);
	pci_device_save(&h->bridge, out);
}

int pci_host_load(struct pci_host *h, struct vmstate_buf *in, struct error **errp)
{
	uint32_t cf8 = vmstate_get_u32(in);
	int r;

	r = pci_device_load(&h->bridge, in, errp);
	if (r < 0) {
		return r;
	}
	pthread_mutex_lock(&h->lock);
	h->cf8 = cf8;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

/* QEMU's PciRegion list of @dev's BARs (config space as the guest set it). */
static json_t *pci_regions(struct pci_device *dev)
{
	json_t *list = json_array();

	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *b = &dev->bars[i];
		uint64_t addr = b->mapped ? b->mapped_addr : UINT64_MAX;

		if (b->type == PCI_BAR_NONE) {
			continue;
		}
		if (b->type == PCI_BAR_IO) {
			json_array_append_new(list,
					      json_pack("{s:i, s:s, s:I, s:I}", "bar", (int)i,
							"type", "io", "address", (json_int_t)addr,
							"size", (json_int_t)b->size));
		} else {
			json_array_append_new(list, json_pack("{s:i, s:s, s:I, s:I, s:b, s:b}",
							      "bar", (int)i, "type", "memory",
							      "address", (json_int_t)addr, "size",
							      (json_int_t)b->size, "prefetch", 0,
							      "mem_type_64", 0));
		}
	}
	return list;
}

/* QEMU's class_info desc for the classes vmmd's devices have (pci_class_descriptions). */
static const char *pci_class_desc(unsigned cls)
{
	static const struct {
		unsigned cls;
		const char *desc;
	} t[] = {
		{0x0100, "SCSI controller"},	 {0x0101, "IDE controller"},
		{0x0106, "SATA controller"},	 {0x0180, "Storage controller"},
		{0x0200, "Ethernet controller"}, {0x0280, "Network controller"},
		{0x0300, "VGA controller"},	 {0x0600, "Host bridge"},
		{0x0601, "ISA bridge"},		 {0x0680, "Bridge"},
		{0x0c03, "USB controller"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		if (t[i].cls == cls) {
			return t[i].desc;
		}
	}
	return NULL;
}

static json_t *pci_device_info(struct pci_device *dev, unsigned slot)
{
	const uint8_t *c = dev->config;
	json_t *d = json_pack("{s:i, s:i, s:i, s:{s:i}, s:{s:i, s:i, s:i, s:i}, s:s, s:o}", "bus",
			      0, "slot", (int)slot, "function", 0, "class_info", "class",
			      (int)cfg_get(c, PCI_CLASS_DEVICE, 2), "id", "device",
			      (int)cfg_get(c, PCI_DEVICE_ID, 2), "vendor",
			      (int)cfg_get(c, PCI_VENDOR_ID, 2), "subsystem",
			      (int)cfg_get(c, PCI_SUBSYSTEM_ID, 2), "subsystem-vendor",
			      (int)cfg_get(c, PCI_SUBSYSTEM_VENDOR_ID, 2), "qdev_id",
			      slot == 0	  ? ""
			      : dev->name ? dev->name
					  : "",
			      "regions", pci_regions(dev));

	/* As QEMU 7.2 (tests/functional/hotplug/qemu-7.2.json): irq_pin always, irq with a pin. */
	if (d) {
		const char *desc = pci_class_desc((unsigned)cfg_get(c, PCI_CLASS_DEVICE, 2));

		json_object_set_new(d, "irq_pin", json_integer(c[PCI_INTERRUPT_PIN]));
		if (desc) {
			json_object_set_new(json_object_get(d, "class_info"), "desc",
					    json_string(desc));
		}
	}
	if (d && c[PCI_INTERRUPT_PIN]) {
		json_object_set_new(d, "irq", json_integer(c[PCI_INTERRUPT_LINE]));
	}
	return d;
}

json_t *pci_host_query(struct pci_host *h)
{
	json_t *devs = json_array();

	pthread_mutex_lock(&h->lock);
	json_array_append_new(devs, pci_device_info(&h->bridge, 0));
	for (unsigned s = 1; s < PCI_SLOTS; s++) {
		if (h->slots[s] && h->slots[s] != &h->bridge) {
			json_array_append_new(devs, pci_device_info(h->slots[s], s));
		}
	}
	pthread_mutex_unlock(&h->lock);
	return json_pack("[{s:i, s:o}]", "bus", 0, "devices", devs);
}
