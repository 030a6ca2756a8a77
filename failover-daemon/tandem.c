/*
 * tandem.c - entry point of the `tandem` command.
 */
#include "failover.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static void tandem_usage(FILE *f)
{
	fprintf(f,
		"usage: tandem vm run IMAGE [options]     run a guest image\n"
		"       tandem vm restore FILE [options]  resume a saved guest\n"
		"       tandem vm save --control SOCK FILE [--stop]\n"
		"       tandem vm status|pause|unpause --control SOCK\n"
		"       tandem vm check FILE              inspect a snapshot, check I4\n"
		"       tandem pki init|host|psk|show ... keys and certificates for links\n"
		"       tandem status --control SOCK [--json | --get FIELD.PATH]\n"
		"       tandem protect|unprotect --control SOCK\n"
		"       tandem set interval MS|mode remus|kemari|hybrid --control SOCK\n"
		"       tandem failover --control SOCK --force  promote the standby\n"
		"       tandem migrate --control PRIMARY_SOCK [--peer-control SOCK]\n"
		"                    [--timeout S]  live-migrate the guest to the\n"
		"         standby host (planned switchover); this host becomes\n"
		"         its standby\n"
		"       tandem check --control STANDBY_SOCK   I4 on the replica (pagetest)\n"
		"       tandem failpoint --control PRIMARY_SOCK --phase P  die at P\n"
		"       tandem drill --control STANDBY_SOCK [--phase P]\n"
		"                    [--peer-control PRIMARY_SOCK] [--timeout S]\n"
		"         kill the primary at phase P (paused, sending, sent,\n"
		"         acked, released) and report the takeover\n"
		"run/restore options: --mem SIZE --vcpus N --cmdline STR\n"
		"       --control SOCK --dirty auto|uffd-wp|mprotect\n"
		"       --pause-bound USEC --console FILE|- --log LEVEL\n"
		"       --disk FILE [--disk-size SIZE] --listen HOST:PORT\n");
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "vm") == 0)
		return vmctl_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "pki") == 0)
		return pkictl_main(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "status") == 0 ||
			  strcmp(argv[1], "protect") == 0 ||
			  strcmp(argv[1], "unprotect") == 0 ||
			  strcmp(argv[1], "set") == 0 ||
			  strcmp(argv[1], "failover") == 0 ||
			  strcmp(argv[1], "drill") == 0 ||
			  strcmp(argv[1], "migrate") == 0 ||
			  strcmp(argv[1], "failpoint") == 0 ||
			  strcmp(argv[1], "check") == 0))
		return protectctl_main(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 ||
			  strcmp(argv[1], "--help") == 0 ||
			  strcmp(argv[1], "help") == 0)) {
		tandem_usage(stdout);
		return 0;
	}
	if (argc >= 2)
		fprintf(stderr, "tandem: unknown command \"%s\"\n", argv[1]);
	tandem_usage(stderr);
	return 2;
}
