#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Power cuts of the snapshot target, replayed from a dm-log-writes log.
#
# One log-writes device over a scratch disk records every write, flush, FUA
# and discard that reaches the disk, in the order the disk made them
# durable; dm-linear carves it into the pool's metadata and data devices,
# so one log orders both. A workload runs on it (ext4 on volumes: files
# written and fsynced, a log mark after each step, snapshots of the active
# origin, an in-place overwrite (sharing breaks), file deletes and fstrim,
# a second volume, a deleted snapshot). Then, for a sample of the log's
# FLUSH/FUA entries (every one with SG_THOROUGH=1) and some points between
# flushes with the unflushed writes dropped, the log is replayed up to that
# point onto a fresh disk (selftests/replay_log.py) and the pool opened on
# it: `snapguard pool check` clean, the volumes that existed exist (and
# deleted ones do not), each file system mounts (journal replay) and is
# `e2fsck -fn` clean, and every file fsynced before the point reads back
# with its checksum. Each point is checked on a dm-snapshot of the replayed
# disk, so the checks' own writes (journal replay, pool commits) never
# change the replayed image; the replay goes on incrementally from it.
# See Documentation/testing.rst ("Power cuts").
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard
REPLAY="python3 $(dirname "$0")/replay_log.py"
THOROUGH=${SG_THOROUGH:-0}
NPOINTS=${SG_POINTS:-24}
# Seconds from the start after which, in the normal mode, points other than
# the last are skipped when the ones so far say the next would not fit (the
# runner kills a program after 600 s; a loaded host makes TCG slower).
BUDGET=${SG_BUDGET:-480}
T0=$(date +%s)
SEED=${SG_SEED:-$RANDOM}

DISK=/dev/vda       # the disk under the log (metadata + data of the pool)
LOG=/dev/vdb        # the log
RDISK=/dev/vdc      # the replay disk
COW=/dev/vdd        # copy-on-write store of the per-point overlay
META_S=16384        # 8 MiB of metadata
DATA_S=131072       # 64 MiB of data, 1024 extents of 64 KiB
TOTAL_S=$((META_S + DATA_S))
VLEN=32768          # 16 MiB volumes
MNT=/tmp/sgr-mnt
mkdir -p $MNT
for d in $DISK $LOG $RDISK $COW; do
	[ -b $d ] || { echo "1..0 # SKIP $d missing (run in tools/vm.py's guest)"; exit 4; }
done
if ! dmsetup targets | grep -q log-writes; then
	modprobe dm-log-writes 2>/dev/null
	dmsetup targets | grep -q log-writes || { echo "1..0 # SKIP no log-writes target"; exit 4; }
fi

# Results of the workload are buffered: the plan line needs the number of
# replay points, known once the log is written.
RESULTS=()
FAILED=0
step() {
	local desc=$1
	shift
	# In this shell, not a subshell: the steps record expectations.
	if "$@" >/tmp/sgr-step 2>&1; then
		RESULTS+=("ok|$desc")
	else
		RESULTS+=("not ok|$desc")
		FAILED=1
		[ -s /tmp/sgr-step ] && RESULTS+=("#|$(tail -n 20 /tmp/sgr-step | sed 's/^/# /')")
	fi
}

# The disk under the log and the replay disk start identical: zeroed
# metadata, data full of 0xff (volumes must never see old data).
prep() {
	python3 - "$@" <<-'EOF'
	import os, sys
	meta, data = int(sys.argv[1]) * 512, int(sys.argv[2]) * 512
	for dev in sys.argv[3:]:
	    fd = os.open(dev, os.O_WRONLY)
	    z, f = bytes(1 << 20), b"\xff" * (1 << 20)
	    for off in range(0, meta, 1 << 20):
	        os.pwrite(fd, z, off)
	    for off in range(0, data, 1 << 20):
	        os.pwrite(fd, f, meta + off)
	    os.fsync(fd)
	    os.close(fd)
	EOF
}
# No earlier program may leave a scratch disk showing a sleeping OS: the
# guard makes such a disk read-only at the next module load (guard_lib.sh
# wipes the fixtures a guard test wrote when it exits). A read-only disk
# here is a fault of the suite, reported as such; it is made writable (as
# a user rewriting the disk would) so that the replay still runs.
left_ro=
for d in $DISK $LOG $RDISK $COW; do
	if [ "$(blockdev --getro $d)" = 1 ]; then
		left_ro="$left_ro $d"
		[ -w /sys/kernel/snapguard/guard/unprotect ] && echo $d >/sys/kernel/snapguard/guard/unprotect
		blockdev --setrw $d
	fi
done
if [ -z "$left_ro" ]; then
	RESULTS+=("ok|scratch disks writable at the start")
else
	RESULTS+=("not ok|scratch disks writable at the start (read-only, left protected by an earlier program:$left_ro)")
fi
prep $META_S $DATA_S $DISK $RDISK || exit 1
dd if=/dev/zero of=$LOG bs=4096 count=1 oflag=direct status=none

create() { printf '%s\n' "$2" | dmsetup create --noudevsync "$1"; }
remove() { dmsetup remove --noudevsync "$@"; }
msg() { dmsetup message sgr-pool 0 "$@"; }
mark() { dmsetup message sgr-log 0 mark "$1"; }

# Expectations, by mark name (indexes are looked up in the log later):
#   V_EXIST[id]  the volume exists after this mark
#   V_FS[id]     its file system is complete after this mark
#   V_DELB[id]   its deletion began after this mark (then may be gone)
#   V_DEL[id]    it is deleted after this mark
# and one line per file version in $EXPECT: vol name sha256 created-mark
# (fsynced before it) gone-mark (its deletion or overwrite began after it,
# "-" if never).
declare -A V_EXIST V_FS V_DELB V_DEL FILE_SUM FILE_MARK
EXPECT=/tmp/sgr-expect
: >$EXPECT
VOLS=""
NMARK=0
# next_mark NAME: writes a mark (unique: a counter is prepended).
next_mark() {
	NMARK=$((NMARK + 1))
	LAST_MARK="m$NMARK-$1"
	mark "$LAST_MARK"
}
# wfile VOL MNT NAME KIB: writes a new file, fsyncs it, marks, records it.
wfile() {
	local vol=$1 dir=$2 name=$3 kib=$4
	dd if=/dev/urandom of="$dir/$name" bs=1k count="$kib" conv=fsync status=none || return 1
	local sum
	sum=$(sha256sum "$dir/$name" | cut -d' ' -f1)
	next_mark "w-$vol-$name" || return 1
	FILE_SUM[$vol/$name]=$sum
	FILE_MARK[$vol/$name]=$LAST_MARK
}
# gone VOL NAME: the file's current version may change from the next mark on.
gone() {
	local k=$1/$2
	echo "$1 $2 ${FILE_SUM[$k]} ${FILE_MARK[$k]} $LAST_MARK" >>$EXPECT
	unset "FILE_SUM[$k]" "FILE_MARK[$k]"
}
# overwrite VOL MNT NAME: rewrites the file in place (same size, sharing
# breaks if a snapshot shares it), fsyncs, marks.
overwrite() {
	local vol=$1 dir=$2 name=$3 kib
	kib=$(($(stat -c %s "$dir/$name") / 1024))
	gone "$vol" "$name"
	dd if=/dev/urandom of="$dir/$name" bs=1k count="$kib" conv=notrunc,fsync status=none || return 1
	FILE_SUM[$vol/$name]=$(sha256sum "$dir/$name" | cut -d' ' -f1)
	next_mark "ow-$vol-$name" || return 1
	FILE_MARK[$vol/$name]=$LAST_MARK
}
# snap ORIGIN NEW: snapshot of the active, mounted origin (not frozen: the
# snapshot is crash-consistent, its journal replays); its files are the
# origin's fsynced ones.
snap() {
	next_mark "begin-snap-$2" || return 1
	msg snapshot "$1" "$2" || return 1
	next_mark "snap-$2" || return 1
	V_EXIST[$2]=$LAST_MARK
	V_FS[$2]=$LAST_MARK
	VOLS="$VOLS $2"
	local k
	for k in "${!FILE_SUM[@]}"; do
		[ "${k%%/*}" = "$1" ] || continue
		FILE_SUM[$2/${k#*/}]=${FILE_SUM[$k]}
		FILE_MARK[$2/${k#*/}]=$LAST_MARK
	done
}
# newvol ID DIR: creates, activates, mkfs, mounts a volume.
newvol() {
	msg create "$1" || return 1
	next_mark "vol-$1" || return 1
	V_EXIST[$1]=$LAST_MARK
	VOLS="$VOLS $1"
	create "sgr$1" "0 $VLEN snapguard /dev/mapper/sgr-pool $1" || return 1
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "/dev/mapper/sgr$1" || return 1
	# mke2fs can leave its last superblock write in the page cache (written
	# at close, unflushed): flushed here, or the log would show it after the
	# mount's FUA superblock write (see "ambiguous" in replay_log.py).
	sync "/dev/mapper/sgr$1" || return 1
	mkdir -p "$2" && mount -t ext4 "/dev/mapper/sgr$1" "$2" || return 1
	next_mark "mkfs-$1" || return 1
	V_FS[$1]=$LAST_MARK
}
rmfiles() {
	local vol=$1 dir=$2
	shift 2
	next_mark "begin-rm-$vol" || return 1
	local n
	for n in "$@"; do
		gone "$vol" "$n"
		rm "$dir/$n" || return 1
	done
	sync -f "$dir" && fstrim "$dir" && sync -f "$dir" || return 1
	next_mark "rm-$vol" || return 1
}
delvol() {
	next_mark "begin-del-$1" || return 1
	V_DELB[$1]=$LAST_MARK
	msg delete "$1" || return 1
	next_mark "del-$1" || return 1
	V_DEL[$1]=$LAST_MARK
}

t0=$(date +%s)
step "log-writes device over $DISK, logging to $LOG" \
	create sgr-log "0 $TOTAL_S log-writes $DISK $LOG"
step "metadata and data devices carved from it" sh -c \
	"printf '0 $META_S linear /dev/mapper/sgr-log 0\n' | dmsetup create --noudevsync sgr-meta &&
	 printf '0 $DATA_S linear /dev/mapper/sgr-log $META_S\n' | dmsetup create --noudevsync sgr-data"
POOL_TABLE="0 $DATA_S snapguard-pool /dev/mapper/sgr-meta /dev/mapper/sgr-data 128 10"
mark "before-pool"
step "create (format) the pool" create sgr-pool "$POOL_TABLE"
next_mark pool
POOL_MARK=$LAST_MARK
step "volume 1: create, mkfs.ext4, mount" newvol 1 $MNT/1
# files VOL DIR NAME:KIB...: new files, each fsynced and marked.
files() {
	local vol=$1 dir=$2 f
	shift 2
	for f in "$@"; do
		wfile "$vol" "$dir" "${f%:*}" "${f#*:}" || return 1
	done
}
snap_del() { snap 1 5 && wfile 1 $MNT/1 a6 200 && delvol 5; }
step "volume 1: three files, each fsynced" files 1 $MNT/1 a1:64 a2:300 a3:1024
step "snapshot 1 -> 2 of the active origin" snap 1 2
step "volume 1: two more files" files 1 $MNT/1 a4:128 a5:512
step "volume 1: overwrite a shared file in place (sharing breaks)" overwrite 1 $MNT/1 a1
step "volume 1: delete two files, fstrim (discards)" rmfiles 1 $MNT/1 a2 a4
step "volume 3: create, mkfs.ext4, mount (a second volume)" newvol 3 $MNT/3
step "volume 3: two files" files 3 $MNT/3 b1:256 b2:40
step "snapshot 3 -> 4 of the active origin" snap 3 4
step "volume 3: overwrite a shared file" overwrite 3 $MNT/3 b1
step "snapshot 1 -> 5, a file on 1, delete 5" snap_del
step "volume 3: one more file" wfile 3 $MNT/3 b3 700
step "unmount, remove the volumes and the pool" sh -c \
	"umount $MNT/1 && umount $MNT/3 && dmsetup remove --noudevsync sgr1 sgr3 sgr-pool"
step "remove the log device" remove sgr-meta sgr-data sgr-log
# Files still current at the end: no gone-mark.
for k in "${!FILE_SUM[@]}"; do
	echo "${k%%/*} ${k#*/} ${FILE_SUM[$k]} ${FILE_MARK[$k]} -" >>$EXPECT
done
sort -o $EXPECT $EXPECT

$REPLAY list $LOG >/tmp/sgr-list 2>/tmp/sgr-list.err
step "the log lists" sh -c "[ -s /tmp/sgr-list ] && ! [ -s /tmp/sgr-list.err ] || cat /tmp/sgr-list.err"
declare -A MIDX
while read -r idx _ _ fl name; do
	[ "$fl" = MARK ] && MIDX[$name]=$idx
done < <(grep -v '^#' /tmp/sgr-list)
NENT=$(grep -vc '^#' /tmp/sgr-list)
ktap_diag "workload took $(($(date +%s) - t0))s; log: $(head -1 /tmp/sgr-list | sed 's/^# //'), $NMARK marks"
if [ "$THOROUGH" = 1 ]; then
	$REPLAY plan $LOG --all --seed "$SEED" >/tmp/sgr-plan
else
	$REPLAY plan $LOG --points "$NPOINTS" --seed "$SEED" >/tmp/sgr-plan
fi
ktap_diag "seed $SEED; plan: $(head -1 /tmp/sgr-plan | sed 's/^# //')"
grep '^# ambiguous' /tmp/sgr-plan
NP=$(grep -vc '^#' /tmp/sgr-plan)

ktap_plan $((${#RESULTS[@]} - $(printf '%s\n' "${RESULTS[@]}" | grep -c '^#|') + NP + 1))
for r in "${RESULTS[@]}"; do
	case $r in
	"ok|"*) ktap_ok "${r#ok|}" ;;
	"not ok|"*) ktap_fail "${r#not ok|}" ;;
	"#|"*) printf '%s\n' "${r#\#|}" ;;
	esac
done
if [ $FAILED = 1 ]; then
	# Without a complete workload the expectations mean nothing.
	for _ in $(seq $((NP + 1))); do ktap_skip "replay point" "workload failed"; done
	ktap_finish
fi

# idx MARK: the log index of a mark ("-": past the end of the log).
idx() {
	if [ "$1" = - ] || [ -z "$1" ]; then echo $((NENT + 1)); else echo "${MIDX[$1]:?no mark $1}"; fi
}
declare -A VI_EXIST VI_FS VI_DELB VI_DEL
for v in $VOLS; do
	VI_EXIST[$v]=$(idx "${V_EXIST[$v]}")
	VI_FS[$v]=$(idx "${V_FS[$v]}")
	VI_DELB[$v]=$(idx "${V_DELB[$v]:--}")
	VI_DEL[$v]=$(idx "${V_DEL[$v]:--}")
done
POOL_IDX=$(idx $POOL_MARK)
# Each file version's marks as indexes: vol name sum created gone.
while read -r v n s c g; do
	echo "$v $n $s $(idx "$c") $(idx "$g")"
done <$EXPECT >/tmp/sgr-expect-idx

# check_point END: the checks on the overlay (sgr-ov) of the replayed disk.
# Prints what it found; fails on the first broken requirement.
check_point() {
	local e=$1 v nvol=0 nfiles=0 r=0 zero
	create sgr-rmeta "0 $META_S linear /dev/mapper/sgr-ov 0" &&
		create sgr-rdata "0 $DATA_S linear /dev/mapper/sgr-ov $META_S" || return 1
	zero=$(dd if=/dev/mapper/sgr-rmeta bs=4096 count=2 status=none | tr -d '\000' | wc -c)
	if [ "$zero" -eq 0 ]; then
		# Never formatted (or the format not yet durable): only before
		# the format's mark.
		if [ "$e" -gt "$POOL_IDX" ]; then
			echo "metadata superblocks are zero after the pool was created"
			return 1
		fi
	elif ! snapguard pool check /dev/mapper/sgr-rmeta >/tmp/sgr-check 2>&1; then
		echo "snapguard pool check failed on the replayed metadata:"
		tail -n 15 /tmp/sgr-check
		return 1
	fi
	dmesg -c >/dev/null
	if ! create sgr-rpool "0 $DATA_S snapguard-pool /dev/mapper/sgr-rmeta /dev/mapper/sgr-rdata 128 10"; then
		echo "the pool does not open:"; dmesg | tail -n 5
		return 1
	fi
	for v in $VOLS; do
		local must=0 mustnot=0 up=0
		[ "$e" -gt "${VI_EXIST[$v]}" ] && [ "$e" -lt "${VI_DELB[$v]}" ] && must=1
		[ "$e" -gt "${VI_DEL[$v]}" ] && mustnot=1
		# Neither required nor forbidden (between the marks around its
		# creation or deletion): not looked at.
		[ $must = 1 ] || [ $mustnot = 1 ] || continue
		create "sgr-r$v" "0 $VLEN snapguard /dev/mapper/sgr-rpool $v" 2>/dev/null && up=1
		if [ $must = 1 ] && [ $up = 0 ]; then
			echo "volume $v is missing"; r=1; break
		fi
		if [ $mustnot = 1 ] && [ $up = 1 ]; then
			echo "volume $v exists after its deletion"; r=1; remove "sgr-r$v"; break
		fi
		[ $up = 1 ] || continue
		if [ $must = 1 ] && [ "$e" -gt "${VI_FS[$v]}" ]; then
			nvol=$((nvol + 1))
			dmesg -c >/dev/null
			if ! mount -t ext4 "/dev/mapper/sgr-r$v" $MNT/r; then
				echo "volume $v: mount failed"; dmesg | tail -n 5; r=1
			else
				local n s c g
				while read -r fv n s c g; do
					[ "$fv" = "$v" ] && [ "$e" -gt "$c" ] && [ "$e" -lt "$g" ] || continue
					nfiles=$((nfiles + 1))
					if [ ! -f "$MNT/r/$n" ]; then
						echo "volume $v: file $n (fsynced before entry $c) is missing"; r=1
					elif [ "$(sha256sum <"$MNT/r/$n" | cut -d' ' -f1)" != "$s" ]; then
						echo "volume $v: file $n (fsynced before entry $c) has other bytes"; r=1
					fi
				done </tmp/sgr-expect-idx
				umount $MNT/r || r=1
				if dmesg | grep -q 'EXT4-fs error'; then
					echo "volume $v: ext4 errors:"; dmesg | grep 'EXT4-fs error' | head -n 3; r=1
				fi
				if ! e2fsck -fn "/dev/mapper/sgr-r$v" >/tmp/sgr-fsck 2>&1; then
					echo "volume $v: e2fsck -fn after journal replay:"; tail -n 12 /tmp/sgr-fsck; r=1
				fi
			fi
		fi
		remove "sgr-r$v" || r=1
		[ $r = 0 ] || break
	done
	remove sgr-rpool || r=1
	# The CLI reads through the page cache; the pool wrote underneath it.
	blockdev --flushbufs /dev/mapper/sgr-rmeta
	if [ $r = 0 ] && [ "$zero" -ne 0 ] &&
		! snapguard pool check /dev/mapper/sgr-rmeta >/tmp/sgr-check 2>&1; then
		echo "snapguard pool check failed after the recovery (journal replays, commits):"
		tail -n 15 /tmp/sgr-check
		r=1
	fi
	echo "$nvol file systems, $nfiles files"
	return $r
}

mkdir -p $MNT/r
if ! command -v snapguard >/dev/null; then
	# Without the CLI the pool check cannot run: every point would be
	# half-checked. Say so instead.
	for _ in $(seq $((NP + 1))); do
		ktap_skip "replay point" "snapguard CLI not built (cargo build -p snapguard --release)"
	done
	ktap_finish
fi
state=0        # entries 0..state-1 are on the replay disk
npts=0
nchecked=0
nskipped=0
tp=$(date +%s)
while read -r base end mode; do
	case $base in "#"*) continue ;; esac
	k=$((npts + nskipped + 1))
	if [ "$THOROUGH" != 1 ] && [ $k -lt "$NP" ] && [ $nchecked -ge 2 ]; then
		now=$(date +%s)
		per=$(((now - tp) / nchecked))
		if [ $((now - T0 + 2 * per)) -gt "$BUDGET" ]; then
			nskipped=$((nskipped + 1))
			ktap_skip "replay point (entry $end, $mode)" "time budget (${BUDGET}s, ${per}s per point)"
			continue
		fi
	fi
	want=$end
	[ "$mode" = drop ] && want=$base
	out=""
	ok=1
	if [ "$want" -ge "$state" ]; then
		out=$($REPLAY replay $LOG $RDISK --start $state --end "$want" 2>&1) || ok=0
		state=$((want + 1))
	fi
	# Half of the points see discards as zeroes, half as untouched.
	disc=zero
	[ $((npts % 2)) = 1 ] && disc=skip
	if [ $ok = 1 ]; then
		create sgr-ov "0 $TOTAL_S snapshot $RDISK $COW N 8" || ok=0
	fi
	if [ $ok = 1 ] && [ "$mode" = drop ] && [ "$end" -gt "$base" ]; then
		out=$($REPLAY replay $LOG /dev/mapper/sgr-ov --start $((base + 1)) --end "$end" \
			--drop-unflushed --discard $disc 2>&1) || ok=0
	fi
	if [ $ok = 1 ]; then
		out=$(check_point "$end" 2>&1) || ok=0
	fi
	dmsetup remove --noudevsync sgr-rmeta sgr-rdata 2>/dev/null
	dmsetup remove --noudevsync sgr-ov 2>/dev/null
	npts=$((npts + 1))
	nchecked=$npts
	desc="replay point $npts: entry $end ($mode"
	[ "$mode" = drop ] && desc="$desc unflushed after $base, discards $disc"
	desc="$desc)"
	if [ $ok = 1 ]; then
		ktap_ok "$desc: $(printf '%s' "$out" | tail -n 1)"
	else
		ktap_fail "$desc"
		printf '%s\n' "$out" | sed 's/^/# /'
	fi
done </tmp/sgr-plan
ktap_diag "$npts replay points checked ($nskipped skipped for time) of $(head -1 /tmp/sgr-plan | sed 's/^# //') in $(($(date +%s) - tp))s"
no_dm_device() { ! compgen -G '/sys/block/dm-*' >/dev/null; }
ktap_check "no device left" no_dm_device
ktap_finish
