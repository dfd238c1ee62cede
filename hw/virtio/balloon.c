/*
 * virtio-balloon (virtio 1.x §5.5), QEMU's "balloon" / "query-balloon" /
 * BALLOON_CHANGE: the host sets num_pages (the pages it wants the guest
 * to give back, 4 KiB each), the driver puts page frame numbers on the
 * inflate queue (0) and takes them back through the deflate queue (1),
 * and writes "actual" when it is done. Inflated pages are returned to the
 * host (MADV_REMOVE for shared memory, MADV_DONTNEED otherwise); a later
 * guest access gets a zero page.
 *
 * Statistics (§5.5.6.3) as QEMU's: the driver keeps one buffer of
 * (tag, value) records on the stats queue (2); while a polling interval is
 * set (qom-set guest-stats-polling-interval, seconds), the device gives the
 * buffer back every interval, the driver refills it, and the device keeps
 * the values and the time for qom-get guest-stats. No free page hinting.
 *
 * Threads: realize/unrealize on the control thread; config accesses on
 * vCPU threads and queues on the I/O thread, all under the transport lock;
 * virtio_balloon_set_target/_actual on the control thread take it too.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/iov.h"
#include "common/json-u64.h"
#include "common/vmstate.h"
#include "common/log.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/virtio/virtio.h"

#define VIRTIO_ID_BALLOON 5
#define BALLOON_PAGE 4096ull
#define BALLOON_QUEUE_SIZE 128
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define STATS_QUEUE 2
#define STATS_MAX_RECORDS 256 /* of one buffer, read; more are ignored */

/* QEMU's names for the tags of §5.5.6.3, in tag order. */
static const char *const stat_names[] = {
	"stat-swap-in",	     "stat-swap-out",	  "stat-major-faults",	   "stat-minor-faults",
	"stat-free-memory",  "stat-total-memory", "stat-available-memory", "stat-disk-caches",
	"stat-htlb-pgalloc", "stat-htlb-pgfail",
};
#define N_STATS (sizeof(stat_names) / sizeof(stat_names[0]))

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
	/* statistics */
	uint64_t stats[N_STATS];   /* UINT64_MAX: not reported */
	int64_t stats_last_update; /* wall-clock seconds, 0: never */
	int64_t poll_interval;	   /* seconds, 0: off */
	bool stats_held;	   /* the driver's buffer is ours until the next poll */
	bool dying;
	struct virtq_elem stats_elem;
	struct event *stats_timer;
};

static struct ratelimit balloon_rl = RATELIMIT_INIT(5000000, 5);

/* Give a guest page back to the host; it reads as zeroes when touched again. */
static void discard_page(struct virtio_balloon *b, uint32_t pfn)
{
	uint64_t gpa = (uint64_t)pfn * BALLOON_PAGE;

	/* (shared RAM still restored lazily: the page then reads zero, not the snapshot's) */
	if (guest_mem_discard(vm_guest_mem(b->vm), gpa, BALLOON_PAGE) == -EFAULT) {
		log_ratelimited(&balloon_rl, LOG_NOTICE, vm_name(b->vm), "balloon",
				"guest gave page 0x%x outside RAM; ignored", pfn);
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

/* The driver (re)filled its statistics buffer: keep the values. Lock held. */
static void stats_process(struct virtio_balloon *b)
{
	struct virtq *vq = virtio_queue(b->vp, STATS_QUEUE);

	for (;;) {
		uint8_t rec[10];
		int n;

		if (!virtq_has_avail(vq)) {
			return;
		}
		if (b->stats_held) {
			/* a second buffer while we hold one: give the old one back */
			virtq_push(vq, &b->stats_elem, 0);
			virtio_notify(b->vp, STATS_QUEUE);
			b->stats_held = false;
		}
		n = virtq_pop(vq, &b->stats_elem);
		if (n < 0) {
			virtio_set_needs_reset(b->vp, "malformed balloon statistics queue");
			return;
		}
		if (n == 0) {
			return;
		}
		b->stats_held = true;
		for (size_t off = 0; off < STATS_MAX_RECORDS * sizeof(rec); off += sizeof(rec)) {
			uint16_t tag;
			uint64_t val;

			if (iov_to_buf(b->stats_elem.out, b->stats_elem.out_num, off, rec,
				       sizeof(rec)) < sizeof(rec)) {
				break;
			}
			memcpy(&tag, rec, 2);
			memcpy(&val, rec + 2, 8);
			if (tag < N_STATS) {
				b->stats[tag] = val;
			}
		}
		b->stats_last_update = (int64_t)time(NULL);
	}
}

static void stats_arm(struct virtio_balloon *b, int64_t secs)
{
	struct timeval tv = {.tv_sec = (time_t)secs};

	if (!b->dying) {
		evtimer_add(b->stats_timer, &tv);
	}
}

/* The polling interval passed: ask the driver for fresh values (I/O thread). */
static void stats_poll(evutil_socket_t fd, short what, void *opaque)
{
	struct virtio_balloon *b = opaque;

	(void)fd;
	(void)what;
	virtio_lock(b->vp);
	if (b->stats_held && virtio_driver_ok(b->vp)) {
		virtq_push(virtio_queue(b->vp, STATS_QUEUE), &b->stats_elem, 0);
		virtio_notify(b->vp, STATS_QUEUE);
		b->stats_held = false;
	}
	if (b->poll_interval > 0) {
		stats_arm(b, b->poll_interval);
	}
	virtio_unlock(b->vp);
}

static void balloon_queue_notify(void *dev, unsigned q)
{
	if (q < 2) {
		balloon_process(dev, q);
	} else if (q == STATS_QUEUE) {
		stats_process(dev);
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
	/* its statistics buffer is forgotten (the values stay, as QEMU's) */
	b->stats_held = false;
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

static json_t *balloon_qom_get(void *state, const char *prop, struct error **errp)
{
	struct virtio_balloon *b = state;
	json_t *v = NULL, *stats;

	virtio_lock(b->vp);
	if (strcmp(prop, "guest-stats-polling-interval") == 0) {
		v = json_integer(b->poll_interval);
	} else if (strcmp(prop, "guest-stats") == 0) {
		stats = json_object();
		for (size_t i = 0; stats && i < N_STATS; i++) {
			json_object_set_new(stats, stat_names[i], json_u64(b->stats[i]));
		}
		v = json_pack("{s:o, s:I}", "stats", stats, "last-update",
			      (json_int_t)b->stats_last_update);
	} else {
		error_set(errp, ENOENT, "Property 'virtio-balloon-pci.%s' not found", prop);
	}
	virtio_unlock(b->vp);
	return v;
}

static int balloon_qom_set(void *state, const char *prop, json_t *value, struct error **errp)
{
	struct virtio_balloon *b = state;
	json_int_t v;

	if (strcmp(prop, "guest-stats") == 0) {
		return error_set(errp, EPERM,
				 "Property 'virtio-balloon-device.guest-stats' is not writable");
	}
	if (strcmp(prop, "guest-stats-polling-interval") != 0) {
		return error_set(errp, ENOENT, "Property 'virtio-balloon-pci.%s' not found", prop);
	}
	/* QEMU's checks and messages (hw/virtio/virtio-balloon.c) */
	if (!json_is_integer(value)) {
		return error_set(errp, EINVAL,
				 "Invalid parameter type for 'guest-stats-polling-interval', "
				 "expected: integer");
	}
	v = json_integer_value(value);
	if (v < 0) {
		return error_set(errp, EINVAL, "timer value must be greater than zero");
	}
	if (v > UINT32_MAX) {
		return error_set(errp, EINVAL, "timer value is too big");
	}
	virtio_lock(b->vp);
	if (v == 0) {
		b->poll_interval = 0;
		evtimer_del(b->stats_timer);
	} else if (b->poll_interval > 0) {
		b->poll_interval = v; /* from the next poll on */
	} else {
		b->poll_interval = v;
		stats_arm(b, 0); /* QEMU polls at once, then every interval */
	}
	virtio_unlock(b->vp);
	return 0;
}

static int balloon_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct virtio_dev_config vc = {
		.ops = &balloon_ops,
		.id = "balloon0",
		.features = 1ull << VIRTIO_BALLOON_F_STATS_VQ,
		.nqueues = 3,
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
	b->ram_size = vm_get_config(vm)->memory; /* the RAM, not the memory devices' */
	memset(b->stats, 0xff, sizeof(b->stats));
	b->stats_timer = evtimer_new(vm_io_base(vm), stats_poll, b);
	if (!b->stats_timer) {
		free(b);
		return error_set(errp, ENOMEM, "virtio-balloon: cannot create its timer");
	}
	vc.dev = b;
	r = virtio_dev_new(vm, &vc, &b->vp, errp);
	if (r < 0) {
		event_free(b->stats_timer);
		free(b);
		return r;
	}
	*ret_state = b;
	return 0;
}

static void balloon_unrealize(void *state)
{
	struct virtio_balloon *b = state;

	/* the I/O thread may still run the timer: stop it, then the kicks */
	virtio_lock(b->vp);
	b->dying = true;
	virtio_unlock(b->vp);
	event_free(b->stats_timer);
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

/*
 * State: the config (target and actual), the polling interval and the last
 * statistics, then the transport. A statistics buffer the device holds is
 * handed back to the ring for the save (as QEMU rewinds its stats queue) and
 * popped again after it: the restored device pops it when load kicks the
 * queues, and the source keeps it if it runs on.
 */
static int balloon_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct virtio_balloon *b = state;
	bool held;
	int r;

	virtio_lock(b->vp);
	held = b->stats_held;
	if (held) {
		virtq_unpop(virtio_queue(b->vp, STATS_QUEUE), 1);
		b->stats_held = false;
	}
	vmstate_put_u32(out, b->config.num_pages);
	vmstate_put_u32(out, b->config.actual);
	vmstate_put_u64(out, (uint64_t)b->poll_interval);
	vmstate_put_u64(out, (uint64_t)b->stats_last_update);
	for (size_t i = 0; i < N_STATS; i++) {
		vmstate_put_u64(out, b->stats[i]);
	}
	virtio_unlock(b->vp);
	r = virtio_save(b->vp, out, errp);
	if (held) {
		virtio_lock(b->vp);
		stats_process(b);
		virtio_unlock(b->vp);
	}
	return r;
}

static int balloon_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct virtio_balloon *b = state;
	uint32_t num_pages, actual;
	uint64_t interval, last, stats[N_STATS];
	int r;

	if (version != 1) {
		return error_set(errp, EINVAL, "virtio-balloon: unknown state version %u", version);
	}
	num_pages = vmstate_get_u32(in);
	actual = vmstate_get_u32(in);
	interval = vmstate_get_u64(in);
	last = vmstate_get_u64(in);
	for (size_t i = 0; i < N_STATS; i++) {
		stats[i] = vmstate_get_u64(in);
	}
	if (in->failed || interval > UINT32_MAX) {
		return error_set(errp, EINVAL, "the virtio-balloon device's state is damaged");
	}
	virtio_lock(b->vp);
	b->config.num_pages = num_pages;
	b->config.actual = actual;
	b->poll_interval = (int64_t)interval;
	b->stats_last_update = (int64_t)last;
	memcpy(b->stats, stats, sizeof(stats));
	b->stats_held = false;
	virtio_unlock(b->vp);
	r = virtio_load(b->vp, in, errp);
	if (r < 0) {
		return r;
	}
	virtio_lock(b->vp);
	if (b->poll_interval > 0) {
		stats_arm(b, b->poll_interval);
	}
	virtio_unlock(b->vp);
	return vmstate_check_end(in, "the virtio-balloon device", errp);
}

const struct device_class virtio_balloon_class = {
	.name = "virtio-balloon",
	.each = DEVICE_ONCE,
	.wanted = balloon_wanted,
	.realize = balloon_realize,
	.unrealize = balloon_unrealize,
	.reset = balloon_device_reset,
	.state_version = 1,
	.save = balloon_save,
	.load = balloon_load,
	.qom_id = "balloon0",
	.qom_get = balloon_qom_get,
	.qom_set = balloon_qom_set,
};
