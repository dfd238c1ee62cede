/*
 * The guest CPU model: KVM_GET_SUPPORTED_CPUID filtered through a named
 * model ("host", "baseline") and "+feature"/"-feature" overrides, plus the
 * topology leaves for N vCPUs (one socket, N cores, one thread per core,
 * APIC ID = vCPU index) and the KVM paravirtual leaves.
 *
 * Threads: pure functions; any thread.
 */
#pragma once

#include <linux/kvm.h>
#include <stdbool.h>

#include "common/error.h"

#define CPUID_MAX_OVERRIDES 64
#define CPUID_MAX_ENTRIES 256

enum cpuid_base_model {
	CPUID_MODEL_HOST,
	CPUID_MODEL_BASELINE,
};

struct cpuid_model {
	enum cpuid_base_model base;
	unsigned n_overrides;
	struct {
		unsigned feature; /* index into the feature table */
		bool on;
	} overrides[CPUID_MAX_OVERRIDES];
};

/*
 * Parse "host", "baseline", optionally followed by ",+feat" / ",-feat".
 * @ret may be NULL (syntax check only). -EINVAL naming the unknown model or
 * feature.
 */
int cpuid_model_parse(const char *s, struct cpuid_model *ret, struct error **errp);

/*
 * Build the CPUID table of vCPU @index (0-based; its APIC ID) of @n_vcpus
 * from KVM's @supported table: at most @max entries are written to @out.
 * -ENOTSUP naming a feature enabled with "+" that the host cannot provide.
 */
int cpuid_build(const struct cpuid_model *model, const struct kvm_cpuid_entry2 *supported,
		unsigned n_supported, unsigned index, unsigned n_vcpus,
		struct kvm_cpuid_entry2 *out, unsigned max, unsigned *ret_n, struct error **errp);

/* Whether the feature @name is set in @entries; -EINVAL if the name is unknown. */
int cpuid_has_feature(const struct kvm_cpuid_entry2 *entries, unsigned n, const char *name);

/* The entry for @function/@index in @entries, or NULL. */
const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid_entry2 *entries, unsigned n,
					  uint32_t function, uint32_t index);
