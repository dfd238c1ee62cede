/*
 * 16550A UART (see hw/isa/serial.h): the full register set (RBR/THR, IER,
 * IIR/FCR, LCR, MCR with loopback, LSR, MSR, SCR, DLL/DLM), a 16-byte RX
 * FIFO with trigger levels, and interrupts on GSI 4 driven as a level that
 * follows "IIR has an interrupt pending". Transmission is instantaneous:
 * THR and the shift register are always empty after a write, so THRE/TEMT
 * read 1 and a THR-empty interrupt is pending after every write. The RX
 * "character timeout" interrupt (IIR 0x0C) is reported at once when the
 * FIFO holds data below the trigger level, instead of after four character
 * times.
 *
 * Threads: serial_pio_read/write run on vCPU threads; everything with a
 * file descriptor runs on the VM's I/O thread; realize/unrealize/reset on
 * the control thread. s->lock protects the registers, the RX FIFO and the
 * output ring; the log fd, listening socket and clients belong to the I/O
 * thread (and to realize/unrealize when it cannot run them).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/pathpol.h"
#include "common/util.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "common/vmstate.h"
#include "hw/isa/serial.h"

#define UART_RX_FIFO 16

/* Register offsets */
enum {
	UART_RBR_THR = 0,
	UART_IER = 1,
	UART_IIR_FCR = 2,
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
};

#define IER_ERBFI 0x01
#define IER_ETBEI 0x02
#define IER_ELSI 0x04
#define IER_EDSSI 0x08

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_CTI 0x0C
#define IIR_FIFO 0xC0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

struct serial;

struct serial_client {
	struct serial *uart;
	int fd;
	struct event *rd, *wr;
	uint8_t *buf; /* SERIAL_CLIENT_BUF bytes of pending output */
	size_t head, len;
	uint64_t dropped;
};

struct serial {
	struct vm *vm;
	struct iobus *bus;
	struct event_base *base;

	pthread_mutex_t lock;
	/* registers (s->lock) */
	uint8_t ier, lcr, mcr, lsr_err, msr, msr_delta, scr, dll, dlm, fcr;
	bool thr_ipending;
	int irq_level;
	uint8_t rx[UART_RX_FIFO];
	unsigned rx_head, rx_count;
	bool rx_wanted; /* the I/O thread stopped reading clients: FIFO was full */
	/* output ring (s->lock) */
	uint8_t *ring;
	size_t ring_head, ring_len;
	/* what ringbuf-read returns: the newest output, oldest overwritten (s->lock) */
	uint8_t *qring;
	size_t qring_head, qring_len;
	bool kicked;
	struct serial_stats stats;

	/* I/O thread */
	int kick_fd;
	struct event *kick_ev;
	int log_fd;
	int listen_fd;
	struct event *listen_ev;
	struct serial_client clients[SERIAL_MAX_CLIENTS];
	bool clients_paused;
	uint8_t scratch[SERIAL_RING_SIZE];
	char *sock_path, *log_path;
	ino_t sock_ino; /* of sock_path once bound: removed only while still ours */
	struct ratelimit rl;
};

static unsigned serial_rx_trigger(struct serial *s)
{
	static const unsigned levels[4] = {1, 4, 8, 14};

	return (s->fcr & FCR_ENABLE) ? levels[s->fcr >> 6] : 1;
}

static unsigned serial_rx_capacity(struct serial *s)
{
	return (s->fcr & FCR_ENABLE) ? UART_RX_FIFO : 1;
}

static uint8_t serial_iir(struct serial *s)
{
	if ((s->ier & IER_ELSI) && s->lsr_err) {
		return IIR_RLSI;
	}
	if ((s->ier & IER_ERBFI) && s->rx_count) {
		return s->rx_count >= serial_rx_trigger(s) ? IIR_RDI : IIR_CTI;
	}
	if ((s->ier & IER_ETBEI) && s->thr_ipending) {
		return IIR_THRI;
	}
	if ((s->ier & IER_EDSSI) && s->msr_delta) {
		return IIR_MSI;
	}
	return IIR_NO_INT;
}

/* Called with s->lock held after any state change. */
static void serial_update_irq(struct serial *s)
{
	int level = serial_iir(s) != IIR_NO_INT;

	if (level != s->irq_level) {
		s->irq_level = level;
		vm_irq_set_level(s->vm, SERIAL_COM1_IRQ, level);
	}
}

static void serial_kick(struct serial *s)
{
	uint64_t one = 1;

	if (!s->kicked) {
		s->kicked = true;
		if (write(s->kick_fd, &one, sizeof(one)) < 0) {
			s->kicked = false;
		}
	}
}

static bool serial_rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_count >= serial_rx_capacity(s)) {
		s->lsr_err |= LSR_OE;
		return false;
	}
	s->rx[(s->rx_head + s->rx_count) % UART_RX_FIFO] = c;
	s->rx_count++;
	return true;
}

static void serial_tx(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		serial_rx_push(s, c);
		return;
	}
	s->stats.tx_bytes++;
	if (s->ring_len == SERIAL_RING_SIZE) {
		s->stats.tx_dropped++;
		return;
	}
	s->ring[(s->ring_head + s->ring_len) % SERIAL_RING_SIZE] = c;
	s->ring_len++;
	serial_kick(s);
}

/* The modem status lines: looped back from MCR, or a connected terminal. */
static void serial_update_msr(struct serial *s)
{
	uint8_t lines, changed;

	if (s->mcr & MCR_LOOP) {
		lines = (uint8_t)(((s->mcr & MCR_RTS) ? MSR_CTS : 0) |
				  ((s->mcr & MCR_DTR) ? MSR_DSR : 0) |
				  ((s->mcr & MCR_OUT1) ? MSR_RI : 0) |
				  ((s->mcr & MCR_OUT2) ? MSR_DCD : 0));
	} else {
		lines = MSR_DCD | MSR_DSR | MSR_CTS;
	}
	changed = lines ^ s->msr;
	if (changed & MSR_CTS) {
		s->msr_delta |= MSR_DCTS;
	}
	if (changed & MSR_DSR) {
		s->msr_delta |= MSR_DDSR;
	}
	if ((changed & MSR_RI) && !(lines & MSR_RI)) {
		s->msr_delta |= MSR_TERI;
	}
	if (changed & MSR_DCD) {
		s->msr_delta |= MSR_DDCD;
	}
	s->msr = lines;
}

static uint64_t serial_pio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct serial *s = opaque;
	uint8_t v = 0xFF;

	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
			break;
		}
		v = 0;
		if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % UART_RX_FIFO;
			s->rx_count--;
			if (s->rx_wanted) {
				serial_kick(s);
			}
		}
		break;
	case UART_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR_FCR:
		v = serial_iir(s);
		if (v == IIR_THRI) {
			s->thr_ipending = false; /* reading IIR acknowledges THRE */
		}
		if (s->fcr & FCR_ENABLE) {
			v |= IIR_FIFO;
		}
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = (uint8_t)(LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0) | s->lsr_err);
		s->lsr_err = 0;
		break;
	case UART_MSR:
		v = s->msr | s->msr_delta;
		s->msr_delta = 0;
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void serial_pio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct serial *s = opaque;
	uint8_t v = (uint8_t)value;

	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			break;
		}
		serial_tx(s, v);
		s->thr_ipending = true;
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		/* Enabling ETBEI while THR is empty raises THRE at once, as on a 16550A. */
		if ((v & IER_ETBEI) && !(s->ier & IER_ETBEI)) {
			s->thr_ipending = true;
		}
		s->ier = v & 0x0F;
		break;
	case UART_IIR_FCR:
		if ((v ^ s->fcr) & FCR_ENABLE) {
			s->rx_count = 0;
		}
		if (v & FCR_CLEAR_RX) {
			s->rx_count = 0;
		}
		s->fcr = v & (FCR_ENABLE | 0xC0);
		if (!(s->fcr & FCR_ENABLE)) {
			s->fcr = 0;
		}
		if (s->rx_wanted) {
			serial_kick(s);
		}
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1F;
		serial_update_msr(s);
		break;
	case UART_SCR:
		s->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static const struct iobus_ops serial_ops = {
	.read = serial_pio_read,
	.write = serial_pio_write,
};

static void serial_reset_regs(struct serial *s)
{
	s->ier = 0;
	s->lcr = 0;
	s->mcr = 0;
	s->lsr_err = 0;
	s->scr = 0;
	s->dll = 0x0C; /* 9600 baud */
	s->dlm = 0;
	s->fcr = 0;
	s->thr_ipending = false;
	s->rx_count = 0;
	s->rx_head = 0;
	s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	s->msr_delta = 0;
}

/* ---- I/O thread ---- */

static void serial_client_close(struct serial_client *c)
{
	if (c->fd < 0) {
		return;
	}
	event_free(c->rd);
	event_free(c->wr);
	close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static unsigned serial_n_clients(struct serial *s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < SERIAL_MAX_CLIENTS; i++) {
		n += s->clients[i].fd >= 0;
	}
	return n;
}

static void serial_client_queue(struct serial_client *c, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (c->len == SERIAL_CLIENT_BUF) {
			c->dropped += n - i; /* a slow client loses output, the guest never waits */
			break;
		}
		c->buf[(c->head + c->len) % SERIAL_CLIENT_BUF] = p[i];
		c->len++;
	}
	if (c->len) {
		event_add(c->wr, NULL);
	}
}

static void serial_client_write_cb(evutil_socket_t fd, short what, void *opaque)
{
	struct serial_client *c = opaque;

	while (c->len) {
		size_t chunk = MIN(c->len, SERIAL_CLIENT_BUF - c->head);
		ssize_t r = send(fd, c->buf + c->head, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				return; /* the persistent write event fires again */
			}
			serial_client_close(c);
			return;
		}
		c->head = (c->head + (size_t)r) % SERIAL_CLIENT_BUF;
		c->len -= (size_t)r;
	}
	event_del(c->wr);
}

static void serial_pause_clients(struct serial *s, bool pause)
{
	if (s->clients_paused == pause) {
		return;
	}
	s->clients_paused = pause;
	for (unsigned i = 0; i < SERIAL_MAX_CLIENTS; i++) {
		if (s->clients[i].fd < 0) {
			continue;
		}
		if (pause) {
			event_del(s->clients[i].rd);
		} else {
			event_add(s->clients[i].rd, NULL);
		}
	}
}

static void serial_client_read_cb(evutil_socket_t fd, short what, void *opaque)
{
	struct serial_client *c = opaque;
	struct serial *s = c->uart;
	uint8_t buf[UART_RX_FIFO];
	unsigned room;
	ssize_t r;

	pthread_mutex_lock(&s->lock);
	room = serial_rx_capacity(s) - MIN(s->rx_count, serial_rx_capacity(s));
	pthread_mutex_unlock(&s->lock);
	if (room == 0) {
		pthread_mutex_lock(&s->lock);
		s->rx_wanted = true;
		pthread_mutex_unlock(&s->lock);
		serial_pause_clients(s, true);
		return;
	}
	r = recv(fd, buf, room, MSG_DONTWAIT);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		serial_client_close(c);
		return;
	}
	if (r < 0) {
		return;
	}
	pthread_mutex_lock(&s->lock);
	for (ssize_t i = 0; i < r; i++) {
		serial_rx_push(s, buf[i]);
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_accept_cb(evutil_socket_t fd, short what, void *opaque)
{
	struct serial *s = opaque;
	_cleanup_close_ int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct serial_client *c = NULL;

	if (cfd < 0) {
		return;
	}
	for (unsigned i = 0; i < SERIAL_MAX_CLIENTS; i++) {
		if (s->clients[i].fd < 0) {
			c = &s->clients[i];
			break;
		}
	}
	if (!c) {
		static const char msg[] = "vmmd: too many console clients\r\n";

		if (send(cfd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			return;
		}
		return;
	}
	c->buf = malloc(SERIAL_CLIENT_BUF);
	if (!c->buf) {
		return;
	}
	c->uart = s;
	c->rd = event_new(s->base, cfd, EV_READ | EV_PERSIST, serial_client_read_cb, c);
	c->wr = event_new(s->base, cfd, EV_WRITE | EV_PERSIST, serial_client_write_cb, c);
	if (!c->rd || !c->wr) {
		if (c->rd) {
			event_free(c->rd);
		}
		if (c->wr) {
			event_free(c->wr);
		}
		free(c->buf);
		memset(c, 0, sizeof(*c));
		c->fd = -1;
		return;
	}
	c->fd = TAKE_FD(cfd);
	c->head = c->len = 0;
	if (!s->clients_paused) {
		event_add(c->rd, NULL);
	}
}

/* Append to the ringbuf-read capture, dropping its oldest bytes. Under s->lock. */
static void serial_qring_put(struct serial *s, const uint8_t *p, size_t n)
{
	if (n > SERIAL_RING_SIZE) {
		p += n - SERIAL_RING_SIZE;
		n = SERIAL_RING_SIZE;
	}
	for (size_t i = 0; i < n; i++) {
		s->qring[(s->qring_head + s->qring_len) % SERIAL_RING_SIZE] = p[i];
		if (s->qring_len == SERIAL_RING_SIZE) {
			s->qring_head = (s->qring_head + 1) % SERIAL_RING_SIZE;
		} else {
			s->qring_len++;
		}
	}
}

/*
 * QEMU's ringbuf chardev over COM1 ("serial0", vm_set_ringbuf): the last
 * SERIAL_RING_SIZE bytes of output are kept for ringbuf-read, which takes up
 * to @max of the oldest; ringbuf-write appends to the same buffer (as
 * QEMU's does: the guest does not see it). Control thread.
 */
static size_t serial_ringbuf_read(void *state, uint8_t *buf, size_t max)
{
	struct serial *s = state;
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = MIN(max, s->qring_len);
	for (size_t i = 0; i < n; i++) {
		buf[i] = s->qring[(s->qring_head + i) % SERIAL_RING_SIZE];
	}
	s->qring_head = (s->qring_head + n) % SERIAL_RING_SIZE;
	s->qring_len -= n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void serial_ringbuf_write(void *state, const uint8_t *buf, size_t len)
{
	struct serial *s = state;

	pthread_mutex_lock(&s->lock);
	serial_qring_put(s, buf, len);
	pthread_mutex_unlock(&s->lock);
}

static void serial_kick_cb(evutil_socket_t fd, short what, void *opaque)
{
	struct serial *s = opaque;
	size_t n, first;
	uint64_t v;
	bool resume;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: a spurious wake-up; the state below is still checked. */
	}
	pthread_mutex_lock(&s->lock);
	s->kicked = false;
	n = s->ring_len;
	first = MIN(n, SERIAL_RING_SIZE - s->ring_head);
	memcpy(s->scratch, s->ring + s->ring_head, first);
	memcpy(s->scratch + first, s->ring, n - first);
	s->ring_head = (s->ring_head + n) % SERIAL_RING_SIZE;
	s->ring_len = 0;
	serial_qring_put(s, s->scratch, n);
	resume = s->rx_wanted && s->rx_count < serial_rx_capacity(s);
	if (resume) {
		s->rx_wanted = false;
	}
	pthread_mutex_unlock(&s->lock);

	if (resume) {
		serial_pause_clients(s, false);
	}
	if (n == 0) {
		return;
	}
	if (s->log_fd >= 0) {
		size_t off = 0;

		while (off < n) {
			ssize_t r = write(s->log_fd, s->scratch + off, n - off);

			if (r < 0) {
				if (errno == EINTR) {
					continue;
				}
				log_ratelimited(&s->rl, LOG_WARNING, vm_name(s->vm), "serial",
						"console log %s: %s", s->log_path, strerror(errno));
				break;
			}
			off += (size_t)r;
		}
	}
	for (unsigned i = 0; i < SERIAL_MAX_CLIENTS; i++) {
		if (s->clients[i].fd >= 0) {
			serial_client_queue(&s->clients[i], s->scratch, n);
		}
	}
}

/* ---- control thread ---- */

const char *serial_console_socket(void *state)
{
	struct serial *s = state;

	return s ? s->sock_path : NULL;
}

const char *serial_console_log(void *state)
{
	struct serial *s = state;

	return s ? s->log_path : NULL;
}

void serial_get_stats(void *state, struct serial_stats *ret)
{
	struct serial *s = state;

	pthread_mutex_lock(&s->lock);
	*ret = s->stats;
	pthread_mutex_unlock(&s->lock);
	ret->clients = serial_n_clients(s);
}

/*
 * Remove the console socket file unless another process has bound its own
 * there since (the new daemon of a live upgrade, a same-host migration).
 */
static void unlink_own_socket(struct serial *s)
{
	struct stat st;

	if (lstat(s->sock_path, &st) == 0 && (!s->sock_ino || st.st_ino == s->sock_ino)) {
		unlink(s->sock_path);
	}
}

static void serial_unrealize(void *state)
{
	struct serial *s = state;

	if (!s) {
		return;
	}
	vm_set_console_socket(s->vm, NULL);
	vm_set_ringbuf(s->vm, NULL);
	iobus_unregister(s->bus, IOBUS_PIO, SERIAL_COM1_BASE);
	event_free(s->listen_ev);
	event_free(s->kick_ev);
	close(s->listen_fd);
	unlink_own_socket(s);
	for (unsigned i = 0; i < SERIAL_MAX_CLIENTS; i++) {
		serial_client_close(&s->clients[i]);
	}
	/* Whatever the guest wrote last still reaches the log. */
	serial_kick_cb(s->kick_fd, EV_READ, s);
	close(s->kick_fd);
	close(s->log_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->qring);
	free(s->ring);
	free(s->sock_path);
	free(s->log_path);
	free(s);
}

/* The console socket gets the daemon's socket-mode and socket-group (vmmd.conf(5)). */
static int serial_listen(struct serial *s, const struct vm_host *host, struct error **errp)
{
	mode_t mode = host && host->socket_mode ? host->socket_mode : 0600;
	gid_t gid = host && host->socket_mode ? host->socket_gid : (gid_t)-1;

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;

	if (strlen(s->sock_path) >= sizeof(sa.sun_path)) {
		return error_set(errp, ENAMETOOLONG,
				 "console socket path %s is longer than %zu bytes; use a shorter "
				 "run directory",
				 s->sock_path, sizeof(sa.sun_path) - 1);
	}
	strcpy(sa.sun_path, s->sock_path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		return error_set_errno(errp, errno, "console socket");
	}
	unlink(s->sock_path);
	if (bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s->listen_fd, 4) < 0) {
		int e = errno;

		close(s->listen_fd);
		s->listen_fd = -1;
		return error_set_errno(errp, e, "console socket %s", s->sock_path);
	}
	if (lstat(s->sock_path, &st) == 0) {
		s->sock_ino = st.st_ino;
	}
	if (chmod(s->sock_path, mode) < 0 ||
	    (gid != (gid_t)-1 && chown(s->sock_path, -1, gid) < 0)) {
		int e = errno;

		close(s->listen_fd);
		s->listen_fd = -1;
		unlink(s->sock_path);
		return error_set_errno(errp, e, "cannot set mode %04o and group %d on %s",
				       (unsigned)mode, (int)gid, s->sock_path);
	}
	return 0;
}

static int serial_realize(struct vm *vm, const void *cfg_unused, void **ret_state,
			  struct error **errp)
{
	const struct vm_config *cfg = vm_get_config(vm);
	const struct vm_host *host = vm_get_host(vm);
	struct serial *s;
	char *dir = NULL;
	int r, trunc;

	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "serial: out of memory");
	}
	s->vm = vm;
	s->bus = vm_iobus(vm);
	s->base = vm_io_base(vm);
	s->kick_fd = s->log_fd = s->listen_fd = -1;
	for (unsigned i = 0; i < SERIAL_MAX_CLIENTS; i++) {
		s->clients[i].fd = -1;
	}
	s->rl = (struct ratelimit)RATELIMIT_INIT(5 * 1000000, 3);
	pthread_mutex_init(&s->lock, NULL);
	serial_reset_regs(s);
	s->ring = malloc(SERIAL_RING_SIZE);
	s->qring = malloc(SERIAL_RING_SIZE);
	if (!s->ring || !s->qring) {
		r = error_set(errp, ENOMEM, "serial: out of memory");
		goto err_free;
	}

	if (asprintf(&dir, "%s/vms", host && host->run_dir ? host->run_dir : ".") < 0) {
		dir = NULL;
		r = error_set(errp, ENOMEM, "serial: out of memory");
		goto err_free;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = error_set_errno(errp, errno, "cannot create %s for the console", dir);
		goto err_free;
	}
	if (asprintf(&s->sock_path, "%s/%s.console.sock", dir, vm_name(vm)) < 0) {
		s->sock_path = NULL;
		r = error_set(errp, ENOMEM, "serial: out of memory");
		goto err_free;
	}
	if (cfg && cfg->serial_log) {
		s->log_path = strdup(cfg->serial_log);
	} else if (asprintf(&s->log_path, "%s/%s.console", dir, vm_name(vm)) < 0) {
		s->log_path = NULL;
	}
	if (!s->log_path) {
		r = error_set(errp, ENOMEM, "serial: out of memory");
		goto err_free;
	}
	trunc = host && host->keep_console_log ? 0 : O_TRUNC;
	if (cfg && cfg->serial_log) {
		/* A path the definition names: the path policy decides. */
		s->log_fd = pathpol_open_err("console log", s->log_path,
					     O_WRONLY | O_CREAT | O_APPEND | trunc, 0640, errp);
		if (s->log_fd < 0) {
			r = s->log_fd;
			goto err_free;
		}
	} else {
		s->log_fd =
			open(s->log_path,
			     O_WRONLY | O_CREAT | O_APPEND | trunc | O_CLOEXEC | O_NOCTTY, 0640);
		if (s->log_fd < 0) {
			r = error_set_errno(errp, errno, "cannot open the console log %s",
					    s->log_path);
			goto err_free;
		}
	}
	s->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->kick_fd < 0) {
		r = error_set_errno(errp, errno, "serial: eventfd");
		goto err_free;
	}
	r = serial_listen(s, host, errp);
	if (r < 0) {
		goto err_free;
	}
	s->kick_ev = event_new(s->base, s->kick_fd, EV_READ | EV_PERSIST, serial_kick_cb, s);
	s->listen_ev = event_new(s->base, s->listen_fd, EV_READ | EV_PERSIST, serial_accept_cb, s);
	if (!s->kick_ev || !s->listen_ev || event_add(s->kick_ev, NULL) < 0 ||
	    event_add(s->listen_ev, NULL) < 0) {
		r = error_set(errp, ENOMEM, "serial: cannot add events to the I/O loop");
		goto err_free;
	}
	r = iobus_register(s->bus, IOBUS_PIO, SERIAL_COM1_BASE, 8, &serial_ops, s, "serial", errp);
	if (r < 0) {
		goto err_free;
	}
	vm_set_console_socket(vm, s->sock_path);
	vm_set_ringbuf(vm, &(struct vm_ringbuf){.read = serial_ringbuf_read,
						.write = serial_ringbuf_write,
						.opaque = s});
	free(dir);
	*ret_state = s;
	return 0;

err_free:
	free(dir);
	if (s->listen_ev) {
		event_free(s->listen_ev);
	}
	if (s->kick_ev) {
		event_free(s->kick_ev);
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->sock_path);
	}
	if (s->kick_fd >= 0) {
		close(s->kick_fd);
	}
	if (s->log_fd >= 0) {
		close(s->log_fd);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->qring);
	free(s->ring);
	free(s->sock_path);
	free(s->log_path);
	free(s);
	return r;
}

static void serial_reset(void *state)
{
	struct serial *s = state;

	pthread_mutex_lock(&s->lock);
	serial_reset_regs(s);
	serial_update_irq(s);
	if (s->rx_wanted) {
		serial_kick(s);
	}
	pthread_mutex_unlock(&s->lock);
}

/* Registers and the receive FIFO; output not yet in the log stays with the saved VM. */
static int serial_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct serial *s = state;

	pthread_mutex_lock(&s->lock);
	vmstate_put_u8(out, s->ier);
	vmstate_put_u8(out, s->lcr);
	vmstate_put_u8(out, s->mcr);
	vmstate_put_u8(out, s->lsr_err);
	vmstate_put_u8(out, s->msr);
	vmstate_put_u8(out, s->msr_delta);
	vmstate_put_u8(out, s->scr);
	vmstate_put_u8(out, s->dll);
	vmstate_put_u8(out, s->dlm);
	vmstate_put_u8(out, s->fcr);
	vmstate_put_bool(out, s->thr_ipending);
	vmstate_put_u8(out, (uint8_t)s->irq_level);
	vmstate_put_u32(out, s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++) {
		vmstate_put_u8(out, s->rx[(s->rx_head + i) % UART_RX_FIFO]);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int serial_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct serial *s = state;
	uint8_t r[10], rx[UART_RX_FIFO];
	bool thr;
	uint8_t level;
	uint32_t n;
	int ret;

	for (unsigned i = 0; i < ARRAY_SIZE(r); i++) {
		r[i] = vmstate_get_u8(in);
	}
	thr = vmstate_get_bool(in);
	level = vmstate_get_u8(in);
	n = vmstate_get_u32(in);
	if (n > UART_RX_FIFO || level > 1) {
		in->failed = true;
		n = 0;
	}
	vmstate_get_bytes(in, rx, n);
	ret = vmstate_check_end(in, "the serial port", errp);
	if (ret < 0) {
		return ret;
	}
	pthread_mutex_lock(&s->lock);
	s->ier = r[0];
	s->lcr = r[1];
	s->mcr = r[2];
	s->lsr_err = r[3];
	s->msr = r[4];
	s->msr_delta = r[5];
	s->scr = r[6];
	s->dll = r[7];
	s->dlm = r[8];
	s->fcr = r[9];
	s->thr_ipending = thr;
	memcpy(s->rx, rx, n);
	s->rx_head = 0;
	s->rx_count = n;
	/* The line's level is in the restored irqchip: only the mirror changes. */
	s->irq_level = level;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const struct device_class serial_class = {
	.name = "serial",
	.realize = serial_realize,
	.unrealize = serial_unrealize,
	.reset = serial_reset,
	.state_version = 1,
	.save = serial_save,
	.load = serial_load,
};
