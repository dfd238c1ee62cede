/*
 * Two VMs in one process (as the daemon hosts them): A runs a guest that
 * abuses its virtio devices, B a well-behaved one. Usage:
 *   two-vms A.json B.json A-console A-marker B-console B-progress
 * Starts both, waits until A's console shows A-marker, then checks that B
 * is still running and keeps printing B-progress lines. Exit 0 if so, 1
 * otherwise (99 on a usage or set-up error).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "vmmd/vm.h"

static void on_event(void *opaque, struct vm *vm, const char *name, json_t *data)
{
	(void)opaque;
	fprintf(stderr, "event %s %s\n", vm_name(vm), name);
	json_decref(data);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f) {
		return strdup("");
	}
	buf = calloc(1, 1 << 20);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n > 0 ? n : 0] = '\0';
	fclose(f);
	return buf;
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;

	while ((hay = strstr(hay, needle))) {
		n++;
		hay++;
	}
	return n;
}

static struct vm *start(const char *path, const struct vm_host *host)
{
	struct vm_config *cfg = NULL;
	struct error *err = NULL;
	json_error_t jerr;
	struct vm *vm = NULL;
	json_t *def = json_load_file(path, 0, &jerr);

	if (!def || vm_config_from_json(def, true, &cfg, &err) < 0 ||
	    vm_new(cfg, host, &vm, &err) < 0 || vm_start(vm, &err) < 0) {
		fprintf(stderr, "%s: %s\n", path, err ? err->msg : jerr.text);
		exit(99);
	}
	json_decref(def);
	vm_config_free(cfg);
	return vm;
}

/* Wait up to @secs for @needle to appear @times in @console. */
static bool wait_for(const char *console, const char *needle, unsigned times, unsigned secs)
{
	unsigned i;

	for (i = 0; i < secs * 20; i++) {
		char *c = slurp(console);
		bool ok = count(c, needle) >= times;

		free(c);
		if (ok) {
			return true;
		}
		usleep(50000);
	}
	return false;
}

int main(int argc, char **argv)
{
	/* a run directory of its own (the VMs' sockets), removed at the end */
	char run[] = "/tmp/two-vms.XXXXXX", vms[sizeof(run) + 4];
	struct vm_host host = {.run_dir = run, .event = on_event};
	struct vm *a, *b;
	char *c;
	unsigned before;
	int rc = 1;

	if (argc != 7) {
		fprintf(stderr, "usage: %s A.json B.json A-console A-marker B-console B-progress\n",
			argv[0]);
		return 99;
	}
	if (!mkdtemp(run)) {
		perror("mkdtemp");
		return 99;
	}
	snprintf(vms, sizeof(vms), "%s/vms", run);
	a = start(argv[1], &host);
	b = start(argv[2], &host);
	if (!wait_for(argv[3], argv[4], 1, 120)) {
		fprintf(stderr, "VM A never printed '%s'\n", argv[4]);
		goto out;
	}
	c = slurp(argv[5]);
	before = count(c, argv[6]);
	free(c);
	if (vm_get_state(b) != VM_STATE_RUNNING) {
		fprintf(stderr, "VM B is %s\n", vm_run_state_name(vm_get_state(b)));
		goto out;
	}
	if (!wait_for(argv[5], argv[6], before + 2, 60)) {
		fprintf(stderr, "VM B made no progress after A finished\n");
		goto out;
	}
	printf("A finished its malicious rings; B kept running (%u progress lines at that time)\n",
	       before);
	rc = 0;
out:
	vm_destroy(a);
	vm_destroy(b);
	rmdir(vms);
	rmdir(run);
	return rc;
}
