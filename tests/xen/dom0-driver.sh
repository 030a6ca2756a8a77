#!/bin/sh
# dom0-driver.sh - PID 1 of the test bed's dom0 (installed by run.sh as
# /sbin/tandem-xen-driver; the kernel gets init=/sbin/tandem-xen-driver).
#
# Mounts what a system needs, starts Xen's daemons, runs the scenario
# /root/scenario.sh (with /root/xenlib.sh beside it), leaves everything it
# learned under /root/results, and powers the machine off (QEMU runs with
# -no-reboot, so a reboot ends it).  run.sh reads /root/results back out of
# the image with debugfs.
#
#   results/rc             the scenario's exit status (absent: it never ended)
#   results/scenario.log   its output (also on the console)
#   results/steps.txt      "STEP SECONDS" lines the scenario recorded
#   results/boot.txt       dom0 uptime when this script started, xen start time
#   results/dmesg.txt, results/xen-logs/   for post-mortems
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C

say() { echo "xen-driver: $*"; }

mnt() { # mnt TYPE DIR
	mkdir -p "$2"
	mountpoint -q "$2" || mount -t "$1" "$1" "$2"
}
mnt proc /proc
mnt sysfs /sys
mnt devtmpfs /dev
mnt devpts /dev/pts
mnt tmpfs /run
mnt tmpfs /tmp
mkdir -p /run/lock /dev/shm /var/log/xen/console
mount -o remount,rw / 2>/dev/null
hostname dom0
ip link set lo up

R=/root/results
rm -rf "$R"
mkdir -p "$R"
up=$(cut -d' ' -f1 /proc/uptime)
say "dom0 up after ${up} s (kernel uptime)"
echo "dom0-uptime-at-driver $up" >"$R/boot.txt"

t0=$(date +%s.%N)
/etc/init.d/xen start >"$R/xen-start.log" 2>&1
xs=$?
t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "xen-start $t rc=$xs" >>"$R/boot.txt"
say "/etc/init.d/xen start: rc $xs in $t s"

if [ "$xs" -eq 0 ] && [ -f /root/scenario.sh ]; then
	say "scenario start"
	# The scenario writes its own rc file; tee keeps the console live.
	{ sh /root/scenario.sh; echo $? >"$R/rc"; } 2>&1 | tee "$R/scenario.log"
	say "scenario end, rc $(cat "$R/rc" 2>/dev/null || echo none)"
else
	cat "$R/xen-start.log"
	say "xen did not start (or no scenario): not running the scenario"
	echo 1 >"$R/rc"
fi

dmesg >"$R/dmesg.txt" 2>&1
xl dmesg >"$R/xl-dmesg.txt" 2>&1
cp -r /var/log/xen "$R/xen-logs" 2>/dev/null
# Leave the file system clean for debugfs on the host.
for d in $(xl list 2>/dev/null | awk 'NR > 2 { print $1 }'); do
	xl destroy "$d" >/dev/null 2>&1
done
timeout 60 /etc/init.d/xen stop >/dev/null 2>&1
sync
if ! mount -o remount,ro / 2>/dev/null; then
	# Something still holds a file open for writing: force it (sync,
	# emergency read-only remount); run.sh runs e2fsck on the image anyway.
	echo s >/proc/sysrq-trigger
	echo u >/proc/sysrq-trigger
	sleep 1
fi
sync
say "powering off"
busybox reboot -f
