/*
 * Import of QEMU command lines and libvirt domain XML into vmmd-vm(5)
 * definitions (vmctl create --from-qemu / --from-libvirt). What has a vmmd
 * equivalent is mapped; everything else is listed, with the reason, in the
 * "unmapped" array the caller prints, so nothing is dropped silently.
 *
 * Single-threaded client code. Inputs are the user's own files and
 * arguments, but still bounded (option count, XML size).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "clients/vmctl-import.h"
#include "common/cleanup.h"
#include "common/util.h"

#define IMPORT_MAX_ARGS 4096
/* QEMU's default firmware (Debian: the seabios package). */
#define QEMU_DEFAULT_BIOS "/usr/share/seabios/bios-256k.bin"

static void unmapped(json_t *list, const char *fmt, ...) _printf_(2, 3);

static void unmapped(json_t *list, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) >= 0) {
		json_array_append_new(list, json_string(s));
	}
	va_end(ap);
	free(s);
}

/* An absolute path for @path (vmmd resolves nothing against vmctl's directory). */
static json_t *abs_path(const char *path)
{
	char cwd[4096], *abs = NULL;
	json_t *j;

	if (path[0] == '/' || strstr(path, "://") || !getcwd(cwd, sizeof(cwd)) ||
	    asprintf(&abs, "%s/%s", cwd, path) < 0) {
		return json_string(path);
	}
	j = json_string(abs);
	free(abs);
	return j;
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

/* A device id from @name: vmmd ids are [A-Za-z0-9_.-]{1,64}. */
static void set_id(json_t *dev, const char *name)
{
	char id[65];
	size_t n = 0;

	for (const char *p = name; *p && n < sizeof(id) - 1; p++) {
		id[n++] = isalnum((unsigned char)*p) || strchr("_.-", *p) ? *p : '_';
	}
	id[n] = '\0';
	json_object_set_new(dev, "id", json_string(n ? id : "dev"));
}

/* The format QEMU would probe for @path: qcow2 by its magic, else raw. */
static const char *probe_format(const char *path)
{
	unsigned char magic[4] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		return "raw";
	}
	n = read(fd, magic, sizeof(magic));
	close(fd);
	return n == 4 && memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
}

/* Memory from a QEMU/libvirt number and unit into vmmd's size string. */
static json_t *memory_size(const char *num, const char *unit_suffix)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%s%s", num, unit_suffix);
	for (char *p = buf; *p; p++) {
		*p = (char)toupper((unsigned char)*p);
	}
	return json_string(buf);
}

/* ---- QEMU command lines ---- */

/* Split @s as a POSIX shell would split words (quotes and backslashes; no expansion). */
static int split_words(const char *s, char ***ret, size_t *ret_n, struct error **errp)
{
	char **words = NULL, *cur = NULL;
	size_t n = 0, len = 0;
	bool in_word = false;
	char quote = 0;

	cur = malloc(strlen(s) + 1);
	if (!cur) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	for (const char *p = s;; p++) {
		char c = *p;

		if (!c || (!quote && isspace((unsigned char)c))) {
			if (quote) {
				break;
			}
			if (in_word) {
				char **w = n < IMPORT_MAX_ARGS
						   ? realloc(words, (n + 1) * sizeof(*w))
						   : NULL;

				if (!w) {
					goto fail;
				}
				words = w;
				words[n] = strndup(cur, len);
				if (!words[n++]) {
					goto fail;
				}
				len = 0;
				in_word = false;
			}
			if (!c) {
				free(cur);
				*ret = words;
				*ret_n = n;
				return 0;
			}
			continue;
		}
		in_word = true;
		if (quote == '\'') {
			if (c == '\'') {
				quote = 0;
			} else {
				cur[len++] = c;
			}
		} else if (c == '\\' && p[1] && (quote != '"' || strchr("\"\\$`", p[1]))) {
			cur[len++] = *++p;
		} else if (quote == '"') {
			if (c == '"') {
				quote = 0;
			} else {
				cur[len++] = c;
			}
		} else if (c == '\'' || c == '"') {
			quote = c;
		} else {
			cur[len++] = c;
		}
	}
	free(cur);
	for (size_t i = 0; i < n; i++) {
		free(words[i]);
	}
	free(words);
	return error_set(errp, EINVAL, "the QEMU command line has an unbalanced %c quote", quote);
fail:
	free(cur);
	for (size_t i = 0; i < n; i++) {
		free(words[i]);
	}
	free(words);
	return error_set(errp, E2BIG, "the QEMU command line is too long (at most %d words)",
			 IMPORT_MAX_ARGS);
}

/*
 * QEMU's KEY=VALUE,... option syntax (",," is a literal comma). A first
 * element without '=' is the value of @implied (e.g. -netdev user,...:
 * type=user), or with @implied NULL the key of a flag ("on").
 */
static json_t *parse_keyval(const char *s, const char *implied)
{
	json_t *o = json_object();
	char *buf = malloc(strlen(s) + 1);
	bool first = true;

	if (!buf) {
		return o;
	}
	while (*s || first) {
		size_t n = 0;
		char *eq;

		while (*s) {
			if (*s == ',' && s[1] == ',') {
				buf[n++] = ',';
				s += 2;
			} else if (*s == ',') {
				s++;
				break;
			} else {
				buf[n++] = *s++;
			}
		}
		buf[n] = '\0';
		eq = strchr(buf, '=');
		if (eq) {
			*eq = '\0';
			json_object_set_new(o, buf, json_string(eq + 1));
		} else if (first && implied) {
			json_object_set_new(o, implied, json_string(buf));
		} else if (n) {
			json_object_set_new(o, buf, json_string("on"));
		}
		first = false;
	}
	free(buf);
	return o;
}

static const char *kv(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool kv_on(json_t *o, const char *key)
{
	const char *v = kv(o, key);

	return v && (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
}

/* Every key of @o not in @known, listed as "OPT key=value (reason)". */
static void unmapped_keys(json_t *list, const char *opt, json_t *o, const char *const *known,
			  const char *reason)
{
	const char *key;
	json_t *v;

	json_object_foreach (o, key, v) {
		bool ok = false;

		for (size_t i = 0; known[i] && !ok; i++) {
			ok = strcmp(known[i], key) == 0;
		}
		if (!ok) {
			unmapped(list, "%s %s=%s (%s)", opt, key, json_string_value(v), reason);
		}
	}
}

struct qemu_import {
	json_t *def, *un;
	json_t *drives;	  /* -drive if=none and -blockdev, by id / node-name */
	json_t *netdevs;  /* -netdev by id */
	json_t *chardevs; /* -chardev file by id: the path */
	char *order;	  /* -boot order */
	unsigned n_disks, n_nics;
	bool have_serial;
};

/*
 * QEMU's aio= (libvirt's io=) as a disk's "aio": threads, io_uring, or
 * native with O_DIRECT (@direct), which QEMU requires too. NULL for none
 * given, or for one vmmd cannot take (*@why says why).
 */
static const char *map_aio(const char *aio, bool direct, const char **why)
{
	bool native = aio && strcmp(aio, "native") == 0;

	if (!aio || strcmp(aio, "threads") == 0 || strcmp(aio, "io_uring") == 0 ||
	    (native && direct)) {
		return aio;
	}
	*why = native ? "needs cache=none, as in QEMU" : "vmmd has threads, native and io_uring";
	return NULL;
}

static bool cache_direct(const char *cache)
{
	return cache && (strcmp(cache, "none") == 0 || strcmp(cache, "directsync") == 0);
}

/* A disk entry from a -drive / -blockdev description, for @driver. */
static json_t *disk_from_drive(json_t *drive, const char *driver, const char *id)
{
	json_t *d = json_object();
	const char *file = kv(drive, "file"), *aio, *why = NULL;

	set_id(d, id);
	json_object_set_new(d, "driver", json_string(driver));
	if (file && *file) {
		json_object_set_new(d, "file", abs_path(file));
		json_object_set_new(d, "format",
				    json_string(kv(drive, "format") ?: probe_format(file)));
	}
	if (kv_on(drive, "readonly") && strcmp(driver, "ide-cd") != 0) {
		json_object_set_new(d, "readonly", json_true());
	}
	if (cache_direct(kv(drive, "cache"))) {
		json_object_set_new(d, "cache", json_string("none"));
	}
	aio = map_aio(kv(drive, "aio"), cache_direct(kv(drive, "cache")), &why);
	if (aio) {
		json_object_set_new(d, "aio", json_string(aio));
	}
	if (kv(drive, "serial")) {
		json_object_set_new(d, "serial", json_string(kv(drive, "serial")));
	}
	for (const char *const *k = (const char *const[]){"werror", "rerror", NULL}; *k; k++) {
		const char *v = kv(drive, *k);

		if (v && (strcmp(v, "stop") == 0 || strcmp(v, "report") == 0)) {
			json_object_set_new(d, *k, json_string(v));
		}
	}
	return d;
}

static void add_disk(struct qemu_import *q, json_t *disk)
{
	q->n_disks++;
	json_array_append_new(arr(q->def, "disks"), disk);
}

static void qemu_drive(struct qemu_import *q, const char *arg)
{
	static const char *const known[] = {
		"file",	  "format", "if",    "media", "readonly", "cache", "id", "serial",
		"werror", "rerror", "index", "bus",   "unit",	  "aio",   NULL,
	};
	json_t *o = parse_keyval(arg, "file");
	const char *ifc = kv(o, "if") ?: "ide", *media = kv(o, "media") ?: "disk";
	const char *cache = kv(o, "cache"), *why = NULL;
	char id[32];

	unmapped_keys(q->un, "-drive", o, known, "no vmmd equivalent");
	if (cache && strcmp(cache, "none") != 0 && strcmp(cache, "writeback") != 0 &&
	    strcmp(cache, "directsync") != 0) {
		unmapped(q->un, "-drive cache=%s (vmmd has writeback and none)", cache);
	}
	if (kv(o, "aio") && !map_aio(kv(o, "aio"), cache_direct(cache), &why)) {
		unmapped(q->un, "-drive aio=%s (%s)", kv(o, "aio"), why);
	}
	if (strcmp(ifc, "none") == 0) {
		if (kv(o, "id")) {
			json_object_set_new(q->drives, kv(o, "id"), o);
			return;
		}
		unmapped(q->un, "-drive %s (if=none without id: no device can use it)", arg);
		json_decref(o);
		return;
	}
	snprintf(id, sizeof(id), "disk%u", q->n_disks);
	if (strcmp(ifc, "virtio") == 0) {
		add_disk(q, disk_from_drive(o, "virtio-blk", kv(o, "id") ?: id));
	} else if (strcmp(ifc, "ide") == 0) {
		add_disk(q, disk_from_drive(o, strcmp(media, "cdrom") == 0 ? "ide-cd" : "ide-hd",
					    kv(o, "id") ?: id));
	} else {
		unmapped(q->un, "-drive %s (if=%s: vmmd has virtio and ide)", arg, ifc);
	}
	json_decref(o);
}

/* -blockdev as JSON or dotted keys: node-name -> {file, format, readonly}. */
static void qemu_blockdev(struct qemu_import *q, const char *arg)
{
	json_t *o, *flat = json_object(), *file;
	const char *drv, *node;

	if (arg[0] == '{') {
		o = json_loads(arg, 0, NULL);
	} else {
		o = parse_keyval(arg, NULL); /* dotted keys: file.driver=file,file.filename=X */
	}
	if (!json_is_object(o)) {
		unmapped(q->un, "-blockdev %s (not valid JSON)", arg);
		json_decref(o);
		json_decref(flat);
		return;
	}
	drv = kv(o, "driver");
	node = kv(o, "node-name");
	file = json_object_get(o, "file");
	if (!drv || !node) {
		unmapped(q->un, "-blockdev %s (needs driver and node-name)", arg);
	} else if (strcmp(drv, "file") == 0 || strcmp(drv, "host_device") == 0) {
		json_object_set_new(flat, "file", json_string(kv(o, "filename") ?: ""));
		json_object_set_new(flat, "format", json_string("raw"));
		json_object_set_new(flat, "protocol", json_true());
	} else if (strcmp(drv, "raw") == 0 || strcmp(drv, "qcow2") == 0) {
		const char *fname = json_is_object(file)   ? kv(file, "filename")
				    : json_is_string(file) ? NULL
							   : kv(o, "file.filename");
		json_t *child = json_is_string(file)
					? json_object_get(q->drives, json_string_value(file))
					: NULL;

		if (child) {
			fname = kv(child, "file");
		}
		json_object_set_new(flat, "file", json_string(fname ?: ""));
		json_object_set_new(flat, "format", json_string(drv));
		if (!fname) {
			unmapped(q->un, "-blockdev %s (its file node is not a plain file)", arg);
		}
	} else {
		unmapped(q->un, "-blockdev %s (driver %s: vmmd has raw and qcow2 over files)", arg,
			 drv);
	}
	if (node && json_object_size(flat)) {
		if (json_is_true(json_object_get(o, "read-only")) || kv_on(o, "read-only")) {
			json_object_set_new(flat, "readonly", json_string("on"));
		}
		json_object_set(q->drives, node, flat);
	}
	json_decref(flat);
	json_decref(o);
}

static void qemu_device(struct qemu_import *q, const char *arg)
{
	json_t *o = parse_keyval(arg, "driver");
	const char *drv = kv(o, "driver"), *id = kv(o, "id");
	char defid[32];

	if (!drv) {
		unmapped(q->un, "-device %s (no driver)", arg);
	} else if (strcmp(drv, "virtio-blk-pci") == 0 || strcmp(drv, "virtio-blk") == 0 ||
		   strcmp(drv, "ide-hd") == 0 || strcmp(drv, "ide-cd") == 0 ||
		   strcmp(drv, "ide-drive") == 0) {
		const char *drive = kv(o, "drive");
		json_t *d = drive ? json_object_get(q->drives, drive) : NULL;
		const char *vdrv = strncmp(drv, "virtio", 6) == 0 ? "virtio-blk"
				   : strcmp(drv, "ide-cd") == 0	  ? "ide-cd"
								  : "ide-hd";

		if (!d && strcmp(vdrv, "ide-cd") != 0) {
			unmapped(q->un, "-device %s (drive '%s' is not defined)", arg, drive ?: "");
		} else {
			json_t *disk;

			snprintf(defid, sizeof(defid), "disk%u", q->n_disks);
			disk = d ? disk_from_drive(d, vdrv, id ?: drive) : json_object();
			if (!d) {
				set_id(disk, id ?: defid);
				json_object_set_new(disk, "driver", json_string(vdrv));
			}
			if (kv(o, "serial")) {
				json_object_set_new(disk, "serial", json_string(kv(o, "serial")));
			}
			add_disk(q, disk);
		}
	} else if (strcmp(drv, "virtio-net-pci") == 0 || strcmp(drv, "virtio-net") == 0 ||
		   strcmp(drv, "e1000") == 0) {
		const char *netdev = kv(o, "netdev");
		json_t *nd = netdev ? json_object_get(q->netdevs, netdev) : NULL;

		if (!nd) {
			unmapped(q->un, "-device %s (netdev '%s' is not defined)", arg,
				 netdev ?: "");
		} else {
			json_t *nic = json_deep_copy(nd);

			set_id(nic, id ?: netdev);
			json_object_set_new(
				nic, "driver",
				json_string(strcmp(drv, "e1000") == 0 ? "e1000" : "virtio-net"));
			if (kv(o, "mac")) {
				json_object_set_new(nic, "mac", json_string(kv(o, "mac")));
			}
			q->n_nics++;
			json_array_append_new(arr(q->def, "nics"), nic);
		}
	} else if (strcmp(drv, "qemu-xhci") == 0 || strcmp(drv, "nec-usb-xhci") == 0) {
		/* vmmd's (qemu-xhci compatible) controller; "usb" keeps it for hotplug */
		json_object_set_new(q->def, "usb", json_true());
	} else if (strcmp(drv, "usb-storage") == 0) {
		const char *drive = kv(o, "drive");
		json_t *d = drive ? json_object_get(q->drives, drive) : NULL;

		if (!d) {
			unmapped(q->un, "-device %s (drive '%s' is not defined)", arg, drive ?: "");
		} else {
			json_t *disk = disk_from_drive(d, "usb-storage", id ?: drive);

			if (kv_on(o, "removable")) {
				json_object_set_new(disk, "removable", json_true());
			}
			if (kv(o, "serial")) {
				json_object_set_new(disk, "serial", json_string(kv(o, "serial")));
			}
			add_disk(q, disk);
		}
	} else if (strcmp(drv, "usb-kbd") == 0 || strcmp(drv, "usb-tablet") == 0) {
		json_t *in = arr(q->def, "input");

		snprintf(defid, sizeof(defid), "input%zu", json_array_size(in));
		json_array_append_new(in,
				      json_pack("{s:s, s:s}", "id", id ?: defid, "driver", drv));
	} else if (strcmp(drv, "virtio-rng-pci") == 0 || strcmp(drv, "virtio-rng") == 0) {
		json_object_set_new(q->def, "rng", json_true());
	} else if (strcmp(drv, "isa-debugcon") == 0) {
		const char *cd = kv(o, "chardev"), *iobase = kv(o, "iobase");
		json_t *path = cd ? json_object_get(q->chardevs, cd) : NULL;

		if (!path || (iobase && strtoul(iobase, NULL, 0) != 0x402 &&
			      strtoul(iobase, NULL, 0) != 0xe9)) {
			unmapped(q->un, "-device %s (vmmd's debugcon is port 0x402 to a file)",
				 arg);
		} else {
			json_object_set_new(q->def, "debugcon", json_incref(path));
		}
	} else {
		unmapped(q->un, "-device %s (no vmmd device %s)", arg, drv);
	}
	json_decref(o);
}

static void qemu_netdev(struct qemu_import *q, const char *arg)
{
	json_t *o = parse_keyval(arg, "type"), *nic = json_object();
	const char *type = kv(o, "type"), *id = kv(o, "id"), *key;
	json_t *v;

	if (type && strcmp(type, "user") == 0 && id) {
		json_object_set_new(nic, "backend", json_string("user"));
		json_object_foreach (o, key, v) {
			if (strcmp(key, "hostfwd") == 0) {
				json_array_append_new(arr(nic, "hostfwd"), json_incref(v));
			} else if (strcmp(key, "type") != 0 && strcmp(key, "id") != 0) {
				unmapped(q->un, "-netdev user %s=%s (vmmd's user network is fixed)",
					 key, json_string_value(v));
			}
		}
		json_object_set(q->netdevs, id, nic);
	} else if (type && strcmp(type, "tap") == 0 && id && kv(o, "ifname")) {
		json_object_set_new(nic, "backend", json_string("tap"));
		json_object_set_new(nic, "ifname", json_string(kv(o, "ifname")));
		json_object_foreach (o, key, v) {
			if (strcmp(key, "type") != 0 && strcmp(key, "id") != 0 &&
			    strcmp(key, "ifname") != 0 &&
			    !((strcmp(key, "script") == 0 || strcmp(key, "downscript") == 0) &&
			      strcmp(json_string_value(v), "no") == 0)) {
				unmapped(q->un, "-netdev tap %s=%s (no vmmd equivalent)", key,
					 json_string_value(v));
			}
		}
		json_object_set(q->netdevs, id, nic);
	} else {
		unmapped(q->un, "-netdev %s (vmmd has user, and tap with ifname)", arg);
	}
	json_decref(nic);
	json_decref(o);
}

static void qemu_serial(struct qemu_import *q, const char *arg)
{
	if (q->have_serial) {
		unmapped(q->un, "-serial %s (vmmd has one serial port, COM1)", arg);
		return;
	}
	q->have_serial = true;
	if (strncmp(arg, "file:", 5) == 0) {
		json_object_set_new(sub(q->def, "serial"), "log", abs_path(arg + 5));
	} else if (strncmp(arg, "chardev:", 8) == 0 && json_object_get(q->chardevs, arg + 8)) {
		json_object_set_new(sub(q->def, "serial"), "log",
				    json_incref(json_object_get(q->chardevs, arg + 8)));
	} else if (strcmp(arg, "stdio") != 0 && strcmp(arg, "mon:stdio") != 0 &&
		   strcmp(arg, "pty") != 0) {
		/* stdio/pty: vmmd's console socket and log serve instead */
		unmapped(q->un, "-serial %s (vmmd: the console socket and a log file)", arg);
	}
}

static void qemu_smp(struct qemu_import *q, const char *arg)
{
	json_t *o = parse_keyval(arg, "cpus");
	unsigned long cpus = kv(o, "cpus") ? strtoul(kv(o, "cpus"), NULL, 10) : 0;
	unsigned long s = kv(o, "sockets") ? strtoul(kv(o, "sockets"), NULL, 10) : 1;
	unsigned long c = kv(o, "cores") ? strtoul(kv(o, "cores"), NULL, 10) : 1;
	unsigned long t = kv(o, "threads") ? strtoul(kv(o, "threads"), NULL, 10) : 1;
	static const char *const known[] = {"cpus", "sockets", "cores", "threads", NULL};

	if (!cpus) {
		cpus = s * c * t;
	}
	json_object_set_new(q->def, "vcpus", json_integer((json_int_t)cpus));
	if (s > 1 || t > 1) {
		unmapped(q->un, "-smp %s (topology: vmmd has one socket of %lu cores)", arg, cpus);
	}
	unmapped_keys(q->un, "-smp", o, known, "no vmmd equivalent");
	json_decref(o);
}

static void qemu_memory(struct qemu_import *q, const char *arg)
{
	json_t *o = parse_keyval(arg, "size");
	const char *size = kv(o, "size");
	static const char *const known[] = {"size", NULL};

	if (size && strspn(size, "0123456789") == strlen(size)) {
		json_object_set_new(q->def, "memory", memory_size(size, "M")); /* -m 64 = 64 MiB */
	} else if (size) {
		json_object_set_new(q->def, "memory", memory_size(size, ""));
	}
	unmapped_keys(q->un, "-m", o, known, "no memory hotplug");
	json_decref(o);
}

static void qemu_cpu(struct qemu_import *q, const char *arg)
{
	json_t *o = parse_keyval(arg, "model");
	const char *model = kv(o, "model"), *key;
	char buf[1024];
	size_t n;
	json_t *v;

	if (strcmp(model, "host") == 0 || strcmp(model, "max") == 0) {
		n = (size_t)snprintf(buf, sizeof(buf), "host");
	} else {
		n = (size_t)snprintf(buf, sizeof(buf), "baseline");
		unmapped(q->un, "-cpu %s (model %s: vmmd has host and baseline; baseline used)",
			 arg, model);
	}
	json_object_foreach (o, key, v) {
		const char *val = json_string_value(v);

		if (strcmp(key, "model") == 0 || n >= sizeof(buf)) {
			continue;
		}
		if (key[0] == '+' || key[0] == '-') {
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",%s", key);
		} else if (strcmp(val, "on") == 0 || strcmp(val, "off") == 0) {
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",%c%s",
					      strcmp(val, "on") == 0 ? '+' : '-', key);
		} else {
			unmapped(q->un, "-cpu %s=%s (no vmmd equivalent)", key, val);
		}
	}
	json_object_set_new(q->def, "cpu", json_string(buf));
	json_decref(o);
}

/* -boot order letters into the firmware boot order of device ids. */
static void qemu_boot_order(struct qemu_import *q)
{
	json_t *order = json_array(), *disks = json_object_get(q->def, "disks");
	json_t *nics = json_object_get(q->def, "nics");

	for (const char *p = q->order; p && *p; p++) {
		size_t i;
		json_t *d;

		if (*p == 'c' || *p == 'd') {
			json_array_foreach (disks, i, d) {
				bool cd = strcmp(kv(d, "driver") ?: "", "ide-cd") == 0;

				if ((*p == 'd') == cd) {
					json_array_append(order, json_object_get(d, "id"));
					break;
				}
			}
		} else if (*p == 'n' && json_array_size(nics)) {
			json_array_append(order, json_object_get(json_array_get(nics, 0), "id"));
		} else {
			unmapped(q->un, "-boot order letter %c (no such device)", *p);
		}
	}
	if (json_array_size(order)) {
		json_object_set_new(sub(q->def, "boot"), "order", order);
	} else {
		json_decref(order);
	}
}

/* Options that take no argument (the rest take one). */
static bool qemu_flag(const char *opt)
{
	static const char *const flags[] = {
		"enable-kvm",
		"nographic",
		"no-reboot",
		"no-shutdown",
		"S",
		"no-acpi",
		"no-hpet",
		"snapshot",
		"daemonize",
		"nodefaults",
		"no-user-config",
		"full-screen",
		"no-fd-bootchk",
		"no-quit",
		"usb",
		"s",
		"mem-prealloc",
		"preconfig",
		"only-migratable",
		"alt-grab",
		"ctrl-grab",
		"win2k-hack",
	};

	for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
		if (strcmp(opt, flags[i]) == 0) {
			return true;
		}
	}
	return false;
}

static void qemu_option(struct qemu_import *q, const char *opt, const char *arg)
{
	json_t *boot = sub(q->def, "boot");

	if (strcmp(opt, "m") == 0) {
		qemu_memory(q, arg);
	} else if (strcmp(opt, "smp") == 0) {
		qemu_smp(q, arg);
	} else if (strcmp(opt, "cpu") == 0) {
		qemu_cpu(q, arg);
	} else if (strcmp(opt, "kernel") == 0) {
		json_object_set_new(boot, "kernel", abs_path(arg));
	} else if (strcmp(opt, "initrd") == 0) {
		json_object_set_new(boot, "initrd", abs_path(arg));
	} else if (strcmp(opt, "append") == 0) {
		json_object_set_new(boot, "cmdline", json_string(arg));
	} else if (strcmp(opt, "bios") == 0) {
		json_object_set_new(boot, "firmware", abs_path(arg));
	} else if (strcmp(opt, "boot") == 0) {
		json_t *o = parse_keyval(arg, "order");
		static const char *const known[] = {"order", "once", NULL};

		if (kv(o, "order") || kv(o, "once")) {
			free(q->order);
			q->order = strdup(kv(o, "order") ?: kv(o, "once"));
		}
		unmapped_keys(q->un, "-boot", o, known, "no vmmd equivalent");
		json_decref(o);
	} else if (strcmp(opt, "drive") == 0) {
		qemu_drive(q, arg);
	} else if (strcmp(opt, "hda") == 0 || strcmp(opt, "hdb") == 0 || strcmp(opt, "hdc") == 0 ||
		   strcmp(opt, "hdd") == 0 || strcmp(opt, "cdrom") == 0) {
		char *spec = NULL;

		if (asprintf(&spec, "file=%s,if=ide%s", arg,
			     strcmp(opt, "cdrom") == 0 ? ",media=cdrom" : "") >= 0) {
			qemu_drive(q, spec);
		}
		free(spec);
	} else if (strcmp(opt, "blockdev") == 0) {
		qemu_blockdev(q, arg);
	} else if (strcmp(opt, "device") == 0) {
		qemu_device(q, arg);
	} else if (strcmp(opt, "netdev") == 0) {
		qemu_netdev(q, arg);
	} else if (strcmp(opt, "chardev") == 0) {
		json_t *o = parse_keyval(arg, "backend");

		if (strcmp(kv(o, "backend") ?: "", "file") == 0 && kv(o, "id") && kv(o, "path")) {
			json_object_set_new(q->chardevs, kv(o, "id"), abs_path(kv(o, "path")));
		} else {
			unmapped(q->un, "-chardev %s (vmmd maps file chardevs only)", arg);
		}
		json_decref(o);
	} else if (strcmp(opt, "serial") == 0) {
		qemu_serial(q, arg);
	} else if (strcmp(opt, "debugcon") == 0) {
		if (strncmp(arg, "file:", 5) == 0) {
			json_object_set_new(q->def, "debugcon", abs_path(arg + 5));
		} else {
			unmapped(q->un, "-debugcon %s (vmmd writes debugcon to a file)", arg);
		}
	} else if (strcmp(opt, "name") == 0) {
		json_t *o = parse_keyval(arg, "guest");
		static const char *const known[] = {"guest", "debug-threads", NULL};

		if (kv(o, "guest")) {
			json_object_set_new(q->def, "name", json_string(kv(o, "guest")));
		}
		unmapped_keys(q->un, "-name", o, known, "no vmmd equivalent");
		json_decref(o);
	} else if (strcmp(opt, "uuid") == 0) {
		unmapped(q->un, "-uuid %s (vmmd definitions have no UUID)", arg);
	} else if (strcmp(opt, "no-reboot") == 0) {
		json_object_set_new(q->def, "on_reboot", json_string("shutdown"));
	} else if (strcmp(opt, "no-acpi") == 0) {
		json_object_set_new(q->def, "acpi", json_false());
	} else if (strcmp(opt, "machine") == 0 || strcmp(opt, "M") == 0) {
		json_t *o = parse_keyval(arg, "type");
		const char *type = kv(o, "type");
		static const char *const known[] = {"type", "accel", NULL};

		if (type && strcmp(type, "pc") != 0 && strncmp(type, "pc-i440fx", 9) != 0) {
			unmapped(q->un, "-machine type=%s (vmmd's machine is a 440FX pc)", type);
		}
		if (kv(o, "accel") && strcmp(kv(o, "accel"), "kvm") != 0) {
			unmapped(q->un, "-machine accel=%s (vmmd always uses KVM)", kv(o, "accel"));
		}
		unmapped_keys(q->un, "-machine", o, known, "no vmmd equivalent");
		json_decref(o);
	} else if (strcmp(opt, "accel") == 0) {
		if (strncmp(arg, "kvm", 3) != 0) {
			unmapped(q->un, "-accel %s (vmmd always uses KVM)", arg);
		}
	} else if (strcmp(opt, "display") == 0 || strcmp(opt, "vga") == 0) {
		if (strcmp(arg, "none") != 0) {
			unmapped(q->un, "-%s %s (vmmd has no display)", opt, arg);
		}
	} else if (strcmp(opt, "enable-kvm") == 0 || strcmp(opt, "nographic") == 0 ||
		   strcmp(opt, "nodefaults") == 0 || strcmp(opt, "no-user-config") == 0 ||
		   strcmp(opt, "S") == 0) {
		/* what vmmd does anyway: KVM, no display, no default devices, created stopped */
	} else {
		unmapped(q->un, "-%s%s%s (no vmmd equivalent)", opt, arg ? " " : "", arg ?: "");
	}
}

int import_qemu(const char *args, json_t **ret_def, json_t **ret_unmapped, struct error **errp)
{
	struct qemu_import q = {0};
	char **w = NULL;
	size_t n = 0, i = 0;
	json_t *boot;
	int r;

	r = split_words(args, &w, &n, errp);
	if (r < 0) {
		return r;
	}
	q.def = json_object();
	q.un = json_array();
	q.drives = json_object();
	q.netdevs = json_object();
	q.chardevs = json_object();
	if (n > 0 &&
	    (strstr(w[0], "qemu-system") || strstr(w[0], "qemu-kvm") || strcmp(w[0], "kvm") == 0)) {
		i = 1; /* the binary */
	}
	for (; i < n; i++) {
		const char *opt = w[i];

		if (opt[0] != '-') {
			qemu_option(&q, "hda", opt); /* a bare image is -hda */
			continue;
		}
		opt += opt[1] == '-' ? 2 : 1;
		if (qemu_flag(opt)) {
			qemu_option(&q, opt, NULL);
			continue;
		}
		if (i + 1 >= n) {
			r = error_set(errp, EINVAL, "QEMU option -%s needs an argument", opt);
			goto out;
		}
		qemu_option(&q, opt, w[++i]);
	}
	boot = sub(q.def, "boot");
	if (q.order && !json_object_get(boot, "kernel")) {
		qemu_boot_order(&q);
	}
	if (!json_object_get(boot, "kernel") && !json_object_get(boot, "firmware")) {
		/* QEMU boots its default BIOS: name it */
		json_object_set_new(boot, "firmware", json_string(QEMU_DEFAULT_BIOS));
	}
	*ret_def = q.def;
	*ret_unmapped = q.un;
	q.def = q.un = NULL;
	r = 0;
out:
	json_decref(q.def);
	json_decref(q.un);
	json_decref(q.drives);
	json_decref(q.netdevs);
	json_decref(q.chardevs);
	free(q.order);
	for (size_t k = 0; k < n; k++) {
		free(w[k]);
	}
	free(w);
	return r;
}

/* ---- libvirt domain XML ---- */

static bool is(xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

/* An attribute or the text of an element, as a malloc'd string (NULL if absent). */
static char *attr(xmlNode *n, const char *name)
{
	return n ? (char *)xmlGetProp(n, (const xmlChar *)name) : NULL;
}

static char *text(xmlNode *n)
{
	return n ? (char *)xmlNodeGetContent(n) : NULL;
}

static xmlNode *child(xmlNode *n, const char *name)
{
	for (xmlNode *c = n ? n->children : NULL; c; c = c->next) {
		if (is(c, name)) {
			return c;
		}
	}
	return NULL;
}

/* libvirt memory units into bytes (libvirt's default unit is KiB). */
static int lv_bytes(const char *num, const char *unit, unsigned long long *ret)
{
	static const struct {
		const char *name;
		unsigned long long mult;
	} units[] = {
		{"b", 1},	    {"bytes", 1},      {"KB", 1000},	    {"k", 1024},
		{"KiB", 1024},	    {"MB", 1000000},   {"M", 1048576},	    {"MiB", 1048576},
		{"GB", 1000000000}, {"G", 1073741824}, {"GiB", 1073741824}, {"TiB", 1ull << 40},
	};
	char *end;
	unsigned long long v;

	if (!num) {
		return -EINVAL;
	}
	v = strtoull(num, &end, 10);
	if (end == num) {
		return -EINVAL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(unit ? unit : "KiB", units[i].name) == 0) {
			*ret = v * units[i].mult;
			return 0;
		}
	}
	return -EINVAL;
}

struct lv_import {
	json_t *def, *un;
	json_t *order; /* [boot order, device id] pairs */
	const char *os_boot[4];
	unsigned n_disks, n_nics;
};

static void lv_disk(struct lv_import *l, xmlNode *d)
{
	_cleanup_free_ char *type = attr(d, "type"), *device = attr(d, "device");
	xmlNode *drv = child(d, "driver"), *src = child(d, "source"), *tgt = child(d, "target");
	_cleanup_free_ char *fmt = attr(drv, "type"), *cache = attr(drv, "cache");
	_cleanup_free_ char *io = attr(drv, "io");
	_cleanup_free_ char *file = NULL, *bus = attr(tgt, "bus"), *dev = attr(tgt, "dev");
	_cleanup_free_ char *serial = text(child(d, "serial"));
	_cleanup_free_ char *bootorder = attr(child(d, "boot"), "order");
	const char *driver, *why = NULL;
	json_t *disk;

	if (!device) {
		device = strdup("disk");
	}
	if (src) {
		file = attr(src, strcmp(type ?: "file", "block") == 0 ? "dev" : "file");
	}
	if (strcmp(device ?: "", "cdrom") == 0) {
		driver = "ide-cd";
	} else if (strcmp(device ?: "", "disk") != 0) {
		unmapped(l->un, "<disk device='%s'> (vmmd has disks and CD-ROMs)", device);
		return;
	} else if (strcmp(bus ?: "virtio", "virtio") == 0) {
		driver = "virtio-blk";
	} else if (strcmp(bus, "ide") == 0) {
		driver = "ide-hd";
	} else {
		unmapped(l->un, "<disk> %s on bus '%s' (vmmd has virtio and ide)", file ?: "", bus);
		return;
	}
	if (type && strcmp(type, "file") != 0 && strcmp(type, "block") != 0) {
		unmapped(l->un, "<disk type='%s'> (vmmd uses files and block devices)", type);
		return;
	}
	disk = json_object();
	set_id(disk, dev ? dev : "disk");
	json_object_set_new(disk, "driver", json_string(driver));
	if (file) {
		json_object_set_new(disk, "file", json_string(file));
		if (fmt && strcmp(fmt, "raw") != 0 && strcmp(fmt, "qcow2") != 0) {
			unmapped(l->un, "<disk> %s format '%s' (vmmd has raw and qcow2)", file,
				 fmt);
		}
		json_object_set_new(
			disk, "format",
			json_string(fmt && strcmp(fmt, "qcow2") == 0 ? "qcow2" : "raw"));
	}
	if (child(d, "readonly") && strcmp(driver, "ide-cd") != 0) {
		json_object_set_new(disk, "readonly", json_true());
	}
	if (map_aio(io, cache_direct(cache), &why)) {
		json_object_set_new(disk, "aio", json_string(io));
	} else if (io) {
		unmapped(l->un, "<driver io='%s'> (%s)", io, why);
	}
	if (cache_direct(cache)) {
		json_object_set_new(disk, "cache", json_string("none"));
	} else if (cache && strcmp(cache, "writeback") != 0 && strcmp(cache, "default") != 0) {
		unmapped(l->un, "<driver cache='%s'> (vmmd has writeback and none)", cache);
	}
	if (serial) {
		json_object_set_new(disk, "serial", json_string(serial));
	}
	if (bootorder) {
		json_array_append_new(l->order, json_pack("[i, O]", atoi(bootorder),
							  json_object_get(disk, "id")));
	}
	l->n_disks++;
	json_array_append_new(arr(l->def, "disks"), disk);
}

static void lv_interface(struct lv_import *l, xmlNode *i)
{
	_cleanup_free_ char *type = attr(i, "type"), *mac = attr(child(i, "mac"), "address");
	_cleanup_free_ char *model = attr(child(i, "model"), "type");
	_cleanup_free_ char *tdev = attr(child(i, "target"), "dev");
	_cleanup_free_ char *bootorder = attr(child(i, "boot"), "order");
	json_t *nic;
	char id[32];

	if (strcmp(type ?: "", "user") != 0 && strcmp(type ?: "", "ethernet") != 0) {
		unmapped(l->un, "<interface type='%s'> (vmmd has user and ethernet (tap))", type);
		return;
	}
	if (strcmp(type, "ethernet") == 0 && !tdev) {
		unmapped(l->un, "<interface type='ethernet'> without <target dev> (vmmd needs the "
				"tap name)");
		return;
	}
	nic = json_object();
	snprintf(id, sizeof(id), "net%u", l->n_nics++);
	set_id(nic, id);
	json_object_set_new(nic, "backend",
			    json_string(strcmp(type, "user") == 0 ? "user" : "tap"));
	if (tdev && strcmp(type, "ethernet") == 0) {
		json_object_set_new(nic, "ifname", json_string(tdev));
	}
	if (mac) {
		json_object_set_new(nic, "mac", json_string(mac));
	}
	if (model && strcmp(model, "e1000") == 0) {
		json_object_set_new(nic, "driver", json_string("e1000"));
	} else if (model && strcmp(model, "virtio") != 0) {
		unmapped(l->un, "<model type='%s'> (vmmd has virtio and e1000; virtio used)",
			 model);
	}
	if (bootorder) {
		json_array_append_new(
			l->order, json_pack("[i, O]", atoi(bootorder), json_object_get(nic, "id")));
	}
	json_array_append_new(arr(l->def, "nics"), nic);
}

static void lv_devices(struct lv_import *l, xmlNode *devs)
{
	bool have_serial = false;

	for (xmlNode *d = devs->children; d; d = d->next) {
		_cleanup_free_ char *type = NULL, *model = NULL;

		if (d->type != XML_ELEMENT_NODE) {
			continue;
		}
		type = attr(d, "type");
		model = attr(d, "model");
		if (is(d, "disk")) {
			lv_disk(l, d);
		} else if (is(d, "interface")) {
			lv_interface(l, d);
		} else if (is(d, "emulator") || is(d, "console")) {
			/* vmmd is the emulator; the console is COM1's socket */
		} else if (is(d, "serial") && !have_serial) {
			_cleanup_free_ char *path = attr(child(d, "source"), "path");

			have_serial = true;
			if (strcmp(type ?: "", "file") == 0 && path) {
				json_object_set_new(sub(l->def, "serial"), "log",
						    json_string(path));
			} else if (strcmp(type ?: "", "pty") != 0) {
				unmapped(l->un, "<serial type='%s'> (vmmd: console socket and log)",
					 type);
			}
		} else if (is(d, "rng") && strcmp(model ?: "", "virtio") == 0) {
			json_object_set_new(l->def, "rng", json_true());
		} else if (is(d, "controller") && (strcmp(type ?: "", "ide") == 0 ||
						   (strcmp(type ?: "", "pci") == 0 &&
						    strcmp(model ?: "", "pci-root") == 0))) {
			/* the machine's own controllers */
		} else if (is(d, "memballoon") && strcmp(model ?: "", "none") == 0) {
			/* no balloon: as vmmd */
		} else {
			unmapped(l->un, "<%s%s%s%s> (no vmmd device)", (const char *)d->name,
				 type ? " type='" : "", type ?: "", type ? "'" : "");
		}
	}
}

static void lv_os(struct lv_import *l, xmlNode *os)
{
	json_t *boot = sub(l->def, "boot");
	size_t nb = 0;

	for (xmlNode *c = os->children; c; c = c->next) {
		_cleanup_free_ char *t = NULL;

		if (c->type != XML_ELEMENT_NODE) {
			continue;
		}
		t = text(c);
		if (is(c, "type")) {
			_cleanup_free_ char *machine = attr(c, "machine"), *arch = attr(c, "arch");

			if (strcmp(t ?: "", "hvm") != 0 || (arch && strcmp(arch, "x86_64") != 0) ||
			    (machine && strncmp(machine, "pc", 2) != 0) ||
			    (machine && strstr(machine, "q35"))) {
				unmapped(l->un,
					 "<type arch='%s' machine='%s'>%s</type> (vmmd runs "
					 "x86_64 hvm on a 440FX pc)",
					 arch ?: "", machine ?: "", t ?: "");
			}
		} else if (is(c, "kernel")) {
			json_object_set_new(boot, "kernel", json_string(t ?: ""));
		} else if (is(c, "initrd")) {
			json_object_set_new(boot, "initrd", json_string(t ?: ""));
		} else if (is(c, "cmdline")) {
			json_object_set_new(boot, "cmdline", json_string(t ?: ""));
		} else if (is(c, "loader")) {
			_cleanup_free_ char *type = attr(c, "type");

			if (type && strcmp(type, "rom") != 0) {
				unmapped(l->un, "<loader type='%s'> (vmmd maps a BIOS rom)", type);
			} else {
				json_object_set_new(boot, "firmware", json_string(t ?: ""));
			}
		} else if (is(c, "boot")) {
			_cleanup_free_ char *dev = attr(c, "dev");

			if (nb < ARRAY_SIZE(l->os_boot) && dev) {
				l->os_boot[nb++] = strcmp(dev, "hd") == 0	 ? "hd"
						   : strcmp(dev, "cdrom") == 0	 ? "cdrom"
						   : strcmp(dev, "network") == 0 ? "network"
										 : "fd";
			}
		} else {
			unmapped(l->un, "<os><%s> (no vmmd equivalent)", (const char *)c->name);
		}
	}
}

/* The boot order: per-device <boot order='N'/>, else <os><boot dev=...>. */
static void lv_boot_order(struct lv_import *l)
{
	json_t *boot = sub(l->def, "boot"), *order = json_array();
	json_t *disks = json_object_get(l->def, "disks"), *nics = json_object_get(l->def, "nics");
	size_t n = json_array_size(l->order);

	if (json_object_get(boot, "kernel")) {
		json_decref(order);
		return;
	}
	for (size_t k = 1; n && k <= 64; k++) {
		size_t i;
		json_t *e;

		json_array_foreach (l->order, i, e) {
			if ((size_t)json_integer_value(json_array_get(e, 0)) == k) {
				json_array_append(order, json_array_get(e, 1));
			}
		}
	}
	for (size_t b = 0; !n && b < ARRAY_SIZE(l->os_boot) && l->os_boot[b]; b++) {
		const char *dev = l->os_boot[b];
		size_t i;
		json_t *d;

		if (strcmp(dev, "network") == 0 && json_array_size(nics)) {
			json_array_append(order, json_object_get(json_array_get(nics, 0), "id"));
			continue;
		}
		json_array_foreach (disks, i, d) {
			bool cd = strcmp(kv(d, "driver") ?: "", "ide-cd") == 0;

			if ((strcmp(dev, "cdrom") == 0) == cd && strcmp(dev, "fd") != 0) {
				json_array_append(order, json_object_get(d, "id"));
				break;
			}
		}
		if (strcmp(dev, "fd") == 0) {
			unmapped(l->un, "<boot dev='fd'> (vmmd has no floppy)");
		}
	}
	if (json_array_size(order)) {
		json_object_set_new(boot, "order", order);
	} else {
		json_decref(order);
	}
}

static void lv_cpu(struct lv_import *l, xmlNode *cpu)
{
	_cleanup_free_ char *mode = attr(cpu, "mode");
	char buf[1024];
	size_t n;

	if (!mode || strcmp(mode, "host-passthrough") == 0 || strcmp(mode, "host-model") == 0 ||
	    strcmp(mode, "maximum") == 0) {
		n = (size_t)snprintf(buf, sizeof(buf), "host");
	} else {
		_cleanup_free_ char *model = text(child(cpu, "model"));

		n = (size_t)snprintf(buf, sizeof(buf), "baseline");
		unmapped(l->un,
			 "<cpu mode='%s'> model %s (vmmd has host and baseline; baseline "
			 "used)",
			 mode, model ?: "");
	}
	for (xmlNode *c = cpu->children; c; c = c->next) {
		_cleanup_free_ char *policy = NULL, *name = NULL;

		if (!is(c, "feature")) {
			if (c->type == XML_ELEMENT_NODE && !is(c, "model")) {
				unmapped(l->un, "<cpu><%s> (no vmmd equivalent)",
					 (const char *)c->name);
			}
			continue;
		}
		policy = attr(c, "policy");
		name = attr(c, "name");
		if (name && n < sizeof(buf)) {
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",%c%s",
					      strcmp(policy ?: "require", "disable") == 0 ||
							      strcmp(policy ?: "", "forbid") == 0
						      ? '-'
						      : '+',
					      name);
		}
	}
	json_object_set_new(l->def, "cpu", json_string(buf));
}

int import_libvirt(const char *path, json_t **ret_def, json_t **ret_unmapped, struct error **errp)
{
	struct lv_import l = {0};
	xmlDoc *doc;
	xmlNode *root;
	bool acpi = false;

	doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		const xmlError *e = xmlGetLastError();

		return error_set(errp, EINVAL, "%s: not a libvirt domain XML: %s", path,
				 e && e->message ? e->message : "cannot parse it");
	}
	root = xmlDocGetRootElement(doc);
	if (!root || !is(root, "domain")) {
		xmlFreeDoc(doc);
		return error_set(errp, EINVAL, "%s: the root element is not <domain>", path);
	}
	l.def = json_object();
	l.un = json_array();
	l.order = json_array();
	{
		_cleanup_free_ char *type = attr(root, "type");

		if (type && strcmp(type, "kvm") != 0) {
			unmapped(l.un, "<domain type='%s'> (vmmd always uses KVM)", type);
		}
	}
	for (xmlNode *c = root->children; c; c = c->next) {
		_cleanup_free_ char *t = NULL, *unit = NULL;

		if (c->type != XML_ELEMENT_NODE) {
			continue;
		}
		t = text(c);
		if (is(c, "name")) {
			json_object_set_new(l.def, "name", json_string(t ?: ""));
		} else if (is(c, "memory")) {
			unsigned long long b;

			unit = attr(c, "unit");
			if (lv_bytes(t, unit, &b) == 0) {
				json_object_set_new(l.def, "memory", json_integer((json_int_t)b));
			} else {
				unmapped(l.un, "<memory unit='%s'>%s</memory> (not a size)",
					 unit ?: "", t ?: "");
			}
		} else if (is(c, "currentMemory")) {
			/* equal to <memory> without a balloon; vmmd has none */
		} else if (is(c, "vcpu")) {
			_cleanup_free_ char *current = attr(c, "current");

			json_object_set_new(l.def, "vcpus", json_integer(atoi(t ?: "1")));
			if (current) {
				unmapped(l.un, "<vcpu current='%s'> (no CPU hotplug)", current);
			}
		} else if (is(c, "uuid")) {
			unmapped(l.un, "<uuid>%s</uuid> (vmmd definitions have no UUID)", t ?: "");
		} else if (is(c, "os")) {
			lv_os(&l, c);
		} else if (is(c, "cpu")) {
			lv_cpu(&l, c);
		} else if (is(c, "features")) {
			for (xmlNode *f = c->children; f; f = f->next) {
				if (is(f, "acpi")) {
					acpi = true;
				} else if (f->type == XML_ELEMENT_NODE && !is(f, "apic") &&
					   !is(f, "pae")) {
					unmapped(l.un, "<features><%s/> (no vmmd equivalent)",
						 (const char *)f->name);
				}
			}
		} else if (is(c, "on_reboot")) {
			if (strcmp(t ?: "", "destroy") == 0) {
				json_object_set_new(l.def, "on_reboot", json_string("shutdown"));
			} else if (strcmp(t ?: "", "restart") != 0) {
				unmapped(l.un,
					 "<on_reboot>%s</on_reboot> (vmmd: restart or destroy)",
					 t ?: "");
			}
		} else if (is(c, "on_poweroff") || is(c, "on_crash")) {
			if (strcmp(t ?: "", "destroy") != 0) {
				unmapped(l.un, "<%s>%s</%s> (vmmd stops the VM)",
					 (const char *)c->name, t ?: "", (const char *)c->name);
			}
		} else if (is(c, "devices")) {
			lv_devices(&l, c);
		} else if (is(c, "title") || is(c, "description") || is(c, "metadata")) {
			/* documentation only */
		} else {
			unmapped(l.un, "<%s> (no vmmd equivalent)", (const char *)c->name);
		}
	}
	json_object_set_new(l.def, "acpi", json_boolean(acpi));
	lv_boot_order(&l);
	{
		json_t *boot = sub(l.def, "boot");

		if (!json_object_get(boot, "kernel") && !json_object_get(boot, "firmware")) {
			json_object_set_new(boot, "firmware", json_string(QEMU_DEFAULT_BIOS));
		}
	}
	xmlFreeDoc(doc);
	json_decref(l.order);
	*ret_def = l.def;
	*ret_unmapped = l.un;
	return 0;
}
