/*
 * 16550A UART on COM1 (ports 0x3F8-0x3FF, ISA IRQ 4). Output goes to a
 * log file (vm_config.serial_log, or <run_dir>/vms/<name>.console) and to
 * the clients of a UNIX socket <run_dir>/vms/<name>.console.sock (vmctl
 * console); what clients write is the guest's input.
 *
 * Threads: registers are accessed on vCPU threads; files and sockets are
 * served on the VM's I/O thread (vm_io_base). A vCPU never blocks: output
 * goes through a bounded ring (SERIAL_RING_SIZE), and bytes that do not fit
 * are dropped and counted. One mutex per UART protects registers, the RX
 * FIFO and the ring. libevent must have thread support enabled
 * (evthread_use_pthreads) because events are added and removed from the
 * control thread.
 */
#pragma once

#include <stdint.h>

#define SERIAL_COM1_BASE 0x3F8
#define SERIAL_COM1_IRQ 4
#define SERIAL_RING_SIZE (64u * 1024)
#define SERIAL_CLIENT_BUF (64u * 1024)
#define SERIAL_MAX_CLIENTS 8

/* The console socket's path (for vm_console_socket()); @state is the realized state. */
const char *serial_console_socket(void *state);
/* The console log's path. */
const char *serial_console_log(void *state);

struct serial_stats {
	uint64_t tx_bytes;   /* bytes the guest wrote to THR (not in loopback) */
	uint64_t tx_dropped; /* of those, dropped because the ring was full */
	unsigned clients;    /* connected console clients */
};
void serial_get_stats(void *state, struct serial_stats *ret);
