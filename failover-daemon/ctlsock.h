/*
 * ctlsock.h - the local control socket: one JSON object per line each way,
 * one request per connection.  Used by `tandem vm` sessions, tandemd, and
 * the `tandem` client commands.
 */
#ifndef TANDEM_CTLSOCK_H
#define TANDEM_CTLSOCK_H

#include <stddef.h>
#include <sys/types.h>

#define CTL_LINE_MAX 8192

struct json_object;

/* Bind and listen on path (replacing a stale socket), mode 0600.
 * Returns the fd or -errno (message on stderr). */
int ctl_listen(const char *path);
/* Read up to a newline within timeout_ms; returns the length or -errno. */
ssize_t ctl_read_line(int fd, char *buf, size_t cap, int timeout_ms);
/* Accept one connection on lfd, read its request, call handle, write the
 * reply.  handle returns a new reference. */
void ctl_serve_one(int lfd,
		   struct json_object *(*handle)(void *arg, const char *line),
		   void *arg);
/* Send req to the socket at path and read the reply into buf.  0 or
 * -errno (message on stderr naming the socket). */
int ctl_request(const char *path, const char *req, char *buf, size_t cap,
		int timeout_ms);
/* Block SIGINT, SIGTERM and SIGHUP, ignore SIGPIPE, and return a
 * signalfd for the three (a daemon's main loop polls it). */
int ctl_signalfd(void);
/* {"ok":false,"error":"..."} and {"ok":true} */
struct json_object *ctl_reply_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
struct json_object *ctl_reply_ok(void);

#endif
