#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The snapguard target's bio prison and the provisions and sharing breaks
# that run outside the pool's lock (Documentation/snapshot-target.rst, "I/O
# path"):
#  1. four fio writers with crc32c verification interleave 4 KiB blocks in
#     the same extents of a volume whose extents are all shared with a
#     snapshot (every extent is broken while the others write to it); the
#     snapshot keeps its bytes;
#  2. whole-extent writes (plain and O_DSYNC) to shared and to unmapped
#     extents go straight to the new extent: the volume reads them back,
#     its other extents and the snapshot are unchanged;
#  3. a volume fills the whole data device with a pattern and is deleted;
#     a new volume provisions the same extents with partial writes while
#     readers read them: a read returns zeroes or the new data, never the
#     deleted volume's (the zeroing must precede the mapping);
#  4. while a sharing break copies a 16 MiB extent, fsync of another volume
#     of the pool (a flush: the worker and the pool's lock) keeps
#     completing (the copy does not hold the lock).
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard

ktap_plan 21

T=/tmp/sgprison
mkloop() { rm -f "$1" && dd if=/dev/zero of="$1" bs=1M count=0 seek="$2" status=none && losetup -f --show "$1"; }
create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$1"; }
msg() { dmsetup message "$1" 0 "${@:2}"; }
# check_show DESC CMD...: as ktap_check, and CMD's "# " lines (figures)
# are shown either way.
check_show() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then ktap_ok "$desc"; else ktap_fail "$desc"; fi
	printf '%s\n' "$out" | grep '^# ' || { [ $rc -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'; }
}
KLOG=$T-klog
dmesg -c >$KLOG

# ------------------------------------------------------------ pool A, 64 KiB
META=$(mkloop $T-meta 8)
DATA=$(mkloop $T-data 32)
# 32 MiB of 64 KiB extents; volumes of 8 MiB.
create sgp-pool "0 65536 snapguard-pool $META $DATA 128 0"
vol() { create "sgp$2" "0 16384 snapguard /dev/mapper/$1 $2"; }
setup1() { msg sgp-pool create 1 && vol sgp-pool 1; }
ktap_check "pool and volume 1" setup1
dd if=/dev/urandom of=/dev/mapper/sgp1 bs=1M count=8 oflag=direct status=none
ktap_check "snapshot 1 -> 2" msg sgp-pool snapshot 1 2
vol sgp-pool 2
sha256sum </dev/mapper/sgp2 >$T-snap

ktap_diag "${SECONDS}s: fio"
# 1. Four writers, each every fourth 4 KiB block (job j: blocks j, j+4, ...
# of the first 4 MiB), all in the same extents at once; each verifies its
# own blocks.
fio_run() {
	fio --name=w --filename=/dev/mapper/sgp1 --direct=1 --ioengine=psync --rw=write --bs=4k \
		--size=1M --numjobs=4 --offset=0 --offset_increment=4k --zonemode=strided --zonesize=4k \
		--zoneskip=12k --verify=crc32c --verify_fatal=1 --group_reporting --output=$T-fio.log
}
ktap_check "fio: 4 writers interleaved in shared extents, crc32c verified" fio_run
grep -E "err=|verify" $T-fio.log | head -3 | sed 's/^/# /'
fio_ok() { ! grep -qE 'err= *[1-9]|verify: bad' $T-fio.log; }
ktap_check "  no I/O or verify error" fio_ok
snap_same() { sha256sum </dev/mapper/sgp2 | cmp -s - $T-snap; }
ktap_check "  the snapshot is unchanged" snap_same

ktap_diag "${SECONDS}s: whole-extent"
# 2. Whole-extent writes.
head -c 65536 /dev/urandom >$T-x1
head -c 65536 /dev/urandom >$T-x2
dd if=/dev/mapper/sgp1 of=$T-v1 bs=1M iflag=direct status=none
extent() { dd if="/dev/mapper/$1" bs=64k skip="$2" count=1 iflag=direct status=none; }
# whole DEV EXTENT FILE [FLAG]: writes FILE over extent EXTENT of DEV.
whole() { dd if="$3" of="/dev/mapper/$1" bs=64k seek="$2" count=1 oflag=direct${4:+,$4} status=none; }
shared0=$(dmsetup status sgp1 | cut -d' ' -f6)
ktap_check "whole-extent write to a shared extent (100)" whole sgp1 100 $T-x1
ktap_check "  O_DSYNC (FUA) one to another (101)" whole sgp1 101 $T-x2 dsync
both() { extent sgp1 100 | cmp -s - $T-x1 && extent sgp1 101 | cmp -s - $T-x2; }
ktap_check "  both read back" both
rest_same() {
	dd if=$T-x1 of=$T-v1 bs=64k seek=100 conv=notrunc status=none &&
		dd if=$T-x2 of=$T-v1 bs=64k seek=101 conv=notrunc status=none &&
		dd if=/dev/mapper/sgp1 bs=1M iflag=direct status=none | cmp - $T-v1
}
ktap_check "  the rest of the volume unchanged" rest_same
ktap_check "  the snapshot is unchanged" snap_same
ktap_check "  two extents less shared" test "$(dmsetup status sgp1 | cut -d' ' -f6)" -eq $((shared0 - 256))
msg sgp-pool create 3
vol sgp-pool 3
whole_fresh() {
	whole sgp3 7 $T-x1 && extent sgp3 7 | cmp -s - $T-x1 &&
		extent sgp3 6 | cmp -s - <(head -c 65536 /dev/zero) && extent sgp3 8 | cmp -s - <(head -c 65536 /dev/zero)
}
ktap_check "whole-extent write to an unmapped extent; its neighbours read zeroes" whole_fresh
remove sgp1
remove sgp2
remove sgp3
remove sgp-pool

ktap_diag "${SECONDS}s: reuse"
# ------------------------------------------------------------ pool B: reuse
# 3. 8 MiB of data, all of it used by volume 4, then reused by volume 5.
META2=$(mkloop $T-meta2 8)
DATA2=$(mkloop $T-data2 8)
create sgq-pool "0 16384 snapguard-pool $META2 $DATA2 128 0"
msg sgq-pool create 4
vol sgq-pool 4
fill_a() { tr '\000' 'A' </dev/zero | dd of=/dev/mapper/sgp4 bs=1M count=8 oflag=direct iflag=fullblock status=none; }
ktap_check "volume 4 fills the data device with 'A'" fill_a
remove sgp4
del4() { msg sgq-pool delete 4 && msg sgq-pool create 5; }
ktap_check "delete volume 4, create volume 5" del4
vol sgq-pool 5
cat >$T-reuse.py <<'EOF'
import mmap, os, sys, time
dev, rounds = sys.argv[1], int(sys.argv[2])
EXT, N = 65536, 128
def buf(n, fill=b"\0"):
    m = mmap.mmap(-1, n)
    m.write(fill * n)
    return m
# Shared with the readers: the extent being written, then -1 when done.
cur = mmap.mmap(-1, 8)
def getcur():
    return int.from_bytes(cur[:8], "little", signed=True)
def setcur(i):
    cur[:8] = i.to_bytes(8, "little", signed=True)
readers = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        b = buf(EXT)
        bad = reads = 0
        deadline = time.time() + 60
        while time.time() < deadline:
            i = getcur()
            if i < 0:
                break
            # The extent being provisioned, and the next one.
            for j in (i, (i + 1) % N):
                os.preadv(fd, [b], j * EXT)
                reads += 1
                if b[:].translate(None, b"\0B"):
                    bad += 1
        print(f"# reader: {reads} reads, {bad} with other data", flush=True)
        os._exit(1 if bad or reads < 20 else 0)
    readers.append(pid)
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
w = buf(4096, b"B")
time.sleep(0.2)
for r in range(rounds):
    for i in range(N):
        setcur(i)
        os.pwritev(fd, [w], i * EXT + 4096 * (1 + r))
setcur(-1)
ok = all(os.waitpid(p, 0)[1] == 0 for p in readers)
sys.exit(0 if ok else 1)
EOF
check_show "reads during provisioning: zeroes or the new data, never the deleted volume's" \
	python3 $T-reuse.py /dev/mapper/sgp5 1
final_ok() {
	local want=$T-want
	{ head -c 4096 /dev/zero; tr '\000' 'B' </dev/zero | head -c 4096; head -c 57344 /dev/zero; } >$want
	for i in 0 60 127; do extent sgp5 $i | cmp -s - $want || return 1; done
}
ktap_check "  volume 5 then holds zeroes and its data" final_ok
remove sgp5
remove sgq-pool

ktap_diag "${SECONDS}s: long copy"
# ------------------------------------------------- pool C: a long copy
# 4. 16 MiB extents: a sharing break copies 16 MiB; volume 9's flushes
# (fsync: the worker, the pool's lock and a commit) go on meanwhile.
META3=$(mkloop $T-meta3 8)
DATA3=$(mkloop $T-data3 64)
create sgr-pool "0 131072 snapguard-pool $META3 $DATA3 32768 0"
msg sgr-pool create 6
msg sgr-pool create 9
create sgp6 "0 32768 snapguard /dev/mapper/sgr-pool 6"
create sgp9 "0 32768 snapguard /dev/mapper/sgr-pool 9"
dd if=/dev/urandom of=/dev/mapper/sgp6 bs=1M count=16 oflag=direct status=none
msg sgr-pool snapshot 6 7
cat >$T-flush.py <<'EOF'
import mmap, os, sys, threading, time
wfd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
ffd = os.open(sys.argv[2], os.O_WRONLY)
os.fsync(ffd)
b = mmap.mmap(-1, 4096)
b.write(b"W" * 4096)
span = []
def write():
    t = time.monotonic()
    os.pwritev(wfd, [b], 1000 * 4096)
    span.extend([t, time.monotonic()])
w = threading.Thread(target=write)
w.start()
n, worst = 0, 0.0
while w.is_alive():
    t = time.monotonic()
    os.fsync(ffd)
    e = time.monotonic()
    worst = max(worst, e - t)
    # Count only flushes that began and ended during the write.
    if w.is_alive():
        n += 1
w.join()
copy = span[1] - span[0]
print(f"# 4 KiB write to a shared 16 MiB extent (break + copy): {copy * 1000:.0f} ms; "
      f"fsyncs of another volume completed meanwhile: {n}, slowest {worst * 1000:.0f} ms")
sys.exit(0 if n >= 5 else 1)
EOF
check_show "flushes of another volume complete while a 16 MiB break copies" \
	python3 $T-flush.py /dev/mapper/sgp6 /dev/mapper/sgp9
create sgp7 "0 32768 snapguard /dev/mapper/sgr-pool 7"
copied() {
	# Only the 4 KiB written at block 1000 differs from the snapshot.
	cmp -l /dev/mapper/sgp6 /dev/mapper/sgp7 >$T-diff
	awk -v lo=$((1000 * 4096)) -v hi=$((1001 * 4096)) '$1 <= lo || $1 > hi { bad = 1 } END { exit bad || NR == 0 }' $T-diff &&
		cmp -s <(dd if=/dev/mapper/sgp6 bs=4k skip=1000 count=1 status=none) <(tr '\000' W </dev/zero | head -c 4096)
}
ktap_check "  the broken extent holds the snapshot's data around the write" copied
remove sgp6
remove sgp7
remove sgp9
remove sgr-pool
ktap_check "no device left" sh -c "! dmsetup table 2>/dev/null | grep -q snapguard"

ktap_diag "${SECONDS}s: checks"
check_pool() {
	command -v snapguard >/dev/null || return 0
	snapguard pool check "$1" >/dev/null
}
pools_clean() { check_pool $META && check_pool $META2 && check_pool $META3; }
ktap_check "the three pools' metadata is clean (snapguard pool check, if built)" pools_clean
dmesg >>$KLOG
ktap_check "no kernel complaint" sh -c "! grep -qE 'BUG:|Oops|WARNING:|general protection|INFO: task' $KLOG"
losetup -d "$META" "$DATA" "$META2" "$DATA2" "$META3" "$DATA3"
rm -f $T-*
ktap_finish
