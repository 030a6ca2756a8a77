#!/bin/bash
# bench_protect.sh [--quick] - what protection costs a guest, and how long
# a failover takes, with two tandemd hosts on this machine (scripts/pair.sh:
# network namespaces as root, loopback ports otherwise).
#
#   1. kvstore under redis-benchmark (-c 50, SET and GET) from the client
#      side: unprotected (the same pair after `tandem unprotect`), then
#      protected in Remus mode at 10, 25, 50, 100 and 200 ms and in Kemari
#      mode.  Requests/s, p50 and p99 per test, the overhead against the
#      unprotected run, and the engine's own figures from `tandem status`:
#      checkpoints/s over the run, pause p50/p99, dirty pages and bytes
#      per epoch.
#   2. memstress (as fast as it can; 4 MiB and 64 MiB working sets): its
#      work rate, read from the guest's console (one "writes/s" line a
#      second, guest time = host CLOCK_MONOTONIC; tandem status does not
#      show the guest's report words), unprotected and then protected, back
#      to back at each of the same intervals.
#      The anchor printed beside 25 ms is Remus's published overhead at
#      40 checkpoints/s (Cully et al., NSDI 2008), quoted, not measured.
#   3. failover: kvstore protected (Remus, 50 ms); a client polls the
#      standby's stream address with PING from just before `kill -9` of
#      the primary's tandemd; the time from the kill to the first PONG,
#      beside the RTO the promoted daemon reports.
#
# Every configuration starts from a fresh engine (`tandem unprotect` then
# `tandem protect`, which makes a new session with a full copy), so the
# pause ring behind pause_p50_us/pause_p99_us holds only that run's pauses
# (and the full copy's closing checkpoint).  Prints tables; never fails on
# a timing.  Exits non-zero when something does not work (a pair that does
# not get protected, a benchmark that fails, no takeover).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
T=$ROOT/build/tandem
TD=$ROOT/build/tandemd
G=$ROOT/build/guests
QUICK=0
case "${1:-}" in
--quick) QUICK=1 ;;
"") ;;
*) echo "usage: benchmarks/bench_protect.sh [--quick]" >&2; exit 2 ;;
esac

for tool in redis-benchmark redis-cli; do
	command -v $tool >/dev/null || { echo "bench_protect: $tool missing (scripts/deps.sh)"; exit 1; }
done
for f in "$T" "$TD" "$G/kvstore.elf" "$G/memstress.elf"; do
	[ -e "$f" ] || { echo "bench_protect: $f missing: build first (make all)"; exit 1; }
done

W=$(mktemp -d /tmp/tandem-protbench-XXXXXX)
pids=""
# shellcheck source=../scripts/pair.sh
. "$ROOT/scripts/pair.sh"
cleanup() {
	local p
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	pair_down
	if [ -n "${KEEP:-}" ]; then echo "bench_protect: kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MODE=${PAIR_MODE:-loopback}
[ -z "${PAIR_MODE:-}" ] && [ "$(id -u)" = 0 ] && MODE=netns
pair_up "$MODE" || { echo "bench_protect: cannot set up the two hosts ($MODE)"; exit 1; }
SA=$W/alpha.sock
SB=$W/beta.sock
HA=${PAIR_STREAM_A%:*} PA=${PAIR_STREAM_A##*:}
HB=${PAIR_STREAM_B%:*} PB=${PAIR_STREAM_B##*:}
INTERVALS="10 25 50 100 200"
KEMARI_MS=100          # Kemari: the longest gap between checkpoints
FO_INTERVAL=50
FO_TRIALS=3
MS_LINES=4             # memstress: one-second rate lines, median
MS_CASES="wss=4M+print=1 wss=64M+print=1"
[ $QUICK = 1 ] && { FO_TRIALS=2; MS_LINES=1; }
status=0

get() { pair_json "$SA" "$1"; }
# "x.y" of a number, or "-" when empty
fmt() { [ -n "$1" ] && printf "%.${2:-1}f" "$1" || printf -- -; }
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# Start beta (standby) then alpha (primary) on $W/conf; wait until protected.
start_pair() {
	pair_stop_all
	rm -f "$W"/alpha.img "$W"/beta.img "$W"/alpha.console "$W"/beta.console
	pair_start b "$W/conf"
	pair_wait 10 "$SB" role standby || return 1
	pair_start a "$W/conf" primary
	pair_wait 30 "$SA" protect.state protected
}

# Protect (a new engine: a new session, a full copy) and wait until it is
# protected and past the full copy's closing checkpoint, whose pages and
# bytes (the whole copy) would otherwise be sampled.
protect_wait() {
	"$T" protect --control "$SA" >/dev/null || return 1
	pair_wait 30 "$SA" protect.state protected || return 1
	local end=$(($(date +%s) + 10)) c
	while :; do
		c=$(get protect.checkpoints)
		[ -n "$c" ] && [ "$c" -ge 3 ] && return 0
		[ "$(date +%s)" -gt "$end" ] && return 1
		sleep 0.05
	done
}

# A fresh engine at interval $1 ms in mode $2: set both on the running
# engine (the daemon keeps them in its config for the next one), then
# unprotect and protect.
reprotect() {
	"$T" set interval "$1" --control "$SA" >/dev/null || return 1
	"$T" set mode "$2" --control "$SA" >/dev/null || return 1
	"$T" unprotect --control "$SA" >/dev/null || return 1
	protect_wait
}

# Say why a step failed: the daemons' last words.
why() {
	echo "bench_protect: $1"
	tail -n 4 "$W/alpha.log" "$W/beta.log" 2>/dev/null | sed 's/^/    /'
	status=1
	return 1
}

# Sample last_epoch_pages and last_epoch_bytes every 0.2 s into $W/pages
# until sampler_stop, which prints their means.
sampler_start() {
	: >"$W/pages"
	(
		trap - EXIT INT TERM
		while :; do
			echo "$(get protect.last_epoch_pages) $(get protect.last_epoch_bytes)" >>"$W/pages"
			sleep 0.2
		done
	) &
	SAMPLER=$!
	pids="$pids $SAMPLER"
}
sampler_stop() {
	kill "$SAMPLER" 2>/dev/null
	wait "$SAMPLER" 2>/dev/null
	awk 'NF == 2 { p += $1; b += $2; n++ } END { if (n) printf "%.0f %.0f", p / n, b / n; else print "- -" }' "$W/pages"
}

# Engine figures for the run just measured, into ENG: "ckpt/s pause_p50_us
# pause_p99_us pages/epoch bytes/epoch".  eng_begin before the load,
# eng_end after it.
eng_begin() { C0=$(get protect.checkpoints); T0=$(now_us); sampler_start; }
eng_end() {
	local c1 t1 pb
	c1=$(get protect.checkpoints)
	t1=$(now_us)
	pb=$(sampler_stop)
	if [ -n "$C0" ] && [ -n "$c1" ]; then
		ENG="$(awk -v c="$((c1 - C0))" -v t="$((t1 - T0))" 'BEGIN { printf "%.1f", c * 1e6 / t }') $(get protect.pause_p50_us) $(get protect.pause_p99_us) $pb"
	else
		ENG="- - - - -"
	fi
}

hdr() {
	echo "== bench_protect: $1"
	echo "machine: nproc $(nproc), kernel $(uname -r), cpu \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\", hosts: $MODE"
}

# ---- 1. kvstore under redis-benchmark -------------------------------------
# N per run: the protected rates are about 50 clients / (k x interval), so
# N shrinks with the interval to keep each run a few seconds.
kv_n() { # $1 = interval ms, 0 = unprotected
	local n
	if [ "$1" = 0 ]; then n=100000; else n=$((100000 / $1)); fi
	[ $n -lt 500 ] && n=500
	[ $QUICK = 1 ] && n=$((n / 4))
	echo $n
}

# kv_run LABEL N: one redis-benchmark run; appends a row to $W/kv.rows:
# label n set_rps set_p50 set_p99 get_rps get_p50 get_p99 ENG
kv_run() {
	local label=$1 n=$2 out=$W/rb.csv
	eng_begin
	$(pair_ns c) redis-benchmark -h "$HA" -p "$PA" -t set,get -n "$n" -c 50 --csv >"$out" 2>"$W/rb.err"
	local rc=$?
	eng_end
	local set get
	set=$(tr -d '"' <"$out" | awk -F, '$1 == "SET" { print $2, $5, $7 }')
	get=$(tr -d '"' <"$out" | awk -F, '$1 == "GET" { print $2, $5, $7 }')
	if [ $rc -ne 0 ] || [ -z "$set" ] || [ -z "$get" ]; then
		echo "bench_protect: redis-benchmark failed for $label: $(head -c 300 "$W/rb.err")"
		status=1
		return 1
	fi
	echo "$label $n $set $get $ENG" >>"$W/kv.rows"
}

kv_bench() {
	: >"$W/kv.rows"
	# unprotected: the same running guest, its engine stopped
	"$T" unprotect --control "$SA" >/dev/null || { why "unprotect failed"; return 1; }
	[ "$(get protect.state)" = unprotected ] || { why "unprotect did not take"; return 1; }
	kv_run "unprotected" "$(kv_n 0)" || return 1
	protect_wait || { why "protect after the unprotected run: not protected"; return 1; }
	for i in $INTERVALS; do
		reprotect "$i" remus || { why "remus $i ms: not protected"; return 1; }
		kv_run "remus_${i}ms" "$(kv_n "$i")" || return 1
	done
	reprotect "$KEMARI_MS" kemari || { why "kemari: not protected"; return 1; }
	kv_run "kemari_(gap_${KEMARI_MS}ms)" "$(kv_n 10)" || return 1
}

kvstore() {
	hdr "kvstore under redis-benchmark -c 50 -t set,get, unprotected vs protected"
	echo "client: redis-benchmark -c 50 --csv from the client side to the primary's stream address $PAIR_STREAM_A"
	echo "kvstore: 64 MiB guest, 64 MiB disk (its log flushed before each reply); link: TLS 1.3 PSK, page codecs on"
	pair_config "$W/conf" mode=remus interval=25ms memory=64M disk_size=64M || return 1
	start_pair || { why "kvstore pair not protected"; pair_stop_all; return 1; }
	kv_bench || { status=1; pair_stop_all; return 1; }
	pair_stop_all

	printf '\n%-17s %6s %8s %7s %7s %8s %7s %7s %7s %7s %6s %7s %7s %6s %7s\n' config n \
		"SET/s" p50 p99 "GET/s" p50 p99 "SET" "GET" ckpt/s pause pause pages bytes
	printf '%-17s %6s %8s %7s %7s %8s %7s %7s %7s %7s %6s %7s %7s %6s %7s\n' "" "" "" ms ms "" ms ms \
		"ovh %" "ovh %" "" "p50 us" "p99 us" /epoch /epoch
	local u_set u_get
	read -r _ _ u_set _ _ u_get _ <"$W/kv.rows"
	while read -r label n srps s50 s99 grps g50 g99 ck p50 p99 pg by; do
		local so go
		so=$(awk -v u="$u_set" -v p="$srps" 'BEGIN { printf "%.0f", (u / p - 1) * 100 }')
		go=$(awk -v u="$u_get" -v p="$grps" 'BEGIN { printf "%.0f", (u / p - 1) * 100 }')
		[ "$label" = unprotected ] && so=- go=-
		printf '%-17s %6s %8.0f %7s %7s %8.0f %7s %7s %7s %7s %6s %7s %7s %6s %7s\n' \
			"${label//_/ }" "$n" "$srps" "$s50" "$s99" "$grps" "$g50" "$g99" "$so" "$go" \
			"$ck" "$p50" "$p99" "$pg" "$by"
	done <"$W/kv.rows"
	echo "ovh = unprotected requests/s / protected requests/s - 1 (extra time per request); ckpt/s over the run;"
	echo "pause p50/p99 from the engine (this engine's pauses only); pages, bytes: mean of last_epoch_* sampled every 0.2 s"
}

# ---- 2. memstress work rate ---------------------------------------------------
# Median of the next MS_LINES "writes/s" console lines (one a second),
# after skipping the first one that ends after this call (it straddles the
# switch).  The median, because other load on the machine comes in bursts.
ms_rate() {
	local f=$W/alpha.console start want end
	start=$(grep -c 'writes/s' "$f" 2>/dev/null)
	want=$((start + 1 + MS_LINES))
	end=$(($(date +%s) + MS_LINES + 15))
	while [ "$(grep -c 'writes/s' "$f")" -lt $want ]; do
		[ "$(date +%s)" -gt "$end" ] && return 1
		sleep 0.2
	done
	grep 'writes/s' "$f" | sed -n "$((start + 2)),${want}p" | awk '{ print $(NF - 1) }' |
		sort -n | awk '{ v[NR] = $1 } END { printf "%.0f", (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2 }'
}

# For each interval, back to back: the unprotected rate (engine stopped),
# then the rate protected at that interval (a fresh engine), so each
# protected figure has a baseline measured seconds before it.
ms_bench() { # $1 = rows file
	local ru rp i
	for i in $INTERVALS; do
		"$T" set interval "$i" --control "$SA" >/dev/null &&
			"$T" unprotect --control "$SA" >/dev/null || { why "set/unprotect failed"; return 1; }
		ru=$(ms_rate) || { why "no memstress console lines"; return 1; }
		protect_wait || { why "memstress remus $i ms: not protected"; return 1; }
		eng_begin
		rp=$(ms_rate) || { sampler_stop >/dev/null; why "no memstress console lines"; return 1; }
		eng_end
		echo "remus_${i}ms $ru $rp $ENG" >>"$1"
	done
}

# memstress_case CMDLINE: one working set at each interval.
memstress_case() {
	local cmd=$1 rows=$W/ms.rows
	echo
	echo "guest: memstress \"$cmd\" (as fast as it can), 128 MiB"
	pair_config "$W/conf" mode=remus interval=25ms image=memstress.elf memory=128M disk_size=0 || return 1
	sed -i "s|^vm = { |vm = { cmdline = \"$cmd\"; |" "$W/conf"
	start_pair || { why "memstress pair not protected"; pair_stop_all; return 1; }
	: >"$rows"
	ms_bench "$rows" || { status=1; pair_stop_all; return 1; }
	pair_stop_all

	printf '%-12s %10s %10s %6s %8s %6s %7s %7s %6s %9s\n' config "unprot" "protected" \
		"prot/" overhead ckpt/s pause pause pages bytes
	printf '%-12s %10s %10s %6s %8s %6s %7s %7s %6s %9s\n' "" "writes/s" "writes/s" "unprot" \
		% "" "p50 us" "p99 us" /epoch /epoch
	while read -r label ru rp ck p50 p99 pg by; do
		local of ov note=""
		of=$(awk -v u="$ru" -v p="$rp" 'BEGIN { printf "%.0f%%", p / u * 100 }')
		ov=$(awk -v u="$ru" -v p="$rp" 'BEGIN { printf "%.0f", (u / p - 1) * 100 }')
		[ "$label" = remus_25ms ] && note="  <- Remus (published): 100-225% at 40/s"
		printf '%-12s %10s %10s %6s %8s %6s %7s %7s %6s %9s%s\n' "${label//_/ }" "$ru" "$rp" "$of" \
			"$ov" "$ck" "$p50" "$p99" "$pg" "$by" "$note"
	done <"$rows"
}

memstress() {
	hdr "memstress work rate, unprotected vs protected (Remus)"
	echo "work rate: median of $MS_LINES one-second \"writes/s\" lines of the guest's console (guest clock ="
	echo "host CLOCK_MONOTONIC) after a settling second, unprotected and then protected, back to back"
	echo "for each interval; overhead = unprotected rate / protected rate - 1 (the extra run time for"
	echo "the same work, as Remus reports it).  Two working sets: 4 MiB, all of it dirty in every"
	echo "epoch at every interval here, and 64 MiB (90% of the writes to 10% of it), more than the"
	echo "engine can copy and send within these intervals."
	local c
	for c in $MS_CASES; do
		memstress_case "${c//+/ }"
	done
}

# ---- 3. failover time -------------------------------------------------------------
# Runs in the client's namespace: connect, PING, wait up to 20 ms for the
# reply; again after 2 ms until one comes.  Writes the reply's time (us).
probe_script='
host=$1 port=$2 out=$3 ready=$4 fifo=$5
mkfifo "$fifo" && exec 9<>"$fifo"
end=$((${EPOCHREALTIME%.*} + 30))
: >"$ready"
while [ "${EPOCHREALTIME%.*}" -lt $end ]; do
	if exec 3<>"/dev/tcp/$host/$port"; then
		printf "PING\r\n" >&3
		if read -r -t 0.02 -u 3 line && [[ $line == +PONG* ]]; then
			t=$EPOCHREALTIME
			echo "${t/./}" >"$out"
			exit 0
		fi
		exec 3>&-
	fi 2>/dev/null
	read -r -t 0.002 -u 9
done
exit 1'

failover() {
	hdr "failover: kill -9 of the primary's tandemd -> first reply from the standby"
	echo "kvstore protected in Remus mode at ${FO_INTERVAL} ms; heartbeat 50 ms x 4 misses (pair.sh), auto-promote"
	echo "client: connect + PING to the standby's stream address $PAIR_STREAM_B every ~2 ms (20 ms reply timeout)"
	pair_config "$W/conf" mode=remus interval=${FO_INTERVAL}ms memory=64M disk_size=16M || return 1
	printf '\n%-6s %14s %10s %16s %12s %14s\n' trial "kill->reply ms" "RTO ms" "primary silent" "resume us" "resumed epoch"
	local k sum=0 got=0
	for k in $(seq 1 $FO_TRIALS); do
		if ! start_pair; then
			echo "bench_protect: failover pair not protected"; status=1; continue
		fi
		sleep 1
		rm -f "$W/probe.out" "$W/probe.ready" "$W/probe.fifo"
		$(pair_ns c) bash -c "$probe_script" probe "$HB" "$PB" "$W/probe.out" \
			"$W/probe.ready" "$W/probe.fifo" &
		local probe=$!
		pids="$pids $probe"
		local w=0
		while [ ! -e "$W/probe.ready" ] && [ $w -lt 500 ]; do sleep 0.01; w=$((w + 1)); done
		local t0 t1
		# (stderr off: bash reports the killed job as "Killed")
		{
			t0=$(now_us)
			# shellcheck disable=SC2154 # set by pair_start (eval)
			kill -9 "$PAIR_PID_a"
			wait "$probe"
			wait "$PAIR_PID_a"
		} 2>/dev/null
		if [ ! -s "$W/probe.out" ]; then
			echo "bench_protect: trial $k: no reply from the standby within 30 s"; status=1
			continue
		fi
		t1=$(cat "$W/probe.out")
		pair_wait 5 "$SB" role primary || { echo "bench_protect: trial $k: standby not primary"; status=1; }
		local ms
		ms=$(awk -v d="$((t1 - t0))" 'BEGIN { printf "%.1f", d / 1000 }')
		printf '%-6s %14s %10s %16s %12s %14s\n' "$k" "$ms" "$(pair_json "$SB" failover.rto_ms)" \
			"$(pair_json "$SB" failover.primary_silent_ms)" "$(pair_json "$SB" failover.resume_us)" \
			"$(pair_json "$SB" failover.epoch)"
		sum=$((sum + t1 - t0)) got=$((got + 1))
		pair_stop_all
	done
	[ $got -gt 0 ] && echo "mean kill->reply: $(awk -v s=$sum -v n=$got 'BEGIN { printf "%.1f", s / n / 1000 }') ms over $got trials"
}

START=$(date +%s)
# ONLY=kvstore|memstress|failover runs one part; KEEP=1 keeps the work
# directory (logs, consoles, configs): both for debugging
for part in kvstore memstress failover; do
	[ -n "${ONLY:-}" ] && [ "$ONLY" != $part ] && continue
	$part
	echo
done
echo
echo "bench_protect: $(($(date +%s) - START)) s"
exit $status
