#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `delete`, which unmaps a volume in bounded steps with the pool's lock
# released between them (Documentation/snapshot-target.rst, "delete"):
#  1. a sparse 1.5 GiB volume (grown past the pool's 96 MiB) with one
#     extent in 24 leaves, and its snapshot, are deleted while another
#     volume keeps writing and fsyncing; the data extents come back, the
#     ids are free, the other volume's data is intact;
#  2. a volume of 4 KiB extents with one extent in each of 3000 leaves:
#     its snapshot is deleted (one reference decrement), then the volume
#     itself (unshared: every leaf is read and freed) while another
#     volume's fsync loop runs; fsyncs must complete during the delete
#     (the figures are printed), and the data and metadata counts go back.
#  3. a half-deleted volume (its record's DELETING flag set on the
#     metadata device) is finished when the pool is opened, and logged.
# The metadata checks clean afterwards. A crash in the middle of a delete
# is covered by the pool core's crash test (crates/snapguard-pool/tests/
# crash.rs: half-deleted volumes in crash images are finished), not here.
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard
ktap_plan 23

T=/tmp/sgd
dd if=/dev/zero of=$T-meta bs=1M count=0 seek=8 status=none
dd if=/dev/zero of=$T-data bs=1M count=0 seek=96 status=none
META=$(losetup -f --show $T-meta)
DATA=$(losetup -f --show $T-data)
create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$1"; }
msg() { dmsetup message sgd-pool 0 "$@"; }
used() { dmsetup status sgd-pool | cut -d' ' -f6 | cut -d/ -f1; }
# 96 MiB of 64 KiB extents; a table leaf maps 678 extents (42.4 MiB).
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

# ------------------------------------------- 2. 3000 leaves, 4 KiB extents
N=3000
dd if=/dev/zero of=$T-meta2 bs=1M count=0 seek=32 status=none
dd if=/dev/zero of=$T-data2 bs=1M count=0 seek=16 status=none
META2=$(losetup -f --show $T-meta2)
DATA2=$(losetup -f --show $T-data2)
# A 1 MiB metadata cache: the deletion reads most leaves from the device.
create sgd-pool "0 32768 snapguard-pool $META2 $DATA2 8 0 1 cache_mib:1"
metaused() { dmsetup status sgd-pool | cut -d' ' -f5 | cut -d/ -f1; }
msg create 4
msg create 6
create sgd6 "0 512 snapguard /dev/mapper/sgd-pool 6"
dd if=/dev/urandom of=/dev/mapper/sgd6 bs=4k count=64 oflag=direct conv=fsync status=none
base=$(used)
meta0=$(metaused)
# A leaf maps 678 extents of 4 KiB: the volume spans N leaves.
create sgd4 "0 $((N * 678 * 8)) snapguard /dev/mapper/sgd-pool 4"
cat >$T-spread.py <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for i in range(int(sys.argv[2])):
    os.pwrite(fd, b"%-4095d\n" % i, i * 678 * 4096)
os.fsync(fd)
EOF
t0=$SECONDS
ktap_check "one 4 KiB extent written in each of $N leaves of volume 4" python3 $T-spread.py /dev/mapper/sgd4 $N
ktap_diag "writing them took $((SECONDS - t0)) s; data extents used $(used), metadata blocks $(metaused)"
remove sgd4
meta1=$(metaused)
ktap_check "snapshot 4 -> 5, delete 5 (a shared table: one decrement)" \
	sh -c "dmsetup message sgd-pool 0 snapshot 4 5 && dmsetup message sgd-pool 0 delete 5"
ktap_check "  the $N extents are still used (volume 4 has them)" test "$(used)" -eq $((base + N))
cat >$T-flush.py <<'EOF'
import os, subprocess, sys, threading, time
ffd = os.open(sys.argv[1], os.O_WRONLY)
os.fsync(ffd)
span, rc = [], []
def delete():
    t = time.monotonic()
    rc.append(subprocess.run(["dmsetup", "message", "sgd-pool", "0", "delete", "4"]).returncode)
    span.extend([t, time.monotonic()])
d = threading.Thread(target=delete)
d.start()
n, worst = 0, 0.0
while d.is_alive():
    t = time.monotonic()
    os.fsync(ffd)
    e = time.monotonic()
    # Count only flushes that ended during the delete.
    if d.is_alive():
        n += 1
        worst = max(worst, e - t)
d.join()
took = span[1] - span[0]
print(f"# delete of a volume of {sys.argv[2]} unshared leaves: {took * 1000:.0f} ms; "
      f"fsyncs of another volume completed meanwhile: {n}, slowest {worst * 1000:.0f} ms")
# The lock is released between steps: flushes go on, none waits for
# (most of) the whole deletion.
sys.exit(0 if rc == [0] and n >= 3 and worst < took / 2 else 1)
EOF
check_show() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then ktap_ok "$desc"; else ktap_fail "$desc"; fi
	printf '%s\n' "$out" | grep '^# ' || { [ $rc -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'; }
}
check_show "delete 4 ($N leaves) while fsyncs of volume 6 complete" python3 $T-flush.py /dev/mapper/sgd6 $N
ktap_check "  the $N data extents are free again" test "$(used)" -eq "$base"
meta2=$(metaused)
ktap_diag "metadata blocks used: $meta0 before volume 4, $meta1 with it, $meta2 after the deletes"
ktap_check "  its metadata is freed: at least $N blocks fewer used" test $((meta1 - meta2)) -ge "$N"
ktap_check "  ids 4 and 5 are free again" sh -c "dmsetup message sgd-pool 0 create 4 && dmsetup message sgd-pool 0 create 5"
# A half-deleted volume, as a crash during a delete may leave one (the
# crash itself is the pool core's crash test): volume 6's record gets the
# DELETING flag on the metadata device of the removed pool
# (Documentation/pool-format.rst: superblock, directory, volume record).
remove sgd6
remove sgd-pool
cat >$T-mark.py <<'EOF'
import os, struct, sys
T = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
fd = os.open(sys.argv[1], os.O_RDWR)
vid = int(sys.argv[2])
blk = lambda n: bytearray(os.pread(fd, 4096, n * 4096))
sb = max((blk(0), blk(1)), key=lambda b: struct.unpack_from("<Q", b, 16)[0])
ptr = struct.unpack_from("<Q", sb, 96)[0]
for _ in range(8):
    b = blk(ptr)
    level = b[6]
    if level == 0:
        break
    cover = 84 * 509 ** (level - 1)
    ptr = struct.unpack_from("<Q", b, 24 + 8 * ((vid // cover) % 509))[0]
off = 24 + 48 * (vid % 84)
size, flags = struct.unpack_from("<Q", b, off)[0], struct.unpack_from("<Q", b, off + 40)[0]
if struct.unpack_from("<H", b, 4)[0] != 0x444C or size == 0:
    sys.exit(f"volume {vid}: no record found (block {ptr})")
struct.pack_into("<Q", b, off + 40, flags | 1)
struct.pack_into("<I", b, 0, crc32c(b[4:]))
os.pwrite(fd, bytes(b), ptr * 4096)
os.fsync(fd)
EOF
ktap_check "volume 6 marked deleting on the metadata device" python3 $T-mark.py "$META2" 6
dmesg_mark
create sgd-pool "0 32768 snapguard-pool $META2 $DATA2 8 0 1 cache_mib:1"
ktap_check "  reopened: the pool finished deleting it (logged)" dmesg_has "finished deleting volume 6"
ktap_check "  its 64 extents are free and id 6 too" sh -c \
	"[ \$(dmsetup status sgd-pool | cut -d' ' -f6 | cut -d/ -f1) -eq 0 ] && dmsetup message sgd-pool 0 create 6"
remove sgd-pool
ktap_pool_check "$META2"
losetup -d "$META2" "$DATA2"
rm -f $T-*
ktap_check "no device left" sh -c "! dmsetup table 2>/dev/null | grep -q snapguard"
ktap_finish
