#!/bin/sh
# test_save_restore.sh BUILD - the `tandem vm` commands end to end, each
# guest in its own process:
#   pagetest: run -> save --stop -> check I4 -> restore in a new process ->
#             passes keep rising -> save again -> check I4
#   vecguest: run -> save -> restore in a new process -> vector checks keep
#             passing, no mismatch
#   mprotect dirty tracking chosen on the command line is reported
#   corrupt, truncated and foreign files are refused with a clear message
#   bad option values are refused naming the value
set -u
BUILD=${1:-build}
T=$(cd "$(dirname "$0")/../.." && pwd)/$BUILD/tandem
G=$(cd "$(dirname "$0")/../.." && pwd)/build/guests
IT_NAME=it . "$(dirname "$0")/lib.sh"

# start NAME ARGS... : run tandem in the background, wait for its socket
start() {
	name=$1; shift
	"$T" "$@" --control "$W/$name.sock" --console "$W/$name.con" \
		2>"$W/$name.log" &
	pids="$pids $!"
	for _ in $(seq 1 100); do
		[ -S "$W/$name.sock" ] && return 0
		sleep 0.05
	done
	echo "no control socket for $name"; cat "$W/$name.log"
	return 1
}

report_word() { # socket index
	"$T" vm status --control "$1" | sed 's/.*"report":\[\([^]]*\)\].*/\1/' |
		cut -d, -f$(($2 + 1))
}

wait_word_above() { # socket index value
	for _ in $(seq 1 200); do
		v=$(report_word "$1" "$2")
		[ -n "$v" ] && [ "$v" -gt "$3" ] && return 0
		sleep 0.05
	done
	return 1
}

# ---- pagetest across two restores ------------------------------------------------
start p1 vm run "$G/pagetest.elf" --cmdline "pages=2048 print=0"
wait_word_above "$W/p1.sock" 3 10
check "pagetest saved and stopped" \
	"'$T' vm save --control '$W/p1.sock' '$W/snap1' --stop >/dev/null"
sleep 0.2
check "saving process exited" "! [ -S '$W/p1.sock' ]"
check "I4 holds in the first snapshot" "'$T' vm check '$W/snap1' > '$W/check1.out'"
passes1=$(sed -n 's/^report: [0-9]* [0-9]* [0-9]* \([0-9]*\).*/\1/p' "$W/check1.out")
start p2 vm restore "$W/snap1"
check "restored pagetest keeps counting past $passes1" \
	"wait_word_above '$W/p2.sock' 3 $((passes1 + 5))"
check "second save" "'$T' vm save --control '$W/p2.sock' '$W/snap2' --stop >/dev/null"
check "I4 holds in the second snapshot" "'$T' vm check '$W/snap2' > '$W/check2.out'"
passes2=$(sed -n 's/^report: [0-9]* [0-9]* [0-9]* \([0-9]*\).*/\1/p' "$W/check2.out")
check "passes rose across the restore ($passes1 -> $passes2)" \
	"[ '$passes2' -gt '$passes1' ]"

# ---- vector registers across a restore ----------------------------------------------
start v1 vm run "$G/vecguest.elf" --cmdline "spin=20000"
wait_word_above "$W/v1.sock" 5 3
check "vecguest saved" "'$T' vm save --control '$W/v1.sock' '$W/vsnap' --stop >/dev/null"
checks1=$("$T" vm check "$W/vsnap" | sed -n 's/^report: [0-9]* [0-9]* [0-9]* [0-9]* [0-9]* \([0-9]*\).*/\1/p')
start v2 vm restore "$W/vsnap"
check "restored vecguest keeps checking past $checks1" \
	"wait_word_above '$W/v2.sock' 5 $((checks1 + 5))"
check "no vector register mismatch after restore" \
	"[ \"\$(report_word '$W/v2.sock' 6)\" = 0 ]"
"$T" vm save --control "$W/v2.sock" "$W/vsnap2" --stop >/dev/null

# ---- mprotect fallback chosen explicitly ------------------------------------------------
start m1 vm run "$G/pagetest.elf" --dirty mprotect --cmdline "pages=256 print=0"
check "mprotect tracking reported" \
	"'$T' vm status --control '$W/m1.sock' | grep -q '\"dirty\":\"mprotect\"'"
"$T" vm save --control "$W/m1.sock" "$W/msnap" --stop >/dev/null
check "mprotect guest's snapshot satisfies I4" "'$T' vm check '$W/msnap' >/dev/null"

# ---- refusing bad files ---------------------------------------------------------------------
size=$(stat -c %s "$W/snap1")
head -c $((size / 2)) "$W/snap1" > "$W/half"
check "truncated snapshot refused by restore" \
	"! '$T' vm restore '$W/half' 2>'$W/err1' && grep -q 'restore refused: $W/half' '$W/err1'"
cp "$W/snap1" "$W/flip"
printf '\377' | dd of="$W/flip" bs=1 seek=$((size / 3)) conv=notrunc 2>/dev/null
check "bit-flipped snapshot refused by check" \
	"'$T' vm check '$W/flip' 2>'$W/err2'; [ \$? -eq 2 ] && grep -q checksum '$W/err2'"
check "a non-snapshot file is refused" \
	"! '$T' vm restore '$G/pagetest.elf' 2>'$W/err3' && grep -qi magic '$W/err3'"

# ---- refusing bad option values ----------------------------------------------------------------
check "bad --mem value named" \
	"'$T' vm run '$G/pagetest.elf' --mem 12X 2>'$W/err4'; [ \$? -eq 2 ] && grep -q '\"12X\"' '$W/err4'"
check "bad --dirty value named" \
	"'$T' vm run '$G/pagetest.elf' --dirty fast 2>'$W/err5'; [ \$? -eq 2 ] && grep -q '\"fast\"' '$W/err5'"
check "unknown subcommand named" \
	"'$T' vm fly 2>'$W/err6'; [ \$? -eq 2 ] && grep -q '\"fly\"' '$W/err6'"

finish
