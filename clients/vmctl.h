/*
 * What vmctl's command files share (clients/vmctl.c has main, the command
 * table and the VM commands, clients/vmctl-hotplug.c the disk and nic
 * commands).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "clients/client.h"
#include "common/error.h"

enum {
	EXIT_OK = 0,
	EXIT_DAEMON = 1,
	EXIT_USAGE = 2,
	EXIT_NOT_FOUND = 3,
	EXIT_CONNECT = 4,
	EXIT_TIMEOUT = 5,
};

/* --json was given (vmctl_set_json() when a command's own option says so). */
bool vmctl_json(void);
void vmctl_set_json(void);
/* Report a failure as vmctl does (stderr, or a JSON error with --json); returns @code. */
int vmctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print @err (taken) and map it to an exit status. */
int vmctl_report(struct error *err, int r);
/* Run @cmd (@args taken); an exit status, the error printed. */
int vmctl_run_cmd(struct qmp_client *c, const char *cmd, json_t *args, json_t **ret);
/* The same, for clean-up after a failure: errors are not printed. */
void vmctl_run_cmd_quiet(struct qmp_client *c, const char *cmd, json_t *args);
/*
 * Read events until @match(name, data, @opaque) says one is it (data holds
 * the event's "vm" on the main socket) or @deadline (now_monotonic_us) has
 * passed: EXIT_OK, EXIT_TIMEOUT, or a connection error's status (printed).
 */
int vmctl_wait_event(struct qmp_client *c, uint64_t deadline,
		     bool (*match)(const char *name, json_t *data, void *opaque), void *opaque);
/* -t/--timeout S (at most a day) and -j/--json, the options of the removals and "cpus set". */
int vmctl_timeout_options(int argc, char **argv, uint32_t *timeout);
/* vmctl_wait_event for DEVICE_DELETED of device @id of VM @vm. */
int vmctl_wait_deleted(struct qmp_client *c, const char *vm, const char *id, uint64_t deadline);
/* Set @key of @obj to @path made absolute against the current directory. */
int vmctl_set_path(json_t *obj, const char *key, const char *path);
/* vmctl memory (clients/vmctl-memory.c). */
int vmctl_cmd_memory(struct qmp_client *c, int argc, char **argv);

int vmctl_cmd_disk(struct qmp_client *c, int argc, char **argv);
int vmctl_cmd_nic(struct qmp_client *c, int argc, char **argv);
int vmctl_cmd_cd(struct qmp_client *c, int argc, char **argv);
int vmctl_cmd_cpus(struct qmp_client *c, int argc, char **argv);
/* vmctl export (clients/vmctl-export.c). */
int vmctl_cmd_export(struct qmp_client *c, int argc, char **argv);
/*
 * vmctl migrate --copy-storage HOST:PORT: mirror every writable disk of
 * @vm into the export of the same name on the destination's NBD server,
 * and wait until all are ready (*ret_disks: their ids, for _end). _end,
 * after the migration: end the mirrors, whole (@migrated), or cancel them.
 */
int vmctl_copy_storage_start(struct qmp_client *c, const char *vm, const char *hostport,
			     json_t **ret_disks);
int vmctl_copy_storage_end(struct qmp_client *c, const char *vm, json_t *disks, bool migrated);
