#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Mount guard: for each guarded type and each kind of evidence, a read-write
# mount falls back to read-only with the kernel's reason, and the volume is
# byte-for-byte unchanged. Clean volumes mount read-write. Remount to rw,
# the new mount API and loop-mounted images are refused too.
. "$(dirname "$0")/guard_lib.sh"

DEV=/dev/vda
modprobe snapguard
echo volume >$G/policy   # this file tests each volume's own evidence
echo refuse >$G/unclean
echo enforce >$G/mode

# CASE: "type fixture-command description"
cases=(
	"vfat|mk_fat_dirty $DEV 32|FAT32 dirty flag"
	"vfat|mk_fat_dirty $DEV 16|FAT16 dirty flag"
	"vfat|mk_fat_dirty $DEV 12|FAT12 dirty flag"
	"msdos|mk_fat_dirty $DEV 16|FAT16 dirty flag"
	"exfat|mk_exfat_flag $DEV 2|exFAT VolumeDirty"
	"exfat|mk_exfat_flag $DEV 4|exFAT MediaFailure"
	"ntfs3|mk_ntfs_hiberfil $DEV HIBR|hiberfil.sys HIBR"
	"ntfs3|mk_ntfs_hiberfil $DEV hibr|hiberfil.sys hibr (XP)"
	"ntfs3|mk_ntfs_hiberfil $DEV RSTR|hiberfil.sys RSTR (resuming)"
	"ntfs3|mk_ntfs_hiberfil $DEV HIBR 4096|large fragmented-capable hiberfil.sys"
	"ntfs|mk_ntfs_hiberfil $DEV HIBR|hiberfil.sys HIBR"
)
clean=(vfat msdos exfat ntfs3 ntfs)

ktap_plan $(( ${#cases[@]} * 3 + ${#clean[@]} + 7 ))

for c in "${cases[@]}"; do
	IFS='|' read -r fs fix desc <<<"$c"
	$fix || { ktap_fail "$fs $desc: fixture"; ktap_fail "-"; ktap_fail "-"; continue; }
	before=$(sum_of $DEV)
	dmesg_mark
	out=$(mount -t $fs $DEV $MNT 2>&1)
	if is_mounted_ro $MNT; then
		ktap_ok "$fs $desc: mount fell back to read-only"
	else
		ktap_fail "$fs $desc: not read-only"
		printf '%s\n' "$out" "$(grep " $MNT " /proc/mounts)" | sed 's/^/# /'
	fi
	if dmesg_since | grep -q "snapguard: refused read-write mount of vda ($fs): .*remedy: .*override: echo vda > $G/allow_once"; then
		ktap_ok "$fs $desc: kernel line names device, evidence, remedy, override"
	else
		ktap_fail "$fs $desc: kernel line"
		dmesg_since | sed 's/^/# /'
	fi
	umount $MNT 2>/dev/null
	after=$(sum_of $DEV)
	if [ "$before" = "$after" ]; then
		ktap_ok "$fs $desc: device unchanged"
	else
		ktap_fail "$fs $desc: device changed"
	fi
done

for fs in "${clean[@]}"; do
	mk_clean $fs $DEV
	mount -t $fs $DEV $MNT 2>/dev/null
	if is_mounted_rw $MNT && echo data >$MNT/probe-file; then
		ktap_ok "$fs clean volume mounts read-write"
	else
		ktap_fail "$fs clean volume mounts read-write"
	fi
	umount $MNT 2>/dev/null
done

# remount,rw of a read-only mount of a hibernated volume
mk_ntfs_hiberfil $DEV HIBR
mount -t ntfs3 -o ro $DEV $MNT
ktap_expect_fail "remount,rw of hibernated NTFS is refused" "write-protected" mount -o remount,rw $MNT
ktap_check "still mounted read-only after the refused remount" is_mounted_ro $MNT
ktap_expect_fail "new-API reconfigure to rw is refused" "Read-only file system" ./newmount rw $MNT
umount $MNT

# new mount API create
ktap_expect_fail "fsopen/fsconfig/fsmount read-write is refused, reason in the fs_context log" \
	"fclog: e ntfs3: snapguard: vda may belong to a hibernated OS" ./newmount create ntfs3 $DEV $MNT
ktap_check "new mount API read-only mount works" ./newmount create ntfs3 $DEV $MNT ro
umount $MNT

# loop-mounted image file
img=/tmp/hib.img
truncate -s 32M $img
mk_ntfs_hiberfil $img HIBR
isum=$(sum_of $img)
mount -o loop -t ntfs3 $img $MNT 2>/dev/null
ktap_check "loop-mounted hibernated image falls back to read-only" is_mounted_ro $MNT
umount $MNT 2>/dev/null
losetup -D
ktap_check "image file unchanged" test "$isum" = "$(sum_of $img)"
rm -f $img
ktap_finish
