/*
 * vmctl memory list|set|resize|stats: the VM's memory devices with QEMU's
 * commands (query-memory-size-summary + query-memory-devices; qom-set of a
 * virtio-mem device's requested-size, optionally waiting for the guest to
 * get there through MEMORY_DEVICE_SIZE_CHANGE) and the balloon's
 * statistics (qom-set guest-stats-polling-interval, qom-get guest-stats);
 * "set" sizes the guest's memory with whichever of the two the VM has.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/vmctl.h"
#include "common/log.h"
#include "common/parse.h"

static int memory_list(struct qmp_client *c, int argc, char **argv)
{
	json_auto_t *summary = NULL, *devs = NULL;
	char b1[32], b2[32], b3[32], b4[32];
	size_t i;
	json_t *d;
	int rc;

	if (argc != 2) {
		return vmctl_fail(EXIT_USAGE, "memory list needs a VM name");
	}
	rc = vmctl_run_cmd(c, "query-memory-size-summary", json_pack("{s:s}", "vm", argv[1]),
			   &summary);
	if (rc == EXIT_OK) {
		rc = vmctl_run_cmd(c, "query-memory-devices", json_pack("{s:s}", "vm", argv[1]),
				   &devs);
	}
	if (rc != EXIT_OK) {
		return rc;
	}
	if (vmctl_json()) {
		json_auto_t *o = json_pack("{s:O, s:O}", "summary", summary, "devices", devs);
		char *s = json_dumps(o, JSON_COMPACT);

		printf("%s\n", s ? s : "{}");
		free(s);
		return EXIT_OK;
	}
	printf("base memory %s, plugged %s\n",
	       format_size((uint64_t)json_integer_value(json_object_get(summary, "base-memory")),
			   b1, sizeof(b1)),
	       format_size((uint64_t)json_integer_value(json_object_get(summary, "plugged-memory")),
			   b2, sizeof(b2)));
	if (json_array_size(devs)) {
		printf("%-16s %-10s %-18s %10s %10s %10s %8s\n", "ID", "TYPE", "ADDRESS", "PLUGGED",
		       "REQUESTED", "MAX", "BLOCK");
	}
	json_array_foreach (devs, i, d) {
		json_t *x = json_object_get(d, "data");

		printf("%-16s %-10s 0x%016" PRIx64 " %10s %10s %10s %8s\n",
		       json_string_value(json_object_get(x, "id")) ?: "-",
		       json_string_value(json_object_get(d, "type")) ?: "?",
		       (uint64_t)json_integer_value(json_object_get(x, "memaddr")),
		       format_size((uint64_t)json_integer_value(json_object_get(x, "size")), b1,
				   sizeof(b1)),
		       format_size(
			       (uint64_t)json_integer_value(json_object_get(x, "requested-size")),
			       b2, sizeof(b2)),
		       format_size((uint64_t)json_integer_value(json_object_get(x, "max-size")), b3,
				   sizeof(b3)),
		       format_size((uint64_t)json_integer_value(json_object_get(x, "block-size")),
				   b4, sizeof(b4)));
	}
	return EXIT_OK;
}

/* What --wait of "memory set" and "memory resize" waits for; either event may come first. */
struct mem_target {
	const char *vm;
	bool balloon; /* BALLOON_CHANGE to @actual */
	uint64_t actual;
	const char *dev; /* MEMORY_DEVICE_SIZE_CHANGE of @dev to @dev_size */
	uint64_t dev_size;
};

static bool target_reached(const char *name, json_t *data, void *opaque)
{
	struct mem_target *t = opaque;

	if (strcmp(json_string_value(json_object_get(data, "vm")) ?: "", t->vm) != 0) {
		return false;
	}
	if (t->balloon && strcmp(name, "BALLOON_CHANGE") == 0 &&
	    (uint64_t)json_integer_value(json_object_get(data, "actual")) == t->actual) {
		t->balloon = false;
	}
	if (t->dev && strcmp(name, "MEMORY_DEVICE_SIZE_CHANGE") == 0 &&
	    strcmp(json_string_value(json_object_get(data, "id")) ?: "", t->dev) == 0 &&
	    (uint64_t)json_integer_value(json_object_get(data, "size")) == t->dev_size) {
		t->dev = NULL;
	}
	return !t->balloon && !t->dev;
}

static int wait_target(struct qmp_client *c, struct mem_target *t, unsigned timeout)
{
	if (!t->balloon && !t->dev) {
		return EXIT_OK;
	}
	return vmctl_wait_event(c, now_monotonic_us() + (uint64_t)timeout * 1000000, target_reached,
				t);
}

/* --wait, --timeout S and --json of "memory resize" and "memory set". */
static int wait_options(int argc, char **argv, const char *what, bool *wait, uint32_t *timeout)
{
	static const struct option opts[] = {
		{"wait", no_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	int o;

	optind = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'w':
			*wait = true;
			break;
		case 't':
			if (parse_u32(optarg, timeout) < 0) {
				return vmctl_fail(EXIT_USAGE, "--timeout needs seconds");
			}
			break;
		case 'j':
			vmctl_set_json();
			break;
		default:
			return vmctl_fail(EXIT_USAGE, "unknown option for memory %s", what);
		}
	}
	return EXIT_OK;
}

static int memory_resize(struct qmp_client *c, int argc, char **argv)
{
	json_auto_t *now = NULL;
	uint32_t timeout = 60;
	bool wait = false;
	uint64_t size;
	char buf[32];
	int rc;

	rc = wait_options(argc, argv, "resize", &wait, &timeout);
	if (rc != EXIT_OK) {
		return rc;
	}
	if (argc - optind != 3) {
		return vmctl_fail(EXIT_USAGE,
				  "memory resize needs a VM name, a memory device id and a size");
	}
	if (parse_size(argv[optind + 2], &size) < 0 || size > INT64_MAX) {
		return vmctl_fail(EXIT_USAGE, "'%s' is not a size", argv[optind + 2]);
	}
	rc = vmctl_run_cmd(c, "qom-set",
			   json_pack("{s:s, s:s, s:s, s:I}", "vm", argv[optind], "path",
				     argv[optind + 1], "property", "requested-size", "value",
				     (json_int_t)size),
			   NULL);
	if (rc != EXIT_OK) {
		return rc;
	}
	if (wait) {
		/* already there (nothing to plug) or wait for the guest */
		rc = vmctl_run_cmd(c, "qom-get",
				   json_pack("{s:s, s:s, s:s}", "vm", argv[optind], "path",
					     argv[optind + 1], "property", "size"),
				   &now);
		if (rc == EXIT_OK && (uint64_t)json_integer_value(now) != size) {
			struct mem_target t = {
				.vm = argv[optind], .dev = argv[optind + 1], .dev_size = size};

			rc = wait_target(c, &t, timeout);
		}
		if (rc == EXIT_TIMEOUT) {
			return vmctl_fail(EXIT_TIMEOUT,
					  "the guest has not plugged %s within %u s (the request "
					  "stands)",
					  format_size(size, buf, sizeof(buf)), timeout);
		}
		if (rc != EXIT_OK) {
			return rc;
		}
	}
	if (vmctl_json()) {
		printf("{\"requested-size\": %" PRIu64 "}\n", size);
	} else {
		printf("%s: memory device %s %s %s\n", argv[optind], argv[optind + 1],
		       wait ? "has" : "asked for", format_size(size, buf, sizeof(buf)));
	}
	return EXIT_OK;
}

static int set_requested(struct qmp_client *c, const char *vm, const char *id, uint64_t size)
{
	return vmctl_run_cmd(c, "qom-set",
			     json_pack("{s:s, s:s, s:s, s:I}", "vm", vm, "path", id, "property",
				       "requested-size", "value", (json_int_t)size),
			     NULL);
}

/*
 * memory set NAME SIZE: the guest's memory becomes SIZE, with what the VM
 * has. Above its RAM the one virtio-mem device plugs the difference (and a
 * balloon gives everything back); up to its RAM the memory devices unplug
 * all and the balloon takes RAM - SIZE.
 */
static int memory_set(struct qmp_client *c, int argc, char **argv)
{
	json_auto_t *summary = NULL, *devs = NULL, *bal = NULL, *cur = NULL;
	struct error *berr = NULL;
	struct mem_target t = {0};
	uint32_t timeout = 60;
	uint64_t size, base, balloon_to = 0;
	bool wait = false, has_balloon;
	const char *vm, *one = NULL;
	char b1[32], b2[32];
	size_t i, n_mem = 0;
	json_t *d;
	int rc;

	rc = wait_options(argc, argv, "set", &wait, &timeout);
	if (rc != EXIT_OK) {
		return rc;
	}
	if (argc - optind != 2) {
		return vmctl_fail(EXIT_USAGE, "memory set needs a VM name and a size");
	}
	vm = argv[optind];
	if (parse_size(argv[optind + 1], &size) < 0 || size == 0 || size > INT64_MAX) {
		return vmctl_fail(EXIT_USAGE, "'%s' is not a size", argv[optind + 1]);
	}
	rc = vmctl_run_cmd(c, "query-memory-size-summary", json_pack("{s:s}", "vm", vm), &summary);
	if (rc == EXIT_OK) {
		rc = vmctl_run_cmd(c, "query-memory-devices", json_pack("{s:s}", "vm", vm), &devs);
	}
	if (rc != EXIT_OK) {
		return rc;
	}
	base = (uint64_t)json_integer_value(json_object_get(summary, "base-memory"));
	json_array_foreach (devs, i, d) {
		if (strcmp(json_string_value(json_object_get(d, "type")) ?: "", "virtio-mem") ==
		    0) {
			one = json_string_value(json_object_get(json_object_get(d, "data"), "id"));
			n_mem++;
		}
	}
	/* no balloon: QEMU's DeviceNotActive, not an error of this command */
	rc = qmp_client_execute(c, "query-balloon", json_pack("{s:s}", "vm", vm), &bal, &berr);
	if (rc < 0 && rc != -EREMOTEIO) {
		return vmctl_report(berr, rc);
	}
	error_free(berr);
	has_balloon = rc == 0;
	t.vm = vm;
	if (size > base) {
		if (n_mem > 1) {
			return vmctl_fail(
				EXIT_DAEMON,
				"%s has %zu memory devices: choose one with 'vmctl memory "
				"resize %s ID SIZE'",
				vm, n_mem, vm);
		}
		if (!one) {
			return vmctl_fail(
				EXIT_DAEMON,
				"%s cannot grow above its RAM (%s) without a memory device "
				"(maxmem and memory_devices in its definition)",
				vm, format_size(base, b1, sizeof(b1)));
		}
		rc = set_requested(c, vm, one, size - base);
		t.dev = one;
		t.dev_size = size - base;
		balloon_to = base;
	} else {
		if (size < base && !has_balloon) {
			return vmctl_fail(EXIT_DAEMON,
					  "%s cannot shrink below its RAM (%s) without a balloon "
					  "(\"balloon\": true in its definition)",
					  vm, format_size(base, b1, sizeof(b1)));
		}
		rc = EXIT_OK;
		json_array_foreach (devs, i, d) {
			json_t *x = json_object_get(d, "data");
			const char *id = json_string_value(json_object_get(x, "id"));

			if (rc == EXIT_OK && id &&
			    json_integer_value(json_object_get(x, "requested-size")) > 0) {
				rc = set_requested(c, vm, id, 0);
				if (n_mem == 1) {
					t.dev = id;
					t.dev_size = 0;
				}
			}
		}
		balloon_to = size;
	}
	if (rc == EXIT_OK && has_balloon) {
		rc = vmctl_run_cmd(
			c, "balloon",
			json_pack("{s:s, s:I}", "vm", vm, "value", (json_int_t)balloon_to), NULL);
		if (rc == EXIT_OK &&
		    (uint64_t)json_integer_value(json_object_get(bal, "actual")) != balloon_to) {
			t.balloon = true;
			t.actual = balloon_to;
		}
	}
	if (rc != EXIT_OK) {
		return rc;
	}
	if (wait) {
		if (t.dev &&
		    vmctl_run_cmd(c, "qom-get",
				  json_pack("{s:s, s:s, s:s}", "vm", vm, "path", t.dev, "property",
					    "size"),
				  &cur) == EXIT_OK &&
		    (uint64_t)json_integer_value(cur) == t.dev_size) {
			t.dev = NULL; /* already there */
		}
		rc = wait_target(c, &t, timeout);
		if (rc == EXIT_TIMEOUT) {
			return vmctl_fail(EXIT_TIMEOUT,
					  "the guest has not reached %s within %u s (the request "
					  "stands)",
					  format_size(size, b1, sizeof(b1)), timeout);
		}
		if (rc != EXIT_OK) {
			return rc;
		}
	}
	if (vmctl_json()) {
		printf("{\"size\": %" PRIu64 "}\n", size);
	} else {
		printf("%s: memory %s %s (RAM %s)\n", vm, wait ? "is" : "asked to be",
		       format_size(size, b1, sizeof(b1)), format_size(base, b2, sizeof(b2)));
	}
	return EXIT_OK;
}

/* The balloon's statistics (qom-get guest-stats), after setting the polling interval. */
static int memory_stats(struct qmp_client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"interval", required_argument, NULL, 'i'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	static const char path[] = "/machine/peripheral/balloon0";
	json_auto_t *st = NULL;
	uint32_t interval = 0;
	bool set = false;
	const char *key;
	json_t *v;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'i':
			if (parse_u32(optarg, &interval) < 0) {
				return vmctl_fail(EXIT_USAGE, "--interval needs seconds");
			}
			set = true;
			break;
		case 'j':
			vmctl_set_json();
			break;
		default:
			return vmctl_fail(EXIT_USAGE, "unknown option for memory stats");
		}
	}
	if (argc - optind != 1) {
		return vmctl_fail(EXIT_USAGE, "memory stats needs a VM name");
	}
	if (set) {
		rc = vmctl_run_cmd(c, "qom-set",
				   json_pack("{s:s, s:s, s:s, s:I}", "vm", argv[optind], "path",
					     path, "property", "guest-stats-polling-interval",
					     "value", (json_int_t)interval),
				   NULL);
		if (rc != EXIT_OK) {
			return rc;
		}
	}
	rc = vmctl_run_cmd(c, "qom-get",
			   json_pack("{s:s, s:s, s:s}", "vm", argv[optind], "path", path,
				     "property", "guest-stats"),
			   &st);
	if (rc != EXIT_OK) {
		return rc;
	}
	if (vmctl_json()) {
		char *text = json_dumps(st, JSON_COMPACT);

		printf("%s\n", text ? text : "{}");
		free(text);
		return EXIT_OK;
	}
	printf("last update: %" PRId64 "%s\n",
	       (int64_t)json_integer_value(json_object_get(st, "last-update")),
	       json_integer_value(json_object_get(st, "last-update")) ? ""
								      : " (never: set --interval)");
	json_object_foreach (json_object_get(st, "stats"), key, v) {
		/* values above INT64_MAX arrive as strings (client.c); 2^64-1: not reported */
		if (json_is_integer(v)) {
			printf("%-24s %" PRId64 "\n", key, (int64_t)json_integer_value(v));
		} else if (json_is_string(v) &&
			   strcmp(json_string_value(v), "18446744073709551615") != 0) {
			printf("%-24s %s\n", key, json_string_value(v));
		} else {
			printf("%-24s -\n", key);
		}
	}
	return EXIT_OK;
}

int vmctl_cmd_memory(struct qmp_client *c, int argc, char **argv)
{
	if (argc < 2) {
		return vmctl_fail(EXIT_USAGE, "memory needs list, set, resize or stats");
	}
	if (strcmp(argv[1], "stats") == 0) {
		return memory_stats(c, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "list") == 0) {
		return memory_list(c, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "resize") == 0) {
		return memory_resize(c, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "set") == 0) {
		return memory_set(c, argc - 1, argv + 1);
	}
	return vmctl_fail(EXIT_USAGE, "unknown memory command '%s'", argv[1]);
}
