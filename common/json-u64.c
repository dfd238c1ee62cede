/*
 * Unsigned 64-bit integers in protocol output (json-u64.h). The marker is
 * "\x01u64:" and 32 hex digits of the process's secret, then ":" and the
 * decimal digits; json_dumps writes it as "\u0001u64:<secret>:<digits>".
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/json-u64.h"

#define SECRET_HEX 32

/* "\x01u64:<secret>:" and its dumped form, set before main runs. */
static char marker[8 + SECRET_HEX];
static char dumped[16 + SECRET_HEX];

__attribute__((constructor)) static void make_secret(void)
{
	uint8_t b[SECRET_HEX / 2];
	char hex[SECRET_HEX + 1];
	ssize_t n;

	/* not a key: it needs to be unguessable by a client, not secure at boot */
	n = getrandom(b, sizeof(b), GRND_INSECURE);
	if (n < 0 && errno == EINVAL) {
		n = getrandom(b, sizeof(b), 0);
	}
	if (n != (ssize_t)sizeof(b)) {
		abort();
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	}
	snprintf(marker, sizeof(marker), "\001u64:%s:", hex);
	snprintf(dumped, sizeof(dumped), "\"\\u0001u64:%s:", hex);
}

json_t *json_u64(uint64_t v)
{
	char buf[sizeof(marker) + 24];

	if (v <= INT64_MAX) {
		return json_integer((json_int_t)v);
	}
	snprintf(buf, sizeof(buf), "%s%" PRIu64, marker, v);
	return json_string(buf);
}

void json_u64_unmark(char *text)
{
	char *p = text;

	while ((p = strstr(p, dumped))) {
		char *digits = p + strlen(dumped), *end = digits;

		while (*end >= '0' && *end <= '9') {
			end++;
		}
		if (end == digits || *end != '"' || end - digits > 20) {
			p = digits;
			continue;
		}
		memmove(p, digits, (size_t)(end - digits));
		memmove(p + (end - digits), end + 1, strlen(end + 1) + 1);
		p += end - digits;
	}
}
