/*
 * Intel 82540EM Gigabit Ethernet controller (8086:100E) as QEMU presents
 * it: the register file in a 128 KiB memory BAR (and the IOADDR/IODATA
 * window in an I/O BAR), a Microwire EEPROM holding the MAC address (words
 * 0x00-0x3F sum to 0xBABA) also readable through EERD, an M88E1011-like PHY
 * behind MDIC with the link up, legacy receive descriptors, legacy and
 * extended (context + data) transmit descriptors with IP/TCP/UDP checksum
 * insertion and TCP segmentation, and interrupts through ICR/ICS/IMS/IMC on INTx.
 *
 * The model is transport-free: the owner supplies how frames leave (send),
 * how the interrupt line is driven (set_irq), and how work is handed to the
 * I/O thread (kick_tx, rx_resume).
 *
 * Threads: register accesses come from vCPU threads; e1000_tx_process()
 * and e1000_receive() run on the VM's I/O thread. All state is under
 * e->lock; frames are sent with the lock dropped (a backend may deliver a
 * reply from inside send).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct e1000;
struct guest_mem;

#define E1000_MMIO_SIZE 0x20000
#define E1000_IO_SIZE 0x40
#define E1000_VENDOR_ID 0x8086
#define E1000_DEVICE_ID 0x100e
#define E1000_MAX_FRAME 65536 /* a transmitted frame larger than this is dropped */

struct e1000_host_ops {
	/* Send one frame (I/O thread); the return value only feeds statistics. */
	int (*send)(void *opaque, const struct iovec *iov, unsigned cnt);
	/* Drive the INTx line. Any thread, called with the device lock held. */
	void (*set_irq)(void *opaque, int level);
	/* The guest advanced TDT: run e1000_tx_process() on the I/O thread soon. */
	void (*kick_tx)(void *opaque);
	/* The guest gave receive buffers after a refusal: resume the backend (I/O thread, soon). */
	void (*rx_resume)(void *opaque);
};

/* NULL on ENOMEM. @ops and @opaque are borrowed for the device's lifetime. */
struct e1000 *e1000_new(struct guest_mem *mem, const uint8_t mac[6],
			const struct e1000_host_ops *ops, void *opaque);
void e1000_free(struct e1000 *e);
/* Power-on state (also what CTRL.RST does); the MAC address is kept. */
void e1000_reset(struct e1000 *e);
/*
 * Save/restore (docs/vmstate.md): registers, EEPROM, PHY, the Microwire
 * and transmit-context state and a frame half assembled. Load checks
 * everything before it changes anything; the caller wakes the rings.
 */
struct vmstate_buf;
struct error;
void e1000_save(struct e1000 *e, struct vmstate_buf *out);
int e1000_load(struct e1000 *e, struct vmstate_buf *in, struct error **errp);

/* Memory BAR (@offset within E1000_MMIO_SIZE) and I/O BAR accesses. */
uint64_t e1000_mmio_read(void *opaque, uint64_t offset, unsigned size);
void e1000_mmio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size);
uint64_t e1000_io_read(void *opaque, uint64_t offset, unsigned size);
void e1000_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size);

/* Process the transmit ring up to TDT (I/O thread). */
void e1000_tx_process(struct e1000 *e);
/*
 * One received frame (without FCS). Returns 0 if delivered or filtered
 * out, -EAGAIN if the guest has no free receive descriptors (the caller
 * keeps it until rx_resume).
 */
int e1000_receive(struct e1000 *e, const struct iovec *iov, unsigned cnt);
/*
 * Whether a frame would find a free receive descriptor (or be dropped: the
 * receiver off); when not, the guest's next RDT write calls rx_resume.
 */
bool e1000_can_receive(struct e1000 *e);
/* Link state as seen in STATUS.LU and the PHY (raises LSC). */
void e1000_set_link(struct e1000 *e, bool up);
bool e1000_link_up(struct e1000 *e);

/* The MAC used when a NIC has none: 52:54:00 and a hash of the VM and NIC names. */
void e1000_default_mac(const char *vm_name, const char *nic_id, uint8_t mac[6]);
