/*
 * libFuzzer target: the NBD server (daemon/nbd-server.c) as a network
 * client drives it. The input is what a client sends on a connection,
 * from its flags after the greeting: options, then requests with their
 * data. The server serves two exports of one 1 MiB raw image, "w"
 * (writable) and "r" (read-only); the harness reads every answer and
 * ends its side after the input, so the connection must end, whatever
 * the bytes (no hang: libFuzzer's timeout; no overflow: ASan).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/nbd-server.h"
#include "vmmd/block.h"

#define IMAGE_SIZE (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct nbd_server *server;

static void setup(void)
{
	char path[] = "/tmp/fuzz-nbd-server.XXXXXX";
	struct nbd_server_config cfg = {.max_connections = 4, .vm = "fuzz"};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	int fd = mkstemp(path), sv[2];

	log_set_level(LOG_ERR); /* not a line per client dropped */
	if (fd < 0 || ftruncate(fd, IMAGE_SIZE) < 0 ||
	    block_open(&bs, path, "raw", BLOCK_O_RDWR, &err) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "fuzz-nbd-server: set-up failed: %s\n", err ? err->msg : "?");
		abort();
	}
	close(fd);
	unlink(path);
	/* a listening socket nobody connects to: clients come by nbd_server_serve_fd */
	if (nbd_server_start(sv[0], &cfg, &server, &err) < 0 ||
	    nbd_server_add(
		    server,
		    &(struct nbd_export_config){
			    .id = "w", .name = "w", .node_name = "n", .bs = bs, .writable = true},
		    &err) < 0 ||
	    nbd_server_add(server,
			   &(struct nbd_export_config){.id = "r",
						       .name = "r",
						       .description = "read-only",
						       .node_name = "n",
						       .bs = bs},
			   &err) < 0) {
		fprintf(stderr, "fuzz-nbd-server: %s\n", err->msg);
		abort();
	}
	block_unref(bs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t sink[1 << 16];
	size_t sent = 0;
	int sv[2];

	if (!server) {
		setup();
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
		abort();
	}
	nbd_server_serve_fd(server, sv[0]);
	if (size == 0) {
		shutdown(sv[1], SHUT_WR);
	}
	/* send the input while reading the answers, then end; read until the server ends */
	for (;;) {
		struct pollfd p = {.fd = sv[1], .events = POLLIN | (sent < size ? POLLOUT : 0)};
		ssize_t n;

		if (poll(&p, 1, -1) < 0 && errno != EINTR) {
			abort();
		}
		if (p.revents & POLLOUT) {
			n = send(sv[1], data + sent, size - sent, MSG_NOSIGNAL);
			sent += n > 0 ? (size_t)n : size - sent; /* the server went: stop sending */
			if (sent == size) {
				shutdown(sv[1], SHUT_WR);
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(sv[1], sink, sizeof(sink), 0);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				break;
			}
		}
	}
	close(sv[1]);
	return 0;
}
