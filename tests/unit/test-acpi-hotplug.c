/*
 * Unit tests of ACPI PCI hotplug (QEMU's i440fx ABI): the register block at
 * 0xAE00 and GPE0 at 0xAFE0 over the fake machine, and the DSDT's slot and
 * GPE methods executed by ACPICA's acpiexec against its simulated
 * operation regions (the register writes and Notify()s it reports).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/platform/acpi.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "hw/pci/pci.h"
#include "hw/platform/acpi-hotplug.h"
#include "tests/unit/fake-machine.h"

static struct iobus *bus;
static void *pm;
static struct acpi_pcihp *hp;
static unsigned ejected[64], n_ejected;
static struct vm *the_vm;

static void on_eject(void *opaque, unsigned slot)
{
	ck_assert_ptr_eq(opaque, &n_ejected);
	ck_assert_uint_lt(n_ejected, 64);
	ejected[n_ejected++] = slot;
}

static void setup(void)
{
	void *state;

	the_vm = fake_vm_new(NULL, 0, NULL);
	bus = vm_iobus(the_vm);
	fake_irq_clear();
	n_ejected = 0;
	ck_assert_int_eq(acpi_pm_class.realize(the_vm, NULL, &pm, NULL), 0);
	fake_vm_add_device(the_vm, &acpi_pm_class, pm);
	ck_assert_int_eq(acpi_pcihp_class.realize(the_vm, NULL, &state, NULL), 0);
	hp = state;
	acpi_pcihp_set_eject_handler(hp, on_eject, &n_ejected);
}

static void teardown(void)
{
	acpi_pcihp_class.unrealize(hp);
	acpi_pm_class.unrealize(pm);
	ck_assert_uint_eq(fake_vm_ranges(the_vm), 0);
	fake_vm_free(the_vm);
}

static uint64_t in(unsigned port, unsigned size)
{
	uint64_t v;

	ck_assert_int_eq(iobus_read(bus, IOBUS_PIO, port, size, &v), 0);
	return v;
}

static void out(unsigned port, unsigned size, uint64_t v)
{
	ck_assert_int_eq(iobus_write(bus, IOBUS_PIO, port, size, v), 0);
}

#define REG(r) (ACPI_PCIHP_BASE + (r))

START_TEST(test_plug_raises_gpe1)
{
	ck_assert_uint_eq(ACPI_GPE0_BLK, 0xAFE0);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_UP), 4), 0);
	acpi_pcihp_plug(hp, 5);
	ck_assert_uint_eq(in(ACPI_GPE0_BLK, 1), 1u << ACPI_GPE_PCI_HOTPLUG);
	ck_assert_int_eq(fake_irq_level(ACPI_SCI_IRQ), 0); /* GPE0_EN bit 1 still clear */
	out(ACPI_GPE0_BLK + 2, 1, 1u << ACPI_GPE_PCI_HOTPLUG);
	ck_assert_int_eq(fake_irq_level(ACPI_SCI_IRQ), 1);
	/* PCIU is cleared by reading it (QEMU's non-legacy PIIX behaviour) */
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_UP), 4), 1u << 5);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_UP), 4), 0);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_DOWN), 4), 0);
	out(ACPI_GPE0_BLK, 1, 1u << ACPI_GPE_PCI_HOTPLUG); /* OSPM acks the GPE */
	ck_assert_int_eq(fake_irq_level(ACPI_SCI_IRQ), 0);
	acpi_pcihp_plug(hp, 0); /* the host bridge's slot: nothing happens */
	acpi_pcihp_plug(hp, 32);
	ck_assert_uint_eq(in(ACPI_GPE0_BLK, 1), 0);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_UP), 4), 0);
}
END_TEST

START_TEST(test_unplug_and_eject)
{
	out(ACPI_GPE0_BLK + 2, 1, 1u << ACPI_GPE_PCI_HOTPLUG);
	acpi_pcihp_unplug_request(hp, 7);
	ck_assert_int_eq(fake_irq_level(ACPI_SCI_IRQ), 1);
	/* PCID is not cleared by reading; only the eject clears it */
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_DOWN), 4), 1u << 7);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_DOWN), 4), 1u << 7);
	ck_assert_uint_eq(acpi_pcihp_pending_removals(hp), 1u << 7);
	out(ACPI_GPE0_BLK, 1, 1u << ACPI_GPE_PCI_HOTPLUG);
	/* a repeated request re-raises the GPE */
	acpi_pcihp_unplug_request(hp, 7);
	ck_assert_int_eq(fake_irq_level(ACPI_SCI_IRQ), 1);
	ck_assert_uint_eq(n_ejected, 0);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_EJECT), 4), 0); /* no feature bits */
	out(REG(ACPI_PCIHP_EJECT), 4, 1u << 7);
	ck_assert_uint_eq(n_ejected, 1);
	ck_assert_uint_eq(ejected[0], 7);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_DOWN), 4), 0);
	/* as QEMU: only the lowest slot of a mask is ejected */
	out(REG(ACPI_PCIHP_EJECT), 4, (1u << 9) | (1u << 12));
	ck_assert_uint_eq(n_ejected, 2);
	ck_assert_uint_eq(ejected[1], 9);
	/* narrow or unaligned writes are ignored (4-byte registers) */
	out(REG(ACPI_PCIHP_EJECT), 1, 1u << 3);
	out(REG(ACPI_PCIHP_EJECT) + 1, 4, 1u << 3);
	ck_assert_uint_eq(n_ejected, 2);
	/* slot 0 (host bridge) is never ejected */
	out(REG(ACPI_PCIHP_EJECT), 4, 1);
	ck_assert_uint_eq(n_ejected, 2);
}
END_TEST

START_TEST(test_bus_select_and_rmv)
{
	acpi_pcihp_plug(hp, 3);
	acpi_pcihp_unplug_request(hp, 4);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_RMV), 4), 0xFFFFFFFEu);
	acpi_pcihp_set_removable(hp, 2, false);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_RMV), 4), 0xFFFFFFFAu);
	/* byte reads see the bytes of the 32-bit register */
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_RMV), 1), 0xFA);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_RMV) + 3, 1), 0xFF);
	acpi_pcihp_set_removable(hp, 2, true);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_RMV), 4), 0xFFFFFFFEu);
	/* another bus: nothing there, and its ejects do nothing */
	out(REG(ACPI_PCIHP_SEL), 4, 1);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_SEL), 4), 1);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_UP), 4), 0);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_DOWN), 4), 0);
	out(REG(ACPI_PCIHP_EJECT), 4, 1u << 4);
	ck_assert_uint_eq(n_ejected, 0);
	out(REG(ACPI_PCIHP_SEL), 4, 0);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_UP), 4), 1u << 3);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_DOWN), 4), 1u << 4);
	/* PIDX: no device has an acpi-index */
	out(REG(ACPI_PCIHP_AIDX), 4, 1u << 3);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_AIDX), 4), 0);
}
END_TEST

START_TEST(test_reset_completes_removals)
{
	acpi_pcihp_unplug_request(hp, 4);
	acpi_pcihp_unplug_request(hp, 30);
	acpi_pcihp_plug(hp, 6);
	acpi_pcihp_class.reset(hp);
	ck_assert_uint_eq(n_ejected, 2);
	ck_assert_uint_eq(ejected[0], 4);
	ck_assert_uint_eq(ejected[1], 30);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_UP), 4), 0);
	ck_assert_uint_eq(in(REG(ACPI_PCIHP_DOWN), 4), 0);
}
END_TEST

/* --- the DSDT under acpiexec ------------------------------------------- */

static uint8_t tables[0x10000];

static const uint8_t *dsdt_of(const uint8_t *t, size_t len)
{
	/* RSDP at 0 -> RSDT -> FACP -> DSDT (32-bit pointers, tables at BASE) */
	const uint64_t base = 0xE0000;
	uint32_t rsdt = t[16] | t[17] << 8 | t[18] << 16 | (uint32_t)t[19] << 24;
	const uint8_t *r = t + (rsdt - base);
	uint32_t n = ((r[4] | r[5] << 8) - 36) / 4;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = r + 36 + 4 * i;
		uint32_t p = e[0] | e[1] << 8 | e[2] << 16 | (uint32_t)e[3] << 24;
		const uint8_t *f = t + (p - base);

		if (memcmp(f, "FACP", 4) == 0) {
			uint32_t d = f[40] | f[41] << 8 | f[42] << 16 | (uint32_t)f[43] << 24;

			ck_assert_uint_lt(d - base, len);
			return t + (d - base);
		}
	}
	ck_abort_msg("no FACP");
	return NULL;
}

static int have_acpiexec(void)
{
	return system("command -v acpiexec >/dev/null 2>&1 && command -v iasl >/dev/null 2>&1") ==
	       0;
}

/*
 * Reduce acpiexec's field-I/O debug output (-x 0x1000, ACPI_LV_BFIELD) and
 * its notify handler's lines to "W AE08 00000008" / "R AE00 08080808" /
 * "N S18_ 0x01", one per line. The notify handler runs on another thread and
 * its lines land in the middle of the debug lines ("ExFieldDatumIo : ACPI
 * Exec: ... Notify ...\nValue Read ..."), so each item is matched wherever it
 * is in a line, not by field position.
 */
static const char trace_awk[] =
	"match($0, /Received a System Notify on \\[....\\]/) {\n"
	"  name = substr($0, RSTART + 29, 4); rest = substr($0, RSTART + RLENGTH)\n"
	"  if (match(rest, /Value 0x[0-9A-Fa-f]+/))\n"
	"    printf \"N %s %s\\n\", name, substr(rest, RSTART + 6, RLENGTH - 6) }\n"
	"match($0, /SystemIO.* at [0-9A-Fa-f]+/) {\n"
	"  s = substr($0, RSTART, RLENGTH); a = substr(s, length(s) - 3) }\n"
	"match($0, /Value (Written|Read) [0-9A-Fa-f]+/) {\n"
	"  split(substr($0, RSTART, RLENGTH), w, \" \")\n"
	"  printf \"%s %s %s\\n\", w[2] == \"Written\" ? \"W\" : \"R\", a,\n"
	"         substr(w[3], length(w[3]) - 7) }\n";

/*
 * Run acpiexec on the DSDT with @batch; return the reduced trace: register
 * accesses in order, then the notifications sorted (acpiexec runs them
 * deferred, so their order relative to other output varies). Static buffer.
 */
static char *acpiexec(const char *dir, const char *fill, const char *batch)
{
	static char out[8192];
	char cmd[1024];
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s/trace.awk", dir);
	p = fopen(cmd, "w");
	ck_assert_ptr_nonnull(p);
	fputs(trace_awk, p);
	fclose(p);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && acpiexec -x 0x1000 -fv %s -b '%s' dsdt.dat >out.txt 2>&1 && "
		 "awk -f trace.awk out.txt >trace.txt && "
		 "{ grep -v '^N' trace.txt; grep '^N' trace.txt | LC_ALL=C sort; true; }",
		 dir, fill, batch);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	ck_assert_int_eq(pclose(p), 0);
	return out;
}

START_TEST(test_dsdt_acpiexec)
{
	struct acpi_pci_info *pci = calloc(1, sizeof(*pci));
	struct acpi_config cfg = {.n_cpus = 2};
	struct error *err = NULL;
	char dir[] = "/tmp/test-acpi-hotplug.XXXXXX", cmd[512];
	const uint8_t *d;
	int64_t n;
	FILE *f;

	if (!have_acpiexec()) {
		/* acpica-tools is in ./run's PACKAGES: skipping is only for bare machines. */
		fprintf(stderr, "SKIP: acpiexec is not installed (acpica-tools)\n");
		free(pci);
		return;
	}
	ck_assert_ptr_nonnull(pci);
	/* The host bridge as hw/pci/pci.c's pci_acpi_info() describes it. */
	pci->bus_end = 255;
	pci->mmio32_base = PCI_MMIO32_BASE;
	pci->mmio32_len = PCI_MMIO32_END - PCI_MMIO32_BASE;
	pci->ecam_base = PCI_ECAM_BASE;
	pci->hotplug = true;
	cfg.pci = pci;
	n = acpi_build_tables(tables, sizeof(tables), 0xE0000, &cfg, &err);
	ck_assert_msg(n > 0, "build failed: %s", err ? err->msg : "?");
	d = dsdt_of(tables, (size_t)n);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "%s/dsdt.dat", dir);
	f = fopen(cmd, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(d, d[4] | d[5] << 8 | d[6] << 16, 1, f), 1);
	fclose(f);
	free(pci);

	/* iasl disassembles it cleanly and names QEMU's objects */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && iasl -d dsdt.dat >iasl.log 2>&1 && ! grep -Eqi 'error|warning' iasl.log"
		 " && grep -q 'Device (S18)' dsdt.dsl && grep -q 'Method (_E01' dsdt.dsl"
		 " && grep -q 'PNP0A06' dsdt.dsl && grep -q 'SystemIO, 0xAE00' dsdt.dsl",
		 dir);
	ck_assert_msg(system(cmd) == 0, "iasl -d or its content check failed (see %s)", dir);

	/* _EJ0 of slot 3 (S18): BNUM := 0, then B0EJ := 1 << 3, 32-bit writes */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.PCI0.S18._EJ0 0"),
			 "W AE10 00000000\nW AE08 00000008\n");
	/* slot 31 (SF8) */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.PCI0.SF8._EJ0 0"),
			 "W AE10 00000000\nW AE08 80000000\n");
	/*
	 * _E01 with every region byte 0x08 (PCIU = PCID = 0x08080808): BNUM := 0,
	 * PCIU read, PCID read; Device Check (1) and Eject Request (3) for
	 * slots 3, 11, 19, 27 and no other.
	 */
	ck_assert_str_eq(acpiexec(dir, "8", "execute \\_GPE._E01"),
			 "W AE10 00000000\n"
			 "R AE00 08080808\n"
			 "R AE04 08080808\n"
			 "N S18_ 0x01\nN S18_ 0x03\nN S58_ 0x01\nN S58_ 0x03\n"
			 "N S98_ 0x01\nN S98_ 0x03\nN SD8_ 0x01\nN SD8_ 0x03\n");
	/* nothing pending: the registers are read, nobody is notified */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_GPE._E01"),
			 "W AE10 00000000\nR AE00 00000000\nR AE04 00000000\n");
	/* slot 0 (the host bridge) has no slot object */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.PCI0.S00._EJ0 0"), "");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("acpi-hotplug");
	TCase *tc = tcase_create("regs");
	TCase *aml = tcase_create("aml");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_plug_raises_gpe1);
	tcase_add_test(tc, test_unplug_and_eject);
	tcase_add_test(tc, test_bus_select_and_rmv);
	tcase_add_test(tc, test_reset_completes_removals);
	suite_add_tcase(s, tc);
	tcase_set_timeout(aml, 60);
	tcase_add_test(aml, test_dsdt_acpiexec);
	suite_add_tcase(s, aml);
	return s;
}

#include "check-main.h"
