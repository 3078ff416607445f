#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers for the mount-guard selftests. Fixtures come from
# tools/fixtures/mkimages.sh, the same images the host tests use (see
# Documentation/hibernation-evidence.rst).
. "$(dirname "$0")/lib.sh"

G=/sys/kernel/snapguard/guard
MNT=/tmp/sg-mnt
mkdir -p $MNT

# The fixture images and expect.tsv: /fixtures, the read-only disk
# tools/vm.py attaches (made on the host by the same script), else made here.
FIXTURES=/fixtures
if [ ! -f $FIXTURES/expect.tsv ]; then
	FIXTURES=/tmp/fx-all
	if [ ! -f $FIXTURES/expect.tsv ]; then
		"$(dirname "$0")"/fixtures/mkimages.sh $FIXTURES >/tmp/fx.log 2>&1 ||
			{ cat /tmp/fx.log; exit 1; }
	fi
fi

# fixture NAME DEV: write fixture image NAME onto block device or file DEV.
fixture() {
	[ -f "$FIXTURES/$1.img" ] || return 1
	if [ -b "$2" ]; then
		# A device showing a sleeping OS is read-only at the block layer
		# while snapguard is loaded (guard_protect.sh): lift that first,
		# as a user rewriting the device would.
		[ -w $G/unprotect ] && echo "$2" >$G/unprotect
		dd if="$FIXTURES/$1.img" of="$2" bs=1M status=none && blockdev --flushbufs "$2"
	else
		cp "$FIXTURES/$1.img" "$2"
	fi
}

is_mounted_ro() { grep -q " $1 [^ ]* ro[, ]" /proc/mounts; }
is_mounted_rw() { grep -q " $1 [^ ]* rw[, ]" /proc/mounts; }
stat_of() { sed -n "s/^$1 //p" $G/stats; }
sum_of() { sha256sum "$1" | cut -d' ' -f1; }
