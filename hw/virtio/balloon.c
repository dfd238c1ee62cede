/*
 * virtio-balloon (virtio 1.x §5.5), QEMU's "balloon" / "query-balloon" /
 * BALLOON_CHANGE: the host sets num_pages (the pages it wants the guest
 * to give back, 4 KiB each), the driver puts page frame numbers on the
 * inflate queue (0) and takes them back through the deflate queue (1),
 * and writes "actual" when it is done. Inflated pages are returned to the
 * host (MADV_REMOVE for shared memory, MADV_DONTNEED otherwise); a later
 * guest access gets a zero page. No statistics queue and no free page
 * hinting yet.
 *
 * Threads: realize/unrealize on the control thread; config accesses on
 * vCPU threads and queues on the I/O thread, all under the transport lock;
 * virtio_balloon_set_target/_actual on the control thread take it too.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/virtio/virtio.h"

#define VIRTIO_ID_BALLOON 5
#define BALLOON_PAGE 4096ull
#define BALLOON_QUEUE_SIZE 128

struct balloon_config {
	uint32_t num_pages; /* le32, host -> guest */
	uint32_t actual;    /* le32, guest -> host */
};

struct virtio_balloon {
	struct virtio_dev *vp;
	struct vm *vm;
	uint64_t ram_size;
	struct balloon_config config;
	uint64_t inflated, deflated; /* pages seen on each queue, for the log */
	struct virtq_elem elem;
};

static struct ratelimit balloon_rl = RATELIMIT_INIT(5000000, 5);

/* Give a guest page back to the host; it reads as zeroes when touched again. */
static void discard_page(struct virtio_balloon *b, uint32_t pfn)
{
	uint64_t gpa = (uint64_t)pfn * BALLOON_PAGE;
	void *p = guest_mem_ptr(vm_guest_mem(b->vm), gpa, BALLOON_PAGE);

	if (!p) {
		log_ratelimited(&balloon_rl, LOG_NOTICE, vm_name(b->vm), "balloon",
				"guest gave page 0x%x outside RAM; ignored", pfn);
		return;
	}
	if (madvise(p, BALLOON_PAGE, MADV_REMOVE) < 0) {
		madvise(p, BALLOON_PAGE, MADV_DONTNEED);
	}
}

/* Drain queue @q (0 inflate, 1 deflate). Transport lock held. */
static void balloon_process(struct virtio_balloon *b, unsigned q)
{
	struct virtq *vq = virtio_queue(b->vp, q);
	bool pushed = false;

	for (;;) {
		int n = virtq_pop(vq, &b->elem);

		if (n < 0) {
			virtio_set_needs_reset(b->vp, "malformed balloon queue");
			return;
		}
		if (n == 0) {
			break;
		}
		for (unsigned i = 0; i < b->elem.out_num; i++) {
			const uint8_t *pfns = b->elem.out[i].iov_base;
			size_t count = b->elem.out[i].iov_len / 4;

			for (size_t k = 0; k < count; k++) {
				uint32_t pfn;

				memcpy(&pfn, pfns + 4 * k, 4);
				if (q == 0) {
					discard_page(b, pfn);
					b->inflated++;
				} else {
					b->deflated++; /* nothing to do: the next touch faults it in */
				}
			}
		}
		virtq_push(vq, &b->elem, 0);
		pushed = true;
	}
	if (pushed) {
		virtio_notify(b->vp, q);
	}
}

static void balloon_queue_notify(void *dev, unsigned q)
{
	if (q < 2) {
		balloon_process(dev, q);
	}
}

static void balloon_config_read(void *dev, unsigned off, void *buf, unsigned len)
{
	struct virtio_balloon *b = dev;

	memcpy(buf, (uint8_t *)&b->config + off, len);
}

static void balloon_config_write(void *dev, unsigned off, const void *buf, unsigned len)
{
	struct virtio_balloon *b = dev;
	uint32_t before = b->config.actual;

	/* only "actual" is the driver's to write */
	if (off < 4) {
		unsigned skip = 4 - off;

		if (len <= skip) {
			return;
		}
		buf = (const uint8_t *)buf + skip;
		len -= skip;
		off = 4;
	}
	memcpy((uint8_t *)&b->config + off, buf, len);
	if (b->config.actual != before) {
		uint64_t gone = MIN((uint64_t)b->config.actual * BALLOON_PAGE, b->ram_size);

		vm_emit_event(b->vm, "BALLOON_CHANGE",
			      json_pack("{s:I}", "actual", (json_int_t)(b->ram_size - gone)));
	}
}

static int balloon_set_features(void *dev, uint64_t features)
{
	(void)dev;
	(void)features;
	return 0;
}

static void balloon_reset(void *dev)
{
	struct virtio_balloon *b = dev;

	/* a new driver starts with nothing inflated; the host's target stays */
	b->config.actual = 0;
}

static const struct virtio_device_ops balloon_ops = {
	.name = "virtio-balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.pci_class = 0x00ff00,
	.config_size = sizeof(struct balloon_config),
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.set_features = balloon_set_features,
	.queue_notify = balloon_queue_notify,
	.reset = balloon_reset,
};

int virtio_balloon_set_target(void *state, uint64_t bytes)
{
	struct virtio_balloon *b = state;

	if (bytes == 0) {
		return -EINVAL;
	}
	bytes = MIN(bytes, b->ram_size);
	virtio_lock(b->vp);
	b->config.num_pages = (uint32_t)((b->ram_size - bytes) / BALLOON_PAGE);
	virtio_config_changed(b->vp);
	virtio_unlock(b->vp);
	return 0;
}

uint64_t virtio_balloon_actual(void *state)
{
	struct virtio_balloon *b = state;
	uint64_t gone;

	virtio_lock(b->vp);
	gone = MIN((uint64_t)b->config.actual * BALLOON_PAGE, b->ram_size);
	virtio_unlock(b->vp);
	return b->ram_size - gone;
}

static int balloon_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct virtio_dev_config vc = {
		.ops = &balloon_ops,
		.id = "balloon0",
		.features = 0,
		.nqueues = 2,
		.queue_max = BALLOON_QUEUE_SIZE,
	};
	struct virtio_balloon *b;
	int r;

	(void)cfg;
	b = calloc(1, sizeof(*b));
	if (!b) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	b->vm = vm;
	b->ram_size = guest_mem_size(vm_guest_mem(vm));
	vc.dev = b;
	r = virtio_dev_new(vm, &vc, &b->vp, errp);
	if (r < 0) {
		free(b);
		return r;
	}
	*ret_state = b;
	return 0;
}

static void balloon_unrealize(void *state)
{
	struct virtio_balloon *b = state;

	virtio_dev_free(b->vp);
	free(b);
}

static void balloon_device_reset(void *state)
{
	struct virtio_balloon *b = state;

	virtio_dev_reset(b->vp);
}

static bool balloon_wanted(const struct vm_config *cfg, const void *item)
{
	(void)item;
	return cfg->balloon;
}

const struct device_class virtio_balloon_class = {
	.name = "virtio-balloon",
	.each = DEVICE_ONCE,
	.wanted = balloon_wanted,
	.realize = balloon_realize,
	.unrealize = balloon_unrealize,
	.reset = balloon_device_reset,
};
