/* Unit tests for hw/core/cpuid.c over a fake KVM_GET_SUPPORTED_CPUID table. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <string.h>

#include "hw/core/cpuid.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX

/* A host with most features, roughly a recent Intel core. */
static const struct kvm_cpuid_entry2 host[] = {
	{.function = 0, .eax = 0x1f, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69},
	{.function = 1,
	 .eax = 0x906ea,
	 .ebx = 0xff000000,
	 .ecx = 0x7ffaf3bf & ~(1u << 31),
	 .edx = 0xbfebfbff},
	{.function = 4, .index = 0, .flags = SIG, .eax = 0x1c004121},
	{.function = 4, .index = 1, .flags = SIG, .eax = 0x1c004122},
	{.function = 4, .index = 2, .flags = SIG, .eax = 0x1c004143},
	{.function = 4, .index = 3, .flags = SIG, .eax = 0x1c03c163},
	{.function = 7, .index = 0, .flags = SIG, .eax = 0, .ebx = 0x029c6fbf, .ecx = 0x40000000},
	{.function = 0xb, .index = 0, .flags = SIG, .eax = 1, .ebx = 2, .ecx = 0x100},
	{.function = 0xb, .index = 1, .flags = SIG, .eax = 4, .ebx = 12, .ecx = 0x201},
	{.function = 0xd, .index = 0, .flags = SIG, .eax = 0x1f, .ebx = 0x440, .ecx = 0x440},
	{.function = 0xd, .index = 1, .flags = SIG, .eax = 0xf},
	{.function = 0x1f, .index = 0, .flags = SIG, .eax = 1, .ebx = 2, .ecx = 0x100},
	{.function = 0x40000000,
	 .eax = 0x40000001,
	 .ebx = 0x4b4d564b,
	 .ecx = 0x564b4d56,
	 .edx = 0x4d},
	{.function = 0x40000001, .eax = 0x01007afb},
	{.function = 0x80000000, .eax = 0x80000008},
	{.function = 0x80000001, .ecx = 0x121, .edx = 0x2c100800},
	{.function = 0x80000008, .eax = 0x3027, .ecx = 0xb},
};

static unsigned build(const char *model, unsigned index, unsigned n_vcpus,
		      struct kvm_cpuid_entry2 *out)
{
	struct cpuid_model m;
	struct error *err = NULL;
	unsigned n = 0;

	ck_assert_int_eq(cpuid_model_parse(model, &m, NULL), 0);
	if (cpuid_build(&m, host, ARRAY_SIZE(host), index, n_vcpus, out, CPUID_MAX_ENTRIES, &n,
			&err) < 0) {
		ck_abort_msg("cpuid_build(%s): %s", model, err->msg);
	}
	return n;
}

static bool has(const struct kvm_cpuid_entry2 *e, unsigned n, const char *name)
{
	int r = cpuid_has_feature(e, n, name);

	ck_assert_msg(r >= 0, "unknown feature %s", name);
	return r == 1;
}

START_TEST(host_model)
{
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	unsigned n = build("host", 0, 1, e);
	const struct kvm_cpuid_entry2 *l;

	ck_assert(has(host, ARRAY_SIZE(host), "cx16"));
	ck_assert(has(e, n, "cx16"));
	ck_assert(has(e, n, "xsave"));
	ck_assert(has(e, n, "avx"));
	ck_assert(has(e, n, "avx2"));
	ck_assert(has(e, n, "popcnt"));
	ck_assert(has(e, n, "sse4_2"));
	ck_assert(has(e, n, "lm"));
	ck_assert(has(e, n, "pdpe1gb"));
	/* The hypervisor bit is set even though the host table lacks it. */
	ck_assert(has(e, n, "hypervisor"));
	ck_assert(!has(e, n, "osxsave"));
	l = cpuid_find(e, n, 0x40000000, 0);
	ck_assert_ptr_nonnull(l);
	ck_assert_uint_eq(l->ebx, 0x4b4d564b);
	ck_assert_ptr_nonnull(cpuid_find(e, n, 0x40000001, 0));
	ck_assert_ptr_nonnull(cpuid_find(e, n, 0xd, 1));
	/* Family/model/stepping pass through. */
	ck_assert_uint_eq(cpuid_find(e, n, 1, 0)->eax, 0x906ea);
}
END_TEST

START_TEST(overrides)
{
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	unsigned n = build("host,-cx16,-xsave,-popcnt,-hypervisor", 0, 1, e);

	ck_assert(!has(e, n, "cx16"));
	ck_assert(!has(e, n, "xsave"));
	ck_assert(!has(e, n, "popcnt"));
	ck_assert(!has(e, n, "hypervisor"));
	/* AVX state lives in XSAVE: hiding XSAVE hides AVX, AVX2 and leaf 0xD. */
	ck_assert(!has(e, n, "avx"));
	ck_assert(!has(e, n, "avx2"));
	ck_assert(!has(e, n, "xsaveopt"));
	ck_assert_ptr_null(cpuid_find(e, n, 0xd, 0));
	ck_assert(has(e, n, "sse4_2"));

	/* Later overrides win. */
	n = build("host,-aes,+aes", 0, 1, e);
	ck_assert(has(e, n, "aes"));
	n = build("host,-sse4.2", 0, 1, e);
	ck_assert(!has(e, n, "sse4_2"));
}
END_TEST

START_TEST(baseline_model)
{
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	unsigned n = build("baseline", 0, 1, e);
	static const char *const off[] = {"cx16",   "xsave",  "avx",	 "avx2",     "popcnt",
					  "sse4_1", "sse4_2", "aes",	 "rdrand",   "x2apic",
					  "pcid",   "smep",   "smap",	 "fsgsbase", "bmi1",
					  "bmi2",   "erms",   "invpcid", "pdpe1gb",  "rdtscp"};
	static const char *const on[] = {"fpu", "cx8", "cmov",	  "sse",  "sse2", "sse3",
					 "lm",	"nx",  "syscall", "apic", "pae",  "hypervisor"};

	for (size_t i = 0; i < ARRAY_SIZE(off); i++) {
		ck_assert_msg(!has(e, n, off[i]), "baseline has %s", off[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(on); i++) {
		ck_assert_msg(has(e, n, on[i]), "baseline lacks %s", on[i]);
	}
	ck_assert_uint_eq(cpuid_find(e, n, 7, 0)->ebx, 0);
	n = build("baseline,+popcnt,+sse4_2", 0, 1, e);
	ck_assert(has(e, n, "popcnt"));
	ck_assert(has(e, n, "sse4_2"));
	/* +avx without xsave cannot hold. */
	n = build("baseline,+avx", 0, 1, e);
	ck_assert(!has(e, n, "avx"));
	n = build("baseline,+xsave,+avx", 0, 1, e);
	ck_assert(has(e, n, "avx"));
}
END_TEST

START_TEST(topology)
{
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	const struct kvm_cpuid_entry2 *l;
	unsigned n;

	n = build("host", 2, 3, e);
	l = cpuid_find(e, n, 1, 0);
	ck_assert_uint_eq(l->ebx >> 24, 2);	     /* APIC ID */
	ck_assert_uint_eq((l->ebx >> 16) & 0xff, 4); /* logical CPUs, power of 2 */
	ck_assert_uint_eq((l->ebx >> 8) & 0xff, 8);  /* CLFLUSH line size: 64 bytes */
	ck_assert(l->edx & (1u << 28));
	l = cpuid_find(e, n, 0xb, 0);
	ck_assert_uint_eq(l->ebx, 1);
	ck_assert_uint_eq(l->edx, 2);
	ck_assert_uint_eq(l->ecx, 0x100);
	l = cpuid_find(e, n, 0xb, 1);
	ck_assert_uint_eq(l->eax, 2); /* shift to the package ID */
	ck_assert_uint_eq(l->ebx, 3);
	ck_assert_uint_eq(l->ecx, 0x201);
	ck_assert_uint_eq(l->edx, 2);
	l = cpuid_find(e, n, 0xb, 2);
	ck_assert_uint_eq(l->ecx & 0xff00, 0);
	ck_assert_ptr_nonnull(cpuid_find(e, n, 0x1f, 1));
	/* Leaf 4: cores per package; L3 shared by all. */
	l = cpuid_find(e, n, 4, 0);
	ck_assert_uint_eq(l->eax >> 26, 3);
	ck_assert_uint_eq((l->eax >> 14) & 0xfff, 0);
	l = cpuid_find(e, n, 4, 3);
	ck_assert_uint_eq((l->eax >> 14) & 0xfff, 3);
	l = cpuid_find(e, n, 0x80000008, 0);
	ck_assert_uint_eq(l->ecx & 0xff, 2);
	ck_assert_uint_eq((l->ecx >> 12) & 0xf, 2);

	n = build("host", 0, 1, e);
	l = cpuid_find(e, n, 1, 0);
	ck_assert_uint_eq((l->ebx >> 16) & 0xff, 1);
	ck_assert(!(l->edx & (1u << 28)));
	ck_assert_uint_eq(cpuid_find(e, n, 0xb, 1)->ebx, 1);

	n = build("host", 63, 64, e);
	ck_assert_uint_eq(cpuid_find(e, n, 1, 0)->ebx >> 24, 63);
	ck_assert_uint_eq(cpuid_find(e, n, 0xb, 1)->eax, 6);
	ck_assert_uint_eq(cpuid_find(e, n, 4, 0)->eax >> 26, 63);
}
END_TEST

START_TEST(errors)
{
	struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
	struct cpuid_model m;
	struct error *err = NULL;
	unsigned n;
	static const struct kvm_cpuid_entry2 poor[] = {
		{.function = 0, .eax = 1},
		{.function = 1, .ecx = 0, .edx = 1},
	};

	ck_assert_int_eq(cpuid_model_parse("i486", &m, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "unknown CPU model \"i486\""));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(cpuid_model_parse("host,-frobnicate", &m, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err->msg, "frobnicate"));
	error_free(err);
	err = NULL;
	ck_assert_int_eq(cpuid_model_parse("host,", &m, NULL), -EINVAL);
	ck_assert_int_eq(cpuid_model_parse("host,+", &m, NULL), -EINVAL);
	ck_assert_int_eq(cpuid_model_parse("hostx", &m, NULL), -EINVAL);
	ck_assert_int_eq(cpuid_model_parse("", &m, NULL), -EINVAL);
	ck_assert_int_eq(
		cpuid_model_parse("baseline,-cx16,+popcnt,-xsave,+tsc-deadline,-x2apic", &m, NULL),
		0);
	ck_assert_uint_eq(m.n_overrides, 5);
	ck_assert_int_eq(cpuid_model_parse("host,-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
					   &m, NULL),
			 -EINVAL);
	/* A feature the host cannot provide. */
	ck_assert_int_eq(cpuid_model_parse("host,+avx2", &m, NULL), 0);
	ck_assert_int_eq(
		cpuid_build(&m, poor, ARRAY_SIZE(poor), 0, 1, e, CPUID_MAX_ENTRIES, &n, &err),
		-ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err->msg, "avx2"));
	error_free(err);
	err = NULL;
	/* Output too small. */
	ck_assert_int_eq(cpuid_model_parse("host", &m, NULL), 0);
	ck_assert_int_eq(cpuid_build(&m, host, ARRAY_SIZE(host), 0, 1, e, 3, &n, NULL), -E2BIG);
	ck_assert_int_eq(
		cpuid_build(&m, host, ARRAY_SIZE(host), 4, 4, e, CPUID_MAX_ENTRIES, &n, NULL),
		-EINVAL);
	ck_assert_int_eq(cpuid_has_feature(e, 0, "nonsense"), -EINVAL);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("cpuid");
	TCase *tc = tcase_create("cpuid");

	tcase_add_test(tc, host_model);
	tcase_add_test(tc, overrides);
	tcase_add_test(tc, baseline_model);
	tcase_add_test(tc, topology);
	tcase_add_test(tc, errors);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
