/*
 * Live migration commands in QEMU's shapes (docs/migration.md): migrate,
 * migrate-incoming, migrate_cancel, query-migrate, migrate-set-parameters,
 * query-migrate-parameters. VM-scoped; req->vm is the registry entry.
 * Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/migration.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/tls.h"
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
	int fd = uri_fd(req, uri, errp);

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

int qmp_migrate_set_parameters(struct monitor_request *req, json_t *args, json_t **ret,
			       struct error **errp)
{
	struct registry_vm *rv = req->vm;
	json_t *bw = json_object_get(args, "max-bandwidth");
	json_t *dl = json_object_get(args, "downtime-limit");
	json_t *tc = json_object_get(args, "tls-creds");
	json_t *th = json_object_get(args, "tls-hostname");

	/* QEMU's bounds: max-bandwidth up to SIZE_MAX, downtime-limit up to 2000 s. */
	if (bw && json_integer_value(bw) < 0) {
		return error_set(errp, EINVAL,
				 "Parameter 'max_bandwidth' expects an integer in the range of 0 "
				 "to 18446744073709551615 bytes/second");
	}
	if (dl && (json_integer_value(dl) < 0 || json_integer_value(dl) > 2000000)) {
		return error_set(errp, EINVAL,
				 "Parameter 'downtime_limit' expects an integer in the range of 0 "
				 "to 2000000 milliseconds");
	}
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
		rv->mig_tls_creds = strdup(json_string_value(tc));
	}
	if (th) {
		free(rv->mig_tls_hostname);
		rv->mig_tls_hostname = strdup(json_string_value(th));
	}
	return 0;
}

int qmp_query_migrate_parameters(struct monitor_request *req, json_t *args, json_t **ret,
				 struct error **errp)
{
	struct registry_vm *rv = req->vm;

	*ret = json_pack("{s:I, s:I, s:s, s:s}", "max-bandwidth",
			 (json_int_t)(rv->mig_max_bandwidth ? rv->mig_max_bandwidth
							    : MIGRATION_DEFAULT_MAX_BANDWIDTH),
			 "downtime-limit",
			 (json_int_t)(rv->mig_downtime_limit ? rv->mig_downtime_limit
							     : MIGRATION_DEFAULT_DOWNTIME_LIMIT),
			 "tls-creds", rv->mig_tls_creds ? rv->mig_tls_creds : "", "tls-hostname",
			 rv->mig_tls_hostname ? rv->mig_tls_hostname : "");
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

/* The credential files are read on a worker: a slow file system delays only this answer. */
int qmp_object_add(struct monitor_request *req, json_t *args, json_t **ret, struct error **errp)
{
	struct object_add *j = calloc(1, sizeof(*j));
	int r;

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
	return tls_object_del(json_string_value(json_object_get(args, "id")), errp);
}
