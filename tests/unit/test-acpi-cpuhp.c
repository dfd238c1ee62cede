/*
 * Unit tests of ACPI CPU hotplug (QEMU's modern interface): the register
 * block at 0xAF00 over the fake machine (legacy mode until the selector is
 * written, the event scan, eject, _OST), and the DSDT's CPU objects run by
 * ACPICA's acpiexec against its simulated operation regions (the register
 * accesses and Notify()s it reports).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/device.h"
#include "hw/devices.h"
#include "hw/platform/acpi-cpuhp.h"
#include "common/vmstate.h"
#include "hw/platform/acpi.h"
#include "tests/unit/fake-machine.h"

static struct iobus *bus;
static void *pm;
static struct acpi_cpuhp *c;
static struct vm *the_vm;
static struct vm_config the_cfg = {.name = "t", .vcpus = 2, .maxcpus = 6, .acpi = true};
static struct vm_config *cfg = &the_cfg;
static unsigned ejected[16], n_ejected;
static uint32_t ost[16][3];
static unsigned n_ost;

static void on_eject(void *opaque, unsigned cpu)
{
	ck_assert_ptr_eq(opaque, &n_ejected);
	ck_assert_uint_lt(n_ejected, 16);
	ejected[n_ejected++] = cpu;
}

static void on_ost(void *opaque, unsigned cpu, uint32_t event, uint32_t status)
{
	ck_assert_uint_lt(n_ost, 16);
	ost[n_ost][0] = cpu;
	ost[n_ost][1] = event;
	ost[n_ost][2] = status;
	n_ost++;
}

static const struct acpi_cpuhp_handlers handlers = {.eject = on_eject, .ost = on_ost};

static void setup(void)
{
	void *state;

	the_vm = fake_vm_new(cfg, 0, NULL);
	bus = vm_iobus(the_vm);
	fake_irq_clear();
	n_ejected = n_ost = 0;
	ck_assert_int_eq(acpi_pm_class.realize(the_vm, NULL, &pm, NULL), 0);
	fake_vm_add_device(the_vm, &acpi_pm_class, pm);
	ck_assert(acpi_cpuhp_class.wanted(cfg, NULL));
	ck_assert_int_eq(acpi_cpuhp_class.realize(the_vm, NULL, &state, NULL), 0);
	c = state;
	acpi_cpuhp_set_handlers(c, &handlers, &n_ejected);
}

static void teardown(void)
{
	acpi_cpuhp_class.unrealize(c);
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

#define REG(r) (ACPI_CPUHP_BASE + (r))

START_TEST(test_legacy_until_selector_written)
{
	/* QEMU's legacy bitmap: vCPUs 0 and 1 present */
	ck_assert(!acpi_cpuhp_modern(c));
	ck_assert_uint_eq(in(REG(0), 1), 0x03);
	out(REG(ACPI_CPUHP_FLAGS), 1, ACPI_CPUHP_EJECT); /* ignored in legacy mode */
	ck_assert_uint_eq(n_ejected, 0);
	/* the spec's detection: selector 0, command 0, command data 2 reads 0 */
	out(REG(ACPI_CPUHP_SEL), 4, 0);
	ck_assert(acpi_cpuhp_modern(c));
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_NEXT_EVENT);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_SEL), 4), 0);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), ACPI_CPUHP_ENABLED);
	/* enumeration: selector 5 is the last valid one, 6 reads 0 everywhere */
	out(REG(ACPI_CPUHP_SEL), 4, 5);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_DATA), 4), 5);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), 0);
	out(REG(ACPI_CPUHP_SEL), 4, 6);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_DATA), 4), 0);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), 0);
}
END_TEST

START_TEST(test_plug_scan_and_eject)
{
	out(REG(ACPI_CPUHP_SEL), 4, 0);
	out(ACPI_GPE0_BLK + 2, 1, 1u << ACPI_GPE_CPU_HOTPLUG);
	acpi_cpuhp_plug(c, 4);
	ck_assert_uint_eq(in(ACPI_GPE0_BLK, 1), 1u << ACPI_GPE_CPU_HOTPLUG);
	ck_assert_int_eq(fake_irq_level(ACPI_SCI_IRQ), 1);
	out(ACPI_GPE0_BLK, 1, 1u << ACPI_GPE_CPU_HOTPLUG);
	/* CSCN: command 0 finds vCPU 4 with an insert event, searching from the selector */
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_NEXT_EVENT);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), ACPI_CPUHP_ENABLED | ACPI_CPUHP_INSERT);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_DATA), 4), 4);
	/* APIC ID (command 3) */
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_GET_ID);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_DATA), 4), 4);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_SEL), 4), 0);
	out(REG(ACPI_CPUHP_FLAGS), 1, ACPI_CPUHP_INSERT);
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_NEXT_EVENT);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), ACPI_CPUHP_ENABLED); /* no more events */
	/* removal request, then _OST (event, status) and the eject */
	acpi_cpuhp_unplug_request(c, 4);
	ck_assert_uint_eq(in(ACPI_GPE0_BLK, 1), 1u << ACPI_GPE_CPU_HOTPLUG);
	out(REG(ACPI_CPUHP_SEL), 4, 1);
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_NEXT_EVENT);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_DATA), 4), 4);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), ACPI_CPUHP_ENABLED | ACPI_CPUHP_REMOVE);
	out(REG(ACPI_CPUHP_FLAGS), 1, ACPI_CPUHP_REMOVE);
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_OST_EVENT);
	out(REG(ACPI_CPUHP_DATA), 4, 3);
	ck_assert_uint_eq(n_ost, 0);
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_OST_STATUS);
	out(REG(ACPI_CPUHP_DATA), 4, 0x80);
	ck_assert_uint_eq(n_ost, 1);
	ck_assert_uint_eq(ost[0][0], 4);
	ck_assert_uint_eq(ost[0][1], 3);
	ck_assert_uint_eq(ost[0][2], 0x80);
	out(REG(ACPI_CPUHP_FLAGS), 1, ACPI_CPUHP_EJECT);
	ck_assert_uint_eq(n_ejected, 1);
	ck_assert_uint_eq(ejected[0], 4);
	/* gone for the guest at once; a second eject does nothing */
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), 0);
	out(REG(ACPI_CPUHP_FLAGS), 1, ACPI_CPUHP_EJECT);
	ck_assert_uint_eq(n_ejected, 1);
	/* vCPU 0 cannot be ejected */
	out(REG(ACPI_CPUHP_SEL), 4, 0);
	out(REG(ACPI_CPUHP_FLAGS), 1, ACPI_CPUHP_EJECT);
	ck_assert_uint_eq(n_ejected, 1);
	/* out of range plugs are ignored */
	acpi_cpuhp_plug(c, 6);
	acpi_cpuhp_plug(c, 1000);
	out(REG(ACPI_CPUHP_CMD), 1, ACPI_CPUHP_CMD_NEXT_EVENT);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), ACPI_CPUHP_ENABLED);
}
END_TEST

START_TEST(test_save_load)
{
	struct vmstate_buf b = {0};
	struct error *err = NULL;

	out(REG(ACPI_CPUHP_SEL), 4, 3);
	acpi_cpuhp_plug(c, 3);
	ck_assert_int_eq(acpi_cpuhp_class.save(c, &b, &err), 0);
	acpi_cpuhp_unplugged(c, 3);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), 0);
	b.pos = 0;
	b.failed = false;
	ck_assert_int_eq(acpi_cpuhp_class.load(c, &b, 1, &err), 0);
	ck_assert_uint_eq(in(REG(ACPI_CPUHP_FLAGS), 1), ACPI_CPUHP_ENABLED | ACPI_CPUHP_INSERT);
	/* a stream for another maxcpus is refused */
	b.data[0] ^= 1;
	b.pos = 0;
	b.failed = false;
	ck_assert_int_lt(acpi_cpuhp_class.load(c, &b, 1, &err), 0);
	error_free(err);
	free(b.data);
}
END_TEST

/* --- the DSDT under acpiexec ------------------------------------------- */

static uint8_t tables[0x10000];

static const uint8_t *table_of(const uint8_t *t, size_t len, const char *sig)
{
	const uint64_t base = 0xE0000;
	uint32_t rsdt = t[16] | t[17] << 8 | t[18] << 16 | (uint32_t)t[19] << 24;
	const uint8_t *r = t + (rsdt - base);
	uint32_t n = ((r[4] | r[5] << 8) - 36) / 4;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = r + 36 + 4 * i;
		uint32_t p = e[0] | e[1] << 8 | e[2] << 16 | (uint32_t)e[3] << 24;
		const uint8_t *f = t + (p - base);

		if (strcmp(sig, "DSDT") == 0 && memcmp(f, "FACP", 4) == 0) {
			uint32_t d = f[40] | f[41] << 8 | f[42] << 16 | (uint32_t)f[43] << 24;

			ck_assert_uint_lt(d - base, len);
			return t + (d - base);
		}
		if (memcmp(f, sig, 4) == 0) {
			return f;
		}
	}
	ck_abort_msg("no %s", sig);
	return NULL;
}

START_TEST(test_madt_lists_absent_cpus_disabled)
{
	struct acpi_config ac = {.n_cpus = 2, .max_cpus = 5};
	struct error *err = NULL;
	int64_t n = acpi_build_tables(tables, sizeof(tables), 0xE0000, &ac, &err);
	const uint8_t *m;

	ck_assert_int_gt(n, 0);
	m = table_of(tables, (size_t)n, "APIC");
	for (unsigned i = 0; i < 5; i++) {
		const uint8_t *e = m + 44 + 8 * i;

		ck_assert_uint_eq(e[0], 0);
		ck_assert_uint_eq(e[3], i);
		ck_assert_uint_eq(e[4], i < 2 ? 1 : 0);
	}
	ck_assert_uint_eq(m[44 + 8 * 5], 1); /* then the I/O APIC */
	ac.max_cpus = ACPI_MAX_CPUS + 1;
	ck_assert_int_lt(acpi_build_tables(tables, sizeof(tables), 0xE0000, &ac, &err), 0);
	error_free(err);
}
END_TEST

/* As QEMU's build_srat: every possible CPU has an enabled affinity entry, plugged or not. */
START_TEST(test_srat_lists_possible_cpus)
{
	struct acpi_srat_info srat = {
		.ram_below_4g = 256 << 20, .hotplug_base = 1ULL << 32, .hotplug_len = 1ULL << 30};
	struct acpi_config ac = {.n_cpus = 2, .max_cpus = 5, .srat = &srat};
	struct error *err = NULL;
	int64_t n = acpi_build_tables(tables, sizeof(tables), 0xE0000, &ac, &err);
	const uint8_t *t;

	ck_assert_int_gt(n, 0);
	t = table_of(tables, (size_t)n, "SRAT");
	for (unsigned i = 0; i < 5; i++) {
		const uint8_t *e = t + 48 + 16 * i;

		ck_assert_uint_eq(e[0], 0); /* processor local APIC affinity */
		ck_assert_uint_eq(e[3], i); /* APIC ID */
		ck_assert_uint_eq(e[4], 1); /* enabled */
	}
	ck_assert_uint_eq(t[48 + 16 * 5], 1); /* then memory affinity */
}
END_TEST

static int have_acpiexec(void)
{
	return system("command -v acpiexec >/dev/null 2>&1 && command -v iasl >/dev/null 2>&1") ==
	       0;
}

/* acpiexec's field-I/O trace and notifications reduced to "W AF00 00000001", "N C001 0x03". */
/*
 * acpiexec's field-I/O trace and notifications reduced to "W AF00 00000001",
 * "N C001 0x03", and "= VALUE" for an integer result; only from the batch
 * command on (the namespace initialization before it runs _INI and _STA).
 */
static const char trace_awk[] =
	"/^Evaluating / { on = 1 }\n"
	"on && /ExAccessRegion.*SystemIO/ { a = $NF; a = substr(a, length(a) - 3) }\n"
	"on && /Value Written|Value Read/ { v = $(NF - 2); sub(/,/, \"\", v);\n"
	"  printf \"%s %s %s\\n\", ($0 ~ /Written/ ? \"W\" : \"R\"), a, substr(v, length(v) - 7) "
	"}\n"
	"on && /Received a System Notify/ { printf \"N %s %s\\n\", substr($9, 2, 4), $12 }\n"
	"on && /\\[Integer\\] =/ { printf \"= %s\\n\", $NF }\n";

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
	struct acpi_config ac = {.n_cpus = 1, .max_cpus = 4};
	struct error *err = NULL;
	char dir[] = "/tmp/test-acpi-cpuhp.XXXXXX", cmd[768];
	const uint8_t *d;
	int64_t n;
	FILE *f;

	if (!have_acpiexec()) {
		/* acpica-tools is in ./run's PACKAGES: skipping is only for bare machines. */
		fprintf(stderr, "SKIP: acpiexec is not installed (acpica-tools)\n");
		return;
	}
	n = acpi_build_tables(tables, sizeof(tables), 0xE0000, &ac, &err);
	ck_assert_msg(n > 0, "build failed: %s", err ? err->msg : "?");
	d = table_of(tables, (size_t)n, "DSDT");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "%s/dsdt.dat", dir);
	f = fopen(cmd, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(d, d[4] | d[5] << 8 | d[6] << 16, 1, f), 1);
	fclose(f);

	/* iasl disassembles it cleanly and names QEMU's objects */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && iasl -d dsdt.dat >iasl.log 2>&1 && ! grep -Eqi 'error|warning' iasl.log"
		 " && grep -q 'Device (CPUS)' dsdt.dsl && grep -q 'Device (C003)' dsdt.dsl"
		 " && ! grep -q 'Device (C004)' dsdt.dsl && grep -q 'Method (_E02' dsdt.dsl"
		 " && grep -q 'Method (CSCN' dsdt.dsl && grep -q 'SystemIO, 0xAF00' dsdt.dsl"
		 " && grep -q 'ACPI0010' dsdt.dsl && grep -q 'Method (_EJ0' dsdt.dsl"
		 " && grep -q '0x00, 0x08, 0x03, 0x03, 0x01, 0x00, 0x00, 0x00' dsdt.dsl",
		 dir);
	ck_assert_msg(system(cmd) == 0, "iasl -d or its content check failed (see %s)", dir);

	/* _INI of the resources: the selector write that leaves QEMU's legacy mode */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.PRES._INI"), "W AF00 00000000\n");
	/* _STA of C002: selector 2, status byte; present (fill 1: CPEN) gives 0xF */
	ck_assert_str_eq(acpiexec(dir, "1", "execute \\_SB.CPUS.C002._STA"),
			 "W AF00 00000002\nR AF04 00000001\n= 000000000000000F\n");
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.CPUS.C002._STA"),
			 "W AF00 00000002\nR AF04 00000000\n= 0000000000000000\n");
	/* _EJ0 of C003: selector 3, then bit 3 of the control byte */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.CPUS.C003._EJ0 0"),
			 "W AF00 00000003\nW AF04 00000008\n");
	/* _OST of C001 (eject request 3, failure 1): command 1, event, command 2, status */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.CPUS.C001._OST 3 1 0"),
			 "W AF00 00000001\nW AF05 00000001\nW AF08 00000003\n"
			 "W AF05 00000002\nW AF08 00000001\n");
	/* CTFY(uid, event): Notify on that vCPU's object only */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.CPUS.CTFY 2 3"), "N C002 0x03\n");
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.CPUS.CTFY 9 1"), "");
	/*
	 * _E02 -> CSCN with no event pending: command 0, the status read for
	 * CINS then for CRMV, nobody notified, the loop ends. (With an event
	 * the loop needs a register that clears, which acpiexec's static
	 * regions are not: tests/guests/cpuhp.c runs that protocol.)
	 */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_GPE._E02"),
			 "W AF05 00000000\nR AF04 00000000\nR AF04 00000000\n");
	/* vCPU 0 has no _EJ0 */
	ck_assert_str_eq(acpiexec(dir, "0", "execute \\_SB.CPUS.C000._EJ0 0"), "");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("acpi-cpuhp");
	TCase *tc = tcase_create("regs");
	TCase *aml = tcase_create("aml");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_legacy_until_selector_written);
	tcase_add_test(tc, test_plug_scan_and_eject);
	tcase_add_test(tc, test_save_load);
	suite_add_tcase(s, tc);
	tcase_set_timeout(aml, 60);
	tcase_add_test(aml, test_madt_lists_absent_cpus_disabled);
	tcase_add_test(aml, test_srat_lists_possible_cpus);
	tcase_add_test(aml, test_dsdt_acpiexec);
	suite_add_tcase(s, aml);
	return s;
}

#include "check-main.h"
