/*
 * xen_run.c - run one of Xen's tools (xl, ip, tc) with an argv, never a
 * shell, and keep what it printed for the error message.
 */
#include "xen_int.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void xen_argv_str(char *const argv[], char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned i = 0; argv[i] != NULL && off + 1 < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%s", i ? " " : "",
				 argv[i]);

		if (n < 0)
			break;
		off += (size_t)n;
	}
}

static size_t xen_drain(int fd, char *out, size_t outlen)
{
	size_t got = 0;
	char sink[512];

	for (;;) {
		char *dst = got + 1 < outlen ? out + got : sink;
		size_t room = got + 1 < outlen ? outlen - 1 - got : sizeof(sink);
		ssize_t n = read(fd, dst, room);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (dst != sink)
			got += (size_t)n;
	}
	if (outlen > 0)
		out[got] = '\0';
	return got;
}

int xen_run(char *const argv[], char *out, size_t outlen)
{
	return xen_run_ex(argv, out, outlen, false);
}

/* Children start with no signal blocked and SIGPIPE, SIGINT, SIGTERM,
 * SIGHUP at their defaults, whatever the daemon does with them. */
static void xen_spawn_attr(posix_spawnattr_t *at)
{
	sigset_t none, dfl;

	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGHUP);
	posix_spawnattr_init(at);
	posix_spawnattr_setsigmask(at, &none);
	posix_spawnattr_setsigdefault(at, &dfl);
	posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK |
				     POSIX_SPAWN_SETSIGDEF);
}

int xen_run_ex(char *const argv[], char *out, size_t outlen, bool quiet)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	char cmd[256], scratch[1024];
	int pfd[2], status, rc;
	pid_t pid;

	if (out == NULL || outlen == 0) {
		out = scratch;
		outlen = sizeof(scratch);
	}
	xen_argv_str(argv, cmd, sizeof(cmd));
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	xen_spawn_attr(&at);
	rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (rc != 0) {
		close(pfd[0]);
		log_error("xen: cannot run \"%s\": %s", cmd, strerror(rc));
		return -rc;
	}
	xen_drain(pfd[0], out, outlen);
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (quiet)
		return -EIO;
	log_error("xen: \"%s\" failed (%s %d): %s", cmd,
		  WIFEXITED(status) ? "exit" : "signal",
		  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
		  out);
	return -EIO;
}

int xen_spawn(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	pid_t pid;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	xen_spawn_attr(&at);
	rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		log_error("xen: cannot run %s: %s", argv[0], strerror(rc));
	return -rc;
}
