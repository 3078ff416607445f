#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# allow_once is tied to what the device was when the entry was written (its
# disk sequence number and the contents the guard read), refuses devices
# that do not exist, and is used up only by a successful read-write mount.
# The refusal line gives the reason, the remedy and the override, and no
# informational evidence.
. "$(dirname "$0")/guard_lib.sh"
# refusal_has PATTERN: last_refusal matches PATTERN (grep); shows it if not.
refusal_has() { grep -q -- "$1" $G/last_refusal || { cat $G/last_refusal; false; }; }

ktap_plan 10
modprobe snapguard
echo enforce >$G/mode
echo refuse >$G/unclean
echo volume >$G/policy
echo clear >$G/allow_once
FX=$FIXTURES

# --- the refusal line
fixture ntfs-hiberfil-HIBR /dev/vda
mount -t ntfs3 /dev/vda $MNT 2>/dev/null; umount $MNT 2>/dev/null
ktap_check "the refusal line has the reason, remedy and override" \
	refusal_has "^refused read-write mount of vda (ntfs3): ntfs hibernated: hiberfil_live at 0x[0-9a-f]*: .*; remedy: .*; override: echo vda > $G/allow_once$"
ktap_check "... and no informational evidence" sh -c "! grep -q 'info at\|: clean' $G/last_refusal"

# --- a device that does not exist (its major exists)
maj=$(cut -d: -f1 /sys/block/vda/dev)
ktap_expect_fail "allow_once refuses MAJ:MIN of a device that does not exist" "No such device" \
	bash -c "echo $maj:1008 > $G/allow_once"

# --- a failed mount does not use the entry up, a successful one does
echo vda >$G/allow_once
mount -t vfat /dev/vda $MNT 2>/dev/null; umount $MNT 2>/dev/null
ktap_check "a failed mount (wrong type) leaves the entry" grep -q " vda$" $G/allow_once
mount -t ntfs3 /dev/vda $MNT 2>/dev/null
ktap_check "then the entry lets the read-write mount through" is_mounted_rw $MNT
umount $MNT
ktap_check "and is used up" test -z "$(cat $G/allow_once)"

# --- audit mode allows without using the entry
fixture ntfs-hiberfil-HIBR /dev/vda
echo vda >$G/allow_once
echo audit >$G/mode
mount -t ntfs3 /dev/vda $MNT 2>/dev/null
umount $MNT 2>/dev/null
ktap_check "a read-write mount in audit mode leaves the entry" grep -q " vda$" $G/allow_once
echo enforce >$G/mode
echo clear >$G/allow_once

# --- the contents changed after the entry was written
fixture ntfs-hiberfil-HIBR /dev/vda
echo vda >$G/allow_once
fixture ntfs-log-faststartup /dev/vda
mount -t ntfs3 /dev/vda $MNT 2>/dev/null
ktap_check "an entry for other contents of the same device does not apply" is_mounted_ro $MNT
umount $MNT 2>/dev/null
ktap_check "and is dropped" test -z "$(cat $G/allow_once)"

# --- a loop device re-attached to another image
cp $FX/ntfs-clean.img /tmp/ov-clean.img
cp $FX/ntfs-hiberfil-HIBR.img /tmp/ov-hib.img
lo=$(losetup -f --show /tmp/ov-clean.img)
echo ${lo#/dev/} >$G/allow_once
losetup -d $lo
losetup $lo /tmp/ov-hib.img
mount -t ntfs3 $lo $MNT 2>/dev/null
ktap_check "an entry for ${lo#/dev/} does not apply after it is re-attached to a hibernated image" is_mounted_ro $MNT
umount $MNT 2>/dev/null
losetup -d $lo
echo clear >$G/allow_once
rm -f /tmp/ov-clean.img /tmp/ov-hib.img
ktap_finish
