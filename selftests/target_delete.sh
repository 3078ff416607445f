#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `delete` of a sparse volume whose table has many leaves: a 1.5 GiB
# volume (grown past the pool's 96 MiB) with one extent in each of 24
# leaves, and its snapshot, are deleted while another volume keeps writing
# and fsyncing; the data extents come back, the ids are free, the other
# volume's data is intact, and the metadata checks clean.
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard
ktap_plan 12

T=/tmp/sgd
dd if=/dev/zero of=$T-meta bs=1M count=0 seek=8 status=none
dd if=/dev/zero of=$T-data bs=1M count=0 seek=96 status=none
META=$(losetup -f --show $T-meta)
DATA=$(losetup -f --show $T-data)
create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$1"; }
msg() { dmsetup message sgd-pool 0 "$@"; }
used() { dmsetup status sgd-pool | cut -d' ' -f6 | cut -d/ -f1; }
# 96 MiB of 64 KiB extents; a table leaf maps 1018 extents (63.6 MiB).
create sgd-pool "0 196608 snapguard-pool $META $DATA 128 0"
msg create 1
msg create 3
# 1.5 GiB: longer than the volume, so it grows (over-provisioned).
ktap_check "a 1.5 GiB volume on a 96 MiB pool" create sgd1 "0 3145728 snapguard /dev/mapper/sgd-pool 1"
create sgd3 "0 16384 snapguard /dev/mapper/sgd-pool 3"
spread() {
	local i
	for i in $(seq 0 23); do
		printf 'leaf %02d\n' "$i" | dd of=/dev/mapper/sgd1 bs=4k seek=$((i * 16384)) conv=sync,fsync status=none || return 1
	done
}
ktap_check "one extent written in each of 24 leaves" spread
base=$(used)
ktap_check "  24 data extents used" test "$base" -eq 24
remove sgd1
ktap_check "snapshot 1 -> 2" msg snapshot 1 2

# A writer on volume 3 with fsyncs while the deletions run, over 16
# extents provisioned first (so that the data extents used only change by
# the deletions: the counts below are exact).
dd if=/dev/urandom of=/dev/mapper/sgd3 bs=64k count=16 oflag=direct conv=fsync status=none
rm -f $T-stop
writer() {
	local n=0
	while [ ! -e $T-stop ]; do
		dd if=/dev/urandom of=$T-w bs=64k count=1 status=none
		dd if=$T-w of=/dev/mapper/sgd3 bs=64k seek=$((n % 16)) oflag=direct conv=fsync status=none || return 1
		n=$((n + 1))
	done
	cp $T-w $T-last
	echo $(((n - 1) % 16)) >$T-lastpos
}
writer &
wpid=$!
sleep 1
ktap_check "delete 1 while volume 3 is written" msg delete 1
v3() { echo $(($(dmsetup status sgd3 | cut -d' ' -f4) / 128)); }
ktap_check "  the snapshot holds the 24 extents still" test "$(used)" -eq $((24 + $(v3)))
ktap_check "delete 2 (the snapshot)" msg delete 2
touch $T-stop
wait $wpid
ktap_check "  the writer ran throughout and its last block reads back" sh -c \
	"dd if=/dev/mapper/sgd3 bs=64k skip=\$(cat $T-lastpos) count=1 status=none | cmp -s - $T-last"
ktap_check "the 24 extents are free again (only volume 3's are used)" test "$(used)" -eq "$(v3)"
ktap_check "ids 1 and 2 are free again" sh -c "dmsetup message sgd-pool 0 create 1 && dmsetup message sgd-pool 0 create 2"
remove sgd3
remove sgd-pool
ktap_pool_check "$META"
losetup -d "$META" "$DATA"
rm -f $T-*
ktap_check "no device left" sh -c "! dmsetup table 2>/dev/null | grep -q snapguard"
ktap_finish
