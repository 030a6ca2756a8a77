#!/bin/sh
# test_kvstore.sh BUILD - the kvstore guest driven by Debian's real Redis
# clients (redis-cli, redis-benchmark) through the uvm stream device, with
# its log on the uvm block device.
#
#   every command against its expected reply, errors included
#   pipelining (redis-cli --pipe) and 50 concurrent clients (redis-benchmark)
#   malformed input: bad lengths, huge bulk length, garbage, half frames,
#     a client that never reads; the guest keeps serving others
#   durability: a fresh boot on the same disk replays the log
#   save -> restore in a new process while a client writes: every SET
#     acknowledged before the save is there after the restore, and the
#     restored guest's log replays to the same data set
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
T=$ROOT/$BUILD/tandem
G=$ROOT/build/guests/kvstore.elf
PORT=$((20000 + $$ % 20000))
IT_NAME=kv . "$(dirname "$0")/lib.sh"
cli() { redis-cli -p "$PORT" --no-raw "$@" 2>&1; }

# expect NAME EXPECTED ARGS... : one command, its reply as redis-cli prints it
expect() {
	name=$1; want=$2; shift 2
	got=$(cli "$@")
	if [ "$got" = "$want" ]; then ok "$name"; else
		bad "$name: got [$got], want [$want]"; fi
}

# boot NAME SNAPSHOT|- : start a guest (fresh, or restored), wait for PONG
boot() {
	name=$1; snap=$2
	if [ "$snap" = - ]; then
		"$T" vm run "$G" --disk "$W/disk" --disk-size 64M \
			--listen "127.0.0.1:$PORT" --control "$W/$name.sock" \
			--console "$W/$name.con" 2>"$W/$name.log" &
	else
		"$T" vm restore "$snap" --disk "$W/disk" \
			--listen "127.0.0.1:$PORT" --control "$W/$name.sock" \
			--console "$W/$name.con" 2>"$W/$name.log" &
	fi
	pid=$!
	pids="$pids $pid"
	for _ in $(seq 1 200); do
		[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.05
	done
	echo "guest $name did not answer PING"; cat "$W/$name.log" "$W/$name.con"
	return 1
}

stop() { # NAME: destroy the guest of that control socket
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

boot k1 - || { echo "0 passed, 1 failed"; exit 1; }

# ---- every command ----------------------------------------------------------
expect "PING" "PONG" PING
expect "PING msg" '"hello"' PING hello
expect "ECHO" '"hi there"' ECHO "hi there"
expect "SET" "OK" SET k1 v1
expect "GET" '"v1"' GET k1
expect "GET missing" "(nil)" GET nokey
expect "SET NX on existing" "(nil)" SET k1 other NX
expect "SET XX on missing" "(nil)" SET k2 other XX
expect "SET XX on existing" "OK" SET k1 v1b XX
expect "value after XX" '"v1b"' GET k1
expect "SET EX" "OK" SET tmp1 x EX 1
expect "SET PX" "OK" SET tmp2 y PX 200
expect "EXISTS" "(integer) 3" EXISTS k1 tmp1 tmp2 nokey
sleep 1.3
expect "EX expired" "(nil)" GET tmp1
expect "PX expired" "(nil)" GET tmp2
expect "INCR new" "(integer) 1" INCR ctr
expect "INCRBY" "(integer) 11" INCRBY ctr 10
expect "DECR" "(integer) 10" DECR ctr
expect "DECRBY" "(integer) 4" DECRBY ctr 6
expect "INCR non-integer" "(error) ERR value is not an integer or out of range" INCR k1
expect "MSET" "OK" MSET a 1 b 2
expect "MGET" "$(printf '1) "1"\n2) "2"\n3) (nil)')" MGET a b nokey
expect "DEL" "(integer) 2" DEL a b nokey
expect "DBSIZE" "(integer) 2" DBSIZE
check "INFO has server and keyspace fields" \
	"cli INFO | grep -q redis_version && cli INFO | grep -q 'db0:keys=2'"
expect "unknown command" \
	"(error) ERR unknown command 'FOO', with args beginning with: 'bar' " FOO bar
expect "wrong arity" \
	"(error) ERR wrong number of arguments for 'get' command" GET
expect "SELECT 0" "OK" SELECT 0
check "QUIT replies OK" "[ \"\$(printf 'QUIT\r\n' | timeout 5 nc -q1 127.0.0.1 $PORT | tr -d '\r')\" = +OK ]"
expect "FLUSHALL" "OK" FLUSHALL
expect "DBSIZE after FLUSHALL" "(integer) 0" DBSIZE

# ---- pipelining and concurrency ----------------------------------------------
for i in $(seq 1 2000); do
	key="pipe:$i"; val="val:$i"
	printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' \
		"${#key}" "$key" "${#val}" "$val"
done > "$W/pipe.resp"
check "pipelined 2000 SETs, no errors" \
	"redis-cli -p $PORT --pipe < '$W/pipe.resp' 2>&1 | grep -q 'errors: 0, replies: 2000'"
expect "pipelined keys are there" '"val:1234"' GET pipe:1234
check "redis-benchmark set,get,incr with 50 clients completes" \
	"timeout 120 redis-benchmark -p $PORT -c 50 -n 20000 -t set,get,incr -q > '$W/bench.out' 2>&1 && [ \$(grep -c 'requests per second' '$W/bench.out') -eq 3 ]"
check "pipelined redis-benchmark (-P 16) completes" \
	"timeout 120 redis-benchmark -p $PORT -c 50 -n 20000 -t set,get -P 16 -q > '$W/bench2.out' 2>&1 && [ \$(grep -c 'requests per second' '$W/bench2.out') -eq 2 ]"

# ---- malformed input -------------------------------------------------------------
garbage() { printf "$1" | timeout 5 nc -q1 127.0.0.1 "$PORT" 2>/dev/null | head -c 200; }
check "bad array length gets a protocol error" "garbage '*abc\r\n' | grep -q 'ERR Protocol error'"
check "negative bulk length gets a protocol error" "garbage '*1\r\n\$-5\r\n' | grep -q 'ERR Protocol error'"
check "huge bulk length gets a protocol error" "garbage '*1\r\n\$999999999999\r\n' | grep -q 'ERR Protocol error'"
head -c 65536 /dev/urandom > "$W/noise"
timeout 5 nc -q1 127.0.0.1 "$PORT" < "$W/noise" >/dev/null 2>&1
printf '*2\r\n$3\r\nGET\r\n$2\r\nk' | timeout 2 nc -q1 127.0.0.1 "$PORT" >/dev/null 2>&1
expect "still serving after garbage and half frames" "PONG" PING
# A client that sends many requests and never reads its replies.  (Each
# background subshell drops the EXIT trap, or it would clean up for us.)
( trap - EXIT INT TERM; for i in $(seq 1 20000); do printf 'PING\r\n'; done;
  sleep 5 ) | timeout 8 nc 127.0.0.1 "$PORT" >/dev/null 2>&1 &
hog=$!
sleep 0.5
check "others are served while a client never reads" \
	"timeout 3 redis-cli -p $PORT ping | grep -q PONG"
wait "$hog" 2>/dev/null

# ---- durability: a fresh boot replays the log -------------------------------------
expect "SET before restart" "OK" SET durable yes
expect "INCR before restart" "(integer) 5" INCRBY dctr 5
stop k1
boot k2 -
expect "SET survives a fresh boot (log replay)" '"yes"' GET durable
expect "INCR survives a fresh boot" '"5"' GET dctr

# ---- save -> restore while a client writes ------------------------------------------
( trap - EXIT INT TERM; for i in $(seq 1 20000); do echo "SET w:$i v:$i"; done ) |
	redis-cli -p "$PORT" > "$W/acks" 2>/dev/null &
writer=$!
timeout 60 redis-benchmark -p "$PORT" -c 10 -n 100000 -t set -r 10000 -q \
	>/dev/null 2>&1 &
bench=$!
sleep 1
check "saved while writes were in flight" \
	"'$T' vm save --control '$W/k2.sock' '$W/snap' --stop >/dev/null"
wait "$pid" 2>/dev/null
wait "$writer" 2>/dev/null
kill "$bench" 2>/dev/null
acked=$(grep -c '^OK$' "$W/acks")
echo "note: $acked SETs acknowledged before the save"
check "some SETs were acknowledged" "[ $acked -gt 0 ]"
boot k3 "$W/snap"
missing=0
for i in $(seq 1 "$acked"); do echo "GET w:$i"; done | redis-cli -p "$PORT" > "$W/gets"
i=0
while read -r line; do
	i=$((i + 1))
	[ "$line" = "v:$i" ] || missing=$((missing + 1))
done < "$W/gets"
check "every acknowledged SET is there after the restore ($missing missing)" "[ $missing -eq 0 ] && [ $i -eq $acked ]"
size1=$(redis-cli -p "$PORT" dbsize)
stop k3
boot k4 -
size2=$(redis-cli -p "$PORT" dbsize)
check "the restored guest's log replays to the same data set ($size1 keys, $size2 after replay)" \
	"[ '$size1' = '$size2' ]"
for i in $(seq 1 "$acked"); do echo "GET w:$i"; done | redis-cli -p "$PORT" > "$W/gets2"
check "replayed values equal the restored ones" "cmp -s '$W/gets' '$W/gets2'"
stop k4

finish
