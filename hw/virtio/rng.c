/*
 * virtio-rng (virtio 1.x §5.4): one request queue whose device-writable
 * buffers are filled from the host's getrandom(). Rate-limited with a token
 * bucket (VIRTIO_RNG_RATE bytes/s, bursts up to VIRTIO_RNG_BURST) so a guest
 * cannot drain the host pool or spin an I/O thread: when the bucket is
 * empty, buffers wait and a timer resumes the queue.
 *
 * Threads: realize/unrealize on the control thread; the queue and the timer
 * run on the VM's I/O thread under the transport lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include <event2/event.h>

#include "common/log.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/virtio/virtio.h"
#include "common/vmstate.h"

#define VIRTIO_ID_RNG 4
#define VIRTIO_RNG_RATE (1024u * 1024u) /* bytes per second */
#define VIRTIO_RNG_BURST (64u * 1024u)
#define VIRTIO_RNG_QUEUE_SIZE 64

struct virtio_rng {
	struct virtio_dev *vp;
	struct event *timer;
	uint64_t tokens; /* bytes we may hand out now */
	uint64_t last_us;
	bool dying; /* unrealize has begun: no new timers */
	struct virtq_elem elem;
};

static void rng_refill(struct virtio_rng *r)
{
	uint64_t now = now_monotonic_us();
	uint64_t add = (now - r->last_us) * VIRTIO_RNG_RATE / 1000000;

	if (add) {
		r->tokens = MIN(r->tokens + add, (uint64_t)VIRTIO_RNG_BURST);
		r->last_us = now;
	}
}

/* Fill as many waiting buffers as the bucket allows. Transport lock held. */
static void rng_process(struct virtio_rng *r)
{
	struct virtq *vq = virtio_queue(r->vp, 0);
	bool pushed = false;

	rng_refill(r);
	while (r->tokens > 0) {
		uint64_t done = 0;
		unsigned i;
		int n = virtq_pop(vq, &r->elem);

		if (n < 0) {
			virtio_set_needs_reset(r->vp, "malformed request queue");
			return;
		}
		if (n == 0) {
			break;
		}
		for (i = 0; i < r->elem.in_num && r->tokens > done; i++) {
			size_t want = MIN(r->elem.in[i].iov_len, r->tokens - done);
			ssize_t got = getrandom(r->elem.in[i].iov_base, want, GRND_NONBLOCK);

			if (got <= 0) {
				break;
			}
			done += got;
			if ((size_t)got < r->elem.in[i].iov_len) {
				break;
			}
		}
		r->tokens -= done;
		virtq_push(vq, &r->elem, done);
		pushed = true;
	}
	if (pushed) {
		virtio_notify(r->vp, 0);
	}
	if (r->tokens == 0 && !r->dying && virtq_has_avail(vq)) {
		struct timeval tv = {.tv_sec = 0, .tv_usec = 20000};

		evtimer_add(r->timer, &tv);
	}
}

static void rng_timer(evutil_socket_t fd, short what, void *opaque)
{
	struct virtio_rng *r = opaque;

	(void)fd;
	(void)what;
	virtio_lock(r->vp);
	if (virtio_driver_ok(r->vp) && !r->dying) {
		rng_process(r);
	}
	virtio_unlock(r->vp);
}

static void rng_queue_notify(void *dev, unsigned q)
{
	(void)q;
	rng_process(dev);
}

static void rng_config_read(void *dev, unsigned off, void *buf, unsigned len)
{
	(void)dev;
	(void)off;
	(void)buf;
	(void)len;
}

static int rng_set_features(void *dev, uint64_t features)
{
	(void)dev;
	(void)features;
	return 0;
}

static void rng_reset(void *dev)
{
	(void)dev; /* requests complete synchronously: nothing is in flight */
}

static const struct virtio_device_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.pci_class = 0x00ff00,
	.config_size = 0,
	.config_read = rng_config_read,
	.set_features = rng_set_features,
	.queue_notify = rng_queue_notify,
	.reset = rng_reset,
};

static int rng_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct virtio_dev_config vc = {
		.ops = &rng_ops,
		.id = "rng0",
		.features = 0,
		.nqueues = 1,
		.queue_max = VIRTIO_RNG_QUEUE_SIZE,
	};
	struct virtio_rng *r;
	int ret;

	(void)cfg;
	r = calloc(1, sizeof(*r));
	if (!r) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r->tokens = VIRTIO_RNG_BURST;
	r->last_us = now_monotonic_us();
	r->timer = evtimer_new(vm_io_base(vm), rng_timer, r);
	if (!r->timer) {
		free(r);
		return error_set(errp, ENOMEM, "virtio-rng: cannot create its timer");
	}
	vc.dev = r;
	ret = virtio_dev_new(vm, &vc, &r->vp, errp);
	if (ret < 0) {
		event_free(r->timer);
		free(r);
		return ret;
	}
	*ret_state = r;
	return 0;
}

static void rng_unrealize(void *state)
{
	struct virtio_rng *r = state;

	/* the I/O thread may still be running: stop the timer, then the kicks */
	virtio_lock(r->vp);
	r->dying = true;
	virtio_unlock(r->vp);
	event_free(r->timer);
	virtio_dev_free(r->vp);
	free(r);
}

static void rng_device_reset(void *state)
{
	struct virtio_rng *r = state;

	virtio_dev_reset(r->vp);
}

static bool rng_wanted(const struct vm_config *cfg, const void *item)
{
	return cfg->rng;
}

/* The transport is all the state: the model's is rebuilt from the features. */
static int rng_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct virtio_rng *r = state;

	return virtio_save(r->vp, out, errp);
}

static int rng_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct virtio_rng *r = state;
	int ret = virtio_load(r->vp, in, errp);

	return ret < 0 ? ret : vmstate_check_end(in, "the virtio-rng device", errp);
}

const struct device_class virtio_rng_class = {
	.name = "virtio-rng",
	.each = DEVICE_ONCE,
	.wanted = rng_wanted,
	.realize = rng_realize,
	.unrealize = rng_unrealize,
	.reset = rng_device_reset,
	.state_version = 1,
	.save = rng_save,
	.load = rng_load,
};
