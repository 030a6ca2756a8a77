/*
 * benchlib.c - helpers shared by the benchmark programs (see benchlib.h).
 */
#include "benchlib.h"

#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL),
			       .tv_nsec = (long)(ns % 1000000000ULL) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void bench_print_machine(const char *title)
{
	struct utsname u;
	char line[512], model[256] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
			snprintf(model, sizeof(model), "%s", colon + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (f != NULL)
		fclose(f);
	if (uname(&u) != 0)
		memset(&u, 0, sizeof(u));
	printf("== %s\n", title);
	printf("machine: nproc %ld, kernel %s %s %s, cpu \"%s\"\n",
	       sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine,
	       model);
}

void bench_quiet_logs(void)
{
	if (getenv("TANDEM_LOG") == NULL)
		log_set_level(LOG_WARN);
}

void bench_guest_path(const char *name, char *out, size_t len)
{
	const char *env = getenv("TANDEM_GUEST_DIR");
	char exe[PATH_MAX];
	ssize_t n;

	if (env != NULL) {
		snprintf(out, len, "%s/%s.elf", env, name);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash != NULL) {
			*slash = '\0';
			snprintf(out, len, "%s/../guests/%s.elf", exe, name);
			if (access(out, R_OK) == 0) {
				char *real = realpath(out, NULL);

				if (real != NULL)
					snprintf(out, len, "%s", real);
				free(real);
				return;
			}
		}
	}
	snprintf(out, len, "build/guests/%s.elf", name);
}

int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t bench_median(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(v[0]), bench_cmp_u64);
	return v[n / 2];
}

uint64_t bench_pct(const uint64_t *sorted, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;

	return sorted[rank == 0 ? 0 : rank - 1];
}

uint64_t bench_parse_u64(const char *prog, const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || v == 0) {
		fprintf(stderr, "%s: bad %s \"%s\"\n", prog, opt, s);
		exit(2);
	}
	return v;
}
