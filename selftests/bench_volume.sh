#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Benchmark (not a test): sequential direct I/O throughput of a snapguard
# volume against its raw data device (a loop device on tmpfs, same size),
# for each path of the target: first writes (worker: provisioning with
# zeroing), rewrites and reads (the inline path of map), rewrites after a
# snapshot (worker: sharing breaks with copies), reads of unmapped extents.
# Under TCG the absolute figures mean little; compare the rows.
# Usage: bench_volume.sh [MIB] [BLOCK]
mib=${1:-64}
bs=${2:-1M}
export DM_DISABLE_UDEV=1
modprobe snapguard
data_mib=$((mib * 3))
rm -f /tmp/bv-meta /tmp/bv-data /tmp/bv-raw
dd if=/dev/zero of=/tmp/bv-meta bs=1M count=0 seek=16 status=none
dd if=/dev/zero of=/tmp/bv-data bs=1M count=0 seek=$data_mib status=none
dd if=/dev/zero of=/tmp/bv-raw bs=1M count=0 seek=$data_mib status=none
META=$(losetup -f --show /tmp/bv-meta)
DATA=$(losetup -f --show /tmp/bv-data)
RAW=$(losetup -f --show /tmp/bv-raw)
printf '0 %s snapguard-pool %s %s 128 0\n' $((data_mib * 2048)) "$META" "$DATA" |
	dmsetup create --noudevsync bv-pool
dmsetup message bv-pool 0 create 1
printf '0 %s snapguard /dev/mapper/bv-pool 1\n' $((mib * 2048)) | dmsetup create --noudevsync bv1
# BLOCK in KiB or MiB (64K, 1M).
case $bs in
*K) bytes=$((${bs%K} << 10)) ;;
*M) bytes=$((${bs%M} << 20)) ;;
*) bytes=$bs ;;
esac
count=$(((mib << 20) / bytes))

# One timed pass per row (the first write must be the first).
timed() {
	local label=$1 t0 t1
	shift
	t0=$(date +%s%N)
	dd "$@" bs="$bs" count="$count" status=none || { echo "$label: failed"; return; }
	sync
	t1=$(date +%s%N)
	printf '%-44s %8.1f MiB/s\n' "$label" "$(echo "$mib $t0 $t1" | awk '{print $1 / (($3 - $2) / 1e9)}')"
}
echo "# $mib MiB, block $bs, direct I/O"
timed "raw loop: write" if=/dev/zero of="$RAW" oflag=direct
timed "raw loop: read" if="$RAW" of=/dev/null iflag=direct
timed "volume: read, unmapped (zero fill)" if=/dev/mapper/bv1 of=/dev/null iflag=direct
timed "volume: first write (provision + zero)" if=/dev/zero of=/dev/mapper/bv1 oflag=direct
timed "volume: rewrite (inline remap)" if=/dev/zero of=/dev/mapper/bv1 oflag=direct
timed "volume: read (inline remap)" if=/dev/mapper/bv1 of=/dev/null iflag=direct
dmsetup message bv-pool 0 snapshot 1 2
timed "volume: write after snapshot (break + copy)" if=/dev/zero of=/dev/mapper/bv1 oflag=direct
timed "volume: rewrite (inline remap again)" if=/dev/zero of=/dev/mapper/bv1 oflag=direct
dmsetup status bv1 | sed 's/^/# status: /'
dmsetup remove --noudevsync bv1
dmsetup remove --noudevsync bv-pool
losetup -d "$META" "$DATA" "$RAW"
