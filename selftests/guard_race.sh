#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The device the guard checks is the device the file system mounts. A
# second task swaps the mount source while mount(2) runs read-write in a
# loop (race_swap.c): a symlink to a clean NTFS volume exchanged with one
# to a hibernated volume (RENAME_EXCHANGE), a regular file exchanged with a
# symlink to the hibernated volume, and two directories holding those. No attempt may end with the
# hibernated volume mounted read-write; the race must have gone both ways.
. "$(dirname "$0")/guard_lib.sh"

SECONDS_PER_RACE=${SECONDS_PER_RACE:-4}
MAXTRIES=${MAXTRIES:-1000}
RS=$(dirname "$0")/race_swap
ktap_plan 12
modprobe snapguard
echo volume >$G/policy
echo refuse >$G/unclean
echo enforce >$G/mode

cp $FIXTURES/ntfs-clean.img /tmp/rc-clean.img
cp $FIXTURES/ntfs-hiberfil-HIBR.img /tmp/rc-hib.img
cl=$(losetup -f --show /tmp/rc-clean.img)
hb=$(losetup -f --show /tmp/rc-hib.img)
R=/tmp/race
rm -rf $R && mkdir -p $R
dmesg_mark
MARK0=$DMESG_MARK

# count NAME LINE: the value of NAME=... in race_swap's line.
count() { printf '%s\n' "$2" | sed -n "s/.*\b$1=\([0-9]*\).*/\1/p"; }

# race DESC SRC A B
race() {
	local desc=$1 out
	out=$($RS race "$2" "$3" "$4" $MNT ntfs3 "$hb" "$SECONDS_PER_RACE" "$MAXTRIES" 2>&1)
	ktap_diag "$desc: $out"
	case $(count rw_hibernated "$out") in
	0) ktap_ok "$desc: the hibernated volume was never mounted read-write" ;;
	"") ktap_fail "$desc: race_swap did not run" ;;
	*) ktap_fail "$desc: the hibernated volume was mounted read-write" ;;
	esac
	umount $MNT 2>/dev/null
	RACE_OUT=$out
}

ln -s "$cl" $R/a
ln -s "$hb" $R/b
race "symlink to clean <-> symlink to hibernated" $R/a $R/a $R/b
if [ "$(count rw_clean "$RACE_OUT")" -gt 0 ] 2>/dev/null && [ "$(count refused "$RACE_OUT")" -gt 0 ]; then
	ktap_ok "symlink race went both ways (clean mounted rw, hibernated refused)"
else
	ktap_fail "symlink race did not go both ways"
fi

rm -f $R/a $R/b
head -c 65536 /dev/zero >$R/f
ln -s "$hb" $R/l
race "regular file <-> symlink to hibernated" $R/f $R/f $R/l
if [ "$(count notblk "$RACE_OUT")" -gt 0 ] 2>/dev/null && [ "$(count refused "$RACE_OUT")" -gt 0 ]; then
	ktap_ok "file race went both ways (not a block device, hibernated refused)"
else
	ktap_fail "file race did not go both ways"
fi

# A directory on the way exchanged: the last lookup of the swapped name is
# then a long walk (30 levels) before the device node, which widens the gap
# between two lookups of the same path.
rm -rf $R/*
deep=$(printf 'd/%.0s' $(seq 30))
mkdir -p "$R/A/$deep" "$R/B/$deep"
head -c 65536 /dev/zero >"$R/A/${deep}n"
ln -s "$hb" "$R/B/${deep}n"
race "directory exchanged (regular file / symlink to hibernated 30 levels down)" "$R/A/${deep}n" $R/A $R/B
if [ "$(count notblk "$RACE_OUT")" -gt 0 ] 2>/dev/null && [ "$(count refused "$RACE_OUT")" -gt 0 ]; then
	ktap_ok "directory race went both ways (not a block device, hibernated refused)"
else
	ktap_fail "directory race did not go both ways"
fi

losetup -d "$hb"
ktap_check "hibernated image byte-for-byte unchanged" cmp $FIXTURES/ntfs-hiberfil-HIBR.img /tmp/rc-hib.img

# Without a race: the mount shows the caller's source, and no descriptor
# is left behind in the mounting process.
rm -f $R/*
ln -s "$cl" $R/a
out=$($RS once $R/a $MNT ntfs3 2>&1)
ktap_diag "$out"
if [ -n "$(count fds_before "$out")" ] && [ "$(count fds_before "$out")" = "$(count fds_after "$out")" ]; then
	ktap_ok "no descriptor left in the mounting process"
else
	ktap_fail "descriptors before/after the mount differ"
fi
ktap_check "the mount's source is the caller's path" grep -q "^$R/a $MNT ntfs3 rw" /proc/mounts
umount $MNT 2>/dev/null

# Without a procfs at /proc the source cannot be pinned: a read-write mount
# is refused (EROFS, so mount would fall back to read-only), not let
# through unchecked.
dmesg_mark
out=$(unshare -m sh -c "umount -l /proc && $RS once $cl $MNT ntfs3" 2>&1)
ktap_diag "$out"
case $out in
*"Read-only file system"*) ktap_ok "no /proc: the read-write mount is refused with EROFS" ;;
*) ktap_fail "no /proc: the read-write mount was not refused with EROFS" ;;
esac
ktap_check "no /proc: the kernel says why" dmesg_has 'snapguard: cannot pin the source of a read-write ntfs3 mount'
losetup -d "$cl"
ktap_check "no kernel complaint" \
	not sh -c "dmesg | sed -n '/$MARK0/,\$p' | grep -qE 'BUG:|Oops|WARNING:|general protection'"
ktap_finish
