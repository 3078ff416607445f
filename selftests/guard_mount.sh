#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Mount guard, per file system type and kind of evidence: every fixture of
# tools/fixtures/mkimages.sh (the same images the host tests use) is
# mounted read-write with each guarded type that can mount it. Volumes with
# evidence fall back to read-only with the kernel's reason line and stay
# byte-for-byte unchanged; clean ones mount read-write. Then the same on a
# real virtio disk, remount,rw, the new mount API and `mount -o loop`.
. "$(dirname "$0")/guard_lib.sh"

FX=$FIXTURES
img=/tmp/sg-case.img

types_for() {
	case $1 in
	ntfs) echo "ntfs3 ntfs" ;;
	fat16) echo "vfat msdos" ;;
	fat12|fat32) echo vfat ;;
	exfat) echo exfat ;;
	esac
}
# Mount options a fixture needs (a DOS 1.x floppy has no BPB).
opts_for() { case $1 in *-dos1x) echo ,dos1xfloppy ;; esac; }
# Drivers that cannot mount a fixture on these 512-byte-sector loop
# devices, even read-only, although the guard reads it: with the primary
# boot sector damaged, fs/ntfs gives up, and ntfs3 reaches the backup boot
# sector only on a device with 4096-byte logical blocks (see
# guard_recognition.sh, which mounts them there).
unmountable() { # NAME TYPE
	case $1:$2 in
	ntfs-backup-*:* | ntfs-4k-backup-*:*) return 0 ;;
	esac
	return 1
}
# ro_by_driver TYPE DEV: the clean volume on DEV came out read-only although
# snapguard did not refuse it; true when the driver does the same with the
# guard off (Linux 7.3's `ntfs` mounts read-only by itself when hiberfil.sys
# has a non-zero header without "hibr", e.g. a spent "wake" one).
ro_by_driver() {
	is_mounted_ro $MNT || return 1
	umount $MNT
	echo off >$G/mode
	mount -t $1 $2 $MNT 2>/dev/null
	echo enforce >$G/mode
	is_mounted_ro $MNT
}
n=0
while IFS=$'\t' read -r name fs verdict _ _; do
	per=3
	case $verdict in clean|unsupported) per=2 ;; esac
	for t in $(types_for "$fs"); do n=$((n + per)); done
done <$FX/expect.tsv

ktap_plan $((n + 9))
modprobe snapguard
echo volume >$G/policy   # each volume's own evidence; policy.sh tests machine
echo refuse >$G/unclean
echo enforce >$G/mode

while IFS=$'\t' read -r name fs verdict _ kinds; do
	for t in $(types_for "$fs"); do
		# A fresh copy each time; the pristine image stays on $FX.
		cp $FX/$name.img $img
		what="$t $name ($verdict${kinds:+: $kinds})"
		dev=$(losetup -f --show $img)
		dmesg_mark
		out=$(mount -t $t -o rw$(opts_for $name) $dev $MNT 2>&1)
		refused=$(dmesg_since | grep -c "snapguard: refused read-write mount of ${dev#/dev/} ($t): .*remedy: .*override: echo ${dev#/dev/} > $G/allow_once")
		case $verdict in
		clean|unsupported)
			if unmountable $name $t; then
				if grep -q " $MNT " /proc/mounts; then ktap_fail "$what: $t was not expected to mount it"
				else ktap_ok "$what: not refused ($t itself cannot mount it)"; fi
			elif is_mounted_rw $MNT; then ktap_ok "$what: mounts read-write"
			elif ro_by_driver $t $dev; then
				ktap_ok "$what: read-only by the driver's own choice, as without snapguard"
			else ktap_fail "$what: should mount read-write"; printf '%s\n' "$out" | sed 's/^/# /'; fi
			ktap_check "$what: no refusal logged" test "$refused" = 0
			umount $MNT 2>/dev/null
			;;
		*)
			if is_mounted_ro $MNT; then
				ktap_ok "$what: falls back to read-only"
			elif { [ "$verdict" = corrupt ] || unmountable $name $t; } && ! grep -q " $MNT " /proc/mounts; then
				# The driver itself also rejects what our parser calls
				# corrupt, or cannot find the volume the guard read.
				ktap_ok "$what: refused read-write (the driver refuses read-only too)"
			else
				ktap_fail "$what: not read-only"
				printf '%s\n' "$out" "$(grep " $MNT " /proc/mounts)" | sed 's/^/# /'
			fi
			if [ "$refused" = 1 ]; then ktap_ok "$what: kernel line names device, evidence, remedy, override"
			else ktap_fail "$what: kernel line"; dmesg_since | sed 's/^/# /'; fi
			umount $MNT 2>/dev/null
			losetup -d $dev
			ktap_check "$what: image byte-for-byte unchanged" cmp $FX/$name.img $img
			continue
			;;
		esac
		losetup -d $dev
	done
done <$FX/expect.tsv

# A real disk: the hibernated NTFS fixture written to /dev/vda.
fixture ntfs-hiberfil-HIBR /dev/vda
before=$(sum_of /dev/vda)
mount -t ntfs3 /dev/vda $MNT 2>/dev/null
ktap_check "virtio disk with hiberfil.sys: ntfs3 falls back to read-only" is_mounted_ro $MNT
ktap_expect_fail "remount,rw of it is refused" "write-protected" mount -o remount,rw $MNT
ktap_check "still mounted read-only after the refused remount" is_mounted_ro $MNT
ktap_expect_fail "new-API reconfigure to rw is refused" "Read-only file system" ./newmount rw $MNT
umount $MNT
ktap_expect_fail "fsopen/fsconfig/fsmount read-write is refused, reason in the fs_context log" \
	"fclog: e ntfs3: snapguard: vda may belong to a hibernated OS" ./newmount create ntfs3 /dev/vda $MNT
ktap_check "new mount API read-only mount works" ./newmount create ntfs3 /dev/vda $MNT ro
umount $MNT
ktap_check "virtio disk unchanged" test "$before" = "$(sum_of /dev/vda)"

# mount -o loop of an image file (util-linux sets up the loop device)
cp $FX/fat32-dirty.img /tmp/loop.img
isum=$(sum_of /tmp/loop.img)
mount -o loop -t vfat /tmp/loop.img $MNT 2>/dev/null
ktap_check "mount -o loop of a dirty FAT32 image falls back to read-only" is_mounted_ro $MNT
umount $MNT 2>/dev/null
losetup -D
ktap_check "image file unchanged" test "$isum" = "$(sum_of /tmp/loop.img)"
rm -f $img /tmp/loop.img
ktap_finish
