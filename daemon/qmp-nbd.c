/*
 * QEMU's NBD server commands on a VM: nbd-server-start, nbd-server-add,
 * nbd-server-remove, nbd-server-stop, block-export-add, block-export-del,
 * query-block-exports, and the BLOCK_EXPORT_DELETED event
 * (daemon/nbd-server.c serves; docs/nbd-server.md). Each VM has its own
 * server, as each QEMU process has. Starting and stopping one (binding,
 * joining its threads) run on a worker while the VM is held; the rest are
 * control-thread bookkeeping.
 *
 * A VM that waits for its migration (started with "incoming", before
 * migrate-incoming) has a server too, as QEMU's -incoming defer: that is
 * how a migration without shared storage fills its disks (a mirror from
 * the source into the export). nbd-server-add then opens the disk's image
 * as its definition says, on a worker, and the VM's build takes that node
 * (registry_early_node_add).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/parse.h"
#include "daemon/migration.h"
#include "daemon/nbd-server.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/tls.h"
#include "hw/device.h"
#include "vmmd/block.h"
#include "vmmd/vm.h"

/* query-block-exports' ids: QEMU's id rules, blockdev-add's bound */
#define NBD_EXPORT_ID_MAX 63

static void export_deleted(void *opaque, const char *vm, const char *id)
{
	registry_queue_event(opaque, vm, "BLOCK_EXPORT_DELETED", json_pack("{s:s}", "id", id));
}

/* A VM waiting for its migration to start (no VM object yet). */
static bool waiting(struct registry_vm *rv)
{
	return !rv->vm && rv->inmigrate && !migration_active(rv);
}

static int nbd_vm(struct registry_vm *rv, struct error **errp)
{
	if (!rv->vm && !waiting(rv)) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	return 0;
}

static struct nbd_server *running(struct registry_vm *rv, struct error **errp)
{
	if (!rv->nbd && nbd_vm(rv, errp) == 0) {
		error_set(errp, ENOENT, "NBD server not running");
	}
	return rv->nbd;
}

/* Run @fn on a worker, the VM held if it is here (not if it waits). */
static int nbd_work(struct registry_vm *rv, const char *what, void (*fn)(void *arg),
		    void (*done)(void *arg), void *arg, bool *held, struct error **errp)
{
	*held = rv->vm != NULL;
	return *held ? registry_vm_work_begin(rv, what, fn, done, arg, errp)
		     : registry_run(rv->reg, fn, done, arg, errp);
}

/* ---- nbd-server-start / nbd-server-stop ---- */

struct nbd_op {
	struct registry_vm *rv;
	struct monitor_deferred *d;
	json_t *addr;
	struct nbd_server_config cfg;
	struct nbd_server *server;
	struct error *err;
	int r;
	bool held;
};

static void start_fn(void *arg)
{
	struct nbd_op *op = arg;
	int fd = nbd_server_listen(op->addr, &op->err);

	op->r = fd < 0 ? fd : nbd_server_start(fd, &op->cfg, &op->server, &op->err);
}

static void start_done(void *arg)
{
	struct nbd_op *op = arg;
	struct registry_vm *rv = op->rv;

	rv->nbd_busy = false;
	if (op->r == 0 && !rv->vm && !rv->inmigrate) {
		/* it stopped waiting for its migration meanwhile */
		registry_nbd_release(rv, TAKE_PTR(op->server));
		op->r = error_set(&op->err, ENODEV, "VM '%s' is not running", rv->name);
	}
	rv->nbd = op->server;
	if (op->held) {
		registry_disks_end(rv); /* a destroy that came meanwhile stops it */
	}
	monitor_deferred_done(op->d, op->r, NULL, op->err);
	json_decref(op->addr);
	free(op);
}

int qmp_nbd_server_start(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	struct registry_vm *rv = req->vm;
	json_t *max = json_object_get(args, "max-connections");
	const char *tls;
	struct nbd_op *op;
	int r;

	if (nbd_vm(rv, errp) < 0) {
		return -ENODEV;
	}
	if (rv->nbd || rv->nbd_busy) {
		return error_set(errp, EEXIST, "NBD server already running");
	}
	if (max && (json_integer_value(max) < 0 || json_integer_value(max) > UINT32_MAX)) {
		return error_set(errp, EINVAL, "Parameter 'max-connections' expects uint32_t");
	}
	if (max && json_integer_value(max) > NBD_SERVER_MAX_CONNECTIONS) {
		return error_set(errp, EINVAL, "max-connections must be at most %u",
				 NBD_SERVER_MAX_CONNECTIONS);
	}
	tls = json_string_value(json_object_get(args, "tls-creds"));
	if (tls && !tls_object_exists(tls)) {
		return error_set(errp, ENOENT, "No TLS credentials with id '%s'", tls);
	}
	if (tls || json_object_get(args, "tls-authz")) {
		return error_set(errp, ENOTSUP,
				 "vmmd's NBD server has no TLS; use a UNIX socket, or a network "
				 "only the two hosts share");
	}
	op = calloc(1, sizeof(*op));
	if (!op || !(op->d = monitor_defer(req))) {
		free(op);
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->rv = rv;
	op->addr = json_incref(json_object_get(args, "addr"));
	op->cfg.max_connections = max ? (unsigned)json_integer_value(max) : 0;
	op->cfg.deleted = export_deleted;
	op->cfg.opaque = rv->reg;
	op->cfg.violation_flag = registry_violation_flag(rv);
	op->cfg.vm = rv->name;
	r = nbd_work(rv, "starting an NBD server", start_fn, start_done, op, &op->held, errp);
	if (r < 0) {
		monitor_deferred_cancel(op->d);
		json_decref(op->addr);
		free(op);
		return r;
	}
	rv->nbd_busy = true;
	return MONITOR_DEFERRED;
}

static void stop_fn(void *arg)
{
	struct nbd_op *op = arg;

	nbd_server_free(op->server);
}

static void stop_done(void *arg)
{
	struct nbd_op *op = arg;

	op->rv->nbd_busy = false;
	if (op->held) {
		registry_disks_end(op->rv);
	}
	registry_flush_events(op->rv->reg); /* the exports' BLOCK_EXPORT_DELETED first */
	monitor_deferred_done(op->d, 0, NULL, NULL);
	free(op);
}

int qmp_nbd_server_stop(struct monitor_request *req, json_t *args, json_t **ret,
			struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct nbd_op *op;
	int r;

	if (!running(rv, errp)) {
		return -ENOENT;
	}
	op = calloc(1, sizeof(*op));
	if (!op || !(op->d = monitor_defer(req))) {
		free(op);
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->rv = rv;
	op->server = rv->nbd;
	r = nbd_work(rv, "stopping its NBD server", stop_fn, stop_done, op, &op->held, errp);
	if (r < 0) {
		monitor_deferred_cancel(op->d);
		free(op);
		return r;
	}
	rv->nbd = NULL;
	rv->nbd_busy = true;
	return MONITOR_DEFERRED;
}

/* ---- exports ---- */

struct find_node {
	const char *name;
	struct block_node *bs;
	const char *label; /* the node's name for query-block-exports */
};

static void match_top(void *opaque, const char *id, struct block_node *bs)
{
	struct find_node *f = opaque;
	const char *nn = block_node_name(bs);

	if (!f->bs && (strcmp(id, f->name) == 0 || (nn && strcmp(nn, f->name) == 0))) {
		f->bs = block_ref(bs);
		f->label = nn ? nn : id;
	}
}

/*
 * A running VM's disk's top node by its node name or its id, or a
 * blockdev-add node; a new reference. Nodes further down a disk's chain
 * are not exported: a block job may release them at any time.
 */
static struct block_node *live_node(struct vm *vm, const char *name, const char **label)
{
	struct find_node f = {.name = name};

	vm_for_each_disk(vm, match_top, &f);
	if (!f.bs) {
		f.bs = vm_block_node_get(vm, name, NULL);
		f.label = name;
	}
	*label = f.label;
	return f.bs;
}

/* A waiting VM's disk @id in its definition, or NULL. */
static const struct vm_disk_config *disk_config(struct registry_vm *rv, const char *id)
{
	for (unsigned i = 0; i < rv->cfg->n_disks; i++) {
		if (strcmp(rv->cfg->disks[i].id, id) == 0) {
			return &rv->cfg->disks[i];
		}
	}
	return NULL;
}

/* An export's arguments, checked as QEMU checks them, before a node is sought. */
struct export_args {
	const char *id, *node, *name, *description;
	bool writable, writethrough;
	bool by_node; /* block-export-add: @node is a node name */
	bool ro_ok;   /* nbd-server-add: writable is only a wish */
};

static int export_check(struct nbd_server *s, const struct export_args *a, struct error **errp)
{
	if (strlen(a->name) > NBD_MAX_STRING) {
		return error_set(errp, EINVAL, "export name '%s' too long", a->name);
	}
	if (a->description && strlen(a->description) > NBD_MAX_STRING) {
		return error_set(errp, EINVAL, "description '%s' too long", a->description);
	}
	if (!parse_id_ok(a->id, NBD_EXPORT_ID_MAX)) {
		return error_set(errp, EINVAL, "Invalid block export id");
	}
	if (nbd_server_has_export(s, a->id)) {
		return error_set(errp, EEXIST, "Block export id '%s' is already in use", a->id);
	}
	return 0;
}

/* Export @bs (borrowed) as @a says. */
static int export_node(struct nbd_server *s, const struct export_args *a, struct block_node *bs,
		       const char *label, struct error **errp)
{
	struct nbd_export_config c = {.id = a->id,
				      .name = a->name,
				      .description = a->description,
				      .node_name = label,
				      .bs = bs,
				      .writable = a->writable,
				      .writethrough = a->writethrough};

	if (a->writable && block_is_read_only(bs)) {
		return error_set(errp, EROFS, "Cannot export read-only node as writable");
	}
	return nbd_server_add(s, &c, errp);
}

/* nbd-server-add of a waiting VM's disk: its image opens on a worker. */
struct open_op {
	struct registry_vm *rv;
	struct monitor_deferred *d;
	json_t *args; /* keeps the strings of @a */
	struct export_args a;
	char *file, *format;
	unsigned flags;
	struct block_node *bs;
	struct error *err;
	int r;
};

static void open_fn(void *arg)
{
	struct open_op *op = arg;

	op->r = block_open(&op->bs, op->file, op->format, op->flags, &op->err);
	if (op->r < 0) {
		error_prefix(&op->err, "disk %s", op->a.node);
	}
}

static void open_done(void *arg)
{
	struct open_op *op = arg;
	struct registry_vm *rv = op->rv;

	rv->nbd_busy = false;
	if (op->r == 0) {
		/* kept for the VM whatever comes next (it takes the reference) */
		op->r = registry_early_node_add(rv, op->a.node, op->bs, &op->err);
	}
	if (op->r == 0 && !rv->nbd) {
		op->r = error_set(&op->err, ENOENT, "NBD server not running");
	}
	if (op->r == 0 && (op->r = export_check(rv->nbd, &op->a, &op->err)) == 0) {
		op->r = export_node(rv->nbd, &op->a, op->bs, op->a.node, &op->err);
	}
	monitor_deferred_done(op->d, op->r, NULL, op->err);
	json_decref(op->args);
	free(op->file);
	free(op->format);
	free(op);
}

static int open_early(struct monitor_request *req, const struct vm_disk_config *dc,
		      const struct export_args *a, json_t *args, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct open_op *op;
	int r;

	if (!dc->file || dc->node) {
		return error_set(errp, EINVAL, "disk '%s' has no image to export", dc->id);
	}
	if (rv->nbd_busy) {
		return error_set(errp, EBUSY, "VM '%s' is busy with its NBD server; try again",
				 rv->name);
	}
	op = calloc(1, sizeof(*op));
	if (!op || !(op->d = monitor_defer(req))) {
		free(op);
		return error_set(errp, ENOMEM, "out of memory");
	}
	op->rv = rv;
	op->args = json_incref(args);
	op->a = *a;
	op->file = strdup(dc->file);
	op->format = strdup(dc->format ? dc->format : "raw");
	/* as the disk's device will open it (its flags and cache mode) */
	op->flags = vm_disk_block_flags(dc);
	if (!dc->readonly && strcmp(dc->driver ? dc->driver : "", "ide-cd") != 0) {
		op->flags |= BLOCK_O_RDWR;
	}
	r = op->file && op->format ? registry_run(rv->reg, open_fn, open_done, op, errp)
				   : error_set(errp, ENOMEM, "out of memory");
	if (r < 0) {
		monitor_deferred_cancel(op->d);
		json_decref(op->args);
		free(op->file);
		free(op->format);
		free(op);
		return r;
	}
	rv->nbd_busy = true;
	return MONITOR_DEFERRED;
}

static int add_export(struct monitor_request *req, struct export_args *a, json_t *args,
		      struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct nbd_server *s = running(rv, errp);
	struct block_node *bs = NULL;
	const char *label = a->node;
	int r;

	if (!s) {
		return -ENOENT;
	}
	r = export_check(s, a, errp);
	if (r < 0) {
		return r;
	}
	if (rv->vm) {
		bs = live_node(rv->vm, a->node, &label);
	} else if (waiting(rv) && !(bs = block_ref(registry_early_node(rv, a->node))) &&
		   disk_config(rv, a->node)) {
		return open_early(req, disk_config(rv, a->node), a, args, errp);
	}
	if (!bs) {
		return error_set(errp, ENOENT, "Cannot find device='%s' nor node-name='%s'",
				 a->by_node ? "" : a->node, a->node);
	}
	if (a->ro_ok && block_is_read_only(bs)) {
		a->writable = false; /* nbd-server-add: a read-only node is exported read-only */
	}
	r = export_node(s, a, bs, label, errp);
	block_unref(bs); /* a disk's or a kept node: never the last reference */
	return r;
}

int qmp_nbd_server_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	const char *device = json_string_value(json_object_get(args, "device"));
	const char *name = json_string_value(json_object_get(args, "name"));
	const char *bitmap = json_string_value(json_object_get(args, "bitmap"));
	struct export_args a = {
		.id = name ? name : device,
		.node = device,
		.name = name ? name : device,
		.description = json_string_value(json_object_get(args, "description")),
		.writable = json_is_true(json_object_get(args, "writable")),
		.ro_ok = true,
	};

	if (!running(req->vm, errp)) {
		return -ENOENT;
	}
	if (bitmap) {
		/* vmmd keeps no dirty bitmaps on a running VM's disks */
		return error_set(errp, ENOENT, "Bitmap '%s' is not found", bitmap);
	}
	return add_export(req, &a, args, errp);
}

int qmp_block_export_add(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	const char *type = json_string_value(json_object_get(args, "type"));
	const char *node = json_string_value(json_object_get(args, "node-name"));
	const char *name = json_string_value(json_object_get(args, "name"));
	json_t *bitmaps = json_object_get(args, "bitmaps");
	struct export_args a = {
		.id = json_string_value(json_object_get(args, "id")),
		.node = node,
		.name = name ? name : node,
		.description = json_string_value(json_object_get(args, "description")),
		.writable = json_is_true(json_object_get(args, "writable")),
		.writethrough = json_is_true(json_object_get(args, "writethrough")),
		.by_node = true,
	};

	if (strcmp(type, "vhost-user-blk") == 0 || strcmp(type, "fuse") == 0 ||
	    strcmp(type, "vduse-blk") == 0) {
		return error_set(errp, ENOTSUP,
				 "vmmd exports over NBD only ('%s' is not supported)", type);
	}
	if (strcmp(type, "nbd") != 0) {
		return error_set(errp, EINVAL, "Parameter 'type' does not accept value '%s'", type);
	}
	if (!running(req->vm, errp)) {
		return -ENOENT;
	}
	if (json_array_size(bitmaps)) {
		return error_set(errp, ENOENT, "Bitmap '%s' is not found",
				 json_string_value(json_array_get(bitmaps, 0)));
	}
	if (json_is_true(json_object_get(args, "allocation-depth"))) {
		return error_set(errp, ENOTSUP,
				 "vmmd's NBD server has no block status: allocation-depth is not "
				 "supported");
	}
	if (json_object_get(args, "iothread")) {
		return error_set(errp, ENOTSUP,
				 "vmmd's NBD server serves from threads of its own: iothread is "
				 "not supported");
	}
	return add_export(req, &a, args, errp);
}

/*
 * An export removed: it goes on a worker (its node may close). Without
 * clients that is before the answer, and its event comes first, as
 * QEMU's; with clients (hard mode), once the last has seen its connection
 * end: that may be before or after the answer (QEMU's: after).
 */
struct reap_op {
	struct registry *reg;
	struct monitor_deferred *d; /* NULL: answered already */
	struct nbd_server *s;
};

static void reap_fn(void *arg)
{
	struct reap_op *op = arg;

	nbd_server_reap(op->s);
	nbd_server_put(op->s);
}

static void reap_done(void *arg)
{
	struct reap_op *op = arg;

	if (op->d) {
		registry_flush_events(op->reg);
		monitor_deferred_done(op->d, 0, NULL, NULL);
	}
	free(op);
}

static int remove_export(struct monitor_request *req, const char *id, json_t *args,
			 struct error **errp)
{
	struct registry_vm *rv = req->vm;
	const char *mode = json_string_value(json_object_get(args, "mode"));
	struct error *err = NULL;
	struct reap_op *op;
	int r;

	if (mode && strcmp(mode, "safe") != 0 && strcmp(mode, "hard") != 0) {
		return error_set(errp, EINVAL, "Parameter 'mode' does not accept value '%s'", mode);
	}
	if (!rv->nbd) {
		return error_set(errp, ENOENT, "Export '%s' is not found", id);
	}
	r = nbd_server_remove(rv->nbd, id, mode && strcmp(mode, "hard") == 0, errp);
	if (r < 0) {
		return r;
	}
	op = calloc(1, sizeof(*op));
	if (op) {
		op->reg = rv->reg;
		op->s = nbd_server_get(rv->nbd);
		op->d = r == 0 ? monitor_defer(req) : NULL;
		if (registry_run(rv->reg, reap_fn, reap_done, op, &err) == 0) {
			return op->d ? MONITOR_DEFERRED : 0;
		}
		monitor_deferred_cancel(op->d);
		nbd_server_put(op->s);
		free(op);
	}
	/* removed for its clients all the same; it goes when the server stops */
	log_full(LOG_WARNING, rv->name, NULL, "export '%s' stays until the server stops: %s", id,
		 err ? err->msg : "out of memory");
	error_free(err);
	return 0;
}

int qmp_nbd_server_remove(struct monitor_request *req, json_t *args, json_t **ret,
			  struct error **errp)
{
	return remove_export(req, json_string_value(json_object_get(args, "name")), args, errp);
}

int qmp_block_export_del(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	return remove_export(req, json_string_value(json_object_get(args, "id")), args, errp);
}

int qmp_query_block_exports(struct monitor_request *req, json_t *args, json_t **ret,
			    struct error **errp)
{
	struct registry_vm *rv = req->vm;

	*ret = rv->nbd ? nbd_server_query(rv->nbd) : json_array();
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}
