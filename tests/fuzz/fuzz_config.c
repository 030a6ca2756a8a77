/*
 * fuzz_config.c - libFuzzer harness for the protection config loader
 * (failover-daemon/config.c, over libconfig): any file must end in a clean
 * load or a "file:line: ..." error, with a zeroed config, never a crash.
 *
 * libconfig 1.5 leaks inside its lexer on some syntax errors (not ours),
 * so leak detection is off for this harness.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct td_config cfg, zero;
	char err[TD_CONFIG_ERR_MAX];
	FILE *f;
	int rc;

	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/fuzz-config-%d.conf", getpid());
	f = fopen(path, "w");
	if (f == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	rc = td_config_load(path, &cfg, err, sizeof(err));
	if (rc != 0 && (memcmp(&cfg, &zero, sizeof(cfg)) != 0 || err[0] == '\0'))
		abort(); /* a refused config must leave nothing and say why */
	if (rc == 0) {
		int self;

		(void)td_config_self(&cfg, cfg.host[0].name, &self, err,
				     sizeof(err));
	}
	return 0;
}
