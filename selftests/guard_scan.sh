#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The machine scan looks at every block device, and never waits for one
# that cannot answer. 255 partitions on one disk push the device count past
# 256, with a hibernated Linux swap signature on the last one. A suspended
# device-mapper device is not read: it is reported as not checked (the
# mount is refused with its name and the way out), without blocking the
# mount or a read of last_refusal.
. "$(dirname "$0")/guard_lib.sh"
# refusal_has PATTERN: last_refusal matches PATTERN (grep); shows it if not.
refusal_has() { grep -q -- "$1" $G/last_refusal || { cat $G/last_refusal; false; }; }

ktap_plan 9
modprobe snapguard
echo enforce >$G/mode
echo refuse >$G/unclean
echo machine >$G/policy
fixture fat32-clean /dev/vdb
fixture ntfs-clean /dev/vda
dm_of() { local b; for b in /sys/block/dm-*; do [ "$(cat $b/dm/name)" = "$1" ] && echo /dev/${b##*/}; done; }

# --- more than 256 block devices, evidence on the last one
{
	echo "label: gpt"
	echo "table-length: 255"
	for i in $(seq 0 254); do echo "start=$((2048 + i * 512)), size=512"; done
} | sfdisk -q --no-tell-kernel /dev/vdc >/dev/null 2>&1
blockdev --rereadpt /dev/vdc
n=$(ls /sys/class/block | wc -l)
ktap_check "more than 256 block devices ($n)" test "$n" -gt 256
last=/dev/vdc255
dd if=$FIXTURES/swap-S1SUSPEND-4096.img of=$last bs=4096 count=1 conv=fsync status=none
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "evidence on block device number $n is found: read-only" is_mounted_ro $MNT
umount $MNT 2>/dev/null
ktap_check "the refusal names it" refusal_has "sleeping OS on vdc255"
wipefs -q -a /dev/vdc >/dev/null 2>&1
blockdev --rereadpt /dev/vdc
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "read-write again without the partitions" is_mounted_rw $MNT
umount $MNT

# --- a suspended device-mapper device
dmsetup create sgsusp --table "0 2048 linear /dev/vdd 0"
dm=$(dm_of sgsusp)
dmsetup create sgupper --table "0 2048 linear $dm 0"   # LVM on LUKS, say
up=$(dm_of sgupper)
dmsetup suspend sgsusp
# finished PID SECONDS: PID exits within SECONDS
finished() {
	local i
	for i in $(seq 1 $(($2 * 10))); do kill -0 $1 2>/dev/null || return 0; sleep 0.1; done
	return 1
}
mount -t vfat /dev/vdb $MNT 2>/dev/null &
mpid=$!
ktap_check "a guarded mount does not wait for a suspended device" finished $mpid 10
cat $G/last_refusal >/dev/null &
cpid=$!
if finished $cpid 5; then
	ktap_ok "last_refusal can be read meanwhile"
	ktap_check "machine: refused, the suspended device is named as not checked" \
		refusal_has "${dm#/dev/} not checked: device-mapper device ${dm#/dev/} is suspended.*remedy: "
	ktap_check "a device stacked on it is not read either" \
		refusal_has "${up#/dev/} not checked: device-mapper device ${dm#/dev/} is suspended"
else
	ktap_fail "last_refusal can be read meanwhile (it waits)"
	ktap_fail "machine: refused, the suspended device is named (last_refusal waits)"
	ktap_fail "a device stacked on it is not read either (last_refusal waits)"
fi
# unblock whatever still waits, then clean up
dmsetup resume sgsusp
wait $mpid $cpid
umount $MNT 2>/dev/null
dmsetup remove sgupper
dmsetup remove sgsusp
mount -t vfat /dev/vdb $MNT 2>/dev/null
ktap_check "read-write again once it is gone" is_mounted_rw $MNT
umount $MNT
echo volume >$G/policy
ktap_finish
