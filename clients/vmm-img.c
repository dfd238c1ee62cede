/*
 * vmm-img: create, inspect, check, convert and modify disk images, with
 * qemu-img's verbs, options and output shapes, on vmmd's block layer.
 * Without -f the format is probed as qemu-img does (qcow2 by its magic, raw
 * otherwise); a probed raw image refuses writes that would change the probe.
 *
 * Single-threaded except `bench`, which drives the asynchronous block API
 * from a libevent loop on the main thread (img-bench.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clients/img.h"
#include "common/parse.h"

/* Copy granularity of convert, compare, rebase and commit. */
#define IMG_CHUNK (2u << 20)
#define IMG_SECTOR 512

/* ---- shared helpers ---- */

void img_error(const char *fmt, ...)
{
	va_list ap;

	fputs("vmm-img: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int report(struct error *err, int r)
{
	img_error("%s", err ? err->msg : strerror(-r));
	error_free(err);
	return r;
}

int img_open(struct block_node **ret, const char *filename, const char *fmt, unsigned flags)
{
	struct error *err = NULL;
	int r;

	if (strncmp(filename, "json:", 5) == 0) {
		json_error_t jerr;
		json_t *opts = json_loads(filename + 5, 0, &jerr);

		if (!json_is_object(opts)) {
			json_decref(opts);
			img_error("invalid json: filename: %s", jerr.text);
			return -EINVAL;
		}
		if (!json_object_get(opts, "read-only")) {
			json_object_set_new(opts, "read-only",
					    json_boolean(!(flags & BLOCK_O_RDWR)));
		}
		r = block_open_json(ret, opts, &err);
		json_decref(opts);
		return r < 0 ? report(err, r) : 0;
	}
	if (!fmt) {
		r = block_probe_format(filename, &fmt, &err);
		if (r < 0) {
			return report(err, r);
		}
		if (strcmp(fmt, "raw") == 0 && (flags & BLOCK_O_RDWR)) {
			/* QEMU's warning, word for word: scripts and users grep for it */
			fprintf(stderr,
				"WARNING: Image format was not specified for '%s' and probing "
				"guessed raw.\n"
				"         Automatically detecting the format is dangerous for raw "
				"images, write operations on block 0 will be restricted.\n"
				"         Specify the 'raw' format explicitly to remove the "
				"restrictions.\n",
				filename);
			flags |= BLOCK_O_PROBED;
		}
	}
	r = block_open(ret, filename, fmt, flags, &err);
	return r < 0 ? report(err, r) : 0;
}

int img_cache_flags(const char *mode, unsigned *ret_flags)
{
	if (strcmp(mode, "none") == 0 || strcmp(mode, "directsync") == 0) {
		*ret_flags = BLOCK_O_NOCACHE;
	} else if (strcmp(mode, "unsafe") == 0) {
		*ret_flags = BLOCK_O_NO_FLUSH; /* as QEMU: flushes never reach the disk */
	} else if (strcmp(mode, "writeback") == 0 || strcmp(mode, "writethrough") == 0) {
		*ret_flags = 0;
	} else {
		img_error("invalid cache mode '%s' (none, writeback, writethrough, directsync, "
			  "unsafe)",
			  mode);
		return -EINVAL;
	}
	return 0;
}

const char *img_size_str(uint64_t v, char *buf, size_t len)
{
	static const char *const suffixes[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	int i;

	frexp((double)v / (1000.0 / 1024.0), &i);
	i = (i - 1) / 10;
	if (i < 0) {
		i = 0;
	}
	if ((size_t)i >= ARRAY_SIZE(suffixes)) {
		i = ARRAY_SIZE(suffixes) - 1;
	}
	snprintf(buf, len, "%0.3g %s", (double)v / (double)(1ull << (i * 10)), suffixes[i]);
	return buf;
}

static int parse_size_arg(const char *s, uint64_t *ret)
{
	if (parse_size(s, ret) < 0) {
		img_error("invalid size '%s' (a number of bytes, or with a suffix K, M, G, T)", s);
		return -EINVAL;
	}
	return 0;
}

/* ---- options every verb shares ---- */

/* The verb being run (for -h); set by main. */
static const struct img_command *cur_cmd;

/*
 * -f FMT, --output=human|json, -U (--force-share), -q, -h (--help): parsed
 * once here for every verb. IMG_OPT_MINE: the verb handles @c itself.
 */
enum {
	IMG_OPT_MINE,
	IMG_OPT_DONE,
	IMG_OPT_HELP,
	IMG_OPT_ERROR
};

static int img_common_opt(int c, struct img_common *co)
{
	switch (c) {
	case 'f':
		co->fmt = optarg;
		return IMG_OPT_DONE;
	case 'q':
		co->quiet = true;
		return IMG_OPT_DONE;
	case 'U':
		co->flags |= BLOCK_O_NO_LOCK;
		return IMG_OPT_DONE;
	case IMG_OPT_OUTPUT:
		if (strcmp(optarg, "json") == 0) {
			co->json = true;
		} else if (strcmp(optarg, "human") == 0) {
			co->json = false;
		} else {
			img_error("--output must be used with human or json as argument.");
			return IMG_OPT_ERROR;
		}
		return IMG_OPT_DONE;
	case 'h':
		printf("Usage: vmm-img %s\n", cur_cmd->usage);
		return IMG_OPT_HELP;
	case '?':
	case ':':
		return IMG_OPT_ERROR;
	default:
		return IMG_OPT_MINE;
	}
}

/* The long options of img_common_opt (put first in a verb's table). */
#define IMG_LONG_OPTS                                                                          \
	{"help", no_argument, NULL, 'h'}, {"output", required_argument, NULL, IMG_OPT_OUTPUT}, \
	{                                                                                      \
		"force-share", no_argument, NULL, 'U'                                          \
	}

/* In a verb's getopt loop: handle the shared options, return on help or error. */
#define IMG_COMMON_OPT(c, co, err_rc)        \
	switch (img_common_opt((c), (co))) { \
	case IMG_OPT_DONE:                   \
		continue;                    \
	case IMG_OPT_HELP:                   \
		return 0;                    \
	case IMG_OPT_ERROR:                  \
		return (err_rc);             \
	default:                             \
		break;                       \
	}

/*
 * QEMU prints its JSON objects (info, check, measure) in the order of its
 * QDict's hash buckets (tdb_hash of the key, 512 buckets), not in schema
 * order. Reorder @v recursively the same way so the output is byte-for-byte
 * qemu-img's; scripts that diff outputs see no change.
 */
static unsigned qdict_bucket(const char *key)
{
	uint32_t v = 0x238F13AFu * (uint32_t)strlen(key);

	for (unsigned i = 0; key[i]; i++) {
		v += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
	}
	return (1103515243u * v + 12345u) % 512;
}

static int qdict_cmp(const void *a, const void *b)
{
	const char *ka = *(const char *const *)a, *kb = *(const char *const *)b;
	unsigned ba = qdict_bucket(ka), bb = qdict_bucket(kb);

	return ba != bb ? (ba < bb ? -1 : 1) : strcmp(ka, kb);
}

static json_t *img_qemu_order(json_t *v)
{
	if (json_is_array(v)) {
		size_t i;
		json_t *e;

		json_array_foreach (v, i, e) {
			json_array_set_new(v, i, img_qemu_order(json_incref(e)));
		}
		return v;
	}
	if (json_is_object(v)) {
		size_t n = json_object_size(v), i = 0;
		const char **keys = calloc(n ? n : 1, sizeof(*keys)), *key;
		json_t *out = json_object(), *e;

		if (!keys || !out) {
			free(keys);
			json_decref(out);
			return v;
		}
		json_object_foreach (v, key, e) {
			keys[i++] = key;
		}
		qsort(keys, n, sizeof(*keys), qdict_cmp);
		for (i = 0; i < n; i++) {
			json_object_set_new(
				out, keys[i],
				img_qemu_order(json_incref(json_object_get(v, keys[i]))));
		}
		free(keys);
		json_decref(v);
		return out;
	}
	return v;
}

/* Print @v (a reference is taken over) as qemu-img prints JSON. */
static void print_json(json_t *v)
{
	char *s;
	int indent = 0;
	bool in_str = false, esc = false, line_start = true;

	v = img_qemu_order(v);
	s = json_dumps(v, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
	json_decref(v);
	if (!s) {
		return;
	}
	/* as QEMU's JSON writer, empty arrays and objects span two lines */
	for (const char *p = s; *p; p++) {
		if (line_start) {
			indent = (int)strspn(p, " ");
			line_start = false;
		}
		if (in_str) {
			in_str = esc || *p != '"';
			esc = !esc && *p == '\\';
		} else if (*p == '"') {
			in_str = true;
		} else if ((*p == '[' && p[1] == ']') || (*p == '{' && p[1] == '}')) {
			printf("%c\n%*s%c", *p, indent, "", p[1]);
			p++;
			continue;
		}
		line_start = *p == '\n';
		putchar(*p);
	}
	printf("\n");
	free(s);
}

static void progress(bool on, uint64_t done, uint64_t total)
{
	if (on) {
		printf("    (%4.2f/100%%)\r", total ? 100.0 * (double)done / (double)total : 100.0);
		fflush(stdout);
	}
}

static void progress_end(bool on)
{
	if (on) {
		printf("    (100.00/100%%)\n");
	}
}

/* -o key=value[,key=value...] into a JSON object of strings. */
static int parse_o(json_t *obj, const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;

	if (!copy) {
		return -ENOMEM;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq) {
			img_error("invalid -o option '%s' (expected key=value)", tok);
			free(copy);
			return -EINVAL;
		}
		*eq = '\0';
		json_object_set_new(obj, tok, json_string(eq + 1));
	}
	free(copy);
	return 0;
}

static bool is_true(const char *v)
{
	return strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
	       strcmp(v, "1") == 0;
}

/* ---- create ---- */

/* qemu-img's line for qed, vhdx, vmdk and vpc: the options each always shows, then the given ones. */
static void print_formatting_other(const char *filename, const char *fmt, uint64_t size, json_t *o,
				   uint64_t cluster_size)
{
	const char *sub = json_string_value(json_object_get(o, "subformat"));
	const char *ts = json_string_value(json_object_get(o, "table_size"));
	const char *ls = json_string_value(json_object_get(o, "log_size"));
	const char *bs = json_string_value(json_object_get(o, "block_size"));
	uint64_t v;

	printf("Formatting '%s', fmt=%s size=%" PRIu64, filename, fmt, size);
	if (strcmp(fmt, "qed") == 0) {
		const char *bf = json_string_value(json_object_get(o, "backing_file"));
		const char *bfmt = json_string_value(json_object_get(o, "backing_fmt"));

		if (bf) {
			printf(" backing_file=%s", bf);
		}
		if (bfmt) {
			printf(" backing_fmt=%s", bfmt);
		}
		printf(" cluster_size=%" PRIu64, cluster_size);
		if (ts) {
			printf(" table_size=%s", ts);
		}
	} else if (strcmp(fmt, "vhdx") == 0) {
		printf(" log_size=%" PRIu64, ls && parse_size(ls, &v) == 0 ? v : 1048576);
		printf(" block_size=%" PRIu64, bs && parse_size(bs, &v) == 0 ? v : 0);
	} else if (strcmp(fmt, "vmdk") == 0) {
		printf(" compat6=off hwversion=undefined");
	}
	if (sub) {
		printf(" subformat=%s", sub);
	}
	if (strcmp(fmt, "vpc") == 0 && json_object_get(o, "force_size")) {
		printf(" force_size=%s", json_string_value(json_object_get(o, "force_size")));
	}
	if (strcmp(fmt, "vhdx") == 0 && json_object_get(o, "block_state_zero")) {
		printf(" block_state_zero=%s",
		       json_string_value(json_object_get(o, "block_state_zero")));
	}
	printf("\n");
}

static void print_formatting(const char *filename, const char *fmt, uint64_t size, json_t *o)
{
	const char *cs = json_string_value(json_object_get(o, "cluster_size"));
	const char *bf = json_string_value(json_object_get(o, "backing_file"));
	const char *bfmt = json_string_value(json_object_get(o, "backing_fmt"));
	const char *ct = json_string_value(json_object_get(o, "compression_type"));
	const char *lr = json_string_value(json_object_get(o, "lazy_refcounts"));
	const char *rb = json_string_value(json_object_get(o, "refcount_bits"));
	const char *pa = json_string_value(json_object_get(o, "preallocation"));
	uint64_t csz = 65536;

	if (strcmp(fmt, "raw") == 0) {
		printf("Formatting '%s', fmt=raw size=%" PRIu64 "%s%s\n", filename, size,
		       pa ? " preallocation=" : "", pa ? pa : "");
		return;
	}
	if (cs) {
		parse_size(cs, &csz);
	}
	if (strcmp(fmt, "qcow2") != 0) {
		print_formatting_other(filename, fmt, size, o, csz);
		return;
	}
	printf("Formatting '%s', fmt=qcow2 cluster_size=%" PRIu64 " extended_l2=off%s%s "
	       "compression_type=%s size=%" PRIu64,
	       filename, csz, pa ? " preallocation=" : "", pa ? pa : "", ct ? ct : "zlib", size);
	if (bf) {
		printf(" backing_file=%s", bf);
	}
	if (bfmt) {
		printf(" backing_fmt=%s", bfmt);
	}
	printf(" lazy_refcounts=%s refcount_bits=%s\n", lr && is_true(lr) ? "on" : "off",
	       rb ? rb : "16");
}

static int img_create(const char *filename, const char *fmt, uint64_t size, json_t *o, bool quiet)
{
	struct error *err = NULL;
	int r;

	if (!quiet) {
		print_formatting(filename, fmt, size, o);
		fflush(stdout);
	}
	r = block_create(fmt, filename, size, o, &err);
	return r < 0 ? report(err, r) : 0;
}

/* Image path of a backing name, which is relative to the image's directory. */
static char *backing_path(const char *image, const char *name)
{
	const char *slash = strrchr(image, '/');
	char *path = NULL;

	if (name[0] == '/' || !slash) {
		return strdup(name);
	}
	if (asprintf(&path, "%.*s/%s", (int)(slash - image), image, name) < 0) {
		return NULL;
	}
	return path;
}

/* The size an image created over a backing file inherits (for the message). */
static void backing_size(const char *image, json_t *o, uint64_t *size)
{
	const char *bf = json_string_value(json_object_get(o, "backing_file"));
	const char *bfmt = json_string_value(json_object_get(o, "backing_fmt"));
	struct block_node *bs = NULL;
	struct error *err = NULL;
	char *path;

	if (!bf || !bfmt) {
		return;
	}
	path = backing_path(image, bf);
	if (path && block_open(&bs, path, bfmt, BLOCK_O_NO_LOCK | BLOCK_O_NO_BACKING, &err) == 0) {
		*size = block_length(bs);
		block_unref(bs);
	}
	error_free(err);
	free(path);
}

/*
 * "-o help": the creation options vmm-img accepts for @fmt, in qemu-img's
 * layout (only options vmm-img implements are listed). Without a file
 * name qemu-img leaves out the protocol's options and says so.
 */
static int print_create_help(const char *fmt, bool have_filename)
{
	static const struct {
		const char *fmt, *name, *help;
		bool protocol;
	} opts[] = {
		{"qcow2", "backing_file=<str>", "File name of a base image", false},
		{"qcow2", "backing_fmt=<str>", "Image format of the base image", false},
		{"qcow2", "cluster_size=<size>", "qcow2 cluster size", false},
		{"qcow2", "compat=<str>", "Compatibility level (v2 [0.10] or v3 [1.1])", false},
		{"qcow2", "compression_type=<str>",
		 "Compression method used for image cluster compression", false},
		{"qcow2", "lazy_refcounts=<bool (on/off)>", "Postpone refcount updates", false},
		{"qcow2", "preallocation=<str>",
		 "Preallocation mode (allowed values: off, metadata, full)", false},
		{"raw", "preallocation=<str>",
		 "Preallocation mode (allowed values: off, falloc, full)", true},
		{"qcow2", "refcount_bits=<num>", "Width of a reference count entry in bits", false},
		{NULL, "size=<size>", "Virtual disk size", false},
	};

	if (strcmp(fmt, "raw") != 0 && strcmp(fmt, "qcow2") != 0) {
		img_error("Unknown file format '%s'", fmt);
		return 1;
	}
	if (have_filename) {
		printf("Supported options:\n");
	} else {
		printf("Supported %s options:\n", fmt);
	}
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		if (opts[i].fmt && strcmp(opts[i].fmt, fmt) != 0) {
			continue;
		}
		if (opts[i].protocol && !have_filename) {
			continue;
		}
		printf("  %-22s - %s\n", opts[i].name, opts[i].help);
	}
	if (!have_filename) {
		printf("\nThe protocol level may support further options.\n"
		       "Specify the target filename to include those options.\n");
	}
	return 0;
}

/* "help" or "?" among the comma-separated -o options. */
static bool has_help_option(const char *arg)
{
	size_t n;

	for (const char *p = arg; *p; p += n + (p[n] == ',')) {
		n = strcspn(p, ",");
		if ((n == 4 && strncmp(p, "help", 4) == 0) || (n == 1 && *p == '?')) {
			return true;
		}
	}
	return false;
}

/*
 * qemu-img 7.2 refuses a backing file without its format; it names the
 * format it would have probed, so the user can add -F.
 */
static int check_backing_fmt(const char *filename, json_t *o)
{
	const char *bf = json_string_value(json_object_get(o, "backing_file"));
	struct error *err = NULL;
	const char *probed;
	char *path;

	if (!bf || json_object_get(o, "backing_fmt")) {
		return 0;
	}
	img_error("%s: Backing file specified without backing format", filename);
	path = backing_path(filename, bf);
	if (path && block_probe_format(path, &probed, &err) == 0) {
		fprintf(stderr, "Detected format of %s.", probed); /* sic: no newline */
	}
	error_free(err);
	free(path);
	return -EINVAL;
}

static int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	struct img_common co = {.fmt = "raw"};
	const char *fmt, *filename;
	json_t *o = json_object();
	uint64_t size = 0;
	bool quiet, have_size = false, help = false;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:o:b:F:qu", opts, NULL)) != -1) {
		switch (img_common_opt(c, &co)) {
		case IMG_OPT_DONE:
			continue;
		case IMG_OPT_HELP:
			r = 0;
			goto out;
		case IMG_OPT_ERROR:
			goto out;
		}
		switch (c) {
		case 'o':
			if (has_help_option(optarg)) {
				help = true;
			} else if (parse_o(o, optarg) < 0) {
				goto out;
			}
			break;
		case 'b':
			json_object_set_new(o, "backing_file", json_string(optarg));
			break;
		case 'F':
			json_object_set_new(o, "backing_fmt", json_string(optarg));
			break;
		case 'u':
			break; /* the backing file is opened only for its size */
		default:
			goto out;
		}
	}
	fmt = co.fmt;
	quiet = co.quiet;
	if (help) {
		json_decref(o);
		return print_create_help(fmt, optind < argc);
	}
	if (optind >= argc || argc - optind > 2) {
		img_error("create: expected FILENAME [SIZE]");
		goto out;
	}
	filename = argv[optind];
	if (argc - optind == 2) {
		if (parse_size_arg(argv[optind + 1], &size) < 0) {
			goto out;
		}
		have_size = true;
	} else if (json_object_get(o, "size")) {
		if (parse_size_arg(json_string_value(json_object_get(o, "size")), &size) < 0) {
			goto out;
		}
		have_size = true;
	}
	if (check_backing_fmt(filename, o) < 0) {
		goto out;
	}
	if (!have_size && !json_object_get(o, "backing_file")) {
		img_error("create: an image size is required (only an image with a backing file "
			  "may omit it)");
		goto out;
	}
	if (!have_size) {
		backing_size(filename, o, &size);
	}
	r = img_create(filename, fmt, size, o, quiet);
out:
	json_decref(o);
	return r < 0 ? 1 : 0;
}

/* ---- info ---- */

static void print_snapshot_table(json_t *snaps)
{
	size_t i;
	json_t *sn;

	printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
	json_array_foreach (snaps, i, sn) {
		char size[32], date[32], clock[32], icount[32] = "";
		time_t secs = (time_t)json_integer_value(json_object_get(sn, "date-sec"));
		uint64_t ns = (uint64_t)json_integer_value(json_object_get(sn, "vm-clock-nsec"));
		json_t *ic = json_object_get(sn, "icount");
		struct tm tm;

		ns += (uint64_t)json_integer_value(json_object_get(sn, "vm-clock-sec")) *
		      1000000000ull;
		img_size_str((uint64_t)json_integer_value(json_object_get(sn, "vm-state-size")),
			     size, sizeof(size));
		localtime_r(&secs, &tm);
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(clock, sizeof(clock), "%02u:%02u:%02u.%03u",
			 (unsigned)(ns / 3600000000000ull), (unsigned)(ns / 60000000000ull % 60),
			 (unsigned)(ns / 1000000000ull % 60), (unsigned)(ns / 1000000ull % 1000));
		if (json_is_integer(ic)) {
			snprintf(icount, sizeof(icount), "%" JSON_INTEGER_FORMAT,
				 json_integer_value(ic));
		}
		printf("%-9s %-16s %8s%20s%13s%11s\n",
		       json_string_value(json_object_get(sn, "id")) ?: "",
		       json_string_value(json_object_get(sn, "name")) ?: "", size, date, clock,
		       icount);
	}
}

static void print_value(json_t *v)
{
	if (json_is_string(v)) {
		printf("%s", json_string_value(v));
	} else if (json_is_true(v)) {
		printf("true");
	} else if (json_is_false(v)) {
		printf("false");
	} else if (json_is_integer(v)) {
		printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		printf("%s", s ? s : "");
		free(s);
	}
}

/*
 * QEMU's dump_qobject(): an object's members as "key: value" (dashes
 * in keys printed as spaces), array elements as "[i]: value", nested
 * objects and arrays on the following lines, four more spaces in.
 */
static void print_nested(int indent, json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach (v, key, e) {
			bool comp = json_is_object(e) || json_is_array(e);

			printf("%*s", indent * 4, "");
			for (const char *p = key; *p; p++) {
				putchar(*p == '-' ? ' ' : *p);
			}
			printf(":%c", comp ? '\n' : ' ');
			print_nested(indent + 1, e);
			if (!comp) {
				printf("\n");
			}
		}
	} else if (json_is_array(v)) {
		json_array_foreach (v, i, e) {
			bool comp = json_is_object(e) || json_is_array(e);

			printf("%*s[%zu]:%c", indent * 4, "", i, comp ? '\n' : ' ');
			print_nested(indent + 1, e);
			if (!comp) {
				printf("\n");
			}
		}
	} else {
		print_value(v);
	}
}

static void print_info_human(json_t *img)
{
	char buf[32];
	json_t *v, *fs, *data;

	printf("image: %s\n", json_string_value(json_object_get(img, "filename")));
	printf("file format: %s\n", json_string_value(json_object_get(img, "format")));
	v = json_object_get(img, "virtual-size");
	printf("virtual size: %s (%" JSON_INTEGER_FORMAT " bytes)\n",
	       img_size_str((uint64_t)json_integer_value(v), buf, sizeof(buf)),
	       json_integer_value(v));
	v = json_object_get(img, "actual-size");
	printf("disk size: %s\n",
	       v ? img_size_str((uint64_t)json_integer_value(v), buf, sizeof(buf)) : "unavailable");
	if ((v = json_object_get(img, "cluster-size"))) {
		printf("cluster_size: %" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
	}
	if ((v = json_object_get(img, "backing-filename"))) {
		const char *full = json_string_value(json_object_get(img, "full-backing-filename"));

		printf("backing file: %s", json_string_value(v));
		if (full && strcmp(full, json_string_value(v)) != 0) {
			printf(" (actual path: %s)", full);
		}
		printf("\n");
	}
	if ((v = json_object_get(img, "backing-filename-format"))) {
		printf("backing file format: %s\n", json_string_value(v));
	}
	if (json_is_true(json_object_get(img, "dirty-flag"))) {
		printf("cleanly shut down: no\n");
	}
	if ((v = json_object_get(img, "snapshots")) && json_array_size(v) > 0) {
		printf("Snapshot list:\n");
		print_snapshot_table(v);
	}
	fs = json_object_get(img, "format-specific");
	data = json_object_get(fs, "data");
	if (json_is_object(data) && json_object_size(data) > 0) {
		printf("Format specific information:\n");
		print_nested(1, data);
	}
}

/* ImageInfo of @bs with its snapshots; the backing chain stays nested. */
static json_t *image_info(struct block_node *bs)
{
	json_t *info = block_info_json(bs), *img, *snaps;
	struct block_node *b = bs;

	img = json_incref(json_object_get(info, "image"));
	json_decref(info);
	/* snapshots of every layer, nested the same way as backing-image */
	for (json_t *level = img; level && b; level = json_object_get(level, "backing-image")) {
		snaps = block_snapshot_list(b, NULL);
		if (json_array_size(snaps) > 0) {
			json_object_set_new(level, "snapshots", snaps);
		} else {
			json_decref(snaps);
		}
		if (!json_object_get(level, "dirty-flag")) {
			json_object_set_new(level, "dirty-flag", json_false()); /* as qemu-img */
		}
		b = b->backing;
	}
	return img;
}

static int cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{"backing-chain", no_argument, NULL, 'B'},
		{0},
	};
	struct img_common co = {0};
	struct block_node *bs;
	bool chain = false;
	json_t *img;
	int c;

	while ((c = getopt_long(argc, argv, "hf:U", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 1);
		switch (c) {
		case 'B':
			chain = true;
			break;
		default:
			return 1;
		}
	}
	if (optind + 1 != argc) {
		img_error("info: expected one FILENAME");
		return 1;
	}
	if (img_open(&bs, argv[optind], co.fmt, co.flags) < 0) {
		return 1;
	}
	img = image_info(bs);
	block_unref(bs);
	if (!chain) {
		json_object_del(img, "backing-image");
		if (co.json) {
			print_json(json_incref(img));
		} else {
			print_info_human(img);
		}
	} else {
		json_t *arr = json_array();

		for (json_t *l = img; l; l = json_object_get(l, "backing-image")) {
			json_t *copy = json_copy(l);

			json_object_del(copy, "backing-image");
			json_array_append_new(arr, copy);
		}
		if (co.json) {
			print_json(json_incref(arr));
		} else {
			size_t i;
			json_t *l;

			json_array_foreach (arr, i, l) {
				if (i) {
					printf("\n");
				}
				print_info_human(l);
			}
		}
		json_decref(arr);
	}
	json_decref(img);
	return 0;
}

/* ---- check ---- */

static void print_check(const struct block_check_result *res, const char *filename, const char *fmt,
			bool json)
{
	if (json) {
		json_t *o = json_object();

		/* as qemu-img: the counters only when non-zero */
		if (res->image_end_offset) {
			json_object_set_new(o, "image-end-offset",
					    json_integer((json_int_t)res->image_end_offset));
		}
		if (res->total_clusters) {
			json_object_set_new(o, "total-clusters",
					    json_integer((json_int_t)res->total_clusters));
		}
		json_object_set_new(o, "check-errors", json_integer(res->check_errors));
		if (res->allocated_clusters) {
			json_object_set_new(o, "allocated-clusters",
					    json_integer((json_int_t)res->allocated_clusters));
		}
		json_object_set_new(o, "filename", json_string(filename));
		json_object_set_new(o, "format", json_string(fmt));
		if (res->leaks) {
			json_object_set_new(o, "leaks", json_integer((json_int_t)res->leaks));
		}
		if (res->corruptions) {
			json_object_set_new(o, "corruptions",
					    json_integer((json_int_t)res->corruptions));
		}
		if (res->leaks_fixed) {
			json_object_set_new(o, "leaks-fixed",
					    json_integer((json_int_t)res->leaks_fixed));
		}
		if (res->corruptions_fixed) {
			json_object_set_new(o, "corruptions-fixed",
					    json_integer((json_int_t)res->corruptions_fixed));
		}
		if (res->fragmented_clusters) {
			json_object_set_new(o, "fragmented-clusters",
					    json_integer((json_int_t)res->fragmented_clusters));
		}
		if (res->compressed_clusters) {
			json_object_set_new(o, "compressed-clusters",
					    json_integer((json_int_t)res->compressed_clusters));
		}
		print_json(o);
		return;
	}
	if (res->corruptions) {
		printf("\n%" PRIu64 " errors were found on the image.\n"
		       "Data may be corrupted, or further writes to the image may corrupt it.\n",
		       res->corruptions);
	}
	if (res->leaks) {
		printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
		       "This means waste of disk space, but no harm to data.\n",
		       res->leaks);
	}
	if (res->check_errors) {
		printf("\n%d internal errors have occurred during the check.\n", res->check_errors);
	}
	if (!res->corruptions && !res->leaks && !res->check_errors) {
		printf("No errors were found on the image.\n");
	}
	if (res->total_clusters && res->allocated_clusters) {
		printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
		       "compressed clusters\n",
		       res->allocated_clusters, res->total_clusters,
		       100.0 * (double)res->allocated_clusters / (double)res->total_clusters,
		       100.0 * (double)res->fragmented_clusters / (double)res->allocated_clusters,
		       100.0 * (double)res->compressed_clusters / (double)res->allocated_clusters);
	}
	if (res->image_end_offset) {
		printf("Image end offset: %" PRIu64 "\n", res->image_end_offset);
	}
}

/* qemu-img check's per-cluster lines go to stderr, as QEMU's driver prints them. */
static void check_line(void *opaque, const char *line)
{
	fprintf(stderr, "%s\n", line);
}

static int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{"repair", required_argument, NULL, 'r'},
		{0},
	};
	struct img_common co = {0};
	struct block_check_result res = {.report = check_line};
	struct block_node *bs;
	struct error *err = NULL;
	unsigned fix = 0, flags;
	bool json, quiet;
	int c, r;

	while ((c = getopt_long(argc, argv, "hf:r:T:Uq", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 1);
		switch (c) {
		case 'T':
			break; /* the cache mode does not change what check reads */
		case 'r':
			if (strcmp(optarg, "leaks") == 0) {
				fix = BLOCK_FIX_LEAKS;
			} else if (strcmp(optarg, "all") == 0) {
				fix = BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS;
			} else {
				img_error("-r must be 'leaks' or 'all'");
				return 1;
			}
			break;
		default:
			return 1;
		}
	}
	json = co.json;
	quiet = co.quiet;
	flags = co.flags;
	if (optind + 1 != argc) {
		img_error("check: expected one FILENAME");
		return 1;
	}
	if (fix) {
		/* a repair changes refcounts only: persistent bitmaps stay valid */
		flags = (flags & ~BLOCK_O_NO_LOCK) | BLOCK_O_RDWR | BLOCK_O_BITMAPS;
	}
	if (img_open(&bs, argv[optind], co.fmt, flags | BLOCK_O_NO_BACKING) < 0) {
		return 1;
	}
	r = block_check(bs, &res, fix, &err);
	if (r == -ENOTSUP) {
		error_free(err);
		img_error("This image format does not support checks");
		block_unref(bs);
		return 63;
	}
	if (r < 0) {
		report(err, r);
		block_unref(bs);
		return 1;
	}
	if ((res.leaks_fixed || res.corruptions_fixed) && !json && !quiet) {
		printf("The following inconsistencies were found and repaired:\n\n"
		       "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
		       "Double checking the fixed image now...\n",
		       res.leaks_fixed, res.corruptions_fixed);
	}
	if (res.leaks_fixed || res.corruptions_fixed) {
		struct block_check_result again = {.report = check_line};

		r = block_check(bs, &again, 0, &err);
		if (r < 0) {
			report(err, r);
			block_unref(bs);
			return 1;
		}
		again.leaks_fixed = res.leaks_fixed;
		again.corruptions_fixed = res.corruptions_fixed;
		res = again;
	}
	if (!quiet) {
		print_check(&res, block_filename(bs), block_format(bs), json);
	}
	block_unref(bs);
	if (res.check_errors) {
		return 1;
	}
	if (res.corruptions) {
		return 2;
	}
	return res.leaks ? 3 : 0;
}

/* ---- map ---- */

struct map_entry {
	uint64_t start, length, offset;
	unsigned depth;
	bool present, zero, data, has_offset;
	const char *file;
};

/* Status of [off, off+len) through the backing chain. */
static int map_lookup(struct block_node *bs, uint64_t off, uint64_t len, struct map_entry *e)
{
	unsigned depth = 0, status;
	uint64_t pnum, foff;
	int r;

	for (;;) {
		r = block_get_status(bs, off, len, &pnum, &status, &foff);
		if (r < 0) {
			return r;
		}
		len = pnum;
		if ((status & BLOCK_STATUS_ALLOCATED) || !bs->backing ||
		    off >= block_length(bs->backing)) {
			break;
		}
		len = MIN(len, block_length(bs->backing) - off);
		bs = bs->backing;
		depth++;
	}
	*e = (struct map_entry){
		.start = off,
		.length = len,
		.depth = depth,
		.present = status & BLOCK_STATUS_ALLOCATED,
		.zero = status & BLOCK_STATUS_ZERO,
		.data = status & BLOCK_STATUS_DATA,
		.has_offset = foff != UINT64_MAX,
		.offset = foff,
		.file = bs->file ? bs->filename : bs->filename,
	};
	return 0;
}

static bool map_mergeable(const struct map_entry *a, const struct map_entry *b)
{
	return a->depth == b->depth && a->present == b->present && a->zero == b->zero &&
	       a->data == b->data && a->has_offset == b->has_offset &&
	       (!a->has_offset || a->offset + a->length == b->offset) && a->file == b->file;
}

static void map_print(const struct map_entry *e, bool json, bool first)
{
	if (json) {
		printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u, "
		       "\"present\": %s, \"zero\": %s, \"data\": %s",
		       first ? "[" : ",\n", e->start, e->length, e->depth,
		       e->present ? "true" : "false", e->zero ? "true" : "false",
		       e->data ? "true" : "false");
		if (e->has_offset) {
			printf(", \"offset\": %" PRIu64, e->offset);
		}
		printf("}");
	} else if (e->data && e->has_offset) {
		printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
		       e->offset, e->file);
	}
}

static int cmd_map(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{"start-offset", required_argument, NULL, 's'},
		{"max-length", required_argument, NULL, 'l'},
		{0},
	};
	struct img_common co = {0};
	struct map_entry cur = {0}, next;
	struct block_node *bs;
	uint64_t off = 0, end, maxlen = UINT64_MAX;
	bool json, have = false, first = true;
	int c, r = 0;

	while ((c = getopt_long(argc, argv, "hf:U", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 1);
		switch (c) {
		case 's':
			if (parse_size_arg(optarg, &off) < 0) {
				return 1;
			}
			break;
		case 'l':
			if (parse_size_arg(optarg, &maxlen) < 0) {
				return 1;
			}
			break;
		default:
			return 1;
		}
	}
	json = co.json;
	if (optind + 1 != argc) {
		img_error("map: expected one FILENAME");
		return 1;
	}
	if (img_open(&bs, argv[optind], co.fmt, co.flags) < 0) {
		return 1;
	}
	end = block_length(bs);
	if (maxlen < end && off < end - maxlen) {
		end = off + maxlen;
	}
	if (!json) {
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	}
	while (off < end) {
		r = map_lookup(bs, off, end - off, &next);
		if (r < 0) {
			img_error("could not read the map of '%s' at %" PRIu64 ": %s", argv[optind],
				  off, strerror(-r));
			break;
		}
		if (have && map_mergeable(&cur, &next)) {
			cur.length += next.length;
		} else {
			if (have) {
				map_print(&cur, json, first);
				first = false;
			}
			cur = next;
			have = true;
		}
		off += next.length;
	}
	if (have && r == 0) {
		map_print(&cur, json, first);
		first = false;
	}
	if (json) {
		printf(first ? "[]\n" : "]\n");
	}
	block_unref(bs);
	return r < 0 ? 1 : 0;
}

/* ---- convert ---- */

static bool buf_is_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i]) {
			return false;
		}
	}
	return true;
}

/* The cluster size of a qcow2 target (for -c), from its info object. */
static uint64_t cluster_size_of(struct block_node *bs)
{
	json_t *info = block_info_json(bs);
	json_int_t cs =
		json_integer_value(json_object_get(json_object_get(info, "image"), "cluster-size"));

	json_decref(info);
	return cs > 0 && IS_POWER_OF_2((uint64_t)cs) ? (uint64_t)cs : 65536;
}

/*
 * Write @len bytes at @off, skipping runs of @min_sparse zero bytes
 * (left unallocated; the target reads zeroes there unless @need_zero).
 */
static int write_sparse(struct block_node *dst, uint64_t off, const char *buf, uint64_t len,
			uint64_t min_sparse, bool need_zero)
{
	uint64_t pos = 0;
	int r;

	if (!min_sparse) {
		return block_pwrite(dst, off, buf, len);
	}
	while (pos < len) {
		uint64_t n = MIN(min_sparse, len - pos);
		bool zero = buf_is_zero(buf + pos, n);
		uint64_t run = n;

		while (pos + run < len) {
			uint64_t m = MIN(min_sparse, len - pos - run);

			if (buf_is_zero(buf + pos + run, m) != zero) {
				break;
			}
			run += m;
		}
		if (!zero) {
			r = block_pwrite(dst, off + pos, buf + pos, run);
		} else if (need_zero) {
			r = block_write_zeroes(dst, off + pos, run, BLOCK_ZERO_MAY_UNMAP);
		} else {
			r = 0;
		}
		if (r < 0) {
			return r;
		}
		pos += run;
	}
	return 0;
}

/*
 * One convert run, shared by its worker threads (-m N): a worker claims the
 * next range under @lock (its allocation status decides the range), reads
 * it without the lock and writes it; without -W writes happen in claim
 * order (@write_seq), as qemu-img does, so the target grows front to back.
 */
struct convert_job {
	struct block_node *src, *dst;
	uint64_t size, min_sparse, cluster;
	bool compress, need_zero, prog, in_order;
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t turn;
	uint64_t next_off, done, claim_seq, write_seq;
	int err;
	uint64_t err_off;
};

enum convert_kind {
	CONVERT_ZERO,
	CONVERT_DATA,
	CONVERT_CLUSTER
};

/* Claim the next range; false when the job is over. Called with job->lock held. */
static bool convert_claim(struct convert_job *job, uint64_t *off, uint64_t *n,
			  enum convert_kind *kind, uint64_t *seq)
{
	uint64_t pnum;
	unsigned status;
	int r;

	if (job->err || job->next_off >= job->size) {
		return false;
	}
	*off = job->next_off;
	r = block_get_status(job->src, *off, MIN(job->size - *off, (uint64_t)IMG_CHUNK), &pnum,
			     &status, NULL);
	if (r < 0) {
		job->err = r;
		job->err_off = *off;
		return false;
	}
	if (job->compress) {
		/* whole clusters: one status covering part of a cluster is not enough */
		*n = MIN(ALIGN_DOWN(*off, job->cluster) + job->cluster, job->size) - *off;
		*kind = (status & BLOCK_STATUS_ZERO) && !(status & BLOCK_STATUS_DATA) && pnum >= *n
				? CONVERT_ZERO
				: CONVERT_CLUSTER;
	} else {
		*n = pnum;
		*kind = (status & BLOCK_STATUS_ZERO) && !(status & BLOCK_STATUS_DATA)
				? CONVERT_ZERO
				: CONVERT_DATA;
	}
	job->next_off = *off + *n;
	*seq = job->claim_seq++;
	return true;
}

static int convert_write(struct convert_job *job, uint64_t off, uint64_t n, enum convert_kind kind,
			 const char *buf)
{
	int r;

	switch (kind) {
	case CONVERT_ZERO:
		return job->need_zero ? block_write_zeroes(job->dst, off, n, BLOCK_ZERO_MAY_UNMAP)
				      : 0;
	case CONVERT_CLUSTER:
		if (buf_is_zero(buf, n)) {
			return job->need_zero
				       ? block_write_zeroes(job->dst, off, n, BLOCK_ZERO_MAY_UNMAP)
				       : 0;
		}
		r = block_pwrite_compressed(job->dst, off, buf, n);
		if (r == -ENOTSUP || r == -EINVAL) {
			/* a cluster that does not compress is written plainly */
			r = block_pwrite(job->dst, off, buf, n);
		}
		return r;
	default:
		return write_sparse(job->dst, off, buf, n, job->min_sparse, job->need_zero);
	}
}

static void *convert_worker(void *arg)
{
	struct convert_job *job = arg;
	char *buf = aligned_alloc(4096, MAX((uint64_t)IMG_CHUNK, job->cluster));
	enum convert_kind kind;
	uint64_t off, n, seq;
	int r;

	pthread_mutex_lock(&job->lock);
	if (!buf && !job->err) {
		job->err = -ENOMEM;
	}
	while (buf && convert_claim(job, &off, &n, &kind, &seq)) {
		pthread_mutex_unlock(&job->lock);
		r = kind == CONVERT_ZERO ? 0 : block_pread(job->src, off, buf, n);
		pthread_mutex_lock(&job->lock);
		while (job->in_order && job->write_seq != seq) {
			pthread_cond_wait(&job->turn, &job->lock);
		}
		pthread_mutex_unlock(&job->lock);
		if (r == 0 && !__atomic_load_n(&job->err, __ATOMIC_RELAXED)) {
			r = convert_write(job, off, n, kind, buf);
		}
		pthread_mutex_lock(&job->lock);
		if (r < 0 && !job->err) {
			job->err = r;
			job->err_off = off;
		}
		job->done += n;
		job->write_seq++;
		pthread_cond_broadcast(&job->turn);
		progress(job->prog, job->done, job->size);
	}
	pthread_mutex_unlock(&job->lock);
	free(buf);
	return NULL;
}

/* Copy @src into @dst with @workers threads; 0 or -errno (*ret_off: where it failed). */
static int convert_run(struct convert_job *job, unsigned workers, uint64_t *ret_off)
{
	pthread_t tids[16];
	unsigned started = 0;

	pthread_mutex_init(&job->lock, NULL);
	pthread_cond_init(&job->turn, NULL);
	for (; started < workers; started++) {
		if (started > 0 && pthread_create(&tids[started], NULL, convert_worker, job) != 0) {
			break; /* fewer threads is slower, not wrong */
		}
	}
	convert_worker(job);
	for (unsigned i = 1; i < started; i++) {
		pthread_join(tids[i], NULL);
	}
	pthread_cond_destroy(&job->turn);
	pthread_mutex_destroy(&job->lock);
	*ret_off = job->err_off;
	return job->err;
}

static int cmd_convert(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{0},
	};
	struct img_common co = {0};
	const char *out_fmt = "raw", *src_name, *dst_name;
	const char *cache = "unsafe", *src_cache = "writeback";
	struct convert_job job = {.min_sparse = 4096};
	struct block_node *src = NULL, *dst = NULL;
	json_t *o = json_object();
	uint64_t size, err_off = 0;
	unsigned src_flags, dst_flags = 0, cflags, workers = 1;
	bool compress = false, prog = false, no_create = false, out_of_order = false, need_zero;
	char *end;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:O:co:pnS:t:T:UqWm:", opts, NULL)) != -1) {
		switch (img_common_opt(c, &co)) {
		case IMG_OPT_DONE:
			continue;
		case IMG_OPT_HELP:
			r = 0;
			goto out;
		case IMG_OPT_ERROR:
			goto out;
		}
		switch (c) {
		case 'O':
			out_fmt = optarg;
			break;
		case 'c':
			compress = true;
			break;
		case 'o':
			if (has_help_option(optarg)) {
				json_decref(o);
				return print_create_help(out_fmt, argc - optind >= 2);
			}
			if (parse_o(o, optarg) < 0) {
				goto out;
			}
			break;
		case 'p':
			prog = true;
			break;
		case 'n':
			no_create = true;
			break;
		case 'S':
			if (parse_size_arg(optarg, &job.min_sparse) < 0) {
				goto out;
			}
			break;
		case 't':
			cache = optarg;
			break;
		case 'T':
			src_cache = optarg;
			break;
		case 'W':
			out_of_order = true;
			break;
		case 'm':
			workers = (unsigned)strtoul(optarg, &end, 10);
			if (*end || !*optarg || workers < 1 || workers > 16) {
				img_error("Invalid number of coroutines. Allowed number of "
					  "coroutines "
					  "is between 1 and 16");
				goto out;
			}
			break;
		default:
			goto out;
		}
	}
	if (argc - optind != 2) {
		img_error("convert: expected SOURCE TARGET (one source image)");
		goto out;
	}
	if (co.quiet) {
		prog = false;
	}
	src_name = argv[optind];
	dst_name = argv[optind + 1];
	if (compress && strcmp(out_fmt, "qcow2") != 0) {
		img_error("compression (-c) needs a qcow2 target (-O qcow2)");
		goto out;
	}
	if (job.min_sparse % IMG_SECTOR) {
		img_error("-S must be a multiple of %d", IMG_SECTOR);
		goto out;
	}
	if (img_cache_flags(src_cache, &cflags) < 0) {
		goto out;
	}
	src_flags = co.flags | cflags;
	if (img_cache_flags(cache, &cflags) < 0) {
		goto out;
	}
	dst_flags |= cflags | BLOCK_O_RDWR;
	r = img_open(&src, src_name, co.fmt, src_flags);
	if (r < 0) {
		goto out;
	}
	size = block_length(src);
	/* zero ranges must be written unless the target is new and reads zeroes there */
	need_zero = no_create || json_object_get(o, "backing_file");
	if (!no_create) {
		r = img_create(dst_name, out_fmt, size, o, true);
		if (r < 0) {
			goto out;
		}
	}
	r = img_open(&dst, dst_name, out_fmt, dst_flags | (need_zero ? 0 : BLOCK_O_NO_BACKING));
	if (r < 0) {
		goto out;
	}
	if (block_length(dst) < size) {
		img_error("target '%s' is smaller (%" PRIu64 " bytes) than the source (%" PRIu64
			  " bytes)",
			  dst_name, block_length(dst), size);
		r = -EINVAL;
		goto out;
	}
	job.src = src;
	job.dst = dst;
	job.size = size;
	job.compress = compress;
	job.cluster = compress ? cluster_size_of(dst) : 0;
	job.need_zero = need_zero;
	job.prog = prog;
	job.in_order = !out_of_order || compress; /* -W -c: qemu-img too writes in order */
	progress(prog, 0, size);
	r = convert_run(&job, workers, &err_off);
	if (r < 0) {
		img_error("error while converting '%s' to '%s' at offset %" PRIu64 ": %s", src_name,
			  dst_name, err_off, strerror(-r));
		goto out;
	}
	r = block_flush(dst);
	if (r < 0) {
		img_error("could not flush '%s': %s", dst_name, strerror(-r));
		goto out;
	}
	progress_end(prog);
out:
	block_unref(dst);
	block_unref(src);
	json_decref(o);
	return r < 0 ? 1 : 0;
}

/* ---- compare ---- */

/* Index of the first differing 512-byte sector, or -1. */
static int64_t first_diff(const char *a, const char *b, uint64_t len)
{
	for (uint64_t i = 0; i < len; i += IMG_SECTOR) {
		uint64_t n = MIN((uint64_t)IMG_SECTOR, len - i);

		if (memcmp(a + i, b + i, n) != 0) {
			return (int64_t)i;
		}
	}
	return -1;
}

static int64_t first_nonzero(const char *a, uint64_t len)
{
	for (uint64_t i = 0; i < len; i += IMG_SECTOR) {
		if (!buf_is_zero(a + i, MIN((uint64_t)IMG_SECTOR, len - i))) {
			return (int64_t)i;
		}
	}
	return -1;
}

static bool range_is_zero(struct block_node *bs, uint64_t off, uint64_t len, uint64_t *ret_pnum)
{
	unsigned status;

	if (block_get_status(bs, off, len, ret_pnum, &status, NULL) < 0) {
		*ret_pnum = len;
		return false;
	}
	return (status & BLOCK_STATUS_ZERO) && !(status & BLOCK_STATUS_DATA);
}

static int cmd_compare(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{0},
	};
	struct img_common co = {0};
	const char *fmt1, *fmt2 = NULL;
	struct block_node *a = NULL, *b = NULL, *big;
	uint64_t len_a, len_b, common, off = 0;
	unsigned flags;
	bool strict = false, prog = false, quiet;
	char *ba = NULL, *bb = NULL;
	int c, ret = 2;

	while ((c = getopt_long(argc, argv, "hf:F:spqT:U", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 2);
		switch (c) {
		case 'F':
			fmt2 = optarg;
			break;
		case 's':
			strict = true;
			break;
		case 'p':
			prog = true;
			break;
		case 'T':
			break; /* the cache mode does not change what compare reads */
		default:
			return 2;
		}
	}
	fmt1 = co.fmt;
	flags = co.flags;
	quiet = co.quiet;
	if (argc - optind != 2) {
		img_error("compare: expected FILENAME1 FILENAME2");
		return 2;
	}
	if (quiet) {
		prog = false;
	}
	if (img_open(&a, argv[optind], fmt1, flags) < 0 ||
	    img_open(&b, argv[optind + 1], fmt2, flags) < 0) {
		goto out;
	}
	len_a = block_length(a);
	len_b = block_length(b);
	if (len_a != len_b) {
		if (strict) {
			if (!quiet) {
				printf("Strict mode: Image size mismatch!\n");
			}
			ret = 1;
			goto out;
		}
		if (!quiet) {
			fprintf(stderr, "Warning: Image size mismatch!\n");
		}
	}
	common = MIN(len_a, len_b);
	ba = aligned_alloc(4096, IMG_CHUNK);
	bb = aligned_alloc(4096, IMG_CHUNK);
	if (!ba || !bb) {
		goto out;
	}
	progress(prog, 0, MAX(len_a, len_b));
	while (off < common) {
		uint64_t n = MIN((uint64_t)IMG_CHUNK, common - off), pa, pb;
		int64_t d;

		if (!strict && range_is_zero(a, off, n, &pa) && range_is_zero(b, off, n, &pb)) {
			off += MIN(pa, pb);
			continue;
		}
		if (block_pread(a, off, ba, n) < 0 || block_pread(b, off, bb, n) < 0) {
			img_error("error while reading at offset %" PRIu64, off);
			goto out;
		}
		d = first_diff(ba, bb, n);
		if (d >= 0) {
			if (!quiet) {
				printf("Content mismatch at offset %" PRIu64 "!\n",
				       off + (uint64_t)d);
			}
			ret = 1;
			goto out;
		}
		off += n;
		progress(prog, off, MAX(len_a, len_b));
	}
	big = len_a > len_b ? a : b;
	while (off < MAX(len_a, len_b)) {
		uint64_t n = MIN((uint64_t)IMG_CHUNK, MAX(len_a, len_b) - off), p;
		int64_t d;

		if (range_is_zero(big, off, n, &p)) {
			off += p;
			continue;
		}
		if (block_pread(big, off, ba, n) < 0) {
			img_error("error while reading at offset %" PRIu64, off);
			goto out;
		}
		d = first_nonzero(ba, n);
		if (d >= 0) {
			if (!quiet) {
				printf("Content mismatch at offset %" PRIu64 "!\n",
				       off + (uint64_t)d);
			}
			ret = 1;
			goto out;
		}
		off += n;
	}
	progress_end(prog);
	if (!quiet) {
		printf("Images are identical.\n");
	}
	ret = 0;
out:
	free(ba);
	free(bb);
	block_unref(a);
	block_unref(b);
	return ret;
}

/* ---- snapshot ---- */

static int cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{0},
	};
	struct img_common co = {0};
	const char *name = NULL;
	struct block_node *bs;
	struct error *err = NULL;
	unsigned flags;
	int c, action = 0, r;

	while ((c = getopt_long(argc, argv, "hf:la:c:d:qU", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 1);
		switch (c) {
		case 'l':
		case 'a':
		case 'c':
		case 'd':
			if (action) {
				img_error("snapshot: give only one of -l, -a, -c, -d");
				return 1;
			}
			action = c;
			name = optarg;
			break;
		default:
			return 1;
		}
	}
	flags = co.flags;
	if (optind + 1 != argc) {
		img_error("snapshot: expected one FILENAME");
		return 1;
	}
	if (!action) {
		action = 'l';
	}
	if (action != 'l') {
		flags = BLOCK_O_RDWR;
	}
	if (img_open(&bs, argv[optind], co.fmt, flags | BLOCK_O_NO_BACKING) < 0) {
		return 1;
	}
	switch (action) {
	case 'l': {
		json_t *list = block_snapshot_list(bs, &err);

		r = list ? 0 : -EIO;
		if (json_array_size(list) > 0) {
			printf("Snapshot list:\n");
			print_snapshot_table(list);
		}
		json_decref(list);
		break;
	}
	case 'c':
		r = block_snapshot_create(bs, name, &err);
		break;
	case 'a':
		r = block_snapshot_apply(bs, name, &err);
		break;
	default:
		r = block_snapshot_delete(bs, name, &err);
		break;
	}
	block_unref(bs);
	if (r < 0) {
		report(err, r);
		return 1;
	}
	return 0;
}

/* ---- resize ---- */

static int cmd_resize(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{"shrink", no_argument, NULL, 'S'},
		{0},
	};
	struct img_common co = {0};
	const char *arg;
	struct block_node *bs;
	struct error *err = NULL;
	uint64_t cur, val, size;
	bool shrink = false;
	int c, r, sign = 0;

	/* "-1G" is a size, not an option: stop at the second operand */
	while ((c = getopt_long(argc, argv, "+hf:q", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 1);
		switch (c) {
		case 'S':
			shrink = true;
			break;
		default:
			return 1;
		}
	}
	if (argc - optind != 2) {
		img_error("resize: expected FILENAME [+|-]SIZE");
		return 1;
	}
	arg = argv[optind + 1];
	if (*arg == '+' || *arg == '-') {
		sign = *arg == '+' ? 1 : -1;
		arg++;
	}
	if (parse_size_arg(arg, &val) < 0) {
		return 1;
	}
	if (img_open(&bs, argv[optind], co.fmt, BLOCK_O_RDWR) < 0) {
		return 1;
	}
	cur = block_length(bs);
	if (sign > 0) {
		size = cur + val;
	} else if (sign < 0) {
		if (val > cur) {
			img_error("cannot shrink '%s' below 0 bytes", argv[optind]);
			block_unref(bs);
			return 1;
		}
		size = cur - val;
	} else {
		size = val;
	}
	if (size < cur && !shrink) {
		/* qemu-img's two lines */
		img_error("Use the --shrink option to perform a shrink operation.");
		img_error("warning: Shrinking an image will delete all data beyond the shrunken "
			  "image's end. Before performing such an operation, make sure there is no "
			  "important data there.");
		block_unref(bs);
		return 1;
	}
	r = block_truncate(bs, size, &err);
	block_unref(bs);
	if (r < 0) {
		report(err, r);
		return 1;
	}
	if (!co.quiet) {
		printf("Image resized.\n");
	}
	return 0;
}

/* ---- rebase ---- */

static int cmd_rebase(int argc, char **argv)
{
	static const struct option opts[] = {IMG_LONG_OPTS, {0}};
	struct img_common co = {0};
	const char *fmt, *backing = NULL, *bfmt = NULL;
	struct block_node *bs = NULL, *nb = NULL;
	struct error *err = NULL;
	bool unsafe = false, prog = false;
	char *bo = NULL, *bn = NULL;
	uint64_t size, off = 0, nsize = 0;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:b:F:upqt:T:U", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 1);
		switch (c) {
		case 'b':
			backing = optarg;
			break;
		case 'F':
			bfmt = optarg;
			break;
		case 'u':
			unsafe = true;
			break;
		case 'p':
			prog = true;
			break;
		case 't':
		case 'T':
			break;
		default:
			return 1;
		}
	}
	fmt = co.fmt;
	if (optind + 1 != argc || !backing) {
		img_error(
			"rebase: expected -b BACKING FILENAME (-b \"\" removes the backing file)");
		return 1;
	}
	if (*backing && !bfmt) {
		img_error("rebase: give the new backing file's format with -F");
		return 1;
	}
	if (unsafe) {
		if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR | BLOCK_O_NO_BACKING) < 0) {
			return 1;
		}
		r = block_change_backing(bs, *backing ? backing : NULL, *backing ? bfmt : NULL,
					 &err);
		goto out;
	}
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR) < 0) {
		return 1;
	}
	if (*backing) {
		/* a relative backing name is relative to the image's directory */
		char *path = backing_path(argv[optind], backing);

		r = img_open(&nb, path ? path : backing, bfmt, 0);
		free(path);
		if (r < 0) {
			goto out;
		}
		nsize = block_length(nb);
	}
	size = block_length(bs);
	bo = aligned_alloc(4096, IMG_CHUNK);
	bn = aligned_alloc(4096, IMG_CHUNK);
	if (!bo || !bn) {
		r = -ENOMEM;
		goto out;
	}
	progress(prog, 0, size);
	while (off < size) {
		uint64_t pnum;
		unsigned status;

		r = block_get_status(bs, off, MIN(size - off, (uint64_t)IMG_CHUNK), &pnum, &status,
				     NULL);
		if (r < 0) {
			goto out_io;
		}
		if (!(status & BLOCK_STATUS_ALLOCATED)) {
			/* the old backing shows through here: keep what it shows */
			r = block_pread(bs, off, bo, pnum);
			if (r < 0) {
				goto out_io;
			}
			memset(bn, 0, pnum);
			if (nb && off < nsize) {
				r = block_pread(nb, off, bn, MIN(pnum, nsize - off));
				if (r < 0) {
					goto out_io;
				}
			}
			for (uint64_t i = 0; i < pnum; i += 65536) {
				uint64_t n = MIN((uint64_t)65536, pnum - i);

				if (memcmp(bo + i, bn + i, n) != 0) {
					r = block_pwrite(bs, off + i, bo + i, n);
					if (r < 0) {
						goto out_io;
					}
				}
			}
		}
		off += pnum;
		progress(prog, off, size);
	}
	r = block_change_backing(bs, *backing ? backing : NULL, *backing ? bfmt : NULL, &err);
	if (r == 0) {
		progress_end(prog);
	}
	goto out;
out_io:
	img_error("error while rebasing '%s' at offset %" PRIu64 ": %s", argv[optind], off,
		  strerror(-r));
	free(bo);
	free(bn);
	block_unref(nb);
	block_unref(bs);
	return 1;
out:
	free(bo);
	free(bn);
	block_unref(nb);
	block_unref(bs);
	if (r < 0) {
		if (err) {
			report(err, r);
		}
		return 1;
	}
	return 0;
}

/* ---- commit ---- */

static int cmd_commit(int argc, char **argv)
{
	static const struct option opts[] = {IMG_LONG_OPTS, {0}};
	struct img_common co = {0};
	const char *fmt, *base_name = NULL;
	struct block_node *bs = NULL, *base = NULL;
	char *backing = NULL, *bfmt = NULL, *buf = NULL;
	bool drop = false, prog = false, quiet;
	uint64_t size, off = 0;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:b:dpqt:", opts, NULL)) != -1) {
		IMG_COMMON_OPT(c, &co, 1);
		switch (c) {
		case 'b':
			base_name = optarg;
			break;
		case 'd':
			drop = true;
			break;
		case 'p':
			prog = true;
			break;
		case 't':
			break;
		default:
			return 1;
		}
	}
	fmt = co.fmt;
	quiet = co.quiet;
	if (optind + 1 != argc) {
		img_error("commit: expected one FILENAME");
		return 1;
	}
	/* learn the backing file's name and format */
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_NO_LOCK) < 0) {
		return 1;
	}
	if (!bs->backing) {
		img_error("'%s' has no backing file to commit into", argv[optind]);
		block_unref(bs);
		return 1;
	}
	backing = strdup(bs->backing->filename);
	bfmt = strdup(bs->backing->drv->name);
	block_unref(bs);
	bs = NULL;
	if (!backing || !bfmt) {
		r = -ENOMEM;
		goto out;
	}
	if (base_name && strcmp(base_name, backing) != 0) {
		img_error("commit: only the immediate backing file '%s' can be the base", backing);
		goto out;
	}
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR | BLOCK_O_NO_BACKING | BLOCK_O_UNMAP) <
		    0 ||
	    img_open(&base, backing, bfmt, BLOCK_O_RDWR) < 0) {
		goto out;
	}
	size = block_length(bs);
	if (block_length(base) < size) {
		struct error *err = NULL;

		r = block_truncate(base, size, &err);
		if (r < 0) {
			report(err, r);
			goto out;
		}
	}
	buf = aligned_alloc(4096, IMG_CHUNK);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	progress(prog, 0, size);
	while (off < size) {
		uint64_t pnum;
		unsigned status;

		r = block_get_status(bs, off, MIN(size - off, (uint64_t)IMG_CHUNK), &pnum, &status,
				     NULL);
		if (r < 0) {
			break;
		}
		if (status & BLOCK_STATUS_ALLOCATED) {
			if ((status & BLOCK_STATUS_ZERO) && !(status & BLOCK_STATUS_DATA)) {
				r = block_write_zeroes(base, off, pnum, 0);
			} else {
				r = block_pread(bs, off, buf, pnum);
				if (r == 0) {
					r = block_pwrite(base, off, buf, pnum);
				}
			}
			if (r < 0) {
				break;
			}
		}
		off += pnum;
		progress(prog, off, size);
	}
	if (r == 0) {
		r = block_flush(base);
	}
	if (r < 0) {
		img_error("error while committing '%s' into '%s' at offset %" PRIu64 ": %s",
			  argv[optind], backing, off, strerror(-r));
		goto out;
	}
	if (!drop) {
		/* empty the overlay: its clusters now live in the base */
		r = block_discard(bs, 0, size);
		if (r < 0) {
			img_error("committed, but could not empty '%s': %s", argv[optind],
				  strerror(-r));
			goto out;
		}
	}
	progress_end(prog);
	if (!quiet) {
		printf("Image committed.\n");
	}
out:
	free(buf);
	free(backing);
	free(bfmt);
	block_unref(base);
	block_unref(bs);
	return r < 0 ? 1 : 0;
}

/* ---- measure ---- */

/* qcow2's refcount table and blocks for @clusters clusters (they count themselves). */
static uint64_t qcow2_refcount_meta(uint64_t clusters, uint64_t cs, unsigned refcount_bits)
{
	uint64_t per_table = cs / 8, per_block = cs * 8 / refcount_bits;
	uint64_t table = 0, blocks = 0, n = 0, last;

	do {
		last = n;
		blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
		table = DIV_ROUND_UP(blocks, per_table);
		n = clusters + blocks + table;
	} while (n != last);
	return (blocks + table) * cs;
}

/* File size of a fully allocated qcow2 image of @size bytes (qemu's formula). */
static uint64_t qcow2_full_size(uint64_t size, uint64_t cs, unsigned refcount_bits)
{
	uint64_t aligned = ALIGN_UP(size, cs), meta = cs; /* the header cluster */
	uint64_t nl2e = ALIGN_UP(aligned / cs, cs / 8), nl1e;

	meta += nl2e * 8;
	nl1e = ALIGN_UP(nl2e * 8 / cs, cs / 8);
	meta += nl1e * 8;
	meta += qcow2_refcount_meta((meta + aligned) / cs, cs, refcount_bits);
	return meta + aligned;
}

/* Bytes of whole clusters holding data anywhere in @bs's chain. */
static int measure_data(struct block_node *bs, uint64_t cs, uint64_t *ret)
{
	uint64_t size = block_length(bs), off = 0, total = 0;
	struct map_entry e;
	int r;

	while (off < size) {
		r = map_lookup(bs, off, size - off, &e);
		if (r < 0) {
			return r;
		}
		if (!e.zero && e.data) {
			/* whole clusters: count up to the end of the last one touched */
			e.length = ALIGN_UP(off + e.length, cs) - off;
			total += off % cs + e.length;
		}
		off += e.length;
	}
	*ret = total;
	return 0;
}

static int cmd_measure(int argc, char **argv)
{
	static const struct option opts[] = {
		IMG_LONG_OPTS,
		{"size", required_argument, NULL, 's'},
		{0},
	};
	struct img_common co = {0};
	const char *out_fmt = "raw", *v;
	struct block_node *bs = NULL;
	uint64_t size = 0, cs = 65536, data = 0, full, required;
	unsigned refcount_bits = 16;
	bool have_size = false, prealloc_data = false, bitmaps = false;
	json_t *o = json_object(), *res;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:O:o:l:U", opts, NULL)) != -1) {
		switch (img_common_opt(c, &co)) {
		case IMG_OPT_DONE:
			continue;
		case IMG_OPT_HELP:
			r = 0;
			goto out;
		case IMG_OPT_ERROR:
			goto out;
		}
		switch (c) {
		case 'O':
			out_fmt = optarg;
			break;
		case 'o':
			if (parse_o(o, optarg) < 0) {
				goto out;
			}
			break;
		case 's':
			if (parse_size_arg(optarg, &size) < 0) {
				goto out;
			}
			have_size = true;
			break;
		case 'l':
			img_error("measure: -l (a snapshot as the source) is not supported");
			goto out;
		default:
			goto out;
		}
	}
	if (have_size && optind < argc) {
		img_error("--size N cannot be used together with a filename.");
		goto out;
	}
	if (!have_size && argc - optind != 1) {
		img_error("Either --size N or one filename must be specified.");
		goto out;
	}
	if (strcmp(out_fmt, "raw") != 0 && strcmp(out_fmt, "qcow2") != 0) {
		img_error("Unknown file format '%s'", out_fmt);
		goto out;
	}
	if ((v = json_string_value(json_object_get(o, "cluster_size"))) &&
	    (parse_size(v, &cs) < 0 || cs < 512 || cs > (2u << 20) || !IS_POWER_OF_2(cs))) {
		img_error("Cluster size must be a power of two between 512 and 2048k");
		goto out;
	}
	if ((v = json_string_value(json_object_get(o, "refcount_bits")))) {
		refcount_bits = (unsigned)strtoul(v, NULL, 10);
		if (refcount_bits < 1 || refcount_bits > 64 || !IS_POWER_OF_2(refcount_bits)) {
			img_error(
				"Refcount width must be a power of two and may not exceed 64 bits");
			goto out;
		}
	}
	v = json_string_value(json_object_get(o, "preallocation"));
	prealloc_data = v && (strcmp(v, "full") == 0 || strcmp(v, "falloc") == 0);
	if (!have_size) {
		r = img_open(&bs, argv[optind], co.fmt, co.flags);
		if (r < 0) {
			goto out;
		}
		size = block_length(bs);
		bitmaps = strcmp(block_format(bs), "qcow2") == 0;
		r = measure_data(bs, strcmp(out_fmt, "qcow2") == 0 ? cs : 1, &data);
		if (r < 0) {
			img_error("could not read the allocation of '%s': %s", argv[optind],
				  strerror(-r));
			goto out;
		}
	}
	if (strcmp(out_fmt, "raw") == 0) {
		full = required = size;
		bitmaps = false;
	} else {
		full = qcow2_full_size(size, cs, refcount_bits);
		required = full - ALIGN_UP(size, cs) + (prealloc_data ? ALIGN_UP(size, cs) : data);
	}
	if (co.json) {
		res = json_object();
		if (bitmaps) {
			json_object_set_new(res, "bitmaps", json_integer(0));
		}
		json_object_set_new(res, "required", json_integer((json_int_t)required));
		json_object_set_new(res, "fully-allocated", json_integer((json_int_t)full));
		print_json(res);
	} else {
		printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", required,
		       full);
		if (bitmaps) {
			printf("bitmaps size: 0\n");
		}
	}
	r = 0;
out:
	block_unref(bs);
	json_decref(o);
	return r < 0 ? 1 : 0;
}

/* ---- amend ---- */

/*
 * The qcow2 options vmm-img can change in place: the backing file's name
 * and format (recorded only, as qemu-img amend does), the size, compat
 * (0.10/v2, 1.1/v3), lazy_refcounts and refcount_bits (the format driver's
 * amend, block_amend). Other qcow2 options are refused by name,
 * creation-only ones as qemu-img does.
 */
static int cmd_amend(int argc, char **argv)
{
	static const struct option opts[] = {IMG_LONG_OPTS, {0}};
	static const char *const creation_only[] = {
		"cluster_size", "preallocation",    "extended_l2",     "encryption",
		"nocow",	"extent_size_hint", "compression_type"};
	struct img_common co = {0};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	const char *key, *bf = NULL, *bfmt = NULL;
	json_t *o = json_object(), *v, *fmt_opts = json_object();
	uint64_t size = 0;
	bool have_o = false, have_size = false;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:o:pqt:", opts, NULL)) != -1) {
		switch (img_common_opt(c, &co)) {
		case IMG_OPT_DONE:
			continue;
		case IMG_OPT_HELP:
			r = 0;
			goto out;
		case IMG_OPT_ERROR:
			goto out;
		}
		switch (c) {
		case 'o':
			if (has_help_option(optarg)) {
				printf("Amend options for 'qcow2':\n");
				printf("  %-22s - %s\n", "backing_file=<str>",
				       "File name of a base image");
				printf("  %-22s - %s\n", "backing_fmt=<str>",
				       "Image format of the base image");
				printf("  %-22s - %s\n", "compat=<str>",
				       "Compatibility level (v2 [0.10] or v3 [1.1])");
				printf("  %s - %s\n", "lazy_refcounts=<bool (on/off)>",
				       "Postpone refcount updates");
				printf("  %-22s - %s\n", "refcount_bits=<num>",
				       "Width of a reference count entry in bits");
				printf("  %-22s - %s\n", "size=<size>", "Virtual disk size");
				r = 0;
				goto out;
			}
			if (parse_o(o, optarg) < 0) {
				goto out;
			}
			have_o = true;
			break;
		case 'p':
		case 't':
			break;
		default:
			goto out;
		}
	}
	if (!have_o) {
		img_error("Must specify options (-o)");
		goto out;
	}
	if (argc - optind != 1) {
		img_error("Expecting one image file name");
		goto out;
	}
	json_object_foreach (o, key, v) {
		const char *val = json_string_value(v);

		for (size_t i = 0; i < ARRAY_SIZE(creation_only); i++) {
			if (strcmp(key, creation_only[i]) == 0) {
				img_error("Invalid parameter '%s'", key);
				fprintf(stderr,
					"This option is only supported for image creation\n");
				goto out;
			}
		}
		if (strcmp(key, "backing_file") == 0) {
			bf = val;
		} else if (strcmp(key, "backing_fmt") == 0) {
			bfmt = val;
		} else if (strcmp(key, "size") == 0) {
			if (parse_size_arg(val, &size) < 0) {
				goto out;
			}
			have_size = true;
		} else if (strcmp(key, "compat") == 0 || strcmp(key, "lazy_refcounts") == 0 ||
			   strcmp(key, "refcount_bits") == 0) {
			json_object_set(fmt_opts, key, v);
		} else {
			img_error("amending '%s' is not supported by vmm-img (it amends "
				  "backing_file, backing_fmt, size, compat, lazy_refcounts and "
				  "refcount_bits)",
				  key);
			goto out;
		}
	}
	r = img_open(&bs, argv[optind], co.fmt, BLOCK_O_RDWR | BLOCK_O_NO_BACKING);
	if (r < 0) {
		goto out;
	}
	if (strcmp(block_format(bs), "qcow2") != 0) {
		img_error("Format driver '%s' does not support option amendment", block_format(bs));
		r = -ENOTSUP;
		goto out;
	}
	if (bf || bfmt) {
		json_t *info = block_info_json(bs), *img = json_object_get(info, "image");
		const char *cur_bf = json_string_value(json_object_get(img, "backing-filename"));
		const char *cur_fmt =
			json_string_value(json_object_get(img, "backing-filename-format"));

		if (!bf) {
			bf = cur_bf;
		}
		if (!bfmt) {
			bfmt = cur_fmt;
		}
		r = bf ? block_change_backing(bs, bf, bfmt, &err) : 0;
		json_decref(info);
		if (r < 0) {
			report(err, r);
			goto out;
		}
	}
	if (have_size) {
		r = block_truncate(bs, size, &err);
		if (r < 0) {
			report(err, r);
			goto out;
		}
	}
	if (json_object_size(fmt_opts)) {
		r = block_amend(bs, fmt_opts, &err);
		if (r < 0) {
			report(err, r);
			goto out;
		}
	}
	r = 0;
out:
	block_unref(bs);
	json_decref(fmt_opts);
	json_decref(o);
	return r < 0 ? 1 : 0;
}

/* ---- dd ---- */

static int dd_number(const char *key, const char *val, uint64_t *ret)
{
	if (parse_size(val, ret) < 0) {
		img_error("invalid number: '%s'", val);
		return -EINVAL;
	}
	if (strcmp(key, "bs") == 0 && *ret == 0) {
		img_error("invalid number: '%s'", val);
		return -EINVAL;
	}
	return 0;
}

static int cmd_dd(int argc, char **argv)
{
	static const struct option opts[] = {IMG_LONG_OPTS, {0}};
	struct img_common co = {0};
	const char *out_fmt = "raw", *in = NULL, *out = NULL;
	struct block_node *src = NULL, *dst = NULL;
	uint64_t bs_size = 512, count = UINT64_MAX, skip = 0, in_size, len, off = 0;
	json_t *o = json_object();
	char *buf = NULL;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:O:U", opts, NULL)) != -1) {
		switch (img_common_opt(c, &co)) {
		case IMG_OPT_DONE:
			continue;
		case IMG_OPT_HELP:
			r = 0;
			goto out;
		case IMG_OPT_ERROR:
			goto out;
		}
		if (c == 'O') {
			out_fmt = optarg;
		} else {
			goto out;
		}
	}
	for (int i = optind; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		size_t klen = eq ? (size_t)(eq - argv[i]) : 0;

		if (!eq) {
			img_error("unrecognized operand %s", argv[i]);
			goto out;
		}
		if (klen == 2 && strncmp(argv[i], "if", 2) == 0) {
			in = eq + 1;
		} else if (klen == 2 && strncmp(argv[i], "of", 2) == 0) {
			out = eq + 1;
		} else if (klen == 2 && strncmp(argv[i], "bs", 2) == 0) {
			if (dd_number("bs", eq + 1, &bs_size) < 0) {
				goto out;
			}
		} else if (klen == 5 && strncmp(argv[i], "count", 5) == 0) {
			if (dd_number("count", eq + 1, &count) < 0) {
				goto out;
			}
		} else if (klen == 4 && strncmp(argv[i], "skip", 4) == 0) {
			if (dd_number("skip", eq + 1, &skip) < 0) {
				goto out;
			}
		} else {
			img_error("unrecognized operand %s", argv[i]);
			goto out;
		}
	}
	if (!in || !out) {
		img_error("Must specify both input and output files");
		goto out;
	}
	r = img_open(&src, in, co.fmt, co.flags);
	if (r < 0) {
		goto out;
	}
	in_size = block_length(src);
	if (skip > in_size / bs_size) {
		len = 0;
	} else {
		len = in_size - skip * bs_size;
	}
	if (count != UINT64_MAX && count < len / bs_size + !!(len % bs_size)) {
		len = count * bs_size;
	}
	r = img_create(out, out_fmt, len, o, true);
	if (r < 0) {
		goto out;
	}
	r = img_open(&dst, out, out_fmt, BLOCK_O_RDWR);
	if (r < 0) {
		goto out;
	}
	buf = aligned_alloc(4096, IMG_CHUNK);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (off < len) {
		uint64_t n = MIN((uint64_t)IMG_CHUNK, len - off);

		r = block_pread(src, skip * bs_size + off, buf, n);
		if (r == 0) {
			r = write_sparse(dst, off, buf, n, 4096, false);
		}
		if (r < 0) {
			img_error("error while copying '%s' to '%s' at offset %" PRIu64 ": %s", in,
				  out, off, strerror(-r));
			goto out;
		}
		off += n;
	}
	r = block_flush(dst);
out:
	free(buf);
	block_unref(dst);
	block_unref(src);
	json_decref(o);
	return r < 0 ? 1 : 0;
}

/* ---- bitmap ---- */

/*
 * qemu-img bitmap: the actions run in command-line order on FILENAME's
 * persistent dirty bitmaps (qcow2 version 3); the first failure stops
 * the rest, the earlier ones stay done (as qemu-img). The image is opened
 * with BLOCK_O_BITMAPS: no guest data is written, the bitmaps stay valid.
 */
static void bitmap_bad_option(const char *msg, const char *opt)
{
	img_error("%s '%s'", msg, opt);
	fprintf(stderr, "Try 'vmm-img --help' for more information\n");
}

static int cmd_bitmap(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"add", no_argument, NULL, 'a'},
		{"remove", no_argument, NULL, 'r'},
		{"clear", no_argument, NULL, 'c'},
		{"enable", no_argument, NULL, 'e'},
		{"disable", no_argument, NULL, 'd'},
		{"merge", required_argument, NULL, 'm'},
		{"granularity", required_argument, NULL, 'g'},
		{"source-file", required_argument, NULL, 'b'},
		{"source-format", required_argument, NULL, 'F'},
		{0},
	};
	static const char *const names[] = {
		[BLOCK_BITMAP_ADD] = "add",	    [BLOCK_BITMAP_REMOVE] = "remove",
		[BLOCK_BITMAP_CLEAR] = "clear",	    [BLOCK_BITMAP_ENABLE] = "enable",
		[BLOCK_BITMAP_DISABLE] = "disable", [BLOCK_BITMAP_MERGE] = "merge",
	};
	struct block_bitmap_req *acts = NULL;
	size_t n = 0;
	const char *fmt = NULL, *src_fmt = NULL, *src_file = NULL;
	struct block_node *bs = NULL, *src = NULL;
	uint64_t granularity = 0;
	bool add = false, merge = false;
	int c, rc = 1;

	opterr = 0;
	optind = 0; /* rescan in GNU order: options may follow FILENAME, as in qemu-img */
	while ((c = getopt_long(argc, argv, ":b:f:F:g:h", opts, NULL)) != -1) {
		enum block_bitmap_action a;

		switch (c) {
		case ':':
			bitmap_bad_option("missing argument for option", argv[optind - 1]);
			goto out;
		case '?':
			bitmap_bad_option("unrecognized option", argv[optind - 1]);
			goto out;
		case 'h':
			printf("Usage: vmm-img %s\n", cur_cmd->usage);
			rc = 0;
			goto out;
		case 'b':
			src_file = optarg;
			continue;
		case 'f':
			fmt = optarg;
			continue;
		case 'F':
			src_fmt = optarg;
			continue;
		case 'g':
			if (parse_size(optarg, &granularity) < 0 || granularity > INT64_MAX) {
				img_error(
					"Invalid granularity specified. You may use k, M, G, T, P "
					"or E suffixes for");
				img_error(
					"kilobytes, megabytes, gigabytes, terabytes, petabytes and "
					"exabytes.");
				goto out;
			}
			continue;
		case 'a':
			a = BLOCK_BITMAP_ADD;
			add = true;
			break;
		case 'r':
			a = BLOCK_BITMAP_REMOVE;
			break;
		case 'c':
			a = BLOCK_BITMAP_CLEAR;
			break;
		case 'e':
			a = BLOCK_BITMAP_ENABLE;
			break;
		case 'd':
			a = BLOCK_BITMAP_DISABLE;
			break;
		case 'm':
			a = BLOCK_BITMAP_MERGE;
			merge = true;
			break;
		default:
			goto out;
		}
		if (n >= 4096) {
			img_error("too many actions (at most 4096)");
			goto out;
		}
		{
			struct block_bitmap_req *na = realloc(acts, (n + 1) * sizeof(*na));

			if (!na) {
				img_error("out of memory");
				goto out;
			}
			acts = na;
			acts[n] = (struct block_bitmap_req){.action = a};
			acts[n].src_name = a == BLOCK_BITMAP_MERGE ? optarg : NULL;
			n++;
		}
	}
	if (!n) {
		img_error("Need at least one of --add, --remove, --clear, --enable, --disable, or "
			  "--merge");
		goto out;
	}
	if (granularity && !add) {
		img_error("granularity only supported with --add");
		goto out;
	}
	if (src_fmt && !src_file) {
		img_error("-F only supported with -b");
		goto out;
	}
	if (src_file && !merge) {
		img_error("Merge bitmap source file only supported with --merge");
		goto out;
	}
	if (argc - optind != 2) {
		img_error("Expecting filename and bitmap name");
		goto out;
	}
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR | BLOCK_O_NO_BACKING | BLOCK_O_BITMAPS) <
	    0) {
		goto out;
	}
	if (src_file && img_open(&src, src_file, src_fmt, BLOCK_O_NO_BACKING) < 0) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct error *err = NULL;
		/* as qemu-img: -g's value goes to a 32-bit field; 0 is the default */
		uint32_t g32 = (uint32_t)granularity;

		acts[i].name = argv[optind + 1];
		acts[i].src = src ? src : bs;
		if (acts[i].action == BLOCK_BITMAP_ADD && granularity &&
		    (g32 < 512 || (g32 & (g32 - 1)))) {
			img_error(
				"Operation add on bitmap %s failed: Granularity must be power of 2 "
				"and at least 512",
				acts[i].name);
			goto out;
		}
		acts[i].granularity = granularity ? g32 : 0;
		if (block_bitmap(bs, &acts[i], &err) < 0) {
			img_error("Operation %s on bitmap %s failed: %s", names[acts[i].action],
				  acts[i].name, err ? err->msg : "unknown error");
			error_free(err);
			goto out;
		}
	}
	rc = 0;
out:
	opterr = 1;
	block_unref(src);
	block_unref(bs);
	free(acts);
	return rc;
}

/* ---- main ---- */

static const struct img_command commands[] = {
	{"amend", cmd_amend, "change the options of an existing image",
	 "amend [-p] [-q] [-f FMT] [-t CACHE] -o OPTIONS FILENAME"},
	{"bench", img_cmd_bench, "run a simple I/O benchmark on an image",
	 "bench [-c COUNT] [-d DEPTH] [-f FMT] [-n] [-o OFFSET] [-q] [-s BUFFER_SIZE] "
	 "[-S STEP_SIZE] [-t CACHE] [-w] [-U] FILENAME"},
	{"bitmap", cmd_bitmap, "add, remove, clear, enable, disable or merge persistent bitmaps",
	 "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
	 "[-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [-f FMT] FILENAME BITMAP"},
	{"check", cmd_check, "check an image for consistency, optionally repairing it",
	 "check [-q] [-f FMT] [--output=OFMT] [-r [leaks | all]] [-T SRC_CACHE] [-U] FILENAME"},
	{"commit", cmd_commit, "write an overlay's changes into its backing file",
	 "commit [-q] [-f FMT] [-t CACHE] [-b BASE] [-d] [-p] FILENAME"},
	{"compare", cmd_compare, "compare the contents of two images",
	 "compare [-f FMT] [-F FMT] [-T SRC_CACHE] [-p] [-q] [-s] [-U] FILENAME1 FILENAME2"},
	{"convert", cmd_convert, "copy an image to a new image of a given format",
	 "convert [-U] [-c] [-p] [-q] [-n] [-f FMT] [-t CACHE] [-T SRC_CACHE] [-O OUTPUT_FMT] "
	 "[-o OPTIONS] [-S SPARSE_SIZE] [-m NUM_WORKERS] [-W] FILENAME OUTPUT_FILENAME"},
	{"create", cmd_create, "create a new image",
	 "create [-q] [-f FMT] [-b BACKING_FILE -F BACKING_FMT] [-u] [-o OPTIONS] FILENAME "
	 "[SIZE]"},
	{"dd", cmd_dd, "copy part of an image into a new image",
	 "dd [-U] [-f FMT] [-O OUTPUT_FMT] [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS] "
	 "if=INPUT of=OUTPUT"},
	{"info", cmd_info, "describe an image",
	 "info [-f FMT] [--output=OFMT] [--backing-chain] [-U] FILENAME"},
	{"map", cmd_map, "show the allocation map of an image",
	 "map [-f FMT] [--start-offset=OFFSET] [--max-length=LEN] [--output=OFMT] [-U] "
	 "FILENAME"},
	{"measure", cmd_measure, "compute the file size a new image needs",
	 "measure [--output=OFMT] [-O OUTPUT_FMT] [-o OPTIONS] [--size N | [-f FMT] FILENAME]"},
	{"rebase", cmd_rebase, "change the backing file of an image",
	 "rebase [-U] [-q] [-f FMT] [-t CACHE] [-T SRC_CACHE] [-p] [-u] -b BACKING_FILE "
	 "[-F BACKING_FMT] FILENAME"},
	{"resize", cmd_resize, "change the virtual size of an image",
	 "resize [-f FMT] [-q] [--shrink] FILENAME [+ | -]SIZE"},
	{"snapshot", cmd_snapshot, "list, create, apply or delete internal snapshots",
	 "snapshot [-f FMT] [-U] [-q] [-l | -a SNAPSHOT | -c SNAPSHOT | -d SNAPSHOT] FILENAME"},
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: vmm-img [OPTION]... COMMAND [ARG]...\n"
		     "Create, inspect and convert disk images.\n"
		     "\n"
		     "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	}
	fprintf(out, "\n"
		     "  -h, --help       show this help and exit\n"
		     "  -V, --version    show the version and exit\n"
		     "\n"
		     "'vmm-img COMMAND --help' describes a command; see vmm-img(1).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case 'V':
			printf("vmm-img %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;

			optind = 1;
			cur_cmd = &commands[i];
			return commands[i].fn(sub_argc, sub_argv);
		}
	}
	img_error("unknown command '%s' (see vmm-img --help)", argv[optind]);
	return 2;
}
