/*
 * Test guest: find virtio-rng by PCI enumeration (CF8/CFC and ECAM, which
 * must agree), set up its queue with MSI-X, read random bytes twice, and
 * report. The host test checks the lines it prints.
 */
#include "lib.h"
#include "virtio-drv.h"

static struct vq q;
static uint8_t buf[2][64];
static bool quiet;

static bool fetch(struct vdev *d, uint8_t *b, unsigned len)
{
	uint32_t id, got;

	q.desc[0].addr = (uint64_t)b;
	q.desc[0].len = len;
	q.desc[0].flags = VQ_F_WRITE;
	vq_kick(d, &q, 0);
	if (!vq_wait(&q, &id, &got, 100000000)) {
		print("rng: timeout\n");
		return false;
	}
	if (!quiet) {
		print("rng: got ");
		print_dec(got);
		print(" bytes\n");
	}
	return id == 0 && got == len;
}

void guest_main(void)
{
	struct vdev d;
	uint64_t ecam;
	unsigned i, zero = 0;

	serial_init();
	lapic_enable();
	ecam = pci_find_ecam();
	print("pci: ecam ");
	print_hex(ecam);
	print(ecam ? " (from MCFG)\n" : "\n");
	if (!ecam && pci_probe_ecam(0xc0000000ull)) {
		/* no ACPI tables in this configuration: try vmmd's documented window */
		ecam = 0xc0000000ull;
		print("pci: ecam 0xc0000000 (probed)\n");
	}
	print("pci: host bridge ");
	print_hex(pci_read(0, 0, 4));
	print("\n");
	if (ecam) {
		pci_use_ecam(ecam);
		print(pci_cross_check(0, 0) ? "pci: ecam matches cf8\n" : "pci: ecam MISMATCH\n");
	}
	if (!virtio_find(4, 0, &d)) {
		print("rng: no device\n");
		guest_poweroff();
	}
	if (!pci_cross_check(d.slot, 0) || !pci_cross_check(d.slot, 0x10)) {
		print("pci: ecam MISMATCH on the device\n");
	}
	if (!virtio_negotiate(&d, 0)) {
		guest_poweroff();
	}
	virtio_msix_enable(&d);
	if (!virtio_queue_setup(&d, &q, 0, VQ_SIZE, 1)) {
		print("rng: queue setup failed\n");
		guest_poweroff();
	}
	virtio_driver_ok(&d);
	print("rng: status ");
	print_hex(virtio_status(&d));
	print("\n");
	if (!fetch(&d, buf[0], sizeof(buf[0])) || !fetch(&d, buf[1], sizeof(buf[1]))) {
		guest_poweroff();
	}
	for (i = 0; i < sizeof(buf[0]); i++) {
		zero += buf[0][i] == 0;
	}
	print("rng: bytes ");
	for (i = 0; i < 16; i++) {
		static const char hex[] = "0123456789abcdef";
		char s[3] = {hex[buf[0][i] >> 4], hex[buf[0][i] & 15], 0};

		print(s);
	}
	print("\n");
	print(memcmp(buf[0], buf[1], sizeof(buf[0])) && zero < 8 ? "rng: random ok\n"
								 : "rng: NOT random\n");
	print(lapic_irr(0x41) ? "rng: msix vector delivered\n"
			      : "rng: msix vector NOT delivered\n");
#ifdef RNG_LOOP
	/* the long-running variant: keep using the device, report progress */
	quiet = true;
	for (i = 0; i < RNG_LOOP; i++) {
		unsigned k;

		for (k = 0; k < 20; k++) {
			if (!fetch(&d, buf[k & 1], sizeof(buf[0]))) {
				guest_poweroff();
			}
		}
		print("rng: loop progress\n");
	}
	print("rng: loop done\n");
#endif
	guest_poweroff();
}
