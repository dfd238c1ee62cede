/*
 * VHDX format driver (Microsoft's VHDX specification v1.00, as QEMU's
 * "vhdx"): a file type identifier, two 4 KiB headers (the valid one with
 * the higher sequence number is current), two region tables naming the
 * BAT and metadata regions, the metadata items (block size, virtual size,
 * sector sizes) and a BAT of 64-bit entries (state in bits 0-2, file
 * offset in MiB in bits 20-63), with a sector bitmap entry after every
 * chunk_ratio payload entries. All structures are little-endian and
 * checksummed with CRC-32C.
 *
 * Writes: the first write after open gives the headers a new
 * file_write_guid and data_write_guid (both slots rewritten, synced), as
 * the spec asks. A block is allocated at the end of the file rounded up to
 * 1 MiB, the file is extended over it, the data written, then its BAT
 * entry. BAT updates are written in place rather than through the log:
 * simpler than QEMU, and the log stays empty (a crash can leave a BAT
 * entry whose block holds zeroes instead of the lost data, never one that
 * points outside the file).
 *
 * A log left by a crash (the header names a log GUID and the log holds a
 * valid sequence of entries) is replayed on a read-write open, as QEMU
 * does; a read-only open of such an image is refused.
 *
 * Refused: differencing images (has_parent), unknown required
 * regions or metadata items, bad checksums, block sizes outside 1..256 MiB,
 * sector sizes other than 512 and 4096, sizes over 64 TiB, BATs over
 * 64 MiB, BAT entries past the end of the file or with an invalid state.
 *
 * Threads: block worker threads. s->lock protects the BAT copy, the
 * headers and the allocation; reads and in-place writes look up under it
 * and transfer without it (blocks never move).
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "block/block-int.h"
#include "common/bytes.h"
#include "common/crc32c.h"
#include "common/iov.h"
#include "common/parse.h"

#define MiB (1ull << 20)
#define VHDX_HEADER_SIZE 4096
#define VHDX_HEADER1 (64 * 1024)
#define VHDX_HEADER2 (128 * 1024)
#define VHDX_REGION1 (192 * 1024)
#define VHDX_REGION2 (256 * 1024)
#define VHDX_REGION_SIZE (64 * 1024)
#define VHDX_REGION_MAX_ENTRIES 2047
#define VHDX_METADATA_TABLE_SIZE (64 * 1024)
#define VHDX_METADATA_MAX_ENTRIES 2047
#define VHDX_MAX_SIZE (64ull << 40)
#define VHDX_MAX_BAT_BYTES (64u << 20)
#define VHDX_MAX_LOG (1024 * MiB)

#define PAYLOAD_NOT_PRESENT 0
#define PAYLOAD_UNDEFINED 1
#define PAYLOAD_ZERO 2
#define PAYLOAD_UNMAPPED 3
#define PAYLOAD_FULLY_PRESENT 6
#define PAYLOAD_PARTIALLY_PRESENT 7
#define SB_BLOCK_PRESENT 6
#define BAT_STATE_MASK 7
#define BAT_OFFSET_SHIFT 20

/* GUIDs in their on-disk byte order (the first three fields little-endian). */
struct guid {
	uint8_t b[16];
};
#define GUID(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                                             \
	{                                                                                         \
		{                                                                                 \
			(a) & 0xff, ((a) >> 8) & 0xff, ((a) >> 16) & 0xff, ((a) >> 24) & 0xff,    \
				(b)&0xff, ((b) >> 8) & 0xff, (c)&0xff, ((c) >> 8) & 0xff, d0, d1, \
				d2, d3, d4, d5, d6, d7                                            \
		}                                                                                 \
	}
static const struct guid bat_guid =
	GUID(0x2dc27766u, 0xf623, 0x4200, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08);
static const struct guid metadata_guid =
	GUID(0x8b7ca206u, 0x4790, 0x4b9a, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e);
static const struct guid file_param_guid =
	GUID(0xcaa16737u, 0xfa36, 0x4d43, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b);
static const struct guid disk_size_guid =
	GUID(0x2fa54224u, 0xcd1b, 0x4876, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8);
static const struct guid page83_guid =
	GUID(0xbeca12abu, 0xb2e6, 0x4523, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46);
static const struct guid logical_ss_guid =
	GUID(0x8141bf1du, 0xa96f, 0x4709, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f);
static const struct guid physical_ss_guid =
	GUID(0xcda348c7u, 0x445d, 0x4471, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56);
static const struct guid parent_locator_guid =
	GUID(0xa8d35f2du, 0xb30b, 0x454d, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c);

struct vhdx_state {
	struct block_node *bs;
	pthread_mutex_t lock;
	uint8_t header[VHDX_HEADER_SIZE]; /* the current header */
	unsigned header_slot;		  /* 0 or 1 */
	uint64_t seq;
	uint64_t log_offset, log_length;
	uint64_t bat_offset, bat_length;
	uint64_t meta_offset, meta_length;
	uint32_t block_size, logical_ss, physical_ss;
	uint64_t size;
	uint32_t chunk_ratio;
	uint64_t data_blocks, bat_entries;
	uint64_t *bat; /* host order */
	bool guids_updated;
};

static bool guid_eq(const uint8_t *p, const struct guid *g)
{
	return memcmp(p, g->b, 16) == 0;
}

static bool guid_zero(const uint8_t *p)
{
	static const uint8_t z[16];

	return memcmp(p, z, 16) == 0;
}

static void guid_random(uint8_t *p)
{
	if (getrandom(p, 16, 0) != 16) {
		for (int i = 0; i < 16; i++) {
			p[i] = (uint8_t)rand();
		}
	}
	p[7] = (uint8_t)((p[7] & 0x0f) | 0x40); /* version 4, mixed-endian field 3 */
	p[8] = (uint8_t)((p[8] & 0x3f) | 0x80);
}

static int vhdx_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	return len >= 8 && memcmp(buf, "vhdxfile", 8) == 0 ? 100 : 0;
}

static int write_header(struct vhdx_state *s, unsigned slot);

static bool header_valid(const uint8_t *h)
{
	return memcmp(h, "head", 4) == 0 && crc32c_field(h, VHDX_HEADER_SIZE, 4) == le32(h + 4);
}

/* ---- the log (VHDX 1.00 §2.3): replayed on a read-write open ---- */

#define LOG_SECTOR 4096
#define LOG_DESC_SIZE 32
#define LOG_HDR_SIZE 64
/* How far past the file's end a log may place data (a crash after the log write, before the extension). */
#define LOG_MAX_GROWTH (1024 * MiB)

struct log_entry {
	uint64_t off; /* in the log */
	uint32_t len; /* bytes */
	uint32_t tail;
	uint64_t seq;
	uint32_t ndesc;
	uint64_t last_file_offset;
	uint8_t *buf; /* the whole entry, len bytes */
};

/* Read @len bytes at log offset @off (wrapping at the end of the log). */
static int log_read(struct vhdx_state *s, uint64_t off, uint8_t *buf, uint64_t len)
{
	for (uint64_t done = 0; done < len; done += LOG_SECTOR) {
		uint64_t at = (off + done) % s->log_length;
		int r = block_pread(s->bs->file, s->log_offset + at, buf + done, LOG_SECTOR);

		if (r < 0) {
			return r;
		}
	}
	return 0;
}

/* Sectors holding the header and @ndesc descriptors. */
static uint64_t log_desc_sectors(uint64_t ndesc)
{
	return (LOG_HDR_SIZE + ndesc * LOG_DESC_SIZE + LOG_SECTOR - 1) / LOG_SECTOR;
}

/* Whether [@off, @off+@len) may be written by a log entry of a file of @limit bytes. */
static bool log_target_ok(struct vhdx_state *s, uint64_t off, uint64_t len, uint64_t limit)
{
	if (off % LOG_SECTOR || len % LOG_SECTOR || off < VHDX_REGION1 || off > limit ||
	    len > limit - off) {
		return false; /* unaligned, over the file identifier or headers, or too far out */
	}
	return off + len <= s->log_offset || off >= s->log_offset + s->log_length;
}

/*
 * Read the entry at log offset @off and check all of it: signature, log
 * GUID, lengths, checksum, every descriptor and data sector (sequence
 * numbers, targets). 1 and *e filled (e->buf to free) if valid, 0 if not,
 * -errno on a read error.
 */
static int log_entry_read(struct vhdx_state *s, uint64_t off, uint64_t file_len,
			  struct log_entry *e)
{
	uint8_t h[LOG_SECTOR];
	uint64_t nsect, ndata = 0, limit;
	uint8_t *b;
	int r;

	memset(e, 0, sizeof(*e));
	r = log_read(s, off, h, LOG_SECTOR);
	if (r < 0) {
		return r;
	}
	e->off = off;
	e->len = le32(h + 8);
	e->tail = le32(h + 12);
	e->seq = le64(h + 16);
	e->ndesc = le32(h + 24);
	e->last_file_offset = le64(h + 56);
	if (memcmp(h, "loge", 4) != 0 || memcmp(h + 32, s->header + 48, 16) != 0 ||
	    e->len < LOG_SECTOR || e->len % LOG_SECTOR || e->len > s->log_length ||
	    e->tail % LOG_SECTOR || e->tail >= s->log_length || e->seq == 0 ||
	    log_desc_sectors(e->ndesc) > e->len / LOG_SECTOR ||
	    e->last_file_offset > file_len + LOG_MAX_GROWTH) {
		return 0;
	}
	b = malloc(e->len);
	if (!b) {
		return -ENOMEM;
	}
	r = log_read(s, off, b, e->len);
	if (r < 0) {
		free(b);
		return r;
	}
	if (crc32c_field(b, e->len, 4) != le32(b + 4)) {
		free(b);
		return 0;
	}
	nsect = log_desc_sectors(e->ndesc);
	limit = MAX(file_len, e->last_file_offset);
	for (uint32_t i = 0; i < e->ndesc; i++) {
		const uint8_t *d = b + LOG_HDR_SIZE + (uint64_t)i * LOG_DESC_SIZE;
		bool data = memcmp(d, "desc", 4) == 0;

		if ((!data && memcmp(d, "zero", 4) != 0) || le64(d + 24) != e->seq ||
		    !log_target_ok(s, le64(d + 16), data ? LOG_SECTOR : le64(d + 8), limit)) {
			free(b);
			return 0;
		}
		if (data) {
			const uint8_t *ds = b + (nsect + ndata) * LOG_SECTOR;

			if ((nsect + ndata + 1) * LOG_SECTOR > e->len ||
			    memcmp(ds, "data", 4) != 0 ||
			    ((uint64_t)le32(ds + 4) << 32 | le32(ds + 4092)) != e->seq) {
				free(b);
				return 0;
			}
			ndata++;
		}
	}
	if ((nsect + ndata) * LOG_SECTOR != e->len) {
		free(b);
		return 0;
	}
	e->buf = b;
	return 1;
}

/* Apply one entry's descriptors to the file. */
static int log_entry_apply(struct vhdx_state *s, const struct log_entry *e)
{
	uint64_t nsect = log_desc_sectors(e->ndesc), ndata = 0;
	uint8_t sec[LOG_SECTOR];
	int r = 0;

	for (uint32_t i = 0; i < e->ndesc && r == 0; i++) {
		const uint8_t *d = e->buf + LOG_HDR_SIZE + (uint64_t)i * LOG_DESC_SIZE;

		if (memcmp(d, "desc", 4) == 0) {
			const uint8_t *ds = e->buf + (nsect + ndata++) * LOG_SECTOR;

			memcpy(sec, d + 8, 8);			  /* LeadingBytes */
			memcpy(sec + 8, ds + 8, LOG_SECTOR - 12); /* the sector's data */
			memcpy(sec + LOG_SECTOR - 4, d + 4, 4);	  /* TrailingBytes */
			r = block_pwrite(s->bs->file, le64(d + 16), sec, LOG_SECTOR);
		} else {
			r = block_write_zeroes(s->bs->file, le64(d + 16), le64(d + 8), 0);
		}
	}
	return r;
}

/*
 * The header names a log: find its active sequence (the valid run of
 * entries with consecutive sequence numbers whose last, the head, has the
 * highest sequence number and names the run's first as its tail), write
 * its descriptors into the file in order, extend the file to the head's
 * LastFileOffset, and clear the log GUID in both headers. No valid
 * sequence: nothing to replay (as QEMU). A read-only open cannot replay
 * and is refused, as QEMU's.
 */
static int replay_log(struct vhdx_state *s, const char *fn, uint64_t file_len, struct error **errp)
{
	uint64_t nslots = s->log_length / LOG_SECTOR, best_tail = 0, best_seq = 0, best_n = 0;
	struct log_entry e, cur;
	int r;

	for (uint64_t slot = 0; slot < nslots; slot++) {
		uint64_t n = 1;

		r = log_entry_read(s, slot * LOG_SECTOR, file_len, &e);
		if (r < 0) {
			return error_set_errno(errp, r, "could not read the VHDX log of '%s'", fn);
		}
		if (r == 0) {
			continue;
		}
		cur = e;
		/* follow it while the next entry continues the sequence (at most once around) */
		while (n < nslots) {
			struct log_entry next;

			r = log_entry_read(s, (cur.off + cur.len) % s->log_length, file_len, &next);
			if (r < 0) {
				free(cur.buf);
				return error_set_errno(errp, r,
						       "could not read the VHDX log of '%s'", fn);
			}
			if (r == 0 || next.seq != cur.seq + 1) {
				free(next.buf);
				break;
			}
			free(cur.buf);
			cur = next;
			n++;
		}
		free(cur.buf);
		if (cur.tail == e.off && cur.seq > best_seq) {
			best_seq = cur.seq;
			best_tail = e.off;
			best_n = n;
		}
	}
	if (best_n == 0) {
		return 0; /* nothing valid to replay */
	}
	if (s->bs->read_only) {
		return error_set(errp, EPERM,
				 "VHDX image file '%s' opened read-only, but contains a log that "
				 "needs to be replayed (open it read-write to replay it, e.g. "
				 "'vmm-img check -r all')",
				 fn);
	}
	{
		uint64_t off = best_tail, last = 0;

		for (uint64_t i = 0; i < best_n; i++) {
			r = log_entry_read(s, off, file_len, &e);
			if (r <= 0) {
				return error_set_errno(errp, r < 0 ? r : -EIO,
						       "VHDX image '%s': log changed during replay",
						       fn);
			}
			r = log_entry_apply(s, &e);
			last = e.last_file_offset;
			off = (e.off + e.len) % s->log_length;
			free(e.buf);
			if (r < 0) {
				return error_set_errno(errp, r,
						       "could not replay the VHDX log of '%s'", fn);
			}
		}
		if (last > block_length(s->bs->file)) {
			last = (last + MiB - 1) / MiB * MiB;
			r = block_truncate(s->bs->file, last, errp);
			if (r < 0) {
				return r;
			}
		}
	}
	r = block_flush(s->bs->file);
	if (r == 0) {
		/* the log is done: no header names it any more */
		memset(s->header + 48, 0, 16);
		r = write_header(s, !s->header_slot);
	}
	if (r == 0) {
		r = block_flush(s->bs->file);
	}
	if (r == 0) {
		r = write_header(s, s->header_slot);
	}
	if (r == 0) {
		r = block_flush(s->bs->file);
	}
	if (r < 0) {
		return error_set_errno(errp, r, "could not replay the VHDX log of '%s'", fn);
	}
	return 0;
}

static int parse_headers(struct vhdx_state *s, const char *fn, uint64_t file_len,
			 struct error **errp)
{
	uint8_t h[2][VHDX_HEADER_SIZE];
	bool ok[2];
	const uint8_t *c;
	int r;

	for (int i = 0; i < 2; i++) {
		r = block_pread(s->bs->file, i ? VHDX_HEADER2 : VHDX_HEADER1, h[i],
				VHDX_HEADER_SIZE);
		if (r < 0) {
			return error_set_errno(errp, r, "could not read the VHDX headers of '%s'",
					       fn);
		}
		ok[i] = header_valid(h[i]);
	}
	if (!ok[0] && !ok[1]) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s': no valid header (signature or checksum)", fn);
	}
	s->header_slot = ok[0] && ok[1] ? le64(h[1] + 8) > le64(h[0] + 8) : ok[1];
	memcpy(s->header, h[s->header_slot], VHDX_HEADER_SIZE);
	c = s->header;
	s->seq = le64(c + 8);
	if (c[66] != 1 || c[67] != 0) {
		return error_set(errp, ENOTSUP, "VHDX image '%s': unsupported version %u", fn,
				 c[66] | c[67] << 8);
	}
	s->log_length = le32(c + 68);
	s->log_offset = le64(c + 72);
	if (s->log_offset % MiB || s->log_length % MiB || s->log_offset < MiB ||
	    s->log_length > VHDX_MAX_LOG || s->log_offset > file_len ||
	    s->log_length > file_len - s->log_offset) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s': log at %#" PRIx64 " (%" PRIu64
				 " bytes) is misaligned or outside the file",
				 fn, s->log_offset, s->log_length);
	}
	if (!guid_zero(c + 48)) {
		r = replay_log(s, fn, file_len, errp);
		if (r < 0) {
			return r;
		}
	}
	return 0;
}

static int parse_regions(struct vhdx_state *s, const char *fn, uint64_t file_len,
			 struct error **errp)
{
	_cleanup_free_ uint8_t *t = malloc(VHDX_REGION_SIZE);
	uint32_t n;
	bool have_bat = false, have_meta = false;
	int r = -EINVAL;

	if (!t) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	for (int i = 0; i < 2 && r < 0; i++) {
		r = block_pread(s->bs->file, i ? VHDX_REGION2 : VHDX_REGION1, t, VHDX_REGION_SIZE);
		if (r < 0) {
			return error_set_errno(errp, r,
					       "could not read the VHDX region table of '%s'", fn);
		}
		if (memcmp(t, "regi", 4) != 0 ||
		    crc32c_field(t, VHDX_REGION_SIZE, 4) != le32(t + 4)) {
			r = -EINVAL;
		}
	}
	if (r < 0) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s': no valid region table (signature or checksum)",
				 fn);
	}
	n = le32(t + 8);
	if (n > VHDX_REGION_MAX_ENTRIES) {
		return error_set(errp, EINVAL, "VHDX image '%s': %" PRIu32 " region table entries",
				 fn, n);
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = t + 16 + 32 * i;
		uint64_t off = le64(e + 16), len = le32(e + 24);
		bool required = le32(e + 28) & 1;

		if (guid_eq(e, &bat_guid) || guid_eq(e, &metadata_guid)) {
			if (off % MiB || len % MiB || len == 0 || off < MiB || off > file_len ||
			    len > file_len - off) {
				return error_set(errp, EINVAL,
						 "VHDX image '%s': region at %#" PRIx64 " (%" PRIu64
						 " bytes) is misaligned or outside the file",
						 fn, off, len);
			}
			if (guid_eq(e, &bat_guid)) {
				s->bat_offset = off;
				s->bat_length = len;
				have_bat = true;
			} else {
				s->meta_offset = off;
				s->meta_length = len;
				have_meta = true;
			}
		} else if (required) {
			return error_set(errp, ENOTSUP,
					 "VHDX image '%s' has an unknown required region", fn);
		}
	}
	if (!have_bat || !have_meta) {
		return error_set(errp, EINVAL, "VHDX image '%s' lacks its %s region", fn,
				 have_bat ? "metadata" : "BAT");
	}
	return 0;
}

static int parse_metadata(struct vhdx_state *s, const char *fn, struct error **errp)
{
	_cleanup_free_ uint8_t *m = NULL;
	uint64_t mlen = MIN(s->meta_length, 16 * MiB);
	unsigned found = 0;
	uint16_t n;
	int r;

	m = malloc(mlen);
	if (!m) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	r = block_pread(s->bs->file, s->meta_offset, m, mlen);
	if (r < 0) {
		return error_set_errno(errp, r, "could not read the VHDX metadata of '%s'", fn);
	}
	if (memcmp(m, "metadata", 8) != 0) {
		return error_set(errp, EINVAL, "VHDX image '%s': bad metadata table signature", fn);
	}
	n = (uint16_t)(m[10] | m[11] << 8);
	if (n > VHDX_METADATA_MAX_ENTRIES) {
		return error_set(errp, EINVAL, "VHDX image '%s': %u metadata entries", fn, n);
	}
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = m + 32 + 32 * i;
		uint32_t off = le32(e + 16), len = le32(e + 20), flags = le32(e + 24);
		const uint8_t *d = m + off;
		unsigned bit;

		if (off < VHDX_METADATA_TABLE_SIZE || off > mlen || len > mlen - off) {
			if (len == 0 && off == 0) {
				continue;
			}
			return error_set(errp, EINVAL,
					 "VHDX image '%s': metadata item %u at %" PRIu32
					 " (%" PRIu32 " bytes) is outside the metadata region",
					 fn, i, off, len);
		}
		if (guid_eq(e, &file_param_guid) && len >= 8) {
			s->block_size = le32(d);
			if (le32(d + 4) & 2) {
				return error_set(
					errp, ENOTSUP,
					"VHDX image '%s' is a differencing image, which is "
					"not supported",
					fn);
			}
			bit = 1;
		} else if (guid_eq(e, &disk_size_guid) && len >= 8) {
			s->size = le64(d);
			bit = 2;
		} else if (guid_eq(e, &logical_ss_guid) && len >= 4) {
			s->logical_ss = le32(d);
			bit = 4;
		} else if (guid_eq(e, &physical_ss_guid) && len >= 4) {
			s->physical_ss = le32(d);
			bit = 8;
		} else if (guid_eq(e, &page83_guid) || guid_eq(e, &parent_locator_guid)) {
			continue;
		} else if (flags & 4) {
			return error_set(errp, ENOTSUP,
					 "VHDX image '%s' has an unknown required metadata item",
					 fn);
		} else {
			continue;
		}
		found |= bit;
	}
	if (found != 15) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s' lacks required metadata (file parameters, disk "
				 "size or sector sizes)",
				 fn);
	}
	if (s->block_size < MiB || s->block_size > 256 * MiB ||
	    (s->block_size & (s->block_size - 1))) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s': block size %" PRIu32
				 " is not a power of two from 1 MiB to 256 MiB",
				 fn, s->block_size);
	}
	if ((s->logical_ss != 512 && s->logical_ss != 4096) ||
	    (s->physical_ss != 512 && s->physical_ss != 4096)) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s': sector sizes %" PRIu32 "/%" PRIu32
				 " (512 or 4096)",
				 fn, s->logical_ss, s->physical_ss);
	}
	if (s->size == 0 || s->size > VHDX_MAX_SIZE || s->size % s->logical_ss) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s': virtual size %" PRIu64
				 " is zero, over 64 TiB or not a multiple of the sector size",
				 fn, s->size);
	}
	return 0;
}

static int load_bat(struct vhdx_state *s, const char *fn, uint64_t file_len, struct error **errp)
{
	uint64_t bytes;
	_cleanup_free_ uint8_t *raw = NULL;
	int r;

	s->chunk_ratio = (uint32_t)(((1ull << 23) * s->logical_ss) / s->block_size);
	s->data_blocks = DIV_ROUND_UP(s->size, s->block_size);
	s->bat_entries = s->data_blocks + (s->data_blocks - 1) / s->chunk_ratio;
	bytes = s->bat_entries * 8;
	if (bytes > VHDX_MAX_BAT_BYTES) {
		return error_set(errp, EFBIG,
				 "VHDX image '%s': a BAT of %" PRIu64
				 " bytes exceeds the 64 MiB this driver supports",
				 fn, bytes);
	}
	if (bytes > s->bat_length) {
		return error_set(errp, EINVAL,
				 "VHDX image '%s': the BAT region (%" PRIu64
				 " bytes) is too small for %" PRIu64 " entries",
				 fn, s->bat_length, s->bat_entries);
	}
	s->bat = malloc(bytes);
	raw = malloc(ALIGN_UP(bytes, 4096));
	if (!s->bat || !raw) {
		return error_set(errp, ENOMEM, "out of memory for the BAT of '%s'", fn);
	}
	r = block_pread(s->bs->file, s->bat_offset, raw, ALIGN_UP(bytes, 4096));
	if (r < 0) {
		return error_set_errno(errp, r, "could not read the BAT of '%s'", fn);
	}
	for (uint64_t i = 0; i < s->bat_entries; i++) {
		uint64_t e = le64(raw + 8 * i), off = e >> BAT_OFFSET_SHIFT << BAT_OFFSET_SHIFT;
		unsigned st = e & BAT_STATE_MASK;
		bool sb = (i + 1) % (s->chunk_ratio + 1) == 0;

		s->bat[i] = e;
		if (sb) {
			continue; /* sector bitmap entries matter only for differencing images */
		}
		if (st == PAYLOAD_PARTIALLY_PRESENT || st == 4 || st == 5) {
			return error_set(errp, EINVAL,
					 "VHDX image '%s': BAT entry %" PRIu64
					 " has invalid state %u",
					 fn, i, st);
		}
		/* the last block may end with the disk (qemu-img's fixed images stop there) */
		if (st == PAYLOAD_FULLY_PRESENT &&
		    (off < 2 * MiB || off > file_len ||
		     MIN((uint64_t)s->block_size,
			 s->size - (i - i / (s->chunk_ratio + 1)) * s->block_size) >
			     file_len - off)) {
			return error_set(errp, EINVAL,
					 "VHDX image '%s': BAT entry %" PRIu64
					 " points at %#" PRIx64 ", outside the file",
					 fn, i, off);
		}
	}
	return 0;
}

static void vhdx_close(struct block_node *bs)
{
	struct vhdx_state *s = bs->opaque;

	if (!s) {
		return;
	}
	free(s->bat);
	pthread_mutex_destroy(&s->lock);
	free(s);
	bs->opaque = NULL;
}

static int vhdx_open(struct block_node *bs, const char *filename, json_t *opts, struct error **errp)
{
	uint64_t file_len = block_length(bs->file);
	struct vhdx_state *s;
	uint8_t sig[8];
	int r;

	if (json_object_size(opts)) {
		return error_set(errp, EINVAL, "invalid option '%s' for VHDX image '%s'",
				 json_object_iter_key(json_object_iter(opts)), filename);
	}
	if (file_len < 2 * MiB) {
		return error_set(errp, EINVAL, "'%s' is too short for a VHDX image", filename);
	}
	r = block_pread(bs->file, 0, sig, sizeof(sig));
	if (r < 0) {
		return error_set_errno(errp, r, "could not read '%s'", filename);
	}
	if (memcmp(sig, "vhdxfile", 8) != 0) {
		return error_set(errp, EINVAL, "'%s' is not a VHDX image (no 'vhdxfile' signature)",
				 filename);
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	bs->opaque = s;
	s->bs = bs;
	pthread_mutex_init(&s->lock, NULL);
	r = parse_headers(s, filename, file_len, errp);
	if (r == 0) {
		r = parse_regions(s, filename, file_len, errp);
	}
	if (r == 0) {
		r = parse_metadata(s, filename, errp);
	}
	if (r == 0) {
		r = load_bat(s, filename, file_len, errp);
	}
	if (r < 0) {
		vhdx_close(bs);
	}
	return r;
}

static uint64_t vhdx_get_length(struct block_node *bs)
{
	return ((struct vhdx_state *)bs->opaque)->size;
}

static uint64_t bat_index(struct vhdx_state *s, uint64_t block)
{
	return block + block / s->chunk_ratio;
}

/* Host offset of guest @offset (UINT64_MAX: reads zeroes) and the run length *ret_n. */
static uint64_t lookup(struct vhdx_state *s, uint64_t offset, uint64_t len, uint64_t *ret_n)
{
	uint64_t blk = offset / s->block_size, in = offset % s->block_size;
	uint64_t n = MIN(len, s->block_size - in);
	uint64_t e = s->bat[bat_index(s, blk)];

	if ((e & BAT_STATE_MASK) == PAYLOAD_FULLY_PRESENT) {
		uint64_t host = e >> BAT_OFFSET_SHIFT << BAT_OFFSET_SHIFT;

		/* physically contiguous blocks are one run */
		for (uint64_t b = blk + 1; n < len && b < s->data_blocks; b++) {
			uint64_t f = s->bat[bat_index(s, b)];

			if ((f & BAT_STATE_MASK) != PAYLOAD_FULLY_PRESENT ||
			    f >> BAT_OFFSET_SHIFT << BAT_OFFSET_SHIFT !=
				    host + (b - blk) * s->block_size) {
				break;
			}
			n = MIN(len, n + s->block_size);
		}
		*ret_n = n;
		return host + in;
	}
	for (uint64_t b = blk + 1; n < len && b < s->data_blocks; b++) {
		if ((s->bat[bat_index(s, b)] & BAT_STATE_MASK) == PAYLOAD_FULLY_PRESENT) {
			break;
		}
		n = MIN(len, n + s->block_size);
	}
	*ret_n = n;
	return UINT64_MAX;
}

static int vhdx_preadv(struct block_node *bs, uint64_t offset, const struct iovec *iov,
		       unsigned cnt, uint64_t len)
{
	struct vhdx_state *s = bs->opaque;
	uint64_t done = 0;

	while (done < len) {
		uint64_t host, n;
		int r;

		pthread_mutex_lock(&s->lock);
		host = lookup(s, offset + done, len - done, &n);
		pthread_mutex_unlock(&s->lock);
		if (host == UINT64_MAX) {
			iov_memset(iov, cnt, done, 0, n);
		} else {
			r = block_io_slice(bs->file, false, host, iov, cnt, done, n);
			if (r < 0) {
				return r;
			}
		}
		done += n;
	}
	return 0;
}

/* Write the current header to @slot with the next sequence number. */
static int write_header(struct vhdx_state *s, unsigned slot)
{
	uint8_t *h = s->header;

	put_le64(h + 8, ++s->seq);
	put_le32(h + 4, crc32c_field(h, VHDX_HEADER_SIZE, 4));
	return block_pwrite(s->bs->file, slot ? VHDX_HEADER2 : VHDX_HEADER1, h, VHDX_HEADER_SIZE);
}

/* Before the first change: new file and data write GUIDs in both header slots. */
static int update_guids(struct vhdx_state *s)
{
	int r;

	if (s->guids_updated) {
		return 0;
	}
	guid_random(s->header + 16);
	guid_random(s->header + 32);
	r = write_header(s, !s->header_slot);
	if (r == 0) {
		r = block_flush(s->bs->file);
	}
	if (r == 0) {
		r = write_header(s, s->header_slot);
	}
	if (r == 0) {
		r = block_flush(s->bs->file);
	}
	if (r == 0) {
		s->guids_updated = true;
	}
	return r;
}

/* Allocate the block holding guest @offset at the end of the file; s->lock held. */
static int alloc_block(struct vhdx_state *s, uint64_t offset)
{
	uint64_t blk = offset / s->block_size, idx = bat_index(s, blk);
	uint64_t at = ALIGN_UP(block_length(s->bs->file), MiB), e;
	uint8_t buf[8];
	int r;

	if (at + s->block_size > (1ull << 63)) {
		return -EFBIG;
	}
	/* the new block is a hole: it reads as zeroes whatever its old state said */
	r = block_truncate(s->bs->file, at + s->block_size, NULL);
	if (r < 0) {
		return r;
	}
	e = at | PAYLOAD_FULLY_PRESENT;
	put_le64(buf, e);
	r = block_pwrite(s->bs->file, s->bat_offset + 8 * idx, buf, 8);
	if (r < 0) {
		return r;
	}
	s->bat[idx] = e;
	return 0;
}

static int vhdx_pwritev(struct block_node *bs, uint64_t offset, const struct iovec *iov,
			unsigned cnt, uint64_t len)
{
	struct vhdx_state *s = bs->opaque;
	uint64_t done = 0;

	while (done < len) {
		uint64_t host, n;
		int r;

		pthread_mutex_lock(&s->lock);
		r = update_guids(s);
		host = lookup(s, offset + done, len - done, &n);
		if (r == 0 && host == UINT64_MAX) {
			r = alloc_block(s, offset + done);
			if (r == 0) {
				host = lookup(s, offset + done, len - done, &n);
			}
		}
		pthread_mutex_unlock(&s->lock);
		if (r == 0) {
			r = block_io_slice(bs->file, true, host, iov, cnt, done, n);
		}
		if (r < 0) {
			return r;
		}
		done += n;
	}
	return 0;
}

static int vhdx_block_status(struct block_node *bs, uint64_t offset, uint64_t len,
			     uint64_t *ret_pnum, unsigned *ret_status, uint64_t *ret_file_offset)
{
	struct vhdx_state *s = bs->opaque;
	uint64_t host;

	pthread_mutex_lock(&s->lock);
	host = lookup(s, offset, len, ret_pnum);
	pthread_mutex_unlock(&s->lock);
	*ret_file_offset = host;
	*ret_status =
		host == UINT64_MAX ? BLOCK_STATUS_ZERO : BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
	return 0;
}

static void vhdx_info(struct block_node *bs, json_t *info)
{
	struct vhdx_state *s = bs->opaque;

	json_object_set_new(info, "cluster-size", json_integer(s->block_size));
}

/* Count BAT entries that overlap each other or the headers, log, BAT or metadata. */
static int vhdx_check(struct block_node *bs, struct block_check_result *res, unsigned fix)
{
	struct vhdx_state *s = bs->opaque;
	uint64_t file_len = block_length(bs->file);

	(void)fix;
	pthread_mutex_lock(&s->lock);
	for (uint64_t b = 0; b < s->data_blocks; b++) {
		uint64_t e = s->bat[bat_index(s, b)],
			 off = e >> BAT_OFFSET_SHIFT << BAT_OFFSET_SHIFT;

		if ((e & BAT_STATE_MASK) != PAYLOAD_FULLY_PRESENT) {
			continue;
		}
		res->allocated_clusters++;
		if (off + s->block_size > file_len ||
		    (off < s->bat_offset + s->bat_length && off + s->block_size > s->bat_offset) ||
		    (off < s->meta_offset + s->meta_length &&
		     off + s->block_size > s->meta_offset) ||
		    (off < s->log_offset + s->log_length && off + s->block_size > s->log_offset)) {
			res->corruptions++;
		}
	}
	res->total_clusters = s->data_blocks;
	res->image_end_offset = file_len;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int vhdx_create(const char *filename, uint64_t size, json_t *opts, struct error **errp)
{
	uint64_t block_size = 0, log_size = MiB, bat_len, meta_off, bat_entries, data_blocks;
	uint32_t chunk_ratio;
	bool zero_state = true, fixed = false;
	uint64_t data_off;
	struct block_node *file = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	const char *key;
	json_t *v;
	int r;

	json_object_foreach (opts, key, v) {
		const char *val = json_string_value(v);

		if (strcmp(key, "size") == 0) {
			continue;
		}
		if (!val) {
			return error_set(errp, EINVAL, "VHDX option '%s' must be a string", key);
		}
		if (strcmp(key, "block_size") == 0) {
			if (parse_size(val, &block_size) < 0) {
				return error_set(errp, EINVAL, "invalid block_size '%s'", val);
			}
		} else if (strcmp(key, "log_size") == 0) {
			if (parse_size(val, &log_size) < 0) {
				return error_set(errp, EINVAL, "invalid log_size '%s'", val);
			}
		} else if (strcmp(key, "block_state_zero") == 0 &&
			   (strcmp(val, "on") == 0 || strcmp(val, "off") == 0)) {
			zero_state = strcmp(val, "on") == 0;
		} else if (strcmp(key, "subformat") == 0 &&
			   (strcmp(val, "dynamic") == 0 || strcmp(val, "fixed") == 0)) {
			fixed = strcmp(val, "fixed") == 0;
		} else if (strcmp(key, "subformat") == 0) {
			return error_set(errp, EINVAL,
					 "Parameter 'subformat' does not accept value '%s'", val);
		} else if (strcmp(key, "preallocation") == 0 && strcmp(val, "off") == 0) {
			continue;
		} else {
			return error_set(errp, EINVAL, "invalid option '%s' for format 'vhdx'",
					 key);
		}
	}
	if (size > VHDX_MAX_SIZE) {
		return error_set(errp, EINVAL, "Image size too large; max of 64TB");
	}
	size = ALIGN_UP(size, 512);
	if (block_size == 0) {
		/* as QEMU: keep the BAT small for big disks */
		block_size = size > 32 * (1ull << 40)	 ? 64 * MiB
			     : size > 100 * (1ull << 30) ? 32 * MiB
			     : size > (1ull << 30)	 ? 16 * MiB
							 : 8 * MiB;
	}
	if (block_size < MiB || block_size > 256 * MiB || (block_size & (block_size - 1))) {
		return error_set(errp, EINVAL,
				 "Block size must be a power of two between 1 MiB and 256 MiB");
	}
	if (log_size < MiB || log_size % MiB || log_size > VHDX_MAX_LOG) {
		return error_set(errp, EINVAL,
				 "Log size must be a multiple of 1 MB (at most 1 GiB)");
	}
	chunk_ratio = (uint32_t)(((1ull << 23) * 512) / block_size);
	data_blocks = MAX(1, DIV_ROUND_UP(size, block_size));
	bat_entries = data_blocks + (data_blocks - 1) / chunk_ratio;
	bat_len = ALIGN_UP(bat_entries * 8, MiB);
	if (bat_entries * 8 > VHDX_MAX_BAT_BYTES) {
		return error_set(errp, EFBIG,
				 "VHDX BAT of %" PRIu64
				 " bytes exceeds 64 MiB; use a larger block_size",
				 bat_entries * 8);
	}
	meta_off = MiB + log_size + bat_len;
	/* fixed: every block present, one after the other behind the metadata, up to the disk's end */
	data_off = meta_off + MiB;
	r = block_create("raw", filename, fixed ? data_off + size : meta_off + MiB, NULL, errp);
	if (r == 0) {
		r = block_open(&file, filename, "raw", BLOCK_O_RDWR, errp);
	}
	if (r < 0) {
		return r;
	}
	buf = calloc(1, MAX(bat_len, 320 * 1024));
	if (!buf) {
		block_unref(file);
		return error_set(errp, ENOMEM, "out of memory");
	}
	/* identifier, two headers, two region tables */
	memcpy(buf, "vhdxfile", 8);
	for (const char *p = "vmmd"; *p; p++) {
		put_le16(buf + 8 + 2 * (p - "vmmd"), (uint16_t)*p);
	}
	{
		uint8_t *h = buf + VHDX_HEADER1;

		memcpy(h, "head", 4);
		put_le64(h + 8, 1);
		guid_random(h + 16);
		guid_random(h + 32);
		put_le16(h + 64, 0);
		put_le16(h + 66, 1);
		put_le32(h + 68, (uint32_t)log_size);
		put_le64(h + 72, MiB);
		put_le32(h + 4, crc32c_field(h, VHDX_HEADER_SIZE, 4));
		memcpy(buf + VHDX_HEADER2, h, VHDX_HEADER_SIZE);
		h = buf + VHDX_HEADER2;
		put_le64(h + 8, 2);
		put_le32(h + 4, crc32c_field(h, VHDX_HEADER_SIZE, 4));
	}
	{
		uint8_t *t = buf + VHDX_REGION1;

		memcpy(t, "regi", 4);
		put_le32(t + 8, 2);
		memcpy(t + 16, bat_guid.b, 16);
		put_le64(t + 32, MiB + log_size);
		put_le32(t + 40, (uint32_t)bat_len);
		put_le32(t + 44, 1);
		memcpy(t + 48, metadata_guid.b, 16);
		put_le64(t + 64, meta_off);
		put_le32(t + 72, (uint32_t)MiB);
		put_le32(t + 76, 1);
		put_le32(t + 4, crc32c_field(t, VHDX_REGION_SIZE, 4));
		memcpy(buf + VHDX_REGION2, t, VHDX_REGION_SIZE);
	}
	r = block_pwrite(file, 0, buf, 320 * 1024);
	if (r == 0) {
		/* metadata: the table, then the items at 64 KiB */
		uint8_t *m = buf;
		static const struct {
			const struct guid *g;
			uint32_t off, len, flags;
		} items[] = {
			{&file_param_guid, 65536, 8, 4},  {&disk_size_guid, 65544, 8, 6},
			{&page83_guid, 65552, 16, 6},	  {&logical_ss_guid, 65568, 4, 6},
			{&physical_ss_guid, 65572, 4, 6},
		};

		memset(m, 0, 65536 + 4096);
		memcpy(m, "metadata", 8);
		put_le16(m + 10, ARRAY_SIZE(items));
		for (size_t i = 0; i < ARRAY_SIZE(items); i++) {
			uint8_t *e = m + 32 + 32 * i;

			memcpy(e, items[i].g->b, 16);
			put_le32(e + 16, items[i].off);
			put_le32(e + 20, items[i].len);
			put_le32(e + 24, items[i].flags);
		}
		put_le32(m + 65536, (uint32_t)block_size);
		put_le32(m + 65540, fixed ? 1 : 0); /* LeaveBlocksAllocated */
		put_le64(m + 65544, size);
		guid_random(m + 65552);
		put_le32(m + 65568, 512);
		put_le32(m + 65572, 512);
		r = block_pwrite(file, meta_off, m, 65536 + 4096);
	}
	if (r == 0) {
		memset(buf, 0, bat_len);
		for (uint64_t i = 0, blk = 0; i < bat_entries; i++) {
			if ((i + 1) % (chunk_ratio + 1) == 0) {
				continue; /* sector bitmap entry */
			}
			if (fixed) {
				put_le64(buf + 8 * i,
					 (data_off + blk++ * block_size) | PAYLOAD_FULLY_PRESENT);
			} else if (zero_state) {
				put_le64(buf + 8 * i, PAYLOAD_ZERO);
			}
		}
		r = block_pwrite(file, MiB + log_size, buf, bat_len);
	}
	if (r == 0) {
		r = block_flush(file);
	}
	block_unref(file);
	if (r < 0) {
		return error_set_errno(errp, r, "could not write VHDX image '%s'", filename);
	}
	return 0;
}

const struct block_driver vhdx_driver = {
	.name = "vhdx",
	.probe = vhdx_probe,
	.create = vhdx_create,
	.open = vhdx_open,
	.close = vhdx_close,
	.get_length = vhdx_get_length,
	.preadv = vhdx_preadv,
	.pwritev = vhdx_pwritev,
	.block_status = vhdx_block_status,
	.check = vhdx_check,
	.info = vhdx_info,
};
