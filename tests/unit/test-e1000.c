/* Unit tests for hw/pci/e1000.c over fake guest RAM with recording host callbacks. */
#include "config.h"

#include <check.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "hw/pci/e1000.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "tests/unit/fake-machine.h"

static struct vm *vm0;
static struct guest_mem *mem;
static uint8_t *ram;
static struct e1000 *e;
static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static uint8_t sent[8][2048];
static size_t sent_len[8];
static unsigned n_sent, kicks, resumes;
static int irq;

static int host_send(void *opaque, const struct iovec *iov, unsigned cnt)
{
	(void)opaque;
	ck_assert_uint_eq(cnt, 1);
	if (n_sent < 8 && iov[0].iov_len <= 2048) {
		memcpy(sent[n_sent], iov[0].iov_base, iov[0].iov_len);
		sent_len[n_sent] = iov[0].iov_len;
	}
	n_sent++;
	return 0;
}

static void host_irq(void *opaque, int level)
{
	(void)opaque;
	irq = level;
}

static void host_kick(void *opaque)
{
	(void)opaque;
	kicks++;
}

static void host_resume(void *opaque)
{
	(void)opaque;
	resumes++;
}

static const struct e1000_host_ops ops = {
	.send = host_send, .set_irq = host_irq, .kick_tx = host_kick, .rx_resume = host_resume};

static void setup(void)
{
	vm0 = fake_vm_new(NULL, 1 << 20, NULL);
	mem = vm_guest_mem(vm0);
	ram = fake_vm_ram(vm0, 0);
	n_sent = kicks = resumes = 0;
	irq = 0;
	e = e1000_new(mem, mac, &ops, NULL);
	ck_assert_ptr_nonnull(e);
}

static void teardown(void)
{
	e1000_free(e);
	fake_vm_free(vm0);
}

static uint32_t rd(uint32_t off)
{
	return (uint32_t)e1000_mmio_read(e, off, 4);
}

static void wr(uint32_t off, uint32_t v)
{
	e1000_mmio_write(e, off, v, 4);
}

/* Microwire read of one word, as Linux's e1000 driver bit-bangs it. */
static uint16_t ee_read(unsigned addr)
{
	uint32_t bits = 0x6u << 6 | addr, eecd = 0x02; /* CS */
	uint16_t v = 0;

	wr(0x10, eecd);
	for (int i = 8; i >= 0; i--) {
		uint32_t di = (bits >> i) & 1 ? 0x04 : 0;

		wr(0x10, eecd | di);
		wr(0x10, eecd | di | 0x01);
		wr(0x10, eecd | di);
	}
	for (int i = 0; i < 16; i++) {
		wr(0x10, eecd | 0x01);
		v = (uint16_t)(v << 1 | !!(rd(0x10) & 0x08));
		wr(0x10, eecd);
	}
	wr(0x10, 0);
	return v;
}

START_TEST(eeprom_and_identity)
{
	uint16_t sum = 0, w;

	ck_assert_uint_eq(rd(0x10) & 0x100, 0x100); /* EEPROM present */
	for (unsigned i = 0; i < 64; i++) {
		w = ee_read(i);
		sum += w;
		if (i < 3) {
			ck_assert_uint_eq(w, mac[2 * i] | mac[2 * i + 1] << 8);
		}
	}
	ck_assert_uint_eq(sum, 0xbaba);
	/* EERD */
	wr(0x14, 1 | 2 << 8);
	ck_assert_uint_eq(rd(0x14) & 0x10, 0x10);
	ck_assert_uint_eq(rd(0x14) >> 16, 0x56 << 8 | 0x34);
	ck_assert_uint_eq(ee_read(0x0d), 0x100e);
	/* receive address 0 holds the MAC, valid */
	ck_assert_uint_eq(rd(0x5400), 0x12005452);
	ck_assert_uint_eq(rd(0x5404), 0x80005634);
	/* link up, full duplex, 1000 Mb/s */
	ck_assert_uint_eq(rd(0x08) & 0x83, 0x83);
	/* sub-word read */
	ck_assert_uint_eq(e1000_mmio_read(e, 0x5401, 1), 0x54);
	/* outside the register file */
	ck_assert_uint_eq(rd(0x1fffc), 0);
	ck_assert_uint_eq(e1000_mmio_read(e, 0x30000, 4), 0);
}
END_TEST

START_TEST(phy)
{
	wr(0x20, 2u << 26 | 1u << 21 | 1u << 16);
	ck_assert_uint_eq(rd(0x20) & (1u << 28), 1u << 28);
	ck_assert_uint_eq(rd(0x20) & 0x0004, 0x0004); /* link status */
	wr(0x20, 2u << 26 | 1u << 21 | 2u << 16);
	ck_assert_uint_eq(rd(0x20) & 0xffff, 0x0141);
	/* other PHY addresses error out */
	wr(0x20, 2u << 26 | 2u << 21 | 1u << 16);
	ck_assert_uint_eq(rd(0x20) & (1u << 30), 1u << 30);
	/* write advertisement and read back */
	wr(0x20, 1u << 26 | 1u << 21 | 4u << 16 | 0x01e1);
	wr(0x20, 2u << 26 | 1u << 21 | 4u << 16);
	ck_assert_uint_eq(rd(0x20) & 0xffff, 0x01e1);
	/* link down is visible in STATUS and the PHY, and raises LSC */
	wr(0xd0, 0x04);
	e1000_set_link(e, false);
	ck_assert_int_eq(irq, 1);
	ck_assert_uint_eq(rd(0x08) & 0x02, 0);
	ck_assert_uint_eq(rd(0xc0), 0x04);
	ck_assert_int_eq(irq, 0);
}
END_TEST

START_TEST(interrupts)
{
	wr(0xc8, 0x80); /* ICS without mask: cause set, no interrupt */
	ck_assert_int_eq(irq, 0);
	wr(0xd0, 0x80); /* IMS */
	ck_assert_int_eq(irq, 1);
	ck_assert_uint_eq(rd(0xd0), 0x80);
	wr(0xd8, 0x80); /* IMC */
	ck_assert_int_eq(irq, 0);
	wr(0xd0, 0x80);
	ck_assert_int_eq(irq, 1);
	ck_assert_uint_eq(rd(0xc0), 0x80); /* read clears */
	ck_assert_int_eq(irq, 0);
	ck_assert_uint_eq(rd(0xc0), 0);
	/* CTRL.RST resets the mask */
	wr(0x00, 1u << 26);
	ck_assert_uint_eq(rd(0xd0), 0);
	ck_assert_uint_eq(rd(0x00) & (1u << 26), 0);
}
END_TEST

static void tx_setup(uint32_t ndesc)
{
	wr(0x3800, 0x10000);
	wr(0x3804, 0);
	wr(0x3808, ndesc * 16);
	wr(0x3810, 0);
	wr(0x3818, 0);
	wr(0x400, 0x2); /* TCTL.EN */
	wr(0xd0, 0x01); /* TXDW */
}

static void txd_legacy(unsigned i, uint64_t addr, uint16_t len, uint8_t cmd)
{
	uint8_t *d = ram + 0x10000 + 16 * i;

	memset(d, 0, 16);
	*(uint64_t *)d = htole64(addr);
	*(uint16_t *)(d + 8) = htole16(len);
	d[11] = cmd;
}

START_TEST(tx_legacy)
{
	tx_setup(8);
	memset(ram + 0x20000, 0xaa, 100);
	memset(ram + 0x21000, 0xbb, 50);
	memset(ram + 0x22000, 0xcc, 60);
	txd_legacy(0, 0x20000, 100, 0x08);	 /* RS */
	txd_legacy(1, 0x21000, 50, 0x08 | 0x01); /* RS|EOP */
	txd_legacy(2, 0x22000, 60, 0x01);	 /* EOP, no RS */
	wr(0x3818, 3);
	ck_assert_uint_eq(kicks, 1);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 2);
	ck_assert_uint_eq(sent_len[0], 150);
	ck_assert_uint_eq(sent[0][99], 0xaa);
	ck_assert_uint_eq(sent[0][100], 0xbb);
	ck_assert_uint_eq(sent_len[1], 60);
	ck_assert_uint_eq(ram[0x10000 + 12] & 1, 1);
	ck_assert_uint_eq(ram[0x10000 + 16 + 12] & 1, 1);
	ck_assert_uint_eq(ram[0x10000 + 32 + 12] & 1, 0);
	ck_assert_uint_eq(rd(0x3810), 3);
	ck_assert_int_eq(irq, 1);
	ck_assert_uint_eq(rd(0xc0) & 0x03, 0x03);
	ck_assert_uint_eq(rd(0x4080), 2); /* GPTC, clear on read */
	ck_assert_uint_eq(rd(0x4080), 0);
	/* link set down: the frame is consumed (DD, the head moves) and dropped */
	e1000_set_link(e, false);
	txd_legacy(3, 0x22000, 60, 0x08 | 0x01);
	wr(0x3818, 4);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 2);
	ck_assert_uint_eq(ram[0x10000 + 48 + 12] & 1, 1);
	ck_assert_uint_eq(rd(0x3810), 4);
	e1000_set_link(e, true);
	txd_legacy(4, 0x22000, 60, 0x08 | 0x01);
	wr(0x3818, 5);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 3);
	/* TX disabled: nothing moves */
	wr(0x400, 0);
	txd_legacy(5, 0x22000, 60, 0x01);
	wr(0x3818, 6);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 3);
}
END_TEST

static uint16_t csum(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2) {
		sum += p[i] << 8 | p[i + 1];
	}
	if (len & 1) {
		sum += p[len - 1] << 8;
	}
	while (sum >> 16) {
		sum = (sum & 0xffff) + (sum >> 16);
	}
	return (uint16_t)sum;
}

START_TEST(tx_checksum_offload)
{
	uint8_t *pkt = ram + 0x20000, *d;
	const size_t len = 14 + 20 + 20 + 11;
	uint32_t pseudo;

	/* Ethernet + IPv4 + TCP + 11 bytes of payload */
	memset(pkt, 0, len);
	pkt[12] = 0x08;
	pkt[14] = 0x45;
	pkt[16] = 0;
	pkt[17] = 20 + 20 + 11;
	pkt[22] = 64;
	pkt[23] = 6;
	memcpy(pkt + 26, (uint8_t[]){10, 0, 2, 15, 10, 0, 2, 2}, 8);
	pkt[34] = 0x12;
	pkt[46] = 0x50;
	memcpy(pkt + 54, "hello world", 11);
	/* the driver seeds the TCP checksum with the pseudo-header sum */
	pseudo = csum(pkt + 26, 8, 6 + 20 + 11);
	pkt[50] = pseudo >> 8;
	pkt[51] = pseudo & 0xff;

	tx_setup(8);
	/* context: IP css 14, cso 24, cse 33; TCP css 34, cso 50, cse 0 */
	d = ram + 0x10000;
	memset(d, 0, 32);
	d[0] = 14;
	d[1] = 24;
	*(uint16_t *)(d + 2) = htole16(33);
	d[4] = 34;
	d[5] = 50;
	*(uint32_t *)(d + 8) = htole32(0x20u << 24 | 0x3u);
	/* data: DTYP 1, EOP|RS|DEXT, POPTS IXSM|TXSM */
	d += 16;
	*(uint64_t *)d = htole64(0x20000);
	*(uint32_t *)(d + 8) = htole32((0x20u | 0x08 | 0x01) << 24 | 1u << 20 | (uint32_t)len);
	d[13] = 0x03;
	wr(0x3818, 2);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 1);
	ck_assert_uint_eq(sent_len[0], len);
	/* a correct checksum sums to 0xffff over its range */
	ck_assert_uint_eq(csum(sent[0] + 14, 20, 0), 0xffff);
	ck_assert_uint_eq(csum(sent[0] + 34, len - 34, csum(sent[0] + 26, 8, 6 + 20 + 11)), 0xffff);
	/* guest memory is unchanged (the checksum goes into the copy) */
	ck_assert_uint_eq(pkt[24], 0);
}
END_TEST

/* TCP segmentation: 2500 bytes of payload with MSS 1000 become three frames. */
START_TEST(tx_tso)
{
	uint8_t *pkt = ram + 0x20000, *d;
	const unsigned hdr = 54, pay = 2500;
	uint32_t pseudo;

	memset(pkt, 0, hdr);
	pkt[12] = 0x08;
	pkt[14] = 0x45;
	pkt[18] = 0x12; /* IP id 0x1234 */
	pkt[19] = 0x34;
	pkt[22] = 64;
	pkt[23] = 6;
	memcpy(pkt + 26, (uint8_t[]){10, 0, 2, 15, 10, 0, 2, 2}, 8);
	pkt[38] = 0x00; /* seq 0x00fffff0: the segments carry into the high half */
	pkt[39] = 0xff;
	pkt[40] = 0xff;
	pkt[41] = 0xf0;
	pkt[46] = 0x50;
	pkt[47] = 0x19; /* FIN|PSH|ACK */
	for (unsigned i = 0; i < pay; i++) {
		pkt[hdr + i] = (uint8_t)(i * 7);
	}
	/* TSO seed: pseudo-header without the length */
	pseudo = csum(pkt + 26, 8, 6);
	pkt[50] = pseudo >> 8;
	pkt[51] = pseudo & 0xff;

	tx_setup(8);
	d = ram + 0x10000;
	memset(d, 0, 32);
	d[0] = 14;
	d[1] = 24;
	*(uint16_t *)(d + 2) = htole16(33);
	d[4] = 34;
	d[5] = 50;
	*(uint32_t *)(d + 8) = htole32((0x20u | 0x04 | 0x02 | 0x01) << 24 | pay);
	d[13] = hdr;
	*(uint16_t *)(d + 14) = htole16(1000);
	/* header and payload in two data descriptors */
	d += 16;
	*(uint64_t *)d = htole64(0x20000);
	*(uint32_t *)(d + 8) = htole32((0x20u | 0x04) << 24 | 1u << 20 | 100);
	d[13] = 0x03;
	d += 16;
	*(uint64_t *)d = htole64(0x20000 + 100);
	*(uint32_t *)(d + 8) =
		htole32((0x20u | 0x04 | 0x08 | 0x01) << 24 | 1u << 20 | (hdr + pay - 100));
	d[13] = 0x03;
	wr(0x3818, 3);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 3);
	for (unsigned s = 0; s < 3; s++) {
		uint8_t *f = sent[s];
		unsigned n = s < 2 ? 1000 : 500, len = hdr + n;
		uint32_t seq = 0x00fffff0u + 1000 * s;

		ck_assert_uint_eq(sent_len[s], len);
		ck_assert_uint_eq(f[16] << 8 | f[17], len - 14);
		ck_assert_uint_eq(f[18] << 8 | f[19], 0x1234 + s);
		ck_assert_uint_eq((uint32_t)f[38] << 24 | f[39] << 16 | f[40] << 8 | f[41], seq);
		ck_assert_uint_eq(f[47], s < 2 ? 0x10 : 0x19);
		ck_assert_uint_eq(f[hdr], (uint8_t)(1000 * s * 7));
		ck_assert_uint_eq(csum(f + 14, 20, 0), 0xffff);
		ck_assert_uint_eq(csum(f + 34, len - 34, csum(f + 26, 8, 6 + len - 34)), 0xffff);
	}
}
END_TEST

START_TEST(tx_hostile)
{
	/* bad buffer address drops that frame only */
	tx_setup(8);
	txd_legacy(0, 0xfffff000, 100, 0x01);
	txd_legacy(1, 0x20000, 100, 0x01);
	wr(0x3818, 2);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 1);
	ck_assert_uint_eq(rd(0x3810), 2);
	/* a frame of 17 x 4000 bytes exceeds 64 KiB: dropped */
	tx_setup(32);
	for (unsigned i = 0; i < 17; i++) {
		txd_legacy(i, 0x20000, 4000, i == 16 ? 0x01 : 0);
	}
	wr(0x3818, 17);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 1);
	/* ring outside RAM, TDT beyond the ring: no progress, no crash */
	wr(0x3800, 0xfff00000);
	wr(0x3818, 3);
	e1000_tx_process(e);
	tx_setup(8);
	wr(0x3818, 100);
	e1000_tx_process(e);
	ck_assert_uint_eq(n_sent, 1);
}
END_TEST

static void rx_setup(unsigned ndesc, uint32_t rctl)
{
	for (unsigned i = 0; i < ndesc; i++) {
		uint8_t *d = ram + 0x30000 + 16 * i;

		memset(d, 0, 16);
		*(uint64_t *)d = htole64(0x40000 + 0x1000 * i);
	}
	wr(0x2800, 0x30000);
	wr(0x2804, 0);
	wr(0x2808, ndesc * 16);
	wr(0x2810, 0);
	wr(0x2818, ndesc - 1);
	wr(0x100, rctl);
	wr(0xd0, 0x80);
}

static int rx(const uint8_t *da, size_t len, uint8_t fill)
{
	uint8_t f[4096];
	struct iovec iov = {f, len};

	memset(f, fill, len);
	memcpy(f, da, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x01", 6);
	return e1000_receive(e, &iov, 1);
}

START_TEST(rx_basic_and_filters)
{
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t other[6] = {0x52, 0x54, 0x00, 0, 0, 1};
	static const uint8_t mcast[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
	uint8_t *d0 = ram + 0x30000;

	/* disabled receiver drops */
	ck_assert_int_eq(rx(mac, 100, 1), 0);
	rx_setup(8, 0x2 | 1u << 26); /* EN, SECRC */
	ck_assert_int_eq(rx(mac, 100, 0x11), 0);
	ck_assert_uint_eq(le16toh(*(uint16_t *)(d0 + 8)), 100);
	ck_assert_uint_eq(d0[12], 0x07); /* DD|EOP|IXSM */
	ck_assert_uint_eq(ram[0x40000 + 99], 0x11);
	ck_assert_uint_eq(rd(0x2810), 1);
	ck_assert_int_eq(irq, 1);
	ck_assert_uint_eq(rd(0xc0) & 0x80, 0x80);
	/* short frames are padded to 60 bytes */
	ck_assert_int_eq(rx(mac, 20, 0x22), 0);
	ck_assert_uint_eq(le16toh(*(uint16_t *)(d0 + 16 + 8)), 60);
	/* filtered: other unicast, broadcast without BAM, multicast not in MTA */
	ck_assert_int_eq(rx(other, 100, 0), 0);
	ck_assert_int_eq(rx(bcast, 100, 0), 0);
	ck_assert_int_eq(rx(mcast, 100, 0), 0);
	ck_assert_uint_eq(rd(0x2810), 2);
	/* BAM, an MTA bit, promiscuous */
	wr(0x100, 0x2 | 1u << 26 | 1u << 15);
	ck_assert_int_eq(rx(bcast, 100, 0), 0);
	ck_assert_uint_eq(rd(0x2810), 3);
	{
		uint32_t hash = ((mcast[4] >> 4) | mcast[5] << 4) & 0xfff;

		wr(0x5200 + (hash >> 5) * 4, 1u << (hash & 31));
	}
	ck_assert_int_eq(rx(mcast, 100, 0), 0);
	ck_assert_uint_eq(rd(0x2810), 4);
	wr(0x100, 0x2 | 1u << 26 | 1u << 3);
	ck_assert_int_eq(rx(other, 100, 0), 0);
	ck_assert_uint_eq(rd(0x2810), 5);
	/* without SECRC the length includes the FCS */
	wr(0x100, 0x2);
	ck_assert_int_eq(rx(mac, 100, 0), 0);
	ck_assert_uint_eq(le16toh(*(uint16_t *)(d0 + 5 * 16 + 8)), 104);
}
END_TEST

START_TEST(rx_full_ring_and_split)
{
	/* 8 descriptors (RDLEN is a multiple of 128 bytes), RDT 3: three usable */
	rx_setup(8, 0x2 | 1u << 26 | 3u << 16); /* BSIZE 256 */
	wr(0x2818, 3);
	resumes = 0;
	ck_assert_int_eq(rx(mac, 600, 0x33), 0); /* 3 descriptors of 256, 256, 88 */
	ck_assert_uint_eq(rd(0x2810), 3);
	ck_assert_uint_eq(ram[0x30000 + 12] & 0x02, 0);
	ck_assert_uint_eq(ram[0x30000 + 32 + 12] & 0x02, 0x02);
	ck_assert_uint_eq(le16toh(*(uint16_t *)(ram + 0x30000 + 32 + 8)), 88);
	ck_assert_uint_eq(ram[0x42000 + 87], 0x33);
	/* ring empty: not ready (the backend reads nothing), then buffers resume */
	ck_assert(!e1000_can_receive(e));
	ck_assert_uint_eq(resumes, 0);
	wr(0x2818, 5);
	ck_assert_uint_eq(resumes, 1);
	ck_assert(e1000_can_receive(e));
	ck_assert_int_eq(rx(mac, 100, 0x44), 0);
	ck_assert_uint_eq(rd(0x2810), 4);
	/* RDT moving with nothing refused wakes nobody */
	wr(0x2818, 5);
	ck_assert_uint_eq(resumes, 1);
	/*
	 * A frame needing more descriptors than available is refused whole;
	 * each further descriptor resumes the backend until it fits.
	 */
	ck_assert(e1000_can_receive(e));
	ck_assert_int_eq(rx(mac, 600, 0), -EAGAIN);
	ck_assert_uint_eq(rd(0x2810), 4);
	wr(0x2818, 6);
	ck_assert_uint_eq(resumes, 2);
	ck_assert_int_eq(rx(mac, 600, 0), -EAGAIN);
	wr(0x2818, 7);
	ck_assert_uint_eq(resumes, 3);
	ck_assert_int_eq(rx(mac, 600, 0x55), 0);
	ck_assert_uint_eq(rd(0x2810), 7);
	/* refused with an empty ring as well (a backend without can_receive) */
	ck_assert_int_eq(rx(mac, 100, 0), -EAGAIN);
	wr(0x2818, 0);
	ck_assert_uint_eq(resumes, 4);
	/* the receiver off: frames are dropped, so a backend may read them */
	wr(0x100, 0);
	wr(0x2818, 7);
	ck_assert(e1000_can_receive(e));
	wr(0x100, 0x2 | 1u << 26 | 3u << 16);
	/* a bogus RDT beyond the ring is refused, not followed */
	wr(0x2818, 4000);
	ck_assert_int_eq(rx(mac, 100, 0), -EAGAIN);
}
END_TEST

START_TEST(io_window)
{
	e1000_io_write(e, 0, 0x5400, 4);
	ck_assert_uint_eq(e1000_io_read(e, 4, 4), 0x12005452);
	e1000_io_write(e, 0, 0xd0, 4);
	e1000_io_write(e, 4, 0x4, 4);
	ck_assert_uint_eq(rd(0xd0), 0x4);
}
END_TEST

/*
 * The device class over a fake VM with a libslirp backend: an ARP request
 * for the slirp gateway goes out through the TX ring (kick -> eventfd ->
 * I/O loop -> backend) and the reply lands in the RX ring.
 */
START_TEST(device_class_with_slirp)
{
	struct vm_nic_config nic = {.id = "net0", .driver = "e1000", .backend = "user"};
	struct vm_config cfg = {.name = "t", .nics = &nic, .n_nics = 1};
	struct event_base *base = event_base_new();
	struct vm *vm = fake_vm_new(&cfg, 1 << 20, base);
	struct iobus *b = vm_iobus(vm);
	void *pci = NULL, *state = NULL;
	unsigned slot, base_ranges;
	uint64_t bar0, v;
	uint8_t m[6], *f;

	ram = fake_vm_ram(vm, 0); /* this test's guest RAM is the VM's */
	ck_assert_int_eq(pci_host_class.realize(vm, NULL, &pci, NULL), 0);
	base_ranges = iobus_count(b);
	ck_assert_int_eq(e1000_class.realize(vm, &nic, &state, NULL), 0);
	for (slot = 0; slot < 32; slot++) {
		if (pci_host_config_read(pci_host_of(vm), 0, slot << 3, 0, 4) == 0x100e8086) {
			break;
		}
	}
	ck_assert_uint_lt(slot, 32);
	bar0 = pci_host_config_read(pci_host_of(vm), 0, slot << 3, 0x10, 4) & ~0xfu;
	ck_assert_uint_ne(bar0, 0);
	pci_host_config_write(pci_host_of(vm), 0, slot << 3, 4, 2, 0x7);
	/* the MAC defaults to 52:54:00 plus a stable hash */
	e1000_default_mac("t", "net0", m);
	iobus_read(b, IOBUS_MMIO, bar0 + 0x5400, 4, &v);
	ck_assert_uint_eq(v, (uint32_t)(m[0] | m[1] << 8 | m[2] << 16 | (uint32_t)m[3] << 24));

	/* RX ring: 8 x 2048 at 0x30000, buffers at 0x40000 + 0x1000 * i */
	for (unsigned i = 0; i < 8; i++) {
		*(uint64_t *)(ram + 0x30000 + 16 * i) = htole64(0x40000 + 0x1000 * i);
	}
	iobus_write(b, IOBUS_MMIO, bar0 + 0x2800, 4, 0x30000);
	iobus_write(b, IOBUS_MMIO, bar0 + 0x2808, 4, 128);
	iobus_write(b, IOBUS_MMIO, bar0 + 0x2818, 4, 7);
	iobus_write(b, IOBUS_MMIO, bar0 + 0x100, 4, 0x2 | 1u << 15 | 1u << 26);
	/* TX: one ARP request who-has 10.0.2.2 tell 10.0.2.15 */
	f = ram + 0x20000;
	memset(f, 0xff, 6);
	memcpy(f + 6, m, 6);
	memcpy(f + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
	memcpy(f + 22, m, 6);
	memcpy(f + 28, "\x0a\x00\x02\x0f", 4);
	memset(f + 32, 0, 6);
	memcpy(f + 38, "\x0a\x00\x02\x02", 4);
	memset(f + 42, 0, 18);
	memset(ram + 0x10000, 0, 16);
	*(uint64_t *)(ram + 0x10000) = htole64(0x20000);
	*(uint16_t *)(ram + 0x10008) = htole16(60);
	ram[0x1000b] = 0x09;
	iobus_write(b, IOBUS_MMIO, bar0 + 0x3800, 4, 0x10000);
	iobus_write(b, IOBUS_MMIO, bar0 + 0x3808, 4, 128);
	iobus_write(b, IOBUS_MMIO, bar0 + 0x400, 4, 0x2);
	iobus_write(b, IOBUS_MMIO, bar0 + 0x3818, 4, 1);
	for (unsigned i = 0; i < 100 && !(ram[0x30000 + 12] & 1); i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_uint_eq(ram[0x1000c] & 1, 1); /* TX descriptor done */
	ck_assert_uint_eq(ram[0x30000 + 12] & 3, 3);
	f = ram + 0x40000;
	ck_assert_int_eq(memcmp(f, m, 6), 0);			    /* to us */
	ck_assert_uint_eq(f[21], 2);				    /* ARP reply */
	ck_assert_int_eq(memcmp(f + 28, "\x0a\x00\x02\x02", 4), 0); /* from the gateway */

	e1000_class.reset(state);
	e1000_class.unrealize(state);
	ck_assert_uint_eq(iobus_count(b), base_ranges);
	pci_host_class.unrealize(pci);
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
	event_base_free(base);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("e1000");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, eeprom_and_identity);
	tcase_add_test(tc, phy);
	tcase_add_test(tc, interrupts);
	tcase_add_test(tc, tx_legacy);
	tcase_add_test(tc, tx_checksum_offload);
	tcase_add_test(tc, tx_tso);
	tcase_add_test(tc, tx_hostile);
	tcase_add_test(tc, rx_basic_and_filters);
	tcase_add_test(tc, rx_full_ring_and_split);
	tcase_add_test(tc, io_window);
	tcase_add_test(tc, device_class_with_slirp);
	suite_add_tcase(s, tc);
	return s;
}

#include "tests/unit/check-main.h"
