/*
 * expect_msg.h - for cmocka unit tests: a refusal's rc and message.
 * Include after <cmocka.h>.
 */
#ifndef TANDEM_EXPECT_MSG_H
#define TANDEM_EXPECT_MSG_H

#include <stdarg.h>
#include <string.h>

/* Fail at file:line unless rc is want_rc and err holds every fragment of
 * the NULL-terminated list ap (what: the call, for the failure message). */
static inline void expect_msg_v(const char *file, int line, const char *what,
				int rc, int want_rc, const char *err,
				va_list ap)
{
	const char *frag;

	if (rc != want_rc) {
		print_error("%s: rc %d, want %d (%s)\n", what, rc, want_rc, err);
		_fail(file, line);
	}
	while ((frag = va_arg(ap, const char *)) != NULL)
		if (strstr(err, frag) == NULL) {
			print_error("message \"%s\" lacks \"%s\"\n", err, frag);
			_fail(file, line);
		}
}

#endif
