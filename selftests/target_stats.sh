#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The per-pool sysfs directory /sys/kernel/snapguard/pools/dm-N/: it comes
# and goes with the pool target; its `stats` counters move with the I/O
# paths (provisioning and deferral, inline remaps, sharing breaks, commits
# and their latency); `commit_interval_ms` defaults to 1000, refuses bad
# writes with EINVAL without changing, and sets the period of the commit
# after writes (Documentation/ABI/testing/sysfs-kernel-snapguard).
. "$(dirname "$0")/lib.sh"

export DM_DISABLE_UDEV=1
modprobe snapguard
dmesg_mark

ktap_plan 33

dd if=/dev/zero of=/tmp/sgs-meta bs=1M count=0 seek=4 status=none
dd if=/dev/zero of=/tmp/sgs-data bs=1M count=0 seek=16 status=none
META=$(losetup -f --show /tmp/sgs-meta)
DATA=$(losetup -f --show /tmp/sgs-data)
V=/dev/mapper/sgs1
printf '0 32768 snapguard-pool %s %s 128 0\n' "$META" "$DATA" | dmsetup create --noudevsync sgs-pool
dmsetup message sgs-pool 0 create 1
printf '0 32768 snapguard /dev/mapper/sgs-pool 1\n' | dmsetup create --noudevsync sgs1
minor=$(dmsetup info -c --noheadings -o minor sgs-pool | tr -d ' ')
D=/sys/kernel/snapguard/pools/dm-$minor
K=$D/commit_interval_ms

# val NAME: the counter's value (empty if missing).
val() { sed -n "s/^$1 \([0-9]*\)$/\1/p" "$D/stats" 2>/dev/null; }
# grew NAME OLD: the counter is above OLD.
grew() { local v; v=$(val "$1"); [ -n "$v" ] && [ "$v" -gt "$2" ] || { echo "$1: $v, was $2"; return 1; }; }
# same NAME OLD: the counter is still OLD.
same() { local v; v=$(val "$1"); [ -n "$v" ] && [ "$v" -eq "$2" ] || { echo "$1: $v, was $2"; return 1; }; }
# wr EXTENT: one direct 4 KiB write into the volume's 64 KiB extent.
wr() { dd if=/dev/urandom of=$V bs=4k count=1 seek=$(($1 * 16)) oflag=direct conv=notrunc status=none "${@:2}"; }

ktap_check "the pool's directory appears with the pool" test -d "$D"
ktap_check "  stats is read-only, commit_interval_ms read-write" sh -c \
	"[ \$(stat -c %a $D/stats) = 444 ] && [ \$(stat -c %a $K) = 644 ]"
names=$(cut -d' ' -f1 "$D/stats" | tr '\n' ' ')
ktap_check "stats lists the documented counters, one 'name value' a line" sh -c \
	"[ '$names' = 'map_inline map_deferred provisions sharing_breaks commits commit_last_us commit_max_us ' ] &&
	 ! grep -vqE '^[a-z_]+ [0-9]+\$' $D/stats"
ktap_check "commit_interval_ms is 1000 by default" test "$(cat $K 2>/dev/null)" = 1000

p=$(val provisions) d=$(val map_deferred)
wr 3
ktap_check "a write to an unmapped extent: provisions grows" grew provisions "${p:-0}"
ktap_check "  and map_deferred grows" grew map_deferred "${d:-0}"
i=$(val map_inline) p=$(val provisions)
for n in 1 2 3 4; do dd if=$V of=/dev/null bs=4k count=1 skip=48 iflag=direct status=none; done
ktap_check "reads of the mapped extent: map_inline grows" grew map_inline "${i:-0}"
ktap_check "  and nothing was provisioned" same provisions "${p:-0}"
b=$(val sharing_breaks)
dmsetup message sgs-pool 0 snapshot 1 2
wr 3
ktap_check "a write after a snapshot: sharing_breaks grows" grew sharing_breaks "${b:-0}"

# Bad writes are refused with EINVAL and change nothing.
badwrite() {
	local out
	if out=$(printf '%s\n' "$1" 2>&1 >$K); then
		echo "accepted '$1'"
		return 1
	fi
	[[ $out == *"Invalid argument"* ]] || { echo "'$1': $out"; return 1; }
	[ "$(cat $K)" = 1000 ] || { echo "'$1' changed the value to $(cat $K)"; return 1; }
}
for bad in "" "abc" "0" "60001" "4294968296" "18446744073709551616" "100x" " 100" \
	"-5" "+5" "0x10" "010" "1e3" "100 200"; do
	ktap_check "bad write '$bad' refused with EINVAL, value unchanged" badwrite "$bad"
done
# The boundaries are accepted.
ktap_check "60000 and 1 are accepted" sh -c \
	"echo 60000 >$K && [ \$(cat $K) = 60000 ] && echo 1 >$K && [ \$(cat $K) = 1 ]"

# 100 ms: a trickle of writes (20 a second, each into a new extent, no
# flush) is committed about every 100 ms; at the default 1000 ms, about
# once a second.
echo 100 >$K
sleep 1.5
# Writes come only in fio's 3 s of I/O (its start-up under TCG takes
# seconds more): at 1000 ms that is at most 4 or 5 commits, at 100 ms
# about 20 to 30.
c=$(val commits)
fio --name=trickle --filename=$V --rw=write:60k --bs=4k --direct=1 --ioengine=psync \
	--rate_iops=20 --runtime=3 --time_based --offset=1M --size=8M >/dev/null 2>&1
n=$(($(val commits) - c))
ktap_check "at 100 ms, 3 s of writes without a flush are committed often ($n commits, need > 10)" \
	test $n -gt 10

# 60000 ms: no periodic commit within 3 s of a write (the default would
# commit after 1 s). A commit scheduled before keeps its time: wait it out.
echo 60000 >$K
sleep 1.5
c=$(val commits)
wr 11
sleep 3
ktap_check "at 60000 ms, no commit within 3 s of a write" same commits "$c"
# A flush commits at once, whatever the period.
wr 12 conv=fsync
ktap_check "a flush (fsync) commits: commits grows" grew commits "$c"
ktap_check "  commit_last_us > 0 and commit_max_us >= it" sh -c \
	"l=\$(sed -n 's/^commit_last_us //p' $D/stats); m=\$(sed -n 's/^commit_max_us //p' $D/stats);
	 [ \"\$l\" -gt 0 ] && [ \"\$m\" -ge \"\$l\" ]"

dmsetup remove --noudevsync sgs1
ktap_check "the directory stays while the pool lives" test -d "$D"
dmsetup remove --noudevsync sgs-pool
ktap_check "the directory goes with the pool" test ! -e "$D"
ktap_check "  and pools/ is empty" test -z "$(ls /sys/kernel/snapguard/pools)"
losetup -d "$META" "$DATA"
ktap_check "no kernel complaint" not dmesg_has -E 'BUG:|Oops|WARNING:'

ktap_check "rmmod leaves no snapguard directory behind" sh -c \
	"rmmod snapguard && [ ! -e /sys/kernel/snapguard ]"
modprobe snapguard
rm -f /tmp/sgs-meta /tmp/sgs-data
ktap_finish
