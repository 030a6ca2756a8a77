#!/bin/sh
# deps.sh - install the Debian packages tandem's build, tests and benchmarks
# need.  As root it installs what is missing; otherwise it prints the exact
# apt-get line and exits non-zero.  Prints nothing when all are present.
#
#   deps.sh          the packages above (what `make demo` / `make test` need)
#   deps.sh --xen    those, plus XEN_PKGS: the host side of the nested Xen
#                    test bed (tests/xen/, `make test-xen`); never installed
#                    without --xen, so a fresh `make test` is not slowed
set -eu

PKGS="build-essential clang llvm libclang-rt-14-dev
libxxhash-dev libcmocka-dev libjson-c-dev libconfig-dev
libxen-dev libnl-route-3-dev
libevent-dev libssl-dev liblz4-dev librdmacm-dev libibverbs-dev
ibverbs-providers rdma-core
redis-tools redis-server netcat-openbsd iproute2 iperf3 lz4 openssl"

# Host side of the Xen test bed only (tests/xen/build.sh, run.sh): QEMU to
# emulate the machine Xen runs on, debootstrap for dom0's root, cpio and a
# static busybox for the domU initramfs, e2fsprogs for mkfs.ext4 -d/debugfs.
XEN_PKGS="qemu-system-x86 debootstrap cpio busybox-static e2fsprogs"

if [ "${1:-}" = "--xen" ]; then
	PKGS="$PKGS $XEN_PKGS"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing Debian packages:$missing" >&2
	echo "deps.sh: run as root:  apt-get install -y$missing" >&2
	exit 1
fi
echo "deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends $missing; then
	apt-get update
	apt-get install -y --no-install-recommends $missing
fi
