#!/bin/sh
# test_histclient.sh BUILD - the history client (tests/tools/histclient.c)
# against a real redis-server, without any VM:
#
#   the RESP reply parser (histclient selftest); usage errors exit 2
#   write 2 s with 4 clients, then check: passes
#   tampering: a bogus value (PHANTOM), an older acknowledged value and a
#     deleted key (LOST) make check fail; restoring the value passes again
#   hand-written histories: every rule of the checker (later maybe,
#     earlier maybe, failed writes, nil) and malformed lines (exit 2, FILE:LINE)
#   a paused server (timeouts: maybe) and killed connections (reconnects)
#   failover between two addresses (two fault_proxy relays to one server)
#   a scripted server sending malformed replies (python3, when present)
#   --count, --stop-file, SIGTERM, no server at all
#
# The binaries default to the build's; HISTCLIENT=... and FAULT_PROXY=...
# point the test at others.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
HC=${HISTCLIENT:-$ROOT/$BUILD/tools/histclient}
FP=${FAULT_PROXY:-$ROOT/$BUILD/tools/fault_proxy}
IT_NAME=hist . "$(dirname "$0")/lib.sh"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	bad "redis-server and redis-cli are installed (scripts/deps.sh)"
	finish; exit 1
fi
if [ ! -x "$HC" ]; then
	bad "histclient is built: $HC"
	finish; exit 1
fi

# Start a redis-server of our own on a free port in 20000..20999: a port
# another server holds makes ours exit, and INFO names our pid.
RPORT=
p=$((20000 + $$ % 1000))
for _ in $(seq 1 40); do
	redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize no >"$W/redis.log" 2>&1 &
	rpid=$!
	for _ in $(seq 1 100); do
		kill -0 "$rpid" 2>/dev/null || break
		if redis-cli -p "$p" INFO server 2>/dev/null |
			grep -q "^process_id:$rpid"; then
			RPORT=$p
			break
		fi
		sleep 0.05
	done
	[ -n "$RPORT" ] && break
	kill -9 "$rpid" 2>/dev/null
	wait "$rpid" 2>/dev/null
	p=$((20000 + (p - 20000 + 37) % 1000))
done
if [ -z "$RPORT" ]; then
	bad "redis-server starts on a free port"; cat "$W/redis.log"
	finish; exit 1
fi
pids="$pids $rpid"
ADDR=127.0.0.1:$RPORT
cli() { redis-cli -p "$RPORT" "$@"; }
# A port nothing should listen on.
DEAD=127.0.0.1:$((20000 + (RPORT - 20000 + 500) % 1000))

# summary FILE FIELD: the number after FIELD in the summary line of FILE
summary() { sed -n "s/^histclient.*[: ]$2 \([0-9][0-9]*\).*/\1/p" "$1" | tail -1; }
# each_client FILE TEXT: every client 0..3 logged "client N: TEXT"
each_client() {
	for c in 0 1 2 3; do
		grep -Eq "^histclient: [0-9]+\.[0-9]{9} client $c: $2" "$1" || return 1
	done
}

# ---- parser and command line ------------------------------------------------------
check "selftest: the RESP reply parser on good, partial and malformed replies" \
	'"$HC" selftest >"$W/self.out" 2>&1'

# usage NAME WORD ARGS...: exit 2 and the message names WORD
usage() {
	name=$1; word=$2; shift 2
	"$HC" "$@" >"$W/usage.out" 2>&1
	rc=$?
	if [ "$rc" -eq 2 ] && grep -q -- "$word" "$W/usage.out"; then ok "usage: $name"
	else bad "usage: $name: exit $rc, $(head -1 "$W/usage.out")"; fi
}
usage "no --addr" --addr write --history "$W/u"
usage "no --history" --history write --addr "$ADDR"
usage "--clients 0" --clients write --addr "$ADDR" --history "$W/u" --clients 0
usage "--clients abc" --clients write --addr "$ADDR" --history "$W/u" --clients abc
usage "--timeout-ms -5" --timeout-ms write --addr "$ADDR" --history "$W/u" --timeout-ms -5
usage "--seconds 0" --seconds write --addr "$ADDR" --history "$W/u" --seconds 0
usage "--count x" --count write --addr "$ADDR" --history "$W/u" --count x
usage "--prefix with a space" --prefix write --addr "$ADDR" --history "$W/u" --prefix "a b"
usage "port 99999" "127.0.0.1:99999" write --addr 127.0.0.1:99999 --history "$W/u"
usage "address without a port" "nohost" write --addr nohost --history "$W/u"
usage "empty address in the list" "--addr" write --addr "$ADDR," --history "$W/u"
usage "unknown option" "--bogus" write --addr "$ADDR" --history "$W/u" --bogus 1
usage "write-only option to check" "--clients" check --addr "$ADDR" --history "$W/u" --clients 2
usage "unknown mode" "verify-order" verify-order
"$HC" write --addr "$ADDR" --history "$W/no/such/dir/h" --count 1 >/dev/null 2>&1
rc=$?
check "an unwritable history file: exit 1" '[ $rc -eq 1 ]'

# ---- a clean run -------------------------------------------------------------------
"$HC" write --addr "$ADDR" --history "$W/h1" --clients 4 --seconds 2 --seed 1 \
	>"$W/w1.out" 2>"$W/w1.err"
rc=$?
ops=$(summary "$W/w1.out" ops)
check "write 2 s, 4 clients: exit 0 and a summary line" \
	'[ $rc -eq 0 ] && grep -Eq "^histclient: ops [0-9]+ ok [0-9]+ fail [0-9]+ maybe [0-9]+ reconnects [0-9]+$" "$W/w1.out" && [ "${ops:-0}" -gt 100 ]'
check "every op acknowledged, none failed or in doubt, no reconnects" \
	'[ "$(summary "$W/w1.out" ok)" = "$ops" ] && [ "$(summary "$W/w1.out" maybe)" = 0 ] && [ "$(summary "$W/w1.out" fail)" = 0 ] && [ "$(summary "$W/w1.out" reconnects)" = 0 ]'
check "one history line per op, 7 fields, 4 clients x 64 keys" \
	'[ "$(wc -l <"$W/h1")" -eq "$ops" ] && awk "NF != 7 || \$7 != \"ok\" || \$6 < \$5 { exit 1 }" "$W/h1" && [ "$(cut -d" " -f3 "$W/h1" | sort -u | wc -l)" -eq 256 ]'
check "keys and values: h:CLIENT:SEQ%64 and CLIENT.SEQ.HEX" \
	'awk "{ split(\$4, v, \".\"); if (\$3 != \"h:\" \$2 \":\" (v[2] % 64) || v[1] != \$2 || length(v[3]) != 16) exit 1 }" "$W/h1"'
"$HC" check --addr "$ADDR" --history "$W/h1" >"$W/c1.out" 2>&1
rc=$?
check "check after a clean run: exit 0, keys 256, lost 0 phantom 0" \
	'[ $rc -eq 0 ] && grep -q "^histclient check: keys 256 ok-writes $ops lost 0 phantom 0 maybe-resolved 0$" "$W/c1.out"'

# ---- tampering ------------------------------------------------------------------------
# last KEY [N]: the value of KEY's last ok write, or the N-th from last
last() { awk -v k="$1" '$3 == k && $7 == "ok" { print $4 }' "$W/h1" | tail -"${2:-1}" | head -1; }
A0=$(last h:0:0)
A0OLD=$(last h:0:0 2)
A1=$(last h:1:0)

# verdict NAME WANT_RC PATTERN [HISTORY]: check's exit status and one line
verdict() {
	"$HC" check --addr "$ADDR" --history "${4:-$W/h1}" >"$W/v.out" 2>&1
	rc=$?
	if [ "$rc" -eq "$2" ] && grep -q -- "$3" "$W/v.out"; then ok "$1"
	else bad "$1: exit $rc, want $2 and [$3]:"; cat "$W/v.out"; fi
}
cli SET h:0:0 bogus >/dev/null
verdict "a bogus value: PHANTOM, exit 1" 1 "^PHANTOM h:0:0 expected $A0 got bogus "
check "  ...and only that key" '[ "$(grep -c "^PHANTOM\|^LOST" "$W/v.out")" -eq 1 ] && grep -q "lost 0 phantom 1" "$W/v.out"'
cli SET h:0:0 "$A0" >/dev/null
verdict "the acknowledged value restored: exit 0" 0 "lost 0 phantom 0"
cli SET h:0:0 "$A0OLD" >/dev/null
verdict "an older acknowledged value: LOST, exit 1" 1 "^LOST h:0:0 expected $A0 got $A0OLD "
cli SET h:0:0 "$A0" >/dev/null
cli DEL h:1:0 >/dev/null
verdict "a deleted acknowledged key: LOST, exit 1" 1 "^LOST h:1:0 expected $A1 got nil"
check "  ...and only that key" '[ "$(grep -c "^PHANTOM\|^LOST" "$W/v.out")" -eq 1 ] && grep -q "lost 1 phantom 0" "$W/v.out"'
cli SET h:1:0 "a b" >/dev/null
verdict "a value with a space is printed escaped" 1 "^PHANTOM h:1:0 expected $A1 got a\\\\x20b "
cli SET h:1:0 "$A1" >/dev/null

# ---- every rule, on a hand-written history ------------------------------------------------
# Lines out of order on purpose: the checker orders a key's ops by time.
cat >"$W/s.hist" <<'EOF'
1 0 s:0:0 v1 100 200 ok
2 0 s:0:0 v2 300 400 maybe
4 1 s:1:0 w2 300 400 ok
3 1 s:1:0 w1 100 200 maybe
5 2 s:2:0 x1 100 200 maybe
6 3 s:3:0 y1 100 200 fail
7 4 s:4:0 z1 100 200 fail
8 5 s:5:0 u1 100 200 ok
9 5 s:5:0 u2 300 400 fail
10 6 s:6:0 t1 100 200 maybe
11 6 s:6:0 t2 300 400 maybe
12 7 s:7:0 r1 100 200 ok
13 7 s:7:0 r2 300 400 ok
EOF
cli SET s:0:0 v2 >/dev/null     # a later maybe applied: fine
cli SET s:1:0 w1 >/dev/null     # an earlier maybe over the ok write: LOST
cli DEL s:2:0 >/dev/null        # only a maybe, nothing there: fine
cli SET s:3:0 y1 >/dev/null     # a failed write's value: PHANTOM
cli DEL s:4:0 >/dev/null        # only a failed write, nothing there: fine
cli SET s:5:0 u2 >/dev/null     # a failed write after the ok one: PHANTOM
cli SET s:6:0 t1 >/dev/null     # no ok write, an earlier maybe: fine
cli SET s:7:0 r1 >/dev/null     # the older of two ok writes: LOST
"$HC" check --addr "$ADDR" --history "$W/s.hist" >"$W/s.out" 2>&1
rc=$?
check "rules: exit 1 and the summary counts" \
	'[ $rc -eq 1 ] && grep -q "^histclient check: keys 8 ok-writes 5 lost 2 phantom 2 maybe-resolved 2$" "$W/s.out"'
check "rules: an earlier maybe over the last ok write is LOST" \
	'grep -q "^LOST s:1:0 expected w2 got w1 " "$W/s.out"'
check "rules: an older ok write is LOST" 'grep -q "^LOST s:7:0 expected r2 got r1 " "$W/s.out"'
check "rules: a failed write's value is PHANTOM (with and without an ok write)" \
	'grep -q "^PHANTOM s:3:0 expected nil got y1 (the value of a failed write" "$W/s.out" && grep -q "^PHANTOM s:5:0 expected u1 got u2 (the value of a failed write" "$W/s.out"'
check "rules: nothing else is reported" '[ "$(grep -c "^PHANTOM\|^LOST" "$W/s.out")" -eq 4 ]'
cli SET s:1:0 w2 >/dev/null
cli DEL s:3:0 >/dev/null
cli SET s:5:0 u1 >/dev/null
cli SET s:7:0 r2 >/dev/null
verdict "rules: the allowed values pass" 0 "keys 8 ok-writes 5 lost 0 phantom 0 maybe-resolved 2" "$W/s.hist"
cli SET s:2:0 x1 >/dev/null
cli SET s:4:0 never >/dev/null
verdict "rules: a value never written is PHANTOM" 1 "^PHANTOM s:4:0 expected nil got never (never written" "$W/s.hist"
cli DEL s:4:0 >/dev/null

# ---- malformed histories: exit 2 naming FILE:LINE ----------------------------------------------
# malformed NAME LINE3 [WANT_LINE]: s.hist's first 2 lines, then LINE3
malformed() {
	head -2 "$W/s.hist" >"$W/m.hist"
	printf '%b' "$2" >>"$W/m.hist"
	"$HC" check --addr "$ADDR" --history "$W/m.hist" >"$W/m.out" 2>&1
	rc=$?
	if [ "$rc" -eq 2 ] && grep -q "$W/m.hist:${3:-3}: malformed" "$W/m.out"; then
		ok "malformed history: $1"
	else bad "malformed history: $1: exit $rc: $(cat "$W/m.out")"; fi
}
malformed "6 fields" '3 1 k:1 a 1 2\n'
malformed "8 fields" '3 1 k:1 a 1 2 ok x\n'
malformed "bad result" '3 1 k:1 a 1 2 okay\n'
malformed "non-numeric time" '3 1 k:1 a 1x 2 ok\n'
malformed "negative time" '3 1 k:1 a -1 2 ok\n'
malformed "end before start" '3 1 k:1 a 5 2 ok\n'
malformed "two spaces" '3 1 k:1  a 1 2 ok\n'
malformed "a tab" '3 1 k:1\ta 1 2 ok\n'
malformed "CRLF line end" '3 1 k:1 a 1 2 ok\r\n'
malformed "an empty line" '\n'
malformed "a last line without newline (truncated)" '3 1 k:1 a 1 2 ok'
malformed "op_id out of range" '99999999999999999999999 1 k:1 a 1 2 ok\n'
malformed "duplicate op_id" '1 1 k:1 a 1 2 ok\n'
malformed "one key, two clients" '3 9 s:0:0 a 500 600 ok\n'
malformed "overlapping ops on one key" '3 0 s:0:0 a 350 500 ok\n'
"$HC" check --addr "$ADDR" --history "$W/missing.hist" >/dev/null 2>&1
rc=$?
check "a missing history file: exit 1" '[ $rc -eq 1 ]'
"$HC" check --addr "$DEAD" --history "$W/s.hist" >"$W/dead.out" 2>&1
rc=$?
check "check with no address answering: exit 1" \
	'[ $rc -eq 1 ] && grep -q "no address answered" "$W/dead.out"'
verdict "check uses the first address that answers" 0 "lost 0 phantom 0" "$W/h1"
"$HC" check --addr "$DEAD,$ADDR" --history "$W/h1" >"$W/v.out" 2>&1
rc=$?
check "  ...skipping a dead first address" '[ $rc -eq 0 ] && grep -q "lost 0 phantom 0" "$W/v.out"'

# ---- timeouts and killed connections ---------------------------------------------------
cli FLUSHALL >/dev/null
( trap - EXIT INT TERM
  sleep 0.7; cli CLIENT PAUSE 1000 WRITE >/dev/null
  sleep 1.5; cli CLIENT KILL TYPE normal >/dev/null ) &
"$HC" write --addr "$ADDR" --history "$W/h2" --seconds 3 --timeout-ms 300 \
	--prefix p >"$W/w2.out" 2>"$W/w2.err"
rc=$?
wait $!
check "a paused server: the timed-out SETs are maybe" \
	'[ $rc -eq 0 ] && [ "$(summary "$W/w2.out" maybe)" -ge 4 ] && grep -q "no reply within 300 ms" "$W/w2.err" && [ "$(grep -c " maybe$" "$W/h2")" = "$(summary "$W/w2.out" maybe)" ]'
check "killed connections: every client reconnects, logged with the time" \
	'[ "$(summary "$W/w2.out" reconnects)" -ge 4 ] && each_client "$W/w2.err" "reconnected to $ADDR"'
check "writes go on after the pause: ok ops at the end of the history" \
	'[ "$(tail -20 "$W/h2" | grep -c " ok$")" -gt 10 ]'
verdict "check after timeouts and kills: exit 0" 0 "lost 0 phantom 0" "$W/h2"

# ---- failover from one address to another ----------------------------------------------------
if [ -x "$FP" ]; then
	"$FP" --listen 127.0.0.1:0 --connect "$ADDR" >"$W/p1.out" 2>"$W/p1.err" &
	fp1=$!
	"$FP" --listen 127.0.0.1:0 --connect "$ADDR" >"$W/p2.out" 2>"$W/p2.err" &
	fp2=$!
	pids="$pids $fp1 $fp2"
	for _ in $(seq 1 100); do
		[ -s "$W/p1.out" ] && [ -s "$W/p2.out" ] && break
		sleep 0.05
	done
	read -r _ _ _ A1P _ <"$W/p1.out"
	read -r _ _ _ A2P _ <"$W/p2.out"
	( trap - EXIT INT TERM
	  sleep 1; kill -TERM "$fp1"; sleep 1; kill -USR1 "$fp2" ) &
	"$HC" write --addr "$A1P,$A2P" --history "$W/h3" --seconds 3 \
		--prefix f >"$W/w3.out" 2>"$W/w3.err"
	rc=$?
	wait $!
	check "failover: the first address goes away, every client moves to the second" \
		'[ $rc -eq 0 ] && each_client "$W/w3.err" "reconnected to $A2P"'
	check "failover: a reset on the second address, every client reconnects again" \
		'[ "$(summary "$W/w3.out" reconnects)" -ge 8 ]'
	"$HC" check --addr "$A1P,$A2P" --history "$W/h3" >"$W/v.out" 2>&1
	rc=$?
	check "failover: check through the surviving address passes" \
		'[ $rc -eq 0 ] && grep -q "lost 0 phantom 0" "$W/v.out"'
	kill "$fp2" 2>/dev/null
else
	bad "fault_proxy is built: $FP"
fi

# ---- malformed replies from a scripted server ------------------------------------------------
if command -v python3 >/dev/null; then
	cat >"$W/fake.py" <<'EOF'
# One reply per SET, in this order, on whatever connection asks.
import socket, time
replies = [b"+OK\r\n", b"-ERR refused\r\n", b"+OK\n", b":1\r\n", b"$-1\r\n",
           b"+OK\r\n+OK\r\n", b"CLOSE", b"SILENT", b"$2\r\nOK\r\n",
           b"+OK\r\n"]
keep = (b"+OK\r\n", b"-ERR refused\r\n")
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
i, held = 0, []
while i < len(replies):
    c, _ = s.accept()
    held.append(c)
    while i < len(replies):
        buf = b""
        while buf.count(b"\r\n") < 7:
            d = c.recv(4096)
            if not d:
                break
            buf += d
        if buf.count(b"\r\n") < 7:
            break
        r = replies[i]
        i += 1
        if r == b"CLOSE":
            c.close()
            break
        if r == b"SILENT":
            break
        c.sendall(r)
        if r not in keep:
            break
time.sleep(2)
EOF
	python3 "$W/fake.py" >"$W/fake.port" 2>"$W/fake.err" &
	pids="$pids $!"
	for _ in $(seq 1 100); do [ -s "$W/fake.port" ] && break; sleep 0.05; done
	"$HC" write --addr "127.0.0.1:$(cat "$W/fake.port")" --history "$W/h4" \
		--clients 1 --count 10 --timeout-ms 300 >"$W/w4.out" 2>"$W/w4.err"
	rc=$?
	res=$(awk '{ printf "%s ", $7 }' "$W/h4")
	# The 6th reply is two replies to one request; should they arrive in
	# two reads, the first is ok and the second is seen before the next SET.
	case "$res" in
	"ok fail maybe maybe maybe maybe maybe maybe maybe ok "|\
	"ok fail maybe maybe maybe ok maybe maybe maybe ok ")
		ok "malformed replies: +OK ok, -ERR fail, bare LF, :1, \$-1, two replies, close, silence, bulk OK: maybe" ;;
	*)	bad "malformed replies: results [$res], exit $rc"; cat "$W/w4.err" ;;
	esac
	check "malformed replies: each drops the connection" \
		'[ $rc -eq 0 ] && [ "$(summary "$W/w4.out" reconnects)" -eq 7 ] && grep -q "malformed reply: LF without CR" "$W/w4.err"'
else
	echo "note: python3 not found; the scripted-server checks are skipped"
fi

# ---- stop conditions ----------------------------------------------------------------------
"$HC" write --addr "$ADDR" --history "$W/h5" --clients 3 --count 25 \
	--prefix c >"$W/w5.out" 2>/dev/null
rc=$?
check "--count 25 with 3 clients: exactly 75 ops, seq 0..24 per client" \
	'[ $rc -eq 0 ] && [ "$(summary "$W/w5.out" ops)" -eq 75 ] && [ "$(wc -l <"$W/h5")" -eq 75 ] && [ "$(grep -c "^[0-9]* 1 c:1:[0-9]* 1\.24\." "$W/h5")" -eq 1 ]'
verdict "--count history checks" 0 "keys 75 ok-writes 75 lost 0" "$W/h5"
"$HC" write --addr "$ADDR" --history "$W/h6" --stop-file "$W/stop" \
	>"$W/w6.out" 2>"$W/w6.err" &
wpid=$!
sleep 0.5
touch "$W/stop"
for _ in $(seq 1 100); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.05; done
wait "$wpid"
rc=$?
check "--stop-file: stops, exit 0, with a summary" \
	'[ $rc -eq 0 ] && [ "$(summary "$W/w6.out" ops)" -gt 0 ] && grep -q "stop.* exists: stopping" "$W/w6.err"'
"$HC" write --addr "$ADDR" --history "$W/h7" >"$W/w7.out" 2>/dev/null &
wpid=$!
sleep 0.5
kill -TERM "$wpid"
wait "$wpid"
rc=$?
check "SIGTERM: stops, exit 0, with a summary" \
	'[ $rc -eq 0 ] && [ "$(summary "$W/w7.out" ops)" -gt 0 ]'
verdict "SIGTERM history checks" 0 "lost 0 phantom 0" "$W/h7"
"$HC" write --addr "$DEAD" --history "$W/h8" --seconds 1 >"$W/w8.out" 2>"$W/w8.err"
rc=$?
check "no server at all: 0 ops, exit 0, retries logged" \
	'[ $rc -eq 0 ] && grep -q "^histclient: ops 0 ok 0 fail 0 maybe 0 reconnects 0$" "$W/w8.out" && grep -q "no address accepts" "$W/w8.err"'

finish
