/*
 * A small ACPI Machine Language (AML) byte-code emitter for the DSDT.
 * Objects with a PkgLength (Scope, Device, Method, Package) are opened with
 * *_begin() and closed with aml_end(); the length is encoded when closed.
 * Resource templates are assembled in a struct aml_res and emitted as a
 * Buffer. Errors (out of memory, too deep, size limit) are latched in
 * aml->err and every later call is a no-op, so callers check once at the end.
 *
 * Threads: none of its own; an emitter belongs to one thread.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 16
#define AML_MAX_SIZE (1u << 20)

struct aml {
	uint8_t *buf;
	size_t len, cap;
	int err; /* 0 or the first -errno */
	unsigned depth;
	size_t open[AML_MAX_DEPTH]; /* offset where each open object's PkgLength goes */
};

void aml_init(struct aml *a);
void aml_fini(struct aml *a);

void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);
/* "\_SB.PCI0", "^FOO", "_HID", "" (NullName). Segments shorter than 4 are padded with '_'. */
void aml_name_string(struct aml *a, const char *path);
/* The shortest integer encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordConst). */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* A compressed EISA id ("PNP0A03") as a DWordConst, as ASL's EISAID() does. */
void aml_eisaid(struct aml *a, const char *id);
/* Name(path, <object emitted next>) */
void aml_name(struct aml *a, const char *path);
/* Return(<term emitted next>) */
void aml_return(struct aml *a);

void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *name);
void aml_method_begin(struct aml *a, const char *name, unsigned nargs, int serialized);
/* Package(n) { <n objects emitted next> } */
void aml_package_begin(struct aml *a, unsigned n_elements);
void aml_end(struct aml *a);
void aml_buffer(struct aml *a, const void *data, size_t n);

/*
 * Statements and expressions (ACPI 6.x §20.2.5), for the methods of the
 * hotplug interface. Operands are emitted by the calls that follow; a
 * Target that is not stored is aml_name_string(a, "") (NullName).
 */
enum {
	AML_OP_LOCAL0 = 0x60,	  /* Local0..Local7: 0x60..0x67 */
	AML_OP_ARG0 = 0x68,	  /* Arg0..Arg6: 0x68..0x6E */
	AML_OP_STORE = 0x70,	  /* Store(TermArg, SuperName) */
	AML_OP_SHIFT_LEFT = 0x79, /* ShiftLeft(Operand, ShiftCount, Target) */
	AML_OP_AND = 0x7B,	  /* And(Operand, Operand, Target) */
	AML_OP_NOTIFY = 0x86,	  /* Notify(SuperName, TermArg) */
	AML_OP_LEQUAL = 0x93,	  /* LEqual(Operand, Operand) */
};
/* One opcode byte from the list above. */
void aml_op(struct aml *a, uint8_t op);
/* If(<predicate emitted next>) { ... } closed with aml_end(). */
void aml_if_begin(struct aml *a);
/* OperationRegion(name, SystemIO, base, len). */
void aml_opregion_io(struct aml *a, const char *name, uint16_t base, uint16_t len);
/*
 * Field(region, DWordAcc, NoLock, WriteAsZeros) { <aml_field_unit()s> },
 * closed with aml_end().
 */
void aml_field_begin(struct aml *a, const char *region);
void aml_field_unit(struct aml *a, const char *name, unsigned bits);
/* Mutex(name, 0). */
void aml_mutex(struct aml *a, const char *name);
/* Acquire(mutex, 0xFFFF) as a statement (its result is discarded). */
void aml_acquire(struct aml *a, const char *mutex);
void aml_release(struct aml *a, const char *mutex);

/* Resource template (ACPI 6.x §6.4), emitted with aml_resource_template(). */
struct aml_res {
	uint8_t buf[1024];
	size_t len;
	int err;
};

void aml_res_init(struct aml_res *r);
void aml_res_io(struct aml_res *r, uint16_t base, uint8_t len);
/* Memory32Fixed(ReadWrite, base, len): a consumed memory range. */
void aml_res_mem32_fixed(struct aml_res *r, uint32_t base, uint32_t len);
/* IRQNoFlags: edge-triggered, active-high, exclusive ISA IRQ 0..15. */
void aml_res_irq(struct aml_res *r, unsigned irq);
void aml_res_word_bus(struct aml_res *r, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml_res *r, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml_res *r, uint32_t min, uint32_t max, int cacheable);
void aml_res_qword_mem(struct aml_res *r, uint64_t min, uint64_t max, int cacheable);
/* Buffer() with the descriptors followed by the end tag. */
void aml_resource_template(struct aml *a, struct aml_res *r);

/* While(<predicate emitted next>) { ... } and Else { ... }, closed with aml_end(). */
void aml_while_begin(struct aml *a);
void aml_else_begin(struct aml *a);
/* Field(region, <flags>): AccessType in bits 0-3 (1 Byte, 3 DWord), UpdateRule in 5-6. */
#define AML_FIELD_BYTE_ACC 0x01
#define AML_FIELD_DWORD_ACC 0x03
#define AML_FIELD_PRESERVE 0x00
#define AML_FIELD_WRITE_AS_ZEROS 0x40
void aml_field_begin_flags(struct aml *a, const char *region, uint8_t flags);
/* Offset over @bits (1..63) unnamed bits of the field. */
void aml_field_reserved(struct aml *a, unsigned bits);
