/*
 * Intel 82540EM model: register file, EEPROM, PHY, descriptor rings and
 * interrupts (see e1000.h; register layout after Intel's 8254x Software
 * Developer's Manual).
 *
 * Threads: see e1000.h (the device class at the end: realize, unrealize and
 * reset on the control thread). e->lock protects the register file and the
 * EEPROM/PHY state. The transmit frame buffer (tx_*) belongs to the thread
 * running e1000_tx_process() (the I/O thread) and is used without the lock.
 *
 * Guest input is bounded: ring sizes come from RDLEN/TDLEN (at most 64 K
 * descriptors), a transmit pass visits each descriptor at most once, a
 * transmitted frame is capped at E1000_MAX_FRAME, every buffer address goes
 * through guest_mem_ptr(), and register offsets are checked against the file.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <zlib.h>

#include "common/iov.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/pci/e1000.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "net/net.h"

/* Register offsets (bytes) */
enum {
	CTRL = 0x0000,
	STATUS = 0x0008,
	EECD = 0x0010,
	EERD = 0x0014,
	CTRL_EXT = 0x0018,
	MDIC = 0x0020,
	ICR = 0x00c0,
	ITR = 0x00c4,
	ICS = 0x00c8,
	IMS = 0x00d0,
	IMC = 0x00d8,
	RCTL = 0x0100,
	TCTL = 0x0400,
	PBA = 0x1000,
	RDBAL = 0x2800,
	RDBAH = 0x2804,
	RDLEN = 0x2808,
	RDH = 0x2810,
	RDT = 0x2818,
	TDBAL = 0x3800,
	TDBAH = 0x3804,
	TDLEN = 0x3808,
	TDH = 0x3810,
	TDT = 0x3818,
	STATS_FIRST = 0x4000,
	GPRC = 0x4074,
	GPTC = 0x4080,
	TPR = 0x40d0,
	TPT = 0x40d4,
	STATS_LAST = 0x40fc,
	MTA = 0x5200,
	RAL0 = 0x5400,
	RAH0 = 0x5404,
	VFTA = 0x5600,
	REG_FILE_END = 0x5800, /* registers beyond are read as 0 and ignore writes */
};

#define CTRL_SLU (1u << 6)
#define CTRL_RST (1u << 26)
#define CTRL_PHY_RST (1u << 31)
#define STATUS_FD 0x1u
#define STATUS_LU 0x2u
#define STATUS_SPEED_1000 0x80u
#define EECD_SK 0x1u
#define EECD_CS 0x2u
#define EECD_DI 0x4u
#define EECD_DO 0x8u
#define EECD_REQ 0x40u
#define EECD_GNT 0x80u
#define EECD_PRES 0x100u
#define EERD_START 0x1u
#define EERD_DONE 0x10u
#define MDIC_READY (1u << 28)
#define MDIC_ERROR (1u << 30)
#define MDIC_OP_WRITE (1u << 26)
#define MDIC_OP_READ (2u << 26)
#define ICR_TXDW 0x01u
#define ICR_TXQE 0x02u
#define ICR_LSC 0x04u
#define ICR_RXDMT0 0x10u
#define ICR_RXO 0x40u
#define ICR_RXT0 0x80u
#define ICR_MDAC 0x200u
#define RCTL_EN (1u << 1)
#define RCTL_UPE (1u << 3)
#define RCTL_MPE (1u << 4)
#define RCTL_BAM (1u << 15)
#define RCTL_BSEX (1u << 25)
#define RCTL_SECRC (1u << 26)
#define TCTL_EN (1u << 1)
#define RAH_AV (1u << 31)

/* Transmit descriptor bits */
#define TXD_CMD_EOP 0x01u
#define TXD_CMD_IC 0x04u
#define TXD_CMD_RS 0x08u
#define TXD_CMD_DEXT 0x20u
#define TXD_STA_DD 0x01u
#define TXD_POPTS_IXSM 0x01u
#define TXD_POPTS_TXSM 0x02u
/* Receive descriptor status */
#define RXD_STA_DD 0x01u
#define RXD_STA_EOP 0x02u
#define RXD_STA_IXSM 0x04u

#define TX_BUF_SIZE (E1000_MAX_FRAME + 1024) /* a TSO frame: 64 KiB payload plus headers */
#define TUCMD_TCP 0x01u
#define TUCMD_IP 0x02u
#define TUCMD_TSE 0x04u
#define TXD_DCMD_TSE 0x04u
#define EEPROM_WORDS 64
#define EEPROM_READ_OPCODE 0x6 /* start bit + 10 */
#define MAX_RING (1u << 16)
#define MIN_FRAME 60

struct e1000 {
	pthread_mutex_t lock;
	struct guest_mem *mem;
	const struct e1000_host_ops *ops;
	void *opaque;
	uint8_t mac[6];
	uint32_t regs[REG_FILE_END / 4];
	uint16_t eeprom[EEPROM_WORDS];
	uint16_t phy[32];
	bool link_up;
	int irq_level;
	uint32_t ioaddr; /* I/O BAR window */
	/* Microwire bit-bang state */
	uint32_t ee_old, ee_in, ee_bits_in, ee_bit_out;
	bool ee_reading;
	/* Transmit: context and the frame being assembled (I/O thread only). */
	uint8_t ipcss, ipcso, tucss, tucso;
	uint16_t ipcse, tucse;
	uint8_t tucmd, hdr_len;
	uint16_t mss;
	bool tx_tse;
	uint8_t *tx_buf;
	uint8_t *seg_buf; /* one TSO segment being built */
	uint32_t tx_len;
	bool tx_oversize;
	uint8_t tx_popts;
	bool tx_legacy_csum;
	uint8_t tx_cso, tx_css;
	uint8_t *rx_buf; /* the frame being received (I/O thread only) */
	bool rx_waiting; /* a frame was refused: RDT moving resumes the backend */
};

static uint32_t reg(struct e1000 *e, uint32_t off)
{
	return e->regs[off / 4];
}

static void set_reg(struct e1000 *e, uint32_t off, uint32_t v)
{
	e->regs[off / 4] = v;
}

static void e1000_update_irq(struct e1000 *e)
{
	int level = (reg(e, ICR) & reg(e, IMS)) != 0;

	if (level != e->irq_level) {
		e->irq_level = level;
		e->ops->set_irq(e->opaque, level);
	}
}

static void e1000_set_ics(struct e1000 *e, uint32_t bits)
{
	set_reg(e, ICR, reg(e, ICR) | bits);
	e1000_update_irq(e);
}

static void e1000_phy_reset(struct e1000 *e)
{
	memset(e->phy, 0, sizeof(e->phy));
	e->phy[0] = 0x1140;			  /* autoneg enabled, full duplex, 1000 */
	e->phy[1] = e->link_up ? 0x796d : 0x7949; /* link status, autoneg complete */
	e->phy[2] = 0x0141;			  /* Marvell OUI */
	e->phy[3] = 0x0c20;			  /* 88E1011 */
	e->phy[4] = 0x0de1;
	e->phy[5] = 0x45e1;
	e->phy[6] = 0x0001;
	e->phy[9] = 0x0e00;
	e->phy[10] = 0x3c00;
	e->phy[15] = 0x3000;
	e->phy[16] = 0x0360;
	e->phy[17] = e->link_up ? 0xac00 : 0x0000;
	e->phy[20] = 0x0d60;
}

static void e1000_eeprom_init(struct e1000 *e)
{
	uint16_t sum = 0;

	for (unsigned i = 0; i < EEPROM_WORDS; i++) {
		e->eeprom[i] = 0xffff;
	}
	for (unsigned i = 0; i < 3; i++) {
		e->eeprom[i] = (uint16_t)(e->mac[2 * i] | e->mac[2 * i + 1] << 8);
	}
	for (unsigned i = 3; i < 10; i++) {
		e->eeprom[i] = 0;
	}
	e->eeprom[0x0a] = 0x6403; /* init control 1: valid signature */
	e->eeprom[0x0b] = E1000_DEVICE_ID;
	e->eeprom[0x0c] = E1000_VENDOR_ID;
	e->eeprom[0x0d] = E1000_DEVICE_ID;
	e->eeprom[0x0e] = E1000_VENDOR_ID;
	e->eeprom[0x0f] = 0x3040; /* init control 2 */
	for (unsigned i = 0; i < EEPROM_WORDS - 1; i++) {
		sum += e->eeprom[i];
	}
	e->eeprom[EEPROM_WORDS - 1] = (uint16_t)(0xbaba - sum);
}

static void e1000_reset_locked(struct e1000 *e)
{
	memset(e->regs, 0, sizeof(e->regs));
	set_reg(e, CTRL, CTRL_SLU | 0x0200 /* speed 1000 */);
	set_reg(e, STATUS, STATUS_FD | STATUS_SPEED_1000 | (e->link_up ? STATUS_LU : 0));
	set_reg(e, EECD, EECD_PRES | EECD_GNT);
	set_reg(e, PBA, 0x00100030);
	set_reg(e, MDIC, MDIC_READY);
	set_reg(e, RAL0,
		(uint32_t)e->mac[0] | e->mac[1] << 8 | e->mac[2] << 16 | (uint32_t)e->mac[3] << 24);
	set_reg(e, RAH0, (uint32_t)e->mac[4] | e->mac[5] << 8 | RAH_AV);
	e->ee_old = e->ee_in = e->ee_bits_in = e->ee_bit_out = 0;
	e->ee_reading = false;
	e1000_phy_reset(e);
	e->ioaddr = 0;
	e1000_update_irq(e);
}

struct e1000 *e1000_new(struct guest_mem *mem, const uint8_t mac[6],
			const struct e1000_host_ops *ops, void *opaque)
{
	struct e1000 *e = calloc(1, sizeof(*e));

	if (!e) {
		return NULL;
	}
	e->tx_buf = malloc(TX_BUF_SIZE);
	e->seg_buf = malloc(TX_BUF_SIZE);
	e->rx_buf = malloc(E1000_MAX_FRAME + 4);
	if (!e->tx_buf || !e->rx_buf || !e->seg_buf) {
		free(e->tx_buf);
		free(e->seg_buf);
		free(e->rx_buf);
		free(e);
		return NULL;
	}
	pthread_mutex_init(&e->lock, NULL);
	e->mem = mem;
	e->ops = ops;
	e->opaque = opaque;
	memcpy(e->mac, mac, 6);
	e->link_up = true;
	e1000_eeprom_init(e);
	e1000_reset_locked(e);
	return e;
}

void e1000_free(struct e1000 *e)
{
	if (!e) {
		return;
	}
	pthread_mutex_destroy(&e->lock);
	free(e->tx_buf);
	free(e->seg_buf);
	free(e->rx_buf);
	free(e);
}

void e1000_reset(struct e1000 *e)
{
	pthread_mutex_lock(&e->lock);
	e1000_reset_locked(e);
	pthread_mutex_unlock(&e->lock);
}

void e1000_save(struct e1000 *e, struct vmstate_buf *out)
{
	pthread_mutex_lock(&e->lock);
	vmstate_put_u32(out, ARRAY_SIZE(e->regs));
	for (size_t i = 0; i < ARRAY_SIZE(e->regs); i++) {
		vmstate_put_u32(out, e->regs[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(e->eeprom); i++) {
		vmstate_put_u16(out, e->eeprom[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(e->phy); i++) {
		vmstate_put_u16(out, e->phy[i]);
	}
	vmstate_put_bool(out, e->link_up);
	vmstate_put_u8(out, (uint8_t)e->irq_level);
	vmstate_put_u32(out, e->ioaddr);
	vmstate_put_u32(out, e->ee_old);
	vmstate_put_u32(out, e->ee_in);
	vmstate_put_u32(out, e->ee_bits_in);
	vmstate_put_u32(out, e->ee_bit_out);
	vmstate_put_bool(out, e->ee_reading);
	vmstate_put_u8(out, e->ipcss);
	vmstate_put_u8(out, e->ipcso);
	vmstate_put_u8(out, e->tucss);
	vmstate_put_u8(out, e->tucso);
	vmstate_put_u16(out, e->ipcse);
	vmstate_put_u16(out, e->tucse);
	vmstate_put_u8(out, e->tucmd);
	vmstate_put_u8(out, e->hdr_len);
	vmstate_put_u16(out, e->mss);
	vmstate_put_bool(out, e->tx_tse);
	vmstate_put_bool(out, e->tx_oversize);
	vmstate_put_u8(out, e->tx_popts);
	vmstate_put_bool(out, e->tx_legacy_csum);
	vmstate_put_u8(out, e->tx_cso);
	vmstate_put_u8(out, e->tx_css);
	vmstate_put_blob(out, e->tx_buf, e->tx_len);
	pthread_mutex_unlock(&e->lock);
}

int e1000_load(struct e1000 *e, struct vmstate_buf *in, struct error **errp)
{
	uint32_t n = vmstate_get_u32(in);
	uint32_t regs[ARRAY_SIZE(e->regs)];
	uint16_t eeprom[ARRAY_SIZE(e->eeprom)], phy[ARRAY_SIZE(e->phy)];
	uint32_t w[6];
	uint8_t b[10];
	uint16_t h[3];
	bool f[5];
	uint32_t tx_len = 0;
	void *tx = NULL;
	int r;

	if (n != ARRAY_SIZE(e->regs)) {
		return error_set(errp, EINVAL, "e1000: %u registers saved, %zu here", n,
				 ARRAY_SIZE(e->regs));
	}
	for (size_t i = 0; i < ARRAY_SIZE(regs); i++) {
		regs[i] = vmstate_get_u32(in);
	}
	for (size_t i = 0; i < ARRAY_SIZE(eeprom); i++) {
		eeprom[i] = vmstate_get_u16(in);
	}
	for (size_t i = 0; i < ARRAY_SIZE(phy); i++) {
		phy[i] = vmstate_get_u16(in);
	}
	f[0] = vmstate_get_bool(in);
	b[0] = vmstate_get_u8(in); /* irq level */
	for (unsigned i = 0; i < 5; i++) {
		w[i] = vmstate_get_u32(in); /* ioaddr, ee_old, ee_in, ee_bits_in, ee_bit_out */
	}
	f[1] = vmstate_get_bool(in); /* ee_reading */
	for (unsigned i = 1; i < 5; i++) {
		b[i] = vmstate_get_u8(in); /* ipcss, ipcso, tucss, tucso */
	}
	h[0] = vmstate_get_u16(in);
	h[1] = vmstate_get_u16(in);
	b[5] = vmstate_get_u8(in); /* tucmd */
	b[6] = vmstate_get_u8(in); /* hdr_len */
	h[2] = vmstate_get_u16(in);
	f[2] = vmstate_get_bool(in); /* tx_tse */
	f[3] = vmstate_get_bool(in); /* tx_oversize */
	b[7] = vmstate_get_u8(in);   /* tx_popts */
	f[4] = vmstate_get_bool(in); /* tx_legacy_csum */
	b[8] = vmstate_get_u8(in);   /* tx_cso */
	b[9] = vmstate_get_u8(in);   /* tx_css */
	tx = vmstate_get_blob_alloc(in, TX_BUF_SIZE, &tx_len);
	if (b[0] > 1) {
		in->failed = true;
	}
	r = vmstate_check_end(in, "the e1000", errp);
	if (r < 0) {
		free(tx);
		return r;
	}
	pthread_mutex_lock(&e->lock);
	memcpy(e->regs, regs, sizeof(regs));
	memcpy(e->eeprom, eeprom, sizeof(eeprom));
	memcpy(e->phy, phy, sizeof(phy));
	e->link_up = f[0];
	e->irq_level = b[0];
	e->ioaddr = w[0];
	e->ee_old = w[1];
	e->ee_in = w[2];
	e->ee_bits_in = w[3];
	e->ee_bit_out = w[4];
	e->ee_reading = f[1];
	e->ipcss = b[1];
	e->ipcso = b[2];
	e->tucss = b[3];
	e->tucso = b[4];
	e->ipcse = h[0];
	e->tucse = h[1];
	e->tucmd = b[5];
	e->hdr_len = b[6];
	e->mss = h[2];
	e->tx_tse = f[2];
	e->tx_oversize = f[3];
	e->tx_popts = b[7];
	e->tx_legacy_csum = f[4];
	e->tx_cso = b[8];
	e->tx_css = b[9];
	memcpy(e->tx_buf, tx, tx_len);
	e->tx_len = tx_len;
	pthread_mutex_unlock(&e->lock);
	free(tx);
	return 0;
}

bool e1000_link_up(struct e1000 *e)
{
	bool up;

	pthread_mutex_lock(&e->lock);
	up = e->link_up;
	pthread_mutex_unlock(&e->lock);
	return up;
}

void e1000_set_link(struct e1000 *e, bool up)
{
	pthread_mutex_lock(&e->lock);
	e->link_up = up;
	if (up) {
		set_reg(e, STATUS, reg(e, STATUS) | STATUS_LU);
		e->phy[1] |= 0x0024;
		e->phy[17] = 0xac00;
	} else {
		set_reg(e, STATUS, reg(e, STATUS) & ~STATUS_LU);
		e->phy[1] &= ~0x0024;
		e->phy[17] = 0;
	}
	e1000_set_ics(e, ICR_LSC);
	pthread_mutex_unlock(&e->lock);
}

/* EEPROM: Microwire, bit-banged through EECD. */

static void e1000_eecd_write(struct e1000 *e, uint32_t val)
{
	uint32_t old = e->ee_old;

	e->ee_old = val & (EECD_SK | EECD_CS | EECD_DI);
	set_reg(e, EECD, (reg(e, EECD) & ~EECD_REQ) | (val & EECD_REQ));
	if (!(val & EECD_CS)) {
		return;
	}
	if (!(old & EECD_CS)) { /* chip select rising: new command */
		e->ee_in = 0;
		e->ee_bits_in = 0;
		e->ee_bit_out = 0;
		e->ee_reading = false;
	}
	if (!((val ^ old) & EECD_SK)) {
		return;
	}
	if (!(val & EECD_SK)) { /* falling clock: next output bit */
		if (e->ee_reading) {
			e->ee_bit_out++;
		}
		return;
	}
	/* rising clock: shift one input bit (start bit, 2 opcode bits, 6 address bits) */
	if (e->ee_reading) {
		return;
	}
	e->ee_in = (e->ee_in << 1) | !!(val & EECD_DI);
	if (++e->ee_bits_in == 9) {
		e->ee_reading = ((e->ee_in >> 6) & 7) == EEPROM_READ_OPCODE;
		/* the bit after the address is a dummy 0, then 16 data bits, MSB first */
		e->ee_bit_out = (e->ee_in & 0x3f) * 16;
		e->ee_bit_out--;
	}
}

static uint32_t e1000_eecd_read(struct e1000 *e)
{
	uint32_t v = (reg(e, EECD) & EECD_REQ) | EECD_PRES | EECD_GNT | e->ee_old;
	uint32_t word, bit;

	if (!e->ee_reading || e->ee_bit_out == UINT32_MAX) {
		return v; /* the dummy bit reads 0 */
	}
	word = e->ee_bit_out / 16;
	bit = 15 - e->ee_bit_out % 16;
	if (word < EEPROM_WORDS && (e->eeprom[word] >> bit) & 1) {
		v |= EECD_DO;
	}
	return v;
}

static void e1000_mdic_write(struct e1000 *e, uint32_t val)
{
	unsigned phy_addr = (val >> 21) & 0x1f, r = (val >> 16) & 0x1f;
	uint32_t op = val & (3u << 26);

	if (phy_addr != 1) {
		set_reg(e, MDIC, val | MDIC_READY | MDIC_ERROR);
	} else if (op == MDIC_OP_READ) {
		set_reg(e, MDIC, (val & ~0xffffu) | e->phy[r] | MDIC_READY);
	} else if (op == MDIC_OP_WRITE) {
		if (r == 0) {
			uint16_t v = (uint16_t)val;

			/* reset and restart-autonegotiation complete at once */
			e->phy[0] = v & ~(0x8000 | 0x0200);
			if (v & 0x8000) {
				e1000_phy_reset(e);
			}
		} else if (r != 1 && r != 2 && r != 3 && r != 17) {
			e->phy[r] = (uint16_t)val;
		}
		set_reg(e, MDIC, val | MDIC_READY);
	} else {
		set_reg(e, MDIC, val | MDIC_READY | MDIC_ERROR);
	}
	if (val & (1u << 29)) {
		e1000_set_ics(e, ICR_MDAC);
	}
}

static uint32_t e1000_read_reg(struct e1000 *e, uint32_t off)
{
	uint32_t v;

	if (off >= REG_FILE_END) {
		return 0;
	}
	switch (off) {
	case EECD:
		return e1000_eecd_read(e);
	case ICR:
		v = reg(e, ICR);
		set_reg(e, ICR, 0);
		e1000_update_irq(e);
		return v;
	case IMC:
	case ICS:
		return 0;
	case CTRL:
		return reg(e, CTRL) & ~(CTRL_RST | CTRL_PHY_RST);
	default:
		break;
	}
	v = reg(e, off);
	if (off >= STATS_FIRST && off <= STATS_LAST) {
		set_reg(e, off, 0); /* statistics clear on read */
	}
	return v;
}

static void e1000_write_reg(struct e1000 *e, uint32_t off, uint32_t val)
{
	if (off >= REG_FILE_END) {
		return;
	}
	switch (off) {
	case CTRL:
		if (val & CTRL_RST) {
			e1000_reset_locked(e);
			return;
		}
		set_reg(e, CTRL, val & ~(CTRL_RST | CTRL_PHY_RST));
		return;
	case STATUS:
		return;
	case ICR: /* writing 1s clears those causes */
		set_reg(e, ICR, reg(e, ICR) & ~val);
		e1000_update_irq(e);
		return;
	case EECD:
		e1000_eecd_write(e, val);
		return;
	case EERD:
		if (val & EERD_START) {
			unsigned a = (val >> 8) & 0xff;
			uint32_t data = a < EEPROM_WORDS ? e->eeprom[a] : 0;

			set_reg(e, EERD, (val & 0xff00) | EERD_DONE | data << 16);
		}
		return;
	case MDIC:
		e1000_mdic_write(e, val);
		return;
	case ICS:
		e1000_set_ics(e, val);
		return;
	case IMS:
		set_reg(e, IMS, reg(e, IMS) | val);
		e1000_update_irq(e);
		return;
	case IMC:
		set_reg(e, IMS, reg(e, IMS) & ~val);
		e1000_update_irq(e);
		return;
	case RDLEN:
	case TDLEN:
		set_reg(e, off, val & 0xfff80);
		return;
	case RDH:
	case RDT:
	case TDH:
		set_reg(e, off, val & 0xffff);
		return;
	case RDBAL:
	case TDBAL:
		set_reg(e, off, val & ~0xfu);
		return;
	case RCTL: {
		bool was = reg(e, RCTL) & RCTL_EN;

		set_reg(e, RCTL, val);
		if (!was && (val & RCTL_EN)) {
			e->rx_waiting = false;
			e->ops->rx_resume(e->opaque);
		}
		return;
	}
	default:
		break;
	}
	if (off >= STATS_FIRST && off <= STATS_LAST) {
		return;
	}
	set_reg(e, off, val);
}

/* The ring length in descriptors (RDLEN/TDLEN are multiples of 128 bytes). */
static uint32_t ring_size(struct e1000 *e, uint32_t len_reg)
{
	return MIN(reg(e, len_reg) / 16, MAX_RING);
}

uint64_t e1000_mmio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct e1000 *e = opaque;
	uint32_t v;

	if (offset >= E1000_MMIO_SIZE) {
		return 0;
	}
	pthread_mutex_lock(&e->lock);
	v = e1000_read_reg(e, (uint32_t)offset & ~3u);
	pthread_mutex_unlock(&e->lock);
	v >>= 8 * (offset & 3);
	return size >= 4 ? v : v & ((1u << (8 * size)) - 1);
}

void e1000_mmio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct e1000 *e = opaque;
	bool kick = false, resume = false;
	uint32_t off = (uint32_t)offset & ~3u;

	if (offset >= E1000_MMIO_SIZE || size != 4 || (offset & 3)) {
		return; /* the register file is 32-bit only */
	}
	pthread_mutex_lock(&e->lock);
	if (off == TDT) {
		set_reg(e, TDT, (uint32_t)value & 0xffff);
		kick = reg(e, TCTL) & TCTL_EN;
	} else if (off == RDT) {
		set_reg(e, RDT, (uint32_t)value & 0xffff);
		resume = e->rx_waiting && reg(e, RDH) != reg(e, RDT);
		e->rx_waiting = e->rx_waiting && !resume;
	} else if (off == TCTL) {
		set_reg(e, TCTL, (uint32_t)value);
		kick = (value & TCTL_EN) && reg(e, TDH) != reg(e, TDT);
	} else {
		e1000_write_reg(e, off, (uint32_t)value);
	}
	pthread_mutex_unlock(&e->lock);
	if (kick) {
		e->ops->kick_tx(e->opaque);
	}
	if (resume) {
		e->ops->rx_resume(e->opaque);
	}
}

uint64_t e1000_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct e1000 *e = opaque;
	uint32_t addr;

	(void)size;
	if (offset == 0) {
		pthread_mutex_lock(&e->lock);
		addr = e->ioaddr;
		pthread_mutex_unlock(&e->lock);
		return addr;
	}
	if (offset == 4) {
		pthread_mutex_lock(&e->lock);
		addr = e->ioaddr;
		pthread_mutex_unlock(&e->lock);
		return e1000_mmio_read(e, addr & (E1000_MMIO_SIZE - 4), 4);
	}
	return 0;
}

void e1000_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct e1000 *e = opaque;
	uint32_t addr;

	if (size != 4) {
		return;
	}
	if (offset == 0) {
		pthread_mutex_lock(&e->lock);
		e->ioaddr = (uint32_t)value;
		pthread_mutex_unlock(&e->lock);
	} else if (offset == 4) {
		pthread_mutex_lock(&e->lock);
		addr = e->ioaddr;
		pthread_mutex_unlock(&e->lock);
		e1000_mmio_write(e, addr & (E1000_MMIO_SIZE - 4), value, 4);
	}
}

/* Transmit */

/*
 * Store the ones' complement checksum of frame[start..end] (inclusive; 0 or
 * past the frame: to its end) at @at, starting from @seed.
 */
static void put_csum_seed(uint8_t *frame, uint32_t len, uint32_t at, uint32_t start, uint32_t end,
			  uint32_t seed)
{
	uint32_t sum = seed;
	uint16_t c;

	if (end == 0 || end >= len) {
		end = len - 1;
	}
	if (start > end || at + 2 > len) {
		return;
	}
	for (uint32_t i = start; i <= end; i += 2) {
		sum += (uint32_t)frame[i] << 8 | (i + 1 <= end ? frame[i + 1] : 0);
	}
	while (sum >> 16) {
		sum = (sum & 0xffff) + (sum >> 16);
	}
	c = (uint16_t)~sum;
	frame[at] = c >> 8;
	frame[at + 1] = (uint8_t)c;
}

static void put_csum(uint8_t *frame, uint32_t len, uint32_t at, uint32_t start, uint32_t end)
{
	put_csum_seed(frame, len, at, start, end, 0);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void e1000_count_tx(struct e1000 *e)
{
	pthread_mutex_lock(&e->lock);
	set_reg(e, GPTC, reg(e, GPTC) + 1);
	set_reg(e, TPT, reg(e, TPT) + 1);
	pthread_mutex_unlock(&e->lock);
}

/*
 * TCP segmentation (TSE): split the payload after the hdr_len header bytes
 * into MSS-sized segments, each with a copy of the header whose IP length,
 * IPv4 id, TCP sequence number and flags are fixed up and whose checksums
 * are inserted (the driver seeds the TCP checksum with the pseudo-header sum
 * without the length). Bad context values drop the frame.
 */
static void e1000_tx_segment(struct e1000 *e)
{
	uint32_t hdr = e->hdr_len, mss = e->mss, total = e->tx_len, off, seq;
	uint16_t ip_id;
	bool ipv4 = e->tucmd & TUCMD_IP;

	if (!(e->tucmd & TUCMD_TCP) || hdr > total || mss == 0 || e->tucss + 20u > hdr ||
	    e->ipcss + (ipv4 ? 20u : 40u) > hdr || e->tucso + 2u > hdr ||
	    (ipv4 && e->ipcso + 2u > hdr)) {
		return;
	}
	ip_id = get_be16(e->tx_buf + e->ipcss + 4);
	seq = (uint32_t)get_be16(e->tx_buf + e->tucss + 4) << 16 |
	      get_be16(e->tx_buf + e->tucss + 6);
	for (off = hdr; off < total || off == hdr;) {
		uint32_t n = MIN(mss, total - off), len = hdr + n, s = seq + (off - hdr);
		bool last = off + n >= total;
		uint8_t *f = e->seg_buf;
		struct iovec iov = {f, len};

		memcpy(f, e->tx_buf, hdr);
		memcpy(f + hdr, e->tx_buf + off, n);
		if (ipv4) {
			put_be16(f + e->ipcss + 2, (uint16_t)(len - e->ipcss));
			put_be16(f + e->ipcss + 4, ip_id++);
			f[e->ipcso] = f[e->ipcso + 1] = 0;
			put_csum(f, len, e->ipcso, e->ipcss, e->ipcse ? e->ipcse : hdr - 1);
		} else {
			put_be16(f + e->ipcss + 4, (uint16_t)(len - e->ipcss - 40));
		}
		put_be16(f + e->tucss + 4, (uint16_t)(s >> 16));
		put_be16(f + e->tucss + 6, (uint16_t)s);
		if (!last) {
			f[e->tucss + 13] &= ~0x09; /* FIN and PSH only on the last segment */
		}
		put_csum_seed(f, len, e->tucso, e->tucss, 0, len - e->tucss);
		e->ops->send(e->opaque, &iov, 1);
		e1000_count_tx(e);
		off += n;
		if (n == 0) {
			break;
		}
	}
}

/* Send the assembled frame (lock not held); a link set down drops it, as QEMU's. */
static void e1000_tx_frame(struct e1000 *e)
{
	struct iovec iov;

	if (e->tx_oversize || e->tx_len == 0 || !e1000_link_up(e)) {
		goto reset;
	}
	if (e->tx_tse) {
		e1000_tx_segment(e);
		goto reset;
	}
	if (e->tx_legacy_csum) {
		put_csum(e->tx_buf, e->tx_len, e->tx_cso, e->tx_css, 0);
	} else {
		if (e->tx_popts & TXD_POPTS_IXSM) {
			put_csum(e->tx_buf, e->tx_len, e->ipcso, e->ipcss, e->ipcse);
		}
		if (e->tx_popts & TXD_POPTS_TXSM) {
			put_csum(e->tx_buf, e->tx_len, e->tucso, e->tucss, e->tucse);
		}
	}
	iov.iov_base = e->tx_buf;
	iov.iov_len = e->tx_len;
	e->ops->send(e->opaque, &iov, 1);
	e1000_count_tx(e);
reset:
	e->tx_len = 0;
	e->tx_oversize = false;
	e->tx_popts = 0;
	e->tx_legacy_csum = false;
	e->tx_tse = false;
}

static void e1000_tx_append(struct e1000 *e, uint64_t addr, uint32_t len)
{
	const uint8_t *p;

	if (len == 0 || e->tx_oversize) {
		return;
	}
	if (len > TX_BUF_SIZE - e->tx_len || (!e->tx_tse && len > E1000_MAX_FRAME - e->tx_len)) {
		e->tx_oversize = true;
		return;
	}
	p = guest_mem_ptr(e->mem, addr, len);
	if (!p) {
		e->tx_oversize = true; /* a bad buffer drops the whole frame */
		return;
	}
	memcpy(e->tx_buf + e->tx_len, p, len);
	e->tx_len += len;
}

void e1000_tx_process(struct e1000 *e)
{
	uint32_t done = 0, cause = 0;

	pthread_mutex_lock(&e->lock);
	while (reg(e, TCTL) & TCTL_EN) {
		uint32_t n = ring_size(e, TDLEN), head = reg(e, TDH), eop;
		uint64_t base = (uint64_t)reg(e, TDBAH) << 32 | reg(e, TDBAL);
		uint8_t *d;
		uint8_t cmd;

		if (n == 0 || head >= n || head == reg(e, TDT) || done >= n) {
			break;
		}
		d = guest_mem_ptr(e->mem, base + (uint64_t)head * 16, 16);
		if (!d) {
			break;
		}
		done++;
		cmd = d[11];
		eop = 0;
		if (!(cmd & TXD_CMD_DEXT)) {
			/* legacy: addr, length, cso, cmd, status, css, special */
			uint64_t addr = le64toh(*(uint64_t *)d);
			uint32_t len = le16toh(*(uint16_t *)(d + 8));

			e1000_tx_append(e, addr, len);
			if (cmd & TXD_CMD_IC) {
				e->tx_legacy_csum = true;
				e->tx_cso = d[10];
				e->tx_css = d[13];
			}
			eop = cmd & TXD_CMD_EOP;
		} else if (((le32toh(*(uint32_t *)(d + 8)) >> 20) & 0xf) == 0) {
			/* context descriptor */
			e->ipcss = d[0];
			e->ipcso = d[1];
			e->ipcse = le16toh(*(uint16_t *)(d + 2));
			e->tucss = d[4];
			e->tucso = d[5];
			e->tucse = le16toh(*(uint16_t *)(d + 6));
			e->tucmd = d[11];
			e->hdr_len = d[13];
			e->mss = le16toh(*(uint16_t *)(d + 14));
		} else {
			/* data descriptor */
			uint64_t addr = le64toh(*(uint64_t *)d);
			uint32_t len = le32toh(*(uint32_t *)(d + 8)) & 0xfffff;

			if ((cmd & TXD_DCMD_TSE) && (e->tucmd & TUCMD_TSE)) {
				e->tx_tse = true;
			}

			e1000_tx_append(e, addr, len);
			e->tx_popts |= d[13];
			eop = cmd & TXD_CMD_EOP;
		}
		if (cmd & TXD_CMD_RS) {
			d[12] |= TXD_STA_DD;
		}
		set_reg(e, TDH, (head + 1) % n);
		if (eop) {
			pthread_mutex_unlock(&e->lock);
			e1000_tx_frame(e);
			pthread_mutex_lock(&e->lock);
		}
		cause = ICR_TXDW;
	}
	if (cause) {
		if (reg(e, TDH) == reg(e, TDT)) {
			cause |= ICR_TXQE;
		}
		e1000_set_ics(e, cause);
	}
	pthread_mutex_unlock(&e->lock);
}

/* Receive */

static uint32_t rx_buf_size(uint32_t rctl)
{
	static const uint32_t normal[4] = {2048, 1024, 512, 256};
	static const uint32_t ext[4] = {2048, 16384, 8192, 4096};
	unsigned b = (rctl >> 16) & 3;

	return rctl & RCTL_BSEX ? ext[b] : normal[b];
}

static bool e1000_accept(struct e1000 *e, const uint8_t *da)
{
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint32_t rctl = reg(e, RCTL);

	if (rctl & RCTL_UPE) {
		return true;
	}
	if (memcmp(da, bcast, 6) == 0) {
		return rctl & RCTL_BAM;
	}
	if (da[0] & 1) {
		static const unsigned shift[4] = {4, 3, 2, 0};
		unsigned s = shift[(rctl >> 12) & 3];
		uint32_t hash = ((uint32_t)(da[4] >> s) | (uint32_t)da[5] << (8 - s)) & 0xfff;

		return (rctl & RCTL_MPE) || (reg(e, MTA + (hash >> 5) * 4) >> (hash & 31)) & 1;
	}
	for (unsigned i = 0; i < 16; i++) {
		uint32_t lo = reg(e, RAL0 + 8 * i), hi = reg(e, RAH0 + 8 * i);
		uint8_t a[6] = {(uint8_t)lo,	     (uint8_t)(lo >> 8), (uint8_t)(lo >> 16),
				(uint8_t)(lo >> 24), (uint8_t)hi,	 (uint8_t)(hi >> 8)};

		if ((hi & RAH_AV) && memcmp(a, da, 6) == 0) {
			return true;
		}
	}
	return false;
}

bool e1000_can_receive(struct e1000 *e)
{
	uint32_t n, head, tail;
	bool ok = true;

	pthread_mutex_lock(&e->lock);
	if ((reg(e, RCTL) & RCTL_EN) && e->link_up) {
		n = ring_size(e, RDLEN);
		head = reg(e, RDH);
		tail = reg(e, RDT);
		ok = n && head < n && tail < n && head != tail;
		e->rx_waiting = e->rx_waiting || !ok;
	}
	pthread_mutex_unlock(&e->lock);
	return ok;
}

int e1000_receive(struct e1000 *e, const struct iovec *iov, unsigned cnt)
{
	uint8_t *frame = e->rx_buf;
	size_t len = iov_size(iov, cnt);
	uint32_t n, head, tail, avail, bsize, need, pos = 0, rdmts, cause;
	uint64_t base;
	int ret = 0;

	if (len > E1000_MAX_FRAME || len < 14) {
		return 0;
	}
	iov_to_buf(iov, cnt, 0, frame, len);
	if (len < MIN_FRAME) {
		memset(frame + len, 0, MIN_FRAME - len);
		len = MIN_FRAME;
	}
	pthread_mutex_lock(&e->lock);
	if (!(reg(e, RCTL) & RCTL_EN) || !e->link_up) {
		goto out;
	}
	if (!e1000_accept(e, frame)) {
		goto out;
	}
	if (!(reg(e, RCTL) & RCTL_SECRC)) {
		uint32_t crc = htole32((uint32_t)crc32(0, frame, (uInt)len));

		memcpy(frame + len, &crc, 4);
		len += 4;
	}
	n = ring_size(e, RDLEN);
	head = reg(e, RDH);
	tail = reg(e, RDT);
	if (n == 0 || head >= n || tail >= n) {
		e->rx_waiting = true;
		ret = -EAGAIN;
		goto out;
	}
	avail = (tail + n - head) % n;
	bsize = rx_buf_size(reg(e, RCTL));
	need = (uint32_t)DIV_ROUND_UP(len, bsize);
	if (avail < need) {
		set_reg(e, ICR, reg(e, ICR) | ICR_RXO);
		e1000_update_irq(e);
		e->rx_waiting = true;
		ret = -EAGAIN;
		goto out;
	}
	base = (uint64_t)reg(e, RDBAH) << 32 | reg(e, RDBAL);
	while (pos < len) {
		uint8_t *d = guest_mem_ptr(e->mem, base + (uint64_t)head * 16, 16);
		uint32_t chunk = MIN(bsize, (uint32_t)len - pos);
		uint64_t addr;
		uint8_t *buf;

		if (!d) {
			break; /* ring outside RAM: drop the rest */
		}
		addr = le64toh(*(uint64_t *)d);
		buf = addr ? guest_mem_ptr(e->mem, addr, chunk) : NULL;
		if (buf) {
			memcpy(buf, frame + pos, chunk);
		}
		pos += chunk;
		*(uint16_t *)(d + 8) = htole16((uint16_t)chunk);
		*(uint16_t *)(d + 10) = 0;
		d[13] = buf ? 0 : 0x80; /* errors: RXE when the buffer was bad */
		d[12] = RXD_STA_DD | RXD_STA_IXSM | (pos >= len ? RXD_STA_EOP : 0);
		head = (head + 1) % n;
	}
	set_reg(e, RDH, head);
	set_reg(e, GPRC, reg(e, GPRC) + 1);
	set_reg(e, TPR, reg(e, TPR) + 1);
	cause = ICR_RXT0;
	avail = (tail + n - head) % n;
	rdmts = (reg(e, RCTL) >> 8) & 3;
	if (avail <= (n >> (rdmts + 1))) {
		cause |= ICR_RXDMT0;
	}
	e1000_set_ics(e, cause);
out:
	pthread_mutex_unlock(&e->lock);
	return ret;
}

/*
 * The device class: one e1000 per "nics" entry with "driver": "e1000"
 * (cfg is its struct vm_nic_config), a PCI function in the first free slot
 * with the register file in BAR0 and the I/O window in BAR1, on the net
 * backend the entry names. Work for the I/O thread (transmit, receive
 * resume) is handed over through one eventfd.
 */
#define E1000_WORK_TX 1u
#define E1000_WORK_RX 2u

struct e1000_dev {
	struct vm *vm;
	struct e1000 *e;
	struct pci_device pci;
	bool pci_registered;
	struct net_backend *nb;
	char *id; /* the NIC's */
	int efd;
	struct event *ev;
	unsigned work; /* E1000_WORK_*, atomic */
	bool loaded;   /* state loaded (restore): receive even before the start */
	uint8_t hdr_len;
};

static void e1000_dev_wake(struct e1000_dev *d, unsigned what)
{
	uint64_t one = 1;

	__atomic_fetch_or(&d->work, what, __ATOMIC_SEQ_CST);
	if (write(d->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: a wake-up is already pending */
	}
}

static void e1000_dev_kick(void *opaque)
{
	e1000_dev_wake(opaque, E1000_WORK_TX);
}

static void e1000_dev_rx_resume(void *opaque)
{
	e1000_dev_wake(opaque, E1000_WORK_RX);
}

static void e1000_dev_irq(void *opaque, int level)
{
	struct e1000_dev *d = opaque;

	pci_set_irq(&d->pci, level);
}

static int e1000_dev_send(void *opaque, const struct iovec *iov, unsigned cnt)
{
	struct e1000_dev *d = opaque;
	struct net_vnet_hdr hdr = {.gso_type = NET_HDR_GSO_NONE};
	struct iovec v[2];

	if (!d->nb) {
		return -ENODEV;
	}
	if (!d->hdr_len || cnt != 1) {
		return net_backend_send(d->nb, iov, cnt);
	}
	v[0].iov_base = &hdr;
	v[0].iov_len = d->hdr_len;
	v[1] = iov[0];
	return net_backend_send(d->nb, v, 2);
}

/* A frame from the backend (I/O thread); strip the vnet header if the backend adds one. */
static int e1000_dev_receive(void *opaque, const struct iovec *iov, unsigned cnt)
{
	struct e1000_dev *d = opaque;
	struct iovec v[64];
	size_t skip = d->hdr_len;
	unsigned n = 0;

	if (!__atomic_load_n(&d->loaded, __ATOMIC_ACQUIRE) &&
	    vm_get_state(d->vm) == VM_STATE_PRELAUNCH) {
		/*
		 * Not started, or being restored (an incoming migration whose
		 * tap was handed over): the frame waits in the backend for the
		 * state; the load's or the driver's receive wake-up resumes it.
		 */
		return -EAGAIN;
	}
	for (unsigned i = 0; i < cnt && n < ARRAY_SIZE(v); i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		v[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
		v[n].iov_len = iov[i].iov_len - skip;
		skip = 0;
		n++;
	}
	return e1000_receive(d->e, v, n);
}

static bool e1000_dev_can_receive(void *opaque)
{
	struct e1000_dev *d = opaque;

	if (!__atomic_load_n(&d->loaded, __ATOMIC_ACQUIRE) &&
	    vm_get_state(d->vm) == VM_STATE_PRELAUNCH) {
		return false; /* as e1000_dev_receive */
	}
	return e1000_can_receive(d->e);
}

static void e1000_dev_event(evutil_socket_t fd, short what, void *opaque)
{
	struct e1000_dev *d = opaque;
	uint64_t cnt;
	unsigned work;

	(void)what;
	if (read(fd, &cnt, sizeof(cnt)) < 0) {
		/* nothing pending */
	}
	work = __atomic_exchange_n(&d->work, 0, __ATOMIC_SEQ_CST);
	if (work & E1000_WORK_TX) {
		e1000_tx_process(d->e);
	}
	if ((work & E1000_WORK_RX) && d->nb) {
		net_backend_rx_resume(d->nb);
	}
}

static uint64_t e1000_bar_mmio_read(void *opaque, uint64_t off, unsigned size)
{
	return e1000_mmio_read(opaque, off, size);
}

static void e1000_bar_mmio_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	e1000_mmio_write(opaque, off, value, size);
}

static uint64_t e1000_bar_io_read(void *opaque, uint64_t off, unsigned size)
{
	return e1000_io_read(opaque, off, size);
}

static void e1000_bar_io_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	e1000_io_write(opaque, off, value, size);
}

static const struct iobus_ops e1000_bar0_ops = {.read = e1000_bar_mmio_read,
						.write = e1000_bar_mmio_write};
static const struct iobus_ops e1000_bar1_ops = {.read = e1000_bar_io_read,
						.write = e1000_bar_io_write};

static const struct e1000_host_ops e1000_dev_ops = {
	.send = e1000_dev_send,
	.set_irq = e1000_dev_irq,
	.kick_tx = e1000_dev_kick,
	.rx_resume = e1000_dev_rx_resume,
};

/* A stable locally administered MAC from the VM and NIC names (52:54:00:xx:xx:xx). */
void e1000_default_mac(const char *vm_name, const char *nic_id, uint8_t mac[6])
{
	uint32_t h = 2166136261u;

	for (const char *s = vm_name; s && *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	h = (h ^ '/') * 16777619u;
	for (const char *s = nic_id; s && *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

static void e1000_class_unrealize(void *state)
{
	struct e1000_dev *d = state;

	if (!d) {
		return;
	}
	if (d->pci_registered) {
		pci_unregister_device(&d->pci);
	}
	if (d->ev) {
		event_free(d->ev);
	}
	net_backend_close(d->nb);
	if (d->efd >= 0) {
		close(d->efd);
	}
	e1000_free(d->e);
	free(d->id);
	free(d);
}

static int e1000_class_host_fd(void *state, const char **ret_id)
{
	struct e1000_dev *d = state;

	*ret_id = d->id;
	return net_backend_host_fd(d->nb);
}

static void e1000_class_host_fd_release(void *state)
{
	struct e1000_dev *d = state;

	net_backend_detach(d->nb);
}

/* The configured MAC (the EEPROM's), as QEMU announces, whatever RAL/RAH say now. */
static void e1000_class_announce(void *state)
{
	struct e1000_dev *d = state;
	uint8_t frame[NET_RARP_LEN];
	struct iovec iov = {frame, net_rarp_frame(frame, d->e->mac)};

	if (e1000_link_up(d->e)) { /* QEMU drops a down NIC's announcement too */
		e1000_dev_send(d, &iov, 1);
	}
}

static int e1000_class_set_link(void *state, bool up)
{
	struct e1000_dev *d = state;

	e1000_set_link(d->e, up);
	return 0;
}

static int e1000_class_realize(struct vm *vm, const void *cfg, void **ret_state,
			       struct error **errp)
{
	const struct vm_nic_config *nc = cfg;
	const struct vm_host *host = vm_get_host(vm);
	struct net_backend_config bc = {.backend = nc->backend ? nc->backend : "user",
					.ifname = nc->ifname,
					.fd = -1,
					.hostfwd = nc->hostfwd,
					.id = nc->id};
	struct net_peer peer;
	struct e1000_dev *d;
	uint8_t mac[6];
	int r, handed;

	if (nc->mac) {
		if (net_mac_parse(nc->mac, mac) < 0) {
			return error_set(errp, EINVAL, "nic '%s': bad MAC address '%s'", nc->id,
					 nc->mac);
		}
	} else {
		e1000_default_mac(vm_get_config(vm)->name, nc->id, mac);
	}
	handed = host->nic_fd ? host->nic_fd(host->opaque, nc->id) : -ENOENT;
	if (handed >= 0) {
		bc.fd = handed; /* a local migration handed the source's tap over */
	} else if (nc->tap_fd > 0) {
		bc.fd = fcntl(nc->tap_fd, F_DUPFD_CLOEXEC, 3);
		if (bc.fd < 0) {
			return error_set_errno(errp, errno, "nic '%s': cannot use the netdev's fd",
					       nc->id);
		}
	} else if (nc->fd) {
		if (!host->get_fd || (bc.fd = host->get_fd(host->opaque, nc->fd)) < 0) {
			return error_set(errp, ENOENT, "nic '%s': no file descriptor named '%s'",
					 nc->id, nc->fd);
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		if (bc.fd >= 0) {
			close(bc.fd);
		}
		return error_set(errp, ENOMEM, "e1000: out of memory");
	}
	d->vm = vm;
	d->id = strdup(nc->id ? nc->id : "net");
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->e = e1000_new(vm_guest_mem(vm), mac, &e1000_dev_ops, d);
	if (d->efd < 0 || !d->e || !d->id) {
		r = error_set(errp, d->efd < 0 ? errno : ENOMEM, "e1000: cannot set up '%s'",
			      nc->id);
		goto err_fd;
	}
	d->ev = event_new(vm_io_base(vm), d->efd, EV_READ | EV_PERSIST, e1000_dev_event, d);
	if (!d->ev || event_add(d->ev, NULL) < 0) {
		r = error_set(errp, ENOMEM, "e1000: cannot watch '%s'", nc->id);
		goto err_fd;
	}
	peer.receive = e1000_dev_receive;
	peer.can_receive = e1000_dev_can_receive;
	peer.opaque = d;
	r = net_backend_open(&bc, vm_io_base(vm), &peer, &d->nb, errp);
	if (r < 0) {
		error_prefix(errp, "nic '%s'", nc->id);
		goto err;
	}
	d->hdr_len = net_backend_has_vnet_hdr(d->nb) ? sizeof(struct net_vnet_hdr) : 0;
	pci_device_init(&d->pci, nc->id, E1000_VENDOR_ID, E1000_DEVICE_ID, 0x020000, 3, 0x1af4,
			0x1100);
	pci_device_set_bar(&d->pci, 0, PCI_BAR_MEM32, E1000_MMIO_SIZE, &e1000_bar0_ops, d->e);
	pci_device_set_bar(&d->pci, 1, PCI_BAR_IO, E1000_IO_SIZE, &e1000_bar1_ops, d->e);
	r = pci_register_device(pci_host_of(vm), &d->pci, -1, errp);
	if (r < 0) {
		goto err;
	}
	d->pci_registered = true;
	*ret_state = d;
	return 0;
err_fd:
	if (bc.fd >= 0) {
		close(bc.fd); /* not yet the backend's */
	}
err:
	e1000_class_unrealize(d);
	return r;
}

static void e1000_class_reset(void *state)
{
	struct e1000_dev *d = state;

	pci_device_reset(&d->pci);
	e1000_reset(d->e);
}

static int e1000_class_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct e1000_dev *d = state;

	pci_device_save(&d->pci, out);
	e1000_save(d->e, out);
	return 0;
}

static int e1000_class_load(void *state, struct vmstate_buf *in, unsigned version,
			    struct error **errp)
{
	struct e1000_dev *d = state;
	int r = pci_device_load(&d->pci, in, errp);

	if (r == 0) {
		r = e1000_load(d->e, in, errp);
	}
	if (r == 0) {
		/* Descriptors the guest queued before the save: look at both rings. */
		__atomic_store_n(&d->loaded, true, __ATOMIC_RELEASE);
		e1000_dev_wake(d, E1000_WORK_TX | E1000_WORK_RX);
	}
	return r;
}

const struct device_class e1000_class = {
	.name = "e1000",
	.each = DEVICE_PER_NIC,
	.realize = e1000_class_realize,
	.unrealize = e1000_class_unrealize,
	.reset = e1000_class_reset,
	.state_version = 1,
	.save = e1000_class_save,
	.load = e1000_class_load,
	.host_fd = e1000_class_host_fd,
	.host_fd_release = e1000_class_host_fd_release,
	.announce = e1000_class_announce,
	.set_link = e1000_class_set_link,
};
