/*
 * ctlsock.c - the local JSON control socket (see ctlsock.h).
 */
#include "ctlsock.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_SERVE_TIMEOUT_MS 5000

static int ctl_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (path == NULL || strlen(path) >= sizeof(sa->sun_path)) {
		fprintf(stderr, "tandem: control socket path \"%s\" is missing "
			"or longer than %zu bytes\n", path ? path : "",
			sizeof(sa->sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

int ctl_listen(const char *path)
{
	struct sockaddr_un sa;
	int fd, rc = ctl_addr(path, &sa);

	if (rc != 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 16) != 0) {
		rc = -errno;
		fprintf(stderr, "tandem: control socket %s: %s\n", path,
			strerror(-rc));
		close(fd);
		return rc;
	}
	chmod(path, 0600);
	return fd;
}

ssize_t ctl_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t len = 0;

	while (len + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len) != NULL)
			break;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

struct json_object *ctl_reply_error(const char *fmt, ...)
{
	struct json_object *r = json_object_new_object();
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(r, "ok", json_object_new_boolean(0));
	json_object_object_add(r, "error", json_object_new_string(msg));
	return r;
}

struct json_object *ctl_reply_ok(void)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(1));
	return r;
}

void ctl_serve_one(int lfd,
		   struct json_object *(*handle)(void *arg, const char *line),
		   void *arg)
{
	char line[CTL_LINE_MAX];
	struct json_object *r;
	const char *out;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (ctl_read_line(fd, line, sizeof(line), CTL_SERVE_TIMEOUT_MS) <= 0)
		r = ctl_reply_error("no request within %d ms, or longer than "
				    "%d bytes", CTL_SERVE_TIMEOUT_MS,
				    CTL_LINE_MAX - 1);
	else
		r = handle(arg, line);
	out = json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN);
	(void)!write(fd, out, strlen(out));
	(void)!write(fd, "\n", 1);
	json_object_put(r);
	close(fd);
}

int ctl_request(const char *path, const char *req, char *buf, size_t cap,
		int timeout_ms)
{
	struct sockaddr_un sa;
	int fd, rc = ctl_addr(path, &sa);
	ssize_t n;

	if (rc != 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	(void)!write(fd, req, strlen(req));
	(void)!write(fd, "\n", 1);
	n = ctl_read_line(fd, buf, cap, timeout_ms);
	close(fd);
	if (n <= 0)
		return n < 0 ? (int)n : -ECONNRESET;
	return 0;
}

int ctl_signalfd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_CLOEXEC);
}
