/*
 * failover.h - the tandem command line: local VM commands, keys, and the
 * operator's commands to a protecting daemon (tandemd, daemon.h).
 */
#ifndef TANDEM_FAILOVER_H
#define TANDEM_FAILOVER_H

/* `tandem vm ...`: argv[0] is "vm".  Returns the process exit status. */
int vmctl_main(int argc, char **argv);
/* `tandem pki ...` (keys and certificates for links): argv[0] is "pki". */
int pkictl_main(int argc, char **argv);

/* `tandem status|protect|unprotect|set|failover|drill|failpoint ...`:
 * argv[0] is the command. */
int protectctl_main(int argc, char **argv);

#endif
