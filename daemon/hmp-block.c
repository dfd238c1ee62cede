/*
 * HMP's block job commands, read and answered as QEMU 7.2's (see
 * daemon/hmp.h): info block-jobs, block_stream, block_job_set_speed,
 * block_job_cancel, block_job_complete, block_job_pause, block_job_resume,
 * drive_mirror, drive_backup, snapshot_blkdev_internal and
 * snapshot_delete_blkdev_internal. Each runs its QMP command; drive_mirror,
 * drive_backup and the internal snapshots answer later (a worker makes the
 * image or the snapshot). Control thread.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/hmp.h"
#include "daemon/qmp.h"

void hmp_info_block_jobs(json_t *jobs, struct hmp_out *o)
{
	size_t i;
	json_t *j;

	if (!json_array_size(jobs)) {
		hmp_printf(o, "No active jobs\n");
		return;
	}
	json_array_foreach (jobs, i, j) {
		const char *type = json_string_value(json_object_get(j, "type"));
		const char *dev = json_string_value(json_object_get(j, "device"));
		json_int_t off = json_integer_value(json_object_get(j, "offset"));
		json_int_t len = json_integer_value(json_object_get(j, "len"));
		json_int_t speed = json_integer_value(json_object_get(j, "speed"));

		if (type && strcmp(type, "stream") == 0) {
			hmp_printf(o, "Streaming device %s: ", dev ? dev : "");
		} else {
			hmp_printf(o, "Type %s, device %s: ", type ? type : "", dev ? dev : "");
		}
		hmp_printf(o,
			   "Completed %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
			   " bytes, speed limit %" JSON_INTEGER_FORMAT " bytes/s\n",
			   off, len, speed);
	}
}

/*
 * QEMU's flags of a command, in their order: a flag given out of order is
 * left for a later one (and then read as the next argument), one the
 * command lacks is "unsupported option".
 */
static bool flags(struct hmp_args *a, const char *order, bool *set)
{
	for (size_t i = 0; order[i]; i++) {
		hmp_skip_space(a);
		set[i] = false;
		if (a->p[0] != '-') {
			continue;
		}
		if (a->p[1] == order[i]) {
			set[i] = true;
			a->p += 2;
		} else if (!a->p[1] || !strchr(order + i + 1, a->p[1])) {
			hmp_printf(a->o,
				   "%s: unsupported option -%c\nTry \"help %s\" for more "
				   "information\n",
				   a->cmd, a->p[1], a->cmd);
			a->failed = true;
			return false;
		}
	}
	return true;
}

/*
 * A size as QEMU's monitor reads one ("o": qemu_strtosz_MiB): a number,
 * maybe with a fraction, and a unit among B, K, M, G, T, P, E (MiB
 * without). @optional: nothing there is fine (*ret untouched).
 */
static bool size_arg(struct hmp_args *a, bool optional, json_int_t *ret)
{
	static const char units[] = "BKMGTPE";
	const char *p, *u;
	double mant, unit = 1024.0 * 1024.0;
	char *end;

	hmp_skip_space(a);
	if (optional && !*a->p) {
		return true;
	}
	p = a->p;
	if (!isdigit((unsigned char)*p) && *p != '.') {
		goto bad;
	}
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		mant = (double)strtoull(p, &end, 16);
	} else {
		double scale = 0.1;

		mant = (double)strtoull(p, &end, 10);
		if (*end == '.') {
			while (isdigit((unsigned char)*++end)) {
				mant += (*end - '0') * scale;
				scale /= 10;
			}
		}
	}
	if (end == p || (end == p + 1 && *p == '.')) {
		goto bad;
	}
	u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
	if (u) {
		unit = ldexp(1.0, 10 * (int)(u - units));
		end++;
	}
	mant *= unit;
	if (!(mant >= 0) || mant > 9223372036854774784.0) {
		goto bad;
	}
	*ret = (json_int_t)mant;
	a->p = end;
	return true;
bad:
	hmp_printf(a->o, "invalid size\nTry \"help %s\" for more information\n", a->cmd);
	a->failed = true;
	return false;
}

/* The next argument as a word; optional ones may be absent (NULL, no error). */
static char *word(struct hmp_args *a, const char *what, bool optional)
{
	hmp_skip_space(a);
	return optional && !*a->p ? NULL : hmp_arg_str(a, what);
}

bool hmp_is_block_job(const char *cmd)
{
	static const char *const cmds[] = {
		"drive_mirror",
		"drive_backup",
		"block_stream",
		"block_job_set_speed",
		"block_job_cancel",
		"block_job_complete",
		"block_job_pause",
		"block_job_resume",
		"snapshot_blkdev_internal",
		"snapshot_delete_blkdev_internal",
	};

	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(cmd, cmds[i]) == 0) {
			return true;
		}
	}
	return false;
}

int hmp_block_job(struct monitor_request *req, const char *cmd, const char *line, struct hmp_out *o)
{
	struct hmp_args a = {line + strspn(line, " \t") + strlen(cmd), cmd, o, false};
	char *dev = NULL, *s1 = NULL, *s2 = NULL;
	json_t *args = NULL;
	json_int_t speed = 0;
	bool f[3] = {false, false, false};
	monitor_handler_fn fn = NULL;
	int r = 0;

	if (strcmp(cmd, "drive_mirror") == 0) {
		/* drive_mirror [-n] [-f] device target [format] */
		if (flags(&a, "nf", f) && (dev = word(&a, "block device name", false)) &&
		    (s1 = word(&a, "string", false)) && (s2 = word(&a, "string", true), true) &&
		    hmp_arg_end(&a)) {
			args = json_pack("{s:s, s:s, s:s, s:s, s:b}", "device", dev, "target", s1,
					 "sync", f[1] ? "full" : "top", "mode",
					 f[0] ? "existing" : "absolute-paths", "unmap", true);
			if (args && s2) {
				json_object_set_new(args, "format", json_string(s2));
			}
			fn = qmp_drive_mirror;
		}
	} else if (strcmp(cmd, "drive_backup") == 0) {
		/* drive_backup [-n] [-f] [-c] device target [format] */
		if (flags(&a, "nfc", f) && (dev = word(&a, "block device name", false)) &&
		    (s1 = word(&a, "string", false)) && (s2 = word(&a, "string", true), true) &&
		    hmp_arg_end(&a)) {
			args = json_pack("{s:s, s:s, s:s, s:s, s:b}", "device", dev, "target", s1,
					 "sync", f[1] ? "full" : "top", "mode",
					 f[0] ? "existing" : "absolute-paths", "compress", f[2]);
			if (args && s2) {
				json_object_set_new(args, "format", json_string(s2));
			}
			fn = qmp_drive_backup;
		}
	} else if (strcmp(cmd, "block_stream") == 0) {
		/* block_stream device [speed [base]] */
		if ((dev = word(&a, "block device name", false)) && size_arg(&a, true, &speed) &&
		    (s1 = word(&a, "string", true), true) && hmp_arg_end(&a)) {
			args = json_pack("{s:s, s:I}", "device", dev, "speed", speed);
			if (args && s1) {
				json_object_set_new(args, "base", json_string(s1));
			}
			fn = qmp_block_stream;
		}
	} else if (strcmp(cmd, "block_job_set_speed") == 0) {
		if ((dev = word(&a, "block device name", false)) && size_arg(&a, false, &speed) &&
		    hmp_arg_end(&a)) {
			args = json_pack("{s:s, s:I}", "device", dev, "speed", speed);
			fn = qmp_block_job_set_speed;
		}
	} else if (strcmp(cmd, "block_job_cancel") == 0) {
		if (flags(&a, "f", f) && (dev = word(&a, "block device name", false)) &&
		    hmp_arg_end(&a)) {
			args = json_pack("{s:s, s:b}", "device", dev, "force", f[0]);
			fn = qmp_block_job_cancel;
		}
	} else if (strcmp(cmd, "snapshot_blkdev_internal") == 0) {
		/* snapshot_blkdev_internal device name */
		if ((dev = word(&a, "block device name", false)) &&
		    (s1 = word(&a, "string", false)) && hmp_arg_end(&a)) {
			args = json_pack("{s:s, s:s}", "device", dev, "name", s1);
			fn = qmp_blockdev_snapshot_internal_sync;
		}
	} else if (strcmp(cmd, "snapshot_delete_blkdev_internal") == 0) {
		/* snapshot_delete_blkdev_internal device name [id] */
		if ((dev = word(&a, "block device name", false)) &&
		    (s1 = word(&a, "string", false)) && (s2 = word(&a, "string", true), true) &&
		    hmp_arg_end(&a)) {
			args = json_pack("{s:s, s:s}", "device", dev, "name", s1);
			if (args && s2) {
				json_object_set_new(args, "id", json_string(s2));
			}
			fn = qmp_blockdev_snapshot_delete_internal_sync;
		}
	} else if ((dev = word(&a, "block device name", false)) && hmp_arg_end(&a)) {
		/* block_job_complete, block_job_pause, block_job_resume */
		args = json_pack("{s:s}", "device", dev);
		fn = strcmp(cmd, "block_job_complete") == 0 ? qmp_block_job_complete
		     : strcmp(cmd, "block_job_pause") == 0  ? qmp_block_job_pause
							    : qmp_block_job_resume;
	}
	if (fn) {
		r = hmp_call(req, fn, args, o);
	}
	json_decref(args);
	free(dev);
	free(s1);
	free(s2);
	return r;
}
