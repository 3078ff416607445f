#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vm.py: crash-pair
# Killing the guest under a snapshot pool: phase 1 (first boot) builds a
# pool on the scratch disks, writes and fsyncs files on a volume and on a
# writable snapshot of it (taken while active), records their checksums on
# another disk, starts unsynced writers and resets the machine with
# `echo b > /proc/sysrq-trigger` (no sync, no unmount, no pool suspend).
# Phase 2 (second boot, same disks) re-creates the pool: `snapguard pool
# check` clean, both volumes there, each file system clean after journal
# replay, every recorded (fsynced) file with its checksum, and the pool
# still works (deletes, a new file, a snapshot of the mounted origin under
# a running `fio --verify=crc32c` job: the job verifies, the snapshot's
# file system is clean after journal replay). tools/vm.py runs the two boots for
# a program marked "vm.py: crash-pair" and passes the phase in
# SG_CRASH_PHASE; without it this program skips. See
# Documentation/testing.rst ("Killing the guest").
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
case ${SG_CRASH_PHASE:-} in
1 | 2) ;;
*)
	echo "1..0 # SKIP needs two boots: tools/vm.py test --only target_crash.sh"
	exit 4
	;;
esac
modprobe snapguard

META_S=16384        # 8 MiB of /dev/vda
DATA_S=131072       # 64 MiB of /dev/vdb
VLEN=32768          # 16 MiB volumes
REC=/dev/vdd        # the record of what was fsynced (survives the reset)
RECFILE=/tmp/sgc-record
MNT=/tmp/sgc-mnt
F5COPY_64K=16       # f5's bytes are kept on $REC from 1 MiB on
F5_BYTES=307200     # f5: 300 KiB
EXT_S=128           # extent size in sectors (64 KiB)
# Every ext4 mount here uses dioread_lock. With ext4's default
# (dioread_nolock) buffered writeback allocates unwritten extents and
# converts them when each write completes; if that conversion cannot split
# the extent (ENOSPC, which the writers below cause for a moment: each
# rewrite frees 1 MiB only at the next journal commit), ext4 7.3 zeroes the
# rest of the extent (ext4_split_extent_zeroout), over blocks that another
# completed write of the same extent had filled. fsynced data then reads as
# zeroes after the reset, on any block device (Documentation/testing.rst,
# "Killing the guest"). dioread_lock does not use unwritten extents for
# buffered writes, so what this program checks is the pool's durability.
create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$@"; }
msg() { dmsetup message sgc-pool 0 "$@"; }
vol() { create "sgc$1" "0 $VLEN snapguard /dev/mapper/sgc-pool $1"; }
devices() {
	create sgc-meta "0 $META_S linear /dev/vda 0" &&
		create sgc-data "0 $DATA_S linear /dev/vdb 0" &&
		create sgc-pool "0 $DATA_S snapguard-pool /dev/mapper/sgc-meta /dev/mapper/sgc-data $EXT_S 10"
}
# record LINE: appends LINE to the record and writes it to $REC durably
# (O_DIRECT, then a flush); only called after the fsync it describes.
record() {
	echo "$1" >>$RECFILE
	[ "$(stat -c %s $RECFILE)" -lt 65536 ] &&
		dd if=$RECFILE of=$REC bs=64k count=1 conv=sync,fsync oflag=direct status=none
}
# wfile VOL KIB NAME: a new file, fsynced, then recorded.
wfile() {
	dd if=/dev/urandom of="$MNT/$1/$3" bs=1k count="$2" conv=fsync status=none &&
		record "file $1 $3 $(sha256sum <"$MNT/$1/$3" | cut -d' ' -f1)"
}

if [ "$SG_CRASH_PHASE" = 1 ]; then
	ktap_plan 9
	: >$RECFILE
	dd if=/dev/zero of=/dev/vda bs=1M count=8 oflag=direct status=none
	dd if=/dev/zero of=$REC bs=64k count=1 oflag=direct status=none
	mkdir -p $MNT/1 $MNT/2
	ktap_check "create the pool" devices
	mkvol1() {
		msg create 1 && vol 1 && mkfs.ext4 -q -F /dev/mapper/sgc1 &&
			mount -t ext4 -o dioread_lock /dev/mapper/sgc1 $MNT/1 && record "vol 1"
	}
	ktap_check "volume 1 with ext4" mkvol1
	files3() { wfile 1 64 f1 && wfile 1 700 f2 && wfile 1 3000 f3; }
	ktap_check "three files, fsynced and recorded" files3
	# Snapshot of the mounted, active origin: committed when the message
	# returns; its files are the fsynced ones (its journal replays).
	snap2() {
		sync -f $MNT/1 && msg snapshot 1 2 && record "vol 2" &&
			grep '^file 1 ' $RECFILE | sed 's/^file 1 /file 2 /' >$RECFILE.2 &&
			while read -r line; do record "$line" || return 1; done <$RECFILE.2
	}
	ktap_check "snapshot 1 -> 2 of the active origin" snap2
	# In place, so the shared extents break; the new bytes are recorded.
	overwrite() {
		dd if=/dev/urandom of=$MNT/1/f2 bs=1k count=700 conv=notrunc,fsync status=none &&
			record "file 1 f2 $(sha256sum <$MNT/1/f2 | cut -d' ' -f1)"
	}
	ktap_check "overwrite a shared file on volume 1" overwrite
	mnt2() { vol 2 && mount -t ext4 -o dioread_lock /dev/mapper/sgc2 $MNT/2; }
	ktap_check "mount the snapshot (journal replay)" mnt2
	ktap_check "a file on the snapshot" wfile 2 500 g1
	# Writers that never sync, busy when the reset comes (three 1 MiB
	# files rewritten in turn: the file systems never fill).
	for v in 1 2; do
		(i=0; while :; do
			dd if=/dev/urandom of=$MNT/$v/junk$((i % 3)) bs=64k count=16 status=none
			i=$((i + 1))
		done) &
	done
	sleep 2
	ktap_check "a file fsynced under the writers" wfile 1 900 f4
	ktap_check "the record is on $REC" cmp -s -n "$(stat -c %s $RECFILE)" $RECFILE $REC
	ktap_diag "record: $(grep -c '^file' $RECFILE) files on $(grep -c '^vol' $RECFILE) volumes, and f5"
	# vm.py requires this line before the guest dies.
	echo "# crash-pair: phase 1 done, resetting the guest"
	# Time for the serial port to carry the lines above.
	sleep 1
	echo 1 >/proc/sys/kernel/sysrq
	# A last file, then the reset at once (its checksum taken before, one
	# O_DIRECT write of the record after the fsync): well within the
	# pool's periodic commit (1 s), so mostly only the fsync's own commit
	# can make f5 durable. Phase 2 finds "end" in the record only if this
	# write and the record succeeded.
	head -c $F5_BYTES /dev/urandom >/tmp/sgc-f5
	sum5=$(sha256sum </tmp/sgc-f5 | cut -d' ' -f1)
	# A copy for phase 2's diagnosis if f5 comes back wrong (before the
	# fsync, so the time from the fsync to the reset is unchanged).
	dd if=/tmp/sgc-f5 of=$REC bs=64k seek=$F5COPY_64K oflag=direct conv=fsync status=none
	dd if=/tmp/sgc-f5 of=$MNT/1/f5 bs=64k conv=fsync status=none &&
		printf 'file 1 f5 %s\nend\n' "$sum5" >>$RECFILE &&
		dd if=$RECFILE of=$REC bs=64k count=1 conv=sync,fsync oflag=direct status=none &&
		echo b >/proc/sysrq-trigger
	sleep 10
	echo "# crash-pair: the guest did not reset"
	exit 1
fi

# Phase 2: a new boot on the same disks.
ktap_plan 14
dd if=$REC bs=64k count=1 status=none | tr -d '\000' >$RECFILE
ktap_check "the record of phase 1 is complete (f5 and end)" grep -qx end $RECFILE
ktap_diag "record: $(grep -c '^file' $RECFILE) files on $(grep -c '^vol' $RECFILE) volumes"
create sgc-meta "0 $META_S linear /dev/vda 0"
ktap_pool_check /dev/mapper/sgc-meta "clean after the reset"
remove sgc-meta
ktap_check "the pool opens" devices
mkdir -p $MNT/1 $MNT/2 $MNT/3
# diagnose FILE VOL: what a wrong f5 holds against the copy kept on $REC,
# 4 KiB page by page through the page cache (same / zero / other), then
# block by block where ext4 and the pool put it on the data device, then
# through the page cache again after dropping it.
classify() {
	local f=$1 bs=$2 n=$3 i
	for i in $(seq 0 $((n - 1))); do
		if cmp -s <(dd if="$f" bs="$bs" skip="$i" count=1 status=none) \
			<(dd if=/tmp/sgc-f5want bs="$bs" skip="$i" count=1 status=none); then
			echo same
		elif [ -z "$(dd if="$f" bs="$bs" skip="$i" count=1 status=none | tr -d '\000' | head -c 1)" ]; then
			echo zero
		else
			echo other
		fi
	done | uniq -c | awk '{printf "%s x%s, ", $2, $1} END {print ""}'
}
diagnose() {
	local f=$1 v=$2 fsbs b phys vext off pext es=$((EXT_S * 512)) pages=$(((F5_BYTES + 4095) / 4096))
	echo "size $(stat -c %s "$f") (fsynced: $F5_BYTES)"
	dd if=$REC bs=64k skip=$F5COPY_64K count=$(((F5_BYTES + 65535) / 65536)) status=none | head -c $F5_BYTES >/tmp/sgc-f5want
	echo "page cache, 4 KiB pages: $(classify "$f" 4096 $pages)"
	fsbs=$(dumpe2fs -h "/dev/mapper/sgc$v" 2>/dev/null | awk '/^Block size/ {print $3}')
	filefrag -v "$f" | sed -n '4,20p'
	snapguard pool dump --volume "$v" /dev/mapper/sgc-meta >/tmp/sgc-dump 2>&1
	head -n 3 /tmp/sgc-dump
	# Each file block: its volume extent and offset, the data extent the
	# committed pool maps it to, and what the data device holds there.
	filefrag -v "$f" | awk -F'[:. ]+' '$2 ~ /^[0-9]+$/ && NF >= 6 {print $3, $4, $5}' >/tmp/sgc-frag
	: >/tmp/sgc-blocks
	for b in $(seq 0 $((F5_BYTES / fsbs - 1))); do
		phys=$(awk -v b="$b" '$1 <= b && b <= $2 {print $3 + b - $1}' /tmp/sgc-frag)
		vext=$((phys * fsbs / es))
		off=$((phys * fsbs % es))
		pext=$(awk -v x="$vext" '$2 == "->" {split($1, r, "+"); if (r[1] <= x && x < r[1] + r[2]) {print $3 + x - r[1]; exit}}' /tmp/sgc-dump)
		if [ -z "$pext" ]; then
			echo "vext $vext: unmapped" >>/tmp/sgc-blocks
			continue
		fi
		dd if=/dev/mapper/sgc-data bs="$fsbs" iflag=direct,skip_bytes count=1 skip=$((pext * es + off)) status=none >/tmp/sgc-blk
		if cmp -s /tmp/sgc-blk <(dd if=/tmp/sgc-f5want bs="$fsbs" skip="$b" count=1 status=none); then
			echo "same"
		elif [ -z "$(tr -d '\000' </tmp/sgc-blk | head -c 1)" ]; then
			echo "vext $vext -> data extent $pext: zero"
		else
			echo "vext $vext -> data extent $pext: other"
		fi >>/tmp/sgc-blocks
	done
	echo "file blocks on the data device:"
	uniq -c /tmp/sgc-blocks | head -n 40
	snapguard pool dump /dev/mapper/sgc-meta | head -n 100
	sync
	echo 3 >/proc/sys/vm/drop_caches
	echo "page cache dropped, 4 KiB pages: $(classify "$f" 4096 $pages)"
}
# verify VOL: mounts (journal replay), checks every recorded file of VOL,
# unmounts, e2fsck -fn.
verify() {
	local v=$1 n=0 kind fv name sum bad=0
	vol "$v" || return 1
	mount -t ext4 -o dioread_lock "/dev/mapper/sgc$v" "$MNT/$v" || return 1
	# The last recorded version of each file counts.
	tac $RECFILE | awk -v v="$v" '$1 == "file" && $2 == v && !seen[$3]++' >/tmp/sgc-want
	while read -r kind fv name sum; do
		n=$((n + 1))
		if [ "$(sha256sum <"$MNT/$v/$name" | cut -d' ' -f1)" != "$sum" ]; then
			echo "volume $v: $name has other bytes than were fsynced"
			[ "$name" = f5 ] && diagnose "$MNT/$v/$name" "$v"
			bad=1
		fi
	done </tmp/sgc-want
	umount "$MNT/$v" || return 1
	e2fsck -fn "/dev/mapper/sgc$v" >/tmp/sgc-fsck 2>&1 || { tail -n 12 /tmp/sgc-fsck; bad=1; }
	echo "volume $v: $n files checked"
	[ $n -gt 0 ] && [ $bad = 0 ]
}
ktap_check "volume 1: recorded files intact, e2fsck clean" verify 1
ktap_check "volume 2 (snapshot): recorded files intact, e2fsck clean" verify 2
ktap_check "no ext4 errors" sh -c "! dmesg | grep 'EXT4-fs error'"
# The pool keeps working after the reset.
more() {
	local r=1
	mount -t ext4 -o dioread_lock /dev/mapper/sgc1 $MNT/1 || return 1
	rm -f $MNT/1/junk* &&
		dd if=/dev/urandom of=$MNT/1/h1 bs=1k count=300 conv=fsync status=none &&
		sha256sum <$MNT/1/h1 >/tmp/sgc-h1 && umount $MNT/1 &&
		mount -t ext4 -o dioread_lock /dev/mapper/sgc1 $MNT/1 && sha256sum <$MNT/1/h1 | cmp -s - /tmp/sgc-h1 && r=0
	umount $MNT/1
	return $r
}
ktap_check "delete files, a new file on volume 1 after the reset" more
# A snapshot of the mounted origin under a running fio write job that
# verifies what it wrote (crc32c): the job's verification passes and the
# snapshot's file system is clean after its journal replay.
FIO_PID=
fio_snap() {
	mount -t ext4 -o dioread_lock /dev/mapper/sgc1 $MNT/1 || return 1
	# verify_backlog: verifies while it writes, as well as at the end.
	fio --name=sgc --filename=$MNT/1/fio.dat --size=4M --rw=randwrite --bs=4k \
		--ioengine=psync --direct=1 --verify=crc32c --do_verify=1 --verify_backlog=128 \
		--loops=20 --runtime=40 --output=/tmp/sgc-fio >/dev/null 2>&1 &
	FIO_PID=$!
	sleep 1
	kill -0 $FIO_PID || { echo "fio ended before the snapshot"; return 1; }
	msg snapshot 1 3 || return 1
	kill -0 $FIO_PID || { echo "fio ended during the snapshot"; return 1; }
}
# Not through ktap_check: fio must stay a child of this shell.
if fio_snap >/tmp/sgc-out 2>&1; then
	ktap_ok "snapshot 1 -> 3 while fio writes volume 1"
else
	ktap_fail "snapshot 1 -> 3 while fio writes volume 1"
	sed 's/^/# /' /tmp/sgc-out
fi
fio_ok() {
	local r=0
	[ -n "$FIO_PID" ] && wait $FIO_PID || { r=1; tail -n 20 /tmp/sgc-fio; }
	umount $MNT/1 || r=1
	return $r
}
if fio_ok >/tmp/sgc-out 2>&1; then
	ktap_ok "  the fio job verified its data (crc32c)"
else
	ktap_fail "  the fio job verified its data (crc32c)"
	sed 's/^/# /' /tmp/sgc-out
fi
# Not frozen: the snapshot holds what the origin's file system had made
# durable (fio's file may or may not be in it), and must be consistent.
snap3() {
	local r=1
	vol 3 || return 1
	if mount -t ext4 -o dioread_lock /dev/mapper/sgc3 $MNT/3 && umount $MNT/3; then
		if e2fsck -fn /dev/mapper/sgc3 >/tmp/sgc-fsck3 2>&1; then
			r=0
		else
			tail -n 12 /tmp/sgc-fsck3
		fi
	else
		echo "mount failed:"; dmesg | tail -n 5
	fi
	remove sgc3 || r=1
	return $r
}
ktap_check "  the snapshot: journal replayed, e2fsck clean" snap3
ktap_check "remove volumes and pool" remove sgc1 sgc2 sgc-pool
ktap_check "remove the linear devices" remove sgc-meta sgc-data
create sgc-meta "0 $META_S linear /dev/vda 0"
ktap_pool_check /dev/mapper/sgc-meta "clean at the end"
remove sgc-meta
ktap_check "no kernel complaint" sh -c "! dmesg | grep -qE 'BUG:|Oops|WARNING:|general protection|INFO: task'"
ktap_finish
