#!/bin/sh
# bench_kvstore.sh [--quick] - the kvstore guest under redis-benchmark,
# beside a real redis-server measured in the same run on the same machine.
#
# Anchors: redis-server with appendfsync always (every write durable before
# its reply, like kvstore's log) and redis-server without persistence.
# Prints requests per second and p50/p99 latency for SET and GET, with 50
# clients, without and with pipelining (-P 16).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$ROOT/build/tandem
G=$ROOT/build/guests/kvstore.elf
N=100000
[ "${1:-}" = --quick ] && N=20000
W=$(mktemp -d /tmp/tandem-kvbench-XXXXXX)
BASE=$((30000 + $$ % 20000))
pids=""
trap 'for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$W"' EXIT INT TERM

for tool in redis-benchmark redis-server redis-cli; do
	command -v $tool >/dev/null || { echo "bench_kvstore: $tool missing (scripts/deps.sh)"; exit 1; }
done
[ -x "$T" ] && [ -f "$G" ] || { echo "bench_kvstore: build first (make all)"; exit 1; }

wait_port() {
	for _ in $(seq 1 200); do
		[ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.05
	done
	echo "bench_kvstore: nothing answers on port $1"; exit 1
}

echo "== bench_kvstore: kvstore guest vs redis-server, redis-benchmark -c 50 -n $N"
echo "machine: nproc $(nproc), kernel $(uname -r), cpu \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\", $(redis-server --version | cut -d' ' -f1-3)"

redis-server --port $((BASE + 1)) --save "" --appendonly yes --appendfsync always \
	--dir "$W" --daemonize no >/dev/null 2>&1 &
pids="$pids $!"
redis-server --port $((BASE + 2)) --save "" --appendonly no --dir "$W" \
	--daemonize no >/dev/null 2>&1 &
pids="$pids $!"
"$T" vm run "$G" --disk "$W/disk" --disk-size 256M --listen "127.0.0.1:$BASE" \
	--console "$W/con" 2>"$W/log" &
pids="$pids $!"
for p in $BASE $((BASE + 1)) $((BASE + 2)); do wait_port $p; done

printf '%-28s %-4s %-3s %12s %9s %9s\n' target test P rps p50_ms p99_ms
run() { # LABEL PORT PIPELINE
	redis-benchmark -p "$2" -c 50 -n "$N" -t set,get -P "$3" --csv 2>/dev/null |
	tail -n +2 | tr -d '"' |
	while IFS=, read -r test rps avg min p50 p95 p99 max; do
		printf '%-28s %-4s %-3s %12s %9s %9s\n' "$1" "$test" "$3" "$rps" "$p50" "$p99"
	done
}
for P in 1 16; do
	run "kvstore guest (uvm)" $BASE $P
	run "redis-server fsync always" $((BASE + 1)) $P
	run "redis-server no persistence" $((BASE + 2)) $P
done
