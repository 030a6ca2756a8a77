/*
 * errmsg.h - fill a caller's error buffer: the one way decoders and
 * parsers report what was wrong (the buffer may be NULL or empty).
 */
#ifndef TANDEM_ERRMSG_H
#define TANDEM_ERRMSG_H

#include <stddef.h>

void errmsg_set(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
