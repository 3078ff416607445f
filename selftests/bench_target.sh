#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Benchmark (not a test): the snapshot target against the raw disk and
# dm-thin in one guest, on five identical scratch disks (sparse files of
# the host): vda raw; vdb data and vdc metadata of a dm-thin pool (block
# size 64 KiB); vdd data and vde metadata of a snapguard pool (extent size
# 64 KiB). Each figure is measured ROUNDS times, the three devices taking
# turns (so that load on the host hits them alike), and the best round is
# kept (interference only makes a figure worse):
# - fio 4 KiB random reads and writes (iodepth 16, libaio, direct I/O,
#   SECONDS each after 2 s not counted) over the first VOLUME_MIB of the
#   raw disk and of a volume of each pool; the volumes (and the raw
#   region) are filled first, so writes go to provisioned, unshared blocks;
# - copy-on-write (dm-thin and snapguard): right after a snapshot of the
#   filled volume, COW_OPS 4 KiB writes, each into a different 64 KiB block
#   in random order, so each one breaks a sharing (IOPS);
# - the time to take a snapshot of the empty and of the filled volume
#   (dm-thin: suspend, message create_snap, resume; snapguard: one
#   message), after one not counted; each snapshot is deleted again.
# The random read and write figures are also measured on dm-linear over
# the raw disk: the cost of device-mapper itself (a bio clone and a remap
# per bio), the floor under any dm target (sg/lin is snapguard against it).
# Prints one table with the ratios and the goals of the snapshot-target
# issue. Under TCG the absolute figures mean little; the ratios are the
# point. Run by `make bench-target` (Documentation/testing.rst).
# Two settings of the disks, told by LATENCY_US:
# - 0 (`make bench-target`): the disks are sparse files of the host, so
#   the guest CPU is the bottleneck (CPU-bound: a ratio says how many
#   instructions a target costs per I/O, under TCG, where every guest
#   instruction is emulated and costs many times its hardware time);
# - N (`make bench-target-device`): vda, vdb and vdd (the raw disk and the
#   pools' data disks) are QEMU null devices that complete every request
#   after N microseconds (reads give zeroes, writes are dropped; the
#   metadata disks stay files), slow enough that the device is the
#   bottleneck (device-bound: a ratio says whether a target keeps the
#   device as busy as the raw disk is kept, as with a real disk whose
#   latency is long against the CPU's work per I/O).
# Usage: bench_target.sh [SECONDS] [VOLUME_MIB] [COW_OPS] [ROUNDS] [LATENCY_US]
secs=${1:-10}
vol_mib=${2:-128}
cow_ops=${3:-1024}
rounds=${4:-3}
latency_us=${5:-0}
export DM_DISABLE_UDEV=1
modprobe snapguard || exit 1
RAW=/dev/vda
ES=128 # extent / block size in sectors (64 KiB)
vol_sect=$((vol_mib * 2048))
extents=$((vol_sect / ES))
[ "$cow_ops" -le "$extents" ] || cow_ops=$extents
pool_sect() { echo $(($(blockdev --getsz "$1") / ES * ES)); }
# The filled volume, a snapshot of it and one new extent per CoW write.
if [ $((extents + cow_ops * 2)) -gt $(($(pool_sect /dev/vdb) / ES)) ]; then
	echo "bench_target: the data disks are too small for $vol_mib MiB + $cow_ops CoW extents"
	exit 1
fi
THIN=/dev/mapper/bt-thin
SG=/dev/mapper/bt-sg
LIN=/dev/mapper/bt-lin

# fio_iops DEV RW: IOPS of SECONDS of 4 KiB RW (randread/randwrite) on DEV,
# after 2 s of the same not counted (TCG translates code on its first use:
# the first run of a path is slow).
fio_iops() {
	fio --name=bench --filename="$1" --rw="$2" --bs=4k --iodepth=16 --ioengine=libaio \
		--direct=1 --time_based --ramp_time=2 --runtime="$secs" --size="${vol_mib}M" --minimal 2>/dev/null |
		awk -F';' -v rw="$2" '{ print (rw == "randread") ? $8 : $49 }'
}
# cow_iops DEV SEED: IOPS of COW_OPS 4 KiB writes, each into a different
# 64 KiB block of DEV, in an order drawn with SEED (a replayed fio I/O log).
cow_iops() {
	{
		echo "fio version 2 iolog"
		echo "$1 add"
		echo "$1 open"
		awk -v n="$cow_ops" -v ext="$extents" -v f="$1" -v seed="$2" 'BEGIN {
			srand(seed);
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
now_us() { echo $(($(date +%s%N) / 1000)); }
# best max|min VALUES...: the largest or smallest value.
best() {
	local how=$1
	shift
	printf '%s\n' "$@" | sort -g | if [ "$how" = max ]; then tail -n 1; else head -n 1; fi
}
# timed_us CMD...: microseconds CMD took.
timed_us() {
	local t0 t1
	t0=$(now_us)
	"$@" || echo "bench_target: $* failed" >&2
	t1=$(now_us)
	echo $((t1 - t0))
}
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
say() { echo "# $*"; }

thin_snap() {
	dmsetup suspend bt-thin && dmsetup message bt-tpool 0 "create_snap 2 1" && dmsetup resume bt-thin
}
thin_del() { dmsetup message bt-tpool 0 "delete 2"; }
sg_snap() { dmsetup message bt-pool 0 snapshot 1 2; }
sg_del() { dmsetup message bt-pool 0 delete 2; }
# snap_rounds: one uncounted snapshot of each, then ROUNDS timed ones in
# turns; sets thin_ms and sg_ms (the best round).
snap_rounds() {
	local t=() g=() r
	thin_snap && thin_del
	sg_snap && sg_del
	for r in $(seq "$rounds"); do
		t+=("$(timed_us thin_snap)")
		thin_del
		g+=("$(timed_us sg_snap)")
		sg_del
	done
	thin_ms=$(ms "$(best min "${t[@]}")")
	sg_ms=$(ms "$(best min "${g[@]}")")
	say "  snapshot times (us), dm-thin: ${t[*]}; snapguard: ${g[*]}"
}
# fio_rounds RW: ROUNDS of RW on raw, dm-linear, dm-thin and snapguard in
# turns; sets raw_v, lin_v, thin_v and sg_v (the best round).
fio_rounds() {
	local a=() b=() c=() d=() r
	for r in $(seq "$rounds"); do
		a+=("$(fio_iops $RAW "$1")")
		d+=("$(fio_iops $LIN "$1")")
		b+=("$(fio_iops $THIN "$1")")
		c+=("$(fio_iops $SG "$1")")
	done
	raw_v=$(best max "${a[@]}") lin_v=$(best max "${d[@]}") thin_v=$(best max "${b[@]}") sg_v=$(best max "${c[@]}")
	say "  $1 IOPS, raw: ${a[*]}; dm-linear: ${d[*]}; dm-thin: ${b[*]}; snapguard: ${c[*]}"
}

say "bench-target: 4 KiB, iodepth 16, libaio, direct; ${secs} s per fio run, best of $rounds;" \
	"volume $vol_mib MiB; $cow_ops CoW writes"
if [ "$latency_us" -gt 0 ]; then
	setting="device-bound: vda, vdb, vdd are null devices of $latency_us us per request"
	say "$setting (QD16: at most $((16000000 / latency_us)) IOPS)"
else
	setting="CPU-bound: the disks are sparse files of the host"
	say "$setting"
fi
say "guest load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

dmsetup create --noudevsync bt-lin --table "0 $(blockdev --getsz $RAW) linear $RAW 0"
dd if=/dev/zero of=/dev/vdc bs=1M count=1 oflag=direct status=none
dmsetup create --noudevsync bt-tpool --table "0 $(pool_sect /dev/vdb) thin-pool /dev/vdc /dev/vdb $ES 0"
dmsetup message bt-tpool 0 "create_thin 1"
dmsetup create --noudevsync bt-thin --table "0 $vol_sect thin /dev/mapper/bt-tpool 1"
dd if=/dev/zero of=/dev/vde bs=1M count=1 oflag=direct status=none
printf '0 %s snapguard-pool /dev/vde /dev/vdd %s 0\n' "$(pool_sect /dev/vdd)" $ES |
	dmsetup create --noudevsync bt-pool
dmsetup message bt-pool 0 create 1
printf '0 %s snapguard /dev/mapper/bt-pool 1\n' $vol_sect | dmsetup create --noudevsync bt-sg

say "snapshots of the empty volumes"
snap_rounds
thin_se=$thin_ms sg_se=$sg_ms
say "fill"
fill $RAW
fill $THIN
fill $SG
say "randread"
fio_rounds randread
raw_rr=$raw_v lin_rr=$lin_v thin_rr=$thin_v sg_rr=$sg_v
say "randwrite"
fio_rounds randwrite
raw_rw=$raw_v lin_rw=$lin_v thin_rw=$thin_v sg_rw=$sg_v
say "snapshots of the filled volumes"
snap_rounds
thin_sf=$thin_ms sg_sf=$sg_ms
say "copy-on-write after a snapshot"
t=() g=()
for r in $(seq "$rounds"); do
	[ "$r" -gt 1 ] && { thin_del; sg_del; }
	thin_snap
	t+=("$(cow_iops $THIN $((11 + r)))")
	sg_snap
	g+=("$(cow_iops $SG $((11 + r)))")
done
thin_cow=$(best max "${t[@]}") sg_cow=$(best max "${g[@]}")
say "  CoW IOPS, dm-thin: ${t[*]}; snapguard: ${g[*]}"
say "dm-thin pool status: $(dmsetup status bt-tpool)"
say "snapguard pool status: $(dmsetup status bt-pool)"
minor=$(dmsetup info -c --noheadings -o minor bt-pool | tr -d ' ')
say "snapguard pool stats: $(tr '\n' ' ' </sys/kernel/snapguard/pools/dm-$minor/stats)"
dmsetup remove --noudevsync bt-thin
dmsetup remove --noudevsync bt-tpool
dmsetup remove --noudevsync bt-sg
dmsetup remove --noudevsync bt-pool
dmsetup remove --noudevsync bt-lin
rm -f /tmp/bt-cow.log
say "guest load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- the table
echo "# table ($setting)"
awk -v raw_rr="$raw_rr" -v raw_rw="$raw_rw" -v lin_rr="$lin_rr" -v lin_rw="$lin_rw" \
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
	# The device-mapper floor: dm-linear over the raw disk.
	printf "\n%-36s %9s %9s %9s %8s\n", "dm-linear over the raw disk", "IOPS", "lin/raw", "sg/lin", "thin/lin"
	printf "%-36s %9s %9s %9s %8s\n", "randread 4k QD16", v(lin_rr), r(lin_rr, raw_rr), r(sg_rr, lin_rr), r(thin_rr, lin_rr)
	printf "%-36s %9s %9s %9s %8s\n", "randwrite 4k QD16, provisioned", v(lin_rw), r(lin_rw, raw_rw), r(sg_rw, lin_rw), r(thin_rw, lin_rw)
}'
