#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Unloading and reloading snapguard while guarded volumes are mounted, and
# while mounts and remounts run in a loop, leaves no oops and keeps
# guarding after the reload.
. "$(dirname "$0")/guard_lib.sh"

ktap_plan 6
modprobe snapguard
echo volume >$G/policy
fixture fat32-clean /dev/vdb
fixture exfat-clean /dev/vdc
mount -t vfat /dev/vdb $MNT
dmesg_mark
ktap_check "rmmod while a guarded volume is mounted" rmmod snapguard
ktap_check "modprobe again while it is mounted" modprobe snapguard
umount $MNT

# Mount loops in the background while we unload and reload.
mkdir -p /tmp/m2 /tmp/m3
end=$(( $(date +%s) + 20 ))
( while [ "$(date +%s)" -lt $end ]; do
	mount -t vfat /dev/vdb /tmp/m2 2>/dev/null && mount -o remount,ro /tmp/m2 &&
		mount -o remount,rw /tmp/m2; umount /tmp/m2 2>/dev/null
done ) &
( while [ "$(date +%s)" -lt $end ]; do
	mount -t exfat /dev/vdc /tmp/m3 2>/dev/null && umount /tmp/m3
done ) &
cycles=0; busy=0
while [ "$(date +%s)" -lt $end ]; do
	if rmmod snapguard 2>/dev/null; then
		cycles=$((cycles + 1))
	else
		busy=$((busy + 1))
	fi
	modprobe snapguard || break
done
wait
ktap_diag "unloaded $cycles times, busy (mount in progress) $busy times"
ktap_check "unloaded at least once during the mount loops" test $cycles -gt 0
ktap_check "no kernel complaint" not dmesg_has -E 'BUG:|Oops|WARNING:|general protection'
modprobe snapguard
fixture ntfs-hiberfil-HIBR /dev/vda
mount -t ntfs3 /dev/vda $MNT 2>/dev/null
ktap_check "still guarding after the reloads" is_mounted_ro $MNT
umount $MNT
ktap_check "no mount left behind" sh -c "! grep -q '/tmp/m[23]' /proc/mounts"
ktap_finish
