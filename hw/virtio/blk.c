/*
 * virtio-blk (virtio 1.x §5.2) on the block layer: read, write, flush,
 * discard, write-zeroes and get-id; one queue per vCPU by default; read-only
 * disks; the serial number; adjacent reads or writes popped together are
 * merged into one block request; an I/O error policy per direction
 * (werror/rerror "report": the guest sees VIRTIO_BLK_S_IOERR; "stop": the
 * request is parked, the VM goes to io-error with BLOCK_IO_ERROR, and parked
 * requests are retried once the VM runs again).
 *
 * Every request header is copied out of guest memory once, then checked:
 * a header that is short or not device-readable, a data length that is not
 * a multiple of 512, a range past the end of the disk, or a write to a
 * read-only disk fails that request with IOERR; a chain without room for
 * the status byte cannot be answered and marks the device NEEDS_RESET.
 *
 * Threads: realize/unrealize on the control thread; queue processing and
 * block completions on the VM's I/O thread (the block aio context is bound
 * to it), under the transport lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/iov.h"
#include "common/list.h"
#include "common/log.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/virtio/virtio.h"
#include "common/vmstate.h"
#include "vmmd/block.h"

#define VIRTIO_ID_BLOCK 2

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define BLK_QUEUE_SIZE 256
#define BLK_MAX_QUEUES 64
#define BLK_SEG_MAX (VIRTQ_MAX_IOV - 2)
#define BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per request */
#define BLK_MERGE_MAX_BYTES (4u << 20)
#define BLK_MERGE_MAX_IOV 1024u
#define BLK_RETRY_US 200000

struct blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

struct blk_outhdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_dwz_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct virtio_blk;

struct blk_req {
	struct list_head link; /* parked list */
	struct virtio_blk *b;
	unsigned q;
	uint64_t gen;
	uint32_t type;
	enum block_op op;
	uint64_t offset, len;
	unsigned flags;
	uint8_t *status;
	uint32_t used_len;
	bool flush_after; /* write-through for drivers without VIRTIO_BLK_F_FLUSH */
	/* merging: the head owns @iov covering itself and @next... */
	struct blk_req *next;
	struct iovec *iov;
	unsigned iovcnt;
	unsigned merged; /* head: requests merged into it (query-blockstats) */
	uint64_t t0;	 /* head: first submission (block_stats_now_ns) */
	struct virtq_elem elem;
};

struct virtio_blk {
	struct virtio_dev *vp;
	struct vm *vm;
	struct block_node *bs;
	struct block_aio_ctx *aio;
	char *id;
	char serial[VIRTIO_BLK_ID_BYTES];
	bool readonly;
	bool stop_on_rerror, stop_on_werror;
	unsigned nqueues;
	uint64_t sectors;
	uint64_t features;
	struct blk_config config;
	struct list_head parked;
	struct event *retry_timer;
	unsigned inflight;
	/*
	 * I/O limits (block_set_io_throttle; device lock): reads and writes
	 * over them wait in order of arrival, one queue per kind, until
	 * thr_timer (the I/O thread) lets them go.
	 */
	struct block_throttle thr;
	bool thr_on;
	struct list_head thr_q[2]; /* reads, writes */
	unsigned thr_n;
	struct event *thr_timer;
	bool dying;	     /* unrealize has begun: nothing new is submitted */
	struct ratelimit rl; /* this disk's I/O error messages */
};

static void blk_submit(struct blk_req *r);

static void req_free(struct blk_req *r)
{
	free(r->iov);
	free(r);
}

/* A (merged) request and those riding with it, never completed (a reset, a teardown). */
static void req_free_chain(struct blk_req *r)
{
	while (r) {
		struct blk_req *n = r->next;

		req_free(r);
		r = n;
	}
}

/* Write the status, return the chain, interrupt if wanted. Lock held. */
static void req_complete(struct blk_req *r, uint8_t status)
{
	struct virtio_blk *b = r->b;

	if (r->gen == virtio_generation(b->vp)) {
		*r->status = status;
		virtq_push(virtio_queue(b->vp, r->q), &r->elem, r->used_len);
		virtio_notify(b->vp, r->q);
	}
	req_free(r);
}

static const char *op_name(enum block_op op)
{
	return op == BLOCK_OP_READ ? "read" : "write";
}

static void emit_io_error(struct virtio_blk *b, enum block_op op, int err, bool stop)
{
	json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:b, s:s}", "device", b->id, "node-name",
				 block_node_name(b->bs) ? block_node_name(b->bs) : "", "operation",
				 op_name(op), "action", stop ? "stop" : "report", "nospace",
				 err == -ENOSPC, "reason", strerror(-err));

	vm_emit_event(b->vm, "BLOCK_IO_ERROR", data);
}

static void arm_retry(struct virtio_blk *b)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = BLK_RETRY_US};

	evtimer_add(b->retry_timer, &tv);
}

static void blk_done(void *opaque, int ret)
{
	struct blk_req *r = opaque, *n;
	struct virtio_blk *b = r->b;
	bool stale;

	virtio_lock(b->vp);
	b->inflight--;
	stale = r->gen != virtio_generation(b->vp);
	if (ret < 0 && !stale) {
		bool stop = r->op == BLOCK_OP_READ ? b->stop_on_rerror : b->stop_on_werror;

		log_ratelimited(&b->rl, LOG_WARNING, vm_name(b->vm), b->id,
				"%s error at offset %" PRIu64 ": %s", op_name(r->op), r->offset,
				strerror(-ret));
		emit_io_error(b, r->op, ret, stop);
		if (stop) {
			bool first = list_empty(&b->parked);

			list_add_tail(&r->link, &b->parked);
			if (first) {
				vm_request(b->vm, VM_CAUSE_IO_ERROR);
				arm_retry(b);
			}
			virtio_unlock(b->vp);
			return;
		}
	}
	if (ret == 0 && r->flush_after && !stale) {
		r->flush_after = false;
		r->op = BLOCK_OP_FLUSH;
		free(r->iov);
		r->iov = NULL;
		r->iovcnt = 0;
		/* the merged requests ride along with the head's flush */
		blk_submit(r);
		virtio_unlock(b->vp);
		return;
	}
	if (r->merged) {
		/* QEMU counts every guest request, and the merged ones apart */
		block_account_merged(b->bs,
				     r->type == VIRTIO_BLK_T_IN ? BLOCK_OP_READ : BLOCK_OP_WRITE,
				     r->merged, ret, r->t0);
	}
	while (r) {
		n = r->next;
		req_complete(r, ret == 0	  ? VIRTIO_BLK_S_OK
				: ret == -ENOTSUP ? VIRTIO_BLK_S_UNSUPP
						  : VIRTIO_BLK_S_IOERR);
		r = n;
	}
	virtio_unlock(b->vp);
}

static void thr_arm(struct virtio_blk *b, uint64_t ns)
{
	struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000),
			     .tv_usec = (suseconds_t)(ns % 1000000000 / 1000)};

	evtimer_add(b->thr_timer, &tv);
}

/*
 * A read or write over the disk's limits waits in its queue (and the
 * others of its kind after it). True when @r was queued. Lock held.
 */
static bool thr_hold(struct blk_req *r)
{
	struct virtio_blk *b = r->b;
	bool w = r->op == BLOCK_OP_WRITE;
	uint64_t wait;

	if (!b->thr_on || (r->op != BLOCK_OP_READ && r->op != BLOCK_OP_WRITE)) {
		return false;
	}
	if (list_empty(&b->thr_q[w])) {
		wait = block_throttle_wait(&b->thr, w, block_stats_now_ns());
		if (wait == 0) {
			block_throttle_account(&b->thr, w, r->len);
			return false;
		}
		thr_arm(b, wait);
	}
	list_add_tail(&r->link, &b->thr_q[w]);
	b->thr_n++;
	return true;
}

static void blk_submit_now(struct blk_req *r);

/* Forget the held requests (a reset, a teardown): the guest sees none complete. Lock held. */
static void thr_drop(struct virtio_blk *b)
{
	for (unsigned w = 0; w < 2; w++) {
		while (!list_empty(&b->thr_q[w])) {
			struct blk_req *r = container_of(b->thr_q[w].next, struct blk_req, link);

			list_del(&r->link);
			req_free_chain(r);
		}
	}
	b->thr_n = 0;
}

/* Hand a (possibly merged) request to the block layer, or hold it over the limits. Lock held. */
static void blk_submit(struct blk_req *r)
{
	if (!r->t0) {
		r->t0 = block_stats_now_ns();
	}
	if (!thr_hold(r)) {
		blk_submit_now(r);
	}
}

static void blk_submit_now(struct blk_req *r)
{
	struct virtio_blk *b = r->b;
	int ret;

	ret = block_aio_submit(b->bs, b->aio, r->op, r->offset, r->iov, r->iovcnt, r->len, r->flags,
			       blk_done, r);
	if (ret < 0) {
		struct blk_req *n;

		while (r) {
			n = r->next;
			req_complete(r, ret == -ENOTSUP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
			r = n;
		}
		return;
	}
	b->inflight++;
}

static void retry_parked(evutil_socket_t fd, short what, void *opaque)
{
	struct virtio_blk *b = opaque;
	struct list_head todo;

	(void)fd;
	(void)what;
	virtio_lock(b->vp);
	if (list_empty(&b->parked) || b->dying) {
		virtio_unlock(b->vp);
		return;
	}
	if (vm_get_state(b->vm) != VM_STATE_RUNNING) {
		arm_retry(b);
		virtio_unlock(b->vp);
		return;
	}
	list_init(&todo);
	while (!list_empty(&b->parked)) {
		struct blk_req *r = container_of(b->parked.next, struct blk_req, link);

		list_del(&r->link);
		list_add_tail(&r->link, &todo);
	}
	while (!list_empty(&todo)) {
		struct blk_req *r = container_of(todo.next, struct blk_req, link);

		list_del(&r->link);
		if (r->gen != virtio_generation(b->vp)) {
			req_free(r);
			continue;
		}
		blk_submit(r);
	}
	virtio_unlock(b->vp);
}

/*
 * The held requests whose time has come go, oldest first, reads and writes
 * in turn; the timer is armed for the next. A VM that does not run (a
 * save or a migration waits for the disk to be idle), a disk being torn
 * down, or limits now lifted: all go at once, as QEMU's drain does.
 */
static void thr_release(evutil_socket_t fd, short what, void *opaque)
{
	struct virtio_blk *b = opaque;
	uint64_t next = 0;

	(void)fd;
	(void)what;
	virtio_lock(b->vp);
	for (bool progress = true; progress;) {
		progress = false;
		for (unsigned w = 0; w < 2; w++) {
			struct blk_req *r;
			bool all =
				!b->thr_on || b->dying || vm_get_state(b->vm) != VM_STATE_RUNNING;
			uint64_t wait;

			if (list_empty(&b->thr_q[w])) {
				continue;
			}
			r = container_of(b->thr_q[w].next, struct blk_req, link);
			wait = all ? 0 : block_throttle_wait(&b->thr, w, block_stats_now_ns());
			if (wait) {
				next = next && next < wait ? next : wait;
				continue;
			}
			list_del(&r->link);
			b->thr_n--;
			progress = true;
			if (r->gen != virtio_generation(b->vp) || b->dying) {
				req_free_chain(r);
				continue;
			}
			if (b->thr_on) {
				block_throttle_account(&b->thr, w, r->len);
			}
			blk_submit_now(r);
		}
	}
	if (next) {
		thr_arm(b, next);
	}
	virtio_unlock(b->vp);
}

/* Copy the id string into the guest's buffer. */
static void do_get_id(struct virtio_blk *b, struct blk_req *r, const struct iovec *data,
		      unsigned cnt)
{
	size_t n = iov_from_buf(data, cnt, 0, b->serial, VIRTIO_BLK_ID_BYTES);

	r->used_len = n + 1;
	req_complete(r, VIRTIO_BLK_S_OK);
}

/*
 * Parse one popped chain into @r. Returns 1 to submit, 0 if @r was
 * completed (or freed) already, -1 if the device must be reset.
 */
static int blk_parse(struct virtio_blk *b, struct blk_req *r)
{
	struct virtq_elem *e = &r->elem;
	struct blk_outhdr h;
	struct iovec *data;
	unsigned ndata;
	size_t dlen;
	uint64_t last_len;

	if (e->in_len < 1) {
		return -1; /* nowhere to put the status */
	}
	/* the status byte is the last device-writable byte */
	last_len = e->in[e->in_num - 1].iov_len;
	r->status = (uint8_t *)e->in[e->in_num - 1].iov_base + last_len - 1;
	r->used_len = 1;
	if (e->out_len < sizeof(h)) {
		req_complete(r, VIRTIO_BLK_S_IOERR); /* header missing or device-writable */
		return 0;
	}
	iov_to_buf(e->out, e->out_num, 0, &h, sizeof(h));
	r->type = h.type;

	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_GET_ID:
		/* data: every writable byte but the status */
		data = malloc(sizeof(*data) * e->in_num);
		if (!data) {
			req_complete(r, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		ndata = iov_slice(e->in, e->in_num, 0, e->in_len - 1, data, e->in_num, &dlen);
		if (e->out_len != sizeof(h)) {
			free(data);
			req_complete(r, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		if (h.type == VIRTIO_BLK_T_GET_ID) {
			do_get_id(b, r, data, ndata);
			free(data);
			return 0;
		}
		r->op = BLOCK_OP_READ;
		r->iov = data;
		r->iovcnt = ndata;
		r->used_len = dlen + 1;
		break;
	case VIRTIO_BLK_T_OUT:
		if (b->readonly) {
			req_complete(r, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		data = malloc(sizeof(*data) * e->out_num);
		if (!data) {
			req_complete(r, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		ndata = iov_slice(e->out, e->out_num, sizeof(h), e->out_len - sizeof(h), data,
				  e->out_num, &dlen);
		r->op = BLOCK_OP_WRITE;
		r->iov = data;
		r->iovcnt = ndata;
		r->flush_after = !(b->features & (1ull << VIRTIO_BLK_F_FLUSH));
		break;
	case VIRTIO_BLK_T_FLUSH:
		r->op = BLOCK_OP_FLUSH;
		return 1;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		struct blk_dwz_seg seg;
		bool discard = h.type == VIRTIO_BLK_T_DISCARD;

		if (b->readonly) {
			req_complete(r, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		if (!(b->features &
		      (1ull << (discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES)))) {
			req_complete(r, VIRTIO_BLK_S_UNSUPP);
			return 0;
		}
		/* exactly one segment (max_*_seg = 1) */
		if (e->out_len != sizeof(h) + sizeof(seg)) {
			req_complete(r, VIRTIO_BLK_S_UNSUPP);
			return 0;
		}
		iov_to_buf(e->out, e->out_num, sizeof(h), &seg, sizeof(seg));
		if ((seg.flags & ~1u) || (discard && seg.flags) ||
		    seg.num_sectors > BLK_MAX_DISCARD_SECTORS) {
			block_account_invalid(b->bs, discard ? BLOCK_OP_DISCARD : BLOCK_OP_WRITE);
			req_complete(r, VIRTIO_BLK_S_UNSUPP);
			return 0;
		}
		if (seg.sector > b->sectors || seg.num_sectors > b->sectors - seg.sector) {
			block_account_invalid(b->bs, discard ? BLOCK_OP_DISCARD : BLOCK_OP_WRITE);
			req_complete(r, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		r->op = discard ? BLOCK_OP_DISCARD : BLOCK_OP_WRITE_ZEROES;
		r->offset = seg.sector * 512;
		r->len = (uint64_t)seg.num_sectors * 512;
		r->flags = (seg.flags & 1) ? BLOCK_ZERO_MAY_UNMAP : 0;
		return 1;
	}
	default:
		req_complete(r, VIRTIO_BLK_S_UNSUPP);
		return 0;
	}
	/* reads and writes: whole sectors inside the disk */
	if (dlen % 512 || h.sector > b->sectors || dlen / 512 > b->sectors - h.sector) {
		block_account_invalid(b->bs, r->op);
		req_complete(r, VIRTIO_BLK_S_IOERR);
		return 0;
	}
	r->offset = h.sector * 512;
	r->len = dlen;
	return 1;
}

/*
 * Can @r be appended to the merged request headed by @head (ending at
 * @tail)? Not a request without data (a guest may send a read or write of
 * no bytes): nothing to gain, and it must not be linked without merging.
 */
static bool can_merge(const struct blk_req *head, const struct blk_req *tail,
		      const struct blk_req *r)
{
	return (r->op == BLOCK_OP_READ || r->op == BLOCK_OP_WRITE) && r->op == head->op &&
	       r->flush_after == head->flush_after && tail->offset + tail->len == r->offset &&
	       head->iovcnt > 0 && r->iovcnt > 0 && head->len + r->len <= BLK_MERGE_MAX_BYTES &&
	       head->iovcnt + r->iovcnt <= BLK_MERGE_MAX_IOV;
}

/* Append @r to @head's request; false (nothing changed) if out of memory. */
static bool merge_into(struct blk_req *head, struct blk_req *tail, struct blk_req *r)
{
	struct iovec *iov = realloc(head->iov, sizeof(*iov) * (head->iovcnt + r->iovcnt));

	if (!iov) {
		return false;
	}
	memcpy(iov + head->iovcnt, r->iov, sizeof(*iov) * r->iovcnt);
	head->iov = iov;
	head->iovcnt += r->iovcnt;
	head->len += r->len;
	tail->next = r;
	free(r->iov);
	r->iov = NULL;
	r->iovcnt = 0;
	return true;
}

static void blk_queue_notify(void *dev, unsigned q)
{
	struct virtio_blk *b = dev;
	struct virtq *vq = virtio_queue(b->vp, q);
	struct blk_req *head = NULL, *tail = NULL;

	if (b->dying) {
		return;
	}
	for (;;) {
		struct blk_req *r = malloc(sizeof(*r));
		int n;

		if (!r) {
			break; /* the chains stay available; the next kick retries */
		}
		memset(r, 0, offsetof(struct blk_req, elem));
		r->b = b;
		r->q = q;
		r->gen = virtio_generation(b->vp);
		n = virtq_pop(vq, &r->elem);
		if (n <= 0) {
			free(r);
			if (n < 0) {
				virtio_set_needs_reset(b->vp, "malformed request ring");
			}
			break;
		}
		n = blk_parse(b, r);
		if (n < 0) {
			free(r);
			virtio_set_needs_reset(b->vp, "request without a status byte");
			break;
		}
		if (n == 0) {
			continue;
		}
		if (head && can_merge(head, tail, r) && merge_into(head, tail, r)) {
			head->merged++;
			tail = r;
			continue;
		}
		if (head) {
			blk_submit(head);
		}
		head = tail = r;
	}
	if (head) {
		blk_submit(head);
	}
}

static void blk_config_read(void *dev, unsigned off, void *buf, unsigned len)
{
	struct virtio_blk *b = dev;

	memcpy(buf, (uint8_t *)&b->config + off, len);
}

static int blk_set_features(void *dev, uint64_t features)
{
	struct virtio_blk *b = dev;

	b->features = features;
	return 0;
}

static void blk_reset(void *dev)
{
	struct virtio_blk *b = dev;

	/* in-flight requests see a new generation and will not touch the rings */
	while (!list_empty(&b->parked)) {
		struct blk_req *r = container_of(b->parked.next, struct blk_req, link);

		list_del(&r->link);
		req_free_chain(r);
	}
	thr_drop(b);
	b->features = 0;
}

static const struct virtio_device_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x010000,
	.config_size = sizeof(struct blk_config),
	.config_read = blk_config_read,
	.set_features = blk_set_features,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
};

static int parse_policy(const char *v, const char *key, const char *id, bool *ret_stop,
			struct error **errp)
{
	if (!v || !strcmp(v, "report")) {
		*ret_stop = false;
	} else if (!strcmp(v, "stop")) {
		*ret_stop = true;
	} else {
		return error_set(errp, EINVAL,
				 "disk %s: %s must be \"report\" or \"stop\", not '%s'", id, key,
				 v);
	}
	return 0;
}

/*
 * Wait for requests in flight (their completions run on the I/O thread,
 * which is still running during unrealize). Bounded: the block layer fails
 * stuck requests itself (NBD deadlines); past the bound we leak rather than
 * free memory a completion could still touch.
 */
static bool blk_drain(struct virtio_blk *b)
{
	unsigned i;
	bool idle = false;

	for (i = 0; i < 60000; i++) {
		virtio_lock(b->vp);
		b->dying = true;
		thr_drop(b); /* never submitted: nothing to wait for */
		idle = b->inflight == 0;
		virtio_unlock(b->vp);
		if (idle) {
			return true;
		}
		usleep(1000);
	}
	log_error("disk %s: requests still in flight at teardown; leaking them", b->id);
	return false;
}

static void blk_free(struct virtio_blk *b)
{
	if (!b) {
		return;
	}
	if (b->vp && !blk_drain(b)) {
		return;
	}
	if (b->retry_timer) {
		event_free(b->retry_timer);
	}
	if (b->thr_timer) {
		event_free(b->thr_timer);
	}
	virtio_dev_free(b->vp);
	blk_reset(b);
	block_aio_ctx_free(b->aio);
	block_unref(b->bs);
	free(b->id);
	free(b);
}

static int blk_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	const struct vm_disk_config *d = cfg;
	const struct vm_config *vc = vm_get_config(vm);
	struct virtio_dev_config pc = {.ops = &blk_ops, .queue_max = BLK_QUEUE_SIZE};
	struct virtio_blk *b;
	unsigned flags = BLOCK_O_UNMAP;
	uint32_t align;
	int r;

	if (!d->file && !d->node) {
		return error_set(errp, EINVAL, "disk %s: \"file\" is required", d->id);
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	list_init(&b->parked);
	list_init(&b->thr_q[0]);
	list_init(&b->thr_q[1]);
	b->vm = vm;
	b->rl = (struct ratelimit)RATELIMIT_INIT(5000000, 10);
	b->id = strdup(d->id ? d->id : "disk");
	if (!b->id) {
		free(b);
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = parse_policy(d->rerror, "rerror", b->id, &b->stop_on_rerror, errp);
	if (r == 0) {
		r = parse_policy(d->werror, "werror", b->id, &b->stop_on_werror, errp);
	}
	if (r < 0) {
		goto err;
	}
	if (d->serial) {
		/* up to 20 bytes, NUL-padded, not necessarily terminated (§5.2.6) */
		memcpy(b->serial, d->serial, MIN(strlen(d->serial), sizeof(b->serial)));
	}
	b->readonly = d->readonly;
	if (!d->readonly) {
		flags |= BLOCK_O_RDWR;
	}
	flags |= vm_disk_block_flags(d);
	if (d->node) {
		/* a blockdev-add node (device_add "drive"): shared, its own flags */
		b->bs = vm_block_node_get(vm, d->node, errp);
		if (!b->bs) {
			r = -ENOENT;
			goto err;
		}
		b->readonly = block_is_read_only(b->bs);
	} else {
		r = vm_disk_open(vm, d, flags, &b->bs, errp);
		if (r < 0) {
			error_prefix(errp, "disk %s", b->id);
			goto err;
		}
	}
	r = block_aio_ctx_new(vm_io_base(vm), &b->aio, errp);
	if (r < 0) {
		goto err;
	}
	if (vm_get_host(vm)->thread_start) {
		/* its workers are this VM's threads (seccomp, docs/security.md) */
		block_aio_ctx_set_thread_start(b->aio, vm_get_host(vm)->thread_start,
					       vm_get_host(vm)->opaque);
	}
	/* the definition's I/O limits (block_set_io_throttle changes them) */
	block_throttle_set(&b->thr, &d->throttle, block_stats_now_ns());
	b->thr_on = block_throttle_enabled(&d->throttle);
	b->retry_timer = evtimer_new(vm_io_base(vm), retry_parked, b);
	b->thr_timer = evtimer_new(vm_io_base(vm), thr_release, b);
	if (!b->retry_timer || !b->thr_timer) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto err;
	}
	b->sectors = block_length(b->bs) / 512;
	b->nqueues = d->queues ? d->queues : vc->vcpus;
	b->nqueues = MIN(MAX(b->nqueues, 1u), (unsigned)BLK_MAX_QUEUES);
	align = block_alignment(b->bs);
	b->config.capacity = b->sectors;
	b->config.seg_max = BLK_SEG_MAX;
	b->config.blk_size = MAX(align, 512u);
	b->config.num_queues = b->nqueues;
	b->config.max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
	b->config.max_discard_seg = 1;
	b->config.discard_sector_alignment = b->config.blk_size / 512;
	b->config.max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
	b->config.max_write_zeroes_seg = 1;
	b->config.write_zeroes_may_unmap = 1;
	pc.dev = b;
	pc.id = b->id;
	pc.nqueues = b->nqueues;
	pc.features = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
		      1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_MQ;
	if (b->readonly) {
		pc.features |= 1ull << VIRTIO_BLK_F_RO;
	} else {
		pc.features |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	}
	r = virtio_dev_new(vm, &pc, &b->vp, errp);
	if (r < 0) {
		goto err;
	}
	*ret_state = b;
	return 0;
err:
	blk_free(b);
	return r;
}

static void blk_unrealize(void *state)
{
	blk_free(state);
}

static bool blk_drain_hook(void *state)
{
	struct virtio_blk *b = state;

	return !b->vp || blk_drain(b);
}

struct block_node *virtio_blk_node(void *state)
{
	struct virtio_blk *b = state;

	return b->bs;
}

void virtio_blk_resized(void *state)
{
	struct virtio_blk *b = state;

	virtio_lock(b->vp);
	b->sectors = block_length(b->bs) / 512;
	b->config.capacity = b->sectors;
	virtio_config_changed(b->vp);
	virtio_unlock(b->vp);
}

static void blk_device_reset(void *state)
{
	struct virtio_blk *b = state;

	virtio_dev_reset(b->vp);
}

/* QEMU's BlockDeviceInfo members for I/O limits @l into @ins (those set, with the group). */
static void limits_json(json_t *ins, const char *group, const struct block_throttle_limits *l)
{
	static const char *const kind[] = {"", "_rd", "_wr"};
	char key[32];

	for (unsigned k = 0; k < 3; k++) {
		const struct {
			const char *unit;
			uint64_t avg, max, len;
		} u[] = {{"bps", l->bps[k], l->bps_max[k], l->bps_max_length[k]},
			 {"iops", l->iops[k], l->iops_max[k], l->iops_max_length[k]}};

		for (unsigned i = 0; i < 2; i++) {
			snprintf(key, sizeof(key), "%s%s", u[i].unit, kind[k]);
			json_object_set_new(ins, key, json_integer((json_int_t)u[i].avg));
			if (u[i].max) {
				snprintf(key, sizeof(key), "%s%s_max", u[i].unit, kind[k]);
				json_object_set_new(ins, key, json_integer((json_int_t)u[i].max));
				snprintf(key, sizeof(key), "%s%s_max_length", u[i].unit, kind[k]);
				json_object_set_new(
					ins, key,
					json_integer(u[i].len ? (json_int_t)u[i].len : 1));
			}
		}
	}
	if (l->iops_size) {
		json_object_set_new(ins, "iops_size", json_integer((json_int_t)l->iops_size));
	}
	if (block_throttle_enabled(l)) {
		json_object_set_new(ins, "group", json_string(group));
	}
}

/* query-block: QEMU's BlockInfo for this disk. Control thread. */
static json_t *blk_query_block(void *state)
{
	struct virtio_blk *b = state;
	struct block_throttle_limits l;
	json_t *ins = block_info_json(b->bs);
	bool failed;

	virtio_lock(b->vp);
	failed = !list_empty(&b->parked);
	l = b->thr.limits;
	virtio_unlock(b->vp);
	if (ins) {
		limits_json(ins, b->id, &l);
	}
	return json_pack("{s:s, s:s, s:b, s:b, s:s, s:s, s:o}", "device", b->id, "qdev", b->id,
			 "removable", 0, "locked", 0, "type", "unknown", "io-status",
			 failed ? "failed" : "ok", "inserted", ins);
}

/* block_set_io_throttle: new limits, the buckets empty; held requests look again. */
static int blk_set_io_throttle(void *state, const char *id, const struct block_throttle_limits *l)
{
	struct virtio_blk *b = state;

	if (strcmp(id, b->id) != 0) {
		return -ENOENT;
	}
	virtio_lock(b->vp);
	block_throttle_set(&b->thr, l, block_stats_now_ns());
	b->thr_on = block_throttle_enabled(l);
	if (b->thr_n) {
		thr_arm(b, 0);
	}
	virtio_unlock(b->vp);
	return 0;
}

/* query-blockstats: QEMU's BlockStats for this disk. Control thread. */

/* query-blockstats: QEMU's BlockStats for this disk. Control thread. */
static json_t *blk_query_blockstats(void *state)
{
	struct virtio_blk *b = state;
	json_t *o = block_stats_json(b->bs);

	json_object_set_new(o, "device", json_string(b->id));
	json_object_set_new(o, "qdev", json_string(b->id));
	if (!json_object_get(o, "node-name")) {
		json_object_set_new(o, "node-name", json_string(""));
	}
	return o;
}

/* Requests submitted and not completed, and those held after an I/O error. */
static unsigned blk_busy(void *state)
{
	struct virtio_blk *b = state;
	struct list_head *p;
	unsigned n;

	virtio_lock(b->vp);
	n = b->inflight + b->thr_n;
	if (b->thr_n && vm_get_state(b->vm) != VM_STATE_RUNNING) {
		/* a save or a migration waits for the disk: the held requests go now */
		thr_arm(b, 0);
	}
	list_for_each (p, &b->parked) {
		n++;
	}
	virtio_unlock(b->vp);
	return n;
}

static int blk_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct virtio_blk *b = state;
	int r = virtio_save(b->vp, out, errp);

	virtio_lock(b->vp);
	vmstate_put_u8(out, b->config.writeback);
	virtio_unlock(b->vp);
	return r;
}

static int blk_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct virtio_blk *b = state;
	uint8_t wce;
	int r;

	r = virtio_load(b->vp, in, errp);
	if (r < 0) {
		return r;
	}
	wce = vmstate_get_u8(in);
	if (wce > 1) {
		in->failed = true;
	}
	r = vmstate_check_end(in, b->id, errp);
	if (r == 0) {
		virtio_lock(b->vp);
		b->config.writeback = wce;
		virtio_unlock(b->vp);
	}
	return r;
}

static void blk_for_each_disk(void *state, vm_disk_fn *fn, void *opaque)
{
	struct virtio_blk *b = state;

	fn(opaque, b->id, b->bs);
}

static int blk_set_active(void *state, bool active, struct error **errp)
{
	struct virtio_blk *b = state;

	return b->bs ? block_set_active(b->bs, active, errp) : 0;
}

const struct device_class virtio_blk_class = {
	.name = "virtio-blk",
	.each = DEVICE_PER_DISK,
	.realize = blk_realize,
	.unrealize = blk_unrealize,
	.drain = blk_drain_hook,
	.reset = blk_device_reset,
	.query_block = blk_query_block,
	.query_blockstats = blk_query_blockstats,
	.set_io_throttle = blk_set_io_throttle,
	.state_version = 1,
	.save = blk_save,
	.load = blk_load,
	.busy = blk_busy,
	.for_each_disk = blk_for_each_disk,
	.set_active = blk_set_active,
};
