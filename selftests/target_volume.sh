#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# snapguard volumes on a live pool, with real tools: a volume table binds
# to its pool (unknown ids and non-pools refused, delete refused while
# active), fresh volumes read zeroes, mkfs.ext4 + files with known
# checksums; snapshots of an active origin keep the old bytes while the
# origin is overwritten; snapshot of a snapshot; writable snapshots; the
# status line counts mapped and shared sectors; everything survives
# tearing the devices down and re-creating them from the same disks, and
# e2fsck finds every file system clean. See Documentation/snapshot-target.rst.
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard

ktap_plan 54

dd if=/dev/zero of=/tmp/sgv-meta bs=1M count=0 seek=8 status=none
dd if=/dev/zero of=/tmp/sgv-data bs=1M count=0 seek=96 status=none
# Old data on the data device: volumes must never see it (unmapped reads
# return zeroes, new extents are zeroed before they are mapped).
tr '\000' '\377' </dev/zero | dd of=/tmp/sgv-data bs=1M count=16 conv=notrunc iflag=fullblock status=none
META=$(losetup -f --show /tmp/sgv-meta)
DATA=$(losetup -f --show /tmp/sgv-data)
KLOG=/tmp/sgv-klog
dmesg -c >$KLOG
MNT=/tmp/sgv-mnt
mkdir -p $MNT

# 96 MiB of 64 KiB extents; volumes of 32 MiB.
POOL_TABLE="0 196608 snapguard-pool $META $DATA 128 10"
VLEN=65536
create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$1"; }
vol() { create "sgv$1" "0 $VLEN snapguard /dev/mapper/sgv-pool $1"; }
msg() { dmsetup message sgv-pool 0 "$@"; }
log_has() {
	local log
	log=$(dmesg -c)
	printf '%s\n' "$log" >>$KLOG
	[[ $log == *"$1"* ]] || { printf '%s\n' "$log" | sed 's/^/# /'; return 1; }
}
# sums DEV FILE: mounts DEV read-only and writes the sorted checksums of its
# files to FILE.
sums() {
	mount -o ro "/dev/mapper/$1" $MNT || return 1
	(cd $MNT && sha256sum f* | sort) >"$2"
	umount $MNT
}
# fill DEV SEED: mounts DEV and (re)writes files f1..f3 with random data.
fill() {
	mount "/dev/mapper/$1" $MNT || return 1
	for i in 1 2 3; do
		dd if=/dev/urandom of=$MNT/f$i bs=64k count=$((8 * i)) status=none || return 1
	done
	umount $MNT
}
status_field() { dmsetup status "$1" | cut -d' ' -f"$2"; }
# same DEV OUT WANT: DEV's checksums (written to OUT) are those in WANT.
same() { sums "$1" "$2" && cmp -s "$3" "$2"; }
all_shared() { [ "$(status_field sgv1 4)" = "$(status_field sgv1 6)" ] && [ "$(status_field sgv1 4)" -gt 0 ]; }
shares_less() { [ "$(status_field sgv1 6)" -lt "$(status_field sgv1 4)" ]; }
differ() { ! cmp -s "$1" "$2"; }

ktap_check "create the pool" create sgv-pool "$POOL_TABLE"
ktap_check "create volume 1" msg create 1
dmesg -c >>$KLOG
ktap_check "table of an unknown volume refused" sh -c \
	"! printf '0 $VLEN snapguard /dev/mapper/sgv-pool 7\n' | dmsetup create --noudevsync sgv7 2>/dev/null"
ktap_check "  saying so" log_has "the pool has no volume 7"
ktap_check "table on a device that is not a pool refused" sh -c \
	"! printf '0 $VLEN snapguard $DATA 1\n' | dmsetup create --noudevsync sgv7 2>/dev/null"
ktap_check "  saying so" log_has "is not a live snapguard pool"
# A longer table grows the volume (Documentation/snapshot-target.rst,
# "Space and growth"; more in target_space.sh).
ktap_check "table longer than the volume grows it" sh -c \
	"printf '0 393216 snapguard /dev/mapper/sgv-pool 1\n' | dmsetup create --noudevsync sgv7 &&
	 dmsetup remove --noudevsync sgv7"
ktap_check "  saying so" log_has "volume 1 grown from 1536 to 3072 extents"
ktap_check "activate volume 1" vol 1
ktap_check "table line" test "$(dmsetup table sgv1)" = \
	"0 $VLEN snapguard $(dmsetup info -c --noheadings -o major,minor sgv-pool | tr -d ' ') 1"
ktap_check "fresh volume status: nothing mapped" test "$(dmsetup status sgv1)" = "0 $VLEN snapguard 0 - 0"
ktap_check "fresh volume reads zeroes" sh -c \
	"[ \$(dd if=/dev/mapper/sgv1 bs=1M count=32 iflag=direct status=none | tr -d '\\000' | wc -c) -eq 0 ]"
ktap_check "deleting an active volume refused" sh -c "! dmsetup message sgv-pool 0 delete 1 2>/dev/null"

# Raw I/O: an unaligned pattern across extents reads back, and neighbours
# of a partial write read zeroes (new extents are zeroed).
dd if=/dev/urandom of=/tmp/sgv-pat bs=4096 count=40 status=none
dd if=/tmp/sgv-pat of=/dev/mapper/sgv1 bs=4096 seek=30 oflag=direct conv=notrunc,fsync status=none
ktap_check "direct write reads back" sh -c \
	"dd if=/dev/mapper/sgv1 bs=4096 skip=30 count=40 iflag=direct status=none | cmp -s - /tmp/sgv-pat"
# on_copy SKIP FILE: a copy of both disks taken now (the pool still live)
# opens as a pool whose volume 1 has FILE at 4 KiB block SKIP.
on_copy() {
	local m d r=1
	cp /tmp/sgv-meta /tmp/sgv-meta-c && cp /tmp/sgv-data /tmp/sgv-data-c || return 1
	m=$(losetup -f --show /tmp/sgv-meta-c) && d=$(losetup -f --show /tmp/sgv-data-c) || return 1
	if create sgvc-pool "0 196608 snapguard-pool $m $d 128 10" &&
		create sgvc1 "0 $VLEN snapguard /dev/mapper/sgvc-pool 1"; then
		dd if=/dev/mapper/sgvc1 bs=4096 skip="$1" count=$(($(stat -c %s "$2") / 4096)) iflag=direct status=none |
			cmp - "$2" && r=0
	fi
	remove sgvc1
	remove sgvc-pool
	losetup -d "$m" "$d"
	rm -f /tmp/sgv-meta-c /tmp/sgv-data-c
	return $r
}
# The fsync's flush committed the new mappings.
flushed() { on_copy 30 /tmp/sgv-pat; }
ktap_check "a flush commits: a copy of the disks has the data" flushed
# Without a flush, the periodic commit (1 s) makes a new mapping durable.
dd if=/dev/urandom of=/tmp/sgv-pat2 bs=4096 count=4 status=none
dd if=/tmp/sgv-pat2 of=/dev/mapper/sgv1 bs=4096 seek=200 oflag=direct conv=notrunc status=none
sleep 2
ktap_check "the periodic commit: a copy 2 s after a write has it" on_copy 200 /tmp/sgv-pat2
ktap_check "rest of a partly written extent reads zeroes" sh -c \
	"[ \$(dd if=/dev/mapper/sgv1 bs=4096 skip=16 count=14 iflag=direct status=none | tr -d '\\000' | wc -c) -eq 0 ]"
# 4 KiB blocks 30..69 touch extents 1..4 (16 blocks each), 200..203 extent 12.
ktap_check "status counts 5 mapped extents" test "$(status_field sgv1 4-6)" = "640 1663 0"

# Discard (BLKDISCARD) of extents 2 and 3 (128 KiB .. 256 KiB) and of
# part of extent 4: the whole extents are unmapped and read zeroes, their
# neighbours keep their data, and the data device's file gave the space
# back (discard passdown).
blkdiscard() { "$(dirname "$0")/discard" "$@"; }
used_before=$(stat -c %b /tmp/sgv-data)
discards() { blkdiscard /dev/mapper/sgv1 131072 131072 && blkdiscard /dev/mapper/sgv1 266240 4096; }
ktap_check "discard 2 whole extents and part of one" discards
ktap_check "status counts 3 mapped extents" test "$(status_field sgv1 4-6)" = "384 1663 0"
ktap_check "discarded extents read zeroes" sh -c \
	"[ \$(dd if=/dev/mapper/sgv1 bs=4096 skip=32 count=32 iflag=direct status=none | tr -d '\\000' | wc -c) -eq 0 ]"
keeps() {
	cmp -s <(dd if=/dev/mapper/sgv1 bs=4096 skip=30 count=2 iflag=direct status=none) \
		<(dd if=/tmp/sgv-pat bs=4096 count=2 status=none) &&
		cmp -s <(dd if=/dev/mapper/sgv1 bs=4096 skip=64 count=6 iflag=direct status=none) \
			<(dd if=/tmp/sgv-pat bs=4096 skip=34 count=6 status=none)
}
ktap_check "  the other extents keep their data" keeps
used_after=$(stat -c %b /tmp/sgv-data)
ktap_diag "data file: $used_before -> $used_after 512-byte blocks"
ktap_check "  passed down: the data file shrank by 2 extents" test $((used_before - used_after)) -eq 256

ktap_check "mkfs.ext4 on volume 1" mkfs.ext4 -q -F /dev/mapper/sgv1
ktap_check "write files" fill sgv1
sums sgv1 /tmp/sgv-sum1a
ktap_diag "$(tr '\n' ' ' </tmp/sgv-sum1a)"

# Snapshot of the active (not suspended) origin.
ktap_check "snapshot 1 -> 2 while the origin is active" msg snapshot 1 2
ktap_check "origin status: everything shared" all_shared
ktap_check "activate snapshot 2" vol 2
ktap_check "overwrite the origin's files" fill sgv1
sums sgv1 /tmp/sgv-sum1b
ktap_check "  the origin has the new bytes" differ /tmp/sgv-sum1a /tmp/sgv-sum1b
ktap_check "  the snapshot still has the old bytes" same sgv2 /tmp/sgv-sum2a /tmp/sgv-sum1a
ktap_check "  origin now shares less" shares_less

# Snapshot of a snapshot, then write to the (writable) snapshot.
ktap_check "snapshot 2 -> 3" msg snapshot 2 3
ktap_check "activate snapshot 3" vol 3
ktap_check "write to snapshot 2" fill sgv2
sums sgv2 /tmp/sgv-sum2b
ktap_check "  snapshot 2 has the new bytes" differ /tmp/sgv-sum2a /tmp/sgv-sum2b
ktap_check "  snapshot 3 still has the old bytes" same sgv3 /tmp/sgv-sum3a /tmp/sgv-sum1a
ktap_check "  the origin is unchanged" same sgv1 /tmp/sgv-sum1c /tmp/sgv-sum1b

# Snapshots of a volume under concurrent direct writes: the message waits
# for the writes in flight, not for the writer to stop.
# Stopped through a file, so that `wait` also waits for its last dd (killing
# the loop's shell left dd holding the device open: remove failed, EBUSY).
busy_writer() {
	while [ ! -e /tmp/sgv-stop ]; do
		dd if=/dev/urandom of=/dev/mapper/sgv6 bs=64k count=16 seek=10 oflag=direct conv=notrunc status=none || break
	done
}
rm -f /tmp/sgv-stop
ktap_check "volume 6 for a busy writer" sh -c "dmsetup message sgv-pool 0 create 6"
ktap_check "  activate it" vol 6
busy_writer &
writer=$!
sleep 1
snaps_under_load() { msg snapshot 6 7 && msg snapshot 6 8; }
ktap_check "two snapshots while it is being written" snaps_under_load
touch /tmp/sgv-stop
wait $writer 2>/dev/null
cleanup6() { remove sgv6 && msg delete 6 && msg delete 7 && msg delete 8; }
ktap_check "  remove and delete them" cleanup6

# Tear everything down and build it again from the same disks.
teardown() { remove sgv1 && remove sgv2 && remove sgv3 && remove sgv-pool; }
ktap_check "remove volumes and pool" teardown
ktap_check "re-create the pool" create sgv-pool "$POOL_TABLE"
ktap_check "  without formatting" sh -c "! dmesg | grep -q 'formatted a new pool'"
reactivate() { vol 1 && vol 2 && vol 3; }
ktap_check "re-activate volumes 1, 2, 3" reactivate
ktap_check "volume 1 kept its files" same sgv1 /tmp/sgv-r1 /tmp/sgv-sum1b
ktap_check "volume 2 kept its files" same sgv2 /tmp/sgv-r2 /tmp/sgv-sum2b
ktap_check "volume 3 kept its files" same sgv3 /tmp/sgv-r3 /tmp/sgv-sum1a
ktap_check "e2fsck: all three file systems clean" sh -c \
	"e2fsck -fn /dev/mapper/sgv1 >/dev/null 2>&1 && e2fsck -fn /dev/mapper/sgv2 >/dev/null 2>&1 &&
	 e2fsck -fn /dev/mapper/sgv3 >/dev/null 2>&1"
del3() { ! msg delete 3 2>/dev/null && remove sgv3 && msg delete 3; }
ktap_check "delete refused while 3 is active, allowed after" del3

remove sgv1
remove sgv2
remove sgv-pool
# The metadata after all of this passes the userspace checker (space maps,
# reference counts, tree shapes), when the CLI is in the guest (tools/vm.py
# adds it if it was built).
ktap_pool_check "$META"
no_dm_device() { ! compgen -G '/sys/block/dm-*' >/dev/null; }
ktap_check "no device left" no_dm_device
dmesg >>$KLOG
ktap_check "no kernel complaint" sh -c "! grep -qE 'BUG:|Oops|WARNING:|general protection|INFO: task' $KLOG"
losetup -d "$META" "$DATA"
ktap_finish
