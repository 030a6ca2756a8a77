#!/bin/bash
# test_protect.sh - a protected VM under faults: two tandemd hosts (network
# namespaces as root, loopback otherwise), the kvstore guest driven by a
# Jepsen-style history client (tests/tools/histclient), and after each
# fault:
#   I1  exactly one live copy: the old primary is dead or passive, and its
#       stream address serves nobody;
#   I3  no output before its commit: every acknowledged SET is on the
#       standby that took over (histclient check: no LOST, no PHANTOM);
#   I4  pagetest's memory check on the standby's committed image;
#   and every acknowledged SET is still there after the standby's kvstore
#   replays its log from the standby's disk in a fresh boot.
# Faults: F1 (kill -9 the primary before, during and after an epoch's
# commit, by failpoint, and at a random moment), F7 (SIGSTOP past the
# timeout, then SIGCONT: the old primary sees the newer generation and
# stays passive), F10 (a replication connection reset mid-record), F11
# (bit flips in the stream), split risk without auto-promote, and Kemari
# mode through the same kills.
#
# Usage: tests/integration/test_protect.sh [BUILD_DIR]
set -u
IT_NAME=protect
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../../scripts/pair.sh"

B=${1:-build}
T=$B/tandem
TD=$B/tandemd
G=$(cd build/guests && pwd)
HC=${HISTCLIENT:-$B/tools/histclient}
FP=$B/tools/fault_proxy
MODE=${PAIR_MODE:-loopback}
[ -z "${PAIR_MODE:-}" ] && [ "$(id -u)" = 0 ] && MODE=netns
SEED=${SEED:-$$}
echo "test_protect: $MODE, seed $SEED"
RANDOM=$SEED

trap 'pair_down; cleanup' EXIT INT TERM
pair_up "$MODE" || { bad "set up the two hosts ($MODE)"; finish; exit 1; }

SA=$W/alpha.sock
SB=$W/beta.sock

# Start beta (standby) then alpha (primary); wait until protected.
start_pair() {
	rm -f "$W"/alpha.img "$W"/beta.img "$W"/hist "$W"/stop
	pair_start b "$W/conf"
	pair_wait 10 "$SB" role standby || return 1
	pair_start a "$W/conf" primary
	pair_wait 20 "$SA" protect.state protected
}

# Client load in the background (client side of the pair).
start_load() {
	rm -f "$W/stop"
	$(pair_ns c) "$HC" write --addr "$PAIR_STREAM_A,$PAIR_STREAM_B" \
		--history "$W/hist" --clients 4 --seconds 60 --timeout-ms 1000 \
		--stop-file "$W/stop" --seed "$SEED" >"$W/load.out" 2>"$W/load.err" &
	LOAD=$!
	pids="$pids $LOAD"
	sleep "${1:-1}"
}

stop_load() {
	touch "$W/stop"
	wait "$LOAD"
}

hist_ok() {
	pair_on c "$HC" check --addr "$1" --history "$W/hist" >"$W/check.out" 2>&1
	local rc=$?
	tail -1 "$W/check.out"
	[ $rc -eq 0 ] || grep -m5 'LOST\|PHANTOM' "$W/check.out"
	return $rc
}

acked() { grep -c ' ok$' "$W/hist" 2>/dev/null || echo 0; }

# Nothing serves on the old primary's stream address.  (A standby's
# replica binds it but answers nobody until it is promoted.)
old_silent() {
	[ "$(pair_on c timeout 2 redis-cli -h "${PAIR_STREAM_A%:*}" \
		-p "${PAIR_STREAM_A#*:}" PING 2>/dev/null)" != PONG ]
}

# The standby's disk in a fresh boot: every acked write still there.
replay_ok() {
	pair_stop_all
	$(pair_ns b) "$T" vm run "$G/kvstore.elf" --mem 64M --disk "$W/beta.img" \
		--listen "$PAIR_STREAM_B" --console "$W/replay.console" &
	local p=$!
	pids="$pids $p"
	sleep 1.5
	hist_ok "$PAIR_STREAM_B"
	local rc=$?
	kill "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return $rc
}

# I6: collect sanitizer reports from the daemons' logs before they go.
san_scan() {
	grep -h 'AddressSanitizer\|LeakSanitizer\|runtime error' "$W"/*.log >>"$W/san.txt" 2>/dev/null
	return 0
}

# ONLY=pattern runs the scenarios whose name matches (debugging).
want() { [ -z "${ONLY:-}" ] || [[ "$1" == *$ONLY* ]]; }

# One takeover scenario: NAME, config args, how to kill.
takeover() {
	local name=$1 kill=$2; shift 2
	want "$name" || return 0
	pair_config "$W/conf" "$@"
	if ! start_pair; then
		bad "$name: pair protected"; tail -n 5 "$W"/alpha.log "$W"/beta.log
		pair_stop_all; return
	fi
	start_load 1.5
	local before
	before=$(pair_json "$SB" replica.committed)
	case $kill in
	random) sleep 0.$((RANDOM % 10)); kill -9 "$PAIR_PID_a" ;;
	*) "$T" failpoint --control "$SA" --phase "$kill" >/dev/null ;;
	esac
	check "$name: standby takes over" "pair_wait 15 '$SB' role primary"
	sleep 1
	stop_load
	echo "  $(tail -1 "$W/load.out"), takeover at epoch $(pair_json "$SB" failover.epoch) (was $before), RTO $(pair_json "$SB" failover.rto_ms) ms"
	check "$name: I1 old primary gone" "! kill -0 $PAIR_PID_a 2>/dev/null && old_silent"
	check "$name: acknowledged writes survive (I3)" "[ \$(acked) -gt 0 ] && hist_ok '$PAIR_STREAM_B'"
	check "$name: and survive a log replay from the standby's disk" "replay_ok"
	pair_stop_all
}

# ---- F1: kill -9 the primary at each phase of the cycle ------------------
for ph in sending sent released; do
	takeover "F1 remus, kill at $ph" "$ph" mode=remus interval=50ms
done
takeover "F1 remus, kill -9 at a random moment" random mode=remus interval=20ms
for ph in sending released; do
	takeover "F1 kemari, kill at $ph" "$ph" mode=kemari interval=100ms
done
takeover "F1 hybrid, kill -9 at a random moment" random mode=hybrid interval=200ms

# ---- I4 on the standby with pagetest, then a failover -------------------
pair_config "$W/conf" image=pagetest.elf disk_size=0 interval=30ms
if ! want I4; then :
elif start_pair; then
	sleep 1
	n=0
	for i in 1 2 3 4 5; do
		"$T" check --control "$SB" >"$W/i4.out" 2>&1 && n=$((n + 1))
		sleep 0.2
	done
	cat "$W/i4.out"
	check "I4 holds on the standby's committed image (5 of 5)" "[ $n = 5 ]"
	kill -9 "$PAIR_PID_a"
	check "pagetest: standby takes over" "pair_wait 15 '$SB' role primary"
else
	bad "pagetest pair protected"
fi
pair_stop_all

# ---- F7: SIGSTOP the primary past the timeout, then SIGCONT --------------
pair_config "$W/conf" interval=50ms
if ! want F7; then :
elif start_pair; then
	start_load 1
	kill -STOP "$PAIR_PID_a"
	check "F7: standby promotes while the primary is stopped" "pair_wait 15 '$SB' role primary"
	kill -CONT "$PAIR_PID_a"
	check "F7: the old primary sees generation 2 and steps down" \
		"pair_wait 15 '$SA' role standby"
	check "F7: its guest is gone (I1)" "old_silent"
	check "F7: the new primary protects onto the old one" "pair_wait 20 '$SB' protect.state protected"
	stop_load
	check "F7: acknowledged writes survive (I3)" "hist_ok '$PAIR_STREAM_B'"
else
	bad "F7 pair protected"
fi
pair_stop_all

# ---- split risk: no auto-promote, both paths silent ----------------------
pair_config "$W/conf" auto=false
if ! want split; then :
elif start_pair; then
	start_load 1
	kill -9 "$PAIR_PID_a"
	check "no auto-promote: status says split risk" "pair_wait 10 '$SB' split_risk true"
	check "and the standby stays standby" "[ \$(pair_json '$SB' role) = standby ]"
	check "failover --force promotes it" "'$T' failover --control '$SB' --force && pair_wait 10 '$SB' role primary"
	stop_load
	check "split risk: acknowledged writes survive" "hist_ok '$PAIR_STREAM_B'"
	kill -TERM "$PAIR_PID_b"
	wait "$PAIR_PID_b"
	rc=$?
	check "SIGTERM stops the new primary cleanly (exit 0, got $rc)" "[ $rc = 0 ]"
else
	bad "split-risk pair protected"
fi
pair_stop_all

# ---- unprotect: the standby drops its replica and does not take over -----
pair_config "$W/conf" hb=no
if ! want unprotect; then :
elif start_pair; then
	check "unprotect" "'$T' unprotect --control '$SA'"
	sleep 1
	check "unprotect: no heartbeat path, yet the standby does not take over" \
		"[ \$(pair_json '$SB' role) = standby ] && [ \$(pair_json '$SB' replica.committed) = 0 ]"
	check "unprotect: the guest serves unprotected" \
		"[ \"\$(pair_on c timeout 2 redis-cli -h ${PAIR_STREAM_A%:*} -p ${PAIR_STREAM_A#*:} PING)\" = PONG ]"
	check "protect again: a full copy, then protected" \
		"'$T' protect --control '$SA' && pair_wait 20 '$SA' protect.state protected"
else
	bad "unprotect pair protected"
fi
pair_stop_all

# ---- planned switchover and back (failback), under load -------------------
pair_config "$W/conf" interval=50ms
if ! want switchover; then :
elif start_pair; then
	start_load 1
	check "switchover: tandem failover on the primary" "'$T' failover --control '$SA'"
	check "switchover: beta is primary" "pair_wait 10 '$SB' role primary"
	check "switchover: alpha is its standby, protected again" \
		"pair_wait 20 '$SA' role standby && pair_wait 30 '$SB' protect.state protected"
	check "switchover: and back (failback)" "'$T' failover --control '$SB' && pair_wait 10 '$SA' role primary"
	check "failback: beta protects alpha" "pair_wait 30 '$SA' protect.state protected"
	sleep 0.5
	stop_load
	check "switchover and back: acknowledged writes survive" "hist_ok '$PAIR_STREAM_A'"
else
	bad "switchover pair protected"
fi
pair_stop_all

# ---- F10 / F11: the replication link through a fault proxy (loopback) ----
# The proxy only relays on loopback; these run in host a's namespace (or
# on the machine's loopback), both hosts on 127.0.0.1.
proxied() {
	local name=$1 sec=$2 why=$3; shift 3
	want "$name" || return 0
	san_scan
	: >"$W/beta.log"; : >"$W/alpha.log"
	local base=$((30000 + ($$ * 11) % 20000))
	local save_a=$PAIR_REPL_A save_b=$PAIR_REPL_B save_sa=$PAIR_STREAM_A
	local save_sb=$PAIR_STREAM_B save_ha=$PAIR_HB_A save_hb=$PAIR_HB_B
	PAIR_REPL_A=127.0.0.1:$base PAIR_STREAM_A=127.0.0.1:$((base + 1))
	PAIR_STREAM_B=127.0.0.1:$((base + 2)) PAIR_HB_A=127.0.0.1:$((base + 3))
	PAIR_HB_B=127.0.0.1:$((base + 4))
	local real_b=127.0.0.1:$((base + 5))
	$(pair_ns a) "$FP" --listen 127.0.0.1:0 --connect "$real_b" --seed "$SEED" "$@" \
		>"$W/fp.out" 2>"$W/fp.err" &
	local fp=$!
	pids="$pids $fp"
	sleep 0.3
	local port
	port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$W/fp.out")
	pair_config "$W/conf" security="$sec" repl_b=127.0.0.1:$port listen_b="$real_b"
	local saved_netns=$PAIR_NETNS
	# both daemons and the client in host a's namespace
	[ "$PAIR_NETNS" = 1 ] && PAIR_ONE="${PAIR_P}a"
	local one=""
	[ -n "${PAIR_ONE:-}" ] && one="ip netns exec $PAIR_ONE"
	rm -f "$W"/alpha.img "$W"/beta.img "$W/hist" "$W/stop"
	$one "$TD" -c "$W/conf" --host beta >>"$W/beta.log" 2>&1 &
	PAIR_PID_b=$!; PAIR_PIDS="$PAIR_PIDS $!"; pids="$pids $!"
	pair_wait 10 "$SB" role standby
	$one "$TD" -c "$W/conf" --host alpha --role primary >>"$W/alpha.log" 2>&1 &
	PAIR_PID_a=$!; PAIR_PIDS="$PAIR_PIDS $!"; pids="$pids $!"
	$one "$HC" write --addr "$PAIR_STREAM_A" --history "$W/hist" --clients 4 \
		--seconds 60 --timeout-ms 1000 --stop-file "$W/stop" >"$W/load.out" 2>&1 &
	LOAD=$!; pids="$pids $LOAD"
	check "$name: the fault hits the link" "timeout 40 bash -c 'until grep -q \"cut\\|flipped\" \"$W/fp.err\"; do sleep 0.1; done'"
	sed -n 1,2p "$W/fp.err"
	check "$name: a host says why the link broke" \
		"timeout 10 bash -c 'until grep -q \"$why\" \"$W/alpha.log\" \"$W/beta.log\"; do sleep 0.1; done'"
	check "$name: the standby discards the broken epoch and both resume" \
		"pair_wait 20 '$SA' protect.state protected && [ \$(pair_json '$SB' replica.committed) -gt 0 ]"
	local c1
	c1=$(pair_json "$SB" replica.committed)
	sleep 1
	check "$name: epochs commit again after the fault" "[ \$(pair_json '$SB' replica.committed) -gt $c1 ]"
	check "$name: the standby kept its session (no full copy)" \
		"[ \$(grep -c 'new session: full copy' '$W/beta.log') = 1 ]"
	kill -9 "$PAIR_PID_a"
	check "$name: then a failover still loses nothing" "pair_wait 15 '$SB' role primary"
	touch "$W/stop"; wait "$LOAD"
	check "$name: acknowledged writes survive" "$one '$HC' check --addr '$PAIR_STREAM_B' --history '$W/hist' >'$W/check.out' 2>&1 || { tail -3 '$W/check.out'; false; }"
	kill "$fp" 2>/dev/null; wait "$fp" 2>/dev/null
	pair_stop_all
	PAIR_REPL_A=$save_a PAIR_REPL_B=$save_b PAIR_STREAM_A=$save_sa
	PAIR_STREAM_B=$save_sb PAIR_HB_A=$save_ha PAIR_HB_B=$save_hb
	PAIR_NETNS=$saved_netns
}
# connection 2 is the first link's page channel: cut it mid-record
proxied "F10 reset mid-record" psk "link lost" --flip-conn 2 --cut-after 3000017
proxied "F11 bit flips" insecure "checksum" --flip-conn 2 --flip-after 2500003

san_scan
check "I6: no sanitizer report from any daemon" "[ ! -s '$W/san.txt' ] || { head -5 '$W/san.txt'; false; }"
finish
