/*
 * tandemd.c - entry point of the daemon (docs/tandemd.md).
 */
#include "daemon.h"
#include "log.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void tandemd_usage(FILE *f)
{
	fprintf(f,
		"usage: tandemd -c FILE [--host NAME] [--role primary|standby]\n"
		"               [--log debug|info|warn|error]\n"
		"       tandemd -c FILE --check-config [--host NAME]\n"
		"One daemon per protected VM per host; FILE is the VM's config,\n"
		"identical on both hosts (docs/config.md).  --host picks this\n"
		"host's block (default: the system's host name).  --role primary\n"
		"starts the guest here; a standby (the default) waits for it.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "host", required_argument, NULL, 'H' },
		{ "role", required_argument, NULL, 'r' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "log", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct td_options o = { .role = REP_ROLE_NONE };
	enum log_level lvl;
	int c;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'H':
			o.host = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "primary") == 0)
				o.role = REP_ROLE_PRIMARY;
			else if (strcmp(optarg, "standby") == 0)
				o.role = REP_ROLE_STANDBY;
			else {
				fprintf(stderr, "tandemd: --role \"%s\": use "
					"primary or standby\n", optarg);
				return 2;
			}
			break;
		case 'k':
			o.check_only = true;
			break;
		case 'l':
			if (log_parse_level(optarg, &lvl) != 0) {
				fprintf(stderr, "tandemd: --log \"%s\": use "
					"debug, info, warn or error\n", optarg);
				return 2;
			}
			log_set_level(lvl);
			break;
		case 'h':
			tandemd_usage(stdout);
			return 0;
		default:
			tandemd_usage(stderr);
			return 2;
		}
	}
	if (o.config == NULL || optind != argc) {
		tandemd_usage(stderr);
		return 2;
	}
	return td_run(&o);
}
