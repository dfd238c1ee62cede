/*
 * libFuzzer target: virtio-net behind virtio-pci (hw/virtio/net.c) on the
 * fake machine with its default backend, libslirp: the transport
 * operations of tests/fuzz/fuzz-virtio.h on either queue, and frames the
 * guest transmits through the other (the side queue, set up by each start
 * whose queue is not the transmit queue), which slirp answers (ARP, DHCP,
 * ICMP, TCP resets) into whatever receive buffers the input laid out:
 * mergeable or not, too small, chained, indirect.
 *
 * slirp turns a guest's connections into the host's sockets: the target
 * runs in a network namespace of its own (LLVMFuzzerInitialize), whose
 * only interface is a loopback that is down, so nothing leaves this
 * process. Where it cannot have one (not root, no user namespaces), it
 * says so and exits 77 (replay.sh counts that target skipped).
 */
#include "config.h"

#include <errno.h>
#include <sched.h>

#include <event2/thread.h>

#include "tests/fuzz/fuzz-virtio.h"
#include "vmmd/vm.h"

#define RAM_SIZE (1u << 20)
#define TXBUF 0x40000 /* the frame the side queue transmits */
#define MAX_TX 1600   /* a header and a full Ethernet frame, and a little more */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (unshare(CLONE_NEWNET) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
		printf("SKIP: virtio-net: no network namespace of its own (%s), and without one "
		       "the guest's frames would reach the host's network\n",
		       strerror(errno));
		exit(77);
	}
	/* the backend is closed on the I/O loop's thread (fuzz-virtio.h) */
	evthread_use_pthreads();
	return 0;
}

/* Operation 5: the guest transmits a frame (a virtio-net header and what follows) on the side queue. */
static void extra(struct drv *d, void *state, uint8_t op, struct fz *f)
{
	uint8_t frame[MAX_TX];
	size_t n;

	(void)state;
	if (op % 13 != 5) {
		return;
	}
	n = fz_u16(f) % sizeof(frame);
	n = fz_bytes(f, frame, n);
	guest_mem_write(d->mem, TXBUF, frame, n);
	drv_side_send(d, TXBUF, (uint32_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vm_nic_config nc = {
		.id = "net0", .backend = "user", .mac = "52:54:00:12:34:56"};
	static struct fuzz_virtio t = {.cls = &virtio_net_class,
				       .cfg = &nc,
				       .side_q = 1,
				       .device_id = 0x1041,
				       .ram_size = RAM_SIZE,
				       .nops = 13,
				       .io_thread_at_unrealize = true,
				       .extra = extra};

	fuzz_virtio_run(&t, data, size);
	return 0;
}
