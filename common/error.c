/* Error objects: see error.h. No global state; any thread. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const char *const class_names[] = {
	[ERROR_CLASS_GENERIC] = "GenericError",
	[ERROR_CLASS_COMMAND_NOT_FOUND] = "CommandNotFound",
	[ERROR_CLASS_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
	[ERROR_CLASS_DEVICE_NOT_FOUND] = "DeviceNotFound",
	[ERROR_CLASS_KVM_MISSING_CAP] = "KVMMissingCap",
};

const char *error_class_name(enum error_class cls)
{
	if ((unsigned)cls >= ARRAY_SIZE(class_names)) {
		return "GenericError";
	}
	return class_names[cls];
}

static int normalize(int err)
{
	if (err < 0) {
		err = -err;
	}
	return err ? err : EINVAL;
}

static int set_full(struct error **errp, enum error_class cls, int err, const char *suffix,
		    const char *fmt, va_list ap)
{
	struct error *e;
	char *msg = NULL;

	err = normalize(err);
	if (!errp || *errp) {
		return -err;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		return -err;
	}
	if (vasprintf(&msg, fmt, ap) < 0) {
		msg = NULL;
	}
	if (msg && suffix) {
		char *full = NULL;

		if (asprintf(&full, "%s: %s", msg, suffix) >= 0) {
			free(msg);
			msg = full;
		}
	}
	e->code = err;
	e->cls = cls;
	e->msg = msg ? msg : strdup(strerror(err));
	if (!e->msg) {
		free(e);
		return -err;
	}
	*errp = e;
	return -err;
}

int error_setv(struct error **errp, int err, const char *fmt, va_list ap)
{
	return set_full(errp, ERROR_CLASS_GENERIC, err, NULL, fmt, ap);
}

int error_set(struct error **errp, int err, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = set_full(errp, ERROR_CLASS_GENERIC, err, NULL, fmt, ap);
	va_end(ap);
	return r;
}

int error_set_class(struct error **errp, enum error_class cls, int err, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = set_full(errp, cls, err, NULL, fmt, ap);
	va_end(ap);
	return r;
}

int error_set_errno(struct error **errp, int err, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = set_full(errp, ERROR_CLASS_GENERIC, err, strerror(normalize(err)), fmt, ap);
	va_end(ap);
	return r;
}

void error_prefix(struct error **errp, const char *fmt, ...)
{
	char *prefix = NULL, *full = NULL;
	va_list ap;

	if (!errp || !*errp) {
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&prefix, fmt, ap) < 0) {
		prefix = NULL;
	}
	va_end(ap);
	if (prefix && asprintf(&full, "%s: %s", prefix, (*errp)->msg) >= 0) {
		free((*errp)->msg);
		(*errp)->msg = full;
	}
	free(prefix);
}

void error_propagate(struct error **dst, struct error *src)
{
	if (!src) {
		return;
	}
	if (dst && !*dst) {
		*dst = src;
	} else {
		error_free(src);
	}
}

void error_free(struct error *e)
{
	if (!e) {
		return;
	}
	free(e->msg);
	free(e);
}
