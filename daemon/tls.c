/*
 * TLS credentials and sessions for migration (daemon/tls.h): x509 and PSK,
 * with QEMU 7.2's object-add arguments and errors
 * (tests/functional/golden/migration-tls.json, migration-psk.json).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "common/list.h"
#include "common/log.h"
#include "common/pathpol.h"
#include "daemon/authz.h"
#include "daemon/tls.h"

#define MAX_OBJECTS 64
#define HANDSHAKE_TIMEOUT_MS 30000
/* A refused peer's last bytes are read for at most this long before the close. */
#define DRAIN_MS 2000
/* QEMU's PSK file in the object's dir, and the client's name when none is given. */
#define PSK_FILE "keys.psk"
#define PSK_DEFAULT_USERNAME "qemu"
/* A PSK username (the TLS identity) longer than this is refused at object-add. */
#define PSK_MAX_USERNAME 256
/* QEMU's priorities: GnuTLS's defaults, plus the PSK key exchanges for PSK credentials. */
#define PSK_PRIORITY "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"

struct tls_creds {
	struct list_head link;
	_Atomic unsigned refs;
	char *id;
	char *dir;    /* as object-add named it (loading, messages) */
	bool loading; /* object-add's files are read on a worker: not usable yet */
	bool server, verify_peer;
	bool psk;	     /* tls-creds-psk; else tls-creds-x509 */
	char *username;	     /* PSK client: the identity it sends */
	gnutls_datum_t keys; /* PSK server: keys.psk, searched per handshake as GnuTLS does */
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_psk_server_credentials_t psk_server;
};

struct tls_session {
	gnutls_session_t s;
	int fd;
	int alert;	  /* the peer's fatal alert after the handshake, or -1 */
	bool unknown_psk; /* PSK server: the client's identity is not in keys.psk */
	struct tls_creds *creds;
	const char *host; /* a client's name to check, or NULL */
	bool verify;	  /* x509: check the peer's certificate (client, verify-peer, tls-authz) */
	bool checked;	  /* the peer's certificate went through check_peer */
	struct error *verr; /* why it failed */
};

static int check_peer(struct tls_session *t, const char *hostname, struct error **errp);

/*
 * During the handshake, as soon as the peer's certificate arrives: a client
 * rejects a server it does not trust before the server can reject it (so
 * the error is the certificate's, not a later alert's).
 */
static int verify_cb(gnutls_session_t s)
{
	struct tls_session *t = gnutls_session_get_ptr(s);

	t->checked = true;
	if (t->verify) {
		return check_peer(t, t->host, &t->verr) < 0 ? GNUTLS_E_CERTIFICATE_ERROR : 0;
	}
	return 0;
}

static struct list_head objects = LIST_HEAD_INIT(objects);
static unsigned n_objects;

static struct tls_creds *find(const char *id)
{
	struct list_head *p;

	list_for_each (p, &objects) {
		struct tls_creds *c = list_entry(p, struct tls_creds, link);

		if (strcmp(c->id, id) == 0) {
			return c;
		}
	}
	return NULL;
}

void tls_creds_put(struct tls_creds *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
		if (c->x509) {
			gnutls_certificate_free_credentials(c->x509);
		}
		if (c->psk_client) {
			gnutls_psk_free_client_credentials(c->psk_client);
		}
		if (c->psk_server) {
			gnutls_psk_free_server_credentials(c->psk_server);
		}
		gnutls_free(c->keys.data);
		free(c->username);
		free(c->id);
		free(c->dir);
		free(c);
	}
}

struct tls_creds *tls_creds_get(const char *id)
{
	struct tls_creds *c = find(id);

	if (c && !c->loading) {
		atomic_fetch_add(&c->refs, 1);
	}
	return c;
}

bool tls_creds_is_server(const struct tls_creds *c)
{
	return c->server;
}

bool tls_creds_checks_hostname(const struct tls_creds *c)
{
	return !c->psk && !c->server;
}

/* A PEM file larger than this is not a certificate, CA bundle or key. */
#define MAX_CRED_FILE (1u << 20)

/*
 * @dir/@name read into @out (gnutls_free it) through the path policy,
 * opened without waiting (a FIFO fails instead of blocking the control
 * thread) and only if it is a regular file. 1 if read, 0 if it does not
 * exist and is @optional, < 0 on error.
 */
static int cred_file(const char *dir, const char *name, bool optional, gnutls_datum_t *out,
		     char *path, size_t size, struct error **errp)
{
	struct stat st;
	ssize_t n;
	int fd;

	if ((size_t)snprintf(path, size, "%s/%s", dir, name) >= size) {
		return error_set(errp, ENAMETOOLONG, "credentials path too long: %s", dir);
	}
	fd = pathpol_open(path, O_RDONLY | O_NONBLOCK, 0);
	if (fd == -PATHPOL_DENIED) {
		return pathpol_denied("TLS credentials", path, errp);
	}
	if (fd == -ENOENT && optional) {
		return 0;
	}
	if (fd < 0) {
		/* QEMU's words (crypto/tlscredsx509.c). */
		return error_set(errp, -fd, "Unable to access credentials %s: %s", path,
				 strerror(-fd));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_CRED_FILE) {
		close(fd);
		return error_set(errp, EINVAL,
				 "Unable to access credentials %s: not a regular file of at most "
				 "%u bytes",
				 path, MAX_CRED_FILE);
	}
	out->data = gnutls_malloc((size_t)st.st_size + 1);
	if (!out->data) {
		close(fd);
		return error_set(errp, ENOMEM, "out of memory");
	}
	n = pread(fd, out->data, (size_t)st.st_size, 0);
	close(fd);
	if (n != st.st_size) {
		gnutls_free(out->data);
		out->data = NULL;
		return error_set(errp, n < 0 ? errno : EIO, "Unable to read credentials %s", path);
	}
	out->size = (unsigned)n;
	return 1;
}

static int load(struct tls_creds *c, const char *dir, struct error **errp)
{
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	const char *role = c->server ? "server" : "client";
	char cert_name[32], key_name[32];
	gnutls_datum_t ca_pem = {0}, cert_pem = {0}, key_pem = {0};
	int r, have_cert, have_key;

	snprintf(cert_name, sizeof(cert_name), "%s-cert.pem", role);
	snprintf(key_name, sizeof(key_name), "%s-key.pem", role);
	r = cred_file(dir, "ca-cert.pem", false, &ca_pem, ca, sizeof(ca), errp);
	if (r < 0) {
		goto out;
	}
	/* A server needs its pair; a client's is optional (a server with verify-peer wants it). */
	have_cert = r = cred_file(dir, cert_name, !c->server, &cert_pem, cert, sizeof(cert), errp);
	if (r < 0) {
		goto out;
	}
	have_key = r = cred_file(dir, key_name, !c->server, &key_pem, key, sizeof(key), errp);
	if (r < 0) {
		goto out;
	}
	if (gnutls_certificate_allocate_credentials(&c->x509) < 0) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}
	gnutls_certificate_set_verify_function(c->x509, verify_cb);
	r = gnutls_certificate_set_x509_trust_mem(c->x509, &ca_pem, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		r = error_set(errp, EINVAL, "Unable to load CA certificate %s: %s", ca,
			      gnutls_strerror(r));
		goto out;
	}
	r = 0;
	if (have_cert && have_key) {
		r = gnutls_certificate_set_x509_key_mem(c->x509, &cert_pem, &key_pem,
							GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			r = error_set(errp, EINVAL, "Unable to load certificate %s and key %s: %s",
				      cert, key, gnutls_strerror(r));
		}
	}
out:
	gnutls_free(ca_pem.data);
	gnutls_free(cert_pem.data);
	gnutls_free(key_pem.data);
	return r < 0 ? r : 0;
}

/*
 * The hex key of @user in the PSK file @keys (lines "username:hexkey", as
 * QEMU's and GnuTLS's): *@ret_hex and *@ret_len, or -ENOENT.
 */
static int psk_find(const gnutls_datum_t *keys, const char *user, const char **ret_hex,
		    size_t *ret_len)
{
	const char *p = (const char *)keys->data, *end = p + keys->size;
	size_t ulen = strlen(user);

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		size_t len = (size_t)(eol - p);

		if (len > 0 && p[len - 1] == '\r') {
			len--;
		}
		if (len > ulen && memcmp(p, user, ulen) == 0 && p[ulen] == ':') {
			*ret_hex = p + ulen + 1;
			*ret_len = len - ulen - 1;
			return 0;
		}
		p = eol + 1;
	}
	return -ENOENT;
}

/*
 * GnuTLS's question to a PSK server, on the migration worker during the
 * handshake: the key of the client's identity @username, from the file
 * read at object-add. -1 (the handshake fails) for an unknown identity or
 * a malformed key, as GnuTLS's own file lookup (which QEMU uses).
 */
static int psk_server_key(gnutls_session_t s, const char *username, gnutls_datum_t *key)
{
	struct tls_session *t = gnutls_session_get_ptr(s);
	gnutls_datum_t hex;
	const char *h;
	size_t len;

	if (psk_find(&t->creds->keys, username, &h, &len) < 0) {
		t->unknown_psk = true;
		return -1;
	}
	if (len == 0 || len > UINT_MAX) {
		return -1;
	}
	hex.data = (unsigned char *)h;
	hex.size = (unsigned)len;
	return gnutls_hex_decode2(&hex, key) < 0 ? -1 : 0;
}

static int load_psk(struct tls_creds *c, const char *dir, struct error **errp)
{
	char path[PATH_MAX];
	gnutls_datum_t keys = {0}, hex;
	const char *h;
	size_t len;
	int r;

	r = cred_file(dir, PSK_FILE, false, &keys, path, sizeof(path), errp);
	if (r < 0) {
		return r;
	}
	if (c->server) {
		if (gnutls_psk_allocate_server_credentials(&c->psk_server) < 0) {
			gnutls_free(keys.data);
			return error_set(errp, ENOMEM, "out of memory");
		}
		gnutls_psk_set_server_credentials_function(c->psk_server, psk_server_key);
		/* The DHE-PSK group: RFC 7919's, no dh-params.pem (ECDHE-PSK comes first). */
		gnutls_psk_set_server_known_dh_params(c->psk_server, GNUTLS_SEC_PARAM_MEDIUM);
		c->keys = keys;
		return 0;
	}
	if (psk_find(&keys, c->username, &h, &len) < 0) {
		gnutls_free(keys.data);
		/* QEMU's words (crypto/tlscredspsk.c). */
		return error_set(errp, ENOENT, "Username %s not found in PSK file %s", c->username,
				 path);
	}
	hex.data = (unsigned char *)h;
	hex.size = (unsigned)len;
	r = gnutls_psk_allocate_client_credentials(&c->psk_client);
	if (r == 0) {
		r = gnutls_psk_set_client_credentials(c->psk_client, c->username, &hex,
						      GNUTLS_PSK_KEY_HEX);
	}
	gnutls_free(keys.data);
	if (r < 0) {
		return error_set(errp, EINVAL, "Cannot set PSK client credentials: %s",
				 gnutls_strerror(r));
	}
	return 0;
}

/*
 * The members @args may have for @psk (the schema has checked their JSON
 * types; object-add's members are those of every qom-type): QEMU's errors.
 */
static int check_keys(json_t *args, bool psk, struct error **errp)
{
	static const char *const x509_keys[] = {"qom-type", "id", "dir", "endpoint", "verify-peer"};
	const char *key;
	json_t *v;

	json_object_foreach (args, key, v) {
		bool ok = psk && strcmp(key, "username") == 0;

		for (size_t i = 0; i < sizeof(x509_keys) / sizeof(x509_keys[0]); i++) {
			ok |= strcmp(key, x509_keys[i]) == 0;
		}
		if (!ok) {
			return error_set(errp, EINVAL, "Parameter '%s' is unexpected", key);
		}
	}
	return 0;
}

bool tls_object_exists(const char *id)
{
	return find(id) != NULL;
}

int tls_object_add_prepare(json_t *args, struct tls_creds **ret, struct error **errp)
{
	const char *type = json_string_value(json_object_get(args, "qom-type"));
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *dir = json_string_value(json_object_get(args, "dir"));
	const char *endpoint = json_string_value(json_object_get(args, "endpoint"));
	const char *user = json_string_value(json_object_get(args, "username"));
	json_t *vp = json_object_get(args, "verify-peer");
	bool psk = strcmp(type, "tls-creds-psk") == 0, server;
	struct tls_creds *c;
	int r;

	/* QEMU's order: the type, the members, the id, then the object's own checks. */
	if (!psk && strcmp(type, "tls-creds-x509") != 0) {
		return error_set(errp, EINVAL, "Parameter 'qom-type' does not accept value '%s'",
				 type);
	}
	r = check_keys(args, psk, errp);
	if (r < 0) {
		return r;
	}
	if (endpoint && strcmp(endpoint, "client") != 0 && strcmp(endpoint, "server") != 0) {
		return error_set(errp, EINVAL, "Parameter 'endpoint' does not accept value '%s'",
				 endpoint);
	}
	/* QEMU's defaults: endpoint client, verify-peer on, PSK username "qemu". */
	server = endpoint && strcmp(endpoint, "server") == 0;
	if (find(id) || authz_exists(id)) {
		return error_set(errp, EEXIST,
				 "attempt to add duplicate property '%s' to object (type "
				 "'container')",
				 id);
	}
	if (!dir) {
		return error_set(errp, EINVAL, "Missing 'dir' property value");
	}
	if (psk && server && user) {
		return error_set(errp, EINVAL, "username should not be set when endpoint=server");
	}
	if (user && strlen(user) > PSK_MAX_USERNAME) {
		return error_set(errp, EINVAL, "Parameter 'username' is longer than %u bytes",
				 PSK_MAX_USERNAME);
	}
	if (n_objects >= MAX_OBJECTS) {
		return error_set(errp, ENOSPC, "at most %u objects", MAX_OBJECTS);
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->id = strdup(id)) || !(c->dir = strdup(dir)) ||
	    (psk && !server && !(c->username = strdup(user ? user : PSK_DEFAULT_USERNAME)))) {
		if (c) {
			free(c->dir);
			free(c->id);
			free(c);
		}
		return error_set(errp, ENOMEM, "out of memory");
	}
	c->refs = 2; /* the list's and the load's */
	c->loading = true;
	c->psk = psk;
	c->server = server;
	c->verify_peer = !vp || json_is_true(vp);
	/* The id is taken from now on: a second object-add meanwhile is a duplicate. */
	list_add_tail(&c->link, &objects);
	n_objects++;
	*ret = c;
	return 0;
}

int tls_object_add_load(struct tls_creds *c, struct error **errp)
{
	return c->psk ? load_psk(c, c->dir, errp) : load(c, c->dir, errp);
}

void tls_object_add_finish(struct tls_creds *c, int r)
{
	if (r < 0) {
		list_del(&c->link);
		n_objects--;
		tls_creds_put(c);
	} else {
		c->loading = false;
		log_info("TLS credentials '%s' (%s %s) loaded from %s", c->id,
			 c->psk ? "PSK" : "x509", c->server ? "server" : "client", c->dir);
	}
	tls_creds_put(c);
}

int tls_object_del(const char *id, struct error **errp)
{
	struct tls_creds *c = find(id);

	if (!c) {
		return error_set(errp, ENOENT, "object '%s' not found", id);
	}
	if (c->loading) {
		return error_set(errp, EBUSY, "object '%s' is still being loaded", id);
	}
	/* A migration using them keeps its reference, as QEMU's does. */
	list_del(&c->link);
	n_objects--;
	tls_creds_put(c);
	return 0;
}

/* The peer's certificate against our CA (and @hostname for a client); QEMU's messages. */
static int check_peer(struct tls_session *t, const char *hostname, struct error **errp)
{
	const gnutls_datum_t *certs;
	unsigned status = 0, n = 0;
	gnutls_x509_crt_t crt;
	int r;

	r = gnutls_certificate_verify_peers2(t->s, &status);
	if (r < 0) {
		return error_set(errp, EACCES, "Verify failed: %s", gnutls_strerror(r));
	}
	if (status) {
		if (status & GNUTLS_CERT_INVALID) {
			if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
				return error_set(errp, EACCES,
						 "The certificate hasn't got a known issuer");
			}
			if (status & GNUTLS_CERT_REVOKED) {
				return error_set(errp, EACCES, "The certificate has been revoked");
			}
			if (status & GNUTLS_CERT_INSECURE_ALGORITHM) {
				return error_set(errp, EACCES,
						 "The certificate uses an insecure algorithm");
			}
			return error_set(errp, EACCES, "The certificate is not trusted");
		}
		return error_set(errp, EACCES, "The certificate is not trusted");
	}
	certs = gnutls_certificate_get_peers(t->s, &n);
	if (!certs || n == 0) {
		return error_set(errp, EACCES, "No certificate peers");
	}
	if (!hostname) {
		return 0;
	}
	if (gnutls_x509_crt_init(&crt) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
	if (r < 0) {
		gnutls_x509_crt_deinit(crt);
		return error_set(errp, EACCES, "Unable to import certificate: %s",
				 gnutls_strerror(r));
	}
	r = gnutls_x509_crt_check_hostname(crt, hostname);
	gnutls_x509_crt_deinit(crt);
	if (!r) {
		return error_set(errp, EACCES, "Certificate does not match the hostname %s",
				 hostname);
	}
	return 0;
}

/* The peer's identity for tls-authz into @buf: its certificate's DN, or its PSK username. */
static int peer_identity(struct tls_session *t, char *buf, size_t size, struct error **errp)
{
	const gnutls_datum_t *certs;
	gnutls_x509_crt_t crt;
	unsigned n = 0;
	int r;

	if (t->creds->psk) {
		const char *user = gnutls_psk_server_get_username(t->s);

		if (!user || strlen(user) >= size) {
			return error_set(errp, EACCES, "No PSK username available");
		}
		strcpy(buf, user);
		return 0;
	}
	certs = gnutls_certificate_get_peers(t->s, &n);
	if (!certs || n == 0) {
		return error_set(errp, EACCES, "No certificate peers");
	}
	if (gnutls_x509_crt_init(&crt) < 0) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
	if (r == 0) {
		r = gnutls_x509_crt_get_dn(crt, buf, &size);
	}
	gnutls_x509_crt_deinit(crt);
	if (r < 0) {
		return error_set(errp, EACCES, "Cannot get client distinguished name: %s",
				 gnutls_strerror(r));
	}
	return 0;
}

/*
 * A server's tls-authz check of its client, after the handshake (as
 * QEMU's): 0 if the object @authz allows the client's identity, else
 * QEMU's "TLS x509 authz check for DN is denied" (PSK: the same words).
 */
static int check_authz(struct tls_session *t, const char *authz, struct error **errp)
{
	char id[1024];
	int r = peer_identity(t, id, sizeof(id), errp);

	if (r == 0) {
		r = authz_is_allowed(authz, id, errp);
	}
	if (r == 0) {
		r = error_set(errp, EACCES, "TLS %s authz check for %s is denied",
			      t->creds->psk ? "PSK" : "x509", id);
	}
	return r < 0 ? r : 0;
}

/*
 * A server refusing its peer says why with @alert, then reads what the
 * peer sent meanwhile (closing with unread data would reset the connection
 * before the alert reaches it) until it closes or DRAIN_MS pass.
 */
static void refuse(struct tls_session *t, gnutls_alert_description_t alert, int err)
{
	char buf[4096];
	int waited = 0;

	if (alert) {
		gnutls_alert_send(t->s, GNUTLS_AL_FATAL, alert);
	} else {
		gnutls_alert_send_appropriate(t->s, err);
	}
	shutdown(t->fd, SHUT_WR);
	while (waited < DRAIN_MS) {
		struct pollfd pfd = {.fd = t->fd, .events = POLLIN};

		if (poll(&pfd, 1, 100) == 0) {
			waited += 100;
			continue;
		}
		if (recv(t->fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0) {
			break;
		}
	}
}

int tls_session_start(struct tls_creds *c, int fd, const char *hostname, const char *authz,
		      struct tls_session **ret, struct error **errp)
{
	struct tls_session *t = calloc(1, sizeof(*t));
	int r;

	if (!t) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	if (gnutls_init(&t->s, c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) < 0) {
		free(t);
		return error_set(errp, ENOMEM, "Cannot initialize TLS session");
	}
	atomic_fetch_add(&c->refs, 1);
	t->creds = c;
	t->fd = fd;
	t->alert = -1;
	t->host = c->server ? NULL : hostname;
	/* tls-authz trusts a client's DN only from a certificate the CA signed. */
	t->verify = !c->psk && (!c->server || c->verify_peer || authz);
	gnutls_session_set_ptr(t->s, t);
	if (c->psk) {
		r = gnutls_priority_set_direct(t->s, PSK_PRIORITY, NULL);
		if (r == 0) {
			r = c->server ? gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, c->psk_server)
				      : gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, c->psk_client);
		}
	} else {
		r = gnutls_set_default_priority(t->s);
		if (r == 0) {
			r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509);
		}
	}
	if (r < 0) {
		tls_session_free(t);
		return error_set(errp, EINVAL, "Cannot set up the TLS session: %s",
				 gnutls_strerror(r));
	}
	/* tls-authz asks about the client's certificate: a server with it wants one. */
	if (c->server && t->verify) {
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
	}
	if (!c->psk && !c->server && hostname) {
		gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, hostname, strlen(hostname));
	}
	gnutls_transport_set_int(t->s, fd);
	gnutls_handshake_set_timeout(t->s, HANDSHAKE_TIMEOUT_MS);
	do {
		r = gnutls_handshake(t->s);
	} while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		if (t->verr) {
			r = error_set(errp, t->verr->code, "%s", t->verr->msg);
		} else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
			r = error_set(errp, EPROTO, "TLS handshake failed: %s (%s)",
				      gnutls_strerror(r),
				      gnutls_alert_get_name(gnutls_alert_get(t->s)));
		} else if (t->unknown_psk) {
			/*
			 * Said plainly on both sides: the keys file lacks the
			 * client's name (not repeated: it is the peer's string).
			 */
			refuse(t, GNUTLS_A_UNKNOWN_PSK_IDENTITY, r);
			r = error_set(errp, EACCES,
				      "TLS handshake failed: the client's PSK identity is not in "
				      "%s/" PSK_FILE,
				      c->dir);
		} else {
			if (c->server) {
				refuse(t, 0, r);
			}
			r = error_set(errp, EPROTO, "TLS handshake failed: %s", gnutls_strerror(r));
		}
		tls_session_free(t);
		return r;
	}
	if (t->verify && !t->checked) {
		r = check_peer(t, c->server ? NULL : hostname, errp);
		if (r < 0) {
			tls_session_free(t);
			return r;
		}
	}
	if (c->server && authz) {
		r = check_authz(t, authz, errp);
		if (r < 0) {
			refuse(t, GNUTLS_A_ACCESS_DENIED, 0);
			tls_session_free(t);
			return r;
		}
	}
	*ret = t;
	return 0;
}

const char *tls_session_alert(const struct tls_session *t)
{
	return t->alert >= 0 ? gnutls_alert_get_name((gnutls_alert_description_t)t->alert) : NULL;
}

ssize_t tls_session_send(struct tls_session *t, const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = gnutls_record_send(t->s, buf, len);
	} while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	return n < 0 ? -EPIPE : n;
}

ssize_t tls_session_recv(struct tls_session *t, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = gnutls_record_recv(t->s, buf, len);
	} while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	if (n == GNUTLS_E_PREMATURE_TERMINATION) {
		return 0;
	}
	if (n == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		t->alert = (int)gnutls_alert_get(t->s);
		return t->alert == GNUTLS_A_ACCESS_DENIED ? -EACCES : -ECONNRESET;
	}
	return n < 0 ? -ECONNRESET : n;
}

void tls_session_free(struct tls_session *t)
{
	if (!t) {
		return;
	}
	gnutls_deinit(t->s);
	tls_creds_put(t->creds);
	error_free(t->verr);
	free(t);
}
