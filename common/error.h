/*
 * Error objects for the control plane. A function that can fail in a way a
 * user must act on takes `struct error **errp` last, returns -errno, and fills
 * *errp (when errp is not NULL) with a message naming the file, value and
 * limit involved. error_set() returns the negative errno so that reporting
 * and returning are one statement:
 *
 *	if (size > max)
 *		return error_set(errp, EINVAL, "size %" PRIu64 " exceeds %" PRIu64, size, max);
 *
 * Errors carry a QMP error class so the monitor can report them faithfully.
 * Thread-safe: an error object belongs to the thread that created it.
 */
#pragma once

#include <stdarg.h>

#include "common/cleanup.h"
#include "common/util.h"

enum error_class {
	ERROR_CLASS_GENERIC = 0,
	ERROR_CLASS_COMMAND_NOT_FOUND,
	ERROR_CLASS_DEVICE_NOT_ACTIVE,
	ERROR_CLASS_DEVICE_NOT_FOUND,
	ERROR_CLASS_KVM_MISSING_CAP,
};

struct error {
	int code;	      /* positive errno */
	enum error_class cls; /* QMP error class */
	char *msg;	      /* human-readable, never NULL */
};

/*
 * Fill *errp with a new error (unless errp is NULL or *errp is already set:
 * the first error wins). @err may be given positive or negative.
 * Returns -abs(err), or -EINVAL if err is 0.
 */
int error_set(struct error **errp, int err, const char *fmt, ...) _printf_(3, 4);
int error_setv(struct error **errp, int err, const char *fmt, va_list ap) _printf_(3, 0);

/* As error_set(), with an explicit QMP error class. */
int error_set_class(struct error **errp, enum error_class cls, int err, const char *fmt, ...)
	_printf_(4, 5);

/* As error_set(), appending ": strerror(err)" to the message. */
int error_set_errno(struct error **errp, int err, const char *fmt, ...) _printf_(3, 4);

/* Prepend "prefix: " to an existing error's message. No-op if no error. */
void error_prefix(struct error **errp, const char *fmt, ...) _printf_(2, 3);

/* Move *src into *dst (if *dst is empty; otherwise *src is freed). */
void error_propagate(struct error **dst, struct error *src);

/* The QMP class name ("GenericError", ...). */
const char *error_class_name(enum error_class cls);

void error_free(struct error *e);
DEFINE_CLEANUP_FUNC(struct error, error_free)
