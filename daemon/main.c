/*
 * vmmd: the hypervisor daemon's entry point. Parses the command line and
 * runs in the foreground. Control thread only.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/run-vm.h"

static void usage(FILE *out)
{
	fprintf(out, "Usage: vmmd [OPTION]...\n"
		     "Run the vmmd hypervisor daemon in the foreground.\n"
		     "\n"
		     "  -h, --help       show this help and exit\n"
		     "  -V, --version    show the version and exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"run-vm", required_argument, NULL, 'R'},
		{"run-dir", required_argument, NULL, 'D'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	const char *run_vm = NULL, *run_dir = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case 'R':
			run_vm = optarg;
			break;
		case 'D':
			run_dir = optarg;
			break;
		case 'V':
			printf("vmmd %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (run_vm) {
		return run_vm_foreground(run_vm, run_dir);
	}
	fprintf(stderr, "vmmd: the daemon is not implemented yet\n");
	return EXIT_FAILURE;
}
