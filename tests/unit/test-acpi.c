/*
 * Unit tests of the AML emitter and the ACPI table builder: encodings,
 * checksums, table links, MADT contents, limits; and, when iasl is
 * installed, that iasl disassembles every table without errors.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hw/platform/acpi.h"
#include "hw/platform/aml.h"
#include "hw/core/memory.h"

#define BASE 0xE0000ULL

static uint8_t buf[0x10000];

static uint64_t rd(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++) {
		v |= (uint64_t)p[i] << (8 * i);
	}
	return v;
}

static const uint8_t *at(uint64_t gpa)
{
	ck_assert_uint_ge(gpa, BASE);
	ck_assert_uint_lt(gpa, BASE + sizeof(buf));
	return buf + (gpa - BASE);
}

static int sum_ok(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	for (size_t i = 0; i < len; i++) {
		s = (uint8_t)(s + p[i]);
	}
	return s == 0;
}

/* A table at @gpa with signature @sig and a correct checksum; returns it. */
static const uint8_t *table(uint64_t gpa, const char *sig)
{
	const uint8_t *t = at(gpa);
	uint32_t len = (uint32_t)rd(t + 4, 4);

	ck_assert_msg(memcmp(t, sig, 4) == 0, "expected %s, found %.4s", sig, t);
	ck_assert_uint_ge(len, 36);
	ck_assert_uint_le(gpa + len, BASE + sizeof(buf));
	ck_assert_msg(sum_ok(t, len), "%s checksum", sig);
	return t;
}

static bool with_pvpanic; /* build() describes the pvpanic device */

static int64_t build(unsigned cpus, const struct acpi_pci_info *pci)
{
	struct acpi_config cfg = {
		.n_cpus = cpus,
		.pci = pci,
		.pci_hole_base = 0xC0000000,
		.pci_hole_len = 0x3EC00000,
		.pvpanic = with_pvpanic,
	};
	struct error *err = NULL;
	int64_t n;

	memset(buf, 0xAA, sizeof(buf));
	n = acpi_build_tables(buf, sizeof(buf), BASE, &cfg, &err);
	ck_assert_msg(n > 0, "build failed: %s", err ? err->msg : "?");
	return n;
}

/* Walk RSDP -> XSDT -> tables; returns the table with @sig or NULL. */
static const uint8_t *find(const char *sig)
{
	const uint8_t *x = table(rd(buf + 24, 8), "XSDT");
	uint32_t n = ((uint32_t)rd(x + 4, 4) - 36) / 8;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *t = at(rd(x + 36 + 8 * i, 8));

		if (memcmp(t, sig, 4) == 0) {
			return table(rd(x + 36 + 8 * i, 8), sig);
		}
	}
	return NULL;
}

START_TEST(test_rsdp)
{
	const uint8_t *r;

	build(1, NULL);
	ck_assert(memcmp(buf, "RSD PTR ", 8) == 0);
	ck_assert(sum_ok(buf, 20));
	ck_assert(sum_ok(buf, 36));
	ck_assert_uint_eq(buf[15], 2);
	ck_assert_uint_eq(rd(buf + 20, 4), 36);
	r = table(rd(buf + 16, 4), "RSDT");
	ck_assert_uint_eq(rd(r + 4, 4), 36 + 4 * 2);
	table(rd(buf + 24, 8), "XSDT");
}
END_TEST

START_TEST(test_fadt)
{
	const uint8_t *f, *facs, *dsdt;

	build(2, NULL);
	f = find("FACP");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(rd(f + 4, 4), 276);
	ck_assert_uint_eq(f[8], 6);
	ck_assert_uint_eq(rd(f + 46, 2), 9);
	ck_assert_uint_eq(rd(f + 48, 4), 0); /* no SMI_CMD: always ACPI mode */
	ck_assert_uint_eq(rd(f + 56, 4), ACPI_PM1_EVT_BLK);
	ck_assert_uint_eq(rd(f + 64, 4), ACPI_PM1_CNT_BLK);
	ck_assert_uint_eq(rd(f + 76, 4), ACPI_PM_TMR_BLK);
	ck_assert_uint_eq(f[88], 4);
	ck_assert_uint_eq(f[89], 2);
	ck_assert_uint_eq(f[91], 4);
	ck_assert_uint_eq(rd(f + 112, 4) & (1u << 10), 1u << 10); /* RESET_REG_SUP */
	ck_assert_uint_eq(rd(f + 112, 4) & (1u << 4), 0);	  /* fixed power button */
	ck_assert_uint_eq(f[116], 1);				  /* reset reg in I/O space */
	ck_assert_uint_eq(rd(f + 120, 8), 0x64);
	ck_assert_uint_eq(f[128], 0xFE);
	ck_assert_uint_eq(rd(f + 132, 8), 0); /* the FACS is named once, by FIRMWARE_CTRL */
	ck_assert_uint_eq(rd(f + 40, 4), rd(f + 140, 8));
	facs = at(rd(f + 36, 4));
	ck_assert(memcmp(facs, "FACS", 4) == 0);
	ck_assert_uint_eq(rd(facs + 4, 4), 64);
	ck_assert_uint_eq(rd(f + 36, 4) % 64, 0);
	dsdt = table(rd(f + 140, 8), "DSDT");
	ck_assert_uint_eq(dsdt[8], 2);
}
END_TEST

START_TEST(test_madt)
{
	static const unsigned counts[] = {1, 2, 7, 64};

	for (unsigned c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		unsigned cpus = counts[c], lapics = 0, ioapics = 0, isos = 0, nmis = 0;
		const uint8_t *m, *e, *end;

		build(cpus, NULL);
		m = find("APIC");
		ck_assert_ptr_nonnull(m);
		ck_assert_uint_eq(rd(m + 36, 4), ACPI_LAPIC_ADDR);
		end = m + rd(m + 4, 4);
		for (e = m + 44; e < end; e += e[1]) {
			ck_assert_uint_ge(e[1], 2);
			switch (e[0]) {
			case 0:
				ck_assert_uint_eq(e[3], lapics);
				ck_assert_uint_eq(rd(e + 4, 4), 1);
				lapics++;
				break;
			case 1:
				ck_assert_uint_eq(rd(e + 4, 4), ACPI_IOAPIC_ADDR);
				ck_assert_uint_eq(rd(e + 8, 4), 0);
				ioapics++;
				break;
			case 2:
				if (e[3] == 0) {
					ck_assert_uint_eq(rd(e + 4, 4), 2);
				} else {
					ck_assert_uint_eq(e[3], 9);
					ck_assert_uint_eq(rd(e + 4, 4), 9);
					ck_assert_uint_eq(rd(e + 8, 2), 0xD);
				}
				isos++;
				break;
			case 4:
				nmis++;
				break;
			default:
				ck_abort_msg("unexpected MADT entry type %u", e[0]);
			}
		}
		ck_assert(e == end);
		ck_assert_uint_eq(lapics, cpus);
		ck_assert_uint_eq(ioapics, 1);
		ck_assert_uint_eq(isos, 2);
		ck_assert_uint_eq(nmis, 1);
		ck_assert_ptr_null(find("MCFG"));
	}
}
END_TEST

START_TEST(test_limits)
{
	struct acpi_config cfg = {.n_cpus = 0};
	struct error *err = NULL;

	ck_assert_int_eq(acpi_build_tables(buf, sizeof(buf), BASE, &cfg, &err), -EINVAL);
	ck_assert_ptr_nonnull(err);
	error_free(err);
	err = NULL;
	cfg.n_cpus = ACPI_MAX_CPUS + 1;
	ck_assert_int_eq(acpi_build_tables(buf, sizeof(buf), BASE, &cfg, &err), -EINVAL);
	error_free(err);
	err = NULL;
	cfg.n_cpus = 1;
	ck_assert_int_eq(acpi_build_tables(buf, 200, BASE, &cfg, &err), -ENOSPC);
	error_free(err);
	err = NULL;
	cfg.n_cpus = ACPI_MAX_CPUS;
	ck_assert_int_gt(acpi_build_tables(buf, sizeof(buf), BASE, &cfg, &err), 0);
	ck_assert_ptr_null(err);
}
END_TEST

static int hook_called;

static void hook(struct aml *a, void *opaque)
{
	hook_called = *(int *)opaque;
	aml_name(a, "HOOK");
	aml_integer(a, 0x1234);
}

START_TEST(test_pci_info)
{
	static struct acpi_pci_info pci = {
		.bus_start = 0,
		.bus_end = 255,
		.mmio32_base = 0xC0000000,
		.mmio32_len = 0x20000000,
		.mmio64_base = 0x8000000000ULL,
		.mmio64_len = 0x4000000000ULL,
		.ecam_base = 0xE0000000,
		.prt = {{1, 0, 16}, {2, 1, 17}},
		.n_prt = 2,
		.dsdt_hook = hook,
	};
	static const uint8_t hook_aml[] = {0x08, 'H', 'O', 'O', 'K', 0x0B, 0x34, 0x12};
	static const uint8_t prt_name[] = {0x08, '_', 'P', 'R', 'T', 0x12};
	int magic = 42;
	const uint8_t *m, *f, *d;
	uint32_t dlen;

	pci.hook_opaque = &magic;
	hook_called = 0;
	build(2, &pci);
	ck_assert_int_eq(hook_called, 42);
	m = find("MCFG");
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(rd(m + 44, 8), 0xE0000000);
	ck_assert_uint_eq(m[55], 255);
	f = find("FACP");
	d = table(rd(f + 140, 8), "DSDT");
	dlen = (uint32_t)rd(d + 4, 4);
	ck_assert_ptr_nonnull(memmem(d, dlen, hook_aml, sizeof(hook_aml)));
	ck_assert_ptr_nonnull(memmem(d, dlen, prt_name, sizeof(prt_name)));
}
END_TEST

START_TEST(test_aml_encodings)
{
	struct aml a;
	static const uint8_t want_name[] = {0x5C, 0x2E, '_', 'S', 'B',	'_',  'P', 'C', 'I', '0',
					    0x2F, 3,	'A', 'B', '_',	'_',  'C', '_', '_', '_',
					    'D',  '1',	'2', '3', 0x5E, 0x5E, 'X', '_', '_', '_'};
	static const uint8_t want_int[] = {0x00, 0x01, 0x0A, 0x02, 0x0B, 0x00, 0x01,
					   0x0C, 0x00, 0x00, 0x01, 0x00, 0x0E, 0,
					   0,	 0,    0,    1,	   0,	 0,    0};

	aml_init(&a);
	aml_name_string(&a, "\\_SB.PCI0");
	aml_name_string(&a, "AB.C.D123");
	aml_name_string(&a, "^^X");
	ck_assert_int_eq(a.err, 0);
	ck_assert_uint_eq(a.len, sizeof(want_name));
	ck_assert_mem_eq(a.buf, want_name, sizeof(want_name));
	aml_fini(&a);

	aml_init(&a);
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 2);
	aml_integer(&a, 0x100);
	aml_integer(&a, 0x10000);
	aml_integer(&a, 0x100000000ULL);
	ck_assert_uint_eq(a.len, sizeof(want_int));
	ck_assert_mem_eq(a.buf, want_int, sizeof(want_int));
	aml_fini(&a);

	/* EISAID("PNP0A03") is 0x030AD041 */
	aml_init(&a);
	aml_eisaid(&a, "PNP0A03");
	ck_assert_uint_eq(a.len, 5);
	ck_assert_uint_eq(a.buf[0], 0x0C);
	ck_assert_uint_eq(rd(a.buf + 1, 4), 0x030AD041);
	aml_fini(&a);

	/* invalid names latch an error */
	aml_init(&a);
	aml_name_string(&a, "TOOLONG");
	ck_assert_int_eq(a.err, -EINVAL);
	aml_fini(&a);
	aml_init(&a);
	aml_eisaid(&a, "pnp0a03");
	ck_assert_int_eq(a.err, -EINVAL);
	aml_fini(&a);
}
END_TEST

/* A Scope whose body is @body bytes; returns the PkgLength encoding's size. */
static unsigned pkglen_bytes(size_t body, uint32_t *ret_len)
{
	struct aml a;
	unsigned n, lead;

	aml_init(&a);
	aml_scope_begin(&a, "");
	for (size_t i = 1; i < body; i++) { /* the NullName is one byte */
		aml_byte(&a, 0xA3);	    /* Noop */
	}
	aml_end(&a);
	ck_assert_int_eq(a.err, 0);
	ck_assert_uint_eq(a.buf[0], 0x10);
	lead = a.buf[1];
	n = (lead >> 6) + 1;
	if (n == 1) {
		*ret_len = lead & 0x3F;
	} else {
		*ret_len = lead & 0x0F;
		for (unsigned i = 1; i < n; i++) {
			*ret_len |= (uint32_t)a.buf[1 + i] << (4 + 8 * (i - 1));
		}
	}
	ck_assert_uint_eq(a.len, 1 + n + body);
	aml_fini(&a);
	return n;
}

START_TEST(test_aml_pkglength)
{
	uint32_t len;

	ck_assert_uint_eq(pkglen_bytes(62, &len), 1);
	ck_assert_uint_eq(len, 63);
	ck_assert_uint_eq(pkglen_bytes(63, &len), 2);
	ck_assert_uint_eq(len, 65);
	ck_assert_uint_eq(pkglen_bytes(4093, &len), 2);
	ck_assert_uint_eq(len, 4095);
	ck_assert_uint_eq(pkglen_bytes(4094, &len), 3);
	ck_assert_uint_eq(len, 4097);
	ck_assert_uint_eq(pkglen_bytes(70000, &len), 3);
	ck_assert_uint_eq(len, 70003);
}
END_TEST

START_TEST(test_aml_depth)
{
	struct aml a;

	aml_init(&a);
	for (int i = 0; i < AML_MAX_DEPTH + 1; i++) {
		aml_scope_begin(&a, "X");
	}
	ck_assert_int_eq(a.err, -E2BIG);
	aml_fini(&a);
	aml_init(&a);
	aml_end(&a);
	ck_assert_int_eq(a.err, -EINVAL);
	aml_fini(&a);
}
END_TEST

static int have_iasl(void)
{
	return system("command -v iasl >/dev/null 2>&1") == 0;
}

static void dump(const char *dir, const char *name, const uint8_t *t)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(t, rd(t + 4, 4), 1, f), 1);
	fclose(f);
}

START_TEST(test_iasl_disassembles)
{
	static struct acpi_pci_info pci = {
		.bus_end = 255,
		.mmio32_base = 0xC0000000,
		.mmio32_len = 0x20000000,
		.ecam_base = 0xE0000000,
		.prt = {{1, 0, 16}, {2, 1, 17}},
		.n_prt = 2,
	};
	static const char *sigs[] = {"FACP", "APIC", "MCFG"};
	char dir[] = "/tmp/test-acpi.XXXXXX", cmd[1024];
	const uint8_t *f;

	if (!have_iasl()) {
		fprintf(stderr, "SKIP: iasl is not installed (acpica-tools)\n");
		return;
	}
	ck_assert_ptr_nonnull(mkdtemp(dir));
	build(4, &pci);
	for (unsigned i = 0; i < 3; i++) {
		dump(dir, sigs[i], find(sigs[i]));
	}
	f = find("FACP");
	dump(dir, "DSDT", at(rd(f + 140, 8)));
	for (unsigned i = 0; i < 4; i++) {
		const char *s = i < 3 ? sigs[i] : "DSDT";

		snprintf(cmd, sizeof(cmd),
			 "cd %s && iasl -d %s.dat >%s.log 2>&1 && ! grep -Eqi "
			 "'error|warning' %s.log",
			 dir, s, s, s);
		ck_assert_msg(system(cmd) == 0, "iasl -d %s failed (see %s/%s.log)", s, dir, s);
	}
	/* The disassembled DSDT names the devices we put in. */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && grep -q 'PNP0A08' DSDT.dsl && grep -q 'PNP0501' DSDT.dsl && "
		 "grep -q '_S5' DSDT.dsl && grep -q '_PRT' DSDT.dsl && grep -q 'C003' DSDT.dsl "
		 "&& grep -q 'PNP0303' DSDT.dsl && grep -q 'PNP0C02' DSDT.dsl",
		 dir);
	ck_assert_msg(system(cmd) == 0, "DSDT.dsl lacks an expected object (see %s)", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* pvpanic: QEMU's Device PEVT, _HID "QEMU0001", port 0x505, only when asked for. */
START_TEST(test_dsdt_pvpanic)
{
	char dir[] = "/tmp/test-acpi.XXXXXX", cmd[1024];
	const uint8_t *d;

	with_pvpanic = false;
	build(1, NULL);
	d = at(rd(find("FACP") + 140, 8));
	ck_assert_ptr_null(memmem(d, rd(d + 4, 4), "PEVT", 4));
	with_pvpanic = true;
	build(1, NULL);
	with_pvpanic = false;
	d = at(rd(find("FACP") + 140, 8));
	ck_assert_ptr_nonnull(memmem(d, rd(d + 4, 4), "PEVT", 4));
	ck_assert_ptr_nonnull(memmem(d, rd(d + 4, 4), "QEMU0001", 8));
	if (!have_iasl()) {
		fprintf(stderr, "SKIP: iasl is not installed (acpica-tools)\n");
		return;
	}
	ck_assert_ptr_nonnull(mkdtemp(dir));
	dump(dir, "DSDT", d);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && iasl -d DSDT.dat >DSDT.log 2>&1 && ! grep -Eqi 'error|warning' DSDT.log"
		 " && grep -q 'Device (PEVT)' DSDT.dsl && grep -q '\"QEMU0001\"' DSDT.dsl"
		 " && grep -A3 'IO (Decode16' DSDT.dsl | grep -q '0x0505,'"
		 " && grep -q 'Name (_STA, 0x0F)' DSDT.dsl && rm -rf %s",
		 dir, dir);
	ck_assert_msg(system(cmd) == 0, "DSDT with pvpanic: iasl or its content (see %s)", dir);
}
END_TEST

/* Fake guest RAM: the first MiB. */
static uint8_t low_ram[0x100000];

void *guest_mem_ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (gpa > sizeof(low_ram) || len > sizeof(low_ram) - gpa) {
		return NULL;
	}
	return low_ram + gpa;
}

START_TEST(test_build_into_guest)
{
	struct acpi_config cfg = {
		.n_cpus = 2, .pci_hole_base = 0xC0000000, .pci_hole_len = 0x3EC00000};
	struct error *err = NULL;
	int found = 0;

	ck_assert_int_eq(acpi_build(NULL, &cfg, &err), 0);
	/* An OS finds the RSDP by scanning 0xE0000-0xFFFFF on 16-byte boundaries. */
	for (uint64_t a = 0xE0000; a < 0x100000; a += 16) {
		if (memcmp(low_ram + a, "RSD PTR ", 8) == 0 && sum_ok(low_ram + a, 20)) {
			found = 1;
			break;
		}
	}
	ck_assert(found);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("acpi");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_rsdp);
	tcase_add_test(tc, test_fadt);
	tcase_add_test(tc, test_madt);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_pci_info);
	tcase_add_test(tc, test_aml_encodings);
	tcase_add_test(tc, test_aml_pkglength);
	tcase_add_test(tc, test_aml_depth);
	tcase_add_test(tc, test_iasl_disassembles);
	tcase_add_test(tc, test_dsdt_pvpanic);
	tcase_add_test(tc, test_build_into_guest);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
