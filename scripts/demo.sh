#!/bin/bash
# demo.sh TANDEM - the main job, narrated: protect the kvstore guest on two
# hosts (network namespaces when root, loopback ports otherwise), drive it
# with redis-benchmark and a client that records every acknowledged write,
# kill the primary's tandemd mid-run (a drill), watch the standby take over,
# and print the drill report: epochs committed, acknowledged writes, lost
# writes (must be 0) and the recovery time.
set -u
T=${1:-build/tandem}
B=$(dirname "$T")
TD=$B/tandemd
HC=$B/tools/histclient
G=$(cd build/guests && pwd)
W=$(mktemp -d /tmp/tandem-demo-XXXXXX)
pids=""
. "$(dirname "$0")/pair.sh"
trap 'pair_down; for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$W"' EXIT INT TERM

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; tail -n 20 "$W"/alpha.log "$W"/beta.log >&2; exit 1; }

MODE=${PAIR_MODE:-loopback}
[ -z "${PAIR_MODE:-}" ] && [ "$(id -u)" = 0 ] && MODE=netns
say "1. two hosts on this machine ($MODE): alpha (primary) and beta (standby)"
pair_up "$MODE" || die "cannot set up $MODE hosts"
pair_config "$W/kv1.conf" mode=remus interval=50ms memory=64M disk_size=16M
"$TD" -c "$W/kv1.conf" --host alpha --check-config || die "config refused"
sed -n '1,6p' "$W/kv1.conf"

say "2. start tandemd on both; alpha runs the kvstore guest and copies it to beta"
pair_start b "$W/kv1.conf" standby
pair_wait 10 "$W/beta.sock" role standby || die "beta did not start"
pair_start a "$W/kv1.conf" primary
pair_wait 30 "$W/alpha.sock" protect.state protected || die "no protection"
"$T" status --control "$W/alpha.sock"
"$T" status --control "$W/beta.sock"

say "3. load: redis-benchmark against the protected guest (output held until each epoch commits)"
pair_on c redis-benchmark -h "${PAIR_STREAM_A%:*}" -p "${PAIR_STREAM_A#*:}" \
	-t set,get -n 4000 -c 20 -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second'

say "4. a client writing for ever, recording every acknowledged SET"
$(pair_ns c) "$HC" write --addr "$PAIR_STREAM_A,$PAIR_STREAM_B" --history "$W/hist" \
	--clients 4 --seconds 60 --timeout-ms 1000 --stop-file "$W/stop" \
	>"$W/load.out" 2>"$W/load.err" &
LOAD=$!
pids="$pids $LOAD"
sleep 2
"$T" status --control "$W/alpha.sock"

say "5. drill: kill alpha's tandemd (SIGKILL) right after it sends an epoch, before the ack"
"$T" drill --control "$W/beta.sock" --peer-control "$W/alpha.sock" --phase sent \
	>"$W/drill.out" 2>&1
drc=$?
cat "$W/drill.out"
sleep 1
touch "$W/stop"
wait "$LOAD"
tail -n 1 "$W/load.out"

say "6. after the failover: beta is primary; every acknowledged write must be there"
"$T" status --control "$W/beta.sock"
pair_on c "$HC" check --addr "$PAIR_STREAM_B" --history "$W/hist" >"$W/check.out" 2>&1
crc=$?
tail -n 1 "$W/check.out"

acked=$(grep -c ' ok$' "$W/hist")
lost=$(sed -n 's/.* lost \([0-9]*\) .*/\1/p' "$W/check.out")
say "drill report"
echo "  epochs committed before the kill: $(sed -n 's/.*committed before the kill: //p' "$W/drill.out")"
echo "  resumed from epoch:               $(pair_json "$W/beta.sock" failover.epoch)"
echo "  acknowledged writes:              $acked"
echo "  lost acknowledged writes:         ${lost:-?} (must be 0)"
echo "  recovery time (RTO):              $(pair_json "$W/beta.sock" failover.rto_ms) ms"
echo "  one live copy (I1):               $(sed -n 's/.*I1 exactly one live copy: //p' "$W/drill.out")"
[ $drc -eq 0 ] && [ $crc -eq 0 ] && [ "${lost:-1}" = 0 ] || die "the drill failed"
say "done: the guest survived the death of its host with no acknowledged write lost"
