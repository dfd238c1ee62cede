/*
 * Unit tests of the 16550A UART over the fake machine (tests/unit/fake-machine.c):
 * registers, loopback, interrupts, the console log, the console socket in
 * both directions with RX back-pressure, and that a flooding guest cannot
 * grow memory (bytes beyond the ring are dropped and counted). The I/O
 * thread's loop is run by the test itself, so everything is single-threaded.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "hw/core/iobus.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/isa/serial.h"
#include "tests/unit/fake-machine.h"

static struct iobus *bus;
static struct event_base *base;
static struct vm_config cfg = {.name = "t1"};
static struct vm *vm;
static char tmpdir[] = "/tmp/test-serial.XXXXXX";
static void *uart;

static void setup(void)
{
	struct error *err = NULL;

	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	base = event_base_new();
	vm = fake_vm_new(&cfg, 0, base);
	fake_vm_host(vm)->run_dir = tmpdir;
	bus = vm_iobus(vm);
	fake_irq_clear();
	ck_assert_msg(serial_class.realize(vm, NULL, &uart, &err) == 0, "realize: %s",
		      err ? err->msg : "");
}

static void teardown(void)
{
	char cmd[256];

	serial_class.unrealize(uart);
	ck_assert_ptr_null(fake_vm_console_socket(vm));
	ck_assert_uint_eq(fake_vm_ranges(vm), 0);
	fake_vm_free(vm);
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
	strcpy(tmpdir, "/tmp/test-serial.XXXXXX");
}

static uint8_t in(unsigned reg)
{
	uint64_t v;

	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, SERIAL_COM1_BASE + reg, 1, &v), 0);
	return (uint8_t)v;
}

static void out(unsigned reg, uint8_t v)
{
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, SERIAL_COM1_BASE + reg, 1, v), 0);
}

static void pump(void)
{
	for (int i = 0; i < 5; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static size_t log_size(void)
{
	struct stat st;

	ck_assert_int_eq(stat(serial_console_log(uart), &st), 0);
	return (size_t)st.st_size;
}

static int connect_console(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	strcpy(sa.sun_path, serial_console_socket(uart));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pump();
	return fd;
}

START_TEST(test_registers)
{
	char want[512];

	snprintf(want, sizeof(want), "%s/vms/t1.console.sock", tmpdir);
	ck_assert_str_eq(serial_console_socket(uart), want);
	ck_assert_str_eq(fake_vm_console_socket(vm), want);
	snprintf(want, sizeof(want), "%s/vms/t1.console", tmpdir);
	ck_assert_str_eq(serial_console_log(uart), want);

	ck_assert_uint_eq(in(5), 0x60); /* THRE | TEMT */
	ck_assert_uint_eq(in(2), 0x01); /* no interrupt, FIFO off */
	out(7, 0xA5);
	ck_assert_uint_eq(in(7), 0xA5);
	out(3, 0x83); /* DLAB, 8N1 */
	out(0, 0x01);
	out(1, 0x00);
	ck_assert_uint_eq(in(0), 0x01);
	ck_assert_uint_eq(in(1), 0x00);
	out(3, 0x03);
	ck_assert_uint_eq(in(3), 0x03);
	ck_assert_uint_eq(in(1), 0x00); /* IER, not DLM */
	out(2, 0xC7);			/* FIFO on, clear, trigger 14 */
	ck_assert_uint_eq(in(2) & 0xC0, 0xC0);
	/* Linux's autoconfig: loopback with RTS|OUT2 reads CTS|DCD */
	out(4, 0x1A);
	ck_assert_uint_eq(in(6) & 0xF0, 0x90);
	out(4, 0x00);
	ck_assert_uint_eq(in(6) & 0xF0, 0xB0); /* a terminal is "connected" */
	ck_assert_uint_eq(in(6) & 0x0F, 0x00); /* deltas cleared by the read */
	/* Unclaimed neighbour is not ours. */
	{
		uint64_t v;

		ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, SERIAL_COM1_BASE + 8, 1, &v), -ENOENT);
	}
}
END_TEST

START_TEST(test_thr_interrupt)
{
	ck_assert_int_eq(fake_irq_level(4), 0);
	out(1, 0x02); /* ETBEI */
	ck_assert_int_eq(fake_irq_level(4), 1);
	ck_assert_uint_eq(in(2), 0x02);
	ck_assert_int_eq(fake_irq_level(4), 0); /* reading IIR acknowledged THRE */
	ck_assert_uint_eq(in(2), 0x01);
	out(0, 'x');
	ck_assert_int_eq(fake_irq_level(4), 1);
	out(1, 0x00);
	ck_assert_int_eq(fake_irq_level(4), 0);
}
END_TEST

START_TEST(test_loopback_rx)
{
	out(4, 0x10); /* loopback */
	out(1, 0x01); /* ERBFI */
	out(0, 'A');
	ck_assert_uint_eq(in(5) & 0x01, 0x01);
	ck_assert_int_eq(fake_irq_level(4), 1);
	ck_assert_uint_eq(in(2), 0x04);
	ck_assert_uint_eq(in(0), 'A');
	ck_assert_uint_eq(in(5) & 0x01, 0x00);
	ck_assert_int_eq(fake_irq_level(4), 0);
	/* FIFO at trigger level 4: below it the timeout indication, at it RDI */
	out(2, 0x41);
	out(0, '1');
	ck_assert_uint_eq(in(2) & 0x0F, 0x0C);
	out(0, '2');
	out(0, '3');
	out(0, '4');
	ck_assert_uint_eq(in(2) & 0x0F, 0x04);
	/* overrun after 16 bytes; with ELSI it is the top interrupt */
	for (int i = 0; i < 13; i++) {
		out(0, 'z');
	}
	out(1, 0x05);
	ck_assert_uint_eq(in(2) & 0x0F, 0x06);
	ck_assert_uint_eq(in(5) & 0x03, 0x03);
	ck_assert_uint_eq(in(5) & 0x02, 0x00); /* read clears OE */
	ck_assert_uint_eq(in(0), '1');
	/* nothing looped back reached the log */
	pump();
	ck_assert_uint_eq(log_size(), 0);
}
END_TEST

START_TEST(test_log_output)
{
	const char *msg = "hello, console\r\n";
	char buf[64] = {0};
	int fd;

	for (const char *p = msg; *p; p++) {
		out(0, (uint8_t)*p);
	}
	pump();
	fd = open(serial_console_log(uart), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), (int)strlen(msg));
	ck_assert_str_eq(buf, msg);
	close(fd);
}
END_TEST

/* ringbuf-read sees the output, consumed; ringbuf-write appends (QEMU's ringbuf). */
START_TEST(test_ringbuf)
{
	const struct vm_ringbuf ringbuf = *fake_vm_ringbuf(vm);
	uint8_t buf[16] = {0};

	ck_assert_ptr_nonnull(ringbuf.read);
	for (const char *p = "abc"; *p; p++) {
		out(0, (uint8_t)*p);
	}
	pump();
	ringbuf.write(ringbuf.opaque, (const uint8_t *)"XY", 2);
	ck_assert_uint_eq(ringbuf.read(ringbuf.opaque, buf, 2), 2);
	ck_assert_int_eq(memcmp(buf, "ab", 2), 0);
	ck_assert_uint_eq(ringbuf.read(ringbuf.opaque, buf, sizeof(buf)), 3);
	ck_assert_int_eq(memcmp(buf, "cXY", 3), 0);
	ck_assert_uint_eq(ringbuf.read(ringbuf.opaque, buf, sizeof(buf)), 0);
	/* more than the ring holds: the newest SERIAL_RING_SIZE bytes stay */
	for (unsigned i = 0; i < SERIAL_RING_SIZE / 4 + 1; i++) {
		ringbuf.write(ringbuf.opaque,
			      (const uint8_t *)(i == SERIAL_RING_SIZE / 4 ? "LAST" : "...."), 4);
	}
	while (ringbuf.read(ringbuf.opaque, buf, 4) == 4 && memcmp(buf, "LAST", 4) != 0) {
	}
	ck_assert_int_eq(memcmp(buf, "LAST", 4), 0);
}
END_TEST

START_TEST(test_flood_is_bounded)
{
	const unsigned total = 1024 * 1024;
	struct serial_stats st;

	/* The I/O thread does not run: the ring fills, the rest is dropped. */
	for (unsigned i = 0; i < total; i++) {
		out(0, (uint8_t)('a' + i % 26));
	}
	serial_get_stats(uart, &st);
	ck_assert_uint_eq(st.tx_bytes, total);
	ck_assert_uint_eq(st.tx_dropped, total - SERIAL_RING_SIZE);
	pump();
	ck_assert_uint_eq(log_size(), SERIAL_RING_SIZE);
	/* Once drained, output flows again. */
	out(0, '!');
	pump();
	ck_assert_uint_eq(log_size(), SERIAL_RING_SIZE + 1);
	serial_get_stats(uart, &st);
	ck_assert_uint_eq(st.tx_dropped, total - SERIAL_RING_SIZE);
}
END_TEST

START_TEST(test_socket)
{
	char buf[64] = {0};
	struct serial_stats st;
	int fd = connect_console();
	ssize_t n;

	serial_get_stats(uart, &st);
	ck_assert_uint_eq(st.clients, 1);
	out(0, 'o');
	out(0, 'k');
	pump();
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(buf, "ok");

	/* Input: 20 bytes, the FIFO takes 16, the rest waits in the socket. */
	out(2, 0x01);
	ck_assert_int_eq(send(fd, "0123456789abcdefWXYZ", 20, 0), 20);
	pump();
	for (int i = 0; i < 16; i++) {
		ck_assert_uint_eq(in(5) & 0x01, 0x01);
		ck_assert_uint_eq(in(0), (uint8_t) "0123456789abcdef"[i]);
	}
	ck_assert_uint_eq(in(5) & 0x01, 0x00);
	pump();
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(in(5) & 0x01, 0x01);
		ck_assert_uint_eq(in(0), (uint8_t) "WXYZ"[i]);
	}
	ck_assert_uint_eq(in(5) & 0x01, 0x00);

	close(fd);
	pump();
	serial_get_stats(uart, &st);
	ck_assert_uint_eq(st.clients, 0);
}
END_TEST

START_TEST(test_socket_client_limit)
{
	int fds[SERIAL_MAX_CLIENTS + 1];
	struct serial_stats st;
	char buf[128] = {0};

	for (int i = 0; i < SERIAL_MAX_CLIENTS + 1; i++) {
		fds[i] = connect_console();
	}
	serial_get_stats(uart, &st);
	ck_assert_uint_eq(st.clients, SERIAL_MAX_CLIENTS);
	ck_assert_int_gt(recv(fds[SERIAL_MAX_CLIENTS], buf, sizeof(buf) - 1, MSG_DONTWAIT), 0);
	ck_assert_ptr_nonnull(strstr(buf, "too many"));
	for (int i = 0; i < SERIAL_MAX_CLIENTS + 1; i++) {
		close(fds[i]);
	}
}
END_TEST

START_TEST(test_reset)
{
	out(3, 0x80);
	out(1, 0x02);
	out(3, 0x03);
	out(1, 0x02);
	ck_assert_int_eq(fake_irq_level(4), 1);
	serial_class.reset(uart);
	ck_assert_int_eq(fake_irq_level(4), 0);
	ck_assert_uint_eq(in(1), 0);
	ck_assert_uint_eq(in(3), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("serial");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_registers);
	tcase_add_test(tc, test_thr_interrupt);
	tcase_add_test(tc, test_loopback_rx);
	tcase_add_test(tc, test_log_output);
	tcase_add_test(tc, test_flood_is_bounded);
	tcase_add_test(tc, test_socket);
	tcase_add_test(tc, test_socket_client_limit);
	tcase_add_test(tc, test_reset);
	tcase_add_test(tc, test_ringbuf);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
