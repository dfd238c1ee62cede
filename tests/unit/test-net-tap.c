/*
 * net/tap.c against real TAP interfaces, inside a private network
 * namespace (skipped when the test may not create one or has no
 * /dev/net/tun): attach by name, attach by passed fd, frames both ways with
 * the virtio-net header, pause/resume of reading, a peer without buffers
 * leaving frames in the kernel's queue, offload settings, and the errors
 * for a tun (not tap) fd.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/iov.h"
#include "net/net.h"

struct sink {
	int frames;
	bool busy;
	uint8_t last[2048];
	size_t last_len;
};

static int sink_receive(void *opaque, const struct iovec *iov, unsigned cnt)
{
	struct sink *k = opaque;

	uint8_t f[2048];
	size_t n;

	if (k->busy) {
		return -EAGAIN;
	}
	/* only our test frames count: the kernel sends its own (IPv6 ND, ...) */
	n = iov_to_buf(iov, cnt, 0, f, sizeof(f));
	if (n < sizeof(struct net_vnet_hdr) + 15 || f[sizeof(struct net_vnet_hdr) + 12] != 0x88 ||
	    f[sizeof(struct net_vnet_hdr) + 13] != 0xb5) {
		return 0;
	}
	k->frames++;
	memcpy(k->last, f, n);
	k->last_len = n;
	return 0;
}

static bool sink_can_receive(void *opaque)
{
	return !((struct sink *)opaque)->busy;
}

static void link_up(const char *ifname)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(s, 0);
	strcpy(ifr.ifr_name, ifname);
	ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	ck_assert_int_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
}

/* A packet socket on @ifname: the "wire" side of the tap. */
static int wire_open(const char *ifname)
{
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));

	ck_assert_int_ge(s, 0);
	sll.sll_ifindex = if_nametoindex(ifname);
	ck_assert_int_gt(sll.sll_ifindex, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

static size_t make_frame(uint8_t *f, uint8_t tag)
{
	memset(f, 0, 60);
	memcpy(f, "\x52\x54\x00\x00\x00\x02", 6);
	memcpy(f + 6, "\x52\x54\x00\x00\x00\x01", 6);
	f[12] = 0x88; /* local experimental ethertype */
	f[13] = 0xb5;
	f[14] = tag;
	return 60;
}

static struct net_backend *open_tap(struct event_base *base, struct sink *k, const char *ifname,
				    int fd)
{
	struct net_backend_config cfg = {.backend = "tap", .ifname = ifname, .fd = fd, .id = "n"};
	struct net_peer peer = {.receive = sink_receive, .opaque = k};
	struct net_backend *nb = NULL;
	struct error *err = NULL;

	ck_assert_msg(net_backend_open(&cfg, base, &peer, &nb, &err) == 0, "%s",
		      err ? err->msg : "");
	return nb;
}

static void spin(struct event_base *base, int *count, int want, int ms)
{
	int i;

	for (i = 0; i < ms && *count < want; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

/* Send frame @tag on the wire @w: the backend must not read it (200 ms). */
static void send_unread(struct event_base *base, int w, struct sink *k, uint8_t tag)
{
	uint8_t f[64];
	int before = k->frames;

	make_frame(f, tag);
	ck_assert_int_eq(send(w, f, 60, 0), 60);
	spin(base, &k->frames, before + 1, 200);
	ck_assert_int_eq(k->frames, before);
}

static bool wire_recv_tag(int s, uint8_t tag, int ms)
{
	uint8_t buf[2048];
	int i;

	for (i = 0; i < ms; i++) {
		ssize_t n;

		while ((n = recv(s, buf, sizeof(buf), 0)) > 0) {
			if (n >= 15 && buf[12] == 0x88 && buf[13] == 0xb5 && buf[14] == tag) {
				return true;
			}
		}
		usleep(1000);
	}
	return false;
}

static void both_ways(struct event_base *base, struct net_backend *nb, struct sink *k,
		      const char *ifname)
{
	struct net_vnet_hdr hdr = {0};
	uint8_t f[64];
	struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {f, 0}};
	int w;

	ck_assert(net_backend_has_vnet_hdr(nb));
	link_up(ifname);
	w = wire_open(ifname);
	/* guest -> wire */
	iov[1].iov_len = make_frame(f, 0x11);
	ck_assert_int_eq(net_backend_send(nb, iov, 2), 0);
	ck_assert(wire_recv_tag(w, 0x11, 2000));
	/* wire -> guest, with a vnet header in front */
	make_frame(f, 0x22);
	ck_assert_int_eq(send(w, f, 60, 0), 60);
	spin(base, &k->frames, 1, 2000);
	ck_assert_int_ge(k->frames, 1);
	ck_assert_uint_eq(k->last_len, sizeof(hdr) + 60);
	ck_assert_uint_eq(k->last[sizeof(hdr) + 14], 0x22);
	/* a busy guest stops reading; resume delivers the waiting frame */
	k->busy = true;
	make_frame(f, 0x33);
	ck_assert_int_eq(send(w, f, 60, 0), 60);
	spin(base, &k->frames, 100, 100);
	k->busy = false;
	w = (close(w), -1);
	net_backend_rx_resume(nb);
	spin(base, &k->frames, 2, 1000);
	ck_assert_uint_eq(k->last[sizeof(hdr) + 14], 0x33);
	ck_assert_int_eq(
		net_backend_set_offload(nb, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6),
		0);
	ck_assert_int_eq(net_backend_set_offload(nb, 0), 0);
}

START_TEST(test_tap_by_name)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_backend *nb = open_tap(base, &k, "vmmdtap0", -1);

	both_ways(base, nb, &k, "vmmdtap0");
	net_backend_close(nb);
	/* non-persistent: closing the backend removed the interface */
	ck_assert_uint_eq(if_nametoindex("vmmdtap0"), 0);
	event_base_free(base);
}
END_TEST

START_TEST(test_tap_by_fd)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct ifreq ifr = {0};
	struct net_backend *nb;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	strcpy(ifr.ifr_name, "vmmdtap1");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	ck_assert_int_eq(ioctl(fd, TUNSETIFF, &ifr), 0);
	nb = open_tap(base, &k, NULL, fd);
	both_ways(base, nb, &k, "vmmdtap1");
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

START_TEST(test_tap_rejects_tun)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_peer peer = {.receive = sink_receive, .opaque = &k};
	struct ifreq ifr = {0};
	struct net_backend_config cfg = {.backend = "tap", .id = "n"};
	struct net_backend *nb = NULL;
	struct error *err = NULL;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	strcpy(ifr.ifr_name, "vmmdtun0");
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	ck_assert_int_eq(ioctl(fd, TUNSETIFF, &ifr), 0);
	cfg.fd = fd;
	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "not a tap"));
	error_free(err);
	err = NULL;
	/* the fd was consumed: the interface is gone */
	ck_assert_uint_eq(if_nametoindex("vmmdtun0"), 0);
	cfg.fd = -1;
	cfg.ifname = "an-interface-name-too-long";
	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, &err), -EINVAL);
	error_free(err);
	ck_assert_ptr_null(nb);
	event_base_free(base);
}
END_TEST

/*
 * Tap NICs by fd (docs/migration.md): the name check of a handed-over fd,
 * and a detached backend that leaves the tap alone.
 */
START_TEST(test_tap_handover)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_peer peer = {.receive = sink_receive, .opaque = &k};
	struct net_backend_config cfg = {.backend = "tap", .id = "n"};
	struct net_vnet_hdr hdr = {0};
	struct ifreq ifr = {0};
	struct net_backend *nb = NULL;
	struct error *err = NULL;
	char name[16];
	uint8_t f[64], buf[2048];
	struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {f, 0}};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK), p[2], tun, w;

	ck_assert_int_ge(fd, 0);
	strcpy(ifr.ifr_name, "vmmdtap2");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	ck_assert_int_eq(ioctl(fd, TUNSETIFF, &ifr), 0);
	ck_assert_int_eq(net_tap_fd_name(fd, name, NULL), 0);
	ck_assert_str_eq(name, "vmmdtap2");
	/* not a tap: a pipe, a tun */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_lt(net_tap_fd_name(p[0], name, &err), 0);
	ck_assert_ptr_nonnull(strstr(err->msg, "not a tap"));
	error_free(err);
	err = NULL;
	close(p[0]);
	close(p[1]);
	tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "vmmdtun1");
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	ck_assert_int_eq(ioctl(tun, TUNSETIFF, &ifr), 0);
	ck_assert_int_eq(net_tap_fd_name(tun, name, NULL), -EINVAL);
	close(tun);
	/* an fd with a name: they must agree */
	cfg.ifname = "vmmdtap9";
	cfg.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "attached to 'vmmdtap2', not 'vmmdtap9'"));
	error_free(err);
	err = NULL;
	cfg.ifname = "vmmdtap2";
	cfg.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, &err), 0);
	ck_assert_int_ge(net_backend_host_fd(nb), 0);
	/* detached: no fd, sends dropped, the wire's frames stay for the other holder */
	net_backend_detach(nb);
	ck_assert_int_eq(net_backend_host_fd(nb), -1);
	iov[1].iov_len = make_frame(f, 0x44);
	ck_assert_int_eq(net_backend_send(nb, iov, 2), -ENOTCONN);
	ck_assert_int_eq(net_backend_set_offload(nb, NET_OFFLOAD_CSUM), 0);
	net_backend_rx_resume(nb);
	link_up("vmmdtap2");
	w = wire_open("vmmdtap2");
	send_unread(base, w, &k, 0x55);
	for (int i = 0; i < 2000; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n >= (ssize_t)sizeof(hdr) + 15 && buf[sizeof(hdr) + 14] == 0x55) {
			break;
		}
		ck_assert_int_lt(i, 1999);
		usleep(1000);
	}
	close(w);
	net_backend_close(nb);
	/* the namespace check: ours until this process moves to another one */
	ck_assert_int_eq(net_tap_fd_in_our_netns(fd), 1);
	ck_assert_int_eq(unshare(CLONE_NEWNET), 0);
	ck_assert_int_eq(net_tap_fd_in_our_netns(fd), 0);
	close(fd);
	event_base_free(base);
}
END_TEST

/*
 * A peer without buffers (can_receive false) leaves the frames in the
 * tap's queue: after a hand-over of the fd and the backend's detach, the
 * new holder reads every one (a frame read and held here would be lost).
 */
START_TEST(test_tap_full_peer_leaves_queue)
{
	struct event_base *base = event_base_new();
	struct sink k = {.busy = true};
	struct net_peer peer = {
		.receive = sink_receive, .can_receive = sink_can_receive, .opaque = &k};
	struct net_backend_config cfg = {
		.backend = "tap", .ifname = "vmmdtap3", .fd = -1, .id = "n"};
	const size_t hl = sizeof(struct net_vnet_hdr);
	struct net_backend *nb = NULL;
	uint8_t buf[2048];
	unsigned seen = 0;
	int fd, w;
	FILE *v6;

	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, NULL), 0);
	/* no IPv6 frames of the kernel's own in the queue, only ours */
	v6 = fopen("/proc/sys/net/ipv6/conf/vmmdtap3/disable_ipv6", "w");
	if (v6) {
		fputs("1\n", v6);
		fclose(v6);
	}
	link_up("vmmdtap3");
	w = wire_open("vmmdtap3");
	/* busy: nothing read; buffers again and rx_resume: the frame comes */
	send_unread(base, w, &k, 1);
	k.busy = false;
	net_backend_rx_resume(nb);
	spin(base, &k.frames, 1, 2000);
	ck_assert_int_eq(k.frames, 1);
	ck_assert_uint_eq(k.last[hl + 14], 1);
	/* busy again, three frames, then the fd handed over and detached */
	k.busy = true;
	for (uint8_t tag = 2; tag <= 4; tag++) {
		send_unread(base, w, &k, tag);
	}
	fd = fcntl(net_backend_host_fd(nb), F_DUPFD_CLOEXEC, 3);
	ck_assert_int_ge(fd, 0);
	net_backend_detach(nb);
	for (int i = 0; i < 2000 && seen != 0x1c; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n >= (ssize_t)hl + 15 && buf[hl + 12] == 0x88 && buf[hl + 13] == 0xb5 &&
		    buf[hl + 14] < 8) {
			seen |= 1u << buf[hl + 14];
		} else if (n < 0) {
			usleep(1000);
		}
	}
	ck_assert_uint_eq(seen, 0x1c);
	close(w);
	close(fd);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("net-tap");
	TCase *tc = tcase_create("tap");

	if (access("/dev/net/tun", R_OK | W_OK) != 0) {
		printf("SKIP: /dev/net/tun is not accessible\n");
		exit(77);
	}
	if (unshare(CLONE_NEWNET) != 0) {
		printf("SKIP: cannot create a network namespace: %s\n", strerror(errno));
		exit(77);
	}
	tcase_add_test(tc, test_tap_by_name);
	tcase_add_test(tc, test_tap_by_fd);
	tcase_add_test(tc, test_tap_rejects_tun);
	tcase_add_test(tc, test_tap_handover);
	tcase_add_test(tc, test_tap_full_peer_leaves_queue);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
