/*
 * vmctl: control the VMs of a running vmmd (vmctl(1)). One subcommand per
 * run, over the QMP client library (client.c). Single-threaded.
 *
 * Exit codes (scripts rely on them): 0 success, 1 the daemon reported an
 * error, 2 usage error, 3 no such VM, 4 cannot connect to vmmd, 5 timed out.
 */
#include "config.h"

#include <errno.h>
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "clients/client.h"
#include "clients/vmctl.h"
#include "clients/vmctl-import.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/parse.h"

#define DEFAULT_SOCKET "/run/vmmd/vmmd.sock"

static const char *socket_path;
static bool json_output;

struct vmctl_command {
	const char *name;
	/* argv[0] is the command name; returns an exit code */
	int (*fn)(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd);
	const char *synopsis; /* after "vmctl NAME" */
	const char *summary;  /* one line for vmctl --help */
	const char *help;     /* the rest of vmctl NAME --help */
	const char *qmp;      /* simple commands: the protocol command they send */
	const char *done;     /* simple commands: what they print on success */
};

static const char *const exit_class[] = {
	[EXIT_DAEMON] = "GenericError",	     [EXIT_USAGE] = "UsageError",
	[EXIT_NOT_FOUND] = "DeviceNotFound", [EXIT_CONNECT] = "ConnectError",
	[EXIT_TIMEOUT] = "Timeout",
};

/*
 * Report an error and return @code: "vmctl: MESSAGE" on stderr, or with
 * --json {"error": {"class", "desc", "exit-status"}} on stdout, the shape
 * of a QMP error reply, so a script reads every outcome from stdout.
 */
static int fail(int code, const char *cls, const char *fmt, ...) _printf_(3, 4);

static int fail(int code, const char *cls, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		msg = NULL;
	}
	va_end(ap);
	if (json_output) {
		json_auto_t *e = json_pack("{s:{s:s, s:s, s:i}}", "error", "class",
					   cls ? cls : exit_class[code], "desc", msg ? msg : "?",
					   "exit-status", code);
		char *t = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);

		puts(t ? t : "{}");
		free(t);
		fflush(stdout);
	} else {
		fprintf(stderr, "vmctl: %s\n", msg ? msg : "?");
		if (code == EXIT_USAGE) {
			fprintf(stderr, "Try 'vmctl --help'.\n");
		}
	}
	return code;
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);

static int usage_error(const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		msg = NULL;
	}
	va_end(ap);
	return fail(EXIT_USAGE, NULL, "%s", msg ? msg : "?");
}

/*
 * The daemon's messages name protocol commands ("start it with vm-start");
 * a vmctl user needs the vmctl command instead.
 */
static char *vmctl_words(const char *msg)
{
	static const struct {
		const char *proto, *vmctl;
	} words[] = {
		{"vm-start", "'vmctl start'"},	      {"vm-create", "'vmctl create'"},
		{"vm-delete", "'vmctl delete'"},      {"vm-destroy", "'vmctl stop --force'"},
		{"system_powerdown", "'vmctl stop'"}, {"system_reset", "'vmctl reset'"},
		{"query-vms", "'vmctl list'"},
	};
	char *out = strdup(msg);

	for (size_t i = 0; out && i < ARRAY_SIZE(words); i++) {
		char *hit = strstr(out, words[i].proto), *next;
		size_t plen = strlen(words[i].proto);

		while (hit) {
			bool word = (hit == out || !(isalnum((unsigned char)hit[-1]) ||
						     hit[-1] == '-' || hit[-1] == '_')) &&
				    !(isalnum((unsigned char)hit[plen]) || hit[plen] == '-' ||
				      hit[plen] == '_');

			if (!word) {
				hit = strstr(hit + plen, words[i].proto);
				continue;
			}
			if (asprintf(&next, "%.*s%s%s", (int)(hit - out), out, words[i].vmctl,
				     hit + plen) < 0) {
				free(out);
				return NULL;
			}
			hit = strstr(next + (hit - out) + strlen(words[i].vmctl), words[i].proto);
			free(out);
			out = next;
		}
	}
	return out;
}

/* Map an error from the library to an exit code, printing it. */
static int report(struct error *err, int r)
{
	int code = EXIT_DAEMON;
	const char *cls = NULL;
	char *msg;

	if (r != -EREMOTEIO) {
		code = EXIT_CONNECT;
	} else if (err && err->cls == ERROR_CLASS_DEVICE_NOT_FOUND) {
		code = EXIT_NOT_FOUND;
	}
	if (r == -EREMOTEIO && err) {
		cls = error_class_name(err->cls);
	}
	msg = vmctl_words(err ? err->msg : strerror(-r));
	fail(code, cls, "%s", msg ? msg : "?");
	free(msg);
	error_free(err);
	return code;
}

static int open_client(struct qmp_client **ret)
{
	struct error *err = NULL;
	int r = qmp_client_connect(socket_path, true, ret, &err);

	if (r < 0) {
		fail(EXIT_CONNECT, NULL, "%s", err ? err->msg : strerror(-r));
		error_free(err);
		return EXIT_CONNECT;
	}
	return EXIT_OK;
}

static void print_json(json_t *j)
{
	char *t = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

	if (t) {
		puts(t);
		free(t);
	}
}

/* Run one command; on success *ret (may be NULL) gets the return value. */
static int run_cmd(struct qmp_client *c, const char *cmd, json_t *args, json_t **ret)
{
	struct error *err = NULL;
	int r = qmp_client_execute(c, cmd, args, ret, &err);

	return r < 0 ? report(err, r) : EXIT_OK;
}

static const char *str(json_t *o, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : def;
}

static int cmd_list(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	json_auto_t *vms = NULL;
	size_t i;
	json_t *vm;
	int rc;

	if (argc > 1) {
		return usage_error("list takes no argument, got '%s'", argv[1]);
	}
	rc = run_cmd(c, "query-vms", NULL, &vms);
	if (rc) {
		return rc;
	}
	if (json_output) {
		print_json(vms);
		return EXIT_OK;
	}
	printf("%-20s %-16s %5s %8s %s\n", "NAME", "STATE", "VCPUS", "MEMORY", "AUTOSTART");
	json_array_foreach (vms, i, vm) {
		char mem[32];

		format_size((uint64_t)json_integer_value(json_object_get(vm, "memory")), mem,
			    sizeof(mem));
		printf("%-20s %-16s %5lld %8s %s\n", str(vm, "name", "?"), str(vm, "status", "?"),
		       (long long)json_integer_value(json_object_get(vm, "vcpus")), mem,
		       json_is_true(json_object_get(vm, "autostart")) ? "yes" : "no");
	}
	return EXIT_OK;
}

static json_t *one_vm_args(const char *name)
{
	return json_pack("{s:s}", "vm", name);
}

/* The VmInfo of one VM, or an exit code. */
static int query_one(struct qmp_client *c, const char *name, json_t **ret)
{
	json_auto_t *list = NULL;
	int rc = run_cmd(c, "query-vms", one_vm_args(name), &list);

	if (rc) {
		return rc;
	}
	*ret = json_incref(json_array_get(list, 0));
	return *ret ? EXIT_OK : EXIT_NOT_FOUND;
}

static int cmd_status(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	json_auto_t *vm = NULL;
	const char *key;
	json_t *v;
	int rc;

	if (argc != 2) {
		return usage_error("%s", "status needs exactly one VM name");
	}
	rc = query_one(c, argv[1], &vm);
	if (rc) {
		return rc;
	}
	if (json_output) {
		print_json(vm);
		return EXIT_OK;
	}
	json_object_foreach (vm, key, v) {
		char *t = json_is_string(v) ? strdup(json_string_value(v))
					    : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

		printf("%-15s %s\n", key, t ? t : "?");
		free(t);
	}
	return EXIT_OK;
}

/* start, pause, resume, reset, delete and stop --force: one command, one VM. */
static int simple(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *command)
{
	const char *cmd = command->qmp, *done = command->done;
	static const struct option opts[] = {
		{"force", no_argument, NULL, 'f'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	bool force = false;
	json_t *args;
	int o, rc;

	optind = 0; /* 0: glibc re-initialises (argument permutation included) */
	while ((o = getopt_long(argc, argv, "fj", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			if (strcmp(cmd, "vm-delete") != 0) {
				return usage_error("%s does not take --force", argv[0]);
			}
			force = true;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		return usage_error("%s needs exactly one VM name", argv[0]);
	}
	args = one_vm_args(argv[optind]);
	if (force) {
		json_object_set_new(args, "force", json_true());
	}
	rc = run_cmd(c, cmd, args, NULL);
	if (rc == EXIT_OK && !json_output) {
		printf("%s: %s\n", argv[optind], done);
	} else if (rc == EXIT_OK) {
		puts("{}");
	}
	return rc;
}

/* The status of VM @name, or NULL. */
static char *vm_status(struct qmp_client *c, const char *name)
{
	json_auto_t *list = NULL;
	struct error *err = NULL;

	if (qmp_client_execute(c, "query-vms", one_vm_args(name), &list, &err) < 0) {
		error_free(err);
		return NULL;
	}
	return json_is_string(json_object_get(json_array_get(list, 0), "status"))
		       ? strdup(str(json_array_get(list, 0), "status", ""))
		       : NULL;
}

/*
 * start NAME [--wait]: with --wait (the vmmd-vm@.service unit) a running,
 * paused or prelaunch VM is adopted, and vmctl stays until the VM stops:
 * exit 0 after a guest or user shutdown, 1 when it stops in an error state
 * or the daemon goes away.
 */
static int cmd_start(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"wait", no_argument, NULL, 'w'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	_cleanup_free_ char *status = NULL;
	bool wait = false;
	const char *name;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "wj", opts, NULL)) != -1) {
		switch (o) {
		case 'w':
			wait = true;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		return usage_error("%s", "start needs exactly one VM name");
	}
	name = argv[optind];
	status = wait ? vm_status(c, name) : NULL;
	/* prelaunch: a stopped VM after a reset, or one being started */
	if (!status || (strcmp(status, "running") != 0 && strcmp(status, "paused") != 0 &&
			strcmp(status, "prelaunch") != 0)) {
		rc = run_cmd(c, "vm-start", one_vm_args(name), NULL);
		if (rc) {
			return rc;
		}
	}
	if (!wait) {
		if (json_output) {
			puts("{}");
		} else {
			printf("%s: started\n", name);
		}
		return EXIT_OK;
	}
	if (!json_output) {
		printf("%s: running; waiting for it to stop\n", name);
		fflush(stdout);
	}
	for (;;) {
		json_auto_t *ev = NULL;
		struct error *err = NULL;
		const char *evname;
		int r = qmp_client_next_event(c, -1, &ev, &err);

		if (r < 0) {
			return report(err, r);
		}
		evname = str(ev, "event", "");
		if (strcmp(str(json_object_get(ev, "data"), "vm", ""), name) != 0) {
			continue;
		}
		if (strcmp(evname, "SHUTDOWN") == 0) {
			if (!json_output) {
				printf("%s: shut down\n", name);
			}
			return EXIT_OK;
		}
		if (strcmp(evname, "STOP") == 0 &&
		    strcmp(str(json_object_get(ev, "data"), "reason", ""), "internal-error") == 0) {
			return fail(EXIT_DAEMON, NULL, "%s stopped: KVM could not run the guest",
				    name);
		}
	}
}

static bool is_shutdown_of(const char *name, json_t *data, void *vm)
{
	return strcmp(name, "SHUTDOWN") == 0 && strcmp(str(data, "vm", ""), vm) == 0;
}

static int cmd_stop(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"force", no_argument, NULL, 'f'},
		{"timeout", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	bool force = false;
	uint32_t timeout = 60;
	const char *name;
	int o, rc;

	optind = 0; /* 0: glibc re-initialises (argument permutation included) */
	while ((o = getopt_long(argc, argv, "ft:j", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			force = true;
			break;
		case 't':
			if (parse_u32(optarg, &timeout) < 0 || timeout > 86400) {
				return usage_error("--timeout '%s' is not a number of seconds",
						   optarg);
			}
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		return usage_error("%s", "stop needs exactly one VM name");
	}
	name = argv[optind];
	if (force) {
		rc = run_cmd(c, "vm-destroy", one_vm_args(name), NULL);
		if (rc == EXIT_OK) {
			printf(json_output ? "{\"stopped\": true, \"forced\": true}\n"
					   : "%s: destroyed\n",
			       name);
		}
		return rc;
	}
	/* This connection is negotiated, so the SHUTDOWN event will reach it. */
	rc = run_cmd(c, "system_powerdown", one_vm_args(name), NULL);
	if (rc) {
		return rc;
	}
	rc = vmctl_wait_event(c, now_monotonic_us() + (uint64_t)timeout * 1000000, is_shutdown_of,
			      (void *)name);
	if (rc == EXIT_TIMEOUT) {
		return fail(EXIT_TIMEOUT, NULL,
			    "%s did not shut down within %u s (the guest may ignore the "
			    "power button); use 'vmctl stop --force %s'",
			    name, timeout, name);
	}
	if (rc != EXIT_OK) {
		return rc;
	}
	printf(json_output ? "{\"stopped\": true, \"forced\": false}\n" : "%s: shut down\n", name);
	return EXIT_OK;
}

static int set_path(json_t *obj, const char *key, const char *path)
{
	char *abs = NULL;

	/* vmmd resolves nothing against vmctl's directory: send absolute paths. */
	if (path[0] != '/') {
		char cwd[4096];

		if (!getcwd(cwd, sizeof(cwd)) || asprintf(&abs, "%s/%s", cwd, path) < 0) {
			return -ENOMEM;
		}
		path = abs;
	}
	json_object_set_new(obj, key, json_string(path));
	free(abs);
	return 0;
}

/* --disk FILE[,format=F][,id=ID][,readonly][,cache=C][,aio=A][,driver=D][,removable] */
static int parse_disk(const char *spec, unsigned index, json_t **ret)
{
	_cleanup_free_ char *copy = strdup(spec);
	char *save = NULL, *tok;
	json_t *d = json_object();
	char id[16];

	snprintf(id, sizeof(id), "vd%c", 'a' + (index % 26));
	json_object_set_new(d, "id", json_string(id));
	tok = strtok_r(copy, ",", &save);
	if (!tok) {
		json_decref(d);
		return -EINVAL;
	}
	if (strstr(tok, "://")) {
		json_object_set_new(d, "file", json_string(tok));
	} else {
		set_path(d, "file", tok);
	}
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *eq = strchr(tok, '=');

		if (strcmp(tok, "readonly") == 0 || strcmp(tok, "removable") == 0) {
			json_object_set_new(d, tok, json_true());
		} else if (eq && (strncmp(tok, "format=", 7) == 0 || strncmp(tok, "id=", 3) == 0 ||
				  strncmp(tok, "cache=", 6) == 0 || strncmp(tok, "aio=", 4) == 0 ||
				  strncmp(tok, "driver=", 7) == 0)) {
			*eq = '\0';
			json_object_set_new(d, tok, json_string(eq + 1));
		} else {
			json_decref(d);
			return -EINVAL;
		}
	}
	*ret = d;
	return 0;
}

/* --input usb-kbd|usb-tablet[,id=ID] */
static int parse_input(const char *spec, unsigned index, json_t **ret)
{
	_cleanup_free_ char *copy = strdup(spec);
	char *save = NULL, *tok;
	json_t *in = json_object();
	char id[16];

	tok = strtok_r(copy, ",", &save);
	if (!tok || (strcmp(tok, "usb-kbd") != 0 && strcmp(tok, "usb-tablet") != 0)) {
		json_decref(in);
		return -EINVAL;
	}
	snprintf(id, sizeof(id), "input%u", index);
	json_object_set_new(in, "id", json_string(id));
	json_object_set_new(in, "driver", json_string(tok));
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (strncmp(tok, "id=", 3) != 0) {
			json_decref(in);
			return -EINVAL;
		}
		json_object_set_new(in, "id", json_string(tok + 3));
	}
	*ret = in;
	return 0;
}

/* --nic user | tap:IFNAME, then [,mac=MAC][,id=ID] */
static int parse_nic(const char *spec, unsigned index, json_t **ret)
{
	_cleanup_free_ char *copy = strdup(spec);
	char *save = NULL, *tok;
	json_t *n = json_object();
	char id[16];

	snprintf(id, sizeof(id), "net%u", index);
	json_object_set_new(n, "id", json_string(id));
	tok = strtok_r(copy, ",", &save);
	if (tok && strcmp(tok, "user") == 0) {
		json_object_set_new(n, "backend", json_string("user"));
	} else if (tok && strncmp(tok, "tap:", 4) == 0 && tok[4]) {
		json_object_set_new(n, "backend", json_string("tap"));
		json_object_set_new(n, "ifname", json_string(tok + 4));
	} else {
		json_decref(n);
		return -EINVAL;
	}
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *eq = strchr(tok, '=');

		if (eq && (strncmp(tok, "mac=", 4) == 0 || strncmp(tok, "id=", 3) == 0)) {
			*eq = '\0';
			json_object_set_new(n, tok, json_string(eq + 1));
		} else {
			json_decref(n);
			return -EINVAL;
		}
	}
	*ret = n;
	return 0;
}

static json_t *sub(json_t *o, const char *key)
{
	json_t *s = json_object_get(o, key);

	if (!json_is_object(s)) {
		s = json_object();
		json_object_set_new(o, key, s);
	}
	return s;
}

static json_t *arr(json_t *o, const char *key)
{
	json_t *s = json_object_get(o, key);

	if (!json_is_array(s)) {
		s = json_array();
		json_object_set_new(o, key, s);
	}
	return s;
}

/* One file of a definition: it must exist (an NBD URI is not a file). */
static int check_file(const char *what, const char *path)
{
	struct stat st;

	if (!path || strstr(path, "://")) {
		return EXIT_OK;
	}
	if (stat(path, &st) < 0) {
		return fail(EXIT_USAGE, NULL, "%s '%s': %s", what, path, strerror(errno));
	}
	if (S_ISDIR(st.st_mode)) {
		return fail(EXIT_USAGE, NULL, "%s '%s' is a directory", what, path);
	}
	return EXIT_OK;
}

/*
 * Before defining: every file the definition reads exists, so a typo is
 * reported as such, not as a VM that fails to start later. (The console log
 * and debugcon files are created by vmmd.)
 */
static int check_files(json_t *def)
{
	json_t *boot = json_object_get(def, "boot"), *d;
	size_t i;
	int rc;

	if ((rc = check_file("kernel", json_string_value(json_object_get(boot, "kernel")))) ||
	    (rc = check_file("initrd", json_string_value(json_object_get(boot, "initrd")))) ||
	    (rc = check_file("firmware", json_string_value(json_object_get(boot, "firmware"))))) {
		return rc;
	}
	json_array_foreach (json_object_get(def, "disks"), i, d) {
		char what[96];

		snprintf(what, sizeof(what), "disk %s",
			 json_string_value(json_object_get(d, "id")) ?: "?");
		rc = check_file(what, json_string_value(json_object_get(d, "file")));
		if (rc) {
			return rc;
		}
	}
	return EXIT_OK;
}

/* create --print needs no daemon. */
static bool create_is_offline(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--print") == 0) {
			return true;
		}
	}
	return false;
}

static int cmd_create(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	enum {
		O_NAME = 256,
		O_MEM,
		O_VCPUS,
		O_CPU,
		O_KERNEL,
		O_INITRD,
		O_CMDLINE,
		O_DISK,
		O_NIC,
		O_INPUT,
		O_USB,
		O_SERIAL,
		O_AUTOSTART,
		O_START,
		O_CONFIG,
		O_FIRMWARE,
		O_FROM_QEMU,
		O_FROM_LIBVIRT,
		O_PRINT,
		O_MAXCPUS,
	};
	static const struct option opts[] = {
		{"name", required_argument, NULL, O_NAME},
		{"memory", required_argument, NULL, O_MEM},
		{"vcpus", required_argument, NULL, O_VCPUS},
		{"maxcpus", required_argument, NULL, O_MAXCPUS},
		{"cpu", required_argument, NULL, O_CPU},
		{"kernel", required_argument, NULL, O_KERNEL},
		{"initrd", required_argument, NULL, O_INITRD},
		{"cmdline", required_argument, NULL, O_CMDLINE},
		{"disk", required_argument, NULL, O_DISK},
		{"nic", required_argument, NULL, O_NIC},
		{"input", required_argument, NULL, O_INPUT},
		{"usb", no_argument, NULL, O_USB},
		{"serial-log", required_argument, NULL, O_SERIAL},
		{"autostart", no_argument, NULL, O_AUTOSTART},
		{"start", no_argument, NULL, O_START},
		{"config", required_argument, NULL, O_CONFIG},
		{"firmware", required_argument, NULL, O_FIRMWARE},
		{"from-qemu", required_argument, NULL, O_FROM_QEMU},
		{"from-libvirt", required_argument, NULL, O_FROM_LIBVIRT},
		{"print", no_argument, NULL, O_PRINT},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	json_auto_t *def = json_object();
	json_auto_t *unmapped = NULL;
	const char *from_qemu = NULL, *from_libvirt = NULL;
	bool print_only = false;
	json_auto_t *flags = json_object();
	json_auto_t *info = NULL;
	unsigned n_disks = 0, n_nics = 0, n_inputs = 0;
	const char *config = NULL;
	uint64_t size;
	uint32_t n;
	int o, rc;

	optind = 0; /* 0: glibc re-initialises (argument permutation included) */
	while ((o = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
		json_t *item = NULL;

		switch (o) {
		case O_NAME:
			json_object_set_new(flags, "name", json_string(optarg));
			break;
		case O_MEM: {
			char mib[32];

			if (parse_size(optarg, &size) < 0) {
				return usage_error("--memory '%s' is not a size (e.g. 512M)",
						   optarg);
			}
			/* a bare number is MiB, as QEMU's -m 64 */
			if (strspn(optarg, "0123456789") == strlen(optarg)) {
				snprintf(mib, sizeof(mib), "%sM", optarg);
				json_object_set_new(flags, "memory", json_string(mib));
			} else {
				json_object_set_new(flags, "memory", json_string(optarg));
			}
			break;
		}
		case O_VCPUS:
			if (parse_u32(optarg, &n) < 0) {
				return usage_error("--vcpus '%s' is not a number", optarg);
			}
			json_object_set_new(flags, "vcpus", json_integer(n));
			break;
		case O_MAXCPUS:
			if (parse_u32(optarg, &n) < 0) {
				return usage_error("--maxcpus '%s' is not a number", optarg);
			}
			json_object_set_new(flags, "maxcpus", json_integer(n));
			break;
		case O_CPU:
			json_object_set_new(flags, "cpu", json_string(optarg));
			break;
		case O_KERNEL:
			set_path(sub(flags, "boot"), "kernel", optarg);
			break;
		case O_INITRD:
			set_path(sub(flags, "boot"), "initrd", optarg);
			break;
		case O_CMDLINE:
			json_object_set_new(sub(flags, "boot"), "cmdline", json_string(optarg));
			break;
		case O_DISK:
			if (parse_disk(optarg, n_disks++, &item) < 0) {
				return usage_error("--disk '%s': expected FILE[,format=raw|qcow2]"
						   "[,id=ID][,readonly][,cache=none][,aio=A]"
						   "[,driver=D][,removable]",
						   optarg);
			}
			json_array_append_new(arr(flags, "disks"), item);
			break;
		case O_NIC:
			if (parse_nic(optarg, n_nics++, &item) < 0) {
				return usage_error("--nic '%s': expected user or tap:IFNAME, then "
						   "[,mac=MAC][,id=ID]",
						   optarg);
			}
			json_array_append_new(arr(flags, "nics"), item);
			break;
		case O_INPUT:
			if (parse_input(optarg, n_inputs++, &item) < 0) {
				return usage_error(
					"--input '%s': expected usb-kbd or usb-tablet, then "
					"[,id=ID]",
					optarg);
			}
			json_array_append_new(arr(flags, "input"), item);
			break;
		case O_USB:
			json_object_set_new(flags, "usb", json_true());
			break;
		case O_SERIAL:
			set_path(sub(flags, "serial"), "log", optarg);
			break;
		case O_AUTOSTART:
			json_object_set_new(flags, "autostart", json_true());
			break;
		case O_START:
			json_object_set_new(flags, "start", json_true());
			break;
		case O_CONFIG:
			config = optarg;
			break;
		case O_FIRMWARE:
			set_path(sub(flags, "boot"), "firmware", optarg);
			break;
		case O_FROM_QEMU:
			from_qemu = optarg;
			break;
		case O_FROM_LIBVIRT:
			from_libvirt = optarg;
			break;
		case O_PRINT:
			print_only = true;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		return usage_error("create takes options only, got '%s'", argv[optind]);
	}
	if (!!config + !!from_qemu + !!from_libvirt > 1) {
		return usage_error("%s", "give only one of --config, --from-qemu, --from-libvirt");
	}
	if (from_qemu || from_libvirt) {
		struct error *err = NULL;
		int r;

		json_decref(def);
		def = NULL;
		r = from_qemu ? import_qemu(from_qemu, &def, &unmapped, &err)
			      : import_libvirt(from_libvirt, &def, &unmapped, &err);
		if (r < 0) {
			rc = fail(EXIT_USAGE, NULL, "%s", err ? err->msg : strerror(-r));
			error_free(err);
			return rc;
		}
	}
	if (config) {
		json_error_t jerr;

		json_decref(def);
		def = json_load_file(config, JSON_REJECT_DUPLICATES, &jerr);
		if (!def || !json_is_object(def)) {
			return fail(EXIT_USAGE, NULL, "%s:%d: %s", config, jerr.line,
				    def ? "the VM definition must be a JSON object" : jerr.text);
		}
	}
	/* Flags override the file, one level deep for "boot" and "serial". */
	{
		const char *key;
		json_t *v;

		json_object_foreach (flags, key, v) {
			if (json_is_object(v) && json_is_object(json_object_get(def, key))) {
				json_object_update(json_object_get(def, key), v);
			} else {
				json_object_set(def, key, v);
			}
		}
	}
	if (!print_only && !json_is_string(json_object_get(def, "name"))) {
		return usage_error("%s", "create needs --name NAME (or a \"name\" in --config, "
					 "-name in --from-qemu, <name> in --from-libvirt)");
	}
	if (unmapped && json_array_size(unmapped) > 0 && !json_output) {
		size_t i;
		json_t *u;

		fprintf(stderr, "vmctl: not mapped from %s:\n",
			from_qemu ? "the QEMU command line" : from_libvirt);
		json_array_foreach (unmapped, i, u) {
			fprintf(stderr, "  %s\n", json_string_value(u));
		}
	}
	if (print_only) {
		if (json_output && unmapped) {
			json_auto_t *both =
				json_pack("{s:O, s:O}", "definition", def, "unmapped", unmapped);

			print_json(both);
		} else {
			print_json(def);
		}
		return EXIT_OK;
	}
	rc = check_files(def);
	if (rc) {
		return rc;
	}
	rc = run_cmd(c, "vm-create", json_incref(def), &info);
	if (rc) {
		return rc;
	}
	if (json_output) {
		if (unmapped) {
			json_object_set(info, "unmapped", unmapped);
		}
		print_json(info);
	} else {
		printf("%s: %s\n", str(info, "name", "?"),
		       strcmp(str(info, "status", ""), "shutdown") == 0 ? "created"
									: "created and started");
	}
	return EXIT_OK;
}

static void print_event(json_t *ev)
{
	json_t *ts = json_object_get(ev, "timestamp");
	json_t *data = json_object_get(ev, "data");
	time_t secs = (time_t)json_integer_value(json_object_get(ts, "seconds"));
	char when[64] = "?";
	char *rest;
	struct tm tm;

	if (json_output) {
		char *t = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);

		puts(t ? t : "{}");
		free(t);
		fflush(stdout);
		return;
	}
	if (localtime_r(&secs, &tm)) {
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	}
	data = json_deep_copy(data ? data : json_object());
	json_object_del(data, "vm");
	rest = json_dumps(data, JSON_COMPACT);
	printf("%s.%06lld %-12s %-16s %s\n", when,
	       (long long)json_integer_value(json_object_get(ts, "microseconds")),
	       str(json_object_get(ev, "data"), "vm", "-"), str(ev, "event", "?"),
	       rest && strcmp(rest, "{}") != 0 ? rest : "");
	free(rest);
	json_decref(data);
	fflush(stdout);
}

static int cmd_events(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"vm", required_argument, NULL, 'v'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	const char *vm = NULL;
	int o;

	optind = 0; /* 0: glibc re-initialises (argument permutation included) */
	while ((o = getopt_long(argc, argv, "v:j", opts, NULL)) != -1) {
		switch (o) {
		case 'v':
			vm = optarg;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		return usage_error("events takes no argument, got '%s'", argv[optind]);
	}
	if (vm) {
		json_auto_t *info = NULL;
		int rc = query_one(c, vm, &info);

		if (rc) {
			return rc;
		}
	}
	for (;;) {
		json_auto_t *ev = NULL;
		struct error *err = NULL;
		int r = qmp_client_next_event(c, -1, &ev, &err);

		if (r < 0) {
			return report(err, r);
		}
		if (vm && strcmp(str(json_object_get(ev, "data"), "vm", ""), vm) != 0) {
			continue;
		}
		print_event(ev);
	}
}

static int cmd_qmp(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	_cleanup_free_ char *input = NULL;
	json_auto_t *msg = NULL;
	struct error *err = NULL;
	json_error_t jerr;
	int r;

	if (argc > 2) {
		return usage_error("%s", "qmp takes one JSON argument (or reads stdin)");
	}
	if (argc == 2) {
		msg = json_loads(argv[1], 0, &jerr);
	} else {
		msg = json_loadf(stdin, 0, &jerr);
	}
	if (!msg) {
		return fail(EXIT_USAGE, NULL, "the command is not valid JSON: %s", jerr.text);
	}
	input = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!input) {
		return EXIT_USAGE;
	}
	r = qmp_client_send_raw(c, input, strlen(input), &err);
	if (r == 0) {
		r = qmp_client_send_raw(c, "\r\n", 2, &err);
	}
	for (; r == 0;) {
		json_auto_t *reply = NULL;
		char *t;

		r = qmp_client_recv(c, -1, &reply, &err);
		if (r < 0) {
			break;
		}
		if (json_object_get(reply, "event")) {
			continue;
		}
		t = json_dumps(reply,
			       (json_output ? JSON_INDENT(2) : JSON_COMPACT) | JSON_PRESERVE_ORDER);
		puts(t ? t : "{}");
		free(t);
		return json_object_get(reply, "error") ? EXIT_DAEMON : EXIT_OK;
	}
	return report(err, r);
}

static struct termios saved_tio;
static bool tio_saved;

static void restore_tty(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
		tio_saved = false;
	}
}

static int cmd_console(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	json_auto_t *vm = NULL;
	_cleanup_close_ int fd = -1;
	const char *path;
	bool stdin_open = true;
	int rc;

	if (argc != 2) {
		return usage_error("%s", "console needs exactly one VM name");
	}
	rc = query_one(c, argv[1], &vm);
	if (rc) {
		return rc;
	}
	path = str(vm, "console-socket", NULL);
	if (!path) {
		return fail(EXIT_DAEMON, NULL, "%s has no live console (state %s); its log is %s",
			    argv[1], str(vm, "status", "?"), str(vm, "console-log", "?"));
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		return fail(EXIT_DAEMON, NULL, "console socket path too long: %s", path);
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		return fail(EXIT_CONNECT, NULL, "cannot connect to the console at %s: %s", path,
			    strerror(errno));
	}
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		struct termios raw = saved_tio;

		cfmakeraw(&raw);
		tio_saved = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
		atexit(restore_tty);
		fprintf(stderr, "Connected to %s's console; detach with Ctrl-]\r\n", argv[1]);
	}
	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
				      {.fd = STDIN_FILENO, .events = stdin_open ? POLLIN : 0}};
		char buf[4096];
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			break;
		}
		if (p[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0) {
				restore_tty();
				fprintf(stderr, "\nvmctl: the console closed (the VM stopped)\n");
				return EXIT_OK;
			}
			if (write(STDOUT_FILENO, buf, (size_t)n) != n) {
				break;
			}
		}
		if (p[1].revents) {
			char *esc;

			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				/* stdin ended (a pipe): keep showing output until Ctrl-] or EOF. */
				stdin_open = false;
				continue;
			}
			esc = memchr(buf, 0x1d, (size_t)n);
			if (esc) {
				n = esc - buf;
			}
			if (n > 0 && send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n) {
				break;
			}
			if (esc) {
				restore_tty();
				fprintf(stderr, "\nvmctl: detached from %s\n", argv[1]);
				return EXIT_OK;
			}
		}
	}
	restore_tty();
	return EXIT_DAEMON;
}

/* send-key NAME [--hold-time MS] CHORD...: one send-key per chord ("ctrl-alt-delete"). */
static int cmd_send_key(struct qmp_client *c, int argc, char **argv,
			const struct vmctl_command *command)
{
	static const struct option opts[] = {
		{"hold-time", required_argument, NULL, 'H'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	uint32_t hold = 0;
	bool has_hold = false;
	int o, rc = EXIT_OK;

	(void)command;
	optind = 0; /* 0: glibc re-initialises (argument permutation included) */
	while ((o = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
		switch (o) {
		case 'H':
			if (parse_u32(optarg, &hold) < 0) {
				return usage_error("--hold-time '%s' is not a number of ms",
						   optarg);
			}
			has_hold = true;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind < 2) {
		return usage_error("%s", "send-key needs a VM name and at least one key");
	}
	for (int i = optind + 1; i < argc && rc == EXIT_OK; i++) {
		_cleanup_free_ char *copy = strdup(argv[i]);
		json_t *args = one_vm_args(argv[optind]);
		json_t *keys = json_array();
		char *save = NULL, *tok;

		for (tok = strtok_r(copy, "-", &save); tok; tok = strtok_r(NULL, "-", &save)) {
			json_array_append_new(
				keys, json_pack("{s:s, s:s}", "type", "qcode", "data", tok));
		}
		json_object_set_new(args, "keys", keys);
		if (has_hold) {
			json_object_set_new(args, "hold-time", json_integer(hold));
		}
		rc = run_cmd(c, "send-key", args, NULL);
	}
	if (rc == EXIT_OK && json_output) {
		puts("{}");
	}
	return rc;
}

/* vm-save, then wait for its VM_SAVE_COMPLETED. */
/*
 * dump NAME FILE [--paging] [--begin ADDR --length SIZE]: dump-guest-memory
 * (ELF); the answer comes when the file is complete.
 */
static int cmd_dump(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"begin", required_argument, NULL, 'b'},
		{"length", required_argument, NULL, 'l'},
		{"paging", no_argument, NULL, 'p'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	json_auto_t *done = NULL;
	bool paging = false;
	const char *begin = NULL, *length = NULL;
	uint64_t b = 0, l = 0;
	json_t *args;
	char *protocol;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "b:l:pj", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
			paging = true;
			break;
		case 'b':
			begin = optarg;
			break;
		case 'l':
			length = optarg;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		return usage_error("%s", "dump needs a VM name and a file");
	}
	if (!begin != !length) {
		return usage_error("%s", "dump: --begin and --length go together");
	}
	if ((begin && (parse_u64(begin, &b) < 0 || b > INT64_MAX)) ||
	    (length && (parse_size(length, &l) < 0 || l == 0 || l > INT64_MAX))) {
		return usage_error("dump: bad --begin '%s' or --length '%s'", begin, length);
	}
	args = json_pack("{s:s, s:b}", "vm", argv[optind], "paging", paging);
	if (set_path(args, "protocol", argv[optind + 1]) < 0 ||
	    asprintf(&protocol, "file:%s", str(args, "protocol", "")) < 0) {
		json_decref(args);
		return usage_error("%s", "cannot make the file name absolute");
	}
	json_object_set_new(args, "protocol", json_string(protocol));
	free(protocol);
	if (begin) {
		json_object_set_new(args, "begin", json_integer((json_int_t)b));
		json_object_set_new(args, "length", json_integer((json_int_t)l));
	}
	rc = run_cmd(c, "dump-guest-memory", args, NULL);
	if (rc == EXIT_OK) {
		rc = run_cmd(c, "query-dump", json_pack("{s:s}", "vm", argv[optind]), &done);
	}
	if (rc == EXIT_OK && json_output) {
		print_json(done);
	} else if (rc == EXIT_OK) {
		printf("%s: %" PRIu64 " bytes of memory dumped to %s\n", argv[optind],
		       (uint64_t)json_integer_value(json_object_get(done, "completed")),
		       argv[optind + 1]);
	}
	return rc;
}

static int cmd_save(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"stop", no_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	_cleanup_free_ char *path = NULL;
	bool stop = false;
	json_t *args;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "sj", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			stop = true;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		return usage_error("%s", "save needs a VM name and a directory");
	}
	/* vmmd resolves paths in its own working directory: send an absolute one. */
	path = argv[optind + 1][0] == '/' ? strdup(argv[optind + 1]) : NULL;
	if (!path) {
		char cwd[4096];

		if (!getcwd(cwd, sizeof(cwd)) ||
		    asprintf(&path, "%s/%s", cwd, argv[optind + 1]) < 0) {
			return usage_error("%s", "cannot make the directory absolute");
		}
	}
	args = json_pack("{s:s, s:s, s:b}", "vm", argv[optind], "path", path, "stop", stop);
	rc = run_cmd(c, "vm-save", args, NULL);
	if (rc) {
		return rc;
	}
	for (;;) {
		json_auto_t *ev = NULL;
		struct error *err = NULL;
		json_t *data;
		int r = qmp_client_next_event(c, -1, &ev, &err);

		if (r < 0) {
			return report(err, r);
		}
		data = json_object_get(ev, "data");
		if (strcmp(str(ev, "event", ""), "VM_SAVE_COMPLETED") != 0 ||
		    strcmp(str(data, "vm", ""), argv[optind]) != 0 ||
		    strcmp(str(data, "path", ""), path) != 0) {
			continue;
		}
		if (json_output && strcmp(str(data, "status", ""), "completed") == 0) {
			print_json(data);
		} else if (strcmp(str(data, "status", ""), "completed") == 0) {
			printf("%s: saved to %s (%" JSON_INTEGER_FORMAT
			       " bytes of RAM, %" JSON_INTEGER_FORMAT " ms)\n",
			       argv[optind], path,
			       json_integer_value(json_object_get(data, "memory-bytes")),
			       json_integer_value(json_object_get(data, "duration-ms")));
		}
		if (strcmp(str(data, "status", ""), "completed") != 0) {
			return fail(EXIT_DAEMON, NULL, "saving %s failed: %s", argv[optind],
				    str(data, "error", "unknown error"));
		}
		return EXIT_OK;
	}
}

/* "ID=VALUE" into {"id": ID, @key: VALUE} appended to @list. */
static int add_override(json_t *list, const char *arg, const char *key, const char *what)
{
	const char *eq = strchr(arg, '=');

	if (!eq || eq == arg || !eq[1]) {
		return usage_error("%s '%s' is not ID=%s", what, arg, key);
	}
	json_array_append_new(list,
			      json_pack("{s:s%, s:s}", "id", arg, (size_t)(eq - arg), key, eq + 1));
	return EXIT_OK;
}

static int cmd_restore(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'}, {"paused", no_argument, NULL, 'p'},
		{"disk", required_argument, NULL, 'd'}, {"nic", required_argument, NULL, 'i'},
		{"json", no_argument, NULL, 'j'},	{0},
	};
	json_auto_t *disks = json_array(), *nics = json_array(), *info = NULL;
	_cleanup_free_ char *path = NULL;
	const char *name = NULL;
	bool paused = false;
	json_t *args;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "n:pd:i:j", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case 'p':
			paused = true;
			break;
		case 'd':
			rc = add_override(disks, optarg, "file", "--disk");
			if (rc) {
				return rc;
			}
			break;
		case 'i':
			rc = add_override(nics, optarg, "ifname", "--nic");
			if (rc) {
				return rc;
			}
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		return usage_error("%s", "restore needs exactly one directory");
	}
	path = argv[optind][0] == '/' ? strdup(argv[optind]) : NULL;
	if (!path) {
		char cwd[4096];

		if (!getcwd(cwd, sizeof(cwd)) || asprintf(&path, "%s/%s", cwd, argv[optind]) < 0) {
			return usage_error("%s", "cannot make the directory absolute");
		}
	}
	args = json_pack("{s:s, s:b}", "path", path, "paused", paused);
	if (name) {
		json_object_set_new(args, "name", json_string(name));
	}
	if (json_array_size(disks)) {
		json_object_set(args, "disks", disks);
	}
	if (json_array_size(nics)) {
		json_object_set(args, "nics", nics);
	}
	rc = run_cmd(c, "vm-restore", args, &info);
	if (rc) {
		return rc;
	}
	if (json_output) {
		print_json(info);
	} else {
		printf("%s: restored (%s)\n", str(info, "name", "?"), str(info, "status", "?"));
	}
	return EXIT_OK;
}

/* ---- disks and jobs: vmctl disk snapshot|stream|commit|mirror, vmctl jobs ---- */

static void progress_bar(const char *id, const char *status, uint64_t cur, uint64_t total)
{
	unsigned pct = total ? (unsigned)(cur * 100 / total) : 0, fill = pct * 30 / 100;
	char bar[31];

	if (!isatty(STDERR_FILENO) || json_output) {
		return;
	}
	memset(bar, '#', fill);
	memset(bar + fill, ' ', 30 - fill);
	bar[30] = '\0';
	fprintf(stderr, "\r[%s] %3u%% %s %-9s", bar, MIN(pct, 100u), id, status);
	fflush(stderr);
}

/* Refresh the progress bar from query-jobs. */
static void show_progress(struct qmp_client *c, const char *vm, const char *id)
{
	json_auto_t *jobs = NULL;
	struct error *err = NULL;
	size_t i;
	json_t *j;

	if (qmp_client_execute(c, "query-jobs", json_pack("{s:s}", "vm", vm), &jobs, &err) < 0) {
		error_free(err);
		return;
	}
	json_array_foreach (jobs, i, j) {
		if (strcmp(str(j, "id", ""), id) == 0) {
			progress_bar(
				id, str(j, "status", "?"),
				(uint64_t)json_integer_value(
					json_object_get(j, "current-progress")),
				(uint64_t)json_integer_value(json_object_get(j, "total-progress")));
		}
	}
}

/*
 * Follow job @id of @vm until it is gone: a progress bar on a terminal,
 * job-complete when an active commit is ready (if @complete, else a soft
 * cancel: done without the pivot). Returns the
 * exit code: 0 completed, 1 failed or cancelled.
 */
static int follow_job(struct qmp_client *c, const char *vm, const char *id, bool complete)
{
	_cleanup_free_ char *error = NULL;
	bool cancelled = false;

	for (;;) {
		json_auto_t *ev = NULL;
		struct error *err = NULL;
		json_t *data;
		const char *name;
		int r = qmp_client_next_event(c, 250, &ev, &err);

		if (r == -ETIMEDOUT) {
			show_progress(c, vm, id);
			continue;
		}
		if (r < 0) {
			return report(err, r);
		}
		data = json_object_get(ev, "data");
		name = str(ev, "event", "");
		if (strcmp(str(data, "vm", ""), vm) != 0) {
			continue;
		}
		if (strcmp(name, "BLOCK_JOB_COMPLETED") == 0 &&
		    strcmp(str(data, "device", ""), id) == 0) {
			progress_bar(id, "completed",
				     (uint64_t)json_integer_value(json_object_get(data, "offset")),
				     (uint64_t)json_integer_value(json_object_get(data, "len")));
			if (str(data, "error", NULL)) {
				error = strdup(str(data, "error", ""));
			}
		} else if (strcmp(name, "BLOCK_JOB_CANCELLED") == 0 &&
			   strcmp(str(data, "device", ""), id) == 0) {
			cancelled = true;
		} else if (strcmp(name, "JOB_STATUS_CHANGE") == 0 &&
			   strcmp(str(data, "id", ""), id) == 0) {
			const char *st = str(data, "status", "");

			if (strcmp(st, "ready") == 0) {
				/* pivot, or (--no-pivot) finish without it: QEMU's soft cancel */
				int rc = complete ? run_cmd(c, "job-complete",
							    json_pack("{s:s, s:s}", "vm", vm, "id",
								      id),
							    NULL)
						  : run_cmd(c, "block-job-cancel",
							    json_pack("{s:s, s:s}", "vm", vm,
								      "device", id),
							    NULL);

				if (rc) {
					return rc;
				}
			} else if (strcmp(st, "concluded") == 0 || strcmp(st, "null") == 0) {
				break;
			}
		}
	}
	if (isatty(STDERR_FILENO) && !json_output) {
		fputc('\n', stderr);
	}
	if (error || cancelled) {
		return fail(EXIT_DAEMON, NULL, "job %s %s%s%s", id,
			    cancelled ? "cancelled" : "failed", error ? ": " : "",
			    error ? error : "");
	}
	if (!json_output) {
		printf("%s: job %s completed\n", vm, id);
	}
	return EXIT_OK;
}

/* What clients/vmctl-hotplug.c uses of this file (clients/vmctl.h). */
bool vmctl_json(void)
{
	return json_output;
}

void vmctl_set_json(void)
{
	json_output = true;
}

int vmctl_fail(int code, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		msg = NULL;
	}
	va_end(ap);
	return code == EXIT_USAGE ? usage_error("%s", msg ? msg : "?")
				  : fail(code, NULL, "%s", msg ? msg : "?");
}

int vmctl_report(struct error *err, int r)
{
	return report(err, r);
}

int vmctl_run_cmd(struct qmp_client *c, const char *cmd, json_t *args, json_t **ret)
{
	return run_cmd(c, cmd, args, ret);
}

int vmctl_timeout_options(int argc, char **argv, uint32_t *timeout)
{
	static const struct option opts[] = {
		{"timeout", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	int o;

	optind = 0;
	while ((o = getopt_long(argc, argv, "t:j", opts, NULL)) != -1) {
		switch (o) {
		case 't':
			if (parse_u32(optarg, timeout) < 0 || *timeout > 86400) {
				return vmctl_fail(EXIT_USAGE,
						  "--timeout '%s' is not a number of seconds",
						  optarg);
			}
			break;
		case 'j':
			vmctl_set_json();
			break;
		default:
			return EXIT_USAGE;
		}
	}
	return EXIT_OK;
}

int vmctl_wait_event(struct qmp_client *c, uint64_t deadline,
		     bool (*match)(const char *name, json_t *data, void *opaque), void *opaque)
{
	for (;;) {
		json_auto_t *ev = NULL;
		struct error *err = NULL;
		uint64_t now = now_monotonic_us();
		int r;

		r = qmp_client_next_event(c, now >= deadline ? 0 : (int)((deadline - now) / 1000),
					  &ev, &err);
		if (r == -ETIMEDOUT) {
			return EXIT_TIMEOUT;
		}
		if (r < 0) {
			return report(err, r);
		}
		if (match(str(ev, "event", ""), json_object_get(ev, "data"), opaque)) {
			return EXIT_OK;
		}
	}
}

struct deleted {
	const char *vm, *id;
};

static bool is_deleted(const char *name, json_t *data, void *opaque)
{
	const struct deleted *d = opaque;

	return strcmp(name, "DEVICE_DELETED") == 0 && strcmp(str(data, "vm", ""), d->vm) == 0 &&
	       strcmp(str(data, "device", ""), d->id) == 0;
}

int vmctl_wait_deleted(struct qmp_client *c, const char *vm, const char *id, uint64_t deadline)
{
	struct deleted d = {vm, id};

	return vmctl_wait_event(c, deadline, is_deleted, &d);
}

void vmctl_run_cmd_quiet(struct qmp_client *c, const char *cmd, json_t *args)
{
	struct error *err = NULL;

	qmp_client_execute(c, cmd, args, NULL, &err);
	error_free(err);
}

int vmctl_set_path(json_t *obj, const char *key, const char *path)
{
	return set_path(obj, key, path);
}

static int cmd_memory(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	return vmctl_cmd_memory(c, argc, argv);
}

/*
 * disk mirror: blockdev-add the existing image @file as node mirror-DISK,
 * blockdev-mirror the disk into it, follow the job; the node goes again
 * unless the disk switched to it (or the job runs on, --no-wait).
 */
static int disk_mirror(struct qmp_client *c, const char *vm, const char *disk, const char *file,
		       const char *format, const char *sync, const char *job_id, json_t *job_args,
		       bool wait, bool pivot)
{
	_cleanup_free_ char *node = NULL;
	json_t *args;
	int rc;

	if (asprintf(&node, "mirror-%s", disk) < 0) {
		json_decref(job_args);
		return fail(EXIT_FAILURE, NULL, "out of memory");
	}
	args = json_pack("{s:s, s:s, s:s, s:{s:s}}", "vm", vm, "driver", format ? format : "qcow2",
			 "node-name", node, "file", "driver", "file");
	if (!args || set_path(json_object_get(args, "file"), "filename", file) < 0) {
		json_decref(args);
		json_decref(job_args);
		return fail(EXIT_FAILURE, NULL, "cannot resolve '%s'", file);
	}
	rc = run_cmd(c, "blockdev-add", args, NULL);
	if (rc) {
		json_decref(job_args);
		return rc;
	}
	json_object_set_new(job_args, "target", json_string(node));
	json_object_set_new(job_args, "sync", json_string(sync ? sync : "full"));
	rc = run_cmd(c, "blockdev-mirror", job_args, NULL);
	if (rc == EXIT_OK && !wait) {
		return EXIT_OK;
	}
	if (rc == EXIT_OK) {
		rc = follow_job(c, vm, job_id ? job_id : disk, pivot);
	}
	if (rc != EXIT_OK || !pivot) {
		vmctl_run_cmd_quiet(c, "blockdev-del",
				    json_pack("{s:s, s:s}", "vm", vm, "node-name", node));
	}
	return rc;
}

/* disk bitmap add|remove|clear|enable|disable VM DISK NAME, or list VM DISK */
static int disk_bitmap(struct qmp_client *c, int argc, char **argv, uint64_t granularity)
{
	static const char *const verbs[] = {"add", "remove", "clear", "enable", "disable"};
	static const char *const done[] = {"added", "removed", "cleared", "enabled", "disabled"};
	const char *verb = argc > 1 ? argv[1] : "";
	_cleanup_free_ char *cmd = NULL;
	json_auto_t *blocks = NULL;
	json_t *args, *b, *m;
	size_t i, k;
	int rc;

	if (argc == 4 && strcmp(verb, "list") == 0) {
		rc = run_cmd(c, "query-block", json_pack("{s:s}", "vm", argv[2]), &blocks);
		json_array_foreach (blocks, i, b) {
			json_t *list =
				json_object_get(json_object_get(b, "inserted"), "dirty-bitmaps");

			if (strcmp(str(b, "device", ""), argv[3]) != 0) {
				continue;
			}
			if (json_output) {
				print_json(list ? list : json_array());
				return EXIT_OK;
			}
			printf("%-20s %-10s %-5s %12s %12s\n", "NAME", "RECORDING", "BUSY",
			       "GRANULARITY", "DIRTY");
			json_array_foreach (list, k, m) {
				printf("%-20s %-10s %-5s %12" JSON_INTEGER_FORMAT
				       " %12" JSON_INTEGER_FORMAT "\n",
				       str(m, "name", ""),
				       json_is_true(json_object_get(m, "recording")) ? "yes" : "no",
				       json_is_true(json_object_get(m, "busy")) ? "yes" : "no",
				       json_integer_value(json_object_get(m, "granularity")),
				       json_integer_value(json_object_get(m, "count")));
			}
			return EXIT_OK;
		}
		return rc ? rc : fail(EXIT_FAILURE, NULL, "VM %s has no disk %s", argv[2], argv[3]);
	}
	for (i = 0; i < ARRAY_SIZE(verbs) && strcmp(verb, verbs[i]) != 0; i++) {
	}
	if (i == ARRAY_SIZE(verbs) || argc != 5) {
		return usage_error("%s",
				   "disk bitmap needs add|remove|clear|enable|disable VM DISK "
				   "NAME, or list VM DISK");
	}
	if (granularity && i != 0) {
		return usage_error("%s", "--granularity is for disk bitmap add");
	}
	args = json_pack("{s:s, s:s, s:s}", "vm", argv[2], "node", argv[3], "name", argv[4]);
	if (args && granularity) {
		json_object_set_new(args, "granularity", json_integer((json_int_t)granularity));
	}
	if (asprintf(&cmd, "block-dirty-bitmap-%s", verb) < 0) {
		json_decref(args);
		return fail(EXIT_FAILURE, NULL, "out of memory");
	}
	rc = run_cmd(c, cmd, args, NULL);
	if (rc == EXIT_OK && !json_output) {
		printf("%s: disk %s: bitmap %s %s\n", argv[2], argv[3], argv[4], done[i]);
	}
	return rc;
}

static int cmd_disk_jobs(struct qmp_client *c, int argc, char **argv,
			 const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"existing", no_argument, NULL, 'e'},
		{"base", required_argument, NULL, 'b'},
		{"top", required_argument, NULL, 't'},
		{"speed", required_argument, NULL, 'S'},
		{"job-id", required_argument, NULL, 'i'},
		{"no-wait", no_argument, NULL, 'n'},
		{"no-pivot", no_argument, NULL, 'p'},
		{"json", no_argument, NULL, 'j'},
		{"sync", required_argument, NULL, 's'},
		{"bitmap", required_argument, NULL, 'B'},
		{"new-bitmap", required_argument, NULL, 'N'},
		{"granularity", required_argument, NULL, 'g'},
		{0},
	};
	const char *format = NULL, *base = NULL, *top = NULL, *job_id = NULL, *verb, *vm, *disk;
	const char *sync = NULL, *bitmap = NULL, *new_bitmap = NULL;
	bool existing = false, wait = true, pivot = true;
	uint64_t speed = 0, granularity = 0;
	json_t *args;
	int o, rc;

	optind = 0; /* 0: glibc re-initialises (argument permutation included) */
	while ((o = getopt_long(argc, argv, "f:eb:t:S:i:npjs:B:N:g:", opts, NULL)) != -1) {
		switch (o) {
		case 'B':
			bitmap = optarg;
			break;
		case 'N':
			new_bitmap = optarg;
			break;
		case 'g':
			if (parse_size(optarg, &granularity) < 0) {
				return usage_error("--granularity: '%s' is not a size in bytes",
						   optarg);
			}
			break;
		case 's':
			sync = optarg;
			break;
		case 'f':
			format = optarg;
			break;
		case 'e':
			existing = true;
			break;
		case 'b':
			base = optarg;
			break;
		case 't':
			top = optarg;
			break;
		case 'S':
			if (parse_size(optarg, &speed) < 0) {
				return usage_error("--speed: '%s' is not a size in bytes", optarg);
			}
			break;
		case 'i':
			job_id = optarg;
			break;
		case 'n':
			wait = false;
			break;
		case 'p':
			pivot = false;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind < 3) {
		return usage_error("%s", "disk needs snapshot|stream|commit|mirror|backup|bitmap, "
					 "a VM and a disk id");
	}
	verb = argv[optind];
	vm = argv[optind + 1];
	disk = argv[optind + 2];
	if (strcmp(verb, "snapshot") == 0) {
		if (argc - optind != 4) {
			return usage_error("%s", "disk snapshot needs VM DISK FILE");
		}
		args = json_pack("{s:s, s:s, s:s}", "vm", vm, "device", disk, "snapshot-file",
				 argv[optind + 3]);
		if (format) {
			json_object_set_new(args, "format", json_string(format));
		}
		if (existing) {
			json_object_set_new(args, "mode", json_string("existing"));
		}
		rc = run_cmd(c, "blockdev-snapshot-sync", args, NULL);
		if (rc == EXIT_OK && !json_output) {
			printf("%s: disk %s now writes to %s\n", vm, disk, argv[optind + 3]);
		}
		return rc;
	}
	if (strcmp(verb, "snapshot-internal") == 0 || strcmp(verb, "snapshot-delete") == 0) {
		bool del = strcmp(verb, "snapshot-delete") == 0;
		json_auto_t *info = NULL;

		if (argc - optind != 4) {
			return usage_error("disk %s needs VM DISK %s", verb,
					   del ? "NAME|ID" : "NAME");
		}
		/* a disk-only internal snapshot of a qcow2 disk (vmctl snapshot: the whole VM) */
		if (!del) {
			rc = run_cmd(c, "blockdev-snapshot-internal-sync",
				     json_pack("{s:s, s:s, s:s}", "vm", vm, "device", disk, "name",
					       argv[optind + 3]),
				     NULL);
		} else {
			/* by name, else by id, as qemu-img snapshot -d */
			struct error *err = NULL;
			int r = qmp_client_execute(c, "blockdev-snapshot-delete-internal-sync",
						   json_pack("{s:s, s:s, s:s}", "vm", vm, "device",
							     disk, "name", argv[optind + 3]),
						   &info, &err);

			if (r == -EREMOTEIO && err && strstr(err->msg, "does not exist")) {
				error_free(TAKE_PTR(err));
				r = qmp_client_execute(c, "blockdev-snapshot-delete-internal-sync",
						       json_pack("{s:s, s:s, s:s}", "vm", vm,
								 "device", disk, "id",
								 argv[optind + 3]),
						       &info, &err);
			}
			rc = r < 0 ? report(err, r) : EXIT_OK;
		}
		if (rc == EXIT_OK && !json_output) {
			printf("%s: disk %s: internal snapshot %s %s\n", vm, disk,
			       del ? str(info, "name", argv[optind + 3]) : argv[optind + 3],
			       del ? "deleted" : "taken");
		}
		return rc;
	}
	if (strcmp(verb, "bitmap") == 0) {
		return disk_bitmap(c, argc - optind, argv + optind, granularity);
	}
	if (granularity) {
		return usage_error("%s", "--granularity is for disk bitmap add");
	}
	if ((bitmap || new_bitmap) && strcmp(verb, "backup") != 0) {
		return usage_error("%s", "--bitmap and --new-bitmap are for disk backup");
	}
	if (strcmp(verb, "backup") == 0) {
		if (argc - optind != 4) {
			return usage_error("%s", "disk backup needs VM DISK FILE");
		}
		if (base || top || !pivot) {
			return usage_error("%s", "disk backup takes --format, --existing, --sync, "
						 "--bitmap, --new-bitmap, --speed, --job-id and "
						 "--no-wait");
		}
		if (sync && strcmp(sync, "none") == 0 && wait) {
			return usage_error("%s", "disk backup --sync none copies until it is "
						 "cancelled: add --no-wait");
		}
		/* drive-backup: the disk as it is now, while the guest writes on */
		/* with a dirty bitmap: what it recorded (QEMU's incremental backup) */
		args = json_pack("{s:s, s:s, s:s, s:s}", "vm", vm, "device", disk, "sync",
				 sync	  ? sync
				 : bitmap ? "incremental"
					  : "full",
				 "mode", existing ? "existing" : "absolute-paths");
		if (args && bitmap) {
			json_object_set_new(args, "bitmap", json_string(bitmap));
		}
		if (!args || set_path(args, "target", argv[optind + 3]) < 0) {
			json_decref(args);
			return fail(EXIT_FAILURE, NULL, "cannot resolve '%s'", argv[optind + 3]);
		}
		if (format) {
			json_object_set_new(args, "format", json_string(format));
		}
		if (speed) {
			json_object_set_new(args, "speed", json_integer((json_int_t)speed));
		}
		if (job_id) {
			json_object_set_new(args, "job-id", json_string(job_id));
		}
		if (new_bitmap) {
			/* the bitmap starts at the backup's instant: one transaction */
			json_object_del(args, "vm");
			args = json_pack("{s:s, s:[{s:s, s:{s:s, s:s}}, {s:s, s:o}]}", "vm", vm,
					 "actions", "type", "block-dirty-bitmap-add", "data",
					 "node", disk, "name", new_bitmap, "type", "drive-backup",
					 "data", args);
		}
		rc = run_cmd(c, new_bitmap ? "transaction" : "drive-backup", args, NULL);
		if (rc == EXIT_OK && wait) {
			rc = follow_job(c, vm, job_id ? job_id : disk, true);
		}
		if (rc == EXIT_OK && !json_output) {
			printf("%s: disk %s: backup %s %s\n", vm, disk,
			       wait ? "written to" : "started into", argv[optind + 3]);
		}
		return rc;
	}
	if (sync && strcmp(verb, "mirror") != 0) {
		return usage_error("%s", "--sync is for disk mirror and disk backup");
	}
	if (strcmp(verb, "mirror") == 0) {
		if (argc - optind != 4) {
			return usage_error("%s", "disk mirror needs VM DISK FILE");
		}
		if (base || top || existing) {
			return usage_error("%s", "disk mirror takes --format, --sync, --speed, "
						 "--job-id, --no-wait and --no-pivot");
		}
		args = json_pack("{s:s, s:s}", "vm", vm, "device", disk);
		if (speed) {
			json_object_set_new(args, "speed", json_integer((json_int_t)speed));
		}
		if (job_id) {
			json_object_set_new(args, "job-id", json_string(job_id));
		}
		return disk_mirror(c, vm, disk, argv[optind + 3], format, sync, job_id, args, wait,
				   pivot);
	}
	if (argc - optind != 3) {
		return usage_error("disk %s needs VM DISK", verb);
	}
	if (strcmp(verb, "stream") != 0 && strcmp(verb, "commit") != 0) {
		return usage_error("unknown disk command '%s' (snapshot, stream, commit, mirror, "
				   "backup)",
				   verb);
	}
	if (top && strcmp(verb, "commit") != 0) {
		return usage_error("%s", "--top is for disk commit");
	}
	args = json_pack("{s:s, s:s}", "vm", vm, "device", disk);
	if (base) {
		json_object_set_new(args, "base", json_string(base));
	}
	if (top) {
		json_object_set_new(args, "top", json_string(top));
	}
	if (speed) {
		json_object_set_new(args, "speed", json_integer((json_int_t)speed));
	}
	if (job_id) {
		json_object_set_new(args, "job-id", json_string(job_id));
	}
	rc = run_cmd(c, strcmp(verb, "stream") == 0 ? "block-stream" : "block-commit", args, NULL);
	if (rc || !wait) {
		return rc;
	}
	return follow_job(c, vm, job_id ? job_id : disk, pivot);
}

static int cmd_jobs(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	json_auto_t *jobs = NULL;
	size_t i;
	json_t *j;
	int rc;

	if (argc != 2) {
		return usage_error("%s", "jobs needs exactly one VM name");
	}
	rc = run_cmd(c, "query-jobs", json_pack("{s:s}", "vm", argv[1]), &jobs);
	if (rc) {
		return rc;
	}
	if (json_output) {
		print_json(jobs);
		return EXIT_OK;
	}
	printf("%-16s %-14s %-10s %s\n", "ID", "TYPE", "STATUS", "PROGRESS");
	json_array_foreach (jobs, i, j) {
		uint64_t cur = (uint64_t)json_integer_value(json_object_get(j, "current-progress"));
		uint64_t total = (uint64_t)json_integer_value(json_object_get(j, "total-progress"));

		printf("%-16s %-14s %-10s %3u%% (%" PRIu64 "/%" PRIu64 ")%s%s\n", str(j, "id", "?"),
		       str(j, "type", "?"), str(j, "status", "?"),
		       total ? (unsigned)(cur * 100 / total) : 0, cur, total,
		       str(j, "error", NULL) ? " error: " : "", str(j, "error", ""));
	}
	return EXIT_OK;
}

/* ---- internal snapshots: vmctl snapshot save|load|delete|list ---- */

/* The disks snapshot-save/-load/-delete take by default, and the VM-state disk. */
static int snapshot_disks(struct qmp_client *c, const char *vm, json_t *devices,
			  const char **vmstate, json_t **ret_blocks)
{
	json_t *blocks = NULL, *b;
	size_t i;
	int rc = run_cmd(c, "query-block", json_pack("{s:s}", "vm", vm), &blocks);

	if (rc) {
		return rc;
	}
	json_array_foreach (blocks, i, b) {
		json_t *ins = json_object_get(b, "inserted");
		bool rw = !json_is_true(json_object_get(ins, "ro"));

		if (!ins) {
			continue;
		}
		json_array_append_new(devices, json_string(str(b, "device", "")));
		/* as QEMU's HMP: the state goes to the first writable qcow2 disk */
		if (!*vmstate && rw && strcmp(str(ins, "drv", ""), "qcow2") == 0) {
			*vmstate = str(b, "device", NULL);
		}
	}
	*ret_blocks = blocks;
	return EXIT_OK;
}

/* Wait until snapshot job @id of @vm concludes; its error, dismissed. */
static int follow_snapshot_job(struct qmp_client *c, const char *vm, const char *id)
{
	json_auto_t *jobs = NULL;
	_cleanup_free_ char *error = NULL;
	size_t i;
	json_t *j;
	int rc;

	progress_bar(id, "running", 0, 1);
	for (;;) {
		json_auto_t *ev = NULL;
		struct error *err = NULL;
		json_t *data;
		int r = qmp_client_next_event(c, 250, &ev, &err);

		if (r == -ETIMEDOUT) {
			continue;
		}
		if (r < 0) {
			return report(err, r);
		}
		data = json_object_get(ev, "data");
		if (strcmp(str(ev, "event", ""), "JOB_STATUS_CHANGE") == 0 &&
		    strcmp(str(data, "vm", ""), vm) == 0 && strcmp(str(data, "id", ""), id) == 0 &&
		    strcmp(str(data, "status", ""), "concluded") == 0) {
			break;
		}
	}
	rc = run_cmd(c, "query-jobs", json_pack("{s:s}", "vm", vm), &jobs);
	if (rc) {
		return rc;
	}
	json_array_foreach (jobs, i, j) {
		if (strcmp(str(j, "id", ""), id) == 0 && str(j, "error", NULL)) {
			error = strdup(str(j, "error", ""));
		}
	}
	progress_bar(id, error ? "failed" : "completed", 1, 1);
	if (isatty(STDERR_FILENO) && !json_output) {
		fputc('\n', stderr);
	}
	rc = run_cmd(c, "job-dismiss", json_pack("{s:s, s:s}", "vm", vm, "id", id), NULL);
	if (error) {
		return fail(EXIT_DAEMON, NULL, "%s", error);
	}
	return rc;
}

static int cmd_snapshot(struct qmp_client *c, int argc, char **argv,
			const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"disk", required_argument, NULL, 'd'},
		{"vmstate", required_argument, NULL, 'v'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	json_auto_t *devices = json_array(), *blocks = NULL;
	const char *vmstate = NULL, *verb, *vm, *tag = NULL;
	char id[64];
	bool chosen = false;
	json_t *args;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "d:v:j", opts, NULL)) != -1) {
		switch (o) {
		case 'd':
			json_array_append_new(devices, json_string(optarg));
			chosen = true;
			break;
		case 'v':
			vmstate = optarg;
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind < 2) {
		return usage_error("%s", "snapshot needs save|load|delete|list and a VM");
	}
	verb = argv[optind];
	vm = argv[optind + 1];
	if (strcmp(verb, "restore") == 0) {
		verb = "load"; /* the name for it */
	}
	if (strcmp(verb, "list") == 0) {
		json_auto_t *text = NULL;
		json_t *b;
		size_t i;

		if (argc - optind != 2) {
			return usage_error("%s", "snapshot list needs a VM");
		}
		if (json_output) {
			/* each disk with QEMU's SnapshotInfo list */
			json_auto_t *out = json_array();

			rc = run_cmd(c, "query-block", json_pack("{s:s}", "vm", vm), &blocks);
			if (rc) {
				return rc;
			}
			json_array_foreach (blocks, i, b) {
				json_t *sn = json_object_get(
					json_object_get(json_object_get(b, "inserted"), "image"),
					"snapshots");

				json_array_append_new(
					out, json_pack("{s:s, s:O}", "device", str(b, "device", ""),
						       "snapshots", sn ? sn : json_array()));
			}
			print_json(out);
			return EXIT_OK;
		}
		/* HMP's "info snapshots": QEMU's table */
		rc = run_cmd(c, "human-monitor-command",
			     json_pack("{s:s, s:s}", "vm", vm, "command-line", "info snapshots"),
			     &text);
		if (rc == EXIT_OK) {
			for (const char *p = json_string_value(text) ?: ""; *p; p++) {
				if (*p != '\r') {
					putchar(*p);
				}
			}
		}
		return rc;
	}
	if (strcmp(verb, "save") != 0 && strcmp(verb, "load") != 0 && strcmp(verb, "delete") != 0) {
		return usage_error("unknown snapshot command '%s' (save, load, delete, list)",
				   verb);
	}
	if (argc - optind != 3) {
		return usage_error("snapshot %s needs a VM and a TAG", verb);
	}
	tag = argv[optind + 2];
	if (!chosen || (!vmstate && strcmp(verb, "delete") != 0)) {
		json_auto_t *all = json_array();
		const char *first = NULL;

		rc = snapshot_disks(c, vm, all, &first, &blocks);
		if (rc) {
			return rc;
		}
		if (!chosen) {
			json_array_extend(devices, all);
		}
		if (!vmstate) {
			vmstate = first;
		}
		if (!vmstate && strcmp(verb, "delete") != 0) {
			return fail(EXIT_DAEMON, NULL,
				    "VM %s has no writable qcow2 disk for the VM state", vm);
		}
	}
	snprintf(id, sizeof(id), "vmctl-snapshot-%ld", (long)getpid());
	args = json_pack("{s:s, s:s, s:s, s:O}", "vm", vm, "job-id", id, "tag", tag, "devices",
			 devices);
	if (strcmp(verb, "delete") != 0) {
		json_object_set_new(args, "vmstate", json_string(vmstate));
	}
	rc = run_cmd(c,
		     strcmp(verb, "save") == 0	 ? "snapshot-save"
		     : strcmp(verb, "load") == 0 ? "snapshot-load"
						 : "snapshot-delete",
		     args, NULL);
	if (rc == EXIT_OK) {
		rc = follow_snapshot_job(c, vm, id);
	}
	if (rc == EXIT_OK && !json_output) {
		printf("%s: snapshot %s %s\n", vm, tag,
		       strcmp(verb, "save") == 0   ? "saved"
		       : strcmp(verb, "load") == 0 ? "loaded"
						   : "deleted");
	}
	return rc;
}

/* disk add|remove|resize: hotplug (clients/vmctl-hotplug.c); the rest: block jobs */
static int cmd_disk(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	if (argc >= 2 && (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "remove") == 0 ||
			  strcmp(argv[1], "resize") == 0 || strcmp(argv[1], "throttle") == 0)) {
		return vmctl_cmd_disk(c, argc, argv);
	}
	return cmd_disk_jobs(c, argc, argv, cmd);
}

static int cmd_nic(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	return vmctl_cmd_nic(c, argc, argv);
}

static int cmd_cd(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	return vmctl_cmd_cd(c, argc, argv);
}

static int cmd_cpus(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	return vmctl_cmd_cpus(c, argc, argv);
}

static int cmd_export(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	return vmctl_cmd_export(c, argc, argv);
}

/* One progress line from query-migrate's answer. */
static void print_progress(const char *name, json_t *info, bool tty)
{
	json_t *ram = json_object_get(info, "ram");
	json_int_t sent = json_integer_value(json_object_get(ram, "transferred"));
	json_int_t left = json_integer_value(json_object_get(ram, "remaining"));
	json_int_t total = json_integer_value(json_object_get(ram, "total"));
	json_t *throttle = json_object_get(info, "cpu-throttle-percentage");
	json_t *xb = json_object_get(info, "xbzrle-cache");
	char thr[32] = "", xbz[48] = "";

	if (throttle) {
		snprintf(thr, sizeof(thr), "  vCPUs throttled %" JSON_INTEGER_FORMAT "%%",
			 json_integer_value(throttle));
	}
	if (xb) {
		snprintf(xbz, sizeof(xbz), "  xbzrle %" JSON_INTEGER_FORMAT " pages",
			 json_integer_value(json_object_get(xb, "pages")));
	}
	printf("%s%s: %-9s pass %-3" JSON_INTEGER_FORMAT " sent %7.1f MiB  left %7.1f MiB of %.0f "
	       "MiB  dirty %" JSON_INTEGER_FORMAT " pages/s%s%s%s",
	       tty ? "\r" : "", name, str(info, "status", "?"),
	       json_integer_value(json_object_get(ram, "dirty-sync-count")), sent / 1048576.0,
	       left / 1048576.0, total / 1048576.0,
	       json_integer_value(json_object_get(ram, "dirty-pages-rate")), xbz, thr,
	       tty ? "   " : "\n");
	fflush(stdout);
}

/* migrate, with progress until the MIGRATION event says how it ended. */
/* Follow @name's migration to its end: EXIT_OK once completed. */
static int follow_migration(struct qmp_client *c, const char *name)
{
	bool tty = isatty(STDOUT_FILENO);
	json_int_t last_pass = -1;
	int rc;

	for (;;) {
		json_auto_t *ev = NULL, *info = NULL;
		struct error *err = NULL;
		const char *status;
		int r = qmp_client_next_event(c, 500, &ev, &err);

		if (r < 0 && r != -ETIMEDOUT) {
			return report(err, r);
		}
		error_free(err);
		if (ev && (strcmp(str(ev, "event", ""), "MIGRATION") != 0 ||
			   strcmp(str(json_object_get(ev, "data"), "vm", ""), name) != 0)) {
			continue;
		}
		rc = run_cmd(c, "query-migrate", json_pack("{s:s}", "vm", name), &info);
		if (rc) {
			return rc;
		}
		status = str(info, "status", "");
		if (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
		    strcmp(status, "cancelled") == 0) {
			if (json_output) {
				print_json(info);
			} else if (tty) {
				printf("\n");
			}
			if (strcmp(status, "completed") != 0) {
				fprintf(stderr, "vmctl: migrating %s %s: %s\n", name, status,
					str(info, "error-desc", "cancelled"));
				return EXIT_DAEMON;
			}
			if (!json_output) {
				printf("%s: migrated in %" JSON_INTEGER_FORMAT
				       " ms (downtime %" JSON_INTEGER_FORMAT
				       " ms, %.1f MiB sent)\n",
				       name,
				       json_integer_value(json_object_get(info, "total-time")),
				       json_integer_value(json_object_get(info, "downtime")),
				       json_integer_value(json_object_get(
					       json_object_get(info, "ram"), "transferred")) /
					       1048576.0);
			}
			return EXIT_OK;
		}
		if (!json_output && json_object_get(info, "ram") &&
		    (tty || json_integer_value(json_object_get(json_object_get(info, "ram"),
							       "dirty-sync-count")) != last_pass)) {
			last_pass = json_integer_value(
				json_object_get(json_object_get(info, "ram"), "dirty-sync-count"));
			print_progress(name, info, tty);
		}
	}
}

static int cmd_migrate(struct qmp_client *c, int argc, char **argv, const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"max-bandwidth", required_argument, NULL, 'b'},
		{"downtime-limit", required_argument, NULL, 'd'},
		{"auto-converge", no_argument, NULL, 'a'},
		{"xbzrle", no_argument, NULL, 'x'},
		{"xbzrle-cache-size", required_argument, NULL, 'c'},
		{"tls-creds", required_argument, NULL, 't'},
		{"tls-hostname", required_argument, NULL, 'H'},
		{"copy-storage", required_argument, NULL, 'S'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	json_auto_t *params = json_object(); /* freed on every usage error */
	json_auto_t *caps = json_array();
	const char *name, *copy = NULL;
	json_t *disks = NULL;
	uint64_t v;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "b:d:axc:t:H:S:j", opts, NULL)) != -1) {
		switch (o) {
		case 'S':
			copy = optarg;
			break;
		case 'a':
		case 'x':
			json_array_append_new(caps, json_pack("{s:s, s:b}", "capability",
							      o == 'a' ? "auto-converge" : "xbzrle",
							      "state", 1));
			break;
		case 'c':
			if (parse_size(optarg, &v) < 0 || v < 4096 || (v & (v - 1)) ||
			    v > INT64_MAX) {
				return usage_error("--xbzrle-cache-size '%s' is not a power of two "
						   "of at least 4096 bytes (e.g. 64M)",
						   optarg);
			}
			json_object_set_new(params, "xbzrle-cache-size",
					    json_integer((json_int_t)v));
			break;
		case 't':
			json_object_set_new(params, "tls-creds", json_string(optarg));
			break;
		case 'H':
			json_object_set_new(params, "tls-hostname", json_string(optarg));
			break;
		case 'b':
			if (parse_size(optarg, &v) < 0) {
				return usage_error(
					"--max-bandwidth '%s' is not a size in bytes per "
					"second (e.g. 100M)",
					optarg);
			}
			json_object_set_new(params, "max-bandwidth", json_integer((json_int_t)v));
			break;
		case 'd':
			if (parse_u64(optarg, &v) < 0 || v > 2000000) {
				return usage_error("--downtime-limit '%s' is not a number of "
						   "milliseconds (at most 2000000)",
						   optarg);
			}
			json_object_set_new(params, "downtime-limit", json_integer((json_int_t)v));
			break;
		case 'j':
			json_output = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		return usage_error("%s", "migrate needs a VM name and a URI (tcp:HOST:PORT, "
					 "unix:PATH)");
	}
	name = argv[optind];
	if (json_array_size(caps)) {
		rc = run_cmd(c, "migrate-set-capabilities",
			     json_pack("{s:s, s:O}", "vm", name, "capabilities", caps), NULL);
		if (rc) {
			return rc;
		}
	}
	if (json_object_size(params)) {
		json_object_set_new(params, "vm", json_string(name));
		rc = run_cmd(c, "migrate-set-parameters", TAKE_PTR(params), NULL);
		if (rc) {
			return rc;
		}
	}
	if (copy) {
		rc = vmctl_copy_storage_start(c, name, copy, &disks);
		if (rc) {
			return rc;
		}
	}
	rc = run_cmd(c, "migrate", json_pack("{s:s, s:s}", "vm", name, "uri", argv[optind + 1]),
		     NULL);
	if (rc == EXIT_OK) {
		rc = follow_migration(c, name);
	}
	if (disks) {
		int rc2 = vmctl_copy_storage_end(c, name, disks, rc == EXIT_OK);

		rc = rc ? rc : rc2;
	}
	return rc;
}

/* migrate-incoming on a VM created with "incoming": true. */
static int cmd_incoming(struct qmp_client *c, int argc, char **argv,
			const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"tls-creds", required_argument, NULL, 't'},
		{"tls-authz", required_argument, NULL, 'z'},
		{0},
	};
	json_auto_t *params = json_object();
	const char *name, *uri;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "t:z:", opts, NULL)) != -1) {
		switch (o) {
		case 't':
			json_object_set_new(params, "tls-creds", json_string(optarg));
			break;
		case 'z':
			json_object_set_new(params, "tls-authz", json_string(optarg));
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		return usage_error("%s", "incoming needs a VM name and a URI (tcp:HOST:PORT, "
					 "unix:PATH)");
	}
	name = argv[optind];
	uri = argv[optind + 1];
	if (json_object_size(params)) {
		json_object_set_new(params, "vm", json_string(name));
		rc = run_cmd(c, "migrate-set-parameters", TAKE_PTR(params), NULL);
		if (rc) {
			return rc;
		}
	}
	rc = run_cmd(c, "migrate-incoming", json_pack("{s:s, s:s}", "vm", name, "uri", uri), NULL);
	if (rc == EXIT_OK && !json_output) {
		printf("%s: waiting for a migration on %s\n", name, uri);
	}
	return rc;
}

/* announce-self: the VM's NICs send RARPs of their MACs (docs/migration.md). */
static int cmd_announce(struct qmp_client *c, int argc, char **argv,
			const struct vmctl_command *cmd)
{
	static const struct option opts[] = {
		{"rounds", required_argument, NULL, 'r'},
		{"initial", required_argument, NULL, 'i'},
		{"step", required_argument, NULL, 's'},
		{"max", required_argument, NULL, 'm'},
		{"interface", required_argument, NULL, 'n'},
		{"id", required_argument, NULL, 'd'},
		{0},
	};
	/* QEMU's migration defaults: 5 rounds at 0, 50, 200, 450 and 800 ms */
	json_auto_t *args = json_pack("{s:i, s:i, s:i, s:i}", "rounds", 5, "initial", 50, "step",
				      100, "max", 550);
	json_auto_t *ifaces = json_array();
	uint64_t v;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "r:i:s:m:n:d:", opts, NULL)) != -1) {
		const char *key = o == 'r'   ? "rounds"
				  : o == 'i' ? "initial"
				  : o == 's' ? "step"
					     : "max";

		switch (o) {
		case 'r':
		case 'i':
		case 's':
		case 'm':
			/* the daemon checks the ranges (vmmd-protocol(7)) */
			if (parse_u64(optarg, &v) < 0 || v > INT64_MAX) {
				return usage_error("--%s: '%s' is not a number", key, optarg);
			}
			json_object_set_new(args, key, json_integer((json_int_t)v));
			break;
		case 'n':
			json_array_append_new(ifaces, json_string(optarg));
			break;
		case 'd':
			json_object_set_new(args, "id", json_string(optarg));
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		return usage_error("%s", "announce needs a VM name");
	}
	json_object_set_new(args, "vm", json_string(argv[optind]));
	if (json_array_size(ifaces)) {
		json_object_set(args, "interfaces", ifaces);
	}
	rc = run_cmd(c, "announce-self", TAKE_PTR(args), NULL);
	if (rc == EXIT_OK && !json_output) {
		printf("%s: announcing\n", argv[optind]);
	}
	return rc;
}

/* daemon-upgrade: the daemon's executable takes over every VM (docs/upgrade.md). */
static int cmd_daemon_upgrade(struct qmp_client *c, int argc, char **argv,
			      const struct vmctl_command *cmd)
{
	json_auto_t *ret = NULL;
	size_t i;
	json_t *v;
	int rc;

	if (argc != 1) {
		return usage_error("daemon-upgrade takes no argument, got '%s'", argv[1]);
	}
	rc = run_cmd(c, "daemon-upgrade", NULL, &ret);
	if (rc) {
		return rc;
	}
	if (json_output) {
		print_json(ret);
		return EXIT_OK;
	}
	json_array_foreach (json_object_get(ret, "vms"), i, v) {
		printf("%s: taken over, downtime %" JSON_INTEGER_FORMAT
		       " ms, total %" JSON_INTEGER_FORMAT " ms\n",
		       str(v, "vm", "?"), json_integer_value(json_object_get(v, "downtime")),
		       json_integer_value(json_object_get(v, "total-time")));
	}
	printf("vmmd upgraded: pid %" JSON_INTEGER_FORMAT " serves %zu running VM%s\n",
	       json_integer_value(json_object_get(ret, "pid")),
	       json_array_size(json_object_get(ret, "vms")),
	       json_array_size(json_object_get(ret, "vms")) == 1 ? "" : "s");
	return EXIT_OK;
}

static const struct vmctl_command commands[] = {
	{"list", cmd_list, "", "list the defined VMs",
	 "Prints NAME, STATE, VCPUS, MEMORY and AUTOSTART of every VM (--json: the query-vms\n"
	 "answer).\n"},
	{"create", cmd_create, "--name NAME [OPTION]...", "define a VM (and with --start boot it)",
	 "  --name NAME            the VM's name\n"
	 "  --memory SIZE          guest RAM; a bare number is MiB as QEMU's -m (64 = 64M)\n"
	 "  --vcpus N              virtual CPUs\n"
	 "  --maxcpus N            possible vCPUs: those above --vcpus can be hot-plugged\n"
	 "  --cpu MODEL            host or baseline, with +feature/-feature\n"
	 "  --kernel FILE          direct boot: a bzImage or ELF kernel\n"
	 "  --initrd FILE          its initial ramdisk\n"
	 "  --cmdline TEXT         its command line\n"
	 "  --firmware FILE        boot a BIOS image (e.g. SeaBIOS) instead of a kernel\n"
	 "  --disk FILE[,format=raw|qcow2][,id=ID][,readonly][,cache=none]\n"
	 "         [,aio=io_uring|native|threads]\n"
	 "         [,driver=virtio-blk|ide-hd|ide-cd|usb-storage][,removable]\n"
	 "  --nic user|tap:IFNAME[,mac=MAC][,id=ID]\n"
	 "  --input usb-kbd|usb-tablet[,id=ID]\n"
	 "  --usb                  an xHCI controller even without USB devices (hotplug)\n"
	 "  --serial-log FILE      where the console output goes\n"
	 "  --autostart            start with the daemon\n"
	 "  --start                boot it at once\n"
	 "  --config FILE.json     a vmmd-vm(5) definition; flags given as well override it\n"
	 "  --from-qemu 'ARGS'     import a QEMU command line (see vmctl(1) for the options)\n"
	 "  --from-libvirt FILE    import a libvirt domain XML\n"
	 "  --print                print the definition instead of creating the VM\n"
	 "Files a definition names must exist (they are checked before the VM is defined);\n"
	 "an import lists on stderr every option it could not map.\n"},
	{"start", cmd_start, "NAME [--wait]", "boot a defined VM",
	 "  --wait    keep running until the VM stops (an already running VM is adopted);\n"
	 "            exit 0 when it shuts down (for vmmd-vm@.service)\n"},
	{"stop", cmd_stop, "NAME [--force] [--timeout S]",
	 "press the ACPI power button and wait for the guest to shut down",
	 "  --force        destroy the VM at once instead\n"
	 "  --timeout S    how long to wait for the guest (default 60 s; exit 5 after)\n"},
	{"pause", simple, "NAME", "stop the vCPUs", "", "stop", "paused"},
	{"resume", simple, "NAME", "continue the vCPUs", "", "cont", "resumed"},
	{"reset", simple, "NAME", "reset the VM (as the reset button)", "", "system_reset",
	 "reset"},
	{"delete", simple, "NAME [--force]", "remove a VM's definition",
	 "  --force    even if it is running (it is destroyed first)\n", "vm-delete", "deleted"},
	{"status", cmd_status, "NAME", "show one VM", ""},
	{"console", cmd_console, "NAME", "attach to the serial console (detach: Ctrl-])", ""},
	{"events", cmd_events, "[--vm NAME]", "print events as they arrive",
	 "  --vm NAME    only this VM's events\n"},
	{"save", cmd_save, "NAME DIR [--stop]", "save the whole VM into the new directory DIR",
	 "  --stop    destroy the VM once it is saved (else it runs on)\n"
	 "Waits for VM_SAVE_COMPLETED; prints the bytes of RAM written and the time.\n"},
	{"dump", cmd_dump, "NAME FILE [--paging] [--begin ADDR --length SIZE]",
	 "write the guest's memory and vCPU registers into an ELF core file",
	 "dump-guest-memory: the VM pauses while FILE is written (gdb and crash read it).\n"
	 "  --paging                      segments at the guest's virtual addresses\n"
	 "                                (its page tables), for gdb on a guest kernel\n"
	 "  --begin ADDR --length SIZE    only this guest-physical range\n"},
	{"restore", cmd_restore,
	 "DIR [--name NAME] [--paused] [--disk ID=FILE]... [--nic ID=IFNAME]...",
	 "build a VM from a saved one",
	 "  --name NAME       under this name (default: the saved one)\n"
	 "  --paused          leave it paused ('vmctl resume' starts it)\n"
	 "  --disk ID=FILE    disk ID on another image file\n"
	 "  --nic ID=IFNAME   NIC ID on another tap\n"},
	{"send-key", cmd_send_key, "NAME [--hold-time MS] CHORD...",
	 "type keys on the VM's USB keyboard",
	 "Each CHORD is QEMU key names joined by '-' (ctrl-alt-delete, shift-a, ret): one\n"
	 "send-key command, pressed in order, released in reverse order, MS apart.\n"
	 "  --hold-time MS    time between the key events (default 10)\n"},
	{"memory", cmd_memory, "list|set|resize|stats NAME ...",
	 "size a VM's memory; memory devices and balloon statistics",
	 "  memory list NAME         RAM, plugged memory and each virtio-mem device\n"
	 "                           (query-memory-size-summary, query-memory-devices)\n"
	 "  memory set NAME SIZE [--wait [--timeout S]]\n"
	 "                           the guest's memory becomes SIZE: above its RAM its\n"
	 "                           virtio-mem device plugs the rest, below it the\n"
	 "                           balloon takes the difference; --wait until the guest\n"
	 "                           has done it (default 60 s, then exit 5)\n"
	 "  memory resize NAME ID SIZE [--wait [--timeout S]]\n"
	 "                           ask the guest to plug SIZE on virtio-mem device ID\n"
	 "                           (qom-set requested-size); --wait until it has\n"
	 "                           (MEMORY_DEVICE_SIZE_CHANGE; default 60 s, then exit 5)\n"
	 "  memory stats NAME [--interval S]\n"
	 "                           the balloon's guest statistics (qom-get guest-stats);\n"
	 "                           --interval sets the polling period first (0: off)\n"},
	{"disk", cmd_disk,
	 "add|remove|resize|throttle|snapshot|snapshot-internal|snapshot-delete|stream|commit|\n"
	 "                     mirror|backup|bitmap VM ...",
	 "hot-add, remove or resize a disk; external snapshots and block jobs",
	 "  add VM ID FILE [--format raw|qcow2] [--readonly] [--serial S]\n"
	 "      [--cache none|writeback] [--addr SLOT]\n"
	 "                          blockdev-add (node node-ID) + device_add virtio-blk-pci\n"
	 "  remove VM ID [--timeout S]\n"
	 "                          device_del, wait for the guest's eject (default 10 s;\n"
	 "                          exit 5 after, the removal stays pending), blockdev-del\n"
	 "  resize VM ID SIZE       block_resize; the guest sees the new capacity\n"
	 "  throttle VM ID [--bps SIZE] [--bps-rd SIZE] [--bps-wr SIZE] [--iops N]\n"
	 "      [--iops-rd N] [--iops-wr N]\n"
	 "                          block_set_io_throttle: limit a virtio-blk disk's bytes\n"
	 "                          and operations per second (all, reads, writes); no\n"
	 "                          option lifts them; the definition keeps them\n"
	 "  snapshot VM DISK FILE   create the qcow2 overlay FILE and switch the disk to it\n"
	 "      --existing          use an existing overlay FILE\n"
	 "      --format qcow2      the overlay's format\n"
	 "  snapshot-internal VM DISK NAME\n"
	 "                          an internal snapshot NAME of the qcow2 disk alone\n"
	 "                          (blockdev-snapshot-internal-sync; no VM state)\n"
	 "  snapshot-delete VM DISK NAME|ID\n"
	 "                          delete one (blockdev-snapshot-delete-internal-sync)\n"
	 "  stream VM DISK          copy the backing chain into the disk's image\n"
	 "      --base FILE         down to FILE (it stays the backing file)\n"
	 "  commit VM DISK          copy the disk's image into its base and switch to the base\n"
	 "      --top FILE          commit FILE (below the active image) instead\n"
	 "  mirror VM DISK FILE     copy the disk into the existing image FILE while the guest\n"
	 "                          writes, then switch the disk to it\n"
	 "      --sync full|top|none  what to copy (default full: the whole disk)\n"
	 "      --base FILE         into FILE instead of the bottom of the chain\n"
	 "      --no-pivot          finish an active commit without switching\n"
	 "  backup VM DISK FILE     a copy of the disk as it is now into FILE, while the guest\n"
	 "                          writes on (drive-backup; FILE is created, with the disk's\n"
	 "                          format, unless --existing)\n"
	 "      --sync full|top|none  the whole disk (default), its active image alone (FILE\n"
	 "                          backed by its backing file), or only what the guest\n"
	 "                          overwrites (FILE backed by the disk; with --no-wait,\n"
	 "                          until the job is cancelled)\n"
	 "      --bitmap NAME       only what dirty bitmap NAME recorded (--sync incremental,\n"
	 "                          the default with it; the bitmap starts over if the\n"
	 "                          backup succeeds)\n"
	 "      --new-bitmap NAME   add dirty bitmap NAME at the backup's instant: what the\n"
	 "                          guest writes after it (the next --bitmap NAME backup)\n"
	 "  bitmap add|remove|clear|enable|disable VM DISK NAME [--granularity SIZE]\n"
	 "                          a dirty bitmap of the disk (block-dirty-bitmap-*; in\n"
	 "                          memory: it ends with the VM)\n"
	 "  bitmap list VM DISK     the disk's dirty bitmaps\n"
	 "  stream, commit, mirror and backup wait for their job with a progress bar on a\n"
	 "  terminal;\n"
	 "      --speed BYTES       limit the copy (bytes per second)\n"
	 "      --job-id ID         name the job (default: the disk)\n"
	 "      --no-wait           return once the job started (see vmctl jobs)\n"},
	{"snapshot", cmd_snapshot, "save|load|delete|list VM [TAG]",
	 "internal snapshots of a running VM (VM state inside a qcow2 disk)",
	 "  save VM TAG      pause, store the VM state in the first writable qcow2 disk\n"
	 "                   and snapshot every disk as TAG, resume (snapshot-save)\n"
	 "  load VM TAG      revert every disk to TAG and load the VM state (or: restore)\n"
	 "                   (snapshot-load; a failed load leaves the VM paused)\n"
	 "  delete VM TAG    remove TAG from every disk (snapshot-delete)\n"
	 "  list VM          QEMU's 'info snapshots' table (--json: each disk's list)\n"
	 "      --disk ID       only this disk (repeat for more; default: all disks)\n"
	 "      --vmstate ID    the disk that holds the VM state\n"},
	{"jobs", cmd_jobs, "VM", "list a VM's jobs with their progress",
	 "Prints ID, TYPE, STATUS and PROGRESS of each job (--json: the query-jobs answer).\n"},
	{"nic", cmd_nic, "add|remove|link NAME ID ...",
	 "hot-add or remove a NIC of a running VM, or set its link",
	 "  nic add NAME ID [--model virtio-net|e1000] [--tap IFNAME] [--mac MAC] [--addr SLOT]\n"
	 "                 netdev_add (netdev netdev-ID; user networking unless --tap)\n"
	 "                 + device_add\n"
	 "  nic remove NAME ID [--timeout S]\n"
	 "                 device_del, wait for the eject, then netdev_del\n"
	 "  nic link NAME ID up|down\n"
	 "                 set_link: down, the guest sees no link and frames are dropped\n"},
	{"cd", cmd_cd, "eject|insert NAME ID ...",
	 "change the medium of a running VM's CD-ROM drive",
	 "  cd eject NAME ID [--force]\n"
	 "                 eject: open the tray and remove the medium; a tray the guest\n"
	 "                 locked stays shut (the guest is asked to open it; try again\n"
	 "                 when it has) unless --force\n"
	 "  cd insert NAME ID FILE [--format raw|qcow2] [--force]\n"
	 "                 blockdev-change-medium: FILE (default raw) replaces the medium,\n"
	 "                 the tray closes; the VM's definition follows either change\n"},
	{"cpus", cmd_cpus, "set NAME N [--timeout S]", "hot-plug or unplug vCPUs of a running VM",
	 "  cpus set NAME N [--timeout S]\n"
	 "                 bring the VM to N present vCPUs (up to its maxcpus): device_add of\n"
	 "                 the lowest absent vCPUs (ids cpuN), or device_del of the highest\n"
	 "                 hot-plugged ones, waiting for each eject (default 10 s in all;\n"
	 "                 exit 5 after, the removal stays pending)\n"},
	{"migrate", cmd_migrate,
	 "NAME URI [--max-bandwidth SIZE] [--downtime-limit MS] [--auto-converge]\n"
	 "                     [--xbzrle] [--xbzrle-cache-size SIZE]\n"
	 "                     [--tls-creds ID [--tls-hostname NAME]] [--copy-storage HOST:PORT]",
	 "move a running VM to another vmmd (live migration)",
	 "  URI                    tcp:HOST:PORT or unix:PATH where the destination listens\n"
	 "                         ('vmctl incoming' there, on a VM with \"incoming\": true)\n"
	 "  --max-bandwidth SIZE   bytes per second (default 128M, QEMU's)\n"
	 "  --downtime-limit MS    the longest pause allowed at the switch (default 300)\n"
	 "  --auto-converge        turn on the VM's auto-converge capability (it stays on):\n"
	 "                         slow its vCPUs down while it dirties RAM faster than\n"
	 "                         the link carries\n"
	 "  --xbzrle               turn on the VM's xbzrle capability (it stays on): a page\n"
	 "                         sent before and dirtied again goes as its changes\n"
	 "  --xbzrle-cache-size SIZE  the source's cache of sent pages (a power of two,\n"
	 "                         default 64M; at most the VM's RAM is used)\n"
	 "  --tls-creds ID         migrate over TLS with the client credentials ID\n"
	 "                         (object-add tls-creds-x509 or tls-creds-psk; '' for none)\n"
	 "  --tls-hostname NAME    the name the server's x509 certificate must bear\n"
	 "                         (default: the tcp: URI's host)\n"
	 "  --copy-storage HOST:PORT  for a destination that does not share the disks:\n"
	 "                         mirror each writable disk into the export of the same\n"
	 "                         name on the destination's NBD server ('vmctl export'\n"
	 "                         there, the VM paused) first, end the mirrors after\n"
	 "Shows each pass (data sent and left, dirty rate, xbzrle pages, vCPU throttle)\n"
	 "until the migration ends; exit 0 when the destination runs the VM. A VM that\n"
	 "dirties RAM faster than the link carries converges only if auto-converge slows\n"
	 "it down or xbzrle makes its pages cheap enough (few bytes changed in each):\n"
	 "otherwise interrupt and run 'vmctl migrate-cancel NAME'.\n"},
	{"export", cmd_export, "start|add|remove|stop|list NAME ...",
	 "serve a VM's disks over NBD (a migration's destination, backups)",
	 "  export start NAME (--listen HOST:PORT | --socket PATH) [--max-connections N]\n"
	 "                 nbd-server-start: the VM's NBD server (also while it waits\n"
	 "                 for an incoming migration)\n"
	 "  export add NAME DISK [--name EXPORT] [--writable] [--description TEXT]\n"
	 "                 block-export-add: serve the disk as EXPORT (default: its id)\n"
	 "  export remove NAME EXPORT [--hard]\n"
	 "                 block-export-del: refused while a client uses it, unless\n"
	 "                 --hard (its clients are disconnected)\n"
	 "  export stop NAME\n"
	 "                 nbd-server-stop: every export goes, every client is disconnected\n"
	 "  export list NAME\n"
	 "                 query-block-exports\n"},
	{"migrate-cancel", simple, "NAME", "cancel a live migration (the VM runs on here)", "",
	 "migrate_cancel", "migration cancelled"},
	{"nmi", simple, "NAME", "inject a non-maskable interrupt into every vCPU",
	 "As QEMU's inject-nmi (a guest kernel may dump its state or panic on it).\n", "inject-nmi",
	 "NMI injected"},
	{"daemon-upgrade", cmd_daemon_upgrade, "",
	 "live upgrade: vmmd's executable, started again, takes over every VM",
	 "Run after installing a new vmmd binary: it takes over every running or paused VM\n"
	 "by local migration (each pauses for its downtime, shown), then the old daemon\n"
	 "exits. On a failure every VM stays with the old daemon and this exits non-zero.\n"},
	{"incoming", cmd_incoming, "NAME URI [--tls-creds ID] [--tls-authz ID]",
	 "listen on URI for a migration of a VM created with \"incoming\": true",
	 "  --tls-creds ID         take the migration over TLS only, with the server\n"
	 "                         credentials ID (object-add tls-creds-x509 or tls-creds-psk)\n"
	 "  --tls-authz ID         admit only a source the authorization object ID\n"
	 "                         (object-add authz-simple or authz-list) allows: its\n"
	 "                         certificate's DN, or its PSK username\n"
	 "Objects are made with 'vmctl qmp' (object-add, vmmd-protocol(7)). A source\n"
	 "refused at the TLS handshake is dropped and this one listens on.\n"},
	{"announce", cmd_announce,
	 "NAME [--rounds N] [--initial MS] [--step MS] [--max MS] [--interface ID]...\n"
	 "                     [--id NAME]",
	 "make the VM's NICs announce its MAC addresses to the network (RARP)",
	 "  --rounds N             frames per NIC (default 5; 0 stops a schedule)\n"
	 "  --initial MS           the gap after the first (default 50)\n"
	 "  --step MS              each later gap this much longer (default 100)\n"
	 "  --max MS               no gap longer (default 550)\n"
	 "  --interface ID         only this NIC (repeat for more; default every NIC)\n"
	 "  --id NAME              the schedule's name: the same again starts it over\n"
	 "As QEMU's announce-self; a migration's destination does it by itself with its\n"
	 "announce-* parameters. A paused VM's frames go when it runs.\n"},
	{"qmp", cmd_qmp, "[JSON]", "send one raw protocol command (or stdin), print the reply",
	 "The command is a QMP object such as '{\"execute\": \"query-vms\"}'; see\n"
	 "vmmd-protocol(7).\n"},
};

static const size_t n_commands = ARRAY_SIZE(commands);

static void usage(FILE *out)
{
	fprintf(out, "Usage: vmctl [OPTION]... COMMAND [ARG]...\n"
		     "Control the VMs of a running vmmd.\n"
		     "\n"
		     "Commands:\n");
	for (size_t i = 0; i < n_commands; i++) {
		fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
	}
	fprintf(out,
		"\n"
		"Options:\n"
		"  -s, --socket PATH   vmmd's socket (default: $VMMD_SOCKET, else %s)\n"
		"  -j, --json          machine-readable JSON output (errors too)\n"
		"  -h, --help          show this help and exit\n"
		"  -V, --version       show the version and exit\n"
		"\n"
		"'vmctl COMMAND --help' describes a command.\n"
		"Exit status: 0 ok, 1 vmmd reported an error, 2 usage error, 3 no such VM,\n"
		"4 cannot connect to vmmd, 5 timed out.\n",
		DEFAULT_SOCKET);
}

static void command_help(const struct vmctl_command *cmd)
{
	printf("Usage: vmctl %s %s\n%s.\n", cmd->name, cmd->synopsis, cmd->summary);
	if (cmd->help && *cmd->help) {
		printf("\n%s", cmd->help);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	_cleanup_(qmp_client_freep) struct qmp_client *c = NULL;
	const char *cmd;
	int o, rc;

	while ((o = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			json_output = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("vmctl %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		default:
			fprintf(stderr, "Try 'vmctl --help'.\n");
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!socket_path) {
		socket_path = getenv("VMMD_SOCKET");
	}
	if (!socket_path || !socket_path[0]) {
		socket_path = DEFAULT_SOCKET;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	signal(SIGPIPE, SIG_IGN);
	/* --json after the command applies to every error, even an unknown command */
	for (int a = 1; a < argc && strcmp(argv[a], "--") != 0; a++) {
		json_output =
			json_output || strcmp(argv[a], "--json") == 0 || strcmp(argv[a], "-j") == 0;
	}
	for (size_t i = 0; i < n_commands; i++) {
		if (strcmp(commands[i].name, cmd) != 0) {
			continue;
		}
		/* --help anywhere among the command's arguments */
		for (int a = 1; a < argc && strcmp(argv[a], "--") != 0; a++) {
			if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
				command_help(&commands[i]);
				return EXIT_OK;
			}
		}
		if (commands[i].fn == cmd_create && create_is_offline(argc, argv)) {
			return commands[i].fn(NULL, argc, argv, &commands[i]);
		}
		rc = open_client(&c);
		if (rc) {
			return rc;
		}
		return commands[i].fn(c, argc, argv, &commands[i]);
	}
	return usage_error("unknown command '%s' (see 'vmctl --help')", cmd);
}
