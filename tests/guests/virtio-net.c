/*
 * Test guest: drive the first virtio-net NIC (MAC, STATUS, MRG_RXBUF
 * negotiated; receive queue 0 and transmit queue 1 with MSI-X), print its
 * MAC and link state, then, by the MAC the test gave it:
 *   52:54:00:00:00:01  send a DHCPDISCOVER and wait for the DHCPOFFER (slirp);
 *   52:54:00:00:00:03  the same after the last fragment of an IPv4 datagram
 *                      whose other fragments never come (one that Debian
 *                      12's libslirp cannot take);
 *   anything else      ARP for 10.0.3.1 as 10.0.3.2 and wait for the reply
 *                      (tap, with the peer in another network namespace).
 */
#include "lib.h"
#include "virtio-drv.h"

#define NRX 16
#define HDR_LEN 12

static struct vq rxq, txq;
static uint8_t rxbuf[NRX][2048] __attribute__((aligned(64)));
static uint8_t txbuf[2048] __attribute__((aligned(64)));
static uint8_t mac[6];
static uint8_t peer_mac[6];

static void rx_post(struct vdev *d, unsigned i)
{
	rxq.desc[i].addr = (uint64_t)rxbuf[i];
	rxq.desc[i].len = sizeof(rxbuf[i]);
	rxq.desc[i].flags = VQ_F_WRITE;
	vq_kick(d, &rxq, i);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static uint16_t ip_csum(const uint8_t *p, unsigned len)
{
	uint32_t sum = 0;
	unsigned i;

	for (i = 0; i + 1 < len; i += 2) {
		sum += p[i] << 8 | p[i + 1];
	}
	while (sum >> 16) {
		sum = (sum & 0xffff) + (sum >> 16);
	}
	return ~sum;
}

/* Transmit txbuf: the header (zeroed unless @keep_hdr) and @flen frame bytes. */
static bool send(struct vdev *d, unsigned flen, bool keep_hdr)
{
	uint32_t id, len;

	if (!keep_hdr) {
		memset(txbuf, 0, HDR_LEN); /* no offloads: flags 0, GSO none */
	}
	txq.desc[0].addr = (uint64_t)txbuf;
	txq.desc[0].len = HDR_LEN + flen;
	txq.desc[0].flags = 0;
	vq_kick(d, &txq, 0);
	return vq_wait(&txq, &id, &len, 100000000);
}

static unsigned build_discover(uint8_t *f)
{
	uint8_t *ip = f + 14, *udp = ip + 20, *bootp = udp + 8;
	unsigned blen = 300, ulen = 8 + blen, ilen = 20 + ulen;

	memset(f, 0, 14 + ilen);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, ilen);
	ip[8] = 64;
	ip[9] = 17;
	memset(ip + 16, 0xff, 4);
	put16(ip + 10, ip_csum(ip, 20));
	put16(udp, 68);
	put16(udp + 2, 67);
	put16(udp + 4, ulen);
	bootp[0] = 1;
	bootp[1] = 1;
	bootp[2] = 6;
	memcpy(bootp + 4, "\x76\x6d\x6d\x64", 4); /* xid */
	memcpy(bootp + 28, mac, 6);
	memcpy(bootp + 236, "\x63\x82\x53\x63", 4);
	memcpy(bootp + 240, "\x35\x01\x01\xff", 4); /* DHCPDISCOVER */
	return 14 + ilen;
}

static unsigned build_arp(uint8_t *f)
{
	memset(f, 0, 60);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, 0x0806);
	put16(f + 14, 1);
	put16(f + 16, 0x0800);
	f[18] = 6;
	f[19] = 4;
	put16(f + 20, 1);
	memcpy(f + 22, mac, 6);
	memcpy(f + 28, "\x0a\x00\x03\x02", 4);
	memcpy(f + 38, "\x0a\x00\x03\x01", 4);
	return 60;
}

/*
 * The last fragment (offset 1408, no more fragments) of an ICMP echo to
 * 10.0.2.2, 40 bytes of it; the first fragment never comes.
 */
static unsigned build_last_fragment(uint8_t *f)
{
	uint8_t *ip = f + 14;

	memset(f, 0, 14 + 20 + 40);
	memcpy(f, "\x52\x55\x0a\x00\x02\x02", 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, 20 + 40);
	put16(ip + 4, 7);
	put16(ip + 6, 1408 / 8);
	ip[8] = 64;
	ip[9] = 1;
	memcpy(ip + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	put16(ip + 10, ip_csum(ip, 20));
	return 14 + 20 + 40;
}

static void print_ip(const uint8_t *a)
{
	for (int i = 0; i < 4; i++) {
		print_dec(a[i]);
		if (i < 3) {
			print(".");
		}
	}
}

/* 1: DHCP offer seen, 2: ARP reply seen, 0: something else */
static int classify(const uint8_t *f, unsigned len)
{
	if (len >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 &&
	    !memcmp(f + 28, "\x0a\x00\x03\x01", 4)) {
		print("arp: reply from 10.0.3.1\n");
		memcpy(peer_mac, f + 22, 6);
		return 2;
	}
	if (len >= 14 + 20 + 8 + 244 && f[12] == 0x08 && f[13] == 0x00 && f[14 + 9] == 17) {
		const uint8_t *udp = f + 14 + (f[14] & 15) * 4, *bootp = udp + 8;

		if (udp[3] == 68 && bootp[0] == 2 && !memcmp(bootp + 4, "\x76\x6d\x6d\x64", 4)) {
			const uint8_t *o = bootp + 240, *end = f + len;

			while (o + 2 <= end && o[0] != 255) {
				if (o[0] == 53 && o[2] == 2) {
					print("dhcp: offer ");
					print_ip(bootp + 16);
					print(" from ");
					print_ip(bootp + 20);
					print("\n");
					return 1;
				}
				o += o[0] ? 2 + o[1] : 1;
			}
		}
	}
	return 0;
}

/*
 * A UDP datagram to 10.0.3.1:9999 whose checksum the host must finish:
 * VIRTIO_NET_HDR_F_NEEDS_CSUM with csum_start/csum_offset, the checksum
 * field primed with the pseudo-header sum (virtio 1.x §5.1.6.2).
 */
static unsigned build_udp_partial(uint8_t *h, uint8_t *f)
{
	static const char msg[] = "vmmd-offload";
	uint8_t *ip = f + 14, *udp = ip + 20;
	unsigned ulen = 8 + sizeof(msg) - 1, ilen = 20 + ulen;
	uint32_t sum;

	memset(h, 0, HDR_LEN);
	h[0] = 1;	/* NEEDS_CSUM */
	h[6] = 14 + 20; /* csum_start (le16) */
	h[8] = 6;	/* csum_offset: the UDP checksum field */
	memset(f, 0, 14 + ilen);
	memcpy(f, peer_mac, 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, ilen);
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, "\x0a\x00\x03\x02", 4);
	memcpy(ip + 16, "\x0a\x00\x03\x01", 4);
	put16(ip + 10, ip_csum(ip, 20));
	put16(udp, 40000);
	put16(udp + 2, 9999);
	put16(udp + 4, ulen);
	memcpy(udp + 8, msg, sizeof(msg) - 1);
	/* pseudo-header: addresses, protocol, length (not complemented) */
	sum = 0x0a00 + 0x0302 + 0x0a00 + 0x0301 + 17 + ulen;
	while (sum >> 16) {
		sum = (sum & 0xffff) + (sum >> 16);
	}
	put16(udp + 6, sum);
	return 14 + ilen;
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam;
	unsigned i, tries;
	bool dhcp;
	int want, seen = 0;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(1, 0, &d)) {
		print("net: no device\n");
		guest_poweroff();
	}
	/* CSUM (0), MAC (5), MRG_RXBUF (15), STATUS (16) */
	if (!virtio_negotiate(&d, 1ull << 0 | 1ull << 5 | 1ull << 15 | 1ull << 16)) {
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &rxq, 0, VQ_SIZE, 1) ||
	    !virtio_queue_setup(&d, &txq, 1, VQ_SIZE, 2)) {
		print("net: queue setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	for (i = 0; i < 6; i++) {
		mac[i] = mr8(d.device + i);
	}
	print("net: mac ");
	for (i = 0; i < 6; i++) {
		static const char hex[] = "0123456789abcdef";
		char s[4] = {hex[mac[i] >> 4], hex[mac[i] & 15], i < 5 ? ':' : 0, 0};

		print(s);
	}
	print("\n");
	print(mr16(d.device + 6) & 1 ? "net: link up\n" : "net: link down\n");
	for (i = 0; i < NRX; i++) {
		rx_post(&d, i);
	}
	dhcp = mac[5] == 1 || mac[5] == 3;
	want = dhcp ? 1 : 2;
	if (mac[5] == 3 && send(&d, build_last_fragment(txbuf + HDR_LEN), false)) {
		print("ipv4: last fragment sent\n");
	}
	for (tries = 0; tries < 5 && seen != want; tries++) {
		unsigned flen = dhcp ? build_discover(txbuf + HDR_LEN) : build_arp(txbuf + HDR_LEN);
		uint32_t id, len;

		if (!send(&d, flen, false)) {
			print("net: transmit timed out\n");
			break;
		}
		print(dhcp ? "dhcp: discover sent\n" : "arp: request sent\n");
		while (seen != want && vq_wait(&rxq, &id, &len, 20000000)) {
			uint16_t nbufs = rxbuf[id][10] | rxbuf[id][11] << 8;

			if (id < NRX && len > HDR_LEN && nbufs == 1) {
				seen = classify(rxbuf[id] + HDR_LEN, len - HDR_LEN);
			}
			rx_post(&d, id % NRX);
		}
	}
	if (seen != want) {
		print(dhcp ? "dhcp: no offer\n" : "arp: no reply\n");
	}
	print(d.features & 1 ? "net: csum offload negotiated\n" : "net: no csum offload\n");
	if (!dhcp && seen == want && (d.features & 1)) {
		unsigned flen = build_udp_partial(txbuf, txbuf + HDR_LEN);

		for (tries = 0; tries < 3; tries++) {
			if (send(&d, flen, true)) {
				print("udp: sent with partial checksum\n");
			}
		}
	}
	print(lapic_irr(0x41) ? "net: rx msix delivered\n" : "net: rx msix NOT delivered\n");
	print("net: done\n");
	guest_poweroff();
}
