#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A live snapguard-pool: an all-zero metadata device is formatted, status
# and table lines have the documented shape, the printed table loads back
# (reopening the pool), a different extent size or length is refused, a
# metadata device that is neither zeroed nor a pool is refused and left
# untouched, messages are validated and create/delete/snapshot change the
# metadata durably (set_transaction_id: target_fail.sh). Volume tables are not implemented yet
# (Documentation/snapshot-target.rst).
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard

ktap_plan 37

dd if=/dev/zero of=/tmp/sgp-meta bs=1M count=0 seek=4 status=none
dd if=/dev/zero of=/tmp/sgp-data bs=1M count=0 seek=16 status=none
dd if=/dev/zero of=/tmp/sgp-junk bs=1M count=0 seek=4 status=none
dd if=/dev/zero of=/tmp/sgp-meta2 bs=1M count=0 seek=4 status=none
dd if=/dev/zero of=/tmp/sgp-data2 bs=1M count=0 seek=16 status=none
dd if=/dev/urandom of=/tmp/sgp-junk bs=4096 count=1 conv=notrunc status=none
META=$(losetup -f --show /tmp/sgp-meta)
DATA=$(losetup -f --show /tmp/sgp-data)
JUNK=$(losetup -f --show /tmp/sgp-junk)
META2=$(losetup -f --show /tmp/sgp-meta2)
DATA2=$(losetup -f --show /tmp/sgp-data2)
devt() { cat /sys/class/block/${1#/dev/}/dev; }
KLOG=/tmp/sgp-klog
dmesg -c >$KLOG

create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$1"; }
# log_has TEXT: the kernel log since the last call has TEXT.
log_has() {
	local log
	log=$(dmesg -c)
	printf '%s\n' "$log" >>$KLOG
	[[ $log == *"$1"* ]] || { printf '%s\n' "$log" | sed 's/^/# /'; return 1; }
}

ktap_check "create a pool on a zeroed metadata device" create sgp "0 32768 snapguard-pool $META $DATA 128 10"
ktap_check "the metadata device was formatted" log_has "formatted a new pool: 256 extents of 128 sectors"
status=$(dmsetup status sgp)
ktap_diag "status: $status"
# 4 MiB of metadata is 1024 blocks; 16 MiB of data in 64 KiB extents is 256.
check_status() {
	[[ $status =~ ^0\ 32768\ snapguard-pool\ 0\ ([0-9]+)/1024\ 0/256\ rw\ discard_passdown\ queue_if_no_space\ -$ ]] &&
		[ "${BASH_REMATCH[1]}" -gt 0 ] && [ "${BASH_REMATCH[1]}" -lt 1024 ]
}
ktap_check "status line" check_status
status_meta_used=$(cut -d' ' -f5 <<<"$status")
status_meta_used=${status_meta_used%/*}
table=$(dmsetup table sgp)
ktap_diag "table: $table"
ktap_check "table line" test "$table" = "0 32768 snapguard-pool $(devt $META) $(devt $DATA) 128 10 0"
ktap_check "module busy while the pool exists" sh -c "! rmmod snapguard 2>/dev/null"
# One in-core instance per pool: a second one would overwrite the first
# one's commits.
dmesg -c >>$KLOG
ktap_check "second pool on the same metadata device refused" sh -c \
	"! printf '0 32768 snapguard-pool $META $DATA2 128 10\n' | dmsetup create --noudevsync sgp2 2>/dev/null &&
	 dmesg | grep -q 'snapguard-pool: Device already used by a live pool ('"
dmesg -c >>$KLOG
ktap_check "second pool on the same data device refused" sh -c \
	"! printf '0 32768 snapguard-pool $META2 $DATA 128 10\n' | dmsetup create --noudevsync sgp2 2>/dev/null &&
	 dmesg | grep -q 'snapguard-pool: Device already used by a live pool ('"
ktap_check "  and its metadata device left zero" sh -c "[ \$(tr -d '\\000' </tmp/sgp-meta2 | wc -c) -eq 0 ]"
# A reload binds to the live pool (Documentation/snapshot-target.rst,
# "Space and growth"); it may not change the pool's devices or features.
dmesg -c >>$KLOG
ktap_check "reload with another data device refused, live table kept" sh -c \
	"! printf '0 32768 snapguard-pool $META $DATA2 128 10\n' | dmsetup reload sgp 2>/dev/null &&
	 dmesg | grep -q 'snapguard-pool: Different data device cannot replace a live pool.s (' &&
	 [ \"\$(dmsetup table sgp)\" = '$table' ] && ! dmsetup table --inactive sgp | grep -q ."
dmesg -c >>$KLOG
ktap_check "reload with other features refused" sh -c \
	"! printf '0 32768 snapguard-pool $META $DATA 128 10 1 skip_block_zeroing\n' | dmsetup reload sgp 2>/dev/null &&
	 dmesg | grep -q 'snapguard-pool: Features of a live pool cannot change ('"
ktap_check "reloading the live pool's own table: accepted and resumed, same table" sh -c \
	"printf '%s\n' '$table' | dmsetup reload sgp && dmsetup resume --noudevsync sgp &&
	 [ \"\$(dmsetup table sgp)\" = '$table' ]"
# I/O to the pool device goes to the data device, as with dm-thin's pool.
dd if=/dev/urandom of=/tmp/sgp-blk bs=4096 count=2 status=none
dd if=/tmp/sgp-blk of=/dev/mapper/sgp bs=4096 seek=1000 oflag=direct conv=notrunc status=none
ktap_check "pool device writes reach the data device" sh -c \
	"dd if=$DATA bs=4096 skip=1000 count=2 iflag=direct status=none | cmp -s - /tmp/sgp-blk"

dmesg -c >>$KLOG
ktap_check "unknown message refused" sh -c "! dmsetup message sgp 0 frobnicate 2>/dev/null"
ktap_check "  with its reason" log_has "message refused: unrecognised message"
ktap_check "volume id out of range refused" sh -c "! dmsetup message sgp 0 create 16777216 2>/dev/null"
ktap_check "  with its reason" log_has "argument 1: volume id 16777216 is above 16777215"
ktap_check "set_transaction_id with a wrong old id refused" sh -c "! dmsetup message sgp 0 set_transaction_id 3 4 2>/dev/null"
ktap_check "  said so" log_has "set_transaction_id 3 4 refused: the transaction id is 0"
ktap_check "create 1" dmsetup message sgp 0 create 1
used_after_create=$(dmsetup status sgp | cut -d' ' -f5)
ktap_diag "metadata used after create: $used_after_create"
ktap_check "  uses metadata" test "${used_after_create%/*}" -gt "${status_meta_used}"
ktap_check "create 1 again refused" sh -c "! dmsetup message sgp 0 create 1 2>/dev/null"
ktap_check "  as existing" log_has "message 'create 1' failed: already exists"
ktap_check "snapshot 1 2" dmsetup message sgp 0 snapshot 1 2
ktap_check "snapshot of a missing volume refused" sh -c "! dmsetup message sgp 0 snapshot 7 8 2>/dev/null"
ktap_check "  as not found" log_has "message 'snapshot 7 8' failed: not found"
ktap_check "create 65536 refused (pool formatted for 65536 volumes)" sh -c "! dmsetup message sgp 0 create 65536 2>/dev/null"
ktap_check "delete 1" dmsetup message sgp 0 delete 1
status=$(dmsetup status sgp)

remove sgp
dmesg -c >>$KLOG
ktap_check "the printed table loads back (pool reopened)" sh -c \
	"printf '%s\n' '$table' | dmsetup create --noudevsync sgp && [ \"\$(dmsetup table sgp)\" = '$table' ] &&
	 [ \"\$(dmsetup status sgp)\" = '$status' ]"
ktap_check "  without formatting again" sh -c "! dmesg | grep -q 'formatted a new pool'"
dmesg -c >>$KLOG
ktap_check "  with its volumes: 2 kept" sh -c "! dmsetup message sgp 0 create 2 2>/dev/null"
ktap_check "  as existing" log_has "message 'create 2' failed: already exists"
ktap_check "  1 deleted" dmsetup message sgp 0 create 1
remove sgp

dmesg -c >>$KLOG
ktap_check "other extent size refused" sh -c \
	"! printf '0 32768 snapguard-pool $META $DATA 256 10\n' | dmsetup create --noudevsync sgp 2>/dev/null &&
	 dmesg | grep -q 'snapguard-pool: Extent size differs from the pool.s ('"
dmesg -c >>$KLOG
ktap_check "shorter length refused" sh -c \
	"! printf '0 16384 snapguard-pool $META $DATA 128 10\n' | dmsetup create --noudevsync sgp 2>/dev/null &&
	 dmesg | grep -q 'snapguard-pool: Pool length below the pool.s data size ('"
dmesg -c >>$KLOG
sum=$(sha256sum </tmp/sgp-junk)
ktap_check "junk metadata refused and untouched" sh -c \
	"! printf '0 32768 snapguard-pool $JUNK $DATA 128 10\n' | dmsetup create --noudevsync sgp 2>/dev/null &&
	 dmesg | grep -q 'snapguard-pool: Metadata device is neither zeroed nor a pool (' &&
	 [ \"\$(sha256sum </tmp/sgp-junk)\" = '$sum' ]"

no_dm_device() { ! compgen -G '/sys/block/dm-*' >/dev/null; }
ktap_check "no device left" no_dm_device
dmesg >>$KLOG
ktap_check "no kernel complaint" sh -c "! grep -qE 'BUG:|Oops|WARNING:|general protection' $KLOG"
losetup -d "$META" "$DATA" "$JUNK" "$META2" "$DATA2"
ktap_finish
