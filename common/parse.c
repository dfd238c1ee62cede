/* Size and number parsing: see parse.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/parse.h"

int parse_u64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)s[0])) {
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno == ERANGE) {
		return -ERANGE;
	}
	if (errno || *end != '\0' || end == s) {
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

int parse_u32(const char *s, uint32_t *ret)
{
	uint64_t v;
	int r = parse_u64(s, &v);

	if (r < 0) {
		return r;
	}
	if (v > UINT32_MAX) {
		return -ERANGE;
	}
	*ret = (uint32_t)v;
	return 0;
}

int parse_int(const char *s, int *ret)
{
	char *end;
	long v;

	if (!s || !(isdigit((unsigned char)s[0]) ||
		    ((s[0] == '-' || s[0] == '+') && isdigit((unsigned char)s[1])))) {
		return -EINVAL;
	}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno == ERANGE || v > INT32_MAX || v < INT32_MIN) {
		return -ERANGE;
	}
	if (*end != '\0') {
		return -EINVAL;
	}
	*ret = (int)v;
	return 0;
}

static int unit_shift(const char *u, unsigned *shift)
{
	static const char units[] = "KMGTPE";
	const char *p;

	if (*u == '\0' || strcasecmp(u, "B") == 0) {
		*shift = 0;
		return 0;
	}
	p = strchr(units, toupper((unsigned char)*u));
	if (!p) {
		return -EINVAL;
	}
	u++;
	if (*u != '\0' && strcasecmp(u, "B") != 0 && strcasecmp(u, "iB") != 0) {
		return -EINVAL;
	}
	*shift = 10u * (unsigned)(p - units + 1);
	return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
	uint64_t whole = 0, frac = 0, frac_div = 1;
	const char *p = s;
	unsigned shift;
	int r;

	if (!s || !isdigit((unsigned char)*p)) {
		return -EINVAL;
	}
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (whole > (UINT64_MAX - d) / 10) {
			return -ERANGE;
		}
		whole = whole * 10 + d;
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p)) {
			return -EINVAL;
		}
		for (; isdigit((unsigned char)*p); p++) {
			if (frac_div >= UINT64_C(1000000000000)) {
				return -EINVAL; /* more precision than any unit needs */
			}
			frac = frac * 10 + (uint64_t)(*p - '0');
			frac_div *= 10;
		}
	}
	r = unit_shift(p, &shift);
	if (r < 0) {
		return r;
	}
	if (shift && whole > (UINT64_MAX >> shift)) {
		return -ERANGE;
	}
	whole <<= shift;
	if (frac) {
		/* frac / frac_div * 2^shift must be an integer number of bytes. */
		unsigned __int128 f = (unsigned __int128)frac << shift;

		if (f % frac_div) {
			return -EINVAL;
		}
		f /= frac_div;
		if (f > UINT64_MAX - whole) {
			return -ERANGE;
		}
		whole += (uint64_t)f;
	}
	*ret = whole;
	return 0;
}

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	unsigned i = 0;

	while (bytes && i < sizeof(units) - 1 && (bytes & 1023) == 0) {
		bytes >>= 10;
		i++;
	}
	if (i == 0) {
		snprintf(buf, len, "%" PRIu64, bytes);
	} else {
		snprintf(buf, len, "%" PRIu64 "%c", bytes, units[i - 1]);
	}
	return buf;
}

bool parse_id_ok(const char *id, size_t max)
{
	size_t n = strlen(id);

	if (n == 0 || n > max || !isalpha((unsigned char)id[0])) {
		return false;
	}
	for (size_t i = 1; i < n; i++) {
		if (!isalnum((unsigned char)id[i]) && !strchr("-._", id[i])) {
			return false;
		}
	}
	return true;
}
