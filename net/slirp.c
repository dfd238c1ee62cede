/*
 * user backend: libslirp user-mode networking, the embedded default. The
 * guest sees 10.0.2.0/24 with a gateway and DHCP server at 10.0.2.2, DNS at
 * 10.0.2.3 (forwarded to the host's resolver) and itself at 10.0.2.15;
 * "hostfwd" rules forward host ports into the guest. No privileges needed.
 *
 * libslirp is driven from the I/O thread's libevent loop: after every
 * activity the backend asks slirp which sockets it wants polled
 * (slirp_pollfds_fill) and mirrors that in one-shot libevent events; when one
 * fires, slirp_pollfds_poll runs with that socket's readiness. slirp timers
 * are libevent timers.
 *
 * IPv4 fragments from the guest are dropped, never handed to slirp: the
 * libslirp of Debian 12 (4.7.0-1) ends the process on a fragment sequence
 * whose last fragment comes first (one 74-byte frame does it; found by the
 * virtio-net fuzz target, reproduced with that library alone), which here
 * would end every VM of the daemon. Guests send fragments rarely (TCP sets
 * DF and finds the path MTU); one that does sees them lost.
 *
 * Threads: the I/O thread (see net.h). Frames for a guest without buffers
 * wait in a small bounded queue; beyond it they are dropped (TCP recovers).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <slirp/libslirp.h>

#include "common/cleanup.h"
#include "common/iov.h"
#include "common/list.h"
#include "common/log.h"
#include "net/net.h"

#define SLIRP_RXQ_MAX 64       /* frames held while the guest has no rx buffers */
#define SLIRP_MAX_POLLFDS 1024 /* sockets mirrored into the event loop */

struct slirp_pollfd {
	int fd;
	int events;  /* SLIRP_POLL_* asked for */
	int revents; /* what fired */
	struct event *ev;
};

struct slirp_timer {
	struct list_head link;
	struct event *ev;
	SlirpTimerCb cb;
	SlirpTimerId id;
	bool opaque_id;
	void *cb_opaque;
	struct slirp_be *s;
};

struct rx_frame {
	struct list_head link;
	size_t len;
	uint8_t data[];
};

struct slirp_be {
	struct net_backend *nb;
	Slirp *slirp;
	struct slirp_pollfd *fds;
	unsigned nfds, fds_cap;
	struct event *timeout_ev; /* the fill's timeout (TCP timers) */
	struct event *kick_ev;	  /* notify(): run a round soon */
	struct event *deliver_ev; /* frames queued during send() go out from here */
	struct list_head timers;
	struct list_head rxq;
	unsigned rxq_len;
	bool guest_full;
	bool in_round;
	bool in_send;
};

static void slirp_round(struct slirp_be *s);

static int64_t cb_clock_get_ns(void *opaque)
{
	struct timespec ts;

	(void)opaque;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Hand one frame to the guest, or queue it: while the guest has no buffers,
 * while older frames wait, and while we are inside send() (the peer must
 * never be re-entered from its own send call).
 */
static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct slirp_be *s = opaque;
	struct net_backend *nb = s->nb;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct rx_frame *f;

	if (!s->guest_full && !s->in_send && list_empty(&s->rxq)) {
		int r = nb->peer.receive(nb->peer.opaque, &iov, 1);

		if (r != -EAGAIN) {
			if (r < 0) {
				nb->rx_dropped++;
			} else {
				nb->rx_frames++;
			}
			return len;
		}
		s->guest_full = true;
	}
	if (s->rxq_len >= SLIRP_RXQ_MAX || len > NET_MAX_FRAME) {
		nb->rx_dropped++;
		return len;
	}
	f = malloc(sizeof(*f) + len);
	if (!f) {
		nb->rx_dropped++;
		return len;
	}
	f->len = len;
	memcpy(f->data, buf, len);
	list_add_tail(&f->link, &s->rxq);
	s->rxq_len++;
	if (!s->guest_full) {
		event_active(s->deliver_ev, 0, 0);
	}
	return len;
}

/* Offer queued frames in order; stops at the first the guest cannot take. */
static void deliver_queued(struct slirp_be *s)
{
	struct net_backend *nb = s->nb;

	while (!list_empty(&s->rxq)) {
		struct rx_frame *f = container_of(s->rxq.next, struct rx_frame, link);
		struct iovec iov = {.iov_base = f->data, .iov_len = f->len};
		int r = nb->peer.receive(nb->peer.opaque, &iov, 1);

		if (r == -EAGAIN) {
			s->guest_full = true;
			return;
		}
		if (r < 0) {
			nb->rx_dropped++;
		} else {
			nb->rx_frames++;
		}
		list_del(&f->link);
		s->rxq_len--;
		free(f);
	}
	s->guest_full = false;
}

static void deliver_fired(evutil_socket_t fd, short what, void *opaque)
{
	struct slirp_be *s = opaque;

	(void)fd;
	(void)what;
	if (!s->guest_full) {
		deliver_queued(s);
	}
}

static void cb_guest_error(const char *msg, void *opaque)
{
	(void)msg;
	(void)opaque; /* guest-triggerable: counted by slirp itself, never logged here */
}

static void timer_fired(evutil_socket_t fd, short what, void *opaque)
{
	struct slirp_timer *t = opaque;
	struct slirp_be *s = t->s;

	(void)fd;
	(void)what;
	if (t->opaque_id) {
		slirp_handle_timer(s->slirp, t->id, t->cb_opaque);
	} else {
		t->cb(t->cb_opaque);
	}
	slirp_round(s);
}

static struct slirp_timer *timer_alloc(struct slirp_be *s)
{
	struct slirp_timer *t = calloc(1, sizeof(*t));

	if (!t) {
		return NULL;
	}
	t->s = s;
	t->ev = evtimer_new(s->nb->base, timer_fired, t);
	if (!t->ev) {
		free(t);
		return NULL;
	}
	list_add_tail(&t->link, &s->timers);
	return t;
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct slirp_timer *t = timer_alloc(opaque);

	if (t) {
		t->cb = cb;
		t->cb_opaque = cb_opaque;
	}
	return t;
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct slirp_timer *t = timer_alloc(opaque);

	if (t) {
		t->opaque_id = true;
		t->id = id;
		t->cb_opaque = cb_opaque;
	}
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct slirp_timer *t = timer;

	(void)opaque;
	if (!t) {
		return;
	}
	list_del(&t->link);
	event_free(t->ev);
	free(t);
}

/* @expire_ms is on the clock_get_ns clock, in milliseconds. */
static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct slirp_timer *t = timer;
	int64_t now_ms = cb_clock_get_ns(opaque) / 1000000;
	int64_t d = expire_ms > now_ms ? expire_ms - now_ms : 0;
	struct timeval tv = {.tv_sec = d / 1000, .tv_usec = (d % 1000) * 1000};

	if (t) {
		evtimer_add(t->ev, &tv);
	}
}

static void cb_register_poll_fd(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

static void cb_unregister_poll_fd(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

static void cb_notify(void *opaque)
{
	struct slirp_be *s = opaque;

	event_active(s->kick_ev, 0, 0);
}

static const SlirpCb slirp_callbacks = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
	.timer_new_opaque = cb_timer_new_opaque,
};

static void fd_fired(evutil_socket_t fd, short what, void *opaque);

static int cb_add_poll(int fd, int events, void *opaque)
{
	struct slirp_be *s = opaque;
	struct slirp_pollfd *p;

	if (s->nfds >= SLIRP_MAX_POLLFDS) {
		return -1;
	}
	if (s->nfds == s->fds_cap) {
		unsigned cap = s->fds_cap ? 2 * s->fds_cap : 16;
		struct slirp_pollfd *n = realloc(s->fds, cap * sizeof(*n));

		if (!n) {
			return -1;
		}
		s->fds = n;
		s->fds_cap = cap;
	}
	p = &s->fds[s->nfds];
	p->fd = fd;
	p->events = events;
	p->revents = 0;
	p->ev = NULL;
	return s->nfds++;
}

static int cb_get_revents(int idx, void *opaque)
{
	struct slirp_be *s = opaque;

	if (idx < 0 || (unsigned)idx >= s->nfds) {
		return 0;
	}
	return s->fds[idx].revents;
}

static void drop_pollfds(struct slirp_be *s)
{
	unsigned i;

	for (i = 0; i < s->nfds; i++) {
		if (s->fds[i].ev) {
			event_free(s->fds[i].ev);
		}
	}
	s->nfds = 0;
}

static void fd_fired(evutil_socket_t fd, short what, void *opaque)
{
	struct slirp_be *s = opaque;
	unsigned i;

	for (i = 0; i < s->nfds; i++) {
		if (s->fds[i].fd == fd) {
			if (what & EV_READ) {
				s->fds[i].revents |=
					s->fds[i].events &
					(SLIRP_POLL_IN | SLIRP_POLL_PRI | SLIRP_POLL_HUP);
				if (!s->fds[i].revents) {
					s->fds[i].revents = SLIRP_POLL_IN;
				}
			}
			if (what & EV_WRITE) {
				s->fds[i].revents |= SLIRP_POLL_OUT;
			}
		}
	}
	slirp_round(s);
}

static void kick_fired(evutil_socket_t fd, short what, void *opaque)
{
	(void)fd;
	(void)what;
	slirp_round(opaque);
}

/*
 * Let slirp process what fired, then mirror its new poll set. Re-entrant
 * calls (a send_packet that resumes rx, ...) are folded into one.
 */
static void slirp_round(struct slirp_be *s)
{
	uint32_t timeout = UINT32_MAX;
	struct timeval tv;
	unsigned i;

	if (s->in_round) {
		return;
	}
	s->in_round = true;
	slirp_pollfds_poll(s->slirp, 0, cb_get_revents, s);
	drop_pollfds(s);
	slirp_pollfds_fill(s->slirp, &timeout, cb_add_poll, s);
	for (i = 0; i < s->nfds; i++) {
		struct slirp_pollfd *p = &s->fds[i];
		short what = 0;

		if (p->events & (SLIRP_POLL_IN | SLIRP_POLL_PRI | SLIRP_POLL_HUP)) {
			what |= EV_READ;
		}
		if (p->events & SLIRP_POLL_OUT) {
			what |= EV_WRITE;
		}
		if (!what) {
			continue;
		}
		p->ev = event_new(s->nb->base, p->fd, what, fd_fired, s);
		if (p->ev) {
			event_add(p->ev, NULL);
		}
	}
	if (timeout != UINT32_MAX) {
		tv.tv_sec = timeout / 1000;
		tv.tv_usec = (timeout % 1000) * 1000;
		evtimer_add(s->timeout_ev, &tv);
	} else {
		evtimer_del(s->timeout_ev);
	}
	s->in_round = false;
}

static int add_hostfwds(struct slirp_be *s, const struct net_backend_config *cfg,
			struct error **errp)
{
	char *const *rule;
	int r;

	for (rule = cfg->hostfwd; rule && *rule; rule++) {
		struct net_hostfwd fwd;
		struct in_addr h, g;

		r = net_hostfwd_parse(*rule, &fwd, errp);
		if (r < 0) {
			error_prefix(errp, "nic %s", cfg->id);
			return r;
		}
		h.s_addr = fwd.host_addr;
		g.s_addr = fwd.guest_addr;
		if (slirp_add_hostfwd(s->slirp, fwd.udp, h, fwd.host_port, g, fwd.guest_port) < 0) {
			return error_set(errp, EADDRINUSE,
					 "nic %s: cannot forward host port %u (rule '%s'): in use "
					 "or not permitted",
					 cfg->id, fwd.host_port, *rule);
		}
	}
	return 0;
}

static void slirp_be_free(struct slirp_be *s)
{
	struct slirp_timer *t;

	if (!s) {
		return;
	}
	drop_pollfds(s);
	if (s->slirp) {
		slirp_cleanup(s->slirp);
	}
	/* slirp_cleanup frees its timers; whatever is left is ours to free */
	while (!list_empty(&s->timers)) {
		t = container_of(s->timers.next, struct slirp_timer, link);
		cb_timer_free(t, s);
	}
	while (!list_empty(&s->rxq)) {
		struct rx_frame *f = container_of(s->rxq.next, struct rx_frame, link);

		list_del(&f->link);
		free(f);
	}
	if (s->timeout_ev) {
		event_free(s->timeout_ev);
	}
	if (s->kick_ev) {
		event_free(s->kick_ev);
	}
	if (s->deliver_ev) {
		event_free(s->deliver_ev);
	}
	free(s->fds);
	free(s);
}

static int slirp_be_open(struct net_backend *nb, const struct net_backend_config *cfg,
			 struct error **errp)
{
	struct slirp_be *s;
	SlirpConfig sc;
	int r;

	if (cfg->ifname || cfg->fd >= 0) {
		return error_set(errp, EINVAL, "nic %s: \"ifname\"/\"fd\" only apply to tap",
				 cfg->id);
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	s->nb = nb;
	list_init(&s->timers);
	list_init(&s->rxq);
	s->timeout_ev = evtimer_new(nb->base, kick_fired, s);
	s->kick_ev = event_new(nb->base, -1, 0, kick_fired, s);
	s->deliver_ev = event_new(nb->base, -1, 0, deliver_fired, s);
	if (!s->timeout_ev || !s->kick_ev || !s->deliver_ev) {
		slirp_be_free(s);
		return error_set(errp, ENOMEM, "out of memory");
	}
	memset(&sc, 0, sizeof(sc));
	sc.version = 4;
	sc.in_enabled = true;
	inet_pton(AF_INET, "10.0.2.0", &sc.vnetwork);
	inet_pton(AF_INET, "255.255.255.0", &sc.vnetmask);
	inet_pton(AF_INET, "10.0.2.2", &sc.vhost);
	inet_pton(AF_INET, "10.0.2.15", &sc.vdhcp_start);
	inet_pton(AF_INET, "10.0.2.3", &sc.vnameserver);
	sc.vhostname = "vmmd";
	s->slirp = slirp_new(&sc, &slirp_callbacks, s);
	if (!s->slirp) {
		slirp_be_free(s);
		return error_set(errp, ENOMEM, "nic %s: cannot create the user-mode network",
				 cfg->id);
	}
	r = add_hostfwds(s, cfg, errp);
	if (r < 0) {
		slirp_be_free(s);
		return r;
	}
	nb->vnet_hdr = false;
	nb->priv = s;
	slirp_round(s);
	return 0;
}

static void slirp_be_close(struct net_backend *nb)
{
	slirp_be_free(nb->priv);
	nb->priv = NULL;
}

static struct ratelimit fragment_rl = RATELIMIT_INIT(60000000, 1);

/*
 * An IPv4 fragment (more fragments to come, or an offset), as slirp's
 * ip_input would see it: Ethernet type 0x0800, then the IP header's
 * flags and offset with DF masked out.
 */
static bool is_ipv4_fragment(const uint8_t *f, size_t len)
{
	return len >= 14 + 8 && f[12] == 0x08 && f[13] == 0x00 &&
	       ((f[14 + 6] << 8 | f[14 + 7]) & 0xbfff) != 0;
}

static int slirp_be_send(struct net_backend *nb, const struct iovec *iov, unsigned cnt)
{
	struct slirp_be *s = nb->priv;
	size_t len = iov_size(iov, cnt);
	_cleanup_free_ uint8_t *buf = NULL;
	const uint8_t *frame;

	if (len < 14 || len > NET_MAX_FRAME) {
		return -EINVAL;
	}
	frame = iov[0].iov_base;
	if (cnt > 1) {
		buf = malloc(len);
		if (!buf) {
			return -ENOMEM;
		}
		iov_to_buf(iov, cnt, 0, buf, len);
		frame = buf;
	}
	if (is_ipv4_fragment(frame, len)) {
		log_ratelimited(&fragment_rl, LOG_NOTICE, NULL, "user",
				"IPv4 fragments from guests are dropped (libslirp's "
				"reassembly can end the process)");
		return -EPERM;
	}
	s->in_send = true;
	slirp_input(s->slirp, frame, len);
	slirp_round(s);
	s->in_send = false;
	return 0;
}

static void slirp_be_rx_resume(struct net_backend *nb)
{
	deliver_queued(nb->priv);
}

const struct net_backend_ops net_slirp_ops = {
	.name = "user",
	.open = slirp_be_open,
	.close = slirp_be_close,
	.send = slirp_be_send,
	.rx_resume = slirp_be_rx_resume,
	.set_offload = NULL,
};
