/*
 * The xHCI controller as a PCI function and a device class (see xhci.h):
 * the transport around the model in xhci.c, as QEMU's qemu-xhci.
 *
 * Threads: the controller's register accesses arrive on vCPU threads
 * through the BAR handlers, its wakeups and timer run on the VM's I/O
 * thread, its input on the control thread (see xhci.h for the locks).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/util.h"
#include "common/vmstate.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "hw/usb/usb.h"
#include "hw/usb/xhci.h"
#include "vmmd/block.h"
#include "vmmd/vm.h"

/*
 * One controller per VM, created when the definition has USB devices. Its
 * PCI identity and configuration space follow QEMU's qemu-xhci on the pc
 * machine: 1b36:000d rev 1, class 0c0330, subsystem 1af4:1100, BAR0 a
 * 16 KiB memory BAR (32-bit here), SBRN 0x30 and FLADJ 0x20 at 0x60/0x61,
 * MSI-X with 16 vectors in BAR0, INTx pin A. (QEMU also offers MSI; vmmd's
 * PCI layer has MSI-X only.)
 */
struct xhci_dev {
	struct vm *vm;
	struct pci_device pci;
	bool pci_registered;
	struct xhci *x;
	int efd;
	struct event *ev;
	int tfd; /* timerfd for devices' wake_at times, armed by the I/O thread only */
	struct event *tev;
	uint64_t want;	/* earliest wake_at time asked for, 0 if none (atomic) */
	uint64_t armed; /* what tfd is set to, 0 if idle (I/O thread) */
	struct usb_device *inputs[XHCI_PORTS_USB2]; /* registered with vm_input_register */
	unsigned n_inputs;
	/*
	 * QEMU's free-port order (hw/usb/bus.c keeps a FIFO): a port freed by
	 * device_del goes behind the ones never used; a device_add without
	 * "port" takes the free USB 2.0 port with the smallest number here.
	 */
	uint64_t port_seq[XHCI_PORTS + 1];
	uint64_t seq_next;
	/*
	 * A device was hot-added or removed: the VM no longer matches the
	 * definition it was built from, which is what vm-save and migration
	 * describe it by, so they are refused.
	 */
	bool replugged;
};

static bool xhci_dev_msix_enabled(void *opaque)
{
	struct xhci_dev *d = opaque;

	return pci_msix_enabled(&d->pci);
}

static void xhci_dev_msix_notify(void *opaque, unsigned intr)
{
	struct xhci_dev *d = opaque;

	pci_msix_notify(&d->pci, intr);
}

static void xhci_dev_set_intx(void *opaque, bool level)
{
	struct xhci_dev *d = opaque;

	pci_set_irq(&d->pci, level);
}

static void xhci_dev_wake(void *opaque)
{
	struct xhci_dev *d = opaque;
	uint64_t one = 1;

	if (write(d->efd, &one, sizeof(one)) < 0) {
		/* the counter is already non-zero: a wakeup is pending */
	}
}

static void xhci_dev_arm(struct xhci_dev *d);

static void xhci_dev_event(evutil_socket_t fd, short what, void *opaque)
{
	struct xhci_dev *d = opaque;
	uint64_t cnt;

	(void)what;
	if (read(fd, &cnt, sizeof(cnt)) < 0) {
		/* nothing pending */
	}
	xhci_process_wakeups(d->x);
	xhci_dev_arm(d);
}

/*
 * A device will have data at @ns. Called with the controller lock held on
 * a vCPU or the I/O thread; vCPU threads may not touch timers (seccomp), so
 * the I/O thread arms the timerfd when the eventfd wakes it.
 */
static void xhci_dev_wake_at(void *opaque, uint64_t ns)
{
	struct xhci_dev *d = opaque;
	uint64_t cur = __atomic_load_n(&d->want, __ATOMIC_SEQ_CST);

	while (cur == 0 || ns < cur) {
		if (__atomic_compare_exchange_n(&d->want, &cur, ns, false, __ATOMIC_SEQ_CST,
						__ATOMIC_SEQ_CST)) {
			xhci_dev_wake(d);
			return;
		}
	}
}

/* I/O thread: set the timerfd to the earliest time a device asked for. */
static void xhci_dev_arm(struct xhci_dev *d)
{
	uint64_t ns = __atomic_load_n(&d->want, __ATOMIC_SEQ_CST);
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)(ns / 1000000000ull),
					      .tv_nsec = (long)(ns % 1000000000ull)}};

	if (ns == 0 || ns == d->armed) {
		return;
	}
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
		d->armed = ns;
	}
}

static void xhci_dev_timer(evutil_socket_t fd, short what, void *opaque)
{
	struct xhci_dev *d = opaque;
	uint64_t cnt;

	(void)what;
	if (read(fd, &cnt, sizeof(cnt)) < 0) {
		/* spurious */
	}
	d->armed = 0;
	__atomic_store_n(&d->want, 0, __ATOMIC_SEQ_CST);
	xhci_wake_all(d->x);
	xhci_dev_arm(d);
}

static char *xhci_dev_info(void *opaque)
{
	struct xhci_dev *d = opaque;

	return xhci_info_text(d->x);
}

/* vm_input_send() delivering to one HID device (control thread). */
static void xhci_dev_input(void *opaque, const struct vm_input_event *ev, unsigned n)
{
	static const uint8_t types[] = {[VM_INPUT_KEY] = USB_INPUT_KEY,
					[VM_INPUT_BTN] = USB_INPUT_BTN,
					[VM_INPUT_REL] = USB_INPUT_REL,
					[VM_INPUT_ABS] = USB_INPUT_ABS};
	struct usb_input_event u[VM_INPUT_MAX_EVENTS];

	n = MIN(n, (unsigned)VM_INPUT_MAX_EVENTS);
	for (unsigned i = 0; i < n; i++) {
		u[i].type = types[ev[i].type];
		u[i].code = ev[i].type == VM_INPUT_KEY ? vm_input_qcode_hid(ev[i].code)
						       : (unsigned)ev[i].code;
		u[i].down = ev[i].down;
		u[i].value = ev[i].value;
		u[i].delay_ms = ev[i].delay_ms;
	}
	usb_hid_input(opaque, u, n);
}

static uint64_t xhci_bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct xhci_dev *d = opaque;

	if (off >= XHCI_MSIX_PBA) {
		return pci_msix_mmio_read(&d->pci, PCI_MSIX_PBA_OFF + off - XHCI_MSIX_PBA, size);
	}
	if (off >= XHCI_MSIX_TABLE) {
		return pci_msix_mmio_read(&d->pci, off - XHCI_MSIX_TABLE, size);
	}
	return xhci_mmio_read(d->x, off, size);
}

static void xhci_bar_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct xhci_dev *d = opaque;

	if (off >= XHCI_MSIX_PBA) {
		return; /* read-only */
	}
	if (off >= XHCI_MSIX_TABLE) {
		pci_msix_mmio_write(&d->pci, off - XHCI_MSIX_TABLE, value, size);
		return;
	}
	xhci_mmio_write(d->x, off, value, size);
}

static const struct iobus_ops xhci_bar_ops = {.read = xhci_bar_read, .write = xhci_bar_write};

static const struct xhci_host_ops xhci_dev_ops = {
	.msix_enabled = xhci_dev_msix_enabled,
	.msix_notify = xhci_dev_msix_notify,
	.set_intx = xhci_dev_set_intx,
	.wake = xhci_dev_wake,
	.wake_at = xhci_dev_wake_at,
};

/* True for the disk drivers that put a disk on the USB bus. */
static const char *const xhci_drivers[] = {"usb-storage", NULL};

static bool xhci_disk_driver(const char *driver)
{
	for (const char *const *d = xhci_drivers; driver && *d; d++) {
		if (strcmp(*d, driver) == 0) {
			return true;
		}
	}
	return false;
}

static int xhci_add_storage(struct xhci_dev *d, const struct vm_disk_config *dc,
			    struct error **errp)
{
	struct usb_storage_config sc = {.id = dc->id,
					.readonly = dc->readonly,
					.removable = dc->removable,
					.serial = dc->serial};
	unsigned flags = dc->readonly ? 0 : BLOCK_O_RDWR;
	struct usb_device *dev;
	int r;

	if (!dc->file || dc->node) {
		return error_set(errp, EINVAL,
				 "disk '%s': usb-storage needs \"file\" (node names are not "
				 "supported)",
				 dc->id);
	}
	flags |= vm_disk_block_flags(dc);
	r = vm_disk_open(d->vm, dc, flags, &sc.bs, errp);
	if (r < 0) {
		error_prefix(errp, "disk '%s'", dc->id);
		return r;
	}
	r = usb_storage_new(&sc, &dev, errp);
	if (r < 0) {
		return r;
	}
	r = xhci_attach(d->x, 0, dev);
	if (r < 0) {
		usb_device_free(dev);
		return error_set(errp, -r, "disk '%s': no free USB port (the controller has %d)",
				 dc->id, XHCI_PORTS_USB2);
	}
	return 0;
}

static void xhci_class_unrealize(void *state)
{
	struct xhci_dev *d = state;

	if (!d) {
		return;
	}
	if (d->pci_registered || d->pci.msix) {
		pci_unregister_device(&d->pci);
	}
	for (unsigned i = 0; i < d->n_inputs; i++) {
		vm_input_unregister(d->vm, d->inputs[i]);
	}
	vm_set_usb_info_handler(d->vm, NULL, NULL);
	if (d->ev) {
		event_free(d->ev);
	}
	if (d->tev) {
		event_free(d->tev);
	}
	if (d->tfd >= 0) {
		close(d->tfd);
	}
	if (d->efd >= 0) {
		close(d->efd);
	}
	xhci_free(d->x);
	free(d);
}

static int xhci_add_input(struct xhci_dev *d, const struct vm_input_config *ic, struct error **errp)
{
	bool kbd = strcmp(ic->driver, "usb-kbd") == 0;
	unsigned kinds = kbd ? 1u << VM_INPUT_KEY
			     : 1u << VM_INPUT_BTN | 1u << VM_INPUT_REL | 1u << VM_INPUT_ABS;
	struct usb_device *dev;
	int r;

	r = usb_hid_new(kbd ? USB_HID_KEYBOARD : USB_HID_TABLET, ic->id, &dev, errp);
	if (r < 0) {
		return r;
	}
	r = xhci_attach(d->x, 0, dev);
	if (r < 0) {
		usb_device_free(dev);
		return error_set(errp, -r, "input '%s': no free USB port (the controller has %d)",
				 ic->id, XHCI_PORTS_USB2);
	}
	r = vm_input_register(d->vm, ic->id, kinds, xhci_dev_input, dev);
	if (r < 0) {
		return error_set(errp, -r, "input '%s': too many input devices", ic->id);
	}
	d->inputs[d->n_inputs++] = dev;
	return 0;
}

static bool xhci_wanted(const struct vm_config *cfg)
{
	if (cfg->n_inputs || cfg->usb) {
		return true;
	}
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		if (xhci_disk_driver(cfg->disks[i].driver)) {
			return true;
		}
	}
	return false;
}

static int xhci_class_realize(struct vm *vm, const void *cfg_unused, void **ret_state,
			      struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(vm);
	struct xhci_dev *d;
	int r;

	(void)cfg_unused;
	*ret_state = NULL;
	if (!xhci_wanted(cfg)) {
		return 0;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		return error_set(errp, ENOMEM, "xhci: out of memory");
	}
	d->vm = vm;
	for (unsigned p = 0; p <= XHCI_PORTS; p++) {
		d->port_seq[p] = p;
	}
	d->seq_next = XHCI_PORTS + 1;
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	d->x = xhci_new(vm_guest_mem(vm), &xhci_dev_ops, d);
	if (d->efd < 0 || d->tfd < 0 || !d->x) {
		r = error_set(errp, d->x ? errno : ENOMEM, "xhci: cannot set up");
		goto err;
	}
	d->ev = event_new(vm_io_base(vm), d->efd, EV_READ | EV_PERSIST, xhci_dev_event, d);
	d->tev = event_new(vm_io_base(vm), d->tfd, EV_READ | EV_PERSIST, xhci_dev_timer, d);
	if (!d->ev || event_add(d->ev, NULL) < 0 || !d->tev || event_add(d->tev, NULL) < 0) {
		r = error_set(errp, ENOMEM, "xhci: cannot watch its eventfd");
		goto err;
	}
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		if (xhci_disk_driver(cfg->disks[i].driver)) {
			r = xhci_add_storage(d, &cfg->disks[i], errp);
			if (r < 0) {
				goto err;
			}
		}
	}
	for (unsigned i = 0; i < cfg->n_inputs; i++) {
		r = xhci_add_input(d, &cfg->inputs[i], errp);
		if (r < 0) {
			goto err;
		}
	}
	pci_device_init(&d->pci, "xhci", XHCI_VENDOR_ID, XHCI_DEVICE_ID, 0x0c0330, 1, 0x1af4,
			0x1100);
	d->pci.config[0x60] = 0x30; /* SBRN: USB 3.0 */
	d->pci.config[0x61] = 0x20; /* FLADJ: 60 000 bit times per frame */
	pci_device_set_bar(&d->pci, 0, PCI_BAR_MEM32, XHCI_MMIO_SIZE, &xhci_bar_ops, d);
	r = pci_msix_init_shared(&d->pci, 0, XHCI_MSIX_TABLE, XHCI_MSIX_PBA, XHCI_MAX_INTRS, errp);
	if (r < 0) {
		goto err;
	}
	r = pci_register_device(pci_host_of(vm), &d->pci, -1, errp);
	if (r < 0) {
		goto err;
	}
	d->pci_registered = true;
	vm_set_usb_info_handler(vm, xhci_dev_info, d);
	*ret_state = d;
	return 0;
err:
	xhci_class_unrealize(d);
	return r;
}

/* ---- USB hotplug (hw/hotplug.c; control thread, vCPUs quiesced) ---- */

bool xhci_has_device(void *state, const char *id)
{
	struct xhci_dev *d = state;

	return d && xhci_find(d->x, id) != NULL;
}

/* QEMU's "port": "1".."4" or the same as an integer; 0 if it names no root port. */
static unsigned parse_port(json_t *v, char *text, size_t len)
{
	unsigned long n = 0;
	const char *s;
	char *end;

	if (json_is_integer(v)) {
		snprintf(text, len, "%lld", (long long)json_integer_value(v));
	} else {
		snprintf(text, len, "%s", json_string_value(v) ? json_string_value(v) : "");
	}
	s = text;
	if (*s < '0' || *s > '9') {
		return 0;
	}
	errno = 0;
	n = strtoul(s, &end, 10);
	if (*end || errno || n < 1 || n > XHCI_PORTS_USB2) {
		return 0;
	}
	return (unsigned)n;
}

int xhci_hotplug_claim(void *state, json_t *port_arg, unsigned *ret_port, struct error **errp)
{
	struct xhci_dev *d = state;
	unsigned port = 0;
	char text[32];

	if (port_arg) {
		port = parse_port(port_arg, text, sizeof(text));
		if (port && xhci_find_port_taken(d->x, port)) {
			port = 0;
		}
		if (!port) {
			return error_set(errp, EBUSY,
					 "usb port %s (bus xhci.0) not found (in use?)", text);
		}
	} else {
		for (unsigned p = 1; p <= XHCI_PORTS_USB2; p++) {
			if (!xhci_find_port_taken(d->x, p) &&
			    (!port || d->port_seq[p] < d->port_seq[port])) {
				port = p;
			}
		}
		if (!port) {
			/* QEMU would add a USB hub; vmmd has none */
			return error_set(
				errp, ENOSPC,
				"all %d ports of bus xhci.0 are in use (vmmd has no USB hubs)",
				XHCI_PORTS_USB2);
		}
	}
	*ret_port = port;
	return 0;
}

void xhci_hotplug_release(void *state, unsigned port)
{
	struct xhci_dev *d = state;

	if (port >= 1 && port <= XHCI_PORTS) {
		d->port_seq[port] = d->seq_next++;
	}
}

int xhci_hotplug_add(void *state, const struct usb_hotplug *h, unsigned port, struct error **errp)
{
	struct xhci_dev *d = state;
	bool storage = strcmp(h->driver, "usb-storage") == 0;
	bool kbd = strcmp(h->driver, "usb-kbd") == 0;
	struct block_node *bs = h->bs;
	struct usb_device *dev = NULL;
	int r;

	if (storage) {
		struct usb_storage_config sc = {.id = h->id,
						.bs = bs,
						.readonly = block_is_read_only(bs),
						.removable = h->removable,
						.serial = h->serial};

		r = usb_storage_new(&sc, &dev, errp);
	} else {
		r = usb_hid_new(kbd ? USB_HID_KEYBOARD : USB_HID_TABLET, h->id, &dev, errp);
	}
	if (r < 0) {
		return r;
	}
	if (!storage) {
		unsigned kinds = kbd ? 1u << VM_INPUT_KEY
				     : 1u << VM_INPUT_BTN | 1u << VM_INPUT_REL | 1u << VM_INPUT_ABS;

		if (d->n_inputs >= XHCI_PORTS_USB2 ||
		    vm_input_register(d->vm, h->id, kinds, xhci_dev_input, dev) < 0) {
			usb_device_free(dev);
			return error_set(errp, ENOSPC, "'%s': too many input devices", h->id);
		}
	}
	r = xhci_attach(d->x, port, dev);
	if (r < 0) {
		if (!storage) {
			vm_input_unregister(d->vm, dev);
		}
		usb_device_free(dev);
		return error_set(errp, -r, "usb port %u (bus xhci.0) not found (in use?)", port);
	}
	if (!storage) {
		d->inputs[d->n_inputs++] = dev;
	}
	d->replugged = true;
	return 0;
}

int xhci_hotplug_del(void *state, const char *id, bool *ret_storage)
{
	struct xhci_dev *d = state;
	struct usb_device *dev = d ? xhci_find(d->x, id) : NULL;
	unsigned port;

	if (!dev) {
		return -ENOENT;
	}
	port = dev->port;
	/* No more input for it; then off the bus: transfers for it end (Transaction Error). */
	for (unsigned i = 0; i < d->n_inputs; i++) {
		if (d->inputs[i] == dev) {
			vm_input_unregister(d->vm, dev);
			memmove(&d->inputs[i], &d->inputs[i + 1],
				(d->n_inputs - i - 1) * sizeof(d->inputs[0]));
			d->n_inputs--;
			break;
		}
	}
	dev = xhci_detach(d->x, port);
	if (!dev) {
		return -ENOENT;
	}
	xhci_hotplug_release(d, port);
	d->replugged = true;
	*ret_storage = strcmp(dev->model, "usb-storage") == 0;
	/* Block I/O runs under the controller lock, so none is in flight now: free the backend. */
	usb_device_free(dev);
	return 0;
}

static bool xhci_class_wanted(const struct vm_config *cfg, const void *item)
{
	(void)item;
	return xhci_wanted(cfg);
}

static void xhci_class_reset(void *state)
{
	struct xhci_dev *d = state;

	if (d) {
		pci_device_reset(&d->pci);
		xhci_reset(d->x);
	}
}

static int xhci_class_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct xhci_dev *d = state;

	if (d && d->replugged) {
		return error_set(errp, ENOTSUP,
				 "USB devices were added or removed since the VM started; the "
				 "saved VM would be rebuilt from its start-up definition (not "
				 "supported yet)");
	}
	vmstate_put_bool(out, d != NULL);
	if (!d) {
		return 0;
	}
	pci_device_save(&d->pci, out);
	xhci_save(d->x, out);
	vmstate_put_u64(out, d->seq_next);
	for (unsigned p = 1; p <= XHCI_PORTS; p++) {
		vmstate_put_u64(out, d->port_seq[p]);
	}
	return 0;
}

static int xhci_class_load(void *state, struct vmstate_buf *in, unsigned version,
			   struct error **errp)
{
	struct xhci_dev *d = state;
	uint64_t seq[XHCI_PORTS + 1], next;
	int r;

	if (version != 1) {
		return error_set(errp, EINVAL, "xhci: unknown state version %u", version);
	}
	if (vmstate_get_bool(in) != (d != NULL)) {
		return error_set(errp, EINVAL, "xhci: the saved VM %s a USB controller",
				 d ? "had no" : "had");
	}
	if (!d) {
		return vmstate_check_end(in, "xhci", errp);
	}
	r = pci_device_load(&d->pci, in, errp);
	if (r == 0) {
		r = xhci_load(d->x, in, errp);
	}
	if (r < 0) {
		return r;
	}
	next = vmstate_get_u64(in);
	for (unsigned p = 1; p <= XHCI_PORTS; p++) {
		seq[p] = vmstate_get_u64(in);
	}
	r = vmstate_check_end(in, "xhci", errp);
	if (r < 0) {
		return r;
	}
	d->seq_next = next;
	memcpy(&d->port_seq[1], &seq[1], XHCI_PORTS * sizeof(seq[0]));
	xhci_dev_wake(d); /* the I/O thread retries waiting endpoints */
	return 0;
}

/* Migration's hand-over of the usb-storage images. */
static int xhci_class_set_active(void *state, bool active, struct error **errp)
{
	struct xhci_dev *d = state;
	int r = 0;

	for (unsigned p = 1; d && p <= XHCI_PORTS_USB2 && r == 0; p++) {
		struct block_node *bs = xhci_port_node(d->x, p);

		if (bs) {
			r = block_set_active(bs, active, errp);
		}
	}
	return r;
}

const struct device_class xhci_class = {
	.name = "xhci",
	.each = DEVICE_ONCE_FOR_DISKS,
	.drivers = xhci_drivers,
	.wanted = xhci_class_wanted,
	.realize = xhci_class_realize,
	.unrealize = xhci_class_unrealize,
	.reset = xhci_class_reset,
	.state_version = 1,
	.save = xhci_class_save,
	.load = xhci_class_load,
	.set_active = xhci_class_set_active,
};
