/*
 * Split virtqueue processing (virtio 1.x §2.7) with every guest value
 * bounded. The host is x86-64, so the rings' little-endian fields are read
 * directly; the x86 memory model makes the spec's read barriers compiler
 * barriers, while the used-index publish followed by the event read needs a
 * full fence.
 *
 * Threads: see virtqueue.h (one thread at a time per queue).
 */
#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "hw/device.h"
#include "hw/virtio/virtqueue.h"

/* Offsets in 16-bit units inside the avail and used rings. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 1
#define AVAIL_RING 2
#define USED_FLAGS 0
#define USED_IDX 1

uint64_t virtq_desc_bytes(uint16_t size)
{
	return 16ull * size;
}

uint64_t virtq_avail_bytes(uint16_t size)
{
	return 6ull + 2ull * size;
}

uint64_t virtq_used_bytes(uint16_t size)
{
	return 6ull + 8ull * size;
}

void virtq_reset(struct virtq *vq, struct guest_mem *mem)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
}

int virtq_enable(struct virtq *vq)
{
	uint16_t size = vq->size;

	if (size == 0 || size > VIRTQ_MAX_SIZE || !IS_POWER_OF_2(size)) {
		return -EINVAL;
	}
	/* virtio 1.x §2.7: alignment 16, 2 and 4 for desc, avail and used */
	if (!IS_ALIGNED(vq->desc_gpa, 16) || !IS_ALIGNED(vq->avail_gpa, 2) ||
	    !IS_ALIGNED(vq->used_gpa, 4)) {
		return -EINVAL;
	}
	vq->desc = guest_mem_ptr(vq->mem, vq->desc_gpa, virtq_desc_bytes(size));
	vq->avail = guest_mem_ptr(vq->mem, vq->avail_gpa, virtq_avail_bytes(size));
	vq->used = guest_mem_ptr(vq->mem, vq->used_gpa, virtq_used_bytes(size));
	if (!vq->desc || !vq->avail || !vq->used) {
		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
		return -EFAULT;
	}
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->signalled_used_valid = false;
	vq->inflight = 0;
	vq->broken = false;
	vq->enabled = true;
	return 0;
}

static inline uint16_t avail_idx(struct virtq *vq)
{
	return __atomic_load_n(&vq->avail[AVAIL_IDX], __ATOMIC_ACQUIRE);
}

static inline uint16_t *used_event_p(struct virtq *vq)
{
	return &vq->avail[AVAIL_RING + vq->size];
}

static inline uint16_t *avail_event_p(struct virtq *vq)
{
	return (uint16_t *)((char *)vq->used + 4 + 8u * vq->size);
}

static bool usable(struct virtq *vq)
{
	return vq->enabled && !vq->broken;
}

bool virtq_has_avail(struct virtq *vq)
{
	if (!usable(vq)) {
		return false;
	}
	return avail_idx(vq) != vq->last_avail;
}

uint16_t virtq_avail_count(struct virtq *vq)
{
	if (!usable(vq)) {
		return 0;
	}
	return (uint16_t)(avail_idx(vq) - vq->last_avail);
}

static int fail(struct virtq *vq, int err)
{
	vq->broken = true;
	return err;
}

/* Append one descriptor's buffer to @elem; order: all out before any in. */
static int add_buffer(struct virtq *vq, struct virtq_elem *elem, const struct virtq_desc *d,
		      unsigned *niov)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	void *p;

	if (!writable && elem->in_num > 0) {
		return -EINVAL; /* readable after writable (§2.7.4.2) */
	}
	if (d->len == 0) {
		return 0;
	}
	if (*niov >= VIRTQ_MAX_IOV) {
		return -E2BIG;
	}
	p = guest_mem_ptr(vq->mem, d->addr, d->len);
	if (!p) {
		return -EFAULT;
	}
	elem->iov[*niov].iov_base = p;
	elem->iov[*niov].iov_len = d->len;
	(*niov)++;
	if (writable) {
		elem->in_num++;
		elem->in_len += d->len;
	} else {
		elem->out_num++;
		elem->out_len += d->len;
	}
	if (elem->in_len + elem->out_len > UINT32_MAX) {
		return -EOVERFLOW;
	}
	return 0;
}

/* Walk an indirect table (§2.7.5.3). Nested indirection is invalid. */
static int walk_indirect(struct virtq *vq, struct virtq_elem *elem, const struct virtq_desc *ind,
			 unsigned *niov)
{
	const struct virtq_desc *table;
	unsigned n, i, steps;
	int r;

	if (!vq->indirect || (ind->flags & VIRTQ_DESC_F_NEXT)) {
		return -EINVAL;
	}
	if (ind->len == 0 || ind->len % sizeof(struct virtq_desc) != 0) {
		return -EINVAL;
	}
	n = ind->len / sizeof(struct virtq_desc);
	if (n > VIRTQ_MAX_INDIRECT) {
		return -E2BIG;
	}
	table = guest_mem_ptr(vq->mem, ind->addr, ind->len);
	if (!table) {
		return -EFAULT;
	}
	i = 0;
	for (steps = 0;; steps++) {
		struct virtq_desc d;

		if (steps >= n) {
			return -ELOOP;
		}
		memcpy(&d, &table[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			return -EINVAL;
		}
		r = add_buffer(vq, elem, &d, niov);
		if (r < 0) {
			return r;
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT)) {
			return 0;
		}
		if (d.next >= n) {
			return -EINVAL;
		}
		i = d.next;
	}
}

int virtq_pop(struct virtq *vq, struct virtq_elem *elem)
{
	uint16_t idx, head, i;
	unsigned niov = 0, steps;
	int r;

	if (!usable(vq)) {
		return 0;
	}
	idx = avail_idx(vq);
	if (idx == vq->last_avail) {
		return 0;
	}
	/* the driver may never be more than a queue ahead (§2.7.13.3) */
	if ((uint16_t)(idx - vq->last_avail) > vq->size) {
		return fail(vq, -EINVAL);
	}
	head = __atomic_load_n(&vq->avail[AVAIL_RING + (vq->last_avail & (vq->size - 1))],
			       __ATOMIC_RELAXED);
	if (head >= vq->size) {
		return fail(vq, -EINVAL);
	}
	elem->head = head;
	elem->out_num = elem->in_num = 0;
	elem->out_len = elem->in_len = 0;

	i = head;
	for (steps = 0;; steps++) {
		struct virtq_desc d;

		if (steps >= vq->size) {
			return fail(vq, -ELOOP);
		}
		memcpy(&d, &vq->desc[i], sizeof(d));
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* an indirect descriptor is the whole chain (§2.7.5.3.1) */
			if (steps != 0) {
				return fail(vq, -EINVAL);
			}
			r = walk_indirect(vq, elem, &d, &niov);
			if (r < 0) {
				return fail(vq, r);
			}
			break;
		}
		r = add_buffer(vq, elem, &d, &niov);
		if (r < 0) {
			return fail(vq, r);
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT)) {
			break;
		}
		if (d.next >= vq->size) {
			return fail(vq, -EINVAL);
		}
		i = d.next;
	}
	elem->out = elem->iov;
	elem->in = elem->iov + elem->out_num;
	vq->last_avail++;
	vq->inflight++;
	if (vq->event_idx) {
		__atomic_store_n(avail_event_p(vq), vq->last_avail, __ATOMIC_RELAXED);
	}
	return 1;
}

void virtq_unpop(struct virtq *vq, uint16_t n)
{
	n = MIN(n, vq->inflight);
	vq->last_avail -= n;
	vq->inflight -= n;
	if (vq->event_idx && vq->enabled) {
		__atomic_store_n(avail_event_p(vq), vq->last_avail, __ATOMIC_RELAXED);
	}
}

void virtq_push_head(struct virtq *vq, uint16_t head, uint32_t len)
{
	uint32_t *ent;
	uint16_t old;

	if (!vq->enabled) {
		return;
	}
	ent = (uint32_t *)((char *)vq->used + 4 + 8u * (vq->used_idx & (vq->size - 1)));
	__atomic_store_n(&ent[0], (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&ent[1], len, __ATOMIC_RELAXED);
	old = vq->used_idx++;
	__atomic_store_n(&vq->used[USED_IDX], vq->used_idx, __ATOMIC_RELEASE);
	/* For live migration: KVM's dirty log does not see the device's writes. */
	guest_mem_mark_dirty(vq->mem, ent, 8);
	guest_mem_mark_dirty(vq->mem, vq->used, 4);
	if (vq->inflight) {
		vq->inflight--;
	}
	/* the push stepped over the last signalled index: it no longer tells us anything */
	if ((uint16_t)(vq->used_idx - vq->signalled_used) < (uint16_t)(vq->used_idx - old)) {
		vq->signalled_used_valid = false;
	}
}

void virtq_push(struct virtq *vq, const struct virtq_elem *elem, uint32_t len)
{
	/* The device-writable buffers may have been written since the pop. */
	for (unsigned i = 0; vq->enabled && i < elem->in_num; i++) {
		guest_mem_mark_dirty(vq->mem, elem->in[i].iov_base, elem->in[i].iov_len);
	}
	virtq_push_head(vq, elem->head, len);
}

static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old, event;
	bool valid;

	if (!vq->enabled) {
		return false;
	}
	/* the used index must be visible before we read the driver's wish */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx) {
		uint16_t flags = __atomic_load_n(&vq->avail[AVAIL_FLAGS], __ATOMIC_RELAXED);

		return !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	old = vq->signalled_used;
	valid = vq->signalled_used_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (!valid) {
		return true;
	}
	event = __atomic_load_n(used_event_p(vq), __ATOMIC_RELAXED);
	return need_event(event, vq->used_idx, old);
}

void virtq_set_notification(struct virtq *vq, bool enable)
{
	if (!vq->enabled) {
		return;
	}
	if (vq->event_idx) {
		if (enable) {
			__atomic_store_n(avail_event_p(vq), avail_idx(vq), __ATOMIC_RELAXED);
		}
	} else {
		__atomic_store_n(&vq->used[USED_FLAGS], enable ? 0 : VIRTQ_USED_F_NO_NOTIFY,
				 __ATOMIC_RELAXED);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}
