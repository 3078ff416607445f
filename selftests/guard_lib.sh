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

# Scratch disks that fixtures were written to, and how many MiB: zeroed
# when the test exits, so that no sleeping-OS evidence is left on them for
# the programs after it (the next module load's scan would make such a
# disk read-only: guard_override.sh left a Fast-Startup NTFS image on
# /dev/vda, target_unload.sh reloaded the module, and target_replay.sh
# found /dev/vda protected).
declare -A FIXTURE_MIB
fixture_wipe() {
	local d
	for d in "${!FIXTURE_MIB[@]}"; do
		umount "$d" 2>/dev/null
		[ -w $G/unprotect ] && echo "$d" >$G/unprotect 2>/dev/null
		dd if=/dev/zero of="$d" bs=1M count="${FIXTURE_MIB[$d]}" oflag=direct status=none ||
			echo "# could not wipe the fixture on $d (ro=$(blockdev --getro "$d"))"
	done
}
trap fixture_wipe EXIT

# fixture NAME DEV: write fixture image NAME onto block device or file DEV.
fixture() {
	[ -f "$FIXTURES/$1.img" ] || return 1
	if [ -b "$2" ]; then
		# A device showing a sleeping OS is read-only at the block layer
		# while snapguard is loaded (guard_protect.sh): lift that first,
		# as a user rewriting the device would.
		[ -w $G/unprotect ] && echo "$2" >$G/unprotect
		local mib=$((($(stat -c %s "$FIXTURES/$1.img") + 1048575) >> 20))
		[ "${FIXTURE_MIB[$2]:-0}" -ge $mib ] || FIXTURE_MIB[$2]=$mib
		dd if="$FIXTURES/$1.img" of="$2" bs=1M status=none && blockdev --flushbufs "$2"
	else
		cp "$FIXTURES/$1.img" "$2"
	fi
}

is_mounted_ro() { grep -q " $1 [^ ]* ro[, ]" /proc/mounts; }
is_mounted_rw() { grep -q " $1 [^ ]* rw[, ]" /proc/mounts; }
stat_of() { sed -n "s/^$1 //p" $G/stats; }
sum_of() { sha256sum "$1" | cut -d' ' -f1; }
