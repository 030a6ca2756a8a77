# lib.sh - sourced by the Xen test bed's scenarios, inside dom0 (run.sh
# installs it as /root/xenlib.sh).  Reporting like the integration tests'
# lib.sh (ok/bad/check, ending in "N passed, N failed"), plus step timing
# and helpers for domUs running tests/xen/guest/pagetest.
#
# Every timed step appends "NAME SECONDS" to $R/steps.txt; run.sh prints
# that table.  Timeouts are about three times what the step took when
# measured on a 2-core machine without KVM (tests/xen/README.md).
R=/root/results
DOMU=/root/domu
CONSOLE_LOGS=/var/log/xen/console
mkdir -p "$R"
pass=0
fail=0
T0=$(date +%s)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

ok() { pass=$((pass + 1)); echo "ok: $1 (+$(($(date +%s) - T0)) s)"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1 (+$(($(date +%s) - T0)) s)"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

record() { # record NAME SECONDS
	echo "$1 $2" >>"$R/steps.txt"
	echo "step: $1: $2 s"
}

# step NAME CMD...: run CMD (output to $R/NAME.log and the console), time
# it, record it; returns CMD's status.
step() {
	_name=$1
	shift
	_t=$(now)
	"$@" >"$R/$_name.log" 2>&1
	step_end "$_name" "$_t" $? "$*"
}

# step_end NAME T0 RC CMD: record the step's time; show why it failed.
step_end() {
	record "$1" "$(since "$2")"
	if [ "$3" -ne 0 ]; then
		echo "step $1: '$4' exited $3:"
		tail -20 "$R/$1.log"
	fi
	return "$3"
}

# step_ts NAME CMD...: like step, but each output line is prefixed with
# the dom0 clock (seconds), so phases inside the step can be timed.
step_ts() {
	_name=$1
	shift
	_t=$(now)
	{ "$@" 2>&1; echo $? >"$R/$_name.rc"; } | while IFS= read -r _line; do
		echo "$(date +%s.%N) $_line"
	done >"$R/$_name.log"
	step_end "$_name" "$_t" "$(cat "$R/$_name.rc")" "$*"
}

# ts_between LOG PATTERN1 PATTERN2: seconds from the first line matching
# PATTERN1 to the first line after it matching PATTERN2, in a step_ts log.
ts_between() {
	awk -v p1="$2" -v p2="$3" '
		a == "" && $0 ~ p1 { a = $1; next }
		a != "" && $0 ~ p2 { printf "%.1f\n", $1 - a; exit }' "$1"
}

# wait_until SECONDS CMD...: poll CMD once a second until it succeeds.
wait_until() {
	_limit=$1
	shift
	_end=$(($(date +%s) + _limit))
	while ! "$@"; do
		[ "$(date +%s)" -ge "$_end" ] && return 1
		sleep 1
	done
	return 0
}

# pt_last LOG: "PASS ERRORS" from the last pagetest progress line in LOG
# (the guest console log xenconsoled writes), or nothing.
pt_last() {
	[ -f "$1" ] || return 0
	tr -d '\r' <"$1" | sed -n 's/^.*pagetest: pass \([0-9][0-9]*\) errors \([0-9][0-9]*\)$/\1 \2/p' | tail -1
}

# pt_show LOG: the last progress as "pass N errors E" (for messages).
pt_show() {
	_l=$(pt_last "$1")
	[ -n "$_l" ] && echo "pass ${_l%% *} errors ${_l##* }" || echo "no progress line"
}

# pt_beyond LOG N: true once LOG shows a pagetest pass greater than N.
pt_beyond() {
	_l=$(pt_last "$1")
	[ -n "$_l" ] && [ "${_l%% *}" -gt "$2" ]
}

# pt_errors LOG: total "errors" in the last progress line (0 when none).
pt_errors() {
	_l=$(pt_last "$1")
	echo "${_l##* }" | awk '{ print ($1 == "" ? 0 : $1) }'
}

# pt_bad_lines LOG: pagetest lines that report a page it did not write.
pt_bad_lines() {
	[ -f "$1" ] || { echo 0; return; }
	tr -d '\r' <"$1" | grep -c 'pagetest: pass [0-9]*: page' || true
}

# domu_cfg NAME IP MAC [MIB]: an xl config for a PVH pagetest domU.
# tsc_mode and cpuid: QEMU's emulated SVM has no usable next-RIP for the
# RDTSCP intercept, so a PVH guest hangs unless RDTSCP is hidden.
domu_cfg() {
	cat <<EOF
name = "$1"
type = "pvh"
kernel = "$DOMU/vmlinuz"
ramdisk = "$DOMU/initrd.gz"
extra = "console=hvc0 pt_mib=${4:-32} pt_ip=$2"
memory = 128
vcpus = 1
tsc_mode = "native"
cpuid = "host,rdtscp=0"
vif = [ "mac=$3,bridge=xenbr0" ]
on_crash = "preserve"
EOF
}

# bridge_up: xenbr0 with 10.99.0.1/24 for the domUs' vifs.
bridge_up() {
	modprobe xen-netback &&
		ip link add name xenbr0 type bridge stp_state 0 forward_delay 0 &&
		ip addr add 10.99.0.1/24 dev xenbr0 &&
		ip link set xenbr0 up
}

# tcp_ask IP: the domU service's answer ("pass N errors E").
tcp_ask() {
	busybox nc -w 5 "$1" 7000 </dev/null 2>/dev/null | tr -d '\r' | head -1
}

# tcp_pass IP: the pass number the domU service answers with, or nothing.
tcp_pass() {
	tcp_ask "$1" | sed -n 's/^pass \([0-9][0-9]*\) errors 0$/\1/p'
}

# tcp_beyond IP N: true when the service answers with a pass beyond N.
tcp_beyond() {
	_p=$(tcp_pass "$1")
	[ -n "$_p" ] && [ "$_p" -gt "$2" ]
}

# tcp_up IP: true when the domU service answers with a clean pass count.
tcp_up() {
	[ -n "$(tcp_pass "$1")" ]
}

finish() {
	echo "$pass passed, $fail failed" | tee "$R/summary.txt"
	[ "$fail" -eq 0 ]
}

# -- tandem in dom0 ---------------------------------------------------------------
# Two tandemd on this dom0, "alpha" and "beta", linked over loopback.
SA=/run/tandem/alpha.sock
SB=/run/tandem/beta.sock
export TANDEM_XEN_SPOOL=/var/tmp
mkdir -p /run/tandem

# tandem_conf NAME: the pair's config for domU NAME (/root/NAME.cfg).
# The failure window (200 ms x 25 = 5 s) is wide for emulation: a slow
# apply on the standby delays the heartbeats it reads.
tandem_conf() {
	cat <<EOF
vm = { name = "$1"; backend = "xen"; xl-config = "/root/$1.cfg";
       memory = "128M"; vcpus = 1; };
protect = { mode = "remus"; interval = "100ms"; };
failover = { heartbeat-interval = "200ms"; heartbeat-misses = 25;
             auto-promote = true; };
link = { security = "insecure"; };
hosts = (
  { name = "alpha"; address = "127.0.0.1:7790"; control = "$SA"; },
  { name = "beta"; address = "127.0.0.1:7791"; control = "$SB"; }
);
EOF
}

get() { tandem status --control "$1" --get "$2" 2>/dev/null; }
is() { [ "$(get "$1" "$2")" = "$3" ]; }
# progress: every 30 s while waiting, the daemons' last log lines
progress() {
	now_s=$(date +%s)
	[ $((now_s - ${last_shown:-0})) -ge 30 ] || return 0
	last_shown=$now_s
	echo "... alpha: $(tail -1 $R/alpha.log 2>/dev/null | cut -c1-160)"
	echo "... beta:  $(tail -1 $R/beta.log 2>/dev/null | cut -c1-160)"
}
is_shown() { progress; is "$@"; }

# wait_protected SOCK STEP WHAT: the primary at SOCK reaches "protected"
# (900 s at most); the time goes to STEP, the check is named WHAT.
wait_protected() {
	_t=$(now)
	if wait_until 900 is_shown "$1" protect.state protected; then
		record "$2" "$(since "$_t")"
		ok "$3"
	else
		bad "$3 (state $(get "$1" protect.state))"
	fi
}

# client_loop IP: "TIME PASS" for each answer of the service, every 0.2 s,
# until /tmp/client.stop exists.
client_loop() {
	while [ ! -e /tmp/client.stop ]; do
		a=$(tcp_pass "$1")
		[ -n "$a" ] && echo "$(now) $a"
		sleep 0.2
	done
}

# client_gap FILE: the longest time between two answers, in seconds.
client_gap() {
	awk 'NR > 1 { d = $1 - p; if (d > m) m = d } { p = $1 }
	     END { if (NR > 1) printf "%.1f", m }' "$1"
}

# pt_rate LOG SECONDS: pagetest passes per second over the next SECONDS.
pt_rate() {
	_a=$(pt_last "$1"); _a=${_a%% *}
	_t=$(now)
	sleep "$2"
	_b=$(pt_last "$1"); _b=${_b%% *}
	awk -v a="${_a:-0}" -v b="${_b:-0}" -v t="$_t" -v n="$(now)" \
		'BEGIN { printf "%.1f", (b - a) / (n - t) }'
}

# guest_goes_on WHAT BEFORE: after WHAT, the domU's pagetest is past pass
# BEFORE (the last one a client saw: its state survived), the service
# answers with a later pass, and no page ever held a value pagetest did
# not write ($LOG and $IP of the scenario).
guest_goes_on() {
	_before=${2:-0}
	check "pagetest goes on after $1: $(pt_show "$LOG") (before: ${2:-none})" \
		'pt_beyond "$LOG" "$_before"'
	# one ask can time out under emulation while a full copy runs
	wait_until 60 tcp_beyond $IP "$_before"
	_after=$(tcp_pass $IP)
	check "TCP service answers after $1: pass ${_after:-none} > ${2:-none}" \
		'[ -n "$_after" ] && [ "$_after" -gt "$_before" ]'
	_e=$(pt_errors "$LOG")
	_b=$(pt_bad_lines "$LOG")
	check "pagetest found no page it did not write after $1 (errors $_e, lines $_b)" \
		'[ "$_e" -eq 0 ] && [ "$_b" -eq 0 ]'
}
