/*
 * config.h - the protection config of one VM: a libconfig file, identical
 * on both hosts (like a DRBD resource file), read by tandemd and by
 * `tandemd --check-config`.  docs/config.md is the reference.
 *
 * Every error names the file and line and quotes the bad value:
 *   "kv1.conf:12: protect.interval \"10 parsecs\": unknown unit (us, ms, s)"
 * A config that fails any check is refused whole: nothing is half-applied.
 * Relative paths in the file are taken relative to the file's directory.
 */
#ifndef TANDEM_CONFIG_H
#define TANDEM_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "transport.h"

#define TD_ADDR_MAX 128
#define TD_CONFIG_ERR_MAX 512

enum td_mode {
	TD_MODE_REMUS = 0,  /* timer epochs, output held until commit */
	TD_MODE_KEMARI = 1, /* sync when the guest notifies a device */
	TD_MODE_HYBRID = 2, /* timer, but sync early when output waits */
};

struct td_host {
	char name[TP_NAME_MAX];      /* link_name_ok() */
	char address[TD_ADDR_MAX];   /* replication link, HOST:PORT */
	char listen[TD_ADDR_MAX];    /* where this host binds it, when not
					address (NAT, a relay); or "" */
	char heartbeat[TD_ADDR_MAX]; /* second heartbeat path (UDP), or "" */
	char stream[TD_ADDR_MAX];    /* the guest's stream device, HOST:PORT */
	char control[108];           /* control socket path (sun_path) */
	char disk[PATH_MAX];         /* disk image on this host, or "" */
	char cert[PATH_MAX];         /* security "cert": this host's */
	char key[PATH_MAX];
	char console[PATH_MAX];      /* guest console log, or "" (discard) */
	int line;                    /* line of the host's block */
};

struct td_config {
	char path[PATH_MAX];
	/* vm */
	char vm_name[TP_NAME_MAX];
	char backend[8];             /* "uvm" (default) or "xen" */
	char image[PATH_MAX];        /* uvm: the guest program */
	char xl_config[PATH_MAX];    /* xen: the domain's xl config */
	uint64_t mem_bytes;          /* default 256 MiB */
	unsigned vcpus;              /* default 1 */
	char cmdline[256];
	uint64_t disk_bytes;         /* 0: no disk */
	/* protect */
	enum td_mode mode;           /* default remus */
	uint32_t interval_us;        /* 1 ms .. 60 s, default 100 ms */
	uint32_t output_bound_us;    /* hybrid: default 10 ms */
	bool compress;               /* page codecs; default true */
	/* failover */
	uint32_t hb_interval_ms;     /* 10 ms .. 10 s, default 100 ms */
	unsigned hb_misses;          /* 2 .. 100, default 5 */
	bool auto_promote;           /* promote when every path is silent */
	/* link */
	enum tp_security security;   /* default cert */
	char ca[PATH_MAX];
	char psk_hex[2 * TP_PSK_MAX + 1];
	/* the pair */
	struct td_host host[2];
};

/* Parse and check the whole file.  0, or -EINVAL/-ENOENT/... with a
 * "file:line: ..." message in err. */
int td_config_load(const char *path, struct td_config *cfg, char *err,
		   size_t errlen);

/* Which host block is this host: `name`, or when NULL the system's host
 * name.  0 and *self set, or -ENOENT with a message listing the names. */
int td_config_self(const struct td_config *cfg, const char *name, int *self,
		   char *err, size_t errlen);

/* Parse "100ms", "2s", "500us" (a bare number is milliseconds) and
 * "256M", "64MiB", "1G", "4096" (bytes).  -EINVAL on a bad unit or value,
 * -ERANGE on overflow. */
int td_parse_duration_us(const char *s, uint64_t *out);
int td_parse_size(const char *s, uint64_t *out);

const char *td_mode_name(enum td_mode mode);
int td_mode_parse(const char *s, enum td_mode *out);

/* Fill a transport config for the link from host `self` to the other. */
int td_config_link(const struct td_config *cfg, int self,
		   struct tp_config *tp, char *err, size_t errlen);

#endif
