#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers for the mount-guard selftests: fixtures made with the real tools,
# then put into the state a hibernated or crashed OS leaves (see
# Documentation/hibernation-evidence.rst for the mapping), and checks.
. "$(dirname "$0")/lib.sh"

G=/sys/kernel/snapguard/guard
MNT=/tmp/sg-mnt
mkdir -p $MNT

# poke DEV OFFSET HEXBYTES: write bytes at a byte offset, in place.
poke() {
	printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# peek DEV OFFSET: one byte as a number.
peek() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
setbits() { poke "$1" "$2" "$(printf '%02x' $(( $(peek "$1" "$2") | $3 )))"; }

mk_clean() { # TYPE DEV
	case $1 in
	vfat) mkfs.vfat -F 32 "$2" ;;
	msdos) mkfs.vfat -F 16 "$2" ;;
	exfat) mkfs.exfat "$2" ;;
	ntfs3|ntfs) mkntfs -F -Q -q "$2" ;;
	esac >/dev/null 2>&1
}

# A hiberfil.sys in the NTFS root whose header starts with SIG (e.g. HIBR):
# what Windows leaves when it hibernates or "shuts down" with Fast Startup.
mk_ntfs_hiberfil() { # DEV SIG [KiB]
	local f=/tmp/hiberfil.$$
	mkntfs -F -Q -q "$1" >/dev/null 2>&1 || return 1
	head -c $((${3:-256} * 1024)) /dev/zero >$f
	printf '%s' "$2" | dd of=$f conv=notrunc status=none
	ntfscp -f "$1" $f hiberfil.sys >/dev/null 2>&1
	local r=$?
	rm -f $f
	return $r
}

# FAT: the boot-sector dirty flag Windows and Linux set while mounted.
mk_fat_dirty() { # DEV FATBITS
	mkfs.vfat -F "$2" "$1" >/dev/null 2>&1 || return 1
	if [ "$2" = 32 ]; then setbits "$1" $((0x41)) 1; else setbits "$1" $((0x25)) 1; fi
}

# exFAT: VolumeFlags (boot sector offset 106) VolumeDirty (bit 1) or
# MediaFailure (bit 2); these bytes are excluded from the boot checksum.
mk_exfat_flag() { # DEV BIT
	mkfs.exfat "$1" >/dev/null 2>&1 || return 1
	setbits "$1" 106 "$2"
}

# A swap area holding a Linux hibernation image: swsusp replaces the
# SWAPSPACE2 signature at PAGE_SIZE - 10 with its own.
mk_swap_hiber() { # DEV SIG
	mkswap "$1" >/dev/null 2>&1 || return 1
	poke "$1" 4086 "$(printf '%s' "$2" | xxd -p)"
	[ ${#2} -lt 10 ] && poke "$1" $((4086 + ${#2})) "$(printf '%0*d' $(( (10 - ${#2}) * 2 )) 0)"
	return 0
}

is_mounted_ro() { grep -q " $1 [^ ]* ro[, ]" /proc/mounts; }
is_mounted_rw() { grep -q " $1 [^ ]* rw[, ]" /proc/mounts; }
stat_of() { sed -n "s/^$1 //p" $G/stats; }
sum_of() { sha256sum "$1" | cut -d' ' -f1; }
