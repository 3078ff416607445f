#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Benchmark (not a test): the snapshot target against the raw disk and
# dm-thin, on the same two scratch disks (vda: data, vdb: metadata), one
# after the other: fio 4 KiB random reads and writes (iodepth 16, libaio,
# direct I/O, SECONDS each) on the raw disk, a dm-thin volume (thin-pool
# block size 64 KiB) and a snapguard volume (extent size 64 KiB), all on
# the first VOLUME_MIB of the data disk; writes go to provisioned,
# unshared blocks (the volumes are filled first). Then, for dm-thin and
# snapguard: COW_OPS 4 KiB writes right after a snapshot of the filled
# volume, each into a different 64 KiB block in random order (each one
# breaks a sharing: copy-on-write), and the time to take a snapshot of the
# empty and of the filled volume (median of 3 after a warm-up; dm-thin:
# suspend, message create_snap, resume; snapguard: one message). Prints
# one table with the ratios and the goals of the snapshot-target issue.
# Under TCG the absolute figures mean little; the ratios are the point.
# Run by `make bench-target` (Documentation/testing.rst).
# Usage: bench_target.sh [SECONDS] [VOLUME_MIB] [COW_OPS]
secs=${1:-15}
vol_mib=${2:-128}
cow_ops=${3:-1024}
export DM_DISABLE_UDEV=1
modprobe snapguard || exit 1
DATA=/dev/vda
META=/dev/vdb
ES=128 # extent / block size in sectors (64 KiB)
vol_sect=$((vol_mib * 2048))
extents=$((vol_sect / ES))
pool_sect=$(($(blockdev --getsz $DATA) / ES * ES))
[ "$cow_ops" -le "$extents" ] || cow_ops=$extents
# The filled volume, then one new extent per CoW write.
if [ $((extents + cow_ops)) -gt $((pool_sect / ES)) ]; then
	echo "bench_target: the data disk ($((pool_sect / 2048)) MiB) is too small for $vol_mib MiB + $cow_ops CoW extents"
	exit 1
fi

# fio_iops DEV RW: IOPS of SECONDS of 4 KiB RW (randread/randwrite) on DEV,
# after 3 s of the same not counted (TCG translates code on its first use:
# the first run of a path is slow).
fio_iops() {
	fio --name=bench --filename="$1" --rw="$2" --bs=4k --iodepth=16 --ioengine=libaio \
		--direct=1 --time_based --ramp_time=3 --runtime="$secs" --size="${vol_mib}M" --minimal 2>/dev/null |
		awk -F';' -v rw="$2" '{ print (rw == "randread") ? $8 : $49 }'
}
# cow_iops DEV: IOPS of COW_OPS 4 KiB writes, each into a different
# 64 KiB block of the volume, in random order (a replayed fio I/O log).
cow_iops() {
	{
		echo "fio version 2 iolog"
		echo "$1 add"
		echo "$1 open"
		awk -v n="$cow_ops" -v ext="$extents" -v f="$1" 'BEGIN {
			srand(12);
			for (i = 0; i < ext; i++) a[i] = i;
			for (i = ext - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = a[i]; a[i] = a[j]; a[j] = t }
			for (i = 0; i < n; i++) print f " write " (a[i] * 65536 + int(rand() * 16) * 4096) " 4096"
		}'
		echo "$1 close"
	} >/tmp/bt-cow.log
	fio --name=cow --read_iolog=/tmp/bt-cow.log --replay_no_stall=1 --ioengine=libaio \
		--iodepth=16 --direct=1 --minimal 2>/dev/null | awk -F';' '{ print $49 }'
}
fill() { dd if=/dev/zero of="$1" bs=1M count="$vol_mib" oflag=direct status=none; }
zero_meta() { dd if=/dev/zero of=$META bs=1M count=1 oflag=direct status=none; }
now_us() { echo $(($(date +%s%N) / 1000)); }
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
# snap_ms SNAP DEL: median time (ms) of 3 snapshots taken by SNAP, each
# deleted by DEL after it was timed, after one not counted (see fio_iops).
snap_ms() {
	local t0 t1 all=() i
	$1 && $2
	for i in 1 2 3; do
		t0=$(now_us)
		$1 || echo "bench_target: snapshot failed" >&2
		t1=$(now_us)
		all+=($((t1 - t0)))
		$2
	done
	awk -v us="$(median3 "${all[@]}")" 'BEGIN { printf "%.1f", us / 1000 }'
}
say() { echo "# $*"; }

say "bench-target: 4 KiB, iodepth 16, libaio, direct; ${secs} s per fio run;" \
	"volume $vol_mib MiB on a $((pool_sect / 2048)) MiB data disk; $cow_ops CoW writes"
say "guest load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- raw disk
say "raw: fill, randread, randwrite"
fill $DATA
raw_rr=$(fio_iops $DATA randread)
raw_rw=$(fio_iops $DATA randwrite)

# --- dm-thin
say "dm-thin: snapshots of the empty volume, fill, randread, randwrite, snapshots, CoW"
zero_meta
dmsetup create --noudevsync bt-tpool --table "0 $pool_sect thin-pool $META $DATA $ES 0"
dmsetup message bt-tpool 0 "create_thin 1"
dmsetup create --noudevsync bt-thin --table "0 $vol_sect thin /dev/mapper/bt-tpool 1"
thin_snap() {
	dmsetup suspend --noudevsync bt-thin && dmsetup message bt-tpool 0 "create_snap 2 1" &&
		dmsetup resume --noudevsync bt-thin
}
thin_del() { dmsetup message bt-tpool 0 "delete 2"; }
thin_se=$(snap_ms thin_snap thin_del)
fill /dev/mapper/bt-thin
thin_rr=$(fio_iops /dev/mapper/bt-thin randread)
thin_rw=$(fio_iops /dev/mapper/bt-thin randwrite)
thin_sf=$(snap_ms thin_snap thin_del)
thin_snap
thin_cow=$(cow_iops /dev/mapper/bt-thin)
say "dm-thin pool status: $(dmsetup status bt-tpool)"
dmsetup remove --noudevsync bt-thin
dmsetup remove --noudevsync bt-tpool

# --- snapguard
say "snapguard: the same"
zero_meta
printf '0 %s snapguard-pool %s %s %s 0\n' $pool_sect $META $DATA $ES | dmsetup create --noudevsync bt-pool
dmsetup message bt-pool 0 create 1
printf '0 %s snapguard /dev/mapper/bt-pool 1\n' $vol_sect | dmsetup create --noudevsync bt-sg
sg_snap() { dmsetup message bt-pool 0 snapshot 1 2; }
sg_del() { dmsetup message bt-pool 0 delete 2; }
sg_se=$(snap_ms sg_snap sg_del)
fill /dev/mapper/bt-sg
sg_rr=$(fio_iops /dev/mapper/bt-sg randread)
sg_rw=$(fio_iops /dev/mapper/bt-sg randwrite)
sg_sf=$(snap_ms sg_snap sg_del)
sg_snap
sg_cow=$(cow_iops /dev/mapper/bt-sg)
say "snapguard pool status: $(dmsetup status bt-pool)"
minor=$(dmsetup info -c --noheadings -o minor bt-pool | tr -d ' ')
say "snapguard pool stats: $(tr '\n' ' ' </sys/kernel/snapguard/pools/dm-$minor/stats)"
dmsetup remove --noudevsync bt-sg
dmsetup remove --noudevsync bt-pool
rm -f /tmp/bt-cow.log
say "guest load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- the table
awk -v raw_rr="$raw_rr" -v raw_rw="$raw_rw" \
	-v thin_rr="$thin_rr" -v thin_rw="$thin_rw" -v thin_cow="$thin_cow" -v thin_se="$thin_se" -v thin_sf="$thin_sf" \
	-v sg_rr="$sg_rr" -v sg_rw="$sg_rw" -v sg_cow="$sg_cow" -v sg_se="$sg_se" -v sg_sf="$sg_sf" '
function r(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "-" }
function v(x) { return x == "" ? "-" : x }
function row(name, raw, thin, sg, goal, ok) {
	printf "%-36s %9s %9s %9s %8s %8s %8s  %-26s %s\n", name, v(raw), v(thin), v(sg),
		(raw == "" ? "-" : r(thin, raw)), (raw == "" ? "-" : r(sg, raw)), r(sg, thin), goal, goal == "" ? "" : (ok ? "met" : "MISSED")
}
BEGIN {
	printf "%-36s %9s %9s %9s %8s %8s %8s  %-26s %s\n", "figure", "raw", "dm-thin", "snapguard",
		"thin/raw", "sg/raw", "sg/thin", "goal (snapguard)", ""
	row("randread 4k QD16 (IOPS)", raw_rr, thin_rr, sg_rr, ">= 0.95 raw, >= dm-thin",
		sg_rr >= 0.95 * raw_rr && sg_rr >= thin_rr)
	row("randwrite 4k QD16, provisioned (IOPS)", raw_rw, thin_rw, sg_rw, ">= 0.90 raw, >= dm-thin",
		sg_rw >= 0.90 * raw_rw && sg_rw >= thin_rw)
	row("CoW write after snapshot (IOPS)", "", thin_cow, sg_cow, ">= 1.2 dm-thin", sg_cow >= 1.2 * thin_cow)
	row("snapshot, empty volume (ms)", "", thin_se, sg_se, "", 1)
	row("snapshot, filled volume (ms)", "", thin_sf, sg_sf, "", 1)
	tr = (thin_se > 0) ? thin_sf / thin_se : 0
	sr = (sg_se > 0) ? sg_sf / sg_se : 0
	row("snapshot time filled/empty", "", sprintf("%.2f", tr), sprintf("%.2f", sr), "<= 1.2", sr > 0 && sr <= 1.2)
}'
