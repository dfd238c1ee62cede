/*
 * Disk I/O limits as leaky buckets (include/vmmd/block.h), with the
 * semantics and the checks of QEMU's block_set_io_throttle (its
 * docs/throttle.txt describes them): each limit is a bucket that
 * requests fill and time drains; a request waits while a bucket it would
 * fill is above its size.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "vmmd/block.h"

/* A bucket's rate, burst rate and burst length in seconds, by index (bps 0-2, iops 3-5). */
static void bucket(const struct block_throttle_limits *l, unsigned i, double *avg, double *max,
		   double *len)
{
	unsigned k = i % 3;
	uint64_t n = i < 3 ? l->bps_max_length[k] : l->iops_max_length[k];

	*avg = (double)(i < 3 ? l->bps[k] : l->iops[k]);
	*max = (double)(i < 3 ? l->bps_max[k] : l->iops_max[k]);
	*len = n ? (double)n : 1.0;
}

void block_throttle_limits_init(struct block_throttle_limits *l)
{
	*l = (struct block_throttle_limits){0};
	for (unsigned k = 0; k < 3; k++) {
		l->bps_max_length[k] = l->iops_max_length[k] = 1;
	}
}

bool block_throttle_enabled(const struct block_throttle_limits *l)
{
	for (unsigned k = 0; k < 3; k++) {
		if (l->bps[k] || l->iops[k]) {
			return true;
		}
	}
	return false;
}

int block_throttle_check(const struct block_throttle_limits *l, struct error **errp)
{
	const uint64_t *rates[] = {l->bps, l->iops}, *maxes[] = {l->bps_max, l->iops_max},
		       *lens[] = {l->bps_max_length, l->iops_max_length};

	for (unsigned u = 0; u < 2; u++) {
		const uint64_t *a = rates[u], *m = maxes[u];

		if ((a[0] && (a[1] || a[2])) || (m[0] && (m[1] || m[2]))) {
			return error_set(errp, EINVAL,
					 "bps/iops/max total values and read/write values cannot "
					 "be used at the same time");
		}
	}
	for (unsigned u = 0; u < 2; u++) {
		for (unsigned k = 0; k < 3; k++) {
			if (rates[u][k] > BLOCK_THROTTLE_VALUE_MAX ||
			    maxes[u][k] > BLOCK_THROTTLE_VALUE_MAX ||
			    lens[u][k] > BLOCK_THROTTLE_VALUE_MAX) {
				return error_set(errp, EINVAL,
						 "bps/iops/max values must be within [0, %llu]",
						 BLOCK_THROTTLE_VALUE_MAX);
			}
		}
	}
	for (unsigned u = 0; u < 2; u++) {
		for (unsigned k = 0; k < 3; k++) {
			uint64_t a = rates[u][k], m = maxes[u][k], n = lens[u][k];

			if (n == 0) {
				return error_set(errp, EINVAL, "the burst length cannot be 0");
			}
			if (n > 1 && !m) {
				return error_set(errp, EINVAL,
						 "burst length set without burst rate");
			}
			if (m && !a) {
				return error_set(errp, EINVAL,
						 "bps_max/iops_max require corresponding bps/iops "
						 "values");
			}
			if (m && m < a) {
				return error_set(errp, EINVAL,
						 "bps_max/iops_max cannot be lower than bps/iops");
			}
		}
	}
	if (l->iops_size && !l->iops[0] && !l->iops[1] && !l->iops[2]) {
		return error_set(errp, EINVAL, "iops size requires an iops value to be set");
	}
	return 0;
}

void block_throttle_set(struct block_throttle *t, const struct block_throttle_limits *l,
			uint64_t now_ns)
{
	*t = (struct block_throttle){.limits = *l, .last_ns = now_ns};
}

/* Drain every bucket for the time since the last look. */
static void leak(struct block_throttle *t, uint64_t now_ns)
{
	double dt = now_ns > t->last_ns ? (double)(now_ns - t->last_ns) / 1e9 : 0;

	t->last_ns = now_ns > t->last_ns ? now_ns : t->last_ns;
	for (unsigned i = 0; i < 6; i++) {
		double avg, max, len;

		bucket(&t->limits, i, &avg, &max, &len);
		t->level[i] = t->level[i] > avg * dt ? t->level[i] - avg * dt : 0;
		/* (only a burst longer than a second keeps this level) */
		t->burst_level[i] =
			len > 1 && t->burst_level[i] > max * dt ? t->burst_level[i] - max * dt : 0;
	}
}

/* Seconds bucket @i needs before a request may go. */
static double bucket_wait(const struct block_throttle *t, unsigned i)
{
	double avg, max, len, size, over;

	bucket(&t->limits, i, &avg, &max, &len);
	if (avg == 0) {
		return 0;
	}
	/* without a burst rate, a tenth of a second at the rate passes at once */
	size = max ? max * len : avg / 10;
	over = t->level[i] - size;
	if (over > 0) {
		return over / avg;
	}
	/* a burst longer than a second still goes no faster than max */
	over = len > 1 ? t->burst_level[i] - max / 10 : 0;
	return over > 0 ? over / max : 0;
}

uint64_t block_throttle_wait(struct block_throttle *t, bool write, uint64_t now_ns)
{
	unsigned kind = write ? BLOCK_THROTTLE_WRITE : BLOCK_THROTTLE_READ;
	double w = 0;

	leak(t, now_ns);
	for (unsigned u = 0; u < 2; u++) {
		double a = bucket_wait(t, u * 3 + BLOCK_THROTTLE_TOTAL),
		       b = bucket_wait(t, u * 3 + kind);

		w = a > w ? a : w;
		w = b > w ? b : w;
	}
	return w > 0 ? (uint64_t)(w * 1e9) + 1 : 0;
}

void block_throttle_account(struct block_throttle *t, bool write, uint64_t bytes)
{
	const struct block_throttle_limits *l = &t->limits;
	unsigned kind = write ? BLOCK_THROTTLE_WRITE : BLOCK_THROTTLE_READ;
	double ops =
		l->iops_size && bytes > l->iops_size ? (double)bytes / (double)l->iops_size : 1;
	const unsigned idx[] = {BLOCK_THROTTLE_TOTAL, kind};

	for (unsigned j = 0; j < 2; j++) {
		t->level[idx[j]] += (double)bytes;
		t->burst_level[idx[j]] += (double)bytes;
		t->level[3 + idx[j]] += ops;
		t->burst_level[3 + idx[j]] += ops;
	}
}

/* The limits' members by name, as QEMU's block_set_io_throttle spells them. */
static uint64_t *member(struct block_throttle_limits *l, const char *key)
{
	static const char *const kind[] = {"", "_rd", "_wr"}, *const suffix[] = {"", "_max",
										 "_max_length"};
	char name[32];

	if (strcmp(key, "iops_size") == 0) {
		return &l->iops_size;
	}
	for (unsigned k = 0; k < 3; k++) {
		uint64_t *v[2][3] = {{&l->bps[k], &l->bps_max[k], &l->bps_max_length[k]},
				     {&l->iops[k], &l->iops_max[k], &l->iops_max_length[k]}};

		for (unsigned u = 0; u < 2; u++) {
			for (unsigned i = 0; i < 3; i++) {
				snprintf(name, sizeof(name), "%s%s%s", u ? "iops" : "bps", kind[k],
					 suffix[i]);
				if (strcmp(key, name) == 0) {
					return v[u][i];
				}
			}
		}
	}
	return NULL;
}

int block_throttle_from_json(json_t *o, bool strict, struct block_throttle_limits *l,
			     struct error **errp)
{
	const char *key;
	json_t *v;

	block_throttle_limits_init(l);
	json_object_foreach (o, key, v) {
		uint64_t *m = member(l, key);

		if (!m && strict) {
			return error_set(errp, EINVAL, "unknown limit '%s'", key);
		}
		if (!m) {
			continue;
		}
		if (!json_is_integer(v)) {
			return error_set(errp, EINVAL, "'%s' must be an integer", key);
		}
		if (json_integer_value(v) < 0) {
			return error_set(errp, EINVAL,
					 "bps/iops/max values must be within [0, %llu]",
					 BLOCK_THROTTLE_VALUE_MAX);
		}
		*m = (uint64_t)json_integer_value(v);
	}
	return block_throttle_check(l, errp);
}

json_t *block_throttle_to_json(const struct block_throttle_limits *l)
{
	static const char *const keys[] = {"bps",
					   "bps_rd",
					   "bps_wr",
					   "iops",
					   "iops_rd",
					   "iops_wr",
					   "bps_max",
					   "bps_rd_max",
					   "bps_wr_max",
					   "iops_max",
					   "iops_rd_max",
					   "iops_wr_max",
					   "bps_max_length",
					   "bps_rd_max_length",
					   "bps_wr_max_length",
					   "iops_max_length",
					   "iops_rd_max_length",
					   "iops_wr_max_length",
					   "iops_size"};
	struct block_throttle_limits c = *l;
	json_t *o = json_object();

	for (size_t i = 0; o && i < sizeof(keys) / sizeof(keys[0]); i++) {
		uint64_t v = *member(&c, keys[i]);

		/* what differs from no limit and bursts of 1 s */
		if (v && !(strstr(keys[i], "_length") && v == 1)) {
			json_object_set_new(o, keys[i], json_integer((json_int_t)v));
		}
	}
	return o;
}
