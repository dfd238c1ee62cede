/*
 * TLS for migration (docs/migration.md "TLS"), QEMU's way: credentials are
 * objects (object-add qom-type tls-creds-x509: a directory with
 * ca-cert.pem, server-cert.pem and server-key.pem or client-cert.pem and
 * client-key.pem, an endpoint, verify-peer; tls-creds-psk: a directory with
 * keys.psk, lines "username:hexkey", an endpoint and a client's username)
 * named by the migration parameter tls-creds; tls-hostname (or the tcp:
 * URI's host) is checked against the server's certificate, and tls-authz
 * (daemon/authz.h) against the client's identity. GnuTLS does the work.
 *
 * Threads: the object table is the control thread's; a migration takes a
 * reference there and runs its session on its worker thread.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/error.h"

struct tls_creds;
struct tls_session;

/*
 * object-add with QEMU's arguments and errors, in three steps: prepare
 * checks the arguments and reserves the id (control thread), load reads and
 * parses the files (a worker: they may be slow to read), finish makes the
 * object usable or drops it (control thread, with load's result).
 */
int tls_object_add_prepare(json_t *args, struct tls_creds **ret, struct error **errp);
int tls_object_add_load(struct tls_creds *c, struct error **errp);
/* Whether a TLS credentials object is @id (loaded or loading). */
bool tls_object_exists(const char *id);
void tls_object_add_finish(struct tls_creds *c, int r);
/* object-del with QEMU's arguments and errors. */
int tls_object_del(const char *id, struct error **errp);
/* A reference to the credentials @id, or NULL. */
struct tls_creds *tls_creds_get(const char *id);
void tls_creds_put(struct tls_creds *c);
bool tls_creds_is_server(const struct tls_creds *c);
/* Whether a client with @c checks the server's name (x509: tls-hostname; PSK: none). */
bool tls_creds_checks_hostname(const struct tls_creds *c);

/*
 * Handshake on the connected, blocking socket @fd as the endpoint @c says;
 * an x509 client checks the server's certificate against its CA and
 * @hostname; a server with @authz (an authorization object's id, or NULL)
 * asks it about the client's identity (certificate DN or PSK username) and
 * refuses one it does not allow with a fatal access_denied alert. Errors
 * carry QEMU's messages ("The certificate hasn't got a known issuer",
 * "Certificate does not match the hostname %s", "TLS x509 authz check for
 * %s is denied").
 */
int tls_session_start(struct tls_creds *c, int fd, const char *hostname, const char *authz,
		      struct tls_session **ret, struct error **errp);
/* The name of the fatal alert the peer ended the session with, or NULL. */
const char *tls_session_alert(const struct tls_session *s);
/*
 * Like send()/recv() on the session: bytes, or -errno (0 = the peer
 * closed; -EACCES: the peer's access_denied alert).
 */
ssize_t tls_session_send(struct tls_session *s, const void *buf, size_t len);
ssize_t tls_session_recv(struct tls_session *s, void *buf, size_t len);
void tls_session_free(struct tls_session *s);
