/*
 * Self-announcement of a VM's NICs (include/vmmd/vm.h: vm_announce), as
 * QEMU's announce-self and its announcement after an incoming migration:
 * each NIC sends a RARP of its MAC through its backend (the device class's
 * announce hook), so switches learn where the VM runs now.
 *
 * A timer per name (QEMU's "id"; the migration's has none) counts its
 * rounds down: the first round comes due at once, the next after initial
 * ms, then initial + step, initial + 2 * step, ... each gap capped at max
 * (QEMU's formula). A round that comes due while the VM does not run is
 * owed, and the owed rounds go out together when it runs again, as QEMU
 * holds a stopped NIC's frames until cont. A timer whose rounds are done
 * stays allocated, disarmed, for its name's next use (at most
 * VM_ANNOUNCE_MAX_TIMERS ids besides "" and the migration's): nothing
 * wakes for an idle VM.
 *
 * Threads: vm_announce on the control thread; the rounds on the VM's I/O
 * thread (where NIC backends may be called); announce_resumed under the
 * VM's ctl_lock wherever the VM starts running; announce_free from
 * vm_teardown before the devices go. Timer state and the walk over the
 * device table are under vm_devices_lock() (ctl_lock).
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "hw/announce.h"
#include "hw/core/vm-devices.h"
#include "hw/device.h"

struct announce_timer {
	struct vm *vm;
	struct event *ev;
	char *id; /* NULL: the migration's timer */
	struct vm_announce_params p;
	int64_t rounds_left; /* rounds not yet due */
	int64_t owed;	     /* rounds due and not sent (the VM did not run); bounded */
	uint64_t next_ms;    /* when the next round is due (CLOCK_MONOTONIC) */
	char **ifaces;	     /* NULL: every NIC */
};

struct announce {
	unsigned n;
	struct announce_timer t[VM_ANNOUNCE_MAX_TIMERS + 2]; /* + "" and the migration's */
};

/* CLOCK_MONOTONIC in ms. */
static uint64_t now_ms(void)
{
	return mono_ns() / 1000000;
}

static void free_strv(char **v)
{
	for (char **p = v; p && *p; p++) {
		free(*p);
	}
	free(v);
}

static bool wanted(const struct announce_timer *t, const char *id)
{
	if (!t->ifaces) {
		return true;
	}
	for (char **p = t->ifaces; *p; p++) {
		if (id && strcmp(*p, id) == 0) {
			return true;
		}
	}
	return false;
}

/* One round: every NIC the timer names sends its frame. ctl_lock held. */
static void send_round(struct announce_timer *t)
{
	unsigned n = vm_devices_count(t->vm);

	for (unsigned i = 0; i < n; i++) {
		struct vm_device *d = vm_devices_at(t->vm, i);

		if (d->cls->announce && wanted(t, d->id)) {
			d->cls->announce(d->state);
		}
	}
}

/*
 * A round due: owed until sent. At most a schedule's worth are held, so a
 * client repeating announce-self at a paused VM cannot pile up frames.
 */
static void owe(struct announce_timer *t)
{
	if (t->owed < VM_ANNOUNCE_MAX_ROUNDS) {
		t->owed++;
	}
}

static void arm(struct announce_timer *t, uint64_t delay_ms)
{
	struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
			     .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000};

	evtimer_add(t->ev, &tv);
}

/* I/O thread: a round came due, or the VM runs again with rounds owed. */
static void round_cb(evutil_socket_t fd, short what, void *arg)
{
	struct announce_timer *t = arg;
	uint64_t now;

	vm_devices_lock(t->vm);
	now = now_ms();
	if (t->rounds_left > 0 && now >= t->next_ms) {
		int64_t gap;

		owe(t);
		t->rounds_left--;
		gap = t->p.initial + (t->p.rounds - t->rounds_left - 1) * t->p.step;
		if (gap < 0 || gap > t->p.max) {
			gap = t->p.max;
		}
		t->next_ms = now + (uint64_t)gap;
	}
	if (vm_get_state(t->vm) == VM_STATE_RUNNING) {
		for (; t->owed > 0; t->owed--) {
			send_round(t);
		}
	}
	if (t->rounds_left > 0) {
		arm(t, t->next_ms > now ? t->next_ms - now : 0);
	}
	vm_devices_unlock(t->vm);
}

static int check_range(const char *name, int64_t v, int64_t max, struct error **errp)
{
	if (v < 0 || v > max) {
		return error_set(errp, EINVAL, "Parameter '%s' expects a value between 0 and %lld",
				 name, (long long)max);
	}
	return 0;
}

int vm_announce(struct vm *vm, const struct vm_announce_params *p, const char *const *interfaces,
		const char *id, struct error **errp)
{
	struct announce **ap = vm_announce_ptr(vm);
	struct announce_timer *t = NULL;
	char **ifaces = NULL, *name = NULL;
	size_t n_ifaces = 0;
	uint64_t now;
	int r;

	if ((r = check_range("initial", p->initial, VM_ANNOUNCE_MAX_INITIAL, errp)) < 0 ||
	    (r = check_range("max", p->max, VM_ANNOUNCE_MAX_MAX, errp)) < 0 ||
	    (r = check_range("rounds", p->rounds, VM_ANNOUNCE_MAX_ROUNDS, errp)) < 0 ||
	    (r = check_range("step", p->step, VM_ANNOUNCE_MAX_STEP, errp)) < 0) {
		return r;
	}
	if (id && strlen(id) > VM_ANNOUNCE_MAX_ID) {
		return error_set(errp, EINVAL, "Parameter 'id' is longer than %d bytes",
				 VM_ANNOUNCE_MAX_ID);
	}
	while (interfaces && interfaces[n_ifaces]) {
		if (++n_ifaces > VM_ANNOUNCE_MAX_INTERFACES) {
			return error_set(errp, EINVAL,
					 "Parameter 'interfaces' names more than %d NICs",
					 VM_ANNOUNCE_MAX_INTERFACES);
		}
	}
	/* Copies first: out of memory changes nothing. */
	if ((id && !(name = strdup(id))) ||
	    (interfaces && !(ifaces = calloc(n_ifaces + 1, sizeof(*ifaces))))) {
		free(name);
		return error_set(errp, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n_ifaces; i++) {
		if (!(ifaces[i] = strdup(interfaces[i]))) {
			free(name);
			free_strv(ifaces);
			return error_set(errp, ENOMEM, "out of memory");
		}
	}

	vm_devices_lock(vm);
	if (!*ap && !(*ap = calloc(1, sizeof(**ap)))) {
		r = error_set(errp, ENOMEM, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < (*ap)->n && !t; i++) {
		struct announce_timer *c = &(*ap)->t[i];

		if (id ? c->id && strcmp(c->id, id) == 0 : !c->id) {
			t = c;
		}
	}
	if (!t) {
		unsigned named = 0;

		for (unsigned i = 0; i < (*ap)->n; i++) {
			named += (*ap)->t[i].id && (*ap)->t[i].id[0];
		}
		if (id && id[0] && named == VM_ANNOUNCE_MAX_TIMERS) {
			r = error_set(errp, ENOSPC,
				      "VM '%s' has %d announce-self ids already (a used id may be "
				      "given again)",
				      vm_get_config(vm)->name, VM_ANNOUNCE_MAX_TIMERS);
			goto out;
		}
		t = &(*ap)->t[(*ap)->n];
		t->ev = evtimer_new(vm_io_base(vm), round_cb, t);
		if (!t->ev) {
			r = error_set(errp, ENOMEM, "out of memory");
			goto out;
		}
		t->vm = vm;
		t->id = name;
		name = NULL;
		(*ap)->n++;
	}
	/*
	 * QEMU's reset of a named timer: its schedule starts again. QEMU sends
	 * a call's first round within the call: one due and not yet sent here
	 * is owed, as are rounds held while the VM does not run.
	 */
	now = now_ms();
	if (t->rounds_left > 0 && t->next_ms <= now) {
		owe(t);
	}
	t->p = *p;
	t->rounds_left = p->rounds;
	t->next_ms = now;
	free_strv(t->ifaces);
	t->ifaces = ifaces;
	ifaces = NULL;
	arm(t, 0);
	r = 0;
out:
	vm_devices_unlock(vm);
	free(name);
	free_strv(ifaces);
	return r;
}

void announce_resumed(struct announce *a)
{
	for (unsigned i = 0; a && i < a->n; i++) {
		if (a->t[i].owed > 0) {
			arm(&a->t[i], 0);
		}
	}
}

void announce_free(struct announce *a)
{
	for (unsigned i = 0; a && i < a->n; i++) {
		event_free(a->t[i].ev); /* waits for a round running on the I/O thread */
		free(a->t[i].id);
		free_strv(a->t[i].ifaces);
	}
	free(a);
}
