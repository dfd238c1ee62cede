/*
 * vmctl cpus set VM N [--timeout S]: bring a running VM to N present vCPUs
 * with QEMU's commands: query-hotpluggable-cpus, then device_add of the
 * lowest absent vCPUs (ids cpuN), or device_del of the highest hot-plugged
 * ones, waiting for each DEVICE_DELETED (the guest ejects them). The
 * cold-plugged vCPUs (the definition's vcpus) cannot be removed.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/vmctl.h"
#include "common/log.h"
#include "common/parse.h"

#define CPU_PATH_PREFIX "/machine/peripheral/"

static int cpus_set(struct qmp_client *c, int argc, char **argv)
{
	json_auto_t *slots = NULL;
	uint32_t timeout = 10, want;
	unsigned present = 0, max, cold = 0;
	const char *vm;
	uint64_t deadline;
	json_t *e;
	size_t i;
	int rc;

	rc = vmctl_timeout_options(argc, argv, &timeout);
	if (rc != EXIT_OK) {
		return rc;
	}
	if (optind != argc - 2) {
		return vmctl_fail(EXIT_USAGE, "cpus set needs a VM name and a number of vCPUs");
	}
	vm = argv[optind];
	if (parse_u32(argv[optind + 1], &want) < 0 || want == 0) {
		return vmctl_fail(EXIT_USAGE, "'%s' is not a number of vCPUs", argv[optind + 1]);
	}
	rc = vmctl_run_cmd(c, "query-hotpluggable-cpus", json_pack("{s:s}", "vm", vm), &slots);
	if (rc) {
		return rc;
	}
	max = (unsigned)json_array_size(slots);
	json_array_foreach (slots, i, e) {
		const char *path = json_string_value(json_object_get(e, "qom-path"));

		present += path != NULL;
		cold += path && strncmp(path, CPU_PATH_PREFIX, strlen(CPU_PATH_PREFIX)) != 0;
	}
	if (want > max) {
		return vmctl_fail(EXIT_USAGE, "%s: %u vCPUs is more than its maxcpus %u", vm, want,
				  max);
	}
	if (want < cold) {
		return vmctl_fail(EXIT_USAGE,
				  "%s: %u vCPUs is fewer than its %u cold-plugged ones, which "
				  "cannot be removed",
				  vm, want, cold);
	}
	/* The list is highest vCPU first: add from its end, remove from its start. */
	for (i = max; present < want && i-- > 0;) {
		json_t *p;
		char id[32];

		e = json_array_get(slots, i);
		if (json_object_get(e, "qom-path")) {
			continue;
		}
		p = json_object_get(e, "props");
		snprintf(id, sizeof(id), "cpu%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(p, "core-id")));
		rc = vmctl_run_cmd(c, "device_add",
				   json_pack("{s:s, s:s, s:s, s:O, s:O, s:O}", "vm", vm, "driver",
					     json_string_value(json_object_get(e, "type")), "id",
					     id, "socket-id", json_object_get(p, "socket-id"),
					     "core-id", json_object_get(p, "core-id"), "thread-id",
					     json_object_get(p, "thread-id")),
				   NULL);
		if (rc) {
			return rc;
		}
		present++;
	}
	deadline = now_monotonic_us() + (uint64_t)timeout * 1000000;
	for (i = 0; present > want && i < max; i++) {
		const char *path =
			json_string_value(json_object_get(json_array_get(slots, i), "qom-path"));
		const char *id;

		if (!path || strncmp(path, CPU_PATH_PREFIX, strlen(CPU_PATH_PREFIX)) != 0) {
			continue;
		}
		id = path + strlen(CPU_PATH_PREFIX);
		rc = vmctl_run_cmd(c, "device_del", json_pack("{s:s, s:s}", "vm", vm, "id", id),
				   NULL);
		if (rc) {
			return rc;
		}
		rc = vmctl_wait_deleted(c, vm, id, deadline);
		if (rc == EXIT_TIMEOUT) {
			return vmctl_fail(EXIT_TIMEOUT,
					  "%s: the guest has not ejected vCPU %s within %u s; the "
					  "removal stays pending until it does",
					  vm, id, timeout);
		}
		if (rc) {
			return rc;
		}
		present--;
	}
	if (vmctl_json()) {
		printf("{\"vcpus\": %u}\n", present);
	} else {
		printf("%s: %u vCPUs\n", vm, present);
	}
	return EXIT_OK;
}

int vmctl_cmd_cpus(struct qmp_client *c, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "set") == 0) {
		return cpus_set(c, argc - 1, argv + 1);
	}
	return vmctl_fail(EXIT_USAGE, "cpus needs set");
}
