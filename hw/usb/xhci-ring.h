/*
 * xHCI transfer and command rings as the consumer walks them (xHCI 1.2
 * §4.9): TRBs owned by the consumer cycle state, Link TRBs followed (with
 * Toggle Cycle), a transfer descriptor gathered as one bounded chain. This
 * is the only code that reads TRBs from guest memory; each TRB is copied
 * out once, so the guest cannot change it under the controller.
 *
 * Threads: pure functions over guest memory; the caller serializes use of
 * one ring.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct guest_mem;

struct xhci_trb {
	uint64_t param;
	uint32_t status;
	uint32_t control;
};

/* TRB types (xHCI §6.4.6). */
enum {
	TRB_NORMAL = 1,
	TRB_SETUP = 2,
	TRB_DATA = 3,
	TRB_STATUS = 4,
	TRB_ISOCH = 5,
	TRB_LINK = 6,
	TRB_EVENT_DATA = 7,
	TRB_NOOP = 8,
	TRB_CMD_ENABLE_SLOT = 9,
	TRB_CMD_DISABLE_SLOT = 10,
	TRB_CMD_ADDRESS_DEVICE = 11,
	TRB_CMD_CONFIGURE_EP = 12,
	TRB_CMD_EVALUATE_CTX = 13,
	TRB_CMD_RESET_EP = 14,
	TRB_CMD_STOP_EP = 15,
	TRB_CMD_SET_TR_DEQUEUE = 16,
	TRB_CMD_RESET_DEVICE = 17,
	TRB_CMD_NOOP = 23,
	TRB_EV_TRANSFER = 32,
	TRB_EV_COMMAND = 33,
	TRB_EV_PORT = 34,
	TRB_EV_HOST = 37,
};

#define TRB_C (1u << 0)	  /* cycle */
#define TRB_TC (1u << 1)  /* link: toggle cycle */
#define TRB_ENT (1u << 1) /* evaluate next TRB */
#define TRB_ISP (1u << 2) /* interrupt on short packet */
#define TRB_CH (1u << 4)  /* chain */
#define TRB_IOC (1u << 5) /* interrupt on completion */
#define TRB_IDT (1u << 6) /* immediate data */
#define TRB_BEI (1u << 9) /* block event interrupt */
#define TRB_TYPE(c) (((c) >> 10) & 0x3f)

/* Bounds on what one walk follows (guest input). */
#define XHCI_RING_MAX_LINKS 32 /* Link TRBs followed while gathering one TD or one TRB */
#define XHCI_TD_MAX_TRBS 256   /* TRBs in one transfer descriptor (Links excluded) */

struct xhci_ring {
	uint64_t dequeue; /* guest address of the next TRB (16-byte aligned) */
	bool ccs;	  /* consumer cycle state */
};

/* Point @r at @addr (low 4 bits dropped) with cycle state @ccs. */
void xhci_ring_init(struct xhci_ring *r, uint64_t addr, bool ccs);

/*
 * The next TRB the consumer owns, following Link TRBs (which @r consumes).
 * Returns 1 with *ret_trb and its address (@r then still points at it),
 * 0 if the ring is empty (the TRB's cycle bit is not ours), -EFAULT if a
 * TRB lies outside guest RAM, -ELOOP after XHCI_RING_MAX_LINKS Links in a
 * row.
 */
int xhci_ring_peek(struct guest_mem *mem, struct xhci_ring *r, struct xhci_trb *ret_trb,
		   uint64_t *ret_addr);
/* Step past the TRB xhci_ring_peek returned. */
void xhci_ring_advance(struct xhci_ring *r);

/*
 * Gather the transfer descriptor at the dequeue pointer into @trbs/@addrs
 * (room for @max, at most XHCI_TD_MAX_TRBS): TRBs up to the first without
 * the chain bit, or, for a control transfer (first TRB a Setup Stage), up
 * to its Status Stage. Link TRBs are followed, not returned. @r is not
 * changed; *ret_end is the ring state after the TD. Returns the TRB count,
 * 0 if the TD is not complete yet, -EFAULT / -ELOOP as for peek (-ELOOP
 * also for more than XHCI_RING_MAX_LINKS Links in the TD), -E2BIG if the
 * TD is longer than @max.
 */
int xhci_ring_fetch_td(struct guest_mem *mem, const struct xhci_ring *r, struct xhci_trb *trbs,
		       uint64_t *addrs, unsigned max, struct xhci_ring *ret_end);
