/*
 * Live migration between two daemons (docs/migration.md): QEMU's commands
 * (migrate, migrate-incoming, migrate_cancel, query-migrate,
 * migrate-set-parameters, query-migrate-parameters) and events (MIGRATION,
 * MIGRATION_PASS) over vmmd's own versioned wire format.
 *
 * Threads: the functions here run on the control thread; each migration
 * runs its stream on a worker thread of its own and comes back to the
 * control thread through an eventfd for the steps that change the
 * registry (building the incoming VM, the end).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/error.h"

struct registry_vm;
struct vm_announce_params;

/* QEMU's defaults (migration/options.c). */
#define MIGRATION_DEFAULT_MAX_BANDWIDTH (128ull << 20) /* bytes per second */
#define MIGRATION_DEFAULT_DOWNTIME_LIMIT 300ull	       /* milliseconds */
#define MIGRATION_DEFAULT_THROTTLE_THRESHOLD 50u       /* percent */
#define MIGRATION_DEFAULT_THROTTLE_INITIAL 20u
#define MIGRATION_DEFAULT_THROTTLE_INCREMENT 10u
#define MIGRATION_DEFAULT_MAX_THROTTLE 99u
#define MIGRATION_DEFAULT_XBZRLE_CACHE_SIZE (64ull << 20) /* bytes */

/* auto-converge's parameters of @rv, defaults filled in. */
struct migration_throttle_params {
	unsigned threshold, initial, increment, max;
	bool tailslow;
};
void migration_throttle_params(const struct registry_vm *rv, struct migration_throttle_params *ret);
/* xbzrle-cache-size of @rv, the default filled in. */
uint64_t migration_xbzrle_cache_size(const struct registry_vm *rv);
/* announce-initial, -max, -rounds, -step of @rv (QEMU's defaults: 50 ms, 550 ms, 5, 100 ms). */
void migration_announce_params(const struct registry_vm *rv, struct vm_announce_params *ret);

/* The wire format's version (docs/migration.md); a peer may be one behind. */
#define MIGRATION_WIRE_VERSION 1u

/*
 * Start migrating @rv's running or paused VM to @uri ("tcp:HOST:PORT",
 * "unix:PATH", "fd:NAME" with @fd the fd passed with getfd under NAME, or
 * -1). Replies at once; MIGRATION events tell the rest.
 */
int migration_start(struct registry_vm *rv, const char *uri, int fd, struct error **errp);
/* Listen on @uri for the VM state of @rv, which waits in "inmigrate". */
int migration_incoming(struct registry_vm *rv, const char *uri, int fd, struct error **errp);
/* migrate_cancel: a migration in progress ends "cancelled"; idle is fine. */
int migration_cancel(struct registry_vm *rv, struct error **errp);
/*
 * query-migrate's MigrationInfo (new reference; {} before any migration);
 * "cpu-throttle-percentage" while auto-converge throttles the source.
 */
json_t *migration_query(struct registry_vm *rv);
/*
 * A migration's worker still runs: the VM must not go away. @rv's
 * capabilities cannot change meanwhile when it is the source.
 */
bool migration_active(struct registry_vm *rv);
/* @rv has an outgoing migration (active or not). */
bool migration_outgoing(struct registry_vm *rv);
/* Forget @rv's migration (its definition is deleted); only when not active. */
void migration_free(struct registry_vm *rv);
