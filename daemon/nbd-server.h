/*
 * A VM's NBD server (QEMU's nbd-server-start, nbd-server-add,
 * nbd-server-remove, nbd-server-stop, block-export-add, block-export-del,
 * query-block-exports; docs/nbd-server.md): the NBD protocol's fixed
 * newstyle handshake and simple replies, serving block nodes of the VM.
 *
 * Threads: a listener thread accepts connections and starts a thread for
 * each, which negotiates (within NBD_HANDSHAKE_SECONDS, or the client is
 * dropped) and then serves its requests one at a time with the block
 * layer's synchronous calls. nbd_server_listen, nbd_server_start and
 * nbd_server_free block (name resolution, joins): worker threads only.
 * The export functions take a lock and never wait for I/O or a peer:
 * control thread. An export's node is released, and its deleted callback
 * called, by the thread that drops its last use (a connection's, or the
 * listener's): never by the control thread.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "common/error.h"

struct block_node;
struct nbd_server;

/* Connections at once when nbd-server-start gives no max-connections. */
#define NBD_SERVER_DEFAULT_CONNECTIONS 100
/* The most a client may ask for. */
#define NBD_SERVER_MAX_CONNECTIONS 1000
/* A client that has not finished its handshake by then is dropped. */
#define NBD_HANDSHAKE_SECONDS 10
/* The protocol's bound on names and descriptions (QEMU's NBD_MAX_STRING_SIZE). */
#define NBD_MAX_STRING 4096
/* The largest read or write served (QEMU's NBD_MAX_BUFFER_SIZE). */
#define NBD_MAX_REQUEST (32u << 20)

struct nbd_server_config {
	unsigned max_connections; /* 0: NBD_SERVER_DEFAULT_CONNECTIONS */
	/* an export has gone (BLOCK_EXPORT_DELETED); on a server thread */
	void (*deleted)(void *opaque, const char *vm, const char *id);
	void *opaque;
	/* the VM's seccomp flag: the server's threads work for it (sandbox.h) */
	int *violation_flag;
	const char *vm; /* for the log and the callback (copied) */
};

/*
 * A listening socket for QEMU's SocketAddressLegacy @addr:
 * {"type": "inet", "data": {"host", "port"}} or
 * {"type": "unix", "data": {"path"}} (the path under the host path policy).
 * Returns the fd or -errno with a message.
 */
int nbd_server_listen(json_t *addr, struct error **errp);

/*
 * A client connected on @fd (taken): served as one the listener accepted
 * (tests/fuzz/fuzz-nbd-server.c). Any thread.
 */
void nbd_server_serve_fd(struct nbd_server *s, int fd);

/* Serve on @fd (taken, even on failure) with @cfg (copied). */
int nbd_server_start(int fd, const struct nbd_server_config *cfg, struct nbd_server **ret,
		     struct error **errp);

/*
 * Stop: no new connection, every client disconnected, every export
 * deleted (its callback called), the threads joined. NULL is fine. The
 * memory stays while a nbd_server_get() holds it (for nbd_server_reap,
 * which then finds nothing to do); nbd_server_put drops that hold.
 */
void nbd_server_free(struct nbd_server *s);
struct nbd_server *nbd_server_get(struct nbd_server *s);
void nbd_server_put(struct nbd_server *s);

struct nbd_export_config {
	const char *id;		 /* block-export id (nbd-server-add: the name) */
	const char *name;	 /* the NBD export name */
	const char *description; /* may be NULL */
	const char *node_name;	 /* for query-block-exports */
	struct block_node *bs;	 /* a reference is taken on success */
	bool writable;
	bool writethrough; /* flush after every write */
};

/* QEMU's checks: the id and the name must be new ("... already ..."). */
int nbd_server_add(struct nbd_server *s, const struct nbd_export_config *c, struct error **errp);
/*
 * block-export-del: safe mode refuses an export a client uses; hard mode
 * disconnects its clients. The export is then shutting down: no client
 * may attach; nbd_server_reap (a worker: it may close the node) drops
 * it, or, where clients remain, the last of them when it leaves.
 * Returns 1 if clients were attached, 0 if none, or -errno.
 */
int nbd_server_remove(struct nbd_server *s, const char *id, bool hard, struct error **errp);
void nbd_server_reap(struct nbd_server *s);
/* Whether an export serves @bs (blockdev-del: "in use"). */
bool nbd_server_uses_node(struct nbd_server *s, struct block_node *bs);
/* Whether an export has that id (shutting down or not). */
bool nbd_server_has_export(struct nbd_server *s, const char *id);
/* QEMU's BlockExportInfo list; new reference. */
json_t *nbd_server_query(struct nbd_server *s);
