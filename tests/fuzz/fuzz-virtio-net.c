/*
 * libFuzzer target: virtio-net behind virtio-pci (hw/virtio/net.c) on the
 * fake machine with its default backend, libslirp: the transport
 * operations of tests/fuzz/fuzz-virtio.h on either queue, and frames the
 * guest transmits through the other (the side queue, set up by each start
 * whose queue is not the transmit queue), with their IPv4, TCP, UDP and
 * ICMP checksums made right where the input asks, which slirp answers
 * (ARP, DHCP, ICMP, TCP resets) into whatever receive buffers the input
 * laid out: mergeable or not, too small, chained, indirect; and the
 * link set down and up.
 *
 * slirp turns a guest's connections into the host's sockets: the target
 * runs in a network namespace of its own (LLVMFuzzerInitialize), whose
 * only interface is its loopback, so nothing leaves this process. There
 * an echo server on 127.0.0.1:22 takes the connections a guest opens to
 * 10.0.2.2:22, so that frames reach slirp's TCP beyond the handshake (its
 * first initial sequence number is 64001 in a fresh slirp; a seed uses it).
 * Where the target cannot have a namespace (not root, no user
 * namespaces), it says so and exits 77 (replay.sh counts it skipped).
 */
#include "config.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/thread.h>

#include "tests/fuzz/fuzz-virtio.h"
#include "vmmd/vm.h"

#define RAM_SIZE (1u << 20)
#define TXBUF 0x40000 /* the frames the side queue transmits, MAX_TX apart */
#define MAX_TX 1600   /* a header and a full Ethernet frame, and a little more */

#define MAX_CONN 8

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void extra(struct drv *d, void *state, uint8_t op, struct fz *f);

static const struct vm_nic_config nc = {
	.id = "net0", .backend = "user", .mac = "52:54:00:12:34:56"};
static struct fuzz_virtio t = {.cls = &virtio_net_class,
			       .cfg = &nc,
			       .side_q = 1,
			       .device_id = 0x1041,
			       .ram_size = RAM_SIZE,
			       .nops = 14,
			       .io_thread_at_unrealize = true,
			       .extra = extra};

/* The echo server's connections (slirp's side of a guest's TCP connection). */
static struct conn {
	int fd;
	struct event *ev;
} conns[MAX_CONN];

static void conn_close(struct conn *c)
{
	event_free(c->ev);
	close(c->fd);
	c->ev = NULL;
}

static void conn_ready(evutil_socket_t fd, short what, void *opaque)
{
	uint8_t buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));

	(void)what;
	if (n > 0) {
		(void)!write(fd, buf, (size_t)n);
	} else if (n == 0 || errno != EAGAIN) {
		conn_close(opaque);
	}
}

static void accept_ready(evutil_socket_t fd, short what, void *opaque)
{
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	(void)what;
	(void)opaque;
	if (c < 0) {
		return;
	}
	for (unsigned i = 0; i < MAX_CONN; i++) {
		if (!conns[i].ev) {
			conns[i].fd = c;
			conns[i].ev =
				event_new(t.base, c, EV_READ | EV_PERSIST, conn_ready, &conns[i]);
			if (!conns[i].ev || event_add(conns[i].ev, NULL) < 0) {
				abort();
			}
			return;
		}
	}
	close(c);
}

/* The loopback up and the echo server listening on it, in the target's namespace. */
static void echo_server(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(22)};
	struct ifreq ifr = {.ifr_name = "lo"};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;

	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		abort();
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		abort();
	}
	close(s);
	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, MAX_CONN) < 0 ||
	    event_add(event_new(t.base, s, EV_READ | EV_PERSIST, accept_ready, NULL), NULL) < 0) {
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (unshare(CLONE_NEWNET) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
		printf("SKIP: virtio-net: no network namespace of its own (%s), and without one "
		       "the guest's frames would reach the host's network\n",
		       strerror(errno));
		exit(77);
	}
	/* the backend is closed on the I/O loop's thread (fuzz-virtio.h) */
	evthread_use_pthreads();
	t.base = event_base_new();
	if (!t.base) {
		abort();
	}
	echo_server();
	return 0;
}

/* The one's complement sum of @len bytes at @p, added to @sum. */
static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 2) {
		sum += (uint32_t)p[i] << 8 | (i + 1 < len ? p[i + 1] : 0);
	}
	return sum;
}

static void put_csum(uint8_t *at, uint32_t sum)
{
	while (sum >> 16) {
		sum = (sum & 0xffff) + (sum >> 16);
	}
	sum = ~sum & 0xffff;
	at[0] = sum >> 8;
	at[1] = sum & 0xff;
}

/*
 * Make the IPv4 header's checksum, and the TCP, UDP or ICMP one after it,
 * right where @n bytes (a virtio-net header, then Ethernet) hold them:
 * slirp drops what fails a checksum, so without this mutated frames would
 * rarely get past its IP input.
 */
static void fix_checksums(uint8_t *frame, size_t n)
{
	uint8_t *ip = frame + 12 + 14, *l4;
	size_t ihl, total, l4len;
	uint32_t sum;

	if (n < 12 + 14 + 20 || frame[12 + 12] != 0x08 || frame[12 + 13] != 0x00) {
		return;
	}
	ihl = (ip[0] & 15) * 4u;
	total = (size_t)ip[2] << 8 | ip[3];
	if (ihl < 20 || total < ihl || 12 + 14 + total > n) {
		return;
	}
	ip[10] = ip[11] = 0;
	put_csum(ip + 10, sum16(0, ip, ihl));
	l4 = ip + ihl;
	l4len = total - ihl;
	/* the pseudo-header: addresses, protocol, length */
	sum = sum16(0, ip + 12, 8) + ip[9] + (uint32_t)l4len;
	if (ip[9] == 6 && l4len >= 20) {
		l4[16] = l4[17] = 0;
		put_csum(l4 + 16, sum16(sum, l4, l4len));
	} else if (ip[9] == 17 && l4len >= 8) {
		l4[6] = l4[7] = 0;
		put_csum(l4 + 6, sum16(sum, l4, l4len));
	} else if (ip[9] == 1 && l4len >= 4) {
		l4[2] = l4[3] = 0;
		put_csum(l4 + 2, sum16(0, l4, l4len));
	}
}

/*
 * Operation 5: the guest transmits a frame (a virtio-net header and what
 * follows) on the side queue, its IPv4 checksums made right or left as
 * the input has them. Operation 13: the host sets the link down or up
 * (set_link; a save then carries a link down).
 */
static void extra(struct drv *d, void *state, uint8_t op, struct fz *f)
{
	uint8_t frame[MAX_TX];
	uint64_t at;
	bool fix;
	size_t n;

	if (op % 14 == 13) {
		virtio_net_class.set_link(state, fz_u8(f) & 1);
		return;
	}
	if (op % 14 != 5) {
		return;
	}
	fix = fz_u8(f) & 1;
	n = fz_u16(f) % sizeof(frame);
	n = fz_bytes(f, frame, n);
	if (fix) {
		fix_checksums(frame, n);
	}
	/* a buffer per descriptor: frames sent before the loop runs stay apart */
	at = TXBUF + (uint64_t)(d->side_idx % QSZ) * MAX_TX;
	guest_mem_write(d->mem, at, frame, n);
	drv_side_send(d, at, (uint32_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_virtio_run(&t, data, size);
	/* slirp is gone: its connections end with the input */
	for (unsigned i = 0; i < MAX_CONN; i++) {
		if (conns[i].ev) {
			conn_close(&conns[i]);
		}
	}
	return 0;
}
