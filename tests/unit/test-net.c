/*
 * net/: the hostfwd and MAC parsers, and the libslirp backend driven
 * without a VM: a DHCP DISCOVER gets an OFFER from slirp's server, IPv4
 * fragments are dropped before slirp, an ARP request for the gateway gets
 * a reply, frames wait (bounded) while the peer has no buffers, and a
 * hostfwd rule turns a host connection into a frame towards the guest.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/iov.h"
#include "net/net.h"

START_TEST(test_hostfwd_parse)
{
	struct net_hostfwd f;

	ck_assert_int_eq(net_hostfwd_parse("tcp::2222-:22", &f, NULL), 0);
	ck_assert(!f.udp);
	ck_assert_uint_eq(f.host_addr, htonl(INADDR_ANY));
	ck_assert_uint_eq(f.host_port, 2222);
	ck_assert_uint_eq(f.guest_addr, htonl(0x0a00020f));
	ck_assert_uint_eq(f.guest_port, 22);
	ck_assert_int_eq(net_hostfwd_parse("udp:127.0.0.1:5353-10.0.2.20:53", &f, NULL), 0);
	ck_assert(f.udp);
	ck_assert_uint_eq(f.host_addr, htonl(0x7f000001));
	ck_assert_uint_eq(f.guest_addr, htonl(0x0a000214));
	ck_assert_uint_eq(f.guest_port, 53);
	ck_assert_int_eq(net_hostfwd_parse("::8080-:80", &f, NULL), 0);
	ck_assert_uint_eq(f.host_port, 8080);
}
END_TEST

START_TEST(test_hostfwd_parse_errors)
{
	static const char *const bad[] = {
		"",
		"tcp",
		"tcp:2222-:22",
		"sctp::1-:2",
		"tcp::0-:22",
		"tcp::65536-:22",
		"tcp::22-:",
		"tcp::22:22",
		"tcp:1.2.3:22-:22",
		"tcp::-1-:22",
		"tcp::22-1.2.3.4",
		"tcp::2x-:22",
		"tcp::1234567-:2",
	};
	struct net_hostfwd f;
	struct error *err = NULL;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(net_hostfwd_parse(bad[i], &f, NULL) == -EINVAL, "accepted '%s'",
			      bad[i]);
	}
	ck_assert_int_eq(net_hostfwd_parse("tcp:x", &f, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "tcp:x"));
	error_free(err);
}
END_TEST

START_TEST(test_mac_parse)
{
	uint8_t mac[6];
	static const uint8_t want[6] = {0x52, 0x54, 0x00, 0xab, 0xCD, 0xef};

	ck_assert_int_eq(net_mac_parse("52:54:00:ab:CD:ef", mac), 0);
	ck_assert_mem_eq(mac, want, 6);
	ck_assert_int_eq(net_mac_parse("01:00:5e:00:00:01", mac), -EINVAL); /* multicast */
	ck_assert_int_eq(net_mac_parse("52:54:00:ab:cd", mac), -EINVAL);
	ck_assert_int_eq(net_mac_parse("52:54:00:ab:cd:ef:", mac), -EINVAL);
	ck_assert_int_eq(net_mac_parse("52-54-00-ab-cd-ef", mac), -EINVAL);
	ck_assert_int_eq(net_mac_parse(" 2:54:00:ab:cd:ef", mac), -EINVAL);
	ck_assert_int_eq(net_mac_parse("5g:54:00:ab:cd:ef", mac), -EINVAL);
}
END_TEST

/*
 * The announcement frame, field by field as RFC 903 lays it out (the bytes
 * QEMU 7.2 sends are compared in tests/functional/test-announce.py).
 */
START_TEST(test_rarp_frame)
{
	static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x01};
	static const uint8_t head[14 + 8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54,
					     0x00, 0x12, 0x34, 0x01, 0x80, 0x35, 0x00, 0x01,
					     0x08, 0x00, 6,    4,    0x00, 0x03};
	static const uint8_t zero[18] = {0};
	uint8_t buf[NET_RARP_LEN];

	memset(buf, 0xaa, sizeof(buf));
	ck_assert_uint_eq(net_rarp_frame(buf, mac), 60);
	ck_assert_mem_eq(buf, head, sizeof(head));
	ck_assert_mem_eq(buf + 22, mac, 6);   /* sender hardware address */
	ck_assert_mem_eq(buf + 28, zero, 4);  /* sender protocol address */
	ck_assert_mem_eq(buf + 32, mac, 6);   /* target hardware address */
	ck_assert_mem_eq(buf + 38, zero, 4);  /* target protocol address */
	ck_assert_mem_eq(buf + 42, zero, 18); /* padding */
}
END_TEST

/* ---- slirp backend ---- */

struct sink {
	int frames;
	bool busy;
	uint8_t last[2048];
	size_t last_len;
	bool offer;
	bool arp_reply;
	bool to_guest_15; /* ARP who-has 10.0.2.15 or a TCP SYN to it */
};

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

static void classify(struct sink *k, const uint8_t *f, size_t len)
{
	uint16_t type;

	if (len < 14) {
		return;
	}
	type = f[12] << 8 | f[13];
	if (type == 0x0806 && len >= 42) {
		uint16_t op = f[20] << 8 | f[21];

		if (op == 2 && !memcmp(f + 28, "\x0a\x00\x02\x02", 4)) {
			k->arp_reply = true;
		}
		if (op == 1 && !memcmp(f + 38, "\x0a\x00\x02\x0f", 4)) {
			k->to_guest_15 = true;
		}
	}
	if (type == 0x0800 && len >= 14 + 20 + 8) {
		const uint8_t *ip = f + 14;
		unsigned ihl = (ip[0] & 15) * 4;
		const uint8_t *l4 = ip + ihl;

		if (ip[9] == 17 && len >= 14 + ihl + 8 + 240) {
			const uint8_t *bootp = l4 + 8;
			const uint8_t *opt = bootp + 240;
			const uint8_t *end = f + len;

			if ((l4[0] << 8 | l4[1]) == 67 && bootp[0] == 2 &&
			    !memcmp(bootp + 16, "\x0a\x00\x02\x0f", 4)) {
				while (opt + 2 <= end && opt[0] != 255) {
					if (opt[0] == 53 && opt[1] == 1 && opt + 3 <= end &&
					    opt[2] == 2) {
						k->offer = true;
					}
					if (opt[0] == 0) {
						opt++;
						continue;
					}
					opt += 2 + opt[1];
				}
			}
		}
		if (ip[9] == 6 && !memcmp(ip + 16, "\x0a\x00\x02\x0f", 4)) {
			k->to_guest_15 = true;
		}
	}
}

static int sink_receive(void *opaque, const struct iovec *iov, unsigned cnt)
{
	struct sink *k = opaque;

	if (k->busy) {
		return -EAGAIN;
	}
	k->frames++;
	k->last_len = iov_to_buf(iov, cnt, 0, k->last, sizeof(k->last));
	classify(k, k->last, k->last_len);
	return 0;
}

static uint16_t ip_csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2) {
		sum += p[i] << 8 | p[i + 1];
	}
	while (sum >> 16) {
		sum = (sum & 0xffff) + (sum >> 16);
	}
	return ~sum;
}

/* Ethernet + IPv4 + UDP + a 548-byte BOOTP DHCPDISCOVER; returns the length. */
static size_t build_discover(uint8_t *f)
{
	uint8_t *ip = f + 14, *udp = ip + 20, *bootp = udp + 8;
	size_t bootp_len = 548, udp_len = 8 + bootp_len, ip_len = 20 + udp_len;
	uint16_t c;

	memset(f, 0, 14 + ip_len);
	memset(f, 0xff, 6);
	memcpy(f + 6, guest_mac, 6);
	f[12] = 0x08;
	ip[0] = 0x45;
	ip[2] = ip_len >> 8;
	ip[3] = ip_len & 0xff;
	ip[8] = 64;
	ip[9] = 17;
	memset(ip + 16, 0xff, 4);
	c = ip_csum(ip, 20);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	udp[1] = 68;
	udp[3] = 67;
	udp[4] = udp_len >> 8;
	udp[5] = udp_len & 0xff;
	bootp[0] = 1;
	bootp[1] = 1;
	bootp[2] = 6;
	memcpy(bootp + 4, "\x12\x34\x56\x78", 4);
	bootp[10] = 0x80;
	memcpy(bootp + 28, guest_mac, 6);
	memcpy(bootp + 236, "\x63\x82\x53\x63", 4);
	memcpy(bootp + 240, "\x35\x01\x01\xff", 4);
	return 14 + ip_len;
}

static size_t build_arp_request(uint8_t *f)
{
	memset(f, 0, 60);
	memset(f, 0xff, 6);
	memcpy(f + 6, guest_mac, 6);
	f[12] = 0x08;
	f[13] = 0x06;
	f[15] = 1;    /* htype ethernet */
	f[16] = 0x08; /* ptype ipv4 */
	f[18] = 6;
	f[19] = 4;
	f[21] = 1; /* request */
	memcpy(f + 22, guest_mac, 6);
	memcpy(f + 28, "\x0a\x00\x02\x0f", 4);
	memcpy(f + 38, "\x0a\x00\x02\x02", 4);
	return 60;
}

static void spin(struct event_base *base, bool *flag, int ms)
{
	int i;

	for (i = 0; i < ms && !*flag; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static struct net_backend *open_user(struct event_base *base, struct sink *k, char **fwd)
{
	struct net_backend_config cfg = {.backend = "user", .fd = -1, .hostfwd = fwd, .id = "net0"};
	struct net_peer peer = {.receive = sink_receive, .opaque = k};
	struct net_backend *nb = NULL;
	struct error *err = NULL;

	ck_assert_msg(net_backend_open(&cfg, base, &peer, &nb, &err) == 0, "%s",
		      err ? err->msg : "");
	ck_assert(!net_backend_has_vnet_hdr(nb));
	return nb;
}

START_TEST(test_slirp_dhcp)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_backend *nb = open_user(base, &k, NULL);
	uint8_t frame[1024];
	struct iovec iov[2];
	size_t len = build_discover(frame);

	/* split the frame over two buffers, as a guest's descriptor chain would */
	iov[0].iov_base = frame;
	iov[0].iov_len = 100;
	iov[1].iov_base = frame + 100;
	iov[1].iov_len = len - 100;
	ck_assert_int_eq(net_backend_send(nb, iov, 2), 0);
	spin(base, &k.offer, 2000);
	ck_assert_msg(k.offer, "no DHCPOFFER for 10.0.2.15 (%d frames)", k.frames);
	/* we asked for a broadcast reply (BOOTP flags) */
	ck_assert_mem_eq(k.last, "\xff\xff\xff\xff\xff\xff", 6);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

START_TEST(test_slirp_arp_and_backpressure)
{
	struct event_base *base = event_base_new();
	struct sink k = {.busy = true};
	struct net_backend *nb = open_user(base, &k, NULL);
	uint8_t frame[64];
	struct iovec iov = {.iov_base = frame, .iov_len = build_arp_request(frame)};
	bool never = false;

	ck_assert_int_eq(net_backend_send(nb, &iov, 1), 0);
	spin(base, &never, 50);
	ck_assert_int_eq(k.frames, 0);
	/* the reply waited for the guest's buffers */
	k.busy = false;
	net_backend_rx_resume(nb);
	ck_assert(k.arp_reply);
	ck_assert_int_eq(k.frames, 1);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

/*
 * Detached (the VM handed over, its RAM another process's): the backend
 * never calls the peer again, also for a frame it still produces.
 */
START_TEST(test_slirp_detached_delivers_nothing)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_backend *nb = open_user(base, &k, NULL);
	uint8_t frame[64];
	struct iovec iov = {.iov_base = frame, .iov_len = build_arp_request(frame)};
	bool never = false;

	ck_assert_int_eq(net_backend_send(nb, &iov, 1), 0);
	spin(base, &k.arp_reply, 2000);
	ck_assert_int_eq(k.frames, 1);
	ck_assert_int_eq(net_backend_host_fd(nb), -1);
	net_backend_detach(nb);
	ck_assert_int_eq(net_backend_send(nb, &iov, 1), 0);
	spin(base, &never, 100);
	ck_assert_int_eq(k.frames, 1);
	ck_assert_uint_eq(nb->rx_dropped, 1);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

START_TEST(test_slirp_bounded_queue)
{
	struct event_base *base = event_base_new();
	struct sink k = {.busy = true};
	struct net_backend *nb = open_user(base, &k, NULL);
	uint8_t frame[64];
	struct iovec iov = {.iov_base = frame, .iov_len = build_arp_request(frame)};
	int i;

	for (i = 0; i < 200; i++) {
		ck_assert_int_eq(net_backend_send(nb, &iov, 1), 0);
	}
	k.busy = false;
	net_backend_rx_resume(nb);
	ck_assert_int_eq(k.frames, 64);
	ck_assert_uint_eq(nb->rx_dropped, 200 - 64);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

START_TEST(test_slirp_runt_frame)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_backend *nb = open_user(base, &k, NULL);
	uint8_t frame[8] = {0};
	struct iovec iov = {.iov_base = frame, .iov_len = sizeof(frame)};

	ck_assert_int_eq(net_backend_send(nb, &iov, 1), -EINVAL);
	ck_assert_uint_eq(nb->tx_dropped, 1);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

/*
 * An ICMP echo of 40 bytes from the guest to 10.0.2.2 whose IP flags and
 * fragment offset field is @frag (0x4000: DF, a whole datagram).
 */
static size_t build_ping(uint8_t *f, uint16_t frag)
{
	uint8_t *ip = f + 14, *icmp = ip + 20;
	uint16_t c;

	memset(f, 0, 14 + 20 + 40);
	memcpy(f, "\x52\x55\x0a\x00\x02\x02", 6);
	memcpy(f + 6, guest_mac, 6);
	f[12] = 0x08;
	ip[0] = 0x45;
	ip[3] = 20 + 40;
	ip[5] = 1;
	ip[6] = frag >> 8;
	ip[7] = frag & 0xff;
	ip[8] = 64;
	ip[9] = 1;
	memcpy(ip + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	c = ip_csum(ip, 20);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	icmp[0] = 8;
	c = ip_csum(icmp, 40);
	icmp[2] = c >> 8;
	icmp[3] = c & 0xff;
	return 14 + 20 + 40;
}

/*
 * IPv4 fragments from the guest never reach slirp: Debian 12's libslirp
 * ends the process on a last fragment that arrives first (offset 1408, no
 * more fragments; the fuzz target's reproducer), which would end every VM
 * of the daemon. A whole datagram still goes through.
 */
START_TEST(test_slirp_drops_ipv4_fragments)
{
	static const uint16_t frags[] = {0x00b0, 0x2000, 0x20b0, 0x8000, 0x40b0};
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_backend *nb = open_user(base, &k, NULL);
	uint8_t frame[128];
	struct iovec iov = {.iov_base = frame};

	for (unsigned i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
		iov.iov_len = build_ping(frame, frags[i]);
		ck_assert_int_eq(net_backend_send(nb, &iov, 1), -EPERM);
	}
	ck_assert_uint_eq(nb->tx_dropped, 5);
	iov.iov_len = build_ping(frame, 0x4000);
	ck_assert_int_eq(net_backend_send(nb, &iov, 1), 0);
	ck_assert_uint_eq(nb->tx_frames, 1);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

START_TEST(test_slirp_hostfwd)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	char rule[64];
	char *fwd[] = {rule, NULL};
	struct net_backend *nb;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int port = 20000 + getpid() % 20000;
	int s;

	snprintf(rule, sizeof(rule), "tcp:127.0.0.1:%d-:22", port);
	nb = open_user(base, &k, fwd);
	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(s, 0);
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(0x7f000001);
	ck_assert(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS);
	spin(base, &k.to_guest_15, 3000);
	ck_assert_msg(k.to_guest_15, "the forwarded connection never reached the guest side");
	close(s);
	net_backend_close(nb);
	event_base_free(base);
}
END_TEST

START_TEST(test_backend_errors)
{
	struct event_base *base = event_base_new();
	struct sink k = {0};
	struct net_peer peer = {.receive = sink_receive, .opaque = &k};
	char *fwd[] = {"tcp:nope", NULL};
	struct net_backend_config cfg = {.backend = "vde", .fd = -1, .id = "net0"};
	struct net_backend *nb = NULL;
	struct error *err = NULL;

	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "vde"));
	error_free(err);
	err = NULL;
	cfg.backend = "user";
	cfg.hostfwd = fwd;
	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "tcp:nope"));
	error_free(err);
	err = NULL;
	cfg.backend = "tap";
	cfg.hostfwd = NULL;
	ck_assert_int_eq(net_backend_open(&cfg, base, &peer, &nb, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "ifname"));
	error_free(err);
	ck_assert_ptr_null(nb);
	event_base_free(base);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("net");
	TCase *tc = tcase_create("parse");
	TCase *ts = tcase_create("slirp");

	tcase_add_test(tc, test_hostfwd_parse);
	tcase_add_test(tc, test_hostfwd_parse_errors);
	tcase_add_test(tc, test_mac_parse);
	tcase_add_test(tc, test_rarp_frame);
	tcase_add_test(tc, test_backend_errors);
	suite_add_tcase(s, tc);
	tcase_add_test(ts, test_slirp_dhcp);
	tcase_add_test(ts, test_slirp_drops_ipv4_fragments);
	tcase_add_test(ts, test_slirp_arp_and_backpressure);
	tcase_add_test(ts, test_slirp_detached_delivers_nothing);
	tcase_add_test(ts, test_slirp_bounded_queue);
	tcase_add_test(ts, test_slirp_runt_frame);
	tcase_add_test(ts, test_slirp_hostfwd);
	tcase_set_timeout(ts, 20);
	suite_add_tcase(s, ts);
	return s;
}

#include "check-main.h"
