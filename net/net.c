/*
 * The backend interface: a static table of backend classes (no constructor
 * registration), dispatch, and the small parsers the backends share.
 *
 * Threads: see net.h. The parsers are pure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "net/net.h"

static const struct net_backend_ops *const backends[] = {
	&net_slirp_ops,
	&net_tap_ops,
};

static const struct net_backend_ops *find_backend(const char *name)
{
	size_t i;

	if (!name || !strcmp(name, "user")) {
		return &net_slirp_ops;
	}
	for (i = 0; i < ARRAY_SIZE(backends); i++) {
		if (!strcmp(backends[i]->name, name)) {
			return backends[i];
		}
	}
	return NULL;
}

int net_backend_open(const struct net_backend_config *cfg, struct event_base *base,
		     const struct net_peer *peer, struct net_backend **ret, struct error **errp)
{
	const struct net_backend_ops *ops = find_backend(cfg->backend);
	_cleanup_free_ struct net_backend *nb = NULL;
	int r;

	if (!ops) {
		return error_set(errp, EINVAL,
				 "nic %s: unknown backend '%s' (use \"user\" or \"tap\")",
				 cfg->id ? cfg->id : "?", cfg->backend);
	}
	nb = calloc(1, sizeof(*nb));
	if (!nb) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	nb->ops = ops;
	nb->base = base;
	nb->peer = *peer;
	r = ops->open(nb, cfg, errp);
	if (r < 0) {
		return r;
	}
	*ret = TAKE_PTR(nb);
	return 0;
}

void net_backend_close(struct net_backend *nb)
{
	if (!nb) {
		return;
	}
	nb->ops->close(nb);
	free(nb);
}

int net_backend_send(struct net_backend *nb, const struct iovec *iov, unsigned cnt)
{
	int r = nb->ops->send(nb, iov, cnt);

	if (r < 0) {
		nb->tx_dropped++;
	} else {
		nb->tx_frames++;
	}
	return r;
}

void net_backend_rx_resume(struct net_backend *nb)
{
	nb->ops->rx_resume(nb);
}

int net_backend_set_offload(struct net_backend *nb, unsigned offloads)
{
	if (!nb->ops->set_offload) {
		return offloads ? -ENOTSUP : 0;
	}
	return nb->ops->set_offload(nb, offloads);
}

bool net_backend_has_vnet_hdr(const struct net_backend *nb)
{
	return nb->vnet_hdr;
}

int net_backend_host_fd(struct net_backend *nb)
{
	return nb && nb->ops->host_fd ? nb->ops->host_fd(nb) : -1;
}

/* The peer of a detached backend: every frame is dropped. */
static int detached_receive(void *opaque, const struct iovec *iov, unsigned cnt)
{
	(void)opaque;
	(void)iov;
	(void)cnt;
	return -ENOTCONN;
}

void net_backend_detach(struct net_backend *nb)
{
	if (!nb) {
		return;
	}
	if (nb->ops->detach) {
		nb->ops->detach(nb);
	}
	nb->peer.receive = detached_receive;
	nb->peer.can_receive = NULL;
}

static int parse_port(const char *s, size_t len, uint16_t *ret)
{
	char buf[8];
	char *end;
	unsigned long v;

	if (len == 0 || len >= sizeof(buf)) {
		return -EINVAL;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (buf[0] < '0' || buf[0] > '9') {
		return -EINVAL;
	}
	v = strtoul(buf, &end, 10);
	if (*end || v == 0 || v > 65535) {
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static int parse_addr(const char *s, size_t len, uint32_t dflt, uint32_t *ret)
{
	char buf[INET_ADDRSTRLEN];
	struct in_addr a;

	if (len == 0) {
		*ret = dflt;
		return 0;
	}
	if (len >= sizeof(buf)) {
		return -EINVAL;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1) {
		return -EINVAL;
	}
	*ret = a.s_addr;
	return 0;
}

/* "[addr]:port" -> addr and port */
static int parse_endpoint(const char *s, size_t len, uint32_t dflt, uint32_t *addr, uint16_t *port)
{
	const char *colon = memchr(s, ':', len);

	if (!colon) {
		return -EINVAL;
	}
	if (parse_addr(s, colon - s, dflt, addr) < 0) {
		return -EINVAL;
	}
	return parse_port(colon + 1, len - (colon + 1 - s), port);
}

int net_hostfwd_parse(const char *rule, struct net_hostfwd *ret, struct error **errp)
{
	struct net_hostfwd fwd = {0};
	const char *p, *dash;

	if (!strncmp(rule, "tcp:", 4)) {
		p = rule + 4;
	} else if (!strncmp(rule, "udp:", 4)) {
		fwd.udp = true;
		p = rule + 4;
	} else if (rule[0] == ':') {
		p = rule + 1; /* QEMU: protocol defaults to tcp */
	} else {
		goto bad;
	}
	dash = strchr(p, '-');
	if (!dash) {
		goto bad;
	}
	if (parse_endpoint(p, dash - p, htonl(INADDR_ANY), &fwd.host_addr, &fwd.host_port) < 0 ||
	    parse_endpoint(dash + 1, strlen(dash + 1), htonl(0x0a00020f), &fwd.guest_addr,
			   &fwd.guest_port) < 0) {
		goto bad;
	}
	*ret = fwd;
	return 0;
bad:
	return error_set(errp, EINVAL,
			 "invalid hostfwd rule '%s': expected tcp|udp:[hostaddr]:hostport-"
			 "[guestaddr]:guestport, e.g. \"tcp::2222-:22\"",
			 rule);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

int net_mac_parse(const char *s, uint8_t ret[6])
{
	uint8_t mac[6];
	int i;

	if (strlen(s) != 17) {
		return -EINVAL;
	}
	for (i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':')) {
			return -EINVAL;
		}
		mac[i] = hi << 4 | lo;
	}
	if (mac[0] & 1) {
		return -EINVAL; /* multicast/broadcast */
	}
	memcpy(ret, mac, 6);
	return 0;
}

#define ETH_P_RARP 0x8035
#define ARP_HRD_ETHER 1
#define ARP_PRO_IPV4 0x0800
#define RARP_OP_REQUEST_REVERSE 3

size_t net_rarp_frame(uint8_t buf[NET_RARP_LEN], const uint8_t mac[6])
{
	uint8_t *p = buf;

	memset(buf, 0, NET_RARP_LEN); /* the padding, and both protocol addresses */
	memset(p, 0xff, 6);	      /* Ethernet: to everyone, */
	memcpy(p + 6, mac, 6);	      /* from the NIC */
	p[12] = ETH_P_RARP >> 8;
	p[13] = ETH_P_RARP & 0xff;
	p += 14; /* RFC 903: ARP's layout with the reverse opcodes */
	p[0] = ARP_HRD_ETHER >> 8;
	p[1] = ARP_HRD_ETHER & 0xff;
	p[2] = ARP_PRO_IPV4 >> 8;
	p[3] = ARP_PRO_IPV4 & 0xff;
	p[4] = 6; /* hardware address length */
	p[5] = 4; /* protocol address length */
	p[6] = RARP_OP_REQUEST_REVERSE >> 8;
	p[7] = RARP_OP_REQUEST_REVERSE & 0xff;
	memcpy(p + 8, mac, 6);	/* sender hardware address (then 4 zero bytes) */
	memcpy(p + 18, mac, 6); /* target hardware address (then 4 zero bytes) */
	return NET_RARP_LEN;
}
