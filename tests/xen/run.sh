#!/bin/sh
# run.sh - run one scenario of the Xen test bed: Xen 4.17 with a Debian dom0,
# nested under QEMU in software emulation (see tests/xen/README.md).
#
#   tests/xen/run.sh SCENARIO [--cache DIR] [--timeout S]
#
# SCENARIO is a file, or a name in tests/xen/scenarios/ (smoke, smoke.sh).
# Needs the artifacts of tests/xen/build.sh in DIR (default build/xen-cache).
#
# Each run works on a fresh copy of the cached dom0 image in
# build/xen-run/NAME/: debugfs -w puts the driver (dom0's PID 1), the
# scenario and the domU's kernel and initramfs into it, QEMU boots Xen from
# it under an outer timeout (default 1200 s) with the serial console saved
# to serial.log, and afterwards debugfs reads /root/results back into
# build/xen-run/NAME/results/.  Exits 0 only if the scenario passed.
#
# Emulation faults: dom0 userspace has been seen to hit random memory
# corruption under emulation (glibc malloc aborts, segfaults).  A scenario
# that fails with one of those signatures in its logs is run once more, and
# the log says so; any other failure is final.
set -u

cd "$(dirname "$0")/../.."
HERE=tests/xen
CACHE=build/xen-cache
TIMEOUT=1200
SCEN=""
while [ $# -gt 0 ]; do
	case $1 in
	--cache) CACHE=$2; shift 2 ;;
	--cache=*) CACHE=${1#--cache=}; shift ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--timeout=*) TIMEOUT=${1#--timeout=}; shift ;;
	-h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "run.sh: unknown option: $1" >&2; exit 2 ;;
	*) [ -z "$SCEN" ] || { echo "run.sh: one scenario at a time" >&2; exit 2; }
	   SCEN=$1; shift ;;
	esac
done
[ -n "$SCEN" ] || { echo "usage: run.sh SCENARIO [--cache DIR] [--timeout S]" >&2; exit 2; }
for f in "$SCEN" "$HERE/scenarios/$SCEN" "$HERE/scenarios/$SCEN.sh"; do
	if [ -f "$f" ]; then SCEN=$f; break; fi
done
[ -f "$SCEN" ] || { echo "run.sh: no scenario $SCEN" >&2; exit 2; }
NAME=$(basename "$SCEN" .sh)

say() { echo "run.sh: $*"; }
die() { echo "run.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

TANDEM_BINS="build/tandem build/tandemd build/tools/xen_image_dump"
XEN=$CACHE/xen/xen
DOM0=$CACHE/dom0
DOMU=$CACHE/domu
for f in "$XEN" "$DOM0/dom0.img" "$DOM0/vmlinuz" "$DOM0/initrd.img" \
	"$DOMU/vmlinuz" "$DOMU/initrd.gz"; do
	[ -s "$f" ] || die "missing $f: run tests/xen/build.sh${CACHE:+ --cache $CACHE} first"
done
command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (scripts/deps.sh --xen)"
# QEMU splits multiboot modules at commas.
case "$DOM0/vmlinuz$DOM0/initrd.img" in
*,*) die "the cache path may not contain a comma: $CACHE" ;;
esac

RUN=build/xen-run/$NAME
CR=$(printf '\r')

# The known signatures of the emulation fault, in the serial log (dom0's
# kernel logs segfaults on the console) and in the scenario's logs.
FAULT_RE='malloc\(\)|free\(\): |corrupted size vs|corrupted double-linked|double free or corruption|malloc_consolidate|segfault at [0-9a-f]+ ip|traps: .* general protection'

# prepare: a fresh image with the driver, the scenario and the domU.
prepare() {
	rm -rf "$RUN"
	mkdir -p "$RUN"
	cp --sparse=always "$DOM0/dom0.img" "$RUN/dom0.img"
	cat >"$RUN/debugfs.cmds" <<EOF
mkdir /root/domu
write $DOMU/vmlinuz /root/domu/vmlinuz
write $DOMU/initrd.gz /root/domu/initrd.gz
write $HERE/dom0-driver.sh /usr/sbin/tandem-xen-driver
sif /usr/sbin/tandem-xen-driver mode 0100755
write $HERE/scenarios/lib.sh /root/xenlib.sh
write $SCEN /root/scenario.sh
sif /root/scenario.sh mode 0100755
EOF
	# tandem's own build, for scenarios that drive Xen with it.
	for b in $TANDEM_BINS; do
		[ -x "$b" ] || die "missing $b: run make first"
		printf 'write %s /usr/local/bin/%s\nsif /usr/local/bin/%s mode 0100755\n' \
			"$b" "${b##*/}" "${b##*/}" >>"$RUN/debugfs.cmds"
	done
	debugfs -w -f "$RUN/debugfs.cmds" "$RUN/dom0.img" >"$RUN/debugfs.log" 2>&1 ||
		{ cat "$RUN/debugfs.log" >&2; die "debugfs -w failed"; }
	# debugfs reports failed commands but still exits 0: check the copies.
	# (debugfs does not follow symlinks: /sbin is usr/sbin in bookworm.)
	for pair in "$HERE/dom0-driver.sh /usr/sbin/tandem-xen-driver" \
		"build/tandemd /usr/local/bin/tandemd" \
		"$SCEN /root/scenario.sh" "$DOMU/initrd.gz /root/domu/initrd.gz"; do
		set -- $pair
		debugfs -R "dump $2 $RUN/check.tmp" "$RUN/dom0.img" >/dev/null 2>&1
		cmp -s "$1" "$RUN/check.tmp" ||
			{ cat "$RUN/debugfs.log" >&2; die "could not put $1 into the image as $2"; }
	done
	rm -f "$RUN/check.tmp"
}

# watch: copy the serial console to serial.log, show the scenario's lines,
# and time the boot milestones (host clock) into boot-times.txt.
watch() {
	t0=$1
	banner=""
	tee "$RUN/serial.log" | while IFS= read -r line; do
		line=${line%"$CR"}
		case $line in
		*"Xen version"*)
			if [ -z "$banner" ]; then
				banner=1
				echo "qemu-start-to-xen-banner $(since "$t0")" >>"$RUN/boot-times.txt"
				echo "  [$(since "$t0") s] $line"
			fi ;;
		"xen-driver: dom0 up"*)
			echo "qemu-start-to-dom0-driver $(since "$t0")" >>"$RUN/boot-times.txt"
			echo "  [$(since "$t0") s] $line" ;;
		"xen-driver:"*|ok:*|FAIL:*|step:*|"step "*|*" passed, "*" failed")
			echo "  [$(since "$t0") s] $line" ;;
		esac
	done
}

# boot: run QEMU once; its exit status ends up in $RUN/qemu.rc.
boot() {
	t0=$(now)
	{
		timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
			-machine q35 -cpu qemu64,+svm,+npt -m 2048 -smp 1 \
			-display none -monitor none -serial stdio -no-reboot \
			-kernel "$XEN" \
			-append "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1" \
			-initrd "$DOM0/vmlinuz console=hvc0 root=/dev/vda rw init=/sbin/tandem-xen-driver,$DOM0/initrd.img" \
			-drive file="$RUN/dom0.img",if=virtio,format=raw,cache=unsafe \
			</dev/null 2>&1
		echo $? >"$RUN/qemu.rc"
	} | watch "$t0"
	echo "qemu-total $(since "$t0")" >>"$RUN/boot-times.txt"
}

# collect: read /root/results out of the image (fsck first: a run cut off by
# the timeout leaves a journal to replay).
collect() {
	e2fsck -fy "$RUN/dom0.img" >"$RUN/e2fsck.log" 2>&1
	rm -rf "$RUN/results"
	debugfs -R "rdump /root/results $RUN" "$RUN/dom0.img" >>"$RUN/debugfs.log" 2>&1
	[ -d "$RUN/results" ] || mkdir -p "$RUN/results"
}

# fault_seen: up to three distinct log lines with a fault signature.
fault_seen() {
	grep -hE "$FAULT_RE" "$RUN/serial.log" "$RUN"/results/*.log \
		"$RUN/results/dmesg.txt" 2>/dev/null | tr -d '\r' | cut -c1-160 |
		awk '!seen[$0]++' | head -3
}

attempt=1
while :; do
	say "scenario $NAME, attempt $attempt (timeout ${TIMEOUT} s, work dir $RUN)"
	T=$(now)
	prepare
	say "image prepared ($(since "$T") s); booting Xen under QEMU"
	boot
	collect
	qrc=$(cat "$RUN/qemu.rc" 2>/dev/null || echo "?")
	src=$(cat "$RUN/results/rc" 2>/dev/null || echo "none")
	[ "$qrc" = 124 ] || [ "$qrc" = 137 ] && say "QEMU killed by the ${TIMEOUT} s timeout"
	[ "$src" = 0 ] && break
	faults=$(fault_seen)
	if [ -n "$faults" ] && [ "$attempt" -eq 1 ]; then
		say "scenario failed (rc $src) with the known emulation fault signature:"
		echo "$faults" | sed 's/^/    /'
		say "RETRYING once (the failed attempt's logs are in $RUN.attempt1)"
		rm -rf "$RUN.attempt1"
		mv "$RUN" "$RUN.attempt1"
		rm -f "$RUN.attempt1/dom0.img"
		attempt=2
		continue
	fi
	[ -n "$faults" ] && say "emulation fault signature seen again: $(echo "$faults" | head -1)"
	break
done

echo "---- timings (s) ----"
cat "$RUN/boot-times.txt" "$RUN/results/boot.txt" "$RUN/results/steps.txt" 2>/dev/null |
	awk '{ printf "  %-32s %s\n", $1, $2 }'
[ -n "${KEEP_IMAGE:-}" ] || rm -f "$RUN/dom0.img"
say "logs: $RUN/serial.log, $RUN/results/"
if [ "$src" = 0 ]; then
	say "scenario $NAME PASSED (attempt $attempt)"
	cat "$RUN/results/summary.txt"
	exit 0
fi
say "scenario $NAME FAILED (scenario rc $src, qemu rc $qrc, attempt $attempt)"
if [ -f "$RUN/results/scenario.log" ]; then
	grep -E '^(FAIL|step )' "$RUN/results/scenario.log" | sed 's/^/    /'
fi
if [ -s "$RUN/results/summary.txt" ]; then
	cat "$RUN/results/summary.txt"
else
	tail -25 "$RUN/serial.log" | tr -d '\r' | sed 's/^/    | /'
	echo "0 passed, 1 failed"
fi
exit 1
