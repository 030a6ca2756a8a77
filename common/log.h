/*
 * log.h - one logging interface for every tandem module.
 *
 * Lines go to stderr as "tandem[pid]: level: message".  The level threshold
 * comes from log_set_level() or the TANDEM_LOG environment variable
 * (error, warn, info, debug).  Nothing per page is logged above debug.
 */
#ifndef TANDEM_LOG_H
#define TANDEM_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
int log_parse_level(const char *name, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
