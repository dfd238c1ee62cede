/*
 * xHCI host controller (see xhci.h), written from the eXtensible Host
 * Controller Interface specification 1.2: registers (§5), command ring and
 * commands (§4.6), transfer rings (§4.9-4.11), event rings and interrupters
 * (§4.9.4, §4.17), device contexts with 32-byte entries (§6.2), root hub
 * ports (§4.19).
 *
 * Threads: see xhci.h. x->lock protects everything in struct xhci and the
 * attached devices; x->ports_lock (taken inside it) also guards the port
 * table so that the control thread's queries never wait for x->lock. A
 * device's address is read there without x->lock (a byte; stale at worst).
 *
 * Guest input is hostile. Every guest address goes through guest_mem_*()
 * (hw/memory.h); TRBs are read only by hw/usb/xhci-ring.c, copied once.
 * Bounds: XHCI_RING_MAX_LINKS Links in a row, XHCI_TD_MAX_TRBS TRBs per
 * TD, CMD_BUDGET commands and EP_BUDGET TDs per doorbell, control data
 * stages of USB_MAX_CONTROL_DATA bytes, event ring segment tables of
 * ERST_MAX entries of 16..4096 TRBs. Faults are reported the way the spec
 * has for them: a TRB outside RAM or a Link loop on a transfer ring halts
 * the endpoint with a Transfer Event (USB Transaction Error / TRB Error),
 * a data buffer outside RAM is a USB Transaction Error, a malformed TD a TRB
 * Error; when the controller itself cannot reach memory it needs (command
 * ring, DCBAA, contexts, event ring) it sets USBSTS.HCE and stops until
 * the guest resets it (HCRST), as QEMU does. Faults are logged rate-limited.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/iov.h"
#include "common/log.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/core/memory.h"
#include "hw/usb/usb.h"
#include "hw/usb/xhci-ring.h"
#include "hw/usb/xhci.h"

/* Register blocks */
#define CAP_LENGTH 0x40
#define OP_BASE 0x40
#define PORT_BASE (OP_BASE + 0x400)
#define RT_BASE 0x1000
#define DB_BASE 0x2000
#define XECP 0x20 /* extended capabilities: two Supported Protocol entries */

/* Operational registers (offsets from OP_BASE) */
#define OP_USBCMD 0x00
#define OP_USBSTS 0x04
#define OP_PAGESIZE 0x08
#define OP_DNCTRL 0x14
#define OP_CRCR 0x18
#define OP_DCBAAP 0x30
#define OP_CONFIG 0x38

#define USBCMD_RS (1u << 0)
#define USBCMD_HCRST (1u << 1)
#define USBCMD_INTE (1u << 2)
#define USBCMD_HSEE (1u << 3)
#define USBCMD_MASK 0x3f0fu
#define USBSTS_HCH (1u << 0)
#define USBSTS_HSE (1u << 2)
#define USBSTS_EINT (1u << 3)
#define USBSTS_PCD (1u << 4)
#define USBSTS_SRE (1u << 10)
#define USBSTS_HCE (1u << 12)
#define USBSTS_W1C (USBSTS_HSE | USBSTS_EINT | USBSTS_PCD | USBSTS_SRE)
#define CRCR_RCS (1u << 0)
#define CRCR_CS (1u << 1)
#define CRCR_CA (1u << 2)
#define CRCR_CRR (1u << 3)

/* PORTSC */
#define PORTSC_CCS (1u << 0)
#define PORTSC_PED (1u << 1)
#define PORTSC_PR (1u << 4)
#define PORTSC_PLS_SHIFT 5
#define PORTSC_PLS_MASK (0xfu << PORTSC_PLS_SHIFT)
#define PORTSC_PP (1u << 9)
#define PORTSC_SPEED_SHIFT 10
#define PORTSC_LWS (1u << 16)
#define PORTSC_CSC (1u << 17)
#define PORTSC_PEC (1u << 18)
#define PORTSC_WRC (1u << 19)
#define PORTSC_OCC (1u << 20)
#define PORTSC_PRC (1u << 21)
#define PORTSC_PLC (1u << 22)
#define PORTSC_CEC (1u << 23)
#define PORTSC_CHANGE \
	(PORTSC_CSC | PORTSC_PEC | PORTSC_WRC | PORTSC_OCC | PORTSC_PRC | PORTSC_PLC | PORTSC_CEC)
#define PORTSC_WAKE_MASK (7u << 25) /* WCE, WDE, WOE */
#define PLS_U0 0
#define PLS_U3 3
#define PLS_DISABLED 4
#define PLS_RXDETECT 5
#define PLS_POLLING 7

/* Interrupter registers (offsets within one 32-byte set) */
#define IR_IMAN 0x00
#define IR_IMOD 0x04
#define IR_ERSTSZ 0x08
#define IR_ERSTBA 0x10
#define IR_ERDP 0x18
#define IMAN_IP (1u << 0)
#define IMAN_IE (1u << 1)
#define ERDP_EHB (1u << 3)
#define ERST_MAX 16 /* HCSPARAMS2.ERST Max = 4 */

/* Completion codes (§6.4.5) */
enum {
	CC_SUCCESS = 1,
	CC_DATA_BUFFER = 2,
	CC_TRANSACTION = 4,
	CC_TRB = 5,
	CC_STALL = 6,
	CC_NO_SLOTS = 9,
	CC_SLOT_NOT_ENABLED = 11,
	CC_EP_NOT_ENABLED = 12,
	CC_SHORT_PACKET = 13,
	CC_PARAMETER = 17,
	CC_CONTEXT_STATE = 19,
	CC_EVENT_RING_FULL = 21,
	CC_CMD_RING_STOPPED = 24,
	CC_STOPPED = 26,
};

/* Slot and endpoint states (§6.2.2, §6.2.3) */
enum {
	SLOT_ENABLED = 0,
	SLOT_DEFAULT = 1,
	SLOT_ADDRESSED = 2,
	SLOT_CONFIGURED = 3
};
enum {
	EP_DISABLED = 0,
	EP_RUNNING = 1,
	EP_HALTED = 2,
	EP_STOPPED = 3,
	EP_ERROR = 4
};
enum {
	EPT_CONTROL = 4
};

#define CMD_BUDGET 256
#define EP_BUDGET 64
#define CTX_SIZE 32

struct xhci_ep {
	uint8_t state; /* EP_* */
	uint8_t type;  /* 1..7 from the context */
	struct xhci_ring ring;
	bool waiting; /* a TD got NAK: retry on wakeup */
};

struct xhci_slot {
	bool enabled;
	uint8_t state; /* SLOT_* while enabled */
	unsigned port; /* root port, once addressed */
	uint64_t ctx;  /* output device context */
	struct xhci_ep ep[32];
};

struct xhci_intr {
	uint32_t iman, imod, erstsz;
	uint64_t erstba, erdp;
	/* producer state */
	unsigned seg;	   /* current ERST entry */
	uint64_t seg_base; /* its base */
	uint32_t seg_size; /* its TRB count; 0 = not set up */
	uint32_t idx;	   /* next TRB in the segment */
	bool pcs;
	bool full;
};

struct xhci_port {
	uint32_t portsc;
	struct usb_device *dev;
	uint64_t attached; /* attach order (QEMU lists a bus's devices in it) */
};

struct xhci {
	pthread_mutex_t lock;
	/*
	 * Taken inside lock by attach/detach, alone by the control thread's
	 * queries, which must not wait for a vCPU doing block I/O under lock.
	 */
	pthread_mutex_t ports_lock;
	struct guest_mem *mem;
	const struct xhci_host_ops *ops;
	void *opaque;
	uint32_t usbcmd, usbsts, dnctrl, config;
	uint64_t dcbaap;
	struct xhci_ring cmd;
	bool crr;
	bool intx;
	struct xhci_intr intr[XHCI_MAX_INTRS];
	struct xhci_slot slot[XHCI_MAX_SLOTS + 1];
	struct xhci_port port[XHCI_PORTS + 1];
	uint32_t wake_pending; /* bit per port: device data available (atomic) */
	uint64_t attach_count;
	uint64_t t0_ns;
	struct ratelimit rl;
	/* scratch for one TD (lock held) */
	struct xhci_trb td[XHCI_TD_MAX_TRBS];
	uint64_t td_addr[XHCI_TD_MAX_TRBS];
	struct iovec iov[XHCI_TD_MAX_TRBS];
	uint8_t imm[XHCI_TD_MAX_TRBS][8];
	uint8_t ctl_buf[USB_MAX_CONTROL_DATA];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void xhci_log(struct xhci *x, const char *what, uint64_t addr)
{
	log_ratelimited(&x->rl, LOG_NOTICE, NULL, "xhci", "guest error: %s (0x%llx)", what,
			(unsigned long long)addr);
}

/* The controller cannot reach memory it needs: Host Controller Error, stop. */
static void xhci_die(struct xhci *x, const char *what, uint64_t addr)
{
	xhci_log(x, what, addr);
	x->usbsts |= USBSTS_HCE;
}

static bool xhci_running(struct xhci *x)
{
	return (x->usbcmd & USBCMD_RS) && !(x->usbsts & (USBSTS_HCE | USBSTS_HCH));
}

/* ---- interrupts and events ---- */

static void xhci_update_intx(struct xhci *x)
{
	struct xhci_intr *in = &x->intr[0];
	bool level = (x->usbcmd & USBCMD_INTE) && (in->iman & IMAN_IP) && (in->iman & IMAN_IE);

	if (x->ops->msix_enabled(x->opaque)) {
		level = false;
	}
	if (level != x->intx) {
		x->intx = level;
		x->ops->set_intx(x->opaque, level);
	}
}

static void xhci_raise(struct xhci *x, unsigned v)
{
	struct xhci_intr *in = &x->intr[v];
	bool busy = in->erdp & ERDP_EHB;

	in->erdp |= ERDP_EHB;
	in->iman |= IMAN_IP;
	x->usbsts |= USBSTS_EINT;
	if (busy || !(in->iman & IMAN_IE) || !(x->usbcmd & USBCMD_INTE)) {
		return;
	}
	if (x->ops->msix_enabled(x->opaque)) {
		x->ops->msix_notify(x->opaque, v);
		in->iman &= ~IMAN_IP; /* §5.5.2.1: cleared once the message is sent */
		return;
	}
	if (v == 0) {
		xhci_update_intx(x);
	}
}

/* Load ERST entry @seg of @in; false (and HCE) if it is unreadable or malformed. */
static bool xhci_load_segment(struct xhci *x, struct xhci_intr *in, unsigned seg)
{
	uint8_t e[16];
	uint64_t base;
	uint32_t size;

	if (guest_mem_read(x->mem, in->erstba + 16ull * seg, e, sizeof(e)) < 0) {
		xhci_die(x, "event ring segment table outside RAM", in->erstba);
		return false;
	}
	memcpy(&base, e, 8);
	memcpy(&size, e + 8, 4);
	base = le64toh(base) & ~0x3full;
	size = le32toh(size) & 0xffff;
	if (size < 16 || size > 4096 || !guest_mem_ptr(x->mem, base, 16ull * size)) {
		xhci_die(x, "bad event ring segment", base);
		in->seg_size = 0;
		in->idx = 0;
		return false;
	}
	in->seg = seg;
	in->seg_base = base;
	in->seg_size = size;
	in->idx = 0;
	return true;
}

/*
 * Post @ev on interrupter @v's event ring; interrupt unless @no_irq.
 * A full ring gets an Event Ring Full Error in its last free slot and then
 * drops events until the guest moves ERDP (§4.9.4).
 */
static void xhci_event(struct xhci *x, unsigned v, struct xhci_trb ev, bool no_irq)
{
	struct xhci_intr *in;
	uint64_t at, next;
	uint8_t raw[16];
	uint64_t p;
	uint32_t s, c;

	if (v >= XHCI_MAX_INTRS) {
		v = 0;
	}
	in = &x->intr[v];
	if (x->usbsts & USBSTS_HCE) {
		return;
	}
	if (in->seg_size == 0 || in->full) {
		xhci_log(x,
			 in->full ? "event ring full, event dropped"
				  : "event ring not set up, event dropped",
			 ev.control);
		return;
	}
	at = in->seg_base + 16ull * in->idx;
	if (in->idx + 1 < in->seg_size) {
		next = at + 16;
	} else {
		uint8_t e[8];
		uint64_t b;
		unsigned seg = (in->seg + 1) % MAX(in->erstsz, 1u);

		if (guest_mem_read(x->mem, in->erstba + 16ull * seg, e, 8) < 0) {
			xhci_die(x, "event ring segment table outside RAM", in->erstba);
			return;
		}
		memcpy(&b, e, 8);
		next = le64toh(b) & ~0x3full;
	}
	if (next == (in->erdp & ~0xfull)) {
		ev.param = 0;
		ev.status = (uint32_t)CC_EVENT_RING_FULL << 24;
		ev.control = TRB_EV_HOST << 10;
		in->full = true;
		no_irq = false;
	}
	ev.control = (ev.control & ~TRB_C) | (in->pcs ? TRB_C : 0);
	p = htole64(ev.param);
	s = htole32(ev.status);
	c = htole32(ev.control);
	memcpy(raw, &p, 8);
	memcpy(raw + 8, &s, 4);
	memcpy(raw + 12, &c, 4);
	if (guest_mem_write(x->mem, at, raw, sizeof(raw)) < 0) {
		xhci_die(x, "event ring outside RAM", at);
		return;
	}
	if (++in->idx >= in->seg_size) {
		unsigned seg = in->seg + 1;

		if (seg >= MAX(in->erstsz, 1u)) {
			seg = 0;
			in->pcs = !in->pcs;
		}
		if (!xhci_load_segment(x, in, seg)) {
			return;
		}
	}
	if (!no_irq) {
		xhci_raise(x, v);
	}
}

static void xhci_cmd_event(struct xhci *x, uint64_t trb_addr, unsigned cc, unsigned slot)
{
	struct xhci_trb ev = {
		.param = trb_addr,
		.status = (uint32_t)cc << 24,
		.control = TRB_EV_COMMAND << 10 | (uint32_t)slot << 24,
	};

	xhci_event(x, 0, ev, false);
}

static void xhci_transfer_event(struct xhci *x, const struct xhci_trb *trb, uint64_t addr,
				unsigned cc, uint32_t residual, unsigned slot, unsigned dci,
				bool event_data)
{
	struct xhci_trb ev = {
		.param = addr,
		.status = (uint32_t)cc << 24 | (residual & 0xffffff),
		.control = TRB_EV_TRANSFER << 10 | dci << 16 | (uint32_t)slot << 24 |
			   (event_data ? 1u << 2 : 0),
	};

	xhci_event(x, trb ? trb->status >> 22 : 0, ev, trb && (trb->control & TRB_BEI));
}

static void xhci_port_event(struct xhci *x, unsigned port)
{
	struct xhci_trb ev = {
		.param = (uint64_t)port << 24,
		.status = (uint32_t)CC_SUCCESS << 24,
		.control = TRB_EV_PORT << 10,
	};

	x->usbsts |= USBSTS_PCD;
	if (xhci_running(x)) {
		xhci_event(x, 0, ev, false);
	}
}

/* ---- contexts ---- */

static bool ctx_read(struct xhci *x, uint64_t addr, uint32_t *ctx)
{
	if (guest_mem_read(x->mem, addr, ctx, CTX_SIZE) < 0) {
		xhci_die(x, "context outside RAM", addr);
		return false;
	}
	for (unsigned i = 0; i < 8; i++) {
		ctx[i] = le32toh(ctx[i]);
	}
	return true;
}

static bool ctx_write(struct xhci *x, uint64_t addr, const uint32_t *ctx)
{
	uint32_t le[8];

	for (unsigned i = 0; i < 8; i++) {
		le[i] = htole32(ctx[i]);
	}
	if (guest_mem_write(x->mem, addr, le, CTX_SIZE) < 0) {
		xhci_die(x, "context outside RAM", addr);
		return false;
	}
	return true;
}

/* Write endpoint @dci's state and dequeue pointer into the output context. */
static void ep_ctx_sync(struct xhci *x, unsigned slotid, unsigned dci)
{
	struct xhci_slot *s = &x->slot[slotid];
	struct xhci_ep *ep = &s->ep[dci];
	uint64_t addr = s->ctx + (uint64_t)CTX_SIZE * dci;
	uint32_t ctx[8];

	if (!ctx_read(x, addr, ctx)) {
		return;
	}
	ctx[0] = (ctx[0] & ~7u) | ep->state;
	ctx[2] = (uint32_t)ep->ring.dequeue | (ep->ring.ccs ? 1 : 0);
	ctx[3] = (uint32_t)(ep->ring.dequeue >> 32);
	ctx_write(x, addr, ctx);
}

static void slot_ctx_sync(struct xhci *x, unsigned slotid)
{
	struct xhci_slot *s = &x->slot[slotid];
	uint32_t ctx[8];

	if (!ctx_read(x, s->ctx, ctx)) {
		return;
	}
	ctx[3] = (ctx[3] & ~(0x1fu << 27)) | (uint32_t)s->state << 27;
	ctx_write(x, s->ctx, ctx);
}

static struct usb_device *slot_dev(struct xhci *x, unsigned slotid)
{
	unsigned p = x->slot[slotid].port;

	return p >= 1 && p <= XHCI_PORTS ? x->port[p].dev : NULL;
}

/* ---- transfers ---- */

static void ep_halt(struct xhci *x, unsigned slotid, unsigned dci, const char *why, uint64_t addr)
{
	xhci_log(x, why, addr);
	x->slot[slotid].ep[dci].state = EP_HALTED;
	ep_ctx_sync(x, slotid, dci);
}

/*
 * Translate the data TRBs td[first..n) into x->iov; returns the count, or
 * -(index+1) of the first TRB whose buffer is outside RAM. Event Data and
 * No Op TRBs get an empty entry.
 */
static int td_buffers(struct xhci *x, unsigned first, unsigned n, size_t *ret_len)
{
	size_t total = 0;

	for (unsigned i = first; i < n; i++) {
		const struct xhci_trb *t = &x->td[i];
		unsigned type = TRB_TYPE(t->control);
		uint32_t len = t->status & 0x1ffff;
		struct iovec *v = &x->iov[i - first];

		v->iov_base = NULL;
		v->iov_len = 0;
		if (type != TRB_NORMAL && type != TRB_DATA && type != TRB_ISOCH) {
			continue;
		}
		if (t->control & TRB_IDT) {
			uint64_t le = htole64(t->param);

			if (len > 8) {
				return -(int)(i + 1);
			}
			memcpy(x->imm[i], &le, 8);
			v->iov_base = x->imm[i];
		} else {
			v->iov_base = len ? guest_mem_ptr(x->mem, t->param, len) : x->imm[i];
			if (!v->iov_base) {
				return -(int)(i + 1);
			}
		}
		v->iov_len = len;
		total += len;
	}
	*ret_len = total;
	return (int)(n - first);
}

/*
 * Completion events for data TRBs td[first..n) after @actual bytes moved
 * (§4.10.1.1: an event for IOC, and for the TRB that saw a short packet
 * when ISP is set). Returns whether a short packet occurred.
 */
static bool td_events(struct xhci *x, unsigned first, unsigned n, size_t actual, bool in,
		      unsigned slotid, unsigned dci)
{
	size_t left = actual;
	uint32_t edtla = 0;
	bool shorted = false;

	for (unsigned i = first; i < n; i++) {
		const struct xhci_trb *t = &x->td[i];
		unsigned type = TRB_TYPE(t->control);
		uint32_t len = t->status & 0x1ffff, done, residual;

		if (type == TRB_EVENT_DATA) {
			if (t->control & TRB_IOC) {
				xhci_transfer_event(x, t, t->param,
						    shorted ? CC_SHORT_PACKET : CC_SUCCESS, edtla,
						    slotid, dci, true);
			}
			edtla = 0;
			continue;
		}
		if (type != TRB_NORMAL && type != TRB_DATA && type != TRB_ISOCH) {
			if (t->control & TRB_IOC) {
				xhci_transfer_event(x, t, x->td_addr[i], CC_SUCCESS, 0, slotid, dci,
						    false);
			}
			continue;
		}
		done = (uint32_t)MIN((size_t)len, left);
		left -= done;
		edtla += done;
		residual = len - done;
		if (residual && in && !shorted) {
			shorted = true;
			if (t->control & (TRB_ISP | TRB_IOC)) {
				xhci_transfer_event(x, t, x->td_addr[i], CC_SHORT_PACKET, residual,
						    slotid, dci, false);
				continue;
			}
		}
		if (t->control & TRB_IOC) {
			xhci_transfer_event(x, t, x->td_addr[i],
					    shorted ? CC_SHORT_PACKET : CC_SUCCESS, residual,
					    slotid, dci, false);
		}
	}
	return shorted;
}

enum td_result {
	TD_DONE,  /* completed (events posted); advance */
	TD_NAK,	  /* leave on the ring */
	TD_HALT,  /* endpoint halted (event posted) */
	TD_FATAL, /* HCE */
};

static enum td_result do_control(struct xhci *x, unsigned slotid, unsigned n)
{
	struct usb_device *dev = slot_dev(x, slotid);
	const struct xhci_trb *setup = &x->td[0];
	struct usb_setup s;
	size_t len = 0;
	int cnt, r;
	bool in;
	unsigned data_end = n - 1; /* the Status Stage is last */

	if (TRB_TYPE(setup->control) != TRB_SETUP || !(setup->control & TRB_IDT) ||
	    (setup->status & 0x1ffff) != 8 || TRB_TYPE(x->td[n - 1].control) != TRB_STATUS) {
		xhci_transfer_event(x, setup, x->td_addr[0], CC_TRB, 0, slotid, 1, false);
		ep_halt(x, slotid, 1, "malformed control TD", x->td_addr[0]);
		return TD_HALT;
	}
	s.request_type = (uint8_t)setup->param;
	s.request = (uint8_t)(setup->param >> 8);
	s.value = (uint16_t)(setup->param >> 16);
	s.index = (uint16_t)(setup->param >> 32);
	s.length = (uint16_t)(setup->param >> 48);
	in = s.request_type & USB_DIR_IN;
	cnt = td_buffers(x, 1, data_end, &len);
	if (cnt < 0) {
		unsigned i = (unsigned)(-cnt - 1);

		xhci_transfer_event(x, &x->td[i], x->td_addr[i], CC_TRANSACTION, 0, slotid, 1,
				    false);
		ep_halt(x, slotid, 1, "control data buffer outside RAM", x->td[i].param);
		return TD_HALT;
	}
	if (!dev || s.length > USB_MAX_CONTROL_DATA) {
		r = dev ? USB_RET_STALL : USB_RET_IOERR;
	} else {
		memset(x->ctl_buf, 0, s.length);
		if (!in) {
			iov_to_buf(x->iov, (unsigned)cnt, 0, x->ctl_buf,
				   MIN(len, (size_t)s.length));
		}
		r = usb_device_control(dev, &s, x->ctl_buf);
	}
	if (r < 0) {
		unsigned at = data_end > 1 ? 1 : n - 1;

		xhci_transfer_event(x, &x->td[at], x->td_addr[at],
				    r == USB_RET_STALL ? CC_STALL : CC_TRANSACTION, 0, slotid, 1,
				    false);
		x->slot[slotid].ep[1].state = EP_HALTED;
		ep_ctx_sync(x, slotid, 1);
		return TD_HALT;
	}
	if (in) {
		r = (int)MIN((size_t)r, len);
		iov_from_buf(x->iov, (unsigned)cnt, 0, x->ctl_buf, (size_t)r);
	} else {
		r = (int)len;
	}
	if (setup->control & TRB_IOC) {
		xhci_transfer_event(x, setup, x->td_addr[0], CC_SUCCESS, 0, slotid, 1, false);
	}
	td_events(x, 1, n, (size_t)r, in, slotid, 1);
	return TD_DONE;
}

static enum td_result do_data(struct xhci *x, unsigned slotid, unsigned dci, unsigned n)
{
	struct usb_device *dev = slot_dev(x, slotid);
	struct usb_packet p = {.in = dci & 1, .ep = (uint8_t)(dci / 2)};
	size_t len = 0;
	int cnt, r;

	for (unsigned i = 0; i < n; i++) {
		unsigned type = TRB_TYPE(x->td[i].control);

		if (type != TRB_NORMAL && type != TRB_EVENT_DATA && type != TRB_NOOP &&
		    type != TRB_ISOCH) {
			xhci_transfer_event(x, &x->td[i], x->td_addr[i], CC_TRB, 0, slotid, dci,
					    false);
			ep_halt(x, slotid, dci, "TRB type not allowed on this ring", x->td_addr[i]);
			return TD_HALT;
		}
	}
	cnt = td_buffers(x, 0, n, &len);
	if (cnt < 0) {
		unsigned i = (unsigned)(-cnt - 1);

		xhci_transfer_event(x, &x->td[i], x->td_addr[i], CC_TRANSACTION, 0, slotid, dci,
				    false);
		ep_halt(x, slotid, dci, "data buffer outside RAM", x->td[i].param);
		return TD_HALT;
	}
	p.iov = x->iov;
	p.niov = (unsigned)cnt;
	p.len = len;
	r = dev ? usb_device_data(dev, &p) : USB_RET_IOERR;
	if (r == USB_RET_NAK) {
		return TD_NAK;
	}
	if (r < 0) {
		xhci_transfer_event(x, &x->td[0], x->td_addr[0],
				    r == USB_RET_STALL ? CC_STALL : CC_TRANSACTION, 0, slotid, dci,
				    false);
		x->slot[slotid].ep[dci].state = EP_HALTED;
		ep_ctx_sync(x, slotid, dci);
		return TD_HALT;
	}
	td_events(x, 0, n, MIN(p.actual, len), p.in, slotid, dci);
	return TD_DONE;
}

/* Run the TDs queued on endpoint @dci of @slotid (doorbell or wakeup). */
static void xhci_kick_ep(struct xhci *x, unsigned slotid, unsigned dci)
{
	struct xhci_slot *s = &x->slot[slotid];
	struct xhci_ep *ep;

	/* a doorbell's target is any byte the guest wrote: 1..31 are endpoints */
	if (!s->enabled || dci < 1 || dci > 31) {
		return;
	}
	ep = &s->ep[dci];
	if (ep->state == EP_STOPPED) {
		ep->state = EP_RUNNING; /* a doorbell restarts a stopped endpoint (§4.6.9) */
	}
	if (ep->state != EP_RUNNING) {
		return;
	}
	ep->waiting = false;
	for (unsigned budget = 0; budget < EP_BUDGET && xhci_running(x); budget++) {
		struct xhci_ring end;
		enum td_result res;
		int n = xhci_ring_fetch_td(x->mem, &ep->ring, x->td, x->td_addr, XHCI_TD_MAX_TRBS,
					   &end);

		if (n == 0) {
			break;
		}
		if (n < 0) {
			unsigned cc = n == -EFAULT ? CC_TRANSACTION : CC_TRB;
			struct xhci_trb ev = {
				.param = ep->ring.dequeue,
				.status = (uint32_t)cc << 24,
				.control = TRB_EV_TRANSFER << 10 | dci << 16 | slotid << 24,
			};

			xhci_event(x, 0, ev, false);
			ep_halt(x, slotid, dci,
				n == -EFAULT  ? "transfer ring outside RAM"
				: n == -ELOOP ? "Link TRB loop on a transfer ring"
					      : "transfer descriptor too long",
				ep->ring.dequeue);
			break;
		}
		if (dci == 1) {
			res = do_control(x, slotid, (unsigned)n);
		} else {
			res = do_data(x, slotid, dci, (unsigned)n);
		}
		if (res == TD_NAK) {
			struct usb_device *dev = slot_dev(x, slotid);

			ep->waiting = true;
			if (dev && dev->wake_at_ns) {
				x->ops->wake_at(x->opaque, dev->wake_at_ns);
				dev->wake_at_ns = 0;
			}
			break;
		}
		if (res != TD_DONE) {
			break;
		}
		ep->ring = end;
	}
	if (ep->state == EP_RUNNING && !(x->usbsts & USBSTS_HCE)) {
		ep_ctx_sync(x, slotid, dci);
	}
}

/* ---- commands ---- */

static unsigned cmd_enable_slot(struct xhci *x, unsigned *ret_slot)
{
	unsigned max = MIN(x->config & 0xff, (unsigned)XHCI_MAX_SLOTS);

	for (unsigned i = 1; i <= max; i++) {
		if (!x->slot[i].enabled) {
			memset(&x->slot[i], 0, sizeof(x->slot[i]));
			x->slot[i].enabled = true;
			x->slot[i].state = SLOT_ENABLED;
			*ret_slot = i;
			return CC_SUCCESS;
		}
	}
	return CC_NO_SLOTS;
}

static bool dcbaa_entry(struct xhci *x, unsigned slotid, uint64_t *ret)
{
	uint64_t v;

	if (guest_mem_read(x->mem, x->dcbaap + 8ull * slotid, &v, 8) < 0) {
		xhci_die(x, "DCBAA outside RAM", x->dcbaap);
		return false;
	}
	*ret = le64toh(v) & ~0x3full;
	return true;
}

/* Start endpoint @dci of @slotid from its input context @ictx (copied into the output). */
static bool ep_enable(struct xhci *x, unsigned slotid, unsigned dci, const uint32_t *ictx)
{
	struct xhci_slot *s = &x->slot[slotid];
	struct xhci_ep *ep = &s->ep[dci];
	uint32_t ctx[8];
	uint64_t deq = (uint64_t)ictx[3] << 32 | (ictx[2] & ~0xfu);

	memcpy(ctx, ictx, sizeof(ctx));
	ep->type = (ictx[1] >> 3) & 7;
	ep->state = EP_RUNNING;
	ep->waiting = false;
	xhci_ring_init(&ep->ring, deq, ictx[2] & 1);
	ctx[0] = (ctx[0] & ~7u) | EP_RUNNING;
	return ctx_write(x, s->ctx + (uint64_t)CTX_SIZE * dci, ctx);
}

static unsigned cmd_address_device(struct xhci *x, const struct xhci_trb *t, unsigned slotid)
{
	struct xhci_slot *s = &x->slot[slotid];
	uint64_t ictx = t->param & ~0xfull, octx;
	uint32_t ctl[8], sctx[8], ep0[8];
	bool bsr = t->control & (1u << 9);
	unsigned port;
	struct usb_device *dev;

	if (s->state != SLOT_ENABLED && !(s->state == SLOT_DEFAULT && !bsr)) {
		return CC_CONTEXT_STATE;
	}
	if (!ctx_read(x, ictx, ctl) || !ctx_read(x, ictx + CTX_SIZE, sctx) ||
	    !ctx_read(x, ictx + 2 * CTX_SIZE, ep0) || !dcbaa_entry(x, slotid, &octx)) {
		return 0;
	}
	if (ctl[0] != 0 || ctl[1] != 3) {
		return CC_TRB; /* only A0 and A1 may be set (§4.6.5) */
	}
	port = (sctx[1] >> 16) & 0xff;
	if (port < 1 || port > XHCI_PORTS) {
		return CC_TRB;
	}
	dev = x->port[port].dev;
	if (!dev || !(x->port[port].portsc & PORTSC_PED)) {
		return CC_TRANSACTION;
	}
	if (((ep0[1] >> 3) & 7) != EPT_CONTROL) {
		return CC_PARAMETER;
	}
	s->port = port;
	s->ctx = octx;
	if (!bsr) {
		struct usb_setup set = {.request = USB_REQ_SET_ADDRESS, .value = (uint16_t)slotid};

		if (usb_device_control(dev, &set, x->ctl_buf) < 0) {
			return CC_TRANSACTION;
		}
	}
	s->state = bsr ? SLOT_DEFAULT : SLOT_ADDRESSED;
	sctx[3] = (uint32_t)s->state << 27 | (bsr ? 0 : slotid);
	if (!ctx_write(x, octx, sctx) || !ep_enable(x, slotid, 1, ep0)) {
		return 0;
	}
	return CC_SUCCESS;
}

static void ep_disable(struct xhci *x, unsigned slotid, unsigned dci)
{
	struct xhci_ep *ep = &x->slot[slotid].ep[dci];

	ep->state = EP_DISABLED;
	ep->waiting = false;
}

static unsigned cmd_configure_ep(struct xhci *x, const struct xhci_trb *t, unsigned slotid)
{
	struct xhci_slot *s = &x->slot[slotid];
	uint64_t ictx = t->param & ~0xfull;
	uint32_t ctl[8], sctx[8], octx_slot[8];
	bool any = false;

	if (s->state != SLOT_ADDRESSED && s->state != SLOT_CONFIGURED) {
		return CC_CONTEXT_STATE;
	}
	if (t->control & (1u << 9)) { /* deconfigure */
		for (unsigned i = 2; i < 32; i++) {
			ep_disable(x, slotid, i);
		}
		s->state = SLOT_ADDRESSED;
		slot_ctx_sync(x, slotid);
		return CC_SUCCESS;
	}
	if (!ctx_read(x, ictx, ctl) || !ctx_read(x, ictx + CTX_SIZE, sctx)) {
		return 0;
	}
	if ((ctl[0] & 3) || (ctl[1] & 2)) {
		return CC_TRB; /* D0, D1 and A1 are reserved here */
	}
	for (unsigned i = 2; i < 32; i++) {
		uint32_t ep[8];

		if (ctl[0] & (1u << i)) {
			ep_disable(x, slotid, i);
		}
		if (!(ctl[1] & (1u << i))) {
			continue;
		}
		if (!ctx_read(x, ictx + (uint64_t)CTX_SIZE * (i + 1), ep)) {
			return 0;
		}
		if (((ep[1] >> 3) & 7) == 0) {
			return CC_PARAMETER;
		}
		if (!ep_enable(x, slotid, i, ep)) {
			return 0;
		}
	}
	for (unsigned i = 2; i < 32; i++) {
		any |= s->ep[i].state != EP_DISABLED;
	}
	s->state = any ? SLOT_CONFIGURED : SLOT_ADDRESSED;
	if (!ctx_read(x, s->ctx, octx_slot)) {
		return 0;
	}
	if (ctl[1] & 1) {
		octx_slot[0] = sctx[0]; /* context entries, hub bits, route string */
	}
	octx_slot[3] = (octx_slot[3] & ~(0x1fu << 27)) | (uint32_t)s->state << 27;
	return ctx_write(x, s->ctx, octx_slot) ? CC_SUCCESS : 0;
}

static unsigned cmd_evaluate_ctx(struct xhci *x, const struct xhci_trb *t, unsigned slotid)
{
	struct xhci_slot *s = &x->slot[slotid];
	uint64_t ictx = t->param & ~0xfull;
	uint32_t ctl[8], in[8], out[8];

	if (s->state == SLOT_ENABLED) {
		return CC_CONTEXT_STATE;
	}
	if (!ctx_read(x, ictx, ctl)) {
		return 0;
	}
	if (ctl[1] & 1) { /* slot: interrupter target, max exit latency */
		if (!ctx_read(x, ictx + CTX_SIZE, in) || !ctx_read(x, s->ctx, out)) {
			return 0;
		}
		out[1] = (out[1] & ~0xffffu) | (in[1] & 0xffff);
		out[2] = (out[2] & ~(0x3ffu << 22)) | (in[2] & (0x3ffu << 22));
		if (!ctx_write(x, s->ctx, out)) {
			return 0;
		}
	}
	if (ctl[1] & 2) { /* EP0: max packet size */
		if (!ctx_read(x, ictx + 2 * CTX_SIZE, in) || !ctx_read(x, s->ctx + CTX_SIZE, out)) {
			return 0;
		}
		out[1] = (out[1] & 0xffff) | (in[1] & 0xffff0000u);
		if (!ctx_write(x, s->ctx + CTX_SIZE, out)) {
			return 0;
		}
	}
	return CC_SUCCESS;
}

static void xhci_disable_slot(struct xhci *x, unsigned slotid)
{
	memset(&x->slot[slotid], 0, sizeof(x->slot[slotid]));
}

static void xhci_run_commands(struct xhci *x)
{
	for (unsigned budget = 0; budget < CMD_BUDGET && xhci_running(x) && x->crr; budget++) {
		struct xhci_trb t;
		uint64_t addr;
		unsigned cc = CC_SUCCESS, slotid, type, dci;
		int r = xhci_ring_peek(x->mem, &x->cmd, &t, &addr);

		if (r == 0) {
			break;
		}
		if (r < 0) {
			xhci_die(x,
				 r == -ELOOP ? "Link TRB loop on the command ring"
					     : "command ring outside RAM",
				 x->cmd.dequeue);
			break;
		}
		type = TRB_TYPE(t.control);
		slotid = t.control >> 24;
		dci = (t.control >> 16) & 0x1f;
		if (type >= TRB_CMD_DISABLE_SLOT && type <= TRB_CMD_RESET_DEVICE) {
			if (slotid < 1 || slotid > XHCI_MAX_SLOTS || !x->slot[slotid].enabled) {
				xhci_ring_advance(&x->cmd);
				xhci_cmd_event(x, addr, CC_SLOT_NOT_ENABLED, slotid);
				continue;
			}
		}
		switch (type) {
		case TRB_CMD_ENABLE_SLOT:
			slotid = 0;
			cc = cmd_enable_slot(x, &slotid);
			break;
		case TRB_CMD_DISABLE_SLOT:
			xhci_disable_slot(x, slotid);
			break;
		case TRB_CMD_ADDRESS_DEVICE:
			cc = cmd_address_device(x, &t, slotid);
			break;
		case TRB_CMD_CONFIGURE_EP:
			cc = cmd_configure_ep(x, &t, slotid);
			break;
		case TRB_CMD_EVALUATE_CTX:
			cc = cmd_evaluate_ctx(x, &t, slotid);
			break;
		case TRB_CMD_RESET_EP:
			if (dci < 1 || x->slot[slotid].ep[dci].state != EP_HALTED) {
				cc = dci < 1 ? CC_TRB : CC_CONTEXT_STATE;
				break;
			}
			x->slot[slotid].ep[dci].state = EP_STOPPED;
			ep_ctx_sync(x, slotid, dci);
			break;
		case TRB_CMD_STOP_EP:
			if (dci < 1 || x->slot[slotid].ep[dci].state != EP_RUNNING) {
				cc = dci < 1 ? CC_TRB : CC_CONTEXT_STATE;
				break;
			}
			x->slot[slotid].ep[dci].state = EP_STOPPED;
			x->slot[slotid].ep[dci].waiting = false;
			ep_ctx_sync(x, slotid, dci);
			break;
		case TRB_CMD_SET_TR_DEQUEUE: {
			struct xhci_ep *ep = &x->slot[slotid].ep[dci];

			if (dci < 1 || (ep->state != EP_STOPPED && ep->state != EP_ERROR)) {
				cc = dci < 1 ? CC_TRB : CC_CONTEXT_STATE;
				break;
			}
			xhci_ring_init(&ep->ring, t.param, t.param & 1);
			ep_ctx_sync(x, slotid, dci);
			break;
		}
		case TRB_CMD_RESET_DEVICE: {
			struct xhci_slot *s = &x->slot[slotid];

			if (s->state != SLOT_ADDRESSED && s->state != SLOT_CONFIGURED) {
				cc = CC_CONTEXT_STATE;
				break;
			}
			for (unsigned i = 2; i < 32; i++) {
				ep_disable(x, slotid, i);
			}
			if (slot_dev(x, slotid)) {
				usb_device_reset(slot_dev(x, slotid));
			}
			s->state = SLOT_DEFAULT;
			slot_ctx_sync(x, slotid);
			break;
		}
		case TRB_CMD_NOOP:
			break;
		default:
			cc = CC_TRB;
			break;
		}
		if (x->usbsts & USBSTS_HCE) {
			break;
		}
		if (cc == 0) {
			cc = CC_TRB;
		}
		xhci_ring_advance(&x->cmd);
		xhci_cmd_event(x, addr, cc,
			       type == TRB_CMD_ENABLE_SLOT ? slotid : (t.control >> 24));
	}
}

/* ---- ports ---- */

static void port_update(struct xhci *x, unsigned p, bool notify)
{
	struct xhci_port *pt = &x->port[p];
	uint32_t old = pt->portsc;
	uint32_t v = old & (PORTSC_CHANGE | PORTSC_WAKE_MASK);

	v |= PORTSC_PP;
	if (pt->dev) {
		v |= PORTSC_CCS | (uint32_t)pt->dev->speed << PORTSC_SPEED_SHIFT;
		if (old & PORTSC_PED) {
			v |= PORTSC_PED | (old & PORTSC_PLS_MASK);
		} else {
			v |= (uint32_t)PLS_POLLING << PORTSC_PLS_SHIFT;
		}
	} else {
		v |= (uint32_t)PLS_RXDETECT << PORTSC_PLS_SHIFT;
	}
	if ((old ^ v) & PORTSC_CCS) {
		v |= PORTSC_CSC;
	}
	pt->portsc = v;
	if (notify && (v & PORTSC_CHANGE & ~old)) {
		xhci_port_event(x, p);
	}
}

static void port_reset(struct xhci *x, unsigned p)
{
	struct xhci_port *pt = &x->port[p];

	if (!pt->dev) {
		return;
	}
	usb_device_reset(pt->dev);
	pt->portsc &= ~(PORTSC_PLS_MASK | PORTSC_PR);
	pt->portsc |= PORTSC_PED | PORTSC_PRC | (uint32_t)PLS_U0 << PORTSC_PLS_SHIFT;
	xhci_port_event(x, p);
}

static void port_write(struct xhci *x, unsigned p, uint32_t v)
{
	struct xhci_port *pt = &x->port[p];
	uint32_t old = pt->portsc;

	pt->portsc &= ~(v & PORTSC_CHANGE); /* RW1C */
	pt->portsc = (pt->portsc & ~PORTSC_WAKE_MASK) | (v & PORTSC_WAKE_MASK);
	if ((v & PORTSC_PED) && (old & PORTSC_PED)) { /* writing 1 disables */
		pt->portsc &= ~(PORTSC_PED | PORTSC_PLS_MASK);
		pt->portsc |= (uint32_t)PLS_DISABLED << PORTSC_PLS_SHIFT;
	}
	if ((v & PORTSC_LWS) && (pt->portsc & PORTSC_PED)) {
		unsigned pls = (v & PORTSC_PLS_MASK) >> PORTSC_PLS_SHIFT;

		if (pls == PLS_U0 || pls == PLS_U3) {
			bool resume = pls == PLS_U0 &&
				      ((old & PORTSC_PLS_MASK) >> PORTSC_PLS_SHIFT) == PLS_U3;

			pt->portsc = (pt->portsc & ~PORTSC_PLS_MASK) | (uint32_t)pls
									       << PORTSC_PLS_SHIFT;
			if (resume) {
				pt->portsc |= PORTSC_PLC;
				xhci_port_event(x, p);
			}
		}
	}
	if (v & PORTSC_PR) {
		port_reset(x, p);
	}
}

/* ---- reset ---- */

static void xhci_reset_locked(struct xhci *x)
{
	x->usbcmd = 0;
	x->usbsts = USBSTS_HCH;
	x->dnctrl = 0;
	x->config = 0;
	x->dcbaap = 0;
	x->crr = false;
	xhci_ring_init(&x->cmd, 0, false);
	memset(x->intr, 0, sizeof(x->intr));
	memset(x->slot, 0, sizeof(x->slot));
	for (unsigned p = 1; p <= XHCI_PORTS; p++) {
		x->port[p].portsc = 0;
		if (x->port[p].dev) {
			usb_device_reset(x->port[p].dev);
		}
		port_update(x, p, false);
	}
	x->t0_ns = now_ns();
	if (x->intx) {
		x->intx = false;
		x->ops->set_intx(x->opaque, false);
	}
}

/* ---- registers ---- */

static uint32_t cap_read(struct xhci *x, unsigned off)
{
	(void)x;
	switch (off) {
	case 0x00:
		return CAP_LENGTH | 0x0100u << 16; /* CAPLENGTH, HCIVERSION 1.0 */
	case 0x04:
		return XHCI_MAX_SLOTS | XHCI_MAX_INTRS << 8 | (uint32_t)XHCI_PORTS << 24;
	case 0x08:
		return 0xf | 4u << 4; /* IST 15 frames, ERST Max 2^4 */
	case 0x0c:
		return 0;
	case 0x10:
		/* AC64, xECP at dword 8 (0x20), no 64-byte contexts */
		return 1u | (XECP / 4u) << 16;
	case 0x14:
		return DB_BASE;
	case 0x18:
		return RT_BASE;
	case 0x1c:
		return 0;
	/* Supported Protocol: USB 2.0, ports 1-4 */
	case 0x20:
		return 2u | 4u << 8 | 0x0200u << 16;
	case 0x24:
		return 0x20425355; /* "USB " */
	case 0x28:
		return 1u | XHCI_PORTS_USB2 << 8;
	case 0x2c:
		return 0;
	/* USB 3.0, ports 5-8 */
	case 0x30:
		return 2u | 0x0300u << 16;
	case 0x34:
		return 0x20425355;
	case 0x38:
		return (XHCI_PORTS_USB2 + 1) | (XHCI_PORTS - XHCI_PORTS_USB2) << 8;
	default:
		return 0;
	}
}

static uint32_t op_read(struct xhci *x, unsigned off)
{
	if (off >= 0x400) {
		unsigned p = (off - 0x400) / 16 + 1;

		if (p > XHCI_PORTS) {
			return 0;
		}
		return (off & 0xf) == 0 ? x->port[p].portsc : 0;
	}
	switch (off) {
	case OP_USBCMD:
		return x->usbcmd;
	case OP_USBSTS:
		return x->usbsts;
	case OP_PAGESIZE:
		return 1; /* 4 KiB */
	case OP_DNCTRL:
		return x->dnctrl;
	case OP_CRCR:
		return x->crr ? CRCR_CRR : 0; /* the pointer reads as 0 */
	case OP_CRCR + 4:
		return 0;
	case OP_DCBAAP:
		return (uint32_t)x->dcbaap;
	case OP_DCBAAP + 4:
		return (uint32_t)(x->dcbaap >> 32);
	case OP_CONFIG:
		return x->config;
	default:
		return 0;
	}
}

static void op_write(struct xhci *x, unsigned off, uint32_t v)
{
	if (off >= 0x400) {
		unsigned p = (off - 0x400) / 16 + 1;

		if (p <= XHCI_PORTS && (off & 0xf) == 0) {
			port_write(x, p, v);
		}
		return;
	}
	switch (off) {
	case OP_USBCMD:
		if (v & USBCMD_HCRST) {
			xhci_reset_locked(x);
			return;
		}
		if ((v & USBCMD_RS) && !(x->usbcmd & USBCMD_RS)) {
			x->usbsts &= ~USBSTS_HCH;
		} else if (!(v & USBCMD_RS) && (x->usbcmd & USBCMD_RS)) {
			x->usbsts |= USBSTS_HCH;
			x->crr = false;
		}
		x->usbcmd = v & USBCMD_MASK & ~USBCMD_HCRST;
		xhci_update_intx(x);
		break;
	case OP_USBSTS:
		x->usbsts &= ~(v & USBSTS_W1C);
		break;
	case OP_DNCTRL:
		x->dnctrl = v & 0xffff;
		break;
	case OP_CRCR:
		if (x->crr) {
			if (v & (CRCR_CS | CRCR_CA)) {
				x->crr = false;
				xhci_cmd_event(x, x->cmd.dequeue, CC_CMD_RING_STOPPED, 0);
			}
		} else {
			x->cmd.dequeue = (x->cmd.dequeue & ~0xffffffffull) | (v & ~0x3fu);
			x->cmd.ccs = v & CRCR_RCS;
		}
		break;
	case OP_CRCR + 4:
		if (!x->crr) {
			x->cmd.dequeue = (x->cmd.dequeue & 0xffffffffull) | (uint64_t)v << 32;
		}
		break;
	case OP_DCBAAP:
		x->dcbaap = (x->dcbaap & ~0xffffffffull) | (v & ~0x3fu);
		break;
	case OP_DCBAAP + 4:
		x->dcbaap = (x->dcbaap & 0xffffffffull) | (uint64_t)v << 32;
		break;
	case OP_CONFIG:
		x->config = v & 0x3ff;
		break;
	default:
		break;
	}
}

static uint32_t rt_read(struct xhci *x, unsigned off)
{
	struct xhci_intr *in;
	unsigned i;

	if (off < 0x20) {
		return off == 0 ? (uint32_t)((now_ns() - x->t0_ns) / 125000) & 0x3fff : 0;
	}
	i = (off - 0x20) / 32;
	if (i >= XHCI_MAX_INTRS) {
		return 0;
	}
	in = &x->intr[i];
	switch ((off - 0x20) % 32) {
	case IR_IMAN:
		return in->iman;
	case IR_IMOD:
		return in->imod;
	case IR_ERSTSZ:
		return in->erstsz;
	case IR_ERSTBA:
		return (uint32_t)in->erstba;
	case IR_ERSTBA + 4:
		return (uint32_t)(in->erstba >> 32);
	case IR_ERDP:
		return (uint32_t)in->erdp;
	case IR_ERDP + 4:
		return (uint32_t)(in->erdp >> 32);
	default:
		return 0;
	}
}

/* ERDP moved: the ring has room again; interrupt again if events are pending. */
static void erdp_written(struct xhci *x, unsigned i, uint32_t lo, bool lo_written)
{
	struct xhci_intr *in = &x->intr[i];
	uint64_t enq;

	if (lo_written) {
		if (lo & ERDP_EHB) {
			in->erdp &= ~(uint64_t)ERDP_EHB;
		}
		in->erdp = (in->erdp & (~0xffffffffull | ERDP_EHB)) | (lo & ~0xfu) | (lo & 7);
	}
	in->full = false;
	if (in->seg_size == 0) {
		return;
	}
	enq = in->seg_base + 16ull * in->idx;
	if ((in->erdp & ~0xfull) != enq && !(in->erdp & ERDP_EHB)) {
		xhci_raise(x, i);
	}
}

static void rt_write(struct xhci *x, unsigned off, uint32_t v)
{
	struct xhci_intr *in;
	unsigned i;

	if (off < 0x20) {
		return;
	}
	i = (off - 0x20) / 32;
	if (i >= XHCI_MAX_INTRS) {
		return;
	}
	in = &x->intr[i];
	switch ((off - 0x20) % 32) {
	case IR_IMAN:
		in->iman = (in->iman & ~(v & IMAN_IP) & ~IMAN_IE) | (v & IMAN_IE);
		if (i == 0) {
			xhci_update_intx(x);
		}
		break;
	case IR_IMOD:
		in->imod = v;
		break;
	case IR_ERSTSZ:
		in->erstsz = MIN(v & 0xffff, (uint32_t)ERST_MAX);
		break;
	case IR_ERSTBA:
		in->erstba = (in->erstba & ~0xffffffffull) | (v & ~0x3fu);
		break;
	case IR_ERSTBA + 4: /* drivers write the low half first; the ring starts now */
		in->erstba = (in->erstba & 0xffffffffull) | (uint64_t)v << 32;
		if (in->erstsz && xhci_load_segment(x, in, 0)) {
			in->pcs = true;
			in->full = false;
		}
		break;
	case IR_ERDP:
		erdp_written(x, i, v, true);
		break;
	case IR_ERDP + 4:
		in->erdp = (in->erdp & 0xffffffffull) | (uint64_t)v << 32;
		erdp_written(x, i, 0, false);
		break;
	default:
		break;
	}
}

static void db_write(struct xhci *x, unsigned idx, uint32_t v)
{
	if (!xhci_running(x)) {
		return;
	}
	if (idx == 0) {
		if ((v & 0xff) == 0) {
			x->crr = true;
			xhci_run_commands(x);
		}
		return;
	}
	if (idx <= XHCI_MAX_SLOTS) {
		xhci_kick_ep(x, idx, v & 0xff);
	}
}

static uint32_t xhci_read32(struct xhci *x, unsigned off)
{
	if (off < CAP_LENGTH) {
		return cap_read(x, off);
	}
	if (off < RT_BASE) {
		return op_read(x, off - OP_BASE);
	}
	if (off < DB_BASE) {
		return rt_read(x, off - RT_BASE);
	}
	return 0; /* doorbells read as 0 */
}

static void xhci_write32(struct xhci *x, unsigned off, uint32_t v)
{
	if (off < CAP_LENGTH) {
		return;
	}
	if (off < RT_BASE) {
		op_write(x, off - OP_BASE, v);
	} else if (off < DB_BASE) {
		rt_write(x, off - RT_BASE, v);
	} else if (off < DB_BASE + 4 * (XHCI_MAX_SLOTS + 1)) {
		db_write(x, (off - DB_BASE) / 4, v);
	}
}

uint64_t xhci_mmio_read(struct xhci *x, uint64_t offset, unsigned size)
{
	uint64_t v;
	unsigned off = (unsigned)offset & ~3u;

	if (offset >= XHCI_MSIX_TABLE || (size != 1 && size != 2 && size != 4 && size != 8)) {
		return 0;
	}
	pthread_mutex_lock(&x->lock);
	v = xhci_read32(x, off);
	if (size == 8) {
		v |= (uint64_t)xhci_read32(x, off + 4) << 32;
	}
	pthread_mutex_unlock(&x->lock);
	if (size < 4) {
		v = (v >> (8 * (offset & 3))) & ((1ull << (8 * size)) - 1);
	}
	return v;
}

void xhci_mmio_write(struct xhci *x, uint64_t offset, uint64_t value, unsigned size)
{
	unsigned off = (unsigned)offset;

	if (offset >= XHCI_MSIX_TABLE || (size != 4 && size != 8) || (off & 3)) {
		return;
	}
	pthread_mutex_lock(&x->lock);
	xhci_write32(x, off, (uint32_t)value);
	if (size == 8) {
		xhci_write32(x, off + 4, (uint32_t)(value >> 32));
	}
	pthread_mutex_unlock(&x->lock);
}

/* ---- devices ---- */

static void xhci_dev_wakeup(void *opaque, struct usb_device *dev, uint8_t ep)
{
	struct xhci *x = opaque;

	(void)ep;
	__atomic_fetch_or(&x->wake_pending, 1u << dev->port, __ATOMIC_SEQ_CST);
	x->ops->wake(x->opaque);
}

void xhci_process_wakeups(struct xhci *x)
{
	uint32_t ports = __atomic_exchange_n(&x->wake_pending, 0, __ATOMIC_SEQ_CST);

	pthread_mutex_lock(&x->lock);
	for (unsigned s = 1; s <= XHCI_MAX_SLOTS && ports; s++) {
		struct xhci_slot *sl = &x->slot[s];

		if (!sl->enabled || !(ports & (1u << sl->port))) {
			continue;
		}
		for (unsigned d = 2; d < 32; d++) {
			if (sl->ep[d].waiting) {
				xhci_kick_ep(x, s, d);
			}
		}
	}
	pthread_mutex_unlock(&x->lock);
}

void xhci_wake_all(struct xhci *x)
{
	__atomic_fetch_or(&x->wake_pending, ~0u, __ATOMIC_SEQ_CST);
	xhci_process_wakeups(x);
}

int xhci_attach(struct xhci *x, unsigned port, struct usb_device *dev)
{
	int r = 0;

	pthread_mutex_lock(&x->lock);
	if (port == 0) {
		for (unsigned p = 1; p <= XHCI_PORTS_USB2 && !port; p++) {
			if (!x->port[p].dev) {
				port = p;
			}
		}
		if (!port) {
			r = -ENOSPC;
		}
	} else if (port > XHCI_PORTS_USB2) {
		r = -EINVAL; /* the device models are USB 2.0 */
	} else if (x->port[port].dev) {
		r = -EBUSY;
	}
	if (r == 0) {
		pthread_mutex_lock(&x->ports_lock);
		x->port[port].dev = dev;
		x->port[port].attached = ++x->attach_count;
		pthread_mutex_unlock(&x->ports_lock);
		dev->port = port;
		dev->wakeup = xhci_dev_wakeup;
		dev->wakeup_opaque = x;
		usb_device_reset(dev);
		port_update(x, port, true);
	}
	pthread_mutex_unlock(&x->lock);
	return r;
}

struct usb_device *xhci_detach(struct xhci *x, unsigned port)
{
	struct usb_device *dev = NULL;

	if (port < 1 || port > XHCI_PORTS) {
		return NULL;
	}
	pthread_mutex_lock(&x->lock);
	dev = x->port[port].dev;
	if (dev) {
		for (unsigned s = 1; s <= XHCI_MAX_SLOTS; s++) {
			if (x->slot[s].enabled && x->slot[s].port == port) {
				for (unsigned d = 1; d < 32; d++) {
					x->slot[s].ep[d].waiting = false;
				}
				x->slot[s].port = 0;
			}
		}
		pthread_mutex_lock(&x->ports_lock);
		x->port[port].dev = NULL;
		pthread_mutex_unlock(&x->ports_lock);
		dev->wakeup = NULL;
		dev->port = 0;
		x->port[port].portsc &= ~PORTSC_PED;
		port_update(x, port, true);
	}
	pthread_mutex_unlock(&x->lock);
	return dev;
}

struct usb_device *xhci_find(struct xhci *x, const char *id)
{
	struct usb_device *dev = NULL;

	pthread_mutex_lock(&x->ports_lock);
	for (unsigned p = 1; p <= XHCI_PORTS && !dev; p++) {
		if (x->port[p].dev && strcmp(x->port[p].dev->id, id) == 0) {
			dev = x->port[p].dev;
		}
	}
	pthread_mutex_unlock(&x->ports_lock);
	return dev;
}

struct block_node *xhci_port_node(struct xhci *x, unsigned port)
{
	struct block_node *bs = NULL;

	pthread_mutex_lock(&x->ports_lock);
	if (port >= 1 && port <= XHCI_PORTS) {
		bs = usb_storage_node(x->port[port].dev);
	}
	pthread_mutex_unlock(&x->ports_lock);
	return bs;
}

bool xhci_find_port_taken(struct xhci *x, unsigned port)
{
	bool taken;

	if (port < 1 || port > XHCI_PORTS) {
		return true;
	}
	pthread_mutex_lock(&x->ports_lock);
	taken = x->port[port].dev != NULL;
	pthread_mutex_unlock(&x->ports_lock);
	return taken;
}

json_t *xhci_query(struct xhci *x)
{
	static const char *const speeds[] = {"?", "full", "low", "high", "super"};
	json_t *a = json_array();

	pthread_mutex_lock(&x->ports_lock);
	for (unsigned p = 1; p <= XHCI_PORTS; p++) {
		struct usb_device *d = x->port[p].dev;

		if (d) {
			json_array_append_new(a, json_pack("{s:i, s:s, s:s, s:s, s:s, s:i}", "port",
							   p, "id", d->id, "device", d->model,
							   "product", d->product, "speed",
							   speeds[d->speed <= 4 ? d->speed : 0],
							   "address", d->addr));
		}
	}
	pthread_mutex_unlock(&x->ports_lock);
	return a;
}

char *xhci_info_text(struct xhci *x)
{
	static const char *const speeds[] = {"?", "12", "1.5", "480", "5000"};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f) {
		return NULL;
	}
	pthread_mutex_lock(&x->ports_lock);
	for (uint64_t last = 0;;) {
		unsigned p = 0;
		struct usb_device *d;

		for (unsigned i = 1; i <= XHCI_PORTS; i++) {
			if (x->port[i].dev && x->port[i].attached > last &&
			    (!p || x->port[i].attached < x->port[p].attached)) {
				p = i;
			}
		}
		if (!p) {
			break;
		}
		last = x->port[p].attached;
		d = x->port[p].dev;
		fprintf(f, "  Device 0.%u, Port %u, Speed %s Mb/s, Product %s, ID: %s\n", d->addr,
			p, speeds[d->speed <= 4 ? d->speed : 0], d->product, d->id);
	}
	pthread_mutex_unlock(&x->ports_lock);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

struct xhci *xhci_new(struct guest_mem *mem, const struct xhci_host_ops *ops, void *opaque)
{
	struct xhci *x = calloc(1, sizeof(*x));

	if (!x) {
		return NULL;
	}
	pthread_mutex_init(&x->lock, NULL);
	pthread_mutex_init(&x->ports_lock, NULL);
	x->mem = mem;
	x->ops = ops;
	x->opaque = opaque;
	x->rl = (struct ratelimit)RATELIMIT_INIT(5 * 1000000, 5);
	xhci_reset_locked(x);
	return x;
}

void xhci_free(struct xhci *x)
{
	if (!x) {
		return;
	}
	for (unsigned p = 1; p <= XHCI_PORTS; p++) {
		usb_device_free(x->port[p].dev);
	}
	pthread_mutex_destroy(&x->lock);
	pthread_mutex_destroy(&x->ports_lock);
	free(x);
}

void xhci_reset(struct xhci *x)
{
	pthread_mutex_lock(&x->lock);
	xhci_reset_locked(x);
	pthread_mutex_unlock(&x->lock);
}

/* ---- save/restore (docs/vmstate.md, section "xhci") ---- */

static void ring_save(struct vmstate_buf *out, const struct xhci_ring *r)
{
	vmstate_put_u64(out, r->dequeue);
	vmstate_put_bool(out, r->ccs);
}

static void ring_load(struct vmstate_buf *in, struct xhci_ring *r)
{
	uint64_t deq = vmstate_get_u64(in);
	bool ccs = vmstate_get_bool(in);

	xhci_ring_init(r, deq, ccs);
}

void xhci_save(struct xhci *x, struct vmstate_buf *out)
{
	pthread_mutex_lock(&x->lock);
	vmstate_put_u32(out, x->usbcmd);
	vmstate_put_u32(out, x->usbsts);
	vmstate_put_u32(out, x->dnctrl);
	vmstate_put_u32(out, x->config);
	vmstate_put_u64(out, x->dcbaap);
	ring_save(out, &x->cmd);
	vmstate_put_bool(out, x->crr);
	vmstate_put_bool(out, x->intx);
	vmstate_put_u64(out, now_ns() - x->t0_ns); /* MFINDEX runs on */
	for (unsigned i = 0; i < XHCI_MAX_INTRS; i++) {
		const struct xhci_intr *in = &x->intr[i];

		vmstate_put_u32(out, in->iman);
		vmstate_put_u32(out, in->imod);
		vmstate_put_u32(out, in->erstsz);
		vmstate_put_u64(out, in->erstba);
		vmstate_put_u64(out, in->erdp);
		vmstate_put_u32(out, in->seg);
		vmstate_put_u64(out, in->seg_base);
		vmstate_put_u32(out, in->seg_size);
		vmstate_put_u32(out, in->idx);
		vmstate_put_bool(out, in->pcs);
		vmstate_put_bool(out, in->full);
	}
	for (unsigned s = 1; s <= XHCI_MAX_SLOTS; s++) {
		const struct xhci_slot *sl = &x->slot[s];

		vmstate_put_bool(out, sl->enabled);
		if (!sl->enabled) {
			continue;
		}
		vmstate_put_u8(out, sl->state);
		vmstate_put_u8(out, (uint8_t)sl->port);
		vmstate_put_u64(out, sl->ctx);
		for (unsigned d = 1; d < 32; d++) {
			vmstate_put_u8(out, sl->ep[d].state);
			vmstate_put_u8(out, sl->ep[d].type);
			ring_save(out, &sl->ep[d].ring);
			vmstate_put_bool(out, sl->ep[d].waiting);
		}
	}
	for (unsigned p = 1; p <= XHCI_PORTS; p++) {
		struct usb_device *dev = x->port[p].dev;

		vmstate_put_u32(out, x->port[p].portsc);
		vmstate_put_bool(out, dev != NULL);
		if (dev) {
			vmstate_put_blob(out, dev->model, (uint32_t)strlen(dev->model));
			vmstate_put_blob(out, dev->id, (uint32_t)strlen(dev->id));
			usb_device_save(dev, out);
		}
	}
	pthread_mutex_unlock(&x->lock);
}

/* One pass over the section: check it all (!apply), or restore it (apply). */
static int xhci_load_pass(struct xhci *x, struct vmstate_buf *in, bool apply, struct error **errp)
{
	struct xhci t;
	uint64_t elapsed;

	memset(&t.intr, 0, sizeof(t.intr));
	memset(&t.slot, 0, sizeof(t.slot));
	t.usbcmd = vmstate_get_u32(in);
	t.usbsts = vmstate_get_u32(in);
	t.dnctrl = vmstate_get_u32(in);
	t.config = vmstate_get_u32(in);
	t.dcbaap = vmstate_get_u64(in);
	ring_load(in, &t.cmd);
	t.crr = vmstate_get_bool(in);
	t.intx = vmstate_get_bool(in);
	elapsed = vmstate_get_u64(in);
	if ((t.usbcmd & ~USBCMD_MASK) || t.config > 0x3ff) {
		return error_set(errp, EINVAL, "xhci: bad controller registers");
	}
	for (unsigned i = 0; i < XHCI_MAX_INTRS; i++) {
		struct xhci_intr *n = &t.intr[i];

		n->iman = vmstate_get_u32(in);
		n->imod = vmstate_get_u32(in);
		n->erstsz = vmstate_get_u32(in);
		n->erstba = vmstate_get_u64(in);
		n->erdp = vmstate_get_u64(in);
		n->seg = vmstate_get_u32(in);
		n->seg_base = vmstate_get_u64(in);
		n->seg_size = vmstate_get_u32(in);
		n->idx = vmstate_get_u32(in);
		n->pcs = vmstate_get_bool(in);
		n->full = vmstate_get_bool(in);
		/*
		 * The guest may shrink ERSTSZ under the segment in use (the next
		 * segment then wraps to 0), and a failed segment load left idx
		 * behind before 2026-12-06: both states were saved, so both load.
		 */
		if (!n->seg_size) {
			n->idx = 0;
		}
		if (n->erstsz > ERST_MAX || n->seg >= ERST_MAX || n->seg_size > 4096 ||
		    (n->seg_size && n->seg_size < 16) || (n->seg_size && n->idx >= n->seg_size)) {
			return error_set(errp, EINVAL, "xhci: bad state of interrupter %u", i);
		}
	}
	for (unsigned s = 1; s <= XHCI_MAX_SLOTS && !in->failed; s++) {
		struct xhci_slot *sl = &t.slot[s];

		sl->enabled = vmstate_get_bool(in);
		if (!sl->enabled) {
			continue;
		}
		sl->state = vmstate_get_u8(in);
		sl->port = vmstate_get_u8(in);
		sl->ctx = vmstate_get_u64(in);
		if (sl->state > SLOT_CONFIGURED || sl->port > XHCI_PORTS) {
			return error_set(errp, EINVAL, "xhci: bad state of slot %u", s);
		}
		for (unsigned d = 1; d < 32; d++) {
			sl->ep[d].state = vmstate_get_u8(in);
			sl->ep[d].type = vmstate_get_u8(in);
			ring_load(in, &sl->ep[d].ring);
			sl->ep[d].waiting = vmstate_get_bool(in);
			if (sl->ep[d].state > EP_ERROR || sl->ep[d].type > 7) {
				return error_set(errp, EINVAL,
						 "xhci: bad state of slot %u endpoint %u", s, d);
			}
		}
	}
	for (unsigned p = 1; p <= XHCI_PORTS; p++) {
		struct usb_device *dev = x->port[p].dev;
		uint32_t portsc;

		portsc = vmstate_get_u32(in);
		bool present = vmstate_get_bool(in);
		char model[32] = "", id[65] = "";
		uint32_t n;
		void *b;

		if (present) {
			b = vmstate_get_blob_alloc(in, sizeof(model) - 1, &n);
			if (b) {
				memcpy(model, b, n);
				free(b);
			}
			b = vmstate_get_blob_alloc(in, sizeof(id) - 1, &n);
			if (b) {
				memcpy(id, b, n);
				free(b);
			}
		}
		if (in->failed) {
			break;
		}
		if (present != (dev != NULL) ||
		    (dev && (strcmp(model, dev->model) != 0 || strcmp(id, dev->id) != 0))) {
			return error_set(errp, EINVAL,
					 "xhci: USB port %u had %s%s%s%s; this VM has %s%s%s%s", p,
					 present ? model : "no device", present ? " '" : "",
					 present ? id : "", present ? "'" : "",
					 dev ? dev->model : "no device", dev ? " '" : "",
					 dev ? dev->id : "", dev ? "'" : "");
		}
		if (dev && usb_device_load(dev, in, apply) < 0) {
			return error_set(errp, EINVAL, "xhci: bad state of USB device '%s'",
					 dev->id);
		}
		if (apply) {
			x->port[p].portsc = portsc;
		}
	}
	if (in->failed) {
		return error_set(errp, EINVAL, "xhci: section truncated");
	}
	if (apply) {
		x->usbcmd = t.usbcmd;
		x->usbsts = t.usbsts;
		x->dnctrl = t.dnctrl;
		x->config = t.config;
		x->dcbaap = t.dcbaap;
		x->cmd = t.cmd;
		x->crr = t.crr;
		x->t0_ns = now_ns() - MIN(elapsed, now_ns());
		memcpy(x->intr, t.intr, sizeof(x->intr));
		memcpy(x->slot, t.slot, sizeof(x->slot));
		if (t.intx != x->intx) {
			x->intx = t.intx;
			x->ops->set_intx(x->opaque, t.intx);
		}
		/* endpoints that waited for device data look again */
		__atomic_store_n(&x->wake_pending, ~0u, __ATOMIC_SEQ_CST);
	}
	return 0;
}

int xhci_load(struct xhci *x, struct vmstate_buf *in, struct error **errp)
{
	size_t start = in->pos;
	int r;

	pthread_mutex_lock(&x->lock);
	r = xhci_load_pass(x, in, false, errp);
	if (r == 0) {
		in->pos = start;
		r = xhci_load_pass(x, in, true, errp);
	}
	pthread_mutex_unlock(&x->lock);
	return r;
}
