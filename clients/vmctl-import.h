/*
 * vmctl create --from-qemu / --from-libvirt: turn a QEMU command line or a
 * libvirt domain XML into a vmmd-vm(5) definition. Client-side only: the
 * daemon sees an ordinary vm-create. Single-threaded.
 */
#pragma once

#include <jansson.h>

#include "common/error.h"

/*
 * Map @args (a QEMU command line, shell-quoted, with or without the binary
 * name) to a definition. *ret_def gets the definition (may lack "name"),
 * *ret_unmapped an array of strings, one per option (with its argument)
 * or part of an option that has no vmmd equivalent, each with the reason.
 * Returns 0, or -errno with *errp for a command line that cannot be parsed
 * (unbalanced quotes, an option without its argument).
 */
int import_qemu(const char *args, json_t **ret_def, json_t **ret_unmapped, struct error **errp);

/* The same for a libvirt domain XML file @path (libxml2). */
int import_libvirt(const char *path, json_t **ret_def, json_t **ret_unmapped, struct error **errp);
