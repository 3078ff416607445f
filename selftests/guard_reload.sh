#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The guarded file system modules (exfat, ntfs3, ntfs) are unloaded and
# loaded again many times while snapguard stays loaded, in a changing order
# and with another module (efivarfs) loaded in between, so that each lands
# at a new address and old addresses are reused by other modules. Each round
# mounts every type read-write with an option (so the VFS calls the file system's
# parse_param through the guard's wrapped table). snapguard must forget a
# module's wrapped table when the module goes: a stale one jumps into freed
# module text (an oops; the runner fails on any on the console), and a
# table never freed used up all slots after 16, leaving mounts unguarded.
# After the reloads, volumes a sleeping OS may own still fall back to
# read-only.
. "$(dirname "$0")/guard_lib.sh"

ROUNDS=${ROUNDS:-24}
RS=$(dirname "$0")/race_swap
ktap_plan 9
modprobe snapguard
echo volume >$G/policy
echo refuse >$G/unclean
echo enforce >$G/mode

# In every round each type mounts, read-write and with an option, a volume
# the guard must refuse: a dirty exFAT, a hibernated NTFS.
cp $FIXTURES/exfat-dirty.img /tmp/rl-exfat.img
cp $FIXTURES/ntfs-hiberfil-HIBR.img /tmp/rl-ntfs.img
ex=$(losetup -f --show /tmp/rl-exfat.img)
nt=$(losetup -f --show /tmp/rl-ntfs.img)

orders=("exfat ntfs3 ntfs" "ntfs ntfs3 exfat" "ntfs3 exfat ntfs"
	"ntfs exfat ntfs3" "exfat ntfs ntfs3" "ntfs3 ntfs exfat")
dmesg_mark
mod_fail=0 mount_fail=0 unguarded=0 t_mod=0 t_mount=0
# Few processes per round: each costs a few hundred ms under TCG.
for ((i = 1; i <= ROUNDS; i++)); do
	t0=${EPOCHREALTIME/./}
	loaded=()
	while read -r m _; do
		case $m in exfat | ntfs3 | ntfs | efivarfs) loaded+=("$m") ;; esac
	done </proc/modules
	if [ ${#loaded[@]} -gt 0 ]; then rmmod "${loaded[@]}" || mod_fail=$((mod_fail + 1)); fi
	set -- ${orders[i % 6]}
	# efivarfs before, between or after the three, or not at all.
	case $((i % 4)) in
	0) load=(efivarfs "$@") ;;
	1) load=("$1" efivarfs "$2" "$3") ;;
	2) load=("$1" "$2" efivarfs "$3") ;;
	3) load=("$@") ;;
	esac
	modprobe -a "${load[@]}" || mod_fail=$((mod_fail + 1))
	t1=${EPOCHREALTIME/./}
	for t in "$@"; do
		dev=$nt
		[ "$t" = exfat ] && dev=$ex
		# mount(2) read-write with an option: the guard refuses it
		# before the file system's get_tree (no read-only retry here).
		$RS try "$dev" $MNT "$t" uid=0 >/tmp/rl-out 2>&1
		read -r r </tmp/rl-out
		case $r in
		refused) ;;
		rw)
			unguarded=$((unguarded + 1))
			ktap_diag "round $i: $t mounted read-write"
			;;
		*)
			mount_fail=$((mount_fail + 1))
			ktap_diag "round $i: mount -t $t: $r"
			;;
		esac
	done
	t2=${EPOCHREALTIME/./}
	t_mod=$((t_mod + (t1 - t0) / 1000)) t_mount=$((t_mount + (t2 - t1) / 1000))
done
ktap_diag "module unload+load took ${t_mod} ms, mounts ${t_mount} ms in all"
ktap_check "$ROUNDS rounds of unloading and loading exfat, ntfs3, ntfs (and efivarfs)" test $mod_fail = 0
ktap_check "every round: no type mounted the volume read-write" test $unguarded = 0
ktap_check "every round: each type refused with EROFS (no other error)" test $mount_fail = 0
ktap_check "no mount went unguarded for want of a table" \
	not dmesg_has 'out of operation tables'
losetup -d $ex $nt

# After the reloads the guard still refuses read-write on every type.
for c in "exfat exfat-dirty" "ntfs3 ntfs-hiberfil-HIBR" "ntfs ntfs-log-faststartup"; do
	set -- $c
	cp $FIXTURES/$2.img /tmp/rl-case.img
	dev=$(losetup -f --show /tmp/rl-case.img)
	mount -t "$1" "$dev" $MNT 2>/dev/null
	if is_mounted_ro $MNT; then
		ktap_ok "$1 $2 after the reloads: falls back to read-only"
	else
		ktap_fail "$1 $2 after the reloads: not read-only"
		grep " $MNT " /proc/mounts | sed 's/^/# /'
	fi
	umount $MNT 2>/dev/null
	losetup -d "$dev"
done
ktap_check "snapguard unloads after the reloads" rmmod snapguard
ktap_check "no kernel complaint" \
	not dmesg_has -E 'BUG:|Oops|WARNING:|general protection'
modprobe snapguard
ktap_finish
