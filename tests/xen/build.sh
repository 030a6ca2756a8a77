#!/bin/sh
# build.sh - build and cache the nested Xen test bed, from Debian packages
# only (see tests/xen/README.md).
#
#   tests/xen/build.sh [--cache DIR]        (default DIR: build/xen-cache)
#
# Artifacts, each rebuilt only when what it came from changed (a "stamp"
# file beside it holds the package versions and recipe it was built from):
#
#   DIR/xen/xen            Xen's multiboot image, for QEMU's -kernel: from
#                          `apt-get download xen-hypervisor-4.17-amd64`,
#                          unpacked with dpkg-deb -x (nothing is installed on
#                          the host)
#   DIR/dom0/dom0.img      dom0's root as an ext4 image (mkfs.ext4 -d):
#                          debootstrap minbase bookworm, then the Debian
#                          kernel, Xen's toolstack, busybox, ... (unpacked in
#                          a scratch directory under $TMPDIR or /var/tmp)
#   DIR/dom0/vmlinuz,      the dom0 kernel and its initramfs-tools initrd,
#   DIR/dom0/initrd.img    for QEMU's -initrd (multiboot modules)
#   DIR/domu/vmlinuz,      the domU: the same Debian kernel, and a busybox
#   DIR/domu/initrd.gz     initramfs running pagetest (tests/xen/guest/)
#
# Environment: XEN_VERSION pins the hypervisor package version (default: the
# candidate apt has); MIRROR overrides the Debian mirror debootstrap uses
# (default: the one apt is configured with).  Needs root (debootstrap, chroot).
set -eu

cd "$(dirname "$0")/../.."
HERE=tests/xen
CACHE=build/xen-cache
while [ $# -gt 0 ]; do
	case $1 in
	--cache) CACHE=$2; shift 2 ;;
	--cache=*) CACHE=${1#--cache=}; shift ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done

# Bump a recipe number when the steps that make an artifact change, so a
# cached artifact made the old way is rebuilt.
XEN_RECIPE=1
DOM0_RECIPE=3
DOMU_RECIPE=1

XEN_PKG=xen-hypervisor-4.17-amd64
# The second line: what tandem's own binaries link against (run.sh copies
# build/tandem, build/tandemd and the test tools into the image).
DOM0_PKGS="linux-image-amd64 xen-utils-4.17 xenstore-utils iproute2 kmod procps
initramfs-tools busybox redis-tools
libjson-c5 libxxhash0 liblz4-1 libevent-2.1-7 libevent-openssl-2.1-7
libevent-pthreads-2.1-7 libssl3 libconfig9 libnl-3-200 libnl-route-3-200
librdmacm1 libibverbs1"

say() { echo "build.sh: $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

if [ "$(id -u)" -ne 0 ]; then
	die "needs root (debootstrap and chroot); run as root"
fi
missing=""
for t in debootstrap cpio mkfs.ext4 debugfs qemu-system-x86_64; do
	command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" ||
	missing="$missing busybox-static"
if [ -n "$missing" ]; then
	say "missing on the host:$missing; installing the test bed's packages (scripts/deps.sh --xen)"
	scripts/deps.sh --xen
fi

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
exec 9>"$CACHE/.lock"
flock 9

# candidate VERSION of a package, as apt would install it now
cand() {
	v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^  Candidate: //p')
	[ -n "$v" ] && [ "$v" != "(none)" ] || die "apt knows no candidate for $1 (apt-get update?)"
	echo "$v"
}

# The Debian repositories apt is configured with: "URI SUITE" lines.
repos() {
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(ORIGIN)' |
		awk '$3 == "Debian" && $2 ~ /^bookworm/ { print $1, $2 }' | sort -u
}
MIRROR=${MIRROR:-$(repos | awk '$2 == "bookworm" { print $1; exit }')}
[ -n "$MIRROR" ] || die "no bookworm mirror in apt's configuration; set MIRROR"

fresh() { # fresh DIR STAMPTEXT: true when DIR/stamp holds STAMPTEXT
	[ -f "$1/stamp" ] && [ "$(cat "$1/stamp")" = "$2" ]
}

T_ALL=$(now)

# ---- (a) the hypervisor -----------------------------------------------------
T=$(now)
XEN_VERSION=${XEN_VERSION:-$(cand $XEN_PKG)}
XEN_STAMP="recipe $XEN_RECIPE
$XEN_PKG=$XEN_VERSION"
XD=$CACHE/xen
if fresh "$XD" "$XEN_STAMP" && [ -s "$XD/xen" ]; then
	say "xen hypervisor $XEN_VERSION: cached ($(since "$T") s)"
else
	say "xen hypervisor $XEN_VERSION: downloading"
	rm -rf "$XD" "$XD.tmp"
	mkdir -p "$XD.tmp/deb"
	chmod 777 "$XD.tmp/deb"  # apt's _apt sandbox user writes the download
	(cd "$XD.tmp/deb" && apt-get download -q "$XEN_PKG=$XEN_VERSION") >/dev/null
	deb=$(ls "$XD.tmp"/deb/*.deb)
	got=$(dpkg-deb -f "$deb" Version)
	[ "$got" = "$XEN_VERSION" ] || die "downloaded $XEN_PKG $got, wanted $XEN_VERSION"
	dpkg-deb -x "$deb" "$XD.tmp/x"
	set -- "$XD.tmp"/x/boot/xen-*.gz
	[ $# -eq 1 ] && [ -f "$1" ] || die "expected one boot/xen-*.gz in $deb, found: $*"
	zcat "$1" >"$XD.tmp/xen"
	rm -rf "$XD.tmp/x" "$XD.tmp/deb"
	printf '%s\n' "$XEN_STAMP" >"$XD.tmp/stamp"
	mv "$XD.tmp" "$XD"
	say "xen hypervisor $XEN_VERSION: built ($(since "$T") s)"
fi

# ---- (b) dom0's root, kernel, initrd, image ----------------------------------
# The root is unpacked in a scratch directory outside build/ and removed
# once the image is made: under build/ its many *.d directories would be
# picked up by the Makefile's dependency-file include.
T=$(now)
DOM0_STAMP="recipe $DOM0_RECIPE
mirror $MIRROR
$(repos)"
# one apt-cache call for all of them: "PKG=CANDIDATE" lines
cands=$(apt-cache policy $DOM0_PKGS 2>/dev/null |
	awk '/^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
	     /^  Candidate: / { print p "=" $2 }')
for p in $DOM0_PKGS; do
	echo "$cands" | grep -q "^$p=[^(]" || die "apt knows no candidate for $p (apt-get update?)"
done
DOM0_STAMP="$DOM0_STAMP
$cands"
# begin_artifact DIR NAME: start DIR afresh (built in DIR.tmp) with a
# scratch directory $WORK outside build/, removed on exit.
begin_artifact() {
	rm -rf "$1" "$1.tmp"
	mkdir -p "$1.tmp"
	WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/tandem-xen-$2.XXXXXX")
	trap 'rm -rf "$WORK"' EXIT
	trap 'exit 1' INT TERM
}

DD=$CACHE/dom0
if fresh "$DD" "$DOM0_STAMP" && [ -s "$DD/vmlinuz" ] && [ -s "$DD/initrd.img" ] &&
	[ -s "$DD/dom0.img" ] && [ -s "$DD/xen-netfront.ko" ]; then
	say "dom0 root, kernel, image: cached ($(since "$T") s)"
else
	begin_artifact "$DD" dom0
	R=$WORK/root
	say "dom0 root: debootstrap --variant=minbase bookworm ($MIRROR)"
	debootstrap --variant=minbase bookworm "$R" "$MIRROR" >"$DD.tmp/debootstrap.log" 2>&1 ||
		{ tail -20 "$DD.tmp/debootstrap.log" >&2; die "debootstrap failed"; }
	say "dom0 root: debootstrap done ($(since "$T") s)"
	T2=$(now)
	# No service may start inside the chroot.
	printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
	chmod 755 "$R/usr/sbin/policy-rc.d"
	repos | awk '{ print "deb", $1, $2, "main" }' >"$R/etc/apt/sources.list"
	echo dom0 >"$R/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tdom0\n' >"$R/etc/hosts"
	: >"$R/etc/fstab"
	# A private mount namespace: /proc and /sys for the package scripts go
	# away with it, whatever happens.
	unshare --mount --propagation private sh -c '
		mount -t proc proc "$1/proc" && mount -t sysfs sys "$1/sys" &&
		DEBIAN_FRONTEND=noninteractive chroot "$1" sh -c "
			apt-get update -q &&
			apt-get install -q -y --no-install-recommends $2 &&
			apt-get clean"' sh "$R" "$(echo $DOM0_PKGS)" \
		>"$DD.tmp/apt.log" 2>&1 ||
		{ tail -30 "$DD.tmp/apt.log" >&2; die "installing dom0 packages failed"; }
	rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin
	printf '# tandem Xen test bed: log every guest console under /var/log/xen/console\nXENCONSOLED_ARGS="--log=guest"\n' \
		>>"$R/etc/default/xen"
	chroot "$R" dpkg-query -W >"$DD.tmp/installed"
	set -- "$R"/boot/vmlinuz-*
	[ $# -eq 1 ] && [ -f "$1" ] || die "expected one kernel in dom0's /boot, found: $*"
	kver=${1##*/vmlinuz-}
	[ -f "$R/boot/initrd.img-$kver" ] || die "no initrd.img-$kver in dom0's /boot"
	cp "$1" "$DD.tmp/vmlinuz"
	cp "$R/boot/initrd.img-$kver" "$DD.tmp/initrd.img"
	echo "$kver" >"$DD.tmp/kernel-version"
	# netfront, for the domU's initramfs (the same kernel boots the domU).
	nf=$(find "$R/lib/modules/$kver" -name 'xen-netfront.ko*' | head -1)
	case $nf in
	*.ko) cp "$nf" "$DD.tmp/xen-netfront.ko" ;;
	*.ko.xz) xz -dc "$nf" >"$DD.tmp/xen-netfront.ko" ;;
	*) die "no usable xen-netfront module for $kver: '$nf'" ;;
	esac
	say "dom0 root: packages installed, kernel $kver ($(since "$T2") s)"
	T2=$(now)
	# The root plus room for save images, logs and results (sparse).
	mb=$(( $(du -sm "$R" | cut -f1) + 1536 ))
	truncate -s "${mb}M" "$DD.tmp/dom0.img"
	mkfs.ext4 -q -F -L dom0 -d "$R" "$DD.tmp/dom0.img" >"$DD.tmp/mkfs.log" 2>&1 ||
		{ cat "$DD.tmp/mkfs.log" >&2; die "mkfs.ext4 -d failed"; }
	rm -rf "$WORK"
	say "dom0 image: ${mb} MiB (sparse), mkfs.ext4 -d ($(since "$T2") s)"
	printf '%s\n' "$DOM0_STAMP" >"$DD.tmp/stamp"
	mv "$DD.tmp" "$DD"
	say "dom0 root, kernel, image: built ($(since "$T") s)"
fi
KVER=$(cat "$DD/kernel-version")

# ---- (c) the domU -------------------------------------------------------------
T=$(now)
CC=${CC:-cc}
DOMU_STAMP="recipe $DOMU_RECIPE
kernel $KVER $(sha256sum <"$DD/vmlinuz" | cut -c1-16)
busybox-static=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)
cc $($CC -dumpfullversion 2>/dev/null || $CC -dumpversion)
$(cd $HERE/guest && sha256sum pagetest.c init pt-status)"
UD=$CACHE/domu
if fresh "$UD" "$DOMU_STAMP" && [ -s "$UD/initrd.gz" ] && [ -s "$UD/vmlinuz" ]; then
	say "domU kernel + initramfs: cached ($(since "$T") s)"
else
	begin_artifact "$UD" domu
	S=$WORK/initramfs
	mkdir -p "$S/bin" "$S/dev" "$S/lib/modules" "$S/proc" "$S/sys" "$S/run" "$S/tmp"
	$CC -std=c11 -O2 -Wall -Wextra -Werror -static $HERE/guest/pagetest.c -o "$S/bin/pagetest"
	strip "$S/bin/pagetest"
	cp /bin/busybox "$S/bin/busybox"
	cp $HERE/guest/init "$S/init"
	cp $HERE/guest/pt-status "$S/bin/pt-status"
	chmod 755 "$S/init" "$S/bin/pt-status"
	# netfront, for the TCP service; the console (hvc) is built in.
	cp "$DD/xen-netfront.ko" "$S/lib/modules/"
	mknod "$S/dev/console" c 5 1
	mknod "$S/dev/null" c 1 3
	(cd "$S" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$UD.tmp/initrd.gz"
	cp "$DD/vmlinuz" "$UD.tmp/vmlinuz"
	rm -rf "$WORK"
	printf '%s\n' "$DOMU_STAMP" >"$UD.tmp/stamp"
	mv "$UD.tmp" "$UD"
	say "domU kernel + initramfs: built, $(du -k "$UD/initrd.gz" | cut -f1) KiB initramfs ($(since "$T") s)"
fi

say "all artifacts in $CACHE ($(since "$T_ALL") s)"
