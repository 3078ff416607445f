#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Benchmark (not a test): mount+umount time of each guarded file system with
# snapguard loaded vs not loaded, side by side in one guest run, with the
# other virtio disks attached (and, under the default `machine` policy,
# scanned). Prints one line per type with the ratio loaded/unloaded (total
# time) and the median of the per-round ratios.
# Usage: bench_mount.sh [CYCLES_PER_ROUND] [ROUNDS]
cycles=${1:-20}
rounds=${2:-5}
dev=/dev/vda
mnt=/tmp/bench-mnt
mkdir -p $mnt

# Give the other disks something to probe: an NTFS, a FAT32, a swap area.
mkntfs -F -Q -q /dev/vdb >/dev/null 2>&1
mkfs.vfat -F 32 /dev/vdc >/dev/null 2>&1
mkswap /dev/vdd >/dev/null 2>&1

now_ns() { date +%s%N; }

# cycle TYPE: $cycles mount/umount cycles, prints elapsed ns
cycle() {
	local t0 t1 i
	t0=$(now_ns)
	for i in $(seq 1 "$cycles"); do
		mount -t "$1" $dev $mnt || return 1
		umount $mnt || return 1
	done
	t1=$(now_ns)
	echo $((t1 - t0))
}

echo "# mount+umount cycles: $cycles per round, $rounds rounds, alternating loaded/unloaded"
for fs in vfat msdos exfat ntfs3 ntfs; do
	case $fs in
	vfat|msdos) mkfs.vfat -F 16 $dev >/dev/null ;;
	exfat) mkfs.exfat $dev >/dev/null ;;
	ntfs3|ntfs) mkntfs -F -Q -q $dev >/dev/null ;;
	esac
	modprobe $fs 2>/dev/null
	on=0; off=0; ratios=
	for r in $(seq 1 "$rounds"); do
		modprobe snapguard
		x=$(cycle $fs) || { echo "$fs: mount failed"; continue 2; }
		on=$((on + x))
		rmmod snapguard
		y=$(cycle $fs) || { echo "$fs: mount failed"; continue 2; }
		off=$((off + y))
		ratios+="$(awk -v a=$x -v b=$y 'BEGIN { printf "%.4f", a / b }') "
	done
	n=$((cycles * rounds))
	# The total ratio, and the median of the per-round ratios (robust to
	# a burst of noise from the host during one round).
	med=$(printf '%s\n' $ratios | sort -n | awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
	printf '%-6s loaded %7d us/mount  unloaded %7d us/mount  ratio %s  median round ratio %s\n' $fs \
		$((on / n / 1000)) $((off / n / 1000)) \
		"$(awk -v a=$on -v b=$off 'BEGIN { printf "%.3f", a / b }')" "$med"
done
modprobe snapguard
cat /sys/kernel/snapguard/guard/stats
