/*
 * failover.h - the tandem command line.  This issue provides the local VM
 * commands; the protecting daemon (tandemd) arrives with its own issue.
 */
#ifndef TANDEM_FAILOVER_H
#define TANDEM_FAILOVER_H

/* `tandem vm ...`: argv[0] is "vm".  Returns the process exit status. */
int vmctl_main(int argc, char **argv);
/* `tandem pki ...` (keys and certificates for links): argv[0] is "pki". */
int pkictl_main(int argc, char **argv);

#endif
