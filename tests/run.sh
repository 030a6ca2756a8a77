#!/bin/sh
# run.sh - run every test program of the normal and the sanitizer build and
# print one closing line "N passed, N failed" over all of them.
#
# Unit tests are cmocka programs; their "[  PASSED  ] n test(s)" and
# "[  FAILED  ] n test(s)" lines are summed.  Integration scripts print their
# own "N passed, N failed" line, which is summed too.  A program that dies
# without a summary counts as one failure.
set -u
cd "$(dirname "$0")/.."

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() { # $1 = label, rest = command
	label=$1; shift
	printf '== %s\n' "$label"
	"$@" >"$log" 2>&1
	status=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | tail -1)
	if [ -z "$p$f" ]; then
		line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
		p=${line%% passed*}
		f=$(echo "$line" | sed -n 's/.*, \([0-9][0-9]*\) failed$/\1/p')
	fi
	p=${p:-0}; f=${f:-0}
	if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	if [ "$f" -ne 0 ]; then
		cat "$log"
	else
		grep -E '^(\[  PASSED  \]|[0-9]+ passed|note:|seed)' "$log"
	fi
	passed=$((passed + p))
	failed=$((failed + f))
}

for build in build build/asan; do
	[ -d "$build/tests" ] || continue
	for t in "$build"/tests/test_*; do
		[ -x "$t" ] || continue
		count "$t" "$t"
	done
	for s in tests/integration/test_*.sh; do
		[ -x "$s" ] || continue
		count "$s ($build)" "$s" "$build"
	done
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
