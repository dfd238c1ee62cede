/*
 * AML byte-code emitter (see hw/platform/aml.h). Encodings follow ACPI 6.x §20
 * (AML grammar) and §6.4 (resource descriptors).
 *
 * Threads: none of its own; an emitter belongs to one thread.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "hw/platform/aml.h"

enum {
	AML_ZERO = 0x00,
	AML_ONE = 0x01,
	AML_NAME = 0x08,
	AML_BYTE = 0x0A,
	AML_WORD = 0x0B,
	AML_DWORD = 0x0C,
	AML_STRING = 0x0D,
	AML_QWORD = 0x0E,
	AML_SCOPE = 0x10,
	AML_BUFFER = 0x11,
	AML_PACKAGE = 0x12,
	AML_METHOD = 0x14,
	AML_DUAL_NAME = 0x2E,
	AML_MULTI_NAME = 0x2F,
	AML_EXT = 0x5B,
	AML_EXT_MUTEX = 0x01,
	AML_EXT_ACQUIRE = 0x23,
	AML_EXT_RELEASE = 0x27,
	AML_EXT_OPREGION = 0x80,
	AML_EXT_FIELD = 0x81,
	AML_EXT_DEVICE = 0x82,
	AML_IF = 0xA0,
	AML_ROOT = 0x5C,
	AML_PARENT = 0x5E,
	AML_RETURN = 0xA4,
	AML_ONES = 0xFF,
};

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_fini(struct aml *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

static void aml_fail(struct aml *a, int err)
{
	if (!a->err) {
		a->err = err;
	}
}

static int aml_reserve(struct aml *a, size_t n)
{
	if (a->err) {
		return a->err;
	}
	if (n > AML_MAX_SIZE - a->len) {
		aml_fail(a, -ENOSPC);
		return a->err;
	}
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap : 256;
		uint8_t *p;

		while (cap < a->len + n) {
			cap *= 2;
		}
		p = realloc(a->buf, cap);
		if (!p) {
			aml_fail(a, -ENOMEM);
			return a->err;
		}
		a->buf = p;
		a->cap = cap;
	}
	return 0;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (aml_reserve(a, n) < 0) {
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static int aml_seg_char_ok(char c, int first)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

void aml_name_string(struct aml *a, const char *path)
{
	const char *p = path;
	char segs[AML_MAX_DEPTH * 4][4];
	unsigned n = 0;

	if (*p == '\\') {
		aml_byte(a, AML_ROOT);
		p++;
	} else {
		while (*p == '^') {
			aml_byte(a, AML_PARENT);
			p++;
		}
	}
	while (*p) {
		unsigned i = 0;

		if (n == ARRAY_SIZE(segs)) {
			aml_fail(a, -EINVAL);
			return;
		}
		while (*p && *p != '.') {
			if (i == 4 || !aml_seg_char_ok(*p, i == 0)) {
				aml_fail(a, -EINVAL);
				return;
			}
			segs[n][i++] = *p++;
		}
		if (i == 0) {
			aml_fail(a, -EINVAL);
			return;
		}
		while (i < 4) {
			segs[n][i++] = '_';
		}
		n++;
		if (*p == '.') {
			p++;
			if (!*p) {
				aml_fail(a, -EINVAL);
				return;
			}
		}
	}
	if (n == 0) {
		aml_byte(a, AML_ZERO); /* NullName */
		return;
	}
	if (n == 2) {
		aml_byte(a, AML_DUAL_NAME);
	} else if (n > 2) {
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, (uint8_t)n);
	}
	aml_bytes(a, segs, n * 4);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++) {
		b[i] = (uint8_t)(v >> (8 * i));
	}
	aml_bytes(a, b, n);
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO);
	} else if (v == 1) {
		aml_byte(a, AML_ONE);
	} else if (v <= 0xFF) {
		aml_byte(a, AML_BYTE);
		aml_le(a, v, 1);
	} else if (v <= 0xFFFF) {
		aml_byte(a, AML_WORD);
		aml_le(a, v, 2);
	} else if (v <= 0xFFFFFFFF) {
		aml_byte(a, AML_DWORD);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD);
		aml_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p < 0x01 || (unsigned char)*p > 0x7F) {
			aml_fail(a, -EINVAL);
			return;
		}
	}
	aml_byte(a, AML_STRING);
	aml_bytes(a, s, strlen(s) + 1);
}

static int aml_hex(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint8_t b[4];
	int h[4];

	if (strlen(id) != 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			aml_fail(a, -EINVAL);
			return;
		}
	}
	for (int i = 0; i < 4; i++) {
		h[i] = aml_hex(id[3 + i]);
		if (h[i] < 0) {
			aml_fail(a, -EINVAL);
			return;
		}
	}
	b[0] = (uint8_t)(((id[0] - 0x40) << 2) | ((id[1] - 0x40) >> 3));
	b[1] = (uint8_t)(((id[1] - 0x40) << 5) | (id[2] - 0x40));
	b[2] = (uint8_t)((h[0] << 4) | h[1]);
	b[3] = (uint8_t)((h[2] << 4) | h[3]);
	aml_byte(a, AML_DWORD);
	aml_bytes(a, b, 4);
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME);
	aml_name_string(a, path);
}

void aml_return(struct aml *a)
{
	aml_byte(a, AML_RETURN);
}

static void aml_open(struct aml *a)
{
	if (a->err) {
		return;
	}
	if (a->depth == AML_MAX_DEPTH) {
		aml_fail(a, -E2BIG);
		return;
	}
	a->open[a->depth++] = a->len;
}

void aml_end(struct aml *a)
{
	size_t start, body;
	uint8_t enc[4];
	unsigned n;

	if (a->err) {
		return;
	}
	if (a->depth == 0) {
		aml_fail(a, -EINVAL);
		return;
	}
	start = a->open[--a->depth];
	body = a->len - start;
	/* PkgLength counts its own bytes (ACPI 6.x §20.2.4). */
	if (body + 1 <= 0x3F) {
		n = 1;
		enc[0] = (uint8_t)(body + 1);
	} else {
		size_t total;

		if (body + 2 < (1u << 12)) {
			n = 2;
		} else if (body + 3 < (1u << 20)) {
			n = 3;
		} else if (body + 4 < (1u << 28)) {
			n = 4;
		} else {
			aml_fail(a, -E2BIG);
			return;
		}
		total = body + n;
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0xF));
		for (unsigned i = 1; i < n; i++) {
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
		}
	}
	if (aml_reserve(a, n) < 0) {
		return;
	}
	memmove(a->buf + start + n, a->buf + start, body);
	memcpy(a->buf + start, enc, n);
	a->len += n;
}

void aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE);
	aml_open(a);
	aml_name_string(a, path);
}

void aml_device_begin(struct aml *a, const char *name)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_DEVICE);
	aml_open(a);
	aml_name_string(a, name);
}

void aml_method_begin(struct aml *a, const char *name, unsigned nargs, int serialized)
{
	if (nargs > 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_byte(a, AML_METHOD);
	aml_open(a);
	aml_name_string(a, name);
	aml_byte(a, (uint8_t)(nargs | (serialized ? 0x08 : 0)));
}

void aml_package_begin(struct aml *a, unsigned n_elements)
{
	if (n_elements > 255) {
		aml_fail(a, -E2BIG);
		return;
	}
	aml_byte(a, AML_PACKAGE);
	aml_open(a);
	aml_byte(a, (uint8_t)n_elements);
}

void aml_buffer(struct aml *a, const void *data, size_t n)
{
	aml_byte(a, AML_BUFFER);
	aml_open(a);
	aml_integer(a, n);
	aml_bytes(a, data, n);
	aml_end(a);
}

void aml_res_init(struct aml_res *r)
{
	memset(r, 0, sizeof(*r));
}

static void aml_res_put(struct aml_res *r, const uint8_t *p, size_t n)
{
	if (r->err) {
		return;
	}
	if (n > sizeof(r->buf) - 2 - r->len) { /* keep room for the end tag */
		r->err = -ENOSPC;
		return;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

void aml_res_io(struct aml_res *r, uint16_t base, uint8_t len)
{
	uint8_t d[8] = {0x47, 0x01}; /* I/O port descriptor, 16-bit decode */

	put_le(d + 2, base, 2);
	put_le(d + 4, base, 2);
	d[6] = 1; /* alignment */
	d[7] = len;
	aml_res_put(r, d, sizeof(d));
}

void aml_res_mem32_fixed(struct aml_res *r, uint32_t base, uint32_t len)
{
	uint8_t d[12] = {0x86, 9, 0, 0x01}; /* 32-bit fixed memory range, read-write */

	put_le(d + 4, base, 4);
	put_le(d + 8, len, 4);
	aml_res_put(r, d, sizeof(d));
}

void aml_res_irq(struct aml_res *r, unsigned irq)
{
	uint8_t d[3] = {0x22}; /* IRQ descriptor without the flags byte */

	if (irq > 15) {
		r->err = -EINVAL;
		return;
	}
	put_le(d + 1, 1u << irq, 2);
	aml_res_put(r, d, sizeof(d));
}

/* Word/DWord/QWord address space descriptors share one layout. */
static void aml_res_addr(struct aml_res *r, uint8_t tag, unsigned width, uint8_t type,
			 uint8_t type_flags, uint64_t min, uint64_t max)
{
	uint8_t d[3 + 3 + 5 * 8] = {tag};
	size_t n = 3 + 3 + 5 * width;

	if (max < min) {
		r->err = -EINVAL;
		return;
	}
	put_le(d + 1, n - 3, 2);
	d[3] = type;
	d[4] = 0x0C; /* producer, positive decode, fixed min and max */
	d[5] = type_flags;
	put_le(d + 6, 0, width);			 /* granularity */
	put_le(d + 6 + width, min, width);		 /* minimum */
	put_le(d + 6 + 2 * width, max, width);		 /* maximum */
	put_le(d + 6 + 3 * width, 0, width);		 /* translation */
	put_le(d + 6 + 4 * width, max - min + 1, width); /* length */
	aml_res_put(r, d, n);
}

void aml_res_word_bus(struct aml_res *r, uint16_t min, uint16_t max)
{
	aml_res_addr(r, 0x88, 2, 2, 0, min, max);
}

void aml_res_word_io(struct aml_res *r, uint16_t min, uint16_t max)
{
	aml_res_addr(r, 0x88, 2, 1, 0x03 /* entire ISA range */, min, max);
}

void aml_res_dword_mem(struct aml_res *r, uint32_t min, uint32_t max, int cacheable)
{
	aml_res_addr(r, 0x87, 4, 0, cacheable ? 0x03 : 0x01, min, max);
}

void aml_res_qword_mem(struct aml_res *r, uint64_t min, uint64_t max, int cacheable)
{
	aml_res_addr(r, 0x8A, 8, 0, cacheable ? 0x03 : 0x01, min, max);
}

void aml_resource_template(struct aml *a, struct aml_res *r)
{
	uint8_t end[2] = {0x79, 0x00}; /* end tag; checksum 0 means "not checked" */

	if (r->err) {
		aml_fail(a, r->err);
		return;
	}
	memcpy(r->buf + r->len, end, sizeof(end));
	aml_buffer(a, r->buf, r->len + sizeof(end));
}

void aml_op(struct aml *a, uint8_t op)
{
	aml_byte(a, op);
}

void aml_if_begin(struct aml *a)
{
	aml_byte(a, AML_IF);
	aml_open(a);
}

void aml_opregion_io(struct aml *a, const char *name, uint16_t base, uint16_t len)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_OPREGION);
	aml_name_string(a, name);
	aml_byte(a, 0x01); /* RegionSpace: SystemIO */
	aml_integer(a, base);
	aml_integer(a, len);
}

void aml_field_begin(struct aml *a, const char *region)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_FIELD);
	aml_open(a);
	aml_name_string(a, region);
	aml_byte(a, 0x03 | (1u << 5)); /* DWordAcc, NoLock, WriteAsZeros */
}

void aml_field_unit(struct aml *a, const char *name, unsigned bits)
{
	if (strlen(name) != 4 || bits == 0 || bits > 0x3F) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_bytes(a, name, 4);
	aml_byte(a, (uint8_t)bits); /* PkgLength of one byte: the width in bits */
}

void aml_mutex(struct aml *a, const char *name)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_MUTEX);
	aml_name_string(a, name);
	aml_byte(a, 0); /* SyncLevel 0 */
}

void aml_acquire(struct aml *a, const char *mutex)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_ACQUIRE);
	aml_name_string(a, mutex);
	aml_le(a, 0xFFFF, 2);
}

void aml_release(struct aml *a, const char *mutex)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_RELEASE);
	aml_name_string(a, mutex);
}

/* --- more statements: While, Else, fields with another access width ---------- */

void aml_while_begin(struct aml *a)
{
	aml_byte(a, 0xA2); /* WhileOp */
	aml_open(a);
}

void aml_else_begin(struct aml *a)
{
	aml_byte(a, 0xA1); /* ElseOp */
	aml_open(a);
}

void aml_field_begin_flags(struct aml *a, const char *region, uint8_t flags)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_FIELD);
	aml_open(a);
	aml_name_string(a, region);
	aml_byte(a, flags);
}

void aml_field_reserved(struct aml *a, unsigned bits)
{
	if (bits == 0 || bits > 0x3F) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_byte(a, 0x00); /* ReservedField */
	aml_byte(a, (uint8_t)bits);
}
