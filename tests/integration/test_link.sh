#!/bin/sh
# test_link.sh BUILD - transport links between real processes (link_peer),
# with certificates from `tandem pki`:
#
#   loopback, TLS with certificates, 4 bulk channels: everything verified
#   two network namespaces joined by a veth pair (as root): the same
#   through the fault proxy (tests/tools/fault_proxy):
#     delay + jitter: everything still arrives, in order
#     bit flips: caught by the record checksum (plaintext) or by TLS,
#       and no record after the flip reaches the consumer
#     a cut connection: reported to the link's user on both sides
#     replay of a captured session (S5): refused by the epoch check, and
#       by the session-seeded checksum when the epoch would pass
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
T=$ROOT/$BUILD/tandem
LP=$ROOT/$BUILD/tools/link_peer
FP=$ROOT/$BUILD/tools/fault_proxy
IT_NAME=link . "$(dirname "$0")/lib.sh"
NS_A=tnd-a-$$
NS_B=tnd-b-$$
netns_cleanup() {
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
}
trap 'netns_cleanup; cleanup' EXIT INT TERM
export TANDEM_LOG=warn

# tandem's own PKI: a CA and two hosts
"$T" pki init --dir "$W/pki" >/dev/null &&
	"$T" pki host host-a --dir "$W/pki" >/dev/null &&
	"$T" pki host host-b --dir "$W/pki" >/dev/null
check "tandem pki makes a CA and two host certificates" \
	'[ -s "$W/pki/host-a.crt" ] && [ -s "$W/pki/host-b.key" ]'
cert() { # NAME PEER
	echo "--name $1 --peer $2 --ca $W/pki/ca.crt --cert $W/pki/$1.crt" \
		"--key $W/pki/$1.key"
}
PSK=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff

# listen NAME [netns-prefix] ARGS... : start a listener, wait for its port
listen() {
	name=$1; shift
	"$@" >"$W/$name.out" 2>"$W/$name.err" &
	lpid=$!
	pids="$pids $lpid"
	for _ in $(seq 1 100); do
		LPORT=$(sed -n 's/^link_peer: listening on port //p' "$W/$name.out")
		[ -n "$LPORT" ] && return 0
		sleep 0.05
	done
	echo "listener $name did not start:"; cat "$W/$name.out" "$W/$name.err"
	return 1
}

# proxy NAME ARGS... : start the fault proxy in front of LPORT
proxy() {
	name=$1; shift
	"$FP" --listen 127.0.0.1:0 --connect "127.0.0.1:$LPORT" --seed 7 "$@" \
		>"$W/$name.out" 2>"$W/$name.err" &
	ppid_=$!
	pids="$pids $ppid_"
	for _ in $(seq 1 100); do
		PPORT=$(sed -n 's/^fault_proxy: listening on [0-9.]*:\([0-9]*\) .*/\1/p' \
			"$W/$name.out")
		[ -n "$PPORT" ] && return 0
		sleep 0.05
	done
	echo "proxy $name did not start:"; cat "$W/$name.out" "$W/$name.err"
	return 1
}

has() { grep -q "$2" "$W/$1.out" "$W/$1.err" 2>/dev/null; }

# ---- loopback, TLS, 4 bulk channels ----------------------------------------
listen l1 "$LP" listen 127.0.0.1:0 $(cert host-b host-a) --bulk 4 --records 300
"$LP" connect "127.0.0.1:$LPORT" $(cert host-a host-b) --bulk 4 --records 300 \
	--size 65536 >"$W/c1.out" 2>"$W/c1.err"
crc=$?
wait "$lpid" 2>/dev/null; lrc=$?
check "TLS link on loopback: 1500 records verified on 5 channels" \
	'[ $crc -eq 0 ] && [ "$lrc" -eq 0 ] && has l1 "verified 1500 records on 5 channels"'
check "sender got the receiver's verdict" 'has c1 "peer says \"ok 1500\""'

# ---- two network namespaces -------------------------------------------------
if [ "$(id -u)" -eq 0 ] && ip netns add "$NS_A" 2>/dev/null; then
	ip netns add "$NS_B"
	ip link add tndva$$ type veth peer name tndvb$$
	ip link set tndva$$ netns "$NS_A"
	ip link set tndvb$$ netns "$NS_B"
	ip -n "$NS_A" addr add 10.213.0.1/24 dev tndva$$
	ip -n "$NS_B" addr add 10.213.0.2/24 dev tndvb$$
	ip -n "$NS_A" link set tndva$$ up
	ip -n "$NS_B" link set tndvb$$ up
	ip -n "$NS_A" link set lo up
	ip -n "$NS_B" link set lo up
	listen l2 ip netns exec "$NS_A" "$LP" listen 10.213.0.1:7790 \
		$(cert host-b host-a) --bulk 2 --records 300
	ip netns exec "$NS_B" "$LP" connect 10.213.0.1:7790 \
		$(cert host-a host-b) --bulk 2 --records 300 --size 131072 \
		>"$W/c2.out" 2>"$W/c2.err"
	crc=$?
	wait "$lpid" 2>/dev/null; lrc=$?
	check "TLS link between two network namespaces (veth)" \
		'[ $crc -eq 0 ] && [ "$lrc" -eq 0 ] && has l2 "verified 900 records on 3 channels"'
	netns_cleanup
else
	echo "skipped: network namespaces need root"
fi

# ---- fault proxy: delay and jitter --------------------------------------------
listen l3 "$LP" listen 127.0.0.1:0 --insecure --name host-b --peer host-a \
	--bulk 2 --records 200
proxy p3 --delay-ms 5 --jitter-ms 5
"$LP" connect "127.0.0.1:$PPORT" --insecure --name host-a --peer host-b \
	--bulk 2 --records 200 --size 32768 >"$W/c3.out" 2>"$W/c3.err"
crc=$?
wait "$lpid" 2>/dev/null; lrc=$?
check "delay 5 ms + jitter 5 ms: all 600 records verified" \
	'[ $crc -eq 0 ] && [ "$lrc" -eq 0 ] && has l3 "verified 600 records"'
kill "$ppid_" 2>/dev/null

# ---- fault proxy: bit flips ------------------------------------------------------
# connection 2 is bulk channel 1; flip one bit 100000 bytes into it
listen l4 "$LP" listen 127.0.0.1:0 --insecure --name host-b --peer host-a \
	--bulk 1 --records 200 --timeout-ms 10000
proxy p4 --flip-after 100000 --flip-conn 2 --dir up
"$LP" connect "127.0.0.1:$PPORT" --insecure --name host-a --peer host-b \
	--bulk 1 --records 200 --size 32768 --timeout-ms 10000 \
	>"$W/c4.out" 2>"$W/c4.err"
crc=$?
wait "$lpid" 2>/dev/null; lrc=$?
check "plaintext bit flip: the receiver's link fails" '[ "$lrc" -eq 3 ]'
check "plaintext bit flip: caught by the record checksum or header checks" \
	'has l4 "link failed: channel 1: record" && ! has l4 "verified 400"'
check "plaintext bit flip: the sender is told" '[ $crc -eq 3 ]'
kill "$ppid_" 2>/dev/null

listen l5 "$LP" listen 127.0.0.1:0 --psk $PSK --name host-b --peer host-a \
	--bulk 1 --records 200 --timeout-ms 10000
proxy p5 --flip-after 100000 --flip-conn 2 --dir up
"$LP" connect "127.0.0.1:$PPORT" --psk $PSK --name host-a --peer host-b \
	--bulk 1 --records 200 --size 32768 --timeout-ms 10000 \
	>"$W/c5.out" 2>"$W/c5.err"
crc=$?
wait "$lpid" 2>/dev/null; lrc=$?
check "TLS bit flip: refused by TLS, the link fails on both sides" \
	'[ "$lrc" -eq 3 ] && [ $crc -eq 3 ] && has l5 "link failed: channel 1"'
kill "$ppid_" 2>/dev/null

# ---- fault proxy: a cut connection ---------------------------------------------------
listen l6 "$LP" listen 127.0.0.1:0 --psk $PSK --name host-b --peer host-a \
	--bulk 2 --records 500 --timeout-ms 10000
proxy p6 --cut-after 300000 --flip-conn 3
"$LP" connect "127.0.0.1:$PPORT" --psk $PSK --name host-a --peer host-b \
	--bulk 2 --records 500 --size 32768 --timeout-ms 10000 \
	>"$W/c6.out" 2>"$W/c6.err"
crc=$?
wait "$lpid" 2>/dev/null; lrc=$?
# The sender sees the reset too and fails its whole link, so the receiver
# may hear of it on channel 2 (the reset) or first on another channel.
check "cut connection: reported to the receiving user" \
	'[ "$lrc" -eq 3 ] && has l6 "link failed: channel"'
check "cut connection: reported to the sending user" \
	'[ $crc -eq 3 ] && has c6 "link failed"'
kill "$ppid_" 2>/dev/null

# ---- replay of a captured session (S5) --------------------------------------------
listen l7 "$LP" listen 127.0.0.1:0 --insecure --name host-b --peer host-a \
	--records 50 --min-epoch 10
proxy p7 --record "$W/session.bin"
"$LP" connect "127.0.0.1:$PPORT" --insecure --name host-a --peer host-b \
	--records 50 --min-epoch 10 >"$W/c7.out" 2>"$W/c7.err"
crc=$?
wait "$lpid" 2>/dev/null; lrc=$?
kill "$ppid_" 2>/dev/null
check "captured a valid plaintext session" \
	'[ $crc -eq 0 ] && [ "$lrc" -eq 0 ] && [ -s "$W/session.bin" ]'

listen l8 "$LP" listen 127.0.0.1:0 --insecure --name host-b --peer host-a \
	--records 50 --min-epoch 11 --timeout-ms 3000
"$FP" --replay "$W/session.bin" --connect "127.0.0.1:$LPORT" --hold-ms 2000 \
	>"$W/r8.out" 2>&1
wait "$lpid" 2>/dev/null; lrc=$?
check "replay after the epoch moved on: refused at HELLO (stale epoch)" \
	'[ "$lrc" -eq 5 ] && has l8 "refused 1 peers" && has l8 "stale HELLO: epoch 10"'

listen l9 "$LP" listen 127.0.0.1:0 --insecure --name host-b --peer host-a \
	--records 50 --min-epoch 10 --timeout-ms 3000
"$FP" --replay "$W/session.bin" --connect "127.0.0.1:$LPORT" --hold-ms 2000 \
	>"$W/r9.out" 2>&1
wait "$lpid" 2>/dev/null; lrc=$?
check "replay into a new session: no record reaches the consumer" \
	'[ "$lrc" -eq 3 ] && has l9 "verified 0 records before the failure"'
check "replay into a new session: refused by the session-seeded checksum" \
	'has l9 "checksum"'

finish
