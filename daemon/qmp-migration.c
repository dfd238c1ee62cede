/*
 * Live migration commands in QEMU's shapes (docs/migration.md): migrate,
 * migrate-incoming, migrate_cancel, query-migrate, migrate-set-parameters,
 * query-migrate-parameters, migrate-set-capabilities,
 * query-migrate-capabilities; and announce-self, whose defaults are the
 * announce-* parameters. VM-scoped; req->vm is the registry entry.
 * Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/authz.h"
#include "daemon/migration.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/tls.h"
#include "common/util.h"
#include "monitor/monitor.h"

/* fd:NAME takes the fd passed with getfd; other URIs need none (-1). */
static int uri_fd(struct monitor_request *req, const char *uri, struct error **errp)
{
	int fd;

	if (strncmp(uri, "fd:", 3) != 0) {
		return -1;
	}
	fd = monitor_get_fd(req->mon, uri + 3);
	if (fd < 0) {
		return error_set(errp, ENOENT, "File descriptor named '%s' not found", uri + 3);
	}
	return fd;
}

int qmp_migrate(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	const char *uri = json_string_value(json_object_get(args, "uri"));
	int fd;

	if (qmp_dump_active(req->vm)) {
		return error_set(errp, EBUSY,
				 "Live migration disabled: dump-guest-memory in progress");
	}
	fd = uri_fd(req, uri, errp);
	if (fd < -1) {
		return fd;
	}
	return migration_start(req->vm, uri, fd, errp);
}

int qmp_migrate_incoming(struct monitor_request *req, json_t *args, json_t **ret,
			 struct error **errp)
{
	const char *uri = json_string_value(json_object_get(args, "uri"));
	int fd = uri_fd(req, uri, errp);

	if (fd < -1) {
		return fd;
	}
	return migration_incoming(req->vm, uri, fd, errp);
}

int qmp_migrate_cancel(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	return migration_cancel(req->vm, errp);
}

int qmp_query_migrate(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	*ret = migration_query(req->vm);
	return 0;
}

/* A uint8 parameter of @args into *@v (left as is when absent): QEMU's type check. */
static int throttle_arg(json_t *args, const char *name, unsigned *v, struct error **errp)
{
	json_t *j = json_object_get(args, name);

	if (!j) {
		return 0;
	}
	if (json_integer_value(j) < 0 || json_integer_value(j) > UINT8_MAX) {
		return error_set(errp, EINVAL, "Parameter '%s' expects uint8_t", name);
	}
	*v = (unsigned)json_integer_value(j);
	return 0;
}

/*
 * An announce-* parameter @name of @args into *@v (left as is when absent):
 * QEMU's range and words, which name it @qemu_name and give 0 as the low
 * end even where it is 1 (announce-step).
 */
static int announce_arg(json_t *args, const char *name, const char *qemu_name, int64_t min,
			int64_t max, int64_t *v, struct error **errp)
{
	json_t *j = json_object_get(args, name);

	if (!j) {
		return 0;
	}
	if (json_integer_value(j) < min || json_integer_value(j) > max) {
		return error_set(errp, EINVAL, "Parameter '%s' expects a value between 0 and %lld",
				 qemu_name, (long long)max);
	}
	*v = json_integer_value(j);
	return 0;
}

int qmp_migrate_set_parameters(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	struct registry_vm *rv = req->vm;
	json_t *bw = json_object_get(args, "max-bandwidth");
	json_t *dl = json_object_get(args, "downtime-limit");
	json_t *tc = json_object_get(args, "tls-creds");
	json_t *th = json_object_get(args, "tls-hostname");
	json_t *ta = json_object_get(args, "tls-authz");
	json_t *ts = json_object_get(args, "cpu-throttle-tailslow");
	json_t *xc = json_object_get(args, "xbzrle-cache-size");
	struct migration_throttle_params p;
	struct vm_announce_params ap;
	char *creds = NULL, *host = NULL, *authz = NULL;
	int r;

	/*
	 * As QEMU: every value is checked as it would be after the command,
	 * all before any applies; the types first, then the ranges in QEMU's
	 * order and words.
	 */
	migration_throttle_params(rv, &p);
	r = throttle_arg(args, "throttle-trigger-threshold", &p.threshold, errp);
	if (r == 0) {
		r = throttle_arg(args, "cpu-throttle-initial", &p.initial, errp);
	}
	if (r == 0) {
		r = throttle_arg(args, "cpu-throttle-increment", &p.increment, errp);
	}
	if (r == 0) {
		r = throttle_arg(args, "max-cpu-throttle", &p.max, errp);
	}
	if (r < 0) {
		return r;
	}
	if (p.threshold < 1 || p.threshold > 100) {
		return error_set(errp, EINVAL,
				 "Parameter 'throttle_trigger_threshold' expects an integer in the "
				 "range of 1 to 100");
	}
	if (p.initial < 1 || p.initial > 99) {
		return error_set(errp, EINVAL,
				 "Parameter 'cpu_throttle_initial' expects an integer in the range "
				 "of 1 to 99");
	}
	if (p.increment < 1 || p.increment > 99) {
		return error_set(errp, EINVAL,
				 "Parameter 'cpu_throttle_increment' expects an integer in the "
				 "range of 1 to 99");
	}
	/* QEMU's bounds: max-bandwidth up to SIZE_MAX, downtime-limit up to 2000 s. */
	if (bw && json_integer_value(bw) < 0) {
		return error_set(errp, EINVAL,
				 "Parameter 'max_bandwidth' expects an integer in the range of 0 "
				 "to 18446744073709551615 bytes/second");
	}
	if (dl && (json_integer_value(dl) < 0 || json_integer_value(dl) > 2000000)) {
		return error_set(errp, EINVAL,
				 "Parameter 'downtime_limit' expects an integer in the range of 0 "
				 "to (2000 * 1000) ms"); /* QEMU 7.2's words */
	}
	/* the cache is made at most the VM's RAM size when a migration uses it */
	if (xc && (json_integer_value(xc) < 4096 ||
		   (json_integer_value(xc) & (json_integer_value(xc) - 1)))) {
		return error_set(errp, EINVAL,
				 "Parameter 'xbzrle_cache_size' expects a power of two no less "
				 "than the target page size");
	}
	if (p.max < p.initial || p.max > 99) {
		return error_set(errp, EINVAL,
				 "Parameter 'max_cpu_throttle' expects an integer in the range of "
				 "cpu_throttle_initial to 99");
	}
	migration_announce_params(rv, &ap);
	if ((r = announce_arg(args, "announce-initial", "announce_initial", 0,
			      VM_ANNOUNCE_MAX_INITIAL, &ap.initial, errp)) < 0 ||
	    (r = announce_arg(args, "announce-max", "announce_max", 0, VM_ANNOUNCE_MAX_MAX, &ap.max,
			      errp)) < 0 ||
	    (r = announce_arg(args, "announce-rounds", "announce_rounds", 0, VM_ANNOUNCE_MAX_ROUNDS,
			      &ap.rounds, errp)) < 0 ||
	    (r = announce_arg(args, "announce-step", "announce_step", 1, VM_ANNOUNCE_MAX_STEP,
			      &ap.step, errp)) < 0) {
		return r;
	}
	/* The strings are copied first: out of memory changes nothing. */
	if ((tc && !(creds = strdup(json_string_value(tc)))) ||
	    (th && !(host = strdup(json_string_value(th)))) ||
	    (ta && !(authz = strdup(json_string_value(ta))))) {
		free(creds);
		free(host);
		free(authz);
		return error_set(errp, ENOMEM, "out of memory");
	}
	/* A migration in progress applies them at its next step, as QEMU's. */
	rv->mig_throttle_threshold = (uint8_t)p.threshold;
	rv->mig_throttle_initial = (uint8_t)p.initial;
	rv->mig_throttle_increment = (uint8_t)p.increment;
	rv->mig_max_throttle = (uint8_t)p.max;
	if (ts) {
		rv->mig_throttle_tailslow = json_is_true(ts);
	}
	if (xc) {
		rv->mig_xbzrle_cache_size = (uint64_t)json_integer_value(xc);
	}
	rv->mig_announce = ap;
	rv->mig_announce_set = true;
	/* 0 keeps meaning "QEMU's default" internally; a 0 limit is stored as 1. */
	if (bw) {
		rv->mig_max_bandwidth =
			json_integer_value(bw) ? (uint64_t)json_integer_value(bw) : 1;
	}
	if (dl) {
		rv->mig_downtime_limit =
			json_integer_value(dl) ? (uint64_t)json_integer_value(dl) : 1;
	}
	/* As QEMU: the id is looked up when a migration starts, not now. */
	if (tc) {
		free(rv->mig_tls_creds);
		rv->mig_tls_creds = creds;
	}
	if (th) {
		free(rv->mig_tls_hostname);
		rv->mig_tls_hostname = host;
	}
	if (ta) {
		free(rv->mig_tls_authz);
		rv->mig_tls_authz = authz;
	}
	return 0;
}

int qmp_query_migrate_parameters(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp)
{
	struct registry_vm *rv = req->vm;
	struct migration_throttle_params p;
	struct vm_announce_params ap;

	migration_throttle_params(rv, &p);
	*ret = json_pack("{s:I, s:I, s:s, s:s, s:s, s:i, s:i, s:i, s:b, s:i, s:I}", "max-bandwidth",
			 (json_int_t)(rv->mig_max_bandwidth ? rv->mig_max_bandwidth
							    : MIGRATION_DEFAULT_MAX_BANDWIDTH),
			 "downtime-limit",
			 (json_int_t)(rv->mig_downtime_limit ? rv->mig_downtime_limit
							     : MIGRATION_DEFAULT_DOWNTIME_LIMIT),
			 "tls-creds", rv->mig_tls_creds ? rv->mig_tls_creds : "", "tls-hostname",
			 rv->mig_tls_hostname ? rv->mig_tls_hostname : "", "tls-authz",
			 rv->mig_tls_authz ? rv->mig_tls_authz : "", "throttle-trigger-threshold",
			 (int)p.threshold, "cpu-throttle-initial", (int)p.initial,
			 "cpu-throttle-increment", (int)p.increment, "cpu-throttle-tailslow",
			 p.tailslow, "max-cpu-throttle", (int)p.max, "xbzrle-cache-size",
			 (json_int_t)migration_xbzrle_cache_size(rv));
	migration_announce_params(rv, &ap);
	json_object_set_new(*ret, "announce-initial", json_integer(ap.initial));
	json_object_set_new(*ret, "announce-max", json_integer(ap.max));
	json_object_set_new(*ret, "announce-rounds", json_integer(ap.rounds));
	json_object_set_new(*ret, "announce-step", json_integer(ap.step));
	return 0;
}

/*
 * QEMU's announce-self: its four values are required (the migration
 * parameters are not its defaults) and bounded as those are, which QEMU
 * does not do (a negative rounds there announces without end); "id" names
 * the timer, absent: QEMU's unnamed one.
 */
int qmp_announce_self(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct registry_vm *rv = req->vm;
	json_t *list = json_object_get(args, "interfaces");
	const char *ifaces[VM_ANNOUNCE_MAX_INTERFACES + 1];
	struct vm_announce_params p = {
		.initial = json_integer_value(json_object_get(args, "initial")),
		.max = json_integer_value(json_object_get(args, "max")),
		.rounds = json_integer_value(json_object_get(args, "rounds")),
		.step = json_integer_value(json_object_get(args, "step")),
	};
	const char *id = json_string_value(json_object_get(args, "id"));
	size_t i;
	json_t *v;

	if (!rv->vm) {
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, ENODEV,
				       "VM '%s' is not running; start it with vm-start", rv->name);
	}
	if (json_array_size(list) > VM_ANNOUNCE_MAX_INTERFACES) {
		return error_set(errp, EINVAL, "Parameter 'interfaces' names more than %d NICs",
				 VM_ANNOUNCE_MAX_INTERFACES);
	}
	json_array_foreach (list, i, v) {
		ifaces[i] = json_string_value(v);
	}
	ifaces[json_array_size(list)] = NULL;
	return vm_announce(rv->vm, &p, list ? ifaces : NULL, id ? id : "", errp);
}

/*
 * QEMU 7.2's MigrationCapability, in its order. vmmd implements
 * auto-converge, events and xbzrle; the rest are listed off and cannot be
 * turned on.
 */
static const char *const capability_names[] = {
	"xbzrle",	    "rdma-pin-all",  "auto-converge",	    "zero-blocks",
	"compress",	    "events",	     "postcopy-ram",	    "x-colo",
	"release-ram",	    "block",	     "return-path",	    "pause-before-switchover",
	"multifd",	    "dirty-bitmaps", "postcopy-blocktime",  "late-block-activate",
	"x-ignore-shared",  "validate-uuid", "background-snapshot", "zero-copy-send",
	"postcopy-preempt",
};

/* The capabilities vmmd implements: 0 auto-converge, 1 events, 2 xbzrle; -1 for the others. */
static int capability_index(const char *name)
{
	return strcmp(name, "auto-converge") == 0 ? 0
	       : strcmp(name, "events") == 0	  ? 1
	       : strcmp(name, "xbzrle") == 0	  ? 2
						  : -1;
}

int qmp_migrate_set_capabilities(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp)
{
	struct registry_vm *rv = req->vm;
	json_t *caps = json_object_get(args, "capabilities"), *c;
	bool state[3] = {rv->mig_auto_converge, !rv->mig_no_events, rv->mig_xbzrle};
	size_t i;

	/* QEMU: the capabilities of a running outgoing migration are fixed. */
	if (migration_outgoing(rv) && migration_active(rv)) {
		return error_set(errp, EBUSY, "There's a migration process in progress");
	}
	/* All checked before any is applied. */
	json_array_foreach (caps, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));
		bool on = json_is_true(json_object_get(c, "state")), known = false;

		for (size_t k = 0; k < ARRAY_SIZE(capability_names); k++) {
			known |= strcmp(name, capability_names[k]) == 0;
		}
		if (!known) {
			return error_set(errp, EINVAL,
					 "Parameter 'capability' does not accept value '%s'", name);
		}
		if (capability_index(name) < 0 && on) {
			return error_set(errp, ENOTSUP,
					 "vmmd does not support migration capability '%s'", name);
		}
	}
	json_array_foreach (caps, i, c) {
		int k = capability_index(json_string_value(json_object_get(c, "capability")));

		if (k >= 0) {
			state[k] = json_is_true(json_object_get(c, "state"));
		}
	}
	rv->mig_auto_converge = state[0];
	rv->mig_no_events = !state[1];
	rv->mig_xbzrle = state[2];
	return 0;
}

int qmp_query_migrate_capabilities(struct monitor_request *req, json_t *args, json_t **ret,
				   struct error **errp)
{
	struct registry_vm *rv = req->vm;
	bool state[3] = {rv->mig_auto_converge, !rv->mig_no_events, rv->mig_xbzrle};
	json_t *list = json_array();

	for (size_t k = 0; k < ARRAY_SIZE(capability_names); k++) {
		int i = capability_index(capability_names[k]);

		json_array_append_new(list,
				      json_pack("{s:s, s:b}", "capability", capability_names[k],
						"state", i >= 0 && state[i]));
	}
	*ret = list;
	return 0;
}

struct object_add {
	struct tls_creds *c;
	struct monitor_deferred *d;
	struct error *err;
	int r;
};

static void object_load(void *arg)
{
	struct object_add *j = arg;

	j->r = tls_object_add_load(j->c, &j->err);
}

static void object_loaded(void *arg)
{
	struct object_add *j = arg;

	tls_object_add_finish(j->c, j->r);
	monitor_deferred_done(j->d, j->r, NULL, j->err);
	free(j);
}

/*
 * Authorization objects are made at once; the credential files are read on
 * a worker: a slow file system delays only this answer.
 */
int qmp_object_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct object_add *j;
	int r;

	if (authz_is_type(json_string_value(json_object_get(args, "qom-type")))) {
		return authz_object_add(args, tls_object_exists, errp);
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->d = monitor_defer(req))) {
		free(j);
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = tls_object_add_prepare(args, &j->c, errp);
	if (r == 0) {
		r = registry_run(req->ctx, object_load, object_loaded, j, errp);
		if (r < 0) {
			tls_object_add_finish(j->c, r);
		}
	}
	if (r < 0) {
		monitor_deferred_cancel(j->d);
		free(j);
		return r;
	}
	return MONITOR_DEFERRED;
}

int qmp_object_del(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	const char *id = json_string_value(json_object_get(args, "id"));

	return authz_object_del(id) == 0 ? 0 : tls_object_del(id, errp);
}
