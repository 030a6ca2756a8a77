#!/bin/sh
# test_rdma.sh BUILD - links over RDMA (transport/rdma.c) between two
# processes on this host, through the public API (tests/tools/rdma_pingpong).
#
# Needs an RDMA verbs device.  Without one it tries to make a software RoCE
# device on loopback (`rdma link add tandem_rxe type rxe netdev lo`, removed
# at exit); if none can be had it prints "skipped: no RDMA device" and
# "0 passed, 0 failed" and exits 0.  All traffic is to 127.0.0.1.
#
#   control channel only, and control + 2 bulk channels with records of
#     every size class up to WIRE_MAX_BODY: each echoed, checked in order
#   4 bulk channels with a small recv_limit on both ends (back-pressure:
#     receivers pause, credits stop, senders block, all still arrives)
#   refusals: security cert/psk, a peer name the server does not expect,
#     no listener on the port
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
PROBE=$ROOT/$BUILD/tools/rdma_probe
PP=$ROOT/$BUILD/tools/rdma_pingpong
RXE=tandem_rxe
IT_NAME=rdma . "$(dirname "$0")/lib.sh"
rxe_made=""

rdma_cleanup() {
	[ -n "$rxe_made" ] && rdma link delete "$RXE" 2>/dev/null
	cleanup
}
trap rdma_cleanup EXIT INT TERM

if [ ! -x "$PROBE" ] || [ ! -x "$PP" ]; then
	bad "tools not built: $PROBE $PP"
	finish
	exit 1
fi

ndev() { n=$("$PROBE" 2>/dev/null); echo "${n:-0}"; }

# A software RoCE device on loopback, where the kernel has rdma_rxe.
if [ "$(ndev)" -eq 0 ] && [ "$(id -u)" -eq 0 ] && command -v rdma >/dev/null; then
	modprobe rdma_rxe 2>/dev/null
	if rdma link add "$RXE" type rxe netdev lo 2>/dev/null; then
		rxe_made=1
	fi
fi
if [ "$(ndev)" -eq 0 ]; then
	echo "skipped: no RDMA device"
	echo "0 passed, 0 failed"
	exit 0
fi

# reap PID SECONDS : waits for PID at most SECONDS, kills it after that;
# returns its exit status (or 124 if it had to be killed)
reap() {
	for _ in $(seq 1 $(($2 * 10))); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1"
			return
		fi
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 124
}

# server NAME ARGS... : starts a server on an ephemeral port, sets $port
server() {
	name=$1
	shift
	"$PP" server 127.0.0.1:0 --timeout-ms 20000 "$@" \
		>"$W/$name.out" 2>"$W/$name.log" &
	spid=$!
	pids="$pids $spid"
	port=""
	for _ in $(seq 1 100); do
		port=$(sed -n 's/^port \([0-9][0-9]*\)$/\1/p' "$W/$name.out")
		[ -n "$port" ] && return 0
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.05
	done
	echo "server $name did not start:"
	cat "$W/$name.out" "$W/$name.log"
	return 1
}

# pingpong NAME "SERVER ARGS" CLIENT ARGS... : one echo run, both must pass
pingpong() {
	name=$1
	sargs=$2
	shift 2
	# shellcheck disable=SC2086 # word splitting of sargs is wanted
	if ! server "$name" $sargs; then
		bad "$name: server"
		return
	fi
	timeout 120 "$PP" client "127.0.0.1:$port" "$@" \
		>"$W/$name.cli" 2>"$W/$name.clog"
	crc=$?
	reap "$spid" 30
	src=$?
	if [ "$crc" -eq 0 ] && [ "$src" -eq 0 ] &&
	   grep -q '^ok:' "$W/$name.cli"; then
		ok "$name: $(cat "$W/$name.cli")"
	else
		bad "$name: client exit $crc, server exit $src"
		cat "$W/$name.cli" "$W/$name.clog" "$W/$name.out" "$W/$name.log"
	fi
}

# refused NAME WANT CLIENT-ARGS... : the client fails and says WANT
refused() {
	name=$1
	want=$2
	shift 2
	timeout 30 "$PP" client "$@" >"$W/$name.cli" 2>"$W/$name.clog"
	rc=$?
	if [ "$rc" -eq 2 ] && grep -qF "$want" "$W/$name.clog"; then
		ok "$name"
	else
		bad "$name: exit $rc, want [$want] in: $(cat "$W/$name.clog")"
	fi
}

pingpong control-only "" --records 40
pingpong bulk2-all-sizes "" --bulk 2 --records 34 --max
pingpong backpressure "--recv-limit 262144" --bulk 4 --records 60 \
	--recv-limit 262144
check "backpressure: the client's reading paused" \
	"grep -q 'reading paused [1-9]' '$W/backpressure.cli'"

refused security-cert "RDMA links carry no TLS; set security insecure for RDMA or use tcp" \
	127.0.0.1:1 --security cert
refused security-psk "RDMA links carry no TLS" 127.0.0.1:1 --security psk
if server wrong-name --peer-name someone-else --timeout-ms 3000; then
	refused wrong-peer-name 'expected peer "someone-else"' \
		"127.0.0.1:$port" --bulk 1
	reap "$spid" 30
	check "wrong-peer-name: server counted the refusal" \
		"grep -q '(1 refused)' '$W/wrong-name.out'"
else
	bad "wrong-name: server"
fi
# nothing listens on the listener's port once it has exited
refused no-listener "rdma" "127.0.0.1:$port" --timeout-ms 5000

finish
