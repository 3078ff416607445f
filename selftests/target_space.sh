#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Space of a snapguard pool (Documentation/snapshot-target.rst, "Space and
# growth"): the low water mark raises one dm event (dmsetup wait); a full
# pool holds writes that need space (status out_of_data_space, an event,
# no hang, mapped extents still work); growing the data device + reload +
# resume completes them with their data (a noflush suspend of the volume
# meanwhile hands them to dm's core and gets them back); a reload shorter
# than the pool, or beyond what its metadata can hold, is refused and
# changes nothing; a grown metadata device is used; error_if_no_space
# fails such writes at once with ENOSPC; a delete lets a held write go on;
# a longer volume table grows the volume (resize2fs); growth beyond the
# capacities chosen at format adds growth extensions of the space maps
# (data device alone: in free metadata blocks; metadata device: in its new
# space); everything survives re-creation and passes the checker.
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard

ktap_plan 60

# 1 MiB of metadata: 256 blocks, so a data capacity of 256 * 32 = 8192
# extents and a metadata capacity of 1024 blocks, for which the space maps
# hold 9 x 1018 = 9162 extents and 2 x 1018 = 2036 blocks (the capacities
# the pool reports). 1 MiB of data: 16 extents of 64 KiB.
dd if=/dev/zero of=/tmp/sgs-meta bs=1M count=0 seek=1 status=none
rm -f /tmp/sgs-data
dd if=/dev/zero of=/tmp/sgs-data bs=1M count=0 seek=1 status=none
META=$(losetup -f --show /tmp/sgs-meta)
DATA=$(losetup -f --show /tmp/sgs-data)
KLOG=/tmp/sgs-klog
dmesg -c >$KLOG
MNT=/tmp/sgs-mnt
mkdir -p $MNT
dd if=/dev/urandom of=/tmp/sgs-blk bs=64k count=1 status=none
dd if=/dev/urandom of=/tmp/sgs-rand bs=64k count=16 status=none

create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$1"; }
reload() { printf '%s\n' "$2" | dmsetup reload "$1"; }
resume() { dmsetup resume --noudevsync "$1"; }
msg() { dmsetup message sgs-pool 0 "$@"; }
pool_table() { printf '0 %s snapguard-pool %s %s 128 4%s' "$1" "$META" "$DATA" "${2:+ $2}"; }
vol() { create "sgs$1" "0 $2 snapguard /dev/mapper/sgs-pool $1"; }
events() { dmsetup info sgs-pool | awk '/Event number/ {print $3}'; }
status() { dmsetup status sgs-pool; }
log_has() {
	local log
	log=$(dmesg -c)
	printf '%s\n' "$log" >>$KLOG
	[[ $log == *"$1"* ]] || { printf '%s\n' "$log" | sed 's/^/# /'; return 1; }
}
# wr VOL EXTENT COUNT: writes COUNT extents of /tmp/sgs-rand at EXTENT.
wr() { dd if=/tmp/sgs-rand of="/dev/mapper/sgs$1" bs=64k seek="$2" count="$3" oflag=direct conv=notrunc status=none; }

ktap_check "create a pool of 16 extents, low water mark 4" create sgs-pool "$(pool_table 2048)"
ktap_check "create and activate volume 1" eval 'msg create 1 && vol 1 2048'
ev0=$(events)
wr 1 0 11
ktap_check "11 extents used (5 free): no event" test "$(events)" = "$ev0"
wr 1 11 1
ktap_check "12 used (4 free): the low water event, dmsetup wait returns" timeout 10 dmsetup wait sgs-pool "$ev0"
ktap_check "  logged" log_has "4 free data extents, at or below the low water mark of 4"
ev1=$(events)
wr 1 12 4
ktap_check "16 used (0 free): no second low water event" test "$(events)" = "$ev1"
sum1=$(sha256sum </dev/mapper/sgs1)

# A write that needs an extent of a full pool is held.
msg create 2
vol 2 2048
dd if=/tmp/sgs-blk of=/dev/mapper/sgs2 bs=64k count=1 oflag=direct status=none 2>/tmp/sgs-dd.err &
held=$!
sleep 3
ktap_check "full pool: the write is held (still pending after 3 s)" kill -0 $held
ktap_diag "status: $(status)"
status_ends() { [[ $(status) == *" $1" ]] || { status; return 1; }; }
ktap_check "  status out_of_data_space queue_if_no_space" status_ends "16/16 out_of_data_space discard_passdown queue_if_no_space -"
ktap_check "  an event on entering out_of_data_space" test "$(events)" -gt "$ev1"
ktap_check "  logged" log_has "out of data space: writes that need space are held"
# reads_back VOL EXTENT: extent EXTENT of VOL holds /tmp/sgs-blk.
reads_back() { dd if="/dev/mapper/sgs$1" bs=64k skip="$2" count=1 iflag=direct status=none | cmp -s - /tmp/sgs-blk; }
sum_is() { [ "$(timeout 10 sha256sum </dev/mapper/sgs"$1")" = "$2" ]; }
ktap_check "  reads of mapped extents work meanwhile" sum_is 1 "$sum1"
ktap_check "  writes to mapped unshared extents work meanwhile" eval \
	'timeout 10 dd if=/tmp/sgs-blk of=/dev/mapper/sgs1 bs=64k seek=3 count=1 oflag=direct conv=notrunc status=none &&
	 reads_back 1 3'
sum1=$(sha256sum </dev/mapper/sgs1)
# A noflush suspend of the volume (what LVM does to thin volumes) does not
# wait for the held write: it goes back to dm's core, which keeps it
# across the suspend and maps it again at the resume (held again: still
# no space). A normal suspend would wait up to the 60 s bound.
ktap_check "noflush suspend of the volume with a held write returns at once" \
	timeout 10 dmsetup suspend --noflush --noudevsync sgs2
ktap_check "  the write is still pending (kept by dm, not failed)" kill -0 $held
ktap_check "  resume" resume sgs2
sleep 1
ktap_check "  held again after the resume: pending, status out_of_data_space" eval \
	'kill -0 $held && status_ends "16/16 out_of_data_space discard_passdown queue_if_no_space -"'

# Grow the data device to 4 MiB (64 extents), reload and resume.
truncate -s 4M /tmp/sgs-data
losetup -c "$DATA"
ktap_check "reload with the grown data device" reload sgs-pool "$(pool_table 8192)"
ktap_check "  resume" resume sgs-pool
ended() { for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done; return 1; }
ktap_check "  the held write completes" ended $held
wait $held
rc=$?
ktap_check "  successfully, its data reads back" eval '[ $rc -eq 0 ] && reads_back 2 0'
ktap_diag "status: $(status)"
ktap_check "  status: 17/64 extents used, rw" status_ends "17/64 rw discard_passdown queue_if_no_space -"
ktap_check "  logged" log_has "pool grown to 64 data extents (from 16, capacity 9162)"

# Beyond what the metadata can hold, or shorter: refused, nothing changed.
# A flush commits (the used metadata count is stable from then on).
sync /dev/mapper/sgs1 /dev/mapper/sgs2
before="$(status)|$(dmsetup table sgs-pool)"
# 64 GiB of data = 2^20 extents: the space maps hold 9 x 1018, so a growth
# extension of 1022 more data space map blocks and an index block, two
# copies each (2046 blocks), which 256 metadata blocks cannot hold.
truncate -s 64G /tmp/sgs-data
losetup -c "$DATA"
ktap_check "reload beyond what the metadata can hold refused" eval '! reload sgs-pool "$(pool_table 134217728)" 2>/dev/null'
ktap_check "  saying so" log_has "that needs a growth extension of 2046 metadata blocks, and the metadata device has no free run that long; grow the metadata device by at least 2046 blocks too"
truncate -s 600M /tmp/sgs-data
losetup -c "$DATA"
ktap_check "reload shorter than the pool refused" eval '! reload sgs-pool "$(pool_table 4096)" 2>/dev/null'
ktap_check "  saying so" log_has "shrinking a pool is not supported"
unchanged() { [ "$(status)|$(dmsetup table sgs-pool)" = "$before" ] || { echo "before: $before"; echo "after: $(status)|$(dmsetup table sgs-pool)"; return 1; }; }
ktap_check "  nothing changed" unchanged

# A grown metadata device is used at resume (within the capacity).
truncate -s 2M /tmp/sgs-meta
losetup -c "$META"
ktap_check "grown metadata device: reload and resume" eval 'reload sgs-pool "$(pool_table 8192)" && resume sgs-pool'
ktap_check "  status: 512 metadata blocks" eval '[[ $(status) == *"/512 17/64 rw "* ]] || { status; false; }'
ktap_check "  logged" log_has "512 metadata blocks (from 256, capacity 2036)"

# A longer volume table grows the volume: ext4 on volume 3 (64 extents),
# grown to 128 extents (8 MiB) with resize2fs.
msg create 3
vol 3 8192
mkfs.ext4 -q -F /dev/mapper/sgs3 >/dev/null 2>&1
mount /dev/mapper/sgs3 $MNT && dd if=/dev/urandom of=$MNT/f bs=64k count=4 status=none && umount $MNT
fsum=$(mount -o ro /dev/mapper/sgs3 $MNT && sha256sum <$MNT/f; umount $MNT)
ktap_check "reload volume 3 with twice its length" reload sgs3 "0 16384 snapguard /dev/mapper/sgs-pool 3"
ktap_check "  resume" resume sgs3
ktap_check "  logged" log_has "volume 3 grown from 64 to 128 extents"
ktap_check "  resize2fs grows its ext4" eval 'e2fsck -fn /dev/mapper/sgs3 >/dev/null && resize2fs -f /dev/mapper/sgs3'
fs_bytes() { dumpe2fs -h /dev/mapper/sgs3 2>/dev/null | awk -F: '/^Block count/ {c=$2} /^Block size/ {s=$2} END {print c*s}'; }
grown_fs() {
	local r
	[ "$(fs_bytes)" = 8388608 ] || { echo "fs bytes: $(fs_bytes)"; return 1; }
	e2fsck -fn /dev/mapper/sgs3 || return 1
	mount -o ro /dev/mapper/sgs3 $MNT || return 1
	[ "$(sha256sum <$MNT/f)" = "$fsum" ]
	r=$?
	umount $MNT
	return $r
}
ktap_check "  to 8 MiB, clean, its file intact" grown_fs

# error_if_no_space: writes that need space fail at once.
ktap_check "reload with error_if_no_space" eval 'reload sgs-pool "$(pool_table 8192 "1 error_if_no_space")" && resume sgs-pool'
ktap_check "  status says so" status_ends "rw discard_passdown error_if_no_space -"
msg create 4
vol 4 8192
start=$(date +%s)
dd if=/dev/urandom of=/dev/mapper/sgs4 bs=64k count=64 oflag=direct status=none 2>/tmp/sgs-dd.err
rc=$?
took=$(($(date +%s) - start))
ktap_diag "dd: rc $rc in ${took}s: $(head -c 200 /tmp/sgs-dd.err)"
ktap_check "full pool: dd fails with 'No space left on device'" eval \
	'[ $rc -ne 0 ] && grep -q "No space left on device" /tmp/sgs-dd.err'
ktap_check "  at once (under 10 s)" test "$took" -lt 10
ktap_diag "status: $(status)"
ktap_check "  status out_of_data_space error_if_no_space, 64/64 used" \
	status_ends "64/64 out_of_data_space discard_passdown error_if_no_space -"

# Back to queueing: a held write goes on once a delete frees space.
ktap_check "reload back to queue_if_no_space" eval 'reload sgs-pool "$(pool_table 8192)" && resume sgs-pool'
dd if=/tmp/sgs-blk of=/dev/mapper/sgs4 bs=64k seek=63 count=1 oflag=direct status=none 2>/tmp/sgs-dd.err &
held=$!
sleep 2
ktap_check "full pool: a write is held again" kill -0 $held
ktap_check "delete volume 3 (removed first)" eval 'remove sgs3 && msg delete 3'
ktap_check "  the held write completes" ended $held
wait $held
rc=$?
ktap_check "  successfully, its data reads back" eval '[ $rc -eq 0 ] && reads_back 4 63'

# Beyond the capacities chosen at format. The data device alone (600 MiB:
# 9600 extents; the space maps hold 9 x 1018 = 9162): a growth extension
# sized for twice the format-time capacity (17 data space map blocks in
# all, 8 new, plus an index block: 18 blocks), in free metadata blocks.
ktap_check "reload with 9600 data extents, beyond the 9162 the space maps hold" eval \
	'reload sgs-pool "$(pool_table 1228800)" && resume sgs-pool'
ktap_check "  status: 9600 extents, rw" eval '[[ $(status) == *"/512 "*"/9600 rw "* ]] || { status; false; }'
ktap_check "  logged: growth extension 1, 18 blocks" log_has \
	"growth extension 1 of the space maps: 18 metadata blocks, capacity now 17306 data extents, 2036 metadata blocks"
# The metadata device beyond its capacity (16 MiB: 4096 blocks; the space
# maps hold 2 x 1018): growth extension 2 (3 metadata space map blocks and
# an index block: 8 blocks), at the start of the new space.
truncate -s 16M /tmp/sgs-meta
losetup -c "$META"
ktap_check "grown metadata device beyond its capacity: reload and resume" eval \
	'reload sgs-pool "$(pool_table 1228800)" && resume sgs-pool'
ktap_check "  status: 4096 metadata blocks" eval '[[ $(status) == *"/4096 "*"/9600 rw "* ]] || { status; false; }'
ktap_check "  logged: growth extension 2, 8 blocks" log_has \
	"growth extension 2 of the space maps: 8 metadata blocks, capacity now 17306 data extents, 5090 metadata blocks"
ktap_check "the new space is used: volume 5, 16 extents written" eval 'msg create 5 && vol 5 2048 && wr 5 0 16 && sync /dev/mapper/sgs5'
sum5=$(sha256sum </dev/mapper/sgs5)
used=$(status | awk '{print $6}')
ktap_check "  reads back" sum_is 5 "$(sha256sum </tmp/sgs-rand)"

remove sgs5
remove sgs4
remove sgs2
remove sgs1
remove sgs-pool
# Re-created from the same disks: committed data is intact.
ktap_check "re-create the pool (9600 extents) and volumes 1 and 5" eval \
	'create sgs-pool "$(pool_table 1228800)" && vol 1 2048 && vol 5 2048'
ktap_check "  volume 1 reads its data back" sum_is 1 "$sum1"
ktap_check "  volume 5 reads its data back" sum_is 5 "$sum5"
ktap_diag "data extents used: $used"
ktap_check "  status: the same extents used, 4096 metadata blocks" eval '[[ $(status) == *"/4096 $used rw "* ]] || { status; false; }'
remove sgs5
remove sgs1
remove sgs-pool
ktap_pool_check "$META"
no_dm_device() { ! compgen -G '/sys/block/dm-*' >/dev/null; }
ktap_check "no device left" no_dm_device
dmesg >>$KLOG
ktap_check "no kernel complaint" sh -c "! grep -qE 'BUG:|Oops|WARNING:|general protection|INFO: task' $KLOG"
losetup -d "$META" "$DATA"
rm -f /tmp/sgs-data /tmp/sgs-meta
ktap_finish
