/*
 * The DSDT part of QEMU's ACPI CPU hotplug interface (build_cpus_aml() in
 * QEMU 7.2's hw/acpi/cpu.c), over the register block of
 * hw/platform/acpi-cpuhp.h, for every possible vCPU (maxcpus):
 *
 *   \_SB.PRES   PNP0A06 reserving the block; Mutex CPLK; the fields CPEN,
 *               CINS, CRMV, CEJ0, CCMD (byte access) and CSEL, CDAT (dword);
 *               _INI writes CSEL (QEMU's switch from the legacy interface)
 *   \_SB.CPUS   ACPI0010 with CTFY(uid, event) (Notify), CSTA(uid) (_STA),
 *               CEJ0(uid) (eject), CSCN (the event scan) and COST (_OST),
 *               and Device(Cxxx) per vCPU: _HID ACPI0007, _UID, _STA, _MAT
 *               (its MADT local APIC entry, enabled), _EJ0 (not vCPU 0), _OST
 *   \_GPE._E02  calls \_SB.CPUS.CSCN: Device Check (1) for each vCPU with an
 *               insert event, Eject Request (3) for each with a remove event
 *
 * Unlike QEMU, which uses Processor() objects on pc for ACPI 1.0 guests,
 * the CPUs are Device(ACPI0007) objects, as vmmd's DSDT always had them.
 *
 * Threads: any (a pure function of its arguments).
 */
#include "config.h"

#include <stdio.h>

#include "hw/platform/acpi-cpuhp.h"
#include "hw/platform/acpi.h"
#include "hw/platform/aml.h"

#define PRES "\\_SB.PRES."
#define LOCK PRES "CPLK"

/* Store(<source emitted by the caller before>, name): begin with the opcode. */
static void store_int(struct aml *a, uint64_t v, const char *to)
{
	aml_op(a, AML_OP_STORE);
	aml_integer(a, v);
	aml_name_string(a, to);
}

static void store_op(struct aml *a, uint8_t op, const char *to)
{
	aml_op(a, AML_OP_STORE);
	aml_op(a, op);
	aml_name_string(a, to);
}

/* If (LEqual(name, v)) { ... } — closed by the caller with aml_end(). */
static void if_equal_name(struct aml *a, const char *name, uint64_t v)
{
	aml_if_begin(a);
	aml_op(a, AML_OP_LEQUAL);
	aml_name_string(a, name);
	aml_integer(a, v);
}

static void acpi_cpuhp_resources(struct aml *a)
{
	struct aml_res r;

	aml_device_begin(a, "PRES");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A06");
	aml_name(a, "_UID");
	aml_string(a, "CPU Hotplug resources");
	aml_mutex(a, "CPLK");
	aml_res_init(&r);
	aml_res_io(&r, ACPI_CPUHP_BASE, ACPI_CPUHP_LEN);
	aml_name(a, "_CRS");
	aml_resource_template(a, &r);
	aml_opregion_io(a, "PRST", ACPI_CPUHP_BASE, ACPI_CPUHP_LEN);
	aml_field_begin_flags(a, "PRST", AML_FIELD_BYTE_ACC | AML_FIELD_WRITE_AS_ZEROS);
	aml_field_reserved(a, ACPI_CPUHP_FLAGS * 8);
	aml_field_unit(a, "CPEN", 1); /* read: present */
	aml_field_unit(a, "CINS", 1); /* read: insert event; write 1: clear it */
	aml_field_unit(a, "CRMV", 1); /* read: remove event; write 1: clear it */
	aml_field_unit(a, "CEJ0", 1); /* write 1: eject */
	aml_field_reserved(a, 4);
	aml_field_unit(a, "CCMD", 8);
	aml_end(a);
	aml_field_begin_flags(a, "PRST", AML_FIELD_DWORD_ACC | AML_FIELD_PRESERVE);
	aml_field_unit(a, "CSEL", 32);
	aml_field_reserved(a, 32);
	aml_field_unit(a, "CDAT", 32);
	aml_end(a);
	/* _INI: switch the block from QEMU's legacy interface (selects vCPU 0, a no-op) */
	aml_method_begin(a, "_INI", 0, 1);
	store_int(a, 0, "CSEL");
	aml_end(a);
	aml_end(a);
}

static void acpi_cpuhp_methods(struct aml *a, unsigned max_cpus)
{
	char name[16];

	/* CTFY(uid, event): Notify(Cxxx, event) for the vCPU whose _UID is uid */
	aml_method_begin(a, "CTFY", 2, 0);
	for (unsigned i = 0; i < max_cpus; i++) {
		snprintf(name, sizeof(name), "C%03X", i);
		aml_if_begin(a);
		aml_op(a, AML_OP_LEQUAL);
		aml_op(a, AML_OP_ARG0);
		aml_integer(a, i);
		aml_op(a, AML_OP_NOTIFY);
		aml_name_string(a, name);
		aml_op(a, AML_OP_ARG0 + 1);
		aml_end(a);
	}
	aml_end(a);

	/* CSTA(uid): 0xF if present, else 0 */
	aml_method_begin(a, "CSTA", 1, 1);
	aml_acquire(a, LOCK);
	store_op(a, AML_OP_ARG0, PRES "CSEL");
	aml_op(a, AML_OP_STORE);
	aml_integer(a, 0);
	aml_op(a, AML_OP_LOCAL0);
	if_equal_name(a, PRES "CPEN", 1);
	aml_op(a, AML_OP_STORE);
	aml_integer(a, 0xF);
	aml_op(a, AML_OP_LOCAL0);
	aml_end(a);
	aml_release(a, LOCK);
	aml_return(a);
	aml_op(a, AML_OP_LOCAL0);
	aml_end(a);

	/* CEJ0(uid): eject it */
	aml_method_begin(a, "CEJ0", 1, 1);
	aml_acquire(a, LOCK);
	store_op(a, AML_OP_ARG0, PRES "CSEL");
	store_int(a, 1, PRES "CEJ0");
	aml_release(a, LOCK);
	aml_end(a);

	/*
	 * CSCN: while command 0 finds a vCPU with an event, notify it and
	 * clear that event (insert first, as QEMU).
	 */
	aml_method_begin(a, "CSCN", 0, 1);
	aml_acquire(a, LOCK);
	aml_op(a, AML_OP_STORE);
	aml_integer(a, 1);
	aml_op(a, AML_OP_LOCAL0);
	aml_while_begin(a);
	aml_op(a, AML_OP_LEQUAL);
	aml_op(a, AML_OP_LOCAL0);
	aml_integer(a, 1);
	aml_op(a, AML_OP_STORE);
	aml_integer(a, 0);
	aml_op(a, AML_OP_LOCAL0);
	store_int(a, ACPI_CPUHP_CMD_NEXT_EVENT, PRES "CCMD");
	if_equal_name(a, PRES "CINS", 1);
	aml_name_string(a, "CTFY");
	aml_name_string(a, PRES "CDAT");
	aml_integer(a, 1); /* Device Check */
	store_int(a, 1, PRES "CINS");
	aml_op(a, AML_OP_STORE);
	aml_integer(a, 1);
	aml_op(a, AML_OP_LOCAL0);
	aml_end(a);
	aml_else_begin(a);
	if_equal_name(a, PRES "CRMV", 1);
	aml_name_string(a, "CTFY");
	aml_name_string(a, PRES "CDAT");
	aml_integer(a, 3); /* Eject Request */
	store_int(a, 1, PRES "CRMV");
	aml_op(a, AML_OP_STORE);
	aml_integer(a, 1);
	aml_op(a, AML_OP_LOCAL0);
	aml_end(a);
	aml_end(a);
	aml_end(a);
	aml_release(a, LOCK);
	aml_end(a);

	/* COST(uid, event, status, buffer): the _OST report, command 1 then 2 */
	aml_method_begin(a, "COST", 4, 1);
	aml_acquire(a, LOCK);
	store_op(a, AML_OP_ARG0, PRES "CSEL");
	store_int(a, ACPI_CPUHP_CMD_OST_EVENT, PRES "CCMD");
	store_op(a, AML_OP_ARG0 + 1, PRES "CDAT");
	store_int(a, ACPI_CPUHP_CMD_OST_STATUS, PRES "CCMD");
	store_op(a, AML_OP_ARG0 + 2, PRES "CDAT");
	aml_release(a, LOCK);
	aml_end(a);
}

static void acpi_cpuhp_cpu(struct aml *a, unsigned i)
{
	uint8_t mat[8] = {0, 8, (uint8_t)i, (uint8_t)i, 1, 0, 0, 0};
	char name[16];

	snprintf(name, sizeof(name), "C%03X", i);
	aml_device_begin(a, name);
	aml_name(a, "_HID");
	aml_string(a, "ACPI0007");
	aml_name(a, "_UID");
	aml_integer(a, i);
	aml_method_begin(a, "_STA", 0, 1);
	aml_return(a);
	aml_name_string(a, "CSTA");
	aml_integer(a, i);
	aml_end(a);
	aml_name(a, "_MAT");
	aml_buffer(a, mat, sizeof(mat));
	if (i != 0) {
		aml_method_begin(a, "_EJ0", 1, 0);
		aml_name_string(a, "CEJ0");
		aml_integer(a, i);
		aml_end(a);
	}
	aml_method_begin(a, "_OST", 3, 1);
	aml_name_string(a, "COST");
	aml_integer(a, i);
	aml_op(a, AML_OP_ARG0);
	aml_op(a, AML_OP_ARG0 + 1);
	aml_op(a, AML_OP_ARG0 + 2);
	aml_end(a);
	aml_end(a);
}

void acpi_dsdt_cpu_hotplug(struct aml *a, unsigned max_cpus)
{
	acpi_cpuhp_resources(a);
	aml_device_begin(a, "CPUS");
	aml_name(a, "_HID");
	aml_string(a, "ACPI0010");
	aml_name(a, "_CID");
	aml_eisaid(a, "PNP0A05");
	acpi_cpuhp_methods(a, max_cpus);
	for (unsigned i = 0; i < max_cpus; i++) {
		acpi_cpuhp_cpu(a, i);
	}
	aml_end(a);
}

void acpi_dsdt_cpu_hotplug_gpe(struct aml *a)
{
	aml_scope_begin(a, "\\_GPE");
	aml_method_begin(a, "_E02", 0, 0);
	aml_name_string(a, "\\_SB.CPUS.CSCN");
	aml_end(a);
	aml_end(a);
}
