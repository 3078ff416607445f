#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Mount guard policy: audit mode, allow_once, the machine-wide policy (a
# sleeping OS on any attached disk protects every guarded volume), the
# volume policy, the unclean knob, and the stats counters.
. "$(dirname "$0")/guard_lib.sh"

ktap_plan 20
rmmod snapguard 2>/dev/null
modprobe snapguard
echo volume >$G/policy

# --- audit: allows, logs what it would have refused
fixture fat32-dirty /dev/vda
echo audit >$G/mode
dmesg_mark
mount -t vfat /dev/vda $MNT 2>/dev/null
ktap_check "audit mode mounts a dirty volume read-write" is_mounted_rw $MNT
ktap_check "audit mode logs what it would refuse" \
	dmesg_has 'snapguard: audit: would refuse read-write mount of vda (vfat)'
umount $MNT
echo enforce >$G/mode

# --- the unclean knob
echo allow >$G/unclean
mount -t vfat /dev/vda $MNT 2>/dev/null
ktap_check "unclean=allow lets a dirty-only volume mount read-write" is_mounted_rw $MNT
umount $MNT
echo refuse >$G/unclean
fixture fat32-dirty /dev/vda   # the rw mount above cleaned the flag
mount -t vfat /dev/vda $MNT 2>/dev/null
ktap_check "unclean=refuse refuses it" is_mounted_ro $MNT
umount $MNT

# --- allow_once, by name, path and MAJ:MIN; exactly once
fixture ntfs-hiberfil-HIBR /dev/vda
ktap_expect_fail "allow_once rejects a device that does not exist" "No such device" \
	bash -c "echo nosuchdisk > $G/allow_once"
ktap_expect_fail "allow_once rejects garbage" "Invalid argument" bash -c "echo '8:x' > $G/allow_once"
ktap_check "allow_once accepts 'vda'" sh -c "echo vda > $G/allow_once"
majmin=$(cat /sys/block/vda/dev)
ktap_check "allow_once lists the pending entry" grep -q "^$majmin vda$" $G/allow_once
ovr=$(stat_of allowed_override)
mount -t ntfs3 /dev/vda $MNT 2>/dev/null
ktap_check "allow_once lets the next read-write mount through" is_mounted_rw $MNT
umount $MNT
ktap_check "the entry is used up" test -z "$(cat $G/allow_once)"
mount -t ntfs3 /dev/vda $MNT 2>/dev/null
ktap_check "the mount after that is refused again" is_mounted_ro $MNT
umount $MNT
echo "$majmin" >$G/allow_once && echo /dev/vda >$G/allow_once
ktap_check "MAJ:MIN and /dev path name the same device once" test "$(wc -l <$G/allow_once)" = 1
echo clear >$G/allow_once
ktap_check "stats counted one override" test "$(stat_of allowed_override)" = $((ovr + 1))

# --- machine policy: a hibernated NTFS or swap elsewhere protects a clean FAT
fixture fat32-clean /dev/vdb
fixture ntfs-hiberfil-HIBR /dev/vda
echo machine >$G/policy
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "machine: clean FAT refused while a hibernated NTFS disk is attached" is_mounted_ro $MNT
umount $MNT
ktap_check "the reason names the other device" grep -q "sleeping OS on vda" $G/last_refusal
echo volume >$G/policy
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "volume policy: the same clean FAT mounts read-write" is_mounted_rw $MNT
umount $MNT
echo machine >$G/policy

# the "disk" holding a hibernated Linux swap is a loop device: attach, detach
fixture ntfs-clean /dev/vda
img=/tmp/swap.img
fixture swap-S1SUSPEND-4096 $img
loopdev=$(losetup -f --show $img)
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "machine: clean FAT refused while a hibernated swap ($loopdev) is attached" is_mounted_ro $MNT
umount $MNT
losetup -d "$loopdev"
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "allowed again after that device is detached" is_mounted_rw $MNT
umount $MNT

# --- stats
c=$(stat_of checked); r=$(stat_of refused)
mount -t vfat /dev/vdb $MNT 2>/dev/null; umount $MNT
mount -t vfat -o ro /dev/vdb $MNT; umount $MNT
ktap_check "stats: a rw mount is checked, a ro mount is not" test "$(stat_of checked)" = $((c + 1))
ktap_check "stats: refusals counted" test "$(stat_of refused)" -ge 4
rm -f $img
ktap_finish
