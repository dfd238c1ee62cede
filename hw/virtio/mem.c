/*
 * virtio-mem (virtio 1.2 §5.15 "Memory Device"), as QEMU 7.2's
 * virtio-mem-pci: a region of device memory (reserved by the machine at
 * vm_new, hw/core/vm-config-mem.c) that the driver plugs and unplugs in
 * blocks of block_size at the host's request (requested_size, set with
 * qom-set). The device keeps a bitmap of plugged blocks; unplugged blocks
 * are discarded (guest_mem_discard), so the host gets the memory back.
 * Every guest request is checked against the usable region, the block
 * alignment and the bitmap, and answered with the spec's ACK / NACK /
 * BUSY / ERROR; a malformed request (short buffers, unknown type) is a
 * protocol violation that sets DEVICE_NEEDS_RESET, as QEMU does.
 *
 * Events: MEMORY_DEVICE_SIZE_CHANGE when the plugged size changes, at most
 * one per second per device with the latest size delivered at the end of
 * the second (QEMU's monitor throttle for this event).
 *
 * Threads: realize/unrealize and the qom/query hooks on the control
 * thread; config reads on vCPU threads and requests on the I/O thread.
 * All state is under the transport lock (virtio_lock).
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/iov.h"
#include "common/log.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/virtio/virtio.h"

#define VIRTIO_ID_MEM 24
#define VIRTIO_MEM_F_ACPI_PXM 0
#define MEM_QUEUE_SIZE 128
/* QEMU's VIRTIO_MEM_USABLE_EXTENT on x86: room the driver may plug into beyond the request. */
#define MEM_USABLE_EXTENT (256ull << 20)
#define EVENT_INTERVAL_US 1000000

enum {
	REQ_PLUG = 0,
	REQ_UNPLUG = 1,
	REQ_UNPLUG_ALL = 2,
	REQ_STATE = 3,
};

enum {
	RESP_ACK = 0,
	RESP_NACK = 1,
	RESP_BUSY = 2,
	RESP_ERROR = 3,
};

enum {
	STATE_PLUGGED = 0,
	STATE_UNPLUGGED = 1,
	STATE_MIXED = 2,
};

/* §5.15.4, all little-endian (x86 host). */
struct virtio_mem_config {
	uint64_t block_size;
	uint16_t node_id;
	uint8_t padding[6];
	uint64_t addr;
	uint64_t region_size;
	uint64_t usable_region_size;
	uint64_t plugged_size;
	uint64_t requested_size;
} _packed_;

struct virtio_mem_req {
	uint16_t type;
	uint16_t padding[3];
	uint64_t addr;
	uint16_t nb_blocks;
	uint16_t padding2[3];
} _packed_;

struct virtio_mem_resp {
	uint16_t type;
	uint16_t padding[3];
	uint16_t state;
} _packed_;

struct virtio_mem {
	struct virtio_dev *vp;
	struct vm *vm;
	char *id, *memdev;
	uint64_t addr, region_size, block_size;
	uint64_t requested_size, usable_region_size, plugged_size;
	uint64_t nblocks;
	uint64_t *plugged; /* bitmap, one bit per block */
	/* MEMORY_DEVICE_SIZE_CHANGE throttle */
	struct event *timer;
	uint64_t last_event_us;
	bool event_pending;
	bool dying;
	struct virtq_elem elem;
};

static struct ratelimit mem_rl = RATELIMIT_INIT(5000000, 5);

static bool test_bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] & (1ull << (i % 64));
}

static void set_bits(uint64_t *bm, uint64_t first, uint64_t n, bool v)
{
	for (uint64_t i = first; i < first + n; i++) {
		if (v) {
			bm[i / 64] |= 1ull << (i % 64);
		} else {
			bm[i / 64] &= ~(1ull << (i % 64));
		}
	}
}

/* All of blocks [first, first+n) are in state @plugged. */
static bool all_in_state(const struct virtio_mem *m, uint64_t first, uint64_t n, bool plugged)
{
	for (uint64_t i = first; i < first + n; i++) {
		if (test_bit(m->plugged, i) != plugged) {
			return false;
		}
	}
	return true;
}

static void emit_size_change(struct virtio_mem *m)
{
	char path[128];

	snprintf(path, sizeof(path), "/machine/peripheral/%s", m->id);
	vm_emit_event(m->vm, "MEMORY_DEVICE_SIZE_CHANGE",
		      json_pack("{s:s, s:I, s:s}", "id", m->id, "size", (json_int_t)m->plugged_size,
				"qom-path", path));
	m->last_event_us = now_monotonic_us();
	m->event_pending = false;
}

/* The plugged size changed (lock held): the event now or at the end of the interval. */
static void size_changed(struct virtio_mem *m)
{
	uint64_t now = now_monotonic_us();

	if (m->event_pending) {
		return; /* the timer sends the latest size */
	}
	if (m->last_event_us == 0 || now - m->last_event_us >= EVENT_INTERVAL_US) {
		emit_size_change(m);
		return;
	}
	m->event_pending = true;
	if (!m->dying) {
		uint64_t wait = m->last_event_us + EVENT_INTERVAL_US - now;
		struct timeval tv = {.tv_sec = (time_t)(wait / 1000000),
				     .tv_usec = (suseconds_t)(wait % 1000000)};

		evtimer_add(m->timer, &tv);
	}
}

static void event_timer(evutil_socket_t fd, short what, void *opaque)
{
	struct virtio_mem *m = opaque;

	(void)fd;
	(void)what;
	virtio_lock(m->vp);
	if (m->event_pending && !m->dying) {
		emit_size_change(m);
	}
	virtio_unlock(m->vp);
}

/* QEMU's virtio_mem_resize_usable_region(). */
static void resize_usable(struct virtio_mem *m, uint64_t requested, bool can_shrink)
{
	uint64_t size = MIN(m->region_size, requested + MEM_USABLE_EXTENT);

	size = ALIGN_UP(size, m->block_size);
	if (!requested) {
		size = 0;
	}
	if (size < m->usable_region_size && !can_shrink) {
		return;
	}
	m->usable_region_size = size;
}

/* QEMU's virtio_mem_valid_range(): inside the usable region, aligned, non-empty. */
static bool valid_range(const struct virtio_mem *m, uint64_t gpa, uint64_t size)
{
	if (!IS_ALIGNED(gpa, m->block_size) || size == 0 || gpa + size < gpa) {
		return false;
	}
	if (gpa < m->addr || gpa >= m->addr + m->usable_region_size) {
		return false;
	}
	return gpa + size <= m->addr + m->usable_region_size;
}

static void discard(struct virtio_mem *m, uint64_t gpa, uint64_t size)
{
	int r = guest_mem_discard(vm_guest_mem(m->vm), gpa, size);

	if (r < 0) {
		log_ratelimited(&mem_rl, LOG_WARNING, vm_name(m->vm), m->id,
				"cannot discard 0x%" PRIx64 "+0x%" PRIx64 ": %s", gpa, size,
				strerror(-r));
	}
}

static uint16_t plug_unplug(struct virtio_mem *m, uint64_t gpa, uint16_t nb_blocks, bool plug)
{
	uint64_t size = (uint64_t)nb_blocks * m->block_size;
	uint64_t first;

	if (!valid_range(m, gpa, size)) {
		return RESP_ERROR;
	}
	if (plug && m->plugged_size + size > m->requested_size) {
		return RESP_NACK;
	}
	first = (gpa - m->addr) / m->block_size;
	if (!all_in_state(m, first, nb_blocks, !plug)) {
		return RESP_ERROR;
	}
	if (!plug) {
		discard(m, gpa, size);
	}
	set_bits(m->plugged, first, nb_blocks, plug);
	m->plugged_size = plug ? m->plugged_size + size : m->plugged_size - size;
	size_changed(m);
	return RESP_ACK;
}

static void unplug_all(struct virtio_mem *m)
{
	if (m->plugged_size) {
		discard(m, m->addr, m->region_size);
		memset(m->plugged, 0, (m->nblocks + 63) / 64 * sizeof(uint64_t));
		m->plugged_size = 0;
		size_changed(m);
	}
	resize_usable(m, m->requested_size, true);
}

static uint16_t state_of(struct virtio_mem *m, uint64_t gpa, uint16_t nb_blocks, uint16_t *state)
{
	uint64_t size = (uint64_t)nb_blocks * m->block_size;
	uint64_t first;

	if (!valid_range(m, gpa, size)) {
		return RESP_ERROR;
	}
	first = (gpa - m->addr) / m->block_size;
	*state = all_in_state(m, first, nb_blocks, true)    ? STATE_PLUGGED
		 : all_in_state(m, first, nb_blocks, false) ? STATE_UNPLUGGED
							    : STATE_MIXED;
	return RESP_ACK;
}

/* Drain the guest request queue. Lock held. */
static void mem_process(struct virtio_mem *m)
{
	struct virtq *vq = virtio_queue(m->vp, 0);
	bool pushed = false;

	for (;;) {
		struct virtio_mem_req req;
		struct virtio_mem_resp resp = {0};
		uint16_t state = 0;
		int n = virtq_pop(vq, &m->elem);

		if (n < 0) {
			virtio_set_needs_reset(m->vp, "malformed virtio-mem queue");
			break;
		}
		if (n == 0) {
			break;
		}
		/* protocol violations: the device gives up (QEMU's virtio_error, no answer) */
		if (iov_to_buf(m->elem.out, m->elem.out_num, 0, &req, sizeof(req)) < sizeof(req) ||
		    m->elem.in_len < sizeof(resp)) {
			virtio_set_needs_reset(m->vp,
					       "virtio-mem protocol violation: short request");
			break;
		}
		switch (req.type) {
		case REQ_PLUG:
		case REQ_UNPLUG:
			resp.type = plug_unplug(m, req.addr, req.nb_blocks, req.type == REQ_PLUG);
			break;
		case REQ_UNPLUG_ALL:
			unplug_all(m);
			resp.type = RESP_ACK;
			break;
		case REQ_STATE:
			resp.type = state_of(m, req.addr, req.nb_blocks, &state);
			resp.state = state;
			break;
		default:
			virtio_set_needs_reset(
				m->vp, "virtio-mem protocol violation: unknown request type");
			goto out;
		}
		iov_from_buf(m->elem.in, m->elem.in_num, 0, &resp, sizeof(resp));
		for (unsigned i = 0; i < m->elem.in_num; i++) {
			guest_mem_mark_dirty(vm_guest_mem(m->vm), m->elem.in[i].iov_base,
					     m->elem.in[i].iov_len);
		}
		virtq_push(vq, &m->elem, sizeof(resp));
		pushed = true;
	}
out:
	if (pushed) {
		virtio_notify(m->vp, 0);
	}
}

static void mem_queue_notify(void *dev, unsigned q)
{
	if (q == 0) {
		mem_process(dev);
	}
}

static void mem_config_read(void *dev, unsigned off, void *buf, unsigned len)
{
	struct virtio_mem *m = dev;
	struct virtio_mem_config c = {
		.block_size = m->block_size,
		.node_id = 0,
		.addr = m->addr,
		.region_size = m->region_size,
		.usable_region_size = m->usable_region_size,
		.plugged_size = m->plugged_size,
		.requested_size = m->requested_size,
	};

	memcpy(buf, (uint8_t *)&c + off, len);
}

static void mem_config_write(void *dev, unsigned off, const void *buf, unsigned len)
{
	(void)dev; /* the configuration is read-only for the driver */
	(void)off;
	(void)buf;
	(void)len;
}

static int mem_set_features(void *dev, uint64_t features)
{
	(void)dev;
	(void)features; /* nothing to refuse: ACPI_PXM only says what node_id means */
	return 0;
}

static void mem_reset(void *dev)
{
	(void)dev; /* a driver reset keeps what is plugged (the system reset unplugs) */
}

static const struct virtio_device_ops mem_ops = {
	.name = "virtio-mem",
	.device_id = VIRTIO_ID_MEM,
	.pci_class = 0x00ff00,
	.config_size = sizeof(struct virtio_mem_config),
	.config_read = mem_config_read,
	.config_write = mem_config_write,
	.set_features = mem_set_features,
	.queue_notify = mem_queue_notify,
	.reset = mem_reset,
};

static int mem_realize(struct vm *vm, const void *item, void **ret_state, struct error **errp)
{
	const struct vm_memdev_config *cfg = item;
	struct virtio_dev_config vc = {
		.ops = &mem_ops,
		.id = cfg->id,
		/*
		 * As QEMU 7.2's pc machine: node_id is an ACPI proximity domain
		 * (0; vmmd has no SRAT, so the guest picks the node itself), and
		 * UNPLUGGED_INACCESSIBLE is not offered (QEMU's "auto" leaves it
		 * off): a driver may read unplugged memory, which reads zeroes.
		 */
		.features = 1ull << VIRTIO_MEM_F_ACPI_PXM,
		.nqueues = 1,
		.queue_max = MEM_QUEUE_SIZE,
	};
	struct virtio_mem *m;
	int r;

	if (!guest_mem_ptr(vm_guest_mem(vm), cfg->addr, cfg->size)) {
		return error_set(errp, EINVAL, "no device memory at 0x%" PRIx64 " for \"%s\"",
				 cfg->addr, cfg->id);
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	m->vm = vm;
	m->addr = cfg->addr;
	m->region_size = cfg->size;
	m->block_size = cfg->block_size;
	m->requested_size = cfg->requested_size;
	m->nblocks = cfg->size / cfg->block_size;
	m->id = strdup(cfg->id);
	m->memdev = strdup(cfg->memdev);
	m->plugged = calloc((m->nblocks + 63) / 64, sizeof(uint64_t));
	m->timer = evtimer_new(vm_io_base(vm), event_timer, m);
	if (!m->id || !m->memdev || !m->plugged || !m->timer) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	resize_usable(m, m->requested_size, true);
	vc.dev = m;
	r = virtio_dev_new(vm, &vc, &m->vp, errp);
	if (r < 0) {
		goto err;
	}
	*ret_state = m;
	return 0;
err:
	if (m->timer) {
		event_free(m->timer);
	}
	free(m->plugged);
	free(m->memdev);
	free(m->id);
	free(m);
	return r;
}

static void mem_unrealize(void *state)
{
	struct virtio_mem *m = state;

	virtio_lock(m->vp);
	m->dying = true;
	virtio_unlock(m->vp);
	event_free(m->timer);
	virtio_dev_free(m->vp);
	free(m->plugged);
	free(m->memdev);
	free(m->id);
	free(m);
}

/* System reset: as QEMU, everything is unplugged and the driver starts over. */
static void mem_device_reset(void *state)
{
	struct virtio_mem *m = state;

	virtio_dev_reset(m->vp);
	virtio_lock(m->vp);
	unplug_all(m);
	virtio_unlock(m->vp);
}

static json_t *mem_qom_get(void *state, const char *prop, struct error **errp)
{
	struct virtio_mem *m = state;
	json_t *v = NULL;

	virtio_lock(m->vp);
	if (strcmp(prop, "requested-size") == 0) {
		v = json_integer((json_int_t)m->requested_size);
	} else if (strcmp(prop, "size") == 0) {
		v = json_integer((json_int_t)m->plugged_size);
	} else if (strcmp(prop, "block-size") == 0) {
		v = json_integer((json_int_t)m->block_size);
	} else if (strcmp(prop, "memaddr") == 0) {
		v = json_integer((json_int_t)m->addr);
	} else if (strcmp(prop, "memdev") == 0) {
		char path[96];

		snprintf(path, sizeof(path), "/objects/%s", m->memdev);
		v = json_string(path);
	} else if (strcmp(prop, "node") == 0) {
		v = json_integer(0);
	} else {
		error_set(errp, ENOENT, "Property 'virtio-mem-pci.%s' not found", prop);
	}
	virtio_unlock(m->vp);
	return v;
}

static int mem_qom_set(void *state, const char *prop, json_t *value, struct error **errp)
{
	static const char *const readonly[] = {"size",	 "block-size", "memaddr",
					       "memdev", "node",       NULL};
	struct virtio_mem *m = state;
	uint64_t v;

	for (const char *const *p = readonly; *p; p++) {
		if (strcmp(prop, *p) == 0) {
			/* QEMU: size is read-only; the others are fixed once realized */
			return strcmp(prop, "size") == 0
				       ? error_set(errp, EPERM,
						   "Property 'virtio-mem.size' is not writable")
				       : error_set(errp, EBUSY,
						   "Attempt to set property '%s' on device '%s' "
						   "(type 'virtio-mem') after it was realized",
						   prop, m->id);
		}
	}
	if (strcmp(prop, "requested-size") != 0) {
		return error_set(errp, ENOENT, "Property 'virtio-mem-pci.%s' not found", prop);
	}
	if (!json_is_integer(value)) {
		return error_set(errp, EINVAL, "Parameter 'requested-size' expects uint64");
	}
	v = (uint64_t)json_integer_value(value); /* as QEMU: -2 is 2^64 - 2, then refused */
	virtio_lock(m->vp);
	if (!IS_ALIGNED(v, m->block_size)) {
		virtio_unlock(m->vp);
		return error_set(errp, EINVAL,
				 "'requested-size' has to be multiples of 'block-size' (0x%" PRIx64
				 ")",
				 m->block_size);
	}
	if (v > m->region_size) {
		virtio_unlock(m->vp);
		return error_set(errp, EINVAL,
				 "'requested-size' cannot exceed the memory backend size(0x%" PRIx64
				 ")",
				 m->region_size);
	}
	if (v != m->requested_size) {
		m->requested_size = v;
		resize_usable(m, v, false);
		virtio_config_changed(m->vp);
	}
	virtio_unlock(m->vp);
	return 0;
}

static json_t *mem_query_memory(void *state)
{
	struct virtio_mem *m = state;
	char path[96];
	json_t *j;

	snprintf(path, sizeof(path), "/objects/%s", m->memdev);
	virtio_lock(m->vp);
	j = json_pack("{s:s, s:{s:s, s:I, s:I, s:I, s:i, s:I, s:I, s:s}}", "type", "virtio-mem",
		      "data", "memdev", path, "memaddr", (json_int_t)m->addr, "block-size",
		      (json_int_t)m->block_size, "size", (json_int_t)m->plugged_size, "node", 0,
		      "max-size", (json_int_t)m->region_size, "requested-size",
		      (json_int_t)m->requested_size, "id", m->id);
	virtio_unlock(m->vp);
	return j;
}

static uint64_t mem_plugged_memory(void *state)
{
	struct virtio_mem *m = state;
	uint64_t v;

	virtio_lock(m->vp);
	v = m->plugged_size;
	virtio_unlock(m->vp);
	return v;
}

/*
 * Save: the host's request, the usable region and the plugged bitmap (the
 * plugged blocks' contents travel with the RAM: the region is guest memory),
 * then the transport. Version 1.
 */
static int mem_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct virtio_mem *m = state;
	uint32_t words = (uint32_t)((m->nblocks + 63) / 64);

	virtio_lock(m->vp);
	vmstate_put_u64(out, m->region_size);
	vmstate_put_u64(out, m->block_size);
	vmstate_put_u64(out, m->requested_size);
	vmstate_put_u64(out, m->usable_region_size);
	vmstate_put_u64(out, m->plugged_size);
	vmstate_put_blob(out, m->plugged, words * (uint32_t)sizeof(uint64_t));
	virtio_unlock(m->vp);
	return virtio_save(m->vp, out, errp);
}

static int mem_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct virtio_mem *m = state;
	uint32_t words = (uint32_t)((m->nblocks + 63) / 64);
	uint64_t region, block, requested, usable, plugged, count = 0;
	uint64_t *bm;
	int r;

	if (version != 1) {
		return error_set(errp, EINVAL, "virtio-mem \"%s\": unknown state version %u", m->id,
				 version);
	}
	region = vmstate_get_u64(in);
	block = vmstate_get_u64(in);
	requested = vmstate_get_u64(in);
	usable = vmstate_get_u64(in);
	plugged = vmstate_get_u64(in);
	bm = calloc(words ? words : 1, sizeof(uint64_t));
	if (!bm) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	vmstate_get_blob(in, bm, words * (uint32_t)sizeof(uint64_t));
	for (uint64_t i = 0; i < m->nblocks; i++) {
		count += test_bit(bm, i);
	}
	if (in->failed || region != m->region_size || block != m->block_size ||
	    requested > region || !IS_ALIGNED(requested, block) || usable > region ||
	    !IS_ALIGNED(usable, block) || plugged != count * block ||
	    (m->nblocks % 64 && (bm[words - 1] >> (m->nblocks % 64)))) {
		free(bm);
		return error_set(errp, EINVAL,
				 "virtio-mem \"%s\": the saved state does not fit this device",
				 m->id);
	}
	/* the device's state first: the transport's load kicks the queue */
	virtio_lock(m->vp);
	memcpy(m->plugged, bm, words * sizeof(uint64_t));
	m->requested_size = requested;
	m->usable_region_size = usable;
	m->plugged_size = plugged;
	virtio_unlock(m->vp);
	free(bm);
	r = virtio_load(m->vp, in, errp);
	return r < 0 ? r : vmstate_check_end(in, "the virtio-mem device", errp);
}

const struct device_class virtio_mem_class = {
	.name = "virtio-mem",
	.each = DEVICE_PER_MEMDEV,
	.realize = mem_realize,
	.unrealize = mem_unrealize,
	.reset = mem_device_reset,
	.qom_get = mem_qom_get,
	.qom_set = mem_qom_set,
	.query_memory = mem_query_memory,
	.plugged_memory = mem_plugged_memory,
	.state_version = 1,
	.save = mem_save,
	.load = mem_load,
};
