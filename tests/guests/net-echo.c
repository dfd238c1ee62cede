/*
 * Test guest for tap NICs across a live upgrade (tests/functional/
 * test-upgrade.py): drive the first virtio-net NIC (MAC, MRG_RXBUF,
 * STATUS; no offloads) and answer every frame of EtherType 0x88b5 (local
 * experimental) to its sender with EtherType 0x88b6, carrying the frame's
 * first 8 payload bytes (the host's sequence number), the number of frames
 * answered since boot and a nonce drawn from the TSC at boot and kept only
 * in RAM. A reboot shows as a second "echo: boot" line and a new nonce; a
 * count that restarts shows lost guest state.
 *
 * Lines: "echo: boot nonce N", "echo: ready", "echo: N answered" every 64.
 */
#include "lib.h"
#include "virtio-drv.h"

#define NRX 16
#define HDR_LEN 12 /* virtio_net_hdr_v1 without offloads */

static struct vq rxq, txq;
static uint8_t rxbuf[NRX][2048] __attribute__((aligned(64)));
static uint8_t txbuf[HDR_LEN + 64] __attribute__((aligned(64)));
static uint8_t mac[6];
static uint64_t nonce, answered;

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static void rx_post(struct vdev *d, unsigned i)
{
	rxq.desc[i].addr = (uint64_t)rxbuf[i];
	rxq.desc[i].len = sizeof(rxbuf[i]);
	rxq.desc[i].flags = VQ_F_WRITE;
	vq_kick(d, &rxq, i);
}

/* Answer frame @f (a 0x88b5 frame of at least 22 bytes). */
static void answer(struct vdev *d, const uint8_t *f)
{
	uint8_t *o = txbuf + HDR_LEN;
	uint32_t id, len;

	memset(txbuf, 0, sizeof(txbuf));
	memcpy(o, f + 6, 6); /* to the sender */
	memcpy(o + 6, mac, 6);
	o[12] = 0x88;
	o[13] = 0xb6;
	memcpy(o + 14, f + 14, 8); /* the host's sequence number */
	answered++;
	memcpy(o + 22, &answered, 8);
	memcpy(o + 30, &nonce, 8);
	txq.desc[0].addr = (uint64_t)txbuf;
	txq.desc[0].len = HDR_LEN + 60;
	txq.desc[0].flags = 0;
	vq_kick(d, &txq, 0);
	if (!vq_wait(&txq, &id, &len, 1000000000ul)) {
		print("echo: transmit timed out\n");
	}
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam;
	unsigned i;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	if (ecam) {
		pci_use_ecam(ecam);
	}
	if (!virtio_find(1, 0, &d)) {
		print("echo: no device\n");
		guest_poweroff();
	}
	/* MAC (5), MRG_RXBUF (15), STATUS (16) */
	if (!virtio_negotiate(&d, 1ull << 5 | 1ull << 15 | 1ull << 16)) {
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &rxq, 0, VQ_SIZE, 1) ||
	    !virtio_queue_setup(&d, &txq, 1, VQ_SIZE, 2)) {
		print("echo: queue setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	for (i = 0; i < 6; i++) {
		mac[i] = mr8(d.device + i);
	}
	for (i = 0; i < 8; i++) {
		nonce = (nonce << 7 | nonce >> 57) ^ rdtsc();
	}
	nonce |= 1;
	print("echo: boot nonce ");
	print_hex(nonce);
	print("\n");
	for (i = 0; i < NRX; i++) {
		rx_post(&d, i);
	}
	print("echo: ready\n");
	for (;;) {
		uint32_t id, len;

		if (!vq_wait(&rxq, &id, &len, 100000000ul)) {
			continue;
		}
		if (id >= NRX) {
			print("echo: bad used id\n");
			continue;
		}
		if (len >= HDR_LEN + 22) {
			const uint8_t *f = rxbuf[id] + HDR_LEN;

			if (f[12] == 0x88 && f[13] == 0xb5) {
				answer(&d, f);
				if (answered % 64 == 0) {
					print("echo: ");
					print_dec(answered);
					print(" answered\n");
				}
			}
		}
		rx_post(&d, id);
	}
}
