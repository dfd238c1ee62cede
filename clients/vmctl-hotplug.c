/*
 * vmctl disk add|remove|resize and vmctl nic add|remove: QEMU's hotplug
 * command pairs (blockdev-add + device_add, netdev_add + device_add, and
 * device_del + waiting for DEVICE_DELETED + blockdev-del / netdev_del),
 * with the backend undone when the device cannot be added. The node of
 * disk ID is "node-ID", the netdev of NIC ID is "netdev-ID".
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

static int device_remove(struct qmp_client *c, int argc, char **argv, const char *what,
			 const char *backend_cmd, const char *backend_key, const char *prefix)
{
	uint32_t timeout = 10;
	char backend[160];
	const char *vm, *id;
	json_t *args;
	int rc;

	rc = vmctl_timeout_options(argc, argv, &timeout);
	if (rc != EXIT_OK) {
		return rc;
	}
	if (optind != argc - 2) {
		return vmctl_fail(EXIT_USAGE, "%s remove needs a VM name and a %s id", what, what);
	}
	vm = argv[optind];
	id = argv[optind + 1];
	rc = vmctl_run_cmd(c, "device_del", json_pack("{s:s, s:s}", "vm", vm, "id", id), NULL);
	if (rc) {
		return rc;
	}
	rc = vmctl_wait_deleted(c, vm, id, now_monotonic_us() + (uint64_t)timeout * 1000000);
	if (rc == EXIT_TIMEOUT) {
		return vmctl_fail(EXIT_TIMEOUT,
				  "%s: the guest has not ejected %s within %u s; the removal stays "
				  "pending until it does or the VM resets ('vmctl events' shows "
				  "DEVICE_DELETED)",
				  vm, id, timeout);
	}
	if (rc) {
		return rc;
	}
	/* A cold-plugged device has no backend of ours: nothing more to free. */
	snprintf(backend, sizeof(backend), "%s%s", prefix, id);
	args = json_pack("{s:s, s:s}", "vm", vm, backend_key, backend);
	{
		struct error *err = NULL;
		int r = qmp_client_execute(c, backend_cmd, args, NULL, &err);

		if (r < 0 && !(r == -EREMOTEIO && err && strstr(err->msg, "not found")) &&
		    !(r == -EREMOTEIO && err && strstr(err->msg, "Failed to find"))) {
			return vmctl_report(err, r);
		}
		error_free(err);
	}
	printf(vmctl_json() ? "{\"removed\": true}\n" : "%s: %s %s removed\n", vm, what, id);
	return EXIT_OK;
}

/* disk add VM ID FILE [--format F] [--readonly] [--serial S] [--addr SLOT] [--cache none] [--aio A] */
static int disk_add(struct qmp_client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'}, {"readonly", no_argument, NULL, 'r'},
		{"serial", required_argument, NULL, 'S'}, {"addr", required_argument, NULL, 'a'},
		{"cache", required_argument, NULL, 'c'},  {"aio", required_argument, NULL, 'A'},
		{"json", no_argument, NULL, 'j'},	  {0},
	};
	const char *format = "raw", *serial = NULL, *addr = NULL, *cache = NULL, *aio = NULL;
	bool readonly = false;
	const char *vm, *id;
	char node[160];
	json_t *file, *bargs, *dargs;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "f:rS:a:c:A:j", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			format = optarg;
			break;
		case 'r':
			readonly = true;
			break;
		case 'S':
			serial = optarg;
			break;
		case 'a':
			addr = optarg;
			break;
		case 'c':
			cache = optarg;
			if (strcmp(cache, "none") != 0 && strcmp(cache, "writeback") != 0) {
				return vmctl_fail(EXIT_USAGE, "--cache must be none or writeback");
			}
			break;
		case 'A':
			aio = optarg; /* the file node checks it, with QEMU's messages */
			break;
		case 'j':
			vmctl_set_json();
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 3) {
		return vmctl_fail(EXIT_USAGE,
				  "disk add needs a VM name, a disk id and an image file");
	}
	vm = argv[optind];
	id = argv[optind + 1];
	snprintf(node, sizeof(node), "node-%s", id);
	file = json_pack("{s:s}", "driver", "file");
	if (aio) {
		json_object_set_new(file, "aio", json_string(aio));
	}
	if (vmctl_set_path(file, "filename", argv[optind + 2]) < 0) {
		json_decref(file);
		return vmctl_fail(EXIT_USAGE, "cannot resolve '%s'", argv[optind + 2]);
	}
	bargs = json_pack("{s:s, s:s, s:s, s:b, s:o}", "vm", vm, "driver", format, "node-name",
			  node, "read-only", readonly, "file", file);
	if (cache) {
		json_object_set_new(bargs, "cache",
				    json_pack("{s:b}", "direct", strcmp(cache, "none") == 0));
	}
	rc = vmctl_run_cmd(c, "blockdev-add", bargs, NULL);
	if (rc) {
		return rc;
	}
	dargs = json_pack("{s:s, s:s, s:s, s:s}", "vm", vm, "driver", "virtio-blk-pci", "id", id,
			  "drive", node);
	if (serial) {
		json_object_set_new(dargs, "serial", json_string(serial));
	}
	if (addr) {
		json_object_set_new(dargs, "addr", json_string(addr));
	}
	rc = vmctl_run_cmd(c, "device_add", dargs, NULL);
	if (rc) {
		/* no half-added disk: close the node again */
		vmctl_run_cmd_quiet(c, "blockdev-del",
				    json_pack("{s:s, s:s}", "vm", vm, "node-name", node));
		return rc;
	}
	printf(vmctl_json() ? "{\"added\": true}\n" : "%s: disk %s added\n", vm, id);
	return EXIT_OK;
}

static int disk_resize(struct qmp_client *c, int argc, char **argv)
{
	uint64_t size;
	int rc;

	if (argc != 4) {
		return vmctl_fail(EXIT_USAGE, "disk resize needs a VM name, a disk id and a size");
	}
	if (parse_size(argv[3], &size) < 0 || size > INT64_MAX) {
		return vmctl_fail(EXIT_USAGE, "'%s' is not a size", argv[3]);
	}
	rc = vmctl_run_cmd(c, "block_resize",
			   json_pack("{s:s, s:s, s:I}", "vm", argv[1], "device", argv[2], "size",
				     (json_int_t)size),
			   NULL);
	if (rc == EXIT_OK) {
		printf(vmctl_json() ? "{\"resized\": true}\n" : "%s: disk %s resized\n", argv[1],
		       argv[2]);
	}
	return rc;
}

/*
 * disk throttle VM ID [--bps SIZE] [--bps-rd SIZE] [--bps-wr SIZE] [--iops N]
 * [--iops-rd N] [--iops-wr N]: block_set_io_throttle; no option lifts the
 * limits. Sizes take suffixes (64M: bytes per second).
 */
static int disk_throttle(struct qmp_client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"bps", required_argument, NULL, 0},	 {"bps-rd", required_argument, NULL, 1},
		{"bps-wr", required_argument, NULL, 2},	 {"iops", required_argument, NULL, 3},
		{"iops-rd", required_argument, NULL, 4}, {"iops-wr", required_argument, NULL, 5},
		{"json", no_argument, NULL, 'j'},	 {0},
	};
	static const char *const keys[] = {"bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"};
	uint64_t v[6] = {0};
	json_t *args;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
		if (o >= 0 && o < 6) {
			if ((o < 3 ? parse_size(optarg, &v[o]) : parse_u64(optarg, &v[o])) < 0 ||
			    v[o] > INT64_MAX) {
				return vmctl_fail(EXIT_USAGE, "--%s: '%s' is not a %s",
						  opts[o].name, optarg, o < 3 ? "size" : "number");
			}
		} else if (o != 'j') {
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		return vmctl_fail(EXIT_USAGE, "disk throttle needs a VM name and a disk id");
	}
	args = json_pack("{s:s, s:s}", "vm", argv[optind], "device", argv[optind + 1]);
	for (unsigned i = 0; args && i < 6; i++) {
		json_object_set_new(args, keys[i], json_integer((json_int_t)v[i]));
	}
	rc = vmctl_run_cmd(c, "block_set_io_throttle", args, NULL);
	if (rc == EXIT_OK && !vmctl_json()) {
		printf("%s: disk %s limits set\n", argv[optind], argv[optind + 1]);
	}
	return rc;
}

int vmctl_cmd_disk(struct qmp_client *c, int argc, char **argv)
{
	if (argc < 2) {
		return vmctl_fail(EXIT_USAGE, "disk needs add, remove, resize or throttle");
	}
	if (strcmp(argv[1], "throttle") == 0) {
		return disk_throttle(c, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "add") == 0) {
		return disk_add(c, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "remove") == 0) {
		return device_remove(c, argc - 1, argv + 1, "disk", "blockdev-del", "node-name",
				     "node-");
	}
	if (strcmp(argv[1], "resize") == 0) {
		return disk_resize(c, argc - 1, argv + 1);
	}
	return vmctl_fail(EXIT_USAGE, "unknown disk command '%s'", argv[1]);
}

/* nic add VM ID [--model virtio-net|e1000] [--tap IFNAME] [--mac MAC] [--addr SLOT] */
static int nic_add(struct qmp_client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"model", required_argument, NULL, 'm'}, {"tap", required_argument, NULL, 't'},
		{"mac", required_argument, NULL, 'M'},	 {"addr", required_argument, NULL, 'a'},
		{"json", no_argument, NULL, 'j'},	 {0},
	};
	const char *model = "virtio-net-pci", *tap = NULL, *mac = NULL, *addr = NULL;
	const char *vm, *id;
	char netdev[160];
	json_t *nargs, *dargs;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "m:t:M:a:j", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			if (strcmp(optarg, "virtio-net") == 0 || strcmp(optarg, "virtio") == 0) {
				model = "virtio-net-pci";
			} else if (strcmp(optarg, "e1000") == 0) {
				model = "e1000";
			} else {
				return vmctl_fail(EXIT_USAGE,
						  "--model must be virtio-net or e1000");
			}
			break;
		case 't':
			tap = optarg;
			break;
		case 'M':
			mac = optarg;
			break;
		case 'a':
			addr = optarg;
			break;
		case 'j':
			vmctl_set_json();
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		return vmctl_fail(EXIT_USAGE, "nic add needs a VM name and a NIC id");
	}
	vm = argv[optind];
	id = argv[optind + 1];
	snprintf(netdev, sizeof(netdev), "netdev-%s", id);
	nargs = json_pack("{s:s, s:s, s:s}", "vm", vm, "type", tap ? "tap" : "user", "id", netdev);
	if (tap) {
		json_object_set_new(nargs, "ifname", json_string(tap));
	}
	rc = vmctl_run_cmd(c, "netdev_add", nargs, NULL);
	if (rc) {
		return rc;
	}
	dargs = json_pack("{s:s, s:s, s:s, s:s}", "vm", vm, "driver", model, "id", id, "netdev",
			  netdev);
	if (mac) {
		json_object_set_new(dargs, "mac", json_string(mac));
	}
	if (addr) {
		json_object_set_new(dargs, "addr", json_string(addr));
	}
	rc = vmctl_run_cmd(c, "device_add", dargs, NULL);
	if (rc) {
		vmctl_run_cmd_quiet(c, "netdev_del",
				    json_pack("{s:s, s:s}", "vm", vm, "id", netdev));
		return rc;
	}
	printf(vmctl_json() ? "{\"added\": true}\n" : "%s: nic %s added\n", vm, id);
	return EXIT_OK;
}

/* nic link NAME ID up|down: set_link. */
static int nic_link(struct qmp_client *c, int argc, char **argv)
{
	int rc;

	if (argc != 4 || (strcmp(argv[3], "up") != 0 && strcmp(argv[3], "down") != 0)) {
		return vmctl_fail(EXIT_USAGE, "nic link needs a VM name, a NIC id and up or down");
	}
	rc = vmctl_run_cmd(c, "set_link",
			   json_pack("{s:s, s:s, s:b}", "vm", argv[1], "name", argv[2], "up",
				     strcmp(argv[3], "up") == 0),
			   NULL);
	if (rc == EXIT_OK && !vmctl_json()) {
		printf("%s: nic %s link %s\n", argv[1], argv[2], argv[3]);
	}
	return rc;
}

int vmctl_cmd_nic(struct qmp_client *c, int argc, char **argv)
{
	if (argc < 2) {
		return vmctl_fail(EXIT_USAGE, "nic needs add, remove or link");
	}
	if (strcmp(argv[1], "link") == 0) {
		return nic_link(c, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "add") == 0) {
		return nic_add(c, argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "remove") == 0) {
		return device_remove(c, argc - 1, argv + 1, "nic", "netdev_del", "id", "netdev-");
	}
	return vmctl_fail(EXIT_USAGE, "unknown nic command '%s'", argv[1]);
}

/*
 * cd eject NAME ID [--force] and cd insert NAME ID FILE [--format F]
 * [--force]: QEMU's eject and blockdev-change-medium on a CD-ROM drive.
 */
int vmctl_cmd_cd(struct qmp_client *c, int argc, char **argv)
{
	const char *format = NULL, *file = NULL;
	bool force = false, insert;
	unsigned fixed;
	json_t *args;
	int rc;

	if (argc < 2 || (strcmp(argv[1], "eject") != 0 && strcmp(argv[1], "insert") != 0)) {
		return vmctl_fail(EXIT_USAGE, "cd needs eject or insert");
	}
	insert = strcmp(argv[1], "insert") == 0;
	fixed = insert ? 5 : 4;
	if ((unsigned)argc < fixed) {
		return vmctl_fail(EXIT_USAGE,
				  insert ? "cd insert needs a VM name, a drive id and a file"
					 : "cd eject needs a VM name and a drive id");
	}
	for (int i = (int)fixed; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0) {
			force = true;
		} else if (insert && strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
			format = argv[++i];
		} else {
			return vmctl_fail(EXIT_USAGE, "cd %s: unknown option '%s'", argv[1],
					  argv[i]);
		}
	}
	args = json_pack("{s:s, s:s, s:b}", "vm", argv[2], "id", argv[3], "force", force);
	if (insert) {
		file = argv[4];
		json_object_set_new(args, "filename", json_string(file));
		json_object_set_new(args, "format", json_string(format ? format : "raw"));
	}
	rc = vmctl_run_cmd(c, insert ? "blockdev-change-medium" : "eject", args, NULL);
	if (rc == EXIT_OK && !vmctl_json()) {
		if (insert) {
			printf("%s: cd %s holds %s\n", argv[2], argv[3], file);
		} else {
			printf("%s: cd %s ejected\n", argv[2], argv[3]);
		}
	}
	return rc;
}
