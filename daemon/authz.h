/*
 * Authorization objects, QEMU's: object-add qom-type authz-simple (one
 * allowed identity) and authz-list (rules matched in order, exact or glob,
 * each allow or deny, and a policy for an identity no rule matches). The
 * migration parameter tls-authz names one; a migration destination asks it
 * about the client's TLS identity (the distinguished name of its x509
 * certificate, or its PSK username) once the handshake is done.
 *
 * Threads: object-add and object-del run on the control thread; a
 * migration worker calls authz_is_allowed. A mutex guards the table; an
 * object never changes after object-add.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "common/error.h"

/* Bounds on what a client may make grow. */
#define AUTHZ_MAX_OBJECTS 64
#define AUTHZ_MAX_RULES 64
#define AUTHZ_MAX_STRING 1024

/* Whether @type is an authorization qom-type (authz-simple, authz-list). */
bool authz_is_type(const char *type);
/*
 * object-add of an authorization object (authz_is_type(qom-type)) with
 * QEMU's arguments and errors. @id_taken says whether another kind of
 * object already has the id (QEMU's ids are one namespace).
 */
int authz_object_add(json_t *args, bool (*id_taken)(const char *id), struct error **errp);
/* object-del: 0, or -ENOENT (no error set) when no authorization object is @id. */
int authz_object_del(const char *id);
/* Whether an authorization object is @id. */
bool authz_exists(const char *id);
/*
 * Whether the object @id allows @identity: 1 allowed, 0 denied, or -errno
 * with QEMU's "Cannot find QAuthZ object ID" when there is none. Any thread.
 */
int authz_is_allowed(const char *id, const char *identity, struct error **errp);
