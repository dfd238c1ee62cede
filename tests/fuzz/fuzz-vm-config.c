/*
 * libFuzzer target: VM definitions (hw/core/vm-config.c, vm-config-mem.c)
 * as a client's vm-create or vm-define gives them, JSON text parsed as the
 * daemon parses it. Besides memory safety it checks what the daemon relies
 * on: it keeps and writes the definition it accepted in its canonical form
 * (vm_config_to_json) and parses that file again at its next start, so the
 * canonical form must parse again, to the same canonical form; a copy
 * (vm_config_copy, as the registry makes for a start) must give it too.
 * A definition failing this would be a VM lost at the next restart.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "common/error.h"
#include "vmmd/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, json_t *canon, struct error *err)
{
	char *s = json_dumps(canon, JSON_SORT_KEYS);

	fprintf(stderr, "fuzz-vm-config: %s%s%s\n%s\n", what, err ? ": " : "", err ? err->msg : "",
		s ? s : "");
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *def = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	struct vm_config *cfg = NULL, *again = NULL, *copy = NULL;
	json_t *canon, *canon2, *canon3;
	struct error *err = NULL;

	if (!def) {
		return 0;
	}
	/* vm-create takes "start"; a definition file does not */
	if (vm_config_from_json(def, true, &cfg, &err) < 0) {
		error_free(err);
		json_decref(def);
		return 0;
	}
	json_decref(def);
	(void)vm_config_memory_total(cfg);
	(void)vm_config_device_memory_end(cfg);
	canon = vm_config_to_json(cfg);
	if (!canon) {
		abort();
	}
	if (vm_config_from_json(canon, false, &again, &err) < 0) {
		fail("the canonical form does not parse again", canon, err);
	}
	canon2 = vm_config_to_json(again);
	if (!json_equal(canon, canon2)) {
		fail("the canonical form changes when parsed again", canon, NULL);
	}
	if (vm_config_copy(cfg, &copy, &err) < 0) {
		fail("the copy failed", canon, err);
	}
	canon3 = vm_config_to_json(copy);
	if (!json_equal(canon, canon3)) {
		fail("the copy differs", canon, NULL);
	}
	json_decref(canon);
	json_decref(canon2);
	json_decref(canon3);
	vm_config_free(cfg);
	vm_config_free(again);
	vm_config_free(copy);
	return 0;
}
