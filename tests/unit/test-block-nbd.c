/*
 * Tests of the NBD client (block/nbd.c) against real servers: nbdkit
 * (memory and file plugins; error and delay filters) and qemu-nbd.
 * Skipped (77) when neither server is installed.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "block/block-int.h"

static char dir[256], sock[300], uri[400];

static bool have(const char *tool)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* True once a server accepts connections on the UNIX socket @p (bound is not enough). */
static bool listening(const char *p)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (strlen(p) >= sizeof(sa.sun_path)) {
		if (fd >= 0) {
			close(fd);
		}
		return false;
	}
	memcpy(sa.sun_path, p, strlen(p) + 1);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0) {
		close(fd);
	}
	return ok;
}

/* Start a server in the foreground of a child; wait for its socket (or pid file). */
static pid_t try_spawn(const char *const argv[])
{
	pid_t pid;

	unlink(sock);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		struct stat st;

		if (stat(sock, &st) == 0 && (!S_ISSOCK(st.st_mode) || listening(sock))) {
			return pid;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			return -1; /* the server gave up (e.g. its port is taken) */
		}
		usleep(25000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static pid_t spawn(const char *const argv[])
{
	pid_t pid = try_spawn(argv);

	ck_assert_msg(pid > 0, "%s did not create %s", argv[0], sock);
	return pid;
}

static void stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/test-nbd.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/nbd.sock", dir);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
}

static void teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct block_node *open_json(const char *json, struct error **errp)
{
	struct block_node *bs = NULL;
	json_t *opts = json_loads(json, 0, NULL);
	int r;

	ck_assert_ptr_nonnull(opts);
	r = block_open_json(&bs, opts, errp);
	json_decref(opts);
	return r < 0 ? NULL : bs;
}

/*
 * A raw node over the NBD server at sock: @raw_opts are members added to
 * the raw node's object (each after ", "), @nbd_opts to the NBD node's.
 */
static struct block_node *raw_over_nbd(const char *raw_opts, const char *nbd_opts)
{
	struct block_node *bs;
	struct error *err = NULL;
	char json[700];

	snprintf(json, sizeof(json),
		 "{\"driver\": \"raw\"%s, \"file\": {\"driver\": \"nbd\", \"server\": "
		 "{\"type\": \"unix\", \"path\": \"%s\"}%s}}",
		 raw_opts, sock, nbd_opts);
	bs = open_json(json, &err);
	ck_assert_msg(bs, "%s", err ? err->msg : "");
	return bs;
}

START_TEST(nbdkit_memory)
{
	const char *argv[] = {"nbdkit", "-f", "--exit-with-parent", "-U", sock, "memory",
			      "4M",	NULL};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	static char buf[65536], out[65536];
	uint64_t pnum;
	unsigned status;
	pid_t pid;

	if (!have("nbdkit")) {
		return;
	}
	pid = spawn(argv);
	ck_assert_msg(block_open(&bs, uri, "raw", BLOCK_O_RDWR | BLOCK_O_UNMAP, &err) == 0, "%s",
		      err ? err->msg : "");
	ck_assert_uint_eq(block_length(bs), 4 << 20);
	for (size_t i = 0; i < sizeof(buf); i++) {
		buf[i] = (char)(i * 7);
	}
	ck_assert_int_eq(block_pwrite(bs, 1 << 20, buf, sizeof(buf)), 0);
	ck_assert_int_eq(block_pread(bs, 1 << 20, out, sizeof(out)), 0);
	ck_assert_int_eq(memcmp(buf, out, sizeof(buf)), 0);
	/* scattered read across iovec elements */
	{
		struct iovec iov[3] = {{out, 100}, {out + 100, 3000}, {out + 3100, 996}};

		memset(out, 0, sizeof(out));
		ck_assert_int_eq(block_preadv(bs, (1 << 20) + 4, iov, 3), 0);
		ck_assert_int_eq(memcmp(buf + 4, out, 4096), 0);
	}
	ck_assert_int_eq(block_flush(bs), 0);
	/* block status: the memory plugin reports unwritten space as a hole */
	ck_assert_int_eq(block_get_status(bs, 0, 1 << 20, &pnum, &status, NULL), 0);
	ck_assert_msg(status & BLOCK_STATUS_ZERO, "status %x", status);
	ck_assert_int_eq(block_get_status(bs, 1 << 20, 65536, &pnum, &status, NULL), 0);
	ck_assert(status & BLOCK_STATUS_DATA);
	/* zeroes and trim */
	ck_assert_int_eq(block_write_zeroes(bs, 1 << 20, 4096, 0), 0);
	ck_assert_int_eq(block_discard(bs, (1 << 20) + 8192, 4096), 0);
	ck_assert_int_eq(block_pread(bs, 1 << 20, out, sizeof(out)), 0);
	ck_assert_int_eq(out[4095], 0);
	ck_assert_int_eq(out[4096], buf[4096]);
	ck_assert_int_eq(out[8192], 0);
	/* bounds are the export's */
	ck_assert_int_eq(block_pread(bs, 4 << 20, out, 1), -EINVAL);
	block_unref(bs);
	stop(pid);
}
END_TEST

START_TEST(qemu_nbd_file)
{
	char img[300];
	const char *argv[] = {"qemu-nbd", "-f", "raw", "-k", sock, "-t", img, NULL};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	char cmd[700], out[512];
	uint64_t pnum;
	unsigned status;
	pid_t pid;

	if (!have("qemu-nbd") || !have("qemu-io")) {
		return;
	}
	snprintf(img, sizeof(img), "%s/disk.raw", dir);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -f raw %s 8M >/dev/null && "
		 "qemu-io -f raw -c 'write -P 0x42 1M 64k' %s >/dev/null",
		 img, img);
	ck_assert_int_eq(system(cmd), 0);
	pid = spawn(argv);
	ck_assert_msg(block_open(&bs, uri, "raw", 0, &err) == 0, "%s", err ? err->msg : "");
	ck_assert_uint_eq(block_length(bs), 8 << 20);
	ck_assert_int_eq(block_pread(bs, (1 << 20) + 512, out, sizeof(out)), 0);
	ck_assert_int_eq(out[0], 0x42);
	ck_assert_int_eq(out[511], 0x42);
	ck_assert_int_eq(block_pwrite(bs, 0, out, 512), -EPERM);
	/* (qemu-img create allocates the first block of a raw file) */
	ck_assert_int_eq(block_get_status(bs, 65536, 65536, &pnum, &status, NULL), 0);
	ck_assert_msg(status & BLOCK_STATUS_ZERO, "status %x", status);
	ck_assert_int_eq(block_get_status(bs, 1 << 20, 1 << 20, &pnum, &status, NULL), 0);
	ck_assert(status & BLOCK_STATUS_DATA);
	ck_assert_uint_eq(pnum, 65536);
	block_unref(bs);
	stop(pid);
}
END_TEST

START_TEST(nbdkit_error_filter)
{
	const char *argv[] = {"nbdkit",
			      "-f",
			      "--exit-with-parent",
			      "-U",
			      sock,
			      "--filter=error",
			      "memory",
			      "1M",
			      "error-pread=EIO",
			      "error-pread-rate=100%",
			      NULL};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	char out[512];
	pid_t pid;

	if (!have("nbdkit")) {
		return;
	}
	pid = spawn(argv);
	ck_assert_msg(block_open(&bs, uri, "raw", BLOCK_O_RDWR, &err) == 0, "%s",
		      err ? err->msg : "");
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), -EIO);
	/* the connection survives a server-side error */
	ck_assert_int_eq(block_pwrite(bs, 0, out, sizeof(out)), 0);
	block_unref(bs);
	stop(pid);
}
END_TEST

START_TEST(timeout_on_stalled_server)
{
	const char *argv[] = {"nbdkit", "-f", "--exit-with-parent", "-U", sock, "--filter=delay",
			      "memory", "1M", "rdelay=20",	    NULL};
	struct block_node *bs;
	char out[512];
	double t0;
	pid_t pid;

	if (!have("nbdkit")) {
		return;
	}
	pid = spawn(argv);
	bs = raw_over_nbd("", ", \"timeout\": 0.5");
	t0 = now_s();
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), -EIO);
	ck_assert_msg(now_s() - t0 < 3, "took %.1f s", now_s() - t0);
	/* no reconnect configured: later requests fail at once */
	t0 = now_s();
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), -EIO);
	ck_assert(now_s() - t0 < 0.5);
	block_unref(bs);
	stop(pid);
}
END_TEST

/*
 * Closing a node whose server stops answering (stopped here: it never
 * closes the connection after NBD_CMD_DISC) takes the timeout, not for
 * ever.
 */
START_TEST(close_with_stopped_server)
{
	const char *argv[] = {"nbdkit", "-f", "--exit-with-parent", "-U", sock, "memory",
			      "1M",	NULL};
	struct block_node *bs;
	char out[512];
	double t0;
	pid_t pid;

	if (!have("nbdkit")) {
		return;
	}
	pid = spawn(argv);
	bs = raw_over_nbd(", \"read-only\": true", ", \"timeout\": 0.5");
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), 0);
	kill(pid, SIGSTOP);
	t0 = now_s();
	block_unref(bs);
	ck_assert_msg(now_s() - t0 < 3, "took %.1f s", now_s() - t0);
	kill(pid, SIGCONT);
	stop(pid);
}
END_TEST

START_TEST(killed_server_and_reconnect)
{
	const char *argv[] = {"nbdkit", "-f", "--exit-with-parent", "-U", sock, "memory",
			      "1M",	NULL};
	struct block_node *bs;
	char out[512];
	double t0;
	pid_t pid;

	if (!have("nbdkit")) {
		return;
	}
	pid = spawn(argv);
	bs = raw_over_nbd("", ", \"timeout\": 2, \"reconnect-delay\": 1");
	memset(out, 0x33, sizeof(out));
	ck_assert_int_eq(block_pwrite(bs, 0, out, sizeof(out)), 0);
	stop(pid);
	/* the server is gone: EIO after the reconnect delay, no hang */
	t0 = now_s();
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), -EIO);
	ck_assert_msg(now_s() - t0 < 4, "took %.1f s", now_s() - t0);
	/* a new server on the same socket: the next request reconnects */
	pid = spawn(argv);
	ck_assert_int_eq(block_pread(bs, 0, out, sizeof(out)), 0);
	ck_assert_int_eq(out[0], 0); /* a fresh memory disk */
	block_unref(bs);
	stop(pid);
}
END_TEST

START_TEST(nbdkit_file_tcp)
{
	char img[300], port[16], tcp_uri[64];
	const char *argv[] = {"nbdkit", "-f",	     "--exit-with-parent",
			      "-i",	"127.0.0.1", "-p",
			      port,	"-P",	     sock,
			      "file",	img,	     NULL};
	struct block_node *bs = NULL;
	struct error *err = NULL;
	char out[4096];
	FILE *f;
	pid_t pid;

	if (!have("nbdkit")) {
		return;
	}
	snprintf(img, sizeof(img), "%s/file.img", dir);
	f = fopen(img, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 1 << 16; i++) {
		fputc(i & 0x7f, f);
	}
	fclose(f);
	/* -P writes a pid file once listening: wait on it as on a socket */
	pid = -1;
	for (int i = 0; i < 5 && pid < 0; i++) {
		snprintf(port, sizeof(port), "%d", 20000 + (getpid() + i * 7919) % 20000);
		pid = try_spawn(argv);
	}
	ck_assert_msg(pid > 0, "nbdkit could not listen on a TCP port");
	snprintf(tcp_uri, sizeof(tcp_uri), "nbd://127.0.0.1:%s/", port);
	ck_assert_msg(block_open(&bs, tcp_uri, "raw", BLOCK_O_RDWR, &err) == 0, "%s",
		      err ? err->msg : "");
	ck_assert_uint_eq(block_length(bs), 1 << 16);
	ck_assert_int_eq(block_pread(bs, 1000, out, sizeof(out)), 0);
	ck_assert_int_eq(out[0], 1000 & 0x7f);
	ck_assert_int_eq(out[4095], (1000 + 4095) & 0x7f);
	block_unref(bs);
	stop(pid);
}
END_TEST

START_TEST(tls_psk)
{
	char psk[300], json[900], out[512];
	const char *argv[] = {
		"nbdkit", "-f", "--exit-with-parent", "-U", sock, "--tls=require", NULL, "memory",
		"1M",	  NULL};
	char tls_opt[320];
	struct block_node *bs;
	struct error *err = NULL;
	FILE *f;
	pid_t pid;

	if (!have("nbdkit")) {
		return;
	}
	snprintf(psk, sizeof(psk), "%s/keys.psk", dir);
	f = fopen(psk, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "alice:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n");
	fclose(f);
	snprintf(tls_opt, sizeof(tls_opt), "--tls-psk=%s", psk);
	argv[6] = tls_opt;
	pid = spawn(argv);
	/* without TLS the server refuses us */
	snprintf(json, sizeof(json),
		 "{\"driver\": \"raw\", \"file\": {\"driver\": \"nbd\", \"server\": "
		 "{\"type\": \"unix\", \"path\": \"%s\"}, \"timeout\": 5}}",
		 sock);
	bs = open_json(json, &err);
	ck_assert_ptr_null(bs);
	error_free(err);
	err = NULL;
	snprintf(json, sizeof(json),
		 "{\"driver\": \"raw\", \"file\": {\"driver\": \"nbd\", \"server\": "
		 "{\"type\": \"unix\", \"path\": \"%s\"}, \"tls\": \"require\", "
		 "\"tls-psk-file\": \"%s\", \"tls-username\": \"alice\"}}",
		 sock, psk);
	bs = open_json(json, &err);
	ck_assert_msg(bs, "%s", err ? err->msg : "");
	memset(out, 0x61, sizeof(out));
	ck_assert_int_eq(block_pwrite(bs, 512, out, sizeof(out)), 0);
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(block_pread(bs, 512, out, sizeof(out)), 0);
	ck_assert_int_eq(out[511], 0x61);
	block_unref(bs);
	stop(pid);
}
END_TEST

START_TEST(connect_errors)
{
	struct block_node *bs = NULL;
	struct error *err = NULL;

	ck_assert_int_lt(block_open(&bs, uri, "raw", 0, &err), 0);
	ck_assert_ptr_nonnull(strstr(err->msg, sock));
	error_free(err);
	err = NULL;
	bs = open_json("{\"driver\": \"nbd\", \"server\": {\"type\": \"unix\"}}", &err);
	ck_assert_ptr_null(bs);
	error_free(err);
	err = NULL;
	bs = open_json("{\"driver\": \"nbd\", \"filename\": \"nbd://x/\", \"timeout\": 99999}",
		       &err);
	ck_assert_ptr_null(bs);
	ck_assert_ptr_nonnull(strstr(err->msg, "timeout"));
	error_free(err);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("block-nbd");
	TCase *tc = tcase_create("nbd");

	if (!have("nbdkit") && !have("qemu-nbd")) {
		printf("SKIP: neither nbdkit nor qemu-nbd is installed\n");
		exit(77);
	}
	signal(SIGPIPE, SIG_IGN);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, nbdkit_memory);
	tcase_add_test(tc, qemu_nbd_file);
	tcase_add_test(tc, nbdkit_error_filter);
	tcase_add_test(tc, timeout_on_stalled_server);
	tcase_add_test(tc, close_with_stopped_server);
	tcase_add_test(tc, killed_server_and_reconnect);
	tcase_add_test(tc, nbdkit_file_tcp);
	tcase_add_test(tc, tls_psk);
	tcase_add_test(tc, connect_errors);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
