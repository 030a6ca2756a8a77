#!/bin/sh
# bench_xen.sh - tandem against Xen's own tools on real Xen, in one boot of
# the nested test bed (tests/xen/, about 10 minutes under emulation):
#
#   guest slowdown: pagetest passes/s of a PVH domU unprotected, under
#   `xl remus -i 100` and under tandem at 100 ms epochs (both replicating
#   to localhost in the same dom0);
#   live migration: `xl migrate` to localhost against `tandem migrate`
#   (total time, and the longest gap a client polling the domU's TCP
#   service every 0.2 s saw).
#
# The anchors (unprotected rate, xl remus, xl migrate) are measured in the
# same run as tandem's figures.  Needs root; prints the table, records
# nothing by itself (copy it into benchmarks/RESULTS.md with this command).
set -eu
cd "$(dirname "$0")/.."
tests/xen/build.sh
rc=0
tests/xen/run.sh bench.sh || rc=$?
S=build/xen-run/bench/results/steps.txt
[ -f "$S" ] || { echo "bench_xen: no results" >&2; exit 1; }
v() { awk -v k="$1" '$1 == k { print $2 }' "$S" | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.1fx", a / b; else print "-" }'; }
base=$(v rate-unprotected)
echo
echo "guest slowdown at 100 ms epochs (pagetest passes/s; higher is better)"
printf "  %-22s %10s %10s %12s\n" "" "passes/s" "slowdown" "ckpts/s"
printf "  %-22s %10s %10s %12s\n" "unprotected" "${base:--}" "1.0x" "-"
printf "  %-22s %10s %10s %12s\n" "xl remus -i 100" "$(v rate-xl-remus)" "$(ratio "$base" "$(v rate-xl-remus)")" "$(v ckpts-xl-remus)"
printf "  %-22s %10s %10s %12s\n" "tandem (remus mode)" "$(v rate-tandem)" "$(ratio "$base" "$(v rate-tandem)")" "$(v ckpts-tandem)"
echo
echo "live migration to localhost (seconds)"
printf "  %-22s %10s %12s\n" "" "total" "client gap"
printf "  %-22s %10s %12s\n" "xl migrate" "$(v xl-migrate-total)" "$(v xl-migrate-gap)"
printf "  %-22s %10s %12s\n" "tandem migrate" "$(v tandem-migrate-total)" "$(v tandem-migrate-gap)"
echo "  (tandem's guest was already protected, its pre-copy done:"
echo "   $(v tandem-start-to-protected) s from tandemd start to protected)"
exit $rc
