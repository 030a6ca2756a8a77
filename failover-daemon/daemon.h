/*
 * daemon.h - tandemd: one daemon per protected VM per host.
 *
 * The same program takes either role.  A primary runs the guest and its
 * checkpoint engine and connects out to the peer; a standby listens,
 * follows the primary's epochs and promotes when the primary is gone
 * (docs/tandemd.md has the role and peer state machines).
 */
#ifndef TANDEM_DAEMON_H
#define TANDEM_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "replicator.h"

struct td_options {
	const char *config;
	const char *host;        /* this host's name; NULL = hostname */
	enum rep_role role;      /* REP_ROLE_NONE: standby unless told */
	bool check_only;
};

/* Runs until SIGTERM/SIGINT or the guest's shutdown; returns the exit
 * status. */
int td_run(const struct td_options *o);

#endif
