/*
 * qmp-load: the control-plane load generator of the benchmarks
 * (tests/bench/README, figure 4). N client threads, one QMP connection each,
 * each sending one command at a time for a fixed duration and timing every
 * round trip; prints one JSON line with the totals and percentiles.
 *
 *   qmp-load [--duration S] [--clients N] [--vms N] [--vm-prefix P] SOCKET...
 *
 * With --vms N each request is query-status with "vm": "<P><k>", k cycling
 * from the client's index over 0..N-1 (vmmd); without it, plain query-status
 * (QEMU). Client i connects to SOCKET number i modulo the number given.
 *
 * Threads: the main thread parses options, starts the clients, waits on a
 * barrier, joins them and reports. Each client thread owns its connection
 * and its latency array; nothing else is shared but the barrier.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMPLOAD_MAX_CLIENTS 256
#define QMPLOAD_MAX_VMS 100000
#define QMPLOAD_MAX_SAMPLES (1u << 20) /* per client */
#define QMPLOAD_BUF 65536
#define QMPLOAD_TIMEOUT_S 30

struct qmpload_client {
	pthread_t thread;
	unsigned index;
	const char *path;
	int fd;
	char buf[QMPLOAD_BUF];
	size_t len;
	double *lat_us;
	size_t n_lat;
	char err[256];
};

static double opt_duration = 1.0;
static unsigned opt_vms;
static const char *opt_prefix = "vm";
static pthread_barrier_t start_barrier;

static double qmpload_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int qmpload_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Next server line (without CRLF) into @line (NUL-terminated, truncated to
 * @size). Returns 0, -EPIPE on EOF, -EMSGSIZE if a line exceeds the buffer.
 */
static int qmpload_read_line(struct qmpload_client *c, char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);

		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			size_t keep = n < size - 1 ? n : size - 1;

			memcpy(line, c->buf, keep);
			line[keep] = '\0';
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			return 0;
		}
		if (c->len == sizeof(c->buf)) {
			return -EMSGSIZE;
		}
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);

		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
			return -errno;
		}
		if (r == 0) {
			return -EPIPE;
		}
		c->len += (size_t)r;
	}
}

/* Read lines until a reply (events are skipped); 0 for "return", -EPROTO else. */
static int qmpload_reply(struct qmpload_client *c, char *line, size_t size)
{
	for (;;) {
		int r = qmpload_read_line(c, line, size);

		if (r < 0) {
			return r;
		}
		if (strstr(line, "\"event\"") && !strstr(line, "\"return\"")) {
			continue;
		}
		return strncmp(line, "{\"return\"", 9) == 0 ? 0 : -EPROTO;
	}
}

static int qmpload_connect(struct qmpload_client *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char line[512];
	static const char caps[] = "{\"execute\": \"qmp_capabilities\"}\n";
	struct timeval timeout = {.tv_sec = QMPLOAD_TIMEOUT_S};

	if (strlen(c->path) >= sizeof(sa.sun_path)) {
		snprintf(c->err, sizeof(c->err), "socket path too long: %s", c->path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, c->path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(c->err, sizeof(c->err), "connect %s: %s", c->path, strerror(errno));
		return -errno;
	}
	/* A server that never answers (QEMU serves one client per QMP socket) fails the run. */
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0) {
		snprintf(c->err, sizeof(c->err), "SO_RCVTIMEO: %s", strerror(errno));
		return -errno;
	}
	if (qmpload_read_line(c, line, sizeof(line)) < 0 || !strstr(line, "\"QMP\"")) {
		snprintf(c->err, sizeof(c->err), "no QMP greeting on %s", c->path);
		return -EPROTO;
	}
	if (qmpload_write_all(c->fd, caps, sizeof(caps) - 1) < 0 ||
	    qmpload_reply(c, line, sizeof(line)) < 0) {
		snprintf(c->err, sizeof(c->err), "qmp_capabilities failed on %s: %.200s", c->path,
			 line);
		return -EPROTO;
	}
	return 0;
}

static void *qmpload_client_main(void *opaque)
{
	struct qmpload_client *c = opaque;
	char line[4096];
	char req[256];
	unsigned k = c->index;
	int ok = qmpload_connect(c) == 0;
	double end;

	/* Every client waits here, connected or not, so nobody waits forever. */
	pthread_barrier_wait(&start_barrier);
	if (!ok) {
		return NULL;
	}
	c->lat_us = malloc(QMPLOAD_MAX_SAMPLES * sizeof(double));
	if (!c->lat_us) {
		snprintf(c->err, sizeof(c->err), "out of memory");
		return NULL;
	}
	end = qmpload_now() + opt_duration;
	while (c->n_lat < QMPLOAD_MAX_SAMPLES) {
		int n;

		if (opt_vms) {
			n = snprintf(req, sizeof(req),
				     "{\"execute\": \"query-status\", \"arguments\": "
				     "{\"vm\": \"%s%u\"}}\n",
				     opt_prefix, k % opt_vms);
			k++;
		} else {
			n = snprintf(req, sizeof(req), "{\"execute\": \"query-status\"}\n");
		}
		double t0 = qmpload_now();

		if (qmpload_write_all(c->fd, req, (size_t)n) < 0) {
			snprintf(c->err, sizeof(c->err), "write: %s", strerror(errno));
			return NULL;
		}
		int r = qmpload_reply(c, line, sizeof(line));
		double t1 = qmpload_now();

		if (r < 0) {
			snprintf(c->err, sizeof(c->err), "%s: %.200s",
				 r == -EPROTO ? "error reply" : strerror(-r), line);
			return NULL;
		}
		c->lat_us[c->n_lat++] = (t1 - t0) * 1e6;
		if (t1 >= end) {
			break;
		}
	}
	return NULL;
}

static int qmpload_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted @v (n > 0). */
static double qmpload_pct(const double *v, size_t n, double p)
{
	size_t k = (size_t)((p / 100.0) * (double)n + 0.999999999);

	if (k < 1) {
		k = 1;
	}
	if (k > n) {
		k = n;
	}
	return v[k - 1];
}

static void qmpload_usage(FILE *f)
{
	fprintf(f, "Usage: qmp-load [--duration S] [--clients N] [--vms N] [--vm-prefix P] "
		   "SOCKET...\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"duration", required_argument, NULL, 'd'},
		{"clients", required_argument, NULL, 'c'},
		{"vms", required_argument, NULL, 'n'},
		{"vm-prefix", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct qmpload_client *clients;
	unsigned n_clients = 1;
	size_t total = 0, at = 0;
	double *all, t0, wall;
	int o, rc = 0;

	while ((o = getopt_long(argc, argv, "d:c:n:p:h", opts, NULL)) != -1) {
		switch (o) {
		case 'd':
			opt_duration = strtod(optarg, NULL);
			if (!(opt_duration > 0 && opt_duration <= 3600)) {
				fprintf(stderr, "qmp-load: --duration must be in (0, 3600]\n");
				return 2;
			}
			break;
		case 'c':
			n_clients = (unsigned)strtoul(optarg, NULL, 10);
			if (n_clients < 1 || n_clients > QMPLOAD_MAX_CLIENTS) {
				fprintf(stderr, "qmp-load: --clients must be 1..%d\n",
					QMPLOAD_MAX_CLIENTS);
				return 2;
			}
			break;
		case 'n':
			opt_vms = (unsigned)strtoul(optarg, NULL, 10);
			if (opt_vms > QMPLOAD_MAX_VMS) {
				fprintf(stderr, "qmp-load: --vms must be 0..%d\n", QMPLOAD_MAX_VMS);
				return 2;
			}
			break;
		case 'p':
			if (strlen(optarg) > 64) {
				fprintf(stderr, "qmp-load: --vm-prefix is longer than 64 bytes\n");
				return 2;
			}
			opt_prefix = optarg;
			break;
		case 'h':
			qmpload_usage(stdout);
			return 0;
		default:
			qmpload_usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		qmpload_usage(stderr);
		return 2;
	}
	clients = calloc(n_clients, sizeof(*clients));
	if (!clients) {
		return 1;
	}
	pthread_barrier_init(&start_barrier, NULL, n_clients + 1);
	for (unsigned i = 0; i < n_clients; i++) {
		clients[i].index = i;
		clients[i].fd = -1;
		clients[i].path = argv[optind + (int)(i % (unsigned)(argc - optind))];
		if (pthread_create(&clients[i].thread, NULL, qmpload_client_main, &clients[i])) {
			fprintf(stderr, "qmp-load: cannot start client thread %u\n", i);
			exit(1);
		}
	}
	pthread_barrier_wait(&start_barrier);
	t0 = qmpload_now();
	for (unsigned i = 0; i < n_clients; i++) {
		pthread_join(clients[i].thread, NULL);
	}
	wall = qmpload_now() - t0;
	for (unsigned i = 0; i < n_clients; i++) {
		if (clients[i].err[0]) {
			fprintf(stderr, "qmp-load: client %u: %s\n", i, clients[i].err);
			rc = 1;
		}
		total += clients[i].n_lat;
	}
	if (rc || total == 0) {
		return 1;
	}
	all = malloc(total * sizeof(double));
	if (!all) {
		return 1;
	}
	for (unsigned i = 0; i < n_clients; i++) {
		memcpy(all + at, clients[i].lat_us, clients[i].n_lat * sizeof(double));
		at += clients[i].n_lat;
		free(clients[i].lat_us);
		if (clients[i].fd >= 0) {
			close(clients[i].fd);
		}
	}
	qsort(all, total, sizeof(double), qmpload_cmp);
	printf("{\"clients\": %u, \"requests\": %zu, \"wall_s\": %.6f, \"rps\": %.1f, "
	       "\"p50_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f}\n",
	       n_clients, total, wall, (double)total / wall, qmpload_pct(all, total, 50),
	       qmpload_pct(all, total, 99), all[total - 1]);
	free(all);
	free(clients);
	return 0;
}
