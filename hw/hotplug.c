/*
 * Hotplug of PCI devices into a running VM through the device table, with
 * QEMU's command shapes, error messages and removal semantics (see the
 * hotplug part of include/vmmd/vm.h): blockdev-add/-del, netdev_add/_del,
 * device_add/_del, block_resize, balloon; the guest learns of changes
 * through QEMU's ACPI PCI hotplug registers (hw/platform/acpi-hotplug.c).
 *
 * Removal: device_del sets the slot's PCID bit and returns; the guest's
 * eject (B0EJ write, on a vCPU thread) or a reset only marks the slot in
 * hp->ejected and pokes the control thread (vm_host.hotplug_pending),
 * which calls vm_hotplug_poll(): with the vCPUs paused it unrealizes the
 * device (virtio-blk first waits for its requests in flight), releases
 * the node or netdev it used, and emits DEVICE_DELETED. Only then is the
 * id free again.
 *
 * USB devices (usb-storage, usb-kbd, usb-tablet on bus "xhci.0") are not in
 * the device table: they live on the xHCI controller, which attaches them
 * at once and detaches them at device_del, as QEMU does (no guest
 * handshake); hp->usb keeps their node and definition.
 *
 * Threads: everything on the control thread under vm_devices_lock() (which
 * also serializes against guest resets on the I/O thread), except
 * hotplug_eject(), which any thread may call.
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/parse.h"
#include "common/util.h"
#include "hw/core/vm-devices.h"
#include "hw/cpu-hotplug.h"
#include "hw/devices.h"
#include "hw/hotplug.h"
#include "hw/pci/pci.h"
#include "hw/platform/acpi-hotplug.h"
#include "vmmd/block.h"

#define HP_MAX_NODES 64
#define HP_MAX_NETDEVS 32
#define HP_ID_MAX 63
#define HP_MAX_USB 8

struct hp_node {
	char *name; /* NULL: free entry */
	struct block_node *bs;
	char *user; /* id of the device using it */
	bool job;   /* a block job's target (vm_blockdev_claim) */
};

struct hp_netdev {
	char *id; /* NULL: free entry */
	char *type;
	char *ifname;
	int fd; /* tap fd taken from getfd, or -1 */
	char **hostfwd;
	char *user;
};

/* A USB device added by device_add (they live on the xHCI, not in the device table). */
struct hp_usb {
	char *id; /* NULL: free entry */
	char *node;
	json_t *definition;
};

struct hotplug {
	struct vm *vm;
	struct acpi_pcihp *pcihp; /* NULL without ACPI: no hotplug */
	atomic_uint ejected;	  /* slots to remove (bit per slot) */
	struct hp_node nodes[HP_MAX_NODES];
	struct hp_netdev netdevs[HP_MAX_NETDEVS];
	struct hp_usb usb[HP_MAX_USB];
	struct cpu_hotplug *cpus; /* hw/cpu-hotplug.c; NULL without vCPU hotplug */
	/* Ejected devices whose drain runs on a worker (vm_host.offload). */
	unsigned held;	     /* ejected slots waiting for the drains (control thread) */
	unsigned drains_out; /* drains started and not yet done (control thread) */
	pthread_mutex_t drain_lock;
	pthread_cond_t drain_cond;
	unsigned n_draining; /* drains still running (under drain_lock) */
};

struct drain_job {
	struct hotplug *hp;
	const struct device_class *cls;
	void *state;
	unsigned slot;
};

/* The device models device_add knows, and their VM definition names. */
struct hp_model {
	const char *driver; /* QEMU's -device name */
	const struct device_class *cls;
	bool disk;
	bool virtio; /* QEMU also deletes a virtio-backend child */
	const char *cfg_driver;
};

static const struct hp_model hp_models[] = {
	{"virtio-blk-pci", &virtio_blk_class, true, true, "virtio-blk"},
	{"virtio-net-pci", &virtio_net_class, false, true, "virtio-net"},
	{"e1000", &e1000_class, false, false, "e1000"},
};

static const struct hp_model *model_by_driver(const char *driver)
{
	for (size_t i = 0; i < ARRAY_SIZE(hp_models); i++) {
		if (strcmp(hp_models[i].driver, driver) == 0) {
			return &hp_models[i];
		}
	}
	return NULL;
}

static const struct hp_model *model_by_class(const struct device_class *cls)
{
	for (size_t i = 0; i < ARRAY_SIZE(hp_models); i++) {
		if (hp_models[i].cls == cls) {
			return &hp_models[i];
		}
	}
	return NULL;
}

static struct vm_device *find_device(struct vm *vm, const char *id)
{
	for (unsigned i = 0; i < vm_devices_count(vm); i++) {
		struct vm_device *d = vm_devices_at(vm, i);

		if (d->id && strcmp(d->id, id) == 0) {
			return d;
		}
	}
	return NULL;
}

/* Any node of that name, reserved (still opening: bs NULL) ones included. */
static struct hp_node *find_node(struct hotplug *hp, const char *name)
{
	for (unsigned i = 0; i < HP_MAX_NODES; i++) {
		if (hp->nodes[i].name && strcmp(hp->nodes[i].name, name) == 0) {
			return &hp->nodes[i];
		}
	}
	return NULL;
}

/* A node that is open and usable. */
static struct hp_node *find_open_node(struct hotplug *hp, const char *name)
{
	struct hp_node *n = find_node(hp, name);

	return n && n->bs ? n : NULL;
}

static struct hp_netdev *find_netdev(struct hotplug *hp, const char *id)
{
	for (unsigned i = 0; i < HP_MAX_NETDEVS; i++) {
		if (hp->netdevs[i].id && strcmp(hp->netdevs[i].id, id) == 0) {
			return &hp->netdevs[i];
		}
	}
	return NULL;
}

static void free_strv(char **v)
{
	for (char **p = v; p && *p; p++) {
		free(*p);
	}
	free(v);
}

/* --- eject: any thread ------------------------------------------------------ */

static void hotplug_eject(void *opaque, unsigned slot)
{
	struct hotplug *hp = opaque;
	struct vm *vm = hp->vm;

	atomic_fetch_or(&hp->ejected, 1u << slot);
	const struct vm_host *host = vm_get_host(vm);

	if (host->hotplug_pending) {
		host->hotplug_pending(host->opaque, vm);
	}
}

/* --- life cycle ------------------------------------------------------------- */

void hotplug_wait_drains(struct hotplug *hp)
{
	if (!hp) {
		return;
	}
	pthread_mutex_lock(&hp->drain_lock);
	while (hp->n_draining) {
		pthread_cond_wait(&hp->drain_cond, &hp->drain_lock);
	}
	pthread_mutex_unlock(&hp->drain_lock);
}

int hotplug_new(struct vm *vm, struct hotplug **ret, struct error **errp)
{
	struct hotplug *hp = calloc(1, sizeof(*hp));
	struct pci_slot_info info;

	if (!hp) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	hp->vm = vm;
	pthread_mutex_init(&hp->drain_lock, NULL);
	pthread_cond_init(&hp->drain_cond, NULL);
	for (unsigned i = 0; i < HP_MAX_NETDEVS; i++) {
		hp->netdevs[i].fd = -1;
	}
	hp->pcihp = vm_device_state(vm, &acpi_pcihp_class);
	if (hp->pcihp) {
		acpi_pcihp_set_eject_handler(hp->pcihp, hotplug_eject, hp);
		/* RMV: a slot whose cold-plugged device has no hot-unplug (IDE, rng) */
		for (unsigned slot = 1; vm_pci_host(vm) && slot < PCI_SLOTS; slot++) {
			struct vm_device *d;

			if (!pci_host_slot_info(vm_pci_host(vm), slot, &info)) {
				continue;
			}
			d = info.name[0] ? find_device(vm, info.name) : NULL;
			acpi_pcihp_set_removable(hp->pcihp, slot, d && model_by_class(d->cls));
		}
	}
	if (cpu_hotplug_new(vm, &hp->cpus, errp) < 0) {
		pthread_mutex_destroy(&hp->drain_lock);
		pthread_cond_destroy(&hp->drain_cond);
		free(hp);
		return -ENOMEM;
	}
	*ret = hp;
	return 0;
}

void hotplug_free(struct hotplug *hp)
{
	if (!hp) {
		return;
	}
	hotplug_wait_drains(hp);
	pthread_mutex_destroy(&hp->drain_lock);
	pthread_cond_destroy(&hp->drain_cond);
	cpu_hotplug_free(hp->cpus);
	for (unsigned i = 0; i < HP_MAX_NODES; i++) {
		block_unref(hp->nodes[i].bs);
		free(hp->nodes[i].name);
		free(hp->nodes[i].user);
	}
	for (unsigned i = 0; i < HP_MAX_NETDEVS; i++) {
		struct hp_netdev *n = &hp->netdevs[i];

		if (n->fd >= 0) {
			close(n->fd);
		}
		free(n->id);
		free(n->type);
		free(n->ifname);
		free_strv(n->hostfwd);
		free(n->user);
	}
	for (unsigned i = 0; i < HP_MAX_USB; i++) {
		free(hp->usb[i].id);
		free(hp->usb[i].node);
		json_decref(hp->usb[i].definition);
	}
	free(hp);
}

void hotplug_device_forget(struct vm_device *d)
{
	free(d->id);
	free(d->node);
	free(d->netdev);
	json_decref(d->definition);
	d->id = d->node = d->netdev = NULL;
	d->definition = NULL;
}

struct block_node *vm_block_node_get(struct vm *vm, const char *node_name, struct error **errp)
{
	struct hp_node *n =
		vm_hotplug_state(vm) ? find_node(vm_hotplug_state(vm), node_name) : NULL;

	if (!n) {
		error_set(errp, ENOENT, "Property 'virtio-blk-device.drive' can't find value '%s'",
			  node_name);
		return NULL;
	}
	return block_ref(n->bs);
}

/* --- blockdev-add / blockdev-del -------------------------------------------- */

/* Whether a node of a disk's chain has that node-name. */
struct chain_name {
	const char *name;
	bool found;
};

static void chain_has(void *opaque, const char *id, struct block_node *bs)
{
	struct chain_name *c = opaque;

	c->found = c->found || block_chain_find(bs, NULL, c->name) != NULL;
}

static bool in_disk_chain(struct vm *vm, const char *name)
{
	struct chain_name c = {.name = name};

	vm_for_each_disk(vm, chain_has, &c);
	return c.found;
}

struct vm_blockdev_op {
	json_t *args; /* our copy of blockdev-add's arguments */
	char *name;
	struct block_node *bs;
	struct error *err;
	int r;
};

static void op_free(struct vm_blockdev_op *op)
{
	json_decref(op->args);
	free(op->name);
	error_free(op->err);
	free(op);
}

int vm_blockdev_add_prepare(struct vm *vm, json_t *args, struct vm_blockdev_op **ret,
			    struct error **errp)
{
	static const char *const drivers[] = {"raw", "qcow2", "file", "nbd"};
	struct hotplug *hp = vm_hotplug_state(vm);
	const char *name = json_string_value(json_object_get(args, "node-name"));
	const char *driver = json_string_value(json_object_get(args, "driver"));
	struct vm_blockdev_op *op;
	struct hp_node *slot = NULL;
	bool known = false;
	int r;

	if (!driver) {
		return error_set(errp, EINVAL, "Parameter 'driver' is missing");
	}
	for (size_t i = 0; i < ARRAY_SIZE(drivers); i++) {
		known |= strcmp(drivers[i], driver) == 0;
	}
	if (!known) {
		return error_set(errp, EINVAL, "Parameter 'driver' does not accept value '%s'",
				 driver);
	}
	if (!name) {
		return error_set(errp, EINVAL, "A block device must be given a name (node-name)");
	}
	if (!parse_id_ok(name, HP_ID_MAX)) {
		return error_set(errp, EINVAL, "Invalid node-name: '%s'", name);
	}
	op = calloc(1, sizeof(*op));
	if (!op || !(op->args = json_deep_copy(args)) || !(op->name = strdup(name))) {
		if (op) {
			op_free(op);
		}
		return error_set(errp, ENOMEM, "out of memory");
	}
	vm_devices_lock(vm);
	if (find_node(hp, name) || in_disk_chain(vm, name)) {
		r = error_set(errp, EEXIST, "Duplicate nodes with node-name='%s'", name);
		goto out;
	}
	for (unsigned i = 0; i < HP_MAX_NODES && !slot; i++) {
		slot = hp->nodes[i].name ? NULL : &hp->nodes[i];
	}
	if (!slot) {
		r = error_set(errp, ENOSPC, "VM '%s' already has %u block nodes", vm_name(vm),
			      HP_MAX_NODES);
		goto out;
	}
	/* reserved: the name is taken, the node is not usable until it is open */
	slot->name = strdup(name);
	r = slot->name ? 0 : error_set(errp, ENOMEM, "out of memory");
out:
	vm_devices_unlock(vm);
	if (r < 0) {
		op_free(op);
		return r;
	}
	*ret = op;
	return 0;
}

void vm_blockdev_add_open(struct vm_blockdev_op *op)
{
	op->r = block_open_json(&op->bs, op->args, &op->err);
}

int vm_blockdev_add_finish(struct vm *vm, struct vm_blockdev_op *op, struct error **errp)
{
	struct hp_node *n;
	int r = op->r;

	if (r == 0 && !op->bs) {
		r = -ECANCELED; /* never opened: the caller gives the reservation back */
	}
	vm_devices_lock(vm);
	n = find_node(vm_hotplug_state(vm), op->name);
	if (n && !n->bs && r == 0) {
		n->bs = TAKE_PTR(op->bs);
	} else if (n && !n->bs) {
		free(n->name);
		memset(n, 0, sizeof(*n));
	}
	vm_devices_unlock(vm);
	if (r < 0) {
		if (errp) {
			*errp = TAKE_PTR(op->err);
		}
	}
	vm_blockdev_add_abandon(op);
	return r;
}

void vm_blockdev_add_abandon(struct vm_blockdev_op *op)
{
	block_unref(op->bs);
	op_free(op);
}

/* A free blockdev-add node (a new reference in *ret), claimed for a job if @claim. */
static int take_node(struct vm *vm, const char *name, bool claim, struct block_node **ret)
{
	struct hp_node *n;
	int r = 0;

	vm_devices_lock(vm);
	n = find_open_node(vm_hotplug_state(vm), name);
	if (!n) {
		r = in_disk_chain(vm, name) ? -EBUSY : -ENOENT;
	} else if (n->user || n->job) {
		r = -EBUSY;
	} else {
		n->job = claim;
		*ret = block_ref(n->bs);
	}
	vm_devices_unlock(vm);
	return r;
}

int vm_blockdev_overlay(struct vm *vm, const char *name, struct block_node **ret)
{
	return take_node(vm, name, false, ret);
}

int vm_blockdev_claim(struct vm *vm, const char *name, struct block_node **ret)
{
	return take_node(vm, name, true, ret);
}

struct block_node *vm_blockdev_unclaim(struct vm *vm, const char *name, bool drop)
{
	struct block_node *bs = NULL;
	struct hp_node *n;

	vm_devices_lock(vm);
	n = find_open_node(vm_hotplug_state(vm), name);
	if (n && n->job) {
		n->job = false;
		if (drop) {
			bs = n->bs;
			free(n->name);
			memset(n, 0, sizeof(*n));
		}
	}
	vm_devices_unlock(vm);
	return bs;
}

void vm_blockdev_forget(struct vm *vm, const char *name)
{
	struct hp_node *n;

	vm_devices_lock(vm);
	n = find_open_node(vm_hotplug_state(vm), name);
	if (n && !n->user && !n->job) {
		block_unref(n->bs);
		free(n->name);
		memset(n, 0, sizeof(*n));
	}
	vm_devices_unlock(vm);
}

int vm_blockdev_del(struct vm *vm, const char *node_name, struct block_node **ret,
		    struct error **errp)
{
	struct hp_node *n;
	int r = 0;

	vm_devices_lock(vm);
	n = find_open_node(vm_hotplug_state(vm), node_name);
	if (!n && in_disk_chain(vm, node_name)) {
		/* a blockdev-snapshot overlay, now part of a disk */
		r = error_set(errp, EBUSY, "Node %s is in use", node_name);
	} else if (!n) {
		r = error_set(errp, ENOENT, "Failed to find node with node-name='%s'", node_name);
	} else if (n->user || n->job) {
		r = error_set(errp, EBUSY, "Node %s is in use", node_name);
	} else {
		*ret = n->bs; /* the caller closes it, off the control thread */
		free(n->name);
		memset(n, 0, sizeof(*n));
	}
	vm_devices_unlock(vm);
	return r;
}

int hotplug_node_claim(struct vm *vm, const char *name, const char *user, struct block_node **ret,
		       struct error **errp)
{
	struct hp_node *n = find_open_node(vm_hotplug_state(vm), name);
	char *u;

	if (!n && !in_disk_chain(vm, name)) {
		return error_set(errp, ENOENT, "Node '%s' not found", name);
	}
	if (!n || n->user || n->job) {
		return error_set(errp, EBUSY, "Node '%s' is already in use", name);
	}
	u = strdup(user);
	if (!u) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	n->user = u;
	*ret = block_ref(n->bs);
	return 0;
}

void hotplug_node_release(struct vm *vm, struct block_node *bs)
{
	struct hotplug *hp = vm_hotplug_state(vm);

	for (unsigned i = 0; hp && bs && i < HP_MAX_NODES; i++) {
		if (hp->nodes[i].user && hp->nodes[i].bs == bs) {
			free(hp->nodes[i].user);
			hp->nodes[i].user = NULL;
		}
	}
}

/* --- netdev_add / netdev_del ------------------------------------------------ */

int vm_netdev_add(struct vm *vm, json_t *args, int fd, struct error **errp)
{
	struct hotplug *hp = vm_hotplug_state(vm);
	const char *type = json_string_value(json_object_get(args, "type"));
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *ifname = json_string_value(json_object_get(args, "ifname"));
	json_t *fwd = json_object_get(args, "hostfwd");
	struct hp_netdev *n = NULL;
	const char *key;
	json_t *v;
	int r = 0;

	if (!type || (strcmp(type, "user") != 0 && strcmp(type, "tap") != 0)) {
		r = error_set(errp, EINVAL, "Parameter 'type' does not accept value '%s'",
			      type ? type : "");
		goto err_fd;
	}
	if (!id || !parse_id_ok(id, HP_ID_MAX)) {
		r = error_set(errp, EINVAL, "Parameter 'id' expects an identifier");
		goto err_fd;
	}
	json_object_foreach (args, key, v) {
		bool script = !strcmp(key, "script") || !strcmp(key, "downscript");
		bool ok = !strcmp(key, "type") || !strcmp(key, "id") ||
			  (!strcmp(type, "tap") &&
			   (!strcmp(key, "ifname") || !strcmp(key, "fd") || script)) ||
			  (!strcmp(type, "user") && !strcmp(key, "hostfwd"));

		if (!ok) {
			r = error_set(errp, EINVAL, "Parameter '%s' is unexpected", key);
			goto err_fd;
		}
		if (script && strcmp(json_string_value(v) ? json_string_value(v) : "", "no") != 0) {
			r = error_set(errp, ENOTSUP, "vmmd runs no scripts: '%s' must be \"no\"",
				      key);
			goto err_fd;
		}
	}
	if (!strcmp(type, "tap") && !ifname && fd < 0) {
		r = error_set(errp, EINVAL, "tap netdev '%s' needs 'ifname' or 'fd'", id);
		goto err_fd;
	}
	if (fwd && (!json_is_array(fwd) || json_array_size(fwd) > 32)) {
		r = error_set(errp, EINVAL, "Parameter 'hostfwd' expects a list of at most 32");
		goto err_fd;
	}
	vm_devices_lock(vm);
	if (find_netdev(hp, id)) {
		r = error_set(errp, EEXIST, "Duplicate ID '%s'", id);
		goto out;
	}
	for (unsigned i = 0; i < HP_MAX_NETDEVS && !n; i++) {
		n = hp->netdevs[i].id ? NULL : &hp->netdevs[i];
	}
	if (!n) {
		r = error_set(errp, ENOSPC, "VM '%s' already has %u netdevs", vm_name(vm),
			      HP_MAX_NETDEVS);
		goto out;
	}
	n->id = strdup(id);
	n->type = strdup(type);
	n->ifname = ifname ? strdup(ifname) : NULL;
	if (fwd) {
		size_t i;

		n->hostfwd = calloc(json_array_size(fwd) + 1, sizeof(char *));
		json_array_foreach (fwd, i, v) {
			/* QEMU's shape: [{"str": "tcp::2222-:22"}]; a plain string is fine too */
			const char *s = json_is_object(v)
						? json_string_value(json_object_get(v, "str"))
						: json_string_value(v);

			if (!s) {
				r = error_set(errp, EINVAL, "Parameter 'hostfwd' expects strings");
				break;
			}
			if (n->hostfwd && !(n->hostfwd[i] = strdup(s))) {
				r = error_set(errp, ENOMEM, "out of memory");
				break;
			}
		}
	}
	if (r == 0 && (!n->id || !n->type || (ifname && !n->ifname) || (fwd && !n->hostfwd))) {
		r = error_set(errp, ENOMEM, "out of memory");
	}
	if (r < 0) {
		free(n->id);
		free(n->type);
		free(n->ifname);
		free_strv(n->hostfwd);
		memset(n, 0, sizeof(*n));
		n->fd = -1;
		goto out;
	}
	n->fd = fd;
	fd = -1;
out:
	vm_devices_unlock(vm);
err_fd:
	if (fd >= 0) {
		close(fd);
	}
	return r;
}

int vm_netdev_del(struct vm *vm, const char *id, struct error **errp)
{
	struct hp_netdev *n;
	int r = 0;

	vm_devices_lock(vm);
	n = find_netdev(vm_hotplug_state(vm), id);
	if (!n) {
		r = error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				    "Device '%s' not found", id);
	} else if (n->user) {
		/* QEMU would unplug the backend under the NIC; vmmd keeps them paired. */
		r = error_set(errp, EBUSY, "Netdev '%s' is in use by device '%s'", id, n->user);
	} else {
		if (n->fd >= 0) {
			close(n->fd);
		}
		free(n->id);
		free(n->type);
		free(n->ifname);
		free_strv(n->hostfwd);
		memset(n, 0, sizeof(*n));
		n->fd = -1;
	}
	vm_devices_unlock(vm);
	return r;
}

/* --- USB devices (device_add usb-storage,bus=xhci.0,...) -------------------- */

static bool usb_driver(const char *driver)
{
	return !strcmp(driver, "usb-storage") || !strcmp(driver, "usb-kbd") ||
	       !strcmp(driver, "usb-tablet");
}

static struct hp_usb *find_usb(struct hotplug *hp, const char *id)
{
	for (unsigned i = 0; i < HP_MAX_USB; i++) {
		if (hp->usb[i].id && strcmp(hp->usb[i].id, id) == 0) {
			return &hp->usb[i];
		}
	}
	return NULL;
}

/* Whether @id names a device of the VM: in the device table or on the USB bus. */
static bool id_taken(struct vm *vm, const char *id)
{
	struct hotplug *hp = vm_hotplug_state(vm);

	return find_device(vm, id) || xhci_has_device(vm_device_state(vm, &xhci_class), id) ||
	       (hp && cpu_hotplug_has_id(hp->cpus, id));
}

/* What a disk entry says of @bs's cache mode and engine, so a restart keeps them. */
static void disk_io_keys(json_t *j, struct block_node *bs)
{
	if (j && block_is_direct(bs)) {
		json_object_set_new(j, "cache", json_string("none"));
	}
	if (j && block_aio_engine(bs)) {
		json_object_set_new(j, "aio", json_string(block_aio_engine(bs)));
	}
}

static json_t *usb_definition(const char *id, const char *driver, struct block_node *bs,
			      bool removable, const char *serial)
{
	json_t *j;

	if (!bs) {
		return json_pack("{s:s, s:s}", "id", id, "driver", driver);
	}
	j = json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", id, "driver", driver, "file",
		      block_filename(bs), "format", block_format(bs), "readonly",
		      block_is_read_only(bs));
	disk_io_keys(j, bs);
	if (j && removable) {
		json_object_set_new(j, "removable", json_true());
	}
	if (j && serial) {
		json_object_set_new(j, "serial", json_string(serial));
	}
	return j;
}

/*
 * device_add of a USB device: QEMU's shapes and messages (recorded in
 * tests/functional/hotplug/qemu-7.2-usb.json). The device is attached at
 * once and the guest sees the connect as a Port Status Change event.
 */
static int usb_device_add(struct vm *vm, json_t *args, const char *driver, struct error **errp)
{
	struct hotplug *hp = vm_hotplug_state(vm);
	bool storage = strcmp(driver, "usb-storage") == 0;
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *bus = json_string_value(json_object_get(args, "bus"));
	const char *drive = json_string_value(json_object_get(args, "drive"));
	const char *serial = json_string_value(json_object_get(args, "serial"));
	json_t *removable = json_object_get(args, "removable");
	struct usb_hotplug h = {.driver = driver, .id = id};
	struct hp_node *node = NULL;
	struct hp_usb *u = NULL;
	void *xhci;
	const char *key;
	json_t *v;
	unsigned port = 0;
	bool resume;
	int r;

	json_object_foreach (args, key, v) {
		bool ok = !strcmp(key, "driver") || !strcmp(key, "id") || !strcmp(key, "bus") ||
			  !strcmp(key, "port") ||
			  (storage && (!strcmp(key, "drive") || !strcmp(key, "serial") ||
				       !strcmp(key, "removable")));

		if (!ok) {
			return error_set(errp, EINVAL, "Property '%s.%s' not found", driver, key);
		}
		if (!strcmp(key, "removable") ? !json_is_boolean(v)
		    : !strcmp(key, "port")    ? !json_is_string(v) && !json_is_integer(v)
					      : !json_is_string(v)) {
			return error_set(errp, EINVAL, "Parameter '%s' expects %s", key,
					 !strcmp(key, "removable") ? "a boolean" : "a string");
		}
	}
	if (!id) {
		return error_set(errp, EINVAL, "Parameter 'id' is missing (vmmd needs it)");
	}
	if (!parse_id_ok(id, HP_ID_MAX)) {
		return error_set(errp, EINVAL, "Parameter 'id' expects an identifier");
	}
	if (serial && strlen(serial) > 20) {
		return error_set(errp, EINVAL, "serial '%s' is longer than 20 bytes", serial);
	}
	h.removable = json_is_true(removable);
	h.serial = serial;

	vm_devices_lock(vm);
	xhci = vm_device_state(vm, &xhci_class);
	if (id_taken(vm, id)) {
		r = error_set(errp, EEXIST, "Duplicate device ID '%s'", id);
		goto out;
	}
	if (bus && (!xhci || strcmp(bus, "xhci.0") != 0)) {
		if (!strcmp(bus, "pci.0") && vm_pci_host(vm)) {
			r = error_set(errp, EINVAL, "Device '%s' can't go on PCI bus", driver);
		} else {
			r = error_set(errp, ENOENT, "Bus '%s' not found", bus);
		}
		goto out;
	}
	if (!xhci) {
		r = error_set(errp, ENOENT, "No 'usb-bus' bus found for device '%s'", driver);
		goto out;
	}
	if (storage && drive) {
		node = find_open_node(hp, drive);
		if (!node) {
			r = error_set(errp, ENOENT, "Property '%s.drive' can't find value '%s'",
				      driver, drive);
			goto out;
		}
	}
	for (unsigned i = 0; i < HP_MAX_USB && !u; i++) {
		u = hp->usb[i].id ? NULL : &hp->usb[i];
	}
	if (!u) {
		r = error_set(errp, ENOSPC, "VM '%s' has no room for more USB devices",
			      vm_name(vm));
		goto out;
	}
	r = xhci_hotplug_claim(xhci, json_object_get(args, "port"), &port, errp);
	if (r < 0) {
		goto out;
	}
	/* QEMU finds these in the device's realize, with the port claimed */
	if (storage && !drive) {
		r = error_set(errp, EINVAL, "drive property not set");
		xhci_hotplug_release(xhci, port);
		goto out;
	}
	if (node && node->user) {
		r = error_set(errp, EBUSY,
			      "Node '%s' is in use by device '%s' (a node has one disk)", drive,
			      node->user);
		xhci_hotplug_release(xhci, port);
		goto out;
	}
	if (node && node->job) {
		r = error_set(errp, EBUSY, "Node '%s' is the target of a block job", drive);
		xhci_hotplug_release(xhci, port);
		goto out;
	}
	u->id = strdup(id);
	u->node = node ? strdup(node->name) : NULL;
	u->definition = usb_definition(id, driver, node ? node->bs : NULL, h.removable, serial);
	if (!u->id || (node && (!u->node || !(node->user = strdup(id))))) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto undo;
	}
	h.bs = node ? block_ref(node->bs) : NULL;
	resume = vm_quiesce(vm);
	r = xhci_hotplug_add(xhci, &h, port, errp);
	vm_unquiesce(vm, resume);
	if (r < 0) {
		goto undo;
	}
	log_full(LOG_INFO, vm_name(vm), id, "hot-added %s on USB port %u", driver, port);
	goto out;
undo:
	if (node) {
		free(node->user);
		node->user = NULL;
	}
	free(u->id);
	free(u->node);
	json_decref(u->definition);
	memset(u, 0, sizeof(*u));
out:
	vm_devices_unlock(vm);
	return r;
}

/*
 * device_del of a USB device (hot- or cold-plugged): as in QEMU, it is gone
 * at once; DEVICE_DELETED follows (for usb-storage first its SCSI disk's,
 * as QEMU's legacy child). Returns -ENOENT if @id is no USB device.
 */
static int usb_device_del(struct vm *vm, const char *id, bool *ret_storage)
{
	struct hotplug *hp = vm_hotplug_state(vm);
	void *xhci = vm_device_state(vm, &xhci_class);
	struct hp_usb *u;
	bool resume;
	int r;

	if (!xhci_has_device(xhci, id)) {
		return -ENOENT;
	}
	resume = vm_quiesce(vm);
	r = xhci_hotplug_del(xhci, id, ret_storage);
	vm_unquiesce(vm, resume);
	if (r < 0) {
		return r;
	}
	/* The backend is closed: the node may go now (blockdev-del). */
	u = find_usb(hp, id);
	if (u) {
		struct hp_node *node = u->node ? find_node(hp, u->node) : NULL;

		if (node) {
			free(node->user);
			node->user = NULL;
		}
		free(u->id);
		free(u->node);
		json_decref(u->definition);
		memset(u, 0, sizeof(*u));
	}
	log_full(LOG_INFO, vm_name(vm), id, "removed from the USB bus");
	return 0;
}

/* DEVICE_DELETED for a USB device, as QEMU: its SCSI disk's first for usb-storage. */
static void usb_deleted_events(struct vm *vm, const char *id, bool storage)
{
	char path[128], child[200];

	snprintf(path, sizeof(path), "/machine/peripheral/%s", id);
	if (storage) {
		snprintf(child, sizeof(child), "%s/%s.0/legacy[0]", path, id);
		vm_emit_event(vm, "DEVICE_DELETED", json_pack("{s:s}", "path", child));
	}
	vm_emit_event(vm, "DEVICE_DELETED", json_pack("{s:s, s:s}", "device", id, "path", path));
}

/* --- device_add ------------------------------------------------------------- */

/* QEMU's PCI "addr": "slot[.fn]" in hex (a string) or a devfn (an integer). */
static int parse_addr(json_t *v, const char *driver, int *ret_slot, struct error **errp)
{
	unsigned long slot, fn = 0;
	char *end;

	if (json_is_integer(v)) {
		json_int_t devfn = json_integer_value(v);

		if (devfn < 0 || devfn > 255) {
			goto bad;
		}
		slot = (unsigned long)devfn >> 3;
		fn = (unsigned long)devfn & 7;
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);

		errno = 0;
		slot = strtoul(s, &end, 16);
		if (end == s || errno) {
			goto bad;
		}
		if (*end == '.') {
			const char *f = end + 1;

			fn = strtoul(f, &end, 16);
			if (end == f) {
				goto bad;
			}
		}
		if (*end) {
			goto bad;
		}
	} else {
		goto bad;
	}
	if (slot >= PCI_SLOTS || fn > 7) {
		goto bad;
	}
	if (fn != 0) {
		return error_set(errp, EINVAL, "%s: only function 0 of a slot takes a device",
				 driver);
	}
	*ret_slot = (int)slot;
	return 0;
bad:
	return error_set(errp, EINVAL, "Property '%s.addr' doesn't take value '%s'", driver,
			 json_is_string(v) ? json_string_value(v) : "(not a string)");
}

static json_t *disk_definition(const char *id, struct block_node *bs, const char *serial)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", id, "driver", "virtio-blk", "file",
			      block_filename(bs), "format", block_format(bs), "readonly",
			      block_is_read_only(bs));

	disk_io_keys(j, bs);
	if (j && serial) {
		json_object_set_new(j, "serial", json_string(serial));
	}
	return j;
}

static json_t *nic_definition(const char *id, const char *driver, const struct hp_netdev *n,
			      const char *mac)
{
	json_t *j;

	if (n->fd >= 0) {
		return NULL; /* an fd passed at run time cannot be described for the next start */
	}
	j = json_pack("{s:s, s:s, s:s}", "id", id, "driver", driver, "backend", n->type);
	if (j && n->ifname) {
		json_object_set_new(j, "ifname", json_string(n->ifname));
	}
	if (j && mac) {
		json_object_set_new(j, "mac", json_string(mac));
	}
	if (j && n->hostfwd && n->hostfwd[0]) {
		json_t *a = json_array();

		for (char **p = n->hostfwd; *p; p++) {
			json_array_append_new(a, json_string(*p));
		}
		json_object_set_new(j, "hostfwd", a);
	}
	return j;
}

/* "in use by virtio-blk-pci,id=vdb", as QEMU names a slot's occupant. */
static void occupant(struct vm *vm, unsigned slot, char *buf, size_t len)
{
	struct pci_slot_info info;
	struct vm_device *d;
	const struct hp_model *m;

	if (slot == 0) {
		snprintf(buf, len, "i440FX");
		return;
	}
	if (!pci_host_slot_info(vm_pci_host(vm), slot, &info)) {
		snprintf(buf, len, "?");
		return;
	}
	d = info.name[0] ? find_device(vm, info.name) : NULL;
	m = d ? model_by_class(d->cls) : NULL;
	if (m) {
		snprintf(buf, len, "%s,id=%s", m->driver, d->id);
	} else {
		snprintf(buf, len, "%s", info.name[0] ? info.name : "?");
	}
}

int vm_device_add(struct vm *vm, json_t *args, struct error **errp)
{
	struct hotplug *hp = vm_hotplug_state(vm);
	const char *driver = json_string_value(json_object_get(args, "driver"));
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *bus = json_string_value(json_object_get(args, "bus"));
	const char *drive = json_string_value(json_object_get(args, "drive"));
	const char *netdev = json_string_value(json_object_get(args, "netdev"));
	const char *serial = json_string_value(json_object_get(args, "serial"));
	const char *mac = json_string_value(json_object_get(args, "mac"));
	json_t *addr = json_object_get(args, "addr");
	const struct hp_model *m;
	struct vm_disk_config dc = {0};
	struct vm_nic_config nc = {0};
	struct hp_node *node = NULL;
	struct hp_netdev *nd = NULL;
	struct vm_device *d;
	json_t *def = NULL;
	char *user = NULL;
	const char *key;
	json_t *v;
	int slot = -1, r;
	bool resume;

	if (!driver) {
		return error_set(errp, EINVAL, "Parameter 'driver' is missing");
	}
	if (usb_driver(driver)) {
		return usb_device_add(vm, args, driver, errp);
	}
	if (cpu_hotplug_is_cpu_driver(driver)) {
		cpu_hotplug_poll(vm, hp->cpus); /* ejected vCPUs are gone first */
		vm_devices_lock(vm);
		if (id && id_taken(vm, id)) {
			r = error_set(errp, EEXIST, "Duplicate device ID '%s'", id);
		} else {
			r = cpu_hotplug_add(vm, hp->cpus, args, errp);
		}
		vm_devices_unlock(vm);
		return r;
	}
	m = model_by_driver(driver);
	if (!m) {
		if (!strcmp(driver, "ide-hd") || !strcmp(driver, "ide-cd")) {
			return error_set(errp, ENOTSUP, "Bus 'ide.0' does not support hotplugging");
		}
		return error_set(errp, EINVAL, "'%s' is not a valid device model name", driver);
	}
	json_object_foreach (args, key, v) {
		bool ok = !strcmp(key, "driver") || !strcmp(key, "id") || !strcmp(key, "bus") ||
			  !strcmp(key, "addr") ||
			  (m->disk && (!strcmp(key, "drive") || !strcmp(key, "serial"))) ||
			  (!m->disk && (!strcmp(key, "netdev") || !strcmp(key, "mac")));

		if (!ok) {
			return error_set(errp, EINVAL, "Property '%s.%s' not found", driver, key);
		}
		if (strcmp(key, "addr") != 0 && !json_is_string(v)) {
			return error_set(errp, EINVAL, "Parameter '%s' expects a string", key);
		}
	}
	if (!id) {
		/* QEMU allows no id; without one device_del could never name it. */
		return error_set(errp, EINVAL, "Parameter 'id' is missing (vmmd needs it)");
	}
	if (!parse_id_ok(id, HP_ID_MAX)) {
		return error_set(errp, EINVAL, "Parameter 'id' expects an identifier");
	}
	if (bus && strcmp(bus, "pci.0") != 0) {
		return error_set(errp, ENOENT, "Bus '%s' not found", bus);
	}
	if (addr && (r = parse_addr(addr, driver, &slot, errp)) < 0) {
		return r;
	}
	if (m->disk && !drive) {
		return error_set(errp, EINVAL, "drive property not set");
	}
	if (!m->disk && !netdev) {
		return error_set(errp, EINVAL, "netdev property not set (vmmd needs a backend)");
	}
	if (serial && strlen(serial) > 20) {
		return error_set(errp, EINVAL, "serial '%s' is longer than 20 bytes", serial);
	}
	if (!hp->pcihp || !vm_pci_host(vm)) {
		return error_set(errp, ENOTSUP, "Bus 'pci.0' does not support hotplugging");
	}

	vm_devices_lock(vm);
	if (id_taken(vm, id)) {
		r = error_set(errp, EEXIST, "Duplicate device ID '%s'", id);
		goto out;
	}
	if (slot >= 0) {
		struct pci_slot_info info;

		if (slot == 0 || pci_host_slot_info(vm_pci_host(vm), (unsigned)slot, &info)) {
			char who[128];

			occupant(vm, (unsigned)slot, who, sizeof(who));
			r = error_set(errp, EBUSY,
				      "PCI: slot %d function 0 not available for %s, in use by %s",
				      slot, driver, who);
			goto out;
		}
	}
	if (m->disk) {
		node = find_open_node(hp, drive);
		if (!node) {
			r = error_set(errp, ENOENT,
				      "Property 'virtio-blk-device.drive' can't find value '%s'",
				      drive);
			goto out;
		}
		if (node->user) {
			r = error_set(errp, EBUSY,
				      "Node '%s' is in use by device '%s' (a node has one disk)",
				      drive, node->user);
			goto out;
		}
		if (node->job) {
			r = error_set(errp, EBUSY, "Node '%s' is the target of a block job", drive);
			goto out;
		}
		dc.id = (char *)id;
		dc.driver = (char *)m->cfg_driver;
		dc.node = (char *)drive;
		dc.readonly = block_is_read_only(node->bs);
		dc.serial = (char *)serial;
		def = disk_definition(id, node->bs, serial);
	} else {
		nd = find_netdev(hp, netdev);
		if (!nd) {
			r = error_set(errp, ENOENT, "Property '%s.netdev' can't find value '%s'",
				      driver, netdev);
			goto out;
		}
		if (nd->user) {
			r = error_set(errp, EBUSY,
				      "Property '%s.netdev' can't take value '%s', it's in use",
				      driver, netdev);
			goto out;
		}
		nc.id = (char *)id;
		nc.driver = (char *)m->cfg_driver;
		nc.backend = nd->type;
		nc.ifname = nd->ifname;
		nc.tap_fd = nd->fd >= 0 ? nd->fd : 0;
		nc.mac = (char *)mac;
		nc.hostfwd = nd->hostfwd;
		def = nic_definition(id, m->cfg_driver, nd, mac);
	}

	d = vm_devices_reserve(vm);
	if (!d) {
		r = error_set(errp, ENOSPC, "VM '%s' has no room for more devices", vm_name(vm));
		goto out;
	}
	d->cls = m->cls;
	d->hotplugged = true;
	d->definition = def;
	def = NULL;
	d->id = strdup(id);
	d->node = node ? strdup(node->name) : NULL;
	d->netdev = nd ? strdup(nd->id) : NULL;
	/* the node's or netdev's mark of its user: a lost one would free it for a second device */
	user = strdup(id);
	if (!d->id || (node && !d->node) || (nd && !d->netdev) || !user) {
		hotplug_device_forget(d);
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}
	/* Models may keep pointers to the id (e1000's PCI name): give them ours. */
	dc.id = nc.id = d->id;
	resume = vm_quiesce(vm);
	pci_host_set_next_slot(vm_pci_host(vm), slot);
	r = m->cls->realize(vm, m->disk ? (const void *)&dc : (const void *)&nc, &d->state, errp);
	pci_host_set_next_slot(vm_pci_host(vm), -1);
	if (r < 0) {
		vm_unquiesce(vm, resume);
		hotplug_device_forget(d);
		goto out;
	}
	vm_devices_commit(vm);
	if (node) {
		node->user = user;
	} else {
		nd->user = user;
	}
	user = NULL;
	slot = pci_host_find_slot(vm_pci_host(vm), id);
	vm_unquiesce(vm, resume);
	if (slot > 0) {
		acpi_pcihp_set_removable(hp->pcihp, (unsigned)slot, true);
		acpi_pcihp_plug(hp->pcihp, (unsigned)slot);
	}
	log_full(LOG_INFO, vm_name(vm), id, "hot-added %s in slot %d", driver, slot);
	r = 0;
out:
	vm_devices_unlock(vm);
	json_decref(def);
	free(user);
	return r;
}

int vm_set_link(struct vm *vm, const char *name, bool up, struct error **errp)
{
	struct vm_device *d = NULL;
	int r;

	vm_devices_lock(vm);
	for (unsigned i = 0; i < vm_devices_count(vm) && !d; i++) {
		struct vm_device *c = vm_devices_at(vm, i);

		if (c->cls->set_link && ((c->id && strcmp(c->id, name) == 0) ||
					 (c->netdev && strcmp(c->netdev, name) == 0))) {
			d = c;
		}
	}
	r = d ? d->cls->set_link(d->state, up)
	      : error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT, "Device '%s' not found",
				name);
	vm_devices_unlock(vm);
	return r;
}

int vm_set_io_throttle(struct vm *vm, const char *id, const struct block_throttle_limits *l,
		       struct error **errp)
{
	int r = -ENOENT;

	vm_devices_lock(vm);
	for (unsigned i = 0; i < vm_devices_count(vm) && r == -ENOENT; i++) {
		struct vm_device *d = vm_devices_at(vm, i);

		if (d->cls->set_io_throttle) {
			r = d->cls->set_io_throttle(d->state, id, l);
		}
	}
	if (r == -ENOENT && vm_disk_node(vm, id)) {
		r = error_set(errp, ENOTSUP,
			      "Device '%s' takes no I/O limits: only virtio-blk disks do", id);
	} else if (r == -ENOENT) {
		r = error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				    "Device '%s' not found", id);
	}
	vm_devices_unlock(vm);
	return r;
}

/* --- device_del and the removal ----------------------------------------------- */

int vm_device_del(struct vm *vm, const char *id, struct error **errp)
{
	struct hotplug *hp = vm_hotplug_state(vm);
	struct vm_device *d;
	int slot, r = 0;
	bool usb_gone = false, usb_storage = false;

	cpu_hotplug_poll(vm, hp->cpus);
	vm_devices_lock(vm);
	d = find_device(vm, id);
	if (!d && usb_device_del(vm, id, &usb_storage) == 0) {
		usb_gone = true;
		goto out;
	}
	if (!d) {
		r = cpu_hotplug_del(vm, hp->cpus, id, errp);
		goto out;
	}
	if (d->cls->query_memory) {
		/* QEMU 7.2 cannot unplug virtio-mem devices either */
		r = error_set(errp, ENOTSUP, "virtio based memory devices cannot be unplugged.");
		goto out;
	}
	if (!model_by_class(d->cls)) {
		r = error_set(errp, ENOTSUP, "Bus '%s' does not support hotplugging",
			      d->cls == &ide_class ? "ide.0" : "pci.0");
		goto out;
	}
	slot = vm_pci_host(vm) ? pci_host_find_slot(vm_pci_host(vm), id) : -1;
	if (!hp->pcihp || slot <= 0) {
		r = error_set(errp, ENOTSUP, "Bus 'pci.0' does not support hotplugging");
		goto out;
	}
	/* Repeating the request re-raises it (the guest may have missed the first). */
	d->unplug_pending = true;
	acpi_pcihp_unplug_request(hp->pcihp, (unsigned)slot);
	log_full(LOG_INFO, vm_name(vm), id, "removal requested from the guest (slot %d)", slot);
out:
	vm_devices_unlock(vm);
	if (usb_gone) {
		usb_deleted_events(vm, id, usb_storage);
	}
	return r;
}

struct deleted {
	char *id;
	bool virtio;
};

/* Worker thread: the device's requests in flight complete (no lock held). */
static void drain_work(void *arg)
{
	struct drain_job *j = arg;
	struct hotplug *hp = j->hp;

	j->cls->drain(j->state);
	pthread_mutex_lock(&hp->drain_lock);
	hp->n_draining--;
	pthread_cond_broadcast(&hp->drain_cond);
	pthread_mutex_unlock(&hp->drain_lock);
}

/* Control thread, the VM still there: now the removal is quick. */
static void drain_done(void *arg)
{
	struct drain_job *j = arg;
	struct hotplug *hp = j->hp;

	hp->drains_out--;
	free(j);
	vm_hotplug_poll(hp->vm);
}

/*
 * Ejected devices with requests to drain (virtio-blk) have that wait done
 * on a worker, so neither the control thread nor the vCPUs wait for a slow
 * backend; they are removed when it is over (drain_done). Returns the
 * slots with nothing to drain. Caller holds vm_devices_lock().
 */
static unsigned start_drains(struct hotplug *hp, unsigned slots)
{
	struct vm *vm = hp->vm;
	const struct vm_host *host = vm_get_host(vm);

	for (unsigned i = 0; slots && host->offload && i < vm_devices_count(vm); i++) {
		struct vm_device *d = vm_devices_at(vm, i);
		int slot = model_by_class(d->cls) && d->id && vm_pci_host(vm)
				   ? pci_host_find_slot(vm_pci_host(vm), d->id)
				   : -1;
		struct drain_job *j;

		if (slot <= 0 || !(slots & (1u << slot)) || !d->cls->drain) {
			continue;
		}
		slots &= ~(1u << slot);
		if (d->draining) {
			continue; /* ejected again meanwhile: the drain under way removes it */
		}
		j = calloc(1, sizeof(*j));
		if (!j) {
			slots |= 1u << slot; /* remove it here, waiting */
			continue;
		}
		*j = (struct drain_job){
			.hp = hp, .cls = d->cls, .state = d->state, .slot = (unsigned)slot};
		pthread_mutex_lock(&hp->drain_lock);
		hp->n_draining++;
		pthread_mutex_unlock(&hp->drain_lock);
		if (host->offload(host->opaque, drain_work, drain_done, j) < 0) {
			pthread_mutex_lock(&hp->drain_lock);
			hp->n_draining--;
			pthread_mutex_unlock(&hp->drain_lock);
			free(j);
			slots |= 1u << slot;
			continue;
		}
		d->draining = true;
		hp->drains_out++;
		hp->held |= 1u << slot;
	}
	return slots;
}

void vm_hotplug_poll(struct vm *vm)
{
	struct hotplug *hp = vm_hotplug_state(vm);
	struct deleted gone[PCI_SLOTS];
	unsigned n_gone = 0, slots;
	bool resume = false, paused = false;

	if (!hp) {
		return;
	}
	cpu_hotplug_poll(vm, hp->cpus);
	vm_devices_lock(vm);
	slots = atomic_exchange(&hp->ejected, 0);
	/*
	 * Removals wait while a drain runs, and then go together in table
	 * order, so the DEVICE_DELETED events keep QEMU's order.
	 */
	hp->held |= start_drains(hp, slots);
	if (hp->drains_out) {
		vm_devices_unlock(vm);
		return;
	}
	slots = hp->held;
	hp->held = 0;
	for (unsigned i = 0; slots && i < vm_devices_count(vm);) {
		struct vm_device *d = vm_devices_at(vm, i);
		const struct hp_model *m = model_by_class(d->cls);
		int slot = m && d->id && vm_pci_host(vm)
				   ? pci_host_find_slot(vm_pci_host(vm), d->id)
				   : -1;
		struct hp_node *node;
		struct hp_netdev *nd;

		if (slot <= 0 || !(slots & (1u << slot))) {
			i++;
			continue;
		}
		if (!paused) {
			resume = vm_quiesce(vm);
			paused = true;
		}
		/* I/O in flight completes first (virtio-blk drains in its unrealize). */
		d->cls->unrealize(d->state);
		/* Then the backends it used become free: blockdev-del / netdev_del may go. */
		node = d->node ? find_node(hp, d->node) : NULL;
		if (node) {
			free(node->user);
			node->user = NULL;
		}
		nd = d->netdev ? find_netdev(hp, d->netdev) : NULL;
		if (nd) {
			free(nd->user);
			nd->user = NULL;
		}
		gone[n_gone].id = TAKE_PTR(d->id);
		gone[n_gone].virtio = m->virtio;
		n_gone++;
		hotplug_device_forget(d);
		vm_devices_remove(vm, i);
		slots &= ~(1u << slot);
	}
	if (paused) {
		vm_unquiesce(vm, resume);
	}
	vm_devices_unlock(vm);
	for (unsigned i = 0; i < n_gone; i++) {
		char path[128];

		log_full(LOG_INFO, vm_name(vm), gone[i].id, "removed (ejected by the guest)");
		snprintf(path, sizeof(path), "/machine/peripheral/%s", gone[i].id);
		if (gone[i].virtio) {
			char child[160];

			snprintf(child, sizeof(child), "%s/virtio-backend", path);
			vm_emit_event(vm, "DEVICE_DELETED", json_pack("{s:s}", "path", child));
		}
		vm_emit_event(vm, "DEVICE_DELETED",
			      json_pack("{s:s, s:s}", "device", gone[i].id, "path", path));
		free(gone[i].id);
	}
}

json_t *vm_device_definition(struct vm *vm, const char *id)
{
	struct vm_device *d;
	json_t *j = NULL;

	vm_devices_lock(vm);
	d = find_device(vm, id);
	if (d && d->definition && model_by_class(d->cls)) {
		j = json_pack("{s:s, s:O}", "kind", model_by_class(d->cls)->disk ? "disks" : "nics",
			      "entry", d->definition);
	} else if (!d && find_usb(vm_hotplug_state(vm), id) &&
		   find_usb(vm_hotplug_state(vm), id)->definition) {
		json_t *def = find_usb(vm_hotplug_state(vm), id)->definition;
		const char *drv = json_string_value(json_object_get(def, "driver"));

		j = json_pack("{s:s, s:O}", "kind",
			      drv && !strcmp(drv, "usb-storage") ? "disks" : "input", "entry", def);
	}
	vm_devices_unlock(vm);
	return j;
}

/* --- block_resize ----------------------------------------------------------- */

struct vm_resize_op {
	struct block_node *bs; /* a reference: the node outlives a blockdev-del meanwhile */
	char *disk;	       /* the virtio-blk disk using it, told at the end; or NULL */
	uint64_t size;
	int r;
	struct error *err;
};

static void resize_op_free(struct vm_resize_op *op)
{
	if (!op) {
		return;
	}
	block_unref(op->bs);
	free(op->disk);
	error_free(op->err);
	free(op);
}

int vm_block_resize_prepare(struct vm *vm, const char *device, const char *node_name, uint64_t size,
			    struct vm_resize_op **ret, struct error **errp)
{
	struct hotplug *hp = vm_hotplug_state(vm);
	struct block_node *bs = NULL;
	struct vm_device *disk = NULL;
	struct vm_resize_op *op = NULL;
	bool job = false;
	int r;

	vm_devices_lock(vm);
	if (node_name) {
		struct hp_node *n = find_open_node(hp, node_name);

		if (n) {
			bs = n->bs;
			disk = n->user ? find_device(vm, n->user) : NULL;
			job = n->job;
		}
	} else if (device) {
		disk = find_device(vm, device);
		if (disk && disk->cls == &virtio_blk_class) {
			bs = virtio_blk_node(disk->state);
		} else {
			disk = NULL;
		}
	}
	if (!bs) {
		r = error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'",
			      device ? device : "", node_name ? node_name : "");
		goto out;
	}
	if (job) {
		r = error_set(errp, EBUSY,
			      "Node '%s' is busy: block device is in use by block job: mirror",
			      node_name);
		goto out;
	}
	if (size > INT64_MAX) {
		r = error_set(errp, EINVAL, "New size cannot be negative");
		goto out;
	}
	if (block_is_read_only(bs)) {
		r = error_set(errp, EACCES, "Cannot resize a read-only node");
		goto out;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}
	op->bs = block_ref(bs);
	op->size = size;
	if (disk && disk->cls == &virtio_blk_class && disk->id && !(op->disk = strdup(disk->id))) {
		resize_op_free(op);
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}
	*ret = op;
	r = 0;
out:
	vm_devices_unlock(vm);
	return r;
}

void vm_block_resize_run(struct vm_resize_op *op)
{
	op->r = block_truncate(op->bs, op->size, &op->err);
}

int vm_block_resize_finish(struct vm *vm, struct vm_resize_op *op, struct error **errp)
{
	struct vm_device *disk;
	int r = op->r;

	if (r < 0) {
		if (errp) {
			*errp = TAKE_PTR(op->err);
		}
		resize_op_free(op);
		return r;
	}
	if (vm && op->disk) {
		vm_devices_lock(vm);
		disk = find_device(vm, op->disk);
		/* still the disk on that node: capacity and config-change interrupt */
		if (disk && disk->cls == &virtio_blk_class &&
		    virtio_blk_node(disk->state) == op->bs) {
			virtio_blk_resized(disk->state);
		}
		vm_devices_unlock(vm);
	}
	resize_op_free(op);
	return 0;
}

/* --- balloon ------------------------------------------------------------------ */

static void *balloon_of(struct vm *vm, struct error **errp)
{
	void *b = vm_device_state(vm, &virtio_balloon_class);

	if (!b) {
		error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				"No balloon device has been activated");
	}
	return b;
}

int vm_balloon(struct vm *vm, int64_t value, struct error **errp)
{
	void *b = balloon_of(vm, errp);

	if (!b) {
		return -ENODEV;
	}
	if (value <= 0) {
		return error_set(errp, EINVAL, "Parameter 'target' expects a size");
	}
	return virtio_balloon_set_target(b, (uint64_t)value);
}

json_t *vm_query_balloon(struct vm *vm, struct error **errp)
{
	void *b = balloon_of(vm, errp);

	return b ? json_pack("{s:I}", "actual", (json_int_t)virtio_balloon_actual(b)) : NULL;
}

/* --- vCPUs (hw/cpu-hotplug.c) ------------------------------------------------ */

int hotplug_restored(struct hotplug *hp, struct error **errp)
{
	return hp ? cpu_hotplug_adopt(hp->vm, hp->cpus, errp) : 0;
}

json_t *vm_query_hotpluggable_cpus(struct vm *vm)
{
	struct hotplug *hp = vm_hotplug_state(vm);

	if (hp) {
		cpu_hotplug_poll(vm, hp->cpus);
	}
	return cpu_hotplug_query(vm, hp ? hp->cpus : NULL);
}
