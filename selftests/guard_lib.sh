#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers for the mount-guard selftests. Fixtures come from
# tools/fixtures/mkimages.sh (copied to ./fixtures in the guest), the same
# images the host tests use (see Documentation/hibernation-evidence.rst).
. "$(dirname "$0")/lib.sh"

G=/sys/kernel/snapguard/guard
MNT=/tmp/sg-mnt
mkdir -p $MNT

# fixture NAME DEV: write fixture image NAME onto block device or file DEV.
fixture() {
	local d=/tmp/fx-one
	rm -rf $d
	"$(dirname "$0")"/fixtures/mkimages.sh $d "$1" >/dev/null 2>&1 || return 1
	if [ -b "$2" ]; then
		dd if=$d/$1.img of="$2" bs=1M status=none && blockdev --flushbufs "$2"
	else
		cp $d/$1.img "$2"
	fi
	local r=$?
	rm -rf $d
	return $r
}

is_mounted_ro() { grep -q " $1 [^ ]* ro[, ]" /proc/mounts; }
is_mounted_rw() { grep -q " $1 [^ ]* rw[, ]" /proc/mounts; }
stat_of() { sed -n "s/^$1 //p" $G/stats; }
sum_of() { sha256sum "$1" | cut -d' ' -f1; }
