#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# What the driver accepts, the guard must see. For each volume that a
# guarded driver mounts although its boot sector looks damaged or unusual
# (tools/fixtures/mkimages.sh): with the guard off the real driver mounts a
# scratch copy read-write (for a damaged NTFS primary boot sector ntfs3
# mounts from the backup one and rewrites the primary: on a device with
# 4096-byte logical blocks; on 512-byte ones its read of the backup fails
# its own bounds check); with the guard enforcing the read-write mount
# falls back to read-only, the kernel line names the evidence, and the
# image stays unchanged.
. "$(dirname "$0")/guard_lib.sh"

FX=$FIXTURES
img=/tmp/sg-rec.img

# fixture <TAB> type <TAB> losetup options <TAB> mount options <TAB> evidence
# kind the refusal must name ("-": a clean volume, not refused)
CASES="ntfs-backup-hiberfil	ntfs3	-b 4096	-	hiberfil_live
ntfs-backup-bps-hiberfil	ntfs3	-b 4096	-	hiberfil_live
ntfs-no55aa-hiberfil	ntfs3	-	-	hiberfil_live
fat12-dirty-nojump	vfat	-	-	fat_dirty
fat16-dirty-nojump	vfat	-	-	fat_dirty
fat16-dirty-nojump	msdos	-	-	fat_dirty
fat32-dirty-nojump	vfat	-	-	fat_dirty
fat12-dos1x	vfat	-	dos1xfloppy	-"

n=0
while IFS=$'\t' read -r name t _ _ kind; do
	n=$((n + 1))                                   # guard off: mounts rw
	case $name in ntfs-backup-*) n=$((n + 1)) ;; esac # primary rewritten
	if [ "$kind" = - ]; then n=$((n + 2)); else n=$((n + 3)); fi
done <<<"$CASES"
ktap_plan $((n + 4))

modprobe snapguard
echo volume >$G/policy
echo refuse >$G/unclean

# mount_case NAME TYPE LOSETUP-OPTS MOUNT-OPTS: a fresh copy of NAME on a
# loop device, mounted read-write; sets $dev and $out.
mount_case() {
	local lo=() mo=rw
	cp "$FX/$1.img" $img
	[ "$3" = - ] || read -ra lo <<<"$3"
	[ "$4" = - ] || mo=rw,$4
	dev=$(losetup -f --show "${lo[@]}" $img)
	out=$(mount -t "$2" -o "$mo" "$dev" $MNT 2>&1)
}
done_case() { umount $MNT 2>/dev/null; losetup -d "$dev"; }

while IFS=$'\t' read -r name t lo mo kind; do
	what="$t $name"
	[ "$lo" = - ] || what+=" on a 4096-byte-sector device"

	# The driver's own view, guard off: it mounts the volume read-write.
	echo off >$G/mode
	mount_case "$name" "$t" "$lo" "$mo"
	if is_mounted_rw $MNT; then ktap_ok "$what: the driver mounts it read-write (guard off)"
	else ktap_fail "$what: the driver should mount it read-write"; printf '%s\n' "$out" | sed 's/^/# /'; fi
	done_case
	case $name in ntfs-backup-*)
		# ntfs3 found the volume through the backup boot sector and
		# rewrote the primary one: the damage a guard must not allow.
		# (Before: the primary differs from the backup in the last 512 bytes.)
		ktap_check "$what: ntfs3 rewrote the primary boot sector from the backup" \
			bash -c "! cmp -s <(head -c 512 $FX/$name.img) <(tail -c 512 $FX/$name.img) &&
				cmp <(head -c 512 $img) <(tail -c 512 $img)"
		;;
	esac

	echo enforce >$G/mode
	dmesg_mark
	mount_case "$name" "$t" "$lo" "$mo"
	line=$(dmesg_since | grep "snapguard: refused read-write mount of ${dev#/dev/} ($t): ")
	if [ "$kind" = - ]; then
		ktap_check "$what: clean, mounts read-write with the guard enforcing" is_mounted_rw $MNT
		ktap_check "$what: no refusal" test -z "$line"
		done_case
		continue
	fi
	if is_mounted_ro $MNT; then ktap_ok "$what: falls back to read-only (guard enforcing)"
	else ktap_fail "$what: not read-only"; printf '%s\n' "$out" "$(grep " $MNT " /proc/mounts)" | sed 's/^/# /'; fi
	if printf '%s' "$line" | grep -Eq "[:;] $kind at "; then ktap_ok "$what: the kernel line names $kind"
	else ktap_fail "$what: kernel line"; dmesg_since | sed 's/^/# /'; fi
	done_case
	ktap_check "$what: image byte-for-byte unchanged" cmp "$FX/$name.img" $img
done <<<"$CASES"

# On a 512-byte-sector device ntfs3 does not reach the backup boot sector
# ("try to read out of volume": it counts the device in pages and the
# backup's block in 512-byte units), so the volume mounts nowhere there.
echo off >$G/mode
mount_case ntfs-backup-hiberfil ntfs3 - -
ktap_check "ntfs3 does not mount from the backup boot sector on a 512-byte-sector device" \
	sh -c "! grep -q ' $MNT ' /proc/mounts"
done_case

# A volume formatted with 4096-byte sectors (mkntfs -s 4096, as Windows on
# a 4Kn disk) keeps its backup boot sector at the start of the last 4 KiB
# sector, where ntfs3 does not look (it reads the last 512 bytes): with the
# primary damaged, ntfs3 cannot mount it even on a 4096-byte-sector device.
# The guard still reads it through that backup and names the evidence (the
# refusal line gives the evidence, not how the volume was found).
echo off >$G/mode
mount_case ntfs-4k-backup-hiberfil ntfs3 "-b 4096" -
ktap_check "ntfs3 does not mount a 4 KiB-sector volume from its backup boot sector" \
	sh -c "! grep -q ' $MNT ' /proc/mounts"
done_case
echo enforce >$G/mode
dmesg_mark
mount_case ntfs-4k-backup-hiberfil ntfs3 "-b 4096" -
ktap_check "guard refuses it read-write, naming hiberfil_live" \
	dmesg_has "refused read-write mount of ${dev#/dev/} (ntfs3): ntfs hibernated: .*hiberfil_live at "
done_case
ktap_check "image unchanged" cmp $FX/ntfs-4k-backup-hiberfil.img $img
rm -f $img
ktap_finish
