#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The guard decides on what a device holds now, never on a remembered
# answer: a volume (or, under the machine policy, another device) whose
# contents changed in a way that leaves its size, disk sequence number and
# write counters alone must be seen as it is now. Each case first lets the
# guard look at the clean device (a rw mount attempt of the wrong type,
# which fails without writing), then changes the contents behind the
# device's back (a FAT12 volume gets its dirty flag), then mounts
# read-write.
. "$(dirname "$0")/guard_lib.sh"

ktap_plan 6
modprobe snapguard
echo enforce >$G/mode
echo refuse >$G/unclean
echo volume >$G/policy
FX=$FIXTURES
clean=$FX/fat12-clean.img
dirty=$FX/fat12-dirty.img

# look DEV: a read-write mount attempt the guard checks and the file system
# then rejects (exfat cannot mount FAT12 or swap): nothing is written.
look() { mount -t exfat "$1" $MNT 2>/dev/null && umount $MNT; }
# expect_ro DESC DEV: a read-write vfat mount of DEV falls back to read-only.
expect_ro() {
	mount -t vfat "$2" $MNT 2>/dev/null
	ktap_check "$1" is_mounted_ro $MNT
	umount $MNT 2>/dev/null
}
dm_of() { local b; for b in /sys/block/dm-*; do [ "$(cat $b/dm/name)" = "$1" ] && echo /dev/${b##*/}; done; }

# 1. written through the loop device's backing file
cp $clean /tmp/c1.img
l0=$(losetup -f --show /tmp/c1.img)
look $l0
dd if=$dirty of=/tmp/c1.img bs=1M conv=notrunc status=none
expect_ro "write to a loop device's backing file is seen" $l0
losetup -d $l0

# 2. written through a second loop device on the same file
cp $clean /tmp/c1.img
l0=$(losetup -f --show /tmp/c1.img)
l1=$(losetup -f --show /tmp/c1.img)
look $l0
dd if=$dirty of=$l1 bs=1M conv=fsync status=none
expect_ro "write through a second loop device on the same file is seen" $l0
losetup -d $l1; losetup -d $l0

# 3. the loop device's offset changed (LOOP_SET_STATUS64), same size
cat $clean $dirty >/tmp/c2.img
l0=$(losetup -f --show --sizelimit $(stat -c %s $clean) /tmp/c2.img)
look $l0
"$(dirname "$0")"/loop_offset $l0 $(stat -c %s $clean)
expect_ro "a loop device's new offset (LOOP_SET_STATUS64) is seen" $l0
losetup -d $l0

# 4. dmsetup reload to another table of the same size
cp $clean /tmp/c1.img; cp $dirty /tmp/c3.img
la=$(losetup -f --show /tmp/c1.img); lb=$(losetup -f --show /tmp/c3.img)
sec=$(($(stat -c %s $clean) / 512))
dmsetup create sgcache --table "0 $sec linear $la 0"
dm=$(dm_of sgcache)
look $dm
dmsetup reload sgcache --table "0 $sec linear $lb 0"
dmsetup resume sgcache
expect_ro "dmsetup reload of the same size is seen" $dm
dmsetup remove sgcache; losetup -d $la; losetup -d $lb

# 5. writes still in the page cache, by a writer the guard did not see
fixture fat12-clean /dev/vda
look /dev/vda
exec 3</dev/vda                      # keeps the dirty pages from being flushed by a last close
dd if=$dirty of=/dev/vda bs=1M conv=notrunc status=none
expect_ro "buffered writes not yet on the disk are seen" /dev/vda
exec 3<&-

# 6. machine policy: another device's contents changed behind its back
echo machine >$G/policy
fixture fat12-clean /dev/vdb
cp $FX/swap-clean.img /tmp/c4.img
ls=$(losetup -f --show /tmp/c4.img)
mount -t vfat /dev/vdb $MNT 2>/dev/null && umount $MNT
dd if=$FX/swap-S1SUSPEND-4096.img of=/tmp/c4.img bs=4096 count=1 conv=notrunc status=none
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "machine: a swap area that became hibernated behind its loop device is seen" is_mounted_ro $MNT
umount $MNT 2>/dev/null
losetup -d $ls
echo volume >$G/policy
rm -f /tmp/c1.img /tmp/c2.img /tmp/c3.img /tmp/c4.img
ktap_finish
