/*
 * fw_cfg device model: numbered items, the sorted file directory, the
 * byte-wide data port and the DMA interface. See fw-cfg.h for the layout.
 *
 * Threads: items are added on the control thread before the vCPUs run;
 * port handlers run on vCPU threads under fw->lock (selector, offset and
 * the latched DMA address are shared by all vCPUs, as on the real device).
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/platform/fw-cfg.h"
#include "hw/device.h"

#define FW_CFG_DMA_SIGNATURE 0x51454d5520434647ULL /* "QEMU CFG" */
#define FW_CFG_ID_TRADITIONAL 0x01
#define FW_CFG_ID_DMA 0x02
#define FW_CFG_KEY_MASK 0x3fff /* bit 14 is the obsolete write channel */

struct fw_cfg_item {
	uint16_t key;
	bool writable;
	char name[FW_CFG_MAX_FILE_NAME]; /* "" for numbered items */
	uint8_t *data;
	uint32_t len;
};

struct fw_cfg {
	pthread_mutex_t lock;
	struct guest_mem *mem;
	/* Numbered items and files; small, so lookups are linear. */
	struct fw_cfg_item *items;
	unsigned n_items;
	unsigned n_files;
	uint8_t *dir; /* FW_CFG_FILE_DIR contents */
	uint32_t dir_len;
	/* Guest-visible state, under lock. */
	uint16_t cur_key;
	bool cur_valid;
	uint32_t cur_offset;
	uint32_t dma_addr_high;
};

static struct fw_cfg_item *fw_cfg_find(struct fw_cfg *fw, uint16_t key)
{
	for (unsigned i = 0; i < fw->n_items; i++) {
		if (fw->items[i].key == key) {
			return &fw->items[i];
		}
	}
	return NULL;
}

static struct fw_cfg_item *fw_cfg_find_file(struct fw_cfg *fw, const char *name)
{
	for (unsigned i = 0; i < fw->n_items; i++) {
		if (fw->items[i].name[0] && strcmp(fw->items[i].name, name) == 0) {
			return &fw->items[i];
		}
	}
	return NULL;
}

/* Store a copy of @data in @item (new or existing). */
static int fw_cfg_item_set(struct fw_cfg_item *item, const void *data, size_t len)
{
	uint8_t *copy = NULL;

	if (len > FW_CFG_MAX_ITEM_SIZE) {
		return -E2BIG;
	}
	if (len) {
		copy = malloc(len);
		if (!copy) {
			return -ENOMEM;
		}
		memcpy(copy, data, len);
	}
	free(item->data);
	item->data = copy;
	item->len = (uint32_t)len;
	return 0;
}

static struct fw_cfg_item *fw_cfg_new_item(struct fw_cfg *fw, uint16_t key)
{
	struct fw_cfg_item *items;

	items = realloc(fw->items, (fw->n_items + 1) * sizeof(*items));
	if (!items) {
		return NULL;
	}
	fw->items = items;
	memset(&items[fw->n_items], 0, sizeof(*items));
	items[fw->n_items].key = key;
	return &items[fw->n_items++];
}

int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data, size_t len)
{
	struct fw_cfg_item *item;
	uint16_t idx = key & ~FW_CFG_ARCH_LOCAL;

	if (key & 0x4000 || key == FW_CFG_FILE_DIR ||
	    (!(key & FW_CFG_ARCH_LOCAL) && idx >= FW_CFG_FILE_FIRST)) {
		return -EINVAL;
	}
	if (len > FW_CFG_MAX_ITEM_SIZE) {
		return -E2BIG;
	}
	item = fw_cfg_find(fw, key);
	if (!item) {
		item = fw_cfg_new_item(fw, key);
		if (!item) {
			return -ENOMEM;
		}
	}
	return fw_cfg_item_set(item, data, len);
}

int fw_cfg_add_i16(struct fw_cfg *fw, uint16_t key, uint16_t value)
{
	uint16_t le = htole16(value);

	return fw_cfg_add_bytes(fw, key, &le, sizeof(le));
}

int fw_cfg_add_i32(struct fw_cfg *fw, uint16_t key, uint32_t value)
{
	uint32_t le = htole32(value);

	return fw_cfg_add_bytes(fw, key, &le, sizeof(le));
}

int fw_cfg_add_i64(struct fw_cfg *fw, uint16_t key, uint64_t value)
{
	uint64_t le = htole64(value);

	return fw_cfg_add_bytes(fw, key, &le, sizeof(le));
}

static int fw_cfg_cmp_name(const void *a, const void *b)
{
	const struct fw_cfg_item *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* Rebuild FW_CFG_FILE_DIR: be32 count, then {be32 size, be16 select, be16 0, name[56]}. */
static int fw_cfg_rebuild_dir(struct fw_cfg *fw)
{
	struct fw_cfg_item *sorted[FW_CFG_MAX_FILES];
	unsigned n = 0;
	uint32_t len = 4 + fw->n_files * 64;
	uint8_t *dir = calloc(1, len);

	if (!dir) {
		return -ENOMEM;
	}
	for (unsigned i = 0; i < fw->n_items && n < FW_CFG_MAX_FILES; i++) {
		if (fw->items[i].name[0]) {
			sorted[n++] = &fw->items[i];
		}
	}
	qsort(sorted, n, sizeof(sorted[0]), fw_cfg_cmp_name);
	*(uint32_t *)dir = htobe32(n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = dir + 4 + i * 64;
		uint32_t size = htobe32(sorted[i]->len);
		uint16_t sel = htobe16(sorted[i]->key);

		memcpy(e, &size, 4);
		memcpy(e + 4, &sel, 2);
		memcpy(e + 8, sorted[i]->name, strlen(sorted[i]->name));
	}
	free(fw->dir);
	fw->dir = dir;
	fw->dir_len = len;
	return 0;
}

int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len,
		    bool writable, struct error **errp)
{
	struct fw_cfg_item *item;
	size_t nlen = strlen(name);
	int r;

	if (nlen == 0 || nlen >= FW_CFG_MAX_FILE_NAME) {
		return error_set(errp, EINVAL, "fw_cfg file name '%s' must be 1..%d characters",
				 name, FW_CFG_MAX_FILE_NAME - 1);
	}
	if (len > FW_CFG_MAX_ITEM_SIZE) {
		return error_set(errp, E2BIG, "fw_cfg file '%s' is %zu bytes, the limit is %u",
				 name, len, FW_CFG_MAX_ITEM_SIZE);
	}
	item = fw_cfg_find_file(fw, name);
	if (!item) {
		if (fw->n_files >= FW_CFG_MAX_FILES) {
			return error_set(errp, ENOSPC, "fw_cfg file '%s': already %d files", name,
					 FW_CFG_MAX_FILES);
		}
		item = fw_cfg_new_item(fw, (uint16_t)(FW_CFG_FILE_FIRST + fw->n_files));
		if (!item) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		memcpy(item->name, name, nlen + 1);
		fw->n_files++;
	}
	item->writable = writable;
	r = fw_cfg_item_set(item, data, len);
	if (r == 0) {
		r = fw_cfg_rebuild_dir(fw);
	}
	if (r < 0) {
		return error_set_errno(errp, -r, "fw_cfg file '%s'", name);
	}
	return 0;
}

const void *fw_cfg_file_data(struct fw_cfg *fw, const char *name, size_t *ret_len)
{
	struct fw_cfg_item *item = fw_cfg_find_file(fw, name);

	if (!item) {
		return NULL;
	}
	*ret_len = item->len;
	return item->data;
}

struct fw_cfg *fw_cfg_new(struct guest_mem *mem)
{
	static const uint8_t sig[4] = {'Q', 'E', 'M', 'U'};
	struct fw_cfg *fw = calloc(1, sizeof(*fw));

	if (!fw) {
		return NULL;
	}
	pthread_mutex_init(&fw->lock, NULL);
	fw->mem = mem;
	if (fw_cfg_add_bytes(fw, FW_CFG_SIGNATURE, sig, sizeof(sig)) < 0 ||
	    fw_cfg_add_i32(fw, FW_CFG_ID, FW_CFG_ID_TRADITIONAL | (mem ? FW_CFG_ID_DMA : 0)) < 0 ||
	    fw_cfg_rebuild_dir(fw) < 0) {
		fw_cfg_free(fw);
		return NULL;
	}
	return fw;
}

void fw_cfg_free(struct fw_cfg *fw)
{
	if (!fw) {
		return;
	}
	for (unsigned i = 0; i < fw->n_items; i++) {
		free(fw->items[i].data);
	}
	free(fw->items);
	free(fw->dir);
	pthread_mutex_destroy(&fw->lock);
	free(fw);
}

void fw_cfg_reset(struct fw_cfg *fw)
{
	pthread_mutex_lock(&fw->lock);
	fw->cur_key = 0;
	fw->cur_valid = false;
	fw->cur_offset = 0;
	fw->dma_addr_high = 0;
	pthread_mutex_unlock(&fw->lock);
}

void fw_cfg_save(struct fw_cfg *fw, struct vmstate_buf *out)
{
	unsigned n = 0;

	pthread_mutex_lock(&fw->lock);
	vmstate_put_u16(out, fw->cur_key);
	vmstate_put_bool(out, fw->cur_valid);
	vmstate_put_u32(out, fw->cur_offset);
	vmstate_put_u32(out, fw->dma_addr_high);
	for (unsigned i = 0; i < fw->n_items; i++) {
		n += fw->items[i].writable;
	}
	vmstate_put_u32(out, n);
	for (unsigned i = 0; i < fw->n_items; i++) {
		if (fw->items[i].writable) {
			vmstate_put_u16(out, fw->items[i].key);
			vmstate_put_blob(out, fw->items[i].data, fw->items[i].len);
		}
	}
	pthread_mutex_unlock(&fw->lock);
}

int fw_cfg_load(struct fw_cfg *fw, struct vmstate_buf *in, struct error **errp)
{
	uint16_t key = vmstate_get_u16(in);
	bool valid = vmstate_get_bool(in);
	uint32_t off = vmstate_get_u32(in);
	uint32_t high = vmstate_get_u32(in);
	uint32_t n = vmstate_get_u32(in);
	int r = 0;

	if (in->failed) {
		return error_set(errp, EINVAL, "fw_cfg state is truncated");
	}
	pthread_mutex_lock(&fw->lock);
	fw->cur_key = key;
	fw->cur_valid = valid;
	fw->cur_offset = off;
	fw->dma_addr_high = high;
	for (uint32_t i = 0; i < n && r == 0; i++) {
		uint16_t k = vmstate_get_u16(in);
		struct fw_cfg_item *item = fw_cfg_find(fw, k);

		if (!item || !item->writable) {
			r = error_set(errp, EINVAL,
				      "fw_cfg item 0x%x of the snapshot is not writable here", k);
			break;
		}
		vmstate_get_blob(in, item->data, item->len);
		if (in->failed) {
			r = error_set(errp, EINVAL, "fw_cfg item 0x%x has another size", k);
		}
	}
	pthread_mutex_unlock(&fw->lock);
	return r;
}

/* The selected item's bytes; NULL/0 when nothing (valid) is selected. Under lock. */
static const uint8_t *fw_cfg_cur(struct fw_cfg *fw, uint32_t *ret_len, struct fw_cfg_item **ret)
{
	struct fw_cfg_item *item;

	*ret_len = 0;
	*ret = NULL;
	if (!fw->cur_valid) {
		return NULL;
	}
	if (fw->cur_key == FW_CFG_FILE_DIR) {
		*ret_len = fw->dir_len;
		return fw->dir;
	}
	item = fw_cfg_find(fw, fw->cur_key);
	if (!item) {
		return NULL;
	}
	*ret = item;
	*ret_len = item->len;
	return item->data;
}

static void fw_cfg_select(struct fw_cfg *fw, uint16_t key)
{
	fw->cur_key = key & (FW_CFG_KEY_MASK | FW_CFG_ARCH_LOCAL);
	fw->cur_valid = true;
	fw->cur_offset = 0;
}

static uint8_t fw_cfg_read_byte(struct fw_cfg *fw)
{
	struct fw_cfg_item *item;
	uint32_t len;
	const uint8_t *data = fw_cfg_cur(fw, &len, &item);

	if (!data || fw->cur_offset >= len) {
		return 0;
	}
	return data[fw->cur_offset++];
}

/*
 * Run the transfer described by the FWCfgDmaAccess at guest address @addr.
 * Every guest value is checked: the descriptor and each chunk of data must
 * be in RAM, and the length is bounded by the item (reads past the end are
 * zero-filled, as QEMU does). The control word ends as 0 or ERROR.
 */
static void fw_cfg_dma(struct fw_cfg *fw, uint64_t addr)
{
	struct {
		uint32_t control;
		uint32_t length;
		uint64_t address;
	} _packed_ desc;
	uint32_t control, length, status = 0, done_ctl;
	uint64_t gaddr;

	if (!fw->mem || guest_mem_read(fw->mem, addr, &desc, sizeof(desc)) < 0) {
		return;
	}
	control = be32toh(desc.control);
	length = be32toh(desc.length);
	gaddr = be64toh(desc.address);
	if (control & FW_CFG_DMA_SELECT) {
		fw_cfg_select(fw, (uint16_t)(control >> 16));
	}
	while (length > 0 && !status) {
		struct fw_cfg_item *item;
		uint32_t item_len, n;
		const uint8_t *data = fw_cfg_cur(fw, &item_len, &item);
		uint8_t *ptr;

		if (!data || fw->cur_offset >= item_len) {
			n = length;
			if (control & FW_CFG_DMA_READ) {
				ptr = guest_mem_ptr(fw->mem, gaddr, n);
				if (!ptr) {
					status = FW_CFG_DMA_ERROR;
					break;
				}
				memset(ptr, 0, n);
			} else if (control & FW_CFG_DMA_WRITE) {
				status = FW_CFG_DMA_ERROR;
				break;
			}
		} else {
			n = MIN(length, item_len - fw->cur_offset);
			if (control & FW_CFG_DMA_READ) {
				if (guest_mem_write(fw->mem, gaddr, data + fw->cur_offset, n) < 0) {
					status = FW_CFG_DMA_ERROR;
					break;
				}
			} else if (control & FW_CFG_DMA_WRITE) {
				if (!item || !item->writable ||
				    guest_mem_read(fw->mem, gaddr, item->data + fw->cur_offset, n) <
					    0) {
					status = FW_CFG_DMA_ERROR;
					break;
				}
			}
			fw->cur_offset += n;
		}
		gaddr += n;
		length -= n;
	}
	done_ctl = htobe32(status);
	guest_mem_write(fw->mem, addr, &done_ctl, sizeof(done_ctl));
}

uint64_t fw_cfg_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct fw_cfg *fw = opaque;
	uint64_t value = 0;

	pthread_mutex_lock(&fw->lock);
	if (offset == 1) {
		/* Wider reads of the data port return consecutive bytes, first in the lowest byte. */
		for (unsigned i = 0; i < size; i++) {
			value |= (uint64_t)fw_cfg_read_byte(fw) << (8 * i);
		}
	} else if (offset >= 4 && offset + size <= 12) {
		/* The DMA register reads back the "QEMU CFG" signature, big-endian. */
		uint8_t sig[8];
		uint64_t be = htobe64(FW_CFG_DMA_SIGNATURE);

		memcpy(sig, &be, 8);
		for (unsigned i = 0; i < size && offset - 4 + i < 8; i++) {
			value |= (uint64_t)sig[offset - 4 + i] << (8 * i);
		}
	} else {
		value = 0;
	}
	pthread_mutex_unlock(&fw->lock);
	return value;
}

void fw_cfg_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct fw_cfg *fw = opaque;

	pthread_mutex_lock(&fw->lock);
	if (offset == 0 && size == 2) {
		fw_cfg_select(fw, (uint16_t)value);
	} else if (offset == 4 && size == 4) {
		fw->dma_addr_high = be32toh((uint32_t)value);
	} else if (offset == 8 && size == 4 && fw->mem) {
		uint64_t addr = (uint64_t)fw->dma_addr_high << 32 | be32toh((uint32_t)value);

		fw->dma_addr_high = 0;
		fw_cfg_dma(fw, addr);
	} else if (offset == 4 && size == 8 && fw->mem) {
		fw->dma_addr_high = 0;
		fw_cfg_dma(fw, be64toh(value));
	}
	/* Data port writes have been ignored since QEMU 2.4; so are they here. */
	pthread_mutex_unlock(&fw->lock);
}

static const struct iobus_ops fw_cfg_io_ops = {
	.read = fw_cfg_io_read,
	.write = fw_cfg_io_write,
};

int fw_cfg_register(struct fw_cfg *fw, struct iobus *bus, struct error **errp)
{
	return iobus_register(bus, IOBUS_PIO, FW_CFG_IO_BASE, FW_CFG_IO_SIZE, &fw_cfg_io_ops, fw,
			      "fw_cfg", errp);
}

void fw_cfg_unregister(struct fw_cfg *fw, struct iobus *bus)
{
	(void)fw;
	iobus_unregister(bus, IOBUS_PIO, FW_CFG_IO_BASE);
}

/* Table loader script. */

static uint8_t *fw_cfg_loader_cmd(struct fw_cfg_loader *l, uint32_t type)
{
	uint8_t *buf, *cmd;
	uint32_t le = htole32(type);

	if (l->n_cmds >= FW_CFG_LOADER_MAX_CMDS) {
		return NULL;
	}
	buf = realloc(l->buf, l->len + FW_CFG_LOADER_CMD_SIZE);
	if (!buf) {
		return NULL;
	}
	l->buf = buf;
	cmd = buf + l->len;
	memset(cmd, 0, FW_CFG_LOADER_CMD_SIZE);
	memcpy(cmd, &le, 4);
	l->len += FW_CFG_LOADER_CMD_SIZE;
	l->n_cmds++;
	return cmd;
}

static int fw_cfg_loader_name(uint8_t *dst, const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= FW_CFG_MAX_FILE_NAME) {
		return -EINVAL;
	}
	memcpy(dst, name, n);
	return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

int fw_cfg_loader_allocate(struct fw_cfg_loader *l, const char *file, uint32_t align, uint8_t zone)
{
	uint8_t *cmd;

	if (!IS_POWER_OF_2(align) ||
	    (zone != FW_CFG_LOADER_ZONE_HIGH && zone != FW_CFG_LOADER_ZONE_FSEG)) {
		return -EINVAL;
	}
	if (strlen(file) == 0 || strlen(file) >= FW_CFG_MAX_FILE_NAME) {
		return -EINVAL;
	}
	cmd = fw_cfg_loader_cmd(l, 1);
	if (!cmd) {
		return -ENOMEM;
	}
	fw_cfg_loader_name(cmd + 4, file);
	put_le32(cmd + 4 + 56, align);
	cmd[4 + 56 + 4] = zone;
	return 0;
}

int fw_cfg_loader_add_pointer(struct fw_cfg_loader *l, const char *dest_file, const char *src_file,
			      uint32_t offset, uint8_t size)
{
	uint8_t *cmd;

	if (size != 1 && size != 2 && size != 4 && size != 8) {
		return -EINVAL;
	}
	if (!*dest_file || strlen(dest_file) >= FW_CFG_MAX_FILE_NAME || !*src_file ||
	    strlen(src_file) >= FW_CFG_MAX_FILE_NAME) {
		return -EINVAL;
	}
	cmd = fw_cfg_loader_cmd(l, 2);
	if (!cmd) {
		return -ENOMEM;
	}
	fw_cfg_loader_name(cmd + 4, dest_file);
	fw_cfg_loader_name(cmd + 4 + 56, src_file);
	put_le32(cmd + 4 + 112, offset);
	cmd[4 + 116] = size;
	return 0;
}

int fw_cfg_loader_add_checksum(struct fw_cfg_loader *l, const char *file, uint32_t offset,
			       uint32_t start, uint32_t length)
{
	uint8_t *cmd;

	if (!*file || strlen(file) >= FW_CFG_MAX_FILE_NAME) {
		return -EINVAL;
	}
	cmd = fw_cfg_loader_cmd(l, 3);
	if (!cmd) {
		return -ENOMEM;
	}
	fw_cfg_loader_name(cmd + 4, file);
	put_le32(cmd + 4 + 56, offset);
	put_le32(cmd + 4 + 60, start);
	put_le32(cmd + 4 + 64, length);
	return 0;
}

void fw_cfg_loader_free(struct fw_cfg_loader *l)
{
	free(l->buf);
	l->buf = NULL;
	l->len = 0;
	l->n_cmds = 0;
}
