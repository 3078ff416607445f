#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Block-layer protection: a device that shows a sleeping OS is made
# read-only at the block layer (the BLKROSET state), so that programs that
# write without mounting (ntfs-3g -o remove_hiberfile, dd) fail too. Devices
# attached before the module loads are caught at load; devices attached
# after, by the protect knob (what `snapguard probe --protect` from the udev
# rule does) and by the mount guard's machine scan. Then the overrides
# (unprotect, allow_once), a read-only state the user set (never cleared),
# and unloading (lifts what snapguard set).
. "$(dirname "$0")/guard_lib.sh"

ktap_plan 23
rmmod snapguard 2>/dev/null
HIB=$FIXTURES/ntfs-hiberfil-HIBR.img
ro_of() { blockdev --getro "$1"; }
is_ro() { test "$(ro_of "$1")" = 1; }
is_rw() { test "$(ro_of "$1")" = 0; }
name_of() { echo "${1#/dev/}"; }
listed() { grep -q "^$(cat /sys/class/block/$(name_of "$1")/dev) $(name_of "$1") $2\$" $G/protect; }
unchanged() { cmp "$HIB" "$1"; }
# ntfs-3g DEV: what a user runs to get rid of hiberfil.sys and write.
ntfs3g_rw() { ntfs-3g -o remove_hiberfile "$1" $MNT >/tmp/ntfs3g.log 2>&1; }

# Before load: a hibernated NTFS and a clean one on loop devices.
cp "$HIB" /tmp/pre.img
cp "$FIXTURES/ntfs-clean.img" /tmp/clean.img
pre=$(losetup -f --show /tmp/pre.img)
clean=$(losetup -f --show /tmp/clean.img)
# The earlier tests may have filled the kernel's log buffer, which makes
# the line count of dmesg_mark useless: start from an empty one.
dmesg -C
modprobe snapguard

ktap_check "load: hibernated NTFS attached before load ($pre) is read-only" is_ro $pre
ktap_check "load: clean NTFS ($clean) stays read-write" is_rw $clean
ktap_check "load: the kernel log names the device, the evidence and the override" \
	sh -c "dmesg | grep 'snapguard: $(name_of $pre): made read-only at the block layer' | grep -q 'hiberfil.sys.*echo $(name_of $pre) > $G/unprotect'"
ktap_check "load: protect lists it as protected" listed $pre protected

ntfs3g_rw $pre
ktap_check "ntfs-3g -o remove_hiberfile falls back to a read-only mount" is_mounted_ro $MNT
umount $MNT 2>/dev/null
ktap_expect_fail "dd onto it fails (EPERM from the block layer)" "Operation not permitted" \
	dd if=/dev/zero of=$pre bs=4k count=1 conv=notrunc,fsync status=none
echo off >$G/mode
mount -t ntfs3 $pre $MNT 2>/dev/null
ktap_check "with the mount guard off, the block layer alone keeps ntfs3 read-only" is_mounted_ro $MNT
umount $MNT 2>/dev/null
echo enforce >$G/mode
ktap_check "image byte-for-byte unchanged" unchanged /tmp/pre.img

# After load: the udev rule's path (the protect knob) and the machine scan.
cp "$HIB" /tmp/post.img
cp "$HIB" /tmp/scan.img
cp "$FIXTURES/fat32-clean.img" /tmp/fat.img
post=$(losetup -f --show /tmp/post.img)
scan=$(losetup -f --show /tmp/scan.img)
ktap_check "a device attached after load is read-write until something looks at it" is_rw $post
if command -v snapguard >/dev/null; then
	snapguard probe --protect $post >/tmp/sgp.log 2>&1
	sed 's/^/# /' /tmp/sgp.log
	ktap_check "snapguard probe --protect (the udev rule) makes it read-only" is_ro $post
else
	ktap_diag "no snapguard tool in this system: writing the knob as the tool does"
	echo "$(name_of $post)" >$G/protect
	ktap_check "protect knob (what the udev rule's tool writes) makes it read-only" is_ro $post
fi
mount -o loop -t vfat /tmp/fat.img $MNT 2>/dev/null
umount $MNT 2>/dev/null
ktap_check "the machine scan of a guarded mount makes another new one ($scan) read-only" is_ro $scan
ntfs3g_rw $scan
ktap_check "ntfs-3g on that one falls back to read-only too" is_mounted_ro $MNT
umount $MNT 2>/dev/null

# Overrides.
echo "$(name_of $post)" >$G/unprotect
ktap_check "unprotect lifts it" is_rw $post
ktap_check "protect lists it as unprotected" listed $post unprotected
echo "$(name_of $post)" >$G/protect
ktap_check "a later look does not mark it again" is_rw $post
ntfs3g_rw $post
ktap_check "after the override ntfs-3g -o remove_hiberfile mounts read-write" is_mounted_rw $MNT
umount $MNT 2>/dev/null
ktap_check "and writes (hiberfil.sys removed)" sh -c "! cmp -s $HIB /tmp/post.img"
echo "$(name_of $pre)" >$G/allow_once
ktap_check "allow_once lifts it too" is_rw $pre
echo clear >$G/allow_once

# A loop device keeps its read-only flag when detached; snapguard's own
# mark must not outlive the medium it was about.
cp "$HIB" /tmp/stale.img
stale=$(losetup -f --show /tmp/stale.img)
echo "$(name_of $stale)" >$G/protect
ktap_check "another hibernated image marked ($stale)" is_ro $stale
losetup -d $stale
cp "$FIXTURES/ntfs-clean.img" /tmp/clean2.img
losetup $stale /tmp/clean2.img
echo volume >$G/policy   # $scan still shows a sleeping OS
mount -t ntfs3 $stale $MNT 2>/dev/null
ktap_check "a clean image attached to that loop device later mounts read-write" is_mounted_rw $MNT
umount $MNT 2>/dev/null
echo machine >$G/policy
losetup -d $stale

# A read-only state the user set is theirs; unloading lifts only ours.
blockdev --setro $clean
echo "$(name_of $clean)" >$G/unprotect
ktap_check "unprotect leaves a read-only state the user set" is_ro $clean
losetup -d $scan
rmmod snapguard
ktap_check "unloading lifts the read-only state snapguard set (device detached meanwhile)" is_rw $scan
ktap_check "unloading leaves the user's" is_ro $clean
blockdev --setrw $clean
losetup -d $pre $clean $post
losetup -D
rm -f /tmp/pre.img /tmp/clean.img /tmp/post.img /tmp/scan.img /tmp/fat.img /tmp/stale.img /tmp/clean2.img
modprobe snapguard
ktap_finish
