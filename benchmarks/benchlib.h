/*
 * benchlib.h - helpers shared by the benchmark programs (bench_*.c): the
 * clock, the machine header every program prints first, the log level,
 * where the guest images are, sorting / median / percentile of timings
 * and option parsing.  Built into each benchmark with benchlib.c.
 */
#ifndef TANDEM_BENCHLIB_H
#define TANDEM_BENCHLIB_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);

/* Sleep for ns nanoseconds, resumed after a signal. */
void bench_sleep_ns(uint64_t ns);

/* "== title" and a "machine: ..." line (nproc, kernel, cpu model). */
void bench_print_machine(const char *title);

/* Log only warnings and errors, unless TANDEM_LOG says otherwise. */
void bench_quiet_logs(void);

/* The path of guest `name`'s ELF: $TANDEM_GUEST_DIR/name.elf, else
 * ../guests/name.elf next to this binary if readable, else
 * build/guests/name.elf. */
void bench_guest_path(const char *name, char *out, size_t len);

/* qsort comparison for uint64_t. */
int bench_cmp_u64(const void *a, const void *b);

/* Sorts v[0..n) in place (n > 0) and returns v[n / 2]. */
uint64_t bench_median(uint64_t *v, size_t n);

/* Nearest-rank p-th percentile of a sorted array (n > 0). */
uint64_t bench_pct(const uint64_t *sorted, size_t n, unsigned p);

/* A non-zero unsigned option value (strtoull base 0); on anything else
 * prints "prog: bad opt \"s\"" to stderr and exits 2. */
uint64_t bench_parse_u64(const char *prog, const char *opt, const char *s);

#endif
