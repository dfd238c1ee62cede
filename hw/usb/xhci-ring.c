/*
 * The TRB ring walker (see xhci-ring.h), after xHCI 1.2 §4.9.2 (transfer
 * rings), §4.9.3 (command ring) and §6.4.4.1 (Link TRB).
 */
#include "config.h"

#include <endian.h>
#include <errno.h>

#include "hw/device.h"
#include "hw/usb/xhci-ring.h"

void xhci_ring_init(struct xhci_ring *r, uint64_t addr, bool ccs)
{
	r->dequeue = addr & ~0xfull;
	r->ccs = ccs;
}

static int read_trb(struct guest_mem *mem, uint64_t addr, struct xhci_trb *t)
{
	uint8_t raw[16];
	uint64_t p;
	uint32_t s, c;

	if (guest_mem_read(mem, addr, raw, sizeof(raw)) < 0) {
		return -EFAULT;
	}
	__builtin_memcpy(&p, raw, 8);
	__builtin_memcpy(&s, raw + 8, 4);
	__builtin_memcpy(&c, raw + 12, 4);
	t->param = le64toh(p);
	t->status = le32toh(s);
	t->control = le32toh(c);
	return 0;
}

int xhci_ring_peek(struct guest_mem *mem, struct xhci_ring *r, struct xhci_trb *ret_trb,
		   uint64_t *ret_addr)
{
	unsigned links = 0;
	struct xhci_trb t;

	for (;;) {
		if (read_trb(mem, r->dequeue, &t) < 0) {
			return -EFAULT;
		}
		if (!!(t.control & TRB_C) != r->ccs) {
			return 0;
		}
		if (TRB_TYPE(t.control) != TRB_LINK) {
			*ret_trb = t;
			*ret_addr = r->dequeue;
			return 1;
		}
		if (++links > XHCI_RING_MAX_LINKS) {
			return -ELOOP;
		}
		r->dequeue = t.param & ~0xfull;
		if (t.control & TRB_TC) {
			r->ccs = !r->ccs;
		}
	}
}

void xhci_ring_advance(struct xhci_ring *r)
{
	r->dequeue += 16;
}

int xhci_ring_fetch_td(struct guest_mem *mem, const struct xhci_ring *r, struct xhci_trb *trbs,
		       uint64_t *addrs, unsigned max, struct xhci_ring *ret_end)
{
	struct xhci_ring w = *r;
	unsigned n = 0, links = 0;
	bool control = false;

	if (max > XHCI_TD_MAX_TRBS) {
		max = XHCI_TD_MAX_TRBS;
	}
	for (;;) {
		struct xhci_trb t;
		unsigned type;

		if (read_trb(mem, w.dequeue, &t) < 0) {
			return -EFAULT;
		}
		if (!!(t.control & TRB_C) != w.ccs) {
			return 0;
		}
		type = TRB_TYPE(t.control);
		if (type == TRB_LINK) {
			if (++links > XHCI_RING_MAX_LINKS) {
				return -ELOOP;
			}
			w.dequeue = t.param & ~0xfull;
			if (t.control & TRB_TC) {
				w.ccs = !w.ccs;
			}
			continue;
		}
		if (n == max) {
			return -E2BIG;
		}
		trbs[n] = t;
		addrs[n] = w.dequeue;
		n++;
		w.dequeue += 16;
		if (n == 1 && type == TRB_SETUP) {
			control = true;
		}
		if (control ? type == TRB_STATUS : !(t.control & TRB_CH)) {
			break;
		}
	}
	*ret_end = w;
	return (int)n;
}
