/*
 * Running VMs across `systemctl restart vmmd` (docs/upgrade.md): on SIGTERM
 * under systemd, each VM is paused, its device and vCPU state captured, its
 * disks flushed and unlocked, and its guest RAM (the VM's own memfd, or a
 * copy of anonymous RAM in a new memfd), tap fds and a state record are
 * handed to systemd's fd store (FDSTORE=1). systemd keeps them across a
 * restart (not across a stop) and passes them to the next vmmd, which
 * rebuilds each VM from them and resumes it where it was. Control thread.
 */
#pragma once

#include <stdbool.h>

#include "common/error.h"
#include "daemon/registry.h"

/*
 * Hand @rv's VM to the fd store; @ran: it was running before the shutdown
 * paused it (the next daemon resumes it). The VM is destroyed afterwards
 * as usual, whatever the outcome; on failure nothing is stored for it.
 */
int keep_vm(struct registry_vm *rv, bool ran, struct error **errp);
/* After every store: wait until systemd has taken them (before exiting). */
void keep_flush(void);
/*
 * At startup, before autostart: rebuild every VM the previous daemon kept
 * (their fds came in LISTEN_FDS) on workers; each resumes if it ran. What
 * cannot be restored is logged and closed; its VM stays off.
 * Returns the number of VMs being restored.
 */
unsigned keep_restore(struct registry *reg);
