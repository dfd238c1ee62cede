/*
 * human-monitor-command: the HMP commands scripts use most, answered with
 * the text QEMU 7.2 prints (lines end in "\r\n" as QEMU's HMP output does):
 * info status, version, name, kvm, block, blockstats, cpus, network, pci,
 * snapshots; stop, cont, system_reset, system_powerdown, quit; savevm,
 * loadvm, delvm (answered when their internal snapshot job ends); eject
 * and change (a CD-ROM's medium), dump-guest-memory, info dump, memsave and
 * pmemsave (answered as their QMP commands are). Each is
 * built from the QMP command it stands for, so both always agree. An
 * unknown command gives QEMU's "unknown command" text (not a QMP error).
 * Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "daemon/hmp.h"
#include "daemon/qmp.h"
#include "daemon/registry.h"
#include "daemon/snapshot.h"

void hmp_printf(struct hmp_out *o, const char *fmt, ...)
{
	char *s = NULL, *n;
	va_list ap;
	size_t extra = 0;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		s = NULL;
	}
	va_end(ap);
	if (!s) {
		return;
	}
	for (const char *p = s; *p; p++) {
		extra += *p == '\n';
	}
	n = realloc(o->buf, o->len + strlen(s) + extra + 1);
	if (n) {
		o->buf = n;
		for (const char *p = s; *p; p++) {
			if (*p == '\n') {
				o->buf[o->len++] = '\r';
			}
			o->buf[o->len++] = *p;
		}
		o->buf[o->len] = '\0';
	}
	free(s);
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static json_int_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void info_status(struct monitor_request *req, struct hmp_out *o)
{
	enum vm_run_state st = registry_vm_state(req->vm);

	if (st == VM_STATE_RUNNING) {
		hmp_printf(o, "VM status: running\n");
	} else if (st == VM_STATE_PAUSED) {
		hmp_printf(o, "VM status: paused\n");
	} else {
		hmp_printf(o, "VM status: paused (%s)\n", vm_run_state_name(st));
	}
}

static void info_version(struct monitor_request *req, struct hmp_out *o)
{
	json_auto_t *v = monitor_version_info(req->mon);

	/* sic: QEMU prints the package right after the version */
	hmp_printf(o, "%lld.%lld.%lld%s\n", (long long)jint(json_object_get(v, "qemu"), "major"),
		   (long long)jint(json_object_get(v, "qemu"), "minor"),
		   (long long)jint(json_object_get(v, "qemu"), "micro"), jstr(v, "package"));
}

static void info_block(json_t *blocks, struct hmp_out *o)
{
	size_t i;
	json_t *b;

	json_array_foreach (blocks, i, b) {
		json_t *ins = json_object_get(b, "inserted"),
		       *cache = json_object_get(ins, "cache");

		if (i > 0) {
			hmp_printf(o, "\n");
		}
		hmp_printf(o, "%s", jstr(b, "device"));
		if (json_object_get(ins, "node-name")) {
			hmp_printf(o, " (%s)", jstr(ins, "node-name"));
		}
		if (!ins) {
			hmp_printf(o, ": [not inserted]\n");
		} else {
			hmp_printf(o, ": %s (%s%s)\n", jstr(ins, "file"), jstr(ins, "drv"),
				   json_is_true(json_object_get(ins, "ro")) ? ", read-only" : "");
		}
		if (json_object_get(b, "qdev")) {
			hmp_printf(o, "    Attached to:      %s\n", jstr(b, "qdev"));
		}
		if (json_object_get(b, "io-status") && strcmp(jstr(b, "io-status"), "ok") != 0) {
			hmp_printf(o, "    I/O status:       %s\n", jstr(b, "io-status"));
		}
		if (json_is_true(json_object_get(b, "removable"))) {
			hmp_printf(o, "    Removable device: %slocked, tray %s\n",
				   json_is_true(json_object_get(b, "locked")) ? "" : "not ",
				   json_is_true(json_object_get(b, "tray_open")) ? "open"
										 : "closed");
		}
		if (!ins) {
			continue;
		}
		hmp_printf(o, "    Cache mode:       %s%s%s\n",
			   json_is_false(json_object_get(cache, "writeback")) ? "writethrough"
									      : "writeback",
			   json_is_true(json_object_get(cache, "direct")) ? ", direct" : "",
			   json_is_true(json_object_get(cache, "no-flush")) ? ", ignore flushes"
									    : "");
		if (json_object_get(ins, "backing_file")) {
			hmp_printf(o, "    Backing file:     %s (chain depth: %lld)\n",
				   jstr(ins, "backing_file"),
				   (long long)jint(ins, "backing_file_depth"));
		}
	}
}

static void info_blockstats(json_t *stats, struct hmp_out *o)
{
	size_t i;
	json_t *b;

	json_array_foreach (stats, i, b) {
		json_t *s = json_object_get(b, "stats");

		hmp_printf(
			o,
			"%s: rd_bytes=%lld wr_bytes=%lld rd_operations=%lld wr_operations=%lld "
			"flush_operations=%lld wr_total_time_ns=%lld rd_total_time_ns=%lld "
			"flush_total_time_ns=%lld rd_merged=%lld wr_merged=%lld "
			"idle_time_ns=%lld\n",
			jstr(b, "device"), (long long)jint(s, "rd_bytes"),
			(long long)jint(s, "wr_bytes"), (long long)jint(s, "rd_operations"),
			(long long)jint(s, "wr_operations"), (long long)jint(s, "flush_operations"),
			(long long)jint(s, "wr_total_time_ns"),
			(long long)jint(s, "rd_total_time_ns"),
			(long long)jint(s, "flush_total_time_ns"), (long long)jint(s, "rd_merged"),
			(long long)jint(s, "wr_merged"), (long long)jint(s, "idle_time_ns"));
	}
}

static void info_cpus(json_t *cpus, struct hmp_out *o)
{
	size_t i;
	json_t *c;

	/* '*' marks the monitor's current CPU: the first, as in a fresh QEMU monitor */
	json_array_foreach (cpus, i, c) {
		hmp_printf(o, "%c CPU #%lld: thread_id=%lld\n", i == 0 ? '*' : ' ',
			   (long long)jint(c, "cpu-index"), (long long)jint(c, "thread-id"));
	}
}

static void info_network(struct registry_vm *rv, struct hmp_out *o)
{
	for (unsigned i = 0; i < rv->cfg->n_nics; i++) {
		const struct vm_nic_config *n = &rv->cfg->nics[i];
		bool e1000 = n->driver && strcmp(n->driver, "e1000") == 0;
		bool tap = n->backend && strcmp(n->backend, "tap") == 0;
		char mac[18];

		if (n->mac) {
			snprintf(mac, sizeof(mac), "%s", n->mac);
		} else {
			vm_nic_default_mac(rv->name, n->id, mac);
		}
		hmp_printf(o, "%s: index=0,type=nic,model=%s,macaddr=%s\n", n->id,
			   e1000 ? "e1000" : "virtio-net-pci", mac);
		if (tap) {
			hmp_printf(o, " \\ %s: index=0,type=tap,%s%s\n", n->id,
				   n->ifname ? "ifname=" : "fd=", n->ifname ? n->ifname : n->fd);
		} else {
			hmp_printf(o, " \\ %s: index=0,type=user,net=10.0.2.0,restrict=off\n",
				   n->id);
		}
	}
}

/* QEMU's names of PCI classes (those a vmmd machine can have, and neighbours). */
static const char *pci_class_desc(json_int_t cls)
{
	static const struct {
		unsigned cls;
		const char *desc;
	} names[] = {
		{0x0001, "VGA controller"},	{0x0100, "SCSI controller"},
		{0x0101, "IDE controller"},	{0x0106, "SATA controller"},
		{0x0180, "Storage controller"}, {0x0200, "Ethernet controller"},
		{0x0280, "Network controller"}, {0x0300, "VGA controller"},
		{0x0380, "Display controller"}, {0x0401, "Audio controller"},
		{0x0600, "Host bridge"},	{0x0601, "ISA bridge"},
		{0x0604, "PCI bridge"},		{0x0680, "Bridge"},
		{0x0c03, "USB controller"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (names[i].cls == (unsigned)cls) {
			return names[i].desc;
		}
	}
	return NULL;
}

/* QEMU's hmp_info_pci layout, from query-pci. */
static void info_pci(json_t *buses, struct hmp_out *o)
{
	size_t i, j, k;
	json_t *bus, *d, *r;

	json_array_foreach (buses, i, bus) {
		json_array_foreach (json_object_get(bus, "devices"), j, d) {
			json_t *ci = json_object_get(d, "class_info"),
			       *id = json_object_get(d, "id");
			const char *desc = pci_class_desc(jint(ci, "class"));

			hmp_printf(o, "  Bus %2lld, device %3lld, function %lld:\n",
				   (long long)jint(d, "bus"), (long long)jint(d, "slot"),
				   (long long)jint(d, "function"));
			if (desc) {
				hmp_printf(o, "    %s", desc);
			} else {
				hmp_printf(o, "    Class %04llx", (long long)jint(ci, "class"));
			}
			hmp_printf(o, ": PCI device %04llx:%04llx\n", (long long)jint(id, "vendor"),
				   (long long)jint(id, "device"));
			hmp_printf(o, "      PCI subsystem %04llx:%04llx\n",
				   (long long)jint(id, "subsystem-vendor"),
				   (long long)jint(id, "subsystem"));
			if (json_object_get(d, "irq")) {
				hmp_printf(o, "      IRQ %lld, pin %c\n", (long long)jint(d, "irq"),
					   (char)('A' + jint(d, "irq_pin") - 1));
			}
			json_array_foreach (json_object_get(d, "regions"), k, r) {
				uint64_t addr = (uint64_t)jint(r, "address");
				uint64_t size = (uint64_t)jint(r, "size");

				hmp_printf(o, "      BAR%lld: ", (long long)jint(r, "bar"));
				if (strcmp(jstr(r, "type"), "io") == 0) {
					hmp_printf(o, "I/O at 0x%04llx [0x%04llx].\n",
						   (unsigned long long)addr,
						   (unsigned long long)(addr + size - 1));
				} else {
					hmp_printf(o, "%d bit%s memory at 0x%08llx [0x%08llx].\n",
						   json_is_true(json_object_get(r, "mem_type_64"))
							   ? 64
							   : 32,
						   json_is_true(json_object_get(r, "prefetch"))
							   ? " prefetchable"
							   : "",
						   (unsigned long long)addr,
						   (unsigned long long)(addr + size - 1));
				}
			}
			hmp_printf(o, "      id \"%s\"\n", jstr(d, "qdev_id"));
		}
	}
}

/* QEMU's size_to_str(): three significant digits and a binary unit. */
static void size_str(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned i = 0;

	/* the unit in which the value is below 1000 (as QEMU's frexp over 1000/1024) */
	while (i < 6 && (double)v / (double)(1ull << (10 * i)) >= 1000.0) {
		i++;
	}
	snprintf(buf, len, "%0.3g %s", (double)v / (double)(1ull << (10 * i)), units[i]);
}

/* QEMU's bdrv_snapshot_dump() line for one SnapshotInfo (NULL: the header). */
static void snapshot_line(struct hmp_out *o, json_t *sn, const char *id)
{
	char size[32], date[32], clock[32], icount[32] = "";
	time_t secs;
	uint64_t ns;
	json_t *ic;
	struct tm tm;

	if (!sn) {
		hmp_printf(o, "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
			   "VM CLOCK", "ICOUNT");
		return;
	}
	secs = (time_t)jint(sn, "date-sec");
	ns = (uint64_t)jint(sn, "vm-clock-sec") * 1000000000ull +
	     (uint64_t)jint(sn, "vm-clock-nsec");
	ic = json_object_get(sn, "icount");
	size_str((uint64_t)jint(sn, "vm-state-size"), size, sizeof(size));
	localtime_r(&secs, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(clock, sizeof(clock), "%02u:%02u:%02u.%03u", (unsigned)(ns / 3600000000000ull),
		 (unsigned)(ns / 60000000000ull % 60), (unsigned)(ns / 1000000000ull % 60),
		 (unsigned)(ns / 1000000ull % 1000));
	if (json_is_integer(ic)) {
		snprintf(icount, sizeof(icount), "%" JSON_INTEGER_FORMAT, json_integer_value(ic));
	}
	hmp_printf(o, "%-9s %-16s %8s%20s%13s%11s\n", id ? id : jstr(sn, "id"), jstr(sn, "name"),
		   size, date, clock, icount);
}

static bool has_snapshot(json_t *snaps, const char *name)
{
	size_t i;
	json_t *sn;

	json_array_foreach (snaps, i, sn) {
		if (!strcmp(jstr(sn, "name"), name) || !strcmp(jstr(sn, "id"), name)) {
			return true;
		}
	}
	return false;
}

static bool snapshot_capable(json_t *b)
{
	json_t *ins = json_object_get(b, "inserted");

	return strcmp(jstr(ins, "drv"), "qcow2") == 0 && !json_is_true(json_object_get(ins, "ro"));
}

/*
 * Whether a snapshot "on all disks" must be on this one: every writable
 * disk with a medium (QEMU's bdrv_all_snapshots_includes_bs), whether or
 * not it can hold one: a writable raw disk leaves no snapshot loadable.
 */
static bool snapshot_included(json_t *b)
{
	json_t *ins = json_object_get(b, "inserted");

	return ins && !json_is_true(json_object_get(ins, "ro"));
}

static json_t *disk_snapshots(json_t *b)
{
	json_t *s = json_object_get(json_object_get(json_object_get(b, "inserted"), "image"),
				    "snapshots");

	return json_is_array(s) ? s : NULL;
}

/*
 * QEMU's hmp_info_snapshots(): the snapshots of the VM-state disk (the
 * first writable qcow2 one) that every writable disk has, then per such
 * qcow2 disk the ones that are not on all of them.
 */
static void info_snapshots(json_t *blocks, struct hmp_out *o)
{
	json_t *b, *sn, *vmstate = NULL, *table;
	bool none = true;
	size_t i, k;

	json_array_foreach (blocks, i, b) {
		if (snapshot_capable(b)) {
			vmstate = vmstate ? vmstate : b;
			none = none && json_array_size(disk_snapshots(b)) == 0;
		}
	}
	if (!vmstate) {
		hmp_printf(o, "No available block device supports snapshots\n");
		return;
	}
	if (none) {
		hmp_printf(o, "There is no snapshot available.\n");
		return;
	}
	table = disk_snapshots(vmstate);
	hmp_printf(o, "List of snapshots present on all disks:\n");
	k = 0;
	json_array_foreach (table, i, sn) {
		bool all = true;
		size_t j;

		json_array_foreach (blocks, j, b) {
			all = all && (!snapshot_included(b) ||
				      has_snapshot(disk_snapshots(b), jstr(sn, "name")));
		}
		if (!all) {
			continue;
		}
		if (k++ == 0) {
			snapshot_line(o, NULL, NULL);
		}
		/* the ID differs between images: QEMU prints "--" */
		snapshot_line(o, sn, "--");
	}
	if (k == 0) {
		hmp_printf(o, "None\n");
	}
	json_array_foreach (blocks, i, b) {
		json_t *mine = disk_snapshots(b), *s;
		size_t j, shown = 0;

		if (!snapshot_capable(b)) {
			continue;
		}
		json_array_foreach (mine, j, s) {
			bool all = has_snapshot(table, jstr(s, "name"));
			size_t m;
			json_t *other;

			json_array_foreach (blocks, m, other) {
				all = all && (!snapshot_included(other) ||
					      has_snapshot(disk_snapshots(other), jstr(s, "name")));
			}
			if (all) {
				continue;
			}
			if (shown++ == 0) {
				hmp_printf(o,
					   "\nList of partial (non-loadable) snapshots on '%s':\n",
					   jstr(b, "device"));
				snapshot_line(o, NULL, NULL);
			}
			snapshot_line(o, s, NULL);
		}
	}
}

/* savevm/loadvm/delvm: the answer when the snapshot job ends. */
static void hmp_snapshot_done(void *opaque, const char *err)
{
	struct hmp_out o = {0};

	if (err) {
		hmp_printf(&o, "Error: %s\n", err);
	}
	monitor_deferred_done(opaque, 0, json_string(o.buf ? o.buf : ""), NULL);
	free(o.buf);
}

static int hmp_snapshot(struct monitor_request *req, const char *cmd, const char *tag,
			struct hmp_out *o)
{
	struct monitor_deferred *d;
	struct error *err = NULL;

	if (!tag && strcmp(cmd, "savevm") != 0) {
		hmp_printf(o, "%s: string expected\nTry \"help %s\" for more information\n", cmd,
			   cmd);
		return 0;
	}
	d = monitor_defer(req);
	if (!d) {
		hmp_printf(o, "Error: out of memory\n");
		return 0;
	}
	if (snapshot_hmp(req->vm, cmd, tag, hmp_snapshot_done, d, &err) < 0) {
		monitor_deferred_cancel(d);
		hmp_printf(o, "Error: %s\n", err ? err->msg : "failed");
		error_free(err);
		return 0;
	}
	return MONITOR_DEFERRED;
}

/* Run a QMP handler for HMP: its result, or NULL with "Error: ..." printed. */
static json_t *run(struct monitor_request *req, monitor_handler_fn fn, struct hmp_out *o)
{
	json_t *ret = NULL, *args = json_object();
	struct error *err = NULL;
	int r = fn(req, args, &ret, &err);

	json_decref(args);
	if (r < 0) {
		hmp_printf(o, "Error: %s\n", err ? err->msg : strerror(-r));
		error_free(err);
		json_decref(ret);
		return NULL;
	}
	return ret ? ret : json_object();
}

int hmp_call(struct monitor_request *req, monitor_handler_fn fn, json_t *args, struct hmp_out *o)
{
	struct error *err = NULL;
	json_t *ret = NULL;
	int r;

	req->hmp = true;
	r = args ? fn(req, args, &ret, &err) : error_set(&err, ENOMEM, "out of memory");
	req->hmp = false;
	json_decref(ret);
	if (r < 0) {
		hmp_printf(o, "Error: %s\n", err ? err->msg : strerror(-r));
		error_free(err);
	}
	return r == MONITOR_DEFERRED ? r : 0;
}

/*
 * eject [-f] device; change device [-f] filename [format [read-only-mode]]:
 * QEMU's parse and words; the QMP command's failure as "Error: ...", its
 * deferred answer as HMP text (monitor_request.hmp).
 */
static int hmp_media(struct monitor_request *req, const char *line, struct hmp_out *o)
{
	bool change, force;
	char *copy = strdup(line), *save = NULL, *w[6] = {0};
	unsigned flag;
	const char *usage = NULL, *mode;
	json_t *args = NULL;
	unsigned n = 0, i;
	int r = 0;

	for (char *t = copy ? strtok_r(copy, " \t", &save) : NULL; t;
	     t = strtok_r(NULL, " \t", &save)) {
		if (n < ARRAY_SIZE(w)) {
			w[n] = t;
		}
		n++;
	}
	if (!copy) {
		hmp_printf(o, "Error: out of memory\n");
		return 0;
	}
	change = strcmp(w[0], "change") == 0;
	/* where -f may stand; then the device (eject) or the filename (change) */
	flag = change ? 2 : 1;
	force = n > flag && strcmp(w[flag], "-f") == 0;
	i = flag + force;
	mode = change && n > i + 2 ? w[i + 2] : NULL;
	if (n < 2 || (!change && n <= i)) {
		usage = "block device name expected";
	} else if (change && n <= i) {
		usage = "filename expected";
	} else if (n > i + (change ? 3 : 1)) {
		usage = "extraneous characters at the end of line";
	} else if (mode && strcmp(mode, "retain") != 0 && strcmp(mode, "read-only") != 0 &&
		   strcmp(mode, "read-write") != 0) {
		hmp_printf(o, "Error: invalid parameter value: %s\n", mode);
		goto out;
	}
	if (usage) {
		hmp_printf(o, "%s: %s\nTry \"help %s\" for more information\n", w[0], usage, w[0]);
		goto out;
	}
	args = json_pack("{s:s, s:b}", "device", change ? w[1] : w[i], "force", force);
	if (change) {
		json_object_set_new(args, "filename", json_string(w[i]));
		if (n > i + 1) {
			json_object_set_new(args, "format", json_string(w[i + 1]));
		}
		if (mode) {
			json_object_set_new(args, "read-only-mode", json_string(mode));
		}
	}
	r = hmp_call(req, change ? qmp_blockdev_change_medium : qmp_eject, args, o);
out:
	json_decref(args);
	free(copy);
	return r;
}

/* HMP's arguments (hmp.h). */

void hmp_skip_space(struct hmp_args *a)
{
	while (*a->p == ' ' || *a->p == '\t') {
		a->p++;
	}
}

static uint64_t expr_fail(struct hmp_args *a, const char *msg)
{
	if (!a->failed) {
		hmp_printf(a->o, "%s\nTry \"help %s\" for more information\n", msg, a->cmd);
	}
	a->failed = true;
	return 0;
}

static uint64_t expr_sum(struct hmp_args *a);

/* A number, a sign or ~ before one, or a parenthesised sum. */
static uint64_t expr_unary(struct hmp_args *a)
{
	char *end;
	uint64_t v;

	switch (*a->p) {
	case '+':
		a->p++;
		return expr_unary(a);
	case '-':
		a->p++;
		return -expr_unary(a);
	case '~':
		a->p++;
		return ~expr_unary(a);
	case '(':
		a->p++;
		v = expr_sum(a);
		if (*a->p != ')') {
			return expr_fail(a, "')' expected");
		}
		a->p++;
		break;
	case '\0':
		return expr_fail(a, "unexpected end of expression");
	default:
		errno = 0;
		v = strtoull(a->p, &end, 0);
		if (end == a->p) {
			char msg[40];

			snprintf(msg, sizeof(msg), "invalid char '%c' in expression", *a->p);
			return expr_fail(a, msg);
		}
		if (errno == ERANGE) {
			return expr_fail(a, "number too large");
		}
		a->p = end;
	}
	hmp_skip_space(a);
	return v;
}

static uint64_t expr_logic(struct hmp_args *a)
{
	uint64_t v = expr_unary(a);

	while (!a->failed && (*a->p == '&' || *a->p == '|' || *a->p == '^')) {
		char op = *a->p++;
		uint64_t w;

		hmp_skip_space(a);
		w = expr_unary(a);
		v = op == '&' ? v & w : op == '|' ? v | w : v ^ w;
	}
	return v;
}

static uint64_t expr_prod(struct hmp_args *a)
{
	uint64_t v = expr_logic(a);

	while (!a->failed && (*a->p == '*' || *a->p == '/' || *a->p == '%')) {
		char op = *a->p++;
		uint64_t w;

		hmp_skip_space(a);
		w = expr_logic(a);
		if (a->failed) {
			return 0;
		}
		if (op != '*' && w == 0) {
			return expr_fail(a, "division by zero");
		}
		/* signed, as QEMU's; x / -1 without the overflow of INT64_MIN / -1 */
		if (op == '*') {
			v *= w;
		} else if ((int64_t)w == -1) {
			v = op == '/' ? -v : 0;
		} else {
			v = op == '/' ? (uint64_t)((int64_t)v / (int64_t)w)
				      : (uint64_t)((int64_t)v % (int64_t)w);
		}
	}
	return v;
}

static uint64_t expr_sum(struct hmp_args *a)
{
	uint64_t v = expr_prod(a);

	while (!a->failed && (*a->p == '+' || *a->p == '-')) {
		char op = *a->p++;
		uint64_t w;

		hmp_skip_space(a);
		w = expr_prod(a);
		v = op == '+' ? v + w : v - w;
	}
	return v;
}

bool hmp_arg_expr(struct hmp_args *a, json_int_t *ret)
{
	hmp_skip_space(a);
	*ret = (json_int_t)expr_sum(a);
	return !a->failed;
}

char *hmp_arg_str(struct hmp_args *a, const char *what)
{
	const char *start;

	hmp_skip_space(a);
	if (*a->p == '"') {
		/* a quoted word (QEMU's get_str; no escapes here) */
		const char *close = strchr(a->p + 1, '"');

		if (close) {
			start = a->p + 1;
			a->p = close + 1;
			return strndup(start, (size_t)(close - start));
		}
	}
	start = a->p;
	while (*a->p && *a->p != ' ' && *a->p != '\t') {
		a->p++;
	}
	if (a->p == start) {
		hmp_printf(a->o, "%s: %s expected\nTry \"help %s\" for more information\n", a->cmd,
			   what, a->cmd);
		a->failed = true;
		return NULL;
	}
	return strndup(start, (size_t)(a->p - start));
}

bool hmp_arg_end(struct hmp_args *a)
{
	hmp_skip_space(a);
	if (*a->p && !a->failed) {
		hmp_printf(a->o,
			   "%s: extraneous characters at the end of line\n"
			   "Try \"help %s\" for more information\n",
			   a->cmd, a->cmd);
		a->failed = true;
	}
	return !a->failed;
}

/* memsave ADDR SIZE FILE and pmemsave ADDR SIZE FILE. */
static int hmp_memsave(struct monitor_request *req, const char *cmd, const char *line,
		       struct hmp_out *o)
{
	struct hmp_args a = {line + strspn(line, " \t") + strlen(cmd), cmd, o, false};
	json_int_t val, size;
	char *file = NULL;
	json_t *args;
	int r = 0;

	if (hmp_arg_expr(&a, &val) && hmp_arg_expr(&a, &size) &&
	    (file = hmp_arg_str(&a, "string")) && hmp_arg_end(&a)) {
		args = json_pack("{s:I, s:I, s:s}", "val", val, "size", size, "filename", file);
		r = hmp_call(req, strcmp(cmd, "memsave") == 0 ? qmp_memsave : qmp_pmemsave, args,
			     o);
		json_decref(args);
	}
	free(file);
	return r;
}

/*
 * dump-guest-memory [-p] [-d] [-z|-l|-s|-w] filename [begin length]: QEMU's
 * parse and words, answered as the QMP command is (deferred).
 */
static int hmp_dump(struct monitor_request *req, const char *line, struct hmp_out *o)
{
	static const char *const formats[] = {['z'] = "kdump-zlib",
					      ['l'] = "kdump-lzo",
					      ['s'] = "kdump-snappy",
					      ['w'] = "win-dmp"};
	struct hmp_args a = {line + strspn(line, " \t") + strlen("dump-guest-memory"),
			     "dump-guest-memory", o, false};
	const char *format = NULL;
	bool paging = false, detach = false;
	json_int_t begin = 0, length = 0;
	bool has_begin = false, has_length = false;
	json_t *args = NULL;
	char *file = NULL;
	int r = 0;

	for (hmp_skip_space(&a); a.p[0] == '-'; hmp_skip_space(&a)) {
		char f = a.p[1];

		if (!f || !strchr("pdzlsw", f) || (a.p[2] && a.p[2] != ' ' && a.p[2] != '\t')) {
			hmp_printf(o,
				   "dump-guest-memory: unsupported option -%c\n"
				   "Try \"help dump-guest-memory\" for more information\n",
				   f ? f : ' ');
			return 0;
		}
		a.p += 2;
		if (f == 'p' || f == 'd') {
			*(f == 'p' ? &paging : &detach) = true;
		} else if (format) {
			hmp_printf(o, "Error: only one of '-z|-l|-s|-w' can be set\n");
			return 0;
		} else {
			format = formats[(unsigned char)f];
		}
	}
	if (!(file = hmp_arg_str(&a, "filename"))) {
		return 0;
	}
	hmp_skip_space(&a);
	has_begin = *a.p && hmp_arg_expr(&a, &begin);
	hmp_skip_space(&a);
	has_length = !a.failed && *a.p && hmp_arg_expr(&a, &length);
	if (hmp_arg_end(&a)) {
		args = json_pack("{s:b, s:s+, s:b}", "paging", paging, "protocol", "file:", file,
				 "detach", detach);
		if (args && format) {
			json_object_set_new(args, "format", json_string(format));
		}
		if (args && has_begin) {
			json_object_set_new(args, "begin", json_integer(begin));
		}
		if (args && has_length) {
			json_object_set_new(args, "length", json_integer(length));
		}
		r = hmp_call(req, qmp_dump_guest_memory, args, o);
		json_decref(args);
	}
	free(file);
	return r;
}

/* info dump: QEMU's status lines. */
static void info_dump(struct monitor_request *req, struct hmp_out *o)
{
	json_t *q = run(req, qmp_query_dump, o);
	json_int_t total = jint(q, "total");

	if (q) {
		hmp_printf(o, "Status: %s\n", jstr(q, "status"));
		if (strcmp(jstr(q, "status"), "active") == 0) {
			hmp_printf(o, "Finished: %.2f %%\n",
				   total ? (double)jint(q, "completed") * 100 / (double)total
					 : 0.0);
		}
	}
	json_decref(q);
}

int qmp_human_monitor_command(struct monitor_request *req, json_t *args, json_t **ret,
			      struct error **errp)
{
	const char *line = json_string_value(json_object_get(args, "command-line"));
	static const struct {
		const char *name;
		monitor_handler_fn fn;
	} plain[] = {
		{"stop", qmp_stop_now},
		{"cont", qmp_cont},
		{"c", qmp_cont},
		{"system_reset", qmp_system_reset},
		{"system_powerdown", qmp_system_powerdown},
		{"nmi", qmp_inject_nmi},
		{"quit", qmp_quit},
		{"q", qmp_quit},
	};
	struct hmp_out o = {0};
	char cmd[64] = "", what[64] = "";
	json_t *j = NULL;
	int n = 0;

	sscanf(line, " %63s %63s %n", cmd, what, &n);
	if (!cmd[0]) {
		*ret = json_string("");
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		if (strcmp(cmd, plain[i].name) == 0 && !what[0]) {
			json_decref(run(req, plain[i].fn, &o));
			goto out;
		}
	}
	if (!strcmp(cmd, "eject") || !strcmp(cmd, "change")) {
		if (hmp_media(req, line, &o) == MONITOR_DEFERRED) {
			return MONITOR_DEFERRED;
		}
		goto out;
	}
	if (!strcmp(cmd, "dump-guest-memory")) {
		if (hmp_dump(req, line, &o) == MONITOR_DEFERRED) {
			return MONITOR_DEFERRED;
		}
		goto out;
	}
	if (!strcmp(cmd, "x") || !strcmp(cmd, "xp") || !strcmp(cmd, "gva2gpa") ||
	    (!strcmp(cmd, "info") && (!strcmp(what, "mem") || !strcmp(what, "tlb")))) {
		if (hmp_memory(req, cmd, line, &o) == MONITOR_DEFERRED) {
			return MONITOR_DEFERRED;
		}
		goto out;
	}
	if (!strcmp(cmd, "memsave") || !strcmp(cmd, "pmemsave")) {
		if (hmp_memsave(req, cmd, line, &o) == MONITOR_DEFERRED) {
			return MONITOR_DEFERRED;
		}
		goto out;
	}
	if (hmp_is_block_job(cmd)) {
		if (hmp_block_job(req, cmd, line, &o) == MONITOR_DEFERRED) {
			return MONITOR_DEFERRED;
		}
		goto out;
	}
	if (!strcmp(cmd, "savevm") || !strcmp(cmd, "loadvm") || !strcmp(cmd, "delvm")) {
		if (hmp_snapshot(req, cmd, what[0] ? what : NULL, &o) == MONITOR_DEFERRED) {
			return MONITOR_DEFERRED;
		}
		goto out;
	}
	if (strcmp(cmd, "info") != 0 || !what[0]) {
		goto unknown;
	}
	if (strcmp(what, "status") == 0) {
		info_status(req, &o);
	} else if (strcmp(what, "version") == 0) {
		info_version(req, &o);
	} else if (strcmp(what, "name") == 0) {
		hmp_printf(&o, "%s\n", ((struct registry_vm *)req->vm)->name);
	} else if (strcmp(what, "dump") == 0) {
		info_dump(req, &o);
	} else if (strcmp(what, "kvm") == 0) {
		hmp_printf(&o, "kvm support: enabled\n");
	} else if (strcmp(what, "block") == 0 && (j = run(req, qmp_query_block, &o))) {
		info_block(j, &o);
	} else if (strcmp(what, "blockstats") == 0 && (j = run(req, qmp_query_blockstats, &o))) {
		info_blockstats(j, &o);
	} else if (strcmp(what, "cpus") == 0 && (j = run(req, qmp_query_cpus_fast, &o))) {
		info_cpus(j, &o);
	} else if (strcmp(what, "pci") == 0 && (j = run(req, qmp_query_pci, &o))) {
		info_pci(j, &o);
	} else if (strcmp(what, "network") == 0) {
		info_network(req->vm, &o);
	} else if (strcmp(what, "block-jobs") == 0 && (j = run(req, qmp_query_block_jobs, &o))) {
		hmp_info_block_jobs(j, &o);
	} else if (strcmp(what, "snapshots") == 0 && (j = run(req, qmp_query_block, &o))) {
		info_snapshots(j, &o);
	} else if (!o.buf) {
		goto unknown;
	}
	goto out;
unknown:
	hmp_printf(&o, "unknown command: '%s%s%s'\n", cmd, what[0] ? " " : "", what);
out:
	json_decref(j);
	*ret = json_string(o.buf ? o.buf : "");
	free(o.buf);
	return 0;
}
