/*
 * MC146818 CMOS RTC at ports 0x70 (index, bit 7 = NMI mask) and 0x71
 * (data). The clock is the host's UTC clock plus an offset the guest sets
 * by writing the time registers (directly, or between setting and clearing
 * register B's SET bit, which freezes the visible time). Register B selects
 * BCD or binary and 12- or 24-hour format; register A's update-in-progress
 * bit reads 1 during the last 244 us of each second, as on the chip. The
 * flags in register C come from the interrupt timer; for a guest that polls
 * without interrupts, update-ended and alarm are also computed when read.
 *
 * CMOS memory carries what firmware and old loaders read: base memory,
 * extended memory (0x17/0x18, 0x30/0x31), memory above 16 MiB in 64 KiB
 * units (0x34/0x35), memory above 4 GiB in 64 KiB units (0x5B-0x5D), the
 * vCPU count minus one (0x5F), the century (0x32) and the checksum
 * (0x2E/0x2F over 0x10-0x2D).
 *
 * Interrupts (IRQ 8, asserted until register C is read): periodic at
 * register A's rate, update-ended and alarm once a second, from a timer on
 * the VM's I/O thread armed only while one of them is enabled.
 *
 * Threads: vCPU threads (ports), the I/O thread (timer), control thread
 * (realize, reset); rtc->lock protects all state.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/util.h"
#include "hw/device.h"
#include "hw/devices.h"
#include "common/vmstate.h"
#include "hw/platform/platform.h"

#define RTC_BASE 0x70
#define RTC_IRQ 8
#define RTC_PCI_HOLE_START 0xC0000000ULL

enum {
	RTC_SEC = 0x00,
	RTC_SEC_ALARM = 0x01,
	RTC_MIN = 0x02,
	RTC_MIN_ALARM = 0x03,
	RTC_HOUR = 0x04,
	RTC_HOUR_ALARM = 0x05,
	RTC_WDAY = 0x06,
	RTC_MDAY = 0x07,
	RTC_MONTH = 0x08,
	RTC_YEAR = 0x09,
	RTC_REG_A = 0x0A,
	RTC_REG_B = 0x0B,
	RTC_REG_C = 0x0C,
	RTC_REG_D = 0x0D,
	RTC_CENTURY = 0x32,
};

#define REG_A_UIP 0x80
#define REG_B_SET 0x80
#define REG_B_PIE 0x40
#define REG_B_AIE 0x20
#define REG_B_UIE 0x10
#define REG_B_DM_BINARY 0x04
#define REG_B_24H 0x02
#define REG_C_IRQF 0x80
#define REG_C_PF 0x40
#define REG_C_AF 0x20
#define REG_C_UF 0x10
#define REG_D_VRT 0x80

struct rtc {
	struct vm *vm;
	struct iobus *bus;
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t cmos[128];
	int64_t offset;	  /* guest seconds minus host seconds */
	struct tm frozen; /* the visible time while SET is 1 */
	time_t last_c;	  /* guest second at the last register C read */
	uint8_t reg_c;	  /* flags raised by the timer since the last register C read */
	int irq_level;
	/* The interrupt timer on the I/O thread, armed while PIE, AIE or UIE is set. */
	struct event *timer;
	uint64_t next_periodic_ns; /* CLOCK_REALTIME of the next periodic flag, 0 = off */
	time_t last_tick;	   /* guest second the timer last looked at */
};

static uint8_t to_bcd(unsigned v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static unsigned from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0x0F);
}

static uint8_t rtc_enc(struct rtc *r, unsigned v)
{
	return (r->cmos[RTC_REG_B] & REG_B_DM_BINARY) ? (uint8_t)v : to_bcd(v);
}

static unsigned rtc_dec(struct rtc *r, uint8_t v)
{
	return (r->cmos[RTC_REG_B] & REG_B_DM_BINARY) ? v : from_bcd(v);
}

static void host_now(time_t *sec, long *nsec)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	*sec = ts.tv_sec;
	*nsec = ts.tv_nsec;
}

static time_t rtc_guest_time(struct rtc *r)
{
	time_t s;
	long ns;

	host_now(&s, &ns);
	return s + (time_t)r->offset;
}

static void rtc_current_tm(struct rtc *r, struct tm *tm)
{
	time_t t;

	if (r->cmos[RTC_REG_B] & REG_B_SET) {
		*tm = r->frozen;
		return;
	}
	t = rtc_guest_time(r);
	gmtime_r(&t, tm);
}

static uint8_t rtc_enc_hour(struct rtc *r, int hour)
{
	unsigned h;

	if (r->cmos[RTC_REG_B] & REG_B_24H) {
		return rtc_enc(r, (unsigned)hour);
	}
	h = (unsigned)(hour % 12);
	return (uint8_t)(rtc_enc(r, h ? h : 12) | (hour >= 12 ? 0x80 : 0));
}

static int rtc_dec_hour(struct rtc *r, uint8_t v)
{
	unsigned h;

	if (r->cmos[RTC_REG_B] & REG_B_24H) {
		return (int)rtc_dec(r, v);
	}
	h = rtc_dec(r, v & 0x7F) % 12;
	return (int)(h + ((v & 0x80) ? 12 : 0));
}

static uint8_t rtc_time_reg(struct rtc *r, const struct tm *tm, uint8_t idx)
{
	switch (idx) {
	case RTC_SEC:
		return rtc_enc(r, (unsigned)tm->tm_sec);
	case RTC_MIN:
		return rtc_enc(r, (unsigned)tm->tm_min);
	case RTC_HOUR:
		return rtc_enc_hour(r, tm->tm_hour);
	case RTC_WDAY:
		return rtc_enc(r, (unsigned)tm->tm_wday + 1);
	case RTC_MDAY:
		return rtc_enc(r, (unsigned)tm->tm_mday);
	case RTC_MONTH:
		return rtc_enc(r, (unsigned)tm->tm_mon + 1);
	case RTC_YEAR:
		return rtc_enc(r, (unsigned)(tm->tm_year % 100));
	default: /* RTC_CENTURY */
		return rtc_enc(r, (unsigned)(1900 + tm->tm_year) / 100);
	}
}

static bool rtc_is_time_reg(uint8_t idx)
{
	return idx == RTC_SEC || idx == RTC_MIN || idx == RTC_HOUR || idx == RTC_WDAY ||
	       idx == RTC_MDAY || idx == RTC_MONTH || idx == RTC_YEAR || idx == RTC_CENTURY;
}

/* Change one field of @tm from a register value; out-of-range values are clamped. */
static void rtc_set_field(struct rtc *r, struct tm *tm, uint8_t idx, uint8_t v)
{
	unsigned d = rtc_dec(r, v);

	switch (idx) {
	case RTC_SEC:
		tm->tm_sec = (int)MIN(d, 59u);
		break;
	case RTC_MIN:
		tm->tm_min = (int)MIN(d, 59u);
		break;
	case RTC_HOUR:
		tm->tm_hour = MIN(rtc_dec_hour(r, v), 23);
		break;
	case RTC_WDAY:
		break; /* derived from the date */
	case RTC_MDAY:
		tm->tm_mday = (int)MAX(1u, MIN(d, 31u));
		break;
	case RTC_MONTH:
		tm->tm_mon = (int)MAX(1u, MIN(d, 12u)) - 1;
		break;
	case RTC_YEAR:
		tm->tm_year = ((1900 + tm->tm_year) / 100 * 100 + (int)MIN(d, 99u)) - 1900;
		break;
	case RTC_CENTURY:
		tm->tm_year = ((int)MIN(d, 99u) * 100 + (1900 + tm->tm_year) % 100) - 1900;
		break;
	}
}

/* Make @tm the guest's current time. */
static void rtc_commit(struct rtc *r, struct tm *tm)
{
	time_t host, t;
	long ns;

	tm->tm_isdst = 0;
	t = timegm(tm);
	if (t == (time_t)-1) {
		return;
	}
	host_now(&host, &ns);
	r->offset = (int64_t)t - (int64_t)host;
}

/* Alarm: each alarm byte matches the time, or is 0xC0-0xFF ("don't care"). */
static bool rtc_alarm_matches(struct rtc *r, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	return (r->cmos[RTC_SEC_ALARM] >= 0xC0 ||
		r->cmos[RTC_SEC_ALARM] == rtc_time_reg(r, &tm, RTC_SEC)) &&
	       (r->cmos[RTC_MIN_ALARM] >= 0xC0 ||
		r->cmos[RTC_MIN_ALARM] == rtc_time_reg(r, &tm, RTC_MIN)) &&
	       (r->cmos[RTC_HOUR_ALARM] >= 0xC0 ||
		r->cmos[RTC_HOUR_ALARM] == rtc_time_reg(r, &tm, RTC_HOUR));
}

/* IRQ 8 is asserted while an enabled flag waits in register C. */
static void rtc_update_irq(struct rtc *r)
{
	int level = (r->reg_c & REG_C_IRQF) != 0;

	if (level != r->irq_level) {
		r->irq_level = level;
		vm_irq_set_level(r->vm, RTC_IRQ, level);
	}
}

static void rtc_raise(struct rtc *r, uint8_t flags)
{
	r->reg_c |= flags;
	if (r->reg_c & r->cmos[RTC_REG_B] & (REG_B_PIE | REG_B_AIE | REG_B_UIE)) {
		r->reg_c |= REG_C_IRQF;
	}
	rtc_update_irq(r);
}

/* Register C: flags since the last read; reading clears them and the interrupt. */
static uint8_t rtc_read_c(struct rtc *r)
{
	time_t now = rtc_guest_time(r);
	uint8_t c = r->reg_c;

	/* A guest that polls without interrupts still sees updates and alarms. */
	if (now != r->last_c) {
		c |= REG_C_UF;
		if (rtc_alarm_matches(r, now)) {
			c |= REG_C_AF;
		}
	}
	r->last_c = now;
	if (c & r->cmos[RTC_REG_B] & (REG_B_PIE | REG_B_AIE | REG_B_UIE)) {
		c |= REG_C_IRQF;
	}
	r->reg_c = 0;
	rtc_update_irq(r);
	return c;
}

static uint64_t rtc_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Periodic interrupt period from register A's rate bits; 0 if off. */
static uint64_t rtc_period_ns(uint8_t reg_a)
{
	unsigned rate = reg_a & 0x0F;

	if (rate == 0) {
		return 0;
	}
	if (rate <= 2) {
		rate += 7; /* rates 1 and 2 repeat 8 and 9 with a 32.768 kHz time base */
	}
	/* 2^(rate-1) cycles of 32768 Hz */
	return (1000000000ULL << (rate - 1)) / 32768;
}

/* (Re)arm the I/O thread's timer for the next flag an enabled interrupt needs. */
static void rtc_arm(struct rtc *r)
{
	uint8_t b = r->cmos[RTC_REG_B];
	uint64_t now = rtc_realtime_ns(), period = rtc_period_ns(r->cmos[RTC_REG_A]);
	uint64_t next = UINT64_MAX;
	struct timeval tv;

	if (!r->timer) {
		return;
	}
	if ((b & REG_B_PIE) && period) {
		if (!r->next_periodic_ns || r->next_periodic_ns + 100 * period < now) {
			r->next_periodic_ns = now + period;
		}
		next = r->next_periodic_ns;
	} else {
		r->next_periodic_ns = 0;
	}
	if ((b & (REG_B_AIE | REG_B_UIE)) && !(b & REG_B_SET)) {
		next = MIN(next, (now / 1000000000ULL + 1) * 1000000000ULL);
	}
	if (next == UINT64_MAX) {
		event_del(r->timer);
		return;
	}
	next = next > now ? next - now : 0;
	tv.tv_sec = (time_t)(next / 1000000000ULL);
	tv.tv_usec = (suseconds_t)((next % 1000000000ULL) / 1000);
	event_add(r->timer, &tv);
}

static void rtc_timer_cb(evutil_socket_t fd, short what, void *opaque)
{
	struct rtc *r = opaque;
	uint64_t now;
	uint8_t flags = 0;
	time_t t;

	pthread_mutex_lock(&r->lock);
	now = rtc_realtime_ns();
	if (r->next_periodic_ns && now >= r->next_periodic_ns) {
		flags |= REG_C_PF;
		r->next_periodic_ns += rtc_period_ns(r->cmos[RTC_REG_A]);
	}
	t = rtc_guest_time(r);
	if (t != r->last_tick && !(r->cmos[RTC_REG_B] & REG_B_SET)) {
		flags |= REG_C_UF;
		if (rtc_alarm_matches(r, t)) {
			flags |= REG_C_AF;
		}
	}
	r->last_tick = t;
	if (flags) {
		rtc_raise(r, flags);
	}
	rtc_arm(r);
	pthread_mutex_unlock(&r->lock);
}

bool rtc_update_in_progress(long nsec, uint8_t reg_b)
{
	/* The chip sets UIP 244 us before it updates the time registers, once a second. */
	return !(reg_b & REG_B_SET) && nsec >= 1000000000L - 244000L;
}

static uint8_t rtc_read(struct rtc *r, uint8_t idx)
{
	struct tm tm;
	time_t s;
	long ns;

	if (rtc_is_time_reg(idx)) {
		rtc_current_tm(r, &tm);
		return rtc_time_reg(r, &tm, idx);
	}
	switch (idx) {
	case RTC_REG_A:
		host_now(&s, &ns);
		if (rtc_update_in_progress(ns, r->cmos[RTC_REG_B])) {
			return r->cmos[RTC_REG_A] | REG_A_UIP;
		}
		return r->cmos[RTC_REG_A];
	case RTC_REG_C:
		return rtc_read_c(r);
	case RTC_REG_D:
		return REG_D_VRT;
	default:
		return r->cmos[idx];
	}
}

static void rtc_write(struct rtc *r, uint8_t idx, uint8_t v)
{
	struct tm tm;

	if (rtc_is_time_reg(idx)) {
		rtc_current_tm(r, &tm);
		rtc_set_field(r, &tm, idx, v);
		if (r->cmos[RTC_REG_B] & REG_B_SET) {
			r->frozen = tm;
		} else {
			rtc_commit(r, &tm);
		}
		return;
	}
	switch (idx) {
	case RTC_REG_A:
		r->cmos[RTC_REG_A] = v & (uint8_t)~REG_A_UIP;
		rtc_arm(r);
		break;
	case RTC_REG_B:
		if ((v & REG_B_SET) && !(r->cmos[RTC_REG_B] & REG_B_SET)) {
			rtc_current_tm(r, &r->frozen);
			v &= (uint8_t)~REG_B_UIE; /* setting SET clears UIE */
		} else if (!(v & REG_B_SET) && (r->cmos[RTC_REG_B] & REG_B_SET)) {
			rtc_commit(r, &r->frozen);
		}
		r->cmos[RTC_REG_B] = v;
		r->last_tick = rtc_guest_time(r);
		rtc_arm(r);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		r->cmos[idx] = v;
		break;
	}
}

static uint64_t rtc_pio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct rtc *r = opaque;
	uint8_t v = 0xFF;

	if (offset == 1) {
		pthread_mutex_lock(&r->lock);
		v = rtc_read(r, r->index);
		pthread_mutex_unlock(&r->lock);
	}
	return v;
}

static void rtc_pio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct rtc *r = opaque;

	pthread_mutex_lock(&r->lock);
	if (offset == 0) {
		r->index = (uint8_t)value & 0x7F; /* bit 7 masks NMI; nothing to mask here */
	} else {
		rtc_write(r, r->index, (uint8_t)value);
	}
	pthread_mutex_unlock(&r->lock);
}

static const struct iobus_ops rtc_ops = {
	.read = rtc_pio_read,
	.write = rtc_pio_write,
};

static void rtc_set16(struct rtc *r, uint8_t idx, unsigned v)
{
	r->cmos[idx] = (uint8_t)v;
	r->cmos[idx + 1] = (uint8_t)(v >> 8);
}

/* The power-on CMOS contents for @memory bytes of RAM and @vcpus vCPUs. */
static void rtc_init_cmos(struct rtc *r, uint64_t memory, unsigned vcpus)
{
	uint64_t low = MIN(memory, RTC_PCI_HOLE_START);
	uint64_t high = memory - low;
	uint64_t ext_kb = low > (1ULL << 20) ? (low - (1ULL << 20)) / 1024 : 0;
	uint64_t above16 = low > (16ULL << 20) ? (low - (16ULL << 20)) / 65536 : 0;
	uint64_t above4g = high / 65536;
	unsigned sum = 0;

	memset(r->cmos, 0, sizeof(r->cmos));
	r->cmos[RTC_REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
	r->cmos[RTC_REG_B] = REG_B_24H;
	r->cmos[RTC_SEC_ALARM] = r->cmos[RTC_MIN_ALARM] = r->cmos[RTC_HOUR_ALARM] = 0;
	r->cmos[0x14] = 0x02; /* equipment: FPU, no floppy, no display */
	rtc_set16(r, 0x15, 640);
	rtc_set16(r, 0x17, (unsigned)MIN(ext_kb, 0xFFFFu));
	rtc_set16(r, 0x30, (unsigned)MIN(ext_kb, 0xFFFFu));
	rtc_set16(r, 0x34, (unsigned)MIN(above16, 0xFFFFu));
	above4g = MIN(above4g, 0xFFFFFFu);
	r->cmos[0x5B] = (uint8_t)above4g;
	r->cmos[0x5C] = (uint8_t)(above4g >> 8);
	r->cmos[0x5D] = (uint8_t)(above4g >> 16);
	r->cmos[0x5F] = (uint8_t)(vcpus ? vcpus - 1 : 0);
	for (unsigned i = 0x10; i <= 0x2D; i++) {
		sum += r->cmos[i];
	}
	r->cmos[0x2E] = (uint8_t)(sum >> 8);
	r->cmos[0x2F] = (uint8_t)sum;
}

static void rtc_reset_state(struct rtc *r)
{
	const struct vm_config *cfg = vm_get_config(r->vm);

	/* The guest's clock offset survives a reset, as a battery-backed RTC's does. */
	r->index = 0;
	rtc_init_cmos(r, cfg->memory, cfg->vcpus);
	r->last_c = r->last_tick = rtc_guest_time(r);
	r->reg_c = 0;
	r->next_periodic_ns = 0;
	rtc_update_irq(r);
	rtc_arm(r);
}

static void rtc_unrealize(void *state)
{
	struct rtc *r = state;

	if (!r) {
		return;
	}
	iobus_unregister(r->bus, IOBUS_PIO, RTC_BASE);
	event_free(r->timer);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static int rtc_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct rtc *r = calloc(1, sizeof(*r));
	int ret;

	if (!r) {
		return error_set(errp, ENOMEM, "rtc: out of memory");
	}
	r->vm = vm;
	r->bus = vm_iobus(vm);
	pthread_mutex_init(&r->lock, NULL);
	r->timer = evtimer_new(vm_io_base(vm), rtc_timer_cb, r);
	if (!r->timer) {
		pthread_mutex_destroy(&r->lock);
		free(r);
		return error_set(errp, ENOMEM, "rtc: cannot create its timer");
	}
	rtc_reset_state(r);
	ret = iobus_register(r->bus, IOBUS_PIO, RTC_BASE, 2, &rtc_ops, r, "rtc", errp);
	if (ret < 0) {
		event_free(r->timer);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return ret;
	}
	*ret_state = r;
	return 0;
}

static void rtc_reset(void *state)
{
	struct rtc *r = state;

	pthread_mutex_lock(&r->lock);
	rtc_reset_state(r);
	pthread_mutex_unlock(&r->lock);
}

static void put_tm(struct vmstate_buf *out, const struct tm *tm)
{
	const int v[] = {tm->tm_sec, tm->tm_min,  tm->tm_hour, tm->tm_mday,
			 tm->tm_mon, tm->tm_year, tm->tm_wday, tm->tm_yday};

	for (unsigned i = 0; i < ARRAY_SIZE(v); i++) {
		vmstate_put_u32(out, (uint32_t)v[i]);
	}
}

/* Bound of a loaded clock offset, in seconds (about 35000 years). */
#define RTC_MAX_SECONDS (1ll << 40)

static void get_tm(struct vmstate_buf *in, struct tm *tm)
{
	int *v[] = {&tm->tm_sec, &tm->tm_min,  &tm->tm_hour, &tm->tm_mday,
		    &tm->tm_mon, &tm->tm_year, &tm->tm_wday, &tm->tm_yday};

	memset(tm, 0, sizeof(*tm));
	for (unsigned i = 0; i < ARRAY_SIZE(v); i++) {
		*v[i] = (int)vmstate_get_u32(in);
	}
}

/*
 * CMOS, index, register C and the guest clock as an offset from the host's
 * (a restored guest's RTC reads the host's time plus that offset).
 */
static int rtc_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct rtc *r = state;

	pthread_mutex_lock(&r->lock);
	vmstate_put_u8(out, r->index);
	vmstate_put_bytes(out, r->cmos, sizeof(r->cmos));
	vmstate_put_u64(out, (uint64_t)r->offset);
	put_tm(out, &r->frozen);
	vmstate_put_u64(out, (uint64_t)(r->last_c - rtc_guest_time(r)));
	vmstate_put_u8(out, r->reg_c);
	vmstate_put_u8(out, (uint8_t)r->irq_level);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int rtc_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct rtc *r = state;
	uint8_t index, cmos[128], reg_c, level;
	int64_t offset, last_c_delta;
	struct tm frozen;
	int ret;

	index = vmstate_get_u8(in);
	vmstate_get_bytes(in, cmos, sizeof(cmos));
	offset = (int64_t)vmstate_get_u64(in);
	get_tm(in, &frozen);
	last_c_delta = (int64_t)vmstate_get_u64(in);
	reg_c = vmstate_get_u8(in);
	level = vmstate_get_u8(in);
	/*
	 * A guest's clock is within centuries of the host's, and the stream is
	 * input: an offset near 2^63 s would overflow rtc_guest_time().
	 */
	if (index > 0x7F || level > 1 || offset < -RTC_MAX_SECONDS || offset > RTC_MAX_SECONDS ||
	    last_c_delta < -RTC_MAX_SECONDS || last_c_delta > RTC_MAX_SECONDS) {
		in->failed = true;
	}
	ret = vmstate_check_end(in, "the RTC", errp);
	if (ret < 0) {
		return ret;
	}
	pthread_mutex_lock(&r->lock);
	r->index = index;
	memcpy(r->cmos, cmos, sizeof(cmos));
	r->offset = offset;
	r->frozen = frozen;
	r->last_c = rtc_guest_time(r) + last_c_delta;
	r->last_tick = rtc_guest_time(r);
	r->reg_c = reg_c;
	r->irq_level = level;
	r->next_periodic_ns = 0;
	rtc_arm(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

const struct device_class rtc_class = {
	.name = "rtc",
	.realize = rtc_realize,
	.unrealize = rtc_unrealize,
	.reset = rtc_reset,
	.state_version = 1,
	.save = rtc_save,
	.load = rtc_load,
};
