#!/bin/sh
# run.sh - run every build/bench/bench_* with its usual arguments and print
# all of their output.  Builds nothing: run `make all` (or `make bench`)
# first.  Each program prints its own machine header.
#
#   benchmarks/run.sh           full runs (bench_dirty populates up to
#                               4 GiB and takes about a minute)
#   benchmarks/run.sh --quick   smoke run: fewer cycles, smaller sizes
#
# Exits non-zero if any benchmark did (a real error, e.g. a dirty fetch
# that missed or failed); timings themselves never fail a run.
set -u
cd "$(dirname "$0")/.." || exit 1

quick=0
case "${1:-}" in
--quick) quick=1 ;;
"") ;;
*) echo "usage: benchmarks/run.sh [--quick]" >&2; exit 2 ;;
esac

if ! ls build/bench/bench_* >/dev/null 2>&1; then
	echo "run.sh: no build/bench/bench_* programs; run 'make all' first" >&2
	exit 1
fi

args_for() { # $1 = program name
	if [ "$quick" -eq 1 ]; then
		case $1 in
		bench_hypercall) echo "--n 100000 --runs 1" ;;
		bench_pause) echo "--cycles 100" ;;
		bench_dirty) echo "--quick --trials 3" ;;
		bench_snapshot) echo "--mib 256 --reps 1" ;;
		bench_link) echo "--seconds 1 --streams 2" ;;
		bench_codec) echo "--quick --reps 1" ;;
		bench_checkpoint) echo "--seconds 1 --cycles 50" ;;
		*) echo "" ;;
		esac
	else
		case $1 in
		bench_hypercall) echo "--n 300000 --runs 3" ;;
		bench_pause) echo "--cycles 500 --run-ms 2" ;;
		bench_dirty) echo "--trials 10" ;;
		bench_snapshot) echo "--mib 1024 --reps 3" ;;
		bench_link) echo "--seconds 3 --streams 4" ;;
		bench_checkpoint) echo "--interval-ms 25 --seconds 3 --cycles 200" ;;
		*) echo "" ;;
		esac
	fi
}

echo "tandem benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')$( [ "$quick" -eq 1 ] && echo ', quick')"
status=0
for b in build/bench/bench_*; do
	[ -x "$b" ] || continue
	name=$(basename "$b")
	args=$(args_for "$name")
	echo
	echo "### $b $args"
	start=$(date +%s)
	# shellcheck disable=SC2086 # args is a word list on purpose
	"$b" $args
	rc=$?
	echo "### $name: exit $rc, $(( $(date +%s) - start )) s"
	[ "$rc" -eq 0 ] || status=1
done
for s in benchmarks/bench_*.sh; do
	[ -x "$s" ] || continue
	echo
	echo "### $s $( [ "$quick" -eq 1 ] && echo --quick)"
	# shellcheck disable=SC2046
	"$s" $( [ "$quick" -eq 1 ] && echo --quick)
	rc=$?
	echo "### $(basename "$s"): exit $rc"
	[ "$rc" -eq 0 ] || status=1
done
exit $status
