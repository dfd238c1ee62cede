/*
 * vmctl export: a VM's NBD server (nbd-server-start, block-export-add,
 * block-export-del, nbd-server-stop, query-block-exports), and what
 * vmctl migrate --copy-storage does with the destination's exports: each
 * disk mirrored into them (blockdev-add of an nbd node, blockdev-mirror)
 * before the migration, and the mirrors ended after it (block-job-cancel:
 * the copy is whole once the source is stopped). docs/nbd-server.md.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/vmctl.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/parse.h"

#define COPY_WAIT_MAX_US (7ull * 24 * 3600 * 1000000)

/* vmctl export start NAME (--listen HOST:PORT | --socket PATH) [--max-connections N] */
static int export_start(struct qmp_client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"socket", required_argument, NULL, 's'},
		{"max-connections", required_argument, NULL, 'm'},
		{0},
	};
	json_auto_t *addr = NULL;
	json_t *args;
	uint32_t max = 0;
	bool has_max = false;
	int o;

	optind = 0;
	while ((o = getopt_long(argc, argv, "l:s:m:", opts, NULL)) != -1) {
		switch (o) {
		case 'l': {
			const char *colon = strrchr(optarg, ':');
			_cleanup_free_ char *host = NULL;

			if (!colon || colon == optarg || !colon[1]) {
				return vmctl_fail(EXIT_USAGE, "--listen '%s' is not HOST:PORT",
						  optarg);
			}
			host = strndup(optarg, (size_t)(colon - optarg));
			json_decref(addr);
			addr = json_pack("{s:s, s:{s:s, s:s}}", "type", "inet", "data", "host",
					 host, "port", colon + 1);
			break;
		}
		case 's':
			json_decref(addr);
			addr = json_pack("{s:s, s:{}}", "type", "unix", "data");
			if (vmctl_set_path(json_object_get(addr, "data"), "path", optarg) < 0) {
				return vmctl_fail(EXIT_USAGE, "cannot resolve '%s'", optarg);
			}
			break;
		case 'm':
			if (parse_u32(optarg, &max) < 0) {
				return vmctl_fail(EXIT_USAGE,
						  "--max-connections '%s' is not a number", optarg);
			}
			has_max = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !addr) {
		return vmctl_fail(EXIT_USAGE,
				  "export start needs a VM name and --listen HOST:PORT or --socket "
				  "PATH");
	}
	args = json_pack("{s:s, s:O}", "vm", argv[optind], "addr", addr);
	if (has_max) {
		json_object_set_new(args, "max-connections", json_integer(max));
	}
	return vmctl_run_cmd(c, "nbd-server-start", args, NULL);
}

/* vmctl export add NAME DISK [--name EXPORT] [--writable] [--description TEXT] */
static int export_add(struct qmp_client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"writable", no_argument, NULL, 'w'},
		{"description", required_argument, NULL, 'd'},
		{0},
	};
	const char *name = NULL, *desc = NULL;
	bool writable = false;
	json_t *args;
	int o;

	optind = 0;
	while ((o = getopt_long(argc, argv, "n:wd:", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case 'w':
			writable = true;
			break;
		case 'd':
			desc = optarg;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		return vmctl_fail(EXIT_USAGE, "export add needs a VM name and a disk id");
	}
	/* the export's id is its name: export remove takes either */
	name = name ? name : argv[optind + 1];
	args = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "vm", argv[optind], "type", "nbd", "id",
			 name, "node-name", argv[optind + 1], "name", name, "writable", writable);
	if (desc) {
		json_object_set_new(args, "description", json_string(desc));
	}
	return vmctl_run_cmd(c, "block-export-add", args, NULL);
}

/* vmctl export list NAME: ID NODE STATE */
static int export_list(struct qmp_client *c, const char *vm)
{
	json_auto_t *list = NULL;
	json_t *e;
	size_t i;
	int rc = vmctl_run_cmd(c, "query-block-exports", json_pack("{s:s}", "vm", vm), &list);

	if (rc || vmctl_json()) {
		if (!rc) {
			char *s = json_dumps(list, JSON_INDENT(2));

			printf("%s\n", s ? s : "[]");
			free(s);
		}
		return rc;
	}
	printf("%-20s %-20s %s\n", "EXPORT", "NODE", "STATE");
	json_array_foreach (list, i, e) {
		printf("%-20s %-20s %s\n", json_string_value(json_object_get(e, "id")),
		       json_string_value(json_object_get(e, "node-name")),
		       json_is_true(json_object_get(e, "shutting-down")) ? "shutting-down"
									 : "serving");
	}
	return EXIT_OK;
}

int vmctl_cmd_export(struct qmp_client *c, int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : "";

	if (strcmp(verb, "start") == 0) {
		return export_start(c, argc - 1, argv + 1);
	}
	if (strcmp(verb, "add") == 0) {
		return export_add(c, argc - 1, argv + 1);
	}
	if (strcmp(verb, "remove") == 0 &&
	    (argc == 4 || (argc == 5 && strcmp(argv[4], "--hard") == 0))) {
		return vmctl_run_cmd(c, "block-export-del",
				     json_pack("{s:s, s:s, s:s}", "vm", argv[2], "id", argv[3],
					       "mode", argc == 5 ? "hard" : "safe"),
				     NULL);
	}
	if (strcmp(verb, "stop") == 0 && argc == 3) {
		return vmctl_run_cmd(c, "nbd-server-stop", json_pack("{s:s}", "vm", argv[2]), NULL);
	}
	if (strcmp(verb, "list") == 0 && argc == 3) {
		return export_list(c, argv[2]);
	}
	return vmctl_fail(EXIT_USAGE,
			  "export needs start|add|remove|stop|list and a VM name (see vmctl "
			  "export --help)");
}

/* ---- vmctl migrate --copy-storage ---- */

struct copy_wait {
	const char *vm;
	json_t *jobs;	  /* the job ids still waited for */
	const char *want; /* "ready" or "null" */
	char *failed;	  /* a job that ended first, and why */
};

static bool copy_event(const char *name, json_t *data, void *opaque)
{
	struct copy_wait *w = opaque;
	const char *vm = json_string_value(json_object_get(data, "vm"));
	const char *id = json_string_value(json_object_get(data, "id"));
	const char *st = json_string_value(json_object_get(data, "status"));
	size_t i;
	json_t *j;

	if (!vm || strcmp(vm, w->vm) != 0) {
		return false;
	}
	if (strcmp(name, "BLOCK_JOB_COMPLETED") == 0 && json_object_get(data, "error") &&
	    !w->failed) {
		if (asprintf(&w->failed, "%s: %s",
			     json_string_value(json_object_get(data, "device")),
			     json_string_value(json_object_get(data, "error"))) < 0) {
			w->failed = NULL;
		}
		return true;
	}
	if (strcmp(name, "JOB_STATUS_CHANGE") != 0 || !id || !st) {
		return false;
	}
	json_array_foreach (w->jobs, i, j) {
		if (strcmp(json_string_value(j), id) != 0) {
			continue;
		}
		if (strcmp(st, w->want) == 0) {
			json_array_remove(w->jobs, i);
			return json_array_size(w->jobs) == 0;
		}
		if (strcmp(w->want, "ready") == 0 &&
		    (strcmp(st, "concluded") == 0 || strcmp(st, "aborting") == 0)) {
			if (!w->failed &&
			    asprintf(&w->failed, "%s ended before it was ready", id) < 0) {
				w->failed = NULL;
			}
			return true;
		}
		return false;
	}
	return false;
}

/* Wait until every job of @jobs (taken) is @want; EXIT_OK or a printed failure. */
static int copy_wait(struct qmp_client *c, const char *vm, json_t *jobs, const char *want)
{
	struct copy_wait w = {.vm = vm, .jobs = jobs, .want = want};
	/* no deadline of its own: a big disk over a slow link takes its time (interrupt) */
	uint64_t deadline = now_monotonic_us() + COPY_WAIT_MAX_US;
	int rc = json_array_size(jobs) ? vmctl_wait_event(c, deadline, copy_event, &w) : EXIT_OK;

	json_decref(jobs);
	if (rc == EXIT_OK && w.failed) {
		rc = vmctl_fail(EXIT_DAEMON, "copying the storage of %s: %s", vm, w.failed);
	}
	free(w.failed);
	return rc;
}

/* The writable disks of @vm (query-block), as a list of ids; NULL on failure (printed). */
static json_t *writable_disks(struct qmp_client *c, const char *vm, int *rc)
{
	json_auto_t *blk = NULL;
	json_t *disks = json_array(), *e;
	size_t i;

	*rc = vmctl_run_cmd(c, "query-block", json_pack("{s:s}", "vm", vm), &blk);
	if (*rc) {
		json_decref(disks);
		return NULL;
	}
	json_array_foreach (blk, i, e) {
		json_t *in = json_object_get(e, "inserted");

		if (in && !json_is_true(json_object_get(in, "ro"))) {
			json_array_append(disks, json_object_get(e, "device"));
		}
	}
	return disks;
}

static void copy_undo(struct qmp_client *c, const char *vm, json_t *disks)
{
	size_t i;
	json_t *d;

	json_array_foreach (disks, i, d) {
		_cleanup_free_ char *id = NULL;

		if (asprintf(&id, "migrate-%s", json_string_value(d)) < 0) {
			continue;
		}
		vmctl_run_cmd_quiet(c, "job-cancel",
				    json_pack("{s:s, s:s, s:b}", "vm", vm, "id", id, "force", 1));
		vmctl_run_cmd_quiet(c, "job-dismiss", json_pack("{s:s, s:s}", "vm", vm, "id", id));
		vmctl_run_cmd_quiet(c, "blockdev-del",
				    json_pack("{s:s, s:s}", "vm", vm, "node-name", id));
	}
}

int vmctl_copy_storage_start(struct qmp_client *c, const char *vm, const char *hostport,
			     json_t **ret_disks)
{
	const char *colon = strrchr(hostport, ':');
	_cleanup_free_ char *host = NULL;
	json_t *disks, *d, *jobs;
	size_t i;
	int rc;

	if (!colon || colon == hostport || !colon[1]) {
		return vmctl_fail(EXIT_USAGE, "--copy-storage '%s' is not HOST:PORT", hostport);
	}
	host = strndup(hostport, (size_t)(colon - hostport));
	disks = writable_disks(c, vm, &rc);
	if (!disks) {
		return rc;
	}
	jobs = json_array();
	json_array_foreach (disks, i, d) {
		const char *disk = json_string_value(d);
		_cleanup_free_ char *id = NULL;

		if (asprintf(&id, "migrate-%s", disk) < 0) {
			rc = vmctl_fail(EXIT_FAILURE, "out of memory");
			break;
		}
		/* the destination exports each disk under its id (vmctl export add) */
		rc = vmctl_run_cmd(c, "blockdev-add",
				   json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:{s:s, s:s, s:s}}}",
					     "vm", vm, "driver", "raw", "node-name", id, "file",
					     "driver", "nbd", "export", disk, "server", "type",
					     "inet", "host", host, "port", colon + 1),
				   NULL);
		if (rc == EXIT_OK) {
			rc = vmctl_run_cmd(c, "blockdev-mirror",
					   json_pack("{s:s, s:s, s:s, s:s, s:s}", "vm", vm,
						     "job-id", id, "device", disk, "target", id,
						     "sync", "full"),
					   NULL);
		}
		if (rc) {
			vmctl_run_cmd_quiet(c, "blockdev-del",
					    json_pack("{s:s, s:s}", "vm", vm, "node-name", id));
			break;
		}
		json_array_append_new(jobs, json_string(id));
	}
	if (rc == EXIT_OK) {
		if (!vmctl_json()) {
			printf("%s: copying %zu disk(s) to %s\n", vm, json_array_size(disks),
			       hostport);
		}
		rc = copy_wait(c, vm, json_incref(jobs), "ready");
	}
	if (rc) {
		/* only the disks whose copy started */
		json_array_foreach (jobs, i, d) {
			json_array_set_new(jobs, i,
					   json_string(json_string_value(d) + strlen("migrate-")));
		}
		copy_undo(c, vm, jobs);
		json_decref(jobs);
		json_decref(disks);
		return rc;
	}
	json_decref(jobs);
	*ret_disks = disks;
	return EXIT_OK;
}

int vmctl_copy_storage_end(struct qmp_client *c, const char *vm, json_t *disks, bool migrated)
{
	json_t *jobs = json_array(), *d;
	size_t i;
	int rc = EXIT_OK;

	if (!migrated) {
		copy_undo(c, vm, disks);
		json_decref(disks);
		json_decref(jobs);
		return EXIT_OK;
	}
	/* the source is stopped: each mirror's last pass makes its copy whole */
	json_array_foreach (disks, i, d) {
		_cleanup_free_ char *id = NULL;

		if (asprintf(&id, "migrate-%s", json_string_value(d)) < 0) {
			continue;
		}
		if (vmctl_run_cmd(c, "block-job-cancel",
				  json_pack("{s:s, s:s}", "vm", vm, "device", id),
				  NULL) == EXIT_OK) {
			json_array_append_new(jobs, json_string(id));
		} else {
			rc = EXIT_DAEMON;
		}
	}
	rc = copy_wait(c, vm, jobs, "null") ?: rc;
	json_array_foreach (disks, i, d) {
		_cleanup_free_ char *id = NULL;

		if (asprintf(&id, "migrate-%s", json_string_value(d)) >= 0) {
			vmctl_run_cmd_quiet(c, "blockdev-del",
					    json_pack("{s:s, s:s}", "vm", vm, "node-name", id));
		}
	}
	json_decref(disks);
	return rc;
}
