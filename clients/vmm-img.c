/*
 * vmm-img: create, inspect, check, convert and modify disk images, with
 * qemu-img's verbs, options and output shapes, on vmmd's block layer.
 * Formats are explicit (-f); only `info` probes, for read-only inspection.
 *
 * Single-threaded except `bench`, which drives the asynchronous block API
 * from a libevent loop on the main thread (img-bench.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

int img_open(struct block_node **ret, const char *filename, const char *fmt, unsigned flags,
	     bool probe)
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
		if (!probe) {
			img_error("no format given for '%s': use -f raw or -f qcow2 (formats are "
				  "probed only by 'vmm-img info')",
				  filename);
			return -EINVAL;
		}
		r = block_probe_format(filename, &fmt, &err);
		if (r < 0) {
			return report(err, r);
		}
	}
	r = block_open(ret, filename, fmt, flags, &err);
	return r < 0 ? report(err, r) : 0;
}

int img_cache_flags(const char *mode, unsigned *ret_flags)
{
	if (strcmp(mode, "none") == 0 || strcmp(mode, "directsync") == 0) {
		*ret_flags = BLOCK_O_NOCACHE;
	} else if (strcmp(mode, "writeback") == 0 || strcmp(mode, "writethrough") == 0 ||
		   strcmp(mode, "unsafe") == 0) {
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

static int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	const char *fmt = "raw", *filename;
	json_t *o = json_object();
	uint64_t size = 0;
	bool quiet = false, have_size = false;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:o:b:F:qu", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'o':
			if (parse_o(o, optarg) < 0) {
				goto out;
			}
			break;
		case 'b':
			json_object_set_new(o, "backing_file", json_string(optarg));
			break;
		case 'F':
			json_object_set_new(o, "backing_fmt", json_string(optarg));
			break;
		case 'q':
			quiet = true;
			break;
		case 'u':
			break; /* the backing file is never opened at creation */
		case 'h':
			printf("Usage: vmm-img create [-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] "
			       "[-o OPTIONS] FILENAME [SIZE]\n");
			r = 0;
			goto out;
		default:
			goto out;
		}
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
		printf("%-9s %-17s %7s%20s%13s%11s\n",
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

static void print_info_human(json_t *img)
{
	char buf[32];
	json_t *v, *fs, *data;
	const char *key;

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
		json_object_foreach (data, key, v) {
			printf("    ");
			for (const char *p = key; *p; p++) {
				putchar(*p == '-' ? ' ' : *p);
			}
			printf(": ");
			print_value(v);
			printf("\n");
		}
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
		b = b->backing;
	}
	return img;
}

static int cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"output", required_argument, NULL, 'O'},
		{"backing-chain", no_argument, NULL, 'B'},
		{"force-share", no_argument, NULL, 'U'},
		{0},
	};
	const char *fmt = NULL, *output = "human";
	struct block_node *bs;
	bool chain = false;
	unsigned flags = 0;
	json_t *img;
	int c;

	while ((c = getopt_long(argc, argv, "hf:U", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'O':
			output = optarg;
			break;
		case 'B':
			chain = true;
			break;
		case 'U':
			flags |= BLOCK_O_NO_LOCK;
			break;
		case 'h':
			printf("Usage: vmm-img info [-f FMT] [--output=human|json] "
			       "[--backing-chain] "
			       "[-U] FILENAME\n");
			return 0;
		default:
			return 1;
		}
	}
	if (strcmp(output, "human") != 0 && strcmp(output, "json") != 0) {
		img_error("--output must be 'human' or 'json'");
		return 1;
	}
	if (optind + 1 != argc) {
		img_error("info: expected one FILENAME");
		return 1;
	}
	if (img_open(&bs, argv[optind], fmt, flags, true) < 0) {
		return 1;
	}
	img = image_info(bs);
	block_unref(bs);
	if (!chain) {
		json_object_del(img, "backing-image");
		if (strcmp(output, "json") == 0) {
			json_dumpf(img, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
			printf("\n");
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
		if (strcmp(output, "json") == 0) {
			json_dumpf(arr, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
			printf("\n");
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

		json_object_set_new(o, "image-end-offset",
				    json_integer((json_int_t)res->image_end_offset));
		json_object_set_new(o, "total-clusters",
				    json_integer((json_int_t)res->total_clusters));
		json_object_set_new(o, "check-errors", json_integer(res->check_errors));
		json_object_set_new(o, "allocated-clusters",
				    json_integer((json_int_t)res->allocated_clusters));
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
		json_dumpf(o, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
		printf("\n");
		json_decref(o);
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

static int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"output", required_argument, NULL, 'O'},
		{"repair", required_argument, NULL, 'r'},
		{"force-share", no_argument, NULL, 'U'},
		{0},
	};
	const char *fmt = NULL, *output = "human";
	struct block_check_result res;
	struct block_node *bs;
	struct error *err = NULL;
	unsigned fix = 0, flags = 0;
	bool json, quiet = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "hf:r:Uq", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'O':
			output = optarg;
			break;
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
		case 'U':
			flags |= BLOCK_O_NO_LOCK;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			printf("Usage: vmm-img check [-q] [-f FMT] [--output=human|json] "
			       "[-r leaks|all] [-U] FILENAME\n");
			return 0;
		default:
			return 1;
		}
	}
	json = strcmp(output, "json") == 0;
	if (!json && strcmp(output, "human") != 0) {
		img_error("--output must be 'human' or 'json'");
		return 1;
	}
	if (optind + 1 != argc) {
		img_error("check: expected one FILENAME");
		return 1;
	}
	if (fix) {
		flags = (flags & ~BLOCK_O_NO_LOCK) | BLOCK_O_RDWR;
	}
	if (img_open(&bs, argv[optind], fmt, flags | BLOCK_O_NO_BACKING, false) < 0) {
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
		struct block_check_result again;

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
		{"help", no_argument, NULL, 'h'},
		{"output", required_argument, NULL, 'O'},
		{"force-share", no_argument, NULL, 'U'},
		{"start-offset", required_argument, NULL, 's'},
		{"max-length", required_argument, NULL, 'l'},
		{0},
	};
	const char *fmt = NULL, *output = "human";
	struct map_entry cur = {0}, next;
	struct block_node *bs;
	uint64_t off = 0, end, maxlen = UINT64_MAX;
	unsigned flags = 0;
	bool json, have = false, first = true;
	int c, r = 0;

	while ((c = getopt_long(argc, argv, "hf:U", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'O':
			output = optarg;
			break;
		case 'U':
			flags |= BLOCK_O_NO_LOCK;
			break;
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
		case 'h':
			printf("Usage: vmm-img map [-f FMT] [--output=human|json] [-U] "
			       "[--start-offset=OFF] [--max-length=LEN] FILENAME\n");
			return 0;
		default:
			return 1;
		}
	}
	json = strcmp(output, "json") == 0;
	if (!json && strcmp(output, "human") != 0) {
		img_error("--output must be 'human' or 'json'");
		return 1;
	}
	if (optind + 1 != argc) {
		img_error("map: expected one FILENAME");
		return 1;
	}
	if (img_open(&bs, argv[optind], fmt, flags, false) < 0) {
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

static int cmd_convert(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"force-share", no_argument, NULL, 'U'},
		{0},
	};
	const char *fmt = NULL, *out_fmt = "raw", *src_name, *dst_name;
	const char *cache = "unsafe", *src_cache = "writeback";
	struct block_node *src = NULL, *dst = NULL;
	json_t *o = json_object();
	uint64_t size, off = 0, min_sparse = 4096, cluster = 0;
	unsigned src_flags = 0, dst_flags = 0, cflags;
	bool compress = false, prog = false, no_create = false, quiet = false, need_zero;
	char *buf = NULL;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:O:co:pnS:t:T:Uq", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'O':
			out_fmt = optarg;
			break;
		case 'c':
			compress = true;
			break;
		case 'o':
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
			if (parse_size_arg(optarg, &min_sparse) < 0) {
				goto out;
			}
			break;
		case 't':
			cache = optarg;
			break;
		case 'T':
			src_cache = optarg;
			break;
		case 'U':
			src_flags |= BLOCK_O_NO_LOCK;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			printf("Usage: vmm-img convert [-p] [-c] [-n] [-f FMT] [-O OUTPUT_FMT] "
			       "[-o OPTIONS] [-S SPARSE_SIZE] [-t CACHE] [-T SRC_CACHE] [-U] "
			       "SOURCE TARGET\n");
			r = 0;
			goto out;
		default:
			goto out;
		}
	}
	if (argc - optind != 2) {
		img_error("convert: expected SOURCE TARGET (one source image)");
		goto out;
	}
	if (quiet) {
		prog = false;
	}
	src_name = argv[optind];
	dst_name = argv[optind + 1];
	if (compress && strcmp(out_fmt, "qcow2") != 0) {
		img_error("compression (-c) needs a qcow2 target (-O qcow2)");
		goto out;
	}
	if (min_sparse % IMG_SECTOR) {
		img_error("-S must be a multiple of %d", IMG_SECTOR);
		goto out;
	}
	if (img_cache_flags(src_cache, &cflags) < 0) {
		goto out;
	}
	src_flags |= cflags;
	if (img_cache_flags(cache, &cflags) < 0) {
		goto out;
	}
	dst_flags |= cflags | BLOCK_O_RDWR;
	r = img_open(&src, src_name, fmt, src_flags, false);
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
	r = img_open(&dst, dst_name, out_fmt, dst_flags | (need_zero ? 0 : BLOCK_O_NO_BACKING),
		     false);
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
	if (compress) {
		cluster = cluster_size_of(dst);
	}
	buf = aligned_alloc(4096, MAX((uint64_t)IMG_CHUNK, cluster));
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	progress(prog, 0, size);
	while (off < size) {
		uint64_t pnum, n;
		unsigned status;

		r = block_get_status(src, off, MIN(size - off, (uint64_t)IMG_CHUNK), &pnum, &status,
				     NULL);
		if (r < 0) {
			img_error("error reading the allocation of '%s' at %" PRIu64 ": %s",
				  src_name, off, strerror(-r));
			goto out;
		}
		if (compress) {
			/* whole clusters: one status covering part of a cluster is not enough */
			uint64_t cend = MIN(ALIGN_DOWN(off, cluster) + cluster, size);

			n = cend - off;
			if (!(status & BLOCK_STATUS_ZERO) || (status & BLOCK_STATUS_DATA) ||
			    pnum < n) {
				r = block_pread(src, off, buf, n);
				if (r == 0 && !buf_is_zero(buf, n)) {
					r = block_pwrite_compressed(dst, off, buf, n);
					if (r == -ENOTSUP || r == -EINVAL) {
						/* a cluster that does not compress is written plainly */
						r = block_pwrite(dst, off, buf, n);
					}
				} else if (r == 0 && need_zero) {
					r = block_write_zeroes(dst, off, n, BLOCK_ZERO_MAY_UNMAP);
				}
			} else if (need_zero) {
				r = block_write_zeroes(dst, off, n, BLOCK_ZERO_MAY_UNMAP);
			}
		} else {
			n = pnum;
			if ((status & BLOCK_STATUS_ZERO) && !(status & BLOCK_STATUS_DATA)) {
				r = need_zero
					    ? block_write_zeroes(dst, off, n, BLOCK_ZERO_MAY_UNMAP)
					    : 0;
			} else {
				r = block_pread(src, off, buf, n);
				if (r == 0) {
					r = write_sparse(dst, off, buf, n, min_sparse, need_zero);
				}
			}
		}
		if (r < 0) {
			img_error("error while converting '%s' to '%s' at offset %" PRIu64 ": %s",
				  src_name, dst_name, off, strerror(-r));
			goto out;
		}
		off += n;
		progress(prog, off, size);
	}
	r = block_flush(dst);
	if (r < 0) {
		img_error("could not flush '%s': %s", dst_name, strerror(-r));
		goto out;
	}
	progress_end(prog);
out:
	free(buf);
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
		{"help", no_argument, NULL, 'h'},
		{"force-share", no_argument, NULL, 'U'},
		{0},
	};
	const char *fmt1 = NULL, *fmt2 = NULL;
	struct block_node *a = NULL, *b = NULL, *big;
	uint64_t len_a, len_b, common, off = 0;
	unsigned flags = 0;
	bool strict = false, prog = false, quiet = false;
	char *ba = NULL, *bb = NULL;
	int c, ret = 2;

	while ((c = getopt_long(argc, argv, "hf:F:spqU", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt1 = optarg;
			break;
		case 'F':
			fmt2 = optarg;
			break;
		case 's':
			strict = true;
			break;
		case 'p':
			prog = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'U':
			flags |= BLOCK_O_NO_LOCK;
			break;
		case 'h':
			printf("Usage: vmm-img compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] "
			       "FILENAME1 FILENAME2\n");
			return 0;
		default:
			return 2;
		}
	}
	if (argc - optind != 2) {
		img_error("compare: expected FILENAME1 FILENAME2");
		return 2;
	}
	if (!fmt2) {
		fmt2 = fmt1;
	}
	if (quiet) {
		prog = false;
	}
	if (img_open(&a, argv[optind], fmt1, flags, false) < 0 ||
	    img_open(&b, argv[optind + 1], fmt2, flags, false) < 0) {
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
		{"help", no_argument, NULL, 'h'},
		{"force-share", no_argument, NULL, 'U'},
		{0},
	};
	const char *fmt = NULL, *name = NULL;
	struct block_node *bs;
	struct error *err = NULL;
	unsigned flags = 0;
	int c, action = 0, r;

	while ((c = getopt_long(argc, argv, "hf:la:c:d:qU", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
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
		case 'q':
			break;
		case 'U':
			flags |= BLOCK_O_NO_LOCK;
			break;
		case 'h':
			printf("Usage: vmm-img snapshot [-f FMT] [-l | -a SNAPSHOT | -c SNAPSHOT | "
			       "-d SNAPSHOT] FILENAME\n");
			return 0;
		default:
			return 1;
		}
	}
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
	if (img_open(&bs, argv[optind], fmt, flags | BLOCK_O_NO_BACKING, false) < 0) {
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
		{"help", no_argument, NULL, 'h'},
		{"shrink", no_argument, NULL, 'S'},
		{0},
	};
	const char *fmt = NULL, *arg;
	struct block_node *bs;
	struct error *err = NULL;
	uint64_t cur, val, size;
	bool shrink = false, quiet = false;
	int c, r, sign = 0;

	/* "-1G" is a size, not an option: stop at the second operand */
	while ((c = getopt_long(argc, argv, "+hf:q", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'S':
			shrink = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			printf("Usage: vmm-img resize [-f FMT] [--shrink] FILENAME [+|-]SIZE\n");
			return 0;
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
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR, false) < 0) {
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
		img_error("use the --shrink option to shrink '%s' (data past %" PRIu64
			  " bytes will be lost)",
			  argv[optind], size);
		block_unref(bs);
		return 1;
	}
	r = block_truncate(bs, size, &err);
	block_unref(bs);
	if (r < 0) {
		report(err, r);
		return 1;
	}
	if (!quiet) {
		printf("Image resized.\n");
	}
	return 0;
}

/* ---- rebase ---- */

static int cmd_rebase(int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	const char *fmt = NULL, *backing = NULL, *bfmt = NULL;
	struct block_node *bs = NULL, *nb = NULL;
	struct error *err = NULL;
	bool unsafe = false, prog = false;
	char *bo = NULL, *bn = NULL;
	uint64_t size, off = 0, nsize = 0;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:b:F:upqt:T:", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
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
		case 'q':
		case 't':
		case 'T':
			break;
		case 'h':
			printf("Usage: vmm-img rebase [-f FMT] [-u] [-p] -b BACKING [-F "
			       "BACKING_FMT] "
			       "FILENAME\n");
			return 0;
		default:
			return 1;
		}
	}
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
		if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR | BLOCK_O_NO_BACKING, false) <
		    0) {
			return 1;
		}
		r = block_change_backing(bs, *backing ? backing : NULL, *backing ? bfmt : NULL,
					 &err);
		goto out;
	}
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR, false) < 0) {
		return 1;
	}
	if (*backing) {
		/* a relative backing name is relative to the image's directory */
		char *path = backing_path(argv[optind], backing);

		r = img_open(&nb, path ? path : backing, bfmt, 0, false);
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
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	const char *fmt = NULL, *base_name = NULL;
	struct block_node *bs = NULL, *base = NULL;
	char *backing = NULL, *bfmt = NULL, *buf = NULL;
	bool drop = false, prog = false, quiet = false;
	uint64_t size, off = 0;
	int c, r = -EINVAL;

	while ((c = getopt_long(argc, argv, "hf:b:dpqt:", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'b':
			base_name = optarg;
			break;
		case 'd':
			drop = true;
			break;
		case 'p':
			prog = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 't':
			break;
		case 'h':
			printf("Usage: vmm-img commit [-q] [-f FMT] [-d] [-p] [-b BASE] "
			       "FILENAME\n");
			return 0;
		default:
			return 1;
		}
	}
	if (optind + 1 != argc) {
		img_error("commit: expected one FILENAME");
		return 1;
	}
	/* learn the backing file's name and format */
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_NO_LOCK, false) < 0) {
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
	if (img_open(&bs, argv[optind], fmt, BLOCK_O_RDWR | BLOCK_O_NO_BACKING | BLOCK_O_UNMAP,
		     false) < 0 ||
	    img_open(&base, backing, bfmt, BLOCK_O_RDWR, false) < 0) {
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

/* ---- main ---- */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{"bench", img_cmd_bench, "run a simple I/O benchmark on an image"},
	{"check", cmd_check, "check an image for consistency, optionally repairing it"},
	{"commit", cmd_commit, "write an overlay's changes into its backing file"},
	{"compare", cmd_compare, "compare the contents of two images"},
	{"convert", cmd_convert, "copy an image to a new image of a given format"},
	{"create", cmd_create, "create a new image"},
	{"info", cmd_info, "describe an image"},
	{"map", cmd_map, "show the allocation map of an image"},
	{"rebase", cmd_rebase, "change the backing file of an image"},
	{"resize", cmd_resize, "change the virtual size of an image"},
	{"snapshot", cmd_snapshot, "list, create, apply or delete internal snapshots"},
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
			return commands[i].fn(sub_argc, sub_argv);
		}
	}
	img_error("unknown command '%s' (see vmm-img --help)", argv[optind]);
	return 2;
}
