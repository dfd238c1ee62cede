/*
 * CPU models: see cpuid.h. The feature table maps the names users write in
 * "cpu" ("-cx16") to CPUID bits; the baseline model is a conservative
 * x86-64 (about QEMU's qemu64: no SSE4, AVX, XSAVE, CMPXCHG16B, leaf 7).
 *
 * Threads: pure functions; any thread.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/core/cpuid.h"

enum {
	R_EAX,
	R_EBX,
	R_ECX,
	R_EDX
};

struct cpuid_feature {
	const char *name;
	uint32_t function;
	uint32_t index;
	uint8_t reg;
	uint8_t bit;
	bool baseline; /* part of the baseline model */
};

static const struct cpuid_feature features[] = {
	/* Leaf 1 EDX */
	{"fpu", 1, 0, R_EDX, 0, true},
	{"vme", 1, 0, R_EDX, 1, false},
	{"de", 1, 0, R_EDX, 2, true},
	{"pse", 1, 0, R_EDX, 3, true},
	{"tsc", 1, 0, R_EDX, 4, true},
	{"msr", 1, 0, R_EDX, 5, true},
	{"pae", 1, 0, R_EDX, 6, true},
	{"mce", 1, 0, R_EDX, 7, true},
	{"cx8", 1, 0, R_EDX, 8, true},
	{"apic", 1, 0, R_EDX, 9, true},
	{"sep", 1, 0, R_EDX, 11, true},
	{"mtrr", 1, 0, R_EDX, 12, true},
	{"pge", 1, 0, R_EDX, 13, true},
	{"mca", 1, 0, R_EDX, 14, true},
	{"cmov", 1, 0, R_EDX, 15, true},
	{"pat", 1, 0, R_EDX, 16, true},
	{"pse36", 1, 0, R_EDX, 17, true},
	{"clflush", 1, 0, R_EDX, 19, true},
	{"mmx", 1, 0, R_EDX, 23, true},
	{"fxsr", 1, 0, R_EDX, 24, true},
	{"sse", 1, 0, R_EDX, 25, true},
	{"sse2", 1, 0, R_EDX, 26, true},
	{"ht", 1, 0, R_EDX, 28, false},
	/* Leaf 1 ECX */
	{"sse3", 1, 0, R_ECX, 0, true},
	{"pclmulqdq", 1, 0, R_ECX, 1, false},
	{"ssse3", 1, 0, R_ECX, 9, false},
	{"fma", 1, 0, R_ECX, 12, false},
	{"cx16", 1, 0, R_ECX, 13, false},
	{"pcid", 1, 0, R_ECX, 17, false},
	{"sse4_1", 1, 0, R_ECX, 19, false},
	{"sse4_2", 1, 0, R_ECX, 20, false},
	{"x2apic", 1, 0, R_ECX, 21, false},
	{"movbe", 1, 0, R_ECX, 22, false},
	{"popcnt", 1, 0, R_ECX, 23, false},
	{"tsc-deadline", 1, 0, R_ECX, 24, false},
	{"aes", 1, 0, R_ECX, 25, false},
	{"xsave", 1, 0, R_ECX, 26, false},
	{"osxsave", 1, 0, R_ECX, 27, false},
	{"avx", 1, 0, R_ECX, 28, false},
	{"f16c", 1, 0, R_ECX, 29, false},
	{"rdrand", 1, 0, R_ECX, 30, false},
	{"hypervisor", 1, 0, R_ECX, 31, true},
	/* Leaf 7.0 */
	{"fsgsbase", 7, 0, R_EBX, 0, false},
	{"bmi1", 7, 0, R_EBX, 3, false},
	{"hle", 7, 0, R_EBX, 4, false},
	{"avx2", 7, 0, R_EBX, 5, false},
	{"smep", 7, 0, R_EBX, 7, false},
	{"bmi2", 7, 0, R_EBX, 8, false},
	{"erms", 7, 0, R_EBX, 9, false},
	{"invpcid", 7, 0, R_EBX, 10, false},
	{"rtm", 7, 0, R_EBX, 11, false},
	{"avx512f", 7, 0, R_EBX, 16, false},
	{"rdseed", 7, 0, R_EBX, 18, false},
	{"adx", 7, 0, R_EBX, 19, false},
	{"smap", 7, 0, R_EBX, 20, false},
	{"clflushopt", 7, 0, R_EBX, 23, false},
	{"clwb", 7, 0, R_EBX, 24, false},
	{"sha-ni", 7, 0, R_EBX, 29, false},
	{"umip", 7, 0, R_ECX, 2, false},
	{"pku", 7, 0, R_ECX, 3, false},
	{"la57", 7, 0, R_ECX, 16, false},
	{"rdpid", 7, 0, R_ECX, 22, false},
	{"md-clear", 7, 0, R_EDX, 10, false},
	{"spec-ctrl", 7, 0, R_EDX, 26, false},
	{"arch-capabilities", 7, 0, R_EDX, 29, false},
	{"ssbd", 7, 0, R_EDX, 31, false},
	/* Leaf 0xD.1 */
	{"xsaveopt", 0xd, 1, R_EAX, 0, false},
	{"xsavec", 0xd, 1, R_EAX, 1, false},
	{"xgetbv1", 0xd, 1, R_EAX, 2, false},
	{"xsaves", 0xd, 1, R_EAX, 3, false},
	/* Leaf 0x80000001 */
	{"lahf_lm", 0x80000001, 0, R_ECX, 0, true},
	{"abm", 0x80000001, 0, R_ECX, 5, false},
	{"sse4a", 0x80000001, 0, R_ECX, 6, false},
	{"3dnowprefetch", 0x80000001, 0, R_ECX, 8, false},
	{"syscall", 0x80000001, 0, R_EDX, 11, true},
	{"nx", 0x80000001, 0, R_EDX, 20, true},
	{"mmxext", 0x80000001, 0, R_EDX, 22, false},
	{"pdpe1gb", 0x80000001, 0, R_EDX, 26, false},
	{"rdtscp", 0x80000001, 0, R_EDX, 27, false},
	{"lm", 0x80000001, 0, R_EDX, 29, true},
	/* Leaf 0x80000007 */
	{"invtsc", 0x80000007, 0, R_EDX, 8, false},
};

/* Features that cannot be on without another one (AVX state lives in XSAVE). */
static const struct {
	const char *feature;
	const char *needs;
} dependencies[] = {
	{"osxsave", "xsave"}, {"avx", "xsave"},	   {"avx2", "avx"},	  {"fma", "avx"},
	{"f16c", "avx"},      {"avx512f", "avx"},  {"xsaveopt", "xsave"}, {"xsavec", "xsave"},
	{"xgetbv1", "xsave"}, {"xsaves", "xsave"}, {"invpcid", "pcid"},
};

static int feature_index(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
		if (strcmp(features[i].name, name) == 0) {
			return (int)i;
		}
	}
	/* Linux /proc/cpuinfo spellings. */
	if (strcmp(name, "sse4.1") == 0) {
		return feature_index("sse4_1");
	}
	if (strcmp(name, "sse4.2") == 0) {
		return feature_index("sse4_2");
	}
	if (strcmp(name, "tsc_deadline_timer") == 0) {
		return feature_index("tsc-deadline");
	}
	return -1;
}

int cpuid_model_parse(const char *s, struct cpuid_model *ret, struct error **errp)
{
	struct cpuid_model m = {0};
	const char *p = s, *comma;
	size_t n;

	comma = strchr(p, ',');
	n = comma ? (size_t)(comma - p) : strlen(p);
	if (n == 4 && strncmp(p, "host", 4) == 0) {
		m.base = CPUID_MODEL_HOST;
	} else if (n == 8 && strncmp(p, "baseline", 8) == 0) {
		m.base = CPUID_MODEL_BASELINE;
	} else {
		return error_set(errp, EINVAL,
				 "unknown CPU model \"%.*s\" (use \"host\" or "
				 "\"baseline\")",
				 (int)MIN(n, 64), p);
	}
	while (comma) {
		char name[32];
		bool on;
		int idx;

		p = comma + 1;
		comma = strchr(p, ',');
		n = comma ? (size_t)(comma - p) : strlen(p);
		if (n < 2 || (p[0] != '+' && p[0] != '-')) {
			return error_set(errp, EINVAL,
					 "CPU feature \"%.*s\" must be written +name or -name",
					 (int)MIN(n, 64), p);
		}
		on = p[0] == '+';
		if (n - 1 >= sizeof(name)) {
			return error_set(errp, EINVAL, "unknown CPU feature \"%.*s\"",
					 (int)MIN(n, 64), p + 1);
		}
		memcpy(name, p + 1, n - 1);
		name[n - 1] = '\0';
		idx = feature_index(name);
		if (idx < 0) {
			return error_set(errp, EINVAL, "unknown CPU feature \"%s\"", name);
		}
		if (m.n_overrides >= CPUID_MAX_OVERRIDES) {
			return error_set(errp, E2BIG, "more than %d CPU feature overrides",
					 CPUID_MAX_OVERRIDES);
		}
		m.overrides[m.n_overrides].feature = (unsigned)idx;
		m.overrides[m.n_overrides].on = on;
		m.n_overrides++;
	}
	if (ret) {
		*ret = m;
	}
	return 0;
}

const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid_entry2 *entries, unsigned n,
					  uint32_t function, uint32_t index)
{
	for (unsigned i = 0; i < n; i++) {
		if (entries[i].function == function &&
		    (!(entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     entries[i].index == index)) {
			return &entries[i];
		}
	}
	return NULL;
}

static uint32_t *reg_ptr(struct kvm_cpuid_entry2 *e, unsigned reg)
{
	switch (reg) {
	case R_EAX:
		return &e->eax;
	case R_EBX:
		return &e->ebx;
	case R_ECX:
		return &e->ecx;
	default:
		return &e->edx;
	}
}

static bool get_bit(const struct kvm_cpuid_entry2 *entries, unsigned n,
		    const struct cpuid_feature *f)
{
	const struct kvm_cpuid_entry2 *e = cpuid_find(entries, n, f->function, f->index);

	return e && (*reg_ptr((struct kvm_cpuid_entry2 *)e, f->reg) >> f->bit & 1);
}

static void set_bit(struct kvm_cpuid_entry2 *entries, unsigned n, const struct cpuid_feature *f,
		    bool on)
{
	struct kvm_cpuid_entry2 *e =
		(struct kvm_cpuid_entry2 *)cpuid_find(entries, n, f->function, f->index);

	if (!e) {
		return;
	}
	if (on) {
		*reg_ptr(e, f->reg) |= 1u << f->bit;
	} else {
		*reg_ptr(e, f->reg) &= ~(1u << f->bit);
	}
}

int cpuid_has_feature(const struct kvm_cpuid_entry2 *entries, unsigned n, const char *name)
{
	int idx = feature_index(name);

	if (idx < 0) {
		return -EINVAL;
	}
	return get_bit(entries, n, &features[idx]);
}

static bool is_feature_register(uint32_t function, uint32_t index, unsigned reg)
{
	for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
		if (features[i].function == function && features[i].index == index &&
		    features[i].reg == reg) {
			return true;
		}
	}
	return false;
}

static int add_entry(struct kvm_cpuid_entry2 *out, unsigned max, unsigned *n,
		     const struct kvm_cpuid_entry2 *e)
{
	if (*n >= max) {
		return -E2BIG;
	}
	out[(*n)++] = *e;
	return 0;
}

/* Topology leaves 0xB / 0x1F: level 0 SMT (1 thread), level 1 core (n cores). */
static int add_topology(uint32_t function, unsigned apic_id, unsigned n_vcpus, unsigned shift,
			struct kvm_cpuid_entry2 *out, unsigned max, unsigned *n)
{
	struct kvm_cpuid_entry2 e;
	int r;

	for (uint32_t level = 0; level < 3; level++) {
		e = (struct kvm_cpuid_entry2){
			.function = function,
			.index = level,
			.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
			.edx = apic_id,
		};
		if (level == 0) {
			e.eax = 0;
			e.ebx = 1;
			e.ecx = (1u << 8) | level;
		} else if (level == 1) {
			e.eax = shift;
			e.ebx = n_vcpus;
			e.ecx = (2u << 8) | level;
		} else {
			e.ecx = level;
		}
		r = add_entry(out, max, n, &e);
		if (r < 0) {
			return r;
		}
	}
	return 0;
}

int cpuid_build(const struct cpuid_model *model, const struct kvm_cpuid_entry2 *supported,
		unsigned n_supported, unsigned index, unsigned n_vcpus,
		struct kvm_cpuid_entry2 *out, unsigned max, unsigned *ret_n, struct error **errp)
{
	unsigned shift = 0, n = 0;
	bool enabled[ARRAY_SIZE(features)];
	const struct kvm_cpuid_entry2 *leaf0;
	uint32_t max_basic;
	int r;

	if (n_vcpus == 0 || index >= n_vcpus || n_vcpus > 255) {
		return error_set(errp, EINVAL, "invalid vCPU %u of %u", index, n_vcpus);
	}
	while ((1u << shift) < n_vcpus) {
		shift++;
	}
	leaf0 = cpuid_find(supported, n_supported, 0, 0);
	if (!leaf0) {
		return error_set(errp, EINVAL, "KVM's supported CPUID has no leaf 0");
	}
	max_basic = leaf0->eax;

	/* Which named features the guest gets. */
	for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
		bool host = get_bit(supported, n_supported, &features[i]);

		enabled[i] = model->base == CPUID_MODEL_HOST ? host : host && features[i].baseline;
	}
	enabled[feature_index("hypervisor")] = true;
	for (unsigned i = 0; i < model->n_overrides; i++) {
		unsigned f = model->overrides[i].feature;

		if (model->overrides[i].on && !get_bit(supported, n_supported, &features[f]) &&
		    strcmp(features[f].name, "hypervisor") != 0 &&
		    strcmp(features[f].name, "osxsave") != 0) {
			return error_set(errp, ENOTSUP,
					 "CPU feature \"%s\" is not supported by this host's KVM",
					 features[f].name);
		}
		enabled[f] = model->overrides[i].on;
	}
	/* HTT means "more than one logical CPU per package": topology decides. */
	enabled[feature_index("ht")] = n_vcpus > 1;
	/* OSXSAVE mirrors CR4.OSXSAVE at run time; KVM maintains it. */
	enabled[feature_index("osxsave")] = false;
	for (bool changed = true; changed;) {
		changed = false;
		for (size_t i = 0; i < ARRAY_SIZE(dependencies); i++) {
			int f = feature_index(dependencies[i].feature);
			int need = feature_index(dependencies[i].needs);

			if (enabled[f] && !enabled[need]) {
				enabled[f] = false;
				changed = true;
			}
		}
	}

	for (unsigned i = 0; i < n_supported; i++) {
		struct kvm_cpuid_entry2 e = supported[i];
		uint32_t fn = e.function;

		if (fn == 0xb || fn == 0x1f || fn == 0x8000001e) {
			continue; /* regenerated below / hidden */
		}
		if (fn == 0xd && !enabled[feature_index("xsave")]) {
			continue;
		}
		if (model->base == CPUID_MODEL_BASELINE) {
			/* Leaves whose bits are all features: keep only named baseline bits. */
			for (unsigned reg = R_EAX; reg <= R_EDX; reg++) {
				if (is_feature_register(fn, e.index, reg)) {
					*reg_ptr(&e, reg) = 0;
				}
			}
		}
		switch (fn) {
		case 1:
			e.ebx &= 0xffff;
			e.ebx |= (index & 0xff) << 24;
			e.ebx |= (n_vcpus > 1 ? (1u << shift) : 1u) << 16;
			if ((e.ebx >> 8 & 0xff) == 0) {
				e.ebx |= 8 << 8; /* CLFLUSH line: 64 bytes */
			}
			break;
		case 4:
			e.eax &= 0x3fff;
			e.eax |= ((1u << shift) - 1) << 26;
			if (((e.eax >> 5) & 7) == 3) {
				e.eax |= ((1u << shift) - 1) << 14;
			}
			break;
		case 0x40000000:
			e.eax = MAX(e.eax, 0x40000001u);
			e.ebx = 0x4b4d564b; /* "KVMKVMKVM\0\0\0" */
			e.ecx = 0x564b4d56;
			e.edx = 0x4d;
			break;
		case 0x80000008:
			e.ecx = (e.ecx & ~0xf0ffu) | (shift << 12) | ((n_vcpus - 1) & 0xff);
			break;
		default:
			break;
		}
		r = add_entry(out, max, &n, &e);
		if (r < 0) {
			return error_set(errp, E2BIG, "CPUID table larger than %u entries", max);
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
		set_bit(out, n, &features[i], enabled[i]);
	}
	if (max_basic >= 0xb) {
		r = add_topology(0xb, index, n_vcpus, shift, out, max, &n);
		if (r == 0 && max_basic >= 0x1f && cpuid_find(supported, n_supported, 0x1f, 0)) {
			r = add_topology(0x1f, index, n_vcpus, shift, out, max, &n);
		}
		if (r < 0) {
			return error_set(errp, E2BIG, "CPUID table larger than %u entries", max);
		}
	}
	*ret_n = n;
	return 0;
}
