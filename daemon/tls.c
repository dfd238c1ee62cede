/*
 * TLS credentials and sessions for migration (daemon/tls.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "common/list.h"
#include "common/log.h"
#include "common/pathpol.h"
#include "daemon/tls.h"

#define MAX_OBJECTS 64
#define HANDSHAKE_TIMEOUT_MS 30000

struct tls_creds {
	struct list_head link;
	_Atomic unsigned refs;
	char *id;
	char *dir;    /* while loading */
	bool loading; /* object-add's files are read on a worker: not usable yet */
	bool server, verify_peer;
	gnutls_certificate_credentials_t x509;
};

struct tls_session {
	gnutls_session_t s;
	struct tls_creds *creds;
	const char *host;   /* a client's name to check, or NULL */
	bool checked;	    /* the peer's certificate went through check_peer */
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
	if (!t->creds->server || t->creds->verify_peer) {
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
		gnutls_certificate_free_credentials(c->x509);
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

int tls_object_add_prepare(json_t *args, struct tls_creds **ret, struct error **errp)
{
	const char *type = json_string_value(json_object_get(args, "qom-type"));
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *dir = json_string_value(json_object_get(args, "dir"));
	const char *endpoint = json_string_value(json_object_get(args, "endpoint"));
	json_t *vp = json_object_get(args, "verify-peer");
	struct tls_creds *c;

	if (strcmp(type, "tls-creds-x509") != 0) {
		return error_set(errp, EINVAL, "invalid object type: %s", type);
	}
	if (find(id)) {
		return error_set(errp, EEXIST,
				 "attempt to add duplicate property '%s' to object (type "
				 "'container')",
				 id);
	}
	if (endpoint && strcmp(endpoint, "client") != 0 && strcmp(endpoint, "server") != 0) {
		return error_set(errp, EINVAL, "Parameter 'endpoint' does not accept value '%s'",
				 endpoint);
	}
	if (!dir) {
		return error_set(errp, EINVAL, "Parameter 'dir' is missing");
	}
	if (n_objects >= MAX_OBJECTS) {
		return error_set(errp, ENOSPC, "at most %u objects", MAX_OBJECTS);
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->id = strdup(id)) || !(c->dir = strdup(dir))) {
		if (c) {
			free(c->id);
			free(c);
		}
		return error_set(errp, ENOMEM, "out of memory");
	}
	c->refs = 2; /* the list's and the load's */
	c->loading = true;
	/* QEMU's defaults: endpoint client, verify-peer on. */
	c->server = endpoint && strcmp(endpoint, "server") == 0;
	c->verify_peer = !vp || json_is_true(vp);
	/* The id is taken from now on: a second object-add meanwhile is a duplicate. */
	list_add_tail(&c->link, &objects);
	n_objects++;
	*ret = c;
	return 0;
}

int tls_object_add_load(struct tls_creds *c, struct error **errp)
{
	return load(c, c->dir, errp);
}

void tls_object_add_finish(struct tls_creds *c, int r)
{
	if (r < 0) {
		list_del(&c->link);
		n_objects--;
		tls_creds_put(c);
	} else {
		c->loading = false;
		log_info("TLS credentials '%s' (%s) loaded from %s", c->id,
			 c->server ? "server" : "client", c->dir);
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

int tls_session_start(struct tls_creds *c, int fd, const char *hostname, struct tls_session **ret,
		      struct error **errp)
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
	t->host = c->server ? NULL : hostname;
	gnutls_session_set_ptr(t->s, t);
	r = gnutls_set_default_priority(t->s);
	if (r == 0) {
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509);
	}
	if (r < 0) {
		tls_session_free(t);
		return error_set(errp, EINVAL, "Cannot set up the TLS session: %s",
				 gnutls_strerror(r));
	}
	if (c->server && c->verify_peer) {
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
	}
	if (!c->server && hostname) {
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
		} else {
			r = error_set(errp, EPROTO, "TLS handshake failed: %s", gnutls_strerror(r));
		}
		tls_session_free(t);
		return r;
	}
	if (!t->checked && (!c->server || c->verify_peer)) {
		r = check_peer(t, c->server ? NULL : hostname, errp);
		if (r < 0) {
			tls_session_free(t);
			return r;
		}
	}
	*ret = t;
	return 0;
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
