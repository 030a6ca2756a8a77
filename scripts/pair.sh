# pair.sh - sourced by scripts/demo.sh and tests/integration/test_protect.sh:
# two tandem hosts on one machine, a config for them, and their daemons.
#
# As root the hosts live in network namespaces: ${PAIR_P}a and ${PAIR_P}b
# (10.77.0.1 and .2 on a bridge in ${PAIR_P}c, where clients run as
# 10.77.0.3), with a second veth between them for the heartbeat path
# (10.78.0.1 and .2).  Otherwise both hosts use loopback ports.  Nothing
# ever leaves the machine.
#
# Needs: W (a work directory), T (the tandem binary), TD (tandemd), G (the
# guests directory).  The scripts that use it take PAIR_MODE=loopback (or
# netns) from the environment to choose; by default netns as root.

PAIR_P=${PAIR_P:-td$$}
PAIR_NETNS=0
PAIR_PIDS=""

# pair_up netns|loopback
pair_up() {
	if [ "$1" = netns ]; then
		pair_netns_up || return 1
	else
		PAIR_NETNS=0
		local base=$((20000 + ($$ * 7) % 20000))
		PAIR_REPL_A=127.0.0.1:$base
		PAIR_REPL_B=127.0.0.1:$((base + 1))
		PAIR_HB_A=127.0.0.1:$((base + 2))
		PAIR_HB_B=127.0.0.1:$((base + 3))
		PAIR_STREAM_A=127.0.0.1:$((base + 4))
		PAIR_STREAM_B=127.0.0.1:$((base + 5))
		PAIR_PORT_BASE=$((base + 10))
	fi
}

pair_netns_up() {
	local p=$PAIR_P x
	PAIR_NETNS=1
	for x in a b c; do ip netns add "$p$x" || return 1; done
	ip -n "${p}c" link add br0 type bridge && ip -n "${p}c" link set br0 up
	for x in a b; do
		ip link add "${p}${x}0" netns "$p$x" type veth peer name "${p}${x}1" netns "${p}c" || return 1
		ip -n "${p}c" link set "${p}${x}1" master br0 up
		ip -n "$p$x" link set lo up
		ip -n "$p$x" link set "${p}${x}0" up
	done
	ip -n "${p}c" link set lo up
	ip -n "${p}a" addr add 10.77.0.1/24 dev "${p}a0"
	ip -n "${p}b" addr add 10.77.0.2/24 dev "${p}b0"
	ip -n "${p}c" addr add 10.77.0.3/24 dev br0
	ip link add "${p}ah" netns "${p}a" type veth peer name "${p}bh" netns "${p}b" || return 1
	ip -n "${p}a" addr add 10.78.0.1/24 dev "${p}ah" && ip -n "${p}a" link set "${p}ah" up
	ip -n "${p}b" addr add 10.78.0.2/24 dev "${p}bh" && ip -n "${p}b" link set "${p}bh" up
	PAIR_REPL_A=10.77.0.1:7790 PAIR_REPL_B=10.77.0.2:7790
	PAIR_HB_A=10.78.0.1:7791 PAIR_HB_B=10.78.0.2:7791
	PAIR_STREAM_A=10.77.0.1:6379 PAIR_STREAM_B=10.77.0.2:6379
}

pair_down() {
	pair_stop_all
	if [ "$PAIR_NETNS" = 1 ]; then
		local x
		for x in a b c; do ip netns del "$PAIR_P$x" 2>/dev/null; done
	fi
	return 0
}

# Run a command on host a, host b or the client side (c).  pair_on
# waits for it; `$(pair_ns h) CMD &` starts it in the background with $!
# being the command's own pid (ip netns exec execs it).
pair_on() {
	local h=$1; shift
	if [ "$PAIR_NETNS" = 1 ]; then
		ip netns exec "$PAIR_P$h" "$@"
	else
		"$@"
	fi
}

pair_ns() {
	[ "$PAIR_NETNS" = 1 ] && echo "ip netns exec $PAIR_P$1"
}

# pair_config FILE [key=value ...]: mode interval auto security image
# memory disk_size repl_b (where alpha connects to beta) listen_b
pair_config() {
	local f=$1; shift
	local mode=remus interval=50ms auto=true security=psk image=kvstore.elf
	local memory=64M disk_size=16M repl_b=$PAIR_REPL_B listen_b="" hb=yes kv
	for kv in "$@"; do
		case $kv in
		mode=*) mode=${kv#*=} ;; interval=*) interval=${kv#*=} ;;
		auto=*) auto=${kv#*=} ;; security=*) security=${kv#*=} ;;
		image=*) image=${kv#*=} ;; memory=*) memory=${kv#*=} ;;
		disk_size=*) disk_size=${kv#*=} ;; repl_b=*) repl_b=${kv#*=} ;;
		listen_b=*) listen_b=${kv#*=} ;; hb=*) hb=${kv#*=} ;;
		*) echo "pair_config: unknown $kv" >&2; return 1 ;;
		esac
	done
	local disk_a="" disk_b="" dsz="" link hba="" hbb="" lb=""
	if [ "$disk_size" != 0 ]; then
		dsz="disk-size = \"$disk_size\";"
		disk_a="disk = \"$W/alpha.img\";" disk_b="disk = \"$W/beta.img\";"
	fi
	case $security in
	psk) link="security = \"psk\"; psk = \"$(printf '%064x' $$)\";" ;;
	insecure) link='security = "insecure";' ;;
	esac
	if [ "$hb" = yes ]; then
		hba="heartbeat = \"$PAIR_HB_A\";" hbb="heartbeat = \"$PAIR_HB_B\";"
	fi
	[ -n "$listen_b" ] && lb="listen = \"$listen_b\";"
	cat >"$f" <<EOF
vm = { name = "kv1"; image = "$G/$image"; memory = "$memory"; $dsz };
protect = { mode = "$mode"; interval = "$interval"; };
failover = { heartbeat-interval = "50ms"; heartbeat-misses = 4; auto-promote = $auto; };
link = { $link };
hosts = (
  { name = "alpha"; address = "$PAIR_REPL_A"; $hba stream = "$PAIR_STREAM_A";
    control = "$W/alpha.sock"; $disk_a console = "$W/alpha.console"; },
  { name = "beta"; address = "$repl_b"; $lb $hbb stream = "$PAIR_STREAM_B";
    control = "$W/beta.sock"; $disk_b console = "$W/beta.console"; }
);
EOF
}

# pair_start HOST(a|b) CONF [ROLE]: the daemon's pid in PAIR_PID_a/_b.
pair_start() {
	local h=$1 conf=$2 role=${3:-standby} name
	[ "$h" = a ] && name=alpha || name=beta
	$(pair_ns "$h") "$TD" -c "$conf" --host "$name" --role "$role" \
		>>"$W/$name.log" 2>&1 &
	eval "PAIR_PID_$h=$!"
	PAIR_PIDS="$PAIR_PIDS $!"
	pids="${pids:-} $!"
}

pair_stop_all() {
	local p
	for p in $PAIR_PIDS; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
	for p in $PAIR_PIDS; do wait "$p" 2>/dev/null; done
	PAIR_PIDS=""
}

# pair_json SOCK FIELD: one field of `tandem status` (dotted path), or "".
pair_json() {
	"$T" status --control "$1" --get "$2" 2>/dev/null
}

# pair_wait SECONDS SOCK FIELD VALUE: until the field reads VALUE.
pair_wait() {
	local end=$(($(date +%s) + $1))
	while [ "$(date +%s)" -lt "$end" ]; do
		[ "$(pair_json "$2" "$3")" = "$4" ] && return 0
		sleep 0.05
	done
	return 1
}
