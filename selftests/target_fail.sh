#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Failure modes of snapguard-pool with dm-flakey: write errors on the
# metadata device put the pool into `fail` (status, log line, writes and
# messages refused with EIO, also writes the map path would remap inline),
# write errors on the data device end only the bios that met them; after
# the fault is removed and the pool re-created, everything synced before it
# is there and the metadata checks clean. needs_check: the failed pool
# writes the flag to the superblock once the fault is gone (at its
# removal); re-created, the pool is ro with needs_check (reads served,
# writes needing metadata and messages refused); `snapguard pool check
# --clear-needs-check` finds it clean and clears the flag; re-created
# again it is rw with the data intact. set_transaction_id: a wrong old
# id is refused and changes nothing, a right one shows in the status and
# survives re-creating the pool. The read_only feature gives mode ro. See
# Documentation/snapshot-target.rst, "Failure modes".
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard

ktap_plan 54

KLOG=/tmp/sgf-klog
dmesg -c >$KLOG
MNT=/tmp/sgf-mnt
mkdir -p $MNT
# 4 MiB metadata, 64 MiB data in 64 KiB extents, a 32 MiB volume.
VLEN=65536
create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { timeout 60 dmsetup remove --noudevsync "$1"; }
sectors() { blockdev --getsz "$1"; }
# linear NAME DEV / flakey NAME DEV: (re)load NAME as pass-through or as
# erroring every write (reads pass).
load() {
	timeout 60 dmsetup reload "$1" --table "$2" && timeout 60 dmsetup resume "$1"
}
linear_table() { echo "0 $(sectors "$1") linear $1 0"; }
flakey_table() { echo "0 $(sectors "$1") flakey $1 0 0 3600 1 error_writes"; }
status_field() { dmsetup status "$1" | cut -d' ' -f"$2"; }
msg() { dmsetup message sgf-pool 0 "$@"; }
sums() { (cd $MNT && sha256sum f1 f2); }
# writer: writes files g1..g40, each fsynced, until one fails; says how it
# ended in /tmp/sgf-writer (its errors in /tmp/sgf-writer.err).
writer() {
	local i
	for i in $(seq 1 40); do
		if ! dd if=/dev/urandom of=$MNT/g$i bs=64k count=4 conv=fsync status=none 2>/tmp/sgf-writer.err; then
			echo "failed at g$i" >/tmp/sgf-writer
			return
		fi
	done
	echo finished >/tmp/sgf-writer
}
# fault_mid_workload TAG DEV NAME: starts the writer, and once g1 is synced
# (g2 exists) and its checksum noted, makes NAME error writes; waits for
# the writer, which must have failed with an I/O error.
fault_mid_workload() {
	local i
	rm -f /tmp/sgf-writer
	writer &
	for i in $(seq 1 300); do
		[ -e $MNT/g2 ] && break
		sleep 0.1
	done
	(cd $MNT && sha256sum g1) >>/tmp/sgf-sums-$1
	load "$3" "$(flakey_table "$2")"
	wait
	grep -q "failed" /tmp/sgf-writer || { echo "# writer: $(cat /tmp/sgf-writer)"; return 1; }
	grep -Eq "Input/output error|Read-only file system" /tmp/sgf-writer.err ||
		{ sed 's/^/# /' /tmp/sgf-writer.err; return 1; }
}
# fails_with TEXT CMD...: CMD fails with TEXT (a regular expression) in
# its error output.
fails_with() {
	local want=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "# succeeded"
		return 1
	fi
	grep -Eq "$want" <<<"$out" || { printf '# %s\n' "$out"; return 1; }
}
fails_eio() { fails_with "Input/output error" "$@"; }
# A file write meets the EIO itself, or ext4 already turned an earlier one
# (its journal commit) into a read-only remount.
file_write_fails() {
	fails_with "Input/output error|Read-only file system" \
		timeout 60 dd if=/dev/urandom of=$MNT/f3 bs=64k count=16 conv=fsync status=none
}
# setup TAG: loop devices under linear devices sgf-meta and sgf-data, the
# pool sgf-pool on them, volume 1 with ext4 and files f1 f2 synced.
setup() {
	dd if=/dev/zero of=/tmp/sgf-meta-$1 bs=1M count=0 seek=4 status=none
	dd if=/dev/zero of=/tmp/sgf-data-$1 bs=1M count=0 seek=64 status=none
	META=$(losetup -f --show /tmp/sgf-meta-$1) || return 1
	DATA=$(losetup -f --show /tmp/sgf-data-$1) || return 1
	create sgf-meta "$(linear_table "$META")" || return 1
	create sgf-data "$(linear_table "$DATA")" || return 1
	POOL_TABLE="0 131072 snapguard-pool /dev/mapper/sgf-meta /dev/mapper/sgf-data 128 10"
	create sgf-pool "$POOL_TABLE" || return 1
	msg create 1 || return 1
	create sgf1 "0 $VLEN snapguard /dev/mapper/sgf-pool 1" || return 1
	mkfs.ext4 -q -F /dev/mapper/sgf1 || return 1
	mount -o noinit_itable /dev/mapper/sgf1 $MNT || return 1
	dd if=/dev/urandom of=$MNT/f1 bs=64k count=16 status=none || return 1
	dd if=/dev/urandom of=$MNT/f2 bs=64k count=24 status=none || return 1
	sync || return 1
	sums >/tmp/sgf-sums-$1
}
# teardown: unmount, remove the volume and the pool (the fault devices stay).
teardown() {
	timeout 60 umount $MNT 2>/dev/null
	remove sgf1 && remove sgf-pool
}
# raw_sum: checksum of the volume's first 32 MiB, read around the cache.
raw_sum() { (set -o pipefail; dd if=/dev/mapper/sgf1 bs=1M count=32 iflag=direct status=none | sha256sum); }
save_raw_sum() { raw_sum >/tmp/sgf-raw-$1; }
# recreate TAG: the pool (rw, no needs_check) and the volume again,
# mounted (the journal replays); f1 f2 as synced; before the mount, the
# volume reads as /tmp/sgf-raw-TAG says if that exists.
recreate() {
	create sgf-pool "$POOL_TABLE" || return 1
	[ "$(dmsetup status sgf-pool | cut -d' ' -f7,10)" = "rw -" ] || { dmsetup status sgf-pool; return 1; }
	create sgf1 "0 $VLEN snapguard /dev/mapper/sgf-pool 1" || return 1
	if [ -e /tmp/sgf-raw-$1 ]; then
		raw_sum | cmp -s - /tmp/sgf-raw-$1 || { echo "# the volume reads differently"; return 1; }
	fi
	mount -o noinit_itable /dev/mapper/sgf1 $MNT || return 1
	(cd $MNT && sha256sum --quiet -c /tmp/sgf-sums-$1) || return 1
}
# setup_ok DESC TAG: setup (in this shell: it sets META DATA POOL_TABLE).
setup_ok() {
	if setup "$2"; then ktap_ok "$1"; else ktap_fail "$1"; fi
}
cleanup() {
	remove sgf-meta && remove sgf-data && losetup -d "$META" "$DATA"
}

# --- Metadata device errors: the pool fails. ---
setup_ok "metadata case: pool, volume, ext4, files synced" m
minor=$(dmsetup info -c --noheadings -o minor sgf-pool | tr -d ' ')
ktap_check "  pool is rw" test "$(status_field sgf-pool 7) $(status_field sgf-pool 10)" = "rw -"
dmesg_mark
if fault_mid_workload m "$META" sgf-meta; then
	ktap_ok "  metadata device errors writes (dm-flakey error_writes) mid-workload: the writer fails"
else
	ktap_fail "  metadata device errors writes (dm-flakey error_writes) mid-workload: the writer fails"
fi
# New extents need metadata: the fsync's commit fails.
ktap_check "  writing a new file fails (EIO)" file_write_fails
ktap_check "  status: fail, needs_check" test "$(status_field sgf-pool 7) $(status_field sgf-pool 10)" = "fail needs_check"
ktap_check "  the log names the pool and the cause" \
	dmesg_has "snapguard-pool: pool dm-$minor .*: metadata commit failed (metadata I/O error); switching to fail mode"
ktap_check "  logged once" test "$(dmesg_since | grep -c 'switching to fail mode')" -eq 1
timeout 60 umount $MNT
# Sector 0 is in an extent mkfs mapped (unshared): the map path would
# remap a write there inline, without the worker.
ktap_check "  a direct write to a mapped extent fails with EIO" fails_eio \
	timeout 60 dd if=/dev/zero of=/dev/mapper/sgf1 bs=4k count=1 oflag=direct status=none
ktap_check "  a direct write elsewhere fails with EIO" fails_eio \
	timeout 60 dd if=/dev/zero of=/dev/mapper/sgf1 bs=4k count=1 seek=8000 oflag=direct status=none
ktap_check "  reads are served (last commit)" \
	sh -c "dd if=/dev/mapper/sgf1 bs=4k count=64 iflag=direct status=none >/dev/null"
ktap_expect_fail "  messages refused with EIO" "Input/output error" msg create 2
ktap_check "  saying why" dmesg_has "message 'create 2' refused: pool dm-$minor is in fail mode"
# The flag could not be written while writes failed; once the fault is
# gone, suspending or removing the pool writes it.
ktap_check "  writing needs_check failed while the fault lasted, logged" \
	dmesg_has "pool dm-$minor: needs_check could not be recorded in the metadata (metadata I/O error); kept in memory"
ktap_check "  remove the fault" load sgf-meta "$(linear_table "$META")"
ktap_check "  remove the volume and the pool" teardown
ktap_check "  needs_check written to the superblock at removal" \
	dmesg_has "pool dm-$minor: needs_check recorded in the metadata superblock"
ktap_pool_check "$META"
# check_says ARGS... -- TEXT: `snapguard pool check ARGS` exits 0 and
# prints TEXT.
check_says() {
	local args=() out
	while [ "$1" != -- ]; do args+=("$1"); shift; done
	out=$(snapguard pool check "${args[@]}" 2>&1) || { printf '# %s\n' "$out"; return 1; }
	grep -qx "$2" <<<"$out" || { printf '# %s\n' "$out"; return 1; }
}
if command -v snapguard >/dev/null; then
	ktap_check "  snapguard pool check: needs_check: yes" check_says "$META" -- "needs_check: yes"
else
	ktap_skip "  snapguard pool check: needs_check: yes" "snapguard CLI not built"
fi
# Re-created: ro with needs_check. The volume table covers the whole
# volume (64 MiB): ext4 uses the first 32.
dmesg_mark
nc_setup() {
	create sgf-pool "$POOL_TABLE" && create sgf1 "0 131072 snapguard /dev/mapper/sgf-pool 1"
}
ktap_check "  re-created with the flag set: pool and volume" nc_setup
ktap_check "  status: ro, needs_check" test "$(status_field sgf-pool 7) $(status_field sgf-pool 10)" = "ro needs_check"
ktap_check "  the log says why and what to run" \
	dmesg_has "needs_check flag is set: switching the pool to read-only mode; remove it and run \`snapguard pool check --clear-needs-check\`"
rm -f /tmp/sgf-raw-m
ktap_check "  reads are served" save_raw_sum m
ktap_check "  a write to an unmapped extent fails with EIO" fails_eio \
	timeout 60 dd if=/dev/zero of=/dev/mapper/sgf1 bs=4k count=1 seek=12288 oflag=direct status=none
ktap_expect_fail "  messages refused with EROFS" "Read-only file system" msg create 2
ktap_check "  saying why" dmesg_has "message 'create 2' refused: the pool is read-only (metadata needs_check flag set)"
ktap_check "  remove the volume and the pool" teardown
if command -v snapguard >/dev/null; then
	ktap_check "  snapguard pool check --clear-needs-check: clean, cleared" \
		check_says --clear-needs-check "$META" -- "needs_check: yes, cleared"
	ktap_check "  snapguard pool check: needs_check: no" check_says "$META" -- "needs_check: no"
	ktap_check "  re-created: rw, reads as before, files synced before the fault (f1 f2 g1) intact" recreate m
	ktap_check "  writes work" timeout 60 dd if=/dev/urandom of=$MNT/f3 bs=64k count=16 conv=fsync status=none
	teardown
else
	for t in "check --clear-needs-check" "needs_check: no" "re-created: rw" "writes work"; do
		ktap_skip "  $t" "snapguard CLI not built"
	done
fi
cleanup

# --- Data device errors: only the bios fail. ---
setup_ok "data case: pool, volume, ext4, files synced" d
minor=$(dmsetup info -c --noheadings -o minor sgf-pool | tr -d ' ')
dmesg_mark
ktap_check "set_transaction_id with a wrong old id refused" sh -c "! dmsetup message sgf-pool 0 set_transaction_id 1 2 2>/dev/null"
ktap_check "  saying why" dmesg_has "set_transaction_id 1 2 refused: the transaction id is 0"
ktap_check "  and nothing changed" test "$(status_field sgf-pool 4)" = 0
ktap_check "set_transaction_id 0 5" msg set_transaction_id 0 5
ktap_check "  shows in the status" test "$(status_field sgf-pool 4)" = 5
if fault_mid_workload d "$DATA" sgf-data; then
	ktap_ok "  data device errors writes (dm-flakey error_writes) mid-workload: the writer fails"
else
	ktap_fail "  data device errors writes (dm-flakey error_writes) mid-workload: the writer fails"
fi
ktap_check "  writing a new file fails (EIO)" file_write_fails
timeout 60 umount $MNT
ktap_check "  a direct write to a mapped extent fails with EIO" fails_eio \
	timeout 60 dd if=/dev/zero of=/dev/mapper/sgf1 bs=4k count=1 oflag=direct status=none
ktap_check "  the pool stays rw" test "$(status_field sgf-pool 7) $(status_field sgf-pool 10)" = "rw -"
ktap_check "  the failed data flush is logged" dmesg_has "snapguard-pool: pool dm-$minor: flushing the data device failed"
ktap_check "  remove the fault" load sgf-data "$(linear_table "$DATA")"
ktap_check "  remove the volume and the pool" teardown
ktap_pool_check "$META"
ktap_check "  re-created: rw, files synced before the fault (f1 f2 g1) intact" recreate d
ktap_check "  the transaction id survived" test "$(status_field sgf-pool 4)" = 5
teardown

# --- The read_only feature: mode ro. ---
# The volume table covers the whole volume (64 MiB): ext4 uses the first 32.
ro_setup() {
	create sgf-pool "$POOL_TABLE 1 read_only" &&
		create sgf1 "0 131072 snapguard /dev/mapper/sgf-pool 1"
}
ktap_check "read_only: pool and volume" ro_setup
ktap_check "  status: ro" test "$(status_field sgf-pool 7) $(status_field sgf-pool 10)" = "ro -"
mapped=$(status_field sgf1 4)
# The boot sector (ext4 starts at byte 1024) is in a mapped, unshared extent.
dd if=/dev/urandom of=/tmp/sgf-blk bs=512 count=1 status=none
ro_write_mapped() {
	dd if=/tmp/sgf-blk of=/dev/mapper/sgf1 bs=512 count=1 oflag=direct conv=notrunc status=none &&
		dd if=/dev/mapper/sgf1 bs=512 count=1 iflag=direct status=none | cmp -s - /tmp/sgf-blk
}
ktap_check "  a write to a mapped extent goes through" ro_write_mapped
ktap_check "  a write to an unmapped extent fails with EIO" fails_eio \
	timeout 60 dd if=/dev/zero of=/dev/mapper/sgf1 bs=4k count=1 seek=12288 oflag=direct status=none
ktap_check "  nothing was provisioned" test "$(status_field sgf1 4)" = "$mapped"
ktap_expect_fail "  messages refused with EROFS" "Read-only file system" msg create 2
teardown
cleanup

no_dm_device() { ! compgen -G '/sys/block/dm-*' >/dev/null; }
ktap_check "no device left" no_dm_device
dmesg >>$KLOG
ktap_check "no kernel complaint" sh -c "! grep -qE 'BUG:|Oops|WARNING:|general protection|INFO: task' $KLOG"
ktap_finish
