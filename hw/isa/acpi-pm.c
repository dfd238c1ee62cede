/*
 * ACPI fixed hardware (ACPI 6.x §4.8) at the ports the FADT announces
 * (hw/platform/acpi.h): PM1a event block (PM1_STS, PM1_EN), PM1a control block
 * (SCI_EN, SLP_TYP, SLP_EN), the 24-bit PM timer at 3.579545 MHz, and a
 * 16-event GPE0 block at 0xAFE0 (QEMU's address, where PCI hotplug guests
 * expect it; bit 1 is PCI hotplug, hw/platform/acpi-hotplug.c). The SCI is GSI 9, driven as a level: high while an
 * enabled status bit is set. Writing SLP_TYP=S5 with SLP_EN asks the VM to
 * shut down; the fixed power button sets PWRBTN_STS.
 *
 * Not emulated: TMR_STS is computed when read but never raises the SCI
 * (OSes do not enable the timer overflow event in practice), and sleep
 * states other than S5 are ignored (the DSDT announces only \_S5).
 *
 * Threads: register accesses on vCPU threads, the power button and GPEs from
 * any thread (vm_powerdown runs on the control thread); pm->lock protects
 * all state.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "common/vmstate.h"
#include "hw/platform/acpi.h"
#include "hw/device.h"
#include "hw/devices.h"

#define PM_TMR_HZ 3579545ULL

/* PM1_STS / PM1_EN bits */
#define PM1_TMR 0x0001
#define PM1_GBL 0x0020
#define PM1_PWRBTN 0x0100
#define PM1_SLPBTN 0x0200
#define PM1_RTC 0x0400
#define PM1_WAK 0x8000
#define PM1_EVENTS (PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC)

/* PM1_CNT bits */
#define PM1_CNT_SCI_EN 0x0001
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_TYP_MASK (7u << PM1_CNT_SLP_TYP_SHIFT)
#define PM1_CNT_SLP_EN 0x2000

struct acpi_pm {
	struct vm *vm;
	struct iobus *bus;
	pthread_mutex_t lock;
	uint16_t pm1_sts, pm1_en, pm1_cnt;
	uint16_t gpe_sts, gpe_en;
	uint64_t tmr_start_ns;	 /* monotonic time when the timer read 0 */
	uint64_t tmr_ack_period; /* timer overflow count at the last TMR_STS clear */
	int sci_level;
	struct ratelimit rl;
};

static uint64_t pm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t pm_ticks(struct acpi_pm *pm)
{
	uint64_t ns = pm_now_ns() - pm->tmr_start_ns;

	/* 128-bit intermediate: ns * 3.58e6 overflows 64 bits after ~85 minutes. */
	return (uint64_t)((unsigned __int128)ns * PM_TMR_HZ / 1000000000ULL);
}

/* TMR_STS is set whenever bit 23 of the counter has toggled since the last clear. */
static uint16_t pm_sts(struct acpi_pm *pm)
{
	uint16_t sts = pm->pm1_sts;

	if ((pm_ticks(pm) >> 23) != pm->tmr_ack_period) {
		sts |= PM1_TMR;
	}
	return sts;
}

static void pm_update_sci(struct acpi_pm *pm)
{
	int level = (pm->pm1_cnt & PM1_CNT_SCI_EN) &&
		    ((pm->pm1_sts & pm->pm1_en & PM1_EVENTS) || (pm->gpe_sts & pm->gpe_en));

	if (level != pm->sci_level) {
		pm->sci_level = level;
		vm_irq_set_level(pm->vm, ACPI_SCI_IRQ, level);
	}
}

/* @ticks: the PM timer of this access, read once for all its bytes. */
static uint8_t pm_read_byte(struct acpi_pm *pm, unsigned off, uint64_t ticks)
{
	unsigned sh = (off & 1) * 8;

	switch (off) {
	case 0x00:
	case 0x01:
		return (uint8_t)(pm_sts(pm) >> sh);
	case 0x02:
	case 0x03:
		return (uint8_t)(pm->pm1_en >> sh);
	case 0x04:
	case 0x05:
		return (uint8_t)((pm->pm1_cnt & ~PM1_CNT_SLP_EN) >> sh);
	case 0x08:
	case 0x09:
	case 0x0A:
	case 0x0B:
		return (uint8_t)((ticks & 0xFFFFFF) >> (8 * (off - 0x08)));
	/* GPE0_BLK, mapped here by gpe_pio_read */
	case 0x20:
	case 0x21:
		return (uint8_t)(pm->gpe_sts >> sh);
	case 0x22:
	case 0x23:
		return (uint8_t)(pm->gpe_en >> sh);
	default:
		return 0;
	}
}

static void pm_write_cnt(struct acpi_pm *pm, uint16_t v)
{
	unsigned typ = (v & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT;

	/* SCI_EN is read-only 1: the hardware is always in ACPI mode (no SMI_CMD). */
	pm->pm1_cnt = (uint16_t)((v & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
	if (!(v & PM1_CNT_SLP_EN)) {
		return;
	}
	if (typ == ACPI_SLP_TYP_S5) {
		vm_request(pm->vm, VM_CAUSE_GUEST_SHUTDOWN);
	} else {
		log_ratelimited(&pm->rl, LOG_NOTICE, vm_name(pm->vm), "acpi-pm",
				"guest asked for unsupported sleep type %u; ignored", typ);
	}
}

static void pm_write_byte(struct acpi_pm *pm, unsigned off, uint8_t v)
{
	unsigned sh = (off & 1) * 8;

	switch (off) {
	case 0x00:
	case 0x01:
		/* write 1 to clear */
		if (off == 0 && (v & PM1_TMR)) {
			pm->tmr_ack_period = pm_ticks(pm) >> 23;
		}
		pm->pm1_sts &= (uint16_t) ~((unsigned)v << sh);
		break;
	case 0x02:
	case 0x03:
		pm->pm1_en = (uint16_t)((pm->pm1_en & ~(0xFFu << sh)) | ((unsigned)v << sh));
		break;
	case 0x04:
	case 0x05:
		pm_write_cnt(pm, (uint16_t)((pm->pm1_cnt & ~(0xFFu << sh)) | ((unsigned)v << sh)));
		break;
	case 0x20:
	case 0x21:
		pm->gpe_sts &= (uint16_t) ~((unsigned)v << sh);
		break;
	case 0x22:
	case 0x23:
		pm->gpe_en = (uint16_t)((pm->gpe_en & ~(0xFFu << sh)) | ((unsigned)v << sh));
		break;
	default: /* the timer and the gaps are read-only */
		break;
	}
}

static uint64_t pm_pio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint64_t v = 0, ticks;

	pthread_mutex_lock(&pm->lock);
	/*
	 * One reading of the timer for the whole access: byte by byte, a carry
	 * between two bytes tore a 32-bit read of PM_TMR (up to 256 ticks off,
	 * even backwards), which hardware never does.
	 */
	ticks = pm_ticks(pm);
	for (unsigned i = 0; i < size; i++) {
		if (offset + i < ACPI_PM_REGION_LEN) {
			v |= (uint64_t)pm_read_byte(pm, (unsigned)(offset + i), ticks) << (8 * i);
		}
	}
	pthread_mutex_unlock(&pm->lock);
	return v;
}

static void pm_pio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	/* Bytes apply in order; SLP_TYP and SLP_EN share PM1_CNT's high byte. */
	for (unsigned i = 0; i < size; i++) {
		if (offset + i < ACPI_PM_REGION_LEN) {
			pm_write_byte(pm, (unsigned)(offset + i), (uint8_t)(value >> (8 * i)));
		}
	}
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static const struct iobus_ops pm_ops = {
	.read = pm_pio_read,
	.write = pm_pio_write,
};

/* GPE0_BLK: its bytes are offsets 0x20..0x23 of the register file above. */
#define GPE_OFF 0x20

static uint64_t gpe_pio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&pm->lock);
	for (unsigned i = 0; i < size; i++) {
		if (offset + i < ACPI_GPE0_BLK_LEN) {
			v |= (uint64_t)pm_read_byte(pm, (unsigned)(GPE_OFF + offset + i), 0)
			     << (8 * i);
		}
	}
	pthread_mutex_unlock(&pm->lock);
	return v;
}

static void gpe_pio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	for (unsigned i = 0; i < size; i++) {
		if (offset + i < ACPI_GPE0_BLK_LEN) {
			pm_write_byte(pm, (unsigned)(GPE_OFF + offset + i),
				      (uint8_t)(value >> (8 * i)));
		}
	}
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static const struct iobus_ops gpe_ops = {
	.read = gpe_pio_read,
	.write = gpe_pio_write,
};

static void pm_reset_regs(struct acpi_pm *pm)
{
	pm->pm1_sts = 0;
	pm->pm1_en = 0;
	pm->pm1_cnt = PM1_CNT_SCI_EN;
	pm->gpe_sts = 0;
	pm->gpe_en = 0;
	pm->tmr_start_ns = pm_now_ns();
	pm->tmr_ack_period = 0;
}

void acpi_pm_press_power_button(void *pm_state)
{
	struct acpi_pm *pm = pm_state;

	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts |= PM1_PWRBTN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_raise_gpe(void *pm_state, unsigned gpe)
{
	struct acpi_pm *pm = pm_state;

	if (gpe >= 16) {
		return;
	}
	pthread_mutex_lock(&pm->lock);
	pm->gpe_sts |= (uint16_t)(1u << gpe);
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static int pm_powerdown(void *opaque)
{
	acpi_pm_press_power_button(opaque);
	return 0;
}

static int pm_realize(struct vm *vm, const void *cfg, void **ret_state, struct error **errp)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	int r;

	if (!pm) {
		return error_set(errp, ENOMEM, "acpi-pm: out of memory");
	}
	pm->vm = vm;
	pm->bus = vm_iobus(vm);
	pm->rl = (struct ratelimit)RATELIMIT_INIT(5 * 1000000, 3);
	pthread_mutex_init(&pm->lock, NULL);
	pm_reset_regs(pm);
	r = iobus_register(pm->bus, IOBUS_PIO, ACPI_PM_BASE, ACPI_PM_REGION_LEN, &pm_ops, pm,
			   "acpi-pm", errp);
	if (r < 0) {
		goto err_free;
	}
	r = iobus_register(pm->bus, IOBUS_PIO, ACPI_GPE0_BLK, ACPI_GPE0_BLK_LEN, &gpe_ops, pm,
			   "acpi-gpe0", errp);
	if (r < 0) {
		goto err_unregister;
	}
	vm_set_powerdown_handler(vm, pm_powerdown, pm);
	*ret_state = pm;
	return 0;

err_unregister:
	iobus_unregister(pm->bus, IOBUS_PIO, ACPI_PM_BASE);
err_free:
	pthread_mutex_destroy(&pm->lock);
	free(pm);
	return r;
}

static void pm_unrealize(void *state)
{
	struct acpi_pm *pm = state;

	if (!pm) {
		return;
	}
	vm_set_powerdown_handler(pm->vm, NULL, NULL);
	iobus_unregister(pm->bus, IOBUS_PIO, ACPI_GPE0_BLK);
	iobus_unregister(pm->bus, IOBUS_PIO, ACPI_PM_BASE);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

static void pm_reset(void *state)
{
	struct acpi_pm *pm = state;

	pthread_mutex_lock(&pm->lock);
	pm_reset_regs(pm);
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static bool pm_wanted(const struct vm_config *cfg, const void *item)
{
	return cfg->acpi;
}

/* Registers, and the PM timer as the time it has run (it keeps counting from there). */
static int pm_save(void *state, struct vmstate_buf *out, struct error **errp)
{
	struct acpi_pm *pm = state;

	pthread_mutex_lock(&pm->lock);
	vmstate_put_u16(out, pm->pm1_sts);
	vmstate_put_u16(out, pm->pm1_en);
	vmstate_put_u16(out, pm->pm1_cnt);
	vmstate_put_u16(out, pm->gpe_sts);
	vmstate_put_u16(out, pm->gpe_en);
	vmstate_put_u64(out, pm_now_ns() - pm->tmr_start_ns);
	vmstate_put_u64(out, pm->tmr_ack_period);
	vmstate_put_u8(out, (uint8_t)pm->sci_level);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static int pm_load(void *state, struct vmstate_buf *in, unsigned version, struct error **errp)
{
	struct acpi_pm *pm = state;
	uint16_t regs[5];
	uint64_t elapsed, ack;
	uint8_t sci;
	int r;

	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++) {
		regs[i] = vmstate_get_u16(in);
	}
	elapsed = vmstate_get_u64(in);
	ack = vmstate_get_u64(in);
	sci = vmstate_get_u8(in);
	if (sci > 1 || elapsed > pm_now_ns()) {
		in->failed = true;
	}
	r = vmstate_check_end(in, "the ACPI PM block", errp);
	if (r < 0) {
		return r;
	}
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts = regs[0];
	pm->pm1_en = regs[1];
	pm->pm1_cnt = regs[2];
	pm->gpe_sts = regs[3];
	pm->gpe_en = regs[4];
	pm->tmr_start_ns = pm_now_ns() - elapsed;
	pm->tmr_ack_period = ack;
	pm->sci_level = sci;
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

const struct device_class acpi_pm_class = {
	.name = "acpi-pm",
	.each = DEVICE_ONCE,
	.wanted = pm_wanted,
	.realize = pm_realize,
	.unrealize = pm_unrealize,
	.reset = pm_reset,
	.state_version = 1,
	.save = pm_save,
	.load = pm_load,
};
