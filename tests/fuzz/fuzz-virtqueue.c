/*
 * libFuzzer target: split virtqueue chains (hw/virtio/virtqueue.c) over a
 * fake guest RAM filled from the input: descriptor tables, avail and used
 * rings, indirect tables, all guest-controlled. Every chain popped must lie
 * inside guest RAM; pops and pushes repeat as a device would.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hw/core/memory.h"
#include "hw/virtio/virtqueue.h"

#define RAM_SIZE (64u << 10)

static uint8_t *ram;

void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	(void)mem;
	if (gpa + len < gpa || gpa > RAM_SIZE || len > RAM_SIZE - gpa) {
		return NULL;
	}
	return ram + gpa;
}

/* Live migration's dirty marking: nothing tracks in the fuzzer. */
void guest_mem_mark_dirty(struct guest_mem *mem, const void *host, size_t len)
{
	(void)mem;
	(void)host;
	(void)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_elem *elem;
	struct virtq vq;
	uint8_t p[8] = {0};

	if (!ram) {
		ram = malloc(RAM_SIZE);
		elem = malloc(sizeof(*elem));
		if (!ram || !elem) {
			abort();
		}
	}
	memcpy(p, data, size < sizeof(p) ? size : sizeof(p));
	memset(ram, 0, RAM_SIZE);
	if (size > sizeof(p)) {
		memcpy(ram, data + sizeof(p),
		       size - sizeof(p) < RAM_SIZE ? size - sizeof(p) : RAM_SIZE);
	}
	virtq_reset(&vq, NULL);
	vq.size = (uint16_t)(1u << (p[0] % 9)); /* 1..256 */
	vq.desc_gpa = (uint64_t)p[1] << 8;
	vq.avail_gpa = (uint64_t)p[2] << 8;
	vq.used_gpa = (uint64_t)p[3] << 8;
	vq.indirect = p[4] & 1;
	vq.event_idx = p[4] & 2;
	if (virtq_enable(&vq) < 0) {
		return 0;
	}
	for (int i = 0; i < 64; i++) {
		int r = virtq_pop(&vq, elem);

		if (r <= 0) {
			break;
		}
		for (unsigned k = 0; k < elem->out_num; k++) {
			const uint8_t *b = elem->out[k].iov_base;

			if (b < ram || b + elem->out[k].iov_len > ram + RAM_SIZE) {
				abort();
			}
		}
		for (unsigned k = 0; k < elem->in_num; k++) {
			uint8_t *b = elem->in[k].iov_base;

			if (b < ram || b + elem->in[k].iov_len > ram + RAM_SIZE) {
				abort();
			}
			memset(b, 0xa5, elem->in[k].iov_len);
		}
		if (p[5] & (1u << (i % 8))) {
			virtq_push(&vq, elem, elem->in_len);
			virtq_should_notify(&vq);
		} else {
			virtq_unpop(&vq, 1);
			break;
		}
	}
	return 0;
}
