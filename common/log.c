/*
 * log.c - stderr logger.  One write(2) per line, so lines from several
 * threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const log_names[] = { "error", "warn", "info", "debug" };
static int log_threshold = -1;

void log_set_level(enum log_level level)
{
	log_threshold = (int)level;
}

int log_parse_level(const char *name, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(name, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static int log_current_threshold(void)
{
	if (log_threshold < 0) {
		const char *env = getenv("TANDEM_LOG");
		enum log_level level = LOG_INFO;

		if (env != NULL)
			(void)log_parse_level(env, &level);
		log_threshold = (int)level;
	}
	return log_threshold;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if ((int)level > log_current_threshold())
		return;
	n = snprintf(line, sizeof(line), "tandem[%d]: %s: ", (int)getpid(),
		     log_names[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}
