/*
 * Foreground mode: see run-vm.h. Events arrive on VM threads; they are
 * printed there (stderr is line-atomic enough for one line per event) and
 * the control thread is woken through a pipe to look at the run state.
 *
 * Threads: run_vm_foreground() on the control thread; on_event() on any
 * VM thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/run-vm.h"
#include "vmmd/vm.h"

struct run_ctx {
	int wake[2];
};

static void on_event(void *opaque, struct vm *vm, const char *name, json_t *data)
{
	struct run_ctx *ctx = opaque;
	struct timespec ts;
	char *s;

	clock_gettime(CLOCK_REALTIME, &ts);
	json_object_set_new(data, "vm", json_string(vm_name(vm)));
	s = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
	fprintf(stderr, "event %s %s\n", name, s ? s : "{}");
	free(s);
	json_decref(data);
	if (write(ctx->wake[1], "e", 1) < 0) {
		/* The pipe is full: the control thread is awake anyway. */
	}
}

static bool finished(enum vm_run_state s)
{
	return s == VM_STATE_SHUTDOWN || s == VM_STATE_INTERNAL_ERROR ||
	       s == VM_STATE_GUEST_PANICKED || s == VM_STATE_IO_ERROR;
}

int run_vm_foreground(const char *json_path, const char *run_dir)
{
	_cleanup_(vm_config_freep) struct vm_config *cfg = NULL;
	_cleanup_(error_freep) struct error *err = NULL;
	struct run_ctx ctx = {.wake = {-1, -1}};
	struct vm_host host = {0};
	struct vm *vm = NULL;
	json_error_t jerr;
	json_t *def;
	sigset_t sigs, old;
	int sfd = -1, rc = 1;
	char *dir = NULL;

	def = json_load_file(json_path, JSON_REJECT_DUPLICATES, &jerr);
	if (!def) {
		log_error("%s:%d: %s", json_path, jerr.line, jerr.text);
		return 1;
	}
	if (vm_config_from_json(def, true, &cfg, &err) < 0) {
		log_error("%s: %s", json_path, err->msg);
		json_decref(def);
		return 1;
	}
	json_decref(def);

	if (!run_dir) {
		run_dir = ".";
	}
	if (asprintf(&dir, "%s/vms", run_dir) < 0) {
		return 1;
	}
	mkdir(run_dir, 0750);
	mkdir(dir, 0750);
	free(dir);

	if (pipe2(ctx.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("cannot create a pipe: %s", strerror(errno));
		return 1;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, &old);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0) {
		log_error("cannot create a signalfd: %s", strerror(errno));
		goto out;
	}

	host.run_dir = run_dir;
	host.event = on_event;
	host.opaque = &ctx;
	if (vm_new(cfg, &host, &vm, &err) < 0 || vm_start(vm, &err) < 0) {
		log_error("VM \"%s\": %s", cfg->name, err->msg);
		goto out;
	}
	fprintf(stderr, "vmmd: VM \"%s\" running (%u vCPUs, %" PRIu64 " MiB)\n", cfg->name,
		cfg->vcpus, cfg->memory >> 20);

	for (;;) {
		struct pollfd p[2] = {{.fd = ctx.wake[0], .events = POLLIN},
				      {.fd = sfd, .events = POLLIN}};
		char buf[64];

		if (finished(vm_get_state(vm))) {
			enum vm_run_state s = vm_get_state(vm);

			rc = s == VM_STATE_SHUTDOWN ? 0 : 1;
			fprintf(stderr, "vmmd: VM \"%s\" stopped: %s\n", cfg->name,
				vm_run_state_name(s));
			break;
		}
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			break;
		}
		while (read(ctx.wake[0], buf, sizeof(buf)) > 0) {
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				fprintf(stderr, "vmmd: %s: stopping VM \"%s\"\n",
					strsignal((int)si.ssi_signo), cfg->name);
			}
			rc = 0;
			break;
		}
	}
	fprintf(stderr, "vmmd: VM \"%s\": %" PRIu64 " exits to user space\n", cfg->name,
		vm_get_exit_count(vm));
out:
	vm_destroy(vm);
	if (sfd >= 0) {
		close(sfd);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(ctx.wake[0]);
	close(ctx.wake[1]);
	return rc;
}
