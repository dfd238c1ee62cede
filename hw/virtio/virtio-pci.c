/*
 * Modern virtio-pci transport (virtio 1.x §4.1), implementing
 * hw/virtio/virtio.h (struct virtio_dev is this file's): the capability list, the
 * common configuration registers and the device status state machine,
 * queue set-up, ISR, notifications (ioeventfd -> I/O thread) and
 * interrupts (MSI-X irqfds, or INTx with the ISR byte).
 *
 * Threads: see virtio.h. Lock order: PCI host lock, then vp->lock,
 * then the PCI INTx/MSI-X locks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "hw/device.h"
#include "common/vmstate.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-pci.h"
#include "hw/virtio/virtio.h"

struct vp_queue {
	struct virtio_dev *vp;
	unsigned index;
	struct virtq vq;
	uint16_t size;
	uint16_t msix_vector;
	uint64_t desc, avail, used;
	int kick_fd;
	struct event *kick_ev;
	bool ioeventfd_on;
	uint64_t ioeventfd_addr;
};

struct virtio_dev {
	struct pci_device pci;
	struct vm *vm;
	struct virtio_dev_config cfg;
	char name[64];
	pthread_mutex_t lock;
	uint64_t dev_features, drv_features;
	uint32_t dfselect, gfselect;
	uint8_t status;
	uint8_t config_gen;
	uint8_t isr;
	uint16_t msix_config;
	uint16_t qsel;
	uint64_t generation;
	uint8_t pci_cfg_cap; /* offset of the VIRTIO_PCI_CAP_PCI_CFG capability */
	struct vp_queue q[VIRTIO_MAX_QUEUES];
	struct ratelimit rl; /* this device's messages */
};

void virtio_lock(struct virtio_dev *vp)
{
	pthread_mutex_lock(&vp->lock);
}

void virtio_unlock(struct virtio_dev *vp)
{
	pthread_mutex_unlock(&vp->lock);
}

struct virtq *virtio_queue(struct virtio_dev *vp, unsigned q)
{
	return q < vp->cfg.nqueues ? &vp->q[q].vq : NULL;
}

uint64_t virtio_features(struct virtio_dev *vp)
{
	return vp->drv_features;
}

bool virtio_driver_ok(struct virtio_dev *vp)
{
	return (vp->status & VIRTIO_STATUS_DRIVER_OK) && !(vp->status & VIRTIO_STATUS_NEEDS_RESET);
}

uint64_t virtio_generation(struct virtio_dev *vp)
{
	return vp->generation;
}

struct vm *virtio_vm(struct virtio_dev *vp)
{
	return vp->vm;
}

/* ---- interrupts ---- */

static void send_irq(struct virtio_dev *vp, uint16_t vector, uint8_t isr_bit)
{
	if (pci_msix_enabled(&vp->pci)) {
		if (vector != VIRTIO_MSI_NO_VECTOR) {
			pci_msix_notify(&vp->pci, vector);
		}
		return;
	}
	vp->isr |= isr_bit;
	pci_set_irq(&vp->pci, true);
}

void virtio_notify(struct virtio_dev *vp, unsigned q)
{
	if (q >= vp->cfg.nqueues || !virtq_should_notify(&vp->q[q].vq)) {
		return;
	}
	send_irq(vp, vp->q[q].msix_vector, 1);
}

void virtio_config_changed(struct virtio_dev *vp)
{
	vp->config_gen++;
	if (vp->status & VIRTIO_STATUS_DRIVER_OK) {
		send_irq(vp, vp->msix_config, 2);
	}
}

void virtio_set_needs_reset(struct virtio_dev *vp, const char *why)
{
	unsigned i;

	log_ratelimited(&vp->rl, LOG_WARNING, vm_name(vp->vm), vp->name, "device needs reset: %s",
			why);
	if (vp->status & VIRTIO_STATUS_NEEDS_RESET) {
		return;
	}
	for (i = 0; i < vp->cfg.nqueues; i++) {
		vp->q[i].vq.broken = true;
	}
	vp->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (vp->status & VIRTIO_STATUS_DRIVER_OK) {
		virtio_config_changed(vp);
	}
}

/* ---- reset and status ---- */

/* Back to the state after power-on; lock held. */
static void device_reset(struct virtio_dev *vp)
{
	unsigned i;

	vp->generation++;
	vp->cfg.ops->reset(vp->cfg.dev);
	for (i = 0; i < vp->cfg.nqueues; i++) {
		struct vp_queue *q = &vp->q[i];

		virtq_reset(&q->vq, vm_guest_mem(vp->vm));
		q->size = vp->cfg.queue_max;
		q->msix_vector = VIRTIO_MSI_NO_VECTOR;
		q->desc = q->avail = q->used = 0;
	}
	vp->status = 0;
	vp->drv_features = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->qsel = 0;
	vp->msix_config = VIRTIO_MSI_NO_VECTOR;
	vp->isr = 0;
	pci_set_irq(&vp->pci, false);
}

static void kick(struct vp_queue *q)
{
	static const uint64_t one = 1;

	if (write(q->kick_fd, &one, sizeof(one)) < 0) {
		log_ratelimited(&q->vp->rl, LOG_WARNING, NULL, q->vp->name,
				"kick eventfd write failed");
	}
}

void virtio_kick(struct virtio_dev *vp, unsigned q)
{
	if (q < vp->cfg.nqueues) {
		kick(&vp->q[q]);
	}
}

static void status_write(struct virtio_dev *vp, uint8_t v)
{
	uint8_t old = vp->status;
	unsigned i;

	if (v == 0) {
		device_reset(vp);
		return;
	}
	/* the driver cannot clear bits (other than by reset) nor set NEEDS_RESET */
	v = (v & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET);
	if (old & ~v) {
		log_ratelimited(&vp->rl, LOG_INFO, vm_name(vp->vm), vp->name,
				"driver cleared status bits 0x%x without reset: ignored", old & ~v);
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t f = vp->drv_features;

		if (!(f & (1ull << VIRTIO_F_VERSION_1)) || (f & ~vp->dev_features) ||
		    vp->cfg.ops->set_features(vp->cfg.dev, f) < 0) {
			/* the driver reads FEATURES_OK back and sees the refusal */
			v &= ~VIRTIO_STATUS_FEATURES_OK;
		} else {
			for (i = 0; i < vp->cfg.nqueues; i++) {
				vp->q[i].vq.event_idx = f & (1ull << VIRTIO_F_EVENT_IDX);
				vp->q[i].vq.indirect = f & (1ull << VIRTIO_F_INDIRECT_DESC);
			}
		}
	}
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK)) {
		v &= ~VIRTIO_STATUS_DRIVER_OK;
	}
	vp->status = v;
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (vp->cfg.ops->start) {
			vp->cfg.ops->start(vp->cfg.dev);
		}
		/* buffers made available before DRIVER_OK are processed now */
		for (i = 0; i < vp->cfg.nqueues; i++) {
			if (vp->q[i].vq.enabled) {
				kick(&vp->q[i]);
			}
		}
	}
}

static void queue_enable(struct virtio_dev *vp, struct vp_queue *q)
{
	int r;

	if (q->vq.enabled || !(vp->status & VIRTIO_STATUS_FEATURES_OK) ||
	    (vp->status & VIRTIO_STATUS_NEEDS_RESET)) {
		return;
	}
	q->vq.mem = vm_guest_mem(vp->vm);
	q->vq.size = q->size;
	q->vq.desc_gpa = q->desc;
	q->vq.avail_gpa = q->avail;
	q->vq.used_gpa = q->used;
	r = virtq_enable(&q->vq);
	if (r < 0) {
		char why[96];

		snprintf(why, sizeof(why), "queue %u: %s ring (size %u)", q->index,
			 r == -EFAULT ? "out-of-RAM" : "invalid", q->size);
		virtio_set_needs_reset(vp, why);
	}
}

/* ---- common configuration ---- */

static struct vp_queue *selq(struct virtio_dev *vp)
{
	return vp->qsel < vp->cfg.nqueues ? &vp->q[vp->qsel] : NULL;
}

/* The value of the field covering @off, with its start and width. */
static uint64_t common_field(struct virtio_dev *vp, unsigned off, unsigned *start, unsigned *width)
{
	struct vp_queue *q = selq(vp);
	static const struct {
		uint8_t off, width;
	} fields[] = {
		{CC_DFSELECT, 4},    {CC_DF, 4},	 {CC_GFSELECT, 4}, {CC_GF, 4},
		{CC_MSIX_CONFIG, 2}, {CC_NUM_QUEUES, 2}, {CC_STATUS, 1},   {CC_CFG_GENERATION, 1},
		{CC_Q_SELECT, 2},    {CC_Q_SIZE, 2},	 {CC_Q_MSIX, 2},   {CC_Q_ENABLE, 2},
		{CC_Q_NOFF, 2},	     {CC_Q_DESC, 8},	 {CC_Q_AVAIL, 8},  {CC_Q_USED, 8},
	};
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(fields); i++) {
		if (off >= fields[i].off && off < fields[i].off + fields[i].width) {
			*start = fields[i].off;
			*width = fields[i].width;
			break;
		}
	}
	if (i == ARRAY_SIZE(fields)) {
		*start = off;
		*width = 1;
		return 0;
	}
	switch (*start) {
	case CC_DFSELECT:
		return vp->dfselect;
	case CC_DF:
		return vp->dfselect < 2 ? (uint32_t)(vp->dev_features >> (32 * vp->dfselect)) : 0;
	case CC_GFSELECT:
		return vp->gfselect;
	case CC_GF:
		return vp->gfselect < 2 ? (uint32_t)(vp->drv_features >> (32 * vp->gfselect)) : 0;
	case CC_MSIX_CONFIG:
		return vp->msix_config;
	case CC_NUM_QUEUES:
		return vp->cfg.nqueues;
	case CC_STATUS:
		return vp->status;
	case CC_CFG_GENERATION:
		return vp->config_gen;
	case CC_Q_SELECT:
		return vp->qsel;
	case CC_Q_SIZE:
		return q ? q->size : 0;
	case CC_Q_MSIX:
		return q ? q->msix_vector : VIRTIO_MSI_NO_VECTOR;
	case CC_Q_ENABLE:
		return q ? q->vq.enabled : 0;
	case CC_Q_NOFF:
		return q ? q->index : 0;
	case CC_Q_DESC:
		return q ? q->desc : 0;
	case CC_Q_AVAIL:
		return q ? q->avail : 0;
	case CC_Q_USED:
		return q ? q->used : 0;
	}
	return 0;
}

static uint64_t common_read(struct virtio_dev *vp, unsigned off, unsigned size)
{
	uint64_t v = 0;
	unsigned i, start, width;

	for (i = 0; i < size; i++) {
		uint64_t f = common_field(vp, off + i, &start, &width);

		v |= ((f >> (8 * (off + i - start))) & 0xff) << (8 * i);
	}
	return v;
}

static uint16_t valid_vector(struct virtio_dev *vp, uint16_t v)
{
	return v < vp->cfg.nqueues + 1 ? v : VIRTIO_MSI_NO_VECTOR;
}

static void set_addr_part(uint64_t *field, unsigned part_off, unsigned size, uint64_t v)
{
	if (size == 8) {
		*field = v;
	} else if (part_off == 0) {
		*field = (*field & ~0xffffffffull) | (uint32_t)v;
	} else {
		*field = (*field & 0xffffffffull) | (uint64_t)(uint32_t)v << 32;
	}
}

static void common_write(struct virtio_dev *vp, unsigned off, unsigned size, uint64_t v)
{
	struct vp_queue *q = selq(vp);
	bool q_writable = q && !q->vq.enabled && !(vp->status & VIRTIO_STATUS_DRIVER_OK);
	unsigned start, width;

	common_field(vp, off, &start, &width);
	/* natural-width accesses only; 64-bit fields also as two 32-bit halves */
	if (!(off == start && size == width) &&
	    !(width == 8 && size == 4 && (off == start || off == start + 4))) {
		return;
	}
	switch (start) {
	case CC_DFSELECT:
		vp->dfselect = v;
		break;
	case CC_GFSELECT:
		vp->gfselect = v;
		break;
	case CC_GF:
		if (vp->gfselect < 2 && !(vp->status & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned sh = 32 * vp->gfselect;

			vp->drv_features = (vp->drv_features & ~(0xffffffffull << sh)) |
					   ((uint64_t)(uint32_t)v << sh);
		}
		break;
	case CC_MSIX_CONFIG:
		vp->msix_config = valid_vector(vp, v);
		break;
	case CC_STATUS:
		status_write(vp, v);
		break;
	case CC_Q_SELECT:
		vp->qsel = v;
		break;
	case CC_Q_SIZE:
		if (q_writable) {
			q->size = v;
		}
		break;
	case CC_Q_MSIX:
		if (q) {
			q->msix_vector = valid_vector(vp, v);
		}
		break;
	case CC_Q_ENABLE:
		if (q && v == 1) {
			queue_enable(vp, q);
		}
		break;
	case CC_Q_DESC:
		if (q_writable) {
			set_addr_part(&q->desc, off - start, size, v);
		}
		break;
	case CC_Q_AVAIL:
		if (q_writable) {
			set_addr_part(&q->avail, off - start, size, v);
		}
		break;
	case CC_Q_USED:
		if (q_writable) {
			set_addr_part(&q->used, off - start, size, v);
		}
		break;
	default:
		break; /* read-only */
	}
}

/* ---- BAR 0 ---- */

static uint64_t bar0_read_locked(struct virtio_dev *vp, uint64_t off, unsigned size)
{
	uint8_t buf[8] = {0};
	uint64_t v = 0;

	if (size > 8) {
		return 0;
	}
	if (off + size <= VP_COMMON_OFF + VP_COMMON_LEN) {
		return common_read(vp, off - VP_COMMON_OFF, size);
	}
	if (off >= VP_ISR_OFF && off < VP_ISR_OFF + VP_ISR_LEN) {
		if (off != VP_ISR_OFF) {
			return 0;
		}
		v = vp->isr;
		vp->isr = 0;
		pci_set_irq(&vp->pci, false);
		return v;
	}
	if (off >= VP_DEVICE_OFF && off < VP_DEVICE_OFF + VP_DEVICE_LEN) {
		uint64_t o = off - VP_DEVICE_OFF;

		if (o + size <= vp->cfg.ops->config_size) {
			vp->cfg.ops->config_read(vp->cfg.dev, o, buf, size);
			memcpy(&v, buf, size);
		}
		return v;
	}
	return 0;
}

static void bar0_write_locked(struct virtio_dev *vp, uint64_t off, uint64_t val, unsigned size)
{
	if (size > 8) {
		return;
	}
	if (off + size <= VP_COMMON_OFF + VP_COMMON_LEN) {
		common_write(vp, off - VP_COMMON_OFF, size, val);
	} else if (off >= VP_DEVICE_OFF && off < VP_DEVICE_OFF + VP_DEVICE_LEN) {
		uint64_t o = off - VP_DEVICE_OFF;

		if (o + size <= vp->cfg.ops->config_size && vp->cfg.ops->config_write) {
			vp->cfg.ops->config_write(vp->cfg.dev, o, &val, size);
		}
	} else if (off >= VP_NOTIFY_OFF && off < VP_NOTIFY_OFF + VP_NOTIFY_LEN) {
		/* a notify the ioeventfd did not catch (other width): same path */
		uint64_t qi = (off - VP_NOTIFY_OFF) / VP_NOTIFY_MULT;

		if (qi < vp->cfg.nqueues) {
			kick(&vp->q[qi]);
		}
	}
}

static uint64_t bar0_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_dev *vp = opaque;
	uint64_t v;

	virtio_lock(vp);
	v = bar0_read_locked(vp, off, size);
	virtio_unlock(vp);
	return v;
}

static void bar0_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct virtio_dev *vp = opaque;

	virtio_lock(vp);
	bar0_write_locked(vp, off, val, size);
	virtio_unlock(vp);
}

static const struct iobus_ops bar0_ops = {
	.read = bar0_read,
	.write = bar0_write,
};

/* ---- PCI hooks ---- */

static void ioeventfds_set(struct virtio_dev *vp, bool on, uint64_t bar_addr)
{
	unsigned i;

	for (i = 0; i < vp->cfg.nqueues; i++) {
		struct vp_queue *q = &vp->q[i];

		if (q->ioeventfd_on) {
			vm_ioeventfd(vp->vm, q->kick_fd, q->ioeventfd_addr, 2, false, -1, false);
			q->ioeventfd_on = false;
		}
		if (on) {
			q->ioeventfd_addr = bar_addr + VP_NOTIFY_OFF + i * VP_NOTIFY_MULT;
			/* without an ioeventfd the MMIO handler still kicks */
			q->ioeventfd_on = vm_ioeventfd(vp->vm, q->kick_fd, q->ioeventfd_addr, 2,
						       false, -1, true) == 0;
		}
	}
}

static void vp_bar_remapped(struct pci_device *dev, unsigned bar, bool mapped, uint64_t addr)
{
	struct virtio_dev *vp = container_of(dev, struct virtio_dev, pci);

	if (bar != 0) {
		return;
	}
	virtio_lock(vp);
	ioeventfds_set(vp, mapped, addr);
	virtio_unlock(vp);
}

/* VIRTIO_PCI_CAP_PCI_CFG: BAR access through the capability's data window. */
static bool pci_cfg_window(struct virtio_dev *vp, unsigned off, unsigned len, uint32_t *ret_off,
			   uint32_t *ret_len)
{
	const uint8_t *c = vp->pci.config + vp->pci_cfg_cap;
	uint32_t boff, blen;

	if (off != vp->pci_cfg_cap + 16u) {
		return false;
	}
	memcpy(&boff, c + 8, 4);
	memcpy(&blen, c + 12, 4);
	if (c[4] != 0 || (blen != 1 && blen != 2 && blen != 4) || blen > len ||
	    boff >= VP_BAR0_SIZE || boff + blen > VP_BAR0_SIZE) {
		return false;
	}
	*ret_off = boff;
	*ret_len = blen;
	return true;
}

static void vp_config_read(struct pci_device *dev, unsigned off, unsigned len, uint32_t *val)
{
	struct virtio_dev *vp = container_of(dev, struct virtio_dev, pci);
	uint32_t boff, blen;

	if (pci_cfg_window(vp, off, len, &boff, &blen)) {
		*val = bar0_read(vp, boff, blen);
	}
}

static void vp_config_write(struct pci_device *dev, unsigned off, unsigned len, uint32_t val)
{
	struct virtio_dev *vp = container_of(dev, struct virtio_dev, pci);
	uint32_t boff, blen;

	if (pci_cfg_window(vp, off, len, &boff, &blen)) {
		bar0_write(vp, boff, val, blen);
	}
}

static const struct pci_device_ops vp_pci_ops = {
	.bar_remapped = vp_bar_remapped,
	.config_read = vp_config_read,
	.config_write = vp_config_write,
};

static void kick_ready(evutil_socket_t fd, short what, void *opaque)
{
	struct vp_queue *q = opaque;
	struct virtio_dev *vp = q->vp;
	uint64_t cnt;

	(void)what;
	if (read(fd, &cnt, sizeof(cnt)) < 0) {
		return;
	}
	virtio_lock(vp);
	if (virtio_driver_ok(vp) && q->vq.enabled && !q->vq.broken) {
		vp->cfg.ops->queue_notify(vp->cfg.dev, q->index);
	}
	virtio_unlock(vp);
}

static void add_virtio_cap(struct virtio_dev *vp, uint8_t type, uint8_t len, uint32_t off,
			   uint32_t length, uint8_t *ret_off)
{
	uint8_t c = pci_add_capability(&vp->pci, PCI_CAP_ID_VNDR, len);
	uint8_t *p = vp->pci.config + c;

	p[2] = len;
	p[3] = type;
	p[4] = 0; /* BAR 0 */
	memcpy(p + 8, &off, 4);
	memcpy(p + 12, &length, 4);
	if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
		uint32_t mult = VP_NOTIFY_MULT;

		memcpy(p + 16, &mult, 4);
	}
	if (type == VIRTIO_PCI_CAP_PCI_CFG) {
		/* bar, offset, length and the data window are the driver's to write */
		vp->pci.wmask[c + 4] = 0xff;
		memset(vp->pci.wmask + c + 8, 0xff, 12);
	}
	if (ret_off) {
		*ret_off = c;
	}
}

int virtio_dev_new(struct vm *vm, const struct virtio_dev_config *cfg, struct virtio_dev **ret,
		   struct error **errp)
{
	struct virtio_dev *vp;
	struct pci_host *host = pci_host_of(vm);
	unsigned i;
	int r;

	if (!host) {
		return error_set(errp, ENODEV, "%s: the VM has no PCI host bridge", cfg->id);
	}
	if (cfg->nqueues == 0 || cfg->nqueues >= VIRTIO_MAX_QUEUES || cfg->queue_max == 0 ||
	    cfg->queue_max > VIRTQ_MAX_SIZE || !IS_POWER_OF_2(cfg->queue_max)) {
		return error_set(errp, EINVAL, "%s: %u queues of %u entries (limits %u, %u)",
				 cfg->id, cfg->nqueues, cfg->queue_max, VIRTIO_MAX_QUEUES - 1,
				 VIRTQ_MAX_SIZE);
	}
	vp = calloc(1, sizeof(*vp));
	if (!vp) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	vp->vm = vm;
	vp->rl = (struct ratelimit)RATELIMIT_INIT(5000000, 10);
	vp->cfg = *cfg;
	snprintf(vp->name, sizeof(vp->name), "%s", cfg->id);
	vp->cfg.id = vp->name;
	pthread_mutex_init(&vp->lock, NULL);
	vp->dev_features = cfg->features | 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_EVENT_IDX |
			   1ull << VIRTIO_F_INDIRECT_DESC;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		vp->q[i].kick_fd = -1;
	}
	for (i = 0; i < cfg->nqueues; i++) {
		struct vp_queue *q = &vp->q[i];

		q->vp = vp;
		q->index = i;
		q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->kick_fd < 0) {
			r = error_set_errno(errp, errno, "%s: eventfd", cfg->id);
			goto err_free;
		}
		q->kick_ev =
			event_new(vm_io_base(vm), q->kick_fd, EV_READ | EV_PERSIST, kick_ready, q);
		if (!q->kick_ev || event_add(q->kick_ev, NULL) < 0) {
			r = error_set(errp, ENOMEM, "%s: cannot watch the queue eventfd", cfg->id);
			goto err_free;
		}
	}
	pci_device_init(&vp->pci, vp->name, 0x1af4, 0x1040 + cfg->ops->device_id,
			cfg->ops->pci_class, 1, 0x1af4, 0x40);
	vp->pci.ops = &vp_pci_ops;
	vp->pci.opaque = vp;
	pci_device_set_bar(&vp->pci, 0, PCI_BAR_MEM32, VP_BAR0_SIZE, &bar0_ops, vp);
	add_virtio_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, 16, VP_COMMON_OFF, 0x38, NULL);
	add_virtio_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, 20, VP_NOTIFY_OFF,
		       cfg->nqueues * VP_NOTIFY_MULT, NULL);
	add_virtio_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, 16, VP_ISR_OFF, 1, NULL);
	add_virtio_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, 16, VP_DEVICE_OFF,
		       MAX(cfg->ops->config_size, 4u), NULL);
	add_virtio_cap(vp, VIRTIO_PCI_CAP_PCI_CFG, 20, 0, 0, &vp->pci_cfg_cap);
	r = pci_msix_init(&vp->pci, VP_MSIX_BAR, cfg->nqueues + 1, errp);
	if (r < 0) {
		goto err_free;
	}
	virtio_lock(vp);
	device_reset(vp);
	virtio_unlock(vp);
	r = pci_register_device(host, &vp->pci, -1, errp);
	if (r < 0) {
		goto err_msix;
	}
	*ret = vp;
	return 0;
err_msix:
	pci_unregister_device(&vp->pci); /* frees the MSI-X state */
err_free:
	for (i = 0; i < cfg->nqueues; i++) {
		if (vp->q[i].kick_ev) {
			event_free(vp->q[i].kick_ev);
		}
		if (vp->q[i].kick_fd >= 0) {
			close(vp->q[i].kick_fd);
		}
	}
	pthread_mutex_destroy(&vp->lock);
	free(vp);
	return r;
}

void virtio_dev_free(struct virtio_dev *vp)
{
	unsigned i;

	if (!vp) {
		return;
	}
	pci_unregister_device(&vp->pci);
	virtio_lock(vp);
	ioeventfds_set(vp, false, 0);
	virtio_unlock(vp);
	for (i = 0; i < vp->cfg.nqueues; i++) {
		event_free(vp->q[i].kick_ev);
		close(vp->q[i].kick_fd);
	}
	pthread_mutex_destroy(&vp->lock);
	free(vp);
}

void virtio_dev_reset(struct virtio_dev *vp)
{
	pci_device_reset(&vp->pci);
	virtio_lock(vp);
	device_reset(vp);
	virtio_unlock(vp);
}

/* ---- save/restore ---- */

int virtio_save(struct virtio_dev *vp, struct vmstate_buf *out, struct error **errp)
{
	int r = 0;

	pci_device_save(&vp->pci, out);
	virtio_lock(vp);
	vmstate_put_u64(out, vp->drv_features);
	vmstate_put_u32(out, vp->dfselect);
	vmstate_put_u32(out, vp->gfselect);
	vmstate_put_u8(out, vp->status);
	vmstate_put_u8(out, vp->config_gen);
	vmstate_put_u8(out, vp->isr);
	vmstate_put_u16(out, vp->msix_config);
	vmstate_put_u16(out, vp->qsel);
	vmstate_put_u32(out, vp->cfg.nqueues);
	for (unsigned i = 0; i < vp->cfg.nqueues; i++) {
		const struct vp_queue *q = &vp->q[i];

		if (q->vq.inflight) {
			r = error_set(errp, EBUSY, "%s: queue %u has %u requests in flight",
				      vp->name, i, q->vq.inflight);
			break;
		}
		vmstate_put_u16(out, q->size);
		vmstate_put_u16(out, q->msix_vector);
		vmstate_put_u64(out, q->desc);
		vmstate_put_u64(out, q->avail);
		vmstate_put_u64(out, q->used);
		vmstate_put_bool(out, q->vq.enabled);
		vmstate_put_bool(out, q->vq.broken);
		vmstate_put_u16(out, q->vq.last_avail);
		vmstate_put_u16(out, q->vq.used_idx);
		vmstate_put_u16(out, q->vq.signalled_used);
		vmstate_put_bool(out, q->vq.signalled_used_valid);
	}
	virtio_unlock(vp);
	return r;
}

struct vp_saved_queue {
	uint16_t size, vector;
	uint64_t desc, avail, used;
	bool enabled, broken, signalled_valid;
	uint16_t last_avail, used_idx, signalled;
};

int virtio_load(struct virtio_dev *vp, struct vmstate_buf *in, struct error **errp)
{
	struct vp_saved_queue q[VIRTIO_MAX_QUEUES];
	uint64_t drv_features;
	uint32_t dfselect, gfselect, nq;
	uint8_t status, config_gen, isr;
	uint16_t msix_config, qsel;
	int r;

	r = pci_device_load(&vp->pci, in, errp);
	if (r < 0) {
		return r;
	}
	drv_features = vmstate_get_u64(in);
	dfselect = vmstate_get_u32(in);
	gfselect = vmstate_get_u32(in);
	status = vmstate_get_u8(in);
	config_gen = vmstate_get_u8(in);
	isr = vmstate_get_u8(in);
	msix_config = vmstate_get_u16(in);
	qsel = vmstate_get_u16(in);
	nq = vmstate_get_u32(in);
	if (nq != vp->cfg.nqueues) {
		return error_set(errp, EINVAL, "%s: the snapshot has %u queues, the device %u",
				 vp->name, nq, vp->cfg.nqueues);
	}
	for (unsigned i = 0; i < nq; i++) {
		q[i].size = vmstate_get_u16(in);
		q[i].vector = vmstate_get_u16(in);
		q[i].desc = vmstate_get_u64(in);
		q[i].avail = vmstate_get_u64(in);
		q[i].used = vmstate_get_u64(in);
		q[i].enabled = vmstate_get_bool(in);
		q[i].broken = vmstate_get_bool(in);
		q[i].last_avail = vmstate_get_u16(in);
		q[i].used_idx = vmstate_get_u16(in);
		q[i].signalled = vmstate_get_u16(in);
		q[i].signalled_valid = vmstate_get_bool(in);
		/*
		 * The size register latches any value the driver writes; only an
		 * enabled queue's was checked (at queue_enable), so only it must
		 * be valid here: a guest's bad size on a queue it never enabled
		 * is saved and loads as it was.
		 */
		if (q[i].enabled && (q[i].size == 0 || q[i].size > vp->cfg.queue_max ||
				     (q[i].size & (q[i].size - 1)))) {
			in->failed = true;
		}
	}
	if (in->failed) {
		return error_set(errp, EINVAL, "%s: transport state is truncated or invalid",
				 vp->name);
	}
	/*
	 * Only negotiated features must be offered: before FEATURES_OK the
	 * register holds whatever the driver wrote (it reads it back), and a
	 * guest that wrote bits the device lacks is saved with them.
	 */
	if ((status & VIRTIO_STATUS_FEATURES_OK) && (drv_features & ~vp->dev_features)) {
		return error_set(errp, EINVAL,
				 "%s: the snapshot's driver features 0x%" PRIx64
				 " are not offered by this device (0x%" PRIx64 ")",
				 vp->name, drv_features, vp->dev_features);
	}
	virtio_lock(vp);
	vp->drv_features = drv_features;
	vp->dfselect = dfselect;
	vp->gfselect = gfselect;
	vp->config_gen = config_gen;
	vp->isr = isr;
	vp->msix_config = msix_config;
	vp->qsel = qsel;
	if ((status & VIRTIO_STATUS_FEATURES_OK) &&
	    vp->cfg.ops->set_features(vp->cfg.dev, drv_features) < 0) {
		virtio_unlock(vp);
		return error_set(errp, EINVAL, "%s: the device refuses the saved features",
				 vp->name);
	}
	vp->status = status;
	for (unsigned i = 0; i < nq; i++) {
		struct vp_queue *vq = &vp->q[i];

		vq->size = q[i].size;
		vq->msix_vector = q[i].vector;
		vq->desc = q[i].desc;
		vq->avail = q[i].avail;
		vq->used = q[i].used;
		/* as at FEATURES_OK: a driver's unaccepted bits change nothing */
		vq->vq.event_idx = (status & VIRTIO_STATUS_FEATURES_OK) &&
				   (drv_features & (1ull << VIRTIO_F_EVENT_IDX));
		vq->vq.indirect = (status & VIRTIO_STATUS_FEATURES_OK) &&
				  (drv_features & (1ull << VIRTIO_F_INDIRECT_DESC));
		if (q[i].enabled) {
			vq->vq.mem = vm_guest_mem(vp->vm);
			vq->vq.size = vq->size;
			vq->vq.desc_gpa = vq->desc;
			vq->vq.avail_gpa = vq->avail;
			vq->vq.used_gpa = vq->used;
			if (virtq_enable(&vq->vq) < 0) {
				virtio_unlock(vp);
				return error_set(errp, EINVAL,
						 "%s: queue %u's rings are outside guest RAM",
						 vp->name, i);
			}
		}
		vq->vq.broken = q[i].broken;
		vq->vq.last_avail = q[i].last_avail;
		vq->vq.used_idx = q[i].used_idx;
		vq->vq.signalled_used = q[i].signalled;
		vq->vq.signalled_used_valid = q[i].signalled_valid;
	}
	if ((status & VIRTIO_STATUS_DRIVER_OK) && vp->cfg.ops->start) {
		vp->cfg.ops->start(vp->cfg.dev);
	}
	/* Requests queued before the save and never seen (no new kick will come). */
	for (unsigned i = 0; i < nq; i++) {
		if (vp->q[i].vq.enabled) {
			kick(&vp->q[i]);
		}
	}
	virtio_unlock(vp);
	return 0;
}
