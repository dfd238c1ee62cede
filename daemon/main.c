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
		     "      --run-vm FILE  run the VM defined in FILE until it stops (vmmd-vm(5))\n"
		     "  -h, --help       show this help and exit\n"
		     "  -V, --version    show the version and exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"run-vm", required_argument, NULL, 'R'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case 'R':
			return run_vm_foreground(optarg, NULL);
		case 'V':
			printf("vmmd %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return 2;
		}
	}
	fprintf(stderr, "vmmd: the daemon is not implemented yet\n");
	return EXIT_FAILURE;
}
