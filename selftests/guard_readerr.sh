#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# When the guard cannot read what it needs to decide, it refuses the
# read-write mount and says why; read-only still works. A device-mapper
# table of linear + error targets puts a failing range over the sector of
# a hibernated NTFS volume's hiberfil.sys header (its offset is the one the
# guard itself reports for the intact volume).
. "$(dirname "$0")/guard_lib.sh"
# refusal_has PATTERN: last_refusal matches PATTERN (grep); shows it if not.
refusal_has() { grep -q -- "$1" $G/last_refusal || { cat $G/last_refusal; false; }; }

ktap_plan 7
modprobe snapguard
echo enforce >$G/mode
echo refuse >$G/unclean
echo volume >$G/policy
dm_of() { local b; for b in /sys/block/dm-*; do [ "$(cat $b/dm/name)" = "$1" ] && echo /dev/${b##*/}; done; }

cp $FIXTURES/ntfs-hiberfil-HIBR.img /tmp/re.img
lo=$(losetup -f --show /tmp/re.img)
mount -t ntfs3 $lo $MNT 2>/dev/null; umount $MNT 2>/dev/null
off=$(sed -n 's/.*hiberfil_live at \(0x[0-9a-f]*\):.*/\1/p' $G/last_refusal)
ktap_check "the intact volume is refused, hiberfil.sys header at $off" test -n "$off"
sec=$((off / 512)) total=$(($(stat -c %s /tmp/re.img) / 512))
dmsetup create sgreaderr --table "0 $sec linear $lo 0
$sec 8 error
$((sec + 8)) $((total - sec - 8)) linear $lo $((sec + 8))"
dm=$(dm_of sgreaderr)
dmesg_mark
mount -t ntfs3 $dm $MNT 2>/dev/null
ktap_check "an I/O error on the hiberfil.sys header refuses read-write" is_mounted_ro $MNT
ktap_check "... and read-only still works" grep -q " $MNT ntfs3 ro" /proc/mounts
umount $MNT 2>/dev/null
ktap_check "the refusal says it cannot read the device, where, and what to do" \
	refusal_has "refused read-write mount of ${dm#/dev/} (ntfs3): cannot read ${dm#/dev/} at byte $off (+[0-9]*): EIO.*remedy: check the device"
dmsetup remove sgreaderr
losetup -d $lo

# policy=machine: a device that cannot be read is a device not checked
echo machine >$G/policy
fixture fat32-clean /dev/vdb
dmsetup create sgerr --table "0 2048 error"
dm=$(dm_of sgerr)
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "machine: an unreadable other device refuses read-write (scan incomplete)" is_mounted_ro $MNT
umount $MNT 2>/dev/null
ktap_check "the refusal names it and the way out" \
	refusal_has "${dm#/dev/} not checked: read error at byte 0x0 (EIO).*remedy: .*policy=volume"
dmsetup remove sgerr
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "read-write again once it is gone" is_mounted_rw $MNT
umount $MNT
echo volume >$G/policy
rm -f /tmp/re.img
ktap_finish
