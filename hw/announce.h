/*
 * Self-announcement inside hw/ (hw/announce.c): what the VM object calls.
 * The command itself is vm_announce in include/vmmd/vm.h.
 */
#pragma once

struct vm;
struct announce;

/* The VM's announcement timers (NULL until the first), for hw/announce.c. */
struct announce **vm_announce_ptr(struct vm *vm);
/* The VM runs (again): owed rounds go out now. Under the VM's ctl_lock. */
void announce_resumed(struct announce *a);
/* vm_teardown, before the devices go, without ctl_lock. NULL is fine. */
void announce_free(struct announce *a);
