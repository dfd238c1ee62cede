/*
 * virtio-net (virtio 1.x §5.1): one receive and one transmit queue, the MAC
 * in config space, link status (always up), mergeable receive buffers, and
 * checksum/TSO offloads carried in the virtio-net header when the backend
 * passes it through (tap with IFF_VNET_HDR); with libslirp the offloads are
 * not offered and the header is synthesized/stripped here.
 *
 * Guest input is bounded: transmitted frames must hold a header and an
 * Ethernet header and fit NET_MAX_FRAME; the header is copied once before
 * it is passed on; a frame that does not fit the guest's receive buffers is
 * dropped, never truncated.
 *
 * Threads: realize/unrealize on the control thread; both queues and the
 * backend run on the VM's I/O thread under the transport lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/iov.h"
#include "common/log.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/virtio/virtio.h"
#include "common/vmstate.h"
#include "net/net.h"

#define VIRTIO_ID_NET 1

#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_S_LINK_UP 1

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_QUEUE_SIZE 256
#define NET_TX_BUDGET 256 /* frames per kick before yielding */
#define NET_RX_MAX_BUFS 256

struct net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
} __attribute__((packed));

struct virtio_net {
	struct virtio_dev *vp;
	struct vm *vm;
	struct net_backend *nb;
	char *id;
	struct net_config config;
	uint64_t features;
	bool rx_waiting;	      /* the backend holds a frame until we have buffers */
	bool link_down;		      /* set_link off: frames dropped both ways (device lock) */
	struct virtq_elem first, cur; /* receive */
	struct virtq_elem txelem;
	uint16_t heads[NET_RX_MAX_BUFS];
	uint32_t lens[NET_RX_MAX_BUFS];
	uint8_t txbuf[NET_MAX_FRAME];
};

static bool has(const struct virtio_net *n, unsigned bit)
{
	return n->features & (1ull << bit);
}

/* ---- transmit ---- */

static void net_tx(struct virtio_net *n)
{
	struct virtq *vq = virtio_queue(n->vp, NET_TXQ);
	const size_t hl = sizeof(struct net_vnet_hdr);
	unsigned done = 0;
	bool pushed = false;

	while (done < NET_TX_BUDGET) {
		struct virtq_elem *e = &n->txelem;
		struct net_vnet_hdr hdr;
		struct iovec iov[2];
		size_t len;
		int r = virtq_pop(vq, e);

		if (r < 0) {
			virtio_set_needs_reset(n->vp, "malformed transmit ring");
			return;
		}
		if (r == 0) {
			break;
		}
		done++;
		len = e->out_len;
		if (len >= hl + 14 && len <= NET_MAX_FRAME && !n->link_down) {
			/* one copy: the guest cannot change what we checked */
			iov_to_buf(e->out, e->out_num, 0, n->txbuf, len);
			memcpy(&hdr, n->txbuf, hl);
			if (net_backend_has_vnet_hdr(n->nb)) {
				hdr.num_buffers = 0;
				iov[0].iov_base = &hdr;
				iov[0].iov_len = hl;
				iov[1].iov_base = n->txbuf + hl;
				iov[1].iov_len = len - hl;
				net_backend_send(n->nb, iov, 2);
			} else {
				iov[0].iov_base = n->txbuf + hl;
				iov[0].iov_len = len - hl;
				net_backend_send(n->nb, iov, 1);
			}
		}
		virtq_push(vq, e, 0);
		pushed = true;
	}
	if (pushed) {
		virtio_notify(n->vp, NET_TXQ);
	}
	if (done == NET_TX_BUDGET) {
		/* more may be waiting: come back after other work */
		virtio_kick(n->vp, NET_TXQ);
	}
}

/* ---- receive ---- */

/*
 * Under the device lock: 1 when the receive queue is live, 0 when frames
 * are dropped (no driver, link down), -EAGAIN when they wait in the backend.
 */
static int rx_ready(struct virtio_net *n, struct virtq *vq)
{
	if (n->link_down) {
		return 0; /* as QEMU: a NIC whose link is down drops what comes */
	}
	if (n->nb && virtio_driver_ok(n->vp) && vq->enabled && !vq->broken) {
		return 1;
	}
	if (n->nb && vm_get_state(n->vm) == VM_STATE_PRELAUNCH) {
		/*
		 * Not started, or being restored (an incoming migration whose
		 * tap was handed over): the frame waits for the device's state
		 * in the backend, as QEMU's can_receive; the queue kick of the
		 * load or of the driver resumes.
		 */
		n->rx_waiting = true;
		return -EAGAIN;
	}
	return 0;
}

/*
 * Under the device lock, the receive ring holding only the @had chains
 * found too few for a frame (none, or ones given back): wait for buffers
 * (the driver's next kick resumes the backend), unless the driver added
 * more meanwhile. True: more than @had are there now.
 */
static bool rx_wait_for_buffers(struct virtio_net *n, struct virtq *vq, unsigned had)
{
	n->rx_waiting = true;
	virtq_set_notification(vq, true);
	if (virtq_avail_count(vq) > had) {
		n->rx_waiting = false;
		return true;
	}
	return false;
}

/*
 * Whether net_receive would take a frame (I/O thread): no when the guest
 * has no receive buffer, so that the backend leaves frames in the host's
 * queue, where a hand-over finds them, rather than holding one.
 */
static bool net_can_receive(void *opaque)
{
	struct virtio_net *n = opaque;
	struct virtio_dev *vp = __atomic_load_n(&n->vp, __ATOMIC_ACQUIRE);
	struct virtq *vq;
	int r;

	if (!vp) {
		/*
		 * Being created (a restore's taps may hold frames queued while
		 * the VM was paused): they wait in the host's queue; the RX
		 * queue's first kick (DRIVER_OK, or the state load) resumes.
		 */
		n->rx_waiting = true;
		return false;
	}
	virtio_lock(vp);
	vq = virtio_queue(vp, NET_RXQ);
	r = rx_ready(n, vq);
	if (r > 0 && !virtq_has_avail(vq) && !rx_wait_for_buffers(n, vq, 0)) {
		r = -EAGAIN;
	}
	virtio_unlock(vp);
	return r >= 0;
}

/*
 * Deliver one frame from the backend (I/O thread). Returns -EAGAIN when the
 * guest has no room yet; 0 when delivered or dropped.
 */
static int net_receive(void *opaque, const struct iovec *iov, unsigned cnt)
{
	struct virtio_net *n = opaque;
	struct virtq *vq;
	const size_t hl = sizeof(struct net_vnet_hdr);
	struct net_vnet_hdr hdr = {0};
	size_t flen = iov_size(iov, cnt), start = 0, off;
	unsigned nbufs, i, retries = 0;
	bool mrg;
	int ret = 0;
	struct virtio_dev *vp = __atomic_load_n(&n->vp, __ATOMIC_ACQUIRE);

	if (!vp) {
		return 0; /* the device is still being created: drop */
	}
	virtio_lock(n->vp);
	vq = virtio_queue(n->vp, NET_RXQ);
	ret = rx_ready(n, vq);
	if (ret <= 0) {
		goto out; /* 0: no driver, the frame is dropped */
	}
	ret = 0;
	if (net_backend_has_vnet_hdr(n->nb)) {
		if (flen < hl) {
			goto out;
		}
		iov_to_buf(iov, cnt, 0, &hdr, hl);
		start = hl;
	}
	mrg = has(n, VIRTIO_NET_F_MRG_RXBUF);
retry:
	off = start;
	nbufs = 0;
	/* fill buffers: the header goes first, then the frame */
	while (nbufs == 0 || (mrg && off < flen)) {
		struct virtq_elem *e = nbufs == 0 ? &n->first : &n->cur;
		size_t room, skip = nbufs == 0 ? hl : 0, c;
		int r;

		if (nbufs == NET_RX_MAX_BUFS) {
			break;
		}
		r = virtq_pop(vq, e);
		if (r < 0) {
			virtio_set_needs_reset(n->vp, "malformed receive ring");
			goto out;
		}
		if (r == 0) {
			/*
			 * All the ring held is too little: given back, the frame
			 * waits for more. It is tried again if more came
			 * meanwhile, a bounded number of times (a driver moving
			 * its index back and forth cannot hold the thread).
			 */
			virtq_unpop(vq, nbufs);
			if (rx_wait_for_buffers(n, vq, nbufs)) {
				if (++retries < NET_RX_MAX_BUFS) {
					goto retry;
				}
				n->rx_waiting = true; /* the next kick tries again */
			}
			ret = -EAGAIN;
			goto out;
		}
		room = e->in_len;
		if (room < skip) {
			/* a buffer too small for the header cannot take anything */
			virtq_unpop(vq, nbufs + 1);
			goto out;
		}
		c = MIN(room - skip, flen - off);
		{
			struct iovec src[VIRTQ_MAX_IOV];
			unsigned ns = iov_slice(iov, cnt, off, c, src, VIRTQ_MAX_IOV, NULL);
			unsigned k;
			size_t dst_off = skip;

			for (k = 0; k < ns; k++) {
				iov_from_buf(e->in, e->in_num, dst_off, src[k].iov_base,
					     src[k].iov_len);
				dst_off += src[k].iov_len;
			}
		}
		off += c;
		n->heads[nbufs] = e->head;
		n->lens[nbufs] = skip + c;
		nbufs++;
	}
	if (off < flen) {
		/* does not fit (no mergeable buffers, or too many): drop, never truncate */
		virtq_unpop(vq, nbufs);
		goto out;
	}
	hdr.num_buffers = mrg ? nbufs : 0;
	if (!net_backend_has_vnet_hdr(n->nb)) {
		hdr.flags = 0;
		hdr.gso_type = NET_HDR_GSO_NONE;
	}
	iov_from_buf(n->first.in, n->first.in_num, 0, &hdr, hl);
	for (i = 0; i < nbufs; i++) {
		virtq_push_head(vq, n->heads[i], n->lens[i]);
	}
	virtio_notify(n->vp, NET_RXQ);
out:
	virtio_unlock(n->vp);
	return ret;
}

static void net_queue_notify(void *dev, unsigned q)
{
	struct virtio_net *n = dev;

	if (!n->nb) {
		return; /* being torn down */
	}
	if (q == NET_TXQ) {
		net_tx(n);
	} else if (q == NET_RXQ && n->rx_waiting) {
		/* the backend's callbacks run on this thread: it cannot go away here */
		struct net_backend *nb = n->nb;

		n->rx_waiting = false;
		virtio_unlock(n->vp);
		net_backend_rx_resume(nb);
		virtio_lock(n->vp);
	}
}

static void net_config_read(void *dev, unsigned off, void *buf, unsigned len)
{
	struct virtio_net *n = dev;

	memcpy(buf, (uint8_t *)&n->config + off, len);
}

static int net_set_features(void *dev, uint64_t features)
{
	struct virtio_net *n = dev;
	unsigned off = 0;

	n->features = features;
	if (!n->nb) {
		return 0;
	}
	if (has(n, VIRTIO_NET_F_GUEST_CSUM)) {
		off |= NET_OFFLOAD_CSUM;
		if (has(n, VIRTIO_NET_F_GUEST_TSO4)) {
			off |= NET_OFFLOAD_TSO4;
		}
		if (has(n, VIRTIO_NET_F_GUEST_TSO6)) {
			off |= NET_OFFLOAD_TSO6;
		}
		if (has(n, VIRTIO_NET_F_GUEST_ECN)) {
			off |= NET_OFFLOAD_ECN;
		}
	}
	if (net_backend_has_vnet_hdr(n->nb)) {
		net_backend_set_offload(n->nb, off);
	}
	return 0;
}

static void net_reset(void *dev)
{
	struct virtio_net *n = dev;

	n->features = 0;
	/*
	 * rx_waiting stays: the backend may have stopped reading, and the
	 * new driver's first receive kick must resume it.
	 */
	if (n->nb && net_backend_has_vnet_hdr(n->nb)) {
		net_backend_set_offload(n->nb, 0);
	}
}

static const struct virtio_device_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.pci_class = 0x020000,
	.config_size = sizeof(struct net_config),
	.config_read = net_config_read,
	.set_features = net_set_features,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
};

/* A stable locally administered MAC from the VM and NIC names. */
static void default_mac(const char *vm, const char *id, uint8_t mac[6])
{
	uint32_t h = 2166136261u;
	const char *s;

	for (s = vm; *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	h = (h ^ '/') * 16777619u;
	for (s = id; *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = h >> 16;
	mac[4] = h >> 8;
	mac[5] = h;
}

struct close_call {
	struct virtio_net *n;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void close_on_io(evutil_socket_t fd, short what, void *opaque)
{
	struct close_call *c = opaque;
	struct virtio_net *n = c->n;
	struct net_backend *nb;

	(void)fd;
	(void)what;
	if (n->vp) {
		virtio_lock(n->vp);
	}
	nb = n->nb;
	n->nb = NULL;
	if (n->vp) {
		virtio_unlock(n->vp);
	}
	net_backend_close(nb);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/*
 * The backend's events fire on the I/O thread, which still runs during
 * unrealize: close it there, so no callback can race the teardown.
 */
static void net_close_backend(struct virtio_net *n)
{
	struct close_call c = {.n = n, .done = false};
	struct timeval now = {0, 0};

	if (!n->nb) {
		return;
	}
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	if (event_base_once(vm_io_base(n->vm), -1, EV_TIMEOUT, close_on_io, &c, &now) < 0) {
		close_on_io(-1, 0, &c);
	}
	pthread_mutex_lock(&c.lock);
	while (!c.done) {
		pthread_cond_wait(&c.cond, &c.lock);
	}
	pthread_mutex_unlock(&c.lock);
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
}

static void net_free(struct virtio_net *n)
{
	if (!n) {
		return;
	}
	net_close_backend(n);
	virtio_dev_free(n->vp);
	free(n->id);
	free(n);
}

static int net_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	const struct vm_nic_config *c = cfg;
	const struct vm_host *host = vm_get_host(vm);
	struct virtio_dev_config pc = {.ops = &net_ops, .nqueues = 2, .queue_max = NET_QUEUE_SIZE};
	struct net_backend_config bc = {.fd = -1};
	struct net_peer peer = {.receive = net_receive, .can_receive = net_can_receive};
	struct virtio_dev *vp;
	struct virtio_net *n;
	int r, handed;

	n = calloc(1, sizeof(*n));
	if (!n) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	n->vm = vm;
	n->id = strdup(c->id ? c->id : "net");
	if (!n->id) {
		free(n);
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (c->mac) {
		if (net_mac_parse(c->mac, n->config.mac) < 0) {
			r = error_set(errp, EINVAL,
				      "nic %s: invalid mac '%s' (want six hex pairs, unicast)",
				      n->id, c->mac);
			goto err;
		}
	} else {
		default_mac(vm_name(vm), n->id, n->config.mac);
	}
	n->config.status = VIRTIO_NET_S_LINK_UP;
	n->config.max_virtqueue_pairs = 1;
	n->config.mtu = 1500;
	bc.backend = c->backend ? c->backend : "user";
	bc.ifname = c->ifname;
	bc.hostfwd = c->hostfwd;
	bc.id = n->id;
	handed = host->nic_fd ? host->nic_fd(host->opaque, n->id) : -ENOENT;
	if (handed >= 0) {
		bc.fd = handed; /* a local migration handed the source's tap over */
	} else if (c->tap_fd > 0) {
		bc.fd = fcntl(c->tap_fd, F_DUPFD_CLOEXEC, 3);
		if (bc.fd < 0) {
			r = error_set_errno(errp, errno, "nic %s: cannot use the netdev's fd",
					    n->id);
			goto err;
		}
	} else if (c->fd) {
		if (!host->get_fd) {
			r = error_set(errp, ENOENT, "nic %s: no fd named '%s' was passed", n->id,
				      c->fd);
			goto err;
		}
		bc.fd = host->get_fd(host->opaque, c->fd);
		if (bc.fd < 0) {
			r = error_set(errp, ENOENT,
				      "nic %s: no fd named '%s' was passed (use getfd first)",
				      n->id, c->fd);
			goto err;
		}
	}
	peer.opaque = n;
	r = net_backend_open(&bc, vm_io_base(vm), &peer, &n->nb, errp);
	if (r < 0) {
		goto err;
	}
	pc.dev = n;
	pc.id = n->id;
	pc.features = 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS |
		      1ull << VIRTIO_NET_F_MRG_RXBUF;
	if (net_backend_has_vnet_hdr(n->nb)) {
		pc.features |= 1ull << VIRTIO_NET_F_CSUM | 1ull << VIRTIO_NET_F_GUEST_CSUM |
			       1ull << VIRTIO_NET_F_GUEST_TSO4 | 1ull << VIRTIO_NET_F_GUEST_TSO6 |
			       1ull << VIRTIO_NET_F_GUEST_ECN | 1ull << VIRTIO_NET_F_HOST_TSO4 |
			       1ull << VIRTIO_NET_F_HOST_TSO6 | 1ull << VIRTIO_NET_F_HOST_ECN;
	}
	r = virtio_dev_new(vm, &pc, &vp, errp);
	if (r < 0) {
		goto err;
	}
	/* published last: the backend may already deliver frames on the I/O thread */
	__atomic_store_n(&n->vp, vp, __ATOMIC_RELEASE);
	*ret_state = n;
	return 0;
err:
	net_free(n);
	return r;
}

static void net_unrealize(void *state)
{
	net_free(state);
}

static void net_device_reset(void *state)
{
	struct virtio_net *n = state;

	virtio_dev_reset(n->vp);
}

static int net_host_fd(void *state, const char **ret_id)
{
	struct virtio_net *n = state;

	*ret_id = n->id;
	return net_backend_host_fd(n->nb);
}

static void net_host_fd_release(void *state)
{
	struct virtio_net *n = state;

	net_backend_detach(n->nb);
}

static void net_announce(void *state)
{
	struct virtio_net *n = state;
	struct net_vnet_hdr hdr = {.gso_type = NET_HDR_GSO_NONE};
	uint8_t frame[NET_RARP_LEN];
	struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {frame, net_rarp_frame(frame, n->config.mac)}};
	bool down;

	virtio_lock(n->vp);
	down = n->link_down;
	virtio_unlock(n->vp);
	if (down) {
		return; /* QEMU drops a down NIC's announcement too */
	}
	if (net_backend_has_vnet_hdr(n->nb)) {
		net_backend_send(n->nb, iov, 2);
	} else {
		net_backend_send(n->nb, iov + 1, 1);
	}
}

/*
 * set_link (control thread): the config's status shows it and the driver
 * gets a configuration change interrupt, as QEMU's; frames are dropped
 * both ways while it is down (rx_ready, net_tx).
 */
static int net_set_link(void *state, bool up)
{
	struct virtio_net *n = state;

	virtio_lock(n->vp);
	if (n->link_down == !up) {
		virtio_unlock(n->vp);
		return 0;
	}
	n->link_down = !up;
	n->config.status = up ? VIRTIO_NET_S_LINK_UP : 0;
	virtio_config_changed(n->vp);
	virtio_unlock(n->vp);
	return 0;
}

/*
 * The transport, and the model's one state of its own: a link set down,
 * as one byte after the transport's, only then (a link up saves what vmmd
 * always saved, so an older destination still loads it). The rest is
 * rebuilt from the features.
 */
static int net_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct virtio_net *n = state;
	int ret = virtio_save(n->vp, out, errp);
	bool down;

	virtio_lock(n->vp); /* a set_link from the control thread may come meanwhile */
	down = n->link_down;
	virtio_unlock(n->vp);
	if (ret == 0 && down) {
		vmstate_put_bool(out, false);
	}
	return ret;
}

static int net_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct virtio_net *n = state;
	int ret = virtio_load(n->vp, in, errp);
	bool up = true;

	if (ret == 0 && in->pos < in->len) {
		up = vmstate_get_bool(in);
	}
	ret = ret < 0 ? ret : vmstate_check_end(in, "the virtio-net device", errp);
	return ret < 0 ? ret : net_set_link(n, up);
}

const struct device_class virtio_net_class = {
	.name = "virtio-net",
	.each = DEVICE_PER_NIC,
	.realize = net_realize,
	.unrealize = net_unrealize,
	.reset = net_device_reset,
	.state_version = 1,
	.save = net_save,
	.load = net_load,
	.host_fd = net_host_fd,
	.host_fd_release = net_host_fd_release,
	.announce = net_announce,
	.set_link = net_set_link,
};
