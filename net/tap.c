/*
 * tap backend: frames to and from a kernel TAP interface, attached by name
 * with TUNSETIFF (created if it does not exist yet) or given as an fd passed
 * with getfd. With IFF_VNET_HDR the kernel exchanges the virtio-net header,
 * so checksum and TSO offloads pass through untouched.
 *
 * Threads: the I/O thread of the VM (see net.h). Received frames are read
 * one at a time, and only while the peer can take one (can_receive): the
 * rest wait in the kernel's queue, which a hand-over of the fd carries. A
 * frame the peer refuses all the same waits in t->buf, and the fd is not
 * read until rx_resume.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "net/net.h"

#define TAP_RX_BUDGET 64 /* frames per wakeup before yielding to other work */

struct tap {
	struct net_backend *nb;
	int fd;
	struct event *ev;
	bool reading;
	size_t pending_len; /* 0: nothing pending */
	uint8_t buf[NET_MAX_FRAME];
};

static void tap_set_reading(struct tap *t, bool on)
{
	if (on == t->reading) {
		return;
	}
	t->reading = on;
	if (on) {
		event_add(t->ev, NULL);
	} else {
		event_del(t->ev);
	}
}

/* Offer the pending frame; true if the peer took it. */
static bool tap_deliver(struct tap *t)
{
	struct iovec iov = {.iov_base = t->buf, .iov_len = t->pending_len};
	int r = t->nb->peer.receive(t->nb->peer.opaque, &iov, 1);

	if (r == -EAGAIN) {
		return false;
	}
	if (r < 0) {
		t->nb->rx_dropped++;
	} else {
		t->nb->rx_frames++;
	}
	t->pending_len = 0;
	return true;
}

static void tap_readable(evutil_socket_t fd, short what, void *opaque)
{
	struct tap *t = opaque;
	int i;

	(void)what;
	for (i = 0; i < TAP_RX_BUDGET; i++) {
		const struct net_peer *p = &t->nb->peer;
		ssize_t n;

		if (p->can_receive && !p->can_receive(p->opaque)) {
			tap_set_reading(t, false);
			return;
		}
		n = read(fd, t->buf, sizeof(t->buf));

		if (n <= 0) {
			return; /* EAGAIN, or the interface went away: wait for the next event */
		}
		if (t->nb->vnet_hdr && (size_t)n < sizeof(struct net_vnet_hdr)) {
			t->nb->rx_dropped++;
			continue;
		}
		t->pending_len = n;
		if (!tap_deliver(t)) {
			tap_set_reading(t, false);
			return;
		}
	}
}

static int tap_attach(const struct net_backend_config *cfg, int *ret_fd, struct error **errp)
{
	_cleanup_close_ int fd = -1;
	struct ifreq ifr;

	if (strlen(cfg->ifname) >= IFNAMSIZ) {
		return error_set(errp, EINVAL, "nic %s: tap interface name '%s' is longer than %d",
				 cfg->id, cfg->ifname, IFNAMSIZ - 1);
	}
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		return error_set_errno(errp, errno, "nic %s: cannot open /dev/net/tun", cfg->id);
	}
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, cfg->ifname);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		return error_set_errno(errp, errno,
				       "nic %s: cannot attach to tap interface '%s' (is it a tap "
				       "with vnet_hdr owned by this user?)",
				       cfg->id, cfg->ifname);
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int tap_open(struct net_backend *nb, const struct net_backend_config *cfg,
		    struct error **errp)
{
	_cleanup_close_ int fd = cfg->fd;
	_cleanup_free_ struct tap *t = NULL;
	struct ifreq ifr;
	int hdr_len = sizeof(struct net_vnet_hdr);
	int r, fl;

	if (fd < 0) {
		if (!cfg->ifname || !cfg->ifname[0]) {
			return error_set(errp, EINVAL,
					 "nic %s: tap backend needs \"ifname\" or \"fd\"", cfg->id);
		}
		r = tap_attach(cfg, &fd, errp);
		if (r < 0) {
			return r;
		}
	}
	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		return error_set_errno(errp, errno, "nic %s: fd %d is not a tap device", cfg->id,
				       fd);
	}
	if (!(ifr.ifr_flags & IFF_TAP) || (ifr.ifr_flags & IFF_TUN) == IFF_TUN) {
		return error_set(errp, EINVAL, "nic %s: '%s' is a tun, not a tap device", cfg->id,
				 ifr.ifr_name);
	}
	/* A given fd with a name too (one a local migration handed over): they must agree. */
	if (cfg->fd >= 0 && cfg->ifname && cfg->ifname[0] &&
	    strncmp(ifr.ifr_name, cfg->ifname, IFNAMSIZ) != 0) {
		return error_set(errp, EINVAL, "nic %s: the tap fd is attached to '%.*s', not '%s'",
				 cfg->id, IFNAMSIZ, ifr.ifr_name, cfg->ifname);
	}
	nb->vnet_hdr = ifr.ifr_flags & IFF_VNET_HDR;
	if (nb->vnet_hdr && ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		return error_set_errno(errp, errno, "nic %s: TUNSETVNETHDRSZ on '%s'", cfg->id,
				       ifr.ifr_name);
	}
	if (nb->vnet_hdr && ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		return error_set_errno(errp, errno, "nic %s: TUNSETOFFLOAD on '%s'", cfg->id,
				       ifr.ifr_name);
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		return error_set_errno(errp, errno, "nic %s: cannot make the tap fd non-blocking",
				       cfg->id);
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	t->nb = nb;
	t->ev = event_new(nb->base, fd, EV_READ | EV_PERSIST, tap_readable, t);
	if (!t->ev) {
		return error_set(errp, ENOMEM, "nic %s: cannot create the tap event", cfg->id);
	}
	t->fd = TAKE_FD(fd);
	nb->priv = TAKE_PTR(t);
	tap_set_reading(nb->priv, true);
	return 0;
}

static void tap_close(struct net_backend *nb)
{
	struct tap *t = nb->priv;

	if (!t) {
		return;
	}
	if (t->ev) {
		event_free(t->ev);
	}
	if (t->fd >= 0) {
		close(t->fd);
	}
	free(t);
	nb->priv = NULL;
}

static int tap_send(struct net_backend *nb, const struct iovec *iov, unsigned cnt)
{
	struct tap *t = nb->priv;
	ssize_t n;

	if (t->fd < 0) {
		return -ENOTCONN; /* detached: the interface is served elsewhere */
	}
	n = writev(t->fd, iov, cnt);
	if (n < 0) {
		return -errno; /* EAGAIN: the host queue is full, the frame is dropped */
	}
	return 0;
}

static void tap_rx_resume(struct net_backend *nb)
{
	struct tap *t = nb->priv;

	if (!t->ev) {
		return; /* detached */
	}
	if (t->pending_len && !tap_deliver(t)) {
		return;
	}
	tap_set_reading(t, true);
	/* frames may have queued while we were not reading */
	event_active(t->ev, EV_READ, 0);
}

static int tap_set_offload(struct net_backend *nb, unsigned offloads)
{
	struct tap *t = nb->priv;
	unsigned long f = 0;

	if (!nb->vnet_hdr) {
		return offloads ? -ENOTSUP : 0;
	}
	if (t->fd < 0) {
		return 0; /* detached: nothing to tell */
	}
	if (offloads & NET_OFFLOAD_CSUM) {
		f |= TUN_F_CSUM;
		if (offloads & NET_OFFLOAD_TSO4) {
			f |= TUN_F_TSO4;
		}
		if (offloads & NET_OFFLOAD_TSO6) {
			f |= TUN_F_TSO6;
		}
		if (offloads & NET_OFFLOAD_ECN) {
			f |= TUN_F_TSO_ECN;
		}
	}
	if (ioctl(t->fd, TUNSETOFFLOAD, f) < 0) {
		return -errno;
	}
	return 0;
}

static int tap_host_fd(struct net_backend *nb)
{
	struct tap *t = nb->priv;

	return t ? t->fd : -1;
}

/* The I/O thread is held (net.h): no callback of ours runs meanwhile. */
static void tap_detach(struct net_backend *nb)
{
	struct tap *t = nb->priv;

	if (!t || t->fd < 0) {
		return;
	}
	event_free(t->ev);
	t->ev = NULL;
	t->reading = false;
	t->pending_len = 0;
	close(t->fd);
	t->fd = -1;
}

int net_tap_fd_name(int fd, char name[16], struct error **errp)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		return error_set_errno(errp, errno, "the fd is not a tap device");
	}
	if (!(ifr.ifr_flags & IFF_TAP) || (ifr.ifr_flags & IFF_TUN) == IFF_TUN) {
		return error_set(errp, EINVAL, "the fd is a tun ('%.*s'), not a tap device",
				 IFNAMSIZ, ifr.ifr_name);
	}
	memcpy(name, ifr.ifr_name, IFNAMSIZ);
	name[IFNAMSIZ - 1] = '\0';
	return 0;
}

int net_tap_fd_in_our_netns(int fd)
{
	struct stat a, b;
	int ns = ioctl(fd, TUNGETDEVNETNS), r;

	if (ns < 0) {
		return -errno;
	}
	r = fstat(ns, &a) == 0 && stat("/proc/self/ns/net", &b) == 0
		    ? a.st_dev == b.st_dev && a.st_ino == b.st_ino
		    : -errno;
	close(ns);
	return r;
}

const struct net_backend_ops net_tap_ops = {
	.name = "tap",
	.open = tap_open,
	.close = tap_close,
	.send = tap_send,
	.rx_resume = tap_rx_resume,
	.set_offload = tap_set_offload,
	.host_fd = tap_host_fd,
	.detach = tap_detach,
};
