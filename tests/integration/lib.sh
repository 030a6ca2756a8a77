# lib.sh - sourced by the integration scripts: a work directory, the
# background processes to reap, and the ok/bad/check/finish reporting that
# ends in the line "N passed, N failed".  Background subshells must drop
# the EXIT trap (`trap - EXIT INT TERM`) or they would clean up too.
W=$(mktemp -d "/tmp/tandem-${IT_NAME:-it}-XXXXXX")
pass=0
fail=0
pids=""
T0=$(date +%s)

cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

ok() { pass=$((pass + 1)); echo "ok: $1 (+$(($(date +%s) - T0)) s)"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1 (+$(($(date +%s) - T0)) s)"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

finish() {
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}
