/*
 * Split virtqueues (virtio 1.x §2.7) over guest RAM, with indirect
 * descriptors and VIRTIO_F_EVENT_IDX. Every address, length, index and chain
 * the guest supplies is checked here: a ring the device cannot trust makes
 * virtq_pop() fail and marks the queue broken (the transport then sets
 * DEVICE_NEEDS_RESET); no guest value ever reaches host memory except through
 * guest_mem_ptr().
 *
 * Threads: a queue is used by one thread at a time: configured by the vCPU
 * thread that writes the transport registers while the queue is disabled,
 * then processed only on the VM's I/O thread. The guest side runs
 * concurrently; ring accesses use the barriers the spec requires.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct guest_mem;

#define VIRTQ_MAX_SIZE 1024u	 /* largest queue we offer (spec allows 32768) */
#define VIRTQ_MAX_IOV 1024u	 /* most buffers in one popped chain */
#define VIRTQ_MAX_INDIRECT 1024u /* most descriptors in one indirect table */

/* Descriptor flags and ring flags (virtio 1.x §2.7.5, §2.7.6, §2.7.8). */
#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY 1u

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq {
	struct guest_mem *mem;
	uint16_t size; /* power of two, 1..VIRTQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;	/* VIRTIO_F_INDIRECT_DESC negotiated */
	bool enabled;
	bool broken; /* a malformed ring was seen; nothing is processed until reset */

	/* host views of the rings, valid while enabled */
	struct virtq_desc *desc;
	uint16_t *avail; /* flags, idx, ring[size], used_event */
	uint16_t *used;	 /* flags, idx, {u32 id, u32 len}[size], avail_event */

	uint16_t last_avail; /* next avail entry to consume */
	uint16_t used_idx;   /* shadow of used->idx */
	uint16_t signalled_used;
	bool signalled_used_valid;
	uint16_t inflight; /* popped, not yet pushed */
};

/*
 * One popped descriptor chain: device-readable buffers first (out), then
 * device-writable ones (in). Zero-length descriptors are skipped. The
 * iovecs point into guest RAM; contents may change under the device, so
 * headers must be copied out once before they are checked.
 */
struct virtq_elem {
	uint16_t head;
	unsigned out_num, in_num;
	uint64_t out_len, in_len;
	struct iovec *out, *in; /* into iov[] */
	struct iovec iov[VIRTQ_MAX_IOV];
};

/* Reset to the disabled state (no guest memory referenced). */
void virtq_reset(struct virtq *vq, struct guest_mem *mem);

/*
 * Enable with the current size/desc_gpa/avail_gpa/used_gpa/event_idx/
 * indirect fields. -EINVAL if the size is not a power of two within
 * VIRTQ_MAX_SIZE or an area is misaligned, -EFAULT if an area is not wholly
 * inside guest RAM (the queue stays disabled).
 */
int virtq_enable(struct virtq *vq);

/*
 * Take the next available chain into @elem.
 * Returns 1 with @elem filled, 0 if the ring is empty (or the queue is
 * disabled or broken), or -errno for a malformed ring: -EFAULT address
 * outside RAM or wrapping, -ELOOP loop or chain longer than allowed,
 * -E2BIG too many buffers, -EINVAL bad index, flags or indirect table,
 * -EOVERFLOW total length above 4 GiB. After an error the queue is broken.
 */
int virtq_pop(struct virtq *vq, struct virtq_elem *elem);

/*
 * Give back the last @n popped chains unused (they become available again,
 * in order). Only valid before anything else is pushed or popped.
 */
void virtq_unpop(struct virtq *vq, uint16_t n);

/* Return a chain to the guest with @len bytes written into its in buffers. */
void virtq_push(struct virtq *vq, const struct virtq_elem *elem, uint32_t len);
void virtq_push_head(struct virtq *vq, uint16_t head, uint32_t len);

/* True if the driver wants an interrupt for what was pushed since the last one. */
bool virtq_should_notify(struct virtq *vq);

/*
 * Ask the driver (not) to notify for new buffers. After enabling, callers
 * must check virtq_has_avail() again to close the race with the driver.
 */
void virtq_set_notification(struct virtq *vq, bool enable);

/* True if chains are waiting (queue enabled, not broken). */
bool virtq_has_avail(struct virtq *vq);
/*
 * How many chains are waiting (0 if the queue is not enabled or broken);
 * more than the queue's size means the driver's index is bad, and the next
 * virtq_pop() fails.
 */
uint16_t virtq_avail_count(struct virtq *vq);

/* Bytes the ring areas occupy for a queue of @size (exposed for tests). */
uint64_t virtq_desc_bytes(uint16_t size);
uint64_t virtq_avail_bytes(uint16_t size);
uint64_t virtq_used_bytes(uint16_t size);
