/*
 * Foreground mode: run one VM from a definition file until it stops
 * (vmmd --run-vm FILE). Control thread only.
 */
#pragma once

/*
 * Read the VM definition at @json_path, build and start the VM, print its
 * events to stderr, and return when the guest shuts down, the VM stops
 * with an error, or SIGINT/SIGTERM arrives. @run_dir may be NULL (".").
 * Returns an exit status: 0 after a guest shutdown or a signal, 1 if the
 * VM could not be built or stopped on an error.
 */
int run_vm_foreground(const char *json_path, const char *run_dir);
